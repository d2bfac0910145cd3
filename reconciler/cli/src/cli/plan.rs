//! `gitvps plan`: observe every node over SSH and show what apply would change.
//! Exit 0: no changes; 2: changes; 1: an error or an unreachable node.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use model::{Inventory, NodeId};

use super::Global;
use executor::apply::{Access, observe_all};
use executor::ssh::{Credentials, Timeouts};
use planner::desired::{Desired, desired};
use planner::plan::{plan, render};

/// Flags shared by plan and apply.
#[derive(Debug, Args)]
pub struct Select {
    /// Only these nodes (repeatable).
    #[arg(long = "node", value_name = "NODE")]
    pub nodes: Vec<NodeId>,
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
    let nodes: Vec<NodeId> = if s.nodes.is_empty() {
        inv.nodes.keys().cloned().collect()
    } else {
        s.nodes.clone()
    };
    let rec = &inv.settings.reconciler;
    let access = Access {
        creds: Credentials::from_env()?,
        timeouts: Timeouts {
            connect: std::time::Duration::from_secs(rec.connect_timeout_secs.into()),
            command: std::time::Duration::from_secs(rec.command_timeout_secs.into()),
        },
        parallelism: s.parallelism.unwrap_or(rec.parallelism as usize),
        stats: Arc::default(),
    };
    Ok(Ok(Setup {
        inv,
        desired: Arc::new(desired),
        access,
        nodes,
    }))
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs the command.
pub fn run(g: &Global, a: &PlanArgs) -> anyhow::Result<i32> {
    let s = match setup(g, &a.select, a.json)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let observed = runtime()?.block_on(observe_all(&s.inv, &s.desired, &s.nodes, &s.access));
    let p = plan(&s.desired, &observed);
    if let Some(path) = &a.out {
        let json = serde_json::to_string_pretty(&p)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
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
