//! Monthly traffic accounting against a plan's `traffic` quota, and the `[traffic]` policy:
//! which period a delta counts in, how full the quota is, and what should happen about it.
//!
//! Periods are whole UTC days: from the reset day (the 1st, or the VPS's contract day, which
//! is its `created` day of the month and falls on the month's last day in shorter months) to
//! the next one. A delta counts in the period holding its end ([`Delta::to`]), like a bucket.
//!
//! [`decide`] compares the level the usage reached with what was already done this period and
//! returns the steps to take: a mail when a higher level is reached, and the throttle or
//! suspension the level calls for started or lifted (a new period, or more traffic bought,
//! lifts them). A quota of 0 is unmetered.

use chrono::{DateTime, Datelike, Months, NaiveDate, Utc};
use model::inventory::Resources;
use model::settings::{TrafficAction, TrafficCount, TrafficReset, TrafficSettings};
use model::values::{Size, State};

use crate::counters::{Counters, Delta};
use crate::tiers::{Series, Tier};

/// One accounting period: `[start, end)`, in UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    /// The first day.
    pub start: NaiveDate,
    /// The first day of the next period.
    pub end: NaiveDate,
}

impl Period {
    /// Whether the instant `at` falls in the period.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let day = at.date_naive();
        self.start <= day && day < self.end
    }
}

/// A date the calendar cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrafficError {
    /// The period around `today` reaches past chrono's last representable date.
    #[error("no traffic period around {today}: the date is out of range")]
    OutOfRange {
        /// The day asked about.
        today: NaiveDate,
    },
}

/// The reset day of the month `first_of_month` starts, for a contract on day `day`: that day,
/// or the month's last day when it is shorter.
fn reset_in(first_of_month: NaiveDate, day: u32) -> Option<NaiveDate> {
    let next = first_of_month.checked_add_months(Months::new(1))?;
    let last = next.pred_opt()?.day();
    first_of_month.with_day(day.min(last))
}

/// The period `today` falls in, for a VPS created on `created`.
pub fn period(
    reset: TrafficReset,
    created: NaiveDate,
    today: NaiveDate,
) -> Result<Period, TrafficError> {
    let err = || TrafficError::OutOfRange { today };
    let day = match reset {
        TrafficReset::First => 1,
        TrafficReset::Contract => created.day(),
    };
    let this_month = today.with_day(1).ok_or_else(err)?;
    let this = reset_in(this_month, day).ok_or_else(err)?;
    let (from, to) = if today >= this {
        let next = this_month
            .checked_add_months(Months::new(1))
            .ok_or_else(err)?;
        (this, reset_in(next, day).ok_or_else(err)?)
    } else {
        let prev = this_month
            .checked_sub_months(Months::new(1))
            .ok_or_else(err)?;
        (reset_in(prev, day).ok_or_else(err)?, this)
    };
    Ok(Period {
        start: from,
        end: to,
    })
}

/// The bytes of `usage` that count against the quota.
pub fn counted(count: TrafficCount, usage: &Counters) -> u64 {
    match count {
        TrafficCount::Both => usage.net_bytes(),
        TrafficCount::Out => usage.net_tx_bytes,
        TrafficCount::In => usage.net_rx_bytes,
    }
}

/// The counted bytes of the deltas that end in `period`.
pub fn period_total<'a>(
    period: &Period,
    count: TrafficCount,
    deltas: impl IntoIterator<Item = &'a Delta>,
) -> u64 {
    deltas
        .into_iter()
        .filter(|d| period.contains(d.to))
        .fold(0u64, |acc, d| acc.saturating_add(counted(count, &d.usage)))
}

/// The counted bytes of a VPS's hourly buckets that start in `period`: the same total as
/// [`period_total`] over the deltas the buckets hold (an hour never straddles two periods, and
/// both put a delta at its end), so a restarted collector recomputes the month from its store.
pub fn period_total_hourly(period: &Period, count: TrafficCount, series: &Series) -> u64 {
    let (Some(from), Some(to)) = (
        period.start.and_hms_opt(0, 0, 0),
        period.end.and_hms_opt(0, 0, 0),
    ) else {
        return 0;
    };
    series
        .range(Tier::Hourly, from.and_utc(), to.and_utc())
        .fold(0u64, |acc, (_, b)| {
            acc.saturating_add(counted(count, &b.usage))
        })
}

