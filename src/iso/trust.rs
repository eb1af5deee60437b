//! Checking that a `SHA256SUMS` is Ubuntu's: its detached OpenPGP signature
//! (`SHA256SUMS.gpg`) verified by the system's `gpgv` against the key shipped
//! in `profiles/keys/`, accepting only a signature by the profile's fingerprint.
//!
//! Why `gpgv` rather than a Rust OpenPGP crate: apt itself verifies with
//! `gpgv`, so every Debian and Ubuntu machine has it, it does verification
//! only (no keyring state, no agent), and it costs microseed no dependency;
//! the pure-Rust `pgp` crate would add about a hundred crates to the build.
//! Where `gpgv` is missing the error says so and names the ways out (a pinned
//! digest needs no signature check at all).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;

/// A trusted key: the keyring bytes (binary OpenPGP) and the one primary-key
/// fingerprint whose signatures count.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    pub keyring: Vec<u8>,
    /// 40 upper-case hex digits.
    pub fingerprint: String,
    /// Where the key came from, for messages.
    pub origin: String,
}

impl TrustedKey {
    /// Reads an armored or binary public key; `fingerprint` may contain spaces.
    pub fn new(bytes: &[u8], fingerprint: &str, origin: &str) -> Result<TrustedKey> {
        let fingerprint = normalize_fingerprint(fingerprint)
            .ok_or_else(|| anyhow!("{origin}: fingerprint {fingerprint:?} is not 40 hex digits"))?;
        let keyring = dearmor(bytes).with_context(|| format!("reading the key {origin}"))?;
        Ok(TrustedKey {
            keyring,
            fingerprint,
            origin: origin.to_string(),
        })
    }
}

/// `8439 38DF …` or `843938df…` as 40 upper-case hex digits.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let f: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (f.len() == 40 && f.bytes().all(|b| b.is_ascii_hexdigit())).then(|| f.to_ascii_uppercase())
}

/// Binary OpenPGP from an ASCII-armored block (gpgv reads only binary
/// keyrings); binary input is returned as it is.
fn dearmor(bytes: &[u8]) -> Result<Vec<u8>> {
    // Every binary OpenPGP packet starts with a tag byte whose top bit is set.
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        return Ok(bytes.to_vec());
    }
    let text = String::from_utf8_lossy(bytes);
    let Some(start) = text.find("-----BEGIN PGP PUBLIC KEY BLOCK-----") else {
        bail!("neither a binary OpenPGP key nor a \"-----BEGIN PGP PUBLIC KEY BLOCK-----\"");
    };
    let mut body = String::new();
    let mut in_headers = true;
    for line in text[start..].lines().skip(1) {
        let line = line.trim();
        if line.starts_with("-----END PGP PUBLIC KEY BLOCK-----") {
            return base64::engine::general_purpose::STANDARD
                .decode(body.as_bytes())
                .context("the armored key is not valid base64");
        }
        if in_headers {
            // Armor headers (`Comment: …`) end at the first empty line.
            if line.is_empty() {
                in_headers = false;
            } else if !line.contains(": ") {
                in_headers = false;
                body.push_str(line);
            }
            continue;
        }
        if line.starts_with('=') {
            continue; // the CRC-24 line; gpgv checks the key itself
        }
        body.push_str(line);
    }
    bail!("the armored key has no \"-----END PGP PUBLIC KEY BLOCK-----\" line")
}

/// Verifies that `signature` is a good detached signature of `data` by
/// `key`. `what` names the signed file in messages (its URL or path).
pub fn verify_detached(data: &[u8], signature: &[u8], key: &TrustedKey, what: &str) -> Result<()> {
    let dir = tempfile::tempdir().context("creating a directory for gpgv")?;
    let keyring = dir.path().join("trusted.gpg");
    let sig = dir.path().join("SHA256SUMS.gpg");
    let dat = dir.path().join("SHA256SUMS");
    std::fs::write(&keyring, &key.keyring).context("writing the keyring for gpgv")?;
    std::fs::write(&sig, signature).context("writing the signature for gpgv")?;
    std::fs::write(&dat, data).context("writing SHA256SUMS for gpgv")?;
    let status = run_gpgv(dir.path(), &keyring, &sig, &dat)?;
    judge(&status, key, what)
}

