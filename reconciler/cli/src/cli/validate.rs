//! `gitvps validate`: load the whole inventory and the billing records and report every problem
//! at once. Exit 0 when valid, 1 with one `file:line:col: field: message` line per problem.

use clap::Args;
use serde::Serialize;

use super::Global;

/// Flags of `gitvps validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Summary {
    ok: bool,
    products: usize,
    pools: usize,
    nodes: usize,
    customers: usize,
    vps: usize,
}

#[derive(Serialize)]
struct Problem<'a> {
    file: &'a str,
    line: u32,
    column: u32,
    field: &'a str,
    message: &'a str,
}

/// Prints diagnostics: text to stderr, or a JSON report to stdout.
pub(crate) fn report(d: &model::Diagnostics, json: bool) -> anyhow::Result<()> {
    if json {
        let errors: Vec<Problem<'_>> = d
            .iter()
            .map(|x| Problem {
                file: &x.file,
                line: x.line,
                column: x.col,
                field: &x.field,
                message: &x.message,
            })
            .collect();
        super::print_json(&serde_json::json!({ "ok": false, "errors": errors }))?;
    } else {
        #[allow(clippy::print_stderr)]
        {
            eprint!("{d}");
            eprintln!(
                "error: the inventory has {} problem(s); nothing was changed",
                d.len()
            );
        }
    }
    Ok(())
}

/// Runs the command.
pub fn run(g: &Global, a: &ValidateArgs) -> anyhow::Result<i32> {
    let inv = match super::load_or_report(&g.repo, a.json)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    // The billing records: invoice files and payment records parse, and invoice numbers are
    // gapless and unique under the numbering rule.
    let ledger = jobs::billing::check_ledger(&g.repo, &inv.settings.billing.invoice_number)?;
    if !ledger.is_empty() {
        report(&ledger, a.json)?;
        return Ok(1);
    }
    // A move of a VPS with snapshots (its node is not the one the status branch saw it on).
    let branch = &inv.settings.reconciler.status_branch;
    let moving = planner::moves::snapshot_diagnostics(&inv, &super::plan::seen(&g.repo, branch));
    if !moving.is_empty() {
        report(&model::Diagnostics(moving), a.json)?;
        return Ok(1);
    }
    let s = Summary {
        ok: true,
        products: inv.products.len(),
        pools: inv.pools.len(),
        nodes: inv.nodes.len(),
        customers: inv.customers.len(),
        vps: inv.vps.len(),
    };
    if a.json {
        super::print_json(&s)?;
    } else {
        super::emit(&format!(
            "ok: {} products, {} pools, {} nodes, {} customers, {} VPSes\n",
            s.products, s.pools, s.nodes, s.customers, s.vps
        ))?;
    }
    Ok(0)
}
