//! Semantic checks on the cluster file: everything YAML types cannot say
//! (addresses inside the subnet, unique names, one master, parseable keys).
//! Every value that later reaches a shell script, a config file or YAML is
//! either constrained here or quoted where it is used. All problems are
//! collected, not just the first, each with file, line, column and field path.
//! One named check per concern (general, network, admin and ssh, MicroK8s,
//! NFS, staking, machines), each with its unit tests at the end of the file.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;

use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, InputErrors, Pos, nearest, shown};
use crate::known;
use crate::model::Disk;
use crate::model::{self, Cidr, Cluster, NETWORKS};
use crate::profile::{Count, Profiles, Proto, ReleaseProfile};
use crate::schema::{ClusterFile, DataDiskChoice, DiskChoice};
use crate::staking;

struct Checker<'a> {
    file: &'a Path,
    errors: Vec<Diagnostic>,
    /// The check now running, and which check found each error (in order).
    check: Check,
    found: Vec<Check>,
}

fn pos<T>(s: &Spanned<T>) -> Pos {
    Pos::from_location(s.referenced)
}

impl<'a> Checker<'a> {
    fn new(file: &'a Path) -> Checker<'a> {
        Checker {
            file,
            errors: Vec::new(),
            check: Check::General,
            found: Vec::new(),
        }
    }

    fn push(&mut self, d: Diagnostic) {
        self.errors.push(d);
        self.found.push(self.check);
    }

    fn err<T>(&mut self, at: &Spanned<T>, field: impl Into<String>, msg: impl Into<String>) {
        self.push(Diagnostic::error(self.file, pos(at), field, msg));
    }

    /// Checks `value` against a predicate, recording `expected` on failure.
    fn want(&mut self, at: &Spanned<String>, field: &str, ok: bool, expected: &str) -> bool {
        if !ok {
            self.err(
                at,
                field,
                format!("got {}; expected {expected}", shown(&at.value)),
            );
        }
        ok
    }
}

/// Turns the parsed file into a trusted model, or every problem found.
/// The named checks, one per concern of the cluster file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    General,
    Network,
    Admin,
    Microk8s,
    Nfs,
    Staking,
    Machines,
    Maintenance,
}

/// What the network check hands on.
struct NetworkParts {
    subnet: Option<Cidr>,
    gateway: Option<Ipv4Addr>,
    dns: Vec<IpAddr>,
}

/// A channel's track and its (major, minor) version, as `parse_channel`
/// gives them.
type Channel = (String, (u32, u32));

/// What the admin check hands on.
struct SshParts {
    port: u32,
    allow_from: Option<String>,
}

/// Turns the parsed file into a trusted model, or every problem found.
/// Each concern is one named check below, run in this order; problems are
/// reported sorted by their place in the file.
pub fn validate(
    file: &Path,
    raw: &ClusterFile,
    profiles: &Profiles,
) -> Result<Cluster, InputErrors> {
    let mut c = Checker::new(file);
    let (cluster, _) = run_checks(&mut c, raw, profiles);
    match cluster {
        Some(cluster) if c.errors.is_empty() => Ok(cluster),
        _ => {
            c.errors.sort_by_key(|d| (d.pos.line, d.pos.column));
            Err(InputErrors(c.errors))
        }
    }
}

/// Runs every check; the model when nothing failed. Also returns which
/// check found each problem, in the order found (for tests).
fn run_checks(
    c: &mut Checker<'_>,
    raw: &ClusterFile,
    profiles: &Profiles,
) -> (Option<Cluster>, Vec<Check>) {
    c.check = Check::General;
    let release = check_general(c, raw, profiles);
    c.check = Check::Network;
    let net = check_network(c, raw);
    c.check = Check::Admin;
    let ssh = check_admin(c, raw);
    c.check = Check::Microk8s;
    let (chan, channel) = check_microk8s(c, raw, profiles);
    c.check = Check::Nfs;
    let data_disk = check_nfs(c, raw);
    c.check = Check::Staking;
    let staking = check_staking(c, raw);
    c.check = Check::Machines;
    let (mut machines, by_role) = check_machines(c, raw, profiles, net.subnet, net.gateway);
    if let Some(serial) = &data_disk {
        c.check = Check::Nfs;
        check_data_disk_apart(c, raw, &machines, serial);
    }
    c.check = Check::Microk8s;
    let api_vip = check_api_vip(c, raw, &net, &machines, channel.as_ref());
    c.check = Check::Maintenance;
    let mut refresh_window = String::new();
    if let Some((window, timers)) = check_maintenance(c, raw, machines.len()) {
        refresh_window = window;
        for (m, t) in machines.iter_mut().zip(timers) {
            m.refresh_timer = t;
        }
    }
    c.check = Check::Admin;
    if (1..=65535).contains(&ssh.port) {
        check_ssh_port_free(c, &raw.ssh.port, profiles, by_role.keys().copied());
    }
    let found = c.found.clone();
    if !c.errors.is_empty() {
        return (None, found);
    }
    let (Some(release), Some(subnet), Some(gateway), Some((track, version))) =
        (release, net.subnet, net.gateway, channel)
    else {
        // Every None above was reported as an error.
        return (None, found);
    };
    let a = &raw.admin;
    let mk = &raw.microk8s;
    let n = &raw.nfs;
    let dns = net.dns;
    let port = ssh.port;
    let allow_from = ssh.allow_from;
    let cluster = Cluster {
        name: raw.name.value.clone(),
        release: release.clone(),
        timezone: raw.timezone.value.clone(),
        locale: raw.locale.value.clone(),
        keyboard: model::Keyboard {
            layout: raw.keyboard.layout.value.clone(),
            variant: raw
                .keyboard
                .variant
                .as_ref()
                .map(|v| v.value.clone())
                .filter(|v| !v.is_empty()),
        },
        network: model::Network {
            subnet: Cidr {
                addr: subnet.network(),
                prefix: subnet.prefix,
            },
            prefix: subnet.prefix,
            gateway,
            dns,
            search_domains: raw
                .network
                .search_domains
                .iter()
                .map(|s| s.value.clone())
                .collect(),
        },
        ntp_pools: raw
            .ntp
            .pools
            .value
            .iter()
            .map(|s| s.value.clone())
            .collect(),
        admin: model::Admin {
            username: a.username.value.clone(),
            ssh_keys: a
                .ssh_keys
                .value
                .iter()
                .map(|k| k.value.trim().to_string())
                .collect(),
            password_hash: a.password_hash.as_ref().map(|h| h.value.clone()),
        },
        ssh: model::Ssh {
            port: port as u16,
            password_auth: raw.ssh.password_auth.value,
            allow_from,
        },
        microk8s: model::Microk8s {
            channel: chan.value.clone(),
            track,
            version,
            addons: mk.addons.iter().map(|s| s.value.clone()).collect(),
            caps: crate::microk8s::Capabilities::for_version(version),
            fingerprint_port: crate::microk8s::FINGERPRINT_PORT,
            api_vip: api_vip.map(|ip| model::ApiVip::new(&raw.name.value, ip)),
        },
        nfs: model::Nfs {
            export_root: n.export_root.value.trim_end_matches('/').to_string(),
            data_volume: n.data_volume,
            data_disk: data_disk.map(|serial| model::DataDisk {
                pattern: crate::documents::serial_glob(&serial),
                serial,
            }),
            validator_clients: n.validator_clients.value,
            uid: n.uid.value,
            gid: n.gid.value,
        },
        staking,
        refresh_window,
        machines,
    };
    (Some(cluster), found)
}

