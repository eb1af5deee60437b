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
    load_checked(file, src, missing, &|_| Ok(()))
}

/// [`load`], with `check` run on the validated cluster before the secrets
/// file is read or created: an input that depends on the cluster (an ISO
/// of another release) is refused before anything is written.
pub fn load_checked(
    file: &Path,
    src: &GlobalOptions,
    missing: MissingSecrets,
    check: &dyn Fn(&Cluster) -> Result<()>,
) -> Result<ClusterInputs> {
    let text = crate::input::read_text(file, crate::input::CLUSTER_FILE)?;
    let profiles = Profiles::load(src.profiles.as_deref())?;
    let raw = schema::parse(file, &text)?;
    // Only the release the file names is parsed: a broken profile of it is
    // a profile error (exit 1) like any other, found here before validation.
    profiles.release(&raw.release.value)?;
    let cluster = validate::validate(file, &raw, &profiles)?;
    check(&cluster)?;
    let secrets_path = secrets::path_for(file);
    let mut warnings = validate::short_serial_warnings(file, &raw);
    warnings.extend(validate::data_disk_warnings(file, &raw));
    warnings.extend(validate::example_key_warnings(file, &raw));
    warnings.extend(validate::addon_warnings(file, &raw));
    let placeholders = validate::staking_warnings(file, &raw);
    if src.strict && !placeholders.is_empty() {
        return Err(InputErrors(
            placeholders
                .into_iter()
                .map(|d| Diagnostic {
                    warning: false,
                    ..d
                })
                .collect(),
        )
        .into());
    }
    warnings.extend(placeholders);
    warnings.extend(validate::nic_warnings(file, &raw));
    warnings.extend(validate::ntp_warnings(file, &raw));
    let tracks = crate::profile::load_tracks(&profiles)?;
    warnings.extend(crate::support::warnings(
        file,
        &raw,
        &cluster,
        &profiles,
        &tracks,
        crate::support::today()?,
    ));
    // In the order of the file, as errors are.
    warnings.sort_by_key(|d| (d.pos.line, d.pos.column));
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
    if let Some(s) = &secrets {
        let n = cluster.staking.validators.len();
        if cluster.staking.enabled && s.wallet_passwords.len() != n {
            warnings.push(Diagnostic::warning(
                &secrets_path,
                Default::default(),
                "wallet_passwords",
                format!("none given for the {n} validator client(s): their pods wait for Secret wallet-password-N until you add one password per client here (the password of the wallet you import the keys into, docs/staking.md) and rerun microseed-staking on the master"),
            ));
        }
    }
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

/// From this many machines on, a second thread renders every other machine.
/// Rendering is half a fleet build's CPU and the writer thread (images,
/// hashes, writes) the other half, so one renderer kept a two-core machine
/// waiting on it; below this, compiling the templates a second time costs
/// more than the thread saves (a few milliseconds).
const SECOND_RENDERER_FROM: usize = 64;

/// Renders the machines of a build in order: the calling thread renders the
/// even ones, a second thread (for large builds) the odd ones. Documents
/// depend only on the cluster and the machine, never on which thread or
/// which earlier machines rendered them, so the output is the same bytes
/// either way.
struct Renderers<'a> {
    planner: Planner<'a>,
    bodies: documents::SharedBodies,
    target: Target,
    /// The odd machines' documents, in order, from the second thread.
    odd: Option<std::sync::mpsc::Receiver<Result<Documents>>>,
    next_index: usize,
}

