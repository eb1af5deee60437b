//! `discover --cluster FILE --machine NAME=MAC`: the discovered `mac`,
//! `interface` and `disk` written into the named machines of the cluster
//! file as text edits at the places the YAML parser reports (a value
//! replaced where it stands, a missing key added after the machine's last
//! one), so every comment, blank line and quoting choice of the file stays.
//! The result must pass the same validation as `check` before it replaces
//! the file, atomically; on any error nothing is written.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use granit_parser::{Event, Parser, StructureStyle};

use crate::diag::{Diagnostic, InputErrors, Pos, nearest, shown};

use super::entry::{self, Entry, disk_value, normalize_mac, yaml_scalar};
use super::report::Report;

/// A YAML node with where it stands in the text (byte offsets).
#[derive(Debug)]
struct Node {
    kind: Kind,
    start: usize,
    end: usize,
    line: usize,
    /// 0-based.
    col: usize,
    flow: bool,
}

#[derive(Debug)]
enum Kind {
    Scalar(String),
    Map(Vec<(Node, Node)>),
    Seq(Vec<Node>),
    Other,
}

impl Node {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line as u64,
            column: self.col as u64 + 1,
        }
    }
    fn get(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(&k.kind, Kind::Scalar(s) if s == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }
    fn scalar(&self) -> Option<&str> {
        match &self.kind {
            Kind::Scalar(s) => Some(s),
            _ => None,
        }
    }
}

/// The document's root node, built from the parser's events. Only called
/// on text that already parsed as a cluster file.
fn tree(text: &str) -> Option<Node> {
    // Character index to byte offset, for parsers that report only the former.
    let bytes_at: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .collect();
    let at = |m: &granit_parser::Marker| {
        m.byte_offset()
            .or_else(|| bytes_at.get(m.index()).copied())
            .unwrap_or(text.len())
    };
    let mut stack: Vec<(Node, Vec<Node>)> = Vec::new();
    let mut root = None;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.ok()?;
        let node = |kind: Kind, flow: bool| Node {
            kind,
            start: at(&span.start),
            end: at(&span.end),
            line: span.start.line(),
            col: span.start.col(),
            flow,
        };
        let done = match event {
            Event::Scalar(v, ..) => Some(node(Kind::Scalar(v.into_owned()), false)),
            Event::Alias(_) => Some(node(Kind::Other, false)),
            Event::MappingStart(style, ..) => {
                stack.push((
                    node(Kind::Map(Vec::new()), style == StructureStyle::Flow),
                    Vec::new(),
                ));
                None
            }
            Event::SequenceStart(style, ..) => {
                stack.push((
                    node(Kind::Seq(Vec::new()), style == StructureStyle::Flow),
                    Vec::new(),
                ));
                None
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (mut n, children) = stack.pop()?;
                // A block collection ends where its last child does; a flow
                // one at its closing bracket.
                n.end = if n.flow {
                    at(&span.end).max(n.start)
                } else {
                    children.iter().map(|c| c.end).max().unwrap_or(n.start)
                };
                n.kind = match n.kind {
                    Kind::Map(_) => {
                        let mut it = children.into_iter();
                        let mut entries = Vec::new();
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            entries.push((k, v));
                        }
                        Kind::Map(entries)
                    }
                    _ => Kind::Seq(children),
                };
                Some(n)
            }
            _ => None,
        };
        if let Some(n) = done {
            match stack.last_mut() {
                Some((_, children)) => children.push(n),
                None => root = Some(n),
            }
        }
    }
    root
}

/// One machine to fill: its name and the MAC the user gave.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub mac: String,
}

/// Parses `NAME=MAC`.
pub fn parse_request(s: &str) -> Result<Request, String> {
    let Some((name, mac)) = s.split_once('=') else {
        return Err(format!(
            "got {}; expected NAME=MAC, such as worker-1=52:54:00:12:34:56",
            shown(s)
        ));
    };
    let Some(mac) = normalize_mac(mac.trim()) else {
        return Err(format!(
            "{}: {} is not a MAC address; expected NAME=MAC, such as worker-1=52:54:00:12:34:56",
            shown(s),
            shown(mac)
        ));
    };
    Ok(Request {
        name: name.trim().to_string(),
        mac,
    })
}

