//! `gitvps plan`: observe every node over SSH and show what changed outside gitvps since the
//! last apply, then what apply would change. Exit 0: no changes; 2: changes; 1: an error.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use model::{Inventory, NodeId};

use super::Global;
use executor::apply::{Access, observe_all};
use executor::ssh::{Credentials, Timeouts};
use executor::status::NodeStatus;
use planner::desired::{Desired, desired};
use planner::drift::{Snapshot, drift};
use planner::observe::Observation;
use planner::plan::{render, render_drift};

/// Flags shared by plan and apply.
#[derive(Debug, Args)]
pub struct Select {
    /// Only these nodes (repeatable).
    #[arg(long = "node", value_name = "NODE")]
    pub nodes: Vec<NodeId>,
    /// Only the nodes of these locations (repeatable): one CI job per location splits a fleet
    /// too large for one control machine.
    #[arg(long = "location", value_name = "LOCATION")]
    pub locations: Vec<String>,
    /// Nodes worked on at once (gitvps.toml's reconciler.parallelism by default).
    #[arg(long)]
    pub parallelism: Option<usize>,
}

/// Flags of `gitvps plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Which nodes.
    #[command(flatten)]
    pub select: Select,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also save the plan as JSON, for `gitvps apply FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Also write the plan as a pull-request comment (Markdown) for `gitvps ci comment`; when
    /// the inventory does not load, the comment shows its errors.
    #[arg(long, value_name = "FILE")]
    pub comment_markdown: Option<PathBuf>,
    /// Only what changed outside gitvps since the last apply: exit 2 on drift, 0 on none, 1 on
    /// an error or an unreachable node.
    #[arg(long)]
    pub drift_only: bool,
    /// With --drift-only: record the drift seen in each node's file on the status branch.
    #[arg(long, requires = "drift_only")]
    pub status: bool,
}

/// What plan and apply share: the inventory, the desired state, access and node list.
pub(crate) struct Setup {
    pub(crate) inv: Inventory,
    pub(crate) desired: Arc<Desired>,
    pub(crate) access: Access,
    pub(crate) nodes: Vec<NodeId>,
}

/// Loads everything plan and apply need; `Err(code)` after printing inventory errors.
pub(crate) fn setup(g: &Global, s: &Select, json: bool) -> anyhow::Result<Result<Setup, i32>> {
    let inv = match super::load_or_report(&g.repo, json)? {
        Ok(inv) => inv,
        Err(code) => return Ok(Err(code)),
    };
    let template =
        executor::inputs::templates(&g.repo).context("cannot read templates/xen.cfg.j2")?;
    let boot = executor::inputs::bootstraps(&g.repo)?;
    let desired = desired(&inv, &template, &boot)?;
    for n in &s.nodes {
        anyhow::ensure!(
            inv.nodes.contains_key(n),
            "--node {n}: no such node in inventory/nodes/"
        );
    }
    if let Some(l) = (s.locations.iter()).find(|l| !inv.nodes.values().any(|n| &n.location == *l)) {
        anyhow::bail!("--location {l}: no node is in that location");
    }
    let nodes: Vec<NodeId> = if s.nodes.is_empty() {
        inv.nodes.keys().cloned().collect()
    } else {
        s.nodes.clone()
    };
    let nodes: Vec<NodeId> = (nodes.into_iter())
        .filter(|n| {
            s.locations.is_empty()
                || inv
                    .nodes
                    .get(n)
                    .is_some_and(|node| s.locations.contains(&node.location))
        })
        .collect();
    let rec = &inv.settings.reconciler;
    let access = Access {
        creds: Credentials::from_env()?,
        timeouts: Timeouts {
            connect: std::time::Duration::from_secs(rec.connect_timeout_secs.into()),
            command: std::time::Duration::from_secs(rec.command_timeout_secs.into()),
        },
        parallelism: s.parallelism.unwrap_or(rec.parallelism as usize),
        stats: Arc::default(),
        pool: None,
        // Only a `[restore]` needs them; without them its steps fail on the node, saying why.
        restic: inv
            .settings
            .backup
            .repository
            .as_ref()
            .and_then(|_| executor::backup::Secrets::from_env(&inv.settings.backup).ok()),
    };
    Ok(Ok(Setup {
        inv,
        desired: Arc::new(desired),
        access,
        nodes,
    }))
}

/// The node each VPS was last observed on, from the status branch (empty without one): a
/// move whose source does not answer then waits instead of installing afresh on the target.
pub(crate) fn last_seen(
    repo: &std::path::Path,
    branch: &str,
) -> std::collections::BTreeMap<model::VpsId, NodeId> {
    (seen(repo, branch).into_iter())
        .map(|(v, (node, _))| (v, node))
        .collect()
}

/// The node each VPS was last observed on and the snapshots it held there, from the status
/// branch (empty without one).
pub(crate) fn seen(repo: &std::path::Path, branch: &str) -> planner::moves::Seen {
    match executor::status::read_branch(repo, branch) {
        Ok(st) => (st.into_iter())
            .map(|(v, s)| (v, (s.node, s.snapshots)))
            .collect(),
        Err(e) => {
            tracing::debug!("no last known nodes from the status branch: {e}");
            planner::moves::Seen::new()
        }
    }
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// What a comment says it planned: the repository's commit, when it is a git checkout.
fn about(repo: &std::path::Path) -> String {
    git2::Repository::discover(repo)
        .ok()
        .and_then(|r| r.head().ok()?.peel_to_commit().ok().map(|c| c.id()))
        .map(|id| format!("commit {}", &id.to_string()[..12]))
        .unwrap_or_default()
}

/// The files a plan is made from: what `gitvps plan` reads from the repository.
const PLAN_INPUTS: &[&str] = &[
    "gitvps.toml",
    "products.toml",
    "pools.toml",
    "inventory",
    "templates",
    "bootstraps",
];

/// Where the inventory in `repo` is: its commit, tree and uncommitted changes to the plan's
/// inputs; with `since`, the input paths that differ from that tree.
pub(crate) fn checkout(
    repo: &std::path::Path,
    since: Option<&str>,
) -> anyhow::Result<planner::reviewed::Checkout> {
    let r = git2::Repository::discover(repo)
        .with_context(|| format!("{} is not in a git repository", repo.display()))?;
    let commit = (r.head().and_then(|h| h.peel_to_commit()))
        .with_context(|| format!("{}: no commit checked out", repo.display()))?;
    let tree = commit.tree().context("cannot read the commit's tree")?;
    // The repo folder inside the git work tree: its inputs' paths as git names them.
    let prefix = match (r.workdir(), std::fs::canonicalize(repo)) {
        (Some(w), Ok(abs)) => std::fs::canonicalize(w)
            .ok()
            .and_then(|w| abs.strip_prefix(w).ok().map(std::path::Path::to_path_buf))
            .unwrap_or_default(),
        _ => std::path::PathBuf::new(),
    };
    let inputs: Vec<String> = PLAN_INPUTS
        .iter()
        .map(|p| prefix.join(p).to_string_lossy().into_owned())
        .collect();
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false);
    for p in &inputs {
        opts.pathspec(p);
    }
    let uncommitted = (r.statuses(Some(&mut opts)))
        .context("cannot read the repository's status")?
        .iter()
        .filter_map(|e| e.path().ok().map(str::to_owned))
        .collect();
    let mut changed = Vec::new();
    if let Some(old) = since.and_then(|t| git2::Oid::from_str(t).ok())
        && old != tree.id()
        && let Ok(old) = r.find_tree(old)
    {
        let mut d = git2::DiffOptions::new();
        for p in &inputs {
            d.pathspec(p);
        }
        let diff = r
            .diff_tree_to_tree(Some(&old), Some(&tree), Some(&mut d))
            .context("cannot compare the trees")?;
        for delta in diff.deltas() {
            if let Some(p) = delta.new_file().path().or(delta.old_file().path()) {
                changed.push(p.to_string_lossy().into_owned());
            }
        }
    }
    Ok(planner::reviewed::Checkout {
        commit: commit.id().to_string(),
        tree: tree.id().to_string(),
        uncommitted,
        changed,
    })
}

fn write(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Fills the plan's drift: for each node that answered and has a snapshot of its last apply
/// on the status branch, what differs now.
pub(crate) fn with_drift(
    p: &mut planner::plan::Plan,
    observed: &std::collections::BTreeMap<NodeId, Observation>,
    last: &std::collections::BTreeMap<NodeId, NodeStatus>,
) {
    for (node, obs) in observed {
        let (Observation::Reachable(state), Some(snap)) =
            (obs, last.get(node).and_then(|l| l.snapshot.as_ref()))
        else {
            continue;
        };
        let d = drift(snap, &Snapshot::of(state));
        if !d.is_empty() {
            p.drift.insert(node.clone(), d);
        }
    }
}

/// Runs the command.
pub fn run(g: &Global, a: &PlanArgs) -> anyhow::Result<i32> {
    if let Some(path) = &a.comment_markdown
        && let Err(model::LoadError::Invalid(d)) = Inventory::load(&g.repo)
    {
        write(path, &planner::comment::errors_comment(&d, &about(&g.repo)))?;
    }
    let s = match setup(g, &a.select, a.json)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let observed = runtime()?.block_on(observe_all(&s.inv, &s.desired, &s.nodes, &s.access));
    let branch = &s.inv.settings.reconciler.status_branch;
    let mut p = planner::plan::plan_with(&s.desired, &observed, &last_seen(&g.repo, branch));
    let last = executor::status::read_nodes(&g.repo, branch);
    with_drift(&mut p, &observed, &last);
    if a.drift_only {
        return drift_only(g, a, &p, &observed, last, branch);
    }
    if let Some(path) = &a.out {
        // What it was made from, for `gitvps apply --reviewed`; a folder outside git plans
        // too, without that record.
        let mut p = p.clone();
        match checkout(&g.repo, None) {
            Ok(at) => p.made_from = Some(planner::reviewed::made_from(&at, &observed)),
            Err(e) => tracing::warn!("the plan file does not record what it was made from: {e:#}"),
        }
        let json = serde_json::to_string_pretty(&p)?;
        write(path, &(json + "\n"))?;
    }
    if let Some(path) = &a.comment_markdown {
        write(path, &planner::comment::plan_comment(&p, &about(&g.repo)))?;
    }
    if a.json {
        super::print_json(&p)?;
    } else {
        super::emit(&render(&p))?;
    }
    Ok(if p.has_unreachable() {
        1
    } else if p.has_changes() {
        2
    } else {
        0
    })
}

/// `--drift-only`: the drift section (or that there is none), recorded with `--status`.
fn drift_only(
    g: &Global,
    a: &PlanArgs,
    p: &planner::plan::Plan,
    observed: &std::collections::BTreeMap<NodeId, Observation>,
    mut last: std::collections::BTreeMap<NodeId, NodeStatus>,
    branch: &str,
) -> anyhow::Result<i32> {
    let unknown: Vec<String> = observed
        .iter()
        .filter(|(n, o)| {
            matches!(o, Observation::Reachable(_))
                && last.get(*n).and_then(|l| l.snapshot.as_ref()).is_none()
        })
        .map(|(n, _)| n.to_string())
        .collect();
    if a.json {
        super::print_json(&serde_json::json!({
            "drift": p.drift,
            "unreachable": p.nodes.iter().filter(|n| n.steps().is_empty() && matches!(n, planner::plan::NodePlan::Unreachable { .. })).map(|n| n.node().to_string()).collect::<Vec<_>>(),
            "no_apply_recorded": unknown,
        }))?;
    } else {
        let mut text = render_drift(p);
        if text.is_empty() {
            text = "No changes outside gitvps since the last apply.\n".into();
        }
        for n in &p.nodes {
            if let planner::plan::NodePlan::Unreachable { .. } = n {
                text.push_str(&format!("{}\n", planner::plan::node_heading(n)));
            }
        }
        if !unknown.is_empty() {
            text.push_str(&format!(
                "No apply recorded on the status branch `{branch}` for: {} (nothing to compare with).\n",
                unknown.join(", ")
            ));
        }
        super::emit(&text)?;
    }
    if a.status {
        let now = chrono::Utc::now();
        let mut changed = Vec::new();
        for (node, obs) in observed {
            let (Observation::Reachable(_), Some(l)) = (obs, last.get_mut(node)) else {
                continue;
            };
            l.drift = p.drift.get(node).cloned().unwrap_or_default();
            l.drift_checked_at = Some(now);
            changed.push(l.clone());
        }
        if !changed.is_empty() {
            let message = format!(
                "gitvps plan --drift-only: {} change(s) outside gitvps on {} node(s) at {}",
                p.summary().drift,
                changed.len(),
                now.format("%Y-%m-%d %H:%M:%S UTC")
            );
            let oid = executor::status::write_nodes(&g.repo, branch, &changed, &message)?;
            super::note(&format!(
                "Drift of {} node(s) recorded on branch `{branch}` ({}).",
                changed.len(),
                &oid.to_string()[..12]
            ))?;
        }
    }
    Ok(if p.has_unreachable() {
        1
    } else if p.has_drift() {
        2
    } else {
        0
    })
}
