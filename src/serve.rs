//! `microseed serve DIR`: a read-only HTTP server for a built tree (usually
//! `OUT/pxe`), so netbooting machines can fetch their nocloud-net seeds, the
//! kernel, initrd and ISO, and iPXE its script.
//!
//! Only GET and HEAD (anything else: 405). A request path is decoded segment
//! by segment and refused (403) when it could leave the tree: `.` or `..`
//! segments, empty segments (`//etc/passwd`), encoded `/` or `\`, NUL, and
//! non-origin-form targets. The file is then opened with
//! `openat2(RESOLVE_BENEATH)` relative to the tree, after a canonicalize +
//! prefix check, so a symlink that resolves outside the tree is refused too.
//! Directories are not listed (404). One log line per request on stderr:
//! `<client-ip> <METHOD> <path> <status> <bytes>[ machine=<name>]`.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use tiny_http::{Header, Method, Request, Response, Server};

/// A bound server over one directory.
pub struct Serve {
    root: PathBuf,
    server: Server,
    addr: SocketAddr,
}

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Could reach outside the tree: 403.
    Forbidden,
    /// Malformed percent-encoding: 400.
    BadRequest,
}

impl Serve {
    /// Binds `bind` (port 0 picks a free port) to serve `dir`.
    pub fn bind(dir: &Path, bind: &str) -> Result<Serve> {
        let root = dir
            .canonicalize()
            .with_context(|| format!("cannot serve {}", dir.display()))?;
        if !root.is_dir() {
            anyhow::bail!("{} is not a directory", dir.display());
        }
        let server = Server::http(bind).map_err(|e| anyhow!("cannot listen on {bind}: {e}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .context("not listening on an IP address")?;
        Ok(Serve { root, server, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves until the process ends (Ctrl-C); one thread per request, so a
    /// machine downloading the ISO does not hold up the others.
    pub fn run(self) -> Result<()> {
        let root = std::sync::Arc::new(self.root);
        for req in self.server.incoming_requests() {
            let root = root.clone();
            std::thread::spawn(move || handle(&root, req));
        }
        Ok(())
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ascii header")
}

fn handle(root: &Path, req: Request) {
    let client = req
        .remote_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "-".into());
    let method = req.method().clone();
    let url = req.url().to_string();
    let shown: String = url.escape_debug().collect();
    let machine = machine_of(&url)
        .map(|m| format!(" machine={}", m.escape_debug()))
        .unwrap_or_default();
    let text = |code: u16, msg: &str| {
        Response::from_string(format!("{msg}\n"))
            .with_status_code(code)
            .with_header(header("Content-Type", "text/plain; charset=utf-8"))
    };
    let (status, bytes, result) = if !matches!(method, Method::Get | Method::Head) {
        let r = text(405, "method not allowed: this server is read-only")
            .with_header(header("Allow", "GET, HEAD"));
        (405, 0, req.respond(r))
    } else {
        match resolve(&url) {
            Err(Refusal::Forbidden) => (403, 0, req.respond(text(403, "forbidden"))),
            Err(Refusal::BadRequest) => (400, 0, req.respond(text(400, "bad request"))),
            Ok(rel) => match open_beneath(root, &rel) {
                Ok(Some(file)) => {
                    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                    let r = Response::from_file(file)
                        .with_header(header("Content-Type", content_type(&rel)))
                        .with_chunked_threshold(usize::MAX);
                    let sent = if method == Method::Head { 0 } else { len };
                    (200, sent, req.respond(r))
                }
                Ok(None) => (404, 0, req.respond(text(404, "not found"))),
                Err(()) => (403, 0, req.respond(text(403, "forbidden"))),
            },
        }
    };
    let note = match result {
        Ok(()) => String::new(),
        Err(e) => format!(" ({e})"),
    };
    eprintln!("{client} {method} {shown} {status} {bytes}{machine}{note}");
}

fn content_type(rel: &Path) -> &'static str {
    let name = rel.file_name().map(|n| n.as_bytes()).unwrap_or(b"");
    match name {
        b"user-data" | b"meta-data" | b"network-config" | b"SHA256SUMS" => {
            "text/plain; charset=utf-8"
        }
        _ if name.ends_with(b".cfg") || name.ends_with(b".ipxe") || name.ends_with(b".conf") => {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

/// The machine a `/seeds/<machine>/…` request is for.
fn machine_of(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    let rest = path.strip_prefix("/seeds/")?;
    let (m, _) = rest.split_once('/')?;
    (!m.is_empty() && m.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')).then_some(m)
}

/// Turns a request target into a relative path inside the tree, or refuses.
pub fn resolve(target: &str) -> Result<PathBuf, Refusal> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Refusal::Forbidden);
    };
    let mut out = PathBuf::new();
    let segments: Vec<&str> = rest.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        if seg.is_empty() {
            // Only a trailing `/` (a directory) may leave an empty segment.
            if last && i > 0 {
                continue;
            }
            if last && i == 0 {
                continue; // `/` itself
            }
            return Err(Refusal::Forbidden);
        }
        let decoded = percent_decode(seg).ok_or(Refusal::BadRequest)?;
        if decoded.is_empty()
            || decoded == b"."
            || decoded == b".."
            || decoded.iter().any(|&b| b == b'/' || b == b'\\' || b == 0)
        {
            return Err(Refusal::Forbidden);
        }
        out.push(std::ffi::OsStr::from_bytes(&decoded));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Opens `root/rel` for reading if it is a regular file inside the tree.
/// `Ok(None)`: not there, or not a file (404). `Err(())`: resolves outside
/// the tree (403).
fn open_beneath(root: &Path, rel: &Path) -> Result<Option<File>, ()> {
    let full = root.join(rel);
    match full.canonicalize() {
        Err(_) => return Ok(None),
        Ok(c) if !c.starts_with(root) => return Err(()),
        Ok(_) => {}
    }
    let Ok(dir) = File::open(root) else {
        return Ok(None);
    };
    let rel_arg = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    use rustix::fs::{Mode, OFlags, ResolveFlags, openat2};
    let fd = match openat2(
        &dir,
        rel_arg,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::XDEV) => return Err(()),
        Err(rustix::io::Errno::NOSYS) => {
            // Kernels before 5.6: the canonicalize check above stands alone.
            match File::open(&full) {
                Ok(f) => f.into(),
                Err(_) => return Ok(None),
            }
        }
        Err(_) => return Ok(None),
    };
    let file = File::from(fd);
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(Some(file)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        for bad in [
            "/../etc/passwd",
            "/seeds/../../etc/passwd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/seeds/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "//etc/passwd",
            "/seeds//x",
            "/a/%00b",
            "/./x",
            "etc/passwd",
            "http://h/etc/passwd",
            "/a%5c..%5cb",
        ] {
            assert_eq!(resolve(bad), Err(Refusal::Forbidden), "{bad}");
        }
        assert_eq!(resolve("/a%zz"), Err(Refusal::BadRequest));
    }

    #[test]
    fn resolve_keeps_plain_paths() {
        assert_eq!(
            resolve("/seeds/worker-1/user-data?x=1").unwrap(),
            PathBuf::from("seeds/worker-1/user-data")
        );
        assert_eq!(resolve("/a%20b").unwrap(), PathBuf::from("a b"));
        assert_eq!(machine_of("/seeds/worker-1/meta-data"), Some("worker-1"));
        assert_eq!(machine_of("/boot/vmlinuz"), None);
    }
}
