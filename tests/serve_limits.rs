//! `microseed serve` stays up under clients that misbehave: a FIFO in the
//! tree, oversized request lines and headers, idle and trickling clients,
//! and more connections than workers. Each case checks the server still
//! answers a normal request afterwards. The server runs in-process with
//! short limits so the timeouts take about a second.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use microseed::serve::{Limits, Serve};

fn limits() -> Limits {
    Limits {
        workers: 2,
        queue: 1,
        max_idle: 64,
        max_request_line: 1024,
        max_head: 4096,
        head_timeout: Duration::from_secs(1),
        io_timeout: Duration::from_secs(1),
        min_rate: 0,
        rate_grace: Duration::from_secs(1),
    }
}

/// A tree with one file, served on a free loopback port.
fn start(limits: Limits) -> (tempfile::TempDir, SocketAddr) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("file"), b"hello\n").expect("write");
    let server = Serve::bind_with(dir.path(), "127.0.0.1:0", limits).expect("bind");
    let addr = server.addr();
    std::thread::spawn(move || server.run());
    (dir, addr)
}

/// Sends `request` and reads the whole answer (the server closes).
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may answer and close before all of an oversized request
    // is sent; that is what is under test.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {resp:?}"))
}

fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

fn still_serves(addr: SocketAddr) {
    let r = get(addr, "/file");
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.ends_with("hello\n"), "{r}");
}

#[test]
fn a_fifo_in_the_tree_is_not_served_and_holds_no_worker() {
    let (dir, addr) = start(Limits {
        workers: 1,
        ..limits()
    });
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstr");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    for _ in 0..3 {
        let start = Instant::now();
        let r = get(addr, "/fifo");
        assert_eq!(status(&r), 404, "{r}");
        assert!(start.elapsed() < Duration::from_secs(3));
    }
    // The only worker is free again.
    still_serves(addr);
}

#[test]
fn oversized_request_lines_and_headers_are_refused() {
    let (_dir, addr) = start(limits());
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(100_000));
    assert_eq!(status(&exchange(addr, long.as_bytes())), 414);
    let mut flood = String::from("GET /file HTTP/1.1\r\n");
    for i in 0..2000 {
        flood.push_str(&format!("X-Filler-{i}: {}\r\n", "b".repeat(50)));
    }
    flood.push_str("\r\n");
    assert_eq!(status(&exchange(addr, flood.as_bytes())), 431);
    // An endless header line without a newline hits the same limit.
    let endless = format!("GET /file HTTP/1.1\r\nX: {}", "c".repeat(1_000_000));
    assert_eq!(status(&exchange(addr, endless.as_bytes())), 431);
    assert_eq!(status(&exchange(addr, b"NONSENSE\r\n\r\n")), 400);
    still_serves(addr);
}

#[test]
fn idle_and_trickling_clients_are_dropped_by_the_deadline() {
    let (_dir, addr) = start(limits());
    // Idle: connects and sends nothing.
    let start = Instant::now();
    let r = exchange(addr, b"");
    assert_eq!(status(&r), 408, "{r}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );

    // Trickling: a byte every 200 ms keeps each read under the I/O timeout,
    // but the whole head misses its deadline.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let start = Instant::now();
    let mut cut_off = false;
    for b in b"GET /file HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() > Duration::from_secs(4) {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let r = String::from_utf8_lossy(&buf);
    assert!(
        cut_off || r.contains(" 408 "),
        "a trickling client was not cut off: {r:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(6));
    still_serves(addr);
}

/// A request for the big sparse file whose answer the client never reads:
/// it holds a worker until the write times out.
fn stalled_download(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    s
}

#[test]
fn requests_beyond_the_workers_and_queue_get_503() {
    let (dir, addr) = start(Limits {
        head_timeout: Duration::from_secs(5),
        io_timeout: Duration::from_secs(5),
        ..limits()
    });
    std::fs::File::create(dir.path().join("big"))
        .and_then(|f| f.set_len(256 << 20))
        .expect("sparse file");
    // Two stalled downloads hold both workers, a third waits in the queue.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stalled_download(addr));
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = get(addr, "/file");
    assert_eq!(status(&r), 503, "{r}");
    drop(held);
    // Once they are gone (the writes fail), service resumes.
    std::thread::sleep(Duration::from_millis(500));
    still_serves(addr);
}

#[test]
fn idle_connections_hold_no_worker_and_real_requests_are_answered_at_once() {
    // The defaults, but for the head deadline: 300 idle connections would
    // each have held one of the 16 workers for its whole length.
    let (_dir, addr) = start(Limits {
        head_timeout: Duration::from_secs(10),
        ..Limits::default()
    });
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    // Give the server time to take them all in.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        let start = Instant::now();
        still_serves(addr);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a real request waited {:?} behind idle connections",
            start.elapsed()
        );
    }
    // Past max_idle, the oldest idle connections are dropped; a real
    // client still gets through.
    let (_dir2, addr2) = start(Limits {
        max_idle: 50,
        head_timeout: Duration::from_secs(10),
        ..Limits::default()
    });
    let mut more: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr2).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    still_serves(addr2);
    let first = &mut more[0];
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 1];
    assert!(
        matches!(first.read(&mut buf), Ok(0) | Err(_)),
        "the oldest idle connection was kept past max_idle"
    );
    drop(idle);
}

/// Clients that read a large file steadily but slowly (each write still
/// progresses well within `io_timeout`) fill every worker; the minimum
/// transfer rate drops them, so a fresh client is served in bounded time
/// instead of waiting out their downloads (over a minute each here).
#[test]
fn slow_readers_of_a_large_file_do_not_hold_the_pool() {
    const BIG: u64 = 64 << 20;
    let limits = Limits {
        workers: 2,
        queue: 4,
        io_timeout: Duration::from_secs(5),
        min_rate: 4 << 20,
        rate_grace: Duration::from_secs(1),
        ..limits()
    };
    let (dir, addr) = start(limits.clone());
    std::fs::File::create(dir.path().join("big"))
        .and_then(|f| f.set_len(BIG))
        .expect("sparse file");
    // A fast client gets all of it: the rate rule cuts no honest download.
    let mut fast = TcpStream::connect(addr).expect("connect");
    fast.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut whole = Vec::new();
    fast.read_to_end(&mut whole).expect("read");
    assert!(
        whole.len() as u64 > BIG,
        "fast client got {} bytes",
        whole.len()
    );
    let slow: Vec<_> = (0..limits.workers)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("send");
            s.set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            // Reading has begun: this client holds a worker.
            let mut first = [0u8; 1];
            s.read_exact(&mut first).expect("first byte");
            std::thread::spawn(move || {
                // 64 KiB every 100 ms: about 640 KiB/s, a minute and more
                // for the whole file.
                let mut buf = vec![0u8; 64 << 10];
                let mut got = 1u64;
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return got,
                        Ok(n) => got += n as u64,
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    let start = Instant::now();
    still_serves(addr);
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "fresh client waited {took:?}"
    );
    for reader in slow {
        let got = reader.join().expect("slow reader");
        assert!(got < BIG, "a slow reader got the whole file ({got} bytes)");
    }
}
