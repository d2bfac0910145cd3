#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The billing files: invoices rendered and parsed back byte for byte, their errors located by
//! line, payment records as the hooks write them, and the ledger they make.

use billing::invoice::{self, Draft, Invoice, InvoiceKind, Line, parse, render};
use billing::{Ledger, parse_payment};
use chrono::NaiveDate;
use model::values::Currency;
use model::{Customer, Origin, Settings};

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn customer(country: Option<&str>) -> Customer {
    Customer {
        id: "c-0001".parse().unwrap(),
        name: "Jane \"JD\" Doe".into(),
        company: Some("Doe Consulting".into()),
        email: Some("jane@example.net".parse().unwrap()),
        country: country.map(|c| c.parse().unwrap()),
        address: vec!["Hauptstraße 1".into(), "10115 Berlin".into()],
        tax_id: Some("DE123456789".into()),
        reseller: None,
        language: model::values::Language::En,
        password_hash: None,
        ssh_keys: Vec::new(),
        origin: Origin::synthetic("inventory/customers/c-0001.toml"),
    }
}

fn settings() -> Settings {
    let mut s = Settings::default();
    s.seller.name = "GPLHost LLC".into();
    s.seller.address = vec!["1 Example Plaza".into(), "Tampa, FL 33602".into()];
    s.seller.country = Some("US".parse().unwrap());
    s.billing
        .tax
        .insert("DE".parse().unwrap(), "19".parse().unwrap());
    s
}

fn sample(number: &str, country: Option<&str>, currency: &str, price: &str) -> Invoice {
    let draft = Draft {
        number: number.parse().unwrap(),
        issued: d("2026-12-05"),
        due: d("2026-12-15"),
        lines: vec![Line {
            description: "Advanced VPS: xen02 (xen02.example.net), 2026-12-15 to 2027-01-15".into(),
            product: "advanced-1m".parse().unwrap(),
            vps: Some("xen02".parse().unwrap()),
            period: Some((d("2026-12-15"), d("2027-01-15"))),
            quantity: 2,
            unit: price.parse().unwrap(),
            amount: price.parse::<model::values::Money>().unwrap().times(2),
        }],
        kind: InvoiceKind::Renewal {
            vps: "xen02".parse().unwrap(),
            expires: d("2026-12-15"),
            new_expiry: d("2027-01-15"),
        },
    };
    let currency: Currency = currency.parse().unwrap();
    invoice::issue(draft, &customer(country), &settings(), &currency).unwrap()
}

#[test]
fn an_invoice_file_reads_back_to_the_same_invoice_and_bytes() {
    for inv in [
        sample("INV-2026-000124", Some("DE"), "USD", "59.00"),
        sample("INV-2026-000125", None, "USD", "59.00"),
        sample("INV-2026-000126", Some("DE"), "JPY", "5900"),
    ] {
        let path = invoice::invoice_path(&inv.number);
        let text = render(&inv);
        assert_eq!(render(&inv), text, "rendering is stable");
        let back = parse(&path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, inv);
        assert_eq!(render(&back), text);
    }
}

