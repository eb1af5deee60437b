//! The cluster stick: what the CIDATA partition of `OUT/installer.img`
//! holds so that one stick installs every machine of the cluster (layout in
//! `docs/stick.md`).
//!
//! The partition's `user-data` is a *selector*: an autoinstall with only
//! `early-commands`, which run `microseed/select.sh`. That script picks the
//! machine (kernel command line, else a permanent MAC), checks its disk, and
//! writes the machine's own autoinstall document over `/autoinstall.yaml`,
//! which subiquity reads again after the early commands. Every value the
//! script needs arrives in a `select.env` of `KEY='value'` lines quoted with
//! [`shell_quote`], never as shell text.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::documents::{Documents, autoinstall_document, serial_glob, yaml};
use crate::model::{Cluster, DataDisk, Disk, Machine};
use crate::profile::BootFiles;
use crate::templates::shell_quote;

/// The stick's directory of microseed's own files, beside `user-data`.
pub const DIR: &str = "microseed";

/// Where the selector's early command mounts the CIDATA partition.
pub const MOUNT: &str = "/run/microseed/stick";

/// The scripts the stick carries in [`DIR`], by file name: select.sh, and
/// the discovery script it runs when no machine matches.
pub const STICK_SCRIPTS: &[(&str, &str)] = &[
    ("select.sh", include_str!("install/select.sh")),
    // Also `crate::discover::DISCOVER_SH` (the discover module reads the
    // reports it writes, and checks that both name the same script).
    ("discover.sh", include_str!("install/discover.sh")),
];

/// The kernel command line words the stick's menu entries set.
pub const MACHINE_WORD: &str = "microseed.machine";
pub const REINSTALL_WORD: &str = "microseed.reinstall";

/// The early command: mounts the stick's CIDATA partition read-write (the
/// discovery reports land on it) and hands over to select.sh, whose exit
/// status is the command's. A failed early command stops subiquity before
/// it writes to any disk (docs/stick.md, "The hook").
const MOUNT_AND_SELECT: &str = r#"set -eu
d=$1
mkdir -p "$d"
if ! mountpoint -q "$d"; then
    dev=$(blkid -L CIDATA || blkid -L cidata || true)
    if [ -z "$dev" ]; then
        echo "microseed: no CIDATA partition found: is the stick plugged in?" >&2
        exit 1
    fi
    mount -o rw "$dev" "$d"
fi
exec sh "$d/microseed/select.sh"
"#;

/// A non-secret id of the cluster: see [`crate::documents::cluster_id`].
pub use crate::documents::cluster_id;

