//! Placement of a new VPS: picks a node, an IPv4 address, an IPv6 /64 and an id.
//! Pure and deterministic: the same inventory and request always give the same answer.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use chrono::NaiveDate;
use ipnet::Ipv6Net;

use crate::diag::Origin;
use crate::ids::*;
use crate::inventory::*;
use crate::values::*;

/// What a new VPS should be.
#[derive(Debug, Clone)]
pub struct Request {
    /// Owner.
    pub customer: CustomerId,
    /// Plan.
    pub product: ProductId,
    /// Location: a node or pool location name (case-insensitive), or a pool id.
    pub location: String,
    /// OS (the settings' default when absent).
    pub os: Option<OsId>,
    /// Appliance.
    pub appliance: Option<ApplianceId>,
    /// Host name (`<id>.<vps.domain>` when absent).
    pub hostname: Option<Hostname>,
    /// Id (the next free `<prefix>NN` when absent).
    pub id: Option<VpsId>,
    /// The day it is created.
    pub today: NaiveDate,
}

/// Why a VPS cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The customer does not exist.
    #[error("unknown customer `{0}`")]
    UnknownCustomer(CustomerId),
    /// The product does not exist.
    #[error("unknown product `{0}`")]
    UnknownProduct(ProductId),
    /// The product is a renewal, not a plan.
    #[error("`{0}` is a renewal product; order the plan it renews (`{1}`)")]
    NotAPlan(ProductId, ProductId),
    /// The product is a traffic block, bought for a VPS, not a plan.
    #[error("`{0}` is a traffic block; order a plan and buy traffic for its VPS")]
    TrafficBlock(ProductId),
    /// No node or pool has that location.
    #[error("unknown location `{location}` (known: {})", known.join(", "))]
    UnknownLocation {
        /// What was asked.
        location: String,
        /// The locations there are.
        known: Vec<String>,
    },
    /// Every node of the location is full, in maintenance or out of addresses.
    #[error("no node in `{location}` can take a {product} VPS: {}", reasons.join("; "))]
    NoCapacity {
        /// The location.
        location: String,
        /// The product.
        product: ProductId,
        /// Why each node was passed over.
        reasons: Vec<String>,
    },
    /// The requested id is taken.
    #[error("VPS id `{0}` is already in use")]
    IdTaken(VpsId),
    /// No id of the configured form is free.
    #[error("no free VPS id with prefix `{0}`")]
    NoFreeId(String),
    /// The host name is not valid with the generated id.
    #[error("cannot form a host name: {0}")]
    Hostname(String),
}

/// The decision: everything needed to write the VPS file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The new id.
    pub id: VpsId,
    /// The chosen node.
    pub node: NodeId,
    /// The pool its addresses come from.
    pub pool: PoolId,
    /// Its IPv4 address.
    pub ipv4: Ipv4Addr,
    /// Its IPv6 /64, when the pool has a prefix.
    pub ipv6: Option<Ipv6Net>,
    /// The complete VPS.
    pub vps: Vps,
}

/// Addresses and /64s already handed out across the fleet.
struct Used {
    v4: HashSet<Ipv4Addr>,
    v6: HashSet<Ipv6Net>,
}

impl Used {
    fn of(inv: &Inventory) -> Used {
        let mut u = Used {
            v4: HashSet::new(),
            v6: HashSet::new(),
        };
        for v in inv.vps.values().filter(|v| v.holds_resources()) {
            u.v4.extend(v.ipv4());
            u.v6.extend(v.ipv6());
        }
        // Nodes' own addresses are never handed out, reserved or not.
        u.v4.extend(inv.nodes.values().filter_map(|n| match n.address {
            Host::Ip(std::net::IpAddr::V4(ip)) => Some(ip),
            _ => None,
        }));
        u
    }
}

/// The lowest free usable address of a pool.
pub fn free_ipv4(pool: &Pool, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    free_ipv4_where(pool, used, |_| true)
}

/// The lowest free usable address of a pool that `ok` also accepts.
fn free_ipv4_where(
    pool: &Pool,
    used: &HashSet<Ipv4Addr>,
    ok: impl Fn(Ipv4Addr) -> bool,
) -> Option<Ipv4Addr> {
    pool.network
        .hosts()
        .find(|ip| pool.unusable(*ip).is_none() && !used.contains(ip) && ok(*ip))
}

/// Whether a new VPS whose first IPv4 is `ip` gets an SSH forward port of its own on
/// `node`: always, unless the node is KVM with `network = "user"`, where the port is
/// `forward_base` + the last octet and must not be another VPS's.
fn forward_port_free(inv: &Inventory, node: &Node) -> impl Fn(Ipv4Addr) -> bool {
    let base = match node.kvm.as_ref().map(|k| &k.network) {
        Some(KvmNetwork::User { forward_base }) => Some(*forward_base),
        _ => None,
    };
    let taken: HashSet<u16> = match base {
        None => HashSet::new(),
        Some(_) => inv
            .vps
            .values()
            .filter(|v| v.node == node.id && v.holds_resources())
            .filter_map(|v| node.forward_port(v))
            .collect(),
    };
    move |ip| base.is_none_or(|b| ssh_forward_port(b, ip).is_some_and(|p| !taken.contains(&p)))
}

