//! Typed reading of parsed TOML with every error recorded, never the first only.
//! Each field read records its position in the entity's [`Origin`] for later validation errors.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;

use chrono::NaiveDate;
use ipnet::{Ipv4Net, Ipv6Net};
use toml_edit::{Item, TableLike, Value};

use crate::backup::{EnvName, SnapshotId};
use crate::diag::{Diagnostic, Origin, SourceFile};
use crate::ids::{
    ApplianceId, CustomerId, IsoId, NodeId, OsId, PoolId, ProductId, SnapshotName, VpsId,
};
use crate::policy::{InvoiceNumber, InvoiceRule, TaxRate};
use crate::values::*;

/// A value type that can be read from one TOML value.
pub(crate) trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, String>;
}

fn type_name(v: &Value) -> &'static str {
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

fn item_type_name(i: &Item) -> &'static str {
    match i {
        Item::None => "nothing",
        Item::Value(v) => type_name(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn expect_str(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string, found {}", type_name(v)))
}

macro_rules! from_str_value {
    ($($t:ty),+ $(,)?) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                expect_str(v)?.parse::<$t>().map_err(|e| e.to_string())
            }
        }
    )+};
}

from_str_value!(
    VpsId,
    NodeId,
    CustomerId,
    ProductId,
    PoolId,
    OsId,
    ApplianceId,
    IsoId,
    SnapshotName,
    crate::media::Sha256Hex,
    crate::media::MediaUrl,
    Size,
    Currency,
    Rate,
    ByteRate,
    Hostname,
    Email,
    Host,
    UnixUser,
    VgName,
    AbsPath,
    SshPublicKey,
    Country,
    PasswordHash,
    Ipv4Range,
    VpsAddr,
    InvoiceRule,
    InvoiceNumber,
    EnvName,
    SnapshotId
);

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        if s.chars().any(char::is_control) {
            return Err("control characters (newlines, tabs, escapes) are not allowed here".into());
        }
        Ok(s.to_owned())
    }
}

impl FromValue for Money {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Float(f) => Err(format!(
                "money is never a float: write the amount as a string, like \"{:.2}\"",
                f.value()
            )),
            Value::Integer(i) => Err(format!(
                "write the amount as a string, like \"{}.00\"",
                i.value()
            )),
            _ => expect_str(v)?.parse(),
        }
    }
}

