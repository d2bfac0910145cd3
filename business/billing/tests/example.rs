#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The billing run of the example fleet (the repo top) on 2026-12-05, and the report after it.

use std::path::Path;

use billing::{Ledger, Month, Paid, decide, report};
use chrono::{DateTime, Utc};
use model::Inventory;

fn fleet() -> Inventory {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Inventory::load(&top).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn the_example_fleet_has_a_reminder_an_invoice_and_a_suspension() {
    let inv = fleet();
    let run = decide(
        "2026-12-05".parse().unwrap(),
        &inv,
        &inv.settings,
        &Ledger::default(),
    );
    assert_eq!(
        run.render(),
        "\
billing run 2026-12-05: 3 invoice(s), 1 state change(s), 6 mail(s)
+ invoice INV-2026-000001 c-0003 xen01 58.00 USD (2026-12-05 to 2027-01-05)
+ invoice INV-2026-000002 c-0001 xen02 70.21 USD (2026-12-05 to 2027-01-05)
+ invoice INV-2026-000003 c-0003 xen04 59.00 USD (2026-12-15 to 2027-01-15)
~ suspend xen02 (expired 2011-06-09, grace 7 days)
! mail invoice.inv-2026-000001 c-0003 <ops@acme-hosting.example.com>
! mail overdue.xen01.2026-12-02.3d c-0003 <ops@acme-hosting.example.com>
! mail suspended.xen02.2011-06-09 c-0001 <jane@example.net>
! mail invoice.inv-2026-000002 c-0001 <jane@example.net>
! mail invoice.inv-2026-000003 c-0003 <ops@acme-hosting.example.com>
! mail reminder.xen04.2026-12-15.30d c-0003 <ops@acme-hosting.example.com>
"
    );
    // The fleet is still valid once the run is applied, and a second run has nothing to do.
    let (mut after, mut ledger) = (inv.clone(), Ledger::default());
    run.apply(&mut after, &mut ledger);
    assert!(after.check().is_empty(), "{}", after.check());
    assert!(
        decide(
            "2026-12-05".parse().unwrap(),
            &after,
            &after.settings,
            &ledger
        )
        .is_empty()
    );
}

#[test]
fn the_report_counts_invoices_payments_and_commissions() {
    let mut inv = fleet();
    let today = "2026-12-05".parse().unwrap();
    let run = decide(today, &inv, &inv.settings.clone(), &Ledger::default());
    let mut ledger = Ledger::default();
    run.apply(&mut inv, &mut ledger);
    // c-0003 was brought by c-0002, who earns 5.00 per paid month of Advanced VPS.
    inv.customers
        .get_mut(&"c-0003".parse::<model::CustomerId>().unwrap())
        .unwrap()
        .reseller = Some("c-0002".parse().unwrap());
    inv.products
        .get_mut(&"advanced-1m".parse::<model::ProductId>().unwrap())
        .unwrap()
        .commission = "5.00".parse().unwrap();
    let n = "INV-2026-000003".parse().unwrap();
    let at: DateTime<Utc> = "2026-12-06T09:00:00Z".parse().unwrap();
    ledger.paid.insert(
        n,
        Paid {
            event: "evt_1".into(),
            at,
            amount: "59.00".parse().unwrap(),
        },
    );
    let months = "2026-11".parse::<Month>().unwrap()..="2026-12".parse().unwrap();
    let r = report(&inv, &ledger, months, "2026-12-31".parse().unwrap());
    assert_eq!(
        r.render(),
        "\
billing report 2026-11 to 2026-12 (USD), as of 2026-12-31

month     invoices  invoiced       tax  payments      paid
2026-11         0      0.00      0.00         0      0.00
2026-12         3    187.21     11.21         1     59.00

outstanding: 2
  INV-2026-000001 c-0003 xen01 58.00 USD, due 2026-12-05
  INV-2026-000002 c-0001 xen02 70.21 USD, due 2026-12-05

suspended: 1
  xen02 c-0001 expired 2011-06-09, terminated on 2026-12-19 (due)

by location: invoiced / paid / outstanding
  Seattle, WA (USA): 59.00 / 59.00 / 0.00
  Tampa, Florida (USA): 117.00 / 0.00 / 117.00

by product: invoiced / paid / outstanding
  advanced-1m: 118.00 / 59.00 / 59.00
  test-1m: 58.00 / 0.00 / 58.00

commissions:
  c-0002: 5.00 USD
"
    );
    let j = serde_json::to_value(&r).unwrap();
    assert_eq!(j["months"][1]["month"], "2026-12");
    assert_eq!(j["commissions"][0]["invoice"], "INV-2026-000003");
}
