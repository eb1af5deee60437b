//! Which Ubuntu release an installer ISO is, read from the ISO itself, so a
//! 20.04 ISO given with `--iso` never becomes a "24.04" stick.
//!
//! Ubuntu's live-server ISOs say their release twice: in `.disk/info`
//! (`Ubuntu-Server 20.04.6 LTS "Focal Fossa" - Release amd64 (20230316)`),
//! which casper and the installer read, and in the volume ID
//! (`Ubuntu-Server 20.04.6 LTS amd64`). Both are read; either naming
//! another release, or neither naming one, refuses the ISO.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, Result};

use super::iso9660::Iso9660;
use crate::diag::{Diagnostic, InputErrors};

/// What the ISO says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoIdentity {
    /// `.disk/info`'s first line, if the file exists.
    pub disk_info: Option<String>,
    pub volume_id: String,
}

/// `.disk/info` is one line; anything longer is not Ubuntu's.
const DISK_INFO_MAX: u64 = 4096;

impl IsoIdentity {
    pub fn read(iso: &Path) -> Result<Self> {
        let file = File::open(iso).with_context(|| format!("opening {}", iso.display()))?;
        let fs = Iso9660::open(&file)
            .with_context(|| format!("{}: not an ISO 9660 image", iso.display()))?;
        let disk_info = match fs.find(&file, ".disk/info")? {
            Some(e) => {
                let mut buf = vec![0u8; e.length.min(DISK_INFO_MAX) as usize];
                file.read_exact_at(&mut buf, e.offset)
                    .with_context(|| format!("reading .disk/info in {}", iso.display()))?;
                let text = String::from_utf8_lossy(&buf);
                Some(text.lines().next().unwrap_or("").trim().to_string())
            }
            None => None,
        };
        Ok(IsoIdentity {
            disk_info,
            volume_id: fs.volume_id,
        })
    }

    /// The releases (`20.04`) each source names, in order: `.disk/info`,
    /// then the volume ID.
    fn releases(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(r) = self.disk_info.as_deref().and_then(release_in) {
            out.push(("its .disk/info", r));
        }
        if let Some(r) = release_in(&self.volume_id) {
            out.push(("its volume ID", r));
        }
        out
    }
}

/// The first `YY.MM` or `YY.MM.P` word, as `YY.MM`.
fn release_in(text: &str) -> Option<String> {
    text.split_whitespace().find_map(|w| {
        let mut parts = w.split('.');
        let (yy, mm) = (parts.next()?, parts.next()?);
        let point_ok = parts.all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
        let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|c| c.is_ascii_digit());
        (two_digits(yy) && two_digits(mm) && point_ok).then(|| format!("{yy}.{mm}"))
    })
}

/// An ISO's text, shown safely: control characters escaped, cut short.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(100).collect();
    let more = if cut.len() < s.len() { "…" } else { "" };
    format!("{:?}{more}", cut)
}

/// Refuses (exit 2) an ISO that is not the cluster's release.
pub fn check_release(iso: &Path, want: &str) -> Result<()> {
    let id = IsoIdentity::read(iso)?;
    let found = id.releases();
    let describe = || {
        format!(
            ".disk/info {}, volume ID {}",
            id.disk_info.as_deref().map_or("missing".into(), shown),
            shown(&id.volume_id)
        )
    };
    let msg = if found.is_empty() {
        Some(format!(
            "names no Ubuntu release ({}); expected Ubuntu Server {want}'s live-server ISO, \
             the cluster file's release",
            describe()
        ))
    } else {
        found.iter().find(|(_, r)| r != want).map(|(what, r)| {
            format!(
                "is Ubuntu {r} according to {what}, but the cluster file's release is {want} \
                 ({}): give Ubuntu Server {want}'s live-server ISO, or change `release` in the \
                 cluster file",
                describe()
            )
        })
    };
    match msg {
        None => Ok(()),
        Some(m) => {
            Err(InputErrors(vec![Diagnostic::error(iso, Default::default(), "--iso", m)]).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_from_ubuntus_own_strings() {
        assert_eq!(
            release_in(r#"Ubuntu-Server 20.04.6 LTS "Focal Fossa" - Release amd64 (20230316)"#),
            Some("20.04".into())
        );
        assert_eq!(
            release_in("Ubuntu-Server 24.04.3 LTS amd64"),
            Some("24.04".into())
        );
        assert_eq!(
            release_in("Ubuntu-Server 22.04 LTS amd64"),
            Some("22.04".into())
        );
        assert_eq!(release_in("Debian 12.5.0 amd64 n"), None);
        assert_eq!(release_in("CDROM"), None);
    }

    #[test]
    fn shown_text_escapes_control_characters_and_is_cut() {
        assert_eq!(shown("a\u{1b}[2Jb"), r#""a\u{1b}[2Jb""#);
        assert!(shown(&"x".repeat(500)).ends_with('…'));
    }
}
