//! No input or environment makes microseed panic: a closed stdout (`| head`)
//! ends every printing command quietly with a failure status, and a machine
//! named twice is built once.

use crate::common;

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

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

fn run_into_closed_pipe(mut cmd: Command) -> (Option<i32>, String) {
    let o = cmd
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("run microseed");
    (o.status.code(), text(&o).1)
}

#[test]
fn closed_stdout_ends_every_command_quietly_with_failure() {
    let s = Scratch::example();
    assert!(s.build(&[]).status.success());
    let cluster = s.cluster().display().to_string();
    let out = s.out().display().to_string();
    let init_dir = s.dir.path().join("fresh").display().to_string();
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
    ];
    for args in cases {
        let mut cmd = bin();
        cmd.args(&args).env("HOME", s.dir.path());
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
