//! The LVM 2.03.16 stand-ins `lvs`, `lvcreate`, `lvextend`, `lvremove`: a volume group is the
//! folder ROOT/dev/VG, a logical volume the sparse file ROOT/dev/VG/LV, 4 MiB extents.

use super::error::{FileError, FileOp, OnFile, Result, SimError};
use super::fs as fsim;
use super::json::lvm_str;
use super::opts::{self, OptError, Parsed, Spec, spec};
use super::state::{Node, VgRecord};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

/// Physical extent size (LVM's default).
pub(crate) const EXTENT: u64 = 4 << 20;
/// Size assumed for a volume group folder nobody recorded a size for.
pub(crate) const DEFAULT_VG_SIZE: u64 = 1 << 40;

/// Folders of ROOT/dev that are never volume groups.
const NOT_VGS: &[&str] = &[
    "mapper",
    "disk",
    "pts",
    "shm",
    "mqueue",
    "hugepages",
    "net",
    "block",
    "char",
    "bus",
    "cpu",
    "input",
    "fd",
    "xen",
    "dri",
    "snd",
    "usb",
    "vfio",
    "serial",
];

/// LVM's name rule for VGs and LVs: `[a-zA-Z0-9+_.-]`, not starting with `-`, not `.`/`..`.
pub(crate) fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 127
        && s != "."
        && s != ".."
        && !s.starts_with('-')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '_' | '.' | '-'))
}

fn vg_dir(node: &Node, vg: &str) -> PathBuf {
    node.root().join("dev").join(vg)
}

fn vg_exists(node: &Node, vg: &str) -> bool {
    valid_name(vg) && !NOT_VGS.contains(&vg) && vg_dir(node, vg).is_dir()
}

