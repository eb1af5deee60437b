//! Seed images checked with the tools that will read them: dosfstools,
//! mtools, gdisk, fdisk and util-linux (see `scripts/deps/seedimg.apt`).
//! A missing tool fails the test: a skipped check would look like a pass.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use microseed::image::{DEFAULT_EPOCH, build_fat, seed_image, write_seed_image};

const USER_DATA: &[u8] = b"#cloud-config\nhostname: worker-1\nusers:\n  - name: admin\n    groups: [sudo, microk8s]\n    ssh_authorized_keys:\n      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1bmNoIG9mIGJ5dGVzIGZvciBhIHRlc3Qga2V5 admin@example\n";
const META_DATA: &[u8] = b"instance-id: x\nlocal-hostname: worker-1\n";
const NETWORK_CONFIG: &[u8] = b"version: 2\nethernets:\n  nic1:\n    match:\n      macaddress: \"52:54:00:12:34:56\"\n    set-name: nic1\n    addresses: [172.20.10.12/20]\n    nameservers:\n      addresses: [8.8.8.8, 8.8.4.4]\n";

const MIB: usize = 1 << 20;
/// Where the CIDATA partition starts (LBA 64).
const PART: usize = 32 * 1024;
/// 2024-02-29T12:34:56Z
const LEAP_DAY_EPOCH: i64 = 1_709_210_096;

fn seed_files() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("user-data", USER_DATA),
        ("meta-data", META_DATA),
        ("network-config", NETWORK_CONFIG),
    ]
}

/// Runs a tool, failing the test with the Debian package to install when the
/// tool is missing. `/sbin` is added because fsck.vfat and friends live there
/// and a non-root PATH may lack it.
fn run(program: &str, args: &[&str]) -> Output {
    let package = match program {
        "fsck.vfat" => "dosfstools",
        "mdir" | "mcopy" | "mlabel" => "mtools",
        "sgdisk" => "gdisk",
        "sfdisk" | "fdisk" => "fdisk",
        _ => "util-linux",
    };
    let path = format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(program)
        .args(args)
        .env("PATH", path)
        // mtools otherwise refuses images whose geometry it finds odd.
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program} (apt-get install {package}): {err}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// The single GPT partition as sfdisk reads it: (start byte, size in bytes,
/// the whole JSON entry).
fn partition_of(image: &Path) -> (usize, usize, serde_json::Value) {
    let output = run("sfdisk", &["--json", path_str(image)]);
    assert!(
        output.status.success(),
        "sfdisk --json: {}",
        describe(&output)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("sfdisk JSON");
    let table = &json["partitiontable"];
    assert_eq!(table["label"], "gpt", "{json}");
    let partitions = table["partitions"].as_array().expect("partitions array");
    assert_eq!(partitions.len(), 1, "{json}");
    let part = partitions[0].clone();
    let sector = table["sectorsize"].as_u64().unwrap_or(512) as usize;
    let start = part["start"].as_u64().expect("start") as usize * sector;
    let size = part["size"].as_u64().expect("size") as usize * sector;
    (start, size, part)
}

fn fsck_clean(fat: &[u8]) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "fat.img", fat);
    let output = run("fsck.vfat", &["-n", path_str(&path)]);
    assert!(
        output.status.success(),
        "fsck.vfat -n: {}",
        describe(&output)
    );
    let text = stdout(&output) + &String::from_utf8_lossy(&output.stderr);
    for bad in [
        "Dirty bit",
        "differ",
        "Orphan",
        "invalid",
        "Bad",
        "Free cluster summary",
    ] {
        assert!(
            !text.contains(bad),
            "fsck.vfat -n reported {bad:?}:\n{text}"
        );
    }
}

