//! Stripe's webhook, `POST /api/webhooks/stripe`: the signature is checked, the event read,
//! and a paid Checkout Session handed to the store as a payment.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::extract::RawBody;
use super::{ApiError, App, answer};
use crate::decide::Change;
use crate::stripe::{Interpreted, SignatureError};

pub(super) async fn stripe_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let sig = headers
        .get("stripe-signature")
        .and_then(|h| h.to_str().ok());
    crate::stripe::verify_signature(
        &body,
        sig,
        &app.cfg.stripe.webhook_secrets,
        Utc::now().timestamp(),
        app.cfg.stripe.tolerance_secs,
    )
    .map_err(|e| {
        tracing::warn!(reason = %e, "webhook refused");
        match e {
            SignatureError::NoSecret => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "webhooks_not_configured",
                "webhooks are not configured",
            ),
            SignatureError::Stale { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "stale_timestamp",
                "the signature timestamp is outside the tolerance",
            ),
            _ => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_signature",
                "the Stripe signature does not verify",
            ),
        }
    })?;
    let ev = crate::stripe::interpret(&body, Utc::now()).map_err(|e| {
        tracing::warn!(reason = %e, "webhook event unreadable");
        ApiError::new(StatusCode::BAD_REQUEST, "bad_event", "not a Stripe event")
    })?;
    match ev {
        Interpreted::Ignored { event, kind, why } => {
            tracing::info!(event = %event.chars().take(80).collect::<String>(), kind = %kind.chars().take(80).collect::<String>(), %why, "webhook ignored");
            Ok(axum::Json(json!({"received": true, "ignored": why})).into_response())
        }
        Interpreted::Failed { event, session } => {
            // Nothing was paid: nothing is applied or recorded; the customer may pay again.
            tracing::warn!(event = %event, session = %session, "asynchronous payment failed");
            Ok(
                axum::Json(json!({"received": true, "ignored": "the payment failed"}))
                    .into_response(),
            )
        }
        Interpreted::Paid(p) => {
            let c = app.store.apply(Change::Payment(p)).await?;
            if let crate::decide::Decision::Payment {
                event,
                result: "refused",
                ..
            } = &c.decision
            {
                // Answered 200 (Stripe would retry a refusal forever); the record says why.
                tracing::warn!(%event, "payment refused: it does not match what is due (see its record in billing/payments/)");
            }
            let mut r = answer(c);
            *r.status_mut() = StatusCode::OK;
            Ok(r)
        }
    }
}