#[test]
fn the_invoice_file_says_what_it_bills() {
    let inv = sample("INV-2026-000124", Some("DE"), "USD", "59.00");
    assert_eq!(
        (inv.subtotal.to_string(), inv.total.to_string()),
        ("118.00".into(), "140.42".into())
    );
    let text = render(&inv);
    for want in [
        "number = \"INV-2026-000124\"\n",
        "issued = 2026-12-05\n",
        "total = \"140.42\"\n",
        "[kind]\ntype = \"renewal\"\nvps = \"xen02\"\nexpires = 2026-12-15\nnew_expiry = 2027-01-15\n",
        "name = 'Jane \"JD\" Doe'\n",
        "address = [\"Hauptstraße 1\", \"10115 Berlin\"]\n",
        "[tax]\ncountry = \"DE\"\nrate = \"19\"\namount = \"22.42\"\ninclusive = false\n",
        "[[line]]\n",
        "from = 2026-12-15\nto = 2027-01-15\nquantity = 2\nunit = \"59.00\"\namount = \"118.00\"\n",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    let yen = render(&sample("INV-2026-000126", None, "JPY", "5900"));
    assert!(yen.contains("total = \"11800\"\n"), "{yen}");
}

/// The errors of an edited invoice file, one per line: `file:line:col: field: message`.
fn errors(path: &str, text: &str) -> Vec<String> {
    match parse(path, text) {
        Ok(_) => panic!("parsed:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_broken_invoice_file_is_located_by_line() {
    let inv = sample("INV-2026-000124", Some("DE"), "USD", "59.00");
    let path = "billing/invoices/INV-2026-000124.toml";
    let text = render(&inv);
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;

    let edited = text.replace("total = \"140.42\"", "total = \"99.00\"");
    assert_eq!(
        errors(path, &edited),
        [format!(
            "{path}:{}:9: total: does not match the lines and the tax",
            line_of("total")
        )]
    );
    let edited = text.replace("issued = 2026-12-05", "issued = \"2026-12-05\"\ncolour = 1");
    assert_eq!(
        errors(path, &edited),
        [
            format!(
                "{path}:{}:10: issued: expected a date like 2026-12-05 (without quotes), found a string",
                line_of("issued")
            ),
            format!(
                "{path}:{}:1: colour: unknown field (expected one of: number, customer, issued, due, currency, subtotal, total, kind, seller, buyer, tax, line)",
                line_of("issued") + 1
            ),
        ]
    );
    let edited = text.replace("unit = \"59.00\"", "unit = 59.0");
    assert_eq!(
        errors(path, &edited),
        [format!(
            "{path}:{}:8: line[0].unit: expected a string, found a float",
            line_of("unit")
        )]
    );
    assert_eq!(
        errors("billing/invoices/INV-2026-000999.toml", &text),
        [format!(
            "billing/invoices/INV-2026-000999.toml:{}:10: number: INV-2026-000124 is not the file's name",
            line_of("number")
        )]
    );
    let edited = text.replace("[kind]\ntype = \"renewal\"", "[kind]\ntype = \"refund\"");
    assert_eq!(
        errors(path, &edited),
        [format!(
            "{path}:{}:8: kind.type: `refund` is not an invoice kind: use \"renewal\", \"order\", \"traffic_block\"",
            line_of("type")
        )]
    );
    assert_eq!(
        errors(path, "number = \n"),
        [format!(
            "{path}:1:10: invalid TOML: string values must be quoted, expected literal string"
        )]
    );
}

/// A payment record as `hooks::billing::render_record` writes it.
const RECORD: &str = r#"# Stripe payment evt_1, recorded by gitvps-hooks. Do not edit: its presence makes a
# second delivery of the event a no-op.
event = "evt_1"
kind = "renew"
customer = "c-0001"
vps = "xen02"
product = "advanced-1m"
invoice = "INV-2026-000124"
amount = "140.42"
currency = "USD"
paid_at = "2026-12-10T12:00:00Z"
checkout_session = "cs_test_1"
applied = true
expires_before = "2026-12-15"
expires_after = "2027-01-15"
"#;

#[test]
fn payment_records_settle_the_invoice_they_name() {
    let inv = sample("INV-2026-000124", Some("DE"), "USD", "59.00");
    let rec = parse_payment("billing/payments/evt_1.toml", RECORD).unwrap();
    assert_eq!(rec.invoice, Some(inv.number.clone()));
    assert_eq!(rec.expires_before, Some(d("2026-12-15")));
    let invoices = || vec![(invoice::invoice_path(&inv.number), render(&inv))];

    let ledger = Ledger::load(
        invoices(),
        [("billing/payments/evt_1.toml".to_owned(), RECORD.to_owned())],
        ["invoice.inv-2026-000124".to_owned()],
    )
    .unwrap();
    assert!(ledger.is_paid(&inv.number));
    assert_eq!(ledger.paid[&inv.number].event, "evt_1");
    assert!(ledger.mails.contains("invoice.inv-2026-000124"));

    // A renewal through the panel names no invoice: the VPS's invoice for that expiry is paid.
    let unnamed = RECORD.replace("invoice = \"INV-2026-000124\"\n", "");
    let ledger = Ledger::load(
        invoices(),
        [("billing/payments/evt_1.toml".to_owned(), unnamed)],
        [],
    )
    .unwrap();
    assert!(ledger.is_paid(&inv.number));

    // An order pays no invoice; a record naming an invoice never issued is an error.
    let order = RECORD
        .replace("kind = \"renew\"", "kind = \"order\"")
        .replace("invoice = \"INV-2026-000124\"\n", "");
    let ledger = Ledger::load(
        invoices(),
        [("billing/payments/evt_1.toml".to_owned(), order)],
        [],
    )
    .unwrap();
    assert!(!ledger.is_paid(&inv.number));
    let stray = RECORD.replace("INV-2026-000124", "INV-2026-000999");
    let e = Ledger::load(
        invoices(),
        [("billing/payments/evt_1.toml".to_owned(), stray)],
        [],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "billing/payments/evt_1.toml:8:11: invoice: INV-2026-000999 is not an issued invoice (no billing/invoices/INV-2026-000999.toml)\n"
    );
    let bad = RECORD.replace(
        "paid_at = \"2026-12-10T12:00:00Z\"",
        "paid_at = \"yesterday\"",
    );
    let e = parse_payment("billing/payments/evt_1.toml", &bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        "billing/payments/evt_1.toml:11:11: paid_at: `yesterday` is not an RFC 3339 time like \"2026-12-05T12:00:00Z\"\n"
    );
}