/// Byte offset of a FAT12/16 root directory, from the boot sector.
fn fat16_root_dir(fat: &[u8]) -> &[u8] {
    let u16_at = |at: usize| u16::from_le_bytes([fat[at], fat[at + 1]]) as usize;
    let bytes_per_sector = u16_at(0x0B);
    let sectors_per_fat = u16_at(0x16);
    assert_ne!(sectors_per_fat, 0, "expected FAT12/16 for a small seed");
    let offset = (u16_at(0x0E) + fat[0x10] as usize * sectors_per_fat) * bytes_per_sector;
    &fat[offset..offset + u16_at(0x11) * 32]
}

#[test]
fn build_fat_passes_fsck_vfat() {
    let fat = build_fat(&seed_files(), "CIDATA", DEFAULT_EPOCH).expect("build_fat");
    fsck_clean(&fat);
}

#[test]
fn build_fat_writes_label_in_boot_sector_and_root_directory() {
    let fat = build_fat(&seed_files(), "CIDATA", DEFAULT_EPOCH).expect("build_fat");
    // FAT12/16 extended boot record: label at 0x2B.
    assert_eq!(&fat[0x2B..0x36], b"CIDATA     ");
    let entry = &fat16_root_dir(&fat)[..32];
    assert_eq!(
        &entry[..11],
        b"CIDATA     ",
        "first root entry is the label"
    );
    assert_eq!(entry[11], 0x08, "volume-label attribute");
    // 2020-01-01 00:00:00 in DOS encoding, not the zero date fatfs leaves.
    let date = u16::from_le_bytes([entry[24], entry[25]]);
    assert_eq!(date, (40 << 9) | (1 << 5) | 1);
}

#[test]
fn build_fat_is_small_for_a_usual_seed() {
    let fat = build_fat(&seed_files(), "CIDATA", DEFAULT_EPOCH).expect("build_fat");
    assert!(fat.len() <= 256 * 1024, "{} bytes", fat.len());
    assert_eq!(fat.len() % (64 * 1024), 0);
}

#[test]
fn seed_image_passes_fsck_vfat() {
    let image = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "seed.img", &image);
    let (start, size, _) = partition_of(&path);
    fsck_clean(&image[start..start + size]);
}

#[test]
fn seed_image_passes_sgdisk_verify() {
    let image = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "seed.img", &image);
    // sgdisk -v exits 0 whatever it finds: read what it says.
    let output = run("sgdisk", &["-v", path_str(&path)]);
    assert!(
        stdout(&output).contains("No problems found"),
        "sgdisk -v: {}",
        describe(&output)
    );
    let output = run("sgdisk", &["-p", path_str(&path)]);
    let text = stdout(&output);
    assert!(text.contains("CIDATA"), "sgdisk -p: {}", describe(&output));
    assert!(text.contains(" 0700 "), "basic data type code: {text}");
}

#[test]
fn seed_image_partition_is_vfat_labelled_cidata_per_blkid() {
    let image = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "seed.img", &image);
    let (start, _, _) = partition_of(&path);
    assert_eq!(start, PART, "partition starts at 32 KiB");
    let offset = start.to_string();
    let output = run(
        "blkid",
        &["-c", "/dev/null", "-p", "-O", &offset, path_str(&path)],
    );
    assert!(output.status.success(), "blkid: {}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains(" TYPE=\"vfat\""), "blkid: {text}");
    // blkid takes LABEL from the root-directory entry (what cloud-init 20.1
    // reads) and LABEL_FATBOOT from the boot sector.
    assert!(text.contains(" LABEL=\"CIDATA\""), "blkid: {text}");
    assert!(text.contains("LABEL_FATBOOT=\"CIDATA\""), "blkid: {text}");
}

#[test]
fn seed_image_root_directory_has_volume_label_entry() {
    let image = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "seed.img", &image);
    let target = format!("{}@@32K", path_str(&path));
    let output = run("mlabel", &["-i", &target, "-s", "::"]);
    assert!(output.status.success(), "mlabel -s: {}", describe(&output));
    assert!(
        stdout(&output).contains("Volume label is CIDATA"),
        "mlabel -s: {}",
        describe(&output)
    );
    let root = fat16_root_dir(&image[PART..]);
    assert_eq!(&root[..11], b"CIDATA     ");
    assert_eq!(root[11], 0x08);
}

