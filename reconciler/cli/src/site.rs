//! The data step of the customer site: the public catalog (products, locations, OSes,
//! appliances) as the JSON file the Zola templates read with `load_data`. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use model::bootstraps::Catalog;
use model::{Inventory, ProductKind};
use serde::Serialize;

/// Where the data file goes, relative to the Zola project root.
pub const CATALOG_PATH: &str = "data/catalog.json";
/// The interface strings of every language, relative to the Zola project root.
pub const STRINGS_PATH: &str = "i18n.json";
/// The languages of the site; the first is the default (at the site root).
pub const LANGUAGES: &[&str] = &["en", "zh"];

/// Everything the templates show that comes from the repository.
#[derive(Debug, Clone, Serialize)]
pub struct SiteData {
    /// Business name (`site.name` in `gitvps.toml`).
    pub name: String,
    /// Currency of every price.
    pub currency: String,
    /// The public plans, in id order, each with its public renewal offers.
    pub products: Vec<PlanView>,
    /// The locations of the pools, in name order.
    pub locations: Vec<LocationView>,
    /// The OSes offered for new VPSes, in id order.
    pub os: Vec<OsView>,
    /// The appliances offered, in id order.
    pub appliances: Vec<ApplianceView>,
    /// Where each node's console sshd listens, by node id (the panel builds the `ssh` line).
    pub consoles: BTreeMap<String, ConsoleView>,
    /// The OS a new VPS gets when none is chosen.
    pub default_os: String,
    /// The hypervisors the nodes run (`kvm`, `xen`), each once, in name order: the home page
    /// says "on Xen" only when every node runs Xen.
    pub hypervisors: Vec<String>,
    /// What a plan guarantees: the resources no node sells more of than it has (`overcommit`
    /// of 1), as interface string keys (`res_ram`, `res_disk`, `res_vcpus`).
    pub guaranteed: Vec<&'static str>,
    /// The resources some node overcommits (sells more of than it has): shared, not guaranteed.
    pub shared: Vec<&'static str>,
}

/// A public plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanView {
    /// Product id.
    pub id: String,
    /// Name shown to customers.
    pub name: String,
    /// Months one payment buys.
    pub period_months: u32,
    /// Price per period (a decimal string).
    pub price: String,
    /// Setup fee, charged once.
    pub setup_fee: String,
    /// Disk size (`"30 GiB"`).
    pub disk: String,
    /// Memory.
    pub ram: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Monthly traffic quota.
    pub traffic: String,
    /// Network rate limit, if any.
    pub bandwidth: Option<String>,
    /// Public renewal offers: the plan itself first, then its renewal products, leaving out
    /// one with the same period and price as an earlier one.
    pub renewals: Vec<RenewalView>,
}

/// A renewal offer of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct RenewalView {
    /// Product id.
    pub id: String,
    /// Name shown to customers.
    pub name: String,
    /// Months one payment buys.
    pub period_months: u32,
    /// Price (a decimal string).
    pub price: String,
}

/// A location, from the pools that carry its name.
#[derive(Debug, Clone, Serialize)]
pub struct LocationView {
    /// Location name, as `POST /api/order` takes it.
    pub name: String,
    /// ISO country code of its nodes, when a node is there.
    pub country: Option<String>,
    /// Whether VPSes there get an IPv6 /64.
    pub ipv6: bool,
    /// Number of nodes there.
    pub nodes: usize,
}

/// An OS offered for new VPSes.
#[derive(Debug, Clone, Serialize)]
pub struct OsView {
    /// OS id, as the hooks take it.
    pub id: String,
    /// Name shown to customers.
    pub name: String,
    /// OS family (`debian`, `el`, ...).
    pub family: String,
    /// CPU architecture.
    pub arch: String,
    /// Ids of the appliances that run on it.
    pub appliances: Vec<String>,
    /// A cloud image (`method = "cloud-image"`): installed on KVM nodes only, so the panel
    /// offers it only to a VPS whose node can install it.
    pub cloud_image: bool,
}

/// An appliance offered for new VPSes.
#[derive(Debug, Clone, Serialize)]
pub struct ApplianceView {
    /// Appliance id, as the hooks take it.
    pub id: String,
    /// Name shown to customers.
    pub name: String,
    /// One line for the site.
    pub description: Option<String>,
    /// OS families it runs on.
    pub families: Vec<String>,
}

/// Where a node's console is reached (`ssh -p PORT VPS@HOST`).
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleView {
    /// Host name or address of the node.
    pub host: String,
    /// sshd port.
    pub port: u16,
}

