//! What each subcommand does, in terms of the library; printing and exit
//! codes live here so the stages stay quiet and testable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::build::{self, BuildRequest, Format, GlobalOptions, MissingSecrets};
use crate::diag::{Diagnostic, InputErrors};
use crate::documents::Target;
use crate::outdir::{self, Input};
use crate::package::{self, installer::InstallerOptions};
use crate::pxe::{PxeOptions, PxeUrl};
use crate::secrets;
use crate::serve::Serve;
use crate::verify;

/// Standard output went away (`microseed verify out | head`): the reader
/// has all it wanted, so stop quietly, with a failure status because not
/// everything was said.
#[derive(Debug)]
pub struct ClosedStdout;

impl std::fmt::Display for ClosedStdout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for ClosedStdout {}

/// Writes to stdout, turning a closed pipe into [`ClosedStdout`] instead of
/// the panic `println!` gives.
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(args) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedStdout.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// `println!` that returns an error (for `?`) instead of panicking.
#[macro_export]
macro_rules! outln {
    () => { $crate::commands::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::commands::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that ignores failure: with stderr a closed pipe
/// (`2>&1 | head -1`), a message that cannot be shown is no reason to panic.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Prints the outcome and maps it to an exit code: 2 for input errors,
/// 1 for anything else.
pub fn exit(result: Result<()>, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ClosedStdout>().is_some() => ExitCode::from(1),
        Err(e) if e.downcast_ref::<Reported>().is_some() => {
            errln!("{e}");
            ExitCode::from(1)
        }
        Err(e) => {
            if let Some(input) = e.downcast_ref::<InputErrors>() {
                if json {
                    let diags: Vec<_> = input.0.iter().map(Diagnostic::to_json).collect();
                    let _ = outln!("{}", json!({"ok": false, "errors": diags}));
                }
                errln!("{input}");
                let n = input.0.len();
                errln!(
                    "{n} error{}; nothing was written",
                    if n == 1 { "" } else { "s" }
                );
                ExitCode::from(2)
            } else {
                if json {
                    let _ = outln!("{}", json!({"ok": false, "error": format!("{e:#}")}));
                }
                errln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}

/// A failure whose details were already printed (on stdout, possibly as
/// JSON): exit 1 with this one line on stderr and nothing more on stdout.
#[derive(Debug)]
pub struct Reported(pub String);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Reported {}

fn warn_all(diags: &[Diagnostic]) {
    for d in diags {
        errln!("{d}");
    }
}

pub fn check(cluster: &Path, src: &GlobalOptions, json: bool) -> Result<()> {
    let loaded = build::load(cluster, src, MissingSecrets::Skip)?;
    warn_all(&loaded.warnings);
    if json {
        outln!(
            "{}",
            json!({
                "ok": true,
                "cluster": loaded.cluster.name,
                "machines": loaded.cluster.machines.iter().map(|m| json!({"name": m.name, "role": m.role, "ip": m.ip})).collect::<Vec<_>>(),
                "secrets": loaded.secrets.is_some(),
                "warnings": loaded.warnings.iter().map(Diagnostic::to_json).collect::<Vec<_>>(),
            })
        )?;
    } else {
        outln!(
            "{}: ok ({} machines{})",
            cluster.display(),
            loaded.cluster.machines.len(),
            if loaded.secrets.is_some() {
                ", secrets ok"
            } else {
                ", no secrets file yet"
            }
        )?;
    }
    Ok(())
}

/// What `build` was asked for on the command line.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    pub cluster: PathBuf,
    #[arg(short, long, value_name = "OUT")]
    pub out: PathBuf,
    /// Build only this machine (repeatable).
    #[arg(long = "machine", value_name = "NAME")]
    pub machines: Vec<String>,
    /// What boots the seed: Ubuntu's installer, or a cloud image VM.
    #[arg(long, value_enum, default_value = "installer")]
    pub target: Target,
    /// Comma-separated output formats.
    #[arg(
        long = "format",
        value_name = "FORMAT",
        value_enum,
        value_delimiter = ',',
        default_value = "dir,seed-img"
    )]
    pub formats: Vec<Format>,
    /// Where `microseed serve` will listen, as the netbooting machines
    /// reach it (required by --format pxe).
    #[arg(long, value_name = "http://HOST:PORT")]
    pub pxe_url: Option<String>,
    /// Ubuntu installer ISO for --format installer (default: the
    /// release's ISO from the cache, downloaded once when missing and
    /// checked against its pinned digest or its signed SHA256SUMS).
    #[arg(long, value_name = "PATH")]
    pub iso: Option<PathBuf>,
    /// Where downloaded ISOs are cached, and the installer image hash's
    /// saved state that lets a rebuild from the same ISO hash only the seeds.
    #[arg(long, value_name = "DIR", env = "MICROSEED_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Build into a temporary directory and compare with OUT byte for
    /// byte, without touching OUT: exit 0 if identical, 1 naming each
    /// difference. Needs the existing secrets file.
    #[arg(long)]
    pub check: bool,
    /// The global `--offline`.
    #[arg(skip)]
    pub offline: bool,
    /// Replace OUT even if microseed did not write it (or it holds
    /// files its manifest does not list): their contents are deleted.
    #[arg(long)]
    pub force: bool,
    /// Mint a new join token although secrets.yaml is missing for a
    /// cluster built before (OUT/SHA256SUMS or known_hosts exists):
    /// machines installed with the old token must then be reinstalled.
    #[arg(long)]
    pub new_token: bool,
}

/// Refuses to mint a join token when `secrets.yaml` is gone but this
/// cluster was built before: the machines already installed hold the old
/// token, so a new one would quietly keep every rebuilt or added machine out.
fn refuse_lost_secrets(cluster_file: &Path, out: &Path, c: &crate::model::Cluster) -> Result<()> {
    let secrets_path = secrets::path_for(cluster_file);
    if secrets_path.symlink_metadata().is_ok() {
        return Ok(());
    }
    let evidence: Vec<String> = [
        out.join(crate::output::MANIFEST),
        crate::status::known_hosts_path(cluster_file),
    ]
    .into_iter()
    .filter(|p| p.symlink_metadata().is_ok())
    .map(|p| p.display().to_string())
    .collect();
    if evidence.is_empty() {
        return Ok(());
    }
    let master = c
        .machines
        .iter()
        .find(|m| m.role == "master")
        .map_or("MASTER".to_string(), |m| m.ip.to_string());
    Err(InputErrors(vec![Diagnostic::error(
        &secrets_path,
        Default::default(),
        "",
        format!(
            "missing, but this cluster was built before ({} exists): the installed machines \
             hold its join token, and a new one would keep every rebuilt or added machine out. \
             Recover the token from the master: `ssh -p {port} {user}@{master} sudo cat \
             /etc/microseed/join-token`, then write {path} (mode 0600) as two lines, \
             `version: 1` and `join_token: TOKEN`. Or pass --new-token to mint a new one on \
             purpose and reinstall every machine",
            evidence.join(" and "),
            port = c.ssh.port,
            user = c.admin.username,
            path = secrets_path.display(),
        ),
    )])
    .into())
}

/// After `build --check`, on stderr: which differences matter to machines
/// already installed. A machine added to the cluster changes every other
/// machine's /etc/hosts and nothing else of theirs: say so, with the lines
/// to add by hand, so nobody reinstalls a running master for it.
fn explain_drift(fresh: &Path, out: &Path, entries: &[verify::Entry]) {
    let hosts = verify::hosts_only_changes(fresh, out, entries);
    let mut groups: Vec<(&[String], &[String], Vec<&str>)> = Vec::new();
    for h in hosts
        .iter()
        .filter(|h| !(h.add.is_empty() && h.remove.is_empty()))
    {
        match groups
            .iter_mut()
            .find(|(a, r, _)| *a == h.add.as_slice() && *r == h.remove.as_slice())
        {
            Some(g) => g.2.push(&h.machine),
            None => groups.push((&h.add, &h.remove, vec![&h.machine])),
        }
    }
    let moved: Vec<String> = hosts
        .iter()
        .filter_map(|h| Some(format!("{} {}", h.machine, h.refresh_timer.as_deref()?)))
        .collect();
    if !moved.is_empty() {
        errln!(
            "note: the refresh slots moved (each machine's share of maintenance.refresh_window); \
             on each installed machine, `sudo snap set system refresh.timer=SLOT`: {}",
            moved.join(", ")
        );
    }
    for (add, remove, machines) in groups {
        let mut what = String::new();
        if !add.is_empty() {
            what += &format!(" add `{}`", add.join("`, `"));
        }
        if !remove.is_empty() {
            if !what.is_empty() {
                what += " and";
            }
            what += &format!(" remove `{}`", remove.join("`, `"));
        }
        errln!(
            "note: {}: only /etc/hosts (and the refresh slot) differs, so installed machines \
             need no reinstall; on each,{what} in /etc/hosts by hand (MicroK8s 1.24-1.27 \
             masters refuse a joiner whose name they cannot resolve)",
            machines.join(", ")
        );
    }
    let new: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.status == verify::Status::Missing)
        .filter_map(|e| e.path.split_once('/').map(|(m, _)| m))
        .collect();
    for m in new {
        errln!("note: {m} is new: install it from the rebuilt output");
    }
}

