//! `gitvps monitor`: the usage collector. Every `[monitor] interval_secs` it runs the collect
//! script on every node (one SSH exec each) and stores the samples in its sled database;
//! `gitvps monitor collect --once` does one cycle, for a timer. Each cycle also runs the VPSes'
//! service checks and mails their alerts (`checks.rs`). Once a day (and by `gitvps
//! monitor usage`) the traffic totals and the `[traffic]` policy land as a commit.
//! See docs/monitoring.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;

use chrono::{NaiveDate, Utc};
use clap::{Args, Subcommand};
use executor::collect::{Collected, collect_all};
use executor::pool::Pool;
use executor::samples::{Recorded, Store};
use jobs::git::Worktree;
use model::settings::TrafficCount;
use model::{NodeId, VpsId};
use monitor::usage::Totals;
use monitor::{Limits, Sample};

use super::Global;
use super::billing::{RunArgs, note_commit, push_target, send_with};
use super::monitor_http::{Fleet, Shared, listen as listen_on, router};
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
    /// Write each VPS's traffic in its period to usage/YYYY-MM.toml and apply the `[traffic]`
    /// policy (throttle, suspend, mail at the warning and at the quota) in one commit, then
    /// send the mail. `gitvps monitor` does this once a day by itself; this is for a timer
    /// beside `collect --once`. Exit 0: done; 2 (--dry-run): a VPS would change or be mailed.
    Usage(UsageArgs),
    /// Draw a usage graph as SVG: a node's overall usage (--node), or a VPS's as its customer
    /// sees it in the panel (--vps). Times in UTC.
    Graph(super::monitor_graph::GraphArgs),
    /// Compact the sample database now: copy it into a fresh one beside it and swap that in
    /// (`gitvps monitor` does so by itself once a UTC day when sled's files outgrow the data).
    /// Stop the collector first: it holds the database.
    Compact {
        /// The sample database (gitvps.toml's monitor.database by default).
        #[arg(long, value_name = "DIR")]
        db: Option<PathBuf>,
    },
}

/// Flags of `gitvps monitor usage`: those of `gitvps billing run`, and the database.
#[derive(Debug, Args)]
pub struct UsageArgs {
    /// The day, the dry run, JSON and where the commit goes.
    #[command(flatten)]
    pub run: RunArgs,
    /// The sample database (gitvps.toml's monitor.database by default).
    #[arg(long, value_name = "DIR")]
    pub db: Option<PathBuf>,
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
    /// Then commit each VPS's check states and last counters to the status branch
    /// (`monitor/<vps>.json`), where the hooks read them for the panel.
    #[arg(long)]
    pub status: bool,
    /// The service only: serve /metrics (Prometheus) on this address (gitvps.toml's
    /// monitor.listen by default; no listener when neither is set; port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
}

/// Runs the command.
pub fn run(g: &Global, a: &MonitorArgs) -> anyhow::Result<i32> {
    match &a.command {
        Some(MonitorCommand::Collect { once: true, opts }) => {
            if opts.listen.is_some() {
                anyhow::bail!(
                    "--listen is for the service (`gitvps monitor`): collect --once has no listener"
                );
            }
            let rt = runtime()?;
            let Some(store) = open_store(g, opts)? else {
                return Ok(1);
            };
            rt.block_on(cycle(g, opts, &store, None, None))
        }
        Some(MonitorCommand::Collect { once: false, opts }) => serve(g, opts),
        Some(MonitorCommand::Usage(u)) => {
            let Some(store) = open_store_at(g, u.db.as_ref())? else {
                return Ok(1);
            };
            let wt = Worktree::open(&g.repo)?;
            let now = Utc::now();
            let opts = jobs::traffic::Options {
                today: u.run.today.unwrap_or_else(|| now.date_naive()),
                now,
                dry_run: u.run.dry_run,
                push: push_target(&wt, &u.run.push)?,
            };
            usage(&wt, &store, &opts, u.run.json)
        }
        Some(MonitorCommand::Graph(ga)) => super::monitor_graph::run(g, ga),
        Some(MonitorCommand::Compact { db }) => {
            let Some(store) = open_store_at(g, db.as_ref())? else {
                return Ok(1);
            };
            let live = store.live_bytes()?;
            let c = store.compact(Utc::now())?;
            let mib = |b: u64| b as f64 / 1_048_576.0;
            println!(
                "{}: compacted: sled's files {:.2} MiB, now {:.2} MiB (keys and values: {:.2} MiB)",
                store.path().display(),
                mib(c.before),
                mib(c.after),
                mib(live)
            );
            Ok(0)
        }
        None => serve(g, &a.opts),
    }
}

