//! Discovery (issue 24, item 3): `src/install/discover.sh`, which a machine
//! matching no seed runs from the cluster stick, in front of shellcheck and
//! dash, on the real kernel (a network namespace whose cards are all
//! virtual, a loop device, the real disk) and on a fake sysfs tree standing
//! in for hardware this host does not have; then `microseed discover`
//! reading its reports from a directory and from stick images whose FAT
//! another implementation (mtools, mkfs.vfat) wrote, and filling them into a
//! cluster file that `check` then reads.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, bin, make_executable, run, text, unshare};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/install/discover.sh");

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, s).expect("write");
}

/// A machine this host is not: two wired cards (one with a link, one
/// whose address was changed), a wireless card, virtual cards; a SATA disk,
/// an NVMe disk, a larger USB disk, the stick (a partition labelled
/// CIDATA), and the devices discovery leaves out (loop, ram, sr, zram).
/// udevadm and ethtool are stand-ins that answer from files beside the tree.
struct FakeMachine {
    dir: tempfile::TempDir,
}

impl FakeMachine {
    fn new() -> FakeMachine {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = FakeMachine { dir };
        let sys = m.sys();
        let dev = sys.join("devices/pci0000:00");
        let nic = |name: &str, address: &str, assign: &str, carrier: &str, device: Option<&str>| {
            let p = sys.join("class/net").join(name);
            write(&p.join("address"), &format!("{address}\n"));
            write(&p.join("addr_assign_type"), &format!("{assign}\n"));
            write(
                &p.join("operstate"),
                if carrier == "1" { "up\n" } else { "down\n" },
            );
            write(&p.join("carrier"), &format!("{carrier}\n"));
            write(
                &p.join("speed"),
                if carrier == "1" { "1000\n" } else { "-1\n" },
            );
            if let Some(d) = device {
                let target = dev.join(d);
                std::fs::create_dir_all(&target).expect("device");
                symlink(&target, p.join("device")).expect("device link");
                let drv = sys.join("bus/pci/drivers/e1000e");
                std::fs::create_dir_all(&drv).expect("driver");
                symlink(&drv, target.join("driver")).expect("driver link");
                symlink(sys.join("bus/pci"), target.join("subsystem")).expect("subsystem");
            }
        };
        nic(
            "enp3s0",
            "52:54:00:aa:00:01",
            "0",
            "1",
            Some("0000:03:00.0"),
        );
        // Its address was changed (a bond, a MAC spoof): ethtool knows the real one.
        nic(
            "enp4s0",
            "02:00:00:00:00:99",
            "3",
            "0",
            Some("0000:04:00.0"),
        );
        nic(
            "wlp2s0",
            "52:54:00:aa:00:03",
            "0",
            "1",
            Some("0000:02:00.0"),
        );
        std::fs::create_dir_all(sys.join("class/net/wlp2s0/wireless")).expect("wireless");
        nic("lo", "00:00:00:00:00:00", "0", "1", None);
        nic("veth0", "52:54:00:aa:00:04", "0", "1", None);
        nic("br0", "52:54:00:aa:00:05", "0", "1", None);
        write(&m.root().join("ethtool/enp4s0"), "52:54:00:aa:00:02");

        let disk = |name: &str, bytes: u64, removable: &str, model: &str, device: &str| {
            let p = sys.join("block").join(name);
            write(&p.join("size"), &format!("{}\n", bytes / 512));
            write(&p.join("removable"), &format!("{removable}\n"));
            write(&p.join("queue/rotational"), "0\n");
            let target = dev.join(device);
            write(&target.join("model"), &format!("{model}\n"));
            symlink(&target, p.join("device")).expect("device link");
        };
        disk(
            "sda",
            2_000_398_934_016,
            "0",
            "ST2000DM008-2FR102  ",
            "ata1/host0/target0:0:0/0:0:0:0",
        );
        disk(
            "nvme0n1",
            1_000_204_886_016,
            "0",
            "Samsung SSD 970 EVO Plus 1TB",
            "0000:01:00.0/nvme/nvme0",
        );
        disk(
            "sdc",
            4_000_787_030_016,
            "0",
            "Expansion Desk",
            "0000:00:14.0/usb2/2-1/2-1:1.0/host3",
        );
        disk(
            "sdb",
            32_010_928_128,
            "1",
            "Ultra Fit",
            "0000:00:14.0/usb1/1-2/1-2:1.0/host2",
        );
        for (part, label) in [
            ("sdb1", "Ubuntu-Server 24.04 LTS amd64"),
            ("sdb2", "CIDATA"),
        ] {
            write(&sys.join("block/sdb").join(part).join("partition"), "1\n");
            write(&sys.join("block/sdb").join(part).join("size"), "2048\n");
            write(
                &m.root().join("udev").join(part),
                &format!("ID_FS_LABEL={label}\nID_FS_TYPE=vfat\n"),
            );
        }
        write(&sys.join("block/sda/sda1/partition"), "1\n");
        write(&sys.join("block/sda/sda1/size"), "3907026944\n");
        write(
            &m.root().join("udev/sda1"),
            "ID_FS_TYPE=ext4\nID_FS_LABEL=staking data\n",
        );
        for name in ["loop0", "ram0", "sr0", "zram0"] {
            write(&sys.join("block").join(name).join("size"), "2048\n");
        }
        write(
            &m.root().join("udev/sda"),
            "DEVNAME=/dev/sda\nID_BUS=ata\nID_MODEL=ST2000DM008-2FR102\n\
             ID_SERIAL=ST2000DM008-2FR102_ZFL1ABCD\nID_SERIAL_SHORT=ZFL1ABCD\nID_WWN=0x5000c500c1234567\n\
             DEVLINKS=/dev/disk/by-path/pci-0000:00:17.0-ata-1 /dev/disk/by-id/ata-ST2000DM008-2FR102_ZFL1ABCD /dev/disk/by-id/wwn-0x5000c500c1234567\n",
        );
        write(
            &m.root().join("udev/nvme0n1"),
            "ID_SERIAL=Samsung SSD 970 EVO Plus 1TB_S4EWNX0R123456\n\
             DEVLINKS=/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456\n",
        );
        write(
            &m.root().join("udev/sdc"),
            "ID_BUS=usb\nID_SERIAL=WD_Expansion_Desk_57584B3141\n",
        );

        let dmi = sys.join("class/dmi/id");
        write(&dmi.join("sys_vendor"), "Dell Inc.\n");
        // Quotes, a `$(...)` and a newline inside a value: the report keeps
        // it on one line, as text.
        write(
            &dmi.join("product_name"),
            "OptiPlex 7070 \"Micro\" $(reboot)\n",
        );
        write(&dmi.join("product_serial"), "ABC 123\nsecond line\n");
        std::fs::create_dir_all(sys.join("firmware/efi")).expect("efi");

        let bin = m.root().join("bin");
        write(
            &bin.join("udevadm"),
            "#!/bin/sh\n# stand-in: udevadm info --query=property --name=/dev/X\n\
             for a; do case $a in --name=*) n=${a#--name=/dev/} ;; esac; done\n\
             cat \"$FAKE_ROOT/udev/$n\" 2>/dev/null\nexit 0\n",
        );
        write(
            &bin.join("ethtool"),
            "#!/bin/sh\n# stand-in: ethtool -P NAME\n\
             [ -f \"$FAKE_ROOT/ethtool/$2\" ] || { echo 'Permanent address: 00:00:00:00:00:00'; exit 0; }\n\
             printf 'Permanent address: %s\\n' \"$(cat \"$FAKE_ROOT/ethtool/$2\")\"\n",
        );
        make_executable(&bin.join("udevadm"));
        make_executable(&bin.join("ethtool"));
        m
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn sys(&self) -> PathBuf {
        self.dir.path().join("sys")
    }
    /// Runs the script under dash (Ubuntu's /bin/sh) against the tree.
    fn discover(&self, reports: &Path) -> Output {
        let path = format!(
            "{}:{}",
            self.root().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        run_script(
            Command::new("dash")
                .arg(SCRIPT)
                .arg(reports)
                .env("MICROSEED_SYSFS", self.sys())
                .env("FAKE_ROOT", self.root())
                .env("PATH", path),
        )
    }
}

fn run_script(c: &mut Command) -> Output {
    common::dies_with_the_test(c);
    let o = c
        .output()
        .expect("dash (Ubuntu's /bin/sh) is needed for this test");
    assert!(
        o.status.success(),
        "discover.sh must exit 0: {:?}",
        text(&o)
    );
    o
}

fn report_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("report")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn discover_sh_passes_shellcheck_as_posix_sh() {
    let o = run("shellcheck", &["-s", "sh", SCRIPT]);
    assert!(o.status.success(), "{}", text(&o).0);
}

#[test]
fn the_library_ships_the_script_select_sh_runs() {
    assert_eq!(
        microseed::discover::DISCOVER_SH,
        std::fs::read_to_string(SCRIPT).expect("script")
    );
    assert_eq!(
        microseed::discover::DISCOVER_SH_PATH,
        "microseed/discover.sh"
    );
    assert_eq!(microseed::discover::REPORTS_DIR, "microseed/reports");
}

#[test]
fn a_report_names_physical_cards_and_disks_and_leaves_out_the_stick_and_virtual_devices() {
    let m = FakeMachine::new();
    let reports = m.root().join("stick/microseed/reports");
    let o = m.discover(&reports);
    let (out, _) = text(&o);
    // Named after the first wired card's permanent address.
    let file = reports.join("52-54-00-aa-00-01.txt");
    let lines = report_lines(&file);
    let has = |l: &str| lines.iter().any(|x| x == l);
    assert!(lines.iter().any(|l| l == "microseed-report 1"), "{lines:?}");
    for l in [
        "firmware uefi",
        "dmi.sys_vendor Dell Inc.",
        "dmi.product_name OptiPlex 7070 \"Micro\" $(reboot)",
        "dmi.product_serial ABC 123 second line",
        "nic enp3s0",
        "nic.permanent 52:54:00:aa:00:01",
        "nic.permanent_from ethtool",
        "nic.carrier 1",
        "nic.speed 1000",
        "nic.driver e1000e",
        "nic.bus pci",
        "nic enp4s0",
        "nic.address 02:00:00:00:00:99",
        "nic.permanent 52:54:00:aa:00:02",
        "nic wlp2s0",
        "nic.wireless 1",
        "disk sda",
        "disk.size 2000398934016",
        "disk.model ST2000DM008-2FR102",
        "disk.id_serial ST2000DM008-2FR102_ZFL1ABCD",
        "disk.by_id /dev/disk/by-id/ata-ST2000DM008-2FR102_ZFL1ABCD",
        "disk.by_id /dev/disk/by-id/wwn-0x5000c500c1234567",
        "part sda1",
        "part.label staking data",
        "disk nvme0n1",
        "disk.transport nvme",
        "disk.id_serial Samsung SSD 970 EVO Plus 1TB_S4EWNX0R123456",
        "disk sdc",
        "disk.transport usb",
        "skipped sdb the stick",
    ] {
        assert!(has(l), "no line {l:?} in {lines:#?}");
    }
    for absent in [
        "nic lo",
        "nic veth0",
        "nic br0",
        "disk sdb",
        "disk loop0",
        "disk ram0",
        "disk sr0",
        "disk zram0",
    ] {
        assert!(!has(absent), "{absent:?} should be left out: {lines:#?}");
    }
    // The by-path link is no by-id name.
    assert!(!lines.iter().any(|l| l.contains("by-path")), "{lines:#?}");
    // The console summary says the same in words.
    for s in [
        "Dell Inc. OptiPlex 7070",
        "enp3s0  52:54:00:aa:00:01  link up, 1000 Mb/s",
        "wlp2s0  52:54:00:aa:00:03  link up, 1000 Mb/s, wireless",
        "sda  2.0 TB  ST2000DM008-2FR102",
        "ID_SERIAL ST2000DM008-2FR102_ZFL1ABCD",
        "sdc  4.0 TB  Expansion Desk, USB",
        "Report saved:",
    ] {
        assert!(out.contains(s), "summary lacks {s:?}:\n{out}");
    }
    assert!(!reports.join(".52-54-00-aa-00-01.tmp").exists());

    // microseed reads it back: the wired card with a link, the largest
    // fixed disk (not the larger USB one) pinned by its serial.
    let o = bin().arg("discover").arg(&reports).output().expect("run");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("    mac: 52:54:00:aa:00:01\n"), "{out}");
    assert!(out.contains("    interface: enp3s0\n"), "{out}");
    assert!(
        out.contains("    disk: {serial: ST2000DM008-2FR102_ZFL1ABCD}\n")
            || out.contains("    disk: {serial: \"ST2000DM008-2FR102_ZFL1ABCD\"}\n"),
        "{out}"
    );
    assert!(out.contains("would pick sdc"), "{out}");
    assert!(
        out.contains(
            "# note: sda holds filesystems, which the install erases: sda1 (ext4 \"staking data\")"
        ),
        "{out}"
    );
    assert!(
        out.contains("# note: other fixed disks, left alone by the install: nvme0n1 (1.0 TB, ID_SERIAL Samsung SSD 970 EVO Plus 1TB_S4EWNX0R123456)"),
        "{out}"
    );
    assert!(
        out.contains("#   system: Dell Inc. OptiPlex 7070 \"Micro\" $(reboot)"),
        "{out}"
    );
    assert!(
        out.contains("#       /dev/disk/by-id/ata-ST2000DM008-2FR102_ZFL1ABCD"),
        "{out}"
    );
}

#[test]
fn an_unwritable_report_directory_still_prints_the_summary_and_exits_0() {
    let m = FakeMachine::new();
    let file = m.root().join("a-file");
    write(&file, "");
    let o = m.discover(&file.join("reports"));
    let (out, err) = text(&o);
    assert!(out.contains("enp3s0"), "{out}");
    assert!(err.contains("cannot create"), "{err}");
}

#[test]
fn a_machine_with_no_sysfs_facts_still_gets_a_report() {
    let empty = tempfile::tempdir().expect("tempdir");
    let reports = empty.path().join("reports");
    run_script(
        Command::new("dash")
            .arg(SCRIPT)
            .arg(&reports)
            .env("MICROSEED_SYSFS", empty.path().join("sys"))
            .env("PATH", "/nonexistent:/usr/bin:/bin"),
    );
    let lines = report_lines(&reports.join("no-mac.txt"));
    assert!(
        lines.contains(&"microseed-report 1".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"firmware bios".to_string()), "{lines:?}");
}

/// The real kernel: in a network namespace whose only cards are virtual
/// (a veth pair, a bridge) with its own sysfs, no card is reported; a loop
/// device with a size is left out; the real disk is reported, and left out
/// as the stick when the report directory lives on it.
#[test]
fn on_the_real_kernel_virtual_cards_and_loop_devices_are_left_out() {
    let work = tempfile::tempdir().expect("tempdir");
    let backing = work.path().join("loop.img");
    std::fs::write(&backing, vec![0u8; 1 << 20]).expect("loop backing");
    let shm = tempfile::tempdir_in("/dev/shm").expect("tmpfs dir");
    let on_tmpfs = shm.path().join("reports");
    let on_disk = work.path().join("reports");
    let bind_src = work.path().join("bind-src");
    let bind_at = work.path().join("bind-at");
    let script = r#"
set -eu
mount -t sysfs sysfs /sys
ip link add v0 type veth peer name v1
ip link add br0 type bridge
ip link set v0 up
ip link set br0 up
loop=$(losetup --find --show "$1")
trap 'losetup -d "$loop"' EXIT
echo "loop=${loop#/dev/}"
dash "$2" "$3"
dash "$2" "$4"
# A bind mount of a directory on the same disk (findmnt shows it as
# /dev/vda[/dir] unless told not to).
mkdir -p "$5" "$6"
mount --bind "$5" "$6"
dash "$2" "$6/reports"
"#;
    let o = unshare(&[
        "--net",
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child",
        "sh",
        "-c",
        script,
        "x",
        backing.to_str().expect("utf8"),
        SCRIPT,
        on_tmpfs.to_str().expect("utf8"),
        on_disk.to_str().expect("utf8"),
        bind_src.to_str().expect("utf8"),
        bind_at.to_str().expect("utf8"),
    ])
    .output()
    .expect("unshare");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let loop_name = out
        .lines()
        .find_map(|l| l.strip_prefix("loop="))
        .expect("loop device name")
        .to_string();
    let lines = report_lines(&on_tmpfs.join("no-mac.txt"));
    assert!(!lines.iter().any(|l| l.starts_with("nic ")), "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l == &format!("disk {loop_name}")),
        "{lines:#?}"
    );
    // The disk holding /tmp (this host's) is a real one with a size.
    let src = run(
        "findmnt",
        &[
            "-n",
            "-o",
            "SOURCE",
            "--target",
            work.path().to_str().expect("utf8"),
        ],
    );
    let src = text(&src).0.trim().to_string();
    if let Some(dev) = src.strip_prefix("/dev/") {
        let disk = whole_disk(dev);
        assert!(
            lines.contains(&format!("disk {disk}")),
            "{disk} missing: {lines:#?}"
        );
        let size = lines
            .iter()
            .skip_while(|l| **l != format!("disk {disk}"))
            .find_map(|l| l.strip_prefix("disk.size "))
            .and_then(|s| s.parse::<u64>().ok())
            .expect("size");
        assert!(size > 0);
        for dir in [&on_disk, &bind_src.join("reports")] {
            let lines = report_lines(&dir.join("no-mac.txt"));
            assert!(
                !lines.contains(&format!("disk {disk}")),
                "{}: {lines:#?}",
                dir.display()
            );
            assert!(
                lines.contains(&format!("skipped {disk} the stick")),
                "{lines:#?}"
            );
        }
    }
}

/// `vda1` -> `vda`, `nvme0n1p2` -> `nvme0n1`, from sysfs.
fn whole_disk(dev: &str) -> String {
    let p = Path::new("/sys/class/block").join(dev);
    if p.join("partition").exists() {
        let real = std::fs::canonicalize(&p).expect("sysfs");
        real.parent()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .expect("parent disk")
    } else {
        dev.to_string()
    }
}

/// A report as discover.sh writes it, for the tests that read reports.
fn report(mac: &str, nic: &str, serial: &str) -> String {
    format!(
        "# microseed discovery report\nmicroseed-report 1\ntime 2026-12-07T10:00:00Z\nfirmware uefi\n\
         dmi.sys_vendor ASUS\ndmi.product_name PN51\n\
         nic {nic}\nnic.address {mac}\nnic.permanent {mac}\nnic.carrier 1\nnic.speed 2500\n\
         disk nvme0n1\ndisk.size 1000204886016\ndisk.removable 0\ndisk.transport nvme\n\
         disk.model WD Blue SN570\ndisk.id_serial {serial}\n\
         disk.by_id /dev/disk/by-id/nvme-{serial}\n"
    )
}

/// Three machines' reports, as mtools writes them into the seed image's
/// CIDATA FAT (long names, a subdirectory): another FAT writer than ours.
fn stick_image(dir: &Path, reports: &[(&str, String)]) -> PathBuf {
    let files: Vec<(&str, &[u8])> = vec![
        ("user-data", b"#cloud-config\n".as_slice()),
        ("meta-data", b"instance-id: x\n".as_slice()),
    ];
    // Room for the reports: the seed image sizes its FAT by its files.
    let padding = vec![b'#'; 64 * 1024];
    let mut files = files;
    files.push(("padding", &padding));
    let image =
        microseed::image::seed_image(&files, microseed::image::DEFAULT_EPOCH).expect("image");
    let img = dir.join("stick.img");
    std::fs::write(&img, image).expect("write image");
    let at = format!("{}@@32768", img.display());
    let o = run("mmd", &["-i", &at, "::microseed", "::microseed/reports"]);
    assert!(o.status.success(), "{:?}", text(&o));
    for (name, body) in reports {
        let src = dir.join(name);
        std::fs::write(&src, body).expect("report");
        let o = run(
            "mcopy",
            &[
                "-i",
                &at,
                src.to_str().expect("utf8"),
                &format!("::microseed/reports/{name}"),
            ],
        );
        assert!(o.status.success(), "{:?}", text(&o));
    }
    img
}

#[test]
fn the_stick_image_is_read_without_mounting_and_gives_one_entry_per_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = stick_image(
        dir.path(),
        &[
            (
                "52-54-00-00-00-0a.txt",
                report("52:54:00:00:00:0a", "enp1s0", "WD_Blue_SN570_1TB_A1")
                    + "reason no machine of the cluster has a card with this MAC\n",
            ),
            (
                "52-54-00-00-00-0b.txt",
                report("52:54:00:00:00:0b", "eno1", "WD_Blue_SN570_1TB_B2"),
            ),
            ("notes.md", "not a report".into()),
        ],
    );
    let before = std::fs::read(&img).expect("image");
    let o = bin().arg("discover").arg(&img).output().expect("run");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("# 2 report(s) from"), "{out}");
    assert!(
        out.contains("# 52-54-00-00-00-0a.txt (saved 2026-12-07T10:00:00Z)"),
        "{out}"
    );
    assert!(
        out.contains("    mac: 52:54:00:00:00:0b\n    interface: eno1\n"),
        "{out}"
    );
    assert!(
        out.contains("# nothing installed: no machine of the cluster has a card with this MAC\n"),
        "{out}"
    );
    assert!(out.contains("WD_Blue_SN570_1TB_A1"), "{out}");
    // Read only: not a byte of the stick changed.
    assert_eq!(before, std::fs::read(&img).expect("image"));

    // The same image as a disk (a block device, read-only loop device).
    let o = run(
        "losetup",
        &[
            "--read-only",
            "--find",
            "--show",
            img.to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let dev = text(&o).0.trim().to_string();
    let o = bin().arg("discover").arg(&dev).output().expect("run");
    let _ = run("losetup", &["-d", &dev]);
    let (from_dev, err) = text(&o);
    assert!(o.status.success(), "{dev}: {err}");
    assert_eq!(
        from_dev.replace(&format!("{dev}:"), "SRC:"),
        out.replace(&format!("{}:", img.display()), "SRC:")
    );

    let o = bin()
        .args(["discover", "--json"])
        .arg(&img)
        .output()
        .expect("run");
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["reports"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["reports"][0]["entry"]["mac"], "52:54:00:00:00:0a");
    assert_eq!(
        v["reports"][0]["entry"]["disk_serial"],
        "WD_Blue_SN570_1TB_A1"
    );
    assert_eq!(v["reports"][1]["report"]["nics"][0]["name"], "eno1");
}

/// An MBR stick (as the 20.04 hybrid ISO's table is) whose FAT partition
/// mkfs.vfat made, with a FAT of another label before it and every MBR slot
/// used (a table `iso::parttable` could add nothing to).
#[test]
fn an_mbr_stick_is_searched_for_its_cidata_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = dir.path().join("mbr.img");
    let f = std::fs::File::create(&img).expect("create");
    f.set_len(8 << 20).expect("size");
    drop(f);
    let mut c = Command::new("sfdisk");
    c.arg("--quiet")
        .arg(&img)
        .stdin(std::process::Stdio::piped());
    let mut child = c
        .spawn()
        .expect("sfdisk (util-linux) is needed for this test");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(
                b"label: dos\nstart=2048, size=4096, type=ef\nstart=6144, size=1024, type=83\nstart=7168, size=1024, type=83\nstart=8192, size=8192, type=c\n",
            )
            .expect("table");
    }
    assert!(child.wait().expect("sfdisk").success());
    for (offset, sectors, label) in [("1048576", "4096", "ESP"), ("4194304", "8192", "cidata")] {
        let o = run(
            "mkfs.vfat",
            &[
                "-n",
                label,
                "--offset",
                &(offset.parse::<u64>().expect("n") / 512).to_string(),
                img.to_str().expect("utf8"),
                &(sectors.parse::<u64>().expect("n") / 2).to_string(),
            ],
        );
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let at = format!("{}@@4194304", img.display());
    assert!(
        run("mmd", &["-i", &at, "::microseed", "::microseed/reports"])
            .status
            .success()
    );
    let src = dir.path().join("r.txt");
    std::fs::write(&src, report("52:54:00:00:00:0c", "enp2s0", "S3")).expect("report");
    assert!(
        run(
            "mcopy",
            &[
                "-i",
                &at,
                src.to_str().expect("utf8"),
                "::microseed/reports/52-54-00-00-00-0c.txt"
            ]
        )
        .status
        .success()
    );
    let o = bin().arg("discover").arg(&img).output().expect("run");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("    mac: 52:54:00:00:00:0c\n"), "{out}");

    // A stick without a CIDATA partition: exit 2, naming what it found.
    let o = run(
        "mkfs.vfat",
        &[
            "-n",
            "OTHER",
            "--offset",
            "8192",
            img.to_str().expect("utf8"),
            "4096",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = bin().arg("discover").arg(&img).output().expect("run");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no CIDATA partition found"), "{err}");
    assert!(err.contains("ESP") && err.contains("OTHER"), "{err}");
}

#[test]
fn a_source_without_reports_is_refused_with_the_way_to_get_some() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = bin().arg("discover").arg(dir.path()).output().expect("run");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no discovery reports"), "{err}");
    assert!(err.contains("boot each new machine once"), "{err}");
}

