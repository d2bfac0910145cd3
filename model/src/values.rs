//! Value types of the inventory: sizes, money, addresses, names and enums, each parsed strictly.
//! A value that parsed is safe to put in a path, a config file or a shell word.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::Ipv6Net;
use rust_decimal::Decimal;

/// Declares a text value that can only be built by parsing: the struct (`Debug`, `Clone`,
/// `PartialEq`, `Eq`, serialized as its text, plus any derives given), `as_str`, `Display`, and
/// `FromStr` through `parse`, whose `Ok` is the text to keep (as written or normalized).
/// `pub(crate) fn new_unchecked;` adds a constructor for literals known to be valid; a `secret`
/// struct debugs as `Name(..)` and has neither `Display` nor `Serialize`.
macro_rules! string_value {
    (@methods $name:ident
        $(#[$as_str_doc:meta])*
        pub fn as_str;
        $(pub(crate) fn $unchecked:ident;)?
        fn parse($s:ident) $parse:block
    ) => {
        impl $name {
            $(
                /// For literals known to be valid (defaults, covered by tests).
                pub(crate) fn $unchecked(s: &str) -> Self {
                    $name(s.to_owned())
                }
            )?
            $(#[$as_str_doc])*
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                fn parse($s: &str) -> Result<String, String> $parse
                parse(s).map($name)
            }
        }
    };
    ($(#[$attr:meta])* pub struct $name:ident(String); $($rest:tt)*) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        $crate::values::string_value!(@methods $name $($rest)*);
    };
    ($(#[$attr:meta])* pub secret struct $name:ident(String); $($rest:tt)*) => {
        $(#[$attr])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        $crate::values::string_value!(@methods $name $($rest)*);
    };
}
pub(crate) use string_value;

/// A size in bytes, written with a binary unit: `"30 GiB"`, `"15000 MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Size(pub u64);

const UNITS: [(&str, u64); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

impl Size {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Size {
        Size(n << 20)
    }
    /// `n` gibibytes.
    pub const fn gib(n: u64) -> Size {
        Size(n << 30)
    }
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
    /// Whole mebibytes, rounded down.
    pub const fn as_mib(self) -> u64 {
        self.0 >> 20
    }
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim_start();
        if num.is_empty() {
            return Err(format!(
                "`{s}` is not a size: write a whole number and a unit, like \"30 GiB\""
            ));
        }
        let Some(&(_, mult)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            let hint = match unit.to_ascii_lowercase().as_str() {
                "" => "a unit is required (MiB, GiB, TiB)".to_owned(),
                "m" | "mb" | "mib" => "write MiB".to_owned(),
                "g" | "gb" | "gib" => "write GiB".to_owned(),
                "t" | "tb" | "tib" => "write TiB".to_owned(),
                "k" | "kb" | "kib" => "write KiB".to_owned(),
                _ => format!("unknown unit `{unit}`, use MiB, GiB or TiB"),
            };
            return Err(format!("`{s}` is not a size: {hint}"));
        };
        num.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(mult))
            .map(Size)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            return f.write_str("0 B");
        }
        let (unit, mult) = UNITS
            .iter()
            .find(|(_, m)| self.0.is_multiple_of(*m))
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{} {unit}", self.0 / mult)
    }
}

impl serde::Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An amount of money, from a decimal string with at most two decimals (`"59.00"`).
/// Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    /// Zero.
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// The amount as a decimal.
    pub fn amount(self) -> Decimal {
        self.0
    }

    /// The amount in minor units (cents), as payment providers count it.
    pub fn minor_units(self) -> i64 {
        let cents = self.0 * Decimal::ONE_HUNDRED;
        i64::try_from(cents.trunc()).unwrap_or(i64::MAX)
    }

    /// Builds an amount from minor units (cents).
    pub fn from_minor_units(cents: i64) -> Money {
        Money(Decimal::new(cents, 2))
    }
}

impl Money {
    /// An amount from a decimal: refused when negative or finer than a cent (two decimals).
    pub fn from_decimal(d: Decimal) -> Result<Money, String> {
        if d.is_sign_negative() && !d.is_zero() {
            Err(format!("{d} is negative: an amount is never below zero"))
        } else if d.normalize().scale() > 2 {
            Err(format!("{d} has more than two decimals"))
        } else {
            Ok(Money(d.round_dp(2)))
        }
    }

    /// `self - o`, or `None` below zero.
    pub fn checked_sub(self, o: Money) -> Option<Money> {
        (self.0 >= o.0).then(|| Money(self.0 - o.0))
    }

    /// `n` times the amount.
    pub fn times(self, n: u32) -> Money {
        Money(self.0 * Decimal::from(n))
    }

    /// The amount with exactly `decimals` digits after the point (at most 2): `"59.00"` with 2,
    /// `"500"` with 0, as a currency's minor units ask.
    pub fn with_decimals(self, decimals: u32) -> String {
        let dp = decimals.min(2) as usize;
        format!("{:.dp$}", self.0)
    }
}

impl std::ops::Add for Money {
    type Output = Money;
    fn add(self, o: Money) -> Money {
        Money(self.0 + o.0)
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Money>>(it: I) -> Money {
        it.fold(Money::ZERO, |a, b| a + b)
    }
}

impl FromStr for Money {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.split_once('.').map_or_else(
                || s.bytes().all(|b| b.is_ascii_digit()),
                |(i, d)| {
                    !i.is_empty()
                        && i.bytes().all(|b| b.is_ascii_digit())
                        && (1..=2).contains(&d.len())
                        && d.bytes().all(|b| b.is_ascii_digit())
                },
            );
        if !ok || s.len() > 15 {
            return Err(format!(
                "`{s}` is not an amount: write digits with at most two decimals, like \"59.00\""
            ));
        }
        Decimal::from_str(s)
            .map(|d| Money(d.round_dp(2)))
            .map_err(|e| format!("`{s}` is not an amount: {e}"))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl serde::Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

string_value! {
    /// An ISO 4217 currency code (`USD`, `EUR`), one of [`crate::iso::CURRENCIES`].
    #[derive(PartialOrd, Ord, Hash)]
    pub struct Currency(String);
    /// The code.
    pub fn as_str;
    pub(crate) fn new_unchecked;
    fn parse(s) {
        if crate::iso::currency_minor_units(s).is_some() {
            Ok(s.to_owned())
        } else if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Err(format!("`{s}` is not an ISO 4217 currency code"))
        } else {
            Err(format!(
                "`{}` is not a currency: write its ISO 4217 code, like \"USD\"",
                s.escape_debug()
            ))
        }
    }
}

impl Currency {
    /// Digits after the decimal point of its minor unit (2 for USD, 0 for JPY), from ISO 4217.
    pub fn minor_units(&self) -> u32 {
        crate::iso::currency_minor_units(&self.0).unwrap_or(2)
    }
}

string_value! {
    /// A network rate for a Xen vif, as `xl.cfg` takes it: `100Mb/s`, `10MB/s`.
    pub struct Rate(String);
    /// The rate as `xl.cfg` spells it.
    pub fn as_str;
    pub(crate) fn new_unchecked;
    fn parse(s) {
        // ^[0-9]+[GMK]?[Bb]/s$, as xl's parser accepts.
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let rest = &s[digits..];
        let rest = rest.strip_prefix(['G', 'M', 'K']).unwrap_or(rest);
        if digits > 0 && digits <= 9 && (rest == "b/s" || rest == "B/s") {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "`{s}` is not a rate: write it as xl does, like \"100Mb/s\""
            ))
        }
    }
}

