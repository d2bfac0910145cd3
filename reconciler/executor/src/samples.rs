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
//! | default | `magic` | `gitvps-monitor 4`: what this database is, and its layout version |
//! | default | `pruned` | the latest time [`Store::prune`] ran at (Unix microseconds, big-endian) |
//! | `vps` | VPS id, `0`, tier, bucket start | a [`Bucket`] of an open span: the tag `0xC1`, then its 12 numbers as LEB128 varints |
//! | `vps` | VPS id, `0`, `0x10` + tier, span start | a pack: the tag `0xC4`, the count, then columns of fixed-width bits: the buckets' seconds since the one before, and each of their 12 numbers (`enc_pack`); or layout 3's varints behind the tag `0xC3` |
//! | `node` | node id, `0`, tier (+ `0x10`), start | a [`NodeBucket`] (4 gauges as varints), or a pack of them |
//! | `last` | `v` or `n`, id | the last [`Sample`] of a VPS, the last CPU reading of a node |
//! | `checks` | VPS id, `0`, check key | a service check's [`CheckState`] (JSON) |
//!
//! Ids never hold a zero byte; a start is its Unix second with the sign bit flipped,
//! big-endian, so keys sort by time. A database without the magic key is refused unless it is
//! empty, so a foreign database is never changed, let alone wiped.
//!
//! Packs (since layout 3) cut a busy VPS's year to some 520 keys instead of 15 000: a
//! closed span of a tier ([`Tier::pack_width`]: an hour of raw buckets, 6 hours of 5-minute
//! ones, a day of hourly ones) is written as one value by the pruning, once, then its keys are
//! removed (a crash in between leaves keys the pack holds: reads skip them, the next pruning
//! removes them). A pack is dropped whole when all its buckets have expired; until then reads
//! leave out those expired at the `pruned` time. Layout 4 writes a pack's numbers in columns of
//! bits, about a fifth smaller than layout 3's varints.
//!
//! Layouts 1 (fixed-width big-endian buckets, 96 bytes a VPS bucket, whose first byte is 0), 2
//! (a key for every bucket) and 3 (packs of varints) are read as they are: their magic key
//! becomes layout 4's, the first pruning packs their closed spans, and the next compaction
//! writes layout 3's packs in bits. A layout newer than this gitvps's is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{PoisonError, RwLock};

use chrono::{DateTime, Utc};
use model::{NodeId, VpsId};
use monitor::report::{HostRaw, cpu_permille};
use monitor::sources::HostCpu;
use monitor::{
    Bucket, CheckState, Counters, Delta, Field, Gauge, Incarnation, Limits, Merge, NodeBucket,
    NodeReading, Sample, Series, Tier,
};

mod swap;

