//! The profiles' data types, as `profiles/*.yaml` spell them. Kept free of
//! the rest of the crate: `build.rs` includes this file too, to parse the
//! embedded profiles once when microseed is built (see `profile::embedded`).

use serde::{Deserialize, Serialize};

/// How many machines of a role a cluster must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Count {
    ExactlyOne,
    /// 1, 3 or 5: a control plane that keeps a majority (dqlite's raft)
    /// when one (of 3) or two (of 5) fail. An even number tolerates no
    /// more failures than one fewer, and more than 5 adds only stand-bys.
    OneThreeOrFive,
    #[default]
    Any,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleProfile {
    pub description: String,
    /// Layers applied before this profile, in this order, each after the
    /// layers it names itself: what roles share is written once.
    #[serde(default)]
    pub layers: Vec<String>,
    #[serde(default)]
    pub count: Count,
    /// Added to the error when `count` is violated (e.g. why HA is not offered).
    #[serde(default)]
    pub count_note: Option<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    #[serde(default)]
    pub firewall: Vec<FirewallRule>,
    /// Interfaces (ufw names, `+` as wildcard) whose traffic is allowed in
    /// and out, such as the CNI's pod interfaces.
    #[serde(default)]
    pub firewall_interfaces: Vec<String>,
    /// ufw's policy for forwarded traffic (`allow` where pods route).
    #[serde(default)]
    pub firewall_routed: Option<Routed>,
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// First-boot work, each step run by its own systemd unit until done.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Further units (timers) enabled and started with the steps.
    #[serde(default)]
    pub enable: Vec<String>,
    #[serde(default)]
    pub runcmd: Vec<Step>,
}

/// One idempotent first-boot step: `run` is retried with capped backoff,
/// on every boot, until it succeeds once; it starts only when the steps in
/// `after` are done. Steps without a dependency between them run in
/// parallel, so one failing never holds up another.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unit `microseed-<name>.service`, marker `/var/lib/microseed/done/<name>`.
    pub name: String,
    pub description: String,
    pub run: Vec<String>,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Routed {
    Allow,
    Deny,
}

/// One ufw allow rule. `port` and `from` may use template expressions
/// (`{{ ssh.port }}`); `from` is `anywhere`, `cluster` (the subnet) or a CIDR.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FirewallRule {
    pub port: String,
    pub proto: Proto,
    #[serde(default = "default_from")]
    pub from: String,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub when: Option<String>,
}

fn default_from() -> String {
    "cluster".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// A file placed on the machine, its body rendered from a template in `cloud-init/`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: String,
    pub template: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    /// A template expression; the file is placed only when it is true.
    #[serde(default)]
    pub when: Option<String>,
}

fn default_mode() -> String {
    "0644".into()
}

/// One first-boot command, as an argv list (never through a shell).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub run: Vec<String>,
    #[serde(default)]
    pub when: Option<String>,
}

/// What microseed needs to know about an Ubuntu release.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseProfile {
    pub release: String,
    pub codename: String,
    pub iso: IsoSource,
    /// The key whose signature on `SHA256SUMS` is trusted when `iso.pin` is absent.
    pub signing_key: SigningKey,
    pub boot: BootFiles,
    /// What the release's installer reads best.
    #[serde(default)]
    pub autoinstall: AutoinstallForm,
    /// The MicroK8s channels that work on this release. Absent (a profile
    /// written before releases said so): the guide's 1.20/stable, any track.
    #[serde(default)]
    pub microk8s: ReleaseMicrok8s,
    /// How the release's OpenSSH server listens.
    #[serde(default)]
    pub ssh: ReleaseSsh,
    /// The last day of the release's standard support (YYYY-MM-DD), as
    /// Ubuntu's release cycle publishes it; `check` warns after it.
    /// Absent: no date is known, and nothing is said.
    #[serde(default)]
    pub standard_support_ends: Option<String>,
    /// Where this profile was read from (`embedded:…` or an overlay path),
    /// so a trust decision taken from an overlay can say so.
    #[serde(skip)]
    pub origin: std::path::PathBuf,
}

/// How the `network:` section of `autoinstall:` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkForm {
    /// `network: {network: {version: 2, ...}}`: the 20.04 GA installer
    /// required it; every later one still accepts it.
    #[default]
    Nested,
    /// `network: {version: 2, ...}`, the documented form from 22.04.
    Plain,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AutoinstallForm {
    #[serde(default)]
    pub network: NetworkForm,
}

/// A release's MicroK8s defaults and limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMicrok8s {
    /// Used when the cluster file names no channel, and written by
    /// `microseed init --release`.
    pub default_channel: String,
    /// The oldest track that runs on this release (`major.minor`), if any
    /// is too old.
    #[serde(default)]
    pub min_track: Option<String>,
    /// Why older tracks cannot work here, for the error message.
    #[serde(default)]
    pub min_track_reason: Option<String>,
}

impl Default for ReleaseMicrok8s {
    fn default() -> Self {
        ReleaseMicrok8s {
            default_channel: "1.20/stable".into(),
            min_track: None,
            min_track_reason: None,
        }
    }
}

/// How the release's sshd gets its listening port.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSsh {
    /// `ssh.socket` listens instead of sshd (Ubuntu 22.10+): its port comes
    /// from a systemd generator reading sshd_config at `daemon-reload`.
    #[serde(default)]
    pub socket_activated: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IsoSource {
    pub file: String,
    pub url: String,
    pub sha256sums_url: String,
    /// The detached OpenPGP signature of `sha256sums_url`.
    pub signature_url: String,
    /// The point release's digest, taken from Ubuntu's SHA256SUMS once and
    /// recorded here: with it a cached ISO is used with no network at all.
    #[serde(default)]
    pub pin: Option<Pin>,
}

/// A pinned ISO digest and where and when it was checked.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    /// Lower-case hex sha256 of `iso.file`.
    pub sha256: String,
    /// Where the digest was read and how it was checked.
    pub source: String,
    /// The day it was checked (YYYY-MM-DD).
    pub checked_on: String,
    /// The ISO's size in bytes, where recorded: a download is cut off past
    /// it (else at `iso::download::MAX_ISO_BYTES`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// An OpenPGP public key shipped with the profiles (a path under `profiles/`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKey {
    pub file: String,
    /// The primary key's full fingerprint (40 hex digits, spaces allowed):
    /// only a signature by this key is accepted, whatever else the file holds.
    pub fingerprint: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootFiles {
    pub kernel: String,
    pub initrd: String,
    /// Boot menus whose kernel command lines get `autoinstall`.
    pub configs: Vec<String>,
}

/// `profiles/microk8s-tracks.yaml`: how long each MicroK8s track is
/// supported, as data, so a new date needs no code.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Microk8sTracks {
    /// Where the dates come from and how MicroK8s follows them.
    pub source: String,
    /// The day the dates were read (YYYY-MM-DD).
    pub checked_on: String,
    /// Per track (`major.minor`), the last day it is supported (YYYY-MM-DD).
    /// A track not listed (a newer one) is taken to be supported.
    pub tracks: std::collections::BTreeMap<String, String>,
}