/// The lowest free /64 of a pool's IPv6 prefix, skipping the first (kept for the routers).
pub fn free_ipv6(prefix: Ipv6Net, used: &HashSet<Ipv6Net>) -> Option<Ipv6Net> {
    prefix.subnets(64).ok()?.skip(1).find(|n| !used.contains(n))
}

/// Whether a node or one of its pools matches a location as asked.
fn matches_location(inv: &Inventory, node: &Node, location: &str) -> bool {
    node.location.eq_ignore_ascii_case(location)
        || node.pools.iter().any(|p| {
            p.as_str() == location
                || inv
                    .pools
                    .get(p)
                    .is_some_and(|pool| pool.location.eq_ignore_ascii_case(location))
        })
}

/// The next free id of the form `<prefix>NN`.
pub fn next_id(inv: &Inventory, prefix: &str) -> Option<VpsId> {
    (1..100_000u32)
        .map(|n| format!("{prefix}{n:02}"))
        .find(|s| !inv.vps.contains_key(s.as_str()))
        .and_then(|s| s.parse().ok())
}

/// Decides where a new VPS goes. Never changes the inventory.
pub fn place(inv: &Inventory, req: &Request) -> Result<Placement, PlacementError> {
    if !inv.customers.contains_key(&req.customer) {
        return Err(PlacementError::UnknownCustomer(req.customer.clone()));
    }
    let (product, res) = plan_of(inv, &req.product)?;
    let id = match &req.id {
        Some(id) if inv.vps.contains_key(id) => return Err(PlacementError::IdTaken(id.clone())),
        Some(id) => id.clone(),
        None => next_id(inv, &inv.settings.vps.id_prefix)
            .ok_or_else(|| PlacementError::NoFreeId(inv.settings.vps.id_prefix.clone()))?,
    };
    let used = Used::of(inv);
    let (node, pool, ipv4) = best_node(inv, req, res, &used)?;
    let ipv6 = pool.ipv6.and_then(|pre| free_ipv6(pre, &used.v6));
    let hostname = match &req.hostname {
        Some(h) => h.clone(),
        None => {
            let s = match &inv.settings.vps.domain {
                Some(d) => format!("{id}.{d}"),
                None => id.to_string(),
            };
            s.parse().map_err(PlacementError::Hostname)?
        }
    };
    let mut ips = vec![VpsAddr::V4(ipv4)];
    ips.extend(ipv6.map(VpsAddr::V6));
    let file = format!("{}/{id}.toml", crate::load::paths::VPS);
    let vps = Vps {
        id: id.clone(),
        customer: req.customer.clone(),
        product: req.product.clone(),
        node: node.id.clone(),
        ips,
        hostname,
        os: req
            .os
            .clone()
            .unwrap_or_else(|| inv.settings.vps.default_os.clone()),
        appliance: req.appliance.clone(),
        guest_type: None,
        power: Power::Running,
        state: State::Active,
        suspension: None,
        suspended: None,
        throttled: false,
        traffic_blocks: Vec::new(),
        created: req.today,
        expires: add_months(req.today, product.period_months),
        destroyed: None,
        actions: Actions::default(),
        monitor: Monitor::default(),
        ptr: std::collections::BTreeMap::new(),
        backup: crate::backup::BackupOverride::default(),
        adopted: false,
        restore: None,
        snapshots: crate::snapshot::Snapshots::default(),
        boot: None,
        rescue: false,
        origin: Origin::synthetic(&file),
    };
    Ok(Placement {
        id,
        node: node.id.clone(),
        pool: pool.id.clone(),
        ipv4,
        ipv6,
        vps,
    })
}

/// The product asked for and its resources: it must be a plan, not a renewal.
fn plan_of<'a>(
    inv: &'a Inventory,
    id: &ProductId,
) -> Result<(&'a Product, &'a Resources), PlacementError> {
    let product = inv
        .products
        .get(id)
        .ok_or_else(|| PlacementError::UnknownProduct(id.clone()))?;
    match &product.kind {
        ProductKind::Plan(r) => Ok((product, r)),
        ProductKind::Renewal { renews } => {
            Err(PlacementError::NotAPlan(id.clone(), renews.clone()))
        }
        ProductKind::TrafficBlock { .. } => Err(PlacementError::TrafficBlock(id.clone())),
    }
}

/// The nodes serving the asked location, or why there are none.
fn candidates<'a>(inv: &'a Inventory, req: &Request) -> Result<Vec<&'a Node>, PlacementError> {
    let found: Vec<&Node> = inv
        .nodes
        .values()
        .filter(|n| matches_location(inv, n, &req.location))
        .collect();
    if !found.is_empty() {
        return Ok(found);
    }
    if inv
        .pools
        .values()
        .any(|p| p.location.eq_ignore_ascii_case(&req.location) || p.id.as_str() == req.location)
    {
        return Err(PlacementError::NoCapacity {
            location: req.location.clone(),
            product: req.product.clone(),
            reasons: vec!["no node serves this location yet".to_owned()],
        });
    }
    // Locations some node serves: its own, and those of its pools.
    let mut known: Vec<String> = inv
        .nodes
        .values()
        .flat_map(|n| {
            std::iter::once(n.location.clone()).chain(
                n.pools
                    .iter()
                    .filter_map(|p| inv.pools.get(p))
                    .map(|p| p.location.clone()),
            )
        })
        .collect();
    known.sort();
    known.dedup();
    Err(PlacementError::UnknownLocation {
        location: req.location.clone(),
        known,
    })
}

