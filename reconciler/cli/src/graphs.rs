//! The usage graphs drawn from the monitor's sample database: the hooks' `GraphSource` for
//! `gitvps serve --monitor-db` and the demo, and the drawing `gitvps monitor graph` shares.
//!
//! Reads one tier of the series a graph needs, over its window, and hands the buckets to
//! `monitor::graph`; nothing is decided here.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use executor::samples::{Store, StoreError};
use hooks::graphs::{GraphFailure, GraphMetric, GraphRange, GraphRequest, GraphSource};
use model::NodeId;
use model::values::Language;
use monitor::graph::{self, Metric, NodeMetric, Span, Window};

/// The monitor span of a requested range.
pub fn span(r: GraphRange) -> Span {
    match r {
        GraphRange::Day => Span::Day,
        GraphRange::Week => Span::Week,
        GraphRange::Month => Span::Month,
        GraphRange::Year => Span::Year,
    }
}

fn window(
    range: GraphRange,
    now: DateTime<Utc>,
    points: Option<u32>,
) -> Result<Window, GraphFailure> {
    Window::new(span(range), now, points).map_err(|e| GraphFailure::OutOfBounds(e.to_string()))
}

fn unavailable(e: &StoreError) -> GraphFailure {
    GraphFailure::Unavailable(model::diag::error_chain(e))
}

/// Draws a VPS graph (or its comparison with its node's other VPSes) from `store`.
pub fn draw_vps(
    store: &Store,
    req: &GraphRequest,
    now: DateTime<Utc>,
) -> Result<String, GraphFailure> {
    let w = window(req.range, now, req.points)?;
    let (tier, from, to) = (w.tier(), w.start(), w.end);
    let read = |v| {
        store
            .vps_range(v, tier, from, to)
            .map_err(|e| unavailable(&e))
    };
    let metric = match req.metric {
        GraphMetric::Cpu => Metric::Cpu,
        GraphMetric::Network => Metric::Network,
        GraphMetric::Disk => Metric::Disk,
        GraphMetric::Compare => {
            let mine = graph::totals(&w, read(&req.vps)?.range(tier, from, to));
            let mut others: [Vec<u64>; 3] = Default::default();
            for p in &req.peers {
                let t = graph::totals(&w, read(p)?.range(tier, from, to));
                for (o, v) in others.iter_mut().zip(t) {
                    o.push(v);
                }
            }
            let rows = [0, 1, 2].map(|i| graph::standing(mine[i], &others[i]));
            return Ok(graph::compare(&rows, &w, req.lang));
        }
    };
    let series = read(&req.vps)?;
    Ok(graph::vps(
        metric,
        &w,
        series.range(tier, from, to),
        req.lang,
    ))
}

/// Draws a node's overall usage (the operator's graph: `gitvps monitor graph --node`).
pub fn draw_node(
    store: &Store,
    node: &NodeId,
    metric: NodeMetric,
    range: GraphRange,
    points: Option<u32>,
    lang: Language,
    now: DateTime<Utc>,
) -> Result<String, GraphFailure> {
    let w = window(range, now, points)?;
    let (tier, from, to) = (w.tier(), w.start(), w.end);
    let series = store
        .node_range(node, tier, from, to)
        .map_err(|e| unavailable(&e))?;
    Ok(graph::node(metric, &w, series.range(tier, from, to), lang))
}

/// Where the samples are.
enum Db {
    /// A store this process holds (the demo, the monitor's own listener).
    Held(Arc<Store>),
    /// A database opened at the first graph and held from then on (sled locks it: while a
    /// collector holds it, graphs answer 503 and the next one tries again).
    Path(PathBuf, std::sync::Mutex<Option<Arc<Store>>>),
}

/// The hooks' graph source over the sample database.
pub struct StoreGraphs {
    db: Db,
}

impl StoreGraphs {
    /// Over a store this process holds.
    pub fn held(store: Arc<Store>) -> StoreGraphs {
        StoreGraphs {
            db: Db::Held(store),
        }
    }

    /// Over the database at `path`, opened now (or at the first graph, if it does not exist
    /// yet) and held: a foreign or corrupt database is refused before serving, never changed.
    pub fn at(path: PathBuf) -> Result<StoreGraphs, StoreError> {
        let held = if path.exists() {
            Some(Arc::new(Store::open(&path)?))
        } else {
            None
        };
        Ok(StoreGraphs {
            db: Db::Path(path, std::sync::Mutex::new(held)),
        })
    }
}

impl GraphSource for StoreGraphs {
    fn vps_graph(&self, req: &GraphRequest, now: DateTime<Utc>) -> Result<Vec<u8>, GraphFailure> {
        let svg = match &self.db {
            Db::Held(store) => draw_vps(store, req, now)?,
            Db::Path(path, held) => {
                let store = {
                    let mut held = held
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match &*held {
                        Some(s) => s.clone(),
                        None => {
                            // Never create it here: no collection has run yet.
                            if !path.exists() {
                                return Err(GraphFailure::Unavailable(format!(
                                    "{}: no monitor database yet (gitvps monitor has not collected)",
                                    path.display()
                                )));
                            }
                            let s = Arc::new(Store::open(path).map_err(|e| unavailable(&e))?);
                            *held = Some(s.clone());
                            s
                        }
                    }
                };
                draw_vps(&store, req, now)?
            }
        };
        Ok(svg.into_bytes())
    }
}
