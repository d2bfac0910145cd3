//! Usage graphs for the customer routes: what a graph request asks for, parsed and checked
//! here, and [`GraphSource`], the trait that draws it from the monitor's samples.
//!
//! The hooks depend on `model` only: the binary implements [`GraphSource`] over the monitor's
//! sample database and hands it in ([`crate::Config::graphs`]). The hooks decide who may see
//! which VPS's graph (its owner; 404 for anyone else) and which of its node's VPSes it is
//! compared with; the source sees ids only and answers an SVG with no one else's id in it.

use chrono::{DateTime, Utc};
use model::values::Language;
use model::{NodeId, VpsId};

/// What a VPS graph shows (`metric=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphMetric {
    /// CPU time.
    Cpu,
    /// Network bits per second, in and out.
    Network,
    /// Disk bytes per second, read and written.
    Disk,
    /// "My VPS vs others": where the VPS stands among its node's VPSes, as percentiles.
    Compare,
}

/// The time a graph covers, ending now (`range=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GraphRange {
    /// 24 hours.
    Day,
    /// 7 days.
    Week,
    /// 30 days.
    Month,
    /// 365 days.
    Year,
}

impl GraphMetric {
    /// Every metric with its spelling.
    pub const ALL: [(&'static str, GraphMetric); 4] = [
        ("cpu", GraphMetric::Cpu),
        ("network", GraphMetric::Network),
        ("disk", GraphMetric::Disk),
        ("compare", GraphMetric::Compare),
    ];
}

impl GraphRange {
    /// Every range with its spelling.
    pub const ALL: [(&'static str, GraphRange); 4] = [
        ("day", GraphRange::Day),
        ("week", GraphRange::Week),
        ("month", GraphRange::Month),
        ("year", GraphRange::Year),
    ];
}

/// The query of a graph request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphQuery {
    /// What it shows (`cpu` by default).
    pub metric: GraphMetric,
    /// Its range (`day` by default).
    pub range: GraphRange,
    /// Its resolution in points (the range's default when `None`); the source bounds it.
    pub points: Option<u32>,
    /// The labels' language (`None`: the customer's).
    pub lang: Option<Language>,
}

/// Longest `points` value read (digits): anything longer is out of bounds anyway.
const POINTS_DIGITS: usize = 6;

impl GraphQuery {
    /// Parses `metric`, `range`, `points` and `lang` from a query string; an unknown
    /// parameter, a repeated one or a value out of its set is an error naming it (HTTP 400).
    pub fn parse(query: Option<&str>) -> Result<GraphQuery, String> {
        let mut q = GraphQuery {
            metric: GraphMetric::Cpu,
            range: GraphRange::Day,
            points: None,
            lang: None,
        };
        let mut seen: Vec<&str> = Vec::new();
        let shown = |v: &str| {
            v.chars()
                .take(40)
                .collect::<String>()
                .escape_debug()
                .to_string()
        };
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if seen.contains(&name) {
                return Err(format!("`{}` is given twice", shown(name)));
            }
            let one_of = |all: &[&str]| {
                format!(
                    "`{name}` is one of {}, not `{}`",
                    all.join(", "),
                    shown(value)
                )
            };
            match name {
                "metric" => {
                    q.metric = find(&GraphMetric::ALL, value)
                        .ok_or_else(|| one_of(&GraphMetric::ALL.map(|(n, _)| n)))?;
                }
                "range" => {
                    q.range = find(&GraphRange::ALL, value)
                        .ok_or_else(|| one_of(&GraphRange::ALL.map(|(n, _)| n)))?;
                }
                "points" => {
                    let ok = !value.is_empty()
                        && value.len() <= POINTS_DIGITS
                        && value.bytes().all(|b| b.is_ascii_digit());
                    let n = value.parse::<u32>().ok().filter(|_| ok).ok_or_else(|| {
                        format!("`points` is a number of points, not `{}`", shown(value))
                    })?;
                    q.points = Some(n);
                }
                "lang" => {
                    q.lang = Some(
                        model::values::parse_keyword::<Language>(value)
                            .map_err(|_| "`lang` is `en` or `zh`".to_owned())?,
                    );
                }
                _ => {
                    return Err(format!(
                        "unknown query parameter `{}`: a graph reads metric, range, points and lang",
                        shown(name)
                    ));
                }
            }
            seen.push(name);
        }
        Ok(q)
    }
}

