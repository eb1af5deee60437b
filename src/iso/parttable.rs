//! The partition tables of a hybrid ISO: read the layout in hand, and register
//! one more partition appended after the ISO.
//!
//! Known layouts (per xorriso's author): (a) an MBR whose outer partition spans
//! the ISO from sector 0 plus a nested 0xef EFI partition, often with a GPT
//! that does not validate (isohybrid `-u`, `-isohybrid-gpt-basdat`: Debian,
//! Ubuntu 20.04); (b) a clean MBR with an 0xef and an ISO 9660 partition; (c) a
//! valid GPT behind a protective MBR (grub-mkrescue, Ubuntu 22.04+). Anything
//! else is refused. All offsets here are 512-byte sectors (LBA).

use anyhow::{Context, Result, bail, ensure};
use sha2::Digest;
use std::fs::File;
use std::os::unix::fs::FileExt;

pub const LBA: u64 = 512;

/// One MBR partition entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct MbrEntry {
    pub status: u8,
    pub chs_start: [u8; 3],
    pub kind: u8,
    pub chs_end: [u8; 3],
    pub start: u32,
    pub sectors: u32,
}

impl MbrEntry {
    fn parse(b: &[u8]) -> Self {
        MbrEntry {
            status: b[0],
            chs_start: [b[1], b[2], b[3]],
            kind: b[4],
            chs_end: [b[5], b[6], b[7]],
            start: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            sectors: u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
        }
    }
    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.status;
        b[1..4].copy_from_slice(&self.chs_start);
        b[4] = self.kind;
        b[5..8].copy_from_slice(&self.chs_end);
        b[8..12].copy_from_slice(&self.start.to_le_bytes());
        b[12..16].copy_from_slice(&self.sectors.to_le_bytes());
        b
    }
    pub fn is_empty(&self) -> bool {
        self.kind == 0 && self.sectors == 0 && self.start == 0
    }
}

/// A GPT as found on disk (the primary header and its entry array).
#[derive(Debug, Clone)]
pub struct Gpt {
    pub header: Vec<u8>,
    pub entries: Vec<u8>,
    pub entries_lba: u64,
    pub num_entries: u32,
    pub entry_size: u32,
    pub alternate_lba: u64,
}

/// The image's partition-table layout.
#[derive(Debug, Clone)]
pub enum Layout {
    /// An MBR with real partitions (layouts a and b), maybe with a GPT beside it.
    HybridMbr {
        mbr: [MbrEntry; 4],
        /// A GPT whose CRCs check out (updated too); `None` when absent or invalid.
        gpt: Option<Gpt>,
    },
    /// A protective MBR (one 0xee entry) in front of a valid GPT (layout c).
    ProtectiveGpt { mbr: [MbrEntry; 4], gpt: Gpt },
}

impl Layout {
    pub fn describe(&self) -> &'static str {
        match self {
            Layout::HybridMbr { gpt: Some(_), .. } => "hybrid MBR (isohybrid) with a GPT",
            Layout::HybridMbr { gpt: None, .. } => "hybrid MBR (isohybrid)",
            Layout::ProtectiveGpt { .. } => "GPT behind a protective MBR",
        }
    }
}

/// Every partition the tables list, as (name for messages, first LBA):
/// MBR slots other than the protective 0xee and the unused 0x00, and GPT
/// entries with a type.
pub fn partitions(layout: &Layout) -> Vec<(String, u64)> {
    let (mbr, gpt) = match layout {
        Layout::HybridMbr { mbr, gpt } => (mbr, gpt.as_ref()),
        Layout::ProtectiveGpt { mbr, gpt } => (mbr, Some(gpt)),
    };
    let mut out: Vec<(String, u64)> = mbr
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.is_empty() && e.kind != 0xee && e.kind != 0 && e.start > 0)
        .map(|(i, e)| (format!("MBR partition {}", i + 1), u64::from(e.start)))
        .collect();
    if let Some(g) = gpt {
        for (i, e) in g.entries.chunks(g.entry_size as usize).enumerate() {
            if e.len() >= 48 && e[..16].iter().any(|b| *b != 0) {
                let first = u64le(&e[32..40]);
                if first > 0 {
                    out.push((format!("GPT partition {}", i + 1), first));
                }
            }
        }
    }
    out
}

