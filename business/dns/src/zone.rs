//! The zones of the inventory: one reverse zone per pool (or per address, `rdns_zone =
//! "per-ip"`), RFC 2317 names below a /24, `ip6.arpa` zones, and the forward zone of `[vps] domain`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use chrono::NaiveDate;
use ipnet::{Ipv4Net, Ipv6Net};
use model::values::{Hostname, RdnsZone, VpsAddr};
use model::{Inventory, Pool, Vps, VpsId};

use crate::serial::next_serial;

/// SOA refresh, retry and expire, in seconds: what secondaries do (the usual RIPE-203 values).
const REFRESH: u32 = 86_400;
const RETRY: u32 = 7_200;
const EXPIRE: u32 = 3_600_000;

/// Why the zones cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    /// `[dns] nameservers` is empty.
    #[error(
        "gitvps.toml: [dns] nameservers is empty: name the servers of the zones, like nameservers = [\"ns1.example.net\"]"
    )]
    NoNameservers,
    /// An address of a VPS is in no pool, so it has no reverse zone.
    #[error("{vps}: {addr} is in no pool of pools.toml, so it has no reverse zone")]
    OutsidePools {
        /// The VPS.
        vps: VpsId,
        /// The address.
        addr: VpsAddr,
    },
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordData {
    /// A reverse name.
    Ptr(Hostname),
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
}

/// One record of a zone besides its SOA and NS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner, relative to the zone (`@` for the apex).
    pub owner: String,
    /// What it says.
    pub data: RecordData,
}

impl Record {
    /// The record as a zone file line, without a final newline.
    pub fn line(&self) -> String {
        let (kind, data) = match &self.data {
            RecordData::Ptr(h) => ("PTR", format!("{h}.")),
            RecordData::A(a) => ("A", a.to_string()),
            RecordData::Aaaa(a) => ("AAAA", a.to_string()),
        };
        format!("{}\tIN\t{kind}\t{data}", self.owner)
    }
}

/// A zone before its SOA serial is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// The zone name, without the final dot (`0-25.255.255.66.in-addr.arpa`).
    pub name: String,
    /// Its records, in address (reverse) or VPS (forward) order.
    pub records: Vec<Record>,
}

/// A zone ready to publish: its text with the serial chosen against the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The zone name.
    pub name: String,
    /// Its SOA serial.
    pub serial: u32,
    /// The zone file.
    pub text: String,
    /// How many records besides SOA and NS.
    pub records: usize,
}

/// The file a zone is written to: `<zone>.zone` (zone names are letters, digits, '-' and '.').
pub fn file_name(zone: &str) -> String {
    format!("{zone}.zone")
}

