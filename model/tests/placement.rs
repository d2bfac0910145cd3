#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Unit tests of `model::placement::place`, on small fleets written as TOML files in a
//! temporary folder and loaded with `Inventory::load`, as an operator's repo would be.

use std::net::Ipv4Addr;
use std::path::Path;

use chrono::NaiveDate;
use ipnet::Ipv6Net;
use model::placement::{Placement, PlacementError, Request, place};
use model::values::{Hostname, Power, State, VpsAddr};
use model::{Inventory, VpsId};

const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81";

/// `small` and `quarter` take 1 GiB / 10 GiB / 1 vCPU; `disky` takes 256 MiB / 90 GiB / 1 vCPU.
const PRODUCTS: &str = r#"currency = "USD"

[[product]]
id = "small"
name = "Small"
period_months = 1
price = "10.00"
disk = "10 GiB"
ram = "1 GiB"
vcpus = 1
traffic = "100 GiB"

[[product]]
id = "small-3m"
renews = "small"
name = "Small, 3 months"
period_months = 3
price = "27.00"

[[product]]
id = "quarter"
name = "Quarterly"
period_months = 3
price = "30.00"
disk = "10 GiB"
ram = "1 GiB"
vcpus = 1
traffic = "100 GiB"

[[product]]
id = "disky"
name = "Storage"
period_months = 1
price = "20.00"
disk = "90 GiB"
ram = "256 MiB"
vcpus = 1
traffic = "100 GiB"
"#;

/// Default node capacity: room for 8 `small` VPSes.
const ROOMY: &str = r#"{ ram = "8 GiB", disk = "100 GiB", vcpus = 8 }"#;

/// A fleet written to a temporary folder.
struct Fleet {
    dir: tempfile::TempDir,
}

