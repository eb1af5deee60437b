//! One stick per machine: a copy of the Ubuntu installer ISO patched in place
//! to install unattended from a seed carried on the stick itself.
//!
//! The copy is reflinked where the filesystem allows, else copied with the
//! kernel's fast path. Nothing is unpacked or repacked and no program is run:
//! boot configs are rewritten at their own extents at the same length
//! (`autoinstall` before `---`), except a syslinux menu given the cluster
//! stick's machine entries, which moves to a new extent after the ISO
//! (isolinux cannot read the CIDATA partition; docs/stick.md), `md5sum.txt`
//! gets the new digests, and a FAT
//! filesystem labelled CIDATA is appended after the ISO, 1 MiB aligned, and
//! registered in the image's partition table(s). The output appears only
//! when everything succeeded (temp file beside it, renamed at the end).

use super::bootcfg::{self, Flavour};
use super::iso9660::{Iso9660, Relocation};
use super::parttable::{self, LBA, Layout};
use crate::image::build_fat;
use anyhow::{Context, Result, bail, ensure};
use md5::{Digest, Md5};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The boot configs of Ubuntu's live-server ISOs (20.04: all three; 22.04+: GRUB's).
pub const DEFAULT_BOOT_CONFIGS: &[&str] = &[
    "boot/grub/grub.cfg",
    "boot/grub/loopback.cfg",
    "isolinux/txt.cfg",
];

/// The seed partition starts on a 1 MiB boundary.
pub const ALIGN: u64 = 1 << 20;

/// What `make_installer_image` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerReport {
    /// The layout found: e.g. "hybrid MBR (isohybrid)".
    pub layout: String,
    /// Boot configs found, with what was done to each.
    pub boot_configs: Vec<PatchedConfig>,
    /// Boot configs asked for but absent from the ISO.
    pub boot_configs_missing: Vec<String>,
    /// Files whose `md5sum.txt` line was rewritten.
    pub md5sums_updated: Vec<String>,
    /// The appended CIDATA partition.
    pub partition: AddedPartition,
    /// Size of the output image in bytes.
    pub image_size: u64,
    /// sha256 of the output image, hex (computed while writing it).
    pub sha256: String,
    /// The hash resumed from a saved state at the seed partition
    /// ([`super::hashstate`]) instead of reading the whole ISO.
    pub hash_resumed: bool,
}

/// One boot config and what was done to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchedConfig {
    /// Path in the ISO, as asked for.
    pub path: String,
    /// Kernel command lines that got `autoinstall` (0: none needed it).
    pub lines: usize,
    /// Length before and after. Equal unless blanks did not give back enough
    /// room; then the file grew into its last ISO block and every directory
    /// record (ISO 9660 and Joliet) got the new length.
    pub old_len: u64,
    pub new_len: u64,
    /// The menu lists the cluster stick's machines: GRUB's sources them
    /// from the CIDATA partition; a syslinux config got them appended (when
    /// the seed files carry [`bootcfg::SYSLINUX_STICK_MENU`]).
    pub machine_entries: bool,
    /// Byte offset of the file's new extent, past the ISO's old end, when it
    /// was moved there (a syslinux config with the machine entries: they do
    /// not fit its own extent). Every directory record points there.
    pub moved_to: Option<u64>,
}

/// Where the seed partition went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedPartition {
    /// Byte offset of the FAT filesystem in the image.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// 1-based MBR slot (type 0x0c), when the MBR got an entry.
    pub mbr_slot: Option<usize>,
    /// 1-based GPT entry, when the image has a valid GPT.
    pub gpt_entry: Option<usize>,
}

/// Copy `iso` to `out`, patched to autoinstall from `seed_files` (written to a
/// CIDATA FAT partition on the image). `boot_configs` are ISO paths, patched
/// where present. Same inputs give the same bytes.
pub fn make_installer_image(
    iso: &Path,
    out: &Path,
    seed_files: &[(&str, &[u8])],
    boot_configs: &[&str],
    epoch: i64,
) -> Result<InstallerReport> {
    make_installer_image_cached(iso, out, seed_files, boot_configs, epoch, None)
}

