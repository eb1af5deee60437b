//! ensure_iso against a local HTTP server (127.0.0.1, with Range support): whole downloads verified, interrupted ones resumed with a Range
//! request, corrupt ones deleted with both digests named, verified cached
//! files not fetched again.

use microseed::iso::ensure_iso;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const NAME: &str = "ubuntu-20.04.6-live-server-amd64.iso";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Good,
    /// The first ISO request stops after this many bytes.
    CutOnce(usize),
    /// The ISO bytes differ from what SHA256SUMS says.
    Corrupt,
    /// Range headers are ignored (always 200 with the whole file).
    NoRanges,
}

struct Server {
    base: String,
    iso_requests: Arc<AtomicUsize>,
    ranges: Arc<Mutex<Vec<String>>>,
    data: Vec<u8>,
}

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 (plain std:
/// tiny_http keeps connections open, so it cannot cut one off midway).
/// The thread ends with the test process.
fn serve(mode: Mode) -> Server {
    let mut data = vec![0u8; 3 << 20];
    let mut x = 0x9e37_79b9u32;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 7) as u8;
    }
    let digest = hex::encode(Sha256::digest(&data));
    let sums = format!("{} *other.iso\n{digest} *{NAME}\n", "0".repeat(64));
    let served = if mode == Mode::Corrupt {
        let mut d = data.clone();
        d[12345] ^= 1;
        d
    } else {
        data.clone()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let iso_requests = Arc::new(AtomicUsize::new(0));
    let ranges = Arc::new(Mutex::new(Vec::new()));
    {
        let (iso_requests, ranges) = (iso_requests.clone(), ranges.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some((path, range)) = read_request(&mut conn) else {
                    continue;
                };
                let mut reply = |status: &str, headers: &[String], body: &[u8], send: usize| {
                    let mut head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for h in headers {
                        head.push_str(h);
                        head.push_str("\r\n");
                    }
                    head.push_str("\r\n");
                    let _ = conn.write_all(head.as_bytes());
                    let _ = conn.write_all(&body[..send.min(body.len())]);
                    let _ = conn.shutdown(Shutdown::Both);
                };
                if path == "/SHA256SUMS" {
                    reply("200 OK", &[], sums.as_bytes(), usize::MAX);
                    continue;
                }
                if path != format!("/{NAME}") {
                    reply("404 Not Found", &[], b"", 0);
                    continue;
                }
                let nth = iso_requests.fetch_add(1, Ordering::SeqCst);
                ranges
                    .lock()
                    .unwrap()
                    .push(range.clone().unwrap_or_default());
                let start = match (
                    mode,
                    range.as_deref().and_then(|r| r.strip_prefix("bytes=")),
                ) {
                    (Mode::NoRanges, _) | (_, None) => None,
                    (_, Some(r)) => r.trim_end_matches('-').parse::<usize>().ok(),
                };
                let send = match mode {
                    Mode::CutOnce(n) if nth == 0 => n,
                    _ => usize::MAX,
                };
                match start {
                    Some(s) if s < served.len() => {
                        let cr = format!(
                            "Content-Range: bytes {s}-{}/{}",
                            served.len() - 1,
                            served.len()
                        );
                        reply("206 Partial Content", &[cr], &served[s..], send);
                    }
                    Some(_) => reply("416 Range Not Satisfiable", &[], b"", 0),
                    None => reply("200 OK", &[], &served, send),
                }
            }
        });
    }
    Server {
        base: format!("http://127.0.0.1:{port}"),
        iso_requests,
        ranges,
        data,
    }
}

/// The request path and Range header of one request.
fn read_request(conn: &mut TcpStream) -> Option<(String, Option<String>)> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    Some((path, range))
}

fn fetch(s: &Server, cache: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    ensure_iso(
        &format!("{}/{NAME}", s.base),
        &format!("{}/SHA256SUMS", s.base),
        NAME,
        cache,
        false,
    )
}

#[test]
fn a_whole_download_is_verified_and_marked() {
    let s = serve(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let path = fetch(&s, cache.path()).unwrap();
    assert_eq!(path, cache.path().join(NAME));
    assert!(std::fs::read(&path).unwrap() == s.data);
    let marker = std::fs::read_to_string(cache.path().join(format!("{NAME}.sha256"))).unwrap();
    assert!(
        marker.starts_with(&hex::encode(Sha256::digest(&s.data))),
        "{marker}"
    );
    assert!(!cache.path().join(format!("{NAME}.part")).exists());
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let s = serve(Mode::CutOnce(1 << 20));
    let cache = tempfile::tempdir().unwrap();
    let err = fetch(&s, cache.path()).unwrap_err();
    let part = cache.path().join(format!("{NAME}.part"));
    let have = std::fs::metadata(&part)
        .unwrap_or_else(|e| panic!("{e}: {err:#}"))
        .len();
    assert!(have > 0 && have < s.data.len() as u64, "{have}");
    assert!(format!("{err:#}").contains("resume"), "{err:#}");
    let path = fetch(&s, cache.path()).unwrap();
    assert!(std::fs::read(&path).unwrap() == s.data);
    let ranges = s.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![String::new(), format!("bytes={have}-")]);
}

#[test]
fn a_server_ignoring_ranges_restarts_from_zero_and_verifies() {
    let s = serve(Mode::NoRanges);
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join(format!("{NAME}.part")), &s.data[..1000]).unwrap();
    let path = fetch(&s, cache.path()).unwrap();
    assert!(std::fs::read(&path).unwrap() == s.data);
}

#[test]
fn a_corrupt_download_is_deleted_and_both_digests_are_named() {
    let s = serve(Mode::Corrupt);
    let cache = tempfile::tempdir().unwrap();
    let msg = format!("{:#}", fetch(&s, cache.path()).unwrap_err());
    let expected = hex::encode(Sha256::digest(&s.data));
    let mut bad = s.data.clone();
    bad[12345] ^= 1;
    let actual = hex::encode(Sha256::digest(&bad));
    assert!(msg.contains(&expected) && msg.contains(&actual), "{msg}");
    let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_verified_cached_iso_is_not_fetched_again() {
    let s = serve(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    fetch(&s, cache.path()).unwrap();
    fetch(&s, cache.path()).unwrap();
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unlisted_file_is_a_clear_error() {
    let s = serve(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let err = ensure_iso(
        &format!("{}/x.iso", s.base),
        &format!("{}/SHA256SUMS", s.base),
        "x.iso",
        cache.path(),
        false,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("no line for x.iso"), "{err:#}");
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_file_put_in_the_cache_by_hand_is_adopted_if_its_digest_matches() {
    let s = serve(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join(NAME), &s.data).unwrap();
    fetch(&s, cache.path()).unwrap();
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
    // A wrong one is replaced by a download.
    let cache2 = tempfile::tempdir().unwrap();
    std::fs::write(cache2.path().join(NAME), b"not the iso").unwrap();
    let path = fetch(&s, cache2.path()).unwrap();
    assert!(std::fs::read(path).unwrap() == s.data);
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 1);
}
