//! The secrets file (`secrets.yaml`, beside the cluster file, mode 0600):
//! what must stay the same across rebuilds but must not sit in the cluster
//! file, chiefly the MicroK8s join token that lets a rebuilt worker rejoin,
//! the JWT secret the execution client and the beacon node share on a
//! staking cluster (generated like the token), and the validators' wallet
//! passwords (microseed never generates those: the wallets are the user's,
//! made with Prysm).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::diag::{Diagnostic, InputErrors, Pos};
use crate::staking;
use crate::yaml::parse_secret;

/// Length of a generated join token: MicroK8s needs at least 32 characters.
const TOKEN_LEN: usize = 48;
const MIN_TOKEN_LEN: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct Secrets {
    pub join_token: String,
    /// 32 random bytes as 64 hex digits (the Engine API's JWT secret, the
    /// form `--authrpc.jwtsecret` and Prysm's `--jwt-secret` read); `None`
    /// in a file made before staking needed it.
    pub jwt_secret: Option<String>,
    /// One per validator client, in order; empty when not given.
    pub wallet_passwords: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    version: Spanned<u32>,
    join_token: Spanned<String>,
    #[serde(default)]
    jwt_secret: Option<Spanned<String>>,
    #[serde(default)]
    wallet_passwords: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Serialize)]
struct SecretsOut<'a> {
    version: u32,
    join_token: &'a str,
    jwt_secret: Option<&'a str>,
}

/// The secrets file that belongs to a cluster file.
pub fn path_for(cluster_file: &Path) -> PathBuf {
    cluster_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("secrets.yaml")
}

/// Fresh secrets from the OS random number generator.
pub fn generate() -> Result<Secrets> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut token = String::with_capacity(TOKEN_LEN);
    while token.len() < TOKEN_LEN {
        let mut buf = [0u8; 64];
        getrandom::fill(&mut buf).map_err(|e| anyhow::anyhow!("OS random generator: {e}"))?;
        // Rejection sampling keeps every character equally likely.
        for b in buf {
            if (b as usize) < ALPHABET.len() * 4 && token.len() < TOKEN_LEN {
                token.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    let mut jwt = [0u8; 32];
    getrandom::fill(&mut jwt).map_err(|e| anyhow::anyhow!("OS random generator: {e}"))?;
    Ok(Secrets {
        join_token: token,
        jwt_secret: Some(hex::encode(jwt)),
        wallet_passwords: Vec::new(),
    })
}

/// Writes a new secrets file with mode 0600, atomically; refuses to
/// overwrite one.
pub fn create(path: &Path, secrets: &Secrets) -> Result<()> {
    let body = format!(
        "# microseed secrets: keep this file, never commit it.\n# A rebuilt machine rejoins the cluster only with the same join_token.\n{}",
        serde_saphyr::to_string(&SecretsOut {
            version: 1,
            join_token: &secrets.join_token,
            jwt_secret: secrets.jwt_secret.as_deref(),
        })?
    );
    crate::output::create_new_atomic(path, body.as_bytes(), 0o600)
}

/// Reads and checks a secrets file. Group- or world-readable files give a
/// warning (an error with `strict`). `wallets` is the number of validator
/// clients when the cluster file enables staking: wallet passwords, when
/// given, must match it, and the JWT secret must be there.
pub fn load(
    path: &Path,
    strict: bool,
    wallets: Option<u32>,
) -> Result<(Secrets, Vec<Diagnostic>), InputErrors> {
    let io_err = |e: std::io::Error| {
        InputErrors(vec![Diagnostic::error(
            path,
            Pos::default(),
            "",
            format!("cannot read the secrets file: {e}"),
        )])
    };
    let text = crate::input::read_text(path, crate::input::SECRETS_FILE)?;
    let meta = std::fs::metadata(path).map_err(io_err)?;
    let raw: RawSecrets =
        parse_secret(path, &text, &["version", "join_token", "wallet_passwords"])?;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if raw.version.value != 1 {
        errors.push(Diagnostic::error(
            path,
            Pos::from_location(raw.version.referenced),
            "version",
            "unsupported secrets file version; expected 1",
        ));
    }
    let t = &raw.join_token.value;
    if t.len() < MIN_TOKEN_LEN || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
        errors.push(Diagnostic::error(
            path,
            Pos::from_location(raw.join_token.referenced),
            "join_token",
            format!("expected at least {MIN_TOKEN_LEN} letters and digits (MicroK8s splits join strings on '/' and token files on '|')"),
        ));
    }
    match &raw.jwt_secret {
        Some(j) if j.value.len() != 64 || !j.value.bytes().all(|b| b.is_ascii_hexdigit()) => {
            errors.push(Diagnostic::error(
                path,
                Pos::from_location(j.referenced),
                "jwt_secret",
                "expected 64 hex digits (32 bytes, the Engine API's JWT secret); make one with `openssl rand -hex 32`",
            ));
        }
        None if wallets.is_some() => errors.push(Diagnostic::error(
            path,
            Pos { line: 1, column: 1 },
            "jwt_secret",
            "missing: staking needs the JWT secret the execution client and the beacon node share; add `jwt_secret: ` and the output of `openssl rand -hex 32` (a new secrets file gets one by itself)",
        )),
        _ => {}
    }
    let mut wallet_passwords = Vec::new();
    if let Some(list) = &raw.wallet_passwords {
        for (i, p) in list.value.iter().enumerate() {
            if let Err(why) = staking::check_wallet_password(&p.value) {
                // Never echo the password itself.
                errors.push(Diagnostic::error(
                    path,
                    Pos::from_location(p.referenced),
                    format!("wallet_passwords[{i}]"),
                    format!("{why}; the master keeps it as one line of a file"),
                ));
            }
            wallet_passwords.push(p.value.clone());
        }
        if let Some(n) = wallets
            && !list.value.is_empty()
            && list.value.len() != n as usize
        {
            errors.push(Diagnostic::error(
                path,
                Pos::from_location(list.referenced),
                "wallet_passwords",
                format!(
                    "{} password(s) for {n} validator client(s) (nfs.validator_clients); expected one per client, in order",
                    list.value.len()
                ),
            ));
        }
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let msg = format!(
            "mode {mode:04o} lets other users read the join token; expected 0600 (run `chmod 600 {}`)",
            path.display()
        );
        if strict {
            errors.push(Diagnostic::error(path, Pos::default(), "", msg));
        } else {
            warnings.push(Diagnostic::warning(path, Pos::default(), "", msg));
        }
    }
    if !errors.is_empty() {
        errors.sort_by_key(|d| (d.pos.line, d.pos.column));
        return Err(InputErrors(errors));
    }
    Ok((
        Secrets {
            join_token: raw.join_token.value,
            jwt_secret: raw.jwt_secret.map(|j| j.value.to_ascii_lowercase()),
            wallet_passwords,
        },
        warnings,
    ))
}