#[derive(Debug, Serialize)]
struct SelectorUserData {
    autoinstall: SelectorAutoinstall,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct SelectorAutoinstall {
    version: u8,
    /// argv lists: the mount point reaches the script as an argument.
    early_commands: Vec<Vec<String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct MetaData {
    instance_id: String,
}

/// The selector `user-data` (see the module doc).
pub fn selector_user_data() -> anyhow::Result<String> {
    let doc = SelectorUserData {
        autoinstall: SelectorAutoinstall {
            version: 1,
            early_commands: vec![vec![
                "sh".into(),
                "-c".into(),
                MOUNT_AND_SELECT.into(),
                "microseed-stick".into(),
                MOUNT.into(),
            ]],
        },
    };
    Ok(format!("#cloud-config\n{}", yaml(&doc)?))
}

/// One machine's `select.env`: `KEY='value'` lines, every value quoted.
/// `data_disk` is the NFS data disk when `m` is the NFS server.
pub fn select_env(m: &Machine, data_disk: Option<&DataDisk>) -> String {
    let (serial, path, size) = match &m.disk {
        Disk::Largest => (String::new(), String::new(), "largest".to_string()),
        Disk::Serial(s) => (serial_glob(s), String::new(), String::new()),
        Disk::Path(p) => (String::new(), p.clone(), String::new()),
    };
    let ip = m.ip.to_string();
    let rows: [(&str, &str); 8] = [
        ("NAME", &m.name),
        ("MAC", m.mac.as_deref().unwrap_or("")),
        ("IP", &ip),
        ("HOSTNAME", &m.name),
        ("DISK_SERIAL", &serial),
        ("DISK_PATH", &path),
        ("DISK_SIZE", &size),
        (
            "DATA_DISK_SERIAL",
            data_disk.map_or("", |d| d.pattern.as_str()),
        ),
    ];
    let mut out = String::from("# microseed: the facts select.sh needs about this machine\n");
    for (k, v) in rows {
        out.push_str(k);
        out.push('=');
        out.push_str(&shell_quote(v));
        out.push('\n');
    }
    out
}

/// A GRUB string in single quotes (GRUB's quoting matches the shell's).
fn grub_quote(s: &str) -> String {
    shell_quote(s)
}

/// The stick's `microseed/grub.cfg`: two entries per machine, sourced by the
/// ISO's patched grub.cfg after its own entries (so its first entry, the
/// automatic one, stays the default).
pub fn grub_menu(machines: &[&Machine], boot: &BootFiles) -> String {
    let mut out = String::from(
        "# microseed: one stick, every machine. The first entry of the menu (the\n\
         # ISO's own) picks the machine by MAC; these name it.\n",
    );
    for m in machines {
        for (verb, word) in [("Install", MACHINE_WORD), ("Reinstall", REINSTALL_WORD)] {
            let title = format!("{verb} {} ({}): ERASES its disk", m.name, m.ip);
            out.push_str(&format!(
                "menuentry {} {{\n\tset gfxpayload=keep\n\tlinux\t/{} {} autoinstall ---\n\tinitrd\t/{}\n}}\n",
                grub_quote(&title),
                boot.kernel.trim_start_matches('/'),
                grub_quote(&format!("{word}={}", m.name)),
                boot.initrd.trim_start_matches('/'),
            ));
        }
    }
    out
}

/// The stick's `microseed/isolinux.cfg`: the entries of [`grub_menu`] in
/// syslinux syntax, for isolinux (the BIOS menu of 20.04 ISOs). isolinux
/// reads only the ISO 9660 filesystem, so the patcher appends this file to
/// the ISO's `isolinux/txt.cfg` (after its own entries: its `default` stays
/// the automatic one) and writes the result to a new extent
/// (`crate::iso::patch`); on the CIDATA partition it only shows what was
/// added.
///
/// syslinux has no quoting: a `label` is one word, `menu label` and `append`
/// run to the end of the line, and `^` in a menu label marks a hotkey. So
/// every value that reaches a line is checked to be one plain word first:
/// machine names are host labels (`a-z0-9-`, validated with the cluster
/// file), addresses IPv4, and the release's kernel and initrd paths (a
/// profile may set them) are refused unless plain.
pub fn syslinux_menu(machines: &[&Machine], boot: &BootFiles) -> anyhow::Result<String> {
    let plain = |what: &str, s: &str, extra: &[u8]| -> anyhow::Result<()> {
        anyhow::ensure!(
            !s.is_empty()
                && s.bytes().all(|c| c.is_ascii_alphanumeric()
                    || b"._-".contains(&c)
                    || extra.contains(&c)),
            "{what} {s:?} cannot go on an isolinux menu line: expected only letters, digits              and . _ -{}",
            if extra.is_empty() { "" } else { " /" }
        );
        Ok(())
    };
    let kernel = boot.kernel.trim_start_matches('/');
    let initrd = boot.initrd.trim_start_matches('/');
    plain("the release's boot.kernel", kernel, b"/")?;
    plain("the release's boot.initrd", initrd, b"/")?;
    let mut out = String::from(
        "# microseed: one stick, every machine. The ISO's own default entry picks\n\
         # the machine by MAC; these name it.\n",
    );
    for m in machines {
        plain("machine name", &m.name, b"")?;
        for (verb, word) in [("Install", MACHINE_WORD), ("Reinstall", REINSTALL_WORD)] {
            out.push_str(&format!(
                "label microseed-{}-{}\n  menu label {verb} {} ({}): ERASES its disk\n  \
                 kernel /{kernel}\n  append initrd=/{initrd} {word}={} autoinstall ---\n",
                verb.to_ascii_lowercase(),
                m.name,
                m.name,
                m.ip,
                m.name,
            ));
        }
    }
    Ok(out)
}

/// Every file of the stick's CIDATA partition, in the order they are
/// written: the selector, then [`DIR`] (a directory alone ends in `/`).
pub fn files(
    cluster: &Cluster,
    machines: &[(&Machine, &Documents)],
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::with_capacity(3 * machines.len() + 8);
    let id = cluster_id(cluster);
    for (m, docs) in machines {
        let ai = autoinstall_document(&docs.user_data)
            .map_err(|e| anyhow::anyhow!("machine {}: {e}", m.name))?;
        let dir = format!("{DIR}/machines/{}", m.name);
        out.push((format!("{dir}/autoinstall.yaml"), ai.into_bytes()));
        let data_disk = cluster.nfs.data_disk.as_ref().filter(|_| m.role == "nfs");
        out.push((
            format!("{dir}/select.env"),
            select_env(m, data_disk).into_bytes(),
        ));
    }
    let list: Vec<&Machine> = machines.iter().map(|(m, _)| *m).collect();
    out.push((
        format!("{DIR}/grub.cfg"),
        grub_menu(&list, &cluster.release.boot).into_bytes(),
    ));
    // Only a release booting BIOS through isolinux (20.04) needs them.
    if cluster.release.boot.configs.iter().any(|c| {
        crate::iso::bootcfg::Flavour::from_path(c) == crate::iso::bootcfg::Flavour::Syslinux
    }) {
        out.push((
            crate::iso::bootcfg::SYSLINUX_STICK_MENU.to_string(),
            syslinux_menu(&list, &cluster.release.boot)?.into_bytes(),
        ));
    }
    out.push((format!("{DIR}/cluster-id"), format!("{id}\n").into_bytes()));
    for (name, text) in STICK_SCRIPTS {
        out.push((format!("{DIR}/{name}"), text.as_bytes().to_vec()));
    }
    out.push((format!("{DIR}/reports/"), Vec::new()));
    // A new instance-id whenever anything on the stick changes.
    let mut h = Sha256::new();
    for (name, bytes) in &out {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(bytes));
    }
    let digest = hex::encode(h.finalize());
    let meta = yaml(&MetaData {
        instance_id: format!("microseed-stick-{}", &digest[..16]),
    })?;
    out.insert(0, ("meta-data".into(), meta.into_bytes()));
    out.insert(1, ("user-data".into(), selector_user_data()?.into_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_env_quotes_every_value() {
        let m = Machine {
            disk: Disk::Serial("S1'; rm -rf /".into()),
            ..machine("w1")
        };
        let env = select_env(&m, None);
        assert!(env.contains("DISK_SERIAL='*S1'\\''; rm -rf /*'\n"), "{env}");
        assert!(env.contains("DATA_DISK_SERIAL=''\n"), "{env}");
        let data = DataDisk {
            serial: "D1".into(),
            pattern: "*D1*".into(),
        };
        let env = select_env(&m, Some(&data));
        assert!(env.contains("DATA_DISK_SERIAL='*D1*'\n"), "{env}");
        assert!(env.contains("MAC=''\n"), "{env}");
        assert!(env.contains("DISK_SIZE=''\n"), "{env}");
    }

    fn machine(name: &str) -> Machine {
        Machine {
            name: name.into(),
            role: "worker".into(),
            ip: "10.0.0.5".parse().unwrap(),
            index: 0,
            master_index: None,
            mac: None,
            interface: None,
            disk: Disk::Largest,
            refresh_timer: String::new(),
        }
    }

    fn boot(kernel: &str) -> BootFiles {
        BootFiles {
            kernel: kernel.into(),
            initrd: "casper/initrd".into(),
            configs: Vec::new(),
        }
    }

    #[test]
    fn isolinux_entries_name_the_machine_its_address_and_the_erase() {
        let menu = syslinux_menu(&[&machine("w-1")], &boot("/casper/vmlinuz")).unwrap();
        assert!(
            menu.ends_with(
                "label microseed-install-w-1\n  menu label Install w-1 (10.0.0.5): ERASES its disk\n  \
                 kernel /casper/vmlinuz\n  append initrd=/casper/initrd microseed.machine=w-1 autoinstall ---\n\
                 label microseed-reinstall-w-1\n  menu label Reinstall w-1 (10.0.0.5): ERASES its disk\n  \
                 kernel /casper/vmlinuz\n  append initrd=/casper/initrd microseed.reinstall=w-1 autoinstall ---\n"
            ),
            "{menu}"
        );
    }

    #[test]
    fn nothing_that_breaks_a_syslinux_line_reaches_the_isolinux_menu() {
        // syslinux has no quoting: a blank splits a label, a newline starts a
        // new directive, `^` makes a hotkey.
        for bad in [
            "casper/vm linuz",
            "casper/vmlinuz\nlabel x",
            "casper/^vmlinuz",
            "",
        ] {
            let err = syslinux_menu(&[&machine("w1")], &boot(bad)).unwrap_err();
            assert!(err.to_string().contains("boot.kernel"), "{err}");
        }
        for bad in ["w 1", "w1\nmenu default", "w^1"] {
            let err = syslinux_menu(&[&machine(bad)], &boot("casper/vmlinuz")).unwrap_err();
            assert!(err.to_string().contains("machine name"), "{err}");
        }
    }

    #[test]
    fn the_selector_runs_select_sh_from_the_mounted_stick() {
        let ud = selector_user_data().unwrap();
        assert!(ud.starts_with("#cloud-config\nautoinstall:\n"), "{ud}");
        assert!(ud.contains("early-commands:"), "{ud}");
        assert!(ud.contains(MOUNT), "{ud}");
        assert!(!ud.contains("storage"), "{ud}");
    }
}
