//! Helpers shared by the integration tests: a scratch cluster directory with
//! fixed secrets, running the binary, and calling the real consumers.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const EXAMPLE: &str = include_str!("../../examples/eth2-staking/cluster.yaml");
pub const SECRETS: &str = include_str!("../fixtures/secrets.yaml");
/// A public key of the tests' own (its private half was never kept), for
/// runs that must not draw the warning the examples' key gets.
pub const OWN_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAF7EwQjYU9t1QvlLIjVCWu9Gf3he2BGXWluvXqjoR4l tester@microseed";

/// The example with the examples' key replaced by [`OWN_KEY`].
pub fn example_with_own_key() -> String {
    let example_key = EXAMPLE
        .lines()
        .find_map(|l| l.trim().strip_prefix("- ssh-ed25519 "))
        .expect("the example's key");
    EXAMPLE.replacen(&format!("ssh-ed25519 {example_key}"), OWN_KEY, 1)
}

/// What turns staking on in [`EXAMPLE`] (replacing `  enabled: false`):
/// the least a staking cluster needs, with an EIP-55 address of EIP-55's
/// own examples as the fee recipient.
pub const STAKING_ON: &str = "  enabled: true\n  network: hoodi\n  fee_recipient: \"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"";
/// [`EXAMPLE`] with staking on.
pub fn staking_example() -> String {
    EXAMPLE.replace("  enabled: false", STAKING_ON)
}

/// The binary, with what it reads from the environment fixed (see
/// [`fixed_env`]). Tests that want one of these set it after this call,
/// which wins.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_microseed"));
    fixed_env(&mut c);
    c
}

/// What the binary reads from the environment, fixed on a command that runs
/// it directly or through a wrapper (`script`, `setpriv`, `unshare`): a
/// build must not change with the tester's `SOURCE_DATE_EPOCH`, nor find an
/// ISO in the tester's own download cache, nor leave hash states there (its
/// cache is one under the target directory, which never holds an ISO: tests
/// that download name their own).
pub fn fixed_env(c: &mut Command) -> &mut Command {
    for k in ["SOURCE_DATE_EPOCH", "XDG_CACHE_HOME"] {
        c.env_remove(k);
    }
    c.env(
        "MICROSEED_CACHE_DIR",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/microseed-cache"),
    )
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory holding `cluster.yaml` (the given text) and the
/// fixed test secrets (mode 0600). Dropping it fails the test when a
/// process still names the directory (see [`assert_nothing_left`]).
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        assert_nothing_left(self.dir.path());
    }
}

