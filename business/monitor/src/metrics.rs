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
    /// Nodes whose samples were missing in it (unreachable, stalled, garbled).
    pub last_nodes_missing: u64,
    /// Collections that failed as a whole (the inventory or the database) since it started.
    pub errors: u64,
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

/// A sample's value as the page prints it.
enum Value {
    /// A whole number.
    Int(u128),
    /// Thousandths, printed with three decimals (`12.345`).
    Milli(u128),
    /// Seconds, printed with three decimals.
    Secs(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Milli(v) => write!(f, "{}.{:03}", v / 1000, v % 1000),
            Value::Secs(v) => write!(f, "{v:.3}"),
        }
    }
}

/// Where a series' rows come from, and how one row's value is read.
#[derive(Clone, Copy)]
enum Rows {
    /// One row per VPS, labelled `vps` and `node`.
    Vps(fn(&Sample) -> Value),
    /// One row per node, labelled `node`.
    Node(fn(&NodeLine<'_>) -> Value),
    /// One row per service check, labelled `vps` and `check`.
    Check(fn(&CheckLine<'_>) -> Value),
    /// One row without labels: the collector's own health.
    Health(fn(&Health) -> Value),
}

/// One series of the page: its name, help text and rows. Counters end in `_total`.
struct Family {
    name: &'static str,
    help: &'static str,
    rows: Rows,
}

const fn vps(name: &'static str, help: &'static str, get: fn(&Sample) -> Value) -> Family {
    Family {
        name,
        help,
        rows: Rows::Vps(get),
    }
}

const fn node(name: &'static str, help: &'static str, get: fn(&NodeLine<'_>) -> Value) -> Family {
    Family {
        name,
        help,
        rows: Rows::Node(get),
    }
}

const fn check(name: &'static str, help: &'static str, get: fn(&CheckLine<'_>) -> Value) -> Family {
    Family {
        name,
        help,
        rows: Rows::Check(get),
    }
}

const fn health(name: &'static str, help: &'static str, get: fn(&Health) -> Value) -> Family {
    Family {
        name,
        help,
        rows: Rows::Health(get),
    }
}

fn int(v: u64) -> Value {
    Value::Int(u128::from(v))
}

/// Every series of the page, in the order it prints them.
const FAMILIES: &[Family] = &[
    vps(
        "gitvps_vps_cpu_seconds_total",
        "CPU time the domain used, in seconds.",
        |s| Value::Milli(u128::from(s.counters.cpu_ms)),
    ),
    vps(
        "gitvps_vps_network_receive_bytes_total",
        "Bytes the VPS received.",
        |s| int(s.counters.net_rx_bytes),
    ),
    vps(
        "gitvps_vps_network_transmit_bytes_total",
        "Bytes the VPS sent.",
        |s| int(s.counters.net_tx_bytes),
    ),
    vps(
        "gitvps_vps_network_receive_packets_total",
        "Packets the VPS received.",
        |s| int(s.counters.net_rx_packets),
    ),
    vps(
        "gitvps_vps_network_transmit_packets_total",
        "Packets the VPS sent.",
        |s| int(s.counters.net_tx_packets),
    ),
    vps(
        "gitvps_vps_disk_read_bytes_total",
        "Bytes read from the VPS's disks.",
        |s| int(s.counters.disk_read_bytes),
    ),
    vps(
        "gitvps_vps_disk_written_bytes_total",
        "Bytes written to the VPS's disks.",
        |s| int(s.counters.disk_write_bytes),
    ),
    vps(
        "gitvps_vps_disk_reads_total",
        "Read operations on the VPS's disks.",
        |s| int(s.counters.disk_read_ops),
    ),
    vps(
        "gitvps_vps_disk_writes_total",
        "Write operations on the VPS's disks.",
        |s| int(s.counters.disk_write_ops),
    ),
    vps(
        "gitvps_vps_last_sample_timestamp_seconds",
        "When the VPS was last read (Unix time).",
        |s| Value::Int(u128::try_from(s.at.timestamp()).unwrap_or(0)),
    ),
    node(
        "gitvps_node_cpu_busy_ratio",
        "Share of the node's CPU time busy over the last collection (0 to 1).",
        |n| Value::Milli(mean(&n.bucket.cpu_permille)),
    ),
    node(
        "gitvps_node_memory_used_bytes",
        "Memory in use on the node (MemTotal - MemAvailable).",
        |n| Value::Int(mean(&n.bucket.mem_used)),
    ),
    node(
        "gitvps_node_load1",
        "The node's 1-minute load average.",
        |n| Value::Milli(mean(&n.bucket.load_milli)),
    ),
    node(
        "gitvps_node_storage_free_bytes",
        "Free space where the node keeps its VPS disks.",
        |n| Value::Int(mean(&n.bucket.storage_free)),
    ),
    node(
        "gitvps_node_last_sample_timestamp_seconds",
        "When the node's figures were last stored (Unix time).",
        |n| Value::Int(u128::try_from(n.at.timestamp()).unwrap_or(0)),
    ),
    check(
        "gitvps_check_up",
        "1 when the service check passes, 0 when it is down.",
        |c| int(u64::from(c.status == Status::Up)),
    ),
    check(
        "gitvps_check_paused",
        "1 while the check's VPS is stopped or suspended (not probed).",
        |c| int(u64::from(c.paused)),
    ),
    health(
        "gitvps_monitor_cycles_total",
        "Collections since the collector started.",
        |h| int(h.cycles),
    ),
    health(
        "gitvps_monitor_last_cycle_timestamp_seconds",
        "When the last collection ended (Unix time; 0: none yet).",
        |h| {
            Value::Int(
                h.last_end
                    .map_or(0, |t| u128::try_from(t.timestamp()).unwrap_or(0)),
            )
        },
    ),
    health(
        "gitvps_monitor_last_cycle_duration_seconds",
        "How long the last collection took.",
        |h| Value::Secs(h.last_secs),
    ),
    health(
        "gitvps_monitor_last_cycle_ok",
        "1 when every node answered in the last collection.",
        |h| int(u64::from(h.last_ok)),
    ),
    health(
        "gitvps_monitor_last_cycle_nodes_missing",
        "Nodes whose samples were missing in the last collection.",
        |h| int(h.last_nodes_missing),
    ),
    health(
        "gitvps_monitor_errors_total",
        "Collections that failed as a whole (inventory or database) since the collector started.",
        |h| int(h.errors),
    ),
];

/// Every metric name this page can hold (the Grafana dashboard's test reads it).
pub fn names() -> impl Iterator<Item = &'static str> {
    FAMILIES.iter().map(|f| f.name)
}

/// The page.
pub fn render(
    vps: &[VpsLine<'_>],
    nodes: &[NodeLine<'_>],
    checks: &[CheckLine<'_>],
    h: &Health,
) -> String {
    let mut out = String::with_capacity(2048 + vps.len() * 1200);
    for f in FAMILIES {
        let name = f.name;
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# HELP {name} {}", f.help);
        let _ = writeln!(out, "# TYPE {name} {kind}");
        match f.rows {
            Rows::Vps(get) => {
                for v in vps {
                    let (id, node) = (esc(v.vps), esc(v.node));
                    let _ = writeln!(
                        out,
                        "{name}{{vps=\"{id}\",node=\"{node}\"}} {}",
                        get(&v.sample)
                    );
                }
            }
            Rows::Node(get) => {
                for n in nodes {
                    let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", esc(n.node), get(n));
                }
            }
            Rows::Check(get) => {
                for c in checks {
                    let (id, check) = (esc(c.vps), esc(c.check));
                    let _ = writeln!(out, "{name}{{vps=\"{id}\",check=\"{check}\"}} {}", get(c));
                }
            }
            Rows::Health(get) => {
                let _ = writeln!(out, "{name} {}", get(h));
            }
        }
    }
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
        let vps = [
            VpsLine {
                vps: "xen10",
                node: "no\"de",
                sample,
            },
            VpsLine {
                vps: "xen11",
                node: "node1",
                sample,
            },
        ];
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
            last_nodes_missing: 1,
            errors: 2,
        };
        let page = render(&vps, &nodes, &checks, &h);
        insta::assert_snapshot!(page);
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
            assert!(names().any(|n| n == name), "{line}");
        }
        for n in names() {
            assert_eq!(page.matches(&format!("# TYPE {n} ")).count(), 1, "{n}");
        }
    }

    /// The operator's Grafana dashboard (docs/grafana/gitvps.json) parses, and every metric
    /// it queries (its panels and its variables) is one this page holds.
    #[test]
    fn the_grafana_dashboard_queries_only_metrics_of_the_page() {
        let text = include_str!("../../../docs/grafana/gitvps.json");
        let d: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let mut exprs: Vec<String> = Vec::new();
        let panels = d["panels"].as_array().cloned().unwrap_or_default();
        for p in &panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                exprs.extend(t["expr"].as_str().map(str::to_owned));
            }
        }
        let graphs = panels.iter().filter(|p| p["type"] != "row").count();
        assert!(exprs.len() >= graphs, "every panel queries something");
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            exprs.extend(v["query"]["query"].as_str().map(str::to_owned));
        }
        let mut used = std::collections::BTreeSet::new();
        for e in &exprs {
            let mut rest = e.as_str();
            while let Some(i) = rest.find("gitvps_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                assert!(names().any(|n| n == name), "{name} in `{e}`");
                used.insert(name);
            }
        }
        // Per node and per VPS panels: both kinds of series are shown.
        assert!(
            used.iter().any(|n| n.starts_with("gitvps_node_")),
            "{used:?}"
        );
        assert!(
            used.iter().any(|n| n.starts_with("gitvps_vps_")),
            "{used:?}"
        );
        assert!(
            used.iter().any(|n| n.starts_with("gitvps_monitor_")),
            "{used:?}"
        );
    }
}
