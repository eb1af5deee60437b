//! Which admin keys microseed accepts is decided by the consumer: OpenSSH's
//! sshd. Every key type ssh-keygen makes (plus the FIDO `sk-` types, built
//! from their wire format since no security key is attached) is put in a
//! cluster file; microseed must accept exactly the types sshd accepts by
//! default (`sshd -T`, PubkeyAcceptedAlgorithms), refuse DSA saying why, and
//! say what to do with a certificate. `init --ssh-key` follows the same rule.

use crate::common;

use std::path::Path;

use common::{EXAMPLE, Scratch, bin, run, text};

const EXAMPLE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL admin@example";

fn keygen(dir: &Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name);
    let mut all = vec![
        "-q",
        "-N",
        "",
        "-C",
        "me@host",
        "-f",
        path.to_str().expect("utf8"),
    ];
    all.extend_from_slice(args);
    let o = run("ssh-keygen", &all);
    assert!(o.status.success(), "ssh-keygen {args:?}: {:?}", text(&o));
    std::fs::read_to_string(path.with_extension("pub"))
        .expect("public key")
        .trim()
        .to_string()
}

fn wire_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn wire_fields(blob: &[u8]) -> Vec<Vec<u8>> {
    let mut fields = Vec::new();
    let mut i = 0;
    while i + 4 <= blob.len() {
        let n = u32::from_be_bytes(blob[i..i + 4].try_into().expect("4")) as usize;
        fields.push(blob[i + 4..i + 4 + n].to_vec());
        i += 4 + n;
    }
    fields
}

fn b64(data: &[u8]) -> String {
    let o = std::process::Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(data)?;
            c.wait_with_output()
        })
        .expect("base64");
    String::from_utf8(o.stdout).expect("utf8")
}

fn unb64(s: &str) -> Vec<u8> {
    let o = std::process::Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(s.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64");
    o.stdout
}

/// A FIDO key line of `kind` made from a plain key's public part: the
/// wire format is the plain key's fields plus the application string.
fn sk_key(kind: &str, plain: &str) -> String {
    let fields = wire_fields(&unb64(plain.split_whitespace().nth(1).expect("blob")));
    let mut blob = Vec::new();
    wire_string(&mut blob, kind.as_bytes());
    for f in &fields[1..] {
        wire_string(&mut blob, f);
    }
    wire_string(&mut blob, b"ssh:");
    format!("{kind} {} me@host", b64(&blob))
}

/// sshd's default accepted public key algorithms, from sshd itself.
fn sshd_accepted(dir: &Path) -> Vec<String> {
    keygen(dir, "hostkey", &["-t", "ed25519"]);
    std::fs::create_dir_all("/run/sshd").expect("privsep dir");
    let host = dir.join("hostkey");
    let o = run(
        "/usr/sbin/sshd",
        &["-T", "-f", "/dev/null", "-h", host.to_str().expect("utf8")],
    );
    assert!(o.status.success(), "sshd -T: {:?}", text(&o));
    let out = text(&o).0;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("pubkeyacceptedalgorithms "))
        .expect("pubkeyacceptedalgorithms in sshd -T");
    line.split(',').map(str::to_string).collect()
}

/// Whether sshd's list admits a key of this type (RSA keys are used with
/// the rsa-sha2 signature algorithms).
fn sshd_admits(accepted: &[String], kind: &str) -> bool {
    match kind {
        "ssh-rsa" => accepted.iter().any(|a| a.starts_with("rsa-sha2-")),
        k => accepted.iter().any(|a| a == k),
    }
}

fn check_with_key(key: &str) -> (Option<i32>, String) {
    let s = Scratch::new(&EXAMPLE.replacen(EXAMPLE_KEY, key, 1));
    let o = bin().arg("check").arg(s.cluster()).output().expect("run");
    (o.status.code(), text(&o).1)
}

#[test]
fn accepts_exactly_the_key_types_sshd_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accepted = sshd_accepted(dir.path());
    let ed = keygen(dir.path(), "ed", &["-t", "ed25519"]);
    let p256 = keygen(dir.path(), "p256", &["-t", "ecdsa", "-b", "256"]);
    let keys = vec![
        ed.clone(),
        p256.clone(),
        keygen(dir.path(), "p384", &["-t", "ecdsa", "-b", "384"]),
        keygen(dir.path(), "p521", &["-t", "ecdsa", "-b", "521"]),
        keygen(dir.path(), "rsa", &["-t", "rsa", "-b", "2048"]),
        keygen(dir.path(), "dsa", &["-t", "dsa"]),
        sk_key("sk-ssh-ed25519@openssh.com", &ed),
        sk_key("sk-ecdsa-sha2-nistp256@openssh.com", &p256),
    ];
    for key in keys {
        let kind = key.split_whitespace().next().expect("kind");
        // OpenSSH itself reads the line (the sk- ones are built by hand).
        let f = dir.path().join("probe.pub");
        std::fs::write(&f, format!("{key}\n")).expect("write");
        let o = run("ssh-keygen", &["-l", "-f", f.to_str().expect("utf8")]);
        assert!(o.status.success(), "{kind}: ssh-keygen -l: {:?}", text(&o));

        let (code, err) = check_with_key(&key);
        if sshd_admits(&accepted, kind) {
            assert_eq!(code, Some(0), "{kind} is accepted by sshd: {err}");
        } else {
            assert_eq!(code, Some(2), "{kind} is refused by sshd: {err}");
            assert!(err.contains("admin.ssh_keys[0]"), "{err}");
        }
        if kind == "ssh-dss" {
            assert!(err.contains("disables DSA since 7.0"), "{err}");
        }
    }
}

