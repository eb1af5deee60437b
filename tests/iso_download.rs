//! Getting the installer ISO against a local HTTP server (127.0.0.1, with
//! Range support) and the real `gpgv`: downloads checked against the pinned
//! digest or against a SHA256SUMS whose signature gpgv verified, interrupted
//! downloads resumed, corrupt and changed files caught, and an offline rebuild
//! served from the cache with no request at all. Signatures come from test
//! keys made with `gpg` in a temporary GNUPGHOME; the shipped Ubuntu key is
//! checked against a real Ubuntu SHA256SUMS signature.

use crate::common;
use crate::iso_common;

use microseed::iso::{FetchOptions, IsoSpec, Trust, TrustedKey, ensure_iso, list_cache};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
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
    /// Every request, whatever the path.
    requests: Arc<AtomicUsize>,
    iso_requests: Arc<AtomicUsize>,
    ranges: Arc<Mutex<Vec<String>>>,
    data: Vec<u8>,
}

impl Server {
    fn digest(&self) -> String {
        hex::encode(Sha256::digest(&self.data))
    }
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// 3 MiB of deterministic bytes standing in for the ISO.
fn iso_bytes() -> Vec<u8> {
    let mut data = vec![0u8; 3 << 20];
    let mut x = 0x9e37_79b9u32;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x >> 7) as u8;
    }
    data
}