impl Scratch {
    pub fn new(cluster: &str) -> Scratch {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cluster.yaml"), cluster).expect("write cluster");
        let s = dir.path().join("secrets.yaml");
        std::fs::write(&s, SECRETS).expect("write secrets");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Scratch { dir }
    }
    /// As `new`, in a directory whose name starts with `prefix` (a space
    /// in it puts every path the test hands on through quoting).
    /// Made in /tmp, not $TMPDIR, for a test whose paths another user must
    /// reach (or that shows them in width-limited columns): a TMPDIR may be
    /// private to its owner, or long.
    pub fn with_prefix(cluster: &str, prefix: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in("/tmp")
            .expect("tempdir");
        let sc = Scratch { dir };
        std::fs::write(sc.cluster(), cluster).expect("write cluster");
        let s = sc.dir.path().join("secrets.yaml");
        std::fs::write(&s, SECRETS).expect("write secrets");
        std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        sc
    }
    pub fn example() -> Scratch {
        Scratch::new(EXAMPLE)
    }
    pub fn cluster(&self) -> PathBuf {
        self.dir.path().join("cluster.yaml")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    pub fn build(&self, extra: &[&str]) -> Output {
        let mut c = bin();
        c.arg("build").arg(self.cluster()).arg("-o").arg(self.out());
        c.args(extra);
        c.output().expect("run microseed")
    }
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs a program, failing the test (not skipping) when it is missing.
pub fn run(program: &str, args: &[&str]) -> Output {
    let mut c = Command::new(program);
    dies_with_the_test(&mut c);
    c.args(args).output().unwrap_or_else(|e| {
        panic!("{program} is needed for this test (scripts/test.sh installs it): {e}")
    })
}

/// Parses YAML with PyYAML, as cloud-init does, and returns it as JSON.
pub fn pyyaml(path: &Path) -> serde_json::Value {
    let o = run(
        "python3",
        &[
            "-c",
            "import sys, yaml, json, datetime\n\
             def d(o):\n    raise TypeError(repr(o))\n\
             print(json.dumps(yaml.safe_load(open(sys.argv[1])), default=d))",
            path.to_str().expect("utf-8 path"),
        ],
    );
    assert!(
        o.status.success(),
        "PyYAML failed on {}: {}",
        path.display(),
        text(&o).1
    );
    serde_json::from_slice(&o.stdout).expect("json from python")
}

/// Places every `write_files` entry of a cloud-config (as PyYAML reads it)
/// under `dest`, with its mode; returns the paths written.
pub fn extract_write_files(cloud_config: &serde_json::Value, dest: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for f in cloud_config["write_files"]
        .as_array()
        .expect("write_files list")
    {
        let path = f["path"].as_str().expect("path");
        let p = dest.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, f["content"].as_str().expect("content")).expect("write");
        let mode = u32::from_str_radix(f["permissions"].as_str().expect("mode"), 8).expect("octal");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        out.push(p);
    }
    out
}

/// The first-boot cloud-config inside a machine's installer user-data.
pub fn first_boot(out: &Path, machine: &str) -> serde_json::Value {
    let ud = pyyaml(&out.join(machine).join("user-data"));
    ud["autoinstall"]["user-data"].clone()
}

pub fn make_executable(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Where the PXE tests say `microseed serve` will listen.
pub const PXE_URL: &str = "http://172.20.10.5:8080";

/// The example cluster with MACs on master and worker-1 (the NFS server
/// keeps none, so it is only reachable from the boot menus).
pub fn pxe_cluster() -> String {
    EXAMPLE
        .replace(
            "    ip: 172.20.10.11\n",
            "    ip: 172.20.10.11\n    mac: 52:54:00:ab:cd:11\n",
        )
        .replace(
            "    ip: 172.20.10.12\n",
            "    ip: 172.20.10.12\n    mac: 52:54:00:AB:CD:12\n",
        )
}

/// Every regular file under `dir` as (relative path, bytes), sorted.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readdir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// Runs `script` under bash as root in a private mount namespace (mounts
/// it makes vanish with it) and PID namespace (what it starts dies with
/// it), with `args` as `$1`, `$2`...
pub fn in_mount_namespace(script: &str, args: &[&str]) -> Output {
    let mut argv = vec![
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child",
        "bash",
        "-c",
        script,
        "x",
    ];
    argv.extend_from_slice(args);
    fixed_env(&mut unshare(&argv))
        .output()
        .unwrap_or_else(|e| panic!("unshare (util-linux) is needed for this test: {e}"))
}

/// `unshare ARGS`, killed (SIGKILL) when the test's thread ends: a test
/// that panics, or a test binary killed for taking too long, takes the
/// namespace down with it. With `--pid --fork --kill-child` the child is
/// PID 1 of its own PID namespace, and the kernel kills everything in the
/// namespace when it dies, servers backgrounded inside included.
pub fn unshare(args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(args);
    dies_with_the_test(&mut c);
    c
}

/// Has `c`'s process get SIGKILL when the thread that started it ends.
pub fn dies_with_the_test(c: &mut Command) {
    // SAFETY: prctl(2) is async-signal-safe and touches no memory of ours.
    unsafe {
        c.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A process still running that names `dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    pub ppid: i32,
    pub cmdline: String,
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} (parent {}): {}",
            self.pid, self.ppid, self.cmdline
        )
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Every process but this one whose command line, or working directory,
/// names `dir` (or anything under it), and what those started. A test's
/// scratch directory is unique to the test, so whatever names it was
/// started by the test (or by what the test ran), and concurrent tests, or
/// other test runs on the machine, never count. Zombies have no command
/// line and are not listed.
pub fn processes_using(dir: &Path) -> Vec<Leftover> {
    let mut names = vec![dir.to_path_buf()];
    if let Ok(c) = dir.canonicalize()
        && c != dir
    {
        names.push(c);
    }
    let me = std::process::id() as i32;
    let mut all = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let p = e.path();
        let Ok(cmdline) = std::fs::read(p.join("cmdline")) else {
            continue;
        };
        if cmdline.is_empty() {
            continue;
        }
        let cwd = std::fs::read_link(p.join("cwd")).ok();
        let named = names.iter().any(|n| {
            contains(&cmdline, n.as_os_str().as_encoded_bytes())
                || cwd.as_deref().is_some_and(|c| c.starts_with(n))
        });
        // The parent follows the command name, which may hold `)`.
        let ppid = std::fs::read_to_string(p.join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0);
        let cmdline = String::from_utf8_lossy(&cmdline)
            .trim_end_matches('\0')
            .replace('\0', " ");
        all.push((Leftover { pid, ppid, cmdline }, named));
    }
    let parent: std::collections::HashMap<i32, i32> =
        all.iter().map(|(l, _)| (l.pid, l.ppid)).collect();
    let named: std::collections::HashSet<i32> =
        all.iter().filter(|(_, n)| *n).map(|(l, _)| l.pid).collect();
    let below_named = |mut pid: i32| {
        for _ in 0..64 {
            match parent.get(&pid) {
                Some(&pp) if named.contains(&pp) => return true,
                Some(&pp) => pid = pp,
                None => return false,
            }
        }
        false
    };
    all.into_iter()
        .filter(|(l, n)| *n || below_named(l.pid))
        .map(|(l, _)| l)
        .collect()
}

/// What still names `dir` once processes being torn down have had two
/// seconds to go; those left are then killed (SIGKILL), so a failing test
/// leaves nothing running either.
pub fn leftovers(dir: &Path) -> Vec<Leftover> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let left = processes_using(dir);
        if left.is_empty() || std::time::Instant::now() > deadline {
            for l in &left {
                // SAFETY: kill(2) has no memory effects; the process names
                // this test's own scratch directory.
                unsafe { libc::kill(l.pid, libc::SIGKILL) };
            }
            return left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Fails the test (unless it is failing already) when a process it started
/// still names `dir`: nothing a test starts may outlive it. Called when a
/// test's scratch directory goes away.
pub fn assert_nothing_left(dir: &Path) {
    let left = leftovers(dir);
    if !left.is_empty() && !std::thread::panicking() {
        let list: Vec<String> = left.iter().map(ToString::to_string).collect();
        panic!(
            "the test left {} process(es) running that name {} (now killed):\n{}",
            left.len(),
            dir.display(),
            list.join("\n")
        );
    }
}

/// `s` as one word for sh (single-quoted).
pub fn shq(s: impl AsRef<std::ffi::OsStr>) -> String {
    format!("'{}'", s.as_ref().to_string_lossy().replace('\'', r"'\''"))
}

/// A run held at a test pause point (`MICROSEED_TEST_PAUSE`) until the test
/// has changed the world and calls [`Paused::resume`]
/// (`MICROSEED_TEST_RESUME`): what races a build, made deterministic.
pub struct Paused {
    child: std::process::Child,
    err: std::io::BufReader<std::process::ChildStderr>,
    seen: String,
    resume: PathBuf,
    _dir: tempfile::TempDir,
}

impl Paused {
    /// Starts `cmd` and returns once it says it is paused at `point`.
    pub fn start(mut cmd: Command, point: &str) -> Paused {
        use std::io::BufRead;
        let dir = tempfile::tempdir().expect("tempdir");
        let resume = dir.path().join("resume");
        let mut child = cmd
            .env("MICROSEED_TEST_PAUSE", point)
            .env("MICROSEED_TEST_RESUME", &resume)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn microseed");
        let mut err = std::io::BufReader::new(child.stderr.take().expect("stderr"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = err.read_line(&mut line).expect("read stderr");
            seen.push_str(&line);
            if n == 0 {
                let _ = child.wait();
                panic!("the run ended before pausing at {point}: {seen}");
            }
            if line.contains(&format!("paused at {point}")) {
                break;
            }
        }
        Paused {
            child,
            err,
            seen,
            resume,
            _dir: dir,
        }
    }

    /// Lets the run go on; returns its exit status and whole stderr.
    pub fn resume(mut self) -> (std::process::ExitStatus, String) {
        std::fs::write(&self.resume, "").expect("resume");
        std::io::Read::read_to_string(&mut self.err, &mut self.seen).expect("read stderr");
        let st = self.child.wait().expect("wait");
        (st, self.seen.clone())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // A failed assertion must not leave the run paused forever.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The day the tests' support warnings are judged on (`MICROSEED_TODAY`).
pub const TODAY: &str = "2026-12-07";

/// The example with nothing `check` warns about on [`TODAY`]: Ubuntu 24.04
/// with MicroK8s 1.35, pools that do not mix smeared and stepping servers,
/// a MAC for every machine, and a key of the tests' own.
pub fn quiet_example() -> String {
    let text = example_with_own_key()
        .replace("release: \"20.04\"", "release: \"24.04\"")
        .replace("channel: 1.20/stable", "channel: 1.35/stable")
        .replace(
            "[time.google.com, us.pool.ntp.org, ntp.ubuntu.com]",
            "[us.pool.ntp.org, ntp.ubuntu.com]",
        );
    with_macs(&text)
}

/// `cluster` with a distinct MAC after every machine's `ip:` line, so the
/// warning about machines with neither `mac` nor `interface` stays out of
/// the way of the others.
pub fn with_macs(cluster: &str) -> String {
    let mut out = String::new();
    let mut n = 0;
    for line in cluster.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("    ip: ") {
            n += 1;
            out.push_str(&format!("    mac: 52:54:00:00:00:{n:02x}\n"));
        }
    }
    out
}
