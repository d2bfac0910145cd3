//! `gitvps billing run|report` and `gitvps mail send`: the daily business cycle (invoices,
//! reminders, suspensions, terminations, then mail) and the operator's report.

use std::path::Path;

use anyhow::Context;
use billing::report::Month;
use chrono::{NaiveDate, Utc};
use clap::{Args, Subcommand};
use jobs::billing::{Options, Report};
use jobs::git::Worktree;
use mail::{Outgoing, SendError};

use super::Global;

/// `gitvps billing ...`
#[derive(Debug, Subcommand)]
pub enum BillingCommand {
    /// Issue renewal invoices, queue reminders, suspend and terminate as the `[billing]`
    /// policy says, commit that (and push it), then send the mail. Idempotent: a second run the
    /// same day changes and sends nothing. Exit 0: done; 2 (--dry-run): something to do;
    /// 1: an error, or mail that could not be sent (it stays in mail/outbox for the next run).
    Run(RunArgs),
    /// Revenue invoiced and paid per month, outstanding invoices, suspended VPSes and those due
    /// for termination, per location and product, and resellers' commission.
    Report(ReportArgs),
}

/// `gitvps mail ...`
#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Send what waits in mail/outbox through GITVPS_SMTP_URL (an SMTP server, or
    /// maildir:///DIR) or into --maildir DIR, then commit (and push) the sent log.
    Send(SendArgs),
}

/// Flags of `gitvps billing run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The day to decide for (YYYY-MM-DD) [default: today, UTC].
    #[arg(long, value_name = "DATE")]
    pub today: Option<NaiveDate>,
    /// Print what the run would do, like a plan; write and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the decision as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the commits go.
    #[command(flatten)]
    pub push: PushArgs,
}

/// Where commits go.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push to this remote's branch before sending (REMOTE/BRANCH) [default: the upstream of
    /// HEAD, if it has one].
    #[arg(long, value_name = "REMOTE/BRANCH", conflicts_with = "no_push")]
    pub push: Option<String>,
    /// Commit only; do not push (mail is still sent).
    #[arg(long)]
    pub no_push: bool,
}

/// Flags of `gitvps mail send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Deliver into this Maildir folder (DIR/new/) instead of GITVPS_SMTP_URL: each message
    /// once, recorded in the sent log like an SMTP delivery.
    #[arg(long, value_name = "DIR")]
    pub maildir: Option<std::path::PathBuf>,
    /// Where the commits go.
    #[command(flatten)]
    pub push: PushArgs,
}

/// Flags of `gitvps billing report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The month (YYYY-MM) [default: the last twelve months].
    #[arg(long, value_name = "MONTH")]
    pub month: Option<Month>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `gitvps billing ...`.
pub fn run(g: &Global, c: BillingCommand) -> anyhow::Result<i32> {
    match c {
        BillingCommand::Run(a) => billing_run(g, &a),
        BillingCommand::Report(a) => report(g, &a),
    }
}

/// Runs `gitvps mail ...`.
pub fn mail(g: &Global, c: MailCommand) -> anyhow::Result<i32> {
    match c {
        MailCommand::Send(a) => {
            let wt = Worktree::open(&g.repo)?;
            let push = push_target(&wt, &a.push)?;
            let out = match &a.maildir {
                Some(dir) => Some(Outgoing::Maildir(mail::Maildir::new(&std::path::absolute(
                    dir,
                )?))),
                None => None,
            };
            send_with(&wt, Utc::now(), push.as_ref(), out)
        }
    }
}

pub(crate) fn push_target(wt: &Worktree, a: &PushArgs) -> anyhow::Result<Option<(String, String)>> {
    if a.no_push {
        return Ok(None);
    }
    match &a.push {
        Some(p) => {
            let (r, b) = p
                .split_once('/')
                .with_context(|| format!("--push {p}: write it as REMOTE/BRANCH (origin/main)"))?;
            Ok(Some((r.to_owned(), b.to_owned())))
        }
        None => Ok(wt.upstream()?),
    }
}

