//! The first-boot files each role gets, put in front of the programs that
//! will read them: shellcheck, systemd-analyze, chronyd, exportfs, ufw,
//! sshd. The step scripts run against the stand-in `microk8s` in
//! tests/convergence.rs.

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{EXAMPLE, Scratch, extract_write_files, first_boot, run, text};

const TOKEN: &str = "TestTokenForGoldenFiles0123456789abcdefABCDEF";

/// Builds `cluster` and lays each machine's write_files out under a root.
struct Roots {
    s: Scratch,
    roots: BTreeMap<String, PathBuf>,
    configs: BTreeMap<String, serde_json::Value>,
}

fn roots(cluster: &str) -> Roots {
    let s = Scratch::new(cluster);
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let mut roots = BTreeMap::new();
    let mut configs = BTreeMap::new();
    for m in ["nfs", "master", "worker-1"] {
        let cc = first_boot(&s.out(), m);
        let r = s.dir.path().join("roots").join(m);
        extract_write_files(&cc, &r);
        roots.insert(m.to_string(), r);
        configs.insert(m.to_string(), cc);
    }
    Roots { s, roots, configs }
}

fn scripts(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["usr/local/sbin"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_generated_script_passes_shellcheck() {
    let r = roots(EXAMPLE);
    let mut n = 0;
    for (m, root) in &r.roots {
        for s in scripts(root) {
            let o = run("shellcheck", &[s.to_str().expect("utf8")]);
            assert!(o.status.success(), "{m}: {}: {}", s.display(), text(&o).0);
            n += 1;
        }
    }
    assert!(n >= 10, "expected the roles' scripts, found {n}");
}

/// The scripts of each release beside 20.04 (24.04 has its own ssh.socket
/// branch in microseed-ssh), with ssh moved off 22 as the 24.04 example does.
#[test]
fn release_examples_scripts_pass_shellcheck() {
    for cluster in [
        include_str!("../examples/eth2-staking-22.04/cluster.yaml"),
        include_str!("../examples/eth2-staking-24.04/cluster.yaml"),
    ] {
        let r = roots(cluster);
        for (m, root) in &r.roots {
            for s in scripts(root) {
                let o = run("shellcheck", &[s.to_str().expect("utf8")]);
                assert!(o.status.success(), "{m}: {}: {}", s.display(), text(&o).0);
            }
        }
        let ssh = std::fs::read_to_string(r.roots["master"].join("usr/local/sbin/microseed-ssh"))
            .expect("microseed-ssh");
        let socket = cluster.contains("release: \"24.04\"");
        assert_eq!(
            ssh.contains("systemctl restart ssh.socket"),
            socket,
            "{ssh}"
        );
    }
}

#[test]
fn staking_scripts_pass_shellcheck_and_land_only_where_they_run() {
    let r = roots(&common::staking_example());
    let master = &r.roots["master"];
    let worker = &r.roots["worker-1"];
    for s in [
        master.join("usr/local/sbin/microseed-staking"),
        worker.join("usr/local/sbin/microseed-execution-dir"),
    ] {
        let o = run("shellcheck", &[s.to_str().expect("utf8")]);
        assert!(o.status.success(), "{}: {}", s.display(), text(&o).0);
    }
    // The objects and the secrets they are made from: master only, 0600.
    for f in [
        "etc/microseed/staking.yaml",
        "etc/microseed/staking/jwt.hex",
        "etc/microseed/staking/wallet-passwords",
    ] {
        assert!(master.join(f).exists(), "{f} missing on the master");
        assert!(!worker.join(f).exists(), "{f} on the worker");
    }
    // The database directory is made on the execution node (the first
    // worker by default), nowhere else.
    assert!(
        !master
            .join("usr/local/sbin/microseed-execution-dir")
            .exists()
    );
    assert!(
        !r.roots["nfs"]
            .join("usr/local/sbin/microseed-execution-dir")
            .exists()
    );
}

#[test]
fn units_pass_systemd_analyze_verify_with_no_output() {
    let r = roots(&common::staking_example());
    let mut n = 0;
    for (m, root) in &r.roots {
        let units = root.join("etc/systemd/system");
        let Ok(rd) = std::fs::read_dir(&units) else {
            continue;
        };
        let files: Vec<String> = rd
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect();
        n += files.len();
        // ExecStart= must exist: bind this machine's scripts over
        // /usr/local/sbin (and /usr/local/lib) in a private mount namespace.
        let lib = root.join("usr/local/lib");
        let bind_lib = if lib.exists() {
            format!("mount --bind {} /usr/local/lib && ", common::shq(&lib))
        } else {
            String::new()
        };
        let script = format!(
            "mount --bind {} /usr/local/sbin && {bind_lib}systemd-analyze verify {}",
            common::shq(root.join("usr/local/sbin")),
            files.iter().map(common::shq).collect::<Vec<_>>().join(" ")
        );
        let o = run(
            "unshare",
            &["--mount", "--propagation", "private", "bash", "-c", &script],
        );
        let (out, err) = text(&o);
        assert!(
            o.status.success() && out.is_empty() && err.is_empty(),
            "{m}: {out}{err}"
        );
    }
    assert!(
        n >= 4,
        "expected the join, token and staking units, found {n}"
    );
}

#[test]
fn chrony_conf_passes_chronyd_parse_and_polls_public_servers_at_default_intervals() {
    let r = roots(EXAMPLE);
    for (m, root) in &r.roots {
        let f = root.join("etc/chrony/chrony.conf");
        let o = run("chronyd", &["-p", "-f", f.to_str().expect("utf8")]);
        assert!(o.status.success(), "{m}: {}", text(&o).1);
        let parsed = text(&o).0;
        // The guide's `minpoll 1 maxpoll 2` polled every 2-4 s, below RFC
        // 4330's 15 s floor and public servers' rate limits: chrony's
        // defaults (64 s to 1024 s) apply, iburst for a quick first sync.
        assert!(
            !parsed.contains("minpoll") && !parsed.contains("maxpoll"),
            "{m}: a poll interval is set: {parsed}"
        );
        for line in [
            "pool time.google.com iburst maxsources 3",
            "pool us.pool.ntp.org iburst maxsources 3",
            "pool ntp.ubuntu.com iburst maxsources 3",
            "maxupdateskew 5.0",
            "makestep 0.1 -1",
            "driftfile /var/lib/chrony/chrony.drift",
            "rtcsync",
            "logdir /var/log/chrony",
            "keyfile /etc/chrony/chrony.keys",
        ] {
            assert!(
                parsed.lines().any(|l| l == line),
                "{m}: chronyd did not read {line:?}: {parsed}"
            );
        }
    }
    // cloud-init's ntp module would rewrite the file: it must not be used.
    assert!(r.configs["master"].get("ntp").is_none());
}

#[test]
fn exports_pass_exportfs_and_go_to_the_subnet_only() {
    // Under /srv: an export root in /tmp is refused (wiped at every boot),
    // and one under the checkout may hold a space, which export_root refuses.
    std::fs::create_dir_all("/srv").expect("mkdir /srv");
    let data = tempfile::tempdir_in("/srv").expect("tmp");
    let r = roots(&EXAMPLE.replace(
        "export_root: /data",
        &format!("export_root: {}", data.path().display()),
    ));
    let exports = r.roots["nfs"].join("etc/exports");
    let script = format!(
        "mount --bind {} /etc/exports && mount -t tmpfs tmpfs /var/lib/nfs && exportfs -ra && exportfs -v",
        common::shq(&exports)
    );
    let o = run(
        "unshare",
        &["--mount", "--propagation", "private", "bash", "-c", &script],
    );
    let (out, err) = text(&o);
    assert!(o.status.success() && err.is_empty(), "{out}{err}");
    // exportfs -v wraps long paths onto a second line.
    let line = out.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        line.starts_with(&data.path().display().to_string()),
        "{out}"
    );
    assert!(
        line.contains("172.20.0.0/20(")
            && line.contains("rw")
            && line.contains("sync")
            && line.contains("no_subtree_check"),
        "{out}"
    );
    assert_eq!(
        line.matches("(").count(),
        1,
        "exported to more than the subnet: {out}"
    );
}

#[test]
fn nfs_script_builds_the_guides_layout_with_owners() {
    let r = roots(&EXAMPLE.replace("validator_clients: 1", "validator_clients: 2"));
    let script = std::fs::read_to_string(r.roots["nfs"].join("usr/local/sbin/microseed-nfs"))
        .expect("script");
    let data = tempfile::tempdir().expect("tmp");
    let bin = tempfile::tempdir().expect("tmp");
    // systemctl and exportfs are recorded, not run; chown is real (we are root).
    for fake in ["systemctl", "exportfs"] {
        let p = bin.path().join(fake);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\necho {fake} \"$@\" >> {}\n",
                common::shq(bin.path().join("calls"))
            ),
        )
        .expect("fake");
        common::make_executable(&p);
    }
    let script = script.replace("root='/data'", &format!("root='{}'", data.path().display()));
    let o = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.path().display()),
        )
        .output()
        .expect("bash");
    assert!(o.status.success(), "{:?}", text(&o));
    for d in [
        "prysm/beacon",
        "prysm/validator-client-1",
        "prysm/wallet-1",
        "prysm/validator-client-2",
        "prysm/wallet-2",
    ] {
        let o = run(
            "stat",
            &["-c", "%u:%g", data.path().join(d).to_str().expect("utf8")],
        );
        assert_eq!(text(&o).0.trim(), "1001:2000", "{d}");
    }
    let calls = std::fs::read_to_string(bin.path().join("calls")).expect("calls");
    assert!(
        calls.contains("exportfs -ra")
            && calls.contains("systemctl enable nfs-kernel-server")
            && calls.contains("systemctl restart nfs-kernel-server"),
        "{calls}"
    );
}

