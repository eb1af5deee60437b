//! No input or environment makes microseed panic: a closed stdout (`| head`)
//! ends every printing command quietly with a failure status, and a machine
//! named twice is built once.

use crate::common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, bin, text};

/// A pipe whose reading end is already closed, as stdout of `| head -0`.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) returns.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just created and are owned here only.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    Stdio::from(write)
}

/// Runs `cmd` with stdout a closed pipe; a command still running after a
/// minute (`serve` that did not notice, say) fails the test instead of
/// stalling it.
fn run_into_closed_pipe(mut cmd: Command) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = cmd
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run microseed");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).ok();
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().ok();
            child.wait().ok();
            panic!("{cmd:?} still running a minute after stdout closed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), reader.join().expect("stderr reader"))
}

/// A fake sysfs/procfs (`MICROSEED_FLASH_SYSROOT`) with one removable,
/// unmounted disk, so `flash --list` has a line to print.
fn fake_sysroot(root: &Path) {
    let b = root.join("sys/block/sdz");
    std::fs::create_dir_all(b.join("device")).expect("mkdir");
    std::fs::create_dir_all(root.join("sys/class/block")).expect("mkdir");
    std::fs::create_dir_all(root.join("proc/self")).expect("mkdir");
    for (file, body) in [
        ("dev", "8:400\n"),
        ("size", "2097152\n"),
        ("removable", "1\n"),
        ("ro", "0\n"),
        ("device/vendor", "ACME\n"),
        ("device/model", "Test Stick\n"),
        ("device/serial", "SN-1\n"),
    ] {
        std::fs::write(b.join(file), body).expect("write");
    }
    std::os::unix::fs::symlink("../../block/sdz", root.join("sys/class/block/sdz"))
        .expect("symlink");
    std::fs::write(
        root.join("proc/self/mountinfo"),
        "21 1 0:20 / /proc rw,nosuid - proc proc rw\n",
    )
    .expect("write");
    std::fs::write(
        root.join("proc/swaps"),
        "Filename\tType\tSize\tUsed\tPriority\n",
    )
    .expect("write");
}

#[test]
fn closed_stdout_ends_every_command_quietly_with_failure() {
    // Nothing to warn about: any stderr output is the closed pipe's.
    let s = Scratch::new(&common::quiet_example());
    assert!(s.build(&[]).status.success());
    let cluster = s.cluster().display().to_string();
    let out = s.out().display().to_string();
    let init_dir = s.dir.path().join("fresh").display().to_string();
    let cache = s.dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    let cache = cache.display().to_string();
    let sysroot = s.dir.path().join("sysroot");
    fake_sysroot(&sysroot);
    // Every machine unreachable at once, without touching the network.
    let ssh_config = s.dir.path().join("ssh_config");
    std::fs::write(&ssh_config, "Host *\n  ProxyCommand false\n").expect("write");
    let ssh_config = ssh_config.display().to_string();
    let tree = s.dir.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    let tree = tree.display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["build", &cluster, "-o", &out],
        vec!["build", &cluster, "-o", &out, "--json"],
        vec!["build", &cluster, "-o", &out, "--check"],
        vec!["check", &cluster],
        vec!["check", &cluster, "--json"],
        vec!["verify", &out],
        vec!["verify", &out, "--json"],
        vec!["render", &cluster, "master", "user-data"],
        vec!["completions", "bash"],
        vec!["completions", "zsh"],
        vec!["init", &init_dir],
        vec!["iso", "list", "--cache-dir", &cache],
        vec!["iso", "list", "--cache-dir", &cache, "--json"],
        vec!["flash", "--list"],
        vec!["flash", "--list", "--json"],
        vec!["status", &cluster, "--ssh-config", &ssh_config],
        vec!["status", &cluster, "--ssh-config", &ssh_config, "--json"],
        // serve announces its address on stdout before serving: a closed
        // stdout must end it then, not leave a server nobody was told of.
        vec!["serve", &tree, "--bind", "127.0.0.1:0"],
    ];
    for args in cases {
        let mut cmd = bin();
        cmd.args(&args)
            .env("MICROSEED_TODAY", common::TODAY)
            .env("HOME", s.dir.path())
            .env("MICROSEED_FLASH_SYSROOT", &sysroot);
        let (code, err) = run_into_closed_pipe(cmd);
        assert_eq!(code, Some(1), "{args:?}: stderr {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?} is not quiet: {err}");
    }
}

#[test]
fn closed_stdout_and_stderr_never_panic() {
    // `microseed ... 2>&1 | head -0`: both streams go to a pipe nobody reads,
    // including the error paths (exit 2) that print to stderr.
    let s = Scratch::example();
    let bad = s.dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: 1\nname: x\n").expect("write");
    let cluster = s.cluster().display().to_string();
    let out = s.out().display().to_string();
    let bad = bad.display().to_string();
    for (args, code) in [
        (vec!["build", cluster.as_str(), "-o", out.as_str()], 1),
        (vec!["check", bad.as_str()], 2),
        (vec!["check", bad.as_str(), "--json"], 2),
        (vec!["verify", "/nonexistent"], 2),
        (vec!["completions", "fish"], 1),
    ] {
        let o = bin()
            .args(&args)
            .stdout(closed_pipe())
            .stderr(closed_pipe())
            .status()
            .expect("run");
        assert_eq!(o.code(), Some(code), "{args:?}");
    }
}

#[test]
fn a_machine_named_twice_is_built_once() {
    let s = Scratch::example();
    let o = s.build(&[
        "--machine",
        "worker-1",
        "--machine",
        "master",
        "--machine",
        "worker-1",
        "--json",
    ]);
    let (stdout, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let files: Vec<&str> = v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f["path"].as_str().expect("path"))
        .collect();
    let mut unique = files.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(files.len(), unique.len(), "{files:?}");
    let sums = std::fs::read_to_string(s.out().join("SHA256SUMS")).expect("sums");
    let lines: Vec<&str> = sums.lines().collect();
    let mut unique = lines.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(lines.len(), unique.len(), "{sums}");
    assert_eq!(
        sums.lines()
            .filter(|l| l.ends_with("worker-1/user-data"))
            .count(),
        1
    );
    // sha256sum, the consumer SHA256SUMS is written for, agrees.
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("--strict")
        .arg("SHA256SUMS")
        .current_dir(s.out())
        .output()
        .expect("sha256sum");
    assert!(check.status.success(), "{:?}", text(&check));
}
