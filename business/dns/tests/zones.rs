#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The zones of the example fleet and of variants of it built in memory: RFC 2317 names, per-IP
//! zones, IPv6 nibble zones, customer names, serials, and the plan against a server's folder.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use model::settings::{DnsBackend, DnsServer};
use model::values::{RdnsZone, State};
use model::{Inventory, PoolId, VpsId};

fn fleet() -> Inventory {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Inventory::load(&top).unwrap_or_else(|e| panic!("{e}"))
}

fn day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).unwrap()
}

fn text(built: &[dns::Built]) -> String {
    built
        .iter()
        .map(|b| format!("==> {}\n{}", dns::file_name(&b.name), b.text))
        .collect()
}

fn zone<'a>(built: &'a [dns::Built], name: &str) -> &'a dns::Built {
    built
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no zone {name} in {:?}", names(built)))
}

fn names(built: &[dns::Built]) -> Vec<&str> {
    built.iter().map(|b| b.name.as_str()).collect()
}

fn pool<'a>(inv: &'a mut Inventory, id: &str) -> &'a mut model::Pool {
    inv.pools.get_mut(&id.parse::<PoolId>().unwrap()).unwrap()
}

fn vps<'a>(inv: &'a mut Inventory, id: &str) -> &'a mut model::Vps {
    inv.vps.get_mut(&id.parse::<VpsId>().unwrap()).unwrap()
}

/// The example fleet: Tampa (a /25, per IP) has a zone per address; Seattle's /24 one zone;
/// Shanghai's /26 an RFC 2317 zone; xen02's /64 a zone of its own (Tampa is per IP); the
/// forward zone of vps.example.net has every VPS.
#[test]
fn example_fleet_zones() {
    let built = dns::build(&fleet(), &BTreeMap::new(), day()).unwrap();
    insta::assert_snapshot!(text(&built));
}

#[test]
fn a_pool_smaller_than_a_24_gets_an_rfc_2317_zone_with_every_address() {
    let mut inv = fleet();
    pool(&mut inv, "tampa-1").rdns_zone = RdnsZone::PerPool;
    let built = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    let z = zone(&built, "0-25.255.255.66.in-addr.arpa");
    assert!(
        z.text
            .contains("\n10\tIN\tPTR\ttest.acme-hosting.example.com.\n"),
        "{}",
        z.text
    );
    assert!(
        z.text.contains("\n34\tIN\tPTR\txen02.example.net.\n"),
        "{}",
        z.text
    );
    assert_eq!(z.records, 2);
    // Per pool, the /48 is one zone: xen02's host address is 20 nibbles below it.
    let v6 = zone(&built, "6.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    assert!(
        v6.text
            .contains("\n1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.2.0.0\tIN\tPTR\txen02.example.net.\n"),
        "{}",
        v6.text
    );
    assert!(!names(&built).contains(&"34.255.255.66.in-addr.arpa"));
}

#[test]
fn octet_and_nibble_boundaries_split_larger_pools() {
    let mut inv = fleet();
    let p = pool(&mut inv, "seattle-1");
    p.network = "117.255.252.0/22".parse().unwrap();
    p.ipv6 = Some("2001:db8:40::/46".parse().unwrap());
    let built = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    let names = names(&built);
    for z in [
        "252.255.117.in-addr.arpa",
        "253.255.117.in-addr.arpa",
        "254.255.117.in-addr.arpa",
        "255.255.117.in-addr.arpa",
        "0.4.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
        "3.4.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
    ] {
        assert!(names.contains(&z), "{z} not in {names:?}");
    }
    assert!(!names.contains(&"4.4.0.0.8.b.d.0.1.0.0.2.ip6.arpa"));
}

#[test]
fn the_customers_names_replace_the_host_name() {
    let mut inv = fleet();
    let v = vps(&mut inv, "xen02");
    v.ptr.insert(
        "66.255.255.34".parse().unwrap(),
        "mail.example.net".parse().unwrap(),
    );
    v.ptr.insert(
        "2001:db8:66:22::25".parse().unwrap(),
        "mx.example.net".parse().unwrap(),
    );
    let built = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    let z = zone(&built, "34.255.255.66.in-addr.arpa");
    assert!(
        z.text.ends_with("\n@\tIN\tPTR\tmail.example.net.\n"),
        "{}",
        z.text
    );
    let v6 = &zone(&built, "2.2.0.0.6.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa").text;
    // The host address keeps the host name; the named address comes after it (address order).
    assert!(
        v6.ends_with("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0\tIN\tPTR\txen02.example.net.\n5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0\tIN\tPTR\tmx.example.net.\n"),
        "{v6}"
    );
}

#[test]
fn a_destroyed_vps_has_no_records_and_its_own_zones_go() {
    let mut inv = fleet();
    vps(&mut inv, "xen02").state = State::Destroyed;
    let built = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    let names = names(&built);
    assert!(!names.contains(&"34.255.255.66.in-addr.arpa"), "{names:?}");
    assert!(!names.contains(&"2.2.0.0.6.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa"));
    assert!(!zone(&built, "vps.example.net").text.contains("xen02"));
}

#[test]
fn without_nameservers_nothing_is_built() {
    let mut inv = fleet();
    inv.settings.dns.nameservers.clear();
    assert_eq!(
        dns::build(&inv, &BTreeMap::new(), day()),
        Err(dns::DnsError::NoNameservers)
    );
}

#[test]
fn the_contact_defaults_to_the_mail_sender_and_escapes_dots() {
    let mut inv = fleet();
    inv.settings.dns.contact = None;
    inv.settings.mail.from = "dns.admin@example.org".parse().unwrap();
    let built = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    assert!(
        built[0].text.contains("\tdns\\.admin.example.org.\t"),
        "{}",
        built[0].text
    );
}

