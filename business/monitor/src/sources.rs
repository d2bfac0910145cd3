//! Parsers for what a node prints about its guests and itself, each in the real tool's format:
//! `xentop -b`, `xl list`, `/proc/net/dev`, `/sys/block/*/stat`, QMP `query-blockstats`, a tap's
//! `statistics/`, cgroup `cpu.stat`, `/proc/PID/stat`, `/proc/stat`, `/proc/meminfo`,
//! `/proc/loadavg`, `vgs` and `df`.
//!
//! Network counters are read on the host, where they count the other way round: what a
//! guest's vif or tap *receives* on the host is what the guest *sent*. The parsers return the
//! host's view as printed; [`crate::report`] turns it round into the guest's.
//!
//! A line a parser does not know, or a number that is not one, is a [`SourceError`] naming the
//! source and the line: never a panic, never a silent zero.

use std::collections::BTreeMap;

/// What a node printed cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// One line is not in the source's format.
    #[error("{what}: line {line}: {problem} (`{excerpt}`)")]
    Line {
        /// The source (`xentop`, `/proc/stat`, ...).
        what: &'static str,
        /// Its line, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
        /// The line's first characters.
        excerpt: String,
    },
    /// The document as a whole is wrong (empty, a field missing).
    #[error("{what}: {problem}")]
    Document {
        /// The source.
        what: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// At most this many characters of a bad line go into an error.
const EXCERPT: usize = 60;

fn bad_line(
    what: &'static str,
    line: usize,
    text: &str,
    problem: impl Into<String>,
) -> SourceError {
    SourceError::Line {
        what,
        line,
        problem: problem.into(),
        excerpt: text.trim().chars().take(EXCERPT).collect(),
    }
}

fn bad_doc(what: &'static str, problem: impl Into<String>) -> SourceError {
    SourceError::Document {
        what,
        problem: problem.into(),
    }
}

/// A decimal counter, or the reason it is not one.
fn num(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{s}` is not a whole number"));
    }
    s.parse::<u64>()
        .map_err(|_| format!("`{s}` is larger than a 64-bit counter"))
}

/// One domain's row of `xentop -b`, with its `Net` lines when run with `-n`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XentopRow {
    /// The domain name (all of it with `-f`; xentop cuts it to 10 characters otherwise).
    pub name: String,
    /// `CPU(sec)`: whole seconds of CPU time, all vCPUs.
    pub cpu_secs: u64,
    /// `NETTX(k)`: KiB the host sent into the domain's vifs (the guest received them).
    pub net_tx_kib: u64,
    /// `NETRX(k)`: KiB the host received from the domain's vifs (the guest sent them).
    pub net_rx_kib: u64,
    /// `VBD_RD`: read requests on its virtual block devices.
    pub vbd_rd: u64,
    /// `VBD_WR`: write requests.
    pub vbd_wr: u64,
    /// `VBD_RSECT`: 512-byte sectors read.
    pub vbd_rsect: u64,
    /// `VBD_WSECT`: 512-byte sectors written.
    pub vbd_wsect: u64,
    /// The `NetN RX: ... TX: ...` lines (`-n`), in the host's view like `NETTX`/`NETRX`.
    pub nets: Vec<IfCounters>,
}

/// Byte and packet counters of one network interface, as the host counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfCounters {
    /// Bytes the host received on it.
    pub rx_bytes: u64,
    /// Packets the host received on it.
    pub rx_packets: u64,
    /// Bytes the host sent on it.
    pub tx_bytes: u64,
    /// Packets the host sent on it.
    pub tx_packets: u64,
}

/// The columns of xentop the collector reads.
const XENTOP_NEEDS: [&str; 8] = [
    "CPU(sec)",
    "NETTX(k)",
    "NETRX(k)",
    "VBD_RD",
    "VBD_WR",
    "VBD_RSECT",
    "VBD_WSECT",
    "STATE",
];

/// Parses `xentop -b -i 1 [-f] [-n]`: the header (`NAME STATE CPU(sec) ...`), one row per
/// domain (Domain-0 included), and under each row its `Net` lines with `-n`. The lines of `-v`,
/// `-x` and tmem (`VCPUs(sec):`, `VBD `, `Tmem:`) are known and skipped (not `-v`'s continuation lines: the collector does not ask for them).
pub fn xentop(text: &str) -> Result<Vec<XentopRow>, SourceError> {
    const WHAT: &str = "xentop";
    let mut header: Option<Vec<&str>> = None;
    let mut rows: Vec<XentopRow> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let first = t.split_whitespace().next().unwrap_or("");
        if first == "NAME" {
            let h: Vec<&str> = t.split_whitespace().collect();
            if let Some(missing) = XENTOP_NEEDS.iter().find(|c| !h.contains(c)) {
                return Err(bad_line(
                    WHAT,
                    n,
                    t,
                    format!("the header has no {missing} column"),
                ));
            }
            header = Some(h);
            continue;
        }
        if t.starts_with("Net") && t.contains(" RX:") {
            let net = xentop_net(t).map_err(|p| bad_line(WHAT, n, t, p))?;
            match rows.last_mut() {
                Some(r) => r.nets.push(net),
                None => return Err(bad_line(WHAT, n, t, "a Net line before any domain")),
            }
            continue;
        }
        if t.starts_with("VCPUs(sec):") || t.starts_with("VBD ") || t.starts_with("Tmem:") {
            continue;
        }
        let Some(h) = &header else {
            return Err(bad_line(WHAT, n, t, "a line before the NAME header"));
        };
        rows.push(xentop_row(h, t).map_err(|p| bad_line(WHAT, n, t, p))?);
    }
    if header.is_none() {
        return Err(bad_doc(
            WHAT,
            "no NAME header: this is not xentop's batch output",
        ));
    }
    Ok(rows)
}

fn xentop_row(h: &[&str], t: &str) -> Result<XentopRow, String> {
    // `MAXMEM(k)` of Domain-0 prints as `no limit`: one column in two words.
    let mut tok: Vec<&str> = Vec::new();
    let mut words = t.split_whitespace().peekable();
    while let Some(w) = words.next() {
        if w == "no" && words.peek() == Some(&"limit") {
            words.next();
            tok.push("no-limit");
        } else {
            tok.push(w);
        }
    }
    if tok.len() < h.len() {
        return Err(format!(
            "{} columns where the header has {}",
            tok.len(),
            h.len()
        ));
    }
    // NAME is the first column and the only one that may hold spaces.
    let name_words = tok.len() - h.len() + 1;
    let name = tok[..name_words].join(" ");
    let col = |c: &str| -> Result<u64, String> {
        let i = h.iter().position(|x| *x == c).unwrap_or(0);
        let v = tok.get(name_words - 1 + i).copied().unwrap_or("");
        num(v).map_err(|e| format!("{c}: {e}"))
    };
    let state_i = h.iter().position(|x| *x == "STATE").unwrap_or(0);
    let state = tok.get(name_words - 1 + state_i).copied().unwrap_or("");
    if state.len() != 6 || !state.bytes().all(|b| b"dsbcpr-".contains(&b)) {
        return Err(format!("STATE `{state}` is not six state letters"));
    }
    Ok(XentopRow {
        name,
        cpu_secs: col("CPU(sec)")?,
        net_tx_kib: col("NETTX(k)")?,
        net_rx_kib: col("NETRX(k)")?,
        vbd_rd: col("VBD_RD")?,
        vbd_wr: col("VBD_WR")?,
        vbd_rsect: col("VBD_RSECT")?,
        vbd_wsect: col("VBD_WSECT")?,
        nets: Vec::new(),
    })
}

/// `Net0 RX: 1234bytes 12pkts 0err 0drop  TX: 5678bytes 34pkts 0err 0drop`.
fn xentop_net(t: &str) -> Result<IfCounters, String> {
    let (rx, tx) = t
        .split_once(" RX:")
        .and_then(|(_, r)| r.split_once("TX:"))
        .ok_or("not `NetN RX: ... TX: ...`")?;
    let side = |s: &str| -> Result<(u64, u64), String> {
        let mut bytes = None;
        let mut pkts = None;
        for w in s.split_whitespace() {
            if let Some(v) = w.strip_suffix("bytes") {
                bytes = Some(num(v)?);
            } else if let Some(v) = w.strip_suffix("pkts") {
                pkts = Some(num(v)?);
            } else if let Some(v) = w.strip_suffix("err").or_else(|| w.strip_suffix("drop")) {
                num(v)?;
            } else {
                return Err(format!("`{w}` is not a counter"));
            }
        }
        Ok((
            bytes.ok_or("no bytes counter")?,
            pkts.ok_or("no packet counter")?,
        ))
    };
    let (rx_bytes, rx_packets) = side(rx)?;
    let (tx_bytes, tx_packets) = side(tx)?;
    Ok(IfCounters {
        rx_bytes,
        rx_packets,
        tx_bytes,
        tx_packets,
    })
}

/// Parses `xl list`: each domain's name and id (the header first, Domain-0 included).
pub fn xl_list(text: &str) -> Result<BTreeMap<String, u64>, SourceError> {
    const WHAT: &str = "xl list";
    let mut out = BTreeMap::new();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        Some((_, h)) if h.split_whitespace().take(2).eq(["Name", "ID"]) => {}
        Some((i, h)) => return Err(bad_line(WHAT, i + 1, h, "not the `Name ID Mem` header")),
        None => return Err(bad_doc(WHAT, "empty: not even a header")),
    }
    for (i, line) in lines {
        let tok: Vec<&str> = line.split_whitespace().collect();
        // Name (may hold spaces), ID, Mem, VCPUs, State, Time(s).
        if tok.len() < 6 {
            return Err(bad_line(WHAT, i + 1, line, "fewer than six columns"));
        }
        let k = tok.len() - 5;
        let id = num(tok[k]).map_err(|p| bad_line(WHAT, i + 1, line, format!("ID: {p}")))?;
        out.insert(tok[..k].join(" "), id);
    }
    Ok(out)
}

/// Parses `/proc/net/dev`: every interface's byte and packet counters.
pub fn net_dev(text: &str) -> Result<BTreeMap<String, IfCounters>, SourceError> {
    const WHAT: &str = "/proc/net/dev";
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if n <= 2 {
            // `Inter-|   Receive ...` and ` face |bytes    packets ...`.
            if !line.contains('|') {
                return Err(bad_line(WHAT, n, line, "not the two-line header"));
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| bad_line(WHAT, n, line, "no `name:`"))?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() != 16 {
            return Err(bad_line(
                WHAT,
                n,
                line,
                format!("{} counters, not 16", f.len()),
            ));
        }
        let v = |k: usize| num(f[k]).map_err(|p| bad_line(WHAT, n, line, p));
        out.insert(
            name.trim().to_owned(),
            IfCounters {
                rx_bytes: v(0)?,
                rx_packets: v(1)?,
                tx_bytes: v(8)?,
                tx_packets: v(9)?,
            },
        );
    }
    if out.is_empty() && text.lines().count() < 2 {
        return Err(bad_doc(WHAT, "no header"));
    }
    Ok(out)
}

/// A disk's cumulative I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockStat {
    /// Read operations completed.
    pub read_ops: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Write operations completed.
    pub write_ops: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

/// Parses `/sys/block/DEV/stat` (11, 15 or 17 fields: reads, merges, sectors, ticks, writes,
/// ...); sectors are 512 bytes whatever the device's block size.
pub fn sys_block_stat(text: &str) -> Result<BlockStat, SourceError> {
    const WHAT: &str = "/sys/block/*/stat";
    let line = text.trim();
    let f: Vec<&str> = line.split_whitespace().collect();
    if ![11, 15, 17].contains(&f.len()) || text.trim().lines().count() != 1 {
        return Err(bad_line(
            WHAT,
            1,
            line,
            "not one line of 11, 15 or 17 counters",
        ));
    }
    let v = |k: usize| num(f[k]).map_err(|p| bad_line(WHAT, 1, line, p));
    Ok(BlockStat {
        read_ops: v(0)?,
        read_bytes: v(2)?.saturating_mul(512),
        write_ops: v(4)?,
        write_bytes: v(6)?.saturating_mul(512),
    })
}

/// Parses QMP's reply to `query-blockstats` (`{"return": [{"device": ..., "stats": {...}}]}`):
/// the sum over the guest's block devices. Only each device's own `stats` count: its `parent`
/// (the image file under the format layer) sees the same I/O again.
pub fn qmp_blockstats(text: &str) -> Result<BlockStat, SourceError> {
    const WHAT: &str = "QMP query-blockstats";
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).map_err(|e| bad_doc(WHAT, format!("not JSON: {e}")))?;
    let Some(list) = v.get("return").and_then(|r| r.as_array()) else {
        return Err(bad_doc(WHAT, "no `return` list"));
    };
    let mut out = BlockStat::default();
    for (i, dev) in list.iter().enumerate() {
        let stats = dev
            .get("stats")
            .ok_or_else(|| bad_doc(WHAT, format!("device {i} has no `stats`")))?;
        let field = |k: &str| {
            stats
                .get(k)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad_doc(WHAT, format!("device {i}: `{k}` is not a counter")))
        };
        out.read_bytes = out.read_bytes.saturating_add(field("rd_bytes")?);
        out.write_bytes = out.write_bytes.saturating_add(field("wr_bytes")?);
        out.read_ops = out.read_ops.saturating_add(field("rd_operations")?);
        out.write_ops = out.write_ops.saturating_add(field("wr_operations")?);
    }
    Ok(out)
}

/// Parses `KEY VALUE` lines of `/sys/class/net/TAP/statistics/{rx,tx}_{bytes,packets}` (the
/// collect script prints each file's name and content on one line). All four are needed.
pub fn sys_net_stats(text: &str) -> Result<IfCounters, SourceError> {
    const WHAT: &str = "/sys/class/net/*/statistics";
    let mut out = IfCounters::default();
    let mut seen = 0u8;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad_line(WHAT, i + 1, line, "not `name value`"))?;
        let v = num(v.trim()).map_err(|p| bad_line(WHAT, i + 1, line, p))?;
        let (slot, bit) = match k {
            "rx_bytes" => (&mut out.rx_bytes, 1),
            "rx_packets" => (&mut out.rx_packets, 2),
            "tx_bytes" => (&mut out.tx_bytes, 4),
            "tx_packets" => (&mut out.tx_packets, 8),
            _ => {
                return Err(bad_line(
                    WHAT,
                    i + 1,
                    line,
                    format!("unknown counter `{k}`"),
                ));
            }
        };
        *slot = v;
        seen |= bit;
    }
    if seen != 15 {
        return Err(bad_doc(
            WHAT,
            "rx_bytes, rx_packets, tx_bytes and tx_packets are all needed",
        ));
    }
    Ok(out)
}

/// Parses a cgroup v2 `cpu.stat`: `usage_usec`, the CPU time of every process in the group.
pub fn cgroup_cpu_usec(text: &str) -> Result<u64, SourceError> {
    const WHAT: &str = "cpu.stat";
    for (i, line) in text.lines().enumerate() {
        let mut w = line.split_whitespace();
        match (w.next(), w.next(), w.next()) {
            (Some("usage_usec"), Some(v), None) => {
                return num(v).map_err(|p| bad_line(WHAT, i + 1, line, p));
            }
            (Some(_), Some(_), None) | (None, _, _) => {}
            _ => return Err(bad_line(WHAT, i + 1, line, "not `name value`")),
        }
    }
    Err(bad_doc(WHAT, "no usage_usec"))
}

/// What `/proc/PID/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// User CPU time, in clock ticks.
    pub utime: u64,
    /// System CPU time, in clock ticks.
    pub stime: u64,
    /// When it started, in clock ticks after boot.
    pub starttime: u64,
}

/// Parses `/proc/PID/stat` (the command name in parentheses may hold spaces and parentheses:
/// the fields start after the last `)`).
pub fn proc_pid_stat(text: &str) -> Result<ProcStat, SourceError> {
    const WHAT: &str = "/proc/PID/stat";
    let line = text.trim();
    let (_, rest) = line
        .rsplit_once(')')
        .ok_or_else(|| bad_line(WHAT, 1, line, "no `(command)`"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is f[0]; utime is field 14, stime 15, starttime 22.
    if f.len() < 20 {
        return Err(bad_line(WHAT, 1, line, "fewer than 22 fields"));
    }
    let v = |k: usize| num(f[k]).map_err(|p| bad_line(WHAT, 1, line, p));
    Ok(ProcStat {
        utime: v(11)?,
        stime: v(12)?,
        starttime: v(19)?,
    })
}

/// The host's CPU time from `/proc/stat`'s `cpu` line, in clock ticks, and its boot time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCpu {
    /// Ticks spent doing something (all but idle and iowait).
    pub busy: u64,
    /// All ticks (user, nice, system, idle, iowait, irq, softirq, steal; guest time is
    /// already in user and nice).
    pub total: u64,
    /// `btime`: the boot time, seconds since the epoch.
    pub btime: Option<u64>,
}

/// Parses `/proc/stat` (its `cpu` and `btime` lines; the others are skipped).
pub fn proc_stat(text: &str) -> Result<HostCpu, SourceError> {
    const WHAT: &str = "/proc/stat";
    let mut cpu = None;
    let mut btime = None;
    for (i, line) in text.lines().enumerate() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("cpu") => {
                let f: Vec<u64> = w
                    .take(8)
                    .map(num)
                    .collect::<Result<_, _>>()
                    .map_err(|p| bad_line(WHAT, i + 1, line, p))?;
                if f.len() < 4 {
                    return Err(bad_line(WHAT, i + 1, line, "fewer than four times"));
                }
                let total = f.iter().fold(0u64, |a, x| a.saturating_add(*x));
                let idle = f[3].saturating_add(f.get(4).copied().unwrap_or(0));
                cpu = Some((total.saturating_sub(idle), total));
            }
            Some("btime") => {
                let v = w.next().unwrap_or("");
                btime = Some(num(v).map_err(|p| bad_line(WHAT, i + 1, line, p))?);
            }
            _ => {}
        }
    }
    let (busy, total) = cpu.ok_or_else(|| bad_doc(WHAT, "no `cpu` line"))?;
    Ok(HostCpu { busy, total, btime })
}