/// Name, release, time zone, locale and keyboard; the release's profile.
fn check_general<'p>(
    c: &mut Checker<'_>,
    raw: &ClusterFile,
    profiles: &'p Profiles,
) -> Option<&'p ReleaseProfile> {
    c.want(
        &raw.name,
        "name",
        is_label(&raw.name.value),
        "a lower-case DNS label (a-z, 0-9, '-', at most 63 characters)",
    );
    // `build::load` has parsed the release's profile already, so a broken
    // one is reported there as a profile error; this covers other callers.
    let (release, broken) = match profiles.release(&raw.release.value) {
        Ok(r) => (r, false),
        Err(e) => {
            c.err(&raw.release, "release", format!("{e:#}"));
            (None, true)
        }
    };
    if release.is_none() && !broken {
        let known: Vec<&str> = profiles.release_names().collect();
        c.err(
            &raw.release,
            "release",
            format!(
                "unknown Ubuntu release {}; expected one of {}",
                shown(&raw.release.value),
                known.join(", ")
            ),
        );
    }
    if chrono_tz::Tz::from_str(&raw.timezone.value).is_err() {
        let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect();
        // "Berlin" is a city: offer the zones named after it before spelling
        // neighbours of the whole name.
        let got = raw.timezone.value.trim().replace(' ', "_");
        let cities: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| {
                n.rsplit('/')
                    .next()
                    .is_some_and(|city| n.contains('/') && city.eq_ignore_ascii_case(&got))
            })
            .filter(|n| !n.starts_with("posix/") && !n.starts_with("right/"))
            .collect();
        let hint = match cities.as_slice() {
            [] => nearest(&raw.timezone.value, &names).map(|n| format!("; did you mean {n:?}?")),
            [one] => Some(format!("; did you mean {one:?}?")),
            many => Some(format!(
                "; did you mean one of {}?",
                many.iter()
                    .map(|n| format!("{n:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        .unwrap_or_default();
        c.err(
            &raw.timezone,
            "timezone",
            format!(
                "{} is not an IANA time zone (e.g. \"America/Los_Angeles\", \"Etc/UTC\"){hint}",
                shown(&raw.timezone.value)
            ),
        );
    }
    if c.want(
        &raw.locale,
        "locale",
        is_locale(&raw.locale.value),
        "a locale such as \"en_US.UTF-8\"",
    ) && !known::locale_exists(&raw.locale.value)
    {
        let names = known::locale_names();
        let hint = nearest(&raw.locale.value, &names)
            .map(|n| format!("; did you mean {n:?}?"))
            .unwrap_or_default();
        c.err(
            &raw.locale,
            "locale",
            format!(
                "{} is not a locale glibc can make (locale-gen on the machines would fail); expected a name from glibc's SUPPORTED list such as \"en_US.UTF-8\"{hint}",
                shown(&raw.locale.value)
            ),
        );
    }
    c.want(
        &raw.keyboard.layout,
        "keyboard.layout",
        is_kbd(&raw.keyboard.layout.value),
        "an XKB layout name such as \"us\" or \"no\"",
    );
    if let Some(v) = &raw.keyboard.variant {
        c.want(
            v,
            "keyboard.variant",
            v.value.is_empty() || is_kbd(&v.value),
            "an XKB variant name such as \"dvorak\"",
        );
    }
    release
}

/// The subnet, gateway, DNS servers, search domains and NTP pools.
fn check_network(c: &mut Checker<'_>, raw: &ClusterFile) -> NetworkParts {
    let file = c.file;
    let subnet = Cidr::parse(&raw.network.subnet.value);
    if subnet.is_none() {
        c.err(
            &raw.network.subnet,
            "network.subnet",
            format!(
                "got {}; expected an IPv4 CIDR such as 172.20.0.0/20 (prefix 8 to 30)",
                shown(&raw.network.subnet.value)
            ),
        );
    }
    let gateway = check_ip_in(c, &raw.network.gateway, "network.gateway", subnet);
    let mut dns = Vec::new();
    for (i, d) in raw.network.dns.value.iter().enumerate() {
        match IpAddr::from_str(&d.value) {
            Ok(ip) if ip.is_unspecified() || ip.is_multicast() || ip == Ipv4Addr::BROADCAST => c.err(
                d,
                format!("network.dns[{i}]"),
                format!("{ip} is not an address a DNS server can have; expected a server's address such as 8.8.8.8"),
            ),
            Ok(ip) => dns.push(ip),
            Err(_) => c.err(
                d,
                format!("network.dns[{i}]"),
                format!("got {}; expected an IP address", shown(&d.value)),
            ),
        }
    }
    if raw.network.dns.value.is_empty() {
        c.push(Diagnostic::error(
            file,
            pos(&raw.network.dns),
            "network.dns",
            "empty; expected at least one DNS server address",
        ));
    }
    for (i, d) in raw.network.search_domains.iter().enumerate() {
        c.want(
            d,
            &format!("network.search_domains[{i}]"),
            is_domain(&d.value),
            "a DNS domain such as \"home.lan\"",
        );
    }
    for (i, p) in raw.ntp.pools.value.iter().enumerate() {
        c.want(
            p,
            &format!("ntp.pools[{i}]"),
            is_domain(&p.value) || IpAddr::from_str(&p.value).is_ok(),
            "an NTP server or pool host name or address",
        );
    }
    if raw.ntp.pools.value.is_empty() {
        c.push(Diagnostic::error(
            file,
            pos(&raw.ntp.pools),
            "ntp.pools",
            "empty; expected at least one NTP pool",
        ));
    }
    NetworkParts {
        subnet,
        gateway,
        dns,
    }
}

/// The admin account and sshd: keys or a password hash, port, allow_from.
fn check_admin(c: &mut Checker<'_>, raw: &ClusterFile) -> SshParts {
    let file = c.file;
    let a = &raw.admin;
    if c.want(&a.username, "admin.username", is_username(&a.username.value), "a Linux user name (a-z, 0-9, '_', '-', starting with a letter, at most 32 characters, not root)")
        && let Some(why) = known::system_account(&a.username.value)
    {
        c.err(
            &a.username,
            "admin.username",
            format!(
                "{:?} is {why}; expected a name of your own, such as \"ubuntu\" or \"staker\"",
                a.username.value
            ),
        );
    }
    for (i, k) in a.ssh_keys.value.iter().enumerate() {
        if let Err(e) = check_ssh_key(&k.value) {
            c.err(k, format!("admin.ssh_keys[{i}]"), e);
        }
    }
    if let Some(h) = &a.password_hash
        && !is_crypt_hash(&h.value)
    {
        // Never quote the value: it may well be the password itself.
        c.err(h, "admin.password_hash", "not a complete crypt(3) hash (the value is not shown: it may be a password); expected the whole output of `mkpasswd -m sha-512`, such as \"$6$salt$...\" with 86 characters after the salt");
    }
    if a.ssh_keys.value.is_empty() && a.password_hash.is_none() {
        // At the empty list when it is written, else at the admin section.
        let at = if pos(&a.ssh_keys).known() {
            pos(&a.ssh_keys)
        } else {
            pos(&a.username)
        };
        c.push(Diagnostic::error(file, at, "admin.ssh_keys", "no ssh key and no password hash: the machines would be unreachable; expected at least one key in admin.ssh_keys"));
    }
    if raw.ssh.password_auth.value && a.password_hash.is_none() {
        c.err(&raw.ssh.password_auth, "ssh.password_auth", "password login is on but admin.password_hash is not set; expected a password hash or password_auth: false");
    }
    let port = raw.ssh.port.value;
    if port == 0 || port > 65535 {
        c.err(
            &raw.ssh.port,
            "ssh.port",
            format!("got {port}; expected a TCP port from 1 to 65535"),
        );
    }
    let mut allow_from = None;
    if let Some(f) = &raw.ssh.allow_from {
        match Cidr::parse(&f.value) {
            Some(cidr) => allow_from = Some(format!("{}/{}", cidr.network(), cidr.prefix)),
            None => c.err(
                f,
                "ssh.allow_from",
                format!(
                    "got {}; expected an IPv4 CIDR such as 192.168.1.0/24",
                    shown(&f.value)
                ),
            ),
        }
    }
    SshParts { port, allow_from }
}

/// The MicroK8s channel (fitting the release) and add-on names.
fn check_microk8s(
    c: &mut Checker<'_>,
    raw: &ClusterFile,
    profiles: &Profiles,
) -> (Spanned<String>, Option<Channel>) {
    let mk = &raw.microk8s;
    let chan = check_channel_fits_release(c, raw, profiles);
    let mut channel = parse_channel(&chan.value);
    if channel.is_none() {
        c.err(&chan, "microk8s.channel", format!("got {}; expected <track>/<risk> such as \"1.20/stable\" (risk: stable, candidate, beta, edge)", shown(&chan.value)));
    } else if let Some((track, v)) = &channel
        && track != "latest"
        && !(v.0 == 1 && v.1 >= FIRST_TRACK_MINOR)
    {
        c.err(&chan, "microk8s.channel", format!("track {track} is not a MicroK8s track: MicroK8s follows Kubernetes, whose tracks are 1.{FIRST_TRACK_MINOR} and later (1.20, 1.28, ...) and `latest`; expected a channel such as \"1.20/stable\""));
        channel = None;
    }
    for (i, ad) in mk.addons.iter().enumerate() {
        c.want(ad, &format!("microk8s.addons[{i}]"), is_addon(&ad.value), "an addon name such as \"dns\", optionally with arguments (\"metallb:10.0.0.1-10.0.0.9\")");
    }
    (chan, channel)
}

/// The MicroK8s track from which a master that serves or makes a join
/// stops reissuing its API server certificate when the host's addresses
/// change (the `no-cert-reissue` lock, 1.23 `apiservice-kicker`). Before
/// it, the VIP arriving on or leaving a master would reissue that master's
/// certificate and restart its API server, failing the health check that
/// moves the VIP: the address would chase the restarts around the masters.
pub const API_VIP_MIN_MINOR: u32 = 23;

/// `microk8s.api_vip`: an address of the subnet no machine, the gateway or
/// a DNS server has, with 3 or 5 masters on MicroK8s 1.23+.
fn check_api_vip(
    c: &mut Checker<'_>,
    raw: &ClusterFile,
    net: &NetworkParts,
    machines: &[model::Machine],
    channel: Option<&Channel>,
) -> Option<Ipv4Addr> {
    let at = raw.microk8s.api_vip.as_ref()?;
    let field = "microk8s.api_vip";
    let ip = check_ip_in(c, at, field, net.subnet)?;
    let mut ok = true;
    if Some(ip) == net.gateway {
        c.err(at, field, format!("{ip} is the gateway's address; expected a free address in the subnet, outside any DHCP range"));
        ok = false;
    }
    if let Some(m) = machines.iter().find(|m| m.ip == ip) {
        c.err(at, field, format!("{ip} is machine {:?}'s address; expected a free address in the subnet that only the VIP uses", m.name));
        ok = false;
    }
    if net.dns.contains(&IpAddr::V4(ip)) {
        c.err(
            at,
            field,
            format!("{ip} is a DNS server in network.dns; expected a free address in the subnet"),
        );
        ok = false;
    }
    let masters = machines.iter().filter(|m| m.role == "master").count();
    if masters < 3 {
        c.err(at, field, format!("the cluster has {masters} master(s); a VIP moves between masters, so it needs 3 or 5 (docs/ha.md); with one master, use its own address and delete this key"));
        ok = false;
    }
    if let Some((track, (major, minor))) = channel
        && track != "latest"
        && (*major, *minor) < (1, API_VIP_MIN_MINOR)
    {
        c.err(at, field, format!("MicroK8s {track} reissues a master's API server certificate and restarts it whenever the master's addresses change, so the VIP moving would restart API servers and move again; expected microk8s.channel 1.{API_VIP_MIN_MINOR} or later with an api_vip (docs/ha.md)"));
        ok = false;
    }
    ok.then_some(ip)
}

/// The NFS export: its path, client count, owner ids and data disk. Returns
/// the data disk's serial when the file names one and it is well-formed.
fn check_nfs(c: &mut Checker<'_>, raw: &ClusterFile) -> Option<String> {
    let n = &raw.nfs;
    if c.want(
        &n.export_root,
        "nfs.export_root",
        is_export_path(&n.export_root.value),
        "an absolute path other than / made of letters, digits, '.', '_', '-' and '/'",
    ) && let Some(why) = known::system_directory(&n.export_root.value, &raw.admin.username.value)
    {
        // `//usr/` is /usr: say which directory the kernel will take.
        let parts: Vec<&str> = n
            .export_root
            .value
            .split('/')
            .filter(|p| !p.is_empty())
            .collect();
        let norm = format!("/{}", parts.join("/"));
        let same = if norm == n.export_root.value {
            String::new()
        } else {
            format!(" (that is {norm})")
        };
        let volume = if n.data_volume {
            ", and data_volume would mount an empty volume over it"
        } else {
            ""
        };
        c.err(
            &n.export_root,
            "nfs.export_root",
            format!(
                "{:?}{same} is {why}: the NFS server would hand it to uid {} and gid {} (chown -R) and export it read-write to the subnet{volume}; expected a directory of its own, such as /data or /srv/nfs",
                n.export_root.value, n.uid.value, n.gid.value
            ),
        );
    }
    if n.validator_clients.value == 0 || n.validator_clients.value > 64 {
        c.err(
            &n.validator_clients,
            "nfs.validator_clients",
            format!("got {}; expected 1 to 64", n.validator_clients.value),
        );
    }
    for (v, f) in [(&n.uid, "nfs.uid"), (&n.gid, "nfs.gid")] {
        if v.value == 0 || v.value >= 65534 {
            c.err(
                v,
                f,
                format!(
                    "got {}; expected an id from 1 to 65533 (0 would hand the data to root)",
                    v.value
                ),
            );
        }
    }
    let d = n.data_disk.as_ref()?;
    if n.data_volume {
        c.err(d, "nfs.data_disk", "set together with `data_volume: true`; both would be mounted at the export root: keep one (`data_disk` keeps the data through a reinstall, `data_volume` is on the root disk the installer erases)");
        return None;
    }
    match &d.value {
        DataDiskChoice::Serial(s) if is_serial(s) => Some(s.clone()),
        DataDiskChoice::Serial(s) => {
            c.err(d, "nfs.data_disk.serial", format!("got {}; expected the data disk's serial: the short one `lsblk -o NAME,SERIAL` prints, udev's ID_SERIAL (`udevadm info --query=property --name=/dev/sdX`), or a glob of it (letters, digits, '_', '-', '.', ':', and '*', '?', '[', ']'; at least one letter or digit)", shown(s)));
            None
        }
        DataDiskChoice::Path(p) => match crate::diskid::parse(p) {
            Ok(crate::diskid::DiskPath::Serial(s)) => Some(s),
            // First boot formats an empty disk it finds by this name: a
            // kernel name may be another disk after the next boot.
            Ok(crate::diskid::DiskPath::Kernel(k)) => {
                c.err(d, "nfs.data_disk.path", format!("{k:?} is a kernel name, which may name another disk after a reboot (disks are not always found in the same order), and first boot formats the data disk when it is empty: name it by what stays, `data_disk: {{serial: ID_SERIAL}}` (`udevadm info --query=property --name={k} | grep ID_SERIAL` prints it) or its /dev/disk/by-id/ name"));
                None
            }
            Err(e) => {
                c.err(d, "nfs.data_disk.path", e);
                None
            }
        },
    }
}

/// The data disk is a disk of the NFS server's that its root disk selector
/// can never pick: subiquity takes the first disk its `match` selects (the
/// largest for `size: largest`) and erases it, and first boot formats the
/// data disk it finds when that disk is empty.
fn check_data_disk_apart(
    c: &mut Checker<'_>,
    raw: &ClusterFile,
    machines: &[model::Machine],
    data: &str,
) {
    let Some(d) = raw.nfs.data_disk.as_ref() else {
        return;
    };
    let nfs: Vec<&model::Machine> = machines.iter().filter(|m| m.role == "nfs").collect();
    if nfs.is_empty() {
        c.err(
            d,
            "nfs.data_disk",
            "no machine has role nfs: the data disk belongs to the NFS server",
        );
    }
    for m in nfs {
        let i = m.index;
        let name = &m.name;
        match &m.disk {
            Disk::Largest => c.err(d, "nfs.data_disk", format!("the NFS server machines[{i}] ({name}) installs onto its largest disk (`disk` not given, or `largest`), which may be the data disk: the installer would erase it; name its root disk on machines[{i}]: `disk: {{serial: ID_SERIAL}}`")),
            Disk::Serial(root) if serials_overlap(root, data) => c.err(d, "nfs.data_disk", format!("{data:?} and the root disk of machines[{i}] ({name}), {root:?}, may name the same disk (one is matched inside the other's ID_SERIAL): the installer would erase the data disk, or first boot would take the root disk for it; give each disk's full ID_SERIAL")),
            // A kernel name cannot be compared with a serial here (a warning
            // says so); select.sh and first boot check the disks themselves.
            Disk::Serial(_) | Disk::Path(_) => {}
        }
    }
}

/// Whether two serial selectors (each a plain serial, matched as `*S*`, or
/// a glob: `documents::serial_glob`) may select the same disk: one's
/// pattern matches the other's plain serial, or two globs are the same.
fn serials_overlap(a: &str, b: &str) -> bool {
    let plain = |s: &str| !s.contains(['*', '?', '[']);
    let glob = crate::documents::serial_glob;
    (plain(b) && fnmatch(&glob(a), b)) || (plain(a) && fnmatch(&glob(b), a)) || a == b
}

/// Python's `fnmatch.fnmatchcase` (what subiquity matches serials with) on
/// the characters a serial may hold: `*`, `?` and `[...]` (ranges too).
fn fnmatch(pat: &str, text: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // One class at p[i] ('[' ... ']'): whether it matches c, and its length.
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        let end = p.iter().skip(2).position(|&x| x == ']')? + 2;
        let body = &p[1..end];
        let mut hit = false;
        let mut k = 0;
        while k < body.len() {
            if k + 2 < body.len() && body[k + 1] == '-' {
                hit |= body[k] <= c && c <= body[k + 2];
                k += 3;
            } else {
                hit |= body[k] == c;
                k += 1;
            }
        }
        Some((hit, end + 1))
    }
    fn go(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|k| go(&p[1..], &t[k..])),
            Some('?') => !t.is_empty() && go(&p[1..], &t[1..]),
            Some('[') => match (class(p, *t.first().unwrap_or(&'\0')), t.is_empty()) {
                (Some((hit, n)), false) => hit && go(&p[n..], &t[1..]),
                // An unclosed '[' is a literal, as in fnmatch.
                (None, false) => t[0] == '[' && go(&p[1..], &t[1..]),
                (_, true) => false,
            },
            Some(&ch) => t.first() == Some(&ch) && go(&p[1..], &t[1..]),
        }
    }
    go(&p, &t)
}