/// [`make_installer_image`], keeping the image hash's state at the seed
/// partition in `hash_cache` (see [`super::hashstate`]), so a rebuild from
/// the same ISO hashes only the seed partition.
pub fn make_installer_image_cached(
    iso: &Path,
    out: &Path,
    seed_files: &[(&str, &[u8])],
    boot_configs: &[&str],
    epoch: i64,
    hash_cache: Option<&Path>,
) -> Result<InstallerReport> {
    let plan = plan_installer_image(iso, seed_files, boot_configs, epoch)?;
    // Now write: a temp file beside `out`, renamed into place at the end.
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".microseed-installer-")
        .suffix(".part")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    let dst = tmp.as_file();
    let prefix = plan.report.partition.offset;
    let key = match hash_cache {
        Some(_) => Some(super::hashstate::key(&plan.src, prefix, &plan.writes)?),
        None => None,
    };
    let cache = hash_cache.zip(key.as_deref());
    let (sha256, hash_resumed) = write_image(&plan, dst, prefix, cache)
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    dst.sync_all().context("flushing the image to disk")?;
    tmp.persist(out)
        .map_err(|e| e.error)
        .with_context(|| format!("renaming the image to {}", out.display()))?;
    Ok(InstallerReport {
        sha256,
        hash_resumed,
        ..plan.report
    })
}

/// An installer image not yet written: the source ISO and every byte range
/// that differs from it. [`InstallerPlan::read_at`] gives the image's bytes
/// at any offset, so `flash` can stream it to a stick without an image file.
pub struct InstallerPlan {
    pub src: File,
    pub iso_len: u64,
    /// The image's length in bytes.
    pub total: u64,
    /// Patched bytes laid over the ISO, in order (later ones win).
    pub writes: Vec<(u64, Vec<u8>)>,
    /// What will change (its `sha256` is empty until the bytes are hashed).
    pub report: InstallerReport,
}

impl InstallerPlan {
    /// Fills `buf` with the image's bytes at `offset` (zeros past the end).
    /// An ISO that shrank since it was planned is an error.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        fill_overlaid(&self.src, self.iso_len, offset, buf, &self.writes)
    }
}

