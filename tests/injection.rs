//! Hostile strings in every free-text field: shell metacharacters, quotes,
//! newlines and YAML 1.1 specials. Each is either rejected with its field
//! named, or comes out the other end exactly as written, as PyYAML (what
//! cloud-init uses) and bash read it.

use crate::common;

use common::{EXAMPLE, Scratch, extract_write_files, pyyaml, text};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL";

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("json string is valid YAML")
}

fn build(cluster: &str) -> (Scratch, std::process::Output) {
    let s = Scratch::new(cluster);
    let o = s.build(&[]);
    (s, o)
}

/// Every script the build placed on any machine parses in its interpreter:
/// bash for shell scripts, Python's compiler for Python ones.
fn scripts_parse(s: &Scratch) {
    for m in ["nfs", "master", "worker-1"] {
        let Ok(ud) = std::fs::metadata(s.out().join(m).join("user-data")) else {
            continue;
        };
        assert!(ud.len() > 0);
        let cc = common::first_boot(&s.out(), m);
        let root = s.dir.path().join("x").join(m);
        for p in extract_write_files(&cc, &root) {
            let body = std::fs::read_to_string(&p).expect("read");
            let Some(shebang) = body.lines().next().filter(|l| l.starts_with("#!")) else {
                continue;
            };
            let path = p.to_str().expect("utf8");
            let o = if shebang.contains("python3") {
                let code = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')";
                common::run("python3", &["-c", code, path])
            } else {
                common::run("bash", &["-n", path])
            };
            assert!(o.status.success(), "{}: {}", p.display(), text(&o).1);
        }
    }
}

fn rejected(o: &std::process::Output, field: &str) {
    let (_, err) = text(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected a rejection naming {field}: {err}"
    );
    assert!(
        err.contains(&format!("error: {field}: ")),
        "{field} not named: {err}"
    );
}

#[test]
fn yaml_specials_as_names_read_back_as_strings() {
    // Valid host names, user names, layouts and serials that PyYAML would
    // turn into booleans, octal numbers or dates if left unquoted.
    for special in [
        "no", "on", "yes", "off", "y", "n", "0123", "1e3", "null", "true",
    ] {
        // An all-digit host name is refused (it reads as an address), so
        // "0123" is tried everywhere but the name.
        let host = if special.bytes().all(|b| b.is_ascii_digit()) {
            "worker-1"
        } else {
            special
        };
        let cluster = EXAMPLE
            .replace("name: worker-1", &format!("name: {}", yaml_str(host)))
            .replace(
                "username: ubuntu",
                &format!(
                    "username: {}",
                    yaml_str(if special.as_bytes()[0].is_ascii_digit() {
                        "u0123"
                    } else {
                        special
                    })
                ),
            )
            .replace("layout: us", &format!("layout: {}", yaml_str(special)))
            .replace(
                "    ip: 172.20.10.12",
                &format!(
                    "    ip: 172.20.10.12\n    interface: {}\n    disk: {{serial: {}}}",
                    yaml_str(special),
                    yaml_str(special)
                ),
            )
            .replace(
                "  dns: [8.8.8.8, 8.8.4.4]",
                &format!(
                    "  dns: [8.8.8.8, 8.8.4.4]\n  search_domains: [{}]",
                    yaml_str(special)
                ),
            );
        let (s, o) = build(&cluster);
        assert!(o.status.success(), "{special}: {}", text(&o).1);
        let ud = pyyaml(&s.out().join(host).join("user-data"));
        let ai = &ud["autoinstall"];
        assert_eq!(ai["user-data"]["hostname"], host, "hostname {special}");
        assert_eq!(ai["keyboard"]["layout"], special, "layout {special}");
        // A serial becomes a glob over udev's ID_SERIAL (documents::serial_glob).
        assert_eq!(
            ai["storage"]["layout"]["match"]["serial"],
            format!("*{special}*"),
            "serial {special}"
        );
        assert!(
            ai["network"]["network"]["ethernets"].get(special).is_some(),
            "interface {special}: {}",
            ai["network"]
        );
        assert_eq!(
            ai["network"]["network"]["ethernets"][special]["nameservers"]["search"][0],
            special
        );
        let md = pyyaml(&s.out().join(host).join("meta-data"));
        assert_eq!(md["local-hostname"], host);
        scripts_parse(&s);
    }
}

