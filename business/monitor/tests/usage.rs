#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The daily traffic run over the example fleet: levels, mails once per level and period,
//! throttles lifted by a new period, and totals that never go back within a period.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{NaiveDate, TimeZone, Utc};
use model::settings::{TrafficAction, TrafficLevel};
use model::usage::UsageFile;
use model::values::{State, Suspension};
use model::{Inventory, VpsId};
use monitor::usage::{ChangeKind, Run, Totals, decide};

const MIB: u64 = 1 << 20;

fn fleet() -> Inventory {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Inventory::load(&top).unwrap()
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn id(s: &str) -> VpsId {
    s.parse().unwrap()
}

/// xen01 is on the `test` plan: 1024 MiB a month, counted both ways, reset on the 1st; the
/// example policy mails at 80 % and throttles at 100 %.
fn run(inv: &Inventory, today: &str, used_mib: u64, this: &UsageFile, last: &UsageFile) -> Run {
    let totals = BTreeMap::from([(
        id("xen01"),
        Totals {
            rx: used_mib * MIB / 2,
            tx: used_mib * MIB / 2,
        },
    )]);
    let now = Utc.with_ymd_and_hms(2026, 12, 6, 3, 0, 0).unwrap();
    decide(inv, day(today), now, &totals, this, last).unwrap()
}

#[test]
fn under_the_warning_nothing_happens_but_the_totals_are_written() {
    let inv = fleet();
    let r = run(
        &inv,
        "2026-12-06",
        500,
        &UsageFile::default(),
        &UsageFile::default(),
    );
    assert!(r.is_quiet(), "{}", r.render());
    let e = &r.file.vps[&id("xen01")];
    assert_eq!((e.start, e.end), (day("2026-12-01"), day("2027-01-01")));
    assert_eq!(e.counted, 500 * MIB);
    assert_eq!(e.mailed, TrafficLevel::Under);
    // Every VPS that is not destroyed has its line, at 0 when the collector saw nothing.
    assert_eq!(r.file.vps.len(), inv.vps.len(), "{:?}", r.file.vps.keys());
    assert_eq!(r.file.vps[&id("xen02")].counted, 0);
}

#[test]
fn the_warning_is_mailed_once_then_the_limit_throttles_and_mails_again() {
    let inv = fleet();
    let none = UsageFile::default();
    let warn = run(&inv, "2026-12-06", 900, &none, &none);
    assert!(warn.changes.is_empty(), "{}", warn.render());
    assert_eq!(warn.mails.len(), 1, "{}", warn.render());
    let m = &warn.mails[0];
    assert_eq!(m.id, "traffic.xen01.2026-12-01.warn");
    assert_eq!(
        (m.level, m.action),
        (TrafficLevel::Warn, TrafficAction::Mail)
    );
    assert_eq!(m.resets_on, day("2027-01-01"));
    assert_eq!(warn.file.vps[&id("xen01")].mailed, TrafficLevel::Warn);

    // The next day, still at the warning: no second mail.
    let again = run(&inv, "2026-12-07", 950, &warn.file, &none);
    assert!(again.is_quiet(), "{}", again.render());

    // Past the quota: throttled, and told so.
    let over = run(&inv, "2026-12-08", 1100, &again.file, &none);
    assert_eq!(over.changes.len(), 1, "{}", over.render());
    assert_eq!(over.changes[0].action, ChangeKind::Throttle);
    assert_eq!(over.mails.len(), 1);
    assert_eq!(over.mails[0].id, "traffic.xen01.2026-12-01.over");
    assert_eq!(over.mails[0].action, TrafficAction::Throttle);
    assert_eq!(over.file.vps[&id("xen01")].mailed, TrafficLevel::Over);
}

#[test]
fn a_new_period_lifts_the_throttle_without_a_mail() {
    let mut inv = fleet();
    let none = UsageFile::default();
    let over = run(&inv, "2026-12-20", 1100, &none, &none);
    inv.vps.get_mut(&id("xen01")).unwrap().throttled = true;
    // January: December's file is last month's; the new period starts at 0.
    let jan = run(&inv, "2027-01-01", 0, &none, &over.file);
    assert_eq!(jan.changes.len(), 1, "{}", jan.render());
    assert_eq!(jan.changes[0].action, ChangeKind::Unthrottle);
    assert!(jan.mails.is_empty(), "{}", jan.render());
    let e = &jan.file.vps[&id("xen01")];
    assert_eq!(
        (e.start, e.counted, e.mailed),
        (day("2027-01-01"), 0, TrafficLevel::Under)
    );
}

#[test]
fn a_lost_database_does_not_hand_out_a_fresh_quota() {
    let mut inv = fleet();
    let none = UsageFile::default();
    let over = run(&inv, "2026-12-20", 1100, &none, &none);
    inv.vps.get_mut(&id("xen01")).unwrap().throttled = true;
    // The collector starts over with an empty database the same month.
    let r = run(&inv, "2026-12-21", 3, &over.file, &none);
    assert!(r.is_quiet(), "{}", r.render());
    assert_eq!(r.file.vps[&id("xen01")].counted, 1100 * MIB);
}

#[test]
fn suspension_at_the_limit_and_someone_elses_suspension_left_alone() {
    let mut inv = fleet();
    inv.settings.traffic.at_limit = TrafficAction::Suspend;
    let none = UsageFile::default();
    let r = run(&inv, "2026-12-20", 1100, &none, &none);
    let kinds: Vec<ChangeKind> = r.changes.iter().map(|c| c.action).collect();
    assert_eq!(kinds, [ChangeKind::Suspend], "{}", r.render());
    assert_eq!(r.mails[0].action, TrafficAction::Suspend);

    // Suspended by billing: the policy neither mails nor touches it.
    let v = inv.vps.get_mut(&id("xen01")).unwrap();
    v.state = State::Suspended;
    v.suspension = Some(Suspension::Billing);
    let r = run(&inv, "2026-12-20", 1100, &none, &none);
    assert!(r.is_quiet(), "{}", r.render());

    // Suspended for traffic, then a new period: lifted.
    let v = inv.vps.get_mut(&id("xen01")).unwrap();
    v.suspension = Some(Suspension::Traffic);
    let r = run(&inv, "2027-01-01", 0, &none, &none);
    let kinds: Vec<ChangeKind> = r.changes.iter().map(|c| c.action).collect();
    assert_eq!(kinds, [ChangeKind::Unsuspend], "{}", r.render());
}

#[test]
fn byte_counts_read_well() {
    assert_eq!(monitor::usage::human(0), "0 B");
    assert_eq!(monitor::usage::human(1023), "1023 B");
    assert_eq!(monitor::usage::human(1536), "1.5 KiB");
    assert_eq!(monitor::usage::human(1100 * MIB), "1.0 GiB");
    assert_eq!(monitor::usage::human(u64::MAX), "16383.9 PiB");
}

/// A block of `mib` MiB bought for xen01's December period.
fn buy(inv: &mut Inventory, mib: u64, invoice: &str) {
    inv.vps
        .get_mut(&id("xen01"))
        .unwrap()
        .traffic_blocks
        .push(model::TrafficBlock {
            period: day("2026-12-01"),
            size: model::values::Size::mib(mib),
            invoice: invoice.parse().unwrap(),
        });
}

#[test]
fn a_block_bought_while_throttled_lifts_the_throttle_at_the_next_run() {
    let mut inv = fleet();
    let none = UsageFile::default();
    let over = run(&inv, "2026-12-20", 1100, &none, &none);
    assert_eq!(over.changes[0].action, ChangeKind::Throttle);
    inv.vps.get_mut(&id("xen01")).unwrap().throttled = true;

    // 1024 MiB + 1024 MiB: 1100 MiB is under the warning of the bigger quota.
    buy(&mut inv, 1024, "INV-2026-000200");
    let r = run(&inv, "2026-12-21", 1100, &over.file, &none);
    let kinds: Vec<ChangeKind> = r.changes.iter().map(|c| c.action).collect();
    assert_eq!(kinds, [ChangeKind::Unthrottle], "{}", r.render());
    assert!(r.mails.is_empty(), "{}", r.render());
    let e = &r.file.vps[&id("xen01")];
    assert_eq!(e.quota, model::values::Size::mib(2048));
    assert_eq!(e.mailed, TrafficLevel::Under);

    // A block of another period does not count in this one.
    let mut other = fleet();
    other.vps.get_mut(&id("xen01")).unwrap().throttled = true;
    other
        .vps
        .get_mut(&id("xen01"))
        .unwrap()
        .traffic_blocks
        .push(model::TrafficBlock {
            period: day("2026-11-01"),
            size: model::values::Size::mib(1024),
            invoice: "INV-2026-000199".parse().unwrap(),
        });
    let r = run(&other, "2026-12-21", 1100, &over.file, &none);
    assert!(r.is_quiet(), "{}", r.render());
    assert_eq!(
        r.file.vps[&id("xen01")].quota,
        model::values::Size::mib(1024)
    );
}

#[test]
fn the_level_mails_come_again_when_the_bigger_quota_is_passed() {
    let mut inv = fleet();
    let none = UsageFile::default();
    let over = run(&inv, "2026-12-20", 1100, &none, &none);
    assert_eq!(over.mails.len(), 1);
    // The webhook lifts the throttle in the commit that records the block.
    buy(&mut inv, 512, "INV-2026-000200");
    // 1536 MiB now: 1300 MiB is past 80 %, already told about more: no mail, no throttle.
    let warn = run(&inv, "2026-12-21", 1300, &over.file, &none);
    assert!(warn.is_quiet(), "{}", warn.render());
    assert_eq!(warn.file.vps[&id("xen01")].mailed, TrafficLevel::Warn);
    // Past the bigger quota: throttled and mailed again, once.
    let again = run(&inv, "2026-12-22", 1600, &warn.file, &none);
    let kinds: Vec<ChangeKind> = again.changes.iter().map(|c| c.action).collect();
    assert_eq!(kinds, [ChangeKind::Throttle], "{}", again.render());
    assert_eq!(again.mails.len(), 1, "{}", again.render());
    assert_eq!(again.mails[0].id, "traffic.xen01.2026-12-01.over");
    assert_eq!(again.mails[0].quota, model::values::Size::mib(1536));
    inv.vps.get_mut(&id("xen01")).unwrap().throttled = true;
    let steady = run(&inv, "2026-12-23", 1700, &again.file, &none);
    assert!(steady.is_quiet(), "{}", steady.render());
}

#[test]
fn blocks_do_not_meter_an_unmetered_plan() {
    let mut inv = fleet();
    let v = inv.vps.get_mut(&id("xen01")).unwrap();
    let plan = v.product.clone();
    if let model::ProductKind::Plan(r) = &mut inv.products.get_mut(&plan).unwrap().kind {
        r.traffic = model::values::Size(0);
    }
    buy(&mut inv, 1024, "INV-2026-000200");
    let r = run(
        &inv,
        "2026-12-20",
        5000,
        &UsageFile::default(),
        &UsageFile::default(),
    );
    assert!(r.is_quiet(), "{}", r.render());
    assert_eq!(r.file.vps[&id("xen01")].quota, model::values::Size(0));
}
