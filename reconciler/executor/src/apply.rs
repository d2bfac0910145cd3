//! Observe and apply over SSH: nodes in parallel (bounded), steps in order within a node,
//! under the node's lock, re-checking the node's state before acting.

use std::collections::BTreeMap;
use std::sync::Arc;

use model::{Inventory, Node, NodeId};
use tokio::sync::Semaphore;

use crate::pool::{self, Conn, Pool};
use crate::ssh::{Credentials, Running, SshError, SshTarget, Timeouts};
use planner::desired::{Desired, NodeSpec};
use planner::driver;
use planner::moves::Move;
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
    /// Connections kept across cycles (the demo's apply loop); `None`: one per run.
    pub pool: Option<Arc<Pool>>,
    /// The backup repository's secrets, sent with steps that restore a backup (and only
    /// then); `None`: such steps fail on the node, saying so, before the VPS is touched.
    pub restic: Option<crate::backup::Secrets>,
}

impl Access {
    /// A connection to `target`: kept by the pool if there is one, else fresh.
    pub async fn connect(&self, target: &SshTarget) -> Result<Conn, SshError> {
        pool::connect(self.pool.as_deref(), target, &self.creds, self.timeouts).await
    }

    /// After `conn` failed: forgets it if it was a kept one reused from an earlier cycle, and
    /// returns a fresh connection for one more try; `None` when a retry would not help.
    pub async fn retry(&self, conn: &Conn, target: &SshTarget) -> Option<Result<Conn, SshError>> {
        let pool = self.pool.as_deref()?;
        pool.forget(&target.node).await;
        if !conn.reused() {
            return None;
        }
        tracing::debug!(node = %target.node, "a kept connection failed; trying a fresh one");
        Some(pool.get(target, &self.creds, self.timeouts).await)
    }
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
    /// Counts the work done on `conn` since it had run `execs_before` commands: a connection
    /// when it was opened for this work.
    fn count(&self, conn: &Conn, execs_before: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        if !conn.reused() {
            self.connections.fetch_add(1, Relaxed);
        }
        let now = conn.counters.execs.load(Relaxed);
        self.execs
            .fetch_add(now.saturating_sub(execs_before), Relaxed);
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
    each_node(
        inv,
        desired,
        nodes,
        access,
        driver::observe_command,
        |_, target, cmd, access| async move {
            match observe_one(&target, &cmd, &access).await {
                Ok(state) => Observation::Reachable(state),
                // The plan document carries the reason as text, with its causes.
                Err(e) => Observation::Unreachable {
                    reason: model::diag::error_chain(&e),
                },
            }
        },
    )
    .await
}

/// Runs `work` for each of `nodes` that the inventory and the desired state have, in parallel
/// (at most `access.parallelism` at once), handing it the node, its SSH target and the command
/// `command` builds for it now; what each returned, by node.
async fn each_node<T, F, Fut>(
    inv: &Inventory,
    desired: &Desired,
    nodes: &[NodeId],
    access: &Access,
    command: fn(&NodeSpec, i64) -> String,
    work: F,
) -> BTreeMap<NodeId, T>
where
    T: Send + 'static,
    F: Fn(NodeId, SshTarget, String, Access) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(access.parallelism.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for id in nodes {
        let (Some(node), Some(spec)) = (inv.nodes.get(id), desired.nodes.get(id)) else {
            continue;
        };
        let cmd = command(spec, chrono::Utc::now().timestamp());
        let run = work(id.clone(), target_of(node), cmd, access.clone());
        let sem = sem.clone();
        let id = id.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            (id, run.await)
        });
    }
    let mut out = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok((id, v)) = r {
            out.insert(id, v);
        }
    }
    out
}

async fn observe_one(
    target: &SshTarget,
    cmd: &str,
    access: &Access,
) -> Result<NodeState, NodeError> {
    let stdout = observe_raw(target, cmd, access).await?;
    Ok(observe::parse(&target.node, &stdout)?)
}