/// Plans the installer image of `make_installer_image` without writing it:
/// every check, every patched byte, nothing on disk.
pub fn plan_installer_image(
    iso: &Path,
    seed_files: &[(&str, &[u8])],
    boot_configs: &[&str],
    epoch: i64,
) -> Result<InstallerPlan> {
    let src = File::open(iso).with_context(|| format!("opening {}", iso.display()))?;
    let iso_len = src
        .metadata()
        .with_context(|| format!("reading the size of {}", iso.display()))?
        .len();
    check_size(iso, iso_len)?;
    // Plan everything against the source first: an error leaves nothing behind.
    let fs = Iso9660::open(&src).with_context(|| format!("reading {}", iso.display()))?;
    ensure!(
        fs.volume_size <= iso_len,
        "{}: the ISO 9660 filesystem ({} bytes) is longer than the file ({} bytes): truncated download?",
        iso.display(),
        fs.volume_size,
        iso_len
    );
    let mut layout = parttable::read_layout(&src, iso_len)
        .with_context(|| format!("reading the partition tables of {}", iso.display()))?;
    check_pristine(iso, &src, &fs, &layout, boot_configs)?;

    let mut writes: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut report_configs = Vec::new();
    let mut missing = Vec::new();
    let mut changed_files: Vec<(String, Vec<u8>)> = Vec::new();
    // The cluster stick's isolinux entries (see `stick::syslinux_menu`).
    let stick_menu = seed_files
        .iter()
        .find(|(name, _)| *name == bootcfg::SYSLINUX_STICK_MENU)
        .map(|(_, bytes)| *bytes);
    // Syslinux configs that get the stick's entries: (report index, every
    // directory record naming the file, its new text), given new extents
    // once every file is planned.
    let mut moved: Vec<(usize, Vec<super::iso9660::DirEntry>, Vec<u8>)> = Vec::new();
    for path in boot_configs {
        let records = fs.find_records(&src, path)?;
        let Some(primary) = records.first() else {
            missing.push(path.to_string());
            continue;
        };
        let extent = primary.extent;
        let text = read_extent(&src, extent.offset, extent.length)
            .with_context(|| format!("reading {path} from the ISO"))?;
        // Growing is possible within the last block when every record that
        // names the file can be updated (no UDF bridge with its own sizes).
        let max_len = if fs.has_udf || records.iter().any(|r| r.extent.offset != extent.offset) {
            text.len()
        } else {
            (extent.length.div_ceil(fs.block_size) * fs.block_size) as usize
        };
        let flavour = Flavour::from_path(path);
        // GRUB menus also offer the stick's per-machine entries.
        let append = match flavour {
            Flavour::Grub => bootcfg::GRUB_STICK_MENU,
            Flavour::Syslinux => b"",
        };
        // isolinux reads only ISO 9660, and the entries do not fit the
        // file's own extent: the whole file moves to a new one past the
        // ISO's end, where it may be any length. Only where every reader
        // sees the move: no UDF bridge (its own file entries would still
        // name the old extent), one extent shared by every record, an MBR
        // whose ISO partition can grow over it. And to the first syslinux
        // config only: one may include another (isolinux.cfg includes
        // txt.cfg), and an entry must not show twice.
        if flavour == Flavour::Syslinux
            && moved.is_empty()
            && let Some(menu) = stick_menu
            && !fs.has_udf
            && records.iter().all(|r| r.extent.offset == extent.offset)
            && matches!(layout, Layout::HybridMbr { .. })
        {
            // The ISO's own lines keep every blank: the file may grow.
            let mut base = text.clone();
            if !base.is_empty() && !base.ends_with(b"\n") {
                base.push(b'\n');
            }
            let grown = bootcfg::add_autoinstall_growing(&base, flavour, menu)
                .with_context(|| format!("patching {path}"))?;
            let new = grown.as_ref().map_or(base, |p| p.text.clone());
            report_configs.push(PatchedConfig {
                path: path.to_string(),
                lines: grown.as_ref().map_or(0, |p| p.lines),
                old_len: extent.length,
                new_len: new.len() as u64,
                machine_entries: true,
                moved_to: None, // set below, with the new extent
            });
            changed_files.push((path.to_string(), new.clone()));
            moved.push((report_configs.len() - 1, records, new));
            continue;
        }
        let patched = bootcfg::add_autoinstall_and(&text, flavour, max_len, append)
            .with_context(|| format!("patching {path}"))?;
        let machine_entries = flavour == Flavour::Grub;
        let Some(patched) = patched else {
            report_configs.push(PatchedConfig {
                path: path.to_string(),
                lines: 0,
                old_len: extent.length,
                new_len: extent.length,
                machine_entries,
                moved_to: None,
            });
            continue;
        };
        let new_len = patched.text.len() as u64;
        if new_len != extent.length {
            for r in &records {
                let mut field = [0u8; 8];
                field[..4].copy_from_slice(&(new_len as u32).to_le_bytes());
                field[4..].copy_from_slice(&(new_len as u32).to_be_bytes());
                writes.push((r.record_offset + 10, field.to_vec()));
            }
        }
        report_configs.push(PatchedConfig {
            path: path.to_string(),
            lines: patched.lines,
            old_len: extent.length,
            new_len,
            machine_entries,
            moved_to: None,
        });
        changed_files.push((path.to_string(), patched.text.clone()));
        writes.push((extent.offset, patched.text));
    }
    if report_configs.is_empty() {
        bail!(
            "{}: none of the boot configs {} is in the ISO: not an Ubuntu live-server image?",
            iso.display(),
            boot_configs.join(", ")
        );
    }
    if !report_configs.iter().any(|c| c.lines > 0) {
        let untouched = report_configs
            .iter()
            .map(|c| c.path.as_str())
            .collect::<Vec<_>>();
        // An image already patched was refused by check_pristine above.
        bail!(
            "{}: no kernel command line booting /casper/ found in {}",
            iso.display(),
            untouched.join(", ")
        );
    }

    let mut md5_updated = Vec::new();
    if !changed_files.is_empty()
        && let Some(extent) = fs.find(&src, "md5sum.txt")?
    {
        let text = read_extent(&src, extent.offset, extent.length)
            .context("reading md5sum.txt from the ISO")?;
        let (new, updated) = update_md5sums(&text, &changed_files);
        if !updated.is_empty() {
            writes.push((extent.offset, new));
        }
        md5_updated = updated;
    }

    let fat =
        build_fat(seed_files, "CIDATA", epoch).context("building the CIDATA seed filesystem")?;
    ensure!(
        (fat.len() as u64).is_multiple_of(LBA),
        "seed filesystem is not a whole number of sectors"
    );
    // Moved files: new extents after the ISO (its file and its volume), one
    // after another, each starting on an ISO 9660 block; the volume grows
    // to cover them, and so does the MBR partition that held the ISO. The
    // seed partition starts on the next 1 MiB boundary after them.
    let mut volume_end = iso_len.max(fs.volume_size).div_ceil(fs.block_size) * fs.block_size;
    let mut relocations = Vec::with_capacity(moved.len());
    for (index, _, text) in &moved {
        let to = Relocation {
            offset: volume_end,
            length: text.len() as u64,
        };
        volume_end += to.length.max(1).div_ceil(fs.block_size) * fs.block_size;
        report_configs[*index].moved_to = Some(to.offset);
        relocations.push(to);
    }
    if !moved.is_empty() {
        for ((_, records, text), to) in moved.into_iter().zip(&relocations) {
            writes.extend(fs.relocation_writes(&records, to, volume_end)?);
            writes.push((to.offset, text));
        }
        parttable::grow_iso_partitions(&mut layout, iso_len / LBA, volume_end / LBA)
            .context("growing the ISO's partition over the moved boot menu")?;
    }
    let start = iso_len.max(volume_end).div_ceil(ALIGN) * ALIGN;
    let part_sectors = fat.len() as u64 / LBA;
    let total = start / LBA + part_sectors + parttable::backup_gpt_sectors(&layout);

    // Every byte that differs from the source is known before anything is
    // written: the patched files, the seed filesystem, the partition tables.
    let table_writes = parttable::Writes::default();
    let reg = parttable::register(
        &table_writes,
        &layout,
        start / LBA,
        part_sectors,
        total,
        "CIDATA",
    )
    .context("registering the seed partition")?;
    let fat_len = fat.len() as u64;
    writes.push((start, fat));
    writes.extend(table_writes.0.into_inner());
    let report = InstallerReport {
        layout: layout_name(&layout),
        boot_configs: report_configs,
        boot_configs_missing: missing,
        md5sums_updated: md5_updated,
        partition: AddedPartition {
            offset: start,
            size: fat_len,
            mbr_slot: reg.mbr_slot,
            gpt_entry: reg.gpt_entry,
        },
        image_size: total * LBA,
        sha256: String::new(),
        hash_resumed: false,
    };
    Ok(InstallerPlan {
        src,
        iso_len,
        total: total * LBA,
        writes,
        report,
    })
}