/// The ufw commands of a machine's firewall script, each run with --dry-run
/// in a private network namespace.
pub(crate) fn ufw_dry_run(root: &Path) -> String {
    // ufw takes a file lock shared by every network namespace: one at a time.
    static UFW: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = UFW.lock().unwrap_or_else(|e| e.into_inner());
    let script =
        std::fs::read_to_string(root.join("usr/local/sbin/microseed-firewall")).expect("firewall");
    let dry: String = script
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            match l.trim_start().strip_prefix("ufw ") {
                Some(rest) => format!("{indent}ufw --dry-run {rest}\n"),
                None => format!("{l}\n"),
            }
        })
        .collect();
    // `reset` backs up /etc/ufw even with --dry-run: give ufw a private copy.
    let etc = tempfile::tempdir().expect("tmp");
    let prelude = format!(
        "cp -a /etc/ufw/. {0}/ && mount --bind {0} /etc/ufw\n",
        common::shq(etc.path())
    );
    let o = run(
        "unshare",
        &[
            "--net",
            "--mount",
            "--propagation",
            "private",
            "bash",
            "-c",
            &format!("{prelude}{dry}"),
        ],
    );
    assert!(o.status.success(), "ufw rejected a command: {:?}", text(&o));
    script
}

pub(crate) fn allow_lines(script: &str) -> Vec<&str> {
    script
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("ufw allow "))
        .collect()
}

