//! The discovery report `discover.sh` writes, read back: `KEY VALUE` lines
//! (docs/discover.md). A value is the rest of its line, taken as it is,
//! never interpreted; `nic NAME`, `disk NAME` and `part NAME` start a record
//! that the `nic.*`, `disk.*` and `part.*` lines after it fill. Keys this
//! release does not know are skipped, so a newer script's report still reads.

/// The first fact of every report: the format's version.
pub const HEADER: &str = "microseed-report";
/// The format version this release reads.
pub const VERSION: &str = "1";
/// The longest report read (a machine with a hundred disks is far below).
pub const MAX_REPORT_BYTES: u64 = 256 * 1024;

/// One network card.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Nic {
    pub name: String,
    /// The current address.
    pub address: String,
    /// The burnt-in address (lower case), what select.sh matches `mac`
    /// against; empty when the script could not learn it.
    pub permanent: String,
    /// How the permanent address was learnt: `ethtool`, `addr_assign_type`, `ip`.
    pub permanent_from: String,
    pub operstate: String,
    pub carrier: bool,
    /// Mb/s; `None` without a link.
    pub speed: Option<u64>,
    pub driver: String,
    pub bus: String,
    pub wireless: bool,
}

impl Nic {
    /// The address `mac:` gets: the permanent one, else the current one.
    pub fn mac(&self) -> &str {
        if self.permanent.is_empty() {
            &self.address
        } else {
            &self.permanent
        }
    }
}

/// One partition of a disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    pub name: String,
    pub size: u64,
    pub fstype: String,
    pub label: String,
}

/// One disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Disk {
    pub name: String,
    /// Bytes.
    pub size: u64,
    pub removable: bool,
    pub rotational: bool,
    /// `usb`, `nvme`, `mmc`, or udev's `ID_BUS` (`ata`, `scsi`...).
    pub transport: String,
    pub model: String,
    pub vendor: String,
    /// udev's `ID_SERIAL`: what subiquity's `match: {serial: …}` compares.
    pub id_serial: String,
    pub id_serial_short: String,
    pub wwn: String,
    /// `/dev/disk/by-id/…` links.
    pub by_id: Vec<String>,
    pub parts: Vec<Part>,
}

impl Disk {
    /// A disk that may leave the machine: flagged removable, or on USB.
    pub fn is_removable(&self) -> bool {
        self.removable || self.transport == "usb"
    }
}

/// What one machine reported.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// The report's file name (`52-54-00-12-34-56.txt`).
    pub file: String,
    pub time: String,
    /// `uefi` or `bios`: how the installer was booted.
    pub firmware: String,
    pub sys_vendor: String,
    pub product_name: String,
    pub product_version: String,
    pub product_serial: String,
    pub board_vendor: String,
    pub board_name: String,
    pub board_serial: String,
    pub nics: Vec<Nic>,
    pub disks: Vec<Disk>,
    /// Disks the script left out (the stick), with why.
    pub skipped: Vec<String>,
    /// Why the stick installed nothing on this machine (`reason` lines the
    /// selector appends after discover.sh wrote the report).
    pub reasons: Vec<String>,
}

fn flag(v: &str) -> bool {
    v == "1"
}

