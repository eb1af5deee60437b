//! Rendered documents: the YAML that subiquity and cloud-init read, built from
//! typed structs and serialized with serde-saphyr (which quotes `no`, `on`,
//! dates and other YAML 1.1 traps that PyYAML would otherwise reinterpret).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::Cluster;
use crate::model::Disk;
use crate::plan::{Plan, PlannedFile};
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
    /// SHA-256 of each file, in [`Documents::files`] order. Computed once,
    /// while the instance-id is derived, and reused by the manifest and the
    /// seed image's identifiers: hashing every user-data three times was a
    /// tenth of a fleet build.
    sha256: [[u8; 32]; 3],
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

    /// The SHA-256 of each of [`Documents::files`], in the same order.
    pub fn sha256(&self) -> &[[u8; 32]; 3] {
        &self.sha256
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
    cloud_config_with(cluster, plan, |_, f| f.content.clone())
}

/// [`cloud_config`] with each write_files body chosen by `content` (given
/// the file's index in the plan and the file).
fn cloud_config_with(
    cluster: &Cluster,
    plan: &Plan,
    content: impl Fn(usize, &PlannedFile) -> String,
) -> CloudConfig {
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
            .enumerate()
            .map(|(i, f)| WriteFile {
                path: f.path.clone(),
                content: content(i, f),
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
    // With a MAC or a name, one device. With neither, the wired NIC whatever
    // the kernel named it: right on the common one-NIC machine, whose NIC
    // name (eno1, enp1s0, ens18) is unknown before it first boots. netplan
    // gives a definition's address to every device its `match` selects
    // (doc/netplan-yaml.md), so on a machine with two wired NICs both would
    // get it: `check` warns about every machine with neither.
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

/// A non-secret id of the cluster (32 hex digits): the installed system keeps
/// it in `/etc/microseed/cluster-id`, and the cluster stick (`crate::stick`) refuses a disk holding a
/// system with the stick's id (a stick left in at a reboot). Derived from the
/// cluster's name and subnet, so a rebuilt stick still recognises machines
/// installed from an older one.
pub fn cluster_id(cluster: &Cluster) -> String {
    let h = Sha256::new()
        .chain_update(b"microseed cluster-id\0")
        .chain_update(cluster.name.as_bytes())
        .chain_update([0])
        .chain_update(cluster.network.subnet.to_string().as_bytes())
        .finalize();
    hex::encode(&h[..16])
}

const TARGET_FILES_SH: &str = include_str!("install/target-files.sh");
const STORAGE_SH: &str = include_str!("install/storage.sh");

/// The install phase's own steps, run by the installer after it has
/// installed the system. Each is `sh -c SCRIPT NAME ARG...`: values reach the
/// script as arguments, so no user string is ever parsed as shell.
pub fn late_commands(cluster: &Cluster, plan: &Plan) -> anyhow::Result<Vec<Vec<String>>> {
    late_commands_with(cluster, plan, |_, script| script.to_string())
}

/// The scripts of [`late_commands`], in order: the same text for every
/// machine, so a fleet build serializes them once (see [`SharedBodies`]).
const INSTALL_SCRIPTS: [&str; 2] = [TARGET_FILES_SH, STORAGE_SH];

/// [`late_commands`] with `script(j, text)` standing for the `j`th of
/// [`INSTALL_SCRIPTS`].
fn late_commands_with(
    cluster: &Cluster,
    plan: &Plan,
    script: impl Fn(usize, &'static str) -> String,
) -> anyhow::Result<Vec<Vec<String>>> {
    let net = yaml(&NetworkWrap {
        network: netplan(cluster, plan),
    })?;
    let files = vec![
        "sh".into(),
        "-c".into(),
        script(0, INSTALL_SCRIPTS[0]),
        "microseed-target-files".into(),
        plan.machine.name.clone(),
        net,
        datasource_dropin()?,
        network_dropin()?,
        cluster_id(cluster),
    ];
    let data_volume = plan.machine.role == "nfs" && cluster.nfs.data_volume;
    let storage = vec![
        "sh".into(),
        "-c".into(),
        script(1, INSTALL_SCRIPTS[1]),
        "microseed-storage".into(),
        if data_volume { "data" } else { "root" }.into(),
        cluster.nfs.export_root.clone(),
        ROOT_GIB_WITH_DATA_VOLUME.to_string(),
    ];
    Ok(vec![files, storage])
}

/// Serialized bodies shared by every machine of a run (see
/// [`PlannedFile::shared`]), kept from one machine to the next.
///
/// A fleet's /etc/hosts lists every machine, so each user-data carries the
/// same tens of kilobytes; serializing them again for every machine was the
/// largest cost of a fleet build after hashing. A shared body is serialized
/// as a short placeholder instead, and the placeholder replaced by the bytes
/// serde-saphyr made of the real body for the first machine. That is
/// byte-identical to serializing the whole document because a scalar's
/// serialized form depends only on its value and on where it stands (the
/// target's document shape and the text before it on its line), which is
/// the key; and the first machine proves the placeholder and the body leave
/// the text around them alike, or the document is serialized whole.
pub struct SharedBodies {
    known: Vec<SharedBody>,
    /// Bodies shorter than this are serialized with their document: the
    /// first machine pays one more document serialization per body, which
    /// a small body never earns back (a 2-machine build has a dozen shared
    /// bodies of a few hundred bytes and was 40% slower spliced).
    min_len: usize,
}

impl Default for SharedBodies {
    fn default() -> SharedBodies {
        // /etc/hosts passes it from about 100 machines on.
        SharedBodies {
            known: Vec::new(),
            min_len: 4096,
        }
    }
}

struct SharedBody {
    target: Target,
    /// The text before the value on its line (`    content: `).
    line_prefix: String,
    content: String,
    /// What serde-saphyr wrote for `content` there.
    yaml: String,
}

impl SharedBodies {
    /// For a build of `machines` machines: from 64 machines on, every shared
    /// body of 512 bytes or more is spliced. The first machine of each role
    /// pays one more serialization per body, which a large fleet earns back
    /// many times: the scripts under 4 KiB were 10% of a 1,000-machine
    /// build's CPU, serialized again for every machine.
    pub fn for_fleet(machines: usize) -> SharedBodies {
        let mut bodies = SharedBodies::default();
        if machines >= 64 {
            bodies.min_len = 512;
        }
        bodies
    }

    /// The index in `known` of `content` serialized after `line_prefix`.
    fn find(&self, target: Target, line_prefix: &str, content: &str) -> Option<usize> {
        self.known.iter().position(|b| {
            b.target == target && b.line_prefix == line_prefix && b.content == content
        })
    }
}

/// Placeholders for shared bodies: this, then the file's index, then `-x`.
/// No serializer quotes or folds it.
const PLACEHOLDER: &str = "microseed-shared-body-";

fn placeholder(i: usize) -> String {
    format!("{PLACEHOLDER}{i}-x")
}

/// Where each of `count` placeholders stands in `text`, in file order;
/// `None` unless each occurs exactly once (a body or a value that happens
/// to hold the text makes the document be serialized whole). One SIMD pass:
/// `str::find` per placeholder was 5% of a fleet build.
fn placeholders_in(text: &str, shared: &[usize]) -> Option<Vec<usize>> {
    let mut at: Vec<Option<usize>> = vec![None; shared.len()];
    for pos in memchr::memmem::find_iter(text.as_bytes(), PLACEHOLDER) {
        let rest = &text[pos + PLACEHOLDER.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let i: usize = rest[..digits].parse().ok()?;
        if !rest[digits..].starts_with("-x") {
            return None;
        }
        let slot = at.get_mut(shared.iter().position(|&s| s == i)?)?;
        if slot.replace(pos).is_some() {
            return None;
        }
    }
    at.into_iter().collect()
}

/// The user-data of one machine, shared bodies serialized once per run.
///
/// A shared body is a slot: `0..files` are the plan's files (their
/// `write_files` content), `files..` the installer's late-command scripts.
fn user_data_sharing(
    cluster: &Cluster,
    plan: &Plan,
    target: Target,
    bodies: &mut SharedBodies,
) -> anyhow::Result<String> {
    let files = plan.files.len();
    let scripts: &[&'static str] = match target {
        Target::Installer => &INSTALL_SCRIPTS,
        Target::CloudImage => &[],
    };
    let content = |slot: usize| -> &str {
        match slot.checked_sub(files) {
            None => &plan.files[slot].content,
            Some(j) => scripts[j],
        }
    };
    // Only bodies serde-saphyr writes as block scalars: a single line may be
    // folded or quoted, which depends on its length and position.
    let long = |text: &str| text.len() >= bodies.min_len && text.contains('\n');
    let shared: Vec<usize> = (plan.files.iter().enumerate())
        .filter(|(_, f)| f.shared && long(&f.content))
        .map(|(i, _)| i)
        .chain(
            (0..scripts.len())
                .filter(|&j| long(scripts[j]))
                .map(|j| files + j),
        )
        .collect();
    let whole = || user_data(cluster, plan, target, cloud_config(cluster, plan));
    if shared.is_empty() {
        return whole();
    }
    // Every shared body but `keep` as its placeholder.
    let marked = |keep: Option<usize>| {
        let cc = cloud_config_with(cluster, plan, |i, f| {
            if Some(i) != keep && shared.contains(&i) {
                placeholder(i)
            } else {
                f.content.clone()
            }
        });
        user_data_with(cluster, plan, target, cc, |j, script| {
            let slot = files + j;
            if Some(slot) != keep && shared.contains(&slot) {
                placeholder(slot)
            } else {
                script.to_string()
            }
        })
    };
    let text = marked(None)?;
    let Some(places) = placeholders_in(&text, &shared) else {
        return whole();
    };
    // (where, placeholder length, index of the body in `bodies.known`)
    let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
    for (&i, &at) in shared.iter().zip(&places) {
        let mark = placeholder(i);
        let line_prefix = &text[text[..at].rfind('\n').map_or(0, |n| n + 1)..at];
        let content = content(i);
        let known = match bodies.find(target, line_prefix, content) {
            Some(k) => k,
            None => {
                let real = marked(Some(i))?;
                let (before, after) = (&text[..at], &text[at + mark.len()..]);
                if real.len() < before.len() + after.len()
                    || !real.starts_with(before)
                    || !real.ends_with(after)
                {
                    return whole();
                }
                bodies.known.push(SharedBody {
                    target,
                    line_prefix: line_prefix.to_string(),
                    content: content.to_string(),
                    yaml: real[before.len()..real.len() - after.len()].to_string(),
                });
                bodies.known.len() - 1
            }
        };
        pieces.push((at, mark.len(), known));
    }
    pieces.sort_by_key(|p| p.0);
    let yaml = |k: usize| bodies.known[k].yaml.as_str();
    let mut out =
        String::with_capacity(text.len() + pieces.iter().map(|p| yaml(p.2).len()).sum::<usize>());
    let mut from = 0;
    for &(at, len, k) in &pieces {
        out.push_str(&text[from..at]);
        out.push_str(yaml(k));
        from = at + len;
    }
    out.push_str(&text[from..]);
    Ok(out)
}

/// The user-data document around `cc`.
fn user_data(
    cluster: &Cluster,
    plan: &Plan,
    target: Target,
    cc: CloudConfig,
) -> anyhow::Result<String> {
    user_data_with(cluster, plan, target, cc, |_, script| script.to_string())
}

/// [`user_data`] with `script` standing for the install scripts (see
/// [`late_commands_with`]).
fn user_data_with(
    cluster: &Cluster,
    plan: &Plan,
    target: Target,
    cc: CloudConfig,
    script: impl Fn(usize, &'static str) -> String,
) -> anyhow::Result<String> {
    Ok(match target {
        Target::CloudImage => format!("#cloud-config\n{}", yaml(&cc)?),
        Target::Installer => {
            let ai = autoinstall(cluster, plan, cc, script)?;
            format!(
                "#cloud-config\n{}",
                yaml(&InstallerUserData { autoinstall: ai })?
            )
        }
    })
}

/// The `autoinstall:` value of a machine's installer user-data.
fn autoinstall(
    cluster: &Cluster,
    plan: &Plan,
    cc: CloudConfig,
    script: impl Fn(usize, &'static str) -> String,
) -> anyhow::Result<Autoinstall> {
    Ok(Autoinstall {
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
        late_commands: late_commands_with(cluster, plan, script)?,
        user_data: cc,
    })
}

/// The `autoinstall:` value of an installer user-data as a document of its
/// own, what subiquity reads from `/autoinstall.yaml` (the cluster stick
/// puts one per machine there, see [`crate::stick`]).
///
/// serde-saphyr writes the value as a block mapping indented two spaces
/// under its key, and every nested line (block scalars too, whose
/// indentation is relative to their parent's) two spaces further; removing
/// those two spaces from every line is the document `yaml(&autoinstall)`
/// gives, byte for byte (a unit test pins it), without serializing each
/// machine's largest document a second time.
pub fn autoinstall_document(user_data: &str) -> anyhow::Result<String> {
    let body = user_data
        .strip_prefix("#cloud-config\nautoinstall:\n")
        .ok_or_else(|| anyhow::anyhow!("not an installer user-data: no `autoinstall:` block"))?;
    let mut out = String::with_capacity(body.len());
    for line in body.split_inclusive('\n') {
        match line.strip_prefix("  ") {
            Some(rest) => out.push_str(rest),
            None if line.trim_end_matches(['\n', ' ']).is_empty() => {
                out.push_str(line.trim_start_matches(' '))
            }
            None => anyhow::bail!("installer user-data line outside `autoinstall:`: {line:?}"),
        }
    }
    Ok(out)
}

/// Renders the three documents of one machine; `bodies` carries what
/// earlier machines of the run share with it.
pub fn for_machine(
    cluster: &Cluster,
    plan: &Plan,
    target: Target,
    bodies: &mut SharedBodies,
) -> anyhow::Result<Documents> {
    let user_data = user_data_sharing(cluster, plan, target, bodies)?;
    let network_config = yaml(&netplan(cluster, plan))?;
    // A new instance-id whenever the seed's content changes makes cloud-init
    // treat a re-seeded machine as new; the same content keeps the same id.
    // The user-data's own SHA-256 is the same pass's state finalized before
    // the rest goes in, so its bytes are hashed once for both.
    let mut h = Sha256::new();
    h.update(user_data.as_bytes());
    let user_data_sha256: [u8; 32] = h.clone().finalize().into();
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
    let sha256 = [
        Sha256::digest(&meta_data).into(),
        Sha256::digest(&network_config).into(),
        user_data_sha256,
    ];
    Ok(Documents {
        user_data,
        meta_data,
        network_config,
        sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every machine's plan for the example cluster.
    fn example_plans() -> (Cluster, Vec<Plan>) {
        let text = include_str!("../examples/eth2-staking/cluster.yaml");
        let file = std::path::Path::new("cluster.yaml");
        let raw = crate::schema::parse(file, text).expect("parses");
        let profiles = crate::profile::Profiles::load(None).expect("embedded profiles");
        let cluster = crate::validate::validate(file, &raw, &profiles).expect("valid");
        let secrets = crate::secrets::generate().expect("secrets");
        let mut planner =
            crate::plan::Planner::new(&cluster, &profiles, &secrets, None).expect("planner");
        let plans = (cluster.machines.iter())
            .map(|m| planner.plan(m).expect("plan"))
            .collect();
        (cluster, plans)
    }

    /// Splices every shared body, however short, so the example's small
    /// bodies exercise the splice.
    fn every_body() -> SharedBodies {
        SharedBodies {
            min_len: 0,
            ..SharedBodies::default()
        }
    }

    fn whole(cluster: &Cluster, plan: &Plan, target: Target) -> String {
        user_data(cluster, plan, target, cloud_config(cluster, plan)).expect("serializes")
    }

    #[test]
    fn a_shared_body_serialized_once_gives_the_bytes_of_serializing_it_whole() {
        let (cluster, plans) = example_plans();
        assert!(
            plans.iter().all(|p| p.files.iter().any(|f| f.shared)),
            "/etc/hosts is shared"
        );
        for target in [Target::Installer, Target::CloudImage] {
            let mut bodies = every_body();
            // Twice round: the second time every body comes from the memo.
            for plan in plans.iter().chain(&plans) {
                let got = user_data_sharing(&cluster, plan, target, &mut bodies).expect("ok");
                assert_eq!(got, whole(&cluster, plan, target), "{}", plan.machine.name);
            }
            assert!(!bodies.known.is_empty());
        }
    }

    #[test]
    fn documents_carry_the_sha256_of_each_file_they_hold() {
        let (cluster, plans) = example_plans();
        for target in [Target::Installer, Target::CloudImage] {
            let mut bodies = SharedBodies::default();
            for plan in &plans {
                let docs = for_machine(&cluster, plan, target, &mut bodies).expect("renders");
                for ((name, bytes), sum) in docs.files().into_iter().zip(docs.sha256()) {
                    let want: [u8; 32] = Sha256::digest(bytes).into();
                    assert_eq!(*sum, want, "{} {name} ({target:?})", plan.machine.name);
                }
            }
        }
    }

    /// Bodies whose block scalars need indicators (leading spaces, kept or
    /// stripped final newlines), that YAML must quote, or that hold the
    /// placeholder text itself (then the document is serialized whole).
    #[test]
    fn awkward_shared_bodies_still_give_the_whole_documents_bytes() {
        let (cluster, plans) = example_plans();
        let awkward = [
            "  indented first line\nsecond\n",
            "no final newline\nsecond",
            "kept blank lines\n\n\n",
            "\nstarts with a newline\n",
            "tab\there: # not a comment\n- not a list\n--- not a document\n",
            "ünïcödé\n\u{feff}bom inside\n",
            "has a carriage return\r\nand a\u{7f} control\n",
            "microseed-shared-body-0-x\nmicroseed-shared-body-1-x\n",
            "a single line shared body",
        ];
        for target in [Target::Installer, Target::CloudImage] {
            for body in awkward {
                let mut bodies = every_body();
                for plan in plans.iter().chain(&plans) {
                    let mut plan = plan.clone();
                    for f in plan.files.iter_mut().filter(|f| f.shared) {
                        f.content = body.to_string();
                    }
                    let got = user_data_sharing(&cluster, &plan, target, &mut bodies).expect("ok");
                    assert_eq!(got, whole(&cluster, &plan, target), "{body:?}");
                }
            }
        }
    }

    #[test]
    fn only_bodies_of_the_threshold_are_spliced() {
        let (cluster, plans) = example_plans();
        let mut bodies = SharedBodies::default();
        for plan in &plans {
            user_data_sharing(&cluster, plan, Target::Installer, &mut bodies).expect("ok");
        }
        let min = SharedBodies::default().min_len;
        assert!(bodies.known.iter().all(|b| b.content.len() >= min));
        assert!(
            !bodies.known.iter().any(|b| b
                .content
                .starts_with("# Written by microseed: every cluster")),
            "the example's /etc/hosts is short"
        );
        let before = bodies.known.len();
        let big = "10.0.0.1 a-machine-name\n".repeat(200);
        for plan in plans.iter().chain(&plans) {
            let mut plan = plan.clone();
            plan.files
                .iter_mut()
                .filter(|f| f.path == "/etc/hosts")
                .for_each(|f| f.content = big.clone());
            let got =
                user_data_sharing(&cluster, &plan, Target::Installer, &mut bodies).expect("ok");
            assert_eq!(got, whole(&cluster, &plan, Target::Installer));
        }
        assert_eq!(bodies.known.len(), before + 1, "/etc/hosts, once");
    }

    #[test]
    fn placeholders_are_found_only_when_each_occurs_once() {
        let (a, b) = (placeholder(0), placeholder(3));
        assert_eq!(
            placeholders_in(&format!("x: {a}\ny: {b}\n"), &[0, 3]),
            Some(vec![3, 32])
        );
        assert_eq!(placeholders_in(&format!("{a} {a} {b}"), &[0, 3]), None);
        assert_eq!(placeholders_in(&a, &[0, 3]), None);
        assert_eq!(
            placeholders_in(&format!("{a} {}", placeholder(7)), &[0]),
            None
        );
        assert_eq!(placeholders_in(&format!("{PLACEHOLDER}0-y"), &[0]), None);
    }

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

    #[test]
    fn the_autoinstall_document_is_the_value_serialized_alone() {
        let (cluster, plans) = example_plans();
        for plan in &plans {
            let ud = whole(&cluster, plan, Target::Installer);
            let alone = yaml(
                &autoinstall(&cluster, plan, cloud_config(&cluster, plan), |_, s| {
                    s.to_string()
                })
                .unwrap(),
            )
            .unwrap();
            assert_eq!(autoinstall_document(&ud).unwrap(), alone);
        }
        assert!(autoinstall_document("#cloud-config\nusers: []\n").is_err());
    }
}