/// Each VPS's bytes in its current traffic period, from the hourly buckets of the store.
fn period_totals(
    store: &Store,
    inv: &model::Inventory,
    today: NaiveDate,
) -> anyhow::Result<BTreeMap<VpsId, Totals>> {
    let reset = inv.settings.traffic.reset;
    let mut out = BTreeMap::new();
    for v in inv.vps.values() {
        let period = monitor::period(reset, v.created, today)?;
        let series = store.vps_series(&v.id)?;
        let rx = monitor::period_total_hourly(&period, TrafficCount::In, &series);
        let tx = monitor::period_total_hourly(&period, TrafficCount::Out, &series);
        out.insert(v.id.clone(), Totals { rx, tx });
    }
    Ok(out)
}

/// One usage run: the totals read from `store`, the run landed (printed as it goes), then the
/// mail sent. Exit 0 done; 1 an inventory or usage file error, or mail left unsent; 2 a dry
/// run that would change something.
fn usage(
    wt: &Worktree,
    store: &Store,
    opts: &jobs::traffic::Options,
    json: bool,
) -> anyhow::Result<i32> {
    let inv = match super::load_or_report(wt.root(), json)? {
        Ok(inv) => inv,
        Err(code) => return Ok(code),
    };
    let totals = period_totals(store, &inv, opts.today)?;
    let report = match super::job_or_report(jobs::traffic::run(wt, opts, &totals), json)? {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    if json {
        super::print_json(&report.run)?;
    } else {
        super::emit(&report.run.render())?;
    }
    if opts.dry_run {
        return Ok(if report.run.is_quiet() { 0 } else { 2 });
    }
    note_commit(report.commit.as_deref(), opts.push.as_ref())?;
    send_with(wt, opts.now, opts.push.as_ref(), None)
}

/// The database path: the flag, else the setting (relative to the repo).
fn db_path(g: &Global, flag: Option<&PathBuf>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = flag {
        return Ok(Some(p.clone()));
    }
    let inv = match super::load_or_report(&g.repo, false)? {
        Ok(inv) => inv,
        Err(_) => return Ok(None),
    };
    Ok(Some(db_path_of(&g.repo, &inv, None)))
}

/// The database path of an inventory: `flag`, else the setting (relative to `repo`).
pub(crate) fn db_path_of(repo: &Path, inv: &model::Inventory, flag: Option<&PathBuf>) -> PathBuf {
    if let Some(p) = flag {
        return p.clone();
    }
    let p = Path::new(&inv.settings.monitor.database);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        repo.join(p)
    }
}

fn open_store(g: &Global, o: &CollectOpts) -> anyhow::Result<Option<Store>> {
    open_store_at(g, o.db.as_ref())
}

