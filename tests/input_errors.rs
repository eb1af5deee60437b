//! Inputs that are not a plain cluster file: YAML-level mistakes (duplicate
//! keys, several documents, alias bombs, negative numbers...) and files that
//! are not regular files at all. Each must exit 2 at once, in plain words,
//! with file:line:col and the field at fault, write nothing, and never show
//! the parser's own vocabulary.

use crate::common;

use std::path::Path;
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
    "sequence start",
    "mapping start",
    "scalar",
    "deserialize",
    "block indentation",
    "node content",
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

/// What a refusal may cost in CPU time (a debug build refuses the alias
/// bombs in well under a second). CPU time, not wall time, because the
/// tests share a 2-core machine with parallel builds; a refusal that blocks
/// instead of spinning is caught by the wall-clock bound.
const CPU_LIMIT: Duration = Duration::from_secs(5);
const WALL_LIMIT: Duration = Duration::from_secs(60);

/// `microseed build` on the scratch cluster, with the CPU time it used.
// The child is reaped by wait4 (which reports its CPU use), not Child::wait.
#[allow(clippy::zombie_processes)]
fn build_timed(s: &Scratch) -> (std::process::Output, Duration) {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = bin()
        .arg("build")
        .arg(s.cluster())
        .arg("-o")
        .arg(s.out())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut b = Vec::new();
            pipe.read_to_end(&mut b).ok();
            b
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = Instant::now();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our child, status and usage are valid pointers.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(r >= 0, "wait4: {}", std::io::Error::last_os_error());
        if r == pid {
            break;
        }
        if start.elapsed() > WALL_LIMIT {
            child.kill().ok();
            panic!("microseed build still running after {WALL_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (stdout, stderr) = (
        stdout.join().expect("stdout reader"),
        stderr.join().expect("stderr reader"),
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    let output = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout,
        stderr,
    };
    (output, cpu)
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
            says: "expands to far more values than microseed ever reads",
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
            name: "one value where a list belongs",
            text: with("dns: [8.8.8.8, 8.8.4.4]", "dns: 8.8.8.8"),
            line: line_of("  dns:"),
            column: 8,
            field: "network.dns",
            says: "got \"8.8.8.8\"; expected a list, such as `[a, b]`",
        },
        Case {
            name: "machines as one word",
            text: format!(
                "{}machines: foo\n",
                &EXAMPLE[..EXAMPLE.find("machines:").expect("machines")]
            ),
            line: line_of("machines:"),
            column: 11,
            field: "machines",
            says: "got \"foo\"; expected a list",
        },
        Case {
            name: "a list where one value belongs",
            text: with("timezone: America/Los_Angeles", "timezone: [a]"),
            line: line_of("timezone:"),
            column: 11,
            field: "timezone",
            says: "got a list; expected a single value, not a list or mapping",
        },
        Case {
            name: "a list as the password hash",
            text: with(
                "  username: ubuntu\n",
                "  username: ubuntu\n  password_hash: [x]\n",
            ),
            line: line_of("  username:") + 1,
            column: 18,
            field: "admin.password_hash",
            says: "got a list; expected a single value, not a list or mapping",
        },
        Case {
            name: "a mapping where one value belongs",
            text: with("password_auth: false", "password_auth: {a: b}"),
            line: line_of("  password_auth:"),
            column: 18,
            field: "ssh.password_auth",
            says: "got a `key: value` mapping; expected a single value",
        },
        Case {
            name: "one value where a mapping belongs",
            text: with(
                "network:\n  subnet: 172.20.0.0/20\n  gateway: 172.20.0.1\n  dns: [8.8.8.8, 8.8.4.4]\n",
                "network: 5\n",
            ),
            line: line_of("network:"),
            column: 10,
            field: "network",
            says: "got \"5\"; expected `key: value` lines indented below `network:`",
        },
        Case {
            name: "a machine that is one word",
            text: with(
                "  - name: worker-1\n    role: worker\n    ip: 172.20.10.12\n",
                "  - worker-1\n",
            ),
            line: line_of("  - name: worker-1"),
            column: 5,
            field: "machines[2]",
            says: "got \"worker-1\"; expected `key: value` lines for this entry of `machines`",
        },
        Case {
            name: "a YAML tag",
            text: with("name: eth2", "name: !!int x"),
            line: line_of("name:"),
            column: 0,
            field: "name",
            says: "a YAML tag (`!!int`)",
        },
        Case {
            name: "a !!binary tag, which would decode the value silently",
            text: with("name: eth2", "name: !!binary ZXRoMg=="),
            line: line_of("name:"),
            column: 7,
            field: "name",
            says: "a YAML tag (`!!binary`); microseed reads plain values only",
        },
        Case {
            name: "a local tag, which would be dropped silently",
            text: with("  - name: worker-1", "  - name: !foo worker-1"),
            line: line_of("  - name: worker-1"),
            column: 11,
            field: "machines[2].name",
            says: "a YAML tag (`!foo`)",
        },
        Case {
            name: "a disk chosen two ways",
            text: with(
                "  - name: worker-1\n",
                "  - name: worker-1\n    disk: {serial: A, path: /dev/sda}\n",
            ),
            line: line_of("  - name: worker-1") + 1,
            column: 23,
            field: "machines[2].disk",
            says: "`serial` and `path` are both given, but a disk is chosen one way; expected only one of",
        },
        Case {
            name: "a NUL byte",
            text: with("name: eth2", "name: eth\u{0}2"),
            line: line_of("name:"),
            column: 10,
            field: "",
            says: "a control character (U+0000) that YAML does not allow in a file",
        },
        Case {
            name: "a value starting with %",
            text: with("name: eth2", "name: %eth2"),
            line: line_of("name:"),
            column: 7,
            field: "",
            says: "`%` cannot start a value (YAML reserves it for `%YAML` directives); quote the value",
        },
        Case {
            name: "a quoted version",
            text: with("version: 1", "version: \"1\""),
            line: line_of("version:"),
            column: 10,
            field: "version",
            says: "got text (a quoted value); expected the number 1, without quotes",
        },
        Case {
            name: "a list as a key",
            text: with("name: eth2\n", "name: eth2\n? [a]\n: b\n"),
            line: line_of("name:") + 1,
            column: 3,
            field: "",
            says: "got a list as a key; expected a key name",
        },
        Case {
            name: "a list as a nested key",
            text: with("  layout: us\n", "  layout: us\n  ? [a]\n  : b\n"),
            line: line_of("  layout:") + 1,
            column: 5,
            field: "keyboard",
            says: "got a list as a key; expected a key name",
        },
        Case {
            name: "a byte order mark mid-file",
            text: with("name: eth2\n", "name: eth2\n\u{feff}locale2: x\n"),
            line: line_of("name:") + 1,
            column: 1,
            field: "",
            says: "a byte order mark (U+FEFF",
        },
        Case {
            name: "a key indented under a plain value",
            text: with("version: 1\nname: eth2", "version: 1\n  name: eth2"),
            line: line_of("version:"),
            column: 10,
            field: "version",
            says: "got \"1 name: eth2\": line 4 is indented more than this key",
        },
        Case {
            name: "an unknown disk choice",
            text: with(
                "    ip: 172.20.10.12\n",
                "    ip: 172.20.10.12\n    disk: seral\n",
            ),
            line: line_of("    ip: 172.20.10.12") + 1,
            column: 11,
            field: "machines[2].disk",
            says: "got \"seral\"; expected one of largest, serial, path; did you mean `serial`?",
        },
        Case {
            name: "a list as the disk choice",
            text: with(
                "    ip: 172.20.10.12\n",
                "    ip: 172.20.10.12\n    disk: [x]\n",
            ),
            line: line_of("    ip: 172.20.10.12") + 1,
            column: 11,
            field: "machines[2].disk",
            says: "got a list; expected one word such as `largest`",
        },
        Case {
            name: "a key line that does not line up",
            text: with(
                "  gateway: 172.20.0.1\n",
                "  gateway: 172.20.0.1\n dns2: x\n",
            ),
            line: line_of("  gateway:") + 1,
            column: 0,
            field: "",
            says: "line up",
        },
        Case {
            name: "a tab indenting the line after a plain value",
            text: with("version: 1\nname: eth2", "version: 1\n\tname: eth2"),
            line: line_of("version:") + 1,
            column: 1,
            field: "",
            says: "a tab character; YAML indentation must be spaces",
        },
        Case {
            name: "a tab indenting a nested key",
            text: with("  gateway: 172.20.0.1", "\tgateway: 172.20.0.1"),
            line: line_of("  gateway:"),
            column: 1,
            field: "",
            says: "a tab character",
        },
        Case {
            name: "an unclosed quote the parser reads past",
            text: with("username: ubuntu", "username: \"ubuntu"),
            line: line_of("  username:"),
            column: 13,
            field: "admin.username",
            says: "this `\"` opens a quoted value that is not closed on its line",
        },
        Case {
            name: "an unclosed quote at the end of the file",
            text: format!(
                "{}    mac: '52:54\n",
                &EXAMPLE[..EXAMPLE.find("\n# staking:").expect("comment") + 1]
            ),
            line: line_of("# staking:"),
            column: 10,
            field: "machines[2].mac",
            says: "this `'` opens a quoted value that is never closed",
        },
        Case {
            name: "an unclosed list the parser reads past",
            text: with("addons: [dns, helm3]", "addons: [dns, helm3"),
            line: line_of("  addons:"),
            column: 11,
            field: "microk8s.addons",
            says: "this `[` is not closed on its line",
        },
        Case {
            name: "text after a closing quote",
            text: with("name: eth2", "name: \"eth2\" x"),
            line: line_of("name:"),
            column: 0,
            field: "name",
            says: "text after the closing `\"`",
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
        let (o, took) = build_timed(&s);
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
        if took > CPU_LIMIT {
            why.push(format!("took {took:?} of CPU"));
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
    let (o, took) = build_timed(&s);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("expands to far more values") || err.contains("aliases"),
        "{err}"
    );
    assert!(took < CPU_LIMIT, "took {took:?} of CPU");
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

/// What the secrets file's refusals must never say: they belong to the
/// cluster file (or to no file at all).
const NOT_FOR_SECRETS: &[&str] = &["cluster description", "cluster file", "already exists"];

/// A name, what puts the bad entry at a path, and what the refusal says.
type Breaker<'a> = (&'a str, &'a dyn Fn(&Path), &'a str);

#[test]
fn secrets_file_that_is_not_a_regular_file_is_refused() {
    let make: &[Breaker] = &[
        (
            "directory",
            &|p| std::fs::create_dir(p).expect("mkdir"),
            "the secrets file is a directory; expected a regular YAML file",
        ),
        (
            "FIFO",
            &|p| {
                let c = std::ffi::CString::new(p.to_str().expect("utf8")).expect("cstr");
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            },
            "the secrets file is a FIFO (named pipe)",
        ),
        (
            "huge file",
            &|p| {
                std::fs::File::create(p)
                    .and_then(|f| f.set_len(64 * 1024 * 1024))
                    .expect("sparse file");
            },
            "the secrets file is larger than 1024 KiB; expected a few lines",
        ),
        (
            "dangling symlink",
            &|p| std::os::unix::fs::symlink("gone/secrets.yaml", p).expect("symlink"),
            "the secrets file is a symbolic link to gone/secrets.yaml, which does not exist",
        ),
    ];
    for (name, make, says) in make {
        let s = Scratch::example();
        let secrets = s.dir.path().join("secrets.yaml");
        std::fs::remove_file(&secrets).expect("rm");
        make(&secrets);
        let (o, _) = build_timed(&s);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("{}: error: ", secrets.display())),
            "{name}: does not name the file: {err}"
        );
        assert!(err.contains(says), "{name}: {err}");
        for wrong in NOT_FOR_SECRETS {
            assert!(!err.contains(wrong), "{name} says {wrong:?}: {err}");
        }
        assert!(!s.out().exists(), "{name}: output written");
        // Nothing replaced the user's entry with a fresh secrets file.
        let meta = secrets.symlink_metadata().expect("still there");
        assert!(!meta.is_file() || meta.len() > 1024, "{name}: replaced");
    }
}

