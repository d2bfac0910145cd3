//! `gitvps bench collect`: the collector's cycle (`gitvps monitor`'s) against simulated nodes
//! behind real sshds: wall time per cycle and the control side's CPU per node (target ≤ 2 ms).
//!
//! The first cycle opens every node's connection (key exchange and login); the later ones run
//! over the connections the pool kept, as the service does. Figures only; tests never assert
//! on time.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use executor::apply::{Access, ApplyStats};
use executor::samples::Store;
use executor::usage::{cpu_time, peak_rss_kib};

use super::bench::{Applied, applied_testbed, median};
use super::monitor::Cycle;

/// Flags of `gitvps bench collect`.
#[derive(Debug, Args)]
pub struct CollectBench {
    /// Nodes (each a simulated dom0 behind a real sshd on 127.0.2.x).
    #[arg(long, default_value_t = 50)]
    pub nodes: usize,
    /// VPSes per node (created by one apply before measuring; all running).
    #[arg(long, default_value_t = 20)]
    pub vps_per_node: usize,
    /// Collection cycles after the first (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub cycles: usize,
    /// Seconds between two cycles' starts (the service's interval is 60 s; the counters move
    /// between cycles either way).
    #[arg(long, default_value_t = 2)]
    pub interval: u64,
}

/// One measured cycle.
struct Measured {
    wall: f64,
    cpu: f64,
    node_cpu: f64,
}

/// Runs the benchmark.
pub fn run(a: &CollectBench) -> anyhow::Result<i32> {
    let tmp = tempfile::tempdir()?;
    let rt = super::plan::runtime()?;
    let Applied {
        bed,
        inv,
        desired,
        nodes,
    } = applied_testbed(tmp.path(), a.nodes, a.vps_per_node, None, &rt)?;
    let fresh = Access {
        creds: executor::ssh::Credentials::from_file(&bed.client_key)?,
        timeouts: executor::ssh::Timeouts::default(),
        parallelism: a.nodes,
        stats: Arc::<ApplyStats>::default(),
        pool: None,
        restic: None,
    };

    let store = Store::open(&tmp.path().join("samples"))?;
    let pool = Arc::new(executor::pool::Pool::default());
    let kept = Access {
        pool: Some(pool.clone()),
        ..fresh
    };
    let cycle = Cycle {
        repo: &bed.repo,
        inv: &inv,
        desired: &desired,
        nodes: &nodes,
        access: &kept,
        limit: Duration::from_secs(30),
    };
    let expected = a.nodes * a.vps_per_node;
    let mut runs = Vec::new();
    for k in 0..=a.cycles.max(1) {
        let started = Instant::now();
        let (n0, c0) = (bed.node_cpu(), cpu_time());
        let done = rt.block_on(cycle.run(&store, None))?;
        let (wall, cpu) = (
            started.elapsed().as_secs_f64(),
            (cpu_time() - c0).as_secs_f64(),
        );
        anyhow::ensure!(
            done.code == 0 && done.missing_nodes == 0,
            "cycle {k}: a node's samples are missing:\n{}",
            done.lines
        );
        // The nodes' side is read once their per-connection work has been accounted.
        std::thread::sleep(Duration::from_millis(300));
        runs.push(Measured {
            wall,
            cpu,
            node_cpu: (bed.node_cpu() - n0).as_secs_f64(),
        });
        let next = started + Duration::from_secs(a.interval);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // Every running VPS has a last reading, and a delta from the second cycle on.
    let mut sampled = 0;
    for v in inv.vps.keys() {
        if store.last_vps(v)?.is_some() && !store.vps_series(v)?.tiers.is_empty() {
            sampled += 1;
        }
    }
    anyhow::ensure!(
        sampled == expected,
        "{sampled} of {expected} VPSes were sampled"
    );
    let first = runs.first().context("no cycle ran")?;
    let later = &runs[1..];
    let n = a.nodes as f64;
    println!(
        "gitvps bench collect: {} nodes × {} VPSes, one collection cycle (collect, store, prune, flush), {} later cycles {} s apart",
        a.nodes,
        a.vps_per_node,
        later.len(),
        a.interval
    );
    println!(
        "  first cycle (key exchange, login): {:.0} ms wall, {:.2} ms control-side CPU per node, {:.1} ms node CPU per node",
        first.wall * 1e3,
        first.cpu * 1e3 / n,
        first.node_cpu * 1e3 / n
    );
    let pick = |f: fn(&Measured) -> f64| median(later.iter().map(f).collect());
    println!(
        "  later cycles (kept connections), median: {:.0} ms wall, {:.2} ms control-side CPU per node (target ≤ 2 ms), {:.1} ms node CPU per node",
        pick(|m| m.wall) * 1e3,
        pick(|m| m.cpu) * 1e3 / n,
        pick(|m| m.node_cpu) * 1e3 / n
    );
    println!(
        "  SSH: {} connection(s) opened for {} cycles, {} reused; {sampled} VPSes sampled; peak memory {} MiB (set-up included)",
        pool.opened.load(Relaxed),
        runs.len(),
        pool.reused.load(Relaxed),
        peak_rss_kib() / 1024
    );
    rt.block_on(pool.close_all());
    Ok(0)
}
