//! The staking stack: the Kubernetes objects microseed renders, checked
//! by `kubernetes-validate` against the upstream schemas of the cluster's
//! Kubernetes version (strict: an unknown field fails); the master's
//! `microseed-staking` run under bash against a stand-in `microk8s` that
//! records every command line, so no secret may appear on one; and every
//! refusal of the staking section, by field.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    EXAMPLE, SECRETS, STAKING_ON, Scratch, bin, extract_write_files, first_boot, run, text,
};

const HOODI: &str = include_str!("../examples/staking-hoodi/cluster.yaml");
const FEE: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
const JWT: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// A scratch cluster whose secrets.yaml also lists `passwords`.
fn scratch(cluster: &str, passwords: &[&str]) -> Scratch {
    let s = Scratch::new(cluster);
    if !passwords.is_empty() {
        let mut secrets = format!("{SECRETS}wallet_passwords:\n");
        for p in passwords {
            secrets.push_str(&format!(
                "  - {}\n",
                serde_json::to_string(p).expect("json")
            ));
        }
        std::fs::write(s.dir.path().join("secrets.yaml"), secrets).expect("secrets");
    }
    s
}

/// `microseed render CLUSTER master staking`, which must succeed.
fn render(s: &Scratch) -> String {
    let o = bin()
        .args(["render"])
        .arg(s.cluster())
        .args(["master", "staking"])
        .output()
        .expect("microseed");
    assert!(o.status.success(), "{}", text(&o).1);
    text(&o).0
}

/// The Kubernetes version a cluster file's MicroK8s channel runs.
fn kube_version(cluster: &str) -> String {
    let chan = cluster
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel: "))
        .expect("a channel line");
    let track = chan.split('/').next().expect("track");
    format!("{track}.0")
}

/// `kubernetes-validate --strict` on a file: its output and success.
fn kube_validate(file: &Path, version: &str) -> (bool, String) {
    let o = run(
        "kubernetes-validate",
        &[
            "--strict",
            "--kubernetes-version",
            version,
            file.to_str().expect("utf8"),
        ],
    );
    let (out, err) = text(&o);
    (o.status.success(), format!("{out}{err}"))
}

/// Builds and lays the master's first-boot files out; returns its root.
fn master(s: &Scratch) -> PathBuf {
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let r = s.dir.path().join("master-root");
    extract_write_files(&first_boot(&s.out(), "master"), &r);
    r
}

#[test]
fn the_hoodi_example_builds_and_every_object_validates_against_its_kubernetes_version() {
    let s = Scratch::new(HOODI);
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    // The placeholder fee recipient never passes silently.
    assert!(
        err.contains("warning: staking.fee_recipient: 0x000000000000000000000000000000000000dEaD is a placeholder"),
        "{err}"
    );
    let r = s.dir.path().join("master-root");
    extract_write_files(&first_boot(&s.out(), "master"), &r);
    let objects = r.join("etc/microseed/staking.yaml");
    let version = kube_version(HOODI);
    assert_eq!(version, "1.35.0");
    let (ok, log) = kube_validate(&objects, &version);
    assert!(ok, "{log}");
    for kind in [
        "namespace/staking",
        "deployment/execution",
        "service/execution",
        "deployment/beacon",
        "service/beacon",
        "deployment/validator-1",
    ] {
        assert!(
            log.contains(&format!("passed for resource {kind}")),
            "{kind}: {log}"
        );
    }
    // The example's client flags: geth on hoodi over the Engine API with
    // the JWT secret, Prysm checkpoint-syncing from the default URL.
    let text = std::fs::read_to_string(&objects).expect("objects");
    for arg in [
        "\"--hoodi\"",
        "\"--authrpc.jwtsecret=/secrets/jwt.hex\"",
        "\"--execution-endpoint=http://execution:8551\"",
        "\"--checkpoint-sync-url=https://hoodi.checkpoint.sigp.io\"",
        "\"--enable-doppelganger\"",
        "\"--suggested-fee-recipient=0x000000000000000000000000000000000000dEaD\"",
        "\"image\": \"docker.io/ethereum/client-go:v1.17.5\"",
        "\"image\": \"gcr.io/offchainlabs/prysm/validator:v7.1.6\"",
    ] {
        assert!(text.contains(arg), "{arg} not rendered");
    }
}

