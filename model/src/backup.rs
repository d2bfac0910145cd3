//! Backups as declared: the policy of a product or a VPS (when a backup is due, how many to
//! keep) and the restic repository of `gitvps.toml`. The decisions over them are `gitvps-backup`'s.

use crate::values::{AbsPath, Host, SshPublicKey, UnixUser};

crate::values::keyword!(
    /// How often a VPS is backed up.
    Frequency, "backup frequency", {
        /// Never: no backups are taken (the default).
        Off = "off",
        /// Once a UTC day, from `hour`.
        Daily = "daily",
        /// Once a week, from `hour` on `weekday` (UTC).
        Weekly = "weekly",
    }
);

crate::values::keyword!(
    /// A day of the week, for weekly backups.
    Weekday, "weekday", {
        /// Monday.
        Monday = "monday",
        /// Tuesday.
        Tuesday = "tuesday",
        /// Wednesday.
        Wednesday = "wednesday",
        /// Thursday.
        Thursday = "thursday",
        /// Friday.
        Friday = "friday",
        /// Saturday.
        Saturday = "saturday",
        /// Sunday.
        Sunday = "sunday",
    }
);

impl Weekday {
    /// Days since Monday (Monday 0 .. Sunday 6).
    pub fn days_from_monday(self) -> u32 {
        self as u32
    }
}

/// When backups are due. Every time is UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Schedule {
    /// How often.
    pub every: Frequency,
    /// The UTC hour (0 to 23) from which the day's (or week's) backup is due.
    pub hour: u32,
    /// The day of a weekly backup.
    pub weekday: Weekday,
}

/// How many backups to keep: restic's `forget --keep-daily/--keep-weekly/--keep-monthly`,
/// counted in UTC days, ISO weeks and months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Retention {
    /// The newest backup of each of the last `daily` days that have one.
    pub daily: u32,
    /// The newest backup of each of the last `weekly` ISO weeks that have one.
    pub weekly: u32,
    /// The newest backup of each of the last `monthly` months that have one.
    pub monthly: u32,
}

/// A backup policy: a product's `[product.backup]`, or its result with a VPS's `[backup]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BackupPolicy {
    /// When backups are due.
    pub schedule: Schedule,
    /// How many are kept.
    pub keep: Retention,
}

impl Default for BackupPolicy {
    /// No backups; when a product turns them on without saying more: daily at 03:00 UTC
    /// (weekly: on Sunday), keeping 7 daily, 4 weekly and 3 monthly.
    fn default() -> Self {
        BackupPolicy {
            schedule: Schedule {
                every: Frequency::Off,
                hour: 3,
                weekday: Weekday::Sunday,
            },
            keep: Retention {
                daily: 7,
                weekly: 4,
                monthly: 3,
            },
        }
    }
}

/// A VPS's `[backup]`: each field given replaces the product's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BackupOverride {
    /// `every`.
    pub every: Option<Frequency>,
    /// `hour`.
    pub hour: Option<u32>,
    /// `weekday`.
    pub weekday: Option<Weekday>,
    /// `keep_daily`.
    pub keep_daily: Option<u32>,
    /// `keep_weekly`.
    pub keep_weekly: Option<u32>,
    /// `keep_monthly`.
    pub keep_monthly: Option<u32>,
}

impl BackupOverride {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == BackupOverride::default()
    }
}

impl BackupPolicy {
    /// This policy with a VPS's overrides applied.
    pub fn with(self, o: &BackupOverride) -> BackupPolicy {
        BackupPolicy {
            schedule: Schedule {
                every: o.every.unwrap_or(self.schedule.every),
                hour: o.hour.unwrap_or(self.schedule.hour),
                weekday: o.weekday.unwrap_or(self.schedule.weekday),
            },
            keep: Retention {
                daily: o.keep_daily.unwrap_or(self.keep.daily),
                weekly: o.keep_weekly.unwrap_or(self.keep.weekly),
                monthly: o.keep_monthly.unwrap_or(self.keep.monthly),
            },
        }
    }
}

