//! Usage graphs as SVG: a VPS's CPU, network and disk, a node's overall usage, and where a VPS
//! stands among its node's VPSes, drawn from the tiers' buckets with English or Chinese labels.
//!
//! Pure: the caller reads the buckets of [`Window::tier`] between [`Window::start`] and
//! [`Window::end`] and hands them in; the same series and window give the same bytes. The SVG
//! is written here rather than with a plotting crate: a chart crate needs font files to measure
//! its labels (and none here holds the Chinese ones), while `<text>` leaves the fonts to the
//! browser; the drawing itself is a few paths.
//!
//! Every time is UTC, and the axes say so. Slots are aligned to the Unix epoch like the tiers'
//! buckets, so two requests in the same slot draw the same graph. A VPS's value in a slot is
//! its usage divided by the seconds its samples cover (a rate, never a sum over a gap); a slot
//! without samples is a gap in the line, not a zero.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use model::values::Language;

use crate::counters::Counters;
use crate::tiers::{Bucket, Gauge, Merge, NodeBucket, Tier};

/// Width of every graph, in SVG units (it scales with its box in the page).
pub const WIDTH: u32 = 720;
/// Height of a time graph.
pub const HEIGHT: u32 = 240;
/// Fewest slots a graph may ask for.
pub const POINTS_MIN: u32 = 12;
/// Most slots a graph may ask for.
pub const POINTS_MAX: u32 = 1000;

/// Margins of the plot area: left (the value labels), right, top (title), bottom (times).
const LEFT: f64 = 72.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 36.0;

/// The time a graph covers, ending now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Span {
    /// The last 24 hours, from the raw samples.
    Day,
    /// The last 7 days, from the 5-minute buckets.
    Week,
    /// The last 30 days, from the hourly buckets.
    Month,
    /// The last 365 days, from the hourly buckets.
    Year,
}

impl Span {
    /// Every span with its spelling.
    pub const ALL: [(&'static str, Span); 4] = [
        ("day", Span::Day),
        ("week", Span::Week),
        ("month", Span::Month),
        ("year", Span::Year),
    ];

    /// Parses `day`, `week`, `month` or `year`.
    pub fn parse(s: &str) -> Option<Span> {
        Span::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }

    /// The spelling.
    pub fn as_str(self) -> &'static str {
        Span::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("day", |(n, _)| n)
    }

    /// How far back it reaches.
    pub fn length(self) -> Duration {
        match self {
            Span::Day => Duration::days(1),
            Span::Week => Duration::days(7),
            Span::Month => Duration::days(30),
            Span::Year => Duration::days(365),
        }
    }

    /// The tier it reads: the finest one that keeps the whole span.
    pub fn tier(self) -> Tier {
        match self {
            Span::Day => Tier::Raw,
            Span::Week => Tier::FiveMinutes,
            Span::Month | Span::Year => Tier::Hourly,
        }
    }

    /// Slots drawn unless asked otherwise: 5 minutes, 30 minutes, 2 hours, a day.
    pub fn default_points(self) -> u32 {
        match self {
            Span::Day => 288,
            Span::Week => 336,
            Span::Month => 360,
            Span::Year => 365,
        }
    }

    /// The most slots that still hold a bucket each: a slot is never narrower than the tier's
    /// bucket (the raw tier's is taken as a minute, the default interval).
    pub fn max_points(self) -> u32 {
        let bucket = self.tier().width().unwrap_or(Duration::minutes(1));
        let n = self.length().num_seconds() / bucket.num_seconds().max(1);
        u32::try_from(n).unwrap_or(u32::MAX).min(POINTS_MAX)
    }
}

/// Why a graph cannot be drawn as asked: each is the caller's mistake (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// Too few or too many slots for the span.
    #[error("points: {asked} is out of bounds: a {span} graph has {min} to {max} points")]
    Points {
        /// What was asked.
        asked: u32,
        /// The span.
        span: &'static str,
        /// Fewest.
        min: u32,
        /// Most.
        max: u32,
    },
}

/// The slots of one graph: `points` equal slots ending at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The span.
    pub span: Span,
    /// Slots.
    pub points: u32,
    /// One slot.
    pub slot: Duration,
    /// The end of the last slot (exclusive), on a slot boundary.
    pub end: DateTime<Utc>,
}