/// Every zone of the inventory, sorted by name: reverse zones of every pool (IPv4 and IPv6)
/// and, when `[vps] domain` is set, the forward zone with an A/AAAA per VPS. Destroyed VPSes
/// have no records.
pub fn zones(inv: &Inventory) -> Result<Vec<Zone>, DnsError> {
    let live: Vec<&Vps> = inv.vps.values().filter(|v| v.holds_resources()).collect();
    let mut out: BTreeMap<String, BTreeMap<IpAddr, Record>> = BTreeMap::new();
    for pool in inv.pools.values() {
        for name in pool_zones(pool) {
            out.entry(name).or_default();
        }
    }
    for vps in &live {
        for addr in &vps.ips {
            let pool = inv.pools.values().find(|p| match addr {
                VpsAddr::V4(a) => p.network.contains(a),
                VpsAddr::V6(n) => p.ipv6.is_some_and(|pre| pre.contains(n)),
            });
            let Some(pool) = pool else {
                return Err(DnsError::OutsidePools {
                    vps: vps.id.clone(),
                    addr: *addr,
                });
            };
            for (ip, name) in vps.reverse_names_of(addr) {
                let (zone, owner) = place(pool, ip);
                out.entry(zone).or_default().insert(
                    ip,
                    Record {
                        owner,
                        data: RecordData::Ptr(name.clone()),
                    },
                );
            }
        }
    }
    let mut zones: Vec<Zone> = out
        .into_iter()
        .map(|(name, records)| Zone {
            name,
            records: records.into_values().collect(),
        })
        .collect();
    if let Some(domain) = &inv.settings.vps.domain {
        zones.push(forward(domain, &live));
        zones.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(zones)
}

/// The forward zone: `<id> A` per IPv4 address and `<id> AAAA` per /64's host address.
fn forward(domain: &Hostname, live: &[&Vps]) -> Zone {
    let mut records = Vec::new();
    for vps in live {
        for addr in &vps.ips {
            let data = match addr.host() {
                IpAddr::V4(a) => RecordData::A(a),
                IpAddr::V6(a) => RecordData::Aaaa(a),
            };
            records.push(Record {
                owner: vps.id.to_string(),
                data,
            });
        }
    }
    Zone {
        name: domain.to_string(),
        records,
    }
}

/// The reverse zones a pool always has, even without a VPS: per pool, the octet-aligned zones
/// (or the RFC 2317 zone below a /24) and the nibble-aligned zones of its IPv6 prefix.
fn pool_zones(pool: &Pool) -> Vec<String> {
    if pool.rdns_zone == RdnsZone::PerIp {
        return Vec::new();
    }
    let mut out = v4_zones(pool.network);
    if let Some(pre) = pool.ipv6 {
        out.extend(v6_zones(pre));
    }
    out
}

/// The octet boundary at or below a prefix length: `/22` → 24, `/16` → 16.
fn octet_boundary(prefix: u8) -> u8 {
    prefix.div_ceil(8).max(1) * 8
}

/// The nibble boundary at or below a prefix length: `/46` → 48.
fn nibble_boundary(prefix: u8) -> u8 {
    prefix.div_ceil(4).max(1) * 4
}

fn v4_zones(net: Ipv4Net) -> Vec<String> {
    if net.prefix_len() > 24 {
        return vec![classless_zone(net)];
    }
    net.subnets(octet_boundary(net.prefix_len()))
        .map(|subs| subs.map(v4_aligned_zone).collect())
        .unwrap_or_default()
}

fn v6_zones(pre: Ipv6Net) -> Vec<String> {
    pre.subnets(nibble_boundary(pre.prefix_len()))
        .map(|subs| subs.map(v6_aligned_zone).collect())
        .unwrap_or_default()
}

/// `C.B.A.in-addr.arpa` of an octet-aligned network (/8, /16 or /24).
fn v4_aligned_zone(net: Ipv4Net) -> String {
    let octets: Vec<String> = net.network().octets().iter().map(u8::to_string).collect();
    reversed_name(&octets, usize::from(net.prefix_len() / 8), "in-addr.arpa")
}

/// The first `n` labels (octets or nibbles, most significant first) reversed, then `suffix`.
fn reversed_name(labels: &[String], n: usize, suffix: &str) -> String {
    let mut out: Vec<&str> = labels[..n.min(labels.len())]
        .iter()
        .map(String::as_str)
        .collect();
    out.reverse();
    out.push(suffix);
    out.join(".")
}

/// RFC 2317 (section 4) zone of a network smaller than a /24: `<first>-<prefix>.C.B.A.in-addr.arpa`,
/// the name the upstream's CNAMEs point into (`34.255.255.66.in-addr.arpa CNAME
/// 34.0-25.255.255.66.in-addr.arpa`). '-' rather than the RFC's '/', which cannot be in a file name.
fn classless_zone(net: Ipv4Net) -> String {
    let [a, b, c, d] = net.network().octets();
    format!("{d}-{}.{c}.{b}.{a}.in-addr.arpa", net.prefix_len())
}

/// The nibbles of an IPv6 address, most significant first.
fn nibbles(ip: Ipv6Addr) -> Vec<char> {
    format!("{:032x}", u128::from(ip)).chars().collect()
}

/// `<nibbles reversed>.ip6.arpa` of a nibble-aligned prefix.
fn v6_aligned_zone(net: Ipv6Net) -> String {
    let nibbles: Vec<String> = nibbles(net.network()).iter().map(char::to_string).collect();
    reversed_name(&nibbles, usize::from(net.prefix_len() / 4), "ip6.arpa")
}

/// The reversed labels of `ip` below the first `skip` labels (octets or nibbles), as an
/// owner name relative to the zone (`@` when nothing is left).
fn relative(mut labels: Vec<String>, skip: usize) -> String {
    labels.drain(..skip.min(labels.len()));
    labels.reverse();
    if labels.is_empty() {
        "@".to_owned()
    } else {
        labels.join(".")
    }
}

/// The zone an address's PTR goes in, and its owner name there.
fn place(pool: &Pool, ip: IpAddr) -> (String, String) {
    match ip {
        IpAddr::V4(a) => {
            let octets: Vec<String> = a.octets().iter().map(u8::to_string).collect();
            let (zone, skip) = if pool.rdns_zone == RdnsZone::PerIp {
                (v4_aligned_zone_of(a, 32), 4)
            } else if pool.network.prefix_len() > 24 {
                (classless_zone(pool.network), 3)
            } else {
                let b = octet_boundary(pool.network.prefix_len());
                (v4_aligned_zone_of(a, b), usize::from(b / 8))
            };
            (zone, relative(octets, skip))
        }
        IpAddr::V6(a) => {
            let labels: Vec<String> = nibbles(a).iter().map(char::to_string).collect();
            let b = match (pool.rdns_zone, pool.ipv6) {
                (RdnsZone::PerPool, Some(pre)) => nibble_boundary(pre.prefix_len()),
                _ => 64,
            };
            let net = Ipv6Net::new(a, b).map(|n| n.trunc());
            let zone = net.map(v6_aligned_zone).unwrap_or_default();
            (zone, relative(labels, usize::from(b / 4)))
        }
    }
}

/// The zone of the network of `a` with prefix `bits` (a multiple of 8, up to 32: per address).
fn v4_aligned_zone_of(a: Ipv4Addr, bits: u8) -> String {
    Ipv4Net::new(a, bits)
        .map(|n| v4_aligned_zone(n.trunc()))
        .unwrap_or_default()
}

/// A zone's file text with `serial`.
pub fn render(zone: &Zone, inv: &Inventory, serial: u32) -> Result<String, DnsError> {
    let dns = &inv.settings.dns;
    let Some(primary) = dns.nameservers.first() else {
        return Err(DnsError::NoNameservers);
    };
    let contact = dns.contact.as_ref().unwrap_or(&inv.settings.mail.from);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; Built by gitvps from the inventory (gitvps dns build): edits here are overwritten."
    );
    let _ = writeln!(out, "$ORIGIN {}.", zone.name);
    let _ = writeln!(out, "$TTL {}", dns.ttl);
    let _ = writeln!(
        out,
        "@\tIN\tSOA\t{primary}.\t{}\t{serial}\t{REFRESH}\t{RETRY}\t{EXPIRE}\t{}",
        mailbox(contact.as_str()),
        dns.negative_ttl
    );
    for ns in &dns.nameservers {
        let _ = writeln!(out, "@\tIN\tNS\t{ns}.");
    }
    for r in &zone.records {
        let _ = writeln!(out, "{}", r.line());
    }
    Ok(out)
}