/// The cluster's machines whose seeds the previous OUT holds (by its
/// manifest) but a `--machine` build replaces OUT without: a whole-tree
/// swap would drop them silently otherwise.
fn dropped_machines(out: &Path, loaded: &build::ClusterInputs, picked: &[String]) -> Vec<String> {
    if picked.is_empty() {
        return Vec::new();
    }
    let Ok(listed) = verify::read_manifest(out) else {
        return Vec::new();
    };
    let held: BTreeSet<&str> = listed
        .keys()
        .filter_map(|p| p.split_once('/').map(|(dir, _)| dir))
        .collect();
    loaded
        .cluster
        .machines
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| held.contains(n) && !picked.iter().any(|p| p == n))
        .map(str::to_string)
        .collect()
}

/// What `build` reads, which OUT must stay clear of.
fn build_inputs(
    args: &BuildArgs,
    src: &GlobalOptions,
    installer: Option<&InstallerOptions>,
) -> Vec<Input> {
    let dir = match args.cluster.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut inputs = vec![
        Input {
            what: "the cluster file's directory".into(),
            path: dir,
            may_hold_out: true,
        },
        Input::new("the cluster file", &args.cluster),
        Input::new("the secrets file", &secrets::path_for(&args.cluster)),
    ];
    if let Some(p) = &src.profiles {
        inputs.push(Input::new("--profiles", p));
    }
    if let Some(p) = &src.templates {
        inputs.push(Input::new("--templates", p));
    }
    if let Some(opts) = installer {
        match &opts.iso {
            Some(iso) => inputs.push(Input::new("--iso", iso)),
            None => inputs.push(Input::new("the ISO download cache", &opts.cache_dir)),
        }
    }
    inputs
}

