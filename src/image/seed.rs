//! A raw disk image carrying one machine's NoCloud seed.
//!
//! Layout: protective MBR, GPT, one "Microsoft basic data" partition named
//! `CIDATA` from 32 KiB (LBA 64) holding the FAT of [`build_fat`](super::fat::build_fat),
//! backup GPT at the very end. cloud-init scans partitions as well as whole
//! disks, so the image works written to a USB stick or attached to a VM, and
//! the partition table lets the stick show up sanely in any OS.
//!
//! The image is formatted in place inside one buffer (no temporary files, no
//! copy of the filesystem) because a cluster build makes one per machine and
//! benchmarks thousands.

use std::collections::BTreeMap;
use std::fs::{OpenOptions, Permissions};
use std::io::Cursor;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, ensure};
use gpt::GptConfig;
use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition::Partition;
use gpt::partition_types;
use uuid::Builder;

use super::{content_digest, fat, write_sparse};

/// Filesystem label and GPT partition name; cloud-init looks for the label.
pub const SEED_LABEL: &str = "CIDATA";

const SECTOR: u64 = 512;
/// 32 KiB: past the primary GPT and aligned for 4 KiB-sector devices. The
/// usual 1 MiB erase-block alignment buys nothing for a seed read once at
/// boot, and would be most of every image's bytes.
const PARTITION_START_LBA: u64 = 64;
/// The backup GPT: 128 entries of 128 bytes (32 sectors) plus its header.
const BACKUP_GPT_SECTORS: u64 = 33;

/// Builds the raw disk image for a seed holding `files` (name, contents),
/// e.g. `user-data`, `meta-data` and `network-config`.
///
/// Deterministic: the disk and partition GUIDs and the FAT volume id are
/// derived from a SHA-256 of the inputs, and every timestamp is `epoch` (see
/// [`source_date_epoch`](super::source_date_epoch)), so equal inputs give
/// byte-identical images. A usual seed gives an image of about 200 KiB
/// (32 KiB of GPT and alignment, a FAT of 128 or 192 KiB, the 16.5 KiB
/// backup GPT).
pub fn seed_image(files: &[(&str, &[u8])], epoch: i64) -> anyhow::Result<Vec<u8>> {
    let fat_bytes = fat::fat_size(files)?;
    let fat_sectors = fat_bytes / SECTOR;
    let total_sectors = PARTITION_START_LBA + fat_sectors + BACKUP_GPT_SECTORS;
    let total_bytes = usize::try_from(total_sectors * SECTOR)
        .context("seed image size does not fit in memory")?;
    let mut image = vec![0u8; total_bytes];

    // Both bounds are whole sectors inside `image` by construction.
    let start = (PARTITION_START_LBA * SECTOR) as usize;
    let end = start + fat_bytes as usize;
    let partition = &mut image[start..end];
    fat::format_into(partition, files, SEED_LABEL, epoch)
        .context("building the CIDATA filesystem")?;
    set_hidden_sectors(partition, PARTITION_START_LBA)?;

    let digest = content_digest("microseed seed gpt", files, SEED_LABEL, epoch);
    write_partition_table(&mut image, total_sectors, fat_sectors, &digest)?;
    Ok(image)
}

/// Writes [`seed_image`] to `path` with mode 0600 (user-data can carry join
/// tokens and password hashes), replacing any existing file. Runs of zeroes
/// are left as holes where the filesystem supports them (see
/// [`write_sparse`](super::write_sparse)).
pub fn write_seed_image(path: &Path, files: &[(&str, &[u8])], epoch: i64) -> anyhow::Result<()> {
    let image = seed_image(files, epoch)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating seed image {}", path.display()))?;
    // `mode` applies only to a new file; an existing one keeps its mode,
    // so tighten it before any content is written.
    file.set_permissions(Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", path.display()))?;
    write_sparse(&mut file, &image)
        .with_context(|| format!("writing seed image {}", path.display()))
}

/// Records the partition's start in the FAT boot sector ("hidden sectors"),
/// as `mkfs.fat --offset` does; firmware and Windows use it, Linux ignores it.
/// `fatfs` always writes 0 because it does not know where the volume will go.
fn set_hidden_sectors(fat: &mut [u8], start_lba: u64) -> anyhow::Result<()> {
    let hidden = u32::try_from(start_lba)
        .context("partition start does not fit a FAT boot sector")?
        .to_le_bytes();
    ensure!(fat.len() >= 512, "FAT image is smaller than a boot sector");
    fat[0x1C..0x20].copy_from_slice(&hidden);
    // FAT32 (no 16-bit FAT size) keeps a backup boot sector that fsck
    // compares with the primary.
    let fat16_sectors = u16::from_le_bytes([fat[0x16], fat[0x17]]);
    if fat16_sectors == 0 {
        let bytes_per_sector = u16::from_le_bytes([fat[0x0B], fat[0x0C]]) as usize;
        let backup = u16::from_le_bytes([fat[0x32], fat[0x33]]) as usize * bytes_per_sector;
        if backup != 0 {
            fat.get_mut(backup + 0x1C..backup + 0x20)
                .context("FAT32 backup boot sector lies outside the image")?
                .copy_from_slice(&hidden);
        }
    }
    Ok(())
}

/// Writes the protective MBR and both GPTs around the already formatted
/// partition.
fn write_partition_table(
    image: &mut [u8],
    total_sectors: u64,
    fat_sectors: u64,
    digest: &[u8; 32],
) -> anyhow::Result<()> {
    // `gpt` would pick random GUIDs; hash-derived ones keep the image
    // reproducible while still differing between machines. The v4 bits are
    // set so the GUIDs are well-formed.
    let half = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[range]);
        Builder::from_random_bytes(bytes).into_uuid()
    };
    let (disk_guid, partition_guid) = (half(0..16), half(16..32));

    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(Cursor::new(&mut *image), Some(disk_guid))
        .context("creating the GPT")?;
    let last_lba = PARTITION_START_LBA + fat_sectors - 1;
    ensure!(
        last_lba <= disk.header().last_usable,
        "the CIDATA partition (last sector {last_lba}) overlaps the backup GPT (from {})",
        disk.header().last_usable + 1
    );
    disk.update_partitions(BTreeMap::from([(
        1,
        Partition {
            part_type_guid: partition_types::BASIC,
            part_guid: partition_guid,
            first_lba: PARTITION_START_LBA,
            last_lba,
            flags: 0,
            name: SEED_LABEL.to_string(),
        },
    )]))
    .context("adding the CIDATA partition to the GPT")?;
    let mut device = disk.write().context("writing the GPT")?;

    // The protective partition covers the disk after the MBR, capped at what
    // 32 bits hold, as the UEFI spec asks.
    let protective_sectors = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    ProtectiveMBR::with_lb_size(protective_sectors)
        .overwrite_lba0(&mut device)
        .context("writing the protective MBR")?;
    Ok(())
}
