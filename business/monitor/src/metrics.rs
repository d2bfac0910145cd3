//! The collector's `/metrics` page in Prometheus's text exposition format (0.0.4): each VPS's
//! counters as the domain reports them, each node's last figures, check states, and the
//! collector's own health. Pure: the listener hands the figures in and serves the text.
//!
//! Counters are the domain's own (they restart with it; Prometheus's `rate()` handles that).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::checks::Status;
use crate::counters::Sample;
use crate::tiers::NodeBucket;

/// One VPS's last reading, with the labels it is shown under.
#[derive(Debug, Clone)]
pub struct VpsLine<'a> {
    /// The VPS id.
    pub vps: &'a str,
    /// The node it runs on.
    pub node: &'a str,
    /// Its last reading.
    pub sample: Sample,
}

/// One node's last raw bucket.
#[derive(Debug, Clone)]
pub struct NodeLine<'a> {
    /// The node id.
    pub node: &'a str,
    /// When the bucket starts.
    pub at: DateTime<Utc>,
    /// Its figures.
    pub bucket: NodeBucket,
}

/// One service check's state.
#[derive(Debug, Clone)]
pub struct CheckLine<'a> {
    /// The VPS id.
    pub vps: &'a str,
    /// The check as people read it (`ssh 192.0.2.10:22`).
    pub check: &'a str,
    /// Up or down.
    pub status: Status,
    /// Not probed: the VPS is stopped or suspended.
    pub paused: bool,
}

/// The collector's own health.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Collections done since it started.
    pub cycles: u64,
    /// When the last one ended.
    pub last_end: Option<DateTime<Utc>>,
    /// How long it took, in seconds.
    pub last_secs: f64,
    /// Whether every node answered in it.
    pub last_ok: bool,
}

