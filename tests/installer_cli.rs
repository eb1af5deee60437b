//! `build --format installer` end to end: the CLI patches the installer ISO
//! (given with --iso, or downloaded for the release into the cache) and the
//! stick image carries exactly the machine's built seed.

use crate::common;
use crate::iso_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Scratch, text};
use iso_common::{Fixture, fixture};
use sha2::{Digest, Sha256};

fn mcopy(img: &std::path::Path, offset: u64, name: &str) -> Vec<u8> {
    let target = format!("{}@@{offset}", img.display());
    let o = common::run("mcopy", &["-n", "-i", &target, &format!("::{name}"), "-"]);
    assert!(o.status.success(), "{}", text(&o).1);
    o.stdout
}

/// Byte offset of the partition labelled CIDATA, per sfdisk.
fn cidata_offset(img: &std::path::Path) -> u64 {
    let o = common::run("sfdisk", &["--json", img.to_str().expect("utf8")]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("sfdisk json");
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions");
    let sector = v["partitiontable"]["sectorsize"].as_u64().unwrap_or(512);
    // The seed is the last partition microseed appended.
    let last = parts
        .iter()
        .max_by_key(|p| p["start"].as_u64().unwrap_or(0))
        .expect("a partition");
    last["start"].as_u64().expect("start") * sector
}

/// What PyYAML (subiquity's parser) reads from a file on the stick.
fn stick_yaml(img: &std::path::Path, offset: u64, name: &str) -> serde_json::Value {
    let t = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(t.path(), mcopy(img, offset, name)).expect("write");
    common::pyyaml(t.path())
}

#[test]
fn installer_format_writes_one_stick_holding_every_machines_autoinstall() {
    let iso = fixture(Fixture::Focal);
    let s = Scratch::example();
    let args = [
        "--format",
        "dir,installer",
        "--iso",
        iso.to_str().expect("utf8"),
    ];
    let o = s.build(&args);
    assert!(o.status.success(), "{}", text(&o).1);
    let img = s.out().join("installer.img");
    for m in ["nfs", "master", "worker-1"] {
        assert!(!s.out().join(m).join("installer.img").exists(), "{m}");
    }
    let off = cidata_offset(&img);
    // The selector: nothing but early-commands, which run select.sh.
    let ud = stick_yaml(&img, off, "user-data");
    let ai = ud["autoinstall"].as_object().expect("autoinstall");
    assert_eq!(
        ai.keys().collect::<Vec<_>>(),
        ["early-commands", "version"],
        "{ud}"
    );
    assert_eq!(
        mcopy(&img, off, "microseed/select.sh"),
        include_bytes!("../src/install/select.sh")
    );
    for m in ["nfs", "master", "worker-1"] {
        // Each machine's autoinstall document is its seed's `autoinstall:`.
        let built = common::pyyaml(&s.out().join(m).join("user-data"));
        let on_stick = stick_yaml(
            &img,
            off,
            &format!("microseed/machines/{m}/autoinstall.yaml"),
        );
        assert_eq!(on_stick, built["autoinstall"], "{m}");
        let env = String::from_utf8(mcopy(
            &img,
            off,
            &format!("microseed/machines/{m}/select.env"),
        ))
        .expect("utf8");
        assert!(env.contains(&format!("NAME='{m}'\n")), "{env}");
    }
    let menu = String::from_utf8(mcopy(&img, off, "microseed/grub.cfg")).expect("utf8");
    assert!(
        menu.contains("menuentry 'Install worker-1 (172.20.10.12): ERASES its disk'"),
        "{menu}"
    );
    assert!(menu.contains("'microseed.reinstall=worker-1'"), "{menu}");
    // One image of the ISO's size plus the seeds (1 MiB alignment, a backup
    // GPT; the 20.04 stand-in ends on 1 MiB, so its moved isolinux menu,
    // placed after the ISO, pushes the seed partition 1 MiB further).
    let iso_len = std::fs::metadata(&iso).expect("iso").len();
    let img_len = std::fs::metadata(&img).expect("img").len();
    assert!(
        img_len > iso_len && img_len - iso_len < (3 << 20) + (256 << 10),
        "{iso_len} {img_len}"
    );
    let sums = std::fs::read_to_string(s.out().join("SHA256SUMS")).expect("sums");
    let digest = hex::encode(Sha256::digest(std::fs::read(&img).expect("img")));
    assert!(
        sums.contains(&format!("{digest}  installer.img\n")),
        "{sums}"
    );
    let o = common::bin()
        .args(["verify", s.out().to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(o.status.success(), "verify: {:?}", text(&o));
    let first = std::fs::read(&img).expect("img");
    let o = s.build(&args);
    assert!(o.status.success());
    assert!(
        first == std::fs::read(&img).expect("img"),
        "rebuild differs"
    );
    // A --machine build: a stick for that machine alone.
    let o = s.build(&[
        "--format",
        "installer",
        "--iso",
        iso.to_str().expect("utf8"),
        "--machine",
        "worker-1",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let env = common::run(
        "mdir",
        &[
            "-b",
            "-i",
            &format!("{}@@{}", img.display(), cidata_offset(&img)),
            "::microseed/machines",
        ],
    );
    let listed = text(&env).0;
    assert!(
        listed.contains("worker-1") && !listed.contains("master"),
        "{listed}"
    );
}

#[test]
fn installer_format_refuses_the_cloud_image_target_and_a_missing_iso() {
    let s = Scratch::example();
    let o = s.build(&[
        "--format",
        "installer",
        "--target",
        "cloud-image",
        "--iso",
        "/etc/hostname",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    let o = s.build(&["--format", "installer", "--iso", "/nonexistent.iso"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    assert!(text(&o).1.contains("/nonexistent.iso"));
    assert!(!s.out().exists());
}

#[test]
fn installer_iso_is_downloaded_once_per_release_into_the_cache() {
    // A local server stands in for releases.ubuntu.com; a profile overlay
    // points the 20.04 release at it.
    let iso_bytes = std::fs::read(fixture(Fixture::Focal)).expect("fixture");
    let name = "ubuntu-20.04.6-live-server-amd64.iso";
    let digest = hex::encode(Sha256::digest(&iso_bytes));
    let sums = format!("{digest}  *{name}\n");
    let server = tiny_http::Server::http("127.0.0.1:0").expect("server");
    let port = server.server_addr().to_ip().expect("ip").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let body = if req.url().ends_with("SHA256SUMS") {
                sums.clone().into_bytes()
            } else {
                h.fetch_add(1, Ordering::SeqCst);
                iso_bytes.clone()
            };
            let _ = req.respond(tiny_http::Response::from_data(body));
        }
    });
    let s = Scratch::example();
    let profiles = s.dir.path().join("profiles/releases");
    std::fs::create_dir_all(&profiles).expect("mkdir");
    let release = std::fs::read_to_string(common::root().join("profiles/releases/20.04.yaml"))
        .expect("profile")
        .replace(
            "https://releases.ubuntu.com/20.04.6/",
            &format!("http://127.0.0.1:{port}/"),
        )
        // The stand-in is pinned in place of Ubuntu's ISO.
        .replace(
            "b8f31413336b9393ad5d8ef0282717b2ab19f007df2e9ed5196c13d8f9153c8b",
            &digest,
        );
    std::fs::write(profiles.join("20.04.yaml"), release).expect("write");
    let cache = s.dir.path().join("cache");
    for _ in 0..2 {
        let o = common::bin()
            .arg("--profiles")
            .arg(s.dir.path().join("profiles"))
            .arg("build")
            .arg(s.cluster())
            .arg("-o")
            .arg(s.out())
            .args([
                "--format",
                "installer",
                "--machine",
                "master",
                "--cache-dir",
            ])
            .arg(&cache)
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", text(&o).1);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the verified ISO was fetched again"
    );
    assert!(cache.join(name).exists());
    assert!(s.out().join("installer.img").exists());
}

/// The image's sha256 as `SHA256SUMS` records it, and as its bytes give it.
fn recorded_and_real_sha256(s: &Scratch) -> (String, String) {
    let sums = std::fs::read_to_string(s.out().join("SHA256SUMS")).expect("sums");
    let recorded = sums
        .lines()
        .find_map(|l| l.strip_suffix("  installer.img"))
        .expect("installer.img in SHA256SUMS")
        .to_string();
    let real = hex::encode(Sha256::digest(
        std::fs::read(s.out().join("installer.img")).expect("img"),
    ));
    (recorded, real)
}

fn hash_states(cache: &std::path::Path) -> usize {
    std::fs::read_dir(cache.join("hash-states"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn a_rebuilt_stick_resumes_the_image_hash_and_its_sum_still_matches_its_bytes() {
    let s = Scratch::example();
    // The ISO in the scratch dir, so rewriting it does not touch the fixture.
    let iso = s.dir.path().join("ubuntu.iso");
    std::fs::copy(fixture(Fixture::Focal), &iso).expect("copy");
    let cache = s.dir.path().join("cache");
    let build = || {
        let o = s.build(&[
            "--format",
            "installer",
            "--iso",
            iso.to_str().expect("utf8"),
            "--cache-dir",
            cache.to_str().expect("utf8"),
        ]);
        assert!(o.status.success(), "{}", text(&o).1);
        recorded_and_real_sha256(&s)
    };
    let (first, real) = build();
    assert_eq!(first, real);
    assert_eq!(
        hash_states(&cache),
        1,
        "the state at the seed partition is saved"
    );
    // Changed seeds (another time zone, in every machine's seed and in no
    // boot menu): the ISO part and the partition tables are the same, so
    // the saved state is used, and the recorded sum must still be that of
    // the new bytes. (A new name or address changes the 20.04 stick's
    // isolinux menu, inside the ISO part: that rebuild hashes in full.)
    let cluster = std::fs::read_to_string(s.cluster()).expect("cluster");
    assert!(cluster.contains("timezone: America/Los_Angeles"));
    std::fs::write(
        s.cluster(),
        cluster.replace("timezone: America/Los_Angeles", "timezone: Europe/Berlin"),
    )
    .expect("write");
    let (second, real) = build();
    assert_eq!(second, real);
    assert_ne!(second, first, "the seed changed");
    assert_eq!(hash_states(&cache), 1, "resumed: no new state");
    // The state is owner-only, like the rest of the cache.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(cache.join("hash-states"))
            .expect("dir")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    // The ISO rewritten with other bytes in place (same size, same path,
    // same inode): the saved state no longer applies.
    let mut bytes = std::fs::read(&iso).expect("iso");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&iso, &bytes).expect("rewrite");
    let (third, real) = build();
    assert_eq!(third, real, "a stale state was used for a changed ISO");
    assert_eq!(hash_states(&cache), 2);
}
