//! `build --format pxe`: a tree to netboot the installer from, under `pxe/`.
//!
//! ```text
//! pxe/seeds/<machine>/{user-data,meta-data,network-config}  nocloud-net seeds (HTTP)
//! pxe/ipxe/boot.ipxe       the iPXE script every machine gets through the proxy (HTTP)
//! pxe/grub/grub.cfg        GRUB's menu, for Secure Boot (shim + signed GRUB, TFTP)
//! pxe/dnsmasq.conf         proxy-DHCP + TFTP beside the LAN's DHCP server
//! ```
//!
//! Files the user provides, never written by a build (see docs/pxe.md):
//! `pxe/boot/{vmlinuz,initrd}` (from the ISO's `casper/`), `pxe/iso/<file>`
//! (the release ISO, which the 20.04 netboot loads into RAM) and the boot
//! loaders in `pxe/tftp/` (iPXE's `undionly.kpxe` and `snponly.efi`). The
//! format's row in [`crate::package::FORMATS`] names them so `verify` and
//! `build --check` do not report them as unlisted.
//!
//! Through the proxy, BIOS and UEFI both chain to iPXE, which fetches
//! `boot.ipxe`, the kernel and the initrd over HTTP. Signed GRUB (Secure
//! Boot) ignores proxy offers, so `grub.cfg` serves a LAN whose own DHCP
//! server names the TFTP server: the served tree (`pxe/`) is the TFTP root,
//! since Ubuntu's signed GRUB netboot image has the prefix `/grub`, and GRUB
//! 2.04/2.06 fetch HTTP only from port 80, so GRUB loads the kernel and
//! initrd over TFTP from the same `boot/` that iPXE fetches over HTTP.
//! dnsmasq runs as root, and then its TFTP serves only world-readable files:
//! `grub.cfg` is written 0644, everything else (the seeds hold the join
//! token) stays 0600 and is never served over TFTP. Everything is rendered
//! from the templates in `cloud-init/pxe/`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::diag::{Diagnostic, InputErrors};
use crate::documents::Documents;
use crate::model::{Cluster, Machine};
use crate::output::Staging;
use crate::templates::Templates;

/// Seconds a machine with a listed MAC waits before its install starts.
const TIMEOUT_KNOWN: u32 = 5;
/// Seconds the menu waits before an unknown machine boots its local disk.
const TIMEOUT_UNKNOWN: u32 = 30;

/// Where `microseed serve` will be reachable: `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PxeUrl {
    pub host: String,
    pub port: u16,
}

impl PxeUrl {
    /// Parses `http://HOST:PORT` (a trailing `/` is allowed). HOST is an IPv4
    /// address or a DNS name; every consumer (iPXE, casper's wget,
    /// cloud-init) speaks plain HTTP to `microseed serve`.
    pub fn parse(s: &str) -> std::result::Result<PxeUrl, String> {
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            if s.starts_with("https://") {
                "https is not supported: `microseed serve` speaks plain HTTP, and the 20.04 \
                 netboot fetches with plain HTTP; expected http://HOST:PORT"
                    .to_string()
            } else {
                "expected http://HOST:PORT, such as http://172.20.10.5:8080".to_string()
            }
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or(
            "no port; expected http://HOST:PORT, such as http://172.20.10.5:8080".to_string(),
        )?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or(format!("port {port:?} is not a number from 1 to 65535"))?;
        let ip = host.parse::<Ipv4Addr>().ok();
        if let Some(ip) = ip {
            let what = if ip.is_unspecified() {
                Some("the unspecified address (where `serve` listens on every interface)")
            } else if ip.is_loopback() {
                Some("a loopback address, this machine only")
            } else if ip.is_multicast() || ip.is_broadcast() {
                Some("a multicast or broadcast address")
            } else {
                None
            };
            if let Some(what) = what {
                return Err(format!(
                    "host {ip} is {what}, which no netbooting machine can fetch from; \
                     expected this machine's address on the machines' LAN, such as 172.20.10.5"
                ));
            }
        }
        let is_ip = ip.is_some();
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
            && !host.bytes().all(|c| c.is_ascii_digit() || c == b'.');
        if !is_ip && !is_name {
            return Err(format!(
                "host {host:?} is neither an IPv4 address nor a DNS name (no paths, users or IPv6)"
            ));
        }
        Ok(PxeUrl {
            host: host.to_string(),
            port,
        })
    }

