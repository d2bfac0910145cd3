#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Property tests of placement: random fleets (written as TOML and loaded), then a sequence of
//! placements, each inserted into the inventory, checked against a brute-force model.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use chrono::NaiveDate;
use ipnet::Ipv6Net;
use model::placement::{PlacementError, Request, place};
use model::values::{State, VpsAddr};
use model::{Inventory, VpsId};
use proptest::prelude::*;
use proptest::sample::Index;

const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81";

/// Pool locations, and the shorter name a node may use for the same place.
const LOCATIONS: [&str; 3] = [
    "Tampa, Florida (USA)",
    "Seattle, WA (USA)",
    "Shanghai, China",
];
const ALIASES: [&str; 3] = ["Tampa", "Seattle", "Shanghai"];

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A plan of the test catalog.
struct Plan {
    id: &'static str,
    ram: u64,
    disk: u64,
    vcpus: u64,
}

const PLANS: [Plan; 3] = [
    Plan {
        id: "s",
        ram: 512 * MIB,
        disk: 5 * GIB,
        vcpus: 1,
    },
    Plan {
        id: "m",
        ram: GIB,
        disk: 20 * GIB,
        vcpus: 2,
    },
    Plan {
        id: "l",
        ram: 4 * GIB,
        disk: 50 * GIB,
        vcpus: 4,
    },
];

/// Overcommit ratios as exact fractions, and as written in TOML.
const RATIOS: [(u64, u64, &str); 4] = [(1, 1, "1"), (3, 2, "1.5"), (2, 1, "2"), (4, 1, "4")];

// ---------------------------------------------------------------- what is generated

#[derive(Debug, Clone)]
struct PoolSpec {
    location: usize,
    prefix: u8,
    gateway: u32,
    /// (first offset, length) of each reserved range.
    reserved: Vec<(u32, u32)>,
    /// Prefix length of the IPv6 prefix, if any.
    ipv6: Option<u8>,
}

#[derive(Debug, Clone)]
struct NodeSpec {
    location: usize,
    alias: bool,
    pools: Vec<usize>,
    reverse_pools: bool,
    ram_gib: u64,
    disk_gib: u64,
    vcpus: u64,
    overcommit: [Option<usize>; 3],
    maintenance: bool,
}

#[derive(Debug, Clone)]
struct PreVps {
    node: Index,
    pool: Index,
    addr: u32,
    plan: usize,
    state: u8,
    v6: Option<u8>,
    id: u32,
}

#[derive(Debug, Clone)]
struct ReqSpec {
    location: usize,
    /// 0: the pool location name, 1: in upper case, 2: a node's short name, 3: a pool id.
    how: u8,
    pool: Index,
    plan: usize,
}

#[derive(Debug, Clone)]
enum Op {
    Place(ReqSpec),
    /// Destroy one of the VPSes placed so far.
    Destroy(Index),
}

#[derive(Debug, Clone)]
struct FleetSpec {
    pools: Vec<PoolSpec>,
    nodes: Vec<NodeSpec>,
    pre: Vec<PreVps>,
    ops: Vec<Op>,
}

fn pool_spec(nloc: usize) -> impl Strategy<Value = PoolSpec> {
    (
        0..nloc,
        26u8..=29,
        any::<u32>(),
        prop::collection::vec((any::<u32>(), 0u32..6), 0..=3),
        prop::option::of(prop_oneof![Just(56u8), Just(62u8)]),
    )
        .prop_map(|(location, prefix, gateway, reserved, ipv6)| PoolSpec {
            location,
            prefix,
            gateway,
            reserved,
            ipv6,
        })
}

fn node_spec(nloc: usize, npools: usize) -> impl Strategy<Value = NodeSpec> {
    (
        (0..nloc, any::<bool>()),
        prop::sample::subsequence((0..npools).collect::<Vec<_>>(), 1..=npools.min(2)),
        any::<bool>(),
        1u64..=16,
        10u64..=200,
        1u64..=16,
        prop::array::uniform3(prop::option::of(0..RATIOS.len())),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(
                (location, alias),
                pools,
                reverse_pools,
                ram_gib,
                disk_gib,
                vcpus,
                overcommit,
                maintenance,
            )| NodeSpec {
                location,
                alias,
                pools,
                reverse_pools,
                ram_gib,
                disk_gib,
                vcpus,
                overcommit,
                maintenance,
            },
        )
}

