//! `gitvps bench graph`: a month of samples in a real sled store, then the time to read and
//! draw a VPS's month graph (target ≤ 20 ms) and its comparison with its node's VPSes.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use clap::Args;
use executor::samples::Store;
use hooks::graphs::{GraphMetric, GraphRange, GraphRequest};
use model::VpsId;
use model::values::Language;
use monitor::{Counters, Incarnation, Limits, Sample};

/// Flags of `gitvps bench graph`.
#[derive(Debug, Args)]
pub struct GraphBench {
    /// VPSes on the node (the compared VPS and its peers).
    #[arg(long, default_value_t = 20)]
    pub vps: u32,
    /// Minutes between the samples written (the collector's interval is 1).
    #[arg(long, default_value_t = 5)]
    pub every: u32,
    /// Days of samples.
    #[arg(long, default_value_t = 31)]
    pub days: u32,
    /// Draws to time (the best and the median are reported).
    #[arg(long, default_value_t = 20)]
    pub runs: u32,
}

fn timed(
    runs: u32,
    mut f: impl FnMut() -> anyhow::Result<usize>,
) -> anyhow::Result<(f64, f64, usize)> {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        bytes = f()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[0], times[times.len() / 2], bytes))
}

/// Runs the benchmark.
pub fn run(a: &GraphBench) -> anyhow::Result<i32> {
    let tmp = tempfile::tempdir()?;
    let store = Arc::new(Store::open(&tmp.path().join("monitor-db"))?);
    let now = Utc::now();
    let ids: Vec<VpsId> = (0..a.vps.max(1))
        .map(|i| format!("bench{i}").parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let every = i64::from(a.every.max(1));
    let steps = i64::from(a.days) * 24 * 60 / every;
    let t0 = Instant::now();
    for (n, id) in ids.iter().enumerate() {
        let rate = n as u64 + 1;
        for k in 0..=steps {
            let at = now - Duration::minutes((steps - k) * every);
            let k = k as u64;
            let sample = Sample {
                at,
                incarnation: Incarnation {
                    domain_id: Some(1),
                    started: None,
                },
                counters: Counters {
                    cpu_ms: k * rate * 1000,
                    net_rx_bytes: k * rate * 1_000_000 + (k % 7) * 100_000,
                    net_tx_bytes: k * rate * 300_000,
                    disk_read_bytes: k * rate * 50_000,
                    disk_write_bytes: k * rate * 200_000,
                    ..Counters::default()
                },
            };
            store.record_vps(id, sample, at, &Limits::default())?;
        }
    }
    store.flush()?;
    println!(
        "wrote {} samples ({} VPSes, every {} min over {} days) in {:.1} s",
        (steps + 1) * ids.len() as i64,
        ids.len(),
        every,
        a.days,
        t0.elapsed().as_secs_f64()
    );
    let (Some(me), peers) = (ids.first().cloned(), ids.iter().skip(1).cloned().collect()) else {
        anyhow::bail!("no VPS");
    };
    let mut req = GraphRequest {
        vps: me,
        node: "bench".parse().map_err(|e| anyhow::anyhow!("{e:?}"))?,
        peers,
        metric: GraphMetric::Network,
        range: GraphRange::Month,
        points: None,
        lang: Language::En,
    };
    let draw = |req: &GraphRequest| -> anyhow::Result<usize> {
        crate::graphs::draw_vps(&store, req, Utc::now())
            .map(|s| s.len())
            .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let (best, median, bytes) = timed(a.runs, || draw(&req))?;
    println!(
        "month graph (network, hourly tier, read + draw): best {best:.2} ms, median {median:.2} ms ({:.2}x the 20 ms target), {bytes} bytes of SVG",
        median / 20.0
    );
    req.range = GraphRange::Year;
    let (best, median, bytes) = timed(a.runs, || draw(&req))?;
    println!(
        "year graph (network, hourly tier): best {best:.2} ms, median {median:.2} ms, {bytes} bytes"
    );
    req.range = GraphRange::Week;
    let (best, median, bytes) = timed(a.runs, || draw(&req))?;
    println!(
        "week graph (network, 5-minute tier): best {best:.2} ms, median {median:.2} ms, {bytes} bytes"
    );
    req.range = GraphRange::Month;
    req.metric = GraphMetric::Compare;
    let (best, median, bytes) = timed(a.runs, || draw(&req))?;
    println!(
        "month comparison among {} VPSes (reads every series): best {best:.2} ms, median {median:.2} ms, {bytes} bytes",
        ids.len()
    );
    Ok(0)
}