/// The SHA256SUMS Ubuntu would publish for `data` under `name`.
fn sums_for(name: &str, data: &[u8]) -> String {
    format!(
        "{} *other.iso\n{} *{name}\n",
        "0".repeat(64),
        hex::encode(Sha256::digest(data))
    )
}

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 (plain std:
/// tiny_http keeps connections open, so it cannot cut one off midway).
/// `files` maps paths (such as `/SHA256SUMS`) to bodies; `/NAME` is the ISO,
/// served per `mode`; anything else is a 404. The thread ends with the test.
fn serve(mode: Mode, name: &str, data: Vec<u8>, files: HashMap<String, Vec<u8>>) -> Server {
    let served = if mode == Mode::Corrupt {
        let mut d = data.clone();
        d[12345] ^= 1;
        d
    } else {
        data.clone()
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let iso_requests = Arc::new(AtomicUsize::new(0));
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let iso_path = format!("/{name}");
    {
        let (requests, iso_requests, ranges) =
            (requests.clone(), iso_requests.clone(), ranges.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let Some((path, range)) = read_request(&mut conn) else {
                    continue;
                };
                requests.fetch_add(1, Ordering::SeqCst);
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
                if let Some(body) = files.get(&path) {
                    reply("200 OK", &[], body, usize::MAX);
                    continue;
                }
                if path != iso_path {
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
        requests,
        iso_requests,
        ranges,
        data,
    }
}

/// A server with the stand-in ISO and a matching (unsigned) SHA256SUMS.
fn serve_plain(mode: Mode) -> Server {
    let data = iso_bytes();
    let files = HashMap::from([(
        "/SHA256SUMS".to_string(),
        sums_for(NAME, &data).into_bytes(),
    )]);
    serve(mode, NAME, data, files)
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

fn spec(base: &str, trust: Trust) -> IsoSpec {
    IsoSpec {
        release: "20.04".into(),
        file: NAME.into(),
        url: format!("{base}/{NAME}"),
        sha256sums_url: format!("{base}/SHA256SUMS"),
        signature_url: format!("{base}/SHA256SUMS.gpg"),
        trust,
    }
}

/// A spec pinned to `pin`, which the server's files need not match.
fn pinned_to(base: &str, pin: &str) -> IsoSpec {
    spec(
        base,
        Trust::Pinned {
            sha256: pin.to_string(),
            size: None,
            origin: "profiles/releases/20.04.yaml".into(),
        },
    )
}

fn pinned(s: &Server) -> IsoSpec {
    spec(
        &s.base,
        Trust::Pinned {
            sha256: s.digest(),
            size: None,
            origin: "test".into(),
        },
    )
}

const ONLINE: FetchOptions = FetchOptions {
    offline: false,
    progress: false,
};
const OFFLINE: FetchOptions = FetchOptions {
    offline: true,
    progress: false,
};

/// Test OpenPGP keys in a temporary GNUPGHOME, made by the real gpg; the
/// agent gpg starts is stopped on drop.
struct Keys {
    home: tempfile::TempDir,
}

impl Keys {
    fn new() -> Keys {
        let home = tempfile::tempdir().unwrap();
        let k = Keys { home };
        for who in ["trusted", "other"] {
            k.gpg(&[
                "--quick-gen-key",
                &format!("microseed test {who} <{who}@example.invalid>"),
                "ed25519",
                "sign",
                "never",
            ]);
        }
        k
    }
    fn gpg(&self, args: &[&str]) -> Vec<u8> {
        let o = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg (package gnupg) must be installed");
        assert!(
            o.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }
    fn fingerprint(&self, who: &str) -> String {
        let out = self.gpg(&[
            "--with-colons",
            "--list-keys",
            &format!("{who}@example.invalid"),
        ]);
        let text = String::from_utf8(out).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_string())
            .expect("a fingerprint")
    }
    /// The armored public key of `who`.
    fn public(&self, who: &str) -> Vec<u8> {
        self.gpg(&["--armor", "--export", &format!("{who}@example.invalid")])
    }
    /// An armored detached signature of `data` by `who` (as SHA256SUMS.gpg is).
    fn sign(&self, who: &str, data: &[u8]) -> Vec<u8> {
        let f = self.home.path().join("to-sign");
        std::fs::write(&f, data).unwrap();
        let sig = self.home.path().join("to-sign.asc");
        let _ = std::fs::remove_file(&sig);
        self.gpg(&[
            "--yes",
            "--local-user",
            &self.fingerprint(who),
            "--armor",
            "--detach-sign",
            "-o",
            sig.to_str().unwrap(),
            f.to_str().unwrap(),
        ]);
        std::fs::read(sig).unwrap()
    }
    fn trusted(&self) -> TrustedKey {
        TrustedKey::new(
            &self.public("trusted"),
            &self.fingerprint("trusted"),
            "test key",
        )
        .unwrap()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", self.home.path())
            .output();
    }
}

/// Serves the ISO with SHA256SUMS and, when given, SHA256SUMS.gpg.
fn serve_signed(sums: &str, sig: Option<Vec<u8>>) -> Server {
    let mut files = HashMap::from([("/SHA256SUMS".to_string(), sums.as_bytes().to_vec())]);
    if let Some(sig) = sig {
        files.insert("/SHA256SUMS.gpg".into(), sig);
    }
    serve(Mode::Good, NAME, iso_bytes(), files)
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn a_whole_download_is_checked_against_the_pin_and_marked() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let got = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    assert_eq!(got.path, cache.path().join(NAME));
    assert!(got.downloaded);
    assert!(std::fs::read(&got.path).unwrap() == s.data);
    let marker = std::fs::read_to_string(cache.path().join(format!("{NAME}.sha256"))).unwrap();
    assert_eq!(marker, format!("{}  {}\n", s.digest(), s.data.len()));
    assert!(!cache.path().join(format!("{NAME}.part")).exists());
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let s = serve(
        Mode::CutOnce(1 << 20),
        NAME,
        iso_bytes(),
        HashMap::from([(
            "/SHA256SUMS".to_string(),
            sums_for(NAME, &iso_bytes()).into_bytes(),
        )]),
    );
    let cache = tempfile::tempdir().unwrap();
    let err = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap_err();
    let part = cache.path().join(format!("{NAME}.part"));
    let have = std::fs::metadata(&part)
        .unwrap_or_else(|e| panic!("{e}: {err:#}"))
        .len();
    assert!(have > 0 && have < s.data.len() as u64, "{have}");
    assert!(format!("{err:#}").contains("resume"), "{err:#}");
    let got = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    assert!(std::fs::read(&got.path).unwrap() == s.data);
    let ranges = s.ranges.lock().unwrap().clone();
    assert_eq!(ranges, vec![String::new(), format!("bytes={have}-")]);
}

#[test]
fn a_server_ignoring_ranges_restarts_from_zero_and_verifies() {
    let s = serve_plain(Mode::NoRanges);
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join(format!("{NAME}.part")), &s.data[..1000]).unwrap();
    let got = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    assert!(std::fs::read(&got.path).unwrap() == s.data);
}

#[test]
fn a_corrupt_download_is_deleted_and_both_digests_are_named() {
    let s = serve_plain(Mode::Corrupt);
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap_err()
    );
    let mut bad = s.data.clone();
    bad[12345] ^= 1;
    let actual = hex::encode(Sha256::digest(&bad));
    assert!(msg.contains(&s.digest()) && msg.contains(&actual), "{msg}");
    assert_eq!(files_in(cache.path()), Vec::<String>::new());
}

#[test]
fn a_pinned_cached_iso_is_used_offline_with_no_request_at_all() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    let before = s.requests();
    // Online too: a verified cached ISO needs nothing from the network.
    let again = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    assert!(!again.downloaded);
    let off = ensure_iso(&pinned(&s), cache.path(), &OFFLINE).unwrap();
    assert_eq!(off.sha256, s.digest());
    assert_eq!(
        s.requests(),
        before,
        "a cached pinned ISO touched the network"
    );
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 1);
}

#[test]
fn offline_with_an_empty_cache_says_how_to_fill_it_and_sends_nothing() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&pinned(&s), cache.path(), &OFFLINE).unwrap_err()
    );
    assert!(
        msg.contains("--offline") && msg.contains("microseed iso fetch --release 20.04"),
        "{msg}"
    );
    assert_eq!(s.requests(), 0);
}

