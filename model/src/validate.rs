//! Cross-file rules: references, address plans, capacity and dates.
//! Each rule reports at the field that breaks it; entities that failed to load are not blamed twice.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv6Net;

use crate::diag::Diagnostic;
use crate::inventory::*;
use crate::load::Broken;
use crate::values::{Size, State, VpsAddr};

/// Runs every cross-file rule over a loaded inventory.
pub(crate) fn validate(inv: &Inventory, broken: &Broken) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    products(inv, broken, &mut out);
    customers(inv, broken, &mut out);
    pools(inv, &mut out);
    nodes(inv, broken, &mut out);
    vps_refs(inv, broken, &mut out);
    addresses(inv, broken, &mut out);
    capacity(inv, &mut out);
    forward_ports(inv, broken, &mut out);
    customer_emails(inv, &mut out);
    backups(inv, broken, &mut out);
    restores(inv, broken, &mut out);
    snapshots(inv, &mut out);
    guest_types(inv, &mut out);
    boot_media(inv, broken, &mut out);
    rescue(inv, broken, &mut out);
    out
}

/// A VPS's Xen guest type (its own or its plan's; the node's default is checked with the node
/// file) must be one its node can run (`[xen] virt_caps`); a VPS on a KVM node names none.
fn guest_types(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    for v in inv.vps.values().filter(|v| v.holds_resources()) {
        let Some(node) = inv.nodes.get(&v.node) else {
            continue;
        };
        let Some(xen) = &node.xen else {
            if v.guest_type.is_some() {
                out.push(v.origin.diag(
                    "guest_type",
                    format!(
                        "only for VPSes on Xen nodes (node `{}` runs \"{}\"); remove it",
                        node.id, node.hypervisor
                    ),
                ));
            }
            continue;
        };
        let Some(t) = inv.guest_type_of(v) else {
            continue;
        };
        if xen.runs(t) {
            continue;
        }
        let from_plan = inv.resources_of(v).and_then(|r| r.guest_type).is_some();
        let (field, whose) = if v.guest_type.is_some() {
            ("guest_type", String::new())
        } else if from_plan {
            (
                "product",
                format!(" (the guest_type of plan `{}`)", v.product),
            )
        } else {
            // The node's own default: its file reports it.
            continue;
        };
        out.push(v.origin.diag(
            field,
            format!(
                "guest type \"{t}\"{whose} cannot run on node `{}`: its virt_caps [{}] lack {}",
                node.id,
                xen.virt_caps.as_deref().unwrap_or_default().join(" "),
                t.requirement(),
            ),
        ));
    }
}

/// A VPS's `[boot]` names an ISO of the library, on a node that can boot it (HVM).
fn boot_media(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    use crate::media::IsoSource;
    for v in inv.vps.values() {
        let Some(boot) = &v.boot else {
            continue;
        };
        if broken.vps.contains(v.id.as_str()) {
            continue;
        }
        let field =
            match &boot.iso {
                IsoSource::Library(id) => {
                    if !inv.settings.boot.library.iter().any(|e| &e.id == id) {
                        let known: Vec<&str> = inv
                            .settings
                            .boot
                            .library
                            .iter()
                            .map(|e| e.id.as_str())
                            .collect();
                        out.push(v.origin.diag(
                        "boot.iso",
                        format!(
                            "ISO `{id}` is not in the library ([[iso]] in gitvps.toml; it has: {})",
                            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                        ),
                    ));
                    }
                    "boot.iso"
                }
                IsoSource::Url { .. } => "boot.iso_url",
            };
        if let Some(why) = inv
            .nodes
            .get(&v.node)
            .and_then(crate::media::iso_unsupported)
        {
            out.push(v.origin.diag(field, why));
        }
    }
}

/// `rescue = true` on a node that cannot boot the rescue system.
fn rescue(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    for v in inv.vps.values().filter(|v| v.rescue) {
        if broken.vps.contains(v.id.as_str()) {
            continue;
        }
        if let Some(why) = inv
            .nodes
            .get(&v.node)
            .and_then(crate::media::rescue_unsupported)
        {
            out.push(v.origin.diag("rescue", why));
        }
    }
}

