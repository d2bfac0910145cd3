//! Downsampling: which bucket of each tier a delta or a gauge reading lands in, how a bucket
//! aggregates, and what each tier drops, so a VPS's history has a bounded size.
//!
//! Three tiers, all aligned to UTC (buckets start at whole multiples of their width since the
//! Unix epoch, so every collector cuts the same buckets):
//!
//! | tier | bucket | kept for | buckets at most |
//! |---|---|---|---|
//! | [`Tier::Raw`] | one per collection interval | 1 day | 1440 at 60 s |
//! | [`Tier::FiveMinutes`] | 5 minutes | 14 days | 4032 |
//! | [`Tier::Hourly`] | 1 hour | 397 days (13 months) | 9528 |
//!
//! A counter's delta lands in the bucket holding its interval's end ([`Delta::to`]): usage is
//! never split across buckets, so a bucket's sum is exact and the sums of a coarser tier equal
//! the sums of the finer one over the same span. Gauges (node CPU, memory, load, free storage)
//! keep their count, sum, minimum and maximum, so averages and peaks survive downsampling.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use crate::counters::{Counters, Delta};

/// A downsampling tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// Every sample's delta, for a day.
    Raw,
    /// 5-minute buckets, for 14 days: the week graph and the week before it; a month reads
    /// the hourly tier. Kept shorter than the 30 days first planned so a VPS's whole history
    /// stays under 1 MiB (`gitvps bench monitor`).
    FiveMinutes,
    /// Hourly buckets, for 13 months.
    Hourly,
}

impl Tier {
    /// Every tier, finest first.
    pub const ALL: [Tier; 3] = [Tier::Raw, Tier::FiveMinutes, Tier::Hourly];

    /// The bucket width; `None` for [`Tier::Raw`], whose buckets are the samples themselves.
    pub fn width(self) -> Option<Duration> {
        match self {
            Tier::Raw => None,
            Tier::FiveMinutes => Some(Duration::minutes(5)),
            Tier::Hourly => Some(Duration::hours(1)),
        }
    }

    /// How long a bucket is kept after its start.
    pub fn retention(self) -> Duration {
        match self {
            Tier::Raw => Duration::days(1),
            Tier::FiveMinutes => Duration::days(14),
            // 13 months of the longest kind (7 of 31 days, 6 of 30): a year ago's same month
            // stays whole.
            Tier::Hourly => Duration::days(397),
        }
    }

    /// The most buckets one series keeps in this tier, for samples `interval` apart (only
    /// [`Tier::Raw`] depends on it; an interval under a second counts as a second).
    pub fn max_buckets(self, interval: Duration) -> u64 {
        let width = self.width().unwrap_or(interval).num_seconds().max(1);
        let kept = self.retention().num_seconds();
        u64::try_from(kept / width).unwrap_or(0) + 1
    }

    /// The start of the bucket `at` lands in: `at` itself for [`Tier::Raw`].
    pub fn bucket_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let Some(width) = self.width() else {
            return at;
        };
        let w = width.num_seconds();
        let secs = at.timestamp();
        DateTime::from_timestamp(secs - secs.rem_euclid(w), 0).unwrap_or(at)
    }

    /// Whether a bucket starting at `start` is past its retention at `now` (and is dropped).
    pub fn expired(self, start: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        start + self.retention() <= now
    }

    /// The span whose buckets the store packs into one value once it has closed: an hour of
    /// raw buckets (60 at 60 s), 6 hours of 5-minute ones (72), a day of hourly ones (24).
    /// UTC-aligned like the buckets, so a bucket's span is [`Tier::pack_start`] of its start.
    pub fn pack_width(self) -> Duration {
        match self {
            Tier::Raw => Duration::hours(1),
            Tier::FiveMinutes => Duration::hours(6),
            Tier::Hourly => Duration::days(1),
        }
    }

    /// The start of the pack span `at` lands in.
    pub fn pack_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let w = self.pack_width().num_seconds();
        let secs = at.timestamp();
        DateTime::from_timestamp(secs - secs.rem_euclid(w), 0).unwrap_or(at)
    }

    /// Whether the pack span starting at `start` has closed at `now`: no reading taken after
    /// `now` lands in it.
    pub fn pack_closed(self, start: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        start + self.pack_width() <= now
    }
}

