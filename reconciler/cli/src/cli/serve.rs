//! `gitvps serve`: the customer hooks (the same axum Router as on AWS Lambda), and the
//! built site when `--site` is given, on one local port.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::Global;

/// Flags of `gitvps serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A built site to serve beside the hooks (`gitvps site build --out DIR`).
    #[arg(long, value_name = "DIR")]
    pub site: Option<PathBuf>,
    /// The monitor's sample database (`gitvps monitor --db`): the panel's usage graphs
    /// (`GET /api/vps/{id}/graph`) are drawn from it, opened for each graph. Without it that
    /// route answers 503.
    #[arg(long, value_name = "DIR")]
    pub monitor_db: Option<PathBuf>,
}

/// Runs the command until interrupted.
pub fn run(g: &Global, a: &ServeArgs) -> anyhow::Result<i32> {
    let mut cfg = hooks::Config::local(g.repo.display().to_string())
        .with_context(|| format!("cannot serve {}", g.repo.display()))?;
    cfg.static_dir = a.site.clone();
    if let Some(db) = &a.monitor_db {
        let graphs = crate::graphs::StoreGraphs::at(db.clone())?;
        cfg.graphs = Some(std::sync::Arc::new(graphs));
    }
    super::plan::runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let addr = listener.local_addr()?;
        #[allow(clippy::print_stderr)]
        {
            eprintln!("gitvps serve: listening on http://{addr}");
        }
        tokio::select! {
            r = hooks::serve(listener, cfg) => r.context("the server stopped")?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(0)
    })
}
