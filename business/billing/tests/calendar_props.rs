#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The calendar property test: a fleet lived day by day under a generated policy, with
//! payments and days the billing run did not happen, each run applied to the inventory and the
//! ledger as `gitvps billing run` would commit it.
//!
//! Properties: a VPS whose invoice was paid before its expiry + grace is never suspended; no
//! VPS is destroyed before expires + grace_days + terminate_days; every invoice number is used
//! once and the numbers are gapless; each mail id (reminders included) is queued at most once;
//! and deciding again right after a run changes nothing.
//!
//! The seed is fixed, so every run checks the same cases: `CALENDAR_PROPS_CASES=5000
//! CALENDAR_PROPS_SEED=7 cargo test -p gitvps-billing --test calendar_props` explores further.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use billing::invoice::InvoiceKind;
use billing::renewed_expiry;
use billing::{Change, Ledger, Paid, decide, numbering};
use chrono::{DateTime, Days, NaiveDate, Utc};
use model::values::{State, Suspension};
use model::{Inventory, ProductId, VpsId};
use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestCaseError};

/// The example fleet, loaded once.
static FLEET: LazyLock<Inventory> = LazyLock::new(|| {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Inventory::load(&top).unwrap_or_else(|e| panic!("{e}"))
});

const START: &str = "2026-11-20";

/// One VPS of the generated fleet.
#[derive(Debug, Clone)]
struct GenVps {
    /// Expiry, in days from the start (negative: already expired).
    expires: i64,
    /// `advanced` (its 1-month renewal) or `test`.
    advanced: bool,
    /// Whether its customer has an e-mail address.
    email: bool,
    /// Suspended by an operator from the start (with a future expiry: left alone).
    admin_suspended: bool,
}

/// One day of the calendar.
#[derive(Debug, Clone)]
struct Day {
    /// Whether the billing run happens (a skipped day is a run that did not).
    run: bool,
    /// VPSes (by index) whose customer pays their open renewal invoice that day.
    pay: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Case {
    grace_days: u32,
    terminate_days: u32,
    reminder_days: Vec<u32>,
    overdue_reminder_days: Vec<u32>,
    fleet: Vec<GenVps>,
    days: Vec<Day>,
}

fn case() -> impl Strategy<Value = Case> {
    let policy = (
        1u32..12,
        0u32..20,
        prop::collection::btree_set(0u32..40, 0..4),
    );
    policy
        .prop_flat_map(|(grace, terminate, reminders)| {
            let overdue = prop::collection::btree_set(1..grace.max(2), 0..3)
                .prop_map(move |s| s.into_iter().filter(|&d| d < grace).collect::<Vec<_>>());
            let vps = (
                -60i64..60,
                any::<bool>(),
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.1),
            )
                .prop_map(|(expires, advanced, email, admin_suspended)| GenVps {
                    expires,
                    advanced,
                    email,
                    admin_suspended,
                });
            let day = (
                prop::bool::weighted(0.8),
                prop::collection::vec(0usize..6, 0..2),
            )
                .prop_map(|(run, pay)| Day { run, pay });
            (
                Just(grace),
                Just(terminate),
                Just(reminders.into_iter().collect::<Vec<_>>()),
                overdue,
                prop::collection::vec(vps, 1..6),
                prop::collection::vec(day, 20..120),
            )
        })
        .prop_map(
            |(grace_days, terminate_days, reminder_days, overdue_reminder_days, fleet, days)| {
                Case {
                    grace_days,
                    terminate_days,
                    reminder_days,
                    overdue_reminder_days,
                    fleet,
                    days,
                }
            },
        )
}

fn plus(d: NaiveDate, n: i64) -> NaiveDate {
    if n >= 0 {
        d.checked_add_days(Days::new(n.unsigned_abs())).unwrap()
    } else {
        d.checked_sub_days(Days::new(n.unsigned_abs())).unwrap()
    }
}

fn id(i: usize) -> VpsId {
    format!("sim{i}").parse().unwrap()
}