#[test]
fn ssh_key_file_that_is_not_a_regular_file_is_refused_in_its_own_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keydir = dir.path().join("id_ed25519.pub");
    std::fs::create_dir(&keydir).expect("mkdir");
    let huge = dir.path().join("huge.pub");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(64 * 1024 * 1024))
        .expect("sparse file");
    for (key, says) in [
        (
            &keydir,
            "the ssh public key file is a directory; expected a regular file holding one public key line",
        ),
        (
            &huge,
            "the ssh public key file is larger than 1024 KiB; expected one public key line",
        ),
    ] {
        let target = dir.path().join("c");
        let o = bin()
            .arg("init")
            .arg(&target)
            .arg("--ssh-key")
            .arg(key)
            .env("HOME", dir.path())
            .output()
            .expect("run");
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("YAML") && !err.contains("cluster"), "{err}");
        assert!(!target.join("cluster.yaml").exists());
    }
}

#[test]
fn a_huge_value_is_cut_in_the_error() {
    let huge = "x".repeat(900 * 1024);
    for (from, to) in [
        ("name: eth2", format!("name: {huge}")),
        ("  username: ubuntu", format!("  username: \"{huge}\"")),
        ("    ip: 172.20.10.12", format!("    ip: {huge}")),
    ] {
        let s = Scratch::new(&with(from, &to));
        let o = s.build(&[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{}", &err[..err.len().min(500)]);
        assert!(
            err.len() < 2000,
            "{} bytes of error for {from:?}",
            err.len()
        );
        assert!(
            err.contains(&format!("({} characters in all)", 900 * 1024)),
            "{err}"
        );
    }
}
