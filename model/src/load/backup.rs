//! Parsing backups: a product's `[product.backup]`, a VPS's `[backup]` and `gitvps.toml`'s
//! `[backup]` restic repository, whose credentials are only ever environment variable names.

use super::build;
use crate::backup::*;
use crate::diag::Origin;
use crate::read::{Obj, Reader};

/// The keys of `[product.backup]` and a VPS's `[backup]`.
pub(super) const POLICY_KEYS: &[&str] = &[
    "every",
    "hour",
    "weekday",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
];

const SETTINGS_KEYS: &[&str] = &[
    "password_env",
    "snapshot_cow_percent",
    "local",
    "sftp",
    "s3",
];
const LOCAL_KEYS: &[&str] = &["path"];
const SFTP_KEYS: &[&str] = &["host", "port", "user", "host_key", "path"];
const S3_KEYS: &[&str] = &[
    "endpoint",
    "bucket",
    "prefix",
    "access_key_env",
    "secret_key_env",
];

/// The fields of a policy table, each optional; an hour outside 0 to 23 is an error.
pub(super) fn parse_override(r: &mut Reader<'_>, o: &mut Origin, b: &Obj<'_>) -> BackupOverride {
    let out = BackupOverride {
        every: b.kw(r, o, "every"),
        hour: b.opt(r, o, "hour"),
        weekday: b.kw(r, o, "weekday"),
        keep_daily: b.opt(r, o, "keep_daily"),
        keep_weekly: b.opt(r, o, "keep_weekly"),
        keep_monthly: b.opt(r, o, "keep_monthly"),
    };
    if out.hour.is_some_and(|h| h > 23) {
        b.error(r, "hour", "must be a UTC hour, 0 to 23");
    }
    b.finish(r);
    out
}

/// `[restore]` of a VPS: `snapshot` and `generation` (at least 1) are required, `from` names
/// the VPS the backup was taken of when it is another one.
pub(super) fn parse_restore(r: &mut Reader<'_>, o: &mut Origin, v: &Obj<'_>) -> Option<Restore> {
    let b = v.sub(r, o, "restore", &["snapshot", "from", "generation"])?;
    let snapshot = b.req::<SnapshotId>(r, o, "snapshot");
    let from = b.opt::<crate::VpsId>(r, o, "from");
    let generation = b.req::<u64>(r, o, "generation");
    if generation == Some(0) {
        b.error(r, "generation", "must be at least 1 (bump it to restore)");
    }
    b.finish(r);
    Some(Restore {
        snapshot: snapshot?,
        from,
        generation: generation.filter(|g| *g > 0)?,
    })
}

/// `[product.backup]` of a plan: `every` is required, the rest default; a policy that takes
/// backups must keep some.
pub(super) fn parse_policy(r: &mut Reader<'_>, o: &mut Origin, p: &Obj<'_>) -> BackupPolicy {
    let Some(b) = p.sub(r, o, "backup", POLICY_KEYS) else {
        return BackupPolicy::default();
    };
    b.required(r, "every");
    let policy = BackupPolicy::default().with(&parse_override(r, o, &b));
    check_keeps(r, &b, &policy);
    policy
}

/// A policy that takes backups and keeps none would forget each one as it is taken.
pub(super) fn check_keeps(r: &mut Reader<'_>, b: &Obj<'_>, policy: &BackupPolicy) {
    let k = policy.keep;
    if policy.schedule.every != Frequency::Off && k.daily == 0 && k.weekly == 0 && k.monthly == 0 {
        let key = ["keep_daily", "keep_weekly", "keep_monthly"]
            .into_iter()
            .find(|k| b.has(k))
            .unwrap_or("every");
        b.error(
            r,
            key,
            "backups are taken but none is kept: keep_daily, keep_weekly or keep_monthly must be at least 1",
        );
    }
}