impl FromValue for TaxRate {
    fn from_value(v: &Value) -> Result<Self, String> {
        match v {
            Value::Float(_) | Value::Integer(_) => Err(format!(
                "write the rate as a decimal string, like \"{}\": a rate is never a float",
                v.to_string().trim()
            )),
            _ => expect_str(v)?.parse(),
        }
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, String> {
        v.as_bool()
            .ok_or_else(|| format!("expected true or false, found {}", type_name(v)))
    }
}

fn integer(v: &Value) -> Result<i64, String> {
    v.as_integer()
        .ok_or_else(|| format!("expected an integer, found {}", type_name(v)))
}

macro_rules! from_int_value {
    ($($t:ty),+) => {$(
        impl FromValue for $t {
            fn from_value(v: &Value) -> Result<Self, String> {
                let i = integer(v)?;
                <$t>::try_from(i).map_err(|_| {
                    format!("{i} is out of range ({} to {})", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )+};
}
from_int_value!(u16, u32, u64);

impl FromValue for Ratio {
    fn from_value(v: &Value) -> Result<Self, String> {
        let f = match v {
            Value::Float(f) => *f.value(),
            #[allow(clippy::cast_precision_loss)]
            Value::Integer(i) => *i.value() as f64,
            _ => return Err(format!("expected a number, found {}", type_name(v))),
        };
        Ratio::new(f)
    }
}

impl FromValue for NaiveDate {
    fn from_value(v: &Value) -> Result<Self, String> {
        let Value::Datetime(dt) = v else {
            let hint = if v.is_str() { " (without quotes)" } else { "" };
            return Err(format!(
                "expected a date like 2009-02-21{hint}, found {}",
                type_name(v)
            ));
        };
        let dt = dt.value();
        match (dt.date, dt.time) {
            (Some(d), None) => NaiveDate::from_ymd_opt(d.year.into(), d.month.into(), d.day.into())
                .ok_or_else(|| format!("{d} is not a calendar date")),
            _ => Err(format!(
                "expected a date like 2009-02-21, found the date-time {dt}"
            )),
        }
    }
}

impl FromValue for chrono::DateTime<chrono::Utc> {
    fn from_value(v: &Value) -> Result<Self, String> {
        let Value::Datetime(dt) = v else {
            let hint = if v.is_str() { " (without quotes)" } else { "" };
            return Err(format!(
                "expected a UTC date-time like 2026-12-06T23:00:00Z{hint}, found {}",
                type_name(v)
            ));
        };
        let dt = dt.value();
        if dt.offset.is_none() || dt.time.is_none() || dt.date.is_none() {
            return Err(format!(
                "expected a date-time with its time zone, like 2026-12-06T23:00:00Z, found {dt}"
            ));
        }
        chrono::DateTime::parse_from_rfc3339(&dt.to_string())
            .map(|t| t.with_timezone(&chrono::Utc))
            .map_err(|e| format!("{dt} is not a date-time: {e}"))
    }
}

impl FromValue for IpAddr {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        s.parse()
            .map_err(|_| format!("`{}` is not an IP address", s.escape_debug()))
    }
}

impl FromValue for std::net::SocketAddr {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        s.parse().map_err(|_| {
            format!(
                "`{}` is not an address and port (`127.0.0.1:9464`, `[::1]:9464`)",
                s.escape_debug()
            )
        })
    }
}

impl FromValue for Ipv4Addr {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        s.parse()
            .map_err(|_| format!("`{}` is not an IPv4 address", s.escape_debug()))
    }
}

impl FromValue for Ipv4Net {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        let net: Ipv4Net = s.parse().map_err(|_| {
            format!(
                "`{}` is not an IPv4 network like \"192.0.2.0/24\"",
                s.escape_debug()
            )
        })?;
        if net.addr() != net.network() {
            return Err(format!(
                "`{s}` has host bits set: the network is {}",
                net.trunc()
            ));
        }
        Ok(net)
    }
}

impl FromValue for Ipv6Net {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        let net: Ipv6Net = s.parse().map_err(|_| {
            format!(
                "`{}` is not an IPv6 prefix like \"2001:db8::/48\"",
                s.escape_debug()
            )
        })?;
        if net.addr() != net.network() {
            return Err(format!(
                "`{s}` has host bits set: the prefix is {}",
                net.trunc()
            ));
        }
        if net.prefix_len() > 64 {
            return Err(format!(
                "`{s}` is smaller than a /64: a pool hands out /64s"
            ));
        }
        Ok(net)
    }
}

/// Wraps a keyword enum for reading.
pub(crate) struct Kw<K>(pub K);

impl<K: Keyword> FromValue for Kw<K> {
    fn from_value(v: &Value) -> Result<Self, String> {
        parse_keyword::<K>(expect_str(v)?).map(Kw)
    }
}

/// A service check: a service name (`"ssh"`), or a table with `service` and optionally
/// `address`, `port` and `timeout_secs`.
impl FromValue for crate::inventory::ServiceCheck {
    fn from_value(v: &Value) -> Result<Self, String> {
        use crate::inventory::ServiceCheck;
        let t = match v {
            Value::String(_) => {
                return Ok(ServiceCheck::plain(parse_keyword(expect_str(v)?)?));
            }
            Value::InlineTable(t) => t,
            _ => {
                return Err(format!(
                    "expected a service name like \"ssh\" or a table like {{ service = \"http\", port = 8080 }}, found {}",
                    type_name(v)
                ));
            }
        };
        const KEYS: &[&str] = &["service", "address", "port", "timeout_secs"];
        if let Some((k, _)) = t.iter().find(|(k, _)| !KEYS.contains(k)) {
            return Err(match suggest(k, KEYS) {
                Some(best) => format!("unknown key `{}`, did you mean `{best}`?", k.escape_debug()),
                None => format!(
                    "unknown key `{}` (expected one of: {})",
                    k.escape_debug(),
                    KEYS.join(", ")
                ),
            });
        }
        let service = match t.get("service") {
            Some(s) => {
                parse_keyword::<Check>(expect_str(s)?).map_err(|e| format!("service: {e}"))?
            }
            None => return Err("a check table needs `service`".into()),
        };
        let address = t
            .get("address")
            .map(IpAddr::from_value)
            .transpose()
            .map_err(|e| format!("address: {e}"))?;
        let port = t
            .get("port")
            .map(u16::from_value)
            .transpose()
            .map_err(|e| format!("port: {e}"))?;
        match (service.default_port(), port) {
            (None, Some(_)) => return Err(format!("port: a {service} check has no port")),
            (Some(_), Some(0)) => return Err("port: must be 1 to 65535".into()),
            _ => {}
        }
        let timeout_secs = t
            .get("timeout_secs")
            .map(u32::from_value)
            .transpose()
            .map_err(|e| format!("timeout_secs: {e}"))?;
        if timeout_secs.is_some_and(|s| !(1..=60).contains(&s)) {
            return Err("timeout_secs: must be 1 to 60".into());
        }
        Ok(ServiceCheck {
            service,
            address,
            port,
            timeout_secs,
        })
    }
}

/// A Linux network interface name, read as a string.
pub(crate) struct IfName(pub String);

impl FromValue for IfName {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        check_interface_name(s).map(|()| IfName(s.to_owned()))
    }
}

