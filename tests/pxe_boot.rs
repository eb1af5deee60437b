//! The PXE tree netbooted as docs/pxe.md says, by the real consumers
//! (scripts/pxe-boot-test.sh, in network, mount and PID namespaces of its
//! own, no route out): the generated `dnsmasq.conf`, unmodified, as the
//! proxy beside a plain DHCP server (a second dnsmasq, the "home router"),
//! `microseed serve`, and qemu guests (SeaBIOS and OVMF, TCG) with a listed
//! MAC and an unknown one. A listed MAC boots its own kernel command line
//! and fetches its own seed; an unknown one gets the menu and no kernel.
//! What dnsmasq's TFTP hands out of the tree is checked with curl's tftp://
//! against the same unmodified config. Both need root (namespaces, taps)
//! and fail, saying so, without it: a skipped boot would look like a pass.
//! The logs (proxy, router, serve, every serial console) are kept when a
//! check fails, and the path printed.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{PXE_URL, Scratch, pxe_cluster, root, text};

/// A guest: name, firmware, MAC, and the machine the MAC is listed for.
const GUESTS: [(&str, &str, &str, Option<&str>); 4] = [
    ("bios-master", "bios", "52:54:00:ab:cd:11", Some("master")),
    ("uefi-worker", "uefi", "52:54:00:ab:cd:12", Some("worker-1")),
    ("bios-unknown", "bios", "52:54:00:ab:cd:91", None),
    ("uefi-unknown", "uefi", "52:54:00:ab:cd:92", None),
];

fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "{what} NOT RUN: it needs root (network namespaces, taps, dnsmasq as root); \
         run the suite as root, as scripts/test.sh does"
    );
}

fn built() -> Scratch {
    let s = Scratch::new(&pxe_cluster());
    let o = s.build(&["--format", "pxe", "--pxe-url", PXE_URL]);
    assert!(o.status.success(), "build failed: {}", text(&o).1);
    s
}

