//! Writing output atomically: everything goes into a staging directory beside
//! the target, and only a complete tree is swapped into place (one
//! `renameat2(RENAME_EXCHANGE)`), so a failed or interrupted build leaves the
//! previous output untouched. Also writes the `SHA256SUMS` manifest.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

pub const MANIFEST: &str = "SHA256SUMS";

/// An output tree being built.
pub struct Staging {
    /// Hashes and writes files on a second thread while the caller renders
    /// the next machine (hashing the output was a third of a fleet build).
    /// First, so it is dropped (the thread joined) before the tree goes.
    writer: Option<Writer>,
    dir: tempfile::TempDir,
    /// Declared after `dir`: the tree is removed before it leaves the list
    /// of paths a signal removes.
    _guard: crate::cleanup::Guard,
    target: PathBuf,
    sums: BTreeMap<String, String>,
    bytes: u64,
}

/// A file created in the tree, waiting for its bytes.
struct Job {
    rel: String,
    path: PathBuf,
    file: fs::File,
    bytes: Bytes,
    sparse: bool,
    /// Its SHA-256 when the caller has it already (documents are hashed
    /// as they are rendered); the writer thread hashes the others.
    sha256: Option<[u8; 32]>,
}

/// A file's bytes, or the work that makes them (a disk image), done on the
/// writer thread too.
enum Bytes {
    Ready(Vec<u8>),
    Make(Box<dyn FnOnce() -> Result<Vec<u8>> + Send>),
}

/// What the writer thread hands back: (path, sha256, length) per file.
type Hashed = Vec<(String, String, u64)>;

/// The writer thread: jobs in, (path, sha256, length) out when it ends.
/// Dropped unfinished (a build that failed), it still waits for the
/// thread, so nothing writes into the tree while it is removed.
struct Writer {
    jobs: Option<std::sync::mpsc::SyncSender<Job>>,
    done: Option<std::thread::JoinHandle<Result<Hashed>>>,
}

impl Writer {
    fn spawn() -> Writer {
        // A few machines ahead at most, so memory stays flat with the fleet.
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(8);
        let done = std::thread::spawn(move || {
            let mut out = Vec::new();
            for mut job in rx {
                let bytes = match job.bytes {
                    Bytes::Ready(b) => b,
                    Bytes::Make(make) => make()?,
                };
                let written = if job.sparse {
                    crate::image::write_sparse(&mut job.file, &bytes)
                } else {
                    job.file.write_all(&bytes).map_err(Into::into)
                };
                written.with_context(|| format!("writing {}", job.path.display()))?;
                let sum = match job.sha256 {
                    Some(known) => hex::encode(known),
                    None => hex::encode(Sha256::digest(&bytes)),
                };
                out.push((job.rel, sum, bytes.len() as u64));
            }
            Ok(out)
        });
        Writer {
            jobs: Some(jobs),
            done: Some(done),
        }
    }

    fn send(&self, job: Job) -> bool {
        self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok())
    }

    fn finish(&mut self) -> Result<Hashed> {
        self.jobs = None;
        match self.done.take().map(|d| d.join()) {
            None => Ok(Vec::new()),
            Some(Ok(r)) => r,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(d) = self.done.take() {
            let _ = d.join();
        }
    }
}

/// What a committed build wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub dir: PathBuf,
    /// Relative path to sha256, sorted by path.
    pub files: BTreeMap<String, String>,
    pub bytes: u64,
}

