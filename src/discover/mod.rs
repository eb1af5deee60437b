//! `discover`: what the machines that booted the cluster stick without a
//! seed of their own reported (`discover.sh`, put on the stick by the
//! installer format), turned into `machines:` entries to paste or filled
//! into the cluster file. The flow and the report format: docs/discover.md.
//!
//! - [`report`]: the report format, read back.
//! - [`source`]: reports from a directory, or from the stick itself (its
//!   CIDATA FAT partition, read without mounting).
//! - [`entry`]: which card and which disk, and why; the entry as text.
//! - [`fill`]: the values written into the cluster file in place.

pub mod entry;
pub mod fill;
pub mod report;
pub mod source;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::json;

use crate::diag::{Diagnostic, InputErrors, Pos};

/// The script a machine that matches no seed runs (select.sh calls it as
/// `sh DISCOVER_SH_PATH DIR`, DIR being the stick's [`REPORTS_DIR`]).
pub const DISCOVER_SH: &str = include_str!("../install/discover.sh");
/// Where [`DISCOVER_SH`] goes on the stick's CIDATA partition.
pub const DISCOVER_SH_PATH: &str = "microseed/discover.sh";
/// Where the reports land on the stick's CIDATA partition (writable FAT).
pub const REPORTS_DIR: &str = "microseed/reports";
/// The label of the stick's FAT partition.
pub const STICK_LABEL: &str = crate::image::seed::SEED_LABEL;

/// What `discover` was asked for on the command line.
#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// The cluster stick (a disk such as /dev/sdb, or its image file), a
    /// mounted stick, or a directory of reports.
    pub source: PathBuf,
    /// Fill the discovered mac, interface and disk into this cluster file
    /// (needs --machine).
    #[arg(long, value_name = "FILE", requires = "machines")]
    pub cluster: Option<PathBuf>,
    /// With --cluster: the machine NAME of the file gets the values of the
    /// report holding a card with this MAC (repeatable).
    #[arg(long = "machine", value_name = "NAME=MAC", requires = "cluster")]
    pub machines: Vec<String>,
    /// With --cluster: replace a mac, interface or disk the file already
    /// sets to something else.
    #[arg(long, requires = "cluster")]
    pub force: bool,
}

/// `discover SRC [--cluster FILE --machine NAME=MAC ...]`.
pub fn run(args: &DiscoverArgs, profiles: Option<&Path>, json: bool) -> Result<()> {
    // The flags first: a typo must not wait for a slow stick to be read.
    let mut requests = Vec::new();
    let mut bad = Vec::new();
    for m in &args.machines {
        match fill::parse_request(m) {
            Ok(r) => requests.push(r),
            Err(e) => bad.push(Diagnostic::error(
                Path::new("--machine"),
                Pos::default(),
                "",
                e,
            )),
        }
    }
    if !bad.is_empty() {
        return Err(InputErrors(bad).into());
    }
    let found = source::read(&args.source)?;
    for s in &found.skipped {
        crate::errln!("warning: {}: skipped {s}", found.origin);
    }
    if let Some(cluster) = &args.cluster {
        let filled = fill::fill(cluster, &found.reports, &requests, args.force, profiles)?;
        if json {
            crate::outln!(
                "{}",
                json!({
                    "ok": true,
                    "source": found.origin,
                    "cluster": cluster.display().to_string(),
                    "filled": filled,
                })
            )?;
            return Ok(());
        }
        for f in &filled {
            let disk = match &f.entry.disk_serial {
                Some(s) => entry::disk_value(s),
                None => "left as it was (no ID_SERIAL)".to_string(),
            };
            let what = if f.changed.is_empty() {
                "already so".to_string()
            } else {
                format!("set {}", f.changed.join(", "))
            };
            crate::outln!(
                "{}: {} (line {}): mac {}, interface {}, disk {disk}: {what} (from {})",
                cluster.display(),
                f.machine,
                f.line,
                f.entry.mac,
                f.entry.interface,
                f.report
            )?;
            crate::outln!("  interface: {}", f.entry.why_interface)?;
            crate::outln!("  disk: {}", f.entry.why_disk)?;
            for n in &f.entry.notes {
                crate::outln!("  note: {n}")?;
            }
        }
        crate::outln!(
            "{}: passes check; next: microseed build {} -o OUT --format installer",
            cluster.display(),
            cluster.display()
        )?;
        return Ok(());
    }
    let mut out = Vec::new();
    for r in &found.reports {
        let e = entry::for_report(r);
        out.push((r, e));
    }
    if json {
        let reports: Vec<_> = out
            .iter()
            .map(|(r, e)| {
                json!({
                    "file": r.file,
                    "report": r,
                    "entry": e,
                    "text": entry::render(r, e.as_ref()),
                })
            })
            .collect();
        crate::outln!(
            "{}",
            json!({"ok": true, "source": found.origin, "reports": reports})
        )?;
        return Ok(());
    }
    crate::outln!(
        "# {} report(s) from {}: one entry each, for the machine that has the card with that MAC",
        found.reports.len(),
        found.origin
    )?;
    for (r, e) in &out {
        crate::outln!()?;
        crate::commands::write_stdout(format_args!("{}", entry::render(r, e.as_ref())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stick_carries_this_discover_sh_where_select_sh_runs_it() {
        use crate::stick::{DIR, STICK_SCRIPTS};
        let on_stick = STICK_SCRIPTS
            .iter()
            .find(|(n, _)| *n == "discover.sh")
            .map(|(_, text)| *text);
        assert_eq!(on_stick, Some(DISCOVER_SH));
        assert_eq!(DISCOVER_SH_PATH, format!("{DIR}/discover.sh"));
        assert_eq!(REPORTS_DIR, format!("{DIR}/reports"));
        let select = STICK_SCRIPTS[0].1;
        assert!(select.contains("\"$here/discover.sh\" \"$reports\""));
    }
}
