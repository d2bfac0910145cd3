//! The xl.cfg(5) language (libxlutil's lexer and grammar) and the subset of `parse_config_data`
//! gitvps needs, with xl's messages: `xl create` turns a config file into a [`DomConfig`].

use super::state::{Disk, DomConfig, Nic};
use std::io::Write;

/// A parsed setting value: an atom (string or number) or a list of atoms.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CfgValue {
    Atom(String),
    List(Vec<String>),
}

#[derive(Debug, Clone)]
struct Setting {
    name: String,
    value: CfgValue,
    line: usize,
}

/// A parsed config file.
#[derive(Debug, Clone)]
pub(crate) struct Cfg {
    source: String,
    settings: Vec<Setting>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Eq,
    PlusEq,
    LBrack,
    RBrack,
    Comma,
    Semi,
    Newline,
    Eof,
}

#[derive(Debug, Clone)]
struct Lexed {
    tok: Tok,
    /// The source text of the token, for error messages.
    text: String,
    line: usize,
}

/// A config syntax error, already formatted as libxlutil reports it.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError(pub(crate) String);

fn lex(source: &str, data: &str) -> Result<Vec<Lexed>, SyntaxError> {
    let chars: Vec<char> = data.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\r' => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '\n' => {
                out.push(Lexed {
                    tok: Tok::Newline,
                    text: "\n".into(),
                    line,
                });
                line += 1;
                i += 1;
            }
            '=' => {
                out.push(Lexed {
                    tok: Tok::Eq,
                    text: "=".into(),
                    line,
                });
                i += 1;
            }
            '+' if chars.get(i + 1) == Some(&'=') => {
                out.push(Lexed {
                    tok: Tok::PlusEq,
                    text: "+=".into(),
                    line,
                });
                i += 2;
            }
            '[' | ']' | ',' | ';' => {
                let tok = match c {
                    '[' => Tok::LBrack,
                    ']' => Tok::RBrack,
                    ',' => Tok::Comma,
                    _ => Tok::Semi,
                };
                out.push(Lexed {
                    tok,
                    text: c.to_string(),
                    line,
                });
                i += 1;
            }
            '"' | '\'' => {
                let quote = c;
                let start = i;
                let mut j = i + 1;
                let mut value = String::new();
                let mut closed = false;
                while j < chars.len() && chars[j] != '\n' {
                    let d = chars[j];
                    if d == quote {
                        closed = true;
                        break;
                    }
                    if d == '\\' {
                        let Some(&e) = chars.get(j + 1) else { break };
                        if e == '\n' {
                            break;
                        }
                        j += 2;
                        match e {
                            '"' | '\'' | '\\' => value.push(e),
                            'a' => value.push('\u{7}'),
                            'b' => value.push('\u{8}'),
                            'f' => value.push('\u{c}'),
                            'n' => value.push('\n'),
                            'r' => value.push('\r'),
                            't' => value.push('\t'),
                            'v' => value.push('\u{b}'),
                            'x' => {
                                let mut v = 0u32;
                                let mut k = 0;
                                while k < 2 && j < chars.len() && chars[j].is_ascii_hexdigit() {
                                    v = v * 16 + chars[j].to_digit(16).unwrap_or(0);
                                    j += 1;
                                    k += 1;
                                }
                                if k == 0 {
                                    return Err(lex_error(
                                        source,
                                        line,
                                        &chars[start..j.min(chars.len())]
                                            .iter()
                                            .collect::<String>(),
                                        "invalid character escape in quoted string",
                                    ));
                                }
                                value.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                            }
                            '0'..='7' => {
                                let mut v = e.to_digit(8).unwrap_or(0);
                                let mut k = 1;
                                while k < 3 && j < chars.len() && ('0'..='7').contains(&chars[j]) {
                                    v = v * 8 + chars[j].to_digit(8).unwrap_or(0);
                                    j += 1;
                                    k += 1;
                                }
                                value.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                            }
                            _ => {
                                return Err(lex_error(
                                    source,
                                    line,
                                    &chars[start..j.min(chars.len())].iter().collect::<String>(),
                                    "invalid character escape in quoted string",
                                ));
                            }
                        }
                        continue;
                    }
                    value.push(d);
                    j += 1;
                }
                if !closed {
                    return Err(lex_error(
                        source,
                        line,
                        &quote.to_string(),
                        "invalid character",
                    ));
                }
                let text: String = chars[start..=j].iter().collect();
                out.push(Lexed {
                    tok: Tok::Str(value),
                    text,
                    line,
                });
                i = j + 1;
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Lexed {
                    tok: Tok::Ident(text.clone()),
                    text,
                    line,
                });
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                out.push(Lexed {
                    tok: Tok::Num(text.clone()),
                    text,
                    line,
                });
            }
            other => {
                return Err(lex_error(
                    source,
                    line,
                    &other.to_string(),
                    "invalid character",
                ));
            }
        }
    }
    out.push(Lexed {
        tok: Tok::Eof,
        text: String::new(),
        line,
    });
    Ok(out)
}