#[test]
fn the_placeholder_fee_recipient_is_refused_under_strict() {
    let s = Scratch::new(HOODI);
    let o = s.build(&["--strict"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    assert!(
        text(&o)
            .1
            .contains("error: staking.fee_recipient: 0x000000000000000000000000000000000000dEaD"),
        "{}",
        text(&o).1
    );
    assert!(!s.out().exists(), "nothing may be written");
}

#[test]
fn every_execution_client_with_two_validators_renders_objects_that_validate() {
    let base =
        common::staking_example().replace("  validator_clients: 1", "  validator_clients: 2");
    for client in ["geth", "nethermind", "besu", "erigon", "reth"] {
        let cluster = base.replace(
            STAKING_ON,
            &format!("{STAKING_ON}\n  execution: {{client: {client}}}\n  validators:\n    - {{graffiti: one}}\n    - {{fee_recipient: \"0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359\"}}"),
        );
        let s = scratch(&cluster, &["correct horse battery", "Pa$$w0rd!2024"]);
        let objects = s.dir.path().join("staking.yaml");
        std::fs::write(&objects, render(&s)).expect("write");
        // The example cluster runs MicroK8s 1.20, older than any schema
        // kubernetes-validate ships; the oldest it has (1.25) and the
        // newest MicroK8s track microseed knows stand in for it.
        for version in ["1.25.0", "1.35.0"] {
            let (ok, log) = kube_validate(&objects, version);
            assert!(ok, "{client} {version}: {log}");
            assert!(log.contains("deployment/validator-2"), "{log}");
        }
        let text = std::fs::read_to_string(&objects).expect("objects");
        assert!(
            text.contains(&format!("\"name\": \"{client}\"")),
            "{client}"
        );
        assert!(text.contains("\"--graffiti=one\""));
        assert!(text.contains(&format!("\"--suggested-fee-recipient={FEE}\"")));
        assert!(
            text.contains(
                "\"--suggested-fee-recipient=0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359\""
            )
        );
    }
}

#[test]
fn kubernetes_validate_refuses_a_broken_object() {
    let s = Scratch::new(&common::staking_example());
    let good = render(&s);
    for (from, to) in [
        ("\"replicas\": 1", "\"replicas\": \"one\""),
        ("\"hostPort\"", "\"hostPortt\""),
        (
            "\"type\": \"Recreate\"",
            "\"type\": \"Recreate\", \"maxSurge\": 1",
        ),
    ] {
        assert!(good.contains(from), "{from}");
        let bad = s.dir.path().join("bad.yaml");
        std::fs::write(&bad, good.replacen(from, to, 1)).expect("write");
        let (ok, log) = kube_validate(&bad, "1.35.0");
        assert!(!ok, "{to} passed: {log}");
    }
}

#[test]
fn render_prints_exactly_what_the_master_applies() {
    let s = Scratch::new(&common::staking_example());
    let printed = render(&s);
    let applied =
        std::fs::read_to_string(master(&s).join("etc/microseed/staking.yaml")).expect("objects");
    assert_eq!(printed, applied);
    // Only the master's document, and only when staking is on.
    for (cluster, machine) in [
        (common::staking_example(), "worker-1"),
        (EXAMPLE.to_string(), "master"),
    ] {
        let s = Scratch::new(&cluster);
        let o = bin()
            .arg("render")
            .arg(s.cluster())
            .args([machine, "staking"])
            .output()
            .expect("microseed");
        assert_eq!(o.status.code(), Some(2), "{machine}: {}", text(&o).1);
    }
}

#[test]
fn a_validator_never_runs_twice() {
    let s = Scratch::new(&common::staking_example());
    let mut docs = Vec::new();
    for d in render(&s).split("\n---\n").skip(1) {
        docs.push(serde_json::from_str::<serde_json::Value>(d).expect("a JSON document"));
    }
    let deployments: Vec<_> = docs.iter().filter(|d| d["kind"] == "Deployment").collect();
    assert_eq!(deployments.len(), 3);
    for d in deployments {
        assert_eq!(d["spec"]["replicas"], 1, "{d}");
        // The old pod is gone before a new one starts.
        assert_eq!(d["spec"]["strategy"]["type"], "Recreate", "{d}");
    }
    let v = docs
        .iter()
        .find(|d| d["metadata"]["name"] == "validator-1")
        .expect("validator-1");
    let pod = &v["spec"]["template"]["spec"];
    assert!(
        pod["containers"][0]["args"]
            .as_array()
            .expect("args")
            .contains(&serde_json::json!("--enable-doppelganger"))
    );
    // The slashing-protection database (--datadir) and the wallet on NFS.
    let vols = pod["volumes"].as_array().expect("volumes");
    assert_eq!(vols[0]["nfs"]["path"], "/data/prysm/validator-client-1");
    assert_eq!(vols[1]["nfs"]["path"], "/data/prysm/wallet-1");
    assert_eq!(vols[0]["nfs"]["server"], "172.20.10.10");
}

/// A stand-in `microk8s` for the staking script: nodes are Ready, `create
/// secret … --dry-run=client -o yaml` prints a Secret from the named file
/// (as kubectl does, base64), and `apply … -f -` keeps what it reads.
/// Every command line goes to `argv.log`.
fn stand_in(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let log = dir.join("argv.log");
    let applied = dir.join("applied");
    std::fs::create_dir_all(&applied).expect("applied");
    let script = format!(
        r#"#!/bin/bash
printf '%s\n' "$*" >> {log}
shift  # kubectl
case "$1" in
get) printf 'master Ready\nworker-1 Ready\n' ;;
create)
    name=$4
    for a in "$@"; do case "$a" in --from-file=*) kv=${{a#--from-file=}} ;; esac; done
    printf 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\ndata:\n  %s: %s\n' \
        "$name" "${{kv%%=*}}" "$(base64 -w0 < "${{kv#*=}}")" ;;
apply)
    if [ "${{*: -1}}" = "-" ]; then cat > "$(mktemp -p {applied})"; fi ;;
esac
"#,
        log = log.display(),
        applied = applied.display()
    );
    let p = bin.join("microk8s");
    std::fs::write(&p, script).expect("stand-in");
    common::make_executable(&p);
    bin
}

