//! `gitvps backup run` (take the backups that are due, apply retention) and `gitvps backup
//! list`: restic on the nodes over SSH. Exit 1 when anything failed. See `docs/backup.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use model::VpsId;
use model::status::BackupEntry;

use super::Global;
use super::plan::{Select, runtime, setup};
use executor::backup::{NodeRun, RunSpec, Secrets};
use planner::backup::Listed;

/// `gitvps backup ...`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take the backups that are due (nodes in parallel, each node's VPSes one after another),
    /// then forget what each policy no longer keeps (restic forget --prune).
    Run(RunArgs),
    /// List the backups of every VPS (or one) from the restic repository.
    List(ListArgs),
}

/// Flags of `gitvps backup run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Which nodes.
    #[command(flatten)]
    pub select: Select,
    /// Only this VPS (repeatable); its backup is still taken only when due.
    #[arg(long = "vps", value_name = "ID")]
    pub vps: Vec<VpsId>,
    /// Decide at this UTC time (RFC 3339) instead of now, and stamp the backups with it.
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Print what would be backed up and forgotten; act on nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Then commit each VPS's list of backups to the status branch.
    #[arg(long)]
    pub status: bool,
}

/// Flags of `gitvps backup list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Which nodes.
    #[command(flatten)]
    pub select: Select,
    /// Only this VPS (repeatable).
    #[arg(long = "vps", value_name = "ID")]
    pub vps: Vec<VpsId>,
    /// Print JSON: each VPS's backups, newest first.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(g: &Global, c: BackupCommand) -> anyhow::Result<i32> {
    match c {
        BackupCommand::Run(a) => run_backups(g, &a),
        BackupCommand::List(a) => list(g, &a),
    }
}

/// A size in MiB or GiB, for people.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

fn entry(l: &Listed) -> BackupEntry {
    BackupEntry {
        short_id: l.id.chars().take(8).collect(),
        id: l.id.clone(),
        time: l.time,
        size_bytes: l.bytes,
    }
}

fn check_vps(inv: &model::Inventory, vps: &[VpsId]) -> anyhow::Result<()> {
    for v in vps {
        anyhow::ensure!(
            inv.vps.contains_key(v),
            "--vps {v}: no such VPS in inventory/vps/"
        );
    }
    Ok(())
}

/// What `backup run` prints, and whether everything succeeded.
pub fn summary(runs: &BTreeMap<model::NodeId, NodeRun>, dry_run: bool) -> (String, bool) {
    let mut out = String::new();
    let (mut taken, mut failed, mut forgotten) = (0, 0, 0);
    for (node, r) in runs {
        let v = match r {
            NodeRun::Failed(why) => {
                failed += 1;
                let _ = writeln!(out, "{node}: FAILED, nothing done: {why}");
                continue;
            }
            NodeRun::Done(v) => v,
        };
        for (id, o) in v {
            let mut parts = Vec::new();
            match (&o.taken, o.due) {
                (Some(Ok(t)), _) => {
                    taken += 1;
                    parts.push(format!(
                        "backed up {} ({})",
                        t.id.chars().take(8).collect::<String>(),
                        size(t.bytes)
                    ));
                }
                (Some(Err(e)), _) => {
                    failed += 1;
                    parts.push(format!("backup FAILED: {e}"));
                }
                (None, true) => parts.push("would back up".into()),
                (None, false) => parts.push("not due".into()),
            }
            if !o.forget.is_empty() {
                match (&o.forget_error, dry_run) {
                    (Some(e), _) => {
                        failed += 1;
                        parts.push(format!("forgetting {} FAILED: {e}", o.forget.len()));
                    }
                    (None, true) => parts.push(format!("would forget {}", o.forget.len())),
                    (None, false) => {
                        forgotten += o.forget.len();
                        parts.push(format!("forgot {}", o.forget.len()));
                    }
                }
            }
            parts.push(format!("{} kept", o.snapshots.len()));
            let _ = writeln!(out, "{node} {id}: {}", parts.join("; "));
        }
    }
    let _ = writeln!(
        out,
        "Backup: {taken} taken, {forgotten} forgotten, {failed} failed{}.",
        if dry_run {
            " (dry run: nothing done)"
        } else {
            ""
        }
    );
    (out, failed == 0)
}

