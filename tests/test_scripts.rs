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
