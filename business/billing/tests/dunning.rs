#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Each transition of the daily billing decision, on one VPS of the example fleet.

use std::path::Path;
use std::sync::LazyLock;

use billing::{Change, Ledger, MailKind, Run, decide};
use chrono::{Days, NaiveDate};
use model::values::{State, Suspension};
use model::{Inventory, VpsId};

static FLEET: LazyLock<Inventory> = LazyLock::new(|| {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Inventory::load(&top).unwrap_or_else(|e| panic!("{e}"))
});

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn plus(s: &str, n: u64) -> NaiveDate {
    d(s).checked_add_days(Days::new(n)).unwrap()
}

fn xen04() -> VpsId {
    "xen04".parse().unwrap()
}

/// The example fleet with only xen04 (Advanced VPS of c-0003), expiring 2026-12-15, in `state`.
fn one(state: State, suspension: Option<Suspension>, suspended: Option<&str>) -> Inventory {
    let mut inv = FLEET.clone();
    inv.vps.retain(|id, _| *id == xen04());
    let v = inv.vps.get_mut(&xen04()).unwrap();
    v.expires = d("2026-12-15");
    v.state = state;
    v.suspension = suspension;
    v.suspended = suspended.map(d);
    inv
}

fn run(inv: &Inventory, today: NaiveDate, ledger: &Ledger) -> Run {
    decide(today, inv, &inv.settings, ledger)
}

fn mail_ids(r: &Run) -> Vec<&str> {
    r.mails.iter().map(|m| m.id.as_str()).collect()
}

#[test]
fn nothing_before_the_first_reminder() {
    let inv = one(State::Active, None, None);
    assert!(run(&inv, d("2026-11-14"), &Ledger::default()).is_empty());
}

#[test]
fn the_invoice_comes_with_the_first_reminder() {
    let inv = one(State::Active, None, None);
    let r = run(&inv, d("2026-11-15"), &Ledger::default());
    assert_eq!(
        mail_ids(&r),
        ["invoice.inv-2026-000001", "reminder.xen04.2026-12-15.30d"]
    );
    let i = &r.invoices[0];
    assert_eq!(i.lines[0].product.as_str(), "advanced-1m");
    assert_eq!(i.lines[0].period, Some((d("2026-12-15"), d("2027-01-15"))));
    assert_eq!((i.issued, i.due), (d("2026-11-15"), d("2026-12-15")));
    let reminder = &r.mails[1];
    assert_eq!(reminder.kind, MailKind::Reminder);
    assert_eq!((reminder.days, reminder.overdue), (Some(30), false));
    assert_eq!(reminder.invoice, Some(i.number.clone()));
}

#[test]
fn a_missed_run_sends_only_the_most_recent_reminder() {
    let inv = one(State::Active, None, None);
    let mut ledger = Ledger::default();
    // No run from 2026-11-15 to 2026-12-13: the 30 and 7 day reminders were missed.
    let first = run(&inv, d("2026-12-14"), &ledger);
    let reminders: Vec<&str> = first
        .mails
        .iter()
        .filter(|m| m.kind == MailKind::Reminder)
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(reminders, ["reminder.xen04.2026-12-15.1d"]);
    let mut after = inv.clone();
    first.apply(&mut after, &mut ledger);
    // The stale ones never come later either.
    assert!(run(&after, d("2026-12-15"), &ledger).is_empty());
    // After the expiry: the overdue series, again only its most recent.
    let late = run(&after, d("2026-12-19"), &ledger);
    assert_eq!(mail_ids(&late), ["overdue.xen04.2026-12-15.3d"]);
}

#[test]
fn suspended_on_the_last_day_of_grace_not_before() {
    let inv = one(State::Active, None, None);
    let mut ledger = Ledger::default();
    run(&inv, d("2026-12-01"), &ledger).apply(&mut inv.clone(), &mut ledger);
    let before = run(&inv, plus("2026-12-15", 6), &ledger);
    assert!(before.changes.is_empty(), "{}", before.render());
    let r = run(&inv, plus("2026-12-15", 7), &ledger);
    assert_eq!(
        r.changes,
        [Change::Suspend {
            vps: xen04(),
            expires: d("2026-12-15"),
            grace_days: 7,
            on: d("2026-12-22")
        }]
    );
    assert_eq!(mail_ids(&r), ["suspended.xen04.2026-12-15"]);
    assert!(
        r.render()
            .contains("~ suspend xen04 (expired 2026-12-15, grace 7 days)")
    );
}

