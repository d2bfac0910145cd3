//! `gitvps bench`: measurements on generated fleets, reported against their targets.
//! Benchmarks print figures; tests never assert on wall-clock time.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Generate a fleet, then time loading and validating it.
    Validate(ValidateBench),
    /// Stand up simulated nodes behind real sshds, then time observe + plan against OpenSSH.
    Plan(PlanBench),
    /// Serve the hooks, then time a real login alone and while 200 bad logins run at once.
    Login(super::bench_login::LoginBench),
}

/// Flags of `gitvps bench validate`.
#[derive(Debug, Args)]
pub struct ValidateBench {
    /// Nodes to generate.
    #[arg(long, default_value_t = 1000)]
    pub nodes: u32,
    /// VPSes to generate (spread evenly over the nodes).
    #[arg(long, default_value_t = 50_000)]
    pub vps: u32,
    /// Runs to time (the best and the median are reported).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Generate into this folder instead of a temporary one (kept afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
}

/// Runs a benchmark.
pub fn run(c: BenchCommand) -> anyhow::Result<i32> {
    match c {
        BenchCommand::Validate(a) => validate(&a),
        BenchCommand::Plan(a) => plan_bench(&a),
        BenchCommand::Login(a) => super::bench_login::run(&a),
    }
}

const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81";
const USER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnZACIYs/1sMOT4kyilhseeocsdXihGHPmj1hWLWg3q bench";

/// Writes a valid fleet of `nodes` nodes and `vps` VPSes under `root`.
///
/// Each node gets its own /21 pool in 10.0.0.0/8 (2046 addresses) and capacity
/// for its share of 1 GiB / 20 GiB / 1 vCPU VPSes.
pub fn generate(root: &Path, nodes: u32, vps: u32) -> anyhow::Result<()> {
    anyhow::ensure!(nodes > 0 && nodes <= 2048, "--nodes must be 1 to 2048");
    let per_node = vps.div_ceil(nodes);
    anyhow::ensure!(per_node <= 2000, "at most 2000 VPSes per node");
    for d in ["inventory/nodes", "inventory/customers", "inventory/vps"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::write(
        root.join("products.toml"),
        "currency = \"USD\"\n\n[[product]]\nid = \"std\"\nname = \"Standard\"\nperiod_months = 1\nprice = \"10.00\"\ndisk = \"20 GiB\"\nram = \"1 GiB\"\nvcpus = 1\ntraffic = \"1 TiB\"\n\n[[product]]\nid = \"std-12m\"\nrenews = \"std\"\nname = \"Standard, yearly\"\nperiod_months = 12\nprice = \"100.00\"\n",
    )?;
    let mut pools = String::new();
    for n in 0..nodes {
        let (a, b) = (n / 32, (n % 32) * 8);
        writeln!(
            pools,
            "[[pool]]\nid = \"p{n}\"\nlocation = \"Zone {}\"\nnetwork = \"10.{a}.{b}.0/21\"\ngateway = \"10.{a}.{b}.1\"\ndns = [\"10.{a}.{b}.2\"]\nreserved = [\"10.{a}.{b}.2-10.{a}.{b}.9\"]\nipv6 = \"2001:db8:{n:x}::/48\"\n",
            n % 20
        )?;
    }
    std::fs::write(root.join("pools.toml"), pools)?;
    let customers = (vps / 10).max(1);
    for c in 0..customers {
        std::fs::write(
            root.join(format!("inventory/customers/c-{c:06}.toml")),
            format!(
                "name = \"Customer {c}\"\nemail = \"c{c}@example.net\"\nssh_keys = [\"{USER_KEY}\"]\n"
            ),
        )?;
    }
    let mut made = 0u32;
    for n in 0..nodes {
        std::fs::write(
            root.join(format!("inventory/nodes/n{n:04}.toml")),
            format!(
                "address = \"192.0.2.{}\"\nport = {}\nuser = \"gitvps\"\nhost_key = \"{HOST_KEY}\"\nlocation = \"Zone {}\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\npools = [\"p{n}\"]\ncapacity = {{ ram = \"{} GiB\", disk = \"{} GiB\", vcpus = {} }}\n",
                n % 250 + 1,
                22 + n / 250,
                n % 20,
                per_node,
                per_node * 20,
                per_node
            ),
        )?;
        let (a, b) = (n / 32, (n % 32) * 8);
        for i in 0..per_node {
            if made == vps {
                break;
            }
            let host = 10 + i;
            let ip = format!("10.{a}.{}.{}", b + host / 256, host % 256);
            std::fs::write(
                root.join(format!("inventory/vps/v{made:06}.toml")),
                format!(
                    "customer = \"c-{:06}\"\nproduct = \"std\"\nnode = \"n{n:04}\"\nips = [\"{ip}\", \"2001:db8:{n:x}:{:x}::/64\"]\nhostname = \"v{made}.example.net\"\nos = \"debian-12\"\npower = \"running\"\nstate = \"active\"\ncreated = 2025-01-01\nexpires = 2026-01-01\n\n[actions]\nreboot = 0\nfsck = 0\nreinstall = 0\n",
                    made % customers,
                    i + 1
                ),
            )?;
            made += 1;
        }
    }
    Ok(())
}

fn validate(a: &ValidateBench) -> anyhow::Result<i32> {
    let tmp;
    let root = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let t0 = Instant::now();
    generate(&root, a.nodes, a.vps).context("cannot generate the fleet")?;
    println!(
        "generated {} nodes, {} VPSes in {:.0} ms",
        a.nodes,
        a.vps,
        t0.elapsed().as_secs_f64() * 1e3
    );
    let mut times = Vec::new();
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        let inv = model::Inventory::load(&root)
            .map_err(|e| anyhow::anyhow!("the generated fleet is invalid: {e}"))?;
        times.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            inv.vps.len() == a.vps as usize,
            "loaded {} VPSes",
            inv.vps.len()
        );
    }
    times.sort_by(f64::total_cmp);
    let best = times[0];
    let median = times[times.len() / 2];
    println!(
        "load + validate: best {:.0} ms, median {:.0} ms over {} runs ({:.2}x the 1 s target; {:.1} µs per VPS)",
        best * 1e3,
        median * 1e3,
        times.len(),
        median,
        median * 1e6 / f64::from(a.vps.max(1))
    );
    Ok(0)
}

