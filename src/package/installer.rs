//! `--format installer`: `installer.img`, the cluster stick: the release's
//! Ubuntu installer ISO patched to install unattended, with every selected
//! machine's seed on one CIDATA partition (see [`crate::iso`] and
//! [`crate::stick`]). With `--machine`, the stick holds those machines only.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Packager, Run, Spec};
use crate::documents::Documents;
use crate::model::Machine;
use crate::output::Staging;
use crate::profile::ReleaseProfile;

pub const SPEC: Spec = Spec {
    name: "installer",
    help: "`installer.img`: one stick for every selected machine, the Ubuntu installer \
           ISO patched to install unattended, which picks the machine by MAC or boot menu",
    provided: &[],
    start,
};

/// The image's name in OUT.
pub const IMAGE: &str = "installer.img";

/// Where the installer ISO comes from.
#[derive(Debug, Clone)]
pub struct InstallerOptions {
    /// A local ISO; `None` downloads the release's ISO into `cache_dir`.
    pub iso: Option<PathBuf>,
    pub cache_dir: PathBuf,
    pub progress: bool,
    /// Any network use is an error (the ISO must be in the cache).
    pub offline: bool,
}

fn start(run: &Run<'_>) -> Result<Box<dyn Packager>> {
    let opts = run
        .options
        .installer
        .clone()
        .context("the installer format needs its options")?;
    Ok(Box::new(Installer {
        opts,
        docs: Vec::with_capacity(run.machines.len()),
    }))
}

/// Keeps every machine's documents: the ISO is fetched (or checked) once
/// all machines rendered, so an input error never waits for a download.
struct Installer {
    opts: InstallerOptions,
    docs: Vec<(String, Documents)>,
}

impl Packager for Installer {
    fn machine(
        &mut self,
        _run: &Run<'_>,
        m: &Machine,
        docs: &Documents,
        _staging: &mut Staging,
    ) -> Result<()> {
        self.docs.push((m.name.clone(), docs.clone()));
        Ok(())
    }

    fn finish(self: Box<Self>, run: &Run<'_>, staging: &mut Staging) -> Result<()> {
        let release = &run.cluster.release;
        let iso_path = iso(release, run.profiles, &self.opts)?;
        let configs: Vec<&str> = release.boot.configs.iter().map(String::as_str).collect();
        let machines: Vec<(&Machine, &Documents)> = self
            .docs
            .iter()
            .map(|(name, d)| {
                run.cluster
                    .machine(name)
                    .map(|m| (m, d))
                    .with_context(|| format!("machine {name} is not in the cluster"))
            })
            .collect::<Result<_>>()?;
        let files = crate::stick::files(run.cluster, &machines)?;
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
        let bar = progress_bar(self.opts.progress, 1, "installer image");
        let path = staging.path_for(IMAGE)?;
        let report = crate::iso::make_installer_image_cached(
            &iso_path,
            &path,
            &refs,
            &configs,
            run.epoch,
            Some(&self.opts.cache_dir),
        )
        .context("making the cluster's installer image")?;
        let syslinux: Vec<_> = report
            .boot_configs
            .iter()
            .filter(|c| {
                crate::iso::bootcfg::Flavour::from_path(&c.path)
                    == crate::iso::bootcfg::Flavour::Syslinux
            })
            .collect();
        if let Some(c) = syslinux.first()
            && !syslinux.iter().any(|c| c.machine_entries)
        {
            // The ISO could not take a moved txt.cfg (a UDF bridge, say).
            crate::errln!(
                "note: BIOS boots of this ISO use isolinux, and its {} could not be given \
                 the machine entries: that menu offers only the automatic entry (the machine \
                 picked by MAC); UEFI boots also list each machine (docs/stick.md)",
                c.path
            );
        }
        staging.record_hashed(IMAGE, report.sha256, report.image_size);
        bar.inc(1);
        bar.finish_and_clear();
        Ok(())
    }
}

/// The installer ISO for a release: `--iso`, else the cache (fetched and
/// verified when missing). `profiles` is `--profiles DIR`.
pub fn iso(
    release: &ReleaseProfile,
    profiles: Option<&Path>,
    opts: &InstallerOptions,
) -> Result<PathBuf> {
    if let Some(p) = &opts.iso {
        return Ok(p.clone());
    }
    if !release.origin.to_string_lossy().starts_with("embedded:") {
        crate::errln!(
            "note: release {} comes from {}: its pinned digest or signing key is \
             trusted as written there",
            release.release,
            release.origin.display()
        );
    }
    let spec = crate::iso::IsoSpec::for_release(release, profiles)?;
    Ok(crate::iso::ensure_iso(
        &spec,
        &opts.cache_dir,
        &crate::iso::FetchOptions {
            offline: opts.offline,
            progress: opts.progress,
        },
    )
    .context("getting the installer ISO (or pass --iso PATH)")?
    .path)
}

/// A progress bar on stderr, hidden when it is not a terminal or not wanted.
fn progress_bar(show: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
        "{what} {{bar:30}} {{pos}}/{{len}} {{msg}}"
    )) {
        bar.set_style(style);
    }
    bar
}
