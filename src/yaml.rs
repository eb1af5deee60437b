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

/// Which of the file's own words an error may quote back: any (`All`), or
/// only the key names given (`Only`: a file of secrets, whose values, and
/// keys a user mistyped a secret into, must never reach a terminal or a log).
#[derive(Debug, Clone, Copy)]
pub enum Quote<'a> {
    All,
    Only(&'a [&'a str]),
}

impl Quote<'_> {
    fn may(&self, word: &str) -> bool {
        match self {
            Quote::All => true,
            Quote::Only(names) => names.contains(&word),
        }
    }

    /// A field path cut before its first step that may not be quoted.
    fn field(&self, field: String) -> String {
        if matches!(self, Quote::All) {
            return field;
        }
        let mut kept = Vec::new();
        for step in field.split('.') {
            let name = step.split('[').next().unwrap_or(step);
            if !self.may(name) {
                break;
            }
            kept.push(step);
        }
        kept.join(".")
    }
}

/// Deserializes `text` into `T`, turning serde errors into diagnostics with
/// the field path (tracked by serde_path_to_error) and serde-saphyr's position.
pub fn parse_typed<T: for<'de> Deserialize<'de>>(
    file: &Path,
    text: &str,
) -> Result<T, InputErrors> {
    parse_typed_quoting(file, text, Quote::All)
}

/// [`parse_typed`] for a file of secrets: its errors quote no value of the
/// file and no key but `keys`.
pub fn parse_secret<T: for<'de> Deserialize<'de>>(
    file: &Path,
    text: &str,
    keys: &[&str],
) -> Result<T, InputErrors> {
    parse_typed_quoting(file, text, Quote::Only(keys))
}

fn parse_typed_quoting<T: for<'de> Deserialize<'de>>(
    file: &Path,
    text: &str,
    quote: Quote<'_>,
) -> Result<T, InputErrors> {
    if let Some((pos, field, tag)) = first_tag(text) {
        // In a file of secrets the "tag" may be a piece of a secret that
        // happens to start with `!`: never shown there.
        let tag = match quote {
            Quote::All => format!("a YAML tag ({tag})"),
            Quote::Only(_) => "a YAML tag (not shown: this file holds secrets)".to_string(),
        };
        return Err(InputErrors(vec![Diagnostic::error(
            file,
            pos,
            quote.field(field),
            format!(
                "{tag}; microseed reads plain values only (a tag such as `!!binary` would change the value silently, and an unknown one means nothing); write the value without the tag"
            ),
        )]));
    }
    // Tracking the field path wraps the deserializer at every field and
    // moves it each time: measured at ~1/4 of parsing the profiles. The path
    // only matters in an error, and the same text fails the same way again,
    // so a text parses without it first and only a failure is parsed twice.
    if let Ok(v) = parse_fast::<T>(text) {
        return Ok(v);
    }
    let first = first_error::<T>(file, text, quote);
    // serde stops at the first unknown key, so a file with three misspelt
    // keys would take three runs to fix. Each unknown key that starts its
    // line is blanked with the lines of its value (line numbers kept) and the
    // text parsed again, for as long as what comes back is another unknown
    // key; any other error may be the blanking's own doing and is not shown.
    let mut errors = vec![first];
    let mut now = text.to_string();
    while errors.len() < MAX_UNKNOWN_KEYS {
        let last = &errors[errors.len() - 1];
        if !is_unknown_key(last) {
            break;
        }
        // A misspelt key is read as the key it was meant to be (so a key
        // the file needs is not reported missing next); one with no close
        // match is blanked.
        let fixed = match suggestion(&last.message) {
            Some(k) => rename_key(&now, last.pos, k),
            None => blank_key(&now, last.pos),
        };
        let Some(fixed) = fixed else {
            break;
        };
        now = fixed;
        if parse_fast::<T>(&now).is_ok() {
            break;
        }
        let next = first_error::<T>(file, &now, quote);
        if !is_unknown_key(&next) || next.pos == last.pos {
            break;
        }
        errors.push(next);
    }
    Err(InputErrors(errors))
}

/// At most this many unknown keys are gathered in one run.
const MAX_UNKNOWN_KEYS: usize = 20;

fn parse_fast<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, serde_saphyr::Error> {
    serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| T::deserialize(de))
}

fn is_unknown_key(d: &Diagnostic) -> bool {
    d.message.starts_with("unknown key `") || d.message.starts_with("an unknown key;")
}

