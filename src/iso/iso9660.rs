//! A minimal ISO 9660 reader: just enough to find where a file's bytes sit in
//! an installer image, so the file can be patched in place.
//!
//! It reads the primary volume descriptor, walks directories and looks a path
//! up component by component. Names match case-insensitively against the
//! Rock Ridge name (`NM` entries) when there is one, and against the plain
//! ISO 9660 name with its `;1` version and a trailing `.` removed. Multi-extent
//! files and interleaved files are not supported (installer images have none
//! among the files this crate patches).

use anyhow::{Context, Result, bail, ensure};
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Where a file's data sits in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Byte offset of the first data byte in the image.
    pub offset: u64,
    /// Data length in bytes.
    pub length: u64,
}

/// One directory record, as read from a directory extent.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The Rock Ridge name if present, else the ISO 9660 name without `;1`.
    pub name: String,
    /// The plain ISO 9660 identifier as recorded (e.g. `GRUB.CFG;1`).
    pub iso_name: String,
    pub extent: Extent,
    pub is_dir: bool,
    /// Byte offset of this directory record in the image (its length field
    /// sits at +10, both-endian).
    pub record_offset: u64,
}

/// The primary volume descriptor's facts this crate needs.
#[derive(Debug, Clone)]
pub struct Iso9660 {
    /// Logical block size (2048 on every image in the wild).
    pub block_size: u64,
    /// Volume space size in bytes (blocks times block size).
    pub volume_size: u64,
    /// The volume identifier, trailing spaces removed.
    pub volume_id: String,
    /// An UDF bridge (BEA01/NSR0x descriptors) keeps its own file sizes.
    pub has_udf: bool,
    /// The directory trees: the primary one first, then any Joliet tree.
    trees: Vec<Tree>,
    /// Byte offsets of the primary and supplementary volume descriptors:
    /// each records the volume space size (at +80, both-endian).
    descriptors: Vec<u64>,
}

/// A file given a new extent: every directory record naming it points
/// there, and the volume grows to cover it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    /// Where the data now starts, in bytes (a multiple of the block size).
    pub offset: u64,
    /// Its length in bytes.
    pub length: u64,
}

#[derive(Debug, Clone, Copy)]
struct Tree {
    root: Extent,
    joliet: bool,
    /// SUSP bytes to skip at the start of each system use area (from `SP`).
    susp_skip: usize,
}

const SECTOR: u64 = 2048;

impl Iso9660 {
    /// Read the volume descriptors of the ISO 9660 filesystem at the start of `file`.
    pub fn open(file: &File) -> Result<Self> {
        let mut sector = vec![0u8; SECTOR as usize];
        let mut pvd = None;
        let mut joliet = Vec::new();
        let mut index = 16u64;
        let mut descriptors = Vec::new();
        // Volume descriptors start at sector 16 and end with a terminator (type 255).
        loop {
            ensure!(
                index < 64,
                "ISO 9660 volume descriptor set has no terminator"
            );
            file.read_exact_at(&mut sector, index * SECTOR)
                .with_context(|| format!("reading ISO 9660 volume descriptor at sector {index}"))?;
            if &sector[1..6] != b"CD001" {
                bail!("not an ISO 9660 image: no volume descriptor (CD001) at sector {index}");
            }
            if matches!(sector[0], 1 | 2) {
                descriptors.push(index * SECTOR);
            }
            index += 1;
            match sector[0] {
                1 if pvd.is_none() => pvd = Some(sector.clone()),
                2 if matches!(&sector[88..91], b"%/@" | b"%/C" | b"%/E") => {
                    joliet.push(sector.clone())
                }
                255 => break,
                _ => {}
            }
        }
        let pvd = pvd.context("not an ISO 9660 image: no primary volume descriptor")?;
        let mut iso = Self::from_pvd(file, &pvd)?;
        iso.descriptors = descriptors;
        for svd in joliet {
            let root = root_extent(&svd, iso.block_size)?;
            iso.trees.push(Tree {
                root,
                joliet: true,
                susp_skip: 0,
            });
        }
        // An UDF bridge follows in the extended area (BEA01, NSR02/NSR03, TEA01).
        for i in index..index + 8 {
            file.read_exact_at(&mut sector, i * SECTOR)
                .with_context(|| format!("reading sector {i}"))?;
            if matches!(&sector[1..6], b"NSR02" | b"NSR03") {
                iso.has_udf = true;
            }
        }
        Ok(iso)
    }