crate::values::string_value! {
    /// The name of an environment variable (`[A-Z_][A-Z0-9_]*`, at most 64 characters): where
    /// a backup credential is read from. The value itself never appears in the repository.
    pub struct EnvName(String);
    /// The name as text.
    pub fn as_str;
    pub(crate) fn new_unchecked;
    fn parse(s) {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().next().is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(s.to_owned())
        } else {
            // The value is not repeated: it may be a secret pasted by mistake.
            Err("expected the name of an environment variable (like \"GITVPS_RESTIC_PASSWORD\"), never a credential itself".to_owned())
        }
    }
}

crate::values::string_value! {
    /// A restic snapshot id: 8 to 64 lowercase hex digits (a short id or the full one).
    pub struct SnapshotId(String);
    /// The id as text.
    pub fn as_str;
    fn parse(s) {
        if (8..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(s.to_owned())
        } else {
            Err(format!(
                "`{}` is not a restic snapshot id (8 to 64 lowercase hex digits, as `gitvps backup list` shows them)",
                s.escape_debug()
            ))
        }
    }
}

/// A VPS's `[restore]`: write a backup onto its disk, erasing it, once per generation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Restore {
    /// The restic snapshot (a backup of this VPS, or of `from`).
    pub snapshot: SnapshotId,
    /// The VPS the backup was taken of, when it is another VPS of the same customer (restore
    /// into a new VPS); `None`: this VPS.
    pub from: Option<crate::VpsId>,
    /// Bump it to restore again: a restore is done once per generation, like `[actions]`.
    pub generation: u64,
}

impl Restore {
    /// The VPS whose backup this is.
    pub fn source<'a>(&'a self, vps: &'a crate::VpsId) -> &'a crate::VpsId {
        self.from.as_ref().unwrap_or(vps)
    }
}

/// `[backup]` in `gitvps.toml`: the restic repository every backup goes to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackupSettings {
    /// Where; `None`: no repository, and `gitvps backup run` refuses to run.
    pub repository: Option<Repository>,
    /// The variable holding the repository's password (restic's `RESTIC_PASSWORD`).
    pub password_env: EnvName,
    /// `snapshot_cow_percent`: a customer snapshot's copy-on-write area on LVM storage, in
    /// percent of the disk (1 to 100; 20 by default).
    pub snapshot_cow_percent: u32,
}

impl Default for BackupSettings {
    fn default() -> Self {
        BackupSettings {
            repository: None,
            snapshot_cow_percent: crate::snapshot::DEFAULT_COW_PERCENT,
            password_env: EnvName::new_unchecked("GITVPS_RESTIC_PASSWORD"),
        }
    }
}

/// A restic repository.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Repository {
    /// `[backup.local]`: a folder on each node (a mounted share, or the tests' folder): restic's
    /// local backend.
    Local {
        /// The repository's folder, the same path on every node.
        path: AbsPath,
    },
    /// `[backup.sftp]`: a folder on a backup node, reached over SFTP (`sftp:user@host:/path`).
    Sftp {
        /// The backup node.
        host: Host,
        /// Its sshd port.
        port: u16,
        /// The user restic logs in as.
        user: UnixUser,
        /// The backup node's pinned SSH host key.
        host_key: SshPublicKey,
        /// The repository's folder there.
        path: AbsPath,
    },
    /// `[backup.s3]`: an S3 bucket (`s3:https://endpoint/bucket/prefix`).
    S3 {
        /// The S3 endpoint, `https://...`.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// A folder in the bucket, if any.
        prefix: Option<String>,
        /// The variable holding the access key id (restic's `AWS_ACCESS_KEY_ID`).
        access_key_env: EnvName,
        /// The variable holding the secret access key (restic's `AWS_SECRET_ACCESS_KEY`).
        secret_key_env: EnvName,
    },
}
