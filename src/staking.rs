//! The staking stack as Kubernetes objects, rendered from typed data: an
//! execution client, Prysm's beacon node joined to it over the Engine API
//! with a JWT secret, and one validator client per wallet. Also the checks
//! on what the cluster file says of it (networks, addresses, versions).
//!
//! The objects are serialized as JSON documents in one YAML stream: JSON
//! quotes every string, so neither kubectl's YAML reader nor a YAML 1.1
//! one (`0x…` reads as a number there) can take a value for another type.
//! Nothing secret is in them: the JWT secret and wallet passwords reach
//! Kubernetes from root-only files on the master (`microseed-staking`).
//!
//! Every client flag rendered below carries the source it was checked in,
//! at the pinned version (`docs/staking.md`, "Versions").

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Cluster, ExecutionClient, NETWORKS};

/// The namespace every object of the stack lives in.
pub const NAMESPACE: &str = "staking";

/// Prysm's image tag for the beacon node and validators: v7.1.6
/// (OffchainLabs/prysm tag v7.1.6, 1fc4645, 2026-06-30).
pub const PRYSM_VERSION: &str = "v7.1.6";

/// Prysm refuses wallet passwords shorter than this.
pub const MIN_WALLET_PASSWORD: usize = 8;
const MAX_WALLET_PASSWORD: usize = 256;
/// Graffiti is one 32-byte field of a beacon block.
const MAX_GRAFFITI: usize = 32;

/// Where the execution client's database goes on its node by default.
pub const DEFAULT_EXECUTION_PATH: &str = "/var/lib/microseed/execution";

/// Networks that no longer run (or never took validators from the public),
/// each with why, for the refusal.
pub const RETIRED_NETWORKS: &[(&str, &str)] = &[
    (
        "holesky",
        "shut down after the Fusaka upgrade (2025); the Ethereum Foundation moved validator testing to Hoodi",
    ),
    ("goerli", "shut down in 2024"),
    ("prater", "Goerli's beacon chain, shut down in 2024"),
    ("ropsten", "shut down in 2022"),
    ("rinkeby", "shut down in 2023"),
    ("kiln", "a 2022 Merge test network, shut down"),
    ("pyrmont", "shut down in 2021"),
    ("medalla", "shut down in 2020"),
    (
        "sepolia",
        "it runs, but for application developers: its validator set is permissioned, so a staker cannot join it; test staking on Hoodi",
    ),
];

/// Checkpoint sync source per network: Sigma Prime's public endpoints, as
/// listed by eth-clients/checkpoint-sync-endpoints. The user can name any
/// other (`staking.checkpoint_sync_url`).
pub fn default_checkpoint_sync_url(network: &str) -> Option<&'static str> {
    match network {
        "mainnet" => Some("https://mainnet.checkpoint.sigp.io"),
        "hoodi" => Some("https://hoodi.checkpoint.sigp.io"),
        _ => None,
    }
}

/// Each execution client's tested version (an image tag) and image.
pub fn default_version(client: ExecutionClient) -> &'static str {
    match client {
        // ethereum/go-ethereum tag v1.17.5 (9621c6a, 2026-07-27).
        ExecutionClient::Geth => "v1.17.5",
        // docs.nethermind.io, version 1.36.0 of the documentation.
        ExecutionClient::Nethermind => "1.36.0",
        // hyperledger/besu CHANGELOG.md, "## 26.3.0".
        ExecutionClient::Besu => "26.3.0",
        // erigontech/erigon README at tag v3.8.1.
        ExecutionClient::Erigon => "v3.8.1",
        // paradigmxyz/reth tag v2.5.1 (6dec1b9, 2026-08-20).
        ExecutionClient::Reth => "v2.5.1",
    }
}

fn execution_image(client: ExecutionClient, version: &str) -> String {
    let repo = match client {
        ExecutionClient::Geth => "docker.io/ethereum/client-go",
        ExecutionClient::Nethermind => "docker.io/nethermind/nethermind",
        ExecutionClient::Besu => "docker.io/hyperledger/besu",
        ExecutionClient::Erigon => "docker.io/erigontech/erigon",
        ExecutionClient::Reth => "ghcr.io/paradigmxyz/reth",
    };
    format!("{repo}:{version}")
}