fn find<T: Copy>(all: &[(&str, T)], v: &str) -> Option<T> {
    all.iter().find(|(n, _)| *n == v).map(|(_, t)| *t)
}

/// A checked request: the caller owns `vps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRequest {
    /// The VPS.
    pub vps: VpsId,
    /// Its node.
    pub node: NodeId,
    /// The other live VPSes of its node, for [`GraphMetric::Compare`]: ids for the source to
    /// read, never shown.
    pub peers: Vec<VpsId>,
    /// What to draw.
    pub metric: GraphMetric,
    /// Over which range.
    pub range: GraphRange,
    /// In how many points.
    pub points: Option<u32>,
    /// In which language.
    pub lang: Language,
}

/// Why a source drew nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphFailure {
    /// The request is out of the source's bounds (HTTP 400): a resolution it cannot draw.
    #[error("{0}")]
    OutOfBounds(String),
    /// The samples cannot be read now (HTTP 503); the text is for the log, not the customer.
    #[error("{0}")]
    Unavailable(String),
}

/// Draws graphs from the monitor's samples: the binary's side of the graph routes.
pub trait GraphSource: Send + Sync {
    /// The SVG of `req` at `now`. Called on a blocking thread.
    fn vps_graph(&self, req: &GraphRequest, now: DateTime<Utc>) -> Result<Vec<u8>, GraphFailure>;
}

/// The request for `vps` of `customer` on `inv`: `None` unless the customer owns it (a
/// destroyed VPS is no one's); a suspended VPS's graphs stay visible, like its status.
pub fn request(
    inv: &model::Inventory,
    customer: &model::CustomerId,
    vps: &VpsId,
    q: &GraphQuery,
) -> Option<GraphRequest> {
    let v = crate::decide::own_vps(inv, customer, vps, true).ok()?;
    let lang = q.lang.unwrap_or_else(|| {
        inv.customers
            .get(customer)
            .map_or(Language::En, |c| c.language)
    });
    let peers = inv
        .vps
        .values()
        .filter(|o| o.node == v.node && o.id != v.id && o.state != model::values::State::Destroyed)
        .map(|o| o.id.clone())
        .collect();
    Some(GraphRequest {
        vps: v.id.clone(),
        node: v.node.clone(),
        peers,
        metric: q.metric,
        range: q.range,
        points: q.points,
        lang,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_parsed_strictly() {
        let q = GraphQuery::parse(Some("metric=network&range=month&points=120&lang=zh")).unwrap();
        assert_eq!(
            q,
            GraphQuery {
                metric: GraphMetric::Network,
                range: GraphRange::Month,
                points: Some(120),
                lang: Some(Language::Zh),
            }
        );
        let d = GraphQuery::parse(None).unwrap();
        assert_eq!(
            (d.metric, d.range, d.points),
            (GraphMetric::Cpu, GraphRange::Day, None)
        );
        for (bad, says) in [
            (
                "range=decade",
                "`range` is one of day, week, month, year, not `decade`",
            ),
            (
                "metric=memory",
                "`metric` is one of cpu, network, disk, compare",
            ),
            ("points=-1", "`points` is a number of points, not `-1`"),
            ("points=99999999999", "`points` is a number"),
            ("points=", "`points` is a number"),
            ("lang=fr", "`lang` is `en` or `zh`"),
            ("range=day&range=week", "`range` is given twice"),
            ("node=xen1", "unknown query parameter `node`"),
            ("range=<script>", "not `<script>`"),
        ] {
            let e = GraphQuery::parse(Some(bad)).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
