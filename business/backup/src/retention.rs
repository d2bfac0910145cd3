//! Retention: which snapshots a policy keeps, exactly as restic's `forget --keep-daily N
//! --keep-weekly N --keep-monthly N` decides for one group, with every time taken in UTC.
//!
//! Newest first, each rule keeps the newest snapshot of each of its last N buckets (UTC days,
//! ISO weeks, months) that have one; a rule left with buckets to fill also keeps the oldest.

use chrono::{DateTime, Datelike, Utc};
use model::backup::Retention;

/// One restic snapshot of a VPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// restic's snapshot id.
    pub id: String,
    /// When it was taken.
    pub time: DateTime<Utc>,
}

/// A retention rule, and why a snapshot is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bucket {
    /// `keep_daily`: one per UTC calendar day.
    Daily,
    /// `keep_weekly`: one per ISO 8601 week (Monday to Sunday, UTC).
    Weekly,
    /// `keep_monthly`: one per UTC calendar month.
    Monthly,
}

impl Bucket {
    /// The bucket a time falls in, as restic numbers it (`YYYYMMDD`, ISO `YYYYWW`, `YYYYMM`).
    pub fn of(self, t: DateTime<Utc>) -> i64 {
        let (y, m, d) = (
            i64::from(t.year()),
            i64::from(t.month()),
            i64::from(t.day()),
        );
        match self {
            Bucket::Daily => y * 10_000 + m * 100 + d,
            Bucket::Weekly => {
                let w = t.iso_week();
                i64::from(w.year()) * 100 + i64::from(w.week())
            }
            Bucket::Monthly => y * 100 + m,
        }
    }

    /// How many buckets of this kind `keep` asks for.
    pub fn count(self, keep: &Retention) -> u32 {
        match self {
            Bucket::Daily => keep.daily,
            Bucket::Weekly => keep.weekly,
            Bucket::Monthly => keep.monthly,
        }
    }
}

/// A kept snapshot and the rules that keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// The rules that keep it; a rule appears once per snapshot.
    pub by: Vec<Bucket>,
    /// Kept as the oldest snapshot while a rule still had buckets to fill.
    pub oldest: bool,
}

/// What a policy does to a list of snapshots, each list newest first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// The snapshots kept.
    pub keep: Vec<Kept>,
    /// The snapshots to forget (`restic forget ID...`).
    pub forget: Vec<Snapshot>,
}

