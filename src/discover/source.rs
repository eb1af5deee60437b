//! Where the reports come from: a directory of them (a mounted stick's
//! `microseed/reports`, the stick's root, or a copy), or the stick itself, a
//! block device or an image file, whose CIDATA FAT partition is found
//! through its partition table (MBR or GPT, as [`crate::iso::parttable`]
//! reads them) and read with `fatfs`, never mounted and never written.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::diag::{Diagnostic, InputErrors, Pos};

use super::report::{self, MAX_REPORT_BYTES, Report};
use super::{REPORTS_DIR, STICK_LABEL};

/// More report files than any cluster has machines: a directory with more
/// is not a reports directory.
const MAX_REPORTS: usize = 4096;

/// A report as read, before it is parsed.
pub struct RawReport {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// What was read, and from where (for messages).
pub struct Found {
    /// The directory or device the reports were read from, as shown to the user.
    pub origin: String,
    pub reports: Vec<Report>,
    /// Files that are not reports, with why (shown as warnings).
    pub skipped: Vec<String>,
}

fn refuse(path: &Path, msg: impl Into<String>) -> anyhow::Error {
    InputErrors(vec![Diagnostic::error(
        path,
        Pos::default(),
        "",
        msg.into(),
    )])
    .into()
}

/// Reads every report SRC holds.
pub fn read(src: &Path) -> anyhow::Result<Found> {
    let meta = std::fs::metadata(src).map_err(|e| {
        refuse(
            src,
            format!(
                "cannot read it ({e}); expected the cluster stick (a disk such as /dev/sdb, or \
                 an image file) or a directory of reports"
            ),
        )
    })?;
    let (origin, raw) = if meta.is_dir() {
        let nested = src.join(REPORTS_DIR);
        let dir = if nested.is_dir() {
            nested
        } else {
            src.to_path_buf()
        };
        (dir.display().to_string(), read_dir(&dir)?)
    } else if meta.is_file() || meta.file_type().is_block_device() {
        let raw = read_stick(src).map_err(|e| match e.downcast::<InputErrors>() {
            Ok(i) => i.into(),
            Err(e) => refuse(src, format!("{e:#}")),
        })?;
        (
            format!("{}:{REPORTS_DIR}", src.display()),
            raw.unwrap_or_default(),
        )
    } else {
        return Err(refuse(
            src,
            "neither a directory, a disk nor an image file; expected the cluster stick \
             (such as /dev/sdb) or a directory of reports",
        ));
    };
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for r in raw {
        let text = String::from_utf8_lossy(&r.bytes);
        match report::parse(&r.name, &text) {
            Ok(rep) => reports.push(rep),
            Err(e) => skipped.push(format!("{}: {e}", r.name)),
        }
    }
    reports.sort_by(|a, b| a.file.cmp(&b.file));
    if reports.is_empty() {
        let why = if skipped.is_empty() {
            "no discovery reports (*.txt) there".to_string()
        } else {
            format!(
                "no discovery report there ({} file(s) that are not one: {})",
                skipped.len(),
                skipped.join("; ")
            )
        };
        return Err(InputErrors(vec![Diagnostic::error(
            Path::new(&origin),
            Pos::default(),
            "",
            format!(
                "{why}; boot each new machine once from the cluster stick (it saves a report \
                 when it matches no machine), then run discover on the stick"
            ),
        )])
        .into());
    }
    Ok(Found {
        origin,
        reports,
        skipped,
    })
}

fn is_report_name(name: &str) -> bool {
    name.len() > 4 && name.to_ascii_lowercase().ends_with(".txt") && !name.starts_with('.')
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<RawReport>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| refuse(dir, format!("cannot list the directory: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| refuse(dir, format!("cannot list the directory: {e}")))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_report_name(&name) {
            continue;
        }
        let path: PathBuf = e.path();
        // Only regular files: a FIFO named x.txt must not block the read.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if out.len() >= MAX_REPORTS {
            return Err(refuse(
                dir,
                format!("more than {MAX_REPORTS} .txt files; not a directory of reports"),
            ));
        }
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|f| f.take(MAX_REPORT_BYTES + 1).read_to_end(&mut bytes))
            .map_err(|e| refuse(&path, format!("cannot read the report: {e}")))?;
        if bytes.len() as u64 > MAX_REPORT_BYTES {
            return Err(refuse(
                &path,
                format!(
                    "larger than {} KiB; a discovery report is a few KiB",
                    MAX_REPORT_BYTES / 1024
                ),
            ));
        }
        out.push(RawReport { name, bytes });
    }
    Ok(out)
}

/// A read-only window onto `len` bytes of a file from `start`: what
/// `fatfs` gets, so that it can neither read past the partition nor write.
struct Window {
    file: File,
    start: u64,
    len: u64,
    pos: u64,
}

