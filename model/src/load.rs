//! Loading a repository into an [`Inventory`]: reads every file, in parallel, and reports
//! every problem in one run with its file, line, column and field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use toml_edit::{Document, Item, TableLike};

use crate::diag::{Diagnostic, Diagnostics, Origin, Pos, SourceFile};
use crate::ids::*;
use crate::inventory::*;
use crate::read::{Obj, Reader};
use crate::settings::*;
use crate::values::*;

/// Why a repository could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or folder could not be read.
    #[error("cannot read {path}")]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The inventory has errors; all of them are listed.
    #[error("the inventory has {count} error(s):\n{0}", count = .0.len())]
    Invalid(Diagnostics),
}

/// Entities that exist but failed to load: references to them are not reported again.
#[derive(Debug, Default)]
pub(crate) struct Broken {
    /// products.toml could not be read at all: every product reference is unknowable.
    pub(crate) catalog: bool,
    /// Ids of products whose entry has errors.
    pub(crate) products: BTreeSet<String>,
    /// pools.toml could not be read at all.
    pub(crate) pool_file: bool,
    /// Ids of pools whose entry has errors.
    pub(crate) pools: BTreeSet<String>,
    pub(crate) nodes: BTreeSet<String>,
    pub(crate) customers: BTreeSet<String>,
    /// VPS files with errors (loaded with defaults, or not at all).
    pub(crate) vps: BTreeSet<String>,
    /// Addresses named by VPS files that failed to load: still taken.
    pub(crate) claims: Vec<Claim>,
}

/// An address named in a VPS file that failed to load.
#[derive(Debug)]
pub(crate) struct Claim {
    pub(crate) addr: VpsAddr,
    pub(crate) vps: String,
    pub(crate) file: std::sync::Arc<str>,
    pub(crate) line: u32,
}

impl Broken {
    pub(crate) fn product(&self, id: &str) -> bool {
        self.catalog || self.products.contains(id)
    }

    pub(crate) fn pool(&self, id: &str) -> bool {
        self.pool_file || self.pools.contains(id)
    }
}

/// The file names of the repository layout.
pub mod paths {
    /// Repo-wide settings.
    pub const SETTINGS: &str = "gitvps.toml";
    /// The catalog.
    pub const PRODUCTS: &str = "products.toml";
    /// IP pools.
    pub const POOLS: &str = "pools.toml";
    /// One file per node.
    pub const NODES: &str = "inventory/nodes";
    /// One file per customer.
    pub const CUSTOMERS: &str = "inventory/customers";
    /// One file per VPS.
    pub const VPS: &str = "inventory/vps";
}

impl Inventory {
    /// Loads and validates the repository at `root`.
    ///
    /// Every syntax, type and rule error is collected; the result is `Ok` only
    /// when there are none.
    pub fn load(root: &Path) -> Result<Inventory, LoadError> {
        let (inv, broken, mut diags) = load_parts(root)?;
        diags.extend(crate::validate::validate(&inv, &broken));
        // `os` and `appliance` must name an entry of the repo's bootstraps/ catalog.
        match crate::bootstraps::Catalog::load(root) {
            Ok(cat) => diags.extend(cat.check(&inv)),
            Err(LoadError::Invalid(d)) => diags.extend(d.0),
            Err(e) => return Err(e),
        }
        if diags.is_empty() {
            Ok(inv)
        } else {
            Err(LoadError::Invalid(Diagnostics(diags).sorted()))
        }
    }
}