/// Observes one node for `gitvps import` (one connection, one exec of
/// [`driver::import_command`]) and returns what it printed: the observe report (with `xl list
/// -l` on Xen), on KVM followed by a line with the guests' QEMU arguments.
pub async fn import_report(
    node: &Node,
    spec: &NodeSpec,
    access: &Access,
) -> Result<Vec<u8>, NodeError> {
    let cmd = driver::import_command(spec, chrono::Utc::now().timestamp());
    observe_raw(&target_of(node), &cmd, access).await
}

async fn observe_raw(target: &SshTarget, cmd: &str, access: &Access) -> Result<Vec<u8>, NodeError> {
    let mut conn = access.connect(target).await?;
    let mut before = execs(&conn);
    let mut out = conn.exec(cmd, None).await;
    if out.is_err()
        && let Some(fresh) = access.retry(&conn, target).await
    {
        access.stats.count(&conn, before);
        conn = fresh?;
        before = execs(&conn);
        out = conn.exec(cmd, None).await;
    }
    access.stats.count(&conn, before);
    conn.done().await;
    let out = out?;
    if !out.success() {
        return Err(observe::ObserveError::Failed {
            node: target.node.clone(),
            status: out.status,
            tail: out.tail(5),
        }
        .into());
    }
    Ok(out.stdout)
}

/// Why a node could not be observed or worked on: nothing was done on it.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The SSH connection failed or was lost.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The node's report could not be read.
    #[error(transparent)]
    Observe(#[from] observe::ObserveError),
    /// The apply envelope ended before the node reported its state.
    #[error("{node}: the node ended the session before reporting its state ({detail})")]
    EndedEarly {
        /// The node.
        node: NodeId,
        /// Its exit status and error output, or the transport error.
        detail: String,
    },
}

/// Why apply would not act on a reachable node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The node is not (or no longer) in the inventory.
    #[error("{0} is not in the inventory")]
    NotInInventory(NodeId),
    /// Another apply held the node's lock.
    #[error("another apply held the lock on {node} for {secs} s")]
    Locked {
        /// The node.
        node: NodeId,
        /// How long apply waited.
        secs: u32,
    },
    /// The saved plan does not mention the node.
    #[error("the plan file has no entry for {0}")]
    NotInPlan(NodeId),
    /// The saved plan could not see the node.
    #[error("{0} was unreachable when the plan was made")]
    UnreachableWhenPlanned(NodeId),
    /// The node's state moved on since the plan was made.
    #[error(
        "{node} changed since the plan was made (state {planned} → {now}); run gitvps plan again"
    )]
    Changed {
        /// The node.
        node: NodeId,
        /// The state digest in the plan.
        planned: String,
        /// The state digest now.
        now: String,
    },
    /// The plan's steps are not the ones this inventory gives.
    #[error("the plan for {0} was made from another inventory; run gitvps plan again")]
    OtherInventory(NodeId),
}

/// What happened on one node.
#[derive(Debug)]
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
    Unreachable(NodeError),
    /// Apply refused to act (stale plan, lock held, ...); nothing was done.
    Refused(Refusal),
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

/// Applies every node in parallel, each on its own: no moves are looked for (the benches and
/// the demo's soak, whose fleets move nothing). With `given`, a node is applied only if its
/// state and its steps are exactly those of the given plan; without, each node is planned
/// afresh under its lock.
pub async fn apply_all(
    inv: &Inventory,
    desired: &Arc<Desired>,
    nodes: &[NodeId],
    given: Option<&plan::Plan>,
    access: &Access,
    progress: Arc<dyn Progress>,
) -> BTreeMap<NodeId, NodeOutcome> {
    let mut workers = Workers::new(desired, access, &progress);
    for id in nodes {
        let (Some(node), Some(_)) = (inv.nodes.get(id), desired.nodes.get(id)) else {
            continue;
        };
        workers.apply(
            id.clone(),
            target_of(node),
            Check::of(given, id),
            Hold::new(),
        );
    }
    workers.join().await
}

/// Nodes worked on in tasks, at most `access.parallelism` at once.
struct Workers {
    sem: Arc<Semaphore>,
    tasks: tokio::task::JoinSet<(NodeId, NodeOutcome)>,
    desired: Arc<Desired>,
    access: Access,
    progress: Arc<dyn Progress>,
}

