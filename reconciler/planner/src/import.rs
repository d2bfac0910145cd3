//! `gitvps import`: the guests a node runs that the inventory does not declare (Xen: the observe
//! report's `xl list -l`; KVM: the QEMU arguments), as VPS files marked `adopted` (or refused, why).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use model::values::{Hypervisor, Size};
use model::{CustomerId, Inventory, VpsId};

use crate::desired::{NodeSpec, disk_path};

/// A domain as `xl list -l` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its name.
    pub name: String,
    /// Memory, MiB (`target_memkb`).
    pub memory_mib: u64,
    /// vCPUs (`max_vcpus`).
    pub vcpus: u32,
    /// Its disks' backing paths (`pdev_path`).
    pub disks: Vec<String>,
    /// Its network interfaces: MAC, and the addresses of its `ip=` (space-separated in xl).
    pub nics: Vec<(String, Vec<String>)>,
}

/// Why the report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not the observe report's JSON.
    #[error("{node}: the node's report is not JSON: {source}")]
    Json {
        /// The node.
        node: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// `xl list -l` failed or printed nothing usable.
    #[error("{node}: `xl list -l` gave no domain list ({detail})")]
    NoList {
        /// The node.
        node: String,
        /// Its error text, if any.
        detail: String,
    },
    /// A KVM node printed no line of QEMU arguments after its report.
    #[error("{node}: the node printed no QEMU arguments after its report")]
    NoArgs {
        /// The node.
        node: String,
    },
}

/// What the import command printed, split: the observe report and the guests found (Xen:
/// the report's `xl list -l`; KVM: the line of QEMU arguments after the report).
pub fn guests<'a>(
    node: &str,
    hv: Hypervisor,
    out: &'a [u8],
) -> Result<(&'a [u8], Vec<Found>), ImportError> {
    match hv {
        Hypervisor::Xen => Ok((out, found_domains(node, out)?)),
        Hypervisor::Kvm => {
            let (report, rest) = match out.iter().position(|b| *b == b'\n') {
                Some(i) => (&out[..i], &out[i + 1..]),
                None => (out, &[][..]),
            };
            Ok((report, found_kvm(node, rest)?))
        }
    }
}

/// The running QEMU guests of a KVM node, from the line `{"args":[{"name":..,"argv":[..]}]}`
/// (`node/import-kvm.sh`): memory (`-m`), vCPUs (`-smp`), disks (`-drive file=`), and per
/// network device (`-device ...,netdev=ID,mac=MAC`) its MAC and the guest addresses its
/// user-mode netdev forwards to (`hostfwd=...-ADDR:PORT`; a tap carries none).
pub fn found_kvm(node: &str, line: &[u8]) -> Result<Vec<Found>, ImportError> {
    #[derive(serde::Deserialize)]
    struct Guest {
        name: String,
        argv: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Args {
        args: Vec<Guest>,
    }
    let text = String::from_utf8_lossy(line);
    if text.trim().is_empty() {
        return Err(ImportError::NoArgs { node: node.into() });
    }
    let a: Args = serde_json::from_str(text.trim()).map_err(|source| ImportError::Json {
        node: node.into(),
        source,
    })?;
    Ok(a.args
        .iter()
        .map(|g| qemu_guest(&g.name, &g.argv))
        .collect())
}

/// The value of `key=` among a QEMU option string's comma-separated parts.
fn opt<'a>(v: &'a str, key: &str) -> Option<&'a str> {
    v.split(',')
        .find_map(|p| p.strip_prefix(key)?.strip_prefix('='))
}

/// A leading count with an optional binary suffix (`512`, `512M`, `1G`), in MiB.
fn qemu_mib(v: &str) -> u64 {
    let v = v.split(',').next().unwrap_or_default();
    let v = v.strip_prefix("size=").unwrap_or(v);
    let digits = v.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().unwrap_or(0);
    match &v[digits.len()..] {
        "" | "M" | "m" => n,
        "G" | "g" => n.saturating_mul(1024),
        _ => 0,
    }
}

/// One guest from its QEMU arguments.
fn qemu_guest(name: &str, argv: &[String]) -> Found {
    let mut f = Found {
        name: name.to_owned(),
        memory_mib: 0,
        vcpus: 0,
        disks: Vec::new(),
        nics: Vec::new(),
    };
    let mut netdevs: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut devices = Vec::new();
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let flag = a.as_str();
        if !matches!(flag, "-m" | "-smp" | "-drive" | "-netdev" | "-device") {
            continue;
        }
        let Some(v) = it.next() else { break };
        match flag {
            "-m" => f.memory_mib = qemu_mib(v),
            "-smp" => {
                let first = v.split(',').next().unwrap_or_default();
                f.vcpus = first
                    .parse()
                    .ok()
                    .or_else(|| opt(v, "cpus")?.parse().ok())
                    .unwrap_or(0);
            }
            "-drive" => f.disks.extend(opt(v, "file").map(str::to_owned)),
            "-netdev" => {
                let ips = v
                    .split(',')
                    .filter_map(|p| p.strip_prefix("hostfwd="))
                    .filter_map(|h| h.rsplit_once('-')?.1.split(':').next())
                    .filter(|ip| !ip.is_empty())
                    .map(str::to_owned)
                    .collect();
                netdevs.insert(opt(v, "id").unwrap_or_default(), ips);
            }
            _ => {
                if let Some(nd) = opt(v, "netdev") {
                    devices.push((nd, opt(v, "mac").unwrap_or_default().to_owned()));
                }
            }
        }
    }
    for (nd, mac) in devices {
        let mut ips: Vec<String> = netdevs.get(nd).cloned().unwrap_or_default();
        ips.dedup();
        f.nics.push((mac, ips));
    }
    f
}