/// Runs a seed script with a stand-in `ufw` that records its arguments;
/// MICROSEED_STATE is `state`. Returns the recorded ufw calls.
fn ufw_calls(script: &Path, state: &Path) -> String {
    let t = tempfile::tempdir().expect("tmp");
    let fake = t.path().join("ufw");
    std::fs::write(&fake, "#!/bin/sh\necho \"ufw $*\" >>\"$UFW_CALLS\"\n").expect("fake ufw");
    common::make_executable(&fake);
    let calls = t.path().join("calls");
    let o = Command::new("bash")
        .arg(script)
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", t.path().display()),
        )
        .env("UFW_CALLS", &calls)
        .env("MICROSEED_STATE", state)
        .output()
        .expect("bash");
    assert!(o.status.success(), "{:?}", text(&o));
    std::fs::read_to_string(calls).unwrap_or_default()
}

#[test]
fn every_ufw_command_passes_dry_run_and_rules_match_the_role() {
    let r = roots(EXAMPLE);
    let nfs = ufw_dry_run(&r.roots["nfs"]);
    assert_eq!(
        allow_lines(&nfs),
        [
            "ufw allow proto tcp from any to any port 22 comment 'ssh'",
            "ufw allow proto tcp from 172.20.0.0/20 to any port 2049 comment 'NFSv4'",
        ]
    );
    for m in ["master", "worker-1"] {
        let s = ufw_dry_run(&r.roots[m]);
        let allows = allow_lines(&s);
        for port in [
            "16443", "10250", "10255", "25000", "12379", "10257", "10259", "19001",
        ] {
            let want = format!("ufw allow proto tcp from 172.20.0.0/20 to any port {port} ");
            assert!(
                allows.iter().any(|a| a.starts_with(&want)),
                "{m}: {port} not open to the subnet"
            );
        }
        assert!(
            allows
                .iter()
                .any(|a| a.starts_with("ufw allow proto udp from 172.20.0.0/20 to any port 4789")),
            "{m}: Calico VXLAN"
        );
        assert!(
            allows
                .iter()
                .any(|a| a.starts_with("ufw allow proto udp from any to any port 12000")),
            "{m}"
        );
        assert!(
            allows
                .iter()
                .any(|a| a.starts_with("ufw allow proto tcp from any to any port 13000")),
            "{m}"
        );
        assert!(
            !allows.iter().any(|a| a.contains("2049")),
            "{m} must not open NFS"
        );
        assert!(
            s.contains("ufw default deny incoming") && s.contains("ufw default allow outgoing")
        );
    }
}

