//! `microseed status` against real OpenSSH servers: one `sshd` per machine
//! address, inside a network and mount namespace the test creates (test
//! addresses from TEST-NET-1, 192.0.2.0/24, on its own loopback; nothing
//! leaves the namespace). The client is the system's `ssh`, as for a user.
//!
//! The "machines" are this host, so what each one reports comes from a
//! directory per machine: its own `/etc/os-release` (bind-mounted in the
//! sshd's own mount namespace), and first on PATH the real
//! `microseed-status` from the seed microseed builds for that machine
//! (reading a step state the test lays out), with stand-ins for `ufw`,
//! `exportfs`, `microk8s` and (except on worker-1, which gets the real
//! `chronyc` with no daemon) `chronyc`. The cluster's admin user is added
//! to a copy of /etc/passwd bind-mounted in the namespace (as uid 0, or as
//! an ordinary uid whose root-only checks go through the real `sudo` and a
//! per-machine sudoers holding the seed's own rule), so the login needs no
//! account on the host. Needs root (CI runs as root); without it the tests
//! fail saying so.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{EXAMPLE, Scratch, extract_write_files, first_boot, root, text};

const ADMIN: &str = "seedadmin";
const PORT: u16 = 2222;
const MACHINES: &[(&str, &str)] = &[
    ("nfs", "192.0.2.10"),
    ("master", "192.0.2.11"),
    ("worker-1", "192.0.2.12"),
];

