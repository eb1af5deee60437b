//! Input errors that point at the user's file: file, line, column, field path,
//! what was found and what was expected. Every stage that reads user input
//! reports through [`Diagnostic`] so the CLI can print them uniformly and exit 2.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a file a value came from (1-based; 0 means unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    pub fn from_location(loc: serde_saphyr::Location) -> Pos {
        Pos {
            line: loc.line(),
            column: loc.column(),
        }
    }

    pub fn known(self) -> bool {
        self.line > 0
    }
}

/// One problem with user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    /// Field path such as `machines[2].ip`; empty for whole-file problems.
    pub field: String,
    pub message: String,
    /// Whether this is only a warning (reported, but does not fail unless strict).
    pub warning: bool,
}

impl Diagnostic {
    pub fn error(
        file: &Path,
        pos: Pos,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            field: field.into(),
            message: message.into(),
            warning: false,
        }
    }

    pub fn warning(
        file: &Path,
        pos: Pos,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            warning: true,
            ..Diagnostic::error(file, pos, field, message)
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "file": self.file.display().to_string(),
            "line": self.pos.line,
            "column": self.pos.column,
            "field": self.field,
            "message": self.message,
            "severity": if self.warning { "warning" } else { "error" },
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.pos.known() {
            write!(f, ":{}:{}", self.pos.line, self.pos.column)?;
        }
        write!(f, ": {}", if self.warning { "warning" } else { "error" })?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A set of input errors; returned as the error of validation so callers can
/// tell input problems (exit 2) from everything else (exit 1).
#[derive(Debug, Clone)]
pub struct InputErrors(pub Vec<Diagnostic>);

impl fmt::Display for InputErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputErrors {}

/// The closest candidate to `got`, if it is close enough to be a plausible
/// typo: at most one edit in three characters, so `a` never suggests `ip`.
pub fn nearest<'a>(got: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(got, c), *c))
        .filter(|(d, c)| *d > 0 && *d <= 3 && d * 3 <= c.chars().count().max(got.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// An invalid command-line option (no file position): exits 2 like any
/// input error, named by the option.
pub fn option_error(option: &str, msg: &str) -> anyhow::Error {
    InputErrors(vec![Diagnostic::error(
        Path::new(option),
        Pos::default(),
        "",
        msg.to_string(),
    )])
    .into()
}

/// Longest user value quoted back in a message; longer ones are cut, so a
/// huge pasted value cannot flood the terminal.
const SHOWN_CHARS: usize = 60;

/// A user's value as a message quotes it: debug-quoted (control characters
/// escaped), cut to [`SHOWN_CHARS`] with its full length said.
pub fn shown(s: &str) -> String {
    let n = s.chars().count();
    if n <= SHOWN_CHARS {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(SHOWN_CHARS).collect();
    format!("{head:?}... ({n} characters in all)")
}
