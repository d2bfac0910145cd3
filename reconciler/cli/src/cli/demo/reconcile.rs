//! Plan and apply in the demo: the apply clone's inventory against the simulated nodes,
//! with progress as plain lines.

use super::*;

/// Everything plan and apply need, loaded from the apply clone.
pub(super) struct Loaded {
    pub(super) inv: model::Inventory,
    pub(super) desired: Arc<Desired>,
    pub(super) nodes: Vec<NodeId>,
}

pub(super) fn load(repo: &Path) -> anyhow::Result<Loaded> {
    let inv = match super::super::load_or_report(repo, false)? {
        Ok(inv) => inv,
        Err(_) => bail!("the inventory has errors (printed above); fix them and commit again"),
    };
    let template = executor::inputs::templates(repo).context("cannot read templates/xen.cfg.j2")?;
    let mut boot = executor::inputs::bootstraps(repo)?;
    if boot.run.mirror.is_none() {
        boot.run.mirror = executor::inputs::apt_mirror();
    }
    let desired = desired(&inv, &template, &boot)?;
    let nodes = inv.nodes.keys().cloned().collect();
    Ok(Loaded {
        inv,
        desired: Arc::new(desired),
        nodes,
    })
}

/// Progress as plain lines, one per step started.
pub(super) struct Lines;

impl Progress for Lines {
    fn started(&self, node: &NodeId, index: usize, total: usize, step: &Step) {
        let _ = say(&format!(
            "  [{node} {}/{total}] {} {}: {}",
            index + 1,
            step.op.symbol(),
            step.vps,
            step.op.describe()
        ));
    }
    fn succeeded(&self, _: &NodeId, _: usize, _: usize, _: &Step) {}
}

/// Where the apply clone's status branch last saw each VPS: a move whose source does not
/// answer waits instead of installing afresh on the target.
fn last_seen(repo: &Path, l: &Loaded) -> BTreeMap<model::VpsId, NodeId> {
    super::super::plan::last_seen(repo, &l.inv.settings.reconciler.status_branch)
}

/// Plans the apply clone's inventory against the nodes.
pub(super) async fn plan_now(repo: &Path, access: &Access) -> anyhow::Result<(Loaded, Plan)> {
    let l = load(repo)?;
    let observed = observe_all(&l.inv, &l.desired, &l.nodes, access).await;
    let p = plan_with(&l.desired, &observed, &last_seen(repo, &l));
    Ok((l, p))
}

/// Plans, prints the plan, applies with progress and prints the summary, as `gitvps apply`
/// does: each node observed once under its lock, moves first. Returns the outcomes.
pub(super) async fn plan_and_apply(
    repo: &Path,
    access: &Access,
) -> anyhow::Result<BTreeMap<NodeId, NodeOutcome>> {
    let l = load(repo)?;
    let fleet = lock_all(&l.inv, &l.desired, &l.nodes, access).await;
    let p = plan_with(&l.desired, &fleet.observations(), &last_seen(repo, &l));
    say(render(&p).trim_end())?;
    if p.has_unreachable() || !p.has_changes() {
        fleet.release(access).await;
        ensure!(
            !p.has_unreachable(),
            "a simulated node did not answer (see the plan above)"
        );
        say("Nothing to apply.")?;
        publish_status(repo, &l, access, &BTreeMap::new()).await?;
        return Ok(BTreeMap::new());
    }
    let done = apply_locked(
        &l.inv,
        &l.desired,
        fleet,
        None,
        &p.moves,
        access,
        Arc::new(Lines),
    )
    .await;
    let (moves, moves_ok) = super::super::apply::moves_summary(&done.moves, &done.moved);
    let (text, ok) = super::super::apply::summary(&done.outcomes);
    say(format!("{moves}{text}").trim_end())?;
    ensure!(ok && moves_ok, "the apply failed (see the summary above)");
    publish_status(repo, &l, access, &done.outcomes).await?;
    Ok(done.outcomes)
}

/// Writes the status branch, as `gitvps apply --status` does in CI, and pushes it to the
/// bare repo, where the hooks read it for the panel's live status and console address.
async fn publish_status(
    repo: &Path,
    l: &Loaded,
    access: &Access,
    outcomes: &BTreeMap<NodeId, NodeOutcome>,
) -> anyhow::Result<()> {
    let _one = super::collect::STATUS_LOCK.lock().await;
    let (n, _) =
        super::super::apply::record_status(repo, &l.inv, &l.desired, &l.nodes, access, outcomes)
            .await?;
    let branch = &l.inv.settings.reconciler.status_branch;
    super::repo::git(repo, &["push", "-q", "origin", branch])?;
    say(&format!(
        "   Status of {n} VPS(es) pushed to branch `{branch}`."
    ))?;
    Ok(())
}
