//! The collect document a node prints in one exec (`reconciler/planner/node/collect.sh`): its
//! frame, and the guests' counters and the host's gauges read from its sections.
//!
//! # The frame
//!
//! ```text
//! @@collect 1 xen            the version and the hypervisor
//! @@begin xentop             a section: a source's output, as the tool printed it
//! ...
//! @@end 0                    the source's exit status
//! @@begin pidstat xen02      a section about one guest
//! ...
//! @@end 0
//! @@done                     the script ran to its end
//! ```
//!
//! Anything else (a line outside a section, an unknown section, a marker inside a body, no
//! `@@done`) makes the whole document unreadable: the node's samples are then missing, never
//! guessed. A source that failed on its own (one guest's QMP, the host's `vgs`) costs only what
//! it reports, and is named in [`NodeReport::problems`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use model::values::Hypervisor;

use crate::counters::{Counters, Incarnation};
use crate::sources::{self, HostCpu, IfCounters, SourceError};

/// The frame version this crate reads.
pub const VERSION: u32 = 1;

/// The sections a collect document may hold, and whether each names a guest.
const SECTIONS: [(&str, bool); 13] = [
    ("xl-list", false),
    ("xentop", false),
    ("stat", false),
    ("meminfo", false),
    ("loadavg", false),
    ("vgs", false),
    ("df", false),
    ("clk", false),
    ("kvm", true),
    ("pidstat", true),
    ("cpustat", true),
    ("blockstats", true),
    ("tap", true),
];

/// At most this many characters of a failed source's output go into a message.
const TAIL: usize = 200;

/// One section of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// The source (`xentop`, `stat`, ...).
    pub name: String,
    /// The guest it is about, for per-guest sections.
    pub guest: Option<String>,
    /// The source's exit status.
    pub status: i32,
    /// What it printed.
    pub body: String,
}

/// Why a collect document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The first line is not the collect header.
    #[error("the node's answer does not start with `@@collect {VERSION} HYPERVISOR` (`{excerpt}`)")]
    NoHeader {
        /// The first line's first characters.
        excerpt: String,
    },
    /// Another frame version.
    #[error(
        "the node's collect script speaks version {found}; this gitvps reads version {VERSION}"
    )]
    Version {
        /// The version it printed.
        found: String,
    },
    /// A line breaks the frame.
    #[error("line {line} of the node's answer: {problem}")]
    Frame {
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The document ends before `@@done`.
    #[error("the node's answer ends before `@@done`: the collect script was cut short")]
    Truncated,
    /// A source every sample of the node needs failed.
    #[error("`{section}` failed on the node (exit {status}): {tail}")]
    Failed {
        /// The section.
        section: String,
        /// Its exit status.
        status: i32,
        /// The end of what it printed.
        tail: String,
    },
    /// A source every sample needs is not in the document.
    #[error("the node's answer has no `{0}` section")]
    Missing(&'static str),
    /// A source every sample needs printed something else than its format.
    #[error("`{section}` on the node")]
    Source {
        /// The section.
        section: &'static str,
        /// What is wrong in it.
        #[source]
        source: SourceError,
    },
}

fn excerpt(s: &str, n: usize) -> String {
    let t = s.trim();
    let skip = t.chars().count().saturating_sub(n);
    t.chars().skip(skip).collect()
}

/// Splits a collect document into its hypervisor and sections.
pub fn frames(text: &str) -> Result<(Hypervisor, Vec<Section>), ReportError> {
    let mut lines = text.lines().enumerate();
    let first = lines.next().map_or("", |(_, l)| l);
    let mut head = first.split_whitespace();
    if head.next() != Some("@@collect") {
        return Err(ReportError::NoHeader {
            excerpt: first.chars().take(60).collect(),
        });
    }
    let version = head.next().unwrap_or("");
    if version != VERSION.to_string() {
        return Err(ReportError::Version {
            found: version.to_owned(),
        });
    }
    let hv = match head.next() {
        Some("xen") => Hypervisor::Xen,
        Some("kvm") => Hypervisor::Kvm,
        other => {
            return Err(ReportError::Frame {
                line: 1,
                problem: format!("unknown hypervisor `{}`", other.unwrap_or("")),
            });
        }
    };
    let frame = |line: usize, problem: String| ReportError::Frame {
        line: line + 1,
        problem,
    };
    let mut sections = Vec::new();
    let mut open: Option<Section> = None;
    for (i, line) in lines {
        if !line.starts_with("@@") {
            match &mut open {
                Some(s) => {
                    s.body.push_str(line);
                    s.body.push('\n');
                    continue;
                }
                None => return Err(frame(i, "a line outside any section".into())),
            }
        }
        let mut w = line.split_whitespace();
        match (w.next(), open.take()) {
            (Some("@@begin"), None) => {
                let name = w.next().unwrap_or("");
                let guest = w.next().map(str::to_owned);
                let Some((_, per_guest)) = SECTIONS.iter().find(|(n, _)| *n == name) else {
                    return Err(frame(i, format!("unknown section `{name}`")));
                };
                if *per_guest != guest.is_some() || w.next().is_some() {
                    return Err(frame(i, format!("`{name}` with the wrong arguments")));
                }
                open = Some(Section {
                    name: name.to_owned(),
                    guest,
                    status: 0,
                    body: String::new(),
                });
            }
            (Some("@@end"), Some(mut s)) => {
                let status = w.next().unwrap_or("");
                s.status = status
                    .parse()
                    .map_err(|_| frame(i, format!("exit status `{status}` is not a number")))?;
                sections.push(s);
            }
            (Some("@@done"), None) => return Ok((hv, sections)),
            (tag, _) => {
                return Err(frame(
                    i,
                    format!(
                        "unexpected `{}`",
                        tag.unwrap_or("").chars().take(40).collect::<String>()
                    ),
                ));
            }
        }
    }
    Err(ReportError::Truncated)
}

/// One guest's reading: which domain, and its counters in the guest's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestReading {
    /// The domain it was read from.
    pub incarnation: Incarnation,
    /// Its cumulative counters.
    pub counters: Counters,
}

