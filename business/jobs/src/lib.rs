//! The edge of gitvps's scheduled jobs (`billing run`, `announce`, `ticket reply`): each reads
//! the repo, lets a pure crate decide, commits what changed, pushes, then acts (sends mail).
//!
//! The decisions live in `billing` and `mail::render`; this crate only does the I/O around
//! them, so a crash between the commit and the action is finished by the next run.

pub mod billing;
pub mod git;
pub mod send;

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
    /// Every push lost its race.
    #[error("the push to {remote}/{branch} lost every race it tried; run again")]
    Races {
        /// The remote.
        remote: String,
        /// The branch.
        branch: String,
    },
}