impl Fleet {
    /// A fleet with the test catalog, two customers and the given pools.
    fn new(pools: &[String]) -> Fleet {
        let f = Fleet {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write("products.toml", PRODUCTS);
        f.write("pools.toml", &pools.join("\n"));
        for c in ["c-0001", "c-0002"] {
            f.write(
                &format!("inventory/customers/{c}.toml"),
                &format!("name = \"Customer {c}\"\nemail = \"{c}@example.net\"\n"),
            );
        }
        f
    }

    fn write(&self, rel: &str, text: &str) -> &Fleet {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn settings(&self, text: &str) -> &Fleet {
        self.write("gitvps.toml", text)
    }

    /// A node with room for 8 `small` VPSes.
    fn node(&self, id: &str, location: &str, pools: &[&str]) -> &Fleet {
        self.node_with(id, location, pools, ROOMY, "")
    }

    /// A node with a given capacity (inline table) and extra lines.
    fn node_with(
        &self,
        id: &str,
        location: &str,
        pools: &[&str],
        capacity: &str,
        extra: &str,
    ) -> &Fleet {
        self.node_at(id, "192.0.2.10", location, pools, capacity, extra)
    }

    fn node_at(
        &self,
        id: &str,
        address: &str,
        location: &str,
        pools: &[&str],
        capacity: &str,
        extra: &str,
    ) -> &Fleet {
        let pools: Vec<String> = pools.iter().map(|p| format!("\"{p}\"")).collect();
        self.write(
            &format!("inventory/nodes/{id}.toml"),
            &format!(
                "address = \"{address}\"\nhost_key = \"{HOST_KEY}\"\nlocation = \"{location}\"\n\
                 country = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\n\
                 pools = [{}]\ncapacity = {capacity}\n{extra}\n",
                pools.join(", ")
            ),
        )
    }

    /// A VPS of customer c-0001, created 2025-01-01.
    fn vps(&self, id: &str, node: &str, product: &str, ips: &[&str], state: &str) -> &Fleet {
        let ips: Vec<String> = ips.iter().map(|p| format!("\"{p}\"")).collect();
        let destroyed = if state == "destroyed" {
            "destroyed = 2025-06-01\n"
        } else {
            ""
        };
        self.write(
            &format!("inventory/vps/{id}.toml"),
            &format!(
                "customer = \"c-0001\"\nproduct = \"{product}\"\nnode = \"{node}\"\nips = [{}]\n\
                 hostname = \"{id}.example.net\"\nos = \"debian-12\"\nstate = \"{state}\"\n\
                 created = 2025-01-01\nexpires = 2026-01-01\n{destroyed}",
                ips.join(", ")
            ),
        )
    }

    fn load(&self) -> Inventory {
        load(self.dir.path())
    }
}

fn load(root: &Path) -> Inventory {
    match Inventory::load(root) {
        Ok(inv) => inv,
        Err(model::LoadError::Invalid(d)) => panic!("the test fleet is invalid:\n{d}"),
        Err(e) => panic!("{e}"),
    }
}

/// The text of one `[[pool]]`.
fn pool(
    id: &str,
    location: &str,
    network: &str,
    gateway: &str,
    reserved: &[&str],
    ipv6: Option<&str>,
) -> String {
    let reserved: Vec<String> = reserved.iter().map(|r| format!("\"{r}\"")).collect();
    let ipv6 = ipv6.map_or_else(String::new, |p| format!("ipv6 = \"{p}\"\n"));
    format!(
        "[[pool]]\nid = \"{id}\"\nlocation = \"{location}\"\nnetwork = \"{network}\"\n\
         gateway = \"{gateway}\"\nreserved = [{}]\n{ipv6}",
        reserved.join(", ")
    )
}

/// Pool `p` in Tampa: 10.0.0.0/24, gateway .1.
fn tampa_pool() -> String {
    pool(
        "p",
        "Tampa, Florida (USA)",
        "10.0.0.0/24",
        "10.0.0.1",
        &[],
        None,
    )
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net6(s: &str) -> Ipv6Net {
    s.parse().unwrap()
}

fn id(s: &str) -> VpsId {
    s.parse().unwrap()
}

/// A request for a `small` VPS of c-0001 on 2026-01-15.
fn req(location: &str) -> Request {
    Request {
        customer: "c-0001".parse().unwrap(),
        product: "small".parse().unwrap(),
        location: location.to_owned(),
        os: None,
        appliance: None,
        hostname: None,
        id: None,
        today: date(2026, 1, 15),
    }
}

fn place_ok(inv: &Inventory, r: &Request) -> Placement {
    place(inv, r).unwrap_or_else(|e| panic!("placement failed: {e}"))
}

/// Adds the placed VPS to the inventory; the inventory must stay valid.
fn commit(inv: &mut Inventory, p: &Placement) {
    assert!(
        !inv.vps.contains_key(&p.id),
        "{} was handed out twice",
        p.id
    );
    inv.vps.insert(p.id.clone(), p.vps.clone());
    let d = inv.check();
    assert!(
        d.is_empty(),
        "the inventory is invalid after placing {}:\n{d}",
        p.id
    );
}

/// Places and commits; returns the placement.
fn place_commit(inv: &mut Inventory, r: &Request) -> Placement {
    let p = place_ok(inv, r);
    commit(inv, &p);
    p
}

fn no_capacity_reasons(e: PlacementError) -> Vec<String> {
    match e {
        PlacementError::NoCapacity { reasons, .. } => reasons,
        other => panic!("expected NoCapacity, got {other:?}"),
    }
}

// ---------------------------------------------------------------- location

/// Two nodes whose own location names differ from their pools' location names.
fn two_cities() -> Fleet {
    let f = Fleet::new(&[
        pool(
            "tampa-1",
            "Tampa, Florida (USA)",
            "10.1.0.0/24",
            "10.1.0.1",
            &[],
            None,
        ),
        pool(
            "sea-1",
            "Seattle, WA (USA)",
            "10.2.0.0/24",
            "10.2.0.1",
            &[],
            None,
        ),
    ]);
    f.node("ta", "Tampa", &["tampa-1"])
        .node("se", "Seattle", &["sea-1"]);
    f
}

#[test]
fn location_matches_pool_location_case_insensitively() {
    let f = two_cities();
    let inv = f.load();
    let p = place_ok(&inv, &req("tampa, FLORIDA (usa)"));
    assert_eq!(p.node.as_str(), "ta");
    assert_eq!(p.pool.as_str(), "tampa-1");
    let p = place_ok(&inv, &req("Seattle, WA (USA)"));
    assert_eq!(p.node.as_str(), "se");
    assert_eq!(p.pool.as_str(), "sea-1");
}

#[test]
fn location_matches_node_location_case_insensitively() {
    let f = two_cities();
    let inv = f.load();
    assert_eq!(place_ok(&inv, &req("SEATTLE")).node.as_str(), "se");
    assert_eq!(place_ok(&inv, &req("tampa")).node.as_str(), "ta");
}

#[test]
fn location_matches_pool_id() {
    let f = two_cities();
    let inv = f.load();
    let p = place_ok(&inv, &req("sea-1"));
    assert_eq!((p.node.as_str(), p.pool.as_str()), ("se", "sea-1"));
    let p = place_ok(&inv, &req("tampa-1"));
    assert_eq!((p.node.as_str(), p.pool.as_str()), ("ta", "tampa-1"));
}

#[test]
fn unknown_location_lists_the_known_ones() {
    let f = two_cities();
    let inv = f.load();
    let e = place(&inv, &req("Atlantis")).unwrap_err();
    assert_eq!(
        e,
        PlacementError::UnknownLocation {
            location: "Atlantis".into(),
            known: vec![
                "Seattle".into(),
                "Seattle, WA (USA)".into(),
                "Tampa".into(),
                "Tampa, Florida (USA)".into(),
            ],
        }
    );
    assert_eq!(
        e.to_string(),
        "unknown location `Atlantis` (known: Seattle, Seattle, WA (USA), Tampa, Tampa, Florida (USA))"
    );
}

#[test]
fn a_location_without_nodes_is_not_called_unknown() {
    let f = two_cities();
    f.write(
        "pools.toml",
        &[
            pool(
                "tampa-1",
                "Tampa, Florida (USA)",
                "10.1.0.0/24",
                "10.1.0.1",
                &[],
                None,
            ),
            pool(
                "sea-1",
                "Seattle, WA (USA)",
                "10.2.0.0/24",
                "10.2.0.1",
                &[],
                None,
            ),
            pool("atl-1", "Atlantis", "10.3.0.0/24", "10.3.0.1", &[], None),
        ]
        .join("\n"),
    );
    let inv = f.load();
    // Today: `unknown location `Atlantis` (known: Atlantis, Seattle, ...)`.
    match place(&inv, &req("Atlantis")).unwrap_err() {
        PlacementError::UnknownLocation { known, .. } => assert!(
            !known.iter().any(|k| k == "Atlantis"),
            "`Atlantis` is called unknown and listed as known: {known:?}"
        ),
        PlacementError::NoCapacity { .. } => {}
        other => panic!("unexpected {other:?}"),
    }
}

// ---------------------------------------------------------------- node choice

#[test]
fn maintenance_nodes_are_skipped() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node_with("a", "Tampa", &["p"], ROOMY, "maintenance = true")
        .node("b", "Tampa", &["p"])
        .vps("xen01", "b", "small", &["10.0.0.2"], "active");
    let inv = f.load();
    // `a` is empty and has the lowest id, but is in maintenance.
    let p = place_ok(&inv, &req("Tampa"));
    assert_eq!(p.node.as_str(), "b");

    f.node_with("b", "Tampa", &["p"], ROOMY, "maintenance = true");
    let inv = f.load();
    let e = place(&inv, &req("Tampa")).unwrap_err();
    assert_eq!(
        e,
        PlacementError::NoCapacity {
            location: "Tampa".into(),
            product: "small".parse().unwrap(),
            reasons: vec!["a is in maintenance".into(), "b is in maintenance".into()],
        }
    );
    assert_eq!(
        e.to_string(),
        "no node in `Tampa` can take a small VPS: a is in maintenance; b is in maintenance"
    );
}

#[test]
fn full_nodes_are_skipped_and_every_reason_is_listed() {
    let tiny = pool(
        "tiny",
        "Tampa, Florida (USA)",
        "10.9.0.0/30",
        "10.9.0.1",
        &[],
        None,
    );
    let f = Fleet::new(&[tampa_pool(), tiny]);
    // a: RAM for two `small`, both taken.
    f.node_with(
        "a",
        "Tampa",
        &["p"],
        r#"{ ram = "2 GiB", disk = "100 GiB", vcpus = 8 }"#,
        "",
    )
    .vps("xen01", "a", "small", &["10.0.0.2"], "active")
    .vps("xen02", "a", "small", &["10.0.0.3"], "suspended")
    // b: room, but its /30 has one usable address, taken.
    .node("b", "Tampa", &["tiny"])
    .vps("xen03", "b", "small", &["10.9.0.2"], "active")
    // c: room for exactly one `small` (disk 10 GiB).
    .node_with(
        "c",
        "Tampa",
        &["p"],
        r#"{ ram = "8 GiB", disk = "10 GiB", vcpus = 8 }"#,
        "",
    );
    let mut inv = f.load();
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!(p.node.as_str(), "c", "a is full and b has no address");
    let e = place(&inv, &req("Tampa")).unwrap_err();
    assert_eq!(
        no_capacity_reasons(e),
        ["a is full", "b has no free IPv4 address", "c is full"]
    );
}

#[test]
fn a_destroyed_vps_frees_its_resources() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node_with(
        "a",
        "Tampa",
        &["p"],
        r#"{ ram = "1 GiB", disk = "100 GiB", vcpus = 8 }"#,
        "",
    )
    .vps("xen01", "a", "small", &["10.0.0.2"], "destroyed");
    let mut inv = f.load();
    assert_eq!(place_commit(&mut inv, &req("Tampa")).node.as_str(), "a");
    assert_eq!(
        no_capacity_reasons(place(&inv, &req("Tampa")).unwrap_err()),
        ["a is full"]
    );
}

#[test]
fn overcommit_raises_what_may_be_sold() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node_with(
        "a",
        "Tampa",
        &["p"],
        r#"{ ram = "1 GiB", disk = "100 GiB", vcpus = 1 }"#,
        "overcommit = { ram = 2, vcpus = 2.5 }",
    );
    let mut inv = f.load();
    place_commit(&mut inv, &req("Tampa"));
    place_commit(&mut inv, &req("Tampa"));
    // RAM: 1 GiB × 2 = two `small`; vCPUs would allow floor(2.5) = 2 as well.
    assert_eq!(
        no_capacity_reasons(place(&inv, &req("Tampa")).unwrap_err()),
        ["a is full"]
    );
}

