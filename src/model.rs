//! The validated cluster: plain values a later stage can trust without
//! re-checking. Built only by [`crate::validate`]; serialized as the context
//! templates see (so field names here are part of the template interface).

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::Serialize;

use crate::profile::ReleaseProfile;

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    /// The release's profile, looked up once by validation; templates see
    /// its name (`cluster.release`), as written in the cluster file.
    #[serde(serialize_with = "release_name")]
    pub release: ReleaseProfile,
    pub timezone: String,
    pub locale: String,
    pub keyboard: Keyboard,
    pub network: Network,
    pub ntp_pools: Vec<String>,
    pub admin: Admin,
    pub ssh: Ssh,
    pub microk8s: Microk8s,
    pub nfs: Nfs,
    pub staking: Staking,
    /// `maintenance.refresh_window` as written (each machine's own slot
    /// is `Machine::refresh_timer`).
    pub refresh_window: String,
    pub machines: Vec<Machine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Keyboard {
    pub layout: String,
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/p` with a prefix usable for a LAN (8..=30).
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = s.split_once('/')?;
        let addr = Ipv4Addr::from_str(a).ok()?;
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 2 {
            return None;
        }
        let prefix: u8 = p.parse().ok()?;
        (8..=30).contains(&prefix).then_some(Cidr { addr, prefix })
    }

    pub fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !self.mask())
    }
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// Always the network address form, e.g. `172.20.0.0/20`; templates
    /// see that text.
    #[serde(serialize_with = "display")]
    pub subnet: Cidr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub dns: Vec<IpAddr>,
    pub search_domains: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Admin {
    pub username: String,
    pub ssh_keys: Vec<String>,
    pub password_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ssh {
    pub port: u16,
    pub password_auth: bool,
    /// CIDR allowed to reach ssh, or `None` for anywhere.
    pub allow_from: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Microk8s {
    pub channel: String,
    /// `latest` or a `major.minor` version.
    pub track: String,
    /// (major, minor) of the track; `latest` counts as newer than any release.
    pub version: (u32, u32),
    pub addons: Vec<String>,
    /// What this channel does (token validation, `--worker`, the joined
    /// check, ...): the one place scripts learn it from.
    pub caps: crate::microk8s::Capabilities,
    /// `crate::microk8s::FINGERPRINT_PORT`, for the templates.
    pub fingerprint_port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nfs {
    pub export_root: String,
    /// The export gets its own logical volume (the rest of the disk) instead
    /// of living on the root filesystem.
    pub data_volume: bool,
    pub validator_clients: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Staking {
    pub enabled: bool,
    pub chart: Option<String>,
    /// `mainnet`, a testnet name, or `None` when the cluster file does not say.
    pub network: Option<String>,
    pub eth1_endpoints: Vec<String>,
    pub graffiti: String,
    pub genesis_state_file: Option<String>,
}

/// The chart's own graffiti default (eth2xk8s `prysm/helm/values.yaml`).
pub const DEFAULT_GRAFFITI: &str = "eth2 x k8s";

/// Networks the `network` key accepts: the chart passes a testnet's name to
/// Prysm as `--NAME`; mainnet is the absence of that flag.
pub const NETWORKS: &[&str] = &["mainnet", "prater", "goerli", "sepolia", "holesky", "hoodi"];

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub name: String,
    pub role: String,
    pub ip: Ipv4Addr,
    /// Position in the cluster file; used to stagger joins.
    pub index: usize,
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: Option<String>,
    pub interface: Option<String>,
    pub disk: Disk,
    /// This machine's slot of the cluster's refresh window, as snapd's
    /// `refresh.timer` reads it (`sat,02:00-03:20`): no two machines share
    /// one, so no two refresh MicroK8s at once.
    pub refresh_timer: String,
}

/// Which disk the installer wipes and installs onto. Templates see it as
/// the cluster file spells it (`largest`, `{serial: ...}`, `{path: ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disk {
    Largest,
    /// The disk's serial or a glob of it (checked by validation).
    Serial(String),
    /// A device path under `/dev`.
    Path(String),
}

fn release_name<S: serde::Serializer>(r: &ReleaseProfile, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&r.release)
}

fn display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

impl Cluster {
    pub fn machine(&self, name: &str) -> Option<&Machine> {
        self.machines.iter().find(|m| m.name == name)
    }
}
