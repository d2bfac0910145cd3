//! The collector's sample store: a sled database of every VPS's and node's buckets in the tiers
//! of `monitor::tiers`, and each series' last reading, flushed after every collection.
//!
//! A thin shell over the pure core: deltas come from `monitor::delta`, the buckets a delta or a
//! reading lands in from `monitor::Series::insert`, what expires from `monitor::Tier`. Here they
//! are only merged into, read from and dropped from the database.
//!
//! # Layout
//!
//! | tree | key | value |
//! |---|---|---|
//! | default | `magic` | `gitvps-monitor 2`: what this database is, and its layout version |
//! | `vps` | VPS id, `0`, tier, bucket start | a [`Bucket`]: the tag `0xC1`, then its 12 numbers as LEB128 varints |
//! | `node` | node id, `0`, tier, bucket start | a [`NodeBucket`]: the tag `0xC1`, then 4 gauges as varints |
//! | `last` | `v` or `n`, id | the last [`Sample`] of a VPS, the last CPU reading of a node |
//! | `checks` | VPS id, `0`, check key | a service check's [`CheckState`] (JSON) |
//!
//! Ids never hold a zero byte; a bucket start is its Unix second with the sign bit flipped,
//! big-endian, so keys sort by time. A database without the magic key is refused unless it is
//! empty, so a foreign database is never changed, let alone wiped.
//!
//! Layout 1 stored buckets as fixed-width big-endian numbers (96 bytes a VPS bucket, whose
//! first byte is 0). Its databases are read as they are: their magic key becomes layout 2's,
//! old buckets are decoded by their width and rewritten compact when next merged into, and
//! expire like any other. A layout newer than this gitvps's is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use model::{NodeId, VpsId};
use monitor::report::{HostRaw, cpu_permille};
use monitor::sources::HostCpu;
use monitor::{
    Bucket, CheckState, Counters, Delta, Field, Gauge, Incarnation, Limits, Merge, NodeBucket,
    NodeReading, Sample, Series, Tier,
};

/// What the magic key holds: the store's name and layout version.
const MAGIC: &[u8] = b"gitvps-monitor 2";
/// Layout 1's magic: fixed-width buckets, still read.
const MAGIC_V1: &[u8] = b"gitvps-monitor 1";
/// The first byte of a compact (varint) bucket; a layout-1 bucket starts with 0.
const COMPACT: u8 = 0xC1;
/// The magic key.
const MAGIC_KEY: &[u8] = b"magic";

/// Why the store cannot be used. Each names the database's path.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The path holds something else than a monitor database.
    #[error(
        "{}: not a gitvps monitor database ({what}); refusing to use or change it: point [monitor] database (or --db) elsewhere",
        .path.display()
    )]
    Foreign {
        /// The database.
        path: PathBuf,
        /// What was found.
        what: String,
    },
    /// sled could not open it (corrupt, or held by another collector).
    #[error("{}: cannot open the monitor database (corrupt, or in use by another gitvps monitor); it was left as it is", .path.display())]
    Open {
        /// The database.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sled::Error,
    },
    /// A stored value cannot be decoded.
    #[error("{}: the monitor database is corrupt: {what}", .path.display())]
    Corrupt {
        /// The database.
        path: PathBuf,
        /// What could not be read.
        what: String,
    },
    /// Reading or writing failed.
    #[error("{}: reading or writing the monitor database failed", .path.display())]
    Io {
        /// The database.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sled::Error,
    },
}

/// The sample store.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    vps: sled::Tree,
    node: sled::Tree,
    last: sled::Tree,
    checks: sled::Tree,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What recording one VPS reading did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The first reading of this VPS (or after an out-of-order one): kept as the base.
    First,
    /// The delta since the previous reading, stored in every tier.
    Stored(Delta),
    /// The reading is not after the previous one (the collector's clock stepped back): kept as
    /// the new base, nothing counted.
    OutOfOrder,
}

fn tier_byte(t: Tier) -> u8 {
    match t {
        Tier::Raw => 0,
        Tier::FiveMinutes => 1,
        Tier::Hourly => 2,
    }
}

fn tier_of(b: u8) -> Option<Tier> {
    Tier::ALL.into_iter().find(|t| tier_byte(*t) == b)
}

fn time_key(t: DateTime<Utc>) -> [u8; 8] {
    // Flipping the sign bit makes the big-endian bytes sort like the signed seconds.
    ((t.timestamp() as u64) ^ (1 << 63)).to_be_bytes()
}

fn key(id: &str, tier: Tier, start: DateTime<Utc>) -> Vec<u8> {
    let mut k = Vec::with_capacity(id.len() + 10);
    k.extend_from_slice(id.as_bytes());
    k.push(0);
    k.push(tier_byte(tier));
    k.extend_from_slice(&time_key(start));
    k
}

fn prefix(id: &str) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.push(0);
    k
}

/// Fixed-width big-endian encoding of the stored values.
struct Enc(Vec<u8>);

