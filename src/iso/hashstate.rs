//! Saved SHA-256 states of installer images, so a rebuild hashes only the
//! seed partition.
//!
//! `SHA256SUMS` needs the sha256 of the whole `installer.img`, and hashing
//! the ~1.2 GB ISO part costs more CPU than copying it. That part is the
//! same on every rebuild from the same ISO: every patch in it (boot configs,
//! `md5sum.txt`, partition tables) is a function of the ISO and the seed
//! partition's size. So the hasher's state at the seed partition's start is
//! saved under a key naming exactly what it covers, and the next build with
//! the same key resumes from it.
//!
//! The key is the sha256 of: the ISO file's identity as the kernel reports
//! it (device, inode, size, mtime and ctime to the nanosecond; ctime moves
//! on every write to the file and cannot be set back by a user), the prefix
//! length, and every patched byte inside the prefix with its offset. A state
//! that does not match its key, or cannot be read, is ignored: the image is
//! then hashed in full, as without this cache. The states live in the ISO
//! cache directory (`hash-states/`, owner-only), one small file each; the
//! oldest are removed beyond [`KEEP`].

use anyhow::{Context, Result, ensure};
use sha2::Digest as _;
use sha2::digest::common::hazmat::{SerializableState, SerializedState};
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// States kept per cache directory (a few hundred bytes each).
pub const KEEP: usize = 64;

const MAGIC: &[u8] = b"microseed hash-state v1\n";

/// The key of the state after the first `prefix` bytes of the image made
/// from `src` with `writes` laid over it.
pub fn key(src: &File, prefix: u64, writes: &[(u64, Vec<u8>)]) -> Result<String> {
    let m = src.metadata().context("reading the ISO's metadata")?;
    let mut h = sha2::Sha256::new();
    h.update(MAGIC);
    for n in [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
        m.ctime() as u64,
        m.ctime_nsec() as u64,
        prefix,
    ] {
        h.update(n.to_le_bytes());
    }
    for (offset, data) in writes {
        let (a, b) = (*offset, *offset + data.len() as u64);
        if a >= prefix {
            continue;
        }
        let b = b.min(prefix);
        h.update(a.to_le_bytes());
        h.update((b - a).to_le_bytes());
        h.update(&data[..(b - a) as usize]);
    }
    Ok(hex::encode(h.finalize()))
}

fn file_for(dir: &Path, key: &str) -> PathBuf {
    dir.join("hash-states").join(format!("{key}.state"))
}

/// The saved hasher for `key`, if there is a sound one.
pub fn load(dir: &Path, key: &str) -> Option<sha2::Sha256> {
    let bytes = std::fs::read(file_for(dir, key)).ok()?;
    let rest = bytes.strip_prefix(MAGIC)?;
    let (stored_key, rest) = rest.split_at_checked(key.len())?;
    if stored_key != key.as_bytes() {
        return None;
    }
    let (state, sum) = rest.split_at_checked(rest.len().checked_sub(32)?)?;
    if sha2::Sha256::digest(&bytes[..bytes.len() - 32]).as_slice() != sum {
        return None;
    }
    let state = SerializedState::<sha2::Sha256>::try_from(state).ok()?;
    sha2::Sha256::deserialize(&state).ok()
}

/// Saves `hasher` under `key` (atomically: a reader sees the old file or the
/// new one), then trims the directory to [`KEEP`] states.
pub fn store(dir: &Path, key: &str, hasher: &sha2::Sha256) -> Result<()> {
    let states = dir.join("hash-states");
    std::fs::create_dir_all(&states).with_context(|| format!("creating {}", states.display()))?;
    set_owner_only(&states)?;
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(key.as_bytes());
    bytes.extend_from_slice(hasher.serialize().as_slice());
    let sum = sha2::Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .tempfile_in(&states)
        .with_context(|| format!("creating a file in {}", states.display()))?;
    std::io::Write::write_all(&mut tmp, &bytes).context("writing a hash state")?;
    tmp.persist(file_for(dir, key))
        .map_err(|e| e.error)
        .context("saving a hash state")?;
    trim(&states)
}

fn set_owner_only(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} owner-only", dir.display()))
}

