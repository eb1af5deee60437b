//! The seeds in front of real cloud-init 25.x (a Debian trixie chroot built
//! and cached by scripts/cloud-init-chroot.sh): its schema checks, and each
//! role's first-boot config applied stage by stage, from a seed directory
//! and from a seed image found by label on a loop device. Stand-ins replace
//! snap/microk8s and apt's network access (no network here); nothing else
//! is faked, so `cloud-init status` must be done with no errors.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{EXAMPLE, Scratch, root, run, text};

fn chroot_script() -> PathBuf {
    root().join("scripts/cloud-init-chroot.sh")
}

/// Builds (or reuses) the cached chroot once per test binary.
fn ensure_chroot() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let o = run(chroot_script().to_str().expect("utf8"), &["build"]);
        assert!(
            o.status.success(),
            "building the cloud-init chroot failed: {:?}",
            text(&o)
        );
    });
}

fn built(cluster: &str, extra: &[&str]) -> Scratch {
    let s = Scratch::new(cluster);
    let o = s.build(extra);
    assert!(o.status.success(), "{}", text(&o).1);
    s
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Applies a seed; returns the apply's output directory.
fn apply(seed: &Path, out: &Path) -> PathBuf {
    apply_with(seed, out, &[])
}

fn apply_with(seed: &Path, out: &Path, extra: &[&str]) -> PathBuf {
    ensure_chroot();
    let mut args = vec![
        "apply",
        seed.to_str().expect("utf8"),
        out.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let o = run(chroot_script().to_str().expect("utf8"), &args);
    let summary = std::fs::read_to_string(out.join("summary.txt")).unwrap_or_default();
    let log = std::fs::read_to_string(out.join("cloud-init-output.log")).unwrap_or_default();
    assert!(
        o.status.success(),
        "cloud-init did not finish cleanly:\n{summary}\n{}\n--- output log tail ---\n{}",
        text(&o).1,
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    out.to_path_buf()
}

#[test]
fn first_boot_configs_and_network_configs_pass_cloud_init_schema() {
    ensure_chroot();
    let s = built(EXAMPLE, &["--target", "cloud-image", "--format", "dir"]);
    let staking = built(
        &common::staking_example(),
        &["--target", "cloud-image", "--format", "dir"],
    );
    for out in [s.out(), staking.out()] {
        for m in ["nfs", "master", "worker-1"] {
            for (kind, doc) in [
                ("cloud-config", "user-data"),
                ("network-config", "network-config"),
            ] {
                let f = out.join(m).join(doc);
                let o = run(
                    chroot_script().to_str().expect("utf8"),
                    &["schema", kind, f.to_str().expect("utf8")],
                );
                assert!(o.status.success(), "{m}/{doc}: {:?}", text(&o));
            }
        }
    }
}

#[test]
fn a_bad_cloud_config_fails_the_schema_check() {
    // The checker itself must be able to fail.
    ensure_chroot();
    let f = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(
        f.path(),
        "#cloud-config\nusers: 7\nwrite_files: [{path: 3}]\n",
    )
    .expect("write");
    let o = run(
        chroot_script().to_str().expect("utf8"),
        &["schema", "cloud-config", f.path().to_str().expect("utf8")],
    );
    assert!(!o.status.success(), "schema accepted garbage");
}

fn common_checks(out: &Path, machine: &str) {
    let r = out.join("root");
    assert_eq!(read(&out.join("hostname.txt")).trim(), machine);
    let hosts = read(&r.join("etc/hosts"));
    for line in [
        "172.20.10.10 nfs",
        "172.20.10.11 master",
        "172.20.10.12 worker-1",
    ] {
        assert!(
            hosts.lines().any(|l| l == line),
            "{machine}: /etc/hosts lacks {line}: {hosts}"
        );
    }
    assert!(
        read(&r.join("etc/chrony/chrony.conf"))
            .contains("pool time.google.com iburst maxsources 3")
    );
    let drop_in = read(&r.join("etc/ssh/sshd_config.d/10-microseed.conf"));
    assert!(
        drop_in.contains("PermitRootLogin no") && drop_in.contains("PasswordAuthentication no")
    );
    let ufw = read(&out.join("ufw-status.txt"));
    assert!(ufw.contains("Status: active"), "{machine}: {ufw}");
    assert!(
        ufw.contains("Default: deny (incoming), allow (outgoing)"),
        "{machine}: {ufw}"
    );
    assert!(ufw.contains("22/tcp"), "{machine}: {ufw}");
    let passwd = read(&r.join("etc/passwd"));
    assert!(
        passwd.lines().any(|l| l.starts_with("ubuntu:")),
        "admin user missing"
    );
    let keys = read(&r.join("home/ubuntu/.ssh/authorized_keys"));
    assert!(keys.contains("admin@example"));
    let tz = std::fs::read_link(r.join("etc/localtime")).expect("localtime link");
    assert!(
        tz.to_string_lossy().ends_with("America/Los_Angeles"),
        "{}",
        tz.display()
    );
}

/// Every step ran and microseed-status says so.
fn converged(out: &Path) {
    let status = read(&out.join("microseed-status.txt"));
    assert_eq!(
        read(&out.join("microseed-status.rc")).trim(),
        "0",
        "{status}\n{}",
        read(&out.join("steps.log"))
    );
    assert!(status.starts_with("microseed: converged ("), "{status}");
}

#[test]
fn without_snap_every_independent_step_still_happens_and_the_rest_stays_enabled() {
    let s = built(EXAMPLE, &["--target", "cloud-image", "--format", "dir"]);
    let work = tempfile::tempdir().expect("tmp");
    let out = apply_with(
        &s.out().join("master"),
        &work.path().join("apply"),
        &["--no-snap"],
    );
    // cloud-init itself is done: the step units took the work over.
    common_checks(&out, "master");
    let r = out.join("root");
    let status = read(&out.join("microseed-status.txt"));
    assert_eq!(
        read(&out.join("microseed-status.rc")).trim(),
        "1",
        "{status}"
    );
    let mut lines = status.lines();
    assert!(
        lines
            .next()
            .is_some_and(|l| l.starts_with("microseed: not converged (5/9 steps done)")),
        "{status}"
    );
    // snap-hold is done: with no snapd there is nothing to hold.
    for done in ["packages", "firewall", "ssh", "chrony", "snap-hold"] {
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [done, "done"]),
            "{done}: {status}"
        );
    }
    assert!(
        status.contains("microk8s   failed: attempt 1 exited"),
        "{status}"
    );
    assert!(
        status.contains("last error:") && status.contains("snap"),
        "{status}"
    );
    assert!(
        status.contains("token      waiting on microk8s"),
        "{status}"
    );
    assert!(
        status.contains("addons     waiting on microk8s"),
        "{status}"
    );
    // Snap refreshes stay held while first boot has not converged.
    assert!(status.contains("snap-open  waiting on addons"), "{status}");
    // The units that will finish the job at the next boot are enabled.
    for unit in ["microk8s", "token", "addons"] {
        let link = r.join(format!(
            "etc/systemd/system/multi-user.target.wants/microseed-{unit}.service"
        ));
        assert!(
            std::fs::symlink_metadata(&link).is_ok(),
            "{unit} not enabled"
        );
    }
    assert!(!r.join("var/lib/microseed/done/microk8s").exists());
}

#[test]
fn nfs_first_boot_applies_in_cloud_init() {
    let s = built(EXAMPLE, &["--target", "cloud-image", "--format", "dir"]);
    let work = tempfile::tempdir().expect("tmp");
    let out = apply(&s.out().join("nfs"), &work.path().join("apply"));
    common_checks(&out, "nfs");
    let r = out.join("root");
    assert!(read(&r.join("etc/exports")).contains("/data 172.20.0.0/20(rw,sync,no_subtree_check)"));
    for d in [
        "data/prysm/beacon",
        "data/prysm/validator-client-1",
        "data/prysm/wallet-1",
    ] {
        let o = run("stat", &["-c", "%u:%g", r.join(d).to_str().expect("utf8")]);
        assert_eq!(text(&o).0.trim(), "1001:2000", "{d}");
    }
    let ufw = read(&out.join("ufw-status.txt"));
    assert!(
        ufw.contains("2049/tcp") && ufw.contains("172.20.0.0/20"),
        "{ufw}"
    );
    assert!(!ufw.contains("16443"), "{ufw}");
    converged(&out);
}

#[test]
fn master_first_boot_applies_in_cloud_init() {
    let s = built(EXAMPLE, &["--target", "cloud-image", "--format", "dir"]);
    let work = tempfile::tempdir().expect("tmp");
    let out = apply(&s.out().join("master"), &work.path().join("apply"));
    common_checks(&out, "master");
    let r = out.join("root");
    let calls = read(&out.join("fake-microk8s.calls"));
    assert!(
        calls.contains("snap install microk8s --classic --channel=1.20/stable"),
        "{calls}"
    );
    assert!(
        calls.contains("microk8s enable dns") && calls.contains("microk8s enable helm3"),
        "{calls}"
    );
    // snapd seeded before anything asks it for MicroK8s.
    let seeded = calls
        .find("snap wait system seed.loaded")
        .expect("no seed wait");
    assert!(
        seeded < calls.find("snap install").expect("install"),
        "{calls}"
    );
    // Every apt run of the steps, with needrestart listing only.
    let apt = read(&out.join("fake-apt.calls"));
    assert!(apt.contains(" upgrade"), "{apt}");
    assert!(
        apt.lines()
            .all(|l| l.starts_with("NEEDRESTART_MODE=l apt-get ")),
        "{apt}"
    );
    // The token went into MicroK8s' token file without any command
    // seeing it as an argument.
    assert!(!calls.contains("TestTokenForGoldenFiles"), "{calls}");
    let tokens = read(&r.join("var/snap/microk8s/current/credentials/cluster-tokens.txt"));
    assert!(
        tokens.starts_with("TestTokenForGoldenFiles0123456789abcdefABCDEF|"),
        "{tokens}"
    );
    converged(&out);
    // The enablement symlink points at an absolute path inside the root.
    assert!(
        std::fs::symlink_metadata(
            r.join("etc/systemd/system/timers.target.wants/microseed-token.timer")
        )
        .is_ok(),
        "token timer not enabled"
    );
    // Workers can ask the master for its proven certificate fingerprint.
    assert!(
        std::fs::symlink_metadata(
            r.join("etc/systemd/system/sockets.target.wants/microseed-fingerprint.socket")
        )
        .is_ok(),
        "fingerprint socket not enabled"
    );
    let ufw = read(&out.join("ufw-status.txt"));
    for rule in [
        "16443/tcp",
        "25000/tcp",
        "25001/tcp",
        "19001/tcp",
        "4789/udp",
        "12000/udp",
        "13000/tcp",
    ] {
        assert!(ufw.contains(rule), "{rule}: {ufw}");
    }
    let log = read(&out.join("cloud-init-output.log"));
    assert!(
        !log.contains("TestTokenForGoldenFiles"),
        "the join token leaked into cloud-init's output log"
    );
}

#[test]
fn worker_first_boot_installs_and_enables_the_join_unit() {
    let s = built(EXAMPLE, &["--target", "cloud-image", "--format", "dir"]);
    let work = tempfile::tempdir().expect("tmp");
    let out = apply_with(
        &s.out().join("worker-1"),
        &work.path().join("apply"),
        &["--fake-master", "172.20.10.11"],
    );
    common_checks(&out, "worker-1");
    let r = out.join("root");
    assert!(r.join("usr/local/sbin/microseed-join").exists());
    assert!(
        std::fs::symlink_metadata(
            r.join("etc/systemd/system/multi-user.target.wants/microseed-join.service")
        )
        .is_ok(),
        "join unit not enabled"
    );
    assert!(
        read(&out.join("fake-microk8s.calls")).contains("microk8s join 172.20.10.11:25000/"),
        "the join step did not run"
    );
    // It joined only after checking the (stand-in) master's proof and the
    // certificate its agent presents.
    let agent = read(&out.join("fake-master.sha256"));
    let steps = read(&out.join("steps.log"));
    assert!(
        steps.contains(&format!("certificate sha256 {}...", &agent.trim()[..16])),
        "{steps}"
    );
    converged(&out);
    let token = r.join("etc/microseed/join-token");
    let o = run("stat", &["-c", "%a %u", token.to_str().expect("utf8")]);
    assert_eq!(text(&o).0.trim(), "600 0", "join token must be root-only");
    let log = read(&out.join("cloud-init-output.log"));
    assert!(
        !log.contains("TestTokenForGoldenFiles"),
        "the join token leaked into cloud-init's output log"
    );
}

#[test]
fn seed_image_is_found_by_label_on_a_loop_device_and_applied() {
    let s = built(
        EXAMPLE,
        &[
            "--target",
            "cloud-image",
            "--format",
            "seed-img",
            "--machine",
            "worker-1",
        ],
    );
    let work = tempfile::tempdir().expect("tmp");
    let out = apply(
        &s.out().join("worker-1/seed.img"),
        &work.path().join("apply"),
    );
    let ds = read(&out.join("datasource.txt"));
    assert!(
        ds.contains("DataSourceNoCloud") && ds.contains("seed=/dev/loop"),
        "{ds}"
    );
    common_checks(&out, "worker-1");
}

/// The 22.04 and 24.04 examples (examples/eth2-staking-*/).
const EXAMPLE_2204: &str = include_str!("../examples/eth2-staking-22.04/cluster.yaml");
const EXAMPLE_2404: &str = include_str!("../examples/eth2-staking-24.04/cluster.yaml");

#[test]
fn release_examples_pass_cloud_init_schema() {
    ensure_chroot();
    for cluster in [EXAMPLE_2204, EXAMPLE_2404] {
        let s = built(cluster, &["--target", "cloud-image", "--format", "dir"]);
        for m in ["nfs", "master", "worker-1"] {
            for (kind, doc) in [
                ("cloud-config", "user-data"),
                ("network-config", "network-config"),
            ] {
                let f = s.out().join(m).join(doc);
                let o = run(
                    chroot_script().to_str().expect("utf8"),
                    &["schema", kind, f.to_str().expect("utf8")],
                );
                assert!(o.status.success(), "{m}/{doc}: {:?}", text(&o));
            }
        }
    }
}

/// 24.04's first boot applied by cloud-init: ssh moved to 2222 (opened
/// first), MicroK8s from the release's supported track with its launch
/// configuration, and every step done. The chroot's ufw runs on
/// iptables-nft, the nftables backend 24.04 uses. The worker is left out to
/// keep CI short (its join waits out retries, about a minute): its 24.04
/// parts are the same files, and the `--worker` join per channel is
/// tests/convergence.rs's.
#[test]
fn noble_first_boot_applies_and_converges_for_nfs_and_master() {
    let s = built(
        EXAMPLE_2404,
        &["--target", "cloud-image", "--format", "dir"],
    );
    let work = tempfile::tempdir().expect("tmp");
    for m in ["nfs", "master"] {
        let out = apply(&s.out().join(m), &work.path().join(m));
        common_checks(&out, m);
        let r = out.join("root");
        let drop_in = read(&r.join("etc/ssh/sshd_config.d/10-microseed.conf"));
        assert!(drop_in.contains("Port 2222\n"), "{m}: {drop_in}");
        let ufw = read(&out.join("ufw-status.txt"));
        assert!(
            ufw.lines()
                .any(|l| l.starts_with("2222/tcp") && l.contains("ALLOW IN")),
            "{m}: {ufw}"
        );
        // Kept open while sshd was still there, closed once it moved.
        assert!(!ufw.lines().any(|l| l.starts_with("22/tcp")), "{m}: {ufw}");
        assert_eq!(
            std::fs::read_link(r.join("etc/alternatives/iptables"))
                .expect("iptables alternative")
                .to_string_lossy(),
            "/usr/sbin/iptables-nft"
        );
        let calls = read(&out.join("fake-microk8s.calls"));
        if m == "master" {
            assert!(
                calls.contains("snap install microk8s --classic --channel=1.35/stable"),
                "{calls}"
            );
            assert!(r.join("etc/microk8s.yaml").exists(), "no launch config");
        } else {
            // The NFS server touches snapd only for its refresh slot: held
            // first, released once every other step was done.
            let lines: Vec<&str> = calls.lines().collect();
            assert_eq!(lines.len(), 3, "{calls}");
            assert_eq!(lines[0], "snap wait system seed.loaded", "{calls}");
            assert!(
                lines[1].starts_with("snap set system refresh.timer=sat,02:00-03:20 refresh.hold="),
                "{calls}"
            );
            assert_eq!(lines[2], "snap unset system refresh.hold", "{calls}");
        }
        converged(&out);
    }
}

/// With ssh.socket listening (Ubuntu 22.10+), a socket that does not come
/// up on the new port must not leave the machine unreachable: the drop-in
/// is removed, the socket switched back, and the step fails (to be retried)
/// while every other step still happens. The chroot starts no units, so the
/// socket never listens on 2222 here.
#[test]
fn noble_ssh_socket_not_listening_on_the_new_port_is_rolled_back() {
    let s = built(
        EXAMPLE_2404,
        &["--target", "cloud-image", "--format", "dir"],
    );
    let work = tempfile::tempdir().expect("tmp");
    let out = apply_with(
        &s.out().join("nfs"),
        &work.path().join("apply"),
        &["--ssh-socket"],
    );
    let r = out.join("root");
    assert!(
        !r.join("etc/ssh/sshd_config.d/10-microseed.conf").exists(),
        "the drop-in stayed although ssh.socket did not listen on 2222"
    );
    let steps = read(&out.join("steps.log"));
    let switch = steps
        .find("Running in chroot, ignoring command 'daemon-reload'")
        .expect("no daemon-reload before the socket restart");
    assert!(
        steps[switch..]
            .contains("ssh.socket is not listening on 2222; keeping the previous settings"),
        "{steps}"
    );
    assert_ne!(read(&out.join("microseed-status.rc")).trim(), "0");
    let status = read(&out.join("microseed-status.txt"));
    for line in [
        "packages   done",
        "firewall   done",
        "chrony     done",
        "nfs        done",
    ] {
        assert!(status.contains(line), "{line}: {status}");
    }
    assert!(status.contains("ssh        failed"), "{status}");
    // sshd is still on 22, and ufw lets it through: nobody is locked out.
    let ufw = read(&out.join("ufw-status.txt"));
    assert!(
        ufw.lines()
            .any(|l| l.starts_with("22/tcp") && l.contains("ALLOW IN")),
        "{ufw}"
    );
}