/// The example fleet with the generated VPSes instead of its own, one customer each.
fn build(c: &Case) -> Inventory {
    let mut inv = FLEET.clone();
    let b = &mut inv.settings.billing;
    b.grace_days = c.grace_days;
    b.terminate_days = c.terminate_days;
    b.reminder_days.clone_from(&c.reminder_days);
    b.overdue_reminder_days.clone_from(&c.overdue_reminder_days);
    let template = inv.vps.values().next().unwrap().clone();
    let customer = inv.customers.values().next().unwrap().clone();
    inv.vps.clear();
    inv.customers.clear();
    let start: NaiveDate = START.parse().unwrap();
    for (i, g) in c.fleet.iter().enumerate() {
        let cid: model::CustomerId = format!("c-{i:04}").parse().unwrap();
        let mut cust = customer.clone();
        cust.id = cid.clone();
        if !g.email {
            cust.email = None;
        }
        inv.customers.insert(cid.clone(), cust);
        let mut v = template.clone();
        v.id = id(i);
        v.customer = cid;
        v.product = (if g.advanced { "advanced" } else { "test" })
            .parse()
            .unwrap();
        v.expires = plus(start, g.expires);
        v.created = plus(start, -400);
        v.destroyed = None;
        (v.state, v.suspension, v.suspended) = if g.admin_suspended {
            (State::Suspended, Some(Suspension::Admin), None)
        } else {
            (State::Active, None, None)
        };
        inv.vps.insert(v.id.clone(), v);
    }
    inv
}

/// Lives the calendar of `c`; an error names the day and what broke.
fn live(c: &Case) -> Result<(), String> {
    let mut inv = build(c);
    let mut ledger = Ledger::default();
    let start: NaiveDate = START.parse().unwrap();
    let b = inv.settings.billing.clone();
    let mut mails: BTreeSet<String> = BTreeSet::new();
    let mut numbers = Vec::new();
    // (VPS, expiry) whose invoice was paid, and the day it was paid.
    let mut paid: BTreeMap<(VpsId, NaiveDate), NaiveDate> = BTreeMap::new();
    for (n, day) in c.days.iter().enumerate() {
        let today = plus(start, i64::try_from(n).unwrap());
        for &i in &day.pay {
            pay(
                &mut inv,
                &mut ledger,
                &mut paid,
                &id(i % c.fleet.len()),
                today,
            );
        }
        if !day.run {
            continue;
        }
        let run = decide(today, &inv, &inv.settings, &ledger);
        let at = |what: String| format!("{today}: {what}\n{}", run.render());
        for ch in &run.changes {
            match ch {
                Change::Suspend { vps, expires, .. } => {
                    if let Some(on) = paid.get(&(vps.clone(), *expires)) {
                        return Err(at(format!("{vps} suspended for {expires}, paid on {on}")));
                    }
                    if today < plus(*expires, b.grace_days.into()) {
                        return Err(at(format!("{vps} suspended within its grace")));
                    }
                }
                Change::Terminate { vps, expires, .. } => {
                    let earliest = plus(
                        *expires,
                        i64::from(b.grace_days) + i64::from(b.terminate_days),
                    );
                    if today < earliest {
                        return Err(at(format!("{vps} destroyed before {earliest}")));
                    }
                }
                Change::Unsuspend { vps, expires } if *expires <= today => {
                    return Err(at(format!("{vps} lifted while unpaid")));
                }
                Change::Unsuspend { .. } => {}
            }
        }
        for m in &run.mails {
            if !mails.insert(m.id.clone()) {
                return Err(at(format!("mail {} queued twice", m.id)));
            }
        }
        numbers.extend(run.invoices.iter().map(|i| i.number.clone()));
        run.apply(&mut inv, &mut ledger);
        let again = decide(today, &inv, &inv.settings, &ledger);
        if !again.is_empty() {
            return Err(at(format!(
                "a second run is not empty:\n{}",
                again.render()
            )));
        }
    }
    let unique: BTreeSet<_> = numbers.iter().collect();
    if unique.len() != numbers.len() {
        return Err(format!("an invoice number was used twice: {numbers:?}"));
    }
    let gaps = numbering::check(&b.invoice_number, &numbers);
    if !gaps.is_empty() {
        return Err(format!("numbering: {gaps:?}"));
    }
    Ok(())
}

