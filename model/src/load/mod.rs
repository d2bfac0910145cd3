//! Loading a repository into an [`Inventory`]: reads every file, in parallel, and reports
//! every problem in one run with its file, line, column and field.

mod backup;
mod catalog;
mod customer;
mod files;
pub(crate) use files::parse_doc;
mod node;
mod pools;
mod settings;
mod vps;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike};

use crate::diag::{Diagnostic, Diagnostics, Origin};
use crate::inventory::*;
use crate::read::{Obj, Reader};
use crate::settings::Settings;
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

type Parts = (Inventory, Broken, Vec<Diagnostic>);

pub(crate) fn load_parts(root: &Path) -> Result<Parts, LoadError> {
    let mut diags = Vec::new();
    let mut broken = Broken::default();

    let settings = match files::read_file(root, paths::SETTINGS)? {
        None => Settings::default(),
        Some(src) => {
            files::parse_one(&src, &mut diags, settings::parse_settings).unwrap_or_default()
        }
    };
    let ((currency, products), catalog_unreadable) = files::load_list(
        root,
        paths::PRODUCTS,
        "the product catalog is missing",
        &mut diags,
        &mut broken.products,
        catalog::parse_catalog,
    )?;
    broken.catalog = catalog_unreadable;
    let (pools, pool_file_unreadable) = files::load_list(
        root,
        paths::POOLS,
        "the IP pools are missing",
        &mut diags,
        &mut broken.pools,
        pools::parse_pools,
    )?;
    broken.pool_file = pool_file_unreadable;

    let nodes = files::load_dir(
        root,
        paths::NODES,
        &mut diags,
        &mut broken.nodes,
        node::parse_node,
    )?;
    let customers = files::load_dir(
        root,
        paths::CUSTOMERS,
        &mut diags,
        &mut broken.customers,
        customer::parse_customer,
    )?;
    let vps = files::load_dir(
        root,
        paths::VPS,
        &mut diags,
        &mut broken.vps,
        vps::parse_vps,
    )?;
    for stem in &broken.vps {
        if !vps.contains_key(stem.as_str()) {
            broken.claims.extend(files::claims_of(root, stem));
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

/// The end every parser shares: reports the table's unknown keys (with a did-you-mean), then
/// builds the entity from the fields that parsed, or `None` when a required one did not.
fn build<T>(r: &mut Reader<'_>, obj: &Obj<'_>, entity: impl FnOnce() -> Option<T>) -> Option<T> {
    obj.finish(r);
    entity()
}

/// An entry of a list file (`[[product]]` in products.toml, `[[pool]]` in pools.toml).
trait Entry: Sized {
    /// What the entries are keyed by.
    type Id: Ord + Clone + Display;
    /// The table name: `product` for `[[product]]`.
    const KIND: &'static str;
    /// The fields of one entry.
    const KEYS: &'static [&'static str];

    /// Reads one entry with [`build`]; `o` is its origin, already prefixed (`pool[2].`).
    fn parse(r: &mut Reader<'_>, p: &Obj<'_>, o: Origin) -> Option<Self>;
    /// Its id, and where it was defined.
    fn key(&self) -> (&Self::Id, &Origin);
}

/// Reads every `[[KIND]]` entry of `t`, keyed by id. An entry with errors is left out and its
/// raw id goes to `failed`; a duplicate id is an error at the later entry.
fn entries<T: Entry>(
    r: &mut Reader<'_>,
    t: &dyn TableLike,
    failed: &mut BTreeSet<String>,
) -> BTreeMap<T::Id, T> {
    let mut out: BTreeMap<T::Id, T> = BTreeMap::new();
    for (i, (pt, span)) in table_list(r, t, T::KIND).into_iter().enumerate() {
        let prefix = format!("{}[{i}].", T::KIND);
        let p = Obj::new(pt, prefix.clone(), span.clone(), T::KEYS);
        let o = r.origin(span).prefixed(prefix);
        let errors = r.error_count();
        let Some(entry) = T::parse(r, &p, o) else {
            failed.extend(raw_id(pt));
            continue;
        };
        let (id, _) = entry.key();
        if r.error_count() > errors {
            failed.insert(id.to_string());
            continue;
        }
        if let Some(first) = out.get(id) {
            let line = first.key().1.pos("").line;
            p.error(
                r,
                "id",
                format!(
                    "duplicate {} id `{id}` (first defined at line {line})",
                    T::KIND
                ),
            );
            continue;
        }
        out.insert(id.clone(), entry);
    }
    out
}

/// The tables of an array of tables (`[[product]]`), or of an array of inline tables.
fn table_list<'a>(
    r: &mut Reader<'_>,
    t: &'a dyn TableLike,
    key: &str,
) -> Vec<(&'a dyn TableLike, Option<Range<usize>>)> {
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