/// Prysm's images (OffchainLabs/prysm v7.1.6 `cmd/beacon-chain/BUILD.bazel`
/// and `cmd/validator/BUILD.bazel`, `repository = "gcr.io/offchainlabs/…"`).
fn prysm_image(component: &str, version: &str) -> String {
    format!("gcr.io/offchainlabs/prysm/{component}:{version}")
}

/// What the master's templates need: the objects, and what is still
/// missing for the stack to run (said in the build's note and the log).
#[derive(Debug, Clone, Serialize)]
pub struct StakingPlan {
    /// [`NAMESPACE`], for the scripts.
    pub namespace: &'static str,
    /// The objects `microseed-staking` applies; empty when staking is off.
    pub objects: String,
    /// One sentence each.
    pub missing: Vec<String>,
}

/// The plan for a validated cluster; `wallet_passwords` are secrets.yaml's.
pub fn plan(cluster: &Cluster, wallet_passwords: &[String]) -> anyhow::Result<StakingPlan> {
    if !cluster.staking.enabled {
        return Ok(StakingPlan {
            namespace: NAMESPACE,
            objects: String::new(),
            missing: Vec::new(),
        });
    }
    let mut missing = Vec::new();
    let n = cluster.staking.validators.len();
    if wallet_passwords.len() != n {
        missing.push(format!(
            "wallet_passwords in secrets.yaml: {n} wallet password(s), one per validator client; until then the validator pods wait for Secret wallet-password-N"
        ));
    }
    Ok(StakingPlan {
        namespace: NAMESPACE,
        objects: objects(cluster)?,
        missing,
    })
}

/// Every Kubernetes object of the stack, in apply order (the namespace
/// first), as one YAML stream of JSON documents.
pub fn objects(cluster: &Cluster) -> anyhow::Result<String> {
    let st = &cluster.staking;
    let network = st
        .network
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("staking.network is not set"))?;
    let checkpoint = st
        .checkpoint_sync_url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("no checkpoint sync URL for {network}"))?;
    let nfs_ip = cluster
        .machines
        .iter()
        .find(|m| m.role == "nfs")
        .map(|m| m.ip.to_string())
        .ok_or_else(|| anyhow::anyhow!("staking needs the nfs machine"))?;
    let ctx = Ctx {
        uid: cluster.nfs.uid,
        gid: cluster.nfs.gid,
        nfs_ip,
        root: cluster.nfs.export_root.clone(),
    };
    let mut docs = vec![namespace()];
    docs.extend(execution(st, network, &ctx));
    docs.extend(beacon(st, network, checkpoint, &ctx));
    for (i, v) in st.validators.iter().enumerate() {
        docs.push(validator(i + 1, v, st, network, &ctx)?);
    }
    let mut out = String::from(
        "# Written by microseed: the staking stack. Apply with\n#   microk8s kubectl apply --server-side --field-manager=microseed --force-conflicts -f FILE\n",
    );
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(&d)?);
        out.push('\n');
    }
    Ok(out)
}

struct Ctx {
    uid: u32,
    gid: u32,
    nfs_ip: String,
    root: String,
}

impl Ctx {
    /// Every pod runs as the guide's uid and gid, which own the NFS tree;
    /// `fsGroup` makes the mounted Secrets readable to that group.
    fn pod_security(&self) -> Value {
        json!({
            "runAsUser": self.uid,
            "runAsGroup": self.gid,
            "fsGroup": self.gid,
            "runAsNonRoot": true,
        })
    }

    fn nfs(&self, name: &str, sub: &str) -> Value {
        json!({"name": name, "nfs": {"server": self.nfs_ip, "path": format!("{}/{sub}", self.root)}})
    }
}