    /// Parses, as an input error (exit 2) naming the flag.
    pub fn from_flag(s: &str) -> Result<PxeUrl> {
        PxeUrl::parse(s).map_err(|m| {
            InputErrors(vec![Diagnostic::error(
                Path::new("--pxe-url"),
                Default::default(),
                "",
                format!("{s:?}: {m}"),
            )])
            .into()
        })
    }

    pub fn base(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

/// What the pxe format needs beyond the cluster.
#[derive(Debug, Clone)]
pub struct PxeOptions {
    pub url: PxeUrl,
    /// Absolute path of `OUT/pxe` where it will finally live (not the staging
    /// or `--check` directory): dnsmasq's `tftp-root`.
    pub served_root: PathBuf,
}

impl PxeOptions {
    /// `out` is the user's output directory.
    pub fn new(url: PxeUrl, out: &Path) -> Result<PxeOptions> {
        let abs = std::path::absolute(out)
            .with_context(|| format!("resolving {}", out.display()))?
            .join("pxe");
        let s = abs.to_str().unwrap_or("");
        // dnsmasq splits option values at commas and treats quotes and `#`
        // specially; refuse what would not survive its parser.
        if s.is_empty()
            || s.chars()
                .any(|c| c.is_control() || c.is_whitespace() || ",\"#'\\".contains(c))
        {
            return Err(InputErrors(vec![Diagnostic::error(
                out,
                Default::default(),
                "",
                "the pxe format writes this directory's absolute path into dnsmasq.conf \
                 (tftp-root), which cannot hold whitespace, commas, quotes, '#' or non-UTF-8; \
                 choose another -o",
            )])
            .into());
        }
        Ok(PxeOptions {
            url,
            served_root: abs,
        })
    }
}

#[derive(Serialize)]
struct MachineCtx<'a> {
    name: &'a str,
    role: &'a str,
    ip: String,
    mac: Option<&'a str>,
    /// `ds=nocloud-net;s=URL/` (the URL needs its trailing `/`); GRUB's
    /// template quotes it, since an unquoted `;` ends a GRUB command.
    ds: String,
}

#[derive(Serialize)]
struct Ctx<'a> {
    cluster: &'a str,
    release: &'a str,
    url: String,
    host: &'a str,
    kernel: String,
    initrd: String,
    kernel_name: String,
    initrd_name: String,
    args_before: String,
    args_after: String,
    subnet: String,
    network: String,
    netmask: String,
    tftp_root: String,
    timeout_known: u32,
    timeout_unknown: u32,
    machines: Vec<MachineCtx<'a>>,
}

fn file_name(p: &str) -> Result<String> {
    Path::new(p)
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .with_context(|| format!("release profile boot file {p:?} has no file name"))
}

/// The seed URL of one machine, with the trailing `/` nocloud-net needs.
pub fn seed_url(url: &PxeUrl, machine: &str) -> String {
    format!("{}/seeds/{machine}/", url.base())
}

/// Kernel arguments for the 20.04 netboot, split around the `ds=` argument.
/// `autoinstall` skips subiquity's "Continue with autoinstall?" question;
/// `url=` makes casper fetch the ISO into RAM (`root=/dev/ram0`, a ramdisk
/// large enough for it); `cloud-config-url=/dev/null` stops the live
/// system's cloud-init from also downloading `url=` as a cloud-config (as
/// Ubuntu's netboot instructions do). Nothing follows `---`, so nothing
/// carries over to the installed system.
fn kernel_args(url: &PxeUrl, iso_file: &str) -> (String, String) {
    (
        format!("ip=dhcp url={}/iso/{iso_file} autoinstall", url.base()),
        "root=/dev/ram0 ramdisk_size=1500000 cloud-config-url=/dev/null ---".to_string(),
    )
}

