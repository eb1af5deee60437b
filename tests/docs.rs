//! The documentation as a reader meets it (issue 28): the README stays a
//! quick start a staker reads to the end, every relative link in README.md
//! and docs/*.md reaches a file and heading that exist, and
//! docs/cluster-file.md lists exactly the keys the cluster file parser
//! accepts, in the parser's order, with the defaults the parser fills in.
//! The key list is read from the parser itself (serde's own "expected one
//! of" list for an unknown key, at every level), so a key added to
//! `src/schema.rs` fails here until it is documented.
//! `UPDATE_GOLDEN=1 cargo test --test it docs::` rewrites the reference's
//! table in the parser's order, keeping every documented row and adding a
//! row to fill in for each new key (the test still fails until it is).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common;

/// The most lines the README may have: past this it stops being a quick
/// start and the reference belongs in docs/.
const README_MAX_LINES: usize = 350;

/// Pages being written on another branch: a link to one is accepted while
/// it does not exist here; once it does, it must leave this list so its
/// headings are checked too. Empty when every branch has landed.
const PENDING: &[&str] = &[];

fn read(rel: &str) -> String {
    std::fs::read_to_string(common::root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn readme_is_a_quick_start_of_at_most_350_lines() {
    let readme = read("README.md");
    let n = readme.lines().count();
    assert!(
        n <= README_MAX_LINES,
        "README.md has {n} lines; keep it a quick start of at most {README_MAX_LINES} and move reference material to docs/"
    );
    // The quick start's order is the order a staker acts in.
    let steps = [
        "### 1. Install",
        "### 2. Create the cluster file",
        "### 3. Choose addresses outside your router's DHCP pool",
        "### 4. Find each machine's network card and disk",
        "### 5. Build",
        "### 6. Flash",
        "### 7. Boot",
        "### 8. Take the stick out",
        "### 9. Wait",
        "### 10. Staking",
        "## When a step fails",
    ];
    let mut at = 0;
    for step in steps {
        let found = readme[at..]
            .find(step)
            .unwrap_or_else(|| panic!("README.md: {step:?} missing or out of order"));
        at += found + step.len();
    }
}

/// The markdown files whose links are checked.
fn markdown_files() -> Vec<PathBuf> {
    let root = common::root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// `text` without fenced code blocks and inline code spans, so a link
/// example inside code is not taken for a link. Line count is kept.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            // Even segments between backticks are prose, odd ones code.
            for (i, part) in line.split('`').enumerate() {
                if i % 2 == 0 {
                    out.push_str(part);
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Link targets `[text](target)` in `text`, with their line numbers.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in prose(text).lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let after = &rest[i + 2..];
            let Some(end) = after.find(')') else { break };
            found.push((n + 1, after[..end].to_string()));
            rest = &after[end..];
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (but `-`
/// and `_`), spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every heading anchor of a markdown file, duplicates numbered as GitHub
/// numbers them (`name`, `name-1`, ...).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced || !line.starts_with('#') {
            continue;
        }
        let title = line.trim_start_matches('#');
        if !title.starts_with(' ') {
            continue;
        }
        let s = slug(title);
        let n = seen.entry(s.clone()).or_default();
        out.insert(if *n == 0 {
            s.clone()
        } else {
            format!("{s}-{n}")
        });
        *n += 1;
    }
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(common::root())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// `dir/../x` and `./x` resolved without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Each problem with the relative links of one markdown file.
fn broken_links(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("markdown file");
    let root = common::root();
    let mut problems = Vec::new();
    for (line, target) in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let at = format!("{}:{line}: ({target})", relative(file));
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else {
            normalize(&file.parent().expect("file in a directory").join(path))
        };
        let rel = relative(&resolved);
        if !resolved.exists() {
            if !PENDING.contains(&rel.as_str()) {
                problems.push(format!("{at}: no file {rel}"));
            }
            continue;
        }
        let (Some(anchor), true) = (anchor, rel.ends_with(".md")) else {
            continue;
        };
        let target_text = std::fs::read_to_string(root.join(&rel)).expect("linked file");
        if !anchors(&target_text).contains(anchor) {
            problems.push(format!("{at}: {rel} has no heading #{anchor}"));
        }
    }
    problems
}

#[test]
fn every_relative_link_in_readme_and_docs_resolves() {
    let mut problems = Vec::new();
    for file in markdown_files() {
        problems.extend(broken_links(&file));
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
    let landed: Vec<&str> = PENDING
        .iter()
        .copied()
        .filter(|p| common::root().join(p).exists())
        .collect();
    assert!(
        landed.is_empty(),
        "{landed:?} exist now: remove them from PENDING in tests/docs.rs so links into them are checked"
    );
}

#[test]
fn the_link_checker_finds_a_missing_file_and_a_missing_heading() {
    let dir = tempfile::tempdir().expect("temp dir");
    let page = dir.path().join("page.md");
    std::fs::write(
        &page,
        "# Title\n\n## A `code` heading (yes)\n\nsee [here](#a-code-heading-yes), [gone](#nope),\n[file](missing.md) and `[not a link](x.md)`\n\n```\n[nor this](y.md)\n```\n",
    )
    .expect("write page");
    let problems = broken_links(&page);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].ends_with("has no heading #nope"),
        "{problems:?}"
    );
    assert!(problems[1].contains("no file"), "{problems:?}");
}

/// One step into the cluster file: a key, or every entry of a list.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Each,
}

/// The smallest document the parser reads (the semantic checks come later
/// and are not run), as top-level `key: flow value` lines.
const BASE: &[(&str, &str)] = &[
    ("version", "1"),
    ("name", "x"),
    ("network", "{subnet: 10.0.0.0/24, gateway: 10.0.0.1}"),
    ("admin", "{ssh_keys: []}"),
    ("machines", "[]"),
];

/// The base document with `value` placed at `path`.
fn document_with(path: &[Step], value: &str) -> String {
    let mut inner = value.to_string();
    for step in path.iter().skip(1).rev() {
        inner = match step {
            Step::Key(k) => format!("{{{k}: {inner}}}"),
            Step::Each => format!("[{inner}]"),
        };
    }
    let top = match path.first() {
        Some(Step::Key(k)) => Some(k.as_str()),
        _ => None,
    };
    let mut doc = String::new();
    for (k, v) in BASE {
        if Some(*k) != top {
            doc.push_str(&format!("{k}: {v}\n"));
        }
    }
    match top {
        Some(k) => doc.push_str(&format!("{k}: {inner}\n")),
        None => doc.push_str(&format!("{value}\n")),
    }
    doc
}

/// The keys the parser accepts where `path` points, in its order, or None
/// when no mapping of keys goes there.
fn keys_at(path: &[Step]) -> Option<Vec<String>> {
    let probe = "zz_probe";
    let value = if path.is_empty() {
        format!("{probe}: 1")
    } else {
        format!("{{{probe}: 1}}")
    };
    let text = document_with(path, &value);
    let errors = microseed::schema::parse(Path::new("cluster.yaml"), &text).err()?;
    let first = errors.0.first()?;
    let message = &first.message;
    if !message.contains("unknown key") {
        return None;
    }
    let list = message.split_once("expected one of ")?.1;
    let list = list.split(';').next().unwrap_or(list);
    Some(list.split(", ").map(|k| k.trim().to_string()).collect())
}

fn dotted(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Each => s.push_str("[]"),
        }
    }
    s
}