/// The key an unknown-key message suggests (`did you mean `gateway`?`).
fn suggestion(message: &str) -> Option<&str> {
    let rest = message.rsplit_once("did you mean `")?.1;
    rest.split_once('`').map(|(k, _)| k)
}

/// `text` with the plain key at `pos` renamed to `new` (line and the
/// columns of everything after it on other lines kept).
fn rename_key(text: &str, pos: Pos, new: &str) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_string).collect();
    let at = usize::try_from(pos.line).ok()?.checked_sub(1)?;
    let col = usize::try_from(pos.column).ok()?.checked_sub(1)?;
    let line = lines.get(at)?;
    let key_end = col + line.get(col..)?.find(':')?;
    let key = &line[col..key_end];
    if key.is_empty()
        || !key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return None;
    }
    lines[at] = format!("{}{new}{}", &line[..col], &line[key_end..]);
    Some(lines.join("\n"))
}

/// `text` with the key at `pos` and the more-indented lines of its value
/// made empty, when the key starts its line (not after `- ` or inside
/// `{...}`, where removing it would change what the rest means).
fn blank_key(text: &str, pos: Pos) -> Option<String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let at = usize::try_from(pos.line).ok()?.checked_sub(1)?;
    let line = lines.get(at)?;
    let col = usize::try_from(pos.column).ok()?.checked_sub(1)?;
    let indent = line.len() - line.trim_start_matches(' ').len();
    if indent != col || line[col..].starts_with(['-', '{', '[']) {
        return None;
    }
    let mut end = at + 1;
    while let Some(l) = lines.get(end) {
        let t = l.trim_start_matches(' ');
        let deeper = l.len() - t.len() > indent;
        if !(t.is_empty() || t.starts_with('#') || deeper) {
            break;
        }
        end += 1;
    }
    let mut out: Vec<&str> = lines.clone();
    for l in &mut out[at..end] {
        *l = "";
    }
    Some(out.join("\n"))
}

/// The diagnostic for the first error in `text`, with its field path.
fn first_error<T: for<'de> Deserialize<'de>>(
    file: &Path,
    text: &str,
    quote: Quote<'_>,
) -> Diagnostic {
    let path = RefCell::new(String::new());
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            *path.borrow_mut() = e.path().to_string();
            e.into_inner()
        })
    });
    let Err(err) = result else {
        // The fast parse failed and this one did not: cannot happen, since
        // both read the same text; say so rather than panic.
        return Diagnostic::error(
            file,
            Pos::default(),
            "",
            "the file could not be read twice the same way".to_string(),
        );
    };
    {
        let pos = err.location().map(Pos::from_location).unwrap_or_default();
        let field = path.into_inner();
        // Spanned<T> adds a `.value` step that means nothing to the user.
        let field = field.replace(".value", "");
        let field = if field == "." { String::new() } else { field };
        let at_key = field.ends_with('?');
        let (pos, field, message) = describe(
            err.without_snippet(),
            without_placeholder(&field),
            at_key,
            text,
            pos,
            quote,
        );
        Diagnostic::error(file, pos, quote.field(field), message)
    }
}

