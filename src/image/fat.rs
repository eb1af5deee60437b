//! A small, reproducible FAT filesystem holding files in its root directory.
//!
//! cloud-init's NoCloud datasource looks for a FAT (or ISO 9660) filesystem
//! labelled `CIDATA`. The filesystem is formatted with `fatfs` in memory;
//! everything the library would take from the clock or pick arbitrarily
//! (timestamps, volume id) is derived from the inputs instead.

use std::cell::Cell;
use std::io::{Cursor, Write as _};

use anyhow::{Context as _, bail, ensure};
use fatfs::{
    Date, DateTime, FatType, FileSystem, FormatVolumeOptions, FsOptions, Time, TimeProvider,
};

use sha2::{Digest as _, Sha256};

use super::content_digest;

const MIB: u64 = 1 << 20;
/// Size granularity of the filesystem. Small steps keep seed images small:
/// a fleet build hashes and writes every byte of every image.
const STEP: u64 = 64 * 1024;

/// Free room kept for an empty directory's future files: a hardware
/// report is 1 to 3 KiB, so about 300 machines' reports.
const ROOM_PER_EMPTY_DIR: u64 = MIB;
/// The smallest cluster wastes the least space on a handful of tiny files, and
/// fixing it (instead of letting `fatfs` choose by volume size) keeps the
/// sizing arithmetic below valid for every volume size.
const CLUSTER: u64 = 512;
/// Seeds are kilobytes; anything near this is a mistake, and the whole image
/// lives in memory.
const MAX_FAT_BYTES: u64 = 256 * MIB;
/// Bytes of a directory entry; the volume-label entry is the first one.
const DIR_ENTRY: usize = 32;
const ATTR_VOLUME_ID: u8 = 0x08;

/// 1980-01-01T00:00:00Z, the first instant a FAT timestamp can hold.
const FAT_MIN_EPOCH: i64 = 315_532_800;
/// 2107-12-31T23:59:59Z, the last instant a FAT timestamp can hold.
const FAT_MAX_EPOCH: i64 = 4_354_819_199;

/// Builds a FAT filesystem image holding `files` (name, contents) in its root
/// directory, labelled `label` both in the boot sector and in the
/// root-directory volume-label entry (cloud-init 20.1, Ubuntu 20.04's, reads
/// only the latter).
///
/// Every timestamp is `epoch` (seconds since 1970 UTC, clamped to the FAT
/// range 1980..=2107) and the volume id is derived from the inputs, so equal
/// inputs give byte-identical images. The size is a multiple of 64 KiB, at
/// least 128 KiB: the smallest that holds the files and a quarter more
/// (128 KiB for a usual seed).
pub fn build_fat(files: &[(&str, &[u8])], label: &str, epoch: i64) -> anyhow::Result<Vec<u8>> {
    let size = fat_size(files)?;
    let len = usize::try_from(size).context("FAT image size does not fit in memory")?;
    let mut image = vec![0u8; len];
    let sha256 = super::file_digests(files);
    let digest = content_digest(super::SEED_DOMAIN, files, &sha256, label, epoch);
    format_into(&mut image, files, label, epoch, volume_id(&digest))?;
    Ok(image)
}

/// The size in bytes [`build_fat`] uses for `files`, so that a caller can
/// reserve the space inside a larger image and format it in place.
pub(crate) fn fat_size(files: &[(&str, &[u8])]) -> anyhow::Result<u64> {
    // Each directory below the root takes a cluster of its own (at least).
    let dirs: std::collections::BTreeSet<&str> = files
        .iter()
        .flat_map(|(name, _)| name.match_indices('/').map(|(i, _)| &name[..i]))
        .collect();
    let data: u64 = files
        .iter()
        .map(|(_, bytes)| (bytes.len() as u64).div_ceil(CLUSTER) * CLUSTER)
        .sum::<u64>()
        + dirs.len() as u64 * CLUSTER
        // A long name's entries in a subdirectory, which grows by clusters
        // (the root's entries are in the overhead below).
        + if dirs.is_empty() { 0 } else { files.len() as u64 * 96 };
    // A quarter more lets someone fix a typo in user-data on the stick
    // itself. No more than that: a fleet build hashes and writes every byte
    // of every image, and 64 KiB more (the slack before) made a
    // 1,000-machine build's images 40% larger. Directory clusters on FAT32
    // are in the overhead below.
    // A directory listed bare (`reports/`) is there to be written into
    // later: the cluster stick's machines save hardware reports in it.
    let empty_dirs = files
        .iter()
        .filter(|(name, bytes)| name.ends_with('/') && bytes.is_empty())
        .count() as u64;
    let wanted = data + data / 4 + empty_dirs * ROOM_PER_EMPTY_DIR;
    let mut size = 2 * STEP;
    loop {
        // Boot sector, reserved sectors and the 512-entry root directory of
        // FAT12/16, plus two FATs at FAT32's 4 bytes per cluster: an upper
        // bound for every FAT type fatfs may pick at this size.
        let overhead = 32 * 1024 + 2 * 4 * (size / CLUSTER);
        if size >= wanted + overhead {
            return Ok(size);
        }
        size += STEP;
        if size > MAX_FAT_BYTES {
            bail!(
                "the files total {data} bytes; a seed filesystem is limited to {} MiB",
                MAX_FAT_BYTES / MIB
            );
        }
    }
}