#[test]
fn the_least_loaded_node_is_chosen() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"])
        .node("b", "Tampa", &["p"])
        .node("c", "Tampa", &["p"])
        .vps("xen01", "a", "small", &["10.0.0.2"], "active")
        .vps("xen02", "a", "small", &["10.0.0.3"], "active")
        .vps("xen03", "b", "small", &["10.0.0.4"], "active")
        .vps("xen04", "c", "small", &["10.0.0.5"], "active")
        .vps("xen05", "c", "small", &["10.0.0.6"], "active");
    let mut inv = f.load();
    assert_eq!(place_commit(&mut inv, &req("Tampa")).node.as_str(), "b");
    // Now all three hold two: the tie goes to the lowest id.
    assert_eq!(place_commit(&mut inv, &req("Tampa")).node.as_str(), "a");
    assert_eq!(place_commit(&mut inv, &req("Tampa")).node.as_str(), "b");
    assert_eq!(place_commit(&mut inv, &req("Tampa")).node.as_str(), "c");
}

#[test]
fn ties_go_to_the_lowest_node_id() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("n2", "Tampa", &["p"])
        .node("n10", "Tampa", &["p"])
        .node("n3", "Tampa", &["p"]);
    let inv = f.load();
    // Ids compare as text: "n10" < "n2" < "n3".
    assert_eq!(place_ok(&inv, &req("Tampa")).node.as_str(), "n10");
}

