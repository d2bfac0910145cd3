//! Observe and apply over SSH: nodes in parallel (bounded), steps in order within a node,
//! under the node's lock, re-checking the node's state before acting.

use std::collections::BTreeMap;
use std::sync::Arc;

use model::{Inventory, Node, NodeId};
use tokio::sync::Semaphore;

use crate::ssh::{Credentials, Session, SshTarget, Timeouts};
use planner::desired::{Desired, NodeSpec};
use planner::driver;
use planner::observe::{self, NodeState, Observation};
use planner::plan::{self, NodePlan, Step};
use planner::protocol::Marker;

/// How to reach every node.
#[derive(Debug, Clone)]
pub struct Access {
    /// Login credentials.
    pub creds: Credentials,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Nodes worked on at once.
    pub parallelism: usize,
    /// What was done over SSH, for benchmarks and tests.
    pub stats: Arc<ApplyStats>,
}

/// SSH work counted across nodes.
#[derive(Debug, Default)]
pub struct ApplyStats {
    /// Connections opened.
    pub connections: std::sync::atomic::AtomicU64,
    /// Commands run.
    pub execs: std::sync::atomic::AtomicU64,
}

impl ApplyStats {
    fn count(&self, sess: &Session) {
        use std::sync::atomic::Ordering::Relaxed;
        self.connections.fetch_add(1, Relaxed);
        self.execs
            .fetch_add(sess.counters.execs.load(Relaxed), Relaxed);
    }
}

/// The SSH target of a node file.
pub fn target_of(n: &Node) -> SshTarget {
    SshTarget {
        node: n.id.to_string(),
        host: n.address.to_string(),
        port: n.port,
        user: n.user.to_string(),
        host_key: n.host_key.to_string(),
    }
}

