//! The cluster file as the user wrote it: serde types that mirror the YAML,
//! with source positions kept on every value a later check may complain about.
//! Defaults here reproduce the staking guide. Semantic checks live in
//! [`crate::validate`]; this module only turns text into typed data.

use std::cell::RefCell;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, InputErrors, Pos, nearest};

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
    pub machines: Spanned<Vec<Machine>>,
}

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

fn default_pools() -> Spanned<Vec<Spanned<String>>> {
    sp(sps(&[
        "time.google.com",
        "us.pool.ntp.org",
        "ntp.ubuntu.com",
    ]))
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
}

fn default_addons() -> Vec<Spanned<String>> {
    sps(&["dns", "helm3"])
}

impl Default for Microk8s {
    fn default() -> Self {
        Microk8s {
            channel: None,
            addons: default_addons(),
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
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Staking {
    #[serde(default)]
    pub enabled: bool,
    /// Where the eth2xk8s chart is on the master (a directory path or a chart
    /// reference helm understands). The chart is installed only when set.
    #[serde(default)]
    pub chart: Option<Spanned<String>>,
    /// `mainnet` or a testnet name (the chart's `ethereumTestnet`). Never
    /// defaulted: validating on the wrong network loses real money or
    /// wastes a sync.
    #[serde(default)]
    pub network: Option<Spanned<String>>,
    /// Execution-layer (eth1) endpoints for the beacon node, first is primary.
    #[serde(default)]
    pub eth1_endpoints: Vec<Spanned<String>>,
    /// Text the validators write into proposed blocks.
    #[serde(default)]
    pub graffiti: Option<Spanned<String>>,
    /// Genesis state file on the NFS share, for testnets (optional).
    #[serde(default)]
    pub genesis_state_file: Option<Spanned<String>>,
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

/// Parser options for every file microseed reads: one document, duplicate
/// keys refused (cloud-init would silently keep the last), and budgets sized
/// for a cluster file (a hundred machines is a few thousand nodes), so an
/// alias bomb or a deeply nested file fails at once instead of eating memory.
fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_nodes = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = 2 * crate::input::MAX_INPUT_BYTES as usize;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_recorded_anchor_bytes = 4 * 1024 * 1024;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.alias_limits.max_total_replayed_events = 100_000;
    o.alias_limits.max_replay_stack_depth = 16;
    o
}

/// Deserializes `text` into `T`, turning serde errors into diagnostics with
/// the field path (tracked by serde_path_to_error) and serde-saphyr's position.
pub fn parse_typed<T: for<'de> Deserialize<'de>>(
    file: &Path,
    text: &str,
) -> Result<T, InputErrors> {
    let path = RefCell::new(String::new());
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            *path.borrow_mut() = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|err| {
        let pos = err.location().map(Pos::from_location).unwrap_or_default();
        let field = path.into_inner();
        // Spanned<T> adds a `.value` step that means nothing to the user.
        let field = field.replace(".value", "");
        let field = if field == "." { String::new() } else { field };
        let (field, message) = plain(err.without_snippet(), field, text, pos);
        InputErrors(vec![Diagnostic::error(file, pos, field, message)])
    })
}

/// Says what went wrong in the user's terms: the parser's own wording names
/// its API (`DuplicateKeyPolicy`, `from_str_multiple`) or internals
/// (`budget breached: Nodes {..}`), which tells a user nothing.
fn plain(err: &serde_saphyr::Error, field: String, text: &str, pos: Pos) -> (String, String) {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    // serde_path_to_error marks a key it has not matched yet with `?`.
    let parent = field
        .strip_suffix('?')
        .map(|p| p.trim_end_matches('.').to_string());
    let msg = match err {
        E::AliasError { error, .. } => return plain(error.without_snippet(), field, text, pos),
        E::SerdeMissingField { field: key, .. } => {
            let at = field.trim_end_matches('?').trim_end_matches('.');
            let field = if at.is_empty() {
                key.to_string()
            } else {
                format!("{at}.{key}")
            };
            return (field, format!("missing; expected a `{key}:` key here"));
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key.clone().unwrap_or_else(|| "this key".into());
            let field = match parent {
                Some(p) if p.is_empty() => key.clone(),
                Some(p) => format!("{p}.{key}"),
                None => field,
            };
            return (
                field,
                format!("`{key}` is given twice in the same mapping; expected each key once (delete one of them)"),
            );
        }
        E::MultipleDocuments { .. }
        | E::Budget {
            breach: B::Documents { .. },
            ..
        } => "a second YAML document starts here (a `---` line); expected exactly one document in the file".to_string(),
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => "nested too deeply; a cluster file is a few levels deep".to_string(),
            B::Aliases { .. } | B::Anchors { .. } => {
                "too many anchors or aliases (`&name`, `*name`); write the values out instead".to_string()
            }
            _ => "the file expands to far more values than any cluster file holds (through aliases or sheer size); expected a cluster description of a few KiB".to_string(),
        },
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::RecursiveReferencesRequireWeakTypes { .. } => {
            "aliases (`*name`) here expand to too much or refer to themselves; write the values out instead".to_string()
        }
        E::UnknownAnchor { .. } => {
            "this alias (`*name`) refers to no anchor (`&name`) defined before it".to_string()
        }
        E::InvalidUtf8Input => "the file is not valid UTF-8 text; save it as UTF-8".to_string(),
        E::InvalidScalar { ty, .. } => {
            let got = scalar_at(text, pos);
            match field_range(&field).or_else(|| number_range(ty)) {
                Some(range) => format!("got {got}; expected {range}"),
                None => format!("got {got}; expected a {ty}"),
            }
        }
        E::SerdeUnknownField {
            field: key,
            expected,
            ..
        } => {
            let hint = nearest(key, expected)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            let list = if expected.is_empty() {
                "no keys here".to_string()
            } else {
                format!("one of {}", expected.join(", "))
            };
            format!("unknown key `{key}`; expected {list}{hint}")
        }
        _ => explain(&err.without_snippet().to_string()),
    };
    (field, msg)
}

/// Whether an error is about the YAML stream as a whole (not about a key
/// or a value microseed expects), and so not left to the typed parse.
fn is_structural(err: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match err {
        E::AliasError { error, .. } => is_structural(error.without_snippet()),
        E::Budget { .. }
        | E::MultipleDocuments { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::RecursiveReferencesRequireWeakTypes { .. }
        | E::UnknownAnchor { .. } => true,
        _ => false,
    }
}

/// The plain scalar the parser stopped at, for quoting it back to the user.
fn scalar_at(text: &str, pos: Pos) -> String {
    let line = text
        .lines()
        .nth(pos.line.saturating_sub(1) as usize)
        .unwrap_or("");
    let rest: String = line
        .chars()
        .skip(pos.column.saturating_sub(1) as usize)
        .collect();
    let value = rest.split(" #").next().unwrap_or("").trim();
    let value = value.trim_end_matches([',', ']', '}']).trim();
    if value.is_empty() || value.chars().count() > 40 {
        "this value".to_string()
    } else {
        format!("{value:?}")
    }
}

/// What a numeric field accepts, where that is narrower than its type.
fn field_range(field: &str) -> Option<&'static str> {
    Some(match field {
        "version" => "1",
        "ssh.port" => "a TCP port from 1 to 65535",
        "nfs.uid" | "nfs.gid" => "an id from 1 to 65533",
        "nfs.validator_clients" => "a whole number from 1 to 64",
        _ => return None,
    })
}

fn number_range(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number, 0 or more",
        "i32" | "i64" => "a whole number",
        "bool" | "boolean" => "true or false",
        _ => return None,
    })
}

/// Rewrites serde's wording into something a user can act on.
fn explain(raw: &str) -> String {
    let msg = raw.lines().next().unwrap_or(raw).trim().to_string();
    let msg = msg
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line ") || head.starts_with("error"))
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(msg);
    // serde-saphyr appends the position, which we print in front already.
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}

/// Reads only `version`, ignoring every other key.
#[derive(Deserialize)]
struct VersionOnly {
    version: Option<Spanned<serde_saphyr_value::Any>>,
}

mod serde_saphyr_value {
    //! Accepts any YAML value, so the version probe never fails on the rest.
    use serde::Deserialize;
    #[derive(Debug)]
    pub struct Any(pub Option<u64>);
    impl<'de> Deserialize<'de> for Any {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum V {
                N(u64),
                Other(serde::de::IgnoredAny),
            }
            Ok(match V::deserialize(d)? {
                V::N(n) => Any(Some(n)),
                V::Other(_) => Any(None),
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
            let (field, message) = plain(err.without_snippet(), String::new(), text, pos);
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
        Some(v) if v.value.0 == Some(SUPPORTED_VERSION as u64) => Ok(()),
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