/// The least loaded node that fits (ties go to the lowest node id), with the pool and IPv4
/// address the VPS would get there; or every candidate's reason for not fitting.
fn best_node<'a>(
    inv: &'a Inventory,
    req: &Request,
    res: &Resources,
    used: &Used,
) -> Result<(&'a Node, &'a Pool, Ipv4Addr), PlacementError> {
    let usage = inv.usage();
    let mut reasons = Vec::new();
    let mut best: Option<(f64, &Node, &Pool, Ipv4Addr)> = None;
    for node in candidates(inv, req)? {
        let u = usage.get(&node.id).copied().unwrap_or_default();
        match fit(inv, req, res, used, node, u) {
            Err(why) => reasons.push(why),
            Ok((load, pool, ip)) => {
                if best.as_ref().is_none_or(|(l, ..)| load < *l) {
                    best = Some((load, node, pool, ip));
                }
            }
        }
    }
    best.map(|(_, node, pool, ip)| (node, pool, ip))
        .ok_or_else(|| PlacementError::NoCapacity {
            location: req.location.clone(),
            product: req.product.clone(),
            reasons,
        })
}

/// Whether the VPS fits on one node: its load afterwards, the pool and the IPv4 address; or
/// why not, in words.
fn fit<'a>(
    inv: &'a Inventory,
    req: &Request,
    res: &Resources,
    used: &Used,
    node: &Node,
    usage: Usage,
) -> Result<(f64, &'a Pool, Ipv4Addr), String> {
    if node.maintenance {
        return Err(format!("{} is in maintenance", node.id));
    }
    if let Some(xen) = &node.xen {
        let t = res.guest_type.unwrap_or(xen.guest_type);
        if !xen.runs(t) {
            return Err(format!("{} cannot run guest type \"{t}\"", node.id));
        }
    }
    let sell = node.sellable();
    // The snapshots its plan allows are accounted on the node like its disk.
    let reserve = crate::snapshot::space(
        &node.storage,
        res.disk.0,
        inv.settings.backup.snapshot_cow_percent,
    )
    .unwrap_or(0)
    .saturating_mul(u64::from(res.snapshot_limit));
    let with_snapshots = Resources {
        disk: Size(res.disk.0.saturating_add(reserve)),
        ..res.clone()
    };
    if !usage.fits(&with_snapshots, &sell) {
        return Err(format!("{} is full", node.id));
    }
    let (pool, ip) = pool_and_ipv4(inv, node, used, &req.location)?;
    let mut after = usage;
    after.add(res);
    Ok((after.load(&sell), pool, ip))
}

/// The pool of `node` a VPS gets its addresses from (those of `location` first, in the node's
/// order) and its IPv4 address there; a pool with an IPv6 prefix must also have a free /64.
fn pool_and_ipv4<'a>(
    inv: &'a Inventory,
    node: &Node,
    used: &Used,
    location: &str,
) -> Result<(&'a Pool, Ipv4Addr), String> {
    let mut pools: Vec<&Pool> = node.pools.iter().filter_map(|p| inv.pools.get(p)).collect();
    pools
        .sort_by_key(|p| !(p.location.eq_ignore_ascii_case(location) || p.id.as_str() == location));
    let port_free = forward_port_free(inv, node);
    let mut v6_short = false;
    pools
        .into_iter()
        .find_map(|p| {
            let ip = free_ipv4_where(p, &used.v4, &port_free)?;
            if let Some(pre) = p.ipv6
                && free_ipv6(pre, &used.v6).is_none()
            {
                v6_short = true;
                return None;
            }
            Some((p, ip))
        })
        .ok_or_else(|| {
            if v6_short {
                format!("{} has no free IPv6 /64", node.id)
            } else {
                format!("{} has no free IPv4 address", node.id)
            }
        })
}

/// New addresses for a VPS moved to `node` (`gitvps vps move`), chosen as placement chooses
/// them for a new VPS there: the pool, its IPv4 address and, when the pool has a prefix, an
/// IPv6 /64. Addresses in use anywhere (the moving VPS's own included) are never given.
pub fn addresses_on(
    inv: &Inventory,
    node: &Node,
) -> Result<(PoolId, Ipv4Addr, Option<Ipv6Net>), String> {
    let used = Used::of(inv);
    let (pool, ip) = pool_and_ipv4(inv, node, &used, &node.location)?;
    let v6 = pool.ipv6.and_then(|pre| free_ipv6(pre, &used.v6));
    Ok((pool.id.clone(), ip, v6))
}
