//! `verify OUT` (the manifest against the files) and `build --check` (a fresh
//! build against OUT): what each names, their exit codes, and that `--check`
//! never touches OUT.

use crate::common;

use common::{EXAMPLE, PXE_URL, Scratch, bin, pxe_cluster, text, tree};

fn build_ok(s: &Scratch, extra: &[&str]) {
    let o = s.build(extra);
    assert!(o.status.success(), "build failed: {}", text(&o).1);
}

fn verify(s: &Scratch, json: bool) -> (Option<i32>, String, String) {
    let mut c = bin();
    c.arg("verify").arg(s.out());
    if json {
        c.arg("--json");
    }
    let o = c.output().expect("run verify");
    let (out, err) = text(&o);
    (o.status.code(), out, err)
}

fn statuses(json: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(json).expect("json object");
    let files = v["files"].as_array().expect("a files list");
    let all_ok = files.iter().all(|e| e["status"] == "ok");
    assert_eq!(v["ok"], all_ok, "`ok` disagrees with the files: {v}");
    files
        .iter()
        .map(|e| {
            (
                e["path"].as_str().expect("path").to_string(),
                e["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

fn check(s: &Scratch, extra: &[&str]) -> (Option<i32>, String, String) {
    let o = s.build(&[&["--check"], extra].concat());
    let (out, err) = text(&o);
    (o.status.code(), out, err)
}

#[test]
fn a_clean_build_verifies() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let (code, out, err) = verify(&s, false);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("all 12 files match"), "{out}");
    let (code, json, _) = verify(&s, true);
    assert_eq!(code, Some(0));
    let st = statuses(&json);
    assert_eq!(st.len(), 12);
    assert!(st.iter().all(|(_, s)| s == "ok"));
}

#[test]
fn a_flipped_byte_is_named_as_changed() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let p = s.out().join("worker-1/user-data");
    let mut bytes = std::fs::read(&p).expect("read");
    bytes[100] ^= 0x01;
    std::fs::write(&p, bytes).expect("write");
    let (code, out, _) = verify(&s, false);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("changed   worker-1/user-data\n"), "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("changed")).count(), 1);
    let (code, json, _) = verify(&s, true);
    assert_eq!(code, Some(1));
    assert!(statuses(&json).contains(&("worker-1/user-data".into(), "changed".into())));
}

#[test]
fn a_deleted_file_is_named_as_missing() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    std::fs::remove_file(s.out().join("master/network-config")).expect("rm");
    let (code, out, _) = verify(&s, false);
    assert_eq!(code, Some(1));
    assert!(out.contains("missing   master/network-config\n"), "{out}");
}

#[test]
fn an_extra_file_is_named_as_unlisted() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    std::fs::write(s.out().join("worker-1/notes.txt"), "x").expect("write");
    let (code, out, _) = verify(&s, false);
    assert_eq!(code, Some(1));
    assert!(out.contains("unlisted  worker-1/notes.txt\n"), "{out}");
    let (_, json, _) = verify(&s, true);
    assert!(statuses(&json).contains(&("worker-1/notes.txt".into(), "unlisted".into())));
}

#[test]
fn files_copied_in_for_pxe_are_not_unlisted() {
    let s = Scratch::new(&pxe_cluster());
    build_ok(&s, &["--format", "pxe", "--pxe-url", PXE_URL]);
    for f in ["pxe/boot/vmlinuz", "pxe/iso/x.iso", "pxe/tftp/bootx64.efi"] {
        let p = s.out().join(f);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, "provided").expect("write");
    }
    let (code, out, _) = verify(&s, false);
    assert_eq!(code, Some(0), "{out}");
    std::fs::write(s.out().join("pxe/grub/extra.cfg"), "x").expect("write");
    let (code, out, _) = verify(&s, false);
    assert_eq!(code, Some(1));
    assert!(out.contains("unlisted  pxe/grub/extra.cfg"), "{out}");
}

#[test]
fn check_passes_on_an_unchanged_cluster_file() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let (code, out, err) = check(&s, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("all 13 files match"), "{out}");
}

