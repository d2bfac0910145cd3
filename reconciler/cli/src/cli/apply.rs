//! `gitvps apply [PLAN]`: carry out a saved plan, or plan and apply each node under its lock.
//! Exit 0 when every node converged; 1 when a node failed, was refused or unreachable.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use model::NodeId;

use super::Global;
use super::plan::{Select, runtime, setup};
use executor::apply::{NodeOutcome, Progress};
use planner::plan::{Plan, Step};

/// Flags of `gitvps apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `gitvps plan --out FILE`; nodes whose state or inventory moved since are refused.
    #[arg(value_name = "PLAN", conflicts_with = "reviewed")]
    pub plan: Option<PathBuf>,
    /// The reviewed plan (`gitvps plan --out FILE` on the pull request): applied exactly when
    /// the inventory's tree and the nodes are as when it was made; otherwise see --if-moved.
    #[arg(long, value_name = "PLAN")]
    pub reviewed: Option<PathBuf>,
    /// With --reviewed, when something moved: `refuse` (apply nothing, say what moved, exit 3)
    /// or `replan` (plan again, print what differs from the reviewed plan, apply that).
    /// `[workflow] if_moved` in gitvps.toml by default (`refuse`).
    #[arg(long, value_name = "refuse|replan", requires = "reviewed", value_parser = if_moved)]
    pub if_moved: Option<model::settings::IfMoved>,
    /// Which nodes.
    #[command(flatten)]
    pub select: Select,
    /// Then observe again and commit every VPS's state to the status branch
    /// (`reconciler.status_branch` in gitvps.toml) of the repo.
    #[arg(long)]
    pub status: bool,
}

/// Progress bars on a terminal: one per node, with the step being carried out.
struct Bars {
    multi: indicatif::MultiProgress,
    bars: std::sync::Mutex<std::collections::BTreeMap<NodeId, indicatif::ProgressBar>>,
}

impl Bars {
    fn bar(&self, node: &NodeId, total: usize) -> Option<indicatif::ProgressBar> {
        let mut bars = self.bars.lock().ok()?;
        let bar = bars.entry(node.clone()).or_insert_with(|| {
            let b = self.multi.add(indicatif::ProgressBar::new(total as u64));
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:20}] {pos}/{len} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(node.to_string());
            b
        });
        Some(bar.clone())
    }
}

impl Progress for Bars {
    fn started(&self, node: &NodeId, _: usize, total: usize, step: &Step) {
        if let Some(b) = self.bar(node, total) {
            b.set_message(format!(
                "{} {}: {}",
                step.op.symbol(),
                step.vps,
                step.op.describe()
            ));
        }
    }
    fn succeeded(&self, node: &NodeId, index: usize, total: usize, _: &Step) {
        if let Some(b) = self.bar(node, total) {
            b.inc(1);
            if index + 1 == total {
                b.finish_with_message("done");
            }
        }
    }
}

/// Progress as a terminal shows it, or as `tracing` logs when stderr is not a terminal.
fn progress() -> Arc<dyn Progress> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        Arc::new(Bars {
            multi: indicatif::MultiProgress::new(),
            bars: std::sync::Mutex::default(),
        })
    } else {
        Arc::new(executor::apply::LogProgress)
    }
}

fn step_line(s: &Step) -> String {
    format!("  {}", planner::plan::step_line(s))
}

/// The summary printed after an apply.
pub fn summary(outcomes: &std::collections::BTreeMap<NodeId, NodeOutcome>) -> (String, bool) {
    let mut out = String::new();
    let (mut applied, mut same, mut failed, mut unreachable, mut refused) = (0, 0, 0, 0, 0);
    for (node, o) in outcomes {
        match o {
            NodeOutcome::NoChanges => {
                same += 1;
                let _ = writeln!(out, "{node}: no changes");
            }
            NodeOutcome::Applied { steps } => {
                applied += 1;
                let _ = writeln!(out, "{node}: applied {} step(s)", steps.len());
                for s in steps {
                    let _ = writeln!(out, "{}", step_line(s));
                }
            }
            NodeOutcome::Failed {
                done,
                failures,
                skipped,
            } => {
                failed += 1;
                let _ = writeln!(
                    out,
                    "{node}: {} step(s) done, {} FAILED, {} skipped",
                    done.len(),
                    failures.len(),
                    skipped.len()
                );
                for f in failures {
                    let _ = writeln!(
                        out,
                        "  FAILED {}: {}, exit {}",
                        f.step.vps,
                        f.step.op.describe(),
                        f.rc
                    );
                    for l in f.tail.lines() {
                        let _ = writeln!(out, "    | {l}");
                    }
                }
                for s in skipped {
                    let _ = writeln!(out, "{}  (skipped)", step_line(s));
                }
                for s in done {
                    let _ = writeln!(out, "{}  (done)", step_line(s));
                }
            }
            NodeOutcome::Unreachable(e) => {
                unreachable += 1;
                let _ = writeln!(
                    out,
                    "{node}: UNREACHABLE, nothing done: {}",
                    model::diag::error_chain(e)
                );
            }
            NodeOutcome::Refused(why) => {
                refused += 1;
                let _ = writeln!(out, "{node}: REFUSED, nothing done: {why}");
            }
        }
    }
    let _ = writeln!(
        out,
        "Apply: {applied} node(s) changed, {same} unchanged, {failed} failed, {unreachable} unreachable, {refused} refused."
    );
    (out, failed + unreachable + refused == 0)
}

