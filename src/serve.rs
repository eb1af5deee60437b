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
//! Directories, FIFOs and devices are not served (404): only regular files,
//! opened without blocking so a FIFO in the tree cannot hang a worker.
//! One log line per request on stderr:
//! `<client-ip> <METHOD> <path> <status> <bytes>[ machine=<name>]`.
//!
//! The server is small and bounded on purpose, since it listens on the LAN
//! while machines install. One thread accepts connections and reads their
//! request heads, all at once with poll(2), so an idle or trickling client
//! holds a file descriptor and a small buffer, never a worker: up to
//! [`Limits::max_idle`] of them (beyond, the one waiting longest is
//! dropped), each with a deadline for its whole head (408), a request line
//! and header size limit (414, 431). A whole request goes to a fixed pool
//! of worker threads through a bounded queue (503 beyond it); a worker has
//! a write timeout for clients that stop reading, and a minimum transfer
//! rate for clients that read too slowly (see [`Limits::min_rate`]). One
//! request per connection (`Connection: close`).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};

/// How much the server takes on. The defaults suit a fleet of a few dozen
/// machines netbooting at once, each holding a worker while it downloads
/// the ISO.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Worker threads: at most this many requests are served at once.
    pub workers: usize,
    /// Whole requests waiting for a worker; beyond this, 503.
    pub queue: usize,
    /// Connections whose request head is still arriving (idle or slow
    /// clients). They hold no worker; past this many, the one that has
    /// waited longest is dropped to make room.
    pub max_idle: usize,
    /// Longest request line (method, target, version), in bytes.
    pub max_request_line: usize,
    /// Largest request head (request line and every header), in bytes.
    pub max_head: usize,
    /// The whole request head must arrive within this time.
    pub head_timeout: Duration,
    /// Longest wait for any single write to a client (and for its answer
    /// to be taken before the connection closes).
    pub io_timeout: Duration,
    /// Bytes a second a client must take a response at, on average, once
    /// `rate_grace` has passed; 0 turns the rule off. A client reading
    /// slower is dropped, freeing its worker.
    ///
    /// A minimum rate rather than a deadline growing with the file's size:
    /// such a deadline (grace + size / rate) would let a client sit on a
    /// worker doing nothing for nearly all of it (hours, for an ISO) before
    /// it reads a byte, whereas the rate is checked before every write, so a
    /// client falling behind is dropped as soon as it does. `io_timeout`
    /// still bounds each write, so a client that read fast and then stops
    /// cannot live on the credit it built up.
    pub min_rate: u64,
    /// How long a response may take before `min_rate` applies (connection
    /// start-up, TCP slow start, a client that is briefly busy).
    pub rate_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            workers: 16,
            queue: 64,
            // Below the usual 1024 open files per process, with room for
            // the workers' connections and files.
            max_idle: 768,
            max_request_line: 8 * 1024,
            max_head: 32 * 1024,
            head_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            // 16 workers sharing a 100 Mbit/s LAN still get about 750 KiB/s
            // each: 64 KiB/s is far below any real netboot client, and a
            // client that keeps it up is downloading, not stalling.
            min_rate: 64 * 1024,
            rate_grace: Duration::from_secs(30),
        }
    }
}

