//! One case per validation rule: each bad cluster file exits 2, names the
//! file, line, column and field, says what was expected, and writes nothing.

use crate::common;

use common::{EXAMPLE, Scratch, text};

/// Applies `edits` (from, to) to the example, builds, and checks the error.
fn rejects(edits: &[(&str, &str)], field: &str, line: u64, says: &str) {
    let mut cluster = EXAMPLE.to_string();
    for (from, to) in edits {
        assert!(cluster.contains(from), "example lacks {from:?}");
        cluster = cluster.replacen(from, to, 1);
    }
    let s = Scratch::new(&cluster);
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "expected exit 2, stderr: {err}");
    let file = s.cluster().display().to_string();
    let head = if line > 0 {
        format!("{file}:{line}:")
    } else {
        format!("{file}: error")
    };
    assert!(err.contains(&head), "no {head:?} in: {err}");
    if !field.is_empty() {
        assert!(
            err.contains(&format!("error: {field}: ")),
            "no field {field:?} in: {err}"
        );
    }
    assert!(err.contains(says), "no {says:?} in: {err}");
    assert!(!s.out().exists(), "output was written despite the error");
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .expect("readdir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

#[test]
fn yaml_syntax_error_points_at_the_line() {
    // The parser reads on to the next `"` (line 5) and stops there; the
    // report points where the unclosed quote opens.
    rejects(
        &[("name: eth2", "name: \"eth2")],
        "name",
        4,
        "this `\"` opens a quoted value that is not closed on its line",
    );
}

#[test]
fn wrong_type_names_the_field() {
    rejects(&[("port: 22", "port: [22]")], "ssh.port", 26, "expected");
}

#[test]
fn unknown_key_suggests_the_nearest() {
    rejects(
        &[("    ip: 172.20.10.12", "    ipp: 172.20.10.12")],
        "machines[2].ipp",
        51,
        "did you mean `ip`?",
    );
}

#[test]
fn unsupported_version_is_rejected() {
    rejects(
        &[("version: 1", "version: 7")],
        "version",
        3,
        "unsupported cluster file version",
    );
}

#[test]
fn ip_outside_subnet_is_rejected() {
    rejects(
        &[("ip: 172.20.10.12", "ip: 10.0.0.5")],
        "machines[2].ip",
        51,
        "outside the subnet 172.20.0.0/20",
    );
}

#[test]
fn gateway_outside_subnet_is_rejected() {
    rejects(
        &[("gateway: 172.20.0.1", "gateway: 192.168.1.1")],
        "network.gateway",
        13,
        "outside the subnet",
    );
}

#[test]
fn network_address_is_not_a_host() {
    rejects(
        &[("ip: 172.20.10.12", "ip: 172.20.0.0")],
        "machines[2].ip",
        51,
        "network address",
    );
}

#[test]
fn broadcast_address_is_not_a_host() {
    rejects(
        &[("ip: 172.20.10.12", "ip: 172.20.15.255")],
        "machines[2].ip",
        51,
        "broadcast address",
    );
}

#[test]
fn gateway_equal_to_machine_ip_is_rejected() {
    rejects(
        &[("ip: 172.20.10.12", "ip: 172.20.0.1")],
        "machines[2].ip",
        51,
        "gateway's address",
    );
}

#[test]
fn duplicate_ip_is_rejected() {
    rejects(
        &[("ip: 172.20.10.12", "ip: 172.20.10.11")],
        "machines[2].ip",
        51,
        "already used by machines[1]",
    );
}

#[test]
fn duplicate_name_is_rejected() {
    rejects(
        &[("name: worker-1", "name: master")],
        "machines[2].name",
        49,
        "already used by machines[1]",
    );
}

#[test]
fn duplicate_mac_is_rejected() {
    rejects(
        &[
            (
                "    ip: 172.20.10.11\n",
                "    ip: 172.20.10.11\n    mac: 52:54:00:00:00:01\n",
            ),
            (
                "    ip: 172.20.10.12",
                "    ip: 172.20.10.12\n    mac: 52:54:00:00:00:01",
            ),
        ],
        "machines[2].mac",
        53,
        "duplicate MAC",
    );
}

#[test]
fn malformed_cidr_is_rejected() {
    rejects(
        &[("subnet: 172.20.0.0/20", "subnet: 172.20.0.0/33")],
        "network.subnet",
        12,
        "expected an IPv4 CIDR",
    );
}

#[test]
fn malformed_mac_is_rejected() {
    rejects(
        &[(
            "    ip: 172.20.10.12",
            "    ip: 172.20.10.12\n    mac: 52:54:00:zz:00:01",
        )],
        "machines[2].mac",
        52,
        "expected a MAC address",
    );
}

#[test]
fn out_of_range_port_is_rejected() {
    rejects(
        &[("port: 22", "port: 70000")],
        "ssh.port",
        26,
        "expected a TCP port",
    );
}

#[test]
fn invalid_hostname_is_rejected() {
    rejects(
        &[("name: worker-1", "name: Worker_1")],
        "machines[2].name",
        49,
        "RFC 1123",
    );
}

#[test]
fn overlong_hostname_is_rejected() {
    let long = "w".repeat(64);
    rejects(
        &[("name: worker-1", &format!("name: {long}"))],
        "machines[2].name",
        49,
        "at most 63 characters",
    );
}

/// Two masters tolerate no more failures than one: refused at the second
/// master's role, saying what counts are allowed and why.
#[test]
fn two_masters_are_rejected_at_the_second_naming_1_3_or_5() {
    rejects(
        &[("role: worker", "role: master")],
        "machines",
        50,
        "found 2 machines with role \"master\"; expected 1, 3 or 5 (dqlite keeps a majority",
    );
}

const HA: &str = include_str!("../examples/ha/cluster.yaml");

/// Four masters: refused at the fourth (the one that made the count even).
#[test]
fn four_masters_are_rejected_at_the_fourth() {
    let cluster = HA.replace(
        "  - name: worker-1\n    role: worker\n",
        "  - name: master-4\n    role: master\n",
    );
    assert_ne!(cluster, HA);
    let s = Scratch::new(&cluster);
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let at = cluster
        .lines()
        .position(|l| l.starts_with("  - name: master-4"))
        .expect("line")
        + 2;
    let head = format!("{}:{at}:11: error: machines: ", s.cluster().display());
    assert!(err.contains(&head), "no {head:?} in {err}");
    assert!(
        err.contains("found 4 machines with role \"master\"; expected 1, 3 or 5"),
        "{err}"
    );
    assert!(!s.out().exists());
}

/// The HA example (three masters) builds, and five masters are accepted.
#[test]
fn three_and_five_masters_are_accepted() {
    let s = Scratch::new(HA);
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
    let five = HA.replace(
        "  - name: worker-1\n",
        "  - name: master-4\n    role: master\n    ip: 172.20.10.15\n  - name: master-5\n    role: master\n    ip: 172.20.10.16\n  - name: worker-1\n",
    );
    let s = Scratch::new(&five);
    let o = s.build(&[]);
    assert!(o.status.success(), "{}", text(&o).1);
}

#[test]
fn missing_master_is_rejected() {
    rejects(
        &[("role: master", "role: worker")],
        "machines",
        43,
        "found 0 machines with role \"master\"",
    );
}

#[test]
fn two_nfs_servers_are_rejected() {
    rejects(
        &[("role: worker", "role: nfs")],
        "machines",
        50,
        "exactly one",
    );
}

#[test]
fn unknown_role_suggests_the_nearest() {
    rejects(
        &[("role: worker", "role: wroker")],
        "machines[2].role",
        50,
        "did you mean \"worker\"?",
    );
}

#[test]
fn unparseable_ssh_key_is_rejected() {
    rejects(
        &[("ssh-ed25519 AAAAC3", "ssh-ed25519 BBBBC3")],
        "admin.ssh_keys[0]",
        23,
        "not an OpenSSH public key",
    );
}

#[test]
fn no_key_and_no_password_is_rejected() {
    rejects(
        &[(
            "  ssh_keys:\n    - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL admin@example\n",
            "  ssh_keys: []\n",
        )],
        "admin.ssh_keys",
        22,
        "unreachable",
    );
}

#[test]
fn non_iana_timezone_is_rejected_with_suggestion() {
    rejects(
        &[(
            "timezone: America/Los_Angeles",
            "timezone: America/Los_Angles",
        )],
        "timezone",
        6,
        "did you mean \"America/Los_Angeles\"?",
    );
}

#[test]
fn channel_without_risk_is_rejected() {
    rejects(
        &[("channel: 1.20/stable", "channel: \"1.20\"")],
        "microk8s.channel",
        30,
        "<track>/<risk>",
    );
}

#[test]
fn secrets_file_with_short_token_is_rejected() {
    let s = Scratch::example();
    std::fs::write(
        s.dir.path().join("secrets.yaml"),
        "version: 1\njoin_token: short\n",
    )
    .expect("write");
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("secrets.yaml:2:"), "{err}");
    assert!(err.contains("join_token: expected at least 32"), "{err}");
    assert!(!s.out().exists());
}