fn layout_name(layout: &Layout) -> String {
    layout.describe().to_string()
}

/// Refuses an image that is not Ubuntu's ISO as released: one that already
/// holds a CIDATA filesystem, or whose boot configs already boot with
/// `autoinstall` (another machine's `installer.img`, say). Patching it again
/// would give a stick with two seeds, and the installer would pick one of
/// them at random. An input error: the user named the wrong file.
pub fn check_pristine(
    iso: &Path,
    src: &File,
    fs: &Iso9660,
    layout: &Layout,
    boot_configs: &[&str],
) -> Result<()> {
    let refuse = |found: String| -> anyhow::Error {
        crate::diag::InputErrors(vec![crate::diag::Diagnostic::error(
            iso,
            Default::default(),
            "--iso",
            format!(
                "{found}: this is an image microseed already made (such as an \
                 installer.img), not Ubuntu's installer ISO as released; give the \
                 original ISO (e.g. ubuntu-20.04.6-live-server-amd64.iso)"
            ),
        )])
        .into()
    };
    for (what, start) in parttable::partitions(layout) {
        let mut sector = [0u8; 512];
        if src.read_exact_at(&mut sector, start * LBA).is_ok()
            && let Some(label) = fat_label(&sector)
            && label.eq_ignore_ascii_case("cidata")
        {
            return Err(refuse(format!(
                "{what} (at byte {}) is a FAT filesystem labelled {label}, a cloud-init seed",
                start * LBA
            )));
        }
    }
    let present: Vec<&str> = boot_configs.to_vec();
    if let Some(path) = boot_config_already_patched(src, fs, &present)? {
        return Err(refuse(format!(
            "{path} already boots the installer with `autoinstall`"
        )));
    }
    Ok(())
}