#[test]
fn the_staking_step_applies_server_side_and_no_secret_reaches_a_command_line() {
    let passwords = ["correct horse battery", "Pa$$w0rd!2024"];
    let cluster =
        common::staking_example().replace("  validator_clients: 1", "  validator_clients: 2");
    let s = scratch(&cluster, &passwords);
    let r = master(&s);
    let objects = std::fs::read_to_string(r.join("etc/microseed/staking.yaml")).expect("objects");
    for secret in passwords.iter().chain([&JWT]) {
        assert!(!objects.contains(secret), "a secret is in the objects");
    }
    assert_eq!(
        std::fs::read_to_string(r.join("etc/microseed/staking/jwt.hex")).expect("jwt"),
        JWT
    );
    // The script reads the master's files: point it at the laid-out root.
    let etc = r.join("etc/microseed");
    let script = std::fs::read_to_string(r.join("usr/local/sbin/microseed-staking"))
        .expect("script")
        .replace("/etc/microseed", etc.to_str().expect("utf8"));
    let copy = s.dir.path().join("microseed-staking");
    std::fs::write(&copy, script).expect("script");
    let bin = stand_in(s.dir.path());
    // Twice: a second run after a success (or a failure part way) is safe.
    for _ in 0..2 {
        let o = Command::new("bash")
            .arg(&copy)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .expect("bash");
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let argv = std::fs::read_to_string(s.dir.path().join("argv.log")).expect("log");
    for secret in passwords.iter().chain([&JWT]) {
        assert!(
            !argv.contains(secret),
            "a secret on a command line:\n{argv}"
        );
    }
    let applies: Vec<&str> = argv.lines().filter(|l| l.contains(" apply ")).collect();
    // Per run: the objects file, the JWT secret and two wallet passwords.
    assert_eq!(applies.len(), 8, "{argv}");
    for a in &applies {
        assert!(
            a.starts_with(
                "kubectl apply --server-side --field-manager=microseed --force-conflicts -f "
            ),
            "{a}"
        );
    }
    assert!(argv.contains(&format!("-f {}/staking.yaml", etc.display())));
    // What reached Kubernetes through the pipe: each value, exactly.
    let mut got = Vec::new();
    for e in std::fs::read_dir(s.dir.path().join("applied")).expect("applied") {
        got.push(std::fs::read_to_string(e.expect("entry").path()).expect("secret"));
    }
    let b64 = |v: &str| {
        let o = Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().expect("stdin").write_all(v.as_bytes())?;
                c.wait_with_output()
            })
            .expect("base64");
        String::from_utf8(o.stdout).expect("utf8")
    };
    for (name, key, value) in [
        ("jwt-secret", "jwt.hex", JWT),
        ("wallet-password-1", "password", passwords[0]),
        ("wallet-password-2", "password", passwords[1]),
    ] {
        let want = format!("name: {name}\ndata:\n  {key}: {}\n", b64(value));
        assert_eq!(
            got.iter().filter(|g| g.contains(&want)).count(),
            2,
            "{name}: {got:?}"
        );
    }
}

