//! Boot-config rewriting for the installer image: add `autoinstall` to every
//! kernel command line that boots casper, before `---`, keeping the file the
//! same byte length (the file's extent in the ISO is fixed).
//!
//! Bytes are reclaimed, in this order, only as many as needed: extra blanks
//! between words of the patched lines, blanks at line ends and blank lines at
//! the end of the file, leading indentation, extra blanks between words of
//! lines without quotes, blank lines, comment lines. GRUB and syslinux ignore
//! all of these. If that is not enough, the file may grow up to `max_len`
//! (the caller passes the room left in the file's last ISO block, having
//! checked that every directory record can be updated); else an error says
//! how many bytes are missing.

use anyhow::{Result, bail};

/// The boot loader whose syntax a config follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `linux /casper/vmlinuz ... ---` lines (grub.cfg, loopback.cfg).
    Grub,
    /// `kernel /casper/vmlinuz` + `append ... ---` lines (isolinux txt.cfg).
    Syslinux,
}

impl Flavour {
    /// Guess from the path: anything under `isolinux/` or `syslinux/` is syslinux.
    pub fn from_path(path: &str) -> Flavour {
        let lower = path.to_ascii_lowercase();
        if lower.contains("isolinux") || lower.contains("syslinux") {
            Flavour::Syslinux
        } else {
            Flavour::Grub
        }
    }
}

const WORD: &[u8] = b"autoinstall";

/// A rewritten boot config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patched {
    /// The new text: as long as the old one unless it had to grow.
    pub text: Vec<u8>,
    /// Kernel command lines that got the word.
    pub lines: usize,
}

/// Add `autoinstall` to the casper command lines of `text`, staying at its
/// length if blanks allow, else growing to at most `max_len` bytes. `None`
/// when no line needed the word (none boots casper, or all have it).
pub fn add_autoinstall(text: &[u8], flavour: Flavour, max_len: usize) -> Result<Option<Patched>> {
    add_autoinstall_and(text, flavour, max_len, b"")
}

/// GRUB lines that add the cluster stick's own menu (`microseed/grub.cfg` on
/// the CIDATA partition, see [`crate::stick`]) after the ISO's entries, so
/// the ISO's first entry stays the default. Without a CIDATA partition, or
/// with a seed that is not a cluster stick's, nothing is sourced.
pub const GRUB_STICK_MENU: &[u8] = b"search --no-floppy --set=microseed --label CIDATA\n\
if [ -f ($microseed)/microseed/grub.cfg ]; then source ($microseed)/microseed/grub.cfg; fi\n";

/// The cluster stick's isolinux entries, by their path among the seed files
/// (see [`crate::stick::syslinux_menu`]). isolinux cannot read the CIDATA
/// partition, so the patcher appends this file to the ISO's syslinux
/// configs itself, in a new extent (`super::patch`).
pub const SYSLINUX_STICK_MENU: &str = "microseed/isolinux.cfg";

/// [`add_autoinstall_and`] for a file that may take any length (it moves to
/// a new extent): the words go in and `append` at the end, and every other
/// byte stays as the ISO has it (no blank is reclaimed).
pub fn add_autoinstall_growing(
    text: &[u8],
    flavour: Flavour,
    append: &[u8],
) -> Result<Option<Patched>> {
    add_autoinstall_and(text, flavour, usize::MAX, append)
}