/// The FAT volume id for content whose [`content_digest`] is `digest`: the
/// same volume whether it stands alone or inside a seed image, whose GUIDs
/// come from the same digest (domain-separated here, so that the id repeats
/// no bytes of a GUID).
pub(crate) fn volume_id(digest: &[u8; 32]) -> u32 {
    let id = Sha256::new()
        .chain_update(b"microseed fat volume id")
        .chain_update(digest)
        .finalize();
    u32::from_le_bytes([id[0], id[1], id[2], id[3]])
}

/// Formats `image` (all zeroes, a whole number of sectors) as FAT with
/// `volume_id` and writes `files` into its root directory; see [`build_fat`].
/// The caller derives the id from the content, so that equal inputs give
/// equal bytes.
pub(crate) fn format_into(
    image: &mut [u8],
    files: &[(&str, &[u8])],
    label: &str,
    epoch: i64,
    volume_id: u32,
) -> anyhow::Result<()> {
    let label_bytes = fat_label(label)?;
    check_names(files)?;

    fatfs::format_volume(
        Cursor::new(&mut *image),
        FormatVolumeOptions::new()
            .bytes_per_cluster(CLUSTER as u32)
            .volume_id(volume_id)
            .volume_label(label_bytes),
    )
    .with_context(|| format!("formatting a {} byte FAT filesystem", image.len()))?;

    let now = fat_date_time(epoch);
    {
        let _clock = EpochClock::set(now);
        let fs = FileSystem::new(
            Cursor::new(&mut *image),
            FsOptions::new().time_provider(&EPOCH_CLOCK),
        )
        .context("opening the freshly formatted FAT filesystem")?;
        let root = fs.root_dir();
        for (name, bytes) in files {
            // `a/b/c` creates the directories `a` and `a/b` first (opening
            // them when an earlier name made them); `a/` is a directory alone.
            let mut parts: Vec<&str> = name.split('/').collect();
            let leaf = parts.pop().unwrap_or_default();
            let mut dir = root.clone();
            for part in parts {
                dir = dir
                    .create_dir(part)
                    .with_context(|| format!("creating the directory of {name:?} in FAT"))?;
            }
            if leaf.is_empty() {
                continue;
            }
            let mut file = dir
                .create_file(leaf)
                .with_context(|| format!("creating {name:?} in the FAT filesystem"))?;
            file.write_all(bytes)
                .with_context(|| format!("writing {} bytes to {name:?}", bytes.len()))?;
            // Drop would flush too, but would only log a failure.
            file.flush()
                .with_context(|| format!("flushing {name:?} to the FAT filesystem"))?;
        }
        drop(root);
        if fs.fat_type() == FatType::Fat32 {
            // fatfs leaves FAT32's FSInfo free-cluster count "unknown", which
            // fsck reports; counting them makes it record the real number.
            fs.stats().context("counting free FAT32 clusters")?;
        }
        // Unmounting clears the "volume dirty" bit that mounting set; without
        // it fsck reports the filesystem as not cleanly unmounted.
        fs.unmount().context("unmounting the FAT filesystem")?;
    }

    stamp_label_entry(image, now)
}

/// The 11-byte, space-padded label as FAT stores it.
fn fat_label(label: &str) -> anyhow::Result<[u8; 11]> {
    ensure!(
        !label.is_empty() && label.len() <= 11,
        "FAT volume label {label:?} must be 1 to 11 characters"
    );
    // The characters DOS forbids in names; lowercase is allowed because
    // cloud-init accepts `cidata` as well.
    ensure!(
        label
            .bytes()
            .all(|b| b == b' ' || (b.is_ascii_graphic() && !b"\"*+,./:;<=>?[\\]|".contains(&b))),
        "FAT volume label {label:?} may hold only ASCII letters, digits and simple punctuation"
    );
    let mut bytes = [b' '; 11];
    bytes[..label.len()].copy_from_slice(label.as_bytes());
    Ok(bytes)
}

