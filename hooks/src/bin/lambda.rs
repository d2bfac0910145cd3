//! The hooks on AWS Lambda: the same axum `Router` as `gitvps serve`, run by `lambda_http`.
//! Configuration comes from the environment only (see `hooks/README.md`).

use anyhow::Context;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GITVPS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .without_time()
        .with_ansi(false)
        .init();
    let cfg = hooks::Config::from_env().context("configuration")?;
    let app = hooks::app(cfg).context("Stripe client")?;
    lambda_http::run(app).await
}