/// Backups need a repository in `gitvps.toml`, and a VPS's `[backup]` must leave a policy
/// that keeps what it takes.
fn backups(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    use crate::backup::Frequency;
    let no_repo = inv.settings.backup.repository.is_none();
    let why = "backups are on but gitvps.toml has no restic repository: add [backup.local], [backup.sftp] or [backup.s3] (see docs/backup.md)";
    for p in inv.products.values() {
        if no_repo
            && p.resources()
                .is_some_and(|r| r.backup.schedule.every != Frequency::Off)
        {
            out.push(p.origin.diag("backup.every", why));
        }
    }
    for v in inv.vps.values() {
        if v.backup.is_empty() || broken.vps.contains(v.id.as_str()) || !v.holds_resources() {
            continue;
        }
        let (Some(plan), Some(policy)) = (inv.resources_of(v), inv.backup_policy_of(v)) else {
            continue;
        };
        if policy.schedule.every == Frequency::Off {
            continue;
        }
        let k = policy.keep;
        if k.daily == 0 && k.weekly == 0 && k.monthly == 0 {
            out.push(v.origin.diag(
                "backup",
                "backups are taken but none is kept: keep_daily, keep_weekly or keep_monthly must be at least 1",
            ));
        } else if no_repo && plan.backup.schedule.every == Frequency::Off {
            out.push(v.origin.diag("backup.every", why));
        }
    }
}

/// A VPS's `[[snapshot]]`s: at most its limit, on storage that can take them, and a
/// `[revert]` naming one of them.
fn snapshots(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    for v in inv.vps.values().filter(|v| v.holds_resources()) {
        let s = &v.snapshots;
        if inv.resources_of(v).is_none() {
            continue;
        }
        let limit = inv.snapshot_limit_of(v);
        if s.list.len() > limit as usize {
            let whose = if s.limit.is_some() {
                "its snapshot_limit".to_owned()
            } else {
                format!("the snapshot_limit of plan `{}`", v.product)
            };
            out.push(v.origin.diag(
                &format!(
                    "snapshot[{}].name",
                    s.at.get(limit as usize).copied().unwrap_or(0)
                ),
                format!(
                    "{} snapshots declared, {whose} allows {limit}: delete one first",
                    s.list.len()
                ),
            ));
        }
        if let Some(node) = inv.nodes.get(&v.node)
            && !s.list.is_empty()
            && inv.snapshot_space_of(v).is_none()
        {
            out.push(v.origin.diag(
                &format!("snapshot[{}].name", s.at.first().copied().unwrap_or(0)),
                format!(
                    "node `{}` stores raw image files, which have no snapshots (LVM storage and qcow2 images do; see docs/snapshots.md)",
                    node.id
                ),
            ));
        }
        if let Some(r) = &s.revert
            && !s.has(&r.snapshot)
        {
            out.push(v.origin.diag(
                "revert.snapshot",
                format!(
                    "no snapshot `{}` is declared ([[snapshot]] name): a revert needs the snapshot it goes back to",
                    r.snapshot
                ),
            ));
        }
    }
}

/// A VPS's `[restore]` needs a repository, and restores a backup of itself or of another VPS
/// of the same customer (`from`): never one of another customer's.
fn restores(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    for v in inv.vps.values() {
        let Some(r) = &v.restore else { continue };
        if inv.settings.backup.repository.is_none() {
            out.push(v.origin.diag(
                "restore",
                "a restore needs the restic repository of gitvps.toml's [backup] (see docs/backup.md)",
            ));
        }
        let Some(from) = &r.from else { continue };
        if from == &v.id {
            continue;
        }
        match inv.vps.get(from) {
            Some(src) if src.customer == v.customer => {}
            // Another customer's VPS is reported as unknown: its existence is not theirs to learn.
            Some(_) => out.push(v.origin.diag(
                "restore.from",
                format!(
                    "`{from}` is not a VPS of customer {}: a restore takes a backup of one of the customer's own VPSes only",
                    v.customer
                ),
            )),
            None if broken.vps.contains(from.as_str()) => {}
            None => out.push(v.origin.diag(
                "restore.from",
                format!("unknown VPS `{from}`: no inventory/vps/{from}.toml (a destroyed VPS keeps its file and its backups)"),
            )),
        }
    }
}

