//! The installer image patcher against stand-in Ubuntu ISOs (20.04 and 22.04
//! layouts, built from Debian's packages by scripts/recipes/standin-iso.sh),
//! checked with the tools a person would use: xorriso, sfdisk, sgdisk, blkid,
//! mtools. Missing tools fail the tests (scripts/deps/installer.apt lists them).

use crate::iso_common as common;

use common::*;
use microseed::iso::{DEFAULT_BOOT_CONFIGS, make_installer_image};
use std::path::Path;

fn configs_of(layout: Fixture) -> Vec<&'static str> {
    match layout {
        Fixture::Focal => vec![
            "boot/grub/grub.cfg",
            "boot/grub/loopback.cfg",
            "isolinux/txt.cfg",
        ],
        Fixture::Jammy | Fixture::Noble => vec!["boot/grub/grub.cfg", "boot/grub/loopback.cfg"],
    }
}

#[test]
fn every_boot_config_gets_autoinstall_before_the_dashes() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (dir, img, report) = patched(fx);
        let patched_names: Vec<&str> = report
            .boot_configs
            .iter()
            .map(|c| c.path.as_str())
            .collect();
        assert_eq!(patched_names, configs_of(fx), "{report:?}");
        for (cfg, done) in configs_of(fx).into_iter().zip(&report.boot_configs) {
            let text = extract(&img, cfg, dir.path());
            let before = extract(&fixture(fx), cfg, dir.path());
            assert_eq!(before.len() as u64, done.old_len, "{cfg}");
            assert_eq!(
                text.len() as u64,
                done.new_len,
                "{cfg}: directory record length"
            );
            if cfg == "isolinux/txt.cfg" {
                // Its indentation gives back enough room to keep the length.
                assert_eq!(done.old_len, done.new_len, "{cfg} changed length");
            }
            assert!(
                done.new_len.div_ceil(2048) == done.old_len.div_ceil(2048),
                "{done:?}"
            );
            assert!(done.lines >= 1, "{done:?}");
            // The Joliet tree and the plain ISO 9660 names see the same bytes.
            let joliet = run_ok(
                "isoinfo",
                &["-i", img.to_str().unwrap(), "-J", "-x", &format!("/{cfg}")],
            );
            let plain = run_ok(
                "isoinfo",
                &[
                    "-i",
                    img.to_str().unwrap(),
                    "-x",
                    &format!("/{};1", cfg.to_uppercase()),
                ],
            );
            assert_eq!(joliet, text, "{cfg} via Joliet");
            assert_eq!(plain, text, "{cfg} via plain ISO 9660 names");
            let kernel_lines: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("/casper/vmlinuz") || l.trim_start().starts_with("append"))
                .filter(|l| !l.trim_start().starts_with("kernel"))
                .collect();
            assert!(
                !kernel_lines.is_empty(),
                "{cfg}: no kernel lines in\n{text}"
            );
            for l in kernel_lines {
                let (head, tail) = l
                    .split_once("---")
                    .unwrap_or_else(|| panic!("{cfg}: no --- in {l:?}"));
                assert!(
                    head.split_whitespace().any(|w| w == "autoinstall"),
                    "{cfg}: {l:?}"
                );
                assert!(!tail.contains("autoinstall"), "{cfg}: {l:?}");
                assert!(
                    tail.contains("console=ttyS0"),
                    "{cfg}: options after --- lost: {l:?}"
                );
            }
        }
    }
}

#[test]
fn el_torito_boot_catalog_is_unchanged() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (_dir, img, _) = patched(fx);
        let before = run_ok(
            "xorriso",
            &[
                "-indev",
                fixture(fx).to_str().unwrap(),
                "-report_el_torito",
                "plain",
            ],
        );
        let after = run_ok(
            "xorriso",
            &[
                "-indev",
                img.to_str().unwrap(),
                "-report_el_torito",
                "plain",
            ],
        );
        let images = |s: &str| {
            s.lines()
                .filter(|l| l.starts_with("El Torito"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert!(images(&after).iter().any(|l| l.contains("UEFI")), "{after}");
        assert_eq!(images(&before), images(&after));
    }
}

#[test]
fn md5sum_txt_matches_the_patched_files() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (dir, img, report) = patched(fx);
        assert_eq!(
            report.md5sums_updated,
            configs_of(fx)
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        );
        let sums = extract(&img, "md5sum.txt", dir.path());
        for cfg in configs_of(fx) {
            let data = extract(&img, cfg, dir.path());
            let line = sums
                .lines()
                .find(|l| l.ends_with(&format!("./{cfg}")))
                .unwrap_or_else(|| panic!("no md5sum line for {cfg}"));
            let want = md5_hex(data.as_bytes());
            assert_eq!(&line[..32], want, "{cfg}");
        }
    }
}

