//! `microseed flash` against real loop devices (losetup, so root): the bytes
//! go to a real block device and are checked with `sha256sum` of the device.
//! Loop devices are fixed disks in sysfs, so a fake sysfs/procfs tree
//! (`MICROSEED_FLASH_SYSROOT`) says which is removable, mounted or the
//! system disk; the real mount tables are checked too, which one test pins.

use crate::common;
use crate::iso_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Scratch, bin, run, text};
use iso_common::{Fixture, fixture};

const MIB: u64 = 1 << 20;

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "the flash tests attach loop devices (losetup) and need root; run as root (CI does)"
    );
}

/// A loop device over a sparse file, detached on drop.
struct Loop {
    dev: PathBuf,
    _dir: tempfile::TempDir,
}

impl Loop {
    fn new(size: u64) -> Loop {
        require_root();
        // tmpfs when there is one: the tests measure microseed, not the disk.
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let dir = tempfile::tempdir_in(base).expect("tempdir");
        let file = dir.path().join("backing");
        fs::File::create(&file)
            .and_then(|f| f.set_len(size))
            .expect("backing file");
        let o = run(
            "losetup",
            &["--find", "--show", file.to_str().expect("utf8")],
        );
        assert!(o.status.success(), "losetup: {}", text(&o).1);
        let dev = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        Loop { dev, _dir: dir }
    }
    fn name(&self) -> String {
        self.dev
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned()
    }
    fn path(&self) -> &str {
        self.dev.to_str().expect("utf8")
    }
    /// `MAJOR:MINOR` from the real sysfs.
    fn numbers(&self) -> String {
        fs::read_to_string(format!("/sys/class/block/{}/dev", self.name()))
            .expect("sysfs dev")
            .trim()
            .to_string()
    }
    fn sha256(&self) -> String {
        let o = run("sha256sum", &[self.path()]);
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .next()
            .expect("digest")
            .to_string()
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

/// How the fake tree presents a disk.
struct Disk<'a> {
    lo: &'a Loop,
    removable: bool,
    size: u64,
}

/// A fake `/sys` and `/proc` describing the given disks, with these extra
/// mountinfo lines and swap files.
struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    /// One removable disk backed by `lo`, nothing mounted, no swap.
    fn removable(lo: &Loop, size: u64) -> Fake {
        Fake::new(
            &[Disk {
                lo,
                removable: true,
                size,
            }],
            &[],
            &[],
        )
    }

