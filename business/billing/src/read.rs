//! Reading billing files (invoices, payment records) from their text with every error located
//! by file, line, column and field, as `gitvps validate` prints inventory errors.

use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use chrono::NaiveDate;
use model::Diagnostic;
use toml_edit::{Item, TableLike, Value};

/// A value that can be read from one TOML value.
pub(crate) trait FromToml: Sized {
    fn from_toml(v: &Value) -> Result<Self, String>;
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, found {}", kind(v)))
}

/// Types read from a string with their `FromStr` (ids, money, codes).
macro_rules! parsed {
    ($($t:ty),+ $(,)?) => {$(
        impl FromToml for $t {
            fn from_toml(v: &Value) -> Result<Self, String> {
                <$t>::from_str(string(v)?).map_err(|e| e.to_string())
            }
        }
    )+};
}

parsed!(
    model::CustomerId,
    model::VpsId,
    model::ProductId,
    model::values::Money,
    model::values::Currency,
    model::values::Country,
    model::values::Email,
    model::policy::TaxRate,
    model::policy::InvoiceNumber,
);

impl FromToml for String {
    fn from_toml(v: &Value) -> Result<Self, String> {
        let s = string(v)?;
        if s.chars().any(char::is_control) {
            return Err("control characters are not allowed here".to_owned());
        }
        Ok(s.to_owned())
    }
}

impl FromToml for bool {
    fn from_toml(v: &Value) -> Result<Self, String> {
        v.as_bool()
            .ok_or_else(|| format!("expected true or false, found {}", kind(v)))
    }
}

impl FromToml for u32 {
    fn from_toml(v: &Value) -> Result<Self, String> {
        let i = v
            .as_integer()
            .ok_or_else(|| format!("expected an integer, found {}", kind(v)))?;
        u32::try_from(i).map_err(|_| format!("{i} is out of range (0 to {})", u32::MAX))
    }
}

impl FromToml for NaiveDate {
    fn from_toml(v: &Value) -> Result<Self, String> {
        let Value::Datetime(dt) = v else {
            return Err(format!(
                "expected a date like 2026-12-05 (without quotes), found {}",
                kind(v)
            ));
        };
        match (dt.value().date, dt.value().time) {
            (Some(d), None) => NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
                .ok_or_else(|| format!("{d} is not a calendar date")),
            _ => Err(format!(
                "expected a date, found the date-time {}",
                dt.value()
            )),
        }
    }
}

impl FromToml for chrono::DateTime<chrono::Utc> {
    fn from_toml(v: &Value) -> Result<Self, String> {
        let s = string(v)?;
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|_| format!("`{s}` is not an RFC 3339 time like \"2026-12-05T12:00:00Z\""))
    }
}

/// One file being read: its text, the start of each line, and the errors found so far.
pub(crate) struct Src<'a> {
    file: Arc<str>,
    text: &'a str,
    starts: Vec<usize>,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'a> Src<'a> {
    pub(crate) fn new(file: &str, text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Src {
            file: file.into(),
            text,
            starts,
            diags: Vec::new(),
        }
    }

    /// Parses the text; a syntax error is returned as the one diagnostic.
    pub(crate) fn parse(&self) -> Result<toml_edit::Document<&'a str>, Diagnostic> {
        toml_edit::Document::parse(self.text).map_err(|e| {
            let msg = e.message().trim().lines().next().unwrap_or("invalid TOML");
            self.diag(e.span(), "", format!("invalid TOML: {msg}"))
        })
    }

    /// A diagnostic at the start of `span` (the top of the file without one).
    pub(crate) fn diag(
        &self,
        span: Option<Range<usize>>,
        field: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, col) = match span {
            Some(r) => {
                let line = self.starts.partition_point(|&s| s <= r.start).max(1);
                let start = self.starts[line - 1];
                let col = self
                    .text
                    .get(start..r.start.min(self.text.len()))
                    .map_or(0, |s| s.chars().count())
                    + 1;
                (line, col)
            }
            None => (1, 1),
        };
        Diagnostic {
            file: self.file.clone(),
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
            field: field.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn error(
        &mut self,
        span: Option<Range<usize>>,
        field: &str,
        msg: impl Into<String>,
    ) {
        let d = self.diag(span, field, msg);
        self.diags.push(d);
    }
}