#[test]
fn partition_tables_stay_valid_with_the_seed_partition() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (_dir, img, report) = patched(fx);
        let p = img.to_str().unwrap();
        // No new complaints (the 20.04 layout's nested partitions overlap by design).
        let (_, _, before) = run("sfdisk", &["--verify", fixture(fx).to_str().unwrap()]);
        let (_, out, after) = run("sfdisk", &["--verify", p]);
        assert_eq!(before, after, "sfdisk --verify {fx:?}:\n{out}");
        let listing = run_ok("sfdisk", &["--dump", p])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let start = report.partition.offset / 512;
        let size = report.partition.size / 512;
        assert!(
            listing.contains(&format!("start= {start}, size= {size},")),
            "{fx:?}: new partition {start}+{size} not listed:\n{listing}"
        );
        match fx {
            Fixture::Focal => {
                assert_eq!(report.partition.mbr_slot, Some(3), "{report:?}");
                assert!(
                    listing.contains(&format!("size= {size}, type=c")),
                    "{listing}"
                );
                // Its GPT (valid CRCs, not protected by the MBR) is kept in step.
                let (_, v, _) = run("sgdisk", &["-v", p]);
                assert!(!v.to_lowercase().contains("crc"), "sgdisk -v:\n{v}");
                assert!(!v.contains("backup"), "sgdisk -v:\n{v}");
            }
            Fixture::Jammy | Fixture::Noble => {
                assert_eq!(report.partition.gpt_entry, Some(4), "{report:?}");
                let v = run_ok("sgdisk", &["-v", p]);
                assert!(v.contains("No problems found"), "sgdisk -v:\n{v}");
                let print = run_ok("sgdisk", &["-p", p]);
                assert!(print.contains("CIDATA"), "{print}");
                assert_eq!(report.image_size, std::fs::metadata(&img).unwrap().len());
            }
        }
    }
}

#[test]
fn blkid_finds_the_cidata_label_at_the_new_partition() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (_dir, img, report) = patched(fx);
        let out = run_ok(
            "blkid",
            &[
                "-c",
                "/dev/null",
                "-p",
                "-O",
                &report.partition.offset.to_string(),
                img.to_str().unwrap(),
            ],
        );
        assert!(out.contains("LABEL=\"CIDATA\""), "{fx:?}: {out}");
        assert!(out.contains("TYPE=\"vfat\""), "{fx:?}: {out}");
        assert_eq!(report.partition.offset % (1 << 20), 0);
    }
}

#[test]
fn mtools_read_back_the_seed_files() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (dir, img, report) = patched(fx);
        let at = format!("{}@@{}", img.display(), report.partition.offset);
        let listing = run_ok("mdir", &["-i", &at, "::"]);
        assert!(listing.contains("CIDATA"), "volume label: {listing}");
        for (name, data) in SEED {
            let to = dir.path().join(format!("read-{name}"));
            run_ok(
                "mcopy",
                &["-n", "-i", &at, &format!("::{name}"), to.to_str().unwrap()],
            );
            assert_eq!(std::fs::read(&to).unwrap(), *data, "{name}");
        }
    }
}

#[test]
fn a_second_run_is_byte_identical() {
    for fx in [Fixture::Focal, Fixture::Jammy] {
        let (dir, img, report) = patched(fx);
        let again = dir.path().join("again.img");
        let report2 =
            make_installer_image(&fixture(fx), &again, SEED, DEFAULT_BOOT_CONFIGS, EPOCH).unwrap();
        assert_eq!(report, report2);
        assert!(
            std::fs::read(&img).unwrap() == std::fs::read(&again).unwrap(),
            "{fx:?} differs"
        );
    }
}