impl Workers {
    fn new(desired: &Arc<Desired>, access: &Access, progress: &Arc<dyn Progress>) -> Workers {
        Workers {
            sem: Arc::new(Semaphore::new(access.parallelism.max(1))),
            tasks: tokio::task::JoinSet::new(),
            desired: desired.clone(),
            access: access.clone(),
            progress: progress.clone(),
        }
    }

    /// Applies a node in a fresh exec (observed under its lock, then acting).
    fn apply(&mut self, id: NodeId, target: SshTarget, check: Check, hold: Hold) {
        self.spawn(id, None, target, check, hold);
    }

    /// Acts on a node whose exec holds its lock and reported its state.
    fn act(&mut self, id: NodeId, locked: Locked, check: Check, hold: Hold) {
        let target = locked.target.clone();
        self.spawn(id, Some(locked), target, check, hold);
    }

    fn spawn(
        &mut self,
        id: NodeId,
        locked: Option<Locked>,
        target: SshTarget,
        check: Check,
        hold: Hold,
    ) {
        let (sem, desired, access, progress) = (
            self.sem.clone(),
            self.desired.clone(),
            self.access.clone(),
            self.progress.clone(),
        );
        self.tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let progress = progress.as_ref();
            let out = match (locked, desired.nodes.get(&id)) {
                (Some(l), Some(spec)) => {
                    act(&desired, spec, l, &check, &access, progress, &hold).await
                }
                (Some(l), None) => {
                    l.release(&access).await;
                    NodeOutcome::Refused(Refusal::NotInInventory(id.clone()))
                }
                (None, _) => {
                    apply_node(&desired, &id, &target, check, &access, progress, &hold).await
                }
            };
            (id, out)
        });
    }

    /// Each node's outcome, once every task ended.
    async fn join(mut self) -> BTreeMap<NodeId, NodeOutcome> {
        let mut out = BTreeMap::new();
        while let Some(r) = self.tasks.join_next().await {
            if let Ok((id, o)) = r {
                out.insert(id, o);
            }
        }
        out
    }
}

/// The VPSes held on each node (their notes): no steps for them there (a VPS whose move to
/// the node has not happened: `planner::moves::held`).
pub type Held = BTreeMap<NodeId, Hold>;

/// The VPSes held on one node, with their notes.
pub type Hold = BTreeMap<model::VpsId, String>;

/// What a node's fresh plan is checked against before it acts.
#[derive(Debug, Clone)]
enum Check {
    /// Nothing: the fresh plan is carried out.
    Fresh,
    /// A given plan's entry for the node (`None`: it has none): its state digest and its steps
    /// must be the fresh plan's.
    Given(Option<NodePlan>),
    /// After a move this apply carried out on the node (which changed its state, checked
    /// against the given plan before the move): its steps must be the fresh plan's.
    StepsOf(Option<NodePlan>),
}

impl Check {
    fn of(given: Option<&plan::Plan>, id: &NodeId) -> Check {
        match given {
            None => Check::Fresh,
            Some(p) => Check::Given(p.nodes.iter().find(|n| n.node() == id).cloned()),
        }
    }

    fn refusal(&self, node: &NodeId, fresh: &NodePlan) -> Option<Refusal> {
        match self {
            Check::Fresh => None,
            Check::Given(g) => refusal(node, g.as_ref(), fresh, true),
            Check::StepsOf(g) => refusal(node, g.as_ref(), fresh, false),
        }
    }
}

/// A node whose apply envelope holds its lock and has reported its state, waiting to be told
/// its steps (or nothing): what it does is decided on that state alone.
pub struct Locked {
    conn: Conn,
    before: u64,
    run: Running,
    state: NodeState,
    target: SshTarget,
}

impl Locked {
    /// Tells the envelope to do nothing: the lock is released, the session ends.
    async fn release(mut self, access: &Access) {
        let _ = self.run.send_all(b"no\n").await;
        let _ = self.run.finish().await;
        access.stats.count(&self.conn, self.before);
        self.conn.done().await;
    }
}