fn labels(name: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name", name.to_string()),
        ("app.kubernetes.io/part-of", "staking".to_string()),
        ("app.kubernetes.io/managed-by", "microseed".to_string()),
    ])
}

fn namespace() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": labels("staking")},
    })
}

fn secret_volume(name: &str, secret: &str) -> Value {
    // 0440: the owner (root) and fsGroup read it, nobody else.
    json!({"name": name, "secret": {"secretName": secret, "defaultMode": 0o440}})
}

/// One replica whose old pod is gone before a new one starts: a client
/// that holds a database (or a validator's keys) must never run twice.
fn deployment(name: &str, pod: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels(name)}, "spec": pod},
        },
    })
}

fn service(name: &str, ports: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels(name)},
        "spec": {"selector": {"app.kubernetes.io/name": name}, "ports": ports},
    })
}

/// Where the JWT secret is mounted in the execution and beacon pods.
const JWT_FILE: &str = "/secrets/jwt.hex";
/// The Engine API's port (8551 in every client and in the Engine API
/// specification, ethereum/execution-apis `src/engine/authentication.md`).
const ENGINE_PORT: u16 = 8551;
/// Execution p2p (devp2p) port, the default of all five clients.
const EL_P2P_PORT: u16 = 30303;

/// The execution client's flags, each checked in its source or reference.
fn execution_args(client: ExecutionClient, network: &str) -> Vec<String> {
    let engine = ENGINE_PORT;
    match client {
        // ethereum/go-ethereum v1.17.5 cmd/utils/flags.go: `mainnet` (l.146),
        // `hoodi` (l.161), `datadir` (l.92), `authrpc.addr` (l.708),
        // `authrpc.port` (l.714), `authrpc.vhosts` (l.720),
        // `authrpc.jwtsecret` (l.726).
        ExecutionClient::Geth => vec![
            format!("--{network}"),
            "--datadir=/data".into(),
            "--authrpc.addr=0.0.0.0".into(),
            format!("--authrpc.port={engine}"),
            // The beacon node sends Host: execution:8551.
            "--authrpc.vhosts=execution".into(),
            format!("--authrpc.jwtsecret={JWT_FILE}"),
        ],
        // docs.nethermind.io 1.36 "Running a node": `--config <network>`,
        // `--data-dir`; "JSON-RPC": `--JsonRpc.Enabled`,
        // `--JsonRpc.EngineHost`, `--JsonRpc.EnginePort`,
        // `--JsonRpc.JwtSecretFile`.
        ExecutionClient::Nethermind => vec![
            format!("--config={network}"),
            "--data-dir=/data".into(),
            "--JsonRpc.Enabled=true".into(),
            "--JsonRpc.EngineHost=0.0.0.0".into(),
            format!("--JsonRpc.EnginePort={engine}"),
            format!("--JsonRpc.JwtSecretFile={JWT_FILE}"),
        ],
        // hyperledger/besu (develop 3fd224e, 26.3.0-RC0):
        // BesuCommand.java `--network` (l.492), `--data-path` (l.390);
        // JsonRpcHttpOptions.java `--rpc-http-host` (l.65: the Engine API
        // listens there too, BesuCommand.createEngineJsonRpcConfiguration);
        // EngineRPCOptions.java `--engine-rpc-port` (l.40),
        // `--engine-jwt-secret` (l.46), `--engine-host-allowlist` (l.57).
        ExecutionClient::Besu => vec![
            format!("--network={network}"),
            "--data-path=/data".into(),
            "--rpc-http-host=0.0.0.0".into(),
            format!("--engine-rpc-port={engine}"),
            format!("--engine-jwt-secret={JWT_FILE}"),
            "--engine-host-allowlist=execution".into(),
        ],
        // erigontech/erigon cmd/utils/flags.go: `chain`, `datadir`,
        // `authrpc.addr`, `authrpc.port`, `authrpc.vhosts`,
        // `authrpc.jwtsecret`, and `externalcl` ("Enables the external
        // consensus layer"; without it Erigon 3 runs its own, Caplin).
        ExecutionClient::Erigon => vec![
            format!("--chain={network}"),
            "--datadir=/data".into(),
            "--externalcl".into(),
            "--authrpc.addr=0.0.0.0".into(),
            format!("--authrpc.port={engine}"),
            "--authrpc.vhosts=execution".into(),
            format!("--authrpc.jwtsecret={JWT_FILE}"),
        ],
        // paradigmxyz/reth v2.5.1: the `node` command;
        // crates/cli/commands/src/common.rs `--chain` (hoodi and mainnet in
        // crates/ethereum/cli/src/chainspec.rs SUPPORTED_CHAINS);
        // crates/node/core/src/args/datadir_args.rs `--datadir`;
        // pruning.rs `--full` (l.149); rpc_server.rs `--authrpc.addr`
        // (l.490), `--authrpc.port` (l.494), `--authrpc.jwtsecret` (l.504).
        ExecutionClient::Reth => vec![
            "node".into(),
            format!("--chain={network}"),
            "--datadir=/data".into(),
            "--full".into(),
            "--authrpc.addr=0.0.0.0".into(),
            format!("--authrpc.port={engine}"),
            format!("--authrpc.jwtsecret={JWT_FILE}"),
        ],
    }
}

