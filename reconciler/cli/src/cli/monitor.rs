//! `gitvps monitor`: the usage collector. Every `[monitor] interval_secs` it runs the collect
//! script on every node (one SSH exec each) and stores the samples in its sled database;
//! `gitvps monitor collect --once` does one cycle, for a timer. See docs/monitoring.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use executor::collect::{Collected, collect_all};
use executor::samples::{Recorded, Store};
use model::NodeId;
use monitor::{Limits, Sample};

use super::Global;
use super::plan::{Select, runtime, setup};

/// Flags of `gitvps monitor`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct MonitorArgs {
    /// `collect`: collect, once with `--once`; without a subcommand, collect every interval.
    #[command(subcommand)]
    pub command: Option<MonitorCommand>,
    /// Flags of every collection.
    #[command(flatten)]
    pub opts: CollectOpts,
}

/// `gitvps monitor` subcommands.
#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Collect every node's usage into the sample database (every interval, or `--once`).
    Collect {
        /// One collection, then exit (1 when a node's samples are missing).
        #[arg(long)]
        once: bool,
        /// Flags of every collection.
        #[command(flatten)]
        opts: CollectOpts,
    },
}

/// Flags of every collection.
#[derive(Debug, Args)]
pub struct CollectOpts {
    /// Which nodes, and how many at once.
    #[command(flatten)]
    pub select: Select,
    /// The sample database (gitvps.toml's monitor.database by default).
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
    /// Seconds a node has to answer, connecting included (half the interval by default, 5 to 30).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// Runs the command.
pub fn run(g: &Global, a: &MonitorArgs) -> anyhow::Result<i32> {
    match &a.command {
        Some(MonitorCommand::Collect { once: true, opts }) => {
            let rt = runtime()?;
            let Some(store) = open_store(g, opts)? else {
                return Ok(1);
            };
            rt.block_on(cycle(g, opts, &store))
        }
        Some(MonitorCommand::Collect { once: false, opts }) => serve(g, opts),
        None => serve(g, &a.opts),
    }
}

/// The database path: the flag, else the setting (relative to the repo).
fn db_path(g: &Global, o: &CollectOpts) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = &o.db {
        return Ok(Some(p.clone()));
    }
    let inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(_) => return Ok(None),
    };
    let p = Path::new(&inv.settings.monitor.database);
    Ok(Some(if p.is_absolute() {
        p.to_path_buf()
    } else {
        g.repo.join(p)
    }))
}

fn open_store(g: &Global, o: &CollectOpts) -> anyhow::Result<Option<Store>> {
    let Some(path) = db_path(g, o)? else {
        return Ok(None);
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    Ok(Some(Store::open(&path)?))
}

/// The deadline of one node: the flag, else half the interval within 5 to 30 s.
fn deadline(o: &CollectOpts, interval_secs: u32) -> Duration {
    Duration::from_secs(
        o.timeout
            .unwrap_or_else(|| u64::from(interval_secs / 2).clamp(5, 30))
            .max(1),
    )
}

/// One collection: every node at once, the samples stored and flushed, one line per node.
/// Returns 1 when a node's samples are missing, 0 otherwise.
async fn cycle(g: &Global, o: &CollectOpts, store: &Store) -> anyhow::Result<i32> {
    let s = match setup(g, &o.select, false)? {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let limit = deadline(o, s.inv.settings.monitor.interval_secs);
    let got = collect_all(&s.inv, &s.desired, &s.nodes, &s.access, limit).await;
    let now = Utc::now();
    let mut lines = String::new();
    let mut code = 0;
    for (node, c) in &got {
        let stored = store_node(store, &s.inv, node, c, now)?;
        let missing = c.missing();
        let secs = c.elapsed.as_secs_f64();
        lines.push_str(&format!(
            "{node}: sampled {stored}, missing {}, {secs:.2} s\n",
            missing.len()
        ));
        match &c.outcome {
            Err(e) => {
                code = 1;
                lines.push_str(&format!("  MISSING: {}\n", model::diag::error_chain(e)));
            }
            Ok(r) => {
                for p in &r.problems {
                    lines.push_str(&format!("  {p}\n"));
                }
                if !missing.is_empty() {
                    let names: Vec<&str> = missing.iter().map(|v| v.as_str()).collect();
                    lines.push_str(&format!("  not running there: {}\n", names.join(", ")));
                }
            }
        }
    }
    store.prune(now)?;
    store.flush()?;
    super::emit(&lines)?;
    Ok(code)
}

/// Stores one node's report: each known VPS's reading and the node's figures. Returns how
/// many VPSes were sampled.
fn store_node(
    store: &Store,
    inv: &model::Inventory,
    node: &NodeId,
    c: &Collected,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<usize> {
    let Ok(r) = &c.outcome else {
        return Ok(0);
    };
    let limits = Limits::default();
    let mut sampled = 0;
    for (name, g) in &r.guests {
        // Only the inventory's VPSes: a domain of someone else's is not ours to count.
        let Some(v) = name
            .parse::<model::VpsId>()
            .ok()
            .and_then(|id| inv.vps.get(&id))
        else {
            tracing::debug!(%node, domain = %name, "not a VPS of the inventory; not stored");
            continue;
        };
        let sample = Sample {
            at: c.at,
            incarnation: g.incarnation,
            counters: g.counters,
        };
        match store.record_vps(&v.id, sample, now, &limits)? {
            Recorded::OutOfOrder => {
                tracing::warn!(vps = %v.id, "a reading older than the last one: taken as the new base")
            }
            Recorded::First | Recorded::Stored(_) => {}
        }
        sampled += 1;
    }
    if let Some(h) = &r.host {
        store.record_node(node, c.at, h, now)?;
    }
    Ok(sampled)
}

/// The long-lived collector: a cycle every interval until SIGTERM or Ctrl-C, which end it
/// between cycles (a cycle in progress finishes and is flushed).
fn serve(g: &Global, o: &CollectOpts) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let Some(store) = open_store(g, o)? else {
        return Ok(1);
    };
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        tracing::info!(db = %store.path().display(), "gitvps monitor started");
        loop {
            let started = tokio::time::Instant::now();
            if let Err(e) = cycle(g, o, &store).await {
                // A bad inventory edit or a full disk: said, and tried again next interval.
                tracing::error!("collection failed: {e:#}");
            }
            let interval = match model::Inventory::load(&g.repo) {
                Ok(inv) => inv.settings.monitor.interval_secs,
                Err(_) => model::settings::MonitorSettings::default().interval_secs,
            };
            let next = started + Duration::from_secs(interval.into());
            tokio::select! {
                () = tokio::time::sleep_until(next) => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        store.flush()?;
        tracing::info!("gitvps monitor stopped");
        Ok(0)
    })
}