fn reports_dir(reports: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in reports {
        write(&dir.path().join(name), body);
    }
    dir
}

fn three_reports() -> tempfile::TempDir {
    reports_dir(&[
        (
            "52-54-00-00-00-0a.txt",
            report("52:54:00:00:00:0a", "enp1s0", "SN_A1"),
        ),
        (
            "52-54-00-00-00-0b.txt",
            report("52:54:00:00:00:0b", "eno1", "SN_B2"),
        ),
        (
            "52-54-00-00-00-0c.txt",
            report("52:54:00:00:00:0c", "enp2s0", "SN_C3"),
        ),
    ])
}

fn fill(cluster: &Path, reports: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("discover")
        .arg(reports)
        .arg("--cluster")
        .arg(cluster)
        .args(extra)
        .output()
        .expect("run")
}

#[test]
fn filling_the_cluster_file_adds_only_the_three_keys_and_keeps_every_comment() {
    let sc = common::Scratch::example();
    let reports = three_reports();
    let before = std::fs::read_to_string(sc.cluster()).expect("cluster");
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &[
            "--machine",
            "nfs=52:54:00:00:00:0A",
            "--machine",
            "worker-1=52-54-00-00-00-0c",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("nfs (line"), "{out}");
    assert!(out.contains("passes check"), "{out}");
    let after = std::fs::read_to_string(sc.cluster()).expect("cluster");
    // Every line of the file is still there, in order; the new ones are
    // the three keys of each filled machine, right after its entry.
    let added: Vec<&str> = {
        let mut old = before.lines().peekable();
        let mut added = Vec::new();
        for l in after.lines() {
            if old.peek() == Some(&l) {
                old.next();
            } else {
                added.push(l);
            }
        }
        assert!(
            old.peek().is_none(),
            "a line of the file was lost:\n{after}"
        );
        added
    };
    assert_eq!(
        added,
        [
            "    mac: 52:54:00:00:00:0a",
            "    interface: enp1s0",
            "    disk: {serial: SN_A1}",
            "    mac: 52:54:00:00:00:0c",
            "    interface: enp2s0",
            "    disk: {serial: SN_C3}",
        ],
        "{after}"
    );
    let nfs_at = after.find("  - name: nfs").expect("nfs");
    let master_at = after.find("  - name: master").expect("master");
    let mac_at = after.find("mac: 52:54:00:00:00:0a").expect("mac");
    assert!(nfs_at < mac_at && mac_at < master_at, "{after}");
    // The real consumer of the file: check.
    let o = bin()
        .arg("check")
        .arg(sc.cluster())
        .output()
        .expect("check");
    assert!(o.status.success(), "{:?}", text(&o));
    let o = bin()
        .args(["render"])
        .arg(sc.cluster())
        .args(["worker-1", "network-config"])
        .output()
        .expect("render");
    let (net, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(net.contains("macaddress: 52:54:00:00:00:0c"), "{net}");
    assert!(net.contains("set-name: enp2s0"), "{net}");

    // Again: nothing to change, the file is not rewritten.
    let mtime = std::fs::metadata(sc.cluster())
        .and_then(|m| m.modified())
        .expect("mtime");
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "nfs=52:54:00:00:00:0a"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("already so"), "{:?}", text(&o));
    assert_eq!(
        std::fs::read_to_string(sc.cluster()).expect("cluster"),
        after
    );
    assert_eq!(
        std::fs::metadata(sc.cluster())
            .and_then(|m| m.modified())
            .expect("mtime"),
        mtime
    );
}

