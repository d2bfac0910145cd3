//! The `xentop` stand-in, batch mode only (`-b`): the header and one row per domain in
//! xentop's format and widths (Xen 4.17 `tools/xentop/xentop.c`), `-f` whole names, `-n` each
//! vif's `NetN RX: ... TX: ...` line, `-x` each disk's `VBD` line, `-i` iterations, `-d` delay.
//!
//! A simulated domain does nothing, so its counters are made up from the time since its
//! current incarnation started (`started_at`, set again on every create and reboot): they grow
//! while it exists and start again from zero when it is re-created, like a real domain's. Per
//! second: 50 ms of CPU per vCPU, 20 000 bytes sent into each vif (what the guest receives,
//! xentop's `NETTX`) in 40 packets, 5 000 bytes received from it (the guest sends) in 20
//! packets, and per disk 3 reads of 8 sectors and 7 writes of 16 sectors.

use super::error::Result;
use super::opts::{self, spec};
use super::state::{Domain, Node};
use std::io::Write;

/// Domain-0 as xentop shows it here (fixed: the stand-in's dom0 does no work).
const DOM0_CPU_SECS: u64 = 11794;
const DOM0_MEMKB: u64 = 2048 * 1024;
const DOM0_VCPUS: u32 = 4;
/// The simulated host's memory, for the MEM(%) columns.
const HOST_MEMKB: u64 = 64 * 1024 * 1024;

/// The counters of one row, at an instant.
struct Row {
    name: String,
    state: String,
    cpu_secs: u64,
    mem_kb: u64,
    maxmem_kb: Option<u64>,
    vcpus: u32,
    /// Per vif: (rx bytes, rx packets, tx bytes, tx packets), the host's view.
    nets: Vec<(u64, u64, u64, u64)>,
    /// Per disk: (reads, writes, read sectors, write sectors).
    vbds: Vec<(u64, u64, u64, u64)>,
}