/// Read and check the partition tables of an image of `image_len` bytes.
pub fn read_layout(file: &File, image_len: u64) -> Result<Layout> {
    let mut sector0 = [0u8; 512];
    file.read_exact_at(&mut sector0, 0)
        .context("reading the MBR (sector 0)")?;
    if sector0[510] != 0x55 || sector0[511] != 0xAA {
        bail!(
            "unknown image layout: no MBR partition table in sector 0 (a plain ISO 9660 image \
             made without isohybrid cannot boot from a USB stick, and there is nowhere to \
             register the seed partition)"
        );
    }
    let mut mbr = [MbrEntry::default(); 4];
    for (i, e) in mbr.iter_mut().enumerate() {
        *e = MbrEntry::parse(&sector0[446 + 16 * i..462 + 16 * i]);
    }
    let used: Vec<&MbrEntry> = mbr.iter().filter(|e| !e.is_empty()).collect();
    if used.is_empty() {
        bail!("unknown image layout: the MBR has no partitions (not a hybrid ISO)");
    }
    let sectors = image_len / LBA;
    let gpt = read_gpt(file, sectors);
    if let Some(pmbr) = used.iter().find(|e| e.kind == 0xee) {
        // Type 0x00 entries are unused by definition; xorriso's
        // --mbr-force-bootable adds one (sector 0, size 1) to carry the boot flag.
        ensure!(
            used.iter().all(|e| e.kind == 0xee || e.kind == 0) && pmbr.start == 1,
            "unknown image layout: an MBR mixing a 0xee GPT-protective entry with other \
             partitions (a hybrid MBR) is not supported"
        );
        let gpt = gpt.with_context(|| {
            "unknown image layout: a protective MBR but no valid GPT behind it (CRC or header check failed)"
        })?;
        ensure!(
            gpt.alternate_lba < sectors,
            "the GPT's backup header (LBA {}) lies beyond the image's end ({} sectors)",
            gpt.alternate_lba,
            sectors
        );
        return Ok(Layout::ProtectiveGpt { mbr, gpt });
    }
    for (i, e) in mbr.iter().enumerate().filter(|(_, e)| !e.is_empty()) {
        ensure!(
            u64::from(e.start) + u64::from(e.sectors) <= sectors,
            "unknown image layout: MBR partition {} (sectors {}+{}) extends beyond the image ({} sectors)",
            i + 1,
            e.start,
            e.sectors,
            sectors
        );
    }
    ensure!(
        mbr.iter().any(|e| e.is_empty()),
        "the MBR has no free slot for the seed partition (all four are used)"
    );
    let gpt = gpt.filter(|g| g.alternate_lba < sectors);
    Ok(Layout::HybridMbr { mbr, gpt })
}

/// A GPT at LBA 1 whose header and entry CRCs check out.
fn read_gpt(file: &File, sectors: u64) -> Option<Gpt> {
    let mut h = vec![0u8; 512];
    file.read_exact_at(&mut h, LBA).ok()?;
    if &h[0..8] != b"EFI PART" {
        return None;
    }
    let hsize = u32le(&h[12..16]) as usize;
    if !(92..=512).contains(&hsize) {
        return None;
    }
    let mut check = h[..hsize].to_vec();
    check[16..20].fill(0);
    if crc32(&check) != u32le(&h[16..20]) || u64le(&h[24..32]) != 1 {
        return None;
    }
    let entries_lba = u64le(&h[72..80]);
    let num_entries = u32le(&h[80..84]);
    let entry_size = u32le(&h[84..88]);
    if entry_size < 128 || num_entries == 0 || num_entries > 4096 {
        return None;
    }
    let len = num_entries as usize * entry_size as usize;
    if entries_lba + (len as u64).div_ceil(LBA) > sectors {
        return None;
    }
    let mut entries = vec![0u8; len];
    file.read_exact_at(&mut entries, entries_lba * LBA).ok()?;
    if crc32(&entries) != u32le(&h[88..92]) {
        return None;
    }
    Some(Gpt {
        alternate_lba: u64le(&h[32..40]),
        header: h,
        entries,
        entries_lba,
        num_entries,
        entry_size,
    })
}

/// What registering the new partition wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// 1-based MBR slot holding the new partition (type 0x0c), if one was used.
    pub mbr_slot: Option<usize>,
    /// 1-based GPT entry number of the new partition, if there is a GPT.
    pub gpt_entry: Option<usize>,
}

/// Sectors a GPT's backup (entries + header) needs at the end of the disk.
pub fn backup_gpt_sectors(layout: &Layout) -> u64 {
    match layout {
        Layout::HybridMbr { gpt: Some(g), .. } | Layout::ProtectiveGpt { gpt: g, .. } => {
            (u64::from(g.num_entries) * u64::from(g.entry_size)).div_ceil(LBA) + 1
        }
        Layout::HybridMbr { gpt: None, .. } => 0,
    }
}

