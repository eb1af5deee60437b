//! Times `seed_image` over 1,000 distinct seeds, the scale of the cluster
//! benchmark, and optionally writes one image for inspection.
//!
//! `cargo run --release --example seed_image_bench [OUT.img]`

use std::time::Instant;

use anyhow::Context as _;
use microseed::image::{DEFAULT_EPOCH, seed_image, write_seed_image};

const USER_DATA: &str = "#cloud-config\nhostname: worker-1\nusers:\n  - name: admin\n    groups: [sudo, microk8s]\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1bmNoIG9mIGJ5dGVzIGZvciBhIHRlc3Qga2V5 admin@example\nruncmd:\n  - [snap, install, microk8s, --classic, --channel=1.20/stable]\n";
const NETWORK_CONFIG: &str = "version: 2\nethernets:\n  nic1:\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n    set-name: nic1\n    addresses: [172.20.10.12/20]\n    gateway4: 172.20.0.1\n    nameservers:\n      addresses: [8.8.8.8, 8.8.4.4]\n";

fn main() -> anyhow::Result<()> {
    const N: usize = 1_000;
    let metas: Vec<String> = (0..N)
        .map(|i| format!("instance-id: node-{i}\nlocal-hostname: worker-{i}\n"))
        .collect();
    let start = Instant::now();
    let mut bytes = 0usize;
    for meta in &metas {
        let files: [(&str, &[u8]); 3] = [
            ("user-data", USER_DATA.as_bytes()),
            ("meta-data", meta.as_bytes()),
            ("network-config", NETWORK_CONFIG.as_bytes()),
        ];
        bytes += seed_image(&files, DEFAULT_EPOCH)?.len();
    }
    let elapsed = start.elapsed();
    println!(
        "{N} seed images in {:.3} s: {:.1} us per image, {} bytes each",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / N as f64,
        bytes / N
    );
    if let Some(out) = std::env::args_os().nth(1) {
        let files: [(&str, &[u8]); 3] = [
            ("user-data", USER_DATA.as_bytes()),
            ("meta-data", metas[1].as_bytes()),
            ("network-config", NETWORK_CONFIG.as_bytes()),
        ];
        let start = Instant::now();
        write_seed_image(out.as_ref(), &files, DEFAULT_EPOCH)
            .context("writing the sample image")?;
        println!("wrote {} in {:?}", out.to_string_lossy(), start.elapsed());
    }
    Ok(())
}
