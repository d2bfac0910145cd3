//! The outbox in the inventory repo: `mail/outbox/<id>.eml` waits to be sent, `mail/sent/<YYYY-MM>.log`
//! records what was, `mail/rejected/<id>.eml` (with `<id>.reason`) keeps what a server refused.
//!
//! Exactly once: a job puts its messages in the outbox and commits before it sends; after each
//! message the server accepts, [`Outbox::mark_sent`] appends `<rfc3339> <id> <to>` to the sent
//! log (then removes the outbox file), and the job commits that too. A putting again of an id
//! that is pending, sent or rejected is a no-op, so a re-run never queues a mail twice. A run
//! that dies after the log line and before the removal leaves a file that [`Outbox::pending`]
//! no longer lists. The one window for a duplicate is a run killed after the server accepted a
//! message and before `mark_sent` wrote its line: the next run sends it again, with the same
//! `Message-ID`, so the receiving side can drop the copy.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::id::MailId;
use crate::message::envelope_of;

/// Where the outbox lives in the repo.
pub const OUTBOX_DIR: &str = "mail/outbox";
/// Where the monthly sent logs live in the repo.
pub const SENT_DIR: &str = "mail/sent";
/// Where rejected messages and their reasons are kept.
pub const REJECTED_DIR: &str = "mail/rejected";

/// A failure to read or write the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// A file or folder of the outbox could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// `mark_sent` or `reject` of an id that is not in the outbox.
    #[error("mail {0} is not in {OUTBOX_DIR}")]
    NotPending(MailId),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The mail folders of one inventory repo.
#[derive(Debug, Clone)]
pub struct Outbox {
    root: PathBuf,
}

