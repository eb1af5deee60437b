//! Checking an output tree: `verify` re-hashes every file `SHA256SUMS` lists
//! (did a copy or a stick go bad?), and `build --check` compares a fresh
//! build with the tree byte for byte (has the cluster file drifted?). Both
//! also name files present in the tree but not part of the build, except the
//! files the user copies in for PXE ([`crate::package::is_provided`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::output::{MANIFEST, hash_file};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Present, with other bytes.
    Changed,
    /// Listed (or built) but absent.
    Missing,
    /// Present but neither listed nor built.
    Unlisted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Missing => "missing",
            Status::Unlisted => "unlisted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub path: String,
    pub status: Status,
}

/// Every entry ok?
pub fn all_ok(entries: &[Entry]) -> bool {
    entries.iter().all(|e| e.status == Status::Ok)
}

/// The largest manifest read: a line is about 100 bytes, so this is far
/// beyond a 1,000-machine build in every format.
const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// Reads `dir/SHA256SUMS` as relative path -> sha256. Only a regular file,
/// not followed if a symlink, and only up to [`MAX_MANIFEST_BYTES`]: a FIFO
/// there would hang the run, a link to `/dev/zero` eat all memory.
pub fn read_manifest(dir: &Path) -> Result<BTreeMap<String, String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join(MANIFEST);
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(&p)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => anyhow::anyhow!("{} is a symbolic link", p.display()),
            _ => anyhow::Error::new(e).context(format!("reading {}", p.display())),
        })?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading {}", p.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", p.display());
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", p.display()))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        bail!(
            "{} is larger than {} MiB; a manifest microseed writes is far smaller",
            p.display(),
            MAX_MANIFEST_BYTES >> 20
        );
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", p.display()))?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parsed = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .filter(|(h, _)| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        let Some((hash, path)) = parsed else {
            bail!("{}:{}: not a sha256sum line", p.display(), i + 1);
        };
        if !is_relative_inside(path) {
            bail!(
                "{}:{}: {path:?} is not a path inside the tree",
                p.display(),
                i + 1
            );
        }
        out.insert(path.to_string(), hash.to_ascii_lowercase());
    }
    Ok(out)
}

fn is_relative_inside(p: &str) -> bool {
    !p.is_empty()
        && !p.contains('\0')
        && Path::new(p)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// `verify`: re-hashes every file `dir/SHA256SUMS` lists and names the
/// files it does not list. Sorted by path.
pub fn verify(dir: &Path) -> Result<Vec<Entry>> {
    let listed = read_manifest(dir)?;
    against(dir, &listed)
}

/// `build --check`: compares the tree `actual` with a fresh build in
/// `expected`, byte for byte (by sha256: installer images are too big to
/// hold twice in memory), manifest included. Neither is modified.
pub fn compare(expected: &Path, actual: &Path) -> Result<Vec<Entry>> {
    let mut want = read_manifest(expected)?;
    let (manifest_sum, _) = hash_file(&expected.join(MANIFEST))?;
    want.insert(MANIFEST.to_string(), manifest_sum);
    against(actual, &want)
}

/// Each file of `want` (path to sha256) as found under `dir`, plus the
/// files `dir` holds that `want` does not name.
fn against(dir: &Path, want: &BTreeMap<String, String>) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for (path, sum) in want {
        let p = dir.join(path);
        let status = match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Status::Missing,
            Ok(m) if !m.is_file() => Status::Changed,
            _ => {
                let (got, _) = hash_file(&p)?;
                if &got == sum {
                    Status::Ok
                } else {
                    Status::Changed
                }
            }
        };
        entries.push(Entry {
            path: path.clone(),
            status,
        });
    }
    let mut known: BTreeSet<String> = want.keys().cloned().collect();
    known.insert(MANIFEST.to_string());
    if dir.is_dir() {
        entries.extend(unlisted(dir, &known)?);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Files (and symlinks, never followed) under `dir` not in `known` and not
/// under a directory the user fills.
fn unlisted(dir: &Path, known: &BTreeSet<String>) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let e = e?;
            let p = e.path();
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(dir)
                .expect("walked below dir")
                .to_string_lossy()
                .into_owned();
            if known.contains(&rel) || crate::package::is_provided(&rel) {
                continue;
            }
            out.push(Entry {
                path: rel,
                status: Status::Unlisted,
            });
        }
    }
    Ok(out)
}

