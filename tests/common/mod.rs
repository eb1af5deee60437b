//! Helpers shared by the integration tests: a scratch cluster directory with
//! fixed secrets, running the binary, and calling the real consumers.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
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

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_microseed"))
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory holding `cluster.yaml` (the given text) and the
/// fixed test secrets (mode 0600).
pub struct Scratch {
    pub dir: tempfile::TempDir,
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
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
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
/// it makes vanish with it), with `args` as `$1`, `$2`...
pub fn in_mount_namespace(script: &str, args: &[&str]) -> Output {
    let mut argv = vec![
        "--mount",
        "--propagation",
        "private",
        "bash",
        "-c",
        script,
        "x",
    ];
    argv.extend_from_slice(args);
    run("unshare", &argv)
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
    let mut out = String::new();
    let mut n = 0;
    let text = example_with_own_key()
        .replace("release: \"20.04\"", "release: \"24.04\"")
        .replace("channel: 1.20/stable", "channel: 1.35/stable")
        .replace(
            "[time.google.com, us.pool.ntp.org, ntp.ubuntu.com]",
            "[us.pool.ntp.org, ntp.ubuntu.com]",
        );
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("    ip: ") {
            n += 1;
            out.push_str(&format!("    mac: 52:54:00:00:00:{n:02x}\n"));
        }
    }
    out
}
