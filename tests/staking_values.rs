//! The staking values file against the chart that reads it: the eth2xk8s
//! Prysm chart's own `values.yaml` and templates (tests/fixtures/eth2xk8s,
//! source and licence in SOURCE.md there). Helm itself is not packaged for
//! Debian and cannot be fetched here, so the tests do what Helm does with
//! the values: read them with a YAML 1.1 parser (PyYAML), merge them over
//! the chart's defaults with Helm's coalesce rules, and check the keys the
//! templates read. The strings the templates print unquoted go through
//! those template lines and back through PyYAML. The staking script runs
//! under bash against a stand-in `microk8s` to show when it installs.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{EXAMPLE, SECRETS, Scratch, extract_write_files, first_boot, pyyaml, root, text};
use serde_json::{Map, Value};

const VALUES: &str = "etc/microseed/eth2xk8s-values.yaml";
const SCRIPT: &str = "usr/local/sbin/microseed-staking";
const COMPLETE: &str = "  chart: /opt/eth2xk8s/prysm/helm\n  network: prater\n  eth1_endpoints: [\"http://172.20.10.20:8545\", \"https://eth1.example:8545/k?x=1\"]\n";

fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures/eth2xk8s").join(rel)
}

fn cluster(staking: &str, clients: u32) -> String {
    EXAMPLE
        .replace("  enabled: false", &format!("  enabled: true\n{staking}"))
        .replace(
            "  validator_clients: 1",
            &format!("  validator_clients: {clients}"),
        )
}

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

/// Builds and lays the master's first-boot files out; returns its root.
fn master(s: &Scratch) -> PathBuf {
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let r = s.dir.path().join("master-root");
    extract_write_files(&first_boot(&s.out(), "master"), &r);
    r
}

/// Helm v3's merge of user values over a chart's defaults
/// (`pkg/chartutil/coalesce.go`, `coalesceValues` and `CoalesceTables`):
/// for each key of the chart's table, a user `null` deletes it, a missing
/// user key takes the chart's value, two tables merge recursively, and any
/// other user value (scalar or list) wins. User keys the chart lacks stay.
fn coalesce(user: &mut Map<String, Value>, chart: &Map<String, Value>) {
    for (k, cv) in chart {
        match user.get_mut(k) {
            None => {
                user.insert(k.clone(), cv.clone());
            }
            Some(Value::Null) => {
                user.remove(k);
            }
            Some(Value::Object(um)) => {
                if let Value::Object(cm) = cv {
                    coalesce(um, cm);
                }
            }
            Some(_) => {}
        }
    }
}

fn merged_over_chart(values: &Path) -> Value {
    let mut user = pyyaml(values);
    let chart = pyyaml(&fixture("values.yaml"));
    coalesce(
        user.as_object_mut().expect("values are a table"),
        chart.as_object().expect("chart values are a table"),
    );
    user
}

/// Every string anywhere in a value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// The chart's example values that must never reach a real install.
fn example_leftovers(merged: &Value) -> Vec<String> {
    let mut all = Vec::new();
    strings(merged, &mut all);
    all.into_iter()
        .filter(|s| {
            s.contains("example-password")
                || s.contains("127.0.0.1")
                || s.contains("prater-genesis")
        })
        .collect()
}

fn ident_after(text: &str, prefix: &str, out: &mut BTreeSet<String>) {
    for (i, _) in text.match_indices(prefix) {
        let rest = &text[i + prefix.len()..];
        let id: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !id.is_empty() {
            out.insert(id);
        }
    }
}

/// The keys of one `validatorClients` entry that the chart's templates
/// read: `$validatorClient.X` where they range over the entries, and the
/// entry's own fields in the helpers it is handed to (`.X` and `$.X` in
/// the volume helpers; `_volumes.tpl` also gets `nfs` and
/// `persistentVolumeType`, which come from the top level, not the entry).
fn keys_the_templates_read() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for t in ["validator-deployment.yaml", "wallet-secret.yaml"] {
        let src = std::fs::read_to_string(fixture(&format!("templates/{t}"))).expect("template");
        ident_after(&src, "$validatorClient.", &mut keys);
    }
    for t in ["_unique_volumes_helper.tpl", "_volume_mounts.tpl"] {
        let src = std::fs::read_to_string(fixture(&format!("templates/{t}"))).expect("template");
        ident_after(&src, " .", &mut keys);
        ident_after(&src, "$.", &mut keys);
    }
    keys
}