#[test]
fn date_like_and_anchor_like_values_are_rejected_or_exact() {
    // A date-like serial is a plausible serial: it must stay a string.
    let (s, o) = build(&EXAMPLE.replace(
        "    ip: 172.20.10.12",
        "    ip: 172.20.10.12\n    disk: {serial: \"2020-01-01\"}",
    ));
    assert!(o.status.success(), "{}", text(&o).1);
    let ud = pyyaml(&s.out().join("worker-1/user-data"));
    assert_eq!(
        ud["autoinstall"]["storage"]["layout"]["match"]["serial"],
        "*2020-01-01*"
    );
    for (field, edit) in [
        ("locale", ("locale: en_US.UTF-8", "locale: \"2020-01-01\"")),
        ("machines[2].name", ("name: worker-1", "name: \"*a\"")),
        ("machines[2].name", ("name: worker-1", "name: \"&a\"")),
        ("machines[2].name", ("name: worker-1", "name: \"# x\"")),
        ("keyboard.layout", ("layout: us", "layout: \"us; reboot\"")),
        (
            "admin.username",
            ("username: ubuntu", "username: \"$(reboot)\""),
        ),
        (
            "network.search_domains[0]",
            (
                "  dns: [8.8.8.8, 8.8.4.4]",
                "  dns: [8.8.8.8, 8.8.4.4]\n  search_domains: [\"a b\"]",
            ),
        ),
        (
            "ntp.pools[0]",
            ("time.google.com", "\"time.google.com; reboot\""),
        ),
        (
            "microk8s.addons[0]",
            (
                "addons: [dns, helm3]",
                "addons: [\"dns'; reboot; '\", helm3]",
            ),
        ),
        (
            "nfs.export_root",
            ("export_root: /data", "export_root: \"/data $(reboot)\""),
        ),
        (
            "nfs.export_root",
            ("export_root: /data", "export_root: \"/data\\n/ *(rw)\""),
        ),
        (
            "machines[2].interface",
            (
                "    ip: 172.20.10.12",
                "    ip: 172.20.10.12\n    interface: \"eth0\\nmatch\"",
            ),
        ),
        (
            "machines[2].disk.path",
            (
                "    ip: 172.20.10.12",
                "    ip: 172.20.10.12\n    disk: {path: \"/dev/sda; reboot\"}",
            ),
        ),
        (
            "admin.password_hash",
            ("  ssh_keys:", "  password_hash: \"$6$a'b$c\"\n  ssh_keys:"),
        ),
        ("admin.ssh_keys[0]", (KEY, "ssh-ed25519 AAAA\\nrm -rf /")),
        ("name", ("name: eth2", "name: \"eth2'; reboot\"")),
        (
            "staking.execution.path",
            (
                "  enabled: false",
                "  enabled: true\n  network: hoodi\n  fee_recipient: \"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"\n  execution: {path: \"/x'; reboot\"}",
            ),
        ),
        (
            "staking.graffiti",
            (
                "  enabled: false",
                "  enabled: true\n  network: hoodi\n  fee_recipient: \"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\"\n  graffiti: \"$(reboot)\"",
            ),
        ),
    ] {
        let (_, o) = build(&EXAMPLE.replacen(edit.0, edit.1, 1));
        rejected(&o, field);
    }
}

#[test]
fn ssh_key_comments_with_metacharacters_read_back_exactly() {
    for comment in [
        "'; rm -rf / #",
        "\"$(reboot)\" `id`",
        "*a &a # x",
        "no",
        "on: yes",
        "a\\b {c} [d]",
    ] {
        let key = format!("{KEY} {comment}");
        let (s, o) = build(&EXAMPLE.replace(&format!("{KEY} admin@example"), &yaml_str(&key)));
        assert!(o.status.success(), "{comment}: {}", text(&o).1);
        let ud = pyyaml(&s.out().join("master/user-data"));
        assert_eq!(ud["autoinstall"]["ssh"]["authorized-keys"][0], key.as_str());
        assert_eq!(
            ud["autoinstall"]["user-data"]["users"][0]["ssh_authorized_keys"][0],
            key.as_str()
        );
        scripts_parse(&s);
    }
}

#[test]
fn password_hash_reads_back_exactly() {
    let hash = "$6$rounds=5000$saltsalt$Lx0Lf5CzGnK0QW6h1lZ8Zq7eGm2Y0e2JQwUe5f0r0mXb1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6q7r8s9t0u1v";
    let (s, o) = build(&EXAMPLE.replace(
        "  ssh_keys:",
        &format!("  password_hash: {}\n  ssh_keys:", yaml_str(hash)),
    ));
    assert!(o.status.success(), "{}", text(&o).1);
    let ud = pyyaml(&s.out().join("nfs/user-data"));
    assert_eq!(
        ud["autoinstall"]["user-data"]["users"][0]["hashed_passwd"],
        hash
    );
    assert_eq!(
        ud["autoinstall"]["user-data"]["users"][0]["lock_passwd"],
        false
    );
}
