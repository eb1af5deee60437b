//! The build's output as files: golden documents for the example, byte-for-
//! byte determinism, atomic replacement, permissions, the manifest, and what
//! PyYAML and subiquity's schema make of the documents.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{EXAMPLE, Scratch, bin, pyyaml, root, run, text, tree};

const MACHINES: [&str; 3] = ["nfs", "master", "worker-1"];
const DOCS: [&str; 3] = ["user-data", "meta-data", "network-config"];

fn build_ok(s: &Scratch, extra: &[&str]) {
    let o = s.build(extra);
    assert!(o.status.success(), "build failed: {}", text(&o).1);
}

/// The example cluster of each release beside 20.04's (examples/).
const EXAMPLE_2204: &str = include_str!("../examples/eth2-staking-22.04/cluster.yaml");
const EXAMPLE_2404: &str = include_str!("../examples/eth2-staking-24.04/cluster.yaml");

#[test]
fn example_documents_match_golden_files() {
    golden_check(&Scratch::example(), "eth2-staking");
}

#[test]
fn release_examples_match_their_golden_files() {
    golden_check(&Scratch::new(EXAMPLE_2204), "eth2-staking-22.04");
    golden_check(&Scratch::new(EXAMPLE_2404), "eth2-staking-24.04");
}

/// The staking example: the master's seed carries the staking stack's
/// objects, so a change to any rendered flag or object shows here.
#[test]
fn staking_example_matches_its_golden_files() {
    golden_check(
        &Scratch::new(include_str!("../examples/staking-hoodi/cluster.yaml")),
        "staking-hoodi",
    );
}

fn golden_check(s: &Scratch, name: &str) {
    build_ok(s, &[]);
    let golden = root().join("tests/golden").join(name);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for m in MACHINES {
        for d in DOCS {
            let got = std::fs::read_to_string(s.out().join(m).join(d)).expect("read output");
            let g = golden.join(m).join(d);
            if update {
                std::fs::create_dir_all(g.parent().expect("parent")).expect("mkdir");
                std::fs::write(&g, &got).expect("write golden");
                continue;
            }
            let want = std::fs::read_to_string(&g).unwrap_or_else(|_| {
                panic!(
                    "missing golden {}; run with UPDATE_GOLDEN=1 and review",
                    g.display()
                )
            });
            assert_eq!(
                got, want,
                "{name}: {m}/{d} differs from golden (UPDATE_GOLDEN=1 to accept after review)"
            );
        }
    }
}

#[test]
fn two_builds_are_byte_identical() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let first = tree(&s.out());
    build_ok(&s, &[]);
    assert_eq!(first, tree(&s.out()));
    let other = Scratch::example();
    build_ok(&other, &[]);
    assert_eq!(
        first,
        tree(&other.out()),
        "a second checkout built different bytes"
    );
}

#[test]
fn output_is_owner_only() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&s.out()), 0o700);
    for m in MACHINES {
        assert_eq!(mode(&s.out().join(m)), 0o700);
        for d in DOCS {
            assert_eq!(mode(&s.out().join(m).join(d)), 0o600, "{m}/{d}");
        }
    }
}

#[test]
fn manifest_is_checked_by_sha256sum() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let o = std::process::Command::new("sha256sum")
        .args(["-c", "--strict", "SHA256SUMS"])
        .current_dir(s.out())
        .output()
        .expect("sha256sum");
    assert!(o.status.success(), "{}", text(&o).0);
    let listed = std::fs::read_to_string(s.out().join("SHA256SUMS")).expect("manifest");
    assert_eq!(
        listed.lines().count(),
        12,
        "3 machines x (3 documents + seed.img)"
    );
    assert!(listed.contains("  worker-1/user-data\n"));
    assert!(listed.contains("  worker-1/seed.img\n"));
}

#[test]
fn machine_flag_builds_a_subset() {
    let s = Scratch::example();
    build_ok(&s, &["--machine", "worker-1"]);
    assert!(s.out().join("worker-1/user-data").exists());
    assert!(!s.out().join("master").exists());
    let o = s.build(&["--machine", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no machine named \"nope\""));
}

#[test]
fn build_creates_missing_secrets_with_mode_0600() {
    let s = Scratch::example();
    std::fs::remove_file(s.dir.path().join("secrets.yaml")).expect("rm");
    let o = s.build(&[]);
    assert!(o.status.success());
    assert!(text(&o).1.contains("created"));
    let p = s.dir.path().join("secrets.yaml");
    assert_eq!(
        std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    let token = std::fs::read_to_string(&p).expect("read");
    let t = token
        .lines()
        .find_map(|l| l.strip_prefix("join_token: "))
        .expect("token line");
    assert!(
        t.len() >= 32 && t.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{t}"
    );
    // The next build reuses it: same bytes.
    let first = tree(&s.out());
    build_ok(&s, &[]);
    assert_eq!(first, tree(&s.out()));
}

#[test]
fn render_prints_exactly_the_built_document() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    for d in DOCS {
        let o = bin()
            .args(["render"])
            .arg(s.cluster())
            .args(["master", d])
            .output()
            .expect("run");
        assert!(o.status.success());
        assert_eq!(
            o.stdout,
            std::fs::read(s.out().join("master").join(d)).expect("read"),
            "{d}"
        );
    }
}

