//! The project's own test scripts (`scripts/`: the entry points and what
//! they use in `lib/`, `recipes/`, `vm/`, `checks/`) in front of shellcheck
//! (following every `source` line, so a file moved away from what it sources
//! fails here) and Python's parser. The scripts themselves run in the tiers
//! that need a machine (`scripts/test.sh`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{root, text};

/// Every regular file below `scripts/`, relative to it, sorted.
fn script_files() -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read scripts/") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).expect("below scripts/").to_path_buf());
            }
        }
    }
    let base = root().join("scripts");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// The interpreter a file names on its `#!` line, or "" without one.
fn shebang(rel: &Path) -> String {
    let body = std::fs::read(root().join("scripts").join(rel)).expect("read script");
    let first = body.split(|&b| b == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(first)
        .strip_prefix("#!")
        .unwrap_or_default()
        .to_string()
}

#[test]
fn every_shell_script_under_scripts_passes_shellcheck() {
    let shell: Vec<PathBuf> = script_files()
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "sh") || {
                let s = shebang(p);
                s.ends_with("/sh") || s.ends_with("bash")
            }
        })
        .collect();
    // The directories the entry points use must be among what is checked.
    for dir in ["lib", "recipes", "vm", "checks"] {
        assert!(
            shell.iter().any(|p| p.starts_with(dir)),
            "no shell script in scripts/{dir}/: {shell:?}"
        );
    }
    let o = Command::new("shellcheck")
        .arg("-x")
        .args(&shell)
        .current_dir(root().join("scripts"))
        .output()
        .expect("shellcheck (scripts/deps/core.apt)");
    assert!(o.status.success(), "{}{}", text(&o).0, text(&o).1);
}

#[test]
fn every_python_helper_under_scripts_parses() {
    let py: Vec<PathBuf> = script_files()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "py") || shebang(p).contains("python"))
        .collect();
    assert!(
        py.len() >= 3,
        "expected seedinfo, the cluster agent, the verdict: {py:?}"
    );
    // ast.parse, not py_compile: nothing is written into the tree.
    let o = Command::new("python3")
        .args([
            "-c",
            "import ast, sys\nfor f in sys.argv[1:]:\n    ast.parse(open(f).read(), f)",
        ])
        .args(&py)
        .current_dir(root().join("scripts"))
        .output()
        .expect("python3");
    assert!(o.status.success(), "{}", text(&o).1);
}

/// scripts/test.sh's check after `cargo test` (scripts/lib/leftovers.py):
/// a process the run left behind, orphaned and naming the run's TMPDIR or
/// working in the checkout, fails the check and is killed; one already
/// there before the run, or another run's, does not count and is left be.
#[test]
fn the_check_after_cargo_test_fails_on_a_process_left_running_and_kills_it() {
    let run_tmp = tempfile::tempdir().expect("tmp");
    let checkout = tempfile::tempdir().expect("tmp");
    let other_run = tempfile::tempdir().expect("tmp");
    let script = root().join("scripts/lib/leftovers.py");
    let state = run_tmp.path().with_extension("procs");
    let leftovers = |verb: &str| {
        Command::new("python3")
            .arg(&script)
            .arg(verb)
            .arg(&state)
            .arg(run_tmp.path())
            .arg(checkout.path())
            .output()
            .expect("python3")
    };
    // Orphaned at once: the shell that started it exits.
    let orphan = |cwd: &Path, name: &Path| {
        let o = Command::new("sh")
            .args(["-c", "(sh -c 'sleep 600; :' \"$1\" &)", "sh"])
            .arg(name)
            .current_dir(cwd)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("sh");
        assert!(o.success());
    };
    let mut old = Command::new("sleep")
        .arg("600")
        .current_dir(run_tmp.path())
        .spawn()
        .expect("sh");
    let o = leftovers("snapshot");
    assert!(o.status.success(), "{}", text(&o).1);
    orphan(Path::new("/"), run_tmp.path());
    orphan(checkout.path(), Path::new("server"));
    orphan(other_run.path(), other_run.path());
    let o = leftovers("check");
    let (out, err) = text(&o);
    let _ = std::fs::remove_file(&state);
    let others = common::leftovers(other_run.path());
    let _ = old.kill();
    let _ = old.wait();
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    // Each shell and the sleep it started.
    assert!(out.starts_with("4 process(es) left running"), "{out}");
    let listed: Vec<&str> = out.lines().skip(2).collect();
    assert!(
        listed
            .iter()
            .any(|l| l.ends_with(&format!("sh -c sleep 600; : {}", run_tmp.path().display())))
            && listed
                .iter()
                .any(|l| l.ends_with("sh -c sleep 600; : server")),
        "{out}"
    );
    assert!(
        !out.contains(&other_run.path().display().to_string()),
        "{out}"
    );
    // The other run's shell and its sleep, still running until just now.
    assert_eq!(
        others.len(),
        2,
        "another run's process was killed: {others:?}"
    );
    // Killed: nothing of the run is left running.
    for d in [run_tmp.path(), checkout.path()] {
        let left = common::leftovers(d);
        assert!(left.is_empty(), "not killed: {left:?}");
    }
}