/// The first explicit tag (`!foo`, `!!binary`, `!<...>`) in `text`: where
/// it stands, the field path holding it and the tag as written. serde never
/// sees tags, and serde-saphyr applies the ones it knows (`!!binary` decodes
/// base64 into the value) and drops the rest, so the parser's events are
/// read for them. Only a text with a `!` can hold one; a syntax error ends
/// the scan (the typed parse reports it).
fn first_tag(text: &str) -> Option<(Pos, String, String)> {
    use granit_parser::{Event, Parser};
    /// Where the scan is: in a mapping (its current key; whether the next
    /// node is a key) or a list (the next item's index).
    enum Frame {
        Map { key: String, want_key: bool },
        Seq { index: usize },
    }
    fn path(stack: &[Frame]) -> String {
        let mut p = String::new();
        for f in stack {
            match f {
                Frame::Map { want_key: true, .. } => break,
                Frame::Map { key, .. } => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(key);
                }
                Frame::Seq { index } => p.push_str(&format!("[{index}]")),
            }
        }
        p
    }
    /// A node (value, key or item) ended: the frame holding it moves on.
    fn done(stack: &mut [Frame]) {
        match stack.last_mut() {
            Some(Frame::Map { want_key, .. }) => *want_key = !*want_key,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
    if !text.contains('!') {
        return None;
    }
    let mut stack: Vec<Frame> = Vec::new();
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { return None };
        let tag = match &event {
            Event::Scalar(_, _, _, tag)
            | Event::SequenceStart(_, _, tag)
            | Event::MappingStart(_, _, tag) => tag.as_ref(),
            _ => None,
        };
        if let Some(tag) = tag {
            let at = span.tag_start.unwrap_or(span.start);
            let pos = Pos {
                line: at.line() as u64,
                column: at.col() as u64 + 1,
            };
            // As written: `!!binary`, not its resolved `tag:yaml.org,2002:binary`.
            let shown = match tag.to_string() {
                t if t.starts_with("tag:yaml.org,2002:") => format!("`!!{}`", &t[18..]),
                t if t.starts_with('!') => format!("`{t}`"),
                t => format!("`!<{t}>`"),
            };
            return Some((pos, path(&stack), shown));
        }
        match event {
            Event::Scalar(value, ..) => match stack.last_mut() {
                Some(Frame::Map { key, want_key }) if *want_key => {
                    *key = value.into_owned();
                    *want_key = false;
                }
                _ => done(&mut stack),
            },
            Event::Alias(_) => done(&mut stack),
            Event::MappingStart(..) => stack.push(Frame::Map {
                key: String::new(),
                want_key: true,
            }),
            Event::SequenceStart(..) => stack.push(Frame::Seq { index: 0 }),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                done(&mut stack);
            }
            _ => {}
        }
    }
    None
}

/// Says what went wrong in the user's terms: the parser's own wording names
/// its API (`DuplicateKeyPolicy`, `from_str_multiple`), its internals
/// (`budget breached: Nodes {..}`, `expected sequence start`) or YAML's
/// grammar (`plain scalar`, `block indentation`), which tells a user nothing.
/// Returns the position to report (the parser's, or a better one found in
/// the text: where a tab sits, where an unclosed quote opens), the field
/// path and the message.
pub(crate) fn plain(
    err: &serde_saphyr::Error,
    field: String,
    text: &str,
    pos: Pos,
) -> (Pos, String, String) {
    // serde_path_to_error marks a key it has not read yet with `?`: that is
    // no field a user can find, so name the mapping holding it instead.
    let at_key = field.ends_with('?');
    describe(
        err,
        without_placeholder(&field),
        at_key,
        text,
        pos,
        Quote::All,
    )
}

/// `network.?` -> `network`, `?` -> `` (the file as a whole).
fn without_placeholder(field: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in field.split('.') {
        if part == "?" || part.is_empty() {
            continue;
        }
        out.push(part);
    }
    out.join(".")
}

