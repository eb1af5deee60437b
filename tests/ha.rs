//! The HA control plane's protocol (docs/ha.md), run for real: the rendered
//! first-boot scripts of examples/ha (three masters, a worker) run side by
//! side in a network namespace of the test's own, each machine's address on
//! its loopback, each master's `microseed-fingerprint serve` answering on
//! its address under `systemd-socket-activate --accept --inetd` (what its
//! socket unit does). MicroK8s is the project's stand-in
//! (tests/fixtures/fakes/microk8s) in its several-node mode: each node's
//! own token files, joins through any node, one membership change at a
//! time, "already known to dqlite", a new agent certificate after a join.
//! Nothing leaves the namespace; its PID 1 takes every server down with it.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Scratch, extract_write_files, first_boot, root, shq, text};

const TOKEN: &str = "TestTokenForGoldenFiles0123456789abcdefABCDEF";
/// 2026-01-01, so every run sees the same token expiry.
const T0: u64 = 1_767_225_600;
const HA: &str = include_str!("../examples/ha/cluster.yaml");
const MASTERS: [(&str, &str); 3] = [
    ("master-1", "172.20.10.11"),
    ("master-2", "172.20.10.12"),
    ("master-3", "172.20.10.13"),
];
const WORKER: (&str, &str) = ("worker-1", "172.20.10.14");

/// The HA example on one channel, built, each machine's files under
/// `roots/<machine>`, and each machine's stand-in MicroK8s under
/// `nodes/<machine>`.
struct Lab {
    s: Scratch,
    channel: String,
    /// The masters, in the cluster file's order.
    masters: Vec<(&'static str, &'static str)>,
}

/// Two more masters for a cluster of five.
const MORE: [(&str, &str); 2] = [("master-4", "172.20.10.15"), ("master-5", "172.20.10.16")];

