//! Values that parse but would break the installed machine: an ssh port a
//! role's service needs, a password hash crypt(3) cannot use, a MAC no card
//! has, DNS or PXE hosts nobody can reach. Each class is checked across its
//! members, against the consumer where one exists (libcrypt for hashes, the
//! shipped role profiles for ports).

use crate::common;

use common::{EXAMPLE, Scratch, pyyaml, root, run, text};

fn with(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "example lacks {from:?}");
    EXAMPLE.replacen(from, to, 1)
}

fn check(cluster: &str) -> (Option<i32>, String) {
    let s = Scratch::new(cluster);
    let o = common::bin()
        .arg("check")
        .arg(s.cluster())
        .arg("--json")
        .output()
        .expect("run microseed");
    let (out, err) = text(&o);
    (o.status.code(), format!("{out}{err}"))
}

/// Every TCP port the example's roles open, read from the shipped profiles
/// (each role's and those of the layers it names) with PyYAML.
fn role_tcp_ports() -> Vec<u32> {
    let mut ports = Vec::new();
    let mut files = Vec::new();
    for role in ["nfs", "master", "worker"] {
        let v = pyyaml(&root().join(format!("profiles/roles/{role}.yaml")));
        for layer in v["layers"].as_array().into_iter().flatten() {
            let layer = layer.as_str().expect("layer name");
            files.push(pyyaml(
                &root().join(format!("profiles/layers/{layer}.yaml")),
            ));
        }
        files.push(v);
    }
    for v in files {
        for rule in v["firewall"].as_array().into_iter().flatten() {
            if rule["proto"] == "tcp" {
                let p = rule["port"].as_str().expect("port");
                ports.push(p.parse().expect("numeric port"));
            }
        }
    }
    ports.sort();
    ports.dedup();
    ports
}

#[test]
fn ssh_port_may_not_be_any_port_a_role_opens() {
    let ports = role_tcp_ports();
    assert!(ports.contains(&16443) && ports.contains(&2049), "{ports:?}");
    for port in ports {
        let (code, err) = check(&with("port: 22", &format!("port: {port}")));
        assert_eq!(code, Some(2), "ssh.port {port}: {err}");
        let line = EXAMPLE
            .lines()
            .position(|l| l.starts_with("  port:"))
            .expect("port line")
            + 1;
        assert!(
            err.contains(&format!(":{line}:9: error: ssh.port: ")),
            "{port}: {err}"
        );
        assert!(
            err.contains(&format!("{port}/tcp, opened by the ")),
            "{err}"
        );
    }
    for free in [22, 2222, 12000] {
        let (code, err) = check(&with("port: 22", &format!("port: {free}")));
        assert_eq!(code, Some(0), "ssh.port {free} is free: {err}");
    }
}

