//! Reading YAML that microseed is handed (the cluster file, secrets.yaml,
//! profiles) strictly and safely: one document, no duplicate keys, budgets
//! against alias bombs, and parser errors rewritten as diagnostics with
//! file, line, column, field path and a message in the user's terms.

use std::cell::RefCell;
use std::path::Path;

use serde::Deserialize;

use crate::diag::{Diagnostic, InputErrors, Pos, nearest};

/// Parser options for every file microseed reads: one document, duplicate
/// keys refused (cloud-init would silently keep the last), and budgets sized
/// for a cluster file (a hundred machines is a few thousand nodes), so an
/// alias bomb or a deeply nested file fails at once instead of eating memory.
pub(crate) fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 200_000;
    budget.max_nodes = 100_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.max_documents = 1;
    budget.max_total_scalar_bytes = 2 * crate::input::MAX_INPUT_BYTES as usize;
    budget.max_recorded_anchor_events = 100_000;
    budget.max_recorded_anchor_bytes = 4 * 1024 * 1024;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.alias_limits.max_total_replayed_events = 100_000;
    o.alias_limits.max_replay_stack_depth = 16;
    o
}

/// Deserializes `text` into `T`, turning serde errors into diagnostics with
/// the field path (tracked by serde_path_to_error) and serde-saphyr's position.
pub fn parse_typed<T: for<'de> Deserialize<'de>>(
    file: &Path,
    text: &str,
) -> Result<T, InputErrors> {
    let path = RefCell::new(String::new());
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            *path.borrow_mut() = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|err| {
        let pos = err.location().map(Pos::from_location).unwrap_or_default();
        let field = path.into_inner();
        // Spanned<T> adds a `.value` step that means nothing to the user.
        let field = field.replace(".value", "");
        let field = if field == "." { String::new() } else { field };
        let (field, message) = plain(err.without_snippet(), field, text, pos);
        InputErrors(vec![Diagnostic::error(file, pos, field, message)])
    })
}

/// Says what went wrong in the user's terms: the parser's own wording names
/// its API (`DuplicateKeyPolicy`, `from_str_multiple`) or internals
/// (`budget breached: Nodes {..}`), which tells a user nothing.
pub(crate) fn plain(
    err: &serde_saphyr::Error,
    field: String,
    text: &str,
    pos: Pos,
) -> (String, String) {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    // serde_path_to_error marks a key it has not matched yet with `?`.
    let parent = field
        .strip_suffix('?')
        .map(|p| p.trim_end_matches('.').to_string());
    let msg = match err {
        E::AliasError { error, .. } => return plain(error.without_snippet(), field, text, pos),
        E::SerdeMissingField { field: key, .. } => {
            let at = field.trim_end_matches('?').trim_end_matches('.');
            let field = if at.is_empty() {
                key.to_string()
            } else {
                format!("{at}.{key}")
            };
            return (field, format!("missing; expected a `{key}:` key here"));
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key.clone().unwrap_or_else(|| "this key".into());
            let field = match parent {
                Some(p) if p.is_empty() => key.clone(),
                Some(p) => format!("{p}.{key}"),
                None => field,
            };
            return (
                field,
                format!("`{key}` is given twice in the same mapping; expected each key once (delete one of them)"),
            );
        }
        E::MultipleDocuments { .. }
        | E::Budget {
            breach: B::Documents { .. },
            ..
        } => "a second YAML document starts here (a `---` line); expected exactly one document in the file".to_string(),
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => "nested too deeply; a cluster file is a few levels deep".to_string(),
            B::Aliases { .. } | B::Anchors { .. } => {
                "too many anchors or aliases (`&name`, `*name`); write the values out instead".to_string()
            }
            _ => "the file expands to far more values than any cluster file holds (through aliases or sheer size); expected a cluster description of a few KiB".to_string(),
        },
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::RecursiveReferencesRequireWeakTypes { .. } => {
            "aliases (`*name`) here expand to too much or refer to themselves; write the values out instead".to_string()
        }
        E::UnknownAnchor { .. } => {
            "this alias (`*name`) refers to no anchor (`&name`) defined before it".to_string()
        }
        E::InvalidUtf8Input => "the file is not valid UTF-8 text; save it as UTF-8".to_string(),
        E::InvalidScalar { ty, .. } => {
            let got = scalar_at(text, pos);
            match field_range(&field).or_else(|| number_range(ty)) {
                Some(range) => format!("got {got}; expected {range}"),
                None => format!("got {got}; expected a {ty}"),
            }
        }
        E::SerdeUnknownField {
            field: key,
            expected,
            ..
        } => {
            let hint = nearest(key, expected)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            let list = if expected.is_empty() {
                "no keys here".to_string()
            } else {
                format!("one of {}", expected.join(", "))
            };
            format!("unknown key `{key}`; expected {list}{hint}")
        }
        _ => explain(&err.without_snippet().to_string()),
    };
    (field, msg)
}

/// Whether an error is about the YAML stream as a whole (not about a key
/// or a value microseed expects), and so not left to the typed parse.
pub(crate) fn is_structural(err: &serde_saphyr::Error) -> bool {
    use serde_saphyr::Error as E;
    match err {
        E::AliasError { error, .. } => is_structural(error.without_snippet()),
        E::Budget { .. }
        | E::MultipleDocuments { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::RecursiveReferencesRequireWeakTypes { .. }
        | E::UnknownAnchor { .. } => true,
        _ => false,
    }
}

/// The plain scalar the parser stopped at, for quoting it back to the user.
fn scalar_at(text: &str, pos: Pos) -> String {
    let line = text
        .lines()
        .nth(pos.line.saturating_sub(1) as usize)
        .unwrap_or("");
    let rest: String = line
        .chars()
        .skip(pos.column.saturating_sub(1) as usize)
        .collect();
    let value = rest.split(" #").next().unwrap_or("").trim();
    let value = value.trim_end_matches([',', ']', '}']).trim();
    if value.is_empty() || value.chars().count() > 40 {
        "this value".to_string()
    } else {
        format!("{value:?}")
    }
}

/// What a numeric field accepts, where that is narrower than its type.
fn field_range(field: &str) -> Option<&'static str> {
    Some(match field {
        "version" => "1",
        "ssh.port" => "a TCP port from 1 to 65535",
        "nfs.uid" | "nfs.gid" => "an id from 1 to 65533",
        "nfs.validator_clients" => "a whole number from 1 to 64",
        _ => return None,
    })
}

fn number_range(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "u8" => "a whole number from 0 to 255",
        "u16" => "a whole number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "u64" | "usize" => "a whole number, 0 or more",
        "i32" | "i64" => "a whole number",
        "bool" | "boolean" => "true or false",
        _ => return None,
    })
}

/// Rewrites serde's wording into something a user can act on.
fn explain(raw: &str) -> String {
    let msg = raw.lines().next().unwrap_or(raw).trim().to_string();
    let msg = msg
        .split_once(": ")
        .filter(|(head, _)| head.starts_with("line ") || head.starts_with("error"))
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(msg);
    // serde-saphyr appends the position, which we print in front already.
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    }
}
