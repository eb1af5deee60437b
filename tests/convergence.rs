//! First boot as steps that converge: the step runner and microseed-status
//! run under bash, and the master's and worker's scripts run against the
//! project's stand-in `microk8s` (tests/fixtures/fakes/microk8s), which
//! models each channel's token, join and status rules, for every channel.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{EXAMPLE, Scratch, extract_write_files, first_boot, root, text};

const TOKEN: &str = "TestTokenForGoldenFiles0123456789abcdefABCDEF";
const DAY: u64 = 86_400;
/// 2026-01-01, so every run of the test sees the same dates.
const T0: u64 = 1_767_225_600;

/// Every MicroK8s track the scripts are written for.
const CHANNELS: &[&str] = &[
    "1.20", "1.21", "1.22", "1.23", "1.24", "1.25", "1.26", "1.27", "1.28", "1.29", "1.30", "1.31",
];

/// The example cluster on one channel, built, with each machine's files
/// laid out under `roots/<machine>`.
struct Built {
    _s: Scratch,
    dir: PathBuf,
}

impl Built {
    fn new(channel: &str) -> Built {
        let s = Scratch::new(&EXAMPLE.replace(
            "channel: 1.20/stable",
            &format!("channel: {channel}/stable"),
        ));
        let o = s.build(&[]);
        assert!(o.status.success(), "{}", text(&o).1);
        let dir = s.dir.path().join("roots");
        for m in ["nfs", "master", "worker-1"] {
            extract_write_files(&first_boot(&s.out(), m), &dir.join(m));
        }
        Built { dir, _s: s }
    }
    fn file(&self, machine: &str, path: &str) -> PathBuf {
        self.dir.join(machine).join(path.trim_start_matches('/'))
    }
    /// The worker's `microseed-fingerprint`, which its join script runs.
    fn fingerprint_script(&self) -> PathBuf {
        self.file("worker-1", "/usr/local/lib/microseed/microseed-fingerprint")
    }
}

/// One simulated node: its SNAP_DATA, the fake's knobs and call log.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new(channel: &str) -> Node {
        let dir = tempfile::tempdir().expect("tmp");
        for d in [
            "data/credentials",
            "data/var/kubernetes/backend",
            "conf",
            "bin",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
        }
        // A fresh node's dqlite: itself alone, as the snap leaves it.
        std::fs::write(
            dir.path().join("data/var/kubernetes/backend/cluster.yaml"),
            "- Address: 127.0.0.1:19001\n  ID: 3297041220608546238\n  Role: 0\n",
        )
        .expect("cluster.yaml");
        std::fs::write(
            dir.path().join("conf/channel"),
            format!("{channel}/stable\n"),
        )
        .expect("w");
        std::os::unix::fs::symlink(
            root().join("tests/fixtures/fakes/microk8s"),
            dir.path().join("bin/microk8s"),
        )
        .expect("link");
        let node = Node { dir };
        certificate(&node.data().join("certs"));
        node
    }
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
    fn knob(&self, name: &str, value: &str) {
        std::fs::write(self.dir.path().join("conf").join(name), value).expect("knob");
    }
    fn calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default()
    }
    /// Runs a script as the unit would, with this node's fake and clock.
    fn run(&self, script: &Path, now: u64, extra: &[(&str, &Path)]) -> Output {
        self.run_on(&Lan::default(), script, now, extra)
    }
    /// As `run`, in a network namespace of its own where `lan` answers at
    /// the master's address.
    fn run_on(&self, lan: &Lan, script: &Path, now: u64, extra: &[(&str, &Path)]) -> Output {
        self.on(lan, script, now, extra).output().expect("bash")
    }
    /// The command `run_on` runs: the script in network and PID namespaces
    /// of its own, behind what `lan` starts.
    fn on(&self, lan: &Lan, script: &Path, now: u64, extra: &[(&str, &Path)]) -> Command {
        self.knob("now", &now.to_string());
        let mut c = common::unshare(&[
            "--net",
            "--pid",
            "--mount-proc",
            "--fork",
            "--kill-child",
            "--",
            "bash",
            "-c",
            LAN_SCRIPT,
            "lan",
        ]);
        c.arg(script)
            .env_clear()
            .env(
                "LAN_PUBLISHER",
                lan.publisher
                    .as_ref()
                    .map(|p| p.script.as_os_str())
                    .unwrap_or_default(),
            )
            .env(
                "LAN_PUBLISHER_SNAP",
                lan.publisher
                    .as_ref()
                    .map(|p| p.snap_data.as_os_str())
                    .unwrap_or_default(),
            )
            .env(
                "LAN_PUBLISHER_TOKEN",
                lan.publisher
                    .as_ref()
                    .map(|p| p.token_file.as_os_str())
                    .unwrap_or_default(),
            )
            .env(
                "LAN_AGENT_CERTS",
                lan.agent_certs
                    .as_deref()
                    .map(Path::as_os_str)
                    .unwrap_or_default(),
            )
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.dir.path().join("bin").display()
                ),
            )
            .env("FAKE_MICROK8S_DATA", self.data())
            .env("FAKE_MICROK8S_CONF", self.dir.path().join("conf"))
            .env("FAKE_MICROK8S_LOG", self.dir.path().join("calls"))
            .env("MICROSEED_SNAP_DATA", self.data())
            .env("MICROSEED_NOW", now.to_string())
            .env("MICROSEED_JOIN_STAGGER", "0");
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        common::assert_nothing_left(self.dir.path());
    }
}