/// An e-mail address as an SOA mailbox (RFC 1035 section 8): `host.master@example.net` is
/// `host\.master.example.net.`; every character of the local part but letters, digits, '-'
/// and '_' is escaped.
fn mailbox(email: &str) -> String {
    let (local, domain) = email.rsplit_once('@').unwrap_or((email, ""));
    let mut out = String::new();
    for c in local.chars() {
        if !(c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            out.push('\\');
        }
        out.push(c);
    }
    format!("{out}.{domain}.")
}

/// Every zone of the inventory as a file, each serial chosen against `previous` (zone name →
/// the text last built or published): the same serial when nothing else changed, else a
/// larger one (see [`next_serial`]). Deterministic: the same inventory, previous zones and
/// `today` give the same bytes.
pub fn build(
    inv: &Inventory,
    previous: &BTreeMap<String, String>,
    today: NaiveDate,
) -> Result<Vec<Built>, DnsError> {
    if inv.settings.dns.nameservers.is_empty() {
        return Err(DnsError::NoNameservers);
    }
    zones(inv)?
        .into_iter()
        .map(|zone| {
            let unserialed = render(&zone, inv, 0)?;
            let prev = previous.get(&zone.name).map(String::as_str);
            let serial = next_serial(prev, &unserialed, today);
            Ok(Built {
                text: render(&zone, inv, serial)?,
                serial,
                records: zone.records.len(),
                name: zone.name,
            })
        })
        .collect()
}
