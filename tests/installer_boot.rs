//! Boot the patched stand-in installer images under qemu (TCG, from the cached
//! bookworm chroot; scripts/installer-boot-test.sh) and read the serial
//! console: the kernel command line carries `autoinstall` before `---`, and a
//! filesystem labelled CIDATA is visible to the booted system. 20.04 layout
//! with SeaBIOS (isolinux) and OVMF (GRUB), 22.04 layout with OVMF, and the
//! 24.04 image the CLI builds with both; the 20.04 cluster stick's isolinux
//! menu under SeaBIOS, an entry picked through qemu's monitor.
//! Slow (about a minute each under software emulation).

use crate::iso_common as common;

use common::*;

fn boot(fx: Fixture, firmware: &str) -> String {
    let (dir, img, report) = patched(fx);
    let out = boot_image(&img, firmware, dir.path(), &format!("{fx:?}"));
    eprintln!("{fx:?}/{firmware}: {report:?}\n{out}");
    out
}

/// Boots `img` under `firmware` (scripts/installer-boot-test.sh), logging to
/// `dir`; the serial console's STANDIN- lines once the stand-in finished.
fn boot_image(img: &std::path::Path, firmware: &str, dir: &std::path::Path, what: &str) -> String {
    let serial = boot_serial(img, firmware, dir, what);
    let lines: Vec<&str> = serial.lines().filter(|l| l.contains("STANDIN-")).collect();
    lines.join("\n")
}

