//! Stripe at the edges: webhook signature verification (pure, every rotation secret tried),
//! the reading of checkout events into [`Payment`]s, and Checkout Session creation.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use model::policy::PaymentMethod;
use model::values::{Keyword, Money};
use rust_decimal::Decimal;
use sha2::Sha256;

use crate::billing::{Payment, Purchase, StripeId};
use crate::config::Secret;

/// Why a webhook delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `Stripe-Signature` header.
    #[error("the Stripe-Signature header is missing")]
    Missing,
    /// The header has no `t=` or no `v1=`.
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    /// No webhook secret is configured.
    #[error("no webhook secret is configured")]
    NoSecret,
    /// No `v1` signature matches any secret.
    #[error("no signature matches")]
    BadSignature,
    /// The signed timestamp is too far from now (a replay, or a clock problem).
    #[error("the signature timestamp is {age} s away from now (tolerance {tolerance} s)")]
    Stale {
        /// Seconds between the timestamp and now.
        age: i64,
        /// The tolerance.
        tolerance: i64,
    },
}

/// Checks a webhook delivery as Stripe signs it: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`,
/// where each `v1` is HMAC-SHA256 of `<t>.<payload>` under an endpoint secret. Any `v1` under
/// any of `secrets` (rotation) is accepted, compared in constant time; then the timestamp must
/// be within `tolerance` seconds of `now`. Returns the signed timestamp.
pub fn verify_signature(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[Secret],
    now: i64,
    tolerance: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut t: Option<i64> = None;
    let mut v1: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed);
        };
        match k {
            "t" => t = Some(v.parse().map_err(|_| SignatureError::Malformed)?),
            // A v1 that is not hex cannot match; it is skipped like Stripe's own libraries do.
            "v1" => v1.extend(crate::auth::unhex(v)),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matched = secrets.iter().any(|secret| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose()) else {
            return false;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        v1.iter().any(|sig| mac.clone().verify_slice(sig).is_ok())
    });
    if !matched {
        return Err(SignatureError::BadSignature);
    }
    let age = now.saturating_sub(t).saturating_abs();
    if age > tolerance {
        return Err(SignatureError::Stale { age, tolerance });
    }
    Ok(t)
}

/// Why a verified event could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not a Stripe event.
    #[error("the payload is not a Stripe event: {0}")]
    Shape(String),
}

/// Stripe's zero-decimal currencies: amounts are whole units, never × 100 (Stripe's list, which
/// is not ISO 4217's: `MGA` is zero-decimal here though ISO gives it two decimals, and `ISK`,
/// zero-decimal in ISO, still goes as × 100 for backwards compatibility).
pub const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// The decimals of Stripe's integer amounts in `currency` (an ISO code, any case): 0 for a
/// zero-decimal currency, else 2 (the catalog refuses currencies of three decimals).
pub fn stripe_decimals(currency: &str) -> u32 {
    let upper = currency.to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&upper.as_str()) {
        0
    } else {
        2
    }
}

/// An amount as Stripe takes it in `currency`: `59.00` USD is `5900`, `1200` JPY is `1200`.
/// `None` when the amount has finer decimals than Stripe's unit (`10.50` JPY) or is too large.
pub fn to_stripe_amount(m: Money, currency: &str) -> Option<i64> {
    let scaled = m.amount() * Decimal::from(10i64.pow(stripe_decimals(currency)));
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    i64::try_from(scaled).ok()
}

/// An amount Stripe reports in `currency`, read back the same way.
pub fn from_stripe_amount(n: i64, currency: &str) -> Money {
    let d = Decimal::new(n, stripe_decimals(currency));
    Money::from_decimal(d).unwrap_or(Money::ZERO)
}

/// What a verified event asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interpreted {
    /// A payment to apply.
    Paid(Box<Payment>),
    /// An asynchronous payment (a bank debit, a wallet) failed: nothing is applied; logged.
    Failed {
        /// The event id.
        event: String,
        /// The Checkout Session.
        session: String,
    },
    /// Nothing to do (another type, an unpaid or foreign session); said why, for the log.
    Ignored {
        /// The event id.
        event: String,
        /// The event type.
        kind: String,
        /// Why it is ignored.
        why: String,
    },
}

#[derive(serde::Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: RawData,
}

#[derive(serde::Deserialize)]
struct RawData {
    object: serde_json::Value,
}