fn pre_vps() -> impl Strategy<Value = PreVps> {
    (
        any::<Index>(),
        any::<Index>(),
        any::<u32>(),
        0..PLANS.len(),
        0u8..3,
        prop::option::of(any::<u8>()),
        1u32..=30,
    )
        .prop_map(|(node, pool, addr, plan, state, v6, id)| PreVps {
            node,
            pool,
            addr,
            plan,
            state,
            v6,
            id,
        })
}

fn op(nloc: usize) -> impl Strategy<Value = Op> {
    let place = (0..nloc, 0u8..4, any::<Index>(), 0..PLANS.len()).prop_map(
        |(location, how, pool, plan)| {
            Op::Place(ReqSpec {
                location,
                how,
                pool,
                plan,
            })
        },
    );
    prop_oneof![6 => place, 1 => any::<Index>().prop_map(Op::Destroy)]
}

fn fleet() -> impl Strategy<Value = FleetSpec> {
    (1usize..=3)
        .prop_flat_map(|nloc| (Just(nloc), prop::collection::vec(pool_spec(nloc), 1..=4)))
        .prop_flat_map(|(nloc, pools)| {
            let np = pools.len();
            (
                Just(pools),
                prop::collection::vec(node_spec(nloc, np), 1..=6),
                prop::collection::vec(pre_vps(), 0..=10),
                prop::collection::vec(op(nloc), 1..=40),
            )
        })
        .prop_map(|(pools, nodes, pre, ops)| FleetSpec {
            pools,
            nodes,
            pre,
            ops,
        })
}

// ---------------------------------------------------------------- the brute-force model

/// A pool as the model sees it: addresses as integers.
struct PoolM {
    id: String,
    location: String,
    net: u32,
    size: u32,
    gateway: u32,
    reserved: Vec<(u32, u32)>,
    ipv6: Option<Ipv6Net>,
}

impl PoolM {
    fn contains(&self, a: u32) -> bool {
        self.net <= a && a < self.net + self.size
    }

    /// Not the network, the broadcast, the gateway or reserved.
    fn usable(&self, a: u32) -> bool {
        self.contains(a)
            && a != self.net
            && a != self.net + self.size - 1
            && a != self.gateway
            && !self.reserved.iter().any(|&(f, l)| f <= a && a <= l)
    }

    fn lowest_free_v4(&self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (self.net..self.net + self.size)
            .filter(|&a| self.usable(a))
            .map(Ipv4Addr::from)
            .find(|ip| !used.contains(ip))
    }

    /// The /64s of the IPv6 prefix, the first (kept for the routers) included.
    fn all_64s(&self) -> Vec<Ipv6Net> {
        let Some(pre) = self.ipv6 else {
            return Vec::new();
        };
        let base = u128::from(pre.network());
        (0..1u128 << (64 - pre.prefix_len()))
            .map(|i| Ipv6Net::new((base + (i << 64)).into(), 64).unwrap())
            .collect()
    }

    fn lowest_free_v6(&self, used: &HashSet<Ipv6Net>) -> Option<Ipv6Net> {
        self.all_64s()
            .into_iter()
            .skip(1)
            .find(|n| !used.contains(n))
    }

    /// Whether a new VPS can take its addresses here: a free IPv4 and, where the pool
    /// has an IPv6 prefix, a free /64 (every VPS on such a pool gets one).
    fn can_serve(&self, used4: &HashSet<Ipv4Addr>, used6: &HashSet<Ipv6Net>) -> bool {
        self.lowest_free_v4(used4).is_some()
            && (self.ipv6.is_none() || self.lowest_free_v6(used6).is_some())
    }
}

/// A node as the model sees it, with its sellable capacity computed exactly.
struct NodeM {
    id: String,
    location: String,
    pools: Vec<usize>,
    maintenance: bool,
    /// Sellable RAM, disk (bytes) and vCPUs.
    sell: [u64; 3],
}

struct World {
    pools: Vec<PoolM>,
    nodes: Vec<NodeM>,
}

fn plan_of(id: &str) -> &'static Plan {
    PLANS.iter().find(|p| p.id == id).unwrap()
}