/// The pristine check on its own, for the CLI to run before anything is
/// built. An image it cannot read as an ISO passes here; patching then says
/// what is wrong with it.
pub fn check_pristine_file(iso: &Path) -> Result<()> {
    let Ok(src) = File::open(iso) else {
        return Ok(());
    };
    let Ok(len) = src.metadata().map(|m| m.len()) else {
        return Ok(());
    };
    if let Err(e) = check_size(iso, len) {
        return Err(
            crate::diag::InputErrors(vec![crate::diag::Diagnostic::error(
                iso,
                Default::default(),
                "--iso",
                e.to_string(),
            )])
            .into(),
        );
    }
    let Ok(fs) = Iso9660::open(&src) else {
        return Ok(());
    };
    let Ok(layout) = parttable::read_layout(&src, len) else {
        return Ok(());
    };
    check_pristine(iso, &src, &fs, &layout, DEFAULT_BOOT_CONFIGS)
}

fn check_size(iso: &Path, iso_len: u64) -> Result<()> {
    ensure!(
        iso_len >= 32 * 2048,
        "{}: {} bytes is too small to be an ISO 9660 image; expected an Ubuntu live-server ISO (about 1 GiB)",
        iso.display(),
        iso_len
    );
    ensure!(
        iso_len.is_multiple_of(LBA),
        "{}: {} bytes does not end on a 512-byte boundary, as every ISO and disk image does: a truncated download, or not an ISO image",
        iso.display(),
        iso_len
    );
    Ok(())
}

/// The volume label of a FAT boot sector (FAT12/16 or FAT32), if it is one.
fn fat_label(b: &[u8; 512]) -> Option<String> {
    if b[510] != 0x55 || b[511] != 0xAA {
        return None;
    }
    let at = if &b[54..57] == b"FAT" {
        43
    } else if &b[82..87] == b"FAT32" {
        71
    } else {
        return None;
    };
    let label = &b[at..at + 11];
    if !label.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        return None;
    }
    Some(String::from_utf8_lossy(label).trim_end().to_string())
}