/// Which of one VPS's snapshots `keep` keeps. A policy that keeps nothing of any kind
/// forgets nothing (restic refuses to apply an empty policy). Snapshots taken at the same
/// instant are ordered by id (restic keeps its listing order there).
pub fn retain(snapshots: &[Snapshot], keep: &Retention) -> Decision {
    let mut list: Vec<&Snapshot> = snapshots.iter().collect();
    list.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| a.id.cmp(&b.id)));
    let rules = [Bucket::Daily, Bucket::Weekly, Bucket::Monthly];
    if rules.iter().all(|r| r.count(keep) == 0) {
        return Decision {
            keep: list
                .into_iter()
                .map(|s| Kept {
                    snapshot: s.clone(),
                    by: Vec::new(),
                    oldest: false,
                })
                .collect(),
            forget: Vec::new(),
        };
    }
    let mut left: Vec<u32> = rules.iter().map(|r| r.count(keep)).collect();
    let mut last: Vec<Option<i64>> = vec![None; rules.len()];
    let mut out = Decision::default();
    let n = list.len();
    for (i, s) in list.into_iter().enumerate() {
        let mut by = Vec::new();
        let mut oldest = false;
        for (j, rule) in rules.iter().enumerate() {
            if left[j] == 0 {
                continue;
            }
            let b = rule.of(s.time);
            let new_bucket = last[j] != Some(b);
            if new_bucket || i + 1 == n {
                oldest |= !new_bucket;
                last[j] = Some(b);
                left[j] -= 1;
                by.push(*rule);
            }
        }
        if by.is_empty() {
            out.forget.push(s.clone());
        } else {
            out.keep.push(Kept {
                snapshot: s.clone(),
                by,
                oldest,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snaps(times: &[&str]) -> Vec<Snapshot> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| Snapshot {
                id: format!("s{i:02}"),
                time: t.parse().unwrap(),
            })
            .collect()
    }

    fn kept_ids(d: &Decision) -> Vec<&str> {
        d.keep.iter().map(|k| k.snapshot.id.as_str()).collect()
    }

    fn keep(daily: u32, weekly: u32, monthly: u32) -> Retention {
        Retention {
            daily,
            weekly,
            monthly,
        }
    }

    #[test]
    fn the_newest_of_each_day_is_kept() {
        let s = snaps(&[
            "2026-12-01T03:00:00Z",
            "2026-12-01T15:00:00Z",
            "2026-12-02T03:00:00Z",
            "2026-12-03T03:00:00Z",
            "2026-12-03T23:59:59Z",
        ]);
        let d = retain(&s, &keep(2, 0, 0));
        assert_eq!(kept_ids(&d), ["s04", "s02"]);
        let forgotten: Vec<&str> = d.forget.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(forgotten, ["s03", "s01", "s00"]);
    }

    #[test]
    fn days_without_a_snapshot_do_not_count() {
        let s = snaps(&[
            "2026-11-01T03:00:00Z",
            "2026-11-20T03:00:00Z",
            "2026-12-01T03:00:00Z",
        ]);
        let d = retain(&s, &keep(2, 0, 0));
        assert_eq!(kept_ids(&d), ["s02", "s01"]);
    }

    #[test]
    fn a_rule_left_with_buckets_to_fill_keeps_the_oldest() {
        // Two days, three asked for: both days' newest, and the oldest snapshot too.
        let s = snaps(&[
            "2026-12-01T03:00:00Z",
            "2026-12-01T15:00:00Z",
            "2026-12-02T03:00:00Z",
        ]);
        let d = retain(&s, &keep(3, 0, 0));
        assert_eq!(kept_ids(&d), ["s02", "s01", "s00"]);
        assert!(d.keep[2].oldest && !d.keep[1].oldest);
        assert!(d.forget.is_empty());
    }

    #[test]
    fn iso_weeks_cross_the_new_year() {
        // 2026-12-31 (Thursday) and 2027-01-01 (Friday) are both in ISO week 2026-W53; the
        // Monday after starts 2027-W01.
        let s = snaps(&[
            "2026-12-31T03:00:00Z",
            "2027-01-01T03:00:00Z",
            "2027-01-04T03:00:00Z",
        ]);
        assert_eq!(Bucket::Weekly.of(s[0].time), Bucket::Weekly.of(s[1].time));
        let d = retain(&s, &keep(0, 2, 0));
        assert_eq!(kept_ids(&d), ["s02", "s01"]);
        let d = retain(&s, &keep(0, 0, 2));
        assert_eq!(
            kept_ids(&d),
            ["s02", "s00"],
            "months follow the calendar, weeks do not"
        );
    }

    #[test]
    fn reasons_add_up_and_an_empty_policy_forgets_nothing() {
        let s = snaps(&["2026-11-30T03:00:00Z", "2026-12-01T03:00:00Z"]);
        let d = retain(&s, &keep(1, 1, 1));
        assert_eq!(d.keep.len(), 1);
        assert_eq!(
            d.keep[0].by,
            [Bucket::Daily, Bucket::Weekly, Bucket::Monthly]
        );
        // 11-30 is the Monday of 12-01's ISO week, in the month before: only a second
        // monthly bucket wants it.
        let d = retain(&s, &keep(1, 1, 2));
        assert_eq!(d.keep[1].by, [Bucket::Monthly]);
        assert!(d.forget.is_empty());
        let all = retain(&s, &keep(0, 0, 0));
        assert_eq!(all.keep.len(), 2);
        assert!(all.forget.is_empty());
        assert_eq!(retain(&[], &keep(7, 4, 3)), Decision::default());
    }
}
