//! The cluster file as the user wrote it: serde types that mirror the YAML,
//! with source positions kept on every value a later check may complain about.
//! Defaults here reproduce the staking guide. Semantic checks live in
//! [`crate::validate`]; this module only turns text into typed data.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, InputErrors, Pos};
use crate::yaml::{is_structural, options, parse_typed, plain};

/// The only cluster file version this release understands.
pub const SUPPORTED_VERSION: u32 = 1;

fn sp<T>(value: T) -> Spanned<T> {
    Spanned {
        value,
        referenced: serde_saphyr::Location::UNKNOWN,
        defined: serde_saphyr::Location::UNKNOWN,
    }
}

fn sps(values: &[&str]) -> Vec<Spanned<String>> {
    values.iter().map(|v| sp(v.to_string())).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    pub version: Spanned<u32>,
    pub name: Spanned<String>,
    #[serde(default = "default_release")]
    pub release: Spanned<String>,
    #[serde(default = "default_timezone")]
    pub timezone: Spanned<String>,
    #[serde(default = "default_locale")]
    pub locale: Spanned<String>,
    #[serde(default)]
    pub keyboard: Keyboard,
    pub network: Network,
    #[serde(default)]
    pub ntp: Ntp,
    pub admin: Admin,
    #[serde(default)]
    pub ssh: Ssh,
    #[serde(default)]
    pub microk8s: Microk8s,
    #[serde(default)]
    pub nfs: Nfs,
    #[serde(default)]
    pub staking: Staking,
    #[serde(default)]
    pub maintenance: Maintenance,
    pub machines: Spanned<Vec<Machine>>,
}

/// When snapd may refresh snaps (MicroK8s patch releases among them).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// The cluster's weekly window, in snapd's `refresh.timer` form
    /// restricted to weekdays and one span within a day
    /// (`sat,02:00-06:00`), in the cluster's time zone; each machine gets
    /// its own slot inside it. Absent: the first of
    /// [`DEFAULT_REFRESH_WINDOWS`] with a slot for every machine.
    #[serde(default)]
    pub refresh_window: Option<Spanned<String>>,
}

/// The windows a cluster file without one gets, the first that gives every
/// machine its own slot: Saturday night (up to 24 machines), every night
/// (168), any time of the week (1,008).
pub const DEFAULT_REFRESH_WINDOWS: &[&str] = &[
    "sat,02:00-06:00",
    "mon,tue,wed,thu,fri,sat,sun,02:00-06:00",
    "mon,tue,wed,thu,fri,sat,sun,00:00-24:00",
];