/// One line per move: done (with its size and time), failed (why), or waiting or refused.
pub(crate) fn moves_summary(
    moves: &[planner::moves::Move],
    moved: &std::collections::BTreeMap<
        model::VpsId,
        Result<executor::moves::Moved, executor::moves::MoveError>,
    >,
) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    for m in moves {
        let head = format!("move {}: {} → {}", m.vps, m.from, m.to);
        match moved.get(&m.vps) {
            Some(Ok(d)) if d.bytes == 0 => {
                let _ = writeln!(
                    out,
                    "{head}: done (the verified copy of an interrupted run, {:.1} s)",
                    d.secs
                );
            }
            Some(Ok(d)) => {
                let _ = writeln!(
                    out,
                    "{head}: done ({} copied with {}, sha256 {}, {:.1} s, of which the copy {:.1} s)",
                    model::values::Size(d.bytes),
                    d.codec,
                    &d.sha256[..12.min(d.sha256.len())],
                    d.secs,
                    d.copy_secs
                );
            }
            Some(Err(e)) => {
                ok = false;
                let _ = writeln!(out, "{head}: FAILED: {}", model::diag::error_chain(e));
            }
            None => {
                let _ = writeln!(out, "{}", m.line());
            }
        }
    }
    (out, ok)
}

fn if_moved(s: &str) -> Result<model::settings::IfMoved, String> {
    model::values::parse_keyword(s)
}

/// Exit code of `apply --reviewed` when something moved and the setting is `refuse`.
pub const MOVED: i32 = 3;

fn read_plan(p: &std::path::Path) -> anyhow::Result<Plan> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a plan saved by gitvps plan --out", p.display()))
}

/// What `--reviewed` compares: the reviewed plan, where the inventory is now, and what the
/// nodes showed under their locks (and the moves that calls for).
struct Review<'a> {
    path: &'a std::path::Path,
    plan: Plan,
    at: planner::reviewed::Checkout,
    observed: &'a std::collections::BTreeMap<NodeId, planner::observe::Observation>,
    moves: &'a [planner::moves::Move],
    last_seen: &'a std::collections::BTreeMap<model::VpsId, NodeId>,
}

/// `--reviewed`: what to apply, or `Err(code)` after saying why nothing is applied.
fn reviewed_plan(
    a: &ApplyArgs,
    s: &super::plan::Setup,
    r: Review<'_>,
) -> anyhow::Result<Result<Plan, i32>> {
    let moved = planner::reviewed::moved(&r.plan, &r.at, r.observed, r.moves);
    if moved.is_empty() {
        super::emit(&format!(
            "Applying the reviewed plan {}: the inventory and the nodes are as when it was made.\n",
            r.path.display()
        ))?;
        return Ok(Ok(r.plan));
    }
    let mut text = String::from("Moved since the reviewed plan was made:\n");
    for m in &moved {
        let _ = writeln!(text, "  {}", m.describe());
    }
    let mode = a.if_moved.unwrap_or(s.inv.settings.workflow.if_moved);
    if mode == model::settings::IfMoved::Refuse {
        text.push_str(
            "Nothing applied (--if-moved refuse): plan and review again, or apply with --if-moved replan.\n",
        );
        super::emit(&text)?;
        return Ok(Err(MOVED));
    }
    let mut fresh = planner::plan::plan_with(&s.desired, r.observed, r.last_seen);
    fresh.made_from = Some(planner::reviewed::made_from(&r.at, r.observed));
    let diff = planner::reviewed::differences(&r.plan, &fresh);
    if diff.is_empty() {
        text.push_str(
            "Planned again (--if-moved replan): the steps are those of the reviewed plan.\n",
        );
    } else {
        text.push_str("Planned again (--if-moved replan); what differs from the reviewed plan:\n");
        text.push_str(&diff);
    }
    super::emit(&text)?;
    Ok(Ok(fresh))
}

