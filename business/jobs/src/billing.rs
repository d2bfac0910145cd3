//! `gitvps billing run`: reads the ledger from the repo, lets `billing::dunning::decide` choose,
//! writes the invoices, VPS state changes and outbox in one commit, pushes it, then sends.
//!
//! The order makes a crash harmless: nothing is sent before the commit that queues it has
//! landed, and the next run sends whatever the outbox still holds (see `mail::outbox`).

use std::path::Path;

use billing::NumberingError;
use billing::dunning::{MailIntent, MailKind, Run};
use billing::invoice::{INVOICES_DIR, Invoice, invoice_path, render};
use billing::ledger::Ledger;
use chrono::{DateTime, Days, NaiveDate, Utc};
use mail::{Draft, Kind, MailId, Outbox, Sender, Templates, links};
use model::load::paths;
use model::policy::InvoiceRule;
use model::{Diagnostic, Diagnostics, Inventory, Settings};
use serde_json::json;

use crate::JobError;
use crate::git::Worktree;

/// Folder of the payment records the hooks write.
pub const PAYMENTS_DIR: &str = "billing/payments";
/// What a billing run commits: nothing else in the repo is touched.
pub const PATHS: &[&str] = &["billing", "mail", paths::VPS];

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct Options {
    /// The day decided for.
    pub today: NaiveDate,
    /// The time written into mails and logs.
    pub now: DateTime<Utc>,
    /// Print only; write, commit and send nothing.
    pub dry_run: bool,
    /// Where to push the commit before sending (`None`: keep it local).
    pub push: Option<(String, String)>,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// The decision.
    pub run: Run,
    /// The commit made, if anything changed.
    pub commit: Option<String>,
    /// Mails skipped, with why (no address).
    pub skipped: Vec<(String, String)>,
}

/// Reads the ledger of the repo at `root`: invoice files, payment records and handled mails.
pub fn read_ledger(root: &Path) -> Result<Ledger, JobError> {
    let invoices = read_dir_texts(root, INVOICES_DIR)?;
    let payments = read_dir_texts(root, PAYMENTS_DIR)?;
    let outbox = Outbox::open(root).map_err(|e| io_other(".", &e))?;
    let handled = outbox.handled().map_err(|e| io_other("mail", &e))?;
    Ledger::load(
        invoices,
        payments,
        handled.into_iter().map(|id| id.as_str().to_owned()),
    )
    .map_err(JobError::Ledger)
}

/// Decides today's run on the work tree's head, and unless `dry_run`, writes it, commits it
/// and pushes it (deciding again on the new head when the push loses a race).
pub fn run(wt: &Worktree, opts: &Options) -> Result<Report, JobError> {
    let ((run, skipped), commit) = crate::land(wt, PATHS, opts.push.as_ref(), |root| {
        let inv = Inventory::load(root).map_err(JobError::Inventory)?;
        let ledger = read_ledger(root)?;
        let decided = billing::dunning::decide(opts.today, &inv, &inv.settings, &ledger);
        if opts.dry_run || decided.is_empty() {
            return Ok(((decided, Vec::new()), None));
        }
        wt.ensure_clean(PATHS)?;
        let skipped = write(root, &inv, &decided, opts.now)?;
        let message = commit_message(&decided);
        Ok(((decided, skipped), Some(message)))
    })?;
    Ok(Report {
        run,
        commit,
        skipped,
    })
}

