//! The install phase's own steps (autoinstall `late-commands`): what the
//! seed writes into the installed system because not every installer revision
//! carries it, run here under `sh` against a scratch target and read back by
//! the consumers (netplan, PyYAML, shellcheck, cloud-init's config merge);
//! the storage step against real LVM and ext4 in a VM whose kernel has
//! device-mapper (scripts/lvm-vm.sh). The installer's own run of them is
//! scripts/subiquity-tier.sh (subiquity --dry-run).

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{Scratch, pyyaml, root, run, text};

const VARIANTS: &str = include_str!("fixtures/subiquity/variants.yaml");

fn built(cluster: &str) -> Scratch {
    let s = Scratch::new(cluster);
    let o = s.build(&["--format", "dir"]);
    assert!(o.status.success(), "build failed: {}", text(&o).1);
    s
}

/// The late-commands of one machine, as PyYAML (what cloud-init and
/// subiquity parse with) reads them.
fn late_commands(s: &Scratch, machine: &str) -> Vec<Vec<String>> {
    let ud = pyyaml(&s.out().join(machine).join("user-data"));
    serde_json::from_value(ud["autoinstall"]["late-commands"].clone())
        .expect("late-commands are argv lists")
}

fn named<'a>(cmds: &'a [Vec<String>], name: &str) -> &'a Vec<String> {
    cmds.iter()
        .find(|c| c.get(3).map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no late-command {name}: {cmds:?}"))
}

/// Runs one argv late-command the way subiquity does (no shell around it).
fn run_in_target(cmd: &[String], target: &Path) -> std::process::Output {
    Command::new(&cmd[0])
        .args(&cmd[1..])
        .env("TARGET_MOUNT_POINT", target)
        .output()
        .expect("spawn")
}

#[test]
fn late_commands_are_argv_lists_whose_scripts_take_values_only_as_arguments() {
    let s = built(common::EXAMPLE);
    for m in ["nfs", "master", "worker-1"] {
        let cmds = late_commands(&s, m);
        assert_eq!(cmds.len(), 2, "{m}: {cmds:?}");
        for c in &cmds {
            assert_eq!(&c[..2], ["sh", "-c"], "{m}: {c:?}");
            // The script is one of microseed's two fixed scripts, the same on
            // every machine: nothing of the cluster file is spliced into it.
            assert!(
                c[2] == include_str!("../src/install/target-files.sh")
                    || c[2] == include_str!("../src/install/storage.sh"),
                "{m}: script text differs from src/install/*.sh"
            );
        }
        let files = named(&cmds, "microseed-target-files");
        assert_eq!(files[4], m);
    }
}

#[test]
fn late_command_scripts_pass_shellcheck() {
    for f in ["src/install/target-files.sh", "src/install/storage.sh"] {
        let p = root().join(f);
        let o = run("shellcheck", &["-s", "sh", p.to_str().expect("utf8")]);
        assert!(o.status.success(), "{f}: {}", text(&o).0);
    }
}

#[test]
fn target_files_command_writes_the_seeds_hostname_netplan_and_datasource_into_the_target() {
    let s = built(VARIANTS);
    for m in ["nfs", "master", "worker-1"] {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(t.path().join("etc")).expect("etc");
        let cmds = late_commands(&s, m);
        let o = run_in_target(named(&cmds, "microseed-target-files"), t.path());
        assert!(o.status.success(), "{m}: {:?}", text(&o));
        let etc = t.path().join("etc");
        assert_eq!(
            std::fs::read_to_string(etc.join("hostname")).expect("hostname"),
            format!("{m}\n")
        );
        let np = etc.join("netplan/00-installer-config.yaml");
        let mode = std::fs::metadata(&np)
            .expect("netplan")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{m}: netplan mode {mode:o}");
        // The installed netplan is exactly the seed's installer network
        // (22.04's single form here; 20.04's doubled form nests it once more).
        let ud = pyyaml(&s.out().join(m).join("user-data"));
        let net = &ud["autoinstall"]["network"];
        let net = net.get("network").unwrap_or(net);
        assert_eq!(pyyaml(&np)["network"], *net, "{m}");
        // ...and netplan itself accepts it.
        let o = run(
            "netplan",
            &["generate", "--root-dir", t.path().to_str().expect("utf8")],
        );
        assert!(o.status.success(), "{m}: netplan generate: {:?}", text(&o));
        let ds = pyyaml(&etc.join("cloud/cloud.cfg.d/90-microseed-datasource.cfg"));
        assert_eq!(
            ds,
            serde_json::json!({"datasource": {"NoCloud": {"fs_label": null}}}),
            "{m}"
        );
        // The cluster stick recognises an installed system by this id.
        let id = std::fs::read_to_string(etc.join("microseed/cluster-id")).expect("cluster-id");
        assert!(
            id.len() == 33 && id[..32].bytes().all(|b| b.is_ascii_hexdigit()) && id.ends_with('\n'),
            "{m}: {id:?}"
        );
        let net = pyyaml(&etc.join("cloud/cloud.cfg.d/99-microseed-network.cfg"));
        assert_eq!(
            net,
            serde_json::json!({"network": {"config": "disabled"}}),
            "{m}"
        );
    }
}

