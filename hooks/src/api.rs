//! The HTTP layer: one axum `Router` for Lambda and `gitvps serve`. Handlers parse and check
//! input, authenticate, and hand changes to the store; every error is a JSON body.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, SecondsFormat, Utc};
use model::edit::ActionKind;
use model::values::{Keyword, Language, Power, SshPublicKey, State as VpsState};
use model::{CustomerId, Inventory, ProductKind, VpsId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::billing::{MAX_NAME, NewCustomer, OrderCustomer, Purchase, check_line};
use crate::catalog::catalog;
use crate::config::Config;
use crate::decide::{Change, MAX_SSH_KEYS, Refusal, own_vps};
use crate::store::{ApplyError, Committed, GitRepo, Snapshot, StoreError};
use crate::stripe::{
    Checkout, CheckoutError, CheckoutLine, CheckoutRequest, Interpreted, SignatureError,
};
use crate::tickets::{self, TICKETS_DIR, TicketId};

/// Longest password accepted (argon2 of a huge input is work for nothing).
pub const MAX_PASSWORD: usize = 1024;
/// Shortest password a new customer may choose.
pub const MIN_PASSWORD: usize = 8;
/// Argon2 runs at once (each takes 64 MiB): more logins wait their turn.
pub const ARGON2_SLOTS: usize = 4;

/// What the handlers share.
pub struct App {
    cfg: Config,
    store: GitRepo,
    checkout: Option<Checkout>,
    argon2: tokio::sync::Semaphore,
}

impl App {
    /// Starts the store's committer and the Stripe client (when a key is set).
    pub fn new(cfg: Config) -> Result<App, CheckoutError> {
        let checkout = cfg
            .stripe
            .secret_key
            .as_ref()
            .map(|k| Checkout::new(k, cfg.stripe.api_base.as_deref()))
            .transpose()?;
        let store = GitRepo::start(&cfg);
        Ok(App {
            cfg,
            store,
            checkout,
            argon2: tokio::sync::Semaphore::new(ARGON2_SLOTS),
        })
    }

    /// Runs an argon2 computation on the blocking pool, at most [`ARGON2_SLOTS`] at once.
    async fn argon2<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let internal = || {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        };
        let _slot = self.argon2.acquire().await.map_err(|_| internal())?;
        tokio::task::spawn_blocking(f).await.map_err(|_| internal())
    }

    /// The store, for tests and tools that share the app's clone.
    pub fn store(&self) -> &GitRepo {
        &self.store
    }
}

/// The router of all routes (under `/api`), with the body limit; `static_dir` is served at `/`.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.cfg.body_limit;
    let static_dir = app.cfg.static_dir.clone();
    let api = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/vps/{id}/ssh-keys", put(ssh_keys))
        .route("/vps/{id}/renew", post(renew))
        .route("/vps/{id}/{action}", post(vps_action))
        .route("/order", post(order))
        .route("/webhooks/stripe", post(stripe_webhook))
        .route("/tickets", post(open_ticket).get(list_tickets))
        .route("/tickets/{id}", post(reply_ticket))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let r = Router::new().nest("/api", api);
    let r = match static_dir {
        Some(dir) => r.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => r.fallback(not_found),
    };
    r.layer(axum::middleware::from_fn(log_request))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// Logs method, path, status and time; never headers or bodies (tokens, passwords).
