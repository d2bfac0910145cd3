//! A stand-in for Stripe's API (`POST /v1/checkout/sessions`) that records what the hooks send,
//! and events as Stripe delivers them to the webhook.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::HeaderMap;
use hooks::Secret;
use serde_json::{Value, json};

use super::Fleet;

/// Path, `Authorization` header and form of one request to the stand-in.
pub type Seen1 = (String, String, BTreeMap<String, String>);

#[derive(Clone, Default)]
pub struct Seen(pub Arc<Mutex<Vec<Seen1>>>);

/// A stand-in for `POST /v1/checkout/sessions`: records the form and answers a session.
pub async fn stand_in(fail: bool) -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route(
            "/v1/checkout/sessions",
            axum::routing::post(
                move |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    let form: BTreeMap<String, String> = body
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (decode(k), decode(v)))
                        .collect();
                    let auth = headers
                        .get("authorization")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.0.lock().unwrap().push(("/v1/checkout/sessions".into(), auth, form));
                    if fail {
                        return (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(json!({"error": {"type": "api_error", "message": "down"}})),
                        );
                    }
                    let n = seen.0.lock().unwrap().len();
                    let id = format!("cs_test_standin_{n}");
                    (
                        axum::http::StatusCode::OK,
                        axum::Json(json!({
                            "id": id, "object": "checkout.session",
                            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
                            "created": 1777636800, "custom_fields": [],
                            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
                            "expires_at": 1777723200, "livemode": false, "mode": "payment",
                            "payment_method_types": ["card"], "payment_status": "unpaid",
                            "shipping_options": [], "status": "open",
                            "url": format!("https://checkout.stripe.com/c/pay/{id}")
                        })),
                    )
                },
            ),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/"), seen)
}

pub fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

pub async fn app_with_stripe(fleet: &Fleet, fail: bool) -> (axum::Router, Seen) {
    let (url, seen) = stand_in(fail).await;
    let mut cfg = fleet.config();
    cfg.stripe.secret_key = Some(Secret::new("sk_test_standin_key"));
    cfg.stripe.api_base = Some(url);
    (hooks::app(cfg).unwrap(), seen)
}

pub fn metadata(form: &BTreeMap<String, String>) -> Value {
    let m: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), Value::from(v.clone())))
        })
        .collect();
    Value::Object(m)
}

/// The total a Checkout Session asks for: the sum of its lines' `unit_amount` (× quantity 1),
/// in Stripe's integer units.
pub fn form_total(form: &BTreeMap<String, String>) -> i64 {
    form.iter()
        .filter(|(k, _)| k.starts_with("line_items[") && k.ends_with("[price_data][unit_amount]"))
        .map(|(_, v)| v.parse::<i64>().unwrap())
        .sum()
}

/// A Checkout Session event of `kind` as Stripe sends it, with the session's `currency` and
/// `payment_status`.
#[allow(clippy::too_many_arguments)]
pub fn session_event(
    kind: &str,
    id: &str,
    session: &str,
    created: i64,
    amount: i64,
    currency: &str,
    status: &str,
    metadata: Value,
) -> String {
    let mut ev: Value = serde_json::from_str(&super::checkout_event(
        id, session, created, amount, metadata,
    ))
    .unwrap();
    ev["type"] = kind.into();
    ev["data"]["object"]["currency"] = currency.into();
    ev["data"]["object"]["payment_status"] = status.into();
    ev.to_string()
}

/// Orders an Advanced VPS in `location` with `os` as Wang Fang, someone new who reads Chinese;
/// answers the Checkout Session's form.
pub async fn order_as_new_customer(
    app: &axum::Router,
    seen: &Seen,
    location: &str,
    os: &str,
) -> BTreeMap<String, String> {
    let body = json!({
        "product": "advanced", "location": location, "os": os,
        "customer": {"name": "Wang Fang", "email": "wang@example.cn", "language": "zh", "password": "correct horse"}
    })
    .to_string();
    let (s, v) = super::call(app, "POST", "/api/order", None, Some(&body)).await;
    assert_eq!(s, 200, "{v}");
    seen.0.lock().unwrap().last().unwrap().2.clone()
}