#[test]
fn load_is_the_fullest_resource_not_the_vps_count() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"])
        .node("b", "Tampa", &["p"])
        // a: one VPS, but 90 of its 100 GiB of disk.
        .vps("xen01", "a", "disky", &["10.0.0.2"], "active")
        // b: three VPSes, 3 of 8 GiB RAM, 30 of 100 GiB disk.
        .vps("xen02", "b", "small", &["10.0.0.3"], "active")
        .vps("xen03", "b", "small", &["10.0.0.4"], "active")
        .vps("xen04", "b", "small", &["10.0.0.5"], "active");
    let inv = f.load();
    assert_eq!(place_ok(&inv, &req("Tampa")).node.as_str(), "b");
}

// ---------------------------------------------------------------- IPv4

#[test]
fn lowest_free_ipv4_skips_reserved_and_used_but_not_destroyed() {
    let f = Fleet::new(&[pool(
        "p",
        "Tampa",
        "10.0.0.0/28",
        "10.0.0.1",
        &["10.0.0.2-10.0.0.4", "10.0.0.6"],
        None,
    )]);
    f.node("a", "Tampa", &["p"])
        .node("b", "Tampa", &["p"])
        .vps("xen01", "a", "small", &["10.0.0.5"], "active")
        // On another node of the same pool, suspended: still holds its address.
        .vps("xen02", "b", "small", &["10.0.0.7"], "suspended")
        // Destroyed: its address is free again.
        .vps("xen03", "b", "small", &["10.0.0.8"], "destroyed");
    let mut inv = f.load();
    let got: Vec<Ipv4Addr> = (0..3)
        .map(|_| place_commit(&mut inv, &req("Tampa")).ipv4)
        .collect();
    assert_eq!(got, [ip("10.0.0.8"), ip("10.0.0.9"), ip("10.0.0.10")]);
}

#[test]
fn network_gateway_and_broadcast_are_never_handed_out() {
    // Gateway at the top: .0 is the network, .6 the gateway, .7 the broadcast.
    let f = Fleet::new(&[pool("p", "Tampa", "10.0.0.0/29", "10.0.0.6", &[], None)]);
    f.node("a", "Tampa", &["p"]);
    let mut inv = f.load();
    let got: Vec<Ipv4Addr> = (0..5)
        .map(|_| place_commit(&mut inv, &req("Tampa")).ipv4)
        .collect();
    assert_eq!(
        got,
        ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"].map(ip)
    );
    assert_eq!(
        no_capacity_reasons(place(&inv, &req("Tampa")).unwrap_err()),
        ["a has no free IPv4 address"]
    );
}

#[test]
fn the_next_pool_of_the_node_is_used_when_the_first_is_full() {
    let f = Fleet::new(&[
        pool("p1", "Tampa", "10.9.0.0/30", "10.9.0.1", &[], None),
        pool(
            "p2",
            "Tampa",
            "10.8.0.0/29",
            "10.8.0.1",
            &["10.8.0.2"],
            None,
        ),
    ]);
    f.node("a", "Tampa", &["p1", "p2"]);
    let mut inv = f.load();
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!((p.pool.as_str(), p.ipv4), ("p1", ip("10.9.0.2")));
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!((p.pool.as_str(), p.ipv4), ("p2", ip("10.8.0.3")));
}

