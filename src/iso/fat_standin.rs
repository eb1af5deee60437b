//! STAND-IN, TO BE REPLACED by `crate::image::fat::build_fat` once that module
//! is merged (swap the one `use` line in `patch.rs`, then delete this file).
//!
//! A deterministic in-memory FAT filesystem for the CIDATA seed partition:
//! fatfs 0.3.6 formatting a zeroed buffer, the label in the boot sector and as
//! the root-directory volume-label entry (cloud-init 20.1 reads only the
//! latter), every timestamp taken from `epoch`, root-directory files only.

use anyhow::{Context, Result, ensure};
use std::io::{Cursor, Write};

/// Build a FAT image holding `files` in its root directory, labelled `label`.
pub fn build_fat(files: &[(&str, &[u8])], label: &str, epoch: i64) -> Result<Vec<u8>> {
    ensure!(
        !label.is_empty() && label.len() <= 11 && label.is_ascii(),
        "FAT label {label:?} must be 1 to 11 ASCII characters"
    );
    let mut label_bytes = [b' '; 11];
    label_bytes[..label.len()].copy_from_slice(label.as_bytes());
    // Room for the content plus slack, rounded up to whole MiB, at least 4 MiB.
    let content: usize = files
        .iter()
        .map(|(_, d)| d.len().div_ceil(4096) * 4096)
        .sum();
    let size = (content + (2 << 20)).div_ceil(1 << 20).max(4) << 20;
    let mut disk = Cursor::new(vec![0u8; size]);
    // The volume id is derived from the content, so equal inputs give equal bytes.
    let volume_id = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(label.as_bytes());
        h.update(epoch.to_le_bytes());
        for (name, data) in files {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(data);
        }
        let d = h.finalize();
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    };
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new()
            .volume_label(label_bytes)
            .volume_id(volume_id),
    )
    .context("formatting the FAT image")?;
    disk.set_position(0);
    // fatfs wants a &'static provider: leak one small value per image built.
    let provider: &'static FixedTime = Box::leak(Box::new(FixedTime(dos_datetime(epoch))));
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new().time_provider(provider))
            .context("opening the new FAT image")?;
        for (name, data) in files {
            let root = fs.root_dir();
            ensure!(
                !name.contains('/'),
                "seed file {name:?}: only root-directory files are supported"
            );
            let mut f = root
                .create_file(name)
                .with_context(|| format!("creating {name} in the FAT image"))?;
            f.truncate()
                .with_context(|| format!("truncating {name} in the FAT image"))?;
            f.write_all(data)
                .with_context(|| format!("writing {name} to the FAT image"))?;
        }
        fs.unmount().context("closing the FAT image")?;
    }
    Ok(disk.into_inner())
}

#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl fatfs::TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// Unix seconds to a DOS date-time (UTC), clamped to FAT's 1980..=2107 range.
fn dos_datetime(epoch: i64) -> fatfs::DateTime {
    let min = 315_532_800; // 1980-01-01
    let max = 4_354_819_198; // 2107-12-31 23:59:58
    let t = epoch.clamp(min, max);
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    fatfs::DateTime {
        date: fatfs::Date {
            year: year as u16,
            month: month as u16,
            day: day as u16,
        },
        time: fatfs::Time {
            hour: (secs / 3600) as u16,
            min: (secs / 60 % 60) as u16,
            sec: (secs % 60) as u16,
            millis: 0,
        },
    }
}
