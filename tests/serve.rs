//! `microseed serve`: the built tree over HTTP on loopback, byte for byte,
//! read-only, and never a file outside the tree however the path is spelled.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{PXE_URL, Scratch, bin, pxe_cluster, text};

/// A running `microseed serve` on a free loopback port; killed on drop.
struct Served {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    url: String,
    addr: String,
}

impl Served {
    fn start(dir: &std::path::Path) -> Served {
        let mut child = bin()
            .arg("serve")
            .arg(dir)
            .args(["--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the serving line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        let addr = url.trim_start_matches("http://").to_string();
        Served { child, url, addr }
    }

    /// Waits until the server has logged `lines` requests (a worker logs
    /// after the response is sent, so the client can finish first), then
    /// stops it and returns its request log. Gives up waiting after 10 s and
    /// returns what it has, so a missing line fails the caller's assertion.
    fn stop_after(mut self, lines: usize) -> String {
        let stderr = self.child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut log = String::new();
        let mut seen = 0;
        while seen < lines {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                break;
            };
            log.push_str(&line);
            log.push('\n');
            seen += 1;
        }
        self.child.kill().expect("kill serve");
        self.child.wait().expect("wait serve");
        // Anything logged after the count was reached is an extra line the
        // caller's count check must see.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            log.push_str(&line);
            log.push('\n');
        }
        log
    }

    fn raw(&self, method: &str, target: &str) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read response");
        let resp = String::from_utf8_lossy(&buf).into_owned();
        let code = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {resp:?}"));
        (code, resp)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn built() -> Scratch {
    let s = Scratch::new(&pxe_cluster());
    let o = s.build(&["--format", "dir,pxe", "--pxe-url", PXE_URL]);
    assert!(o.status.success(), "build failed: {}", text(&o).1);
    s
}

#[test]
fn serve_returns_every_seed_file_byte_for_byte() {
    let s = built();
    let root = s.out().join("pxe");
    let srv = Served::start(&root);
    let client = reqwest::blocking::Client::new();
    let mut n = 0;
    for m in ["nfs", "master", "worker-1"] {
        for d in ["user-data", "meta-data", "network-config"] {
            let rel = format!("seeds/{m}/{d}");
            let r = client
                .get(format!("{}/{rel}", srv.url))
                .send()
                .expect("GET");
            assert_eq!(r.status().as_u16(), 200, "{rel}");
            let want = std::fs::read(root.join(&rel)).expect("read");
            assert_eq!(
                r.headers()["content-length"].to_str().expect("ascii"),
                want.len().to_string()
            );
            assert_eq!(r.bytes().expect("body").as_ref(), want.as_slice(), "{rel}");
            n += 1;
        }
    }
    for rel in ["grub/grub.cfg", "ipxe/boot.ipxe", "dnsmasq.conf"] {
        let r = client
            .get(format!("{}/{rel}", srv.url))
            .send()
            .expect("GET");
        assert_eq!(
            r.bytes().expect("body").as_ref(),
            std::fs::read(root.join(rel)).expect("read").as_slice()
        );
    }
    let log = srv.stop_after(n + 3);
    let size = std::fs::metadata(root.join("seeds/worker-1/user-data"))
        .expect("stat")
        .len();
    assert!(
        log.contains(&format!(
            "127.0.0.1 GET /seeds/worker-1/user-data 200 {size} machine=worker-1\n"
        )),
        "{log}"
    );
    assert!(log.contains("127.0.0.1 GET /grub/grub.cfg 200 "), "{log}");
    assert_eq!(
        log.lines().count(),
        n + 3,
        "one log line per request:\n{log}"
    );
}

#[test]
fn head_gives_the_length_without_a_body() {
    let s = built();
    let root = s.out().join("pxe");
    let srv = Served::start(&root);
    let len = std::fs::metadata(root.join("seeds/master/user-data"))
        .expect("stat")
        .len();
    let r = reqwest::blocking::Client::new()
        .head(format!("{}/seeds/master/user-data", srv.url))
        .send()
        .expect("HEAD");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-length"].to_str().expect("ascii"),
        len.to_string()
    );
    assert!(r.bytes().expect("body").is_empty());
}

#[test]
fn anything_but_get_and_head_is_405() {
    let s = built();
    let srv = Served::start(&s.out().join("pxe"));
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/seeds/master/user-data", srv.url);
    let r = client.post(&url).body("x").send().expect("POST");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    assert_eq!(client.put(&url).send().expect("PUT").status().as_u16(), 405);
    assert_eq!(
        client
            .delete(&url)
            .send()
            .expect("DELETE")
            .status()
            .as_u16(),
        405
    );
    assert!(s.out().join("pxe/seeds/master/user-data").exists());
}

#[test]
fn paths_outside_the_tree_are_refused() {
    let s = built();
    let root = s.out().join("pxe");
    // A symlink inside the tree to a directory outside it, and one to a
    // file inside it (which is fine to follow).
    std::os::unix::fs::symlink("/etc", root.join("etc-link")).expect("symlink");
    std::os::unix::fs::symlink("seeds/nfs/meta-data", root.join("inside-link")).expect("symlink");
    let srv = Served::start(&root);
    for target in [
        "/../etc/passwd",
        "/seeds/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/seeds/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
        "//etc/passwd",
        "/etc-link/passwd",
        "/etc-link/../etc-link/passwd",
        "/seeds/nfs/meta-data%00",
        "/etc/passwd",
        "http://127.0.0.1/../../etc/passwd",
    ] {
        let (code, resp) = srv.raw("GET", target);
        assert!(
            code == 403 || code == 404 || code == 400,
            "{target}: {code}\n{resp}"
        );
        assert!(!resp.contains("root:"), "{target} leaked /etc/passwd");
    }
    let (code, resp) = srv.raw("GET", "/inside-link");
    assert_eq!(code, 200, "{resp}");
    assert!(resp.contains("instance-id"));
    let (code, _) = srv.raw("GET", "/seeds/");
    assert_eq!(code, 404, "directories are not listed");
}

#[test]
fn serve_rejects_a_missing_directory_and_a_bad_bind_address() {
    let d = tempfile::tempdir().expect("tempdir");
    let o = bin()
        .arg("serve")
        .arg(d.path().join("nope"))
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    let o = bin()
        .arg("serve")
        .arg(d.path())
        .args(["--bind", "localhost"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("--bind"));
}
