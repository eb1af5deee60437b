//! The build pipeline: cluster file -> validated model -> per-machine plans ->
//! documents -> packaging into a staged output tree -> manifest. Commands call
//! in here; nothing here prints except through the progress reporter.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::diag::{Diagnostic, InputErrors};
use crate::model::{Cluster, Machine};
use crate::output::{Staging, Written};
use crate::plan::Planner;
use crate::profile::Profiles;
use crate::render::{self, Documents, Target};
use crate::secrets::{self, Secrets};
use crate::{cluster, validate};

/// Where to read profiles and templates from, and how strict to be.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub profiles: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub strict: bool,
}

/// A cluster file that passed validation, with what it needs to render.
pub struct Loaded {
    pub file: PathBuf,
    pub cluster: Cluster,
    pub profiles: Profiles,
    pub secrets: Option<Secrets>,
    pub secrets_path: PathBuf,
    pub warnings: Vec<Diagnostic>,
    /// Set when this run created the secrets file.
    pub created_secrets: bool,
}

/// What to do when the secrets file is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingSecrets {
    /// `check`: only validate the cluster file.
    Skip,
    /// `build`: create it (and say so).
    Create,
    /// `render`: a missing file is an error (render never writes).
    Require,
}

/// Reads and validates the cluster file and its secrets.
pub fn load(file: &Path, src: &Sources, missing: MissingSecrets) -> Result<Loaded> {
    let text = crate::input::read_text(file, "cluster file")?;
    let profiles = Profiles::load(src.profiles.as_deref())?;
    let raw = cluster::parse(file, &text)?;
    let cluster = validate::validate(file, &raw, &profiles)?;
    let secrets_path = secrets::path_for(file);
    let mut warnings = Vec::new();
    let mut created = false;
    let secrets = if secrets_path.exists() {
        let wallets = cluster
            .staking
            .enabled
            .then_some(cluster.nfs.validator_clients);
        let (s, w) = secrets::load(&secrets_path, src.strict, wallets)?;
        warnings.extend(w);
        Some(s)
    } else {
        match missing {
            MissingSecrets::Skip => None,
            MissingSecrets::Require => {
                return Err(InputErrors(vec![Diagnostic::error(
                    &secrets_path,
                    Default::default(),
                    "",
                    "missing; run `microseed init` or `microseed build` once to create it",
                )])
                .into());
            }
            MissingSecrets::Create => {
                let s = secrets::generate()?;
                secrets::create(&secrets_path, &s)?;
                created = true;
                Some(s)
            }
        }
    };
    Ok(Loaded {
        file: file.to_path_buf(),
        cluster,
        profiles,
        secrets,
        secrets_path,
        warnings,
        created_secrets: created,
    })
}