/// Hashes made by the tools a user would use, checked by libcrypt (through
/// Python's crypt module) before microseed sees them.
fn real_hashes() -> Vec<(String, String)> {
    let mut v = Vec::new();
    for flag in ["-1", "-5", "-6"] {
        let o = run("openssl", &["passwd", flag, "correct horse"]);
        assert!(o.status.success(), "{:?}", text(&o));
        v.push(("correct horse".to_string(), text(&o).0.trim().to_string()));
    }
    let o = run(
        "python3",
        &[
            "-W",
            "ignore",
            "-c",
            "import crypt\n\
             for m in (crypt.METHOD_SHA512, crypt.METHOD_SHA256, crypt.METHOD_BLOWFISH):\n\
             \x20   print(crypt.crypt('battery staple', crypt.mksalt(m)))\n\
             print(crypt.crypt('battery staple', '$6$rounds=10000$abcdefgh'))",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    for line in text(&o).0.lines() {
        v.push(("battery staple".to_string(), line.to_string()));
    }
    v
}

/// Whether libcrypt accepts each (password, hash): one Python for all.
fn libcrypt_verifies(pairs: &[(&str, &str)]) -> Vec<bool> {
    let mut args = vec![
        "-W",
        "ignore",
        "-c",
        "import crypt, sys\na = sys.argv[1:]\n\
         for p, h in zip(a[::2], a[1::2]):\n\
         \x20   print(crypt.crypt(p, h) == h)",
    ];
    for (p, h) in pairs {
        args.push(p);
        args.push(h);
    }
    let o = run("python3", &args);
    assert!(o.status.success(), "{:?}", text(&o));
    text(&o).0.lines().map(|l| l == "True").collect()
}

fn with_hash(hash: &str) -> String {
    with(
        "  ssh_keys:",
        &format!("  password_hash: '{hash}'\n  ssh_keys:"),
    )
}

#[test]
fn password_hash_must_be_a_complete_crypt_string() {
    let hashes = real_hashes();
    let mut pairs = Vec::new();
    for (password, hash) in &hashes {
        pairs.push((password.as_str(), hash.as_str()));
        pairs.push((password.as_str(), &hash[..hash.len() - 1]));
    }
    let verified = libcrypt_verifies(&pairs);
    for (i, (_, hash)) in pairs.iter().enumerate() {
        let (code, err) = check(&with_hash(hash));
        if i % 2 == 0 {
            assert!(verified[i], "libcrypt refuses {hash}");
            assert_eq!(code, Some(0), "{hash}: {err}");
        } else {
            // A truncated paste locks the account: libcrypt no longer
            // matches, and microseed refuses it without quoting it.
            assert!(!verified[i], "libcrypt accepts {hash}");
            assert_eq!(code, Some(2), "{hash}: {err}");
            assert!(err.contains("admin.password_hash"), "{err}");
            assert!(!err.contains(hash), "the value was echoed: {err}");
        }
    }
    for bad in [
        "$6$",
        "$6$salt$",
        "$6$salt",
        "$9$salt$abcdefghijklmnopqrstuv",
        "$1$toolongsalt$Gu4ttk8CQM.E0H8spebm61",
    ] {
        let (code, err) = check(&with_hash(bad));
        assert_eq!(code, Some(2), "{bad}: {err}");
    }
}

#[test]
fn a_plaintext_password_in_password_hash_is_never_echoed() {
    for password in ["hunter2hunter2", "$6$MySecretPass", "correct horse battery"] {
        let (code, err) = check(&with_hash(password));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("not a complete crypt(3) hash"), "{err}");
        assert!(!err.contains(password), "the password was echoed: {err}");
        assert!(!err.contains("MySecretPass"), "{err}");
    }
}

#[test]
fn mac_must_be_unicast() {
    let mac_line = |mac: &str| {
        with(
            "    ip: 172.20.10.12",
            &format!("    ip: 172.20.10.12\n    mac: \"{mac}\""),
        )
    };
    for bad in [
        "01:00:5e:00:00:fb",
        "33:33:00:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
        "03:00:00:00:00:00",
    ] {
        let (code, err) = check(&mac_line(bad));
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("machines[2].mac"), "{err}");
        assert!(err.contains("unicast"), "{err}");
    }
    for good in [
        "52:54:00:12:34:56",
        "02:00:00:00:00:01",
        "00:1A:2B:3C:4D:5E",
    ] {
        let (code, err) = check(&mac_line(good));
        assert_eq!(code, Some(0), "{good}: {err}");
    }
}

#[test]
fn dns_server_must_be_a_reachable_address() {
    for bad in ["0.0.0.0", "::", "224.0.0.251", "255.255.255.255"] {
        let (code, err) = check(&with(
            "dns: [8.8.8.8, 8.8.4.4]",
            &format!("dns: [8.8.8.8, \"{bad}\"]"),
        ));
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("network.dns[1]"), "{err}");
    }
}