impl<'a> Renderers<'a> {
    fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        loaded: &'a ClusterInputs,
        src: &'a GlobalOptions,
        machines: &'a [&'a Machine],
        target: Target,
    ) -> Result<Renderers<'a>>
    where
        'a: 'scope,
    {
        let mine = planner(loaded, src)?;
        let odd = (machines.len() >= SECOND_RENDERER_FROM).then(|| {
            // A few machines ahead at most, so memory stays flat.
            let (tx, rx) = std::sync::mpsc::sync_channel(4);
            scope.spawn(move || {
                let mut planner = match planner(loaded, src) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let mut bodies = documents::SharedBodies::for_fleet(machines.len());
                for m in machines.iter().skip(1).step_by(2) {
                    let d = render_one(&mut planner, &mut bodies, loaded, m, target);
                    let failed = d.is_err();
                    // A closed channel: the build stopped at an error.
                    if tx.send(d).is_err() || failed {
                        return;
                    }
                }
            });
            rx
        });
        Ok(Renderers {
            planner: mine,
            bodies: documents::SharedBodies::for_fleet(machines.len()),
            target,
            odd,
            next_index: 0,
        })
    }

    /// The documents of `m`, which must be the next machine in build order.
    fn next(&mut self, loaded: &ClusterInputs, m: &Machine) -> Result<Documents> {
        let index = self.next_index;
        self.next_index += 1;
        match &self.odd {
            Some(rx) if index % 2 == 1 => {
                rx.recv().context("the second rendering thread stopped")?
            }
            _ => render_one(&mut self.planner, &mut self.bodies, loaded, m, self.target),
        }
    }
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
    /// Run just before the new tree replaces OUT, with the tree's path; an
    /// error stops the build (see [`Staging::commit`]).
    pub before_swap: &'a dyn Fn(&Path) -> Result<()>,
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
    let mut staging = Staging::new(req.out)?;
    // Render and hand over one machine at a time: holding every machine's
    // documents first made peak memory grow with the fleet (a 1,000-machine
    // build held ~40 MB of user-data). A format that needs them all after
    // the loop keeps its own copy.
    std::thread::scope(|scope| -> Result<()> {
        let mut docs = Renderers::start(scope, loaded, src, &machines, req.target)?;
        for m in &machines {
            let d = docs.next(loaded, m)?;
            for p in &mut packagers {
                p.machine(&run, m, &d, &mut staging)?;
            }
        }
        Ok(())
    })?;
    staging.flush()?;
    crate::cleanup::pause_point("staged");
    // The boot files, ISO and loaders the user copied in survive every
    // rebuild, also one that does not ask for their format this time.
    for dir in package::provided_dirs() {
        staging.carry_over(dir)?;
    }
    for p in packagers {
        p.finish(&run, &mut staging)?;
    }
    staging.commit(req.before_swap)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster of `n` machines (master, nfs, workers) with its secrets
    /// beside it, loaded as `build` loads it.
    fn fleet(dir: &Path, n: usize) -> ClusterInputs {
        let mut text = String::from(
            "version: 1\nname: fleet\nrelease: \"20.04\"\ntimezone: Etc/UTC\n\
             network:\n  subnet: 10.0.0.0/16\n  gateway: 10.0.0.1\n\
             admin:\n  username: ubuntu\n  ssh_keys:\n    - ssh-ed25519 \
             AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL t@example\n\
             machines:\n  - {name: master, role: master, ip: 10.0.0.10}\n  \
             - {name: nfs, role: nfs, ip: 10.0.0.11}\n",
        );
        for i in 1..=n - 2 {
            let host = i + 11;
            text.push_str(&format!(
                "  - {{name: worker-{i}, role: worker, ip: 10.0.{}.{}}}\n",
                host / 256,
                host % 256
            ));
        }
        let file = dir.join("cluster.yaml");
        std::fs::write(&file, text).unwrap();
        let secrets = dir.join("secrets.yaml");
        std::fs::write(&secrets, include_str!("../tests/fixtures/secrets.yaml")).unwrap();
        load(&file, &GlobalOptions::default(), MissingSecrets::Require).unwrap()
    }

    #[test]
    fn two_renderers_give_the_documents_one_renderer_gives() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = fleet(dir.path(), SECOND_RENDERER_FROM + 3);
        let src = GlobalOptions::default();
        let machines: Vec<&Machine> = loaded.cluster.machines.iter().collect();
        for target in [Target::Installer, Target::CloudImage] {
            let one = render_machines(&loaded, &src, &machines, target).unwrap();
            let two: Vec<Documents> = std::thread::scope(|scope| {
                let mut r = Renderers::start(scope, &loaded, &src, &machines, target).unwrap();
                assert!(r.odd.is_some(), "a fleet this size renders on two threads");
                machines
                    .iter()
                    .map(|m| r.next(&loaded, m).unwrap())
                    .collect()
            });
            assert_eq!(one.len(), two.len());
            for ((a, b), m) in one.iter().zip(&two).zip(&machines) {
                assert_eq!(a.files(), b.files(), "{} ({target:?})", m.name);
            }
        }
    }

    #[test]
    fn a_small_build_renders_on_one_thread() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = fleet(dir.path(), SECOND_RENDERER_FROM - 1);
        let src = GlobalOptions::default();
        let machines: Vec<&Machine> = loaded.cluster.machines.iter().collect();
        std::thread::scope(|scope| {
            let r = Renderers::start(scope, &loaded, &src, &machines, Target::Installer).unwrap();
            assert!(r.odd.is_none());
        });
    }
}
