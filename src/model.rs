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
    /// `microk8s.api_vip`: the API server's virtual address, held by one
    /// healthy master at a time (keepalived); only with 3 or 5 masters.
    pub api_vip: Option<ApiVip>,
}

/// The API server's virtual address and its VRRP instance.
#[derive(Debug, Clone, Serialize)]
pub struct ApiVip {
    pub ip: Ipv4Addr,
    /// VRRP's virtual router id (1..=255), derived from the cluster's name
    /// and the address, so two microseed clusters on one LAN are unlikely
    /// to share one and a rebuild gets the same.
    pub router_id: u8,
}

impl ApiVip {
    pub fn new(cluster_name: &str, ip: Ipv4Addr) -> ApiVip {
        // FNV-1a: stable across releases and platforms (std's hasher is not).
        let mut h: u32 = 0x811c_9dc5;
        for b in cluster_name.bytes().chain(ip.octets()) {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        ApiVip {
            ip,
            router_id: (h % 255) as u8 + 1,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Nfs {
    pub export_root: String,
    /// The export gets its own logical volume (the rest of the disk) instead
    /// of living on the root filesystem.
    pub data_volume: bool,
    /// The disk the export lives on when it is not the root disk.
    pub data_disk: Option<DataDisk>,
    pub validator_clients: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The NFS server's data disk (`nfs.data_disk`): never in the autoinstall's
/// storage section, found at first boot by its serial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataDisk {
    /// The serial as the file gives it, or the `ID_SERIAL` a
    /// `/dev/disk/by-id/` name was made from (`crate::diskid`).
    pub serial: String,
    /// What first boot matches udev's `ID_SERIAL` against, with the root
    /// disk's rule (`crate::documents::serial_glob`: a plain serial anywhere
    /// inside it, a glob as written), so one name means one disk in both.
    pub pattern: String,
}

/// The staking stack (`crate::staking` renders it as Kubernetes objects).
/// Checked whether or not it is enabled; `network` and every validator's
/// fee recipient are known when it is.
#[derive(Debug, Clone, Serialize)]
pub struct Staking {
    pub enabled: bool,
    /// `mainnet` or `hoodi` ([`NETWORKS`]); `None` only when
    /// staking is off and the file does not say.
    pub network: Option<String>,
    pub execution: Execution,
    /// Prysm's version (beacon node and validator clients), an image tag.
    pub prysm_version: String,
    /// `None` only when the network is unknown.
    pub checkpoint_sync_url: Option<String>,
    /// One per validator client (`nfs.validator_clients`), in order.
    pub validators: Vec<Validator>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Execution {
    pub client: ExecutionClient,
    /// An image tag.
    pub version: String,
    /// The machine whose local disk holds the database.
    pub node: String,
    /// The database's directory there.
    pub path: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Validator {
    /// `0x` and 40 hex digits; `None` only when staking is off.
    pub fee_recipient: Option<String>,
    pub graffiti: String,
}

/// The execution clients the stack can run; Geth unless the file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionClient {
    Geth,
    Nethermind,
    Besu,
    Erigon,
    Reth,
}

impl ExecutionClient {
    pub const ALL: [ExecutionClient; 5] = [
        ExecutionClient::Geth,
        ExecutionClient::Nethermind,
        ExecutionClient::Besu,
        ExecutionClient::Erigon,
        ExecutionClient::Reth,
    ];

    /// The name the cluster file uses.
    pub fn name(self) -> &'static str {
        match self {
            ExecutionClient::Geth => "geth",
            ExecutionClient::Nethermind => "nethermind",
            ExecutionClient::Besu => "besu",
            ExecutionClient::Erigon => "erigon",
            ExecutionClient::Reth => "reth",
        }
    }
}

/// Networks a staking cluster can join: mainnet, and Hoodi, the public
/// testnet for stakers since March 2025 (the Ethereum Foundation moved
/// validator testing there and shut Holesky down after Fusaka, 2025).
pub const NETWORKS: &[&str] = &["mainnet", "hoodi"];

/// The eth2xk8s chart's graffiti, kept as the default.
pub const DEFAULT_GRAFFITI: &str = "eth2 x k8s";

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
    /// Position among the masters (0 for the first in the file), `None`
    /// for other roles: masters join one at a time in this order, and
    /// only the first may ever bootstrap a cluster.
    pub master_index: Option<usize>,
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
    /// The masters in file order (the order of `master_index`).
    pub fn masters(&self) -> impl Iterator<Item = &Machine> {
        self.machines.iter().filter(|m| m.master_index.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The router id is a pure function of the cluster's name and the
    /// address (a rebuilt master must pick the one its peers use), and
    /// always a valid VRRP id.
    #[test]
    fn the_vrrp_router_id_is_stable_and_in_range() {
        let ip = Ipv4Addr::new(172, 20, 10, 20);
        assert_eq!(ApiVip::new("eth2", ip).router_id, 30);
        assert_eq!(
            ApiVip::new("eth2", ip).router_id,
            ApiVip::new("eth2", ip).router_id
        );
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..2000u32 {
            let id = ApiVip::new(&format!("c{n}"), ip).router_id;
            assert!(id >= 1);
            seen.insert(id);
        }
        // Spread over the whole range, so neighbouring clusters rarely clash.
        assert_eq!(seen.len(), 255);
    }
}