#[test]
fn pxe_url_host_must_be_reachable_by_the_machines() {
    let s = Scratch::example();
    for bad in ["0.0.0.0", "127.0.0.1", "255.255.255.255", "239.1.1.1"] {
        let o = s.build(&[
            "--format",
            "dir,pxe",
            "--pxe-url",
            &format!("http://{bad}:8080"),
        ]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains("--pxe-url"), "{err}");
        assert!(
            err.contains("no netbooting machine can fetch from"),
            "{err}"
        );
        assert!(!s.out().exists());
    }
}

/// `check --json`'s warnings as (field, line, message), with today fixed.
fn warnings_on(cluster: &str, today: &str) -> Vec<(String, u64, String)> {
    let s = Scratch::new(cluster);
    let o = common::bin()
        .arg("check")
        .arg(s.cluster())
        .arg("--json")
        .env("MICROSEED_TODAY", today)
        .output()
        .expect("run microseed");
    assert!(o.status.success(), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_str(&text(&o).0).expect("json");
    v["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .map(|w| {
            assert_eq!(w["severity"], "warning");
            (
                w["field"].as_str().expect("field").to_string(),
                w["line"].as_u64().expect("line"),
                w["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

fn fields(w: &[(String, u64, String)]) -> Vec<&str> {
    w.iter().map(|(f, _, _)| f.as_str()).collect()
}

#[test]
fn a_machine_without_mac_or_interface_is_warned_about_at_its_name() {
    let w = warnings_on(EXAMPLE, "2025-01-01");
    let nic: Vec<_> = w
        .iter()
        .filter(|(f, _, _)| f.starts_with("machines["))
        .collect();
    assert_eq!(nic.len(), 3, "{w:?}");
    let line = EXAMPLE
        .lines()
        .position(|l| l.contains("name: worker-1"))
        .expect("worker-1")
        + 1;
    let (field, at, msg) = nic[2];
    assert_eq!((field.as_str(), *at), ("machines[2]", line as u64));
    for words in [
        "worker-1",
        "two or more wired NICs",
        "same address",
        "mac:",
        "interface:",
    ] {
        assert!(msg.contains(words), "{msg}");
    }
    // Many such machines: one warning names them, not one line each.
    let mut big = EXAMPLE.to_string();
    for i in 2..=5 {
        big.push_str(&format!(
            "  - name: worker-{i}\n    role: worker\n    ip: 172.20.10.{}\n",
            20 + i
        ));
    }
    let w = warnings_on(&big, "2025-01-01");
    let nic: Vec<_> = w
        .iter()
        .filter(|(f, _, _)| f.starts_with("machines["))
        .collect();
    assert_eq!(nic.len(), 1, "{w:?}");
    assert!(
        nic[0].2.starts_with("7 machines (nfs, master, worker-1, worker-2, worker-3 and 2 more) have neither mac nor interface"),
        "{}",
        nic[0].2
    );
    // A MAC or an interface name is one NIC: nothing to warn about.
    let w = warnings_on(
        &common::with_macs(&common::example_with_own_key()),
        "2025-01-01",
    );
    assert!(
        !fields(&w).iter().any(|f| f.starts_with("machines[")),
        "{w:?}"
    );
    let named = EXAMPLE.replace(
        "    ip: 172.20.10.12\n",
        "    ip: 172.20.10.12\n    interface: enp2s0\n",
    );
    let w = warnings_on(&named, "2025-01-01");
    assert!(!fields(&w).contains(&"machines[2]"), "{w:?}");
}

#[test]
fn ntp_pools_mixing_smeared_and_stepping_servers_are_warned_about() {
    let mixed = warnings_on(
        &common::with_macs(&common::example_with_own_key()),
        "2025-01-01",
    );
    let ntp: Vec<_> = mixed.iter().filter(|(f, _, _)| f == "ntp.pools").collect();
    assert_eq!(ntp.len(), 1, "{mixed:?}");
    let msg = &ntp[0].2;
    for words in [
        "time.google.com",
        "us.pool.ntp.org",
        "developers.google.com/time/smear",
    ] {
        assert!(msg.contains(words), "{msg}");
    }
    for pools in [
        "[us.pool.ntp.org, ntp.ubuntu.com]",
        "[time.google.com, time2.google.com]",
        "[TIME1.GOOGLE.COM]",
    ] {
        let text = common::with_macs(&common::example_with_own_key())
            .replace("[time.google.com, us.pool.ntp.org, ntp.ubuntu.com]", pools);
        let w = warnings_on(&text, "2025-01-01");
        assert!(!fields(&w).contains(&"ntp.pools"), "{pools}: {w:?}");
    }
    let text = common::with_macs(&common::example_with_own_key()).replace(
        "[time.google.com, us.pool.ntp.org, ntp.ubuntu.com]",
        "[pool.ntp.org, Time3.Google.Com]",
    );
    assert!(fields(&warnings_on(&text, "2025-01-01")).contains(&"ntp.pools"));
}

#[test]
fn a_release_or_track_past_its_support_is_warned_about_naming_the_date_and_a_supported_choice() {
    let example = common::with_macs(&common::example_with_own_key()).replace(
        "[time.google.com, us.pool.ntp.org, ntp.ubuntu.com]",
        "[us.pool.ntp.org]",
    );
    // 20.04's last day of standard support: only the 1.20 track is over.
    let w = warnings_on(&example, "2025-05-31");
    assert_eq!(fields(&w), vec!["microk8s.channel"], "{w:?}");
    let (_, line, msg) = &w[0];
    assert_eq!(*line, 30, "at the channel: {msg}");
    for words in [
        "1.20",
        "2022-02-28",
        "channel: 1.35/stable",
        "one minor version at a time",
    ] {
        assert!(msg.contains(words), "{msg}");
    }
    // The day after, 20.04 is past it, and 24.04 is the supported choice.
    let w = warnings_on(&example, "2025-06-01");
    assert_eq!(fields(&w), vec!["release", "microk8s.channel"], "{w:?}");
    let (_, line, msg) = &w[0];
    assert_eq!(*line, 5);
    for words in ["20.04", "2025-05-31", "release: \"24.04\""] {
        assert!(msg.contains(words), "{msg}");
    }
    // Before 1.20's end nothing is said; a current track on 24.04 neither.
    assert!(warnings_on(&example, "2022-01-01").is_empty());
    let noble = example
        .replace("release: \"20.04\"", "release: \"24.04\"")
        .replace("channel: 1.20/stable", "channel: 1.35/stable");
    assert!(warnings_on(&noble, "2026-12-07").is_empty());
    // ...until 1.35 itself ends: warned, still not refused.
    let w = warnings_on(&noble, "2027-03-01");
    assert_eq!(fields(&w), vec!["microk8s.channel"], "{w:?}");
    // A cluster file without a channel gets the release's default: the
    // warning points at the release line then.
    let w = warnings_on(&noble.replace("  channel: 1.35/stable\n", ""), "2027-03-01");
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].1, 5);
}

#[test]
fn a_malformed_today_override_is_an_error_not_the_clock() {
    let s = Scratch::example();
    let o = common::bin()
        .arg("check")
        .arg(s.cluster())
        .env("MICROSEED_TODAY", "2025-13-01")
        .output()
        .expect("run microseed");
    assert!(!o.status.success());
    assert!(text(&o).1.contains("MICROSEED_TODAY"), "{:?}", text(&o));
}

#[test]
fn build_output_bytes_do_not_depend_on_the_date() {
    let sums = |today: &str| {
        let s = Scratch::example();
        let o = common::bin()
            .arg("build")
            .arg(s.cluster())
            .arg("-o")
            .arg(s.out())
            .env("MICROSEED_TODAY", today)
            .output()
            .expect("run microseed");
        assert!(o.status.success(), "{:?}", text(&o));
        std::fs::read_to_string(s.out().join("SHA256SUMS")).expect("SHA256SUMS")
    };
    assert_eq!(sums("2022-01-01"), sums("2030-01-01"));
}
