//! `gitvps vps new`: place a new VPS (node, addresses, id) and write its inventory file.
//! The whole inventory is validated with the new VPS in it before anything is written.

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
    }
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