/// The staking stack: network, execution client and its node, versions,
/// checkpoint URL, fee recipients and graffiti. Values are checked whether
/// or not staking is enabled; what must be given is required only when it is.
fn check_staking(c: &mut Checker<'_>, raw: &ClusterFile) -> model::Staking {
    let st = &raw.staking;
    let on = st.enabled.value;
    for (key, v) in [
        ("staking.chart", st.chart.as_ref().map(|s| s.referenced)),
        (
            "staking.eth1_endpoints",
            st.eth1_endpoints.as_ref().map(|s| s.referenced),
        ),
        (
            "staking.genesis_state_file",
            st.genesis_state_file.as_ref().map(|s| s.referenced),
        ),
    ] {
        if let Some(at) = v {
            c.push(Diagnostic::error(
                c.file,
                Pos::from_location(at),
                key,
                "removed: microseed no longer installs the eth2xk8s chart; it runs its own execution client (staking.execution), Prysm and the validators (docs/staking.md); delete this key",
            ));
        }
    }
    let network = match &st.network {
        Some(net) => match staking::check_network(&net.value) {
            Ok(()) => Some(net.value.clone()),
            Err(why) => {
                c.err(
                    net,
                    "staking.network",
                    format!("got {:?}: {why}", net.value),
                );
                None
            }
        },
        None => {
            if on {
                c.push(Diagnostic::error(
                    c.file,
                    Pos::from_location(raw.staking_pos()),
                    "staking.network",
                    format!(
                        "missing; expected one of {} (never defaulted: the wrong network loses money or a sync)",
                        NETWORKS.join(", ")
                    ),
                ));
            }
            None
        }
    };
    let address = |c: &mut Checker<'_>, a: &Spanned<String>, field: &str| -> Option<String> {
        match staking::check_address(&a.value) {
            Ok(()) => Some(a.value.clone()),
            Err(why) => {
                c.err(
                    a,
                    field,
                    format!(
                        "got {:?}: {why}; expected 0x and 40 hex digits, an address you control",
                        a.value
                    ),
                );
                None
            }
        }
    };
    let default_fee = st
        .fee_recipient
        .as_ref()
        .and_then(|a| address(c, a, "staking.fee_recipient"));
    let graffiti = |c: &mut Checker<'_>,
                    g: &Option<Spanned<String>>,
                    field: &str|
     -> Option<String> {
        let g = g.as_ref()?;
        match staking::check_graffiti(&g.value) {
            Ok(()) => Some(g.value.clone()),
            Err(why) => {
                c.err(g, field, format!("got {:?} ({why}); expected up to 32 letters, digits, spaces and -_.,!?+=@()/*~^'%&", g.value));
                None
            }
        }
    };
    let default_graffiti = graffiti(c, &st.graffiti, "staking.graffiti")
        .unwrap_or_else(|| model::DEFAULT_GRAFFITI.to_string());
    let clients = raw.nfs.validator_clients.value as usize;
    let mut validators = Vec::new();
    if let Some(list) = &st.validators
        && list.value.len() != clients
    {
        c.err(
            list,
            "staking.validators",
            format!(
                "{} entries for {clients} validator client(s) (nfs.validator_clients); expected one per client, in order",
                list.value.len()
            ),
        );
    }
    for i in 0..clients.min(64) {
        let own = st.validators.as_ref().and_then(|l| l.value.get(i));
        let field = |k: &str| format!("staking.validators[{i}].{k}");
        let fee = match own.and_then(|v| v.fee_recipient.as_ref()) {
            Some(a) => address(c, a, &field("fee_recipient")),
            None => default_fee.clone(),
        };
        let g = own
            .and_then(|v| graffiti(c, &v.graffiti, &field("graffiti")))
            .unwrap_or_else(|| default_graffiti.clone());
        if on
            && fee.is_none()
            && st.fee_recipient.is_none()
            && own.and_then(|v| v.fee_recipient.as_ref()).is_none()
        {
            c.push(Diagnostic::error(
                c.file,
                Pos::from_location(raw.staking_pos()),
                "staking.fee_recipient",
                format!("missing for validator client {}: expected staking.fee_recipient (every client) or staking.validators[{i}].fee_recipient, an address you control (0x and 40 hex digits); without one the priority fees of the blocks it proposes are lost", i + 1),
            ));
        }
        validators.push(model::Validator {
            fee_recipient: fee,
            graffiti: g,
        });
    }
    let ex = &st.execution;
    let client = match &ex.client {
        None => model::ExecutionClient::Geth,
        Some(name) => match model::ExecutionClient::ALL
            .into_iter()
            .find(|k| k.name() == name.value)
        {
            Some(k) => k,
            None => {
                let names: Vec<&str> = model::ExecutionClient::ALL
                    .iter()
                    .map(|k| k.name())
                    .collect();
                c.err(
                    name,
                    "staking.execution.client",
                    format!("got {:?}; expected one of {}", name.value, names.join(", ")),
                );
                model::ExecutionClient::Geth
            }
        },
    };
    let version =
        |c: &mut Checker<'_>, v: &Option<Spanned<String>>, field: &str, default: &str| -> String {
            match v {
                None => default.to_string(),
                Some(v) => {
                    if let Err(why) = staking::check_version(&v.value) {
                        c.err(v, field, format!("got {:?}; expected {why}", v.value));
                    }
                    v.value.clone()
                }
            }
        };
    let ex_version = version(
        c,
        &ex.version,
        "staking.execution.version",
        staking::default_version(client),
    );
    let prysm_version = version(
        c,
        &st.prysm.version,
        "staking.prysm.version",
        staking::PRYSM_VERSION,
    );
    let k8s_nodes: Vec<&crate::schema::Machine> = raw
        .machines
        .value
        .iter()
        .filter(|m| m.role.value == "master" || m.role.value == "worker")
        .collect();
    let node = match &ex.node {
        Some(n) => {
            if !k8s_nodes.iter().any(|m| m.name.value == n.value) {
                let names: Vec<&str> = k8s_nodes.iter().map(|m| m.name.value.as_str()).collect();
                c.err(
                    n,
                    "staking.execution.node",
                    format!(
                        "got {:?}; expected the name of a master or worker machine ({})",
                        n.value,
                        names.join(", ")
                    ),
                );
            }
            n.value.clone()
        }
        None => k8s_nodes
            .iter()
            .find(|m| m.role.value == "worker")
            .or(k8s_nodes.first())
            .map(|m| m.name.value.clone())
            .unwrap_or_default(),
    };
    let path = match &ex.path {
        None => staking::DEFAULT_EXECUTION_PATH.to_string(),
        Some(p) => {
            c.want(p, "staking.execution.path", is_export_path(&p.value), "an absolute path made of letters, digits, '.', '_', '-' and '/', such as /var/lib/microseed/execution");
            p.value.trim_end_matches('/').to_string()
        }
    };
    let checkpoint_sync_url = match &st.checkpoint_sync_url {
        Some(u) => {
            if let Err(why) = staking::check_url(&u.value) {
                c.err(u, "staking.checkpoint_sync_url", format!("got {:?} ({why}); expected a beacon node API URL such as \"https://hoodi.checkpoint.sigp.io\"", u.value));
            }
            Some(u.value.clone())
        }
        None => network
            .as_deref()
            .and_then(staking::default_checkpoint_sync_url)
            .map(str::to_string),
    };
    if on && !raw.microk8s.addons.iter().any(|a| a.value == "dns") {
        c.push(Diagnostic::error(
            c.file,
            Pos::from_location(raw.staking_pos()),
            "microk8s.addons",
            "staking needs the dns add-on: the beacon node finds the execution client, and the validators the beacon node, by Service name; add dns to microk8s.addons",
        ));
    }
    model::Staking {
        enabled: on,
        network,
        execution: model::Execution {
            client,
            version: ex_version,
            node,
            path,
        },
        prysm_version,
        checkpoint_sync_url,
        validators,
    }
}