impl Window {
    /// The window of `span` ending with the slot that holds `now`, in `points` slots (the
    /// span's default when `None`).
    pub fn new(span: Span, now: DateTime<Utc>, points: Option<u32>) -> Result<Window, GraphError> {
        let points = points.unwrap_or_else(|| span.default_points());
        let max = span.max_points();
        if !(POINTS_MIN..=max).contains(&points) {
            return Err(GraphError::Points {
                asked: points,
                span: span.as_str(),
                min: POINTS_MIN,
                max,
            });
        }
        let slot = Duration::seconds((span.length().num_seconds() / i64::from(points)).max(1));
        let w = slot.num_seconds();
        let secs = now.timestamp();
        let end_secs = secs - secs.rem_euclid(w) + w;
        let end = DateTime::from_timestamp(end_secs, 0).unwrap_or(now);
        Ok(Window {
            span,
            points,
            slot,
            end,
        })
    }

    /// The start of the first slot.
    pub fn start(&self) -> DateTime<Utc> {
        self.end - self.slot * i32::try_from(self.points).unwrap_or(i32::MAX)
    }

    /// The tier to read.
    pub fn tier(&self) -> Tier {
        self.span.tier()
    }

    /// The slot `t` falls in, if inside the window.
    fn slot_of(&self, t: DateTime<Utc>) -> Option<usize> {
        let off = (t - self.start()).num_seconds();
        if off < 0 || t >= self.end {
            return None;
        }
        usize::try_from(off / self.slot.num_seconds().max(1)).ok()
    }

    /// Merges buckets into their slots.
    fn gather<'a, B: Merge + 'a>(
        &self,
        buckets: impl IntoIterator<Item = (&'a DateTime<Utc>, &'a B)>,
    ) -> Vec<Option<B>> {
        let mut slots: Vec<Option<B>> = vec![None; self.points as usize];
        for (at, b) in buckets {
            if let Some(s) = self.slot_of(*at).and_then(|i| slots.get_mut(i)) {
                *s = Some(s.map_or(*b, |old| old.merge(b)));
            }
        }
        slots
    }
}

/// What a VPS graph shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// CPU time, in percent of one vCPU.
    Cpu,
    /// Bits per second in and out.
    Network,
    /// Bytes per second read and written.
    Disk,
}

impl Metric {
    /// Every metric with its spelling.
    pub const ALL: [(&'static str, Metric); 3] = [
        ("cpu", Metric::Cpu),
        ("network", Metric::Network),
        ("disk", Metric::Disk),
    ];

    /// Parses `cpu`, `network` or `disk`.
    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.iter().find(|(n, _)| *n == s).map(|(_, v)| *v)
    }
}

/// What a node graph shows (the operator's "server overall usage").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeMetric {
    /// CPU busy, average and peak, in percent of all its CPUs.
    Cpu,
    /// Memory in use.
    Memory,
    /// The 1-minute load average.
    Load,
    /// Free storage (its lowest reading in each slot).
    Storage,
}

impl NodeMetric {
    /// Every node metric with its spelling.
    pub const ALL: [(&'static str, NodeMetric); 4] = [
        ("cpu", NodeMetric::Cpu),
        ("memory", NodeMetric::Memory),
        ("load", NodeMetric::Load),
        ("storage", NodeMetric::Storage),
    ];

    /// Parses `cpu`, `memory`, `load` or `storage`.
    pub fn parse(s: &str) -> Option<NodeMetric> {
        NodeMetric::ALL
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, v)| *v)
    }
}

/// How values are written on the axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Percent,
    BitsPerSecond,
    BytesPerSecond,
    Bytes,
    Plain,
}

/// The words of the graphs, by key, in each language.
fn words(lang: Language, key: &str) -> &'static str {
    let (en, zh) = match key {
        "cpu" => ("CPU (% of one vCPU)", "CPU（占一个 vCPU 的百分比）"),
        "network" => ("Network (bit/s)", "网络（比特/秒）"),
        "disk" => ("Disk (bytes/s)", "磁盘（字节/秒）"),
        "node-cpu" => (
            "Node CPU (% of all CPUs)",
            "节点 CPU（占全部 CPU 的百分比）",
        ),
        "node-memory" => ("Node memory in use", "节点已用内存"),
        "node-load" => ("Node load (1 minute)", "节点负载（1 分钟）"),
        "node-storage" => ("Node free storage", "节点可用存储"),
        "in" => ("in", "流入"),
        "out" => ("out", "流出"),
        "read" => ("read", "读取"),
        "write" => ("write", "写入"),
        "used" => ("used", "使用"),
        "average" => ("average", "平均"),
        "peak" => ("peak", "峰值"),
        "free" => ("lowest free", "最低可用"),
        "load" => ("load", "负载"),
        "time" => ("time (UTC)", "时间（UTC）"),
        "empty" => ("No samples in this range yet", "此时段尚无数据"),
        "compare" => (
            "This VPS among the VPSes of its node",
            "本 VPS 在同一节点所有 VPS 中的位置",
        ),
        "compare-axis" => (
            "percentile: share of the node's other VPSes using less",
            "百分位：同节点其他 VPS 中用量更低者所占比例",
        ),
        "alone" => ("the only VPS on its node", "节点上仅此一台 VPS"),
        "cpu-short" => ("CPU", "CPU"),
        "network-short" => ("Network", "网络"),
        "disk-short" => ("Disk", "磁盘"),
        _ => ("", ""),
    };
    match lang {
        Language::En => en,
        Language::Zh => zh,
    }
}