/// cloud-init's own reading of a target's `cloud.cfg.d` (every drop-in merged
/// as cloud-init merges them; trixie's cloud-init 25.1 from
/// scripts/cloud-init-chroot.sh): whether it would render a network, and the
/// datasource settings that result.
fn cloud_init_merged(cfg_d: &Path) -> serde_json::Value {
    let b = run(
        root()
            .join("scripts/cloud-init-chroot.sh")
            .to_str()
            .expect("utf8"),
        &["build"],
    );
    assert!(b.status.success(), "cloud-init chroot: {:?}", text(&b));
    let p = run(
        root()
            .join("scripts/cloud-init-chroot.sh")
            .to_str()
            .expect("utf8"),
        &["path"],
    );
    let chroot = text(&p).0.trim().to_string();
    let probe = "import json\n\
        from cloudinit import net, util\n\
        cfg = util.read_conf_d('/mnt')\n\
        print(json.dumps({'network_disabled': net.is_disabled_cfg(cfg.get('network')), \
        'network': cfg.get('network'), 'datasource': cfg.get('datasource'), \
        'datasource_list': cfg.get('datasource_list')}))\n";
    // A private mount namespace: the bind exists only for this command.
    let o = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind \"$1\" \"$2/mnt\" && exec chroot \"$2\" python3 -c \"$3\"",
            "sh",
        ])
        .arg(cfg_d)
        .arg(&chroot)
        .arg(probe)
        .output()
        .expect("unshare");
    assert!(o.status.success(), "cloud-init probe: {:?}", text(&o));
    serde_json::from_str(text(&o).0.trim()).expect("probe json")
}