/// On a KVM node with `network = "user"`, the last octet of the first IPv4 picks the SSH
/// forward port: an address whose port another VPS of the node has is passed over.
#[test]
fn a_user_mode_kvm_node_skips_addresses_whose_forward_port_is_taken() {
    let f = Fleet::new(&[
        pool("p1", "Tampa", "10.1.0.0/24", "10.1.0.1", &[], None),
        pool("p2", "Tampa", "10.2.0.0/24", "10.2.0.1", &[], None),
    ]);
    f.write(
        "inventory/nodes/a.toml",
        &format!(
            "address = \"192.0.2.10\"\nhost_key = \"{HOST_KEY}\"\nlocation = \"Tampa\"\n\
             country = \"US\"\nhypervisor = \"kvm\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\n\
             pools = [\"p1\", \"p2\"]\ncapacity = {ROOMY}\n\n\
             [kvm]\naccel = \"tcg\"\nnetwork = \"user\"\nforward_base = 10000\n"
        ),
    )
    // Port 10002 is xen01's.
    .vps("xen01", "a", "small", &["10.2.0.2"], "active");
    let mut inv = f.load();
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!((p.pool.as_str(), p.ipv4), ("p1", ip("10.1.0.3")));
    let node = &inv.nodes[&p.node];
    assert_eq!(node.forward_port(&p.vps), Some(10003));
    assert_eq!(node.forward_port(&inv.vps[&id("xen01")]), Some(10002));
}

#[test]
fn pools_of_the_asked_location_come_first() {
    let f = Fleet::new(&[
        pool("sea-1", "Seattle", "10.2.0.0/24", "10.2.0.1", &[], None),
        pool("tpa-1", "Tampa", "10.1.0.0/24", "10.1.0.1", &[], None),
    ]);
    f.node("a", "Tampa", &["sea-1", "tpa-1"]);
    let inv = f.load();
    let p = place_ok(&inv, &req("tampa"));
    assert_eq!((p.pool.as_str(), p.ipv4), ("tpa-1", ip("10.1.0.2")));
    let p = place_ok(&inv, &req("tpa-1"));
    assert_eq!(p.pool.as_str(), "tpa-1");
    let p = place_ok(&inv, &req("Seattle"));
    assert_eq!(p.pool.as_str(), "sea-1");
}

#[test]
fn the_nodes_own_address_is_never_handed_out() {
    let f = Fleet::new(&[pool("p", "Tampa", "10.0.0.0/29", "10.0.0.1", &[], None)]);
    f.node_at("a", "10.0.0.2", "Tampa", &["p"], ROOMY, "");
    // A dom0's own address inside a pool must be reserved there: the inventory is refused
    // until it is, so placement can never hand it out.
    match Inventory::load(f.dir.path()) {
        Err(model::LoadError::Invalid(d)) => {
            let text = d.to_string();
            assert!(
                text.contains("address: the node's address 10.0.0.2 lies in pool `p`"),
                "{text}"
            );
        }
        other => panic!("expected the unreserved node address to be refused, got {other:?}"),
    }
}

#[test]
fn a_pools_dns_resolver_is_never_handed_out() {
    let mut p = pool("p", "Tampa", "10.0.0.0/29", "10.0.0.1", &[], None);
    p.push_str("dns = [\"10.0.0.2\"]\n");
    let f = Fleet::new(&[p]);
    f.node("a", "Tampa", &["p"]);
    let inv = f.load();
    assert_ne!(place_ok(&inv, &req("Tampa")).ipv4, ip("10.0.0.2"));
}

// ---------------------------------------------------------------- IPv6

#[test]
fn lowest_free_ipv6_64_skips_the_first_and_used_ones() {
    let f = Fleet::new(&[pool(
        "p",
        "Tampa",
        "10.0.0.0/24",
        "10.0.0.1",
        &[],
        Some("2001:db8:5::/56"),
    )]);
    f.node("a", "Tampa", &["p"]).node("b", "Tampa", &["p"]);
    let mut inv = f.load();
    let p = place_commit(&mut inv, &req("Tampa"));
    // 2001:db8:5::/64 is kept for the routers.
    assert_eq!(p.ipv6, Some(net6("2001:db8:5:1::/64")));
    assert_eq!(
        p.vps.ips,
        [
            VpsAddr::V4(ip("10.0.0.2")),
            VpsAddr::V6(net6("2001:db8:5:1::/64"))
        ]
    );

    let f = Fleet::new(&[pool(
        "p",
        "Tampa",
        "10.0.0.0/24",
        "10.0.0.1",
        &[],
        Some("2001:db8:5::/56"),
    )]);
    f.node("a", "Tampa", &["p"])
        .node("b", "Tampa", &["p"])
        .vps(
            "xen01",
            "a",
            "small",
            &["10.0.0.2", "2001:db8:5:1::/64"],
            "active",
        )
        .vps(
            "xen02",
            "b",
            "small",
            &["10.0.0.3", "2001:db8:5:2::/64"],
            "destroyed",
        )
        .vps(
            "xen03",
            "b",
            "small",
            &["10.0.0.4", "2001:db8:5:3::/64"],
            "suspended",
        );
    let mut inv = f.load();
    let got: Vec<Option<Ipv6Net>> = (0..2)
        .map(|_| place_commit(&mut inv, &req("Tampa")).ipv6)
        .collect();
    assert_eq!(
        got,
        [
            Some(net6("2001:db8:5:2::/64")),
            Some(net6("2001:db8:5:4::/64"))
        ]
    );
}

