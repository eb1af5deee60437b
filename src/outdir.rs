//! Deciding whether `-o OUT` may be replaced, before anything is written,
//! and keeping two runs on one output apart. A build replaces OUT as a
//! whole (see [`crate::output`]), so OUT must be a plain directory that
//! microseed wrote, holding nothing else: no input of the build, no file
//! the manifest does not list (except the PXE files the user copies in,
//! which are carried over), and no mount point.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

use crate::diag::{Diagnostic, InputErrors};
pub use crate::mounts::mount_points;
pub(crate) use crate::mounts::unescape_mount;
use crate::output::{MANIFEST, is_temp_name, staging_prefix};

/// Something the build reads, which OUT must neither be, hold nor sit in.
#[derive(Debug, Clone)]
pub struct Input {
    /// How the user knows it: "the cluster file", "--templates".
    pub what: String,
    pub path: PathBuf,
    /// A directory of which only some files are read (the cluster file's):
    /// OUT may sit inside it, as long as it holds none of those files.
    pub may_hold_out: bool,
}

impl Input {
    pub fn new(what: impl Into<String>, path: &Path) -> Input {
        Input {
            what: what.into(),
            path: path.to_path_buf(),
            may_hold_out: false,
        }
    }
}

fn refuse(out: &Path, msg: impl Into<String>) -> anyhow::Error {
    InputErrors(vec![Diagnostic::error(out, Default::default(), "", msg)]).into()
}

/// Checks OUT's path: not a symlink, not `/`, not the current directory or
/// one holding it, not a mount point, no overlap with an input. `for_check`
/// (`build --check`, which never writes into OUT) skips what only matters
/// to a replacement. Returns OUT as an absolute path without symlinks.
pub fn check_path(out: &Path, inputs: &[Input], for_check: bool) -> Result<PathBuf> {
    if out.as_os_str().is_empty() {
        return Err(refuse(out, "-o needs a directory name"));
    }
    if matches!(out.components().next_back(), Some(Component::ParentDir)) {
        return Err(refuse(
            out,
            "-o ends in `..`; name the output directory itself",
        ));
    }
    // Without a trailing `/` or `/.`, which would follow a symlink.
    let plain: PathBuf = out.components().collect();
    if !for_check && let Ok(m) = fs::symlink_metadata(&plain) {
        if m.file_type().is_symlink() {
            let to = fs::read_link(&plain).unwrap_or_default();
            let msg = if fs::metadata(&plain).is_ok() {
                format!(
                    "is a symbolic link to {}; a build replaces the output directory as a whole, \
                     which would replace the link, not its target: give the target itself as -o",
                    to.display()
                )
            } else {
                format!(
                    "is a symbolic link to {}, which does not exist; remove the link or give \
                     another directory as -o",
                    to.display()
                )
            };
            return Err(refuse(out, msg));
        }
        if !m.is_dir() {
            return Err(refuse(
                out,
                "exists and is not a directory; give a directory as -o",
            ));
        }
    }
    let abs = resolve(out)?;
    if abs.parent().is_none() {
        return Err(refuse(
            out,
            "the root directory cannot be the output: a build replaces the output directory \
             as a whole; give a new directory such as ./out",
        ));
    }
    if !for_check {
        if let Ok(cwd) = std::env::current_dir().and_then(|d| d.canonicalize())
            && cwd.starts_with(&abs)
        {
            return Err(refuse(
                out,
                format!(
                    "is {} the current directory; a build replaces the output directory as a \
                     whole, which would pull it from under you: give a new directory such as ./out",
                    if cwd == abs { "" } else { "an ancestor of" }
                )
                .replace("  ", " "),
            ));
        }
        if mount_points()?.contains(&abs) {
            return Err(refuse(
                out,
                format!(
                    "is a mount point; a build swaps a new directory into its place, which a \
                     mount point cannot be: give a directory inside it, such as -o {}",
                    plain.join("seeds").display()
                ),
            ));
        }
    }
    // `--check` only reads OUT.
    for input in inputs.iter().filter(|_| !for_check) {
        let ip = resolve(&input.path)?;
        // The PXE files the user copied in are carried into the new tree, so
        // an input among them (the ISO in pxe/iso/, say) survives.
        let carried = ip
            .strip_prefix(&abs)
            .is_ok_and(|rel| crate::package::is_provided(&rel.to_string_lossy()));
        let clash = if ip == abs {
            Some("is")
        } else if ip.starts_with(&abs) && !carried {
            Some("holds")
        } else if abs.starts_with(&ip) && !input.may_hold_out {
            Some("is inside")
        } else {
            None
        };
        if let Some(how) = clash {
            return Err(refuse(
                out,
                format!(
                    "{how} {} ({}); a build replaces the output directory as a whole, \
                     which would delete or change it: give a separate directory as -o",
                    input.what,
                    input.path.display()
                ),
            ));
        }
    }
    Ok(abs)
}