/// Fee recipients nobody can spend from (the zero and 0x…dEaD addresses,
/// which the staking example uses as its placeholder): a warning, an error
/// with `--strict`, so the example builds but never silently.
pub fn staking_warnings(file: &Path, raw: &ClusterFile) -> Vec<Diagnostic> {
    let st = &raw.staking;
    let mut w = Vec::new();
    let listed = st
        .validators
        .iter()
        .flat_map(|l| l.value.iter().enumerate());
    let all = st
        .fee_recipient
        .iter()
        .map(|a| (a, "staking.fee_recipient".to_string()))
        .chain(listed.filter_map(|(i, v)| {
            v.fee_recipient
                .as_ref()
                .map(|a| (a, format!("staking.validators[{i}].fee_recipient")))
        }));
    for (a, field) in all {
        if st.enabled.value && staking::is_burn_address(&a.value) {
            w.push(Diagnostic::warning(
                file,
                pos(a),
                field,
                format!("{} is a placeholder nobody holds the key of: the fees of every block your validators propose would be lost; replace it with an address of your own wallet", a.value),
            ));
        }
    }
    w
}

/// Every machine (name, role, address, MAC, interface, disk: each unique
/// where it must be) and the roles' counts. Returns the machines and, per
/// role, the indices of its machines.
fn check_machines<'r>(
    c: &mut Checker<'_>,
    raw: &'r ClusterFile,
    profiles: &Profiles,
    subnet: Option<Cidr>,
    gateway: Option<Ipv4Addr>,
) -> (Vec<model::Machine>, BTreeMap<&'r str, Vec<usize>>) {
    let file = c.file;
    let mut machines = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut ips: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut macs: HashMap<String, usize> = HashMap::new();
    let mut by_role: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    if raw.machines.value.is_empty() {
        c.push(Diagnostic::error(
            file,
            pos(&raw.machines),
            "machines",
            "empty; expected at least one machine",
        ));
    }
    for (i, m) in raw.machines.value.iter().enumerate() {
        let f = |k: &str| format!("machines[{i}].{k}");
        let name_ok = c.want(&m.name, &f("name"), is_label(&m.name.value), "a host name: lower-case letters, digits and '-', not starting or ending with '-', at most 63 characters (RFC 1123; Kubernetes node names must be lower case)");
        let name_ok = name_ok && check_host_name(c, &m.name, &f("name"));
        if name_ok && let Some(prev) = names.insert(m.name.value.clone(), i) {
            c.err(
                &m.name,
                f("name"),
                format!(
                    "duplicate name {:?}, already used by machines[{prev}]",
                    m.name.value
                ),
            );
        }
        if !profiles.roles.contains_key(&m.role.value) {
            let known: Vec<&str> = profiles.roles.keys().map(String::as_str).collect();
            let hint = nearest(&m.role.value, &known)
                .map(|n| format!("; did you mean {n:?}?"))
                .unwrap_or_default();
            c.err(
                &m.role,
                f("role"),
                format!(
                    "unknown role {}; expected one of {}{hint}",
                    shown(&m.role.value),
                    known.join(", ")
                ),
            );
        } else {
            by_role.entry(m.role.value.as_str()).or_default().push(i);
        }
        let ip = check_ip_in(c, &m.ip, &f("ip"), subnet);
        if let Some(ip) = ip {
            if Some(ip) == gateway {
                c.err(
                    &m.ip,
                    f("ip"),
                    format!("{ip} is the gateway's address; expected a free address in the subnet"),
                );
            }
            if let Some(prev) = ips.insert(ip, i) {
                c.err(
                    &m.ip,
                    f("ip"),
                    format!("duplicate address {ip}, already used by machines[{prev}]"),
                );
            }
        }
        let mut mac = None;
        if let Some(mv) = &m.mac {
            if is_mac(&mv.value) && !is_unicast_mac(&mv.value) {
                c.err(
                    mv,
                    f("mac"),
                    format!(
                        "{} is a multicast or all-zero MAC (the first byte is odd, or every byte is 0); a network card's address is unicast, such as 52:54:00:12:34:56",
                        mv.value
                    ),
                );
            } else if is_mac(&mv.value) {
                // 52-54-00-… (Windows' form) is the same address.
                let norm = mv.value.to_ascii_lowercase().replace('-', ":");
                if let Some(prev) = macs.insert(norm.clone(), i) {
                    c.err(
                        mv,
                        f("mac"),
                        format!("duplicate MAC {norm}, already used by machines[{prev}]"),
                    );
                }
                mac = Some(norm);
            } else {
                c.err(
                    mv,
                    f("mac"),
                    format!(
                        "got {}; expected a MAC address such as 52:54:00:12:34:56",
                        shown(&mv.value)
                    ),
                );
            }
        }
        if let Some(ifn) = &m.interface {
            c.want(ifn, &f("interface"), is_ifname(&ifn.value), "an interface name such as \"eno1\" (at most 15 characters: letters, digits, '-', '_', '.')");
        }
        let disk = match &m.disk {
            None => Disk::Largest,
            Some(d) => {
                match &d.value {
                    DiskChoice::Serial(s) if !is_serial(s) => c.err(d, f("disk.serial"), format!("got {}; expected the disk's serial: the short one `lsblk -o NAME,SERIAL` prints, udev's ID_SERIAL (`udevadm info --query=property --name=/dev/sdX`), or a glob of it (letters, digits, '_', '-', '.', ':', and '*', '?', '[', ']'; at least one letter or digit, so it cannot match every disk)", shown(s))),
                    _ => {}
                }
                match &d.value {
                    DiskChoice::Largest => Disk::Largest,
                    DiskChoice::Serial(s) => Disk::Serial(s.clone()),
                    // Only what subiquity can match reaches the autoinstall.
                    DiskChoice::Path(p) => match crate::diskid::parse(p) {
                        Ok(crate::diskid::DiskPath::Kernel(k)) => Disk::Path(k),
                        Ok(crate::diskid::DiskPath::Serial(s)) => Disk::Serial(s),
                        Err(e) => {
                            c.err(d, f("disk.path"), e);
                            Disk::Largest
                        }
                    },
                }
            }
        };
        machines.push(model::Machine {
            name: m.name.value.clone(),
            role: m.role.value.clone(),
            ip: ip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            index: i,
            mac,
            interface: m.interface.as_ref().map(|s| s.value.clone()),
            disk,
            // Set by `check_maintenance`, which needs every machine.
            refresh_timer: String::new(),
            // Set below, once every machine's role is known.
            master_index: None,
        });
    }
    for (role, prof) in &profiles.roles {
        let found = by_role.get(role.as_str()).map(Vec::len).unwrap_or(0);
        let (ok, expected) = match prof.count {
            Count::Any => continue,
            Count::ExactlyOne => (found == 1, "exactly one"),
            Count::OneThreeOrFive => (matches!(found, 1 | 3 | 5), "1, 3 or 5"),
        };
        if ok {
            continue;
        }
        let note = prof
            .count_note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        // The machine that made the count wrong: the second of "exactly
        // one", the 2nd, 4th or 6th of "1, 3 or 5"; else the list.
        let at = by_role
            .get(role.as_str())
            .and_then(|v| match prof.count {
                Count::OneThreeOrFive if found > 5 => v.get(5),
                Count::OneThreeOrFive => v.last(),
                _ => v.get(1),
            })
            .map(|&i| pos(&raw.machines.value[i].role))
            .unwrap_or_else(|| pos(&raw.machines));
        c.push(Diagnostic::error(
            file,
            at,
            "machines",
            format!("found {found} machines with role {role:?}; expected {expected}{note}"),
        ));
    }
    // Each master's position among the masters, in file order: the order
    // they join in and that workers try them in.
    for (n, m) in machines
        .iter_mut()
        .filter(|m| m.role == "master")
        .enumerate()
    {
        m.master_index = Some(n);
    }
    (machines, by_role)
}

/// The shortest slot a machine gets in the refresh window: snapd starts a
/// refresh at its slot's start, so two machines' refreshes start at least
/// this far apart; a MicroK8s refresh (download, restart) takes minutes.
pub const MIN_REFRESH_SLOT_MINUTES: u32 = 10;

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A weekly refresh window: days, and one span within each day (minutes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshWindow {
    pub days: Vec<&'static str>,
    pub start: u32,
    pub end: u32,
}

/// Parses `maintenance.refresh_window`: a subset of snapd's `refresh.timer`
/// grammar (timeutil/schedule.go, `ParseSchedule`: `wdaylist "," timelist`,
/// `time = 2DIGIT ":" 2DIGIT`, `timespan = time "-" time`): one or more
/// distinct weekdays, then one span within the day, `24:00` allowed as its
/// end. The error is the whole message.
pub fn parse_refresh_window(s: &str) -> Result<RefreshWindow, String> {
    let expected = "expected weekdays and a span within the day, such as \"sat,02:00-06:00\" or \"sat,sun,03:00-05:00\" (mon to sun, 24-hour HH:MM, start before end; the cluster's time zone)";
    let parts: Vec<&str> = s.split(',').collect();
    let Some((span, days)) = parts.split_last() else {
        return Err(format!("got {s:?}; {expected}"));
    };
    if days.is_empty() {
        return Err(format!("got {s:?}: no weekday; {expected}"));
    }
    let mut out = Vec::new();
    for d in days {
        let Some(day) = WEEKDAYS.iter().find(|w| *w == d) else {
            return Err(format!("got {s:?}: {d:?} is not a weekday; {expected}"));
        };
        if out.contains(day) {
            return Err(format!("got {s:?}: {d} is named twice; {expected}"));
        }
        out.push(*day);
    }
    let clock = |t: &str| -> Option<u32> {
        let (h, m) = t.split_once(':')?;
        if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|c| c.is_ascii_digit())
        {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 || h == 24 && m == 0).then_some(h * 60 + m)
    };
    let Some((a, b)) = span.split_once('-') else {
        return Err(format!(
            "got {s:?}: {span:?} is not a span HH:MM-HH:MM; {expected}"
        ));
    };
    let (Some(start), Some(end)) = (clock(a), clock(b)) else {
        return Err(format!(
            "got {s:?}: {span:?} is not a span HH:MM-HH:MM; {expected}"
        ));
    };
    if start >= end {
        return Err(format!(
            "got {s:?}: the span must end after it starts on the same day (split one across midnight into two days' spans is not supported); {expected}"
        ));
    }
    Ok(RefreshWindow {
        days: out,
        start,
        end,
    })
}

impl RefreshWindow {
    /// The `n` machines' slots, in cluster-file order: each day of the
    /// window split into as many equal slots as it needs, filled day by
    /// day, so the master (listed early) and each worker get their own.
    /// `None` when a slot would be shorter than
    /// [`MIN_REFRESH_SLOT_MINUTES`].
    pub fn slots(&self, n: usize) -> Option<Vec<String>> {
        let n = n.max(1) as u32;
        let days = self.days.len() as u32;
        let per_day = n.div_ceil(days);
        let len = (self.end - self.start) / per_day;
        if len < MIN_REFRESH_SLOT_MINUTES {
            return None;
        }
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        Some(
            (0..n)
                .map(|k| {
                    let day = self.days[(k / per_day) as usize];
                    let from = self.start + (k % per_day) * len;
                    format!("{day},{}-{}", hm(from), hm(from + len))
                })
                .collect(),
        )
    }
}

