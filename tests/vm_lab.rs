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