fn lex_error(source: &str, line: usize, text: &str, msg: &str) -> SyntaxError {
    SyntaxError(format!(
        "{source}:{line}: config parsing error near `{text}': {msg}"
    ))
}

fn tok_name(t: &Tok) -> &'static str {
    match t {
        Tok::Ident(_) => "IDENT",
        Tok::Str(_) => "STRING",
        Tok::Num(_) => "NUMBER",
        Tok::Eq => "'='",
        Tok::PlusEq => "\"+=\"",
        Tok::LBrack => "'['",
        Tok::RBrack => "']'",
        Tok::Comma => "','",
        Tok::Semi => "';'",
        Tok::Newline => "NEWLINE",
        Tok::Eof => "end of file",
    }
}

/// The bison-style report libxlutil prints for a syntax error at token `at`.
fn syntax_error(source: &str, at: &Lexed, expecting: &str) -> SyntaxError {
    let (near, line) = match at.tok {
        Tok::Newline => ("<newline>".to_string(), at.line),
        Tok::Eof => (String::new(), at.line),
        _ => (format!("`{}'", at.text), at.line),
    };
    SyntaxError(format!(
        "{source}:{line}: config parsing error near {near}: syntax error, unexpected {}, expecting {expecting}",
        tok_name(&at.tok)
    ))
}

impl Cfg {
    /// Parses config text; `source` is the name used in messages (the path as given).
    pub(crate) fn parse(source: &str, data: &str) -> Result<Cfg, SyntaxError> {
        let toks = lex(source, data)?;
        let mut settings: Vec<Setting> = Vec::new();
        let mut i = 0;
        let at = |i: usize| -> &Lexed { &toks[i.min(toks.len() - 1)] };
        loop {
            let t = at(i);
            match &t.tok {
                Tok::Eof => break,
                Tok::Newline | Tok::Semi => {
                    i += 1;
                }
                Tok::Ident(name) => {
                    let name = name.clone();
                    let line = t.line;
                    i += 1;
                    let op = at(i);
                    let add = match op.tok {
                        Tok::Eq => false,
                        Tok::PlusEq => true,
                        _ => return Err(syntax_error(source, op, "'=' or \"+=\"")),
                    };
                    i += 1;
                    let v = at(i);
                    let value = match &v.tok {
                        Tok::Str(s) | Tok::Num(s) => {
                            i += 1;
                            CfgValue::Atom(s.clone())
                        }
                        Tok::LBrack => {
                            i += 1;
                            let mut items = Vec::new();
                            loop {
                                while at(i).tok == Tok::Newline {
                                    i += 1;
                                }
                                let a = at(i);
                                match &a.tok {
                                    Tok::RBrack => {
                                        i += 1;
                                        break;
                                    }
                                    Tok::Str(s) | Tok::Num(s) => {
                                        items.push(s.clone());
                                        i += 1;
                                    }
                                    _ => {
                                        return Err(syntax_error(
                                            source,
                                            a,
                                            "STRING or NUMBER or ']'",
                                        ));
                                    }
                                }
                                while at(i).tok == Tok::Newline {
                                    i += 1;
                                }
                                let sep = at(i);
                                match sep.tok {
                                    Tok::Comma => i += 1,
                                    Tok::RBrack => {
                                        i += 1;
                                        break;
                                    }
                                    _ => return Err(syntax_error(source, sep, "',' or ']'")),
                                }
                            }
                            CfgValue::List(items)
                        }
                        _ => return Err(syntax_error(source, v, "STRING or NUMBER or '['")),
                    };
                    let end = at(i);
                    match end.tok {
                        Tok::Newline | Tok::Semi => i += 1,
                        Tok::Eof => {}
                        _ => return Err(syntax_error(source, end, "NEWLINE or ';'")),
                    }
                    if add && let Some(prev) = settings.iter_mut().rev().find(|s| s.name == name) {
                        let mut items = match &prev.value {
                            CfgValue::Atom(a) => vec![a.clone()],
                            CfgValue::List(l) => l.clone(),
                        };
                        match value {
                            CfgValue::Atom(a) => items.push(a),
                            CfgValue::List(l) => items.extend(l),
                        }
                        prev.value = CfgValue::List(items);
                        continue;
                    }
                    settings.push(Setting { name, value, line });
                }
                _ => return Err(syntax_error(source, t, "IDENT or NEWLINE or ';'")),
            }
        }
        Ok(Cfg {
            source: source.to_string(),
            settings,
        })
    }