#[test]
fn ssh_port_is_opened_before_sshd_moves() {
    let r = roots(&EXAMPLE.replace("port: 22", "port: 2222").replace(
        "password_auth: false",
        "password_auth: false\n  allow_from: 192.168.1.0/24",
    ));
    for (m, root) in &r.roots {
        let fw = ufw_dry_run(root);
        let rule = fw
            .find("ufw allow proto tcp from 192.168.1.0/24 to any port 2222")
            .unwrap_or_else(|| panic!("{m}: {fw}"));
        let enable = fw.find("ufw --force enable").expect("enable");
        assert!(rule < enable, "{m}: ufw is enabled before the ssh rule");
        // sshd still listens on 22 until the ssh step has moved it: 22
        // stays open from the same sources until then, and only then.
        let keep22 =
            "ufw allow proto tcp from 192.168.1.0/24 to any port 22 comment ssh until moved";
        let state = tempfile::tempdir().expect("state");
        let script = root.join("usr/local/sbin/microseed-firewall");
        let calls = ufw_calls(&script, state.path());
        let at = calls
            .find(keep22)
            .unwrap_or_else(|| panic!("{m}: 22 closed before sshd moved: {calls}"));
        assert!(
            at < calls.find("ufw --force enable").expect("enable"),
            "{m}: {calls}"
        );
        std::fs::create_dir_all(state.path().join("done")).expect("done");
        std::fs::write(state.path().join("done/ssh"), "x").expect("done/ssh");
        let calls = ufw_calls(&script, state.path());
        assert!(
            !calls.contains("port 22 "),
            "{m}: 22 reopened after the move: {calls}"
        );
        let steps = std::fs::read_to_string(root.join("etc/microseed/steps")).expect("steps");
        assert!(
            steps.lines().any(|l| l.starts_with("ssh|firewall|")),
            "{m}: sshd may move before the firewall allows the port: {steps}"
        );
        let staged = std::fs::read_to_string(root.join("etc/microseed/sshd.conf")).expect("sshd");
        assert!(
            staged.contains("Port 2222\n")
                && staged.contains("PermitRootLogin no\n")
                && staged.contains("PasswordAuthentication no\n")
        );
        // The live drop-in only appears when microseed-ssh runs.
        assert!(!root.join("etc/ssh/sshd_config.d").exists());
        // sshd itself accepts the drop-in as a configuration.
        let key = r.s.dir.path().join(format!("hostkey-{m}"));
        if !key.exists() {
            let o = run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-f",
                    key.to_str().expect("utf8"),
                ],
            );
            assert!(o.status.success());
        }
        std::fs::create_dir_all("/run/sshd").expect("privsep dir");
        let conf = root.join("etc/microseed/sshd.conf");
        let o = run(
            "/usr/sbin/sshd",
            &[
                "-t",
                "-f",
                conf.to_str().expect("utf8"),
                "-h",
                key.to_str().expect("utf8"),
            ],
        );
        assert!(o.status.success(), "{m}: sshd -t: {:?}", text(&o));
    }
}

#[test]
fn master_token_is_registered_off_process_arguments_with_a_daily_timer() {
    let r = roots(EXAMPLE);
    let m = &r.roots["master"];
    let token =
        std::fs::read_to_string(m.join("usr/local/sbin/microseed-token")).expect("token script");
    // No external command ever gets the token as an argument.
    assert!(
        !token
            .lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("add-node")),
        "{token}"
    );
    let timer =
        std::fs::read_to_string(m.join("etc/systemd/system/microseed-token.timer")).expect("timer");
    assert!(timer.contains("OnCalendar=daily") && timer.contains("Persistent=true"));
    let runcmd = serde_json::to_string(&r.configs["master"]["runcmd"]).expect("json");
    assert!(runcmd.contains("microseed-token.timer"), "{runcmd}");
    assert!(
        !m.join("etc/microk8s.yaml").exists(),
        "1.20 has no launch configuration"
    );
    let r = roots(&EXAMPLE.replace("channel: 1.20/stable", "channel: 1.28/stable"));
    let launch = common::pyyaml(&r.roots["master"].join("etc/microk8s.yaml"));
    assert_eq!(launch["persistentClusterToken"], TOKEN);
}

#[test]
fn step_units_are_enabled_before_anything_long_or_fallible_runs() {
    let r = roots(EXAMPLE);
    for (m, cc) in &r.configs {
        let runcmd = cc["runcmd"].as_array().expect("runcmd");
        // set -e, daemon-reload, enable every step unit, start them.
        assert_eq!(
            runcmd[1],
            serde_json::json!(["systemctl", "daemon-reload"]),
            "{m}"
        );
        let enable = runcmd[2].as_array().expect("enable");
        assert_eq!(
            enable[..2],
            [serde_json::json!("systemctl"), serde_json::json!("enable")]
        );
        let list = std::fs::read_to_string(r.roots[m].join("etc/microseed/steps")).expect("steps");
        for line in list
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = line.split('|').next().expect("name");
            let unit = format!("microseed-{name}.service");
            assert!(
                enable.contains(&serde_json::json!(unit)),
                "{m}: {unit} not enabled"
            );
            assert!(
                r.roots[m].join("etc/systemd/system").join(&unit).exists(),
                "{m}: {unit}"
            );
        }
        // apt runs in a retried step, not in cloud-init's own module.
        assert_eq!(cc["package_upgrade"], false, "{m}");
        assert!(cc.get("packages").is_none(), "{m}");
    }
}