impl Rate {
    /// The rate in bits per second, read as xl reads it: `K`, `M`, `G` are powers of 1000,
    /// `b` bits and `B` bytes (`"100Mb/s"`: 100 000 000; `"10MB/s"`: 80 000 000). 0 is what xl
    /// takes as no limit.
    pub fn bits_per_sec(&self) -> u64 {
        let digits = self.0.bytes().take_while(u8::is_ascii_digit).count();
        let (num, rest) = self.0.split_at(digits);
        // At most 9 digits (checked when parsed): 999 999 999 GB/s in bits still fits in a u64.
        let n: u64 = num.parse().unwrap_or(0);
        let (mult, unit) = match rest.as_bytes().first() {
            Some(b'K') => (1_000, &rest[1..]),
            Some(b'M') => (1_000_000, &rest[1..]),
            Some(b'G') => (1_000_000_000, &rest[1..]),
            _ => (1, rest),
        };
        let per_unit: u64 = if unit.starts_with('B') { 8 } else { 1 };
        n.saturating_mul(mult).saturating_mul(per_unit)
    }
}

/// A disk throughput cap in bytes per second, with a decimal unit: `"200MB/s"`, `"1GB/s"`.
///
/// `K` is 1000, `M` 1000², `G` 1000³ bytes. Bits (`"200Mb/s"`) are refused: disk
/// bandwidth is counted in bytes. Displays as it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ByteRate {
    text: String,
    bytes_per_sec: u64,
}

impl ByteRate {
    /// The rate in bytes per second (what QEMU's `throttling.bps-total` takes).
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// The rate as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for ByteRate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (num, rest) = s.split_at(digits);
        let mult: u64 = match rest.as_bytes().first() {
            Some(b'K') => 1_000,
            Some(b'M') => 1_000_000,
            Some(b'G') => 1_000_000_000,
            _ => 0,
        };
        let unit = rest.get(1..).unwrap_or_default();
        if digits > 0 && mult > 0 && unit == "b/s" {
            return Err(format!(
                "`{}` is in bits per second: disk bandwidth is in bytes, like \"200MB/s\"",
                s.escape_debug()
            ));
        }
        // At most 9 digits: 999999999 GB/s still fits in QEMU's signed 64-bit field.
        let n = match num.parse::<u64>() {
            Ok(n) if digits <= 9 && mult > 0 && unit == "B/s" => n,
            _ => {
                return Err(format!(
                    "`{}` is not a disk bandwidth: write digits, then K, M or G (powers of 1000), then B/s, like \"200MB/s\"",
                    s.escape_debug()
                ));
            }
        };
        if n == 0 {
            return Err(format!(
                "`{s}` is no bandwidth at all: leave `disk_bandwidth` out for no cap"
            ));
        }
        let bytes_per_sec = n
            .checked_mul(mult)
            .ok_or_else(|| format!("`{s}` is too large"))?;
        Ok(ByteRate {
            text: s.to_owned(),
            bytes_per_sec,
        })
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for ByteRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Checks a Linux network interface name (a bridge the guests' taps join):
/// 1 to 15 characters of `[A-Za-z0-9_.-]`, not starting with `-`, not `.` or `..`.
pub fn check_interface_name(s: &str) -> Result<(), String> {
    let ok = (1..=15).contains(&s.len())
        && !s.starts_with('-')
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a network interface name: 1 to 15 letters, digits and _ . -, not starting with -",
            s.escape_debug()
        ))
    }
}

