//! The cluster stick's selector, `microseed/select.sh`, run from a stick
//! microseed built (its CIDATA partition copied out with mtools) against a
//! fake machine: sysfs NICs, and `lsblk`, `udevadm`, `ethtool`, `ip` stand-ins
//! on PATH that describe its disks. The disk that already holds this
//! cluster's system is a real ext4 filesystem on a loop device, which the
//! script mounts read-only itself. The installer's own run of the hook is
//! the subiquity tier (docs/stick.md).

use crate::common;
use crate::iso_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Scratch, text};
use iso_common::{Fixture, fixture};

/// The example cluster with MACs on master and worker-1, worker-1's disk
/// named by serial.
fn cluster() -> String {
    common::pxe_cluster().replace(
        "    mac: 52:54:00:AB:CD:12\n",
        "    mac: 52:54:00:AB:CD:12\n    disk:\n      serial: WD-0042\n",
    )
}

/// The stick's CIDATA files, as built, in a directory.
fn stick() -> (Scratch, PathBuf) {
    let s = Scratch::new(&cluster());
    let iso = fixture(Fixture::Focal);
    let o = s.build(&[
        "--format",
        "installer",
        "--iso",
        iso.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let img = s.out().join("installer.img");
    let o = common::run("sfdisk", &["--json", img.to_str().expect("utf8")]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("sfdisk json");
    let start = v["partitiontable"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter_map(|p| p["start"].as_u64())
        .max()
        .expect("a partition");
    let dir = s.dir.path().join("stick");
    fs::create_dir(&dir).expect("mkdir");
    let o = common::run(
        "mcopy",
        &[
            "-s",
            "-n",
            "-i",
            &format!("{}@@{}", img.display(), start * 512),
            "::microseed",
            dir.to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "mcopy: {:?}", text(&o));
    (s, dir.join("microseed"))
}

/// A fake machine: NICs in a sysfs tree, disks behind stand-in tools.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Machine {
        let dir = tempfile::tempdir().expect("tmp");
        for d in ["sys/class/net", "bin", "serials", "run"] {
            fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        fs::write(
            dir.path().join("cmdline"),
            "BOOT_IMAGE=/casper/vmlinuz autoinstall ---\n",
        )
        .expect("write");
        fs::write(dir.path().join("disks"), "").expect("write");
        fs::write(dir.path().join("fs"), "").expect("write");
        fs::write(dir.path().join("console"), "").expect("write");
        let stubs = [
            // ethtool -P IF: the driver's permanent address, if the test gave
            // one, else what ethtool says of a veth ("not set").
            (
                "ethtool",
                r#"f="$FAKE/perm/$2"; if [ -f "$f" ]; then echo "Permanent address: $(cat "$f")"; else echo "Permanent address: not set"; fi"#,
            ),
            ("ip", "exit 0"),
            ("findmnt", "exit 1"),
            ("vgchange", "exit 0"),
            (
                "lsblk",
                r#"case "$*" in
*NAME,TYPE,SIZE*) cat "$FAKE/disks" ;;
*NAME,FSTYPE*) cat "$FAKE/fs" ;;
*NAME,SIZE,MODEL,SERIAL*) awk '{ print $1, $3, "model", "serial" }' "$FAKE/disks" ;;
esac"#,
            ),
            (
                "udevadm",
                r#"for a; do case $a in --name=*) n=${a#--name=} ;; esac; done
f="$FAKE/serials/${n##*/}"; [ -f "$f" ] && echo "ID_SERIAL=$(cat "$f")"; exit 0"#,
            ),
        ];
        for (name, body) in stubs {
            let p = dir.path().join("bin").join(name);
            fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
        }
        Machine { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn nic(&self, name: &str, mac: &str) {
        let d = self.path("sys/class/net").join(name);
        fs::create_dir_all(&d).expect("mkdir");
        fs::write(d.join("type"), "1\n").expect("write");
        fs::write(d.join("address"), format!("{mac}\n")).expect("write");
        fs::write(d.join("operstate"), "up\n").expect("write");
        // What discover.sh reads too: a physical card, its address burnt in.
        fs::create_dir_all(d.join("device")).expect("mkdir");
        fs::write(d.join("addr_assign_type"), "0\n").expect("write");
        fs::write(d.join("carrier"), "1\n").expect("write");
    }

    fn disk(&self, dev: &str, size: u64, serial: &str) {
        let mut t = fs::read_to_string(self.path("disks")).expect("read");
        t.push_str(&format!("{dev} disk {size}\n"));
        fs::write(self.path("disks"), t).expect("write");
        let name = dev.rsplit('/').next().expect("name");
        fs::write(self.path("serials").join(name), serial).expect("write");
        let b = self.path("sys/block").join(name);
        fs::create_dir_all(&b).expect("mkdir");
        fs::write(b.join("size"), format!("{}\n", size / 512)).expect("write");
    }

    fn cmdline(&self, words: &str) {
        fs::write(
            self.path("cmdline"),
            format!("BOOT_IMAGE=/casper/vmlinuz {words} autoinstall ---\n"),
        )
        .expect("write");
    }

    fn select(&self, stick: &Path) -> Output {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("sh")
            .arg(stick.join("select.sh"))
            .env("PATH", path)
            .env("FAKE", self.dir.path())
            .env("MICROSEED_AUTOINSTALL", self.path("autoinstall.yaml"))
            .env("MICROSEED_CMDLINE", self.path("cmdline"))
            .env("MICROSEED_SYSFS", self.path("sys"))
            .env("MICROSEED_CONSOLE", self.path("console"))
            .env("MICROSEED_PROBE", self.path("run/probe"))
            .output()
            .expect("run select.sh")
    }

    fn installed(&self) -> Option<String> {
        fs::read_to_string(self.path("autoinstall.yaml")).ok()
    }
}

fn autoinstall_of(stick: &Path, m: &str) -> String {
    fs::read_to_string(stick.join(format!("machines/{m}/autoinstall.yaml"))).expect("read")
}

#[test]
fn select_sh_passes_shellcheck() {
    let p = common::root().join("src/install/select.sh");
    let o = common::run("shellcheck", &["-s", "sh", p.to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", text(&o).0);
}

#[test]
fn the_machine_whose_mac_is_a_nics_permanent_address_is_installed() {
    let (_s, stick) = stick();
    let m = Machine::new();
    // The current address was changed; the permanent one is worker-1's.
    m.nic("enp1s0", "02:00:00:00:00:99");
    fs::create_dir_all(m.path("perm")).expect("mkdir");
    fs::write(m.path("perm/enp1s0"), "52:54:00:AB:CD:12").expect("write");
    m.disk("/dev/sda", 500 << 30, "Samsung_SSD_WD-0042");
    m.disk("/dev/sdb", 1 << 40, "OTHER");
    let o = m.select(&stick);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(m.installed(), Some(autoinstall_of(&stick, "worker-1")));
    assert!(
        text(&o)
            .0
            .contains("installing worker-1 (172.20.10.12) on /dev/sda"),
        "{:?}",
        text(&o)
    );
    let console = fs::read_to_string(m.path("console")).expect("console");
    assert!(console.contains("installing worker-1"), "{console}");
}

#[test]
fn an_unknown_mac_installs_nothing_and_leaves_a_report_on_the_stick() {
    let (_s, stick) = stick();
    let m = Machine::new();
    m.nic("eno1", "52:54:00:00:00:77");
    m.disk("/dev/nvme0n1", 256 << 30, "NVME_1");
    let o = m.select(&stick);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert_eq!(m.installed(), None);
    // discover.sh's report, in the format `microseed discover` reads, with
    // the selector's reason appended.
    let report = fs::read_to_string(stick.join("reports/52-54-00-00-00-77.txt")).expect("report");
    assert!(
        report.starts_with("microseed-report 1\n") || report.contains("\nmicroseed-report 1\n"),
        "{report}"
    );
    assert!(report.contains("nic eno1\n"), "{report}");
    assert!(report.contains("52:54:00:00:00:77"), "{report}");
    assert!(
        report.contains("disk nvme0n1\n") || report.contains("disk /dev/nvme0n1\n"),
        "{report}"
    );
    assert!(
        report.contains("\nreason this machine is not in the stick's cluster file"),
        "{report}"
    );
    // What the admin then reads off the stick.
    let d = common::bin()
        .arg("discover")
        .arg(stick.join("reports"))
        .output()
        .expect("discover");
    assert!(d.status.success(), "{:?}", text(&d));
    assert!(
        text(&d)
            .0
            .contains("# nothing installed: this machine is not in"),
        "{:?}",
        text(&d)
    );
    assert!(!text(&d).1.contains("skipped"), "{:?}", text(&d));
    let verdict =
        fs::read_to_string(stick.join("reports/52-54-00-00-00-77.select.log")).expect("verdict");
    assert!(verdict.starts_with("refused: "), "{verdict}");
    assert!(text(&o).0.contains("NOTHING INSTALLED"), "{:?}", text(&o));
}

#[test]
fn the_boot_menus_machine_wins_over_the_mac_and_an_unknown_name_is_refused() {
    let (_s, stick) = stick();
    let m = Machine::new();
    m.nic("eth0", "52:54:00:ab:cd:12");
    m.disk("/dev/sda", 100 << 30, "X");
    m.cmdline("microseed.machine=nfs");
    let o = m.select(&stick);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(m.installed(), Some(autoinstall_of(&stick, "nfs")));

    let m = Machine::new();
    m.disk("/dev/sda", 100 << 30, "X");
    m.cmdline("microseed.machine=../../etc");
    let o = m.select(&stick);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert_eq!(m.installed(), None);
}

#[test]
fn a_disk_selector_matching_no_disk_or_two_disks_is_refused() {
    let (_s, stick) = stick();
    // worker-1 names its disk by serial: none has it.
    let m = Machine::new();
    m.nic("eth0", "52:54:00:ab:cd:12");
    m.disk("/dev/sda", 100 << 30, "OTHER");
    let o = m.select(&stick);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).0.contains("matches no disk"), "{:?}", text(&o));
    assert_eq!(m.installed(), None);
    // Two disks carry it.
    m.disk("/dev/sdb", 100 << 30, "A_WD-0042");
    m.disk("/dev/sdc", 100 << 30, "B_WD-0042");
    let o = m.select(&stick);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("matches 2 disks (/dev/sdb /dev/sdc)"),
        "{:?}",
        text(&o)
    );
    assert_eq!(m.installed(), None);
    // master takes the largest disk: two of the same largest size are refused.
    let m = Machine::new();
    m.nic("eth0", "52:54:00:ab:cd:11");
    m.disk("/dev/sda", 100 << 30, "A");
    m.disk("/dev/sdb", 100 << 30, "B");
    let o = m.select(&stick);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).0.contains("matches 2 disks"), "{:?}", text(&o));
    assert_eq!(m.installed(), None);
}