/// The host's own figures: CPU time (a counter, turned into a gauge against the previous
/// reading with [`cpu_permille`]), memory in use, load and free storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRaw {
    /// `/proc/stat`.
    pub cpu: HostCpu,
    /// Bytes of memory in use.
    pub mem_used: u64,
    /// The 1-minute load, in thousandths.
    pub load_milli: u64,
    /// Free bytes in the node's storage.
    pub storage_free: u64,
}

/// What one collect document says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// The node's hypervisor.
    pub hypervisor: Hypervisor,
    /// Guests by domain name (Domain-0 excluded), each read whole or not at all.
    pub guests: BTreeMap<String, GuestReading>,
    /// The host's figures, when every source of them answered.
    pub host: Option<HostRaw>,
    /// Sources that failed without failing the node: what they cost, as text for the log.
    pub problems: Vec<String>,
}

/// Reads a collect document.
pub fn read(text: &str) -> Result<NodeReport, ReportError> {
    let (hv, sections) = frames(text)?;
    let mut problems = Vec::new();
    let host = match host(&sections) {
        Ok(h) => Some(h),
        Err(e) => {
            problems.push(format!(
                "node figures not read: {}",
                model::diag::error_chain(&e)
            ));
            None
        }
    };
    let guests = match hv {
        Hypervisor::Xen => xen(&sections)?,
        Hypervisor::Kvm => kvm(&sections, host.and_then(|h| h.cpu.btime), &mut problems)?,
    };
    Ok(NodeReport {
        hypervisor: hv,
        guests,
        host,
        problems,
    })
}

/// The one section named `name` (not about a guest) that succeeded.
fn need<'a>(sections: &'a [Section], name: &'static str) -> Result<&'a str, ReportError> {
    let s = sections
        .iter()
        .find(|s| s.name == name && s.guest.is_none())
        .ok_or(ReportError::Missing(name))?;
    if s.status != 0 {
        return Err(ReportError::Failed {
            section: name.to_owned(),
            status: s.status,
            tail: excerpt(&s.body, TAIL),
        });
    }
    Ok(&s.body)
}

fn src<T>(section: &'static str, r: Result<T, SourceError>) -> Result<T, ReportError> {
    r.map_err(|source| ReportError::Source { section, source })
}

fn host(sections: &[Section]) -> Result<HostRaw, ReportError> {
    let storage_free = if sections.iter().any(|s| s.name == "vgs") {
        src("vgs", sources::vgs_free(need(sections, "vgs")?))?
    } else {
        src("df", sources::df_free(need(sections, "df")?))?
    };
    Ok(HostRaw {
        cpu: src("stat", sources::proc_stat(need(sections, "stat")?))?,
        mem_used: src("meminfo", sources::meminfo_used(need(sections, "meminfo")?))?,
        load_milli: src(
            "loadavg",
            sources::loadavg_milli(need(sections, "loadavg")?),
        )?,
        storage_free,
    })
}