/// What filling one machine did.
#[derive(Debug, serde::Serialize)]
pub struct Filled {
    pub machine: String,
    pub report: String,
    #[serde(flatten)]
    pub entry: Entry,
    /// The keys whose text changed (`mac`, `interface`, `disk`).
    pub changed: Vec<&'static str>,
    /// Line of the machine's entry (its `name`).
    pub line: usize,
}

struct Edit {
    start: usize,
    end: usize,
    text: String,
}

/// Fills the requested machines of `file` from `reports`; writes the file
/// only when every request succeeds and the result validates.
pub fn fill(
    file: &Path,
    reports: &[Report],
    requests: &[Request],
    force: bool,
    profiles: Option<&Path>,
) -> anyhow::Result<Vec<Filled>> {
    let text = crate::input::read_text(file, crate::input::CLUSTER_FILE)?;
    let profile_set = crate::profile::Profiles::load(profiles)?;
    // The file as it is must pass check: an error found afterwards would
    // otherwise look like this command's doing.
    let raw = crate::schema::parse(file, &text)?;
    profile_set.release(&raw.release.value)?;
    crate::validate::validate(file, &raw, &profile_set)?;
    let root = tree(&text).context("the cluster file parsed once but not twice")?;
    let (machines_key, machines) = match root.get("machines") {
        Some((
            k,
            v @ Node {
                kind: Kind::Seq(_), ..
            },
        )) => (k, v),
        _ => anyhow::bail!("the cluster file has no machines list"),
    };
    let Kind::Seq(items) = &machines.kind else {
        unreachable!("matched above")
    };
    let names: Vec<&str> = items
        .iter()
        .filter_map(|m| m.get("name").and_then(|(_, v)| v.scalar()))
        .collect();
    let mut errors = Vec::new();
    let mut edits = Vec::new();
    let mut filled = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for req in requests {
        let at = |field: &str, pos: Pos, msg: String| Diagnostic::error(file, pos, field, msg);
        if seen.contains(&req.name.as_str()) {
            errors.push(Diagnostic::error(
                Path::new("--machine"),
                Pos::default(),
                "",
                format!("{} is named twice", req.name),
            ));
            continue;
        }
        seen.push(&req.name);
        if let Some(other) = requests
            .iter()
            .find(|o| o.mac == req.mac && o.name != req.name)
            .filter(|o| o.name < req.name)
        {
            errors.push(Diagnostic::error(
                Path::new("--machine"),
                Pos::default(),
                "",
                format!(
                    "{} and {} are both given MAC {}; one card belongs to one machine",
                    other.name, req.name, req.mac
                ),
            ));
            continue;
        }
        let Some((index, item)) = items
            .iter()
            .enumerate()
            .find(|(_, m)| m.get("name").and_then(|(_, v)| v.scalar()) == Some(req.name.as_str()))
        else {
            let hint = nearest(&req.name, &names)
                .map(|n| format!("; did you mean {n:?}?"))
                .unwrap_or_default();
            errors.push(at(
                "machines",
                machines_key.pos(),
                format!(
                    "no machine named {} (--machine {}={}); the file has {}{hint}",
                    shown(&req.name),
                    req.name,
                    req.mac,
                    names.join(", ")
                ),
            ));
            continue;
        };
        let found = reports
            .iter()
            .find_map(|r| entry::nic_with_mac(r, &req.mac).map(|n| (r, n)));
        let Some((report, nic)) = found else {
            let known: Vec<String> = reports
                .iter()
                .map(|r| {
                    let macs: Vec<&str> = r.nics.iter().map(|n| n.mac()).collect();
                    format!("{} ({})", r.file, macs.join(", "))
                })
                .collect();
            errors.push(Diagnostic::error(
                Path::new("--machine"),
                Pos::default(),
                "",
                format!(
                    "{}={}: no report has a network card with this MAC; the reports hold {}",
                    req.name,
                    req.mac,
                    known.join("; ")
                ),
            ));
            continue;
        };
        if nic.wireless {
            errors.push(Diagnostic::error(
                Path::new("--machine"),
                Pos::default(),
                "",
                format!(
                    "{}={}: that is {}, a wireless card ({}); the machine's address is set up \
                     on a wired card: give a wired card's MAC",
                    req.name, req.mac, nic.name, report.file
                ),
            ));
            continue;
        }
        // Another machine of the file with the same MAC: validation would
        // refuse the result; say where the other one is.
        for (j, other) in items.iter().enumerate() {
            if j == index {
                continue;
            }
            if let Some((_, v)) = other.get("mac")
                && v.scalar().and_then(normalize_mac).as_deref() == Some(req.mac.as_str())
            {
                errors.push(at(
                    &format!("machines[{j}].mac"),
                    v.pos(),
                    format!(
                        "{} already has MAC {}; it cannot also be {}'s",
                        names.get(j).copied().unwrap_or("another machine"),
                        req.mac,
                        req.name
                    ),
                ));
            }
        }
        let e = entry::with_nic(
            report,
            nic,
            format!("the card with MAC {} (--machine)", req.mac),
        );
        let mut wanted: Vec<(&'static str, String)> = vec![
            ("mac", e.mac.clone()),
            ("interface", yaml_scalar(&e.interface)),
        ];
        if let Some(serial) = &e.disk_serial {
            wanted.push(("disk", disk_value(serial)));
        }
        let mut changed = Vec::new();
        let mut missing = Vec::new();
        for (key, new_text) in wanted {
            match item.get(key) {
                None => missing.push((key, new_text)),
                // `mac:` with no value, `~` or `null`: unset, filled in place.
                Some((_, v)) if v.scalar().is_some_and(is_null) => {
                    let (start, text) = if v.start == v.end {
                        // An empty value stands at the key's colon.
                        let colon = text[v.start..]
                            .find(':')
                            .map_or(v.start, |i| v.start + i + 1);
                        (colon, format!(" {new_text}"))
                    } else {
                        (v.start, new_text)
                    };
                    let end = if v.start == v.end { start } else { v.end };
                    edits.push(Edit { start, end, text });
                    changed.push(key);
                }
                Some((_, v)) => {
                    let same = match key {
                        "mac" => {
                            v.scalar().and_then(normalize_mac).as_deref() == Some(e.mac.as_str())
                        }
                        "interface" => v.scalar() == Some(e.interface.as_str()),
                        _ => {
                            v.get("serial").and_then(|(_, s)| s.scalar())
                                == e.disk_serial.as_deref()
                                && matches!(&v.kind, Kind::Map(m) if m.len() == 1)
                        }
                    };
                    if same {
                        continue;
                    }
                    if !force {
                        errors.push(at(
                            &format!("machines[{index}].{key}"),
                            v.pos(),
                            format!(
                                "already set to {}; the report {} says {new_text} (pass --force to replace it)",
                                text.get(v.start..v.end).unwrap_or("?").trim(),
                                report.file
                            ),
                        ));
                        continue;
                    }
                    edits.push(Edit {
                        start: v.start,
                        end: v.end,
                        text: new_text,
                    });
                    changed.push(key);
                }
            }
        }
        if !missing.is_empty() {
            let Kind::Map(entries) = &item.kind else {
                anyhow::bail!("machines[{index}] is not a mapping");
            };
            if item.flow {
                // `- {name: a, role: b, ip: c}`: before the closing brace.
                let close = text[..item.end].rfind('}').unwrap_or(item.end);
                let add: String = missing.iter().map(|(k, v)| format!(", {k}: {v}")).collect();
                edits.push(Edit {
                    start: close,
                    end: close,
                    text: add,
                });
            } else {
                let indent = entries.first().map_or(4, |(k, _)| k.col);
                let last_end = entries.iter().map(|(_, v)| v.end).max().unwrap_or(item.end);
                let mut eol = text[last_end..]
                    .find('\n')
                    .map_or(text.len(), |i| last_end + i);
                // A file written with CRLF line ends keeps them.
                let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
                if eol > last_end && text.as_bytes()[eol - 1] == b'\r' {
                    eol -= 1;
                }
                let add: String = missing
                    .iter()
                    .map(|(k, v)| format!("{nl}{}{k}: {v}", " ".repeat(indent)))
                    .collect();
                edits.push(Edit {
                    start: eol,
                    end: eol,
                    text: add,
                });
            }
            changed.extend(missing.iter().map(|(k, _)| *k));
        }
        filled.push(Filled {
            machine: req.name.clone(),
            report: report.file.clone(),
            entry: e,
            changed,
            line: item.line,
        });
    }
    if !errors.is_empty() {
        return Err(InputErrors(errors).into());
    }
    if edits.is_empty() {
        return Ok(filled);
    }
    edits.sort_by_key(|e| std::cmp::Reverse((e.start, e.end)));
    let mut new_text = text.clone();
    for e in &edits {
        new_text.replace_range(e.start..e.end, &e.text);
    }
    // The result must pass check, or the file stays as it was.
    let raw = crate::schema::parse(file, &new_text).map_err(after_fill)?;
    crate::validate::validate(file, &raw, &profile_set).map_err(after_fill)?;
    write_atomically(file, &new_text)?;
    Ok(filled)
}