#[test]
fn a_pool_without_ipv6_gives_no_64() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"]);
    let inv = f.load();
    let p = place_ok(&inv, &req("Tampa"));
    assert_eq!(p.ipv6, None);
    assert_eq!(p.vps.ips, [VpsAddr::V4(ip("10.0.0.2"))]);
}

#[test]
fn ipv6_comes_from_the_pool_the_ipv4_came_from() {
    let f = Fleet::new(&[
        pool("p1", "Tampa", "10.9.0.0/30", "10.9.0.1", &[], None),
        pool(
            "p2",
            "Tampa",
            "10.8.0.0/24",
            "10.8.0.1",
            &[],
            Some("2001:db8:8::/48"),
        ),
    ]);
    f.node("a", "Tampa", &["p1", "p2"]);
    let mut inv = f.load();
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!((p.pool.as_str(), p.ipv6), ("p1", None));
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!(
        (p.pool.as_str(), p.ipv6),
        ("p2", Some(net6("2001:db8:8:1::/64")))
    );
}

#[test]
fn a_vps_on_an_ipv6_pool_always_gets_a_64() {
    // A /63 holds two /64s; the first is kept for the routers, so one VPS gets the other.
    let f = Fleet::new(&[pool(
        "p",
        "Tampa",
        "10.0.0.0/24",
        "10.0.0.1",
        &[],
        Some("2001:db8:7::/63"),
    )]);
    f.node("a", "Tampa", &["p"]);
    let mut inv = f.load();
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!(p.ipv6, Some(net6("2001:db8:7:1::/64")));
    // Today the second VPS is placed with an IPv4 address only.
    if let Ok(p) = place(&inv, &req("Tampa")) {
        assert!(p.ipv6.is_some(), "placed on an IPv6 pool without a /64");
    }
}

// ---------------------------------------------------------------- ids

#[test]
fn ids_fill_the_lowest_gap() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"])
        .vps("xen01", "a", "small", &["10.0.0.2"], "active")
        .vps("xen03", "a", "small", &["10.0.0.3"], "active")
        // A destroyed VPS keeps its file, so its id stays taken.
        .vps("xen04", "a", "small", &["10.0.0.4"], "destroyed");
    let mut inv = f.load();
    let got: Vec<String> = (0..3)
        .map(|_| place_commit(&mut inv, &req("Tampa")).id.to_string())
        .collect();
    assert_eq!(got, ["xen02", "xen05", "xen06"]);
}

#[test]
fn ids_use_the_configured_prefix() {
    let f = Fleet::new(&[tampa_pool()]);
    f.settings("[vps]\nid_prefix = \"vm\"\n")
        .node("a", "Tampa", &["p"])
        .vps("xen01", "a", "small", &["10.0.0.2"], "active");
    let mut inv = f.load();
    let p = place_commit(&mut inv, &req("Tampa"));
    assert_eq!(p.id, id("vm01"));
    assert_eq!(p.vps.id, id("vm01"));
    assert_eq!(p.vps.origin.file(), "inventory/vps/vm01.toml");
    assert_eq!(place_commit(&mut inv, &req("Tampa")).id, id("vm02"));
}

#[test]
fn ids_go_past_99() {
    let f = Fleet::new(&[pool("p", "Tampa", "10.0.0.0/16", "10.0.0.1", &[], None)]);
    f.node_with(
        "a",
        "Tampa",
        &["p"],
        r#"{ ram = "1 TiB", disk = "10 TiB", vcpus = 1000 }"#,
        "",
    );
    for n in 1..=99 {
        f.vps(
            &format!("xen{n:02}"),
            "a",
            "small",
            &[&format!("10.0.1.{n}")],
            "active",
        );
    }
    let inv = f.load();
    assert_eq!(place_ok(&inv, &req("Tampa")).id, id("xen100"));
}