fn need(plan: &Plan) -> [u64; 3] {
    [plan.ram, plan.disk, plan.vcpus]
}

/// RAM, disk and vCPUs taken on a node by VPSes that are not destroyed.
fn usage(inv: &Inventory, node: &str) -> [u64; 3] {
    let mut u = [0; 3];
    for v in inv.vps.values() {
        if v.state != State::Destroyed && v.node.as_str() == node {
            let n = need(plan_of(v.product.as_str()));
            for i in 0..3 {
                u[i] += n[i];
            }
        }
    }
    u
}

fn fits(used: [u64; 3], add: [u64; 3], sell: [u64; 3]) -> bool {
    (0..3).all(|i| used[i] + add[i] <= sell[i])
}

/// The fullest resource after adding `add`, as an exact fraction (numerator, denominator).
fn load_after(used: [u64; 3], add: [u64; 3], sell: [u64; 3]) -> (u128, u128) {
    (0..3)
        .map(|i| (u128::from(used[i] + add[i]), u128::from(sell[i])))
        .max_by(|a, b| cmp_frac(*a, *b))
        .unwrap()
}

fn cmp_frac(a: (u128, u128), b: (u128, u128)) -> Ordering {
    (a.0 * b.1).cmp(&(b.0 * a.1))
}

fn used_v4(inv: &Inventory) -> HashSet<Ipv4Addr> {
    inv.vps
        .values()
        .filter(|v| v.state != State::Destroyed)
        .flat_map(|v| v.ipv4())
        .collect()
}

fn used_v6(inv: &Inventory) -> HashSet<Ipv6Net> {
    inv.vps
        .values()
        .filter(|v| v.state != State::Destroyed)
        .flat_map(|v| v.ipv6())
        .collect()
}

fn matches(w: &World, n: &NodeM, loc: &str) -> bool {
    n.location.eq_ignore_ascii_case(loc)
        || n.pools
            .iter()
            .any(|&p| w.pools[p].id == loc || w.pools[p].location.eq_ignore_ascii_case(loc))
}

// ---------------------------------------------------------------- writing the fleet

