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
use executor::apply::{NodeOutcome, Progress, apply_all};
use planner::plan::{Plan, Step};

/// Flags of `gitvps apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `gitvps plan --out FILE`; nodes whose state or inventory moved since are refused.
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,
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

/// Runs the command.
pub fn run(g: &Global, a: &ApplyArgs) -> anyhow::Result<i32> {
    let given: Option<Plan> = match &a.plan {
        None => None,
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            Some(serde_json::from_str(&text).with_context(|| {
                format!("{} is not a plan saved by gitvps plan --out", p.display())
            })?)
        }
    };
    let s = match setup(g, &a.select, false)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let outcomes = runtime()?.block_on(apply_all(
        &s.inv,
        &s.desired,
        &s.nodes,
        given.as_ref(),
        &s.access,
        progress(),
    ));
    let (text, ok) = summary(&outcomes);
    super::emit(&text)?;
    tracing::info!(
        target: "executor::apply",
        cpu_ms = executor::usage::process_cpu_time().as_millis() as u64,
        peak_rss_mib = executor::usage::peak_rss_kib() / 1024,
        "the reconciler's own CPU time and peak memory for this apply"
    );
    if a.status {
        let (n, oid) = runtime()?.block_on(record_status(
            &g.repo, &s.inv, &s.desired, &s.nodes, &s.access, &outcomes,
        ))?;
        let branch = &s.inv.settings.reconciler.status_branch;
        super::emit(&format!(
            "Status: {n} VPS(es) written to branch `{branch}` ({}).\n",
            &oid.to_string()[..12]
        ))?;
    }
    Ok(if ok { 0 } else { 1 })
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