/// A self-signed certificate and key in `dir` (server.crt, server.key),
/// as MicroK8s makes for its cluster agent when it installs.
fn certificate(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=microseed-test"])
        .arg("-keyout")
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(dir.join("server.crt"))
        .output()
        .expect("openssl");
    assert!(o.status.success(), "openssl: {:?}", text(&o));
}

/// The SHA-256 of a certificate's DER form, as `join.py` hashes the
/// certificate the agent presents.
fn fingerprint(certs: &Path) -> String {
    let o = Command::new("bash")
        .args([
            "-c",
            "openssl x509 -outform der -in \"$1\" | sha256sum | cut -d' ' -f1",
            "fp",
        ])
        .arg(certs.join("server.crt"))
        .output()
        .expect("openssl");
    assert!(o.status.success());
    text(&o).0.trim().to_string()
}

/// What answers at the master's address (172.20.10.11) inside the test's
/// network namespace: the master's `microseed-fingerprint serve` under
/// `systemd-socket-activate --accept --inetd` (what its socket unit does),
/// and a TLS server presenting the cluster agent's certificate on 25000.
#[derive(Default)]
struct Lan {
    publisher: Option<Publisher>,
    agent_certs: Option<PathBuf>,
}

struct Publisher {
    script: PathBuf,
    snap_data: PathBuf,
    token_file: PathBuf,
}

impl Lan {
    /// The real master: its own script, certificate and token.
    fn master(b: &Built, master: &Node) -> Lan {
        Lan {
            publisher: Some(Publisher {
                script: b.file("master", "/usr/local/lib/microseed/microseed-fingerprint"),
                snap_data: master.data(),
                token_file: b.file("master", "/etc/microseed/join-token"),
            }),
            agent_certs: Some(master.data().join("certs")),
        }
    }
}

