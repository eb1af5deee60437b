//! Reproducible disk images for NoCloud seeds.
//!
//! [`fat::build_fat`] makes a FAT filesystem labelled for cloud-init and
//! [`seed::seed_image`] wraps it in a GPT disk image that can be written to a
//! USB stick or attached to a VM. Everything is built in memory and depends
//! only on the input files and an epoch, so the same cluster file always gives
//! byte-identical images (hashes in the manifest stay stable, and a rebuild
//! shows no spurious diff).

pub mod fat;
pub mod seed;

use std::fs::File;
use std::io::{Seek as _, SeekFrom, Write as _};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

pub use fat::build_fat;
pub use seed::{seed_image, seed_image_hashed, write_seed_image};

/// Granularity of the holes [`write_sparse`] leaves; the usual filesystem
/// block size.
const SPARSE_BLOCK: usize = 4096;

static ZEROES: [u8; SPARSE_BLOCK] = [0; SPARSE_BLOCK];

/// The timestamp used when `SOURCE_DATE_EPOCH` is unset: 2020-01-01T00:00:00Z.
///
/// A fixed value rather than the clock, so that two builds of the same input
/// are byte-identical without anyone having to remember to set the variable.
pub const DEFAULT_EPOCH: i64 = 1_577_836_800;

/// The environment variable of the reproducible-builds convention.
const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The timestamp to stamp into images: `SOURCE_DATE_EPOCH` (seconds since
/// 1970-01-01 UTC) when set, else [`DEFAULT_EPOCH`]. Never the clock.
pub fn source_date_epoch() -> anyhow::Result<i64> {
    match std::env::var(SOURCE_DATE_EPOCH) {
        Ok(value) => value.trim().parse::<i64>().with_context(|| {
            format!("{SOURCE_DATE_EPOCH}={value:?} is not an integer number of seconds since 1970")
        }),
        Err(std::env::VarError::NotPresent) => Ok(DEFAULT_EPOCH),
        Err(err @ std::env::VarError::NotUnicode(_)) => {
            Err(err).with_context(|| format!("reading {SOURCE_DATE_EPOCH}"))
        }
    }
}

/// The [`content_digest`] domain of seed content: one digest per seed names
/// its FAT volume and, in a seed image, its disk and partition.
pub(crate) const SEED_DOMAIN: &str = "microseed seed";

/// A digest of everything that determines an image, used to derive the
/// identifiers (volume id, GUIDs) that tools would otherwise pick at random.
/// `sha256` holds each file's SHA-256, in `files` order: a build has them
/// already (see [`crate::documents::Documents::sha256`]), so a file's bytes
/// are not hashed again here.
///
/// Lengths are hashed before each field so that moving bytes between a name
/// and its contents cannot produce the same digest.
pub(crate) fn content_digest(
    domain: &str,
    files: &[(&str, &[u8])],
    sha256: &[[u8; 32]],
    label: &str,
    epoch: i64,
) -> [u8; 32] {
    debug_assert_eq!(files.len(), sha256.len(), "one digest per file");
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(domain.as_bytes());
    field(label.as_bytes());
    field(&epoch.to_le_bytes());
    for ((name, data), sum) in files.iter().zip(sha256) {
        field(name.as_bytes());
        field(&(data.len() as u64).to_le_bytes());
        field(sum);
    }
    hasher.finalize().into()
}

/// The SHA-256 of each file, for a caller that has not hashed them.
pub(crate) fn file_digests(files: &[(&str, &[u8])]) -> Vec<[u8; 32]> {
    files
        .iter()
        .map(|(_, d)| Sha256::digest(d).into())
        .collect()
}

/// Writes the non-zero 4 KiB blocks of `bytes` and seeks over the rest; the
/// final `set_len` gives the file its full length even if it ends in a hole.
/// Disk images are mostly empty space: a 176.5 KiB seed image of a
/// 1,000-machine fleet takes 84 KiB on disk. Used for seed images both in a build's output and by
/// [`write_seed_image`].
pub fn write_sparse(file: &mut File, bytes: &[u8]) -> anyhow::Result<()> {
    let mut run_start: Option<usize> = None;
    for (index, block) in bytes.chunks(SPARSE_BLOCK).enumerate() {
        let offset = index * SPARSE_BLOCK;
        // One memcmp against a zero block: a byte loop with an early exit
        // was 6% of a fleet build.
        let zero = block == &ZEROES[..block.len()];
        match (zero, run_start) {
            (false, None) => run_start = Some(offset),
            (true, Some(start)) => {
                write_at(file, start, &bytes[start..offset])?;
                run_start = None;
            }
            _ => {}
        }
    }
    if let Some(start) = run_start {
        write_at(file, start, &bytes[start..])?;
    }
    file.set_len(bytes.len() as u64)
        .context("extending the file to the image size")?;
    Ok(())
}

fn write_at(file: &mut File, offset: usize, bytes: &[u8]) -> anyhow::Result<()> {
    file.seek(SeekFrom::Start(offset as u64))
        .with_context(|| format!("seeking to byte {offset}"))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {} bytes at byte {offset}", bytes.len()))
}