/// Builds `cluster` (with `secrets` when given) and expects exit 2 naming
/// `field` with every one of `words` in the message.
fn refused(cluster: &str, secrets: Option<&str>, field: &str, words: &[&str]) {
    let s = Scratch::new(cluster);
    if let Some(sec) = secrets {
        std::fs::write(s.dir.path().join("secrets.yaml"), sec).expect("secrets");
    }
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{field}: {err}");
    let line = err
        .lines()
        .find(|l| l.contains(&format!("error: {field}: ")))
        .unwrap_or_else(|| panic!("{field} not named: {err}"));
    for w in words {
        assert!(line.contains(w), "{field}: {w:?} not in {line}");
    }
    assert!(!s.out().exists(), "nothing may be written");
}

fn with(extra: &str) -> String {
    common::staking_example().replace(STAKING_ON, &format!("{STAKING_ON}\n{extra}"))
}

#[test]
fn retired_and_unknown_networks_are_refused_by_name_with_the_choices() {
    for (net, why) in [
        ("holesky", "shut down"),
        ("goerli", "shut down"),
        ("prater", "shut down"),
        ("sepolia", "permissioned"),
        ("moon", "unknown network"),
    ] {
        refused(
            &common::staking_example().replace("network: hoodi", &format!("network: {net}")),
            None,
            "staking.network",
            &[net, why, "expected one of mainnet, hoodi"],
        );
    }
    refused(
        &common::staking_example().replace("  network: hoodi\n", ""),
        None,
        "staking.network",
        &["missing", "mainnet, hoodi"],
    );
}