async fn log_request(req: Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    tracing::info!(
        %method,
        path = %path.chars().take(200).collect::<String>(),
        status = resp.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// An error answered as `{"error": code, "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// A sentence for people; never holds a secret.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::NotFound => ApiError::not_found(),
            Refusal::Suspended(_) => {
                ApiError::new(StatusCode::CONFLICT, "suspended", r.to_string())
            }
            Refusal::Catalog(e) => ApiError::unprocessable("not_in_catalog", e.to_string()),
            Refusal::TooManyKeys => ApiError::unprocessable("too_many_keys", r.to_string()),
            Refusal::Invalid => ApiError::unprocessable("invalid_change", r.to_string()),
            Refusal::Broken(why) => {
                tracing::error!(%why, "a repo file cannot be edited");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "repo_broken",
                    "the inventory repo needs an admin's attention",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        // Details (already logged by the store, without credentials) stay out of the answer.
        match e {
            StoreError::Busy(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many changes at once; try again",
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "repo_unavailable",
                "the inventory repo is unavailable; try again later",
            ),
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> ApiError {
        match e {
            ApplyError::Refused(r) => r.into(),
            ApplyError::Store(s) => s.into(),
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    )
}

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

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
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

/// A request with a valid session token; carries the snapshot it was checked against.
pub struct Authed {
    /// The customer.
    pub customer: CustomerId,
    /// The head the token was checked against.
    pub snapshot: Arc<Snapshot>,
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Authed, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::unauthorized("log in first"))?;
    let snapshot = app.store.snapshot().await?;
    let session = auth::verify_token(
        &app.cfg.token_secret,
        token,
        |c| {
            snapshot
                .inv
                .customers
                .get(c)
                .map(|c| auth::password_fingerprint(c.password_hash.as_ref()))
        },
        Utc::now().timestamp(),
    )
    .map_err(|e| {
        tracing::info!(reason = %e, "token refused");
        ApiError::unauthorized("the session is invalid or has expired; log in again")
    })?;
    Ok(Authed {
        customer: session.customer,
        snapshot,
    })
}

impl FromRequestParts<Arc<App>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        authenticate(app, &parts.headers).await
    }
}

fn parse_vps(id: &str) -> Result<VpsId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found())
}

fn answer(c: Committed) -> Response {
    let mut v = serde_json::to_value(&c.decision).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("ok".into(), true.into());
        m.insert("changed".into(), c.commit.is_some().into());
        m.insert(
            "commit".into(),
            c.commit.map(Value::from).unwrap_or(Value::Null),
        );
    }
    axum::Json(v).into_response()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---- login -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginReq {
    /// Customer id (`c-0001`) or e-mail.
    customer: String,
    password: String,
}

async fn login(
    State(app): State<Arc<App>>,
    JsonBody(req): JsonBody<LoginReq>,
) -> Result<Response, ApiError> {
    if req.password.len() > MAX_PASSWORD || req.customer.len() > 320 {
        return Err(bad_credentials());
    }
    let asked = req.customer.trim().to_owned();
    let found = app
        .store
        .read(move |v| {
            let inv = &v.snapshot.inv;
            let c = match asked.parse::<CustomerId>() {
                Ok(id) => inv.customers.get(&id),
                Err(_) => inv
                    .customers
                    .values()
                    .find(|c| c.email.as_str().eq_ignore_ascii_case(&asked)),
            };
            c.map(|c| (c.id.clone(), c.password_hash.clone()))
        })
        .await?;
    let (id, hash) = match found {
        Some((id, hash)) => (Some(id), hash),
        None => (None, None),
    };
    let password = req.password;
    let check_hash = hash.clone();
    let ok = app
        .argon2(move || auth::verify_password(check_hash.as_ref(), &password))
        .await?;
    let Some(id) = id.filter(|_| ok) else {
        tracing::info!("login refused");
        return Err(bad_credentials());
    };
    let (token, expires) = auth::issue_token(
        &app.cfg.token_secret,
        &id,
        &auth::password_fingerprint(hash.as_ref()),
        Utc::now().timestamp(),
        i64::try_from(app.cfg.token_ttl.as_secs()).unwrap_or(3600),
    );
    tracing::info!(customer = %id, "logged in");
    let expires_at = DateTime::<Utc>::from_timestamp(expires, 0).map(rfc3339);
    Ok(axum::Json(json!({
        "token": token,
        "customer": id,
        "expires_at": expires_at,
    }))
    .into_response())
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad_credentials",
        "wrong customer or password",
    )
}

// ---- me ----------------------------------------------------------------------------------