#[test]
fn a_sha256sums_disagreeing_with_the_pin_is_an_error_naming_both() {
    let s = serve_plain(Mode::Good);
    let pin = "ab".repeat(32);
    let spec = pinned_to(&s.base, &pin);
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err()
    );
    assert!(
        msg.contains(&pin) && msg.contains(&s.digest()) && msg.contains("pins"),
        "{msg}"
    );
    assert_eq!(
        s.iso_requests.load(Ordering::SeqCst),
        0,
        "downloaded anyway"
    );
    assert_eq!(files_in(cache.path()), Vec::<String>::new());
}

#[test]
fn a_cached_iso_is_kept_when_the_mirror_disagrees_with_the_pin() {
    // The cached file does not match the pin, and the mirror's SHA256SUMS
    // disagrees too: nothing could replace the file, so it must survive.
    let s = serve_plain(Mode::Good);
    let pin = "cd".repeat(32);
    let spec = pinned_to(&s.base, &pin);
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join(&spec.file), b"the user's own copy").unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err()
    );
    assert!(msg.contains(&pin) && msg.contains("pins"), "{msg}");
    assert_eq!(
        std::fs::read(cache.path().join(&spec.file)).unwrap(),
        b"the user's own copy",
        "the cached file was deleted although nothing could replace it"
    );
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_cached_iso_truncated_since_it_was_verified_is_refused_offline_and_refetched_online() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let got = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&got.path)
        .unwrap();
    f.set_len(1 << 20).unwrap();
    drop(f);
    let msg = format!(
        "{:#}",
        ensure_iso(&pinned(&s), cache.path(), &OFFLINE).unwrap_err()
    );
    assert!(
        msg.contains("truncated or corrupted since it was verified")
            && msg.contains(&s.digest())
            && msg.contains("--offline"),
        "{msg}"
    );
    let again = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    assert!(again.downloaded);
    assert!(std::fs::read(&again.path).unwrap() == s.data);
}

#[test]
fn a_cached_iso_corrupted_in_place_is_detected_though_its_size_is_unchanged() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let got = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    let mut bytes = std::fs::read(&got.path).unwrap();
    bytes[2_000_000] ^= 0x40;
    std::fs::write(&got.path, &bytes).unwrap();
    let entries = list_cache(cache.path(), &[pinned(&s)]).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].status, "mismatch", "{:?}", entries[0]);
    assert!(entries[0].detail.contains("since it was verified"));
    let msg = format!(
        "{:#}",
        ensure_iso(&pinned(&s), cache.path(), &OFFLINE).unwrap_err()
    );
    assert!(msg.contains("truncated or corrupted"), "{msg}");
    ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    let entries = list_cache(cache.path(), &[pinned(&s)]).unwrap();
    assert_eq!(entries[0].status, "verified", "{:?}", entries[0]);
}

