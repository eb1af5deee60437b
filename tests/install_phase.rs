//! The install phase's own steps (autoinstall `late-commands`): what the
//! seed writes into the installed system because not every installer revision
//! carries it, run here under `sh` against a scratch target and read back by
//! the consumers (netplan, PyYAML, shellcheck). The installer's own run of
//! them is scripts/subiquity-tier.sh (subiquity --dry-run).

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
    }
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