/// Runs scripts/pxe-boot-test.sh on the build's `pxe/`, logging to `work`.
fn lab(s: &Scratch, work: &Path, guests: &[String]) {
    let script = root().join("scripts/pxe-boot-test.sh");
    let o = std::process::Command::new("bash")
        .arg(&script)
        .arg(s.out().join("pxe"))
        .arg(work)
        .args(guests)
        .env("MICROSEED_BIN", env!("CARGO_BIN_EXE_microseed"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        o.status.success(),
        "{} could not run ({}):\n{}",
        script.display(),
        o.status,
        text(&o).1
    );
    eprintln!("{}", text(&o).1);
}

fn read(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

/// The last `n` characters of `s`.
fn tail(s: &str, n: usize) -> String {
    let skip = s.chars().count().saturating_sub(n);
    s.chars().skip(skip).collect()
}

/// Panics with `failures` and the logs' tails, keeping `work` for a look.
fn fail_keeping_logs(work: tempfile::TempDir, failures: &[String]) -> ! {
    let kept: PathBuf = work.keep();
    let mut msg = format!(
        "{} check(s) failed; every log is kept in {}:\n  {}\n",
        failures.len(),
        kept.display(),
        failures.join("\n  ")
    );
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&kept)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    logs.sort();
    for p in logs.iter().filter(|p| {
        p.extension()
            .is_some_and(|e| e == "log" || e == "serial" || e == "txt")
    }) {
        msg += &format!(
            "\n===== {} (tail) =====\n{}\n",
            p.display(),
            tail(&read(p), 3000)
        );
    }
    panic!("{msg}");
}

/// Run as root, dnsmasq's TFTP serves only world-readable files: the GRUB
/// menu and the boot files must be, and the seeds (the join token),
/// boot.ipxe and dnsmasq.conf must not be served.
#[test]
fn tftp_serves_the_menu_and_boot_files_but_never_a_seed() {
    require_root("the TFTP check");
    let s = built();
    let work = tempfile::tempdir().expect("tmp");
    lab(&s, work.path(), &[]);
    let listing = read(&work.path().join("tftp.txt"));
    let got: BTreeMap<&str, &str> = listing.lines().filter_map(|l| l.split_once(' ')).collect();
    let mut failures = Vec::new();
    for (rel, verdict) in &got {
        let public = *rel == "grub/grub.cfg" || rel.starts_with("tftp/");
        let ok = if public {
            *verdict == "served"
        } else {
            verdict.starts_with("refused")
        };
        if !ok {
            failures.push(format!(
                "{rel}: {verdict}, expected {}",
                if public { "served" } else { "refused" }
            ));
        }
    }
    for must in [
        "grub/grub.cfg",
        "tftp/snponly.efi",
        "tftp/undionly.kpxe",
        "seeds/master/user-data",
        "seeds/worker-1/meta-data",
        "ipxe/boot.ipxe",
        "dnsmasq.conf",
    ] {
        if !got.contains_key(must) {
            failures.push(format!("{must}: not probed"));
        }
    }
    if !failures.is_empty() {
        fail_keeping_logs(work, &failures);
    }
}

/// The whole netboot, both firmwares, through the unmodified proxy config.
#[test]
fn netboot_through_the_generated_proxy_boots_listed_macs_and_no_kernel_for_others() {
    require_root("the netboot test");
    let s = built();
    let work = tempfile::tempdir().expect("tmp");
    let args: Vec<String> = GUESTS
        .iter()
        .map(|(n, fw, mac, _)| format!("{n},{fw},{mac}"))
        .collect();
    lab(&s, work.path(), &args);

    let w = work.path();
    let serve = read(&w.join("serve.log"));
    let guests = read(&w.join("guests.txt"));
    let mut failures = Vec::new();
    let base = PXE_URL;
    for (name, fw, mac, machine) in GUESTS {
        let Some(row) = guests.lines().find(|l| l.starts_with(&format!("{name} "))) else {
            failures.push(format!("{name}: no row in guests.txt"));
            continue;
        };
        let cols: Vec<&str> = row.split_whitespace().collect();
        let (ip, how) = (cols.get(3).copied().unwrap_or(""), cols.get(4).copied());
        let serial = read(&w.join(format!("{name}.serial")));
        let by_ip: Vec<&str> = serve
            .lines()
            .filter(|l| l.starts_with(&format!("{ip} ")))
            .collect();
        let fetched = |path: &str| {
            by_ip
                .iter()
                .any(|l| l.starts_with(&format!("{ip} GET {path} 200 ")))
        };
        if !fetched("/ipxe/boot.ipxe") {
            failures.push(format!(
                "{name} ({fw}, {mac}): never fetched ipxe/boot.ipxe"
            ));
        }
        match machine {
            Some(m) => {
                if how != Some("exit=0") {
                    failures.push(format!(
                        "{name}: its qemu did not power off ({how:?}): the test initrd never finished"
                    ));
                }
                let cmdline = serial
                    .lines()
                    .find_map(|l| l.split_once("PXETEST-CMDLINE: ").map(|(_, c)| c.trim()))
                    .unwrap_or("");
                let args: Vec<&str> = cmdline.split_whitespace().collect();
                for want in [
                    format!("ds=nocloud-net;s={base}/seeds/{m}/"),
                    "autoinstall".to_string(),
                    "ip=dhcp".to_string(),
                    format!("url={base}/iso/ubuntu-20.04.6-live-server-amd64.iso"),
                    "initrd=initrd".to_string(),
                    "---".to_string(),
                ] {
                    if !args.contains(&want.as_str()) {
                        failures.push(format!(
                            "{name}: kernel command line lacks {want}: {cmdline:?}"
                        ));
                    }
                }
                if args.last() != Some(&"---") {
                    failures.push(format!("{name}: `---` is not last: {cmdline:?}"));
                }
                if cmdline.contains("/seeds/") && !cmdline.contains(&format!("/seeds/{m}/")) {
                    failures.push(format!("{name}: another machine's seed: {cmdline:?}"));
                }
                if !serial.contains(&format!("PXETEST-META-DATA: local-hostname: {m}")) {
                    failures.push(format!("{name}: did not print {m}'s meta-data"));
                }
                if !fetched(&format!("/seeds/{m}/meta-data")) {
                    failures.push(format!("{name}: serve never gave it /seeds/{m}/meta-data"));
                }
                for l in &by_ip {
                    if l.contains(" GET /seeds/") && !l.contains(&format!(" GET /seeds/{m}/")) {
                        failures.push(format!("{name}: fetched another seed: {l}"));
                    }
                }
            }
            None => {
                if how != Some("watched") {
                    failures.push(format!(
                        "{name}: expected to sit on the menu without a kernel, got {how:?}"
                    ));
                }
                if !serial.contains("Boot from local disk") {
                    failures.push(format!("{name}: the menu never showed"));
                }
                if serial.contains("PXETEST-") {
                    failures.push(format!("{name}: a kernel booted"));
                }
                for l in &by_ip {
                    if l.contains(" GET /boot/") || l.contains(" GET /seeds/") {
                        failures.push(format!("{name}: fetched {l}"));
                    }
                }
                if fw == "bios" && !serial.contains("No bootable device") {
                    failures.push(format!(
                        "{name}: SeaBIOS never went past the network to its disks"
                    ));
                }
            }
        }
    }
    if !failures.is_empty() {
        fail_keeping_logs(work, &failures);
    }
}
