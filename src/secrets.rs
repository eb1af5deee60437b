//! The secrets file (`secrets.yaml`, beside the cluster file, mode 0600):
//! what must stay the same across rebuilds but must not sit in the cluster
//! file, chiefly the MicroK8s join token that lets a rebuilt worker rejoin.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::cluster::parse_typed;
use crate::diag::{Diagnostic, InputErrors, Pos};

/// Length of a generated join token: MicroK8s needs at least 32 characters.
const TOKEN_LEN: usize = 48;
const MIN_TOKEN_LEN: usize = 32;

#[derive(Debug, Clone, Serialize)]
pub struct Secrets {
    pub join_token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    version: Spanned<u32>,
    join_token: Spanned<String>,
}

#[derive(Serialize)]
struct SecretsOut<'a> {
    version: u32,
    join_token: &'a str,
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
    Ok(Secrets { join_token: token })
}

/// Writes a new secrets file with mode 0600; refuses to overwrite one.
pub fn create(path: &Path, secrets: &Secrets) -> Result<()> {
    let body = format!(
        "# microseed secrets: keep this file, never commit it.\n# A rebuilt machine rejoins the cluster only with the same join_token.\n{}",
        serde_saphyr::to_string(&SecretsOut {
            version: 1,
            join_token: &secrets.join_token,
        })?
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(body.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads and checks a secrets file. Group- or world-readable files give a
/// warning (an error with `strict`).
pub fn load(path: &Path, strict: bool) -> Result<(Secrets, Vec<Diagnostic>), InputErrors> {
    let io_err = |e: std::io::Error| {
        InputErrors(vec![Diagnostic::error(
            path,
            Pos::default(),
            "",
            format!("cannot read the secrets file: {e}"),
        )])
    };
    let text = crate::input::read_text(path, "secrets file")?;
    let meta = std::fs::metadata(path).map_err(io_err)?;
    let raw: RawSecrets = parse_typed(path, &text)?;
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
        return Err(InputErrors(errors));
    }
    Ok((
        Secrets {
            join_token: raw.join_token.value,
        },
        warnings,
    ))
}
