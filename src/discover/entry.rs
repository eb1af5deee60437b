//! From one report to the values a `machines:` entry takes (`mac`,
//! `interface`, `disk`), each with the reason it was chosen, and the entry
//! as text to paste, with the hardware facts as YAML comments.

use super::report::{Disk, Nic, Report, human};

/// The values discovered for one machine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Entry {
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    pub interface: String,
    /// udev's `ID_SERIAL` of the install disk, made a glob where it holds
    /// characters a cluster file's serial cannot (each becomes `?`); `None`
    /// when the disk has none (the entry then keeps `largest`).
    pub disk_serial: Option<String>,
    /// The install disk's kernel name.
    pub disk_name: Option<String>,
    /// Why this card and this disk, one sentence each.
    pub why_interface: String,
    pub why_disk: String,
    /// What else to know before the install disk is erased: filesystems on
    /// it, other fixed disks (an NFS data disk, `nfs.data_disk`).
    pub notes: Vec<String>,
}

/// Characters a serial in the cluster file may hold besides letters and
/// digits (`validate::is_serial`); subiquity globs `*?[]`.
const SERIAL_PUNCT: &[u8] = b"_-.:";

/// `ID_SERIAL` as a cluster-file serial: a character the file cannot hold,
/// or one subiquity would read as a glob, becomes `?` (matches any one
/// character); `None` when nothing of it is left to match on.
pub fn serial_glob(id_serial: &str) -> Option<String> {
    let s: String = id_serial
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || (c.is_ascii() && SERIAL_PUNCT.contains(&(c as u8))) {
                c
            } else {
                '?'
            }
        })
        .collect();
    (!s.is_empty() && s.len() <= 128 && s.chars().any(|c| c.is_ascii_alphanumeric())).then_some(s)
}

/// Whether `name` can be a cluster file's `interface` (`validate::is_ifname`).
fn is_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
        && s != "."
        && s != ".."
}

/// A MAC as `aa:bb:cc:dd:ee:ff`, or `None` when `s` is not one.
pub fn normalize_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    (parts.len() == 6
        && !(s.contains(':') && s.contains('-'))
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit())))
    .then(|| s.to_ascii_lowercase().replace('-', ":"))
}

/// The card whose permanent (or, unknown that, current) address is `mac`.
pub fn nic_with_mac<'a>(r: &'a Report, mac: &str) -> Option<&'a Nic> {
    r.nics
        .iter()
        .find(|n| n.permanent == mac)
        .or_else(|| r.nics.iter().find(|n| n.address == mac))
}

