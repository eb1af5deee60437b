//! Inputs that are not a plain cluster file: YAML-level mistakes (duplicate
//! keys, several documents, alias bombs, negative numbers...) and files that
//! are not regular files at all. Each must exit 2 at once, in plain words,
//! with file:line:col and the field at fault, write nothing, and never show
//! the parser's own vocabulary.

use crate::common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{EXAMPLE, Scratch, bin, text};

/// Words from the YAML library's API or internals that mean nothing to a user.
const JARGON: &[&str] = &[
    "DuplicateKeyPolicy",
    "from_str_multiple",
    "budget breached",
    "Options",
    "Nodes {",
    "Documents {",
    "invalid u32",
    "invalid u16",
    "?:",
    "serde",
    "saphyr",
];

struct Case {
    name: &'static str,
    /// The whole cluster file text.
    text: String,
    /// `file:LINE:COL: error: FIELD: ` that must appear (COL 0 = any).
    line: u64,
    column: u64,
    field: &'static str,
    says: &'static str,
}

/// The 1-based line of the example where `needle` first starts a line.
fn line_of(needle: &str) -> u64 {
    EXAMPLE
        .lines()
        .position(|l| l.starts_with(needle))
        .unwrap_or_else(|| panic!("example has no line starting {needle:?}")) as u64
        + 1
}

/// The first line after the example (where appended text starts).
fn appended() -> u64 {
    EXAMPLE.lines().count() as u64 + 1
}

fn with(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "example lacks {from:?}");
    EXAMPLE.replacen(from, to, 1)
}

/// Nine nested levels of nine aliases each: 9^9 values once expanded.
fn alias_bomb(key: &str) -> String {
    let mut s = format!("{EXAMPLE}{key}:\n  a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        s.push_str(&format!("  {name}: &{name} [{refs}]\n"));
    }
    s
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "duplicate top-level key",
            text: format!("{EXAMPLE}name: other\n"),
            line: appended(),
            column: 1,
            field: "name",
            says: "`name` is given twice",
        },
        Case {
            name: "duplicate nested key",
            text: with(
                "  gateway: 172.20.0.1\n",
                "  gateway: 172.20.0.1\n  gateway: 172.20.0.2\n",
            ),
            line: line_of("  gateway:") + 1,
            column: 3,
            field: "network.gateway",
            says: "`gateway` is given twice",
        },
        Case {
            name: "two documents",
            text: format!("{EXAMPLE}---\nversion: 1\n"),
            line: appended(),
            column: 0,
            field: "",
            says: "a second YAML document starts here",
        },
        Case {
            name: "alias bomb under an unknown key",
            text: alias_bomb("padding"),
            line: 0,
            column: 0,
            field: "",
            says: "expands to far more values than any cluster file holds",
        },
        Case {
            name: "recursive alias",
            text: with("keyboard:\n", "keyboard: &k\n  x: *k\n"),
            line: line_of("keyboard:") + 1,
            column: 0,
            field: "",
            says: "refer to themselves",
        },
        Case {
            name: "alias to no anchor",
            text: with("locale: en_US.UTF-8", "locale: *nowhere"),
            line: line_of("locale:"),
            column: 9,
            field: "",
            says: "refers to no anchor",
        },
        Case {
            name: "many aliases",
            text: format!("{EXAMPLE}z: &z x\ny: [{}]\n", vec!["*z"; 2000].join(", ")),
            line: appended() + 1,
            column: 0,
            field: "",
            says: "too many anchors or aliases",
        },
        Case {
            name: "negative uid",
            text: with("uid: 1001", "uid: -5"),
            line: line_of("  uid:"),
            column: 8,
            field: "nfs.uid",
            says: "got \"-5\"; expected an id from 1 to 65533",
        },
        Case {
            name: "negative port",
            text: with("port: 22", "port: -22   # moved"),
            line: line_of("  port:"),
            column: 9,
            field: "ssh.port",
            says: "got \"-22\"; expected a TCP port from 1 to 65535",
        },
        Case {
            name: "negative validator count in a flow mapping",
            text: with("  validator_clients: 1\n", "  validator_clients: -1\n"),
            line: line_of("  validator_clients:"),
            column: 22,
            field: "nfs.validator_clients",
            says: "got \"-1\"; expected a whole number from 1 to 64",
        },
        Case {
            name: "not a boolean",
            text: with("password_auth: false", "password_auth: maybe"),
            line: line_of("  password_auth:"),
            column: 18,
            field: "ssh.password_auth",
            says: "got \"maybe\"; expected true or false",
        },
        Case {
            name: "missing required key",
            text: with("    ip: 172.20.10.12\n", ""),
            line: 0,
            column: 0,
            field: "machines[2].ip",
            says: "missing; expected a `ip:` key here",
        },
        Case {
            name: "far-off unknown key gets no suggestion",
            text: with("    ip: 172.20.10.12", "    a: 172.20.10.12"),
            line: line_of("    ip: 172.20.10.12"),
            column: 5,
            field: "machines[2].a",
            says: "unknown key `a`; expected one of name, role, ip, mac, interface, disk",
        },
        Case {
            name: "password_auth without a hash points at password_auth",
            text: with("password_auth: false", "password_auth: true"),
            line: line_of("  password_auth:"),
            column: 18,
            field: "ssh.password_auth",
            says: "admin.password_hash is not set",
        },
        Case {
            name: "empty ntp pools",
            text: with(
                "pools: [time.google.com, us.pool.ntp.org, ntp.ubuntu.com]",
                "pools: []",
            ),
            line: line_of("  pools:"),
            column: 10,
            field: "ntp.pools",
            says: "empty; expected at least one NTP pool",
        },
        Case {
            name: "empty machines",
            text: format!(
                "{}machines: []\n",
                &EXAMPLE[..EXAMPLE.find("machines:").expect("machines")]
            ),
            line: line_of("machines:"),
            column: 11,
            field: "machines",
            says: "empty; expected at least one machine",
        },
        Case {
            name: "empty dns",
            text: with("dns: [8.8.8.8, 8.8.4.4]", "dns: []"),
            line: line_of("  dns:"),
            column: 8,
            field: "network.dns",
            says: "empty; expected at least one DNS server",
        },
    ]
}