/// Checks what an existing OUT holds: a mount point anywhere inside is
/// refused even with `force`; without `force`, so is a tree microseed did
/// not write (no manifest) and any file its manifest does not list.
pub fn check_contents(out: &Path, abs: &Path, force: bool) -> Result<()> {
    if !abs.is_dir() {
        return Ok(());
    }
    let mounts: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|m| m != abs && m.starts_with(abs))
        .collect();
    if let Some(m) = mounts.first() {
        return Err(refuse(
            out,
            format!(
                "{} is a mount point inside the output; a build replaces the output as a \
                 whole and will not empty a mounted filesystem: unmount it, or give another -o",
                m.display()
            ),
        ));
    }
    if force {
        return Ok(());
    }
    let files = files_under(abs)?;
    if files.is_empty() {
        return Ok(());
    }
    let how = "a build would delete them; give another directory as -o, or pass --force \
               to replace them anyway";
    let listed = match crate::verify::read_manifest(abs) {
        Ok(l) => l,
        Err(_) if fs::symlink_metadata(abs.join(MANIFEST)).is_err() => {
            return Err(refuse(
                out,
                format!(
                    "is not empty and has no {MANIFEST}: microseed did not write these files, \
                     and {how}"
                ),
            ));
        }
        Err(e) => {
            return Err(refuse(
                out,
                format!("{e:#}: microseed did not write this {MANIFEST}, and {how}"),
            ));
        }
    };
    let foreign: Vec<&String> = files
        .iter()
        .filter(|f| {
            f.as_str() != MANIFEST && !listed.contains_key(*f) && !crate::package::is_provided(f)
        })
        .collect();
    if !foreign.is_empty() {
        let shown: Vec<&str> = foreign.iter().take(5).map(|s| s.as_str()).collect();
        let more = if foreign.len() > 5 {
            format!(" and {} more", foreign.len() - 5)
        } else {
            String::new()
        };
        return Err(refuse(
            out,
            format!(
                "holds files microseed did not write ({}{more}; not in its {MANIFEST}): {how}",
                shown.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Checks, just before the swap, that what the user copied into OUT's
/// provided directories (the PXE boot files) is what the staged tree
/// carried over: a file added or replaced since would be lost with the
/// old tree.
pub fn check_carried(out: &Path, abs: &Path, staged: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut changed = Vec::new();
    for dir in crate::package::provided_dirs() {
        let rel = dir.trim_end_matches('/');
        let mut stack = vec![PathBuf::from(rel)];
        while let Some(r) = stack.pop() {
            let Ok(old) = fs::symlink_metadata(abs.join(&r)) else {
                continue;
            };
            let same = match fs::symlink_metadata(staged.join(&r)) {
                Ok(new) if old.is_dir() => new.is_dir(),
                Ok(new) if old.file_type().is_symlink() => {
                    new.file_type().is_symlink()
                        && fs::read_link(abs.join(&r)).ok() == fs::read_link(staged.join(&r)).ok()
                }
                Ok(new) => (new.dev(), new.ino()) == (old.dev(), old.ino()),
                Err(_) => false,
            };
            if !same {
                changed.push(r.display().to_string());
                continue;
            }
            if old.is_dir() {
                let entries = fs::read_dir(abs.join(&r))
                    .with_context(|| format!("listing {}", abs.join(&r).display()))?;
                for e in entries {
                    let e = e.with_context(|| format!("listing {}", abs.join(&r).display()))?;
                    stack.push(r.join(e.file_name()));
                }
            }
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    changed.sort();
    Err(refuse(
        out,
        format!(
            "changed during the build ({} added or replaced since it was carried into the new \
             output); the swap would delete that: build again",
            changed.join(", ")
        ),
    ))
}

/// Every non-directory entry under `dir`, relative; symlinks not followed.
fn files_under(dir: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).with_context(|| format!("listing {}", d.display()))? {
            let e = e.with_context(|| format!("listing {}", d.display()))?;
            let p = e.path();
            if e.file_type()?.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    Ok(out)
}

/// `p` as an absolute path without symlinks; the part that does not exist
/// yet is appended as given (`..` there is taken lexically).
pub fn resolve(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .context("reading the current directory")?
            .join(p)
    };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for comp in rest.iter().rev() {
                    match comp {
                        Component::ParentDir => {
                            out.pop();
                        }
                        Component::Normal(n) => out.push(n),
                        _ => {}
                    }
                }
                return Ok(out);
            }
            Err(_) => match (existing.parent(), existing.components().next_back()) {
                (Some(parent), Some(last)) => {
                    rest.push(last);
                    existing = parent;
                }
                _ => return Ok(abs),
            },
        }
    }
}

/// Held while a run writes (or, with `--check`, reads) one output.
pub struct Lock {
    _file: fs::File,
}

/// Takes the lock of the output `abs` (a file `.NAME.lock` beside it),
/// waiting for another run that holds it, then removes what runs killed
/// earlier left there (staging and `--check` trees: they hold seeds). Only
/// a run holding the lock has such a tree, so every one found is a leftover.
pub fn lock(abs: &Path) -> Result<Lock> {
    let (parent, name) = parent_and_name(abs)?;
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let lock_path = parent.join(format!(".{name}.lock"));
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("opening the lock file {}", lock_path.display()))?;
    use rustix::fs::{FlockOperation, flock};
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        crate::errln!(
            "waiting for another microseed run on {} to finish…",
            abs.display()
        );
        flock(&file, FlockOperation::LockExclusive)
            .with_context(|| format!("locking {}", lock_path.display()))?;
    }
    sweep(&parent, &name)?;
    Ok(Lock { _file: file })
}