/// The refresh window, and each machine's slot in it (in file order).
/// Returns the window used and the slots.
fn check_maintenance(
    c: &mut Checker<'_>,
    raw: &ClusterFile,
    machines: usize,
) -> Option<(String, Vec<String>)> {
    let Some(at) = &raw.maintenance.refresh_window else {
        // No window in the file: the first default with room for everyone.
        for d in crate::schema::DEFAULT_REFRESH_WINDOWS {
            if let Some(slots) = parse_refresh_window(d).ok().and_then(|w| w.slots(machines)) {
                return Some((d.to_string(), slots));
            }
        }
        c.push(Diagnostic::error(
            c.file,
            pos(&raw.machines),
            "machines",
            format!(
                "{machines} machines cannot each have their own {MIN_REFRESH_SLOT_MINUTES}-minute snap refresh slot in a week; expected at most {}",
                7 * 24 * 60 / MIN_REFRESH_SLOT_MINUTES
            ),
        ));
        return None;
    };
    let w = match parse_refresh_window(&at.value) {
        Ok(w) => w,
        Err(e) => {
            c.err(at, "maintenance.refresh_window", e);
            return None;
        }
    };
    let Some(slots) = w.slots(machines) else {
        let days = w.days.len() as u32;
        let per_day = (machines.max(1) as u32).div_ceil(days);
        c.err(
            at,
            "maintenance.refresh_window",
            format!(
                "{:?} is too short for {machines} machines: each gets its own slot of at least {MIN_REFRESH_SLOT_MINUTES} minutes, so no two refresh at once; expected a span of at least {} minutes on each of its {days} day(s), or more days",
                at.value,
                per_day * MIN_REFRESH_SLOT_MINUTES
            ),
        );
        return None;
    };
    Some((at.value.clone(), slots))
}

/// The MicroK8s channel the cluster runs: the file's `microk8s.channel`,
/// else its release's default (so `release: "24.04"` alone gets a channel
/// that works there). A track older than the release's `min_track` cannot
/// run on it and is refused with the profile's reason, at the channel when
/// the file names one, else at `release`. A malformed channel is left to the
/// caller's syntax check.
fn check_channel_fits_release(
    c: &mut Checker<'_>,
    raw: &ClusterFile,
    profiles: &Profiles,
) -> Spanned<String> {
    // Loaded (or reported) by `check_general` already.
    let release = profiles.release(&raw.release.value).ok().flatten();
    let chan = match (&raw.microk8s.channel, release) {
        (Some(ch), _) => ch.clone(),
        (None, Some(r)) => Spanned {
            value: r.microk8s.default_channel.clone(),
            referenced: raw.release.referenced,
            defined: raw.release.defined,
        },
        // An unknown release is reported on its own; any valid channel
        // keeps this from adding a second, misleading error.
        (None, None) => Spanned {
            value: "1.20/stable".into(),
            referenced: raw.release.referenced,
            defined: raw.release.defined,
        },
    };
    let (Some(r), Some((track, version))) = (release, parse_channel(&chan.value)) else {
        return chan;
    };
    let Some(min) = r.microk8s.min_track.as_deref() else {
        return chan;
    };
    // Checked when the profile is loaded.
    let Some((_, min_v)) = parse_channel(&format!("{min}/stable")) else {
        return chan;
    };
    if version < min_v {
        let why = r
            .microk8s
            .min_track_reason
            .as_deref()
            .map(|w| format!(": {w}"))
            .unwrap_or_default();
        let whose = if raw.microk8s.channel.is_some() {
            ""
        } else {
            " (the default channel of this release's profile)"
        };
        c.err(
            &chan,
            "microk8s.channel",
            format!(
                "{}{whose} cannot run on Ubuntu {}: track {track} is older than {min}{why}; expected track {min} or later, such as {:?} (this release's default)",
                shown(&chan.value), r.release, r.microk8s.default_channel
            ),
        );
    }
    chan
}

/// sshd must not take a port a machine's role opens in its firewall: the
/// service behind it could not listen, and the ssh rule (often open to
/// anywhere) would open that service to the world too.
fn check_ssh_port_free<'r>(
    c: &mut Checker<'_>,
    at: &Spanned<u32>,
    profiles: &Profiles,
    roles: impl Iterator<Item = &'r str>,
) {
    let port = at.value;
    // (service, roles opening it), in profile order.
    let mut clashes: Vec<(String, Vec<String>)> = Vec::new();
    let common = profiles.common.firewall.iter().map(|r| ("common", r));
    // A rule from a layer is opened by each role that applies the layer.
    let by_role = roles.filter_map(|role| {
        profiles.stack(role).map(|stack| {
            stack
                .into_iter()
                .flat_map(|p| p.firewall.iter())
                .map(move |r| (role, r))
        })
    });
    for (who, rule) in common.chain(by_role.flatten()) {
        if rule.proto != Proto::Tcp || rule.port.contains("{{") {
            continue;
        }
        let (lo, hi) = match rule.port.split_once(':') {
            Some((a, b)) => (a.trim().parse::<u32>(), b.trim().parse::<u32>()),
            None => (
                rule.port.trim().parse::<u32>(),
                rule.port.trim().parse::<u32>(),
            ),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else { continue };
        if (lo..=hi).contains(&port) {
            let what = rule.comment.clone().unwrap_or_else(|| "a service".into());
            match clashes.iter_mut().find(|(w, _)| *w == what) {
                Some((_, whos)) => whos.push(who.to_string()),
                None => clashes.push((what, vec![who.to_string()])),
            }
        }
    }
    let clashes: Vec<String> = clashes
        .into_iter()
        .map(|(what, whos)| {
            let by = if whos.len() == 1 {
                format!("the {} role", whos[0])
            } else {
                format!("the {} roles", whos.join(" and "))
            };
            format!("{what} ({port}/tcp, opened by {by})")
        })
        .collect();
    if !clashes.is_empty() {
        c.err(
            at,
            "ssh.port",
            format!(
                "{port} is taken by {}; sshd cannot share it, and the ssh rule would open that service wherever ssh is allowed from; expected another port, such as 2222",
                clashes.join(", ")
            ),
        );
    }
}

fn check_ip_in(
    c: &mut Checker<'_>,
    at: &Spanned<String>,
    field: &str,
    subnet: Option<Cidr>,
) -> Option<Ipv4Addr> {
    let Ok(ip) = Ipv4Addr::from_str(&at.value) else {
        c.err(
            at,
            field,
            format!(
                "got {}; expected an IPv4 address such as 172.20.10.11",
                shown(&at.value)
            ),
        );
        return None;
    };
    if let Some(s) = subnet {
        if !s.contains(ip) {
            c.err(
                at,
                field,
                format!(
                    "{ip} is outside the subnet {}/{}; expected an address inside it",
                    s.network(),
                    s.prefix
                ),
            );
            return None;
        }
        if ip == s.network() || ip == s.broadcast() {
            let which = if ip == s.network() {
                "network"
            } else {
                "broadcast"
            };
            c.err(
                at,
                field,
                format!("{ip} is the subnet's {which} address; expected a host address"),
            );
            return None;
        }
    }
    Some(ip)
}

/// Splits a snap channel into its track and (major, minor) version.
pub fn parse_channel(s: &str) -> Option<(String, (u32, u32))> {
    let mut parts = s.split('/');
    let track = parts.next()?;
    let risk = parts.next()?;
    let branch = parts.next();
    if parts.next().is_some() || !["stable", "candidate", "beta", "edge"].contains(&risk) {
        return None;
    }
    if let Some(b) = branch
        && (b.is_empty() || !b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    {
        return None;
    }
    if track == "latest" {
        return Some((track.into(), (u32::MAX, u32::MAX)));
    }
    let mut v = track.split('.');
    let major: u32 = v.next()?.parse().ok()?;
    let minor: u32 = v.next()?.parse().ok()?;
    if let Some(extra) = v.next() {
        extra.parse::<u32>().ok()?;
    }
    if v.next().is_some() || !track.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        return None;
    }
    Some((track.into(), (major, minor)))
}

/// The oldest MicroK8s track (MicroK8s began with Kubernetes 1.10): a
/// track such as `1.2` parses but names nothing the snap store has.
const FIRST_TRACK_MINOR: u32 = 10;

/// A machine name other machines and Kubernetes can use: not `localhost`
/// (every machine's /etc/hosts maps it to 127.0.0.1, so the others would
/// reach themselves) and not all digits (resolvers and ssh read `123` as the
/// address 0.0.0.123; RFC 1123 2.1 keeps host names from looking like
/// numbers). Reports and returns false when it is neither.
fn check_host_name(c: &mut Checker<'_>, at: &Spanned<String>, field: &str) -> bool {
    let name = at.value.as_str();
    let why = if name == "localhost" {
        "names the machine itself on every machine (/etc/hosts maps it to 127.0.0.1), so no other machine or Kubernetes could reach it by name"
    } else if name.bytes().all(|b| b.is_ascii_digit()) {
        "is all digits, which resolvers, ssh and ping read as an IP address (123 is 0.0.0.123), not a name"
    } else {
        return true;
    };
    c.err(
        at,
        field,
        format!("{name:?} {why}; expected another name, such as \"worker-1\""),
    );
    false
}

pub fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_domain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|l| {
            let l = l.to_ascii_lowercase();
            is_label(&l)
        })
}

fn is_locale(s: &str) -> bool {
    let (base, rest) = s.split_once('.').unwrap_or((s, ""));
    let base_ok = !base.is_empty() && base.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_');
    let rest_ok = rest
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'@');
    base_ok && rest_ok && s.len() <= 40
}

fn is_kbd(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

fn is_username(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
        && s != "root"
}

/// A complete crypt(3) string of a scheme Ubuntu 20.04's libxcrypt
/// verifies: `$id$[params$]salt$hash` with the hash at its full length, so a
/// truncated paste (which would lock the account) is caught here.
fn is_crypt_hash(s: &str) -> bool {
    fn alphabet(x: &str) -> bool {
        x.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
    }
    let parts: Vec<&str> = s.split('$').collect();
    if parts.first() != Some(&"") {
        return false;
    }
    let ok_salt = |salt: &str, max: usize| !salt.is_empty() && salt.len() <= max && alphabet(salt);
    let rounds = |p: &str| {
        p.strip_prefix("rounds=")
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1000..=999_999_999).contains(&n))
    };
    match parts.as_slice() {
        ["", "1", salt, hash] => ok_salt(salt, 8) && hash.len() == 22 && alphabet(hash),
        ["", "5", salt, hash] => ok_salt(salt, 16) && hash.len() == 43 && alphabet(hash),
        ["", "5", r, salt, hash] => {
            rounds(r) && ok_salt(salt, 16) && hash.len() == 43 && alphabet(hash)
        }
        ["", "6", salt, hash] => ok_salt(salt, 16) && hash.len() == 86 && alphabet(hash),
        ["", "6", r, salt, hash] => {
            rounds(r) && ok_salt(salt, 16) && hash.len() == 86 && alphabet(hash)
        }
        ["", "y" | "gy", params, salt, hash] => {
            !params.is_empty()
                && alphabet(params)
                && ok_salt(salt, 86)
                && hash.len() == 43
                && alphabet(hash)
        }
        ["", "2a" | "2b" | "2y", cost, rest] => {
            cost.len() == 2
                && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c))
                && rest.len() == 53
                && alphabet(rest)
        }
        _ => false,
    }
}