pub fn build(src: &GlobalOptions, args: &BuildArgs, json: bool) -> Result<()> {
    // `-o new/.` or `-o new/` names `new`: a rename onto `new/.` fails
    // after all the work is done.
    let out_path: PathBuf = args.out.components().collect();
    let (cluster, out, machines, target, pxe_url, check) = (
        args.cluster.as_path(),
        out_path.as_path(),
        args.machines.as_slice(),
        args.target,
        args.pxe_url.as_deref(),
        args.check,
    );
    let formats = &args.formats;
    let mut formats = formats.to_vec();
    formats.sort();
    formats.dedup();
    // Flags first: bad input must not create the secrets file.
    let pxe = match (formats.iter().any(|f| f.is(&package::pxe::SPEC)), pxe_url) {
        (true, Some(u)) => Some(PxeOptions::new(PxeUrl::from_flag(u)?, out)?),
        (true, None) => {
            return Err(InputErrors(vec![Diagnostic::error(
                Path::new("--pxe-url"),
                Default::default(),
                "",
                "the pxe format needs --pxe-url http://HOST:PORT, where `microseed serve` \
                 will listen (HOST as the netbooting machines reach it)",
            )])
            .into());
        }
        (false, Some(_)) => {
            errln!("warning: --pxe-url is only used by --format pxe; ignoring it");
            None
        }
        (false, None) => None,
    };
    let installer = installer_options(args, &formats)?;
    // Where the output goes, before anything is written (the secrets file
    // included): a build replaces OUT as a whole.
    let inputs = build_inputs(args, src, installer.as_ref());
    let abs_out = outdir::check_path(out, &inputs, check)?;
    if !check {
        outdir::check_contents(out, &abs_out, args.force)?;
    }
    // An --iso that is not Ubuntu's ISO as released (another machine's
    // installer.img, a truncated download): refused before anything is
    // written, after the output checks so their reason comes first.
    if installer.is_some()
        && let Some(iso) = &args.iso
    {
        crate::iso::patch::check_pristine_file(iso)?;
    }
    if check {
        // Nothing to compare with: say so before the lock file, the check
        // tree or any parent directory is made.
        if !abs_out.is_dir() {
            return Err(InputErrors(vec![Diagnostic::error(
                out,
                Default::default(),
                "",
                format!(
                    "no such directory; --check compares an output built before with what {} builds now (build it first: microseed build {} -o {})",
                    cluster.display(),
                    cluster.display(),
                    out.display()
                ),
            )])
            .into());
        }
        let sp = secrets::path_for(cluster);
        if !sp.exists() {
            return Err(InputErrors(vec![Diagnostic::error(
                &sp,
                Default::default(),
                "",
                "missing; --check needs the secrets the output was built with \
                 (new secrets would make every seed differ)",
            )])
            .into());
        }
    }
    let missing = if check {
        MissingSecrets::Require
    } else {
        MissingSecrets::Create
    };
    // Checked once the cluster is valid and before any secret is made: the
    // ISO must be the cluster's release (its .disk/info and volume ID), and a
    // lost secrets file must not pass quietly.
    let before_secrets = |c: &crate::model::Cluster| {
        if let (Some(_), Some(iso)) = (&installer, &args.iso) {
            crate::iso::identity::check_release(iso, &c.release.release)?;
        }
        if missing == MissingSecrets::Create && !args.new_token {
            refuse_lost_secrets(cluster, out, c)?;
        }
        Ok(())
    };
    let loaded = build::load_checked(cluster, src, missing, &before_secrets)?;
    warn_all(&loaded.warnings);
    let _lock = outdir::lock(&abs_out)?;
    if !check {
        // Again under the lock: another run may have changed OUT meanwhile.
        outdir::check_contents(out, &abs_out, args.force)?;
    }
    if loaded.created_secrets {
        errln!(
            "created {} (mode 0600) with a new join token: keep it, never commit it",
            loaded.secrets_path.display()
        );
    }
    let options = package::Options { pxe, installer };
    // OUT as the checks above found it may have changed during the build
    // (a file put in, a filesystem mounted inside): checked again last.
    let recheck = |staged: &Path| -> Result<()> {
        let again = outdir::check_path(out, &inputs, false)?;
        if again != abs_out {
            return Err(InputErrors(vec![Diagnostic::error(
                out,
                Default::default(),
                "",
                format!(
                    "now resolves to {} (it was {} when the build started); not replacing it",
                    again.display(),
                    abs_out.display()
                ),
            )])
            .into());
        }
        outdir::check_contents(out, &abs_out, args.force)?;
        outdir::check_carried(out, &abs_out, staged)
    };
    let no_recheck = |_: &Path| -> Result<()> { Ok(()) };
    let request = |out| BuildRequest {
        out,
        machines,
        target,
        formats: &formats,
        options: &options,
        before_swap: if check { &no_recheck } else { &recheck },
    };
    if check {
        let tmp = outdir::check_tree(&abs_out)?;
        let fresh = tmp.path().join("out");
        build::build(&loaded, src, &request(&fresh))?;
        let entries = verify::compare(&fresh, out)?;
        verify::print(&entries, json, &format!("check {}", out.display()))?;
        explain_drift(&fresh, out, &entries);
        if !verify::all_ok(&entries) {
            return Err(Reported(format!(
                "{} differs from what {} builds now",
                out.display(),
                cluster.display()
            ))
            .into());
        }
        return Ok(());
    }
    let dropped = dropped_machines(out, &loaded, machines);
    let written = build::build(&loaded, src, &request(out))?;
    if !dropped.is_empty() {
        errln!(
            "warning: {} held {}, which this build (--machine {}) does not: their seeds are no \
             longer in it; build without --machine to keep every machine, or give each \
             subset its own -o",
            out.display(),
            dropped.join(", "),
            machines.join(" --machine ")
        );
    }
    if json {
        outln!(
            "{}",
            json!({
                "ok": true,
                "out": written.dir.display().to_string(),
                "files": written.files.iter().map(|(p, s)| json!({"path": p, "sha256": s})).collect::<Vec<_>>(),
                "bytes": written.bytes,
                "created_secrets": loaded.created_secrets,
            })
        )?;
    } else {
        outln!(
            "wrote {} files ({} bytes) to {}:",
            written.files.len() + 1,
            written.bytes,
            written.dir.display()
        )?;
        for p in written.files.keys() {
            outln!("  {p}")?;
        }
        outln!("  {}", crate::output::MANIFEST)?;
        outln!("seed files carry the join token: treat every copy as a secret")?;
        if let Some(p) = &options.pxe {
            outln!(
                "pxe: copy the boot files in (docs/pxe.md), then `microseed serve {}` on {}:{}",
                p.served_root.display(),
                p.url.host,
                p.url.port
            )?;
        }
    }
    Ok(())
}