/// The whole serial console of a boot: the firmware's and GRUB's screens
/// (OVMF, and SeaBIOS with qemu's -nographic, copy the screen to it) and
/// the stand-in's STANDIN- lines.
fn boot_serial(img: &std::path::Path, firmware: &str, dir: &std::path::Path, what: &str) -> String {
    let log = dir.join("serial.log");
    let script = repo().join("scripts/installer-boot-test.sh");
    let mut c = std::process::Command::new("bash");
    // bash execs unshare, which keeps this: a killed test kills qemu.
    crate::common::dies_with_the_test(&mut c);
    let status = c
        .arg(&script)
        .arg(img)
        .arg(firmware)
        .arg(&log)
        .arg("400")
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let serial = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).to_string();
    assert!(
        status.success() && serial.contains("STANDIN-DONE"),
        "{what}/{firmware}: qemu {status}, serial console:\n{}",
        serial
            .chars()
            .rev()
            .take(4000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    serial
}

fn assert_autoinstall_and_cidata(out: &str, cidata_dev: &str) {
    let cmdline = out
        .lines()
        .find_map(|l| l.split_once("STANDIN-CMDLINE: ").map(|(_, c)| c))
        .expect("no command line printed");
    let (head, tail) = cmdline
        .split_once(" --- ")
        .expect("no --- on the command line");
    assert!(
        head.split_whitespace().any(|w| w == "autoinstall"),
        "{cmdline}"
    );
    assert!(tail.contains("console=ttyS0"), "{cmdline}");
    assert!(
        out.contains(&format!("STANDIN-CIDATA: {cidata_dev}")),
        "CIDATA not on {cidata_dev}:\n{out}"
    );
}

#[test]
fn focal_layout_boots_unattended_with_seabios() {
    let out = boot(Fixture::Focal, "bios");
    assert!(
        out.contains("BOOT_IMAGE=/casper/vmlinuz initrd=/casper/initrd"),
        "isolinux path expected:\n{out}"
    );
    assert_autoinstall_and_cidata(&out, "/dev/vda3");
}

#[test]
fn focal_layout_boots_unattended_with_ovmf() {
    let out = boot(Fixture::Focal, "uefi");
    assert_autoinstall_and_cidata(&out, "/dev/vda3");
}

#[test]
fn jammy_layout_boots_unattended_with_ovmf() {
    let out = boot(Fixture::Jammy, "uefi");
    assert_autoinstall_and_cidata(&out, "/dev/vda4");
}

/// The cluster stick the CLI builds from `cluster` (every machine) and the
/// stand-in `fx`, booted with `firmware`: the default entry is the ISO's
/// own (unattended, the machine picked by MAC), and GRUB's menu also lists
/// the stick's per-machine entries, read from its CIDATA partition.
fn cluster_stick_boots(cluster: &str, fx: Fixture, firmware: &str, cidata: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let c = dir.path().join("c");
    std::fs::create_dir_all(&c).expect("mkdir");
    std::fs::write(c.join("cluster.yaml"), cluster).expect("cluster");
    std::fs::write(
        c.join("secrets.yaml"),
        include_str!("fixtures/secrets.yaml"),
    )
    .expect("secrets");
    std::fs::set_permissions(
        c.join("secrets.yaml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let o = crate::common::bin()
        .arg("build")
        .arg(c.join("cluster.yaml"))
        .arg("-o")
        .arg(dir.path().join("out"))
        .args(["--format", "installer", "--iso"])
        .arg(fixture(fx))
        .output()
        .expect("run microseed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = dir.path().join("out/installer.img");
    let serial = boot_serial(&img, firmware, dir.path(), &format!("{fx:?} (CLI)"));
    let out: Vec<&str> = serial.lines().filter(|l| l.contains("STANDIN-")).collect();
    assert_autoinstall_and_cidata(&out.join("\n"), cidata);
    // The default entry booted: the ISO's own, with no machine named.
    assert!(!out.join("\n").contains("microseed."), "{out:?}");
    // The firmware draws GRUB's screen with escape sequences, which a busy
    // machine splits anywhere (a cursor move inside a title): read the text.
    let serial = strip_escapes(&serial);
    for title in [
        "Install worker-1 (172.20.10.12): ERASES its disk",
        "Reinstall worker-1 (172.20.10.12): ERASES its disk",
        "Install nfs (172.20.10.10): ERASES its disk",
    ] {
        assert!(
            serial.contains(title),
            "{fx:?}/{firmware}: GRUB's menu lacks {title:?}:\n{serial}"
        );
    }
}

/// `text` without its ANSI escape sequences (CSI `ESC [ params final`, and
/// two-byte `ESC x`).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            for p in chars.by_ref() {
                if ('@'..='~').contains(&p) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

#[test]
fn escapes_are_stripped_even_inside_words() {
    assert_eq!(
        strip_escapes("Install wor\x1b[05;12Hker-1 \x1b[0m(x)\x1b7"),
        "Install worker-1 (x)"
    );
}

#[test]
fn noble_cluster_stick_boots_unattended_and_lists_every_machine_with_seabios() {
    cluster_stick_boots(
        include_str!("../examples/eth2-staking-24.04/cluster.yaml"),
        Fixture::Noble,
        "bios",
        "/dev/vda4",
    );
}

#[test]
fn noble_cluster_stick_boots_unattended_and_lists_every_machine_with_ovmf() {
    cluster_stick_boots(
        include_str!("../examples/eth2-staking-24.04/cluster.yaml"),
        Fixture::Noble,
        "uefi",
        "/dev/vda4",
    );
}

#[test]
fn focal_cluster_stick_boots_unattended_and_lists_every_machine_with_ovmf() {
    cluster_stick_boots(
        include_str!("../examples/eth2-staking/cluster.yaml"),
        Fixture::Focal,
        "uefi",
        "/dev/vda3",
    );
}

/// A boot that a failed assertion must not leave running: killing the
/// script's process (it execs unshare --kill-child) ends qemu's namespace.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The 20.04 cluster stick booted with SeaBIOS through isolinux's menu
/// (the stand-in given a menu UI, as Ubuntu's has): the menu lists every
/// machine's entries, with its address and that it erases the disk, and
/// picking "Reinstall worker-1" with the arrow keys (qemu's monitor,
/// `sendkey`) boots the kernel with `microseed.reinstall=worker-1` and
/// `autoinstall` before `---`.
#[test]
fn focal_cluster_stick_isolinux_menu_boots_the_machine_picked_with_seabios() {
    let dir = tempfile::tempdir().expect("tmp");
    let iso = focal_with_isolinux_menu(dir.path());
    let img = cli_stick(
        Fixture::Focal.example_cluster(),
        &iso,
        &dir.path().join("s"),
    );
    // Where the entry sits in the menu: isolinux lists the labels in order.
    let txt = extract(&img, "isolinux/txt.cfg", dir.path());
    let labels: Vec<&str> = txt
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("label "))
        .collect();
    let downs = labels
        .iter()
        .position(|l| *l == "microseed-reinstall-worker-1")
        .unwrap_or_else(|| panic!("no Reinstall worker-1 entry in\n{txt}"));
    let log = dir.path().join("serial.log");
    let mut c = std::process::Command::new("bash");
    crate::common::dies_with_the_test(&mut c);
    let mut qemu = KillOnDrop(
        c.arg(repo().join("scripts/installer-boot-test.sh"))
            .arg(&img)
            .arg("bios")
            .arg(&log)
            // TCG on a loaded machine: generous, as the other boots here.
            .arg("600")
            .arg("monitor.sock")
            .spawn()
            .expect("run installer-boot-test.sh"),
    );
    // Wait for the menu (SeaBIOS copies the screen to the serial console),
    // then type.
    let title = "Reinstall worker-1 (172.20.10.12): ERASES its disk";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(480);
    loop {
        let screen = strip_escapes(&String::from_utf8_lossy(
            &std::fs::read(&log).unwrap_or_default(),
        ));
        if screen.contains("Automatic boot in") {
            for t in [
                "Install nfs (172.20.10.10): ERASES its disk",
                "Install worker-1 (172.20.10.12): ERASES its disk",
                title,
            ] {
                assert!(screen.contains(t), "isolinux's menu lacks {t:?}:\n{screen}");
            }
            break;
        }
        if let Ok(Some(st)) = qemu.0.try_wait() {
            panic!("qemu ended ({st}) before isolinux's menu showed:\n{screen}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no isolinux menu on the serial console:\n{screen}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    {
        use std::io::Write;
        let mut mon = std::os::unix::net::UnixStream::connect(dir.path().join("monitor.sock"))
            .expect("qemu monitor");
        let keys = std::iter::repeat_n("down", downs).chain(["ret"]);
        for k in keys {
            writeln!(mon, "sendkey {k}").expect("sendkey");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
    let status = qemu.0.wait().expect("wait for qemu");
    let serial = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).to_string();
    assert!(
        status.success() && serial.contains("STANDIN-DONE"),
        "qemu {status}:\n{serial}"
    );
    let cmdline = serial
        .lines()
        .find_map(|l| l.split_once("STANDIN-CMDLINE: ").map(|(_, c)| c.trim()))
        .expect("no command line printed");
    let (head, _) = cmdline
        .split_once(" ---")
        .expect("no --- on the command line");
    let words: Vec<&str> = head.split_whitespace().collect();
    assert!(
        words.contains(&"microseed.reinstall=worker-1") && words.contains(&"autoinstall"),
        "{cmdline}"
    );
    assert!(!cmdline.contains("microseed.machine="), "{cmdline}");
}