/// Option names OpenSSH 8.2's sshd (Ubuntu 20.04; `auth-options.c`)
/// accepts before a key in authorized_keys: flags, then options that take
/// a `"quoted"` value. sshd ignores the whole line on any other name, so
/// such a key would let nobody in.
const KEY_FLAGS: &[&str] = &[
    "agent-forwarding",
    "no-agent-forwarding",
    "port-forwarding",
    "no-port-forwarding",
    "pty",
    "no-pty",
    "user-rc",
    "no-user-rc",
    "x11-forwarding",
    "no-x11-forwarding",
    "restrict",
    "no-touch-required",
];
const KEY_VALUE_OPTIONS: &[&str] = &[
    "command",
    "environment",
    "expiry-time",
    "from",
    "permitlisten",
    "permitopen",
    "principals",
    "tunnel",
];

/// Takes the options (`from="10.0.0.0/8",no-pty ...`) off the front of an
/// authorized_keys line and returns the key part; an error when sshd would
/// reject them. A line starting with a key type has none.
fn authorized_key_options(line: &str) -> Result<&str, String> {
    let first = line.split_whitespace().next().unwrap_or("");
    let is_key_type = first.starts_with("ssh-")
        || first.starts_with("ecdsa-sha2-")
        || first.starts_with("sk-")
        || first.ends_with("@openssh.com");
    if is_key_type {
        return Ok(line);
    }
    // The options end at the first blank outside double quotes (`\"` is a
    // quote inside a value).
    let bytes = line.as_bytes();
    let (mut quoted, mut end, mut i) = (false, None, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quoted && bytes.get(i + 1) == Some(&b'"') => i += 1,
            b'"' => quoted = !quoted,
            b' ' | b'\t' if !quoted => {
                end = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err("an option's \"quoted value\" before the key is never closed; expected options such as `from=\"10.0.0.0/8\",no-pty` then the key".into());
    }
    let Some(end) = end else {
        return Err("not an OpenSSH public key (no key type such as ssh-ed25519 found); expected one line such as \"ssh-ed25519 AAAA... you@host\", optionally after authorized_keys options".into());
    };
    let (opts, key) = (&line[..end], line[end..].trim_start());
    // Split at commas outside quotes.
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut j) = (0, false, 0);
    let ob = opts.as_bytes();
    while j < ob.len() {
        match ob[j] {
            b'\\' if quoted && ob.get(j + 1) == Some(&b'"') => j += 1,
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&opts[start..j]);
                start = j + 1;
            }
            _ => {}
        }
        j += 1;
    }
    parts.push(&opts[start..]);
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (part, None),
        };
        let lower = name.to_ascii_lowercase();
        let shown_name = shown(name);
        if lower == "cert-authority" {
            return Err("the `cert-authority` option makes the key a certificate authority, which cannot log in itself: the admin would be locked out; remove the option".into());
        }
        match value {
            None if KEY_FLAGS.contains(&lower.as_str()) => {}
            Some(v) if KEY_VALUE_OPTIONS.contains(&lower.as_str()) => {
                if !(v.len() >= 2 && v.starts_with('"') && v.ends_with('"')) {
                    return Err(format!(
                        "the option {shown_name} needs its value in double quotes, such as {name}=\"...\"; sshd would ignore the key"
                    ));
                }
            }
            None if KEY_VALUE_OPTIONS.contains(&lower.as_str()) => {
                return Err(format!(
                    "the option {shown_name} needs a value, such as {name}=\"...\"; sshd would ignore the key"
                ));
            }
            Some(_) if KEY_FLAGS.contains(&lower.as_str()) => {
                return Err(format!(
                    "the option {shown_name} takes no value; sshd would ignore the key"
                ));
            }
            _ => {
                return Err(format!(
                    "{shown_name} before the key is not an authorized_keys option OpenSSH 8.2 (Ubuntu 20.04) knows, so sshd would ignore the key; expected options such as from=\"...\", command=\"...\", no-pty, restrict, or the key alone (\"ssh-ed25519 AAAA... you@host\")"
                ));
            }
        }
    }
    Ok(key)
}

/// Checks one authorized key the way Ubuntu 20.04's sshd (OpenSSH 8.2)
/// will judge it: every key type it accepts by default passes (RSA of at
/// least 1024 bits, ECDSA P-256/384/521, Ed25519 and the FIDO `sk-` types);
/// what it would refuse is an error here, because the only key being refused
/// means a machine nobody can log in to. The error is the whole message.
pub fn check_ssh_key(s: &str) -> Result<(), String> {
    const EXPECTED: &str = "expected one line such as \"ssh-ed25519 AAAA... you@host\"";
    const DSA: &str = "an ssh-dss (DSA) key: OpenSSH disables DSA since 7.0, so the installed \
        sshd would refuse it and lock you out; make a new key with `ssh-keygen -t ed25519` \
        and use its .pub file";
    let line = s.trim();
    // Two common slips, caught before the parser's terse errors. The value
    // is never quoted back: a pasted private key must not reach a log.
    if line.contains("PRIVATE KEY") {
        return Err(
            "this is a PRIVATE key (the value is not shown): take it out of the \
            cluster file now and use the public key beside it (the same file name with .pub, \
            such as ~/.ssh/id_ed25519.pub)"
                .into(),
        );
    }
    if !line.contains(char::is_whitespace)
        && (line.starts_with('/') || line.starts_with('~') || line.starts_with("./"))
    {
        return Err(format!(
            "{line:?} is a path to a key file, not a key: paste the line the file holds \
             (`cat {line}`), such as \"ssh-ed25519 AAAA... you@host\""
        ));
    }
    if line.contains('\n') || line.contains('\r') {
        return Err(format!("contains a line break; {EXPECTED}"));
    }
    let line = authorized_key_options(line)?;
    let kind = line.split_whitespace().next().unwrap_or("");
    if kind.ends_with("-cert-v01@openssh.com") {
        return Err(
            "an OpenSSH certificate, not a public key: authorized keys hold \
            plain keys; use the key it certifies (the same file without `-cert`, such as \
            ~/.ssh/id_ed25519.pub)"
                .into(),
        );
    }
    if kind == "ssh-dss" {
        return Err(DSA.into());
    }
    let key = ssh_key::PublicKey::from_openssh(line)
        .map_err(|e| format!("not an OpenSSH public key ({e}); {EXPECTED}"))?;
    match key.key_data() {
        ssh_key::public::KeyData::Dsa(_) => Err(DSA.into()),
        ssh_key::public::KeyData::Rsa(rsa) => {
            let bytes = rsa.n.as_positive_bytes().unwrap_or(&[]);
            let bits = match bytes.first() {
                Some(b) => bytes.len() * 8 - b.leading_zeros() as usize,
                None => 0,
            };
            if bits < 1024 {
                Err(format!(
                    "an RSA key of {bits} bits; OpenSSH refuses RSA keys shorter than 1024 bits (make a new key with `ssh-keygen -t ed25519`)"
                ))
            } else {
                Ok(())
            }
        }
        ssh_key::public::KeyData::Ecdsa(_)
        | ssh_key::public::KeyData::Ed25519(_)
        | ssh_key::public::KeyData::SkEcdsaSha2NistP256(_)
        | ssh_key::public::KeyData::SkEd25519(_) => Ok(()),
        _ => Err(format!(
            "key type {kind:?} is not one OpenSSH 8.2 (Ubuntu 20.04) accepts; {EXPECTED}"
        )),
    }
}

fn is_addon(s: &str) -> bool {
    let (name, args) = s.split_once(':').unwrap_or((s, ""));
    is_label(name)
        && args.len() <= 200
        && args
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".,=/_-:".contains(&c))
}

fn is_export_path(s: &str) -> bool {
    s.starts_with('/')
        && s.trim_end_matches('/').len() > 1
        && s.len() <= 200
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._/-".contains(&c))
        && !s.split('/').any(|p| p == ".." || p == ".")
}

fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    !(s.contains(':') && s.contains('-'))
        && parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// A unicast, non-zero MAC: the first byte's lowest bit marks a group
/// (multicast) address, which no network card has.
fn is_unicast_mac(s: &str) -> bool {
    let first = u8::from_str_radix(&s[..2], 16).unwrap_or(1);
    first & 1 == 0 && s.split([':', '-']).any(|p| p != "00")
}

fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && s != "."
        && s != ".."
}

/// A serial, an `ID_SERIAL`, or an fnmatch glob of one (subiquity matches
/// with fnmatch). A glob of only `*` would match any disk: not a serial.
fn is_serial(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.:*?[]".contains(&c))
        && s.bytes().any(|c| c.is_ascii_alphanumeric())
}

/// The public key every example ships (`admin@example`): its private half
/// belongs to nobody who builds a cluster.
const EXAMPLE_KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL";

/// A warning for each admin key copied from the examples: with only that
/// key, nobody can log in to the installed machines.
pub fn example_key_warnings(file: &Path, raw: &ClusterFile) -> Vec<Diagnostic> {
    raw.admin
        .ssh_keys
        .value
        .iter()
        .enumerate()
        .filter(|(_, k)| k.value.split_whitespace().nth(1) == Some(EXAMPLE_KEY))
        .map(|(i, k)| {
            Diagnostic::warning(
                file,
                pos(k),
                format!("admin.ssh_keys[{i}]"),
                "this is the examples' key (admin@example), not yours: nobody can log in with \
                 it; replace it with your own public key (`cat ~/.ssh/id_ed25519.pub`, or make \
                 one with `ssh-keygen -t ed25519`)",
            )
        })
        .collect()
}

/// Warnings for add-on names no MicroK8s track or add-on repository has
/// (`known::addon_known`): `microk8s enable` would fail on the master. Not
/// errors: a site may enable add-ons from a repository of its own.
pub fn addon_warnings(file: &Path, raw: &ClusterFile) -> Vec<Diagnostic> {
    let names = known::addon_names();
    raw.microk8s
        .addons
        .iter()
        .enumerate()
        .filter_map(|(i, ad)| {
            let name = ad.value.split(':').next().unwrap_or("");
            if !is_addon(&ad.value) || known::addon_known(name) {
                return None;
            }
            let hint = nearest(name, &names)
                .map(|n| format!("; did you mean {n:?}?"))
                .unwrap_or_default();
            Some(Diagnostic::warning(
                file,
                pos(ad),
                format!("microk8s.addons[{i}]"),
                format!(
                    "{name:?} is no MicroK8s add-on microseed knows (the built-in ones of any track, the core and community repositories), so `microk8s enable {name}` would likely fail on the master{hint}"
                ),
            ))
        })
        .collect()
}

/// Below this many characters a plain serial is likely to occur inside
/// another disk's `ID_SERIAL` too.
const SHORT_SERIAL: usize = 6;

/// Warnings (never errors) for plain serials so short that the `*S*` glob
/// microseed emits (documents::serial_glob) may match another disk: the
/// installer takes the first match and wipes it.
pub fn short_serial_warnings(file: &Path, raw: &ClusterFile) -> Vec<Diagnostic> {
    let mut w = Vec::new();
    for (i, m) in raw.machines.value.iter().enumerate() {
        let Some(d) = &m.disk else { continue };
        if let DiskChoice::Serial(s) = &d.value
            && !s.contains(['*', '?', '['])
            && s.chars().count() < SHORT_SERIAL
        {
            w.push(Diagnostic::warning(
                file,
                pos(d),
                format!("machines[{i}].disk.serial"),
                format!(
                    "{s:?} is short: it is matched anywhere inside udev's ID_SERIAL (as *{s}*), so it may also match another disk, which the installer would wipe; give the full ID_SERIAL (`udevadm info --query=property --name=/dev/sdX | grep ID_SERIAL`) or a glob of it"
                ),
            ));
        }
    }
    w
}