/// Where `register` puts its bytes: planning only needs the layout read
/// from the source, so the writes can be recorded and laid over the copy in
/// the same pass that hashes it.
#[derive(Debug, Default)]
pub struct Writes(pub std::cell::RefCell<Vec<(u64, Vec<u8>)>>);

impl Writes {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.0.borrow_mut().push((offset, buf.to_vec()));
        Ok(())
    }
}

/// Register the partition `start..start+sectors` (LBA) in every table of the
/// layout, for an image that is now `total` sectors long.
pub fn register(
    file: &Writes,
    layout: &Layout,
    start: u64,
    sectors: u64,
    total: u64,
    name: &str,
) -> Result<Registered> {
    let mut out = Registered {
        mbr_slot: None,
        gpt_entry: None,
    };
    let (mut mbr, gpt) = match layout {
        Layout::HybridMbr { mbr, gpt } => (*mbr, gpt.as_ref()),
        Layout::ProtectiveGpt { mbr, gpt } => (*mbr, Some(gpt)),
    };
    match layout {
        Layout::HybridMbr { .. } => {
            ensure!(
                start + sectors <= u64::from(u32::MAX),
                "the seed partition lies beyond what an MBR can address (2 TiB)"
            );
            let (heads, spt) = geometry(&mbr);
            let slot = mbr
                .iter()
                .position(MbrEntry::is_empty)
                .context("no free MBR slot")?;
            mbr[slot] = MbrEntry {
                status: 0,
                chs_start: chs(start, heads, spt),
                kind: 0x0c,
                chs_end: chs(start + sectors - 1, heads, spt),
                start: start as u32,
                sectors: sectors as u32,
            };
            out.mbr_slot = Some(slot + 1);
        }
        Layout::ProtectiveGpt { .. } => {
            // The protective entry covers the whole (now longer) disk.
            let p = mbr.iter_mut().find(|e| e.kind == 0xee).expect("checked");
            p.sectors = (total - 1).min(u64::from(u32::MAX)) as u32;
        }
    }
    let mut table = [0u8; 64];
    for (i, e) in mbr.iter().enumerate() {
        table[16 * i..16 * i + 16].copy_from_slice(&e.encode());
    }
    file.write_all_at(&table, 446)
        .context("writing the MBR partition table")?;

    if let Some(g) = gpt {
        out.gpt_entry = Some(add_gpt_entry(file, g, start, sectors, total, name)?);
    }
    Ok(out)
}

/// Microsoft basic data, the GPT type for a FAT data partition.
const BASIC_DATA: [u8; 16] = guid_bytes(
    0xEBD0A0A2,
    0xB9E5,
    0x4433,
    [0x87, 0xC0, 0x68, 0xB6, 0xB7, 0x26, 0x99, 0xC7],
);