/// Volume groups present, sorted.
fn list_vgs(node: &Node) -> Result<Vec<String>> {
    let dir = node.root().join("dev");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FileError::new(FileOp::Read, &dir, e).into()),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.on(FileOp::Read, &dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if vg_exists(node, &name) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Logical volumes of `vg` with their sizes in bytes (a snapshot's: its copy-on-write area),
/// sorted by name.
fn list_lvs(node: &Node, vg: &str) -> Result<Vec<(String, u64)>> {
    let snaps = node.load_lvm()?.snapshots;
    let dir = vg_dir(node, vg);
    let entries = std::fs::read_dir(&dir).on(FileOp::Read, &dir)?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.on(FileOp::Read, &dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !valid_name(&name) {
            continue;
        }
        let meta = std::fs::metadata(e.path()).on(FileOp::Stat, &e.path())?;
        if meta.is_file() {
            let len = snaps
                .get(&format!("{vg}/{name}"))
                .map_or(meta.len(), |r| r.cow_bytes);
            out.push((name, len));
        }
    }
    out.sort();
    Ok(out)
}

fn extents_of(bytes: u64) -> u64 {
    bytes.div_ceil(EXTENT)
}

/// (total, free) extents of `vg`.
fn vg_extents(node: &Node, vg: &str) -> Result<(u64, u64)> {
    let size = node
        .load_lvm()?
        .vgs
        .get(vg)
        .map_or(DEFAULT_VG_SIZE, |r| r.size_bytes);
    let total = size / EXTENT;
    let used: u64 = list_lvs(node, vg)?
        .iter()
        .map(|(_, len)| extents_of(*len))
        .sum();
    Ok((total, total.saturating_sub(used)))
}

/// The name of a new LV: the given one, or LVM's first free `lvolN`.
fn new_name(lvs: &[(String, u64)], given: Option<String>) -> String {
    given.unwrap_or_else(|| {
        let mut i = 0;
        while lvs.iter().any(|(n, _)| *n == format!("lvol{i}")) {
            i += 1;
        }
        format!("lvol{i}")
    })
}

/// LVM's refusal of a name already taken: true (and the message) when it is.
fn exists(lvs: &[(String, u64)], vg: &str, name: &str, err: &mut dyn Write) -> bool {
    let taken = lvs.iter().any(|(n, _)| n == name);
    if taken {
        say!(
            err,
            "  Logical Volume \"{name}\" already exists in volume group \"{vg}\""
        );
    }
    taken
}

/// LVM's refusal of more extents than the VG has free: true (and the message) when so.
fn insufficient(vg: &str, free: u64, want: u64, err: &mut dyn Write) -> bool {
    let short = want > free;
    if short {
        say!(
            err,
            "  Volume group \"{vg}\" has insufficient free space ({free} extents): {want} required."
        );
    }
    short
}

/// Whether `vg/lv` is the origin of a snapshot.
fn has_snapshot(
    snaps: &std::collections::BTreeMap<String, super::state::SnapRecord>,
    vg: &str,
    lv: &str,
) -> bool {
    snaps
        .iter()
        .any(|(k, r)| r.origin == lv && k.split_once('/').is_some_and(|(v, _)| v == vg))
}

/// The snapshots of `vg/lv`, by name.
fn snapshots_of(node: &Node, vg: &str, lv: &str) -> Result<Vec<String>> {
    Ok(node
        .load_lvm()?
        .snapshots
        .iter()
        .filter(|(k, r)| r.origin == lv && k.split_once('/').is_some_and(|(v, _)| v == vg))
        .filter_map(|(k, _)| k.split_once('/').map(|(_, n)| n.to_string()))
        .collect())
}

/// `vgs [--noheadings] [--units U] [--nosuffix] [-o FIELDS] [VG...]`: the report of
/// `vg_name`, `vg_size` and `vg_free` (the fields the collector reads; others are refused
/// like an unknown field), one aligned line per volume group, as LVM prints it.
pub(crate) fn vgs(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let extra = [
        spec("options", Some('o'), Some("options"), true),
        spec("units", None, Some("units"), true),
        spec("nosuffix", None, Some("nosuffix"), false),
        spec("noheadings", None, Some("noheadings"), false),
    ];
    let p = match parse_cmdline("vgs", args, &extra, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let units = match units_arg(&p, err) {
        Ok(u) => u,
        Err(code) => return Ok(code),
    };
    let mut cols: Vec<(&str, &str)> = Vec::new();
    for o in p.values("options") {
        for f in o.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let col = match f {
                "vg_name" | "name" => ("vg_name", "VG"),
                "vg_size" | "size" => ("vg_size", "VSize"),
                "vg_free" | "free" => ("vg_free", "VFree"),
                _ => {
                    say!(err, "  Unrecognised field: {f}");
                    return Ok(5);
                }
            };
            cols.push(col);
        }
    }
    if cols.is_empty() {
        cols = vec![
            ("vg_name", "VG"),
            ("vg_size", "VSize"),
            ("vg_free", "VFree"),
        ];
    }
    let _lock = node.lock()?;
    let names = if p.args.is_empty() {
        list_vgs(node)?
    } else {
        p.args.clone()
    };
    let mut rows = Vec::new();
    let mut code = 0;
    for vg in &names {
        if !vg_exists(node, vg) {
            vg_not_found(vg, err);
            code = 5;
            continue;
        }
        let (total, free) = vg_extents(node, vg)?;
        let row: Vec<String> = cols
            .iter()
            .map(|(f, _)| match *f {
                "vg_name" => vg.clone(),
                "vg_size" => report_size(total * EXTENT, units, p.has("nosuffix")),
                _ => report_size(free * EXTENT, units, p.has("nosuffix")),
            })
            .collect();
        rows.push(row);
    }
    if !p.has("noheadings") && !rows.is_empty() {
        rows.insert(0, cols.iter().map(|(_, h)| (*h).to_string()).collect());
    }
    for row in rows {
        let line: Vec<String> = row.iter().map(|c| format!("{c:>5}")).collect();
        say!(out, "  {}", line.join(" "));
    }
    Ok(code)
}

/// Records (or updates) the size of volume group `vg` and creates its folder.
pub(crate) fn create_vg(node: &Node, vg: &str, size_bytes: u64) -> Result<()> {
    if !valid_name(vg) || NOT_VGS.contains(&vg) {
        return Err(SimError::InvalidVgName(vg.to_string()));
    }
    let _lock = node.lock()?;
    let dir = vg_dir(node, vg);
    std::fs::create_dir_all(&dir).on(FileOp::Create, &dir)?;
    let mut st = node.load_lvm()?;
    st.vgs.insert(vg.to_string(), VgRecord { size_bytes });
    node.save_lvm(&st)
}

/// Size with two decimals in `mult` units: rounded up with a `<` when inexact (units `r`),
/// or rounded to nearest (units `h` and fixed units).
fn fixed(bytes: u64, mult: u64, lt: bool) -> String {
    let num = u128::from(bytes) * 100;
    let m = u128::from(mult);
    if lt {
        let q = num.div_ceil(m);
        let mark = if num % m == 0 { "" } else { "<" };
        format!("{mark}{}.{:02}", q / 100, q % 100)
    } else {
        let q = (num + m / 2) / m;
        format!("{}.{:02}", q / 100, q % 100)
    }
}

const HUMAN: [(u64, &str, char); 6] = [
    (1 << 60, "EiB", 'e'),
    (1 << 50, "PiB", 'p'),
    (1 << 40, "TiB", 't'),
    (1 << 30, "GiB", 'g'),
    (1 << 20, "MiB", 'm'),
    (1 << 10, "KiB", 'k'),
];

/// display_size in messages: `30.00 GiB`, `<14.65 GiB`.
pub(crate) fn display_long(bytes: u64) -> String {
    for (mult, name, _) in HUMAN {
        if bytes >= mult {
            return format!("{} {name}", fixed(bytes, mult, true));
        }
    }
    format!("{bytes} B")
}

/// `--units` of a report.
#[derive(Debug, Clone, Copy)]
enum Units {
    /// `r` (with `<`) or `h`.
    Human {
        lt: bool,
        si: bool,
    },
    Bytes,
    Sectors,
    Fixed {
        mult: u64,
        letter: char,
    },
}

fn parse_units(s: &str) -> Option<Units> {
    let mut it = s.chars();
    let c = it.next()?;
    if it.next().is_some() {
        return None;
    }
    let pow = |n: u32, base: u64| base.pow(n);
    Some(match c {
        'r' => Units::Human {
            lt: true,
            si: false,
        },
        'R' => Units::Human { lt: true, si: true },
        'h' => Units::Human {
            lt: false,
            si: false,
        },
        'H' => Units::Human {
            lt: false,
            si: true,
        },
        'b' | 'B' => Units::Bytes,
        's' | 'S' => Units::Sectors,
        'k' | 'm' | 'g' | 't' | 'p' | 'e' => {
            let n = "kmgtpe".find(c).map_or(1, |i| i as u32 + 1);
            Units::Fixed {
                mult: pow(n, 1024),
                letter: c,
            }
        }
        'K' | 'M' | 'G' | 'T' | 'P' | 'E' => {
            let n = "KMGTPE".find(c).map_or(1, |i| i as u32 + 1);
            Units::Fixed {
                mult: pow(n, 1000),
                letter: c,
            }
        }
        _ => return None,
    })
}

/// The report's `--units` (human-readable, `<` marking rounding, by default), or the exit
/// code after LVM's message.
fn units_arg(p: &Parsed, err: &mut dyn Write) -> std::result::Result<Units, i32> {
    match p.value("units") {
        None => Ok(Units::Human {
            lt: true,
            si: false,
        }),
        Some(u) => parse_units(u).ok_or_else(|| {
            say!(err, "  Invalid argument for --units: {u}");
            say!(err, "  Error during parsing of command line.");
            3
        }),
    }
}

/// A size as `lvs` prints it.
fn report_size(bytes: u64, units: Units, nosuffix: bool) -> String {
    let suffix = |s: &str| {
        if nosuffix {
            String::new()
        } else {
            s.to_string()
        }
    };
    match units {
        Units::Bytes => format!("{bytes}{}", suffix("B")),
        Units::Sectors => format!("{}{}", bytes / 512, suffix("S")),
        Units::Fixed { mult, letter } => {
            format!(
                "{}{}",
                fixed(bytes, mult, false),
                suffix(&letter.to_string())
            )
        }
        Units::Human { lt, si } => {
            if si {
                let table: [(u64, char); 6] = [
                    (1_000_000_000_000_000_000, 'E'),
                    (1_000_000_000_000_000, 'P'),
                    (1_000_000_000_000, 'T'),
                    (1_000_000_000, 'G'),
                    (1_000_000, 'M'),
                    (1_000, 'K'),
                ];
                for (mult, letter) in table {
                    if bytes >= mult {
                        return format!(
                            "{}{}",
                            fixed(bytes, mult, lt),
                            suffix(&letter.to_string())
                        );
                    }
                }
            } else {
                for (mult, _, letter) in HUMAN {
                    if bytes >= mult {
                        return format!(
                            "{}{}",
                            fixed(bytes, mult, lt),
                            suffix(&letter.to_string())
                        );
                    }
                }
            }
            if bytes == 0 {
                "0 ".to_string()
            } else {
                format!("{bytes}{}", suffix("B"))
            }
        }
    }
}

/// A size argument (`-L`): optional sign, number (decimals allowed), unit (default MiB),
/// binary multiples whatever the case. Returns (sign, bytes).
fn parse_size(s: &str) -> Option<(Option<char>, u64)> {
    let (sign, rest) = match s.chars().next() {
        Some(c @ ('+' | '-')) => (Some(c), &s[1..]),
        _ => (None, s),
    };
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (num, unit) = rest.split_at(end);
    if num.is_empty() || num == "." {
        return None;
    }
    let mult: u64 = match unit {
        "" | "m" | "M" => 1 << 20,
        "b" | "B" => 1,
        "s" | "S" => 512,
        "k" | "K" => 1 << 10,
        "g" | "G" => 1 << 30,
        "t" | "T" => 1 << 40,
        "p" | "P" => 1 << 50,
        "e" | "E" => 1 << 60,
        _ => return None,
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if frac.contains('.') {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac_digits = &frac[..frac.len().min(9)];
    let frac_v: u128 = if frac_digits.is_empty() {
        0
    } else {
        frac_digits.parse().ok()?
    };
    let scale = 10u128.pow(u32::try_from(frac_digits.len()).unwrap_or(0));
    let m = u128::from(mult);
    let bytes = int.checked_mul(m)?.checked_add(frac_v * m / scale)?;
    // LVM works in 512-byte sectors.
    let bytes = bytes.div_ceil(512) * 512;
    Some((sign, u64::try_from(bytes).ok()?))
}

/// An extents argument (`-l`): [+]N[%FREE|%VG|%PVS]. Returns (sign, extents).
fn parse_extents(s: &str, total: u64, free: u64) -> Option<(Option<char>, u64)> {
    let (sign, rest) = match s.chars().next() {
        Some(c @ ('+' | '-')) => (Some(c), &s[1..]),
        _ => (None, s),
    };
    let (num, pct) = match rest.split_once('%') {
        Some((n, p)) => (n, Some(p)),
        None => (rest, None),
    };
    let n: u64 = num.parse().ok()?;
    let v = match pct {
        None => n,
        Some("FREE") => free.saturating_mul(n) / 100,
        Some("VG") | Some("PVS") => total.saturating_mul(n) / 100,
        Some(_) => return None,
    };
    Some((sign, v))
}

/// Options every LVM command accepts.
fn common_specs() -> Vec<Spec> {
    vec![
        spec("verbose", Some('v'), Some("verbose"), false),
        spec("quiet", Some('q'), Some("quiet"), false),
        spec("debug", Some('d'), Some("debug"), false),
        spec("yes", Some('y'), Some("yes"), false),
        spec("test", Some('t'), Some("test"), false),
        spec("help", Some('h'), Some("help"), false),
        spec("config", None, Some("config"), true),
        spec("commandprofile", None, Some("commandprofile"), true),
        spec("profile", None, Some("profile"), true),
        spec("devices", None, Some("devices"), true),
        spec("devicesfile", None, Some("devicesfile"), true),
        spec("driverloaded", None, Some("driverloaded"), true),
        spec("lockopt", None, Some("lockopt"), true),
        spec("nolocking", None, Some("nolocking"), false),
        spec("nohints", None, Some("nohints"), false),
        spec("noudevsync", None, Some("noudevsync"), false),
        spec("autobackup", Some('A'), Some("autobackup"), true),
    ]
}

fn parse_cmdline(
    tool: &str,
    args: &[String],
    extra: &[Spec],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Parsed, i32> {
    let mut specs = common_specs();
    specs.extend_from_slice(extra);
    match opts::parse(args, &specs, false) {
        Ok(p) => {
            if p.has("help") {
                say!(out, "  {tool} - see {tool}(8)");
                return Err(0);
            }
            Ok(p)
        }
        Err(e) => {
            match e {
                OptError::UnknownShort(c) => say!(err, "{tool}: invalid option -- '{c}'"),
                OptError::UnknownLong(l) => say!(err, "{tool}: unrecognized option '--{l}'"),
                OptError::MissingShort(c) => {
                    say!(err, "{tool}: option requires an argument -- '{c}'")
                }
                OptError::MissingLong(l) => {
                    say!(err, "{tool}: option '--{l}' requires an argument")
                }
                OptError::UnexpectedArg(l) => {
                    say!(err, "{tool}: option '--{l}' doesn't allow an argument")
                }
            }
            say!(err, "  Error during parsing of command line.");
            Err(3)
        }
    }
}

fn no_matching_syntax(tool: &str, err: &mut dyn Write) -> i32 {
    say!(
        err,
        "  No command with matching syntax recognised.  Run '{tool} --help' for more information."
    );
    3
}

fn vg_not_found(vg: &str, err: &mut dyn Write) {
    say!(err, "  Volume group \"{vg}\" not found");
    say!(err, "  Cannot process volume group {vg}");
}

/// A `VG`, `VG/LV`, `/dev/VG/LV` or `ROOT/dev/VG/LV` argument.
enum LvArg {
    Vg(String),
    Lv(String, String),
    Bad(String),
}

fn parse_lv_arg(node: &Node, arg: &str) -> LvArg {
    let rel = if arg.starts_with('/') {
        let host = node.resolve(arg);
        match node
            .node_key(&host)
            .and_then(|k| k.strip_prefix("/dev/").map(str::to_string))
        {
            Some(r) => r,
            None => return LvArg::Bad(arg.to_string()),
        }
    } else {
        arg.to_string()
    };
    let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    match parts.as_slice() {
        [vg] => LvArg::Vg((*vg).to_string()),
        [vg, lv] => LvArg::Lv((*vg).to_string(), (*lv).to_string()),
        _ => LvArg::Bad(arg.to_string()),
    }
}

/// `lvs` report fields: (name, heading, right-aligned, minimum width).
const FIELDS: &[(&str, &str, bool, usize)] = &[
    ("lv_name", "LV", false, 0),
    ("vg_name", "VG", false, 0),
    ("lv_attr", "Attr", false, 0),
    ("lv_size", "LSize", true, 0),
    ("pool_lv", "Pool", false, 0),
    ("origin", "Origin", false, 0),
    ("data_percent", "Data%", true, 6),
    ("metadata_percent", "Meta%", true, 6),
    ("move_pv", "Move", false, 0),
    ("mirror_log", "Log", false, 0),
    ("copy_percent", "Cpy%Sync", true, 0),
    ("convert_lv", "Convert", false, 0),
    ("lv_path", "Path", false, 0),
    ("lv_dm_path", "DMPath", false, 0),
    ("lv_active", "Active", false, 0),
    ("lv_full_name", "LV", false, 0),
];

const DEFAULT_FIELDS: &[&str] = &[
    "lv_name",
    "vg_name",
    "lv_attr",
    "lv_size",
    "pool_lv",
    "origin",
    "data_percent",
    "metadata_percent",
    "move_pv",
    "mirror_log",
    "copy_percent",
    "convert_lv",
];

fn field_name(f: &str) -> Option<&'static str> {
    let f = f.trim();
    let alias = format!("lv_{f}");
    FIELDS
        .iter()
        .find(|(n, _, _, _)| *n == f || *n == alias)
        .map(|(n, _, _, _)| *n)
}

/// `lvs ARGS...`.
pub(crate) fn lvs(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let extra = [
        spec("options", Some('o'), Some("options"), true),
        spec("sort", Some('O'), Some("sort"), true),
        spec("select", Some('S'), Some("select"), true),
        spec("reportformat", None, Some("reportformat"), true),
        spec("units", None, Some("units"), true),
        spec("nosuffix", None, Some("nosuffix"), false),
        spec("noheadings", None, Some("noheadings"), false),
        spec("separator", None, Some("separator"), true),
        spec("aligned", None, Some("aligned"), false),
        spec("all", Some('a'), Some("all"), false),
        spec("binary", None, Some("binary"), false),
        spec("unbuffered", None, Some("unbuffered"), false),
        spec("readonly", None, Some("readonly"), false),
        spec("partial", Some('P'), Some("partial"), false),
        spec("rows", None, Some("rows"), false),
        spec("nameprefixes", None, Some("nameprefixes"), false),
        spec("unquoted", None, Some("unquoted"), false),
    ];
    let p = match parse_cmdline("lvs", args, &extra, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let units = match units_arg(&p, err) {
        Ok(u) => u,
        Err(code) => return Ok(code),
    };
    let json = match p.value("reportformat") {
        None | Some("basic") => false,
        Some("json") => true,
        Some(other) => {
            say!(err, "  Unknown report format name: {other}");
            return Ok(5);
        }
    };
    let nosuffix = p.has("nosuffix");
    let mut cols: Vec<&'static str> = DEFAULT_FIELDS.to_vec();
    let mut replaced = false;
    for o in p.values("options") {
        let (append, list) = match o.strip_prefix('+') {
            Some(l) => (true, l),
            None => (false, o),
        };
        let mut names = Vec::new();
        for f in list.split(',').filter(|f| !f.trim().is_empty()) {
            match field_name(f) {
                Some(n) => names.push(n),
                None => {
                    say!(err, "  Unrecognised field: {}", f.trim());
                    return Ok(5);
                }
            }
        }
        if append || replaced {
            cols.extend(names);
        } else {
            cols = names;
            replaced = true;
        }
    }

    let _lock = node.lock()?;
    let in_use = super::xl::devices_in_use(node)?;
    let snaps = node.load_lvm()?.snapshots;
    let mut rc = 0;
    // (vg, lv, size)
    let mut rows: Vec<(String, String, u64)> = Vec::new();
    if p.args.is_empty() {
        for vg in list_vgs(node)? {
            for (lv, size) in list_lvs(node, &vg)? {
                rows.push((vg.clone(), lv, size));
            }
        }
    } else {
        for a in &p.args {
            match parse_lv_arg(node, a) {
                LvArg::Vg(vg) => {
                    if !vg_exists(node, &vg) {
                        vg_not_found(&vg, err);
                        rc = 5;
                        continue;
                    }
                    for (lv, size) in list_lvs(node, &vg)? {
                        rows.push((vg.clone(), lv, size));
                    }
                }
                LvArg::Lv(vg, lv) => {
                    if !vg_exists(node, &vg) {
                        vg_not_found(&vg, err);
                        rc = 5;
                        continue;
                    }
                    match list_lvs(node, &vg)?.into_iter().find(|(n, _)| *n == lv) {
                        Some((n, size)) => rows.push((vg, n, size)),
                        None => {
                            say!(err, "  Failed to find logical volume \"{vg}/{lv}\"");
                            rc = 5;
                        }
                    }
                }
                LvArg::Bad(a) => {
                    say!(err, "  \"{a}\": Invalid path for Logical Volume.");
                    rc = 5;
                }
            }
        }
    }
    rows.sort();
    rows.dedup();

    let value = |col: &str, vg: &str, lv: &str, size: u64| -> String {
        match col {
            "lv_name" => lv.to_string(),
            "vg_name" => vg.to_string(),
            "lv_full_name" => format!("{vg}/{lv}"),
            "lv_attr" => {
                let open = if in_use.contains(&format!("/dev/{vg}/{lv}")) {
                    'o'
                } else {
                    '-'
                };
                let (kind, snap) = if snaps.contains_key(&format!("{vg}/{lv}")) {
                    ('s', 's')
                } else if has_snapshot(&snaps, vg, lv) {
                    ('o', 's')
                } else {
                    ('-', '-')
                };
                format!("{kind}wi-a{open}{snap}---")
            }
            "origin" => snaps
                .get(&format!("{vg}/{lv}"))
                .map_or_else(String::new, |r| r.origin.clone()),
            "data_percent" if snaps.contains_key(&format!("{vg}/{lv}")) => "0.00".to_string(),
            "lv_size" => report_size(size, units, nosuffix),
            "lv_path" => format!("/dev/{vg}/{lv}"),
            "lv_dm_path" => format!(
                "/dev/mapper/{}-{}",
                vg.replace('-', "--"),
                lv.replace('-', "--")
            ),
            "lv_active" => "active".to_string(),
            _ => String::new(),
        }
    };

    if json {
        say!(out, "  {{");
        say!(out, "      \"report\": [");
        say!(out, "          {{");
        say!(out, "              \"lv\": [");
        let items: Vec<String> = rows
            .iter()
            .map(|(vg, lv, size)| {
                let fields: Vec<String> = cols
                    .iter()
                    .map(|c| format!("\"{c}\":{}", lvm_str(&value(c, vg, lv, *size))))
                    .collect();
                format!("                  {{{}}}", fields.join(", "))
            })
            .collect();
        if !items.is_empty() {
            say!(out, "{}", items.join(",\n"));
        }
        say!(out, "              ]");
        say!(out, "          }}");
        say!(out, "      ]");
        say!(out, "  }}");
        return Ok(rc);
    }

    if rows.is_empty() {
        return Ok(rc);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(vg, lv, size)| cols.iter().map(|c| value(c, vg, lv, *size)).collect())
        .collect();
    let meta: Vec<(&str, bool, usize)> = cols
        .iter()
        .map(|c| {
            FIELDS
                .iter()
                .find(|(n, _, _, _)| n == c)
                .map_or(("", false, 0), |(_, h, r, w)| (*h, *r, *w))
        })
        .collect();
    let headings = !p.has("noheadings");
    if let Some(sep) = p.value("separator")
        && !p.has("aligned")
    {
        if headings {
            let h: Vec<&str> = meta.iter().map(|(h, _, _)| *h).collect();
            say!(out, "  {}", h.join(sep));
        }
        for row in &table {
            say!(out, "  {}", row.join(sep));
        }
        return Ok(rc);
    }
    let sep = p.value("separator").unwrap_or(" ");
    let widths: Vec<usize> = meta
        .iter()
        .enumerate()
        .map(|(i, (h, _, min))| {
            let w = table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0);
            w.max(if headings { h.chars().count() } else { 0 })
                .max(*min)
        })
        .collect();
    if headings {
        let h: Vec<String> = meta
            .iter()
            .zip(&widths)
            .map(|((h, _, _), w)| format!("{h:<w$}"))
            .collect();
        say!(out, "  {}", h.join(sep));
    }
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(meta.iter().zip(&widths))
            .map(|(v, ((_, right, _), w))| {
                if *right {
                    format!("{v:>w$}")
                } else {
                    format!("{v:<w$}")
                }
            })
            .collect();
        say!(out, "  {}", cells.join(sep));
    }
    Ok(rc)
}

/// `lvcreate ARGS...`.
pub(crate) fn lvcreate(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let extra = [
        spec("size", Some('L'), Some("size"), true),
        spec("extents", Some('l'), Some("extents"), true),
        spec("name", Some('n'), Some("name"), true),
        spec("wipesignatures", Some('W'), Some("wipesignatures"), true),
        spec("zero", Some('Z'), Some("zero"), true),
        spec("activate", Some('a'), Some("activate"), true),
        spec("contiguous", Some('C'), Some("contiguous"), true),
        spec("permission", Some('p'), Some("permission"), true),
        spec("readahead", Some('r'), Some("readahead"), true),
        spec("persistent", Some('M'), Some("persistent"), true),
        spec(
            "setactivationskip",
            Some('k'),
            Some("setactivationskip"),
            true,
        ),
        spec(
            "ignoreactivationskip",
            Some('K'),
            Some("ignoreactivationskip"),
            false,
        ),
        spec("addtag", None, Some("addtag"), true),
        spec("alloc", None, Some("alloc"), true),
        spec("type", None, Some("type"), true),
        spec("stripes", Some('i'), Some("stripes"), true),
        spec("stripesize", Some('I'), Some("stripesize"), true),
        spec("reportformat", None, Some("reportformat"), true),
        spec("snapshot", Some('s'), Some("snapshot"), false),
    ];
    let p = match parse_cmdline("lvcreate", args, &extra, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    if let Some(t) = p.value("type")
        && t != "linear"
        && t != "striped"
    {
        say!(
            err,
            "  Only linear volumes are supported here (--type {t})."
        );
        return Ok(5);
    }
    let (size, extents) = (p.value("size"), p.value("extents"));
    if size.is_some() && extents.is_some() {
        say!(err, "  Please specify either size or extents (not both).");
        return Ok(3);
    }
    if size.is_none() && extents.is_none() {
        return Ok(no_matching_syntax("lvcreate", err));
    }
    let Some(target) = p.args.first() else {
        return Ok(no_matching_syntax("lvcreate", err));
    };
    let (vg, path_lv) = match parse_lv_arg(node, target) {
        LvArg::Vg(vg) => (vg, None),
        LvArg::Lv(vg, lv) => (vg, Some(lv)),
        LvArg::Bad(a) => {
            say!(err, "  Volume group name \"{a}\" has invalid characters.");
            say!(err, "  Run `lvcreate --help' for more information.");
            return Ok(3);
        }
    };
    if !valid_name(&vg) {
        say!(err, "  Volume group name \"{vg}\" has invalid characters.");
        say!(err, "  Run `lvcreate --help' for more information.");
        return Ok(3);
    }
    if p.has("snapshot") {
        return snapshot(node, &p, vg, path_lv, out, err);
    }
    let name = p.value("name").map(str::to_string).or(path_lv);
    if let Some(n) = &name
        && !valid_name(n)
    {
        say!(err, "  Logical volume name \"{n}\" is invalid.");
        say!(err, "  Run `lvcreate --help' for more information.");
        return Ok(3);
    }
    let size_bytes = match size {
        Some(s) => match parse_size(s) {
            Some((None | Some('+'), b)) => Some(b),
            _ => {
                say!(err, "  Invalid argument for --size: {s}");
                say!(err, "  Error during parsing of command line.");
                return Ok(3);
            }
        },
        None => None,
    };

    let _lock = node.lock()?;
    if !vg_exists(node, &vg) {
        vg_not_found(&vg, err);
        return Ok(5);
    }
    let lvs = list_lvs(node, &vg)?;
    let name = new_name(&lvs, name);
    if exists(&lvs, &vg, &name, err) {
        return Ok(5);
    }
    let (total, free) = vg_extents(node, &vg)?;
    let want = match (size_bytes, extents) {
        (Some(b), _) => {
            let e = extents_of(b);
            if b % EXTENT != 0 {
                say!(
                    out,
                    "  Rounding up size to full physical extent {}",
                    display_long(e.saturating_mul(EXTENT))
                );
            }
            e
        }
        (None, Some(x)) => match parse_extents(x, total, free) {
            Some((None | Some('+'), e)) => e,
            _ => {
                say!(err, "  Invalid argument for --extents: {x}");
                say!(err, "  Error during parsing of command line.");
                return Ok(3);
            }
        },
        (None, None) => return Ok(no_matching_syntax("lvcreate", err)),
    };
    if want == 0 {
        say!(
            err,
            "  Unable to create new logical volume with no extents."
        );
        return Ok(5);
    }
    if insufficient(&vg, free, want, err) {
        return Ok(5);
    }
    let path = vg_dir(node, &vg).join(&name);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .on(FileOp::Create, &path)?;
    f.set_len(want.saturating_mul(EXTENT))
        .on(FileOp::Size, &path)?;
    fsim::forget(node, &format!("/dev/{vg}/{name}"))?;
    say!(out, "  Logical volume \"{name}\" created.");
    Ok(0)
}

/// `lvcreate -s -L SIZE [-n NAME] VG/ORIGIN`: a classic snapshot. Its file is a sparse copy of
/// the origin as it is now (what reading the snapshot device gives); it takes SIZE (the
/// copy-on-write area) from the VG, and is refused when the VG has less free.
fn snapshot(
    node: &Node,
    p: &Parsed,
    vg: String,
    origin: Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let Some(origin) = origin else {
        say!(
            err,
            "  Please specify a logical volume to act as the snapshot origin."
        );
        return Ok(3);
    };
    let Some(size) = p.value("size") else {
        // Without a size LVM makes a thin snapshot, which needs a thin pool.
        say!(
            err,
            "  Please specify either size or extents with snapshots."
        );
        return Ok(3);
    };
    let Some((None | Some('+'), cow)) = parse_size(size) else {
        say!(err, "  Invalid argument for --size: {size}");
        say!(err, "  Error during parsing of command line.");
        return Ok(3);
    };
    let _lock = node.lock()?;
    if !vg_exists(node, &vg) {
        vg_not_found(&vg, err);
        return Ok(5);
    }
    let lvs = list_lvs(node, &vg)?;
    let mut st = node.load_lvm()?;
    if !lvs.iter().any(|(n, _)| *n == origin) {
        say!(err, "  Failed to find logical volume \"{vg}/{origin}\"");
        return Ok(5);
    }
    if st.snapshots.contains_key(&format!("{vg}/{origin}")) {
        say!(err, "  Snapshots of snapshots are not supported.");
        return Ok(5);
    }
    let name = new_name(&lvs, p.value("name").map(str::to_string));
    if !valid_name(&name) {
        say!(err, "  Logical volume name \"{name}\" is invalid.");
        say!(err, "  Run `lvcreate --help' for more information.");
        return Ok(3);
    }
    if exists(&lvs, &vg, &name, err) {
        return Ok(5);
    }
    let want = extents_of(cow);
    if cow % EXTENT != 0 {
        say!(
            out,
            "  Rounding up size to full physical extent {}",
            display_long(want.saturating_mul(EXTENT))
        );
    }
    let (_, free) = vg_extents(node, &vg)?;
    if insufficient(&vg, free, want, err) {
        return Ok(5);
    }
    let from = vg_dir(node, &vg).join(&origin);
    let to = vg_dir(node, &vg).join(&name);
    // A sparse copy: the stand-in's disks are mostly holes, as a fresh LV reads zeros.
    if let Err(e) = copy_sparse(&from, &to, "--reflink=auto") {
        let _ = std::fs::remove_file(&to);
        return Err(e);
    }
    st.snapshots.insert(
        format!("{vg}/{name}"),
        super::state::SnapRecord {
            origin,
            cow_bytes: want.saturating_mul(EXTENT),
        },
    );
    node.save_lvm(&st)?;
    say!(out, "  Logical volume \"{name}\" created.");
    Ok(0)
}

/// `cp --sparse=always REFLINK FROM TO`: a volume's file copied with its holes kept.
fn copy_sparse(from: &std::path::Path, to: &std::path::Path, reflink: &str) -> Result<()> {
    let copied = std::process::Command::new("cp")
        .args(["--sparse=always", reflink, "--"])
        .arg(from)
        .arg(to)
        .output()
        .on(FileOp::Create, to)?;
    if copied.status.success() {
        return Ok(());
    }
    Err(FileError::new(
        FileOp::Create,
        to,
        std::io::Error::other(String::from_utf8_lossy(&copied.stderr).trim().to_string()),
    )
    .into())
}

/// `lvconvert --merge VG/SNAPSHOT`: a classic snapshot merged back into its origin. With the
/// origin closed, LVM 2.03 starts the merge, polls it to the end and removes the snapshot
/// (`Merging of volume VG/SNAP started.`, then `VG/ORIGIN: Merged: 100.00%`): here the
/// snapshot's file (the origin as it was) is written over the origin, and the snapshot goes.
/// An origin in use (a running guest's disk) delays the merge to its next activation, which
/// the stand-in never has: it says what LVM says and leaves both as they are.
pub(crate) fn lvconvert(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let extra = [
        spec("merge", None, Some("merge"), false),
        spec("background", Some('b'), Some("background"), false),
        spec("interval", Some('i'), Some("interval"), true),
    ];
    let p = match parse_cmdline("lvconvert", args, &extra, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let [arg] = p.args.as_slice() else {
        return Ok(no_matching_syntax("lvconvert", err));
    };
    if !p.has("merge") {
        // Only the merge is modelled; every other conversion is refused as unknown syntax.
        return Ok(no_matching_syntax("lvconvert", err));
    }
    let (vg, lv) = match parse_lv_arg(node, arg) {
        LvArg::Lv(vg, lv) => (vg, lv),
        LvArg::Vg(_) | LvArg::Bad(_) => {
            say!(err, "  \"{arg}\": Invalid path for Logical Volume.");
            return Ok(5);
        }
    };
    let _lock = node.lock()?;
    if !vg_exists(node, &vg) {
        vg_not_found(&vg, err);
        return Ok(5);
    }
    if !list_lvs(node, &vg)?.iter().any(|(n, _)| *n == lv) {
        say!(err, "  Failed to find logical volume \"{vg}/{lv}\"");
        return Ok(5);
    }
    let mut st = node.load_lvm()?;
    let key = format!("{vg}/{lv}");
    let Some(snap) = st.snapshots.get(&key).cloned() else {
        say!(
            err,
            "  Command on LV {vg}/{lv} does not accept LV type linear."
        );
        say!(err, "  Command not permitted on LV {vg}/{lv}.");
        return Ok(5);
    };
    let origin = snap.origin;
    if super::xl::devices_in_use(node)?.contains(&format!("/dev/{vg}/{origin}")) {
        say!(out, "  Delaying merge since origin is open.");
        say!(
            out,
            "  Merging of snapshot {vg}/{lv} will occur on next activation of {vg}/{origin}."
        );
        return Ok(0);
    }
    say!(out, "  Merging of volume {vg}/{lv} started.");
    let from = vg_dir(node, &vg).join(&lv);
    let to = vg_dir(node, &vg).join(&origin);
    let size = std::fs::metadata(&to).on(FileOp::Size, &to)?.len();
    // Written in place (the origin keeps its size and identity), sparse as the copy was taken.
    copy_sparse(&from, &to, "--reflink=never")?;
    // A snapshot of a smaller origin (grown since) leaves the rest as it was.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&to)
        .on(FileOp::Create, &to)?;
    if f.metadata().on(FileOp::Size, &to)?.len() < size {
        f.set_len(size).on(FileOp::Size, &to)?;
    }
    std::fs::remove_file(&from).on(FileOp::Remove, &from)?;
    // The origin's filesystem is the snapshot's again (its record, when it has one).
    let mut recs = node.load_fs()?;
    if let Some(rec) = recs.remove(&format!("/dev/{vg}/{lv}")) {
        recs.insert(format!("/dev/{vg}/{origin}"), rec);
        node.save_fs(&recs)?;
    }
    st.snapshots.remove(&key);
    node.save_lvm(&st)?;
    say!(out, "  {vg}/{origin}: Merged: 100.00%");
    Ok(0)
}

/// `lvextend ARGS...`.
pub(crate) fn lvextend(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let extra = [
        spec("size", Some('L'), Some("size"), true),
        spec("extents", Some('l'), Some("extents"), true),
        spec("resizefs", Some('r'), Some("resizefs"), false),
        spec("nofsck", Some('n'), Some("nofsck"), false),
        spec("force", Some('f'), Some("force"), false),
        spec("alloc", None, Some("alloc"), true),
        spec("stripes", Some('i'), Some("stripes"), true),
        spec("stripesize", Some('I'), Some("stripesize"), true),
        spec("nosync", None, Some("nosync"), false),
        spec("fs", None, Some("fs"), true),
        spec("fsmode", None, Some("fsmode"), true),
        spec("reportformat", None, Some("reportformat"), true),
    ];
    let p = match parse_cmdline("lvextend", args, &extra, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let (size, extents) = (p.value("size"), p.value("extents"));
    if size.is_some() && extents.is_some() {
        say!(err, "  Please specify either size or extents but not both.");
        return Ok(3);
    }
    let Some(target) = p.args.first() else {
        return Ok(no_matching_syntax("lvextend", err));
    };
    if size.is_none() && extents.is_none() {
        return Ok(no_matching_syntax("lvextend", err));
    }
    let (vg, lv) = match parse_lv_arg(node, target) {
        LvArg::Lv(vg, lv) => (vg, lv),
        LvArg::Vg(_) | LvArg::Bad(_) => {
            say!(err, "  Please provide a volume group name");
            say!(err, "  Run `lvextend --help' for more information.");
            return Ok(3);
        }
    };
    let size_arg = match size {
        Some(s) => match parse_size(s) {
            Some((Some('-'), _)) => {
                say!(err, "  Negative sign not permitted - use lvreduce.");
                return Ok(3);
            }
            Some(v) => Some(v),
            None => {
                say!(err, "  Invalid argument for --size: {s}");
                say!(err, "  Error during parsing of command line.");
                return Ok(3);
            }
        },
        None => None,
    };

    let _lock = node.lock()?;
    if !vg_exists(node, &vg) {
        vg_not_found(&vg, err);
        return Ok(5);
    }
    let Some((_, cur_len)) = list_lvs(node, &vg)?.into_iter().find(|(n, _)| *n == lv) else {
        say!(err, "  Failed to find logical volume \"{vg}/{lv}\"");
        return Ok(5);
    };
    let cur = extents_of(cur_len);
    let (total, free) = vg_extents(node, &vg)?;
    let new = match (size_arg, extents) {
        (Some((sign, bytes)), _) => {
            let target_bytes = if sign == Some('+') {
                cur.saturating_mul(EXTENT).saturating_add(bytes)
            } else {
                bytes
            };
            let e = extents_of(target_bytes);
            if target_bytes % EXTENT != 0 {
                say!(
                    out,
                    "  Rounding size to boundary between physical extents: {}.",
                    display_long(e.saturating_mul(EXTENT))
                );
            }
            e
        }
        (None, Some(x)) => match parse_extents(x, total, free) {
            Some((Some('-'), _)) => {
                say!(err, "  Negative sign not permitted - use lvreduce.");
                return Ok(3);
            }
            Some((Some('+'), e)) => cur.saturating_add(e),
            Some((_, e)) => e,
            None => {
                say!(err, "  Invalid argument for --extents: {x}");
                say!(err, "  Error during parsing of command line.");
                return Ok(3);
            }
        },
        (None, None) => return Ok(no_matching_syntax("lvextend", err)),
    };
    if new == cur {
        say!(
            err,
            "  New size ({new} extents) matches existing size ({cur} extents)."
        );
        return Ok(5);
    }
    if new < cur {
        say!(
            err,
            "  New size given ({new} extents) not larger than existing size ({cur} extents)"
        );
        return Ok(5);
    }
    let delta = new - cur;
    if delta > free {
        say!(
            err,
            "  Insufficient free space: {delta} extents needed, but only {free} available"
        );
        return Ok(5);
    }
    let mut st = node.load_lvm()?;
    if let Some(snap) = st.snapshots.get_mut(&format!("{vg}/{lv}")) {
        // A snapshot grows its copy-on-write area; what it reads stays the origin's.
        snap.cow_bytes = new.saturating_mul(EXTENT);
        node.save_lvm(&st)?;
        resized(out, &vg, &lv, cur, new);
        return Ok(0);
    }
    let device = format!("/dev/{vg}/{lv}");
    fsim::remember_size(node, &device, cur_len)?;
    let resizefs = p.has("resizefs");
    if resizefs && !p.has("nofsck") {
        let check: Vec<String> = vec!["-f".into(), "-p".into(), device.clone()];
        if fsim::e2fsck_locked(node, &check, out, err)? != 0 {
            say!(err, "  Filesystem check failed.");
            return Ok(5);
        }
    }
    let path = vg_dir(node, &vg).join(&lv);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .on(FileOp::Open, &path)?;
    f.set_len(new.saturating_mul(EXTENT))
        .on(FileOp::Resize, &path)?;
    resized(out, &vg, &lv, cur, new);
    if resizefs {
        let args: Vec<String> = vec![device];
        if fsim::resize2fs_locked(node, &args, out, err)? != 0 {
            say!(err, "  Filesystem resize failed.");
            return Ok(5);
        }
    }
    Ok(0)
}

/// lvextend's report of a volume grown from `cur` to `new` extents.
fn resized(out: &mut dyn Write, vg: &str, lv: &str, cur: u64, new: u64) {
    say!(
        out,
        "  Size of logical volume {vg}/{lv} changed from {} ({cur} extents) to {} ({new} extents).",
        display_long(cur.saturating_mul(EXTENT)),
        display_long(new.saturating_mul(EXTENT))
    );
    say!(out, "  Logical volume {vg}/{lv} successfully resized.");
}

/// `lvremove ARGS...`; without `-f`/`-y` it asks on stdin, as LVM does.
pub(crate) fn lvremove(
    node: &Node,
    args: &[String],
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let extra = [
        spec("force", Some('f'), Some("force"), false),
        spec("select", Some('S'), Some("select"), true),
        spec("nohistory", None, Some("nohistory"), false),
        spec("reportformat", None, Some("reportformat"), true),
    ];
    let p = match parse_cmdline("lvremove", args, &extra, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    if p.args.is_empty() {
        return Ok(no_matching_syntax("lvremove", err));
    }
    let ask = !p.has("force") && !p.has("yes");
    let mut answers = BufReader::new(input);
    let _lock = node.lock()?;
    let in_use = super::xl::devices_in_use(node)?;
    let mut rc = 0;
    for a in &p.args {
        let targets: Vec<(String, String)> = match parse_lv_arg(node, a) {
            LvArg::Bad(a) => {
                say!(err, "  \"{a}\": Invalid path for Logical Volume.");
                rc = 5;
                continue;
            }
            LvArg::Vg(vg) => {
                if !vg_exists(node, &vg) {
                    vg_not_found(&vg, err);
                    rc = 5;
                    continue;
                }
                list_lvs(node, &vg)?
                    .into_iter()
                    .map(|(n, _)| (vg.clone(), n))
                    .collect()
            }
            LvArg::Lv(vg, lv) => {
                if !vg_exists(node, &vg) {
                    vg_not_found(&vg, err);
                    rc = 5;
                    continue;
                }
                if !list_lvs(node, &vg)?.iter().any(|(n, _)| *n == lv) {
                    say!(err, "  Failed to find logical volume \"{vg}/{lv}\"");
                    rc = 5;
                    continue;
                }
                vec![(vg, lv)]
            }
        };
        // An origin takes its snapshots with it, as LVM removes them first.
        let mut with_snaps = Vec::new();
        for (vg, lv) in targets {
            for snap in snapshots_of(node, &vg, &lv)? {
                if !with_snaps.contains(&(vg.clone(), snap.clone())) {
                    with_snaps.push((vg.clone(), snap));
                }
            }
            if !with_snaps.contains(&(vg.clone(), lv.clone())) {
                with_snaps.push((vg, lv));
            }
        }
        for (vg, lv) in with_snaps {
            let device = format!("/dev/{vg}/{lv}");
            if in_use.contains(&device) {
                say!(err, "  Logical volume {vg}/{lv} in use.");
                rc = 5;
                continue;
            }
            if ask {
                let _ = write!(
                    out,
                    "Do you really want to remove active logical volume {vg}/{lv}? [y/n]: "
                );
                let _ = out.flush();
                let mut line = String::new();
                let yes = answers.read_line(&mut line).is_ok()
                    && line.trim_start().starts_with(['y', 'Y']);
                if !yes {
                    say!(err, "  Logical volume {vg}/{lv} not removed.");
                    rc = 5;
                    continue;
                }
            }
            let path = vg_dir(node, &vg).join(&lv);
            std::fs::remove_file(&path).on(FileOp::Remove, &path)?;
            fsim::forget(node, &device)?;
            let mut st = node.load_lvm()?;
            if st.snapshots.remove(&format!("{vg}/{lv}")).is_some() {
                node.save_lvm(&st)?;
            }
            say!(out, "  Logical volume \"{lv}\" successfully removed.");
        }
    }
    Ok(rc)
}
