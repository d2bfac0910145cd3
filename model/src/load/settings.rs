//! Parsing `gitvps.toml`, the repo-wide settings: every table is optional and every field
//! falls back to its default, so a bad field costs only itself.

use toml_edit::TableLike;

use super::build;
use crate::diag::Origin;
use crate::ids::{IsoId, ProductId, VpsId};
use crate::media::{IsoEntry, MediaUrl, Sha256Hex};
use crate::policy::{PaymentMethod, TaxRate};
use crate::read::{FromValue, Kw, Obj, Reader};
use crate::settings::*;
use crate::values::{Country, Size};

const SETTINGS_KEYS: &[&str] = &[
    "site",
    "mail",
    "billing",
    "seller",
    "reconciler",
    "vps",
    "hooks",
    "dns",
    "monitor",
    "traffic",
    "backup",
    "workflow",
    "boot",
    "iso",
];

const ISO_KEYS: &[&str] = &["id", "name", "url", "sha256", "size"];

const TRAFFIC_KEYS: &[&str] = &[
    "reset",
    "count",
    "warn_percent",
    "at_warn",
    "at_limit",
    "throttle_rate",
];

const DNS_KEYS: &[&str] = &[
    "nameservers",
    "contact",
    "ttl",
    "negative_ttl",
    "forward_confirm",
    "server",
];

const DNS_SERVER_KEYS: &[&str] = &[
    "address", "port", "user", "sudo", "host_key", "dir", "backend", "control",
];

const BILLING_KEYS: &[&str] = &[
    "grace_days",
    "reminder_days",
    "overdue_reminder_days",
    "terminate_days",
    "invoice_number",
    "payment_methods",
    "tax",
    "tax_inclusive",
];

const SELLER_KEYS: &[&str] = &["name", "address", "country", "tax_id", "email"];

const HOOKS_KEYS: &[&str] = &[
    "trusted_proxy_header",
    "login_free_failures",
    "login_max_backoff_secs",
    "hash_queue_max_wait_ms",
    "per_minute",
    "per_day",
    "tickets_per_day",
    "reset_valid_minutes",
    "resets_per_day",
];