/// Whatever an installer revision left on the target, the late-command leaves
/// one netplan (the seed's) and cloud-init's network rendering off: 24.04's
/// subiquity hands the network to cloud-init (`90-installer-network.cfg`)
/// when the live cloud-init has NETPLAN_CONFIG_ROOT_READ_ONLY, and 22.07.2
/// writes a separate Wi-Fi netplan; either would merge with the seed's.
#[test]
fn target_files_command_leaves_one_netplan_and_cloud_init_networking_off_on_every_revision() {
    let s = built(VARIANTS);
    let cmds = late_commands(&s, "nfs");
    let t = tempfile::tempdir().expect("tmp");
    let etc = t.path().join("etc");
    let np = etc.join("netplan");
    let cc = etc.join("cloud/cloud.cfg.d");
    std::fs::create_dir_all(&np).expect("netplan dir");
    std::fs::create_dir_all(&cc).expect("cloud.cfg.d");
    let dhcp = "network:\n  version: 2\n  ethernets:\n    ens3:\n      dhcp4: true\n";
    // 20.04.3 / 22.07.2: their own netplan, and cloud-init networking off.
    std::fs::write(np.join("00-installer-config.yaml"), dhcp).expect("w");
    std::fs::write(
        np.join("00-installer-config-wifi.yaml"),
        "network:\n  version: 2\n  wifis:\n    wlp2s0:\n      dhcp4: true\n      access-points:\n        home: {password: secret123}\n",
    )
    .expect("w");
    // cloud-init's rendering (a re-used target) and 24.04's hand-over.
    std::fs::write(np.join("50-cloud-init.yaml"), dhcp).expect("w");
    std::fs::write(cc.join("90-installer-network.cfg"), dhcp).expect("w");
    std::fs::write(
        cc.join("subiquity-disable-cloudinit-networking.cfg"),
        "network: {config: disabled}\n",
    )
    .expect("w");
    std::fs::write(
        cc.join("99-installer.cfg"),
        "datasource_list: [None]\ndatasource:\n  None:\n    userdata_raw: \"#cloud-config\\n\"\n",
    )
    .expect("w");
    let o = run_in_target(named(&cmds, "microseed-target-files"), t.path());
    assert!(o.status.success(), "{:?}", text(&o));
    for f in [
        "00-installer-config-wifi.yaml",
        "50-cloud-init.yaml",
        "90-installer-network.cfg",
    ] {
        assert!(
            text(&o).0.contains(&format!("{f} (")),
            "removal of {f} not reported: {:?}",
            text(&o)
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(&np)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["00-installer-config.yaml"]);
    let ud = pyyaml(&s.out().join("nfs").join("user-data"));
    assert_eq!(
        pyyaml(&np.join("00-installer-config.yaml"))["network"],
        ud["autoinstall"]["network"],
        "the seed's network replaced the installer's"
    );
    let g = run(
        "netplan",
        &["generate", "--root-dir", t.path().to_str().expect("utf8")],
    );
    assert!(g.status.success(), "netplan generate: {:?}", text(&g));
    assert!(!cc.join("90-installer-network.cfg").exists());
    let merged = cloud_init_merged(&cc);
    assert_eq!(merged["network_disabled"], true, "{merged}");
    assert_eq!(
        merged["datasource"]["NoCloud"],
        serde_json::json!({"fs_label": null}),
        "{merged}"
    );
    assert_eq!(
        merged["datasource_list"],
        serde_json::json!(["None"]),
        "{merged}"
    );
}

#[test]
fn target_files_command_refuses_a_target_without_an_installed_system() {
    let s = built(common::EXAMPLE);
    let t = tempfile::tempdir().expect("tmp");
    let o = run_in_target(
        named(&late_commands(&s, "nfs"), "microseed-target-files"),
        t.path(),
    );
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("no installed system at"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn storage_command_grows_root_on_every_role_and_gives_nfs_a_data_volume_when_asked() {
    let modes = |cluster: &str| -> Vec<(String, String)> {
        let s = built(cluster);
        ["nfs", "master", "worker-1"]
            .iter()
            .map(|m| {
                let c = named(&late_commands(&s, m), "microseed-storage").clone();
                (c[4].clone(), c[5].clone())
            })
            .collect()
    };
    let root_mode = ("root".to_string(), "/data".to_string());
    assert_eq!(modes(common::EXAMPLE), vec![root_mode.clone(); 3]);
    assert_eq!(
        modes(VARIANTS),
        vec![
            ("data".into(), "/data".into()),
            root_mode.clone(),
            root_mode
        ]
    );
}

#[test]
fn storage_command_leaves_an_unmounted_dry_run_target_alone() {
    let s = built(common::EXAMPLE);
    let t = tempfile::tempdir().expect("tmp");
    let o = run_in_target(
        named(&late_commands(&s, "master"), "microseed-storage"),
        t.path(),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("not a mounted target"),
        "{:?}",
        text(&o)
    );
}

/// A mounted target that is not subiquity's root volume is an error, never
/// a silent no-op: the disk would stay mostly unused.
#[test]
fn storage_command_fails_on_a_target_that_is_not_the_root_volume() {
    let s = built(common::EXAMPLE);
    let t = tempfile::tempdir().expect("tmp");
    let cmds = late_commands(&s, "worker-1");
    let cmd = named(&cmds, "microseed-storage");
    // A private mount namespace: the tmpfs exists only for this command.
    let mut args = vec![
        "-m".to_string(),
        "sh".into(),
        "-c".into(),
        "mount -t tmpfs microseed-test \"$TARGET_MOUNT_POINT\" && exec \"$@\"".into(),
        "sh".into(),
    ];
    args.extend(cmd.iter().cloned());
    let o = Command::new("unshare")
        .args(&args)
        .env("TARGET_MOUNT_POINT", t.path())
        .output()
        .expect("unshare");
    assert!(!o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("not on ubuntu-vg/ubuntu-lv"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn disk_serial_is_emitted_as_a_glob_over_udevs_id_serial() {
    let s = built(VARIANTS);
    let layout = |m: &str| {
        pyyaml(&s.out().join(m).join("user-data"))["autoinstall"]["storage"]["layout"].clone()
    };
    assert_eq!(
        layout("nfs")["match"],
        serde_json::json!({"serial": "*WD-WCC7K0TESTSER*"})
    );
    assert_eq!(
        layout("master")["match"],
        serde_json::json!({"serial": "WDC_WD40EFRX_*"})
    );
    assert_eq!(
        layout("worker-1")["match"],
        serde_json::json!({"path": "/dev/sdb"})
    );
    assert_eq!(layout("nfs")["name"], "lvm");
}

/// One case of the storage late-command against real LVM
/// (scripts/vm/lvm-guest.sh reads these files).
struct LvmCase {
    name: &'static str,
    /// The volume group's size (the PV's), GiB.
    pv_gib: u32,
    /// The root LV the installer made, GiB.
    lv_gib: u32,
    lv_name: &'static str,
    /// Mount the target as /dev/dm-N rather than by its LVM name.
    via_dm: bool,
    /// The late-command as the seed carries it.
    cmd: Vec<String>,
}

type Report = std::collections::BTreeMap<String, Vec<String>>;

/// Runs the cases in one VM boot (scripts/lvm-vm.sh: the test machines'
/// kernel has no device-mapper, the VM's Debian kernel has) and returns the
/// report, `CASE.KEY` -> values.
fn run_lvm_cases(cases: &[LvmCase]) -> Report {
    let uid = run("id", &["-u"]);
    assert_eq!(
        text(&uid).0.trim(),
        "0",
        "the real-LVM storage test needs root (loop-free VM, namespaces): run the tests as root (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().expect("tmp");
    let cdir = dir.path().join("cases");
    for (i, c) in cases.iter().enumerate() {
        let d = cdir.join(format!("{:02}-{}", i, c.name));
        std::fs::create_dir_all(&d).expect("case dir");
        assert_eq!(&c.cmd[..2], ["sh", "-c"], "{}: {:?}", c.name, c.cmd);
        std::fs::write(d.join("pv"), c.pv_gib.to_string()).expect("pv");
        std::fs::write(d.join("lv"), c.lv_gib.to_string()).expect("lv");
        std::fs::write(d.join("name"), c.lv_name).expect("name");
        std::fs::write(d.join("script"), &c.cmd[2]).expect("script");
        let mut args = c.cmd[3..].join("\n");
        args.push('\n');
        assert!(
            c.cmd[3..].iter().all(|a| !a.contains('\n')),
            "one argument per line"
        );
        std::fs::write(d.join("args"), args).expect("args");
        if c.via_dm {
            std::fs::write(d.join("via_dm"), "").expect("via_dm");
        }
    }
    let out = dir.path().join("out");
    let mut c = Command::new(root().join("scripts/lvm-vm.sh"));
    common::dies_with_the_test(&mut c);
    let o = c.arg(&cdir).arg(&out).output().expect("spawn lvm-vm.sh");
    assert!(
        o.status.success(),
        "the LVM VM did not complete (device-mapper needs the VM's kernel; see its console): {:?}",
        text(&o)
    );
    let report = std::fs::read_to_string(out.join("report.txt")).expect("report");
    let mut r = Report::new();
    for l in report.lines() {
        let l = l.trim_end_matches('\r');
        if let Some((k, v)) = l.split_once('=') {
            r.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    let dm = r.get("DM").map(|v| v.join(" ")).unwrap_or_default();
    assert!(
        dm.contains("Driver version"),
        "no device-mapper driver in the VM: {dm:?}"
    );
    r
}

fn one(r: &Report, case: &str, key: &str) -> String {
    let k = format!("{case}.{key}");
    match r.get(&k).map(Vec::as_slice) {
        Some([v]) => v.clone(),
        other => panic!("{k}: expected one value, got {other:?}\n{r:#?}"),
    }
}

fn num(r: &Report, case: &str, key: &str) -> u64 {
    one(r, case, key)
        .parse()
        .unwrap_or_else(|e| panic!("{case}.{key}: {e}"))
}

fn output(r: &Report, case: &str) -> String {
    r.get(&format!("{case}.out"))
        .map(|v| v.join("\n"))
        .unwrap_or_default()
}

const GIB: u64 = 1 << 30;

/// The storage late-command on real LVM, laid out as subiquity 20.04.3 does
/// (`ubuntu-vg`, a 4 GiB `ubuntu-lv` mounted as the target): root mode grows
/// root over the whole volume group and ext4 follows online; data mode grows
/// a small root to its size, or leaves a larger one, and adds an ext4 `data`
/// volume with an fstab line that mounts; a volume group too small is refused
/// before anything changes, naming the size needed; a target on another
/// volume is refused.
#[test]
fn storage_command_sizes_real_lvm_volumes_as_the_seed_says() {
    let example = built(common::EXAMPLE);
    let variants = built(VARIANTS);
    let root_cmd = named(&late_commands(&example, "master"), "microseed-storage").clone();
    let data_cmd = named(&late_commands(&variants, "nfs"), "microseed-storage").clone();
    assert_eq!(&root_cmd[4..], ["root", "/data", "30"]);
    assert_eq!(&data_cmd[4..], ["data", "/data", "30"]);
    let case = |name, pv_gib, lv_gib, lv_name, via_dm, cmd: &Vec<String>| LvmCase {
        name,
        pv_gib,
        lv_gib,
        lv_name,
        via_dm,
        cmd: cmd.clone(),
    };
    let r = run_lvm_cases(&[
        case("root", 12, 4, "ubuntu-lv", false, &root_cmd),
        case("data", 44, 4, "ubuntu-lv", false, &data_cmd),
        case("data-root-larger", 44, 35, "ubuntu-lv", true, &data_cmd),
        case("data-vg-small", 20, 4, "ubuntu-lv", false, &data_cmd),
        case("other-lv", 12, 4, "other", false, &root_cmd),
    ]);
    for c in [
        "00-root",
        "01-data",
        "02-data-root-larger",
        "03-data-vg-small",
        "04-other-lv",
    ] {
        assert_eq!(one(&r, c, "setup"), "0", "{c}: setup: {r:#?}");
        assert_eq!(one(&r, c, "fsck_rc"), "0", "{c}: e2fsck -fn after: {r:#?}");
    }

    // root: every extent to root, and the mounted filesystem grew with it.
    let c = "00-root";
    assert_eq!(one(&r, c, "rc"), "0", "{}", output(&r, c));
    let lv = num(&r, c, "lv.ubuntu-lv");
    assert_eq!(
        lv,
        num(&r, c, "vg_size"),
        "{c}: root LV is not the whole VG"
    );
    assert_eq!(num(&r, c, "vg_free"), 0);
    assert!(lv > 11 * GIB, "{c}: root LV {lv}");
    let fs = num(&r, c, "root_fs");
    assert!(
        fs > lv / 100 * 97,
        "{c}: ext4 {fs} bytes on a {lv}-byte LV: not resized"
    );

    // data, small root: root grown to 30 GiB, `data` takes the rest.
    let c = "01-data";
    assert_eq!(one(&r, c, "rc"), "0", "{}", output(&r, c));
    assert_eq!(num(&r, c, "lv.ubuntu-lv"), 30 * GIB);
    assert!(num(&r, c, "root_fs") > 29 * GIB, "{c}: root ext4 not grown");
    let data = num(&r, c, "lv.data");
    assert_eq!(
        data + 30 * GIB,
        num(&r, c, "vg_size"),
        "{c}: data is not the rest"
    );
    assert_eq!(num(&r, c, "vg_free"), 0);
    assert_eq!(one(&r, c, "data_blkid"), "LABEL=data TYPE=ext4 ");
    assert_eq!(
        one(&r, c, "fstab_last"),
        "/dev/mapper/ubuntu--vg-data /data ext4 defaults 0 2"
    );
    assert_eq!(one(&r, c, "data_dir_in_target"), "yes");
    assert_eq!(
        one(&r, c, "verify_rc"),
        "0",
        "findmnt --verify: {:?}",
        r.get(&format!("{c}.verify"))
    );
    let mounted = one(&r, c, "data_mount");
    assert!(
        mounted.starts_with("/dev/mapper/ubuntu--vg-data ext4 "),
        "{c}: the fstab line mounted {mounted:?}"
    );

    // data, root already larger (and mounted by its kernel name): left as is.
    let c = "02-data-root-larger";
    assert_eq!(one(&r, c, "rc"), "0", "{}", output(&r, c));
    assert_eq!(num(&r, c, "lv.ubuntu-lv"), 35 * GIB);
    assert_eq!(num(&r, c, "lv.data") + 35 * GIB, num(&r, c, "vg_size"));
    assert_eq!(one(&r, c, "data_blkid"), "LABEL=data TYPE=ext4 ");

    // data on a VG too small: refused with the size needed, nothing changed.
    let c = "03-data-vg-small";
    assert_ne!(one(&r, c, "rc"), "0", "{}", output(&r, c));
    let msg = output(&r, c);
    assert!(
        msg.contains("needs at least 31 GiB in ubuntu-vg")
            && msg.contains("nfs.data_volume: false"),
        "{c}: {msg}"
    );
    assert_eq!(num(&r, c, "lv.ubuntu-lv"), 4 * GIB, "{c}: root changed");
    assert!(
        !r.contains_key(&format!("{c}.lv.data")),
        "{c}: data LV made"
    );
    assert!(
        !one(&r, c, "fstab_last").contains("data"),
        "{c}: fstab changed"
    );

    // A target on another volume: refused, nothing changed.
    let c = "04-other-lv";
    assert_ne!(one(&r, c, "rc"), "0", "{}", output(&r, c));
    assert!(
        output(&r, c).contains("not on ubuntu-vg/ubuntu-lv"),
        "{c}: {}",
        output(&r, c)
    );
    assert_eq!(num(&r, c, "lv.other"), 4 * GIB);
    assert!(num(&r, c, "vg_free") > 7 * GIB);
}

/// A plain serial of a few characters becomes `*S*`, which may match inside
/// another disk's ID_SERIAL: the build warns, at the value's place in the
/// cluster file, and still builds; a full serial or a glob is not warned about.
#[test]
fn a_short_plain_serial_is_warned_about_at_its_place_in_the_cluster_file() {
    let short = VARIANTS.replace("disk: {serial: WD-WCC7K0TESTSER}", "disk: {serial: K0T}");
    assert_ne!(short, VARIANTS);
    let s = Scratch::new(&short);
    let o = s.build(&["--format", "dir"]);
    let err = text(&o).1;
    assert!(o.status.success(), "{err}");
    let line = short
        .lines()
        .position(|l| l.contains("serial: K0T"))
        .expect("line")
        + 1;
    assert!(
        err.contains("warning")
            && err.contains("machines[0].disk.serial")
            && err.contains("\"K0T\" is short")
            && err.contains(&format!(":{line}:")),
        "{err}"
    );
    let o = Scratch::new(VARIANTS).build(&["--format", "dir"]);
    assert!(o.status.success());
    assert!(!text(&o).1.contains("is short"), "{}", text(&o).1);
}

#[test]
fn the_lvm_test_vm_scripts_pass_shellcheck() {
    let o = Command::new("shellcheck")
        .args(["-x", "lvm-vm.sh", "vm/lvm-guest.sh"])
        .current_dir(root().join("scripts"))
        .output()
        .expect("shellcheck");
    assert!(o.status.success(), "{}", text(&o).0);
}

/// netplan's own rendering of a machine's network on a two-NIC machine
/// (`eno1` 52:54:00:00:00:01, `enp2s0` 52:54:00:00:00:02): which NICs the
/// systemd-networkd unit carrying the static address matches, by networkd's
/// rules (`Name=` is a list of fnmatch globs, `MACAddress=` and
/// `PermanentMACAddress=`, which netplan 0.106 writes, lists of MACs).
fn nics_given_the_address(network_config: &str) -> Vec<String> {
    let r = tempfile::tempdir().expect("tmp");
    let np = r.path().join("etc/netplan");
    std::fs::create_dir_all(&np).expect("netplan dir");
    let f = np.join("00-installer-config.yaml");
    std::fs::write(&f, network_config).expect("write");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let g = run(
        "netplan",
        &["generate", "--root-dir", r.path().to_str().expect("utf8")],
    );
    assert!(g.status.success(), "netplan generate: {:?}", text(&g));
    let o = run(
        "python3",
        &[
            "-c",
            "import sys, glob, fnmatch, configparser\n\
             nics = {'eno1': '52:54:00:00:00:01', 'enp2s0': '52:54:00:00:00:02'}\n\
             got = set()\n\
             for f in glob.glob(sys.argv[1] + '/run/systemd/network/*.network'):\n\
             \x20   c = configparser.ConfigParser(strict=False)\n\
             \x20   c.read(f)\n\
             \x20   if not c.has_option('Network', 'Address'): continue\n\
             \x20   m = c['Match']\n\
             \x20   for n, mac in nics.items():\n\
             \x20       ok = True\n\
             \x20       if 'Name' in m: ok = ok and any(fnmatch.fnmatchcase(n, p) for p in m['Name'].split())\n\
             \x20       for k in ('MACAddress', 'PermanentMACAddress'):\n\
             \x20           if k in m: ok = ok and mac in m[k].lower().split()\n\
             \x20       if ok: got.add(n)\n\
             print(' '.join(sorted(got)))",
            r.path().to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    text(&o).0.split_whitespace().map(String::from).collect()
}

#[test]
fn a_static_address_goes_to_the_one_nic_named_or_matched_by_mac_of_a_two_nic_machine() {
    // worker-1 with nothing said about its NIC (both: what `check` warns
    // about), with a name, with a MAC.
    for (extra, want) in [
        ("", vec!["eno1", "enp2s0"]),
        ("    interface: enp2s0\n", vec!["enp2s0"]),
        ("    mac: 52:54:00:00:00:02\n", vec!["enp2s0"]),
    ] {
        let cluster = common::EXAMPLE.replace(
            "    ip: 172.20.10.12\n",
            &format!("    ip: 172.20.10.12\n{extra}"),
        );
        let s = built(&cluster);
        // The installed system's netplan, as the late-command writes it.
        let cmds = late_commands(&s, "worker-1");
        let installed = &named(&cmds, "microseed-target-files")[5];
        assert_eq!(
            nics_given_the_address(installed),
            want,
            "{extra:?}: {installed}"
        );
        // cloud-init's network-config (the cloud-image target) is the same.
        let net = std::fs::read_to_string(s.out().join("worker-1/network-config"))
            .expect("network-config");
        assert_eq!(
            pyyaml_str(&net),
            pyyaml_str(installed)["network"],
            "{extra:?}"
        );
    }
}

fn pyyaml_str(text: &str) -> serde_json::Value {
    let f = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(f.path(), text).expect("write");
    pyyaml(f.path())
}

/// The installer never touches the NFS data disk: the autoinstall's storage
/// section matches the root disk alone (subiquity's `match` picks one disk
/// and curtin acts only on what its config names; scripts/subiquity-tier.sh
/// shows that in subiquity's own plan), the install phase's storage step
/// gets the root layout, and the data disk's serial reaches the seed only in
/// the first-boot config, for the NFS step that finds it.
#[test]
fn the_nfs_data_disk_appears_in_no_install_step_only_in_first_boot() {
    let s = built(include_str!("fixtures/subiquity/data-disk-22.04.yaml"));
    let ud = pyyaml(&s.out().join("nfs").join("user-data"));
    let ai = &ud["autoinstall"];
    assert_eq!(
        ai["storage"],
        serde_json::json!({"layout": {"name": "lvm", "match": {"serial": "*QEMU_HARDDISK_QM00001*"}}})
    );
    let data = "WDC_WD40EFRX_WD-WCC7K0TESTSER";
    let mut install = ai.clone();
    let first_boot = install
        .as_object_mut()
        .expect("autoinstall is a mapping")
        .remove("user-data")
        .expect("first-boot user-data");
    assert!(!install.to_string().contains(data), "{install}");
    assert!(!install.to_string().contains("WCC7K0"), "{install}");
    assert!(first_boot.to_string().contains(data));
    let storage = named(&late_commands(&s, "nfs"), "microseed-storage").clone();
    assert_eq!(storage[4], "root", "{storage:?}");
}