impl Staging {
    pub fn new(target: &Path) -> Result<Staging> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
        if target.exists() && !target.is_dir() {
            bail!("{} exists and is not a directory", target.display());
        }
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "out".into());
        let dir = tempfile::Builder::new()
            .prefix(&staging_prefix(&name))
            .tempdir_in(&parent)
            .with_context(|| format!("creating a staging directory in {}", parent.display()))?;
        let guard = crate::cleanup::register(dir.path());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700))?;
        crate::cleanup::mark_leftover(dir.path())
            .with_context(|| format!("creating {}", dir.path().display()))?;
        Ok(Staging {
            dir,
            _guard: guard,
            target: target.to_path_buf(),
            sums: BTreeMap::new(),
            bytes: 0,
            writer: None,
        })
    }

    /// Where files for `rel` go; parent directories are created (0700) one
    /// level at a time below the staging root, never the root itself: once
    /// a signal has taken the tree away, nothing recreates it.
    pub fn path_for(&self, rel: &str) -> Result<PathBuf> {
        let mut d = self.dir.path().to_path_buf();
        if let Some(parent) = Path::new(rel).parent() {
            for c in parent.components() {
                d.push(c);
                match DirBuilder::new().mode(0o700).create(&d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("creating {}", d.display()));
                    }
                }
            }
        }
        Ok(self.dir.path().join(rel))
    }

    /// A new file in the tree: owner-only (seeds carry the join token)
    /// unless `public`.
    fn create(&self, rel: &str, public: bool) -> Result<(PathBuf, fs::File)> {
        let p = self.path_for(rel)?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .with_context(|| format!("creating {}", p.display()))?;
        if public {
            // Set after creation, so the user's umask cannot take the
            // world-readable bit away.
            f.set_permissions(fs::Permissions::from_mode(0o644))
                .with_context(|| format!("making {} world-readable", p.display()))?;
        }
        Ok((p, f))
    }

    /// Writes a file (mode 0600: seeds carry the join token) and records its
    /// hash. The file exists on return; its bytes may land later, and a
    /// failure to write them is returned by a later call ([`Staging::flush`]
    /// at the latest, which [`Staging::commit`] calls).
    pub fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.queue(rel, Bytes::Ready(bytes.to_vec()), false, None, false)
    }

    /// [`Staging::write`] of a file that holds no secret and that a server
    /// other than the owner must read, mode 0644: dnsmasq's TFTP, run as
    /// root, serves only world-readable files (`--tftp-secure` in dnsmasq(8)).
    pub fn write_world_readable(&mut self, rel: &str, bytes: &[u8]) -> Result<()> {
        self.queue(rel, Bytes::Ready(bytes.to_vec()), false, None, true)
    }

    /// [`Staging::write`] of bytes whose SHA-256 the caller computed (see
    /// [`crate::documents::Documents::sha256`]): the manifest takes it as
    /// it is instead of hashing the bytes again.
    pub fn write_hashed(&mut self, rel: &str, bytes: &[u8], sha256: [u8; 32]) -> Result<()> {
        self.queue(
            rel,
            Bytes::Ready(bytes.to_vec()),
            false,
            Some(sha256),
            false,
        )
    }

    /// Like [`Staging::write`] for a disk image `make` builds, on the
    /// writer thread (so the caller renders the next machine meanwhile);
    /// whole 4 KiB blocks of zeroes are left as holes, since disk images
    /// are mostly empty space. An error of `make` is returned as a write
    /// error is.
    pub fn write_sparse_with(
        &mut self,
        rel: &str,
        make: impl FnOnce() -> Result<Vec<u8>> + Send + 'static,
    ) -> Result<()> {
        self.queue(rel, Bytes::Make(Box::new(make)), true, None, false)
    }

    fn queue(
        &mut self,
        rel: &str,
        bytes: Bytes,
        sparse: bool,
        sha256: Option<[u8; 32]>,
        public: bool,
    ) -> Result<()> {
        let (path, file) = self.create(rel, public)?;
        let job = Job {
            rel: rel.to_string(),
            path,
            file,
            bytes,
            sparse,
            sha256,
        };
        let writer = self.writer.get_or_insert_with(Writer::spawn);
        if !writer.send(job) {
            // The writer stopped at an error: that error is the answer.
            self.flush()?;
            bail!("the writer thread stopped");
        }
        Ok(())
    }

    /// Waits until every queued file is written and hashed.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(mut w) = self.writer.take() {
            for (rel, sum, len) in w.finish()? {
                self.sums.insert(rel, sum);
                self.bytes += len;
            }
        }
        Ok(())
    }

    /// Brings `rel` (a directory the user filled, such as the PXE boot files)
    /// from the current output into the new one, as hard links: the old tree
    /// stays intact until the swap, and nothing is copied. Whatever sits at
    /// `rel` is kept as it is: a directory, a symbolic link (to a directory
    /// elsewhere, say) or a file.
    pub fn carry_over(&self, rel: &str) -> Result<()> {
        let rel = rel.trim_end_matches('/');
        let from = self.target.join(rel);
        let meta = match fs::symlink_metadata(&from) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", from.display())),
        };
        let to = self.path_for(rel)?;
        let kept = if meta.is_dir() {
            link_tree(&from, &to)
        } else if meta.file_type().is_symlink() {
            fs::read_link(&from)
                .and_then(|t| std::os::unix::fs::symlink(t, &to))
                .map_err(Into::into)
        } else {
            fs::hard_link(&from, &to).map_err(Into::into)
        };
        kept.with_context(|| format!("keeping {} across the rebuild", from.display()))
    }

    /// Records a file another writer placed at `path_for(rel)` and hashed.
    pub fn record_hashed(&mut self, rel: &str, sha256: String, len: u64) {
        self.sums.insert(rel.to_string(), sha256);
        self.bytes += len;
    }

    /// Writes the manifest and swaps the tree into place. `before_swap`
    /// runs last, with the staged tree's path, and may refuse: the checks on
    /// OUT must hold at the swap, not only when the build started.
    pub fn commit(mut self, before_swap: impl FnOnce(&Path) -> Result<()>) -> Result<Written> {
        self.flush()?;
        let manifest = manifest_text(&self.sums);
        let mpath = self.path_for(MANIFEST)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&mpath)?;
        f.write_all(manifest.as_bytes())?;
        self.bytes += manifest.len() as u64;
        crate::cleanup::pause_point("before-swap");
        before_swap(self.dir.path())?;
        let marker = self.dir.path().join(crate::cleanup::LEFTOVER_MARKER);
        fs::remove_file(&marker).with_context(|| format!("removing {}", marker.display()))?;
        sync_tree(self.dir.path())?;
        let written = Written {
            dir: self.target.clone(),
            files: std::mem::take(&mut self.sums),
            bytes: self.bytes,
        };
        if fs::symlink_metadata(&self.target).is_ok() {
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                self.dir.path(),
                rustix::fs::CWD,
                &self.target,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .with_context(|| format!("swapping the new output into {}", self.target.display()))?;
            // The staging path now holds the previous output.
            self.remove_previous()?;
        } else {
            // On failure the TempDir still owns the tree and removes it.
            fs::rename(self.dir.path(), &self.target)
                .with_context(|| format!("moving the output into {}", self.target.display()))?;
            let _ = self.dir.keep();
        }
        Ok(written)
    }

    /// Removes the previous output, swapped to the staging path. Its
    /// removal failing is an error: it holds the previous seeds, so the
    /// join token, and must not sit there unnoticed.
    fn remove_previous(self) -> Result<()> {
        let old = self.dir.keep();
        let failed = |why: String| {
            anyhow::anyhow!(
                "the new output is in place in {}, but the previous one, moved to {}, was not \
                 removed: {why}. It holds the previous seeds and so the join token: delete it \
                 by hand (the next build of {} tries again)",
                self.target.display(),
                old.display(),
                self.target.display()
            )
        };
        // Mounted meanwhile: emptying it is what the checks on OUT refuse.
        let mounts = crate::mounts::mount_points()?;
        let canonical = fs::canonicalize(&old).unwrap_or_else(|_| old.clone());
        if let Some(m) = mounts.iter().find(|m| m.starts_with(&canonical)) {
            return Err(failed(format!(
                "{} is a mount point inside it",
                m.display()
            )));
        }
        // Marked first (its root made writable if the user made it read-
        // only), so a run killed while removing it leaves a tree the next
        // run recognises.
        let meta = fs::symlink_metadata(&old)?;
        if meta.is_dir() {
            let mode = meta.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = fs::set_permissions(&old, fs::Permissions::from_mode(mode | 0o700));
            }
            let _ = crate::cleanup::mark_leftover(&old);
        }
        crate::cleanup::remove_tree(&old).map_err(|e| failed(e.to_string()))?;
        drop(self._guard);
        Ok(())
    }
}