/// Sets up the namespace's loopback as the master's address, starts what
/// `Lan` asks for, waits for it to listen, then runs the script ($1). The
/// shell is PID 1 of its own PID namespace (`unshare --pid --fork`): when
/// it exits, or is killed with the test, the kernel kills the servers it
/// started (else they would outlive the test, orphaned).
const LAN_SCRIPT: &str = r#"
set -eu
ip link set lo up
ip addr add 172.20.10.11/32 dev lo
wait_port() {
    for _ in $(seq 100); do
        (echo >"/dev/tcp/172.20.10.11/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on 172.20.10.11:$1" >&2
    exit 1
}
if [ -n "$LAN_PUBLISHER" ]; then
    systemd-socket-activate -l 172.20.10.11:25001 --accept --inetd \
        -E "MICROSEED_SNAP_DATA=$LAN_PUBLISHER_SNAP" -E "MICROSEED_JOIN_TOKEN_FILE=$LAN_PUBLISHER_TOKEN" \
        python3 "$LAN_PUBLISHER" serve >/dev/null 2>&1 &
    wait_port 25001
fi
if [ -n "$LAN_AGENT_CERTS" ]; then
    openssl s_server -quiet -accept 172.20.10.11:25000 \
        -cert "$LAN_AGENT_CERTS/server.crt" -key "$LAN_AGENT_CERTS/server.key" </dev/null >/dev/null 2>&1 &
    wait_port 25000
fi
unset LAN_PUBLISHER LAN_PUBLISHER_SNAP LAN_PUBLISHER_TOKEN LAN_AGENT_CERTS
bash "$1"
"#;

/// The master registers the token; a fresh worker on the same channel
/// joins with the token from its seed.
fn register(b: &Built, master: &Node, now: u64) {
    let token_file = b.file("master", "/etc/microseed/join-token");
    let o = master.run(
        &b.file("master", "/usr/local/sbin/microseed-token"),
        now,
        &[("MICROSEED_JOIN_TOKEN_FILE", &token_file)],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "token: {out}{err}");
    assert!(
        !out.contains(TOKEN) && !err.contains(TOKEN),
        "token printed: {out}{err}"
    );
}

fn join(b: &Built, channel: &str, master: &Node, now: u64) -> (Node, Output) {
    let w = Node::new(channel);
    w.knob("master-data", &master.data().display().to_string());
    let token_file = b.file("worker-1", "/etc/microseed/join-token");
    let o = w.run_on(
        &Lan::master(b, master),
        &b.file("worker-1", "/usr/local/sbin/microseed-join"),
        now,
        &[
            ("MICROSEED_JOIN_TOKEN_FILE", &token_file),
            ("MICROSEED_FINGERPRINT", &b.fingerprint_script()),
        ],
    );
    (w, o)
}

fn token_lines(master: &Node) -> Vec<String> {
    std::fs::read_to_string(master.data().join("credentials/cluster-tokens.txt"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(TOKEN))
        .map(str::to_string)
        .collect()
}

#[test]
fn worker_joins_the_master_on_every_channel_and_knows_it_has_joined() {
    for ch in CHANNELS {
        let b = Built::new(ch);
        let master = Node::new(ch);
        register(&b, &master, T0);
        let (w, o) = join(&b, ch, &master, T0 + 60);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{ch}: {out}{err}");
        assert!(
            out.contains("joined the cluster at 172.20.10.11"),
            "{ch}: {out}"
        );
        assert!(
            !out.contains(TOKEN) && !err.contains(TOKEN),
            "{ch}: token printed"
        );
        let minor: u32 = ch[2..].parse().expect("minor");
        let join_line = w
            .calls()
            .lines()
            .find(|l| l.starts_with("microk8s join"))
            .map(str::to_string)
            .expect("a join call");
        // 1.21+ pin the master's certificate in the join string.
        let want = if minor >= 21 {
            format!(
                "microk8s join 172.20.10.11:25000/{TOKEN}/{}",
                fingerprint(&master.data().join("certs"))
            )
        } else {
            format!("microk8s join 172.20.10.11:25000/{TOKEN}")
        };
        if minor >= 23 {
            assert_eq!(join_line, format!("{want} --worker"), "{ch}");
            assert!(w.data().join("var/lock/clustered.lock").exists(), "{ch}");
        } else {
            assert_eq!(join_line, want, "{ch}");
        }
        // Run again (a reboot before the marker was written): it must see
        // the node has joined, on every channel, and not join again.
        let o = w.run(
            &b.file("worker-1", "/usr/local/sbin/microseed-join"),
            T0 + 120,
            &[(
                "MICROSEED_JOIN_TOKEN_FILE",
                &b.file("worker-1", "/etc/microseed/join-token"),
            )],
        );
        let (out, err) = text(&o);
        assert!(o.status.success(), "{ch}: {out}{err}");
        assert!(out.contains("already part of the cluster"), "{ch}: {out}");
        assert_eq!(w.calls().matches("microk8s join").count(), 1, "{ch}");
    }
}

/// The worker's join attempts as microseed-step makes them (attempt N in
/// MICROSEED_STEP_ATTEMPT), until one succeeds or `max` have failed.
/// Returns the attempts made and the last output.
fn join_attempts(b: &Built, w: &Node, master: &Node, max: u32) -> (u32, String) {
    let token_file = b.file("worker-1", "/etc/microseed/join-token");
    let fp = b.fingerprint_script();
    let mut last = String::new();
    for attempt in 1..=max {
        let n = attempt.to_string();
        let o = w.run_on(
            &Lan::master(b, master),
            &b.file("worker-1", "/usr/local/sbin/microseed-join"),
            T0 + 60,
            &[
                ("MICROSEED_JOIN_TOKEN_FILE", &token_file),
                ("MICROSEED_FINGERPRINT", &fp),
                ("MICROSEED_STEP_ATTEMPT", Path::new(&n)),
            ],
        );
        let (out, err) = text(&o);
        last = format!("{out}{err}");
        if o.status.success() {
            return (attempt, last);
        }
    }
    (max + 1, last)
}

/// 1.20-1.22: `microk8s join` ends by restarting every service, and
/// `status` lists the datastore only once the node is ready again (1.20
/// `join.py`, `status.py`); a second join re-initialises the node's
/// datastore, and the agent does not refuse it. The stand-in behaves so
/// (join-ready-lag). A worker that has joined must know it from its own
/// dqlite and never join again: neither in the attempt that joined, nor in
/// one run again while the node restarts (a reboot right after the join).
#[test]
fn a_worker_on_1_20_to_1_22_joins_once_though_it_is_not_ready_right_after_joining() {
    for ch in ["1.20", "1.21", "1.22"] {
        let b = Built::new(ch);
        let master = Node::new(ch);
        register(&b, &master, T0);
        let w = Node::new(ch);
        w.knob("master-data", &master.data().display().to_string());
        w.knob("join-ready-lag", "3");
        let (attempts, out) = join_attempts(&b, &w, &master, 3);
        assert_eq!(attempts, 1, "{ch}: {out}\n{}", w.calls());
        assert!(
            out.contains("joined the cluster at 172.20.10.11"),
            "{ch}: {out}"
        );
        assert_eq!(
            w.calls().matches("microk8s join").count(),
            1,
            "{ch}: {}",
            w.calls()
        );
        // The services restart again (a reboot): the node is not ready,
        // `status` lists no datastore, and it has still joined.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        w.knob("ready-at", &(now + 3).to_string());
        let (attempts, out) = join_attempts(&b, &w, &master, 3);
        assert_eq!(attempts, 1, "{ch}: {out}");
        assert!(out.contains("already part of the cluster"), "{ch}: {out}");
        assert_eq!(
            w.calls().matches("microk8s join").count(),
            1,
            "{ch}: {}",
            w.calls()
        );
        assert_eq!(
            std::fs::read_to_string(w.dir.path().join("conf/joins")).expect("joins"),
            "1\n",
            "{ch}"
        );
    }
}

/// From 1.23 a join without `--worker` makes a control-plane node, handed
/// the cluster CA key: no worker ever joins without it, on any track the
/// scripts know, `latest` included (1.23-1.31: the test above).
#[test]
fn no_worker_joins_without_the_worker_flag_from_1_23_to_latest() {
    for ch in ["1.32", "1.33", "1.34", "1.35", "latest"] {
        let b = Built::new(ch);
        let master = Node::new(ch);
        register(&b, &master, T0);
        let (w, o) = join(&b, ch, &master, T0 + 60);
        assert!(o.status.success(), "{ch}: {:?}", text(&o));
        let calls = w.calls();
        let joins: Vec<&str> = calls
            .lines()
            .filter(|l| l.starts_with("microk8s join"))
            .collect();
        assert_eq!(joins.len(), 1, "{ch}: {joins:?}");
        assert!(joins[0].ends_with(" --worker"), "{ch}: {joins:?}");
        assert!(w.data().join("var/lock/clustered.lock").exists(), "{ch}");
    }
}

/// cloud-init 24.1+ no longer starts after snapd.seeded (commit 551f560d),
/// and a seeding snapd answers "too early for operation": the MicroK8s
/// step waits for the seed before it asks snapd anything.
#[test]
fn microk8s_step_waits_for_snapd_to_seed_before_installing() {
    let b = Built::new("1.20");
    let n = Node::new("1.20");
    let bin = n.dir.path().join("bin");
    std::os::unix::fs::symlink(root().join("tests/fixtures/fakes/snap"), bin.join("snap"))
        .expect("link");
    // What the script and the stand-in snap would change on this machine.
    for stub in ["usermod", "install", "getent", "groupadd"] {
        std::fs::write(bin.join(stub), "#!/bin/sh\nexit 0\n").expect("stub");
        common::make_executable(&bin.join(stub));
    }
    let snaps = n.dir.path().join("snaps");
    let o = n.run(
        &b.file("master", "/usr/local/sbin/microseed-microk8s"),
        T0,
        &[("FAKE_SNAP_STATE", &snaps)],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let calls = n.calls();
    let snap_calls: Vec<&str> = calls.lines().filter(|l| l.starts_with("snap ")).collect();
    assert_eq!(
        snap_calls,
        [
            "snap wait system seed.loaded",
            "snap list microk8s",
            "snap install microk8s --classic --channel=1.20/stable",
        ],
        "{calls}"
    );
    assert!(snaps.join("microk8s").exists(), "{calls}");
}

/// One channel of each token-validation and join behaviour, the three
/// first-match channels included.
const TOKEN_CHANNELS: &[&str] = &["1.20", "1.23", "1.24", "1.25", "1.26", "1.27", "1.31"];

#[test]
fn token_registered_daily_keeps_workers_joining_for_100_days() {
    for ch in TOKEN_CHANNELS {
        let b = Built::new(ch);
        let master = Node::new(ch);
        // A token added by hand (single-use, no expiry) and an expired one
        // from someone else must not disturb ours; the expired one goes.
        std::fs::write(
            master.data().join("credentials/cluster-tokens.txt"),
            format!(
                "OtherSingleUseToken0123456789abcdefgh\nOtherExpired0123456789abcdefghijklmn|{}\n",
                T0 - 1
            ),
        )
        .expect("w");
        for day in 0..=100u64 {
            let now = T0 + day * DAY;
            register(&b, &master, now);
            let lines = token_lines(&master);
            assert_eq!(lines.len(), 1, "{ch} day {day}: {lines:?}");
            // A rebuilt worker must be able to join any day; checking every
            // tenth day and the days around the 90-day TTL keeps this quick.
            if day % 10 == 0 || (88..=92).contains(&day) {
                let (_, o) = join(&b, ch, &master, now + 3600);
                assert!(o.status.success(), "{ch} day {day}: {:?}", text(&o));
            }
        }
        let all = std::fs::read_to_string(master.data().join("credentials/cluster-tokens.txt"))
            .expect("tokens");
        assert_eq!(
            all.lines().count(),
            2,
            "{ch}: the file must not grow: {all}"
        );
        assert!(all.starts_with("OtherSingleUseToken"), "{ch}: {all}");
    }
}

#[test]
fn the_stand_in_refuses_a_first_line_that_expired_on_1_24_to_1_26() {
    // The proof the test above could fail: appending a line a day, as
    // `add-node --token-ttl` does, strands joins after 90 days on 1.24-1.26
    // and not on the other channels.
    for ch in ["1.23", "1.24", "1.26", "1.27"] {
        let b = Built::new(ch);
        let master = Node::new(ch);
        let add = master.dir.path().join("add.sh");
        std::fs::write(
            &add,
            format!("microk8s add-node --token {TOKEN} --token-ttl 7776000 >/dev/null\n"),
        )
        .expect("w");
        for day in 0..=91u64 {
            let o = master.run(&add, T0 + day * DAY, &[]);
            assert!(o.status.success());
        }
        let (_, o) = join(&b, ch, &master, T0 + 91 * DAY + 60);
        let minor: u32 = ch[2..].parse().expect("minor");
        // 1.27+ is refused too here: no persistent token was installed.
        assert_eq!(o.status.success(), minor < 24, "{ch}: {:?}", text(&o));
    }
}

#[test]
fn a_token_without_expiry_is_used_up_by_one_join() {
    let b = Built::new("1.24");
    let master = Node::new("1.24");
    std::fs::write(
        master.data().join("credentials/cluster-tokens.txt"),
        format!("{TOKEN}\n"),
    )
    .expect("w");
    let (_, first) = join(&b, "1.24", &master, T0);
    assert!(first.status.success(), "{:?}", text(&first));
    let (_, second) = join(&b, "1.24", &master, T0);
    assert!(!second.status.success());
    assert!(
        text(&second).0.contains("refused the token"),
        "{:?}",
        text(&second)
    );
}

#[test]
fn join_fails_and_says_why_while_the_master_is_unreachable_or_local_microk8s_not_ready() {
    let b = Built::new("1.28");
    let master = Node::new("1.28");
    register(&b, &master, T0);
    let w = Node::new("1.28");
    w.knob("master-data", &master.data().display().to_string());
    w.knob("not-ready", "1");
    w.knob("join-failures", "1");
    let script = b.file("worker-1", "/usr/local/sbin/microseed-join");
    let tf = b.file("worker-1", "/etc/microseed/join-token");
    let fp = b.fingerprint_script();
    let env = [
        ("MICROSEED_JOIN_TOKEN_FILE", tf.as_path()),
        ("MICROSEED_FINGERPRINT", fp.as_path()),
    ];
    let lan = Lan::master(&b, &master);
    let o = w.run_on(&lan, &script, T0, &env);
    assert!(!o.status.success());
    assert!(
        text(&o).0.contains("local MicroK8s is not ready"),
        "{:?}",
        text(&o)
    );
    // Nothing answers at the master's address yet: the token stays home.
    let o = w.run_on(&Lan::default(), &script, T0, &env);
    assert!(!o.status.success());
    assert!(
        text(&o)
            .0
            .contains("could not verify the master at 172.20.10.11"),
        "{:?}",
        text(&o)
    );
    assert!(!w.calls().contains("microk8s join"), "{}", w.calls());
    let o = w.run_on(&lan, &script, T0, &env);
    assert!(!o.status.success());
    assert!(
        text(&o).0.contains("join through 172.20.10.11 failed"),
        "{:?}",
        text(&o)
    );
    assert!(!text(&o).0.contains(TOKEN) && !text(&o).1.contains(TOKEN));
    let o = w.run_on(&lan, &script, T0, &env);
    assert!(o.status.success(), "{:?}", text(&o));
}

/// The servers a `Lan` starts (the master's fingerprint service under
/// systemd-socket-activate, the agent's TLS server) are gone once the run
/// is, whether the script passes, fails, or the run is killed as a test
/// harness kills one that takes too long. Each names the master's or the
/// seed's directory on its command line, which is how they are counted:
/// other tests and other runs on the machine name other directories.
#[test]
fn the_servers_a_namespace_starts_die_with_it_whether_it_passes_fails_or_is_killed() {
    let b = Built::new("1.28");
    let master = Node::new("1.28");
    let w = Node::new("1.28");
    let lan = Lan::master(&b, &master);
    let ours = |when: &str| {
        for d in [b.dir.as_path(), master.dir.path(), w.dir.path()] {
            let left = common::leftovers(d);
            assert!(
                left.is_empty(),
                "{when}: still running:\n{}",
                left.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    };
    for (name, rc) in [("passes", 0), ("fails", 3)] {
        let script = w.dir.path().join(name);
        std::fs::write(&script, format!("exit {rc}\n")).expect("w");
        let o = w.run_on(&lan, &script, T0, &[]);
        assert_eq!(o.status.code(), Some(rc), "{name}: {:?}", text(&o));
        ours(&format!("after a script that {name}"));
    }
    let ready = w.dir.path().join("ready");
    let script = w.dir.path().join("hangs");
    std::fs::write(&script, "touch \"$READY\"\nexec sleep 600\n").expect("w");
    let mut run = w
        .on(&lan, &script, T0, &[("READY", &ready)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("unshare");
    let started = std::time::Instant::now();
    while !ready.exists() {
        assert!(
            started.elapsed().as_secs() < 60,
            "the namespace's servers never came up"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The check sees them while the run lasts: it could fail.
    let running = common::processes_using(master.dir.path());
    assert!(
        running.iter().any(|p| p.cmdline.contains("s_server"))
            && running
                .iter()
                .any(|p| p.cmdline.contains("systemd-socket-activate")),
        "{running:?}"
    );
    run.kill().expect("kill");
    run.wait().expect("wait");
    ours("after the run was killed");
}

/// Who may be at the master's address during a join, and what the worker
/// must do: `Lan` in a network namespace of the test's own.
fn impostor_join(ch: &str, lan: impl Fn(&Built, &Node, &Path) -> Lan) -> (Node, Node, Output) {
    let b = Built::new(ch);
    let master = Node::new(ch);
    register(&b, &master, T0);
    let impostor = tempfile::tempdir().expect("tmp");
    certificate(&impostor.path().join("certs"));
    std::fs::write(
        impostor.path().join("token"),
        "AnotherTokenThatIsNotTheCluster0123456789\n",
    )
    .expect("w");
    let w = Node::new(ch);
    w.knob("master-data", &master.data().display().to_string());
    let tf = b.file("worker-1", "/etc/microseed/join-token");
    let o = w.run_on(
        &lan(&b, &master, impostor.path()),
        &b.file("worker-1", "/usr/local/sbin/microseed-join"),
        T0,
        &[
            ("MICROSEED_JOIN_TOKEN_FILE", &tf),
            ("MICROSEED_FINGERPRINT", &b.fingerprint_script()),
        ],
    );
    (master, w, o)
}

#[test]
fn a_machine_at_the_masters_address_without_the_token_never_receives_it() {
    for ch in ["1.20", "1.21", "1.23", "1.28"] {
        // It answers the fingerprint question with its own certificate but
        // cannot make the proof, which needs the token.
        let (_, w, o) = impostor_join(ch, |b, _, imp| Lan {
            publisher: Some(Publisher {
                script: b.file("master", "/usr/local/lib/microseed/microseed-fingerprint"),
                snap_data: imp.to_path_buf(),
                token_file: imp.join("token"),
            }),
            agent_certs: Some(imp.join("certs")),
        });
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{ch}: {out}{err}");
        assert!(out.contains("the token was not sent"), "{ch}: {out}");
        assert!(
            err.contains("does not prove it holds the join token"),
            "{ch}: {err}"
        );
        assert!(!w.calls().contains("microk8s join"), "{ch}: {}", w.calls());
    }
}

#[test]
fn a_relayed_proof_does_not_get_the_token_to_another_certificate() {
    // The impostor relays the real master's answer (it holds no token but
    // can forward bytes) and presents its own certificate on 25000.
    for ch in ["1.20", "1.21", "1.23", "1.28"] {
        let (master, w, o) = impostor_join(ch, |b, m, imp| Lan {
            agent_certs: Some(imp.join("certs")),
            ..Lan::master(b, m)
        });
        let (out, err) = text(&o);
        assert!(!o.status.success(), "{ch}: {out}{err}");
        assert!(!out.contains(TOKEN) && !err.contains(TOKEN), "{ch}");
        let minor: u32 = ch[2..].parse().expect("minor");
        if minor >= 21 {
            // microk8s join pins the fingerprint and refuses before the
            // token is posted (the stand-in checks it as join.py does).
            assert!(
                out.contains("certificate of 172.20.10.11 changed"),
                "{ch}: {out}"
            );
            assert!(w.calls().contains("microk8s join"), "{ch}");
        } else {
            // 1.20 cannot pin it: microseed checks the agent first.
            assert!(out.contains("the token was not sent"), "{ch}: {out}");
            assert!(!w.calls().contains("microk8s join"), "{ch}: {}", w.calls());
        }
        assert!(!master.dir.path().join("data/fake-nodes").exists(), "{ch}");
    }
}

/// Runs the master's steps with the step runner, as their units would.
struct Steps {
    dir: tempfile::TempDir,
}

impl Steps {
    fn new() -> Steps {
        Steps {
            dir: tempfile::tempdir().expect("tmp"),
        }
    }
    fn cmd(&self, script: &Path) -> Command {
        let mut c = Command::new("bash");
        c.arg(script)
            .env("MICROSEED_STATE", self.dir.path().join("state"))
            .env("MICROSEED_RUN", self.dir.path().join("run"))
            .env("MICROSEED_STEP_FIRST_DELAY", "0")
            .env("MICROSEED_STEP_POLL", "0.1");
        c
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        common::assert_nothing_left(self.dir.path());
    }
}

#[test]
fn a_failing_step_is_retried_until_it_succeeds_and_status_tracks_it() {
    let b = Built::new("1.20");
    let step = b.file("master", "/usr/local/sbin/microseed-step");
    let status = b.file("master", "/usr/local/sbin/microseed-status");
    let s = Steps::new();
    let work = s.dir.path();
    // A command failing its first two attempts.
    let flaky = work.join("flaky");
    std::fs::write(
        &flaky,
        format!(
            "#!/bin/sh\nn=$(cat {0} 2>/dev/null || echo 0)\necho $((n + 1)) > {0}\n[ \"$n\" -ge 2 ] || {{ echo \"download of helm failed ($n)\"; exit 1; }}\necho fine\n",
            common::shq(work.join("count"))
        ),
    )
    .expect("w");
    common::make_executable(&flaky);
    let list = work.join("steps");
    std::fs::write(&list, "a||first\nb|a|second\n").expect("w");

    // Bounded to one attempt: the step fails, status says so with the error.
    let o = s
        .cmd(&step)
        .env("MICROSEED_STEP_ATTEMPTS", "1")
        .args(["a", flaky.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(!o.status.success());
    let st = s
        .cmd(&status)
        .env("MICROSEED_STEPS", &list)
        .output()
        .expect("status");
    let (out, _) = text(&st);
    assert!(!st.status.success(), "{out}");
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("microseed: not converged (0/2 steps done)"),
        "{out}"
    );
    assert!(
        out.contains("a          failed: attempt 1 exited 1"),
        "{out}"
    );
    assert!(
        out.contains("last error: download of helm failed (0)"),
        "{out}"
    );
    assert!(out.contains("b          pending: waiting on a"), "{out}");

    // b waits for a; a (unbounded) retries and succeeds on its third run.
    let mut waiting = s
        .cmd(&step)
        .args(["--after=a", "b", "true"])
        .spawn()
        .expect("b");
    let o = s
        .cmd(&step)
        .args(["a", flaky.to_str().expect("utf8")])
        .output()
        .expect("a");
    let (out, _) = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("attempt 1 failed (exit 1); retrying in 0s"),
        "{out}"
    );
    assert!(out.contains("done on attempt 2"), "{out}");
    assert!(waiting.wait().expect("b").success());
    let st = s
        .cmd(&status)
        .env("MICROSEED_STEPS", &list)
        .output()
        .expect("status");
    let (out, _) = text(&st);
    assert!(st.status.success(), "{out}");
    assert_eq!(
        out.lines().next(),
        Some("microseed: converged (2/2 steps done)")
    );
    assert!(!out.contains("last error"), "{out}");
    // Done means never again: the runner returns at once.
    let o = s.cmd(&step).args(["a", "false"]).output().expect("again");
    assert!(o.status.success() && text(&o).0.contains("already done"));
}

#[test]
fn backoff_doubles_up_to_its_cap() {
    let b = Built::new("1.20");
    let step = b.file("nfs", "/usr/local/sbin/microseed-step");
    let s = Steps::new();
    let o = s
        .cmd(&step)
        .env("MICROSEED_STEP_FIRST_DELAY", "1")
        .env("MICROSEED_STEP_MAX_DELAY", "2")
        .env("MICROSEED_STEP_ATTEMPTS", "4")
        .args(["y", "false"])
        .output()
        .expect("run");
    let out = text(&o).0;
    let delays: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("retrying in ").nth(1))
        .collect();
    assert_eq!(delays, ["1s", "2s", "2s"], "{out}");
    assert!(
        out.contains("attempt 4 failed (exit 1); giving up"),
        "{out}"
    );
}

#[test]
fn master_steps_put_the_token_before_the_addons_and_nothing_waits_needlessly() {
    let b = Built::new("1.20");
    let list = std::fs::read_to_string(b.file("master", "/etc/microseed/steps")).expect("steps");
    let deps = |name: &str| -> String {
        list.lines()
            .find(|l| l.starts_with(&format!("{name}|")))
            .and_then(|l| l.split('|').nth(1))
            .unwrap_or_else(|| panic!("no step {name}: {list}"))
            .to_string()
    };
    assert_eq!(deps("microk8s"), "");
    assert_eq!(deps("token"), "microk8s");
    assert_eq!(deps("addons"), "microk8s,token");
    assert_eq!(deps("ssh"), "firewall");
    assert_eq!(deps("firewall"), "packages");
    let wl = std::fs::read_to_string(b.file("worker-1", "/etc/microseed/steps")).expect("steps");
    assert!(wl.contains("\njoin|microk8s,firewall|"), "{wl}");
    // The timer runs daily and catches up after downtime.
    let timer =
        std::fs::read_to_string(b.file("master", "/etc/systemd/system/microseed-token.timer"))
            .expect("timer");
    assert!(timer.contains("OnCalendar=daily\n") && timer.contains("Persistent=true\n"));
    // The addons fail while the token does not: a worker can still join.
    let master = Node::new("1.20");
    master.knob("enable-failures", "100");
    register(&b, &master, T0);
    let o = master.run(
        &b.file("master", "/usr/local/sbin/microseed-addons"),
        T0,
        &[],
    );
    assert!(!o.status.success());
    let (_, o) = join(&b, "1.20", &master, T0);
    assert!(o.status.success(), "{:?}", text(&o));
}

/// Builds the example with a replaced nfs role profile; returns stderr.
fn build_with_nfs_profile(profile: &str) -> (bool, String) {
    let s = Scratch::example();
    let roles = s.dir.path().join("profiles/roles");
    std::fs::create_dir_all(&roles).expect("mkdir");
    std::fs::write(roles.join("nfs.yaml"), profile).expect("write");
    let o = common::bin()
        .arg("--profiles")
        .arg(s.dir.path().join("profiles"))
        .arg("build")
        .arg(s.cluster())
        .arg("-o")
        .arg(s.out())
        .output()
        .expect("run");
    (o.status.success(), text(&o).1)
}

#[test]
fn a_step_may_only_wait_for_an_earlier_step_and_run_unit_safe_arguments() {
    let base = "description: nfs\nfiles:\n  - {path: /usr/local/sbin/microseed-nfs, template: nfs.sh.tera, mode: \"0755\"}\nsteps:\n";
    let (ok, err) = build_with_nfs_profile(&format!(
        "{base}  - {{name: nfs, description: x, run: [/usr/local/sbin/microseed-nfs], after: [exports]}}\n"
    ));
    assert!(!ok);
    assert!(
        err.contains("step nfs runs after exports, which is not an earlier step"),
        "{err}"
    );
    let (ok, err) = build_with_nfs_profile(&format!(
        "{base}  - {{name: nfs, description: x, run: [/bin/sh, -c, \"rm -rf $HOME\"]}}\n"
    ));
    assert!(!ok);
    assert!(err.contains("would reinterpret"), "{err}");
    let (ok, err) = build_with_nfs_profile(&format!(
        "{base}  - {{name: packages, description: again, run: [/bin/true]}}\n"
    ));
    assert!(!ok);
    assert!(err.contains("step packages is defined twice"), "{err}");
    let (ok, err) = build_with_nfs_profile(&format!(
        "{base}  - {{name: nfs, description: x, run: [/usr/local/sbin/microseed-nfs], after: [packages]}}\n"
    ));
    assert!(ok, "{err}");
}