impl Read for Window {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if n == 0 {
            return Ok(0);
        }
        let got = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl Seek for Window {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        };
        match new {
            Some(p) if p <= self.len => {
                self.pos = p;
                Ok(p)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}

impl Write for Window {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        // Reading reports never changes the stick.
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the stick is read only here",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The size of a file or block device in bytes.
fn size_of(file: &mut File) -> io::Result<u64> {
    let n = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(n)
}

/// The byte offsets of the MBR's partitions (not the GPT-protective one).
fn mbr_starts(file: &File) -> Vec<u64> {
    let mut b = [0u8; 512];
    if file.read_exact_at(&mut b, 0).is_err() || b[510] != 0x55 || b[511] != 0xAA {
        return Vec::new();
    }
    (0..4)
        .filter_map(|i| {
            let e = &b[446 + 16 * i..462 + 16 * i];
            let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
            (e[4] != 0 && e[4] != 0xee && start > 0)
                .then(|| u64::from(start) * crate::iso::parttable::LBA)
        })
        .collect()
}

/// Whether the 512 bytes at `at` are a FAT boot sector.
fn looks_like_fat(file: &File, at: u64) -> bool {
    let mut b = [0u8; 512];
    if file.read_exact_at(&mut b, at).is_err() {
        return false;
    }
    b[510] == 0x55 && b[511] == 0xAA && (&b[54..57] == b"FAT" || &b[82..87] == b"FAT32")
}

/// The reports on the stick `path`: `None` when its CIDATA partition has
/// no reports directory yet.
fn read_stick(path: &Path) -> anyhow::Result<Option<Vec<RawReport>>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            return Err(refuse(
                path,
                format!(
                    "cannot read it ({e}): a disk needs root (sudo), or give the mounted \
                     stick's directory instead"
                ),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let len = size_of(&mut file)?;
    // Partition starts from the tables as `iso::parttable` reads them; it
    // refuses layouts it could not add a partition to (a full MBR), which
    // still list their partitions: those are read from the MBR directly.
    // A FAT on the whole device (no table) is tried too.
    let mut starts: Vec<u64> = match crate::iso::parttable::read_layout(&file, len) {
        Ok(layout) => crate::iso::parttable::partitions(&layout)
            .into_iter()
            .map(|(_, lba)| lba * crate::iso::parttable::LBA)
            .collect(),
        Err(_) => mbr_starts(&file),
    };
    starts.push(0);
    starts.sort_unstable();
    starts.dedup();
    let mut labels = Vec::new();
    for start in starts {
        if start >= len || !looks_like_fat(&file, start) {
            continue;
        }
        let window = Window {
            file: file.try_clone()?,
            start,
            len: len - start,
            pos: 0,
        };
        let Ok(fs) = fatfs::FileSystem::new(window, fatfs::FsOptions::new()) else {
            continue;
        };
        // cloud-init 20.1 reads the root-directory label, later ones the
        // boot sector's: either names the stick.
        let root_label = fs.read_volume_label_from_root_dir().ok().flatten();
        let label = fs.volume_label();
        let is_stick = [Some(label.as_str()), root_label.as_deref()]
            .iter()
            .flatten()
            .any(|l| l.trim().eq_ignore_ascii_case(STICK_LABEL));
        if !is_stick {
            labels.push(label.trim().to_string());
            continue;
        }
        let dir = match fs.root_dir().open_dir(REPORTS_DIR) {
            Ok(d) => d,
            Err(_) => return Ok(None),
        };
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e.map_err(|e| anyhow::anyhow!("reading {REPORTS_DIR} on the stick: {e}"))?;
            let name = e.file_name();
            if !e.is_file() || !is_report_name(&name) {
                continue;
            }
            if out.len() >= MAX_REPORTS {
                anyhow::bail!(
                    "more than {MAX_REPORTS} files in {REPORTS_DIR}; not a reports directory"
                );
            }
            if e.len() > MAX_REPORT_BYTES {
                anyhow::bail!(
                    "{REPORTS_DIR}/{name} is larger than {} KiB; a discovery report is a few KiB",
                    MAX_REPORT_BYTES / 1024
                );
            }
            let mut bytes = Vec::new();
            e.to_file().read_to_end(&mut bytes).map_err(|err| {
                anyhow::anyhow!("reading {REPORTS_DIR}/{name} on the stick: {err}")
            })?;
            out.push(RawReport { name, bytes });
        }
        return Ok(Some(out));
    }
    let seen = if labels.is_empty() {
        "no FAT filesystem at all".to_string()
    } else {
        format!("FAT filesystems labelled {}", labels.join(", "))
    };
    Err(InputErrors(vec![Diagnostic::error(
        path,
        Pos::default(),
        "",
        format!(
            "no {STICK_LABEL} partition found ({seen}); expected the cluster stick `build \
             --format installer` made, or a directory of reports"
        ),
    )])
    .into())
}