fn open_store_at(g: &Global, flag: Option<&PathBuf>) -> anyhow::Result<Option<Store>> {
    let Some(path) = db_path(g, flag)? else {
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
async fn cycle(
    g: &Global,
    o: &CollectOpts,
    store: &Store,
    pool: Option<&Arc<Pool>>,
    web: Option<&Shared>,
) -> anyhow::Result<i32> {
    let started = std::time::Instant::now();
    let mut s = match setup(g, &o.select, false)? {
        Ok(s) => s,
        Err(code) => {
            if let Some(w) = web {
                w.cycle_done(Utc::now(), started.elapsed().as_secs_f64(), None);
            }
            return Ok(code);
        }
    };
    if let Some(w) = web {
        w.set_fleet(Fleet::of(&s.inv, &s.nodes));
    }
    s.access.pool = pool.cloned();
    let limit = deadline(o, s.inv.settings.monitor.interval_secs);
    let c = Cycle {
        repo: &g.repo,
        inv: &s.inv,
        desired: &s.desired,
        nodes: &s.nodes,
        access: &s.access,
        limit,
    };
    let mut done = c.run(store, None).await?;
    if let Some(w) = web {
        w.cycle_done(
            Utc::now(),
            started.elapsed().as_secs_f64(),
            Some(done.missing_nodes as u64),
        );
    }
    if o.status {
        let line = c.publish(store, done.states, Utc::now())?;
        done.lines.push_str(&line);
    }
    super::emit(&done.lines)?;
    Ok(done.code)
}

/// What one collection did.
pub(crate) struct Collection {
    /// The lines to print.
    pub(crate) lines: String,
    /// 1 when a node's samples are missing, else 0.
    pub(crate) code: i32,
    /// How many nodes' samples are missing.
    pub(crate) missing_nodes: usize,
    /// Each VPS's check states, for the status branch.
    pub(crate) states: BTreeMap<VpsId, Vec<model::status::CheckStatus>>,
}

/// What one collection works on.
pub(crate) struct Cycle<'a> {
    /// The repo (mail templates; its status branch with `status`).
    pub(crate) repo: &'a Path,
    /// The inventory.
    pub(crate) inv: &'a model::Inventory,
    /// Its desired state (the collect script's inputs per node).
    pub(crate) desired: &'a planner::desired::Desired,
    /// The nodes collected.
    pub(crate) nodes: &'a [NodeId],
    /// How they are reached.
    pub(crate) access: &'a executor::apply::Access,
    /// The deadline of one node.
    pub(crate) limit: Duration,
}

impl Cycle<'_> {
    /// One collection: every node at once, the samples stored and flushed, the checks run
    /// (their mail through `out`, else `GITVPS_SMTP_URL`).
    pub(crate) async fn run(
        &self,
        store: &Store,
        out: Option<mail::Outgoing>,
    ) -> anyhow::Result<Collection> {
        let got = collect_all(self.inv, self.desired, self.nodes, self.access, self.limit).await;
        let now = Utc::now();
        let mut lines = String::new();
        let mut code = 0;
        for (node, c) in &got {
            let stored = store_node(store, self.inv, node, c, now)?;
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
        // The service checks, after the collection: they add at most their longest timeout.
        let ran =
            super::checks::run(self.repo, self.inv, self.nodes, store, Utc::now(), out).await?;
        lines.push_str(&ran.lines);
        store.prune(now)?;
        store.flush()?;
        // Once a UTC day, when sled's files outgrow the data: a failed one is said and tried
        // again the next UTC day; the collection stands.
        if let Err(e) = store.compact_if_due(now) {
            tracing::error!("compacting the monitor database failed: {e:#}");
        }
        Ok(Collection {
            lines,
            code,
            missing_nodes: got.iter().filter(|(_, c)| c.outcome.is_err()).count(),
            states: ran.states,
        })
    }

    /// Commits `monitor/<vps>.json` of every VPS on the nodes collected (its check states and
    /// last counters) to the status branch, when something changed. Returns the line to print.
    pub(crate) fn publish(
        &self,
        store: &Store,
        mut states: BTreeMap<VpsId, Vec<model::status::CheckStatus>>,
        now: chrono::DateTime<Utc>,
    ) -> anyhow::Result<String> {
        let mut entries = Vec::new();
        for v in self
            .inv
            .vps
            .values()
            .filter(|v| self.nodes.contains(&v.node))
        {
            let counters = store.last_vps(&v.id)?.map(|s| model::status::LiveCounters {
                at: s.at,
                cpu_ms: s.counters.cpu_ms,
                net_rx_bytes: s.counters.net_rx_bytes,
                net_tx_bytes: s.counters.net_tx_bytes,
                disk_read_bytes: s.counters.disk_read_bytes,
                disk_write_bytes: s.counters.disk_write_bytes,
            });
            entries.push(model::status::VpsMonitor {
                vps: v.id.clone(),
                collected_at: now,
                counters,
                checks: states.remove(&v.id).unwrap_or_default(),
            });
        }
        let branch = &self.inv.settings.reconciler.status_branch;
        let known = self.inv.vps.keys().cloned().collect();
        let message = format!(
            "gitvps monitor: checks and counters of {} VPS(es) at {}",
            entries.len(),
            now.format("%Y-%m-%d %H:%M:%S UTC")
        );
        Ok(
            match executor::status::write_monitor(self.repo, branch, &entries, &known, &message)? {
                Some(oid) => format!(
                    "status: {} VPS(es) written to branch `{branch}` ({})\n",
                    entries.len(),
                    &oid.to_string()[..12]
                ),
                None => String::new(),
            },
        )
    }
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

/// The service's daily traffic run, committing to the repo and pushing to its upstream.
fn daily_usage(g: &Global, store: &Store) -> anyhow::Result<i32> {
    let wt = Worktree::open(&g.repo)?;
    let now = Utc::now();
    let opts = jobs::traffic::Options {
        today: now.date_naive(),
        now,
        dry_run: false,
        push: wt.upstream()?,
    };
    usage(&wt, store, &opts, false)
}

/// The long-lived collector: a cycle every interval until SIGTERM or Ctrl-C, which end it
/// between cycles (a cycle in progress finishes and is flushed).
fn serve(g: &Global, o: &CollectOpts) -> anyhow::Result<i32> {
    let rt = runtime()?;
    let Some(store) = open_store(g, o)? else {
        return Ok(1);
    };
    let store = Arc::new(store);
    let web = Shared::new(Arc::clone(&store));
    let listen = match o.listen {
        Some(a) => Some(a),
        None => model::Inventory::load(&g.repo)
            .ok()
            .and_then(|inv| inv.settings.monitor.listen),
    };
    rt.block_on(async {
        let listener = match listen {
            Some(addr) => Some(listen_on(addr, router(Arc::clone(&web))).await?),
            None => None,
        };
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch SIGTERM")?;
        tracing::info!(db = %store.path().display(), "gitvps monitor started");
        // The day of the last traffic run: one a day, at the first cycle of each UTC day.
        let mut usage_day: Option<NaiveDate> = None;
        // One connection per node, kept from one collection to the next.
        let pool = Arc::new(Pool::default());
        loop {
            let started = tokio::time::Instant::now();
            if let Err(e) = cycle(g, o, &store, Some(&pool), Some(&web)).await {
                // A bad inventory edit or a full disk: said, and tried again next interval.
                tracing::error!("collection failed: {e:#}");
                web.cycle_done(Utc::now(), started.elapsed().as_secs_f64(), None);
            }
            let today = Utc::now().date_naive();
            if usage_day != Some(today) {
                match daily_usage(g, &store) {
                    Ok(0) => usage_day = Some(today),
                    Ok(code) => tracing::warn!(
                        code,
                        "the traffic run did not finish; tried again next cycle"
                    ),
                    Err(e) => {
                        tracing::error!("the traffic run failed: {e:#}; tried again next cycle")
                    }
                }
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
        if let Some(l) = listener {
            l.abort();
        }
        pool.close_all().await;
        store.flush()?;
        tracing::info!(
            connections = pool.opened.load(Ordering::Relaxed),
            reused = pool.reused.load(Ordering::Relaxed),
            "gitvps monitor stopped"
        );
        Ok(0)
    })
}