impl Lab {
    fn new(channel: &str) -> Lab {
        Lab::with_masters(channel, MASTERS.len())
    }
    fn with_masters(channel: &str, n: usize) -> Lab {
        let masters: Vec<(&str, &str)> = MASTERS.iter().chain(&MORE).take(n).copied().collect();
        let mut cluster = HA.replace(
            "channel: 1.35/stable",
            &format!("channel: {channel}/stable"),
        );
        // Tracks before 1.22 run on 20.04 only (docs/releases.md).
        if channel < "1.22" {
            cluster = cluster.replace("release: \"24.04\"", "release: \"20.04\"");
        }
        let extra: String = masters[3..]
            .iter()
            .map(|(name, ip)| format!("  - name: {name}\n    role: master\n    ip: {ip}\n"))
            .collect();
        cluster = cluster.replace(
            "  - name: worker-1\n",
            &format!("{extra}  - name: worker-1\n"),
        );
        let s = Scratch::new(&cluster);
        let o = s.build(&[]);
        assert!(o.status.success(), "{}", text(&o).1);
        let lab = Lab {
            s,
            channel: channel.to_string(),
            masters,
        };
        let mut peers = String::new();
        for (name, ip) in lab.masters.iter().chain([&WORKER]) {
            extract_write_files(&first_boot(&lab.s.out(), name), &lab.root(name));
            lab.fresh(name, ip);
            peers.push_str(&format!(
                "{ip} {} {}\n",
                lab.data(name).display(),
                lab.conf(name).display()
            ));
        }
        std::fs::write(lab.dir().join("peers"), peers).expect("peers");
        lab
    }
    fn dir(&self) -> &Path {
        self.s.dir.path()
    }
    fn root(&self, name: &str) -> PathBuf {
        self.dir().join("roots").join(name)
    }
    fn file(&self, name: &str, path: &str) -> PathBuf {
        self.root(name).join(path.trim_start_matches('/'))
    }
    fn node(&self, name: &str) -> PathBuf {
        self.dir().join("nodes").join(name)
    }
    fn data(&self, name: &str) -> PathBuf {
        self.node(name).join("data")
    }
    fn conf(&self, name: &str) -> PathBuf {
        self.node(name).join("conf")
    }
    /// The node's `$SNAP_COMMON` (the launcher directory is under it).
    fn common(&self, name: &str) -> PathBuf {
        self.node(name).join("common")
    }
    fn state(&self, name: &str) -> PathBuf {
        self.node(name).join("state")
    }
    /// A machine as MicroK8s leaves it right after installing: its own
    /// datastore alone (127.0.0.1:19001), its own agent certificate, no
    /// token registered. Also what a rebuilt machine looks like.
    fn fresh(&self, name: &str, ip: &str) {
        let n = self.node(name);
        let _ = std::fs::remove_dir_all(&n);
        for d in [
            "data/credentials",
            "data/var/kubernetes/backend",
            "data/certs",
            "common/etc/launcher",
            "conf",
            "bin",
            "state",
        ] {
            std::fs::create_dir_all(n.join(d)).expect("mkdir");
        }
        std::fs::write(
            n.join("data/var/kubernetes/backend/cluster.yaml"),
            "- Address: 127.0.0.1:19001\n  ID: 3297041220608546238\n  Role: 0\n",
        )
        .expect("cluster.yaml");
        for (k, v) in [
            ("channel", format!("{}/stable", self.channel)),
            ("ip", ip.to_string()),
            ("name", name.to_string()),
            ("now", T0.to_string()),
            ("join-change-secs", "1".to_string()),
        ] {
            std::fs::write(n.join("conf").join(k), v).expect("knob");
        }
        std::os::unix::fs::symlink(
            root().join("tests/fixtures/fakes/microk8s"),
            n.join("bin/microk8s"),
        )
        .expect("link");
        let o = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=microseed-test", "-keyout"])
            .arg(n.join("data/certs/server.key"))
            .arg("-out")
            .arg(n.join("data/certs/server.crt"))
            .output()
            .expect("openssl");
        assert!(o.status.success(), "{:?}", text(&o));
    }
    fn down(&self, name: &str, down: bool) {
        let f = self.conf(name).join("down");
        if down {
            std::fs::write(f, "").expect("down");
        } else {
            let _ = std::fs::remove_file(f);
        }
    }
    fn is_down(&self, name: &str) -> bool {
        self.conf(name).join("down").exists()
    }
    /// `env -i` words giving a machine's scripts its stand-in, its files
    /// and its address.
    fn env(&self, name: &str, ip: &str) -> String {
        let vars: Vec<(&str, PathBuf)> = vec![
            (
                "PATH",
                PathBuf::from(format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.node(name).join("bin").display()
                )),
            ),
            ("FAKE_MICROK8S_DATA", self.data(name)),
            ("FAKE_MICROK8S_CONF", self.conf(name)),
            ("FAKE_MICROK8S_LOG", self.node(name).join("calls")),
            ("FAKE_MICROK8S_PEERS", self.dir().join("peers")),
            ("FAKE_MICROK8S_COMMON", self.common(name)),
            ("MICROSEED_SNAP_DATA", self.data(name)),
            ("MICROSEED_SNAP_COMMON", self.common(name)),
            (
                "MICROSEED_LAUNCH_TOKEN",
                self.file(name, "/etc/microseed/microk8s-launch-token.yaml"),
            ),
            ("MICROSEED_STATE", self.state(name)),
            (
                "MICROSEED_JOIN_TOKEN_FILE",
                self.file(name, "/etc/microseed/join-token"),
            ),
            (
                "MICROSEED_FINGERPRINT",
                self.file(name, "/usr/local/lib/microseed/microseed-fingerprint"),
            ),
            (
                "MICROSEED_LEADER",
                self.file(name, "/usr/local/sbin/microseed-leader"),
            ),
            // The lab's phases retry each step themselves, a bounded number
            // of times: the leader's wait for the other masters is one
            // check per attempt here (its polling has a test of its own).
            ("MICROSEED_LEADER_WAIT", PathBuf::from("0")),
            (
                "MICROSEED_BOOTSTRAP_ANYWAY",
                self.node(name).join("bootstrap-anyway"),
            ),
            ("MICROSEED_MICROK8S", self.node(name).join("bin/microk8s")),
            ("MICROSEED_SOURCE_ADDRESS", PathBuf::from(ip)),
            ("MICROSEED_NOW", PathBuf::from(T0.to_string())),
            ("MICROSEED_JOIN_STAGGER", PathBuf::from("0")),
        ];
        vars.iter()
            .map(|(k, v)| shq(format!("{k}={}", v.display())))
            .collect::<Vec<_>>()
            .join(" ")
    }
    /// The first-boot steps a machine runs here, in order: what follows
    /// MicroK8s' install on it.
    fn steps(&self, name: &str) -> Vec<PathBuf> {
        let steps: &[&str] = if name == WORKER.0 {
            &["microseed-join"]
        } else {
            &["microseed-cluster", "microseed-token", "microseed-addons"]
        };
        steps
            .iter()
            .map(|s| self.file(name, &format!("/usr/local/sbin/{s}")))
            .collect()
    }
    /// One stretch of time on the LAN: every master not down serves its
    /// proof; the machines in `run` go through their steps side by side,
    /// each step retried (as microseed-step does) for at most `attempts`
    /// attempts. Returns each machine's log and whether it finished.
    fn phase(&self, run: &[&str], attempts: u32) -> Vec<(String, bool, String)> {
        self.phase_then(run, attempts, "").0
    }
    /// As `phase`, then `body` (bash) on the same LAN; returns its output
    /// too.
    fn phase_then(
        &self,
        run: &[&str],
        attempts: u32,
        body: &str,
    ) -> (Vec<(String, bool, String)>, String) {
        let mut script = String::from(
            "set -u\nip link set lo up\nout=$1\nAGENT=$2\nnodes=()\nwait_port() {\n    for _ in $(seq 100); do\n        (echo >\"/dev/tcp/$1/$2\") 2>/dev/null && return 0\n        sleep 0.05\n    done\n    echo \"nothing listens on $1:$2\" >&2\n    exit 1\n}\n",
        );
        for (_, ip) in self.masters.iter().chain([&WORKER]) {
            script.push_str(&format!("ip addr add {ip}/32 dev lo\n"));
        }
        for &(name, ip) in &self.masters {
            if self.is_down(name) {
                continue;
            }
            // The service's environment: what the socket unit's service
            // would see on that master. The unit listens dual-stack
            // (`ListenStream=25001`), where an IPv4 peer and the local end
            // read as `::ffff:a.b.c.d`; an IPv6 socket bound to the
            // master's v4-mapped address gives the service the same view.
            let env: Vec<String> = self
                .env(name, ip)
                .split(' ')
                .map(|w| format!("-E {w}"))
                .collect();
            script.push_str(&format!(
                "systemd-socket-activate -l [::ffff:{ip}]:25001 --accept --inetd {} python3 {} serve >/dev/null 2>>\"$out/serve-{name}.log\" &\nwait_port {ip} 25001\nenv {} {} python3 -c \"$AGENT\" {ip} {} 2>>\"$out/agent-{name}.log\" &\nwait_port {ip} 25000\n",
                env.join(" "),
                shq(self.file(name, "/usr/local/lib/microseed/microseed-fingerprint")),
                self.env(name, ip),
                shq(format!(
                    "FAKE_MICROK8S_LOG={}",
                    self.node(name).join("agent-calls").display()
                )),
                shq(self.data(name)),
            ));
        }
        script.push_str(&format!(
            "run_node() {{\n    local name=$1 env=$2 step n\n    shift 2\n    for step in \"$@\"; do\n        n=1\n        until eval \"env -i $env MICROSEED_STEP_ATTEMPT=$n bash \\\"\\$step\\\"\" >>\"$out/$name.log\" 2>&1; do\n            n=$((n + 1))\n            if [ \"$n\" -gt {attempts} ]; then echo \"GAVE UP at $step\" >>\"$out/$name.log\"; return 1; fi\n            sleep 0.3\n        done\n    done\n    echo FINISHED >>\"$out/$name.log\"\n}}\n"
        ));
        for name in run {
            let ip = self
                .masters
                .iter()
                .chain([&WORKER])
                .find(|(n, _)| n == name)
                .expect("machine")
                .1;
            let steps: Vec<String> = self.steps(name).iter().map(shq).collect();
            script.push_str(&format!(
                "run_node {name} {} {} &\nnodes+=($!)\n",
                shq(self.env(name, ip)),
                steps.join(" ")
            ));
        }
        // Only the machines: the servers run until this shell, PID 1 of
        // the namespace, exits and the kernel ends them.
        script.push_str("[ ${#nodes[@]} = 0 ] || wait \"${nodes[@]}\" || true\n");
        script.push_str(body);
        let logs = self.dir().join("logs");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).expect("logs");
        let o: Output = common::unshare(&[
            "--net",
            "--pid",
            "--mount-proc",
            "--fork",
            "--kill-child",
            "--",
            "bash",
            "-c",
            &script,
            "phase",
        ])
        .arg(&logs)
        .arg(AGENT)
        .output()
        .expect("unshare");
        let (out, err) = text(&o);
        assert!(o.status.success(), "phase: {out}{err}");
        let logs = run
            .iter()
            .map(|name| {
                let log =
                    std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
                let done = log.contains("FINISHED");
                (name.to_string(), done, log)
            })
            .collect();
        (logs, format!("{out}{err}"))
    }
    fn members(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.data(name).join("var/kubernetes/backend/cluster.yaml"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("- Address: ").map(str::to_string))
            .collect()
    }
    fn calls(&self, name: &str) -> String {
        std::fs::read_to_string(self.node(name).join("calls")).unwrap_or_default()
    }
    /// `microk8s status` on a node, as its own scripts would run it.
    fn status(&self, name: &str) -> String {
        let o = std::process::Command::new(self.node(name).join("bin/microk8s"))
            .arg("status")
            .env("FAKE_MICROK8S_DATA", self.data(name))
            .env("FAKE_MICROK8S_CONF", self.conf(name))
            .env("FAKE_MICROK8S_LOG", self.node(name).join("status-calls"))
            .env("FAKE_MICROK8S_PEERS", self.dir().join("peers"))
            .output()
            .expect("status");
        text(&o).0
    }
}

