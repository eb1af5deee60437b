//! Reading the user's text inputs (the cluster file, the secrets file)
//! defensively: only regular files, only up to a size no real cluster file
//! comes near, and only valid UTF-8, each refusal a plain input error (exit 2).
//! Without this, `check /dev/zero` reads until memory runs out and a FIFO
//! blocks forever.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::diag::{Diagnostic, InputErrors, Pos};

/// The largest input file read. A cluster of a hundred machines is about
/// 20 KiB; anything near a mebibyte is not a cluster file.
pub const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// What a text input is, in the words its messages use.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// "cluster file", "secrets file"...
    pub what: &'static str,
    /// What a file of this kind is, for "expected ..." when it is not one.
    pub expected: &'static str,
    /// How big one usually is, for "expected ..." when it is far bigger.
    pub usual_size: &'static str,
}

pub const CLUSTER_FILE: Kind = Kind {
    what: "cluster file",
    expected: "a regular YAML file",
    usual_size: "a cluster description of a few KiB",
};

pub const SECRETS_FILE: Kind = Kind {
    what: "secrets file",
    expected: "a regular YAML file (made by `microseed init` or `build`)",
    usual_size: "a few lines: the join token and any wallet passwords",
};

pub const SSH_PUBLIC_KEY: Kind = Kind {
    what: "ssh public key file",
    expected: "a regular file holding one public key line (such as ~/.ssh/id_ed25519.pub)",
    usual_size: "one public key line of a few hundred bytes",
};

fn refuse(path: &Path, pos: Pos, msg: String) -> InputErrors {
    InputErrors(vec![Diagnostic::error(path, pos, "", msg)])
}

/// Reads `path` as the text of a file of `kind`.
pub fn read_text(path: &Path, kind: Kind) -> Result<String, InputErrors> {
    let what = kind.what;
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the type check
    // below refuses it. O_NOCTTY: a terminal device never becomes ours.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| open_error(path, kind, e))?;
    let meta = file
        .metadata()
        .map_err(|e| refuse(path, Pos::default(), format!("cannot read the {what}: {e}")))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let ft_kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO (named pipe)"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(refuse(
            path,
            Pos::default(),
            format!("the {what} is {ft_kind}; expected {}", kind.expected),
        ));
    }
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_big(path, kind));
    }
    let mut bytes = Vec::new();
    // The file may grow between fstat and read: never read past the limit.
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(path, Pos::default(), format!("cannot read the {what}: {e}")))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_big(path, kind));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u64 + 1;
        refuse(
            path,
            Pos { line, column },
            format!("the {what} is not valid UTF-8 text; save it as UTF-8"),
        )
    })
}

fn too_big(path: &Path, kind: Kind) -> InputErrors {
    refuse(
        path,
        Pos::default(),
        format!(
            "the {} is larger than {} KiB; expected {}",
            kind.what,
            MAX_INPUT_BYTES / 1024,
            kind.usual_size
        ),
    )
}

/// Why the file could not be opened; a symbolic link whose target is gone
/// is named as such (a bare "No such file" would deny what `ls` shows).
fn open_error(path: &Path, kind: Kind, e: std::io::Error) -> InputErrors {
    let what = kind.what;
    if e.kind() == std::io::ErrorKind::NotFound
        && let Ok(target) = std::fs::read_link(path)
    {
        return refuse(
            path,
            Pos::default(),
            format!(
                "the {what} is a symbolic link to {}, which does not exist; expected {} (restore the link's target, or remove the link)",
                target.display(),
                kind.expected
            ),
        );
    }
    refuse(path, Pos::default(), format!("cannot read the {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn invalid_utf8_is_located_by_line_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, b"version: 1\nname: \xc3\xa9x\xff\n").expect("write");
        let e = read_text(&p, CLUSTER_FILE).expect_err("invalid");
        assert_eq!(e.0[0].pos, Pos { line: 2, column: 9 });
        assert!(e.0[0].message.contains("not valid UTF-8"));
    }

    #[test]
    fn a_file_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.yaml");
        let f = File::create(&p).expect("create");
        f.set_len(MAX_INPUT_BYTES + 1).expect("sparse");
        let e = read_text(&p, CLUSTER_FILE).expect_err("too big");
        assert!(e.0[0].message.contains("larger than 1024 KiB"), "{e}");
    }
}