/// No two customers share an e-mail address (compared case-insensitively): a login by
/// e-mail must name one customer. Reported at the later customer's `email`, naming the first.
fn customer_emails(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<String, &Customer> = HashMap::new();
    for c in inv.customers.values() {
        let Some(email) = &c.email else {
            continue;
        };
        let key = email.as_str().to_lowercase();
        match seen.get(&key) {
            Some(first) => {
                let at = first.origin.diag("email", "");
                out.push(c.origin.diag(
                    "email",
                    format!(
                        "e-mail `{}` is already the address of customer {} ({}:{}); each customer needs its own",
                        email.as_str(),
                        first.id,
                        at.file,
                        at.line
                    ),
                ));
            }
            None => {
                seen.insert(key, c);
            }
        }
    }
}

/// On a KVM node with `network = "user"`, each VPS's SSH is forwarded from
/// `127.0.0.1:(forward_base + last octet of its first IPv4)`: no two may share it.
fn forward_ports(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    for n in inv.nodes.values() {
        let Some(Kvm {
            network: KvmNetwork::User { .. },
            ..
        }) = &n.kvm
        else {
            continue;
        };
        let mut taken: HashMap<u16, &Vps> = HashMap::new();
        for v in inv.vps.values().filter(|v| {
            v.node == n.id && v.holds_resources() && !broken.vps.contains(v.id.as_str())
        }) {
            let Some(port) = n.forward_port(v) else {
                continue;
            };
            match taken.get(&port) {
                Some(first) => {
                    let i = v
                        .ips
                        .iter()
                        .position(|a| matches!(a, VpsAddr::V4(_)))
                        .unwrap_or_default();
                    out.push(v.origin.diag(
                        &format!("ips[{i}]"),
                        format!(
                            "its SSH forward port 127.0.0.1:{port} is already {}'s on node {} (the last octet of the first IPv4 decides it)",
                            first.id, n.id
                        ),
                    ));
                }
                None => {
                    taken.insert(port, v);
                }
            }
        }
    }
}

fn products(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    let decimals = inv.currency.minor_units();
    for p in inv.products.values() {
        for (field, m) in [
            ("price", p.price),
            ("setup_fee", p.setup_fee),
            ("commission", p.commission),
        ] {
            if m.amount().normalize().scale() > decimals {
                out.push(p.origin.diag(
                    field,
                    format!(
                        "{m} has more decimals than {} amounts have ({decimals})",
                        inv.currency
                    ),
                ));
            }
        }
        let ProductKind::Renewal { renews } = &p.kind else {
            continue;
        };
        let field = "renews";
        match inv.products.get(renews) {
            None if !broken.product(renews.as_str()) => out.push(p.origin.diag(
                field,
                format!(
                    "unknown product `{renews}`{}",
                    did_you_mean(renews.as_str(), inv.products.keys().map(|k| k.as_str()))
                ),
            )),
            Some(target) if target.traffic_block().is_some() => out.push(p.origin.diag(
                field,
                format!("`{renews}` is a traffic block; a renewal must name the plan it renews"),
            )),
            Some(target) if target.resources().is_none() => out.push(p.origin.diag(
                field,
                format!("`{renews}` is itself a renewal; a renewal must name the plan it renews"),
            )),
            _ => {}
        }
    }
}