fn run_backups(g: &Global, a: &RunArgs) -> anyhow::Result<i32> {
    let s = match setup(g, &a.select, false)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    check_vps(&s.inv, &a.vps)?;
    let secrets = Secrets::from_env(&s.inv.settings.backup)?;
    let spec = RunSpec {
        now: a.now.unwrap_or_else(chrono::Utc::now),
        stamp: a.now.is_some(),
        dry_run: a.dry_run,
        only: a.vps.clone(),
    };
    let inv = Arc::new(s.inv);
    let runs = runtime()?.block_on(executor::backup::run_all(
        &inv, &s.desired, &s.nodes, &s.access, &secrets, &spec,
    ))?;
    let (text, ok) = summary(&runs, a.dry_run);
    super::emit(&text)?;
    if a.status && !a.dry_run {
        let lists: BTreeMap<VpsId, Vec<BackupEntry>> = runs
            .values()
            .filter_map(|r| match r {
                NodeRun::Done(v) => Some(v),
                NodeRun::Failed(_) => None,
            })
            .flatten()
            .map(|(id, o)| (id.clone(), o.snapshots.iter().map(entry).collect()))
            .collect();
        let branch = &inv.settings.reconciler.status_branch;
        let current = executor::status::read_branch(&g.repo, branch)?;
        let (statuses, missing) = executor::status::with_backups(current, &lists);
        for id in &missing {
            super::note(&format!(
                "gitvps backup: {id} has no status yet (run gitvps apply --status): its backups are not published"
            ))?;
        }
        let known = inv.vps.keys().cloned().collect();
        let message = format!(
            "gitvps backup run: backups of {} VPS(es) at {}",
            statuses.len(),
            spec.now.format("%Y-%m-%d %H:%M:%S UTC")
        );
        let oid = executor::status::write_branch(&g.repo, branch, &statuses, &known, &message)
            .context("cannot write the status branch")?;
        super::emit(&format!(
            "Status: backups of {} VPS(es) written to branch `{branch}` ({}).\n",
            statuses.len(),
            &oid.to_string()[..12]
        ))?;
    }
    Ok(if ok { 0 } else { 1 })
}

fn list(g: &Global, a: &ListArgs) -> anyhow::Result<i32> {
    let s = match setup(g, &a.select, a.json)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    check_vps(&s.inv, &a.vps)?;
    let secrets = Secrets::from_env(&s.inv.settings.backup)?;
    let inv = Arc::new(s.inv);
    let lists = runtime()?.block_on(executor::backup::list_all(
        &inv, &s.desired, &s.nodes, &s.access, &secrets, &a.vps,
    ))?;
    let mut by_vps: BTreeMap<VpsId, Vec<BackupEntry>> = BTreeMap::new();
    let mut text = String::new();
    let mut ok = true;
    for (node, l) in &lists {
        match l {
            Err(why) => {
                ok = false;
                let _ = writeln!(text, "{node}: FAILED: {why}");
            }
            Ok(list) => {
                for l in list {
                    by_vps.entry(l.vps.clone()).or_default().push(entry(l));
                }
            }
        }
    }
    if a.json {
        super::print_json(&by_vps)?;
        if !text.is_empty() {
            super::note(text.trim_end())?;
        }
    } else {
        for (vps, list) in &by_vps {
            for b in list {
                let _ = writeln!(
                    text,
                    "{vps}  {}  {}  {}",
                    b.short_id,
                    b.time.format("%Y-%m-%d %H:%M:%S UTC"),
                    size(b.size_bytes)
                );
            }
        }
        super::emit(&text)?;
    }
    Ok(if ok { 0 } else { 1 })
}