/// Runs the command: every selected node is observed once, by its apply envelope under its
/// lock; the moves, a reviewed plan's check and each node's steps are decided on that.
pub fn run(g: &Global, a: &ApplyArgs) -> anyhow::Result<i32> {
    let mut given: Option<Plan> = match &a.plan {
        None => None,
        Some(p) => Some(read_plan(p)?),
    };
    let s = match setup(g, &a.select, false)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    // The reviewed plan and where the inventory is, read before any node is locked.
    let reviewed = match &a.reviewed {
        None => None,
        Some(path) => {
            let plan = read_plan(path)?;
            let since = plan.made_from.as_ref().map(|m| m.tree.clone());
            Some((
                path,
                plan,
                super::plan::checkout(&g.repo, since.as_deref())?,
            ))
        }
    };
    let rt = runtime()?;
    let fleet = rt.block_on(executor::apply::lock_all(
        &s.inv, &s.desired, &s.nodes, &s.access,
    ));
    let observed = fleet.observations();
    let branch = &s.inv.settings.reconciler.status_branch;
    let last_seen = super::plan::last_seen(&g.repo, branch);
    let fresh = planner::moves::find(&s.desired, &observed, &last_seen);
    if let Some((path, plan, at)) = reviewed {
        let review = Review {
            path,
            plan,
            at,
            observed: &observed,
            moves: &fresh,
            last_seen: &last_seen,
        };
        match reviewed_plan(a, &s, review) {
            Ok(Ok(p)) => given = Some(p),
            Ok(Err(code)) => {
                rt.block_on(fleet.release(&s.access));
                return Ok(code);
            }
            Err(e) => {
                rt.block_on(fleet.release(&s.access));
                return Err(e);
            }
        }
    }
    // With a given plan, only its moves that the nodes still call for (the others wait).
    let moves = match &given {
        None => fresh,
        Some(p) => planner::moves::still(&p.moves, &fresh),
    };
    let done = rt.block_on(executor::apply::apply_locked(
        &s.inv,
        &s.desired,
        fleet,
        given.as_ref(),
        &moves,
        &s.access,
        progress(),
    ));
    let outcomes = done.outcomes;
    let (moves_text, moves_ok) = moves_summary(&done.moves, &done.moved);
    let (text, ok) = summary(&outcomes);
    let ok = ok && moves_ok;
    super::emit(&format!("{moves_text}{text}"))?;
    tracing::info!(
        target: "executor::apply",
        cpu_ms = executor::usage::process_cpu_time().as_millis() as u64,
        peak_rss_mib = executor::usage::peak_rss_kib() / 1024,
        execs = s.access.stats.execs.load(std::sync::atomic::Ordering::Relaxed),
        "the reconciler's own CPU time, peak memory and commands run for this apply"
    );
    if a.status {
        let (n, oid) = runtime()?.block_on(record_status(
            &g.repo, &s.inv, &s.desired, &s.nodes, &s.access, &outcomes,
        ))?;
        super::emit(&format!(
            "Status: {n} VPS(es) written to branch `{branch}` ({}).\n",
            &oid.to_string()[..12]
        ))?;
    }
    // A node that moved between the check and its lock: still "moved" for --reviewed.
    let moved_late = a.reviewed.is_some()
        && outcomes.values().any(|o| {
            matches!(
                o,
                NodeOutcome::Refused(
                    executor::apply::Refusal::Changed { .. }
                        | executor::apply::Refusal::OtherInventory(_)
                )
            )
        });
    Ok(if ok {
        0
    } else if moved_late {
        MOVED
    } else {
        1
    })
}

/// Observes the nodes again and commits every VPS's state (with the apply's outcomes) and
/// every node's record to the status branch of the repo in `repo`. Returns how many VPSes and
/// the commit.
pub async fn record_status(
    repo: &std::path::Path,
    inv: &model::Inventory,
    desired: &planner::desired::Desired,
    nodes: &[NodeId],
    access: &executor::apply::Access,
    outcomes: &std::collections::BTreeMap<NodeId, NodeOutcome>,
) -> anyhow::Result<(usize, git2::Oid)> {
    let observed = executor::apply::observe_all(inv, desired, nodes, access).await;
    let now = chrono::Utc::now();
    let statuses = executor::status::statuses(desired, &observed, outcomes, now);
    let known = inv.vps.keys().cloned().collect();
    let message = format!(
        "gitvps apply: status of {} VPS(es) at {}",
        statuses.len(),
        now.format("%Y-%m-%d %H:%M:%S UTC")
    );
    let branch = &inv.settings.reconciler.status_branch;
    // Each node's record too: the last apply, its result and the drift snapshot.
    let previous = executor::status::read_nodes(repo, branch);
    let node_records = executor::status::node_statuses(outcomes, &observed, &previous, now);
    let oid = executor::status::write_branch_with_nodes(
        repo,
        branch,
        &statuses,
        &known,
        &node_records,
        &message,
    )?;
    Ok((statuses.len(), oid))
}