/// A warning (never an error: the disk is right on most machines) for an
/// NFS server with a data disk whose root disk is a kernel name: `/dev/sda`
/// may be the data disk at the install's boot, and the installer would
/// erase it.
pub fn data_disk_warnings(file: &Path, raw: &ClusterFile) -> Vec<Diagnostic> {
    if raw.nfs.data_disk.is_none() {
        return Vec::new();
    }
    let mut w = Vec::new();
    for (i, m) in raw.machines.value.iter().enumerate() {
        let Some(d) = &m.disk else { continue };
        if m.role.value != "nfs" {
            continue;
        }
        if let DiskChoice::Path(p) = &d.value
            && let Ok(crate::diskid::DiskPath::Kernel(k)) = crate::diskid::parse(p)
        {
            w.push(Diagnostic::warning(
                file,
                pos(d),
                format!("machines[{i}].disk.path"),
                format!(
                    "{k:?} is a kernel name and this machine also has a data disk (nfs.data_disk): disks are not always found in the same order, so {k} may be the data disk when the installer runs, and it would erase it; name the root disk by its serial, `disk: {{serial: ID_SERIAL}}`"
                ),
            ));
        }
    }
    w
}

/// Google's public NTP servers, which smear a leap second over 24 hours
/// (developers.google.com/time/smear); other public servers step it.
const SMEARED_NTP: &[&str] = &[
    "time.google.com",
    "time1.google.com",
    "time2.google.com",
    "time3.google.com",
    "time4.google.com",
];

fn is_smeared(host: &str) -> bool {
    SMEARED_NTP.contains(&host.trim_end_matches('.').to_ascii_lowercase().as_str())
}

/// A warning when `ntp.pools` mixes leap-smeared and stepping servers:
/// around a leap second they disagree by up to half a second, so chrony
/// sees falsetickers and may follow either (Google advises against it).
pub fn ntp_warnings(file: &Path, raw: &ClusterFile) -> Vec<Diagnostic> {
    let pools = &raw.ntp.pools.value;
    let (smeared, stepping): (Vec<&str>, Vec<&str>) = pools
        .iter()
        .map(|p| p.value.as_str())
        .partition(|p| is_smeared(p));
    if smeared.is_empty() || stepping.is_empty() {
        return Vec::new();
    }
    let at = pools
        .iter()
        .find(|p| is_smeared(&p.value))
        .map(pos)
        .filter(|p| p.known())
        .unwrap_or_else(|| pos(&raw.ntp.pools));
    vec![Diagnostic::warning(
        file,
        at,
        "ntp.pools",
        format!(
            "mixes leap-smeared servers ({}) with servers that step leap seconds ({}): around a leap second they disagree by up to 0.5 s and chrony may follow either, which Google advises against (developers.google.com/time/smear); expected only one kind, such as pools: [{}] or pools: [{}]",
            smeared.join(", "),
            stepping.join(", "),
            stepping.join(", "),
            smeared.join(", "),
        ),
    )]
}

/// Beyond this many machines without `mac` or `interface`, one warning
/// names them all: hundreds of identical lines would bury everything else.
const NIC_WARNINGS_EACH: usize = 3;

