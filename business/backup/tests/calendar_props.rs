//! Retention on a synthetic calendar: for any snapshots over two years and any policy, the
//! kept set is exactly the one the policy defines, computed here a second, independent way.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};

use backup::{Bucket, Snapshot, retain};
use chrono::{DateTime, Duration, TimeZone, Utc};
use model::backup::Retention;
use proptest::prelude::*;

/// The definition, set-wise: for each rule asking for N, group the snapshots by bucket, take
/// the N newest buckets and keep the newest snapshot of each; when there are fewer than N
/// buckets, keep the oldest snapshot as well. A snapshot is kept when any rule keeps it.
fn defined(snapshots: &[Snapshot], keep: &Retention) -> BTreeSet<String> {
    let rules = [Bucket::Daily, Bucket::Weekly, Bucket::Monthly];
    if rules.iter().all(|r| r.count(keep) == 0) {
        return snapshots.iter().map(|s| s.id.clone()).collect();
    }
    let mut out = BTreeSet::new();
    for rule in rules {
        let n = rule.count(keep) as usize;
        if n == 0 {
            continue;
        }
        // bucket -> its newest snapshot (time, then the smallest id on a tie).
        let mut newest: BTreeMap<i64, (DateTime<Utc>, &str)> = BTreeMap::new();
        for s in snapshots {
            let e = newest
                .entry(rule.of(s.time))
                .or_insert((s.time, s.id.as_str()));
            if (s.time, std::cmp::Reverse(s.id.as_str())) > (e.0, std::cmp::Reverse(e.1)) {
                *e = (s.time, s.id.as_str());
            }
        }
        for (_, (_, id)) in newest.iter().rev().take(n) {
            out.insert((*id).to_owned());
        }
        if newest.len() < n {
            let oldest = snapshots
                .iter()
                .min_by(|a, b| a.time.cmp(&b.time).then_with(|| b.id.cmp(&a.id)));
            if let Some(o) = oldest {
                out.insert(o.id.clone());
            }
        }
    }
    out
}

/// Snapshots on random days of two years from 2026-01-01 (a leap year follows: 2028 is not
/// reached, but ISO week 53 of 2026 is), up to three a day at random minutes.
fn calendar() -> impl Strategy<Value = Vec<Snapshot>> {
    prop::collection::vec((0i64..730, 0i64..1440), 0..120).prop_map(|days| {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single();
        let start = start.unwrap_or_default();
        days.into_iter()
            .enumerate()
            .map(|(i, (day, minute))| Snapshot {
                id: format!("{i:04x}"),
                time: start + Duration::days(day) + Duration::minutes(minute),
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_kept_set_is_the_one_the_policy_defines(
        snapshots in calendar(),
        daily in 0u32..12,
        weekly in 0u32..8,
        monthly in 0u32..14,
    ) {
        let keep = Retention { daily, weekly, monthly };
        let d = retain(&snapshots, &keep);
        let kept: BTreeSet<String> = d.keep.iter().map(|k| k.snapshot.id.clone()).collect();
        let forgotten: BTreeSet<String> = d.forget.iter().map(|s| s.id.clone()).collect();
        prop_assert_eq!(&kept, &defined(&snapshots, &keep));
        // Every snapshot is either kept or forgotten, once.
        prop_assert!(kept.is_disjoint(&forgotten));
        prop_assert_eq!(kept.len() + forgotten.len(), snapshots.len());
        prop_assert_eq!(d.keep.len() + d.forget.len(), snapshots.len());
        // At most one per asked-for bucket, plus the oldest.
        let asked = (daily + weekly + monthly) as usize;
        prop_assert!(kept.len() <= asked + 1 || asked == 0);
        // Both lists are newest first.
        prop_assert!(d.keep.windows(2).all(|w| w[0].snapshot.time >= w[1].snapshot.time));
        prop_assert!(d.forget.windows(2).all(|w| w[0].time >= w[1].time));
        // Forgetting is stable: a second run over what the first kept forgets nothing.
        let again: Vec<Snapshot> = d.keep.iter().map(|k| k.snapshot.clone()).collect();
        let d2 = retain(&again, &keep);
        prop_assert!(d2.forget.is_empty(), "a second forget removes nothing: {:?}", d2.forget);
    }
}