/// The billing records' problems, for `gitvps validate`: invoice files and payment records
/// that do not parse or name no invoice, and gaps and duplicates among the invoice numbers of
/// `rule` (at the `number` line of the invoice file that shows them).
pub fn check_ledger(root: &Path, rule: &InvoiceRule) -> Result<Diagnostics, JobError> {
    let invoices = read_dir_texts(root, INVOICES_DIR)?;
    let payments = read_dir_texts(root, PAYMENTS_DIR)?;
    let ledger = match Ledger::load(invoices.clone(), payments, std::iter::empty()) {
        Ok(l) => l,
        Err(d) => return Ok(d),
    };
    let diags = ledger
        .check_numbers(rule)
        .into_iter()
        .map(|e| {
            let number = match &e {
                NumberingError::Duplicate { number, .. } => Some(number),
                NumberingError::Gap { next, .. } => Some(next),
                NumberingError::Taken(_) | NumberingError::Invalid(_) => None,
            };
            let file = number.map_or_else(|| INVOICES_DIR.to_owned(), invoice_path);
            let (line, col) = invoices
                .iter()
                .find(|(p, _)| *p == file)
                .and_then(|(_, text)| key_position(text, "number"))
                .unwrap_or((0, 0));
            Diagnostic {
                file: file.into(),
                line,
                col,
                field: "number".into(),
                message: e.to_string(),
            }
        })
        .collect();
    Ok(Diagnostics(diags).sorted())
}

/// Line and column (1-based) of the value of a top-level `key = value` line.
fn key_position(text: &str, key: &str) -> Option<(u32, u32)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let rest = l.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        let col = l.len() - rest.trim_start().len() + 1;
        Some((u32::try_from(i + 1).ok()?, u32::try_from(col).ok()?))
    })
}