#[test]
fn the_templates_read_the_six_keys_the_example_entry_has() {
    let keys = keys_the_templates_read();
    let want: BTreeSet<String> = [
        "name",
        "dataDirPath",
        "walletDirPath",
        "walletPasswordSecretName",
        "walletPassword",
        "graffiti",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(keys, want, "the fixture's templates changed");
    let chart = pyyaml(&fixture("values.yaml"));
    let example: BTreeSet<String> = chart["validatorClients"]["validatorClient1"]
        .as_object()
        .expect("example entry")
        .keys()
        .cloned()
        .collect();
    assert_eq!(example, want);
}

#[test]
fn the_merge_rule_catches_the_old_values_shape() {
    // What microseed wrote before: entries keyed validator-client-N with no
    // name or password. Merged with Helm's rule, the chart's example entry
    // survives beside it, example password and all.
    let dir = tempfile::tempdir().expect("tmp");
    let old = dir.path().join("old.yaml");
    std::fs::write(
        &old,
        "validatorClients:\n  validator-client-1:\n    dataDirPath: /data/prysm/validator-client-1\n    walletDirPath: /data/prysm/wallet-1\n",
    )
    .expect("write");
    let merged = merged_over_chart(&old);
    let clients = merged["validatorClients"].as_object().expect("table");
    assert_eq!(clients.len(), 2);
    assert!(clients["validator-client-1"].get("name").is_none());
    assert!(
        example_leftovers(&merged)
            .iter()
            .any(|s| s == "example-password-1")
    );
}

#[test]
fn complete_values_replace_every_example_entry_and_default_after_helms_merge() {
    let passwords = ["Pa$$w0rd!2024", "correct horse battery", "a:b#c,d[e]{f}"];
    let s = scratch(&cluster(COMPLETE, 3), &passwords);
    let r = master(&s);
    let values = r.join(VALUES);
    let body = std::fs::read_to_string(&values).expect("values");
    assert!(body.contains("# Complete:"), "{body}");
    let merged = merged_over_chart(&values);
    assert_eq!(example_leftovers(&merged), Vec::<String>::new(), "{body}");

    let clients = merged["validatorClients"].as_object().expect("table");
    let names: Vec<&String> = clients.keys().collect();
    assert_eq!(
        names,
        ["validatorClient1", "validatorClient2", "validatorClient3"]
    );
    let keys = keys_the_templates_read();
    for (i, (key, entry)) in clients.iter().enumerate() {
        let n = i + 1;
        for k in &keys {
            let v = entry[k.as_str()].as_str();
            assert!(
                v.is_some_and(|v| !v.is_empty()),
                "{key}.{k} missing or not a string: {body}"
            );
        }
        assert_eq!(entry["name"], format!("validator-client-{n}"));
        assert_eq!(
            entry["walletPasswordSecretName"],
            format!("wallet-password-{n}")
        );
        assert_eq!(entry["walletPassword"], passwords[i]);
        assert_eq!(
            entry["dataDirPath"],
            format!("/data/prysm/validator-client-{n}")
        );
        assert_eq!(entry["walletDirPath"], format!("/data/prysm/wallet-{n}"));
        assert_eq!(entry["graffiti"], "eth2 x k8s");
    }
    assert_eq!(merged["ethereumTestnet"], "prater");
    assert_eq!(merged["namespace"], "prysm");
    assert_eq!(merged["persistentVolumeType"], "nfs");
    assert_eq!(merged["nfs"]["serverIp"], "172.20.10.10");
    assert_eq!(merged["securityContext"]["runAsUser"], 1001);
    assert_eq!(merged["beacon"]["dataDirPath"], "/data/prysm/beacon");
    assert_eq!(
        merged["beacon"]["eth1Endpoints"],
        serde_json::json!([
            "http://172.20.10.20:8545",
            "https://eth1.example:8545/k?x=1"
        ])
    );
    assert!(merged["beacon"].get("genesisStateFile").is_none());
    // Kept from the chart: what microseed has no reason to choose.
    assert_eq!(merged["beacon"]["name"], "beacon");
    assert_eq!(merged["image"]["versionTag"], "v2.0.6");
}

#[test]
fn mainnet_is_the_blank_testnet_the_chart_asks_for() {
    let s = scratch(
        &cluster(&COMPLETE.replace("prater", "mainnet"), 1),
        &["Pa$$w0rd!2024"],
    );
    let merged = merged_over_chart(&master(&s).join(VALUES));
    assert_eq!(merged["ethereumTestnet"], "");
}

#[test]
fn incomplete_values_still_leave_no_example_value_and_name_what_is_missing() {
    let s = scratch(&cluster("", 2), &[]);
    let r = master(&s);
    let values = r.join(VALUES);
    let body = std::fs::read_to_string(&values).expect("values");
    let merged = merged_over_chart(&values);
    assert_eq!(example_leftovers(&merged), Vec::<String>::new(), "{body}");
    for c in ["validatorClient1", "validatorClient2"] {
        // Deleted where the chart has an example; a plain null elsewhere.
        assert!(
            merged["validatorClients"][c]
                .get("walletPassword")
                .is_none_or(Value::is_null)
        );
        assert_eq!(
            merged["validatorClients"][c]["walletPasswordSecretName"],
            c.replace("validatorClient", "wallet-password-")
        );
    }
    // The chart's `required` stops a hand-run install without endpoints.
    assert!(merged["beacon"].get("eth1Endpoints").is_none());
    assert!(merged.get("ethereumTestnet").is_none());
    for want in [
        "# Incomplete:",
        "staking.chart",
        "staking.network",
        "staking.eth1_endpoints",
        "wallet_passwords in secrets.yaml",
        "microk8s helm3 upgrade --install eth2xk8s",
    ] {
        assert!(body.contains(want), "{want} not in {body}");
    }
}

/// `tmpl` with each `{{ … }}` whose text contains a key of `subst`
/// replaced by its value, as Go's text/template would print it.
fn render(tmpl: &str, subst: &[(&str, String)]) -> String {
    let mut out = String::new();
    let mut rest = tmpl;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find("}}").expect("closed action") + i + 2;
        let action = &rest[i..end];
        match subst.iter().find(|(k, _)| action.contains(k)) {
            Some((_, v)) => out.push_str(v),
            None => out.push_str(action),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn yaml_doc(dir: &Path, name: &str, body: &str) -> Value {
    let p = dir.join(name);
    std::fs::write(&p, body).expect("write");
    pyyaml(&p)
}

#[test]
fn strings_the_chart_prints_unquoted_read_back_unchanged() {
    let passwords = [
        "Pa$$w0rd!2024",
        "correct horse battery",
        "a:b#c,d[e]{f}",
        "yes-but-longer",
        "0x1234abcdz",
        "1e10abcd",
        "Null-and-void",
    ];
    let graffiti = "it's eth2 (x) k8s!";
    let endpoint = "https://user:pw@eth1.example:8545/v3/k?x=1&y=2#frag";
    let staking = format!(
        "  chart: /opt/c\n  network: prater\n  eth1_endpoints: [{}]\n  graffiti: {}\n",
        serde_json::to_string(endpoint).expect("json"),
        serde_json::to_string(graffiti).expect("json")
    );
    let s = scratch(&cluster(&staking, passwords.len() as u32), &passwords);
    let merged = merged_over_chart(&master(&s).join(VALUES));
    let dir = s.dir.path();

    let secret_tmpl = std::fs::read_to_string(fixture("templates/wallet-secret.yaml")).expect("t");
    let body = secret_tmpl
        .lines()
        .filter(|l| !l.contains("range") && !l.contains("end }}") && *l != "---")
        .collect::<Vec<_>>()
        .join("\n");
    for (i, (_, entry)) in merged["validatorClients"]
        .as_object()
        .expect("table")
        .iter()
        .enumerate()
    {
        let field = |k: &str| entry[k].as_str().expect("string").to_string();
        let doc = render(
            &body,
            &[
                (
                    ".walletPasswordSecretName",
                    field("walletPasswordSecretName"),
                ),
                (".walletPassword", field("walletPassword")),
                ("$.Values.namespace", "prysm".to_string()),
            ],
        );
        let secret = yaml_doc(dir, "secret.yaml", &doc);
        assert_eq!(secret["stringData"]["password"], passwords[i], "{doc}");
        assert_eq!(
            secret["metadata"]["name"],
            format!("wallet-password-{}", i + 1)
        );
    }

    // The argument lines, printed into a YAML list as the chart does; Go's
    // `quote` is %q, which for these characters is the text in "…".
    let deploy =
        std::fs::read_to_string(fixture("templates/validator-deployment.yaml")).expect("t");
    let line = deploy
        .lines()
        .find(|l| l.contains("--graffiti="))
        .expect("graffiti line");
    let g = merged["validatorClients"]["validatorClient1"]["graffiti"]
        .as_str()
        .expect("graffiti");
    let doc = render(line, &[("graffiti", format!("\"{g}\""))]);
    let args = yaml_doc(dir, "args.yaml", &format!("args:\n{doc}\n"));
    assert_eq!(
        args["args"][0],
        format!("--graffiti=\"{graffiti}\""),
        "{doc}"
    );

    let beacon = std::fs::read_to_string(fixture("templates/beacon-deployment.yaml")).expect("t");
    let line = beacon
        .lines()
        .find(|l| l.contains("--http-web3provider="))
        .expect("web3 line");
    let first = merged["beacon"]["eth1Endpoints"][0]
        .as_str()
        .expect("endpoint");
    let doc = render(line, &[("eth1Endpoints", first.to_string())]);
    let args = yaml_doc(dir, "args.yaml", &format!("args:\n{doc}\n"));
    assert_eq!(
        args["args"][0],
        format!("--http-web3provider={endpoint}"),
        "{doc}"
    );
}

#[test]
fn passwords_yaml_would_misread_are_refused_with_their_position_and_never_echoed() {
    for (bad, why) in [
        ("12345678", "number"),
        ("2024-01-01x", "date"),
        ("has: a colon", "syntax"),
        ("&anchor-like", "starts with"),
        ("tab\there-x", "printable ASCII"),
        ("short", "8 to 256"),
    ] {
        let s = scratch(&cluster(COMPLETE, 2), &["GoodPassword1", bad]);
        let o = s.build(&[]);
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(
            positioned(&err, "secrets.yaml", "wallet_passwords[1]: "),
            "{bad}: {err}"
        );
        assert!(err.contains(why), "{bad}: {err}");
        assert!(!err.contains(bad), "the password was echoed: {err}");
        assert!(!s.out().exists(), "{bad}: output written");
    }
}

#[test]
fn a_password_count_that_differs_from_the_clients_is_an_error() {
    let s = scratch(&cluster(COMPLETE, 2), &["GoodPassword1"]);
    let o = s.build(&[]);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: wallet_passwords: 1 password(s) for 2 validator client(s)"),
        "{err}"
    );
}

#[test]
fn bad_staking_keys_name_their_line_and_what_was_expected() {
    for (edit, field, want) in [
        (
            "  network: mainet\n",
            "staking.network",
            "one of mainnet, prater",
        ),
        (
            "  eth1_endpoints: [\"localhost:8545\"]\n",
            "staking.eth1_endpoints[0]",
            "expected a URL",
        ),
        (
            "  eth1_endpoints: [\"http://a b\"]\n",
            "staking.eth1_endpoints[0]",
            "contains ' '",
        ),
        (
            "  graffiti: \"a # b\"\n",
            "staking.graffiti",
            "contains '#'",
        ),
        (
            "  genesis_state_file: \"x.ssz\"\n",
            "staking.genesis_state_file",
            "absolute path",
        ),
        ("  netwrok: prater\n", "staking", "did you mean `network`?"),
    ] {
        let s = scratch(&cluster(edit, 1), &[]);
        let o = s.build(&[]);
        let err = text(&o).1;
        assert_eq!(o.status.code(), Some(2), "{edit}: {err}");
        assert!(positioned(&err, "cluster.yaml", field), "{edit}: {err}");
        assert!(err.contains(want), "{edit}: {err}");
        assert!(!s.out().exists());
    }
}

/// True when `err` has a `FILE:LINE:COL: error: FIELD` line.
fn positioned(err: &str, file: &str, field: &str) -> bool {
    err.lines().any(|l| {
        let Some(i) = l.find(&format!("{file}:")) else {
            return false;
        };
        let mut parts = l[i + file.len() + 1..].splitn(3, ':');
        let num = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        num(parts.next())
            && num(parts.next())
            && parts
                .next()
                .is_some_and(|rest| rest.starts_with(&format!(" error: {field}")))
    })
}

/// Runs the master's staking script under bash with a stand-in `microk8s`
/// on PATH: both nodes Ready, and `helm3 status` answering `state` (no
/// release when empty). Returns the stand-in's calls and the script's log.
fn run_script(root: &Path, state: &str) -> (Vec<String>, String) {
    let dir = root.join("stand-in");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let calls = dir.join("calls");
    let _ = std::fs::remove_file(&calls);
    let stub = dir.join("microk8s");
    std::fs::write(
        &stub,
        r#"#!/bin/sh
echo "$*" >>"$CALLS"
case "$1 $2 $3" in
"kubectl get nodes") printf 'master Ready\nworker-1 Ready\n' ;;
"helm3 status "*)
    [ -n "$STATE" ] || { echo "Error: release: not found" >&2; exit 1; }
    printf 'NAME: eth2xk8s\nNAMESPACE: prysm\nSTATUS: %s\n' "$STATE" ;;
esac
exit 0
"#,
    )
    .expect("stub");
    common::make_executable(&stub);
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .arg(root.join(SCRIPT))
        .env("PATH", path)
        .env("CALLS", &calls)
        .env("STATE", state)
        .output()
        .expect("bash");
    assert!(o.status.success(), "{}", text(&o).1);
    let calls = std::fs::read_to_string(&calls).unwrap_or_default();
    (calls.lines().map(str::to_string).collect(), text(&o).0)
}