/// `verify OUT`: re-hashes what SHA256SUMS lists; exit 1 on any difference.
pub fn verify(out: &Path, json: bool) -> Result<()> {
    if !out.join(crate::output::MANIFEST).is_file() {
        return Err(InputErrors(vec![Diagnostic::error(
            out,
            Default::default(),
            "",
            format!(
                "no {} here; expected a directory written by `microseed build`",
                crate::output::MANIFEST
            ),
        )])
        .into());
    }
    let entries = verify::verify(out)?;
    verify::print(&entries, json, &format!("verify {}", out.display()))?;
    if verify::all_ok(&entries) {
        Ok(())
    } else {
        Err(Reported(format!(
            "{} does not match its {}",
            out.display(),
            crate::output::MANIFEST
        ))
        .into())
    }
}

/// `serve DIR`: prints the URL, then serves until interrupted.
pub fn serve(dir: &Path, bind: &str, json: bool) -> Result<()> {
    let mut bad = Vec::new();
    if !dir.is_dir() {
        bad.push(Diagnostic::error(
            dir,
            Default::default(),
            "",
            "not a directory; expected a built tree such as out/pxe",
        ));
    }
    if bind.parse::<std::net::SocketAddr>().is_err() {
        bad.push(Diagnostic::error(
            Path::new("--bind"),
            Default::default(),
            "",
            format!("{bind:?} is not ADDR:PORT, such as 0.0.0.0:8080"),
        ));
    }
    if !bad.is_empty() {
        return Err(InputErrors(bad).into());
    }
    let server = Serve::bind(dir, bind)?;
    let addr = server.addr();
    if json {
        outln!(
            "{}",
            json!({"ok": true, "dir": server.root().display().to_string(), "url": format!("http://{addr}/")})
        )?;
    } else {
        outln!(
            "serving {} at http://{addr}/ (read-only; Ctrl-C to stop)",
            server.root().display()
        )?;
    }
    std::io::Write::flush(&mut std::io::stdout())?;
    if addr.ip().is_unspecified() {
        errln!("listening on every interface: use this machine's LAN address in --pxe-url");
    }
    server.run()
}

