//! Parsing `products.toml`, the catalog: its currency and one `[[product]]` entry per plan or
//! renewal, each checked on its own so one bad product does not hide the others.

use std::collections::{BTreeMap, BTreeSet};

use toml_edit::TableLike;

use super::{Entry, build, entries};
use crate::diag::Origin;
use crate::ids::ProductId;
use crate::inventory::*;
use crate::read::{Obj, Reader};
use crate::values::*;

const PRODUCT_KEYS: &[&str] = &[
    "id",
    "name",
    "renews",
    "period_months",
    "price",
    "setup_fee",
    "commission",
    "private",
    "traffic_block",
    "disk",
    "ram",
    "vcpus",
    "traffic",
    "bandwidth",
    "cpu_weight",
    "cpu_cap",
    "disk_iops",
    "disk_bandwidth",
    "backup",
    "guest_type",
    "snapshot_limit",
];
/// The fields of a plan's resources: `disk` to the end of [`PRODUCT_KEYS`]. A renewal product
/// takes them from the product it renews; a traffic block has none.
const RESOURCE_KEYS: &[&str] = PRODUCT_KEYS.split_at(9).1;

pub(super) fn parse_catalog(
    r: &mut Reader<'_>,
    t: &dyn TableLike,
    failed: &mut BTreeSet<String>,
) -> Option<(Option<Currency>, BTreeMap<ProductId, Product>)> {
    let mut o = r.origin(None);
    let top = Obj::new(t, "", None, &["currency", "product"]);
    let currency = top.req::<Currency>(r, &mut o, "currency");
    if let Some(c) = currency.as_ref().filter(|c| c.minor_units() > 2) {
        top.error(
            r,
            "currency",
            format!(
                "{c} counts {} decimals; gitvps amounts have at most 2",
                c.minor_units()
            ),
        );
    }
    top.finish(r);
    Some((currency, entries(r, t, failed)))
}

impl Entry for Product {
    type Id = ProductId;
    const KIND: &'static str = "product";
    const KEYS: &'static [&'static str] = PRODUCT_KEYS;

    fn parse(r: &mut Reader<'_>, p: &Obj<'_>, mut o: Origin) -> Option<Product> {
        let id = p.req::<ProductId>(r, &mut o, "id");
        let name = p.req::<String>(r, &mut o, "name");
        let renews = p.opt::<ProductId>(r, &mut o, "renews");
        let block = p.has("traffic_block");
        let period_months = if block {
            Some(0)
        } else {
            p.req::<u32>(r, &mut o, "period_months")
        };
        let price = p.req::<Money>(r, &mut o, "price");
        let setup_fee = p.opt(r, &mut o, "setup_fee").unwrap_or(Money::ZERO);
        let commission = p.opt(r, &mut o, "commission").unwrap_or(Money::ZERO);
        let private = p.opt(r, &mut o, "private").unwrap_or(false);
        let kind = match renews {
            Some(_) if block => {
                p.error(
                    r,
                    "traffic_block",
                    "a traffic block renews nothing: remove `renews` or this field",
                );
                None
            }
            Some(renews) => renewal(r, p, renews),
            None if block => traffic_block(r, p, &mut o),
            None => plan(r, p, &mut o).map(ProductKind::Plan),
        };
        if !block && period_months == Some(0) {
            p.error(r, "period_months", "must be at least 1");
        }
        build(r, p, || {
            Some(Product {
                id: id?,
                name: name?,
                kind: kind?,
                period_months: period_months?,
                price: price?,
                setup_fee,
                commission,
                private,
                origin: o,
            })
        })
    }

    fn key(&self) -> (&ProductId, &Origin) {
        (&self.id, &self.origin)
    }
}

/// A renewal product takes its resources from the product it renews: it names none itself.
fn renewal(r: &mut Reader<'_>, p: &Obj<'_>, renews: ProductId) -> Option<ProductKind> {
    let pt = p.table();
    for key in RESOURCE_KEYS {
        if pt.contains_key(key) {
            r.error(
                pt.key(key).and_then(toml_edit::Key::span),
                &p.field(key),
                format!("a renewal product takes its resources from `{renews}`; remove this field"),
            );
        }
    }
    Some(ProductKind::Renewal { renews })
}

/// A traffic block: its size, and none of a plan's period, setup fee or resources.
fn traffic_block(r: &mut Reader<'_>, p: &Obj<'_>, o: &mut Origin) -> Option<ProductKind> {
    let pt = p.table();
    let not_for_a_block = ["period_months", "setup_fee"].iter().chain(RESOURCE_KEYS);
    for key in not_for_a_block {
        if pt.contains_key(key) {
            r.error(
                pt.key(key).and_then(toml_edit::Key::span),
                &p.field(key),
                "a traffic block only adds traffic to the current traffic period; remove this field",
            );
        }
    }
    let size = p.req::<Size>(r, o, "traffic_block")?;
    if size == Size(0) {
        p.error(r, "traffic_block", "must be more than 0");
        return None;
    }
    Some(ProductKind::TrafficBlock { size })
}

/// The resources of a plan; `None` when a required one did not parse.
fn plan(r: &mut Reader<'_>, p: &Obj<'_>, o: &mut Origin) -> Option<Resources> {
    let disk = p.req(r, o, "disk");
    let ram = p.req(r, o, "ram");
    let vcpus = p.req::<u32>(r, o, "vcpus");
    let traffic = p.req(r, o, "traffic");
    let bandwidth = p.opt(r, o, "bandwidth");
    let cpu_weight = p.opt::<u32>(r, o, "cpu_weight").unwrap_or(256);
    let cpu_cap = p.opt::<u32>(r, o, "cpu_cap").unwrap_or(0);
    let disk_iops = p.opt::<u32>(r, o, "disk_iops");
    let disk_bandwidth = p.opt::<ByteRate>(r, o, "disk_bandwidth");
    let backup = super::backup::parse_policy(r, o, p);
    let guest_type = p.kw::<GuestType>(r, o, "guest_type");
    let snapshot_limit = p.opt::<u32>(r, o, "snapshot_limit").unwrap_or(0);
    if disk_iops.is_some_and(|n| !(1..=1_000_000).contains(&n)) {
        p.error(
            r,
            "disk_iops",
            "must be 1 to 1000000 (leave it out for no cap)",
        );
    }
    if !(1..=65535).contains(&cpu_weight) {
        p.error(r, "cpu_weight", "must be 1 to 65535");
    }
    if vcpus == Some(0) {
        p.error(r, "vcpus", "must be at least 1");
    }
    for (key, size) in [("disk", disk), ("ram", ram)] {
        if size == Some(Size(0)) {
            p.error(r, key, "must be more than 0");
        }
    }
    Some(Resources {
        disk: disk?,
        ram: ram?,
        vcpus: vcpus?,
        traffic: traffic?,
        bandwidth,
        cpu_weight,
        cpu_cap,
        disk_iops,
        disk_bandwidth,
        backup,
        guest_type,
        snapshot_limit,
    })
}