/// `at_key`: the error came while reading a key of the mapping `field`.
fn describe(
    err: &serde_saphyr::Error,
    field: String,
    at_key: bool,
    text: &str,
    pos: Pos,
    quote: Quote<'_>,
) -> (Pos, String, String) {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let msg = match err {
        E::AliasError { error, .. } => return describe(error.without_snippet(), field, at_key, text, pos, quote),
        E::SerdeMissingField { field: key, .. } => {
            let field = if field.is_empty() {
                key.to_string()
            } else {
                format!("{field}.{key}")
            };
            return (pos, field, format!("missing; expected a `{key}:` key here"));
        }
        E::DuplicateMappingKey { key, .. } => {
            let key = key
                .clone()
                .filter(|k| quote.may(k))
                .unwrap_or_else(|| "this key".into());
            // Found while reading the key: the path names the mapping.
            let field = match at_key {
                true if field.is_empty() => key.clone(),
                true => format!("{field}.{key}"),
                false => field,
            };
            return (
                pos,
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
            _ => "the file expands to far more values than microseed ever reads from one (through aliases or sheer size); expected a few KiB of YAML".to_string(),
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
            let expected = field_range(&field)
                .or_else(|| number_range(ty))
                .map_or_else(|| format!("a {ty}"), str::to_string);
            match continued_value(text, pos) {
                Some((value, next)) => {
                    let got = match quote {
                        Quote::All => format!("got {}: ", crate::diag::shown(&value)),
                        Quote::Only(_) => "this value runs on: ".to_string(),
                    };
                    format!(
                        "{got}line {next} is indented more than this key, so YAML reads it as the rest of this value; expected {expected} (indent line {next} like the keys around it)"
                    )
                }
                None => format!("got {}; expected {expected}", scalar_at(text, pos, quote)),
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
            if quote.may(key) {
                format!("unknown key `{key}`; expected {list}{hint}")
            } else {
                format!("an unknown key; expected {list}{hint}")
            }
        }
        E::Unexpected { expected, .. } => wrong_shape(expected, &field, text, pos, quote),
        E::TaggedScalarCannotDeserializeIntoString { .. }
        | E::TaggedEnumMismatch { .. }
        | E::InvalidBinaryBase64 { .. }
        | E::BinaryNotUtf8 { .. } => {
            "YAML tags such as `!!int` or `!!binary` are not supported here; write the value without the tag".to_string()
        }
        E::ExternallyTaggedEnumExpectedScalarOrMapping { .. }
        | E::ExpectedStringKeyForExternallyTaggedEnum { .. }
        | E::UnexpectedValueForUnitEnumVariant { .. } => format!(
            "got {}; expected one word such as `largest`, or one `key: value` line",
            shape_at(text, pos, quote)
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => {
            let hint = nearest(variant, expected)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            let got = if quote.may(variant) {
                format!("{variant:?}")
            } else {
                "another value".to_string()
            };
            format!("got {got}; expected one of {}{hint}", expected.join(", "))
        }
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => {
            let got = match quote {
                Quote::All => ungrammar(unexpected),
                // serde's `string "…"`, `integer `5``: the kind, not the value.
                Quote::Only(_) => {
                    let kind = unexpected.split([' ', '`', '"']).next().unwrap_or("value");
                    format!("a {}", ungrammar(kind))
                }
            };
            format!("got {got}; expected {}", ungrammar(expected))
        }
        E::MergeValueNotMapOrSeqOfMaps { .. } | E::MergeKeyNotAllowed { .. } => {
            "a merge key (`<<:`) must be followed by an alias to a mapping, such as `<<: *defaults`".to_string()
        }
        E::Message { msg, .. } if msg.starts_with("duplicate field `") => {
            let key = msg.split('`').nth(1).unwrap_or("this key");
            format!("`{key}` is given twice (directly or through a `<<:` merge); expected each key once")
        }
        E::ExpectedMappingEndAfterEnumVariantValue { .. } => {
            // A choice of one key (a machine's disk) given a second key:
            // the path ends in the first, the position is at the second.
            let (holder, first) = field.rsplit_once('.').unwrap_or(("", field.as_str()));
            let rest: String = line_at(text, pos.line)
                .chars()
                .skip(pos.column.saturating_sub(1) as usize)
                .collect();
            let second = rest
                .split_once(':')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_string())
                .filter(|k| !k.is_empty() && k.len() <= 40)
                .unwrap_or_else(|| "another key".to_string());
            let msg = if holder.ends_with("disk") {
                format!(
                    "`{first}` and `{second}` are both given, but a disk is chosen one way; expected only one of `serial: ...`, `path: /dev/...` or `largest`"
                )
            } else {
                format!("`{first}` and `{second}` are both given; expected only one of them")
            };
            return (pos, holder.to_string(), msg);
        }
        E::NullIntoString { .. } => "empty; expected a value after the `:`".to_string(),
        E::Eof { .. } => "the file ends too early; expected more".to_string(),
        _ => return syntax(&err.without_snippet().to_string(), field, text, pos, quote),
    };
    (pos, field, msg)
}

/// What stands at `pos`, in words: a list, a mapping, or the value quoted.
fn shape_at(text: &str, pos: Pos, quote: Quote<'_>) -> String {
    let line = line_at(text, pos.line);
    let rest: String = line
        .chars()
        .skip(pos.column.saturating_sub(1) as usize)
        .collect();
    // Reported at the `:` of a key with nothing after it.
    let rest = rest.strip_prefix(':').unwrap_or(&rest).trim_start();
    if rest.starts_with('[') || rest.starts_with("- ") || rest == "-" {
        return "a list".into();
    }
    if rest.starts_with('{') || looks_like_key(rest) {
        return "a `key: value` mapping".into();
    }
    if rest.is_empty() || rest.starts_with('#') {
        // The value is on the lines below, if they are indented more (a
        // list may also sit at the key's own indentation).
        let indent = line.len() - line.trim_start().len();
        let below = text
            .lines()
            .skip(pos.line as usize)
            .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|l| (l.len() - l.trim_start().len(), l.trim_start()));
        return match below {
            Some((i, l)) if i >= indent && (l.starts_with("- ") || l == "-") => "a list".into(),
            Some((i, l)) if i > indent && looks_like_key(l) => "a `key: value` mapping".into(),
            _ => "nothing".into(),
        };
    }
    scalar_at(text, pos, quote)
}

/// Whether a line starts with `name:` followed by a space or its end.
fn looks_like_key(s: &str) -> bool {
    let s = s.split(" #").next().unwrap_or("");
    match s.find(':') {
        Some(i) => {
            let after = &s[i + 1..];
            i > 0
                && !s[..i].contains([' ', '"', '\'', '[', '{'])
                && (after.is_empty() || after.starts_with(' ') || after.starts_with('\t'))
        }
        None => false,
    }
}

/// The parser found another shape than the field takes (a plain value where
/// a list belongs, a list where one value belongs...).
fn wrong_shape(expected: &str, field: &str, text: &str, pos: Pos, quote: Quote<'_>) -> String {
    let got = shape_at(text, pos, quote);
    let key = field.rsplit('.').next().unwrap_or(field);
    let key = key.split('[').next().unwrap_or(key);
    match expected {
        "sequence start" => {
            format!("got {got}; expected a list, such as `[a, b]` or `- a` lines indented below")
        }
        "mapping start" | "empty mapping start" => {
            if key.is_empty() {
                format!("got {got}; expected `key: value` lines")
            } else if field.ends_with(']') {
                format!("got {got}; expected `key: value` lines for this entry of `{key}`")
            } else {
                format!("got {got}; expected `key: value` lines indented below `{key}:`")
            }
        }
        "non-scalar key" => format!("got {got} as a key; expected a key name such as `name:`"),
        "string scalar" | "scalar" | "str expected" | "value" | "single YAML node" => {
            // A key that is a list or mapping (`? [a]`) reaches here with
            // the mapping as the field.
            if looks_like_complex_key(text, pos) {
                format!("got {got} as a key; expected a key name such as `name:`")
            } else {
                format!("got {got}; expected a single value, not a list or mapping")
            }
        }
        _ => format!("got {got}; this field does not take a value of that shape"),
    }
}

/// Whether `pos` sits right after a `? ` explicit-key indicator.
fn looks_like_complex_key(text: &str, pos: Pos) -> bool {
    let line = line_at(text, pos.line);
    let before: String = line
        .chars()
        .take(pos.column.saturating_sub(1) as usize)
        .collect();
    before.trim_end().ends_with('?') && before.trim() == "?"
}

fn line_at(text: &str, line: u64) -> &str {
    text.lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or("")
}

/// Errors from the YAML scanner and parser (bad indentation, a stray tab, an
/// unclosed quote or bracket...), matched on the parser's wording (the
/// version is pinned in Cargo.lock; a new wording fails the jargon tests).
fn syntax(
    raw: &str,
    field: String,
    text: &str,
    pos: Pos,
    quote: Quote<'_>,
) -> (Pos, String, String) {
    let msg = explain(raw);
    let has = |s: &str| msg.contains(s);
    if has("tab") && !has("table") {
        let at = tab_near(text, pos).unwrap_or(pos);
        return (
            at,
            field,
            "a tab character; YAML indentation must be spaces (replace the tab with spaces)"
                .to_string(),
        );
    }
    if has("trailing content after double-quoted") || has("trailing content after single-quoted") {
        let quote = if has("double") { '"' } else { '\'' };
        return quoted(quote, true, field, text, pos);
    }
    if has("unclosed quote") {
        // Reported where the quote opens (or, failing that, at the end).
        let open = match char_at(text, pos) {
            Some('"' | '\'') => Some(pos),
            _ => opening_quote(text, pos, None).map(|(p, _)| p),
        };
        if let Some((open, quote)) = open.and_then(|p| Some((p, char_at(text, p)?))) {
            let field = field_at_line(&field, text, open.line);
            let msg = format!(
                "this `{quote}` opens a quoted value that is never closed; expected a closing `{quote}` at the end of the value"
            );
            return (open, field, msg);
        }
        let msg =
            "a quoted value is never closed; expected a closing quote at the end of the value";
        return (pos, field, msg.to_string());
    }
    // A `[` or `{` left open on an earlier line makes the parser read on
    // and stumble later: point at the bracket, not the stumble.
    if let Some((open, bracket)) = unclosed_bracket(text, pos).filter(|(p, _)| p.line < pos.line) {
        let close = if bracket == '{' { '}' } else { ']' };
        let field = field_at_line(&field, text, open.line);
        let msg = format!(
            "this `{bracket}` is not closed on its line, so the lines below were read as part of it (up to line {}); expected a matching `{close}`",
            pos.line
        );
        return (open, field, msg);
    }
    let plain = if has("BOM") {
        "a byte order mark (U+FEFF, invisible in most editors) in the middle of the file; expected one only at the very start, if at all (delete it)".to_string()
    } else if has("mapping values are not allowed") || has("illegal placement of ':'") {
        "a `key: value` pair where none can start; check this line's indentation against the line above, or quote a value that holds `: `".to_string()
    } else if has("did not find expected key") {
        "this line does not line up with the keys above it; expected `key: value` lines at the same indentation as their siblings".to_string()
    } else if has("did not find expected '-' indicator") {
        "this line does not line up with the list above it; expected `- item` lines at the same indentation".to_string()
    } else if has("invalid indentation") || has("wrongly indented") {
        "this line's indentation matches no level above it; indent it like its siblings".to_string()
    } else if has("expected ',' or ']'") || has("flow sequence") {
        "this `[ ]` list is not closed properly; expected `,` between items and a closing `]`"
            .to_string()
    } else if has("expected ',' or '}'") || has("flow mapping") {
        "this `{ }` mapping is not closed properly; expected `,` between entries and a closing `}`"
            .to_string()
    } else if let Some(open) = msg.strip_prefix("unclosed bracket '") {
        let open = open.chars().next().unwrap_or('[');
        let close = if open == '{' { '}' } else { ']' };
        format!("a `{open}` is never closed; expected a matching `{close}`")
    } else if has("mismatched bracket") || has("misplaced bracket") {
        "a bracket here does not match the one that opened: `[` closes with `]`, `{` with `}`"
            .to_string()
    } else if has("unknown escape")
        || has("hexadecimal")
        || has("surrogate")
        || has("Unicode character escape")
    {
        "an unknown `\\` escape inside a double-quoted value; write `\\\\` for a backslash, or use single quotes".to_string()
    } else if has("comment") {
        "a comment (`#`) here must be separated from the value by a space, and cannot interrupt a value running over several lines".to_string()
    } else if has("did not find expected node content") || has("unexpected end of plain") {
        "expected a value here".to_string()
    } else if has("unexpected EOF") || has("unexpected eof") || has("end of input") {
        "the file ends in the middle of a value, list or mapping; expected it to be completed"
            .to_string()
    } else if has("tag") || has("handle") {
        "YAML tags (`!name`, `!!type`) are not supported here; write the value without the tag"
            .to_string()
    } else if has("directive") {
        "YAML directives (`%YAML`, `%TAG`) are not supported; delete the line".to_string()
    } else if has("anchor or alias") {
        "an anchor (`&`) or alias (`*`) needs a name right after it".to_string()
    } else if has("block scalar") {
        "a `|` or `>` text block must be followed by a line break and its lines indented below"
            .to_string()
    } else if has("document") {
        "a document marker (`---` or `...`) here; expected one YAML document, without markers inside values".to_string()
    } else if has("'-'") || has("\"-\"") || has("block sequence entries") {
        "a `- ` list item where none can start; check this line's indentation, or write `[a, b]` lists as plain items".to_string()
    } else if has("expected whitespace") {
        "expected a space here (after `-`, `:`, `?`, a tag or an anchor)".to_string()
    } else if has("':'") {
        "a `:` here must be followed by a space".to_string()
    } else if has("unexpected character") {
        unexpected_character(&msg, text, pos)
    } else if has("simple key") || has("mapping keys are not allowed") {
        "a key here cannot be read (too long, or spread over several lines); expected `key: value` on one line".to_string()
    } else if let Quote::Only(_) = quote {
        // The parser's words may hold a piece of the text.
        "not valid YAML here".to_string()
    } else {
        // Unknown to this release: keep the parser's words, minus the
        // grammar terms that would only confuse.
        format!("not valid YAML here: {}", ungrammar(&msg))
    };
    (pos, field, plain)
}

/// A character the scanner cannot take here, named: the character at
/// `pos` when the message's own quoting of it is unclear.
fn unexpected_character(msg: &str, text: &str, pos: Pos) -> String {
    let c = char_at(text, pos).or_else(|| {
        let quoted = msg.split_once('`')?.1.rsplit_once('\'')?.0;
        let mut chars = quoted.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Some(c),
            _ => None,
        }
    });
    match c {
        Some(c) if c.is_control() => format!(
            "a control character (U+{:04X}) that YAML does not allow in a file; delete it (editors often show it as {} or not at all)",
            c as u32,
            if (c as u32) < 0x20 {
                format!("^{}", char::from(b'@' + c as u8))
            } else {
                "a box".to_string()
            }
        ),
        Some('%') => "`%` cannot start a value (YAML reserves it for `%YAML` directives); quote the value, such as \"%value\"".to_string(),
        Some(c @ ('@' | '`')) => format!(
            "`{c}` cannot start a value (YAML reserves it); quote the value, such as \"{c}value\""
        ),
        Some(c) if !c.is_whitespace() => format!(
            "`{c}` cannot stand here (YAML reserves it); quote the value that holds it"
        ),
        _ => "a character YAML reserves cannot start a value here; quote the value".to_string(),
    }
}