/// The card the machine's address goes to: the first wired card with a
/// link, else the first wired card, else the first card.
pub fn pick_nic(r: &Report) -> Option<(&Nic, String)> {
    let usable: Vec<&Nic> = r.nics.iter().filter(|n| is_ifname(&n.name)).collect();
    let wired: Vec<&Nic> = usable.iter().copied().filter(|n| !n.wireless).collect();
    let linked: Vec<&Nic> = wired.iter().copied().filter(|n| n.carrier).collect();
    if let Some(first) = linked.first() {
        let why = match linked.len() {
            1 if wired.len() == 1 => "the only wired card".to_string(),
            1 => "the only wired card with a link".to_string(),
            _ => format!(
                "the first of {} wired cards with a link ({}): plug the cluster's cable into it, \
                 or name another card with --machine NAME=MAC",
                linked.len(),
                linked
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return Some((first, why));
    }
    if let Some(first) = wired.first() {
        return Some((
            first,
            "no wired card had a link when the machine booted the stick: the first wired card \
             (plug the cluster's cable into it)"
                .to_string(),
        ));
    }
    usable.first().map(|n| {
        (
            *n,
            "no wired card: a wireless one, which microseed's static network does not set up \
             (add a wired card)"
                .to_string(),
        )
    })
}

/// The disk to install onto: the largest fixed disk (what subiquity's
/// default `largest` match picks when no removable disk is larger), else
/// the largest disk.
pub fn pick_disk(r: &Report) -> Option<(&Disk, String)> {
    let by_size = |a: &&Disk, b: &&Disk| b.size.cmp(&a.size);
    let mut all: Vec<&Disk> = r.disks.iter().filter(|d| d.size > 0).collect();
    all.sort_by(by_size);
    let fixed: Vec<&Disk> = all.iter().copied().filter(|d| !d.is_removable()).collect();
    let (pick, mut why) = match fixed.first() {
        Some(d) => (*d, format!("{}, the largest fixed disk", d.name)),
        None => {
            let d = all.first()?;
            (
                *d,
                format!(
                    "{}, the largest disk (every disk is removable or on USB: is this the right machine?)",
                    d.name
                ),
            )
        }
    };
    // subiquity (models/filesystem.py `disk_for_match`, 20.04.3 and
    // 22.07.2) sorts every disk but the install media by size: a larger
    // USB disk plugged in would win over the internal one.
    if let Some(big) = all.first()
        && big.name != pick.name
    {
        why += &format!(
            "; `disk: largest` would pick {} ({}, removable) instead",
            big.name,
            human(big.size)
        );
    } else {
        why += ", which `disk: largest` would pick too";
    }
    if let Some(twin) = fixed
        .iter()
        .find(|d| d.name != pick.name && d.size == pick.size)
    {
        why += &format!(
            "; {} is just as large: check which one should be erased",
            twin.name
        );
    }
    Some((pick, why))
}

/// The entry for a report, picking the card itself; `None` without any
/// usable card.
pub fn for_report(r: &Report) -> Option<Entry> {
    let (nic, why_interface) = pick_nic(r)?;
    Some(with_nic(r, nic, why_interface))
}

/// The entry for a report with the given card.
pub fn with_nic(r: &Report, nic: &Nic, why_interface: String) -> Entry {
    let (disk_serial, disk_name, why_disk) = match pick_disk(r) {
        Some((d, why)) => match serial_glob(&d.id_serial) {
            Some(s) if s == d.id_serial => (
                Some(s),
                Some(d.name.clone()),
                format!(
                    "{why}; pinned by its ID_SERIAL, so a disk added later cannot take its place"
                ),
            ),
            Some(s) => (
                Some(s),
                Some(d.name.clone()),
                format!(
                    "{why}; pinned by its ID_SERIAL {:?}, whose characters a cluster file \
                     cannot hold are each written as `?` (any one character)",
                    d.id_serial
                ),
            ),
            None => (
                None,
                Some(d.name.clone()),
                format!("{why}; udev gave it no ID_SERIAL, so `disk` stays `largest`"),
            ),
        },
        None => (
            None,
            None,
            "no disk found: `disk` stays `largest`".to_string(),
        ),
    };
    let mut notes = Vec::new();
    if let Some(name) = &disk_name
        && let Some(d) = r.disks.iter().find(|d| &d.name == name)
    {
        let used: Vec<String> = d
            .parts
            .iter()
            .filter(|p| !p.fstype.is_empty())
            .map(|p| {
                if p.label.is_empty() {
                    format!("{} ({})", p.name, p.fstype)
                } else {
                    format!("{} ({} {:?})", p.name, p.fstype, p.label)
                }
            })
            .collect();
        if !used.is_empty() {
            notes.push(format!(
                "{} holds filesystems, which the install erases: {}",
                d.name,
                used.join(", ")
            ));
        }
        let others: Vec<String> = r
            .disks
            .iter()
            .filter(|o| o.name != d.name && !o.is_removable() && o.size > 0)
            .map(|o| {
                format!(
                    "{} ({}, ID_SERIAL {})",
                    o.name,
                    human(o.size),
                    if o.id_serial.is_empty() {
                        "unknown"
                    } else {
                        &o.id_serial
                    }
                )
            })
            .collect();
        if !others.is_empty() {
            notes.push(format!(
                "other fixed disks, left alone by the install: {}; on the NFS server one can hold \
                 the export (`nfs.data_disk`); to install onto another, set `disk` to its serial",
                others.join(", ")
            ));
        }
    }
    Entry {
        notes,
        mac: normalize_mac(nic.mac()).unwrap_or_else(|| nic.mac().to_string()),
        interface: nic.name.clone(),
        disk_serial,
        disk_name,
        why_interface,
        why_disk,
    }
}

/// A string as one YAML scalar, serialized (never text-assembled): quoted
/// when plain text would read as something else.
pub fn yaml_scalar(s: &str) -> String {
    serde_saphyr::to_string(&s)
        .map(|t| t.trim_end_matches('\n').to_string())
        .unwrap_or_else(|_| format!("{s:?}"))
}

/// `{serial: …}`: the flow form, which fits on the key's line. Inside
/// braces `[`, `]`, `:` and `?` can end or start a plain scalar, so any
/// serial but letters, digits, `_`, `-` and `.` is double-quoted (the
/// characters [`serial_glob`] leaves need no escapes there).
pub fn disk_value(serial: &str) -> String {
    if serial
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"_-.".contains(&c))
    {
        format!("{{serial: {serial}}}")
    } else {
        format!("{{serial: \"{serial}\"}}")
    }
}

/// One report's facts as comment lines (`# ` and the text).
pub fn facts(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    out.push(format!(
        "system: {} {}{}, serial {}; booted {}",
        or(&r.sys_vendor, "unknown vendor"),
        or(&r.product_name, "unknown product"),
        if r.product_version.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.product_version)
        },
        or(&r.product_serial, "unknown"),
        or(&r.firmware, "?")
    ));
    out.push("network cards:".into());
    for n in &r.nics {
        let mut link = if n.carrier {
            match n.speed {
                Some(s) => format!("link up, {s} Mb/s"),
                None => "link up".into(),
            }
        } else {
            "no link".into()
        };
        if n.wireless {
            link += ", wireless";
        }
        let mac = if n.permanent.is_empty() {
            format!(
                "{} (current; permanent unknown)",
                or(&n.address, "no address")
            )
        } else {
            n.permanent.clone()
        };
        out.push(format!(
            "  {}  {mac}  {link}{}",
            n.name,
            if n.driver.is_empty() {
                String::new()
            } else {
                format!(", {}", n.driver)
            }
        ));
    }
    if r.nics.is_empty() {
        out.push("  none".into());
    }
    out.push("disks:".into());
    for d in &r.disks {
        let mut flags = String::new();
        if d.removable {
            flags += ", removable";
        }
        if d.transport == "usb" {
            flags += ", USB";
        }
        out.push(format!(
            "  {}  {}  {}{flags}  ID_SERIAL {}",
            d.name,
            human(d.size),
            or(&d.model, "unknown model"),
            or(&d.id_serial, "unknown")
        ));
        for l in &d.by_id {
            out.push(format!("    {l}"));
        }
        for p in &d.parts {
            let mut what = human(p.size);
            if !p.fstype.is_empty() {
                what += &format!(" {}", p.fstype);
            }
            if !p.label.is_empty() {
                what += &format!(" labelled {:?}", p.label);
            }
            out.push(format!("    {}: {what}", p.name));
        }
    }
    if r.disks.is_empty() {
        out.push("  none".into());
    }
    out
}

