//! The VM labs (examples/vm-lab*) that scripts/test.sh boots in the VM
//! acceptance run: they build for the cloud-image target, and the
//! acceptance's own seed reader (scripts/lib/seedinfo.py, PyYAML as
//! cloud-init) finds in them what its checks compare the VM against, so a
//! `--quick` run still catches a lab that no longer matches its checks.

use crate::common;

use common::{Scratch, pyyaml, root, run, text};

const LAB_2004: &str = include_str!("../examples/vm-lab/cluster.yaml");
const LAB_2404: &str = include_str!("../examples/vm-lab-24.04/cluster.yaml");

/// seedinfo.py's assignments for one machine's seed directory.
fn seedinfo(dir: &std::path::Path) -> String {
    let script = root().join("scripts/lib/seedinfo.py");
    let o = run(
        "python3",
        &[
            script.to_str().expect("utf-8 path"),
            dir.to_str().expect("utf-8 path"),
        ],
    );
    assert!(o.status.success(), "seedinfo.py failed: {}", text(&o).1);
    text(&o).0
}

/// The body of a cloud-config's write_files entry at `path`.
fn written(cloud_config: &serde_json::Value, path: &str) -> String {
    cloud_config["write_files"]
        .as_array()
        .expect("write_files list")
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no write_files entry {path}"))["content"]
        .as_str()
        .expect("content")
        .to_owned()
}

fn lab_master(cluster: &str) -> (Scratch, String, serde_json::Value) {
    let s = Scratch::new(cluster);
    let o = s.build(&["--target", "cloud-image", "--format", "dir,seed-img"]);
    assert!(o.status.success(), "build failed: {}", text(&o).1);
    let master = s.out().join("master");
    assert!(master.join("seed.img").is_file(), "no master/seed.img");
    let info = seedinfo(&master);
    let ud = pyyaml(&master.join("user-data"));
    (s, info, ud)
}

#[test]
fn the_24_04_lab_moves_ssh_to_2222_on_the_release_default_channel() {
    let (_s, info, ud) = lab_master(LAB_2404);
    // acceptance-24.04.sh expects the socket on the seed's port.
    assert!(info.contains("SEED_SSH_PORT=2222\n"), "{info}");
    assert!(info.contains("SEED_MACS=52:54:00:18:18:0b\n"), "{info}");
    assert!(info.contains("SEED_ADDRS=172.20.10.11/20\n"), "{info}");
    assert!(written(&ud, "/etc/microseed/sshd.conf").contains("\nPort 2222\n"));
    // No microk8s.channel in the lab: 24.04's default applies (1.27+, so the
    // master checks the launch configuration).
    assert!(
        written(&ud, "/usr/local/sbin/microseed-microk8s").contains("channel='1.35/stable'"),
        "the 24.04 lab does not install 1.35/stable"
    );
    assert!(
        written(&ud, "/etc/microk8s.yaml").contains("persistentClusterToken: "),
        "no launch configuration"
    );
    assert!(
        written(&ud, "/usr/local/sbin/microseed-ssh").contains("systemctl restart ssh.socket"),
        "the 24.04 lab's microseed-ssh does not move the socket"
    );
}

#[test]
fn the_20_04_lab_keeps_ssh_on_22_and_the_guides_channel() {
    let (_s, info, ud) = lab_master(LAB_2004);
    assert!(info.contains("SEED_SSH_PORT=22\n"), "{info}");
    assert!(
        written(&ud, "/usr/local/sbin/microseed-microk8s").contains("channel='1.20/stable'"),
        "the 20.04 lab does not install 1.20/stable"
    );
    assert!(
        !written(&ud, "/usr/local/sbin/microseed-ssh").contains("ssh.socket"),
        "the 20.04 lab's microseed-ssh touches ssh.socket"
    );
}