/// A bound server over one directory.
pub struct Serve {
    root: PathBuf,
    listener: TcpListener,
    addr: SocketAddr,
    limits: Limits,
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
        Serve::bind_with(dir, bind, Limits::default())
    }

    /// As [`Serve::bind`], with explicit limits.
    pub fn bind_with(dir: &Path, bind: &str, limits: Limits) -> Result<Serve> {
        let root = dir
            .canonicalize()
            .with_context(|| format!("cannot serve {}", dir.display()))?;
        if !root.is_dir() {
            anyhow::bail!("{} is not a directory", dir.display());
        }
        let listener =
            TcpListener::bind(bind).map_err(|e| anyhow!("cannot listen on {bind}: {e}"))?;
        let addr = listener
            .local_addr()
            .context("not listening on an IP address")?;
        Ok(Serve {
            root,
            listener,
            addr,
            limits,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves until the process ends (Ctrl-C). This thread accepts and
    /// reads request heads (see the module comment); whole requests go to
    /// a fixed pool of workers through a bounded queue, so a machine
    /// downloading the ISO does not hold up the others, and neither a flood
    /// of connections nor idle ones can start a thread each or tie up one.
    pub fn run(self) -> Result<()> {
        let limits = Arc::new(self.limits);
        let root = Arc::new(self.root);
        let (tx, rx): (SyncSender<Request>, Receiver<Request>) = sync_channel(limits.queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..limits.workers.max(1) {
            let (rx, root, limits) = (rx.clone(), root.clone(), limits.clone());
            std::thread::Builder::new()
                .name(format!("serve-{i}"))
                .spawn(move || {
                    loop {
                        // A poisoned lock only means another worker panicked
                        // while waiting; the receiver itself is fine.
                        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(req) = next else { return };
                        connection(&root, &limits, req);
                    }
                })
                .context("starting a worker thread")?;
        }
        let listener = self.listener;
        listener
            .set_nonblocking(true)
            .context("making the listening socket non-blocking")?;
        let mut pending: Vec<Pending> = Vec::new();
        loop {
            let now = Instant::now();
            // Sleep until something arrives or the next head deadline.
            let wait = pending
                .iter()
                .map(|p| (p.since + limits.head_timeout).saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(1))
                .min(Duration::from_secs(1));
            let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
                .chain(pending.iter().map(|p| p.stream.as_raw_fd()))
                .map(|fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: fds is a valid array of fds.len() pollfd structs.
            let n = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    wait.as_millis().clamp(1, 1000) as libc::c_int,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e).context("waiting for clients (poll)");
                }
                continue;
            }
            // Heads that arrived, finished, failed or ran out of time; in
            // reverse, so removing one leaves the others' indices alone.
            for i in (0..pending.len()).rev() {
                let ready = fds[i + 1].revents != 0;
                let step = if ready {
                    pending[i].read_more(&limits)
                } else if pending[i].since.elapsed() >= limits.head_timeout {
                    Step::Answer(408, "request head too slow")
                } else {
                    Step::Wait
                };
                match step {
                    Step::Wait => {}
                    Step::Gone => {
                        pending.swap_remove(i);
                    }
                    Step::Answer(code, msg) => {
                        let mut p = pending.swap_remove(i);
                        let client = peer(&p.stream);
                        let _ = p.stream.set_nonblocking(false);
                        let _ = p.stream.set_write_timeout(Some(Duration::from_millis(200)));
                        let r = finish(&mut p.stream, &simple(code, msg, &[]));
                        let note = r.err().map(|e| format!(" ({e})")).unwrap_or_default();
                        log_line!("{client} - - {code} 0 ({msg}){note}");
                    }
                    Step::Ready(end) => {
                        let mut p = pending.swap_remove(i);
                        p.head.truncate(end);
                        if p.stream.set_nonblocking(false).is_err() {
                            continue;
                        }
                        let req = Request {
                            stream: p.stream,
                            head: p.head,
                        };
                        match tx.try_send(req) {
                            Ok(()) => {}
                            Err(TrySendError::Full(mut req)) => {
                                let _ = req.stream.set_write_timeout(Some(Duration::from_secs(1)));
                                let client = peer(&req.stream);
                                let _ = req.stream.write_all(&simple(503, "busy, try again", &[]));
                                log_line!(
                                    "{client} - - 503 0 (every worker busy and the queue full)"
                                );
                            }
                            Err(TrySendError::Disconnected(_)) => {
                                anyhow::bail!("every worker thread has stopped")
                            }
                        }
                    }
                }
            }
            if fds[0].revents != 0 {
                accept_all(&listener, &mut pending, &limits);
            }
        }
    }
}

/// Takes every connection waiting on the listener into `pending`, dropping
/// the one that has waited longest when it is full.
fn accept_all(listener: &TcpListener, pending: &mut Vec<Pending>, limits: &Limits) {
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of descriptors or the like: back off instead of
                // spinning (poll reports the listener ready again).
                std::thread::sleep(Duration::from_millis(50));
                return;
            }
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        if pending.len() >= limits.max_idle.max(1) {
            // The oldest has had the longest to send its head: a real
            // client sends it at once, so the oldest is the likeliest
            // to be idle.
            if let Some((i, _)) = pending.iter().enumerate().min_by_key(|(_, p)| p.since) {
                let p = pending.swap_remove(i);
                log_line!(
                    "{} - - 408 0 (dropped: {} connections were waiting to send a request)",
                    peer(&p.stream),
                    limits.max_idle
                );
            }
        }
        pending.push(Pending {
            stream,
            head: Vec::with_capacity(1024),
            since: Instant::now(),
        });
    }
}