pub fn render(
    cluster: &Path,
    src: &GlobalOptions,
    machine: &str,
    document: &str,
    target: Target,
    json: bool,
) -> Result<()> {
    let loaded = build::load(cluster, src, MissingSecrets::Require)?;
    warn_all(&loaded.warnings);
    let picked = build::select(&loaded, &[machine.to_string()])?;
    if document == "staking" {
        let bad = |msg: String| {
            InputErrors(vec![Diagnostic::error(
                cluster,
                Default::default(),
                "",
                msg,
            )])
        };
        if !loaded.cluster.staking.enabled {
            return Err(bad(
                "staking.enabled is false: there is no staking stack to render".into(),
            )
            .into());
        }
        if picked[0].role != "master" {
            return Err(bad(format!(
                "{machine} is a {}; the staking stack is the master's document",
                picked[0].role
            ))
            .into());
        }
        let text = crate::staking::objects(&loaded.cluster)?;
        crate::commands::write_stdout(format_args!("{text}"))?;
        return Ok(());
    }
    let docs = build::render_machines(&loaded, src, &picked, target)?;
    let text = docs[0].get(document).context("unknown document")?;
    if json {
        // The document as a string: scripts get the exact bytes a seed holds.
        outln!(
            "{}",
            json!({"ok": true, "machine": machine, "document": document, "text": text})
        )?;
    } else {
        crate::commands::write_stdout(format_args!("{text}"))?;
    }
    Ok(())
}

/// Prints a completion script, generated in memory first: clap_complete
/// panics when its writer fails.
pub fn completions(shell: clap_complete::Shell, cmd: &mut clap::Command) -> Result<()> {
    use std::io::Write;
    let mut buf = Vec::new();
    clap_complete::generate(shell, cmd, "microseed", &mut buf);
    // Static scripts cannot know a cluster's machines: these hooks ask
    // `microseed complete-machines` for the cluster file on the line.
    match shell {
        clap_complete::Shell::Bash => buf.extend_from_slice(BASH_MACHINES.as_bytes()),
        clap_complete::Shell::Fish => buf.extend_from_slice(FISH_MACHINES.as_bytes()),
        _ => {}
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&buf).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ClosedStdout.into()),
        other => Ok(other?),
    }
}

const BASH_MACHINES: &str = r#"
# microseed: `--machine` offers the machines of the cluster file on the line.
_microseed_with_machines() {
    local w cluster=
    if [[ "${COMP_WORDS[COMP_CWORD-1]}" == --machine ]]; then
        for w in "${COMP_WORDS[@]:1}"; do
            if [[ "$w" == *.yaml || "$w" == *.yml ]] && [[ -f "$w" ]]; then
                cluster=$w
                break
            fi
        done
        if [[ -n "$cluster" ]]; then
            local IFS=$'
'
            # shellcheck disable=SC2207 # one name a line, no spaces in names
            COMPREPLY=($(compgen -W "$(microseed complete-machines "$cluster" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}"))
            return 0
        fi
    fi
    _microseed "$@"
}
complete -F _microseed_with_machines -o bashdefault -o default microseed
"#;

