//! A `disk: {path: …}` selector in the terms subiquity can match.
//!
//! Subiquity compares `match: {path: P}` with `fnmatch(disk.path, P)`, and
//! `disk.path` is the kernel name (`/dev/sda`, `/dev/nvme0n1`): never a
//! `/dev/disk/by-*` link (20.04.3 and 22.07.2 `subiquity/models/filesystem.py`
//! `match_path`; 24.04.4 likewise). A by-id path there matches no disk and
//! the install stops. udev builds most by-id names from `ID_SERIAL`, which
//! subiquity does match (`match: {serial: …}`, also with fnmatch), so such a
//! path becomes a serial; every other path that cannot match is refused with
//! the form to use.

/// What a `disk.path` value turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskPath {
    /// A kernel name, or a glob of one: emitted as `path`.
    Kernel(String),
    /// udev's `ID_SERIAL`, read out of a `/dev/disk/by-id/` name: emitted as
    /// `serial` (see `documents::serial_glob`).
    Serial(String),
}

/// Kernel name prefixes of whole disks the installer can install onto.
const KERNEL_PREFIXES: &[&str] = &["sd", "vd", "xvd", "hd", "nvme", "mmcblk"];

/// How to name a disk instead, for every refusal.
const USE_INSTEAD: &str = "use the disk's kernel name (`/dev/sda`, `/dev/nvme0n1`) or, \
     better since kernel names can change between boots, `disk: {serial: ID_SERIAL}` \
     with the ID_SERIAL that `udevadm info --query=property --name=/dev/sdX | grep \
     ID_SERIAL` prints";

/// Reads a `disk.path` value; the error says why it can never match and
/// what to write instead.
pub fn parse(p: &str) -> Result<DiskPath, String> {
    if let Some(id) = p.strip_prefix("/dev/disk/by-id/") {
        return by_id(id).map(DiskPath::Serial);
    }
    if let Some(rest) = p.strip_prefix("/dev/disk/") {
        let kind = rest.split('/').next().unwrap_or(rest);
        return Err(format!(
            "{p:?} is a /dev/disk/{kind}/ link; the installer matches `path` against kernel \
             names only, so it would find no disk: {USE_INSTEAD}"
        ));
    }
    let Some(name) = p.strip_prefix("/dev/") else {
        return Err(format!(
            "got {p:?}; expected a disk under /dev: {USE_INSTEAD}"
        ));
    };
    let Some(prefix) = KERNEL_PREFIXES.iter().find(|k| name.starts_with(*k)) else {
        return Err(format!(
            "{p:?} is not a disk's kernel name (sdX, vdX, xvdX, hdX, nvmeXnY, mmcblkX); the \
             installer matches `path` against those only: {USE_INSTEAD}"
        ));
    };
    let tail = &name[prefix.len()..];
    if tail.is_empty()
        || !tail
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"*?[]".contains(&c))
    {
        return Err(format!(
            "got {p:?}; expected a kernel disk name such as /dev/sda or /dev/nvme0n1, or a \
             glob of one such as /dev/nvme0n*"
        ));
    }
    if !tail.contains(['*', '?', '[']) && is_partition(prefix, tail) {
        return Err(format!(
            "{p:?} is a partition; the installer takes a whole disk: give the disk, such as \
             /dev/{}",
            whole_disk(prefix, tail)
        ));
    }
    Ok(DiskPath::Kernel(p.to_string()))
}

/// `ID_SERIAL` from a by-id name, after udev's 60-persistent-storage.rules
/// (systemd 245 on 20.04 through 255 on 24.04): `ata-`, `scsi-` and
/// `virtio-` links are `BUS-ID_SERIAL`; `nvme-MODEL_SERIAL` is `ID_SERIAL`,
/// and from systemd 252 also `nvme-MODEL_SERIAL_NSID` (whose `ID_SERIAL`
/// then ends in `_NSID`: the namespace suffix is dropped, and the
/// `*S*` glob matches both forms). WWN, EUI and USB names do not carry the
/// `ID_SERIAL` subiquity reads, so they are refused.
fn by_id(id: &str) -> Result<String, String> {
    let whole = format!("/dev/disk/by-id/{id}");
    if id.is_empty() || id.contains('/') {
        return Err(format!(
            "got {whole:?}; expected a name under /dev/disk/by-id/: {USE_INSTEAD}"
        ));
    }
    if let Some(at) = id.rfind("-part")
        && id[at + 5..].bytes().all(|c| c.is_ascii_digit())
        && at + 5 < id.len()
    {
        return Err(format!(
            "{whole:?} is a partition; the installer takes a whole disk: give /dev/disk/by-id/{}",
            &id[..at]
        ));
    }
    let (bus, serial) = id.split_once('-').unwrap_or(("", ""));
    let serial = match bus {
        "ata" | "scsi" | "virtio" => serial.to_string(),
        "nvme"
            if ["eui.", "nvme.", "uuid.", "naa."]
                .iter()
                .any(|w| serial.starts_with(w)) =>
        {
            return Err(format!(
                "{whole:?} names the disk by its NVMe WWID, which the installer cannot match: \
                 use the nvme-MODEL_SERIAL link beside it, or {USE_INSTEAD}"
            ));
        }
        "nvme" => strip_nsid(serial).to_string(),
        _ => {
            return Err(format!(
                "{whole:?}: a by-id name starting `{bus}-` does not carry the ID_SERIAL the \
                 installer matches (only ata-, scsi-, nvme- and virtio- names do): {USE_INSTEAD}"
            ));
        }
    };
    if serial.is_empty()
        || !serial
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"_-.:".contains(&c))
    {
        return Err(format!(
            "got {whole:?}; its serial part {serial:?} holds characters udev never puts in a \
             by-id name: {USE_INSTEAD}"
        ));
    }
    Ok(serial)
}

