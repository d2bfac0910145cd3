//! `gitvps inventory`: what the fleet holds and what is left, as tables or JSON.
//! Nodes (used and free RAM, disk, vCPUs, IPs), pools, products with renewals, expiring VPSes,
//! and the fleet view (per location and node, with the last apply from the status branch).

use std::collections::HashSet;

use chrono::NaiveDate;
use clap::{Args, ValueEnum};
use model::values::{Size, State};
use model::{Inventory, ProductKind};
use serde::Serialize;

use super::Global;
use crate::table::Table;

/// Which tables to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// Nodes and their capacity.
    Nodes,
    /// IP pools and their free addresses.
    Pools,
    /// The catalog with renewals.
    Products,
    /// VPSes expiring within `--days`.
    Expiring,
    /// Per location and node: VPSes by state, RAM, disk and vCPUs committed against capacity,
    /// free addresses per pool, the last apply and its result (from the status branch). Only
    /// when asked for.
    Fleet,
}

/// Flags of `gitvps inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Show only these tables (all but `fleet` by default).
    #[arg(value_enum)]
    pub sections: Vec<Section>,
    /// The window for the expiring table, in days.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Evaluate expiry as of this date (today by default), YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<NaiveDate>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// One node's row.
#[derive(Debug, Serialize)]
pub struct NodeRow {
    /// Node id.
    pub node: String,
    /// Location.
    pub location: String,
    /// Hypervisor.
    pub hypervisor: String,
    /// VPSes holding resources.
    pub vps: u64,
    /// RAM used, bytes.
    pub ram_used: u64,
    /// RAM that may be sold (after overcommit), bytes.
    pub ram_sellable: u64,
    /// Disk used, bytes.
    pub disk_used: u64,
    /// Disk that may be sold, bytes.
    pub disk_sellable: u64,
    /// vCPUs used.
    pub vcpus_used: u64,
    /// vCPUs that may be sold.
    pub vcpus_sellable: u32,
    /// IPv4 addresses in use.
    pub ipv4_used: u64,
    /// IPv4 addresses left in its pools.
    pub ipv4_free: u64,
    /// In maintenance.
    pub maintenance: bool,
}

/// One pool's row.
#[derive(Debug, Serialize)]
pub struct PoolRow {
    /// Pool id.
    pub pool: String,
    /// Location.
    pub location: String,
    /// Network.
    pub network: String,
    /// Netmask.
    pub netmask: String,
    /// Gateway.
    pub gateway: String,
    /// Addresses in use.
    pub used: u64,
    /// Addresses left.
    pub free: u64,
    /// IPv6 prefix.
    pub ipv6: Option<String>,
}

/// One product's row.
#[derive(Debug, Serialize)]
pub struct ProductRow {
    /// Product id.
    pub product: String,
    /// Name.
    pub name: String,
    /// The plan it renews, for a renewal.
    pub renews: Option<String>,
    /// Months per period.
    pub period_months: u32,
    /// Price.
    pub price: String,
    /// Setup fee.
    pub setup_fee: String,
    /// Disk.
    pub disk: Option<String>,
    /// RAM.
    pub ram: Option<String>,
    /// vCPUs.
    pub vcpus: Option<u32>,
    /// Monthly traffic.
    pub traffic: Option<String>,
    /// Hidden from the public catalog.
    pub private: bool,
}

/// One expiring VPS.
#[derive(Debug, Serialize)]
pub struct ExpiringRow {
    /// VPS id.
    pub vps: String,
    /// Customer.
    pub customer: String,
    /// Plan.
    pub product: String,
    /// Node.
    pub node: String,
    /// Expiry date.
    pub expires: NaiveDate,
    /// Days from the evaluation date (negative: already expired).
    pub days_left: i64,
    /// Contract state.
    pub state: String,
}

/// The last apply on a node, as the status branch has it.
#[derive(Debug, Serialize)]
pub struct LastApply {
    /// When it ended.
    pub at: chrono::DateTime<chrono::Utc>,
    /// How: applied, no_changes, failed, unreachable, refused.
    pub result: executor::status::ApplyResult,
    /// Steps carried out.
    pub steps: usize,
    /// The failure, refusal or why the node did not answer.
    pub message: Option<String>,
    /// What the last drift check found changed outside gitvps.
    pub drift: usize,
}

