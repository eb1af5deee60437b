//! Snap refreshes on the cluster's schedule: each machine's
//! `microseed-snap-refresh` sets its own slot of the cluster's window as
//! snapd's `refresh.timer`, holds refreshes until first boot has converged,
//! and lifts the hold only then. Run under `sh` against a stand-in `snap`
//! that records its arguments (the timer strings themselves are checked
//! against snapd's grammar in `validate`'s unit tests).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{EXAMPLE, Scratch, extract_write_files, first_boot, text};

/// The example built, each machine's files under `roots/<machine>`.
fn roots(cluster: &str) -> (Scratch, PathBuf) {
    let s = Scratch::new(cluster);
    let o = s.build(&["--format", "dir"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let dir = s.dir.path().join("roots");
    for m in ["nfs", "master", "worker-1"] {
        extract_write_files(&first_boot(&s.out(), m), &dir.join(m));
    }
    (s, dir)
}

/// A directory with a `snap` that appends its arguments to `calls`.
fn fake_snap(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let snap = bin.join("snap");
    std::fs::write(
        &snap,
        format!("#!/bin/sh\necho \"$*\" >>{}\n", dir.join("calls").display()),
    )
    .expect("write");
    common::make_executable(&snap);
    bin
}

fn script(root: &Path, machine: &str, arg: &str, work: &Path) -> Command {
    let mut c = Command::new("sh");
    c.arg(
        root.join(machine)
            .join("usr/local/sbin/microseed-snap-refresh"),
    )
    .arg(arg)
    .env(
        "PATH",
        format!("{}:/usr/bin:/bin", fake_snap(work).display()),
    )
    .env("MICROSEED_STATE", work.join("state"))
    .env(
        "MICROSEED_STEPS",
        root.join(machine).join("etc/microseed/steps"),
    )
    .env("MICROSEED_REFRESH_POLL", "0.2");
    c
}

fn calls(work: &Path) -> String {
    std::fs::read_to_string(work.join("calls")).unwrap_or_default()
}

#[test]
fn each_machine_holds_refreshes_and_takes_its_own_slot_of_the_window() {
    let (_s, root) = roots(EXAMPLE);
    let mut timers = Vec::new();
    for (m, slot) in [
        ("nfs", "sat,02:00-03:20"),
        ("master", "sat,03:20-04:40"),
        ("worker-1", "sat,04:40-06:00"),
    ] {
        let work = tempfile::tempdir().expect("tmp");
        let o = script(&root, m, "hold", work.path()).output().expect("run");
        assert!(o.status.success(), "{m}: {:?}", text(&o));
        let calls = calls(work.path());
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(lines[0], "wait system seed.loaded", "{m}: {calls}");
        let set = lines[1];
        assert!(
            set.starts_with(&format!("set system refresh.timer={slot} refresh.hold=")),
            "{m}: {set}"
        );
        // An RFC 3339 time about 30 days ahead, which snapd's refresh.hold takes.
        let until = set.rsplit('=').next().expect("hold");
        let o = Command::new("date")
            .args(["-u", "-d", until, "+%s"])
            .output()
            .expect("date");
        assert!(o.status.success(), "{until}");
        let secs: u64 = text(&o).0.trim().parse().expect("seconds");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        assert!(
            (29 * 86_400..=31 * 86_400).contains(&(secs - now)),
            "{m}: {until}"
        );
        assert!(until.ends_with('Z') && until.len() == 20, "{until}");
        timers.push(slot);
    }
    timers.dedup();
    assert_eq!(timers.len(), 3, "every machine its own slot");
}

#[test]
fn refreshes_stay_held_until_every_other_step_is_done() {
    let (_s, root) = roots(EXAMPLE);
    let work = tempfile::tempdir().expect("tmp");
    let done = work.path().join("state/done");
    std::fs::create_dir_all(&done).expect("mkdir");
    let steps = std::fs::read_to_string(root.join("worker-1/etc/microseed/steps")).expect("steps");
    let names: Vec<&str> = steps
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split('|').next().expect("name"))
        .collect();
    assert!(
        names.contains(&"join") && names.contains(&"snap-hold") && names.contains(&"snap-open"),
        "{names:?}"
    );
    // Everything but the join is done.
    for n in names.iter().filter(|n| !["join", "snap-open"].contains(n)) {
        std::fs::write(done.join(n), "").expect("marker");
    }
    let mut child = script(&root, "worker-1", "release", work.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().expect("wait").is_none(),
        "released before the join"
    );
    assert_eq!(calls(work.path()), "", "snap was called before convergence");
    std::fs::write(done.join("join"), "").expect("marker");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still holding after every step was done");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let o = child.wait_with_output().expect("output");
    assert!(status.success(), "{:?}", text(&o));
    assert_eq!(calls(work.path()), "unset system refresh.hold\n");
    assert!(text(&o).0.contains("waiting on: join"), "{:?}", text(&o));
}

#[test]
fn a_machine_without_snapd_has_nothing_to_hold() {
    let (_s, root) = roots(EXAMPLE);
    let o = Command::new("/bin/sh")
        .arg(root.join("nfs/usr/local/sbin/microseed-snap-refresh"))
        .arg("hold")
        .env("PATH", "/nonexistent")
        .output()
        .expect("run");
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("snapd is not installed"),
        "{:?}",
        text(&o)
    );
}