fn all_finished(results: &[(String, bool, String)]) {
    for (name, done, log) in results {
        assert!(done, "{name} did not finish:\n{log}");
        assert!(!log.contains(TOKEN), "{name} printed the token:\n{log}");
    }
}

/// The cluster agent's TLS side on 25000, as far as a joiner sees it
/// before the join (1.20's `microseed-fingerprint check` compares it): the
/// node's current certificate, read again for each connection, since a
/// join reissues it. Beside it, the agent's watch on the launcher
/// directory (1.27+): a look every 0.5 s where upstream's is every 5 s,
/// and a tick (`microk8s fake-agent-launch`) when a file waits there (only
/// then, so dozens of stand-in agents side by side stay cheap): a launch
/// configuration is applied only while the node's agent runs.
const AGENT: &str = r#"
import glob, os, socket, ssl, subprocess, sys, threading, time
ip, data = sys.argv[1], sys.argv[2]
pending = os.path.join(os.environ["FAKE_MICROK8S_COMMON"], "etc", "launcher", "*.yaml")
def launcher():
    while True:
        if glob.glob(pending):
            subprocess.run(["microk8s", "fake-agent-launch"])
        time.sleep(0.5)
threading.Thread(target=launcher, daemon=True).start()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, 25000))
s.listen(16)
while True:
    c, _ = s.accept()
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(data + "/certs/server.crt", data + "/certs/server.key")
        ctx.wrap_socket(c, server_side=True).close()
    except (OSError, ssl.SSLError):
        c.close()
"#;

const THREE: [&str; 3] = [
    "172.20.10.11:19001",
    "172.20.10.12:19001",
    "172.20.10.13:19001",
];

