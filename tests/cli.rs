//! The command line a user meets first: init, help, completions, exit codes.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::{bin, text};

#[test]
fn init_writes_the_reference_cluster_and_private_secrets() {
    let d = tempfile::tempdir().expect("tmp");
    let key = d.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL me@laptop\n").expect("key");
    let dir = d.path().join("mycluster");
    let o = bin()
        .arg("init")
        .arg(&dir)
        .arg("--ssh-key")
        .arg(&key)
        .output()
        .expect("run");
    assert!(o.status.success(), "{:?}", text(&o));
    let mode = std::fs::metadata(dir.join("secrets.yaml"))
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let cluster = std::fs::read_to_string(dir.join("cluster.yaml")).expect("read");
    assert!(cluster.contains("me@laptop"));
    assert!(
        cluster.contains("172.20.10.10")
            && cluster.contains("172.20.10.11")
            && cluster.contains("172.20.10.12")
    );
    let o = bin()
        .arg("check")
        .arg(dir.join("cluster.yaml"))
        .output()
        .expect("run");
    assert!(o.status.success(), "{:?}", text(&o));
    // The example's pools mix Google's smeared servers with stepping ones
    // (check warns there); a new cluster file's do not.
    assert!(
        cluster.contains("  pools: [us.pool.ntp.org, ntp.ubuntu.com]\n"),
        "{cluster}"
    );
    assert!(!text(&o).1.contains("ntp.pools"), "{:?}", text(&o));
    // A second init never overwrites.
    let before = std::fs::read(dir.join("secrets.yaml")).expect("read");
    let o = bin()
        .arg("init")
        .arg(&dir)
        .arg("--ssh-key")
        .arg(&key)
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("already exists"));
    assert_eq!(
        before,
        std::fs::read(dir.join("secrets.yaml")).expect("read")
    );
}

#[test]
fn init_without_a_key_says_check_will_fail_until_one_is_added() {
    let d = tempfile::tempdir().expect("tmp");
    let o = bin()
        .env("HOME", d.path())
        .arg("init")
        .arg(d.path().join("c"))
        .output()
        .expect("run");
    assert!(o.status.success());
    assert!(text(&o).1.contains("no ssh public key found"));
    let o = bin()
        .arg("check")
        .arg(d.path().join("c/cluster.yaml"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("unreachable"));
}

#[test]
fn two_inits_make_different_join_tokens() {
    let d = tempfile::tempdir().expect("tmp");
    let mut tokens = Vec::new();
    for n in ["a", "b"] {
        let o = bin()
            .env("HOME", d.path())
            .arg("init")
            .arg(d.path().join(n))
            .output()
            .expect("run");
        assert!(o.status.success());
        tokens.push(std::fs::read_to_string(d.path().join(n).join("secrets.yaml")).expect("read"));
    }
    assert_ne!(tokens[0], tokens[1]);
}

#[test]
fn help_shows_examples_and_exit_codes() {
    let o = bin().arg("--help").output().expect("run");
    let (out, _) = text(&o);
    assert!(
        out.contains("Examples:") && out.contains("microseed build mycluster/cluster.yaml -o out")
    );
    assert!(out.contains("Exit codes"));
    let o = bin().args(["build", "--help"]).output().expect("run");
    assert!(text(&o).0.contains("--machine worker-1"));
}

#[test]
fn completions_are_generated_for_common_shells() {
    for shell in ["bash", "zsh", "fish"] {
        let o = bin().args(["completions", shell]).output().expect("run");
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("microseed"),
            "{shell}"
        );
    }
    let o = bin().args(["completions", "bash"]).output().expect("run");
    let f = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(f.path(), &o.stdout).expect("write");
    let o = common::run("bash", &["-n", f.path().to_str().expect("utf8")]);
    assert!(o.status.success(), "bash completion does not parse");
}