/// Picks the machines to build: all, or the named subset, each once, in the
/// order first named (unknown names are input errors).
pub fn select<'a>(loaded: &'a Loaded, names: &[String]) -> Result<Vec<&'a Machine>> {
    if names.is_empty() {
        return Ok(loaded.cluster.machines.iter().collect());
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for n in names {
        match loaded.cluster.machine(n) {
            // `--machine x --machine x` builds x once: twice would stage the
            // same files twice and list them twice in SHA256SUMS.
            Some(m) if out.iter().any(|o: &&Machine| o.name == m.name) => {}
            Some(m) => out.push(m),
            None => {
                let known: Vec<&str> = loaded
                    .cluster
                    .machines
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect();
                errors.push(Diagnostic::error(
                    &loaded.file,
                    Default::default(),
                    "machines",
                    format!(
                        "no machine named {n:?}; the cluster has {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors).into());
    }
    Ok(out)
}

/// Renders the documents of the given machines.
pub fn render_machines(
    loaded: &Loaded,
    src: &Sources,
    machines: &[&Machine],
    target: Target,
) -> Result<Vec<Documents>> {
    let mut planner = planner(loaded, src)?;
    machines
        .iter()
        .map(|m| render_one(&mut planner, loaded, m, target))
        .collect()
}

fn planner<'a>(loaded: &'a Loaded, src: &Sources) -> Result<Planner<'a>> {
    let secrets = loaded
        .secrets
        .as_ref()
        .context("secrets are needed to render")?;
    Planner::new(
        &loaded.cluster,
        &loaded.profiles,
        secrets,
        src.templates.as_deref(),
    )
}

fn render_one(
    planner: &mut Planner<'_>,
    loaded: &Loaded,
    m: &Machine,
    target: Target,
) -> Result<Documents> {
    let plan = planner
        .plan(m)
        .with_context(|| format!("planning {}", m.name))?;
    render::documents(&loaded.cluster, &plan, target)
        .with_context(|| format!("rendering {}", m.name))
}

/// Output formats `build` can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `<machine>/{user-data,meta-data,network-config}`.
    Dir,
    /// `<machine>/seed.img`: a GPT disk image with a FAT partition labelled
    /// CIDATA, for a USB stick or a VM disk.
    SeedImg,
    /// `<machine>/installer.img`: the Ubuntu installer ISO patched to
    /// install unattended, with the machine's seed as a CIDATA partition.
    Installer,
    /// `pxe/`: nocloud-net seeds, GRUB and iPXE menus, dnsmasq.conf (needs `--pxe-url`).
    Pxe,
}

pub struct BuildRequest<'a> {
    pub out: &'a Path,
    pub machines: &'a [String],
    pub target: Target,
    pub formats: &'a [Format],
    /// Required when `formats` has [`Format::Pxe`].
    pub pxe: Option<&'a crate::pxe::PxeOptions>,
    /// Required when `formats` has [`Format::Installer`].
    pub installer: Option<&'a InstallerOptions>,
}

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

/// Builds every requested format into a staged tree and swaps it into place.
pub fn build(loaded: &Loaded, src: &Sources, req: &BuildRequest<'_>) -> Result<Written> {
    let machines = select(loaded, req.machines)?;
    let epoch = crate::image::source_date_epoch()?;
    let mut planner = planner(loaded, src)?;
    // Render and write one machine at a time: holding every machine's
    // documents first made peak memory grow with the fleet (a 1,000-machine
    // build held ~40 MB of user-data). They are kept only for the formats
    // below that need them after the loop.
    let keep = req.formats.contains(&Format::Installer) || req.formats.contains(&Format::Pxe);
    let mut docs = Vec::with_capacity(if keep { machines.len() } else { 0 });
    let mut staging = Staging::new(req.out)?;
    for m in &machines {
        let d = render_one(&mut planner, loaded, m, req.target)?;
        if req.formats.contains(&Format::Dir) {
            for (name, bytes) in d.files() {
                staging.write(&format!("{}/{name}", m.name), bytes)?;
            }
        }
        if req.formats.contains(&Format::SeedImg) {
            let img = crate::image::seed_image(&d.files(), epoch)
                .with_context(|| format!("making the seed image of {}", m.name))?;
            staging.write_sparse(&format!("{}/seed.img", m.name), &img)?;
        }
        if keep {
            docs.push(d);
        }
    }
    crate::cleanup::pause_point("staged");
    drop(planner);
    if req.formats.contains(&Format::Installer) {
        let opts = req
            .installer
            .context("the installer format needs its options")?;
        let (iso, configs) = installer_iso(loaded, src, opts)?;
        let configs: Vec<&str> = configs.iter().map(String::as_str).collect();
        let bar = progress_bar(opts.progress, machines.len() as u64, "installer images");
        for (m, d) in machines.iter().zip(&docs) {
            bar.set_message(m.name.clone());
            let rel = format!("{}/installer.img", m.name);
            let path = staging.path_for(&rel)?;
            let report = crate::iso::make_installer_image(&iso, &path, &d.files(), &configs, epoch)
                .with_context(|| format!("making the installer image of {}", m.name))?;
            staging.record_hashed(&rel, report.sha256, report.image_size);
            bar.inc(1);
        }
        bar.finish_and_clear();
    }
    // The boot files, ISO and loaders the user copied in survive every
    // rebuild, also one that does not ask for pxe this time.
    for dir in crate::pxe::PROVIDED_DIRS {
        staging.carry_over(dir)?;
    }
    if req.formats.contains(&Format::Pxe) {
        let opts = req.pxe.context("the pxe format needs --pxe-url")?;
        crate::pxe::write(
            &mut staging,
            loaded,
            &machines,
            &docs,
            opts,
            src.templates.as_deref(),
        )?;
    }
    staging.commit()
}

/// The installer ISO for the cluster's release (`--iso`, else the cache,
/// fetched and verified when missing) and the boot configs to patch in it.
pub fn installer_iso(
    loaded: &Loaded,
    src: &Sources,
    opts: &InstallerOptions,
) -> Result<(PathBuf, Vec<String>)> {
    let release = loaded
        .profiles
        .releases
        .get(&loaded.cluster.release)
        .with_context(|| format!("no profile for release {}", loaded.cluster.release))?;
    let iso = match &opts.iso {
        Some(p) => p.clone(),
        None => {
            if !release.origin.to_string_lossy().starts_with("embedded:") {
                crate::errln!(
                    "note: release {} comes from {}: its pinned digest or signing key is \
                     trusted as written there",
                    release.release,
                    release.origin.display()
                );
            }
            let spec = crate::iso::IsoSpec::for_release(release, src.profiles.as_deref())?;
            crate::iso::ensure_iso(
                &spec,
                &opts.cache_dir,
                &crate::iso::FetchOptions {
                    offline: opts.offline,
                    progress: opts.progress,
                },
            )
            .context("getting the installer ISO (or pass --iso PATH)")?
            .path
        }
    };
    Ok((iso, release.boot.configs.clone()))
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