#[test]
fn secrets_file_missing_a_field_is_rejected() {
    let s = Scratch::example();
    std::fs::write(s.dir.path().join("secrets.yaml"), "version: 1\n").expect("write");
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("join_token"), "{err}");
    assert!(!s.out().exists());
}

#[test]
fn readable_secrets_file_warns_and_strict_refuses() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::example();
    let p = s.dir.path().join("secrets.yaml");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("warning") && err.contains("0644"), "{err}");
    std::fs::remove_dir_all(s.out()).expect("clean");
    let o = s.build(&["--strict"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("expected 0600"), "{err}");
    assert!(!s.out().exists());
}

#[test]
fn check_reports_every_error_at_once() {
    let cluster = EXAMPLE
        .replacen("ip: 172.20.10.12", "ip: 10.0.0.1", 1)
        .replacen("port: 22", "port: 0", 1);
    let s = Scratch::new(&cluster);
    let o = common::bin()
        .arg("check")
        .arg(s.cluster())
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("ssh.port") && err.contains("machines[2].ip"),
        "{err}"
    );
    assert!(err.contains("2 errors"), "{err}");
}

#[test]
fn check_json_lists_errors_with_positions() {
    let s = Scratch::new(&EXAMPLE.replacen("ip: 172.20.10.12", "ip: 10.0.0.1", 1));
    let o = common::bin()
        .arg("--json")
        .arg("check")
        .arg(s.cluster())
        .output()
        .expect("run");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["field"], "machines[2].ip");
    assert_eq!(v["errors"][0]["line"], 51);
    assert_eq!(v["errors"][0]["column"], 9);
}

