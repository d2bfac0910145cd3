//! Parsing `pools.toml`: one `[[pool]]` entry per IPv4 network (with its gateway, DNS,
//! reserved ranges and optional IPv6 prefix) that nodes hand addresses out of.

use std::collections::{BTreeMap, BTreeSet};

use toml_edit::TableLike;

use super::{Entry, build, entries};
use crate::diag::Origin;
use crate::ids::PoolId;
use crate::inventory::*;
use crate::read::{Obj, Reader};
use crate::values::*;

const POOL_KEYS: &[&str] = &[
    "id",
    "location",
    "network",
    "gateway",
    "dns",
    "reserved",
    "rdns_zone",
    "ipv6",
];

pub(super) fn parse_pools(
    r: &mut Reader<'_>,
    t: &dyn TableLike,
    failed: &mut BTreeSet<String>,
) -> Option<BTreeMap<PoolId, Pool>> {
    let top = Obj::new(t, "", None, &["pool"]);
    top.finish(r);
    Some(entries(r, t, failed))
}

impl Entry for Pool {
    type Id = PoolId;
    const KIND: &'static str = "pool";
    const KEYS: &'static [&'static str] = POOL_KEYS;

    fn parse(r: &mut Reader<'_>, p: &Obj<'_>, mut o: Origin) -> Option<Pool> {
        let id = p.req::<PoolId>(r, &mut o, "id");
        let location = p.req::<String>(r, &mut o, "location");
        let network = p.req::<ipnet::Ipv4Net>(r, &mut o, "network");
        let gateway = p.req::<std::net::Ipv4Addr>(r, &mut o, "gateway");
        let dns = p.list::<std::net::IpAddr>(r, &mut o, "dns");
        let reserved = p.list::<Ipv4Range>(r, &mut o, "reserved");
        let rdns_zone = p
            .kw::<RdnsZone>(r, &mut o, "rdns_zone")
            .unwrap_or(RdnsZone::PerIp);
        let ipv6 = p.opt::<ipnet::Ipv6Net>(r, &mut o, "ipv6");
        if let (Some(net), Some(gw)) = (network, gateway)
            && !net.contains(&gw)
        {
            p.error(
                r,
                "gateway",
                format!("{gw} is outside the pool's network {net}"),
            );
        }
        build(r, p, || {
            Some(Pool {
                id: id?,
                location: location?,
                network: network?,
                gateway: gateway?,
                dns,
                reserved,
                rdns_zone,
                ipv6,
                origin: o,
            })
        })
    }

    fn key(&self) -> (&PoolId, &Origin) {
        (&self.id, &self.origin)
    }
}
