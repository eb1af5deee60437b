//! `build --format pxe`: nocloud-net seeds identical to the dir format, a GRUB
//! menu GRUB's own checker accepts with the datasource argument quoted, an
//! iPXE script (checked by inspection), a dnsmasq config dnsmasq accepts, the
//! files' modes (what dnsmasq's TFTP may serve), and the `--pxe-url` flag's
//! validation. The tree netbooted for real: `pxe_boot.rs`.

use crate::common;

use common::{PXE_URL, Scratch, pxe_cluster, run, text, tree};

const MACHINES: [&str; 3] = ["nfs", "master", "worker-1"];
const DOCS: [&str; 3] = ["user-data", "meta-data", "network-config"];

fn built() -> Scratch {
    let s = Scratch::new(&pxe_cluster());
    let o = s.build(&["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    assert!(o.status.success(), "build failed: {}", text(&o).1);
    s
}

fn read(s: &Scratch, rel: &str) -> String {
    std::fs::read_to_string(s.out().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn pxe_seeds_have_the_same_bytes_as_the_dir_format() {
    let s = built();
    for m in MACHINES {
        for d in DOCS {
            assert_eq!(
                read(&s, &format!("{m}/{d}")),
                read(&s, &format!("pxe/seeds/{m}/{d}")),
                "{m}/{d}"
            );
        }
    }
}

#[test]
fn pxe_files_are_listed_in_the_manifest() {
    let s = built();
    let sums = read(&s, "SHA256SUMS");
    for f in [
        "pxe/grub/grub.cfg",
        "pxe/ipxe/boot.ipxe",
        "pxe/dnsmasq.conf",
        "pxe/seeds/worker-1/user-data",
        "pxe/seeds/nfs/network-config",
    ] {
        assert!(sums.contains(&format!("  {f}\n")), "{f} not listed");
    }
    let o = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(s.out())
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "{}", text(&o).0);
}

#[test]
fn pxe_build_is_byte_identical_when_repeated() {
    let s = built();
    let first = tree(&s.out());
    let o = s.build(&["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    assert!(o.status.success());
    assert_eq!(first, tree(&s.out()));
}

#[test]
fn grub_config_passes_grub_script_check() {
    let s = built();
    let cfg = s.out().join("pxe/grub/grub.cfg");
    let o = run("grub-script-check", &[cfg.to_str().expect("utf-8")]);
    assert!(o.status.success(), "grub-script-check: {:?}", text(&o));
}

#[test]
fn grub_config_quotes_the_datasource_so_the_semicolon_survives() {
    let s = built();
    let cfg = read(&s, "pxe/grub/grub.cfg");
    for m in MACHINES {
        let quoted = format!("\"ds=nocloud-net;s={PXE_URL}/seeds/{m}/\"");
        let linux = cfg
            .lines()
            .find(|l| l.trim_start().starts_with("linux ") && l.contains(&quoted))
            .unwrap_or_else(|| panic!("no linux line with {quoted}:\n{cfg}"));
        for arg in [
            "/boot/vmlinuz",
            " autoinstall ",
            " ip=dhcp ",
            "url=http://172.20.10.5:8080/iso/ubuntu-20.04.6-live-server-amd64.iso",
            " root=/dev/ram0 ",
            " ramdisk_size=1500000 ",
        ] {
            assert!(linux.contains(arg), "{m}: {arg} missing in {linux}");
        }
        assert!(linux.trim_end().ends_with(" ---"), "{linux}");
    }
    // No `;` outside double quotes on a kernel command line.
    for l in cfg.lines().filter(|l| l.trim_start().starts_with("linux ")) {
        let mut quoted = false;
        for c in l.chars() {
            match c {
                '"' => quoted = !quoted,
                ';' => assert!(quoted, "unquoted ; in {l}"),
                _ => {}
            }
        }
    }
    assert_eq!(cfg.matches("initrd /boot/initrd").count(), 3);
}

#[test]
fn grub_config_selects_known_macs_and_defaults_to_the_local_disk() {
    let s = built();
    let cfg = read(&s, "pxe/grub/grub.cfg");
    assert!(cfg.contains("set default=local\n"));
    assert!(cfg.contains(
        "if [ \"${net_default_mac}\" = \"52:54:00:ab:cd:11\" ]; then\n  set default=\"master\""
    ));
    assert!(cfg.contains(
        "if [ \"${net_default_mac}\" = \"52:54:00:ab:cd:12\" ]; then\n  set default=\"worker-1\""
    ));
    // The NFS server has no MAC: a menu entry only.
    assert_eq!(cfg.matches("net_default_mac").count(), 2);
    assert!(cfg.contains("--id \"nfs\""));
}

/// Debian has no iPXE script checker (the ipxe package ships only binaries),
/// so the script is checked by inspection: header, one `iseq` branch per MAC,
/// a menu item per machine, and a kernel/initrd/boot triple per label.
#[test]
fn ipxe_script_branches_on_each_mac_and_boots_each_machine() {
    let s = built();
    let script = read(&s, "pxe/ipxe/boot.ipxe");
    assert!(script.starts_with("#!ipxe\n"));
    assert!(script.contains("iseq ${net0/mac} 52:54:00:ab:cd:11 && goto master ||\n"));
    assert!(script.contains("iseq ${net0/mac} 52:54:00:ab:cd:12 && goto worker-1 ||\n"));
    assert_eq!(script.matches("iseq ").count(), 2);
    assert!(script.contains("choose --default local "));
    let lines: Vec<&str> = script.lines().collect();
    for m in MACHINES {
        assert!(script.contains(&format!("\nitem {m} ")), "menu item {m}");
        let at = lines
            .iter()
            .position(|l| *l == format!(":{m}"))
            .unwrap_or_else(|| panic!("label :{m}"));
        let body: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with(':'))
            .copied()
            .collect();
        let kernel = body
            .iter()
            .find(|l| l.starts_with("kernel "))
            .expect("kernel");
        assert!(kernel.starts_with(&format!("kernel {PXE_URL}/boot/vmlinuz initrd=initrd ")));
        assert!(kernel.contains(&format!(" ds=nocloud-net;s={PXE_URL}/seeds/{m}/ ")));
        assert!(kernel.contains(" autoinstall "));
        assert!(kernel.contains(" root=/dev/ram0 ramdisk_size=1500000 "));
        let k = body
            .iter()
            .position(|l| l.starts_with("kernel "))
            .expect("k");
        assert_eq!(body[k + 1], format!("initrd {PXE_URL}/boot/initrd"));
        assert_eq!(body[k + 2], "boot");
    }
}

#[test]
fn dnsmasq_config_passes_dnsmasq_test() {
    let s = built();
    let conf = s.out().join("pxe/dnsmasq.conf");
    let o = run(
        "dnsmasq",
        &["--test", &format!("--conf-file={}", conf.display())],
    );
    assert!(o.status.success(), "dnsmasq --test: {:?}", text(&o));
    let c = read(&s, "pxe/dnsmasq.conf");
    let served = s.out().join("pxe");
    for line in [
        "port=0".to_string(),
        "dhcp-range=172.20.0.0,proxy,255.255.240.0".to_string(),
        "enable-tftp".to_string(),
        format!("tftp-root={}", served.display()),
        // The next-server (the serving host) iPXE needs to take the
        // proxy's answer on a BIOS machine.
        format!("dhcp-boot=tag:ipxe,{PXE_URL}/ipxe/boot.ipxe,,172.20.10.5"),
    ] {
        assert!(c.lines().any(|l| l == line), "{line} missing:\n{c}");
    }
    // Firmware without iPXE gets iPXE: undionly.kpxe for BIOS, snponly.efi
    // for UEFI (shim and signed GRUB ignore a proxy's offer).
    for (csa, file) in [
        ("x86PC", "tftp/undionly.kpxe"),
        ("X86-64_EFI", "tftp/snponly.efi"),
        ("BC_EFI", "tftp/snponly.efi"),
    ] {
        let l = c
            .lines()
            .find(|l| l.starts_with(&format!("pxe-service=tag:!ipxe,{csa},")))
            .unwrap_or_else(|| panic!("no pxe-service for {csa}:\n{c}"));
        assert!(l.ends_with(&format!(",{file}")), "{l}");
    }
}

#[test]
fn pxe_format_without_pxe_url_is_bad_input_and_writes_nothing() {
    let s = Scratch::new(&pxe_cluster());
    let o = s.build(&["--format", "pxe"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("--pxe-url"));
    assert!(!s.out().exists());
}

#[test]
fn malformed_pxe_url_is_bad_input_before_secrets_are_created() {
    let s = Scratch::new(&pxe_cluster());
    std::fs::remove_file(s.dir.path().join("secrets.yaml")).expect("rm");
    for bad in [
        "172.20.10.5:8080",
        "http://172.20.10.5",
        "https://172.20.10.5:8080",
        "http://172.20.10.5:8080/seeds/",
        "http://172.20.10.5:99999",
    ] {
        let o = s.build(&["--format", "pxe", "--pxe-url", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {:?}", text(&o));
        assert!(text(&o).1.contains("--pxe-url"), "{bad}: {}", text(&o).1);
    }
    assert!(!s.out().exists());
    assert!(!s.dir.path().join("secrets.yaml").exists());
}

#[test]
fn boot_files_copied_into_pxe_survive_a_rebuild() {
    let s = built();
    let boot = s.out().join("pxe/boot");
    std::fs::create_dir_all(&boot).expect("mkdir");
    std::fs::write(boot.join("vmlinuz"), b"kernel bytes").expect("write");
    std::fs::create_dir_all(s.out().join("pxe/tftp/sub")).expect("mkdir");
    std::fs::write(s.out().join("pxe/tftp/sub/undionly.kpxe"), b"ipxe").expect("write");
    let o = s.build(&[
        "--format",
        "dir,pxe",
        "--pxe-url",
        "http://172.20.10.5:8080",
    ]);
    assert!(o.status.success(), "{}", common::text(&o).1);
    assert_eq!(
        std::fs::read(boot.join("vmlinuz")).expect("kept"),
        b"kernel bytes"
    );
    assert_eq!(
        std::fs::read(s.out().join("pxe/tftp/sub/undionly.kpxe")).expect("kept"),
        b"ipxe"
    );
    let sums = std::fs::read_to_string(s.out().join("SHA256SUMS")).expect("sums");
    assert!(
        !sums.contains("pxe/boot/"),
        "user-provided files are not the build's output"
    );
    let o = common::bin()
        .arg("verify")
        .arg(s.out())
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", common::text(&o).0);
}

/// dnsmasq's TFTP, run as root, serves only world-readable files: the GRUB
/// menu must be one, whatever the umask, and nothing holding a secret may be.
#[test]
fn grub_menu_is_world_readable_and_the_seeds_stay_owner_only_under_any_umask() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let s = Scratch::new(&pxe_cluster());
    let mut c = common::bin();
    c.arg("build")
        .arg(s.cluster())
        .arg("-o")
        .arg(s.out())
        .args(["--format", "pxe", "--pxe-url", PXE_URL]);
    // SAFETY: umask is async-signal-safe and touches only the child.
    unsafe {
        c.pre_exec(|| {
            libc::umask(0o077);
            Ok(())
        });
    }
    let o = c.output().expect("run");
    assert!(o.status.success(), "{}", text(&o).1);
    let mode = |rel: &str| {
        std::fs::metadata(s.out().join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("pxe/grub/grub.cfg"), 0o644);
    for rel in [
        "pxe/ipxe/boot.ipxe",
        "pxe/dnsmasq.conf",
        "pxe/seeds/master/user-data",
        "pxe/seeds/worker-1/meta-data",
        "pxe/seeds/nfs/network-config",
    ] {
        assert_eq!(mode(rel), 0o600, "{rel}");
    }
    for dir in ["pxe", "pxe/seeds", "pxe/seeds/master", "pxe/grub"] {
        assert_eq!(mode(dir), 0o700, "{dir}");
    }
}