#[test]
fn an_unlisted_file_is_a_clear_error() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let mut spec = pinned(&s);
    spec.file = "x.iso".into();
    spec.url = format!("{}/x.iso", s.base);
    let err = ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err();
    assert!(format!("{err:#}").contains("no line for x.iso"), "{err:#}");
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_file_put_in_the_cache_by_hand_is_adopted_if_its_digest_matches() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(cache.path().join(NAME), &s.data).unwrap();
    ensure_iso(&pinned(&s), cache.path(), &OFFLINE).unwrap();
    assert_eq!(s.requests(), 0);
    // A wrong one is replaced by a download.
    let cache2 = tempfile::tempdir().unwrap();
    std::fs::write(cache2.path().join(NAME), b"not the iso").unwrap();
    let got = ensure_iso(&pinned(&s), cache2.path(), &ONLINE).unwrap();
    assert!(std::fs::read(got.path).unwrap() == s.data);
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 1);
}

#[test]
fn an_unpinned_release_trusts_sha256sums_signed_by_its_key_and_rebuilds_offline() {
    let keys = Keys::new();
    let sums = sums_for(NAME, &iso_bytes());
    let s = serve_signed(&sums, Some(keys.sign("trusted", sums.as_bytes())));
    let spec = spec(&s.base, Trust::Signed(keys.trusted()));
    let cache = tempfile::tempdir().unwrap();
    let got = ensure_iso(&spec, cache.path(), &ONLINE).unwrap();
    assert_eq!(got.sha256, s.digest());
    assert!(got.verified_by.contains(&keys.fingerprint("trusted")));
    // The verified list and its signature are kept, and re-verified offline.
    assert!(cache.path().join(format!("{NAME}.SHA256SUMS.gpg")).exists());
    let before = s.requests();
    let off = ensure_iso(&spec, cache.path(), &OFFLINE).unwrap();
    assert_eq!(off.sha256, s.digest());
    assert_eq!(s.requests(), before);
    let entries = list_cache(cache.path(), &[spec]).unwrap();
    assert_eq!(entries[0].status, "verified", "{:?}", entries[0]);
}

#[test]
fn a_bad_signature_is_refused_before_anything_is_downloaded() {
    let keys = Keys::new();
    let sums = sums_for(NAME, &iso_bytes());
    // A valid signature, but of another SHA256SUMS: the served one was altered.
    let sig = keys.sign(
        "trusted",
        sums.replace("other.iso", "other2.iso").as_bytes(),
    );
    let s = serve_signed(&sums, Some(sig));
    let spec = spec(&s.base, Trust::Signed(keys.trusted()));
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err()
    );
    assert!(msg.contains("BAD signature"), "{msg}");
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
    assert_eq!(files_in(cache.path()), Vec::<String>::new());
}

#[test]
fn a_missing_signature_is_refused() {
    let keys = Keys::new();
    let s = serve_signed(&sums_for(NAME, &iso_bytes()), None);
    let spec = spec(&s.base, Trust::Signed(keys.trusted()));
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err()
    );
    assert!(
        msg.contains("no signature") && msg.contains("SHA256SUMS.gpg") && msg.contains("404"),
        "{msg}"
    );
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_signature_by_another_key_is_refused_naming_both_keys() {
    let keys = Keys::new();
    let sums = sums_for(NAME, &iso_bytes());
    let s = serve_signed(&sums, Some(keys.sign("other", sums.as_bytes())));
    let spec = spec(&s.base, Trust::Signed(keys.trusted()));
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err()
    );
    let other = keys.fingerprint("other");
    // gpgv without the key reports its long key ID (the fingerprint's tail).
    assert!(
        msg.contains(&other[24..]) && msg.contains(&keys.fingerprint("trusted")),
        "{msg}"
    );
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_signature_file_that_is_not_a_signature_is_refused() {
    let keys = Keys::new();
    let sums = sums_for(NAME, &iso_bytes());
    let s = serve_signed(&sums, Some(b"<html>moved</html>".to_vec()));
    let spec = spec(&s.base, Trust::Signed(keys.trusted()));
    let cache = tempfile::tempdir().unwrap();
    let msg = format!(
        "{:#}",
        ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err()
    );
    assert!(msg.contains("refusing to trust"), "{msg}");
    assert_eq!(s.iso_requests.load(Ordering::SeqCst), 0);
}

