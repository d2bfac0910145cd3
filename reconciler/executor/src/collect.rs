//! Usage collection over SSH: every node in parallel, one connection and one exec of the collect
//! script each, under a deadline; a node that stalls or answers garbage is missing, never guessed.
//!
//! What the node printed is read by `gitvps-monitor` (`monitor::report`); this module only runs
//! the script and says, per node, what came back and how long it took.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use model::values::{Power, State};
use model::{Inventory, NodeId, VpsId};
use monitor::report::{self, NodeReport, ReportError};
use planner::desired::Desired;
use planner::driver;
use tokio::sync::Semaphore;

use crate::apply::{Access, target_of};
use crate::pool;
use crate::ssh::{SshError, SshTarget, Timeouts};

/// What one node's collection gave.
#[derive(Debug)]
pub struct Collected {
    /// When the answer was complete (the collector's clock: the node's is not trusted).
    pub at: DateTime<Utc>,
    /// How long connecting, running and reading took.
    pub elapsed: Duration,
    /// The VPSes the inventory runs there (active and powered on): what should be sampled.
    pub expected: Vec<VpsId>,
    /// The report, or why there is none (then every expected VPS is missing this time).
    pub outcome: Result<NodeReport, CollectError>,
}

impl Collected {
    /// The expected VPSes the report has no reading of.
    pub fn missing(&self) -> Vec<&VpsId> {
        match &self.outcome {
            Ok(r) => self
                .expected
                .iter()
                .filter(|v| !r.guests.contains_key(v.as_str()))
                .collect(),
            Err(_) => self.expected.iter().collect(),
        }
    }
}

/// Why a node gave no report.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The SSH connection failed or was lost.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The node did not answer whole within the deadline.
    #[error("{node}: no complete answer within {secs} s; its samples are missing this time")]
    Deadline {
        /// The node.
        node: String,
        /// The deadline.
        secs: u64,
    },
    /// The collect script failed as a whole.
    #[error("{node}: the collect script exited with status {status:?}: {tail}")]
    Failed {
        /// The node.
        node: String,
        /// Its exit status.
        status: Option<u32>,
        /// Its last lines of error output.
        tail: String,
    },
    /// The answer is not a collect document, or a source every sample needs failed.
    #[error("{node}: its answer cannot be read")]
    Report {
        /// The node.
        node: String,
        /// What is wrong with it.
        #[source]
        source: ReportError,
    },
}

/// The VPSes the inventory runs on `node` (active and powered on).
fn expected_on(inv: &Inventory, node: &NodeId) -> Vec<VpsId> {
    inv.vps
        .values()
        .filter(|v| &v.node == node && v.state == State::Active && v.power == Power::Running)
        .map(|v| v.id.clone())
        .collect()
}

/// Collects the given nodes in parallel (at most `access.parallelism` at once), each within
/// `deadline` from its start (connecting included).
pub async fn collect_all(
    inv: &Inventory,
    desired: &Desired,
    nodes: &[NodeId],
    access: &Access,
    deadline: Duration,
) -> BTreeMap<NodeId, Collected> {
    let sem = Arc::new(Semaphore::new(access.parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for id in nodes {
        let (Some(node), Some(spec)) = (inv.nodes.get(id), desired.nodes.get(id)) else {
            continue;
        };
        let target = target_of(node);
        let cmd = driver::collect_command(spec);
        let access = access.clone();
        let sem = sem.clone();
        let id = id.clone();
        let expected = expected_on(inv, &id);
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let start = Instant::now();
            let outcome = collect_one(&target, &cmd, &access, deadline).await;
            if let Err(e) = &outcome {
                tracing::warn!(node = %id, "samples missing: {}", model::diag::error_chain(e));
            }
            if let Ok(r) = &outcome {
                for p in &r.problems {
                    tracing::warn!(node = %id, "{p}");
                }
            }
            let c = Collected {
                at: Utc::now(),
                elapsed: start.elapsed(),
                expected,
                outcome,
            };
            (id, c)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((id, c)) = r {
            out.insert(id, c);
        }
    }
    out
}

async fn collect_one(
    target: &SshTarget,
    cmd: &str,
    access: &Access,
    deadline: Duration,
) -> Result<NodeReport, CollectError> {
    let timeouts = Timeouts {
        connect: access.timeouts.connect.min(deadline),
        command: deadline,
    };
    let pool = access.pool.as_deref();
    let run = async {
        let conn = pool::connect(pool, target, &access.creds, timeouts).await?;
        let mut out = conn.exec(cmd, None).await;
        // A kept connection that failed may be stale: one fresh try within the deadline.
        if out.is_err()
            && let Some(p) = pool
        {
            p.forget(&target.node).await;
            if conn.reused() {
                let fresh = p.get(target, &access.creds, timeouts).await?;
                out = fresh.exec(cmd, None).await;
                if out.is_err() {
                    p.forget(&target.node).await;
                }
                fresh.done().await;
            }
        }
        conn.done().await;
        out
    };
    let out = match tokio::time::timeout(deadline, run).await {
        Err(_) => {
            // A kept connection may be mid-command: never lend it again.
            if let Some(p) = pool {
                p.forget(&target.node).await;
            }
            return Err(CollectError::Deadline {
                node: target.node.clone(),
                secs: deadline.as_secs(),
            });
        }
        Ok(r) => r?,
    };
    if !out.success() {
        return Err(CollectError::Failed {
            node: target.node.clone(),
            status: out.status,
            tail: out.tail(5),
        });
    }
    report::read(&String::from_utf8_lossy(&out.stdout)).map_err(|source| CollectError::Report {
        node: target.node.clone(),
        source,
    })
}