/// Free addresses of one pool of a node.
#[derive(Debug, Serialize)]
pub struct PoolFree {
    /// The pool.
    pub pool: String,
    /// IPv4 addresses left.
    pub free: u64,
}

/// One node in the fleet view.
#[derive(Debug, Serialize)]
pub struct FleetRow {
    /// Location.
    pub location: String,
    /// Node id.
    pub node: String,
    /// Hypervisor.
    pub hypervisor: String,
    /// In maintenance (no new placements).
    pub maintenance: bool,
    /// VPSes by state: `running` and `stopped` (active, by power), `suspended`, `destroyed`.
    pub vps: std::collections::BTreeMap<&'static str, u64>,
    /// RAM committed to VPSes, bytes.
    pub ram_committed: u64,
    /// The node's RAM.
    pub ram_capacity: u64,
    /// RAM that may be sold (with overcommit).
    pub ram_sellable: u64,
    /// Disk committed, bytes.
    pub disk_committed: u64,
    /// The node's disk.
    pub disk_capacity: u64,
    /// Disk that may be sold.
    pub disk_sellable: u64,
    /// vCPUs committed.
    pub vcpus_committed: u64,
    /// The node's vCPUs.
    pub vcpus_capacity: u32,
    /// vCPUs that may be sold.
    pub vcpus_sellable: u32,
    /// Free IPv4 addresses in each of its pools.
    pub pools: Vec<PoolFree>,
    /// The last apply, when the status branch has one.
    pub last_apply: Option<LastApply>,
}

/// The fleet view: one row per node, by location then node id.
pub fn fleet_rows(
    inv: &Inventory,
    last: &std::collections::BTreeMap<model::NodeId, executor::status::NodeStatus>,
) -> Vec<FleetRow> {
    use model::values::Power;
    let usage = inv.usage();
    let used_v4 = used_ipv4(inv);
    let mut rows: Vec<FleetRow> = inv
        .nodes
        .values()
        .map(|n| {
            let u = usage.get(&n.id).copied().unwrap_or_default();
            let sell = n.sellable();
            let mut vps = std::collections::BTreeMap::new();
            for v in inv.vps.values().filter(|v| v.node == n.id) {
                let key = match (v.state, v.power) {
                    (State::Active, Power::Running) => "running",
                    (State::Active, Power::Stopped) => "stopped",
                    (State::Suspended, _) => "suspended",
                    (State::Destroyed, _) => "destroyed",
                };
                *vps.entry(key).or_insert(0) += 1;
            }
            FleetRow {
                location: n.location.clone(),
                node: n.id.to_string(),
                hypervisor: n.hypervisor.to_string(),
                maintenance: n.maintenance,
                vps,
                ram_committed: u.ram,
                ram_capacity: n.capacity.ram.bytes(),
                ram_sellable: sell.ram.bytes(),
                disk_committed: u.disk,
                disk_capacity: n.capacity.disk.bytes(),
                disk_sellable: sell.disk.bytes(),
                vcpus_committed: u.vcpus,
                vcpus_capacity: n.capacity.vcpus,
                vcpus_sellable: sell.vcpus,
                pools: n
                    .pools
                    .iter()
                    .filter_map(|p| inv.pools.get(p))
                    .map(|p| PoolFree {
                        pool: p.id.to_string(),
                        free: free_in_pool(p, &used_v4),
                    })
                    .collect(),
                last_apply: last.get(&n.id).map(|s| LastApply {
                    at: s.applied_at,
                    result: s.result,
                    steps: s.steps,
                    message: s.message.clone(),
                    drift: s.drift.len(),
                }),
            }
        })
        .collect();
    rows.sort_by(|a, b| (&a.location, &a.node).cmp(&(&b.location, &b.node)));
    rows
}

/// `committed / capacity`, with the sellable amount when overcommit raises it.
fn committed(used: String, capacity: String, sellable: Option<String>) -> String {
    match sellable {
        Some(s) => format!("{used} / {capacity} (sells {s})"),
        None => format!("{used} / {capacity}"),
    }
}

