//! `gitvps bench monitor`: what the sample store keeps per VPS after a year of collections and
//! downsampling (target ≤ 1 MiB), and how long a `/metrics` scrape of 1,000 VPSes takes (≤ 100 ms).
//! Figures only; tests never assert on time.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use clap::Args;
use executor::samples::Store;
use model::{NodeId, VpsId};
use monitor::report::HostRaw;
use monitor::sources::HostCpu;
use monitor::{Counters, Incarnation, Limits, Sample, Tier};

use super::monitor_http::{Fleet, Shared, router};

/// Flags of `gitvps bench monitor`.
#[derive(Debug, Args)]
pub struct MonitorBench {
    /// Days of collections simulated for the storage figure (397: every tier full).
    #[arg(long, default_value_t = 397)]
    pub days: u32,
    /// VPSes whose history is simulated (the figure is per VPS).
    #[arg(long, default_value_t = 2)]
    pub history_vps: u32,
    /// Seconds between two collections.
    #[arg(long, default_value_t = 60)]
    pub interval: u32,
    /// VPS series on the timed /metrics page.
    #[arg(long, default_value_t = 1000)]
    pub vps: u32,
    /// Scrapes to time (the median and the slowest are reported).
    #[arg(long, default_value_t = 20)]
    pub scrapes: u32,
}

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A busy VPS's growth over `secs`: about 10 Mbit/s each way on average (up to twice that),
/// 1,500-byte packets, half a core, 2 MB/s of disk in 16 KiB operations.
fn grow(c: &mut Counters, r: &mut Rng, secs: u64) {
    let rx = r.below(2 * 1_250_000 * secs);
    let tx = r.below(2 * 1_250_000 * secs);
    let rd = r.below(2 * 1_000_000 * secs);
    let wr = r.below(2 * 1_000_000 * secs);
    c.net_rx_bytes += rx;
    c.net_tx_bytes += tx;
    c.net_rx_packets += rx / 1500 + 1;
    c.net_tx_packets += tx / 1500 + 1;
    c.cpu_ms += r.below(1000 * secs);
    c.disk_read_bytes += rd;
    c.disk_write_bytes += wr;
    c.disk_read_ops += rd / 16384;
    c.disk_write_ops += wr / 16384;
}

fn id<T: std::str::FromStr>(s: &str) -> anyhow::Result<T> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("bench id `{s}` does not parse"))
}

/// Runs the benchmark.
pub fn run(a: &MonitorBench) -> anyhow::Result<i32> {
    let dir = tempfile::tempdir()?;
    storage(a, &dir.path().join("year"))?;
    scrape(a, &dir.path().join("scrape"))?;
    Ok(0)
}

/// A year (or `--days`) of collections for `--history-vps` VPSes, pruned every hour and
/// compacted when due as the service does, then the store's footprint per VPS.
fn storage(a: &MonitorBench, path: &std::path::Path) -> anyhow::Result<()> {
    let store = Store::open(path)?;
    let limits = Limits::default();
    let step = i64::from(a.interval.max(1));
    // A fixed end (2026-01-01 00:00 UTC), not the wall clock: the prunings and the daily
    // compactions then fall at the same simulated moments in every run, so runs compare.
    let end = DateTime::<Utc>::from_timestamp(1_767_225_600, 0)
        .context("the simulated year's end is out of range")?;
    let start = end - Duration::days(i64::from(a.days));
    let vps: Vec<VpsId> = (0..a.history_vps)
        .map(|i| id(&format!("bench{i}")))
        .collect::<anyhow::Result<_>>()?;
    let mut counters = vec![Counters::default(); vps.len()];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let began = Instant::now();
    let mut at = start;
    let mut n = 0u64;
    // Compactions as the collector runs them (after a pruning, once a UTC day when due): how
    // many, their time, the largest files one started from.
    let (mut compactions, mut compacting, mut peak) = (0u32, 0f64, 0u64);
    let mut compact = |at| -> anyhow::Result<()> {
        let t = Instant::now();
        if let Some(c) = store.compact_if_due(at)? {
            compactions += 1;
            compacting += t.elapsed().as_secs_f64();
            peak = peak.max(c.before);
        }
        Ok(())
    };
    while at <= end {
        for (v, c) in vps.iter().zip(counters.iter_mut()) {
            grow(c, &mut rng, step as u64);
            let s = Sample {
                at,
                incarnation: Incarnation {
                    domain_id: Some(1),
                    started: None,
                },
                counters: *c,
            };
            store.record_vps(v, s, at, &limits)?;
        }
        n += 1;
        if at.timestamp() % 3600 < step {
            store.prune(at)?;
            compact(at)?;
        }
        at += Duration::seconds(step);
    }
    store.prune(end)?;
    compact(end)?;
    store.flush()?;
    let took = began.elapsed().as_secs_f64();
    let (mut entries, mut bytes) = (0u64, 0u64);
    for v in &vps {
        let (e, b) = store.footprint(v)?;
        entries += e;
        bytes += b;
    }
    let per = |x: u64| x as f64 / vps.len().max(1) as f64;
    let mib = per(bytes) / 1_048_576.0;
    let disk = store.size_on_disk()? as f64 / 1_048_576.0;
    println!(
        "gitvps bench monitor: the sample store after {} days of collections every {} s ({} VPSes, {n} collections, simulated in {took:.1} s)",
        a.days,
        a.interval,
        vps.len()
    );
    println!(
        "  per VPS: {:.0} entries (raw {} + 5-minute {} + hourly {} at most), {:.0} bytes of keys and values = {mib:.3} MiB ({:.2}x the 1 MiB target), {:.1} bytes an entry",
        per(entries),
        Tier::Raw.max_buckets(Duration::seconds(step)),
        Tier::FiveMinutes.max_buckets(Duration::seconds(step)),
        Tier::Hourly.max_buckets(Duration::seconds(step)),
        per(bytes),
        mib,
        bytes as f64 / entries.max(1) as f64
    );
    let (len, used) = files(store.path())?;
    let n = vps.len().max(1) as f64;
    println!(
        "  sled's files: {disk:.2} MiB as sled counts them ({:.2} MiB a VPS); {:.2} MiB long, {:.2} MiB allocated on disk ({:.2} MiB a VPS, sled's log and its fixed overhead included)",
        disk / n,
        len as f64 / 1_048_576.0,
        used as f64 / 1_048_576.0,
        used as f64 / 1_048_576.0 / n
    );
    println!(
        "  compactions (after a pruning, once a UTC day when sled's files exceed twice the keys and values + {} MiB): {compactions}, {compacting:.1} s in all; the largest files one started from: {:.2} MiB ({:.2} MiB a VPS)",
        executor::samples::COMPACT_SLACK >> 20,
        peak as f64 / 1_048_576.0,
        peak as f64 / 1_048_576.0 / n
    );
    let live = store.live_bytes()? as f64 / 1_048_576.0;
    let began = Instant::now();
    let c = store.compact(end)?;
    let took = began.elapsed().as_secs_f64();
    let (len, used) = files(store.path())?;
    println!(
        "  compacted once more now ({took:.2} s; every key and value: {live:.2} MiB): {:.2} MiB as sled counts them, {:.2} MiB long, {:.2} MiB allocated ({:.2} MiB a VPS)",
        c.after as f64 / 1_048_576.0,
        len as f64 / 1_048_576.0,
        used as f64 / 1_048_576.0,
        used as f64 / 1_048_576.0 / n
    );
    Ok(())
}

