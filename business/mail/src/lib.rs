//! gitvps's outgoing mail: templates rendered per kind and language, full RFC 5322 messages,
//! the outbox folder in the inventory repo, and delivery of that outbox over SMTP.
//!
//! A job decides which mails a run owes (pure), renders them with [`message::build`], puts them
//! in the [`Outbox`] and commits; then [`deliver`] sends what is pending and records each
//! accepted message in the sent log, which the job commits too. No git and no async runtime here.

pub mod announce;
mod deliver;
mod id;
pub mod links;
pub mod maildir;
pub mod message;
pub mod outbox;
pub mod render;
pub mod smtp;

pub use deliver::{Delivery, deliver};
pub use id::{InvalidMailId, MailId};
pub use maildir::{Maildir, Outgoing};
pub use message::{Attachment, Draft, MailError, Sender, build};
pub use outbox::{Outbox, OutboxError};
pub use render::{Kind, RenderError, Rendered, Templates};
pub use smtp::{SendError, Smtp, Transport};