/// An overcommit ratio: how many times a node's capacity may be sold.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, serde::Serialize)]
#[serde(transparent)]
pub struct Ratio(f64);

impl Ratio {
    /// No overcommit.
    pub const ONE: Ratio = Ratio(1.0);

    /// Builds a ratio between 0.1 and 100.
    pub fn new(r: f64) -> Result<Ratio, String> {
        if r.is_finite() && (0.1..=100.0).contains(&r) {
            Ok(Ratio(r))
        } else {
            Err(format!(
                "{r} is not an overcommit ratio: use a number from 0.1 to 100"
            ))
        }
    }

    /// `n` times this ratio, rounded down.
    pub fn scale(self, n: u64) -> u64 {
        // Capacities are far below 2^52: f64 holds them exactly.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let r = (n as f64 * self.0).floor() as u64;
        r
    }

    /// The ratio.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

string_value! {
    /// A host name per RFC 1123: dot-separated labels of letters, digits and `-`.
    #[derive(PartialOrd, Ord, Hash)]
    pub struct Hostname(String);
    /// The name as text.
    pub fn as_str;
    fn parse(s) {
        let bad = |why: &str| {
            Err(format!(
                "`{}` is not a valid host name (RFC 1123): {why}",
                s.escape_debug()
            ))
        };
        if s.is_empty() || s.len() > 253 {
            return bad("it must be 1 to 253 characters long");
        }
        for label in s.split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("each dot-separated label must be 1 to 63 characters long");
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return bad("only letters, digits, '-' and '.' are allowed");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("a label must not start or end with '-'");
            }
        }
        if s.rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return bad("the last label must not be all digits");
        }
        Ok(s.to_ascii_lowercase())
    }
}

string_value! {
    /// An e-mail address: a strict, common subset of RFC 5322 (`local@host.tld`).
    #[derive(PartialOrd, Ord, Hash)]
    pub struct Email(String);
    /// The address as text.
    pub fn as_str;
    pub(crate) fn new_unchecked;
    fn parse(s) {
        let bad = || format!("`{}` is not a valid e-mail address", s.escape_debug());
        let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
        if !local_ok || !domain.contains('.') || domain.parse::<Hostname>().is_err() {
            return Err(bad());
        }
        Ok(s.to_owned())
    }
}

/// Where a node is reached: an IP address or a host name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name.
    Name(Hostname),
}

impl FromStr for Host {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        s.parse::<Hostname>().map(Host::Name).map_err(|_| {
            format!(
                "`{}` is neither an IP address nor a host name",
                s.escape_debug()
            )
        })
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => write!(f, "{n}"),
        }
    }
}

string_value! {
    /// A Unix user name (`[a-z_][a-z0-9_-]*`, at most 32 characters).
    pub struct UnixUser(String);
    /// The name as text.
    pub fn as_str;
    pub(crate) fn new_unchecked;
    fn parse(s) {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "`{}` is not a valid Unix user name",
                s.escape_debug()
            ))
        }
    }
}

string_value! {
    /// An LVM volume group name.
    pub struct VgName(String);
    /// The name as text.
    pub fn as_str;
    fn parse(s) {
        let ok = !s.is_empty()
            && s.len() <= 127
            && !s.starts_with(['-', '.'])
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
        if ok {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "`{}` is not a volume group name: use letters, digits and _ . + -",
                s.escape_debug()
            ))
        }
    }
}

string_value! {
    /// An absolute path made of plain components (`[A-Za-z0-9._+-]`, no `..`).
    pub struct AbsPath(String);
    /// The path as text.
    pub fn as_str;
    pub(crate) fn new_unchecked;
    fn parse(s) {
        let bad = |why: &str| {
            Err(format!(
                "`{}` is not a usable path: {why}",
                s.escape_debug()
            ))
        };
        if !s.starts_with('/') {
            return bad("it must be absolute");
        }
        if s.len() > 1024 {
            return bad("it is too long");
        }
        if s == "/" {
            return Ok(s.to_owned());
        }
        for c in s.trim_end_matches('/')[1..].split('/') {
            if c.is_empty() || c == "." || c == ".." {
                return bad("empty, `.` and `..` components are not allowed");
            }
            if !c
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
            {
                return bad("only letters, digits and . _ + - are allowed in a component");
            }
        }
        Ok(s.trim_end_matches('/').to_owned())
    }
}

string_value! {
    /// An OpenSSH public key (`ssh-ed25519 AAAA... comment`), checked by decoding it.
    ///
    /// The comment is limited to a safe character set so the key can be written
    /// into an `authorized_keys` line verbatim.
    #[derive(Hash)]
    pub struct SshPublicKey(String);
    /// The key as one `authorized_keys` line (algorithm, base64, comment).
    pub fn as_str;
    fn parse(s) {
        let t = s.trim();
        let shown: String = t
            .chars()
            .take(40)
            .collect::<String>()
            .escape_debug()
            .to_string();
        if t.len() > 16 * 1024 || t.contains(['\n', '\r', '\0']) {
            return Err(format!(
                "`{shown}...` is not an SSH public key: it must be one line"
            ));
        }
        let key = ssh_key::PublicKey::from_openssh(t)
            .map_err(|e| format!("`{shown}` is not an SSH public key: {e}"))?;
        match key.key_data() {
            ssh_key::public::KeyData::Dsa(_) => {
                return Err("DSA (ssh-dss) keys are refused: use ed25519, ecdsa or RSA of 2048 bits or more".to_owned());
            }
            ssh_key::public::KeyData::Rsa(rsa) => {
                let bits = rsa_bits(&rsa.n);
                if bits < MIN_RSA_BITS {
                    return Err(format!(
                        "this RSA key has {bits} bits: at least {MIN_RSA_BITS} are required (or use ed25519)"
                    ));
                }
            }
            _ => {}
        }
        let comment = key.comment();
        if !comment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" @._:+=/-,".contains(&b))
        {
            return Err(format!(
                "the comment `{}` of this SSH key may only hold letters, digits, spaces and @ . _ : + = / - ,",
                comment.chars().take(60).collect::<String>().escape_debug()
            ));
        }
        let line = key
            .to_openssh()
            .map_err(|e| format!("`{shown}` is not an SSH public key: {e}"))?;
        Ok(line)
    }
}

