//! Support tickets as files `tickets/<id>.md`: TOML front matter (customer, subject, status)
//! and the thread as `### <author> · <time>` sections, written by the hooks (customers) and
//! `gitvps ticket reply|close` (support); pure text in, text out.

use std::fmt;
use std::str::FromStr;

use crate::{CustomerId, VpsId};
use chrono::{DateTime, SecondsFormat, Utc};
use toml_edit::{DocumentMut, value};

/// Folder of the ticket files.
pub const TICKETS_DIR: &str = "tickets";
/// Longest subject, in characters.
pub const MAX_SUBJECT: usize = 200;
/// Longest message, in bytes.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Longest a ticket's file may grow by replies (an admin's own answers are not limited).
pub const MAX_THREAD: usize = 256 * 1024;
/// Longest name of a support author (`--author` of `gitvps ticket reply`).
pub const MAX_AUTHOR: usize = 64;

/// The status a customer's message sets.
pub const OPEN: &str = "open";
/// The status support's reply sets.
pub const ANSWERED: &str = "answered";
/// The status of a ticket support closed (a customer's reply opens it again).
pub const CLOSED: &str = "closed";

/// A ticket id: `t-` and at least four digits (`t-0001`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct TicketId(String);

impl TicketId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its number.
    fn number(&self) -> u64 {
        self.0[2..].parse().unwrap_or(0)
    }

    /// The path of its file.
    pub fn path(&self) -> String {
        format!("{TICKETS_DIR}/{}.md", self.0)
    }
}

impl FromStr for TicketId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("t-").unwrap_or_default();
        if (4..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(TicketId(s.to_owned()))
        } else {
            Err("a ticket id is `t-` and 4 to 9 digits".to_owned())
        }
    }
}

impl fmt::Display for TicketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The next free id, given the names in `tickets/`.
pub fn next_ticket_id<'a>(names: impl Iterator<Item = &'a str>) -> TicketId {
    let max = names
        .filter_map(|n| n.strip_suffix(".md"))
        .filter_map(|n| n.parse::<TicketId>().ok())
        .map(|t| t.number())
        .max()
        .unwrap_or(0);
    TicketId(format!("t-{:04}", max.saturating_add(1)))
}

/// Why a ticket text or file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// The subject is empty, too long or not one line.
    #[error("the subject must be one line of 1 to {MAX_SUBJECT} characters")]
    Subject,
    /// The message is empty, too long or holds control characters.
    #[error("the message must be 1 to {MAX_MESSAGE} bytes of text")]
    Message,
    /// The file in the repo is not a ticket.
    #[error("{0} is not a ticket file")]
    Format(String),
    /// An author name that would not read back as one.
    #[error("the author must be one line of 1 to {MAX_AUTHOR} characters without `·` or `#`")]
    Author,
}

/// Checks a subject: one line, no control characters.
pub fn check_subject(s: &str) -> Result<String, TicketError> {
    crate::text::check_line(s, MAX_SUBJECT).map_err(|_| TicketError::Subject)
}

/// Checks a support author's name: one line, nothing that would end the heading early.
pub fn check_author(s: &str) -> Result<String, TicketError> {
    let a = crate::text::check_line(s, MAX_AUTHOR).map_err(|_| TicketError::Author)?;
    if a.contains('·') || a.contains('#') {
        return Err(TicketError::Author);
    }
    Ok(a)
}