/// Flags of `gitvps bench plan`.
#[derive(Debug, Args)]
pub struct PlanBench {
    /// Nodes (each a simulated dom0 behind a real sshd on 127.0.2.x).
    #[arg(long, default_value_t = 10)]
    pub nodes: usize,
    /// VPSes per node (created by one apply before measuring).
    #[arg(long, default_value_t = 20)]
    pub vps_per_node: usize,
    /// Measured rounds (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn plan_bench(a: &PlanBench) -> anyhow::Result<i32> {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    use executor::apply::{Access, ApplyStats, LogProgress, apply_all, observe_all};
    use executor::usage::{cpu_time, peak_rss_kib};
    use sim::testbed::{Testbed, observe_remote};

    let tmp = tempfile::tempdir()?;
    let bed = Testbed::start(tmp.path(), a.nodes, a.vps_per_node)?;
    let inv = model::Inventory::load(&bed.repo)
        .map_err(|e| anyhow::anyhow!("the bench fleet is invalid: {e}"))?;
    let desired = Arc::new(planner::desired::desired(
        &inv,
        &planner::desired::Templates::default(),
        &planner::desired::Bootstraps::default(),
    )?);
    let nodes: Vec<model::NodeId> = inv.nodes.keys().cloned().collect();
    let access = |stats: Arc<ApplyStats>| -> anyhow::Result<Access> {
        Ok(Access {
            creds: executor::ssh::Credentials::from_file(&bed.client_key)?,
            timeouts: executor::ssh::Timeouts::default(),
            parallelism: a.nodes,
            stats,
        })
    };
    let rt = super::plan::runtime()?;
    let t = Instant::now();
    let outcomes = rt.block_on(apply_all(
        &inv,
        &desired,
        &nodes,
        None,
        &access(Arc::default())?,
        Arc::new(LogProgress),
    ));
    let failed = outcomes
        .values()
        .filter(|o| {
            !matches!(
                o,
                executor::apply::NodeOutcome::Applied { .. }
                    | executor::apply::NodeOutcome::NoChanges
            )
        })
        .count();
    anyhow::ensure!(
        failed == 0,
        "{failed} node(s) failed to apply: {:?}",
        outcomes
            .values()
            .find(|o| !matches!(o, executor::apply::NodeOutcome::Applied { .. }))
    );
    println!(
        "set up {} nodes × {} VPSes (one apply) in {:.1} s",
        a.nodes,
        a.vps_per_node,
        t.elapsed().as_secs_f64()
    );

    let (mut walls, mut cpus, mut conns, mut execs) = (Vec::new(), Vec::new(), 0, 0);
    for _ in 0..a.runs.max(1) {
        let stats = Arc::new(ApplyStats::default());
        let acc = access(stats.clone())?;
        let (c0, t0) = (cpu_time(), Instant::now());
        let observed = rt.block_on(observe_all(&inv, &desired, &nodes, &acc));
        let plan = planner::plan::plan(&desired, &observed);
        walls.push(t0.elapsed().as_secs_f64());
        cpus.push((cpu_time() - c0).as_secs_f64());
        anyhow::ensure!(
            !plan.has_changes() && !plan.has_unreachable(),
            "the fleet did not converge:\n{}",
            planner::plan::render(&plan)
        );
        conns = stats.connections.load(Relaxed);
        execs = stats.execs.load(Relaxed);
    }
    // The same observe script through N parallel OpenSSH clients.
    let mut ssh_walls = Vec::new();
    for _ in 0..a.runs.max(1) {
        let t0 = Instant::now();
        let children: Vec<_> = (0..a.nodes)
            .map(|i| {
                let root = tmp.path().join(format!("nodes/n{i:03}"));
                bed.openssh(i, &observe_remote(&root.to_string_lossy()))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for mut c in children {
            anyhow::ensure!(c.wait()?.success(), "an OpenSSH client failed");
        }
        ssh_walls.push(t0.elapsed().as_secs_f64());
    }
    let (wall, cpu, ssh) = (median(walls), median(cpus), median(ssh_walls));
    let n = a.nodes as f64;
    println!(
        "observe + plan, {} nodes × {} VPSes, median of {} runs:",
        a.nodes,
        a.vps_per_node,
        a.runs.max(1)
    );
    println!(
        "  wall time            {:.0} ms (OpenSSH clients: {:.0} ms; ratio {:.2}x, target ≤ 0.75x)",
        wall * 1e3,
        ssh * 1e3,
        wall / ssh
    );
    println!(
        "  reconciler CPU       {:.2} ms per node (target ≤ 2 ms)",
        cpu * 1e3 / n
    );
    println!(
        "  SSH per node         {:.1} connection(s), {:.1} exec(s) (target 1 and 1)",
        conns as f64 / n,
        execs as f64 / n
    );
    println!(
        "  peak memory          {} MiB (whole process, set-up included)",
        peak_rss_kib() / 1024
    );
    Ok(0)
}