/// Ubuntu's needrestart restarts services after non-interactive apt runs
/// (LP #2059337, cloud-init#5109): a join restarted midway leaves its lock
/// behind. microseed's apt runs ask it to list only: the packages script
/// and the step runner (so every step) set NEEDRESTART_MODE=l, which the
/// real needrestart reads ahead of its configuration.
#[test]
fn apt_in_the_steps_runs_with_needrestart_in_list_mode() {
    let r = roots(EXAMPLE);
    let t = tempfile::tempdir().expect("tmp");
    let calls = t.path().join("calls");
    for (name, body) in [
        (
            "apt-get",
            "echo \"NEEDRESTART_MODE=${NEEDRESTART_MODE:-unset} apt-get $*\" >>\"$CALLS\"",
        ),
        ("dpkg", "exit 0"),
    ] {
        let f = t.path().join(name);
        std::fs::write(&f, format!("#!/bin/sh\n{body}\n")).expect("stub");
        common::make_executable(&f);
    }
    for (m, root) in &r.roots {
        let _ = std::fs::remove_file(&calls);
        let o = Command::new("bash")
            .arg(root.join("usr/local/sbin/microseed-packages"))
            .env_remove("NEEDRESTART_MODE")
            .env("PATH", format!("{}:/usr/bin:/bin", t.path().display()))
            .env("CALLS", &calls)
            .output()
            .expect("bash");
        assert!(o.status.success(), "{m}: {:?}", text(&o));
        let c = std::fs::read_to_string(&calls).expect("apt calls");
        assert!(
            c.contains(" upgrade") && c.contains(" install "),
            "{m}: {c}"
        );
        assert!(
            c.lines()
                .all(|l| l.starts_with("NEEDRESTART_MODE=l apt-get ")),
            "{m}: {c}"
        );
        // Every step, whatever it runs.
        let o = Command::new("bash")
            .arg(root.join("usr/local/sbin/microseed-step"))
            .args(["probe", "sh", "-c", "echo mode=${NEEDRESTART_MODE:-unset}"])
            .env_remove("NEEDRESTART_MODE")
            .env("MICROSEED_STATE", t.path().join(format!("state-{m}")))
            .env("MICROSEED_RUN", t.path().join(format!("run-{m}")))
            .output()
            .expect("step");
        assert!(text(&o).0.contains("mode=l\n"), "{m}: {:?}", text(&o));
    }
    // needrestart takes the mode from its environment over its own
    // configuration: a configuration naming no valid mode is not used.
    let conf = t.path().join("needrestart.conf");
    let base = std::fs::read_to_string("/etc/needrestart/needrestart.conf")
        .expect("needrestart installed (apt-get install needrestart)");
    std::fs::write(&conf, format!("{base}\n$nrconf{{restart}} = 'bogus';\n")).expect("conf");
    let nr = |mode: Option<&str>| {
        let mut c = Command::new("/usr/sbin/needrestart");
        c.args(["-b", "-c", conf.to_str().expect("utf8")]);
        c.env_remove("NEEDRESTART_MODE");
        if let Some(m) = mode {
            c.env("NEEDRESTART_MODE", m);
        }
        c.output().expect("needrestart")
    };
    let o = nr(None);
    assert!(
        !o.status.success() && text(&o).1.contains("Unknown restart option 'bogus'"),
        "{:?}",
        text(&o)
    );
    let o = nr(Some("l"));
    assert!(
        o.status.success() && !text(&o).1.contains("Unknown restart option"),
        "{:?}",
        text(&o)
    );
}

