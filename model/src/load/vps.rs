//! Parsing one `inventory/vps/<id>.toml`: whose VPS it is, where it runs, its addresses,
//! system, power and contract state, pending actions and monitoring.

use std::collections::BTreeMap;
use std::net::IpAddr;

use toml_edit::TableLike;

use super::build;
use crate::diag::Origin;
use crate::ids::*;
use crate::inventory::*;
use crate::read::{Obj, Reader};
use crate::values::*;

const VPS_KEYS: &[&str] = &[
    "customer",
    "product",
    "node",
    "ips",
    "hostname",
    "os",
    "appliance",
    "guest_type",
    "power",
    "state",
    "suspension",
    "suspended",
    "created",
    "expires",
    "destroyed",
    "actions",
    "monitor",
    "ptr",
    "backup",
    "throttled",
    "adopted",
    "traffic_block",
    "restore",
    "boot",
    "snapshot_limit",
    "snapshot",
    "revert",
    "rescue",
];

const TRAFFIC_BLOCK_KEYS: &[&str] = &["period", "size", "invoice"];

const BOOT_KEYS: &[&str] = &["iso", "iso_url", "iso_sha256", "order"];

pub(super) fn parse_vps(r: &mut Reader<'_>, id: VpsId, t: &dyn TableLike) -> Option<Vps> {
    let v = Obj::new(t, "", None, VPS_KEYS);
    let mut o = r.origin(None);
    let customer = v.req::<CustomerId>(r, &mut o, "customer");
    let product = v.req::<ProductId>(r, &mut o, "product");
    let node = v.req::<NodeId>(r, &mut o, "node");
    let ips = v.list::<VpsAddr>(r, &mut o, "ips");
    let hostname = v.req::<Hostname>(r, &mut o, "hostname");
    let os = v.req::<OsId>(r, &mut o, "os");
    let appliance = v.opt::<ApplianceId>(r, &mut o, "appliance");
    let guest_type = v.kw::<GuestType>(r, &mut o, "guest_type");
    let power = v.kw::<Power>(r, &mut o, "power").unwrap_or(Power::Running);
    let state = v.kw::<State>(r, &mut o, "state").unwrap_or(State::Active);
    let suspension = v.kw::<Suspension>(r, &mut o, "suspension");
    let suspended = v.opt(r, &mut o, "suspended");
    let throttled = v.opt::<bool>(r, &mut o, "throttled").unwrap_or(false);
    let traffic_blocks = parse_traffic_blocks(r, &mut o, &v);
    let created = v.req(r, &mut o, "created");
    let expires = v.req(r, &mut o, "expires");
    let destroyed = v.opt(r, &mut o, "destroyed");
    let mut adopted = false;
    v.set(r, &mut o, "adopted", &mut adopted);
    let actions = parse_actions(r, &mut o, &v);
    let monitor = parse_monitor(r, &mut o, &v, &ips);
    let ptr = parse_ptr(r, &mut o, &v, &ips);
    let backup = v
        .sub(r, &mut o, "backup", super::backup::POLICY_KEYS)
        .map(|b| super::backup::parse_override(r, &mut o, &b))
        .unwrap_or_default();
    let restore = super::backup::parse_restore(r, &mut o, &v);
    let boot = parse_boot(r, &mut o, &v);
    let snapshots = parse_snapshots(r, &mut o, &v);
    let rescue = v.opt::<bool>(r, &mut o, "rescue").unwrap_or(false);
    build(r, &v, || {
        Some(Vps {
            id,
            customer: customer?,
            product: product?,
            node: node?,
            ips,
            hostname: hostname?,
            os: os?,
            appliance,
            guest_type,
            power,
            state,
            suspension,
            suspended,
            throttled,
            traffic_blocks,
            created: created?,
            expires: expires?,
            destroyed,
            actions,
            monitor,
            ptr,
            backup,
            adopted,
            restore,
            boot,
            snapshots,
            rescue,
            origin: o,
        })
    })
}