/// [`add_autoinstall`], then `append` (whole lines) at the end of the file;
/// the room for both comes from the same blanks, then the same growth.
pub fn add_autoinstall_and(
    text: &[u8],
    flavour: Flavour,
    max_len: usize,
    append: &[u8],
) -> Result<Option<Patched>> {
    let ends_nl = text.ends_with(b"\n");
    let body = if ends_nl {
        &text[..text.len() - 1]
    } else {
        text
    };
    let mut lines: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let mut changed = vec![false; lines.len()];
    let mut kernel_is_casper = false;
    for (i, line) in lines.iter_mut().enumerate() {
        let words = words(line);
        let Some(first) = words.first().map(|w| w.to_ascii_lowercase()) else {
            continue;
        };
        let boots_casper = match flavour {
            Flavour::Grub => {
                matches!(first.as_slice(), b"linux" | b"linuxefi" | b"linux16")
                    && words.get(1).is_some_and(|k| contains(k, b"casper"))
            }
            Flavour::Syslinux => match first.as_slice() {
                b"label" => {
                    kernel_is_casper = false;
                    false
                }
                b"kernel" | b"linux" => {
                    kernel_is_casper = words.get(1).is_some_and(|k| contains(k, b"casper"));
                    false
                }
                b"append" => kernel_is_casper || contains(line, b"/casper/"),
                _ => false,
            },
        };
        if !boots_casper {
            continue;
        }
        let dashes = words.iter().position(|w| *w == b"---");
        let before = &words[..dashes.unwrap_or(words.len())];
        if before.contains(&WORD) {
            continue;
        }
        let mut new = Vec::with_capacity(line.len() + WORD.len() + 1);
        match dashes {
            Some(_) => {
                let at = find_token(line, b"---").expect("token seen above");
                new.extend_from_slice(&line[..at]);
                new.extend_from_slice(WORD);
                new.push(b' ');
                new.extend_from_slice(&line[at..]);
            }
            None => {
                let end = line.len() - line.iter().rev().take_while(|b| is_blank(**b)).count();
                new.extend_from_slice(&line[..end]);
                new.push(b' ');
                new.extend_from_slice(WORD);
                new.extend_from_slice(&line[end..]);
            }
        }
        *line = new;
        changed[i] = true;
    }
    let count = changed.iter().filter(|c| **c).count();
    if count == 0 && append.is_empty() {
        return Ok(None);
    }
    let needed = count * (WORD.len() + 1) + append.len();
    // Any length allowed (a file given a new extent): nothing to reclaim.
    let any_length = max_len == usize::MAX;
    let mut excess = if any_length { 0 } else { needed };
    // 1. extra blanks between words of the patched lines
    for (line, _) in lines.iter_mut().zip(&changed).filter(|(_, c)| **c) {
        collapse_inner(line, &mut excess);
    }
    // 2. blanks at line ends, then blank lines at the end of the file
    for line in lines.iter_mut() {
        while excess > 0 && line.last().is_some_and(|b| is_blank(*b)) {
            line.pop();
            excess -= 1;
        }
    }
    while excess > 0 && lines.len() > 1 && lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
        changed.pop();
        excess -= 1;
    }
    // 3. leading indentation
    for line in lines.iter_mut() {
        while excess > 0 && line.first().is_some_and(|b| is_blank(*b)) {
            line.remove(0);
            excess -= 1;
        }
    }
    // 4. extra blanks between words of any line without quotes
    for line in lines.iter_mut() {
        if !line.iter().any(|b| *b == b'"' || *b == b'\'') {
            collapse_inner(line, &mut excess);
        }
    }
    // 5. blank lines, 6. comment lines
    for drop_comments in [false, true] {
        let mut i = 0;
        while excess > 0 && i < lines.len() {
            let l = &lines[i];
            let drop = if drop_comments {
                l.first() == Some(&b'#')
            } else {
                l.is_empty() && i + 1 < lines.len()
            };
            if drop && !changed[i] && excess > l.len() {
                excess -= l.len() + 1;
                lines.remove(i);
                changed.remove(i);
            } else {
                i += 1;
            }
        }
    }
    if excess > 0 && text.len() + excess > max_len {
        bail!(
            "cannot add `autoinstall` to {count} kernel command line(s){}: {excess} more byte(s) \
             needed than blanks can give back, and the file may grow by {} byte(s) only",
            if append.is_empty() {
                ""
            } else {
                " and the cluster stick's menu"
            },
            max_len.saturating_sub(text.len())
        );
    }
    let mut out = lines.join(&b'\n');
    if ends_nl {
        out.push(b'\n');
    }
    out.extend_from_slice(append);
    debug_assert_eq!(
        out.len(),
        text.len() + if any_length { needed } else { excess }
    );
    Ok(Some(Patched {
        text: out,
        lines: count,
    }))
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\r'
}