/// Creates `path` holding `bytes` (with `mode`) all at once or not at all:
/// written to a temporary file beside it, flushed, then renamed into place
/// without replacing an existing file. A full disk leaves no empty or
/// partial file that later runs would trip over.
pub fn create_new_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let prefix = format!(".{name}.tmp-");
    sweep_dead_temp_files(dir, &prefix)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("creating {}", path.display()))?;
    let guard = crate::cleanup::register(tmp.path());
    // Held until the file has its name: a later run removes only temporary
    // files nobody holds (their writer died).
    let _ = rustix::fs::flock(tmp.as_file(), rustix::fs::FlockOperation::LockExclusive);
    let written = tmp
        .write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map(|_| crate::cleanup::pause_point("secret-written"));
    if let Err(e) = written {
        // Removed before it leaves the signal's list.
        drop(tmp);
        drop(guard);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    // A failed rename drops (removes) the temporary file inside map_err.
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} already exists; not overwriting it", path.display())
        } else {
            anyhow::Error::new(e.error).context(format!("creating {}", path.display()))
        }
    })?;
    drop(guard);
    // The new name must survive a power cut too.
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Removes the temporary files (`prefix` + tempfile's six characters) of
/// runs killed while creating a file: they may hold a join token. One that
/// a live run holds (flock) is left alone.
fn sweep_dead_temp_files(dir: &Path, prefix: &str) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(_) => return Ok(()),
    };
    for e in entries.flatten() {
        let fname = e.file_name().to_string_lossy().into_owned();
        if !is_temp_name(&fname, prefix) || !e.file_type()?.is_file() {
            continue;
        }
        let p = e.path();
        let Ok(f) = fs::File::open(&p) else { continue };
        if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            // Gone meanwhile: its writer renamed it into place and let go.
            match fs::remove_file(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => {
                    r.with_context(|| {
                        format!("removing {}, left by an interrupted run", p.display())
                    })?;
                    crate::errln!("removed {}, left by an interrupted run", p.display());
                }
            }
        }
    }
    Ok(())
}

