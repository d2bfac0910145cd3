//! Renewals and orders create Checkout Sessions through `async-stripe`, pointed at a local
//! stand-in that answers like Stripe's API; the session's metadata then drives the webhook.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::stripe::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn renew_creates_a_checkout_session_whose_payment_renews() {
    let fleet = Fleet::new();
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let t = token_for(&fleet, "c-0001");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen02/renew",
        Some(&t),
        Some(r#"{"product":"advanced-3m"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["url"],
        "https://checkout.stripe.com/c/pay/cs_test_standin_1"
    );
    let (path, auth, form) = seen.0.lock().unwrap()[0].clone();
    assert_eq!(path, "/v1/checkout/sessions");
    assert_eq!(auth, "Bearer sk_test_standin_key");
    assert_eq!(form["mode"], "payment");
    assert_eq!(form["line_items[0][price_data][unit_amount]"], "14900");
    assert_eq!(form["line_items[0][price_data][currency]"], "usd");
    assert_eq!(form["customer_email"], "jane@example.net");
    assert!(form["success_url"].starts_with("http://127.0.0.1:8080/panel/"));
    let meta = metadata(&form);
    assert_eq!(
        meta,
        json!({"kind": "renew", "customer": "c-0001", "vps": "xen02", "product": "advanced-3m"})
    );
    assert_eq!(fleet.commit_count(), 1, "a session commits nothing");

    // Stripe then reports the payment with that metadata.
    let now = chrono::Utc::now().timestamp();
    // The session asks for the invoice's total, tax included: Jane lives in DE (19 %).
    assert_eq!(form["line_items[1][price_data][unit_amount]"], "2831");
    assert_eq!(form_total(&form), 17731);
    let ev = checkout_event("evt_test_loop", "cs_test_standin_1", now, 17731, meta);
    let (s, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("renewed")), "{v}");

    // Wrong offers and other people's VPSes.
    for (path, body, want) in [
        ("/api/vps/xen02/renew", r#"{"product":"test-1m"}"#, 422),
        ("/api/vps/xen02/renew", r#"{"product":"nope"}"#, 422),
        ("/api/vps/xen01/renew", r#"{"product":"test-1m"}"#, 404),
        ("/api/vps/xen99/renew", r#"{"product":"advanced-1m"}"#, 404),
    ] {
        let (s, v) = call(&app, "POST", path, Some(&t), Some(body)).await;
        assert_eq!(s, want, "{path} {body}: {v}");
    }
    assert_eq!(
        seen.0.lock().unwrap().len(),
        1,
        "no session for refused requests"
    );
}

#[tokio::test]
async fn a_suspended_vps_can_be_renewed() {
    let fleet = Fleet::with(|files| {
        replace_in(
            files,
            "inventory/vps/xen04.toml",
            "state = \"active\"",
            "state = \"suspended\"",
        )
    });
    let (app, _) = app_with_stripe(&fleet, false).await;
    let t = token_for(&fleet, "c-0003");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen04/renew",
        Some(&t),
        Some(r#"{"product":"advanced-1m"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn orders_are_checked_before_any_session_is_made() {
    let fleet = Fleet::new();
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let t = token_for(&fleet, "c-0001");
    let ok = r#"{"product":"advanced","location":"Tampa, Florida (USA)","os":"debian-12"}"#;
    let (s, v) = call(&app, "POST", "/api/order", Some(&t), Some(ok)).await;
    assert_eq!(s, 200, "{v}");
    let form = seen.0.lock().unwrap()[0].2.clone();
    assert_eq!(
        metadata(&form),
        json!({"kind": "order", "customer": "c-0001", "product": "advanced", "location": "Tampa, Florida (USA)", "os": "debian-12"})
    );
    for (token, body, want, code) in [
        (
            Some(&t),
            r#"{"product":"test","location":"Tampa, Florida (USA)","os":"debian-12"}"#,
            422,
            "unknown_product",
        ),
        (
            Some(&t),
            r#"{"product":"advanced-3m","location":"Tampa, Florida (USA)","os":"debian-12"}"#,
            422,
            "unknown_product",
        ),
        (
            Some(&t),
            r#"{"product":"advanced","location":"Atlantis","os":"debian-12"}"#,
            422,
            "unknown_location",
        ),
        (
            Some(&t),
            r#"{"product":"advanced","location":"Tampa, Florida (USA)","os":"temple-os"}"#,
            422,
            "not_in_catalog",
        ),
        (None, ok, 422, "bad_order"),
        (
            None,
            r#"{"product":"advanced","location":"Tampa, Florida (USA)","os":"debian-12","customer":{"name":"A","email":"a@example.org","password":"short"}}"#,
            422,
            "bad_customer",
        ),
        (
            None,
            r#"{"product":"advanced","location":"Tampa, Florida (USA)","os":"debian-12","customer":{"name":"A","email":"not-mail","password":"long enough"}}"#,
            422,
            "bad_customer",
        ),
    ] {
        let (s, v) = call(
            &app,
            "POST",
            "/api/order",
            token.map(String::as_str),
            Some(body),
        )
        .await;
        assert_eq!((s, v["error"].as_str()), (want, Some(code)), "{body}: {v}");
    }
    assert_eq!(seen.0.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_new_customer_orders_pays_and_logs_in() {
    let fleet = Fleet::new();
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let form = order_as_new_customer(&app, &seen, "Shanghai, China", "ubuntu-2404").await;
    let meta = metadata(&form);
    assert!(
        meta["new_customer_password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$argon2id$v=19$m=65536,t=3,p=4$")
    );
    assert!(
        !form.values().any(|v| v.contains("correct horse")),
        "never the password"
    );
    assert_eq!(form["customer_email"], "wang@example.cn");

    let now = chrono::Utc::now().timestamp();
    let ev = checkout_event("evt_test_neworder", "cs_test_standin_1", now, 5900, meta);
    let (s, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("ordered")), "{v}");
    let customer = fleet.file("inventory/customers/c-0004.toml").unwrap();
    assert!(customer.contains("language = \"zh\""), "{customer}");
    let (s, v) = call(
        &app,
        "POST",
        "/api/login",
        None,
        Some(r#"{"customer":"wang@example.cn","password":"correct horse"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, me) = call(&app, "GET", "/api/me", v["token"].as_str(), None).await;
    assert_eq!(me["vps"][0]["location"], "Shanghai, China", "{me}");
    assert_eq!(me["vps"][0]["os"], "ubuntu-2404");
}

#[tokio::test]
async fn stripe_failures_are_502_without_the_key() {
    let fleet = Fleet::new();
    let (app, _) = app_with_stripe(&fleet, true).await;
    let t = token_for(&fleet, "c-0001");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen02/renew",
        Some(&t),
        Some(r#"{"product":"advanced-3m"}"#),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (502, Some("payment_provider_error")),
        "{v}"
    );
    assert!(!v.to_string().contains("sk_test"));
}