/// Fewest bits of an RSA console key.
pub const MIN_RSA_BITS: usize = 2048;

/// The size of an RSA modulus in bits.
fn rsa_bits(n: &ssh_key::Mpint) -> usize {
    let bytes = n.as_positive_bytes().unwrap_or_default();
    match bytes.iter().position(|b| *b != 0) {
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
        None => 0,
    }
}

impl SshPublicKey {
    /// The algorithm and base64 data without the comment: what identifies the key.
    pub fn key_part(&self) -> &str {
        let mut it = self.0.splitn(3, ' ');
        let alg_len = it.next().map_or(0, str::len);
        let data_len = it.next().map_or(0, str::len);
        &self.0[..(alg_len + 1 + data_len).min(self.0.len())]
    }

    /// The algorithm name, like `ssh-ed25519`.
    pub fn algorithm(&self) -> &str {
        self.0.split(' ').next().unwrap_or_default()
    }
}

string_value! {
    /// An ISO 3166-1 alpha-2 country code (`US`, `CN`), one of [`crate::iso::COUNTRIES`].
    #[derive(PartialOrd, Ord, Hash)]
    pub struct Country(String);
    /// The code.
    pub fn as_str;
    fn parse(s) {
        if crate::iso::is_country(s) {
            Ok(s.to_owned())
        } else if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Err(format!("`{s}` is not an ISO 3166-1 alpha-2 country code"))
        } else {
            Err(format!(
                "`{}` is not a country: write its two-letter ISO code, like \"US\"",
                s.escape_debug()
            ))
        }
    }
}

string_value! {
    /// An argon2 password hash in PHC string form (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`).
    ///
    /// Only the shape is checked here; verifying a password is the hooks' job.
    pub secret struct PasswordHash(String);
    /// The PHC string.
    pub fn as_str;
    fn parse(s) {
        let parts: Vec<&str> = s.split('$').collect();
        let b64 = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        };
        let ok = parts.len() == 6
            && parts[0].is_empty()
            && matches!(parts[1], "argon2id" | "argon2i" | "argon2d")
            && parts[2].starts_with("v=")
            && parts[3].split(',').all(|kv| kv.split_once('=').is_some())
            && b64(parts[4])
            && b64(parts[5]);
        if ok {
            // Bounded cost: a hash is work done on every login (and a hostile one a way to
            // make each login take gigabytes). The value is still never echoed.
            argon2_params(parts[3])?;
            Ok(s.to_owned())
        } else {
            // Never echo the value: it might be a password typed in by mistake.
            Err("this is not an argon2 hash in PHC form ($argon2id$v=19$m=..,t=..,p=..$salt$hash); store a hash, never a password".to_owned())
        }
    }
}

/// Largest argon2 memory cost a stored hash may ask for, in KiB (128 MiB; the fleet's are 64).
pub const ARGON2_MAX_M_KIB: u32 = 128 * 1024;
/// Largest argon2 time cost (passes) a stored hash may ask for.
pub const ARGON2_MAX_T: u32 = 10;
/// Largest argon2 parallelism a stored hash may ask for.
pub const ARGON2_MAX_P: u32 = 16;

/// The cost of an argon2 hash: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory, KiB (`m`).
    pub m_kib: u32,
    /// Passes (`t`).
    pub t: u32,
    /// Lanes (`p`).
    pub p: u32,
}

/// Reads `m=..,t=..,p=..` and checks each against its bound (and argon2's own minimums).
fn argon2_params(s: &str) -> Result<Argon2Params, String> {
    let (mut m, mut t, mut p) = (None, None, None);
    for kv in s.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let n = v
            .parse::<u32>()
            .ok()
            .filter(|_| v.bytes().all(|b| b.is_ascii_digit()));
        match k {
            "m" => m = n,
            "t" => t = n,
            "p" => p = n,
            // Optional output length and secret id.
            "keyid" | "data" => {}
            _ => {
                return Err(format!(
                    "argon2 parameter `{}` is unknown",
                    k.escape_debug()
                ));
            }
        }
    }
    let (Some(m_kib), Some(t), Some(p)) = (m, t, p) else {
        return Err("the argon2 parameters must be m, t and p as numbers".to_owned());
    };
    if !(1..=ARGON2_MAX_P).contains(&p)
        || !(1..=ARGON2_MAX_T).contains(&t)
        || m_kib < 8 * p
        || m_kib > ARGON2_MAX_M_KIB
    {
        return Err(format!(
            "the argon2 cost is out of bounds (m {}..={ARGON2_MAX_M_KIB} KiB, t 1..={ARGON2_MAX_T}, p 1..={ARGON2_MAX_P})",
            8 * p
        ));
    }
    Ok(Argon2Params { m_kib, t, p })
}