fn manifest_text(sums: &BTreeMap<String, String>) -> String {
    sums.iter().map(|(p, s)| format!("{s}  {p}\n")).collect()
}

/// Flushes the new tree before it replaces the old one, so a crash cannot
/// leave a swapped-in tree with empty files. One syncfs instead of an fsync
/// per file: a 1,000-machine build writes thousands of files.
fn sync_tree(dir: &Path) -> Result<()> {
    let d = fs::File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    rustix::fs::syncfs(&d).with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// sha256 of a file, streamed, and its length.
pub fn hash_file(p: &Path) -> Result<(String, u64)> {
    let mut f = fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", p.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex::encode(h.finalize()), len))
}

/// Hard-links the tree `from` to `to`, whose parent exists. Not
/// recursive `mkdir -p`: it must not recreate a staging root a signal took.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    DirBuilder::new().mode(0o700).create(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            link_tree(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            fs::hard_link(&src, &dst)?;
        }
    }
    Ok(())
}

/// Prefix of a staging tree of `name` ([`Staging`]); `outdir` sweeps what a killed run left.
pub fn staging_prefix(name: &str) -> String {
    format!(".{name}.tmp-")
}

/// Whether `fname` is a name tempfile makes with `prefix` (six letters or
/// digits follow) or what a signal renames it to; never a user's
/// `.out.tmp-notes`.
pub fn is_temp_name(fname: &str, prefix: &str) -> bool {
    fname.strip_prefix(prefix).is_some_and(|rest| {
        let rest = rest.strip_suffix("-dying").unwrap_or(rest);
        rest.len() == 6 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_rename_on_a_first_build_removes_the_staging_tree() {
        let dir = tempfile::tempdir().unwrap();
        // `newdir/.` cannot be renamed onto (ENOENT): the form that leaked
        // every seed before `build` learned to normalise `-o`.
        let mut s = Staging::new(&dir.path().join("newdir/.")).unwrap();
        s.write("master/user-data", b"join token inside").unwrap();
        let err = s.commit(|_| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("moving the output"), "{err:#}");
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "left: {left:?}");
    }

    #[test]
    fn a_refusal_before_the_swap_leaves_the_previous_output_and_no_tree() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old"), "previous").unwrap();
        let mut s = Staging::new(&out).unwrap();
        s.write("new", b"new").unwrap();
        let err = s.commit(|_| bail!("out changed")).unwrap_err();
        assert_eq!(format!("{err:#}"), "out changed");
        assert_eq!(fs::read_to_string(out.join("old")).unwrap(), "previous");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out")]);
    }
}