fn parent_and_name(abs: &Path) -> Result<(PathBuf, String)> {
    let parent = abs
        .parent()
        .with_context(|| format!("{} has no parent directory", abs.display()))?;
    let name = abs
        .file_name()
        .with_context(|| format!("{} has no name", abs.display()))?
        .to_string_lossy()
        .into_owned();
    Ok((parent.to_path_buf(), name))
}

/// Prefix of a `build --check` tree of `name`.
pub fn check_prefix(name: &str) -> String {
    format!(".{name}.check-")
}

/// The directory `--check` builds into: beside OUT (the same filesystem),
/// removed on a signal, and swept like a staging tree if the run is killed.
pub struct CheckTree {
    dir: tempfile::TempDir,
    /// After `dir`: removed before it leaves the signal's list.
    _guard: crate::cleanup::Guard,
}

impl CheckTree {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

pub fn check_tree(abs: &Path) -> Result<CheckTree> {
    let (parent, name) = parent_and_name(abs)?;
    let dir = tempfile::Builder::new()
        .prefix(&check_prefix(&name))
        .tempdir_in(&parent)
        .with_context(|| format!("creating a temporary directory in {}", parent.display()))?;
    let guard = crate::cleanup::register(dir.path());
    crate::cleanup::mark_leftover(dir.path())
        .with_context(|| format!("creating {}", dir.path().display()))?;
    Ok(CheckTree { dir, _guard: guard })
}

/// Removes the trees killed runs left beside OUT: a name microseed gives
/// (staging or `--check`, maybe `-dying`) is not enough, the tree must hold
/// microseed's marker; a user's `.out.tmp-backup` is left alone. A tree
/// that cannot be removed is warned about (it holds secrets), not an error:
/// this run writes elsewhere and must not fail for it.
fn sweep(parent: &Path, name: &str) -> Result<()> {
    let prefixes = [staging_prefix(name), check_prefix(name)];
    let ours = |fname: &str| prefixes.iter().any(|p| is_temp_name(fname, p));
    let entries = match fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", parent.display())),
    };
    let mut mounts = None;
    for e in entries {
        let e = e.with_context(|| format!("listing {}", parent.display()))?;
        let fname = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !ours(&fname) || !crate::cleanup::is_leftover(&p) {
            continue;
        }
        let mounts = match &mounts {
            Some(m) => m,
            None => mounts.insert(mount_points()?),
        };
        if mounts.iter().any(|m| m.starts_with(&p)) {
            crate::errln!(
                "warning: {} is left from an interrupted run but has a filesystem mounted inside; not removing it",
                p.display()
            );
            continue;
        }
        match crate::cleanup::remove_tree(&p) {
            Ok(()) => crate::errln!("removed {}, left by an interrupted run", p.display()),
            Err(err) => crate::errln!(
                "warning: cannot remove {}, left by an earlier run: {err}; it holds seeds, so \
                 the join token: delete it by hand",
                p.display()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_appends_the_missing_part_lexically() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(&real, real.join("l")).unwrap();
        assert_eq!(resolve(&real.join("l/a/b/../c")).unwrap(), real.join("a/c"));
        assert_eq!(resolve(&real.join("l")).unwrap(), real);
    }
}
