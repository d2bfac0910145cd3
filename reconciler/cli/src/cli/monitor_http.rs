//! The monitor service's HTTP listener: `/metrics` in Prometheus's text exposition format, read
//! from the sample store and the collector's health; one `Router` that other routes merge into.
//!
//! Only `gitvps monitor` (the service) listens, and only with `[monitor] listen` or `--listen`;
//! `gitvps monitor collect --once` never does. Labels are ids and check names, nothing secret.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use executor::samples::{Store, StoreError};
use model::{NodeId, VpsId};
use monitor::metrics::{CheckLine, Health, NodeLine, VpsLine};

/// The exposition format's content type (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the page lists, as of the last collection: the VPSes of the collected nodes with
/// their node, and those nodes.
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    /// Each VPS and the node it is on.
    pub vps: Vec<(VpsId, NodeId)>,
    /// The nodes collected.
    pub nodes: Vec<NodeId>,
}

impl Fleet {
    /// The inventory's VPSes on `nodes`, and `nodes`.
    pub fn of(inv: &model::Inventory, nodes: &[NodeId]) -> Fleet {
        Fleet {
            vps: inv
                .vps
                .values()
                .filter(|v| nodes.contains(&v.node))
                .map(|v| (v.id.clone(), v.node.clone()))
                .collect(),
            nodes: nodes.to_vec(),
        }
    }
}

/// What the listener reads: the store, and what the collector last told it.
#[derive(Debug)]
pub struct Shared {
    /// The sample store the collector writes.
    pub store: Arc<Store>,
    health: Mutex<Health>,
    fleet: Mutex<Fleet>,
}

impl Shared {
    /// A listener's state over `store`, with nothing collected yet.
    pub fn new(store: Arc<Store>) -> Arc<Shared> {
        Arc::new(Shared {
            store,
            health: Mutex::new(Health::default()),
            fleet: Mutex::new(Fleet::default()),
        })
    }

    /// The fleet the next pages list.
    pub fn set_fleet(&self, fleet: Fleet) {
        *self.fleet.lock().unwrap_or_else(PoisonError::into_inner) = fleet;
    }

    /// Records a finished collection: when it ended, how long it took, the nodes missing in
    /// it; `None` when it failed as a whole.
    pub fn cycle_done(&self, end: DateTime<Utc>, secs: f64, nodes_missing: Option<u64>) {
        let mut h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        h.cycles += 1;
        h.last_end = Some(end);
        h.last_secs = secs;
        match nodes_missing {
            Some(n) => {
                h.last_nodes_missing = n;
                h.last_ok = n == 0;
            }
            None => {
                h.errors += 1;
                h.last_ok = false;
            }
        }
    }

    /// The page as of now.
    pub fn page(&self) -> Result<String, StoreError> {
        let fleet = self
            .fleet
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let health = self
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        page(&self.store, &fleet, &health)
    }
}

/// The `/metrics` page for `fleet` from `store`: every VPS and node with a reading, every
/// stored check state of the fleet's VPSes.
pub fn page(store: &Store, fleet: &Fleet, health: &Health) -> Result<String, StoreError> {
    let mut samples = Vec::with_capacity(fleet.vps.len());
    for (vps, node) in &fleet.vps {
        if let Some(s) = store.last_vps(vps)? {
            samples.push((vps, node, s));
        }
    }
    let vps: Vec<VpsLine<'_>> = samples
        .iter()
        .map(|(v, n, s)| VpsLine {
            vps: v.as_str(),
            node: n.as_str(),
            sample: *s,
        })
        .collect();
    let mut last = Vec::with_capacity(fleet.nodes.len());
    for n in &fleet.nodes {
        if let Some((at, bucket)) = store.last_node(n)? {
            last.push(NodeLine {
                node: n.as_str(),
                at,
                bucket,
            });
        }
    }
    let states = store.check_states()?;
    let ours: std::collections::BTreeSet<&VpsId> = fleet.vps.iter().map(|(v, _)| v).collect();
    let checks: Vec<CheckLine<'_>> = states
        .iter()
        .filter(|(v, _)| ours.contains(v))
        .flat_map(|(v, cs)| {
            cs.values().map(move |c| CheckLine {
                vps: v.as_str(),
                check: &c.label,
                status: c.status,
                paused: c.paused,
            })
        })
        .collect();
    Ok(monitor::metrics::render(&vps, &last, &checks, health))
}

/// The listener's routes: `GET /metrics`; any other path is 404.
pub fn router(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let page = tokio::task::spawn_blocking(move || s.page()).await;
    match page {
        Ok(Ok(text)) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Ok(Err(e)) => {
            tracing::error!("/metrics: {}", model::diag::error_chain(&e));
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the sample store cannot be read; see the collector's log\n",
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!("/metrics: {e}");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Binds `addr` and serves `router` on it until the returned task is aborted; prints the
/// address bound (port 0 picks a free one).
pub async fn listen(
    addr: SocketAddr,
    router: Router,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "gitvps monitor: serving /metrics");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("gitvps monitor: listening on http://{bound}/metrics");
    }
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("the /metrics listener stopped: {e}");
        }
    }))
}