    fn new(disks: &[Disk], mounts: &[String], swaps: &[String]) -> Fake {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        fs::create_dir_all(r.join("sys/class/block")).expect("mkdir");
        fs::create_dir_all(r.join("proc/self")).expect("mkdir");
        for d in disks {
            let name = d.lo.name();
            let b = r.join("sys/block").join(&name);
            fs::create_dir_all(b.join("device")).expect("mkdir");
            fs::write(b.join("dev"), format!("{}\n", d.lo.numbers())).expect("write");
            fs::write(b.join("size"), format!("{}\n", d.size / 512)).expect("write");
            fs::write(b.join("removable"), if d.removable { "1\n" } else { "0\n" }).expect("write");
            fs::write(b.join("ro"), "0\n").expect("write");
            fs::write(b.join("device/vendor"), "ACME    \n").expect("write");
            fs::write(b.join("device/model"), "Test Stick\n").expect("write");
            fs::write(b.join("device/serial"), format!("SN-{name}\n")).expect("write");
            std::os::unix::fs::symlink(
                format!("../../block/{name}"),
                r.join("sys/class/block").join(&name),
            )
            .expect("symlink");
        }
        let mut mi = String::from("21 1 0:20 / /proc rw,nosuid - proc proc rw\n");
        for m in mounts {
            mi.push_str(m);
            mi.push('\n');
        }
        fs::write(r.join("proc/self/mountinfo"), mi).expect("write");
        let mut sw = String::from("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
        for s in swaps {
            sw.push_str(&format!("{s}\t\t\t\tpartition\t1048572\t\t0\t\t-2\n"));
        }
        fs::write(r.join("proc/swaps"), sw).expect("write");
        Fake { dir }
    }

    /// Presents `part` as the first partition of `disk` (this kernel does
    /// not scan partitions on loop devices, so a second loop stands in).
    fn add_partition(&self, disk: &Loop, part: &Loop) {
        let p = self
            .dir
            .path()
            .join("sys/block")
            .join(disk.name())
            .join(part.name());
        fs::create_dir_all(&p).expect("mkdir");
        fs::write(p.join("dev"), format!("{}\n", part.numbers())).expect("write");
        fs::write(p.join("partition"), "1\n").expect("write");
        fs::write(p.join("size"), "2048\n").expect("write");
        std::os::unix::fs::symlink(
            format!("../../block/{}/{}", disk.name(), part.name()),
            self.dir.path().join("sys/class/block").join(part.name()),
        )
        .expect("symlink");
    }

    fn flash(&self, args: &[&str]) -> Output {
        bin()
            .arg("flash")
            .args(args)
            .env("MICROSEED_FLASH_SYSROOT", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run microseed")
    }
}

fn mount_line(lo: &Loop, numbers: &str, mountpoint: &str) -> String {
    format!(
        "40 1 {numbers} / {mountpoint} rw,relatime - ext4 {} rw",
        lo.path()
    )
}

/// An output tree holding `installer.img` (the cluster stick) of `size`
/// random bytes, listed in SHA256SUMS by sha256sum itself; returns OUT.
fn synthetic_out(size: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("out");
    fs::create_dir_all(m.join("worker-1")).expect("mkdir");
    let mut bytes = vec![0u8; size as usize];
    getrandom::fill(&mut bytes).expect("random");
    fs::write(m.join("installer.img"), &bytes).expect("write");
    let o = Command::new("sha256sum")
        .arg("installer.img")
        .current_dir(&m)
        .output()
        .expect("sha256sum");
    assert!(o.status.success());
    fs::write(m.join("SHA256SUMS"), &o.stdout).expect("write");
    (dir, m)
}

fn manifest_digest(out: &Path, key: &str) -> String {
    let text = fs::read_to_string(out.join("SHA256SUMS")).expect("manifest");
    text.lines()
        .find(|l| l.ends_with(&format!("  {key}")))
        .and_then(|l| l.split_whitespace().next())
        .expect("manifest line")
        .to_string()
}

/// Runs a flash expected to be refused: exit 1, the message on stderr,
/// nothing on the device.
fn assert_refused(fake: &Fake, lo: &Loop, args: &[&str], expect: &str) {
    let before = lo.sha256();
    let o = fake.flash(args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "stdout {out}\nstderr {err}");
    assert!(err.contains(expect), "expected {expect:?} in: {err}");
    assert!(!out.contains("safe to remove"), "{out}");
    assert_eq!(
        lo.sha256(),
        before,
        "a refused flash wrote to {}",
        lo.path()
    );
}

#[test]
fn flash_writes_a_built_seed_image_and_the_device_hashes_to_the_manifest() {
    let s = Scratch::example();
    let o = s.build(&["--format", "seed-img", "--machine", "worker-1"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let img = s.out().join("worker-1/seed.img");
    let size = fs::metadata(&img).expect("seed.img").len();
    assert_eq!(size % 512, 0, "seed.img is whole sectors");
    // Exactly the image's size, so `sha256sum DEVICE` hashes just the image.
    let lo = Loop::new(size);
    let fake = Fake::removable(&lo, size);
    let o = fake.flash(&[
        s.out().join("worker-1").to_str().expect("utf8"),
        lo.path(),
        "--format",
        "seed-img",
        "--yes",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout {out}\nstderr {err}");
    assert!(
        err.contains("ACME Test Stick") && err.contains("serial SN-"),
        "{err}"
    );
    assert!(out.contains("safe to remove"), "{out}");
    assert_eq!(lo.sha256(), manifest_digest(&s.out(), "worker-1/seed.img"));
}

#[test]
fn flash_writes_the_built_cluster_stick_and_streams_the_same_bytes_from_the_iso() {
    let iso = fixture(Fixture::Focal);
    let s = Scratch::example();
    let iso_arg = iso.to_str().expect("utf8");
    let o = s.build(&["--format", "dir,installer", "--iso", iso_arg]);
    assert!(o.status.success(), "{}", text(&o).1);
    let built = manifest_digest(&s.out(), "installer.img");
    let size = fs::metadata(s.out().join("installer.img"))
        .expect("img")
        .len();
    let lo = Loop::new(size);
    let fake = Fake::removable(&lo, size);
    // A machine's directory names the old per-machine image: the hint says OUT.
    let o = fake.flash(&[
        s.out().join("worker-1").to_str().expect("utf8"),
        lo.path(),
        "--yes",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("one stick for the whole cluster"),
        "{}",
        text(&o).1
    );
    // OUT: its installer.img, read back against SHA256SUMS.
    let o = fake.flash(&[s.out().to_str().expect("utf8"), lo.path(), "--yes"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout {out}\nstderr {err}");
    assert!(out.contains("safe to remove"), "{out}");
    assert_eq!(lo.sha256(), built);
    // The streamed flash never reads out/: remove it to be sure.
    fs::remove_dir_all(s.out()).expect("rm out");
    let lo = Loop::new(size);
    let fake = Fake::removable(&lo, size);
    let cluster = s.cluster();
    let o = fake.flash(&[
        cluster.to_str().expect("utf8"),
        lo.path(),
        "--iso",
        iso_arg,
        "--yes",
    ]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout {out}\nstderr {err}");
    assert!(out.contains("safe to remove"), "{out}");
    assert_eq!(
        lo.sha256(),
        built,
        "streamed bytes differ from build's installer.img"
    );
    assert!(!s.out().exists());
}

#[test]
fn flash_by_cluster_file_builds_the_seed_image_in_memory_and_names_unknown_machines() {
    let s = Scratch::example();
    let o = s.build(&["--format", "seed-img", "--machine", "worker-1"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let size = fs::metadata(s.out().join("worker-1/seed.img"))
        .expect("img")
        .len();
    let lo = Loop::new(size);
    let fake = Fake::removable(&lo, size);
    let cluster = s.cluster();
    let args = [
        cluster.to_str().expect("utf8"),
        lo.path(),
        "--machine",
        "worker-1",
        "--format",
        "seed-img",
        "--yes",
    ];
    let o = fake.flash(&args);
    assert!(o.status.success(), "{}", text(&o).1);
    assert_eq!(lo.sha256(), manifest_digest(&s.out(), "worker-1/seed.img"));
    // An unknown machine is bad input: exit 2, naming the machines there are.
    let mut bad = args;
    bad[3] = "worker-9";
    let o = fake.flash(&bad);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    assert!(text(&o).1.contains("worker-1"), "{}", text(&o).1);
}

#[test]
fn flash_refuses_a_fixed_disk_without_force_and_without_a_typed_name_with_it() {
    let (_d, m) = synthetic_out(MIB);
    let lo = Loop::new(2 * MIB);
    let fake = Fake::new(
        &[Disk {
            lo: &lo,
            removable: false,
            size: 2 * MIB,
        }],
        &[],
        &[],
    );
    let src = m.to_str().expect("utf8");
    assert_refused(&fake, &lo, &[src, lo.path(), "--yes"], "it is a fixed disk");
    // --force --yes still needs the name typed at a terminal, and the
    // refusal must not send the user after the --yes they already gave.
    assert_refused(
        &fake,
        &lo,
        &[src, lo.path(), "--yes", "--force"],
        "needs its name typed at a terminal, and stdin is not one; --yes cannot answer this",
    );
    let o = fake.flash(&[src, lo.path(), "--yes", "--force"]);
    assert!(!text(&o).1.contains("pass --yes"), "{}", text(&o).1);
}

#[test]
fn flash_asks_for_confirmation_and_refuses_without_a_terminal_or_yes() {
    let (_d, m) = synthetic_out(MIB);
    let lo = Loop::new(2 * MIB);
    let fake = Fake::removable(&lo, 2 * MIB);
    assert_refused(
        &fake,
        &lo,
        &[m.to_str().expect("utf8"), lo.path()],
        "pass --yes",
    );
}

#[test]
fn flash_refuses_a_device_smaller_than_the_image() {
    let (_d, m) = synthetic_out(3 * MIB);
    let lo = Loop::new(2 * MIB);
    let fake = Fake::removable(&lo, 2 * MIB);
    assert_refused(
        &fake,
        &lo,
        &[m.to_str().expect("utf8"), lo.path(), "--yes"],
        "smaller than installer.img",
    );
}

#[test]
fn flash_refuses_the_disk_holding_the_running_system_root_or_swap() {
    let (_d, m) = synthetic_out(MIB);
    let lo = Loop::new(2 * MIB);
    let src = m.to_str().expect("utf8");
    let disk = || {
        [Disk {
            lo: &lo,
            removable: true,
            size: 2 * MIB,
        }]
    };
    let fake = Fake::new(&disk(), &[mount_line(&lo, &lo.numbers(), "/")], &[]);
    assert_refused(
        &fake,
        &lo,
        &[src, lo.path(), "--yes"],
        "holds the running system (/)",
    );
    let fake = Fake::new(&disk(), &[], &[lo.path().to_string()]);
    assert_refused(
        &fake,
        &lo,
        &[src, lo.path(), "--yes"],
        "holds the running system (swap",
    );
}

#[test]
fn flash_refuses_a_disk_whose_partition_is_mounted_and_a_partition_itself() {
    let (_d, m) = synthetic_out(MIB);
    let disk = Loop::new(2 * MIB);
    let part = Loop::new(MIB);
    let src = m.to_str().expect("utf8");
    let fake = Fake::new(
        &[Disk {
            lo: &disk,
            removable: true,
            size: 2 * MIB,
        }],
        &[mount_line(&part, &part.numbers(), "/media/my\\040stick")],
        &[],
    );
    fake.add_partition(&disk, &part);
    assert_refused(
        &fake,
        &disk,
        &[src, disk.path(), "--yes"],
        "it is mounted at /media/my stick",
    );
    assert_refused(
        &fake,
        &part,
        &[src, part.path(), "--yes"],
        &format!(
            "is a partition, not a whole disk; an image holds its own partition table, so write it to /dev/{}",
            disk.name()
        ),
    );
}

#[test]
fn flash_refuses_a_really_mounted_disk_even_when_the_fake_tree_says_it_is_free() {
    let (_d, m) = synthetic_out(MIB);
    let lo = Loop::new(8 * MIB);
    let o = run("mkfs.ext4", &["-q", "-F", lo.path()]);
    assert!(o.status.success(), "mkfs.ext4: {}", text(&o).1);
    let mnt = tempfile::tempdir().expect("tempdir");
    let o = run("mount", &[lo.path(), mnt.path().to_str().expect("utf8")]);
    assert!(o.status.success(), "mount: {}", text(&o).1);
    let fake = Fake::removable(&lo, 8 * MIB);
    let o = fake.flash(&[m.to_str().expect("utf8"), lo.path(), "--yes"]);
    let _ = Command::new("umount").arg(mnt.path()).status();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("it is mounted at"), "{err}");
    // ext4 rewrites its superblock on umount, so compare with the image
    // rather than with the device's earlier digest.
    let head = fs::read(&lo.dev).expect("read device");
    let image = fs::read(m.join("installer.img")).expect("image");
    assert_ne!(
        head[..image.len()],
        image[..],
        "the mounted disk was written"
    );
}

#[test]
fn flash_list_shows_only_removable_unmounted_disks() {
    let free = Loop::new(MIB);
    let fixed = Loop::new(MIB);
    let busy = Loop::new(MIB);
    let fake = Fake::new(
        &[
            Disk {
                lo: &free,
                removable: true,
                size: MIB,
            },
            Disk {
                lo: &fixed,
                removable: false,
                size: MIB,
            },
            Disk {
                lo: &busy,
                removable: true,
                size: MIB,
            },
        ],
        &[mount_line(&busy, &busy.numbers(), "/mnt")],
        &[],
    );
    let o = fake.flash(&["--list", "--json"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let names: Vec<&str> = v["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, vec![free.name()]);
    assert_eq!(v["devices"][0]["serial"], format!("SN-{}", free.name()));
    assert_eq!(v["devices"][0]["size"], MIB);
}

#[test]
fn flash_names_the_first_bad_offset_when_the_read_back_differs() {
    let size = 8 * MIB;
    let (_d, m) = synthetic_out(size);
    let lo = Loop::new(size);
    // A second loop device over the same file keeps corrupting one sector
    // behind the flash's back: the read-back must catch it.
    let backing = fs::read_link(format!("/sys/class/block/{}/loop/backing_file", lo.name()))
        .unwrap_or_else(|_| {
            PathBuf::from(
                fs::read_to_string(format!("/sys/class/block/{}/loop/backing_file", lo.name()))
                    .expect("backing_file")
                    .trim(),
            )
        });
    let o = run(
        "losetup",
        &["--find", "--show", backing.to_str().expect("utf8")],
    );
    assert!(o.status.success());
    let twin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let bad_sector = 5 * 2048 + 3; // byte 5 MiB + 1536
    let image = fs::read(m.join("installer.img")).expect("image");
    let off = bad_sector as usize * 512;
    let garbage: Vec<u8> = image[off..off + 512].iter().map(|b| !b).collect();
    let gfile = m.parent().expect("out").join("garbage");
    fs::write(&gfile, garbage).expect("write");
    let fake = Fake::removable(&lo, size);
    // The corrupter races the flash: it must rewrite the sector between the
    // flash's write of it and its read-back, a window of milliseconds. On a
    // loaded machine it can miss it, and the flash then rightly finds the
    // device correct; that is the harness losing the race, not the flash
    // failing, so the race is run again (a few times at most).
    let mut last = None;
    for _ in 0..5 {
        let mut corrupter = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while :; do dd if={} of={} bs=512 seek={bad_sector} count=1 oflag=direct conv=notrunc status=none; done",
                gfile.display(),
                twin.display()
            ))
            .spawn()
            .expect("spawn");
        let o = fake.flash(&[m.to_str().expect("utf8"), lo.path(), "--yes"]);
        let _ = corrupter.kill();
        let _ = corrupter.wait();
        let lost_the_race = o.status.success();
        last = Some(o);
        if !lost_the_race {
            break;
        }
    }
    let _ = Command::new("losetup").arg("-d").arg(&twin).status();
    let o = last.expect("one attempt");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(
        err.contains(&format!("first bad byte at offset {off}")),
        "{err}"
    );
    assert!(!out.contains("safe to remove"), "{out}");
}

#[test]
fn an_interrupted_flash_is_an_error_and_never_safe_to_remove() {
    let size = 96 * MIB;
    let (_d, m) = synthetic_out(size);
    let lo = Loop::new(size);
    let fake = Fake::removable(&lo, size);
    let child = bin()
        .arg("flash")
        .arg(&m)
        .arg(&lo.dev)
        .arg("--yes")
        .env("MICROSEED_FLASH_SYSROOT", fake.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // Signal once the flash has written its first MiB to the device.
    let io = format!("/proc/{}/io", child.id());
    let started = Instant::now();
    loop {
        let wchar: u64 = fs::read_to_string(&io)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("wchar: ").map(|v| v.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0);
        if wchar > MIB {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the flash never started writing"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().expect("wait");
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("interrupted by a signal while"), "{err}");
    assert!(err.contains("must not be booted"), "{err}");
    assert!(!out.contains("safe to remove"), "{out}");
}

/// Runs flash under `script` (util-linux's bsdutils), so stdin is a
/// terminal and the typed answers go through the real prompts.
fn flash_at_terminal(fake: &Fake, args: &[&str], typed: &str) -> Output {
    // The binary's path holds the checkout's, which may hold a space.
    let cmd = std::iter::once(common::shq(env!("CARGO_BIN_EXE_microseed")))
        .chain(std::iter::once("flash".to_string()))
        .chain(args.iter().map(common::shq))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = common::fixed_env(&mut Command::new("script"))
        .args(["-qec", &cmd, "/dev/null"])
        .env("MICROSEED_FLASH_SYSROOT", fake.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (bsdutils)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(typed.as_bytes())
        .expect("type");
    child.wait_with_output().expect("wait")
}

#[test]
fn flash_writes_a_fixed_disk_with_force_only_after_its_name_is_typed() {
    let (_d, m) = synthetic_out(MIB);
    let lo = Loop::new(MIB);
    let fake = Fake::new(
        &[Disk {
            lo: &lo,
            removable: false,
            size: MIB,
        }],
        &[],
        &[],
    );
    let src = m.to_str().expect("utf8");
    let before = lo.sha256();
    // "y" to the first question, a wrong name to the second.
    let o = flash_at_terminal(&fake, &[src, lo.path(), "--force"], "y\nsda\n");
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("not confirmed; nothing was written"), "{out}");
    assert_eq!(lo.sha256(), before);
    let o = flash_at_terminal(
        &fake,
        &[src, lo.path(), "--force"],
        &format!("y\n{}\n", lo.name()),
    );
    let (out, _) = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("Type its name") && out.contains("safe to remove"),
        "{out}"
    );
    assert_eq!(lo.sha256(), manifest_digest(&m, "installer.img"));
}

#[test]
fn an_interrupted_read_back_says_the_write_was_complete_but_unverified() {
    let size = 96 * MIB;
    let (_d, m) = synthetic_out(size);
    let lo = Loop::new(size);
    let fake = Fake::removable(&lo, size);
    let counter = |io: &str, key: &str| -> u64 {
        fs::read_to_string(io)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix(key).map(|v| v.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0)
    };
    // The read-back of 96 MiB takes a fraction of a second: a run that ends
    // before the signal lands is the harness losing the race; try again.
    for _ in 0..5 {
        let child = bin()
            .arg("flash")
            .arg(&m)
            .arg(&lo.dev)
            .arg("--yes")
            .env("MICROSEED_FLASH_SYSROOT", fake.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        // Every byte written, and the read-back under way: the writing loop
        // reads the image once (size), the read-back reads more.
        let io = format!("/proc/{}/io", child.id());
        let started = Instant::now();
        while !(counter(&io, "wchar: ") >= size && counter(&io, "rchar: ") > size + 4 * MIB) {
            if started.elapsed() > Duration::from_secs(60) || fs::metadata(&io).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let o = child.wait_with_output().expect("wait");
        let (out, err) = text(&o);
        if o.status.success() {
            continue;
        }
        assert_eq!(o.status.code(), Some(1), "{out}{err}");
        assert!(
            err.contains("interrupted by a signal while reading back"),
            "{err}"
        );
        assert!(
            err.contains("was written and flushed whole, but it is not verified"),
            "{err}"
        );
        assert!(!err.contains("partial image"), "{err}");
        assert!(!out.contains("safe to remove"), "{out}");
        return;
    }
    panic!("the flash finished before the signal in every attempt");
}