/// The domains of an observe report (Domain-0 left out).
pub fn found_domains(node: &str, report: &[u8]) -> Result<Vec<Found>, ImportError> {
    let v: serde_json::Value =
        serde_json::from_slice(report).map_err(|source| ImportError::Json {
            node: node.into(),
            source,
        })?;
    let Some(list) = v["domains_long"].as_array() else {
        return Err(ImportError::NoList {
            node: node.into(),
            detail: v["domains_long_error"].as_str().unwrap_or("").trim().into(),
        });
    };
    Ok(list
        .iter()
        .filter(|d| d["domid"].as_u64() != Some(0))
        .map(|d| {
            let c = &d["config"];
            let strs = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            Found {
                name: strs(&c["c_info"]["name"]),
                memory_mib: c["b_info"]["target_memkb"].as_u64().unwrap_or(0) / 1024,
                vcpus: c["b_info"]["max_vcpus"]
                    .as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(0),
                disks: (c["disks"].as_array().into_iter().flatten())
                    .map(|k| strs(&k["pdev_path"]))
                    .collect(),
                nics: (c["nics"].as_array().into_iter().flatten())
                    .map(|n| {
                        let ips = strs(&n["ip"])
                            .split_whitespace()
                            .map(str::to_owned)
                            .collect();
                        (strs(&n["mac"]), ips)
                    })
                    .collect(),
            }
        })
        .collect())
}

/// What an import is made in: the inventory, the node, the owner and the date.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The inventory.
    pub inv: &'a Inventory,
    /// The node's desired spec (its root, storage and declared VPSes).
    pub node: &'a NodeSpec,
    /// Disk sizes observed on the node, bytes, by name.
    pub disks: &'a BTreeMap<String, u64>,
    /// Who the VPSes go to.
    pub customer: &'a CustomerId,
    /// Today (UTC), the VPSes' `created`.
    pub today: chrono::NaiveDate,
    /// Addresses the operator gives for a guest by name (`--ip NAME=ADDR`), for a guest whose
    /// addresses the node does not show (a vif without `ip=`, a KVM guest on a tap).
    pub given: &'a BTreeMap<String, Vec<Ipv4Addr>>,
}

/// One domain's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Declared on this node already: gitvps manages it.
    Managed,
    /// Its VPS file: `inventory/vps/<id>.toml` and its text.
    Adopt {
        /// The VPS id.
        id: VpsId,
        /// The file's text.
        text: String,
    },
    /// Not imported, and why.
    Refused(String),
}