/// Aggregate of a gauge over a bucket: enough for the average, the peak and the trough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge {
    /// Readings taken.
    pub count: u64,
    /// Their sum (u128: no overflow from any number of u64 readings a tier keeps).
    pub sum: u128,
    /// The smallest reading.
    pub min: u64,
    /// The largest reading.
    pub max: u64,
}

impl Gauge {
    /// A gauge of one reading.
    pub fn one(v: u64) -> Gauge {
        Gauge {
            count: 1,
            sum: u128::from(v),
            min: v,
            max: v,
        }
    }

    /// The mean, rounded down.
    pub fn avg(&self) -> u64 {
        match self.count {
            0 => 0,
            n => u64::try_from(self.sum / u128::from(n)).unwrap_or(u64::MAX),
        }
    }
}

/// An aggregate that two buckets of the same span merge into: what every tier stores.
pub trait Merge: Copy {
    /// Both as one.
    fn merge(&self, other: &Self) -> Self;
}

/// One bucket of a VPS series: the summed deltas of its intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Deltas summed in.
    pub samples: u64,
    /// Their summed usage.
    pub usage: Counters,
    /// Seconds those deltas cover (for rates: usage / seconds).
    pub seconds: u64,
    /// Deltas that saw a counter reset.
    pub resets: u64,
}

impl Bucket {
    /// A bucket holding one delta.
    pub fn of(d: &Delta) -> Bucket {
        Bucket {
            samples: 1,
            usage: d.usage,
            seconds: u64::try_from((d.to - d.from).num_seconds()).unwrap_or(0),
            resets: u64::from(d.reset != crate::counters::Reset::None),
        }
    }
}

impl Merge for Bucket {
    fn merge(&self, o: &Bucket) -> Bucket {
        Bucket {
            samples: self.samples.saturating_add(o.samples),
            usage: self.usage.saturating_add(&o.usage),
            seconds: self.seconds.saturating_add(o.seconds),
            resets: self.resets.saturating_add(o.resets),
        }
    }
}

impl Merge for Gauge {
    fn merge(&self, o: &Gauge) -> Gauge {
        Gauge {
            count: self.count.saturating_add(o.count),
            sum: self.sum.saturating_add(o.sum),
            min: self.min.min(o.min),
            max: self.max.max(o.max),
        }
    }
}

/// One reading of a node's gauges (not counters: each reading stands alone).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeReading {
    /// CPU busy, in per mille of all its CPUs.
    pub cpu_permille: u64,
    /// Memory in use, in bytes.
    pub mem_used: u64,
    /// The 1-minute load average, in thousandths.
    pub load_milli: u64,
    /// Free space in its storage, in bytes.
    pub storage_free: u64,
}

/// A bucket of node readings: each gauge's count, sum, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeBucket {
    /// [`NodeReading::cpu_permille`].
    pub cpu_permille: Gauge,
    /// [`NodeReading::mem_used`].
    pub mem_used: Gauge,
    /// [`NodeReading::load_milli`].
    pub load_milli: Gauge,
    /// [`NodeReading::storage_free`] (its minimum is the one to watch).
    pub storage_free: Gauge,
}

impl NodeBucket {
    /// A bucket of one reading.
    pub fn of(r: &NodeReading) -> NodeBucket {
        NodeBucket {
            cpu_permille: Gauge::one(r.cpu_permille),
            mem_used: Gauge::one(r.mem_used),
            load_milli: Gauge::one(r.load_milli),
            storage_free: Gauge::one(r.storage_free),
        }
    }
}

impl Merge for NodeBucket {
    fn merge(&self, o: &NodeBucket) -> NodeBucket {
        NodeBucket {
            cpu_permille: self.cpu_permille.merge(&o.cpu_permille),
            mem_used: self.mem_used.merge(&o.mem_used),
            load_milli: self.load_milli.merge(&o.load_milli),
            storage_free: self.storage_free.merge(&o.storage_free),
        }
    }
}