/// Rebuilding against the last output changes nothing, whatever the day; a change moves the
/// serial of that zone only, and forward.
#[test]
fn serials_stay_until_a_zone_changes_then_grow() {
    let inv = fleet();
    let first = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    let previous: BTreeMap<String, String> = first
        .iter()
        .map(|b| (b.name.clone(), b.text.clone()))
        .collect();
    let later = NaiveDate::from_ymd_opt(2026, 5, 9).unwrap();
    assert_eq!(dns::build(&inv, &previous, later).unwrap(), first);

    let mut changed = inv.clone();
    vps(&mut changed, "xen04").ptr.insert(
        "117.255.255.10".parse().unwrap(),
        "shop.example.com".parse().unwrap(),
    );
    let second = dns::build(&changed, &previous, day()).unwrap();
    for (a, b) in first.iter().zip(&second) {
        if a.name == "255.255.117.in-addr.arpa" {
            assert_eq!((a.serial, b.serial), (2026030100, 2026030101));
        } else {
            assert_eq!(a, b);
        }
    }
}

fn server(backend: DnsBackend) -> DnsServer {
    DnsServer {
        address: "192.0.2.53".parse().unwrap(),
        port: 22,
        user: "gitvps".parse().unwrap(),
        sudo: backend == DnsBackend::Bind,
        host_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81"
                .parse()
                .unwrap(),
        dir: "/var/lib/gitvps-dns".parse().unwrap(),
        backend,
        control: Some("/run/knot/knot.sock".parse().unwrap()),
    }
}

/// The listing a server's folder gives, in the framing of `read_command`.
fn listing(files: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, body) in files {
        out.extend(format!("gitvps-file {name} {}\n", body.len()).bytes());
        out.extend(body.bytes());
    }
    out
}

#[test]
fn the_listing_is_read_back_exactly_and_cut_ones_are_refused() {
    let raw = listing(&[("a.zone", "x\ny\n"), ("gitvps-zones.conf", "")]);
    let r = dns::Remote::parse(&raw).unwrap();
    assert_eq!(r.files["a.zone"], b"x\ny\n");
    assert_eq!(r.files["gitvps-zones.conf"], b"");
    assert!(dns::Remote::parse(&raw[..raw.len() - 12]).is_err());
    assert!(dns::Remote::parse(b"hello\n").is_err());
}

/// A server with an old Seattle zone, a stale zone and no zone list: the plan adds, changes,
/// removes, writes the list, reloads the configuration and the zones that moved only.
#[test]
fn the_plan_and_its_commands() {
    let inv = fleet();
    let old = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    let seattle = zone(&old, "255.255.117.in-addr.arpa").text.clone();
    let tampa = zone(&old, "34.255.255.66.in-addr.arpa").text.clone();
    let mut changed = inv.clone();
    vps(&mut changed, "xen04").ptr.insert(
        "117.255.255.10".parse().unwrap(),
        "shop.example.com".parse().unwrap(),
    );
    let remote = dns::Remote::parse(&listing(&[
        ("255.255.117.in-addr.arpa.zone", &seattle),
        ("34.255.255.66.in-addr.arpa.zone", &tampa),
        ("99.255.255.66.in-addr.arpa.zone", &tampa),
    ]))
    .unwrap();
    let previous = dns::previous_zones(&[&remote]);
    let built = dns::build(&changed, &previous, day()).unwrap();
    let s = server(DnsBackend::Knot);
    let plan = dns::plan_server(&s, &built, &remote);
    let commands: String = plan
        .commands(&s, &built)
        .iter()
        .map(|c| format!("# {}\n{}\n", c.what, c.line))
        .collect();
    insta::assert_snapshot!(format!(
        "{}\n{}\n{commands}",
        plan.render(&s),
        plan.zone_list.clone().unwrap_or_default()
    ));

    // Once the server holds all that, there is nothing to do.
    let mut files: Vec<(String, String)> = built
        .iter()
        .map(|b| (dns::file_name(&b.name), b.text.clone()))
        .collect();
    files.push((dns::ZONE_LIST.into(), plan.zone_list.clone().unwrap()));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let now = dns::Remote::parse(&listing(&files)).unwrap();
    let again = dns::build(&changed, &dns::previous_zones(&[&now]), day()).unwrap();
    assert_eq!(again, built);
    let plan = dns::plan_server(&s, &again, &now);
    assert!(plan.is_empty(), "{}", plan.render(&s));
    assert!(plan.commands(&s, &again).is_empty());
    assert_eq!(
        plan.render(&s),
        "dns server 192.0.2.53:22 (knot, /var/lib/gitvps-dns): no changes\n"
    );
}

#[test]
fn bind_reloads_zone_by_zone_through_sudo() {
    let inv = fleet();
    let built = dns::build(&inv, &BTreeMap::new(), day()).unwrap();
    let s = server(DnsBackend::Bind);
    let plan = dns::plan_server(&s, &built, &dns::Remote::default());
    let lines: Vec<String> = plan
        .commands(&s, &built)
        .into_iter()
        .map(|c| c.line)
        .collect();
    assert!(
        lines.iter().all(|l| l.starts_with("sudo -n sh -c ")),
        "{lines:?}"
    );
    assert!(lines.contains(&"sudo -n sh -c 'rndc -c /run/knot/knot.sock reconfig'".to_owned()));
    assert!(lines.contains(
        &"sudo -n sh -c 'rndc -c /run/knot/knot.sock reload vps.example.net'".to_owned()
    ));
    let list = plan.zone_list.unwrap();
    assert!(
        list.contains("zone \"vps.example.net\" { type primary; file \"/var/lib/gitvps-dns/vps.example.net.zone\"; };\n"),
        "{list}"
    );
}