/// A loop device holding an ext4 filesystem with `etc/microseed/cluster-id`.
struct Installed {
    dev: String,
    _file: tempfile::NamedTempFile,
}

impl Installed {
    fn new(id: &str) -> Installed {
        let file = tempfile::NamedTempFile::new().expect("tmp");
        file.as_file().set_len(16 << 20).expect("len");
        let root = tempfile::tempdir().expect("tmp");
        fs::create_dir_all(root.path().join("etc/microseed")).expect("mkdir");
        fs::write(root.path().join("etc/microseed/cluster-id"), id).expect("write");
        let o = common::run(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-d",
                root.path().to_str().expect("utf8"),
                file.path().to_str().expect("utf8"),
            ],
        );
        assert!(o.status.success(), "mkfs: {:?}", text(&o));
        let o = common::run(
            "losetup",
            &[
                "--find",
                "--show",
                "--read-only",
                file.path().to_str().expect("utf8"),
            ],
        );
        assert!(o.status.success(), "losetup: {:?}", text(&o));
        Installed {
            dev: text(&o).0.trim().to_string(),
            _file: file,
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
fn a_disk_holding_this_clusters_system_is_reinstalled_only_from_the_reinstall_entry() {
    let (_s, stick) = stick();
    let id = fs::read_to_string(stick.join("cluster-id")).expect("id");
    let disk = Installed::new(&id);
    let m = Machine::new();
    m.nic("eth0", "52:54:00:ab:cd:11");
    m.disk(&disk.dev, 16 << 20, "LOOP");
    fs::write(m.path("fs"), format!("{} ext4\n", disk.dev)).expect("write");
    let o = m.select(&stick);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).0.contains("already holds this cluster's system"),
        "{:?}",
        text(&o)
    );
    assert!(
        text(&o).0.contains("Reinstall master (172.20.10.11)"),
        "{:?}",
        text(&o)
    );
    assert_eq!(m.installed(), None);
    // The Install entry is still guarded...
    m.cmdline("microseed.machine=master");
    let o = m.select(&stick);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    // ...the Reinstall entry is not.
    m.cmdline("microseed.reinstall=master");
    let o = m.select(&stick);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(m.installed(), Some(autoinstall_of(&stick, "master")));
    // Another cluster's system is not this one's.
    let other = Installed::new("0123456789abcdef0123456789abcdef\n");
    let m = Machine::new();
    m.nic("eth0", "52:54:00:ab:cd:11");
    m.disk(&other.dev, 16 << 20, "LOOP");
    fs::write(m.path("fs"), format!("{} ext4\n", other.dev)).expect("write");
    let o = m.select(&stick);
    assert!(o.status.success(), "{:?}", text(&o));
}