/// What [`Series::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    /// Added to every tier that still keeps its time.
    Stored,
    /// Older than every tier keeps: dropped.
    TooOld,
}

/// A history in all tiers, bounded by [`Series::prune`]: the in-memory model of what the store
/// keeps (keys `(tier, bucket start)`), and the reference its tests compare against. A VPS's is
/// a `Series<Bucket>` (see [`Series::insert_delta`]), a node's a `Series<NodeBucket>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series<B = Bucket> {
    /// Buckets by tier and start.
    pub tiers: BTreeMap<Tier, BTreeMap<DateTime<Utc>, B>>,
}

impl<B> Default for Series<B> {
    fn default() -> Self {
        Series {
            tiers: BTreeMap::new(),
        }
    }
}

impl<B: Merge> Series<B> {
    /// Merges `b`, for the instant `at`, into the bucket of each tier `at` lands in, unless
    /// that bucket is already expired at `now`.
    pub fn insert(&mut self, at: DateTime<Utc>, b: B, now: DateTime<Utc>) -> Insert {
        let mut stored = false;
        for tier in Tier::ALL {
            let start = tier.bucket_start(at);
            if tier.expired(start, now) {
                continue;
            }
            stored = true;
            self.tiers
                .entry(tier)
                .or_default()
                .entry(start)
                .and_modify(|old| *old = old.merge(&b))
                .or_insert(b);
        }
        if stored {
            Insert::Stored
        } else {
            Insert::TooOld
        }
    }

    /// Drops every bucket expired at `now`; returns how many.
    pub fn prune(&mut self, now: DateTime<Utc>) -> usize {
        let mut dropped = 0;
        for (tier, buckets) in &mut self.tiers {
            let before = buckets.len();
            buckets.retain(|start, _| !tier.expired(*start, now));
            dropped += before - buckets.len();
        }
        dropped
    }

    /// The buckets of one tier from `from` (inclusive) to `to` (exclusive).
    pub fn range(
        &self,
        tier: Tier,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = (&DateTime<Utc>, &B)> {
        self.tiers
            .get(&tier)
            .into_iter()
            .flat_map(move |b| b.range(from..to))
    }
}

impl Series<Bucket> {
    /// Adds a VPS's delta at its end ([`Delta::to`]).
    pub fn insert_delta(&mut self, d: &Delta, now: DateTime<Utc>) -> Insert {
        self.insert(d.to, Bucket::of(d), now)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;
    use crate::counters::Reset;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, h, m, s)
            .single()
            .unwrap_or_default()
    }

    fn delta(to: DateTime<Utc>, secs: i64, bytes: u64) -> Delta {
        Delta {
            from: to - Duration::seconds(secs),
            to,
            usage: Counters {
                net_rx_bytes: bytes,
                ..Counters::default()
            },
            reset: Reset::None,
            implausible: Vec::new(),
        }
    }

    #[test]
    fn buckets_are_aligned_to_utc() {
        let t = at(13, 7, 42);
        assert_eq!(Tier::Raw.bucket_start(t), t);
        assert_eq!(Tier::FiveMinutes.bucket_start(t), at(13, 5, 0));
        assert_eq!(Tier::Hourly.bucket_start(t), at(13, 0, 0));
        // A boundary belongs to the bucket it starts.
        assert_eq!(Tier::FiveMinutes.bucket_start(at(13, 10, 0)), at(13, 10, 0));
        // Before the epoch too (rem_euclid, not %).
        let old = DateTime::from_timestamp(-1, 0).unwrap_or_default();
        assert_eq!(Tier::Hourly.bucket_start(old).timestamp(), -3600);
    }