impl PasswordHash {
    /// The hash's argon2 cost, checked against the bounds again (verifiers call this before
    /// running argon2, so no path skips the bound).
    pub fn params(&self) -> Result<Argon2Params, String> {
        argon2_params(self.0.split('$').nth(3).unwrap_or_default())
    }
}

/// A string enum whose variants are spelled in lowercase in TOML.
pub trait Keyword: Sized + Copy + 'static {
    /// All variants with their spelling.
    const ALL: &'static [(&'static str, Self)];
    /// What the field means, for errors.
    const WHAT: &'static str;

    /// The spelling of this variant.
    fn as_str(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(s, _)| s)
    }
}

/// Parses a keyword, listing the allowed values on error.
pub fn parse_keyword<K: Keyword>(s: &str) -> Result<K, String> {
    K::ALL
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let names: Vec<String> = K::ALL.iter().map(|(n, _)| format!("\"{n}\"")).collect();
            format!(
                "`{}` is not a {}: use {}",
                s.escape_debug(),
                K::WHAT,
                names.join(", ")
            )
        })
}

/// Declares a keyword enum: its variants, their TOML spelling, Display, Serialize and
/// Deserialize (as that spelling).
macro_rules! keyword {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($(#[$vdoc])* $var),+ }
        impl $crate::values::Keyword for $name {
            const ALL: &'static [(&'static str, Self)] = &[$(($s, $name::$var)),+];
            const WHAT: &'static str = $what;
        }
        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::values::Keyword::as_str(*self))
            }
        }
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($crate::values::Keyword::as_str(*self))
            }
        }
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                $crate::values::parse_keyword(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use keyword;

keyword!(
    /// Desired power state, set by the customer (start/stop).
    Power, "power state", {
        /// The domain runs.
        Running = "running",
        /// The domain is shut down; its disk stays.
        Stopped = "stopped",
    }
);
keyword!(
    /// Contract state, set by billing and admins.
    State, "VPS state", {
        /// In service.
        Active = "active",
        /// Stopped for non-payment or abuse; everything is kept.
        Suspended = "suspended",
        /// Removed; the disk goes after the retention period.
        Destroyed = "destroyed",
    }
);
keyword!(
    /// Who suspended a VPS (`suspension`, with `state = "suspended"`).
    Suspension, "suspension", {
        /// `gitvps billing run`, for non-payment: lifted again when the VPS is paid.
        Billing = "billing",
        /// An operator (abuse, a request): billing never lifts it.
        Admin = "admin",
        /// The traffic policy (`gitvps monitor usage`), past the quota: lifted when the period
        /// starts again; billing treats the VPS as active.
        Traffic = "traffic",
    }
);
keyword!(
    /// The hypervisor a node runs.
    Hypervisor, "hypervisor", {
        /// Xen with the `xl` toolstack.
        Xen = "xen",
        /// KVM with QEMU.
        Kvm = "kvm",
    }
);
keyword!(
    /// How a Xen guest is virtualized (`guest_type` of a node's `[xen]`, a plan or a VPS).
    GuestType, "Xen guest type", {
        /// Paravirtualized: needs no hardware virtualization (`xl info` virt_caps `pv`).
        Pv = "pv",
        /// PVH: a paravirtualized guest in a hardware container (virt_caps `hvm` with `hap`
        /// or `shadow`).
        Pvh = "pvh",
        /// Fully virtualized, with emulated firmware and devices (virt_caps `hvm`).
        Hvm = "hvm",
    }
);

impl GuestType {
    /// Whether a node whose `xl info` prints these `virt_caps` words can run this type.
    pub fn runs_on(self, virt_caps: &[String]) -> bool {
        let has = |w: &str| virt_caps.iter().any(|c| c == w);
        match self {
            GuestType::Pv => has("pv"),
            GuestType::Hvm => has("hvm"),
            GuestType::Pvh => has("hvm") && (has("hap") || has("shadow")),
        }
    }

    /// What `virt_caps` must hold for this type, for messages.
    pub fn requirement(self) -> &'static str {
        match self {
            GuestType::Pv => "`pv`",
            GuestType::Hvm => "`hvm`",
            GuestType::Pvh => "`hvm` with `hap` or `shadow`",
        }
    }
}

keyword!(
    /// How a KVM node runs its guests' CPUs (`[kvm] accel`).
    Accel, "KVM accelerator", {
        /// Hardware virtualization through `/dev/kvm`.
        Kvm = "kvm",
        /// QEMU's software emulation (TCG): slow, but needs no `/dev/kvm` (nested test nodes).
        Tcg = "tcg",
    }
);
keyword!(
    /// How a KVM node connects its guests (`[kvm] network`).
    KvmNetworkMode, "KVM network mode", {
        /// Each guest's tap joins a Linux bridge; guests own their public addresses.
        Bridge = "bridge",
        /// QEMU user-mode networking: no bridge, each guest's SSH is forwarded from 127.0.0.1.
        User = "user",
    }
);
keyword!(
    /// The format of a node's disk images (`storage.format`, file backend).
    ImageFormat, "disk image format", {
        /// Raw images, `<vps>.img`: a sparse file that is the disk byte for byte.
        Raw = "raw",
        /// qcow2 images, `<vps>.qcow2` (QEMU's format; KVM nodes only).
        Qcow2 = "qcow2",
    }
);