#[test]
fn a_requested_id_is_used_unless_taken() {
    let f = Fleet::new(&[tampa_pool()]);
    f.settings("[vps]\ndomain = \"vps.example.net\"\n")
        .node("a", "Tampa", &["p"])
        .vps("xen01", "a", "small", &["10.0.0.2"], "active")
        .vps("xen02", "a", "small", &["10.0.0.3"], "destroyed");
    let inv = f.load();
    for taken in ["xen01", "xen02"] {
        let r = Request {
            id: Some(id(taken)),
            ..req("Tampa")
        };
        let e = place(&inv, &r).unwrap_err();
        assert_eq!(e, PlacementError::IdTaken(id(taken)));
        assert_eq!(e.to_string(), format!("VPS id `{taken}` is already in use"));
    }
    let r = Request {
        id: Some(id("web-1")),
        ..req("Tampa")
    };
    let p = place_ok(&inv, &r);
    assert_eq!(p.id, id("web-1"));
    assert_eq!(p.vps.hostname.as_str(), "web-1.vps.example.net");
    assert_eq!(p.vps.origin.file(), "inventory/vps/web-1.toml");
}

// ---------------------------------------------------------------- request errors

#[test]
fn a_renewal_product_is_not_a_plan() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"]);
    let inv = f.load();
    let r = Request {
        product: "small-3m".parse().unwrap(),
        ..req("Tampa")
    };
    let e = place(&inv, &r).unwrap_err();
    assert_eq!(
        e,
        PlacementError::NotAPlan("small-3m".parse().unwrap(), "small".parse().unwrap())
    );
    assert_eq!(
        e.to_string(),
        "`small-3m` is a renewal product; order the plan it renews (`small`)"
    );
}

#[test]
fn unknown_customer_and_product_are_refused() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"]);
    let inv = f.load();
    let r = Request {
        customer: "c-0404".parse().unwrap(),
        ..req("Tampa")
    };
    assert_eq!(
        place(&inv, &r).unwrap_err(),
        PlacementError::UnknownCustomer("c-0404".parse().unwrap())
    );
    let r = Request {
        product: "huge".parse().unwrap(),
        ..req("Tampa")
    };
    let e = place(&inv, &r).unwrap_err();
    assert_eq!(e, PlacementError::UnknownProduct("huge".parse().unwrap()));
    assert_eq!(e.to_string(), "unknown product `huge`");
}

// ---------------------------------------------------------------- the VPS

#[test]
fn hostname_defaults_to_id_dot_domain() {
    let f = Fleet::new(&[tampa_pool()]);
    f.settings("[vps]\ndomain = \"vps.example.net\"\n")
        .node("a", "Tampa", &["p"]);
    let inv = f.load();
    assert_eq!(
        place_ok(&inv, &req("Tampa")).vps.hostname.as_str(),
        "xen01.vps.example.net"
    );
}

#[test]
fn hostname_defaults_to_the_id_without_a_domain() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"]);
    let inv = f.load();
    assert_eq!(place_ok(&inv, &req("Tampa")).vps.hostname.as_str(), "xen01");
}

#[test]
fn a_requested_hostname_os_and_appliance_are_kept() {
    let f = Fleet::new(&[tampa_pool()]);
    f.settings("[vps]\ndomain = \"vps.example.net\"\ndefault_os = \"alpine-3\"\n")
        .node("a", "Tampa", &["p"]);
    let mut inv = f.load();
    let p = place_ok(&inv, &req("Tampa"));
    assert_eq!(p.vps.os.as_str(), "alpine-3", "the settings' default OS");
    assert_eq!(p.vps.appliance, None);

    let h: Hostname = "Shop.Example.COM".parse().unwrap();
    let r = Request {
        hostname: Some(h.clone()),
        os: Some("debian-13".parse().unwrap()),
        appliance: Some("openvpn".parse().unwrap()),
        customer: "c-0002".parse().unwrap(),
        ..req("Tampa")
    };
    let p = place_commit(&mut inv, &r);
    assert_eq!(p.vps.hostname, h);
    assert_eq!(p.vps.hostname.as_str(), "shop.example.com");
    assert_eq!(p.vps.os.as_str(), "debian-13");
    assert_eq!(
        p.vps.appliance.as_ref().map(|a| a.as_str()),
        Some("openvpn")
    );
    assert_eq!(p.vps.customer.as_str(), "c-0002");
}

#[test]
fn the_vps_is_complete_and_consistent_with_the_placement() {
    let f = Fleet::new(&[pool(
        "p",
        "Tampa",
        "10.0.0.0/24",
        "10.0.0.1",
        &[],
        Some("2001:db8:5::/48"),
    )]);
    f.node("a", "Tampa", &["p"]);
    let inv = f.load();
    let p = place_ok(&inv, &req("Tampa"));
    let v = &p.vps;
    assert_eq!(v.id, p.id);
    assert_eq!(v.node, p.node);
    assert_eq!(v.customer.as_str(), "c-0001");
    assert_eq!(v.product.as_str(), "small");
    assert_eq!(
        v.ips,
        [VpsAddr::V4(p.ipv4), VpsAddr::V6(p.ipv6.unwrap())].to_vec()
    );
    assert_eq!(v.power, Power::Running);
    assert_eq!(v.state, State::Active);
    assert_eq!(v.created, date(2026, 1, 15));
    assert_eq!(v.expires, date(2026, 2, 15));
    assert_eq!(v.destroyed, None);
    assert_eq!(v.actions, model::Actions::default());
    assert_eq!(v.monitor, model::Monitor::default());
    assert_eq!(v.origin.file(), "inventory/vps/xen01.toml");
    assert!(inv.vps.is_empty(), "place never changes the inventory");
}