#[test]
fn a_certificate_is_refused_saying_which_file_to_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    keygen(dir.path(), "ca", &["-t", "ed25519"]);
    keygen(dir.path(), "user", &["-t", "ed25519"]);
    let o = run(
        "ssh-keygen",
        &[
            "-q",
            "-s",
            dir.path().join("ca").to_str().expect("utf8"),
            "-I",
            "test",
            "-n",
            "ubuntu",
            dir.path().join("user.pub").to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let cert = std::fs::read_to_string(dir.path().join("user-cert.pub")).expect("cert");
    let (code, err) = check_with_key(cert.trim());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("an OpenSSH certificate, not a public key"),
        "{err}"
    );
    assert!(err.contains("without `-cert`"), "{err}");
}

#[test]
fn init_takes_an_ecdsa_key_and_refuses_dsa() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ecdsa = keygen(dir.path(), "id_ecdsa", &["-t", "ecdsa"]);
    let o = bin()
        .arg("init")
        .arg(dir.path().join("c1"))
        .arg("--ssh-key")
        .arg(dir.path().join("id_ecdsa.pub"))
        .output()
        .expect("run");
    assert!(o.status.success(), "{:?}", text(&o));
    let written = std::fs::read_to_string(dir.path().join("c1/cluster.yaml")).expect("read");
    assert!(written.contains(&ecdsa), "{written}");
    let check = bin()
        .arg("check")
        .arg(dir.path().join("c1/cluster.yaml"))
        .output()
        .expect("run");
    assert!(check.status.success(), "{:?}", text(&check));

    keygen(dir.path(), "id_dsa", &["-t", "dsa"]);
    let o = bin()
        .arg("init")
        .arg(dir.path().join("c2"))
        .arg("--ssh-key")
        .arg(dir.path().join("id_dsa.pub"))
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("ssh-dss"), "{err}");
    assert!(
        !dir.path().join("c2").exists(),
        "init wrote despite the error"
    );
}

#[test]
fn a_key_with_authorized_keys_options_is_accepted_and_reaches_the_seed_whole() {
    let line = format!(
        "from=\"172.20.0.0/20,10.0.0.1\",no-agent-forwarding,command=\"echo \\\"hi, there\\\"\",environment=\"A=b c\" {EXAMPLE_KEY}"
    );
    let s = Scratch::new(&EXAMPLE.replacen(EXAMPLE_KEY, &format!("'{line}'"), 1));
    let o = s.build(&["--format", "dir"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let keys = common::first_boot(&s.out(), "master")["users"][0]["ssh_authorized_keys"].clone();
    assert_eq!(keys[0].as_str(), Some(line.as_str()), "{keys}");
    // OpenSSH reads the line as written into authorized_keys.
    let f = s.dir.path().join("authorized_keys");
    std::fs::write(&f, format!("{line}\n")).expect("write");
    let o = run("ssh-keygen", &["-l", "-f", f.to_str().expect("utf8")]);
    let (out, err) = text(&o);
    assert!(
        o.status.success() && out.contains("admin@example (ED25519)"),
        "{out}{err}"
    );
}

#[test]
fn a_key_with_options_sshd_would_reject_is_refused_saying_what_is_wrong() {
    for (opts, says) in [
        (
            "no-such-option",
            "\"no-such-option\" before the key is not an authorized_keys option",
        ),
        ("cert-authority", "cannot log in itself"),
        ("from=10.0.0.1", "needs its value in double quotes"),
        ("command", "needs a value"),
        ("no-pty=\"x\"", "takes no value"),
        ("from=\"10.0.0.1", "never closed"),
    ] {
        let (code, err) = check_with_key(&format!("'{opts} {EXAMPLE_KEY}'"));
        assert_eq!(code, Some(2), "{opts}: {err}");
        assert!(
            err.contains("admin.ssh_keys[0]") && err.contains(says),
            "{opts}: {err}"
        );
        assert!(!err.contains("character encoding"), "{err}");
    }
}
