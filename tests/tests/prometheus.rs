//! `/metrics` watched by a real Prometheus: the monitor service collects simulated dom0s behind
//! a real sshd and serves its page, Debian's `prometheus` scrapes it every second, and the
//! series read back through Prometheus's HTTP API equal what the collector stored.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fleet::Fleet;
use support::{Killed, free_port};

/// Waits up to `secs` for `f` to give something.
fn wait<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A GET that tolerates a server not up yet.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    std::net::TcpStream::connect(addr).ok()?;
    Some(support::http(addr, "GET", path, None, ""))
}

/// Every series of `name` Prometheus has now: its labels (`vps`, else `node`, else none) and
/// its value.
fn query(prom: &str, name: &str) -> BTreeMap<String, f64> {
    let (code, body) = get(prom, &format!("/api/v1/query?query={name}")).unwrap_or_default();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().unwrap() {
        let m = &r["metric"];
        let key = m["vps"]
            .as_str()
            .or_else(|| m["node"].as_str())
            .unwrap_or("")
            .to_owned();
        let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
        out.insert(key, value);
    }
    out
}

fn start_prometheus(dir: &Path, target: &str) -> (Killed, String) {
    let port = free_port();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: gitvps\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom-data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("Debian's prometheus (scripts/deps install test)");
    (Killed(child), addr)
}

#[test]
fn prometheus_scrapes_metrics_and_reads_back_what_the_collector_stored() {
    let f = Fleet::new(&["node1", "node2"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen20", "node2", "192.0.2.20", "");
    f.converge();
    // The service collects once when it starts, then not for an hour: its store stays still
    // while Prometheus scrapes it, so the values compare exactly.
    f.edit("gitvps.toml", "interval_secs = 60", "interval_secs = 3600");
    let db = f.dir.path().join("monitor.db");
    let dbs = db.to_str().unwrap();
    // Two readings first, so the nodes' figures (a CPU share needs two) are there too.
    for _ in 0..2 {
        let r = f.gitvps(&["monitor", "collect", "--once", "--db", dbs]);
        assert_eq!(r.code, 0, "{r:?}");
        std::thread::sleep(Duration::from_millis(1200));
    }
    // collect --once has no listener.
    let r = f.gitvps(&[
        "monitor",
        "collect",
        "--once",
        "--db",
        dbs,
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("no listener"), "{r:?}");

    let log = f.dir.path().join("monitor.log");
    let service = Killed(
        f.command(&["monitor", "--db", dbs, "--listen", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let addr = wait(60, "the monitor's listener", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find_map(|l| l.split_once("listening on http://"))
            .map(|(_, a)| a.trim().trim_end_matches("/metrics").to_owned())
    });
    let page = wait(60, "the first collection on /metrics", || {
        get(&addr, "/metrics")
            .filter(|(code, body)| *code == 200 && body.contains("gitvps_monitor_cycles_total 1\n"))
    })
    .1;
    assert!(
        page.contains("gitvps_vps_network_receive_bytes_total{vps=\"xen10\",node=\"node1\"} "),
        "{page}"
    );
    assert!(
        page.contains("gitvps_monitor_last_cycle_nodes_missing 0\n"),
        "{page}"
    );
    for bad in ["/", "/metrics/x", "/nope", "/metrics?x=../../etc"] {
        let (code, _) = get(&addr, bad).unwrap();
        let want = if bad.starts_with("/metrics?") {
            200
        } else {
            404
        };
        assert_eq!(code, want, "{bad}");
    }

    let (_prom, prom) = start_prometheus(f.dir.path(), &addr);
    // Scraped at least once: the collector's health is there.
    wait(90, "Prometheus's first scrape", || {
        get(&prom, "/api/v1/query?query=gitvps_monitor_cycles_total")
            .filter(|(c, _)| *c == 200)
            .and_then(|_| {
                let q = query(&prom, "gitvps_monitor_cycles_total");
                (q.get("") == Some(&1.0)).then_some(())
            })
    });
    let rx = query(&prom, "gitvps_vps_network_receive_bytes_total");
    let writes = query(&prom, "gitvps_vps_disk_writes_total");
    let cpu = query(&prom, "gitvps_vps_cpu_seconds_total");
    let free = query(&prom, "gitvps_node_storage_free_bytes");
    let mem = query(&prom, "gitvps_node_memory_used_bytes");
    let missing = query(&prom, "gitvps_monitor_last_cycle_nodes_missing");
    let up = query(&prom, "up");
    assert_eq!(up.get(""), Some(&1.0), "{up:?}");
    assert_eq!(missing.get(""), Some(&0.0));
    assert_eq!(
        rx.keys().collect::<Vec<_>>(),
        ["xen10", "xen20"],
        "one series per VPS"
    );

    // Stop the service and read its store: Prometheus holds exactly what it stored.
    let pid = service.0.id().to_string();
    Command::new("kill").arg(&pid).status().unwrap();
    let mut service = service;
    wait(30, "the service to stop", || service.0.try_wait().unwrap());
    let store = executor::samples::Store::open(&db).unwrap();
    for vps in ["xen10", "xen20"] {
        let s = store.last_vps(&vps.parse().unwrap()).unwrap().unwrap();
        assert!(s.counters.net_rx_bytes > 0, "{s:?}");
        assert_eq!(rx[vps], s.counters.net_rx_bytes as f64, "{vps}");
        assert_eq!(writes[vps], s.counters.disk_write_ops as f64, "{vps}");
        assert_eq!(cpu[vps], s.counters.cpu_ms as f64 / 1000.0, "{vps}");
    }
    for node in ["node1", "node2"] {
        let (_, b) = store.last_node(&node.parse().unwrap()).unwrap().unwrap();
        assert_eq!(free[node], b.storage_free.avg() as f64, "{node}");
        assert_eq!(mem[node], b.mem_used.avg() as f64, "{node}");
    }
}