#[test]
fn a_value_already_set_differently_is_refused_at_its_line_unless_forced() {
    let cluster = common::EXAMPLE.replace(
        "  - name: master\n    role: master\n    ip: 172.20.10.11\n",
        "  - name: master\n    role: master\n    ip: 172.20.10.11\n    interface: eth9   # old guess\n    disk:\n      serial: OLD*\n",
    );
    let sc = common::Scratch::new(&cluster);
    let reports = three_reports();
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "master=52:54:00:00:00:0b"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line = cluster
        .lines()
        .position(|l| l.contains("interface: eth9"))
        .expect("line")
        + 1;
    assert!(
        err.contains(&format!(
            "cluster.yaml:{line}:16: error: machines[1].interface: already set to eth9"
        )),
        "{err}"
    );
    assert!(err.contains("machines[1].disk"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert_eq!(
        std::fs::read_to_string(sc.cluster()).expect("cluster"),
        cluster
    );

    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "master=52:54:00:00:00:0b", "--force"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let after = std::fs::read_to_string(sc.cluster()).expect("cluster");
    assert!(
        after.contains("    interface: eno1   # old guess\n"),
        "{after}"
    );
    assert!(
        after.contains("    disk:\n      {serial: SN_B2}\n    mac: 52:54:00:00:00:0b\n"),
        "{after}"
    );
    let o = bin()
        .arg("check")
        .arg(sc.cluster())
        .output()
        .expect("check");
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn an_unknown_machine_or_a_mac_in_no_report_is_refused_and_nothing_is_written() {
    let sc = common::Scratch::example();
    let reports = three_reports();
    let before = std::fs::read_to_string(sc.cluster()).expect("cluster");
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &[
            "--machine",
            "worker-2=52:54:00:00:00:0a",
            "--machine",
            "master=52:54:00:00:00:ff",
            "--machine",
            "nfs=52:54:00:00:00:0c",
        ],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line = before
        .lines()
        .position(|l| l == "machines:")
        .expect("machines")
        + 1;
    assert!(
        err.contains(&format!("cluster.yaml:{line}:"))
            && err.contains("no machine named \"worker-2\""),
        "{err}"
    );
    assert!(err.contains("did you mean \"worker-1\"?"), "{err}");
    assert!(
        err.contains("master=52:54:00:00:00:ff: no report has a network card with this MAC"),
        "{err}"
    );
    assert!(
        err.contains("52-54-00-00-00-0a.txt (52:54:00:00:00:0a)"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(sc.cluster()).expect("cluster"),
        before
    );

    let o = fill(
        &sc.cluster(),
        reports.path(),
        &[
            "--machine",
            "nfs=52:54:00:00:00:0a",
            "--machine",
            "master=52:54:00:00:00:0A",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o)
            .1
            .contains("master and nfs are both given MAC 52:54:00:00:00:0a"),
        "{:?}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(sc.cluster()).expect("cluster"),
        before
    );

    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "worker-2=52:54:00:00:00:0a", "--json"],
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], line);
    assert_eq!(v["errors"][0]["field"], "machines");

    let wifi = reports_dir(&[(
        "52-54-00-00-00-0e.txt",
        report("52:54:00:00:00:0e", "wlp1s0", "SN_E5")
            .replace("nic.speed 2500\n", "nic.wireless 1\n"),
    )]);
    let o = fill(
        &sc.cluster(),
        wifi.path(),
        &["--machine", "nfs=52:54:00:00:00:0e"],
    );
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("that is wlp1s0, a wireless card"),
        "{:?}",
        text(&o)
    );

    let o = fill(&sc.cluster(), reports.path(), &["--machine", "nfs"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("expected NAME=MAC"), "{:?}", text(&o));
}

#[test]
fn a_mac_another_machine_has_is_refused_at_that_machine() {
    let cluster = common::EXAMPLE.replace(
        "    ip: 172.20.10.10\n",
        "    ip: 172.20.10.10\n    mac: 52:54:00:00:00:0b\n",
    );
    let sc = common::Scratch::new(&cluster);
    let reports = three_reports();
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "worker-1=52:54:00:00:00:0b"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("machines[0].mac: nfs already has MAC 52:54:00:00:00:0b"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(sc.cluster()).expect("cluster"),
        cluster
    );
}

#[test]
fn a_machine_written_as_a_flow_mapping_is_filled_inside_its_braces() {
    let cluster = common::EXAMPLE.replace(
        "  - name: worker-1\n    role: worker\n    ip: 172.20.10.12\n",
        "  - {name: worker-1, role: worker, ip: 172.20.10.12}  # the worker\n",
    );
    let sc = common::Scratch::new(&cluster);
    let reports = three_reports();
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "worker-1=52:54:00:00:00:0c", "--json"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["filled"][0]["machine"], "worker-1");
    assert_eq!(v["filled"][0]["interface"], "enp2s0");
    let after = std::fs::read_to_string(sc.cluster()).expect("cluster");
    assert!(
        after.contains("  - {name: worker-1, role: worker, ip: 172.20.10.12, mac: 52:54:00:00:00:0c, interface: enp2s0, disk: {serial: SN_C3}}  # the worker\n"),
        "{after}"
    );
    let o = bin()
        .arg("check")
        .arg(sc.cluster())
        .output()
        .expect("check");
    assert!(o.status.success(), "{:?}", text(&o));
}