/// The selected nodes, each observed by its apply envelope under its lock (one exec per node),
/// or why it could not be: the one observation an apply decides on, moves included.
pub struct LockedFleet {
    locked: BTreeMap<NodeId, Locked>,
    closed: BTreeMap<NodeId, NodeOutcome>,
}

impl LockedFleet {
    /// What each node showed: its state, or (unreachable, lock held) why it showed nothing;
    /// the input of `planner::plan::plan_with` and `planner::moves::find`.
    pub fn observations(&self) -> BTreeMap<NodeId, Observation> {
        let mut out: BTreeMap<NodeId, Observation> = (self.locked.iter())
            .map(|(n, l)| (n.clone(), Observation::Reachable(l.state.clone())))
            .collect();
        for (n, o) in &self.closed {
            let reason = match o {
                NodeOutcome::Unreachable(e) => model::diag::error_chain(e),
                NodeOutcome::Refused(r) => r.to_string(),
                _ => continue,
            };
            out.insert(n.clone(), Observation::Unreachable { reason });
        }
        out
    }

    /// Acts on no node: every lock is released (a reviewed plan refused as stale).
    pub async fn release(self, access: &Access) {
        for l in self.locked.into_values() {
            l.release(access).await;
        }
    }
}

/// Opens every node's apply envelope in parallel (bounded while connecting and observing; the
/// envelopes then wait, idle, until [`apply_locked`] or [`LockedFleet::release`]).
pub async fn lock_all(
    inv: &Inventory,
    desired: &Desired,
    nodes: &[NodeId],
    access: &Access,
) -> LockedFleet {
    let opened = each_node(
        inv,
        desired,
        nodes,
        access,
        driver::apply_command,
        |id, target, cmd, access| async move { open_node(&id, &target, &cmd, &access).await },
    )
    .await;
    let mut fleet = LockedFleet {
        locked: BTreeMap::new(),
        closed: BTreeMap::new(),
    };
    for (id, o) in opened {
        match o {
            Ok(l) => {
                fleet.locked.insert(id, l);
            }
            Err(o) => {
                fleet.closed.insert(id, o);
            }
        }
    }
    fleet
}

/// What [`apply_locked`] did: the moves (their decisions as carried out) and their results,
/// and each node's outcome.
#[derive(Debug)]
pub struct FleetOutcome {
    /// The moves, a move that could not go after all (a node refused) marked as waiting.
    pub moves: Vec<Move>,
    /// The moves carried out, by VPS.
    pub moved: BTreeMap<model::VpsId, Result<crate::moves::Moved, crate::moves::MoveError>>,
    /// Each node's outcome.
    pub outcomes: BTreeMap<NodeId, NodeOutcome>,
}