#[test]
fn a_serial_glob_that_matches_any_disk_is_rejected() {
    rejects(
        &[(
            "    ip: 172.20.10.12",
            "    ip: 172.20.10.12\n    disk: {serial: \"*\"}",
        )],
        "machines[2].disk.serial",
        52,
        "udev's ID_SERIAL",
    );
}

#[test]
fn a_channel_too_old_for_the_release_is_refused_at_the_channel() {
    // 1.21 runs containerd's runc v1 shim, which 24.04's cgroup v2 cannot host.
    rejects(
        &[("release: \"20.04\"", "release: \"24.04\"")],
        "microk8s.channel",
        30,
        "\"1.20/stable\" cannot run on Ubuntu 24.04: track 1.20 is older than 1.22",
    );
    rejects(
        &[
            ("release: \"20.04\"", "release: \"22.04\""),
            ("channel: 1.20/stable", "channel: 1.21/edge"),
        ],
        "microk8s.channel",
        30,
        "expected track 1.22 or later, such as \"1.35/stable\"",
    );
}

/// Without `microk8s.channel` a cluster gets its release's default: the
/// guide's 1.20 on 20.04, a track that runs there on 22.04 and 24.04.
#[test]
fn a_cluster_without_a_channel_gets_its_releases_default() {
    for (release, want) in [
        ("20.04", "1.20/stable"),
        ("22.04", "1.35/stable"),
        ("24.04", "1.35/stable"),
    ] {
        let cluster = EXAMPLE
            .replace("release: \"20.04\"", &format!("release: \"{release}\""))
            .replace("  channel: 1.20/stable\n", "");
        assert!(!cluster.contains("channel:"));
        let s = Scratch::new(&cluster);
        let o = s.build(&[]);
        assert!(o.status.success(), "{release}: {}", text(&o).1);
        let cc = common::first_boot(&s.out(), "master");
        let script = cc["write_files"]
            .as_array()
            .expect("write_files")
            .iter()
            .find(|f| f["path"] == "/usr/local/sbin/microseed-microk8s")
            .expect("install script");
        assert!(
            script["content"]
                .as_str()
                .expect("content")
                .contains(&format!("channel='{want}'")),
            "{release}"
        );
    }
}