fn helm_calls(calls: &[String]) -> Vec<&str> {
    calls
        .iter()
        .filter(|c| c.starts_with("helm3") && !c.starts_with("helm3 status"))
        .map(String::as_str)
        .collect()
}

#[test]
fn the_script_installs_once_when_everything_is_given() {
    let s = scratch(&cluster(COMPLETE, 1), &["Pa$$w0rd!2024"]);
    let r = master(&s);
    let o = common::run("shellcheck", &[r.join(SCRIPT).to_str().expect("utf8")]);
    assert!(o.status.success(), "{}", text(&o).0);
    let install = "helm3 install eth2xk8s /opt/eth2xk8s/prysm/helm -n prysm -f /etc/microseed/eth2xk8s-values.yaml";

    let (calls, _) = run_script(&r, "");
    assert_eq!(helm_calls(&calls), [install], "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c == "kubectl create namespace prysm" || c == "kubectl get namespace prysm")
    );

    // Run again after it deployed: nothing to do.
    let (calls, log) = run_script(&r, "deployed");
    assert_eq!(helm_calls(&calls), Vec::<&str>::new(), "{calls:?}");
    assert!(log.contains("already installed"), "{log}");

    // A first install that failed or was cut off by a reboot: remove it and
    // install again (Helm before 3.2.1 cannot upgrade it).
    for state in ["failed", "pending-install"] {
        let (calls, _) = run_script(&r, state);
        assert_eq!(
            helm_calls(&calls),
            ["helm3 uninstall eth2xk8s -n prysm", install],
            "{state}: {calls:?}"
        );
    }
}

