//! `gitvps bench scale`: the control side's CPU and memory per node for observe + plan at
//! 1,000 and 10,000 nodes, served by a separate process of canned in-process SSH nodes.

use std::io::{BufRead as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use executor::apply::{Access, observe_all};
use executor::usage::{cpu_time, peak_rss_kib};

/// Flags of `gitvps bench scale`.
#[derive(Debug, Args)]
pub struct ScaleBench {
    /// Fleet sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub nodes: Vec<usize>,
    /// VPSes declared per node.
    #[arg(long, default_value_t = 2)]
    pub vps_per_node: usize,
    /// Nodes observed at once.
    #[arg(long, default_value_t = 64)]
    pub parallelism: usize,
}

/// What an empty Xen node with LVM answers to observe (the canned nodes answer it to
/// everything): the plan then creates every declared VPS.
const EMPTY_NODE: &str = r#"{"version":1,"hypervisor":"xen","domains_long":[],"domains":[],"lvs":{"report":[{"lv":[]}]},"configs":[],"records":[],"consoles":[],"now":1780000000}"#;

/// Runs the benchmark.
pub fn run(a: &ScaleBench) -> anyhow::Result<i32> {
    anyhow::ensure!(
        a.nodes.iter().all(|&n| (1..=20_000).contains(&n)),
        "--nodes: each from 1 to 20000"
    );
    println!(
        "observe + plan against canned nodes (a separate process answers every SSH exec with an empty node's report, so what is measured is this side alone: the SSH handshakes, the reads, the parse and the plan), {} VPS(es) per node, {} at once:",
        a.vps_per_node, a.parallelism
    );
    for &n in &a.nodes {
        one(n, a)?;
    }
    Ok(0)
}

fn one(nodes: usize, a: &ScaleBench) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let key = sim::nodeserver::generate_key()?;
    sim::nodeserver::write_key(&key, &dir.join("client_key"))?;
    std::fs::write(dir.join("answer.json"), EMPTY_NODE)?;
    let mut server = Command::new(std::env::current_exe()?)
        .args(["node-sim", "serve-canned", "--nodes", &nodes.to_string()])
        .arg("--client-key")
        .arg(dir.join("client_key.pub"))
        .arg("--answer")
        .arg(dir.join("answer.json"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start the canned nodes")?;
    let mut lines = std::io::BufReader::new(server.stdout.take().context("no stdout")?).lines();
    let mut served = Vec::with_capacity(nodes);
    for _ in 0..nodes {
        let line = lines.next().context("the canned nodes stopped early")??;
        let (addr, key) = line.split_once(' ').context("a canned node line")?;
        served.push((addr.to_owned(), key.to_owned()));
    }
    let repo = dir.join("repo");
    write_fleet(&repo, &served, a.vps_per_node)?;
    let rt = super::plan::runtime()?;
    let (rss0, c0) = (peak_rss_kib(), cpu_time());
    let t0 = Instant::now();
    let inv = model::Inventory::load(&repo)
        .map_err(|e| anyhow::anyhow!("the generated fleet is invalid: {e}"))?;
    let desired = Arc::new(planner::desired::desired(
        &inv,
        &planner::desired::Templates::default(),
        &planner::desired::Bootstraps::default(),
    )?);
    let load = t0.elapsed().as_secs_f64();
    let ids: Vec<model::NodeId> = inv.nodes.keys().cloned().collect();
    let access = Access {
        creds: executor::ssh::Credentials::Key(Arc::new(key)),
        timeouts: executor::ssh::Timeouts::default(),
        parallelism: a.parallelism,
        stats: Arc::default(),
        pool: None,
        restic: None,
    };
    let (c1, t1) = (cpu_time(), Instant::now());
    let observed = rt.block_on(observe_all(&inv, &desired, &ids, &access));
    let plan = planner::plan::plan(&desired, &observed);
    let wall = t1.elapsed().as_secs_f64();
    let cpu = (cpu_time() - c1).as_secs_f64();
    let all_cpu = (cpu_time() - c0).as_secs_f64();
    let unreachable = (plan.nodes.iter())
        .filter(|p| matches!(p, planner::plan::NodePlan::Unreachable { .. }))
        .count();
    if let Some(mut stdin) = server.stdin.take() {
        let _ = stdin.write_all(b"");
    }
    let _ = server.kill();
    let _ = server.wait();
    let n = nodes as f64;
    println!(
        "  {nodes:>6} nodes: observe + plan {:.1} s wall, {:.2} ms control CPU per node; load + desired {:.1} s; {} unreachable; peak memory {} MiB (was {} MiB before loading; {:.1} KiB per node); {:.2} ms CPU per node in all",
        wall,
        cpu * 1e3 / n,
        load,
        unreachable,
        peak_rss_kib() / 1024,
        rss0 / 1024,
        (peak_rss_kib().saturating_sub(rss0)) as f64 / n,
        all_cpu * 1e3 / n,
    );
    anyhow::ensure!(
        unreachable == 0,
        "{unreachable} canned node(s) did not answer"
    );
    Ok(())
}

/// A fleet of `served` nodes, each with its own pool and `vps` VPSes.
fn write_fleet(
    repo: &std::path::Path,
    served: &[(String, String)],
    vps: usize,
) -> anyhow::Result<()> {
    for d in ["inventory/nodes", "inventory/customers", "inventory/vps"] {
        std::fs::create_dir_all(repo.join(d))?;
    }
    std::fs::write(
        repo.join("products.toml"),
        "currency = \"USD\"\n\n[[product]]\nid = \"std\"\nname = \"Standard\"\nperiod_months = 1\nprice = \"10.00\"\ndisk = \"20 GiB\"\nram = \"1 GiB\"\nvcpus = 1\ntraffic = \"1 TiB\"\n",
    )?;
    std::fs::write(
        repo.join("inventory/customers/c-0001.toml"),
        "name = \"Scale\"\nemail = \"scale@example.net\"\n",
    )?;
    let mut pools = String::new();
    for (i, (addr, host_key)) in served.iter().enumerate() {
        let (a, b) = (i / 256, i % 256);
        pools.push_str(&format!(
            "[[pool]]\nid = \"p{i}\"\nlocation = \"Scale\"\nnetwork = \"10.{a}.{b}.0/24\"\ngateway = \"10.{a}.{b}.1\"\n\n"
        ));
        let (host, port) = addr.rsplit_once(':').context("an address with a port")?;
        std::fs::write(
            repo.join(format!("inventory/nodes/n{i:05}.toml")),
            format!(
                "address = \"{host}\"\nport = {port}\nuser = \"root\"\nhost_key = \"{host_key}\"\nlocation = \"Scale\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\npools = [\"p{i}\"]\ncapacity = {{ ram = \"256 GiB\", disk = \"8 TiB\", vcpus = 256 }}\n"
            ),
        )?;
        for j in 0..vps {
            std::fs::write(
                repo.join(format!("inventory/vps/v{i:05}x{j:02}.toml")),
                format!(
                    "customer = \"c-0001\"\nproduct = \"std\"\nnode = \"n{i:05}\"\nips = [\"10.{a}.{b}.{}\"]\nhostname = \"v{i}x{j}.example.net\"\nos = \"debian-12\"\ncreated = 2026-01-01\nexpires = 2027-01-01\n",
                    j + 10
                ),
            )?;
        }
    }
    std::fs::write(repo.join("pools.toml"), pools)?;
    Ok(())
}