/// Why `ip` cannot be the address of `id` on the context's node: outside every pool, in a
/// pool the node does not use, or an address of its pool that is never handed out.
fn outside_pools(cx: &Context<'_>, id: &VpsId, ip: Ipv4Addr) -> Option<String> {
    let Some(pool) = cx.inv.pools.values().find(|p| p.network.contains(&ip)) else {
        let pools: Vec<String> = (cx.inv.pools.values())
            .map(|p| format!("{} {}", p.id, p.network))
            .collect();
        return Some(format!(
            "{id}: its address {ip} is outside every pool in pools.toml ({}): add its network as a pool, then import again",
            if pools.is_empty() {
                "none".to_owned()
            } else {
                pools.join(", ")
            }
        ));
    };
    let node = cx.inv.nodes.get(&cx.node.node)?;
    if !node.pools.contains(&pool.id) {
        return Some(format!(
            "{id}: its address {ip} is in pool {}, which node {} does not use (its pools: {})",
            pool.id,
            node.id,
            node.pools
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    pool.unusable(ip).map(|u| {
        format!(
            "{id}: its address {ip} is {} pool {}, never handed out to a VPS",
            match u {
                model::inventory::Unusable::Network => "the network address of",
                model::inventory::Unusable::Broadcast => "the broadcast address of",
                model::inventory::Unusable::Gateway => "the gateway of",
                model::inventory::Unusable::Reserved => "reserved in",
                model::inventory::Unusable::Dns => "a DNS resolver of",
                model::inventory::Unusable::Outside => "outside",
            },
            pool.id
        )
    })
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The VPS file for a found domain, or why there is none: the domain must be named as a VPS
/// id no other node declares, have exactly one disk where gitvps keeps that VPS's disk, one
/// network interface with IPv4 addresses, and the memory, vCPUs and disk size of a plan in
/// `products.toml` (so that nothing is resized).
pub fn adopt(found: &Found, cx: &Context<'_>) -> Outcome {
    let name = found.name.escape_debug().to_string();
    let Ok(id) = found.name.parse::<VpsId>() else {
        return Outcome::Refused(format!(
            "{name}: not a VPS id (lowercase letters, digits and '-', starting with a letter)"
        ));
    };
    if cx.node.vps.contains_key(&id) {
        return Outcome::Managed;
    }
    if let Some(v) = cx.inv.vps.get(&id) {
        return Outcome::Refused(format!(
            "{id}: the name collides with the declared VPS {id} (on {})",
            v.node
        ));
    }
    let want = disk_path(cx.node, &id);
    let disk = match found.disks.as_slice() {
        [d] if *d == want => d,
        [d] => {
            return Outcome::Refused(format!(
                "{id}: its disk {} is not where gitvps keeps {id}'s disk ({want})",
                d.escape_debug()
            ));
        }
        ds => {
            return Outcome::Refused(format!(
                "{id}: {} disks; gitvps expresses exactly one per VPS",
                ds.len()
            ));
        }
    };
    let Some(&bytes) = cx.disks.get(id.as_str()) else {
        return Outcome::Refused(format!("{id}: its disk {disk} was not seen on the node"));
    };
    let (mac, ips) = match found.nics.as_slice() {
        [(mac, ips)] => (mac, ips),
        nics => {
            return Outcome::Refused(format!(
                "{id}: {} network interfaces; gitvps expresses exactly one",
                nics.len()
            ));
        }
    };
    let seen: Result<Vec<Ipv4Addr>, _> = ips.iter().map(|i| i.parse()).collect();
    let ips: Vec<Ipv4Addr> = match (seen, cx.given.get(&found.name)) {
        (Ok(seen), Some(given)) if !seen.is_empty() && seen != *given => {
            let words = |v: &[Ipv4Addr]| {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            return Outcome::Refused(format!(
                "{id}: --ip gives {} but the node shows {}",
                words(given),
                words(&seen)
            ));
        }
        (_, Some(given)) if !given.is_empty() => given.clone(),
        (Ok(seen), _) if !seen.is_empty() => seen,
        _ => {
            return Outcome::Refused(format!(
                "{id}: no IPv4 address is known for its interface (Xen: `ip=` in its vif; KVM: a user-mode `hostfwd` to it): give them with --ip {id}=ADDR"
            ));
        }
    };
    if let Some(why) = ips.iter().find_map(|ip| outside_pools(cx, &id, *ip)) {
        return Outcome::Refused(why);
    }
    let ram = found.memory_mib << 20;
    let product = cx.inv.products.values().find(|p| {
        p.resources().is_some_and(|r| {
            r.ram.bytes() == ram && r.vcpus == found.vcpus && r.disk.bytes() == bytes
        })
    });
    let Some(product) = product else {
        return Outcome::Refused(format!(
            "{id}: no plan in products.toml has {} of memory, {} vCPU(s) and a {} disk: add one, then import again",
            Size(ram),
            found.vcpus,
            Size(bytes)
        ));
    };
    let ips: Vec<String> = ips.iter().map(|i| toml_str(&i.to_string())).collect();
    let hostname = match &cx.inv.settings.vps.domain {
        Some(d) => format!("{id}.{d}"),
        None => id.to_string(),
    };
    let text = format!(
        "# Imported by gitvps import from {node} on {today}: domain {id} with {mem}, {vcpus} vCPU(s),\n\
         # disk {disk} ({size}), MAC {mac}.\n\
         # adopted: its domain keeps the config it was started with and is not restarted, its disk\n\
         # counts as installed; remove the mark to hand it over to gitvps (docs/inventory.md).\n\
         # `os` is not known from the node: it only matters for a reinstall.\n\
         customer = {customer}\n\
         product = {product}\n\
         node = {node_s}\n\
         ips = [{ips}]\n\
         hostname = {hostname}\n\
         os = {os}\n\
         created = {today}\n\
         expires = {expires}\n\
         adopted = true\n",
        node = cx.node.node,
        today = cx.today,
        mem = Size(ram),
        vcpus = found.vcpus,
        size = Size(bytes),
        mac = mac.escape_debug(),
        customer = toml_str(cx.customer.as_str()),
        product = toml_str(product.id.as_str()),
        node_s = toml_str(cx.node.node.as_str()),
        ips = ips.join(", "),
        hostname = toml_str(&hostname),
        os = toml_str(cx.inv.settings.vps.default_os.as_str()),
        expires = model::inventory::add_months(cx.today, product.period_months),
    );
    Outcome::Adopt { id, text }
}
