//! A mail to send ([`Draft`]) made into the full RFC 5322 message, byte for byte the same for
//! the same draft and date; and the reading back of a message's sender and recipients.
//!
//! The message carries `Message-ID: <{id}@{domain}>`, so a receiver can drop a duplicate, and
//! `Auto-Submitted: auto-generated`, so vacation responders stay quiet.

use std::time::SystemTime;

use chrono::{DateTime, Datelike, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{Address, Message};
use model::values::{Email, Language};

use crate::id::MailId;
use crate::render::{Kind, RenderError, Templates};

const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");
const CONTENT_LANGUAGE: HeaderName = HeaderName::new_from_ascii_str("Content-Language");
const X_GITVPS_KIND: HeaderName = HeaderName::new_from_ascii_str("X-Gitvps-Kind");

/// A file attached to a mail (an invoice, say).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The name the receiver sees.
    pub filename: String,
    /// Its MIME type, `application/pdf` say.
    pub content_type: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// One mail to send: what, to whom, in which language, with which variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// Chosen from the cause (`reminder.xen02.2026-12-09.7d`): the outbox file and Message-ID.
    pub id: MailId,
    /// Which templates.
    pub kind: Kind,
    /// Which language of them.
    pub lang: Language,
    /// The recipient.
    pub to: Email,
    /// The recipient's display name, if any.
    pub to_name: Option<String>,
    /// Where replies go instead of the sender (the customer, for a ticket to support).
    pub reply_to: Option<Email>,
    /// The templates' variables (see [`Kind::variables`]).
    pub context: serde_json::Value,
    /// Files attached after the text and HTML bodies.
    pub attachments: Vec<Attachment>,
}

/// Who sends: the `[mail]` settings of `gitvps.toml`, and the domain of Message-IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// The sender address.
    pub from: Email,
    /// The sender's display name.
    pub from_name: String,
    /// The right-hand side of Message-IDs (`<id@domain>`).
    pub domain: String,
}

impl Sender {
    /// A sender whose Message-IDs use the domain of its own address.
    pub fn new(from: Email, from_name: impl Into<String>) -> Sender {
        let domain = from
            .as_str()
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        Sender {
            from,
            from_name: from_name.into(),
            domain,
        }
    }
}

/// Why a mail could not be built, or a message not read back.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A template failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The Message-ID domain is not a plain domain name.
    #[error("`{}` is not a domain for Message-IDs", .0.escape_debug())]
    Domain(String),
    /// The date cannot be written in a Date header (before 1970 or after 9999).
    #[error("{0} cannot be a mail's Date")]
    Date(DateTime<Utc>),
    /// An address lettre does not accept.
    #[error("`{}` is not a usable mail address", .0.escape_debug())]
    Address(String),
    /// An attachment's content type does not parse.
    #[error("attachment {filename}: `{}` is not a MIME type", content_type.escape_debug())]
    ContentType {
        /// The attachment's file name.
        filename: String,
        /// The type given.
        content_type: String,
    },
    /// lettre refused to assemble the message.
    #[error("the message cannot be built: {0}")]
    Build(String),
    /// A stored message lacks a header deliver needs, or it does not parse.
    #[error("the message has no usable {0} header")]
    Header(&'static str),
}