impl Row {
    /// KiB the host sent into (`tx`) or received from the domain's vifs.
    fn net(&self, tx: bool) -> u64 {
        self.nets
            .iter()
            .map(|n| if tx { n.2 } else { n.0 })
            .sum::<u64>()
            / 1024
    }
    fn vbd(&self, i: usize) -> u64 {
        self.vbds.iter().map(|v| [v.0, v.1, v.2, v.3][i]).sum()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// xentop's six state letters (`dsbcpr`) from xl's (`rbpsrd`-style) ones.
fn xentop_state(xl: &str) -> String {
    let s: Vec<char> = xl.chars().chain(std::iter::repeat('-')).take(6).collect();
    let flag = |on: bool, c: char| if on { c } else { '-' };
    [
        flag(s[5] == 'd', 'd'),
        flag(s[3] == 's', 's'),
        flag(s[1] == 'b', 'b'),
        flag(s[3] == 's' && s[4] == 'c', 'c'),
        flag(s[2] == 'p', 'p'),
        flag(s[0] == 'r', 'r'),
    ]
    .iter()
    .collect()
}

fn guest_row(d: &Domain, now_ms: u64) -> Row {
    let ms = now_ms.saturating_sub(d.started_at.saturating_mul(1000));
    let vcpus = d.config.avail_vcpus.max(1);
    let secs = ms / 1000;
    Row {
        name: d.name.clone(),
        state: xentop_state(&d.state),
        cpu_secs: ms * 50 * u64::from(vcpus) / 1000 / 1000,
        mem_kb: d.config.target_memkb,
        maxmem_kb: Some(d.config.max_memkb),
        vcpus,
        nets: d
            .config
            .nics
            .iter()
            .map(|_| (ms * 5, ms / 50, ms * 20, ms / 25))
            .collect(),
        vbds: d
            .config
            .disks
            .iter()
            .map(|_| (secs * 3, secs * 7, secs * 24, secs * 112))
            .collect(),
    }
}

fn dom0_row() -> Row {
    Row {
        name: "Domain-0".into(),
        state: "-----r".into(),
        cpu_secs: DOM0_CPU_SECS,
        mem_kb: DOM0_MEMKB,
        maxmem_kb: None,
        vcpus: DOM0_VCPUS,
        nets: Vec::new(),
        vbds: Vec::new(),
    }
}

/// INT_FIELD_WIDTH: the digits of `n`.
fn digits(n: u64) -> usize {
    n.to_string().len()
}

/// Runs `xentop ARGS...`.
pub(crate) fn run(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let specs = [
        spec("batch", Some('b'), Some("batch"), false),
        spec("iterations", Some('i'), Some("iterations"), true),
        spec("delay", Some('d'), Some("delay"), true),
        spec("full-name", Some('f'), Some("full-name"), false),
        spec("networks", Some('n'), Some("networks"), false),
        spec("vbds", Some('x'), Some("vbds"), false),
    ];
    let p = match opts::parse(args, &specs, false) {
        Ok(p) if p.args.is_empty() => p,
        _ => {
            say!(
                err,
                "Usage: xentop [OPTION]\n(the gitvps stand-in knows -b -i -d -f -n -x only)"
            );
            return Ok(1);
        }
    };
    if !p.has("batch") {
        say!(
            err,
            "xentop: the gitvps stand-in runs in batch mode only (-b)"
        );
        return Ok(1);
    }
    // atoi: garbage is 0, and 0 iterations loop like xentop's do-while with --iterations.
    let iterations = p
        .value("iterations")
        .map_or(0, |v| v.parse::<u64>().unwrap_or(0));
    let delay = p
        .value("delay")
        .map_or(3, |v| v.parse::<u64>().unwrap_or(3).max(1));
    let (full, nets, vbds) = (p.has("full-name"), p.has("networks"), p.has("vbds"));
    let mut done = 0u64;
    loop {
        let domains = {
            let _lock = node.lock()?;
            node.load_domains()?
        };
        let now = now_ms();
        let mut rows: Vec<Row> = std::iter::once(dom0_row())
            .chain(domains.iter().map(|d| guest_row(d, now)))
            .collect();
        rows.sort_by_key(|r| r.name.to_ascii_lowercase());
        print_rows(&rows, full, nets, vbds, out);
        let _ = out.flush();
        done += 1;
        if iterations != 0 && done >= iterations {
            return Ok(0);
        }
        std::thread::sleep(std::time::Duration::from_secs(delay));
    }
}

fn print_rows(rows: &[Row], full: bool, nets: bool, vbds: bool, out: &mut dyn Write) {
    // reset_field_widths, then adjust_field_widths for every domain.
    let mut w_name = 10;
    let (mut w_tx, mut w_rx, mut w_rd, mut w_wr, mut w_rs, mut w_ws) = (8, 8, 8, 8, 10, 10);
    for r in rows {
        if full {
            w_name = w_name.max(r.name.len());
        }
        w_tx = w_tx.max(digits(r.net(true) + 1));
        w_rx = w_rx.max(digits(r.net(false) + 1));
        w_rd = w_rd.max(digits(r.vbd(0) + 1));
        w_wr = w_wr.max(digits(r.vbd(1) + 1));
        w_rs = w_rs.max(digits(r.vbd(2) + 1));
        w_ws = w_ws.max(digits(r.vbd(3) + 1));
    }
    let header = [
        ("NAME", w_name),
        ("STATE", 6),
        ("CPU(sec)", 10),
        ("CPU(%)", 6),
        ("MEM(k)", 10),
        ("MEM(%)", 6),
        ("MAXMEM(k)", 10),
        ("MAXMEM(%)", 9),
        ("VCPUS", 5),
        ("NETS", 4),
        ("NETTX(k)", w_tx),
        ("NETRX(k)", w_rx),
        ("VBDS", 4),
        ("VBD_OO", 8),
        ("VBD_RD", w_rd),
        ("VBD_WR", w_wr),
        ("VBD_RSECT", w_rs),
        ("VBD_WSECT", w_ws),
        ("SSID", 4),
    ]
    .iter()
    .map(|(h, w)| format!("{h:>w$}"))
    .collect::<Vec<_>>()
    .join(" ");
    say!(out, "{header}");
    for r in rows {
        let name = if full {
            format!("{:>w_name$}", r.name)
        } else {
            format!("{:>10.10}", r.name)
        };
        let pct = |kb: u64| kb as f64 / HOST_MEMKB as f64 * 100.0;
        let (maxmem, maxpct) = match r.maxmem_kb {
            Some(m) => (format!("{m:>10}"), format!("{:>9.1}", pct(m))),
            None => (format!("{:>10}", "no limit"), format!("{:>9}", "n/a")),
        };
        say!(
            out,
            "{name} {} {:>10} {:>6.1} {:>10} {:>6.1} {maxmem} {maxpct} {:>5} {:>4} {:>w_tx$} {:>w_rx$} {:>4} {:>8} {:>w_rd$} {:>w_wr$} {:>w_rs$} {:>w_ws$} {:>4}",
            r.state,
            r.cpu_secs,
            0.0,
            r.mem_kb,
            pct(r.mem_kb),
            r.vcpus,
            r.nets.len(),
            r.net(true),
            r.net(false),
            r.vbds.len(),
            0,
            r.vbd(0),
            r.vbd(1),
            r.vbd(2),
            r.vbd(3),
            0
        );
        if nets {
            for (i, n) in r.nets.iter().enumerate() {
                say!(
                    out,
                    "Net{i} RX: {:>8}bytes {:>8}pkts {:>8}err {:>8}drop  TX: {:>8}bytes {:>8}pkts {:>8}err {:>8}drop",
                    n.0,
                    n.1,
                    0,
                    0,
                    n.2,
                    n.3,
                    0,
                    0
                );
            }
        }
        if vbds {
            for (i, v) in r.vbds.iter().enumerate() {
                // A stand-in disk is xvda, xvdb, ...: major 202, minor 16 per disk.
                let dev = 51712 + 16 * i;
                say!(
                    out,
                    "VBD BlkBack {dev:>4} [ca:{:>2x}]  OO: {:>8}   RD: {:>8}   WR: {:>8}   RSECT: {:>10}   WSECT: {:>10}",
                    16 * i,
                    0,
                    v.0,
                    v.1,
                    v.2,
                    v.3
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_put_each_counter_under_its_header() {
        let row = Row {
            name: "a-rather-long-vps-name".into(),
            state: xentop_state("-b----"),
            cpu_secs: 7,
            mem_kb: 1024,
            maxmem_kb: Some(2048),
            vcpus: 2,
            nets: vec![(5 * 1024, 1, 20 * 1024, 2)],
            vbds: vec![(3, 4, 24, 64)],
        };
        let mut out = Vec::new();
        print_rows(&[dom0_row(), row], true, true, false, &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let head: Vec<&str> = lines[0].split_whitespace().collect();
        let dom0: Vec<&str> = lines[1].split_whitespace().collect();
        let guest: Vec<&str> = lines[2].split_whitespace().collect();
        // Domain-0's `no limit` is two words; the guest's row has one word per column.
        assert_eq!(dom0.len(), head.len() + 1, "{text}");
        assert_eq!(guest.len(), head.len(), "{text}");
        let col = |h: &str| guest[head.iter().position(|x| *x == h).unwrap_or(0)];
        assert_eq!(col("NAME"), "a-rather-long-vps-name");
        assert_eq!(col("STATE"), "--b---");
        assert_eq!((col("NETTX(k)"), col("NETRX(k)")), ("20", "5"), "{text}");
        assert_eq!(
            (
                col("VBD_RD"),
                col("VBD_WR"),
                col("VBD_RSECT"),
                col("VBD_WSECT")
            ),
            ("3", "4", "24", "64")
        );
        assert!(
            lines[3].starts_with("Net0 RX:     5120bytes        1pkts"),
            "{text}"
        );
        // Without -f a name is cut to 10 characters.
        let mut out = Vec::new();
        print_rows(&[dom0_row()], false, false, false, &mut out);
        assert!(
            String::from_utf8(out)
                .unwrap_or_default()
                .contains("\n  Domain-0 -----r ")
        );
    }
}
