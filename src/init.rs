//! `microseed init DIR`: a cluster file of the staking guide's network
//! (the example cluster, with the admin's ssh key swapped in, and with
//! `--release R` that release and its profile's default MicroK8s channel)
//! and a new secrets file, both or neither.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use crate::diag::{Diagnostic, InputErrors};
use crate::secrets;
use crate::{errln, outln};

/// What `init` was asked for on the command line.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    pub dir: PathBuf,
    /// Ubuntu release to write, with its profile's default MicroK8s
    /// channel (default: the guide's 20.04 and 1.20/stable).
    #[arg(long, value_name = "R", value_parser = crate::commands::ReleaseName)]
    pub release: Option<String>,
    /// Public key to put in the admin's authorized keys (default: the
    /// first of ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_ed25519_sk.pub,
    /// id_ecdsa_sk.pub, id_rsa.pub).
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
}

/// The reference network of the staking guide, for `init`.
const INIT_TEMPLATE: &str = include_str!("../examples/eth2-staking/cluster.yaml");

pub fn init(args: &InitArgs, profiles: Option<&Path>, json: bool) -> Result<()> {
    let (dir, ssh_key) = (args.dir.as_path(), args.ssh_key.as_deref());
    let cluster_path = dir.join("cluster.yaml");
    let secrets_path = dir.join("secrets.yaml");
    for p in [&cluster_path, &secrets_path] {
        if p.exists() {
            bail!("{} already exists; not overwriting it", p.display());
        }
    }
    let key = find_key(ssh_key)?;
    let mut body = match &key {
        Some((_, k)) => replace_keys(INIT_TEMPLATE, k)?,
        None => replace_keys(INIT_TEMPLATE, "")?,
    };
    body = set_pools(&body)?;
    if let Some(r) = args.release.as_deref() {
        let profiles = crate::profile::Profiles::load(profiles)?;
        let Some(p) = profiles.release(r)? else {
            return Err(InputErrors(vec![profiles.unknown_release(r)]).into());
        };
        body = set_release(&body, &p.release, &p.microk8s.default_channel)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::output::create_new_atomic(&cluster_path, body.as_bytes(), 0o644)?;
    // Both files or neither: a cluster file alone would make the next
    // `init` refuse, for a failure (a full disk) the user has since fixed.
    if let Err(e) = secrets::generate().and_then(|s| secrets::create(&secrets_path, &s)) {
        let _ = std::fs::remove_file(&cluster_path);
        return Err(e);
    }
    if json {
        outln!(
            "{}",
            json!({"ok": true, "cluster": cluster_path, "secrets": secrets_path, "ssh_key": key.as_ref().map(|(p, _)| p.display().to_string())})
        )?;
    } else {
        outln!("wrote {}", cluster_path.display())?;
        outln!(
            "wrote {} (mode 0600): keep it, never commit it",
            secrets_path.display()
        )?;
        match key {
            Some((p, _)) => outln!("admin ssh key from {}", p.display())?,
            None => errln!(
                "warning: no ssh public key found; add one under admin.ssh_keys before `microseed check` passes"
            ),
        }
        outln!(
            "next: edit {} and run `microseed build {} -o out`",
            cluster_path.display(),
            cluster_path.display()
        )?;
    }
    Ok(())
}

fn find_key(explicit: Option<&Path>) -> Result<Option<(std::path::PathBuf, String)>> {
    let candidates: Vec<std::path::PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => {
            let Some(home) = std::env::var_os("HOME") else {
                return Ok(None);
            };
            let ssh = Path::new(&home).join(".ssh");
            [
                "id_ed25519.pub",
                "id_ecdsa.pub",
                "id_ed25519_sk.pub",
                "id_ecdsa_sk.pub",
                "id_rsa.pub",
            ]
            .iter()
            .map(|n| ssh.join(n))
            .collect()
        }
    };
    for p in candidates {
        if p.is_file() || explicit.is_some() {
            let text = crate::input::read_text(&p, crate::input::SSH_PUBLIC_KEY)?;
            let line = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string();
            crate::validate::check_ssh_key(&line).map_err(|e| {
                InputErrors(vec![Diagnostic::error(
                    &p,
                    Default::default(),
                    "--ssh-key",
                    e,
                )])
            })?;
            return Ok(Some((p, line)));
        }
    }
    Ok(None)
}

/// The init template with another release and that release's default
/// channel in place of the guide's (line by line, so the comments stay).
fn set_release(template: &str, release: &str, channel: &str) -> Result<String> {
    // JSON strings are YAML double-quoted scalars.
    let q = |s: &str| serde_json::to_string(s).context("quoting");
    let mut out = String::new();
    let (mut releases, mut channels) = (0, 0);
    for line in template.lines() {
        if line.starts_with("release:") {
            out.push_str(&format!("release: {}\n", q(release)?));
            releases += 1;
        } else if line.starts_with("  channel:") {
            out.push_str(&format!("  channel: {}\n", q(channel)?));
            channels += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    ensure!(
        releases == 1 && channels == 1,
        "the init template has {releases} release and {channels} channel lines; expected one each"
    );
    Ok(out)
}

/// The example keeps the guide's pools, which mix Google's leap-smeared
/// servers with stepping ones (`check` warns); a new cluster file gets
/// the schema's default, which does not mix.
fn set_pools(template: &str) -> Result<String> {
    // Host names (a-z, 0-9, '.', '-') are plain YAML scalars as they are.
    let flow = crate::schema::DEFAULT_POOLS;
    let mut out = String::new();
    let mut found = 0;
    for line in template.lines() {
        if line.starts_with("  pools:") {
            out.push_str("  # Not time.google.com with these: Google smears leap seconds, these step them.\n");
            out.push_str(&format!("  pools: [{}]\n", flow.join(", ")));
            found += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    ensure!(
        found == 1,
        "the init template has {found} ntp pools lines; expected one"
    );
    Ok(out)
}

/// Swaps the example's key list for the user's key, serialized as a YAML
/// scalar so any comment text in the key stays exact.
fn replace_keys(template: &str, key: &str) -> Result<String> {
    let mut out = String::new();
    let mut skipping = false;
    for line in template.lines() {
        if line.trim_start().starts_with("ssh_keys:") {
            if key.is_empty() {
                out.push_str("  ssh_keys: []\n");
            } else {
                let scalar = crate::documents::yaml(&vec![key])?;
                out.push_str("  ssh_keys:\n");
                for l in scalar.lines() {
                    out.push_str("    ");
                    out.push_str(l);
                    out.push('\n');
                }
            }
            skipping = true;
            continue;
        }
        if skipping && line.trim_start().starts_with("- ") {
            continue;
        }
        skipping = false;
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}
