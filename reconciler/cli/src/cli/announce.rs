//! `gitvps announce`: a message from the business to every customer with a live VPS on a node,
//! in a location, of a plan, or anywhere; recorded and queued in one commit, then sent.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{NaiveDate, Utc};
use clap::{ArgGroup, Args};
use jobs::announce::{Options, Request};
use jobs::git::Worktree;
use mail::announce::{Selector, Text};
use model::{NodeId, ProductId};

use super::Global;
use super::billing::{PushArgs, push_target, send_with};

/// Flags of `gitvps announce`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("to").required(true).args(["node", "location", "product", "all"])))]
pub struct AnnounceArgs {
    /// The customers with a VPS on this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<NodeId>,
    /// The customers with a VPS on a node of this location (as the nodes spell it).
    #[arg(long, value_name = "LOCATION")]
    pub location: Option<String>,
    /// The customers with a VPS of this plan.
    #[arg(long, value_name = "PRODUCT")]
    pub product: Option<ProductId>,
    /// Every customer with a VPS.
    #[arg(long)]
    pub all: bool,
    /// The subject (one line).
    #[arg(long, value_name = "TEXT")]
    pub subject: String,
    /// The body: a UTF-8 plain-text file.
    #[arg(long, value_name = "FILE")]
    pub body_file: PathBuf,
    /// The subject for customers whose language is Chinese [default: --subject].
    #[arg(long, value_name = "TEXT", requires = "body_file_zh")]
    pub subject_zh: Option<String>,
    /// The body for customers whose language is Chinese [default: --body-file].
    #[arg(long, value_name = "FILE", requires = "subject_zh")]
    pub body_file_zh: Option<PathBuf>,
    /// The day a new announcement is dated (YYYY-MM-DD) [default: today, UTC].
    #[arg(long, value_name = "DATE")]
    pub today: Option<NaiveDate>,
    /// List the recipients (customer, e-mail, VPSes) and change nothing. Exit 2 when some
    /// would be mailed, 0 when none.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the recipients as JSON.
    #[arg(long)]
    pub json: bool,
    /// Where the commits go.
    #[command(flatten)]
    pub push: PushArgs,
}

fn read(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs the command.
pub fn run(g: &Global, a: &AnnounceArgs) -> anyhow::Result<i32> {
    let selector = match (&a.node, &a.location, &a.product) {
        (Some(n), _, _) => Selector::Node(n.clone()),
        (_, Some(l), _) => Selector::Location(l.clone()),
        (_, _, Some(p)) => Selector::Product(p.clone()),
        _ => Selector::All,
    };
    let body = read(&a.body_file)?;
    let zh = match (&a.subject_zh, &a.body_file_zh) {
        (Some(s), Some(f)) => Some((s.clone(), read(f)?)),
        _ => None,
    };
    let text = Text::new(
        &a.subject,
        &body,
        zh.as_ref().map(|(s, b)| (s.as_str(), b.as_str())),
    )?;
    let wt = Worktree::open(&g.repo)?;
    let now = Utc::now();
    let opts = Options {
        today: a.today.unwrap_or_else(|| now.date_naive()),
        now,
        dry_run: a.dry_run,
        push: push_target(&wt, &a.push)?,
    };
    let report = match super::job_or_report(
        jobs::announce::run(&wt, &Request { selector, text }, &opts),
        a.json,
    )? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if a.json {
        super::print_json(&report)?;
    } else {
        super::emit(&report.render())?;
    }
    if a.dry_run {
        return Ok(if report.queued() == 0 { 0 } else { 2 });
    }
    if let Some(c) = &report.commit {
        let pushed = match &opts.push {
            Some((r, b)) => format!(", pushed to {r}/{b}"),
            None => String::new(),
        };
        super::note(&format!(
            "committed {}{pushed}: mail/announcements/{}.toml",
            c.get(..12).unwrap_or(c),
            report.id
        ))?;
    } else if report.lines.is_empty() {
        super::note("no customer has a live VPS in that set: nothing to announce")?;
    }
    send_with(&wt, now, opts.push.as_ref(), None)
}