/// One line of a graph: a name key and a value per slot (`None`: no samples).
#[derive(Debug, Clone, PartialEq)]
struct Line {
    name: &'static str,
    values: Vec<Option<f64>>,
}

/// A time graph ready to draw.
#[derive(Debug, Clone, PartialEq)]
struct Chart {
    title: &'static str,
    unit: Unit,
    lines: Vec<Line>,
}

/// A rate per second over a slot's covered seconds.
fn rate(b: &Bucket, f: impl Fn(&Counters) -> u64) -> Option<f64> {
    (b.seconds > 0).then(|| f(&b.usage) as f64 / b.seconds as f64)
}

/// A VPS's graph of `metric` over `w`, from the buckets of `w.tier()` (any order, any extent:
/// those outside the window are ignored).
pub fn vps<'a>(
    metric: Metric,
    w: &Window,
    buckets: impl IntoIterator<Item = (&'a DateTime<Utc>, &'a Bucket)>,
    lang: Language,
) -> String {
    let slots = w.gather(buckets);
    let line = |name, f: &dyn Fn(&Bucket) -> Option<f64>| Line {
        name,
        values: slots.iter().map(|s| s.as_ref().and_then(f)).collect(),
    };
    let chart = match metric {
        Metric::Cpu => Chart {
            title: "cpu",
            unit: Unit::Percent,
            lines: vec![line("used", &|b| {
                rate(b, |c| c.cpu_ms).map(|ms| ms / 1000.0 * 100.0)
            })],
        },
        Metric::Network => Chart {
            title: "network",
            unit: Unit::BitsPerSecond,
            lines: vec![
                line("in", &|b| rate(b, |c| c.net_rx_bytes).map(|v| v * 8.0)),
                line("out", &|b| rate(b, |c| c.net_tx_bytes).map(|v| v * 8.0)),
            ],
        },
        Metric::Disk => Chart {
            title: "disk",
            unit: Unit::BytesPerSecond,
            lines: vec![
                line("read", &|b| rate(b, |c| c.disk_read_bytes)),
                line("write", &|b| rate(b, |c| c.disk_write_bytes)),
            ],
        },
    };
    draw(&chart, w, lang)
}

/// A node's graph of `metric` over `w` (the operator's "server overall usage").
pub fn node<'a>(
    metric: NodeMetric,
    w: &Window,
    buckets: impl IntoIterator<Item = (&'a DateTime<Utc>, &'a NodeBucket)>,
    lang: Language,
) -> String {
    let slots = w.gather(buckets);
    let line = |name, f: &dyn Fn(&NodeBucket) -> Option<f64>| Line {
        name,
        values: slots.iter().map(|s| s.as_ref().and_then(f)).collect(),
    };
    let some = |g: &Gauge, v: u64| (g.count > 0).then_some(v as f64);
    let chart = match metric {
        NodeMetric::Cpu => Chart {
            title: "node-cpu",
            unit: Unit::Percent,
            lines: vec![
                line("average", &|b| {
                    some(&b.cpu_permille, b.cpu_permille.avg()).map(|v| v / 10.0)
                }),
                line("peak", &|b| {
                    some(&b.cpu_permille, b.cpu_permille.max).map(|v| v / 10.0)
                }),
            ],
        },
        NodeMetric::Memory => Chart {
            title: "node-memory",
            unit: Unit::Bytes,
            lines: vec![line("average", &|b| some(&b.mem_used, b.mem_used.avg()))],
        },
        NodeMetric::Load => Chart {
            title: "node-load",
            unit: Unit::Plain,
            lines: vec![line("load", &|b| {
                some(&b.load_milli, b.load_milli.avg()).map(|v| v / 1000.0)
            })],
        },
        NodeMetric::Storage => Chart {
            title: "node-storage",
            unit: Unit::Bytes,
            lines: vec![line("free", &|b| some(&b.storage_free, b.storage_free.min))],
        },
    };
    draw(&chart, w, lang)
}