/// Three masters and a worker booting together converge to one cluster:
/// master-1 bootstraps, masters 2 and 3 join it one at a time (each once),
/// every master registers the token, the worker joins, the add-ons are
/// enabled on master-1 alone, and every master's datastore has 3 voters.
fn converge(lab: &Lab) {
    let r = lab.phase(&["master-1", "master-2", "master-3", "worker-1"], 60);
    all_finished(&r);
    // Before 1.23 there is no --worker: the worker is a datastore node too.
    let minor: u32 = lab.channel[2..].parse().expect("minor");
    let mut want: Vec<&str> = THREE.to_vec();
    if minor < 23 {
        want.push("172.20.10.14:19001");
    }
    for (name, _) in MASTERS {
        let mut m = lab.members(name);
        m.sort();
        assert_eq!(m, want, "{name}'s datastore");
        let st = lab.status(name);
        assert!(st.contains("high-availability: yes"), "{name}: {st}");
        if minor >= 23 {
            assert!(
                st.contains(
                    "datastore master nodes: 172.20.10.11:19001 172.20.10.12:19001 172.20.10.13:19001\n"
                ),
                "{name}: {st}"
            );
        }
        let tokens = std::fs::read_to_string(lab.data(name).join("credentials/cluster-tokens.txt"))
            .unwrap_or_default();
        assert!(
            tokens.lines().any(|l| l.starts_with(&format!("{TOKEN}|"))),
            "{name} registered no token: {tokens:?}"
        );
        // 1.27+: the persistent token too, once, through the launcher
        // drop-in its agent applied (renamed *.applied); nothing before.
        let persistent = std::fs::read_to_string(
            lab.data(name)
                .join("credentials/persistent-cluster-tokens.txt"),
        )
        .unwrap_or_default();
        let launcher = lab.common(name).join("etc/launcher");
        if minor >= 27 {
            assert_eq!(persistent, format!("{TOKEN}\n"), "{name}");
            assert!(
                launcher.join("microseed-token.yaml.applied").exists(),
                "{name}"
            );
        } else {
            assert_eq!(persistent, "", "{name}");
            assert!(!launcher.join("microseed-token.yaml").exists(), "{name}");
        }
        assert!(
            !launcher.join("microseed-token.yaml").exists(),
            "{name}: a drop-in was never applied"
        );
    }
    assert!(lab.state("master-1").join("bootstrapped").exists());
    assert!(!lab.state("master-2").join("bootstrapped").exists());
    assert!(!lab.state("master-3").join("bootstrapped").exists());
    assert_eq!(lab.calls("master-1").matches("microk8s join").count(), 0);
    for name in ["master-2", "master-3"] {
        let calls = lab.calls(name);
        let joins: Vec<&str> = calls
            .lines()
            .filter(|l| l.starts_with("microk8s join"))
            .collect();
        // One join went through (an attempt may meet another change in
        // flight and be retried).
        let done = std::fs::read_to_string(lab.conf(name).join("joins")).unwrap_or_default();
        assert_eq!(done, "1\n", "{name}: {calls}");
        assert!(
            joins.iter().all(|j| !j.contains("--worker")),
            "{name}: {joins:?}"
        );
    }
    // A --worker node holds the cluster lock; before 1.23 the worker is a
    // datastore member (above).
    assert_eq!(
        lab.data("worker-1")
            .join("var/lock/clustered.lock")
            .exists(),
        minor >= 23
    );
    let with_addons: Vec<&str> = MASTERS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| lab.data(n).join("fake-addons").exists())
        .collect();
    assert_eq!(with_addons, ["master-1"]);
}

#[test]
fn three_masters_and_a_worker_converge_to_one_cluster_with_three_voters() {
    let lab = Lab::new("1.31");
    converge(&lab);
}

/// The same on the channels whose join differs: 1.20 (no certificate
/// pinning: microseed checks the agent's certificate itself; every joiner a
/// datastore node), 1.22, 1.23 (--worker), 1.27 (persistent tokens).
#[test]
fn three_masters_converge_on_every_kind_of_join() {
    for ch in ["1.20", "1.22", "1.23", "1.27"] {
        let lab = Lab::new(ch);
        converge(&lab);
    }
}

/// A rebuilt master-1 (its disk wiped, same address) with masters 2 and 3
/// running joins them: it has the old self's entry removed through
/// master-2 (token-proven), never bootstraps a second cluster.
#[test]
fn rebuilt_first_master_rejoins_the_running_masters_and_never_bootstraps() {
    let lab = Lab::new("1.31");
    converge(&lab);
    lab.fresh("master-1", "172.20.10.11");
    let r = lab.phase(&["master-1"], 30);
    all_finished(&r);
    let log = &r[0].2;
    assert!(
        !lab.state("master-1").join("bootstrapped").exists(),
        "{log}"
    );
    assert!(
        log.contains("already known") || log.contains("its old self"),
        "{log}"
    );
    assert!(
        log.contains("joined the cluster through 172.20.10.12"),
        "{log}"
    );
    for (name, _) in MASTERS {
        let mut m = lab.members(name);
        m.sort();
        assert_eq!(m, THREE, "{name}'s datastore:\n{log}");
    }
}