/// Memory in use from `/proc/meminfo`, in bytes: `MemTotal` less `MemAvailable`.
pub fn meminfo_used(text: &str) -> Result<u64, SourceError> {
    const WHAT: &str = "/proc/meminfo";
    let mut total = None;
    let mut avail = None;
    for (i, line) in text.lines().enumerate() {
        let Some((k, v)) = line.split_once(':') else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(bad_line(WHAT, i + 1, line, "not `Name: value`"));
        };
        let slot = match k {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut avail,
            _ => continue,
        };
        let kib = v.trim().strip_suffix("kB").map(str::trim).unwrap_or("");
        *slot = Some(num(kib).map_err(|p| bad_line(WHAT, i + 1, line, p))?);
    }
    match (total, avail) {
        (Some(t), Some(a)) => Ok(t.saturating_sub(a).saturating_mul(1024)),
        _ => Err(bad_doc(WHAT, "MemTotal and MemAvailable are both needed")),
    }
}

/// The 1-minute load average from `/proc/loadavg`, in thousandths (no float on the way).
pub fn loadavg_milli(text: &str) -> Result<u64, SourceError> {
    const WHAT: &str = "/proc/loadavg";
    let line = text.trim();
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 5 || text.trim().lines().count() != 1 {
        return Err(bad_line(
            WHAT,
            1,
            line,
            "not `1min 5min 15min run/total lastpid`",
        ));
    }
    let (int, frac) = f[0].split_once('.').unwrap_or((f[0], ""));
    if frac.len() > 3 {
        return Err(bad_line(WHAT, 1, line, "more than three decimals"));
    }
    let int = num(int).map_err(|p| bad_line(WHAT, 1, line, p))?;
    let frac_milli = if frac.is_empty() {
        0
    } else {
        num(frac).map_err(|p| bad_line(WHAT, 1, line, p))? * 10u64.pow(3 - frac.len() as u32)
    };
    Ok(int.saturating_mul(1000).saturating_add(frac_milli))
}