/// A word of `xl info`'s `virt_caps` line (`pv`, `hvm`, `hap`, `gnttab-v1`), read as a string.
pub(crate) struct VirtCap(pub String);

impl FromValue for VirtCap {
    fn from_value(v: &Value) -> Result<Self, String> {
        let s = expect_str(v)?;
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(VirtCap(s.to_owned()))
        } else {
            Err(format!(
                "`{}` is not a word of `xl info`'s virt_caps (lowercase letters, digits, `_`, `-`; at most 32)",
                s.escape_debug()
            ))
        }
    }
}

/// One file being read: its source and the diagnostics found so far.
pub(crate) struct Reader<'s> {
    pub(crate) src: &'s SourceFile,
    pub(crate) diags: Vec<Diagnostic>,
}

impl<'s> Reader<'s> {
    pub(crate) fn new(src: &'s SourceFile) -> Self {
        Reader {
            src,
            diags: Vec::new(),
        }
    }

    pub(crate) fn error(
        &mut self,
        span: Option<Range<usize>>,
        field: &str,
        msg: impl Into<String>,
    ) {
        let pos = self.src.pos_of(span);
        self.diags.push(self.src.diag(pos, field, msg));
    }

    /// A fresh origin for an entity starting at `span`.
    pub(crate) fn origin(&self, span: Option<Range<usize>>) -> Origin {
        Origin::new(self.src.path.clone(), self.src.pos_of(span))
    }

    pub(crate) fn error_count(&self) -> usize {
        self.diags.len()
    }
}

/// A TOML table being read: tracks which keys were used so unknown ones are reported.
pub(crate) struct Obj<'a> {
    table: &'a dyn TableLike,
    prefix: String,
    span: Option<Range<usize>>,
    known: &'static [&'static str],
}

/// Where a secret must come from instead of a file.
const SECRET_HINTS: &[(&str, &str)] = &[
    (
        "password",
        "a password never goes in the repository: customers carry `password_hash`, an argon2 hash; other passwords come from the environment, named by a `*_env` field where one exists",
    ),
    (
        "secret",
        "secrets come from the environment only (see the README), never from the repository",
    ),
    (
        "token",
        "secrets come from the environment only (see the README), never from the repository",
    ),
    (
        "private_key",
        "the SSH key comes from GITVPS_SSH_KEY in the environment, never from the repository",
    ),
    (
        "smtp_url",
        "the SMTP server comes from GITVPS_SMTP_URL in the environment",
    ),
];