impl Outbox {
    /// The outbox of the repo at `repo_root` (its folders are made when first written).
    pub fn open(repo_root: &Path) -> Result<Outbox, OutboxError> {
        let meta = fs::metadata(repo_root).map_err(io_err(repo_root))?;
        if !meta.is_dir() {
            return Err(OutboxError::Io {
                path: repo_root.to_owned(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a folder"),
            });
        }
        Ok(Outbox {
            root: repo_root.to_owned(),
        })
    }

    /// The repo folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The outbox file of `id`.
    pub fn path(&self, id: &MailId) -> PathBuf {
        self.root.join(OUTBOX_DIR).join(format!("{id}.eml"))
    }

    fn rejected_path(&self, id: &MailId, ext: &str) -> PathBuf {
        self.root.join(REJECTED_DIR).join(format!("{id}.{ext}"))
    }

    /// Puts a rendered message in the outbox. Returns false, writing nothing, when the id is
    /// already pending, sent or rejected. The file appears whole or not at all.
    pub fn put(&self, id: &MailId, bytes: &[u8]) -> Result<bool, OutboxError> {
        let path = self.path(id);
        if path.exists() || self.is_sent(id)? || self.is_rejected(id) {
            tracing::debug!(%id, "mail already queued or handled");
            return Ok(false);
        }
        let dir = self.root.join(OUTBOX_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        // A dot name is never an id, so a half-written file is never listed as pending.
        let tmp = dir.join(format!(".{id}.eml.tmp"));
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        tracing::info!(%id, "mail queued");
        Ok(true)
    }

    /// The stored message of a pending id.
    pub fn read(&self, id: &MailId) -> Result<Vec<u8>, OutboxError> {
        let path = self.path(id);
        fs::read(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => OutboxError::NotPending(id.clone()),
            _ => OutboxError::Io { path, source },
        })
    }

    /// The ids waiting to be sent, sorted; an outbox file whose id is already in the sent log
    /// (a run that stopped inside [`Outbox::mark_sent`]) is not listed.
    pub fn pending(&self) -> Result<Vec<MailId>, OutboxError> {
        let dir = self.root.join(OUTBOX_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let sent = self.sent_ids()?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".eml"))
                .and_then(|n| n.parse::<MailId>().ok())
            else {
                continue;
            };
            if !sent.contains(&id) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Records that the server accepted `id` at `at`: one line in `mail/sent/<YYYY-MM>.log`,
    /// then the outbox file goes. Calling it again for a sent id only removes a left-over file.
    pub fn mark_sent(&self, id: &MailId, at: DateTime<Utc>) -> Result<(), OutboxError> {
        let path = self.path(id);
        if self.is_sent(id)? {
            return remove_if_present(&path);
        }
        let raw = self.read(id)?;
        let to = match envelope_of(&raw) {
            Ok((_, to)) => to.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(","),
            Err(_) => "-".to_owned(),
        };
        self.append_log(at, &format!("{id} {to}"))?;
        remove_if_present(&path)
    }

    /// Records that `id` will not be sent (its customer has no address, say): one line
    /// `<rfc3339> <id> - skipped: <reason>` in the sent log, so the job does not queue it again.
    pub fn mark_skipped(
        &self,
        id: &MailId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        if self.is_sent(id)? {
            return Ok(());
        }
        let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        self.append_log(at, &format!("{id} - skipped: {reason}"))
    }

    fn append_log(&self, at: DateTime<Utc>, rest: &str) -> Result<(), OutboxError> {
        let dir = self.root.join(SENT_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let log = dir.join(format!("{}.log", at.format("%Y-%m")));
        let line = format!("{} {rest}\n", at.to_rfc3339_opts(SecondsFormat::Secs, true));
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(io_err(&log))?;
        file.write_all(line.as_bytes()).map_err(io_err(&log))?;
        file.sync_data().map_err(io_err(&log))
    }

    /// Every id a job has handled: pending, sent, skipped or rejected. A job that decides what
    /// to queue leaves these out.
    pub fn handled(&self) -> Result<std::collections::BTreeSet<MailId>, OutboxError> {
        let mut ids = self.sent_ids()?;
        ids.extend(self.pending()?);
        for dir in [OUTBOX_DIR, REJECTED_DIR] {
            let dir = self.root.join(dir);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if let Some(id) = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".eml"))
                    .and_then(|n| n.parse::<MailId>().ok())
                {
                    ids.insert(id);
                }
            }
        }
        Ok(ids)
    }

    /// Whether the sent log records `id`.
    pub fn is_sent(&self, id: &MailId) -> Result<bool, OutboxError> {
        Ok(self.sent_ids()?.contains(id))
    }

    /// Every id in the sent logs.
    fn sent_ids(&self) -> Result<std::collections::BTreeSet<MailId>, OutboxError> {
        let dir = self.root.join(SENT_DIR);
        let mut ids = std::collections::BTreeSet::new();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries {
            let path = entry.map_err(io_err(&dir))?.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let text = fs::read_to_string(&path).map_err(io_err(&path))?;
            ids.extend(
                text.lines()
                    .filter_map(|l| l.split_whitespace().nth(1))
                    .filter_map(|id| id.parse::<MailId>().ok()),
            );
        }
        Ok(ids)
    }

    /// Whether `id` was rejected (it stays in `mail/rejected/` until someone looks at it).
    pub fn is_rejected(&self, id: &MailId) -> bool {
        self.rejected_path(id, "eml").exists()
    }

    /// Moves a message the server refused for good to `mail/rejected/<id>.eml` and appends
    /// `<rfc3339> <reason>` to `mail/rejected/<id>.reason`.
    pub fn reject(&self, id: &MailId, reason: &str, at: DateTime<Utc>) -> Result<(), OutboxError> {
        let from = self.path(id);
        if !from.exists() {
            return Err(OutboxError::NotPending(id.clone()));
        }
        let dir = self.root.join(REJECTED_DIR);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let why = self.rejected_path(id, "reason");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&why)
            .map_err(io_err(&why))?;
        let reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
        let line = format!(
            "{} {reason}\n",
            at.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        file.write_all(line.as_bytes()).map_err(io_err(&why))?;
        file.sync_data().map_err(io_err(&why))?;
        let to = self.rejected_path(id, "eml");
        fs::rename(&from, &to).map_err(io_err(&to))
    }
}