/// Where one VPS's usage stands among its node's VPSes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// How many other VPSes it is compared with.
    pub others: usize,
    /// Percent of them that used less (ties count half), rounded; `None` alone on its node.
    pub percentile: Option<u8>,
    /// The node's quartiles (every VPS, this one included): minimum, 25th, median, 75th,
    /// maximum, as percentiles of the largest: where the band is drawn, no one's figure.
    pub band: [u8; 5],
    /// This VPS's usage in percent of the largest.
    pub mine: u8,
}

/// Percent of `of`, rounded, 0 when `of` is 0.
fn percent(v: u64, of: u64) -> u8 {
    if of == 0 {
        return 0;
    }
    let p = (u128::from(v) * 200 + u128::from(of)) / (u128::from(of) * 2);
    u8::try_from(p.min(100)).unwrap_or(100)
}

/// Where `mine` stands among `others` (the node's other VPSes' totals over the same window).
/// Only numbers go in: no other VPS or customer can be named by what comes out.
pub fn standing(mine: u64, others: &[u64]) -> Standing {
    let mut all: Vec<u64> = others.to_vec();
    all.push(mine);
    all.sort_unstable();
    let max = all.last().copied().unwrap_or(0);
    let q = |k: usize| {
        let i = (all.len() - 1) * k / 4;
        percent(all.get(i).copied().unwrap_or(0), max)
    };
    let percentile = (!others.is_empty()).then(|| {
        let below = others.iter().filter(|o| **o < mine).count();
        let equal = others.iter().filter(|o| **o == mine).count();
        let p = ((below * 2 + equal) * 100 + others.len()) / (others.len() * 2);
        u8::try_from(p.min(100)).unwrap_or(100)
    });
    Standing {
        others: others.len(),
        percentile,
        band: [q(0), q(1), q(2), q(3), q(4)],
        mine: percent(mine, max),
    }
}

/// A VPS's totals over a window, for [`standing`]: CPU milliseconds, network bytes both ways,
/// disk bytes both ways.
pub fn totals<'a>(
    w: &Window,
    buckets: impl IntoIterator<Item = (&'a DateTime<Utc>, &'a Bucket)>,
) -> [u64; 3] {
    let mut t = [0u64; 3];
    for (at, b) in buckets {
        if w.slot_of(*at).is_some() {
            let u = &b.usage;
            t[0] = t[0].saturating_add(u.cpu_ms);
            t[1] = t[1].saturating_add(u.net_bytes());
            t[2] = t[2].saturating_add(u.disk_read_bytes.saturating_add(u.disk_write_bytes));
        }
    }
    t
}

/// The "my VPS vs others" graph: one row per metric (CPU, network, disk), the node's band of
/// quartiles and this VPS's mark with its percentile.
pub fn compare(rows: &[Standing; 3], w: &Window, lang: Language) -> String {
    let height = 200.0;
    let mut s = open_svg(height, words(lang, "compare"), "compare", w);
    let (x0, x1) = (LEFT + 40.0, f64::from(WIDTH) - RIGHT - 110.0);
    let x = |p: u8| x0 + (x1 - x0) * f64::from(p) / 100.0;
    text(&mut s, LEFT, 20.0, "start", "title", words(lang, "compare"));
    for (i, (row, key)) in rows
        .iter()
        .zip(["cpu-short", "network-short", "disk-short"])
        .enumerate()
    {
        let y = 55.0 + 42.0 * i as f64;
        let _ = write!(
            s,
            r#"<g class="row" data-metric="{}">"#,
            &key[..key.len() - 6]
        );
        text(
            &mut s,
            LEFT + 30.0,
            y + 4.0,
            "end",
            "label",
            words(lang, key),
        );
        let _ = write!(
            s,
            r##"<line class="whisker" x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#999"/>"##,
            x(row.band[0]),
            x(row.band[4]),
        );
        let _ = write!(
            s,
            r##"<rect class="band" x="{:.1}" y="{:.1}" width="{:.1}" height="16" fill="#c9d8ef"/>"##,
            x(row.band[1]),
            y - 8.0,
            (x(row.band[3]) - x(row.band[1])).max(1.0),
        );
        let _ = write!(
            s,
            r##"<line class="median" x1="{m:.1}" y1="{:.1}" x2="{m:.1}" y2="{:.1}" stroke="#4a6fa5" stroke-width="2"/>"##,
            y - 8.0,
            y + 8.0,
            m = x(row.band[2]),
        );
        let _ = write!(
            s,
            r##"<circle class="mine" cx="{:.1}" cy="{y:.1}" r="6" fill="#d9534f"/>"##,
            x(row.mine),
        );
        let label = match (row.percentile, lang) {
            (None, _) => words(lang, "alone").to_owned(),
            (Some(p), Language::En) => format!("{p}th percentile of {}", row.others + 1),
            (Some(p), Language::Zh) => format!("{} 台中的第 {p} 百分位", row.others + 1),
        };
        text(&mut s, x1 + 12.0, y + 4.0, "start", "percentile", &label);
        s.push_str("</g>");
    }
    text(
        &mut s,
        LEFT,
        height - 14.0,
        "start",
        "axis-title",
        words(lang, "compare-axis"),
    );
    s.push_str("</svg>\n");
    s
}