/// A rebuilt master-1 while masters 2 and 3 are down cannot tell whether a
/// cluster exists: it waits (never bootstraps), then joins them once they
/// are back.
#[test]
fn rebuilt_first_master_waits_while_the_others_are_down_then_joins_them() {
    let lab = Lab::new("1.31");
    converge(&lab);
    lab.fresh("master-1", "172.20.10.11");
    lab.down("master-2", true);
    lab.down("master-3", true);
    let r = lab.phase(&["master-1"], 6);
    let (_, done, log) = &r[0];
    assert!(!done, "{log}");
    assert!(log.contains("cannot be reached: waiting"), "{log}");
    assert!(
        !lab.state("master-1").join("bootstrapped").exists(),
        "{log}"
    );
    assert_eq!(lab.members("master-1"), ["127.0.0.1:19001"], "{log}");
    assert_eq!(lab.calls("master-1").matches("microk8s join").count(), 0);
    // Not in the cluster: no token of any kind, so nothing can join it.
    assert!(
        !lab.data("master-1")
            .join("credentials/persistent-cluster-tokens.txt")
            .exists(),
        "{log}"
    );
    assert!(
        !lab.common("master-1")
            .join("etc/launcher/microseed-token.yaml")
            .exists(),
        "{log}"
    );
    lab.down("master-2", false);
    lab.down("master-3", false);
    let r = lab.phase(&["master-1"], 30);
    all_finished(&r);
    assert!(!lab.state("master-1").join("bootstrapped").exists());
    for (name, _) in MASTERS {
        let mut m = lab.members(name);
        m.sort();
        assert_eq!(m, THREE, "{name}'s datastore:\n{}", r[0].2);
    }
    let log = &r[0].2;
    let joined = log
        .find("joined the cluster through")
        .unwrap_or_else(|| panic!("{log}"));
    let registered = log
        .find("persistent join token registered")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(joined < registered, "{log}");
}

/// On 1.27+ every master of several registers the never-expiring
/// persistent token (the launcher drop-in, after it joined): a worker
/// rebuilt long after its 90-day token ran out on master-2 (its daily
/// refresh stopped) still joins through master-2, master-1 being down.
#[test]
fn a_1_27_masters_persistent_token_outlives_its_90_day_token() {
    let lab = Lab::new("1.31");
    converge(&lab);
    lab.down("master-1", true);
    lab.fresh("worker-1", WORKER.1);
    // 91 days on: the token line microseed-token wrote has expired.
    std::fs::write(
        lab.conf("worker-1").join("now"),
        (T0 + 91 * 86_400).to_string(),
    )
    .expect("now");
    let r = lab.phase(&["worker-1"], 10);
    all_finished(&r);
    let log = &r[0].2;
    assert!(log.contains("joined the cluster at 172.20.10.12"), "{log}");
}

/// Runs the stand-in `microk8s ARGS` as machine `name` would.
fn microk8s(lab: &Lab, name: &str, args: &[&str]) -> Output {
    std::process::Command::new(lab.node(name).join("bin/microk8s"))
        .args(args)
        .env("FAKE_MICROK8S_DATA", lab.data(name))
        .env("FAKE_MICROK8S_CONF", lab.conf(name))
        .env("FAKE_MICROK8S_LOG", lab.node(name).join("calls"))
        .env("FAKE_MICROK8S_PEERS", lab.dir().join("peers"))
        .env("FAKE_MICROK8S_COMMON", lab.common(name))
        .output()
        .expect("microk8s")
}

/// 1.27+: a launch configuration dropped into a node's launcher directory
/// counts only once that node's cluster agent has applied it (one tick of
/// its watch appends the token to persistent-cluster-tokens.txt and
/// renames the file *.applied); before 1.27 nothing applies it.
#[test]
fn the_stand_in_accepts_a_dropped_in_token_only_once_the_agent_applied_it() {
    for (channel, applies) in [("1.31", true), ("1.26", false)] {
        let lab = Lab::new(channel);
        let drop_in = lab.common("master-1").join("etc/launcher/token.yaml");
        std::fs::write(
            &drop_in,
            format!("---\nversion: 0.1.0\npersistentClusterToken: \"{TOKEN}\"\n"),
        )
        .expect("drop-in");
        let url = format!("172.20.10.11:25000/{TOKEN}");
        let o = microk8s(&lab, "master-2", &["join", &url]);
        assert!(
            text(&o).1.contains("Invalid token"),
            "{channel}: {:?}",
            text(&o)
        );
        let o = microk8s(&lab, "master-1", &["fake-agent-launch"]);
        assert!(o.status.success(), "{channel}: {:?}", text(&o));
        assert_eq!(drop_in.exists(), !applies, "{channel}");
        assert_eq!(
            drop_in.with_extension("yaml.applied").exists(),
            applies,
            "{channel}"
        );
        let o = microk8s(&lab, "master-2", &["join", &url]);
        assert_eq!(o.status.success(), applies, "{channel}: {:?}", text(&o));
    }
}

fn register(lab: &Lab, name: &str) {
    std::fs::write(
        lab.data(name).join("credentials/cluster-tokens.txt"),
        format!("{TOKEN}|{}\n", T0 + 86_400),
    )
    .expect("token");
}

fn cert_fingerprint(lab: &Lab, name: &str) -> String {
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            "openssl x509 -outform der -in \"$1\" | sha256sum | cut -d' ' -f1",
            "fp",
        ])
        .arg(lab.data(name).join("certs/server.crt"))
        .output()
        .expect("openssl");
    text(&o).0.trim().to_string()
}