/// Runs 24.04's microseed-ssh (socket-activated sshd) as root in private
/// mount and network namespaces, over an overlay of this machine's /etc
/// (its real sshd checks the drop-in), with a stand-in `systemctl` that
/// records its calls and, on `restart ssh.socket`, listens where a socket
/// would: on the port `sshd -T` reports when `follows` is true (as Ubuntu's
/// generator makes ssh.socket follow sshd_config at daemon-reload), else on
/// 22 (a socket that missed the change). Returns (exit code, systemctl
/// calls, whether the drop-in stayed).
fn noble_ssh_switch(script: &Path, staged: &Path, follows: bool) -> (i32, String, bool) {
    let t = tempfile::tempdir().expect("tmp");
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let fake = bin.join("systemctl");
    std::fs::write(
        &fake,
        format!(
            r#"#!/bin/bash
echo "$*" >>"$CALLS"
case "$*" in
"is-enabled --quiet ssh.socket") exit 0 ;;
"restart ssh.socket")
    [ -f "$T/listener.pid" ] && kill "$(cat "$T/listener.pid")" 2>/dev/null
    port=22
    {follow}
    python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(); time.sleep(60)' "$port" &
    echo $! >"$T/listener.pid"
    # systemd's restart returns once the socket listens: so does this one
    # (a fixed sleep lost the race on a loaded machine).
    for _ in $(seq 100); do
        [ -n "$(ss -Htln "sport = :$port")" ] && break
        sleep 0.1
    done ;;
esac
exit 0
"#,
            follow = if follows {
                "port=$(/usr/sbin/sshd -T | awk '$1 == \"port\" {print $2; exit}')"
            } else {
                ""
            }
        ),
    )
    .expect("fake systemctl");
    common::make_executable(&fake);
    let ufw = bin.join("ufw");
    std::fs::write(&ufw, "#!/bin/sh\necho \"ufw $*\" >>\"$CALLS\"\n").expect("fake ufw");
    common::make_executable(&ufw);
    let o = common::unshare(&[
        "--mount",
        "--net",
        "--propagation",
        "private",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child",
        "bash",
        "-c",
        r#"set -u
T=$1; export T CALLS=$T/calls
ip link set lo up
mkdir -p "$T/upper" "$T/work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$T/upper,workdir=$T/work" /etc
# Only microseed's drop-in: this machine's own would not be Ubuntu's.
rm -rf /etc/ssh/sshd_config.d && mkdir -p /etc/ssh/sshd_config.d /etc/microseed
install -m 0600 "$3" /etc/microseed/sshd.conf
rc=0
PATH=$T/bin:$PATH bash "$2" >"$T/out" 2>&1 || rc=$?
[ -f /etc/ssh/sshd_config.d/10-microseed.conf ] && echo DROPIN-KEPT
[ -f "$T/listener.pid" ] && kill "$(cat "$T/listener.pid")" 2>/dev/null
cat "$T/out" >&2
exit "$rc""#,
        "x",
        t.path().to_str().expect("utf8"),
        script.to_str().expect("utf8"),
        staged.to_str().expect("utf8"),
    ])
    .output()
    .expect("unshare (util-linux)");
    let calls = std::fs::read_to_string(t.path().join("calls")).unwrap_or_default();
    (
        o.status.code().unwrap_or(-1),
        format!("{calls}--- stderr\n{}", text(&o).1),
        text(&o).0.contains("DROPIN-KEPT"),
    )
}

/// On 24.04 a new port reaches ssh.socket only through daemon-reload and a
/// restart of the socket (with ssh.service stopped first, or the socket
/// refuses to start); a socket that then does not listen on the new port
/// means rollback, never a machine reachable on no port.
#[test]
fn noble_ssh_moves_the_socket_and_rolls_back_when_it_does_not_listen() {
    let r = roots(include_str!("../examples/eth2-staking-24.04/cluster.yaml"));
    let root = &r.roots["nfs"];
    let script = root.join("usr/local/sbin/microseed-ssh");
    let staged = root.join("etc/microseed/sshd.conf");
    let (rc, calls, kept) = noble_ssh_switch(&script, &staged, true);
    assert_eq!(rc, 0, "{calls}");
    assert!(kept, "{calls}");
    let order: Vec<&str> = calls.lines().take(4).collect();
    assert_eq!(
        order,
        [
            "is-enabled --quiet ssh.socket",
            "daemon-reload",
            "stop ssh.service",
            "restart ssh.socket"
        ],
        "{calls}"
    );
    // 22 (kept open by microseed-firewall) is closed only once the socket
    // listens on 2222.
    let close = "ufw delete allow proto tcp from any to any port 22 comment ssh until moved";
    assert_eq!(calls.lines().nth(4), Some(close), "{calls}");
    let (rc, calls, kept) = noble_ssh_switch(&script, &staged, false);
    assert_eq!(rc, 1, "{calls}");
    assert!(!kept, "the drop-in stayed with nothing on 2222: {calls}");
    assert!(
        calls.contains("ssh.socket is not listening on 2222; keeping the previous settings"),
        "{calls}"
    );
    assert_eq!(
        calls.matches("restart ssh.socket").count(),
        2,
        "the socket was not switched back: {calls}"
    );
    // Rolled back to 22: 22 stays allowed (reopened if anything closed it).
    assert!(!calls.contains("ufw delete"), "{calls}");
    assert!(
        calls.contains("ufw allow proto tcp from any to any port 22 comment ssh until moved"),
        "{calls}"
    );
}

/// A loop device over a sparse file, detached when dropped.
struct Loop {
    dev: String,
    _file: tempfile::NamedTempFile,
}