/// Escapes text for XML.
fn esc(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn text(s: &mut String, x: f64, y: f64, anchor: &str, class: &str, t: &str) {
    let _ = write!(
        s,
        r#"<text class="{class}" x="{x:.1}" y="{y:.1}" text-anchor="{anchor}">{}</text>"#,
        esc(t)
    );
}

fn open_svg(height: f64, title: &str, kind: &str, w: &Window) -> String {
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="gitvps-graph" data-kind="{kind}" data-span="{}" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" role="img" aria-label="{}" font-family="sans-serif" font-size="11">"#,
        w.span.as_str(),
        esc(title),
    );
    let _ = write!(s, "<title>{}</title>", esc(title));
    s
}

/// A value on the axis.
fn fmt_value(v: f64, unit: Unit) -> String {
    let scaled = |base: f64, units: &[&str]| {
        let mut v = v;
        let mut i = 0;
        while v.abs() >= base && i + 1 < units.len() {
            v /= base;
            i += 1;
        }
        let n = if v == v.trunc() {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        };
        format!("{n} {}", units.get(i).copied().unwrap_or(""))
    };
    match unit {
        Unit::Percent if v == v.trunc() => format!("{v:.0} %"),
        Unit::Percent => format!("{v:.1} %"),
        Unit::BitsPerSecond => scaled(1000.0, &["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"]),
        Unit::BytesPerSecond => scaled(1024.0, &["B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"]),
        Unit::Bytes => scaled(1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"]),
        Unit::Plain => {
            if v == v.trunc() {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        }
    }
}

/// The top of the value axis: the next 1, 2 or 5 times a power of the unit's base above `max`
/// (a percent axis shows at least 100 %... of one vCPU, only when it is reached).
fn nice_top(max: f64, unit: Unit) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return match unit {
            Unit::Percent => 100.0,
            _ => 1.0,
        };
    }
    let base: f64 = match unit {
        Unit::BytesPerSecond | Unit::Bytes => 1024.0,
        _ => 1000.0,
    };
    let mut scale = 1.0;
    while max / scale >= base {
        scale *= base;
    }
    let m = max / scale;
    let mut p = 1.0;
    while p * 10.0 <= m {
        p *= 10.0;
    }
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|k| k * p)
        .find(|k| *k >= m)
        .unwrap_or(10.0 * p);
    step * scale
}

/// A time label for the tick at `t`.
fn fmt_time(t: DateTime<Utc>, span: Span, lang: Language) -> String {
    const DAYS_EN: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const DAYS_ZH: [&str; 7] = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"];
    const MONTHS_EN: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let wd = t.weekday().num_days_from_monday() as usize;
    let m0 = t.month0() as usize;
    match (span, lang) {
        (Span::Day, _) => format!("{:02}:{:02}", t.hour(), t.minute()),
        (Span::Week, Language::En) => {
            format!("{} {}", DAYS_EN.get(wd).copied().unwrap_or(""), t.day())
        }
        (Span::Week, Language::Zh) => {
            format!("{}日{}", t.day(), DAYS_ZH.get(wd).copied().unwrap_or(""))
        }
        (Span::Month, Language::En) => {
            format!("{} {}", MONTHS_EN.get(m0).copied().unwrap_or(""), t.day())
        }
        (Span::Month, Language::Zh) => format!("{}月{}日", t.month(), t.day()),
        (Span::Year, Language::En) => {
            format!("{} {}", MONTHS_EN.get(m0).copied().unwrap_or(""), t.year())
        }
        (Span::Year, Language::Zh) => format!("{}年{}月", t.year(), t.month()),
    }
}