impl Enc {
    fn u64(mut self, v: u64) -> Enc {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
}

/// Appends `v` as an unsigned LEB128 varint (7 bits a byte, low first).
fn varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let low = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// What a bucket decoder reads numbers from: layout 2's varints ([`Var`]) or layout 1's
/// fixed-width big-endian numbers ([`Dec`]); `None` when the bytes run short or overflow.
trait Read {
    fn u64(&mut self) -> Option<u64>;
    fn u128(&mut self) -> Option<u128>;
    fn done(&self) -> Option<()>;
}

/// Reads what [`varint`] wrote; `None` when the bytes run short or the number overflows.
struct Var<'a>(&'a [u8]);

impl Read for Var<'_> {
    fn u128(&mut self) -> Option<u128> {
        let mut v: u128 = 0;
        for shift in (0..128).step_by(7) {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            let part = u128::from(b & 0x7f);
            if shift > 0 && part.leading_zeros() < shift {
                return None;
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn u64(&mut self) -> Option<u64> {
        u64::try_from(self.u128()?).ok()
    }
    fn done(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

/// Reads what [`Enc`] wrote; `None` when the bytes run short.
struct Dec<'a>(&'a [u8]);

impl Read for Dec<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (h, t) = self.0.split_at_checked(8)?;
        self.0 = t;
        Some(u64::from_be_bytes(h.try_into().ok()?))
    }
    fn u128(&mut self) -> Option<u128> {
        let (h, t) = self.0.split_at_checked(16)?;
        self.0 = t;
        Some(u128::from_be_bytes(h.try_into().ok()?))
    }
    fn done(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }
}

fn enc_counters(mut e: Enc, c: &Counters) -> Enc {
    for f in Field::ALL {
        e = e.u64(c.get(f));
    }
    e
}

fn dec_counters(d: &mut impl Read) -> Option<Counters> {
    let mut c = Counters::default();
    for f in Field::ALL {
        *c.get_mut(f) = d.u64()?;
    }
    Some(c)
}

fn enc_bucket(b: &Bucket) -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    out.push(COMPACT);
    for n in [b.samples, b.seconds, b.resets] {
        varint(&mut out, u128::from(n));
    }
    for f in Field::ALL {
        varint(&mut out, u128::from(b.usage.get(f)));
    }
    out
}

fn dec_bucket(v: &[u8]) -> Option<Bucket> {
    match v.split_first() {
        Some((&COMPACT, rest)) => read_bucket(&mut Var(rest)),
        // Layout 1: 12 big-endian u64.
        _ => read_bucket(&mut Dec(v)),
    }
}

/// A bucket in either layout: samples, seconds, resets, then the usage counters.
fn read_bucket(d: &mut impl Read) -> Option<Bucket> {
    let (samples, seconds, resets) = (d.u64()?, d.u64()?, d.u64()?);
    let usage = dec_counters(d)?;
    d.done()?;
    Some(Bucket {
        samples,
        usage,
        seconds,
        resets,
    })
}

fn gauges(b: &NodeBucket) -> [&Gauge; 4] {
    [&b.cpu_permille, &b.mem_used, &b.load_milli, &b.storage_free]
}

fn enc_node_bucket(b: &NodeBucket) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(COMPACT);
    for g in gauges(b) {
        for n in [
            u128::from(g.count),
            g.sum,
            u128::from(g.min),
            u128::from(g.max),
        ] {
            varint(&mut out, n);
        }
    }
    out
}

fn dec_node_bucket(v: &[u8]) -> Option<NodeBucket> {
    match v.split_first() {
        Some((&COMPACT, rest)) => read_node_bucket(&mut Var(rest)),
        // Layout 1: 4 gauges of big-endian u64, u128, u64, u64.
        _ => read_node_bucket(&mut Dec(v)),
    }
}

/// A node bucket in either layout: 4 gauges of count, sum, min, max.
fn read_node_bucket(d: &mut impl Read) -> Option<NodeBucket> {
    let mut g = || -> Option<Gauge> {
        Some(Gauge {
            count: d.u64()?,
            sum: d.u128()?,
            min: d.u64()?,
            max: d.u64()?,
        })
    };
    let b = NodeBucket {
        cpu_permille: g()?,
        mem_used: g()?,
        load_milli: g()?,
        storage_free: g()?,
    };
    d.done()?;
    Some(b)
}

/// A [`Sample`]: time, which of domain id and start time are known, both, the counters.
fn enc_sample(s: &Sample) -> Vec<u8> {
    let flags = u64::from(s.incarnation.domain_id.is_some())
        | (u64::from(s.incarnation.started.is_some()) << 1);
    let e = Enc(Vec::new())
        .u64(s.at.timestamp_micros() as u64)
        .u64(flags)
        .u64(s.incarnation.domain_id.unwrap_or(0))
        .u64(s.incarnation.started.map_or(0, |t| t.timestamp() as u64));
    enc_counters(e, &s.counters).0
}