#[test]
fn seed_image_files_are_listed_by_mdir_and_read_back_identical_by_mcopy() {
    let files = seed_files();
    let image = seed_image(&files, DEFAULT_EPOCH).expect("seed_image");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "seed.img", &image);
    let target = format!("{}@@32K", path_str(&path));
    let output = run("mdir", &["-i", &target, "::"]);
    assert!(output.status.success(), "mdir: {}", describe(&output));
    let listing = stdout(&output);
    for (name, bytes) in &files {
        let line = listing
            .lines()
            .find(|line| line.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("mdir does not list {name}:\n{listing}"));
        assert!(line.contains(&format!(" {} ", bytes.len())), "{line}");
        assert!(line.contains("2020-01-01"), "{line}");
    }
    assert!(listing.contains("3 files"), "{listing}");

    for (name, bytes) in &files {
        let source = format!("::{name}");
        let output = run("mcopy", &["-n", "-i", &target, &source, "-"]);
        assert!(
            output.status.success(),
            "mcopy {name}: {}",
            describe(&output)
        );
        assert_eq!(output.stdout, *bytes, "{name} read back differs");
    }
}

#[test]
fn seed_image_is_byte_identical_across_builds() {
    let a = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    let b = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    assert!(a == b, "two builds of the same seed differ");
    let fat_a = build_fat(&seed_files(), "CIDATA", DEFAULT_EPOCH).expect("build_fat");
    let fat_b = build_fat(&seed_files(), "CIDATA", DEFAULT_EPOCH).expect("build_fat");
    assert!(fat_a == fat_b, "two builds of the same FAT differ");
}

#[test]
fn seed_image_partition_is_build_fat_with_hidden_sectors_set() {
    let image = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    let mut fat = build_fat(&seed_files(), "CIDATA", DEFAULT_EPOCH).expect("build_fat");
    assert_eq!(&fat[0x1C..0x20], &[0; 4]);
    fat[0x1C..0x20].copy_from_slice(&64u32.to_le_bytes());
    assert!(image[PART..PART + fat.len()] == fat[..]);
}

#[test]
fn changing_a_file_changes_the_image_and_its_identifiers() {
    let files = seed_files();
    let mut other = files.clone();
    other[1] = ("meta-data", b"instance-id: y\nlocal-hostname: worker-2\n");
    let a = seed_image(&files, DEFAULT_EPOCH).expect("seed_image");
    let b = seed_image(&other, DEFAULT_EPOCH).expect("seed_image");
    assert!(a != b);

    let dir = tempfile::tempdir().expect("tempdir");
    let identifiers = |name: &str, image: &[u8]| {
        let path = write_temp(&dir, name, image);
        let (_, _, part) = partition_of(&path);
        let output = run("sfdisk", &["--disk-id", path_str(&path)]);
        let volume = run(
            "blkid",
            &[
                "-c",
                "/dev/null",
                "-p",
                "-s",
                "UUID",
                "-O",
                "32768",
                path_str(&path),
            ],
        );
        (stdout(&output), part["uuid"].to_string(), stdout(&volume))
    };
    let (disk_a, part_a, vol_a) = identifiers("a.img", &a);
    let (disk_b, part_b, vol_b) = identifiers("b.img", &b);
    assert_ne!(disk_a, disk_b, "disk GUID");
    assert_ne!(part_a, part_b, "partition GUID");
    assert_ne!(vol_a, vol_b, "FAT volume id");
}