#[test]
fn a_plain_iso_without_partition_table_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
    std::fs::write(
        tree.join("boot/grub/grub.cfg"),
        "linux /casper/vmlinuz quiet        ---\n",
    )
    .unwrap();
    let iso = dir.path().join("plain.iso");
    run_ok(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-r",
            "-o",
            iso.to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    let out = dir.path().join("out.img");
    let err = make_installer_image(&iso, &out, SEED, DEFAULT_BOOT_CONFIGS, EPOCH).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("unknown image layout"), "{msg}");
    assert_only_input_left(dir.path(), &["tree", "plain.iso"]);
}

#[test]
fn a_random_file_is_refused_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("random.iso");
    let mut data = vec![0u8; 1 << 20];
    let mut x = 0x1234_5678u32;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    std::fs::write(&iso, &data).unwrap();
    let out = dir.path().join("out.img");
    let err = make_installer_image(&iso, &out, SEED, DEFAULT_BOOT_CONFIGS, EPOCH).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not an ISO 9660 image"), "{msg}");
    assert_only_input_left(dir.path(), &["random.iso"]);
}

#[test]
fn a_missing_iso_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = make_installer_image(
        &dir.path().join("nope.iso"),
        &dir.path().join("out.img"),
        SEED,
        DEFAULT_BOOT_CONFIGS,
        EPOCH,
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("nope.iso"), "{err:#}");
    assert_only_input_left(dir.path(), &[]);
}

fn assert_only_input_left(dir: &Path, names: &[&str]) {
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    left.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(left, want, "files left behind");
}

#[test]
fn iso9660_reader_finds_files_by_plain_names_without_rock_ridge() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("boot/grub")).unwrap();
    std::fs::write(tree.join("boot/grub/grub.cfg"), "x\n").unwrap();
    std::fs::write(tree.join("md5sum.txt"), "y\n").unwrap();
    let iso = dir.path().join("plain.iso");
    // No -r, no -J: only 8.3-style upper-case names with ;1.
    run_ok(
        "xorriso",
        &[
            "-as",
            "mkisofs",
            "-o",
            iso.to_str().unwrap(),
            tree.to_str().unwrap(),
        ],
    );
    let f = std::fs::File::open(&iso).unwrap();
    let fs = microseed::iso::iso9660::Iso9660::open(&f).unwrap();
    let e = fs.find(&f, "boot/grub/grub.cfg").unwrap().expect("found");
    assert_eq!(e.length, 2);
    let mut buf = [0u8; 2];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, e.offset).unwrap();
    assert_eq!(&buf, b"x\n");
    assert!(fs.find(&f, "MD5SUM.TXT").unwrap().is_some());
    assert!(fs.find(&f, "boot/grub/missing.cfg").unwrap().is_none());
    assert!(
        fs.find(&f, "boot/grub").unwrap().is_none(),
        "a directory is not a file"
    );
}