/// The key shipped in profiles/ verifies Ubuntu's own signature on a real
/// releases.ubuntu.com SHA256SUMS (20.04, signed 2020-08-06), and refuses the
/// same list with one digit changed.
#[test]
fn the_shipped_ubuntu_key_verifies_a_real_ubuntu_sha256sums_signature() {
    let root = common::root();
    let key = TrustedKey::new(
        &std::fs::read(root.join("profiles/keys/ubuntu-cdimage-2012.asc")).unwrap(),
        "8439 38DF 228D 22F7 B374  2BC0 D94A A3F0 EFE2 1092",
        "profiles/keys/ubuntu-cdimage-2012.asc",
    )
    .unwrap();
    let sums = std::fs::read(root.join("tests/fixtures/ubuntu/20.04-SHA256SUMS")).unwrap();
    let sig = std::fs::read(root.join("tests/fixtures/ubuntu/20.04-SHA256SUMS.gpg")).unwrap();
    microseed::iso::trust::verify_detached(&sums, &sig, &key, "Ubuntu 20.04 SHA256SUMS").unwrap();
    let mut altered = sums.clone();
    altered[0] = if altered[0] == b'a' { b'b' } else { b'a' };
    let msg = format!(
        "{:#}",
        microseed::iso::trust::verify_detached(&altered, &sig, &key, "altered").unwrap_err()
    );
    assert!(msg.contains("BAD signature"), "{msg}");
}

/// Every shipped release profile, with its pin taken away, trusts exactly
/// the key that signs Ubuntu's real SHA256SUMS: a wrong key file or
/// fingerprint in any profile fails here, not on a user's first unpinned
/// fetch.
#[test]
fn every_shipped_release_profile_names_the_key_that_signs_ubuntus_sha256sums() {
    let root = common::root();
    let sums = std::fs::read(root.join("tests/fixtures/ubuntu/20.04-SHA256SUMS")).unwrap();
    let sig = std::fs::read(root.join("tests/fixtures/ubuntu/20.04-SHA256SUMS.gpg")).unwrap();
    let profiles = microseed::profile::Profiles::load(None).unwrap();
    let releases = profiles.all_releases().unwrap();
    assert!(releases.len() >= 3, "{:?}", releases.keys());
    for (name, &release) in &releases {
        let mut unpinned = release.clone();
        unpinned.iso.pin = None;
        let spec = IsoSpec::for_release(&unpinned, None).unwrap();
        let Trust::Signed(key) = &spec.trust else {
            panic!("release {name}: no pin, yet not trusted by signature");
        };
        microseed::iso::trust::verify_detached(&sums, &sig, key, name)
            .unwrap_or_else(|e| panic!("release {name}: {e:#}"));
    }
}

// --- The command line: `iso fetch`, `iso list`, `--offline build` ---