/// The parser's words with YAML-grammar terms replaced by everyday ones.
fn ungrammar(msg: &str) -> String {
    msg.replace("plain scalar", "value")
        .replace("quoted scalar", "quoted value")
        .replace("scalar", "value")
        .replace("block sequence", "list")
        .replace("flow sequence", "list")
        .replace("sequence", "list")
        .replace("block mapping", "mapping")
        .replace("flow mapping", "mapping")
        .replace("deserialize", "read")
}

/// A quoted value that does not end where it should. With `closed`, the
/// parser saw its closing quote just before `pos` and text after it.
fn quoted(quote: char, closed: bool, field: String, text: &str, pos: Pos) -> (Pos, String, String) {
    let Some((open, close)) = opening_quote(text, pos, closed.then_some(quote)) else {
        let msg = format!(
            "a `{quote}` quoted value is not closed properly; expected a matching `{quote}` at the end of the value"
        );
        return (pos, field, msg);
    };
    let field = field_at_line(&field, text, open.line);
    match close {
        Some(close) if close.line == open.line => (
            pos,
            field,
            format!(
                "text after the closing `{quote}`; expected the end of the line or a ` #` comment (put the whole value inside the quotes)"
            ),
        ),
        Some(close) => (
            open,
            field,
            format!(
                "this `{quote}` opens a quoted value that is not closed on its line (the next `{quote}` is at line {}, column {}); expected a closing `{quote}` at the end of the value",
                close.line, close.column
            ),
        ),
        None => (
            open,
            field,
            format!(
                "this `{quote}` opens a quoted value that is never closed; expected a closing `{quote}` at the end of the value"
            ),
        ),
    }
}

