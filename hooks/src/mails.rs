//! Mails the hooks owe (payment received, order confirmed, ticket opened, password reset): a
//! draft rendered into an outbox file that rides in the same commit as the change it tells of.
//!
//! Nothing is sent here. `gitvps mail send` (run by CI after each apply, and by the daily
//! billing job) delivers the outbox and records what went out, so a mail goes out exactly once
//! whichever process commits it, and a lost push race loses the mail together with its change.
//!
//! The password reset is the exception: its link holds a secret, so it never enters the repo.
//! [`password_reset`] builds the message, which the API sends at once after the record lands.

use chrono::{DateTime, Utc};
use mail::outbox::OUTBOX_DIR;
use mail::{Draft, MailId, Sender, Templates};
use model::values::Email;
use model::{CustomerId, Inventory};

use crate::tree::Tree;

/// The repo folder of template overrides (`<kind>.<lang>.txt|html`), as for the CLI's jobs.
pub const TEMPLATES_DIR: &str = "templates/mail";

/// Why a mail could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The repo's template overrides do not compile, or a template does not render.
    #[error("mail templates: {0}")]
    Templates(#[from] mail::RenderError),
    /// The message could not be assembled.
    #[error("mail {id}: {source}")]
    Build {
        /// Which mail.
        id: MailId,
        /// Why.
        source: mail::MailError,
    },
    /// A built message is not text (it always is: MIME bodies are 7-bit encoded).
    #[error("mail {0}: the built message is not text")]
    NotText(MailId),
    /// The id made for a mail is not one.
    #[error(transparent)]
    Id(#[from] mail::InvalidMailId),
    /// The customer is gone, or has no e-mail address (any more).
    #[error("customer {0} has no e-mail address")]
    NoAddress(CustomerId),
}

/// The templates of the head: the built-in ones with the repo's overrides.
pub fn templates(tree: &dyn Tree) -> Result<Templates, QueueError> {
    Ok(Templates::with_overrides(tree.files(TEMPLATES_DIR))?)
}

/// The sender of the head's `[mail]` settings.
pub fn sender(inv: &Inventory) -> Sender {
    let m = &inv.settings.mail;
    Sender::new(m.from.clone(), m.from_name.clone())
}

/// The outbox path of a mail id.
pub fn outbox_path(id: &MailId) -> String {
    format!("{OUTBOX_DIR}/{id}.eml")
}

/// The write that queues `draft`, dated `at`: `(mail/outbox/<id>.eml, message)`, to add to an
/// edit's writes. The same draft and date always give the same bytes.
pub fn queue(
    inv: &Inventory,
    tree: &dyn Tree,
    draft: &Draft,
    at: DateTime<Utc>,
) -> Result<(String, Option<String>), QueueError> {
    let bytes = build(inv, tree, draft, at)?;
    let text = String::from_utf8(bytes).map_err(|_| QueueError::NotText(draft.id.clone()))?;
    Ok((outbox_path(&draft.id), Some(text)))
}

/// The complete message of `draft`, dated `at`, with the head's templates and sender.
fn build(
    inv: &Inventory,
    tree: &dyn Tree,
    draft: &Draft,
    at: DateTime<Utc>,
) -> Result<Vec<u8>, QueueError> {
    let templates = templates(tree)?;
    mail::build(draft, &sender(inv), &templates, at).map_err(|source| QueueError::Build {
        id: draft.id.clone(),
        source,
    })
}

/// A message to send now rather than queue: the envelope and the bytes. `Debug` hides the
/// bytes (a reset link is a secret).
pub struct Message {
    /// The envelope sender (`[mail] from`).
    pub from: Email,
    /// The one recipient.
    pub to: Email,
    /// The complete message.
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Message(..)")
    }
}

