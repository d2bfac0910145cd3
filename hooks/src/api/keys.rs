//! Scoped API keys: `POST /api/keys` (made, shown once), `GET /api/keys` (listed without their
//! secrets) and `DELETE /api/keys/{id}` (revoked). Only a logged-in session manages keys.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, App, Authed, JsonBody, answer};
use crate::apikeys::{self, Scope};
use crate::billing::check_line;
use crate::decide::Change;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateReq {
    name: String,
    scopes: Vec<String>,
    /// Days the key works, 1 to [`MAX_KEY_DAYS`]; none: until revoked.
    #[serde(default)]
    expires_in_days: Option<u32>,
}

/// Longest life of an expiring key, in days (ten years).
const MAX_KEY_DAYS: u32 = 3650;

pub(super) async fn create(
    State(app): State<Arc<App>>,
    a: Authed,
    JsonBody(req): JsonBody<CreateReq>,
) -> Result<Response, ApiError> {
    a.require_session()?;
    app.quota(&a, "keys")?;
    let name = check_line(&req.name, 64)
        .map_err(|e| ApiError::unprocessable("bad_key", format!("name {e}")))?;
    let mut scopes = Vec::new();
    for s in &req.scopes {
        let sc = Scope::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|(n, _)| *n).collect();
            ApiError::unprocessable(
                "bad_key",
                format!(
                    "`{}` is not a scope ({})",
                    s.chars().take(40).collect::<String>().escape_debug(),
                    known.join(", ")
                ),
            )
        })?;
        if !scopes.contains(&sc) {
            scopes.push(sc);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::unprocessable(
            "bad_key",
            "give at least one scope",
        ));
    }
    scopes.sort();
    if let Some(d) = req.expires_in_days
        && !(1..=MAX_KEY_DAYS).contains(&d)
    {
        return Err(ApiError::unprocessable(
            "bad_key",
            format!("expires_in_days must be 1 to {MAX_KEY_DAYS}"),
        ));
    }
    let random: [u8; 20] = crate::config::random_bytes().map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    })?;
    let now = Utc::now().timestamp();
    let (text, mut key) = apikeys::new_key(&a.customer, name, scopes, random, now);
    key.expires = req
        .expires_in_days
        .map(|d| now.saturating_add(i64::from(d) * 86_400));
    let shown = key.clone();
    let c = app
        .store
        .apply_as(
            Change::CreateApiKey {
                customer: a.customer.clone(),
                key,
            },
            a.credential,
        )
        .await?;
    let mut r = axum::Json(json!({
        "ok": true,
        "done": "api_key",
        "key": text,
        "id": shown.id,
        "name": shown.name,
        "scopes": shown.scopes,
        "expires": shown.expires,
        "commit": c.commit,
    }))
    .into_response();
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

pub(super) async fn list(State(app): State<Arc<App>>, a: Authed) -> Result<Response, ApiError> {
    a.require_session()?;
    let path = apikeys::apikeys_path(&a.customer);
    let keys = app
        .store
        .read(move |v| {
            v.tree
                .read(&path)
                .map(|t| apikeys::parse_file(&t))
                .unwrap_or_default()
        })
        .await?;
    Ok(axum::Json(json!({"keys": keys})).into_response())
}

pub(super) async fn revoke(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
) -> Result<Response, ApiError> {
    a.require_session()?;
    app.quota(&a, "keys")?;
    if id.len() != 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::not_found());
    }
    let c = app
        .store
        .apply_as(
            Change::DeleteApiKey {
                customer: a.customer,
                id,
            },
            a.credential,
        )
        .await?;
    Ok(answer(c))
}