/// The fleet view as text: a table per location.
pub fn render_fleet(rows: &[FleetRow]) -> String {
    let mut out = String::from("Fleet\n");
    let mut first = true;
    let mut locations: Vec<&str> = rows.iter().map(|r| r.location.as_str()).collect();
    locations.dedup();
    for loc in locations {
        let mut t = Table::new(&[
            "NODE",
            "HV",
            "VPS",
            ">RAM COMMITTED / CAPACITY",
            ">DISK COMMITTED / CAPACITY",
            ">VCPUS",
            "FREE IPV4",
            "LAST APPLY",
        ]);
        for r in rows.iter().filter(|r| r.location == loc) {
            let vps = if r.vps.is_empty() {
                "none".to_owned()
            } else {
                r.vps
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let more = |sell: u64, cap: u64| (sell != cap).then(|| human(sell));
            let last = match &r.last_apply {
                None => "none recorded".to_owned(),
                Some(l) => {
                    let mut s = format!(
                        "{} {}",
                        l.at.format("%Y-%m-%d %H:%M UTC"),
                        l.result.as_str()
                    );
                    if l.steps > 0 {
                        s.push_str(&format!(" ({} step(s))", l.steps));
                    }
                    if l.drift > 0 {
                        s.push_str(&format!("; {} change(s) outside gitvps", l.drift));
                    }
                    s
                }
            };
            t.row(vec![
                if r.maintenance {
                    format!("{} (maintenance)", r.node)
                } else {
                    r.node.clone()
                },
                r.hypervisor.clone(),
                vps,
                committed(
                    human(r.ram_committed),
                    human(r.ram_capacity),
                    more(r.ram_sellable, r.ram_capacity),
                ),
                committed(
                    human(r.disk_committed),
                    human(r.disk_capacity),
                    more(r.disk_sellable, r.disk_capacity),
                ),
                committed(
                    r.vcpus_committed.to_string(),
                    r.vcpus_capacity.to_string(),
                    (r.vcpus_sellable != r.vcpus_capacity).then(|| r.vcpus_sellable.to_string()),
                ),
                r.pools
                    .iter()
                    .map(|p| format!("{} {}", p.pool, p.free))
                    .collect::<Vec<_>>()
                    .join(", "),
                last,
            ]);
        }
        if !std::mem::take(&mut first) {
            out.push('\n');
        }
        out.push_str(&format!("{loc}\n{}", t.render()));
    }
    out
}

/// Node rows, by node id.
pub fn node_rows(inv: &Inventory) -> Vec<NodeRow> {
    let usage = inv.usage();
    let used_v4 = used_ipv4(inv);
    inv.nodes
        .values()
        .map(|n| {
            let u = usage.get(&n.id).copied().unwrap_or_default();
            let sell = n.sellable();
            let ipv4_free = n
                .pools
                .iter()
                .filter_map(|p| inv.pools.get(p))
                .map(|p| free_in_pool(p, &used_v4))
                .sum();
            NodeRow {
                node: n.id.to_string(),
                location: n.location.clone(),
                hypervisor: n.hypervisor.to_string(),
                vps: u.vps,
                ram_used: u.ram,
                ram_sellable: sell.ram.bytes(),
                disk_used: u.disk,
                disk_sellable: sell.disk.bytes(),
                vcpus_used: u.vcpus,
                vcpus_sellable: sell.vcpus,
                ipv4_used: u.ipv4,
                ipv4_free,
                maintenance: n.maintenance,
            }
        })
        .collect()
}

/// The IPv4 addresses of the VPSes that hold resources.
fn used_ipv4(inv: &Inventory) -> HashSet<std::net::Ipv4Addr> {
    inv.vps
        .values()
        .filter(|v| v.holds_resources())
        .flat_map(|v| v.ipv4())
        .collect()
}

fn free_in_pool(p: &model::Pool, used: &HashSet<std::net::Ipv4Addr>) -> u64 {
    p.network
        .hosts()
        .filter(|ip| p.unusable(*ip).is_none() && !used.contains(ip))
        .count() as u64
}

/// Pool rows, by pool id.
pub fn pool_rows(inv: &Inventory) -> Vec<PoolRow> {
    let used_v4 = used_ipv4(inv);
    inv.pools
        .values()
        .map(|p| {
            let free = free_in_pool(p, &used_v4);
            PoolRow {
                pool: p.id.to_string(),
                location: p.location.clone(),
                network: p.network.to_string(),
                netmask: p.netmask().to_string(),
                gateway: p.gateway.to_string(),
                used: p.usable_count() - free,
                free,
                ipv6: p.ipv6.map(|x| x.to_string()),
            }
        })
        .collect()
}

/// Product rows: each plan followed by its renewals, then the traffic blocks (their `traffic`
/// is the block's size).
pub fn product_rows(inv: &Inventory) -> Vec<ProductRow> {
    let row = |p: &model::Product| {
        let r = p.resources();
        ProductRow {
            product: p.id.to_string(),
            name: p.name.clone(),
            renews: match &p.kind {
                ProductKind::Renewal { renews } => Some(renews.to_string()),
                ProductKind::Plan(_) | ProductKind::TrafficBlock { .. } => None,
            },
            period_months: p.period_months,
            price: p.price.to_string(),
            setup_fee: p.setup_fee.to_string(),
            disk: r.map(|r| r.disk.to_string()),
            ram: r.map(|r| r.ram.to_string()),
            vcpus: r.map(|r| r.vcpus),
            traffic: r
                .map(|r| r.traffic)
                .or(p.traffic_block())
                .map(|t| t.to_string()),
            private: p.private,
        }
    };
    let mut out = Vec::new();
    for plan in inv.products.values().filter(|p| p.resources().is_some()) {
        out.push(row(plan));
        out.extend(
            inv.renewals_of(&plan.id)
                .filter(|p| p.id != plan.id)
                .map(row),
        );
    }
    out.extend(
        inv.products
            .values()
            .filter(|p| p.traffic_block().is_some())
            .map(row),
    );
    out
}

/// VPSes (not destroyed) whose expiry is at most `days` after `today`, soonest first.
pub fn expiring_rows(inv: &Inventory, today: NaiveDate, days: u32) -> Vec<ExpiringRow> {
    let until = today + chrono::Days::new(days.into());
    let mut rows: Vec<ExpiringRow> = inv
        .vps
        .values()
        .filter(|v| v.state != State::Destroyed && v.expires <= until)
        .map(|v| ExpiringRow {
            vps: v.id.to_string(),
            customer: v.customer.to_string(),
            product: v.product.to_string(),
            node: v.node.to_string(),
            expires: v.expires,
            days_left: (v.expires - today).num_days(),
            state: v.state.to_string(),
        })
        .collect();
    rows.sort_by(|a, b| (a.expires, &a.vps).cmp(&(b.expires, &b.vps)));
    rows
}

fn used_of(used: u64, sellable: u64) -> String {
    format!("{} / {}", human(used), human(sellable))
}

/// Bytes in the largest binary unit with at most one decimal (`1.5 TiB`).
pub fn human(bytes: u64) -> String {
    let s = Size(bytes);
    let exact = s.to_string();
    if exact.len() <= 9 {
        return exact;
    }
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    for (unit, m) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)] {
        if bytes >= m {
            #[allow(clippy::cast_precision_loss)]
            return format!("{:.1} {unit}", b / m as f64);
        }
    }
    exact
}