    fn from_pvd(file: &File, pvd: &[u8]) -> Result<Self> {
        let block_size = u64::from(u16::from_le_bytes([pvd[128], pvd[129]]));
        ensure!(
            block_size.is_power_of_two() && (512..=SECTOR).contains(&block_size),
            "ISO 9660 primary volume descriptor has an unusable logical block size {block_size}"
        );
        let blocks = u64::from(le32(&pvd[80..84]));
        let volume_id = String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string();
        let root = root_extent(pvd, block_size)?;
        let mut susp_skip = 0;
        // SUSP: the root's "." record may begin with an SP entry giving bytes to skip.
        let mut first = vec![0u8; block_size as usize];
        file.read_exact_at(&mut first, root.offset)
            .context("reading the ISO 9660 root directory")?;
        let len = first[0] as usize;
        if len >= 34 && len <= first.len() {
            let id_len = first[32] as usize;
            let su_start = 33 + id_len + (1 - id_len % 2);
            let su = &first[su_start.min(len)..len];
            if su.len() >= 7 && &su[0..2] == b"SP" && su[4] == 0xBE && su[5] == 0xEF {
                susp_skip = su[6] as usize;
            }
        }
        Ok(Iso9660 {
            block_size,
            volume_size: blocks * block_size,
            volume_id,
            has_udf: false,
            trees: vec![Tree {
                root,
                joliet: false,
                susp_skip,
            }],
            descriptors: Vec::new(),
        })
    }

    /// The bytes that give the file of `records` (every directory record
    /// naming it, from [`Iso9660::find_records`]) the extent `to`, and grow
    /// the volume space to end at `volume_end` bytes, as (offset, bytes)
    /// writes. Only the records' extent location (+2) and data length (+10)
    /// fields change, both-endian as ISO 9660 stores them, and each
    /// descriptor's volume space size (+80).
    pub fn relocation_writes(
        &self,
        records: &[DirEntry],
        to: &Relocation,
        volume_end: u64,
    ) -> Result<Vec<(u64, Vec<u8>)>> {
        ensure!(
            !records.is_empty(),
            "no directory record to point elsewhere"
        );
        ensure!(
            to.offset.is_multiple_of(self.block_size) && volume_end.is_multiple_of(self.block_size),
            "a new extent must start on an ISO 9660 block ({} bytes)",
            self.block_size
        );
        ensure!(
            to.offset + to.length <= volume_end && volume_end >= self.volume_size,
            "the new extent (bytes {}+{}) lies outside the volume (ending at {volume_end})",
            to.offset,
            to.length
        );
        let lba = u32::try_from(to.offset / self.block_size)
            .context("the new extent lies beyond what ISO 9660 can address")?;
        let len = u32::try_from(to.length).context("the file is too large for ISO 9660")?;
        let blocks = u32::try_from(volume_end / self.block_size)
            .context("the volume grows beyond what ISO 9660 can address")?;
        let mut out = Vec::with_capacity(2 * records.len() + self.descriptors.len());
        for r in records {
            out.push((r.record_offset + 2, both_endian(lba).to_vec()));
            out.push((r.record_offset + 10, both_endian(len).to_vec()));
        }
        for d in &self.descriptors {
            out.push((d + 80, both_endian(blocks).to_vec()));
        }
        Ok(out)
    }

    /// List the records of the directory at `dir` (`.` and `..` left out).
    pub fn read_dir(&self, file: &File, dir: Extent) -> Result<Vec<DirEntry>> {
        self.read_tree_dir(file, &self.trees[0], dir)
    }

