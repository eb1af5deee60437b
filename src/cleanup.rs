//! Nothing an interrupted run wrote may outlive it: a staging tree holds
//! every machine's seed, and so the join token. Paths registered here are
//! removed when SIGINT, SIGTERM or SIGHUP arrives, before the process dies of
//! that signal. What SIGKILL or a power cut leaves behind is swept by the
//! next run on the same output, under its lock ([`crate::outdir::lock`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// A file at the root of every tree microseed stages beside OUT (and of a
/// previous output while it is removed): what tells a tree a killed run
/// left from a user's own `.out.tmp-backup`, which only looks like one.
pub const LEFTOVER_MARKER: &str = ".microseed-leftover";

/// Marks `dir` as microseed's own, for [`is_leftover`].
pub fn mark_leftover(dir: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(LEFTOVER_MARKER))
        .and_then(|mut f| {
            f.write_all(b"left by microseed; the next build of this output removes it\n")
        })
}

/// Whether `dir` (not followed if a symlink) is a tree microseed marked.
pub fn is_leftover(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && std::fs::symlink_metadata(dir.join(LEFTOVER_MARKER)).is_ok_and(|m| m.is_file())
}

static REGISTRY: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static INSTALL: Once = Once::new();

/// Keeps a path on the removal list until dropped (the owner then removes
/// it itself, or has moved it into place).
#[must_use]
pub struct Guard {
    path: PathBuf,
}

/// Removes `path` (a file or a whole tree) if a terminating signal arrives
/// while the returned guard lives.
pub fn register(path: &Path) -> Guard {
    install();
    registry().push(path.to_path_buf());
    Guard {
        path: path.to_path_buf(),
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut reg = registry();
        if let Some(i) = reg.iter().rposition(|p| p == &self.path) {
            reg.remove(i);
        }
    }
}

fn registry() -> MutexGuard<'static, Vec<PathBuf>> {
    // A panic elsewhere must not stop the cleanup.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Catches the signals on a thread of their own (signal-hook's self-pipe),
/// where removing files is allowed, unlike in a signal handler.
fn install() {
    INSTALL.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                crate::errln!(
                    "warning: cannot catch signals ({e}); an interrupted build may leave its staging directory behind"
                );
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    // Held until the process ends: nothing new gets registered
                    // (or unregistered and left) after the sweep.
                    let reg = registry();
                    for p in reg.iter() {
                        remove(p);
                    }
                    // Die of the signal, as without a handler, so the shell
                    // sees it (130 for Ctrl-C).
                    let _ = signal_hook::low_level::emulate_default_handler(sig);
                    std::process::exit(128 + sig);
                }
            });
        if let Err(e) = spawned {
            crate::errln!("warning: cannot start the signal thread ({e})");
        }
    });
}

/// Removes a registered path. It is renamed first: the build creates files
/// by path, one directory level at a time below the root, so it cannot add
/// anything to the renamed tree while it is being removed. The new name
/// keeps the prefix the next run sweeps, should this process die halfway.
fn remove(p: &Path) {
    let mut dying = p.as_os_str().to_owned();
    dying.push("-dying");
    let dying = PathBuf::from(dying);
    let target = match std::fs::rename(p, &dying) {
        Ok(()) => dying,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(_) => p.to_path_buf(),
    };
    if let Err(e) = remove_tree(&target)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        crate::errln!(
            "microseed: could not remove {}: {e}; delete it by hand (it holds secrets)",
            target.display()
        );
    }
}

/// Removes the tree (or file) at `p`, one microseed made: a staging tree,
/// or a previous output swapped out of OUT. A directory without write
/// permission cannot lose its entries, and users do `chmod -R a-w out` to
/// protect an output, so where removal is refused each directory we own is
/// made writable (and searchable) and removal tried again. The marker
/// ([`LEFTOVER_MARKER`]) goes last: a run killed halfway
/// leaves a tree the next run still recognises as its own. A mount point
/// inside must be ruled out by the caller.
pub fn remove_tree(p: &Path) -> std::io::Result<()> {
    match remove_marked_last(p) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            allow_removal(p)?;
            remove_marked_last(p)
        }
        r => r,
    }
}

fn remove_marked_last(p: &Path) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return std::fs::remove_file(p);
    }
    for e in std::fs::read_dir(p)? {
        let e = e?;
        if e.file_name() == LEFTOVER_MARKER {
            continue;
        }
        let removed = if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())
        } else {
            std::fs::remove_file(e.path())
        };
        match removed {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match std::fs::remove_file(p.join(LEFTOVER_MARKER)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    std::fs::remove_dir(p)
}

/// Gives every directory under `dir` (symlinks not followed) owner read,
/// write and search permission, so its entries can be removed.
fn allow_removal(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700))?;
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            allow_removal(&e.path())?;
        }
    }
    Ok(())
}

/// Test hook, inert unless the environment variable `MICROSEED_TEST_PAUSE`
/// names `point`: the run then says so on stderr and waits for a signal, so
/// the tests can interrupt a build at a known point instead of racing it.
/// With `MICROSEED_TEST_RESUME` naming a file, the run goes on once that
/// file exists: the tests change the world at a known point of the build.
pub fn pause_point(point: &str) {
    if std::env::var_os("MICROSEED_TEST_PAUSE").is_some_and(|v| v == point) {
        crate::errln!("microseed: paused at {point}");
        let resume = std::env::var_os("MICROSEED_TEST_RESUME").map(PathBuf::from);
        loop {
            match &resume {
                Some(r) if r.exists() => return,
                Some(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                None => std::thread::sleep(std::time::Duration::from_secs(3600)),
            }
        }
    }
}