/// A whole request head and its connection, for a worker.
struct Request {
    stream: TcpStream,
    head: Vec<u8>,
}

/// A connection whose request head is still arriving.
struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
    since: Instant,
}

/// What reading a pending connection led to.
enum Step {
    /// More to come.
    Wait,
    /// Closed or broken before a whole head: nothing to answer.
    Gone,
    /// Answer with this status and close.
    Answer(u16, &'static str),
    /// The head is whole; it ends at this byte.
    Ready(usize),
}

impl Pending {
    /// Reads what has arrived (non-blocking) and says where the head is.
    fn read_more(&mut self, limits: &Limits) -> Step {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return Step::Gone,
                Ok(n) => {
                    self.head.extend_from_slice(&buf[..n]);
                    match head_state(&self.head, limits) {
                        Step::Wait => {}
                        other => return other,
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Gone,
            }
        }
        if self.since.elapsed() >= limits.head_timeout {
            return Step::Answer(408, "request head too slow");
        }
        Step::Wait
    }
}

/// Whether `head` (what has arrived so far) is a whole request head within
/// the limits.
fn head_state(head: &[u8], limits: &Limits) -> Step {
    let end = find(head, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find(head, b"\n\n").map(|i| i + 2));
    let line_end = find(head, b"\n").unwrap_or(head.len());
    if line_end > limits.max_request_line {
        return Step::Answer(414, "request line too long");
    }
    if let Some(end) = end {
        if end > limits.max_head {
            return Step::Answer(431, "request headers too large");
        }
        return Step::Ready(end);
    }
    if head.len() > limits.max_head {
        return Step::Answer(431, "request headers too large");
    }
    Step::Wait
}

/// One line on stderr, ignoring failure: a closed stderr must not kill a
/// worker (`eprintln!` panics), or the pool would shrink with every request.
macro_rules! log_line {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
use log_line;

fn peer(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "-".into())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

fn head_bytes(code: u16, len: u64, content_type: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut h = format!(
        "HTTP/1.1 {code} {}\r\nContent-Length: {len}\r\nContent-Type: {content_type}\r\nConnection: close\r\n",
        reason(code)
    );
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// A whole short text response.
fn simple(code: u16, msg: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let body = format!("{msg}\n");
    let mut r = head_bytes(code, body.len() as u64, "text/plain; charset=utf-8", extra);
    r.extend_from_slice(body.as_bytes());
    r
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Sends a whole response.
fn finish(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}

/// Closes after the response: a client whose request body was never read
/// would otherwise get a reset instead of the answer, so the rest of what it
/// sends is read (a little, briefly) first.
fn close_gently(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    let mut drained = 0;
    while drained < 64 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Answers one connection's request, logs it, then closes.
fn connection(root: &Path, limits: &Limits, req: Request) {
    let Request { mut stream, head } = req;
    respond(root, limits, &mut stream, &head);
    close_gently(&mut stream);
}

fn respond(root: &Path, limits: &Limits, stream: &mut TcpStream, head: &[u8]) {
    let client = peer(stream);
    let _ = stream.set_write_timeout(Some(limits.io_timeout));
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (method, url, version) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let shown: String = url.escape_debug().collect();
    let machine = machine_of(url)
        .map(|m| format!(" machine={}", m.escape_debug()))
        .unwrap_or_default();
    let log = |status: u16, bytes: u64, result: std::io::Result<()>| {
        let note = result.err().map(|e| format!(" ({e})")).unwrap_or_default();
        let method: String = method.escape_debug().collect();
        log_line!("{client} {method} {shown} {status} {bytes}{machine}{note}");
    };
    if method.is_empty()
        || url.is_empty()
        || parts.next().is_some()
        || !version.starts_with("HTTP/1.")
    {
        return log(400, 0, finish(stream, &simple(400, "bad request", &[])));
    }
    if method != "GET" && method != "HEAD" {
        let r = simple(
            405,
            "method not allowed: this server is read-only",
            &[("Allow", "GET, HEAD")],
        );
        return log(405, 0, finish(stream, &r));
    }
    let rel = match resolve(url) {
        Err(Refusal::Forbidden) => {
            return log(403, 0, finish(stream, &simple(403, "forbidden", &[])));
        }
        Err(Refusal::BadRequest) => {
            return log(400, 0, finish(stream, &simple(400, "bad request", &[])));
        }
        Ok(rel) => rel,
    };
    match open_beneath(root, &rel) {
        Ok(Some(file)) => {
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let head = head_bytes(200, len, content_type(&rel), &[]);
            if method == "HEAD" {
                return log(200, 0, finish(stream, &head));
            }
            let result = stream
                .write_all(&head)
                .and_then(|()| send_file(stream, &file, len, limits))
                .and_then(|()| stream.flush());
            log(200, len, result)
        }
        Ok(None) => log(404, 0, finish(stream, &simple(404, "not found", &[]))),
        Err(()) => log(403, 0, finish(stream, &simple(403, "forbidden", &[]))),
    }
}

/// Sends `len` bytes of `file` with sendfile(2), dropping a client that
/// takes them slower than `limits.min_rate` (after `limits.rate_grace`) or
/// stalls for `limits.io_timeout`: each write may block only until the
/// moment the client would fall behind.
fn send_file(
    stream: &mut TcpStream,
    file: &File,
    len: u64,
    limits: &Limits,
) -> std::io::Result<()> {
    let start = Instant::now();
    let mut offset = 0u64;
    while offset < len {
        let mut left = limits.io_timeout;
        if limits.min_rate > 0 {
            let due =
                limits.rate_grace + Duration::from_secs_f64(offset as f64 / limits.min_rate as f64);
            left = left.min(due.saturating_sub(start.elapsed()));
        }
        if left.is_zero() {
            return Err(too_slow(limits));
        }
        stream.set_write_timeout(Some(left))?;
        // At most 1 MiB a call, so the deadline is checked often.
        let chunk = (len - offset).min(1 << 20) as usize;
        match rustix::fs::sendfile(&*stream, file, Some(&mut offset), chunk) {
            Ok(0) => return Err(std::io::Error::other("file shrank while being sent")),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => return Err(too_slow(limits)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn too_slow(limits: &Limits) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "client read slower than {} KiB/s or stalled for {} s; dropped",
            limits.min_rate / 1024,
            limits.io_timeout.as_secs()
        ),
    )
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
        // NONBLOCK: opening a FIFO would otherwise wait for a writer, holding
        // a worker forever; the type check below then refuses it.
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::XDEV) => return Err(()),
        Err(rustix::io::Errno::NOSYS) => {
            // Kernels before 5.6: the canonicalize check above stands alone.
            use std::os::unix::fs::OpenOptionsExt;
            match std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
                .open(&full)
            {
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
