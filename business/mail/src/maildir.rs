//! Delivery into a Maildir folder instead of an SMTP server (`GITVPS_SMTP_URL=maildir:///path`,
//! or `gitvps mail send --maildir DIR`): the demo, tests, or a host whose mail reader reads it.
//!
//! It is a [`Transport`] like SMTP, so the outbox story is the same: [`crate::deliver`] hands
//! each pending message over once and records it in the sent log. [`Outgoing`] is the one the
//! jobs use, chosen from the URL.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use model::values::Email;

use crate::smtp::{SendError, Smtp, Transport};

/// A Maildir: `tmp/`, `new/` and `cur/` under one folder (made when first written).
#[derive(Debug)]
pub struct Maildir {
    dir: PathBuf,
    count: AtomicU64,
}

impl Maildir {
    /// The Maildir at `dir`.
    pub fn new(dir: &Path) -> Maildir {
        Maildir {
            dir: dir.to_path_buf(),
            count: AtomicU64::new(0),
        }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The delivered messages not yet read (`new/`), oldest first.
    pub fn new_messages(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = match fs::read_dir(self.dir.join("new")) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        out.sort();
        Ok(out)
    }

    fn failed(&self, e: &std::io::Error) -> SendError {
        SendError::Unreachable {
            server: format!("maildir {}", self.dir.display()),
            reason: e.to_string(),
        }
    }
}

impl Transport for Maildir {
    /// Writes the message to `tmp/`, syncs it and moves it to `new/` under a unique name
    /// (`<seconds>.<nanos>_<n>.P<pid>.gitvps`, sorting in delivery order). A folder that
    /// cannot be written stops delivery like an unreachable server.
    fn send(&self, _from: &Email, to: &[Email], raw: &[u8]) -> Result<(), SendError> {
        if to.is_empty() {
            return Err(SendError::Rejected {
                server: format!("maildir {}", self.dir.display()),
                reason: "no recipient".into(),
            });
        }
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(self.dir.join(sub)).map_err(|e| self.failed(&e))?;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.count.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.{:09}_{n:06}.P{}.gitvps",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        );
        let tmp = self.dir.join("tmp").join(&name);
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(raw)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join("new").join(&name))
        };
        write().map_err(|e| self.failed(&e))
    }
}

/// Where the jobs send mail: an SMTP server, or a Maildir for `maildir:` URLs.
#[derive(Debug)]
pub enum Outgoing {
    /// `smtp://` or `smtps://`.
    Smtp(Box<Smtp>),
    /// `maildir:///absolute/path`.
    Maildir(Maildir),
}

impl Outgoing {
    /// From `GITVPS_SMTP_URL` (and `GITVPS_SMTP_CA` for SMTP).
    pub fn from_env() -> Result<Outgoing, SendError> {
        let (url, ca) = crate::smtp::from_env()?;
        Outgoing::from_url(&url, ca.as_deref())
    }

    /// From a URL: `maildir:///path` (or `maildir:/path`), else what [`Smtp::from_url`] takes.
    pub fn from_url(url: &str, extra_root_ca: Option<&Path>) -> Result<Outgoing, SendError> {
        let Some(rest) = url.strip_prefix("maildir:") else {
            return Smtp::from_url(url, extra_root_ca).map(|s| Outgoing::Smtp(Box::new(s)));
        };
        let path = rest.strip_prefix("//").unwrap_or(rest);
        let path = percent_encoding::percent_decode_str(path)
            .decode_utf8()
            .map_err(|_| SendError::Url("the maildir path is not UTF-8 once decoded".into()))?;
        if !path.starts_with('/') || path.contains('?') || path.contains('#') {
            return Err(SendError::Url(
                "a maildir URL names an absolute folder: maildir:///var/mail/gitvps".into(),
            ));
        }
        Ok(Outgoing::Maildir(Maildir::new(Path::new(path.as_ref()))))
    }

    /// How messages and errors name it: `host:port`, or `maildir /path`.
    pub fn describe(&self) -> String {
        match self {
            Outgoing::Smtp(s) => s.server(),
            Outgoing::Maildir(m) => format!("maildir {}", m.dir().display()),
        }
    }
}

impl Transport for Outgoing {
    fn send(&self, from: &Email, to: &[Email], raw: &[u8]) -> Result<(), SendError> {
        match self {
            Outgoing::Smtp(s) => s.send(from, to, raw),
            Outgoing::Maildir(m) => m.send(from, to, raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MailId, Outbox, deliver};

    const MSG: &[u8] =
        b"From: a@example.net\r\nTo: \"B\" <b@example.net>\r\nSubject: x\r\n\r\nbody\r\n";

    #[test]
    fn urls() {
        let o = Outgoing::from_url("maildir:///var/mail/x%20y", None).unwrap();
        assert_eq!(o.describe(), "maildir /var/mail/x y");
        let o = Outgoing::from_url("maildir:/tmp/m", None).unwrap();
        assert_eq!(o.describe(), "maildir /tmp/m");
        for bad in ["maildir:relative", "maildir://host/x", "maildir:///x?y=1"] {
            let e = Outgoing::from_url(bad, None).unwrap_err().to_string();
            assert!(e.contains("absolute folder"), "{bad}: {e}");
        }
        let o = Outgoing::from_url("smtp://127.0.0.1:2525", None).unwrap();
        assert_eq!(o.describe(), "127.0.0.1:2525");
    }

    #[test]
    fn delivery_into_a_maildir_is_once_and_logged() {
        let repo = tempfile::tempdir().unwrap();
        let mdir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(repo.path()).unwrap();
        for id in ["a.1", "b.2"] {
            outbox.put(&id.parse::<MailId>().unwrap(), MSG).unwrap();
        }
        let md = Maildir::new(&mdir.path().join("box"));
        let now = "2026-12-06T06:00:00Z".parse().unwrap();
        let d = deliver(&outbox, &md, now);
        assert!(d.is_complete() && d.sent.len() == 2, "{d:?}");
        let again = deliver(&outbox, &md, now);
        assert!(again.sent.is_empty());
        let files = md.new_messages().unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(fs::read(&files[0]).unwrap(), MSG);
        assert!(
            fs::read_dir(md.dir().join("tmp")).unwrap().next().is_none(),
            "nothing left half-written"
        );
        let log = fs::read_to_string(repo.path().join("mail/sent/2026-12.log")).unwrap();
        assert_eq!(log.lines().count(), 2, "{log}");

        // A folder that cannot be made stops delivery; the mail stays pending.
        fs::write(mdir.path().join("file"), "x").unwrap();
        outbox.put(&"c.3".parse::<MailId>().unwrap(), MSG).unwrap();
        let d = deliver(&outbox, &Maildir::new(&mdir.path().join("file")), now);
        assert!(d.stopped.is_some() && d.sent.is_empty(), "{d:?}");
        assert_eq!(outbox.pending().unwrap().len(), 1);
    }
}
