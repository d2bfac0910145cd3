//! Two-factor login: `POST /api/2fa/setup` (a secret to scan), `POST /api/2fa/enable` (a code
//! proves the app has it; recovery codes are answered once) and `POST /api/2fa/disable`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, App, Authed, JsonBody, answer};
use crate::config::Secret;
use crate::decide::Change;
use crate::twofactor::{self, TwoFactor};

pub(super) fn totp_key(app: &App) -> Result<&Secret, ApiError> {
    app.cfg.totp_key.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "twofactor_not_configured",
            "two-factor login is not configured",
        )
    })
}

fn internal(e: twofactor::SealError) -> ApiError {
    tracing::error!(error = %e, "two-factor");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

fn bad_code() -> ApiError {
    ApiError::unprocessable("bad_code", "the code is wrong or the setup has expired")
}

/// The customer's two-factor file on a fresh head.
pub(super) async fn current(
    app: &App,
    customer: &model::CustomerId,
) -> Result<Option<TwoFactor>, ApiError> {
    let path = twofactor::twofactor_path(customer);
    Ok(app
        .store
        .read(move |v| v.tree.read(&path).and_then(|t| TwoFactor::parse(&t)))
        .await?)
}

pub(super) async fn setup(State(app): State<Arc<App>>, a: Authed) -> Result<Response, ApiError> {
    a.require_session()?;
    let key = totp_key(&app)?;
    app.quota(&a, "2fa")?;
    if current(&app, &a.customer).await?.is_some() {
        return Err(crate::decide::Refusal::TwoFactorEnabled.into());
    }
    let secret: [u8; twofactor::SECRET_LEN] =
        crate::config::random_bytes().map_err(|_| internal(twofactor::SealError::Random))?;
    let blob = twofactor::seal_setup(key, &a.customer, &secret, Utc::now().timestamp())
        .map_err(internal)?;
    let issuer = &a.snapshot.inv.settings.site.name;
    let url = twofactor::otpauth_url(issuer, &a.customer, &secret);
    Ok(axum::Json(json!({
        "secret": twofactor::base32(&secret),
        "qr_svg": twofactor::qr_svg(&url),
        "otpauth_url": url,
        "setup": blob,
        "expires_in": twofactor::SETUP_TTL_SECS,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnableReq {
    setup: String,
    code: String,
}

pub(super) async fn enable(
    State(app): State<Arc<App>>,
    a: Authed,
    JsonBody(req): JsonBody<EnableReq>,
) -> Result<Response, ApiError> {
    a.require_session()?;
    let key = totp_key(&app)?;
    app.quota(&a, "2fa")?;
    let now = Utc::now().timestamp();
    let secret =
        twofactor::open_setup(key, &a.customer, req.setup.trim(), now).map_err(|_| bad_code())?;
    if !twofactor::check_code(&secret, &req.code, now) {
        return Err(bad_code());
    }
    let mut codes = Vec::new();
    for _ in 0..twofactor::RECOVERY_CODES {
        let b: [u8; 8] =
            crate::config::random_bytes().map_err(|_| internal(twofactor::SealError::Random))?;
        codes.push(twofactor::recovery_code(b));
    }
    let file = TwoFactor {
        secret: twofactor::seal(
            key,
            "stored",
            &a.customer,
            &secret,
            twofactor::nonce().map_err(internal)?,
        )
        .map_err(internal)?,
        recovery: codes
            .iter()
            .map(|c| twofactor::recovery_hash(&a.customer, c))
            .collect(),
    };
    let c = app
        .store
        .apply_as(
            Change::EnableTwoFactor {
                customer: a.customer.clone(),
                file,
            },
            a.credential,
        )
        .await?;
    let mut r = answer(c);
    // Shown once: only their hashes are kept.
    let body = json!({"recovery_codes": codes});
    let (parts, old) = r.into_parts();
    let bytes = axum::body::to_bytes(old, 64 * 1024)
        .await
        .map_err(|_| internal(twofactor::SealError::Random))?;
    let mut v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!({}));
    if let (Value::Object(m), Value::Object(extra)) = (&mut v, body) {
        m.extend(extra);
    }
    r = (parts.status, axum::Json(v)).into_response();
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DisableReq {
    /// A current code or an unused recovery code.
    code: String,
}

pub(super) async fn disable(
    State(app): State<Arc<App>>,
    a: Authed,
    JsonBody(req): JsonBody<DisableReq>,
) -> Result<Response, ApiError> {
    a.require_session()?;
    let key = totp_key(&app)?;
    app.quota(&a, "2fa")?;
    let Some(tf) = current(&app, &a.customer).await? else {
        return Err(ApiError::not_found());
    };
    let ok = twofactor::check_factor(key, &a.customer, &tf, &req.code, Utc::now().timestamp())
        .map_err(internal)?;
    match ok {
        None => return Err(bad_code()),
        Some(twofactor::Factor::Code(step)) if !app.totp_steps.spend(&a.customer, step) => {
            return Err(bad_code());
        }
        Some(_) => {}
    }
    let c = app
        .store
        .apply_as(
            Change::DisableTwoFactor {
                customer: a.customer,
            },
            a.credential,
        )
        .await?;
    Ok(answer(c))
}
