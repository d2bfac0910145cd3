//! One day's traffic run over the whole fleet: each VPS's period total against its quota, the
//! usage file that records it, and the throttles, suspensions and mails the policy calls for.
//!
//! Pure: the caller reads the totals from the collector's database and the previous usage
//! files from the repo, and writes, commits and sends what [`decide`] returns (`jobs::traffic`).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use model::settings::{TrafficAction, TrafficLevel};
use model::usage::{Entry, UsageFile};
use model::values::{Language, Size, State, Suspension};
use model::{CustomerId, Inventory, Vps, VpsId};

use crate::traffic::{self, Enforcement, Period, Step};

/// A VPS's bytes in its current period, as the collector's database holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Bytes received.
    pub rx: u64,
    /// Bytes sent.
    pub tx: u64,
}

/// A change to one VPS file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The VPS.
    pub vps: VpsId,
    /// What to do.
    pub action: ChangeKind,
}

/// What a [`Change`] does to the VPS file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// `throttled = true`.
    Throttle,
    /// `throttled` removed.
    Unthrottle,
    /// `state = "suspended"`, `suspension = "traffic"`.
    Suspend,
    /// Back to `state = "active"`.
    Unsuspend,
}

impl ChangeKind {
    fn of(s: Step) -> Option<ChangeKind> {
        match s {
            Step::Throttle => Some(ChangeKind::Throttle),
            Step::Unthrottle => Some(ChangeKind::Unthrottle),
            Step::Suspend => Some(ChangeKind::Suspend),
            Step::Unsuspend => Some(ChangeKind::Unsuspend),
            Step::Mail { .. } => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Throttle => "throttle",
            ChangeKind::Unthrottle => "lift the throttle",
            ChangeKind::Suspend => "suspend",
            ChangeKind::Unsuspend => "lift the suspension",
        }
    }
}

/// A mail to a customer about its VPS's traffic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mail {
    /// `traffic.<vps>.<period start>.<level>`: one per VPS, period and level.
    pub id: String,
    /// The VPS.
    pub vps: VpsId,
    /// Its owner.
    pub customer: CustomerId,
    /// The owner's language.
    pub language: Language,
    /// The level reached.
    pub level: TrafficLevel,
    /// What the policy did about it.
    pub action: TrafficAction,
    /// Counted bytes so far.
    pub used: u64,
    /// The quota.
    pub quota: Size,
    /// The day the period starts again.
    pub resets_on: NaiveDate,
}

/// One run's decision.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    /// The day decided for.
    pub today: NaiveDate,
    /// The usage file of `today`'s month, as it should be written.
    pub file: UsageFile,
    /// The VPS file changes.
    pub changes: Vec<Change>,
    /// The mails to queue.
    pub mails: Vec<Mail>,
}

impl Run {
    /// Whether the run changes no VPS and mails nobody (the usage file may still move).
    pub fn is_quiet(&self) -> bool {
        self.changes.is_empty() && self.mails.is_empty()
    }

    /// What the run does, one line each, for people and commit messages.
    pub fn render(&self) -> String {
        let mut s = format!(
            "traffic {}: {} VPS(es) counted, {} change(s), {} mail(s)\n",
            self.today,
            self.file.vps.len(),
            self.changes.len(),
            self.mails.len()
        );
        for c in &self.changes {
            s.push_str(&format!("  {}: {}\n", c.vps, c.action.as_str()));
        }
        for m in &self.mails {
            s.push_str(&format!(
                "  {}: mail {} ({} of {} used, {})\n",
                m.vps,
                m.id,
                human(m.used),
                human(m.quota.bytes()),
                m.action
            ));
        }
        s
    }
}

/// A byte count for people, in binary units with one decimal, rounded down: `812.3 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scale: u64 = 1;
    while unit + 1 < UNITS.len() && bytes / scale >= 1024 {
        unit += 1;
        scale <<= 10;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let whole = bytes / scale;
    let tenth = u128::from(bytes % scale) * 10 / u128::from(scale);
    format!("{whole}.{tenth} {}", UNITS[unit])
}

/// The entry of `vps` for the period starting `start`, from this month's file or the last
/// one's (a period that began last month).
fn previous<'a>(files: &[&'a UsageFile], vps: &VpsId, start: NaiveDate) -> Option<&'a Entry> {
    files
        .iter()
        .filter_map(|f| f.vps.get(vps))
        .find(|e| e.start == start)
}

/// Whether the traffic policy has a say over `v` at all.
fn counted(v: &Vps) -> bool {
    v.state != State::Destroyed
}

/// Decides the run of `today`: for every VPS not destroyed, its period's quota (the plan's
/// `traffic` and the blocks bought for the period), its period's totals from `totals`
/// (a VPS the collector has no figures for counts 0), never below what `this_month` and
/// `last_month` already recorded for the same period (a lost database does not hand out a
/// fresh quota), its level, and the policy's steps given what the VPS file and the usage files
/// say was done.
pub fn decide(
    inv: &Inventory,
    today: NaiveDate,
    now: DateTime<Utc>,
    totals: &BTreeMap<VpsId, Totals>,
    this_month: &UsageFile,
    last_month: &UsageFile,
) -> Result<Run, traffic::TrafficError> {
    let policy = &inv.settings.traffic;
    let mut run = Run {
        today,
        file: UsageFile::default(),
        changes: Vec::new(),
        mails: Vec::new(),
    };
    for v in inv.vps.values().filter(|v| counted(v)) {
        let Period { start, end } = traffic::period(policy.reset, v.created, today)?;
        // The plan's quota and the traffic blocks bought for this period.
        let Some(quota) = inv.traffic_quota(v, start) else {
            continue;
        };
        let before = previous(&[this_month, last_month], &v.id, start);
        let t = totals.get(&v.id).copied().unwrap_or_default();
        let (rx, tx) = match before {
            Some(b) => (t.rx.max(b.rx), t.tx.max(b.tx)),
            None => (t.rx, t.tx),
        };
        let used = traffic::counted(
            policy.count,
            &crate::Counters {
                net_rx_bytes: rx,
                net_tx_bytes: tx,
                ..crate::Counters::default()
            },
        );
        let done = Enforcement {
            mailed: before.map_or(TrafficLevel::Under, |b| b.mailed),
            throttled: v.throttled,
            suspended: v.state == State::Suspended && v.suspension == Some(Suspension::Traffic),
        };
        let dec = traffic::decide(policy, quota, v.state, used, done);
        for s in &dec.steps {
            if let Some(action) = ChangeKind::of(*s) {
                run.changes.push(Change {
                    vps: v.id.clone(),
                    action,
                });
            }
            if let Step::Mail { level, action } = *s {
                let language = inv
                    .customers
                    .get(&v.customer)
                    .map_or(Language::En, |c| c.language);
                run.mails.push(Mail {
                    id: format!("traffic.{}.{start}.{level}", v.id),
                    vps: v.id.clone(),
                    customer: v.customer.clone(),
                    language,
                    level,
                    action,
                    used,
                    quota,
                    resets_on: end,
                });
            }
        }
        let after = done.after(&dec);
        run.file.vps.insert(
            v.id.clone(),
            Entry {
                start,
                end,
                rx,
                tx,
                counted: used,
                quota,
                mailed: after.mailed,
                written: now,
            },
        );
    }
    Ok(run)
}
