//! `gitvps vps new` and `gitvps vps move`: place a new VPS (node, addresses, id), or move one to
//! another node, and write its inventory file; the whole inventory is validated first.

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use model::placement::{Request, place};
use model::{ApplianceId, CustomerId, OsId, ProductId, VpsId};

use super::Global;

/// VPS subcommands.
#[derive(Debug, Subcommand)]
pub enum VpsCommand {
    /// Place a new VPS and write `inventory/vps/<id>.toml`.
    New(NewArgs),
    /// Move a VPS to another node: edits its `node` (and, in another location, its addresses)
    /// for a commit; `gitvps apply` then copies its disk over (docs/reconciler.md).
    Move(MoveArgs),
}

/// Flags of `gitvps vps move`.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The VPS.
    pub id: VpsId,
    /// The node to move it to.
    #[arg(long, value_name = "NODE")]
    pub to: model::NodeId,
    /// Show the edit without writing the file.
    #[arg(long)]
    pub dry_run: bool,
}

/// Flags of `gitvps vps new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The customer who owns it.
    #[arg(long)]
    pub customer: CustomerId,
    /// The plan.
    #[arg(long)]
    pub product: ProductId,
    /// Where: a location name as in pools.toml (case-insensitive) or a pool id.
    #[arg(long)]
    pub location: String,
    /// Operating system (gitvps.toml's vps.default_os when absent).
    #[arg(long)]
    pub os: Option<OsId>,
    /// Appliance to install on first boot.
    #[arg(long)]
    pub appliance: Option<ApplianceId>,
    /// Host name (`<id>.<vps.domain>` when absent).
    #[arg(long, value_parser = parse_hostname)]
    pub hostname: Option<model::values::Hostname>,
    /// The VPS id (the next free `<id_prefix>NN` when absent).
    #[arg(long)]
    pub id: Option<VpsId>,
    /// The creation date (today when absent), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub today: Option<NaiveDate>,
    /// Show the decision without writing the file.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the placement as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_hostname(s: &str) -> Result<model::values::Hostname, String> {
    s.parse()
}

/// Runs a VPS subcommand.
pub fn run(g: &Global, c: VpsCommand) -> anyhow::Result<i32> {
    match c {
        VpsCommand::New(a) => new(g, a),
        VpsCommand::Move(a) => move_vps(g, &a),
    }
}