/// A release profile overlay for 20.04 pointing at `base`, pinned to
/// `pin` or, without one, trusting `key` (armored) with `fingerprint`.
fn overlay(dir: &Path, base: &str, pin: Option<&str>, key: Option<(&[u8], &str)>) -> PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(profiles.join("releases")).unwrap();
    std::fs::create_dir_all(profiles.join("keys")).unwrap();
    let shipped =
        std::fs::read_to_string(common::root().join("profiles/releases/20.04.yaml")).unwrap();
    let mut text = String::new();
    let mut skip = false;
    for line in shipped.lines() {
        // Drop the shipped pin block; the test writes its own trust below.
        if line.starts_with("  pin:") {
            skip = true;
            continue;
        }
        if skip && line.starts_with("    ") {
            continue;
        }
        skip = false;
        if line.starts_with("signing_key:") || line.starts_with("  file: keys/") {
            continue;
        }
        if line.starts_with("  fingerprint:") {
            continue;
        }
        text.push_str(&line.replace("https://releases.ubuntu.com/20.04.6", base));
        text.push('\n');
    }
    match pin {
        Some(p) => {
            text = text.replace(
                "boot:",
                "signing_key:\n  file: keys/ubuntu-cdimage-2012.asc\n  fingerprint: 843938DF228D22F7B3742BC0D94AA3F0EFE21092\nboot:",
            );
            text = text.replace(
                "  signature_url:",
                &format!("  pin:\n    sha256: {p}\n    source: test\n    checked_on: \"2026-11-28\"\n  signature_url:"),
            );
        }
        None => {
            let (k, fpr) = key.expect("a key when unpinned");
            std::fs::write(profiles.join("keys/test.asc"), k).unwrap();
            text = text.replace(
                "boot:",
                &format!("signing_key:\n  file: keys/test.asc\n  fingerprint: {fpr}\nboot:"),
            );
        }
    }
    std::fs::write(profiles.join("releases/20.04.yaml"), text).unwrap();
    profiles
}

fn microseed(profiles: &Path, args: &[&str]) -> std::process::Output {
    common::bin()
        .arg("--profiles")
        .arg(profiles)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn iso_fetch_fills_the_cache_and_an_offline_build_uses_it_with_the_network_gone() {
    let iso = std::fs::read(iso_common::fixture(iso_common::Fixture::Focal)).unwrap();
    let digest = hex::encode(Sha256::digest(&iso));
    let files = HashMap::from([("/SHA256SUMS".to_string(), sums_for(NAME, &iso).into_bytes())]);
    let srv = serve(Mode::Good, NAME, iso, files);
    let s = common::Scratch::example();
    let cache = s.dir.path().join("cache");
    let c = cache.to_str().unwrap();
    let profiles = overlay(s.dir.path(), &srv.base, Some(&digest), None);
    let o = microseed(
        &profiles,
        &["iso", "fetch", "--release", "20.04", "--cache-dir", c],
    );
    assert!(o.status.success(), "{}", common::text(&o).1);
    assert!(common::text(&o).0.contains(&digest));
    let o = microseed(&profiles, &["iso", "list", "--json", "--cache-dir", c]);
    assert!(o.status.success(), "{}", common::text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &v["files"][0];
    assert_eq!(f["file"], NAME);
    assert_eq!(f["status"], "verified", "{v}");
    assert_eq!(f["sha256"], digest.as_str());
    assert!(f["size"].as_u64().unwrap() > 0);
    // The releases with nothing cached are listed too, so a user sees before
    // leaving for the rack which offline builds would fail.
    let missing: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["status"] == "missing")
        .flat_map(|e| e["releases"].as_array().unwrap())
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(missing, ["22.04", "24.04"], "{v}");

    // At the rack: the mirror is unreachable (a closed port), and --offline.
    let gone = overlay(s.dir.path(), "http://127.0.0.1:9", Some(&digest), None);
    let before = srv.requests();
    let (cluster, out) = (s.cluster(), s.out());
    let build = |extra: &[&str]| {
        let mut a = vec!["--offline", "build", cluster.to_str().unwrap()];
        a.extend(["-o", out.to_str().unwrap(), "--format", "installer"]);
        a.extend(["--machine", "worker-1", "--cache-dir", c]);
        a.extend(extra);
        microseed(&gone, &a)
    };
    let o = build(&[]);
    assert!(o.status.success(), "{}", common::text(&o).1);
    assert_eq!(srv.requests(), before);
    let img = s.out().join("installer.img");
    let first = std::fs::read(&img).unwrap();

    // The cached ISO is then cut short: refused offline, `out` left as it was.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(cache.join(NAME))
        .unwrap();
    f.set_len(4096).unwrap();
    drop(f);
    let o = build(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o).1);
    let err = common::text(&o).1;
    assert!(
        err.contains("truncated or corrupted since it was verified")
            && err.contains("microseed iso fetch --release 20.04"),
        "{err}"
    );
    assert!(std::fs::read(&img).unwrap() == first, "out/ changed");
    let o = microseed(&profiles, &["iso", "list", "--cache-dir", c]);
    assert!(
        common::text(&o).0.contains("mismatch"),
        "{}",
        common::text(&o).0
    );
}