/// A table being read, with the prefix of its fields (`buyer.`, `line[1].`).
pub(crate) struct Table<'t> {
    pub(crate) t: &'t dyn TableLike,
    pub(crate) prefix: String,
    pub(crate) span: Option<Range<usize>>,
}

impl<'t> Table<'t> {
    fn item(&self, key: &str) -> Option<&'t Item> {
        self.t.get(key).filter(|i| !i.is_none())
    }

    fn span_of(&self, key: &str) -> Option<Range<usize>> {
        self.item(key)
            .and_then(Item::span)
            .or_else(|| self.t.key(key).and_then(toml_edit::Key::span))
            .or_else(|| self.span.clone())
    }

    /// An optional field; `None` when absent or wrong (the error is recorded).
    pub(crate) fn opt<T: FromToml>(&self, src: &mut Src<'_>, key: &str) -> Option<T> {
        let item = self.item(key)?;
        let field = format!("{}{key}", self.prefix);
        let span = self.span_of(key);
        let Some(v) = item.as_value() else {
            src.error(span, &field, "expected a value, found a table");
            return None;
        };
        T::from_toml(v).map_err(|e| src.error(span, &field, e)).ok()
    }

    /// A required field; a missing one is an error at the table.
    pub(crate) fn req<T: FromToml>(&self, src: &mut Src<'_>, key: &str) -> Option<T> {
        if self.item(key).is_none() {
            src.error(
                self.span.clone(),
                &format!("{}{key}", self.prefix),
                "missing required field",
            );
            return None;
        }
        self.opt(src, key)
    }

    /// An optional array, each element checked on its own; absent is empty.
    pub(crate) fn list<T: FromToml>(&self, src: &mut Src<'_>, key: &str) -> Vec<T> {
        let Some(item) = self.item(key) else {
            return Vec::new();
        };
        let field = format!("{}{key}", self.prefix);
        let Some(arr) = item.as_array() else {
            src.error(self.span_of(key), &field, "expected an array");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in arr.iter().enumerate() {
            match T::from_toml(v) {
                Ok(x) => out.push(x),
                Err(e) => src.error(v.span(), &format!("{field}[{i}]"), e),
            }
        }
        out
    }

    /// A nested table, if present (an error when it is something else).
    pub(crate) fn sub(&self, src: &mut Src<'_>, key: &str) -> Option<Table<'t>> {
        let item = self.item(key)?;
        let field = format!("{}{key}", self.prefix);
        match item.as_table_like() {
            Some(t) => Some(Table {
                t,
                prefix: format!("{field}."),
                span: self.span_of(key),
            }),
            None => {
                src.error(self.span_of(key), &field, "expected a table");
                None
            }
        }
    }

    /// The tables of an array of tables (`[[line]]`), each with its prefix (`line[0].`).
    pub(crate) fn tables(&self, src: &mut Src<'_>, key: &str) -> Vec<Table<'t>> {
        match self.item(key) {
            None => Vec::new(),
            Some(Item::ArrayOfTables(a)) => a
                .iter()
                .enumerate()
                .map(|(i, t)| Table {
                    t: t as &dyn TableLike,
                    prefix: format!("{key}[{i}]."),
                    span: t.span(),
                })
                .collect(),
            Some(_) => {
                src.error(self.span_of(key), key, format!("expected [[{key}]] tables"));
                Vec::new()
            }
        }
    }

    /// Reports every key that is not in `known`.
    pub(crate) fn finish(&self, src: &mut Src<'_>, known: &[&str]) {
        for (key, item) in self.t.iter() {
            if !known.contains(&key) {
                let span = self
                    .t
                    .key(key)
                    .and_then(toml_edit::Key::span)
                    .or_else(|| item.span());
                src.error(
                    span,
                    &format!("{}{key}", self.prefix),
                    format!("unknown field (expected one of: {})", known.join(", ")),
                );
            }
        }
    }
}

/// A value quoted as a TOML string.
pub(crate) fn quote(s: &str) -> String {
    Value::from(s).to_string()
}
