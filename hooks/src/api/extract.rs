//! The extractors the handlers share: a strictly parsed JSON body and an authenticated
//! session, each rejected as an [`ApiError`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::Utc;
use model::CustomerId;

use super::{ApiError, App};
use crate::auth;
use crate::store::Snapshot;

/// A JSON body: size-limited, parsed strictly, errors as JSON without echoing values.
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| body_error(r.status()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A raw body (the Stripe webhook's signed bytes, an action's optional JSON): size-limited,
/// its rejection answered as the JSON error like every other (a 413 is `payload_too_large`).
pub(super) struct RawBody(pub(super) Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| body_error(r.status()))
    }
}

fn body_error(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the request body cannot be read",
        )
    }
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        let message = if e.is_data()
            && (msg.starts_with("missing field") || msg.starts_with("unknown field"))
        {
            // Field names only: safe to show.
            msg
        } else if e.is_data() {
            format!(
                "a field has the wrong type or value (line {}, column {})",
                e.line(),
                e.column()
            )
        } else {
            format!("malformed JSON (line {}, column {})", e.line(), e.column())
        };
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message)
    })
}

/// A request with a valid session token or API key; carries the snapshot it was checked
/// against.
pub struct Authed {
    /// The customer.
    pub customer: CustomerId,
    /// What it was authenticated with: a change is committed only if the head it is committed
    /// on still accepts it ([`crate::store::GitRepo::apply_as`]).
    pub credential: auth::Credential,
    /// The key's scopes; `None` for a session (everything).
    pub scopes: Option<Vec<crate::apikeys::Scope>>,
    /// The head the token was checked against.
    pub snapshot: Arc<Snapshot>,
}

impl Authed {
    /// 403 `insufficient_scope` unless a session, or a key with `scope`.
    pub fn require(&self, scope: crate::apikeys::Scope) -> Result<(), ApiError> {
        match &self.scopes {
            Some(s) if !s.contains(&scope) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!("this API key lacks the `{}` scope", scope.as_str()),
            )),
            _ => Ok(()),
        }
    }

    /// 403 `insufficient_scope` for an API key: keys, two-factor login and sessions are
    /// managed with a session only.
    pub fn require_session(&self) -> Result<(), ApiError> {
        match self.scopes {
            Some(_) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "log in: API keys cannot do this",
            )),
            None => Ok(()),
        }
    }
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Checks the bearer token against a freshly fetched head (never a cached one): a password
/// changed or a "log out everywhere" committed a moment ago refuses it at the next request.
pub(super) async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Authed, ApiError> {
    let token = bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("log in first"))?
        .to_owned();
    if token.starts_with("gvk.") {
        return api_key(app, token).await;
    }
    let key = app.cfg.token_secret.clone();
    let now = Utc::now().timestamp();
    let (verified, snapshot) = app
        .store
        .read(move |v| {
            let mut fingerprint = [0xff; 32];
            let session = auth::verify_token(
                &key,
                &token,
                |c| {
                    let fp = auth::current_fingerprint(&v.snapshot.inv, v.tree, c);
                    if let Some(f) = fp {
                        fingerprint = f;
                    }
                    fp
                },
                now,
            );
            (session.map(|s| (s, fingerprint)), v.snapshot.clone())
        })
        .await?;
    let (session, fingerprint) = verified.map_err(|e| {
        tracing::info!(reason = %e, "token refused");
        ApiError::unauthorized("the session is invalid or has expired; log in again")
    })?;
    Ok(Authed {
        customer: session.customer,
        credential: auth::Credential::Session(fingerprint),
        scopes: None,
        snapshot,
    })
}

/// Checks an API key against its customer's key file on a freshly fetched head.
async fn api_key(app: &App, key: String) -> Result<Authed, ApiError> {
    use crate::apikeys;
    let refused = || {
        tracing::info!("API key refused");
        ApiError::unauthorized("the API key is invalid or revoked")
    };
    let (customer, id, secret) = apikeys::parse_key(&key).ok_or_else(refused)?;
    let c = customer.clone();
    let now = Utc::now().timestamp();
    let (found, snapshot) = app
        .store
        .read(move |v| {
            let found = v
                .snapshot
                .inv
                .customers
                .contains_key(&c)
                .then(|| v.tree.read(&apikeys::apikeys_path(&c)))
                .flatten()
                .and_then(|text| {
                    apikeys::find(&apikeys::parse_file(&text), &c, &id, &secret).cloned()
                })
                .filter(|k| k.live(now));
            (found, v.snapshot.clone())
        })
        .await?;
    let k = found.ok_or_else(refused)?;
    Ok(Authed {
        customer,
        credential: auth::Credential::ApiKey {
            id: k.id,
            hash: k.hash,
        },
        scopes: Some(k.scopes),
        snapshot,
    })
}

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(app, &parts.headers).await
    }
}

/// The client's address: from the header `hooks.trusted_proxy_header` names when it is set
/// (its last entry), otherwise the socket's peer. `None` when it cannot be told (a request
/// handed over in-process, or a configured header missing): per-address limits then skip it.
pub struct ClientAddr(pub Option<std::net::IpAddr>);

impl FromRequestParts<Arc<App>> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let header = app
            .store
            .snapshot()
            .await?
            .inv
            .settings
            .hooks
            .trusted_proxy_header
            .clone();
        let addr = match header {
            Some(h) => parts
                .headers
                .get_all(h.as_str())
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(crate::throttle::addr_from_header),
            None => parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        };
        Ok(ClientAddr(addr))
    }
}