fn read_file(root: &Path, rel: &str) -> Result<Option<SourceFile>, LoadError> {
    let path = root.join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(match String::from_utf8(bytes) {
            Ok(text) => SourceFile::new(rel, text),
            Err(_) => SourceFile::new(rel, String::new()).with_bad_utf8(),
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(LoadError::Io { path, source }),
    }
}

/// Files of one inventory folder, sorted, as `(id text, repo-relative path)`.
fn list_dir(root: &Path, rel: &str) -> Result<Vec<(String, String)>, LoadError> {
    let dir = root.join(rel);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(LoadError::Io { path: dir, source }),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|source| LoadError::Io {
            path: dir.clone(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".toml") {
            out.push((stem.to_owned(), format!("{rel}/{name}")));
        }
    }
    out.sort();
    Ok(out)
}

/// Parses a file's text; a syntax error becomes a diagnostic.
fn parse_doc(src: &SourceFile) -> Result<Document<&str>, Diagnostic> {
    if src.bad_utf8() {
        return Err(src.diag(Pos::default(), "", "the file is not valid UTF-8"));
    }
    Document::parse(src.text.as_str()).map_err(|e| {
        let pos = src.pos_of(e.span());
        let msg = e
            .message()
            .trim()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned();
        src.diag(pos, "", format!("invalid TOML: {msg}"))
    })
}

type Parts = (Inventory, Broken, Vec<Diagnostic>);

pub(crate) fn load_parts(root: &Path) -> Result<Parts, LoadError> {
    let mut diags = Vec::new();
    let mut broken = Broken::default();

    let settings = match read_file(root, paths::SETTINGS)? {
        None => Settings::default(),
        Some(src) => parse_one(&src, &mut diags, parse_settings).unwrap_or_default(),
    };

    let (currency, products) = match read_file(root, paths::PRODUCTS)? {
        None => {
            diags.push(missing(paths::PRODUCTS, "the product catalog is missing"));
            broken.catalog = true;
            (None, BTreeMap::new())
        }
        Some(src) => {
            let r = parse_one(&src, &mut diags, |r, t| {
                parse_catalog(r, t, &mut broken.products)
            });
            broken.catalog = r.is_none();
            r.unwrap_or_default()
        }
    };

    let pools = match read_file(root, paths::POOLS)? {
        None => {
            diags.push(missing(paths::POOLS, "the IP pools are missing"));
            broken.pool_file = true;
            BTreeMap::new()
        }
        Some(src) => {
            let r = parse_one(&src, &mut diags, |r, t| {
                parse_pools(r, t, &mut broken.pools)
            });
            broken.pool_file = r.is_none();
            r.unwrap_or_default()
        }
    };

    let nodes = load_dir(
        root,
        paths::NODES,
        &mut diags,
        &mut broken.nodes,
        parse_node,
    )?;
    let customers = load_dir(
        root,
        paths::CUSTOMERS,
        &mut diags,
        &mut broken.customers,
        parse_customer,
    )?;
    let vps = load_dir(root, paths::VPS, &mut diags, &mut broken.vps, parse_vps)?;
    for stem in &broken.vps {
        if !vps.contains_key(stem.as_str()) {
            broken.claims.extend(claims_of(root, stem));
        }
    }

    let inv = Inventory {
        settings,
        currency: currency.unwrap_or_else(|| Currency::new_unchecked("USD")),
        products,
        pools,
        nodes,
        customers,
        vps,
    };
    Ok((inv, broken, diags))
}

/// The addresses a VPS file names, read leniently from a file that failed to load.
fn claims_of(root: &Path, stem: &str) -> Vec<Claim> {
    let rel = format!("{}/{stem}.toml", paths::VPS);
    let Ok(Some(src)) = read_file(root, &rel) else {
        return Vec::new();
    };
    let Ok(doc) = parse_doc(&src) else {
        return Vec::new();
    };
    let Some(arr) = doc.get("ips").and_then(Item::as_array) else {
        return Vec::new();
    };
    arr.iter()
        .filter_map(|v| {
            let addr = v.as_str()?.parse::<VpsAddr>().ok()?;
            Some(Claim {
                addr,
                vps: stem.to_owned(),
                file: src.path.clone(),
                line: src.pos_of(v.span()).line,
            })
        })
        .collect()
}

fn missing(file: &str, what: &str) -> Diagnostic {
    Diagnostic {
        file: file.into(),
        line: 0,
        col: 0,
        field: String::new(),
        message: format!("{what}: file not found"),
    }
}

fn parse_one<T>(
    src: &SourceFile,
    diags: &mut Vec<Diagnostic>,
    f: impl FnOnce(&mut Reader<'_>, &dyn TableLike) -> Option<T>,
) -> Option<T> {
    let doc = match parse_doc(src) {
        Ok(d) => d,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let mut r = Reader::new(src);
    let out = f(&mut r, doc.as_table());
    diags.extend(r.diags);
    out
}

type EntityParser<Id, T> = fn(&mut Reader<'_>, Id, &dyn TableLike) -> Option<T>;

fn load_dir<Id, T>(
    root: &Path,
    rel: &str,
    diags: &mut Vec<Diagnostic>,
    broken: &mut BTreeSet<String>,
    parse: EntityParser<Id, T>,
) -> Result<BTreeMap<Id, T>, LoadError>
where
    Id: std::str::FromStr<Err = IdError> + Ord + Clone + Send,
    T: Send,
{
    let files = list_dir(root, rel)?;
    type FileResult<Id, T> = Result<(String, Option<(Id, T)>, Vec<Diagnostic>), LoadError>;
    let results: Vec<FileResult<Id, T>> = files
        .into_par_iter()
        .map(|(stem, relpath)| {
            let Some(src) = read_file(root, &relpath)? else {
                return Ok((stem, None, Vec::new()));
            };
            let id = match stem.parse::<Id>() {
                Ok(id) => id,
                Err(e) => {
                    let d = src.diag(Pos::default(), "", format!("file name: {e}"));
                    return Ok((stem, None, vec![d]));
                }
            };
            let mut ds = Vec::new();
            let entity = parse_one(&src, &mut ds, |r, t| parse(r, id.clone(), t));
            Ok((stem, entity.map(|e| (id, e)), ds))
        })
        .collect();
    let mut out = BTreeMap::new();
    for res in results {
        let (stem, entity, ds) = res?;
        if !ds.is_empty() || entity.is_none() {
            broken.insert(stem);
        }
        diags.extend(ds);
        if let Some((id, e)) = entity {
            out.insert(id, e);
        }
    }
    Ok(out)
}

const SETTINGS_KEYS: &[&str] = &["site", "mail", "billing", "reconciler", "vps"];

fn parse_settings(r: &mut Reader<'_>, t: &dyn TableLike) -> Option<Settings> {
    let mut s = Settings::default();
    let mut o = r.origin(None);
    let top = Obj::new(t, "", None, SETTINGS_KEYS);
    if let Some(site) = top.sub(r, &mut o, "site", &["name", "url"]) {
        if let Some(v) = site.opt(r, &mut o, "name") {
            s.site.name = v;
        }
        if let Some(v) = site.opt::<String>(r, &mut o, "url") {
            if v.starts_with("http://") || v.starts_with("https://") {
                s.site.url = v;
            } else {
                r.error(
                    site.span_of("url"),
                    "site.url",
                    format!("`{v}` is not an http(s) URL"),
                );
            }
        }
        site.finish(r);
    }
    if let Some(mail) = top.sub(r, &mut o, "mail", &["from", "from_name"]) {
        if let Some(v) = mail.opt(r, &mut o, "from") {
            s.mail.from = v;
        }
        if let Some(v) = mail.opt(r, &mut o, "from_name") {
            s.mail.from_name = v;
        }
        mail.finish(r);
    }
    if let Some(b) = top.sub(r, &mut o, "billing", &["grace_days", "reminder_days"]) {
        if let Some(v) = b.opt(r, &mut o, "grace_days") {
            s.billing.grace_days = v;
        }
        if b.has("reminder_days") {
            s.billing.reminder_days = b.list(r, &mut o, "reminder_days");
        }
        b.finish(r);
    }
    const REC: &[&str] = &[
        "retention_days",
        "parallelism",
        "status_branch",
        "connect_timeout_secs",
        "command_timeout_secs",
        "shutdown_timeout_secs",
        "boot_timeout_secs",
    ];
    if let Some(rec) = top.sub(r, &mut o, "reconciler", REC) {
        let c = &mut s.reconciler;
        if let Some(v) = rec.opt(r, &mut o, "retention_days") {
            c.retention_days = v;
        }
        if let Some(v) = rec.opt::<u32>(r, &mut o, "parallelism") {
            if v == 0 {
                r.error(
                    rec.span_of("parallelism"),
                    "reconciler.parallelism",
                    "must be at least 1",
                );
            } else {
                c.parallelism = v;
            }
        }
        if let Some(v) = rec.opt::<String>(r, &mut o, "status_branch") {
            if v.parse::<ProductId>().is_ok() {
                c.status_branch = v;
            } else {
                r.error(
                    rec.span_of("status_branch"),
                    "reconciler.status_branch",
                    format!("`{v}` is not a simple branch name (lowercase letters, digits, '-')"),
                );
            }
        }
        for (key, slot) in [
            ("connect_timeout_secs", &mut c.connect_timeout_secs),
            ("command_timeout_secs", &mut c.command_timeout_secs),
            ("shutdown_timeout_secs", &mut c.shutdown_timeout_secs),
            ("boot_timeout_secs", &mut c.boot_timeout_secs),
        ] {
            if let Some(v) = rec.opt(r, &mut o, key) {
                *slot = v;
            }
        }
        rec.finish(r);
    }
    if let Some(v) = top.sub(r, &mut o, "vps", &["default_os", "domain", "id_prefix"]) {
        if let Some(x) = v.opt(r, &mut o, "default_os") {
            s.vps.default_os = x;
        }
        s.vps.domain = v.opt(r, &mut o, "domain");
        if let Some(p) = v.opt::<String>(r, &mut o, "id_prefix") {
            if format!("{p}1").parse::<VpsId>().is_ok() {
                s.vps.id_prefix = p;
            } else {
                r.error(
                    v.span_of("id_prefix"),
                    "vps.id_prefix",
                    format!("`{p}` cannot start a VPS id (lowercase letters, digits, '-')"),
                );
            }
        }
        v.finish(r);
    }
    top.finish(r);
    Some(s)
}

const PRODUCT_KEYS: &[&str] = &[
    "id",
    "name",
    "renews",
    "period_months",
    "price",
    "setup_fee",
    "commission",
    "private",
    "disk",
    "ram",
    "vcpus",
    "traffic",
    "bandwidth",
    "cpu_weight",
    "cpu_cap",
    "disk_iops",
    "disk_bandwidth",
];
const RESOURCE_KEYS: &[&str] = &[
    "disk",
    "ram",
    "vcpus",
    "traffic",
    "bandwidth",
    "cpu_weight",
    "cpu_cap",
    "disk_iops",
    "disk_bandwidth",
];

/// The tables of an array of tables (`[[product]]`), or of an array of inline tables.
fn table_list<'a>(
    r: &mut Reader<'_>,
    t: &'a dyn TableLike,
    key: &str,
) -> Vec<(&'a dyn TableLike, Option<std::ops::Range<usize>>)> {
    match t.get(key) {
        None | Some(Item::None) => Vec::new(),
        Some(Item::ArrayOfTables(a)) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
        Some(Item::Value(toml_edit::Value::Array(a))) => {
            let mut out = Vec::new();
            for (i, v) in a.iter().enumerate() {
                match v.as_inline_table() {
                    Some(it) => out.push((it as &dyn TableLike, v.span())),
                    None => r.error(v.span(), &format!("{key}[{i}]"), "expected a table"),
                }
            }
            out
        }
        Some(other) => {
            r.error(other.span(), key, format!("expected [[{key}]] tables"));
            Vec::new()
        }
    }
}

/// The raw `id` of a table entry, for remembering entries that failed.
fn raw_id(t: &dyn TableLike) -> Option<String> {
    t.get("id").and_then(Item::as_str).map(str::to_owned)
}

fn parse_catalog(
    r: &mut Reader<'_>,
    t: &dyn TableLike,
    failed: &mut BTreeSet<String>,
) -> Option<(Option<Currency>, BTreeMap<ProductId, Product>)> {
    let mut o = r.origin(None);
    let top = Obj::new(t, "", None, &["currency", "product"]);
    let currency = top.req::<Currency>(r, &mut o, "currency");
    top.finish(r);
    let mut products = BTreeMap::new();
    for (i, (pt, span)) in table_list(r, t, "product").into_iter().enumerate() {
        let prefix = format!("product[{i}].");
        let p = Obj::new(pt, prefix.clone(), span.clone(), PRODUCT_KEYS);
        let mut o = r.origin(span).prefixed(prefix);
        let errors = r.error_count();
        let id = p.req::<ProductId>(r, &mut o, "id");
        let name = p.req::<String>(r, &mut o, "name");
        let renews = p.opt::<ProductId>(r, &mut o, "renews");
        let period_months = p.req::<u32>(r, &mut o, "period_months");
        let price = p.req::<Money>(r, &mut o, "price");
        let setup_fee = p.opt(r, &mut o, "setup_fee").unwrap_or(Money::ZERO);
        let commission = p.opt(r, &mut o, "commission").unwrap_or(Money::ZERO);
        let private = p.opt(r, &mut o, "private").unwrap_or(false);
        let kind = if let Some(renews) = renews {
            for key in RESOURCE_KEYS {
                if pt.contains_key(key) {
                    r.error(
                        pt.key(key).and_then(toml_edit::Key::span),
                        &format!("product[{i}].{key}"),
                        format!("a renewal product takes its resources from `{renews}`; remove this field"),
                    );
                }
            }
            Some(ProductKind::Renewal { renews })
        } else {
            let disk = p.req(r, &mut o, "disk");
            let ram = p.req(r, &mut o, "ram");
            let vcpus = p.req::<u32>(r, &mut o, "vcpus");
            let traffic = p.req(r, &mut o, "traffic");
            let bandwidth = p.opt(r, &mut o, "bandwidth");
            let cpu_weight = p.opt::<u32>(r, &mut o, "cpu_weight").unwrap_or(256);
            let cpu_cap = p.opt::<u32>(r, &mut o, "cpu_cap").unwrap_or(0);
            let disk_iops = p.opt::<u32>(r, &mut o, "disk_iops");
            let disk_bandwidth = p.opt::<ByteRate>(r, &mut o, "disk_bandwidth");
            if disk_iops.is_some_and(|n| !(1..=1_000_000).contains(&n)) {
                r.error(
                    span_of(pt, "disk_iops"),
                    &format!("product[{i}].disk_iops"),
                    "must be 1 to 1000000 (leave it out for no cap)",
                );
            }
            if !(1..=65535).contains(&cpu_weight) {
                r.error(
                    span_of(pt, "cpu_weight"),
                    &format!("product[{i}].cpu_weight"),
                    "must be 1 to 65535",
                );
            }
            if vcpus == Some(0) {
                r.error(
                    span_of(pt, "vcpus"),
                    &format!("product[{i}].vcpus"),
                    "must be at least 1",
                );
            }
            for (key, size) in [("disk", disk), ("ram", ram)] {
                if size == Some(Size(0)) {
                    r.error(
                        span_of(pt, key),
                        &format!("product[{i}].{key}"),
                        "must be more than 0",
                    );
                }
            }
            match (disk, ram, vcpus, traffic) {
                (Some(disk), Some(ram), Some(vcpus), Some(traffic)) => {
                    Some(ProductKind::Plan(Resources {
                        disk,
                        ram,
                        vcpus,
                        traffic,
                        bandwidth,
                        cpu_weight,
                        cpu_cap,
                        disk_iops,
                        disk_bandwidth,
                    }))
                }
                _ => None,
            }
        };
        if period_months == Some(0) {
            r.error(
                span_of(pt, "period_months"),
                &format!("product[{i}].period_months"),
                "must be at least 1",
            );
        }
        p.finish(r);
        let (Some(id), Some(name), Some(kind), Some(period_months), Some(price)) =
            (id, name, kind, period_months, price)
        else {
            failed.extend(raw_id(pt));
            continue;
        };
        if r.error_count() > errors {
            failed.insert(id.to_string());
            continue;
        }
        if let Some(first) = products.get(&id) {
            let first: &Product = first;
            r.error(
                span_of(pt, "id"),
                &format!("product[{i}].id"),
                format!(
                    "duplicate product id `{id}` (first defined at line {})",
                    first.origin.pos("").line
                ),
            );
            continue;
        }
        products.insert(
            id.clone(),
            Product {
                id,
                name,
                kind,
                period_months,
                price,
                setup_fee,
                commission,
                private,
                origin: o,
            },
        );
    }
    Some((currency, products))
}

fn span_of(t: &dyn TableLike, key: &str) -> Option<std::ops::Range<usize>> {
    t.get(key)
        .and_then(Item::span)
        .or_else(|| t.key(key).and_then(toml_edit::Key::span))
}

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

fn parse_pools(
    r: &mut Reader<'_>,
    t: &dyn TableLike,
    failed: &mut BTreeSet<String>,
) -> Option<BTreeMap<PoolId, Pool>> {
    let top = Obj::new(t, "", None, &["pool"]);
    top.finish(r);
    let mut pools = BTreeMap::new();
    for (i, (pt, span)) in table_list(r, t, "pool").into_iter().enumerate() {
        let prefix = format!("pool[{i}].");
        let p = Obj::new(pt, prefix.clone(), span.clone(), POOL_KEYS);
        let mut o = r.origin(span).prefixed(prefix);
        let errors = r.error_count();
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
        p.finish(r);
        if let (Some(net), Some(gw)) = (network, gateway)
            && !net.contains(&gw)
        {
            r.error(
                span_of(pt, "gateway"),
                &format!("pool[{i}].gateway"),
                format!("{gw} is outside the pool's network {net}"),
            );
        }
        let (Some(id), Some(location), Some(network), Some(gateway)) =
            (id, location, network, gateway)
        else {
            failed.extend(raw_id(pt));
            continue;
        };
        if r.error_count() > errors {
            failed.insert(id.to_string());
            continue;
        }
        if let Some(first) = pools.get(&id) {
            let first: &Pool = first;
            r.error(
                span_of(pt, "id"),
                &format!("pool[{i}].id"),
                format!(
                    "duplicate pool id `{id}` (first defined at line {})",
                    first.origin.pos("").line
                ),
            );
            continue;
        }
        pools.insert(
            id.clone(),
            Pool {
                id,
                location,
                network,
                gateway,
                dns,
                reserved,
                rdns_zone,
                ipv6,
                origin: o,
            },
        );
    }
    Some(pools)
}

const NODE_KEYS: &[&str] = &[
    "address",
    "port",
    "user",
    "sudo",
    "host_key",
    "location",
    "country",
    "hypervisor",
    "kvm",
    "storage",
    "pools",
    "capacity",
    "overcommit",
    "maintenance",
    "root",
];
const KVM_KEYS: &[&str] = &["accel", "network", "bridge", "forward_base"];

fn parse_node(r: &mut Reader<'_>, id: NodeId, t: &dyn TableLike) -> Option<Node> {
    let n = Obj::new(t, "", None, NODE_KEYS);
    let mut o = r.origin(None);
    let address = n.req::<Host>(r, &mut o, "address");
    let port = n.opt::<u16>(r, &mut o, "port").unwrap_or(22);
    if port == 0 {
        r.error(n.span_of("port"), "port", "must be 1 to 65535");
    }
    let user = n.opt::<UnixUser>(r, &mut o, "user");
    let sudo = n.opt::<bool>(r, &mut o, "sudo").unwrap_or(false);
    let host_key = n.req::<SshPublicKey>(r, &mut o, "host_key");
    let location = n.req::<String>(r, &mut o, "location");
    let country = n.req::<Country>(r, &mut o, "country");
    let hypervisor = n.req_kw::<Hypervisor>(r, &mut o, "hypervisor");
    let kvm = parse_kvm(r, &mut o, &n, hypervisor);
    let storage = match n.sub(r, &mut o, "storage", &["backend", "vg", "dir", "format"]) {
        None => {
            if !t.contains_key("storage") {
                r.error(None, "storage", "missing required field");
            }
            None
        }
        Some(s) => {
            let backend = s.req::<String>(r, &mut o, "backend");
            let st = match backend.as_deref() {
                Some("lvm") => s
                    .req::<VgName>(r, &mut o, "vg")
                    .map(|vg| Storage::Lvm { vg }),
                Some("file") => {
                    let dir = s.req::<AbsPath>(r, &mut o, "dir");
                    let format = s.kw::<ImageFormat>(r, &mut o, "format");
                    if format == Some(ImageFormat::Qcow2) && hypervisor == Some(Hypervisor::Xen) {
                        r.error(
                            s.span_of("format"),
                            "storage.format",
                            "qcow2 images are for hypervisor = \"kvm\" (this node runs \"xen\", whose guests use raw images)",
                        );
                    }
                    // A `format` that did not parse: the images' format is unknowable.
                    match (dir, format) {
                        (Some(dir), Some(format)) => Some(Storage::File { dir, format }),
                        (Some(dir), None) if !s.has("format") => Some(Storage::File {
                            dir,
                            format: ImageFormat::Raw,
                        }),
                        _ => None,
                    }
                }
                Some(other) => {
                    r.error(
                        span_of_sub(t, "storage", "backend"),
                        "storage.backend",
                        format!(
                            "`{}` is not a storage backend: use \"lvm\", \"file\"",
                            other.escape_debug()
                        ),
                    );
                    None
                }
                None => None,
            };
            if backend.as_deref() == Some("lvm") && s.has("format") {
                r.error(
                    s.span_of("format"),
                    "storage.format",
                    "unknown field for the \"lvm\" backend: `format` belongs to the \"file\" backend (logical volumes are raw)",
                );
            }
            match &st {
                Some(Storage::Lvm { .. })
                    if t.get("storage")
                        .and_then(|i| i.as_table_like())
                        .is_some_and(|x| x.contains_key("dir")) =>
                {
                    r.error(
                        span_of_sub(t, "storage", "dir"),
                        "storage.dir",
                        "`dir` belongs to the \"file\" backend; \"lvm\" takes `vg`",
                    );
                }
                Some(Storage::File { .. })
                    if t.get("storage")
                        .and_then(|i| i.as_table_like())
                        .is_some_and(|x| x.contains_key("vg")) =>
                {
                    r.error(
                        span_of_sub(t, "storage", "vg"),
                        "storage.vg",
                        "`vg` belongs to the \"lvm\" backend; \"file\" takes `dir`",
                    );
                }
                _ => {}
            }
            s.finish(r);
            st
        }
    };
    let pools = n.list::<PoolId>(r, &mut o, "pools");
    let capacity = match n.sub(r, &mut o, "capacity", &["ram", "disk", "vcpus"]) {
        None => {
            if !t.contains_key("capacity") {
                r.error(None, "capacity", "missing required field");
            }
            None
        }
        Some(c) => {
            let ram = c.req(r, &mut o, "ram");
            let disk = c.req(r, &mut o, "disk");
            let vcpus = c.req(r, &mut o, "vcpus");
            c.finish(r);
            match (ram, disk, vcpus) {
                (Some(ram), Some(disk), Some(vcpus)) => Some(Capacity { ram, disk, vcpus }),
                _ => None,
            }
        }
    };
    let mut overcommit = Overcommit::default();
    if let Some(oc) = n.sub(r, &mut o, "overcommit", &["ram", "disk", "vcpus"]) {
        for (key, slot) in [
            ("ram", &mut overcommit.ram),
            ("disk", &mut overcommit.disk),
            ("vcpus", &mut overcommit.vcpus),
        ] {
            if let Some(v) = oc.opt(r, &mut o, key) {
                *slot = v;
            }
        }
        oc.finish(r);
    }
    let maintenance = n.opt(r, &mut o, "maintenance").unwrap_or(false);
    let root = n
        .opt::<AbsPath>(r, &mut o, "root")
        .unwrap_or_else(|| AbsPath::new_unchecked("/"));
    n.finish(r);
    Some(Node {
        id,
        address: address?,
        port,
        user: user.unwrap_or_else(|| UnixUser::new_unchecked("gitvps")),
        sudo,
        host_key: host_key?,
        location: location?,
        country: country?,
        hypervisor: hypervisor?,
        kvm: kvm?,
        storage: storage?,
        pools,
        capacity: capacity?,
        overcommit,
        maintenance,
        root,
        origin: o,
    })
}

/// The `[kvm]` table of a node: `Some(None)` for a Xen node, `Some(Some(..))` with defaults
/// filled for a KVM node, `None` when the settings cannot be known (an error is recorded).
fn parse_kvm(
    r: &mut Reader<'_>,
    o: &mut Origin,
    n: &Obj<'_>,
    hypervisor: Option<Hypervisor>,
) -> Option<Option<Kvm>> {
    if hypervisor == Some(Hypervisor::Xen) {
        if n.has("kvm") {
            let span = n.span_of("kvm");
            o.record("kvm", r.src.pos_of(span.clone()));
            r.error(
                span,
                "kvm",
                "only for hypervisor = \"kvm\" (this node runs \"xen\"); remove this table",
            );
        }
        return Some(None);
    }
    let Some(k) = n.sub(r, o, "kvm", KVM_KEYS) else {
        // Absent (defaults) or not a table (the error is recorded).
        return Some(Some(Kvm::default()));
    };
    let accel = k.kw::<Accel>(r, o, "accel").unwrap_or(Accel::Kvm);
    let mode = k.kw::<KvmNetworkMode>(r, o, "network");
    let bridge = k.opt::<crate::read::IfName>(r, o, "bridge");
    let forward_base = k.opt::<u16>(r, o, "forward_base");
    let network = match mode {
        // A `network` that did not parse: which fields belong is unknowable.
        None if k.has("network") => None,
        None | Some(KvmNetworkMode::Bridge) => {
            if k.has("forward_base") {
                r.error(
                    k.span_of("forward_base"),
                    "kvm.forward_base",
                    "only with network = \"user\" (bridged guests are reached on their own addresses)",
                );
            }
            Some(KvmNetwork::Bridge {
                bridge: bridge.map_or_else(|| DEFAULT_KVM_BRIDGE.to_owned(), |b| b.0),
            })
        }
        Some(KvmNetworkMode::User) => {
            if k.has("bridge") {
                r.error(
                    k.span_of("bridge"),
                    "kvm.bridge",
                    "only with network = \"bridge\" (user-mode guests join no bridge)",
                );
            }
            if !k.has("forward_base") {
                r.error(
                    k.span_of("forward_base"),
                    "kvm.forward_base",
                    "missing required field with network = \"user\": each VPS's SSH is forwarded from 127.0.0.1:(forward_base + last octet of its first IPv4)",
                );
            }
            if let Some(base) = forward_base
                && !(1024..=u16::MAX - 255).contains(&base)
            {
                r.error(
                    k.span_of("forward_base"),
                    "kvm.forward_base",
                    format!(
                        "must be 1024 to {}: forward_base + 255 (the highest last octet) must still be a port",
                        u16::MAX - 255
                    ),
                );
            }
            forward_base.map(|forward_base| KvmNetwork::User { forward_base })
        }
    };
    k.finish(r);
    Some(Some(Kvm {
        accel,
        network: network?,
    }))
}

fn span_of_sub(t: &dyn TableLike, table: &str, key: &str) -> Option<std::ops::Range<usize>> {
    t.get(table)
        .and_then(Item::as_table_like)
        .and_then(|s| span_of(s, key))
}

const CUSTOMER_KEYS: &[&str] = &[
    "name",
    "company",
    "email",
    "language",
    "password_hash",
    "ssh_keys",
];

fn parse_customer(r: &mut Reader<'_>, id: CustomerId, t: &dyn TableLike) -> Option<Customer> {
    let c = Obj::new(t, "", None, CUSTOMER_KEYS);
    let mut o = r.origin(None);
    let name = c.req::<String>(r, &mut o, "name");
    let company = c.opt(r, &mut o, "company");
    let email = c.req::<Email>(r, &mut o, "email");
    let language = c
        .kw::<Language>(r, &mut o, "language")
        .unwrap_or(Language::En);
    let password_hash = c.opt(r, &mut o, "password_hash");
    let ssh_keys = c.list::<SshPublicKey>(r, &mut o, "ssh_keys");
    c.finish(r);
    Some(Customer {
        id,
        name: name?,
        company,
        email: email?,
        language,
        password_hash,
        ssh_keys,
        origin: o,
    })
}

const VPS_KEYS: &[&str] = &[
    "customer",
    "product",
    "node",
    "ips",
    "hostname",
    "os",
    "appliance",
    "power",
    "state",
    "created",
    "expires",
    "destroyed",
    "actions",
    "monitor",
];

fn parse_vps(r: &mut Reader<'_>, id: VpsId, t: &dyn TableLike) -> Option<Vps> {
    let v = Obj::new(t, "", None, VPS_KEYS);
    let mut o = r.origin(None);
    let customer = v.req::<CustomerId>(r, &mut o, "customer");
    let product = v.req::<ProductId>(r, &mut o, "product");
    let node = v.req::<NodeId>(r, &mut o, "node");
    let ips = v.list::<VpsAddr>(r, &mut o, "ips");
    let hostname = v.req::<Hostname>(r, &mut o, "hostname");
    let os = v.req::<OsId>(r, &mut o, "os");
    let appliance = v.opt::<ApplianceId>(r, &mut o, "appliance");
    let power = v.kw::<Power>(r, &mut o, "power").unwrap_or(Power::Running);
    let state = v.kw::<State>(r, &mut o, "state").unwrap_or(State::Active);
    let created = v.req(r, &mut o, "created");
    let expires = v.req(r, &mut o, "expires");
    let destroyed = v.opt(r, &mut o, "destroyed");
    let mut actions = Actions::default();
    if let Some(a) = v.sub(r, &mut o, "actions", &["reboot", "fsck", "reinstall"]) {
        for (key, slot) in [
            ("reboot", &mut actions.reboot),
            ("fsck", &mut actions.fsck),
            ("reinstall", &mut actions.reinstall),
        ] {
            if let Some(n) = a.opt(r, &mut o, key) {
                *slot = n;
            }
        }
        a.finish(r);
    }
    let mut monitor = Monitor::default();
    if let Some(m) = v.sub(r, &mut o, "monitor", &["alert_email", "checks"]) {
        monitor.alert_email = m.opt(r, &mut o, "alert_email");
        monitor.checks = m
            .list::<crate::read::Kw<Check>>(r, &mut o, "checks")
            .into_iter()
            .map(|k| k.0)
            .collect();
        m.finish(r);
    }
    v.finish(r);
    Some(Vps {
        id,
        customer: customer?,
        product: product?,
        node: node?,
        ips,
        hostname: hostname?,
        os: os?,
        appliance,
        power,
        state,
        created: created?,
        expires: expires?,
        destroyed,
        actions,
        monitor,
        origin: o,
    })
}