fn write(root: &std::path::Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Writes the fleet; pre-existing VPSes that would break a rule are left out.
fn build(spec: &FleetSpec) -> (tempfile::TempDir, World) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();

    let mut products = String::from("currency = \"USD\"\n");
    for p in &PLANS {
        write!(
            products,
            "\n[[product]]\nid = \"{}\"\nname = \"Plan {0}\"\nperiod_months = 1\nprice = \"5.00\"\n\
             ram = \"{} MiB\"\ndisk = \"{} MiB\"\nvcpus = {}\ntraffic = \"1 TiB\"\n",
            p.id,
            p.ram / MIB,
            p.disk / MIB,
            p.vcpus
        )
        .unwrap();
    }
    products.push_str(
        "\n[[product]]\nid = \"s-12m\"\nrenews = \"s\"\nname = \"S, yearly\"\nperiod_months = 12\nprice = \"50.00\"\n",
    );
    write(root, "products.toml", &products);
    write(
        root,
        "inventory/customers/c-0001.toml",
        "name = \"Jane\"\nemail = \"jane@example.net\"\n",
    );

    let mut pools_toml = String::new();
    let mut pools = Vec::new();
    for (i, p) in spec.pools.iter().enumerate() {
        let size = 1u32 << (32 - p.prefix);
        let net = u32::from(Ipv4Addr::new(10, 0, u8::try_from(i).unwrap(), 0));
        let gateway = net + 1 + p.gateway % (size - 2);
        let reserved: Vec<(u32, u32)> = p
            .reserved
            .iter()
            .map(|&(f, len)| {
                let first = net + f % size;
                (first, (first + len).min(net + size - 1))
            })
            .collect();
        let ipv6 = p.ipv6.map(|len| {
            format!("2001:db8:{:x}::/{len}", i + 1)
                .parse::<Ipv6Net>()
                .unwrap()
        });
        let m = PoolM {
            id: format!("pool-{}", i + 1),
            location: LOCATIONS[p.location].to_owned(),
            net,
            size,
            gateway,
            reserved,
            ipv6,
        };
        let reserved: Vec<String> = m
            .reserved
            .iter()
            .map(|&(f, l)| format!("\"{}-{}\"", Ipv4Addr::from(f), Ipv4Addr::from(l)))
            .collect();
        write!(
            pools_toml,
            "[[pool]]\nid = \"{}\"\nlocation = \"{}\"\nnetwork = \"{}/{}\"\ngateway = \"{}\"\nreserved = [{}]\n",
            m.id,
            m.location,
            Ipv4Addr::from(net),
            p.prefix,
            Ipv4Addr::from(gateway),
            reserved.join(", ")
        )
        .unwrap();
        if let Some(pre) = m.ipv6 {
            writeln!(pools_toml, "ipv6 = \"{pre}\"").unwrap();
        }
        pools_toml.push('\n');
        pools.push(m);
    }
    write(root, "pools.toml", &pools_toml);

    let mut nodes = Vec::new();
    for (i, n) in spec.nodes.iter().enumerate() {
        let mut node_pools = n.pools.clone();
        if n.reverse_pools {
            node_pools.reverse();
        }
        let ratio = |k: usize| RATIOS[n.overcommit[k].unwrap_or(0)];
        let scale = |v: u64, k: usize| {
            let (num, den, _) = ratio(k);
            v * num / den
        };
        let m = NodeM {
            id: format!("node{}", i + 1),
            location: if n.alias {
                ALIASES[n.location]
            } else {
                LOCATIONS[n.location]
            }
            .to_owned(),
            pools: node_pools,
            maintenance: n.maintenance,
            sell: [
                scale(n.ram_gib * GIB, 0),
                scale(n.disk_gib * GIB, 1),
                scale(n.vcpus, 2),
            ],
        };
        let pool_list: Vec<String> = m
            .pools
            .iter()
            .map(|&p| format!("\"{}\"", pools[p].id))
            .collect();
        let mut text = format!(
            "address = \"192.0.2.{}\"\nhost_key = \"{HOST_KEY}\"\nlocation = \"{}\"\ncountry = \"US\"\n\
             hypervisor = \"xen\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\npools = [{}]\n\
             capacity = {{ ram = \"{} GiB\", disk = \"{} GiB\", vcpus = {} }}\nmaintenance = {}\n",
            10 + i,
            m.location,
            pool_list.join(", "),
            n.ram_gib,
            n.disk_gib,
            n.vcpus,
            n.maintenance
        );
        let oc: Vec<String> = ["ram", "disk", "vcpus"]
            .iter()
            .enumerate()
            .filter(|(k, _)| n.overcommit[*k].is_some())
            .map(|(k, key)| format!("{key} = {}", ratio(k).2))
            .collect();
        if !oc.is_empty() {
            writeln!(text, "overcommit = {{ {} }}", oc.join(", ")).unwrap();
        }
        write(root, &format!("inventory/nodes/{}.toml", m.id), &text);
        nodes.push(m);
    }

    // Pre-existing VPSes: kept only when valid (a free usable address, room on the node).
    let mut ids = HashSet::new();
    let mut v4 = HashSet::new();
    let mut v6 = HashSet::new();
    let mut used = vec![[0u64; 3]; nodes.len()];
    for pre in &spec.pre {
        let ni = pre.node.index(nodes.len());
        let node = &nodes[ni];
        let pool = &pools[node.pools[pre.pool.index(node.pools.len())]];
        let id = format!("xen{:02}", pre.id);
        let addr = pool.net + pre.addr % pool.size;
        let plan = &PLANS[pre.plan];
        let destroyed = pre.state == 2;
        let six = pre.v6.and_then(|k| {
            let all = pool.all_64s();
            (!all.is_empty()).then(|| all[usize::from(k) % all.len()])
        });
        if ids.contains(&id) {
            continue;
        }
        if !destroyed {
            let room = fits(used[ni], need(plan), node.sell);
            let free6 = six.is_none_or(|n| !v6.contains(&n));
            if !pool.usable(addr) || v4.contains(&addr) || !room || !free6 {
                continue;
            }
            v4.insert(addr);
            v6.extend(six);
            for (k, x) in need(plan).iter().enumerate() {
                used[ni][k] += x;
            }
        }
        ids.insert(id.clone());
        let mut ips = vec![format!("\"{}\"", Ipv4Addr::from(addr))];
        ips.extend(six.map(|n| format!("\"{n}\"")));
        let state = ["active", "suspended", "destroyed"][usize::from(pre.state)];
        let mut text = format!(
            "customer = \"c-0001\"\nproduct = \"{}\"\nnode = \"{}\"\nips = [{}]\nhostname = \"{id}.example.net\"\n\
             os = \"debian-12\"\nstate = \"{state}\"\ncreated = 2025-01-01\nexpires = 2026-01-01\n",
            plan.id,
            node.id,
            ips.join(", ")
        );
        if destroyed {
            text.push_str("destroyed = 2025-06-01\n");
        }
        write(root, &format!("inventory/vps/{id}.toml"), &text);
    }
    (dir, World { pools, nodes })
}

