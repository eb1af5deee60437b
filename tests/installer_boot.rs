//! Boot the patched stand-in installer images under qemu (TCG, from the cached
//! bookworm chroot; scripts/installer-boot-test.sh) and read the serial
//! console: the kernel command line carries `autoinstall` before `---`, and a
//! filesystem labelled CIDATA is visible to the booted system. 20.04 layout
//! with SeaBIOS (isolinux) and OVMF (GRUB), 22.04 layout with OVMF, and the
//! 24.04 image the CLI builds with both.
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