/// Runs inside `unshare --net --mount --pid --fork`: brings up the namespace's
/// loopback with the machines' addresses, starts one sshd per machine that
/// is up, runs the command after `--`, stops the sshds, exits with the
/// command's status.
const HARNESS: &str = r#"#!/bin/bash
set -euo pipefail
T=$1
shift
up=()
while [ "$1" != "--" ]; do up+=("$1"); shift; done
shift
ip link set lo up
for m in "$T"/m/*/; do ip addr add "$(cat "$m/ip")/32" dev lo; done
mount -t tmpfs tmpfs /run
mkdir -p /run/sshd
mount --bind "$T/passwd" /etc/passwd
mount --bind "$T/shadow" /etc/shadow
pids=()
for name in "${up[@]}"; do
    M=$T/m/$name
    unshare --mount sh -c 'mount --bind "$1/os-release" /etc/os-release && { [ ! -f "$1/sudoers" ] || mount --bind "$1/sudoers" /etc/sudoers; } && exec /usr/sbin/sshd -D -e -f "$1/sshd_config" 2>>"$1/sshd.log"' sshd "$M" &
    pids+=("$!")
done
for name in "${up[@]}"; do
    ip=$(cat "$T/m/$name/ip")
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/$ip/2222") 2>/dev/null; then continue 2; fi
        sleep 0.05
    done
    echo "harness: sshd for $name never listened; its log:" >&2
    cat "$T/m/$name/sshd.log" >&2
    exit 99
done
set +e
"$@"
rc=$?
kill "${pids[@]}" 2>/dev/null
wait
exit "$rc"
"#;

/// microseed-status's own script, from the seed, reading this machine's
/// step state; `flip` ("N STEP") marks STEP done from the Nth call on, as
/// a step finishing between two polls would.
const STATUS_WRAPPER: &str = r#"#!/bin/sh
F=@F@
if [ -f "$F/flip" ]; then
    read -r after step <"$F/flip"
    n=$(($(cat "$F/calls" 2>/dev/null || echo 0) + 1))
    echo "$n" >"$F/calls"
    if [ "$n" -ge "$after" ]; then
        date -u >"$F/state/done/$step"
        rm -f "$F/state/error/$step" "$F/run/$step"
    fi
fi
MICROSEED_STATE=$F/state MICROSEED_RUN=$F/run MICROSEED_STEPS=$F/root/etc/microseed/steps \
    exec bash "$F/root/usr/local/sbin/microseed-status" "$@"
"#;

const CHRONY_TRACKING: &str = "Reference ID    : C0000201 (192.0.2.1)
Stratum         : 3
Ref time (UTC)  : Sat Nov 28 15:00:00 2026
System time     : 0.000012345 seconds fast of NTP time
Last offset     : +0.000002100 seconds
RMS offset      : 0.000004000 seconds
Frequency       : 1.234 ppm slow
Residual freq   : +0.001 ppm
Skew            : 0.020 ppm
Root delay      : 0.012000000 seconds
Root dispersion : 0.001000000 seconds
Update interval : 2.0 seconds
Leap status     : Normal
";

struct Lab {
    s: Scratch,
    t: PathBuf,
    /// The machines' names and addresses.
    machines: Vec<(&'static str, &'static str)>,
    /// The NFS export, not under /tmp (an export root there is refused:
    /// Ubuntu empties /tmp at boot).
    export: tempfile::TempDir,
}

fn write(p: &Path, body: &str) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, body).expect("write");
}

fn write_exec(p: &Path, body: &str) {
    write(p, body);
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn keygen(path: &Path, comment: &str) {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let o = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client) must be installed");
    assert!(o.status.success(), "ssh-keygen: {}", text(&o).1);
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn nodes_json(ready: &[(&str, bool)]) -> String {
    let items: Vec<_> = ready
        .iter()
        .map(|(n, r)| {
            serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": n},
                "status": {"conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": if *r { "True" } else { "False" },
                     "reason": if *r { "KubeletReady" } else { "KubeletNotReady" }},
                ]}
            })
        })
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

impl Lab {
    fn new() -> Lab {
        Lab::with_admin_uid(0)
    }

    /// The admin logs in with this uid: 0 skips sudo, anything else goes
    /// through the machine's sudoers (see [`Lab::sudo_rule`]).
    fn with_admin_uid(admin_uid: u32) -> Lab {
        Lab::of(EXAMPLE, MACHINES, admin_uid)
    }

    /// examples/ha: three masters and a worker (docs/ha.md).
    fn ha() -> Lab {
        Lab::of(HA, HA_MACHINES, 0)
    }

    fn of(example: &str, machines: &[(&'static str, &'static str)], admin_uid: u32) -> Lab {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let uid = unsafe { libc::geteuid() };
        assert_eq!(
            uid, 0,
            "tests/status.rs needs root to create its network namespace and run sshd \
             (CI runs as root: scripts/test.sh); it cannot check `microseed status` otherwise"
        );
        // A space in every path: the sshd, ssh and shell configuration the
        // test writes, and microseed's own ssh options, must quote them.
        let probe = Scratch::with_prefix("", "status lab ");
        let t = probe.dir.path().to_path_buf();
        keygen(&t.join("client"), "status-test-client");
        let client_pub = read(&t.join("client.pub"));
        // Short, so the table shows it whole: /srv is where a site keeps
        // data it serves (and the test's directory goes with the test).
        let export_dir = tempfile::Builder::new()
            .prefix("ms-export-")
            .tempdir_in("/srv")
            .or_else(|_| tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")))
            .expect("tmp");
        std::fs::set_permissions(export_dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let export = export_dir.path().to_path_buf();
        let cluster = example
            .replace("172.20.0.0/20", "192.0.2.0/24")
            .replace("172.20.0.1", "192.0.2.1")
            .replace("172.20.10.", "192.0.2.")
            .replace("username: ubuntu", &format!("username: {ADMIN}"))
            .replace("port: 22\n", &format!("port: {PORT}\n"))
            .replace(
                "export_root: /data",
                &format!("export_root: {}", export.display()),
            );
        let key_line = example
            .lines()
            .find(|l| l.contains("ssh-ed25519"))
            .expect("example key");
        let cluster = cluster.replace(key_line, &format!("    - {}", client_pub.trim()));
        write(&t.join("cluster.yaml"), &cluster);
        let lab = Lab {
            s: probe,
            t,
            machines: machines.to_vec(),
            export: export_dir,
        };
        let o = lab.s.build(&["--format", "dir"]);
        assert!(o.status.success(), "build: {}", text(&o).1);
        write(
            &lab.t.join("ssh_config"),
            &format!(
                "Host *\n    IdentityFile \"{}\"\n    IdentitiesOnly yes\n",
                lab.t.join("client").display()
            ),
        );
        write(&lab.t.join("authorized_keys"), &client_pub);
        let mut passwd = read(Path::new("/etc/passwd"));
        passwd.push_str(&format!(
            "{ADMIN}:x:{admin_uid}:{admin_uid}:microseed status test:{}:/bin/sh\n",
            lab.t.join("home").display()
        ));
        write(&lab.t.join("passwd"), &passwd);
        let mut shadow = read(Path::new("/etc/shadow"));
        shadow.push_str(&format!("{ADMIN}:*:20000:0:99999:7:::\n"));
        write(&lab.t.join("shadow"), &shadow);
        std::fs::create_dir_all(lab.t.join("home")).expect("home");
        if admin_uid != 0 {
            // sshd reads authorized_keys and runs the probe as the admin.
            let _ = Command::new("chown")
                .arg(format!("{admin_uid}:{admin_uid}"))
                .arg(lab.t.join("home"))
                .status();
            std::fs::set_permissions(&lab.t, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        write_exec(&lab.t.join("harness.sh"), HARNESS);
        for (name, ip) in machines {
            lab.machine(name, ip);
        }
        lab
    }

    fn m(&self, name: &str) -> PathBuf {
        self.t.join("m").join(name)
    }

    fn machine(&self, name: &str, ip: &str) {
        let f = self.m(name);
        for d in ["state/done", "state/error", "run", "bin"] {
            std::fs::create_dir_all(f.join(d)).expect("mkdir");
        }
        write(&f.join("ip"), ip);
        extract_write_files(&first_boot(&self.s.out(), name), &f.join("root"));
        write(
            &f.join("os-release"),
            "NAME=\"Ubuntu\"\nVERSION=\"20.04.6 LTS (Focal Fossa)\"\nID=ubuntu\nVERSION_ID=\"20.04\"\n",
        );
        keygen(&f.join("host_key"), name);
        write(
            &f.join("sshd_config"),
            &format!(
                "ListenAddress {ip}:{PORT}\nHostKey \"{hk}\"\nPidFile \"{f}/sshd.pid\"\n\
                 AuthorizedKeysFile \"{t}/authorized_keys\"\nStrictModes no\nPermitRootLogin yes\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 ForceCommand {dispatch}\n",
                hk = f.join("host_key").display(),
                f = f.display(),
                t = self.t.display(),
                dispatch = common::shq(f.join("dispatch"))
            ),
        );
        // The machine's tools first on PATH; the probe itself runs as sent.
        write_exec(
            &f.join("dispatch"),
            &format!(
                "#!/bin/sh\nF={f}\n[ ! -f \"$F/hang\" ] || exec sleep 600\n[ ! -f \"$F/flood\" ] || exec head -c 300000000 /dev/zero\nPATH={f}/bin:$PATH\nexport PATH\nexec sh -c \"$SSH_ORIGINAL_COMMAND\"\n",
                f = common::shq(&f)
            ),
        );
        write_exec(
            &f.join("bin/microseed-status"),
            &STATUS_WRAPPER.replace("@F@", &common::shq(&f)),
        );
        write_exec(
            &f.join("bin/ufw"),
            "#!/bin/sh\n[ \"$1\" = status ] || exit 2\necho 'Status: active'\necho\necho 'To                         Action      From'\necho '2222/tcp                   ALLOW       Anywhere'\n",
        );
        // snapd's `refresh --time --abs-time`, as its showRefreshTimes
        // prints it: the master still held, the NFS server scheduled in its
        // slot; worker-1 has no snap (nothing on this host's PATH either).
        let snap_time = match name {
            "master" => Some(
                "timer: sat,03:20-04:40\nlast: n/a\nhold: 2027-01-06T11:30:00Z\nnext: 2026-12-12T03:20:00Z (but held)\n",
            ),
            "nfs" => Some("timer: sat,02:00-03:20\nlast: n/a\nnext: 2026-12-12T02:00:00Z\n"),
            _ => None,
        };
        if let Some(out) = snap_time {
            write_exec(
                &f.join("bin/snap"),
                &format!(
                    "#!/bin/sh\n[ \"$*\" = 'refresh --time --abs-time' ] || exit 2\nprintf '{out}'\n"
                ),
            );
        }
        if name != "worker-1" {
            write(&f.join("tracking"), CHRONY_TRACKING);
            write_exec(
                &f.join("bin/chronyc"),
                &format!("#!/bin/sh\ncat {}\n", common::shq(f.join("tracking"))),
            );
        }
        if name == "nfs" {
            let export = self.export.path();
            write_exec(
                &f.join("bin/exportfs"),
                &format!(
                    "#!/bin/sh\n[ \"$1\" = -v ] || exit 2\nprintf '%s\\t192.0.2.0/24(sync,wdelay,hide,no_subtree_check,sec=sys,rw,secure,root_squash,no_all_squash)\\n' {}\n",
                    common::shq(export)
                ),
            );
        }
        if name == "master" {
            write(
                &f.join("nodes.json"),
                &nodes_json(&[("master", true), ("worker-1", true)]),
            );
            write_exec(
                &f.join("bin/microk8s"),
                &format!(
                    "#!/bin/sh\n[ \"$*\" = 'kubectl get nodes -o json' ] || {{ echo \"unexpected: $*\" >&2; exit 2; }}\ncat {}\n",
                    common::shq(f.join("nodes.json"))
                ),
            );
        } else if name.starts_with("master-") {
            // An HA master: its node list and its `microk8s status` (the
            // datastore's voters), as the test sets them.
            let all: Vec<(&str, bool)> = self
                .machines
                .iter()
                .filter(|(n, _)| *n != "nfs")
                .map(|(n, _)| (*n, true))
                .collect();
            write(&f.join("nodes.json"), &nodes_json(&all));
            write(
                &f.join("status.txt"),
                "microk8s is running\nhigh-availability: yes\n  datastore master nodes: 192.0.2.11:19001 192.0.2.12:19001 192.0.2.13:19001\n  datastore standby nodes: none\n",
            );
            write_exec(
                &f.join("bin/microk8s"),
                &format!(
                    "#!/bin/sh\ncase \"$*\" in\n'kubectl get nodes -o json') cat {} ;;\nstatus) cat {} ;;\n*) echo \"unexpected: $*\" >&2; exit 2 ;;\nesac\n",
                    common::shq(f.join("nodes.json")),
                    common::shq(f.join("status.txt"))
                ),
            );
        }
    }

    /// NAME's /etc/sudoers: the admin's rule as the seed gives it to
    /// cloud-init (or RULE instead), with the machine's tools on sudo's PATH.
    fn sudo_rule(&self, name: &str, rule: Option<&str>) {
        let seed_rule = first_boot(&self.s.out(), name)["users"][0]["sudo"]
            .as_str()
            .expect("the seed's sudo rule")
            .to_string();
        let f = self.m(name);
        let p = f.join("sudoers");
        write(
            &p,
            &format!(
                "Defaults secure_path=\"{}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\n\
                 root ALL=(ALL:ALL) ALL\n{ADMIN} {}\n",
                f.display(),
                rule.unwrap_or(&seed_rule)
            ),
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o440)).expect("chmod");
    }

    fn steps(&self, name: &str) -> Vec<String> {
        read(&self.m(name).join("root/etc/microseed/steps"))
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split('|').next().expect("name").to_string())
            .collect()
    }

    fn all_done(&self) {
        for (name, _) in &self.machines {
            for step in self.steps(name) {
                write(
                    &self.m(name).join("state/done").join(&step),
                    "2026-11-28T15:00:00Z\n",
                );
            }
        }
    }

    /// STEP on NAME has failed its attempts so far and is waiting to retry.
    fn fail(&self, name: &str, step: &str, error: &str) {
        let f = self.m(name);
        let _ = std::fs::remove_file(f.join("state/done").join(step));
        write(
            &f.join("state/error").join(step),
            &format!("attempt 2 exited 1 at 2026-11-28T15:01:00Z\n{error}\n"),
        );
        write(
            &f.join("run").join(step),
            "failed: attempt 2 exited 1; retrying in 20s\n",
        );
    }

    fn set_nodes(&self, ready: &[(&str, bool)]) {
        write(&self.m("master").join("nodes.json"), &nodes_json(ready));
    }

    fn known_hosts(&self) -> PathBuf {
        self.t.join("known_hosts")
    }

    /// `microseed status` inside the namespace with the sshds of `up`.
    fn status(&self, up: &[&str], args: &[&str]) -> Output {
        self.status_of(&self.t.join("cluster.yaml"), &[], up, args)
    }

    /// `microseed status CLUSTER`, run through `wrapper` (such as
    /// `/usr/bin/time`). The namespace has its own PIDs: whatever a
    /// machine left running dies with the harness.
    fn status_of(&self, cluster: &Path, wrapper: &[&str], up: &[&str], args: &[&str]) -> Output {
        // Its own PID namespace too: the sshds die with the harness even
        // when it fails before stopping them, or the test is killed.
        let mut c = common::unshare(&[
            "--net",
            "--mount",
            "--pid",
            "--mount-proc",
            "--fork",
            "--kill-child",
            "--",
        ]);
        common::fixed_env(&mut c);
        c.arg(self.t.join("harness.sh"))
            .arg(&self.t)
            .args(up)
            .arg("--")
            .args(wrapper)
            .arg(env!("CARGO_BIN_EXE_microseed"))
            .arg("status")
            .arg(cluster)
            .arg("--ssh-config")
            .arg(self.t.join("ssh_config"))
            .args(args);
        let o = c.output().expect("unshare (util-linux) must be installed");
        assert_ne!(
            o.status.code(),
            Some(99),
            "the test namespace could not be set up: {}",
            text(&o).1
        );
        o
    }
}

const ALL: &[&str] = &["nfs", "master", "worker-1"];
const HA: &str = include_str!("../examples/ha/cluster.yaml");
const HA_MACHINES: &[(&str, &str)] = &[
    ("nfs", "192.0.2.10"),
    ("master-1", "192.0.2.11"),
    ("master-2", "192.0.2.12"),
    ("master-3", "192.0.2.13"),
    ("worker-1", "192.0.2.14"),
];

fn row<'a>(stdout: &'a str, machine: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(machine))
        .unwrap_or_else(|| panic!("no row for {machine} in:\n{stdout}"))
}

#[test]
fn a_converged_cluster_exits_0_with_every_row_filled_in_and_records_host_keys() {
    let lab = Lab::new();
    lab.all_done();
    let o = lab.status(ALL, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let header = out.lines().next().expect("header");
    for col in [
        "MACHINE",
        "SSH",
        "RELEASE",
        "FIRST BOOT",
        "NODES",
        "CHRONY",
        "UFW",
        "REFRESH",
        "NFS EXPORT",
    ] {
        assert!(header.contains(col), "{header}");
    }
    // Each machine's next refresh window, or its hold.
    assert!(
        row(&out, "master").contains("held until 2027-01-06T11:30:00Z; then sat,03:20-04:40"),
        "{out}"
    );
    assert!(
        row(&out, "nfs").contains("next 2026-12-12T02:00:00Z (sat,02:00-03:20)"),
        "{out}"
    );
    assert!(
        row(&out, "worker-1").contains("snapd not installed"),
        "{out}"
    );
    for m in ALL {
        let r = row(&out, m);
        assert!(
            r.contains(" ok ") && r.contains("20.04") && r.contains("converged ("),
            "{r}"
        );
        assert!(r.contains("192.0.2.") && r.contains(":2222"), "{r}");
        assert!(r.contains("active"), "{r}");
    }
    assert!(row(&out, "master").contains("2/2 Ready"), "{out}");
    assert!(
        row(&out, "nfs").contains("synchronized, offset +0.000012 s"),
        "{out}"
    );
    assert!(row(&out, "nfs").contains("exported"), "{out}");
    // worker-1 runs the real chronyc, with no chronyd in the namespace.
    assert!(
        row(&out, "worker-1").contains("chronyd not running")
            || row(&out, "worker-1").contains("chronyc not installed"),
        "{out}"
    );
    assert!(out.contains("all 3 machines converged"), "{out}");
    assert!(
        err.contains("recorded the host key of nfs, master, worker-1 on first contact"),
        "{err}"
    );
    // Trust on first use: one entry per machine, under its name, unhashed.
    let kh = read(&lab.known_hosts());
    for m in ALL {
        let key = read(&lab.m(m).join("host_key.pub"));
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        assert!(
            kh.lines()
                .any(|l| l == format!("{m} {} {}", key[0], key[1])),
            "no entry for {m} in known_hosts:\n{kh}"
        );
    }
}

#[test]
fn a_stopped_machine_is_an_unreachable_row_and_exit_4() {
    let lab = Lab::new();
    lab.all_done();
    let o = lab.status(&["nfs", "master"], &["--connect-timeout", "3"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    assert!(row(&out, "worker-1").contains("unreachable"), "{out}");
    assert!(row(&out, "master").contains("converged"), "{out}");
    assert!(
        out.contains(
            "worker-1: unreachable: ssh: connect to host 192.0.2.12 port 2222: Connection refused"
        ),
        "{out}"
    );
    assert!(out.contains("not done: worker-1"), "{out}");
}

#[test]
fn a_failing_step_is_named_with_its_error_and_exit_3() {
    let lab = Lab::new();
    lab.all_done();
    lab.fail(
        "worker-1",
        "join",
        "microseed-join: the master at 192.0.2.11:25000 refused the join",
    );
    lab.set_nodes(&[("master", true)]);
    let o = lab.status(ALL, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "stdout:\n{out}\nstderr:\n{err}");
    let r = row(&out, "worker-1");
    assert!(
        r.contains("failed at join: microseed-join: the master at"),
        "{r}"
    );
    assert!(row(&out, "master").contains("1/2 Ready"), "{out}");
    // The details under the table carry the whole error, as the machine said it.
    assert!(
        out.contains("last error: microseed-join: the master at 192.0.2.11:25000 refused the join"),
        "{out}"
    );
    assert!(
        out.contains("master: nodes 1/2 Ready") || out.contains("nodes: 1/2 Ready"),
        "{out}"
    );
}

#[test]
fn json_has_the_documented_keys_for_reachable_and_unreachable_machines() {
    let lab = Lab::new();
    lab.all_done();
    write(
        &lab.m("master").join("os-release"),
        "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\n",
    );
    let o = lab.status(&["nfs", "master"], &["--json", "--connect-timeout", "3"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["ok"], false);
    assert_eq!(v["exit_code"], 4);
    assert!(
        v["missing"][0]
            .as_str()
            .expect("missing")
            .starts_with("worker-1: unreachable")
    );
    let ms = v["machines"].as_array().expect("machines");
    assert_eq!(ms.len(), 3);
    let keys = [
        "name",
        "role",
        "address",
        "port",
        "reachable",
        "error",
        "release",
        "release_expected",
        "first_boot",
        "nodes",
        "datastore",
        "chrony",
        "ufw",
        "refresh",
        "nfs_export",
        "ok",
    ];
    for m in ms {
        let obj = m.as_object().expect("object");
        let mut have: Vec<&str> = obj.keys().map(String::as_str).collect();
        have.sort();
        let mut want = keys.to_vec();
        want.sort();
        assert_eq!(have, want, "{m}");
        for k in ["state", "done", "total", "summary", "steps"] {
            assert!(m["first_boot"].get(k).is_some(), "first_boot.{k} in {m}");
        }
    }
    let master = &ms[1];
    assert_eq!(master["name"], "master");
    assert_eq!(master["release"], "22.04");
    assert_eq!(master["release_expected"], "20.04");
    assert_eq!(master["nodes"]["ready"], 2);
    assert_eq!(master["nodes"]["expected"], 2);
    assert_eq!(master["first_boot"]["state"], "converged");
    assert_eq!(master["chrony"]["state"], "synchronized");
    assert_eq!(master["chrony"]["offset_seconds"], 0.000012345);
    assert_eq!(master["ufw"]["state"], "active");
    assert_eq!(master["refresh"]["state"], "held");
    assert!(master["nfs_export"].is_null());
    // One master: no datastore verdict (HA needs 3).
    assert!(master["datastore"].is_null());
    let nfs = &ms[0];
    assert_eq!(nfs["refresh"]["state"], "scheduled");
    assert_eq!(nfs["nfs_export"]["state"], "ok");
    assert_eq!(nfs["nfs_export"]["exported"], true);
    assert!(nfs["nodes"].is_null());
    let steps = nfs["first_boot"]["steps"].as_array().expect("steps");
    assert!(
        steps
            .iter()
            .any(|s| s["name"] == "nfs" && s["state"] == "done"),
        "{nfs}"
    );
    let w = &ms[2];
    assert_eq!(w["reachable"], false);
    assert!(
        w["error"]
            .as_str()
            .expect("error")
            .contains("Connection refused")
    );
}

#[test]
fn wait_returns_0_once_the_last_step_finishes() {
    let lab = Lab::new();
    lab.all_done();
    lab.fail("worker-1", "join", "microseed-join: waiting for the master");
    // The join succeeds on the third look.
    write(&lab.m("worker-1").join("flip"), "3 join\n");
    let o = lab.status(ALL, &["--wait=60s", "--interval", "1s"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("waiting (") && err.contains("worker-1: failed at join"),
        "{err}"
    );
    let calls: u32 = read(&lab.m("worker-1").join("calls"))
        .trim()
        .parse()
        .expect("n");
    assert!(calls >= 3, "microseed-status ran {calls} times");
    assert!(row(&out, "worker-1").contains("converged"), "{out}");
}

#[test]
fn wait_times_out_with_a_non_zero_exit_naming_what_is_missing() {
    let lab = Lab::new();
    lab.all_done();
    lab.fail(
        "worker-1",
        "join",
        "microseed-join: the master refused the join",
    );
    // 8 s, not less: every sshd of the lab must answer within the
    // deadline even on a loaded machine, or the exit is 4 (unreachable).
    let started = std::time::Instant::now();
    let o = lab.status(ALL, &["--wait=8s", "--interval", "1s"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        started.elapsed().as_secs() >= 8,
        "gave up before the timeout"
    );
    assert!(
        err.contains("timed out after 8s; still missing: worker-1: failed at join: microseed-join: the master refused the join"),
        "{err}"
    );
}

#[test]
fn a_changed_host_key_is_refused_until_accepted_for_that_machine_only() {
    let lab = Lab::new();
    lab.all_done();
    let o = lab.status(ALL, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    // worker-1 and master are "rebuilt": new host keys.
    keygen(&lab.m("worker-1").join("host_key"), "worker-1-rebuilt");
    keygen(&lab.m("master").join("host_key"), "master-rebuilt");
    let o = lab.status(ALL, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    assert!(row(&out, "worker-1").contains("host key changed"), "{out}");
    assert!(
        out.contains("worker-1: unreachable: host key changed")
            && out.contains("--accept-new-host-key worker-1"),
        "{out}"
    );
    assert!(row(&out, "nfs").contains("converged"), "{out}");
    let before = read(&lab.known_hosts());
    // Waiting cannot fix a changed key: --wait gives up at once.
    let started = std::time::Instant::now();
    let o = lab.status(ALL, &["--wait=60s", "--interval", "1s"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        started.elapsed().as_secs() < 30,
        "waited for a changed host key"
    );
    assert!(
        err.contains("not waiting: the host key of master, worker-1 changed"),
        "{err}"
    );

    let o = lab.status(ALL, &["--accept-new-host-key", "worker-1"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    assert!(row(&out, "worker-1").contains("converged"), "{out}");
    assert!(row(&out, "master").contains("host key changed"), "{out}");
    assert!(
        err.contains("worker-1: forgot its recorded host key"),
        "{err}"
    );
    let after = read(&lab.known_hosts());
    let new_key = read(&lab.m("worker-1").join("host_key.pub"));
    let new_key: Vec<&str> = new_key.split_whitespace().take(2).collect();
    assert!(
        after
            .lines()
            .any(|l| l == format!("worker-1 {} {}", new_key[0], new_key[1])),
        "{after}"
    );
    // master's old entry is kept: only the named machine was forgotten.
    let master_old = |kh: &str| {
        kh.lines()
            .find(|l| l.starts_with("master "))
            .map(str::to_string)
    };
    assert_eq!(master_old(&before), master_old(&after));
}

#[test]
fn bad_arguments_exit_2_without_connecting() {
    let s = Scratch::new(EXAMPLE);
    for args in [
        vec!["--machine", "nope"],
        vec!["--accept-new-host-key", "nope"],
        vec!["--wait=5x"],
        vec!["--ssh-config", "/nonexistent/ssh_config"],
    ] {
        // In an empty network namespace: even a bug that went on to connect
        // could not reach the example's addresses.
        let o = common::fixed_env(&mut Command::new("unshare"))
            .args(["--net", "--"])
            .arg(env!("CARGO_BIN_EXE_microseed"))
            .arg("status")
            .arg(s.cluster())
            .args(&args)
            .output()
            .expect("unshare (util-linux) must be installed");
        let (out, err) = text(&o);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?}\nstdout:\n{out}\nstderr:\n{err}"
        );
        assert!(!s.dir.path().join("known_hosts").exists());
    }
}

#[test]
fn the_probe_script_is_clean_under_shellcheck() {
    let o = common::run(
        "shellcheck",
        &[
            "-s",
            "sh",
            root().join("src/status-probe.sh").to_str().expect("utf-8"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o).0);
}

#[test]
fn a_missing_tool_is_a_value_in_its_cell_not_a_crash() {
    let lab = Lab::new();
    lab.all_done();
    std::fs::remove_file(lab.m("nfs").join("bin/microseed-status")).expect("rm");
    std::fs::remove_file(lab.m("master").join("bin/microk8s")).expect("rm");
    let o = lab.status(ALL, &["--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "stdout:\n{out}\nstderr:\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let nfs = &v["machines"][0];
    assert_eq!(nfs["reachable"], true);
    assert_eq!(nfs["first_boot"]["state"], "unknown");
    assert_eq!(
        nfs["first_boot"]["summary"],
        "microseed-status not installed (not a microseed machine?)"
    );
    // The other checks still ran.
    assert_eq!(nfs["ufw"]["state"], "active");
    assert_eq!(nfs["nfs_export"]["state"], "ok");
    let master = &v["machines"][1];
    assert_eq!(master["first_boot"]["state"], "converged");
    assert_eq!(master["nodes"]["state"], "unknown");
    assert_eq!(master["nodes"]["detail"], "microk8s not installed");
    assert_eq!(v["machines"][2]["ok"], true);
}

#[test]
fn a_non_root_admin_reads_root_only_state_through_sudo_and_a_password_prompt_is_a_cell() {
    let lab = Lab::with_admin_uid(4242);
    lab.all_done();
    lab.sudo_rule("nfs", None);
    lab.sudo_rule("master", None);
    // An admin with a password: sudo -n refuses instead of prompting.
    lab.sudo_rule("worker-1", Some("ALL=(ALL) ALL"));
    let o = lab.status(ALL, &["--json"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "stdout:\n{out}\nstderr:\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let (nfs, master, worker) = (&v["machines"][0], &v["machines"][1], &v["machines"][2]);
    assert_eq!(nfs["first_boot"]["state"], "converged", "{nfs}");
    assert_eq!(nfs["ufw"]["state"], "active", "{nfs}");
    assert_eq!(nfs["nfs_export"]["state"], "ok", "{nfs}");
    assert_eq!(master["first_boot"]["state"], "converged", "{master}");
    assert_eq!(master["nodes"]["ready"], 2, "{master}");
    assert_eq!(worker["reachable"], true);
    assert_eq!(worker["first_boot"]["state"], "unknown");
    let summary = worker["first_boot"]["summary"].as_str().expect("summary");
    assert!(summary.contains("a password is required"), "{summary}");
    assert!(
        worker["ufw"]["detail"]
            .as_str()
            .expect("ufw")
            .contains("a password is required"),
        "{worker}"
    );
}

#[test]
fn wait_against_a_hung_machine_ends_at_its_deadline() {
    let lab = Lab::new();
    lab.all_done();
    write(&lab.m("master").join("hang"), "");
    let started = std::time::Instant::now();
    let o = lab.status(ALL, &["--wait=4s", "--interval", "1s"]);
    let took = started.elapsed();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    // 4 s of waiting, the last probe's 2 s floor, sshd start-up (slow on
    // a loaded machine): far from the 120 s a probe may take without
    // --wait.
    assert!(took.as_secs() < 30, "took {took:?}\n{out}{err}");
    assert!(row(&out, "master").contains("unreachable"), "{out}");
    assert!(out.contains("no answer within"), "{out}");
    assert!(err.contains("timed out after 4s"), "{err}");
    assert!(row(&out, "nfs").contains("converged"), "{out}");
}

#[test]
fn a_flood_from_a_machine_is_cut_off_without_holding_it_in_memory() {
    let lab = Lab::new();
    lab.all_done();
    write(&lab.m("worker-1").join("flood"), "");
    let o = lab.status_of(
        &lab.t.join("cluster.yaml"),
        &["/usr/bin/time", "-f", "maxrss_kib=%M"],
        ALL,
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    assert!(row(&out, "worker-1").contains("unreachable"), "{out}");
    assert!(out.contains("the answer grew past 16 MiB"), "{out}");
    assert!(row(&out, "nfs").contains("converged"), "{out}");
    let rss: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("maxrss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no maxrss in {err}"));
    // 300 MB were sent; what is held stays near the 16 MiB bound.
    assert!(rss < 120 * 1024, "peak RSS {rss} KiB");
}

#[test]
fn escape_sequences_from_a_machine_never_reach_the_terminal() {
    let lab = Lab::new();
    lab.all_done();
    write(
        &lab.m("nfs").join("os-release"),
        "NAME=\"Ubuntu\"\nID=ubuntu\nVERSION_ID=\"20.04\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[31m\r\u{202e}\"\n",
    );
    for json in [false, true] {
        let args: &[&str] = if json { &["--json"] } else { &[] };
        let o = lab.status(ALL, args);
        let (out, err) = text(&o);
        for bad in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
            assert!(
                !out.contains(bad) && !err.contains(bad),
                "{bad:?} in:\n{out}{err}"
            );
        }
        assert!(out.contains("20.04"), "{out}");
    }
}

#[test]
fn host_keys_are_pinned_in_a_cluster_directory_whose_path_has_blanks_percent_and_quotes() {
    let lab = Lab::new();
    lab.all_done();
    let dir = lab.t.join("my \"cluster\" 100% %h ${HOME} #1");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cluster = dir.join("cluster.yaml");
    std::fs::copy(lab.t.join("cluster.yaml"), &cluster).expect("copy");
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(&lab.t)
            .expect("readdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let o = lab.status_of(&cluster, &[], ALL, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    // The keys are in the cluster's own known_hosts, and nowhere else.
    let kh = read(&dir.join("known_hosts"));
    for m in ALL {
        assert!(
            kh.lines().any(|l| l.starts_with(&format!("{m} "))),
            "{m}: {kh}"
        );
    }
    assert_eq!(
        listing(),
        before,
        "ssh wrote a file beside the cluster's directory"
    );
    assert!(!lab.known_hosts().exists());
    // And they are enforced: a rebuilt master is refused.
    keygen(&lab.m("master").join("host_key"), "master-rebuilt");
    let o = lab.status_of(&cluster, &[], ALL, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    assert!(row(&out, "master").contains("host key changed"), "{out}");
    assert!(row(&out, "nfs").contains("converged"), "{out}");
    // No private link directory outlives the run.
    let tmp = std::env::temp_dir();
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .expect("readdir")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("microseed-status-")
        })
        .collect();
    assert!(left.is_empty(), "left in {}: {left:?}", tmp.display());
}

/// Three masters: with master-1 killed (its sshd down, masters 2 and 3
/// reporting it Unknown), status reads the nodes from masters 2 and 3: the
/// worker stays Ready, master-1 is named unreachable, not Ready and its
/// voter lost, and the exit code is 4; once it is back, every master
/// agrees and status exits 0. A master whose own list is a moment behind
/// (the worker NotReady there) does not hold the cluster back: a node is
/// Ready when any reachable master reports it Ready.
#[test]
fn with_master_1_killed_the_worker_stays_ready_and_status_names_the_loss() {
    let lab = Lab::ha();
    lab.all_done();
    let up = ["nfs", "master-1", "master-2", "master-3", "worker-1"];
    let o = lab.status(&up, &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        out.contains("cluster, as master-1, master-2, master-3 report it:"),
        "{out}"
    );
    assert!(out.contains("  nodes      4/4 Ready"), "{out}");
    assert!(out.contains("  datastore  3 voter(s)"), "{out}");

    let lost = [
        ("master-1", false),
        ("master-2", true),
        ("master-3", true),
        ("worker-1", true),
    ];
    for m in ["master-2", "master-3"] {
        write(&lab.m(m).join("nodes.json"), &nodes_json(&lost));
    }
    // master-3's answer is older: the worker still NotReady there.
    write(
        &lab.m("master-3").join("nodes.json"),
        &nodes_json(&[
            ("master-1", false),
            ("master-2", true),
            ("master-3", true),
            ("worker-1", false),
        ]),
    );
    let down = ["nfs", "master-2", "master-3", "worker-1"];
    let o = lab.status(&down, &["--connect-timeout", "3"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    assert!(row(&out, "master-1").contains("unreachable"), "{out}");
    assert!(
        out.contains("cluster, as master-2, master-3 report it (master-1 unreachable):"),
        "{out}"
    );
    assert!(
        out.contains("  nodes      3/4 Ready (as master-2, master-3 report); master-1 not Ready on master-2 (False), master-3 (False)"),
        "{out}"
    );
    assert!(
        out.contains("voter(s) on unreachable master(s): master-1 (192.0.2.11:19001)"),
        "{out}"
    );
    let o = lab.status(&down, &["--json", "--connect-timeout", "3"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(4), "stdout:\n{out}\nstderr:\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    assert_eq!(v["exit_code"], 4);
    let c = &v["cluster"];
    assert_eq!(c["unreachable"], serde_json::json!(["master-1"]), "{c}");
    assert_eq!(
        c["nodes"]["from"],
        serde_json::json!(["master-2", "master-3"])
    );
    let node = |n: &str| {
        c["nodes"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|x| x["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} in {c}"))
    };
    assert_eq!(node("worker-1")["state"], "ready", "{c}");
    assert_eq!(
        node("worker-1")["ready_on"],
        serde_json::json!(["master-2"])
    );
    assert_eq!(node("master-1")["state"], "not-ready", "{c}");
    assert_eq!(c["nodes"]["not_ready"], serde_json::json!(["master-1"]));
    let d = &c["datastore"];
    assert_eq!(d["state"], "degraded", "{d}");
    assert_eq!(d["voters"][0]["machine"], "master-1");
    assert_eq!(d["voters"][0]["reachable"], false);
    assert_eq!(d["voters"][1]["reachable"], true);
    assert!(
        v["missing"].as_array().expect("missing").iter().any(|m| m
            .as_str()
            .is_some_and(|m| m.starts_with("master-1: unreachable"))),
        "{v}"
    );
}