/// The execution client: pinned to its node, its database on that node's
/// local disk (a hostPath the node's first boot made and gave to the uid).
fn execution(st: &crate::model::Staking, network: &str, ctx: &Ctx) -> Vec<Value> {
    let ex = &st.execution;
    let pod = json!({
        "nodeSelector": {"kubernetes.io/hostname": ex.node},
        "securityContext": ctx.pod_security(),
        // Geth and the others flush their state on SIGTERM; Kubernetes'
        // 30 s default can cut that short and cost a long resync.
        "terminationGracePeriodSeconds": 300,
        "containers": [{
            "name": ex.client.name(),
            "image": execution_image(ex.client, &ex.version),
            "args": execution_args(ex.client, network),
            "ports": [
                {"name": "engine", "containerPort": ENGINE_PORT, "protocol": "TCP"},
                {"name": "p2p-tcp", "containerPort": EL_P2P_PORT, "hostPort": EL_P2P_PORT, "protocol": "TCP"},
                {"name": "p2p-udp", "containerPort": EL_P2P_PORT, "hostPort": EL_P2P_PORT, "protocol": "UDP"},
            ],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "jwt", "mountPath": "/secrets", "readOnly": true},
            ],
        }],
        "volumes": [
            // Type Directory: the pod waits until the node's first boot
            // made it (and gave it to the uid) rather than running in a
            // root-owned directory it cannot write.
            {"name": "data", "hostPath": {"path": ex.path, "type": "Directory"}},
            secret_volume("jwt", "jwt-secret"),
        ],
    });
    vec![
        deployment("execution", pod),
        service(
            "execution",
            json!([{"name": "engine", "port": ENGINE_PORT, "targetPort": "engine", "protocol": "TCP"}]),
        ),
    ]
}

/// Prysm's beacon-chain gRPC port (validators) and REST port.
const BEACON_RPC_PORT: u16 = 4000;
const BEACON_HTTP_PORT: u16 = 3500;