/// The panel's view of one customer: its VPSes, offers and observed status.
pub fn me_view(snap: &Snapshot, customer: &CustomerId) -> Option<Value> {
    let inv: &Inventory = &snap.inv;
    let c = inv.customers.get(customer)?;
    let vps: Vec<Value> = inv
        .vps
        .values()
        .filter(|v| &v.customer == customer && v.state != VpsState::Destroyed)
        .map(|v| {
            let product = inv.products.get(&v.product);
            let offers: Vec<Value> = inv
                .renewals_of(&v.product)
                .map(|p| {
                    json!({
                        "product": p.id,
                        "name": p.name,
                        "period_months": p.period_months,
                        "price": p.price,
                    })
                })
                .collect();
            let status = match snap.status.get(&v.id) {
                Some(s) => json!({
                    "known": true,
                    "node": s.node,
                    "power": s.power,
                    "domain_state": s.domain_state,
                    "memory_mib": s.memory_mib,
                    "vcpus": s.vcpus,
                    "actions": s.actions,
                    "pending": {
                        "reboot": v.actions.reboot > s.actions.reboot,
                        "fsck": v.actions.fsck > s.actions.fsck,
                        "reinstall": v.actions.reinstall > s.actions.reinstall,
                    },
                    "last_error": s.last_error,
                    "observed_at": rfc3339(s.observed_at),
                }),
                None => json!({"known": false}),
            };
            json!({
                "id": v.id,
                "hostname": v.hostname,
                "ips": v.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "location": inv.nodes.get(&v.node).map(|n| n.location.as_str()),
                "product": {"id": v.product, "name": product.map(|p| p.name.as_str())},
                "state": v.state,
                "created": v.created.to_string(),
                "expires": v.expires.to_string(),
                "os": v.os,
                "appliance": v.appliance,
                "power": v.power,
                "actions": v.actions,
                "renewals": offers,
                "status": status,
            })
        })
        .collect();
    Some(json!({
        "customer": {
            "id": c.id,
            "name": c.name,
            "company": c.company,
            "email": c.email.as_str(),
            "language": Keyword::as_str(c.language),
            "ssh_keys": c.ssh_keys,
        },
        "currency": inv.currency,
        "vps": vps,
    }))
}

async fn me(State(app): State<Arc<App>>, a: Authed) -> Result<Response, ApiError> {
    let customer = a.customer;
    let view = app
        .store
        .read(move |v| me_view(v.snapshot, &customer))
        .await?;
    view.map(|v| axum::Json(v).into_response())
        .ok_or_else(ApiError::not_found)
}

// ---- VPS actions -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReinstallReq {
    os: String,
    #[serde(default)]
    appliance: Option<String>,
}