    fn find(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().rev().find(|s| s.name == name)
    }

    /// xlu_cfg_get_string: an atom; a list is reported and treated as unset.
    pub(crate) fn get_string(&self, name: &str, err: &mut dyn Write) -> Option<String> {
        let s = self.find(name)?;
        match &s.value {
            CfgValue::Atom(a) => Some(a.clone()),
            CfgValue::List(_) => {
                let _ = writeln!(
                    err,
                    "{}:{}: warning: parameter `{}' is a list but should be a single value",
                    self.source, s.line, name
                );
                None
            }
        }
    }

    /// xlu_cfg_get_long: strtol(value, 0) of an atom; anything else is reported and unset.
    pub(crate) fn get_long(&self, name: &str, err: &mut dyn Write) -> Option<i64> {
        let s = self.find(name)?;
        let text = match &s.value {
            CfgValue::Atom(a) => a,
            CfgValue::List(_) => {
                let _ = writeln!(
                    err,
                    "{}:{}: warning: parameter `{}' is a list but should be a single value",
                    self.source, s.line, name
                );
                return None;
            }
        };
        match strtol(text) {
            Some(v) => Some(v),
            None => {
                let _ = writeln!(
                    err,
                    "{}:{}: warning: parameter `{}' is not a valid number",
                    self.source, s.line, name
                );
                None
            }
        }
    }

    /// xlu_cfg_get_list: a list; an atom is reported and treated as unset.
    pub(crate) fn get_list(&self, name: &str, err: &mut dyn Write) -> Option<Vec<String>> {
        let s = self.find(name)?;
        match &s.value {
            CfgValue::List(l) => Some(l.clone()),
            CfgValue::Atom(_) => {
                let _ = writeln!(
                    err,
                    "{}:{}: warning: parameter `{}' is a single value but should be a list",
                    self.source, s.line, name
                );
                None
            }
        }
    }

    /// A list, or a single atom taken as a one-element list (xl's string-or-list options).
    fn get_list_or_string(&self, name: &str) -> Option<Vec<String>> {
        let s = self.find(name)?;
        Some(match &s.value {
            CfgValue::List(l) => l.clone(),
            CfgValue::Atom(a) => a.split_whitespace().map(str::to_string).collect(),
        })
    }
}