/// The first of these configs whose casper command line already has the
/// word `autoinstall` (an image patched before), if any.
fn boot_config_already_patched<'a>(
    src: &File,
    fs: &Iso9660,
    paths: &[&'a str],
) -> Result<Option<&'a str>> {
    for path in paths {
        if boot_configs_already_patched(src, fs, &[path])? {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// True when a casper command line in these configs already has the word
/// (an image patched before).
fn boot_configs_already_patched(src: &File, fs: &Iso9660, paths: &[&str]) -> Result<bool> {
    let mut any = false;
    for path in paths {
        if let Some(e) = fs.find(src, path)? {
            let text = read_extent(src, e.offset, e.length)?;
            any |= text.split(|b| *b == b'\n').any(|l| {
                l.windows(6).any(|w| w == b"casper") && l.windows(11).any(|w| w == b"autoinstall")
            });
        }
    }
    Ok(any)
}

fn read_extent(file: &File, offset: u64, length: u64) -> Result<Vec<u8>> {
    ensure!(
        length <= 16 << 20,
        "file of {length} bytes is too large for a config"
    );
    let mut buf = vec![0u8; length as usize];
    file.read_exact_at(&mut buf, offset)
        .with_context(|| format!("reading {length} bytes at {offset}"))?;
    Ok(buf)
}

/// Rewrite the digest of each changed file in md5sum.txt (fixed width, so the
/// length is unchanged). Returns the new text and the paths updated.
fn update_md5sums(text: &[u8], changed: &[(String, Vec<u8>)]) -> (Vec<u8>, Vec<String>) {
    let mut out = text.to_vec();
    let mut updated = Vec::new();
    let mut pos = 0;
    for line in text.split_inclusive(|b| *b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if body.len() > 34 && body[..32].iter().all(u8::is_ascii_hexdigit) && body[32] == b' ' {
            let name = String::from_utf8_lossy(&body[33..]);
            let name = name.trim_start_matches([' ', '*']).trim_start_matches("./");
            if let Some((path, data)) = changed.iter().find(|(p, _)| p.eq_ignore_ascii_case(name)) {
                let digest = hex::encode(Md5::digest(data));
                out[pos..pos + 32].copy_from_slice(digest.as_bytes());
                updated.push(path.clone());
            }
        }
        pos += line.len();
    }
    (out, updated)
}

/// Writes the image: the source's bytes with `writes` laid over them (in
/// order, later ones winning), zeros up to `total`. Returns its sha256.
///
/// The copy is a reflink (FICLONE) where the filesystem shares extents, else
/// copy_file_range: either way done by the kernel, as `cp` does. Meanwhile a
/// second thread hashes the image's final bytes, read from the source (from
/// the page cache the copy fills) with the same writes laid over them, so
/// the manifest costs no second read of the image: the whole costs about
/// one copy of the ISO. The source is read with pread, not mapped: an ISO
/// truncated while the build runs is then an error, where a mapping would
/// kill the process with SIGBUS and leave its staging tree behind.
fn write_image(
    plan: &InstallerPlan,
    dst: &File,
    prefix: u64,
    cache: Option<(&Path, &str)>,
) -> Result<(String, bool)> {
    let (src, iso_len, total, writes) = (&plan.src, plan.iso_len, plan.total, &plan.writes);
    crate::cleanup::pause_point("installer-planned");
    std::thread::scope(|scope| {
        let hasher = scope.spawn(|| {
            super::hashstate::hash_image(total, prefix, cache, |pos, buf| {
                fill_overlaid(src, iso_len, pos, buf, writes)
            })
        });
        copy_image(src, dst, iso_len)?;
        dst.set_len(total)
            .context("extending the image for the seed partition")?;
        for (offset, data) in writes {
            dst.write_all_at(data, *offset)
                .with_context(|| format!("writing patched bytes at {offset}"))?;
        }
        let hashed = hasher
            .join()
            .map_err(|_| anyhow::anyhow!("the hashing thread panicked"))??;
        // A source that shrank after the hash read it: the copy is short.
        ensure!(
            src.metadata().context("reading the ISO's size")?.len() == iso_len,
            "the ISO changed size while the image was written (was it truncated or \
             replaced during the build?)"
        );
        Ok(hashed)
    })
}

/// Fills `buf` with the bytes at `pos` of the first `src_len` bytes of
/// `src` (zero-extended) with `writes` laid over them in order. A source
/// shorter than `src_len` (truncated since) is an error.
fn fill_overlaid(
    src: &File,
    src_len: u64,
    pos: u64,
    buf: &mut [u8],
    writes: &[(u64, Vec<u8>)],
) -> std::io::Result<()> {
    let end = pos + buf.len() as u64;
    let have = (src_len.clamp(pos, end) - pos) as usize;
    src.read_exact_at(&mut buf[..have], pos).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            std::io::Error::other(format!(
                "the ISO ended before byte {end} of {src_len}: it was truncated while in use"
            ))
        } else {
            e
        }
    })?;
    buf[have..].fill(0);
    for (offset, data) in writes {
        let (a, b) = (*offset, *offset + data.len() as u64);
        let (lo, hi) = (a.max(pos), b.min(end));
        if lo < hi {
            buf[(lo - pos) as usize..(hi - pos) as usize]
                .copy_from_slice(&data[(lo - a) as usize..(hi - a) as usize]);
        }
    }
    Ok(())
}