    #[test]
    fn pack_spans_hold_whole_buckets_and_close_at_their_end() {
        for tier in Tier::ALL {
            let w = tier.pack_width();
            // A pack span is a whole number of buckets, so no bucket straddles two packs.
            if let Some(b) = tier.width() {
                assert_eq!(w.num_seconds() % b.num_seconds(), 0, "{tier:?}");
            }
            let t = at(13, 7, 42);
            let p = tier.pack_start(t);
            assert!(p <= t && t < p + w, "{tier:?}");
            assert_eq!(tier.pack_start(tier.bucket_start(t)), p, "{tier:?}");
            assert!(!tier.pack_closed(p, t));
            assert!(!tier.pack_closed(p, p + w - Duration::seconds(1)));
            assert!(tier.pack_closed(p, p + w));
        }
        assert_eq!(Tier::Hourly.pack_start(at(13, 7, 42)), at(0, 0, 0));
        assert_eq!(Tier::FiveMinutes.pack_start(at(13, 7, 42)), at(12, 0, 0));
        assert_eq!(Tier::Raw.pack_start(at(13, 7, 42)), at(13, 0, 0));
    }

    #[test]
    fn bounds_follow_the_retention() {
        let minute = Duration::seconds(60);
        assert_eq!(Tier::Raw.max_buckets(minute), 1441);
        assert_eq!(Tier::FiveMinutes.max_buckets(minute), 4033);
        assert_eq!(Tier::Hourly.max_buckets(minute), 397 * 24 + 1);
        assert_eq!(Tier::Raw.max_buckets(Duration::zero()), 86_401);
    }

    #[test]
    fn coarser_tiers_sum_what_finer_ones_hold() {
        let mut s = Series::default();
        let now = at(23, 0, 0);
        for i in 0..120 {
            let to = at(10, 0, 0) + Duration::seconds(60 * (i + 1));
            assert_eq!(
                s.insert_delta(&delta(to, 60, 1000 + i as u64), now),
                Insert::Stored
            );
        }
        let sum = |tier| {
            s.range(tier, at(0, 0, 0), at(23, 59, 59))
                .map(|(_, b)| b.usage.net_rx_bytes)
                .sum::<u64>()
        };
        assert_eq!(sum(Tier::Raw), sum(Tier::FiveMinutes));
        assert_eq!(sum(Tier::Raw), sum(Tier::Hourly));
        let raw = s.tiers.get(&Tier::Raw).map_or(0, BTreeMap::len);
        let five = s.tiers.get(&Tier::FiveMinutes).map_or(0, BTreeMap::len);
        let hourly = s.tiers.get(&Tier::Hourly).map_or(0, BTreeMap::len);
        // 10:01 to 12:00: the last delta ends exactly at 12:00 and opens that hour's bucket.
        assert_eq!((raw, five, hourly), (120, 25, 3));
        let Some(b) = s
            .tiers
            .get(&Tier::Hourly)
            .and_then(|h| h.get(&at(11, 0, 0)))
        else {
            panic!("no 11:00 bucket")
        };
        assert_eq!((b.samples, b.seconds), (60, 3600));
    }

    #[test]
    fn pruning_drops_each_tier_at_its_own_age() {
        let mut s = Series::default();
        let t0 = at(10, 2, 0);
        s.insert_delta(&delta(t0, 60, 5), t0);
        // A day and a bit later: the raw sample is gone, the 5-minute and hourly buckets stay.
        let later = t0 + Duration::days(1) + Duration::minutes(1);
        assert_eq!(s.prune(later), 1);
        assert!(s.tiers.get(&Tier::Raw).is_none_or(BTreeMap::is_empty));
        assert_eq!(
            s.range(Tier::FiveMinutes, t0 - Duration::hours(1), later)
                .count(),
            1
        );
        // After 14 days the 5-minute bucket goes; after 397 the hourly one.
        assert_eq!(s.prune(t0 + Duration::days(14)), 1);
        assert_eq!(s.prune(t0 + Duration::days(396)), 0);
        assert_eq!(s.prune(t0 + Duration::days(397)), 1);
        assert!(s.tiers.values().all(BTreeMap::is_empty));
    }