/// Prints the result: JSON (a list of `{path, status}`) or one line per
/// file that is not ok plus a summary.
pub fn print(entries: &[Entry], json: bool, what: &str) -> Result<()> {
    if json {
        // One shape for every --json: an object with `ok`.
        return crate::outln!(
            "{}",
            serde_json::json!({"ok": all_ok(entries), "files": entries})
        );
    }
    for e in entries.iter().filter(|e| e.status != Status::Ok) {
        crate::outln!("{:<9} {}", e.status.as_str(), e.path)?;
    }
    let ok = entries.iter().filter(|e| e.status == Status::Ok).count();
    let bad = entries.len() - ok;
    if bad == 0 {
        crate::outln!("{what}: all {ok} files match")
    } else {
        crate::outln!("{what}: {bad} of {} files differ", entries.len())
    }
}

/// A machine whose rebuilt user-data differs from the installed one only
/// in `/etc/hosts` lines and its snap refresh slot: a machine was added,
/// removed or moved elsewhere in the cluster (each machine's slot is its
/// share of the cluster's window). It needs no reinstall, only these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostsOnly {
    pub machine: String,
    pub add: Vec<String>,
    pub remove: Vec<String>,
    /// The new `refresh.timer`, when the slot moved.
    pub refresh_timer: Option<String>,
}

/// user-data is a few hundred KiB at most; an out tree's file may be anything.
const USER_DATA_MAX: u64 = 16 << 20;

/// For `build --check`: the machines whose only change is `/etc/hosts`.
pub fn hosts_only_changes(fresh: &Path, out: &Path, entries: &[Entry]) -> Vec<HostsOnly> {
    let read = |p: &Path| -> Option<String> {
        use std::io::Read;
        let f = fs::File::open(p).ok()?;
        if !f.metadata().ok()?.is_file() {
            return None;
        }
        let mut s = String::new();
        f.take(USER_DATA_MAX).read_to_string(&mut s).ok()?;
        Some(s)
    };
    entries
        .iter()
        .filter(|e| e.status == Status::Changed)
        .filter_map(|e| Some((e.path.strip_suffix("/user-data")?, e)))
        .filter(|(m, _)| !m.contains('/'))
        .filter_map(|(machine, e)| {
            let new = read(&fresh.join(&e.path))?;
            let old = read(&out.join(&e.path))?;
            let (add, remove) = (only_in(&new, &old), only_in(&old, &new));
            let known = |l: &String| is_hosts_line(l) || refresh_timer(l).is_some();
            let refresh_timer = add
                .iter()
                .find_map(|l| refresh_timer(l))
                .map(str::to_string);
            let hosts = |ls: Vec<String>| -> Vec<String> {
                ls.into_iter().filter(|l| is_hosts_line(l)).collect()
            };
            (!(add.is_empty() && remove.is_empty())
                && add.iter().all(known)
                && remove.iter().all(known))
            .then(|| HostsOnly {
                machine: machine.to_string(),
                add: hosts(add),
                remove: hosts(remove),
                refresh_timer,
            })
        })
        .collect()
}

/// The lines of `a` that `b` lacks, counted as a multiset, trimmed.
fn only_in(a: &str, b: &str) -> Vec<String> {
    let mut have: BTreeMap<&str, usize> = BTreeMap::new();
    for l in b.lines() {
        *have.entry(l.trim()).or_default() += 1;
    }
    let mut out = Vec::new();
    for l in a.lines() {
        match have.get_mut(l.trim()) {
            Some(n) if *n > 0 => *n -= 1,
            _ => out.push(l.trim().to_string()),
        }
    }
    out
}

/// The slot in `microseed-snap-refresh`'s `timer='sat,04:40-06:00'` line.
fn refresh_timer(l: &str) -> Option<&str> {
    let v = l.strip_prefix("timer='")?.strip_suffix('\'')?;
    v.bytes()
        .all(|c| c.is_ascii_alphanumeric() || b",:-".contains(&c))
        .then_some(v)
}

/// `172.20.10.13 worker-2`: an /etc/hosts line as hosts.tera writes them.
fn is_hosts_line(l: &str) -> bool {
    let mut w = l.split_whitespace();
    let (Some(ip), Some(name), None) = (w.next(), w.next(), w.next()) else {
        return false;
    };
    ip.parse::<std::net::Ipv4Addr>().is_ok()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hosts_lines_count_as_a_hosts_only_change() {
        let old = "a: 1\n        172.20.10.11 master\n";
        let new = "a: 1\n        172.20.10.11 master\n        172.20.10.13 worker-2\n";
        assert_eq!(only_in(new, old), vec!["172.20.10.13 worker-2"]);
        assert!(only_in(old, new).is_empty());
        assert!(is_hosts_line("172.20.10.13 worker-2"));
        assert!(!is_hosts_line("address: 172.20.10.13"));
        assert!(!is_hosts_line("- 172.20.10.13/20"));
    }
}