/// Renders `draft` with `templates` and assembles the complete message (headers and MIME body,
/// CRLF line ends), dated `date`: the same inputs always give the same bytes.
pub fn build(
    draft: &Draft,
    sender: &Sender,
    templates: &Templates,
    date: DateTime<Utc>,
) -> Result<Vec<u8>, MailError> {
    if !(1970..=9999).contains(&date.year()) {
        return Err(MailError::Date(date));
    }
    let domain_ok = !sender.domain.is_empty()
        && sender.domain.len() <= 253
        && sender
            .domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !domain_ok {
        return Err(MailError::Domain(sender.domain.clone()));
    }
    let rendered = templates.render(draft.kind, draft.lang, &draft.context)?;

    let from = Mailbox::new(non_empty(&sender.from_name), address(&sender.from)?);
    let to = Mailbox::new(
        draft.to_name.as_deref().and_then(non_empty),
        address(&draft.to)?,
    );
    let mut builder = Message::builder()
        .from(from)
        .to(to)
        .subject(rendered.subject)
        .date(SystemTime::from(date))
        .message_id(Some(format!("<{}@{}>", draft.id, sender.domain)))
        .raw_header(HeaderValue::new(
            CONTENT_LANGUAGE,
            content_language(draft.lang).to_owned(),
        ))
        .raw_header(HeaderValue::new(
            AUTO_SUBMITTED,
            "auto-generated".to_owned(),
        ))
        .raw_header(HeaderValue::new(
            X_GITVPS_KIND,
            draft.kind.as_str().to_owned(),
        ));
    if let Some(reply_to) = &draft.reply_to {
        builder = builder.reply_to(Mailbox::new(None, address(reply_to)?));
    }

    // Boundaries from the id, not random, so that the same draft gives the same bytes. `=_`
    // cannot occur in quoted-printable or base64 parts.
    let tag = fnv1a(draft.id.as_str());
    let alternative = MultiPart::alternative()
        .boundary(format!("=_gitvps_alt_{tag:016x}"))
        .singlepart(SinglePart::plain(rendered.text))
        .singlepart(SinglePart::html(rendered.html));
    let message = if draft.attachments.is_empty() {
        builder.multipart(alternative)
    } else {
        let mut mixed = MultiPart::mixed()
            .boundary(format!("=_gitvps_mix_{tag:016x}"))
            .multipart(alternative);
        for a in &draft.attachments {
            let content_type =
                ContentType::parse(&a.content_type).map_err(|_| MailError::ContentType {
                    filename: a.filename.clone(),
                    content_type: a.content_type.clone(),
                })?;
            mixed = mixed.singlepart(
                lettre::message::Attachment::new(a.filename.clone())
                    .body(a.bytes.clone(), content_type),
            );
        }
        builder.multipart(mixed)
    }
    .map_err(|e| MailError::Build(e.to_string()))?;
    Ok(message.formatted())
}

/// The `Content-Language` of a language.
pub fn content_language(lang: Language) -> &'static str {
    match lang {
        Language::En => "en",
        Language::Zh => "zh-Hans",
    }
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

fn address(email: &Email) -> Result<Address, MailError> {
    email
        .as_str()
        .parse()
        .map_err(|_| MailError::Address(email.to_string()))
}

/// FNV-1a, 64 bits: a stable tag for MIME boundaries.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The sender and recipients of a stored message, from its own `From` and `To` headers: the
/// SMTP envelope [`crate::deliver`] uses.
pub fn envelope_of(raw: &[u8]) -> Result<(Email, Vec<Email>), MailError> {
    let from = addresses(header(raw, "From").ok_or(MailError::Header("From"))?);
    let to = addresses(header(raw, "To").ok_or(MailError::Header("To"))?);
    let from = match from.as_slice() {
        [one] => one.parse().map_err(|_| MailError::Header("From"))?,
        _ => return Err(MailError::Header("From")),
    };
    let to = to
        .iter()
        .map(|a| a.parse().map_err(|_| MailError::Header("To")))
        .collect::<Result<Vec<Email>, _>>()?;
    if to.is_empty() {
        return Err(MailError::Header("To"));
    }
    Ok((from, to))
}

/// The unfolded value of the first header `name` in the message's header section.
fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut found: Option<String> = None;
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = found.as_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if found.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':')
            && n.trim().eq_ignore_ascii_case(name)
        {
            found = Some(v.trim().to_owned());
        }
    }
    found
}