fn dec_sample(v: &[u8]) -> Option<Sample> {
    let mut d = Dec(v);
    let at = DateTime::from_timestamp_micros(d.u64()? as i64)?;
    let flags = d.u64()?;
    let domid = d.u64()?;
    let started = d.u64()? as i64;
    let counters = dec_counters(&mut d)?;
    d.done()?;
    Some(Sample {
        at,
        incarnation: Incarnation {
            domain_id: (flags & 1 != 0).then_some(domid),
            started: if flags & 2 != 0 {
                Some(DateTime::from_timestamp(started, 0)?)
            } else {
                None
            },
        },
        counters,
    })
}

fn enc_cpu(at: DateTime<Utc>, c: &HostCpu) -> Vec<u8> {
    Enc(Vec::new())
        .u64(at.timestamp_micros() as u64)
        .u64(c.busy)
        .u64(c.total)
        .0
}

fn dec_cpu(v: &[u8]) -> Option<HostCpu> {
    let mut d = Dec(v);
    d.u64()?;
    let (busy, total) = (d.u64()?, d.u64()?);
    d.done()?;
    Some(HostCpu {
        busy,
        total,
        btime: None,
    })
}

/// Whether `dir` looks like a sled database (its `conf` and `db` files), or is empty.
fn sled_or_empty(dir: &Path) -> Result<(), String> {
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => return Err(format!("cannot list it: {e}")),
    };
    if names.is_empty() || (names.iter().any(|n| n == "conf") && names.iter().any(|n| n == "db")) {
        Ok(())
    } else {
        let mut shown: Vec<&str> = names.iter().map(String::as_str).take(3).collect();
        shown.sort_unstable();
        Err(format!("a folder of other files: {}", shown.join(", ")))
    }
}