#[test]
fn a_missing_or_malformed_fee_recipient_is_refused() {
    let no_fee = common::staking_example().replace(&format!("  fee_recipient: \"{FEE}\"\n"), "");
    assert!(!no_fee.contains(FEE));
    refused(
        &no_fee,
        None,
        "staking.fee_recipient",
        &["missing", "0x and 40 hex digits"],
    );
    for (bad, why) in [
        ("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "0x"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe", "39 hex digits"),
        (
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeg",
            "not a hex digit",
        ),
        // One letter's case changed: the EIP-55 checksum catches it.
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD", "EIP-55"),
    ] {
        refused(
            &common::staking_example().replace(FEE, bad),
            None,
            "staking.fee_recipient",
            &[why],
        );
    }
    refused(
        &with("  validators:\n    - {fee_recipient: \"0x12\"}"),
        None,
        "staking.validators[0].fee_recipient",
        &["2 hex digits"],
    );
}

#[test]
fn the_eth2xk8s_keys_and_other_bad_staking_values_are_refused() {
    for (extra, field, words) in [
        (
            "  chart: /opt/eth2xk8s/prysm/helm",
            "staking.chart",
            &["removed", "staking.execution"][..],
        ),
        (
            "  eth1_endpoints: [\"http://172.20.10.20:8545\"]",
            "staking.eth1_endpoints",
            &["removed"][..],
        ),
        (
            "  genesis_state_file: /data/g.ssz",
            "staking.genesis_state_file",
            &["removed"][..],
        ),
        (
            "  execution: {client: parity}",
            "staking.execution.client",
            &["geth, nethermind, besu, erigon, reth"][..],
        ),
        (
            "  execution: {node: nfs}",
            "staking.execution.node",
            &["master or worker", "master, worker-1"][..],
        ),
        (
            "  execution: {version: \"v1 2\"}",
            "staking.execution.version",
            &["image tag"][..],
        ),
        (
            "  prysm: {version: \"v7;x\"}",
            "staking.prysm.version",
            &["image tag"][..],
        ),
        (
            "  checkpoint_sync_url: \"hoodi.checkpoint.sigp.io\"",
            "staking.checkpoint_sync_url",
            &["no scheme"][..],
        ),
        (
            "  validators: [{graffiti: a}, {graffiti: b}]",
            "staking.validators",
            &["2 entries for 1 validator client"][..],
        ),
    ] {
        refused(&with(extra), None, field, words);
    }
    refused(
        &common::staking_example().replace("addons: [dns, helm3]", "addons: [helm3]"),
        None,
        "microk8s.addons",
        &["dns add-on"],
    );
}

#[test]
fn staking_needs_a_jwt_secret_of_32_hex_bytes() {
    let without: String = SECRETS
        .lines()
        .filter(|l| !l.starts_with("jwt_secret:"))
        .map(|l| format!("{l}\n"))
        .collect();
    refused(
        &common::staking_example(),
        Some(&without),
        "jwt_secret",
        &["missing", "openssl rand -hex 32"],
    );
    refused(
        &common::staking_example(),
        Some(&SECRETS.replace(JWT, "abc")),
        "jwt_secret",
        &["64 hex digits"],
    );
    // A cluster without staking does not need one.
    let s = Scratch::example();
    std::fs::write(s.dir.path().join("secrets.yaml"), &without).expect("secrets");
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn a_new_secrets_file_gets_a_jwt_secret_like_the_join_token() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("cluster.yaml"), HOODI).expect("cluster");
    let o = bin()
        .arg("build")
        .arg(d.path().join("cluster.yaml"))
        .arg("-o")
        .arg(d.path().join("out"))
        .output()
        .expect("microseed");
    assert!(o.status.success(), "{}", text(&o).1);
    let secrets = std::fs::read_to_string(d.path().join("secrets.yaml")).expect("secrets");
    let jwt = secrets
        .lines()
        .find_map(|l| l.strip_prefix("jwt_secret: "))
        .expect("a jwt_secret line")
        .trim_matches(['"', '\'']);
    assert_eq!(jwt.len(), 64, "{jwt}");
    assert!(jwt.bytes().all(|b| b.is_ascii_hexdigit()), "{jwt}");
}