#[test]
fn a_billing_suspension_is_lifted_once_paid() {
    let mut inv = one(
        State::Suspended,
        Some(Suspension::Billing),
        Some("2026-12-22"),
    );
    inv.vps.get_mut(&xen04()).unwrap().expires = d("2027-01-23");
    let r = run(&inv, d("2026-12-23"), &Ledger::default());
    assert_eq!(
        r.changes,
        [Change::Unsuspend {
            vps: xen04(),
            expires: d("2027-01-23")
        }]
    );
}

#[test]
fn an_operators_suspension_is_left_alone_while_paid() {
    for by in [None, Some(Suspension::Admin)] {
        let inv = one(State::Suspended, by, None);
        for today in ["2026-11-20", "2026-12-14", "2026-12-15"] {
            let r = run(&inv, d(today), &Ledger::default());
            assert!(r.is_empty(), "{by:?} {today}: {}", r.render());
        }
    }
}

#[test]
fn terminated_after_grace_and_termination_days() {
    // Suspended by billing on the first day it could be.
    let inv = one(
        State::Suspended,
        Some(Suspension::Billing),
        Some("2026-12-22"),
    );
    let mut ledger = Ledger::default();
    run(&inv, d("2026-12-22"), &ledger).apply(&mut inv.clone(), &mut ledger);
    assert!(
        run(&inv, plus("2026-12-22", 13), &ledger)
            .changes
            .is_empty()
    );
    let r = run(&inv, plus("2026-12-22", 14), &ledger);
    assert_eq!(
        r.changes,
        [Change::Terminate {
            vps: xen04(),
            expires: d("2026-12-15"),
            suspended: Some(d("2026-12-22")),
            on: d("2027-01-05")
        }]
    );
    assert_eq!(mail_ids(&r), ["terminated.xen04"]);
    let mut after = inv.clone();
    r.apply(&mut after, &mut ledger);
    let v = &after.vps[&xen04()];
    assert_eq!(
        (v.state, v.destroyed, v.suspension, v.suspended),
        (State::Destroyed, Some(d("2027-01-05")), None, None)
    );
    assert!(after.check().is_empty(), "{}", after.check());
    assert!(run(&after, d("2027-01-05"), &ledger).is_empty());
}

#[test]
fn a_late_suspension_still_gets_its_termination_days() {
    let mut inv = one(State::Active, None, None);
    inv.vps.get_mut(&xen04()).unwrap().expires = d("2011-06-09");
    let mut ledger = Ledger::default();
    let today = d("2026-12-05");
    let r = run(&inv, today, &ledger);
    assert!(
        matches!(r.changes[..], [Change::Suspend { .. }]),
        "{}",
        r.render()
    );
    r.apply(&mut inv, &mut ledger);
    assert!(run(&inv, today, &ledger).is_empty());
    assert!(
        run(&inv, plus("2026-12-05", 13), &ledger)
            .changes
            .is_empty()
    );
    let t = run(&inv, plus("2026-12-05", 14), &ledger);
    assert!(
        matches!(t.changes[..], [Change::Terminate { .. }]),
        "{}",
        t.render()
    );
}

#[test]
fn an_operators_suspension_past_expiry_is_terminated() {
    let inv = one(State::Suspended, None, None);
    // 2026-12-15 + 7 + 14.
    assert!(
        run(&inv, d("2027-01-04"), &Ledger::default())
            .changes
            .is_empty()
    );
    let r = run(&inv, d("2027-01-05"), &Ledger::default());
    assert!(matches!(
        r.changes[..],
        [Change::Terminate {
            suspended: None,
            ..
        }]
    ));
}

#[test]
fn no_termination_days_terminates_with_the_suspension() {
    let mut inv = one(State::Active, None, None);
    inv.settings.billing.terminate_days = 0;
    let mut ledger = Ledger::default();
    let r = run(&inv, d("2026-12-22"), &ledger);
    assert!(
        matches!(
            r.changes[..],
            [Change::Suspend { .. }, Change::Terminate { .. }]
        ),
        "{}",
        r.render()
    );
    r.apply(&mut inv, &mut ledger);
    assert!(run(&inv, d("2026-12-22"), &ledger).is_empty());
}