const FISH_MACHINES: &str = r#"
# microseed: `--machine` offers the machines of the cluster file on the line.
function __microseed_machines
    for w in (commandline -opc)
        if string match -qr '\.ya?ml$' -- $w; and test -f $w
            microseed complete-machines $w 2>/dev/null
            return
        end
    end
end
complete -c microseed -n "__fish_seen_subcommand_from build flash status discover" -l machine -x -a "(__microseed_machines)"
"#;

/// `complete-machines CLUSTER`: the names, one a line; nothing (and exit 0)
/// when the file does not validate, so a completion never prints errors.
pub fn complete_machines(cluster: &Path) -> Result<()> {
    let Ok(loaded) = build::load(cluster, &GlobalOptions::default(), MissingSecrets::Skip) else {
        return Ok(());
    };
    for m in &loaded.cluster.machines {
        outln!("{}", m.name)?;
    }
    Ok(())
}

/// Checks the installer flags before anything is written.
fn installer_options(args: &BuildArgs, formats: &[Format]) -> Result<Option<InstallerOptions>> {
    if !formats.iter().any(|f| f.is(&package::installer::SPEC)) {
        if args.iso.is_some() {
            errln!("warning: --iso is only used by --format installer; ignoring it");
        }
        return Ok(None);
    }
    if args.target != Target::Installer {
        return Err(InputErrors(vec![Diagnostic::error(
            Path::new("--format"),
            Default::default(),
            "",
            "the installer format boots Ubuntu's installer; it needs --target installer, not cloud-image",
        )])
        .into());
    }
    if let Some(iso) = &args.iso {
        use std::os::unix::fs::FileTypeExt;
        let kind = match std::fs::metadata(iso) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("no such file".to_string()),
            Err(e) => Some(format!("cannot be read ({e})")),
            Ok(m) if m.is_dir() => Some("is a directory".into()),
            Ok(m) if m.file_type().is_char_device() => Some("is a character device".into()),
            Ok(m) if m.file_type().is_block_device() => {
                Some("is a block device (a drive); copy the ISO from it into a file first".into())
            }
            Ok(m) if m.file_type().is_fifo() || m.file_type().is_socket() => {
                Some("is a pipe or socket, not a file".into())
            }
            Ok(m) if m.len() == 0 => Some("is empty".into()),
            Ok(_) => None,
        };
        if let Some(kind) = kind {
            return Err(InputErrors(vec![Diagnostic::error(
                iso,
                Default::default(),
                "--iso",
                format!("{kind}; expected an Ubuntu live-server ISO file"),
            )])
            .into());
        }
    }
    Ok(Some(InstallerOptions {
        iso: args.iso.clone(),
        cache_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(crate::iso::default_cache_dir),
        progress: true,
        offline: args.offline,
    }))
}

/// The release profiles to act on: `--release` names, or every release.
fn iso_specs(src: &GlobalOptions, releases: &[String]) -> Result<Vec<crate::iso::IsoSpec>> {
    let profiles = crate::profile::Profiles::load(src.profiles.as_deref())?;
    let mut bad = Vec::new();
    let mut picked = Vec::new();
    if releases.is_empty() {
        picked.extend(profiles.all_releases()?.into_values());
    }
    for r in releases {
        match profiles.release(r)? {
            Some(p) => picked.push(p),
            None => bad.push(profiles.unknown_release(r)),
        }
    }
    if !bad.is_empty() {
        return Err(InputErrors(bad).into());
    }
    let mut specs = Vec::new();
    for p in picked {
        if !p.origin.to_string_lossy().starts_with("embedded:") {
            errln!(
                "note: release {} comes from {}: its pinned digest or signing key is trusted as written there",
                p.release,
                p.origin.display()
            );
        }
        specs.push(crate::iso::IsoSpec::for_release(
            p,
            src.profiles.as_deref(),
        )?);
    }
    Ok(specs)
}