/// Rejects names that `fatfs` would treat as paths or that would collide:
/// FAT compares names without regard to case, and `create_file` on an
/// existing name opens it instead of failing.
fn check_names(files: &[(&str, &[u8])]) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(files.len());
    for (name, _) in files {
        // `dir/name` and `dir/` (a directory alone) are paths below the root.
        let body = name.strip_suffix('/').unwrap_or(name);
        ensure!(
            !body.is_empty()
                && body.split('/').all(|c| {
                    !c.is_empty()
                        && c != "."
                        && c != ".."
                        && !c.contains(['\\', '\0'])
                        && c.chars().count() <= 255
                }),
            "{name:?} is not a valid file name for a FAT filesystem"
        );
        ensure!(
            seen.insert(name.to_lowercase()),
            "{name:?} appears twice among the seed files (FAT names ignore case)"
        );
    }
    Ok(())
}

/// `fatfs` formats the volume-label entry with zero (invalid, month 0)
/// timestamps; give it the same ones as the files.
fn stamp_label_entry(image: &mut [u8], now: DateTime) -> anyhow::Result<()> {
    let offset = root_dir_offset(image)?;
    let entry = image
        .get_mut(offset..offset + DIR_ENTRY)
        .context("the FAT root directory lies outside the image")?;
    ensure!(
        entry[11] == ATTR_VOLUME_ID,
        "the first FAT root-directory entry is not the volume label"
    );
    let (date, time, centis) = encode_dos(now);
    entry[13] = centis;
    entry[14..16].copy_from_slice(&time.to_le_bytes());
    entry[16..18].copy_from_slice(&date.to_le_bytes());
    entry[18..20].copy_from_slice(&date.to_le_bytes());
    entry[22..24].copy_from_slice(&time.to_le_bytes());
    entry[24..26].copy_from_slice(&date.to_le_bytes());
    Ok(())
}

/// Byte offset of the root directory, read back from the boot sector that
/// `fatfs` wrote (FAT32 keeps it in a cluster, FAT12/16 right after the FATs).
pub(crate) fn root_dir_offset(image: &[u8]) -> anyhow::Result<usize> {
    ensure!(
        image.len() >= 512,
        "a FAT image needs at least a boot sector"
    );
    let u16_at = |at: usize| u16::from_le_bytes([image[at], image[at + 1]]) as usize;
    let u32_at = |at: usize| {
        u32::from_le_bytes([image[at], image[at + 1], image[at + 2], image[at + 3]]) as usize
    };
    let bytes_per_sector = u16_at(0x0B);
    let sectors_per_cluster = image[0x0D] as usize;
    let reserved = u16_at(0x0E);
    let fats = image[0x10] as usize;
    let root_entries = u16_at(0x11);
    let fat_sectors = match u16_at(0x16) {
        0 => u32_at(0x24),
        n => n,
    };
    let fats_end = (reserved + fats * fat_sectors) * bytes_per_sector;
    if root_entries != 0 {
        return Ok(fats_end);
    }
    let root_cluster = u32_at(0x2C);
    ensure!(
        root_cluster >= 2,
        "FAT32 root cluster {root_cluster} is invalid"
    );
    Ok(fats_end + (root_cluster - 2) * sectors_per_cluster * bytes_per_sector)
}

thread_local! {
    /// What [`EPOCH_CLOCK`] reports on this thread. `fatfs` wants a `'static`
    /// time provider, but the epoch is a per-call argument: keeping it per
    /// thread lets concurrent builds with different epochs coexist without
    /// leaking a provider per call.
    static NOW: Cell<DateTime> = const { Cell::new(DOS_EPOCH) };
}

const DOS_EPOCH: DateTime = DateTime {
    date: Date {
        year: 1980,
        month: 1,
        day: 1,
    },
    time: Time {
        hour: 0,
        min: 0,
        sec: 0,
        millis: 0,
    },
};

/// A `fatfs` time provider reporting the epoch of the build running on the
/// calling thread.
#[derive(Debug)]
struct EpochClock;

static EPOCH_CLOCK: EpochClock = EpochClock;

impl EpochClock {
    /// Sets this thread's time until the guard is dropped, restoring the
    /// previous one so an error path cannot leak a stale time into the next
    /// build.
    fn set(now: DateTime) -> ClockGuard {
        ClockGuard(NOW.with(|cell| cell.replace(now)))
    }
}

impl TimeProvider for EpochClock {
    fn get_current_date(&self) -> Date {
        NOW.with(|cell| cell.get().date)
    }

    fn get_current_date_time(&self) -> DateTime {
        NOW.with(Cell::get)
    }
}

struct ClockGuard(DateTime);

impl Drop for ClockGuard {
    fn drop(&mut self) {
        NOW.with(|cell| cell.set(self.0));
    }
}

