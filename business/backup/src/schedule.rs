//! When a backup is due: each schedule opens a slot once a day (or week) at a UTC hour, and a
//! VPS is due when its last backup is older than the latest slot opened at or before now.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Days, NaiveTime, Utc};
use model::backup::{Frequency, Schedule};
use model::values::State;
use model::{Inventory, VpsId};

/// The start of the latest slot of `schedule` at or before `now`; `None` when the schedule
/// takes no backups (or names an hour past 23, which the model refuses).
pub fn last_slot(schedule: &Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let at = NaiveTime::from_hms_opt(schedule.hour, 0, 0)?;
    let today = now.date_naive();
    let (back, period) = match schedule.every {
        Frequency::Off => return None,
        Frequency::Daily => (0, 1),
        Frequency::Weekly => {
            let wanted = schedule.weekday.days_from_monday();
            let day = today.weekday().num_days_from_monday();
            ((day + 7 - wanted) % 7, 7)
        }
    };
    let slot = today
        .checked_sub_days(Days::new(back.into()))?
        .and_time(at)
        .and_utc();
    if slot <= now {
        Some(slot)
    } else {
        Some(
            slot.date_naive()
                .checked_sub_days(Days::new(period))?
                .and_time(at)
                .and_utc(),
        )
    }
}

/// Whether a VPS whose last backup was taken at `last` (`None`: never) is due at `now`.
pub fn is_due(schedule: &Schedule, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    last_slot(schedule, now).is_some_and(|slot| last.is_none_or(|t| t < slot))
}

/// A backup to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// The VPS.
    pub vps: VpsId,
    /// The slot this backup is for.
    pub slot: DateTime<Utc>,
    /// Its last backup, if any.
    pub last: Option<DateTime<Utc>>,
}

/// The VPSes due for a backup at `now`, given each one's last backup time (a VPS missing from
/// `last` was never backed up): active VPSes only (a suspended VPS's disk does not change
/// and a destroyed one's is not ours to keep), never-backed-up ones first, then the longest
/// waiting, then by id.
pub fn due(inv: &Inventory, last: &BTreeMap<VpsId, DateTime<Utc>>, now: DateTime<Utc>) -> Vec<Due> {
    let mut out: Vec<Due> = inv
        .vps
        .values()
        .filter(|v| v.state == State::Active)
        .filter_map(|v| {
            let policy = inv.backup_policy_of(v)?;
            let slot = last_slot(&policy.schedule, now)?;
            let last = last.get(&v.id).copied();
            last.is_none_or(|t| t < slot).then(|| Due {
                vps: v.id.clone(),
                slot,
                last,
            })
        })
        .collect();
    out.sort_by(|a, b| (a.last, &a.vps).cmp(&(b.last, &b.vps)));
    out
}

#[cfg(test)]
mod tests {
    use model::backup::Weekday;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn sched(every: Frequency, hour: u32, weekday: Weekday) -> Schedule {
        Schedule {
            every,
            hour,
            weekday,
        }
    }

    #[test]
    fn daily_slots_open_at_the_hour() {
        let s = sched(Frequency::Daily, 3, Weekday::Sunday);
        assert_eq!(
            last_slot(&s, at("2026-12-06T02:59:59Z")),
            Some(at("2026-12-05T03:00:00Z"))
        );
        assert_eq!(
            last_slot(&s, at("2026-12-06T03:00:00Z")),
            Some(at("2026-12-06T03:00:00Z"))
        );
        // Across a year and a leap day.
        assert_eq!(
            last_slot(&s, at("2027-01-01T00:10:00Z")),
            Some(at("2026-12-31T03:00:00Z"))
        );
        assert_eq!(
            last_slot(&s, at("2028-03-01T01:00:00Z")),
            Some(at("2028-02-29T03:00:00Z"))
        );
    }

    #[test]
    fn weekly_slots_open_on_their_day() {
        // 2026-12-06 is a Sunday.
        let s = sched(Frequency::Weekly, 3, Weekday::Sunday);
        assert_eq!(
            last_slot(&s, at("2026-12-06T02:00:00Z")),
            Some(at("2026-11-29T03:00:00Z"))
        );
        assert_eq!(
            last_slot(&s, at("2026-12-06T04:00:00Z")),
            Some(at("2026-12-06T03:00:00Z"))
        );
        let mon = sched(Frequency::Weekly, 0, Weekday::Monday);
        assert_eq!(
            last_slot(&mon, at("2026-12-06T23:59:00Z")),
            Some(at("2026-11-30T00:00:00Z"))
        );
        assert_eq!(
            last_slot(&mon, at("2026-12-07T00:00:00Z")),
            Some(at("2026-12-07T00:00:00Z"))
        );
    }

    #[test]
    fn due_when_the_last_backup_is_older_than_the_slot() {
        let s = sched(Frequency::Daily, 3, Weekday::Sunday);
        let now = at("2026-12-06T05:00:00Z");
        assert!(is_due(&s, None, now));
        assert!(is_due(&s, Some(at("2026-12-06T02:59:59Z")), now));
        assert!(!is_due(&s, Some(at("2026-12-06T03:00:00Z")), now));
        assert!(!is_due(&s, Some(at("2026-12-06T04:00:00Z")), now));
        let off = sched(Frequency::Off, 3, Weekday::Sunday);
        assert!(!is_due(&off, None, now));
        let bad = sched(Frequency::Daily, 24, Weekday::Sunday);
        assert!(!is_due(&bad, None, now), "an impossible hour is never due");
    }
}