fn beacon(st: &crate::model::Staking, network: &str, checkpoint: &str, ctx: &Ctx) -> Vec<Value> {
    // OffchainLabs/prysm v7.1.6:
    // cmd/flags.go `datadir` (l.46), `accept-terms-of-use` (l.254);
    // config/features/flags.go `mainnet` (l.29), `hoodi` (l.23);
    // cmd/beacon-chain/flags/base.go `execution-endpoint` (l.82),
    // `jwt-secret` (l.96), `rpc-host` (l.117), `http-host` (l.145);
    // cmd/beacon-chain/sync/checkpoint/options.go `checkpoint-sync-url`
    // (l.24); genesis/options.go l.42: the genesis state comes from the
    // checkpoint URL when `--genesis-beacon-api-url` is not given.
    let args = vec![
        "--accept-terms-of-use".to_string(),
        format!("--{network}"),
        "--datadir=/data".into(),
        format!("--execution-endpoint=http://execution:{ENGINE_PORT}"),
        format!("--jwt-secret={JWT_FILE}"),
        format!("--checkpoint-sync-url={checkpoint}"),
        "--rpc-host=0.0.0.0".into(),
        "--http-host=0.0.0.0".into(),
    ];
    // Ports: cmd/flags.go `p2p-udp-port` 12000 (l.114), `p2p-quic-port`
    // 13000 (l.120), `p2p-tcp-port` 13000 (l.126), the defaults.
    let pod = json!({
        "securityContext": ctx.pod_security(),
        "terminationGracePeriodSeconds": 120,
        "containers": [{
            "name": "beacon-chain",
            "image": prysm_image("beacon-chain", &st.prysm_version),
            "args": args,
            "ports": [
                {"name": "rpc", "containerPort": BEACON_RPC_PORT, "protocol": "TCP"},
                {"name": "http", "containerPort": BEACON_HTTP_PORT, "protocol": "TCP"},
                {"name": "p2p-tcp", "containerPort": 13000, "hostPort": 13000, "protocol": "TCP"},
                {"name": "p2p-quic", "containerPort": 13000, "hostPort": 13000, "protocol": "UDP"},
                {"name": "p2p-udp", "containerPort": 12000, "hostPort": 12000, "protocol": "UDP"},
            ],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "jwt", "mountPath": "/secrets", "readOnly": true},
            ],
        }],
        "volumes": [ctx.nfs("data", "prysm/beacon"), secret_volume("jwt", "jwt-secret")],
    });
    vec![
        deployment("beacon", pod),
        service(
            "beacon",
            json!([
                {"name": "rpc", "port": BEACON_RPC_PORT, "targetPort": "rpc", "protocol": "TCP"},
                {"name": "http", "port": BEACON_HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            ]),
        ),
    ]
}

fn validator(
    n: usize,
    v: &crate::model::Validator,
    st: &crate::model::Staking,
    network: &str,
    ctx: &Ctx,
) -> anyhow::Result<Value> {
    let fee = v
        .fee_recipient
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("validator client {n} has no fee recipient"))?;
    // OffchainLabs/prysm v7.1.6:
    // cmd/flags.go `datadir` (l.46: the slashing-protection database lives
    // there), `accept-terms-of-use` (l.254); config/features/flags.go
    // `mainnet`/`hoodi`, `enable-doppelganger` (l.103);
    // cmd/validator/flags/flags.go `beacon-rpc-provider` (l.36), `graffiti`
    // (l.85), `wallet-dir` (l.146), `wallet-password-file` (l.157),
    // `suggested-fee-recipient` (l.355).
    let args = vec![
        "--accept-terms-of-use".to_string(),
        format!("--{network}"),
        "--datadir=/data".into(),
        "--wallet-dir=/wallet".into(),
        "--wallet-password-file=/secrets/password".into(),
        format!("--beacon-rpc-provider=beacon:{BEACON_RPC_PORT}"),
        format!("--suggested-fee-recipient={fee}"),
        format!("--graffiti={}", v.graffiti),
        "--enable-doppelganger".into(),
    ];
    let name = format!("validator-{n}");
    let pod = json!({
        "securityContext": ctx.pod_security(),
        "containers": [{
            "name": "validator",
            "image": prysm_image("validator", &st.prysm_version),
            "args": args,
            "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "wallet", "mountPath": "/wallet"},
                {"name": "password", "mountPath": "/secrets", "readOnly": true},
            ],
        }],
        "volumes": [
            ctx.nfs("data", &format!("prysm/validator-client-{n}")),
            ctx.nfs("wallet", &format!("prysm/wallet-{n}")),
            secret_volume("password", &format!("wallet-password-{n}")),
        ],
    });
    Ok(deployment(&name, pod))
}