/// `iso fetch`: fills the cache with each release's verified ISO.
pub fn iso_fetch(
    src: &GlobalOptions,
    releases: &[String],
    cache_dir: Option<&Path>,
    offline: bool,
    json: bool,
) -> Result<()> {
    let cache = cache_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::iso::default_cache_dir);
    let specs = iso_specs(src, releases)?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    // One release's failure (a moved mirror, a full disk) must not keep the
    // others out of the cache: go on, then say what failed.
    for spec in &specs {
        let got = match crate::iso::ensure_iso(
            spec,
            &cache,
            &crate::iso::FetchOptions {
                offline,
                progress: !json,
            },
        ) {
            Ok(got) => got,
            Err(e) => {
                errln!("error: fetching the ISO of release {}: {e:#}", spec.release);
                failed.push(json!({"release": spec.release, "error": format!("{e:#}")}));
                continue;
            }
        };
        if !json {
            outln!(
                "{} {}: {} ({} bytes, sha256 {}, {})",
                if got.downloaded { "fetched" } else { "cached" },
                spec.release,
                got.path.display(),
                got.size,
                got.sha256,
                got.verified_by
            )?;
        }
        done.push(json!({
            "release": spec.release,
            "path": got.path.display().to_string(),
            "size": got.size,
            "sha256": got.sha256,
            "verified_by": got.verified_by,
            "downloaded": got.downloaded,
        }));
    }
    if json {
        outln!(
            "{}",
            json!({"ok": failed.is_empty(), "cache": cache.display().to_string(),
                   "isos": done, "failed": failed})
        )?;
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed
            .iter()
            .filter_map(|f| f["release"].as_str())
            .collect();
        return Err(Reported(format!(
            "{} of {} releases not fetched: {}",
            failed.len(),
            specs.len(),
            names.join(", ")
        ))
        .into());
    }
    Ok(())
}

/// `iso list`: what the cache holds and whether an offline build can use it.
pub fn iso_list(src: &GlobalOptions, cache_dir: Option<&Path>, json: bool) -> Result<()> {
    let cache = cache_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(crate::iso::default_cache_dir);
    let specs = iso_specs(src, &[])?;
    let entries = crate::iso::list_cache(&cache, &specs)?;
    if json {
        outln!(
            "{}",
            json!({"ok": true, "cache": cache.display().to_string(), "files": entries})
        )?;
        return Ok(());
    }
    outln!("{}:", cache.display())?;
    if entries.is_empty() {
        outln!("  (empty: `microseed iso fetch` fills it)")?;
    }
    for e in &entries {
        let rel = if e.releases.is_empty() {
            "-".to_string()
        } else {
            e.releases.join(",")
        };
        outln!(
            "  {:<10} {:>14} bytes  release {rel:<6} {}\n             {}",
            e.status,
            e.size,
            e.file,
            e.detail
        )?;
    }
    Ok(())
}

/// What `flash` was asked for on the command line.
#[derive(Debug, clap::Args)]
pub struct FlashArgs {
    /// The output directory (out: its installer.img, the cluster stick), a
    /// machine's (out/worker-1, with --format seed-img), or a cluster file
    /// (the image is then built as it is written: no file).
    #[arg(required_unless_present = "list")]
    pub source: Option<PathBuf>,
    /// The whole disk to erase and write, e.g. /dev/sdb.
    #[arg(required_unless_present = "list")]
    pub device: Option<PathBuf>,
    /// With a cluster file: the machine whose seed to write, or the only
    /// machine the installer stick holds (default: every machine).
    #[arg(long, value_name = "NAME")]
    pub machine: Option<String>,
    /// With a cluster file: the installer ISO to stream from (default:
    /// the release's ISO from the cache, checked as `build` does).
    #[arg(long, value_name = "PATH")]
    pub iso: Option<PathBuf>,
    /// Where downloaded ISOs are cached.
    #[arg(long, value_name = "DIR", env = "MICROSEED_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Which image to write: the installer, or the seed for a second stick.
    #[arg(long, value_enum, default_value = "installer")]
    pub format: crate::flash::FlashFormat,
    /// The global `--offline`.
    #[arg(skip)]
    pub offline: bool,
    /// Do not ask before erasing a removable disk (for scripts).
    #[arg(long)]
    pub yes: bool,
    /// Allow a fixed (non-removable) disk; its name must still be typed.
    #[arg(long)]
    pub force: bool,
    /// List the disks flash would accept, and exit.
    #[arg(long, conflicts_with_all = ["source", "device", "yes", "force"])]
    pub list: bool,
}