/// Writes the run into the work tree: invoice files, VPS files, the outbox. Returns the mails
/// skipped (recorded as such in the sent log) with their reason.
fn write(
    root: &Path,
    inv: &Inventory,
    run: &Run,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>, JobError> {
    for i in &run.invoices {
        write_file(root, &invoice_path(&i.number), &render(i))?;
    }
    for c in &run.changes {
        let rel = format!("{}/{}.toml", paths::VPS, c.vps());
        let text = read_file(root, &rel)?;
        let mut f = model::edit::TomlFile::parse(&rel, &text)?;
        c.edit(&mut f)?;
        write_file(root, &rel, &f.render())?;
    }
    let outbox = Outbox::open(root).map_err(|e| io_other("mail", &e))?;
    let templates = templates(root)?;
    let sender = sender(&inv.settings);
    let mut skipped = Vec::new();
    for m in &run.mails {
        let id: MailId = m.id.parse().map_err(|e| JobError::Mail {
            id: m.id.clone(),
            message: format!("{e}"),
        })?;
        let (Some(to), None) = (&m.to, &m.skip) else {
            let why = m.skip.clone().unwrap_or_else(|| "no e-mail address".into());
            outbox
                .mark_skipped(&id, &why, now)
                .map_err(|e| io_other("mail/sent", &e))?;
            skipped.push((m.id.clone(), why));
            continue;
        };
        let draft = draft(inv, run, m, id, to.clone());
        queue(&outbox, &templates, &sender, &draft, now)?;
    }
    Ok(skipped)
}

/// The sender of the repo's mails, from `[mail]`.
pub(crate) fn sender(s: &Settings) -> Sender {
    Sender::new(s.mail.from.clone(), s.mail.from_name.clone())
}

/// Renders a draft and puts it in the outbox; false when its id was already handled.
pub(crate) fn queue(
    outbox: &Outbox,
    templates: &Templates,
    sender: &Sender,
    draft: &Draft,
    now: DateTime<Utc>,
) -> Result<bool, JobError> {
    let bytes = mail::build(draft, sender, templates, now).map_err(|e| JobError::Mail {
        id: draft.id.to_string(),
        message: model::diag::error_chain(&e),
    })?;
    outbox
        .put(&draft.id, &bytes)
        .map_err(|e| io_other("mail/outbox", &e))
}

/// The mail templates: the embedded ones, overridden by the repo's `templates/mail/`.
pub fn templates(root: &Path) -> Result<Templates, JobError> {
    Templates::with_overrides(overrides(root, "templates/mail")?).map_err(|e| JobError::Mail {
        id: "templates/mail".into(),
        message: model::diag::error_chain(&e),
    })
}

/// The invoice templates: the embedded ones, overridden by the repo's `templates/invoice/`.
pub fn invoice_templates(root: &Path) -> Result<billing::html::Templates, JobError> {
    let o = overrides(root, billing::html::TEMPLATES_DIR)?;
    Ok(billing::html::Templates::with_overrides(o)?)
}

/// The files of a template override folder, by file name.
fn overrides(
    root: &Path,
    dir: &str,
) -> Result<std::collections::BTreeMap<String, String>, JobError> {
    let mut out = std::collections::BTreeMap::new();
    for (path, text) in read_dir_texts(root, dir)? {
        if let Some(name) = path.rsplit('/').next() {
            out.insert(name.to_owned(), text);
        }
    }
    Ok(out)
}

/// The draft of one mail intent: its kind's variables filled from the inventory and the run.
fn draft(
    inv: &Inventory,
    run: &Run,
    m: &MailIntent,
    id: MailId,
    to: model::values::Email,
) -> Draft {
    let s: &Settings = &inv.settings;
    let customer = inv.customers.get(&m.customer);
    let vps = m.vps.as_ref().and_then(|v| inv.vps.get(v));
    let vps_id = m.vps.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let product = vps
        .and_then(|v| inv.products.get(&v.product))
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let invoice: Option<&Invoice> = m
        .invoice
        .as_ref()
        .and_then(|n| run.invoices.iter().find(|i| &i.number == n));
    let money = |i: &Invoice| i.total.with_decimals(i.currency.minor_units()).to_string();
    let expires = m.expires.map(|d| d.to_string()).unwrap_or_default();
    let name = customer.map(|c| c.name.clone()).unwrap_or_default();
    let mut ctx = links::common(s, &name);
    ctx["vps"] = json!(vps_id);
    ctx["hostname"] = json!(vps.map(|v| v.hostname.to_string()).unwrap_or_default());
    ctx["product"] = json!(product);
    ctx["expires"] = json!(expires);
    ctx["renew_url"] = json!(links::vps(s, m.language, &vps_id));
    let kind = match m.kind {
        MailKind::Reminder => {
            let grace = u64::from(s.billing.grace_days);
            let suspend_on = m
                .expires
                .and_then(|e| e.checked_add_days(Days::new(grace)))
                .map(|d| d.to_string())
                .unwrap_or_default();
            ctx["overdue"] = json!(m.overdue);
            ctx["suspend_on"] = json!(suspend_on);
            ctx["days_left"] = json!(m.days.unwrap_or(0));
            ctx["price"] = json!(invoice.map(money).unwrap_or_default());
            ctx["currency"] = json!(
                invoice
                    .map(|i| i.currency.to_string())
                    .unwrap_or_else(|| inv.currency.to_string())
            );
            Kind::Reminder
        }
        MailKind::Invoice => {
            if let Some(i) = invoice {
                ctx["invoice"] = json!(i.number.to_string());
                ctx["date"] = json!(i.issued.to_string());
                ctx["amount"] = json!(money(i));
                ctx["currency"] = json!(i.currency.to_string());
                ctx["period"] = json!(
                    i.lines
                        .iter()
                        .find_map(|l| l.period)
                        .map(|(a, b)| format!("{a} – {b}"))
                        .unwrap_or_default()
                );
                ctx["invoice_url"] = json!(links::invoice(s, m.language, &i.number.to_string()));
            }
            Kind::Invoice
        }
        MailKind::Suspended => {
            let end = m.expires.and_then(|e| {
                e.checked_add_days(Days::new(
                    u64::from(s.billing.grace_days) + u64::from(s.billing.terminate_days),
                ))
            });
            let end =
                end.map(|e| e.max(run.today + Days::new(u64::from(s.billing.terminate_days))));
            ctx["expired"] = json!(expires);
            ctx["terminate_on"] = json!(end.map(|d| d.to_string()).unwrap_or_default());
            Kind::Suspended
        }
        MailKind::Terminated => {
            ctx["terminated"] = json!(run.today.to_string());
            ctx["order_url"] = json!(links::order(s, m.language));
            Kind::Terminated
        }
    };
    Draft {
        id,
        kind,
        lang: m.language,
        to,
        to_name: customer.map(|c| c.name.clone()),
        reply_to: None,
        context: ctx,
        attachments: Vec::new(),
    }
}

/// Most lines of the decision a commit message lists; the commit's files hold the rest.
const MESSAGE_LINES: usize = 200;

/// `billing run 2026-12-05: 3 invoice(s), 1 state change(s), 5 mail(s)`, then the decision as
/// `--dry-run` prints it, cut after [`MESSAGE_LINES`] lines on a large fleet.
fn commit_message(run: &Run) -> String {
    let rendered = run.render();
    let mut lines = rendered.lines();
    let head = lines.next().unwrap_or_default();
    let rest: Vec<&str> = lines.collect();
    let mut body = rest
        .iter()
        .take(MESSAGE_LINES)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    if rest.len() > MESSAGE_LINES {
        body.push_str(&format!(
            "\n... and {} more (the files of this commit)",
            rest.len() - MESSAGE_LINES
        ));
    }
    format!("{head}\n\n{body}\n")
}

pub(crate) fn read_dir_texts(root: &Path, rel: &str) -> Result<Vec<(String, String)>, JobError> {
    let dir = root.join(rel);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JobError::Io {
                path: rel.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !e.path().is_file() {
            continue;
        }
        let path = format!("{rel}/{name}");
        out.push((path.clone(), read_file(root, &path)?));
    }
    out.sort();
    Ok(out)
}

pub(crate) fn read_file(root: &Path, rel: &str) -> Result<String, JobError> {
    std::fs::read_to_string(root.join(rel)).map_err(|source| JobError::Io {
        path: rel.to_owned(),
        source,
    })
}

pub(crate) fn write_file(root: &Path, rel: &str, text: &str) -> Result<(), JobError> {
    let path = root.join(rel);
    let io = |source| JobError::Io {
        path: rel.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(&path, text).map_err(io)
}

pub(crate) fn io_other(rel: &str, e: &dyn std::error::Error) -> JobError {
    JobError::Io {
        path: rel.to_owned(),
        source: std::io::Error::other(model::diag::error_chain(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example fleet's invoice `n` of its run on 2026-12-05 (1 to 3).
    fn invoice(n: usize) -> (String, String) {
        let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let inv = Inventory::load(&top).unwrap();
        let run = billing::dunning::decide(
            "2026-12-05".parse().unwrap(),
            &inv,
            &inv.settings,
            &Ledger::default(),
        );
        let i = &run.invoices[n - 1];
        (invoice_path(&i.number), render(i))
    }

    #[test]
    fn the_ledger_check_names_files_and_lines() {
        let t = tempfile::tempdir().unwrap();
        let rule: InvoiceRule = "INV-{year}-{seq:06}".parse().unwrap();
        assert!(
            check_ledger(t.path(), &rule).unwrap().is_empty(),
            "no records"
        );
        let dir = t.path().join(INVOICES_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        for n in [1, 3] {
            let (path, text) = invoice(n);
            std::fs::write(t.path().join(path), text).unwrap();
        }
        let d = check_ledger(t.path(), &rule).unwrap();
        assert_eq!(d.len(), 1, "{d}");
        let text = d.to_string();
        assert!(
            text.starts_with("billing/invoices/INV-2026-000003.toml:")
                && text.contains(": number: invoice INV-2026-000003: sequence numbers 2 to 2"),
            "{text}"
        );
        assert!(d.iter().all(|x| x.line > 0), "{text}");

        std::fs::write(dir.join("INV-2026-000002.toml"), "number = 7\n").unwrap();
        let d = check_ledger(t.path(), &rule).unwrap().to_string();
        assert!(
            d.starts_with("billing/invoices/INV-2026-000002.toml:"),
            "{d}"
        );
        let pay = t.path().join(PAYMENTS_DIR);
        std::fs::create_dir_all(&pay).unwrap();
        let (path, text) = invoice(2);
        std::fs::write(t.path().join(path), text).unwrap();
        std::fs::write(pay.join("evt_1.toml"), "event = \"evt_1\"\n").unwrap();
        let d = check_ledger(t.path(), &rule).unwrap().to_string();
        assert!(d.starts_with("billing/payments/evt_1.toml"), "{d}");
    }
}