/// YAML 1.2's null, as the cluster file's parser reads it.
fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// Errors in the filled-in text: said to be so, since their lines are
/// those of a file that was not written.
fn after_fill(e: InputErrors) -> InputErrors {
    InputErrors(
        e.0.into_iter()
            .map(|d| Diagnostic {
                message: format!(
                    "{} (in the file as filled in, which was not written)",
                    d.message
                ),
                ..d
            })
            .collect(),
    )
}

/// Replaces `file` (the file a symbolic link names, when it is one) with
/// `text` by a rename in its directory, keeping its mode and owner.
fn write_atomically(file: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let target =
        std::fs::canonicalize(file).with_context(|| format!("resolving {}", file.display()))?;
    let dir = target
        .parent()
        .context("the cluster file has no directory")?;
    let meta = std::fs::metadata(&target)?;
    let mode = meta.permissions().mode() & 0o7777;
    let mut tmp = tempfile::Builder::new()
        .prefix(".microseed-discover-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    // Reading the stick takes `sudo`: the file must not become root's.
    // Only root can give a file away; anyone else already owns the new one.
    if meta.uid() != tmp.as_file().metadata()?.uid() {
        std::os::unix::fs::fchown(tmp.as_file(), Some(meta.uid()), Some(meta.gid()))
            .with_context(|| format!("keeping the owner of {}", target.display()))?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(&target)
        .with_context(|| format!("replacing {}", target.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_cover_scalars_and_flow_maps_exactly() {
        let text = "a:\n  - name: x # c\n    mac: \"52:54:00:00:00:01\"\n    disk: {serial: 'S 1'}\n  - {name: y, ip: z}\n";
        let root = tree(text).expect("tree");
        let (_, seq) = root.get("a").expect("a");
        let Kind::Seq(items) = &seq.kind else {
            panic!("seq")
        };
        let (_, mac) = items[0].get("mac").expect("mac");
        assert_eq!(&text[mac.start..mac.end], "\"52:54:00:00:00:01\"");
        let (_, disk) = items[0].get("disk").expect("disk");
        assert_eq!(&text[disk.start..disk.end], "{serial: 'S 1'}");
        let (k, name) = items[0].get("name").expect("name");
        assert_eq!(&text[name.start..name.end], "x");
        assert_eq!(k.col, 4);
        assert!(items[1].flow);
        assert_eq!(&text[items[1].start..items[1].end], "{name: y, ip: z}");
    }
}