#[test]
fn a_customer_without_email_is_listed_as_skipped() {
    let mut inv = one(State::Active, None, None);
    let c = inv
        .customers
        .get_mut(&"c-0003".parse::<model::CustomerId>().unwrap())
        .unwrap();
    c.email = None;
    let r = run(&inv, d("2026-11-15"), &Ledger::default());
    assert_eq!(r.mails.len(), 2);
    for m in &r.mails {
        assert_eq!(
            m.skip.as_deref(),
            Some("customer c-0003 has no e-mail address")
        );
        assert_eq!(m.to, None);
    }
    assert!(
        r.render()
            .contains("skipped: customer c-0003 has no e-mail address")
    );
    // Recorded like the others: the next run does not list them again.
    let mut ledger = Ledger::default();
    r.apply(&mut inv.clone(), &mut ledger);
    assert!(run(&inv, d("2026-11-16"), &ledger).is_empty());
}

#[test]
fn numbers_follow_the_ledger_and_an_unmailed_invoice_is_mailed() {
    let inv = one(State::Active, None, None);
    let mut ledger = Ledger::default();
    let first = run(&inv, d("2026-11-15"), &ledger);
    first.apply(&mut inv.clone(), &mut ledger);
    // The mail of the invoice was lost (a crash between the commit and the outbox).
    ledger.mails.remove("invoice.inv-2026-000001");
    let again = run(&inv, d("2026-11-16"), &ledger);
    assert_eq!(mail_ids(&again), ["invoice.inv-2026-000001"]);
    assert!(again.invoices.is_empty());
    // Paid, renewed: the next period's invoice takes the next number.
    let mut renewed = inv.clone();
    renewed.vps.get_mut(&xen04()).unwrap().expires = d("2027-01-15");
    let next = run(&renewed, d("2026-12-20"), &ledger);
    assert_eq!(next.invoices[0].number.as_str(), "INV-2026-000002");
}

#[test]
fn a_run_is_json() {
    let inv = one(State::Active, None, None);
    let r = run(&inv, d("2026-12-22"), &Ledger::default());
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["changes"][0]["op"], "suspend");
    assert_eq!(j["invoices"][0]["kind"]["type"], "renewal");
    assert_eq!(j["invoices"][0]["total"], "59.00");
    assert_eq!(j["mails"][0]["kind"], "suspended");
}

#[test]
fn changes_edit_the_vps_file_and_keep_its_comments() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventory/vps/xen02.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut f = model::edit::TomlFile::parse("inventory/vps/xen02.toml", &text).unwrap();
    let vps: VpsId = "xen02".parse().unwrap();
    Change::Suspend {
        vps: vps.clone(),
        expires: d("2011-06-09"),
        grace_days: 7,
        on: d("2026-12-05"),
    }
    .edit(&mut f)
    .unwrap();
    let suspended = f.render();
    assert!(
        suspended
            .contains("state = \"suspended\"                   # active | suspended | destroyed\n"),
        "{suspended}"
    );
    assert!(
        suspended.contains("suspension = \"billing\"\n"),
        "{suspended}"
    );
    assert!(
        suspended.contains("suspended = 2026-12-05\n"),
        "{suspended}"
    );
    assert!(suspended.starts_with("# The VPS of the DTC-Xen screenshots"));
    Change::Terminate {
        vps,
        expires: d("2011-06-09"),
        suspended: Some(d("2026-12-05")),
        on: d("2026-12-19"),
    }
    .edit(&mut f)
    .unwrap();
    let destroyed = f.render();
    assert!(destroyed.contains("state = \"destroyed\""), "{destroyed}");
    assert!(
        destroyed.contains("destroyed = 2026-12-19\n"),
        "{destroyed}"
    );
    assert!(
        !destroyed.contains("suspension") && !destroyed.contains("suspended ="),
        "{destroyed}"
    );
}

/// A VPS the traffic policy suspended is billed as an active one: invoiced and reminded,
/// suspended for billing when unpaid past grace, and never terminated for the traffic
/// suspension itself.
#[test]
fn a_traffic_suspension_is_billed_as_active() {
    let inv = one(
        State::Suspended,
        Some(Suspension::Traffic),
        Some("2026-11-01"),
    );
    let r = run(&inv, d("2026-11-15"), &Ledger::default());
    assert!(
        !r.mails.is_empty(),
        "the invoice and reminder go out: {}",
        r.render()
    );
    let r = run(&inv, d("2026-12-22"), &Ledger::default());
    assert!(
        r.changes
            .iter()
            .any(|c| matches!(c, Change::Suspend { .. })),
        "unpaid past grace: suspended for billing: {}",
        r.render()
    );
    assert!(
        !r.changes
            .iter()
            .any(|c| matches!(c, Change::Terminate { .. })),
        "{}",
        r.render()
    );
}