#[test]
fn missing_cluster_file_is_an_input_error() {
    let o = bin()
        .args(["check", "/nonexistent/cluster.yaml"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("/nonexistent/cluster.yaml: error: cannot read the cluster file")
    );
}

#[test]
fn offline_status_is_refused_before_any_ssh_is_tried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = bin()
        .args(["--offline", "status", "examples/vm-lab/cluster.yaml"])
        .env("PATH", dir.path()) // no ssh anywhere: a try would fail otherwise
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(
        text(&o)
            .1
            .contains("--offline: error: status reaches every machine over ssh"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn build_json_lists_every_file_with_its_hash() {
    let s = common::Scratch::example();
    let o = bin()
        .arg("--json")
        .arg("build")
        .arg(s.cluster())
        .arg("-o")
        .arg(s.out())
        .output()
        .expect("run");
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], true);
    assert_eq!(v["files"].as_array().expect("files").len(), 12);
    assert_eq!(v["files"][0]["sha256"].as_str().expect("sha").len(), 64);
}

#[test]
fn init_with_a_release_writes_that_release_and_its_default_channel() {
    let d = tempfile::tempdir().expect("tmp");
    let key = d.path().join("id.pub");
    std::fs::write(&key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL me@laptop\n").expect("key");
    for (release, channel) in [
        ("20.04", "1.20/stable"),
        ("22.04", "1.35/stable"),
        ("24.04", "1.35/stable"),
    ] {
        let dir = d.path().join(release);
        let o = bin()
            .arg("init")
            .arg(&dir)
            .arg("--release")
            .arg(release)
            .arg("--ssh-key")
            .arg(&key)
            .output()
            .expect("run");
        assert!(o.status.success(), "{:?}", text(&o));
        let c = common::pyyaml(&dir.join("cluster.yaml"));
        assert_eq!(c["release"], release);
        assert_eq!(c["microk8s"]["channel"], channel);
        // The rest is the guide's cluster, comments included.
        let body = std::fs::read_to_string(dir.join("cluster.yaml")).expect("read");
        assert!(
            body.contains("# Replace with your own public key"),
            "{body}"
        );
        let o = bin()
            .arg("check")
            .arg(dir.join("cluster.yaml"))
            .output()
            .expect("run");
        assert!(o.status.success(), "{release}: {:?}", text(&o));
    }
}

#[test]
fn init_with_an_unknown_release_exits_2_and_writes_nothing() {
    let d = tempfile::tempdir().expect("tmp");
    let o = bin()
        .env("HOME", d.path())
        .arg("init")
        .arg(d.path().join("c"))
        .arg("--release")
        .arg("18.04")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains("unknown release \"18.04\"; expected one of 20.04, 22.04, 24.04"),
        "{err}"
    );
    assert!(!d.path().join("c").exists());
}

/// A release profile is read only by the runs that use it, found by its
/// file name: a broken one in an overlay stops those runs (exit 1, naming
/// the file, nothing written) and no others.
#[test]
fn a_broken_overlay_release_fails_only_the_runs_that_use_it() {
    let s = common::Scratch::example();
    let profiles = s.dir.path().join("profiles");
    std::fs::create_dir_all(profiles.join("releases")).expect("mkdir");
    // A release file that does not parse: refused when used.
    std::fs::write(profiles.join("releases/site.yaml"), "release: [broken\n").expect("write");
    let run = |cmd: &[&str]| {
        bin()
            .env("HOME", s.dir.path())
            .arg("--profiles")
            .arg(&profiles)
            .args(cmd)
            .output()
            .expect("run")
    };
    let cluster = s.cluster();
    let cluster = cluster.to_str().expect("utf-8 path");
    let o = run(&["check", cluster]);
    assert!(
        o.status.success(),
        "20.04 does not read site.yaml: {:?}",
        text(&o)
    );
    let original = std::fs::read_to_string(cluster).expect("read");
    std::fs::write(
        cluster,
        original.replace("release: \"20.04\"", "release: site"),
    )
    .expect("write");
    let o = run(&["build", cluster, "-o", s.out().to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("releases/site.yaml"), "{:?}", text(&o));
    assert!(!s.out().exists(), "nothing written");
    // A command acting on every release meets it too.
    let cache = s.dir.path().join("cache");
    let o = run(&["iso", "list", "--cache-dir", cache.to_str().expect("utf-8")]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("releases/site.yaml"), "{:?}", text(&o));
}

#[test]
fn an_overlay_release_named_for_another_release_fails_every_run() {
    let s = common::Scratch::example();
    let profiles = s.dir.path().join("profiles");
    std::fs::create_dir_all(profiles.join("releases")).expect("mkdir");
    let focal = std::fs::read_to_string(common::root().join("profiles/releases/20.04.yaml"))
        .expect("shipped 20.04");
    // Once this replaced 20.04; found by file name, nothing would read it.
    std::fs::write(profiles.join("releases/site.yaml"), &focal).expect("write");
    let cluster = s.cluster();
    let o = bin()
        .env("HOME", s.dir.path())
        .arg("--profiles")
        .arg(&profiles)
        .args(["build", cluster.to_str().expect("utf-8")])
        .args(["-o", s.out().to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    let err = text(&o).1;
    assert!(
        err.contains(
            "releases/site.yaml: release: got \"20.04\"; expected \"site\", the file's name"
        ) && err.contains("rename it to releases/20.04.yaml"),
        "{err}"
    );
    assert!(!s.out().exists(), "nothing written");
}

#[test]
fn a_lost_secrets_file_is_not_replaced_quietly_for_a_cluster_built_before() {
    let s = common::Scratch::example();
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let sums = std::fs::read(s.out().join("SHA256SUMS")).expect("sums");
    let secrets = s.dir.path().join("secrets.yaml");
    std::fs::remove_file(&secrets).expect("rm secrets");

    // OUT/SHA256SUMS shows the cluster was built: no new token.
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for says in [
        "missing, but this cluster was built before",
        "SHA256SUMS exists",
        "ssh -p 22 ubuntu@172.20.10.11 sudo cat /etc/microseed/join-token",
        "--new-token",
    ] {
        assert!(err.contains(says), "no {says:?} in: {err}");
    }
    assert!(!secrets.exists(), "a secrets file was made");
    assert_eq!(
        std::fs::read(s.out().join("SHA256SUMS")).expect("sums"),
        sums,
        "the earlier output changed"
    );

    // known_hosts (from `status`) shows it too, whatever OUT is named.
    std::fs::write(s.dir.path().join("known_hosts"), "").expect("known_hosts");
    let o = bin()
        .arg("build")
        .arg(s.cluster())
        .arg("-o")
        .arg(s.dir.path().join("elsewhere"))
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("known_hosts exists"), "{err}");

    // On purpose: a new token, said so.
    let o = s.build(&["--new-token"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("with a new join token"), "{err}");
    let new = std::fs::read_to_string(&secrets).expect("new secrets");
    assert!(
        !new.contains(
            common::SECRETS
                .lines()
                .find(|l| l.starts_with("join_token"))
                .expect("token line")
        )
    );
}

#[test]
fn a_first_build_mints_its_token_without_asking() {
    let s = common::Scratch::example();
    std::fs::remove_file(s.dir.path().join("secrets.yaml")).expect("rm secrets");
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(s.dir.path().join("secrets.yaml").exists());
}

#[test]
fn render_json_is_an_object_holding_the_documents_exact_text() {
    let s = common::Scratch::example();
    let plain = bin()
        .args(["render"])
        .arg(s.cluster())
        .args(["worker-1", "network-config"])
        .output()
        .expect("run");
    assert!(plain.status.success(), "{}", text(&plain).1);
    let o = bin()
        .args(["--json", "render"])
        .arg(s.cluster())
        .args(["worker-1", "network-config"])
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("render --json is JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["machine"], "worker-1");
    assert_eq!(v["document"], "network-config");
    assert_eq!(v["text"].as_str().expect("text"), text(&plain).0);
}

#[test]
fn each_subcommands_help_offers_only_the_flags_it_takes() {
    let help = |args: &[&str]| {
        let o = bin().args(args).arg("--help").output().expect("run");
        assert!(o.status.success(), "{args:?}: {}", text(&o).1);
        text(&o).0
    };
    let status = help(&["status"]);
    assert!(
        !status.contains("--offline"),
        "status offers --offline: {status}"
    );
    assert!(!status.contains("--templates"), "{status}");
    assert!(
        status.contains("--json") && status.contains("--profiles"),
        "{status}"
    );
    for cmd in [&["serve"][..], &["verify"]] {
        let h = help(cmd);
        for flag in ["--offline", "--profiles", "--templates", "--strict"] {
            assert!(!h.contains(flag), "{cmd:?} offers {flag}: {h}");
        }
        assert!(h.contains("--json"), "{cmd:?}: {h}");
    }
    let completions = help(&["completions"]);
    assert!(!completions.contains("--json"), "{completions}");
    let build = help(&["build"]);
    for flag in [
        "--offline",
        "--profiles",
        "--templates",
        "--strict",
        "--json",
    ] {
        assert!(build.contains(flag), "build lacks {flag}: {build}");
    }
    assert!(help(&["iso", "fetch"]).contains("--offline"));
    assert!(!help(&["iso", "list"]).contains("--offline"));

    // A flag a subcommand does not take is refused by name, after it or
    // (for --offline and status) before it.
    let o = bin()
        .arg("status")
        .arg(common::root().join("examples/vm-lab/cluster.yaml"))
        .arg("--offline")
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("--offline"), "{:?}", text(&o));
}

#[test]
fn flags_count_before_or_after_the_subcommand() {
    let s = common::Scratch::example();
    for args in [
        vec![
            "--json".to_string(),
            "check".into(),
            s.cluster().display().to_string(),
        ],
        vec![
            "check".to_string(),
            s.cluster().display().to_string(),
            "--json".into(),
        ],
    ] {
        let o = bin().args(&args).output().expect("run");
        assert!(o.status.success(), "{args:?}: {}", text(&o).1);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["ok"], true, "{args:?}");
    }
}

#[test]
fn every_json_answer_is_one_object_with_ok() {
    let s = common::Scratch::example();
    let cluster = s.cluster().display().to_string();
    let out = s.out().display().to_string();
    let cache = s.dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    let cache = cache.display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["build", &cluster, "-o", &out, "--json"],
        vec!["check", &cluster, "--json"],
        vec!["verify", &out, "--json"],
        vec!["build", &cluster, "-o", &out, "--check", "--json"],
        vec!["render", &cluster, "master", "meta-data", "--json"],
        vec!["iso", "list", "--cache-dir", &cache, "--json"],
        // Bad input answers in the same shape.
        vec!["check", "/nonexistent/cluster.yaml", "--json"],
        vec!["verify", &cache, "--json"],
    ];
    for args in cases {
        let o = bin().args(&args).output().expect("run");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&o).0));
        assert!(v.is_object(), "{args:?}: {v}");
        assert_eq!(
            v["ok"].as_bool(),
            Some(o.status.success()),
            "{args:?}: `ok` disagrees with the exit code: {v}"
        );
    }
}

