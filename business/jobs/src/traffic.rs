//! `gitvps monitor usage`: writes each VPS's traffic of its period to `usage/<YYYY-MM>.toml`,
//! and the throttles, suspensions and mails the `[traffic]` policy calls for, in one commit.
//!
//! The totals come from the collector's database (the caller reads them); the decision is
//! `monitor::usage::decide`; like a billing run, mail is sent only after the commit landed.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Days, Utc};
use mail::{Draft, Kind, MailId, Outbox, links};
use model::load::paths;
use model::usage::UsageFile;
use model::{Inventory, VpsId};
use monitor::usage::{ChangeKind, Mail, Run, Totals, human};
use serde_json::json;

use crate::JobError;
use crate::billing::{io_other, queue, read_file, sender, templates, write_file};
use crate::git::Worktree;

/// What a usage run commits.
pub const PATHS: &[&str] = &[model::usage::DIR, "mail", paths::VPS];

/// How a run is carried out: the same options as a billing run.
pub use crate::billing::Options;

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// The decision.
    pub run: Run,
    /// The commit made, if anything changed.
    pub commit: Option<String>,
}

/// The usage file of the month holding `day`, empty when there is none yet.
pub fn read_usage(root: &Path, day: chrono::NaiveDate) -> Result<UsageFile, JobError> {
    let rel = model::usage::path(day);
    match std::fs::read_to_string(root.join(&rel)) {
        Ok(text) => model::usage::parse(&rel, &text).map_err(JobError::Usage),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(UsageFile::default()),
        Err(source) => Err(JobError::Io { path: rel, source }),
    }
}

/// Decides the run on the work tree's head with `totals` (each VPS's bytes in its current
/// period), and unless `dry_run`, writes it, commits it and pushes it. Nothing is committed
/// when the totals, the levels and the VPS files are all as the repo has them.
pub fn run(
    wt: &Worktree,
    opts: &Options,
    totals: &BTreeMap<VpsId, Totals>,
) -> Result<Report, JobError> {
    let (run, commit) = crate::land(wt, PATHS, opts.push.as_ref(), |root| {
        let inv = Inventory::load(root).map_err(JobError::Inventory)?;
        let this_month = read_usage(root, opts.today)?;
        let first = opts.today - Days::new(u64::from(chrono::Datelike::day0(&opts.today)));
        let last_month = match first.pred_opt() {
            Some(d) => read_usage(root, d)?,
            None => UsageFile::default(),
        };
        let run =
            monitor::usage::decide(&inv, opts.today, opts.now, totals, &this_month, &last_month)?;
        let unchanged = run.is_quiet() && same_figures(&run.file, &this_month);
        if opts.dry_run || unchanged {
            return Ok((run, None));
        }
        wt.ensure_clean(PATHS)?;
        write(root, &inv, &run, opts.now)?;
        let message = format!("{}\n", run.render().trim_end());
        Ok((run, Some(message)))
    })?;
    Ok(Report { run, commit })
}

/// Whether two usage files hold the same figures and levels (their `written` aside).
fn same_figures(a: &UsageFile, b: &UsageFile) -> bool {
    a.vps.len() == b.vps.len()
        && a.vps.iter().all(|(id, x)| {
            b.vps.get(id).is_some_and(|y| {
                (x.start, x.end, x.rx, x.tx, x.counted, x.quota, x.mailed)
                    == (y.start, y.end, y.rx, y.tx, y.counted, y.quota, y.mailed)
            })
        })
}

/// Writes the usage file, the VPS files and the outbox.
fn write(root: &Path, inv: &Inventory, run: &Run, now: DateTime<Utc>) -> Result<(), JobError> {
    write_file(
        root,
        &model::usage::path(run.today),
        &model::usage::render(&run.file),
    )?;
    for c in &run.changes {
        let rel = format!("{}/{}.toml", paths::VPS, c.vps);
        let text = read_file(root, &rel)?;
        let mut f = model::edit::TomlFile::parse(&rel, &text)?;
        match c.action {
            ChangeKind::Throttle => f.set_throttled(true),
            ChangeKind::Unthrottle => f.set_throttled(false),
            ChangeKind::Suspend => {
                f.set_date("suspended", run.today)?;
                f.set_state(model::values::State::Suspended);
                f.set_suspension(Some(model::values::Suspension::Traffic));
            }
            ChangeKind::Unsuspend => {
                f.set_state(model::values::State::Active);
                f.set_suspension(None);
                f.remove("suspended");
            }
        }
        write_file(root, &rel, &f.render())?;
    }
    let outbox = Outbox::open(root).map_err(|e| io_other("mail", &e))?;
    let templates = templates(root)?;
    let sender = sender(&inv.settings);
    for m in &run.mails {
        let id: MailId = m.id.parse().map_err(|e| JobError::Mail {
            id: m.id.clone(),
            message: format!("{e}"),
        })?;
        let Some(customer) = inv.customers.get(&m.customer) else {
            continue;
        };
        let Some(to) = customer.email.clone() else {
            outbox
                .mark_skipped(&id, "no e-mail address", now)
                .map_err(|e| io_other("mail/sent", &e))?;
            continue;
        };
        let draft = draft(inv, m, id, to, &customer.name);
        queue(&outbox, &templates, &sender, &draft, now)?;
    }
    Ok(())
}

/// The draft of one traffic mail.
fn draft(inv: &Inventory, m: &Mail, id: MailId, to: model::values::Email, name: &str) -> Draft {
    let s = &inv.settings;
    let hostname = inv
        .vps
        .get(&m.vps)
        .map(|v| v.hostname.to_string())
        .unwrap_or_default();
    let percent = match m.quota.bytes() {
        0 => 0,
        q => u128::from(m.used) * 100 / u128::from(q),
    };
    let mut ctx = links::common(s, name);
    ctx["vps"] = json!(m.vps.to_string());
    ctx["hostname"] = json!(hostname);
    ctx["used"] = json!(human(m.used));
    ctx["quota"] = json!(human(m.quota.bytes()));
    ctx["percent"] = json!(u64::try_from(percent).unwrap_or(u64::MAX));
    ctx["level"] = json!(m.level.to_string());
    ctx["action"] = json!(m.action.to_string());
    ctx["rate"] = json!(s.traffic.throttle_rate.to_string());
    ctx["resets_on"] = json!(m.resets_on.to_string());
    ctx["panel_url"] = json!(links::vps(s, m.language, m.vps.as_str()));
    Draft {
        id,
        kind: Kind::Traffic,
        lang: m.language,
        to,
        to_name: Some(name.to_owned()),
        reply_to: None,
        context: ctx,
        attachments: Vec::new(),
    }
}