/// Every leaf key of the cluster file, as the reference names it
/// (`network.subnet`, `machines[].disk`), in the parser's order.
fn schema_keys() -> Vec<String> {
    fn walk(path: Vec<Step>, out: &mut Vec<String>) {
        // A mapping, or else a list of mappings (`machines`), or else a leaf.
        let mut each = path.clone();
        each.push(Step::Each);
        let (at, keys) = match keys_at(&path) {
            Some(keys) => (path, keys),
            None if path.is_empty() => (path, Vec::new()),
            None => match keys_at(&each) {
                Some(keys) => (each, keys),
                None => {
                    out.push(dotted(&path));
                    return;
                }
            },
        };
        for key in keys {
            let mut child = at.clone();
            child.push(Step::Key(key));
            walk(child, out);
        }
    }
    let mut out = Vec::new();
    walk(Vec::new(), &mut out);
    out
}

#[test]
fn the_key_walker_reads_nested_mappings_and_lists_of_mappings() {
    let keys = schema_keys();
    for expected in [
        "version",
        "network.subnet",
        "staking.execution.client",
        "machines[].name",
        "machines[].disk",
        "staking.validators[].fee_recipient",
    ] {
        assert!(
            keys.iter().any(|k| k == expected),
            "{expected} not in {keys:?}"
        );
    }
    assert!(
        !keys.iter().any(|k| k == "network" || k == "machines"),
        "{keys:?}"
    );
}

const REFERENCE: &str = "docs/cluster-file.md";

/// The key a reference table row documents: its first cell's code span.
fn row_key(row: &str) -> Option<String> {
    let first = row.strip_prefix('|')?.split('|').next()?.trim();
    let key = first.strip_prefix('`')?.strip_suffix('`')?;
    (!key.contains('`')).then(|| key.to_string())
}

