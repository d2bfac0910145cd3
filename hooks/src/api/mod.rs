//! The HTTP layer: one axum `Router` for Lambda and `gitvps serve`. Handlers, one module per
//! resource, parse and check input, authenticate, and hand changes to the store.

mod account;
mod boot;
mod checkout;
mod error;
mod extract;
mod graph;
pub mod headers;
mod invoices;
mod keys;
mod openapi;
mod ptr;
mod rescue;
mod session;
mod tickets;
mod twofactor;
mod vps;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, SecondsFormat, Utc};
use model::VpsId;
use serde_json::{Value, json};

use crate::config::Config;
use crate::store::{Committed, GitRepo};
use crate::stripe::{Checkout, CheckoutError};
use crate::throttle::{HashGate, Quotas, Throttle};
use model::settings::HooksSettings;

pub use error::ApiError;
pub use extract::{Authed, ClientAddr, JsonBody};
pub use graph::{GRAPHS_PER_DAY, GRAPHS_PER_MINUTE};
pub use session::me_view;

/// Longest password accepted (argon2 of a huge input is work for nothing).
pub const MAX_PASSWORD: usize = 1024;
/// Shortest password a new customer may choose.
pub const MIN_PASSWORD: usize = 8;

/// The rule of a new password (an order's, a change's, a reset's): [`MIN_PASSWORD`] characters
/// to [`MAX_PASSWORD`] bytes.
fn password_rule(p: &str) -> Result<(), String> {
    if p.chars().count() < MIN_PASSWORD || p.len() > MAX_PASSWORD {
        return Err(format!(
            "must be {MIN_PASSWORD} to {MAX_PASSWORD} characters"
        ));
    }
    Ok(())
}
/// Most argon2 runs at once (each takes 64 MiB): more logins wait their turn, within a bound.
pub const ARGON2_SLOTS: usize = 4;

/// Argon2 runs at once here: one per core (more only slow each other down), 2 to
/// [`ARGON2_SLOTS`]; one of them is reserved for logins with a clean record.
fn argon2_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(2, usize::from)
        .clamp(2, ARGON2_SLOTS)
}