impl Default for ImageFormat {
    /// `raw`.
    fn default() -> Self {
        ImageFormat::Raw
    }
}

impl ImageFormat {
    /// The image file name extension, without the dot: `img` or `qcow2`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Raw => "img",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

keyword!(
    /// How reverse DNS zones are laid out for a pool.
    RdnsZone, "reverse DNS layout", {
        /// One zone file per IP address.
        PerIp = "per-ip",
        /// One zone file for the whole pool.
        PerPool = "per-pool",
    }
);
keyword!(
    /// A service check the monitor runs against a VPS.
    Check, "service check", {
        /// ICMP echo.
        Ping = "ping",
        /// SSH banner on port 22.
        Ssh = "ssh",
        /// HTTP on port 80: a response below 500.
        Http = "http",
        /// HTTP over TLS on port 443: a TLS handshake and a response below 500.
        Https = "https",
        /// SMTP banner on port 25.
        Smtp = "smtp",
        /// POP3 banner on port 110.
        Pop3 = "pop3",
        /// IMAP banner on port 143.
        Imap = "imap",
        /// FTP banner on port 21.
        Ftp = "ftp",
    }
);

impl Check {
    /// The TCP port the check connects to unless the VPS file says otherwise; `None` for ping.
    pub fn default_port(self) -> Option<u16> {
        match self {
            Check::Ping => None,
            Check::Ssh => Some(22),
            Check::Http => Some(80),
            Check::Https => Some(443),
            Check::Smtp => Some(25),
            Check::Pop3 => Some(110),
            Check::Imap => Some(143),
            Check::Ftp => Some(21),
        }
    }
}
keyword!(
    /// The language a customer reads the site and mail in.
    Language, "language", {
        /// English.
        En = "en",
        /// Simplified Chinese.
        Zh = "zh",
    }
);

/// An inclusive range of IPv4 addresses (`"66.255.255.1-66.255.255.9"` or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Range {
    /// First address.
    pub first: Ipv4Addr,
    /// Last address, not before `first`.
    pub last: Ipv4Addr,
}

impl Ipv4Range {
    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.first <= ip && ip <= self.last
    }
}

impl FromStr for Ipv4Range {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an IPv4 address or range like \"192.0.2.1-192.0.2.9\"");
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let last: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        if last < first {
            return Err(format!("`{s}` ends before it starts"));
        }
        Ok(Ipv4Range { first, last })
    }
}

impl fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// An address of a VPS: one IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VpsAddr {
    /// A single IPv4 address.
    V4(Ipv4Addr),
    /// A routed IPv6 /64.
    V6(Ipv6Net),
}

impl FromStr for VpsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(VpsAddr::V4(v4));
        }
        if let Ok(net) = s.parse::<Ipv6Net>() {
            if net.prefix_len() != 64 {
                return Err(format!(
                    "`{s}`: a VPS gets an IPv6 /64, not a /{}",
                    net.prefix_len()
                ));
            }
            if net.network() != net.addr() {
                return Err(format!(
                    "`{s}` has host bits set: write the /64 as {}",
                    net.trunc()
                ));
            }
            return Ok(VpsAddr::V6(net));
        }
        if s.parse::<Ipv6Addr>().is_ok() {
            return Err(format!(
                "`{s}`: write the VPS's IPv6 /64 with its prefix length, like \"2001:db8:1::/64\""
            ));
        }
        Err(format!(
            "`{}` is not an IPv4 address or an IPv6 /64",
            s.escape_debug()
        ))
    }
}

impl VpsAddr {
    /// Whether `ip` is this address (IPv4) or inside this /64 (IPv6).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (VpsAddr::V4(a), IpAddr::V4(ip)) => *a == ip,
            (VpsAddr::V6(n), IpAddr::V6(ip)) => n.contains(&ip),
            _ => false,
        }
    }

    /// The address the VPS answers on: the IPv4 address, or the /64's host address `::1`
    /// (what the bootstraps configure in the guest).
    pub fn host(&self) -> IpAddr {
        match self {
            VpsAddr::V4(a) => IpAddr::V4(*a),
            VpsAddr::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | 1)),
        }
    }
}

impl fmt::Display for VpsAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VpsAddr::V4(a) => write!(f, "{a}"),
            VpsAddr::V6(n) => write!(f, "{n}"),
        }
    }
}