#[test]
fn completions_offer_the_clusters_machines_and_the_releases() {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::write(d.path().join("cluster.yaml"), common::EXAMPLE).expect("write");
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_microseed"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = d.path().join("microseed.bash");
    let o = bin().args(["completions", "bash"]).output().expect("run");
    std::fs::write(&script, &o.stdout).expect("write");
    // What bash offers after `--machine` and after `--release`.
    let complete = |words: &str, cword: usize| {
        let o = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; \
                 _microseed_with_machines microseed \"${{COMP_WORDS[COMP_CWORD]}}\" \
                 \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                common::shq(&script)
            ))
            .current_dir(d.path())
            .env("PATH", &path)
            .output()
            .expect("bash");
        assert!(o.status.success(), "{:?}", text(&o));
        text(&o).0
    };
    assert_eq!(
        complete("microseed build cluster.yaml -o out --machine ''", 6),
        "nfs\nmaster\nworker-1\n"
    );
    assert_eq!(
        complete("microseed status cluster.yaml --machine w", 4),
        "worker-1\n"
    );
    assert_eq!(
        complete("microseed init new --release ''", 4),
        "20.04\n22.04\n24.04\n"
    );
    // fish: the same through its own completion engine.
    let fish = d.path().join("microseed.fish");
    let o = bin().args(["completions", "fish"]).output().expect("run");
    std::fs::write(&fish, &o.stdout).expect("write");
    let o = std::process::Command::new("fish")
        .arg("-c")
        .arg(format!(
            "source {}; complete -C 'microseed build cluster.yaml --machine '",
            common::shq(&fish)
        ))
        .current_dir(d.path())
        .env("PATH", &path)
        .output()
        .expect("fish (scripts/deps/core.apt)");
    assert!(o.status.success(), "{:?}", text(&o));
    let mut got: Vec<&str> = text(&o).0.leak().lines().collect();
    got.sort();
    assert_eq!(got, ["master", "nfs", "worker-1"]);
    // A file that does not validate offers nothing, and says nothing.
    std::fs::write(d.path().join("cluster.yaml"), "version: 1\nnonsense: [").expect("write");
    let o = bin()
        .arg("complete-machines")
        .arg(d.path().join("cluster.yaml"))
        .output()
        .expect("run");
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "{:?}",
        text(&o)
    );
}