/// What the magic key holds: the store's name and layout version.
const MAGIC: &[u8] = b"gitvps-monitor 4";
/// Layout 3's magic: its packs of varints ([`PACKED`]) are still read.
const MAGIC_V3: &[u8] = b"gitvps-monitor 3";
/// Layout 2's magic: every bucket a key of its own, still read (and packed as it closes).
const MAGIC_V2: &[u8] = b"gitvps-monitor 2";
/// Layout 1's magic: fixed-width buckets, still read.
const MAGIC_V1: &[u8] = b"gitvps-monitor 1";
/// The first byte of a compact (varint) bucket; a layout-1 bucket starts with 0.
const COMPACT: u8 = 0xC1;
/// The first byte of a layout-3 pack: a closed span's buckets in one value, as varints.
const PACKED: u8 = 0xC3;
/// The first byte of a layout-4 pack: the same in columns of fixed-width bits ([`enc_pack`]).
const PACKED_BITS: u8 = 0xC4;
/// The most buckets a pack may hold: one a second over the widest span (a day). A pack that
/// says more is corrupt, and is not allocated for.
const MAX_PACK: u64 = 86_400;
/// Added to the tier byte of a key that holds a pack.
const PACK_KEY: u8 = 0x10;
/// The magic key.
const MAGIC_KEY: &[u8] = b"magic";
/// The key a copy being written holds until it is whole (then its magic key replaces it).
const COPYING_KEY: &[u8] = b"copying";
/// The key of the latest time the store was pruned at (Unix microseconds, big-endian).
const PRUNED_KEY: &[u8] = b"pruned";
/// The key of the time the store was last compacted at (Unix microseconds, big-endian).
const COMPACTED_KEY: &[u8] = b"compacted";

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
    /// A compaction could not swap its copy in, or what a stopped one left cannot be tidied.
    #[error("{}: compacting the monitor database: {what}", .path.display())]
    Compact {
        /// The database.
        path: PathBuf,
        /// What failed.
        what: String,
        /// The cause.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The database could not be opened again after a compaction.
    #[error("{}: the monitor database was closed by a compaction that could not open it again; restart gitvps monitor", .path.display())]
    Closed {
        /// The database.
        path: PathBuf,
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

/// The sled database of the store, open, and its trees: what a compaction replaces.
struct Handles {
    path: PathBuf,
    db: sled::Db,
    vps: sled::Tree,
    node: sled::Tree,
    last: sled::Tree,
    checks: sled::Tree,
    /// The latest time pruned at, in Unix microseconds (`i64::MIN`: never): a pack's buckets
    /// expired at it are not read.
    pruned: AtomicI64,
}

impl std::fmt::Debug for Handles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Keys and buckets of a series' tier by the pack span they are in.
type Spans<B> = BTreeMap<DateTime<Utc>, Vec<(sled::IVec, DateTime<Utc>, B)>>;

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

/// The key of the pack of `tier` whose span starts at `start`.
fn pack_key(id: &str, tier: Tier, start: DateTime<Utc>) -> Vec<u8> {
    let mut k = key(id, tier, start);
    k[id.len() + 1] |= PACK_KEY;
    k
}

/// A bucket key's part after the series' prefix: the tier, whether it is a pack, the start.
fn parse_key(rest: &[u8]) -> Option<(Tier, bool, DateTime<Utc>)> {
    let (&kind, secs) = rest.split_first()?;
    let secs = u64::from_be_bytes(secs.try_into().ok()?) ^ (1 << 63);
    let tier = tier_of(kind & !PACK_KEY)?;
    Some((
        tier,
        kind & PACK_KEY != 0,
        DateTime::from_timestamp(secs as i64, 0)?,
    ))
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

impl<'a> Var<'a> {
    /// The next byte.
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// The next `n` bytes.
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (h, t) = self.0.split_at_checked(n)?;
        self.0 = t;
        Some(h)
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

/// A bucket kind the store keeps (a VPS's [`Bucket`], a node's [`NodeBucket`]) and how its
/// numbers are written: as varints, alone behind the [`COMPACT`] tag or many in a pack.
trait Stored: Merge + Sized {
    /// Appends its numbers as varints.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads its numbers, in either layout's encoding, leaving what follows.
    fn take(d: &mut impl Read) -> Option<Self>;

    /// How many numbers [`Stored::numbers`] gives: the columns of a layout-4 pack.
    const NUMBERS: usize;
    /// Appends its numbers, in a fixed order.
    fn numbers(&self, out: &mut Vec<u128>);
    /// The bucket of [`Stored::NUMBERS`] numbers in that order; `None` if one is out of range.
    fn from_numbers(n: &[u128]) -> Option<Self>;

    /// Whether, in a layout-3 pack, it was written short after `prev`: [`Stored::put_short`].
    #[cfg(test)]
    fn same_shape(&self, _prev: &Self) -> bool {
        false
    }

    /// Its numbers but those it shares with the bucket before it in a layout-3 pack.
    #[cfg(test)]
    fn put_short(&self, out: &mut Vec<u8>) {
        self.put(out);
    }

    /// Reads what `Stored::put_short` (layout 3) wrote after `prev`.
    fn take_short(_prev: &Self, d: &mut impl Read) -> Option<Self> {
        Self::take(d)
    }

    /// A bucket stored alone: the tag, then its numbers.
    fn one(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        out.push(COMPACT);
        self.put(&mut out);
        out
    }

    /// Reads a bucket stored alone, compact or layout 1's fixed width.
    fn dec_one(v: &[u8]) -> Option<Self> {
        fn whole<B: Stored>(mut d: impl Read) -> Option<B> {
            let b = B::take(&mut d)?;
            d.done()?;
            Some(b)
        }
        match v.split_first() {
            Some((&COMPACT, rest)) => whole(Var(rest)),
            // Layout 1: big-endian numbers of fixed width, whose first byte is 0.
            _ => whole(Dec(v)),
        }
    }
}

impl Stored for Bucket {
    fn put(&self, out: &mut Vec<u8>) {
        for n in [self.samples, self.seconds, self.resets] {
            varint(out, u128::from(n));
        }
        for f in Field::ALL {
            varint(out, u128::from(self.usage.get(f)));
        }
    }

    /// Samples, seconds, resets, then the usage counters.
    fn take(d: &mut impl Read) -> Option<Bucket> {
        let (samples, seconds, resets) = (d.u64()?, d.u64()?, d.u64()?);
        let usage = dec_counters(d)?;
        Some(Bucket {
            samples,
            usage,
            seconds,
            resets,
        })
    }

    /// Samples, seconds, resets, then the usage counters.
    const NUMBERS: usize = 3 + Field::ALL.len();

    fn numbers(&self, out: &mut Vec<u128>) {
        out.extend([self.samples, self.seconds, self.resets].map(u128::from));
        out.extend(Field::ALL.map(|f| u128::from(self.usage.get(f))));
    }

    fn from_numbers(n: &[u128]) -> Option<Bucket> {
        let mut d = n.iter().map(|&x| u64::try_from(x).ok());
        let mut next = || d.next().flatten();
        let (samples, seconds, resets) = (next()?, next()?, next()?);
        let mut usage = Counters::default();
        for f in Field::ALL {
            *usage.get_mut(f) = next()?;
        }
        (n.len() == Self::NUMBERS).then_some(Bucket {
            samples,
            usage,
            seconds,
            resets,
        })
    }

    /// As many samples over as many seconds as the bucket before, and no reset: the usual.
    #[cfg(test)]
    fn same_shape(&self, prev: &Bucket) -> bool {
        self.samples == prev.samples && self.seconds == prev.seconds && self.resets == 0
    }

    #[cfg(test)]
    fn put_short(&self, out: &mut Vec<u8>) {
        for f in Field::ALL {
            varint(out, u128::from(self.usage.get(f)));
        }
    }

    fn take_short(prev: &Bucket, d: &mut impl Read) -> Option<Bucket> {
        Some(Bucket {
            samples: prev.samples,
            usage: dec_counters(d)?,
            seconds: prev.seconds,
            resets: 0,
        })
    }
}

fn gauges(b: &NodeBucket) -> [&Gauge; 4] {
    [&b.cpu_permille, &b.mem_used, &b.load_milli, &b.storage_free]
}

impl Stored for NodeBucket {
    fn put(&self, out: &mut Vec<u8>) {
        for g in gauges(self) {
            for n in [
                u128::from(g.count),
                g.sum,
                u128::from(g.min),
                u128::from(g.max),
            ] {
                varint(out, n);
            }
        }
    }

    /// 4 gauges of count, sum, min, max.
    const NUMBERS: usize = 16;

    fn numbers(&self, out: &mut Vec<u128>) {
        for g in gauges(self) {
            out.extend([
                u128::from(g.count),
                g.sum,
                u128::from(g.min),
                u128::from(g.max),
            ]);
        }
    }

    fn from_numbers(n: &[u128]) -> Option<NodeBucket> {
        let small = |x: u128| u64::try_from(x).ok();
        let g = |i: usize| -> Option<Gauge> {
            let c = n.get(i * 4..i * 4 + 4)?;
            Some(Gauge {
                count: small(c[0])?,
                sum: c[1],
                min: small(c[2])?,
                max: small(c[3])?,
            })
        };
        (n.len() == Self::NUMBERS).then_some(())?;
        Some(NodeBucket {
            cpu_permille: g(0)?,
            mem_used: g(1)?,
            load_milli: g(2)?,
            storage_free: g(3)?,
        })
    }

    /// 4 gauges of count, sum, min, max.
    fn take(d: &mut impl Read) -> Option<NodeBucket> {
        let mut g = || -> Option<Gauge> {
            Some(Gauge {
                count: d.u64()?,
                sum: d.u128()?,
                min: d.u64()?,
                max: d.u64()?,
            })
        };
        Some(NodeBucket {
            cpu_permille: g()?,
            mem_used: g()?,
            load_milli: g()?,
            storage_free: g()?,
        })
    }
}

#[cfg(test)]
fn enc_bucket(b: &Bucket) -> Vec<u8> {
    b.one()
}

#[cfg(test)]
fn dec_bucket(v: &[u8]) -> Option<Bucket> {
    Bucket::dec_one(v)
}

#[cfg(test)]
fn enc_node_bucket(b: &NodeBucket) -> Vec<u8> {
    b.one()
}

#[cfg(test)]
fn dec_node_bucket(v: &[u8]) -> Option<NodeBucket> {
    NodeBucket::dec_one(v)
}

/// A pack (layout 4): the buckets of one tier of a series in one closed pack span starting
/// at `start` ([`Tier::pack_start`]), in time order, as columns: the [`PACKED_BITS`] tag and
/// their count, then the column of each bucket's seconds since the one before (the first: since
/// `start`) and a column for each of their [`Stored::NUMBERS`] numbers. A column is its least
/// value (a varint), the width in bits of the largest difference from it (a byte), then every
/// bucket's difference in that many bits, low bits first, padded with zeros to a whole byte.
///
/// A column whose numbers are all equal (an hourly pack's gaps, its buckets' samples and
/// seconds) takes no bits at all, and a counter takes the bits its range needs rather than 8
/// for every 7 (varints): about a fifth less than layout 3's packs for a busy VPS.
fn enc_pack<B: Stored>(start: DateTime<Utc>, buckets: &BTreeMap<DateTime<Utc>, B>) -> Vec<u8> {
    let n = buckets.len();
    let mut cols: Vec<Vec<u128>> = vec![Vec::with_capacity(n); 1 + B::NUMBERS];
    let mut prev_at = start.timestamp();
    let mut row = Vec::with_capacity(B::NUMBERS);
    for (at, b) in buckets {
        let secs = at.timestamp();
        // A pack only holds buckets of its span: never before its start.
        cols[0].push(u128::try_from(secs - prev_at).unwrap_or(0));
        prev_at = secs;
        row.clear();
        b.numbers(&mut row);
        for (col, v) in cols[1..].iter_mut().zip(&row) {
            col.push(*v);
        }
    }
    let mut out = Vec::with_capacity(16 + 30 * n);
    out.push(PACKED_BITS);
    varint(&mut out, n as u128);
    for col in &cols {
        let least = col.iter().copied().min().unwrap_or(0);
        let width = col
            .iter()
            .map(|v| 128 - (v - least).leading_zeros())
            .max()
            .unwrap_or(0);
        varint(&mut out, least);
        out.push(width as u8);
        let mut bits = Bits::default();
        for v in col {
            bits.put(v - least, width);
        }
        out.extend(bits.0);
    }
    out
}

/// Bits appended low first into bytes (a layout-4 pack's column).
#[derive(Default)]
struct Bits(Vec<u8>, u32);

impl Bits {
    /// Appends the low `width` bits of `v`.
    fn put(&mut self, mut v: u128, mut width: u32) {
        while width > 0 {
            if self.1 == 0 {
                self.0.push(0);
            }
            let take = (8 - self.1).min(width);
            if let Some(last) = self.0.last_mut() {
                *last |= ((v & ((1 << take) - 1)) as u8) << self.1;
            }
            v >>= take;
            width -= take;
            self.1 = (self.1 + take) % 8;
        }
    }
}

/// Reads `n` numbers of `width` bits from `bytes`, which must be exactly as long as they take
/// with zeros for padding.
fn take_bits(bytes: &[u8], n: usize, width: u32) -> Option<Vec<u128>> {
    let mut out = Vec::with_capacity(n);
    let mut pos = 0usize;
    for _ in 0..n {
        let (mut v, mut got) = (0u128, 0u32);
        while got < width {
            let byte = *bytes.get(pos / 8)?;
            let off = (pos % 8) as u32;
            let take = (8 - off).min(width - got);
            v |= ((u128::from(byte) >> off) & ((1 << take) - 1)) << got;
            got += take;
            pos += take as usize;
        }
        out.push(v);
    }
    // The padding is zeros.
    let tail = bytes.get(pos / 8).map_or(0, |b| b >> (pos % 8));
    (tail == 0).then_some(out)
}

/// Reads what [`enc_pack`] wrote, or a layout-3 pack ([`dec_pack_v3`]); `None` when it is not
/// a pack or does not decode whole.
fn dec_pack<B: Stored>(start: DateTime<Utc>, v: &[u8]) -> Option<BTreeMap<DateTime<Utc>, B>> {
    let rest = match v.split_first() {
        Some((&PACKED_BITS, rest)) => rest,
        Some((&PACKED, _)) => return dec_pack_v3(start, v),
        _ => return None,
    };
    let mut d = Var(rest);
    let n = d.u64()?;
    if n > MAX_PACK {
        return None;
    }
    let n = usize::try_from(n).ok()?;
    let mut cols = Vec::with_capacity(1 + B::NUMBERS);
    for _ in 0..=B::NUMBERS {
        let least = d.u128()?;
        let width = u32::from(d.byte()?);
        if width > 128 {
            return None;
        }
        let len = n.checked_mul(width as usize)?.div_ceil(8);
        let bits = take_bits(d.bytes(len)?, n, width)?;
        let col: Option<Vec<u128>> = bits.into_iter().map(|b| least.checked_add(b)).collect();
        cols.push(col?);
    }
    d.done()?;
    let mut secs = start.timestamp();
    let mut out = BTreeMap::new();
    let mut row = Vec::with_capacity(B::NUMBERS);
    for i in 0..n {
        let gap = i64::try_from(cols[0][i]).ok()?;
        // Buckets start at distinct seconds: only the first may be at the span's start.
        if i > 0 && gap == 0 {
            return None;
        }
        secs = secs.checked_add(gap)?;
        row.clear();
        row.extend(cols[1..].iter().map(|c| c[i]));
        out.insert(DateTime::from_timestamp(secs, 0)?, B::from_numbers(&row)?);
    }
    Some(out)
}

/// Writes a layout-3 pack ([`dec_pack_v3`]) as that layout did: for the tests, which read
/// such packs as a layout-3 store holds them.
#[cfg(test)]
fn enc_pack_v3<B: Stored>(start: DateTime<Utc>, buckets: &BTreeMap<DateTime<Utc>, B>) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 40 * buckets.len());
    out.push(PACKED);
    varint(&mut out, buckets.len() as u128);
    let mut prev_at = start.timestamp();
    let mut prev: Option<&B> = None;
    for (at, b) in buckets {
        let secs = at.timestamp();
        let gap = u128::try_from(secs - prev_at).unwrap_or(0);
        let short = prev.is_some_and(|p| b.same_shape(p));
        varint(&mut out, gap << 1 | u128::from(short));
        if short {
            b.put_short(&mut out);
        } else {
            b.put(&mut out);
        }
        prev_at = secs;
        prev = Some(b);
    }
    out
}

/// The value under key `k`, a layout-3 pack rewritten in bits ([`enc_pack`]); any other value,
/// or one that does not decode, as it is (reads report the latter as before).
fn in_bits<B: Stored>(k: &[u8], v: sled::IVec) -> sled::IVec {
    if v.first() != Some(&PACKED) {
        return v;
    }
    let start = (k.iter().position(|&b| b == 0))
        .and_then(|i| k.get(i + 1..))
        .and_then(parse_key)
        .map(|(_, _, start)| start);
    match start.and_then(|s| Some((s, dec_pack_v3::<B>(s, &v)?))) {
        Some((s, pack)) => enc_pack(s, &pack).into(),
        None => v,
    }
}

/// Reads a layout-3 pack: the [`PACKED`] tag, the buckets' count, then for each one its
/// seconds since the previous one's start (the first: since `start`) times two, plus one when
/// it was written short (as many samples and seconds as the one before and no reset: then only
/// its counters follow), and its numbers as varints.
fn dec_pack_v3<B: Stored>(start: DateTime<Utc>, v: &[u8]) -> Option<BTreeMap<DateTime<Utc>, B>> {
    let rest = match v.split_first() {
        Some((&PACKED, rest)) => rest,
        _ => return None,
    };
    let mut d = Var(rest);
    let n = d.u64()?;
    let mut secs = start.timestamp();
    let mut out = BTreeMap::new();
    let mut prev: Option<B> = None;
    for _ in 0..n {
        let head = d.u64()?;
        secs = secs.checked_add(i64::try_from(head >> 1).ok()?)?;
        let b = match (head & 1, &prev) {
            (0, _) => B::take(&mut d)?,
            (_, Some(p)) => B::take_short(p, &mut d)?,
            // The first bucket is never written short.
            (_, None) => return None,
        };
        out.insert(DateTime::from_timestamp(secs, 0)?, b);
        prev = Some(b);
    }
    d.done()?;
    Some(out)
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

impl Handles {
    /// Opens (or creates) the database at `path`. A path that holds anything else than a
    /// monitor database, or an empty one, is refused and left as it is.
    fn open(path: &Path) -> Result<Handles, StoreError> {
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
            Some(m)
                if m.as_ref() == MAGIC_V1 || m.as_ref() == MAGIC_V2 || m.as_ref() == MAGIC_V3 =>
            {
                // Older buckets and packs are read as they are (layout 1's fixed width, layout
                // 3's varints too); new ones are written compact, every closed span is packed
                // at the next pruning, and packs are written in bits from now on.
                db.insert(MAGIC_KEY, MAGIC).map_err(io)?;
                db.flush().map_err(io)?;
                tracing::info!(db = %path.display(), from = %String::from_utf8_lossy(&m), "monitor database: older layout read, closed spans packed in bits from now on (layout 4)");
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
        let pruned = match db.get(PRUNED_KEY).map_err(io)? {
            None => i64::MIN,
            Some(v) => <[u8; 8]>::try_from(v.as_ref())
                .map(i64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    what: format!("its pruning time is {} bytes long, not 8", v.len()),
                })?,
        };
        let open_tree = |name: &str| db.open_tree(name).map_err(io);
        Ok(Handles {
            pruned: AtomicI64::new(pruned),
            vps: open_tree("vps")?,
            node: open_tree("node")?,
            last: open_tree("last")?,
            checks: open_tree("checks")?,
            path: path.to_path_buf(),
            db,
        })
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

    /// The latest time the store was pruned at, if ever.
    fn watermark(&self) -> Option<DateTime<Utc>> {
        match self.pruned.load(Ordering::Relaxed) {
            i64::MIN => None,
            us => DateTime::from_timestamp_micros(us),
        }
    }

    /// Merges `b` into the stored bucket of `tier` starting at `start`: into its pack when its
    /// span was packed already (a reading late for its span, as after a clock step), else
    /// into its own key.
    fn merge<B: Stored>(
        &self,
        tree: &sled::Tree,
        id: &str,
        tier: Tier,
        start: DateTime<Utc>,
        b: B,
    ) -> Result<(), StoreError> {
        let span = tier.pack_start(start);
        // A span is packed only once closed at a pruning: no pack to look for before that.
        if self.watermark().is_some_and(|w| tier.pack_closed(span, w)) {
            let pk = pack_key(id, tier, span);
            if let Some(v) = tree.get(&pk).map_err(|e| self.io(e))? {
                let mut buckets = dec_pack::<B>(span, &v)
                    .ok_or_else(|| self.corrupt(format!("a pack of {id} of {} bytes", v.len())))?;
                buckets
                    .entry(start)
                    .and_modify(|old| *old = old.merge(&b))
                    .or_insert(b);
                tree.insert(pk, enc_pack(span, &buckets))
                    .map_err(|e| self.io(e))?;
                return Ok(());
            }
        }
        let k = key(id, tier, start);
        let merged = match tree.get(&k).map_err(|e| self.io(e))? {
            Some(old) => B::dec_one(&old)
                .ok_or_else(|| self.corrupt(format!("a bucket of {} bytes", old.len())))?
                .merge(&b),
            None => b,
        };
        tree.insert(k, merged.one()).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Stores each tier's part of a one-insert `Series`.
    fn store_series<B: Stored>(
        &self,
        tree: &sled::Tree,
        id: &str,
        s: Series<B>,
    ) -> Result<(), StoreError> {
        for (tier, buckets) in s.tiers {
            for (start, b) in buckets {
                self.merge(tree, id, tier, start, b)?;
            }
        }
        Ok(())
    }

    /// Records a VPS's reading: the delta since its last reading (resets handled by
    /// `monitor::delta`) goes into every tier that keeps its time at `now`, and the reading
    /// becomes the last one.
    fn record_vps(
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
                self.store_series(&self.vps, vps.as_str(), s)?;
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
    fn record_node(
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
        self.store_series(&self.node, node.as_str(), s)?;
        Ok(Some(r))
    }

    fn series<B: Stored>(&self, tree: &sled::Tree, id: &str) -> Result<Series<B>, StoreError> {
        self.decode(tree.scan_prefix(prefix(id)), id, None)
    }

    /// The buckets of one tier of a series from `from` (inclusive) to `to` (exclusive): one
    /// scan of their keys and one of the packs of their spans, not the whole series (a graph
    /// reads a window).
    fn series_range<B: Stored>(
        &self,
        tree: &sled::Tree,
        id: &str,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Series<B>, StoreError> {
        if from >= to {
            return Ok(Series::default());
        }
        let packs = tree.range(pack_key(id, tier, tier.pack_start(from))..pack_key(id, tier, to));
        let loose = tree.range(key(id, tier, from)..key(id, tier, to));
        self.decode(packs.chain(loose), id, Some((from, to)))
    }

    /// Decodes the bucket entries of `id` that `entries` yields into a series (only the
    /// buckets starting in `window`, if given). A pack's buckets expired at the last pruning
    /// are left out (the pruning drops a pack once all of its are), and so are keys of a
    /// packed span: a crash between writing a pack and removing them left them, and the pack
    /// holds them already.
    fn decode<B: Stored>(
        &self,
        entries: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        id: &str,
        window: Option<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Series<B>, StoreError> {
        let mut s = Series::default();
        let mut loose = Vec::new();
        let mut packed = BTreeSet::new();
        let wm = self.watermark();
        let p = prefix(id);
        for kv in entries {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let bad = || self.corrupt(format!("a bucket of {id}"));
            let (tier, pack, start) = k.get(p.len()..).and_then(parse_key).ok_or_else(bad)?;
            if !pack {
                loose.push((tier, start, B::dec_one(&v).ok_or_else(bad)?));
                continue;
            }
            packed.insert((tier, start));
            for (at, b) in dec_pack::<B>(start, &v).ok_or_else(bad)? {
                let inside = window.is_none_or(|(from, to)| from <= at && at < to);
                if inside && wm.is_none_or(|w| !tier.expired(at, w)) {
                    s.tiers.entry(tier).or_default().insert(at, b);
                }
            }
        }
        for (tier, start, b) in loose {
            if !packed.contains(&(tier, tier.pack_start(start))) {
                s.tiers.entry(tier).or_default().insert(start, b);
            }
        }
        Ok(s)
    }

    /// Every stored bucket of a VPS.
    fn vps_series(&self, vps: &VpsId) -> Result<Series<Bucket>, StoreError> {
        self.series(&self.vps, vps.as_str())
    }

    /// Every stored bucket of a node.
    fn node_series(&self, node: &NodeId) -> Result<Series<NodeBucket>, StoreError> {
        self.series(&self.node, node.as_str())
    }

    /// A VPS's buckets of `tier` from `from` (inclusive) to `to` (exclusive): what a graph
    /// reads.
    fn vps_range(
        &self,
        vps: &VpsId,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Series<Bucket>, StoreError> {
        self.series_range(&self.vps, vps.as_str(), tier, from, to)
    }

    /// A node's buckets of `tier` from `from` (inclusive) to `to` (exclusive).
    fn node_range(
        &self,
        node: &NodeId,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Series<NodeBucket>, StoreError> {
        self.series_range(&self.node, node.as_str(), tier, from, to)
    }

    /// Drops every bucket expired at `now`, for every series ever recorded, and the last
    /// reading of a series that has no bucket left; packs every span closed at `now`; returns
    /// how many entries went.
    fn prune(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        // The time first: a pack is only ever written after it (see `merge`), and its buckets
        // expired at it are not read from then on.
        if self.watermark().is_none_or(|w| w < now) {
            let us = now.timestamp_micros();
            self.db
                .insert(PRUNED_KEY, &us.to_be_bytes())
                .map_err(|e| self.io(e))?;
            self.pruned.store(us, Ordering::Relaxed);
        }
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
            let id = String::from_utf8_lossy(id);
            let tree = if *kind == b'v' {
                dropped += self.prune_series::<Bucket>(&self.vps, &id, now)?;
                &self.vps
            } else {
                dropped += self.prune_series::<NodeBucket>(&self.node, &id, now)?;
                &self.node
            };
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

    /// One series' part of [`Store::prune`]: per tier, its expired buckets go, then so do its
    /// packs whose every bucket expired, then the buckets of each span closed at `now` are
    /// written as one pack and their own keys removed (in that order: a crash in between
    /// leaves keys the pack holds already, which reads skip and the next pruning removes).
    fn prune_series<B: Stored>(
        &self,
        tree: &sled::Tree,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut dropped = 0;
        let io = |e| self.io(e);
        for tier in Tier::ALL {
            let oldest = now - tier.retention();
            // A pack starts no later than its first bucket: only those up to `oldest` may
            // have expired whole.
            let old_packs: Vec<(sled::IVec, sled::IVec)> = tree
                .range(
                    pack_key(id, tier, DateTime::<Utc>::MIN_UTC)
                        ..=pack_key(id, tier, tier.pack_start(oldest)),
                )
                .collect::<Result<_, _>>()
                .map_err(io)?;
            for (k, v) in old_packs {
                let whole = k
                    .get(id.len() + 1..)
                    .and_then(parse_key)
                    .and_then(|(_, _, start)| dec_pack::<B>(start, &v))
                    .ok_or_else(|| self.corrupt(format!("a pack of {id}")))?;
                if whole.keys().all(|at| tier.expired(*at, now)) {
                    tree.remove(k).map_err(io)?;
                    dropped += 1;
                }
            }
            // One scan of the keys of closed spans (the expired ones among them: a tier keeps
            // longer than its pack span): the expired go, the others are packed.
            let mut closed: Spans<B> = BTreeMap::new();
            for kv in tree
                .range(key(id, tier, DateTime::<Utc>::MIN_UTC)..key(id, tier, tier.pack_start(now)))
            {
                let (k, v) = kv.map_err(io)?;
                let bad = || self.corrupt(format!("a bucket of {id}"));
                let (_, _, start) = k.get(id.len() + 1..).and_then(parse_key).ok_or_else(bad)?;
                if tier.expired(start, now) {
                    tree.remove(k).map_err(io)?;
                    dropped += 1;
                    continue;
                }
                let b = B::dec_one(&v).ok_or_else(bad)?;
                closed
                    .entry(tier.pack_start(start))
                    .or_default()
                    .push((k, start, b));
            }
            for (span, buckets) in closed {
                let pk = pack_key(id, tier, span);
                if !tree.contains_key(&pk).map_err(io)? {
                    let pack: BTreeMap<DateTime<Utc>, B> =
                        buckets.iter().map(|(_, at, b)| (*at, *b)).collect();
                    tree.insert(pk, enc_pack(span, &pack)).map_err(io)?;
                }
                for (k, _, _) in buckets {
                    tree.remove(k).map_err(io)?;
                }
            }
        }
        Ok(dropped)
    }

    /// A VPS's last reading, if any (what `/metrics` shows).
    fn last_vps(&self, vps: &VpsId) -> Result<Option<Sample>, StoreError> {
        let k = [b"v", vps.as_str().as_bytes()].concat();
        match self.last.get(k).map_err(|e| self.io(e))? {
            None => Ok(None),
            Some(v) => dec_sample(&v)
                .map(Some)
                .ok_or_else(|| self.corrupt(format!("the last reading of {vps}"))),
        }
    }

    /// A node's newest raw bucket, if any: its last figures.
    fn last_node(&self, node: &NodeId) -> Result<Option<(DateTime<Utc>, NodeBucket)>, StoreError> {
        let id = node.as_str();
        let p = prefix(id);
        let bad = || self.corrupt(format!("a bucket of {node}"));
        let mut newest: Option<(DateTime<Utc>, NodeBucket)> = None;
        let mut loose = p.clone();
        loose.push(tier_byte(Tier::Raw));
        if let Some(kv) = self.node.scan_prefix(&loose).next_back() {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let (_, _, at) = k.get(p.len()..).and_then(parse_key).ok_or_else(bad)?;
            newest = Some((at, NodeBucket::dec_one(&v).ok_or_else(bad)?));
        }
        let mut packs = p.clone();
        packs.push(tier_byte(Tier::Raw) | PACK_KEY);
        if let Some(kv) = self.node.scan_prefix(&packs).next_back() {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            let (_, _, span) = k.get(p.len()..).and_then(parse_key).ok_or_else(bad)?;
            let wm = self.watermark();
            let last = dec_pack::<NodeBucket>(span, &v)
                .ok_or_else(bad)?
                .into_iter()
                .rfind(|(at, _)| wm.is_none_or(|w| !Tier::Raw.expired(*at, w)));
            if let Some(l) = last
                && newest.is_none_or(|(at, _)| at < l.0)
            {
                newest = Some(l);
            }
        }
        Ok(newest)
    }

    /// Every stored service check state: by VPS, then by check key.
    fn check_states(&self) -> Result<BTreeMap<VpsId, BTreeMap<String, CheckState>>, StoreError> {
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
    fn put_check(&self, vps: &VpsId, key: &str, state: &CheckState) -> Result<(), StoreError> {
        let mut k = prefix(vps.as_str());
        k.extend_from_slice(key.as_bytes());
        let v = serde_json::to_vec(state)
            .map_err(|e| self.corrupt(format!("a check state cannot be written: {e}")))?;
        self.checks.insert(k, v).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// Forgets the state of a check no longer in the inventory.
    fn remove_check(&self, vps: &VpsId, key: &str) -> Result<(), StoreError> {
        let mut k = prefix(vps.as_str());
        k.extend_from_slice(key.as_bytes());
        self.checks.remove(k).map_err(|e| self.io(e))?;
        Ok(())
    }

    /// What a VPS's history takes in the store: its buckets (every tier) and its last reading,
    /// as entries and as the bytes of their keys and values.
    fn footprint(&self, vps: &VpsId) -> Result<(u64, u64), StoreError> {
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
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(|e| self.io(e))
    }

    /// The bytes of every key and value in the database: what a copy of it must hold.
    fn live_bytes(&self) -> Result<u64, StoreError> {
        let mut bytes = 0u64;
        for tree in [&*self.db, &self.vps, &self.node, &self.last, &self.checks] {
            for kv in tree.iter() {
                let (k, v) = kv.map_err(|e| self.io(e))?;
                bytes += (k.len() + v.len()) as u64;
            }
        }
        Ok(bytes)
    }

    /// When the store was last compacted, if ever.
    fn compacted_at(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self
            .db
            .get(COMPACTED_KEY)
            .map_err(|e| self.io(e))?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .and_then(|b| DateTime::from_timestamp_micros(i64::from_be_bytes(b))))
    }

    /// Copies every entry into a fresh sled database at `dest`, one insert at a time (sled
    /// batches inflate its log), with `at` as its compaction time, flushed and closed; its
    /// magic key is written last, so a copy cut short has none and is refused as foreign.
    fn copy_into(&self, dest: &Path, at: DateTime<Utc>) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            path: dest.to_path_buf(),
            source,
        };
        let db = sled::Config::new()
            .path(dest)
            .create_new(true)
            // Written to disk by the two flushes below only: sled's timed flushes would log
            // pages the copy rewrites again a moment later (a fresh copy then took 13.5 to 15
            // MiB of files for 4.1 MiB of keys and values, 11 MiB without them).
            .flush_every_ms(None)
            .open()
            .map_err(io)?;
        db.insert(COPYING_KEY, MAGIC).map_err(io)?;
        for kv in self.db.iter() {
            let (k, v) = kv.map_err(|e| self.io(e))?;
            if k.as_ref() != MAGIC_KEY {
                db.insert(k, v).map_err(io)?;
            }
        }
        db.insert(COMPACTED_KEY, &at.timestamp_micros().to_be_bytes())
            .map_err(io)?;
        for (name, tree) in [
            ("vps", &self.vps),
            ("node", &self.node),
            ("last", &self.last),
            ("checks", &self.checks),
        ] {
            let to = db.open_tree(name).map_err(io)?;
            for kv in tree.iter() {
                let (k, v) = kv.map_err(|e| self.io(e))?;
                // Layout 3's packs are written in bits in the copy.
                let v = match name {
                    "vps" => in_bits::<Bucket>(&k, v),
                    "node" => in_bits::<NodeBucket>(&k, v),
                    _ => v,
                };
                to.insert(k, v).map_err(io)?;
            }
        }
        db.flush().map_err(io)?;
        db.insert(MAGIC_KEY, MAGIC).map_err(io)?;
        db.remove(COPYING_KEY).map_err(io)?;
        db.flush().map_err(io)?;
        close(db, dest);
        Ok(())
    }

    /// Closes the database and returns once sled has let go of its lock.
    fn close(self) {
        let lock = self.path.join("db");
        drop(self);
        wait_released(&lock);
    }

    /// Writes everything to disk: after this, a crash or restart loses nothing recorded.
    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map_err(|e| self.io(e))?;
        Ok(())
    }
}

/// The sample store: shared (behind an `Arc`) by the collector, which writes, and the
/// monitor's listener, which reads; [`Store::compact`] swaps a fresh copy of its database in
/// under both.
pub struct Store {
    path: PathBuf,
    /// Held shared by every write, exclusive by a compaction while it copies: the copy misses
    /// nothing, and reads go on meanwhile.
    writes: RwLock<()>,
    /// The open database: held shared by every read and write, exclusive by a compaction
    /// only while it closes the old database, renames and opens the copy. `None` only after a
    /// compaction that could not open it again.
    open: RwLock<Option<Handles>>,
    /// The UTC day (days since 1970-01-01) [`Store::compact_if_due`] last weighed the files
    /// on (`i64::MIN`: never): once a day, not at every collection, it reads every entry.
    weighed: AtomicI64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    /// Closes the database and returns once sled has let go of its lock, so that this process
    /// can open it again at once: sled's background threads release it a moment after the
    /// last handle is dropped, and an open in that moment is refused as "held".
    fn drop(&mut self) {
        let open = self
            .open
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(open) = open {
            open.close();
        }
    }
}

/// Closes the sled database in the folder `dir` and returns once sled has let go of its lock.
fn close(db: sled::Db, dir: &Path) {
    drop(db);
    wait_released(&dir.join("db"));
}

/// Waits (up to 5 s) until no open file holds the lock sled takes on its `db` file: takes the
/// same lock, then lets go of it at once. A file that cannot be opened holds no lock.
fn wait_released(db: &Path) {
    let Ok(file) = std::fs::File::open(db) else {
        return;
    };
    for _ in 0..250 {
        match file.try_lock() {
            Ok(()) => {
                // Closing the file lets go of the lock too; unlocking first says so.
                let _ = file.unlock();
                return;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::debug!(path = %db.display(), "cannot lock to see it released: {e}");
                return;
            }
        }
    }
    tracing::warn!(path = %db.display(), "sled still holds the database 5 s after it was closed");
}

/// What a compaction did: sled's files before and after, as sled counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The store's files before, in bytes.
    pub before: u64,
    /// The copy's files, in bytes.
    pub after: u64,
}

/// What sled's files may hold beyond twice the keys and values before a compaction is due: a
/// fresh copy takes about twice its data, and a small store is not worth copying daily.
pub const COMPACT_SLACK: u64 = 1 << 20;

/// Whether the store is due a compaction at `now`: none yet on `now`'s UTC day, and sled's
/// `files` more than twice the `live` keys and values plus [`COMPACT_SLACK`].
pub fn compaction_due(
    files: u64,
    live: u64,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    last.is_none_or(|l| l.date_naive() < now.date_naive())
        && files > live.saturating_mul(2).saturating_add(COMPACT_SLACK)
}

/// Whether the database at `path` (a compaction's copy) was written to its end: its magic key
/// is there and its `copying` key gone. Opening it may fail (corrupt): then it is not.
fn whole_copy(path: &Path) -> bool {
    let Ok(db) = sled::Config::new().path(path).open() else {
        return false;
    };
    let whole = matches!(db.get(MAGIC_KEY), Ok(Some(m)) if m.as_ref() == MAGIC)
        && matches!(db.get(COPYING_KEY), Ok(None));
    close(db, path);
    whole
}

impl Store {
    /// Opens (or creates) the store at `path`, after finishing (or undoing) a compaction a
    /// stop interrupted. A path that holds anything else than a monitor database, or an empty
    /// one, is refused and left as it is.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        swap::recover(path, whole_copy)?;
        let open = Handles::open(path)?;
        Ok(Store {
            path: path.to_path_buf(),
            writes: RwLock::new(()),
            open: RwLock::new(Some(open)),
            weighed: AtomicI64::new(i64::MIN),
        })
    }

    /// Runs `f` on the open database.
    fn read<T>(&self, f: impl FnOnce(&Handles) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let g = self.open.read().unwrap_or_else(PoisonError::into_inner);
        match g.as_ref() {
            Some(o) => f(o),
            None => Err(StoreError::Closed {
                path: self.path.clone(),
            }),
        }
    }

    /// Runs `f`, which writes, on the open database (not while a compaction copies it).
    fn write<T>(&self, f: impl FnOnce(&Handles) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let _w = self.writes.read().unwrap_or_else(PoisonError::into_inner);
        self.read(f)
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.path
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
        self.write(|o| o.record_vps(vps, next, now, limits))
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
        self.write(|o| o.record_node(node, at, host, now))
    }

    /// Every stored bucket of a VPS.
    pub fn vps_series(&self, vps: &VpsId) -> Result<Series<Bucket>, StoreError> {
        self.read(|o| o.vps_series(vps))
    }

    /// Every stored bucket of a node.
    pub fn node_series(&self, node: &NodeId) -> Result<Series<NodeBucket>, StoreError> {
        self.read(|o| o.node_series(node))
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
        self.read(|o| o.vps_range(vps, tier, from, to))
    }

    /// A node's buckets of `tier` from `from` (inclusive) to `to` (exclusive).
    pub fn node_range(
        &self,
        node: &NodeId,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Series<NodeBucket>, StoreError> {
        self.read(|o| o.node_range(node, tier, from, to))
    }

    /// Drops every bucket expired at `now`, for every series ever recorded, and the last
    /// reading of a series that has no bucket left; packs every span closed at `now`; returns
    /// how many entries went.
    pub fn prune(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        self.write(|o| o.prune(now))
    }

    /// A VPS's last reading, if any (what `/metrics` shows).
    pub fn last_vps(&self, vps: &VpsId) -> Result<Option<Sample>, StoreError> {
        self.read(|o| o.last_vps(vps))
    }

    /// A node's newest raw bucket, if any: its last figures.
    pub fn last_node(
        &self,
        node: &NodeId,
    ) -> Result<Option<(DateTime<Utc>, NodeBucket)>, StoreError> {
        self.read(|o| o.last_node(node))
    }

    /// Every stored service check state: by VPS, then by check key.
    pub fn check_states(
        &self,
    ) -> Result<BTreeMap<VpsId, BTreeMap<String, CheckState>>, StoreError> {
        self.read(Handles::check_states)
    }

    /// Stores the state of a VPS's check (`key`: [`monitor::Target::key`]).
    pub fn put_check(&self, vps: &VpsId, key: &str, state: &CheckState) -> Result<(), StoreError> {
        self.write(|o| o.put_check(vps, key, state))
    }

    /// Forgets the state of a check no longer in the inventory.
    pub fn remove_check(&self, vps: &VpsId, key: &str) -> Result<(), StoreError> {
        self.write(|o| o.remove_check(vps, key))
    }

    /// What a VPS's history takes in the store: its buckets (every tier) and its last reading,
    /// as entries and as the bytes of their keys and values.
    pub fn footprint(&self, vps: &VpsId) -> Result<(u64, u64), StoreError> {
        self.read(|o| o.footprint(vps))
    }

    /// The database's files' size, as sled counts them.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.read(Handles::size_on_disk)
    }

    /// The bytes of every key and value in the store.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        self.read(Handles::live_bytes)
    }

    /// Writes everything to disk: after this, a crash or restart loses nothing recorded.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.write(Handles::flush)
    }

    /// Compacts the store when [`compaction_due`] at `now` (what the collector runs after
    /// each pruning): `None` when it was not due.
    /// Weighs the files against the data at the first call of each UTC day only (a
    /// compaction due later that day waits for the next).
    pub fn compact_if_due(&self, now: DateTime<Utc>) -> Result<Option<Compacted>, StoreError> {
        let day = now.timestamp().div_euclid(86_400);
        if self.weighed.swap(day, Ordering::Relaxed) == day {
            return Ok(None);
        }
        let (files, live, last) =
            self.read(|o| Ok((o.size_on_disk()?, o.live_bytes()?, o.compacted_at()?)))?;
        if !compaction_due(files, live, last, now) {
            return Ok(None);
        }
        let done = self.compact(now)?;
        tracing::info!(
            db = %self.path.display(),
            before = done.before,
            after = done.after,
            live,
            "monitor database compacted"
        );
        Ok(Some(done))
    }

    /// Compacts the store now: copies every entry into a fresh database beside it, flushed,
    /// and swaps it in (see the `swap` module: a stop at any point loses neither). Writes
    /// wait while it copies; reads go on, and wait only for the swap itself.
    pub fn compact(&self, now: DateTime<Utc>) -> Result<Compacted, StoreError> {
        self.compact_until(now, None, None)
    }

    /// [`Store::compact`], stopped after `stop` as a crash would (tests); the store is then
    /// left as the crash would leave it, to be dropped and opened again. `fail` makes that
    /// step of the swap fail instead (tests).
    fn compact_until(
        &self,
        now: DateTime<Utc>,
        stop: Option<swap::Step>,
        fail: Option<swap::Step>,
    ) -> Result<Compacted, StoreError> {
        let paths = swap::Paths::of(&self.path).ok_or_else(|| StoreError::Compact {
            path: self.path.clone(),
            what: "the path has no folder name to name a copy after".into(),
            source: None,
        })?;
        let _w = self.writes.write().unwrap_or_else(PoisonError::into_inner);
        paths.ready()?;
        let before = self.read(|o| {
            o.flush()?;
            o.size_on_disk()
        })?;
        if let Err(e) = self.read(|o| o.copy_into(&paths.copy, now)) {
            if let Err(tidy) = paths.drop_copy() {
                tracing::warn!("{tidy}");
            }
            return Err(e);
        }
        if stop == Some(swap::Step::Copied) {
            return Ok(Compacted { before, after: 0 });
        }
        paths.mark()?;
        if stop == Some(swap::Step::Marked) {
            return Ok(Compacted { before, after: 0 });
        }
        let mut g = self.open.write().unwrap_or_else(PoisonError::into_inner);
        // Closes the old database before its folder is renamed.
        if let Some(old) = g.take() {
            old.close();
        }
        let swapped = paths.finish(stop, fail);
        if stop.is_some() {
            return swapped.map(|()| Compacted { before, after: 0 });
        }
        if let Err(e) = swapped {
            return Err(self.after_failed_swap(&paths, &mut g, e));
        }
        let open = Handles::open(&self.path)?;
        let after = open.size_on_disk()?;
        *g = Some(open);
        Ok(Compacted { before, after })
    }

    /// After a swap that failed (`e`), with the database closed: opens `DIR` again only when it
    /// is the store and nothing rolls it back at the next open; returns the error to report.
    ///
    /// - `DIR` missing (the copy's rename failed): nothing is opened (opening would create an
    ///   empty store there); `DIR.old`, the copy and the marker stay for [`Store::open`]'s
    ///   recovery, and the store answers [`StoreError::Closed`] until it is opened again.
    /// - `DIR` and the copy both there (`DIR`'s rename failed): `DIR` is still the store; the
    ///   marker is taken back first, or recovery would later roll the copy over what is
    ///   written from now on, then the copy removed. If the marker cannot go, nothing is
    ///   opened.
    /// - the copy gone (it is `DIR`; removing `DIR.old` or the marker failed): `DIR` is opened;
    ///   recovery removes what is left at the next open.
    fn after_failed_swap(
        &self,
        paths: &swap::Paths,
        g: &mut Option<Handles>,
        e: StoreError,
    ) -> StoreError {
        let left = || {
            [&paths.copy, &paths.marker, &paths.old]
                .into_iter()
                .filter(|p| p.exists())
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let closed = |why: String, e: StoreError| {
            let why = format!(
                "{why}; the store stays closed until gitvps opens it again (restart gitvps monitor), which finishes or undoes the swap from what is left: {}",
                left()
            );
            tracing::error!(db = %self.path.display(), "monitor database: {why}");
            match e {
                StoreError::Compact { what, source, .. } => StoreError::Compact {
                    path: self.path.clone(),
                    what: format!("{what}; {why}"),
                    source,
                },
                other => other,
            }
        };
        if !self.path.exists() {
            return closed(format!("{} is missing", self.path.display()), e);
        }
        if paths.copy.exists() {
            if let Err(m) = paths.unmark() {
                return closed(format!("{m}, so the copy may still be swapped in"), e);
            }
            if let Err(d) = paths.drop_copy() {
                tracing::warn!("{d}");
            }
        }
        match Handles::open(&self.path) {
            Ok(open) => {
                *g = Some(open);
                e
            }
            Err(o) => {
                tracing::error!(db = %self.path.display(), "{o}");
                e
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    /// The open database of a store, for tests that reach into its trees.
    struct Raw<'a>(std::sync::RwLockReadGuard<'a, Option<Handles>>);

    impl std::ops::Deref for Raw<'_> {
        type Target = Handles;
        fn deref(&self) -> &Handles {
            self.0.as_ref().unwrap()
        }
    }

    impl Store {
        fn raw(&self) -> Raw<'_> {
            Raw(self.open.read().unwrap())
        }
    }

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
            close(db, &foreign);
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
        // A pack: buckets like the one before are written short, a reset or another shape whole.
        let reset = Bucket { resets: 1, ..b };
        let other = Bucket { samples: 59, ..b };
        let pack: BTreeMap<DateTime<Utc>, Bucket> =
            [(0, b), (60, b), (120, reset), (180, other), (240, other)]
                .into_iter()
                .map(|(secs, b)| (t(secs), b))
                .collect();
        // Layout 3's packs (varints) still read.
        let v = enc_pack_v3(t(0), &pack);
        assert_eq!(dec_pack(t(0), &v), Some(pack.clone()));
        let whole = 1
            + 1
            + pack
                .values()
                .map(|b| 1 + enc_bucket(b).len() - 1)
                .sum::<usize>();
        assert!(
            v.len() + 2 * 3 <= whole,
            "{} bytes, {whole} written whole",
            v.len()
        );
        assert_eq!(dec_pack::<Bucket>(t(0), &v[..v.len() - 1]), None);
        // The first bucket written short cannot be read.
        let mut first_short = v.clone();
        first_short[2] |= 1;
        assert_eq!(dec_pack::<Bucket>(t(0), &first_short), None);
        // Layout 4's (bits) take less, and read back the same.
        let bits = enc_pack(t(0), &pack);
        assert_eq!(bits[0], PACKED_BITS);
        assert_eq!(dec_pack(t(0), &bits), Some(pack.clone()));
        assert!(
            bits.len() < v.len(),
            "{} bytes, {} as varints",
            bits.len(),
            v.len()
        );
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

    /// A busy VPS's hourly pack of a day, as the store writes it.
    fn busy_day() -> BTreeMap<DateTime<Utc>, Bucket> {
        (0..24)
            .map(|h| {
                let x = 1_000_003 * (h + 7) % 977;
                let usage = Counters {
                    cpu_ms: 1_800_000 + x * 131,
                    net_rx_bytes: 4_500_000_000 + x * 1_000_117,
                    net_tx_bytes: 4_400_000_000 + x * 900_011,
                    net_rx_packets: 3_000_000 + x * 1_013,
                    net_tx_packets: 2_900_000 + x * 1_001,
                    disk_read_bytes: 1_000_000_000 + x * 3_000_017,
                    disk_write_bytes: 7_200_000_000 + x * 5_000_011,
                    disk_read_ops: 20_000 + x * 7,
                    disk_write_ops: 180_000 + x * 11,
                };
                let b = Bucket {
                    samples: 60,
                    usage,
                    seconds: 3600,
                    resets: u64::from(h == 5),
                };
                (t(3600 * h as i64), b)
            })
            .collect()
    }

    #[test]
    fn a_pack_in_bits_reads_back_whole_and_refuses_what_is_not_one() {
        let day = busy_day();
        let v = enc_pack(t(0), &day);
        assert_eq!(dec_pack(t(0), &v), Some(day.clone()));
        // A fifth or so less than layout 3's varints.
        let v3 = enc_pack_v3(t(0), &day);
        assert!(
            v.len() * 100 <= v3.len() * 85,
            "{} bytes, {} as varints",
            v.len(),
            v3.len()
        );
        // Truncated, trailing bytes, a padding bit set, a count past any span: refused.
        for cut in 1..v.len() {
            assert_eq!(dec_pack::<Bucket>(t(0), &v[..cut]), None, "cut at {cut}");
        }
        assert_eq!(
            dec_pack::<Bucket>(t(0), &[v.as_slice(), &[0]].concat()),
            None
        );
        // One bucket whose gap column is 1 bit wide: its 7 padding bits must be zeros.
        let one_bit = |bits: u8| {
            let mut p = vec![PACKED_BITS, 1, 0, 1, bits];
            p.extend([0, 0].repeat(Bucket::NUMBERS));
            dec_pack::<Bucket>(t(0), &p)
        };
        assert_eq!(one_bit(0b0000_0001).map(|p| p.len()), Some(1));
        assert_eq!(one_bit(0b0000_0011), None);
        assert_eq!(one_bit(0b1000_0000), None);
        let mut huge = vec![PACKED_BITS];
        varint(&mut huge, u128::from(MAX_PACK) + 1);
        huge.extend([0, 0].repeat(1 + Bucket::NUMBERS));
        assert_eq!(dec_pack::<Bucket>(t(0), &huge), None);
        // Every bucket alike: each column is its least value and a zero width, no bits.
        let same: BTreeMap<_, _> = (0..24).map(|h| (t(3600 * h), day[&t(0)])).collect();
        let v = enc_pack(t(0), &same);
        assert_eq!(dec_pack(t(0), &v), Some(same));
        assert!(v.len() < 100, "{} bytes", v.len());
        // Two buckets at the same second cannot be read: a gap of zero after the first.
        let mut twice = vec![PACKED_BITS, 2, 0, 0];
        twice.extend([0, 0].repeat(Bucket::NUMBERS));
        assert_eq!(dec_pack::<Bucket>(t(0), &twice), None);
        // The extremes: numbers of every width up to u64 (u128 sums of a node's gauges).
        let wide = Bucket {
            samples: u64::MAX,
            usage: Counters {
                net_rx_bytes: u64::MAX,
                ..Counters::default()
            },
            seconds: 0,
            resets: 1,
        };
        let mixed: BTreeMap<_, _> = [
            (0, wide),
            (
                60,
                Bucket {
                    samples: 0,
                    usage: Counters::default(),
                    seconds: 0,
                    resets: 0,
                },
            ),
            (61, wide),
        ]
        .into_iter()
        .map(|(s, b)| (t(s), b))
        .collect();
        assert_eq!(dec_pack(t(0), &enc_pack(t(0), &mixed)), Some(mixed));
        let g = |sum: u128, max: u64| Gauge {
            count: 3,
            sum,
            min: 0,
            max,
        };
        let node = |sum, max| NodeBucket {
            cpu_permille: g(sum, max),
            mem_used: g(sum / 2, max),
            load_milli: g(1, 1),
            storage_free: g(sum, 7),
        };
        let nodes: BTreeMap<_, _> = [(0, node(u128::MAX, u64::MAX)), (300, node(0, 0))]
            .into_iter()
            .map(|(s, b)| (t(s), b))
            .collect();
        assert_eq!(dec_pack(t(0), &enc_pack(t(0), &nodes)), Some(nodes));
    }

    proptest::proptest! {
        #[test]
        fn packs_in_bits_read_back_what_was_written(
            rows in proptest::collection::btree_map(
                0i64..86_400,
                (0u64..4, proptest::num::u64::ANY, 0u64..100_000, proptest::num::u64::ANY),
                0..80,
            )
        ) {
            let pack: BTreeMap<DateTime<Utc>, Bucket> = rows
                .into_iter()
                .map(|(s, (samples, big, secs, other))| {
                    let usage = Counters {
                        net_rx_bytes: big,
                        disk_write_ops: other % 1000,
                        cpu_ms: other,
                        ..Counters::default()
                    };
                    (t(s), Bucket { samples, usage, seconds: secs, resets: samples % 2 })
                })
                .collect();
            proptest::prop_assert_eq!(dec_pack(t(0), &enc_pack(t(0), &pack)), Some(pack));
        }
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
            drop(tree);
            close(db, &path);
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
            .raw()
            .vps
            .get(key("xen02", Tier::Hourly, t(0)))
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(raw.first(), Some(&COMPACT));
        assert_eq!(
            s.raw().db.get(MAGIC_KEY).ok().flatten().as_deref(),
            Some(MAGIC)
        );
    }

    #[test]
    fn a_layout_3_database_reads_as_it_did_and_packs_in_bits_from_then_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let v = id("xen02");
        let s = Store::open(&path).unwrap();
        // Three days of readings every 10 minutes, pruned every hour: packs of every tier.
        let (mut at, mut c) = (t(0), Counters::default());
        for i in 0..(3 * 24 * 6) {
            at += Duration::minutes(10);
            c.net_rx_bytes += 1_000_000 + i * 17;
            c.cpu_ms += 600_000 - i;
            let sample = Sample {
                at,
                incarnation: Incarnation {
                    domain_id: Some(1),
                    started: None,
                },
                counters: c,
            };
            s.record_vps(&v, sample, at, &Limits::default()).unwrap();
            if i % 6 == 0 {
                s.prune(at).unwrap();
            }
        }
        let now = at + Duration::seconds(1);
        let before = answers(&s, &v, now);
        // As layout 3 left them: every pack in varints, its magic.
        let all: Vec<(sled::IVec, sled::IVec)> =
            s.raw().vps.iter().collect::<Result<_, _>>().unwrap();
        let mut rewritten = 0;
        for (k, val) in all {
            if val.first() != Some(&PACKED_BITS) {
                continue;
            }
            let (_, _, start) = parse_key(&k[v.as_str().len() + 1..]).unwrap();
            let pack = dec_pack::<Bucket>(start, &val).unwrap();
            s.raw().vps.insert(k, enc_pack_v3(start, &pack)).unwrap();
            rewritten += 1;
        }
        assert!(rewritten > 3, "{rewritten} packs");
        s.raw().db.insert(MAGIC_KEY, MAGIC_V3).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = reopen(&path);
        assert_eq!(
            s.raw().db.get(MAGIC_KEY).ok().flatten().as_deref(),
            Some(MAGIC)
        );
        assert_eq!(answers(&s, &v, now), before);
        // Its next compaction writes every pack in bits, and the answers stay.
        s.compact(now).unwrap();
        assert_eq!(answers(&s, &v, now), before);
        let mut packs = 0;
        for kv in s.raw().vps.iter() {
            let (k, val) = kv.unwrap();
            if k[v.as_str().len() + 1..]
                .first()
                .is_some_and(|t| *t >= PACK_KEY)
            {
                assert_eq!(val.first(), Some(&PACKED_BITS), "{k:?}");
                packs += 1;
            }
        }
        assert_eq!(packs, rewritten);
    }

    #[test]
    fn a_newer_layout_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("db");
        {
            let db = sled::open(&path).unwrap_or_else(|e| panic!("{e}"));
            db.insert(MAGIC_KEY, &b"gitvps-monitor 5"[..])
                .unwrap_or_else(|e| panic!("{e}"));
            db.flush().unwrap_or_else(|e| panic!("{e}"));
            close(db, &path);
        }
        let e = Store::open(&path).map(drop).map_err(|e| e.to_string());
        assert!(
            matches!(&e, Err(m) if m.contains("gitvps-monitor 5") && m.contains("gitvps-monitor 4")),
            "{e:?}"
        );
        let db = sled::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            db.get(MAGIC_KEY).ok().flatten().as_deref(),
            Some(&b"gitvps-monitor 5"[..])
        );
    }

    /// Layout 2's writer, as the previous gitvps wrote: every delta merged into each tier's
    /// bucket under a key of its own. What layout 3's answers are compared against.
    fn record_vps_v2(s: &Store, vps: &VpsId, next: Sample, now: DateTime<Utc>) {
        let lk = [b"v", vps.as_str().as_bytes()].concat();
        let prev = s
            .raw()
            .last
            .get(&lk)
            .unwrap()
            .map(|v| dec_sample(&v).unwrap());
        if let Some(Ok(d)) = prev.map(|p| monitor::delta(&p, &next, &Limits::default())) {
            let mut add = Series::default();
            add.insert_delta(&d, now);
            for (tier, buckets) in add.tiers {
                for (start, b) in buckets {
                    let k = key(vps.as_str(), tier, start);
                    let old = s
                        .raw()
                        .vps
                        .get(&k)
                        .unwrap()
                        .map(|v| dec_bucket(&v).unwrap());
                    let merged = old.map_or(b, |o| o.merge(&b));
                    s.raw().vps.insert(k, enc_bucket(&merged)).unwrap();
                }
            }
        }
        s.raw().last.insert(lk, enc_sample(&next)).unwrap();
    }

    /// Layout 2's pruning: each expired bucket's key removed, nothing packed.
    fn prune_v2(s: &Store, vps: &VpsId, now: DateTime<Utc>) {
        for tier in Tier::ALL {
            let from = key(vps.as_str(), tier, DateTime::<Utc>::MIN_UTC);
            let to = key(vps.as_str(), tier, now - tier.retention());
            for k in s.raw().vps.range(from..=to).keys() {
                s.raw().vps.remove(k.unwrap()).unwrap();
            }
        }
    }

    /// Opens the store at `path` again: at once, since dropping a [`Store`] waits for sled to
    /// let go of its lock.
    fn reopen(path: &Path) -> Store {
        Store::open(path).unwrap()
    }

    /// A layout-2 database at `path`, as the previous gitvps left it.
    fn open_v2(path: &Path) -> Store {
        let s = Store::open(path).unwrap();
        s.raw().db.insert(MAGIC_KEY, MAGIC_V2).unwrap();
        s
    }

    /// Every read a caller makes of a VPS: the whole series, each tier's windows (aligned or
    /// not, the open hour, a day, inside a pack span and across two), the last reading.
    fn answers(s: &Store, v: &VpsId, now: DateTime<Utc>) -> Vec<String> {
        let mut out = vec![
            format!("{:?}", s.vps_series(v).unwrap()),
            format!("{:?}", s.last_vps(v).unwrap()),
        ];
        for tier in Tier::ALL {
            for (from, to) in [
                (now - Duration::days(400), now + Duration::days(1)),
                (now - Duration::hours(1), now + Duration::minutes(1)),
                (now - Duration::seconds(3601), now - Duration::seconds(601)),
                (Tier::Hourly.bucket_start(now), now + Duration::hours(1)),
                (now - Duration::days(1), now),
                (now - Duration::hours(30), now - Duration::hours(7)),
                (now - Duration::days(9), now - Duration::days(2)),
            ] {
                let r = s.vps_range(v, tier, from, to).unwrap();
                out.push(format!("{tier:?} {from} {to}: {r:?}"));
            }
        }
        out
    }

    /// One reading of a generated VPS history: seconds since the previous one, growth, and
    /// whether the domain was re-created (a counter reset) or one counter went down.
    fn steps() -> impl proptest::strategy::Strategy<Value = Vec<(i64, u64, u8)>> {
        use proptest::prelude::*;
        let gap = prop_oneof![
            8 => Just(60i64),
            2 => 1i64..900,
            2 => 900i64..3 * 86_400,
            // About a day: the raw tier's packs expire a bucket at a time.
            2 => 82_800i64..90_000,
            1 => 3 * 86_400i64..40 * 86_400,
        ];
        prop::collection::vec((gap, 0u64..1 << 32, 0u8..20), 1..160)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        /// Layout 3 (closed spans packed at each pruning) answers every read as layout 2
        /// (a key per bucket) did, and as the in-memory model does, over a generated history
        /// with gaps, counter resets and pruning; a layout-2 database opened by this gitvps
        /// reads the same, and so does it after its first pruning packed it; a reopen changes
        /// nothing.
        #[test]
        fn layout_3_answers_as_layout_2_did(steps in steps(), prune_every in 1usize..4) {
            let dir = tempfile::tempdir().unwrap();
            let new = Store::open(&dir.path().join("new")).unwrap();
            let old = open_v2(&dir.path().join("old"));
            let v = id("xen02");
            let mut model: Series = Series::default();
            let mut last: Option<Sample> = None;
            let (mut at, mut domid, mut c) = (t(37), 1u64, Counters::default());
            for (i, (gap, grow, event)) in steps.into_iter().enumerate() {
                if gap > 3600 {
                    // The service prunes while this VPS is not read (its node is down).
                    let mid = at + Duration::seconds(gap / 2);
                    new.prune(mid).unwrap();
                    prune_v2(&old, &v, mid);
                    model.prune(mid);
                }
                at += Duration::seconds(gap);
                match event {
                    0 => {
                        domid += 1;
                        c = Counters::default();
                    }
                    1 => c.net_tx_bytes /= 2,
                    _ => {}
                }
                c.net_rx_bytes += grow;
                c.net_tx_bytes += grow / 3;
                c.cpu_ms += grow % 1000;
                c.disk_write_ops += grow % 17;
                let next = Sample {
                    at: at + Duration::microseconds(grow as i64 % 1_000_000),
                    incarnation: Incarnation { domain_id: Some(domid), started: None },
                    counters: c,
                };
                if let Some(Ok(d)) = last.map(|p| monitor::delta(&p, &next, &Limits::default())) {
                    // The store keeps a raw bucket's instant to the second (the model to the
                    // microsecond otherwise), and prunes and expires it by that instant.
                    let whole = DateTime::from_timestamp(d.to.timestamp(), 0).unwrap();
                    model.insert(whole, Bucket::of(&d), next.at);
                }
                last = Some(next);
                new.record_vps(&v, next, next.at, &Limits::default()).unwrap();
                record_vps_v2(&old, &v, next, next.at);
                if i % prune_every == 0 {
                    new.prune(next.at).unwrap();
                    prune_v2(&old, &v, next.at);
                    model.prune(next.at);
                }
            }
            let now = at + Duration::seconds(1);
            let before = answers(&new, &v, now);
            proptest::prop_assert_eq!(&before, &answers(&old, &v, now));
            proptest::prop_assert_eq!(new.vps_series(&v).unwrap(), model.clone());
            // A restart (flush, reopen) changes no answer.
            new.flush().unwrap();
            drop(new);
            let new = reopen(&dir.path().join("new"));
            proptest::prop_assert_eq!(answers(&new, &v, now), before.clone());
            // The layout-2 database, opened by this gitvps: the same answers, before and after
            // its first pruning packs it.
            old.flush().unwrap();
            drop(old);
            let old = reopen(&dir.path().join("old"));
            proptest::prop_assert_eq!(answers(&old, &v, now), before.clone());
            old.prune(now).unwrap();
            new.prune(now).unwrap();
            model.prune(now);
            let after = answers(&new, &v, now);
            proptest::prop_assert_eq!(answers(&old, &v, now), after);
            proptest::prop_assert_eq!(new.vps_series(&v).unwrap(), model);
        }
    }

    #[test]
    fn closed_spans_are_packed_and_a_crash_while_packing_counts_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let v = id("xen02");
        let lim = Limits::default();
        let s = Store::open(&path).unwrap();
        // Two hours and a bit of readings, a minute apart, from 10:00:30.
        for k in 0..=130 {
            s.record_vps(
                &v,
                sample(60 * k + 30, 7, 1000 * k as u64),
                t(60 * k + 30),
                &lim,
            )
            .unwrap();
        }
        let now = t(130 * 60 + 31);
        let before = answers(&s, &v, now);
        s.prune(now).unwrap();
        assert_eq!(answers(&s, &v, now), before);
        // The 10:00 and 11:00 hours of raw buckets are packs now; 12:00 is open, a key each.
        let raw_keys = |s: &Store| {
            s.raw()
                .vps
                .scan_prefix(prefix("xen02"))
                .keys()
                .map(|k| parse_key(&k.unwrap()[6..]).unwrap())
                .filter(|(tier, _, _)| *tier == Tier::Raw)
                .map(|(_, pack, at)| (pack, (at - t(0)).num_minutes()))
                .collect::<Vec<_>>()
        };
        let keys = raw_keys(&s);
        assert_eq!(keys.iter().filter(|(pack, _)| !*pack).count(), 11);
        assert!(keys.contains(&(true, 0)) && keys.contains(&(true, 60)));
        // A crash between writing a pack and removing its span's keys: the keys are back,
        // the answers do not change (nothing counted twice), the next pruning removes them.
        let (loose, _) = {
            let s2 = Store::open(&dir.path().join("v2")).unwrap();
            for k in 0..=130 {
                record_vps_v2(
                    &s2,
                    &v,
                    sample(60 * k + 30, 7, 1000 * k as u64),
                    t(60 * k + 30),
                );
            }
            let loose: Vec<(sled::IVec, sled::IVec)> = s2
                .raw()
                .vps
                .range(key("xen02", Tier::Raw, t(0))..key("xen02", Tier::Raw, t(3600)))
                .collect::<Result<_, _>>()
                .unwrap();
            (loose, s2)
        };
        // 10:00:30's reading is the first: no delta.
        assert_eq!(loose.len(), 59);
        for (k, val) in &loose {
            s.raw().vps.insert(k, val).unwrap();
        }
        assert_eq!(answers(&s, &v, now), before);
        s.prune(now).unwrap();
        assert_eq!(raw_keys(&s), keys);
        // A reading late for a packed span (the clock stepped back) is merged into its pack.
        let late = Sample {
            at: t(30 * 60 + 45),
            ..sample(0, 9, 50)
        };
        s.record_vps(&v, late, now, &lim).unwrap();
        s.record_vps(
            &v,
            Sample {
                at: t(30 * 60 + 50),
                ..sample(0, 9, 80)
            },
            now,
            &lim,
        )
        .unwrap();
        let r = s.vps_range(&v, Tier::Raw, t(30 * 60), t(31 * 60)).unwrap();
        let raw: Vec<u64> = r
            .range(Tier::Raw, t(0), now)
            .map(|(_, b)| b.usage.net_rx_bytes)
            .collect();
        assert_eq!(raw, [1000, 30]);
        assert_eq!(raw_keys(&s), keys);
        // Restarted: the same.
        let after = answers(&s, &v, now);
        s.flush().unwrap();
        drop(s);
        let s = reopen(&path);
        assert_eq!(answers(&s, &v, now), after);
    }

    #[test]
    fn a_nodes_last_figures_come_from_its_packs_too() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("db")).unwrap();
        let n: NodeId = "node1".parse().unwrap();
        let host = |busy| HostRaw {
            cpu: HostCpu {
                busy,
                total: busy * 4,
                btime: None,
            },
            mem_used: busy,
            load_milli: 500,
            storage_free: 1 << 40,
        };
        for k in 0..=3 {
            s.record_node(&n, t(60 * k), &host(1000 * (k as u64 + 1)), t(60 * k))
                .unwrap();
        }
        let (at, b) = s.last_node(&n).unwrap().unwrap();
        assert_eq!((at, b.mem_used.max), (t(180), 4000));
        // Its node went silent: two hours later, its last figures are in a pack.
        s.prune(t(2 * 3600)).unwrap();
        assert_eq!(s.last_node(&n).unwrap(), Some((at, b)));
        let series = s.node_series(&n).unwrap();
        assert_eq!(series.range(Tier::Raw, t(0), t(3600)).count(), 3);
        // A day later the raw tier has expired, packs included.
        s.prune(t(2 * 3600) + Duration::days(1)).unwrap();
        assert_eq!(s.last_node(&n).unwrap(), None);
        assert_eq!(
            s.node_series(&n)
                .unwrap()
                .range(Tier::Hourly, t(0), t(3600))
                .count(),
            1
        );
    }

    /// Two VPSes and a node with two days of readings every minute, pruned every hour as the
    /// collector does (so with packs, removed keys and sled's log grown by the churn), and a
    /// check state; returns the time of the last reading.
    fn churned(s: &Store) -> DateTime<Utc> {
        let lim = Limits::default();
        let node: NodeId = "node1".parse().unwrap();
        let mut at = t(0);
        for k in 0..2 * 1440i64 {
            at = t(60 * k + 7);
            for (i, v) in ["xen02", "xen03"].into_iter().enumerate() {
                let net = (k as u64 + 1) * (1000 + 17 * i as u64) + (k as u64 % 7) * 31;
                s.record_vps(&id(v), sample(60 * k + 7, 7, net), at, &lim)
                    .unwrap();
            }
            let host = HostRaw {
                cpu: HostCpu {
                    busy: 100 * k as u64,
                    total: 400 * k as u64 + 1,
                    btime: None,
                },
                mem_used: 1 << 30,
                load_milli: 500 + k as u64 % 100,
                storage_free: 1 << 40,
            };
            s.record_node(&node, at, &host, at).unwrap();
            if k % 60 == 59 {
                s.prune(at).unwrap();
            }
        }
        let st = CheckState::new("ssh 192.0.2.10:22".into(), t(0));
        s.put_check(&id("xen02"), "ssh", &st).unwrap();
        s.flush().unwrap();
        at
    }

    /// Everything the store answers: each VPS's reads, the node's, the check states.
    fn everything(s: &Store, now: DateTime<Utc>) -> Vec<String> {
        let node: NodeId = "node1".parse().unwrap();
        let mut out = answers(s, &id("xen02"), now);
        out.extend(answers(s, &id("xen03"), now));
        out.push(format!("{:?}", s.node_series(&node).unwrap()));
        out.push(format!("{:?}", s.last_node(&node).unwrap()));
        out.push(format!("{:?}", s.check_states().unwrap()));
        out
    }

    /// What is beside the store: the names a compaction uses, if there.
    fn leftovers(path: &Path) -> Vec<PathBuf> {
        let p = swap::Paths::of(path).unwrap();
        [p.copy, p.marker, p.old]
            .into_iter()
            .filter(|x| x.exists())
            .collect()
    }

    /// A compaction stopped after each of its steps, as a crash would, then the store opened
    /// again: recovery finishes or undoes it, every answer is as before, nothing is left
    /// beside the store, and the next reading counts from the last one (not twice, not lost).
    #[test]
    fn a_compaction_stopped_at_any_step_loses_nothing_and_counts_nothing_twice() {
        use swap::Step;
        for stop in [
            Step::Copied,
            Step::Marked,
            Step::OldMoved,
            Step::NewMoved,
            Step::OldRemoved,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let (before, now) = {
                let s = Store::open(&path).unwrap();
                let now = churned(&s);
                let before = everything(&s, now);
                s.compact_until(now, Some(stop), None).unwrap();
                assert!(
                    !leftovers(&path).is_empty(),
                    "{stop:?}: nothing beside the store"
                );
                (before, now)
            };
            let s = reopen(&path);
            assert_eq!(everything(&s, now), before, "{stop:?}");
            assert_eq!(leftovers(&path), Vec::<PathBuf>::new(), "{stop:?}");
            // Rolled forward (the copy is the store) from the marker on; the old store kept
            // before it.
            let compacted = s.raw().compacted_at().unwrap();
            assert_eq!(compacted.is_some(), stop != Step::Copied, "{stop:?}");
            let next = now + Duration::seconds(60);
            let r = s.record_vps(
                &id("xen02"),
                sample(2 * 1440 * 60 + 7, 7, 2_881_000 + 5_000),
                next,
                &Limits::default(),
            );
            assert!(
                matches!(r, Ok(Recorded::Stored(ref d)) if d.usage.net_rx_bytes == 5_000 + 1_000 - (2879 % 7) * 31),
                "{stop:?}: {r:?}"
            );
            // And it compacts again, whole this time.
            drop(s);
            let s = reopen(&path);
            let after = everything(&s, next);
            s.compact(next + Duration::days(1)).unwrap();
            assert_eq!(everything(&s, next), after, "{stop:?}");
            assert_eq!(leftovers(&path), Vec::<PathBuf>::new(), "{stop:?}");
        }
    }

    /// A swap that fails (not a crash: the process goes on) at each of its steps: the store
    /// is never opened where `DIR` is missing (which would create an empty one there), and
    /// what it writes after the failure is never rolled back by the recovery at the next open.
    #[test]
    fn a_compaction_whose_swap_fails_never_opens_an_empty_store_or_loses_later_writes() {
        use swap::Step;
        for fail in [Step::OldMoved, Step::NewMoved, Step::OldRemoved] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let p = swap::Paths::of(&path).unwrap();
            let s = Store::open(&path).unwrap();
            let now = churned(&s);
            let before = everything(&s, now);
            let e = s.compact_until(now, None, Some(fail));
            let msg = match e {
                Err(StoreError::Compact { ref what, .. }) => what.clone(),
                other => panic!("{fail:?}: {other:?}"),
            };
            let next = now + Duration::seconds(60);
            let reading = sample(2 * 1440 * 60 + 7, 7, 2_881_000 + 5_000);
            let r = s.record_vps(&id("xen02"), reading, next, &Limits::default());
            if fail == Step::NewMoved {
                // `DIR` went to `DIR.old` and the copy could not take its place: nothing is
                // opened, everything is left for the recovery, and the error says where.
                assert!(!path.exists(), "an empty store was created at {path:?}");
                assert!(matches!(r, Err(StoreError::Closed { .. })), "{r:?}");
                for left in [&p.copy, &p.marker, &p.old] {
                    assert!(left.exists(), "{left:?}");
                    assert!(msg.contains(&left.display().to_string()), "{msg}");
                }
                drop(s);
                let s = reopen(&path);
                assert_eq!(everything(&s, now), before);
                assert_eq!(leftovers(&path), Vec::<PathBuf>::new());
                continue;
            }
            // `DIR` is the store (the old one, or the copy already swapped in): opened again,
            // written to, and what was written is there after the next open.
            assert!(matches!(r, Ok(Recorded::Stored(_))), "{fail:?}: {r:?}");
            s.flush().unwrap();
            let after = everything(&s, next);
            assert_ne!(after, before, "{fail:?}");
            drop(s);
            let s = reopen(&path);
            assert_eq!(everything(&s, next), after, "{fail:?}");
            assert_eq!(leftovers(&path), Vec::<PathBuf>::new(), "{fail:?}");
            // Rolled back before the first rename, forward after it.
            let compacted = s.raw().compacted_at().unwrap();
            assert_eq!(compacted.is_some(), fail == Step::OldRemoved, "{fail:?}");
        }
    }

    /// A marker whose copy has no magic key (a disk that lost its last writes) is not swapped
    /// in: the store stays, or comes back from `DIR.old`.
    #[test]
    fn a_copy_that_is_not_whole_is_never_swapped_in() {
        for moved in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("db");
            let p = swap::Paths::of(&path).unwrap();
            let (before, now) = {
                let s = Store::open(&path).unwrap();
                let now = churned(&s);
                (everything(&s, now), now)
            };
            {
                let db = sled::open(&p.copy).unwrap();
                db.insert(COPYING_KEY, MAGIC).unwrap();
                db.flush().unwrap();
                close(db, &p.copy);
            }
            std::fs::write(&p.marker, "x").unwrap();
            if moved {
                std::fs::rename(&path, &p.old).unwrap();
            }
            let s = reopen(&path);
            assert_eq!(everything(&s, now), before, "moved: {moved}");
            assert_eq!(leftovers(&path), Vec::<PathBuf>::new(), "moved: {moved}");
        }
    }

    /// What is beside the store and not a compaction's is refused and left alone, and a
    /// foreign database is still refused after a recovery.
    #[test]
    fn foreign_folders_beside_the_store_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let p = swap::Paths::of(&path).unwrap();
        drop(Store::open(&path).unwrap());
        std::fs::create_dir(&p.copy).unwrap();
        std::fs::write(p.copy.join("notes.txt"), "mine").unwrap();
        let e = Store::open(&path).map(drop);
        assert!(
            matches!(&e, Err(StoreError::Foreign { path, .. }) if *path == p.copy),
            "{e:?}"
        );
        assert_eq!(
            std::fs::read_to_string(p.copy.join("notes.txt"))
                .ok()
                .as_deref(),
            Some("mine")
        );
        // Moved away, the store opens; a folder named like a replaced store stops compactions
        // and is not touched.
        std::fs::rename(&p.copy, dir.path().join("mine")).unwrap();
        std::fs::create_dir(&p.old).unwrap();
        std::fs::write(p.old.join("notes.txt"), "mine").unwrap();
        let s = reopen(&path);
        let e = s.compact(t(0));
        assert!(matches!(&e, Err(StoreError::Compact { .. })), "{e:?}");
        assert!(e.map(drop).unwrap_err().to_string().contains("db.old"));
        assert_eq!(
            std::fs::read_to_string(p.old.join("notes.txt"))
                .ok()
                .as_deref(),
            Some("mine")
        );
        // A crashed compaction's marker beside a foreign database: still refused, still there.
        drop(s);
        let foreign = dir.path().join("foreign");
        {
            let db = sled::open(&foreign).unwrap();
            db.insert(b"theirs", b"data").unwrap();
            db.flush().unwrap();
            close(db, &foreign);
        }
        std::fs::write(dir.path().join("foreign.compacted"), "x").unwrap();
        let e = Store::open(&foreign).map(drop);
        assert!(matches!(e, Err(StoreError::Foreign { .. })), "{e:?}");
        let db = sled::open(&foreign).unwrap();
        assert_eq!(
            db.get(b"theirs").ok().flatten().as_deref(),
            Some(&b"data"[..])
        );
    }

    /// The size of the files under `dir`, in bytes.
    fn dir_size(dir: &Path) -> u64 {
        let mut n = 0;
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            n += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
        n
    }

    /// A store with churn takes less disk after a compaction, answers the same (while a
    /// reader keeps reading through it), and again after a reopen.
    #[test]
    fn a_compaction_shrinks_the_files_and_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let s = std::sync::Arc::new(Store::open(&path).unwrap());
        let now = churned(&s);
        let before = everything(&s, now);
        let size = dir_size(&path);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (s, stop) = (std::sync::Arc::clone(&s), std::sync::Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(Ordering::Relaxed) || reads == 0 {
                    let r = s.vps_range(&id("xen02"), Tier::Hourly, now - Duration::days(3), now);
                    assert!(r.is_ok_and(|r| !r.tiers.is_empty()));
                    reads += 1;
                }
                reads
            })
        };
        let done = s.compact(now).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert!(done.after < done.before, "{done:?}");
        assert!(dir_size(&path) < size, "{} then {size}", dir_size(&path));
        assert_eq!(everything(&s, now), before);
        assert_eq!(leftovers(&path), Vec::<PathBuf>::new());
        // Not due again the same UTC day, whatever the files.
        assert_eq!(s.compact_if_due(now).unwrap(), None);
        drop(s);
        let s = reopen(&path);
        assert_eq!(everything(&s, now), before);
    }

    #[test]
    fn a_compaction_is_due_once_a_day_when_the_files_outgrow_the_data() {
        let mib = 1 << 20;
        let day = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 12, d, h, 0, 0).unwrap();
        // Never compacted, files well over twice the data: due.
        assert!(compaction_due(10 * mib, 2 * mib, None, day(6, 0)));
        // Within twice the data and the slack: not due.
        assert!(!compaction_due(5 * mib, 2 * mib, None, day(6, 0)));
        assert!(compaction_due(5 * mib + 1, 2 * mib, None, day(6, 0)));
        // Already compacted today (UTC): not again until tomorrow.
        assert!(!compaction_due(
            10 * mib,
            2 * mib,
            Some(day(6, 0)),
            day(6, 23)
        ));
        assert!(compaction_due(
            10 * mib,
            2 * mib,
            Some(day(6, 23)),
            day(7, 0)
        ));
        // A clock that stepped back waits for the day after the last compaction.
        assert!(!compaction_due(
            10 * mib,
            2 * mib,
            Some(day(7, 1)),
            day(6, 5)
        ));
    }
}