/// `[backup]` of `gitvps.toml`: the password's variable and one repository: local, SFTP or S3.
pub(super) fn parse_settings(
    r: &mut Reader<'_>,
    o: &mut Origin,
    top: &Obj<'_>,
    c: &mut BackupSettings,
) {
    let Some(b) = top.sub(r, o, "backup", SETTINGS_KEYS) else {
        return;
    };
    b.set(r, o, "password_env", &mut c.password_env);
    b.set(r, o, "snapshot_cow_percent", &mut c.snapshot_cow_percent);
    if !(1..=100).contains(&c.snapshot_cow_percent) {
        c.snapshot_cow_percent = crate::snapshot::DEFAULT_COW_PERCENT;
        b.error(
            r,
            "snapshot_cow_percent",
            "must be 1 to 100 (percent of the disk)",
        );
    }
    let sftp = b
        .sub(r, o, "sftp", SFTP_KEYS)
        .and_then(|s| parse_sftp(r, o, &s));
    let s3 = b.sub(r, o, "s3", S3_KEYS).and_then(|s| parse_s3(r, o, &s));
    let local = b.sub(r, o, "local", LOCAL_KEYS).and_then(|l| {
        let path = l.req(r, o, "path");
        build(r, &l, || Some(Repository::Local { path: path? }))
    });
    let given = [
        ("local", local.is_some()),
        ("sftp", sftp.is_some()),
        ("s3", s3.is_some()),
    ];
    if let Some((second, _)) = given.iter().filter(|(_, on)| *on).nth(1) {
        b.error(
            r,
            second,
            "one repository only: [backup.local], [backup.sftp] or [backup.s3]",
        );
    }
    c.repository = local.or(sftp).or(s3);
    b.finish(r);
}

fn parse_sftp(r: &mut Reader<'_>, o: &mut Origin, s: &Obj<'_>) -> Option<Repository> {
    let host = s.req(r, o, "host");
    let port = s.opt(r, o, "port").unwrap_or(22);
    let user = s.req(r, o, "user");
    let host_key = s.req(r, o, "host_key");
    let path = s.req(r, o, "path");
    build(r, s, || {
        Some(Repository::Sftp {
            host: host?,
            port,
            user: user?,
            host_key: host_key?,
            path: path?,
        })
    })
}

fn parse_s3(r: &mut Reader<'_>, o: &mut Origin, s: &Obj<'_>) -> Option<Repository> {
    let endpoint = s.req::<String>(r, o, "endpoint");
    if let Some(e) = &endpoint
        && !(e.starts_with("https://") || e.starts_with("http://"))
    {
        s.error(r, "endpoint", format!("`{e}` is not an http(s) URL"));
    }
    let bucket = s.req::<String>(r, o, "bucket");
    if let Some(b) = &bucket
        && !bucket_name(b)
    {
        s.error(
            r,
            "bucket",
            format!(
                "`{}` is not an S3 bucket name (3 to 63 lowercase letters, digits, '.' and '-')",
                b.escape_debug()
            ),
        );
    }
    let prefix = s.opt::<String>(r, o, "prefix");
    if let Some(p) = &prefix
        && !prefix_ok(p)
    {
        s.error(
            r,
            "prefix",
            format!(
                "`{}` is not a folder in a bucket (letters, digits, '.', '_', '-' and '/', no leading '/' or '..')",
                p.escape_debug()
            ),
        );
    }
    let mut access = EnvName::new_unchecked("AWS_ACCESS_KEY_ID");
    let mut secret = EnvName::new_unchecked("AWS_SECRET_ACCESS_KEY");
    s.set(r, o, "access_key_env", &mut access);
    s.set(r, o, "secret_key_env", &mut secret);
    build(r, s, || {
        Some(Repository::S3 {
            endpoint: endpoint?,
            bucket: bucket?,
            prefix,
            access_key_env: access,
            secret_key_env: secret,
        })
    })
}

/// S3's bucket naming rules (the DNS-compatible ones).
fn bucket_name(b: &str) -> bool {
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && edge(b.bytes().next())
        && edge(b.bytes().last())
        && !b.contains("..")
}

fn prefix_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && !p.starts_with('/')
        && p.split('/').all(|seg| seg != ".." && seg != ".")
        && p.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-/".contains(&c))
}