fn pools(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    let pools: Vec<&Pool> = inv.pools.values().collect();
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            if a.network.contains(&b.network.network()) || b.network.contains(&a.network.network())
            {
                out.push(b.origin.diag(
                    "network",
                    format!("{} overlaps pool `{}` ({})", b.network, a.id, a.network),
                ));
            }
            if let (Some(x), Some(y)) = (a.ipv6, b.ipv6)
                && (x.contains(&y.network()) || y.contains(&x.network()))
            {
                out.push(
                    b.origin
                        .diag("ipv6", format!("{y} overlaps pool `{}` ({x})", a.id)),
                );
            }
        }
        for (j, r) in a.reserved.iter().enumerate() {
            if !a.network.contains(&r.first) || !a.network.contains(&r.last) {
                out.push(a.origin.diag(
                    &format!("reserved[{j}]"),
                    format!("{r} is outside the pool's network {}", a.network),
                ));
            }
        }
    }
}

fn nodes(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    for n in inv.nodes.values() {
        if let crate::values::Host::Ip(std::net::IpAddr::V4(ip)) = n.address
            && let Some(pool) = inv.pools.values().find(|p| p.network.contains(&ip))
            && pool.unusable(ip).is_none()
        {
            out.push(n.origin.diag(
                "address",
                format!(
                    "the node's address {ip} lies in pool `{}` ({}) but is not reserved there; add it to the pool's `reserved` so no VPS is given it",
                    pool.id, pool.network
                ),
            ));
        }
        for (i, p) in n.pools.iter().enumerate() {
            if !inv.pools.contains_key(p) && !broken.pool(p.as_str()) {
                out.push(n.origin.diag(
                    &format!("pools[{i}]"),
                    format!(
                        "unknown pool `{p}`{}",
                        did_you_mean(p.as_str(), inv.pools.keys().map(|k| k.as_str()))
                    ),
                ));
            }
        }
    }
}

fn did_you_mean<'a>(s: &str, known: impl Iterator<Item = &'a str>) -> String {
    let known: Vec<&str> = known.collect();
    crate::read::suggest(s, &known).map_or_else(String::new, |k| format!(", did you mean `{k}`?"))
}

fn vps_refs(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    for v in inv.vps.values() {
        let o = &v.origin;
        if !inv.customers.contains_key(&v.customer)
            && !broken.customers.contains(v.customer.as_str())
        {
            out.push(o.diag(
                "customer",
                format!(
                    "unknown customer `{}`{}",
                    v.customer,
                    did_you_mean(
                        v.customer.as_str(),
                        inv.customers.keys().map(|k| k.as_str())
                    )
                ),
            ));
        }
        match inv.products.get(&v.product) {
            None if !broken.product(v.product.as_str()) => out.push(o.diag(
                "product",
                format!(
                    "unknown product `{}`{}",
                    v.product,
                    did_you_mean(v.product.as_str(), inv.products.keys().map(|k| k.as_str()))
                ),
            )),
            Some(p) => {
                if let ProductKind::Renewal { renews } = &p.kind {
                    out.push(o.diag("product", format!("`{}` is a renewal product; a VPS is on the plan it renews (`{renews}`)", v.product)));
                }
                if p.traffic_block().is_some() {
                    out.push(o.diag(
                        "product",
                        format!("`{}` is a traffic block; a VPS is on a plan", v.product),
                    ));
                }
            }
            None => {}
        }
        for (i, b) in v.traffic_blocks.iter().enumerate() {
            let reset = inv.settings.traffic.reset;
            let start = crate::usage::period(reset, v.created, b.period).map(|p| p.start);
            if start != Some(b.period) {
                out.push(o.diag(
                    &format!("traffic_block[{i}].period"),
                    format!(
                        "{} is not the first day of a traffic period of this VPS (`[traffic] reset = \"{}\"`{})",
                        b.period,
                        crate::values::Keyword::as_str(reset),
                        start.map_or(String::new(), |s| format!(": the period holding it starts {s}"))
                    ),
                ));
            }
        }
        if !inv.nodes.contains_key(&v.node) && !broken.nodes.contains(v.node.as_str()) {
            out.push(o.diag(
                "node",
                format!(
                    "unknown node `{}`{}",
                    v.node,
                    did_you_mean(v.node.as_str(), inv.nodes.keys().map(|k| k.as_str()))
                ),
            ));
        }
        if v.expires < v.created {
            out.push(o.diag(
                "expires",
                format!("{} is before `created` ({})", v.expires, v.created),
            ));
        }
        match (v.destroyed, v.state) {
            (Some(_), State::Active | State::Suspended) => {
                out.push(o.diag("destroyed", format!("only a VPS with state = \"destroyed\" has a destruction date (state is \"{}\")", v.state)));
            }
            (Some(d), State::Destroyed) if d < v.created => {
                out.push(o.diag(
                    "destroyed",
                    format!("{d} is before `created` ({})", v.created),
                ));
            }
            _ => {}
        }
        for (field, set) in [
            ("suspension", v.suspension.is_some()),
            ("suspended", v.suspended.is_some()),
        ] {
            if set && v.state != State::Suspended {
                out.push(o.diag(
                    field,
                    format!(
                        "only a VPS with state = \"suspended\" has `{field}` (state is \"{}\")",
                        v.state
                    ),
                ));
            }
        }
        if let Some(d) = v.suspended.filter(|d| *d < v.created) {
            out.push(o.diag(
                "suspended",
                format!("{d} is before `created` ({})", v.created),
            ));
        }
        if v.state != State::Destroyed
            && v.ipv4().next().is_none()
            && !broken.vps.contains(v.id.as_str())
        {
            out.push(o.diag("ips", "a VPS needs at least one IPv4 address"));
        }
    }
}