/// One release whose mirror is unreachable does not keep the others out of
/// the cache: `iso fetch` goes on, then names what failed and exits non-zero.
#[test]
fn iso_fetch_goes_on_past_a_release_that_fails_and_names_it() {
    let iso = std::fs::read(iso_common::fixture(iso_common::Fixture::Focal)).unwrap();
    let files = HashMap::from([("/SHA256SUMS".to_string(), sums_for(NAME, &iso).into_bytes())]);
    let srv = serve(Mode::Good, NAME, iso, files);
    let digest = srv.digest();
    let dir = tempfile::tempdir().unwrap();
    let profiles = overlay(dir.path(), &srv.base, Some(&digest), None);
    // 22.04's mirror is a closed local port (never the real one).
    let shipped =
        std::fs::read_to_string(common::root().join("profiles/releases/22.04.yaml")).unwrap();
    std::fs::write(
        profiles.join("releases/22.04.yaml"),
        shipped.replace("https://releases.ubuntu.com/22.04.5", "http://127.0.0.1:9"),
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap();
    let o = microseed(
        &profiles,
        &[
            "iso",
            "fetch",
            "--json",
            "--release",
            "22.04",
            "--release",
            "20.04",
            "--cache-dir",
            c,
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", common::text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["isos"][0]["release"], "20.04", "{v}");
    assert_eq!(v["failed"][0]["release"], "22.04", "{v}");
    assert!(
        cache.join(NAME).is_file(),
        "20.04 was not fetched after 22.04 failed"
    );
    assert!(
        common::text(&o)
            .1
            .contains("1 of 2 releases not fetched: 22.04"),
        "{}",
        common::text(&o).1
    );
}

#[test]
fn a_profile_overlay_with_its_own_key_is_the_one_way_to_trust_another_signer() {
    let keys = Keys::new();
    let sums = sums_for(NAME, &iso_bytes());
    let srv = serve_signed(&sums, Some(keys.sign("trusted", sums.as_bytes())));
    let dir = tempfile::tempdir().unwrap();
    let fpr = keys.fingerprint("trusted");
    let profiles = overlay(
        dir.path(),
        &srv.base,
        None,
        Some((&keys.public("trusted"), &fpr)),
    );
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap();
    let o = microseed(
        &profiles,
        &["iso", "fetch", "--release", "20.04", "--cache-dir", c],
    );
    assert!(o.status.success(), "{}", common::text(&o).1);
    let (out, err) = common::text(&o);
    assert!(
        out.contains(&format!("SHA256SUMS signed by {fpr}")),
        "{out}"
    );
    // The overlay's trust decision is said out loud.
    assert!(
        err.contains("comes from") && err.contains("20.04.yaml"),
        "{err}"
    );

    // Without gpgv nothing can check the signature: a clear error.
    let nobin = dir.path().join("empty-path");
    std::fs::create_dir_all(&nobin).unwrap();
    std::fs::remove_file(cache.join(NAME)).unwrap();
    let o = common::bin()
        .env("PATH", &nobin)
        .arg("--profiles")
        .arg(&profiles)
        .args(["iso", "fetch", "--release", "20.04", "--cache-dir", c])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = common::text(&o).1;
    assert!(
        err.contains("gpgv was not found") && err.contains("pin"),
        "{err}"
    );
}

/// A hostile mirror: every request gets `head` (status line and headers),
/// then `body`, then `junk` more bytes of `x`, then the connection closes.
/// Returns the base URL and a counter of body bytes the client took.
fn serve_flood(head: &'static str, body: Vec<u8>, junk: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if read_request(&mut conn).is_none() {
                continue;
            }
            let _ = conn.write_all(head.as_bytes());
            if conn.write_all(&body).is_err() {
                continue;
            }
            let chunk = vec![b'x'; 64 << 10];
            let mut left = junk;
            while left > 0 {
                let n = left.min(chunk.len());
                if conn.write_all(&chunk[..n]).is_err() {
                    break;
                }
                counter.fetch_add(n, Ordering::SeqCst);
                left -= n;
            }
            let _ = conn.shutdown(Shutdown::Both);
        }
    });
    (format!("http://127.0.0.1:{port}"), sent)
}