/// The guest's view of a host-side interface: what the host received, the guest sent.
fn guest_net(c: &mut Counters, host: &IfCounters) {
    c.net_rx_bytes = c.net_rx_bytes.saturating_add(host.tx_bytes);
    c.net_rx_packets = c.net_rx_packets.saturating_add(host.tx_packets);
    c.net_tx_bytes = c.net_tx_bytes.saturating_add(host.rx_bytes);
    c.net_tx_packets = c.net_tx_packets.saturating_add(host.rx_packets);
}

fn xen(sections: &[Section]) -> Result<BTreeMap<String, GuestReading>, ReportError> {
    let ids = src("xl-list", sources::xl_list(need(sections, "xl-list")?))?;
    let rows = src("xentop", sources::xentop(need(sections, "xentop")?))?;
    let mut out = BTreeMap::new();
    for r in rows {
        if r.name == "Domain-0" {
            continue;
        }
        let mut c = Counters {
            cpu_ms: r.cpu_secs.saturating_mul(1000),
            disk_read_ops: r.vbd_rd,
            disk_write_ops: r.vbd_wr,
            disk_read_bytes: r.vbd_rsect.saturating_mul(512),
            disk_write_bytes: r.vbd_wsect.saturating_mul(512),
            ..Counters::default()
        };
        if r.nets.is_empty() {
            // Without `-n`: KiB, and no packets.
            guest_net(
                &mut c,
                &IfCounters {
                    rx_bytes: r.net_rx_kib.saturating_mul(1024),
                    tx_bytes: r.net_tx_kib.saturating_mul(1024),
                    ..IfCounters::default()
                },
            );
        }
        for n in &r.nets {
            guest_net(&mut c, n);
        }
        let incarnation = Incarnation {
            domain_id: ids.get(&r.name).copied(),
            started: None,
        };
        out.insert(
            r.name,
            GuestReading {
                incarnation,
                counters: c,
            },
        );
    }
    Ok(out)
}

fn kvm(
    sections: &[Section],
    btime: Option<u64>,
    problems: &mut Vec<String>,
) -> Result<BTreeMap<String, GuestReading>, ReportError> {
    let clk = src(
        "clk",
        sources::number("getconf CLK_TCK", need(sections, "clk")?),
    )?
    .max(1);
    let mut by_guest: BTreeMap<&str, Vec<&Section>> = BTreeMap::new();
    for s in sections {
        if let Some(g) = &s.guest {
            by_guest.entry(g).or_default().push(s);
        }
    }
    let mut out = BTreeMap::new();
    for (guest, secs) in by_guest {
        match kvm_guest(&secs, clk, btime) {
            Ok(r) => {
                out.insert(guest.to_owned(), r);
            }
            Err(e) => problems.push(format!(
                "{guest}: not sampled: {}",
                model::diag::error_chain(&e)
            )),
        }
    }
    Ok(out)
}

fn kvm_guest(secs: &[&Section], clk: u64, btime: Option<u64>) -> Result<GuestReading, ReportError> {
    let get = |name: &'static str| -> Result<Option<&str>, ReportError> {
        match secs.iter().find(|s| s.name == name) {
            None => Ok(None),
            Some(s) if s.status != 0 => Err(ReportError::Failed {
                section: name.to_owned(),
                status: s.status,
                tail: excerpt(&s.body, TAIL),
            }),
            Some(s) => Ok(Some(&s.body)),
        }
    };
    let pid_text = get("kvm")?.ok_or(ReportError::Missing("kvm"))?;
    let pid = src("kvm", sources::number("qemu.pid", pid_text))?;
    let ps = src(
        "pidstat",
        sources::proc_pid_stat(get("pidstat")?.ok_or(ReportError::Missing("pidstat"))?),
    )?;
    let cpu_ms = match get("cpustat")? {
        Some(t) => src("cpustat", sources::cgroup_cpu_usec(t))? / 1000,
        None => ps.utime.saturating_add(ps.stime).saturating_mul(1000) / clk,
    };
    let disk = src(
        "blockstats",
        sources::qmp_blockstats(get("blockstats")?.ok_or(ReportError::Missing("blockstats"))?),
    )?;
    let mut c = Counters {
        cpu_ms,
        disk_read_bytes: disk.read_bytes,
        disk_write_bytes: disk.write_bytes,
        disk_read_ops: disk.read_ops,
        disk_write_ops: disk.write_ops,
        ..Counters::default()
    };
    // A guest on QEMU's user network has no tap: no network counters.
    if let Some(t) = get("tap")? {
        guest_net(&mut c, &src("tap", sources::sys_net_stats(t))?);
    }
    let started = btime.and_then(|b| {
        let secs = b.checked_add(ps.starttime / clk)?;
        DateTime::<Utc>::from_timestamp(i64::try_from(secs).ok()?, 0)
    });
    Ok(GuestReading {
        incarnation: Incarnation {
            domain_id: Some(pid),
            started,
        },
        counters: c,
    })
}