/// What the handlers share.
pub struct App {
    cfg: Config,
    store: GitRepo,
    checkout: Option<Checkout>,
    argon2: HashGate,
    throttle: Throttle,
    quotas: Quotas,
    totp_steps: crate::twofactor::UsedSteps,
    resolver: Arc<dyn crate::resolve::Resolver>,
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
            argon2: HashGate::new(argon2_slots()),
            throttle: Throttle::default(),
            quotas: Quotas::default(),
            totp_steps: crate::twofactor::UsedSteps::default(),
            resolver: Arc::new(crate::resolve::SystemResolver),
        })
    }

    /// The app with another resolver for `dns.forward_confirm` (tests: a fake one, or one that
    /// asks a test's DNS server).
    #[must_use]
    pub fn with_resolver(mut self, resolver: Arc<dyn crate::resolve::Resolver>) -> App {
        self.resolver = resolver;
        self
    }

    /// Runs an argon2 computation on the blocking pool, at most [`argon2_slots`] at once (one
    /// slot reserved for `clean` logins); a request that would wait longer than
    /// `hooks.hash_queue_max_wait_ms` is answered 429.
    async fn argon2<R: Send + 'static>(
        &self,
        settings: &HooksSettings,
        clean: bool,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        let max_wait = Duration::from_millis(u64::from(settings.hash_queue_max_wait_ms));
        match self.argon2.run(max_wait, clean, f).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )),
            Err(t) => {
                tracing::warn!("password hashing queue full: answered 429");
                Err(t.into())
            }
        }
    }

    /// Hashes a new password (an order's, a reset's) in the queue, outside the reserved lane.
    async fn hash_new_password(
        &self,
        settings: &HooksSettings,
        password: String,
    ) -> Result<model::values::PasswordHash, ApiError> {
        self.argon2(settings, false, move || {
            crate::auth::hash_password(&password)
        })
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "cannot hash a password");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        })
    }

    /// 429 `busy` at once when a request outside the reserved lane would wait for a hashing
    /// slot longer than the bound: no fetch, no parse, no work for a flood.
    fn argon2_has_room(&self, settings: &HooksSettings) -> Result<(), ApiError> {
        let max_wait = Duration::from_millis(u64::from(settings.hash_queue_max_wait_ms));
        if self.argon2.expected_wait() > max_wait {
            return Err(crate::throttle::Throttled::Busy(max_wait.as_secs().max(1)).into());
        }
        Ok(())
    }

    /// Takes one request of `route` from the quota of the authenticated customer
    /// (`hooks.per_minute` and `hooks.per_day`, or `hooks.tickets_per_day` for new tickets):
    /// 429 `rate_limited` with `Retry-After` beyond.
    fn quota(&self, a: &Authed, route: &'static str) -> Result<(), ApiError> {
        let h = &a.snapshot.inv.settings.hooks;
        let per_day = if route == "ticket" {
            h.tickets_per_day.min(h.per_day)
        } else {
            h.per_day
        };
        self.quotas
            .take(
                a.customer.as_str(),
                route,
                h.per_minute,
                per_day,
                Instant::now(),
                Utc::now(),
            )
            .map_err(|t| {
                tracing::info!(customer = %a.customer, route, reason = %t, "quota");
                ApiError::from(t)
            })
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
        .route("/openapi.json", get(openapi::document))
        .route("/login", post(session::login))
        .route("/me", get(session::me))
        .route("/logout-all", post(session::logout_all))
        .route("/password", post(account::change))
        .route("/password/forgot", post(account::forgot))
        .route("/password/reset", post(account::reset))
        .route("/keys", post(keys::create).get(keys::list))
        .route("/keys/{id}", axum::routing::delete(keys::revoke))
        .route("/2fa/setup", post(twofactor::setup))
        .route("/2fa/enable", post(twofactor::enable))
        .route("/2fa/disable", post(twofactor::disable))
        .route("/vps/{id}/ssh-keys", put(vps::ssh_keys))
        .route("/vps/{id}/ptr", put(ptr::set_ptr))
        .route("/vps/{id}/boot", put(boot::attach).delete(boot::eject))
        .route(
            "/vps/{id}/rescue",
            post(rescue::enter).delete(rescue::leave),
        )
        .route("/vps/{id}/graph", get(graph::vps_graph))
        .route("/vps/{id}/renew", post(checkout::renew))
        .route("/vps/{id}/traffic", post(checkout::traffic))
        .route("/vps/{id}/{action}", post(vps::vps_action))
        .route("/order", post(checkout::order))
        .route("/webhooks/stripe", post(webhooks::stripe_webhook))
        .route(
            "/tickets",
            post(tickets::open_ticket).get(tickets::list_tickets),
        )
        .route("/tickets/{id}", post(tickets::reply_ticket))
        .route("/invoices", get(invoices::list_invoices))
        .route("/invoices/{number}", get(invoices::show_invoice))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed);
    let api = api.layer(axum::middleware::from_fn_with_state(
        app.clone(),
        headers::cors,
    ));
    let r = Router::new().nest("/api", api);
    let r = match static_dir {
        Some(dir) => r.fallback_service(tower_http::services::ServeDir::new(dir)),
        None => r.fallback(error::not_found),
    };
    r.layer(axum::middleware::from_fn(log_request))
        .layer(axum::middleware::from_fn(headers::security_headers))
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

fn parse_vps(id: &str) -> Result<VpsId, ApiError> {
    id.parse().map_err(|_| ApiError::not_found())
}

fn answer(c: Committed) -> Response {
    axum::Json(answer_value(c)).into_response()
}

/// The JSON of an accepted change: its decision, `ok`, `changed` and `commit`.
fn answer_value(c: Committed) -> Value {
    let mut v = serde_json::to_value(&c.decision).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("ok".into(), true.into());
        m.insert("changed".into(), c.commit.is_some().into());
        m.insert(
            "commit".into(),
            c.commit.map(Value::from).unwrap_or(Value::Null),
        );
    }
    v
}

/// [`answer`] with the fields of `extra` (an object) added: what a change shows once (a new
/// token).
fn answer_with(c: Committed, extra: Value) -> Response {
    let mut v = answer_value(c);
    if let (Value::Object(m), Value::Object(x)) = (&mut v, extra) {
        m.extend(x);
    }
    axum::Json(v).into_response()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