/// How full a quota is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Below the warning threshold (or unmetered).
    Under,
    /// At or past `warn_percent`, below the quota.
    Warn,
    /// At or past the quota.
    Over,
}

/// The level `used` bytes reach of `quota`; a quota of 0 is unmetered.
pub fn level(used: u64, quota: Size, warn_percent: u32) -> Level {
    let q = u128::from(quota.bytes());
    let used = u128::from(used);
    if q == 0 {
        Level::Under
    } else if used >= q {
        Level::Over
    } else if used * 100 >= q * u128::from(warn_percent) {
        Level::Warn
    } else {
        Level::Under
    }
}

/// What the traffic policy has already done to a VPS, as the repo records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforcement {
    /// The highest level the customer was mailed about in the current period and not
    /// dropped below since (`Under` at the start of each period; see [`Enforcement::after`]).
    pub mailed: Level,
    /// Whether its network rate is throttled for traffic.
    pub throttled: bool,
    /// Whether it is suspended for traffic (not for billing or by an operator).
    pub suspended: bool,
}

impl Enforcement {
    /// Nothing done yet.
    pub const NONE: Enforcement = Enforcement {
        mailed: Level::Under,
        throttled: false,
        suspended: false,
    };

    /// What is in place once the decision's steps are done (what the caller records with
    /// them). A level that dropped (more traffic bought) lowers `mailed` with it, so passing
    /// the threshold again is mailed again.
    pub fn after(self, dec: &Decision) -> Enforcement {
        let start = Enforcement {
            mailed: self.mailed.min(dec.level),
            ..self
        };
        dec.steps.iter().fold(start, |e, s| match *s {
            Step::Throttle => Enforcement {
                throttled: true,
                ..e
            },
            Step::Unthrottle => Enforcement {
                throttled: false,
                ..e
            },
            Step::Suspend => Enforcement {
                suspended: true,
                ..e
            },
            Step::Unsuspend => Enforcement {
                suspended: false,
                ..e
            },
            Step::Mail { level, .. } => Enforcement {
                mailed: e.mailed.max(level),
                ..e
            },
        })
    }
}

/// One thing that should happen, in the order [`decide`] returns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Throttle the VPS's network to `[traffic] throttle_rate`.
    Throttle,
    /// Lift the traffic throttle.
    Unthrottle,
    /// Suspend the VPS for traffic.
    Suspend,
    /// Lift the traffic suspension.
    Unsuspend,
    /// Mail the customer that the quota reached `level`, and what was done about it.
    Mail {
        /// The level reached.
        level: Level,
        /// The action the policy took at that level.
        action: TrafficAction,
    },
}

/// What should happen: the level the usage reached and the steps to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// How full the quota is.
    pub level: Level,
    /// The steps, enforcement first and the mail last (so the mail can say what was done).
    pub steps: Vec<Step>,
}