/// A fee recipient: `0x` and 40 hex digits; with both cases, the EIP-55
/// checksum must hold (a mixed-case address with a typo fails it).
pub fn check_address(s: &str) -> Result<(), String> {
    let Some(hex) = s.strip_prefix("0x") else {
        return Err("does not start with 0x".into());
    };
    if hex.len() != 40 {
        return Err(format!("has {} hex digits after 0x, not 40", hex.len()));
    }
    if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("contains {c:?}, which is not a hex digit"));
    }
    let has_upper = hex.chars().any(|c| c.is_ascii_uppercase());
    let has_lower = hex.chars().any(|c| c.is_ascii_lowercase());
    if has_upper && has_lower && eip55(hex) != hex {
        return Err(
            "fails its EIP-55 checksum (mixed case that does not match): a digit or letter is wrong; copy it again from your wallet"
                .into(),
        );
    }
    Ok(())
}

/// Addresses nobody holds the key of: fees sent there are gone.
pub fn is_burn_address(s: &str) -> bool {
    let hex = s.trim_start_matches("0x").to_ascii_lowercase();
    hex == "0".repeat(40) || hex == format!("{}dead", "0".repeat(36))
}

/// The EIP-55 mixed-case form of 40 hex digits: a letter is upper case
/// where the matching nibble of keccak256(lower-case hex text) is >= 8.
fn eip55(hex: &str) -> String {
    let lower = hex.to_ascii_lowercase();
    let hash = keccak256(lower.as_bytes());
    lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0xf;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

/// Keccak-256 as Ethereum uses it (the original padding, 0x01, not SHA-3's
/// 0x06): rate 136 bytes, Keccak-f[1600].
fn keccak256(data: &[u8]) -> [u8; 32] {
    const RATE: usize = 136;
    let mut state = [0u64; 25];
    let mut block = [0u8; RATE];
    let mut chunks = data.chunks_exact(RATE);
    for chunk in &mut chunks {
        absorb(&mut state, chunk);
    }
    let rest = chunks.remainder();
    block[..rest.len()].copy_from_slice(rest);
    block[rest.len()] ^= 0x01;
    block[RATE - 1] ^= 0x80;
    absorb(&mut state, &block);
    let mut out = [0u8; 32];
    for (i, lane) in state.iter().take(4).enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&lane.to_le_bytes());
    }
    out
}

fn absorb(state: &mut [u64; 25], block: &[u8]) {
    for (i, lane) in block.chunks_exact(8).enumerate() {
        let mut b = [0u8; 8];
        b.copy_from_slice(lane);
        state[i] ^= u64::from_le_bytes(b);
    }
    keccak_f(state);
}

fn keccak_f(a: &mut [u64; 25]) {
    const RC: [u64; 24] = [
        0x0000000000000001,
        0x0000000000008082,
        0x800000000000808a,
        0x8000000080008000,
        0x000000000000808b,
        0x0000000080000001,
        0x8000000080008081,
        0x8000000000008009,
        0x000000000000008a,
        0x0000000000000088,
        0x0000000080008009,
        0x000000008000000a,
        0x000000008000808b,
        0x800000000000008b,
        0x8000000000008089,
        0x8000000000008003,
        0x8000000000008002,
        0x8000000000000080,
        0x000000000000800a,
        0x800000008000000a,
        0x8000000080008081,
        0x8000000000008080,
        0x0000000080000001,
        0x8000000080008008,
    ];
    // Rotation offsets and the pi permutation, in the order the lanes are
    // visited starting from lane 1.
    const ROT: [u32; 24] = [
        1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
    ];
    const PI: [usize; 24] = [
        10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
    ];
    for rc in RC {
        let mut c = [0u64; 5];
        for x in 0..5 {
            c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
        }
        for x in 0..5 {
            let d = c[(x + 4) % 5] ^ c[(x + 1) % 5].rotate_left(1);
            for y in 0..5 {
                a[x + 5 * y] ^= d;
            }
        }
        let mut last = a[1];
        for i in 0..24 {
            let j = PI[i];
            let tmp = a[j];
            a[j] = last.rotate_left(ROT[i]);
            last = tmp;
        }
        for y in 0..5 {
            let row = [
                a[5 * y],
                a[5 * y + 1],
                a[5 * y + 2],
                a[5 * y + 3],
                a[5 * y + 4],
            ];
            for x in 0..5 {
                a[5 * y + x] = row[x] ^ (!row[(x + 1) % 5] & row[(x + 2) % 5]);
            }
        }
        a[0] ^= rc;
    }
}