/// The stand-in behaves as upstream does where the protocol depends on it:
/// a token is judged by the contacted node's own files; a master joins
/// through any member; a joiner's agent certificate changes with the join;
/// a member's address is refused "already known to dqlite"; a membership
/// change while another is in flight fails.
#[test]
fn the_stand_in_judges_tokens_per_node_serialises_changes_and_refuses_known_members() {
    let lab = Lab::new("1.31");
    let join = |name: &str, via: &str| {
        let url = format!("{via}:25000/{TOKEN}");
        microk8s(&lab, name, &["join", &url])
    };
    // master-2 has registered no token: its own files decide.
    register(&lab, "master-1");
    let o = join("master-3", "172.20.10.12");
    assert!(!o.status.success());
    assert!(text(&o).1.contains("Invalid token"), "{:?}", text(&o));
    // Through master-1, with its fingerprint pinned; master-2's certificate
    // is reissued by the join.
    let before = cert_fingerprint(&lab, "master-2");
    let fp = cert_fingerprint(&lab, "master-1");
    let url = format!("172.20.10.11:25000/{TOKEN}/{fp}");
    let o = microk8s(&lab, "master-2", &["join", &url]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert_ne!(cert_fingerprint(&lab, "master-2"), before);
    assert_eq!(
        lab.members("master-1"),
        ["172.20.10.11:19001", "172.20.10.12:19001"]
    );
    assert_eq!(lab.members("master-2"), lab.members("master-1"));
    // Again: already known.
    let o = join("master-2", "172.20.10.11");
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("already known to dqlite"),
        "{:?}",
        text(&o)
    );
    // Two changes at once: while master-3 joins through master-2 (which
    // has its own token now), a second joiner through master-1 fails.
    register(&lab, "master-2");
    std::fs::write(lab.conf("master-3").join("join-change-secs"), "2").expect("knob");
    let url3 = format!("172.20.10.12:25000/{TOKEN}");
    let mut first = std::process::Command::new(lab.node("master-3").join("bin/microk8s"));
    first
        .args(["join", &url3])
        .env("FAKE_MICROK8S_DATA", lab.data("master-3"))
        .env("FAKE_MICROK8S_CONF", lab.conf("master-3"))
        .env("FAKE_MICROK8S_LOG", lab.node("master-3").join("calls"))
        .env("FAKE_MICROK8S_PEERS", lab.dir().join("peers"));
    first
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    common::dies_with_the_test(&mut first);
    let child = first.spawn().expect("join");
    std::thread::sleep(std::time::Duration::from_millis(700));
    // worker-1 joining as a master: refused while master-3's change runs.
    let o = join("worker-1", "172.20.10.11");
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("membership change is in progress"),
        "{:?}",
        text(&o)
    );
    let o = child.wait_with_output().expect("wait");
    assert!(o.status.success(), "{:?}", text(&o));
    let mut m = lab.members("master-1");
    m.sort();
    assert_eq!(m, THREE);
    // remove-node by address removes the entry and still exits 1.
    let o = microk8s(
        &lab,
        "master-2",
        &["remove-node", "172.20.10.13", "--force"],
    );
    assert!(!o.status.success());
    assert_eq!(
        lab.members("master-1"),
        ["172.20.10.11:19001", "172.20.10.12:19001"]
    );
}

/// On 1.23-1.24 a worker's API proxy keeps the control-plane list it got at
/// join time: with master-3 not joined yet the worker waits; from 1.25
/// (the proxy refreshes its list) it joins through the first clustered
/// master at once, skipping the one that does not belong yet.
#[test]
fn a_1_24_worker_waits_for_every_master_and_a_1_25_worker_does_not() {
    for (channel, joins) in [("1.24", false), ("1.25", true)] {
        let lab = Lab::new(channel);
        // master-3 serves its proof but does not run its steps yet.
        lab.phase(&["master-1", "master-2"], 8);
        let mut m = lab.members("master-2");
        m.sort();
        assert_eq!(m, ["172.20.10.11:19001", "172.20.10.12:19001"], "{channel}");
        let r = lab.phase(&["worker-1"], 3);
        let (_, done, log) = &r[0];
        assert_eq!(*done, joins, "{channel}: {log}");
        let calls = lab.calls("worker-1");
        if joins {
            assert!(
                log.contains("joined the cluster at 172.20.10.11"),
                "{channel}: {log}"
            );
            assert!(
                calls.contains("microk8s join 172.20.10.11:25000/"),
                "{channel}: {calls}"
            );
        } else {
            assert!(
                log.contains(
                    "waiting until every master has joined the cluster (the master at 172.20.10.13"
                ),
                "{channel}: {log}"
            );
            assert!(!calls.contains("microk8s join"), "{channel}: {calls}");
        }
    }
}