#[test]
fn latest_and_new_tracks_pass_on_every_release() {
    for release in ["20.04", "22.04", "24.04"] {
        for channel in ["latest/stable", "1.22/stable", "1.35/candidate"] {
            let s = Scratch::new(
                &EXAMPLE
                    .replace("release: \"20.04\"", &format!("release: \"{release}\""))
                    .replace("channel: 1.20/stable", &format!("channel: {channel}")),
            );
            let o = s.build(&[]);
            assert!(o.status.success(), "{release} {channel}: {}", text(&o).1);
        }
    }
}

#[test]
fn a_disk_path_the_installer_cannot_match_is_refused_with_the_form_to_use() {
    // Subiquity compares `path` with kernel names only: these would stop
    // the install with no disk found.
    for path in [
        "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
        "/dev/disk/by-path/pci-0000:00:17.0-ata-1",
        "/dev/mapper/root",
    ] {
        rejects(
            &[(
                "    ip: 172.20.10.12",
                &format!("    ip: 172.20.10.12\n    disk: {{path: {path}}}"),
            )],
            "machines[2].disk.path",
            52,
            "disk: {serial: ID_SERIAL}",
        );
    }
    rejects(
        &[(
            "    ip: 172.20.10.12",
            "    ip: 172.20.10.12\n    disk: {path: /dev/nvme0n1p2}",
        )],
        "machines[2].disk.path",
        52,
        "is a partition; the installer takes a whole disk: give the disk, such as /dev/nvme0n1",
    );
}

#[test]
fn a_by_id_disk_path_is_installed_by_the_serial_it_names() {
    let s = Scratch::new(&EXAMPLE.replacen(
        "    ip: 172.20.10.12",
        "    ip: 172.20.10.12\n    disk: {path: /dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0TESTSER}",
        1,
    ));
    let o = s.build(&["--machine", "worker-1"]);
    assert!(o.status.success(), "{}", common::text(&o).1);
    let ud = common::pyyaml(&s.out().join("worker-1/user-data"));
    let m = &ud["autoinstall"]["storage"]["layout"]["match"];
    assert_eq!(
        m["serial"], "*WDC_WD40EFRX-68N32N0_WD-WCC7K0TESTSER*",
        "{m}"
    );
    assert!(
        m.get("path").is_none(),
        "a by-id path reached subiquity: {m}"
    );
}

#[test]
fn a_city_as_timezone_suggests_its_zone() {
    rejects(
        &[("timezone: America/Los_Angeles", "timezone: Berlin")],
        "timezone",
        6,
        "did you mean \"Europe/Berlin\"?",
    );
}