/// `snapshot_limit`, `[[snapshot]]` (name, created) and `[revert]` (snapshot, generation at
/// least 1). A name given twice is an error at the second; the cross-file rules (the limit, the
/// node's storage, a revert to an undeclared snapshot) are validate's.
fn parse_snapshots(r: &mut Reader<'_>, o: &mut Origin, v: &Obj<'_>) -> crate::snapshot::Snapshots {
    use crate::snapshot::{Revert, Snapshot, Snapshots};
    let mut out = Snapshots {
        limit: v.opt::<u32>(r, o, "snapshot_limit"),
        ..Snapshots::default()
    };
    for (i, (t, span)) in super::table_list(r, v.table(), "snapshot")
        .into_iter()
        .enumerate()
    {
        let b = Obj::new(t, format!("snapshot[{i}]."), span, &["name", "created"]);
        let name = b.req::<SnapshotName>(r, o, "name");
        let created = b.req::<chrono::DateTime<chrono::Utc>>(r, o, "created");
        b.finish(r);
        let (Some(name), Some(created)) = (name, created) else {
            continue;
        };
        if out.has(&name) {
            b.error(r, "name", format!("snapshot `{name}` is declared twice"));
            continue;
        }
        out.list.push(Snapshot { name, created });
        out.at.push(i);
    }
    if let Some(b) = v.sub(r, o, "revert", &["snapshot", "generation"]) {
        let snapshot = b.req::<SnapshotName>(r, o, "snapshot");
        let generation = b.req::<u64>(r, o, "generation");
        if generation == Some(0) {
            b.error(r, "generation", "must be at least 1 (bump it to revert)");
        }
        b.finish(r);
        if let (Some(snapshot), Some(generation)) = (snapshot, generation.filter(|g| *g > 0)) {
            out.revert = Some(Revert {
                snapshot,
                generation,
            });
        }
    }
    out
}

/// `[actions]`: counters the customer bumps to ask for a reboot, fsck or reinstall.
fn parse_actions(r: &mut Reader<'_>, o: &mut Origin, v: &Obj<'_>) -> Actions {
    let mut actions = Actions::default();
    if let Some(a) = v.sub(r, o, "actions", &["reboot", "fsck", "reinstall"]) {
        a.set(r, o, "reboot", &mut actions.reboot);
        a.set(r, o, "fsck", &mut actions.fsck);
        a.set(r, o, "reinstall", &mut actions.reinstall);
        a.finish(r);
    }
    actions
}

/// `[boot]`: a library ISO (`iso`) or the customer's own (`iso_url` with `iso_sha256`, both
/// required), and `order` (`cd`, the default, or `disk`).
fn parse_boot(r: &mut Reader<'_>, o: &mut Origin, v: &Obj<'_>) -> Option<crate::media::Boot> {
    use crate::media::{Boot, BootOrderKw, IsoSource, MediaUrl, Sha256Hex};
    let b = v.sub(r, o, "boot", BOOT_KEYS)?;
    let lib = b.opt::<IsoId>(r, o, "iso");
    let url = b.opt::<MediaUrl>(r, o, "iso_url");
    let sha = b.opt::<Sha256Hex>(r, o, "iso_sha256");
    let order = b
        .kw::<BootOrderKw>(r, o, "order")
        .map(Into::into)
        .unwrap_or_default();
    let iso = match (b.has("iso"), b.has("iso_url"), b.has("iso_sha256")) {
        (true, false, false) => lib.map(IsoSource::Library),
        (false, true, _) | (false, false, true) => {
            if !b.has("iso_url") {
                b.error(
                    r,
                    "iso_url",
                    "iso_sha256 without iso_url: say where the ISO is",
                );
            } else if !b.has("iso_sha256") {
                b.error(
                    r,
                    "iso_sha256",
                    "an ISO URL needs its sha256 (iso_sha256): nothing unchecked is booted",
                );
            }
            match (url, sha) {
                (Some(url), Some(sha256)) => Some(IsoSource::Url { url, sha256 }),
                _ => None,
            }
        }
        (true, _, _) => {
            b.error(
                r,
                "iso",
                "either a library ISO (iso) or your own (iso_url and iso_sha256), not both",
            );
            None
        }
        (false, false, false) => {
            b.error(
                r,
                "iso",
                "[boot] names no ISO: set iso, or iso_url and iso_sha256",
            );
            None
        }
    };
    b.finish(r);
    iso.map(|iso| Boot { iso, order })
}

/// `[[traffic_block]]`: the traffic blocks bought, each `{ period, size, invoice }`; an invoice
/// sells one block.
fn parse_traffic_blocks(r: &mut Reader<'_>, o: &mut Origin, v: &Obj<'_>) -> Vec<TrafficBlock> {
    let mut out: Vec<TrafficBlock> = Vec::new();
    for (i, (t, span)) in super::table_list(r, v.table(), "traffic_block")
        .into_iter()
        .enumerate()
    {
        let b = Obj::new(t, format!("traffic_block[{i}]."), span, TRAFFIC_BLOCK_KEYS);
        let period = b.req::<chrono::NaiveDate>(r, o, "period");
        let size = b.req::<Size>(r, o, "size");
        let invoice = b.req::<crate::policy::InvoiceNumber>(r, o, "invoice");
        if size == Some(Size(0)) {
            b.error(r, "size", "must be more than 0");
        }
        b.finish(r);
        let (Some(period), Some(size), Some(invoice)) = (period, size, invoice) else {
            continue;
        };
        if out.iter().any(|x| x.invoice == invoice) {
            b.error(
                r,
                "invoice",
                format!("invoice {invoice} is recorded for another traffic block already"),
            );
            continue;
        }
        out.push(TrafficBlock {
            period,
            size,
            invoice,
        });
    }
    out
}