/// `flash`: checks, asks, writes, reads back; "safe to remove" only after
/// the device's bytes hash to the manifest's digest.
pub fn flash(src: &GlobalOptions, args: &FlashArgs, json: bool) -> Result<()> {
    use crate::flash;
    let sys = flash::SysRoot::from_env();
    if args.list {
        let devices = flash::list(&sys)?;
        if json {
            outln!("{}", json!({"ok": true, "devices": devices}))?;
        } else if devices.is_empty() {
            outln!("no removable, unmounted disk found (plug in a USB stick or SD card)")?;
        } else {
            for d in &devices {
                outln!("{}", d.describe())?;
            }
        }
        return Ok(());
    }
    let (Some(source), Some(device)) = (&args.source, &args.device) else {
        bail!("flash needs SOURCE and DEVICE (or --list)");
    };
    let image = if source.is_dir() {
        if args.machine.is_some() {
            return Err(crate::diag::option_error(
                "--machine",
                "--machine goes with a cluster file; SOURCE is already a machine's output directory",
            ));
        }
        flash::image_in(source, args.format)?
    } else {
        let names: Vec<String> = args.machine.iter().cloned().collect();
        if names.is_empty() && args.format == flash::FlashFormat::SeedImg {
            return Err(crate::diag::option_error(
                "--machine",
                "SOURCE is a cluster file: name the machine whose seed to write with --machine (or give its output directory, e.g. out/worker-1)",
            ));
        }
        // The image is built from the cluster file and its existing secrets
        // (a new join token would not match the one the master has).
        let loaded = build::load(source, src, MissingSecrets::Require)?;
        let machines = build::select(&loaded, &names)?;
        let docs = build::render_machines(&loaded, src, &machines, Target::Installer)?;
        let name = match &args.machine {
            Some(n) => n.clone(),
            None => format!("cluster {}", loaded.cluster.name),
        };
        match args.format {
            flash::FlashFormat::SeedImg => {
                flash::image_streamed(&name, &docs[0].files(), args.format, None)?
            }
            flash::FlashFormat::Installer => {
                let pairs: Vec<_> = machines.iter().copied().zip(docs.iter()).collect();
                let stick = crate::stick::files(&loaded.cluster, &pairs)?;
                let files: Vec<(&str, &[u8])> =
                    stick.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
                let opts = InstallerOptions {
                    iso: args.iso.clone(),
                    cache_dir: args
                        .cache_dir
                        .clone()
                        .unwrap_or_else(crate::iso::default_cache_dir),
                    progress: !json,
                    offline: args.offline,
                };
                let release = &loaded.cluster.release;
                let iso = package::installer::iso(release, src.profiles.as_deref(), &opts)?;
                let configs: Vec<&str> = release.boot.configs.iter().map(String::as_str).collect();
                flash::image_streamed(&name, &files, args.format, Some((&iso, &configs)))?
            }
        }
    };
    let plan = flash::check(&sys, image, device, args.force)?;
    errln!("{}", plan.device.describe());
    errln!(
        "image: {} ({}), sha256 {}",
        plan.image.what,
        flash::human(plan.image.size),
        plan.image
            .sha256
            .as_deref()
            .unwrap_or("computed while writing")
    );
    if !args.yes
        && !flash::confirm(&format!(
            "Erase everything on {} and write {}? [y/N]",
            plan.device.path.display(),
            plan.image.key
        ))?
    {
        bail!("not confirmed; nothing was written");
    }
    if !plan.device.is_removable_kind() {
        // --force got us here; a fixed disk also needs its name typed at a
        // terminal, which --yes cannot answer.
        let typed = flash::ask(
            &format!(
                "{} is a FIXED disk. Type its name ({}) to erase it:",
                plan.device.path.display(),
                plan.device.name
            ),
            &format!(
                "{} is a fixed disk, which needs its name typed at a terminal, and stdin is not one; --yes cannot answer this: run flash at a terminal; nothing was written",
                plan.device.path.display()
            ),
        )?;
        if typed != plan.device.name {
            bail!("not confirmed; nothing was written");
        }
    }
    let outcome = flash::write(&sys, &plan, !json)?;
    let rate = outcome.bytes as f64 / outcome.write_seconds.max(1e-9);
    if json {
        outln!(
            "{}",
            json!({"ok": true, "device": plan.device, "image": plan.image.key, "result": outcome})
        )?;
    } else {
        outln!(
            "wrote {} to {} in {:.1} s ({}/s); read back in {:.1} s: sha256 {} matches {}",
            flash::human(outcome.bytes),
            plan.device.path.display(),
            outcome.write_seconds,
            flash::human(rate as u64),
            outcome.verify_seconds,
            outcome.sha256,
            plan.image.manifest.as_ref().map_or_else(
                || "the streamed image".to_string(),
                |m| m.display().to_string()
            )
        )?;
        outln!("{}: safe to remove", plan.device.path.display())?;
    }
    Ok(())
}

/// `--release R`: any name (an overlay from `--profiles` may add releases),
/// offered as the built-in releases by completions and `--help`.
#[derive(Clone, Debug)]
pub struct ReleaseName;

impl clap::builder::TypedValueParser for ReleaseName {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        value
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| clap::Error::new(clap::error::ErrorKind::InvalidUtf8))
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        let names: Vec<String> = crate::profile::Profiles::load(None)
            .map(|p| p.release_names().map(str::to_string).collect())
            .unwrap_or_default();
        Some(Box::new(
            names.into_iter().map(clap::builder::PossibleValue::new),
        ))
    }
}
