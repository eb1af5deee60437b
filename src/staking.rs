//! Values for the eth2xk8s chart (lumostone/eth2xk8s `prysm/helm`), and the
//! decision whether the master may run `helm install` at all.
//!
//! The values are serialized from typed structs, not assembled in a
//! template: they carry user strings (wallet passwords, endpoints, graffiti)
//! and Helm reads them as YAML, so quoting must be a serializer's job.
//! Helm merges them over the chart's own `values.yaml` (maps merge, user
//! values win, `null` deletes; helm v3 `pkg/chartutil/coalesce.go`), so
//! every validator client is keyed `validatorClientN` like the chart's
//! example and sets every key the example sets: the example entry is
//! replaced, never left beside ours with its `example-password-1`.
//!
//! The chart's templates print some values unquoted (`password: {{ … }}` in
//! `wallet-secret.yaml`, `--http-web3provider={{ … }}` and
//! `--graffiti={{ … | quote }}` inside plain YAML scalars), so the checks
//! here keep those strings to what reads back unchanged there.

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::model::{Cluster, NETWORKS};

/// Prysm refuses wallet passwords shorter than this.
pub const MIN_WALLET_PASSWORD: usize = 8;
const MAX_WALLET_PASSWORD: usize = 256;
/// Graffiti is one 32-byte field of a beacon block.
const MAX_GRAFFITI: usize = 32;

/// What the master does with the chart.
#[derive(Debug, Clone, Serialize)]
pub struct StakingPlan {
    /// The values file body (YAML).
    pub values_yaml: String,
    /// True when the cluster file and secrets supply everything the chart
    /// needs that microseed must not invent.
    pub install: bool,
    /// What is still missing, one sentence each, for the values file's
    /// header, the staking script's log and `build`'s note.
    pub missing: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Values<'a> {
    namespace: &'static str,
    /// `""` is mainnet (the chart adds no flag); `null` when not given.
    ethereum_testnet: Option<&'a str>,
    persistent_volume_type: &'static str,
    nfs: Nfs,
    security_context: SecurityContext,
    beacon: Beacon<'a>,
    validator_clients: Clients<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Nfs {
    server_ip: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_user: u32,
    run_as_group: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Beacon<'a> {
    data_dir_path: String,
    /// `null` when not given: the chart's `required` then stops an install
    /// rather than pointing the beacon at the chart's 127.0.0.1 examples.
    eth1_endpoints: Option<&'a [String]>,
    /// `null` deletes the chart's `prater-genesis.ssz` default.
    genesis_state_file: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Client<'a> {
    name: String,
    data_dir_path: String,
    wallet_dir_path: String,
    wallet_password_secret_name: String,
    /// `null` when secrets.yaml has none: Helm then deletes the example's
    /// `example-password-1` instead of keeping it.
    wallet_password: Option<&'a str>,
    graffiti: &'a str,
}

/// `validatorClient1`, `validatorClient2`, … in numeric order (a BTreeMap
/// would put 10 before 2).
struct Clients<'a>(Vec<(String, Client<'a>)>);

impl Serialize for Clients<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The values and the install decision for a validated cluster, with the
/// wallet passwords of secrets.yaml.
pub fn plan(cluster: &Cluster, wallet_passwords: &[String]) -> anyhow::Result<StakingPlan> {
    let st = &cluster.staking;
    let root = &cluster.nfs.export_root;
    let n = cluster.nfs.validator_clients as usize;
    let nfs_ip = cluster
        .machines
        .iter()
        .find(|m| m.role == "nfs")
        .map(|m| m.ip.to_string())
        .unwrap_or_default();
    let passwords = (wallet_passwords.len() == n).then_some(wallet_passwords);
    let clients = (1..=n)
        .map(|i| {
            let client = Client {
                name: format!("validator-client-{i}"),
                data_dir_path: format!("{root}/prysm/validator-client-{i}"),
                wallet_dir_path: format!("{root}/prysm/wallet-{i}"),
                wallet_password_secret_name: format!("wallet-password-{i}"),
                wallet_password: passwords.map(|p| p[i - 1].as_str()),
                graffiti: &st.graffiti,
            };
            (format!("validatorClient{i}"), client)
        })
        .collect();
    let values = Values {
        namespace: "prysm",
        ethereum_testnet: st
            .network
            .as_deref()
            .map(|n| if n == "mainnet" { "" } else { n }),
        persistent_volume_type: "nfs",
        nfs: Nfs { server_ip: nfs_ip },
        security_context: SecurityContext {
            run_as_user: cluster.nfs.uid,
            run_as_group: cluster.nfs.gid,
        },
        beacon: Beacon {
            data_dir_path: format!("{root}/prysm/beacon"),
            eth1_endpoints: (!st.eth1_endpoints.is_empty()).then_some(&st.eth1_endpoints[..]),
            genesis_state_file: st.genesis_state_file.as_deref(),
        },
        validator_clients: Clients(clients),
    };
    let values_yaml = serde_saphyr::to_string(&values)?;

    let mut missing = Vec::new();
    if st.chart.is_none() {
        missing.push(
            "staking.chart in the cluster file: where the chart is on the master \
             (e.g. /opt/eth2xk8s/prysm/helm)"
                .to_string(),
        );
    }
    if st.network.is_none() {
        missing.push(format!(
            "staking.network in the cluster file: one of {}",
            NETWORKS.join(", ")
        ));
    }
    if st.eth1_endpoints.is_empty() {
        missing.push(
            "staking.eth1_endpoints in the cluster file: the eth1 node's URL(s), \
             e.g. [http://172.20.10.20:8545]"
                .to_string(),
        );
    }
    if passwords.is_none() {
        missing.push(format!(
            "wallet_passwords in secrets.yaml: {n} wallet password(s), one per validator client"
        ));
    }
    Ok(StakingPlan {
        values_yaml,
        install: missing.is_empty(),
        missing,
    })
}

