//! Benchmark of the hooks against a local bare repo seeded with the example fleet:
//! handler latency without the push (p50, p99), then committed actions per second over HTTP
//! with 1, 8 and 64 concurrent clients.
//!
//! `cargo run --release -p gitvps-hooks --example bench` (`BENCH_SECS=N` per run, default 5).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    clippy::print_stderr
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Who acts on what: each client takes one pair.
const PAIRS: &[(&str, &str)] = &[
    ("c-0001", "xen02"),
    ("c-0002", "xen03"),
    ("c-0003", "xen04"),
    ("c-0003", "xen01"),
];

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn latency(publish: bool, n: usize) -> Vec<Duration> {
    let fleet = Fleet::unlimited();
    let mut cfg = fleet.config();
    cfg.publish = publish;
    let app = hooks::app(cfg).unwrap();
    let tokens: Vec<(String, &str)> = PAIRS
        .iter()
        .map(|(c, v)| (token_for(&fleet, c), *v))
        .collect();
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let (t, v) = &tokens[i % tokens.len()];
        let path = format!("/api/vps/{v}/reboot");
        let started = Instant::now();
        let (s, body) = call(&app, "POST", &path, Some(t), None).await;
        let took = started.elapsed();
        assert_eq!(s, 200, "{body}");
        if i >= 20 {
            out.push(took);
        }
    }
    out.sort();
    out
}

async fn throughput(clients: usize, secs: u64) -> (f64, u64, u64, Duration) {
    let fleet = Fleet::unlimited();
    let app = Arc::new(hooks::App::new(fleet.config()).unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = l.local_addr().unwrap();
    tokio::spawn(hooks::serve_app(l, app.clone()));
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (c, v) = PAIRS[i % PAIRS.len()];
            let token = token_for(&fleet, c);
            let http = http.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < deadline {
                    let req = axum::http::Request::builder()
                        .method("POST")
                        .uri(format!("http://{addr}/api/vps/{v}/reboot"))
                        .header("authorization", format!("Bearer {token}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    let t0 = Instant::now();
                    let resp = http.request(req).await.unwrap();
                    let status = resp.status();
                    let _ = resp.into_body().collect().await.unwrap();
                    assert_eq!(status, 200);
                    lat.push(t0.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let stats = app.store().stats();
    let commits = stats.commits.load(Ordering::Relaxed);
    let pushes = stats.pushes.load(Ordering::Relaxed);
    // Identical requests pending in one batch share a commit (coalesced).
    assert!(
        commits as usize <= all.len(),
        "at most one commit per request"
    );
    assert_eq!(
        fleet.commit_count(),
        commits as usize + 1,
        "every commit pushed"
    );
    (all.len() as f64 / elapsed, commits, pushes, pct(&all, 0.5))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    if let Ok(filter) = std::env::var("GITVPS_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    eprintln!("gitvps-hooks bench: example fleet, local bare repo, {secs} s per throughput run");
    for (label, publish) in [("without the push", false), ("with the push", true)] {
        let l = latency(publish, 500).await;
        eprintln!(
            "handler latency {label:<17} (n={}): p50 {}  p99 {}  max {}",
            l.len(),
            ms(pct(&l, 0.5)),
            ms(pct(&l, 0.99)),
            ms(*l.last().unwrap())
        );
    }
    for clients in [1, 8, 64] {
        let (rate, commits, pushes, p50) = throughput(clients, secs).await;
        eprintln!(
            "{clients:>2} clients: {rate:>7.1} committed actions/s  ({commits} commits in {pushes} pushes, p50 latency {})",
            ms(p50)
        );
    }
}