impl Loop {
    fn new(mib: u64) -> Loop {
        let file = tempfile::NamedTempFile::new().expect("tmp");
        file.as_file().set_len(mib << 20).expect("size");
        let o = run(
            "losetup",
            &["-f", "--show", file.path().to_str().expect("utf8")],
        );
        assert!(o.status.success(), "losetup: {:?}", text(&o));
        Loop {
            dev: text(&o).0.trim().to_string(),
            _file: file,
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

/// The NFS server of a cluster whose export is a data disk, its first-boot
/// script run the way a boot runs it, each "boot" in its own mount
/// namespace: /etc an overlay whose upper layer is that installed system's
/// (a new one is a reinstall, whose /etc/fstab knows nothing of the data
/// disk), the real /etc/exports bound in, the real exportfs asked what it
/// exports afterwards. Disks are loop devices; a stand-in udevadm
/// gives them an ID_SERIAL (a loop device has none), blkid, mkfs.ext4,
/// mount and findmnt are real; systemctl and the script's exportfs are
/// recorded.
struct DataDiskRig {
    _s: tempfile::TempDir,
    data: tempfile::TempDir,
    script: PathBuf,
    exports: PathBuf,
    bin: PathBuf,
    work: PathBuf,
}

const DATA_SERIAL: &str = "WDC_WD40EFRX_WD-WCC7K0TESTSER";

impl DataDiskRig {
    fn new() -> DataDiskRig {
        // Under /srv: an export root in /tmp is refused.
        std::fs::create_dir_all("/srv").expect("mkdir /srv");
        let data = tempfile::tempdir_in("/srv").expect("tmp");
        let cluster = EXAMPLE
            .replace(
                "export_root: /data",
                &format!(
                    "export_root: {}\n  data_disk: {{path: /dev/disk/by-id/ata-{DATA_SERIAL}}}",
                    data.path().display()
                ),
            )
            .replace(
                "    ip: 172.20.10.10",
                "    ip: 172.20.10.10\n    disk: {serial: QEMU_HARDDISK_QM00001}",
            );
        let r = roots(&cluster);
        let s = tempfile::tempdir().expect("tmp");
        let root = &r.roots["nfs"];
        let script = s.path().join("microseed-nfs");
        let exports = s.path().join("exports");
        std::fs::copy(root.join("usr/local/sbin/microseed-nfs"), &script).expect("script");
        std::fs::copy(root.join("etc/exports"), &exports).expect("exports");
        let o = run("shellcheck", &[script.to_str().expect("utf8")]);
        assert!(o.status.success(), "{}", text(&o).0);
        let bin = s.path().join("bin");
        let work = s.path().join("work");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::create_dir_all(&work).expect("work");
        for fake in ["systemctl", "exportfs"] {
            let p = bin.join(fake);
            std::fs::write(
                &p,
                format!(
                    "#!/bin/sh\necho {fake} \"$@\" >> {}\n",
                    common::shq(s.path().join("calls"))
                ),
            )
            .expect("fake");
            common::make_executable(&p);
        }
        DataDiskRig {
            _s: s,
            data,
            script,
            exports,
            bin,
            work,
        }
    }

    /// udevadm answers ID_SERIAL `serial` for `dev` only, nothing for the rest.
    fn plug(&self, disks: &[(&str, &str)]) {
        let mut cases = String::new();
        for (dev, serial) in disks {
            cases.push_str(&format!(
                "*--name={dev}) echo DEVNAME={dev}; echo ID_SERIAL={serial} ;;\n"
            ));
        }
        let p = self.bin.join("udevadm");
        std::fs::write(
            &p,
            format!("#!/bin/sh\ncase \"$*\" in\nsettle*) exit 0 ;;\n{cases}esac\n"),
        )
        .expect("udevadm");
        common::make_executable(&p);
    }

    /// One boot of the installed system `install` (its /etc): the script's
    /// exit code and everything the boot printed.
    fn boot(&self, install: &str) -> (i32, String) {
        let upper = self.work.join(install);
        let wk = self.work.join(format!("{install}.work"));
        std::fs::create_dir_all(upper.join("up")).expect("upper");
        std::fs::create_dir_all(&wk).expect("work");
        let root = self.data.path().display().to_string();
        let wrapper = format!(
            r#"set -u
mount -t overlay overlay -o lowerdir=/etc,upperdir={up},workdir={wk} /etc
mount --bind {exports} /etc/exports
mount -t tmpfs tmpfs /var/lib/nfs
rc=0
PATH={bin}:$PATH MICROSEED_DATA_DISK_WAIT=0 bash {script} || rc=$?
echo "script rc=$rc"
/usr/sbin/exportfs -ra; echo "exported after: $(/usr/sbin/exportfs -v | tr -s ' \n\t' ' ')"
echo "fstab: $(grep -v '^#' /etc/fstab | grep {root_q} || true)"
echo "mounted: $(findmnt -n -o SOURCE --mountpoint {root_q} || true)"
[ -f {root_q}/prysm/keep ] && echo "keep: $(cat {root_q}/prysm/keep)"
[ "$rc" = 0 ] && mountpoint -q {root_q} && echo kept-through-reinstall > {root_q}/prysm/keep
exit "$rc"
"#,
            up = common::shq(upper.join("up")),
            wk = common::shq(&wk),
            exports = common::shq(&self.exports),
            bin = common::shq(&self.bin),
            script = common::shq(&self.script),
            root_q = common::shq(&root),
        );
        let o = run(
            "unshare",
            &[
                "--mount",
                "--propagation",
                "private",
                "bash",
                "-c",
                &wrapper,
            ],
        );
        let (out, err) = text(&o);
        (
            o.status.code().unwrap_or(-1),
            format!("{out}--- stderr\n{err}"),
        )
    }
}

fn blkid_uuid(dev: &str) -> String {
    text(&run("blkid", &["-p", "-o", "value", "-s", "UUID", dev]))
        .0
        .trim()
        .to_string()
}

/// The data disk is formatted on the first boot of the first install only:
/// a reinstall (a new /etc, the same disk) mounts the ext4 from before by
/// its UUID, with the file written on it; the other disk is never touched.
#[test]
fn nfs_data_disk_is_formatted_once_and_kept_through_a_reinstall() {
    let rig = DataDiskRig::new();
    let disk = Loop::new(64);
    let other = Loop::new(64);
    rig.plug(&[
        (&other.dev, "QEMU_HARDDISK_QM00001"),
        (&disk.dev, DATA_SERIAL),
    ]);
    let root = rig.data.path().display().to_string();

    let (rc, out) = rig.boot("install-1");
    assert_eq!(rc, 0, "{out}");
    let uuid = blkid_uuid(&disk.dev);
    assert!(!uuid.is_empty(), "no filesystem made: {out}");
    assert!(out.contains("making an ext4 on it"), "{out}");
    assert!(
        out.contains(&format!("fstab: UUID={uuid} {root} ext4 defaults,nofail,")),
        "{out}"
    );
    assert!(out.contains(&format!("mounted: {}", disk.dev)), "{out}");
    // exportfs takes the line and its `mp` (mountd then serves the export
    // only while the path is a mount point, exports(5)).
    assert!(
        out.contains(&format!("exported after: {root} 172.20.0.0/20("))
            && out.contains(",mountpoint,"),
        "{out}"
    );
    assert!(out.ends_with("--- stderr\n"), "{out}");
    // The other disk was never touched.
    assert!(blkid_uuid(&other.dev).is_empty());

    // Again on the same install (the step retried): nothing changes.
    let (rc, out) = rig.boot("install-1");
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("already holds an ext4"), "{out}");
    assert!(out.contains("keep: kept-through-reinstall"), "{out}");
    assert_eq!(blkid_uuid(&disk.dev), uuid);

    // A reinstall: a new root filesystem, whose fstab has no data disk.
    let (rc, out) = rig.boot("install-2");
    assert_eq!(rc, 0, "{out}");
    assert!(!out.contains("making an ext4"), "formatted again: {out}");
    assert!(out.contains("keep: kept-through-reinstall"), "{out}");
    assert_eq!(blkid_uuid(&disk.dev), uuid);
    assert!(
        out.contains(&format!("fstab: UUID={uuid} {root} ")),
        "{out}"
    );
}

/// A disk that holds anything but an ext4 of its own (here a partition
/// table) stops the step, says so, and is left as it was; so is a disk
/// that is not there, or a serial two disks match.
#[test]
fn nfs_data_disk_holding_something_else_or_missing_stops_the_step_untouched() {
    let rig = DataDiskRig::new();
    let disk = Loop::new(64);
    let o = Command::new("sfdisk")
        .args(["-q", &disk.dev])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("stdin")
                .write_all(b"label: gpt\n,,L\n")?;
            c.wait_with_output()
        })
        .expect("sfdisk");
    assert!(o.status.success(), "{:?}", text(&o));
    let before = text(&run("blkid", &["-p", "-o", "export", &disk.dev])).0;
    assert!(before.contains("PTTYPE=gpt"), "{before}");

    rig.plug(&[(&disk.dev, DATA_SERIAL)]);
    let (rc, out) = rig.boot("install-1");
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains(&format!(
            "the data disk {} holds a gpt partition table, not an ext4 of its own and not nothing: it is left untouched",
            disk.dev
        )),
        "{out}"
    );
    assert!(out.contains("fstab: \n"), "{out}");
    assert!(out.contains("mounted: \n"), "{out}");
    assert_eq!(
        text(&run("blkid", &["-p", "-o", "export", &disk.dev])).0,
        before
    );

    rig.plug(&[]);
    let (rc, out) = rig.boot("install-1");
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("no disk's ID_SERIAL matches the data disk's serial"),
        "{out}"
    );

    let twin = Loop::new(8);
    rig.plug(&[(&disk.dev, DATA_SERIAL), (&twin.dev, DATA_SERIAL)]);
    let (rc, out) = rig.boot("install-1");
    assert_eq!(rc, 1, "{out}");
    assert!(
        out.contains("2 disks match the data disk's serial"),
        "{out}"
    );
    assert!(blkid_uuid(&twin.dev).is_empty());
}