/// The field to name for an error found at `line`: the path serde was in,
/// plus the key the line itself names, when that is deeper.
fn field_at_line(field: &str, text: &str, line: u64) -> String {
    let l = line_at(text, line).trim_start();
    let l = l.strip_prefix("- ").unwrap_or(l);
    let key = l.split_once(':').map(|(k, _)| k.trim()).filter(|k| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    match key {
        Some(k) if field.is_empty() => k.to_string(),
        Some(k) if field != k && !field.ends_with(&format!(".{k}")) => format!("{field}.{k}"),
        _ => field.to_string(),
    }
}

/// The line and column (1-based) of byte `offset` in `text`.
fn pos_of(text: &str, offset: usize) -> Pos {
    let before = &text[..offset];
    let line = before.matches('\n').count() as u64 + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    Pos {
        line,
        column: text[start..offset].chars().count() as u64 + 1,
    }
}

/// The byte offset of `pos` in `text` (the end when past it).
fn offset_of(text: &str, pos: Pos) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == pos.line {
            return offset
                + l.char_indices()
                    .nth(pos.column.saturating_sub(1) as usize)
                    .map_or(l.len(), |(b, _)| b);
        }
        offset += l.len();
    }
    text.len()
}

fn char_at(text: &str, pos: Pos) -> Option<char> {
    text[offset_of(text, pos)..].chars().next()
}