/// The addr-specs of an address list: what is inside `<...>` outside quoted display names, or
/// the bare comma-separated addresses.
fn addresses(value: String) -> Vec<String> {
    let mut out = Vec::new();
    let mut bare = String::new();
    let mut angle: Option<String> = None;
    let mut quoted = false;
    let mut escaped = false;
    let mut saw_angle = false;
    for c in value.chars() {
        if let Some(addr) = angle.as_mut() {
            if c == '>' {
                out.push(addr.trim().to_owned());
                angle = None;
            } else {
                addr.push(c);
            }
            continue;
        }
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '<' => {
                angle = Some(String::new());
                saw_angle = true;
            }
            ',' => {
                if !saw_angle && !bare.trim().is_empty() {
                    out.push(bare.trim().to_owned());
                }
                bare.clear();
                saw_angle = false;
            }
            c => bare.push(c),
        }
    }
    if !saw_angle && !bare.trim().is_empty() {
        out.push(bare.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(attachments: Vec<Attachment>) -> Draft {
        Draft {
            id: "announcement.2026-12.maintenance".parse().unwrap(),
            kind: Kind::Announcement,
            lang: Language::Zh,
            to: "jane@example.net".parse().unwrap(),
            to_name: Some("Doe, Jane".into()),
            reply_to: None,
            context: json!({
                "site_name": "GPLHost VPS",
                "site_url": "https://vps.example.net",
                "name": "Jane",
                "title": "维护通知",
                "body": "节点 node0109 将于周六重启。",
            }),
            attachments,
        }
    }

    fn sender() -> Sender {
        Sender::new("billing@example.net".parse().unwrap(), "GPLHost 账单")
    }

    fn date() -> DateTime<Utc> {
        "2026-12-09T06:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_same_draft_gives_the_same_bytes() {
        let a = build(&draft(vec![]), &sender(), &Templates::default(), date()).unwrap();
        let b = build(&draft(vec![]), &sender(), &Templates::default(), date()).unwrap();
        assert_eq!(a, b);
        let text = String::from_utf8(a).unwrap();
        assert!(text.is_ascii(), "headers and bodies are encoded");
        for line in [
            "Message-ID: <announcement.2026-12.maintenance@example.net>\r\n",
            "Date: Wed, 09 Dec 2026 06:00:00 +0000\r\n",
            "Content-Language: zh-Hans\r\n",
            "Auto-Submitted: auto-generated\r\n",
            "X-Gitvps-Kind: announcement\r\n",
            "Content-Type: multipart/alternative;",
        ] {
            assert!(text.contains(line), "{line:?} in\n{text}");
        }
        assert!(text.contains("Subject: [GPLHost VPS] =?utf-8?b?"), "{text}");
        assert!(text.contains("From: =?utf-8?b?"), "{text}");
    }

    #[test]
    fn attachments_make_a_mixed_message() {
        let pdf = Attachment {
            filename: "invoice-2026-0001.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: b"%PDF-1.4 fake".to_vec(),
        };
        let raw = build(&draft(vec![pdf]), &sender(), &Templates::default(), date()).unwrap();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains("Content-Type: multipart/mixed;"), "{text}");
        assert!(
            text.contains("filename=\"invoice-2026-0001.pdf\""),
            "{text}"
        );

        let bad = Attachment {
            filename: "x".into(),
            content_type: "not a type".into(),
            bytes: vec![],
        };
        let err = build(&draft(vec![bad]), &sender(), &Templates::default(), date()).unwrap_err();
        assert!(matches!(err, MailError::ContentType { .. }), "{err}");
    }

    #[test]
    fn envelope_comes_from_the_headers() {
        let raw = build(&draft(vec![]), &sender(), &Templates::default(), date()).unwrap();
        let (from, to) = envelope_of(&raw).unwrap();
        assert_eq!(from.as_str(), "billing@example.net");
        assert_eq!(to.len(), 1);
        assert_eq!(to[0].as_str(), "jane@example.net");

        let folded = b"To: \"Doe, J\" <a@example.net>,\r\n b@example.org\r\nFrom: x@example.com\r\n\r\nTo: c@example.net\r\n";
        let (from, to) = envelope_of(folded).unwrap();
        assert_eq!(from.as_str(), "x@example.com");
        let to: Vec<&str> = to.iter().map(Email::as_str).collect();
        assert_eq!(to, ["a@example.net", "b@example.org"]);

        assert!(matches!(
            envelope_of(b"From: x@example.com\r\n\r\nTo: a@example.net\r\n"),
            Err(MailError::Header("To"))
        ));
    }

    #[test]
    fn bad_dates_and_domains_are_errors_not_panics() {
        let old: DateTime<Utc> = "1969-12-31T23:59:59Z".parse().unwrap();
        let err = build(&draft(vec![]), &sender(), &Templates::default(), old).unwrap_err();
        assert!(matches!(err, MailError::Date(_)));
        let mut s = sender();
        s.domain = "example.net>\r\nBcc: x@y.z".into();
        let err = build(&draft(vec![]), &s, &Templates::default(), date()).unwrap_err();
        assert!(matches!(err, MailError::Domain(_)));
    }

    #[test]
    fn render_errors_pass_through() {
        let mut d = draft(vec![]);
        d.context = json!({ "name": "Jane" });
        let err = build(&d, &sender(), &Templates::default(), date()).unwrap_err();
        assert!(
            err.to_string().starts_with("mail announcement.zh: missing"),
            "{err}"
        );
    }
}