/// The 20.04 cluster stick's isolinux menu: isolinux reads only ISO 9660,
/// so `isolinux/txt.cfg` itself carries the stick's machine entries, moved
/// to a new extent past the ISO. Two ISO 9660 readers (libisofs through
/// xorriso; isoinfo, by the Joliet and the plain name) read the new file;
/// `md5sum.txt`, the volume size and the ISO's MBR partition follow it,
/// and the seed partition starts after it. Same inputs, same bytes.
#[test]
fn cluster_stick_txt_cfg_lists_every_machine_in_a_moved_extent() {
    let dir = tempfile::tempdir().unwrap();
    let iso = fixture(Fixture::Focal);
    let img = cli_stick(
        Fixture::Focal.example_cluster(),
        &iso,
        &dir.path().join("a"),
    );
    let p = img.to_str().unwrap();
    let text = extract(&img, "isolinux/txt.cfg", dir.path());
    let joliet = run_ok("isoinfo", &["-i", p, "-J", "-x", "/isolinux/txt.cfg"]);
    let plain = run_ok("isoinfo", &["-i", p, "-x", "/ISOLINUX/TXT.CFG;1"]);
    assert_eq!(joliet, text, "via Joliet");
    assert_eq!(plain, text, "via plain ISO 9660 names");
    // The ISO's own entries first, its default (the MAC pick) kept.
    assert!(text.starts_with("default live\nlabel live\n"), "{text}");
    assert!(
        text.contains("menu label ^Boot from first hard disk"),
        "{text}"
    );
    let hd = text.find("label hd").expect("label hd");
    for (name, ip) in [
        ("nfs", "172.20.10.10"),
        ("master", "172.20.10.11"),
        ("worker-1", "172.20.10.12"),
    ] {
        for (verb, word) in [("install", "machine"), ("reinstall", "reinstall")] {
            let entry = format!(
                "label microseed-{verb}-{name}\n  menu label {}{} {name} ({ip}): ERASES its disk\n  \
                 kernel /casper/vmlinuz\n  append initrd=/casper/initrd microseed.{word}={name} \
                 autoinstall ---\n",
                verb[..1].to_uppercase(),
                &verb[1..]
            );
            let at = text
                .find(&entry)
                .unwrap_or_else(|| panic!("no entry {entry:?} in\n{text}"));
            assert!(at > hd, "{entry:?} before the ISO's entries:\n{text}");
        }
    }
    let sums = extract(&img, "md5sum.txt", dir.path());
    let line = sums
        .lines()
        .find(|l| l.ends_with("./isolinux/txt.cfg"))
        .expect("md5sum line");
    assert_eq!(&line[..32], md5_hex(text.as_bytes()), "md5sum.txt");
    // The file sits past the ISO's old end, inside the grown volume.
    let iso_len = std::fs::metadata(&iso).unwrap().len();
    let blocks = |img: &str| -> u64 {
        let d = run_ok("isoinfo", &["-d", "-i", img]);
        d.lines()
            .find_map(|l| l.strip_prefix("Volume size is: "))
            .expect("volume size")
            .trim()
            .parse()
            .expect("number")
    };
    let volume = blocks(p) * 2048;
    assert!(volume > iso_len, "{volume} <= {iso_len}");
    assert_eq!(blocks(iso.to_str().unwrap()) * 2048, iso_len);
    let listing = run_ok(
        "xorriso",
        &[
            "-indev",
            p,
            "-find",
            "/isolinux/txt.cfg",
            "-exec",
            "report_lba",
        ],
    );
    let lba: u64 = listing
        .lines()
        .find(|l| l.contains("txt.cfg"))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|f| f.trim().parse().ok())
        .unwrap_or_else(|| panic!("no LBA in {listing}"));
    assert!(
        lba * 2048 >= iso_len && lba * 2048 < volume,
        "LBA {lba}: {listing}"
    );
    // The ISO's MBR partition (from sector 0) covers the grown volume; the
    // seed partition starts after it, 1 MiB aligned.
    let dump = run_ok("sfdisk", &["--json", p]);
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let parts = v["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    let outer = parts
        .iter()
        .find(|p| p["start"] == 0)
        .expect("partition at 0");
    assert_eq!(outer["size"].as_u64().unwrap() * 512, volume, "{dump}");
    let seed = parts
        .iter()
        .find(|p| p["type"] == "c")
        .expect("seed partition");
    let seed_start = seed["start"].as_u64().unwrap() * 512;
    assert!(
        seed_start >= volume && seed_start % (1 << 20) == 0,
        "{dump}"
    );
    // No new partition table complaints (the layout's nested partitions
    // overlap by design), and its GPT still checks out.
    let (_, _, before) = run("sfdisk", &["--verify", iso.to_str().unwrap()]);
    let (_, out, after) = run("sfdisk", &["--verify", p]);
    assert_eq!(before, after, "sfdisk --verify:\n{out}");
    let (_, v, _) = run("sgdisk", &["-v", p]);
    assert!(
        !v.to_lowercase().contains("crc") && !v.contains("backup"),
        "sgdisk -v:\n{v}"
    );
    // Reproducible: a second build gives the same bytes.
    let again = cli_stick(
        Fixture::Focal.example_cluster(),
        &iso,
        &dir.path().join("b"),
    );
    assert!(
        std::fs::read(&img).unwrap() == std::fs::read(&again).unwrap(),
        "two builds differ"
    );
}

