//! `gitvps ticket reply|close`: support's answer appended to `tickets/<id>.md` (the format of
//! `model::tickets`) with the customer's `ticket-answered` mail, in one bot commit, then sent.
//!
//! Closing without a reply mails nothing: there is nothing new to read, and the panel shows
//! the status. A customer's next message opens the ticket again.

use chrono::{DateTime, Utc};
use mail::{Draft, Kind, MailId, Outbox, links};
use model::Inventory;
use model::tickets::{self, ANSWERED, CLOSED, Ticket, TicketId};
use serde_json::json;

use crate::JobError;
use crate::billing::{io_other, queue, read_file, sender, templates, write_file};
use crate::git::Worktree;

/// What support does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Answer (and close the ticket, or leave it `answered`).
    Reply {
        /// The answer, as written (checked here).
        body: String,
        /// Close it too.
        close: bool,
    },
    /// Close it without a word.
    Close,
}

/// A ticket job.
#[derive(Debug, Clone)]
pub struct Request {
    /// The ticket.
    pub ticket: TicketId,
    /// What to do.
    pub action: Action,
    /// The name the answer is signed with in the thread.
    pub author: String,
    /// The time written into the thread, the mail and the sent log.
    pub now: DateTime<Utc>,
}

/// What was done.
#[derive(Debug, Clone)]
pub struct Report {
    /// The ticket after the change.
    pub ticket: Ticket,
    /// The mail queued to the customer.
    pub mail: Option<MailId>,
    /// Why no mail went, when a reply was not mailed.
    pub skipped: Option<String>,
    /// The commit (`None`: nothing changed, as closing a closed ticket).
    pub commit: Option<String>,
}

/// Replies to or closes a ticket, commits and pushes it.
pub fn run(
    wt: &Worktree,
    req: &Request,
    push: Option<&(String, String)>,
) -> Result<Report, JobError> {
    let id = req.ticket.to_string();
    let bad = |source| JobError::Ticket {
        ticket: id.clone(),
        source,
    };
    let author = tickets::check_author(&req.author).map_err(bad)?;
    let reply = match &req.action {
        Action::Reply { body, .. } => Some((
            tickets::check_message(body).map_err(bad)?,
            model::text::check_text(body, tickets::MAX_MESSAGE)
                .map_err(|_| bad(tickets::TicketError::Message))?,
        )),
        Action::Close => None,
    };
    let path = req.ticket.path();
    let paths = [path.as_str(), "mail"];
    let (report, commit) = crate::land(wt, &paths, push, |root| {
        if !root.join(&path).is_file() {
            return Err(JobError::UnknownTicket(id.clone()));
        }
        let text = read_file(root, &path)?;
        let before = tickets::parse(req.ticket.clone(), &text).map_err(bad)?;
        let status = match &req.action {
            Action::Reply { close: true, .. } | Action::Close => CLOSED,
            Action::Reply { close: false, .. } => ANSWERED,
        };
        let new = match &reply {
            Some((thread_text, _)) => {
                tickets::append_with_status(&path, &text, &author, thread_text, req.now, status)
            }
            None if before.status == CLOSED => {
                return Ok((
                    Report {
                        ticket: before,
                        mail: None,
                        skipped: None,
                        commit: None,
                    },
                    None,
                ));
            }
            None => tickets::set_status(&path, &text, status),
        }
        .map_err(bad)?;
        let after = tickets::parse(req.ticket.clone(), &new).map_err(bad)?;
        wt.ensure_clean(&paths)?;
        write_file(root, &path, &new)?;
        let (mail, skipped) = match &reply {
            Some((_, plain)) => mail_reply(root, &after, plain, req.now)?,
            None => (None, None),
        };
        let what = match (&reply, status) {
            (Some(_), CLOSED) => "replied and closed",
            (Some(_), _) => "replied",
            (None, _) => "closed",
        };
        let message = format!(
            "ticket {id}: {author} {what} ({} · {})",
            after.customer, after.subject
        );
        Ok((
            Report {
                ticket: after,
                mail,
                skipped,
                commit: None,
            },
            Some(message),
        ))
    })?;
    Ok(Report { commit, ..report })
}

/// Queues the customer's `ticket-answered` mail: id `ticket-answered.<ticket>.<n>`, `n` the
/// number of messages in the thread with the answer.
fn mail_reply(
    root: &std::path::Path,
    t: &Ticket,
    reply: &str,
    now: DateTime<Utc>,
) -> Result<(Option<MailId>, Option<String>), JobError> {
    let inv = Inventory::load(root).map_err(JobError::Inventory)?;
    let id: MailId = format!("ticket-answered.{}.{}", t.id, t.messages.len())
        .parse()
        .map_err(|e: mail::InvalidMailId| JobError::Mail {
            id: t.id.to_string(),
            message: e.to_string(),
        })?;
    let outbox = Outbox::open(root).map_err(|e| io_other(".", &e))?;
    let Some(customer) = inv.customers.get(&t.customer) else {
        let why = format!("customer {} is not in the inventory", t.customer);
        outbox
            .mark_skipped(&id, &why, now)
            .map_err(|e| io_other("mail/sent", &e))?;
        return Ok((None, Some(why)));
    };
    let Some(to) = customer.email.clone() else {
        let why = format!("customer {} has no e-mail address", t.customer);
        outbox
            .mark_skipped(&id, &why, now)
            .map_err(|e| io_other("mail/sent", &e))?;
        return Ok((None, Some(why)));
    };
    let s = &inv.settings;
    let mut ctx = links::common(s, &customer.name);
    ctx["ticket"] = json!(t.id.as_str());
    ctx["subject"] = json!(t.subject);
    ctx["reply"] = json!(reply);
    ctx["ticket_url"] = json!(links::ticket(s, customer.language, t.id.as_str()));
    let draft = Draft {
        id: id.clone(),
        kind: Kind::TicketAnswered,
        lang: customer.language,
        to,
        to_name: Some(customer.name.clone()),
        reply_to: s.mail.support.clone(),
        context: ctx,
        attachments: Vec::new(),
    };
    queue(&outbox, &templates(root)?, &sender(s), &draft, now)?;
    Ok((Some(id), None))
}
