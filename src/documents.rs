//! Rendered documents: the YAML that subiquity and cloud-init read, built from
//! typed structs and serialized with serde-saphyr (which quotes `no`, `on`,
//! dates and other YAML 1.1 traps that PyYAML would otherwise reinterpret).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Cluster;
use crate::model::Disk;
use crate::plan::Plan;
use crate::profile::NetworkForm;

/// What the seed's `user-data` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Ubuntu's installer: `user-data` holds `autoinstall:`, whose
    /// `user-data:` is the installed system's first-boot cloud-config.
    Installer,
    /// A VM started from an Ubuntu cloud image: `user-data` is the
    /// first-boot cloud-config itself.
    CloudImage,
}

/// The three NoCloud documents of one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Documents {
    pub user_data: String,
    pub meta_data: String,
    pub network_config: String,
}

impl Documents {
    /// File name and bytes, in the order they are written and listed.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [
            ("meta-data", self.meta_data.as_bytes()),
            ("network-config", self.network_config.as_bytes()),
            ("user-data", self.user_data.as_bytes()),
        ]
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        match name {
            "user-data" => Some(&self.user_data),
            "meta-data" => Some(&self.meta_data),
            "network-config" => Some(&self.network_config),
            _ => None,
        }
    }
}

// ---- first-boot cloud-config ----

#[derive(Debug, Serialize)]
pub struct CloudConfig {
    pub hostname: String,
    /// /etc/hosts is written from a template listing every cluster machine;
    /// cloud-init must not rewrite it.
    pub manage_etc_hosts: bool,
    pub timezone: String,
    pub users: Vec<User>,
    pub ssh_pwauth: bool,
    pub disable_root: bool,
    pub package_update: bool,
    pub package_upgrade: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    pub write_files: Vec<WriteFile>,
    pub runcmd: Vec<RunCmd>,
}

/// One runcmd entry: a shell line or an argv list (which cloud-init quotes).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RunCmd {
    Shell(String),
    Argv(Vec<String>),
}

#[derive(Debug, Serialize)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    pub shell: String,
    pub sudo: String,
    pub lock_passwd: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashed_passwd: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct WriteFile {
    pub path: String,
    pub content: String,
    pub owner: String,
    pub permissions: String,
}

// ---- netplan v2 ----

#[derive(Debug, Serialize)]
pub struct Netplan {
    pub version: u8,
    pub ethernets: std::collections::BTreeMap<String, Ethernet>,
}

#[derive(Debug, Serialize)]
pub struct Ethernet {
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<Match>,
    #[serde(rename = "set-name", skip_serializing_if = "Option::is_none")]
    pub set_name: Option<String>,
    pub dhcp4: bool,
    pub dhcp6: bool,
    pub addresses: Vec<String>,
    pub routes: Vec<Route>,
    pub nameservers: Nameservers,
}