/// A customer's reseller is another customer.
fn customers(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    for c in inv.customers.values() {
        let Some(reseller) = &c.reseller else {
            continue;
        };
        if reseller == &c.id {
            out.push(
                c.origin
                    .diag("reseller", "a customer cannot be its own reseller"),
            );
        } else if !inv.customers.contains_key(reseller)
            && !broken.customers.contains(reseller.as_str())
        {
            out.push(c.origin.diag(
                "reseller",
                format!(
                    "unknown customer `{reseller}`{}",
                    did_you_mean(
                        reseller.as_str(),
                        inv.customers
                            .keys()
                            .filter(|k| *k != &c.id)
                            .map(|k| k.as_str())
                    )
                ),
            ));
        }
    }
}

/// Where an address was first seen, for duplicate errors.
struct Seen<'a> {
    vps: &'a str,
    file: &'a str,
    line: u32,
    field: String,
}

fn addresses(inv: &Inventory, broken: &Broken, out: &mut Vec<Diagnostic>) {
    let mut seen: HashMap<VpsAddr, Seen<'_>> = HashMap::with_capacity(inv.vps.len() * 2);
    // Files that failed to load still hold their addresses.
    for c in &broken.claims {
        seen.entry(c.addr).or_insert(Seen {
            vps: &c.vps,
            file: &c.file,
            line: c.line,
            field: String::new(),
        });
    }
    for v in inv.vps.values().filter(|v| v.holds_resources()) {
        let node = inv.nodes.get(&v.node);
        let node_pools: Vec<&Pool> = node
            .map(|n| n.pools.iter().filter_map(|p| inv.pools.get(p)).collect())
            .unwrap_or_default();
        for (i, addr) in v.ips.iter().enumerate() {
            let field = format!("ips[{i}]");
            if let Some(n) = node {
                match addr {
                    VpsAddr::V4(ip) => check_v4(n, &node_pools, *ip, v, &field, out),
                    VpsAddr::V6(net) => check_v6(n, &node_pools, *net, v, &field, out),
                }
            }
            match seen.get(addr) {
                Some(first) if first.vps == v.id.as_str() && !first.field.is_empty() => {
                    out.push(v.origin.diag(
                        &field,
                        format!("{addr} is listed twice (also {})", first.field),
                    ));
                }
                Some(first) => out.push(v.origin.diag(
                    &field,
                    format!(
                        "{addr} is already used by {} ({}:{})",
                        first.vps, first.file, first.line
                    ),
                )),
                None => {
                    let line = v.origin.pos(&field).line;
                    seen.insert(
                        *addr,
                        Seen {
                            vps: v.id.as_str(),
                            file: v.origin.file(),
                            line,
                            field,
                        },
                    );
                }
            }
        }
    }
}