    #[test]
    fn a_delta_too_old_for_every_tier_is_dropped() {
        let mut s = Series::default();
        let t0 = at(10, 0, 0);
        let now = t0 + Duration::days(400);
        assert_eq!(s.insert_delta(&delta(t0, 60, 5), now), Insert::TooOld);
        assert!(s.tiers.is_empty());
        // Two days old: only the coarser tiers take it.
        let now = t0 + Duration::days(2);
        assert_eq!(s.insert_delta(&delta(t0, 60, 5), now), Insert::Stored);
        assert!(!s.tiers.contains_key(&Tier::Raw));
        assert!(s.tiers.contains_key(&Tier::Hourly));
    }

    proptest! {
        /// Any run of deltas (irregular intervals, over up to two weeks): every tier that kept
        /// a span sums to the same usage, and after pruning no tier holds more than its bound.
        #[test]
        fn tiers_agree_and_stay_bounded(
            gaps in prop::collection::vec((1i64..7200, 0u64..1 << 40), 1..400),
        ) {
            let mut s = Series::default();
            let mut t = at(0, 0, 0);
            let mut deltas = Vec::new();
            for (secs, bytes) in gaps {
                let to = t + Duration::seconds(secs);
                deltas.push(delta(to, secs, bytes));
                t = to;
            }
            let now = t;
            for d in &deltas {
                s.insert_delta(d, now);
            }
            let end = now + Duration::seconds(1);
            let total = |tier: Tier, from: DateTime<Utc>| -> u128 {
                s.range(tier, tier.bucket_start(from), end)
                    .map(|(_, b)| u128::from(b.usage.net_rx_bytes))
                    .sum()
            };
            let kept = |from: DateTime<Utc>| -> u128 {
                deltas.iter().filter(|d| d.to >= from).map(|d| u128::from(d.usage.net_rx_bytes)).sum()
            };
            // The last hour is whole in every tier; all of it in the two coarse ones.
            let hour = Tier::Hourly.bucket_start(now - Duration::hours(1));
            prop_assert_eq!(total(Tier::Raw, hour), kept(hour));
            prop_assert_eq!(total(Tier::FiveMinutes, hour), kept(hour));
            prop_assert_eq!(total(Tier::Hourly, hour), kept(hour));
            let first = at(0, 0, 0);
            prop_assert_eq!(total(Tier::Hourly, first), kept(first));
            s.prune(now);
            for tier in Tier::ALL {
                let n = s.tiers.get(&tier).map_or(0, BTreeMap::len);
                prop_assert!(n as u64 <= tier.max_buckets(Duration::seconds(1)));
                prop_assert!(s.range(tier, first, end).all(|(start, _)| !tier.expired(*start, now)));
            }
        }
    }

    #[test]
    fn node_readings_keep_average_and_peaks_per_tier() {
        let mut s: Series<NodeBucket> = Series::default();
        let now = at(12, 0, 0);
        for (i, cpu) in [100, 900, 500].into_iter().enumerate() {
            let r = NodeReading {
                cpu_permille: cpu,
                storage_free: 1000 - cpu,
                ..NodeReading::default()
            };
            s.insert(at(11, 0, 10 * i as u32), NodeBucket::of(&r), now);
        }
        let Some(h) = s
            .tiers
            .get(&Tier::Hourly)
            .and_then(|h| h.get(&at(11, 0, 0)))
        else {
            panic!("no 11:00 bucket")
        };
        assert_eq!((h.cpu_permille.avg(), h.cpu_permille.max), (500, 900));
        assert_eq!(h.storage_free.min, 100);
        assert_eq!(s.range(Tier::Raw, at(0, 0, 0), now).count(), 3);
    }

    #[test]
    fn gauges_keep_average_and_peaks() {
        let g = [10, 40, 25]
            .map(Gauge::one)
            .iter()
            .fold(None, |acc: Option<Gauge>, g| {
                Some(acc.map_or(*g, |a| a.merge(g)))
            });
        let Some(g) = g else { panic!() };
        assert_eq!((g.count, g.min, g.max, g.avg()), (3, 10, 40, 25));
        let big = Gauge::one(u64::MAX).merge(&Gauge::one(u64::MAX));
        assert_eq!(big.avg(), u64::MAX);
    }
}