/// An ISO with a UDF bridge keeps `isolinux/txt.cfg` where it is (the UDF
/// file entries would still name the old extent and length): patched in
/// place, without the machine entries, and the report says so (`build`
/// then prints its note). The same tree without UDF gets them, moved.
#[test]
fn a_udf_bridge_keeps_txt_cfg_in_place_without_the_machine_entries() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("isolinux")).unwrap();
    std::fs::write(
        tree.join("isolinux/txt.cfg"),
        "default live\nlabel live\n  menu label ^Install Ubuntu Server\n  kernel /casper/vmlinuz\n  \
         append   initrd=/casper/initrd quiet  ---\n\n\n\n\n\n\n\n\n\n\n\n\n",
    )
    .unwrap();
    // A second syslinux config, which includes the first: the entries go
    // to the first one only, or the menu would list them twice.
    std::fs::write(
        tree.join("isolinux/isolinux.cfg"),
        "include txt.cfg\nprompt 0\ntimeout 1\n",
    )
    .unwrap();
    let menu = b"label microseed-install-w1\n  menu label Install w1 (10.0.0.5): ERASES its disk\n  \
                 kernel /casper/vmlinuz\n  append initrd=/casper/initrd microseed.machine=w1 autoinstall ---\n";
    let mut seeds = SEED.to_vec();
    seeds.push(("microseed/isolinux.cfg", menu));
    for udf in [true, false] {
        let iso = dir.path().join(format!("udf-{udf}.iso"));
        let mut args = vec!["-quiet", "-J", "-r", "-V", "UDFTEST"];
        if udf {
            args.push("-udf");
        }
        args.extend(["-o", iso.to_str().unwrap(), tree.to_str().unwrap()]);
        run_ok("genisoimage", &args);
        // An MBR whose one partition spans the ISO from sector 0, as a
        // hybrid ISO's outer partition does.
        let mut img = std::fs::read(&iso).unwrap();
        let sectors = (img.len() / 512) as u32;
        img[446] = 0x80;
        img[450] = 0x17;
        img[454..458].copy_from_slice(&0u32.to_le_bytes());
        img[458..462].copy_from_slice(&sectors.to_le_bytes());
        img[510] = 0x55;
        img[511] = 0xAA;
        std::fs::write(&iso, &img).unwrap();
        let out = dir.path().join(format!("udf-{udf}.img"));
        let configs = ["isolinux/txt.cfg", "isolinux/isolinux.cfg"];
        let report = make_installer_image(&iso, &out, &seeds, &configs, EPOCH)
            .unwrap_or_else(|e| panic!("udf {udf}: {e:#}"));
        let outer = run_ok(
            "isoinfo",
            &[
                "-i",
                out.to_str().unwrap(),
                "-J",
                "-x",
                "/isolinux/isolinux.cfg",
            ],
        );
        assert_eq!(outer, "include txt.cfg\nprompt 0\ntimeout 1\n");
        let done = &report.boot_configs[0];
        let text = run_ok(
            "isoinfo",
            &["-i", out.to_str().unwrap(), "-J", "-x", "/isolinux/txt.cfg"],
        );
        let append = text.lines().find(|l| l.contains("append")).expect("append");
        assert!(
            append.split_whitespace().collect::<Vec<_>>()
                == [
                    "append",
                    "initrd=/casper/initrd",
                    "quiet",
                    "autoinstall",
                    "---"
                ],
            "{text}"
        );
        if udf {
            assert!(!done.machine_entries && done.moved_to.is_none(), "{done:?}");
            assert_eq!(done.old_len, done.new_len, "{done:?}");
            assert!(!text.contains("microseed"), "{text}");
        } else {
            assert!(done.machine_entries && done.moved_to.is_some(), "{done:?}");
            assert!(text.ends_with(std::str::from_utf8(menu).unwrap()), "{text}");
            // The moved file keeps the ISO's blanks: it may be any length.
            assert!(
                text.starts_with("default live\nlabel live\n  menu label"),
                "{text}"
            );
        }
    }
}