#[derive(Debug, Serialize)]
pub struct Match {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub macaddress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Route {
    pub to: String,
    pub via: String,
}

#[derive(Debug, Serialize)]
pub struct Nameservers {
    pub addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
}

// ---- autoinstall ----

#[derive(Debug, Serialize)]
struct InstallerUserData {
    autoinstall: Autoinstall,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Autoinstall {
    pub version: u8,
    pub locale: String,
    pub keyboard: KeyboardSection,
    /// As the release's installer reads it best (see [`NetworkSection`]).
    pub network: NetworkSection,
    pub storage: Storage,
    pub ssh: SshSection,
    /// argv lists (never shell text): see [`late_commands`].
    pub late_commands: Vec<Vec<String>>,
    pub user_data: CloudConfig,
}

#[derive(Debug, Serialize)]
pub struct KeyboardSection {
    pub layout: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The `network:` section of `autoinstall:`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum NetworkSection {
    /// `network: {network: …}`, which the 20.04 GA installer requires.
    Nested(NetworkWrap),
    /// `network: {version: 2, …}`, documented from 22.04.
    Plain(Netplan),
}

impl NetworkSection {
    pub fn new(form: NetworkForm, netplan: Netplan) -> NetworkSection {
        match form {
            NetworkForm::Nested => NetworkSection::Nested(NetworkWrap { network: netplan }),
            NetworkForm::Plain => NetworkSection::Plain(netplan),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct NetworkWrap {
    pub network: Netplan,
}

#[derive(Debug, Serialize)]
pub struct Storage {
    pub layout: Layout,
}

#[derive(Debug, Serialize)]
pub struct Layout {
    pub name: String,
    #[serde(rename = "match")]
    pub match_: DiskMatch,
}

#[derive(Debug, Serialize)]
pub struct DiskMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SshSection {
    pub install_server: bool,
    pub authorized_keys: Vec<String>,
    pub allow_pw: bool,
}

/// Serializes a document. Long single-line values (ssh keys) stay on one
/// line: folding them is valid YAML but hard to read and to grep.
pub fn yaml<T: Serialize>(v: &T) -> anyhow::Result<String> {
    let mut opts = serde_saphyr::SerializerOptions::default();
    opts.folded_wrap_chars = usize::MAX / 2;
    Ok(serde_saphyr::to_string_with_options(v, opts)?)
}

/// The first-boot cloud-config of one machine.
pub fn cloud_config(cluster: &Cluster, plan: &Plan) -> CloudConfig {
    let a = &cluster.admin;
    CloudConfig {
        // No `preserve_hostname`: cloud-init's default (false) applies, and
        // the 20.04 GA installer forces it to true anyway (the late-command
        // writing /etc/hostname covers that case).
        hostname: plan.machine.name.clone(),
        manage_etc_hosts: false,
        timezone: cluster.timezone.clone(),
        users: vec![User {
            name: a.username.clone(),
            groups: vec!["adm".into(), "sudo".into()],
            shell: "/bin/bash".into(),
            // Key-only admins have no password to type at sudo's prompt.
            sudo: if a.password_hash.is_some() {
                "ALL=(ALL) ALL".into()
            } else {
                "ALL=(ALL) NOPASSWD:ALL".into()
            },
            lock_passwd: a.password_hash.is_none(),
            hashed_passwd: a.password_hash.clone(),
            ssh_authorized_keys: a.ssh_keys.clone(),
        }],
        ssh_pwauth: cluster.ssh.password_auth,
        disable_root: true,
        // apt runs in the `packages` step, which retries it: a failure in
        // cloud-init's own apt module would not be retried, and everything
        // needing those packages would fail with it.
        package_update: false,
        package_upgrade: false,
        packages: Vec::new(),
        write_files: plan
            .files
            .iter()
            .map(|f| WriteFile {
                path: f.path.clone(),
                content: f.content.clone(),
                owner: "root:root".into(),
                permissions: f.mode.clone(),
            })
            .collect(),
        // cloud-init runs runcmd as one sh script whose status is its last
        // command's: without `set -e` a failure to enable the step units
        // would pass unnoticed.
        runcmd: std::iter::once(RunCmd::Shell("set -e".into()))
            .chain(plan.runcmd.iter().cloned().map(RunCmd::Argv))
            .collect(),
    }
}

/// The machine's static address as netplan v2.
pub fn netplan(cluster: &Cluster, plan: &Plan) -> Netplan {
    let m = &plan.machine;
    // Without a MAC or a name, match any wired NIC the kernel calls en*: right
    // for the common one-NIC machine; multi-NIC machines should give a MAC.
    let (id, match_, set_name) = match (&m.mac, &m.interface) {
        (Some(mac), ifname) => (
            ifname.clone().unwrap_or_else(|| "lan0".into()),
            Some(Match {
                macaddress: Some(mac.clone()),
                name: None,
            }),
            ifname.clone(),
        ),
        (None, Some(ifname)) => (ifname.clone(), None, None),
        (None, None) => (
            "lan0".into(),
            Some(Match {
                macaddress: None,
                name: Some("en*".into()),
            }),
            None,
        ),
    };
    let eth = Ethernet {
        match_,
        set_name,
        dhcp4: false,
        dhcp6: false,
        addresses: vec![format!("{}/{}", m.ip, cluster.network.prefix)],
        routes: vec![Route {
            to: "0.0.0.0/0".into(),
            via: cluster.network.gateway.to_string(),
        }],
        nameservers: Nameservers {
            addresses: cluster.network.dns.iter().map(|d| d.to_string()).collect(),
            search: cluster.network.search_domains.clone(),
        },
    };
    Netplan {
        version: 2,
        ethernets: [(id, eth)].into_iter().collect(),
    }
}

fn storage(disk: &Disk) -> Storage {
    let mut m = DiskMatch {
        size: None,
        serial: None,
        path: None,
    };
    match disk {
        Disk::Largest => m.size = Some("largest".into()),
        Disk::Serial(s) => m.serial = Some(serial_glob(s)),
        Disk::Path(p) => m.path = Some(p.clone()),
    }
    Storage {
        layout: Layout {
            name: "lvm".into(),
            match_: m,
        },
    }
}

/// What subiquity matches `serial` against is udev's `ID_SERIAL` (with
/// fnmatch), which for ATA, SCSI and NVMe disks is `MODEL_SHORTSERIAL`: the
/// short serial `lsblk -o SERIAL` prints never equals it. A serial without
/// glob characters therefore becomes `*S*`, which matches the short serial
/// and the full `ID_SERIAL` alike; a glob is the user's own and passes as is.
pub fn serial_glob(s: &str) -> String {
    if s.contains(['*', '?', '[']) {
        s.to_string()
    } else {
        format!("*{s}*")
    }
}

/// Root volume size, in GiB, when the NFS server's export gets its own volume.
pub const ROOT_GIB_WITH_DATA_VOLUME: u32 = 30;

/// The cloud-init drop-in that keeps the installed seed in charge.
#[derive(Debug, Serialize)]
struct DatasourceDropIn {
    datasource: DatasourceSection,
}

#[derive(Debug, Serialize)]
struct DatasourceSection {
    #[serde(rename = "NoCloud")]
    no_cloud: NoCloudSection,
}

#[derive(Debug, Serialize)]
struct NoCloudSection {
    /// `None` (YAML null) turns off NoCloud's scan for a CIDATA-labelled
    /// device; the default label is `cidata`.
    fs_label: Option<String>,
}

/// The installed system's datasource drop-in,
/// `/etc/cloud/cloud.cfg.d/90-microseed-datasource.cfg`.
pub fn datasource_dropin() -> anyhow::Result<String> {
    // The 20.04 GA installer hands the first-boot config over as a NoCloud
    // seed directory; cloud-init 20.1 then lets a CIDATA device (a seed stick
    // left plugged in) replace that user-data. Later installers set
    // `datasource_list: [None]`, which this leaves alone.
    Ok(format!(
        "# microseed: the installed seed, never a CIDATA device, is this machine's config\n{}",
        yaml(&DatasourceDropIn {
            datasource: DatasourceSection {
                no_cloud: NoCloudSection { fs_label: None },
            },
        })?
    ))
}

/// The cloud-init drop-in that keeps cloud-init from rendering a network of
/// its own on the installed system: `network: {config: disabled}`.
#[derive(Debug, Serialize)]
struct NetworkDropIn {
    network: NetworkSwitch,
}

#[derive(Debug, Serialize)]
struct NetworkSwitch {
    config: &'static str,
}

/// The installed system's network drop-in,
/// `/etc/cloud/cloud.cfg.d/99-microseed-network.cfg`.
pub fn network_dropin() -> anyhow::Result<String> {
    // subiquity 23.10 to 24.04.x hand the installed network to cloud-init
    // (`90-installer-network.cfg`) when the live system's cloud-init has
    // NETPLAN_CONFIG_ROOT_READ_ONLY; cloud-init would then render a second
    // netplan at first boot. The late-command's netplan is the only one, so
    // cloud-init's network rendering stays off on every revision.
    Ok(format!(
        "# microseed: the network is /etc/netplan/00-installer-config.yaml, written at install\n{}",
        yaml(&NetworkDropIn {
            network: NetworkSwitch { config: "disabled" },
        })?
    ))
}

const TARGET_FILES_SH: &str = include_str!("install/target-files.sh");
const STORAGE_SH: &str = include_str!("install/storage.sh");

/// The install phase's own steps, run by the installer after it has
/// installed the system. Each is `sh -c SCRIPT NAME ARG...`: values reach the
/// script as arguments, so no user string is ever parsed as shell.
pub fn late_commands(cluster: &Cluster, plan: &Plan) -> anyhow::Result<Vec<Vec<String>>> {
    let net = yaml(&NetworkWrap {
        network: netplan(cluster, plan),
    })?;
    let files = vec![
        "sh".into(),
        "-c".into(),
        TARGET_FILES_SH.into(),
        "microseed-target-files".into(),
        plan.machine.name.clone(),
        net,
        datasource_dropin()?,
        network_dropin()?,
    ];
    let data_volume = plan.machine.role == "nfs" && cluster.nfs.data_volume;
    let storage = vec![
        "sh".into(),
        "-c".into(),
        STORAGE_SH.into(),
        "microseed-storage".into(),
        if data_volume { "data" } else { "root" }.into(),
        cluster.nfs.export_root.clone(),
        ROOT_GIB_WITH_DATA_VOLUME.to_string(),
    ];
    Ok(vec![files, storage])
}

/// Renders the three documents of one machine.
pub fn for_machine(cluster: &Cluster, plan: &Plan, target: Target) -> anyhow::Result<Documents> {
    let cc = cloud_config(cluster, plan);
    let user_data = match target {
        Target::CloudImage => format!("#cloud-config\n{}", yaml(&cc)?),
        Target::Installer => {
            let ai = Autoinstall {
                version: 1,
                locale: cluster.locale.clone(),
                keyboard: KeyboardSection {
                    layout: cluster.keyboard.layout.clone(),
                    variant: cluster.keyboard.variant.clone(),
                },
                network: NetworkSection::new(plan.network_form, netplan(cluster, plan)),
                storage: storage(&plan.machine.disk),
                ssh: SshSection {
                    install_server: true,
                    authorized_keys: cluster.admin.ssh_keys.clone(),
                    allow_pw: cluster.ssh.password_auth,
                },
                late_commands: late_commands(cluster, plan)?,
                user_data: cc,
            };
            format!(
                "#cloud-config\n{}",
                yaml(&InstallerUserData { autoinstall: ai })?
            )
        }
    };
    let network_config = yaml(&netplan(cluster, plan))?;
    // A new instance-id whenever the seed's content changes makes cloud-init
    // treat a re-seeded machine as new; the same content keeps the same id.
    let mut h = Sha256::new();
    h.update(user_data.as_bytes());
    h.update([0]);
    h.update(network_config.as_bytes());
    let digest = hex::encode(h.finalize());
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct MetaData<'a> {
        instance_id: String,
        local_hostname: &'a str,
    }
    let meta_data = yaml(&MetaData {
        instance_id: format!("microseed-{}-{}", plan.machine.name, &digest[..16]),
        local_hostname: &plan.machine.name,
    })?;
    Ok(Documents {
        user_data,
        meta_data,
        network_config,
    })
}

#[cfg(test)]
mod tests {
    use super::serial_glob;

    #[test]
    fn a_plain_serial_matches_inside_udevs_id_serial() {
        // udev's ID_SERIAL is MODEL_SHORTSERIAL; the short serial sits inside it.
        let g = serial_glob("WD-WCC7K0TESTSER");
        assert_eq!(g, "*WD-WCC7K0TESTSER*");
        assert_eq!(
            serial_glob("WDC_WD40EFRX_WD-WCC7K0TESTSER"),
            "*WDC_WD40EFRX_WD-WCC7K0TESTSER*"
        );
    }

    #[test]
    fn a_glob_serial_passes_unchanged() {
        assert_eq!(serial_glob("WDC_WD40EFRX_*"), "WDC_WD40EFRX_*");
        assert_eq!(serial_glob("S4EW?X0R[12]*"), "S4EW?X0R[12]*");
    }
}