/// Runs the command.
pub fn run(g: &Global, a: &InventoryArgs) -> anyhow::Result<i32> {
    let inv = match super::load_or_report(&g.repo, a.json)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let today = a.as_of.unwrap_or_else(|| chrono::Local::now().date_naive());
    let all = a.sections.is_empty();
    let want = |s| (all && s != Section::Fleet) || a.sections.contains(&s);
    let fleet = want(Section::Fleet).then(|| {
        let last = executor::status::read_nodes(&g.repo, &inv.settings.reconciler.status_branch);
        fleet_rows(&inv, &last)
    });
    if a.json {
        let mut out = serde_json::Map::new();
        if let Some(rows) = &fleet {
            out.insert("fleet".into(), serde_json::to_value(rows)?);
        }
        if want(Section::Nodes) {
            out.insert("nodes".into(), serde_json::to_value(node_rows(&inv))?);
        }
        if want(Section::Pools) {
            out.insert("pools".into(), serde_json::to_value(pool_rows(&inv))?);
        }
        if want(Section::Products) {
            out.insert("products".into(), serde_json::to_value(product_rows(&inv))?);
        }
        if want(Section::Expiring) {
            out.insert(
                "expiring".into(),
                serde_json::to_value(expiring_rows(&inv, today, a.days))?,
            );
        }
        super::print_json(&out)?;
        return Ok(0);
    }
    let mut text = render(&inv, today, a.days, &want);
    if let Some(rows) = &fleet {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&render_fleet(rows));
    }
    super::emit(&text)?;
    Ok(0)
}