/// `gitvps vps move ID --to NODE`: the VPS file with its new `node`; when its addresses are not
/// in a pool of the new node (another location), new ones chosen as for a new VPS there, and
/// its `[ptr]` names (of the old addresses) dropped. Nothing is written unless the inventory
/// with the edit is valid.
fn move_vps(g: &Global, a: &MoveArgs) -> anyhow::Result<i32> {
    let mut inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let v = (inv.vps.get(&a.id))
        .with_context(|| format!("no VPS `{}` in inventory/vps/", a.id))?
        .clone();
    let to = (inv.nodes.get(&a.to))
        .with_context(|| format!("--to {}: no such node in inventory/nodes/", a.to))?
        .clone();
    anyhow::ensure!(v.node != to.id, "{} is on {} already", v.id, to.id);
    anyhow::ensure!(
        !to.maintenance,
        "{} is in maintenance: no VPS is moved there",
        to.id
    );
    let in_pools = |ip: &model::values::VpsAddr| {
        to.pools
            .iter()
            .filter_map(|p| inv.pools.get(p))
            .any(|p| match ip {
                model::values::VpsAddr::V4(a) => p.network.contains(a),
                model::values::VpsAddr::V6(n) => p.ipv6.is_some_and(|pre| pre.contains(n)),
            })
    };
    let new_ips = if v.ips.iter().all(in_pools) {
        None
    } else {
        let (pool, v4, v6) = model::placement::addresses_on(&inv, &to)
            .map_err(|why| anyhow::anyhow!("cannot give {} addresses on {}: {why}", v.id, to.id))?;
        let mut ips = vec![model::values::VpsAddr::V4(v4)];
        ips.extend(v6.map(model::values::VpsAddr::V6));
        Some((pool, ips))
    };
    let rel = format!("{}/{}.toml", model::load::paths::VPS, v.id);
    let path = g.repo.join(&rel);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {rel}"))?;
    let mut file = model::edit::TomlFile::parse(&rel, &text)?;
    file.set_string("node", to.id.as_str());
    if let Some((_, ips)) = &new_ips {
        file.set_ips(ips);
        file.remove("ptr");
    }
    // The inventory with the move in it must still be valid, before anything is written.
    if let Some(m) = inv.vps.get_mut(&v.id) {
        m.node = to.id.clone();
        if let Some((_, ips)) = &new_ips {
            m.ips.clone_from(ips);
            m.ptr.clear();
        }
    }
    let mut problems = inv.check();
    // Its snapshots do not move with it: where it is now (the status branch, else its file's
    // node before the edit) and what that node holds.
    let branch = &inv.settings.reconciler.status_branch;
    let mut seen = super::plan::seen(&g.repo, branch);
    seen.entry(v.id.clone())
        .or_insert_with(|| (v.node.clone(), Vec::new()));
    problems
        .0
        .extend(planner::moves::snapshot_diagnostics(&inv, &seen));
    if !problems.is_empty() {
        super::validate::report(&problems, false)?;
        return Ok(1);
    }
    let words = |ips: &[model::values::VpsAddr]| {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut msg = format!(
        "{} {rel}: {} {} → {}",
        if a.dry_run { "would write" } else { "wrote" },
        v.id,
        v.node,
        to.id
    );
    match &new_ips {
        Some((pool, ips)) => msg.push_str(&format!(
            ", new addresses from pool {pool} ({} → {}); its [ptr] names are dropped\n",
            words(&v.ips),
            words(ips)
        )),
        None => msg.push_str(&format!(", addresses kept ({})\n", words(&v.ips))),
    }
    if a.dry_run {
        msg.push_str(&file.render());
    } else {
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, file.render()).with_context(|| format!("cannot write {rel}"))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {rel}"))?;
        msg.push_str("Commit it; `gitvps apply` then moves the VPS (its disk is copied over).\n");
    }
    super::emit(&msg)?;
    Ok(0)
}

fn new(g: &Global, a: NewArgs) -> anyhow::Result<i32> {
    let mut inv = match super::load_or_report(&g.repo, a.json)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let req = Request {
        customer: a.customer,
        product: a.product,
        location: a.location,
        os: a.os,
        appliance: a.appliance,
        hostname: a.hostname,
        id: a.id,
        today: a.today.unwrap_or_else(|| chrono::Local::now().date_naive()),
    };
    let p = place(&inv, &req).context("cannot place the VPS")?;
    let rel = format!("{}/{}.toml", model::load::paths::VPS, p.id);
    let text = model::edit::new_vps_file(
        &p.vps,
        &format!("Placed by `gitvps vps new` on {}.", req.today),
    );

    // The inventory with the new VPS must still be valid, before anything is written.
    inv.vps.insert(p.id.clone(), p.vps.clone());
    let problems = inv.check();
    if !problems.is_empty() {
        super::validate::report(&problems, a.json)?;
        return Ok(1);
    }

    if !a.dry_run {
        super::create_file(&g.repo.join(&rel), &text)?;
    }
    if a.json {
        super::print_json(&serde_json::json!({
            "id": p.id,
            "file": rel,
            "node": p.node,
            "pool": p.pool,
            "ipv4": p.ipv4.to_string(),
            "ipv6": p.ipv6.map(|n| n.to_string()),
            "hostname": p.vps.hostname,
            "os": p.vps.os,
            "expires": p.vps.expires.to_string(),
            "written": !a.dry_run,
        }))?;
    } else {
        let verb = if a.dry_run { "would write" } else { "wrote" };
        let ips: Vec<String> = p.vps.ips.iter().map(ToString::to_string).collect();
        let mut msg = format!(
            "{verb} {rel}: {} on {} ({}), {}\n",
            p.id,
            p.node,
            p.pool,
            ips.join(", ")
        );
        if a.dry_run {
            msg.push_str(&text);
        }
        super::emit(&msg)?;
    }
    Ok(0)
}