/// Carries out an apply on nodes observed by [`lock_all`], knowing the `moves` those
/// observations call for (`planner::moves::find`, or a given plan's that still go). A node no
/// move touches is planned on its locked observation, its VPSes moving to it held, and acts in
/// the same exec. A node a move touches is released, the moves run (`crate::moves`), and the
/// node is applied once more afterwards (one more exec: the move changed it), holding the VPSes
/// whose move did not finish. With `given`, every node's state and steps must be the plan's:
/// a node touched by a move is checked before the move (the digest) and after it (the steps).
pub async fn apply_locked(
    inv: &Inventory,
    desired: &Arc<Desired>,
    fleet: LockedFleet,
    given: Option<&plan::Plan>,
    moves: &[Move],
    access: &Access,
    progress: Arc<dyn Progress>,
) -> FleetOutcome {
    let mut moves = moves.to_vec();
    let involved = |moves: &[Move]| -> std::collections::BTreeSet<NodeId> {
        (moves.iter().filter(|m| m.goes()))
            .flat_map(|m| [m.from.clone(), m.to.clone()])
            .collect()
    };
    let mut outcomes = fleet.closed;
    let held_all = planner::moves::held(&moves);
    let mut workers = Workers::new(desired, access, &progress);
    let mut released = Vec::new();
    let touched = involved(&moves);
    for (id, locked) in fleet.locked {
        let Some(spec) = desired.nodes.get(&id) else {
            locked.release(access).await;
            outcomes.insert(
                id.clone(),
                NodeOutcome::Refused(Refusal::NotInInventory(id)),
            );
            continue;
        };
        let check = Check::of(given, &id);
        let hold = held_all.get(&id).cloned().unwrap_or_default();
        if touched.contains(&id) {
            // Checked against a given plan now, as the plan saw it; then released for the move.
            let fresh = plan::plan_node_holding(desired, spec, &locked.state, &hold);
            if let Some(r) = check.refusal(&id, &fresh) {
                outcomes.insert(id.clone(), NodeOutcome::Refused(r));
            } else {
                released.push(id.clone());
            }
            locked.release(access).await;
            continue;
        }
        workers.act(id, locked, check, hold);
    }
    // A move whose node was refused does not go.
    for m in moves.iter_mut().filter(|m| m.goes()) {
        if let Some(n) = [&m.from, &m.to]
            .into_iter()
            .find(|n| outcomes.contains_key(*n))
        {
            m.decision = planner::moves::Decision::Waits {
                reason: format!("{n} was refused (see below): nothing was moved"),
            };
        }
    }
    let moved = crate::moves::move_all(inv, desired, &moves, access).await;
    // The moved nodes again: a VPS whose move did not finish stays held on its target (no
    // fresh disk there); with a given plan every VPS it moves is held, so the steps are its.
    let pending: Vec<Move> = (moves.iter())
        .filter(|m| given.is_some() || !matches!(moved.get(&m.vps), Some(Ok(_))))
        .cloned()
        .collect();
    let held = planner::moves::held(&pending);
    for id in released {
        let Some(node) = inv.nodes.get(&id) else {
            continue;
        };
        let check = match Check::of(given, &id) {
            Check::Given(g) => Check::StepsOf(g),
            c => c,
        };
        let hold = held.get(&id).cloned().unwrap_or_default();
        workers.apply(id, target_of(node), check, hold);
    }
    outcomes.extend(workers.join().await);
    FleetOutcome {
        moves,
        moved,
        outcomes,
    }
}

/// Connects to a node, starts its apply envelope and reads its state under the lock (a kept
/// connection that fails before the script started gets one fresh try: nothing ran).
async fn open_node(
    id: &NodeId,
    target: &SshTarget,
    cmd: &str,
    access: &Access,
) -> Result<Locked, NodeOutcome> {
    let mut conn = match access.connect(target).await {
        Ok(s) => s,
        Err(e) => return Err(NodeOutcome::Unreachable(e.into())),
    };
    let mut before = execs(&conn);
    let mut started = conn.start(cmd).await;
    if started.is_err()
        && let Some(fresh) = access.retry(&conn, target).await
    {
        access.stats.count(&conn, before);
        conn = match fresh {
            Ok(c) => c,
            Err(e) => return Err(NodeOutcome::Unreachable(e.into())),
        };
        before = execs(&conn);
        started = conn.start(cmd).await;
    }
    let observed = match started {
        Ok(run) => observe_locked(run, id).await,
        Err(e) => Err(NodeOutcome::Unreachable(e.into())),
    };
    match observed {
        Ok((run, state)) => Ok(Locked {
            conn,
            before,
            run,
            state,
            target: target.clone(),
        }),
        Err(out) => {
            if matches!(out, NodeOutcome::Unreachable(_))
                && let Some(pool) = access.pool.as_deref()
            {
                pool.forget(&target.node).await;
            }
            access.stats.count(&conn, before);
            conn.done().await;
            Err(out)
        }
    }
}

async fn apply_node(
    desired: &Desired,
    id: &NodeId,
    target: &SshTarget,
    check: Check,
    access: &Access,
    progress: &dyn Progress,
    hold: &Hold,
) -> NodeOutcome {
    let Some(spec) = desired.nodes.get(id) else {
        return NodeOutcome::Refused(Refusal::NotInInventory(id.clone()));
    };
    let cmd = driver::apply_command(spec, chrono::Utc::now().timestamp());
    match open_node(id, target, &cmd, access).await {
        Ok(locked) => act(desired, spec, locked, &check, access, progress, hold).await,
        Err(out) => out,
    }
}

