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

/// Plans the apply clone's inventory against the nodes.
pub(super) async fn plan_now(repo: &Path, access: &Access) -> anyhow::Result<(Loaded, Plan)> {
    let l = load(repo)?;
    let observed = observe_all(&l.inv, &l.desired, &l.nodes, access).await;
    let p = plan(&l.desired, &observed);
    Ok((l, p))
}

/// Plans, prints the plan, applies with progress and prints the summary. Returns the outcomes.
pub(super) async fn plan_and_apply(
    repo: &Path,
    access: &Access,
) -> anyhow::Result<BTreeMap<NodeId, NodeOutcome>> {
    let (l, p) = plan_now(repo, access).await?;
    say(render(&p).trim_end())?;
    ensure!(
        !p.has_unreachable(),
        "a simulated node did not answer (see the plan above)"
    );
    if !p.has_changes() {
        say("Nothing to apply.")?;
        return Ok(BTreeMap::new());
    }
    let outcomes = apply_all(&l.inv, &l.desired, &l.nodes, None, access, Arc::new(Lines)).await;
    let (text, ok) = super::super::apply::summary(&outcomes);
    say(text.trim_end())?;
    ensure!(ok, "the apply failed (see the summary above)");
    Ok(outcomes)
}