/// An eth1 endpoint: an http(s) or ws(s) URL with no character that YAML,
/// the chart's unquoted `--http-web3provider=` argument or a shell would
/// read differently.
pub fn check_endpoint(s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("no scheme".into());
    };
    if !["http", "https", "ws", "wss"].contains(&scheme) {
        return Err(format!("scheme {scheme:?} is not http, https, ws or wss"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("no host".into());
    }
    if s.len() > 2048 {
        return Err("longer than 2048 characters".into());
    }
    // RFC 3986 characters less the quotes: no space, so neither `: ` nor
    // ` #` can end the plain scalar the chart prints it into.
    let ok = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&()*+,;=%".contains(c);
    match s.chars().find(|&c| !ok(c)) {
        Some(c) => Err(format!("contains {c:?}")),
        None => Ok(()),
    }
}

/// Graffiti the chart passes as `--graffiti={{ … | quote }}` inside a plain
/// YAML scalar: no `#` or `:` (a space before `#` or after `:` would cut the
/// scalar), no `"` or `\` (which `quote` escapes and Prysm would then keep).
pub fn check_graffiti(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_GRAFFITI {
        return Err(format!("must be 1 to {MAX_GRAFFITI} bytes"));
    }
    if s.starts_with(' ') || s.ends_with(' ') {
        return Err("starts or ends with a space".into());
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || " -_.,!?+=@()/*~^'%&".contains(c);
    match s.chars().find(|&c| !ok(c)) {
        Some(c) => Err(format!("contains {c:?}")),
        None => Ok(()),
    }
}

/// A wallet password the chart's `password: {{ .walletPassword }}` (no
/// quotes) reads back as the same string: a YAML plain scalar that is not
/// a number, date, boolean or null under YAML 1.1 rules, as Helm's YAML
/// parser applies them.
pub fn check_wallet_password(s: &str) -> Result<(), String> {
    if s.len() < MIN_WALLET_PASSWORD || s.len() > MAX_WALLET_PASSWORD {
        return Err(format!(
            "must be {MIN_WALLET_PASSWORD} to {MAX_WALLET_PASSWORD} characters (Prysm's minimum is {MIN_WALLET_PASSWORD})"
        ));
    }
    // Messages here never quote the password, not even one character.
    if !s.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
        return Err(
            "has a character outside printable ASCII (letters, digits, punctuation, inner spaces)"
                .into(),
        );
    }
    if s.starts_with(' ') || s.ends_with(' ') {
        return Err("starts or ends with a space".into());
    }
    let first = s.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return Err(
            "starts with one of - ? : , [ ] { } # & * ! | > ' \" % @ ` which YAML reads as syntax; start with a letter or digit"
                .into(),
        );
    }
    if s.contains(": ") || s.contains(" #") || s.ends_with(':') {
        return Err(
            "contains \": \", \" #\" or ends with \":\", which YAML reads as syntax".into(),
        );
    }
    // Helm deletes this text from everything a template renders.
    if s.contains("<no value>") {
        return Err("contains \"<no value>\", which Helm removes from rendered output".into());
    }
    if !s.chars().any(|c| c.is_ascii_alphabetic()) || looks_numeric(s) || looks_dated(s) {
        return Err("YAML would read it as a number or a date; add a letter".into());
    }
    Ok(())
}

/// YAML 1.1 ints and floats with letters in them: `0x1F`, `0o17`, `0b101`,
/// `1e10`, `.inf`-style words, `1_000` separators.
fn looks_numeric(s: &str) -> bool {
    let t: String = s.chars().filter(|&c| c != '_').collect();
    let t = t.to_ascii_lowercase();
    let body = t.trim_start_matches(['+', '-']);
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)].iter().any(|(p, r)| {
        body.strip_prefix(p)
            .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_digit(*r)))
    });
    radix || t.parse::<f64>().is_ok() || body.starts_with(".inf") || body == ".nan"
}

/// A YAML 1.1 timestamp starts `YYYY-M`.
fn looks_dated(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 6 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallet_passwords_yaml_would_misread_are_refused() {
        for bad in [
            "short1a",
            "12345678",
            "0x1234abcd",
            "1.5e+100",
            "2024-01-01t10",
            "-leading-dash",
            "has: colon space",
            "has #comment",
            "\"quoted\"",
            "tab\there",
            "ends-in-colon:",
            " leading space",
            "x<no value>y",
        ] {
            assert!(check_wallet_password(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["correct horse battery", "Pa$$w0rd!2024", "a:b#c,d[e]{f}"] {
            assert!(check_wallet_password(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn endpoints_need_a_scheme_a_host_and_no_spaces() {
        assert!(check_endpoint("http://172.20.10.20:8545").is_ok());
        assert!(check_endpoint("https://user:pw@eth1.example/v3/k?x=1").is_ok());
        for bad in [
            "172.20.10.20:8545",
            "ftp://x",
            "http://",
            "http://a b",
            "http://a\"b",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn graffiti_keeps_to_what_the_chart_prints_unchanged() {
        assert!(check_graffiti("eth2 x k8s").is_ok());
        for bad in [
            "",
            "a#b",
            "a: b",
            "a\"b",
            "a\\b",
            "<no value>",
            &"x".repeat(33),
        ] {
            assert!(check_graffiti(bad).is_err(), "{bad:?} accepted");
        }
    }
}