/// Reads a report's text; `file` names it in errors. An error is a text
/// that is not a report at all (no `microseed-report` line first, or a
/// version this release does not read).
pub fn parse(file: &str, text: &str) -> Result<Report, String> {
    let mut r = Report {
        file: file.to_string(),
        ..Report::default()
    };
    let mut seen_header = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        if !seen_header {
            if key != HEADER {
                return Err(format!(
                    "line {}: expected `{HEADER} {VERSION}` first; this is not a microseed discovery report",
                    i + 1
                ));
            }
            if value != VERSION {
                return Err(format!(
                    "line {}: report format {value:?}; this microseed reads format {VERSION} (update microseed)",
                    i + 1
                ));
            }
            seen_header = true;
            continue;
        }
        let v = value.to_string();
        match key {
            "time" => r.time = v,
            "firmware" => r.firmware = v,
            "dmi.sys_vendor" => r.sys_vendor = v,
            "dmi.product_name" => r.product_name = v,
            "dmi.product_version" => r.product_version = v,
            "dmi.product_serial" => r.product_serial = v,
            "dmi.board_vendor" => r.board_vendor = v,
            "dmi.board_name" => r.board_name = v,
            "dmi.board_serial" => r.board_serial = v,
            "nic" => r.nics.push(Nic {
                name: v,
                ..Nic::default()
            }),
            "disk" => r.disks.push(Disk {
                name: v,
                ..Disk::default()
            }),
            "skipped" => r.skipped.push(v),
            "reason" => r.reasons.push(v),
            "part" => {
                if let Some(d) = r.disks.last_mut() {
                    d.parts.push(Part {
                        name: v,
                        ..Part::default()
                    });
                }
            }
            k if k.starts_with("nic.") => {
                if let Some(n) = r.nics.last_mut() {
                    match &k[4..] {
                        "address" => n.address = v.to_ascii_lowercase(),
                        "permanent" => n.permanent = v.to_ascii_lowercase(),
                        "permanent_from" => n.permanent_from = v,
                        "operstate" => n.operstate = v,
                        "carrier" => n.carrier = flag(&v),
                        "speed" => n.speed = v.parse().ok(),
                        "driver" => n.driver = v,
                        "bus" => n.bus = v,
                        "wireless" => n.wireless = flag(&v),
                        _ => {}
                    }
                }
            }
            k if k.starts_with("disk.") => {
                if let Some(d) = r.disks.last_mut() {
                    match &k[5..] {
                        "size" => d.size = v.parse().unwrap_or(0),
                        "removable" => d.removable = flag(&v),
                        "rotational" => d.rotational = flag(&v),
                        "transport" => d.transport = v,
                        "model" => d.model = v,
                        "vendor" => d.vendor = v,
                        "id_serial" => d.id_serial = v,
                        "id_serial_short" => d.id_serial_short = v,
                        "wwn" => d.wwn = v,
                        "by_id" => d.by_id.push(v),
                        _ => {}
                    }
                }
            }
            k if k.starts_with("part.") => {
                if let Some(p) = r.disks.last_mut().and_then(|d| d.parts.last_mut()) {
                    match &k[5..] {
                        "size" => p.size = v.parse().unwrap_or(0),
                        "fstype" => p.fstype = v,
                        "label" => p.label = v,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !seen_header {
        return Err(format!(
            "empty; expected `{HEADER} {VERSION}` first (a microseed discovery report)"
        ));
    }
    Ok(r)
}

/// Bytes as the decimal size disk labels print (`512.1 GB`, `2.0 TB`).
pub fn human(bytes: u64) -> String {
    let tenths = bytes / 100_000_000;
    if tenths >= 10_000 {
        format!("{}.{} TB", tenths / 10_000, tenths / 1000 % 10)
    } else {
        format!("{}.{} GB", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_spaces_and_quotes_and_records_collect_their_lines() {
        let text = "# comment\nmicroseed-report 1\ndmi.sys_vendor  Dell Inc. \"quoted\" 'x' $(rm -rf /)\n\
                    nic eno1\nnic.permanent AA:BB:CC:00:11:22\nnic.carrier 1\nnic.speed 1000\n\
                    disk sda\ndisk.size 1000\ndisk.by_id /dev/disk/by-id/a\ndisk.by_id /dev/disk/by-id/b\n\
                    part sda1\npart.label my data\ndisk sdb\nfuture.key whatever\nreason no machine has MAC aa:bb\n";
        let r = parse("x.txt", text).expect("report");
        assert_eq!(r.sys_vendor, " Dell Inc. \"quoted\" 'x' $(rm -rf /)");
        assert_eq!(r.nics.len(), 1);
        assert_eq!(r.nics[0].permanent, "aa:bb:cc:00:11:22");
        assert!(r.nics[0].carrier);
        assert_eq!(r.nics[0].speed, Some(1000));
        assert_eq!(r.disks.len(), 2);
        assert_eq!(r.disks[0].by_id.len(), 2);
        assert_eq!(r.disks[0].parts[0].label, "my data");
        assert!(r.disks[1].parts.is_empty());
        assert_eq!(r.reasons, ["no machine has MAC aa:bb"]);
    }

    #[test]
    fn a_text_without_the_header_or_of_another_version_is_no_report() {
        assert!(parse("x", "nic eth0\n").is_err());
        assert!(parse("x", "").is_err());
        let e = parse("x", "microseed-report 2\n").expect_err("version");
        assert!(e.contains("format \"2\""), "{e}");
    }

    #[test]
    fn sizes_read_as_disk_labels_print_them() {
        assert_eq!(human(512_110_190_592), "512.1 GB");
        assert_eq!(human(2_000_398_934_016), "2.0 TB");
        assert_eq!(human(0), "0.0 GB");
    }
}