/// Removes the oldest states beyond [`KEEP`].
fn trim(states: &Path) -> Result<()> {
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(states)
        .with_context(|| format!("listing {}", states.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "state"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if found.len() <= KEEP {
        return Ok(());
    }
    found.sort();
    for (_, path) in &found[..found.len() - KEEP] {
        // Another build may have removed it already.
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The sha256 of the image of `len` bytes whose bytes `fill` gives, chunk by
/// chunk, resuming at `prefix` from a saved state when `cache` holds one for
/// `key`, and saving the state at `prefix` when it did not. A cache that
/// cannot be written only costs the next build its shortcut.
pub fn hash_image(
    len: u64,
    prefix: u64,
    cache: Option<(&Path, &str)>,
    mut fill: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> Result<(String, bool)> {
    const CHUNK: u64 = 4 << 20;
    ensure!(prefix <= len, "the hash prefix lies past the image's end");
    let saved = cache.and_then(|(dir, key)| load(dir, key));
    let resumed = saved.is_some();
    let (mut h, mut pos) = match saved {
        Some(h) => (h, prefix),
        None => (sha2::Sha256::new(), 0),
    };
    let save = |h: &sha2::Sha256| {
        if let Some((dir, key)) = cache
            && let Err(e) = store(dir, key, h)
        {
            crate::errln!(
                "note: the image's hash state was not saved ({e:#}); the next build hashes it in full"
            );
        }
    };
    let mut buf = vec![0u8; CHUNK as usize];
    loop {
        if pos == prefix && !resumed {
            save(&h);
        }
        if pos >= len {
            break;
        }
        // Chunks stop at `prefix`, where the state is saved.
        let stop = if pos < prefix { prefix } else { len };
        let end = (pos + CHUNK).min(stop);
        let chunk = &mut buf[..(end - pos) as usize];
        fill(pos, chunk).context("hashing the image")?;
        h.update(&*chunk);
        pos = end;
    }
    Ok((hex::encode(h.finalize()), resumed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn hash(img: &[u8], prefix: u64, cache: Option<(&Path, &str)>) -> (String, bool) {
        hash_image(img.len() as u64, prefix, cache, |pos, buf| {
            buf.copy_from_slice(&img[pos as usize..pos as usize + buf.len()]);
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn a_resumed_hash_equals_the_full_hash_at_any_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for (len, prefix) in [
            (9_000_001, 5_000_003),
            (64, 0),
            (100, 100),
            (4 << 20, 1 << 20),
        ] {
            let img = image(len);
            let want = hex::encode(sha2::Sha256::digest(&img));
            let key = format!("k{len}-{prefix}");
            let c = Some((dir.path(), key.as_str()));
            assert_eq!(hash(&img, prefix as u64, c), (want.clone(), false));
            assert_eq!(hash(&img, prefix as u64, c), (want, true), "{len} {prefix}");
        }
    }

    #[test]
    fn a_damaged_or_foreign_state_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(3_000_000);
        let want = hex::encode(sha2::Sha256::digest(&img));
        let c = Some((dir.path(), "abc"));
        hash(&img, 1 << 20, c);
        let path = file_for(dir.path(), "abc");
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 40] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(hash(&img, 1 << 20, c), (want.clone(), false));
        // A state saved under another key, copied to this one's name.
        hash(&img, 1 << 20, Some((dir.path(), "other")));
        std::fs::copy(file_for(dir.path(), "other"), file_for(dir.path(), "abd")).unwrap();
        assert!(load(dir.path(), "abd").is_none());
    }

    #[test]
    fn the_key_changes_with_the_iso_and_with_patches_inside_the_prefix_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("iso");
        std::fs::write(&p, b"0123456789").unwrap();
        let f = File::open(&p).unwrap();
        let w = |o: u64, b: &[u8]| vec![(o, b.to_vec())];
        let k = key(&f, 100, &w(10, b"ab")).unwrap();
        assert_eq!(k, key(&f, 100, &w(10, b"ab")).unwrap());
        assert_ne!(k, key(&f, 100, &w(10, b"ac")).unwrap());
        assert_ne!(k, key(&f, 100, &w(11, b"ab")).unwrap());
        assert_ne!(k, key(&f, 101, &w(10, b"ab")).unwrap());
        // Past the prefix: the seed partition, hashed on every build anyway.
        let mut past = w(10, b"ab");
        past.push((100, b"seed".to_vec()));
        assert_eq!(k, key(&f, 100, &past).unwrap());
        // Rewriting the ISO with the same bytes moves its ctime.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, b"0123456789").unwrap();
        let f = File::open(&p).unwrap();
        assert_ne!(k, key(&f, 100, &w(10, b"ab")).unwrap());
    }

    #[test]
    fn only_the_newest_states_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let h = sha2::Sha256::new();
        for i in 0..KEEP + 3 {
            store(dir.path(), &format!("{i:04}"), &h).unwrap();
        }
        let n = std::fs::read_dir(dir.path().join("hash-states"))
            .unwrap()
            .count();
        assert_eq!(n, KEEP);
    }
}
