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

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, ensure};
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
/// byte-identical images. A usual seed gives an image of 176.5 KiB (32 KiB
/// of GPT and alignment, a FAT of 128 KiB, the 16.5 KiB backup GPT); files
/// over about 75 KB take a larger FAT.
pub fn seed_image(files: &[(&str, &[u8])], epoch: i64) -> anyhow::Result<Vec<u8>> {
    seed_image_hashed(files, &super::file_digests(files), epoch)
}

/// [`seed_image`] of files whose SHA-256s the caller has (`sha256`, in
/// `files` order), as a build does: the image's identifiers come from them.
pub fn seed_image_hashed(
    files: &[(&str, &[u8])],
    sha256: &[[u8; 32]],
    epoch: i64,
) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(files.len() == sha256.len(), "one SHA-256 per seed file");
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
    // One digest of the content names the disk, the partition and the
    // volume: hashing the files once per identifier was 8% of a fleet build.
    let digest = content_digest(super::SEED_DOMAIN, files, sha256, SEED_LABEL, epoch);
    fat::format_into(partition, files, SEED_LABEL, epoch, fat::volume_id(&digest))
        .context("building the CIDATA filesystem")?;
    set_hidden_sectors(partition, PARTITION_START_LBA)?;

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

/// CRC-32/ISO-HDLC, as GPT uses, sixteen bytes a step: the `gpt` crate's
/// byte-at-a-time table over each 16 KiB entry array was 6-8% of a fleet
/// build.
const GPT_CRC: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
/// Partition entries in each GPT, bytes per entry, and the sectors they fill.
const GPT_ENTRIES: usize = 128;
const GPT_ENTRY_BYTES: usize = 128;
const GPT_ENTRY_SECTORS: u64 = (GPT_ENTRIES * GPT_ENTRY_BYTES) as u64 / SECTOR;
/// "Microsoft basic data", the type other systems mount a FAT partition by.
const BASIC_DATA: uuid::Uuid = uuid::Uuid::from_u128(0xEBD0A0A2_B9E5_4433_87C0_68B6B72699C7);

