//! `gitvps announce`: one mail to each customer with a live VPS in the chosen set, queued with
//! the announcement's record `mail/announcements/<id>.toml` in one bot commit, then sent.
//!
//! The same announcement made again (same texts and selector, any day) keeps its id, so its
//! mails' ids are the same and nothing is queued twice; only customers new to the set get it.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use mail::announce::{
    ANNOUNCEMENTS_DIR, Recipient, Record, Selector, Text, check_selector, mail_id, new_id,
    recipients, record_path,
};
use mail::{Draft, Kind, MailId, Outbox, links};
use model::Inventory;
use model::values::Email;
use serde_json::json;

use crate::JobError;
use crate::billing::{io_other, queue, read_dir_texts, sender, templates, write_file};
use crate::git::Worktree;

/// What an announcement commits.
pub const PATHS: &[&str] = &["mail"];

/// What to announce, to whom.
#[derive(Debug, Clone)]
pub struct Request {
    /// The VPSes whose customers get it.
    pub selector: Selector,
    /// The texts.
    pub text: Text,
}

/// How it is carried out: `today` dates a new announcement, `now` the mails; `dry_run` lists
/// the recipients only; `push` names where the commit goes. The same options as a billing run.
pub use crate::billing::Options;

/// One recipient and what happens to their mail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Line {
    /// The customer and their VPSes in the set.
    #[serde(flatten)]
    pub recipient: Recipient,
    /// The mail's id.
    pub mail: MailId,
    /// What happens: `queued`, `already` (queued or sent by an earlier run), `skipped`.
    pub outcome: &'static str,
}

/// What an announcement did (or, dry, would do).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Its id.
    pub id: String,
    /// Its selector.
    pub selector: String,
    /// Its subject.
    pub subject: String,
    /// Every customer in the set, by id.
    pub lines: Vec<Line>,
    /// The commit made.
    pub commit: Option<String>,
}

impl Report {
    /// Mails this run queues (or would).
    pub fn queued(&self) -> usize {
        self.lines.iter().filter(|l| l.outcome == "queued").count()
    }

    /// The recipients list: `! mail` queued, `= mail` already handled, `- skip` no address.
    pub fn render(&self) -> String {
        let mut out = format!(
            "announce {} ({}): {:?}\n",
            self.id, self.selector, self.subject
        );
        for l in &self.lines {
            let r = &l.recipient;
            let vps: Vec<&str> = r.vps.iter().map(|v| v.as_str()).collect();
            let vps = vps.join(" ");
            let lang = mail::render::lang_code(r.language);
            match (&r.email, l.outcome) {
                (Some(e), "queued") => {
                    out.push_str(&format!("! mail {} <{e}> {lang}: {vps}\n", r.customer));
                }
                (Some(e), _) => out.push_str(&format!(
                    "= mail {} <{e}> {lang}: {vps} (already queued or sent)\n",
                    r.customer
                )),
                (None, _) => out.push_str(&format!(
                    "- skip {} (no e-mail address): {vps}\n",
                    r.customer
                )),
            }
        }
        let skipped = self.lines.iter().filter(|l| l.outcome == "skipped").count();
        out.push_str(&format!(
            "{} customer(s): {} mail(s) to queue, {} already, {} skipped\n",
            self.lines.len(),
            self.queued(),
            self.lines.len() - self.queued() - skipped,
            skipped
        ));
        out
    }
}

/// The id and earlier record of an announcement: an existing record with the same digest
/// (the same announcement made again), else a new id for today.
fn identify(
    root: &Path,
    digest: &str,
    subject: &str,
    today: NaiveDate,
) -> Result<(String, NaiveDate, Option<Record>), JobError> {
    let records = read_dir_texts(root, ANNOUNCEMENTS_DIR)?;
    for (path, text) in &records {
        let r = Record::parse(path, text)?;
        if r.digest == digest {
            return Ok((r.id.clone(), r.date, Some(r)));
        }
    }
    let taken = |id: &str| records.iter().any(|(p, _)| *p == record_path(id));
    Ok((new_id(today, subject, taken), today, None))
}