#[test]
fn expires_adds_the_period_clamped_to_the_month_end() {
    let f = Fleet::new(&[tampa_pool()]);
    f.node("a", "Tampa", &["p"]);
    let inv = f.load();
    for (product, today, expires) in [
        ("small", date(2024, 1, 31), date(2024, 2, 29)),
        ("small", date(2023, 1, 31), date(2023, 2, 28)),
        ("small", date(2024, 3, 15), date(2024, 4, 15)),
        ("small", date(2024, 12, 31), date(2025, 1, 31)),
        ("quarter", date(2024, 11, 30), date(2025, 2, 28)),
        ("quarter", date(2024, 1, 31), date(2024, 4, 30)),
    ] {
        let r = Request {
            product: product.parse().unwrap(),
            today,
            ..req("Tampa")
        };
        let p = place_ok(&inv, &r);
        assert_eq!(p.vps.created, today);
        assert_eq!(p.vps.expires, expires, "{product} from {today}");
    }
}

// ---------------------------------------------------------------- determinism and validity

fn busy_fleet() -> Fleet {
    let f = Fleet::new(&[
        pool(
            "p1",
            "Tampa",
            "10.0.0.0/27",
            "10.0.0.1",
            &["10.0.0.2-10.0.0.5"],
            Some("2001:db8:1::/56"),
        ),
        pool("p2", "Tampa", "10.0.1.0/28", "10.0.1.14", &[], None),
    ]);
    f.settings("[vps]\ndomain = \"vps.example.net\"\n")
        .node("a", "Tampa", &["p1"])
        .node("b", "Tampa", &["p2", "p1"])
        .node_with("c", "Tampa", &["p1"], ROOMY, "maintenance = true")
        .vps(
            "xen01",
            "a",
            "small",
            &["10.0.0.6", "2001:db8:1:1::/64"],
            "active",
        )
        .vps("xen02", "b", "disky", &["10.0.1.1"], "active")
        .vps("xen04", "b", "small", &["10.0.1.2"], "destroyed");
    f
}

#[test]
fn placement_is_deterministic() {
    let f = busy_fleet();
    let mut inv = f.load();
    let mut again = f.load();
    // 8 VPSes fit (see below): every one of them.
    for _ in 0..8 {
        let r = req("Tampa");
        let p = place_ok(&inv, &r);
        assert_eq!(p, place_ok(&inv, &r), "same inventory, same request");
        assert_eq!(p, place_ok(&inv.clone(), &r), "a clone");
        assert_eq!(p, place_ok(&again, &r), "the same files loaded again");
        commit(&mut inv, &p);
        commit(&mut again, &p);
    }
}

#[test]
fn the_inventory_stays_valid_until_the_fleet_is_full() {
    let f = busy_fleet();
    let mut inv = f.load();
    let mut placed = 0;
    loop {
        match place(&inv, &req("Tampa")) {
            Ok(p) => {
                commit(&mut inv, &p);
                placed += 1;
            }
            Err(e) => {
                // a and b: 8 GiB RAM each, minus what is there; c is in maintenance.
                assert_eq!(
                    no_capacity_reasons(e),
                    ["a is full", "b is full", "c is in maintenance"]
                );
                break;
            }
        }
        assert!(placed < 100, "placement never stops");
    }
    // a: 8 - 1 = 7; b: 8 GiB RAM minus 256 MiB is room for 7, 90 GiB disk leaves room for 1.
    assert_eq!(placed, 7 + 1);
}

#[test]
fn the_example_fleet_stays_valid_after_a_placement_in_each_location() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut inv = load(&top);
    let locations: Vec<String> = inv.pools.values().map(|p| p.location.clone()).collect();
    assert!(!locations.is_empty());
    let customer = inv.customers.keys().next().unwrap().clone();
    let product = inv
        .products
        .values()
        .find(|p| p.resources().is_some())
        .unwrap()
        .id
        .clone();
    for location in locations {
        let r = Request {
            customer: customer.clone(),
            product: product.clone(),
            ..req(&location)
        };
        let p = place_commit(&mut inv, &r);
        assert!(
            inv.pools[&p.pool].network.contains(&p.ipv4),
            "{location}: {} outside {}",
            p.ipv4,
            p.pool
        );
    }
}