fn words(line: &[u8]) -> Vec<&[u8]> {
    line.split(|b| is_blank(*b))
        .filter(|w| !w.is_empty())
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Byte offset of a whitespace-delimited token.
fn find_token(line: &[u8], token: &[u8]) -> Option<usize> {
    (0..=line.len().saturating_sub(token.len())).find(|&i| {
        line[i..].starts_with(token)
            && (i == 0 || is_blank(line[i - 1]))
            && line.get(i + token.len()).is_none_or(|b| is_blank(*b))
    })
}

/// Shrink runs of blanks after the first word to a single blank.
fn collapse_inner(line: &mut Vec<u8>, excess: &mut usize) {
    let start = line
        .iter()
        .position(|b| !is_blank(*b))
        .unwrap_or(line.len());
    let mut i = start + 1;
    while *excess > 0 && i < line.len() {
        if is_blank(line[i]) && is_blank(line[i - 1]) && i + 1 < line.len() {
            line.remove(i);
            *excess -= 1;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_line_gets_the_word_before_dashes_at_equal_length() {
        let text = b"menuentry \"x\" {\n\tlinux\t/casper/vmlinuz   quiet  ---\n\tinitrd\t/casper/initrd\n}\n\n\n\n\n\n\n\n\n\n";
        let Patched {
            text: out,
            lines: n,
        } = add_autoinstall(text, Flavour::Grub, text.len())
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(out.len(), text.len());
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("linux\t/casper/vmlinuz quiet autoinstall ---"),
            "{s}"
        );
    }

    #[test]
    fn syslinux_append_of_a_casper_label_only() {
        let text = b"label live\n  kernel /casper/vmlinuz\n  append   initrd=/casper/initrd quiet  ---\nlabel memtest\n    kernel /install/mt86plus\n  append foo\n";
        let Patched {
            text: out,
            lines: n,
        } = add_autoinstall(text, Flavour::Syslinux, text.len())
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(out.len(), text.len());
        let s = String::from_utf8(out).unwrap();
        assert!(
            s.contains("append initrd=/casper/initrd quiet autoinstall ---"),
            "{s}"
        );
        assert!(s.contains("append foo"));
    }

    #[test]
    fn already_patched_is_left_alone() {
        let text = b"linux /casper/vmlinuz autoinstall ---\n";
        assert!(add_autoinstall(text, Flavour::Grub, 100).unwrap().is_none());
    }

    #[test]
    fn no_room_is_a_clear_error() {
        let text = b"linux /casper/vmlinuz quiet ---\n";
        let err = add_autoinstall(text, Flavour::Grub, text.len() + 3)
            .unwrap_err()
            .to_string();
        assert!(err.contains("may grow by 3 byte(s) only"), "{err}");
    }

    #[test]
    fn grows_into_the_room_given_when_blanks_run_out() {
        let text = b"# c\nlinux /casper/vmlinuz quiet ---\n";
        let p = add_autoinstall(text, Flavour::Grub, 2048).unwrap().unwrap();
        assert_eq!(
            p.text,
            b"linux /casper/vmlinuz quiet autoinstall ---\n".to_vec()
        );
    }

    #[test]
    fn a_file_that_may_grow_keeps_every_blank() {
        let text =
            b"label live\n  kernel /casper/vmlinuz\n  append   initrd=/casper/initrd quiet  ---\n";
        let p = add_autoinstall_growing(text, Flavour::Syslinux, b"label x\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            String::from_utf8(p.text).unwrap(),
            "label live\n  kernel /casper/vmlinuz\n  append   initrd=/casper/initrd quiet  autoinstall ---\nlabel x\n"
        );
    }

    #[test]
    fn the_stick_menu_goes_after_the_isos_entries_at_equal_length() {
        let mut text = b"menuentry \"Install\" {\n\tlinux\t/casper/vmlinuz quiet ---\n}\n".to_vec();
        text.extend(std::iter::repeat_n(b'\n', 200));
        let p = add_autoinstall_and(&text, Flavour::Grub, text.len(), GRUB_STICK_MENU)
            .unwrap()
            .unwrap();
        assert_eq!(p.text.len(), text.len());
        let s = String::from_utf8(p.text).unwrap();
        assert!(
            s.starts_with(
                "menuentry \"Install\" {\n\tlinux\t/casper/vmlinuz quiet autoinstall ---\n}\n"
            ),
            "{s}"
        );
        assert!(
            s.ends_with(std::str::from_utf8(GRUB_STICK_MENU).unwrap()),
            "{s}"
        );
    }
}