#[test]
fn epoch_sets_every_timestamp_deterministically() {
    let files = seed_files();
    let a = seed_image(&files, LEAP_DAY_EPOCH).expect("seed_image");
    let b = seed_image(&files, LEAP_DAY_EPOCH).expect("seed_image");
    assert!(a == b, "same epoch, different images");
    let default = seed_image(&files, DEFAULT_EPOCH).expect("seed_image");
    assert!(a != default, "the epoch does not reach the image");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "seed.img", &a);
    let target = format!("{}@@32K", path_str(&path));
    let output = run("mdir", &["-i", &target, "::"]);
    let listing = stdout(&output);
    let file_lines: Vec<&str> = listing
        .lines()
        .filter(|line| files.iter().any(|(name, _)| line.ends_with(name)))
        .collect();
    assert_eq!(file_lines.len(), 3, "{listing}");
    for line in file_lines {
        assert!(line.contains("2024-02-29  12:34"), "{line}");
    }
    // Before 1980 FAT cannot say; the earliest date is used.
    let early = seed_image(&files, 0).expect("seed_image");
    let path = write_temp(&dir, "early.img", &early);
    let target = format!("{}@@32K", path_str(&path));
    let listing = stdout(&run("mdir", &["-i", &target, "::"]));
    assert!(listing.contains("1980-01-01"), "{listing}");
}