    fn read_tree_dir(&self, file: &File, tree: &Tree, dir: Extent) -> Result<Vec<DirEntry>> {
        ensure!(
            dir.length <= 64 << 20,
            "ISO 9660 directory of {} bytes is implausibly large",
            dir.length
        );
        let mut data = vec![0u8; dir.length as usize];
        file.read_exact_at(&mut data, dir.offset)
            .with_context(|| format!("reading ISO 9660 directory at byte {}", dir.offset))?;
        let mut entries = Vec::new();
        let mut pos = 0usize;
        while pos < data.len() {
            let len = data[pos] as usize;
            if len == 0 {
                // Records never cross a block boundary: skip to the next block.
                let bs = self.block_size as usize;
                pos = (pos / bs + 1) * bs;
                continue;
            }
            ensure!(
                len >= 34 && pos + len <= data.len(),
                "malformed ISO 9660 directory record at byte {}",
                dir.offset + pos as u64
            );
            let rec = &data[pos..pos + len];
            let record_offset = dir.offset + pos as u64;
            pos += len;
            let id_len = rec[32] as usize;
            ensure!(
                33 + id_len <= len,
                "ISO 9660 directory record name overflows"
            );
            let id = &rec[33..33 + id_len];
            if id == [0] || id == [1] {
                continue; // "." and ".."
            }
            let flags = rec[25];
            ensure!(
                flags & 0x80 == 0,
                "multi-extent ISO 9660 files are not supported ({})",
                String::from_utf8_lossy(id)
            );
            let iso_name = if tree.joliet {
                let units: Vec<u16> = id
                    .chunks_exact(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16_lossy(&units)
            } else {
                String::from_utf8_lossy(id).to_string()
            };
            let su_start = 33 + id_len + (1 - id_len % 2);
            let rr_name = if su_start < len && !tree.joliet {
                rock_ridge_name(&rec[(su_start + tree.susp_skip).min(len)..])
            } else {
                None
            };
            let name = rr_name.unwrap_or_else(|| plain_name(&iso_name));
            entries.push(DirEntry {
                name,
                iso_name,
                extent: Extent {
                    offset: u64::from(le32(&rec[2..6])) * self.block_size,
                    length: u64::from(le32(&rec[10..14])),
                },
                is_dir: flags & 0x02 != 0,
                record_offset,
            });
        }
        Ok(entries)
    }

    /// Find a file by its path (`boot/grub/grub.cfg`); `None` when absent.
    pub fn find(&self, file: &File, path: &str) -> Result<Option<Extent>> {
        Ok(self.lookup(file, &self.trees[0], path)?.map(|e| e.extent))
    }

    /// Every directory record naming this file: the primary tree's and the
    /// Joliet tree's. Their data length fields must change together.
    pub fn find_records(&self, file: &File, path: &str) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        for tree in &self.trees {
            if let Some(e) = self.lookup(file, tree, path)? {
                out.push(e);
            }
        }
        Ok(out)
    }

    fn lookup(&self, file: &File, tree: &Tree, path: &str) -> Result<Option<DirEntry>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        ensure!(!parts.is_empty(), "empty path");
        let mut dir = tree.root;
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            let entries = self
                .read_tree_dir(file, tree, dir)
                .with_context(|| format!("looking up {path} in the ISO 9660 filesystem"))?;
            let hit = entries.into_iter().find(|e| {
                e.name.eq_ignore_ascii_case(part)
                    || plain_name(&e.iso_name).eq_ignore_ascii_case(part)
            });
            match hit {
                None => return Ok(None),
                Some(e) if last => return Ok((!e.is_dir).then_some(e)),
                Some(e) if e.is_dir => dir = e.extent,
                Some(_) => return Ok(None),
            }
        }
        Ok(None)
    }
}

fn root_extent(descriptor: &[u8], block_size: u64) -> Result<Extent> {
    let root_rec = &descriptor[156..190];
    ensure!(
        root_rec[0] == 34,
        "ISO 9660 root directory record is malformed"
    );
    Ok(Extent {
        offset: u64::from(le32(&root_rec[2..6])) * block_size,
        length: u64::from(le32(&root_rec[10..14])),
    })
}