/// `MODEL_SERIAL_1` -> `MODEL_SERIAL`: the namespace id systemd 252+ adds.
fn strip_nsid(s: &str) -> &str {
    match s.rsplit_once('_') {
        Some((base, n))
            if base.contains('_')
                && !n.is_empty()
                && n.len() <= 3
                && n.bytes().all(|c| c.is_ascii_digit()) =>
        {
            base
        }
        _ => s,
    }
}

fn is_partition(prefix: &str, tail: &str) -> bool {
    match prefix {
        // nvme0n1p2, mmcblk0p1
        "nvme" | "mmcblk" => tail.contains('p'),
        // sda1, vdb2
        _ => tail.bytes().any(|c| c.is_ascii_digit()),
    }
}

fn whole_disk(prefix: &str, tail: &str) -> String {
    let disk = match prefix {
        "nvme" | "mmcblk" => tail.split('p').next().unwrap_or(tail),
        _ => tail.trim_end_matches(|c: char| c.is_ascii_digit()),
    };
    format!("{prefix}{disk}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial(p: &str) -> String {
        match parse(p) {
            Ok(DiskPath::Serial(s)) => s,
            other => panic!("{p}: {other:?}"),
        }
    }

    fn refused(p: &str) -> String {
        parse(p).expect_err(p)
    }

    #[test]
    fn by_id_names_become_the_id_serial_udev_built_them_from() {
        assert_eq!(
            serial("/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K0TESTSER"),
            "WDC_WD40EFRX-68N32N0_WD-WCC7K0TESTSER"
        );
        assert_eq!(
            serial("/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456"),
            "Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456"
        );
        assert_eq!(
            serial("/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456_1"),
            "Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0N123456"
        );
        assert_eq!(serial("/dev/disk/by-id/virtio-root-disk"), "root-disk");
        assert_eq!(
            serial("/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive0"),
            "0QEMU_QEMU_HARDDISK_drive0"
        );
    }

    #[test]
    fn names_that_can_never_match_are_refused_with_the_form_to_use() {
        for p in [
            "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4",
            "/dev/disk/by-id/nvme-eui.0025388b71b2a1f1",
            "/dev/disk/by-id/usb-SanDisk_Cruzer_4C53-0:0",
            "/dev/disk/by-path/pci-0000:00:17.0-ata-1",
            "/dev/disk/by-uuid/1234-ABCD",
            "/dev/mapper/root",
            "/dev/md0",
        ] {
            let e = refused(p);
            assert!(e.contains("udevadm info"), "{p}: {e}");
        }
    }

    #[test]
    fn partitions_are_refused_naming_their_disk() {
        assert!(refused("/dev/sda1").contains("/dev/sda"));
        assert!(refused("/dev/nvme0n1p2").contains("/dev/nvme0n1"));
        assert!(refused("/dev/mmcblk0p1").contains("/dev/mmcblk0"));
        assert!(
            refused("/dev/disk/by-id/ata-WDC_X_Y-part1").contains("/dev/disk/by-id/ata-WDC_X_Y")
        );
    }

    #[test]
    fn kernel_names_and_their_globs_pass_as_paths() {
        for p in [
            "/dev/sda",
            "/dev/vdb",
            "/dev/nvme0n1",
            "/dev/nvme0n*",
            "/dev/mmcblk0",
            "/dev/sd[ab]",
        ] {
            assert_eq!(parse(p), Ok(DiskPath::Kernel(p.into())));
        }
    }
}