#[test]
fn discover_has_help_with_examples_and_completions_offer_it() {
    let o = bin().args(["discover", "--help"]).output().expect("run");
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(
        out.contains("microseed discover /dev/sdb --cluster"),
        "{out}"
    );
    assert!(out.contains("Exit codes:"), "{out}");
    let o = bin().args(["completions", "bash"]).output().expect("run");
    assert!(text(&o).0.contains("discover"), "completions lack discover");
    // --machine without --cluster is a usage error (exit 2).
    let o = bin()
        .args(["discover", "/tmp", "--machine", "a=52:54:00:00:00:01"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn an_empty_value_is_filled_where_it_stands_and_crlf_line_ends_are_kept() {
    let cluster = common::EXAMPLE
        .replace(
            "    ip: 172.20.10.10\n",
            "    ip: 172.20.10.10\n    mac:    # fill me\n    interface: ~\n",
        )
        .replace('\n', "\r\n");
    let sc = common::Scratch::new(&cluster);
    let reports = three_reports();
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "nfs=52:54:00:00:00:0a"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let after = std::fs::read_to_string(sc.cluster()).expect("cluster");
    assert!(
        after.contains(
            "    ip: 172.20.10.10\r\n    mac: 52:54:00:00:00:0a    # fill me\r\n    interface: enp1s0\r\n    disk: {serial: SN_A1}\r\n  - name: master\r\n"
        ),
        "{after:?}"
    );
    assert!(
        !after.replace("\r\n", "").contains('\n'),
        "a bare LF: {after:?}"
    );
    let o = bin()
        .arg("check")
        .arg(sc.cluster())
        .output()
        .expect("check");
    assert!(o.status.success(), "{:?}", text(&o));
}

/// The installer image `iso::make_installer_image` writes, on both hybrid
/// layouts (20.04's MBR, 22.04's GPT), with reports a machine left in its
/// CIDATA partition: found through the image's own tables.
#[test]
fn reports_are_read_from_an_installer_image_on_both_hybrid_layouts() {
    use crate::iso_common::{Fixture, patched};
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (dir, img, rep) = patched(fx);
        let at = format!("{}@@{}", img.display(), rep.partition.offset);
        let o = run("mmd", &["-i", &at, "::microseed", "::microseed/reports"]);
        assert!(o.status.success(), "{fx:?}: {:?}", text(&o));
        let src = dir.path().join("r.txt");
        std::fs::write(&src, report("52:54:00:00:00:0d", "enp5s0", "SN_D4")).expect("report");
        let o = run(
            "mcopy",
            &[
                "-i",
                &at,
                src.to_str().expect("utf8"),
                "::microseed/reports/52-54-00-00-00-0d.txt",
            ],
        );
        assert!(o.status.success(), "{fx:?}: {:?}", text(&o));
        let o = bin().arg("discover").arg(&img).output().expect("run");
        let (out, err) = text(&o);
        assert!(o.status.success(), "{fx:?} ({}): {err}", rep.layout);
        assert!(
            out.contains(
                "    mac: 52:54:00:00:00:0d\n    interface: enp5s0\n    disk: {serial: SN_D4}\n"
            ),
            "{fx:?}: {out}"
        );
    }
}

/// A booted machine with udevd: the acceptance VM image (Debian, systemd,
/// udev, cloud-init) under qemu, with a second card (e1000) and a data
/// disk with a serial, runs discover.sh from its seed's runcmd and prints
/// the report on the VM's report console. What udev computes (ID_SERIAL,
/// by-id names, the seed's CIDATA label) and what the kernel says about
/// real cards comes out as the script reads it. Slow: one boot under
/// software emulation (a few minutes).
#[test]
fn on_a_booted_machine_the_report_holds_what_udev_and_the_kernel_say() {
    use base64::Engine as _;
    let work = tempfile::Builder::new()
        .prefix("microseed-discover-vm")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let vm = work.path().join("vm");
    std::fs::create_dir_all(&vm).expect("vm dir");
    // Larger than the root disk (3 GiB): the disk an install would take.
    let data = std::fs::File::create(vm.join("data.img")).expect("data disk");
    data.set_len(4 << 30).expect("sparse");
    drop(data);
    let script = base64::engine::general_purpose::STANDARD.encode(microseed::discover::DISCOVER_SH);
    // The reports on a tmpfs, as on the stick: not on any disk of the VM
    // (the one holding them would be left out as the stick).
    let run_it = "r=/run/discover/reports; sh /root/discover.sh $r >/dev/ttyS1 2>&1; \
                  for f in $r/*.txt; do echo \"===== DISCOVER-FILE ${f##*/}\"; cat \"$f\"; done >/dev/ttyS1; \
                  for c in /sys/class/net/e*; do echo \"===== AFTER ${c##*/} $(cat $c/operstate)\"; done >/dev/ttyS1; \
                  echo ===== DISCOVER-END >/dev/ttyS1";
    // JSON is YAML: the cloud-config serialized, not assembled.
    let user_data = format!(
        "#cloud-config\n{}\n",
        serde_json::json!({
            "write_files": [{"path": "/root/discover.sh", "permissions": "0755",
                             "encoding": "b64", "content": script}],
            "runcmd": [["sh", "-c", run_it]],
        })
    );
    let seed = microseed::image::seed_image(
        &[
            ("user-data", user_data.as_bytes()),
            (
                "meta-data",
                b"instance-id: discover-vm\nlocal-hostname: discover-vm\n",
            ),
        ],
        microseed::image::DEFAULT_EPOCH,
    )
    .expect("seed image");
    let seed_img = work.path().join("seed.img");
    std::fs::write(&seed_img, seed).expect("seed");
    let mut c = Command::new("bash");
    common::dies_with_the_test(&mut c);
    let o = c
        .arg(common::root().join("scripts/acceptance.sh"))
        .args(["boot"])
        .arg(&seed_img)
        .arg("52:54:00:d1:5c:01")
        .arg(&vm)
        .env(
            "MS_EXTRA_QEMU",
            // PCI slots after the image's own disks: the root disk stays vda.
            "-drive file=/tmp/ms/work/data.img,format=raw,if=none,id=data \
             -device virtio-blk-pci,drive=data,serial=MSDISCOVER01,addr=0x10 \
             -netdev user,id=n1,restrict=on -device e1000,netdev=n1,mac=52:54:00:d1:5c:02,addr=0x11",
        )
        .output()
        .expect("scripts/acceptance.sh");
    let console = std::fs::read_to_string(vm.join("report.txt")).unwrap_or_default();
    assert!(
        console.contains("===== DISCOVER-END"),
        "no discovery output from the VM ({:?}):\n{console}\n{}",
        o.status,
        text(&o).1
    );
    let body: String = console
        .split("===== DISCOVER-FILE ")
        .nth(1)
        .and_then(|s| s.split("===== DISCOVER-END").next())
        .expect("a report file")
        .replace('\r', "");
    let (name, report_text) = body.split_once('\n').expect("name line");
    let r = microseed::discover::report::parse(name, report_text).expect("report");
    assert_eq!(r.sys_vendor, "QEMU", "{report_text}");
    let mut macs: Vec<(&str, &str, &str)> = r
        .nics
        .iter()
        .map(|n| {
            (
                n.permanent.as_str(),
                n.driver.as_str(),
                n.permanent_from.as_str(),
            )
        })
        .collect();
    macs.sort();
    assert_eq!(
        macs,
        [
            ("52:54:00:d1:5c:01", "virtio_net", "addr_assign_type"),
            ("52:54:00:d1:5c:02", "e1000", "addr_assign_type")
        ],
        "{report_text}"
    );
    // Named after the first card (by name, as the kernel sorts them).
    assert_eq!(
        name,
        format!("{}.txt", r.nics[0].permanent.replace(':', "-")),
        "{console}"
    );
    let data = r
        .disks
        .iter()
        .find(|d| d.id_serial == "MSDISCOVER01")
        .unwrap_or_else(|| panic!("no disk with udev's ID_SERIAL: {report_text}"));
    assert_eq!(data.size, 4 << 30);
    assert!(
        data.by_id
            .iter()
            .any(|l| l == "/dev/disk/by-id/virtio-MSDISCOVER01"),
        "{report_text}"
    );
    // The seed disk (CIDATA) is the stick: left out; the root disk is in.
    assert_eq!(r.disks.len(), 2, "{report_text}");
    assert!(r.disks.iter().any(|d| d.size == 3 << 30), "{report_text}");
    assert_eq!(r.skipped.len(), 1, "{report_text}");
    // cloud-init configured one card; the other was brought up to see its
    // cable (slirp's link is always up), then down again.
    assert!(r.nics.iter().all(|n| n.carrier), "{report_text}");
    let e1000 = &r
        .nics
        .iter()
        .find(|n| n.driver == "e1000")
        .expect("e1000")
        .name;
    assert!(
        console.contains(&format!("===== AFTER {e1000} down")),
        "{e1000} left up: {console}"
    );
    // The console summary went out too.
    assert!(
        console.contains("Network cards (name, permanent MAC, link):"),
        "{console}"
    );

    let dir = work.path().join("reports");
    write(&dir.join(name), report_text);
    let o = bin().arg("discover").arg(&dir).output().expect("run");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains(&format!(
            "    mac: {}\n    interface: {}\n",
            r.nics[0].permanent, r.nics[0].name
        )),
        "{out}"
    );
    assert!(out.contains("    disk: {serial: MSDISCOVER01}\n"), "{out}");
}

/// This host's own cards, as the kernel and ethtool see them: every card
/// with a device in sysfs is reported, with the permanent address
/// `ethtool -P` gives, learnt from ethtool.
#[test]
fn on_this_host_every_physical_card_is_reported_with_ethtools_permanent_address() {
    let shm = tempfile::tempdir_in("/dev/shm").expect("tmpfs dir");
    let reports = shm.path().join("reports");
    run_script(Command::new("dash").arg(SCRIPT).arg(&reports));
    let file = std::fs::read_dir(&reports)
        .expect("reports")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "txt"))
        .expect("a report");
    let r = microseed::discover::report::parse("r", &std::fs::read_to_string(&file).expect("read"))
        .expect("report");
    let mut physical: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("sysfs")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("device").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    physical.sort();
    let reported: Vec<String> = r.nics.iter().map(|n| n.name.clone()).collect();
    assert_eq!(reported, physical);
    for n in &r.nics {
        let o = run("ethtool", &["-P", &n.name]);
        let perm = text(&o)
            .0
            .trim()
            .strip_prefix("Permanent address: ")
            .map(str::to_ascii_lowercase)
            .expect("ethtool -P");
        assert_eq!(n.permanent, perm, "{}", n.name);
        assert_eq!(n.permanent_from, "ethtool", "{}", n.name);
    }
}