/// Commands a connection has run so far.
fn execs(conn: &Conn) -> u64 {
    conn.counters
        .execs
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// Plans a locked node on the state it reported and tells its envelope the steps (or nothing);
/// reads its progress to the end and closes the session.
async fn act(
    desired: &Desired,
    spec: &NodeSpec,
    locked: Locked,
    check: &Check,
    access: &Access,
    progress: &dyn Progress,
    hold: &Hold,
) -> NodeOutcome {
    let Locked {
        conn,
        before,
        run,
        state,
        target,
    } = locked;
    let out = run_locked(
        desired,
        spec,
        run,
        &state,
        check,
        access.restic.as_ref(),
        progress,
        hold,
    )
    .await;
    if matches!(out, NodeOutcome::Unreachable(_))
        && let Some(pool) = access.pool.as_deref()
    {
        pool.forget(&target.node).await;
    }
    access.stats.count(&conn, before);
    conn.done().await;
    out
}

#[allow(clippy::too_many_arguments)]
async fn run_locked(
    desired: &Desired,
    spec: &NodeSpec,
    mut run: Running,
    state: &NodeState,
    check: &Check,
    restic: Option<&crate::backup::Secrets>,
    progress: &dyn Progress,
    hold: &Hold,
) -> NodeOutcome {
    let node = &spec.node;
    // Decide: the fresh plan, which must equal the given one if there is one.
    let fresh = plan::plan_node_holding(desired, spec, state, hold);
    let refusal = check.refusal(node, &fresh);
    let steps = fresh.steps().to_vec();
    if refusal.is_some() || steps.is_empty() {
        let _ = run.send_all(b"no\n").await;
        let _ = run.finish().await;
        return refusal.map_or(NodeOutcome::NoChanges, NodeOutcome::Refused);
    }
    // Act, reading progress.
    // Then the repository's secrets (three lines, empty unless a step restores a backup).
    let mut input = b"go\n".to_vec();
    let restores = (steps.iter()).any(|s| {
        matches!(
            s.op,
            plan::Op::CheckBackup { .. } | plan::Op::Restore { .. }
        )
    });
    match restic
        .filter(|_| restores)
        .map(crate::backup::Secrets::input)
    {
        Some(Ok(secrets)) => input.extend_from_slice(&secrets),
        _ => input.extend_from_slice(b"\n\n\n"),
    }
    input.extend_from_slice(driver::steps_script(spec, &steps).as_bytes());
    if let Err(e) = run.send_all(&input).await {
        return NodeOutcome::Unreachable(e.into());
    }
    let report = read_progress(&mut run, node, &steps, progress).await;
    let _ = run.finish().await;
    report.outcome(steps)
}

/// Reads the node's report up to the `observed` marker: its state, or why nothing can be done.
async fn observe_locked(
    mut run: Running,
    node: &NodeId,
) -> Result<(Running, NodeState), NodeOutcome> {
    let mut report = String::new();
    loop {
        match run.line().await {
            Err(e) => return Err(NodeOutcome::Unreachable(e.into())),
            Ok(None) => {
                let detail = match run.finish().await {
                    Ok((status, err)) => {
                        format!("exit {status:?}: {}", String::from_utf8_lossy(&err).trim())
                    }
                    Err(e) => model::diag::error_chain(&e),
                };
                return Err(NodeOutcome::Unreachable(NodeError::EndedEarly {
                    node: node.clone(),
                    detail,
                }));
            }
            Ok(Some(l)) if Marker::parse(&l) == Some(Marker::Observed) => break,
            Ok(Some(l)) if Marker::parse(&l) == Some(Marker::Locked) => {
                return Err(NodeOutcome::Refused(Refusal::Locked {
                    node: node.clone(),
                    secs: driver::LOCK_WAIT_SECS,
                }));
            }
            Ok(Some(l)) => {
                report.push_str(&l);
                report.push('\n');
            }
        }
    }
    match observe::parse(node.as_str(), report.as_bytes()) {
        Ok(s) => Ok((run, s)),
        Err(e) => {
            let _ = run.send_all(b"no\n").await;
            Err(NodeOutcome::Unreachable(e.into()))
        }
    }
}

/// Why a saved plan's entry for a node may not be carried out against the fresh plan; the
/// state digests are compared when `digest` (not after a move this apply made on the node).
fn refusal(
    node: &NodeId,
    given: Option<&NodePlan>,
    fresh: &NodePlan,
    digest: bool,
) -> Option<Refusal> {
    match given {
        None => Some(Refusal::NotInPlan(node.clone())),
        Some(NodePlan::Unreachable { .. }) => Some(Refusal::UnreachableWhenPlanned(node.clone())),
        Some(g @ NodePlan::Reachable { .. }) => match (g, fresh) {
            (NodePlan::Reachable { digest: gd, .. }, NodePlan::Reachable { digest: fd, .. })
                if digest && gd != fd =>
            {
                Some(Refusal::Changed {
                    node: node.clone(),
                    planned: gd.to_string(),
                    now: fd.to_string(),
                })
            }
            _ if g.steps() != fresh.steps() => Some(Refusal::OtherInventory(node.clone())),
            _ => None,
        },
    }
}

/// What the steps script reported, by step index. Steps of different VPSes may run side by
/// side on the node, so their markers interleave: everything is kept per step.
#[derive(Debug, Default)]
struct Report {
    done: Vec<usize>,
    failures: Vec<(usize, i32, String)>,
    skipped: Vec<usize>,
    /// Steps that began, in order.
    begun: Vec<usize>,
    /// What each failing step printed.
    out: BTreeMap<usize, Vec<String>>,
    /// Why the session ended before the script did, if it did.
    lost: Option<String>,
    /// The script printed its `done` marker.
    finished: bool,
}

/// Reads the steps script's markers until it is done or the session ends.
async fn read_progress(
    run: &mut Running,
    node: &NodeId,
    steps: &[Step],
    progress: &dyn Progress,
) -> Report {
    let total = steps.len();
    let mut r = Report::default();
    loop {
        let line = match run.line().await {
            Err(e) => {
                r.lost = Some(format!(
                    "the connection was lost: {}",
                    model::diag::error_chain(&e)
                ));
                return r;
            }
            Ok(None) => return r,
            Ok(Some(l)) => l,
        };
        match Marker::parse(&line) {
            Some(Marker::Begin(i)) if i < total => {
                r.begun.push(i);
                progress.started(node, i, total, &steps[i]);
            }
            Some(Marker::Ok(i)) if i < total => {
                progress.succeeded(node, i, total, &steps[i]);
                r.done.push(i);
            }
            Some(Marker::Skip(i)) if i < total => r.skipped.push(i),
            Some(Marker::Fail { step: i, rc }) if i < total => {
                let tail = r.out.remove(&i).unwrap_or_default().join("\n");
                r.failures.push((i, rc, tail));
            }
            Some(Marker::Out { step, text }) if step < total => {
                r.out.entry(step).or_default().push(text);
            }
            Some(Marker::Done) => {
                r.finished = true;
                return r;
            }
            _ => {}
        }
    }
}

impl Report {
    /// The node's outcome. A step that began and reported no result failed (its state is
    /// unknown; a re-run converges), with what it printed or why the session ended; when the
    /// session ended early, the steps that never began were skipped.
    fn outcome(mut self, steps: Vec<Step>) -> NodeOutcome {
        let total = steps.len();
        let reported: std::collections::BTreeSet<usize> = (self.done.iter())
            .chain(&self.skipped)
            .chain(self.failures.iter().map(|(i, ..)| i))
            .copied()
            .collect();
        let why = match (&self.lost, self.finished) {
            (Some(lost), _) => lost.clone(),
            (None, false) => "the apply script ended early".to_owned(),
            (None, true) => "the step reported no result".to_owned(),
        };
        for i in (0..total).filter(|i| !reported.contains(i)) {
            if self.begun.contains(&i) || self.finished {
                let tail = match self.out.remove(&i) {
                    Some(lines) if !lines.is_empty() => lines.join("\n"),
                    _ => why.clone(),
                };
                self.failures.push((i, -1, tail));
            } else {
                self.skipped.push(i);
            }
        }
        self.failures.sort_by_key(|(i, ..)| *i);
        self.skipped.sort_unstable();
        if self.failures.is_empty() && self.skipped.is_empty() {
            return NodeOutcome::Applied { steps };
        }
        let pick = |ix: &[usize]| ix.iter().map(|&i| steps[i].clone()).collect::<Vec<_>>();
        NodeOutcome::Failed {
            done: pick(&self.done),
            failures: (self.failures.iter())
                .map(|(i, rc, tail)| Failure {
                    step: steps[*i].clone(),
                    rc: *rc,
                    tail: tail.clone(),
                })
                .collect(),
            skipped: pick(&self.skipped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use planner::plan::{Op, StepPaths};

    fn steps(n: usize) -> Vec<Step> {
        (0..n)
            .map(|i| Step {
                vps: "vps1".parse().unwrap(),
                op: Op::Record {
                    note: format!("step {i}"),
                },
                record: None,
                target: StepPaths {
                    disk: "/d".into(),
                    config: "/c".into(),
                },
            })
            .collect()
    }

    /// A finished script that left a step without a result (its `fail` marker lost) still
    /// names that step as failed, with the output it printed: the summary never says
    /// "0 FAILED" beside an apply that failed.
    #[test]
    fn a_step_without_a_result_is_a_named_failure() {
        let report = Report {
            done: vec![0, 1, 2],
            skipped: vec![4],
            begun: vec![0, 1, 2, 3],
            out: BTreeMap::from([(
                3,
                vec!["gitvps: vps1: the guest did not reach its login prompt".into()],
            )]),
            finished: true,
            ..Report::default()
        };
        let NodeOutcome::Failed {
            done,
            failures,
            skipped,
        } = report.outcome(steps(5))
        else {
            panic!("not a failure")
        };
        assert_eq!((done.len(), failures.len(), skipped.len()), (3, 1, 1));
        assert_eq!(
            failures[0].step.op,
            Op::Record {
                note: "step 3".into()
            }
        );
        assert!(
            failures[0].tail.contains("login prompt"),
            "{}",
            failures[0].tail
        );
    }

    /// A session that ended early: the steps that began without a result failed (several,
    /// when VPSes run side by side), the ones that never began were skipped.
    #[test]
    fn a_session_that_ended_early_fails_the_steps_in_flight() {
        let report = Report {
            done: vec![0],
            begun: vec![0, 1],
            finished: false,
            ..Report::default()
        };
        let NodeOutcome::Failed {
            failures, skipped, ..
        } = report.outcome(steps(3))
        else {
            panic!("not a failure")
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].tail, "the apply script ended early");
        assert_eq!(skipped.len(), 1);
    }

    /// Two VPSes' steps in flight when the connection went: both failed with the cause, in
    /// step order, each with its own output when it printed some.
    #[test]
    fn steps_in_flight_side_by_side_fail_with_the_cause() {
        let report = Report {
            done: vec![0],
            begun: vec![0, 2, 1],
            out: BTreeMap::from([(2, vec!["half a line".into()])]),
            lost: Some("the connection was lost: reset".into()),
            ..Report::default()
        };
        let NodeOutcome::Failed {
            failures, skipped, ..
        } = report.outcome(steps(4))
        else {
            panic!("not a failure")
        };
        let f: Vec<(usize, &str)> = failures
            .iter()
            .map(|f| match &f.step.op {
                Op::Record { note } => (note.len(), f.tail.as_str()),
                _ => (0, ""),
            })
            .collect();
        assert_eq!(
            f,
            [(6, "the connection was lost: reset"), (6, "half a line")]
        );
        assert_eq!(skipped.len(), 1);
    }

    /// A finished script where every step reported is applied as reported.
    #[test]
    fn a_fully_reported_run_is_applied() {
        let report = Report {
            done: vec![0, 1],
            finished: true,
            ..Report::default()
        };
        assert!(matches!(
            report.outcome(steps(2)),
            NodeOutcome::Applied { .. }
        ));
    }
}
