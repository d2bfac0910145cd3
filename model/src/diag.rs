//! Diagnostics: an error in an inventory file, located by file, line, column and field.
//! Loading and validation collect every diagnostic of a run instead of stopping at the first.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// An error and its causes on one line, `: ` between them: how every gitvps crate prints an
/// error that crosses into text (a log line, a plan document, a stand-in tool's stderr).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    std::iter::successors(Some(e), |&e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// One problem in one inventory file.
///
/// Displayed as `inventory/vps/xen02.toml:7:8: ips[0]: message`, the form
/// editors and CI annotations understand.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    /// Path of the file relative to the repository root, `/`-separated.
    pub file: Arc<str>,
    /// 1-based line (0 when the file itself is the problem).
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
    /// The field the problem is about (`ips[0]`, `capacity.ram`), or empty.
    pub field: String,
    /// What is wrong, in words an operator understands.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All diagnostics of one run, in file and line order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Sorts by file, line and column and drops exact duplicates.
    pub fn sorted(mut self) -> Self {
        self.0.sort();
        self.0.dedup();
        self
    }

    /// True when there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of diagnostics.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Iterates over the diagnostics.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A line and column in a source file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line, 0 for "the whole file".
    pub line: u32,
    /// 1-based column in characters.
    pub col: u32,
}

/// The text of one inventory file and the index to turn byte offsets into lines.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub(crate) path: Arc<str>,
    pub(crate) text: String,
    line_starts: Vec<usize>,
    bad_utf8: bool,
}

impl SourceFile {
    pub(crate) fn new(path: impl Into<Arc<str>>, text: String) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        SourceFile {
            path: path.into(),
            text,
            line_starts,
            bad_utf8: false,
        }
    }

    /// Marks a file whose bytes were not UTF-8 (its text is empty).
    pub(crate) fn with_bad_utf8(mut self) -> Self {
        self.bad_utf8 = true;
        self
    }

    pub(crate) fn bad_utf8(&self) -> bool {
        self.bad_utf8
    }

    /// Line and column of a byte offset.
    pub(crate) fn pos(&self, offset: usize) -> Pos {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts[line - 1];
        let end = offset.min(self.text.len());
        let col = self
            .text
            .get(start..end)
            .map_or(end.saturating_sub(start), |s| s.chars().count())
            + 1;
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
        }
    }

    /// Position of the start of a span, or the top of the file.
    pub(crate) fn pos_of(&self, span: Option<Range<usize>>) -> Pos {
        span.map_or(Pos { line: 1, col: 1 }, |r| self.pos(r.start))
    }

    pub(crate) fn diag(&self, pos: Pos, field: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.path.clone(),
            line: pos.line,
            col: pos.col,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A TOML syntax error, at its position, with the first line of the parser's message.
    pub(crate) fn toml_error(&self, e: &toml_edit::TomlError) -> Diagnostic {
        let pos = self.pos_of(e.span());
        let msg = e.message().trim().lines().next().unwrap_or("invalid TOML");
        self.diag(pos, "", format!("invalid TOML: {msg}"))
    }
}

/// Where an entity was defined: its file and the position of each field read.
///
/// Validation uses it to point at the exact field of a cross-file problem
/// (a duplicate IP, an unknown product) long after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    file: Arc<str>,
    whole: Pos,
    /// Prepended to field names: `product[2].` for an entry of an array of tables.
    prefix: Box<str>,
    fields: Vec<(Box<str>, Pos)>,
}

impl Origin {
    pub(crate) fn new(file: Arc<str>, whole: Pos) -> Self {
        Origin {
            file,
            whole,
            prefix: "".into(),
            fields: Vec::new(),
        }
    }

    /// The same origin for an entry whose fields are recorded as `<prefix><field>`.
    pub(crate) fn prefixed(mut self, prefix: String) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// An origin for an entity built in memory (placement, tests).
    pub fn synthetic(file: &str) -> Self {
        Origin::new(file.into(), Pos::default())
    }

    pub(crate) fn record(&mut self, field: &str, pos: Pos) {
        self.fields.push((field.into(), pos));
    }

    /// The file the entity came from, relative to the repository.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Position of a field, falling back to its parent (`ips[0]` → `ips`) and
    /// then to the entity itself.
    pub fn pos(&self, field: &str) -> Pos {
        let full = format!("{}{field}", self.prefix);
        let mut f = full.as_str();
        if f.is_empty() {
            return self.whole;
        }
        loop {
            if let Some((_, p)) = self.fields.iter().find(|(k, _)| &**k == f) {
                return *p;
            }
            match f.rfind(['[', '.']) {
                Some(i) if i > 0 => f = &f[..i],
                _ => return self.whole,
            }
        }
    }

    /// A diagnostic about `field` of this entity.
    pub fn diag(&self, field: &str, message: impl Into<String>) -> Diagnostic {
        let p = self.pos(field);
        Diagnostic {
            file: self.file.clone(),
            line: p.line,
            col: p.col,
            field: format!("{}{field}", self.prefix),
            message: message.into(),
        }
    }
}