/// Finds the quote that opened the quoted value the parser was reading when
/// it stopped at `pos`, and its closing quote if `closing` says one stands
/// before `pos`. Inside a double-quoted value every `"` is escaped and
/// inside a single-quoted one every `'` is doubled, so walking back from the
/// end, the first lone quote is the opening one.
fn opening_quote(text: &str, pos: Pos, closing: Option<char>) -> Option<(Pos, Option<Pos>)> {
    let end = offset_of(text, pos).min(text.len());
    let bytes = text.as_bytes();
    let (quote, close, mut i) = match closing {
        Some(q) => {
            let c = text[..end].rfind(q)?;
            (q as u8, Some(c), c)
        }
        None => {
            // Unclosed at the end of the input: the last quote that is not
            // escaped, of either kind, opened it.
            let i = text[..end].rfind(['"', '\''])?;
            (bytes[i], None, i + 1)
        }
    };
    while i > 0 {
        i -= 1;
        if bytes[i] != quote {
            continue;
        }
        if quote == b'"' {
            let slashes = bytes[..i].iter().rev().take_while(|&&b| b == b'\\').count();
            if slashes % 2 == 1 {
                continue;
            }
        } else if i > 0 && bytes[i - 1] == b'\'' {
            i -= 1;
            continue;
        }
        return Some((pos_of(text, i), close.map(|c| pos_of(text, c))));
    }
    None
}