/// Why the interface strings are not usable.
#[derive(Debug, thiserror::Error)]
pub enum StringsError {
    /// The file is not a JSON object of languages to objects of strings.
    #[error("{STRINGS_PATH}: {0}")]
    Shape(String),
    /// A language lacks keys another one has.
    #[error("{STRINGS_PATH}: language `{lang}` lacks {keys}")]
    Missing {
        /// The incomplete language.
        lang: String,
        /// The missing keys, comma-separated.
        keys: String,
    },
}

/// Builds the site data from a loaded (valid) inventory and bootstraps catalog.
pub fn site_data(inv: &Inventory, cat: &Catalog) -> SiteData {
    let products = inv
        .products
        .values()
        .filter(|p| !p.private)
        .filter_map(|p| match &p.kind {
            ProductKind::Plan(r) => Some((p, r)),
            ProductKind::Renewal { .. } | ProductKind::TrafficBlock { .. } => None,
        })
        .map(|(p, r)| {
            let mut renewals: Vec<RenewalView> = inv
                .renewals_of(&p.id)
                .filter(|o| !o.private)
                .map(|o| RenewalView {
                    id: o.id.to_string(),
                    name: o.name.clone(),
                    period_months: o.period_months,
                    price: o.price.to_string(),
                })
                .collect();
            // The plan itself first, then by period; an offer with the period and price of
            // an earlier one says nothing new on a public page.
            renewals.sort_by_key(|o| (o.id != p.id.as_str(), o.period_months));
            let mut seen = BTreeSet::new();
            renewals.retain(|o| seen.insert((o.period_months, o.price.clone())));
            PlanView {
                id: p.id.to_string(),
                name: p.name.clone(),
                period_months: p.period_months,
                price: p.price.to_string(),
                setup_fee: p.setup_fee.to_string(),
                disk: r.disk.to_string(),
                ram: r.ram.to_string(),
                vcpus: r.vcpus,
                traffic: r.traffic.to_string(),
                bandwidth: r.bandwidth.as_ref().map(ToString::to_string),
                renewals,
            }
        })
        .collect();

    let mut locations: BTreeMap<&str, LocationView> = BTreeMap::new();
    for pool in inv.pools.values() {
        let l = locations
            .entry(pool.location.as_str())
            .or_insert_with(|| LocationView {
                name: pool.location.clone(),
                country: None,
                ipv6: false,
                nodes: 0,
            });
        l.ipv6 |= pool.ipv6.is_some();
    }
    for node in inv.nodes.values() {
        if let Some(l) = locations.get_mut(node.location.as_str()) {
            l.nodes += 1;
            if l.country.is_none() {
                l.country = Some(node.country.as_str().to_owned());
            }
        }
    }

    let os: Vec<OsView> = cat
        .offered_os()
        .map(|o| OsView {
            id: o.id.to_string(),
            name: o.name.clone(),
            family: o.family.to_string(),
            arch: o.arch.to_string(),
            appliances: cat
                .appliances_for(&o.id)
                .map(|a| a.id.to_string())
                .collect(),
            cloud_image: o.method.cloud_image().is_some(),
        })
        .collect();
    let appliances = cat
        .appliances
        .values()
        .filter(|a| a.offered)
        .map(|a| ApplianceView {
            id: a.id.to_string(),
            name: a.name.clone(),
            description: a.description.clone(),
            families: a.families.iter().map(ToString::to_string).collect(),
        })
        .collect();
    let consoles = inv
        .nodes
        .values()
        .map(|n| {
            (
                n.id.to_string(),
                ConsoleView {
                    host: n.address.to_string(),
                    port: n.port,
                },
            )
        })
        .collect();

    SiteData {
        name: inv.settings.site.name.clone(),
        currency: inv.currency.to_string(),
        products,
        locations: locations.into_values().collect(),
        os,
        appliances,
        consoles,
        default_os: inv.settings.vps.default_os.to_string(),
        hypervisors: inv
            .nodes
            .values()
            .map(|n| n.hypervisor.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
        guaranteed: RESOURCES
            .iter()
            .filter(|(_, over)| !inv.nodes.values().any(over))
            .map(|(key, _)| *key)
            .collect(),
        shared: RESOURCES
            .iter()
            .filter(|(_, over)| inv.nodes.values().any(over))
            .map(|(key, _)| *key)
            .collect(),
    }
}

/// Each resource's string key, and whether a node sells more of it than it has.
type Overcommitted = fn(&model::Node) -> bool;
const RESOURCES: &[(&str, Overcommitted)] = &[
    ("res_ram", |n| n.sellable().ram > n.capacity.ram),
    ("res_disk", |n| n.sellable().disk > n.capacity.disk),
    ("res_vcpus", |n| n.sellable().vcpus > n.capacity.vcpus),
];

/// Checks the interface strings: an object per language of [`LANGUAGES`], each with the
/// same keys and only string values, so that no page shows a missing text in any language.
pub fn check_strings(v: &serde_json::Value) -> Result<(), StringsError> {
    let obj = v
        .as_object()
        .ok_or_else(|| StringsError::Shape("not an object of languages".into()))?;
    let mut keys: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for lang in LANGUAGES {
        let strings = obj
            .get(*lang)
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| StringsError::Shape(format!("no object for language `{lang}`")))?;
        if let Some((k, _)) = strings.iter().find(|(_, s)| !s.is_string()) {
            return Err(StringsError::Shape(format!("`{lang}.{k}` is not a string")));
        }
        keys.insert(lang, strings.keys().map(String::as_str).collect());
    }
    let all: BTreeSet<&str> = keys.values().flatten().copied().collect();
    for (lang, have) in &keys {
        let missing: Vec<&str> = all.difference(have).copied().collect();
        if !missing.is_empty() {
            return Err(StringsError::Missing {
                lang: (*lang).to_owned(),
                keys: missing.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn repo() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_example_fleet_shows_public_plans_locations_and_oses() {
        let inv = Inventory::load(&repo()).unwrap();
        let cat = Catalog::load(&repo()).unwrap();
        let d = site_data(&inv, &cat);
        let ids: Vec<&str> = d.products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["advanced"], "private `test` is hidden");
        let adv = &d.products[0];
        assert_eq!(adv.price, "59.00");
        assert_eq!(adv.ram, "768 MiB");
        let offers: Vec<(&str, &str)> = adv
            .renewals
            .iter()
            .map(|o| (o.id.as_str(), o.price.as_str()))
            .collect();
        assert_eq!(offers, [("advanced", "59.00"), ("advanced-3m", "149.00")]);
        let locs: Vec<&str> = d.locations.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            locs,
            [
                "Seattle, WA (USA)",
                "Shanghai, China",
                "Tampa, Florida (USA)"
            ]
        );
        assert!(d.locations[2].ipv6);
        assert!(d.os.iter().any(|o| o.id == "debian-12"));
        let deb = d.os.iter().find(|o| o.id == "debian-12").unwrap();
        assert!(deb.appliances.contains(&"openvpn".to_owned()));
        assert!(!d.consoles.is_empty());
        // Every example node runs Xen; node0109 sells four times its vCPUs.
        assert_eq!(d.hypervisors, ["xen"]);
        assert_eq!(d.guaranteed, ["res_ram", "res_disk"]);
        assert_eq!(d.shared, ["res_vcpus"]);
    }

    /// A KVM node joins: the site no longer says "on Xen" alone; a node that overcommits RAM
    /// takes memory off what is guaranteed.
    #[test]
    fn the_hypervisors_and_guarantees_follow_the_nodes() {
        let mut inv = Inventory::load(&repo()).unwrap();
        let cat = Catalog::load(&repo()).unwrap();
        let node = inv.nodes.values_mut().next().unwrap();
        node.hypervisor = model::values::Hypervisor::Kvm;
        node.overcommit.ram = model::values::Ratio::new(1.5).unwrap();
        let d = site_data(&inv, &cat);
        assert_eq!(d.hypervisors, ["kvm", "xen"]);
        assert_eq!(d.guaranteed, ["res_disk"]);
        assert_eq!(d.shared, ["res_ram", "res_vcpus"]);
    }

    #[test]
    fn the_site_strings_are_complete_in_every_language() {
        let text = std::fs::read_to_string(repo().join("site").join(STRINGS_PATH)).unwrap();
        check_strings(&serde_json::from_str(&text).unwrap()).unwrap();
    }

    #[test]
    fn a_missing_string_is_named() {
        let v = serde_json::json!({"en": {"a": "A", "b": "B"}, "zh": {"a": "甲"}});
        let e = check_strings(&v).unwrap_err().to_string();
        assert_eq!(e, "i18n.json: language `zh` lacks b");
        let v = serde_json::json!({"en": {"a": 1}, "zh": {}});
        assert!(check_strings(&v).is_err());
    }
}