/// The policy's answer for a VPS in `state`, on a plan giving `plan`, having used `used`
/// counted bytes this period, with `done` already in place.
///
/// A destroyed VPS, or one suspended by billing or an operator, gets nothing: the policy
/// neither mails about it nor touches what someone else decided.
pub fn decide(
    policy: &TrafficSettings,
    plan: &Resources,
    state: State,
    used: u64,
    done: Enforcement,
) -> Decision {
    let level = level(used, plan.traffic, policy.warn_percent);
    let mut steps = Vec::new();
    let someone_elses = state == State::Suspended && !done.suspended;
    if state == State::Destroyed || someone_elses {
        return Decision { level, steps };
    }
    let action = match level {
        Level::Under => None,
        Level::Warn => Some(policy.at_warn),
        Level::Over => Some(policy.at_limit),
    };
    let throttle = action == Some(TrafficAction::Throttle);
    let suspend = action == Some(TrafficAction::Suspend);
    match (done.throttled, throttle) {
        (false, true) => steps.push(Step::Throttle),
        (true, false) => steps.push(Step::Unthrottle),
        _ => {}
    }
    match (done.suspended, suspend) {
        (false, true) => steps.push(Step::Suspend),
        (true, false) => steps.push(Step::Unsuspend),
        _ => {}
    }
    if let Some(action) = action
        && level > done.mailed
    {
        steps.push(Step::Mail { level, action });
    }
    Decision { level, steps }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use model::values::Size;
    use proptest::prelude::*;

    use super::*;
    use crate::counters::Reset;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap_or_default()
    }

    fn p(reset: TrafficReset, created: NaiveDate, today: NaiveDate) -> (NaiveDate, NaiveDate) {
        let Ok(p) = period(reset, created, today) else {
            panic!("no period for {today}")
        };
        (p.start, p.end)
    }

    #[test]
    fn periods_start_on_the_first() {
        let c = d(2025, 3, 17);
        assert_eq!(
            p(TrafficReset::First, c, d(2026, 12, 6)),
            (d(2026, 12, 1), d(2027, 1, 1))
        );
        assert_eq!(
            p(TrafficReset::First, c, d(2026, 12, 1)),
            (d(2026, 12, 1), d(2027, 1, 1))
        );
        assert_eq!(
            p(TrafficReset::First, c, d(2026, 12, 31)),
            (d(2026, 12, 1), d(2027, 1, 1))
        );
    }

    #[test]
    fn periods_follow_the_contract_day() {
        let c = d(2025, 3, 17);
        assert_eq!(
            p(TrafficReset::Contract, c, d(2026, 12, 6)),
            (d(2026, 11, 17), d(2026, 12, 17))
        );
        assert_eq!(
            p(TrafficReset::Contract, c, d(2026, 12, 17)),
            (d(2026, 12, 17), d(2027, 1, 17))
        );
        // A contract on the 31st resets on the last day of shorter months, and on the 31st
        // again after them.
        let c = d(2025, 1, 31);
        assert_eq!(
            p(TrafficReset::Contract, c, d(2026, 2, 27)),
            (d(2026, 1, 31), d(2026, 2, 28))
        );
        assert_eq!(
            p(TrafficReset::Contract, c, d(2026, 2, 28)),
            (d(2026, 2, 28), d(2026, 3, 31))
        );
        assert_eq!(
            p(TrafficReset::Contract, c, d(2028, 2, 29)),
            (d(2028, 2, 29), d(2028, 3, 31))
        );
        // The periods tile: every day of two years is in exactly one, and each ends where
        // the next starts.
        let mut day = d(2026, 1, 1);
        let mut prev: Option<(NaiveDate, NaiveDate)> = None;
        while day < d(2028, 1, 1) {
            let now = p(TrafficReset::Contract, c, day);
            assert!(now.0 <= day && day < now.1);
            if let Some(before) = prev.filter(|b| *b != now) {
                assert_eq!(before.1, now.0);
            }
            prev = Some(now);
            day = day.succ_opt().unwrap_or_default();
        }
    }

    #[test]
    fn the_last_date_is_an_error_not_a_panic() {
        let e = period(TrafficReset::First, NaiveDate::MAX, NaiveDate::MAX);
        assert!(matches!(e, Err(TrafficError::OutOfRange { .. })), "{e:?}");
    }

    #[test]
    fn totals_count_the_configured_direction_in_the_period() {
        let at = |day| {
            Utc.with_ymd_and_hms(2026, 12, day, 0, 0, 30)
                .single()
                .unwrap_or_default()
        };
        let delta = |day| Delta {
            from: at(day) - Duration::seconds(60),
            to: at(day),
            usage: Counters {
                net_rx_bytes: 100,
                net_tx_bytes: 7,
                ..Counters::default()
            },
            reset: Reset::None,
            implausible: Vec::new(),
        };
        let ds = [delta(1), delta(15), delta(17), delta(31)];
        let Ok(per) = period(TrafficReset::Contract, d(2025, 3, 17), d(2026, 12, 6)) else {
            panic!()
        };
        // The delta ending 00:00:30 on the 1st started on November 30th: it counts on the 1st.
        assert_eq!(period_total(&per, TrafficCount::Both, &ds), 214);
        assert_eq!(period_total(&per, TrafficCount::Out, &ds), 14);
        assert_eq!(period_total(&per, TrafficCount::In, &ds), 200);
    }

    proptest! {
        /// The month recomputed from the hourly tier equals the month summed from the deltas,
        /// for either reset rule, across period boundaries.
        #[test]
        fn hourly_buckets_give_the_same_month(
            gaps in prop::collection::vec((1i64..20_000, 0u64..1 << 40, 0u64..1 << 40), 1..300),
            contract in any::<bool>(), created_day in 1u32..=31,
        ) {
            let reset = if contract { TrafficReset::Contract } else { TrafficReset::First };
            let created = d(2025, 1, created_day);
            let mut t = Utc.with_ymd_and_hms(2026, 11, 20, 7, 13, 0).single().unwrap_or_default();
            let (mut series, mut deltas) = (Series::default(), Vec::new());
            for (secs, rx, tx) in gaps {
                let to = t + Duration::seconds(secs);
                let delta = Delta {
                    from: t,
                    to,
                    usage: Counters { net_rx_bytes: rx, net_tx_bytes: tx, ..Counters::default() },
                    reset: Reset::None,
                    implausible: Vec::new(),
                };
                series.insert_delta(&delta, to);
                deltas.push(delta);
                t = to;
            }
            for day in [d(2026, 11, 25), d(2026, 12, 10), d(2027, 1, 3), t.date_naive()] {
                let per = period(reset, created, day);
                prop_assert!(per.is_ok());
                let Ok(per) = per else { break };
                for count in [TrafficCount::Both, TrafficCount::Out, TrafficCount::In] {
                    prop_assert_eq!(
                        period_total_hourly(&per, count, &series),
                        period_total(&per, count, &deltas)
                    );
                }
            }
        }
    }

    #[test]
    fn levels() {
        let q = Size(1000);
        assert_eq!(level(799, q, 80), Level::Under);
        assert_eq!(level(800, q, 80), Level::Warn);
        assert_eq!(level(999, q, 80), Level::Warn);
        assert_eq!(level(1000, q, 80), Level::Over);
        assert_eq!(level(u64::MAX, Size(u64::MAX), 99), Level::Over);
        assert_eq!(level(u64::MAX, Size(0), 80), Level::Under);
    }

    fn plan(traffic: u64) -> Resources {
        Resources {
            disk: Size::gib(10),
            ram: Size::mib(512),
            vcpus: 1,
            traffic: Size(traffic),
            bandwidth: None,
            cpu_weight: 256,
            cpu_cap: 0,
            disk_iops: None,
            disk_bandwidth: None,
            backup: model::backup::BackupPolicy::default(),
            guest_type: None,
        }
    }

    fn with(at_warn: TrafficAction, at_limit: TrafficAction) -> TrafficSettings {
        TrafficSettings {
            at_warn,
            at_limit,
            ..TrafficSettings::default()
        }
    }

    #[test]
    fn the_default_policy_mails_at_80_and_throttles_at_100() {
        let pol = TrafficSettings::default();
        let plan = plan(1000);
        let none = Enforcement::NONE;
        let dec = decide(&pol, &plan, State::Active, 500, none);
        assert_eq!((dec.level, dec.steps), (Level::Under, vec![]));
        let dec = decide(&pol, &plan, State::Active, 850, none);
        assert_eq!(
            dec.steps,
            vec![Step::Mail {
                level: Level::Warn,
                action: TrafficAction::Mail
            }]
        );
        // Mailed already: nothing more until the quota.
        let warned = Enforcement {
            mailed: Level::Warn,
            ..none
        };
        assert_eq!(
            decide(&pol, &plan, State::Active, 900, warned).steps,
            vec![]
        );
        let dec = decide(&pol, &plan, State::Active, 1000, warned);
        assert_eq!(
            dec.steps,
            vec![
                Step::Throttle,
                Step::Mail {
                    level: Level::Over,
                    action: TrafficAction::Throttle
                }
            ]
        );
        // Throttled and mailed: steady.
        let over = Enforcement {
            mailed: Level::Over,
            throttled: true,
            suspended: false,
        };
        assert_eq!(decide(&pol, &plan, State::Active, 5000, over).steps, vec![]);
    }

    #[test]
    fn jumping_past_both_thresholds_mails_once() {
        let pol = TrafficSettings::default();
        let dec = decide(&pol, &plan(1000), State::Active, 2000, Enforcement::NONE);
        assert_eq!(dec.level, Level::Over);
        assert_eq!(
            dec.steps,
            vec![
                Step::Throttle,
                Step::Mail {
                    level: Level::Over,
                    action: TrafficAction::Throttle
                }
            ]
        );
    }

    #[test]
    fn a_new_period_or_more_traffic_lifts_the_measures() {
        let pol = with(TrafficAction::Throttle, TrafficAction::Suspend);
        let done = Enforcement {
            mailed: Level::Under, // a new period starts with nothing mailed
            throttled: true,
            suspended: true,
        };
        let dec = decide(&pol, &plan(1000), State::Suspended, 10, done);
        assert_eq!(dec.steps, vec![Step::Unthrottle, Step::Unsuspend]);
        // A bought block raised the quota: over becomes warn, the suspension becomes a
        // throttle, and the customer was already told about more than warn.
        let done = Enforcement {
            mailed: Level::Over,
            throttled: false,
            suspended: true,
        };
        let dec = decide(&pol, &plan(2000), State::Suspended, 1900, done);
        assert_eq!(dec.steps, vec![Step::Throttle, Step::Unsuspend]);
        // Passing the bigger quota later is mailed again.
        let done = done.after(&dec);
        assert_eq!(done.mailed, Level::Warn);
        let dec = decide(&pol, &plan(2000), State::Active, 2000, done);
        assert_eq!(
            dec.steps,
            vec![
                Step::Unthrottle,
                Step::Suspend,
                Step::Mail {
                    level: Level::Over,
                    action: TrafficAction::Suspend
                }
            ]
        );
    }

    #[test]
    fn suspend_at_the_quota() {
        let pol = with(TrafficAction::Mail, TrafficAction::Suspend);
        let done = Enforcement {
            mailed: Level::Warn,
            ..Enforcement::NONE
        };
        let dec = decide(&pol, &plan(1000), State::Active, 1000, done);
        assert_eq!(
            dec.steps,
            vec![
                Step::Suspend,
                Step::Mail {
                    level: Level::Over,
                    action: TrafficAction::Suspend
                }
            ]
        );
    }

    #[test]
    fn other_peoples_suspensions_and_destroyed_vpses_are_left_alone() {
        let pol = with(TrafficAction::Throttle, TrafficAction::Suspend);
        for state in [State::Suspended, State::Destroyed] {
            let dec = decide(&pol, &plan(1000), state, 5000, Enforcement::NONE);
            assert_eq!(dec.level, Level::Over);
            assert_eq!(dec.steps, vec![], "{state}");
        }
    }

    fn action() -> impl Strategy<Value = TrafficAction> {
        prop_oneof![
            Just(TrafficAction::Mail),
            Just(TrafficAction::Throttle),
            Just(TrafficAction::Suspend)
        ]
    }

    proptest! {
        /// Over a period of growing usage (and a quota that may grow when traffic is bought),
        /// doing what decide() says settles at once: deciding again changes nothing, a level
        /// is mailed only when reached from below, and what is in place is what the level
        /// calls for.
        #[test]
        fn decisions_settle_and_mail_each_level_once(
            a in action(), b in action(), warn in 1u32..100, quota in 0u64..10_000,
            usage in prop::collection::vec((0u64..3_000, 0u64..2_000), 1..40),
        ) {
            let (at_warn, at_limit) = if a <= b { (a, b) } else { (b, a) };
            let pol = TrafficSettings { warn_percent: warn, at_warn, at_limit, ..TrafficSettings::default() };
            let (mut used, mut quota) = (0u64, quota);
            let mut done = Enforcement::NONE;
            let (mut mails, mut expected) = (Vec::new(), Vec::new());
            let mut told = Level::Under;
            for (more, bought) in usage {
                used += more;
                quota += bought;
                let state = if done.suspended { State::Suspended } else { State::Active };
                let dec = decide(&pol, &plan(quota), state, used, done);
                for s in &dec.steps {
                    if let Step::Mail { level, .. } = s { mails.push(*level); }
                }
                told = told.min(dec.level);
                if dec.level > told {
                    expected.push(dec.level);
                    told = dec.level;
                }
                done = done.after(&dec);
                let state = if done.suspended { State::Suspended } else { State::Active };
                let again = decide(&pol, &plan(quota), state, used, done);
                prop_assert_eq!(again.steps, vec![]);
                let wanted = match dec.level {
                    Level::Under => None,
                    Level::Warn => Some(at_warn),
                    Level::Over => Some(at_limit),
                };
                prop_assert_eq!(done.throttled, wanted == Some(TrafficAction::Throttle));
                prop_assert_eq!(done.suspended, wanted == Some(TrafficAction::Suspend));
            }
            prop_assert_eq!(mails, expected);
        }
    }

    #[test]
    fn an_unmetered_plan_never_acts_and_lifts_old_measures() {
        let pol = with(TrafficAction::Throttle, TrafficAction::Suspend);
        assert_eq!(
            decide(&pol, &plan(0), State::Active, u64::MAX, Enforcement::NONE).steps,
            vec![]
        );
        let done = Enforcement {
            mailed: Level::Warn,
            throttled: true,
            suspended: false,
        };
        assert_eq!(
            decide(&pol, &plan(0), State::Active, 5, done).steps,
            vec![Step::Unthrottle]
        );
    }
}