/// The ticks of the time axis: every 4 hours, every day, every 5 days, every 2 months start.
fn ticks(w: &Window) -> Vec<DateTime<Utc>> {
    let (start, end) = (w.start(), w.end);
    let mut out = Vec::new();
    let step = match w.span {
        Span::Day => Duration::hours(4),
        Span::Week => Duration::days(1),
        Span::Month => Duration::days(5),
        Span::Year => {
            // Month starts, every other month.
            let (mut y, mut m) = (start.year(), start.month());
            loop {
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
                let Some(t) = chrono::NaiveDate::from_ymd_opt(y, m, 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|d| d.and_utc())
                else {
                    break;
                };
                if t >= end {
                    break;
                }
                if m % 2 == 1 {
                    out.push(t);
                }
            }
            return out;
        }
    };
    let s = step.num_seconds();
    let first = start.timestamp() - start.timestamp().rem_euclid(s) + s;
    let mut t = DateTime::from_timestamp(first, 0).unwrap_or(start);
    while t < end {
        out.push(t);
        t += step;
    }
    out
}

/// Line colours, in order.
const COLOURS: [&str; 2] = ["#4a6fa5", "#d9822b"];

/// Draws a time chart.
fn draw(c: &Chart, w: &Window, lang: Language) -> String {
    let (wd, ht) = (f64::from(WIDTH), f64::from(HEIGHT));
    let title = words(lang, c.title);
    let mut s = open_svg(ht, title, c.title, w);
    let (px0, px1, py0, py1) = (LEFT, wd - RIGHT, TOP, ht - BOTTOM);
    let max = c
        .lines
        .iter()
        .flat_map(|l| l.values.iter().flatten())
        .fold(0.0f64, |m, v| m.max(*v));
    let top = nice_top(max, c.unit);
    let n = f64::from(w.points);
    let x_at = |i: f64| px0 + (px1 - px0) * i / n;
    let y_at = |v: f64| py1 - (py1 - py0) * (v / top).clamp(0.0, 1.0);
    text(&mut s, px0, 20.0, "start", "title", title);
    // Legend, right-aligned in the title row.
    let mut lx = px1;
    for (i, l) in c.lines.iter().enumerate().rev() {
        let colour = COLOURS.get(i).copied().unwrap_or("#333");
        text(&mut s, lx, 20.0, "end", "legend", words(lang, l.name));
        lx -= 8.0 * words(lang, l.name).chars().count() as f64 + 8.0;
        let _ = write!(
            s,
            r#"<rect class="swatch" x="{:.1}" y="12" width="10" height="10" fill="{colour}"/>"#,
            lx
        );
        lx -= 14.0;
    }
    // Value grid and labels.
    s.push_str(r##"<g class="y-axis" stroke="#e3e3e3">"##);
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        let y = y_at(v);
        let _ = write!(
            s,
            r#"<line x1="{px0:.1}" y1="{y:.1}" x2="{px1:.1}" y2="{y:.1}"/>"#
        );
    }
    s.push_str("</g><g class=\"y-labels\">");
    for k in 0..=4 {
        let v = top * f64::from(k) / 4.0;
        text(
            &mut s,
            px0 - 6.0,
            y_at(v) + 4.0,
            "end",
            "y-label",
            &fmt_value(v, c.unit),
        );
    }
    s.push_str("</g>");
    // Time ticks and labels.
    let span_secs = (w.end - w.start()).num_seconds() as f64;
    s.push_str(r##"<g class="x-axis">"##);
    for t in ticks(w) {
        let x = px0 + (px1 - px0) * (t - w.start()).num_seconds() as f64 / span_secs;
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{py1:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999"/>"##,
            py1 + 4.0
        );
        text(
            &mut s,
            x,
            py1 + 16.0,
            "middle",
            "x-label",
            &fmt_time(t, w.span, lang),
        );
    }
    s.push_str("</g>");
    let _ = write!(
        s,
        r##"<line class="frame" x1="{px0:.1}" y1="{py1:.1}" x2="{px1:.1}" y2="{py1:.1}" stroke="#666"/>"##
    );
    text(
        &mut s,
        px1,
        ht - 4.0,
        "end",
        "axis-title",
        words(lang, "time"),
    );
    // The lines: one path each, broken at slots without samples.
    let mut any = false;
    for (i, l) in c.lines.iter().enumerate() {
        let colour = COLOURS.get(i).copied().unwrap_or("#333");
        let mut d = String::new();
        let mut pen_down = false;
        for (k, v) in l.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let x = x_at(k as f64 + 0.5);
                    let _ = write!(
                        d,
                        "{}{x:.1},{:.1}",
                        if pen_down { "L" } else { "M" },
                        y_at(*v)
                    );
                    pen_down = true;
                    any = true;
                }
                None => pen_down = false,
            }
        }
        let _ = write!(
            s,
            r#"<path class="series" data-series="{}" d="{d}" fill="none" stroke="{colour}" stroke-width="1.5" stroke-linejoin="round"/>"#,
            l.name
        );
    }
    if !any {
        text(
            &mut s,
            (px0 + px1) / 2.0,
            (py0 + py1) / 2.0,
            "middle",
            "empty",
            words(lang, "empty"),
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, d, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    /// Hourly buckets over the last `hours` before `now`: a load that rises through the day.
    fn hourly(now: DateTime<Utc>, hours: i64) -> Vec<(DateTime<Utc>, Bucket)> {
        (1..=hours)
            .map(|k| {
                let start = Tier::Hourly.bucket_start(now - Duration::hours(k));
                let h = u64::from(start.hour());
                let usage = Counters {
                    cpu_ms: 36_000 * h,
                    net_rx_bytes: 3_600_000 * h,
                    net_tx_bytes: 1_800_000 * h,
                    disk_read_bytes: 1 << 20,
                    disk_write_bytes: 2 << 20,
                    ..Counters::default()
                };
                let b = Bucket {
                    samples: 60,
                    usage,
                    seconds: 3600,
                    resets: 0,
                };
                (start, b)
            })
            .collect()
    }

    fn refs(v: &[(DateTime<Utc>, Bucket)]) -> impl Iterator<Item = (&DateTime<Utc>, &Bucket)> {
        v.iter().map(|(t, b)| (t, b))
    }

    #[test]
    fn spans_read_the_tier_that_keeps_them_and_bound_their_points() {
        for (_, span) in Span::ALL {
            assert!(span.tier().retention() >= span.length(), "{span:?}");
            assert!(span.default_points() <= span.max_points());
            assert!(Span::parse(span.as_str()) == Some(span));
        }
        assert_eq!(Span::Month.max_points(), 720);
        assert_eq!(Span::Year.max_points(), POINTS_MAX);
        assert_eq!(Span::parse("decade"), None);
        let now = at(6, 13, 7);
        let e = Window::new(Span::Month, now, Some(721)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "points: 721 is out of bounds: a month graph has 12 to 720 points"
        );
        assert!(Window::new(Span::Day, now, Some(11)).is_err());
        assert!(Window::new(Span::Day, now, Some(0)).is_err());
        let w = Window::new(Span::Day, now, None).unwrap();
        // 5-minute slots, the last one holding now.
        assert_eq!((w.slot, w.end), (Duration::minutes(5), at(6, 13, 10)));
        assert_eq!(w.start(), at(5, 13, 10));
    }

    #[test]
    fn a_month_graph_draws_rates_from_hourly_buckets() {
        let now = at(6, 13, 7);
        let data = hourly(now, 24 * 40);
        let w = Window::new(Span::Month, now, None).unwrap();
        let svg = vps(Metric::Network, &w, refs(&data), Language::En);
        // Two lines, every slot drawn once (a path of 360 points, no gaps).
        assert_eq!(svg.matches("<path ").count(), 2);
        let rx = svg
            .split(r#"data-series="in" d=""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert_eq!(rx.matches('M').count(), 1);
        assert_eq!(rx.matches('L').count(), 359);
        // Peak: 23:00 buckets, 3.6 MB in an hour = 8000 bit/s x 23 = 184 kbit/s: axis to 200.
        assert!(svg.contains(">200 kbit/s</text>"), "{svg}");
        assert!(svg.contains(">Network (bit/s)</text>"));
        assert!(svg.contains(">time (UTC)</text>"));
        assert!(svg.contains(">Nov 13</text>"), "{svg}");
        assert!(!svg.contains("No samples"));
    }

    #[test]
    fn gaps_break_the_line_and_nothing_is_a_zero() {
        let now = at(6, 13, 7);
        let mut data = hourly(now, 24);
        // Hours 5 to 8 of the day were not collected.
        data.retain(|(t, _)| !(5..9).contains(&t.hour()));
        let w = Window::new(Span::Day, now, Some(24)).unwrap();
        let svg = vps(Metric::Cpu, &w, refs(&data), Language::En);
        let d = svg
            .split(r#"data-series="used" d=""#)
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        // 36 s of CPU per hour per hour of the day: 23:00 is 23 % of one vCPU.
        assert!(svg.contains(">25 %</text>"), "{svg}");
    }

    #[test]
    fn an_empty_range_says_so_in_each_language() {
        let now = at(6, 13, 7);
        let w = Window::new(Span::Week, now, None).unwrap();
        let en = vps(Metric::Disk, &w, std::iter::empty(), Language::En);
        assert!(en.contains(">No samples in this range yet</text>"));
        let zh = vps(Metric::Disk, &w, std::iter::empty(), Language::Zh);
        assert!(zh.contains(">此时段尚无数据</text>"));
        assert!(zh.contains(">磁盘（字节/秒）</text>"));
        assert!(zh.contains(">时间（UTC）</text>"));
        assert!(zh.contains("日周"), "weekday ticks in Chinese: {zh}");
    }

    /// The structure of a small graph, whole: element order, classes, ticks and labels.
    #[test]
    fn snapshot_of_a_day_graph_in_english_and_chinese() {
        let now = at(6, 13, 7);
        let data = hourly(now, 24);
        let w = Window::new(Span::Day, now, Some(12)).unwrap();
        let en = vps(Metric::Disk, &w, refs(&data), Language::En);
        let zh = vps(Metric::Disk, &w, refs(&data), Language::Zh);
        insta::assert_snapshot!("day_disk_en", en.replace("><", ">\n<"));
        insta::assert_snapshot!("day_disk_zh", zh.replace("><", ">\n<"));
    }

    #[test]
    fn node_graphs_show_average_and_peak() {
        let now = at(6, 13, 7);
        let mut data = Vec::new();
        for k in 1..=48 {
            let t = Tier::Hourly.bucket_start(now - Duration::hours(k));
            let g = |v| Gauge::one(v).merge(&Gauge::one(v * 3));
            data.push((
                t,
                NodeBucket {
                    cpu_permille: g(200),
                    mem_used: g(1 << 30),
                    load_milli: g(500),
                    storage_free: g(100 << 30),
                },
            ));
        }
        let w = Window::new(Span::Week, now, None).unwrap();
        let it = || data.iter().map(|(t, b)| (t, b));
        let cpu = node(NodeMetric::Cpu, &w, it(), Language::En);
        assert!(cpu.contains(r#"data-series="average""#));
        assert!(cpu.contains(r#"data-series="peak""#));
        // Peak 60 %: the axis ends at 100 %.
        assert!(cpu.contains(">100 %</text>"), "{cpu}");
        let storage = node(NodeMetric::Storage, &w, it(), Language::Zh);
        assert!(storage.contains(">最低可用</text>"));
        assert!(storage.contains(" GiB</text>"), "{storage}");
        let load = node(NodeMetric::Load, &w, it(), Language::En);
        assert!(load.contains(">1</text>"), "{load}");
    }

    #[test]
    fn standing_is_a_percentile_among_numbers_only() {
        let s = standing(50, &[10, 20, 30, 100]);
        assert_eq!(s.percentile, Some(75));
        assert_eq!(s.others, 4);
        assert_eq!(s.band, [10, 20, 30, 50, 100]);
        assert_eq!(s.mine, 50);
        // Ties count half; alone, no percentile.
        assert_eq!(standing(5, &[5, 5]).percentile, Some(50));
        assert_eq!(standing(5, &[]).percentile, None);
        assert_eq!(standing(0, &[0, 0]).band, [0; 5]);
        assert_eq!(standing(u64::MAX, &[u64::MAX / 2]).mine, 100);
    }

    #[test]
    fn the_comparison_names_no_one() {
        let now = at(6, 13, 7);
        let w = Window::new(Span::Month, now, None).unwrap();
        let data = hourly(now, 24);
        let t = totals(&w, refs(&data));
        assert_eq!(t[2], 24 * (3 << 20));
        let rows = [
            standing(t[0], &[1, 2, 3]),
            standing(t[1], &[u64::MAX / 4]),
            standing(t[2], &[]),
        ];
        let en = compare(&rows, &w, Language::En);
        assert!(en.contains(">100th percentile of 4</text>"), "{en}");
        assert!(en.contains(">0th percentile of 2</text>"), "{en}");
        assert!(en.contains(">the only VPS on its node</text>"));
        assert_eq!(en.matches(r#"class="mine""#).count(), 3);
        let zh = compare(&rows, &w, Language::Zh);
        assert!(zh.contains(">4 台中的第 100 百分位</text>"), "{zh}");
        assert!(zh.contains(">网络</text>"));
    }

    #[test]
    fn values_are_written_in_their_units() {
        assert_eq!(fmt_value(1_500_000.0, Unit::BitsPerSecond), "1.5 Mbit/s");
        assert_eq!(fmt_value(0.0, Unit::BytesPerSecond), "0 B/s");
        assert_eq!(fmt_value(3.0 * 1024.0 * 1024.0, Unit::Bytes), "3 MiB");
        assert_eq!(fmt_value(0.25, Unit::Plain), "0.25");
        assert_eq!(nice_top(184_000.0, Unit::BitsPerSecond), 200_000.0);
        assert_eq!(nice_top(0.0, Unit::Percent), 100.0);
        assert_eq!(nice_top(3.0 * 1024.0, Unit::Bytes), 5.0 * 1024.0);
        assert_eq!(nice_top(f64::NAN, Unit::Plain), 1.0);
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