/// The reference's key table: the lines before it, its rows, the lines after.
fn reference_table(text: &str) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("| key |"))
        .unwrap_or_else(|| panic!("{REFERENCE}: no `| key |` table"));
    let end = lines[header..]
        .iter()
        .position(|l| !l.starts_with('|'))
        .map_or(lines.len(), |n| header + n);
    (
        lines[..header + 2].to_vec(),
        lines[header + 2..end].to_vec(),
        lines[end..].to_vec(),
    )
}

const UNDOCUMENTED: &str = "UNDOCUMENTED: say what it does";

#[test]
fn cluster_file_reference_lists_every_key_the_parser_accepts_in_its_order() {
    let text = read(REFERENCE);
    let (head, rows, tail) = reference_table(&text);
    let documented: Vec<String> = rows.iter().filter_map(|r| row_key(r)).collect();
    let keys = schema_keys();
    if std::env::var_os("UPDATE_GOLDEN").is_some() && documented != keys {
        let by_key: BTreeMap<String, &str> = rows
            .iter()
            .filter_map(|r| row_key(r).map(|k| (k, *r)))
            .collect();
        let mut new = head.join("\n");
        for key in &keys {
            new.push('\n');
            match by_key.get(key) {
                Some(row) => new.push_str(row),
                None => new.push_str(&format!("| `{key}` | | {UNDOCUMENTED} |")),
            }
        }
        new.push('\n');
        new.push_str(&tail.join("\n"));
        new.push('\n');
        std::fs::write(common::root().join(REFERENCE), new).expect("rewrite reference");
        let text = read(REFERENCE);
        assert!(
            !text.contains(UNDOCUMENTED),
            "{REFERENCE}: rows added for new keys; describe them"
        );
        return;
    }
    let missing: Vec<&String> = keys.iter().filter(|k| !documented.contains(k)).collect();
    let unknown: Vec<&String> = documented.iter().filter(|k| !keys.contains(k)).collect();
    assert!(
        missing.is_empty() && unknown.is_empty() && documented == keys,
        "{REFERENCE} is stale: keys the parser accepts but the table lacks {missing:?}; rows for keys it refuses {unknown:?}; order differs: {}. Run UPDATE_GOLDEN=1 cargo test --test it docs:: and describe new rows",
        documented != keys
    );
    assert!(
        !text.contains(UNDOCUMENTED),
        "{REFERENCE}: describe every new key"
    );
}

#[test]
fn cluster_file_reference_shows_the_defaults_the_parser_fills_in() {
    let text = document_with(&[], "");
    let cf = microseed::schema::parse(Path::new("cluster.yaml"), &text).expect("base parses");
    let list = |v: &[serde_saphyr::Spanned<String>]| {
        let items: Vec<&str> = v.iter().map(|s| s.value.as_str()).collect();
        format!("[{}]", items.join(", "))
    };
    let defaults: Vec<(&str, String)> = vec![
        ("release", format!("\"{}\"", cf.release.value)),
        ("timezone", cf.timezone.value.clone()),
        ("locale", cf.locale.value.clone()),
        ("keyboard.layout", cf.keyboard.layout.value.clone()),
        ("network.dns", list(&cf.network.dns.value)),
        ("network.search_domains", list(&cf.network.search_domains)),
        ("ntp.pools", list(&cf.ntp.pools.value)),
        ("admin.username", cf.admin.username.value.clone()),
        ("admin.ssh_keys", list(&cf.admin.ssh_keys.value)),
        ("ssh.port", cf.ssh.port.value.to_string()),
        ("ssh.password_auth", cf.ssh.password_auth.value.to_string()),
        ("microk8s.addons", list(&cf.microk8s.addons)),
        ("nfs.export_root", cf.nfs.export_root.value.clone()),
        (
            "nfs.validator_clients",
            cf.nfs.validator_clients.value.to_string(),
        ),
        ("nfs.uid", cf.nfs.uid.value.to_string()),
        ("nfs.gid", cf.nfs.gid.value.to_string()),
        ("nfs.data_volume", cf.nfs.data_volume.to_string()),
        ("staking.enabled", cf.staking.enabled.value.to_string()),
        (
            "maintenance.refresh_window",
            format!("\"{}\"", microseed::schema::DEFAULT_REFRESH_WINDOWS[0]),
        ),
    ];
    let reference = read(REFERENCE);
    let (_, rows, _) = reference_table(&reference);
    let mut wrong = Vec::new();
    for (key, value) in defaults {
        let Some(row) = rows.iter().find(|r| row_key(r).as_deref() == Some(key)) else {
            wrong.push(format!("{key}: no row"));
            continue;
        };
        let cell = row.split('|').nth(2).unwrap_or("").trim();
        if !cell.contains(&format!("`{value}`")) {
            wrong.push(format!("{key}: default cell {cell:?} lacks `{value}`"));
        }
    }
    assert!(wrong.is_empty(), "{REFERENCE}: {wrong:?}");
}