/// strtol with base 0: optional sign, `0x` hex, leading-0 octal, decimal; all text consumed.
pub(crate) fn strtol(text: &str) -> Option<i64> {
    let t = text.trim_start();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        (16, h)
    } else if t.len() > 1 && t.starts_with('0') {
        (8, &t[1..])
    } else {
        (10, t)
    };
    if digits.is_empty() {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// What went wrong turning a config into a domain configuration: messages already printed,
/// exit with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fail(pub(crate) i32);

const ACTIONS: &[&str] = &[
    "destroy",
    "restart",
    "rename-restart",
    "preserve",
    "coredump-destroy",
    "coredump-restart",
    "soft-reset",
];

/// parse_config_data (the subset gitvps writes), reporting like xl. Disk backends are left
/// empty; `xl create` fills them in from the node.
pub(crate) fn build(cfg: &Cfg, err: &mut dyn Write) -> Result<(String, DomConfig), Fail> {
    let src = cfg.source.clone();
    let mut c = DomConfig::default();

    let mut kind: Option<&str> = None;
    if let Some(t) = cfg.get_string("type", err) {
        // xl compares with strncmp(buf, "hvm", strlen(buf)): any prefix matches.
        kind = if "hvm".starts_with(t.as_str()) {
            Some("hvm")
        } else if "pv".starts_with(t.as_str()) {
            Some("pv")
        } else if "pvh".starts_with(t.as_str()) {
            Some("pvh")
        } else {
            let _ = writeln!(err, "Invalid domain type {t}.");
            return Err(Fail(1));
        };
    }
    if kind.is_none()
        && let Some(b) = cfg.get_string("builder", err)
    {
        let _ = writeln!(
            err,
            "The \"builder\" option is being deprecated, please use \"type\" instead."
        );
        kind = match b.as_str() {
            "hvm" => Some("hvm"),
            "generic" => Some("pv"),
            _ => {
                let _ = writeln!(err, "Invalid domain type {b}.");
                return Err(Fail(1));
            }
        };
    }
    c.kind = kind.unwrap_or("pv").to_string();

    let Some(name) = cfg.get_string("name", err) else {
        let _ = writeln!(err, "Domain name must be specified.");
        return Err(Fail(1));
    };

    let mut vcpus: Option<i64> = None;
    if let Some(v) = cfg.get_long("vcpus", err) {
        vcpus = Some(v.max(0));
    }
    let vcpus = vcpus.unwrap_or(1);
    c.avail_vcpus = u32::try_from(vcpus).unwrap_or(u32::MAX);
    c.max_vcpus = c.avail_vcpus;
    if let Some(m) = cfg.get_long("maxvcpus", err) {
        c.max_vcpus = u32::try_from(m.max(0)).unwrap_or(u32::MAX);
    }

    if let Some(m) = cfg.get_long("memory", err) {
        let kb = u64::try_from(m.max(0)).unwrap_or(0).saturating_mul(1024);
        c.max_memkb = kb;
        c.target_memkb = kb;
    }
    if let Some(m) = cfg.get_long("maxmem", err) {
        c.max_memkb = u64::try_from(m.max(0)).unwrap_or(0).saturating_mul(1024);
    }

    for (key, slot) in [
        ("on_poweroff", &mut c.on_poweroff),
        ("on_reboot", &mut c.on_reboot),
        ("on_watchdog", &mut c.on_watchdog),
        ("on_crash", &mut c.on_crash),
        ("on_soft_reset", &mut c.on_soft_reset),
    ] {
        if let Some(v) = cfg.get_string(key, err) {
            if !ACTIONS.contains(&v.as_str()) {
                let _ = writeln!(err, "Unknown {key} action \"{v}\" specified");
                return Err(Fail(1));
            }
            *slot = v;
        }
    }

    if let Some(w) = cfg.get_long("cpu_weight", err) {
        c.sched_weight = u32::try_from(w).unwrap_or(0);
    }
    if let Some(cap) = cfg.get_long("cap", err) {
        c.sched_cap = u32::try_from(cap).unwrap_or(u32::MAX);
    }

    c.kernel = cfg.get_string("kernel", err);
    c.ramdisk = cfg.get_string("ramdisk", err);
    c.cmdline = parse_cmdline(cfg, err);

    if c.kind == "pv" {
        c.bootloader = cfg.get_string("bootloader", err);
        if let Some(args) = cfg.get_list_or_string("bootloader_args") {
            c.bootloader_args = args;
        }
        if let Some(fw) = cfg.get_string("firmware", err) {
            match fw.as_str() {
                "pvgrub32" | "pvgrub64" => {
                    c.kernel = Some(format!("/usr/lib/xen-4.17/boot/{fw}.bin"));
                }
                _ => {
                    let _ = writeln!(err, "Invalid firmware type {fw}.");
                    return Err(Fail(1));
                }
            }
        }
        if c.bootloader.is_none() && c.kernel.is_none() {
            let _ = writeln!(err, "Neither kernel nor bootloader specified");
            return Err(Fail(1));
        }
    }

    if let Some(specs) = cfg.get_list("disk", err) {
        for spec in specs {
            match parse_disk(&src, &spec) {
                Ok(d) => c.disks.push(d),
                Err(msg) => {
                    let _ = writeln!(err, "{msg}");
                    return Err(Fail(1));
                }
            }
        }
    }

    if let Some(vifs) = cfg.get_list("vif", err) {
        for (devid, spec) in vifs.iter().enumerate() {
            let devid = u32::try_from(devid).unwrap_or(u32::MAX);
            match parse_vif(&src, spec, devid, &c.kind) {
                Ok(n) => c.nics.push(n),
                Err(msg) => {
                    let _ = writeln!(err, "{msg}");
                    return Err(Fail(1));
                }
            }
        }
    }

    Ok((name, c))
}

/// xl's parse_cmdline: `cmdline=`, or `root=` and `extra=` joined.
fn parse_cmdline(cfg: &Cfg, err: &mut dyn Write) -> Option<String> {
    let cmdline = cfg.get_string("cmdline", err);
    let root = cfg.get_string("root", err);
    let extra = cfg.get_string("extra", err);
    if let Some(c) = cmdline {
        if root.is_some() || extra.is_some() {
            let _ = writeln!(
                err,
                "Warning: ignoring root= and extra= in favour of cmdline="
            );
        }
        return Some(c);
    }
    match (root, extra) {
        (Some(r), Some(e)) => Some(format!("root={r} {e}")),
        (Some(r), None) => Some(format!("root={r}")),
        (None, Some(e)) => Some(e),
        (None, None) => None,
    }
}

const DISK_FORMATS: &[&str] = &["raw", "qcow", "qcow2", "vhd", "qed", "empty"];

fn disk_err(src: &str, spec: &str, erroneous: Option<&str>, message: &str) -> String {
    match erroneous {
        Some(e) => format!(
            "{src}: config parsing error in disk specification: {message}: `{e}' in `{spec}'"
        ),
        None => format!("{src}: config parsing error in disk specification: {message} in `{spec}'"),
    }
}

/// xl-disk-configuration(5): key=value (target= last, takes the rest) and positional
/// `target,format,vdev,access` (or `prefix:target,vdev,access` with a deprecated prefix).
pub(crate) fn parse_disk(src: &str, spec: &str) -> Result<Disk, String> {
    let mut disk = Disk {
        readwrite: 1,
        ..Disk::default()
    };
    let mut target: Option<String> = None;
    let mut format: Option<String> = None;
    let mut vdev: Option<String> = None;
    let mut access_set = false;
    let mut had_prefix = false;
    let mut rest = spec;
    loop {
        let trimmed = rest.trim_start();
        if let Some(t) = trimmed.strip_prefix("target=") {
            target = Some(t.to_string());
            break;
        }
        let (tok, next) = match trimmed.find(',') {
            Some(p) => (&trimmed[..p], Some(&trimmed[p + 1..])),
            None => (trimmed, None),
        };
        let tok = tok.trim();
        if let Some((k, v)) = tok.split_once('=') {
            let v = v.trim();
            match k.trim() {
                "format" => {
                    if !DISK_FORMATS.contains(&v) {
                        return Err(disk_err(src, spec, Some(v), "unknown value for format"));
                    }
                    format = Some(v.to_string());
                }
                "vdev" => vdev = Some(v.to_string()),
                "access" => {
                    disk.readwrite = parse_access(v)
                        .ok_or_else(|| disk_err(src, spec, Some(v), "unknown value for access"))?;
                    access_set = true;
                }
                "devtype" => match v {
                    "cdrom" => disk.is_cdrom = 1,
                    "disk" => disk.is_cdrom = 0,
                    _ => return Err(disk_err(src, spec, Some(v), "unknown value for type")),
                },
                "backendtype" => match v {
                    "phy" | "qdisk" | "tap" | "standalone" => disk.backend = v.to_string(),
                    _ => {
                        return Err(disk_err(
                            src,
                            spec,
                            Some(v),
                            "unknown value for backendtype",
                        ));
                    }
                },
                "backend" | "script" | "specification" | "transport" | "discard" | "colo-host"
                | "colo-port" | "colo-export" | "active-disk" | "hidden-disk" => {}
                other => return Err(disk_err(src, spec, Some(other), "unknown keyword")),
            }
        } else {
            match tok {
                "cdrom" => disk.is_cdrom = 1,
                "direct-io-safe" | "discard" | "no-discard" | "trusted" | "untrusted" | "colo" => {}
                _ => {
                    if target.is_none() {
                        let (stripped, prefix_format) = strip_depr_prefix(tok);
                        if prefix_format.is_some() {
                            had_prefix = true;
                            format = prefix_format.map(str::to_string);
                        }
                        target = Some(stripped.to_string());
                    } else if !had_prefix && format.is_none() {
                        if !tok.is_empty() && !DISK_FORMATS.contains(&tok) {
                            return Err(disk_err(src, spec, Some(tok), "unknown value for format"));
                        }
                        format = Some(if tok.is_empty() { "raw" } else { tok }.to_string());
                    } else if vdev.is_none() {
                        let v = match tok.split_once(':') {
                            Some((v, "cdrom")) => {
                                disk.is_cdrom = 1;
                                v
                            }
                            Some((v, _)) => v,
                            None => tok,
                        };
                        vdev = Some(v.to_string());
                    } else if !access_set {
                        disk.readwrite = parse_access(tok).ok_or_else(|| {
                            disk_err(src, spec, Some(tok), "unknown value for access")
                        })?;
                        access_set = true;
                    } else {
                        return Err(disk_err(
                            src,
                            spec,
                            Some(tok),
                            "too many positional parameters",
                        ));
                    }
                }
            }
        }
        match next {
            Some(n) => rest = n,
            None => break,
        }
    }
    let Some(vdev) = vdev.filter(|v| !v.is_empty()) else {
        return Err(disk_err(src, spec, None, "no vdev specified"));
    };
    let target = target.unwrap_or_default();
    disk.format = if target.is_empty() {
        "empty".to_string()
    } else {
        format.unwrap_or_else(|| "raw".to_string())
    };
    disk.pdev_path = target;
    disk.vdev = vdev;
    Ok(disk)
}

fn parse_access(v: &str) -> Option<u32> {
    match v {
        "rw" | "w" | "" => Some(1),
        "r" | "ro" => Some(0),
        _ => None,
    }
}

/// Deprecated target prefixes (`phy:`, `file:`, `tap:aio:`, `qcow2:` ...) and the format
/// they imply.
fn strip_depr_prefix(t: &str) -> (&str, Option<&'static str>) {
    const PREFIXES: &[(&str, &str)] = &[
        ("tap:tapdisk:aio:", "raw"),
        ("tap2:tapdisk:aio:", "raw"),
        ("tap:aio:", "raw"),
        ("tap2:aio:", "raw"),
        ("tap:vhd:", "vhd"),
        ("tap:qcow2:", "qcow2"),
        ("tap:qcow:", "qcow"),
        ("phy:", "raw"),
        ("file:", "raw"),
        ("aio:", "raw"),
        ("raw:", "raw"),
        ("qcow2:", "qcow2"),
        ("qcow:", "qcow"),
        ("vhd:", "vhd"),
    ];
    for (p, f) in PREFIXES {
        if let Some(rest) = t.strip_prefix(p) {
            return (rest, Some(f));
        }
    }
    (t, None)
}

fn vif_err(src: &str, msg: &str, what: &str) -> String {
    format!("{src}: config parsing error in vif: {msg} in `{what}'")
}

/// xl's parse_nic_config for one `vif = [...]` entry.
pub(crate) fn parse_vif(src: &str, spec: &str, devid: u32, kind: &str) -> Result<Nic, String> {
    let mut nic = Nic {
        devid,
        bridge: "xenbr0".to_string(),
        nictype: if kind == "hvm" { "vif_ioemu" } else { "vif" }.to_string(),
        ..Nic::default()
    };
    let mut mac: Option<String> = None;
    for token in spec.split(',') {
        let token = token.trim();
        if token.is_empty() {
            continue;
        }
        let Some((k, v)) = token.split_once('=') else {
            return Err(format!("unrecognized argument `{token}'"));
        };
        match k {
            "mac" => {
                let ok = v.split(':').count() == 6
                    && v.split(':')
                        .all(|o| o.len() == 2 && o.chars().all(|c| c.is_ascii_hexdigit()));
                if !ok {
                    return Err(format!("Invalid mac address: {v}"));
                }
                mac = Some(v.to_ascii_lowercase());
            }
            "bridge" => nic.bridge = v.to_string(),
            "ip" => nic.ip = Some(v.to_string()),
            "model" => nic.model = Some(v.to_string()),
            "vifname" => nic.ifname = Some(v.to_string()),
            "script" => nic.script = Some(v.to_string()),
            "gatewaydev" => nic.gatewaydev = Some(v.to_string()),
            "type" => {
                nic.nictype = match v {
                    "ioemu" => "vif_ioemu".to_string(),
                    _ => "vif".to_string(),
                }
            }
            "rate" => {
                let (bytes, usecs) = parse_vif_rate(src, v)?;
                nic.rate = Some(v.to_string());
                nic.rate_bytes_per_interval = Some(bytes);
                nic.rate_interval_usecs = Some(usecs);
            }
            "backend" | "mtu" | "accel" | "forwarddev" => {}
            _ => return Err(format!("unrecognized argument `{token}'")),
        }
    }
    nic.mac = match mac {
        Some(m) => m,
        None => {
            let b = super::state::random_bytes();
            format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0] & 0x7f, b[1], b[2])
        }
    };
    Ok(nic)
}