/// `epoch` as a FAT timestamp (UTC: FAT has no time zone, and UTC keeps the
/// image independent of the build machine's zone).
fn fat_date_time(epoch: i64) -> DateTime {
    let epoch = epoch.clamp(FAT_MIN_EPOCH, FAT_MAX_EPOCH);
    let (days, secs) = (epoch.div_euclid(86_400), epoch.rem_euclid(86_400));
    let d = crate::day::Day::from_unix_days(days);
    // The clamp keeps every field within the FAT ranges, so the narrowing
    // conversions cannot truncate.
    DateTime {
        date: Date {
            year: d.year as u16,
            month: d.month as u16,
            day: d.day as u16,
        },
        time: Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}

/// (date, time, 10 ms units) as FAT directory entries store them, matching
/// what `fatfs` writes for files.
fn encode_dos(now: DateTime) -> (u16, u16, u8) {
    let DateTime { date, time } = now;
    let dos_date = ((date.year - 1980) << 9) | (date.month << 5) | date.day;
    let dos_time = (time.hour << 11) | (time.min << 5) | (time.sec / 2);
    let centis = (time.millis / 10 + (time.sec % 2) * 100) as u8;
    (dos_date, dos_time, centis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_converts_to_utc_calendar_date() {
        let dt = fat_date_time(1_577_836_800);
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2020, 1, 1));
        let dt = fat_date_time(1_709_210_096); // 2024-02-29T12:34:56Z
        assert_eq!((dt.date.year, dt.date.month, dt.date.day), (2024, 2, 29));
        assert_eq!((dt.time.hour, dt.time.min, dt.time.sec), (12, 34, 56));
    }

    #[test]
    fn epoch_outside_fat_range_is_clamped() {
        assert_eq!(fat_date_time(0), DOS_EPOCH);
        assert_eq!(fat_date_time(i64::MIN), DOS_EPOCH);
        let last = fat_date_time(i64::MAX);
        assert_eq!(
            (last.date.year, last.date.month, last.date.day),
            (2107, 12, 31)
        );
        assert_eq!((last.time.hour, last.time.min, last.time.sec), (23, 59, 59));
        let next = crate::day::Day::from_unix_days((FAT_MAX_EPOCH + 1) / 86_400);
        assert_eq!((next.year, next.month, next.day), (2108, 1, 1));
    }

    #[test]
    fn clock_is_restored_after_a_build() {
        let before = NOW.with(Cell::get);
        {
            let _guard = EpochClock::set(fat_date_time(1_700_000_000));
            assert_ne!(EPOCH_CLOCK.get_current_date_time(), before);
        }
        assert_eq!(NOW.with(Cell::get), before);
    }

    #[test]
    fn fat_size_grows_with_content_in_whole_steps() {
        assert_eq!(fat_size(&[("a", b"x")]).unwrap(), 2 * STEP);
        let big = vec![1u8; 1_500_000];
        let size = fat_size(&[("a", &big)]).unwrap();
        assert_eq!(size % STEP, 0);
        assert!(size >= 1_500_000);
        let huge = vec![0u8; 300 << 20];
        assert!(fat_size(&[("a", &huge)]).is_err());
    }

    #[test]
    fn an_empty_directory_keeps_a_mebibyte_free_for_its_future_files() {
        let files: &[(&str, &[u8])] = &[("a", &[7u8; 40_000]), ("reports/", b"")];
        let image = build_fat(files, "CIDATA", 0).unwrap();
        let fs =
            fatfs::FileSystem::new(std::io::Cursor::new(image), fatfs::FsOptions::new()).unwrap();
        let stats = fs.stats().unwrap();
        let free = u64::from(stats.free_clusters()) * u64::from(stats.cluster_size());
        assert!(free >= MIB, "{free} bytes free");
    }

    #[test]
    fn files_in_subdirectories_read_back_and_a_bare_directory_is_made() {
        use std::io::Read as _;
        let files: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| {
                (
                    format!("microseed/machines/machine-{i}/select.env"),
                    vec![b'x'; 300],
                )
            })
            .chain([("microseed/reports/".to_string(), Vec::new())])
            .chain([("user-data".to_string(), b"#cloud-config\n".to_vec())])
            .collect();
        let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
        let mut img = build_fat(&refs, "CIDATA", 0).unwrap();
        let fs = FileSystem::new(Cursor::new(&mut img[..]), FsOptions::new()).unwrap();
        let mut text = String::new();
        fs.root_dir()
            .open_file("microseed/machines/machine-39/select.env")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text.len(), 300);
        assert!(fs.root_dir().open_dir("microseed/reports").is_ok());
        assert!(build_fat(&[("a/../b", b"x")], "CIDATA", 0).is_err());
        assert!(build_fat(&[("a//b", b"x")], "CIDATA", 0).is_err());
    }
}
