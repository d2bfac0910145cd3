//! The edge of gitvps's scheduled jobs (`billing run`, `announce`, `ticket reply`, `monitor
//! usage`): each reads the repo, lets a pure crate decide, commits what changed, pushes, then
//! acts (sends mail).
//!
//! The decisions live in `billing` and `mail::render`; this crate only does the I/O around
//! them, so a crash between the commit and the action is finished by the next run.

pub mod announce;
pub mod billing;
pub mod git;
pub mod send;
pub mod ticket;
pub mod traffic;

use std::path::Path;

use git::{PUSH_TRIES, Pushed, Worktree};

/// Why a job stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The inventory does not load.
    #[error("the inventory has errors:\n{0}")]
    Inventory(#[source] model::LoadError),
    /// An invoice or payment file does not parse.
    #[error("the billing records have errors:\n{0}")]
    Ledger(model::Diagnostics),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The repo-relative path.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A VPS file could not be edited.
    #[error(transparent)]
    Edit(#[from] model::edit::EditError),
    /// A mail could not be rendered or queued.
    #[error("mail {id}: {message}")]
    Mail {
        /// The mail.
        id: String,
        /// What went wrong.
        message: String,
    },
    /// Git refused.
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    /// The repo's invoice templates (`templates/invoice/`) are refused.
    #[error(transparent)]
    InvoiceTemplates(#[from] ::billing::html::HtmlError),
    /// An announcement cannot be made.
    #[error(transparent)]
    Announce(#[from] mail::announce::AnnounceError),
    /// No ticket file of that id.
    #[error("ticket {0} does not exist (no tickets/{0}.md)")]
    UnknownTicket(String),
    /// A ticket file or a reply to it is refused.
    #[error("ticket {ticket}: {source}")]
    Ticket {
        /// The ticket.
        ticket: String,
        /// What is wrong.
        #[source]
        source: model::tickets::TicketError,
    },
    /// A usage file (`usage/<YYYY-MM>.toml`) does not parse.
    #[error("the usage files have errors:\n{0}")]
    Usage(model::Diagnostics),
    /// A traffic period cannot be computed.
    #[error(transparent)]
    Traffic(#[from] monitor::TrafficError),
    /// Every push lost its race.
    #[error("the push to {remote}/{branch} lost every race it tried; run again")]
    Races {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
    },
}

/// Lands one job's change: `attempt` decides on the work tree's head and writes its files,
/// returning its outcome and a commit message (`None`: nothing to commit); the files under
/// `paths` are committed as the bot and pushed to `push`. On a lost race the work tree moves
/// to the remote head and `attempt` runs again there. Returns the outcome and the commit.
pub fn land<T>(
    wt: &Worktree,
    paths: &[&str],
    push: Option<&(String, String)>,
    mut attempt: impl FnMut(&Path) -> Result<(T, Option<String>), JobError>,
) -> Result<(T, Option<String>), JobError> {
    for _ in 0..PUSH_TRIES {
        let (outcome, message) = attempt(wt.root())?;
        let Some(message) = message else {
            return Ok((outcome, None));
        };
        let commit = wt.commit(&message, paths)?;
        let Some((remote, branch)) = push else {
            return Ok((outcome, commit));
        };
        match wt.push(remote, branch)? {
            Pushed::Landed => return Ok((outcome, commit)),
            Pushed::LostRace => {
                tracing::info!(%message, "a job's commit lost a push race; deciding again");
                wt.reset_to_remote(remote, branch)?;
            }
        }
    }
    let (remote, branch) = push.cloned().unwrap_or_default();
    Err(JobError::Races { remote, branch })
}
