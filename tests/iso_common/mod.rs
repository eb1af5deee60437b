//! Shared helpers for the installer-image tests: the stand-in ISO fixtures
//! (built once by scripts/recipes/standin-iso.sh, cached), running tools.
#![allow(dead_code)]

use microseed::iso::{DEFAULT_BOOT_CONFIGS, InstallerReport, make_installer_image};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub const EPOCH: i64 = 1_700_000_000;
pub const SEED: &[(&str, &[u8])] = &[
    ("meta-data", b"instance-id: node-1\nlocal-hostname: node-1\n"),
    (
        "user-data",
        b"#cloud-config\nautoinstall:\n  version: 1\n  identity: {hostname: node-1, username: u, password: x}\n",
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// Ubuntu 20.04's layout: isolinux + GRUB, hybrid MBR.
    Focal,
    /// Ubuntu 22.04's layout: GRUB only, GPT with an appended EFI partition.
    Jammy,
    /// The 22.04 layout (24.04 kept it), saying 24.04 in `.disk/info` and
    /// its volume ID.
    Noble,
}

impl Fixture {
    /// The example cluster file of the ISO's release.
    pub fn example_cluster(self) -> &'static str {
        match self {
            Fixture::Focal => include_str!("../../examples/eth2-staking/cluster.yaml"),
            Fixture::Jammy => include_str!("../../examples/eth2-staking-22.04/cluster.yaml"),
            Fixture::Noble => include_str!("../../examples/eth2-staking-24.04/cluster.yaml"),
        }
    }

    /// The release the ISO says it is, as a cluster file names it.
    pub fn release(self) -> &'static str {
        match self {
            Fixture::Focal => "20.04",
            Fixture::Jammy => "22.04",
            Fixture::Noble => "24.04",
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("MICROSEED_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/microseed-test"))
}

/// The stand-in ISO of a layout, built on first use (the script caches it).
pub fn fixture(fx: Fixture) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = cache_dir().join("standin-iso");
        let script = repo().join("scripts/recipes/standin-iso.sh");
        let st = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .status()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(st.success(), "{} failed: {st}", script.display());
        dir
    });
    dir.join(match fx {
        Fixture::Focal => "ubuntu2004-standin.iso",
        Fixture::Jammy => "ubuntu2204-standin.iso",
        Fixture::Noble => "ubuntu2404-standin.iso",
    })
}

/// A patched copy of a fixture in a fresh temp dir.
pub fn patched(fx: Fixture) -> (tempfile::TempDir, PathBuf, InstallerReport) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("installer.img");
    let report = make_installer_image(&fixture(fx), &out, SEED, DEFAULT_BOOT_CONFIGS, EPOCH)
        .unwrap_or_else(|e| panic!("patching {fx:?}: {e:#}"));
    (dir, out, report)
}

/// Run a tool; (success, stdout, stderr). A missing tool fails the test.
pub fn run(tool: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("{tool} could not be run ({e}); install it (scripts/deps/installer.apt)")
    });
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub fn run_ok(tool: &str, args: &[&str]) -> String {
    let (ok, out, err) = run(tool, args);
    assert!(ok, "{tool} {args:?} failed:\n{out}\n{err}");
    out
}

/// A file from the image's ISO 9660 tree, read by xorriso.
pub fn extract(img: &Path, path: &str, scratch: &Path) -> String {
    let to = scratch.join(format!("x-{}", path.replace('/', "_")));
    let _ = std::fs::remove_file(&to);
    run_ok(
        "xorriso",
        &[
            "-indev",
            img.to_str().unwrap(),
            "-osirrox",
            "on",
            "-extract",
            &format!("/{path}"),
            to.to_str().unwrap(),
        ],
    );
    let text = std::fs::read_to_string(&to).unwrap();
    let _ = std::fs::remove_file(&to);
    text
}

pub fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(data))
}

/// The cluster stick `build --format installer` makes from `cluster` (every
/// machine; the test secrets) and the ISO `iso`, in `dir`: its image path.
pub fn cli_stick(cluster: &str, iso: &Path, dir: &Path) -> PathBuf {
    let c = dir.join("c");
    std::fs::create_dir_all(&c).expect("mkdir");
    std::fs::write(c.join("cluster.yaml"), cluster).expect("cluster");
    let secrets = c.join("secrets.yaml");
    std::fs::write(&secrets, include_str!("../fixtures/secrets.yaml")).expect("secrets");
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let o = crate::common::bin()
        .arg("build")
        .arg(c.join("cluster.yaml"))
        .arg("-o")
        .arg(dir.join("out"))
        .args(["--format", "installer", "--iso"])
        .arg(iso)
        .output()
        .expect("run microseed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    dir.join("out/installer.img")
}

/// The 20.04 stand-in remastered (xorriso, its boot setup replayed) with a
/// menu UI in front of isolinux, as Ubuntu's 20.04 ISO has (gfxboot, with
/// vesamenu behind it): syslinux's text `menu.c32`, which lists each
/// entry's `menu label` and takes arrow keys, and a 30 s timeout to type
/// in. The stand-in itself boots its default entry at once.
pub fn focal_with_isolinux_menu(dir: &Path) -> PathBuf {
    let cfg = dir.join("isolinux.cfg");
    std::fs::write(
        &cfg,
        "ui menu.c32\ninclude txt.cfg\nprompt 0\ntimeout 300\n",
    )
    .expect("cfg");
    let out = dir.join("focal-menu.iso");
    let modules = Path::new("/usr/lib/syslinux/modules/bios");
    run_ok(
        "xorriso",
        &[
            "-indev",
            fixture(Fixture::Focal).to_str().unwrap(),
            "-outdev",
            out.to_str().unwrap(),
            "-boot_image",
            "any",
            "replay",
            "-map",
            cfg.to_str().unwrap(),
            "/isolinux/isolinux.cfg",
            "-map",
            modules.join("menu.c32").to_str().unwrap(),
            "/isolinux/menu.c32",
            "-map",
            modules.join("libutil.c32").to_str().unwrap(),
            "/isolinux/libutil.c32",
        ],
    );
    out
}