/// gpgv's machine-readable status lines (`--status-fd`); its exit code alone
/// cannot tell "signed by another key" from "bad signature".
fn run_gpgv(home: &Path, keyring: &Path, sig: &Path, data: &Path) -> Result<String> {
    let child = match Command::new("gpgv")
        .arg("--homedir")
        .arg(home)
        .args(["--status-fd", "1", "--keyring"])
        .arg(keyring)
        .arg(sig)
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(anyhow!(GpgvMissing));
        }
        Err(e) => return Err(e).context("running gpgv"),
    };
    let out = child.wait_with_output().context("running gpgv")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `gpgv` is not installed: no way to check a signature.
#[derive(Debug)]
pub struct GpgvMissing;

impl std::fmt::Display for GpgvMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "gpgv was not found on PATH, so the signature cannot be checked \
             (Debian/Ubuntu: apt install gpgv)",
        )
    }
}

impl std::error::Error for GpgvMissing {}

fn judge(status: &str, key: &TrustedKey, what: &str) -> Result<()> {
    let fpr = &key.fingerprint;
    let mut good = false;
    let mut others = Vec::new();
    let mut bad = Vec::new();
    let mut nodata = false;
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        match f.first().copied() {
            // VALIDSIG <signing-key-fpr> … <primary-key-fpr> (field 10).
            Some("VALIDSIG") => {
                let signing = f.get(1).map(|s| s.to_ascii_uppercase());
                let primary = f.get(10).map(|s| s.to_ascii_uppercase());
                if signing.as_deref() == Some(fpr) || primary.as_deref() == Some(fpr) {
                    good = true;
                } else if let Some(s) = signing {
                    others.push(s);
                }
            }
            Some("BADSIG") => bad.push(f.get(1).copied().unwrap_or("?").to_string()),
            // ERRSIG <keyid> … rc=9 is "no public key": another signer.
            Some("ERRSIG") => others.push(f.get(1).copied().unwrap_or("?").to_string()),
            Some("NODATA") => nodata = true,
            _ => {}
        }
    }
    if !bad.is_empty() {
        bail!(
            "{what}: BAD signature (key {}): the file does not match its signature \
             (altered, or the wrong SHA256SUMS.gpg); refusing to trust it",
            bad.join(", ")
        );
    }
    if good {
        return Ok(());
    }
    if nodata && others.is_empty() {
        bail!("{what}: the signature file holds no OpenPGP signature; refusing to trust it");
    }
    if !others.is_empty() {
        bail!(
            "{what}: signed by key {}, not by the release's signing key {fpr} ({}); \
             refusing to trust it",
            others.join(", "),
            key.origin
        );
    }
    bail!("{what}: gpgv did not report a valid signature by {fpr}; refusing to trust it")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TrustedKey {
        TrustedKey {
            keyring: Vec::new(),
            fingerprint: "843938DF228D22F7B3742BC0D94AA3F0EFE21092".into(),
            origin: "test".into(),
        }
    }

    #[test]
    fn a_valid_signature_by_a_subkey_of_the_trusted_primary_counts() {
        let s = "[GNUPG:] GOODSIG D94AA3F0EFE21092 x\n[GNUPG:] VALIDSIG 1111111111111111111111111111111111111111 2020-08-06 1 0 4 0 1 10 00 843938DF228D22F7B3742BC0D94AA3F0EFE21092\n";
        judge(s, &key(), "SUMS").unwrap();
    }

    #[test]
    fn a_valid_signature_by_another_key_is_refused_naming_it() {
        let other = "ABCDEF0123456789ABCDEF0123456789ABCDEF01";
        let s = format!("[GNUPG:] VALIDSIG {other} 2020-08-06 1 0 4 0 1 10 00 {other}\n");
        let e = format!("{:#}", judge(&s, &key(), "SUMS").unwrap_err());
        assert!(e.contains(other) && e.contains("843938DF"), "{e}");
    }

    #[test]
    fn fingerprints_are_normalized_and_checked() {
        assert_eq!(
            normalize_fingerprint("8439 38DF 228D 22F7 B374  2BC0 D94A A3F0 EFE2 1092").as_deref(),
            Some("843938DF228D22F7B3742BC0D94AA3F0EFE21092")
        );
        assert_eq!(normalize_fingerprint("8439 38DF"), None);
    }

    #[test]
    fn the_shipped_ubuntu_key_dearmors_to_the_published_bytes() {
        let asc = include_bytes!("../../profiles/keys/ubuntu-cdimage-2012.asc");
        let bin = dearmor(asc).unwrap();
        // sha256 of the binary key as gpg exports it (fingerprint 8439 38DF … 1092).
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&bin)),
            "192b3782ba2e00e05b6521371fbe67847efad3fdd1cfb87621882d833c8703fa"
        );
    }

    use sha2::Digest;
}