#[test]
fn an_endless_sha256sums_is_cut_off_at_a_small_bound() {
    // 64 MiB stands in for "endless": far past the bound, small enough that
    // an unbounded reader still finishes (and fails the message check).
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    let (base, _) = serve_flood(head, Vec::new(), 64 << 20);
    let cache = tempfile::tempdir().unwrap();
    let err = ensure_iso(&pinned_to(&base, &"a".repeat(64)), cache.path(), &ONLINE).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("larger than 1024 KiB"), "{msg}");
    // A Content-Length past the bound is refused before the body is read.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 5000000000\r\nConnection: close\r\n\r\n";
    let (base, _) = serve_flood(head, Vec::new(), 8 << 20);
    let err = ensure_iso(&pinned_to(&base, &"a".repeat(64)), cache.path(), &ONLINE).unwrap_err();
    assert!(
        format!("{err:#}").contains("larger than 1024 KiB"),
        "{err:#}"
    );
    assert_eq!(files_in(cache.path()), Vec::<String>::new());
}

#[test]
fn an_iso_download_past_its_pinned_size_is_cut_off_and_deleted() {
    let data = iso_bytes();
    let sums = sums_for(NAME, &data);
    // The mirror's SHA256SUMS agrees; the ISO comes with no length and
    // does not end where the pinned size says.
    let files = HashMap::from([("/SHA256SUMS".to_string(), sums.into_bytes())]);
    let good = serve(Mode::Good, NAME, data.clone(), files);
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
    let (flood, sent) = serve_flood(head, data.clone(), 64 << 20);
    let mut spec = spec(
        &good.base,
        Trust::Pinned {
            sha256: good.digest(),
            size: Some(data.len() as u64),
            origin: "test".into(),
        },
    );
    spec.url = format!("{flood}/{NAME}");
    let cache = tempfile::tempdir().unwrap();
    let err = ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("more than its pinned size"), "{msg}");
    assert!(msg.contains("the download was deleted"), "{msg}");
    assert_eq!(files_in(cache.path()), Vec::<String>::new(), "{msg}");
    assert!(
        sent.load(Ordering::SeqCst) < 16 << 20,
        "read on past the bound"
    );

    // Unpinned size: a declared length past any installer ISO is refused
    // before a byte is written.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\nConnection: close\r\n\r\n";
    let (flood, _) = serve_flood(head, Vec::new(), 1 << 20);
    let mut spec = pinned(&good);
    spec.url = format!("{flood}/{NAME}");
    let err = ensure_iso(&spec, cache.path(), &ONLINE).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("more than the most an installer ISO holds"),
        "{msg}"
    );
    assert_eq!(files_in(cache.path()), Vec::<String>::new(), "{msg}");
}

#[test]
fn a_part_file_that_is_a_symlink_is_never_followed() {
    let s = serve_plain(Mode::Good);
    let cache = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let victim = elsewhere.path().join("victim");
    std::fs::write(&victim, &s.data[..1000]).unwrap();
    let part = cache.path().join(format!("{NAME}.part"));
    std::os::unix::fs::symlink(&victim, &part).unwrap();
    let err = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap_err();
    assert!(format!("{err:#}").contains("is a symbolic link"), "{err:#}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        &s.data[..1000],
        "written through the link"
    );
    // The link gone, the same fetch works.
    std::fs::remove_file(&part).unwrap();
    let got = ensure_iso(&pinned(&s), cache.path(), &ONLINE).unwrap();
    assert!(std::fs::read(&got.path).unwrap() == s.data);
}