/// 19001 (dqlite) only from the other masters, 16443, 25000 and 25001 only
/// on masters (1.23+); before 1.23 every node is a datastore node and keeps
/// them open to the subnet. ufw accepts every command (--dry-run), and
/// every script of every machine passes shellcheck.
#[test]
fn the_firewall_opens_dqlite_between_masters_only_and_the_scripts_pass_shellcheck() {
    for ch in ["1.31", "1.20"] {
        let lab = Lab::new(ch);
        for (name, _) in MASTERS.iter().chain([&WORKER]) {
            let dir = lab.root(name).join("usr/local/sbin");
            for e in std::fs::read_dir(&dir).expect("sbin") {
                let p = e.expect("entry").path();
                let o = common::run("shellcheck", &[p.to_str().expect("utf8")]);
                assert!(
                    o.status.success(),
                    "{ch} {name}: {}: {}",
                    p.display(),
                    text(&o).0
                );
            }
        }
        let master2 = crate::first_boot::ufw_dry_run(&lab.root("master-2"));
        let m2 = crate::first_boot::allow_lines(&master2);
        let worker = crate::first_boot::ufw_dry_run(&lab.root("worker-1"));
        let w = crate::first_boot::allow_lines(&worker);
        let subnet =
            |port: &str| format!("ufw allow proto tcp from 172.20.0.0/20 to any port {port} ");
        if ch == "1.31" {
            let dqlite: Vec<&&str> = m2.iter().filter(|l| l.contains("port 19001 ")).collect();
            assert_eq!(
                dqlite,
                [
                    &"ufw allow proto tcp from 172.20.10.11 to any port 19001 comment 'dqlite'",
                    &"ufw allow proto tcp from 172.20.10.13 to any port 19001 comment 'dqlite'",
                ],
                "{master2}"
            );
            for port in ["16443", "25000", "25001"] {
                assert!(
                    m2.iter().any(|l| l.starts_with(&subnet(port))),
                    "{port}: {master2}"
                );
                assert!(
                    !w.iter().any(|l| l.contains(&format!("port {port} "))),
                    "{port}: {worker}"
                );
            }
            assert!(!w.iter().any(|l| l.contains("port 19001 ")), "{worker}");
        } else {
            for port in ["16443", "25000", "19001"] {
                assert!(
                    m2.iter().any(|l| l.starts_with(&subnet(port))),
                    "{port}: {master2}"
                );
                assert!(
                    w.iter().any(|l| l.starts_with(&subnet(port))),
                    "{port}: {worker}"
                );
            }
            assert!(!w.iter().any(|l| l.contains("port 25001 ")), "{worker}");
        }
    }
}

/// The proof cannot be replayed, and only a master can have only its own
/// old entry removed, with the token: an answer recorded for one client
/// nonce is refused for another; a removal request whose HMAC does not
/// cover the server's fresh nonce, or that comes from the worker's
/// address, removes nothing.
#[test]
fn a_recorded_answer_is_refused_and_a_removal_needs_the_token_the_nonce_and_a_masters_address() {
    let lab = Lab::new("1.31");
    converge(&lab);
    let fp = shq(lab.file("master-2", "/usr/local/lib/microseed/microseed-fingerprint"));
    let token = shq(lab.file("master-2", "/etc/microseed/join-token"));
    let body = format!(
        r#"
export MICROSEED_JOIN_TOKEN_FILE={token}
client() {{
    # Speaks to master-2's proof from address $1, sending $2 as the
    # hello's nonce and $3 (if any) as a second line; prints the answers.
    python3 - "$@" <<'PY'
import socket, sys
src, nonce = sys.argv[1], sys.argv[2]
s = socket.create_connection(("172.20.10.12", 25001), source_address=(src, 0))
s.sendall("microseed-fingerprint v2 hello {{}}\n".format(nonce).encode())
r = s.makefile("rb")
print(r.readline().decode().strip())
if len(sys.argv) > 3:
    s.sendall((sys.argv[3] + "\n").encode())
    print(r.readline().decode().strip())
PY
}}
# master-2's answer to one nonce, replayed by a server of its own (at
# another address) to a client that sends another nonce.
answer=$(client 172.20.10.14 00000000000000000000000000000000 | head -1)
echo "recorded: ${{answer:0:40}}"
ip addr add 172.20.10.99/32 dev lo
python3 -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("172.20.10.99", 25001)); s.listen(4)
while True:
    c, _ = s.accept(); c.recv(512); c.sendall((sys.argv[1] + "\n").encode()); c.close()' "$answer" &
sleep 0.5
if MICROSEED_SOURCE_ADDRESS=172.20.10.14 python3 {fp} fetch 172.20.10.99; then echo "REPLAY ACCEPTED"; else echo "replay refused: $?"; fi
# A removal with a made-up HMAC, from master-1's address: refused.
client 172.20.10.11 11111111111111111111111111111111 "microseed-fingerprint v2 remove $(printf '%064d' 0)" | tail -1
# The worker, even with the token, cannot have an entry removed.
MICROSEED_SOURCE_ADDRESS=172.20.10.14 python3 {fp} remove-self 172.20.10.12 && echo "WORKER REMOVED" || echo "worker refused: $?"
"#
    );
    let (_, out) = lab.phase_then(&[], 1, &body);
    assert!(out.contains("recorded: microseed-fingerprint v2 "), "{out}");
    assert!(out.contains("replay refused: 3"), "{out}");
    assert!(!out.contains("REPLAY ACCEPTED"), "{out}");
    assert!(
        out.contains("microseed-fingerprint v2 removed refused "),
        "{out}"
    );
    assert!(out.contains("worker refused: 1"), "{out}");
    assert!(
        out.contains("did not remove 172.20.10.14:19001 (refused)"),
        "{out}"
    );
    let mut m = lab.members("master-2");
    m.sort();
    assert_eq!(m, THREE, "{out}");
}