#[test]
fn yaml_level_errors_are_plain_located_and_exit_2() {
    let mut failures = Vec::new();
    for case in cases() {
        let s = Scratch::new(&case.text);
        let start = Instant::now();
        let o = s.build(&[]);
        let took = start.elapsed();
        let (_, err) = text(&o);
        let file = s.cluster().display().to_string();
        let head = match (case.line, case.column) {
            (0, _) => format!("{file}:"),
            (l, 0) => format!("{file}:{l}:"),
            (l, c) => format!("{file}:{l}:{c}: error: "),
        };
        let mut why = Vec::new();
        if o.status.code() != Some(2) {
            why.push(format!("exit {:?}", o.status.code()));
        }
        if !err.contains(&head) {
            why.push(format!("no {head:?}"));
        }
        if case.line == 0 && err.starts_with(&format!("{file}: ")) && case.field.is_empty() {
            why.push("no position".into());
        }
        if !case.field.is_empty() && !err.contains(&format!("error: {}: ", case.field)) {
            why.push(format!("no field {:?}", case.field));
        }
        if !err.contains(case.says) {
            why.push(format!("does not say {:?}", case.says));
        }
        if err.contains("did you mean") && !case.says.contains("did you mean") {
            why.push("suggests a far-off key".into());
        }
        for j in JARGON {
            if err.contains(j) {
                why.push(format!("jargon {j:?}"));
            }
        }
        if s.out().exists() {
            why.push("output written".into());
        }
        if took > Duration::from_secs(5) {
            why.push(format!("took {took:?}"));
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {err}",
                case.name,
                why.join(", ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn alias_bomb_in_a_known_field_is_refused_quickly() {
    // Under `staking`, a key microseed knows the shape of, so the typed parse
    // never gets to reject it early; the budget must.
    let bomb = alias_bomb("staking").replacen("staking:\n  enabled: false\n", "", 1);
    let s = Scratch::new(&bomb);
    let start = Instant::now();
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("expands to far more values") || err.contains("aliases"),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn close_typo_still_gets_a_suggestion() {
    let s = Scratch::new(&with("timezone:", "timezon:"));
    let (_, err) = text(&s.build(&[]));
    assert!(err.contains("did you mean `timezone`?"), "{err}");
}

#[test]
fn non_utf8_cluster_file_is_located() {
    let s = Scratch::example();
    let mut bytes = EXAMPLE.as_bytes().to_vec();
    let at = EXAMPLE.find("name: eth2").expect("name") + "name: eth".len();
    bytes[at] = 0xff;
    std::fs::write(s.cluster(), &bytes).expect("write");
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:4:10: error: ", s.cluster().display())),
        "{err}"
    );
    assert!(err.contains("not valid UTF-8"), "{err}");
}

/// Runs `microseed check PATH` with a deadline: a hang is a failure, not a
/// stuck test run.
fn check_within(path: &std::path::Path, limit: Duration) -> (Option<i32>, String) {
    let mut child = bin()
        .arg("check")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            let o = child.wait_with_output().expect("output");
            return (o.status.code(), text(&o).1);
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("`check {}` still running after {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cluster_file_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("fifo.yaml");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstr");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let huge = dir.path().join("huge.yaml");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(64 * 1024 * 1024))
        .expect("sparse file");
    for (path, says) in [
        (std::path::PathBuf::from("/dev/zero"), "a character device"),
        (fifo, "a FIFO"),
        (dir.path().to_path_buf(), "a directory"),
        (huge, "larger than 1024 KiB"),
    ] {
        let (code, err) = check_within(&path, Duration::from_secs(5));
        assert_eq!(code, Some(2), "{}: {err}", path.display());
        assert!(err.contains(says), "{}: {err}", path.display());
        assert!(err.contains("cluster file"), "{err}");
    }
}

#[test]
fn secrets_file_that_is_not_a_regular_file_is_refused() {
    let s = Scratch::example();
    std::fs::remove_file(s.dir.path().join("secrets.yaml")).expect("rm");
    std::fs::create_dir(s.dir.path().join("secrets.yaml")).expect("mkdir");
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("the secrets file is a directory"), "{err}");
    assert!(!s.out().exists());
}