/// The password reset mail of `customer`, asked for at `at`: the link with `token` (the
/// customer's panel, in its language) and how long it works (`hooks.reset_valid_minutes`).
/// Sent, never queued: the token must not reach the repo.
pub fn password_reset(
    inv: &Inventory,
    tree: &dyn Tree,
    customer: &CustomerId,
    token: &crate::reset::Token,
    at: DateTime<Utc>,
) -> Result<Message, QueueError> {
    let no_address = || QueueError::NoAddress(customer.clone());
    let c = inv.customers.get(customer).ok_or_else(no_address)?;
    let to = c.email.clone().ok_or_else(no_address)?;
    let mut context = mail::links::common(&inv.settings, &c.name);
    context["customer"] = customer.as_str().into();
    context["reset_url"] = format!(
        "{}?reset={}",
        mail::links::panel(&inv.settings, c.language),
        token.expose()
    )
    .into();
    context["valid_minutes"] = inv.settings.hooks.reset_valid_minutes.into();
    let draft = Draft {
        id: format!("password-reset.{customer}.{}", at.timestamp()).parse()?,
        kind: mail::Kind::PasswordReset,
        lang: c.language,
        to: to.clone(),
        to_name: Some(c.name.clone()),
        reply_to: None,
        context,
        attachments: Vec::new(),
    };
    Ok(Message {
        from: inv.settings.mail.from.clone(),
        to,
        raw: build(inv, tree, &draft, at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::MemTree;
    use mail::Kind;
    use model::values::Language;
    use serde_json::json;

    fn fleet() -> Inventory {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Inventory::load(&root).expect("the example fleet loads")
    }

    fn draft(inv: &Inventory) -> Draft {
        let mut ctx = mail::links::common(&inv.settings, "Jane");
        ctx["customer"] = json!("c-0001");
        ctx["reset_url"] = json!(mail::links::panel(&inv.settings, Language::Zh));
        ctx["valid_minutes"] = json!(30);
        Draft {
            id: "password-reset.c-0001.abc".parse().expect("an id"),
            kind: Kind::PasswordReset,
            lang: Language::Zh,
            to: "jane@example.com".parse().expect("an address"),
            to_name: Some("Jane".into()),
            reply_to: None,
            context: ctx,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn a_queued_mail_is_an_outbox_file_in_the_customers_language() {
        let inv = fleet();
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .expect("a date")
            .to_utc();
        let (path, text) = queue(&inv, &MemTree::new(), &draft(&inv), at).expect("queued");
        assert_eq!(path, "mail/outbox/password-reset.c-0001.abc.eml");
        let text = text.expect("a message");
        assert!(text.contains("Content-Language: zh-Hans"), "{text}");
        assert!(text.contains("<password-reset.c-0001.abc@"), "{text}");
        let again = queue(&inv, &MemTree::new(), &draft(&inv), at).expect("queued");
        assert_eq!(
            again.1.as_deref(),
            Some(text.as_str()),
            "same draft, same bytes"
        );
    }

    #[test]
    fn a_reset_mail_carries_the_link_in_the_customers_language() {
        let inv = fleet();
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .expect("a date")
            .to_utc();
        let c2: CustomerId = "c-0002".parse().expect("an id");
        let token = crate::reset::Token::new(&c2, [9; crate::reset::TOKEN_BYTES]);
        let m = password_reset(&inv, &MemTree::new(), &c2, &token, at).expect("built");
        assert_eq!(m.to.as_str(), "lin.wei@example.cn");
        assert_eq!(m.from, inv.settings.mail.from);
        let text = String::from_utf8(m.raw.clone()).expect("text");
        assert!(text.contains("Content-Language: zh-Hans"), "{text}");
        assert!(text.contains("<password-reset.c-0002."), "{text}");
        assert!(!format!("{m:?}").contains(token.expose()));
        let nobody: CustomerId = "c-9999".parse().expect("an id");
        let err = password_reset(&inv, &MemTree::new(), &nobody, &token, at).expect_err("no one");
        assert!(matches!(err, QueueError::NoAddress(_)), "{err}");
    }

    #[test]
    fn a_broken_override_in_the_repo_is_an_error_not_a_panic() {
        let inv = fleet();
        let tree = MemTree::new().with("templates/mail/password-reset.zh.txt", "{{ oops");
        let at = DateTime::parse_from_rfc3339("2026-12-06T10:00:00Z")
            .expect("a date")
            .to_utc();
        let err = queue(&inv, &tree, &draft(&inv), at).expect_err("refused");
        assert!(matches!(err, QueueError::Templates(_)), "{err}");
    }
}
