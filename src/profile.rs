//! What each role and each Ubuntu release is, as data read from `profiles/`.
//! `profiles/common.yaml` applies to every machine, then `profiles/roles/<role>.yaml`;
//! `profiles/releases/<release>.yaml` describes an Ubuntu release's installer.
//! Adding a role is adding a file here and its templates, not code.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::assets::Tree;
use crate::cluster::parse_typed;

/// How many machines of a role a cluster must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Count {
    ExactlyOne,
    #[default]
    Any,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleProfile {
    pub description: String,
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
    /// Where this profile was read from (`embedded:…` or an overlay path),
    /// so a trust decision taken from an overlay can say so.
    #[serde(skip)]
    pub origin: std::path::PathBuf,
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

/// All profiles, loaded once per run.
#[derive(Debug, Clone)]
pub struct Profiles {
    pub common: RoleProfile,
    pub roles: BTreeMap<String, RoleProfile>,
    pub releases: BTreeMap<String, ReleaseProfile>,
}

impl Profiles {
    pub fn load(overlay: Option<&Path>) -> Result<Profiles> {
        let tree = Tree::profiles(overlay);
        let common = load_one(&tree, "common.yaml")?;
        let mut roles = BTreeMap::new();
        for name in tree.list("roles")? {
            if let Some(role) = name
                .strip_prefix("roles/")
                .and_then(|n| n.strip_suffix(".yaml"))
            {
                roles.insert(role.to_string(), load_one(&tree, &name)?);
            }
        }
        let mut releases = BTreeMap::new();
        for name in tree.list("releases")? {
            if name.ends_with(".yaml") {
                let mut r: ReleaseProfile = load_one(&tree, &name)?;
                r.origin = tree.get(&name)?.map(|a| a.origin).unwrap_or_default();
                releases.insert(r.release.clone(), r);
            }
        }
        if roles.is_empty() {
            return Err(anyhow!("no role profiles found under profiles/roles/"));
        }
        Ok(Profiles {
            common,
            roles,
            releases,
        })
    }
}

fn load_one<T: for<'de> Deserialize<'de>>(tree: &Tree, name: &str) -> Result<T> {
    let asset = tree
        .get(name)?
        .with_context(|| format!("profile {name} not found"))?;
    parse_typed(&asset.origin, &asset.text)
        .map_err(|e| anyhow!("invalid profile: {e}"))
        .with_context(|| format!("loading profile {}", asset.origin.display()))
}