/// Observes the given nodes in parallel: one connection and one exec each.
pub async fn observe_all(
    inv: &Inventory,
    desired: &Desired,
    nodes: &[NodeId],
    access: &Access,
) -> BTreeMap<NodeId, Observation> {
    let sem = Arc::new(Semaphore::new(access.parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for id in nodes {
        let (Some(node), Some(spec)) = (inv.nodes.get(id), desired.nodes.get(id)) else {
            continue;
        };
        let target = target_of(node);
        let cmd = driver::observe_command(spec);
        let access = access.clone();
        let sem = sem.clone();
        let id = id.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let obs = match observe_one(&target, &cmd, &access).await {
                Ok(state) => Observation::Reachable(state),
                Err(reason) => Observation::Unreachable { reason },
            };
            (id, obs)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((id, obs)) = r {
            out.insert(id, obs);
        }
    }
    out
}

async fn observe_one(target: &SshTarget, cmd: &str, access: &Access) -> Result<NodeState, String> {
    let sess = Session::connect(target, &access.creds, access.timeouts)
        .await
        .map_err(|e| error_chain(&e))?;
    let out = sess.exec(cmd, None).await.map_err(|e| error_chain(&e));
    access.stats.count(&sess);
    sess.close().await;
    let out = out?;
    if !out.success() {
        return Err(observe::ObserveError::Failed {
            node: target.node.clone(),
            status: out.status,
            tail: out.tail(5),
        }
        .to_string());
    }
    observe::parse(&target.node, &out.stdout).map_err(|e| e.to_string())
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// What happened on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    /// Nothing to do.
    NoChanges,
    /// Every step ran.
    Applied {
        /// The steps.
        steps: Vec<Step>,
    },
    /// Some steps failed. A failed step skips the later steps of its VPS; the other
    /// VPSes of the node went on.
    Failed {
        /// Steps that ran.
        done: Vec<Step>,
        /// Steps that failed.
        failures: Vec<Failure>,
        /// Steps not run because an earlier step of their VPS failed (or the connection was lost).
        skipped: Vec<Step>,
    },
    /// The node could not be reached or answered garbage; nothing was done.
    Unreachable {
        /// Why.
        reason: String,
    },
    /// Apply refused to act (stale plan, lock held, ...); nothing was done.
    Refused {
        /// Why.
        reason: String,
    },
}

/// A step that failed on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The step.
    pub step: Step,
    /// Its exit code (-1 when the connection was lost).
    pub rc: i32,
    /// Its last lines of output.
    pub tail: String,
}

/// Receives progress while nodes are applied.
pub trait Progress: Send + Sync {
    /// A step starts.
    fn started(&self, node: &NodeId, index: usize, total: usize, step: &Step);
    /// A step succeeded.
    fn succeeded(&self, node: &NodeId, index: usize, total: usize, step: &Step);
}

/// Progress as `tracing` events.
#[derive(Debug, Default)]
pub struct LogProgress;

impl Progress for LogProgress {
    fn started(&self, node: &NodeId, index: usize, total: usize, step: &Step) {
        tracing::info!(%node, vps = %step.vps, "[{}/{total}] {}", index + 1, step.op.describe());
    }
    fn succeeded(&self, node: &NodeId, index: usize, total: usize, step: &Step) {
        tracing::debug!(%node, vps = %step.vps, "[{}/{total}] done", index + 1);
    }
}

/// Applies every node in parallel. With `given`, a node is applied only if its state and
/// its steps are exactly those of the given plan; without, each node is planned afresh
/// under its lock.
pub async fn apply_all(
    inv: &Inventory,
    desired: &Arc<Desired>,
    nodes: &[NodeId],
    given: Option<&plan::Plan>,
    access: &Access,
    progress: Arc<dyn Progress>,
) -> BTreeMap<NodeId, NodeOutcome> {
    let sem = Arc::new(Semaphore::new(access.parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for id in nodes {
        let (Some(node), Some(_)) = (inv.nodes.get(id), desired.nodes.get(id)) else {
            continue;
        };
        let given_node = given.map(|p| p.nodes.iter().find(|n| n.node() == id).cloned());
        let target = target_of(node);
        let access = access.clone();
        let sem = sem.clone();
        let desired = desired.clone();
        let id = id.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let out = apply_node(
                &desired,
                &id,
                &target,
                given_node,
                &access,
                progress.as_ref(),
            )
            .await;
            (id, out)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((id, o)) = r {
            out.insert(id, o);
        }
    }
    out
}

async fn apply_node(
    desired: &Desired,
    id: &NodeId,
    target: &SshTarget,
    given: Option<Option<NodePlan>>,
    access: &Access,
    progress: &dyn Progress,
) -> NodeOutcome {
    let Some(spec) = desired.nodes.get(id) else {
        return NodeOutcome::Refused {
            reason: "not in the inventory".into(),
        };
    };
    let sess = match Session::connect(target, &access.creds, access.timeouts).await {
        Ok(s) => s,
        Err(e) => {
            return NodeOutcome::Unreachable {
                reason: error_chain(&e),
            };
        }
    };
    let out = run_locked(desired, spec, &sess, given, progress).await;
    access.stats.count(&sess);
    sess.close().await;
    out
}

async fn run_locked(
    desired: &Desired,
    spec: &NodeSpec,
    sess: &Session,
    given: Option<Option<NodePlan>>,
    progress: &dyn Progress,
) -> NodeOutcome {
    let node = &spec.node;
    let unreachable = |e: crate::ssh::SshError| NodeOutcome::Unreachable {
        reason: error_chain(&e),
    };
    let mut run = match sess.start(&driver::apply_command(spec)).await {
        Ok(r) => r,
        Err(e) => return unreachable(e),
    };
    // 1. Observe under the lock.
    let mut report = String::new();
    loop {
        match run.line().await {
            Err(e) => return unreachable(e),
            Ok(None) => {
                let tail = match run.finish().await {
                    Ok((status, err)) => {
                        format!("exit {status:?}: {}", String::from_utf8_lossy(&err).trim())
                    }
                    Err(e) => error_chain(&e),
                };
                return NodeOutcome::Unreachable {
                    reason: format!(
                        "{node}: the node ended the session before reporting its state ({tail})"
                    ),
                };
            }
            Ok(Some(l)) if Marker::parse(&l) == Some(Marker::Observed) => break,
            Ok(Some(l)) if Marker::parse(&l) == Some(Marker::Locked) => {
                return NodeOutcome::Refused {
                    reason: format!(
                        "another apply held the lock on {node} for {} s",
                        driver::LOCK_WAIT_SECS
                    ),
                };
            }
            Ok(Some(l)) => {
                report.push_str(&l);
                report.push('\n');
            }
        }
    }
    let state = match observe::parse(node.as_str(), report.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            let _ = run.send_all(b"no\n").await;
            return NodeOutcome::Unreachable {
                reason: e.to_string(),
            };
        }
    };
    // 2. Decide: the fresh plan, which must equal the given one if there is one.
    let fresh = plan::plan_node(desired, spec, &state);
    if let Some(given) = given {
        let refusal = match given {
            None => Some(format!("the plan file has no entry for {node}")),
            Some(NodePlan::Unreachable { .. }) => {
                Some(format!("{node} was unreachable when the plan was made"))
            }
            Some(g @ NodePlan::Reachable { .. }) => match (&g, &fresh) {
                (
                    NodePlan::Reachable { digest: gd, .. },
                    NodePlan::Reachable { digest: fd, .. },
                ) if gd != fd => Some(format!(
                    "{node} changed since the plan was made (state {gd} → {fd}); run gitvps plan again"
                )),
                _ if g.steps() != fresh.steps() => Some(format!(
                    "the plan for {node} was made from another inventory; run gitvps plan again"
                )),
                _ => None,
            },
        };
        if let Some(reason) = refusal {
            let _ = run.send_all(b"no\n").await;
            let _ = run.finish().await;
            return NodeOutcome::Refused { reason };
        }
    }
    let steps = fresh.steps().to_vec();
    if steps.is_empty() {
        let _ = run.send_all(b"no\n").await;
        let _ = run.finish().await;
        return NodeOutcome::NoChanges;
    }
    // 3. Act, reading progress.
    let mut input = b"go\n".to_vec();
    input.extend_from_slice(driver::steps_script(spec, &steps).as_bytes());
    if let Err(e) = run.send_all(&input).await {
        return unreachable(e);
    }
    let total = steps.len();
    let (mut done, mut failures, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
    let mut tail = Vec::new();
    let mut finished = false;
    loop {
        let line = match run.line().await {
            Err(e) => {
                tail = vec![format!("the connection was lost: {}", error_chain(&e))];
                break;
            }
            Ok(None) => break,
            Ok(Some(l)) => l,
        };
        match Marker::parse(&line) {
            Some(Marker::Begin(i)) if i < total => {
                tail.clear();
                progress.started(node, i, total, &steps[i]);
            }
            Some(Marker::Ok(i)) if i < total => {
                progress.succeeded(node, i, total, &steps[i]);
                done.push(i);
            }
            Some(Marker::Skip(i)) if i < total => skipped.push(i),
            Some(Marker::Fail { step: i, rc }) if i < total => failures.push(Failure {
                step: steps[i].clone(),
                rc,
                tail: tail.join("\n"),
            }),
            Some(Marker::Out(text)) => tail.push(text),
            Some(Marker::Done) => {
                finished = true;
                break;
            }
            _ => {}
        }
    }
    let _ = run.finish().await;
    if !finished {
        // The session ended early: whatever did not report is unknown, and a re-run converges.
        let reported: std::collections::BTreeSet<usize> = done
            .iter()
            .chain(&skipped)
            .copied()
            .chain(
                failures
                    .iter()
                    .filter_map(|f: &Failure| steps.iter().position(|s| *s == f.step)),
            )
            .collect();
        if let Some(first) = (0..total).find(|i| !reported.contains(i)) {
            failures.push(Failure {
                step: steps[first].clone(),
                rc: -1,
                tail: if tail.is_empty() {
                    "the apply script ended early".into()
                } else {
                    tail.join("\n")
                },
            });
            skipped.extend((first + 1..total).filter(|i| !reported.contains(i)));
        }
    }
    if failures.is_empty() && skipped.is_empty() {
        return NodeOutcome::Applied { steps };
    }
    let pick = |ix: &[usize]| ix.iter().map(|&i| steps[i].clone()).collect::<Vec<_>>();
    NodeOutcome::Failed {
        done: pick(&done),
        failures,
        skipped: pick(&skipped),
    }
}
