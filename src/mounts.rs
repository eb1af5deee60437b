//! Which mount points this process sees (from `/proc/self/mountinfo`):
//! what `-o` checks, the removal of a previous output and `flash` ask
//! before they replace, empty or write anything.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

/// Mount points this process sees (from /proc/self/mountinfo).
pub fn mount_points() -> Result<BTreeSet<PathBuf>> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .context("reading /proc/self/mountinfo (to keep mounted filesystems out of the output)")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .collect())
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mount(r"/srv/my\040data"), "/srv/my data");
        assert_eq!(unescape_mount(r"/a\134b\011c"), "/a\\b\tc");
        assert_eq!(unescape_mount(r"/trailing\04"), r"/trailing\04");
    }
}