/// A label value escaped for the exposition format (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The mean of a bucket's readings (one reading in a raw bucket).
fn mean(g: &crate::tiers::Gauge) -> u128 {
    g.sum.checked_div(u128::from(g.count)).unwrap_or(0)
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Every metric name this page can hold (the Grafana dashboard's test reads it).
pub const NAMES: &[&str] = &[
    "gitvps_vps_cpu_seconds_total",
    "gitvps_vps_network_receive_bytes_total",
    "gitvps_vps_network_transmit_bytes_total",
    "gitvps_vps_network_receive_packets_total",
    "gitvps_vps_network_transmit_packets_total",
    "gitvps_vps_disk_read_bytes_total",
    "gitvps_vps_disk_written_bytes_total",
    "gitvps_vps_disk_reads_total",
    "gitvps_vps_disk_writes_total",
    "gitvps_vps_last_sample_timestamp_seconds",
    "gitvps_node_cpu_busy_ratio",
    "gitvps_node_memory_used_bytes",
    "gitvps_node_load1",
    "gitvps_node_storage_free_bytes",
    "gitvps_node_last_sample_timestamp_seconds",
    "gitvps_check_up",
    "gitvps_check_paused",
    "gitvps_monitor_cycles_total",
    "gitvps_monitor_last_cycle_timestamp_seconds",
    "gitvps_monitor_last_cycle_duration_seconds",
    "gitvps_monitor_last_cycle_ok",
];

/// The page.
pub fn render(
    vps: &[VpsLine<'_>],
    nodes: &[NodeLine<'_>],
    checks: &[CheckLine<'_>],
    h: &Health,
) -> String {
    let mut out = String::with_capacity(256 + vps.len() * 1200);
    type Get = fn(&Sample) -> String;
    let vps_families: [(&str, &str, Get); 10] = [
        (
            "gitvps_vps_cpu_seconds_total",
            "CPU time the domain used, in seconds.",
            |s| {
                format!(
                    "{}.{:03}",
                    s.counters.cpu_ms / 1000,
                    s.counters.cpu_ms % 1000
                )
            },
        ),
        (
            "gitvps_vps_network_receive_bytes_total",
            "Bytes the VPS received.",
            |s| s.counters.net_rx_bytes.to_string(),
        ),
        (
            "gitvps_vps_network_transmit_bytes_total",
            "Bytes the VPS sent.",
            |s| s.counters.net_tx_bytes.to_string(),
        ),
        (
            "gitvps_vps_network_receive_packets_total",
            "Packets the VPS received.",
            |s| s.counters.net_rx_packets.to_string(),
        ),
        (
            "gitvps_vps_network_transmit_packets_total",
            "Packets the VPS sent.",
            |s| s.counters.net_tx_packets.to_string(),
        ),
        (
            "gitvps_vps_disk_read_bytes_total",
            "Bytes read from the VPS's disks.",
            |s| s.counters.disk_read_bytes.to_string(),
        ),
        (
            "gitvps_vps_disk_written_bytes_total",
            "Bytes written to the VPS's disks.",
            |s| s.counters.disk_write_bytes.to_string(),
        ),
        (
            "gitvps_vps_disk_reads_total",
            "Read operations on the VPS's disks.",
            |s| s.counters.disk_read_ops.to_string(),
        ),
        (
            "gitvps_vps_disk_writes_total",
            "Write operations on the VPS's disks.",
            |s| s.counters.disk_write_ops.to_string(),
        ),
        (
            "gitvps_vps_last_sample_timestamp_seconds",
            "When the VPS was last read (Unix time).",
            |s| s.at.timestamp().to_string(),
        ),
    ];
    for (name, help, get) in vps_families {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        family(&mut out, name, kind, help);
        for v in vps {
            let _ = writeln!(
                out,
                "{name}{{vps=\"{}\",node=\"{}\"}} {}",
                esc(v.vps),
                esc(v.node),
                get(&v.sample)
            );
        }
    }
    type NodeGet = fn(&NodeLine<'_>) -> String;
    let node_families: [(&str, &str, NodeGet); 5] = [
        (
            "gitvps_node_cpu_busy_ratio",
            "Share of the node's CPU time busy over the last collection (0 to 1).",
            |n| {
                let m = mean(&n.bucket.cpu_permille);
                format!("{}.{:03}", m / 1000, m % 1000)
            },
        ),
        (
            "gitvps_node_memory_used_bytes",
            "Memory in use on the node (MemTotal - MemAvailable).",
            |n| mean(&n.bucket.mem_used).to_string(),
        ),
        (
            "gitvps_node_load1",
            "The node's 1-minute load average.",
            |n| {
                let m = mean(&n.bucket.load_milli);
                format!("{}.{:03}", m / 1000, m % 1000)
            },
        ),
        (
            "gitvps_node_storage_free_bytes",
            "Free space where the node keeps its VPS disks.",
            |n| mean(&n.bucket.storage_free).to_string(),
        ),
        (
            "gitvps_node_last_sample_timestamp_seconds",
            "When the node's figures were last stored (Unix time).",
            |n| n.at.timestamp().to_string(),
        ),
    ];
    for (name, help, get) in node_families {
        family(&mut out, name, "gauge", help);
        for n in nodes {
            let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", esc(n.node), get(n));
        }
    }
    family(
        &mut out,
        "gitvps_check_up",
        "gauge",
        "1 when the service check passes, 0 when it is down.",
    );
    for c in checks {
        let up = u8::from(c.status == Status::Up);
        let _ = writeln!(
            out,
            "gitvps_check_up{{vps=\"{}\",check=\"{}\"}} {up}",
            esc(c.vps),
            esc(c.check)
        );
    }
    family(
        &mut out,
        "gitvps_check_paused",
        "gauge",
        "1 while the check's VPS is stopped or suspended (not probed).",
    );
    for c in checks {
        let _ = writeln!(
            out,
            "gitvps_check_paused{{vps=\"{}\",check=\"{}\"}} {}",
            esc(c.vps),
            esc(c.check),
            u8::from(c.paused)
        );
    }
    family(
        &mut out,
        "gitvps_monitor_cycles_total",
        "counter",
        "Collections since the collector started.",
    );
    let _ = writeln!(out, "gitvps_monitor_cycles_total {}", h.cycles);
    family(
        &mut out,
        "gitvps_monitor_last_cycle_timestamp_seconds",
        "gauge",
        "When the last collection ended (Unix time; 0: none yet).",
    );
    let _ = writeln!(
        out,
        "gitvps_monitor_last_cycle_timestamp_seconds {}",
        h.last_end.map_or(0, |t| t.timestamp())
    );
    family(
        &mut out,
        "gitvps_monitor_last_cycle_duration_seconds",
        "gauge",
        "How long the last collection took.",
    );
    let _ = writeln!(
        out,
        "gitvps_monitor_last_cycle_duration_seconds {:.3}",
        h.last_secs
    );
    family(
        &mut out,
        "gitvps_monitor_last_cycle_ok",
        "gauge",
        "1 when every node answered in the last collection.",
    );
    let _ = writeln!(out, "gitvps_monitor_last_cycle_ok {}", u8::from(h.last_ok));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::{Counters, Incarnation};
    use crate::tiers::{Gauge, NodeBucket};

    #[test]
    fn the_page_is_the_exposition_format_with_escaped_labels() {
        let at = DateTime::from_timestamp(1_765_000_000, 0).unwrap_or_default();
        let sample = Sample {
            at,
            incarnation: Incarnation::default(),
            counters: Counters {
                cpu_ms: 12_345,
                net_rx_bytes: 1000,
                ..Counters::default()
            },
        };
        let vps = [VpsLine {
            vps: "xen10",
            node: "no\"de",
            sample,
        }];
        let bucket = NodeBucket {
            cpu_permille: Gauge::one(250),
            mem_used: Gauge::one(1 << 30),
            load_milli: Gauge::one(1500),
            storage_free: Gauge::one(7),
        };
        let nodes = [NodeLine {
            node: "node1",
            at,
            bucket,
        }];
        let checks = [CheckLine {
            vps: "xen10",
            check: "ssh 192.0.2.10:22",
            status: Status::Down,
            paused: false,
        }];
        let h = Health {
            cycles: 3,
            last_end: Some(at),
            last_secs: 0.25,
            last_ok: true,
        };
        let page = render(&vps, &nodes, &checks, &h);
        assert!(
            page.contains("gitvps_vps_cpu_seconds_total{vps=\"xen10\",node=\"no\\\"de\"} 12.345\n"),
            "{page}"
        );
        assert!(
            page.contains("# TYPE gitvps_vps_network_receive_bytes_total counter\n"),
            "{page}"
        );
        assert!(
            page.contains("gitvps_node_cpu_busy_ratio{node=\"node1\"} 0.250\n"),
            "{page}"
        );
        assert!(
            page.contains("gitvps_node_load1{node=\"node1\"} 1.500\n"),
            "{page}"
        );
        assert!(
            page.contains("gitvps_check_up{vps=\"xen10\",check=\"ssh 192.0.2.10:22\"} 0\n"),
            "{page}"
        );
        assert!(page.contains("gitvps_monitor_cycles_total 3\n"), "{page}");
        // Every sample line is a known family, every family is announced once.
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(NAMES.contains(&name), "{line}");
        }
        for n in NAMES {
            assert_eq!(page.matches(&format!("# TYPE {n} ")).count(), 1, "{n}");
        }
    }
}
