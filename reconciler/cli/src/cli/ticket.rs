//! `gitvps ticket reply|close`: support answers a customer's ticket (appended to
//! `tickets/<id>.md`, mailed to the customer) or closes it, in one commit, then sends.

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use jobs::git::Worktree;
use jobs::ticket::{Action, Request};
use model::tickets::TicketId;

use super::Global;
use super::billing::{PushArgs, push_target, send_with};

/// `gitvps ticket ...`
#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Answer a ticket: the reply is appended to tickets/ID.md (status `answered`, or `closed`
    /// with --close), the customer is mailed it in their language, then the mail is sent.
    Reply(ReplyArgs),
    /// Close a ticket without a reply (no mail); the customer's next message opens it again.
    Close(CloseArgs),
}

/// Flags of `gitvps ticket reply`.
#[derive(Debug, Args)]
pub struct ReplyArgs {
    /// The ticket (t-0001).
    pub id: TicketId,
    /// The answer: a UTF-8 plain-text file (at most 16 KiB).
    #[arg(long, value_name = "FILE")]
    pub body_file: PathBuf,
    /// Close the ticket with this answer.
    #[arg(long)]
    pub close: bool,
    /// The name the answer is signed with in the thread.
    #[arg(long, value_name = "NAME", default_value = "support")]
    pub author: String,
    /// Where the commits go.
    #[command(flatten)]
    pub push: PushArgs,
}

/// Flags of `gitvps ticket close`.
#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The ticket (t-0001).
    pub id: TicketId,
    /// Where the commit goes.
    #[command(flatten)]
    pub push: PushArgs,
}

/// Runs `gitvps ticket ...`.
pub fn run(g: &Global, c: TicketCommand) -> anyhow::Result<i32> {
    let (id, action, author, push) = match c {
        TicketCommand::Reply(a) => {
            let body = std::fs::read_to_string(&a.body_file)
                .with_context(|| format!("cannot read {}", a.body_file.display()))?;
            let action = Action::Reply {
                body,
                close: a.close,
            };
            (a.id, action, a.author, a.push)
        }
        TicketCommand::Close(a) => (a.id, Action::Close, "support".to_owned(), a.push),
    };
    let wt = Worktree::open(&g.repo)?;
    let push = push_target(&wt, &push)?;
    let now = Utc::now();
    let req = Request {
        ticket: id,
        action,
        author,
        now,
    };
    let r = jobs::ticket::run(&wt, &req, push.as_ref())?;
    let t = &r.ticket;
    match &r.commit {
        Some(c) => super::emit(&format!(
            "ticket {} ({}, {:?}): {} message(s), status {}; committed {}\n",
            t.id,
            t.customer,
            t.subject,
            t.messages.len(),
            t.status,
            c.get(..12).unwrap_or(c)
        ))?,
        None => super::emit(&format!("ticket {} is already {}\n", t.id, t.status))?,
    }
    if let Some(why) = &r.skipped {
        super::note(&format!("the reply is not mailed: {why}"))?;
    }
    send_with(&wt, now, push.as_ref(), None)
}