// ---------------------------------------------------------------- the properties

fn location_text(w: &World, r: &ReqSpec) -> String {
    match r.how {
        0 => LOCATIONS[r.location].to_owned(),
        1 => LOCATIONS[r.location].to_uppercase(),
        2 => ALIASES[r.location].to_lowercase(),
        _ => w.pools[r.pool.index(w.pools.len())].id.clone(),
    }
}

/// Every node's usage is within what it may sell.
fn capacity_holds(w: &World, inv: &Inventory) -> Result<(), TestCaseError> {
    for n in &w.nodes {
        let u = usage(inv, &n.id);
        prop_assert!(
            (0..3).all(|k| u[k] <= n.sell[k]),
            "{} is overfilled: uses {u:?}, may sell {:?}",
            n.id,
            n.sell
        );
    }
    Ok(())
}

fn run(spec: &FleetSpec) -> Result<(), TestCaseError> {
    let (dir, w) = build(spec);
    let mut inv = match Inventory::load(dir.path()) {
        Ok(inv) => inv,
        Err(e) => return Err(TestCaseError::fail(format!("generated fleet: {e}"))),
    };
    capacity_holds(&w, &inv)?;
    let today = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
    let mut placed: Vec<VpsId> = Vec::new();
    for op in &spec.ops {
        let r = match op {
            Op::Place(r) => r,
            Op::Destroy(i) => {
                if !placed.is_empty() {
                    let v = inv.vps.get_mut(&placed[i.index(placed.len())]).unwrap();
                    v.state = State::Destroyed;
                    v.destroyed = Some(v.created);
                    let d = inv.check();
                    prop_assert!(d.is_empty(), "after a destruction:\n{d}");
                }
                continue;
            }
        };
        let loc = location_text(&w, r);
        let plan = &PLANS[r.plan];
        let req = Request {
            customer: "c-0001".parse().unwrap(),
            product: plan.id.parse().unwrap(),
            location: loc.clone(),
            os: None,
            appliance: None,
            hostname: None,
            id: None,
            today,
        };
        let result = place(&inv, &req);

        let matching: Vec<usize> = (0..w.nodes.len())
            .filter(|&i| matches(&w, &w.nodes[i], &loc))
            .collect();
        if matching.is_empty() {
            // A location some pool has, but no node serves, is known but full;
            // anything else is unknown.
            let pool_has_it = inv
                .pools
                .values()
                .any(|p| p.location.eq_ignore_ascii_case(&loc) || p.id.as_str() == loc);
            if pool_has_it {
                prop_assert!(
                    matches!(&result, Err(PlacementError::NoCapacity { reasons, .. }) if reasons == &["no node serves this location yet".to_owned()]),
                    "`{loc}` is a pool location no node serves: {result:?}"
                );
            } else {
                prop_assert!(
                    matches!(result, Err(PlacementError::UnknownLocation { .. })),
                    "`{loc}` matches no node: {result:?}"
                );
            }
            continue;
        }
        let used4 = used_v4(&inv);
        let used6 = used_v6(&inv);
        let feasible: Vec<usize> = matching
            .iter()
            .copied()
            .filter(|&i| {
                let n = &w.nodes[i];
                !n.maintenance
                    && fits(usage(&inv, &n.id), need(plan), n.sell)
                    && n.pools
                        .iter()
                        .any(|&p| w.pools[p].can_serve(&used4, &used6))
            })
            .collect();

        let p = match result {
            Err(PlacementError::NoCapacity { reasons, .. }) => {
                prop_assert!(
                    feasible.is_empty(),
                    "NoCapacity for `{loc}` ({reasons:?}) but {} has room and an address",
                    w.nodes[feasible[0]].id
                );
                prop_assert_eq!(reasons.len(), matching.len(), "one reason per node");
                continue;
            }
            Err(e) => return Err(TestCaseError::fail(format!("`{loc}`: unexpected {e:?}"))),
            Ok(p) => p,
        };

        // The node: not in maintenance, with room, the least loaded (ties: lowest id).
        let ni = w
            .nodes
            .iter()
            .position(|n| n.id == p.node.as_str())
            .unwrap();
        let node = &w.nodes[ni];
        prop_assert!(!node.maintenance, "{} is in maintenance", node.id);
        prop_assert!(
            feasible.contains(&ni),
            "{} does not match `{loc}` or has no room",
            node.id
        );
        let load = |i: usize| load_after(usage(&inv, &w.nodes[i].id), need(plan), w.nodes[i].sell);
        for &f in &feasible {
            let o = cmp_frac(load(ni), load(f));
            prop_assert!(
                o == Ordering::Less
                    || (o == Ordering::Equal && node.id.as_str() <= w.nodes[f].id.as_str()),
                "{} chosen over the less loaded {}",
                node.id,
                w.nodes[f].id
            );
        }

        // The pool: the node's, the first (asked location first) with a free address.
        let pi = w
            .pools
            .iter()
            .position(|x| x.id == p.pool.as_str())
            .unwrap();
        prop_assert!(
            node.pools.contains(&pi),
            "{} is not a pool of {}",
            p.pool,
            node.id
        );
        let mut order = node.pools.clone();
        order.sort_by_key(|&q| {
            !(w.pools[q].location.eq_ignore_ascii_case(&loc) || w.pools[q].id == loc)
        });
        let first = order
            .iter()
            .copied()
            .find(|&q| w.pools[q].can_serve(&used4, &used6));
        prop_assert_eq!(first, Some(pi), "pool preference");
        let pool = &w.pools[pi];

        // IPv4: usable, free, the lowest such.
        let a = u32::from(p.ipv4);
        prop_assert!(pool.contains(a), "{} is outside {}", p.ipv4, pool.id);
        prop_assert!(
            pool.usable(a),
            "{} is network, broadcast, gateway or reserved",
            p.ipv4
        );
        prop_assert!(!used4.contains(&p.ipv4), "{} handed out twice", p.ipv4);
        prop_assert_eq!(Some(p.ipv4), pool.lowest_free_v4(&used4));

        // IPv6: from the pool's prefix, never the first /64, free, the lowest such.
        match pool.ipv6 {
            None => prop_assert_eq!(p.ipv6, None),
            Some(pre) => {
                prop_assert!(
                    p.ipv6.is_some(),
                    "no /64 for a VPS on {}, which has {pre}",
                    pool.id
                );
                if let Some(n) = p.ipv6 {
                    prop_assert!(
                        pre.contains(&n) && n.prefix_len() == 64,
                        "{n} outside {pre}"
                    );
                    prop_assert!(n != pool.all_64s()[0], "{n} is the routers' /64");
                    prop_assert!(!used6.contains(&n), "{n} handed out twice");
                }
                if let Some(want) = pool.lowest_free_v6(&used6) {
                    prop_assert_eq!(p.ipv6, Some(want));
                }
            }
        }
        let mut ips = vec![VpsAddr::V4(p.ipv4)];
        ips.extend(p.ipv6.map(VpsAddr::V6));
        prop_assert_eq!(&p.vps.ips, &ips);
        prop_assert_eq!(&p.vps.node, &p.node);
        prop_assert!(!inv.vps.contains_key(&p.id), "id {} is taken", p.id);

        inv.vps.insert(p.id.clone(), p.vps.clone());
        placed.push(p.id.clone());
        capacity_holds(&w, &inv)?;
        let d = inv.check();
        prop_assert!(d.is_empty(), "after placing {}:\n{d}", p.id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn placement_keeps_the_fleet_valid(spec in fleet()) {
        run(&spec)?;
    }
}