#[derive(serde::Deserialize)]
struct RawSession {
    id: String,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    amount_total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    payment_status: Option<String>,
    #[serde(default)]
    payment_intent: Option<serde_json::Value>,
    #[serde(default)]
    customer: Option<serde_json::Value>,
}

/// An id field that Stripe sends as a string, or as the object when expanded.
fn id_of(v: Option<&serde_json::Value>) -> Option<StripeId> {
    let v = v?;
    v.as_str()
        .or_else(|| v.get("id").and_then(|i| i.as_str()))
        .and_then(|s| s.parse().ok())
}

/// Reads a verified event. Only the fields we use are read, so events of newer API versions
/// still land. `checkout.session.completed` when its `payment_status` is `paid`, and
/// `checkout.session.async_payment_succeeded`, are payments; a completed session not paid yet
/// (an asynchronous method: one of the `async_payment_*` events follows) is ignored, and
/// `checkout.session.async_payment_failed` is a failure to log; every other type is ignored.
pub fn interpret(payload: &[u8], received_at: DateTime<Utc>) -> Result<Interpreted, EventError> {
    let ev: RawEvent =
        serde_json::from_slice(payload).map_err(|e| EventError::Shape(e.to_string()))?;
    let ignored = |why: &str| Interpreted::Ignored {
        event: ev.id.clone(),
        kind: ev.kind.clone(),
        why: why.to_owned(),
    };
    let kind = ev.kind.as_str();
    if !matches!(
        kind,
        "checkout.session.completed"
            | "checkout.session.async_payment_succeeded"
            | "checkout.session.async_payment_failed"
    ) {
        return Ok(ignored("not a payment event"));
    }
    let event: StripeId = ev
        .id
        .parse()
        .map_err(|_| EventError::Shape("the event id is not a Stripe id".to_owned()))?;
    let s: RawSession = serde_json::from_value(ev.data.object.clone())
        .map_err(|e| EventError::Shape(format!("data.object: {e}")))?;
    if kind == "checkout.session.async_payment_failed" {
        return Ok(Interpreted::Failed {
            event: event.to_string(),
            session: s.id.chars().take(255).collect(),
        });
    }
    let paid = matches!(
        s.payment_status.as_deref(),
        Some("paid") | Some("no_payment_required")
    );
    if !paid {
        return Ok(ignored(
            "the session is not paid yet (an asynchronous payment: async_payment_succeeded or async_payment_failed follows)",
        ));
    }
    let Some(meta) = &s.metadata else {
        return Ok(ignored("the session has no gitvps metadata"));
    };
    let purchase = match Purchase::from_metadata(meta) {
        Ok(p) => p,
        Err(why) => return Ok(ignored(&format!("not a gitvps session: {why}"))),
    };
    let session: StripeId =
        s.id.parse()
            .map_err(|_| EventError::Shape("the session id is not a Stripe id".to_owned()))?;
    let paid_at = DateTime::<Utc>::from_timestamp(ev.created, 0)
        .ok_or_else(|| EventError::Shape("`created` is out of range".to_owned()))?;
    let currency = s
        .currency
        .as_deref()
        .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(str::to_ascii_uppercase)
        .unwrap_or_default();
    Ok(Interpreted::Paid(Box::new(Payment {
        event,
        paid_at,
        received_at,
        session,
        payment_intent: id_of(s.payment_intent.as_ref()),
        stripe_customer: id_of(s.customer.as_ref()),
        amount: from_stripe_amount(s.amount_total.unwrap_or(0), &currency),
        currency,
        purchase,
    })))
}

/// Why a Checkout Session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// The client could not be configured (bad key or URL).
    #[error("the Stripe client cannot be configured")]
    Config(#[source] stripe::StripeError),
    /// Stripe refused or could not be reached.
    #[error("Stripe did not create the Checkout Session")]
    Api(#[source] stripe::StripeError),
    /// Stripe answered without a URL.
    #[error("Stripe's Checkout Session has no URL")]
    NoUrl,
    /// An amount has finer decimals than Stripe's unit of the currency (`10.50` in a
    /// zero-decimal currency like JPY): the catalog's price cannot be charged.
    #[error("{amount} {currency} cannot be charged: Stripe counts {currency} in whole units")]
    Amount {
        /// The amount.
        amount: Money,
        /// The currency.
        currency: String,
    },
}

/// One line of a Checkout Session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutLine {
    /// What the customer sees.
    pub name: String,
    /// The price.
    pub amount: Money,
}