/// An image tag: what registries accept (letters, digits, `.`, `_`, `-`,
/// not first), at most 128 characters.
pub fn check_version(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err("an image tag is letters, digits, '.', '_' and '-' (not first), such as v1.17.5".into())
    }
}

/// A checkpoint sync URL: http(s), a host, no character a URL may not hold.
pub fn check_url(s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("no scheme".into());
    };
    if !["http", "https"].contains(&scheme) {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("no host".into());
    }
    if s.len() > 2048 {
        return Err("longer than 2048 characters".into());
    }
    let ok = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&()*+,;=%".contains(c);
    match s.chars().find(|&c| !ok(c)) {
        Some(c) => Err(format!("contains {c:?}")),
        None => Ok(()),
    }
}

/// Graffiti Prysm writes into a block: up to 32 bytes of printable ASCII.
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

/// A wallet password the master keeps one per line in a root-only file and
/// hands to Kubernetes as a file: printable ASCII (no line break), Prysm's
/// minimum length, no space at either end (which a file reader may trim).
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
    Ok(())
}

/// Why a network name is refused, when it is: a retired one says so and
/// names the current choices.
pub fn check_network(s: &str) -> Result<(), String> {
    if NETWORKS.contains(&s) {
        return Ok(());
    }
    let choices = NETWORKS.join(", ");
    match RETIRED_NETWORKS.iter().find(|(n, _)| *n == s) {
        Some((_, why)) => Err(format!(
            "{s} cannot be staked on: {why}; expected one of {choices}"
        )),
        None => Err(format!("unknown network; expected one of {choices}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keccak256_matches_the_known_digests() {
        // Keccak-256 of "" and of "abc" (the Keccak team's test vectors).
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            hex::encode(keccak256(b"abc")),
            "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
        );
    }

    #[test]
    fn eip55_examples_pass_and_a_changed_case_fails() {
        // The examples of EIP-55 itself.
        for a in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(check_address(a), Ok(()), "{a}");
        }
        // All one case carries no checksum.
        assert!(check_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_ok());
        assert!(check_address("0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED").is_ok());
        let bad = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert!(check_address(bad).unwrap_err().contains("EIP-55"));
        for bad in [
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAedd",
            "0xzaAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        ] {
            assert!(check_address(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn retired_networks_are_refused_with_the_current_choices() {
        for n in ["holesky", "goerli", "prater", "sepolia"] {
            let e = check_network(n).unwrap_err();
            assert!(e.contains("mainnet, hoodi"), "{e}");
        }
        assert!(check_network("hoodi").is_ok());
        assert!(check_network("moon").unwrap_err().starts_with("unknown"));
    }

    #[test]
    fn wallet_passwords_must_fit_one_line_of_a_file() {
        for bad in ["short1a", "tab\there", "new\nline", " leading space"] {
            assert!(check_wallet_password(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["correct horse battery", "Pa$$w0rd!2024", "12345678"] {
            assert!(check_wallet_password(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn urls_need_http_a_host_and_no_spaces() {
        assert!(check_url("https://hoodi.checkpoint.sigp.io").is_ok());
        for bad in [
            "hoodi.checkpoint.sigp.io",
            "ftp://x",
            "http://",
            "http://a b",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_are_image_tags() {
        assert!(check_version("v1.17.5").is_ok());
        assert!(check_version("26.3.0").is_ok());
        for bad in ["", "-v1", "v1 2", "v1:2", "v1/2"] {
            assert!(check_version(bad).is_err(), "{bad:?} accepted");
        }
    }
}