#[test]
fn the_script_never_installs_without_what_microseed_must_not_invent() {
    for (staking, passwords, missing) in [
        (COMPLETE, &[][..], "wallet_passwords in secrets.yaml"),
        (
            &COMPLETE.replace("  network: prater\n", "")[..],
            &["Pa$$w0rd!2024"][..],
            "staking.network",
        ),
        (
            &COMPLETE.replace("  chart: /opt/eth2xk8s/prysm/helm\n", "")[..],
            &["Pa$$w0rd!2024"][..],
            "staking.chart",
        ),
        (
            &COMPLETE.replace(
                "  eth1_endpoints: [\"http://172.20.10.20:8545\", \"https://eth1.example:8545/k?x=1\"]\n",
                "",
            )[..],
            &["Pa$$w0rd!2024"][..],
            "staking.eth1_endpoints",
        ),
    ] {
        let s = scratch(&cluster(staking, 1), passwords);
        let r = master(&s);
        let o = common::run("shellcheck", &[r.join(SCRIPT).to_str().expect("utf8")]);
        assert!(o.status.success(), "{}", text(&o).0);
        let (calls, log) = run_script(&r, "");
        assert!(
            calls.iter().all(|c| !c.starts_with("helm3")),
            "{missing}: helm ran: {calls:?}"
        );
        assert!(log.contains(missing), "{missing} not logged: {log}");
        assert!(log.contains("helm3 upgrade --install eth2xk8s"), "{log}");
        let body = std::fs::read_to_string(r.join(VALUES)).expect("values");
        assert!(body.contains(missing), "{body}");
    }
}
