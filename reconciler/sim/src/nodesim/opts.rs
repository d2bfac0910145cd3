//! A small GNU-getopt-like command line parser shared by the stand-ins (short clusters,
//! `-Lvalue`, `--long=value`, permuted positionals, `--`); each tool words its own errors.

/// One accepted option.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Spec {
    /// Canonical name the caller matches on.
    pub(crate) id: &'static str,
    /// Short letter, if any.
    pub(crate) short: Option<char>,
    /// Long name without `--`, if any.
    pub(crate) long: Option<&'static str>,
    /// Whether the option takes an argument.
    pub(crate) arg: bool,
}

/// Shorthand for building a [`Spec`].
pub(crate) const fn spec(
    id: &'static str,
    short: Option<char>,
    long: Option<&'static str>,
    arg: bool,
) -> Spec {
    Spec {
        id,
        short,
        long,
        arg,
    }
}

/// A command line error, for the caller to word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OptError {
    /// `-x` not accepted.
    UnknownShort(char),
    /// `--xyz` not accepted.
    UnknownLong(String),
    /// `-x` needs an argument.
    MissingShort(char),
    /// `--xyz` needs an argument.
    MissingLong(String),
    /// `--flag=value` for a flag that takes none.
    UnexpectedArg(String),
}

/// Parsed options (in order, by id) and positionals.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parsed {
    pub(crate) opts: Vec<(&'static str, Option<String>)>,
    pub(crate) args: Vec<String>,
}

impl Parsed {
    /// Whether option `id` was given.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.opts.iter().any(|(k, _)| *k == id)
    }

    /// The last value given for option `id`.
    pub(crate) fn value(&self, id: &str) -> Option<&str> {
        self.opts
            .iter()
            .rev()
            .find(|(k, _)| *k == id)
            .and_then(|(_, v)| v.as_deref())
    }

    /// All values given for option `id`, in order.
    pub(crate) fn values(&self, id: &str) -> Vec<&str> {
        self.opts
            .iter()
            .filter(|(k, _)| *k == id)
            .filter_map(|(_, v)| v.as_deref())
            .collect()
    }
}

/// Parses `args` against `specs`. Positionals may be mixed with options unless
/// `stop_at_positional`; `--` ends options.
pub(crate) fn parse(
    args: &[String],
    specs: &[Spec],
    stop_at_positional: bool,
) -> Result<Parsed, OptError> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            p.args.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let Some(s) = specs.iter().find(|s| s.long == Some(name)) else {
                return Err(OptError::UnknownLong(name.to_string()));
            };
            if s.arg {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let Some(v) = args.get(i) else {
                            return Err(OptError::MissingLong(name.to_string()));
                        };
                        i += 1;
                        v.clone()
                    }
                };
                p.opts.push((s.id, Some(v)));
            } else {
                if inline.is_some() {
                    return Err(OptError::UnexpectedArg(name.to_string()));
                }
                p.opts.push((s.id, None));
            }
            continue;
        }
        if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a.chars().skip(1).collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let Some(s) = specs.iter().find(|s| s.short == Some(c)) else {
                    return Err(OptError::UnknownShort(c));
                };
                if s.arg {
                    let v = if j < chars.len() {
                        let v: String = chars[j..].iter().collect();
                        j = chars.len();
                        v
                    } else {
                        let Some(v) = args.get(i) else {
                            return Err(OptError::MissingShort(c));
                        };
                        i += 1;
                        v.clone()
                    };
                    p.opts.push((s.id, Some(v)));
                } else {
                    p.opts.push((s.id, None));
                }
            }
            continue;
        }
        p.args.push(a.clone());
        if stop_at_positional {
            p.args.extend(args[i..].iter().cloned());
            break;
        }
    }
    Ok(p)
}

/// `strerror` text of an I/O error (its Display without the ` (os error N)` suffix).
pub(crate) fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error ") {
        Some(p) => s[..p].to_string(),
        None => s,
    }
}

/// C `atoi`/`strtol(s, NULL, 10)`: leading blanks, sign, digits; 0 when there are none.
pub(crate) fn atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let mut v: i64 = 0;
    for c in t.chars() {
        let Some(d) = c.to_digit(10) else { break };
        v = v.saturating_mul(10).saturating_add(i64::from(d));
    }
    if neg { -v } else { v }
}