/// With master-1 down, the cluster goes on: master-2's node list names
/// master-1 as not Ready and the worker as Ready, and a rebuilt worker
/// (1.25+) joins through master-2, skipping the master that cannot answer.
#[test]
fn with_master_1_down_a_rebuilt_worker_joins_through_master_2() {
    let lab = Lab::new("1.31");
    converge(&lab);
    lab.down("master-1", true);
    let o = microk8s(&lab, "master-2", &["kubectl", "get", "nodes", "-o", "json"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let ready = |n: &str| {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|i| i["metadata"]["name"] == n)
            .map(|i| i["status"]["conditions"][0]["status"].clone())
    };
    assert_eq!(ready("master-1"), Some("Unknown".into()), "{v}");
    assert_eq!(ready("worker-1"), Some("True".into()), "{v}");
    assert_eq!(ready("master-3"), Some("True".into()), "{v}");
    lab.fresh("worker-1", WORKER.1);
    let r = lab.phase(&["worker-1"], 10);
    all_finished(&r);
    let log = &r[0].2;
    assert!(
        log.contains("could not verify the master at 172.20.10.11"),
        "{log}"
    );
    assert!(log.contains("joined the cluster at 172.20.10.12"), "{log}");
}

/// Five masters converge to one cluster of 3 voters and 2 stand-bys
/// (go-dqlite's defaults), each master joining once, in order.
#[test]
fn five_masters_converge_to_three_voters_and_two_stand_bys() {
    let lab = Lab::with_masters("1.31", 5);
    let names: Vec<&str> = lab
        .masters
        .iter()
        .map(|(n, _)| *n)
        .chain([WORKER.0])
        .collect();
    let r = lab.phase(&names, 90);
    all_finished(&r);
    for (name, _) in &lab.masters {
        assert_eq!(lab.members(name).len(), 5, "{name}");
        let st = lab.status(name);
        assert!(
            st.contains(
                "datastore master nodes: 172.20.10.11:19001 172.20.10.12:19001 172.20.10.13:19001\n"
            ),
            "{name}: {st}"
        );
        assert!(
            st.contains("datastore standby nodes: 172.20.10.15:19001 172.20.10.16:19001\n"),
            "{name}: {st}"
        );
    }
    for (name, _) in &lab.masters[1..] {
        let joins = std::fs::read_to_string(lab.conf(name).join("joins")).unwrap_or_default();
        assert_eq!(joins, "1\n", "{name}");
    }
    assert!(
        lab.data("worker-1")
            .join("var/lock/clustered.lock")
            .exists()
    );
}

/// Deliberate recovery (docs/ha.md, Quorum loss): with every other master
/// gone, the root-only /etc/microseed/bootstrap-anyway lets master-1
/// bootstrap; the same file writable by others is ignored.
#[test]
fn bootstrap_anyway_lets_master_1_start_alone_only_when_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let lab = Lab::new("1.31");
    lab.down("master-2", true);
    lab.down("master-3", true);
    let file = lab.node("master-1").join("bootstrap-anyway");
    std::fs::write(&file, "").expect("override");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let r = lab.phase(&["master-1"], 3);
    let (_, done, log) = &r[0];
    assert!(!done, "{log}");
    assert!(log.contains("is not root-only"), "{log}");
    assert!(
        !lab.state("master-1").join("bootstrapped").exists(),
        "{log}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let r = lab.phase(&["master-1"], 3);
    let log = &r[0].2;
    assert!(log.contains("bootstrapping although"), "{log}");
    assert!(lab.state("master-1").join("bootstrapped").exists(), "{log}");
}

/// The add-on leader waits for the other masters by polling, not by
/// failing: a failure would put the step runner's backoff (up to 5
/// minutes) between the last join and the add-ons, and show "failed"
/// meanwhile. It goes on as soon as the last master is a datastore member,
/// and fails (to be retried) only past its bound.
#[test]
fn the_addon_leader_waits_for_the_last_master_without_failing() {
    let lab = Lab::new("1.31");
    let leader = lab.file("master-1", "/usr/local/sbin/microseed-leader");
    let backend = lab.data("master-1").join("var/kubernetes/backend");
    std::fs::create_dir_all(&backend).expect("mkdir");
    let cluster = backend.join("cluster.yaml");
    let members = |n: usize| {
        MASTERS[..n]
            .iter()
            .map(|(_, ip)| format!("- Address: {ip}:19001\n  ID: 1\n  Role: 0\n"))
            .collect::<String>()
    };
    std::fs::write(&cluster, members(2)).expect("write");
    let run = |wait: &str| {
        let mut c = std::process::Command::new("bash");
        c.arg(&leader)
            .env("MICROSEED_SNAP_DATA", lab.data("master-1"))
            .env("MICROSEED_LEADER_WAIT", wait)
            .env("MICROSEED_LEADER_POLL", "0.1");
        common::dies_with_the_test(&mut c);
        c.spawn().expect("run microseed-leader")
    };
    // master-3 joins while the leader waits: it goes on, and is the leader.
    let started = std::time::Instant::now();
    let child = run("60");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    std::fs::write(&cluster, members(3)).expect("write");
    let o = child.wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(1500)
            && waited < std::time::Duration::from_secs(20),
        "{waited:?}"
    );
    // master-3 never joins: a failure once the bound is past.
    std::fs::write(&cluster, members(2)).expect("write");
    let o = run("1").wait_with_output().expect("wait");
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}
