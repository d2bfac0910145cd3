//! gitvps hooks: the HTTP endpoints behind the customer site's buttons and Stripe's webhooks.
//! Each accepted request becomes one commit to the inventory repo; see `hooks/README.md`.
//!
//! Layers, from pure to I/O: [`auth`], [`decide`], [`billing`], [`catalog`], [`tickets`],
//! [`invoices`] and the signature check of [`stripe`] decide; [`store`] (git) and [`api`]
//! (HTTP) carry it out.

pub mod api;
pub mod apikeys;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod config;
pub mod decide;
pub mod git_timeout;
pub mod graphs;
pub mod invoices;
pub mod mails;
pub mod paymail;
pub mod remote;
pub mod reset;
pub mod resolve;
pub mod store;
pub mod stripe;
pub mod throttle;
pub mod tickets;
pub mod tree;
pub mod twofactor;

use std::sync::Arc;

pub use api::{App, router};
pub use config::{Config, ConfigError, Secret};

/// Builds the one router of every route, for Lambda, `gitvps serve` and tests.
pub fn app(cfg: Config) -> Result<axum::Router, stripe::CheckoutError> {
    Ok(router(Arc::new(App::new(cfg)?)))
}

/// Serves the hooks (and `cfg.static_dir`, if set, at `/`) on `listener` until the process
/// ends: what `gitvps serve` runs. The repo is cloned and its inventory loaded first, so a
/// wrong repo fails here rather than on the first request.
pub async fn serve(listener: tokio::net::TcpListener, cfg: Config) -> std::io::Result<()> {
    let app_repo = cfg.repo.clone();
    let app = App::new(cfg).map_err(std::io::Error::other)?;
    app.store().snapshot().await.map_err(|e| {
        let text = error_chain(&e).replace(&app_repo, &config::redact_url(&app_repo));
        std::io::Error::other(text)
    })?;
    serve_app(listener, Arc::new(app)).await
}

pub(crate) use model::diag::error_chain;

/// Serves an app built beforehand (tests keep a handle on it to read its store's counters).
pub async fn serve_app(listener: tokio::net::TcpListener, app: Arc<App>) -> std::io::Result<()> {
    // The peer address is the client address unless a trusted proxy header is configured.
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}