/// The HA VM run's stand-in cluster agent (scripts/vm/vm-cluster-agent.py
/// with microseed.test.ha, what scripts/ha-vm.sh boots) models upstream
/// over the network as the peers mode of the stand-in microk8s does over a
/// shared directory (tests/ha.rs): run here, three agents side by side in
/// a network namespace, each node's files its own. The token is judged by
/// the contacted node's own files; a master's join answers with the member
/// list and every member stores it; a second change while one is in
/// flight is refused; a member's address is refused "already known to
/// dqlite"; the joiner's side (`joined`) writes the members and reissues
/// its agent certificate; a worker's join adds its node on every member.
#[test]
fn the_vm_cluster_agent_joins_masters_one_change_at_a_time_over_the_network() {
    let s = tempfile::tempdir().expect("tempdir");
    let agent = root().join("scripts/vm/vm-cluster-agent.py");
    let fake = root().join("tests/fixtures/fakes/microk8s");
    let script = r#"
set -u
dir=$1 agent=$2 fake=$3
T=TestTokenForGoldenFiles0123456789abcdefABCDEF
ip link set lo up
for i in 1 2 3 4; do
    ip addr add 192.0.2.$i/32 dev lo
    d=$dir/n$i
    mkdir -p "$d/data/credentials" "$d/data/var/kubernetes/backend" "$d/data/certs" "$d/conf"
    printf -- '- Address: 127.0.0.1:19001\n  ID: 1\n  Role: 0\n' >"$d/data/var/kubernetes/backend/cluster.yaml"
    echo 1.35/stable >"$d/conf/channel"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=t \
        -keyout "$d/data/certs/server.key" -out "$d/data/certs/server.crt" 2>/dev/null
done
# n2 registers no token yet: its own files decide.
for i in 1 3; do echo "$T|9999999999" >"$dir/n$i/data/credentials/cluster-tokens.txt"; done
env_of() {
    echo FAKE_CLUSTER_AGENT_HA=1 FAKE_CLUSTER_AGENT_ADDR=192.0.2.$1 FAKE_MICROK8S_DATA=$dir/n$1/data \
        FAKE_MICROK8S_CONF=$dir/n$1/conf FAKE_CLUSTER_AGENT_LOG=$dir/n$1/agent.log \
        FAKE_MICROK8S_LOG=$dir/n$1/calls FAKE_MICROK8S_BIN=$fake
}
for i in 1 2 3; do
    env $(env_of $i) python3 -B "$agent" 2>"$dir/n$i/agent.err" &
done
for i in 1 2 3; do
    for _ in $(seq 600); do
        (echo >/dev/tcp/192.0.2.$i/25000) 2>/dev/null && (echo >/dev/tcp/192.0.2.$i/19001) 2>/dev/null && break
        sleep 0.05
    done
done
fp() { openssl x509 -outform der -in "$dir/n$1/data/certs/server.crt" | sha256sum | cut -c1-16; }
# join TAG JOINER VIA WORKER: prints "TAG CODE BODY"; the answer in $dir/ans-TAG.
join() {
    python3 - "$@" "$dir" <<'PY'
import json, ssl, sys, http.client
tag, j, v, w, d = sys.argv[1:6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
c = http.client.HTTPSConnection("192.0.2." + v, 25000, context=ctx, timeout=30, source_address=("192.0.2." + j, 0))
c.request("POST", "/cluster/api/v1.0/join", json.dumps({"token": "TestTokenForGoldenFiles0123456789abcdefABCDEF", "hostname": "n" + j, "worker": w == "1"}))
r = c.getresponse()
b = r.read()
open(d + "/ans-" + tag, "wb").write(b)
print(tag, r.status, b.decode())
PY
}
joined() { env $(env_of "$1") python3 -B "$agent" joined "$dir/ans-$2"; }
members() { sed -n 's/^- Address: //p' "$dir/n$1/data/var/kubernetes/backend/cluster.yaml" | tr '\n' ' '; echo; }
join notoken 3 2 0
before=$(fp 2)
join m2 2 1 0 && joined 2 m2
[ "$(fp 2)" != "$before" ] && echo "m2 certificate reissued"
echo "$T|9999999999" >"$dir/n2/data/credentials/cluster-tokens.txt"
echo 5 >"$dir/n1/conf/join-change-secs"
echo 5 >"$dir/n2/conf/join-change-secs"
join m3 3 2 0 >"$dir/m3.out" &
# The second change is sent while the first holds every member.
for _ in $(seq 600); do
    [ -d "$dir/n1/data/var/kubernetes/backend/.membership-change" ] && break
    sleep 0.05
done
join busy 4 1 0
wait $!
cat "$dir/m3.out"
joined 3 m3
join again 3 1 0
join w4 4 1 1
for i in 1 2 3; do echo "members n$i: $(members $i)"; echo "nodes n$i: $(sort "$dir/n$i/data/fake-nodes" | tr '\n' ' ')"; done
grep -c 'Role: 0' "$dir/n1/data/var/kubernetes/backend/cluster.yaml" | sed 's/^/voters n1: /'
cat "$dir"/n*/agent.err >&2
"#;
    let o = common::unshare(&[
        "--net",
        "--pid",
        "--mount-proc",
        "--fork",
        "--kill-child",
        "--",
        "bash",
        "-c",
        script,
        "agent",
    ])
    .arg(s.path())
    .arg(&agent)
    .arg(&fake)
    .output()
    .expect("unshare");
    let (out, err) = text(&o);
    let all = format!("{out}\n{err}");
    assert!(o.status.success(), "{all}");
    assert!(
        out.contains("notoken 500 {\"error\": \"Invalid token\"}"),
        "{all}"
    );
    assert!(
        out.contains("m2 200 {\"members\": [\"192.0.2.1:19001\", \"192.0.2.2:19001\"]"),
        "{all}"
    );
    assert!(out.contains("m2 certificate reissued"), "{all}");
    assert!(
        out.contains("busy 503 {\"error\": \"a membership change is in progress, try again\"}"),
        "{all}"
    );
    assert!(
        out.contains(
            "m3 200 {\"members\": [\"192.0.2.1:19001\", \"192.0.2.2:19001\", \"192.0.2.3:19001\"]"
        ),
        "{all}"
    );
    assert!(
        out.contains("again 504 {\"error\": \"Node 192.0.2.3:19001 already known to dqlite\"}"),
        "{all}"
    );
    assert!(out.contains("w4 200 "), "{all}");
    for n in 1..=3 {
        assert!(
            out.contains(&format!(
                "members n{n}: 192.0.2.1:19001 192.0.2.2:19001 192.0.2.3:19001 \n"
            )),
            "n{n}: {all}"
        );
        // The worker's node is on every member.
        let nodes = out
            .lines()
            .find(|l| l.starts_with(&format!("nodes n{n}: ")))
            .unwrap_or_default();
        assert!(nodes.contains("n4"), "n{n}: {all}");
        assert!(nodes.contains("n2") && nodes.contains("n3"), "n{n}: {all}");
    }
    assert!(out.contains("voters n1: 3"), "{all}");
}
