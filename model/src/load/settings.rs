//! Parsing `gitvps.toml`, the repo-wide settings: every table is optional and every field
//! falls back to its default, so a bad field costs only itself.

use toml_edit::TableLike;

use super::build;
use crate::diag::Origin;
use crate::ids::{ProductId, VpsId};
use crate::read::{Obj, Reader};
use crate::settings::*;

const SETTINGS_KEYS: &[&str] = &["site", "mail", "billing", "reconciler", "vps", "hooks"];

const HOOKS_KEYS: &[&str] = &[
    "trusted_proxy_header",
    "login_free_failures",
    "login_max_backoff_secs",
    "hash_queue_max_wait_ms",
    "per_minute",
    "per_day",
    "tickets_per_day",
];

const RECONCILER_KEYS: &[&str] = &[
    "retention_days",
    "parallelism",
    "status_branch",
    "connect_timeout_secs",
    "command_timeout_secs",
    "shutdown_timeout_secs",
    "boot_timeout_secs",
];

pub(super) fn parse_settings(r: &mut Reader<'_>, t: &dyn TableLike) -> Option<Settings> {
    let mut s = Settings::default();
    let mut o = r.origin(None);
    let top = Obj::new(t, "", None, SETTINGS_KEYS);
    if let Some(site) = top.sub(r, &mut o, "site", &["name", "url"]) {
        site.set(r, &mut o, "name", &mut s.site.name);
        site.set_checked(r, &mut o, "url", &mut s.site.url, |v: &String| {
            if v.starts_with("http://") || v.starts_with("https://") {
                Ok(())
            } else {
                Err(format!("`{v}` is not an http(s) URL"))
            }
        });
        site.finish(r);
    }
    if let Some(mail) = top.sub(r, &mut o, "mail", &["from", "from_name"]) {
        mail.set(r, &mut o, "from", &mut s.mail.from);
        mail.set(r, &mut o, "from_name", &mut s.mail.from_name);
        mail.finish(r);
    }
    if let Some(b) = top.sub(r, &mut o, "billing", &["grace_days", "reminder_days"]) {
        b.set(r, &mut o, "grace_days", &mut s.billing.grace_days);
        if b.has("reminder_days") {
            s.billing.reminder_days = b.list(r, &mut o, "reminder_days");
        }
        b.finish(r);
    }
    if let Some(rec) = top.sub(r, &mut o, "reconciler", RECONCILER_KEYS) {
        parse_reconciler(r, &mut o, &rec, &mut s.reconciler);
    }
    if let Some(v) = top.sub(r, &mut o, "vps", &["default_os", "domain", "id_prefix"]) {
        v.set(r, &mut o, "default_os", &mut s.vps.default_os);
        s.vps.domain = v.opt(r, &mut o, "domain");
        v.set_checked(
            r,
            &mut o,
            "id_prefix",
            &mut s.vps.id_prefix,
            |p: &String| {
                let msg =
                    || format!("`{p}` cannot start a VPS id (lowercase letters, digits, '-')");
                format!("{p}1")
                    .parse::<VpsId>()
                    .map(drop)
                    .map_err(|_| msg())
            },
        );
        v.finish(r);
    }
    if let Some(h) = top.sub(r, &mut o, "hooks", HOOKS_KEYS) {
        parse_hooks(r, &mut o, &h, &mut s.hooks);
    }
    build(r, &top, || Some(s))
}

fn parse_hooks(r: &mut Reader<'_>, o: &mut Origin, h: &Obj<'_>, c: &mut HooksSettings) {
    let mut header = String::new();
    h.set_checked(r, o, "trusted_proxy_header", &mut header, |v: &String| {
        // An HTTP field name (RFC 9110 token), short.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if !v.is_empty() && v.len() <= 64 && v.bytes().all(token) {
            Ok(())
        } else {
            Err(format!(
                "`{}` is not an HTTP header name (like \"X-Forwarded-For\")",
                v.escape_debug()
            ))
        }
    });
    if !header.is_empty() {
        c.trusted_proxy_header = Some(header);
    }
    let at_least_one = |&v: &u32| match v {
        0 => Err("must be at least 1".to_owned()),
        _ => Ok(()),
    };
    h.set(r, o, "login_free_failures", &mut c.login_free_failures);
    h.set_checked(
        r,
        o,
        "login_max_backoff_secs",
        &mut c.login_max_backoff_secs,
        at_least_one,
    );
    h.set_checked(
        r,
        o,
        "hash_queue_max_wait_ms",
        &mut c.hash_queue_max_wait_ms,
        at_least_one,
    );
    h.set_checked(r, o, "per_minute", &mut c.per_minute, at_least_one);
    h.set_checked(r, o, "per_day", &mut c.per_day, at_least_one);
    h.set_checked(
        r,
        o,
        "tickets_per_day",
        &mut c.tickets_per_day,
        at_least_one,
    );
    h.finish(r);
}

fn parse_reconciler(r: &mut Reader<'_>, o: &mut Origin, rec: &Obj<'_>, c: &mut ReconcilerSettings) {
    rec.set(r, o, "retention_days", &mut c.retention_days);
    rec.set_checked(r, o, "parallelism", &mut c.parallelism, |&v| match v {
        0 => Err("must be at least 1".to_owned()),
        _ => Ok(()),
    });
    rec.set_checked(r, o, "status_branch", &mut c.status_branch, |v: &String| {
        let msg = || format!("`{v}` is not a simple branch name (lowercase letters, digits, '-')");
        v.parse::<ProductId>().map(drop).map_err(|_| msg())
    });
    rec.set(r, o, "connect_timeout_secs", &mut c.connect_timeout_secs);
    rec.set(r, o, "command_timeout_secs", &mut c.command_timeout_secs);
    rec.set(r, o, "shutdown_timeout_secs", &mut c.shutdown_timeout_secs);
    rec.set(r, o, "boot_timeout_secs", &mut c.boot_timeout_secs);
    rec.finish(r);
}
