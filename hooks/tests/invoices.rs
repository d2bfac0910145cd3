//! `GET /api/invoices` and `GET /api/invoices/{number}` against a real bare repo holding invoice
//! files as `gitvps billing run` writes them: a customer reaches its own invoices only (404 for
//! another's), API keys need the `billing` scope, and the document escapes what customers wrote.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use billing::invoice::{Draft, InvoiceKind, Line, invoice_path, issue, render};
use common::*;
use serde_json::json;

/// An invoice for `customer` (its name replaced by `name`, if given), as its file.
fn invoice_file(
    inv: &model::Inventory,
    number: &str,
    customer: &str,
    vps: &str,
    name: Option<&str>,
) -> (String, Vec<u8>) {
    let mut c = inv.customers[customer].clone();
    if let Some(n) = name {
        c.name = n.to_owned();
    }
    let day = |s: &str| s.parse().unwrap();
    let price = "59.00".parse().unwrap();
    let draft = Draft {
        number: number.parse().unwrap(),
        issued: day("2026-12-05"),
        due: day("2026-12-12"),
        lines: vec![Line {
            description: format!("Advanced VPS: {vps}"),
            product: "advanced".parse().unwrap(),
            vps: Some(vps.parse().unwrap()),
            period: Some((day("2026-12-05"), day("2027-01-05"))),
            quantity: 1,
            unit: price,
            amount: price,
        }],
        kind: InvoiceKind::Renewal {
            vps: vps.parse().unwrap(),
            expires: day("2026-12-05"),
            new_expiry: day("2027-01-05"),
        },
    };
    let i = issue(draft, &c, &inv.settings, &inv.currency).unwrap();
    (invoice_path(&i.number), render(&i).into_bytes())
}

/// The fleet with c-0001's INV-…01 (unpaid, a name with markup) and INV-…03 (paid), and
/// c-0002's INV-…02.
fn fleet() -> Fleet {
    let seed = Fleet::new();
    let inv = inventory_at_head(&seed);
    let files = [
        invoice_file(
            &inv,
            "INV-2026-000001",
            "c-0001",
            "xen02",
            Some("Jane <script>alert(1)</script> Doe"),
        ),
        invoice_file(&inv, "INV-2026-000002", "c-0002", "xen03", None),
        invoice_file(&inv, "INV-2026-000003", "c-0001", "xen02", None),
        (
            "billing/payments/evt_paid.toml".to_owned(),
            b"event = \"evt_paid\"\nkind = \"renew\"\ncustomer = \"c-0001\"\nvps = \"xen02\"\n\
              invoice = \"INV-2026-000003\"\namount = \"70.21\"\ncurrency = \"USD\"\n\
              paid_at = \"2026-12-06T10:00:00Z\"\napplied = true\n"
                .to_vec(),
        ),
    ];
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    seed.admin_commit("main", &refs, "billing run");
    seed
}

#[tokio::test]
async fn a_customer_lists_and_reads_its_own_invoices_only() {
    let fleet = fleet();
    let app = hooks::app(fleet.config()).unwrap();
    let head = fleet.head();
    let t = token_for(&fleet, "c-0001");

    let (s, v) = call(&app, "GET", "/api/invoices", Some(&t), None).await;
    assert_eq!(s, 200, "{v}");
    let list = v["invoices"].as_array().unwrap();
    let numbers: Vec<&str> = list.iter().map(|i| i["number"].as_str().unwrap()).collect();
    assert_eq!(numbers, ["INV-2026-000001", "INV-2026-000003"], "{v}");
    assert_eq!(
        list[0],
        json!({"number": "INV-2026-000001", "customer": "c-0001", "kind": "renewal",
               "vps": "xen02", "issued": "2026-12-05", "due": "2026-12-12", "total": "70.21",
               "currency": "USD", "paid": false, "paid_at": null})
    );
    assert_eq!(list[1]["paid"], json!(true));
    assert_eq!(list[1]["paid_at"], json!("2026-12-06T10:00:00Z"));

    // One invoice: the summary and the document, in the customer's language by default.
    let (s, v) = call(&app, "GET", "/api/invoices/INV-2026-000001", Some(&t), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["invoice"]["number"], json!("INV-2026-000001"));
    assert_eq!(v["lang"], json!("en"));
    let html = v["html"].as_str().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(
        html.contains("Unpaid") && html.contains("70.21 USD"),
        "{html}"
    );
    assert!(
        !html.contains("<script"),
        "the customer's name is inert: {html}"
    );
    assert!(html.contains("Jane &lt;script&gt;alert(1)"), "{html}");
    let (s, v) = call(
        &app,
        "GET",
        "/api/invoices/INV-2026-000003?lang=zh",
        Some(&t),
        None,
    )
    .await;
    assert_eq!((s, v["lang"].as_str()), (200, Some("zh")), "{v}");
    assert!(v["html"].as_str().unwrap().contains("已付款"), "{v}");

    // Another customer's invoice, a missing one and a malformed number: the same 404.
    for path in [
        "/api/invoices/INV-2026-000002",
        "/api/invoices/INV-2026-999999",
        "/api/invoices/..%2Fgitvps",
    ] {
        let (s, v) = call(&app, "GET", path, Some(&t), None).await;
        assert_eq!(
            (s, v),
            (404, json!({"error": "not_found", "message": "not found"})),
            "{path}"
        );
    }
    // c-0002 sees its own and not c-0001's.
    let t2 = token_for(&fleet, "c-0002");
    let (_, v) = call(&app, "GET", "/api/invoices", Some(&t2), None).await;
    assert_eq!(v["invoices"].as_array().unwrap().len(), 1, "{v}");
    let (s, _) = call(
        &app,
        "GET",
        "/api/invoices/INV-2026-000001",
        Some(&t2),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // Bad input and no session.
    let (s, v) = call(
        &app,
        "GET",
        "/api/invoices/INV-2026-000001?lang=fr",
        Some(&t),
        None,
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("bad_query")), "{v}");
    let (s, v) = call(&app, "GET", "/api/invoices", None, None).await;
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")), "{v}");
    assert_eq!(fleet.head(), head, "reading invoices commits nothing");
}

#[tokio::test]
async fn api_keys_read_invoices_with_the_billing_scope_only() {
    let fleet = fleet();
    let app = hooks::app(fleet.config()).unwrap();
    let t = token_for(&fleet, "c-0001");
    let mut keys = Vec::new();
    for scopes in [json!(["read", "power"]), json!(["billing"])] {
        let body = json!({"name": "books", "scopes": scopes}).to_string();
        let (s, v) = call(&app, "POST", "/api/keys", Some(&t), Some(&body)).await;
        assert_eq!(s, 201, "{v}");
        keys.push(v["key"].as_str().unwrap().to_owned());
    }
    for path in ["/api/invoices", "/api/invoices/INV-2026-000001"] {
        let (s, v) = call(&app, "GET", path, Some(&keys[0]), None).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (403, Some("insufficient_scope")),
            "{path}: {v}"
        );
        let (s, v) = call(&app, "GET", path, Some(&keys[1]), None).await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (s, _) = call(
        &app,
        "GET",
        "/api/invoices/INV-2026-000002",
        Some(&keys[1]),
        None,
    )
    .await;
    assert_eq!(s, 404, "a key reaches its customer's invoices only");
}
