//! `microseed status`: asks every machine of a cluster, over the system's
//! OpenSSH client, whether its first boot has converged, and shows the
//! answers as one table (or JSON).
//!
//! The system's `ssh` is used, not an SSH library, so the user's keys,
//! agent and `~/.ssh/config` (jump hosts) apply as they do for a manual
//! login. One connection per machine, all in parallel, runs one fixed
//! script (`status-probe.sh`, sent on stdin) that prints every fact in
//! marked sections; nothing from the cluster file is part of a script's
//! text, only single-quoted arguments. Host keys are trusted on first use
//! into `known_hosts` beside the cluster file, under the machine's name, so
//! a changed key is refused until the user says the machine was rebuilt.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;

use crate::build::{self, GlobalOptions, MissingSecrets};
use crate::diag::option_error;
use crate::model::{Cluster, Machine};
use crate::{errln, outln};

/// Exit code when every machine answered but some have not converged (or
/// the master sees fewer Ready nodes than the cluster has).
pub const EXIT_NOT_CONVERGED: u8 = 3;
/// Exit code when some machine could not be asked at all: no connection,
/// refused login, or a host key that changed.
pub const EXIT_UNREACHABLE: u8 = 4;

/// The script every machine runs; see its header.
const PROBE: &str = include_str!("status-probe.sh");
const MARK: &str = "@@microseed-probe ";
/// Longest one probe may take after connecting (each check inside it is
/// bounded to 20 s) before ssh is killed and the machine counted unreachable.
const PROBE_LIMIT: Duration = Duration::from_secs(120);
/// The most a machine's answer may hold. A real one is a few KiB (the
/// master's node list is about 5 KiB a node); anything near this is not
/// the probe answering, and holding it all would let one machine exhaust
/// this one's memory. Past it ssh is stopped and the machine reported.
const MAX_ANSWER: u64 = 16 * 1024 * 1024;
/// The most kept of ssh's own messages (stderr).
const MAX_STDERR: u64 = 64 * 1024;
/// The least time a probe gets when `--wait` is nearly over, so the last
/// round can still reach a machine that answers at once.
const LAST_ROUND_FLOOR: Duration = Duration::from_secs(2);

/// What `status` was asked for on the command line (the clap arguments).
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The cluster file; known_hosts is kept beside it.
    pub cluster: PathBuf,
    /// Ask only this machine (repeatable).
    #[arg(long = "machine", value_name = "NAME")]
    pub machines: Vec<String>,
    /// Poll until every machine has converged and every node is Ready,
    /// or TIMEOUT (e.g. 90s, 30m, 2h) has passed.
    #[arg(long, value_name = "TIMEOUT", num_args = 0..=1, require_equals = true,
          default_missing_value = "30m", value_parser = parse_duration)]
    pub wait: Option<std::time::Duration>,
    /// Time between polls with --wait.
    #[arg(long, value_name = "DURATION", default_value = "5s",
          value_parser = parse_duration)]
    pub interval: std::time::Duration,
    /// ssh configuration file to use instead of ~/.ssh/config (ssh -F).
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// NAME was rebuilt: forget its recorded host key and record the
    /// one it presents now (repeatable).
    #[arg(long, value_name = "NAME")]
    pub accept_new_host_key: Vec<String>,
    /// Seconds ssh may take to connect to a machine.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=600))]
    pub connect_timeout: u32,
}

/// One machine's answers.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub role: String,
    pub address: String,
    pub port: u16,
    pub reachable: bool,
    /// Why the machine could not be asked (or its answer not read).
    pub error: Option<String>,
    /// `VERSION_ID` from its `/etc/os-release`.
    pub release: Option<String>,
    pub release_expected: String,
    pub first_boot: FirstBoot,
    /// On the master only.
    pub nodes: Option<Nodes>,
    /// On each master of a cluster of 3 or more: the datastore's voters
    /// (`ok` with 3 or more, `degraded` with fewer, `unknown`).
    pub datastore: Option<Check>,
    pub chrony: Check,
    pub ufw: Check,
    /// snapd's refresh schedule: `held` (first boot not converged, or held
    /// by hand), `scheduled` (next refresh in this machine's slot),
    /// `other-timer` (a timer other than the cluster's slot for it).
    pub refresh: Check,
    /// On the NFS server only.
    pub nfs_export: Option<NfsExport>,
    /// Converged, and on a master the cluster's merged view ([`View`]):
    /// every node Ready, and with 3 or more masters 3 voters, none lost.
    pub ok: bool,
    /// The datastore's members as this master's `microk8s status` lists
    /// them, for the merged view.
    #[serde(skip)]
    members: Option<Members>,
}

/// A datastore's voters and stand-bys as one master lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Members {
    voters: Vec<String>,
    standbys: Vec<String>,
}