/// An ISO 9660 both-endian 32-bit field: little-endian, then big-endian.
pub fn both_endian(v: u32) -> [u8; 8] {
    let mut f = [0u8; 8];
    f[..4].copy_from_slice(&v.to_le_bytes());
    f[4..].copy_from_slice(&v.to_be_bytes());
    f
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// `GRUB.CFG;1` -> `GRUB.CFG`; `VMLINUZ.;1` -> `VMLINUZ`.
fn plain_name(iso: &str) -> String {
    let base = iso.split(';').next().unwrap_or(iso);
    base.strip_suffix('.').unwrap_or(base).to_string()
}

/// The Rock Ridge name from a system use area (NM entries, possibly continued).
fn rock_ridge_name(mut su: &[u8]) -> Option<String> {
    let mut name = Vec::new();
    let mut found = false;
    while su.len() >= 4 {
        let len = su[2] as usize;
        if len < 4 || len > su.len() {
            break;
        }
        if &su[0..2] == b"NM" && len >= 5 {
            let flags = su[4];
            if flags & 0x06 == 0 {
                name.extend_from_slice(&su[5..len]);
                found = true;
            }
            if flags & 0x01 == 0 && found {
                break;
            }
        } else if &su[0..2] == b"ST" {
            break;
        }
        su = &su[len..];
    }
    (found && !name.is_empty()).then(|| String::from_utf8_lossy(&name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A directory record: `name` at block `lba`, `len` bytes.
    fn record(name: &[u8], lba: u32, len: u32, dir: bool) -> Vec<u8> {
        let pad = usize::from(name.len().is_multiple_of(2));
        let mut r = vec![0u8; 33 + name.len() + pad];
        r[0] = r.len() as u8;
        r[2..10].copy_from_slice(&both_endian(lba));
        r[10..18].copy_from_slice(&both_endian(len));
        r[25] = if dir { 2 } else { 0 };
        r[28..32].copy_from_slice(&[1, 0, 0, 1]);
        r[32] = name.len() as u8;
        r[33..33 + name.len()].copy_from_slice(name);
        r
    }

    /// A small image: PVD (sector 16), Joliet SVD (17), terminator (18), the
    /// primary root (20), the Joliet root (21), TXT.CFG's data (22).
    fn image() -> std::fs::File {
        let mut img = vec![0u8; 32 * 2048];
        let descriptor = |img: &mut Vec<u8>, sector: usize, kind: u8, root: u32| {
            let d = &mut img[sector * 2048..(sector + 1) * 2048];
            d[0] = kind;
            d[1..6].copy_from_slice(b"CD001");
            d[6] = 1;
            d[80..88].copy_from_slice(&both_endian(32));
            d[128..130].copy_from_slice(&2048u16.to_le_bytes());
            d[130..132].copy_from_slice(&2048u16.to_be_bytes());
            let r = record(&[0], root, 2048, true);
            d[156..156 + 34].copy_from_slice(&r);
            if kind == 2 {
                d[88..91].copy_from_slice(b"%/E");
            }
        };
        descriptor(&mut img, 16, 1, 20);
        descriptor(&mut img, 17, 2, 21);
        img[18 * 2048] = 255;
        img[18 * 2048 + 1..18 * 2048 + 6].copy_from_slice(b"CD001");
        let joliet_name: Vec<u8> = "txt.cfg"
            .encode_utf16()
            .flat_map(u16::to_be_bytes)
            .collect();
        for (sector, name) in [(20usize, b"TXT.CFG;1".to_vec()), (21, joliet_name)] {
            let mut dir = record(&[0], sector as u32, 2048, true);
            dir.extend(record(&[1], sector as u32, 2048, true));
            dir.extend(record(&name, 22, 5, false));
            img[sector * 2048..sector * 2048 + dir.len()].copy_from_slice(&dir);
        }
        img[22 * 2048..22 * 2048 + 5].copy_from_slice(b"hello");
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&img).unwrap();
        f
    }

    #[test]
    fn relocation_points_every_record_at_the_new_extent_and_grows_the_volume() {
        let f = image();
        let iso = Iso9660::open(&f).unwrap();
        assert_eq!(iso.volume_size, 32 * 2048);
        let records = iso.find_records(&f, "txt.cfg").unwrap();
        assert_eq!(records.len(), 2, "primary and Joliet: {records:?}");
        let to = Relocation {
            offset: 34 * 2048,
            length: 3000,
        };
        let writes = iso.relocation_writes(&records, &to, 36 * 2048).unwrap();
        // Lay the writes over the image, extended, with the new data.
        f.set_len(36 * 2048).unwrap();
        for (at, bytes) in &writes {
            f.write_all_at(bytes, *at).unwrap();
        }
        f.write_all_at(&[b'x'; 3000], to.offset).unwrap();
        let iso = Iso9660::open(&f).unwrap();
        assert_eq!(iso.volume_size, 36 * 2048);
        let records = iso.find_records(&f, "txt.cfg").unwrap();
        assert_eq!(records.len(), 2);
        for r in &records {
            assert_eq!(
                r.extent,
                Extent {
                    offset: 34 * 2048,
                    length: 3000
                },
                "{r:?}"
            );
        }
        // Nothing else in the records changed: the name still reads back.
        assert_eq!(records[0].iso_name, "TXT.CFG;1");
        assert_eq!(records[1].iso_name, "txt.cfg");
        // The Joliet descriptor's volume size too (both-endian).
        let mut d = [0u8; 8];
        f.read_exact_at(&mut d, 17 * 2048 + 80).unwrap();
        assert_eq!(d, both_endian(36));
    }

    #[test]
    fn relocation_refuses_an_unaligned_or_uncovered_extent() {
        let f = image();
        let iso = Iso9660::open(&f).unwrap();
        let records = iso.find_records(&f, "txt.cfg").unwrap();
        let odd = Relocation {
            offset: 34 * 2048 + 512,
            length: 10,
        };
        assert!(iso.relocation_writes(&records, &odd, 36 * 2048).is_err());
        let past = Relocation {
            offset: 34 * 2048,
            length: 4097,
        };
        assert!(iso.relocation_writes(&records, &past, 36 * 2048).is_err());
        assert!(iso.relocation_writes(&[], &past, 38 * 2048).is_err());
    }

    #[test]
    fn both_endian_is_little_then_big() {
        assert_eq!(both_endian(0x0102_0304), [4, 3, 2, 1, 1, 2, 3, 4]);
    }
}