/// The text tables.
pub fn render(
    inv: &Inventory,
    today: NaiveDate,
    days: u32,
    want: &dyn Fn(Section) -> bool,
) -> String {
    let mut parts = Vec::new();
    if want(Section::Nodes) {
        let mut t = Table::new(&[
            "NODE",
            "LOCATION",
            "HV",
            ">VPS",
            ">RAM USED / SELLABLE",
            ">DISK USED / SELLABLE",
            ">VCPUS",
            ">IPV4 USED",
            ">IPV4 FREE",
            "STATUS",
        ]);
        for r in node_rows(inv) {
            t.row(vec![
                r.node,
                r.location,
                r.hypervisor,
                r.vps.to_string(),
                used_of(r.ram_used, r.ram_sellable),
                used_of(r.disk_used, r.disk_sellable),
                format!("{} / {}", r.vcpus_used, r.vcpus_sellable),
                r.ipv4_used.to_string(),
                r.ipv4_free.to_string(),
                if r.maintenance { "maintenance" } else { "open" }.to_owned(),
            ]);
        }
        parts.push(format!("Nodes\n{}", t.render()));
    }
    if want(Section::Pools) {
        let mut t = Table::new(&[
            "POOL", "LOCATION", "NETWORK", "NETMASK", "GATEWAY", ">USED", ">FREE", "IPV6",
        ]);
        for r in pool_rows(inv) {
            t.row(vec![
                r.pool,
                r.location,
                r.network,
                r.netmask,
                r.gateway,
                r.used.to_string(),
                r.free.to_string(),
                r.ipv6.unwrap_or_else(|| "-".into()),
            ]);
        }
        parts.push(format!("Pools\n{}", t.render()));
    }
    if want(Section::Products) {
        let mut t = Table::new(&[
            "PRODUCT",
            "NAME",
            ">PERIOD",
            &format!(">PRICE {}", inv.currency),
            ">SETUP",
            ">DISK",
            ">RAM",
            ">VCPUS",
            ">TRAFFIC/MO",
            "CATALOG",
        ]);
        for r in product_rows(inv) {
            let id = if r.renews.is_some() {
                format!("  └ {}", r.product)
            } else {
                r.product
            };
            t.row(vec![
                id,
                r.name,
                // A traffic block has no period: it lasts the rest of the traffic period.
                if r.period_months == 0 {
                    "-".to_owned()
                } else {
                    format!("{} mo", r.period_months)
                },
                r.price,
                r.setup_fee,
                r.disk.unwrap_or_default(),
                r.ram.unwrap_or_default(),
                r.vcpus.map(|v| v.to_string()).unwrap_or_default(),
                r.traffic.unwrap_or_default(),
                if r.private { "private" } else { "public" }.to_owned(),
            ]);
        }
        parts.push(format!("Products\n{}", t.render()));
    }
    if want(Section::Expiring) {
        let rows = expiring_rows(inv, today, days);
        let title = format!(
            "Expiring by {} ({days} days from {today})",
            today + chrono::Days::new(days.into())
        );
        if rows.is_empty() {
            parts.push(format!("{title}\nnone\n"));
        } else {
            let mut t = Table::new(&[
                "VPS", "CUSTOMER", "PRODUCT", "NODE", "EXPIRES", ">DAYS", "STATE",
            ]);
            for r in rows {
                let days = if r.days_left < 0 {
                    format!("expired {} ago", -r.days_left)
                } else {
                    r.days_left.to_string()
                };
                t.row(vec![
                    r.vps,
                    r.customer,
                    r.product,
                    r.node,
                    r.expires.to_string(),
                    days,
                    r.state,
                ]);
            }
            parts.push(format!("{title}\n{}", t.render()));
        }
    }
    parts.join("\n")
}