const fn guid_bytes(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let a = a.to_le_bytes();
    let b = b.to_le_bytes();
    let c = c.to_le_bytes();
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

fn add_gpt_entry(
    file: &Writes,
    g: &Gpt,
    start: u64,
    sectors: u64,
    total: u64,
    name: &str,
) -> Result<usize> {
    let es = g.entry_size as usize;
    let mut entries = g.entries.clone();
    let mut free = None;
    for i in 0..g.num_entries as usize {
        let e = &entries[i * es..(i + 1) * es];
        if e[0..16].iter().all(|b| *b == 0) {
            free.get_or_insert(i);
        } else {
            let last = u64le(&e[40..48]);
            ensure!(
                last < start,
                "GPT partition {} (ending at LBA {last}) overlaps the seed partition at LBA {start}",
                i + 1
            );
        }
    }
    let index = free.context("the GPT has no free entry for the seed partition")?;
    let array_sectors = (entries.len() as u64).div_ceil(LBA);
    let backup_entries_lba = total - 1 - array_sectors;
    ensure!(
        start + sectors <= backup_entries_lba,
        "internal error: the seed partition overlaps the backup GPT"
    );
    let disk_guid = &g.header[56..72];
    // A stable partition GUID: derived from the disk GUID and the position.
    let mut h = sha2::Sha256::new();
    h.update(b"microseed cidata partition");
    h.update(disk_guid);
    h.update(start.to_le_bytes());
    let digest = h.finalize();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    uuid[7] = (uuid[7] & 0x0f) | 0x40; // version 4 (mixed-endian field 3, high byte)
    uuid[8] = (uuid[8] & 0x3f) | 0x80; // RFC 4122 variant
    let e = &mut entries[index * es..(index + 1) * es];
    e.fill(0);
    e[0..16].copy_from_slice(&BASIC_DATA);
    e[16..32].copy_from_slice(&uuid);
    e[32..40].copy_from_slice(&start.to_le_bytes());
    e[40..48].copy_from_slice(&(start + sectors - 1).to_le_bytes());
    for (i, unit) in name.encode_utf16().take(36).enumerate() {
        e[56 + 2 * i..58 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    let entries_crc = crc32(&entries);

    // Remove the old backup header (it no longer sits at the end).
    if g.alternate_lba > 1 && g.alternate_lba < start {
        file.write_all_at(&[0u8; 512], g.alternate_lba * LBA)
            .context("clearing the old backup GPT header")?;
    }

    let hsize = u32le(&g.header[12..16]) as usize;
    let last_usable = backup_entries_lba - 1;
    let mut primary = g.header.clone();
    primary[32..40].copy_from_slice(&(total - 1).to_le_bytes());
    primary[48..56].copy_from_slice(&last_usable.to_le_bytes());
    primary[88..92].copy_from_slice(&entries_crc.to_le_bytes());
    seal(&mut primary, hsize);

    let mut backup = primary.clone();
    backup[24..32].copy_from_slice(&(total - 1).to_le_bytes());
    backup[32..40].copy_from_slice(&1u64.to_le_bytes());
    backup[72..80].copy_from_slice(&backup_entries_lba.to_le_bytes());
    seal(&mut backup, hsize);

    file.write_all_at(&entries, g.entries_lba * LBA)
        .context("writing the primary GPT entries")?;
    file.write_all_at(&primary, LBA)
        .context("writing the primary GPT header")?;
    file.write_all_at(&entries, backup_entries_lba * LBA)
        .context("writing the backup GPT entries")?;
    file.write_all_at(&backup, (total - 1) * LBA)
        .context("writing the backup GPT header")?;
    Ok(index + 1)
}

/// Grows every MBR partition that ends where the ISO ended (`old_end`,
/// LBA) to end at `new_end`: the outer partition of a hybrid ISO (layouts a
/// and b) then still holds the whole ISO 9660 volume after a file was given
/// a new extent past the old end, so Linux reads that file through the
/// partition too, not only through the whole disk. Returns the 1-based slots
/// grown. A protective MBR is left alone (its GPT describes the disk).
pub fn grow_iso_partitions(layout: &mut Layout, old_end: u64, new_end: u64) -> Result<Vec<usize>> {
    let Layout::HybridMbr { mbr, .. } = layout else {
        return Ok(Vec::new());
    };
    ensure!(
        new_end <= u64::from(u32::MAX),
        "the ISO would end beyond what an MBR can address (2 TiB)"
    );
    let (heads, spt) = geometry(mbr);
    let mut grown = Vec::new();
    for (i, e) in mbr.iter_mut().enumerate() {
        if e.is_empty() || e.kind == 0xee || u64::from(e.start) + u64::from(e.sectors) != old_end {
            continue;
        }
        e.sectors = (new_end - u64::from(e.start)) as u32;
        e.chs_end = chs(new_end - 1, heads, spt);
        grown.push(i + 1);
    }
    Ok(grown)
}

fn seal(header: &mut [u8], hsize: usize) {
    header[16..20].fill(0);
    let crc = crc32(&header[..hsize]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// The CHS geometry the existing entries use (isohybrid: 64 heads, 32 sectors).
fn geometry(mbr: &[MbrEntry; 4]) -> (u64, u64) {
    for e in mbr.iter().filter(|e| !e.is_empty() && e.kind != 0xee) {
        let heads = u64::from(e.chs_end[0]) + 1;
        let spt = u64::from(e.chs_end[1] & 0x3f);
        if spt > 0 {
            return (heads, spt);
        }
    }
    (255, 63)
}

fn chs(lba: u64, heads: u64, spt: u64) -> [u8; 3] {
    let cyl = lba / (heads * spt);
    if cyl > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / spt) % heads;
    let sector = lba % spt + 1;
    [
        head as u8,
        (sector as u8 & 0x3f) | (((cyl >> 2) & 0xc0) as u8),
        (cyl & 0xff) as u8,
    ]
}

fn u32le(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

fn u64le(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// CRC-32 (IEEE 802.3, reflected; `CRC_32_ISO_HDLC`), as GPT uses for its
/// header and entry array.
pub fn crc32(data: &[u8]) -> u32 {
    const GPT_CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    GPT_CRC.checksum(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn crc32_check_value() {
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
    }
}