/// A Checkout Session to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// What it sells (goes into `metadata`).
    pub purchase: Purchase,
    /// The lines (product, setup fee).
    pub lines: Vec<CheckoutLine>,
    /// ISO code of the currency.
    pub currency: String,
    /// The payment methods offered (`billing.payment_methods`); empty: Stripe's dashboard
    /// settings decide.
    pub methods: Vec<PaymentMethod>,
    /// Where Stripe sends the customer after paying.
    pub success_url: String,
    /// Where Stripe sends the customer who gives up.
    pub cancel_url: String,
    /// Pre-filled e-mail.
    pub email: Option<String>,
}

/// The Checkout parameters of `billing.payment_methods`: the allowed types (the parameter the
/// pinned API version names; `payment_method_types` before it), and the options some need:
/// WeChat Pay asks which client pays, here the web page (`wechat_pay.client = web`).
fn payment_methods(
    methods: &[PaymentMethod],
) -> (
    Vec<stripe_checkout::checkout_session::CreateCheckoutSessionAllowedPaymentMethodTypes>,
    Option<stripe_checkout::checkout_session::CreateCheckoutSessionPaymentMethodOptions>,
) {
    use stripe_checkout::checkout_session::{
        CreateCheckoutSessionAllowedPaymentMethodTypes as Allowed,
        CreateCheckoutSessionPaymentMethodOptions as Options,
        CreateCheckoutSessionPaymentMethodOptionsWechatPay as Wechat,
        CreateCheckoutSessionPaymentMethodOptionsWechatPayClient as Client,
    };
    let types = methods
        .iter()
        .map(|m| {
            m.as_str()
                .parse::<Allowed>()
                .unwrap_or_else(|never| match never {})
        })
        .collect();
    let options = methods.contains(&PaymentMethod::WechatPay).then(|| {
        let mut o = Options::new();
        o.wechat_pay = Some(Wechat::new(Client::Web));
        o
    });
    (types, options)
}

/// Creates Checkout Sessions with `async-stripe`.
#[derive(Clone)]
pub struct Checkout {
    client: stripe::Client,
}

impl std::fmt::Debug for Checkout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkout(..)")
    }
}

impl Checkout {
    /// A client with the API key; `api_base` points it elsewhere than Stripe (tests).
    pub fn new(key: &Secret, api_base: Option<&str>) -> Result<Checkout, CheckoutError> {
        let mut b = stripe::ClientBuilder::new(key.expose_str())
            .timeout(std::time::Duration::from_secs(20));
        if let Some(url) = api_base {
            b = b.url(url);
        }
        Ok(Checkout {
            client: b.build().map_err(CheckoutError::Config)?,
        })
    }

    /// Creates the session and returns its URL.
    pub async fn create(&self, req: &CheckoutRequest) -> Result<String, CheckoutError> {
        use stripe_checkout::checkout_session::{
            CreateCheckoutSession, CreateCheckoutSessionLineItems,
            CreateCheckoutSessionLineItemsPriceData, ProductData,
        };
        let currency: stripe_types::Currency = req
            .currency
            .to_ascii_lowercase()
            .parse()
            .unwrap_or(stripe_types::Currency::USD);
        let mut lines: Vec<CreateCheckoutSessionLineItems> = Vec::new();
        for l in &req.lines {
            let amount =
                to_stripe_amount(l.amount, &req.currency).ok_or_else(|| CheckoutError::Amount {
                    amount: l.amount,
                    currency: req.currency.clone(),
                })?;
            let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency.clone());
            price.unit_amount = Some(amount);
            price.product_data = Some(ProductData::new(l.name.clone()));
            let mut item = CreateCheckoutSessionLineItems::new();
            item.price_data = Some(price);
            item.quantity = Some(1);
            lines.push(item);
        }
        let metadata: std::collections::HashMap<String, String> =
            req.purchase.metadata().into_iter().collect();
        let mut create = CreateCheckoutSession::new()
            .mode(stripe_checkout::CheckoutSessionMode::Payment)
            .line_items(lines)
            .metadata(metadata)
            .success_url(req.success_url.clone())
            .cancel_url(req.cancel_url.clone());
        if let Some(e) = &req.email {
            create = create.customer_email(e.clone());
        }
        if !req.methods.is_empty() {
            let (types, options) = payment_methods(&req.methods);
            create = create.allowed_payment_method_types(types);
            if let Some(o) = options {
                create = create.payment_method_options(o);
            }
        }
        let session = create
            .send(&self.client)
            .await
            .map_err(CheckoutError::Api)?;
        session.url.ok_or(CheckoutError::NoUrl)
    }
}