fn remove_if_present(path: &Path) -> Result<(), OutboxError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> MailId {
        s.parse().unwrap()
    }

    const MSG: &[u8] =
        b"From: a@example.net\r\nTo: \"B\" <b@example.net>\r\nSubject: x\r\n\r\nbody\r\n";

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn put_pending_mark_sent() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        assert!(outbox.pending().unwrap().is_empty());
        assert!(outbox.put(&id("b.2"), MSG).unwrap());
        assert!(outbox.put(&id("a.1"), MSG).unwrap());
        assert!(
            !outbox.put(&id("a.1"), b"other").unwrap(),
            "already pending"
        );
        assert_eq!(outbox.read(&id("a.1")).unwrap(), MSG);
        // Stray files are not ids.
        fs::write(dir.path().join(OUTBOX_DIR).join(".x.eml.tmp"), "x").unwrap();
        fs::write(dir.path().join(OUTBOX_DIR).join("README"), "x").unwrap();
        assert_eq!(outbox.pending().unwrap(), vec![id("a.1"), id("b.2")]);

        outbox
            .mark_sent(&id("a.1"), at("2026-12-09T06:00:00Z"))
            .unwrap();
        outbox
            .mark_sent(&id("b.2"), at("2027-01-01T00:00:01Z"))
            .unwrap();
        assert!(outbox.pending().unwrap().is_empty());
        assert!(outbox.is_sent(&id("a.1")).unwrap());
        assert_eq!(
            fs::read_to_string(dir.path().join("mail/sent/2026-12.log")).unwrap(),
            "2026-12-09T06:00:00Z a.1 b@example.net\n"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("mail/sent/2027-01.log")).unwrap(),
            "2027-01-01T00:00:01Z b.2 b@example.net\n"
        );
        assert!(!outbox.put(&id("a.1"), MSG).unwrap(), "already sent");
        assert!(!outbox.path(&id("a.1")).exists());
        // Idempotent, and an unknown id is an error.
        outbox
            .mark_sent(&id("a.1"), at("2026-12-10T06:00:00Z"))
            .unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("mail/sent/2026-12.log"))
                .unwrap()
                .lines()
                .count(),
            1
        );
        assert!(matches!(
            outbox.mark_sent(&id("nope"), at("2026-12-10T06:00:00Z")),
            Err(OutboxError::NotPending(_))
        ));
    }

    #[test]
    fn a_file_left_after_the_log_line_is_not_pending() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.put(&id("a.1"), MSG).unwrap();
        fs::create_dir_all(dir.path().join(SENT_DIR)).unwrap();
        fs::write(
            dir.path().join("mail/sent/2026-12.log"),
            "2026-12-09T06:00:00Z a.1 b@example.net\n",
        )
        .unwrap();
        assert!(outbox.pending().unwrap().is_empty());
        outbox
            .mark_sent(&id("a.1"), at("2026-12-09T06:00:00Z"))
            .unwrap();
        assert!(!outbox.path(&id("a.1")).exists());
    }

    #[test]
    fn reject_moves_and_appends_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        outbox.put(&id("a.1"), MSG).unwrap();
        outbox
            .reject(
                &id("a.1"),
                "550 no such\r\nuser",
                at("2026-12-09T06:00:00Z"),
            )
            .unwrap();
        assert!(outbox.pending().unwrap().is_empty());
        assert!(outbox.is_rejected(&id("a.1")));
        assert_eq!(
            fs::read(dir.path().join("mail/rejected/a.1.eml")).unwrap(),
            MSG
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("mail/rejected/a.1.reason")).unwrap(),
            "2026-12-09T06:00:00Z 550 no such user\n"
        );
        assert!(!outbox.put(&id("a.1"), MSG).unwrap(), "already rejected");
    }

    #[test]
    fn open_needs_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Outbox::open(&dir.path().join("missing")).is_err());
    }
}