/// What every reachable master says, as one view (`cluster` in `--json`):
/// each node's Ready condition as any of them reports it, and the
/// datastore's voters with the masters behind them.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// The masters asked: whether each answered and whether its node list
    /// could be read.
    pub masters: Vec<MasterSeen>,
    /// The masters that could not be asked (lost, or not up yet).
    pub unreachable: Vec<String>,
    pub nodes: MergedNodes,
    /// With 3 or more masters.
    pub datastore: Option<MergedDatastore>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MasterSeen {
    pub name: String,
    pub reachable: bool,
    pub nodes_read: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergedNodes {
    /// `ok` (every master and worker Ready), `not-ready` or `unknown` (no
    /// master's node list could be read).
    pub state: &'static str,
    pub ready: u32,
    pub expected: u32,
    /// The cluster's masters and workers not Ready (or not listed).
    pub not_ready: Vec<String>,
    /// The masters whose node lists were merged.
    pub from: Vec<String>,
    pub nodes: Vec<NodeSeen>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeSeen {
    pub name: String,
    pub role: String,
    /// `ready` (a master reports its Ready condition True), `not-ready`
    /// (listed, by none as Ready), `not-listed` or `unknown`.
    pub state: &'static str,
    /// The masters that report it Ready.
    pub ready_on: Vec<String>,
    /// The masters that list it not Ready, with the condition's status
    /// (`False`, `Unknown`).
    pub not_ready_on: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergedDatastore {
    /// `ok` (3 or more voters, none on an unreachable master, every
    /// reachable master lists the same), `degraded` or `unknown`.
    pub state: &'static str,
    pub voters: Vec<Member>,
    pub standbys: Vec<Member>,
    /// The masters whose lists agree on these members.
    pub from: Vec<String>,
    /// Masters whose own datastore lists other members (not joined, or a
    /// second cluster).
    pub other: Vec<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Member {
    pub address: String,
    /// The master at that address, if the cluster file has one.
    pub machine: Option<String>,
    /// Whether that master answered (null when it was not asked).
    pub reachable: Option<bool>,
}

/// `microseed-status` as the machine reports it.
#[derive(Debug, Clone, Serialize)]
pub struct FirstBoot {
    /// `converged`, `not-converged`, `failed` (a step's last attempt
    /// failed) or `unknown` (no usable answer).
    pub state: &'static str,
    pub done: Option<u32>,
    pub total: Option<u32>,
    /// One line saying where the machine is.
    pub summary: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    /// `done`, `running`, `waiting`, `pending`, `failed` or `stopped`.
    pub state: &'static str,
    pub detail: String,
    /// The last failure's lines, as `microseed-status` shows them.
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Nodes {
    /// `ok`, `not-ready` or `unknown` (the API could not be asked).
    pub state: &'static str,
    pub ready: u32,
    pub expected: u32,
    pub not_ready: Vec<String>,
    pub detail: String,
    /// Every node listed: its name and its Ready condition's status
    /// (`True`, `False`, `Unknown`, or `none`), for the merged view.
    #[serde(skip)]
    listed: Vec<(String, String)>,
}

/// A check with a one-word state and the words behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub state: &'static str,
    pub detail: String,
    /// chrony only: seconds the clock is ahead (+) or behind (-) NTP time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NfsExport {
    /// `ok`, `missing` or `unknown`.
    pub state: &'static str,
    pub path: String,
    pub exported: bool,
    pub directory: bool,
    pub mounted: bool,
    /// The export root is its own volume (`nfs.data_volume`) or disk
    /// (`nfs.data_disk`), so it must be mounted.
    pub mount_expected: bool,
    pub detail: String,
}

/// Parses `--wait`'s value: `90s`, `30m`, `2h`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (expected e.g. 90s, 30m, 2h)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?}: unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// `microseed status`: returns the exit code (0, [`EXIT_NOT_CONVERGED`] or
/// [`EXIT_UNREACHABLE`]); errors are for bad input and broken tools.
pub fn run(src: &GlobalOptions, args: &StatusArgs, json: bool) -> Result<u8> {
    let loaded = build::load(&args.cluster, src, MissingSecrets::Skip)?;
    for w in &loaded.warnings {
        errln!("{w}");
    }
    let machines = build::select(&loaded, &args.machines)?;
    let cluster = &loaded.cluster;
    for name in &args.accept_new_host_key {
        if cluster.machine(name).is_none() {
            return Err(option_error(
                "--accept-new-host-key",
                &format!(
                    "no machine named {name:?}; the cluster has {}",
                    names(cluster).join(", ")
                ),
            ));
        }
    }
    if let Some(f) = &args.ssh_config
        && !f.is_file()
    {
        return Err(option_error(
            "--ssh-config",
            &format!("{}: no such file", f.display()),
        ));
    }
    // A missing client is this machine's problem, not every machine's.
    Command::new("ssh").arg("-V").output().context(
        "running ssh -V: microseed status needs the OpenSSH client (apt install openssh-client)",
    )?;
    let known_hosts = known_hosts_path(&args.cluster);
    for name in &args.accept_new_host_key {
        forget_host_key(&known_hosts, name)?;
    }
    let (ssh_known_hosts, _link_dir) = known_hosts_for_ssh(&known_hosts)?;
    let started = Instant::now();
    let ssh = Ssh {
        config: args.ssh_config.clone(),
        known_hosts,
        ssh_known_hosts,
        user: cluster.admin.username.clone(),
        port: cluster.ssh.port,
        connect_timeout: args.connect_timeout,
        deadline: args.wait.map(|w| started + w),
    };
    let progress = Progress::new(!json);
    let mut first_round = true;
    let (reports, view) = loop {
        let known_before = recorded_names(&ssh.known_hosts);
        let mut reports = probe_all(&ssh, cluster, &machines);
        let view = merge(cluster, &mut reports);
        if first_round {
            announce_new_keys(&ssh.known_hosts, &known_before, cluster);
            first_round = false;
        }
        let missing = missing(&reports, view.as_ref());
        let Some(limit) = args.wait else {
            break (reports, view);
        };
        if missing.is_empty() {
            break (reports, view);
        }
        // Waiting cannot fix a changed host key: only the user can say the
        // machine was rebuilt.
        let changed: Vec<&str> = reports
            .iter()
            .filter(|r| host_key_changed(r))
            .map(|r| r.name.as_str())
            .collect();
        if !changed.is_empty() {
            progress.finish();
            errln!(
                "not waiting: the host key of {} changed (see below)",
                changed.join(", ")
            );
            break (reports, view);
        }
        let elapsed = started.elapsed();
        if elapsed >= limit {
            progress.finish();
            errln!(
                "timed out after {}; still missing: {}",
                human_duration(limit),
                missing.join("; ")
            );
            break (reports, view);
        }
        progress.update(&format!(
            "waiting ({} of {}): {}",
            human_duration(elapsed),
            human_duration(limit),
            missing.join("; ")
        ));
        std::thread::sleep(args.interval.min(limit - elapsed));
    };
    progress.finish();
    print(&reports, view.as_ref(), json)?;
    Ok(exit_code(&reports, view.as_ref()))
}

fn names(cluster: &Cluster) -> Vec<&str> {
    cluster.machines.iter().map(|m| m.name.as_str()).collect()
}

/// `known_hosts` beside the cluster file: the cluster's own trust, apart
/// from the user's, so a machine's key is tied to its name in this cluster.
pub fn known_hosts_path(cluster: &Path) -> PathBuf {
    match cluster.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("known_hosts"),
        _ => PathBuf::from("known_hosts"),
    }
}

/// The host names `known_hosts` has a key for.
fn recorded_names(known_hosts: &Path) -> Vec<String> {
    std::fs::read_to_string(known_hosts)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// Trust on first use is only as good as a look at what was trusted: say
/// which keys were just recorded and how to see their fingerprints.
fn announce_new_keys(known_hosts: &Path, before: &[String], cluster: &Cluster) {
    let now = recorded_names(known_hosts);
    // In cluster order: the connections finish in any order.
    let new: Vec<&str> = names(cluster)
        .into_iter()
        .filter(|n| now.iter().any(|x| x == n) && !before.iter().any(|x| x == n))
        .collect();
    if !new.is_empty() {
        errln!(
            "recorded the host key of {} on first contact in {} \
             (compare with each machine's console: ssh-keygen -lf {})",
            new.join(", "),
            known_hosts.display(),
            known_hosts.display()
        );
    }
}

/// Drops a rebuilt machine's recorded key (`ssh-keygen -R`), so the next
/// connection records its new one.
fn forget_host_key(known_hosts: &Path, name: &str) -> Result<()> {
    if !known_hosts.exists() {
        return Ok(());
    }
    let out = Command::new("ssh-keygen")
        .arg("-R")
        .arg(name)
        .arg("-f")
        .arg(known_hosts)
        .output()
        .context("running ssh-keygen -R (install openssh-client)")?;
    if !out.status.success() {
        bail!(
            "ssh-keygen -R {name} -f {} failed: {}",
            known_hosts.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    errln!(
        "{name}: forgot its recorded host key in {}; its current key will be recorded",
        known_hosts.display()
    );
    Ok(())
}

struct Ssh {
    config: Option<PathBuf>,
    /// The cluster's known_hosts (named in messages, `ssh-keygen -R`).
    known_hosts: PathBuf,
    /// The same file as ssh is told it (see [`known_hosts_for_ssh`]).
    ssh_known_hosts: PathBuf,
    user: String,
    port: u16,
    connect_timeout: u32,
    /// When `--wait` ends: no probe outlives it (by more than
    /// [`LAST_ROUND_FLOOR`]).
    deadline: Option<Instant>,
}

/// Bytes ssh takes as they are in a `UserKnownHostsFile=` option on every
/// OpenSSH version: no blank or quote (which split or quote the value), no
/// `%` or `$` (tokens and environment variables since OpenSSH 8.4, literal
/// before: no one escape works on both), no `~`, `#` or `\\`.
fn ssh_config_safe(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str()
        .as_bytes()
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"/._+,:@=-".contains(b))
}

/// The path to give ssh for the cluster's known_hosts: the file's own
/// absolute path when ssh reads it as is, else a symbolic link to it in a
/// private (0700) temporary directory of a plain name, which lives as long
/// as the returned guard. ssh reads and appends through the link, so the
/// keys land in the cluster's file whatever its path holds.
fn known_hosts_for_ssh(known_hosts: &Path) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    let abs = std::path::absolute(known_hosts)
        .with_context(|| format!("finding the absolute path of {}", known_hosts.display()))?;
    if ssh_config_safe(&abs) {
        return Ok((abs, None));
    }
    let tmp = std::env::temp_dir();
    let base = if ssh_config_safe(&tmp) {
        tmp
    } else {
        PathBuf::from("/tmp")
    };
    let dir = tempfile::Builder::new()
        .prefix("microseed-status-")
        .tempdir_in(&base)
        .with_context(|| format!("making a private directory in {}", base.display()))?;
    let link = dir.path().join("known_hosts");
    std::os::unix::fs::symlink(&abs, &link)
        .with_context(|| format!("linking {} to {}", link.display(), abs.display()))?;
    if !ssh_config_safe(&link) {
        bail!(
            "cannot name {} to ssh: neither it nor a temporary link to it in {} is a path ssh reads as written; move the cluster file to a directory whose path has no blanks, quotes, `%`, `$`, `~`, `#` or `\\`",
            abs.display(),
            base.display()
        );
    }
    Ok((link, Some(dir)))
}

impl Ssh {
    fn command(&self, m: &Machine, export_root: &str) -> Command {
        let mut c = Command::new("ssh");
        if let Some(f) = &self.config {
            c.arg("-F").arg(f);
        }
        let mut opt = |o: String| {
            c.arg("-o").arg(o);
        };
        opt("BatchMode=yes".into());
        opt(format!("ConnectTimeout={}", self.connect_timeout));
        opt("ServerAliveInterval=5".into());
        opt("ServerAliveCountMax=3".into());
        opt(format!(
            "UserKnownHostsFile={}",
            self.ssh_known_hosts.display()
        ));
        // Only the cluster's own file decides, never a system-wide entry.
        opt("GlobalKnownHostsFile=/dev/null".into());
        opt("StrictHostKeyChecking=accept-new".into());
        opt("HashKnownHosts=no".into());
        // Keyed by name: a machine given a new address keeps its key, and
        // `ssh-keygen -R NAME` finds the entry.
        opt(format!("HostKeyAlias={}", m.name));
        opt("CheckHostIP=no".into());
        opt("LogLevel=ERROR".into());
        c.arg("-p").arg(self.port.to_string());
        c.arg("-l").arg(&self.user);
        c.arg("--").arg(m.ip.to_string());
        // The one remote command: a fixed script on stdin, the role and the
        // export root as single-quoted arguments.
        c.arg(format!(
            "sh -s -- {} {}",
            crate::templates::shell_quote(&m.role),
            crate::templates::shell_quote(export_root)
        ));
        c
    }
}

fn probe_all(ssh: &Ssh, cluster: &Cluster, machines: &[&Machine]) -> Vec<Report> {
    std::thread::scope(|s| {
        let handles: Vec<_> = machines
            .iter()
            .map(|m| s.spawn(move || probe(ssh, cluster, m)))
            .collect();
        handles
            .into_iter()
            .zip(machines)
            .map(|(h, m)| {
                h.join().unwrap_or_else(|_| {
                    unreachable_report(cluster, m, ssh.port, "internal error: probe panicked")
                })
            })
            .collect()
    })
}

/// Runs ssh with the probe, killing it after [`PROBE_LIMIT`].
fn run_probe(ssh: &Ssh, cluster: &Cluster, m: &Machine) -> Result<(i32, String, String)> {
    let mut cmd = ssh.command(m, &cluster.nfs.export_root);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .context("running ssh (install openssh-client)")?;
    let mut stdin = child.stdin.take().context("ssh stdin")?;
    let stdout = child.stdout.take().context("ssh stdout")?;
    let stderr = child.stderr.take().context("ssh stderr")?;
    let writer = std::thread::spawn(move || {
        // A connection that fails closes the pipe early: nothing to report.
        let _ = stdin.write_all(PROBE.as_bytes());
    });
    let too_big = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Reads at most `max` bytes; one more marks the answer too big (and
    // stops reading, so ssh blocks until it is killed below).
    let bounded = |mut from: Box<dyn Read + Send>, max: u64| {
        let too_big = too_big.clone();
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = from.by_ref().take(max + 1).read_to_end(&mut v);
            if v.len() as u64 > max {
                v.truncate(max as usize);
                too_big.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            v
        })
    };
    let out_reader = bounded(Box::new(stdout), MAX_ANSWER);
    let err_reader = bounded(Box::new(stderr), MAX_STDERR);
    let started = Instant::now();
    let mut limit = PROBE_LIMIT + Duration::from_secs(ssh.connect_timeout.into());
    if let Some(end) = ssh.deadline {
        limit = limit.min(end.saturating_duration_since(started).max(LAST_ROUND_FLOOR));
    }
    let deadline = started + limit;
    let big = || too_big.load(std::sync::atomic::Ordering::SeqCst);
    let status = loop {
        // Too big first: the reader stopping may end ssh (a broken pipe)
        // before this loop kills it.
        if !big()
            && let Some(st) = child.try_wait().context("waiting for ssh")?
        {
            break Ok(st);
        }
        if big() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(big());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let status = match status {
        Ok(_) if big() => Err(true),
        other => other,
    };
    let out = printable(&String::from_utf8_lossy(&out));
    let mut err = printable(&String::from_utf8_lossy(&err));
    let code = match status {
        Ok(st) => st.code().unwrap_or(255),
        Err(true) => {
            err.push_str(&format!(
                "\nthe answer grew past {} MiB, far more than the probe prints; ssh was stopped",
                MAX_ANSWER / (1024 * 1024)
            ));
            255
        }
        Err(false) => {
            err.push_str(&format!(
                "\nno answer within {} s; ssh was stopped",
                limit.as_secs_f64().ceil()
            ));
            255
        }
    };
    Ok((code, out, err))
}

/// A machine's text as this terminal may show it: control characters
/// (escape sequences, carriage returns, backspaces) and the bidirectional
/// overrides that reorder what is shown become U+FFFD, so nothing a machine
/// sends can move the cursor, recolour or rewrite the table. Line breaks
/// and tabs stay (the sections are split on them), and so does a line
/// break written CRLF, as LF: OpenSSH ends its own messages on stderr with
/// CRLF whatever stderr is ("Connection timed out\r\n").
fn printable(text: &str) -> String {
    text.replace("\r\n", "\n")
        .chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\n' && c != '\t') || bidi {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

fn probe(ssh: &Ssh, cluster: &Cluster, m: &Machine) -> Report {
    let (code, out, err) = match run_probe(ssh, cluster, m) {
        Ok(r) => r,
        Err(e) => return unreachable_report(cluster, m, ssh.port, &format!("{e:#}")),
    };
    let sections = parse_sections(&out);
    if code == 255 || sections.is_none() {
        let why = ssh_failure(&err, code, &m.name, &ssh.known_hosts);
        return unreachable_report(cluster, m, ssh.port, &why);
    }
    let sections = sections.unwrap_or_default();
    report_from(cluster, m, ssh.port, &sections)
}

/// Says why ssh did not deliver a report, in the user's terms.
fn ssh_failure(stderr: &str, code: i32, name: &str, known_hosts: &Path) -> String {
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("Host key verification failed")
    {
        return format!(
            "{HOST_KEY_CHANGED}: {name} presents a different key than the one recorded in {} \
             (possibly a man-in-the-middle). If {name} was rebuilt, run again with \
             --accept-new-host-key {name}",
            known_hosts.display()
        );
    }
    let last = stderr
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    if code == 255 {
        if last.is_empty() {
            "ssh failed (exit 255)".to_string()
        } else {
            last.to_string()
        }
    } else if last.is_empty() {
        format!("connected, but no report came back (exit {code})")
    } else {
        format!("connected, but no report came back (exit {code}): {last}")
    }
}

const HOST_KEY_CHANGED: &str = "host key changed";

fn host_key_changed(r: &Report) -> bool {
    r.error
        .as_deref()
        .is_some_and(|e| e.starts_with(HOST_KEY_CHANGED))
}

fn unreachable_report(cluster: &Cluster, m: &Machine, port: u16, why: &str) -> Report {
    let unknown = |what: &str| Check {
        state: "unknown",
        detail: what.to_string(),
        offset_seconds: None,
    };
    Report {
        name: m.name.clone(),
        role: m.role.clone(),
        address: m.ip.to_string(),
        port,
        reachable: false,
        error: Some(why.to_string()),
        release: None,
        release_expected: cluster.release.release.clone(),
        first_boot: FirstBoot {
            state: "unknown",
            done: None,
            total: None,
            summary: "unknown (unreachable)".into(),
            steps: Vec::new(),
        },
        nodes: None,
        datastore: None,
        chrony: unknown("unreachable"),
        ufw: unknown("unreachable"),
        refresh: unknown("unreachable"),
        nfs_export: None,
        ok: false,
        members: None,
    }
}

/// One section of the probe's output: its text and the check's exit code.
#[derive(Debug, Default, Clone)]
struct Section {
    text: String,
    code: i32,
}

/// Splits the probe's output into sections; `None` when the probe's start
/// marker is absent (something else answered, or nothing did).
fn parse_sections(out: &str) -> Option<BTreeMap<String, Section>> {
    let mut lines = out.lines();
    lines
        .by_ref()
        .find(|l| l.trim_end() == "@@microseed-probe 1")?;
    let mut sections = BTreeMap::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in lines {
        if let Some(rest) = line.strip_prefix(MARK) {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                ["begin", name] => current = Some((name.to_string(), Vec::new())),
                ["end", name, code] => {
                    if let Some((open, mut body)) = current.take()
                        && open == *name
                    {
                        while body.last().is_some_and(|l| l.trim().is_empty()) {
                            body.pop();
                        }
                        sections.insert(
                            open,
                            Section {
                                text: body.join("\n"),
                                code: code.parse().unwrap_or(-1),
                            },
                        );
                    }
                }
                _ => {}
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push(line);
        }
    }
    Some(sections)
}

fn report_from(
    cluster: &Cluster,
    m: &Machine,
    port: u16,
    sections: &BTreeMap<String, Section>,
) -> Report {
    let release = sections.get("os-release").and_then(|s| os_release(&s.text));
    let first_boot = sections
        .get("status")
        .map(first_boot)
        .unwrap_or_else(|| FirstBoot {
            state: "unknown",
            done: None,
            total: None,
            summary: "no answer from microseed-status".into(),
            steps: Vec::new(),
        });
    let expected = cluster
        .machines
        .iter()
        .filter(|x| x.role == "master" || x.role == "worker")
        .count() as u32;
    let nodes = (m.role == "master").then(|| match sections.get("nodes") {
        Some(s) => nodes(s, expected),
        None => Nodes {
            state: "unknown",
            ready: 0,
            expected,
            not_ready: Vec::new(),
            detail: "no answer".into(),
            listed: Vec::new(),
        },
    });
    let missing_section = || Check {
        state: "unknown",
        detail: "no answer".into(),
        offset_seconds: None,
    };
    let masters = cluster.masters().count();
    let (datastore, members) = if m.role == "master" && masters >= 3 {
        match sections.get("datastore") {
            Some(s) => {
                let (check, members) = datastore(s);
                (Some(check), members)
            }
            None => (Some(missing_section()), None),
        }
    } else {
        (None, None)
    };
    let nfs_export = (m.role == "nfs").then(|| {
        nfs_export(
            sections.get("exports"),
            sections.get("export-dir"),
            &cluster.nfs.export_root,
            cluster.nfs.data_volume || cluster.nfs.data_disk.is_some(),
        )
    });
    let ok = first_boot.state == "converged"
        && nodes.as_ref().is_none_or(|n| n.state == "ok")
        && datastore.as_ref().is_none_or(|d| d.state == "ok");
    Report {
        name: m.name.clone(),
        role: m.role.clone(),
        address: m.ip.to_string(),
        port,
        reachable: true,
        error: None,
        release,
        release_expected: cluster.release.release.clone(),
        first_boot,
        nodes,
        datastore,
        chrony: sections.get("chrony").map_or_else(missing_section, chrony),
        ufw: sections.get("ufw").map_or_else(missing_section, ufw),
        refresh: sections
            .get("refresh")
            .map_or_else(missing_section, |s| refresh(s, &m.refresh_timer)),
        nfs_export,
        ok,
        members,
    }
}

fn os_release(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.strip_prefix("VERSION_ID=")
            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// The first non-empty line, for a one-line account of a failure.
fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("(no output)")
        .to_string()
}

/// Reads `microseed-status`: its first line, then one line per step with
/// `last error:` lines under a failed one.
fn first_boot(s: &Section) -> FirstBoot {
    let unknown = |summary: String| FirstBoot {
        state: "unknown",
        done: None,
        total: None,
        summary,
        steps: Vec::new(),
    };
    if s.code == 127 {
        return unknown("microseed-status not installed (not a microseed machine?)".into());
    }
    // Anything before the report's first line is noise from the way there
    // (sudo warning that it cannot resolve the host name, say).
    let mut lines = s
        .text
        .lines()
        .skip_while(|l| !l.starts_with("microseed: "))
        .peekable();
    if lines.peek().is_none() {
        return unknown(format!("microseed-status: {}", first_line(&s.text)));
    }
    let Some(head) = lines.next() else {
        return unknown(format!("microseed-status said nothing (exit {})", s.code));
    };
    let (converged, counts) = if let Some(r) = head.strip_prefix("microseed: converged ") {
        (true, r)
    } else if let Some(r) = head.strip_prefix("microseed: not converged ") {
        (false, r)
    } else {
        return unknown(format!("microseed-status: {}", head.trim()));
    };
    let (done, total) = counts
        .trim()
        .trim_start_matches('(')
        .split_once(' ')
        .and_then(|(frac, _)| frac.split_once('/'))
        .map_or((None, None), |(d, t)| (d.parse().ok(), t.parse().ok()));
    let mut steps: Vec<Step> = Vec::new();
    for line in lines {
        if line.starts_with(' ') {
            if let Some(e) = line.trim().strip_prefix("last error:")
                && let Some(step) = steps.last_mut()
            {
                step.errors.push(e.trim().to_string());
            }
            continue;
        }
        let Some((name, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let detail = rest.trim().to_string();
        let state = if detail == "done" {
            "done"
        } else if detail.starts_with("stopped") {
            "stopped"
        } else if detail.starts_with("failed") {
            "failed"
        } else if detail.starts_with("running") {
            "running"
        } else if detail.starts_with("pending: waiting on") || detail.starts_with("waiting") {
            "waiting"
        } else {
            "pending"
        };
        steps.push(Step {
            name: name.to_string(),
            state,
            detail,
            errors: Vec::new(),
        });
    }
    // A step with a recorded failure is the news, whatever it does now.
    let failed = steps
        .iter()
        .find(|st| st.state != "done" && (st.state == "failed" || !st.errors.is_empty()));
    let (state, summary) = if converged && s.code == 0 {
        ("converged", format!("converged ({}/{})", n(done), n(total)))
    } else if let Some(st) = failed {
        let err = st
            .errors
            .iter()
            .rev()
            .find(|e| !e.is_empty() && !e.starts_with("attempt "))
            .or_else(|| st.errors.first())
            .cloned()
            .unwrap_or_else(|| short_detail(&st.detail));
        ("failed", format!("failed at {}: {err}", st.name))
    } else {
        let on = ["running", "stopped", "waiting", "pending"]
            .iter()
            .find_map(|want| steps.iter().find(|st| st.state == *want));
        let summary = match on {
            Some(st) => format!(
                "{}/{} done; {}: {}",
                n(done),
                n(total),
                st.name,
                short_detail(&st.detail)
            ),
            None => format!("not converged ({}/{})", n(done), n(total)),
        };
        ("not-converged", summary)
    };
    FirstBoot {
        state,
        done,
        total,
        summary,
        steps,
    }
}

fn n(v: Option<u32>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

/// A step's state without its description in parentheses.
fn short_detail(detail: &str) -> String {
    let d = match detail.split_once("; was: ") {
        Some((_, was)) if detail.starts_with("stopped") => was,
        _ => detail,
    };
    d.split_once(" (").map_or(d, |(a, _)| a).to_string()
}

/// `microk8s status`: the datastore's voters ("datastore master nodes")
/// and stand-bys. With 3 or more masters the cluster survives the loss of
/// one only with 3 voters (go-dqlite keeps 3), so fewer is `degraded`.
fn datastore(s: &Section) -> (Check, Option<Members>) {
    let list = |key: &str| -> Option<Vec<String>> {
        s.text.lines().find_map(|l| {
            l.trim().strip_prefix(key).map(|v| {
                v.split_whitespace()
                    .filter(|w| *w != "none")
                    .map(String::from)
                    .collect()
            })
        })
    };
    let check = |state, detail| Check {
        state,
        detail,
        offset_seconds: None,
    };
    if s.code == 127 {
        return (check("unknown", "microk8s not installed".into()), None);
    }
    let Some(voters) = list("datastore master nodes:") else {
        return (check("unknown", first_line(&s.text)), None);
    };
    let standbys = list("datastore standby nodes:").unwrap_or_default();
    let members = Members {
        voters: voters.clone(),
        standbys: standbys.clone(),
    };
    let detail = format!(
        "{} voter(s) ({}), {} stand-by(s){}",
        voters.len(),
        voters.join(" "),
        standbys.len(),
        if voters.len() < 3 {
            "; 3 are needed to survive the loss of a master (docs/ha.md)"
        } else {
            ""
        }
    );
    (
        check(if voters.len() >= 3 { "ok" } else { "degraded" }, detail),
        Some(members),
    )
}

/// `kubectl get nodes -o json`: a node is Ready when its `Ready` condition
/// is `True`.
fn nodes(s: &Section, expected: u32) -> Nodes {
    let unknown = |detail: String| Nodes {
        state: "unknown",
        ready: 0,
        expected,
        not_ready: Vec::new(),
        detail,
        listed: Vec::new(),
    };
    if s.code == 127 {
        return unknown("microk8s not installed".into());
    }
    if s.code != 0 {
        return unknown(first_line(&s.text));
    }
    let v: serde_json::Value = match serde_json::from_str(&s.text) {
        Ok(v) => v,
        Err(e) => return unknown(format!("kubectl's node list is not JSON: {e}")),
    };
    let Some(items) = v.get("items").and_then(|i| i.as_array()) else {
        return unknown("kubectl's node list has no items".into());
    };
    let mut ready = 0;
    let mut not_ready = Vec::new();
    let mut listed = Vec::new();
    for item in items {
        let name = item
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string();
        let status = item
            .pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .and_then(|conds| {
                conds
                    .iter()
                    .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))
            })
            .and_then(|c| c.get("status").and_then(|t| t.as_str()))
            .unwrap_or("none")
            .to_string();
        let is_ready = status == "True";
        listed.push((name.clone(), status));
        if is_ready {
            ready += 1;
        } else {
            not_ready.push(name);
        }
    }
    let state = if ready >= expected { "ok" } else { "not-ready" };
    let mut detail = format!("{ready}/{expected} Ready");
    if !not_ready.is_empty() {
        detail.push_str(&format!("; not Ready: {}", not_ready.join(", ")));
    }
    Nodes {
        state,
        ready,
        expected,
        not_ready,
        detail,
        listed,
    }
}

/// `chronyc -n tracking`: synchronized unless the leap status says not;
/// the offset is the "System time" line (fast = ahead of NTP time).
fn chrony(s: &Section) -> Check {
    let check = |state, detail: String, offset| Check {
        state,
        detail,
        offset_seconds: offset,
    };
    if s.code == 127 {
        return check("not-installed", "chronyc not installed".into(), None);
    }
    if s.text.contains("Cannot talk to daemon") {
        return check("not-running", "chronyd not running".into(), None);
    }
    if s.code != 0 {
        return check("unknown", first_line(&s.text), None);
    }
    let field = |key: &str| {
        s.text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let offset = field("System time").and_then(|v| {
        let mut w = v.split_whitespace();
        let secs: f64 = w.next()?.parse().ok()?;
        let _unit = w.next()?;
        match w.next()? {
            "fast" => Some(secs),
            "slow" => Some(-secs),
            _ => None,
        }
    });
    match field("Leap status").as_deref() {
        Some("Not synchronised") | None => {
            check("not-synchronized", "not synchronized".into(), offset)
        }
        Some(leap) => {
            let detail = match offset {
                Some(o) => format!("synchronized, offset {o:+.6} s"),
                None => format!("synchronized (leap status {leap})"),
            };
            check("synchronized", detail, offset)
        }
    }
}

/// `snap refresh --time --abs-time` (snapd's `showRefreshTimes`): the
/// `timer:`, `hold:` and `next:` lines, against the slot the cluster gave
/// this machine.
fn refresh(s: &Section, expected_timer: &str) -> Check {
    let check = |state, detail: String| Check {
        state,
        detail,
        offset_seconds: None,
    };
    if s.code == 127 {
        return check("not-installed", "snapd not installed".into());
    }
    if s.code != 0 {
        return check("unknown", first_line(&s.text));
    }
    let field = |key: &str| {
        s.text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let Some(timer) = field("timer").or_else(|| field("schedule")) else {
        return check("unknown", first_line(&s.text));
    };
    if timer != expected_timer {
        return check(
            "other-timer",
            format!("timer {timer}, the cluster's slot is {expected_timer}"),
        );
    }
    let next = field("next").unwrap_or_else(|| "n/a".into());
    match field("hold") {
        Some(hold) => check("held", format!("held until {hold}; then {timer}")),
        None => check("scheduled", format!("next {next} ({timer})")),
    }
}

fn ufw(s: &Section) -> Check {
    let check = |state, detail: &str| Check {
        state,
        detail: detail.to_string(),
        offset_seconds: None,
    };
    if s.code == 127 {
        return check("not-installed", "ufw not installed");
    }
    match s
        .text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Status:"))
        .map(str::trim)
    {
        Some("active") => check("active", "active"),
        Some("inactive") => check("inactive", "inactive"),
        _ => check("unknown", &first_line(&s.text)),
    }
}

fn nfs_export(
    exports: Option<&Section>,
    dir: Option<&Section>,
    root: &str,
    mount_expected: bool,
) -> NfsExport {
    let mut problems = Vec::new();
    let exported = match exports {
        Some(s) if s.code == 127 => {
            problems.push("exportfs not installed".to_string());
            false
        }
        Some(s) if s.code != 0 => {
            problems.push(format!("exportfs: {}", first_line(&s.text)));
            false
        }
        Some(s) => s
            .text
            .lines()
            .any(|l| l.split_whitespace().next() == Some(root)),
        None => false,
    };
    let has = |what: &str| dir.is_some_and(|d| d.text.lines().any(|l| l.trim() == what));
    let directory = has("directory: yes");
    let mounted = has("mounted: yes");
    if !exported && problems.is_empty() {
        problems.push(format!("{root} not exported"));
    }
    if !directory {
        problems.push(format!("{root} missing"));
    }
    if mount_expected && !mounted {
        problems.push(format!("{root} not mounted"));
    }
    let unknown = exports.is_none_or(|s| s.code != 0);
    let state = if problems.is_empty() {
        "ok"
    } else if unknown {
        "unknown"
    } else {
        "missing"
    };
    let detail = if problems.is_empty() {
        format!(
            "{root} exported{}",
            if mount_expected { ", mounted" } else { "" }
        )
    } else {
        problems.join(", ")
    };
    NfsExport {
        state,
        path: root.to_string(),
        exported,
        directory,
        mounted,
        mount_expected,
        detail,
    }
}

/// The merged view of every master asked (None when no master was):
/// a node is Ready when any reachable master reports it Ready, the
/// datastore is the member list most masters agree on, and a voter whose
/// master cannot be asked is named lost. Each master's `ok` then follows
/// this view, so masters never disagree on whether the cluster is done.
fn merge(cluster: &Cluster, reports: &mut [Report]) -> Option<View> {
    let asked: Vec<&Report> = reports.iter().filter(|r| r.role == "master").collect();
    if asked.is_empty() {
        return None;
    }
    let masters: Vec<MasterSeen> = asked
        .iter()
        .map(|r| MasterSeen {
            name: r.name.clone(),
            reachable: r.reachable,
            nodes_read: r.nodes.as_ref().is_some_and(|n| n.state != "unknown"),
        })
        .collect();
    let unreachable: Vec<String> = asked
        .iter()
        .filter(|r| !r.reachable)
        .map(|r| r.name.clone())
        .collect();
    let read: Vec<(&str, &Nodes)> = asked
        .iter()
        .filter_map(|r| {
            r.nodes
                .as_ref()
                .filter(|n| n.state != "unknown")
                .map(|n| (r.name.as_str(), n))
        })
        .collect();
    let mut seen = Vec::new();
    for m in cluster
        .machines
        .iter()
        .filter(|m| m.role == "master" || m.role == "worker")
    {
        let mut ready_on = Vec::new();
        let mut not_ready_on = Vec::new();
        for (master, n) in &read {
            if let Some((_, status)) = n.listed.iter().find(|(name, _)| *name == m.name) {
                if status == "True" {
                    ready_on.push(master.to_string());
                } else {
                    not_ready_on.push(format!("{master} ({status})"));
                }
            }
        }
        let state = if read.is_empty() {
            "unknown"
        } else if !ready_on.is_empty() {
            "ready"
        } else if !not_ready_on.is_empty() {
            "not-ready"
        } else {
            "not-listed"
        };
        seen.push(NodeSeen {
            name: m.name.clone(),
            role: m.role.clone(),
            state,
            ready_on,
            not_ready_on,
        });
    }
    let expected = seen.len() as u32;
    let ready = seen.iter().filter(|n| n.state == "ready").count() as u32;
    let not_ready: Vec<String> = seen
        .iter()
        .filter(|n| n.state != "ready")
        .map(|n| n.name.clone())
        .collect();
    let from: Vec<String> = read.iter().map(|(m, _)| m.to_string()).collect();
    let nodes_state = if read.is_empty() {
        "unknown"
    } else if not_ready.is_empty() {
        "ok"
    } else {
        "not-ready"
    };
    let mut detail = if read.is_empty() {
        "no master's node list could be read".to_string()
    } else {
        format!("{ready}/{expected} Ready (as {} report)", from.join(", "))
    };
    let problems: Vec<String> = seen
        .iter()
        .filter(|n| n.state != "ready" && n.state != "unknown")
        .map(|n| {
            if n.state == "not-listed" {
                format!("{} not listed", n.name)
            } else {
                format!("{} not Ready on {}", n.name, n.not_ready_on.join(", "))
            }
        })
        .collect();
    if !problems.is_empty() {
        detail.push_str(&format!("; {}", problems.join("; ")));
    }
    let nodes = MergedNodes {
        state: nodes_state,
        ready,
        expected,
        not_ready,
        from,
        nodes: seen,
        detail,
    };
    let datastore = (cluster.masters().count() >= 3).then(|| merged_datastore(cluster, &asked));
    let view = View {
        masters,
        unreachable,
        nodes,
        datastore,
    };
    let cluster_ok =
        view.nodes.state == "ok" && view.datastore.as_ref().is_none_or(|d| d.state == "ok");
    for r in reports.iter_mut().filter(|r| r.role == "master") {
        r.ok = r.reachable && r.first_boot.state == "converged" && cluster_ok;
    }
    Some(view)
}

/// The datastore as the reachable masters list it: the member list most of
/// them report (a master not joined lists its own lone datastore), each
/// voter tied to the master at its address and whether that one answered.
fn merged_datastore(cluster: &Cluster, asked: &[&Report]) -> MergedDatastore {
    let lists: Vec<(&str, &Members)> = asked
        .iter()
        .filter_map(|r| r.members.as_ref().map(|m| (r.name.as_str(), m)))
        .collect();
    let mut best: Option<&Members> = None;
    let mut best_count = 0;
    for (_, m) in &lists {
        let count = lists.iter().filter(|(_, o)| o == m).count();
        if count > best_count
            || (count == best_count && best.is_some_and(|b| m.voters.len() > b.voters.len()))
        {
            best = Some(m);
            best_count = count;
        }
    }
    let Some(best) = best else {
        return MergedDatastore {
            state: "unknown",
            voters: Vec::new(),
            standbys: Vec::new(),
            from: Vec::new(),
            other: Vec::new(),
            detail: "no master's datastore could be read".into(),
        };
    };
    let member = |address: &String| {
        let machine = cluster
            .masters()
            .find(|m| format!("{}:19001", m.ip) == *address);
        Member {
            address: address.clone(),
            machine: machine.map(|m| m.name.clone()),
            reachable: machine
                .and_then(|m| asked.iter().find(|r| r.name == m.name).map(|r| r.reachable)),
        }
    };
    let voters: Vec<Member> = best.voters.iter().map(member).collect();
    let standbys: Vec<Member> = best.standbys.iter().map(member).collect();
    let from: Vec<String> = lists
        .iter()
        .filter(|(_, m)| *m == best)
        .map(|(n, _)| n.to_string())
        .collect();
    let other: Vec<String> = lists
        .iter()
        .filter(|(_, m)| *m != best)
        .map(|(n, m)| format!("{n} ({})", m.voters.join(" ")))
        .collect();
    let lost: Vec<String> = voters
        .iter()
        .filter(|v| v.reachable == Some(false))
        .map(|v| format!("{} ({})", v.machine.as_deref().unwrap_or("?"), v.address))
        .collect();
    let mut detail = format!(
        "{} voter(s) ({}), {} stand-by(s)",
        voters.len(),
        best.voters.join(" "),
        standbys.len()
    );
    if !lost.is_empty() {
        detail.push_str(&format!(
            "; voter(s) on unreachable master(s): {} (lost until back or rebuilt, docs/ha.md)",
            lost.join(", ")
        ));
    }
    if voters.len() < 3 {
        detail.push_str("; 3 are needed to survive the loss of a master (docs/ha.md)");
    }
    if !other.is_empty() {
        detail.push_str(&format!(
            "; listing another datastore: {}",
            other.join(", ")
        ));
    }
    let ok = voters.len() >= 3 && lost.is_empty() && other.is_empty();
    MergedDatastore {
        state: if ok { "ok" } else { "degraded" },
        voters,
        standbys,
        from,
        other,
        detail,
    }
}

/// What keeps the cluster from being done: one phrase per machine that
/// cannot be asked or has not converged, then the merged view's nodes and
/// datastore.
fn missing(reports: &[Report], view: Option<&View>) -> Vec<String> {
    let mut out: Vec<String> = reports
        .iter()
        .filter(|r| !r.ok)
        .filter_map(|r| {
            if !r.reachable {
                Some(format!(
                    "{}: unreachable ({})",
                    r.name,
                    r.error.as_deref().unwrap_or("?")
                ))
            } else if r.first_boot.state != "converged" {
                Some(format!("{}: {}", r.name, r.first_boot.summary))
            } else {
                // A converged master held back by the cluster: said once,
                // below.
                None
            }
        })
        .collect();
    if let Some(v) = view {
        if let Some(d) = v.datastore.as_ref().filter(|d| d.state != "ok") {
            out.push(format!("datastore: {}", d.detail));
        }
        if v.nodes.state != "ok" {
            out.push(format!("nodes: {}", v.nodes.detail));
        }
    }
    out
}

fn exit_code(reports: &[Report], view: Option<&View>) -> u8 {
    let view_ok = view.is_none_or(|v| {
        v.nodes.state == "ok" && v.datastore.as_ref().is_none_or(|d| d.state == "ok")
    });
    if reports.iter().any(|r| !r.reachable) {
        EXIT_UNREACHABLE
    } else if reports.iter().any(|r| !r.ok) || !view_ok {
        EXIT_NOT_CONVERGED
    } else {
        0
    }
}

fn print(reports: &[Report], view: Option<&View>, json: bool) -> Result<()> {
    let missing = missing(reports, view);
    if json {
        outln!(
            "{}",
            json!({
                "ok": missing.is_empty(),
                "exit_code": exit_code(reports, view),
                "machines": reports,
                "cluster": view,
                "missing": missing,
            })
        )?;
        return Ok(());
    }
    let header = [
        "MACHINE",
        "ROLE",
        "ADDRESS",
        "SSH",
        "RELEASE",
        "FIRST BOOT",
        "NODES",
        "CHRONY",
        "UFW",
        "REFRESH",
        "NFS EXPORT",
    ];
    let rows: Vec<[String; 11]> = reports.iter().map(row).collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string()
    };
    outln!("{}", line(&header.map(String::from)))?;
    for r in &rows {
        outln!("{}", line(r))?;
    }
    for r in reports.iter().filter(|r| !r.ok) {
        outln!()?;
        match &r.error {
            Some(e) => outln!("{}: unreachable: {e}", r.name)?,
            None => {
                outln!("{}: {}", r.name, r.first_boot.summary)?;
                for st in r.first_boot.steps.iter().filter(|s| s.state != "done") {
                    outln!("  {:<10} {}", st.name, st.detail)?;
                    for e in &st.errors {
                        outln!("  {:<10}   last error: {e}", "")?;
                    }
                }
                if let Some(n) = r.nodes.as_ref().filter(|n| n.state != "ok") {
                    outln!("  nodes: {}", n.detail)?;
                }
                if let Some(d) = r.datastore.as_ref().filter(|d| d.state != "ok") {
                    outln!("  datastore: {}", d.detail)?;
                }
            }
        }
    }
    // Several masters: what they say together (one master's row says it).
    if let Some(v) = view.filter(|v| v.masters.len() > 1) {
        outln!()?;
        let mut head = format!("cluster, as {} report it", v.nodes.from.join(", "));
        if v.nodes.from.is_empty() {
            head = "cluster: no master's node list could be read".into();
        }
        if !v.unreachable.is_empty() {
            head.push_str(&format!(" ({} unreachable)", v.unreachable.join(", ")));
        }
        outln!("{head}:")?;
        outln!("  nodes      {}", v.nodes.detail)?;
        if let Some(d) = &v.datastore {
            outln!("  datastore  {}", d.detail)?;
        }
    }
    outln!()?;
    if missing.is_empty() {
        outln!("all {} machines converged", reports.len())?;
    } else {
        outln!(
            "not done: {}",
            reports
                .iter()
                .filter(|r| !r.ok)
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )?;
    }
    Ok(())
}

fn row(r: &Report) -> [String; 11] {
    let dash = || "-".to_string();
    if !r.reachable {
        let ssh = if host_key_changed(r) {
            HOST_KEY_CHANGED
        } else {
            "unreachable"
        };
        return [
            r.name.clone(),
            r.role.clone(),
            format!("{}:{}", r.address, r.port),
            ssh.into(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
        ];
    }
    let release = match &r.release {
        Some(v) if *v == r.release_expected => v.clone(),
        Some(v) => format!("{v} (cluster: {})", r.release_expected),
        None => "?".into(),
    };
    [
        r.name.clone(),
        r.role.clone(),
        format!("{}:{}", r.address, r.port),
        "ok".into(),
        release,
        truncate(&r.first_boot.summary, 60),
        r.nodes.as_ref().map_or_else(dash, |n| {
            if n.state == "unknown" {
                truncate(&n.detail, 30)
            } else {
                format!("{}/{} Ready", n.ready, n.expected)
            }
        }),
        truncate(&r.chrony.detail, 40),
        truncate(&r.ufw.detail, 30),
        truncate(&r.refresh.detail, 60),
        r.nfs_export
            .as_ref()
            .map_or_else(dash, |e| truncate(&e.detail, 40)),
    ]
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `--wait`'s progress: a spinner line on a terminal, else one line on
/// stderr each time what is missing changes (readable in a CI log).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    show: bool,
    last: std::cell::RefCell<String>,
}

impl Progress {
    fn new(show: bool) -> Progress {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                None,
                indicatif::ProgressDrawTarget::stderr(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {wide_msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            show,
            last: std::cell::RefCell::new(String::new()),
        }
    }

    fn update(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
            return;
        }
        if !self.show {
            return;
        }
        // The elapsed time changes every poll; print when the rest does.
        let key = msg.split_once("): ").map_or(msg, |(_, k)| k).to_string();
        if *self.last.borrow() != key {
            errln!("{msg}");
            *self.last.borrow_mut() = key;
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str, code: i32) -> Section {
        Section {
            text: text.into(),
            code,
        }
    }

    #[test]
    fn a_machines_control_characters_are_replaced_but_crlf_line_ends_are_kept_as_lf() {
        assert_eq!(
            printable("ssh: Connection timed out\r\n"),
            "ssh: Connection timed out\n"
        );
        assert_eq!(
            printable("a\rb\x1b[31mc\u{202e}d\te\n"),
            "a\u{fffd}b\u{fffd}[31mc\u{fffd}d\te\n"
        );
    }

    #[test]
    fn durations_take_seconds_minutes_and_hours() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn sections_survive_output_without_a_final_newline_and_noise_before() {
        let out = "motd noise\n@@microseed-probe 1\n@@microseed-probe begin a\nx\ny\n@@microseed-probe end a 3\n@@microseed-probe begin b\n\n@@microseed-probe end b 0\n@@microseed-probe done\n";
        let s = parse_sections(out).expect("sections");
        assert_eq!(s["a"].text, "x\ny");
        assert_eq!(s["a"].code, 3);
        assert_eq!(s["b"].text, "");
        assert!(parse_sections("Permission denied\n").is_none());
    }

    #[test]
    fn a_failed_step_is_named_with_its_last_error_line() {
        let text = [
            "microseed: not converged (5/6 steps done)",
            "packages   done",
            "join       failed: attempt 3 exited 1; retrying in 40s (join the master (retried until it answers))",
            "             last error: attempt 3 exited 1 at 2026-11-28T10:00:00Z",
            "             last error: Connection refused by 172.20.10.11:25000",
        ]
        .join("\n");
        let fb = first_boot(&section(&text, 1));
        assert_eq!(fb.state, "failed");
        assert_eq!((fb.done, fb.total), (Some(5), Some(6)));
        assert_eq!(
            fb.summary,
            "failed at join: Connection refused by 172.20.10.11:25000"
        );
        assert_eq!(fb.steps[1].errors.len(), 2);
    }

    #[test]
    fn a_running_step_is_the_one_the_machine_is_on() {
        let text = "microseed: not converged (1/3 steps done)\n\
packages   done\n\
microk8s   running: attempt 1 since 2026-11-28T10:00:00Z (MicroK8s from the cluster's channel, ready)\n\
join       pending: waiting on microk8s (join the master (retried until it answers))\n";
        let fb = first_boot(&section(text, 1));
        assert_eq!(fb.state, "not-converged");
        assert_eq!(
            fb.summary,
            "1/3 done; microk8s: running: attempt 1 since 2026-11-28T10:00:00Z"
        );
        assert_eq!(fb.steps[2].state, "waiting");
    }

    #[test]
    fn sudo_refusal_and_missing_status_script_are_values_not_crashes() {
        let fb = first_boot(&section("sudo: a password is required", 1));
        assert_eq!(fb.state, "unknown");
        assert!(fb.summary.contains("a password is required"));
        let fb = first_boot(&section("microseed-status: not installed", 127));
        assert!(fb.summary.contains("not installed"));
    }

    #[test]
    fn chrony_offset_sign_follows_fast_and_slow() {
        let t = "Reference ID    : D8EF2300 (time1.google.com)\nSystem time     : 0.000123000 seconds slow of NTP time\nLeap status     : Normal\n";
        let c = chrony(&section(t, 0));
        assert_eq!(c.state, "synchronized");
        assert_eq!(c.offset_seconds, Some(-0.000123));
        let c = chrony(&section(
            "Reference ID    : 00000000 ()\nSystem time     : 0.000000000 seconds fast of NTP time\nLeap status     : Not synchronised\n",
            0,
        ));
        assert_eq!(c.state, "not-synchronized");
        let c = chrony(&section("506 Cannot talk to daemon", 1));
        assert_eq!(c.state, "not-running");
        assert_eq!(
            chrony(&section("chronyc: not installed", 127)).state,
            "not-installed"
        );
    }

    /// With 3 masters, a master whose datastore has 2 voters keeps the
    /// cluster from converged, though its first boot is done and every
    /// node is Ready; with 3 voters it is converged.
    #[test]
    fn an_ha_master_is_converged_only_with_three_voters() {
        let text = include_str!("../examples/ha/cluster.yaml");
        let file = std::path::Path::new("cluster.yaml");
        let raw = crate::schema::parse(file, text).expect("parses");
        let profiles = crate::profile::Profiles::load(None).expect("profiles");
        let cluster = crate::validate::validate(file, &raw, &profiles).expect("valid");
        let m = cluster.machine("master-2").expect("master-2");
        let nodes = ["master-1", "master-2", "master-3", "worker-1"]
            .map(|n| format!(r#"{{"metadata":{{"name":"{n}"}},"status":{{"conditions":[{{"type":"Ready","status":"True"}}]}}}}"#))
            .join(",");
        let with = |voters: &str| {
            let mut sections = BTreeMap::new();
            sections.insert(
                "status".to_string(),
                section("microseed: converged (12/12 steps done)\n", 0),
            );
            sections.insert(
                "nodes".to_string(),
                section(&format!(r#"{{"items":[{nodes}]}}"#), 0),
            );
            sections.insert(
                "datastore".to_string(),
                section(&format!("microk8s is running\n  datastore master nodes: {voters}\n  datastore standby nodes: none\n"), 0),
            );
            report_from(&cluster, m, 22, &sections)
        };
        let mut rs = vec![with("172.20.10.11:19001 172.20.10.12:19001")];
        let view = merge(&cluster, &mut rs);
        let r = &rs[0];
        assert_eq!(r.first_boot.state, "converged");
        assert_eq!(r.nodes.as_ref().map(|n| n.state), Some("ok"));
        assert!(!r.ok);
        assert_eq!(
            missing(&rs, view.as_ref()),
            [
                "datastore: 2 voter(s) (172.20.10.11:19001 172.20.10.12:19001), 0 stand-by(s); 3 are needed to survive the loss of a master (docs/ha.md)"
            ]
        );
        assert_eq!(exit_code(&rs, view.as_ref()), EXIT_NOT_CONVERGED);
        let mut rs = vec![with(
            "172.20.10.11:19001 172.20.10.12:19001 172.20.10.13:19001",
        )];
        let view = merge(&cluster, &mut rs);
        assert!(rs[0].ok, "{:?}", view);
        assert_eq!(exit_code(&rs, view.as_ref()), 0);
    }

    /// master-1 lost: masters 2 and 3 report it Unknown and the worker
    /// Ready; the merged view counts the worker Ready (any reachable
    /// master reporting it Ready), names master-1 not Ready and its voter
    /// lost, and the exit code is "unreachable".
    #[test]
    fn the_merged_view_keeps_the_worker_ready_and_names_a_lost_master() {
        let text = include_str!("../examples/ha/cluster.yaml");
        let file = std::path::Path::new("cluster.yaml");
        let raw = crate::schema::parse(file, text).expect("parses");
        let profiles = crate::profile::Profiles::load(None).expect("profiles");
        let cluster = crate::validate::validate(file, &raw, &profiles).expect("valid");
        let node = |n: &str, st: &str| {
            format!(
                r#"{{"metadata":{{"name":"{n}"}},"status":{{"conditions":[{{"type":"Ready","status":"{st}"}}]}}}}"#
            )
        };
        let report = |name: &str, master_1: &str, worker: &str| {
            let items = [
                node("master-1", master_1),
                node("master-2", "True"),
                node("master-3", "True"),
                node("worker-1", worker),
            ]
            .join(",");
            let mut sections = BTreeMap::new();
            sections.insert(
                "status".to_string(),
                section("microseed: converged (12/12 steps done)\n", 0),
            );
            sections.insert(
                "nodes".to_string(),
                section(&format!(r#"{{"items":[{items}]}}"#), 0),
            );
            sections.insert(
                "datastore".to_string(),
                section("microk8s is running\n  datastore master nodes: 172.20.10.11:19001 172.20.10.12:19001 172.20.10.13:19001\n  datastore standby nodes: none\n", 0),
            );
            report_from(
                &cluster,
                cluster.machine(name).expect("master"),
                22,
                &sections,
            )
        };
        let m1 = cluster.machine("master-1").expect("master-1");
        // master-3's list is a moment older: the worker still NotReady there.
        let mut rs = vec![
            unreachable_report(&cluster, m1, 22, "ssh: connect to host: No route to host"),
            report("master-2", "Unknown", "True"),
            report("master-3", "Unknown", "False"),
        ];
        let view = merge(&cluster, &mut rs).expect("view");
        assert_eq!(view.unreachable, ["master-1"]);
        let state = |n: &str| {
            view.nodes
                .nodes
                .iter()
                .find(|x| x.name == n)
                .map(|x| x.state)
        };
        assert_eq!(state("worker-1"), Some("ready"));
        assert_eq!(state("master-2"), Some("ready"));
        assert_eq!(state("master-1"), Some("not-ready"));
        assert_eq!(view.nodes.not_ready, ["master-1"]);
        assert_eq!(view.nodes.ready, 3);
        let d = view.datastore.as_ref().expect("datastore");
        assert_eq!(d.state, "degraded");
        assert!(
            d.detail
                .contains("voter(s) on unreachable master(s): master-1 (172.20.10.11:19001)"),
            "{}",
            d.detail
        );
        assert_eq!(exit_code(&rs, Some(&view)), EXIT_UNREACHABLE);
        let missing = missing(&rs, Some(&view));
        assert!(
            missing[0].starts_with("master-1: unreachable"),
            "{missing:?}"
        );
        assert!(
            missing.iter().any(|m| m
                .starts_with("nodes: 3/4 Ready (as master-2, master-3 report)")
                && m.contains("master-1 not Ready on master-2 (Unknown), master-3 (Unknown)")),
            "{missing:?}"
        );
    }

    /// 3 voters or more is a datastore that survives a master's loss;
    /// fewer (a master not yet joined, or gone) is degraded and named.
    #[test]
    fn the_datastore_needs_three_voters() {
        let three = "microk8s is running\nhigh-availability: yes\n  datastore master nodes: 10.0.0.1:19001 10.0.0.2:19001 10.0.0.3:19001\n  datastore standby nodes: 10.0.0.4:19001\n";
        let d = datastore(&section(three, 0)).0;
        assert_eq!(d.state, "ok", "{}", d.detail);
        assert!(d.detail.starts_with("3 voter(s)"), "{}", d.detail);
        assert!(d.detail.contains("1 stand-by(s)"), "{}", d.detail);
        let two = "microk8s is running\nhigh-availability: no\n  datastore master nodes: 10.0.0.1:19001 10.0.0.2:19001\n  datastore standby nodes: none\n";
        let d = datastore(&section(two, 0)).0;
        assert_eq!(d.state, "degraded");
        assert!(d.detail.contains("3 are needed"), "{}", d.detail);
        let d = datastore(&section("microk8s is not running. Use microk8s inspect", 0)).0;
        assert_eq!(d.state, "unknown");
    }

    #[test]
    fn nodes_count_only_a_true_ready_condition() {
        let j = r#"{"items":[
            {"metadata":{"name":"master"},"status":{"conditions":[{"type":"Ready","status":"True"}]}},
            {"metadata":{"name":"worker-1"},"status":{"conditions":[{"type":"Ready","status":"False"}]}}]}"#;
        let n = nodes(&section(j, 0), 2);
        assert_eq!((n.state, n.ready), ("not-ready", 1));
        assert_eq!(n.not_ready, vec!["worker-1"]);
        assert_eq!(nodes(&section("garbage", 0), 2).state, "unknown");
    }

    #[test]
    fn an_export_is_found_by_its_path_as_the_first_word() {
        let ex = section(
            "/data         \t172.20.0.0/20(sync,wdelay,hide,no_subtree_check,sec=sys,rw,secure,root_squash,no_all_squash)",
            0,
        );
        let dir = section("directory: yes\nmounted: no", 0);
        let e = nfs_export(Some(&ex), Some(&dir), "/data", false);
        assert_eq!(e.state, "ok");
        let e = nfs_export(Some(&ex), Some(&dir), "/data", true);
        assert_eq!(e.state, "missing");
        let e = nfs_export(Some(&ex), Some(&dir), "/dat", false);
        assert!(!e.exported);
    }

    /// An export root on a data disk (`nfs.data_disk`) is a mount point, as
    /// one on a data volume is: the bare directory beneath it is a problem.
    #[test]
    fn an_export_on_a_data_disk_must_be_mounted() {
        let example = include_str!("../examples/eth2-staking/cluster.yaml");
        let with_disk = example
            .replace(
                "  gid: 2000\n",
                "  gid: 2000\n  data_disk: {serial: WD-WCC7K0TESTSER}\n",
            )
            .replace(
                "    ip: 172.20.10.10",
                "    ip: 172.20.10.10\n    disk: {serial: QEMU_HARDDISK_QM00001}",
            );
        let file = std::path::Path::new("cluster.yaml");
        let profiles = crate::profile::Profiles::load(None).expect("profiles");
        let mut sections = BTreeMap::new();
        sections.insert(
            "exports".to_string(),
            section(
                "/data 172.20.0.0/20(rw,sync,no_subtree_check,mountpoint)",
                0,
            ),
        );
        sections.insert(
            "export-dir".to_string(),
            section("directory: yes\nmounted: no", 0),
        );
        for (text, want) in [(example.to_string(), "ok"), (with_disk, "missing")] {
            let raw = crate::schema::parse(file, &text).expect("parses");
            let cluster = crate::validate::validate(file, &raw, &profiles).expect("valid");
            let nfs = cluster.machine("nfs").expect("nfs");
            let r = report_from(&cluster, nfs, 22, &sections);
            assert_eq!(r.nfs_export.expect("nfs export").state, want);
        }
    }

    #[test]
    fn the_probe_script_splices_nothing_from_the_cluster() {
        // Only the two positional arguments carry cluster values.
        assert!(!PROBE.contains("{{"));
        assert!(PROBE.contains("role=${1:-}") && PROBE.contains("export_root=${2:-}"));
    }
}