/// Copy `len` bytes: a reflink (FICLONE) where the filesystem shares extents,
/// else copy_file_range through `std::io::copy`.
fn copy_image(src: &File, dst: &File, len: u64) -> Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: FICLONE takes the source descriptor as its argument; both
    // descriptors are open for the duration of the call.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if rc == 0 {
        return Ok(());
    }
    let mut r = src;
    let mut w = dst;
    std::io::Seek::rewind(&mut r).context("rewinding the source")?;
    let copied = std::io::copy(&mut r, &mut w).context("copying the image")?;
    ensure!(
        copied == len,
        "copied {copied} bytes of {len}: the ISO was truncated or replaced while it was copied"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn overlaid_hash_equals_the_hash_of_the_written_bytes() {
        use sha2::Digest as _;
        let base: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        let total = 13_000_000u64;
        // Overlapping writes (the later wins), one across a chunk border, one
        // in the zero-filled tail past the base.
        let writes = vec![
            (100u64, vec![1u8; 50]),
            (120, vec![2u8; 10]),
            ((4 << 20) - 3, vec![3u8; 9]),
            (12_000_000, vec![4u8; 4096]),
        ];
        let mut image = base.clone();
        image.resize(total as usize, 0);
        for (o, d) in &writes {
            image[*o as usize..*o as usize + d.len()].copy_from_slice(d);
        }
        let mut src = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut src, &base).unwrap();
        let hash = |src: &std::fs::File| {
            crate::iso::hashstate::hash_image(total, 0, None, |pos, buf| {
                super::fill_overlaid(src, base.len() as u64, pos, buf, &writes)
            })
            .map(|(h, _)| h)
        };
        assert_eq!(
            hash(&src).unwrap(),
            hex::encode(sha2::Sha256::digest(&image))
        );
        // Truncated since it was planned: an error, not a signal.
        src.set_len(5_000_000).unwrap();
        let err = hash(&src).unwrap_err();
        assert!(format!("{err:#}").contains("truncated"), "{err:#}");
    }

    #[test]
    fn md5_lines_keep_their_width() {
        let text = b"00000000000000000000000000000000  ./boot/grub/grub.cfg\nffffffffffffffffffffffffffffffff  ./casper/vmlinuz\n";
        let (out, upd) =
            super::update_md5sums(text, &[("boot/grub/grub.cfg".into(), b"x".to_vec())]);
        assert_eq!(out.len(), text.len());
        assert_eq!(upd, vec!["boot/grub/grub.cfg".to_string()]);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("9dd4e461268c8034f5c8564e155c67a6  ./boot/grub/grub.cfg\n")
        );
    }
}