/// The customer pays the open renewal invoice of `vps`, if there is one: the hooks renew the
/// VPS from the later of its expiry and the payment day, and lift its suspension.
fn pay(
    inv: &mut Inventory,
    ledger: &mut Ledger,
    paid: &mut BTreeMap<(VpsId, NaiveDate), NaiveDate>,
    vps: &VpsId,
    today: NaiveDate,
) {
    let Some(v) = inv.vps.get_mut(vps) else {
        return;
    };
    if v.state == State::Destroyed {
        return;
    }
    let Some(invoice) = ledger.renewal(vps, v.expires).cloned() else {
        return;
    };
    if ledger.is_paid(&invoice.number) {
        return;
    }
    let product: &ProductId = &invoice.lines[0].product;
    let months = FLEET.products[product].period_months;
    ledger.paid.insert(
        invoice.number.clone(),
        Paid {
            event: format!("evt_{}", invoice.number.as_str().replace('-', "_")),
            at: DateTime::<Utc>::from_naive_utc_and_offset(
                today.and_hms_opt(12, 0, 0).unwrap(),
                Utc,
            ),
            amount: invoice.total,
        },
    );
    paid.insert((vps.clone(), v.expires), today);
    assert!(matches!(invoice.kind, InvoiceKind::Renewal { .. }));
    v.expires = renewed_expiry(v.expires, today, months);
    if v.state == State::Suspended {
        (v.state, v.suspension, v.suspended) = (State::Active, None, None);
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The same cases on every run (`CALENDAR_PROPS_SEED`), 64 unless `CALENDAR_PROPS_CASES` says.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: u32::try_from(env_u64("CALENDAR_PROPS_CASES", 64)).unwrap_or(u32::MAX),
        rng_seed: RngSeed::Fixed(env_u64("CALENDAR_PROPS_SEED", 0xb111_da75)),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_calendar_keeps_its_promises(c in case()) {
        live(&c).map_err(TestCaseError::fail)?;
    }
}

/// The generated calendars reach every transition, so the properties are not vacuous.
#[test]
fn the_calendars_reach_every_transition() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::new(config());
    let strategy = case();
    let mut seen = BTreeSet::new();
    for _ in 0..64 {
        let c = strategy.new_tree(&mut runner).unwrap().current();
        let mut inv = build(&c);
        let mut ledger = Ledger::default();
        let start: NaiveDate = START.parse().unwrap();
        let mut paid = BTreeMap::new();
        for (n, day) in c.days.iter().enumerate() {
            let today = plus(start, i64::try_from(n).unwrap());
            for &i in &day.pay {
                pay(
                    &mut inv,
                    &mut ledger,
                    &mut paid,
                    &id(i % c.fleet.len()),
                    today,
                );
            }
            if !paid.is_empty() {
                seen.insert("paid");
            }
            if !day.run {
                continue;
            }
            let run = decide(today, &inv, &inv.settings, &ledger);
            for ch in &run.changes {
                seen.insert(match ch {
                    Change::Suspend { .. } => "suspend",
                    Change::Unsuspend { .. } => "unsuspend",
                    Change::Terminate { .. } => "terminate",
                });
            }
            for m in &run.mails {
                seen.insert(if m.skip.is_some() {
                    "skipped mail"
                } else {
                    "mail"
                });
                if m.overdue {
                    seen.insert("overdue reminder");
                }
            }
            if !run.invoices.is_empty() {
                seen.insert("invoice");
            }
            run.apply(&mut inv, &mut ledger);
        }
    }
    for want in [
        "paid",
        "suspend",
        "terminate",
        "mail",
        "skipped mail",
        "overdue reminder",
        "invoice",
    ] {
        assert!(seen.contains(want), "no case reaches {want}: {seen:?}");
    }
}