#[test]
fn a_mac_with_dashes_is_read_as_the_same_address() {
    let s = Scratch::new(&EXAMPLE.replacen(
        "    ip: 172.20.10.12",
        "    ip: 172.20.10.12\n    mac: 52-54-00-AB-CD-EF",
        1,
    ));
    let o = s.build(&["--machine", "worker-1"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let net = common::pyyaml(&s.out().join("worker-1/network-config"));
    assert!(
        net.to_string()
            .contains("\"macaddress\":\"52:54:00:ab:cd:ef\""),
        "{net}"
    );
    rejects(
        &[(
            "    ip: 172.20.10.12",
            "    ip: 172.20.10.12\n    mac: 52-54-00:ab:cd:ef",
        )],
        "machines[2].mac",
        52,
        "expected a MAC address such as 52:54:00:12:34:56",
    );
}

#[test]
fn a_key_file_path_or_a_private_key_in_ssh_keys_says_what_it_is() {
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4iprHrsgDTACsXWdH9CDa1e2MUmmQoCg+Foc/tLLiL admin@example";
    rejects(
        &[(key, "~/.ssh/id_ed25519.pub")],
        "admin.ssh_keys[0]",
        23,
        "is a path to a key file, not a key: paste the line the file holds (`cat ~/.ssh/id_ed25519.pub`)",
    );
    let private = "\"-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ SECRETBODY -----END OPENSSH PRIVATE KEY-----\"";
    rejects(
        &[(key, private)],
        "admin.ssh_keys[0]",
        23,
        "this is a PRIVATE key (the value is not shown)",
    );
    let s = Scratch::new(&EXAMPLE.replacen(key, private, 1));
    let (_, err) = text(&s.build(&[]));
    assert!(
        !err.contains("SECRETBODY"),
        "the private key was echoed: {err}"
    );
}

#[test]
fn the_examples_key_is_warned_about_and_ones_own_is_not() {
    let o = common::bin()
        .arg("check")
        .arg(Scratch::example().cluster())
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(":23:7: warning: admin.ssh_keys[0]: this is the examples' key"),
        "{err}"
    );
    let o = common::bin()
        .arg("check")
        .arg(Scratch::new(&common::quiet_example()).cluster())
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert!(o.status.success() && !err.contains("warning"), "{err}");
}

#[test]
fn an_export_root_that_is_a_system_directory_or_holds_one_is_refused() {
    for (root, says) in [
        ("/etc", "\"/etc\" is a directory the system owns"),
        ("/usr", "\"/usr\" is a directory the system owns"),
        ("/proc", "\"/proc\" is a directory the system owns"),
        ("/var", "a top-level system directory"),
        ("/var/lib/prysm", "inside /var/lib, which the system owns"),
        ("/home/ubuntu", "the admin's home directory"),
        ("//etc/", "(that is /etc)"),
    ] {
        rejects(
            &[("export_root: /data", &format!("export_root: {root}"))],
            "nfs.export_root",
            34,
            says,
        );
    }
    // With data_volume, the message says what the volume would cover.
    rejects(
        &[
            ("export_root: /data", "export_root: /usr"),
            ("  uid: 1001", "  data_volume: true\n  uid: 1001"),
        ],
        "nfs.export_root",
        34,
        "data_volume would mount an empty volume over it",
    );
}

#[test]
fn a_data_directory_beside_the_system_ones_is_a_fine_export_root() {
    for root in ["/srv/nfs", "/var/nfs", "/mnt/data/prysm", "/home/eth"] {
        let s =
            Scratch::new(&EXAMPLE.replace("export_root: /data", &format!("export_root: {root}")));
        let o = s.build(&["--format", "dir"]);
        assert!(o.status.success(), "{root}: {}", text(&o).1);
    }
}

#[test]
fn localhost_and_all_digit_machine_names_are_refused() {
    rejects(
        &[("- name: worker-1", "- name: localhost")],
        "machines[2].name",
        49,
        "(/etc/hosts maps it to 127.0.0.1)",
    );
    rejects(
        &[("- name: worker-1", "- name: \"123\"")],
        "machines[2].name",
        49,
        "read as an IP address",
    );
}

#[test]
fn a_system_account_as_admin_username_is_refused() {
    for name in ["daemon", "nobody", "sshd", "microk8s", "sudo"] {
        rejects(
            &[("username: ubuntu", &format!("username: {name}"))],
            "admin.username",
            20,
            "a user or group the installed Ubuntu system already has",
        );
    }
}

#[test]
fn a_track_microk8s_never_had_is_refused() {
    rejects(
        &[("channel: 1.20/stable", "channel: 1.2/stable")],
        "microk8s.channel",
        30,
        "track 1.2 is not a MicroK8s track",
    );
    rejects(
        &[("channel: 1.20/stable", "channel: 2.20/stable")],
        "microk8s.channel",
        30,
        "track 2.20 is not a MicroK8s track",
    );
}

#[test]
fn a_locale_glibc_cannot_make_is_refused_with_the_nearest() {
    rejects(
        &[("locale: en_US.UTF-8", "locale: en_UK.UTF-8")],
        "locale",
        7,
        "is not a locale glibc can make",
    );
    for ok in ["de_DE.UTF-8", "C.UTF-8", "en_GB.utf8"] {
        let s = Scratch::new(&EXAMPLE.replace("locale: en_US.UTF-8", &format!("locale: {ok}")));
        let o = common::bin()
            .arg("check")
            .arg(s.cluster())
            .output()
            .expect("run");
        assert!(o.status.success(), "{ok}: {}", text(&o).1);
    }
}

#[test]
fn an_unknown_add_on_is_warned_about_with_the_nearest_name() {
    let s = Scratch::new(&EXAMPLE.replace(
        "addons: [dns, helm3]",
        "addons: [dns, helm4, metallb:10.0.0.1-10.0.0.9]",
    ));
    let o = common::bin()
        .arg("check")
        .arg(s.cluster())
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert!(o.status.success(), "a warning, not an error: {err}");
    let file = s.cluster().display().to_string();
    assert!(
        err.contains(&format!(
            "{file}:31:17: warning: microk8s.addons[1]: \"helm4\" is no MicroK8s add-on"
        )),
        "{err}"
    );
    assert!(err.contains("did you mean \"helm\""), "{err}");
    assert!(!err.contains("metallb"), "metallb is an add-on: {err}");
}

#[test]
fn a_refresh_window_snapd_would_not_read_or_too_short_for_the_cluster_is_refused_at_its_place() {
    // After `staking:` (lines 39-40), `maintenance:` is line 41, the window 42.
    let window = |w: &str| {
        (
            "staking:\n  enabled: false\n",
            format!("staking:\n  enabled: false\nmaintenance:\n  refresh_window: \"{w}\"\n"),
        )
    };
    let (from, to) = window("saturday,02:00-06:00");
    rejects(
        &[(from, &to)],
        "maintenance.refresh_window",
        42,
        "\"saturday\" is not a weekday; expected weekdays and a span within the day, such as \"sat,02:00-06:00\"",
    );
    let (from, to) = window("sat,23:00-01:00");
    rejects(
        &[(from, &to)],
        "maintenance.refresh_window",
        42,
        "must end after it starts on the same day",
    );
    let (from, to) = window("sat,02:00-02:20");
    rejects(
        &[(from, &to)],
        "maintenance.refresh_window",
        42,
        "too short for 3 machines: each gets its own slot of at least 10 minutes",
    );
}

#[test]
fn every_misspelt_key_is_reported_in_one_run() {
    let cluster = EXAMPLE
        .replacen(
            "timezone: America/Los_Angeles",
            "timezon: America/Los_Angeles",
            1,
        )
        .replacen("  gateway: 172.20.0.1", "  gatway: 172.20.0.1", 1)
        .replacen(
            "  - name: nfs\n    role: nfs\n",
            "  - name: nfs\n    rol: nfs\n",
            1,
        )
        .replacen(
            "    ip: 172.20.10.12\n",
            "    ip: 172.20.10.12\n    macc: 52:54:00:00:00:01\n",
            1,
        );
    let s = Scratch::new(&cluster);
    let o = s.build(&[]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let file = s.cluster().display().to_string();
    for (at, field, meant) in [
        ("6:1", "timezon", "timezone"),
        ("13:3", "network.gatway", "gateway"),
        ("44:5", "machines[0].rol", "role"),
        ("52:5", "machines[2].macc", "mac"),
    ] {
        let want = format!("{file}:{at}: error: {field}: unknown key");
        assert!(err.contains(&want), "no {want:?} in: {err}");
        assert!(err.contains(&format!("did you mean `{meant}`?")), "{err}");
    }
    assert!(err.contains("4 errors; nothing was written"), "{err}");
    assert!(!s.out().exists());
}

#[test]
fn a_track_too_old_for_the_release_is_refused_in_two_short_lines_pointing_to_the_docs() {
    let s = Scratch::new(&EXAMPLE.replacen("release: \"20.04\"", "release: \"22.04\"", 1));
    let o = common::bin()
        .arg("check")
        .arg(s.cluster())
        .output()
        .expect("run");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains("error: microk8s.channel"))
        .expect("the channel's error");
    assert!(line.contains("docs/releases.md"), "{line}");
    assert!(
        !line.contains("66df7516"),
        "commit hashes belong in the docs: {line}"
    );
    assert!(
        line.chars().count() <= 300,
        "{} characters: {line}",
        line.chars().count()
    );
    assert!(common::root().join("docs/releases.md").is_file());
}

#[test]
fn an_nfs_data_disk_by_kernel_name_or_beside_a_largest_root_disk_is_refused_at_its_place() {
    let data = |d: &str| ("  gid: 2000\n", format!("  gid: 2000\n  data_disk: {d}\n"));
    let (from, to) = data("{path: /dev/sdb}");
    rejects(
        &[
            (from, &to),
            (
                "    ip: 172.20.10.10",
                "    ip: 172.20.10.10\n    disk: {serial: S4EWNX0N123456}",
            ),
        ],
        "nfs.data_disk.path",
        38,
        "\"/dev/sdb\" is a kernel name, which may name another disk after a reboot",
    );
    // The NFS server's root disk left to `largest`, the default.
    let (from, to) = data("{path: /dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0TESTSER}");
    rejects(
        &[(from, &to)],
        "nfs.data_disk",
        38,
        "installs onto its largest disk (`disk` not given, or `largest`), which may be the data disk",
    );
}