/// Writes the protective MBR and both GPTs around the already formatted
/// partition, as UEFI 2.x lays them out (and as the `gpt` crate wrote them
/// before: a test compares the two byte for byte).
fn write_partition_table(
    image: &mut [u8],
    total_sectors: u64,
    fat_sectors: u64,
    digest: &[u8; 32],
) -> anyhow::Result<()> {
    // Random GUIDs would make every build differ; hash-derived ones keep the
    // image reproducible while still differing between machines. The v4
    // bits are set so the GUIDs are well-formed.
    let half = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[range]);
        Builder::from_random_bytes(bytes).into_uuid()
    };
    let (disk_guid, partition_guid) = (half(0..16), half(16..32));

    ensure!(
        image.len() as u64 == total_sectors * SECTOR,
        "the image is not {total_sectors} sectors long"
    );
    let last_lba = total_sectors - 1;
    let first_usable = 2 + GPT_ENTRY_SECTORS;
    let last_usable = last_lba
        .checked_sub(GPT_ENTRY_SECTORS + 1)
        .context("the image is too small for a GPT")?;
    let part_last = PARTITION_START_LBA + fat_sectors - 1;
    ensure!(
        part_last <= last_usable,
        "the CIDATA partition (last sector {part_last}) overlaps the backup GPT (from {})",
        last_usable + 1
    );

    let mut entries = vec![0u8; GPT_ENTRIES * GPT_ENTRY_BYTES];
    let entry = &mut entries[..GPT_ENTRY_BYTES];
    entry[0..16].copy_from_slice(&BASIC_DATA.to_bytes_le());
    entry[16..32].copy_from_slice(&partition_guid.to_bytes_le());
    entry[32..40].copy_from_slice(&PARTITION_START_LBA.to_le_bytes());
    entry[40..48].copy_from_slice(&part_last.to_le_bytes());
    // Attributes (48..56) stay 0; the name is UTF-16LE, 36 units at most.
    for (i, unit) in SEED_LABEL.encode_utf16().take(36).enumerate() {
        entry[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    let entries_crc = GPT_CRC.checksum(&entries);

    let header = |my_lba: u64, alternate_lba: u64, entries_lba: u64| {
        let mut h = [0u8; 92];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes()); // revision 1.0
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        // 16..20: the header's CRC, computed with the field zeroed.
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.to_bytes_le());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(GPT_ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(GPT_ENTRY_BYTES as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = GPT_CRC.checksum(&h);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let backup_entries_lba = last_usable + 1;
    let mut put = |lba: u64, bytes: &[u8]| {
        let at = (lba * SECTOR) as usize;
        image[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(1, &header(1, last_lba, 2));
    put(2, &entries);
    put(backup_entries_lba, &entries);
    put(last_lba, &header(last_lba, 1, backup_entries_lba));

    // The protective MBR: one partition of type 0xEE over the disk after
    // the MBR, capped at what 32 bits hold, as the UEFI spec asks.
    let protective_sectors = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
    let mut record = [0u8; 16];
    record[1..4].copy_from_slice(&[0x00, 0x02, 0x00]); // CHS of LBA 1
    record[4] = 0xEE;
    record[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    record[8..12].copy_from_slice(&1u32.to_le_bytes());
    record[12..16].copy_from_slice(&protective_sectors.to_le_bytes());
    image[..446].fill(0);
    image[446..462].copy_from_slice(&record);
    image[462..510].fill(0);
    image[510..512].copy_from_slice(&[0x55, 0xAA]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The partition tables as the `gpt` crate writes them, which seed
    /// images used before (their bytes must not change).
    fn with_gpt_crate(image: &mut [u8], total_sectors: u64, fat_sectors: u64, digest: &[u8; 32]) {
        use gpt::GptConfig;
        use gpt::disk::LogicalBlockSize;
        use gpt::mbr::ProtectiveMBR;
        use gpt::partition::Partition;
        use std::io::Cursor;
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
            .expect("gpt");
        disk.update_partitions(BTreeMap::from([(
            1,
            Partition {
                part_type_guid: gpt::partition_types::BASIC,
                part_guid: partition_guid,
                first_lba: PARTITION_START_LBA,
                last_lba: PARTITION_START_LBA + fat_sectors - 1,
                flags: 0,
                name: SEED_LABEL.to_string(),
            },
        )]))
        .expect("partition");
        let mut device = disk.write().expect("write");
        let protective = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
        ProtectiveMBR::with_lb_size(protective)
            .overwrite_lba0(&mut device)
            .expect("mbr");
    }

    #[test]
    fn partition_tables_are_byte_identical_to_the_gpt_crates() {
        for (fat_kib, seed) in [(128u64, 0u8), (192, 1), (256, 7), (64 * 1024, 200)] {
            let fat_sectors = fat_kib * 1024 / SECTOR;
            let total = PARTITION_START_LBA + fat_sectors + BACKUP_GPT_SECTORS;
            let digest: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ seed);
            // The FAT's bytes between the tables must be left alone.
            let mut ours = vec![0xA5u8; (total * SECTOR) as usize];
            ours[..(PARTITION_START_LBA * SECTOR) as usize].fill(0);
            let tail = ((PARTITION_START_LBA + fat_sectors) * SECTOR) as usize;
            ours[tail..].fill(0);
            let mut theirs = ours.clone();
            write_partition_table(&mut ours, total, fat_sectors, &digest).expect("ours");
            with_gpt_crate(&mut theirs, total, fat_sectors, &digest);
            let first_diff = ours.iter().zip(&theirs).position(|(a, b)| a != b);
            assert_eq!(first_diff, None, "FAT of {fat_kib} KiB");
        }
    }

    #[test]
    fn a_partition_over_the_backup_gpt_is_refused() {
        let mut image = vec![0u8; 200 * SECTOR as usize];
        let err = write_partition_table(&mut image, 200, 200 - 64, &[0; 32]).unwrap_err();
        assert!(err.to_string().contains("overlaps the backup GPT"), "{err}");
    }
}