fn default_release() -> Spanned<String> {
    sp("20.04".into())
}
fn default_timezone() -> Spanned<String> {
    sp("Etc/UTC".into())
}
fn default_locale() -> Spanned<String> {
    sp("en_US.UTF-8".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyboard {
    #[serde(default = "default_layout")]
    pub layout: Spanned<String>,
    #[serde(default)]
    pub variant: Option<Spanned<String>>,
}

fn default_layout() -> Spanned<String> {
    sp("us".into())
}

impl Default for Keyboard {
    fn default() -> Self {
        Keyboard {
            layout: default_layout(),
            variant: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub subnet: Spanned<String>,
    pub gateway: Spanned<String>,
    #[serde(default = "default_dns")]
    pub dns: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub search_domains: Vec<Spanned<String>>,
}

fn default_dns() -> Spanned<Vec<Spanned<String>>> {
    sp(sps(&["8.8.8.8", "8.8.4.4"]))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ntp {
    #[serde(default = "default_pools")]
    pub pools: Spanned<Vec<Spanned<String>>>,
}

/// The guide's pools without its `time.google.com`: Google smears leap
/// seconds and advises against mixing its servers with ones that step
/// (developers.google.com/time/smear), so the default does not mix.
pub const DEFAULT_POOLS: &[&str] = &["us.pool.ntp.org", "ntp.ubuntu.com"];

fn default_pools() -> Spanned<Vec<Spanned<String>>> {
    sp(sps(DEFAULT_POOLS))
}

impl Default for Ntp {
    fn default() -> Self {
        Ntp {
            pools: default_pools(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    #[serde(default = "default_username")]
    pub username: Spanned<String>,
    #[serde(default = "no_keys")]
    pub ssh_keys: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub password_hash: Option<Spanned<String>>,
}

fn no_keys() -> Spanned<Vec<Spanned<String>>> {
    sp(Vec::new())
}

fn default_username() -> Spanned<String> {
    sp("ubuntu".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    #[serde(default = "default_ssh_port")]
    pub port: Spanned<u32>,
    #[serde(default = "default_password_auth")]
    pub password_auth: Spanned<bool>,
    /// CIDR allowed to reach ssh; anywhere when absent.
    #[serde(default)]
    pub allow_from: Option<Spanned<String>>,
}

fn default_password_auth() -> Spanned<bool> {
    sp(false)
}

fn default_ssh_port() -> Spanned<u32> {
    sp(22)
}

impl Default for Ssh {
    fn default() -> Self {
        Ssh {
            port: default_ssh_port(),
            password_auth: default_password_auth(),
            allow_from: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Microk8s {
    /// `None`: the release profile's default channel (1.20/stable, the
    /// guide's, on 20.04).
    #[serde(default)]
    pub channel: Option<Spanned<String>>,
    #[serde(default = "default_addons")]
    pub addons: Vec<Spanned<String>>,
    /// A virtual IPv4 address for the API server that keepalived moves to
    /// a healthy master (docs/ha.md); none when absent.
    #[serde(default)]
    pub api_vip: Option<Spanned<String>>,
}

fn default_addons() -> Vec<Spanned<String>> {
    sps(&["dns", "helm3"])
}

impl Default for Microk8s {
    fn default() -> Self {
        Microk8s {
            channel: None,
            addons: default_addons(),
            api_vip: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nfs {
    #[serde(default = "default_export_root")]
    pub export_root: Spanned<String>,
    #[serde(default = "default_clients")]
    pub validator_clients: Spanned<u32>,
    #[serde(default = "default_uid")]
    pub uid: Spanned<u32>,
    #[serde(default = "default_gid")]
    pub gid: Spanned<u32>,
    /// Put the export on its own volume; by default it is a directory on the
    /// root filesystem, which then takes the whole disk.
    #[serde(default)]
    pub data_volume: bool,
    /// A disk of its own for the export, which the installer never touches
    /// and first boot formats only when it holds nothing: the data outlives
    /// a reinstall of the NFS server.
    #[serde(default)]
    pub data_disk: Option<Spanned<DataDiskChoice>>,
}

/// How `nfs.data_disk` names the disk: by what stays the same from boot to
/// boot (a kernel name such as `/dev/sdb` does not).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum DataDiskChoice {
    Serial(String),
    Path(String),
}

fn default_export_root() -> Spanned<String> {
    sp("/data".into())
}
fn default_clients() -> Spanned<u32> {
    sp(1)
}
fn default_uid() -> Spanned<u32> {
    sp(1001)
}
fn default_gid() -> Spanned<u32> {
    sp(2000)
}

impl Default for Nfs {
    fn default() -> Self {
        Nfs {
            export_root: default_export_root(),
            validator_clients: default_clients(),
            uid: default_uid(),
            gid: default_gid(),
            data_volume: false,
            data_disk: None,
        }
    }
}

fn no() -> Spanned<bool> {
    sp(false)
}

impl Default for Staking {
    fn default() -> Self {
        Staking {
            enabled: no(),
            network: None,
            fee_recipient: None,
            graffiti: None,
            checkpoint_sync_url: None,
            execution: Execution::default(),
            prysm: Prysm::default(),
            validators: None,
            chart: None,
            eth1_endpoints: None,
            genesis_state_file: None,
        }
    }
}

impl ClusterFile {
    /// Where the staking section's errors about a missing key point: its
    /// `enabled:` line (or nowhere, when the file has none).
    pub fn staking_pos(&self) -> serde_saphyr::Location {
        self.staking.enabled.referenced
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staking {
    /// Spanned so "missing" errors can point at the staking section.
    #[serde(default = "no")]
    pub enabled: Spanned<bool>,
    /// `mainnet` or `hoodi`. Never defaulted: validating on the wrong
    /// network loses real money or wastes a sync.
    #[serde(default)]
    pub network: Option<Spanned<String>>,
    /// Where every validator client's priority fees go, unless its entry in
    /// `validators` names its own.
    #[serde(default)]
    pub fee_recipient: Option<Spanned<String>>,
    /// Text the validators write into proposed blocks.
    #[serde(default)]
    pub graffiti: Option<Spanned<String>>,
    /// A synced beacon node's API to checkpoint sync from; a default per
    /// network when absent.
    #[serde(default)]
    pub checkpoint_sync_url: Option<Spanned<String>>,
    #[serde(default)]
    pub execution: Execution,
    #[serde(default)]
    pub prysm: Prysm,
    /// Per validator client (as many as `nfs.validator_clients`), in order.
    #[serde(default)]
    pub validators: Option<Spanned<Vec<Validator>>>,
    /// Keys of the eth2xk8s chart microseed no longer installs: kept here
    /// only to refuse them with a sentence instead of "unknown field".
    #[serde(default)]
    pub chart: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    pub eth1_endpoints: Option<Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    pub genesis_state_file: Option<Spanned<serde::de::IgnoredAny>>,
}

/// The execution client: which one, its version, and the node whose local
/// disk holds its database.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Execution {
    #[serde(default)]
    pub client: Option<Spanned<String>>,
    #[serde(default)]
    pub version: Option<Spanned<String>>,
    /// A MicroK8s machine's name; the first worker (or the master) when absent.
    #[serde(default)]
    pub node: Option<Spanned<String>>,
    /// The database's directory on that node.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prysm {
    #[serde(default)]
    pub version: Option<Spanned<String>>,
}

/// One validator client's own settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    #[serde(default)]
    pub fee_recipient: Option<Spanned<String>>,
    #[serde(default)]
    pub graffiti: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub name: Spanned<String>,
    pub role: Spanned<String>,
    pub ip: Spanned<String>,
    #[serde(default)]
    pub mac: Option<Spanned<String>>,
    #[serde(default)]
    pub interface: Option<Spanned<String>>,
    #[serde(default)]
    pub disk: Option<Spanned<DiskChoice>>,
}

/// Which disk the installer wipes and installs onto.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum DiskChoice {
    Largest,
    Serial(String),
    Path(String),
}

/// Parses the cluster file text. Errors carry the file, line, column and
/// field path, with a suggestion for a misspelt key.
pub fn parse(file: &Path, text: &str) -> Result<ClusterFile, InputErrors> {
    // Check the version first, so a future file gets "unsupported version"
    // rather than a confusing error about a key this release does not know.
    check_version(file, text)?;
    parse_typed(file, text)
}

/// Reads only `version`, ignoring every other key.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<Spanned<serde_saphyr_value::Any>>,
}

mod serde_saphyr_value {
    //! Accepts any YAML value, so the version probe never fails on the rest.
    use serde::Deserialize;
    /// The version as written: a number, text (`"1"`), or anything else.
    #[derive(Debug)]
    pub enum Any {
        Number(u64),
        Text(String),
        Other,
    }
    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum V {
                N(u64),
                S(String),
                Other(serde::de::IgnoredAny),
            }
            Ok(match V::deserialize(d)? {
                V::N(n) => Any::Number(n),
                V::S(s) => Any::Text(s),
                V::Other(_) => Any::Other,
            })
        }
    }
}

fn check_version(file: &Path, text: &str) -> Result<(), InputErrors> {
    // Syntax and type errors surface in the full parse with their field
    // path; but this probe walks every node, so an alias bomb, a duplicate
    // key or a second document anywhere is caught (and reported) here.
    let probe = match serde_saphyr::from_str_with_options::<VersionOnly>(text, options()) {
        Ok(probe) => probe,
        Err(err) if is_structural(err.without_snippet()) => {
            let pos = err.location().map(Pos::from_location).unwrap_or_default();
            let (pos, field, message) = plain(err.without_snippet(), String::new(), text, pos);
            return Err(InputErrors(vec![Diagnostic::error(
                file, pos, field, message,
            )]));
        }
        Err(_) => return Ok(()),
    };
    match probe.version {
        None => Err(InputErrors(vec![Diagnostic::error(
            file,
            Pos { line: 1, column: 1 },
            "version",
            format!("missing; expected `version: {SUPPORTED_VERSION}` at the top of the file"),
        )])),
        Some(v) if matches!(v.value, serde_saphyr_value::Any::Number(n) if n == SUPPORTED_VERSION as u64) => {
            Ok(())
        }
        // Quoted, `"1"` is text: say so rather than "unsupported version".
        Some(v) if matches!(&v.value, serde_saphyr_value::Any::Text(t) if t.trim().parse::<u64>().is_ok()) => {
            Err(InputErrors(vec![Diagnostic::error(
                file,
                Pos::from_location(v.referenced),
                "version",
                format!(
                    "got text (a quoted value); expected the number {SUPPORTED_VERSION}, without quotes: `version: {SUPPORTED_VERSION}`"
                ),
            )]))
        }
        Some(v) => Err(InputErrors(vec![Diagnostic::error(
            file,
            Pos::from_location(v.referenced),
            "version",
            format!(
                "unsupported cluster file version; this microseed reads version {SUPPORTED_VERSION}"
            ),
        )])),
    }
}
