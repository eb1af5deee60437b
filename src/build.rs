//! The build pipeline: cluster file -> validated model -> per-machine plans ->
//! documents -> packaging into a staged output tree -> manifest. Commands call
//! in here; nothing here prints except through the progress reporter.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::diag::{Diagnostic, InputErrors};
use crate::documents::{self, Documents, Target};
use crate::model::{Cluster, Machine};
use crate::output::{Staging, Written};
use crate::plan::Planner;
use crate::profile::Profiles;
use crate::secrets::{self, Secrets};
use crate::{package, schema, validate};

/// Where to read profiles and templates from, and how strict to be.
#[derive(Debug, Clone, Default)]
pub struct GlobalOptions {
    pub profiles: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    pub strict: bool,
}

/// A cluster file that passed validation, with what it needs to render.
pub struct ClusterInputs {
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
pub fn load(file: &Path, src: &GlobalOptions, missing: MissingSecrets) -> Result<ClusterInputs> {
    let text = crate::input::read_text(file, crate::input::CLUSTER_FILE)?;
    let profiles = Profiles::load(src.profiles.as_deref())?;
    let raw = schema::parse(file, &text)?;
    let cluster = validate::validate(file, &raw, &profiles)?;
    let secrets_path = secrets::path_for(file);
    let mut warnings = validate::short_serial_warnings(file, &raw);
    let mut created = false;
    // Anything at the path, even a link to nowhere, is the user's secrets
    // file: read it (and refuse it clearly), never write a new one there.
    let secrets = if secrets_path.symlink_metadata().is_ok() {
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
    Ok(ClusterInputs {
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
pub fn select<'a>(loaded: &'a ClusterInputs, names: &[String]) -> Result<Vec<&'a Machine>> {
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
    loaded: &ClusterInputs,
    src: &GlobalOptions,
    machines: &[&Machine],
    target: Target,
) -> Result<Vec<Documents>> {
    let mut planner = planner(loaded, src)?;
    let mut bodies = documents::SharedBodies::default();
    machines
        .iter()
        .map(|m| render_one(&mut planner, &mut bodies, loaded, m, target))
        .collect()
}

fn planner<'a>(loaded: &'a ClusterInputs, src: &GlobalOptions) -> Result<Planner<'a>> {
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
    bodies: &mut documents::SharedBodies,
    loaded: &ClusterInputs,
    m: &Machine,
    target: Target,
) -> Result<Documents> {
    let plan = planner
        .plan(m)
        .with_context(|| format!("planning {}", m.name))?;
    documents::for_machine(&loaded.cluster, &plan, target, bodies)
        .with_context(|| format!("rendering {}", m.name))
}

pub use crate::package::Format;

/// What `build` was asked to write.
pub struct BuildRequest<'a> {
    pub out: &'a Path,
    pub machines: &'a [String],
    pub target: Target,
    /// Sorted into table order, each once.
    pub formats: &'a [Format],
    /// The flags of the formats that take some (`--pxe-url`, `--iso`...).
    pub options: &'a package::Options,
}

/// Builds every requested format into a staged tree and swaps it into place.
pub fn build(
    loaded: &ClusterInputs,
    src: &GlobalOptions,
    req: &BuildRequest<'_>,
) -> Result<Written> {
    let machines = select(loaded, req.machines)?;
    let run = package::Run {
        cluster: &loaded.cluster,
        machines: &machines,
        epoch: crate::image::source_date_epoch()?,
        templates: src.templates.as_deref(),
        profiles: src.profiles.as_deref(),
        options: req.options,
    };
    let mut packagers = req
        .formats
        .iter()
        .map(|f| (f.spec().start)(&run))
        .collect::<Result<Vec<_>>>()?;
    let mut planner = planner(loaded, src)?;
    let mut bodies = documents::SharedBodies::default();
    let mut staging = Staging::new(req.out)?;
    // Render and hand over one machine at a time: holding every machine's
    // documents first made peak memory grow with the fleet (a 1,000-machine
    // build held ~40 MB of user-data). A format that needs them all after
    // the loop keeps its own copy.
    for m in &machines {
        let d = render_one(&mut planner, &mut bodies, loaded, m, req.target)?;
        for p in &mut packagers {
            p.machine(&run, m, &d, &mut staging)?;
        }
    }
    staging.flush()?;
    crate::cleanup::pause_point("staged");
    drop(planner);
    // The boot files, ISO and loaders the user copied in survive every
    // rebuild, also one that does not ask for their format this time.
    for dir in package::provided_dirs() {
        staging.carry_over(dir)?;
    }
    for p in packagers {
        p.finish(&run, &mut staging)?;
    }
    staging.commit()
}