impl Store {
    /// Opens (or creates) the store at `path`. A path that holds anything else than a monitor
    /// database, or an empty one, is refused and left as it is.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let foreign = |what: String| StoreError::Foreign {
            path: path.to_path_buf(),
            what,
        };
        if path.exists() {
            if !path.is_dir() {
                return Err(foreign("a file, not a database folder".into()));
            }
            sled_or_empty(path).map_err(foreign)?;
        }
        let db = sled::Config::new()
            .path(path)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let io = |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        };
        match db.get(MAGIC_KEY).map_err(io)? {
            Some(m) if m.as_ref() == MAGIC => {}
            Some(m) if m.as_ref() == MAGIC_V1 => {
                // Layout 1's buckets are read as they are; new ones are written compact.
                db.insert(MAGIC_KEY, MAGIC).map_err(io)?;
                db.flush().map_err(io)?;
                tracing::info!(db = %path.display(), "monitor database: layout 1 read, new buckets written compact (layout 2)");
            }
            Some(m) => {
                return Err(foreign(format!(
                    "its magic key says `{}`, this gitvps writes `{}`",
                    String::from_utf8_lossy(&m)
                        .chars()
                        .take(40)
                        .collect::<String>(),
                    String::from_utf8_lossy(MAGIC)
                )));
            }
            None => {
                let trees: Vec<_> = db
                    .tree_names()
                    .into_iter()
                    .filter(|n| n.as_ref() != b"__sled__default")
                    .collect();
                if !db.is_empty() || !trees.is_empty() {
                    return Err(foreign(
                        "a sled database without gitvps's magic key: another program's".into(),
                    ));
                }
                db.insert(MAGIC_KEY, MAGIC).map_err(io)?;
                db.flush().map_err(io)?;
            }
        }
        let open_tree = |name: &str| db.open_tree(name).map_err(io);
        Ok(Store {
            vps: open_tree("vps")?,
            node: open_tree("node")?,
            last: open_tree("last")?,
            checks: open_tree("checks")?,
            path: path.to_path_buf(),
            db,
        })
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: sled::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }

    /// Merges `b` into the stored bucket at `key` of `tree`.
    fn merge<B: Merge>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
        b: B,
        enc: fn(&B) -> Vec<u8>,
        dec: fn(&[u8]) -> Option<B>,
    ) -> Result<(), StoreError> {
        let merged = match tree.get(key).map_err(|e| self.io(e))? {
            Some(old) => dec(&old)
                .ok_or_else(|| self.corrupt(format!("a bucket of {} bytes", old.len())))?
                .merge(&b),
            None => b,
        };
        tree.insert(key, enc(&merged)).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Stores each tier's part of a one-insert `Series`.
    fn store_series<B: Merge>(
        &self,
        tree: &sled::Tree,
        id: &str,
        s: Series<B>,
        enc: fn(&B) -> Vec<u8>,
        dec: fn(&[u8]) -> Option<B>,
    ) -> Result<(), StoreError> {
        for (tier, buckets) in s.tiers {
            for (start, b) in buckets {
                self.merge(tree, &key(id, tier, start), b, enc, dec)?;
            }
        }
        Ok(())
    }

    /// Records a VPS's reading: the delta since its last reading (resets handled by
    /// `monitor::delta`) goes into every tier that keeps its time at `now`, and the reading
    /// becomes the last one.
    pub fn record_vps(
        &self,
        vps: &VpsId,
        next: Sample,
        now: DateTime<Utc>,
        limits: &Limits,
    ) -> Result<Recorded, StoreError> {
        let last_key = [b"v", vps.as_str().as_bytes()].concat();
        let prev = match self.last.get(&last_key).map_err(|e| self.io(e))? {
            Some(v) => Some(
                dec_sample(&v).ok_or_else(|| self.corrupt(format!("the last reading of {vps}")))?,
            ),
            None => None,
        };
        let out = match prev.map(|p| monitor::delta(&p, &next, limits)) {
            None => Recorded::First,
            Some(Err(_)) => Recorded::OutOfOrder,
            Some(Ok(d)) => {
                let mut s = Series::default();
                s.insert_delta(&d, now);
                self.store_series(&self.vps, vps.as_str(), s, enc_bucket, dec_bucket)?;
                if !d.implausible.is_empty() {
                    tracing::warn!(%vps, fields = ?d.implausible, "implausible counter growth not counted");
                }
                Recorded::Stored(d)
            }
        };
        self.last
            .insert(last_key, enc_sample(&next))
            .map_err(|e| self.io(e))?;
        Ok(out)
    }

    /// Records a node's figures read at `at`: its CPU share since its last reading (none on
    /// the first one, or across a reboot), memory, load and free storage.
    pub fn record_node(
        &self,
        node: &NodeId,
        at: DateTime<Utc>,
        host: &HostRaw,
        now: DateTime<Utc>,
    ) -> Result<Option<NodeReading>, StoreError> {
        let last_key = [b"n", node.as_str().as_bytes()].concat();
        let prev = match self.last.get(&last_key).map_err(|e| self.io(e))? {
            Some(v) => Some(
                dec_cpu(&v).ok_or_else(|| self.corrupt(format!("the last reading of {node}")))?,
            ),
            None => None,
        };
        self.last
            .insert(last_key, enc_cpu(at, &host.cpu))
            .map_err(|e| self.io(e))?;
        let Some(cpu) = prev.and_then(|p| cpu_permille(&p, &host.cpu)) else {
            return Ok(None);
        };
        let r = NodeReading {
            cpu_permille: cpu,
            mem_used: host.mem_used,
            load_milli: host.load_milli,
            storage_free: host.storage_free,
        };
        let mut s = Series::default();
        s.insert(at, NodeBucket::of(&r), now);
        self.store_series(
            &self.node,
            node.as_str(),
            s,
            enc_node_bucket,
            dec_node_bucket,
        )?;
        Ok(Some(r))
    }

    fn series<B>(
        &self,
        tree: &sled::Tree,
        id: &str,
        dec: fn(&[u8]) -> Option<B>,
    ) -> Result<Series<B>, StoreError> {
        self.decode(tree.scan_prefix(prefix(id)), id, dec)
    }

    /// The buckets of one tier of a series from `from` (inclusive) to `to` (exclusive): one
    /// scan of their keys, not the whole series (a graph reads a window).
    fn series_range<B>(
        &self,
        tree: &sled::Tree,
        id: &str,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        dec: fn(&[u8]) -> Option<B>,
    ) -> Result<Series<B>, StoreError> {
        if from >= to {
            return Ok(Series::default());
        }
        self.decode(tree.range(key(id, tier, from)..key(id, tier, to)), id, dec)
    }

    /// Decodes the bucket entries of `id` that `entries` yields into a series.
    fn decode<B>(
        &self,
        entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        id: &str,
        dec: fn(&[u8]) -> Option<B>,
    ) -> Result<Series<B>, StoreError> {
        let mut s = Series::default();
        let p = prefix(id);
        for kv in entries {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let rest = &k[p.len()..];
            let parsed = rest.split_first().and_then(|(t, secs)| {
                let secs = u64::from_be_bytes(secs.try_into().ok()?) ^ (1 << 63);
                Some((tier_of(*t)?, DateTime::from_timestamp(secs as i64, 0)?))
            });
            let (Some((tier, start)), Some(b)) = (parsed, dec(&v)) else {
                return Err(self.corrupt(format!("a bucket of {id}")));
            };
            s.tiers.entry(tier).or_default().insert(start, b);
        }
        Ok(s)
    }

    /// Every stored bucket of a VPS.
    pub fn vps_series(&self, vps: &VpsId) -> Result<Series<Bucket>, StoreError> {
        self.series(&self.vps, vps.as_str(), dec_bucket)
    }

    /// Every stored bucket of a node.
    pub fn node_series(&self, node: &NodeId) -> Result<Series<NodeBucket>, StoreError> {
        self.series(&self.node, node.as_str(), dec_node_bucket)
    }

    /// A VPS's buckets of `tier` from `from` (inclusive) to `to` (exclusive): what a graph
    /// reads.
    pub fn vps_range(
        &self,
        vps: &VpsId,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Series<Bucket>, StoreError> {
        self.series_range(&self.vps, vps.as_str(), tier, from, to, dec_bucket)
    }

    /// A node's buckets of `tier` from `from` (inclusive) to `to` (exclusive).
    pub fn node_range(
        &self,
        node: &NodeId,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Series<NodeBucket>, StoreError> {
        self.series_range(&self.node, node.as_str(), tier, from, to, dec_node_bucket)
    }

    /// Drops every bucket expired at `now`, for every series ever recorded, and the last
    /// reading of a series that has no bucket left; returns how many entries went.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut dropped = 0;
        let lasts: Vec<sled::IVec> = self
            .last
            .iter()
            .keys()
            .collect::<Result<_, _>>()
            .map_err(|e| self.io(e))?;
        for lk in lasts {
            let Some((kind, id)) = lk.split_first() else {
                continue;
            };
            let tree = if *kind == b'v' { &self.vps } else { &self.node };
            let id = String::from_utf8_lossy(id);
            for tier in Tier::ALL {
                let from = key(&id, tier, DateTime::<Utc>::MIN_UTC);
                let to = key(&id, tier, now - tier.retention());
                let old: Vec<sled::IVec> = tree
                    .range(from..=to)
                    .keys()
                    .collect::<Result<_, _>>()
                    .map_err(|e| self.io(e))?;
                for k in old {
                    tree.remove(k).map_err(|e| self.io(e))?;
                    dropped += 1;
                }
            }
            if tree.scan_prefix(prefix(&id)).next().is_none() {
                // Keep a VPS's last reading while it has history; after 13 months of silence
                // it is gone with its buckets.
                let at = self
                    .last
                    .get(&lk)
                    .map_err(|e| self.io(e))?
                    .and_then(|v| Dec(&v).u64())
                    .and_then(|us| DateTime::from_timestamp_micros(us as i64));
                if at.is_none_or(|t| Tier::Hourly.expired(t, now)) {
                    self.last.remove(&lk).map_err(|e| self.io(e))?;
                    dropped += 1;
                }
            }
        }
        Ok(dropped)
    }

    /// A VPS's last reading, if any (what `/metrics` shows).
    pub fn last_vps(&self, vps: &VpsId) -> Result<Option<Sample>, StoreError> {
        let k = [b"v", vps.as_str().as_bytes()].concat();
        match self.last.get(k).map_err(|e| self.io(e))? {
            None => Ok(None),
            Some(v) => dec_sample(&v)
                .map(Some)
                .ok_or_else(|| self.corrupt(format!("the last reading of {vps}"))),
        }
    }

    /// A node's newest raw bucket, if any: its last figures.
    pub fn last_node(
        &self,
        node: &NodeId,
    ) -> Result<Option<(DateTime<Utc>, NodeBucket)>, StoreError> {
        let mut p = prefix(node.as_str());
        p.push(tier_byte(Tier::Raw));
        let Some(kv) = self.node.scan_prefix(&p).next_back() else {
            return Ok(None);
        };
        let (k, v) = kv.map_err(|e| self.io(e))?;
        let at = k[p.len()..]
            .try_into()
            .ok()
            .map(|b: [u8; 8]| u64::from_be_bytes(b) ^ (1 << 63))
            .and_then(|secs| DateTime::from_timestamp(secs as i64, 0));
        match (at, dec_node_bucket(&v)) {
            (Some(at), Some(b)) => Ok(Some((at, b))),
            _ => Err(self.corrupt(format!("a bucket of {node}"))),
        }
    }

    /// Every stored service check state: by VPS, then by check key.
    pub fn check_states(
        &self,
    ) -> Result<BTreeMap<VpsId, BTreeMap<String, CheckState>>, StoreError> {
        let mut out: BTreeMap<VpsId, BTreeMap<String, CheckState>> = BTreeMap::new();
        for kv in self.checks.iter() {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let parsed = k.iter().position(|&b| b == 0).and_then(|i| {
                let vps = std::str::from_utf8(&k[..i]).ok()?.parse::<VpsId>().ok()?;
                let check = std::str::from_utf8(&k[i + 1..]).ok()?.to_owned();
                let state = serde_json::from_slice::<CheckState>(&v).ok()?;
                Some((vps, check, state))
            });
            let Some((vps, check, state)) = parsed else {
                return Err(self.corrupt("a service check state".into()));
            };
            out.entry(vps).or_default().insert(check, state);
        }
        Ok(out)
    }

    /// Stores the state of a VPS's check (`key`: [`monitor::Target::key`]).
    pub fn put_check(&self, vps: &VpsId, key: &str, state: &CheckState) -> Result<(), StoreError> {
        let mut k = prefix(vps.as_str());
        k.extend_from_slice(key.as_bytes());
        let v = serde_json::to_vec(state)
            .map_err(|e| self.corrupt(format!("a check state cannot be written: {e}")))?;
        self.checks.insert(k, v).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Forgets the state of a check no longer in the inventory.
    pub fn remove_check(&self, vps: &VpsId, key: &str) -> Result<(), StoreError> {
        let mut k = prefix(vps.as_str());
        k.extend_from_slice(key.as_bytes());
        self.checks.remove(k).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// What a VPS's history takes in the store: its buckets (every tier) and its last reading,
    /// as entries and as the bytes of their keys and values.
    pub fn footprint(&self, vps: &VpsId) -> Result<(u64, u64), StoreError> {
        let (mut entries, mut bytes) = (0u64, 0u64);
        for kv in self.vps.scan_prefix(prefix(vps.as_str())) {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            entries += 1;
            bytes += (k.len() + v.len()) as u64;
        }
        let lk = [b"v", vps.as_str().as_bytes()].concat();
        if let Some(v) = self.last.get(&lk).map_err(|e| self.io(e))? {
            entries += 1;
            bytes += (lk.len() + v.len()) as u64;
        }
        Ok((entries, bytes))
    }

    /// The database's files' size, as sled counts it.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(|e| self.io(e))
    }

    /// Writes everything to disk: after this, a crash or restart loses nothing recorded.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.io(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 10, 0, 0)
            .single()
            .unwrap_or_default()
            + Duration::seconds(secs)
    }

    fn sample(secs: i64, domid: u64, net: u64) -> Sample {
        Sample {
            at: t(secs),
            incarnation: Incarnation {
                domain_id: Some(domid),
                started: None,
            },
            counters: Counters {
                net_rx_bytes: net,
                cpu_ms: net / 2,
                ..Counters::default()
            },
        }
    }

    fn id(s: &str) -> VpsId {
        match s.parse() {
            Ok(v) => v,
            Err(e) => panic!("{e:?}"),
        }
    }

    #[test]
    fn deltas_land_in_every_tier_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db");
        let v = id("xen02");
        {
            let Ok(s) = Store::open(&path) else { panic!() };
            let lim = Limits::default();
            assert_eq!(
                s.record_vps(&v, sample(0, 7, 1000), t(0), &lim).ok(),
                Some(Recorded::First)
            );
            let r = s.record_vps(&v, sample(60, 7, 5000), t(60), &lim);
            assert!(
                matches!(r, Ok(Recorded::Stored(ref d)) if d.usage.net_rx_bytes == 4000),
                "{r:?}"
            );
            // A re-created domain counts from zero: 300, not a negative or giant delta.
            let r = s.record_vps(&v, sample(120, 8, 300), t(120), &lim);
            assert!(
                matches!(r, Ok(Recorded::Stored(ref d)) if d.usage.net_rx_bytes == 300),
                "{r:?}"
            );
            assert!(s.flush().is_ok());
        }
        let Ok(s) = Store::open(&path) else {
            panic!("reopen")
        };
        let Ok(series) = s.vps_series(&v) else {
            panic!()
        };
        let total = |tier| -> u64 {
            series
                .range(tier, t(-3600), t(3600))
                .map(|(_, b)| b.usage.net_rx_bytes)
                .sum()
        };
        assert_eq!(
            (
                total(Tier::Raw),
                total(Tier::FiveMinutes),
                total(Tier::Hourly)
            ),
            (4300, 4300, 4300)
        );
        // The last reading survived too: the next delta is against it.
        let r = s.record_vps(&v, sample(180, 8, 400), t(180), &Limits::default());
        assert!(
            matches!(r, Ok(Recorded::Stored(ref d)) if d.usage.net_rx_bytes == 100),
            "{r:?}"
        );
        // A day later the raw tier is pruned; the others stay.
        let Ok(n) = s.prune(t(180) + Duration::days(1) + Duration::minutes(5)) else {
            panic!()
        };
        assert_eq!(n, 3);
        let Ok(series) = s.vps_series(&v) else {
            panic!()
        };
        assert!(!series.tiers.contains_key(&Tier::Raw));
        assert!(series.tiers.contains_key(&Tier::Hourly));
    }

    #[test]
    fn a_range_read_holds_one_tier_of_one_series_in_its_window() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let Ok(s) = Store::open(&dir.path().join("db")) else {
            panic!()
        };
        let lim = Limits::default();
        // `xen0` is a prefix of `xen02`'s id: its buckets must not leak into the other's range.
        for (name, net) in [("xen02", 100), ("xen0", 7)] {
            let v = id(name);
            for k in 0..=10 {
                let r = s.record_vps(&v, sample(60 * k, 1, net * k as u64), t(60 * k), &lim);
                assert!(r.is_ok(), "{r:?}");
            }
        }
        let v = id("xen02");
        let Ok(r) = s.vps_range(&v, Tier::Raw, t(120), t(420)) else {
            panic!()
        };
        let starts: Vec<i64> = r
            .range(Tier::Raw, t(-9999), t(9999))
            .map(|(at, _)| (*at - t(0)).num_seconds())
            .collect();
        assert_eq!(starts, [120, 180, 240, 300, 360]);
        assert!(
            r.range(Tier::Raw, t(0), t(9999))
                .all(|(_, b)| b.usage.net_rx_bytes == 100)
        );
        assert_eq!(r.tiers.len(), 1, "one tier only");
        let Ok(h) = s.vps_range(&v, Tier::Hourly, t(-3600), t(3600)) else {
            panic!()
        };
        let sum: u64 = h
            .range(Tier::Hourly, t(-3600), t(3600))
            .map(|(_, b)| b.usage.net_rx_bytes)
            .sum();
        assert_eq!(sum, 1000);
        // An empty or reversed window reads nothing.
        assert!(
            s.vps_range(&v, Tier::Raw, t(60), t(60))
                .is_ok_and(|r| r.tiers.is_empty())
        );
        assert!(
            s.vps_range(&v, Tier::Raw, t(600), t(60))
                .is_ok_and(|r| r.tiers.is_empty())
        );
    }

    #[test]
    fn node_cpu_is_a_share_of_the_interval() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let Ok(s) = Store::open(&dir.path().join("db")) else {
            panic!()
        };
        let Ok(n) = "node1".parse::<NodeId>() else {
            panic!()
        };
        let host = |busy, total| HostRaw {
            cpu: HostCpu {
                busy,
                total,
                btime: None,
            },
            mem_used: 1 << 30,
            load_milli: 500,
            storage_free: 1 << 40,
        };
        assert_eq!(
            s.record_node(&n, t(0), &host(100, 1000), t(0)).ok(),
            Some(None)
        );
        let r = s.record_node(&n, t(60), &host(400, 2000), t(60));
        assert_eq!(r.ok().flatten().map(|r| r.cpu_permille), Some(300));
        let Ok(series) = s.node_series(&n) else {
            panic!()
        };
        assert_eq!(series.range(Tier::Hourly, t(-3600), t(3600)).count(), 1);
    }

    #[test]
    fn foreign_files_and_databases_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // A file.
        let file = dir.path().join("file");
        std::fs::write(&file, "precious").unwrap_or_else(|e| panic!("{e}"));
        let e = Store::open(&file);
        assert!(matches!(e, Err(StoreError::Foreign { .. })), "{e:?}");
        assert_eq!(
            std::fs::read_to_string(&file).ok().as_deref(),
            Some("precious")
        );
        // A folder of something else.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(other.join("notes.txt"), "x").unwrap_or_else(|e| panic!("{e}"));
        let e = Store::open(&other);
        let msg = e
            .as_ref()
            .map(|_| String::new())
            .unwrap_or_else(|e| e.to_string());
        assert!(msg.contains("other") && msg.contains("notes.txt"), "{msg}");
        assert_eq!(std::fs::read_dir(&other).map(Iterator::count).ok(), Some(1));
        // Another program's sled database.
        let foreign = dir.path().join("foreign");
        {
            let db = sled::open(&foreign).unwrap_or_else(|e| panic!("{e}"));
            db.insert(b"theirs", b"data")
                .unwrap_or_else(|e| panic!("{e}"));
            db.flush().unwrap_or_else(|e| panic!("{e}"));
        }
        let e = Store::open(&foreign);
        assert!(matches!(e, Err(StoreError::Foreign { .. })), "{e:?}");
        let db = sled::open(&foreign).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            db.get(b"theirs").ok().flatten().as_deref(),
            Some(&b"data"[..])
        );
        assert_eq!(db.get(MAGIC_KEY).ok().flatten(), None);
    }

    #[test]
    fn a_second_collector_is_refused_while_the_first_holds_the_database() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db");
        let Ok(_first) = Store::open(&path) else {
            panic!()
        };
        let e = Store::open(&path);
        assert!(matches!(e, Err(StoreError::Open { .. })), "{e:?}");
    }

    #[test]
    fn check_states_survive_a_reopen_and_go_when_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let vps = id("xen10");
        let mut st = CheckState::new("ssh 192.0.2.10:22".into(), t(0));
        st.failures = 2;
        {
            let store = Store::open(&path).unwrap();
            store.put_check(&vps, "ssh-22-192-0-2-10", &st).unwrap();
            store.put_check(&vps, "ping-192-0-2-10", &st).unwrap();
            store.remove_check(&vps, "ping-192-0-2-10").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(&path).unwrap();
        let all = store.check_states().unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[&vps].len(), 1);
        assert_eq!(all[&vps]["ssh-22-192-0-2-10"], st);
    }

    #[test]
    fn values_round_trip() {
        let s = Sample {
            at: t(5) + Duration::microseconds(7),
            incarnation: Incarnation {
                domain_id: Some(3),
                started: Some(t(-10)),
            },
            counters: Counters {
                disk_write_ops: 9,
                ..Counters::default()
            },
        };
        assert_eq!(dec_sample(&enc_sample(&s)), Some(s));
        let b = NodeBucket::of(&NodeReading {
            cpu_permille: 1,
            mem_used: 2,
            load_milli: 3,
            storage_free: 4,
        });
        assert_eq!(dec_node_bucket(&enc_node_bucket(&b)), Some(b));
        assert_eq!(dec_bucket(&[1, 2, 3]), None);
        // Keys sort by time, before the epoch too.
        assert!(key("a", Tier::Raw, t(-1)) < key("a", Tier::Raw, t(0)));
        let early = DateTime::from_timestamp(-10, 0).unwrap_or_default();
        assert!(key("a", Tier::Raw, early) < key("a", Tier::Raw, t(0)));
    }

    /// A layout-1 bucket (fixed width), as an older gitvps wrote it.
    fn enc_bucket_v1(b: &Bucket) -> Vec<u8> {
        enc_counters(
            Enc(Vec::new()).u64(b.samples).u64(b.seconds).u64(b.resets),
            &b.usage,
        )
        .0
    }

    #[test]
    fn compact_buckets_round_trip_and_are_small() {
        let b = Bucket {
            samples: 60,
            usage: Counters {
                cpu_ms: 7_200_000,
                net_rx_bytes: u64::MAX,
                net_tx_bytes: 1 << 35,
                disk_write_ops: 127,
                disk_read_ops: 128,
                ..Counters::default()
            },
            seconds: 3600,
            resets: 0,
        };
        let v = enc_bucket(&b);
        assert_eq!(dec_bucket(&v), Some(b));
        assert!(v.len() < 40, "{} bytes", v.len());
        // Truncated, overlong or trailing bytes are refused, never misread.
        assert_eq!(dec_bucket(&v[..v.len() - 1]), None);
        assert_eq!(dec_bucket(&[v.as_slice(), &[0]].concat()), None);
        let mut huge = vec![COMPACT];
        huge.extend([0xff; 19]);
        huge.push(0x7f);
        assert_eq!(dec_bucket(&huge), None);
        // A layout-1 bucket still reads.
        assert_eq!(dec_bucket(&enc_bucket_v1(&b)), Some(b));
        let g = Gauge {
            count: 3,
            sum: u128::from(u64::MAX) * 3,
            min: 1,
            max: u64::MAX,
        };
        let n = NodeBucket {
            cpu_permille: g,
            mem_used: g,
            load_milli: g,
            storage_free: g,
        };
        assert_eq!(dec_node_bucket(&enc_node_bucket(&n)), Some(n));
    }

    #[test]
    fn a_layout_1_database_is_read_and_written_compact_from_then_on() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db");
        let v = id("xen02");
        let old = Bucket {
            samples: 1,
            usage: Counters {
                net_rx_bytes: 4000,
                ..Counters::default()
            },
            seconds: 60,
            resets: 0,
        };
        {
            let db = sled::open(&path).unwrap_or_else(|e| panic!("{e}"));
            db.insert(MAGIC_KEY, MAGIC_V1)
                .unwrap_or_else(|e| panic!("{e}"));
            let tree = db.open_tree("vps").unwrap_or_else(|e| panic!("{e}"));
            tree.insert(key("xen02", Tier::Hourly, t(0)), enc_bucket_v1(&old))
                .unwrap_or_else(|e| panic!("{e}"));
            db.flush().unwrap_or_else(|e| panic!("{e}"));
        }
        let s = Store::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let series = s.vps_series(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(series.tiers[&Tier::Hourly][&t(0)], old);
        // A delta merged into the old bucket: the sum is right and the bucket is compact now.
        let lim = Limits::default();
        assert!(s.record_vps(&v, sample(0, 7, 1000), t(0), &lim).is_ok());
        assert!(s.record_vps(&v, sample(60, 7, 1500), t(60), &lim).is_ok());
        let series = s.vps_series(&v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(series.tiers[&Tier::Hourly][&t(0)].usage.net_rx_bytes, 4500);
        let raw = s
            .vps
            .get(key("xen02", Tier::Hourly, t(0)))
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(raw.first(), Some(&COMPACT));
        assert_eq!(s.db.get(MAGIC_KEY).ok().flatten().as_deref(), Some(MAGIC));
    }

    #[test]
    fn a_newer_layout_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db");
        {
            let db = sled::open(&path).unwrap_or_else(|e| panic!("{e}"));
            db.insert(MAGIC_KEY, &b"gitvps-monitor 3"[..])
                .unwrap_or_else(|e| panic!("{e}"));
            db.flush().unwrap_or_else(|e| panic!("{e}"));
        }
        let e = Store::open(&path).map(drop).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(m) if m.contains("gitvps-monitor 3") && m.contains("gitvps-monitor 2")),
            "{e:?}"
        );
        let db = sled::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            db.get(MAGIC_KEY).ok().flatten().as_deref(),
            Some(&b"gitvps-monitor 3"[..])
        );
    }
}
