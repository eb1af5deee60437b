//! `build -o OUT` never deletes what microseed did not write: an OUT that
//! is, holds or sits in an input, a tree without our manifest, files the
//! manifest does not list, a mount point at or inside OUT, and the odd path
//! forms (symlinks, `/`, `.`) are refused before anything is written, and
//! the PXE files the user copied in survive every rebuild. Mounts are real
//! tmpfs mounts in a private mount namespace (`unshare --mount`).

use crate::common;
use crate::iso_common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{PXE_URL, Scratch, bin, pxe_cluster, text};

/// Every entry (hidden ones too) under `dir` with its bytes (empty for
/// directories, the target for symlinks): what "nothing changed" compares.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let p = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            let bytes = if m.file_type().is_symlink() {
                std::fs::read_link(&p)
                    .expect("readlink")
                    .into_os_string()
                    .into_encoded_bytes()
            } else if m.is_dir() {
                stack.push(p.clone());
                Vec::new()
            } else {
                std::fs::read(&p).expect("read")
            };
            out.push((p, bytes));
        }
    }
    out.sort();
    out
}

/// Exit 2, the reason on stderr, and nothing under `root` changed.
fn refused(o: &Output, reason: &str, root: &Path, before: &[(PathBuf, Vec<u8>)]) {
    let (_, err) = text(o);
    assert_eq!(o.status.code(), Some(2), "not refused as bad input: {err}");
    assert!(err.contains(reason), "expected {reason:?} in: {err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(snapshot(root), before, "something changed: {err}");
}

fn build(cluster: &Path, out: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("build")
        .arg(cluster)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("run microseed")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn output_that_is_holds_or_sits_in_an_input_is_refused_before_anything_is_written() {
    let sc = Scratch::example();
    let dir = sc.dir.path();
    // No secrets file: a refused build must not create it either.
    std::fs::remove_file(dir.join("secrets.yaml")).expect("rm secrets");
    let tpl = dir.join("templates");
    let prof = dir.join("profiles");
    let cache = dir.join("cache");
    let isodir = dir.join("isodir");
    for d in [&tpl, &prof, &cache, &isodir] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(tpl.join("keep.tera"), "x").expect("write");
    std::fs::write(isodir.join("ubuntu.iso"), "not really an iso").expect("write");
    let iso = isodir.join("ubuntu.iso");
    // A cluster file one level down, so that an output holding its
    // directory is still inside this test's own directory: the parent of a
    // temporary directory (/tmp) may be a mount point, or hold the current
    // directory, each refused for its own reason first.
    let inner = dir.join("inner");
    std::fs::create_dir_all(&inner).expect("mkdir");
    std::fs::copy(sc.cluster(), inner.join("cluster.yaml")).expect("copy");
    let before = snapshot(dir);
    let cluster = sc.cluster();
    // Run from a directory no case names: none is then refused for holding
    // the current directory, wherever the project is checked out.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let inst = ["--format", "installer"];
    let cases: Vec<(PathBuf, Vec<String>, &str)> = vec![
        (dir.to_path_buf(), vec![], "is the cluster file's directory"),
        (
            dir.to_path_buf(),
            vec!["--cluster".into(), s(&inner.join("cluster.yaml")).into()],
            "holds the cluster file's directory",
        ),
        (
            dir.join("cluster.yaml"),
            vec![],
            "exists and is not a directory",
        ),
        (
            isodir.clone(),
            vec![
                inst[0].into(),
                inst[1].into(),
                "--iso".into(),
                s(&iso).into(),
            ],
            "holds --iso",
        ),
        (
            tpl.join("out"),
            vec!["--templates".into(), s(&tpl).into()],
            "is inside --templates",
        ),
        (
            tpl.clone(),
            vec!["--templates".into(), s(&tpl).into()],
            "is --templates",
        ),
        (
            prof.clone(),
            vec!["--profiles".into(), s(&prof).into()],
            "is --profiles",
        ),
        (
            cache.join("o"),
            vec![
                inst[0].into(),
                inst[1].into(),
                "--cache-dir".into(),
                s(&cache).into(),
            ],
            "is inside the ISO download cache",
        ),
        (dir.join("x/.."), vec![], "ends in `..`"),
    ];
    for (out, extra, reason) in cases {
        let mut c = bin();
        c.current_dir(elsewhere.path());
        // Global flags go before the subcommand; `--cluster` (ours) names
        // another cluster file.
        let (global, local): (Vec<_>, Vec<_>) = extra
            .chunks(2)
            .partition(|kv| kv[0] == "--templates" || kv[0] == "--profiles");
        let (other, local): (Vec<_>, Vec<_>) =
            local.into_iter().partition(|kv| kv[0] == "--cluster");
        for kv in global {
            c.args(kv);
        }
        let cluster = other
            .first()
            .map_or(cluster.clone(), |kv| PathBuf::from(&kv[1]));
        c.arg("build").arg(&cluster).arg("-o").arg(&out);
        for kv in local {
            c.args(kv);
        }
        let o = c.output().expect("run");
        refused(&o, reason, dir, &before);
    }
    // A layout that is fine: the output inside the cluster file's directory.
    std::fs::write(dir.join("secrets.yaml"), common::SECRETS).expect("secrets");
    std::fs::set_permissions(
        dir.join("secrets.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let o = build(&cluster, &dir.join("out"), &["--format", "dir"]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn existing_output_microseed_did_not_write_is_refused_unless_forced() {
    let sc = Scratch::example();
    let photos = sc.dir.path().join("photos");
    std::fs::create_dir_all(photos.join("2024")).expect("mkdir");
    std::fs::write(photos.join("2024/a.jpg"), "jpeg").expect("write");
    let before = snapshot(sc.dir.path());
    let o = build(&sc.cluster(), &photos, &[]);
    refused(&o, "has no SHA256SUMS", sc.dir.path(), &before);
    assert!(text(&o).1.contains("--force"), "no way out named");
    let o = build(&sc.cluster(), &photos, &["--force"]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(!photos.join("2024").exists());

    // A file dropped into a built output is not silently deleted either.
    let o = sc.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::write(sc.out().join("notes.txt"), "mine").expect("write");
    std::fs::write(sc.out().join("master/extra.cfg"), "mine").expect("write");
    let before = snapshot(sc.dir.path());
    let o = sc.build(&[]);
    refused(&o, "master/extra.cfg, notes.txt", sc.dir.path(), &before);
    // A SHA256SUMS that is not ours does not make a tree ours.
    let other = sc.dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    std::fs::write(other.join("SHA256SUMS"), "hello\n").expect("write");
    let before = snapshot(sc.dir.path());
    let o = build(&sc.cluster(), &other, &[]);
    refused(&o, "not a sha256sum line", sc.dir.path(), &before);

    // An existing empty directory is fine.
    let empty = sc.dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let o = build(&sc.cluster(), &empty, &["--format", "dir"]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn symlinks_root_and_current_directory_as_output_are_refused_before_the_build() {
    let sc = Scratch::example();
    let dir = sc.dir.path();
    std::fs::remove_file(dir.join("secrets.yaml")).expect("rm secrets");
    let real = dir.join("real");
    std::fs::create_dir_all(&real).expect("mkdir");
    std::os::unix::fs::symlink(&real, dir.join("link")).expect("symlink");
    std::os::unix::fs::symlink(dir.join("gone"), dir.join("dangling")).expect("symlink");
    let before = snapshot(dir);
    for link in ["link", "link/", "link/."] {
        let o = build(&sc.cluster(), &dir.join(link), &[]);
        refused(&o, "is a symbolic link to", dir, &before);
        assert!(text(&o).1.contains("give the target itself"));
    }
    let o = build(&sc.cluster(), &dir.join("dangling"), &[]);
    refused(&o, "which does not exist", dir, &before);
    let started = std::time::Instant::now();
    let o = build(&sc.cluster(), Path::new("/"), &[]);
    refused(&o, "the root directory cannot be the output", dir, &before);
    assert!(
        started.elapsed().as_secs() < 10,
        "refused only after a build"
    );
    for (cwd, out) in [
        (real.clone(), "."),
        (real.clone(), ".."),
        (real.clone(), "../real"),
    ] {
        let o = bin()
            .current_dir(&cwd)
            .arg("build")
            .arg(sc.cluster())
            .arg("-o")
            .arg(out)
            .output()
            .expect("run");
        let reason = if out == ".." {
            "ends in `..`"
        } else {
            "current directory"
        };
        refused(&o, reason, dir, &before);
    }
    let o = bin()
        .current_dir(&real)
        .arg("build")
        .arg(sc.cluster())
        .arg("-o")
        .arg(dir)
        .output()
        .expect("run");
    refused(&o, "an ancestor of the current directory", dir, &before);
}

/// Runs `script` as root in a private mount namespace, with `$1` = a
/// scratch directory, `$2` = the binary, `$3` = the cluster file.
fn in_mount_namespace(sc: &Scratch, script: &str) -> Output {
    common::in_mount_namespace(
        script,
        &[
            s(sc.dir.path()),
            env!("CARGO_BIN_EXE_microseed"),
            s(&sc.cluster()),
        ],
    )
}

#[test]
fn mount_points_at_or_inside_the_output_are_never_emptied() {
    let sc = Scratch::new(&pxe_cluster());
    let script = r#"set -u
d="$1"; bin="$2"; cluster="$3"
fail() { echo "FAIL: $*"; exit 1; }
"$bin" build "$cluster" -o "$d/out" --format dir >/dev/null || fail "first build"
# A filesystem mounted in the output, at any depth, even with --force.
for at in data "master/my data" pxe/boot; do
  mkdir -p "$d/out/$at"
  mount -t tmpfs -o size=1m tmpfs "$d/out/$at" || fail "mount"
  echo keep > "$d/out/$at/file"
  for force in "" --force; do
    "$bin" build "$cluster" -o "$d/out" --format dir $force 2>"$d/err"; rc=$?
    [ "$rc" = 2 ] || fail "$at $force: rc $rc"
    grep -q "$d/out/$at is a mount point inside the output" "$d/err" || fail "$at: $(cat "$d/err")"
    [ "$(cat "$d/out/$at/file")" = keep ] || fail "$at emptied"
  done
  umount "$d/out/$at"; rmdir "$d/out/$at" 2>/dev/null || true
done
# The output itself a mount point, even empty.
mkdir -p "$d/mnt"; mount -t tmpfs -o size=1m tmpfs "$d/mnt"
"$bin" build "$cluster" -o "$d/mnt" --format dir 2>"$d/err"; rc=$?
[ "$rc" = 2 ] || fail "mount point -o: rc $rc"
grep -q "is a mount point; .*give a directory inside it, such as -o $d/mnt/seeds" "$d/err" || fail "$(cat "$d/err")"
[ -z "$(ls -A "$d/mnt")" ] || fail "wrote into the mount point"
# Inside it is fine.
"$bin" build "$cluster" -o "$d/mnt/seeds" --format dir >/dev/null 2>"$d/err" || fail "inside: $(cat "$d/err")"
echo ok
"#;
    let o = in_mount_namespace(&sc, script);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn pxe_files_the_user_copied_in_survive_a_rebuild_without_pxe() {
    let sc = Scratch::new(&pxe_cluster());
    let o = sc.build(&["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    assert!(o.status.success(), "{}", text(&o).1);
    let pxe = sc.out().join("pxe");
    // pxe/tftp is a symbolic link to loaders kept elsewhere.
    let loaders = sc.dir.path().join("loaders");
    std::fs::create_dir_all(&loaders).expect("mkdir");
    std::os::unix::fs::symlink(&loaders, pxe.join("tftp")).expect("symlink");
    let mine = [
        ("boot/vmlinuz", "kernel"),
        ("boot/initrd", "initrd"),
        ("iso/ubuntu.iso", "iso"),
        ("tftp/grub/x86_64-efi/normal.mod", "module"),
    ];
    for (rel, body) in mine {
        let p = pxe.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, body).expect("write");
    }
    for formats in ["dir", "seed-img", "dir,pxe", "dir"] {
        let mut args = vec!["--format", formats];
        if formats.contains("pxe") {
            args.extend(["--pxe-url", PXE_URL]);
        }
        let o = sc.build(&args);
        assert!(o.status.success(), "{formats}: {}", text(&o).1);
        for (rel, body) in mine {
            assert_eq!(
                std::fs::read_to_string(pxe.join(rel)).ok().as_deref(),
                Some(body),
                "pxe/{rel} lost by a --format {formats} rebuild"
            );
        }
        assert_eq!(
            std::fs::read_link(pxe.join("tftp")).ok(),
            Some(loaders.clone()),
            "the pxe/tftp link was not kept"
        );
        // The rest of the tree is exactly what the manifest lists.
        let o = bin().arg("verify").arg(sc.out()).output().expect("verify");
        assert!(o.status.success(), "{formats}: {:?}", text(&o));
        let o = std::process::Command::new("sha256sum")
            .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
            .current_dir(sc.out())
            .output()
            .expect("sha256sum");
        assert!(o.status.success(), "{formats}: {:?}", text(&o));
    }
}

#[test]
fn an_iso_kept_in_pxe_iso_can_feed_the_installer_format() {
    // docs/pxe.md has the user copy the ISO into out/pxe/iso/; building the
    // sticks from that copy must neither be refused nor lose it.
    let sc = Scratch::new(&pxe_cluster());
    let o = sc.build(&["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    assert!(o.status.success(), "{}", text(&o).1);
    let iso = sc.out().join("pxe/iso/ubuntu.iso");
    std::fs::create_dir_all(iso.parent().expect("parent")).expect("mkdir");
    std::fs::copy(iso_common::fixture(iso_common::Fixture::Focal), &iso).expect("copy iso");
    let bytes = std::fs::read(&iso).expect("read");
    let o = sc.build(&[
        "--format",
        "dir,installer",
        "--machine",
        "worker-1",
        "--iso",
        s(&iso),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(sc.out().join("installer.img").is_file());
    assert_eq!(std::fs::read(&iso).expect("read"), bytes, "the ISO changed");
    // Elsewhere in the output it is refused: a rebuild would delete it.
    let stray = sc.out().join("ubuntu.iso");
    std::fs::copy(&iso, &stray).expect("copy");
    let o = sc.build(&["--format", "installer", "--iso", s(&stray)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    assert!(text(&o).1.contains("holds --iso"), "{}", text(&o).1);
    assert!(stray.is_file());
}

/// Names beside OUT that look like microseed's staging or `--check` trees.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.tmp-") || n.starts_with(".out.check-"))
        .collect();
    v.sort();
    v
}

/// microseed run as the unprivileged user `nobody` (the tests run as root,
/// for whom no permission is ever missing).
fn as_nobody(args: &[&str]) -> Output {
    common::fixed_env(&mut std::process::Command::new("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_microseed"))
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

fn chown_tree(dir: &Path, uid: u32) {
    let o = common::run("chown", &["-R", &format!("{uid}:{uid}"), s(dir)]);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn an_output_made_read_only_is_replaced_and_the_old_tree_removed() {
    // In /tmp: nobody must reach the cluster file whatever TMPDIR is
    // (scripts/test.sh gives the tests a private one).
    let sc = Scratch::with_prefix(common::EXAMPLE, "ms-nobody-");
    chown_tree(sc.dir.path(), 65534);
    let (cluster, out) = (sc.cluster(), sc.out());
    let build = |extra: &[&str]| {
        let mut args = vec!["build", s(&cluster), "-o", s(&out), "--format", "dir"];
        args.extend_from_slice(extra);
        as_nobody(&args)
    };
    let o = build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    // What users do to protect an output from themselves.
    let o = common::run(
        "setpriv",
        &[
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "chmod",
            "-R",
            "a-w",
            s(&out),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(
        leftovers(sc.dir.path()),
        Vec::<String>::new(),
        "{}",
        text(&o).1
    );
    let o = build(&[]);
    assert!(o.status.success(), "a later build: {}", text(&o).1);

    // A tree it cannot remove (root's directory inside, kept with --force):
    // an error naming it, the new output in place, and later builds work.
    let theirs = out.join("master/roots");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::fs::write(theirs.join("file"), "root's").expect("write");
    let o = build(&["--force"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the new output is in place"), "{err}");
    assert!(err.contains("delete it by hand"), "{err}");
    let left = leftovers(sc.dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        err.contains(&left[0]),
        "the message names another tree: {err}"
    );
    assert!(
        !out.join("master/roots").exists(),
        "the old tree is still OUT"
    );
    let o = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "--quiet", "SHA256SUMS"])
        .current_dir(&out)
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "{:?}", text(&o));
    let o = build(&[]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "a build after a failed removal: {err}");
    assert!(err.contains("warning: cannot remove"), "{err}");
}

#[test]
fn an_output_named_with_a_trailing_dot_or_slash_is_that_directory() {
    let sc = Scratch::example();
    for (given, dir) in [
        ("newdir1/.", "newdir1"),
        ("newdir2/", "newdir2"),
        ("./newdir3/./", "newdir3"),
    ] {
        let o = bin()
            .arg("build")
            .arg(sc.cluster())
            .args(["-o", given, "--format", "dir"])
            .current_dir(sc.dir.path())
            .output()
            .expect("run");
        assert!(o.status.success(), "{given}: {}", text(&o).1);
        assert!(
            sc.dir.path().join(dir).join("SHA256SUMS").is_file(),
            "{given}"
        );
        // Built again, replaced in place.
        let o = bin()
            .arg("build")
            .arg(sc.cluster())
            .args(["-o", given, "--format", "dir"])
            .current_dir(sc.dir.path())
            .output()
            .expect("run");
        assert!(o.status.success(), "{given} again: {}", text(&o).1);
    }
    let stray: Vec<String> = std::fs::read_dir(sc.dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(stray.is_empty(), "staging trees left: {stray:?}");
}

fn paused_build(sc: &Scratch, extra: &[&str]) -> common::Paused {
    let mut c = bin();
    c.arg("build")
        .arg(sc.cluster())
        .arg("-o")
        .arg(sc.out())
        .args(extra);
    common::Paused::start(c, "before-swap")
}

#[test]
fn what_changes_in_the_output_during_a_build_is_checked_again_at_the_swap() {
    let sc = Scratch::new(&pxe_cluster());
    let o = sc.build(&["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    assert!(o.status.success(), "{}", text(&o).1);
    std::fs::create_dir_all(sc.out().join("pxe/boot")).expect("mkdir");
    std::fs::write(sc.out().join("pxe/boot/old.efi"), "carried").expect("write");

    // A file of the user's, put in while the build ran: not deleted.
    let run = paused_build(&sc, &["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    std::fs::write(sc.out().join("notes.txt"), "mine").expect("write");
    let (st, err) = run.resume();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("holds files microseed did not write (notes.txt"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(sc.out().join("notes.txt")).expect("kept"),
        "mine"
    );
    assert_eq!(leftovers(sc.dir.path()), Vec::<String>::new(), "{err}");
    std::fs::remove_file(sc.out().join("notes.txt")).expect("rm");

    // A boot file copied in after the old ones were carried over.
    let run = paused_build(&sc, &["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    std::fs::write(sc.out().join("pxe/boot/new.efi"), "late").expect("write");
    let (st, err) = run.resume();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("changed during the build (pxe/boot/new.efi"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(sc.out().join("pxe/boot/new.efi")).expect("kept"),
        "late"
    );

    // Unchanged, the same build goes through and keeps both.
    let run = paused_build(&sc, &["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    let (st, err) = run.resume();
    assert!(st.success(), "{err}");
    assert!(
        sc.out().join("pxe/boot/old.efi").is_file() && sc.out().join("pxe/boot/new.efi").is_file()
    );
}

#[test]
fn a_filesystem_mounted_in_the_output_during_a_build_is_never_emptied() {
    let sc = Scratch::example();
    let script = r#"set -u
d="$1"; bin="$2"; cluster="$3"
fail() { echo "FAIL: $*"; exit 1; }
"$bin" build "$cluster" -o "$d/out" --format dir >/dev/null || fail "first build"
mkdir "$d/out/data"
for force in "" --force; do
  rm -f "$d/resume"
  MICROSEED_TEST_PAUSE=before-swap MICROSEED_TEST_RESUME="$d/resume" \
    "$bin" build "$cluster" -o "$d/out" --format dir $force >/dev/null 2>"$d/err" &
  pid=$!
  for _ in $(seq 300); do grep -q "paused at before-swap" "$d/err" && break; sleep 0.1; done
  grep -q "paused at before-swap" "$d/err" || fail "never paused: $(cat "$d/err")"
  mount -t tmpfs -o size=1m tmpfs "$d/out/data" || fail mount
  echo keep > "$d/out/data/file"
  touch "$d/resume"
  wait $pid; rc=$?
  [ "$rc" = 2 ] || fail "$force: rc $rc: $(cat "$d/err")"
  grep -q "$d/out/data is a mount point inside the output" "$d/err" || fail "$(cat "$d/err")"
  [ "$(cat "$d/out/data/file")" = keep ] || fail "emptied"
  umount "$d/out/data"
done
ls -A "$d" | grep -q '^\.out\.tmp-' && fail "left: $(ls -A "$d")"
echo ok
"#;
    let o = in_mount_namespace(&sc, script);
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn a_users_directories_named_like_leftovers_are_never_swept() {
    let sc = Scratch::example();
    let o = sc.build(&["--format", "dir"]);
    assert!(o.status.success(), "{}", text(&o).1);
    // A copy of the output, kept under names microseed's own trees have.
    let mut kept = Vec::new();
    for name in [
        ".out.tmp-backup",
        ".out.check-latest",
        ".out.tmp-abc123-dying",
    ] {
        let d = sc.dir.path().join(name);
        let o = common::run("cp", &["-a", s(&sc.out()), s(&d)]);
        assert!(o.status.success(), "{:?}", text(&o));
        kept.push((d.clone(), snapshot(&d)));
    }
    for extra in [&[][..], &["--check"][..]] {
        let o = sc.build(extra);
        let (_, err) = text(&o);
        assert!(o.status.success(), "{err}");
        assert!(!err.contains("left by an interrupted run"), "{err}");
    }
    for (d, before) in kept {
        assert_eq!(snapshot(&d), before, "{} was touched", d.display());
    }
}

/// Runs `build -o OUT`, failing the test if it takes more than 30 s.
fn build_within_30s(sc: &Scratch) -> Output {
    let mut child = bin()
        .arg("build")
        .arg(sc.cluster())
        .arg("-o")
        .arg(sc.out())
        .args(["--format", "dir"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            let o = child.wait_with_output().expect("wait");
            panic!("build hung: {}", text(&o).1);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("wait")
}

#[test]
fn a_manifest_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let sc = Scratch::example();
    let o = sc.build(&["--format", "dir"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let manifest = sc.out().join("SHA256SUMS");
    let fifo = |p: &Path| {
        let o = common::run("mkfifo", &[s(p)]);
        assert!(o.status.success(), "{:?}", text(&o));
    };
    let zero = |p: &Path| std::os::unix::fs::symlink("/dev/zero", p).expect("symlink");
    for (what, make) in [
        ("FIFO", &fifo as &dyn Fn(&Path)),
        ("link to /dev/zero", &zero),
    ] {
        std::fs::remove_file(&manifest).expect("rm");
        make(&manifest);
        let o = build_within_30s(&sc);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("SHA256SUMS"), "{what}: {err}");
        assert!(
            std::fs::symlink_metadata(&manifest).is_ok(),
            "{what}: the output was replaced"
        );
    }
}