#[test]
fn failed_build_leaves_previous_output_untouched() {
    // A real mid-write failure: the output sits on a tiny tmpfs (in a private
    // mount namespace) and the second build, with a bloated template, runs
    // out of space while writing.
    let s = Scratch::example();
    let big = s.dir.path().join("templates");
    std::fs::create_dir_all(&big).expect("mkdir");
    let pad = "# padding\n".repeat(6000);
    let hosts = std::fs::read_to_string(root().join("cloud-init/hosts.tera")).expect("hosts");
    std::fs::write(big.join("hosts.tera"), format!("{hosts}{pad}")).expect("write");
    let script = r#"set -e
mnt="$1"; bin="$2"; cluster="$3"; tpl="$4"
mount -t tmpfs -o size=256k tmpfs "$mnt"
"$bin" build "$cluster" -o "$mnt/out" --format dir >/dev/null
(cd "$mnt/out" && find . -type f | sort | xargs sha256sum) > "$mnt/../before"
if "$bin" --templates "$tpl" build "$cluster" -o "$mnt/out" --format dir 2>"$mnt/../err"; then echo "second build unexpectedly succeeded"; exit 1; fi
(cd "$mnt/out" && find . -type f | sort | xargs sha256sum) > "$mnt/../after"
ls -A "$mnt" > "$mnt/../listing"
"#;
    let mnt = s.dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let o = common::in_mount_namespace(
        script,
        &[
            mnt.to_str().expect("utf8"),
            env!("CARGO_BIN_EXE_microseed"),
            s.cluster().to_str().expect("utf8"),
            big.to_str().expect("utf8"),
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let before = std::fs::read_to_string(s.dir.path().join("before")).expect("before");
    let after = std::fs::read_to_string(s.dir.path().join("after")).expect("after");
    let err = std::fs::read_to_string(s.dir.path().join("err")).expect("err");
    assert!(
        err.contains("No space left"),
        "the failure was not the disk filling: {err}"
    );
    assert_eq!(before.lines().count(), 10);
    assert_eq!(before, after, "previous output changed");
    // The lock file (empty) stays; no staging tree may.
    let listing = std::fs::read_to_string(s.dir.path().join("listing")).expect("listing");
    assert_eq!(
        listing.split_whitespace().collect::<Vec<_>>(),
        [".out.lock", "out"],
        "staging directory left behind: {listing}"
    );
}

/// What the documents mean, as PyYAML (cloud-init's parser) reads them,
/// compared with what microseed meant (its own structs as JSON).
#[test]
fn documents_read_back_by_pyyaml_as_meant() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let loaded = microseed::build::load(
        &s.cluster(),
        &Default::default(),
        microseed::build::MissingSecrets::Require,
    )
    .expect("load");
    let secrets = loaded.secrets.clone().expect("secrets");
    let mut planner =
        microseed::plan::Planner::new(&loaded.cluster, &loaded.profiles, &secrets, None)
            .expect("planner");
    for m in &loaded.cluster.machines {
        let plan = planner.plan(m).expect("plan");
        let meant_cc =
            serde_json::to_value(microseed::documents::cloud_config(&loaded.cluster, &plan))
                .expect("json");
        let meant_net = serde_json::to_value(microseed::documents::netplan(&loaded.cluster, &plan))
            .expect("json");
        let ud = pyyaml(&s.out().join(&m.name).join("user-data"));
        assert_eq!(
            ud["autoinstall"]["user-data"], meant_cc,
            "{}: first-boot config",
            m.name
        );
        assert_eq!(
            ud["autoinstall"]["network"]["network"], meant_net,
            "{}: installer network",
            m.name
        );
        assert_eq!(ud["autoinstall"]["version"], 1);
        assert_eq!(
            pyyaml(&s.out().join(&m.name).join("network-config")),
            meant_net
        );
        let md = pyyaml(&s.out().join(&m.name).join("meta-data"));
        assert_eq!(md["local-hostname"], m.name.as_str());
        assert!(
            md["instance-id"]
                .as_str()
                .expect("id")
                .starts_with(&format!("microseed-{}-", m.name))
        );
        let raw = std::fs::read_to_string(s.out().join(&m.name).join("user-data")).expect("read");
        assert!(raw.starts_with("#cloud-config\n"));
    }
}

/// Each release's seeds against the schema of that release's installer
/// (subiquity at the matching revision; tests/fixtures/subiquity/README.md):
/// the example of each release and the variant seeds (22.04, disk by serial,
/// glob and path, NIC by MAC and by name, the NFS data volume), late-commands
/// included. Every top-level key must also be one the schema names: a
/// version-1 autoinstall with an unknown key is accepted, the key dropped
/// with only a log line (subiquity on noble, `_enforce_top_level_keys`).
#[test]
fn autoinstall_is_valid_against_each_releases_subiquity_schema() {
    let fixtures = root().join("tests/fixtures/subiquity");
    let seeds = [
        (Scratch::example(), "20.04", "autoinstall-schema.json"),
        (
            Scratch::new(EXAMPLE_2204),
            "22.04",
            "autoinstall-schema-22.04.json",
        ),
        (
            Scratch::new(include_str!("fixtures/subiquity/variants.yaml")),
            "22.04",
            "autoinstall-schema-22.04.json",
        ),
        (
            Scratch::new(EXAMPLE_2404),
            "24.04",
            "autoinstall-schema-24.04.json",
        ),
    ];
    for (s, release, schema) in &seeds {
        build_ok(s, &[]);
        assert!(
            std::fs::read_to_string(s.cluster())
                .expect("cluster")
                .contains(&format!("release: \"{release}\"")),
            "{schema} is for {release}"
        );
        // A copy kept in the project (source, revision and licence beside
        // it), so a clone alone runs this test.
        let schema = fixtures.join(schema);
        for m in MACHINES {
            let o = run(
                "python3",
                &[
                    "-c",
                    "import sys, json, yaml, jsonschema\n\
                     schema = json.load(open(sys.argv[1]))\n\
                     doc = yaml.safe_load(open(sys.argv[2]))['autoinstall']\n\
                     errs = list(jsonschema.Draft7Validator(schema).iter_errors(doc))\n\
                     [print(list(e.path), e.message) for e in errs]\n\
                     unknown = sorted(set(doc) - set(schema['properties']))\n\
                     unknown and print('top-level keys the installer drops:', unknown)\n\
                     sys.exit(1 if errs or unknown else 0)",
                    schema.to_str().expect("utf8"),
                    s.out().join(m).join("user-data").to_str().expect("utf8"),
                ],
            );
            assert!(o.status.success(), "{release} {m}: {:?}", text(&o));
        }
    }
}

/// 20.04's installer needs the doubled `network: {network: ...}`; 22.04 and
/// 24.04 get the documented single form, which their schemas describe.
#[test]
fn autoinstall_network_takes_the_form_of_each_release() {
    for (cluster, nested) in [
        (EXAMPLE, true),
        (EXAMPLE_2204, false),
        (EXAMPLE_2404, false),
    ] {
        let s = Scratch::new(cluster);
        build_ok(&s, &[]);
        let doc = pyyaml(&s.out().join("master/user-data"));
        let net = &doc["autoinstall"]["network"];
        let inner = if nested { &net["network"] } else { net };
        assert_eq!(inner["version"], 2, "{net}");
        assert_eq!(
            inner["ethernets"]["lan0"]["addresses"][0], "172.20.10.11/20",
            "{net}"
        );
        assert_eq!(net.get("version").is_none(), nested, "{net}");
    }
}

#[test]
fn instance_id_changes_with_content_and_only_then() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let id = |s: &Scratch, m: &str| {
        std::fs::read_to_string(s.out().join(m).join("meta-data")).expect("read")
    };
    let before = id(&s, "worker-1");
    build_ok(&s, &[]);
    assert_eq!(before, id(&s, "worker-1"));
    let changed = Scratch::new(&common::EXAMPLE.replace("ntp.ubuntu.com", "pool.ntp.org"));
    build_ok(&changed, &[]);
    assert_ne!(before, id(&changed, "worker-1"));
}

#[test]
fn a_machine_subset_build_says_which_machines_it_drops_from_the_output() {
    let s = Scratch::example();
    build_ok(&s, &[]);
    let o = s.build(&["--machine", "worker-1"]);
    let (_, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "warning: {} held nfs, master, which this build (--machine worker-1) does not: \
             their seeds are no longer in it",
            s.out().display()
        )),
        "{err}"
    );
    assert!(!s.out().join("master").exists());
    // The same subset again drops nothing, and says nothing of it.
    let o = s.build(&["--machine", "worker-1"]);
    assert!(o.status.success());
    assert!(!text(&o).1.contains("no longer in it"), "{}", text(&o).1);
}