/// Checks a message and makes it safe to put in the thread: `\r` dropped, no other control
/// characters but tab and newline, and lines that would read as a section or the front
/// matter escaped with `\`.
pub fn check_message(s: &str) -> Result<String, TicketError> {
    let t = crate::text::check_text(s, MAX_MESSAGE).map_err(|_| TicketError::Message)?;
    Ok(t.lines()
        .map(|l| {
            if l.starts_with('#') || l.starts_with("+++") || l.starts_with('\\') {
                format!("\\{l}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// One message of a thread.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Message {
    /// `c-0001`, or `admin` (or any name an admin writes).
    pub author: String,
    /// When it was written, as written in the file.
    pub at: String,
    /// The text.
    pub body: String,
}

/// A ticket as the customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ticket {
    /// Its id.
    pub id: TicketId,
    /// Who opened it.
    #[serde(skip)]
    pub customer: CustomerId,
    /// Subject line.
    pub subject: String,
    /// The VPS it is about, if any.
    pub vps: Option<VpsId>,
    /// `open` or what an admin set (`answered`, `closed`).
    pub status: String,
    /// The thread, oldest first.
    pub messages: Vec<Message>,
}

fn heading(author: &str, at: DateTime<Utc>) -> String {
    format!(
        "### {author} · {}",
        at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// The text of a new ticket file.
pub fn render_new(
    customer: &CustomerId,
    subject: &str,
    vps: Option<&VpsId>,
    message: &str,
    at: DateTime<Utc>,
) -> String {
    let mut front = DocumentMut::new();
    front["customer"] = value(customer.as_str());
    front["subject"] = value(subject);
    if let Some(v) = vps {
        front["vps"] = value(v.as_str());
    }
    front["status"] = value("open");
    front["created"] = value(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    format!(
        "+++\n{front}+++\n\n{}\n\n{message}\n",
        heading(customer.as_str(), at)
    )
}

/// Splits a ticket file into its front matter and thread.
fn split(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("+++\n")?;
    let end = rest.find("\n+++\n").map(|i| (i + 1, i + 5)).or_else(|| {
        rest.strip_suffix("\n+++")
            .map(|f| (f.len() + 1, rest.len()))
    })?;
    Some((&rest[..end.0], &rest[end.1..]))
}

/// Appends a message by the customer `author`, which opens the ticket again.
pub fn append(
    path: &str,
    text: &str,
    author: &str,
    message: &str,
    at: DateTime<Utc>,
) -> Result<String, TicketError> {
    append_with_status(path, text, author, message, at, OPEN)
}

/// Appends a message by `author` (a checked message, see [`check_message`]) and sets the
/// status.
pub fn append_with_status(
    path: &str,
    text: &str,
    author: &str,
    message: &str,
    at: DateTime<Utc>,
    status: &str,
) -> Result<String, TicketError> {
    let (front, thread) = split(text).ok_or_else(|| TicketError::Format(path.to_owned()))?;
    let mut doc: DocumentMut = front
        .parse()
        .map_err(|_| TicketError::Format(path.to_owned()))?;
    doc["status"] = value(status);
    let thread = thread.trim_end();
    Ok(format!(
        "+++\n{doc}+++\n{thread}\n\n{}\n\n{message}\n",
        heading(author, at)
    ))
}

/// Sets the status and leaves the thread as it is.
pub fn set_status(path: &str, text: &str, status: &str) -> Result<String, TicketError> {
    let (front, thread) = split(text).ok_or_else(|| TicketError::Format(path.to_owned()))?;
    let mut doc: DocumentMut = front
        .parse()
        .map_err(|_| TicketError::Format(path.to_owned()))?;
    doc["status"] = value(status);
    Ok(format!("+++\n{doc}+++\n{thread}"))
}

/// Reads a ticket file.
pub fn parse(id: TicketId, text: &str) -> Result<Ticket, TicketError> {
    let path = id.path();
    let bad = || TicketError::Format(path.clone());
    let (front, thread) = split(text).ok_or_else(bad)?;
    let doc: DocumentMut = front.parse().map_err(|_| bad())?;
    let customer = doc
        .get("customer")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let subject = doc
        .get("subject")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let vps = doc
        .get("vps")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok());
    let status = doc
        .get("status")
        .and_then(|v| v.as_str())
        .unwrap_or("open")
        .to_owned();
    let mut messages: Vec<Message> = Vec::new();
    for line in thread.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            let (author, at) = h.split_once(" · ").unwrap_or((h, ""));
            messages.push(Message {
                author: author.trim().to_owned(),
                at: at.trim().to_owned(),
                body: String::new(),
            });
        } else if let Some(m) = messages.last_mut() {
            m.body.push_str(line);
            m.body.push('\n');
        }
    }
    for m in &mut messages {
        m.body = m.body.trim().to_owned();
    }
    Ok(Ticket {
        id,
        customer,
        subject,
        vps,
        status,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_thread_round_trips() {
        let c: CustomerId = "c-0001".parse().unwrap();
        let v: VpsId = "xen02".parse().unwrap();
        let msg = check_message("Port 25 is closed.\r\n# not a heading\n+++\nthanks").unwrap();
        let text = render_new(
            &c,
            "Mail \"blocked\"",
            Some(&v),
            &msg,
            at("2026-05-01T12:00:00Z"),
        );
        assert!(
            text.starts_with("+++\ncustomer = \"c-0001\"\nsubject = 'Mail \"blocked\"'\n"),
            "{text}"
        );
        let text = append(
            "tickets/t-0001.md",
            &text,
            "admin",
            "Unblocked.",
            at("2026-05-01T13:00:00Z"),
        )
        .unwrap();
        let t = parse("t-0001".parse().unwrap(), &text).unwrap();
        assert_eq!(t.customer, c);
        assert_eq!(t.subject, "Mail \"blocked\"");
        assert_eq!(t.vps, Some(v));
        assert_eq!(t.status, "open");
        assert_eq!(t.messages.len(), 2, "{text}");
        assert_eq!(t.messages[0].author, "c-0001");
        assert_eq!(t.messages[0].at, "2026-05-01T12:00:00Z");
        assert_eq!(
            t.messages[0].body,
            "Port 25 is closed.\n\\# not a heading\n\\+++\nthanks"
        );
        assert_eq!(t.messages[1].author, "admin");
        assert_eq!(t.messages[1].body, "Unblocked.");
    }

    #[test]
    fn support_answers_and_closes() {
        let c: CustomerId = "c-0001".parse().unwrap();
        let text = render_new(&c, "Disk", None, "Full?", at("2026-05-01T12:00:00Z"));
        let reply = check_message("Grown to 40 GiB.\n### not a section").unwrap();
        let text = append_with_status(
            "tickets/t-0001.md",
            &text,
            &check_author("support").unwrap(),
            &reply,
            at("2026-05-01T13:00:00Z"),
            ANSWERED,
        )
        .unwrap();
        let t = parse("t-0001".parse().unwrap(), &text).unwrap();
        assert_eq!(t.status, ANSWERED);
        assert_eq!(t.messages.len(), 2);
        assert_eq!(t.messages[1].author, "support");
        assert_eq!(t.messages[1].body, "Grown to 40 GiB.\n\\### not a section");
        let closed = set_status("tickets/t-0001.md", &text, CLOSED).unwrap();
        let t2 = parse("t-0001".parse().unwrap(), &closed).unwrap();
        assert_eq!((t2.status.as_str(), t2.messages), (CLOSED, t.messages));
        // The customer writes again: open.
        let again = append(
            "tickets/t-0001.md",
            &closed,
            "c-0001",
            "Thanks",
            at("2026-05-02T08:00:00Z"),
        )
        .unwrap();
        assert_eq!(
            parse("t-0001".parse().unwrap(), &again).unwrap().status,
            OPEN
        );
        for bad in ["", "a · b", "# x", "a\nb"] {
            assert_eq!(check_author(bad), Err(TicketError::Author), "{bad:?}");
        }
        assert!(set_status("tickets/t-0001.md", "no front matter", CLOSED).is_err());
    }

    #[test]
    fn ids_are_strict_and_sequential() {
        assert!("t-0001".parse::<TicketId>().is_ok());
        for bad in [
            "t-1",
            "t-00a1",
            "../t-0001",
            "t-0001.md",
            "T-0001",
            "t-0000000001",
        ] {
            assert!(bad.parse::<TicketId>().is_err(), "{bad}");
        }
        assert_eq!(next_ticket_id(std::iter::empty()).as_str(), "t-0001");
        assert_eq!(
            next_ticket_id(["t-0002.md", "t-0010.md", "README.md", "t-x.md"].into_iter()).as_str(),
            "t-0011"
        );
        assert_eq!(
            next_ticket_id(["t-9999.md"].into_iter()).as_str(),
            "t-10000"
        );
    }

    #[test]
    fn bad_text_is_refused() {
        assert!(check_subject("").is_err());
        assert!(check_subject("a\nb").is_err());
        assert!(check_subject(&"x".repeat(201)).is_err());
        assert_eq!(check_subject("  hi  ").unwrap(), "hi");
        assert!(check_message("  ").is_err());
        assert!(check_message("bell\u{7}").is_err());
        assert!(check_message(&"x".repeat(MAX_MESSAGE + 1)).is_err());
        assert!(parse("t-0001".parse().unwrap(), "no front matter").is_err());
        assert!(
            parse("t-0001".parse().unwrap(), "+++\nsubject = \"x\"\n+++\n").is_err(),
            "no customer"
        );
    }

    #[test]
    fn bidi_overrides_and_control_characters_are_refused_in_tickets() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{200F}', '\u{2028}', '\u{0007}', '\u{001B}', '\u{0085}',
        ] {
            let s = format!("invoice {c}fdp.exe");
            assert!(
                check_subject(&s).is_err(),
                "subject with U+{:04X}",
                u32::from(c)
            );
            assert!(
                check_message(&s).is_err(),
                "message with U+{:04X}",
                u32::from(c)
            );
        }
        assert!(check_subject("Reboot loop on xen02 — 日本語 ok").is_ok());
        assert!(check_message("line one\n\tline two").is_ok());
    }
}