/// The text printed for one report: its facts and reasons as comments,
/// then the lines to paste into a machine's entry (indented as `init`
/// writes machines).
pub fn render(r: &Report, e: Option<&Entry>) -> String {
    let mut s = format!("# {}", r.file);
    if !r.time.is_empty() {
        s += &format!(" (saved {})", r.time);
    }
    s.push('\n');
    for why in &r.reasons {
        s += &format!("# nothing installed: {why}\n");
    }
    for l in facts(r) {
        s += &format!("#   {l}\n");
    }
    let Some(e) = e else {
        s += "# no network card to give the machine's address to: nothing to fill in\n";
        return s;
    };
    s += &format!("# interface: {}\n", e.why_interface);
    s += &format!("# disk: {}\n", e.why_disk);
    for n in &e.notes {
        s += &format!("# note: {n}\n");
    }
    s += "# paste under the machine's `- name:` line (or: microseed discover SRC --cluster FILE --machine NAME=MAC)\n";
    s += &format!("    mac: {}\n", e.mac);
    s += &format!("    interface: {}\n", yaml_scalar(&e.interface));
    match &e.disk_serial {
        Some(serial) => s += &format!("    disk: {}\n", disk_value(serial)),
        None => s += "    disk: largest\n",
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(name: &str, size: u64, removable: bool, serial: &str) -> Disk {
        Disk {
            name: name.into(),
            size,
            removable,
            id_serial: serial.into(),
            ..Disk::default()
        }
    }

    #[test]
    fn the_largest_fixed_disk_is_picked_and_a_larger_removable_one_is_named() {
        let r = Report {
            disks: vec![
                disk("sda", 500, false, "A"),
                disk("sdb", 2000, true, "B"),
                disk("nvme0n1", 1000, false, "C"),
            ],
            ..Report::default()
        };
        let (d, why) = pick_disk(&r).expect("disk");
        assert_eq!(d.name, "nvme0n1");
        assert!(why.contains("would pick sdb"), "{why}");
    }

    #[test]
    fn a_serial_with_flow_indicators_is_quoted_and_reads_back_as_written() {
        for serial in ["SN_A1", "ab:c?d[1]*", "WD-1.0"] {
            let text = format!("disk: {}\n", disk_value(serial));
            #[derive(serde::Deserialize)]
            struct D {
                disk: crate::schema::DiskChoice,
            }
            let d: D = serde_saphyr::from_str(&text).expect("yaml");
            assert_eq!(
                d.disk,
                crate::schema::DiskChoice::Serial(serial.into()),
                "{text}"
            );
        }
    }

    #[test]
    fn a_serial_with_characters_the_file_cannot_hold_becomes_a_glob() {
        assert_eq!(
            serial_glob("WD_Blue+1TB#2").as_deref(),
            Some("WD_Blue?1TB?2")
        );
        assert_eq!(serial_glob("ab*c[1]").as_deref(), Some("ab?c?1?"));
        assert_eq!(serial_glob("#+="), None);
        assert_eq!(serial_glob(""), None);
    }

    #[test]
    fn the_wired_card_with_a_link_wins_over_wireless_and_unplugged_ones() {
        let nic = |name: &str, carrier: bool, wireless: bool| Nic {
            name: name.into(),
            permanent: "52:54:00:00:00:01".into(),
            carrier,
            wireless,
            ..Nic::default()
        };
        let r = Report {
            nics: vec![
                nic("enp1s0", false, false),
                nic("enp2s0", true, false),
                nic("wlp3s0", true, true),
            ],
            ..Report::default()
        };
        let (n, why) = pick_nic(&r).expect("nic");
        assert_eq!(n.name, "enp2s0");
        assert!(why.contains("only wired card with a link"), "{why}");
    }
}