/// Announces, or with `dry_run` only lists who would get it.
pub fn run(wt: &Worktree, req: &Request, opts: &Options) -> Result<Report, JobError> {
    let (report, commit) = crate::land(wt, PATHS, opts.push.as_ref(), |root| {
        let inv = Inventory::load(root).map_err(JobError::Inventory)?;
        check_selector(&inv, &req.selector)?;
        let digest = req.text.digest(&req.selector);
        let (id, date, earlier) = identify(root, &digest, &req.text.subject, opts.today)?;
        let outbox = Outbox::open(root).map_err(|e| io_other(".", &e))?;
        let handled = outbox.handled().map_err(|e| io_other("mail", &e))?;
        let mut lines = Vec::new();
        for r in recipients(&inv, &req.selector) {
            let mail = mail_id(&id, &r.customer).map_err(|e| JobError::Mail {
                id: id.clone(),
                message: e.to_string(),
            })?;
            let outcome = match (&r.email, handled.contains(&mail)) {
                (_, true) => "already",
                (None, false) => "skipped",
                (Some(_), false) => "queued",
            };
            lines.push(Line {
                recipient: r,
                mail,
                outcome,
            });
        }
        let report = Report {
            id: id.clone(),
            selector: req.selector.to_string(),
            subject: req.text.subject.clone(),
            lines,
            commit: None,
        };
        if opts.dry_run || report.lines.iter().all(|l| l.outcome == "already") {
            return Ok((report, None));
        }
        wt.ensure_clean(PATHS)?;
        write(
            root,
            &inv,
            req,
            &report,
            date,
            &digest,
            earlier.as_ref(),
            opts.now,
        )?;
        let message = format!(
            "announce {id}: {}\n\n{}: {} mail(s) queued, {} skipped",
            req.text.subject,
            report.selector,
            report.queued(),
            report
                .lines
                .iter()
                .filter(|l| l.outcome == "skipped")
                .count()
        );
        Ok((report, Some(message)))
    })?;
    Ok(Report { commit, ..report })
}

/// Queues the mails, records the skipped ones in the sent log and writes the record.
#[allow(clippy::too_many_arguments)]
fn write(
    root: &Path,
    inv: &Inventory,
    req: &Request,
    report: &Report,
    date: NaiveDate,
    digest: &str,
    earlier: Option<&Record>,
    now: DateTime<Utc>,
) -> Result<(), JobError> {
    let outbox = Outbox::open(root).map_err(|e| io_other(".", &e))?;
    let templates = templates(root)?;
    let sender = sender(&inv.settings);
    let mut record = Record {
        id: report.id.clone(),
        date,
        selector: report.selector.clone(),
        digest: digest.to_owned(),
        text: req.text.clone(),
        mails: Vec::new(),
        skipped: Vec::new(),
    };
    for l in &report.lines {
        let r = &l.recipient;
        match &r.email {
            Some(to) => {
                if l.outcome == "queued" {
                    queue(&outbox, &templates, &sender, &draft(inv, req, l, to), now)?;
                }
                record.mails.push((
                    l.mail.to_string(),
                    r.customer.clone(),
                    to.to_string(),
                    r.vps.clone(),
                ));
            }
            None => {
                outbox
                    .mark_skipped(&l.mail, "no e-mail address", now)
                    .map_err(|e| io_other("mail/sent", &e))?;
                record.skipped.push((
                    r.customer.clone(),
                    "no e-mail address".into(),
                    r.vps.clone(),
                ));
            }
        }
    }
    if let Some(e) = earlier {
        record.merge(e);
    }
    write_file(root, &record_path(&report.id), &record.render())
}

/// The draft of one customer's copy, in their language.
fn draft(inv: &Inventory, req: &Request, l: &Line, to: &Email) -> Draft {
    let r = &l.recipient;
    let (title, body) = req.text.for_language(r.language);
    let mut ctx = links::common(&inv.settings, &r.name);
    ctx["title"] = json!(title);
    ctx["body"] = json!(body);
    Draft {
        id: l.mail.clone(),
        kind: Kind::Announcement,
        lang: r.language,
        to: to.clone(),
        to_name: Some(r.name.clone()),
        reply_to: None,
        context: ctx,
        attachments: Vec::new(),
    }
}
