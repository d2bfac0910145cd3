//! Sending the outbox of the repo, then committing (and pushing) the sent log, so the next run
//! of any job knows what went out.

use chrono::{DateTime, Utc};
use mail::{Delivery, MailId, Outbox};

use crate::JobError;
use crate::billing::io_other;
use crate::git::{PUSH_TRIES, Pushed, Worktree};

/// What sending did.
#[derive(Debug)]
pub struct Sent {
    /// What the server took, set aside or refused.
    pub delivery: Delivery,
    /// The commit of the sent log, if anything was sent or set aside.
    pub commit: Option<String>,
}

/// Sends every pending mail of the work tree's outbox through `transport`, then commits the
/// sent log and pushes it (marking the same mails again on the new head after a lost race).
pub fn send_and_record(
    wt: &Worktree,
    transport: &dyn mail::Transport,
    now: DateTime<Utc>,
    push: Option<&(String, String)>,
) -> Result<Sent, JobError> {
    let outbox = Outbox::open(wt.root()).map_err(|e| io_other("mail", &e))?;
    let delivery = mail::deliver(&outbox, transport, now);
    if let Some(e) = &delivery.failed {
        return Err(io_other("mail", e));
    }
    let message = format!(
        "mail: {} sent, {} rejected",
        delivery.sent.len(),
        delivery.rejected.len()
    );
    for _ in 0..PUSH_TRIES {
        let commit = wt.commit(&message, &["mail"])?;
        let Some((remote, branch)) = push else {
            return Ok(Sent { delivery, commit });
        };
        if commit.is_none() || wt.push(remote, branch)? == Pushed::Landed {
            return Ok(Sent { delivery, commit });
        }
        wt.reset_to_remote(remote, branch)?;
        remark(&outbox, &delivery, now)?;
    }
    let (remote, branch) = push.cloned().unwrap_or_default();
    Err(JobError::Races { remote, branch })
}

/// Records again, on a new head, what this run sent and set aside.
fn remark(outbox: &Outbox, d: &Delivery, now: DateTime<Utc>) -> Result<(), JobError> {
    let pending: Vec<MailId> = outbox.pending().map_err(|e| io_other("mail", &e))?;
    for id in d.sent.iter().filter(|id| pending.contains(id)) {
        outbox
            .mark_sent(id, now)
            .map_err(|e| io_other("mail/sent", &e))?;
    }
    for (id, why) in d.rejected.iter().filter(|(id, _)| pending.contains(id)) {
        outbox
            .reject(id, why, now)
            .map_err(|e| io_other("mail/rejected", &e))?;
    }
    Ok(())
}
