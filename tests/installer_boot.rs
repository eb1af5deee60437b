//! Boot the patched stand-in installer images under qemu (TCG, from the cached
//! bookworm chroot; scripts/installer-boot-test.sh) and read the serial
//! console: the kernel command line carries `autoinstall` before `---`, and a
//! filesystem labelled CIDATA is visible to the booted system. 20.04 layout
//! with SeaBIOS (isolinux) and OVMF (GRUB), 22.04 layout with OVMF.
//! Slow (about a minute each under software emulation).

#[path = "iso_common/mod.rs"]
mod common;

use common::*;

fn boot(fx: Fixture, firmware: &str) -> String {
    let (dir, img, report) = patched(fx);
    let log = dir.path().join("serial.log");
    let script = repo().join("scripts/installer-boot-test.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(&img)
        .arg(firmware)
        .arg(&log)
        .arg("400")
        .status()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let serial = String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).to_string();
    let lines: Vec<&str> = serial.lines().filter(|l| l.contains("STANDIN-")).collect();
    assert!(
        status.success() && serial.contains("STANDIN-DONE"),
        "{fx:?}/{firmware}: qemu {status}, serial console:\n{}",
        serial
            .chars()
            .rev()
            .take(4000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    eprintln!("{fx:?}/{firmware}: {report:?}\n{}", lines.join("\n"));
    lines.join("\n")
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