async fn vps_action(
    State(app): State<Arc<App>>,
    Path((id, action)): Path<(String, String)>,
    a: Authed,
    body: Bytes,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    let customer = a.customer;
    let change = match action.as_str() {
        "start" => Change::Power {
            customer,
            vps,
            power: Power::Running,
        },
        "stop" => Change::Power {
            customer,
            vps,
            power: Power::Stopped,
        },
        "reboot" => Change::Action {
            customer,
            vps,
            kind: ActionKind::Reboot,
        },
        "fsck" => Change::Action {
            customer,
            vps,
            kind: ActionKind::Fsck,
        },
        "reinstall" => {
            let req: ReinstallReq = parse_json(&body)?;
            // Ids are checked here; membership of the catalog on the head, by `decide`.
            let bad = |what: &str, v: &str| {
                ApiError::unprocessable(
                    "not_in_catalog",
                    format!(
                        "`{}` is not an {what} id",
                        v.chars().take(40).collect::<String>().escape_debug()
                    ),
                )
            };
            if req.os.parse::<model::OsId>().is_err() {
                return Err(bad("OS", &req.os));
            }
            if let Some(ap) = &req.appliance
                && ap.parse::<model::ApplianceId>().is_err()
            {
                return Err(bad("appliance", ap));
            }
            Change::Reinstall {
                customer,
                vps,
                os: req.os,
                appliance: req.appliance,
            }
        }
        _ => return Err(ApiError::not_found()),
    };
    Ok(answer(app.store.apply(change).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SshKeysReq {
    keys: Vec<String>,
}

async fn ssh_keys(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<SshKeysReq>,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    if req.keys.len() > MAX_SSH_KEYS {
        return Err(Refusal::TooManyKeys.into());
    }
    let keys = req
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            k.parse::<SshPublicKey>().map_err(|e| {
                ApiError::unprocessable("invalid_ssh_key", format!("key {}: {e}", i + 1))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(answer(
        app.store
            .apply(Change::SshKeys {
                customer: a.customer,
                vps,
                keys,
            })
            .await?,
    ))
}

// ---- payments ----------------------------------------------------------------------------

fn checkout(app: &App) -> Result<&Checkout, ApiError> {
    app.checkout.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments_not_configured",
            "payments are not configured",
        )
    })
}

fn provider_error(e: CheckoutError) -> ApiError {
    let text = crate::error_chain(&e);
    tracing::error!(error = %text, "Stripe");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "payment_provider_error",
        "the payment provider is unavailable; try again later",
    )
}

fn site_url(inv: &Inventory, path: &str) -> String {
    format!("{}{path}", inv.settings.site.url.trim_end_matches('/'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewReq {
    product: String,
}

async fn renew(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<RenewReq>,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    let stripe = checkout(&app)?;
    let inv = &a.snapshot.inv;
    let v = own_vps(inv, &a.customer, &vps, true)?;
    let product = req
        .product
        .parse::<model::ProductId>()
        .ok()
        .and_then(|p| inv.renewals_of(&v.product).find(|o| o.id == p))
        .ok_or_else(|| {
            ApiError::unprocessable(
                "unknown_product",
                format!("not a renewal offer for {vps}; see `renewals` in /api/me"),
            )
        })?;
    let email = inv
        .customers
        .get(&a.customer)
        .map(|c| c.email.as_str().to_owned());
    let req = CheckoutRequest {
        purchase: Purchase::Renew {
            customer: a.customer.clone(),
            vps: vps.clone(),
            product: product.id.clone(),
        },
        lines: vec![CheckoutLine {
            name: format!("{} ({vps})", product.name),
            amount: product.price,
        }],
        currency: inv.currency.to_string(),
        success_url: site_url(inv, &format!("/panel/?paid={vps}")),
        cancel_url: site_url(inv, "/panel/"),
        email,
    };
    let url = stripe.create(&req).await.map_err(provider_error)?;
    tracing::info!(customer = %a.customer, %vps, product = %product.id, "checkout for a renewal");
    Ok(axum::Json(json!({"url": url})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomerReq {
    name: String,
    #[serde(default)]
    company: Option<String>,
    email: String,
    #[serde(default)]
    language: Option<String>,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderReq {
    product: String,
    location: String,
    os: String,
    #[serde(default)]
    appliance: Option<String>,
    /// For someone without an account (no `Authorization` header).
    #[serde(default)]
    customer: Option<NewCustomerReq>,
}

async fn order(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<OrderReq>,
) -> Result<Response, ApiError> {
    let stripe = checkout(&app)?;
    let existing = match bearer(&headers) {
        Some(_) => Some(authenticate(&app, &headers).await?.customer),
        None => None,
    };
    let new = match (&existing, req.customer) {
        (Some(_), Some(_)) => {
            return Err(ApiError::unprocessable(
                "bad_order",
                "a logged-in customer orders for itself: leave out `customer`",
            ));
        }
        (Some(_), None) => None,
        (None, None) => {
            return Err(ApiError::unprocessable(
                "bad_order",
                "log in, or give `customer` details to open an account",
            ));
        }
        (None, Some(n)) => Some(n),
    };
    let product: model::ProductId = req
        .product
        .parse()
        .map_err(|_| ApiError::unprocessable("unknown_product", "no such product"))?;
    let location = check_line(&req.location, MAX_NAME)
        .map_err(|e| ApiError::unprocessable("unknown_location", format!("location {e}")))?;
    let (os_raw, appliance_raw) = (req.os, req.appliance);
    // Checks on the fresh head: catalog, product, and that placement would succeed now.
    let (prod_name, price, setup_fee, currency, site, os, appliance) = {
        let existing = existing.clone();
        let product = product.clone();
        let location = location.clone();
        app.store
            .read(move |v| -> Result<_, ApiError> {
                let inv = &v.snapshot.inv;
                let cat = catalog(v.tree);
                let os = cat.os(&os_raw).map_err(Refusal::from)?;
                let appliance = appliance_raw
                    .as_deref()
                    .map(|a| cat.appliance(a))
                    .transpose()
                    .map_err(Refusal::from)?;
                let p = inv
                    .products
                    .get(&product)
                    .filter(|p| matches!(p.kind, ProductKind::Plan(_)) && !p.private)
                    .ok_or_else(|| ApiError::unprocessable("unknown_product", "no such product"))?;
                dry_place(inv, existing.as_ref(), &product, &location, &os)?;
                Ok((
                    p.name.clone(),
                    p.price,
                    p.setup_fee,
                    inv.currency.to_string(),
                    site_url(inv, ""),
                    os,
                    appliance,
                ))
            })
            .await??
    };
    let (customer, email) = match (existing, new) {
        (Some(c), _) => {
            let email = app
                .store
                .snapshot()
                .await?
                .inv
                .customers
                .get(&c)
                .map(|x| x.email.as_str().to_owned());
            (OrderCustomer::Existing(c), email)
        }
        (None, Some(n)) => {
            let nc = new_customer(&app, n).await?;
            let email = nc.email.as_str().to_owned();
            (OrderCustomer::New(nc), Some(email))
        }
        (None, None) => return Err(ApiError::not_found()),
    };
    let mut lines = vec![CheckoutLine {
        name: prod_name,
        amount: price,
    }];
    if setup_fee != model::values::Money::ZERO {
        lines.push(CheckoutLine {
            name: "Setup fee".to_owned(),
            amount: setup_fee,
        });
    }
    let req = CheckoutRequest {
        purchase: Purchase::Order {
            customer,
            product: product.clone(),
            location,
            os,
            appliance,
        },
        lines,
        currency,
        success_url: format!("{site}/panel/?ordered=1"),
        cancel_url: format!("{site}/order/"),
        email,
    };
    let url = stripe.create(&req).await.map_err(provider_error)?;
    tracing::info!(%product, "checkout for an order");
    Ok(axum::Json(json!({"url": url})).into_response())
}

/// Whether a VPS of `product` could be placed in `location` now.
fn dry_place(
    inv: &Inventory,
    customer: Option<&CustomerId>,
    product: &model::ProductId,
    location: &str,
    os: &model::OsId,
) -> Result<(), ApiError> {
    use model::placement::{PlacementError, Request as PlaceReq, place};
    let probe: CustomerId;
    let holder;
    let (inv, customer) = match customer {
        Some(c) => (inv, c.clone()),
        None => {
            // Placement needs a customer; a stand-in one is as good for a capacity check.
            let mut copy = inv.clone();
            probe = crate::decide::next_customer_id(inv)
                .ok_or_else(|| ApiError::unprocessable("bad_order", "no free customer id"))?;
            copy.customers.insert(
                probe.clone(),
                model::Customer {
                    id: probe.clone(),
                    name: String::new(),
                    company: None,
                    email: "probe@example.invalid"
                        .parse()
                        .map_err(|_| ApiError::not_found())?,
                    language: Language::En,
                    password_hash: None,
                    ssh_keys: Vec::new(),
                    origin: model::Origin::synthetic("probe"),
                },
            );
            holder = copy;
            (&holder, probe)
        }
    };
    let req = PlaceReq {
        customer,
        product: product.clone(),
        location: location.to_owned(),
        os: Some(os.clone()),
        appliance: None,
        hostname: None,
        id: None,
        today: Utc::now().date_naive(),
    };
    match place(inv, &req) {
        Ok(_) => Ok(()),
        Err(e @ PlacementError::UnknownLocation { .. }) => {
            Err(ApiError::unprocessable("unknown_location", e.to_string()))
        }
        Err(PlacementError::NoCapacity { location, .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_capacity",
            format!("no room for this product in {location} right now"),
        )),
        Err(e) => Err(ApiError::unprocessable("bad_order", e.to_string())),
    }
}

async fn new_customer(app: &App, n: NewCustomerReq) -> Result<NewCustomer, ApiError> {
    let field = |f: &str, e: String| ApiError::unprocessable("bad_customer", format!("{f}: {e}"));
    let name = check_line(&n.name, MAX_NAME).map_err(|e| field("name", e))?;
    let company = n
        .company
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .map(|c| check_line(c, MAX_NAME))
        .transpose()
        .map_err(|e| field("company", e))?;
    let email = n.email.trim().parse().map_err(|e| field("email", e))?;
    let language = model::values::parse_keyword::<Language>(n.language.as_deref().unwrap_or("en"))
        .map_err(|e| field("language", e))?;
    let len = n.password.chars().count();
    if len < MIN_PASSWORD || n.password.len() > MAX_PASSWORD {
        return Err(field(
            "password",
            format!("must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"),
        ));
    }
    let password = n.password;
    let password_hash = app
        .argon2(move || auth::hash_password(&password))
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot hash a password");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        })?;
    Ok(NewCustomer {
        name,
        company,
        email,
        language,
        password_hash,
    })
}

async fn stripe_webhook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
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
    let ev = crate::stripe::interpret(&body).map_err(|e| {
        tracing::warn!(reason = %e, "webhook event unreadable");
        ApiError::new(StatusCode::BAD_REQUEST, "bad_event", "not a Stripe event")
    })?;
    match ev {
        Interpreted::Ignored { event, kind, why } => {
            tracing::info!(event = %event.chars().take(80).collect::<String>(), kind = %kind.chars().take(80).collect::<String>(), %why, "webhook ignored");
            Ok(axum::Json(json!({"received": true, "ignored": why})).into_response())
        }
        Interpreted::Paid(p) => {
            let c = app.store.apply(Change::Payment(p)).await?;
            let mut r = answer(c);
            *r.status_mut() = StatusCode::OK;
            Ok(r)
        }
    }
}

// ---- tickets -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenTicketReq {
    subject: String,
    message: String,
    #[serde(default)]
    vps: Option<String>,
}

async fn open_ticket(
    State(app): State<Arc<App>>,
    a: Authed,
    JsonBody(req): JsonBody<OpenTicketReq>,
) -> Result<Response, ApiError> {
    let subject = tickets::check_subject(&req.subject)
        .map_err(|e| ApiError::unprocessable("bad_ticket", e.to_string()))?;
    let message = tickets::check_message(&req.message)
        .map_err(|e| ApiError::unprocessable("bad_ticket", e.to_string()))?;
    let vps = req.vps.as_deref().map(parse_vps).transpose()?;
    let c = app
        .store
        .apply(Change::OpenTicket {
            customer: a.customer,
            vps,
            subject,
            message,
            at: Utc::now(),
        })
        .await?;
    let mut r = answer(c);
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplyReq {
    message: String,
}

async fn reply_ticket(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<ReplyReq>,
) -> Result<Response, ApiError> {
    let ticket: TicketId = id.parse().map_err(|_| ApiError::not_found())?;
    let message = tickets::check_message(&req.message)
        .map_err(|e| ApiError::unprocessable("bad_ticket", e.to_string()))?;
    let c = app
        .store
        .apply(Change::ReplyTicket {
            customer: a.customer,
            ticket,
            message,
            at: Utc::now(),
        })
        .await?;
    Ok(answer(c))
}

async fn list_tickets(State(app): State<Arc<App>>, a: Authed) -> Result<Response, ApiError> {
    let customer = a.customer;
    let list = app
        .store
        .read(move |v| {
            let mut out: BTreeMap<TicketId, tickets::Ticket> = BTreeMap::new();
            for e in v.tree.entries(TICKETS_DIR).unwrap_or_default() {
                let Some(id) = e
                    .name
                    .strip_suffix(".md")
                    .and_then(|n| n.parse::<TicketId>().ok())
                else {
                    continue;
                };
                let Some(text) = v.tree.read(&id.path()) else {
                    continue;
                };
                match tickets::parse(id.clone(), &text) {
                    Ok(t) if t.customer == customer => {
                        out.insert(id, t);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable ticket"),
                }
            }
            out.into_values().collect::<Vec<_>>()
        })
        .await?;
    Ok(axum::Json(json!({"tickets": list})).into_response())
}