/// Writes one machine's nocloud-net seed under `pxe/seeds/`.
pub fn write_seed(staging: &mut Staging, m: &Machine, docs: &Documents) -> Result<()> {
    for ((name, bytes), sum) in docs.files().into_iter().zip(docs.sha256()) {
        staging.write_hashed(&format!("pxe/seeds/{}/{name}", m.name), bytes, *sum)?;
    }
    Ok(())
}

/// Writes the menus and dnsmasq.conf that list `machines`.
pub fn write_menus(
    staging: &mut Staging,
    cluster: &Cluster,
    machines: &[&Machine],
    opts: &PxeOptions,
    templates: Option<&Path>,
) -> Result<()> {
    let release = &cluster.release;
    let subnet = cluster.network.subnet;
    let kernel_name = file_name(&release.boot.kernel)?;
    let initrd_name = file_name(&release.boot.initrd)?;
    let (args_before, args_after) = kernel_args(&opts.url, &release.iso.file);
    let ctx = Ctx {
        cluster: &cluster.name,
        release: &release.release,
        url: opts.url.base(),
        host: &opts.url.host,
        kernel: format!("boot/{kernel_name}"),
        initrd: format!("boot/{initrd_name}"),
        kernel_name,
        initrd_name,
        args_before,
        args_after,
        subnet: subnet.to_string(),
        network: subnet.network().to_string(),
        netmask: Ipv4Addr::from(subnet.mask()).to_string(),
        tftp_root: opts.served_root.to_str().context("non-UTF-8 path")?.into(),
        timeout_known: TIMEOUT_KNOWN,
        timeout_unknown: TIMEOUT_UNKNOWN,
        machines: machines
            .iter()
            .map(|m| MachineCtx {
                name: &m.name,
                role: &m.role,
                ip: m.ip.to_string(),
                mac: m.mac.as_deref(),
                ds: format!("ds=nocloud-net;s={}", seed_url(&opts.url, &m.name)),
            })
            .collect(),
    };
    let mut templates = Templates::new(templates);
    let context = tera::Context::from_serialize(&ctx)?;
    // Which files dnsmasq's TFTP may hand out: run as root, it serves only
    // world-readable ones. GRUB reads its menu over TFTP; iPXE reads its
    // script over HTTP, and nothing reads dnsmasq.conf over the network, so
    // those stay owner-only like the seeds.
    for (template, out, tftp) in [
        ("pxe/grub.cfg.tera", "pxe/grub/grub.cfg", true),
        ("pxe/boot.ipxe.tera", "pxe/ipxe/boot.ipxe", false),
        ("pxe/dnsmasq.conf.tera", "pxe/dnsmasq.conf", false),
    ] {
        let text = templates
            .render(template, &context)
            .with_context(|| format!("rendering {}", templates.origin(template)))?;
        if tftp {
            staging.write_world_readable(out, text.as_bytes())?;
        } else {
            staging.write(out, text.as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pxe_url_accepts_host_and_port() {
        let u = PxeUrl::parse("http://172.20.10.5:8080/").unwrap();
        assert_eq!(u.base(), "http://172.20.10.5:8080");
        assert_eq!(
            PxeUrl::parse("http://boot.lan:80").unwrap().host,
            "boot.lan"
        );
    }

    #[test]
    fn pxe_url_rejects_malformed() {
        for bad in [
            "172.20.10.5:8080",
            "https://h:1",
            "http://h",
            "http://h:0",
            "http://h:99999",
            "http://h:80/seeds",
            "http://u@h:80",
            "http://[::1]:80",
            "http://:80",
            "http://300.1.1.1:80",
            "http://h h:80",
        ] {
            assert!(PxeUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