/// libxlutil's xlu_vif_parse_rate: `N[GMK]{B,b}/s[@interval]`, default interval 50ms.
/// Returns (bytes per interval, interval in microseconds).
pub(crate) fn parse_vif_rate(src: &str, rate: &str) -> Result<(u64, u32), String> {
    let (bytes_s, interval_s) = match rate.split_once('@') {
        Some((b, i)) => (b, Some(i)),
        None => (rate, None),
    };
    if bytes_s.is_empty() {
        return Err(vif_err(src, "no rate specified", rate));
    }
    // ^[0-9]+[GMK]?[Bb]/s$
    let digits_end = bytes_s
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(bytes_s.len());
    let (num, suffix) = bytes_s.split_at(digits_end);
    let suffix_ok = matches!(
        suffix,
        "B/s" | "b/s" | "GB/s" | "Gb/s" | "MB/s" | "Mb/s" | "KB/s" | "Kb/s"
    );
    if num.is_empty() || !suffix_ok {
        return Err(vif_err(src, "invalid rate", bytes_s));
    }
    let mut bytes: u64 = match num.parse::<u64>() {
        Ok(v) if v != 0 && v <= u64::from(u32::MAX) => v,
        _ => return Err(vif_err(src, "invalid rate", bytes_s)),
    };
    match suffix.as_bytes().first() {
        Some(b'G') => bytes *= 1_000_000_000,
        Some(b'M') => bytes *= 1_000_000,
        Some(b'K') => bytes *= 1_000,
        _ => {}
    }
    if suffix.contains("b/") {
        bytes /= 8;
    }
    let mut usecs: u64 = 50_000;
    if let Some(iv) = interval_s {
        // ^[0-9]+[mu]?s?$
        let d_end = iv.find(|c: char| !c.is_ascii_digit()).unwrap_or(iv.len());
        let (n, unit) = iv.split_at(d_end);
        if n.is_empty() || !matches!(unit, "" | "s" | "m" | "ms" | "u" | "us") {
            return Err(vif_err(src, "invalid rate interval", iv));
        }
        let v: u64 = match n.parse::<u64>() {
            Ok(v) if v != 0 && v <= u64::from(u32::MAX) => v,
            _ => return Err(vif_err(src, "invalid rate interval", iv)),
        };
        usecs = match unit.as_bytes().first() {
            None | Some(b's') => v * 1_000_000,
            Some(b'm') => v * 1_000,
            _ => v,
        };
        if usecs > u64::from(u32::MAX) {
            return Err(vif_err(src, "invalid rate interval", iv));
        }
    }
    if bytes > u64::MAX / usecs {
        return Err(vif_err(src, "rate overflow", rate));
    }
    let per_interval = bytes * usecs / 1_000_000;
    Ok((per_interval, u32::try_from(usecs).unwrap_or(u32::MAX)))
}