/// The host's CPU busy share between two readings, in per mille of all its CPUs; `None` when
/// the counters did not grow (a reboot in between, or the same reading twice).
pub fn cpu_permille(prev: &HostCpu, next: &HostCpu) -> Option<u64> {
    let total = next.total.checked_sub(prev.total).filter(|t| *t > 0)?;
    let busy = next.busy.checked_sub(prev.busy)?.min(total);
    u64::try_from(u128::from(busy) * 1000 / u128::from(total)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const XEN: &str = "@@collect 1 xen
@@begin xl-list
Name                                        ID   Mem VCPUs\tState\tTime(s)
Domain-0                                     0  2048     4     r-----   11794.3
xen02                                        7  1024     2     -b----      12.0
@@end 0
@@begin xentop
      NAME  STATE   CPU(sec) CPU(%)     MEM(k) MEM(%)  MAXMEM(k) MAXMEM(%) VCPUS NETS NETTX(k) NETRX(k) VBDS   VBD_OO   VBD_RD   VBD_WR  VBD_RSECT  VBD_WSECT SSID
  Domain-0 -----r      11794    0.0    2097152   25.0   no limit       n/a     4    0        0        0    0        0        0        0          0          0    0
     xen02 --b---        312    0.0    1048576   12.5    1048576      12.5     2    1   204801    51201    1        0    12000    34000     960000    2720000    0
Net0 RX: 52429312bytes    40001pkts        0err        0drop  TX: 209716224bytes   160002pkts        0err        0drop
@@end 0
@@begin stat
cpu  1000 0 500 8000 500 0 0 0 0 0
btime 1769000000
@@end 0
@@begin meminfo
MemTotal:       16316412 kB
MemAvailable:    8158206 kB
@@end 0
@@begin loadavg
0.52 0.58 0.59 1/467 12345
@@end 0
@@begin vgs
  1099511627776
@@end 0
@@done
";

    #[test]
    fn a_xen_document_gives_guests_in_their_own_view() {
        let r = read(XEN);
        let Ok(r) = r else { panic!("{r:?}") };
        assert_eq!(r.hypervisor, Hypervisor::Xen);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        let Some(g) = r.guests.get("xen02") else {
            panic!()
        };
        assert_eq!(r.guests.len(), 1);
        assert_eq!(g.incarnation.domain_id, Some(7));
        // The vif's TX on the host is what the guest received.
        assert_eq!(g.counters.net_rx_bytes, 209716224);
        assert_eq!(g.counters.net_tx_bytes, 52429312);
        assert_eq!(g.counters.net_rx_packets, 160002);
        assert_eq!(g.counters.cpu_ms, 312_000);
        assert_eq!(g.counters.disk_write_bytes, 2720000 * 512);
        let Some(h) = r.host else { panic!() };
        assert_eq!((h.cpu.busy, h.cpu.total), (1500, 10000));
        assert_eq!(h.load_milli, 520);
        assert_eq!(h.storage_free, 1 << 40);
    }

    #[test]
    fn without_net_lines_xentop_kib_are_used() {
        let doc = XEN.replace(
            "Net0 RX: 52429312bytes    40001pkts        0err        0drop  TX: 209716224bytes   160002pkts        0err        0drop\n",
            "",
        );
        let Ok(r) = read(&doc) else { panic!() };
        let Some(g) = r.guests.get("xen02") else {
            panic!()
        };
        assert_eq!(g.counters.net_rx_bytes, 204801 * 1024);
        assert_eq!(g.counters.net_tx_bytes, 51201 * 1024);
    }

    #[test]
    fn a_broken_frame_or_xen_source_fails_the_node() {
        let cases: Vec<(String, &str)> = vec![
            ("garbage\n".into(), "NoHeader"),
            (XEN.replace("@@collect 1", "@@collect 2"), "Version"),
            (XEN.replace("@@done\n", ""), "Truncated"),
            (XEN.replacen("@@end 0\n", "", 1), "Frame"),
            (XEN.replace("@@begin vgs", "stray\n@@begin vgs"), "Frame"),
            (XEN.replace("@@begin loadavg", "@@begin bogus"), "Frame"),
            (
                XEN.replace("@@begin xentop", "@@begin xentop xen02"),
                "Frame",
            ),
            (
                XEN.replace("--b---        312", "--b---        3x2"),
                "Source",
            ),
            (
                XEN.replace("@@end 0\n@@begin stat", "@@end 127\n@@begin stat"),
                "Failed",
            ),
            (
                XEN.replace("@@begin xl-list", "@@begin clk")
                    .replace("Name   ", "100\nName   "),
                "Missing",
            ),
        ];
        for (doc, want) in cases {
            let e = read(&doc);
            let got = format!("{e:?}");
            assert!(got.starts_with(&format!("Err({want}")), "{want}: {got}");
        }
    }

    #[test]
    fn failing_host_sources_cost_only_the_host_figures() {
        let doc = XEN.replace(
            "  1099511627776\n@@end 0",
            "  Volume group \"vg0\" not found\n@@end 5",
        );
        let Ok(r) = read(&doc) else { panic!() };
        assert!(r.host.is_none());
        assert_eq!(r.guests.len(), 1);
        assert!(r.problems[0].contains("vgs"), "{:?}", r.problems);
    }

    const KVM: &str = r#"@@collect 1 kvm
@@begin clk
100
@@end 0
@@begin stat
cpu  1000 0 500 8000 500 0 0 0 0 0
btime 1769000000
@@end 0
@@begin meminfo
MemTotal:       16316412 kB
MemAvailable:    8158206 kB
@@end 0
@@begin loadavg
0.52 0.58 0.59 1/467 12345
@@end 0
@@begin df
Filesystem        1-blocks        Used   Available Capacity Mounted on
/dev/sda1     105089261568 42035704832 57665269760      43% /
@@end 0
@@begin kvm web1
4242
@@end 0
@@begin pidstat web1
4242 (qemu-system-x86) S 1 4241 4241 0 -1 4194560 123 0 0 0 1500 700 0 0 20 0 3 0 98765 2147483648 65536 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0
@@end 0
@@begin blockstats web1
{"return": [{"device": "", "node-name": "disk0", "stats": {"wr_bytes": 4096000, "rd_bytes": 20480000, "wr_operations": 1000, "rd_operations": 5000}}]}
@@end 0
@@begin tap web1
rx_bytes 100
rx_packets 2
tx_bytes 300
tx_packets 4
@@end 0
@@begin kvm web2
4343
@@end 0
@@begin pidstat web2
4343 (qemu-system-x86) S 1 4241 4241 0 -1 4194560 123 0 0 0 1500 700 0 0 20 0 3 0 98765 2147483648 65536 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0
@@end 0
@@begin cpustat web2
usage_usec 123456789
@@end 0
@@begin blockstats web2
gitvps: QMP socket /x/qmp.sock does not answer within 5s
@@end 4
@@done
"#;

    #[test]
    fn a_kvm_document_reads_each_guest_whole_or_not_at_all() {
        let r = read(KVM);
        let Ok(r) = r else { panic!("{r:?}") };
        let Some(g) = r.guests.get("web1") else {
            panic!()
        };
        assert_eq!(g.counters.cpu_ms, 22_000);
        assert_eq!(g.counters.net_rx_bytes, 300);
        assert_eq!(g.counters.net_tx_packets, 2);
        assert_eq!(g.counters.disk_read_ops, 5000);
        assert_eq!(g.incarnation.domain_id, Some(4242));
        assert_eq!(
            g.incarnation.started.map(|t| t.timestamp()),
            Some(1_769_000_000 + 987)
        );
        // web2's QMP did not answer: not sampled (no partial counters), and said so.
        assert!(!r.guests.contains_key("web2"));
        assert!(
            r.problems
                .iter()
                .any(|p| p.contains("web2") && p.contains("QMP")),
            "{:?}",
            r.problems
        );
        assert_eq!(r.host.map(|h| h.storage_free), Some(57665269760));
        // With its cgroup's cpu.stat, that is the CPU time.
        let ok = KVM
            .replace("does not answer within 5s\n@@end 4", "x\n@@end 0")
            .replace("gitvps: QMP socket /x/qmp.sock x", r#"{"return": []}"#);
        let Ok(r) = read(&ok) else { panic!() };
        assert_eq!(
            r.guests.get("web2").map(|g| g.counters.cpu_ms),
            Some(123_456)
        );
    }

    #[test]
    fn cpu_share_between_readings() {
        let a = HostCpu {
            busy: 100,
            total: 1000,
            btime: None,
        };
        let b = HostCpu {
            busy: 400,
            total: 2000,
            btime: None,
        };
        assert_eq!(cpu_permille(&a, &b), Some(300));
        assert_eq!(cpu_permille(&b, &a), None);
        assert_eq!(cpu_permille(&a, &a), None);
    }
}