/// The length and the allocated size (`du`) of the files under `dir`, in bytes.
fn files(dir: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut len, mut used) = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))? {
            let e = e?;
            let m = e.metadata()?;
            if m.is_dir() {
                todo.push(e.path());
            } else {
                len += m.len();
                used += m.blocks() * 512;
            }
        }
    }
    Ok((len, used))
}

/// `--vps` VPSes with a last reading and 50 nodes with figures, served by the monitor's
/// router on a loopback port; each scrape is a real HTTP GET of /metrics read to its end.
fn scrape(a: &MonitorBench, path: &std::path::Path) -> anyhow::Result<()> {
    let store = Arc::new(Store::open(path)?);
    let now = Utc::now();
    let limits = Limits::default();
    let mut rng = Rng(7);
    let nodes: Vec<NodeId> = (0..50)
        .map(|i| id(&format!("node{i}")))
        .collect::<anyhow::Result<_>>()?;
    let mut fleet = Fleet {
        vps: Vec::new(),
        nodes: nodes.clone(),
    };
    for i in 0..a.vps {
        let v: VpsId = id(&format!("vps{i}"))?;
        let node = nodes[i as usize % nodes.len()].clone();
        let mut c = Counters::default();
        for k in 0..2 {
            grow(&mut c, &mut rng, 60);
            let s = Sample {
                at: now - Duration::seconds(60 - 60 * k),
                incarnation: Incarnation::default(),
                counters: c,
            };
            store.record_vps(&v, s, now, &limits)?;
        }
        fleet.vps.push((v, node));
    }
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..2u64 {
            let host = HostRaw {
                cpu: HostCpu {
                    busy: 1000 * k + i as u64,
                    total: 4000 * k + 10,
                    btime: None,
                },
                mem_used: 1 << 34,
                load_milli: 1500,
                storage_free: 1 << 40,
            };
            let at: DateTime<Utc> = now - Duration::seconds(60 - 60 * k as i64);
            store.record_node(n, at, &host, now)?;
        }
    }
    let shared = Shared::new(Arc::clone(&store));
    shared.set_fleet(fleet);
    shared.cycle_done(now, 1.0, Some(0));
    let rt = super::plan::runtime()?;
    let (times, bytes, series) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router(shared)).await;
        });
        let mut times = Vec::new();
        let mut page = String::new();
        for _ in 0..a.scrapes.max(1) + 1 {
            let t = Instant::now();
            page = get_metrics(addr).await?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        server.abort();
        // The first scrape warms the caches; it is not counted.
        times.remove(0);
        let series = page
            .lines()
            .filter(|l| l.starts_with("gitvps_vps_"))
            .count();
        anyhow::Ok((times, page.len(), series))
    })?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let worst = sorted[sorted.len() - 1];
    println!(
        "gitvps bench monitor: /metrics with {} VPSes on 50 nodes ({series} VPS samples, {:.0} KiB), {} scrapes over HTTP",
        a.vps,
        bytes as f64 / 1024.0,
        times.len()
    );
    println!(
        "  scrape: median {median:.1} ms, slowest {worst:.1} ms ({:.2}x the 100 ms target)",
        median / 100.0
    );
    Ok(())
}

/// One HTTP/1.1 GET of /metrics, read to the end (the server closes).
async fn get_metrics(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8(out).context("the page is not UTF-8")?;
    anyhow::ensure!(
        text.starts_with("HTTP/1.1 200"),
        "the scrape failed: {}",
        text.lines().next().unwrap_or_default()
    );
    Ok(text)
}