#[cfg(test)]
mod tests {

    fn now() -> DateTime<Utc> {
        "2026-05-01T12:00:00Z".parse().unwrap()
    }
    use super::*;

    fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(payload);
        crate::auth::hex(&mac.finalize().into_bytes())
    }

    const BODY: &[u8] = br#"{"id":"evt_1","type":"ping"}"#;

    fn secrets(list: &[&str]) -> Vec<Secret> {
        list.iter().map(|s| Secret::new(*s)).collect()
    }

    #[test]
    fn a_stripe_signature_verifies_under_any_rotation_secret() {
        let h = format!("t=1000,v1={}", sign("whsec_new", 1000, BODY));
        let s = secrets(&["whsec_old", "whsec_new"]);
        assert_eq!(verify_signature(BODY, Some(&h), &s, 1100, 300), Ok(1000));
        // Stripe sends one v1 per active secret, plus a v0 we ignore.
        let h2 = format!(
            "t=1000,v1={},v1={},v0=abc",
            sign("whsec_other", 1000, BODY),
            sign("whsec_old", 1000, BODY)
        );
        assert_eq!(verify_signature(BODY, Some(&h2), &s, 1000, 300), Ok(1000));
    }

    #[test]
    fn bad_signatures_and_stale_or_future_timestamps_are_refused() {
        let s = secrets(&["whsec_a"]);
        let good = format!("t=1000,v1={}", sign("whsec_a", 1000, BODY));
        assert_eq!(
            verify_signature(b"{\"id\":\"evt_2\"}", Some(&good), &s, 1000, 300),
            Err(SignatureError::BadSignature),
            "payload changed"
        );
        let wrong_t = good.replace("t=1000", "t=1001");
        assert_eq!(
            verify_signature(BODY, Some(&wrong_t), &s, 1000, 300),
            Err(SignatureError::BadSignature),
            "timestamp changed"
        );
        assert_eq!(
            verify_signature(BODY, Some(&good), &s, 1301, 300),
            Err(SignatureError::Stale {
                age: 301,
                tolerance: 300
            })
        );
        assert!(
            verify_signature(BODY, Some(&good), &s, 699, 300).is_err(),
            "from the future"
        );
        assert_eq!(
            verify_signature(BODY, None, &s, 1000, 300),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(BODY, Some(&good), &[], 1000, 300),
            Err(SignatureError::NoSecret)
        );
        for bad in [
            "",
            "garbage",
            "t=x,v1=00",
            "v1=00",
            "t=1000",
            "t=1000,v1=zz",
        ] {
            assert!(
                verify_signature(BODY, Some(bad), &s, 1000, 300).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn checkout_events_become_payments_and_others_are_ignored() {
        let ev = serde_json::json!({
            "id": "evt_9", "object": "event", "type": "checkout.session.completed", "created": 1777636800,
            "data": {"object": {
                "id": "cs_test_9", "object": "checkout.session", "amount_total": 14900, "currency": "usd",
                "payment_status": "paid", "payment_intent": "pi_9", "customer": {"id": "cus_9"},
                "metadata": {"kind": "renew", "customer": "c-0001", "vps": "xen02", "product": "advanced-3m"}
            }}
        });
        let Interpreted::Paid(p) = interpret(ev.to_string().as_bytes(), now()).unwrap() else {
            panic!("not paid")
        };
        assert_eq!(p.event.as_str(), "evt_9");
        assert_eq!(p.amount.to_string(), "149.00");
        assert_eq!(p.currency, "USD");
        assert_eq!(p.payment_intent.unwrap().as_str(), "pi_9");
        assert_eq!(p.stripe_customer.unwrap().as_str(), "cus_9");
        assert_eq!(p.paid_at.to_rfc3339(), "2026-05-01T12:00:00+00:00");

        let mut unpaid = ev.clone();
        unpaid["data"]["object"]["payment_status"] = "unpaid".into();
        assert!(matches!(
            interpret(unpaid.to_string().as_bytes(), now()).unwrap(),
            Interpreted::Ignored { .. }
        ));
        let mut other = ev.clone();
        other["type"] = "invoice.paid".into();
        assert!(matches!(
            interpret(other.to_string().as_bytes(), now()).unwrap(),
            Interpreted::Ignored { .. }
        ));
        let mut foreign = ev.clone();
        foreign["data"]["object"]["metadata"] = serde_json::json!({"order": "42"});
        assert!(matches!(
            interpret(foreign.to_string().as_bytes(), now()).unwrap(),
            Interpreted::Ignored { .. }
        ));
        let mut bad_id = ev;
        bad_id["id"] = "../../x".into();
        assert!(interpret(bad_id.to_string().as_bytes(), now()).is_err());
        assert!(interpret(b"[1,2]", now()).is_err());
    }

    /// Regression: JPY (and Stripe's other zero-decimal currencies) went to Stripe × 100, so a
    /// ¥1,200 invoice asked for ¥120,000.
    #[test]
    fn zero_decimal_currencies_go_to_stripe_in_whole_units() {
        let m = |s: &str| s.parse::<Money>().unwrap();
        assert_eq!(to_stripe_amount(m("1200"), "JPY"), Some(1200));
        assert_eq!(to_stripe_amount(m("1200"), "jpy"), Some(1200));
        assert_eq!(to_stripe_amount(m("59.00"), "USD"), Some(5900));
        assert_eq!(to_stripe_amount(m("0.50"), "EUR"), Some(50));
        // Stripe's list, not ISO's: ISK still goes × 100, MGA in whole units.
        assert_eq!(to_stripe_amount(m("500"), "ISK"), Some(50000));
        assert_eq!(to_stripe_amount(m("500"), "MGA"), Some(500));
        assert_eq!(to_stripe_amount(m("10.50"), "JPY"), None, "no half yen");
        assert_eq!(from_stripe_amount(1200, "jpy"), m("1200"));
        assert_eq!(from_stripe_amount(5900, "usd"), m("59.00"));
        let ev = serde_json::json!({
            "id": "evt_jpy", "type": "checkout.session.completed", "created": 1777636800,
            "data": {"object": {
                "id": "cs_jpy", "amount_total": 1200, "currency": "jpy", "payment_status": "paid",
                "metadata": {"kind": "renew", "customer": "c-0001", "vps": "xen02", "product": "advanced-1m"}
            }}
        });
        let Interpreted::Paid(p) = interpret(ev.to_string().as_bytes(), now()).unwrap() else {
            panic!("not paid")
        };
        assert_eq!((p.amount, p.currency.as_str()), (m("1200"), "JPY"));
    }

    #[test]
    fn asynchronous_payments_apply_on_success_only() {
        let session = serde_json::json!({
            "id": "cs_async", "amount_total": 5900, "currency": "usd", "payment_status": "unpaid",
            "metadata": {"kind": "renew", "customer": "c-0001", "vps": "xen02", "product": "advanced-1m"}
        });
        let event = |kind: &str, status: &str| {
            let mut o = session.clone();
            o["payment_status"] = status.into();
            serde_json::json!({"id": "evt_async", "type": kind, "created": 1777636800, "data": {"object": o}})
                .to_string()
        };
        // Completed, but an asynchronous method has not paid yet: nothing to apply.
        assert!(matches!(
            interpret(
                event("checkout.session.completed", "unpaid").as_bytes(),
                now()
            )
            .unwrap(),
            Interpreted::Ignored { .. }
        ));
        assert!(matches!(
            interpret(
                event("checkout.session.async_payment_succeeded", "paid").as_bytes(),
                now()
            )
            .unwrap(),
            Interpreted::Paid(_)
        ));
        assert_eq!(
            interpret(
                event("checkout.session.async_payment_failed", "unpaid").as_bytes(),
                now()
            )
            .unwrap(),
            Interpreted::Failed {
                event: "evt_async".into(),
                session: "cs_async".into()
            }
        );
    }

    #[test]
    fn payment_methods_are_allowed_types_and_wechat_pays_on_the_web() {
        let (types, options) = payment_methods(&[PaymentMethod::Card, PaymentMethod::Alipay]);
        let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, ["card", "alipay"]);
        assert!(options.is_none());
        let (types, options) = payment_methods(&[PaymentMethod::Card, PaymentMethod::WechatPay]);
        assert_eq!(types.len(), 2);
        let wechat = options.and_then(|o| o.wechat_pay).unwrap();
        assert_eq!(wechat.client.as_str(), "web");
    }
}