#[test]
fn check_names_the_drifted_files_after_an_ntp_change_and_leaves_out_alone() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let before = tree(&s.out());
    let changed = EXAMPLE.replace("ntp.ubuntu.com", "0.ubuntu.pool.ntp.org");
    assert_ne!(changed, EXAMPLE);
    std::fs::write(s.cluster(), changed).expect("write cluster");
    let (code, out, err) = check(&s, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    for f in [
        "worker-1/user-data",
        "master/user-data",
        "nfs/user-data",
        "SHA256SUMS",
    ] {
        assert!(out.contains(&format!("changed   {f}\n")), "{f}: {out}");
    }
    assert!(!out.contains("network-config"), "{out}");
    assert!(err.contains("differs"), "{err}");
    assert_eq!(before, tree(&s.out()), "--check modified OUT");
    let (code, json, _) = check(&s, &["--json"]);
    assert_eq!(code, Some(1));
    assert!(statuses(&json).contains(&("worker-1/user-data".into(), "changed".into())));
    assert_eq!(before, tree(&s.out()));
}

#[test]
fn check_names_missing_and_extra_files() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    std::fs::remove_file(s.out().join("nfs/meta-data")).expect("rm");
    std::fs::write(s.out().join("stray"), "x").expect("write");
    let (code, out, _) = check(&s, &[]);
    assert_eq!(code, Some(1));
    assert!(out.contains("missing   nfs/meta-data\n"), "{out}");
    assert!(out.contains("unlisted  stray\n"), "{out}");
}

#[test]
fn check_covers_the_pxe_format_with_the_same_flags() {
    let s = Scratch::new(&pxe_cluster());
    let flags = ["--format", "dir,pxe", "--pxe-url", PXE_URL];
    build_ok(&s, &flags);
    let (code, out, err) = check(&s, &flags);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = check(
        &s,
        &[
            "--format",
            "dir,pxe",
            "--pxe-url",
            "http://172.20.10.6:8080",
        ],
    );
    assert_eq!(code, Some(1));
    assert!(out.contains("changed   pxe/grub/grub.cfg"), "{out}");
    assert!(!out.contains("pxe/seeds"), "{out}");
}

#[test]
fn check_without_the_secrets_file_is_bad_input_and_creates_none() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let before = tree(&s.out());
    let secrets = s.dir.path().join("secrets.yaml");
    std::fs::remove_file(&secrets).expect("rm");
    let (code, out, err) = check(&s, &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("secrets.yaml"), "{err}");
    assert!(!secrets.exists(), "--check created a secrets file");
    assert_eq!(before, tree(&s.out()));
}

#[test]
fn verify_of_a_directory_without_a_manifest_is_bad_input() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = bin().arg("verify").arg(d.path()).output().expect("run");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("SHA256SUMS"));
}

#[test]
fn check_after_adding_a_worker_says_installed_machines_need_only_a_hosts_line() {
    let s = Scratch::example();
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let grown = common::EXAMPLE.replacen(
        "    ip: 172.20.10.12\n",
        "    ip: 172.20.10.12\n  - name: worker-2\n    role: worker\n    ip: 172.20.10.13\n",
        1,
    );
    std::fs::write(s.cluster(), grown).expect("write");
    let (code, _, err) = check(&s, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "note: master, nfs, worker-1: only /etc/hosts (and the refresh slot) differs, so \
             installed machines need no reinstall; on each, add `172.20.10.13 worker-2` in \
             /etc/hosts by hand"
        ),
        "{err}"
    );
    // The window is shared among four now: each slot moved.
    assert!(
        err.contains("refresh.timer=SLOT`: master sat,03:00-04:00, nfs sat,02:00-03:00, worker-1 sat,04:00-05:00"),
        "{err}"
    );
    assert!(err.contains("note: worker-2 is new"), "{err}");

    // A change that is not only /etc/hosts draws no such note.
    std::fs::write(
        s.cluster(),
        common::EXAMPLE.replacen(
            "timezone: America/Los_Angeles",
            "timezone: Europe/Berlin",
            1,
        ),
    )
    .expect("write");
    let (code, _, err) = check(&s, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(!err.contains("only /etc/hosts"), "{err}");
}

#[test]
fn check_on_a_missing_out_is_bad_input_and_creates_nothing() {
    let s = Scratch::example();
    for rel in ["out", "not/there/out"] {
        let out = s.dir.path().join(rel);
        let before = tree(s.dir.path());
        let o = bin()
            .arg("build")
            .arg(s.cluster())
            .arg("-o")
            .arg(&out)
            .arg("--check")
            .output()
            .expect("run");
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "{}: error: no such directory; --check compares",
                out.display()
            )),
            "{err}"
        );
        // No parent directories, no lock file, no check tree.
        assert_eq!(tree(s.dir.path()), before, "{rel}");
        assert!(!s.dir.path().join("not").exists());
    }
}
