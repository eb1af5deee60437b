//! `--iso` must be Ubuntu's installer ISO as released: an image microseed
//! already made (a CIDATA partition, or boot configs that already say
//! `autoinstall`) is refused naming what was found, for both ISO layouts,
//! and files that are not ISOs get accurate messages. Nothing is written.

use crate::common;
use crate::iso_common;

use std::path::Path;

use common::{Scratch, text};
use iso_common::{Fixture, fixture};

fn build_with_iso(s: &Scratch, iso: &Path, out: &Path) -> std::process::Output {
    common::bin()
        .arg("build")
        .arg(s.cluster())
        .arg("-o")
        .arg(out)
        .args(["--format", "installer", "--machine", "master", "--iso"])
        .arg(iso)
        .output()
        .expect("run microseed")
}

#[test]
fn an_installer_image_given_as_iso_is_refused_naming_its_seed() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let s = Scratch::new(fx.example_cluster());
        let first = s.dir.path().join("first");
        let o = build_with_iso(&s, &fixture(fx), &first);
        assert!(o.status.success(), "{fx:?}: {}", text(&o).1);
        let img = first.join("installer.img");

        let again = s.dir.path().join("again");
        let o = build_with_iso(&s, &img, &again);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{fx:?}: {err}");
        assert!(err.contains("--iso"), "{err}");
        assert!(err.contains("labelled CIDATA"), "{fx:?}: {err}");
        assert!(err.contains("partition"), "{err}");
        assert!(!again.exists(), "{fx:?}: output written");

        // With the seed's label changed, the patched boot configs still
        // give it away.
        let relabelled = s.dir.path().join("relabelled.img");
        std::fs::copy(&img, &relabelled).expect("copy");
        let o = common::run(
            "mlabel",
            &[
                "-i",
                &format!("{}@@{}", relabelled.display(), cidata_offset(&img)),
                "::OTHER",
            ],
        );
        assert!(o.status.success(), "mlabel: {:?}", text(&o));
        let o = build_with_iso(&s, &relabelled, &again);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{fx:?}: {err}");
        assert!(
            err.contains("already boots the installer with `autoinstall`"),
            "{fx:?}: {err}"
        );
        assert!(!again.exists());
    }
}

#[test]
fn an_iso_of_another_release_is_refused_naming_both_before_anything_is_written() {
    for (cluster, iso) in [
        (Fixture::Focal, Fixture::Noble),
        (Fixture::Noble, Fixture::Focal),
        (Fixture::Jammy, Fixture::Noble),
    ] {
        let s = Scratch::new(cluster.example_cluster());
        // No secrets yet: a refused build must not create them either.
        std::fs::remove_file(s.dir.path().join("secrets.yaml")).expect("rm secrets");
        let out = s.dir.path().join("out");
        let o = build_with_iso(&s, &fixture(iso), &out);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{cluster:?} with {iso:?}: {err}");
        let want = format!(
            "is Ubuntu {} according to its .disk/info, but the cluster file's release is {} \
             (.disk/info \"Ubuntu-Server {} LTS",
            iso.release(),
            cluster.release(),
            iso.release()
        );
        assert!(err.contains(&want), "{cluster:?} with {iso:?}: {err}");
        assert!(err.contains("--iso"), "{err}");
        assert!(!out.exists(), "output written");
        assert!(
            !s.dir.path().join("secrets.yaml").exists(),
            "secrets created for a refused build"
        );
    }
    // The matching release builds.
    let s = Scratch::new(Fixture::Noble.example_cluster());
    let o = build_with_iso(&s, &fixture(Fixture::Noble), &s.out());
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn an_iso_naming_no_ubuntu_release_is_refused() {
    // The 20.04 stand-in with .disk/info and the volume ID overwritten in
    // place (same lengths): an ISO 9660 image that is no Ubuntu release.
    let s = Scratch::example();
    let mut bytes = std::fs::read(fixture(Fixture::Focal)).expect("fixture");
    for (from, to) in [
        (
            &b"Ubuntu-Server 20.04 LTS \"Focal"[..],
            &b"Debian-Server 12.x5 LTS \"Focal"[..],
        ),
        (
            &b"Ubuntu-Server 20.04 LTS amd64"[..],
            &b"Debian-Server 12.x5 LTS amd64"[..],
        ),
    ] {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from)
            .expect("string in the stand-in");
        bytes[at..at + to.len()].copy_from_slice(to);
    }
    let iso = s.dir.path().join("other.iso");
    std::fs::write(&iso, &bytes).expect("write");
    let out = s.dir.path().join("out");
    let o = build_with_iso(&s, &iso, &out);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("names no Ubuntu release"), "{err}");
    assert!(err.contains("Debian-Server 12.x5"), "{err}");
    assert!(!out.exists());
}

/// Byte offset of the seed partition (the last one), per sfdisk.
fn cidata_offset(img: &Path) -> u64 {
    let o = common::run("sfdisk", &["--json", img.to_str().expect("utf8")]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("sfdisk json");
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions");
    let last = parts
        .iter()
        .max_by_key(|p| p["start"].as_u64().unwrap_or(0))
        .expect("a partition");
    last["start"].as_u64().expect("start") * 512
}

#[test]
fn files_that_are_not_isos_get_accurate_messages() {
    let s = Scratch::example();
    let empty = s.dir.path().join("empty.iso");
    std::fs::write(&empty, b"").expect("write");
    let truncated = s.dir.path().join("truncated.iso");
    let iso = std::fs::read(fixture(Fixture::Focal)).expect("fixture");
    std::fs::write(&truncated, &iso[..iso.len() / 2 + 100]).expect("write");
    let out = s.dir.path().join("out");
    for (path, says, code) in [
        (s.dir.path().to_path_buf(), "is a directory", 2),
        (
            Path::new("/dev/null").to_path_buf(),
            "is a character device",
            2,
        ),
        (s.dir.path().join("missing.iso"), "no such file", 2),
        (empty, "is empty", 2),
        (truncated, "a truncated download", 2),
    ] {
        let o = build_with_iso(&s, &path, &out);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{}: {err}", path.display());
        assert!(err.contains(says), "{}: {err}", path.display());
        assert!(!err.contains("whole number of sectors"), "{err}");
        assert!(!out.exists(), "{}: output written", path.display());
    }
}

#[test]
fn an_iso_truncated_during_the_build_is_an_error_not_a_crash() {
    let s = Scratch::example();
    let iso = s.dir.path().join("ubuntu.iso");
    std::fs::copy(fixture(Fixture::Focal), &iso).expect("copy");
    let out = s.dir.path().join("out");
    let mut cmd = common::bin();
    cmd.arg("build")
        .arg(s.cluster())
        .arg("-o")
        .arg(&out)
        .args(["--format", "installer", "--machine", "master", "--iso"])
        .arg(&iso);
    // Planned (its size read, its files found), then cut in half.
    let run = common::Paused::start(cmd, "installer-planned");
    let len = std::fs::metadata(&iso).expect("stat").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&iso)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    let (st, err) = run.resume();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), None, "killed by a signal: {err}");
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(!out.exists(), "an output was written");
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".out.tmp-"))
        .collect();
    assert!(left.is_empty(), "staging left: {left:?}");
}
