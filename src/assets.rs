//! Profiles and templates: shipped inside the binary, and overridable file by
//! file from a directory, so a site can change a template or add a role
//! without rebuilding microseed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use include_dir::{Dir, include_dir};

static PROFILES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/profiles");
static TEMPLATES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/cloud-init");

/// A tree of text files: the embedded copy, optionally overlaid by a directory
/// whose files win (and may add new ones).
#[derive(Debug, Clone)]
pub struct Tree {
    embedded: &'static Dir<'static>,
    overlay: Option<PathBuf>,
}

/// Where an asset came from, for error messages.
#[derive(Debug, Clone)]
pub struct Asset {
    /// Path relative to the tree root, with `/` separators.
    pub name: String,
    /// Display origin: `embedded:NAME` or the overlay file's path.
    pub origin: PathBuf,
    pub text: String,
}

impl Tree {
    pub fn profiles(overlay: Option<&Path>) -> Tree {
        Tree {
            embedded: &PROFILES,
            overlay: overlay.map(Path::to_path_buf),
        }
    }

    pub fn templates(overlay: Option<&Path>) -> Tree {
        Tree {
            embedded: &TEMPLATES,
            overlay: overlay.map(Path::to_path_buf),
        }
    }

    /// Reads one file, preferring the overlay.
    pub fn get(&self, name: &str) -> Result<Option<Asset>> {
        if let Some(dir) = &self.overlay {
            let p = dir.join(name);
            if p.is_file() {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading {}", p.display()))?;
                return Ok(Some(Asset {
                    name: name.to_string(),
                    origin: p,
                    text,
                }));
            }
        }
        match self.embedded.get_file(name) {
            Some(f) => {
                let text = f
                    .contents_utf8()
                    .with_context(|| format!("embedded {name} is not UTF-8"))?;
                Ok(Some(Asset {
                    name: name.to_string(),
                    origin: PathBuf::from(format!("embedded:{name}")),
                    text: text.to_string(),
                }))
            }
            None => Ok(None),
        }
    }

    /// Whether the overlay holds `name` (so it wins over the embedded copy).
    pub fn overridden(&self, name: &str) -> bool {
        self.overlay
            .as_ref()
            .is_some_and(|d| d.join(name).is_file())
    }

    /// Where `name` would be read from, without reading it: the overlay's
    /// file, else `embedded:NAME`; `None` when neither has it.
    pub fn origin(&self, name: &str) -> Option<PathBuf> {
        if let Some(dir) = &self.overlay {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
        self.embedded
            .get_file(name)
            .map(|_| PathBuf::from(format!("embedded:{name}")))
    }

    /// Reads one file as bytes (keys are not always text), preferring the
    /// overlay; returns its origin with it.
    pub fn get_bytes(&self, name: &str) -> Result<Option<(PathBuf, Vec<u8>)>> {
        if let Some(dir) = &self.overlay {
            let p = dir.join(name);
            if p.is_file() {
                let bytes =
                    std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                return Ok(Some((p, bytes)));
            }
        }
        Ok(self.embedded.get_file(name).map(|f| {
            (
                PathBuf::from(format!("embedded:{name}")),
                f.contents().to_vec(),
            )
        }))
    }

    /// Every file name under `dir` (relative to the root), embedded and
    /// overlay merged, sorted so iteration order never depends on the disk.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        let root = if dir.is_empty() {
            Some(self.embedded)
        } else {
            self.embedded.get_dir(dir)
        };
        if let Some(d) = root {
            collect(d, &mut names);
        }
        if let Some(o) = &self.overlay {
            let base = o.join(dir);
            if base.is_dir() {
                walk(o, &base, &mut names)?;
            }
        }
        Ok(names.into_iter().collect())
    }
}

fn collect(d: &Dir<'_>, out: &mut std::collections::BTreeSet<String>) {
    for f in d.files() {
        out.insert(f.path().to_string_lossy().replace('\\', "/"));
    }
    for sub in d.dirs() {
        collect(sub, out);
    }
}

fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeSet<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let p = entry.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else if let Ok(rel) = p.strip_prefix(root) {
            out.insert(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}