/// `[monitor]`: where alerts go and which service checks run. A check is a service name
/// (`"ssh"`) or a table (`{ service = "http", address = "192.0.2.10", port = 8080,
/// timeout_secs = 10 }`); its address must be one the VPS owns, so the collector never probes
/// someone else's machine.
fn parse_monitor(r: &mut Reader<'_>, o: &mut Origin, v: &Obj<'_>, ips: &[VpsAddr]) -> Monitor {
    let mut monitor = Monitor::default();
    if let Some(m) = v.sub(r, o, "monitor", &["alert_email", "checks"]) {
        monitor.alert_email = m.opt(r, o, "alert_email");
        monitor.checks = m
            .list::<ServiceCheck>(r, o, "checks")
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| match c.address {
                Some(ip) if !ips.iter().any(|a| a.contains(ip)) => {
                    let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
                    let field = format!("{}[{i}]", m.field("checks"));
                    let span = m
                        .table()
                        .get("checks")
                        .and_then(|it| it.as_array())
                        .and_then(|a| a.get(i))
                        .and_then(toml_edit::Value::span)
                        .or_else(|| m.span_of("checks"));
                    r.error(
                        span,
                        &field,
                        format!(
                            "{ip} is not an address of this VPS (its addresses: {}): a check probes only the VPS's own addresses",
                            if list.is_empty() {
                                "none".to_owned()
                            } else {
                                list.join(", ")
                            }
                        ),
                    );
                    None
                }
                _ => Some(c),
            })
            .collect();
        if !monitor.checks.is_empty() && ips.is_empty() {
            m.error(
                r,
                "checks",
                "this VPS has no address to check: give it `ips` or remove the checks",
            );
        }
        m.finish(r);
    }
    monitor
}

/// `[ptr]`: reverse DNS names by address (`"66.255.255.34" = "mail.example.net"`). Each key is
/// an address the VPS owns (one of its IPv4 addresses, or inside one of its /64s) and each
/// value a host name; every bad entry is an error at its own line.
fn parse_ptr(
    r: &mut Reader<'_>,
    o: &mut Origin,
    v: &Obj<'_>,
    ips: &[VpsAddr],
) -> BTreeMap<IpAddr, Hostname> {
    let mut out = BTreeMap::new();
    let Some(item) = v.table().get("ptr").filter(|i| !i.is_none()) else {
        return out;
    };
    let Some(t) = item.as_table_like() else {
        v.error(
            r,
            "ptr",
            "expected a table of addresses to host names, like { \"192.0.2.10\" = \"mail.example.net\" }",
        );
        return out;
    };
    o.record("ptr", r.src.pos_of(v.span_of("ptr")));
    for (key, item) in t.iter() {
        let field = format!("ptr.\"{}\"", key.escape_debug());
        let key_span = t
            .key(key)
            .and_then(toml_edit::Key::span)
            .or_else(|| item.span());
        let vspan = item.span().or_else(|| key_span.clone());
        o.record(&field, r.src.pos_of(vspan.clone()));
        let ip = match key.parse::<IpAddr>() {
            Err(_) => {
                r.error(
                    key_span,
                    &field,
                    format!("`{}` is not an IP address", key.escape_debug()),
                );
                None
            }
            Ok(ip) if !ips.iter().any(|a| a.contains(ip)) => {
                let list: Vec<String> = ips.iter().map(ToString::to_string).collect();
                r.error(
                    key_span,
                    &field,
                    format!(
                        "{ip} is not an address of this VPS (its addresses: {})",
                        if list.is_empty() {
                            "none".to_owned()
                        } else {
                            list.join(", ")
                        }
                    ),
                );
                None
            }
            Ok(ip) if out.contains_key(&ip) => {
                r.error(key_span, &field, format!("{ip} is named twice in [ptr]"));
                None
            }
            Ok(ip) => Some(ip),
        };
        let name = match item.as_str().map(str::parse::<Hostname>) {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => {
                r.error(vspan, &field, e);
                None
            }
            None => {
                r.error(
                    vspan,
                    &field,
                    "expected a host name like \"mail.example.net\"",
                );
                None
            }
        };
        if let (Some(ip), Some(name)) = (ip, name) {
            out.insert(ip, name);
        }
    }
    out
}
