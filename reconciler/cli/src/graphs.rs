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

/// The hooks' graph source over the monitor service's listener (`gitvps serve --monitor-url`):
/// the hooks check who owns the VPS, the service that holds the database draws. Plain HTTP to
/// an address of the operator's (loopback or a private network), like Prometheus's scrape.
pub struct MonitorGraphs {
    /// `host:port` of the listener.
    authority: String,
}

/// Most bytes of an answer read from the listener (a year graph is about 30 KB).
const ANSWER_MAX: u64 = 4 << 20;

impl MonitorGraphs {
    /// The listener at `url` (`http://HOST:PORT`, a trailing `/` allowed); anything else is an
    /// error naming what was given.
    pub fn at(url: &str) -> Result<MonitorGraphs, String> {
        let authority = url
            .strip_prefix("http://")
            .map(|r| r.strip_suffix('/').unwrap_or(r))
            .filter(|a| {
                !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .ok_or_else(|| {
                format!(
                    "--monitor-url `{}` is not http://HOST:PORT (the monitor's [monitor] listen)",
                    url.escape_debug()
                )
            })?;
        Ok(MonitorGraphs {
            authority: authority.to_owned(),
        })
    }

    /// The path and query of `req` on the listener.
    fn path(req: &GraphRequest) -> String {
        fn name<T: PartialEq>(all: &[(&'static str, T)], v: T) -> &'static str {
            all.iter().find(|(_, x)| *x == v).map_or("", |(n, _)| *n)
        }
        let mut p = format!(
            "/graphs/vps/{}?metric={}&range={}&lang={}",
            req.vps,
            name(&GraphMetric::ALL, req.metric),
            name(&GraphRange::ALL, req.range),
            model::values::Keyword::as_str(req.lang),
        );
        if let Some(n) = req.points {
            p.push_str(&format!("&points={n}"));
        }
        p
    }

    /// One GET: the status code and the body.
    fn get(&self, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
        use std::io::{Read, Write};
        use std::net::ToSocketAddrs;
        let timeout = std::time::Duration::from_secs(10);
        let addr = self
            .authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other("the address resolves to nothing"))?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.authority
        )?;
        let mut answer = Vec::new();
        s.take(ANSWER_MAX).read_to_end(&mut answer)?;
        let bad = |why: &str| std::io::Error::other(why.to_owned());
        let end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| bad("no end of headers"))?;
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        if head.contains("transfer-encoding:") {
            return Err(bad("a chunked answer"));
        }
        let code = head
            .strip_prefix("http/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad("no HTTP/1.1 status line"))?;
        Ok((code, answer[end + 4..].to_vec()))
    }
}

impl GraphSource for MonitorGraphs {
    fn vps_graph(&self, req: &GraphRequest, _now: DateTime<Utc>) -> Result<Vec<u8>, GraphFailure> {
        let why = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
        match self.get(&Self::path(req)) {
            Ok((200, svg)) => Ok(svg),
            Ok((400, body)) => Err(GraphFailure::OutOfBounds(why(&body))),
            Ok((code, body)) => Err(GraphFailure::Unavailable(format!(
                "the monitor at {} answered {code}: {}",
                self.authority,
                why(&body)
            ))),
            Err(e) => Err(GraphFailure::Unavailable(format!(
                "the monitor at {}: {e}",
                self.authority
            ))),
        }
    }
}