impl<'a> Obj<'a> {
    pub(crate) fn new(
        table: &'a dyn TableLike,
        prefix: impl Into<String>,
        span: Option<Range<usize>>,
        known: &'static [&'static str],
    ) -> Self {
        Obj {
            table,
            prefix: prefix.into(),
            span,
            known,
        }
    }

    /// The span of a key's value, or of the table when the key is absent.
    pub(crate) fn span_of(&self, key: &str) -> Option<Range<usize>> {
        match self.table.get(key) {
            Some(item) => self.value_span(key, item),
            None => self.span.clone(),
        }
    }

    /// The table being read.
    pub(crate) fn table(&self) -> &'a dyn TableLike {
        self.table
    }

    /// The full field name of a key, like `product[2].price`.
    pub(crate) fn field(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn value_span(&self, key: &str, item: &Item) -> Option<Range<usize>> {
        item.span()
            .or_else(|| self.table.key(key).and_then(toml_edit::Key::span))
            .or_else(|| self.span.clone())
    }

    fn get(&self, key: &str) -> Option<&'a Item> {
        debug_assert!(self.known.contains(&key), "{key} not in known list");
        self.table.get(key).filter(|i| !i.is_none())
    }

    /// Reads an optional field; `None` when absent or wrong (the error is recorded).
    pub(crate) fn opt<T: FromValue>(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
    ) -> Option<T> {
        let item = self.get(key)?;
        let field = self.field(key);
        let span = self.value_span(key, item);
        o.record(&field, r.src.pos_of(span.clone()));
        let Some(v) = item.as_value() else {
            r.error(
                span,
                &field,
                format!("expected a value, found {}", item_type_name(item)),
            );
            return None;
        };
        match T::from_value(v) {
            Ok(t) => Some(t),
            Err(e) => {
                r.error(span, &field, e);
                None
            }
        }
    }

    /// Reads an optional field into `slot`, which keeps its default when the field is absent
    /// or wrong (the error is recorded).
    pub(crate) fn set<T: FromValue>(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
        slot: &mut T,
    ) {
        if let Some(v) = self.opt(r, o, key) {
            *slot = v;
        }
    }

    /// Reads an optional field into `slot` when `check` accepts it; a refused value is an
    /// error at the field, and `slot` keeps its default.
    pub(crate) fn set_checked<T: FromValue>(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
        slot: &mut T,
        check: impl FnOnce(&T) -> Result<(), String>,
    ) {
        let Some(v) = self.opt(r, o, key) else {
            return;
        };
        match check(&v) {
            Ok(()) => *slot = v,
            Err(msg) => self.error(r, key, msg),
        }
    }

    /// Records an error at a key's value (at the table when the key is absent).
    pub(crate) fn error(&self, r: &mut Reader<'_>, key: &str, msg: impl Into<String>) {
        r.error(self.span_of(key), &self.field(key), msg);
    }

    /// Whether a required key is present; a missing one is an error at the table.
    pub(crate) fn required(&self, r: &mut Reader<'_>, key: &str) -> bool {
        let present = self.has(key);
        if !present {
            r.error(
                self.span.clone(),
                &self.field(key),
                "missing required field",
            );
        }
        present
    }

    /// Reads a required field; a missing one is an error at the table.
    pub(crate) fn req<T: FromValue>(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
    ) -> Option<T> {
        if !self.required(r, key) {
            return None;
        }
        self.opt(r, o, key)
    }

    /// Reads an optional keyword enum.
    pub(crate) fn kw<K: Keyword>(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
    ) -> Option<K> {
        self.opt::<Kw<K>>(r, o, key).map(|k| k.0)
    }

    /// Reads a required keyword enum.
    pub(crate) fn req_kw<K: Keyword>(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
    ) -> Option<K> {
        self.req::<Kw<K>>(r, o, key).map(|k| k.0)
    }

    /// Whether the key is present.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Reads an optional array; each element is checked on its own (`ips[1]`).
    /// Returns only the elements that parsed.
    pub(crate) fn list<T: FromValue>(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
    ) -> Vec<T> {
        let Some(item) = self.get(key) else {
            return Vec::new();
        };
        let field = self.field(key);
        let span = self.value_span(key, item);
        o.record(&field, r.src.pos_of(span.clone()));
        let Some(arr) = item.as_array() else {
            r.error(
                span,
                &field,
                format!("expected an array, found {}", item_type_name(item)),
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(arr.len());
        for (i, v) in arr.iter().enumerate() {
            let f = format!("{field}[{i}]");
            let vspan = v.span().or_else(|| span.clone());
            o.record(&f, r.src.pos_of(vspan.clone()));
            match T::from_value(v) {
                Ok(t) => out.push(t),
                Err(e) => r.error(vspan, &f, e),
            }
        }
        out
    }

    /// A nested table (`[capacity]` or `capacity = { ... }`), if present.
    pub(crate) fn sub(
        &self,
        r: &mut Reader<'_>,
        o: &mut Origin,
        key: &str,
        known: &'static [&'static str],
    ) -> Option<Obj<'a>> {
        let item = self.get(key)?;
        let field = self.field(key);
        let span = self.value_span(key, item);
        o.record(&field, r.src.pos_of(span.clone()));
        match item.as_table_like() {
            Some(t) => Some(Obj::new(t, format!("{field}."), span, known)),
            None => {
                r.error(
                    span,
                    &field,
                    format!("expected a table, found {}", item_type_name(item)),
                );
                None
            }
        }
    }

    /// Reports every key that is not a known field, with a suggestion where one is close.
    pub(crate) fn finish(&self, r: &mut Reader<'_>) {
        for (key, item) in self.table.iter() {
            if self.known.contains(&key) {
                continue;
            }
            let span = self
                .table
                .key(key)
                .and_then(toml_edit::Key::span)
                .or_else(|| item.span())
                .or_else(|| self.span.clone());
            let lower = key.to_ascii_lowercase();
            let msg = if let Some((_, hint)) = SECRET_HINTS.iter().find(|(w, _)| lower.contains(w))
            {
                format!("unknown field: {hint}")
            } else if let Some(best) = suggest(key, self.known) {
                format!("unknown field, did you mean `{best}`?")
            } else {
                format!("unknown field (expected one of: {})", self.known.join(", "))
            };
            r.error(span, &self.field(key), msg);
        }
    }
}

/// The known name closest to `key`, if it is close enough to be a typo.
pub(crate) fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("hostnme", &["hostname", "host_key"]),
            Some("hostname")
        );
        assert_eq!(suggest("exipres", &["expires", "created"]), Some("expires"));
        assert_eq!(suggest("zzz", &["hostname"]), None);
    }
}