#[test]
fn a_cluster_file_behind_a_symbolic_link_is_replaced_at_its_target_with_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let sc = common::Scratch::example();
    let real_dir = tempfile::tempdir().expect("tempdir");
    let real = real_dir.path().join("cluster.yaml");
    std::fs::rename(sc.cluster(), &real).expect("move");
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    symlink(&real, sc.cluster()).expect("link");
    let reports = three_reports();
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "nfs=52:54:00:00:00:0a"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(
        std::fs::symlink_metadata(sc.cluster())
            .expect("link")
            .file_type()
            .is_symlink()
    );
    let after = std::fs::read_to_string(&real).expect("target");
    assert!(after.contains("    mac: 52:54:00:00:00:0a\n"), "{after}");
    let mode = std::fs::metadata(&real).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // Nothing of the temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(real_dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["cluster.yaml"]);
}

#[test]
fn a_cluster_file_filled_under_sudo_keeps_its_owner() {
    use std::os::unix::fs::MetadataExt as _;
    // Reading the stick needs root; the user's file must stay the user's.
    if !nix_is_root() {
        eprintln!("skipped: needs root to give the file to another user");
        return;
    }
    let sc = common::Scratch::example();
    std::os::unix::fs::chown(sc.cluster(), Some(1000), Some(1000)).expect("chown");
    let reports = three_reports();
    let o = fill(
        &sc.cluster(),
        reports.path(),
        &["--machine", "nfs=52:54:00:00:00:0a"],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let after = std::fs::read_to_string(sc.cluster()).expect("filled");
    assert!(after.contains("    mac: 52:54:00:00:00:0a\n"), "{after}");
    let meta = std::fs::metadata(sc.cluster()).expect("meta");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}
