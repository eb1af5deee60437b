//! Packaging: what `build --format` writes from each machine's documents.
//! Every output format is one module of the same shape (a [`Spec`] and a
//! [`Packager`]), and [`FORMATS`] is the one table that names them: `build`
//! loops over the table, `--format` parses against it, `outdir` and
//! `verify` ask it which directories the user fills. Adding a format is a
//! new module here and one row in [`FORMATS`].
//!
//! Formats see the validated cluster, the documents and the staging area,
//! never the pipeline that made them: nothing here imports `build`.

pub mod dir;
pub mod installer;
pub mod pxe;
pub mod seed_img;

use std::path::Path;
use std::sync::LazyLock;

use anyhow::Result;

use crate::documents::Documents;
use crate::model::{Cluster, Machine};
use crate::output::Staging;

/// The output formats, in the order they run (and `--help` lists them).
pub static FORMATS: [Spec; 4] = [dir::SPEC, seed_img::SPEC, installer::SPEC, pxe::SPEC];

/// One output format.
pub struct Spec {
    /// The `--format` value.
    pub name: &'static str,
    /// Its `--help` line.
    pub help: &'static str,
    /// Directories under OUT whose files the user copies in: a build never
    /// writes them, carries them into every new tree, and `verify` does not
    /// call their files unlisted.
    pub provided: &'static [&'static str],
    /// Starts the format for one build, before any machine is rendered
    /// (refusing missing options here fails before anything is staged).
    pub start: fn(&Run<'_>) -> Result<Box<dyn Packager>>,
}

/// Writes one format into the staging area.
pub trait Packager {
    /// Takes one machine's documents as soon as they are rendered, in build
    /// order; a format that needs every machine at once keeps what it needs.
    fn machine(
        &mut self,
        run: &Run<'_>,
        machine: &Machine,
        docs: &Documents,
        staging: &mut Staging,
    ) -> Result<()>;

    /// After every machine.
    fn finish(self: Box<Self>, _run: &Run<'_>, _staging: &mut Staging) -> Result<()> {
        Ok(())
    }
}

/// What every format may read during one build.
pub struct Run<'a> {
    pub cluster: &'a Cluster,
    /// The machines being built, in build order.
    pub machines: &'a [&'a Machine],
    /// Timestamp for images (`SOURCE_DATE_EPOCH`).
    pub epoch: i64,
    /// `--templates DIR`.
    pub templates: Option<&'a Path>,
    /// `--profiles DIR` (a release profile's signing key may live there).
    pub profiles: Option<&'a Path>,
    /// The options of the formats that take some.
    pub options: &'a Options,
}

/// Options of the formats that have flags of their own; a format is handed
/// the whole set and takes its own.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub pxe: Option<crate::pxe::PxeOptions>,
    pub installer: Option<installer::InstallerOptions>,
}

/// A `--format` value: a row of [`FORMATS`].
#[derive(Clone, Copy)]
pub struct Format(&'static Spec);

impl Format {
    pub fn name(self) -> &'static str {
        self.0.name
    }

    pub fn spec(self) -> &'static Spec {
        self.0
    }

    /// The format of that name, if the table has one.
    pub fn named(name: &str) -> Option<Format> {
        FORMATS.iter().find(|s| s.name == name).map(Format)
    }

    /// Is this the format `spec` describes?
    pub fn is(self, spec: &Spec) -> bool {
        self.0.name == spec.name
    }

    fn index(self) -> usize {
        FORMATS
            .iter()
            .position(|s| s.name == self.0.name)
            .unwrap_or(usize::MAX)
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Format) -> bool {
        self.0.name == other.0.name
    }
}
impl Eq for Format {}
impl PartialOrd for Format {
    fn partial_cmp(&self, other: &Format) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
/// Table order, so sorting the requested formats runs them in that order.
impl Ord for Format {
    fn cmp(&self, other: &Format) -> std::cmp::Ordering {
        self.index().cmp(&other.index())
    }
}
impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}
impl serde::Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

static ALL: LazyLock<Vec<Format>> = LazyLock::new(|| FORMATS.iter().map(Format).collect());

impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Format] {
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.0.name).help(self.0.help))
    }
}

/// Is `rel` (a path in the output) a directory some format leaves to the
/// user ([`Spec::provided`]), or under one? The directory itself may be a
/// symbolic link the user made.
pub fn is_provided(rel: &str) -> bool {
    provided_dirs().any(|d| rel.starts_with(d) || rel == d.trim_end_matches('/'))
}

/// Every format's [`Spec::provided`] directories.
pub fn provided_dirs() -> impl Iterator<Item = &'static str> {
    FORMATS.iter().flat_map(|s| s.provided.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_are_unique_and_parse_back() {
        for s in &FORMATS {
            let f = Format::named(s.name).expect("named");
            assert_eq!(f.name(), s.name);
            assert_eq!(FORMATS.iter().filter(|o| o.name == s.name).count(), 1);
        }
        assert!(Format::named("tarball").is_none());
    }

    #[test]
    fn formats_sort_in_table_order() {
        let mut v: Vec<Format> = ["pxe", "dir", "installer", "seed-img", "dir"]
            .iter()
            .map(|n| Format::named(n).unwrap())
            .collect();
        v.sort();
        v.dedup();
        let names: Vec<&str> = v.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["dir", "seed-img", "installer", "pxe"]);
    }

    /// A format module without its row would be dead code `--format` cannot
    /// reach: the file and the row come together.
    #[test]
    fn every_format_module_has_a_row_in_the_table() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/package");
        let mut modules: Vec<String> = std::fs::read_dir(&dir)
            .expect("src/package")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().replace('_', "-")))
            .filter(|n| n != "mod")
            .collect();
        modules.sort();
        let mut rows: Vec<String> = FORMATS.iter().map(|s| s.name.to_string()).collect();
        rows.sort();
        assert_eq!(modules, rows);
    }

    #[test]
    fn the_pxe_boot_files_are_the_users() {
        assert!(is_provided("pxe/boot/vmlinuz"));
        assert!(is_provided("pxe/iso"));
        assert!(is_provided("pxe/tftp/"));
        assert!(!is_provided("pxe/seeds/master/user-data"));
        assert!(!is_provided("master/seed.img"));
    }
}