/// Runs [`source_date_epoch_probe`] in a child process: the environment is
/// process-wide, and changing it under concurrently running tests is unsound.
fn source_date_epoch_in_child(value: Option<&str>) -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let mut command = Command::new(exe);
    command
        .args([
            "--exact",
            "seed_image::source_date_epoch_probe",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MICROSEED_SDE_PROBE", "1");
    match value {
        Some(value) => command.env("SOURCE_DATE_EPOCH", value),
        None => command.env_remove("SOURCE_DATE_EPOCH"),
    };
    let output = command.output().expect("run the test binary");
    assert!(output.status.success(), "probe: {}", describe(&output));
    stdout(&output)
        .lines()
        // The harness prints the test name on the same line.
        .find_map(|line| line.split_once("PROBE ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("probe printed nothing: {}", describe(&output)))
        .to_string()
}

/// Only acts in the child started by [`source_date_epoch_in_child`].
#[test]
fn source_date_epoch_probe() {
    if std::env::var_os("MICROSEED_SDE_PROBE").is_none() {
        return;
    }
    match microseed::image::source_date_epoch() {
        Ok(epoch) => println!("PROBE ok {epoch}"),
        Err(err) => println!("PROBE err {err:#}"),
    }
}

#[test]
fn source_date_epoch_comes_from_the_environment_else_a_fixed_default() {
    assert_eq!(source_date_epoch_in_child(None), "ok 1577836800");
    assert_eq!(
        source_date_epoch_in_child(Some("1709210096")),
        "ok 1709210096"
    );
    let err = source_date_epoch_in_child(Some("yesterday"));
    assert!(
        err.starts_with("err ") && err.contains("SOURCE_DATE_EPOCH"),
        "{err}"
    );
}

#[test]
fn seed_image_gpt_partition_is_seen_by_sfdisk_and_fdisk() {
    let image = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_temp(&dir, "seed.img", &image);
    // sfdisk --verify reports problems on stderr only.
    let output = run("sfdisk", &["--verify", path_str(&path)]);
    assert!(
        output.status.success(),
        "sfdisk --verify: {}",
        describe(&output)
    );
    assert!(
        output.stderr.is_empty(),
        "sfdisk --verify: {}",
        describe(&output)
    );
    assert!(
        stdout(&output).contains("No errors detected"),
        "{}",
        describe(&output)
    );

    let (start, size, part) = partition_of(&path);
    assert_eq!(start, PART);
    assert!(size <= 256 * 1024, "{size}");
    assert_eq!(
        part["type"], "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7",
        "{part}"
    );
    assert_eq!(part["name"], "CIDATA", "{part}");

    let output = run("fdisk", &["-l", path_str(&path)]);
    assert!(output.status.success(), "fdisk -l: {}", describe(&output));
    let text = stdout(&output);
    assert!(text.contains("Disklabel type: gpt"), "{text}");
    assert!(text.contains("Microsoft basic data"), "{text}");
    assert!(output.stderr.is_empty(), "fdisk -l: {}", describe(&output));
}

#[test]
fn seed_image_is_smaller_than_512_kib() {
    let image = seed_image(&seed_files(), DEFAULT_EPOCH).expect("seed_image");
    assert!(image.len() < 512 * 1024, "{} bytes", image.len());
    assert_eq!(image.len() % 512, 0);
}

#[test]
fn write_seed_image_writes_the_same_bytes_sparse_with_mode_0600() {
    let files = seed_files();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("seed.img");
    // An existing, world-readable file must not keep its mode.
    std::fs::write(&path, b"old").expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");

    write_seed_image(&path, &files, DEFAULT_EPOCH).expect("write_seed_image");
    let written = std::fs::read(&path).expect("read back");
    assert!(written == seed_image(&files, DEFAULT_EPOCH).expect("seed_image"));
    let meta = std::fs::metadata(&path).expect("metadata");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert!(
        meta.blocks() * 512 < meta.len() / 4,
        "{} bytes allocated for a {} byte image",
        meta.blocks() * 512,
        meta.len()
    );
}

#[test]
fn larger_seeds_grow_the_filesystem_and_stay_valid() {
    // Enough for FAT16 in the seed and FAT32 in a 40 MiB filesystem: both
    // code paths (root directory, backup boot sector) get checked.
    for (size, expect_type) in [(2_500_000, "FAT16"), (30 * MIB, "FAT32")] {
        let big: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let files: Vec<(&str, &[u8])> = vec![
            ("user-data", &big),
            ("meta-data", META_DATA),
            ("network-config", NETWORK_CONFIG),
        ];
        let image = seed_image(&files, DEFAULT_EPOCH).expect("seed_image");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_temp(&dir, "seed.img", &image);
        let (start, len, _) = partition_of(&path);
        assert!(len > size, "{len} byte partition for {size} bytes");
        fsck_clean(&image[start..start + len]);
        let output = run("sgdisk", &["-v", path_str(&path)]);
        assert!(
            stdout(&output).contains("No problems found"),
            "{}",
            describe(&output)
        );

        let offset = start.to_string();
        let output = run(
            "blkid",
            &["-c", "/dev/null", "-p", "-O", &offset, path_str(&path)],
        );
        let text = stdout(&output);
        assert!(
            text.contains(&format!("VERSION=\"{expect_type}\"")),
            "{text}"
        );
        assert!(text.contains(" LABEL=\"CIDATA\""), "{text}");

        let target = format!("{}@@{start}", path_str(&path));
        let output = run("mcopy", &["-n", "-i", &target, "::user-data", "-"]);
        assert!(output.status.success(), "mcopy: {}", describe(&output));
        assert!(output.stdout == big, "large user-data read back differs");
    }
}

#[test]
fn invalid_names_and_labels_are_rejected() {
    let dup: [(&str, &[u8]); 2] = [("user-data", b"a"), ("USER-DATA", b"b")];
    let err = seed_image(&dup, DEFAULT_EPOCH).expect_err("case-insensitive duplicate");
    assert!(format!("{err:#}").contains("twice"), "{err:#}");
    // `dir/name` is a file below a directory; these are no names at all.
    for name in ["", "a//b", "/a", "a/../b", "../a", ".", ".."] {
        let files: [(&str, &[u8]); 1] = [(name, b"x")];
        assert!(
            seed_image(&files, DEFAULT_EPOCH).is_err(),
            "{name:?} accepted"
        );
    }
    assert!(build_fat(&seed_files(), "TWELVE_CHARS", DEFAULT_EPOCH).is_err());
    assert!(build_fat(&seed_files(), "", DEFAULT_EPOCH).is_err());
    assert!(build_fat(&seed_files(), "CI/DATA", DEFAULT_EPOCH).is_err());
}