/// A file or command that prints one whole number (a pid, `getconf CLK_TCK`).
pub fn number(what: &'static str, text: &str) -> Result<u64, SourceError> {
    let line = text.trim();
    if line.lines().count() != 1 {
        return Err(bad_doc(what, "not one line"));
    }
    num(line).map_err(|p| bad_line(what, 1, line, p))
}

/// Free bytes of a volume group from `vgs --noheadings --units b --nosuffix -o vg_free VG`.
pub fn vgs_free(text: &str) -> Result<u64, SourceError> {
    number("vgs", text)
}

/// Free bytes for an unprivileged user from `df -P -B1 DIR` (`Available`, the fourth column).
pub fn df_free(text: &str) -> Result<u64, SourceError> {
    const WHAT: &str = "df";
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    match lines.next() {
        Some(h) if h.starts_with("Filesystem") => {}
        Some(h) => return Err(bad_line(WHAT, 1, h, "not df's `Filesystem` header")),
        None => return Err(bad_doc(WHAT, "empty")),
    }
    let line = lines
        .next()
        .ok_or_else(|| bad_doc(WHAT, "no file system line"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() < 6 || lines.next().is_some() {
        return Err(bad_line(
            WHAT,
            2,
            line,
            "not one `fs size used avail use% mount` line",
        ));
    }
    num(f[3]).map_err(|p| bad_line(WHAT, 2, line, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real xentop 4.17 batch output (`xentop -b -i 1 -f -n`), widths as xentop pads them.
    const XENTOP: &str = "      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID
  Domain-0 -----r      11794    0.0    2097152   25.0   no limit       n/a     4    0        0        0    0        0        0        0          0          0    0
     xen02 --b---        312    0.0    1048576   12.5    1048576      12.5     2    1   204801    51201    1        0    12000    34000     960000    2720000    0
Net0 RX: 52429312bytes    40001pkts        0err        0drop  TX: 209716224bytes   160002pkts        0err        0drop
Windows7 (Dev) --b---      92470    0.0    8388600    1.6    8389632       1.6     4    0        0        0    1        0    93779   452880    4923585   12252390    0
";

    #[test]
    fn xentop_rows_and_net_lines() {
        let rows = xentop(XENTOP);
        let Ok(rows) = rows else { panic!("{rows:?}") };
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].name, "Domain-0");
        assert_eq!(rows[0].cpu_secs, 11794);
        let x = &rows[1];
        assert_eq!(
            (x.name.as_str(), x.cpu_secs, x.net_tx_kib, x.net_rx_kib),
            ("xen02", 312, 204801, 51201)
        );
        assert_eq!(
            (x.vbd_rd, x.vbd_wr, x.vbd_rsect, x.vbd_wsect),
            (12000, 34000, 960000, 2720000)
        );
        assert_eq!(
            x.nets,
            vec![IfCounters {
                rx_bytes: 52429312,
                rx_packets: 40001,
                tx_bytes: 209716224,
                tx_packets: 160002
            }]
        );
        // A name with spaces (xentop -f) keeps them.
        assert_eq!(rows[2].name, "Windows7 (Dev)");
        assert_eq!(rows[2].vbd_wsect, 12252390);
    }

    #[test]
    fn xentop_garbage_is_an_error_naming_the_line() {
        for (text, line) in [
            ("hello world\n", 1),
            (&XENTOP.replace("   312 ", " 3x2 ") as &str, 3),
            (&XENTOP.replace("--b---", "-bogus-") as &str, 3),
            ("      NAME  STATE\n", 1),
            ("", 0),
            (
                &XENTOP.replace("Net0 RX: 52429312bytes", "Net0 RX: many") as &str,
                4,
            ),
            (
                "Net0 RX: 1bytes 1pkts 0err 0drop  TX: 1bytes 1pkts 0err 0drop\n",
                1,
            ),
        ] {
            match xentop(text) {
                Err(SourceError::Line { line: l, .. }) => assert_eq!(l, line, "{text}"),
                Err(SourceError::Document { .. }) => assert_eq!(line, 0, "{text}"),
                Ok(r) => panic!("accepted {text:?}: {r:?}"),
            }
        }
        // A row cut short.
        let head = XENTOP.lines().next().unwrap_or_default();
        assert!(xentop(&format!("{head}\n     xen02 --b---        312\n")).is_err());
    }

    #[test]
    fn xl_list_names_and_ids() {
        let text = "Name                                        ID   Mem VCPUs\tState\tTime(s)\nDomain-0                                     0  2048     4     r-----   11794.3\nxen02                                        7  1024     2     -b----      12.0\n";
        let Ok(m) = xl_list(text) else { panic!() };
        assert_eq!(m.get("xen02"), Some(&7));
        assert_eq!(m.get("Domain-0"), Some(&0));
        assert!(xl_list("garbage\n").is_err());
        assert!(xl_list("Name ID Mem\nxen02 x 1 1 -b---- 1.0\n").is_err());
        assert!(xl_list("").is_err());
    }

    /// Real /proc/net/dev of a dom0 with one guest vif.
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   17608     208    0    0    0     0          0         0    17608     208    0    0    0     0       0          0
  eth0: 734522319  612345    0   12    0     0          0       104 98765432   234567    0    0    0     0       0          0
vif7.0: 52429312   40001    0    0    0     0          0         0 209716224   160002    0    0    0     0       0          0
";

    #[test]
    fn net_dev_counts_each_interface() {
        let Ok(m) = net_dev(NET_DEV) else { panic!() };
        let Some(v) = m.get("vif7.0") else { panic!() };
        // The host's view: the guest sent the 52429312 bytes the host received.
        assert_eq!(
            (v.rx_bytes, v.rx_packets, v.tx_bytes, v.tx_packets),
            (52429312, 40001, 209716224, 160002)
        );
        assert_eq!(m.len(), 3);
        assert!(net_dev("garbage\n").is_err());
        assert!(net_dev(&NET_DEV.replace("40001", "-1")).is_err());
        assert!(net_dev(&format!("{NET_DEV}vif8.0: 1 2 3\n")).is_err());
    }

    #[test]
    fn sys_block_stat_in_bytes() {
        // Linux 5.5+: 17 fields.
        let text = "   12000     3456   960000     7890    34000     1234  2720000    45678        0    23456    53568     0     0     0     0     0     0\n";
        let Ok(s) = sys_block_stat(text) else {
            panic!()
        };
        assert_eq!(
            s,
            BlockStat {
                read_ops: 12000,
                read_bytes: 960000 * 512,
                write_ops: 34000,
                write_bytes: 2720000 * 512
            }
        );
        assert!(sys_block_stat("1 2 3\n").is_err());
        assert!(sys_block_stat(&text.replace("12000", "x")).is_err());
    }

    #[test]
    fn qmp_blockstats_sums_devices_not_parents() {
        let text = r#"{"return": [{"device": "", "node-name": "disk0", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend", "stats": {"unmap_operations": 0, "unmap_merged": 0, "flush_total_time_ns": 1297354, "wr_highest_offset": 1073741312, "wr_total_time_ns": 1234567, "failed_wr_operations": 0, "failed_rd_operations": 0, "wr_merged": 0, "wr_bytes": 4096000, "timed_stats": [], "failed_unmap_operations": 0, "failed_flush_operations": 0, "account_invalid": true, "rd_total_time_ns": 7654321, "invalid_unmap_operations": 0, "flush_operations": 12, "wr_operations": 1000, "unmap_bytes": 0, "rd_merged": 0, "rd_bytes": 20480000, "unmap_total_time_ns": 0, "invalid_flush_operations": 0, "account_failed": true, "idle_time_ns": 1234, "rd_operations": 5000, "invalid_wr_operations": 0, "invalid_rd_operations": 0}, "parent": {"node-name": "file0", "stats": {"wr_bytes": 4096000, "rd_bytes": 20480000, "wr_operations": 1000, "rd_operations": 5000}}}, {"device": "", "node-name": "disk1", "stats": {"wr_bytes": 1, "rd_bytes": 2, "wr_operations": 3, "rd_operations": 4}}]}"#;
        let Ok(s) = qmp_blockstats(text) else {
            panic!()
        };
        assert_eq!(
            s,
            BlockStat {
                read_ops: 5004,
                read_bytes: 20480002,
                write_ops: 1003,
                write_bytes: 4096001
            }
        );
        assert!(qmp_blockstats("{\"error\": {\"class\": \"GenericError\"}}").is_err());
        assert!(qmp_blockstats("not json").is_err());
        assert!(qmp_blockstats(r#"{"return": [{"stats": {"rd_bytes": -1}}]}"#).is_err());
    }

    #[test]
    fn tap_statistics() {
        let Ok(c) = sys_net_stats("rx_bytes 100\nrx_packets 2\ntx_bytes 300\ntx_packets 4\n")
        else {
            panic!()
        };
        assert_eq!(
            (c.rx_bytes, c.rx_packets, c.tx_bytes, c.tx_packets),
            (100, 2, 300, 4)
        );
        assert!(sys_net_stats("rx_bytes 100\n").is_err());
        assert!(
            sys_net_stats("rx_bytes 1\nrx_packets 2\ntx_bytes 3\ntx_packets 4\ncollisions 0\n")
                .is_err()
        );
        assert!(sys_net_stats("rx_bytes\n").is_err());
    }

    #[test]
    fn cgroup_and_proc_cpu_time() {
        let stat = "usage_usec 123456789\nuser_usec 100000000\nsystem_usec 23456789\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
        assert_eq!(cgroup_cpu_usec(stat), Ok(123456789));
        assert!(cgroup_cpu_usec("user_usec 1\n").is_err());
        assert!(cgroup_cpu_usec("usage_usec x\n").is_err());
        // A QEMU whose command name holds a space and a parenthesis.
        let pid = "4242 (qemu-system-x86 )) S 1 4241 4241 0 -1 4194560 123 0 0 0 1500 700 0 0 20 0 3 0 98765 2147483648 65536 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            proc_pid_stat(pid),
            Ok(ProcStat {
                utime: 1500,
                stime: 700,
                starttime: 98765
            })
        );
        assert!(proc_pid_stat("4242 (qemu) S 1 2\n").is_err());
        assert!(proc_pid_stat("garbage").is_err());
    }

    #[test]
    fn host_cpu_memory_load_and_storage() {
        let stat = "cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0\ncpu0 1393280 32966 572056 13343292 6130 0 17875 0 23933 0\nintr 1462898 0\nctxt 2323\nbtime 1769000000\nprocesses 1234\n";
        assert_eq!(
            proc_stat(stat),
            Ok(HostCpu {
                busy: 10132153 + 290696 + 3084719 + 25195,
                total: 10132153 + 290696 + 3084719 + 46828483 + 16683 + 25195,
                btime: Some(1769000000)
            })
        );
        assert!(proc_stat("intr 1\n").is_err());
        assert!(proc_stat("cpu  a b c d\n").is_err());
        let mem = "MemTotal:       16316412 kB\nMemFree:         1234567 kB\nMemAvailable:    8158206 kB\nBuffers:          123456 kB\n";
        assert_eq!(meminfo_used(mem), Ok((16316412 - 8158206) * 1024));
        assert!(meminfo_used("MemTotal: 1 kB\n").is_err());
        assert!(meminfo_used("MemTotal: x kB\nMemAvailable: 1 kB\n").is_err());
        assert_eq!(loadavg_milli("0.52 0.58 0.59 1/467 12345\n"), Ok(520));
        assert_eq!(loadavg_milli("12.5 0.58 0.59 1/467 12345\n"), Ok(12500));
        assert!(loadavg_milli("0.52\n").is_err());
        assert!(loadavg_milli("-1.00 0 0 1/1 1\n").is_err());
        assert!(loadavg_milli("0.1234 0 0 1/1 1\n").is_err());
        assert_eq!(vgs_free("  1099511627776\n"), Ok(1099511627776));
        assert!(vgs_free("  1T\n").is_err());
        assert!(vgs_free("1\n2\n").is_err());
        let df = "Filesystem        1-blocks        Used   Available Capacity Mounted on\n/dev/sda1     105089261568 42035704832 57665269760      43% /\n";
        assert_eq!(df_free(df), Ok(57665269760));
        assert!(df_free("garbage\n").is_err());
        assert!(
            df_free(
                "Filesystem 1-blocks Used Available Capacity Mounted on\n/dev/sda1 1 2 x 4% /\n"
            )
            .is_err()
        );
    }
}