/// A warning for each machine with neither `mac` nor `interface` (one for
/// all of them when there are many): its address goes to every wired NIC,
/// which is one NIC on most small machines but not on all.
pub fn nic_warnings(file: &Path, raw: &ClusterFile) -> Vec<Diagnostic> {
    let unbound: Vec<(usize, &crate::schema::Machine)> = raw
        .machines
        .value
        .iter()
        .enumerate()
        .filter(|(_, m)| m.mac.is_none() && m.interface.is_none())
        .collect();
    let why = "its address goes to the wired NIC whatever its name (en*), which is right on a machine with one; on a machine with two or more wired NICs, netplan gives the same address and default route to every one of them (and netplan 1.1+ makes the boot wait for all); give `mac:` (on the machine: `ip -br link`; or the label on the board) or `interface:`";
    if unbound.len() > NIC_WARNINGS_EACH {
        let (i, first) = unbound[0];
        let names: Vec<&str> = unbound
            .iter()
            .take(5)
            .map(|(_, m)| m.name.value.as_str())
            .collect();
        let more = match unbound.len() - names.len() {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        return vec![Diagnostic::warning(
            file,
            pos(&first.name),
            format!("machines[{i}]"),
            format!(
                "{} machines ({}{more}) have neither mac nor interface: on each, {why}",
                unbound.len(),
                names.join(", ")
            ),
        )];
    }
    unbound
        .into_iter()
        .map(|(i, m)| {
            Diagnostic::warning(
                file,
                pos(&m.name),
                format!("machines[{i}]"),
                format!("{:?} has neither mac nor interface: {why}", m.name.value),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../examples/eth2-staking/cluster.yaml");

    /// The example with `edits` applied (each a unique text to replace):
    /// every problem found, as (check, field), in the order found.
    fn problems(edits: &[(&str, &str)]) -> Vec<(Check, String)> {
        let mut text = EXAMPLE.to_string();
        for (from, to) in edits {
            assert_eq!(
                text.matches(from).count(),
                1,
                "edit {from:?} must be unique"
            );
            text = text.replace(from, to);
        }
        let file = Path::new("cluster.yaml");
        let raw = crate::schema::parse(file, &text).expect("parses");
        let profiles = Profiles::load(None).expect("embedded profiles");
        let mut c = Checker::new(file);
        let (cluster, found) = run_checks(&mut c, &raw, &profiles);
        assert_eq!(cluster.is_some(), found.is_empty());
        found
            .into_iter()
            .zip(c.errors.iter().map(|d| d.field.clone()))
            .collect()
    }

    fn one(check: Check, field: &str) -> Vec<(Check, String)> {
        vec![(check, field.to_string())]
    }

    #[test]
    fn the_example_passes_every_check() {
        assert_eq!(problems(&[]), vec![]);
    }

    #[test]
    fn an_unknown_release_lists_every_release_profile_and_a_broken_one_names_its_file() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("releases")).expect("mkdir");
        std::fs::write(d.path().join("releases/site.yaml"), "release: [broken\n").expect("write");
        let profiles = Profiles::load(Some(d.path())).expect("no release is parsed yet");
        let file = Path::new("cluster.yaml");
        let errors = |release: &str| {
            let text = EXAMPLE.replace("release: \"20.04\"", &format!("release: {release}"));
            let raw = crate::schema::parse(file, &text).expect("parses");
            let e = validate(file, &raw, &profiles).expect_err("invalid");
            assert_eq!(e.0.len(), 1, "{e}");
            (e.0[0].field.clone(), e.0[0].message.clone())
        };
        let (field, msg) = errors("\"19.10\"");
        assert_eq!(field, "release");
        assert_eq!(
            msg,
            "unknown Ubuntu release \"19.10\"; expected one of 20.04, 22.04, 24.04, site"
        );
        let (field, msg) = errors("site");
        assert_eq!(field, "release");
        assert!(msg.contains("releases/site.yaml"), "{msg}");
        // The broken file is no concern of a cluster on another release.
        let text = EXAMPLE.to_string();
        let raw = crate::schema::parse(file, &text).expect("parses");
        validate(file, &raw, &profiles).expect("20.04 is valid");
    }

    #[test]
    fn general_refuses_an_unknown_release_and_time_zone() {
        assert_eq!(
            problems(&[("release: \"20.04\"", "release: \"19.10\"")]),
            one(Check::General, "release")
        );
        assert_eq!(
            problems(&[("America/Los_Angeles", "America/Springfield")]),
            one(Check::General, "timezone")
        );
    }

    #[test]
    fn network_refuses_a_gateway_outside_the_subnet_and_no_dns() {
        assert_eq!(
            problems(&[("gateway: 172.20.0.1", "gateway: 10.0.0.1")]),
            one(Check::Network, "network.gateway")
        );
        assert_eq!(
            problems(&[("dns: [8.8.8.8, 8.8.4.4]", "dns: []")]),
            one(Check::Network, "network.dns")
        );
    }

    #[test]
    fn admin_refuses_no_way_in_and_an_ssh_port_a_role_opens() {
        let key = EXAMPLE
            .lines()
            .find(|l| l.trim_start().starts_with("- ssh-ed25519"))
            .expect("a key line");
        assert_eq!(
            problems(&[(key, ""), ("  ssh_keys:\n", "  ssh_keys: []\n")]),
            one(Check::Admin, "admin.ssh_keys")
        );
        assert_eq!(
            problems(&[("  port: 22\n", "  port: 16443\n")]),
            one(Check::Admin, "ssh.port")
        );
    }

    /// On the one-master 1.20 example an api_vip is refused twice by the
    /// MicroK8s check: nowhere to move it, and a track that reissues
    /// certificates on every address change.
    #[test]
    fn microk8s_refuses_an_api_vip_with_one_master_or_before_1_23() {
        let vip = "  addons: [dns, helm3]\n  api_vip: 172.20.10.50\n";
        assert_eq!(
            problems(&[("  addons: [dns, helm3]\n", vip)]),
            vec![
                (Check::Microk8s, "microk8s.api_vip".to_string()),
                (Check::Microk8s, "microk8s.api_vip".to_string())
            ]
        );
    }

    #[test]
    fn microk8s_refuses_a_bad_channel_and_one_too_old_for_the_release() {
        assert_eq!(
            problems(&[("channel: 1.20/stable", "channel: 1.20/nightly")]),
            one(Check::Microk8s, "microk8s.channel")
        );
        assert_eq!(
            problems(&[("release: \"20.04\"", "release: \"24.04\"")]),
            one(Check::Microk8s, "microk8s.channel")
        );
    }

    #[test]
    fn nfs_refuses_data_owned_by_root() {
        assert_eq!(
            problems(&[("uid: 1001", "uid: 0")]),
            one(Check::Nfs, "nfs.uid")
        );
    }

    /// The example's NFS server with root disk `root` and `data_disk: data`.
    fn with_data_disk(root: &str, data: &str) -> Vec<(Check, String)> {
        let root = if root.is_empty() {
            String::new()
        } else {
            format!("\n    disk: {root}")
        };
        problems(&[
            (
                "  gid: 2000\n",
                &format!("  gid: 2000\n  data_disk: {data}\n"),
            ),
            (
                "    ip: 172.20.10.10",
                &format!("    ip: 172.20.10.10{root}"),
            ),
        ])
    }

    #[test]
    fn nfs_takes_a_data_disk_by_serial_or_by_id_name_apart_from_the_root_disk() {
        let root = "{serial: QEMU_HARDDISK_QM00001}";
        assert_eq!(with_data_disk(root, "{serial: WD-WCC7K0TESTSER}"), vec![]);
        assert_eq!(
            with_data_disk(
                root,
                "{path: /dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0TESTSER}"
            ),
            vec![]
        );
        assert_eq!(
            with_data_disk("{path: /dev/sda}", "{serial: WD-WCC7K0TESTSER}"),
            vec![]
        );
    }

    #[test]
    fn nfs_refuses_a_data_disk_the_root_disk_selector_may_pick() {
        let data = "{serial: WD-WCC7K0TESTSER}";
        for root in [
            // No disk, or the largest: the data disk may be the largest.
            "",
            "largest",
            // The same disk, or one serial inside the other.
            "{serial: WD-WCC7K0TESTSER}",
            "{serial: WCC7K0}",
            "{serial: WDC_WD40EFRX_WD-WCC7K0TESTSER}",
            "{serial: \"WD-WCC7K0*\"}",
        ] {
            assert_eq!(
                with_data_disk(root, data),
                one(Check::Nfs, "nfs.data_disk"),
                "{root}"
            );
        }
        assert_eq!(
            with_data_disk("{serial: \"QEMU_*\"}", "{serial: \"QEMU_*\"}"),
            one(Check::Nfs, "nfs.data_disk")
        );
        assert_eq!(
            with_data_disk("{serial: \"QEMU_*\"}", "{serial: WD-WCC7K0TESTSER}"),
            vec![]
        );
    }

    #[test]
    fn nfs_refuses_a_data_disk_by_a_name_that_may_change_or_never_match() {
        let root = "{serial: QEMU_HARDDISK_QM00001}";
        for (data, field) in [
            ("{path: /dev/sdb}", "nfs.data_disk.path"),
            ("{path: /dev/disk/by-uuid/1234-ABCD}", "nfs.data_disk.path"),
            (
                "{path: /dev/disk/by-id/wwn-0x5000c500a1b2c3d4}",
                "nfs.data_disk.path",
            ),
            (
                "{path: /dev/disk/by-id/ata-WDC_X_Y-part1}",
                "nfs.data_disk.path",
            ),
            ("{serial: \"*\"}", "nfs.data_disk.serial"),
            ("{serial: \"a b\"}", "nfs.data_disk.serial"),
        ] {
            assert_eq!(with_data_disk(root, data), one(Check::Nfs, field), "{data}");
        }
    }

    #[test]
    fn nfs_refuses_a_data_disk_beside_a_data_volume() {
        assert_eq!(
            problems(&[(
                "  gid: 2000\n",
                "  gid: 2000\n  data_volume: true\n  data_disk: {serial: WD-WCC7K0TESTSER}\n"
            )]),
            one(Check::Nfs, "nfs.data_disk")
        );
    }

    #[test]
    fn fnmatch_agrees_with_python_fnmatchcase_on_serial_globs() {
        for (pat, text, want) in [
            ("*WCC7K0*", "WDC_WD40EFRX_WD-WCC7K0TESTSER", true),
            ("WDC_*", "WDC_WD40EFRX", true),
            ("WDC_*", "xWDC_", false),
            ("S4EW?X0R[12]*", "S4EWNX0R2abc", true),
            ("S4EW?X0R[12]*", "S4EWNX0R3abc", false),
            ("[a-c]x", "bx", true),
            ("[a-c]x", "dx", false),
            ("ab[", "ab[", true),
            ("*", "", true),
            ("?", "", false),
        ] {
            assert_eq!(fnmatch(pat, text), want, "{pat} {text}");
        }
    }

    #[test]
    fn nfs_refuses_a_system_directory_and_the_admins_home() {
        assert_eq!(
            problems(&[("export_root: /data", "export_root: /etc")]),
            one(Check::Nfs, "nfs.export_root")
        );
        assert_eq!(
            problems(&[("export_root: /data", "export_root: /home/ubuntu")]),
            one(Check::Nfs, "nfs.export_root")
        );
        assert_eq!(
            problems(&[("export_root: /data", "export_root: /srv/nfs")]),
            vec![]
        );
    }

    #[test]
    fn general_admin_microk8s_and_machines_refuse_what_the_system_owns() {
        assert_eq!(
            problems(&[("locale: en_US.UTF-8", "locale: en_US.UTF-16")]),
            one(Check::General, "locale")
        );
        assert_eq!(
            problems(&[("username: ubuntu", "username: nobody")]),
            one(Check::Admin, "admin.username")
        );
        assert_eq!(
            problems(&[("channel: 1.20/stable", "channel: 1.9/stable")]),
            one(Check::Microk8s, "microk8s.channel")
        );
        assert_eq!(
            problems(&[("- name: worker-1", "- name: localhost")]),
            one(Check::Machines, "machines[2].name")
        );
    }

    #[test]
    fn authorized_key_options_are_taken_off_and_checked() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL a@b";
        assert_eq!(authorized_key_options(key), Ok(key));
        let with = format!("from=\"10.0.0.1,10.0.0.2\",command=\"echo \\\"a b\\\"\",no-pty {key}");
        assert_eq!(authorized_key_options(&with), Ok(key));
        assert!(check_ssh_key(&with).is_ok());
        assert!(authorized_key_options(&format!("No-PTY {key}")).is_ok());
        for bad in ["nope", "from=x", "pty=\"1\"", "command", "cert-authority"] {
            assert!(
                authorized_key_options(&format!("{bad} {key}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn staking_refuses_an_unknown_network() {
        assert_eq!(
            problems(&[("  enabled: false\n", "  enabled: false\n  network: moon\n")]),
            one(Check::Staking, "staking.network")
        );
    }

    #[test]
    fn staking_on_needs_a_network_and_a_fee_recipient() {
        assert_eq!(
            problems(&[("  enabled: false\n", "  enabled: true\n")]),
            vec![
                (Check::Staking, "staking.network".to_string()),
                (Check::Staking, "staking.fee_recipient".to_string()),
            ]
        );
        assert_eq!(
            problems(&[(
                "  enabled: false\n",
                "  enabled: true\n  network: hoodi\n  fee_recipient: \"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"\n"
            )]),
            vec![]
        );
    }

    #[test]
    fn machines_refuse_a_shared_address_and_a_second_master() {
        assert_eq!(
            problems(&[("ip: 172.20.10.12", "ip: 172.20.10.11")]),
            one(Check::Machines, "machines[2].ip")
        );
        assert_eq!(
            problems(&[("role: worker", "role: master")]),
            one(Check::Machines, "machines")
        );
    }

    /// What snapd's `ParseSchedule` documents (timeutil/schedule.go):
    /// `wdaylist "," timelist`, `wday = "sun" / ... / "sat"`,
    /// `timespan = time "-" time`, and its `validTime` pattern
    /// `^([0-9]|0[0-9]|1[0-9]|2[0-3]):([0-5][0-9])$|^24:00$`.
    fn snapd_accepts(timer: &str) -> bool {
        let valid_time = |t: &str| {
            t == "24:00"
                || t.split_once(':').is_some_and(|(h, m)| {
                    (1..=2).contains(&h.len())
                        && h.bytes().all(|c| c.is_ascii_digit())
                        && h.parse::<u32>().is_ok_and(|h| h < 24)
                        && m.len() == 2
                        && m.bytes().all(|c| c.is_ascii_digit())
                        && m.parse::<u32>().is_ok_and(|m| m < 60)
                })
        };
        let parts: Vec<&str> = timer.split(',').collect();
        let (span, days) = parts.split_last().expect("non-empty");
        days.iter()
            .all(|d| ["sun", "mon", "tue", "wed", "thu", "fri", "sat"].contains(d))
            && span
                .split_once('-')
                .is_some_and(|(a, b)| valid_time(a) && valid_time(b))
    }

    fn minutes(span: &str) -> (u32, u32) {
        let m = |t: &str| {
            let (h, m) = t.split_once(':').expect("HH:MM");
            h.parse::<u32>().expect("h") * 60 + m.parse::<u32>().expect("m")
        };
        let (a, b) = span.split_once('-').expect("span");
        (m(a), m(b))
    }

    #[test]
    fn every_machine_gets_its_own_refresh_slot_in_snapds_timer_grammar() {
        for (window, n) in [
            ("sat,02:00-06:00", 3),
            ("sat,sun,03:00-05:00", 6),
            ("mon,tue,wed,00:00-24:00", 10),
            ("fri,22:00-24:00", 4),
            ("sun,00:00-00:30", 1),
        ] {
            let w = parse_refresh_window(window).expect(window);
            let slots = w.slots(n).expect(window);
            assert_eq!(slots.len(), n, "{window}");
            let mut seen: Vec<(&str, u32, u32)> = Vec::new();
            for t in &slots {
                assert!(snapd_accepts(t), "{window}: {t}");
                let (day, span) = t.split_once(',').expect("day,span");
                assert!(w.days.contains(&day), "{t}");
                let (a, b) = minutes(span);
                assert!(
                    w.start <= a && b <= w.end && b - a >= MIN_REFRESH_SLOT_MINUTES,
                    "{t}"
                );
                // No two machines' slots overlap: none refreshes with another.
                for (d, x, y) in &seen {
                    assert!(*d != day || b <= *x || *y <= a, "{window}: {t} overlaps");
                }
                seen.push((day, a, b));
            }
        }
        assert_eq!(
            parse_refresh_window("sat,02:00-06:00")
                .expect("ok")
                .slots(3),
            Some(vec![
                "sat,02:00-03:20".to_string(),
                "sat,03:20-04:40".to_string(),
                "sat,04:40-06:00".to_string()
            ])
        );
    }

    #[test]
    fn without_a_window_the_first_default_with_a_slot_for_every_machine_is_used() {
        let pick = |n: usize| {
            crate::schema::DEFAULT_REFRESH_WINDOWS
                .iter()
                .find(|d| {
                    parse_refresh_window(d)
                        .expect("default parses")
                        .slots(n)
                        .is_some()
                })
                .copied()
        };
        assert_eq!(pick(3), Some("sat,02:00-06:00"));
        assert_eq!(pick(24), Some("sat,02:00-06:00"));
        assert_eq!(pick(25), Some("mon,tue,wed,thu,fri,sat,sun,02:00-06:00"));
        assert_eq!(pick(169), Some("mon,tue,wed,thu,fri,sat,sun,00:00-24:00"));
        assert_eq!(pick(1008), Some("mon,tue,wed,thu,fri,sat,sun,00:00-24:00"));
        assert_eq!(pick(1009), None);
        for n in [25, 169, 1008] {
            let w = parse_refresh_window(pick(n).expect("a default")).expect("parses");
            let slots = w.slots(n).expect("slots");
            assert!(slots.iter().all(|t| snapd_accepts(t)), "{n}");
            let mut unique = slots.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), n, "{n}: a slot shared");
        }
    }

    #[test]
    fn a_refresh_window_outside_the_grammar_or_too_short_is_refused_at_its_place() {
        for bad in [
            "02:00-06:00",
            "saturday,02:00-06:00",
            "sat,sat,02:00-06:00",
            "sat,2:00-06:00",
            "sat,06:00-02:00",
            "sat,02:00~06:00",
            "sat,02:00-06:00/2",
            "sat,,sun,02:00-06:00",
            "sat,02:00-24:01",
            "sat,25:00-26:00",
            "",
        ] {
            assert!(parse_refresh_window(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            problems(&[(
                "staking:\n  enabled: false\n",
                "staking:\n  enabled: false\nmaintenance:\n  refresh_window: \"sat,1am\"\n"
            )]),
            one(Check::Maintenance, "maintenance.refresh_window")
        );
        // Three machines need 30 minutes.
        assert_eq!(
            problems(&[(
                "staking:\n  enabled: false\n",
                "staking:\n  enabled: false\nmaintenance:\n  refresh_window: \"sat,02:00-02:20\"\n"
            )]),
            one(Check::Maintenance, "maintenance.refresh_window")
        );
    }

    #[test]
    fn every_check_reports_in_one_run() {
        let found: Vec<Check> = problems(&[
            ("release: \"20.04\"", "release: \"19.10\""),
            ("gateway: 172.20.0.1", "gateway: 10.0.0.1"),
            ("uid: 1001", "uid: 0"),
            ("ip: 172.20.10.12", "ip: 172.20.10.11"),
        ])
        .into_iter()
        .map(|(c, _)| c)
        .collect();
        assert_eq!(
            found,
            vec![Check::General, Check::Network, Check::Nfs, Check::Machines]
        );
    }
}