/// The first tab at or after `pos` (the parser reports a tab after a plain
/// value at the end of that value, which may be lines before the tab), or
/// failing that, the last one before it.
fn tab_near(text: &str, pos: Pos) -> Option<Pos> {
    let at = offset_of(text, pos);
    text[at..]
        .find('\t')
        .map(|i| at + i)
        .or_else(|| text[..at].rfind('\t'))
        .map(|i| pos_of(text, i))
}

/// The outermost `[` or `{` still open at `pos`, found by a rough scan that
/// skips comments and quoted values (enough to point at a forgotten `]`).
fn unclosed_bracket(text: &str, pos: Pos) -> Option<(Pos, char)> {
    let end = offset_of(text, pos);
    let mut open: Vec<(usize, char)> = Vec::new();
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut prev = '\n';
    let mut chars = text[..end].char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if comment {
            comment = c != '\n';
        } else if let Some(q) = quote {
            if c == '\\' && q == '"' {
                chars.next();
            } else if c == q {
                if q == '\'' && chars.peek().map(|&(_, n)| n) == Some('\'') {
                    chars.next();
                } else {
                    quote = None;
                }
            }
        } else {
            match c {
                '#' if prev.is_whitespace() => comment = true,
                '"' | '\'' if prev.is_whitespace() || "[{,:-".contains(prev) => quote = Some(c),
                '[' | '{' => open.push((i, c)),
                ']' | '}' => {
                    open.pop();
                }
                _ => {}
            }
        }
        prev = c;
    }
    open.first().map(|&(i, c)| (pos_of(text, i), c))
}

/// A plain value that runs on to more-indented lines below (`version: 1`
/// with the next key indented by mistake): the value YAML reads, and the
/// first line that continues it.
fn continued_value(text: &str, pos: Pos) -> Option<(String, u64)> {
    let line = line_at(text, pos.line);
    let indent = line.len() - line.trim_start().len();
    let first: String = line
        .chars()
        .skip(pos.column.saturating_sub(1) as usize)
        .collect();
    let first = first.split(" #").next().unwrap_or("").trim();
    if first.is_empty() || first.starts_with(['[', '{', '"', '\'', '|', '>', '&', '*', '!']) {
        return None;
    }
    let mut value = first.to_string();
    let mut next = None;
    for (i, l) in text.lines().enumerate().skip(pos.line as usize) {
        let body = l.trim_start();
        if body.is_empty() {
            break;
        }
        if l.len() - body.len() <= indent || body.starts_with('#') {
            break;
        }
        next.get_or_insert(i as u64 + 1);
        value.push(' ');
        value.push_str(body.split(" #").next().unwrap_or("").trim_end());
    }
    next.map(|n| (value, n))
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

/// The plain scalar the parser stopped at, for quoting it back to the user
/// (where `quote` allows: never a secret).
fn scalar_at(text: &str, pos: Pos, quote: Quote<'_>) -> String {
    if let Quote::Only(_) = quote {
        return "this value".to_string();
    }
    let line = line_at(text, pos.line);
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