fn billing_run(g: &Global, a: &RunArgs) -> anyhow::Result<i32> {
    let wt = Worktree::open(&g.repo)?;
    let now = Utc::now();
    let opts = Options {
        today: a.today.unwrap_or_else(|| now.date_naive()),
        now,
        dry_run: a.dry_run,
        push: push_target(&wt, &a.push)?,
    };
    let Report {
        run,
        commit,
        skipped,
    } = match super::job_or_report(jobs::billing::run(&wt, &opts), a.json)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if a.json {
        super::print_json(&run)?;
    } else {
        super::emit(&run.render())?;
    }
    if a.dry_run {
        return Ok(if run.is_empty() { 0 } else { 2 });
    }
    for (id, why) in &skipped {
        super::note(&format!("mail {id} not sent: {why}"))?;
    }
    note_commit(commit.as_deref(), opts.push.as_ref())?;
    send(&wt, &opts)
}

/// Says which commit a job made and where it was pushed.
pub(crate) fn note_commit(
    commit: Option<&str>,
    push: Option<&(String, String)>,
) -> anyhow::Result<()> {
    if let Some(c) = commit {
        let pushed = match push {
            Some((r, b)) => format!(", pushed to {r}/{b}"),
            None => String::new(),
        };
        super::note(&format!("committed {}{pushed}", c.get(..12).unwrap_or(c)))?;
    }
    Ok(())
}

/// Sends the outbox; exit 1 (naming the server) when mail is left in it.
fn send(wt: &Worktree, opts: &Options) -> anyhow::Result<i32> {
    send_with(wt, opts.now, opts.push.as_ref(), None)
}

/// Sends the outbox through `out` (default: `GITVPS_SMTP_URL`) and commits the sent log; exit
/// 1 (naming the server, never its URL) when mail is left in the outbox.
pub(crate) fn send_with(
    wt: &Worktree,
    now: chrono::DateTime<Utc>,
    push: Option<&(String, String)>,
    out: Option<Outgoing>,
) -> anyhow::Result<i32> {
    let pending = mail::Outbox::open(wt.root())?.pending()?.len();
    if pending == 0 {
        return Ok(0);
    }
    let out = match out.map_or_else(Outgoing::from_env, Ok) {
        Ok(o) => o,
        Err(e @ SendError::NotConfigured) => {
            super::note(&format!(
                "{e}: {pending} mail(s) wait in mail/outbox for the next run"
            ))?;
            return Ok(1);
        }
        Err(e) => return Err(e.into()),
    };
    let sent = jobs::send::send_and_record(wt, &out, now, push)?;
    let d = &sent.delivery;
    super::note(&format!(
        "mail via {}: {} sent, {} rejected, {} deferred",
        out.describe(),
        d.sent.len(),
        d.rejected.len(),
        d.deferred.len()
    ))?;
    for (id, why) in &d.rejected {
        super::note(&format!("  rejected {id}: {why}"))?;
    }
    if let Some(e) = &d.stopped {
        let left = mail::Outbox::open(wt.root())?.pending()?.len();
        super::note(&format!(
            "mail stopped: {}; {left} mail(s) wait in mail/outbox for the next run",
            model::diag::error_chain(e)
        ))?;
        return Ok(1);
    }
    Ok(if d.deferred.is_empty() { 0 } else { 1 })
}

fn report(g: &Global, a: &ReportArgs) -> anyhow::Result<i32> {
    let inv = match super::load_or_report(&g.repo, a.json)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let ledger = jobs::billing::read_ledger(Path::new(&g.repo))?;
    let today = Utc::now().date_naive();
    let months = match a.month {
        Some(m) => m..=m,
        None => {
            let to = Month::of(today);
            let from = Month::of(
                today
                    .checked_sub_months(chrono::Months::new(11))
                    .unwrap_or(today),
            );
            from..=to
        }
    };
    let r = billing::report::report(&inv, &ledger, months, today);
    if a.json {
        super::print_json(&r)?;
    } else {
        super::emit(&r.render())?;
    }
    Ok(0)
}