fn pools_text(pools: &[&Pool], f: impl Fn(&Pool) -> Option<String>) -> String {
    let parts: Vec<String> = pools
        .iter()
        .filter_map(|p| f(p).map(|net| format!("{}: {net}", p.id)))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

fn check_v4(
    node: &Node,
    pools: &[&Pool],
    ip: Ipv4Addr,
    v: &Vps,
    field: &str,
    out: &mut Vec<Diagnostic>,
) {
    let Some(pool) = pools.iter().find(|p| p.network.contains(&ip)) else {
        if pools.len() == node.pools.len() {
            out.push(v.origin.diag(
                field,
                format!(
                    "{ip} is outside the pools of {} ({})",
                    node.id,
                    pools_text(pools, |p| Some(p.network.to_string()))
                ),
            ));
        }
        return;
    };
    let why = match pool.unusable(ip) {
        None | Some(Unusable::Outside) => return,
        Some(Unusable::Network) => "the network address of",
        Some(Unusable::Broadcast) => "the broadcast address of",
        Some(Unusable::Gateway) => "the gateway of",
        Some(Unusable::Reserved) => "reserved in",
        Some(Unusable::Dns) => "a DNS resolver of",
    };
    out.push(v.origin.diag(
        field,
        format!("{ip} is {why} pool `{}` ({})", pool.id, pool.network),
    ));
}

fn check_v6(
    node: &Node,
    pools: &[&Pool],
    net: Ipv6Net,
    v: &Vps,
    field: &str,
    out: &mut Vec<Diagnostic>,
) {
    if pools
        .iter()
        .any(|p| p.ipv6.is_some_and(|pre| pre.contains(&net)))
        || pools.len() != node.pools.len()
    {
        return;
    }
    out.push(v.origin.diag(
        field,
        format!(
            "{net} is outside the IPv6 prefixes of {} ({})",
            node.id,
            pools_text(pools, |p| p.ipv6.map(|x| x.to_string()))
        ),
    ));
}

fn vcpus(n: u64) -> String {
    if n == 1 {
        "1 vCPU".to_owned()
    } else {
        format!("{n} vCPUs")
    }
}

fn capacity(inv: &Inventory, out: &mut Vec<Diagnostic>) {
    for (id, used) in inv.usage() {
        let Some(n) = inv.nodes.get(id) else { continue };
        let sell = n.sellable();
        let mut over = |field: &str,
                        what: &str,
                        used: String,
                        cap: String,
                        have: String,
                        ratio: crate::values::Ratio| {
            out.push(n.origin.diag(field, format!(
                "{what} overcommitted: its VPSes take {used}, the node has {have} (× {ratio} overcommit = {cap}); move VPSes or declare `overcommit.{}`",
                field.trim_start_matches("capacity.")
            )));
        };
        if used.ram > sell.ram.0 {
            over(
                "capacity.ram",
                "RAM is",
                Size(used.ram).to_string(),
                sell.ram.to_string(),
                n.capacity.ram.to_string(),
                n.overcommit.ram,
            );
        }
        if used.disk > sell.disk.0 {
            let taken = if used.snapshots > 0 {
                format!(
                    "{} ({} of it reserved for snapshots)",
                    Size(used.disk),
                    Size(used.snapshots)
                )
            } else {
                Size(used.disk).to_string()
            };
            over(
                "capacity.disk",
                "disk is",
                taken,
                sell.disk.to_string(),
                n.capacity.disk.to_string(),
                n.overcommit.disk,
            );
        }
        if used.vcpus > u64::from(sell.vcpus) {
            over(
                "capacity.vcpus",
                "vCPUs are",
                vcpus(used.vcpus),
                vcpus(sell.vcpus.into()),
                vcpus(n.capacity.vcpus.into()),
                n.overcommit.vcpus,
            );
        }
    }
}