impl serde::Serialize for VpsAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("15000 MiB".parse::<Size>(), Ok(Size::mib(15000)));
        assert_eq!("30GiB".parse::<Size>(), Ok(Size::gib(30)));
        assert_eq!("2 TiB".parse::<Size>(), Ok(Size(2 << 40)));
        assert_eq!(Size::mib(30720).to_string(), "30 GiB");
        assert_eq!(Size::mib(15000).to_string(), "15000 MiB");
        assert!("30 GB".parse::<Size>().unwrap_err().contains("write GiB"));
        assert!(
            "30".parse::<Size>()
                .unwrap_err()
                .contains("unit is required")
        );
        assert!("-1 GiB".parse::<Size>().is_err());
        assert!(
            "99999999999 TiB"
                .parse::<Size>()
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn money() {
        assert_eq!(
            "59.00".parse::<Money>().map(|m| m.to_string()),
            Ok("59.00".to_owned())
        );
        assert_eq!("149".parse::<Money>().map(|m| m.minor_units()), Ok(14900));
        assert_eq!(
            "2.5".parse::<Money>().map(|m| m.to_string()),
            Ok("2.50".to_owned())
        );
        for bad in ["", "-1.00", "1.005", "1e3", "1,00", ".5", "abc"] {
            assert!(bad.parse::<Money>().is_err(), "{bad}");
        }
        assert_eq!(Money::from_minor_units(5900).to_string(), "59.00");
    }

    #[test]
    fn hostnames() {
        assert!("xen02.example.net".parse::<Hostname>().is_ok());
        assert!("localhost".parse::<Hostname>().is_ok());
        for bad in [
            "", "a..b", "-a.b", "a-.b", "a b", "a;rm -rf", "$(id).x", "a.123", "a_b.c",
        ] {
            assert!(bad.parse::<Hostname>().is_err(), "{bad}");
        }
        assert!(format!("{}.x", "a".repeat(64)).parse::<Hostname>().is_err());
    }

    #[test]
    fn emails() {
        assert!("jane.doe+vps@example.net".parse::<Email>().is_ok());
        for bad in [
            "",
            "jane",
            "@x.y",
            "jane@",
            "jane@localhost",
            "a b@x.y",
            "a@x.y;id",
            "a..b@x.y",
        ] {
            assert!(bad.parse::<Email>().is_err(), "{bad}");
        }
    }

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn ssh_keys() {
        let k: SshPublicKey = format!("{ED} jane@laptop").parse().unwrap();
        assert_eq!(k.algorithm(), "ssh-ed25519");
        assert_eq!(k.key_part(), ED);
        assert!(
            format!("{ED} x\"; rm -rf /")
                .parse::<SshPublicKey>()
                .is_err()
        );
        assert!(
            format!("{ED}\nssh-rsa AAAA")
                .parse::<SshPublicKey>()
                .is_err()
        );
        assert!(
            "ssh-ed25519 AAAAnotbase64!!"
                .parse::<SshPublicKey>()
                .is_err()
        );
        assert!("hello".parse::<SshPublicKey>().is_err());
    }

    #[test]
    fn addresses() {
        assert!(matches!(
            "66.255.255.34".parse::<VpsAddr>(),
            Ok(VpsAddr::V4(_))
        ));
        assert!(matches!(
            "2001:db8:66:22::/64".parse::<VpsAddr>(),
            Ok(VpsAddr::V6(_))
        ));
        assert!(
            "2001:db8:66:22::/48"
                .parse::<VpsAddr>()
                .unwrap_err()
                .contains("/64")
        );
        assert!(
            "2001:db8:66:22::1/64"
                .parse::<VpsAddr>()
                .unwrap_err()
                .contains("host bits")
        );
        assert!(
            "2001:db8::1"
                .parse::<VpsAddr>()
                .unwrap_err()
                .contains("prefix length")
        );
        let r: Ipv4Range = "66.255.255.1-66.255.255.9".parse().unwrap();
        assert!(r.contains("66.255.255.5".parse().unwrap()));
        assert!("66.255.255.9-66.255.255.1".parse::<Ipv4Range>().is_err());
    }

    #[test]
    fn paths_and_names() {
        assert!("/var/lib/gitvps/disks".parse::<AbsPath>().is_ok());
        assert_eq!(
            "/srv/x/".parse::<AbsPath>().map(|p| p.to_string()),
            Ok("/srv/x".to_owned())
        );
        for bad in ["relative", "/a/../b", "/a b", "/a;b", "/a//b", "/$(id)"] {
            assert!(bad.parse::<AbsPath>().is_err(), "{bad}");
        }
        assert!("vg0".parse::<VgName>().is_ok());
        assert!("vg 0".parse::<VgName>().is_err());
        assert!("gitvps".parse::<UnixUser>().is_ok());
        assert!("Root".parse::<UnixUser>().is_err());
        assert!("100Mb/s".parse::<Rate>().is_ok());
        assert!("100 Mbit".parse::<Rate>().is_err());
        for (rate, bits) in [
            ("100Mb/s", 100_000_000),
            ("10MB/s", 80_000_000),
            ("1Gb/s", 1_000_000_000),
            ("64Kb/s", 64_000),
            ("12B/s", 96),
            ("0Mb/s", 0),
            ("999999999GB/s", 7_999_999_992_000_000_000),
        ] {
            assert_eq!(rate.parse::<Rate>().unwrap().bits_per_sec(), bits, "{rate}");
        }
        for good in ["br0", "vmbr0.100", "a_b-c", "abcdefghijklmno"] {
            assert!(check_interface_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-br0",
            "br 0",
            "br0;id",
            "abcdefghijklmnop",
            "br/0",
            "brü",
            ".",
            "..",
        ] {
            assert!(check_interface_name(bad).is_err(), "{bad}");
        }
        assert!(
            parse_keyword::<Power>("paused")
                .unwrap_err()
                .contains("\"running\", \"stopped\"")
        );
    }

    #[test]
    fn byte_rates() {
        let r: ByteRate = "200MB/s".parse().unwrap();
        assert_eq!(r.bytes_per_sec(), 200_000_000);
        assert_eq!(r.to_string(), "200MB/s");
        assert_eq!(
            "50KB/s".parse::<ByteRate>().map(|r| r.bytes_per_sec()),
            Ok(50_000)
        );
        assert_eq!(
            "1GB/s".parse::<ByteRate>().map(|r| r.bytes_per_sec()),
            Ok(1_000_000_000)
        );
        assert_eq!(
            "999999999GB/s"
                .parse::<ByteRate>()
                .map(|r| r.bytes_per_sec()),
            Ok(999_999_999_000_000_000)
        );
        let bits = "200Mb/s".parse::<ByteRate>().unwrap_err();
        assert!(bits.contains("in bytes"), "{bits}");
        assert!(bits.contains("\"200MB/s\""), "{bits}");
        assert!(
            "0MB/s"
                .parse::<ByteRate>()
                .unwrap_err()
                .contains("no bandwidth")
        );
        for bad in [
            "",
            "200",
            "200B/s",
            "200 MB/s",
            "200MiB/s",
            "200mB/s",
            "200MB",
            "MB/s",
            "-1MB/s",
            "1000000000GB/s",
            "200MB/s ",
        ] {
            assert!(bad.parse::<ByteRate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn password_hash_never_echoes() {
        let e = "hunter2".parse::<PasswordHash>().unwrap_err();
        assert!(!e.contains("hunter2"));
        assert!(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"
                .parse::<PasswordHash>()
                .is_ok()
        );
    }

    #[test]
    fn argon2_parameters_are_bounded_at_parse() {
        let h = |params: &str| format!("$argon2id$v=19${params}$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo");
        let ok = h("m=65536,t=3,p=4").parse::<PasswordHash>().unwrap();
        assert_eq!(
            ok.params(),
            Ok(Argon2Params {
                m_kib: 65536,
                t: 3,
                p: 4
            })
        );
        for bad in [
            "m=4194304,t=3,p=4",
            "m=65536,t=1000,p=4",
            "m=65536,t=3,p=255",
            "m=65536,t=0,p=4",
            "m=16,t=3,p=4",
            "m=65536,t=3",
            "m=+65536,t=3,p=4",
            "m=65536,t=3,p=4,x=1",
        ] {
            let e = h(bad).parse::<PasswordHash>().unwrap_err();
            assert!(e.contains("argon2"), "{bad}: {e}");
        }
    }

    #[test]
    fn console_keys_refuse_dsa_and_rsa_under_2048_bits() {
        const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC48ZRTkQN407ZagMiERuZAIBHV/tQuIWZE58vmJoD32szL6xSPW6AL/DBDH4Z02q7y6I7e4bVr520Qbg3XC43iuZ/Qgx0vQEWXGbl165w4yO7K96Byd89hMOuQQIA+VUahD/t5ief1T+fi+oXCdLFwoyhLHh5gRNp9pWXWF4c4aQ==";
        const RSA2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCfwuYOTqs6t7yXAzZkuLIloVYh0P2V5uwVoew0B0HlghVx5r7pt28/QHW9auVcc0CXBRhNl+TGcmXCPQE3IoyIR0ou90h8CRUjO9CE2EIuYc78HcJgjbkq4TqLemfzpHTVccm2pDJYbyURvP9ufLN40NJ0ghLcL3nA8+SktrfpvjDAYCkootT6Wp72/HFcMhDWXpQtlzQ003a/lx03pArPChJ4RChDztwxfFvN2ow7Raa/6cUSFKDrdc1XUwH4aCu8Adl1UQCXt7O3OLJlTXAVh3G1w+VapGMyvMDEG5AosgqRhsn8BlDVOMDLvdMjWdSyWayjoqUaNtEiuBD8e7Vj";
        const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOfs5o3tC494hGeDBxEfp3jR7g7TAqDxIOoZWRGmTcZsTN2+zFp34RRosRxKbI+730/WfAMvaqnNEHzXhytUqKI=";
        const DSA: &str = "ssh-dss AAAAB3NzaC1kc3MAAACBAMgzh/QMRchQsjdrqiz2bBn1r2POWWb+gJM5OF7kfzfS3O2Uwkz7KwADwiTESZokaT1GyKoQQKYDEnyKphjYryd1HGZKgj/UhFv6hi6wSc6J8kwL6Zc1x2GCrY1UYtKhGY85OLiHnx4eWN4GeRhMhAHU17Jef8H2XRiw4rJHKcexAAAAFQCJ+BIvGfRiZmbhI6+90BQbnYWRGwAAAIA0by/euECBg3UZ99gQNcUaIXwSRRFJOD1izXBTyM4Lq5Cn2cKh7LFiGq+po3MGaSyKFjjntu1+61PKEgWHrycNY+Lx2lvF1Jy/d6cMyaphc0Iu6D7XPbXTcvS00RH+ea0kFdHI4LW88HjO7uwkBXxW4Ev5La4/vpUD8RM+IJmWVAAAAIBanlb3KTJ//L0WHTymMETrk8mqA0oJNf3I4TzSz50Z5EKBec6X2H90MeEJhcTQZhQPB/5FO5J0M2zBBAOz6bMZ+n8j9CRn3XptIjP7G6nwDTI+e+LiUMq61tUBDsdGBCSA73RZqIB0cucpUbqs5lO1F3taN3BqmLZYnj1MVaITvA==";
        let e = RSA1024.parse::<SshPublicKey>().unwrap_err();
        assert!(e.contains("1024 bits"), "{e}");
        let e = DSA.parse::<SshPublicKey>().unwrap_err();
        assert!(e.contains("DSA"), "{e}");
        assert!(RSA2048.parse::<SshPublicKey>().is_ok());
        assert!(ECDSA.parse::<SshPublicKey>().is_ok());
        assert!(ED.parse::<SshPublicKey>().is_ok());
    }
}