const RECONCILER_KEYS: &[&str] = &[
    "retention_days",
    "parallelism",
    "status_branch",
    "connect_timeout_secs",
    "command_timeout_secs",
    "shutdown_timeout_secs",
    "boot_timeout_secs",
    "vps_at_once",
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
    if let Some(mail) = top.sub(r, &mut o, "mail", &["from", "from_name", "support"]) {
        mail.set(r, &mut o, "from", &mut s.mail.from);
        mail.set(r, &mut o, "from_name", &mut s.mail.from_name);
        s.mail.support = mail.opt(r, &mut o, "support");
        mail.finish(r);
    }
    if let Some(b) = top.sub(r, &mut o, "billing", BILLING_KEYS) {
        parse_billing(r, &mut o, &b, &mut s.billing);
    }
    s.seller.name.clone_from(&s.site.name);
    if let Some(seller) = top.sub(r, &mut o, "seller", SELLER_KEYS) {
        parse_seller(r, &mut o, &seller, &mut s.seller);
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
    if let Some(d) = top.sub(r, &mut o, "dns", DNS_KEYS) {
        parse_dns(r, &mut o, &d, &mut s.dns);
    }
    if let Some(m) = top.sub(
        r,
        &mut o,
        "monitor",
        &[
            "interval_secs",
            "database",
            "check_failures",
            "check_timeout_secs",
            "listen",
        ],
    ) {
        s.monitor.listen = m.opt(r, &mut o, "listen");
        m.set_checked(
            r,
            &mut o,
            "check_failures",
            &mut s.monitor.check_failures,
            |&v: &u32| match v {
                1..=60 => Ok(()),
                _ => Err("must be 1 to 60 (failed checks in a row before the alert)".to_owned()),
            },
        );
        m.set_checked(
            r,
            &mut o,
            "check_timeout_secs",
            &mut s.monitor.check_timeout_secs,
            |&v: &u32| match v {
                1..=60 => Ok(()),
                _ => Err("must be 1 to 60 seconds".to_owned()),
            },
        );
        m.set_checked(
            r,
            &mut o,
            "interval_secs",
            &mut s.monitor.interval_secs,
            |&v: &u32| match v {
                10..=3600 => Ok(()),
                _ => Err("must be 10 to 3600 (an hour)".to_owned()),
            },
        );
        m.set_checked(
            r,
            &mut o,
            "database",
            &mut s.monitor.database,
            |v: &String| {
                if v.is_empty() || v.chars().any(char::is_control) {
                    Err("must be a folder path (absolute, or relative to the repo)".to_owned())
                } else {
                    Ok(())
                }
            },
        );
        m.finish(r);
    }
    if let Some(w) = top.sub(r, &mut o, "workflow", &["if_moved"]) {
        s.workflow.if_moved = w.kw(r, &mut o, "if_moved").unwrap_or(s.workflow.if_moved);
        w.finish(r);
    }
    if let Some(t) = top.sub(r, &mut o, "traffic", TRAFFIC_KEYS) {
        parse_traffic(r, &mut o, &t, &mut s.traffic);
    }
    super::backup::parse_settings(r, &mut o, &top, &mut s.backup);
    parse_boot(r, &mut o, &top, &mut s.boot);
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
    h.set_checked(
        r,
        o,
        "reset_valid_minutes",
        &mut c.reset_valid_minutes,
        |&v: &u32| match v {
            1..=1440 => Ok(()),
            _ => Err("must be 1 to 1440 (a day)".to_owned()),
        },
    );
    h.set_checked(r, o, "resets_per_day", &mut c.resets_per_day, at_least_one);
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
    rec.set_checked(r, o, "vps_at_once", &mut c.vps_at_once, |&v| match v {
        1..=64 => Ok(()),
        _ => Err("must be from 1 to 64".to_owned()),
    });
    rec.finish(r);
}

/// `[billing]`: reminder, grace and termination days, invoice numbering, payment methods and
/// tax. Day lists must be free of duplicates and overdue reminders must come before suspension.
fn parse_billing(r: &mut Reader<'_>, o: &mut Origin, b: &Obj<'_>, c: &mut BillingSettings) {
    b.set(r, o, "grace_days", &mut c.grace_days);
    b.set(r, o, "terminate_days", &mut c.terminate_days);
    if b.has("reminder_days") {
        c.reminder_days = b.list(r, o, "reminder_days");
        no_duplicates(r, o, b, "reminder_days");
    }
    if b.has("overdue_reminder_days") {
        c.overdue_reminder_days = b.list(r, o, "overdue_reminder_days");
        no_duplicates(r, o, b, "overdue_reminder_days");
    }
    for (i, &day) in c.overdue_reminder_days.iter().enumerate() {
        let field = b.field(&format!("overdue_reminder_days[{i}]"));
        if day == 0 {
            r.diags.push(o.diag(
                &field,
                "must be at least 1: day 0 is the expiry day (put 0 in reminder_days)",
            ));
        } else if day >= c.grace_days {
            r.diags.push(o.diag(
                &field,
                format!(
                    "{day} days after expiry comes on or after the suspension (grace_days = {}): an overdue reminder must come before it",
                    c.grace_days
                ),
            ));
        }
    }
    b.set(r, o, "invoice_number", &mut c.invoice_number);
    if b.has("payment_methods") {
        let methods: Vec<PaymentMethod> = b
            .list::<Kw<PaymentMethod>>(r, o, "payment_methods")
            .into_iter()
            .map(|k| k.0)
            .collect();
        let given = b.table().get("payment_methods").and_then(|i| i.as_array());
        if given.is_some_and(toml_edit::Array::is_empty) {
            b.error(
                r,
                "payment_methods",
                "name at least one payment method, like [\"card\"]",
            );
        }
        no_duplicates(r, o, b, "payment_methods");
        if !methods.is_empty() {
            c.payment_methods = methods;
        }
    }
    parse_tax(r, o, b, c);
    b.set(r, o, "tax_inclusive", &mut c.tax_inclusive);
    b.finish(r);
}

/// An error at each element of the array `key` that repeats an earlier one (compared as
/// written, so indices stay right when an element did not parse).
fn no_duplicates(r: &mut Reader<'_>, o: &Origin, b: &Obj<'_>, key: &str) {
    let Some(arr) = b.table().get(key).and_then(toml_edit::Item::as_array) else {
        return;
    };
    let raw: Vec<String> = arr
        .iter()
        .map(|v| v.to_string().trim().to_owned())
        .collect();
    for (i, x) in raw.iter().enumerate() {
        if let Some(first) = raw[..i].iter().position(|y| y == x) {
            let field = b.field(&format!("{key}[{i}]"));
            r.diags
                .push(o.diag(&field, format!("duplicate: {x} is already {key}[{first}]")));
        }
    }
}

/// `[billing.tax]`: a table of ISO country code → rate in percent (`DE = "19"`).
fn parse_tax(r: &mut Reader<'_>, o: &mut Origin, b: &Obj<'_>, c: &mut BillingSettings) {
    let Some(item) = b.table().get("tax").filter(|i| !i.is_none()) else {
        return;
    };
    let field = b.field("tax");
    let Some(t) = item.as_table_like() else {
        b.error(
            r,
            "tax",
            "expected a table of country codes to rates, like { DE = \"19\" }",
        );
        return;
    };
    o.record(&field, r.src.pos_of(b.span_of("tax")));
    for (key, v) in t.iter() {
        let f = format!("{field}.{key}");
        let key_span = t
            .key(key)
            .and_then(toml_edit::Key::span)
            .or_else(|| v.span());
        let country = match key.parse::<Country>() {
            Ok(country) => Some(country),
            Err(e) => {
                r.error(key_span.clone(), &f, e);
                None
            }
        };
        let vspan = v.span().or(key_span);
        o.record(&f, r.src.pos_of(vspan.clone()));
        let rate = match v.as_value().map(TaxRate::from_value) {
            Some(Ok(rate)) => Some(rate),
            Some(Err(e)) => {
                r.error(vspan, &f, e);
                None
            }
            None => {
                r.error(vspan, &f, "expected a rate like \"19\"");
                None
            }
        };
        if let (Some(country), Some(rate)) = (country, rate) {
            c.tax.insert(country, rate);
        }
    }
}

/// `[seller]`: the seller named on invoices; `name` defaults to `site.name`.
fn parse_seller(r: &mut Reader<'_>, o: &mut Origin, s: &Obj<'_>, c: &mut SellerSettings) {
    s.set(r, o, "name", &mut c.name);
    if s.has("address") {
        c.address = s.list(r, o, "address");
    }
    c.country = s.opt(r, o, "country");
    c.tax_id = s.opt(r, o, "tax_id");
    c.email = s.opt(r, o, "email");
    s.finish(r);
}

/// `[traffic]`: the reset day, the counted direction, the warning threshold and the actions;
/// the action at the quota (default `throttle`) is never milder than the one at the warning.
fn parse_traffic(r: &mut Reader<'_>, o: &mut Origin, t: &Obj<'_>, c: &mut TrafficSettings) {
    c.reset = t.kw(r, o, "reset").unwrap_or(c.reset);
    c.count = t.kw(r, o, "count").unwrap_or(c.count);
    t.set_checked(
        r,
        o,
        "warn_percent",
        &mut c.warn_percent,
        |&v: &u32| match v {
            1..=99 => Ok(()),
            _ => Err("must be 1 to 99 (percent of the quota)".to_owned()),
        },
    );
    c.at_warn = t.kw(r, o, "at_warn").unwrap_or(c.at_warn);
    c.at_limit = t.kw(r, o, "at_limit").unwrap_or(c.at_limit);
    if c.at_limit < c.at_warn {
        // Blame the field that was written: at_limit if given, else at_warn against the default.
        let key = if t.has("at_limit") {
            "at_limit"
        } else {
            "at_warn"
        };
        t.error(
            r,
            key,
            format!(
                "at_limit `{}` is milder than at_warn `{}`: the quota's action must be at least as strong",
                c.at_limit, c.at_warn
            ),
        );
        c.at_limit = c.at_warn;
    }
    t.set(r, o, "throttle_rate", &mut c.throttle_rate);
    t.finish(r);
}

/// `[dns]`: name servers, SOA contact and timers, and the `[[dns.server]]` list.
fn parse_dns(r: &mut Reader<'_>, o: &mut Origin, d: &Obj<'_>, c: &mut DnsSettings) {
    if d.has("nameservers") {
        c.nameservers = d.list(r, o, "nameservers");
        no_duplicates(r, o, d, "nameservers");
    }
    c.contact = d.opt(r, o, "contact");
    let at_least_one = |&v: &u32| match v {
        0 => Err("must be at least 1".to_owned()),
        _ => Ok(()),
    };
    d.set_checked(r, o, "ttl", &mut c.ttl, at_least_one);
    d.set_checked(r, o, "negative_ttl", &mut c.negative_ttl, at_least_one);
    d.set(r, o, "forward_confirm", &mut c.forward_confirm);
    if let Some(item) = d.table().get("server").filter(|i| !i.is_none()) {
        o.record(&d.field("server"), r.src.pos_of(d.span_of("server")));
        let tables: Vec<(&dyn TableLike, Option<std::ops::Range<usize>>)> =
            match (item.as_array_of_tables(), item.as_array()) {
                (Some(a), _) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
                (None, Some(a)) => a
                    .iter()
                    .filter_map(|v| v.as_inline_table().map(|t| (t as &dyn TableLike, v.span())))
                    .collect(),
                (None, None) => {
                    d.error(r, "server", "expected [[dns.server]] tables");
                    Vec::new()
                }
            };
        for (i, (t, span)) in tables.into_iter().enumerate() {
            let prefix = d.field(&format!("server[{i}]."));
            let s = Obj::new(t, prefix, span, DNS_SERVER_KEYS);
            if let Some(server) = parse_dns_server(r, o, &s) {
                c.servers.push(server);
            }
        }
    }
    d.finish(r);
}

/// One `[[dns.server]]`: reached over SSH like a node (address, port, user, pinned host key).
fn parse_dns_server(r: &mut Reader<'_>, o: &mut Origin, s: &Obj<'_>) -> Option<DnsServer> {
    let address = s.req(r, o, "address");
    let port = s.opt(r, o, "port").unwrap_or(22);
    let user = s.req(r, o, "user");
    let sudo = s.opt(r, o, "sudo").unwrap_or(false);
    let host_key = s.req(r, o, "host_key");
    let dir = s.req(r, o, "dir");
    let backend = s.kw(r, o, "backend").unwrap_or(DnsBackend::Knot);
    let control = s.opt(r, o, "control");
    build(r, s, || {
        Some(DnsServer {
            address: address?,
            port,
            user: user?,
            sudo,
            host_key: host_key?,
            dir: dir?,
            backend,
            control,
        })
    })
}

/// `[boot] max_iso_size` and the `[[iso]]` library: every entry complete, ids unique, sizes
/// within the bound.
fn parse_boot(r: &mut Reader<'_>, o: &mut Origin, top: &Obj<'_>, c: &mut BootSettings) {
    if let Some(b) = top.sub(r, o, "boot", &["max_iso_size"]) {
        b.set_checked(r, o, "max_iso_size", &mut c.max_iso_size, |v: &Size| {
            if v.bytes() == 0 {
                Err("must be more than 0".to_owned())
            } else {
                Ok(())
            }
        });
        b.finish(r);
    }
    let Some(item) = top.table().get("iso").filter(|i| !i.is_none()) else {
        return;
    };
    o.record("iso", r.src.pos_of(top.span_of("iso")));
    let Some(list) = item.as_array_of_tables() else {
        top.error(
            r,
            "iso",
            "expected [[iso]] tables (id, name, url, sha256, size)",
        );
        return;
    };
    for (i, t) in list.iter().enumerate() {
        let e = Obj::new(t, format!("iso[{i}]."), t.span(), ISO_KEYS);
        let id = e.req::<IsoId>(r, o, "id");
        let name = e.req::<String>(r, o, "name");
        let url = e.req::<MediaUrl>(r, o, "url");
        let sha256 = e.req::<Sha256Hex>(r, o, "sha256");
        let size = e.req::<Size>(r, o, "size");
        if let Some(sz) = size
            && sz > c.max_iso_size
        {
            e.error(
                r,
                "size",
                format!(
                    "{sz} is larger than [boot] max_iso_size ({})",
                    c.max_iso_size
                ),
            );
        }
        if let Some(id) = &id
            && c.library.iter().any(|x| &x.id == id)
        {
            e.error(r, "id", format!("ISO `{id}` is listed twice"));
        }
        if let Some(entry) = build(r, &e, || {
            Some(IsoEntry {
                id: id?,
                name: name?,
                url: url?,
                sha256: sha256?,
                size: size?,
            })
        }) {
            c.library.push(entry);
        }
    }
}
