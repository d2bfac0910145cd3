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
    /// Stand up simulated nodes behind real sshds (50 × 20 new VPSes), then time their first
    /// apply against OpenSSH clients running the same node programs, in alternating rounds.
    Apply(super::bench_apply::ApplyBench),
    /// Serve the hooks, then time a real login alone and while 200 bad logins run at once.
    Login(super::bench_login::LoginBench),
    /// Generate a fleet (as `bench validate`), then time billing's decision and the whole
    /// `billing run --dry-run` path, with peak memory, and the size of the commit a run makes.
    Billing(ValidateBench),
    /// The demo fleet under a steady load of customer clicks through the hooks, applied as
    /// they land while the nodes flap: actions committed, applied and lost, and memory growth.
    Soak(super::demo::soak::SoakArgs),
    /// Observe + plan against 1,000 and 10,000 canned nodes served by a separate process: the
    /// control side's CPU and memory per node.
    Scale(super::bench_scale::ScaleBench),
    /// The sample store's size per VPS after a year of collections, and a /metrics scrape of
    /// 1,000 VPSes.
    Monitor(super::bench_monitor::MonitorBench),
    /// A month of samples for a node's VPSes in a sled store, then the time to read and draw
    /// a month graph (target ≤ 20 ms), a week's, a year's, and the comparison.
    Graph(super::bench_graph::GraphBench),
    /// Stand up simulated nodes behind real sshds (50 × 20 VPSes), then time the collector's
    /// cycles: wall time and control-side CPU per node, first cycle and over kept connections.
    Collect(super::bench_collect::CollectBench),
    /// Move a VPS with a 1 GiB disk between two simulated nodes behind real sshds, against
    /// `dd | ssh | dd` of the same disk in the same run (target ≤ 1.5×).
    Move(super::bench_move::MoveBench),
    /// Back up and restore a VPS's 1 GiB disk with real restic on a simulated node behind a
    /// real sshd, against `dd | ssh | dd` of the same disk; then an incremental backup after a
    /// 1 % change.
    Backup(super::bench_backup::BackupBench),
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
        BenchCommand::Apply(a) => super::bench_apply::run(&a),
        BenchCommand::Login(a) => super::bench_login::run(&a),
        BenchCommand::Billing(a) => billing_bench(&a),
        BenchCommand::Soak(a) => super::demo::soak::run(&a),
        BenchCommand::Scale(a) => super::bench_scale::run(&a),
        BenchCommand::Monitor(a) => super::bench_monitor::run(&a),
        BenchCommand::Graph(a) => super::bench_graph::run(&a),
        BenchCommand::Collect(a) => super::bench_collect::run(&a),
        BenchCommand::Move(a) => super::bench_move::run(&a),
        BenchCommand::Backup(a) => super::bench_backup::run(&a),
    }
}

const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81";
const USER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnZACIYs/1sMOT4kyilhseeocsdXihGHPmj1hWLWg3q bench";

/// The day the billing benchmark decides for: the generated expiries spread around it.
pub const BILLING_DAY: &str = "2026-06-15";

/// The expiry of generated VPS `n`: spread over a year from ten days before [`BILLING_DAY`]
/// (stepping 7 days, so neighbours differ), as a steady fleet whose earlier runs were done:
/// a few suspensions, a month of renewals and reminders ahead.
fn expiry(n: u32) -> chrono::NaiveDate {
    let start = chrono::NaiveDate::from_ymd_opt(2026, 6, 5).unwrap_or_default();
    start + chrono::Days::new(u64::from(n.wrapping_mul(7) % 365))
}

/// Writes a valid fleet of `nodes` nodes and `vps` VPSes under `root`.
///
/// Each node gets its own /21 pool in 10.0.0.0/8 (2046 addresses) and capacity
/// for its share of 1 GiB / 20 GiB / 1 vCPU VPSes; expiries spread over a year.
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
                    "customer = \"c-{:06}\"\nproduct = \"std\"\nnode = \"n{n:04}\"\nips = [\"{ip}\", \"2001:db8:{n:x}:{:x}::/64\"]\nhostname = \"v{made}.example.net\"\nos = \"debian-12\"\npower = \"running\"\nstate = \"active\"\ncreated = 2025-01-01\nexpires = {}\n\n[actions]\nreboot = 0\nfsck = 0\nreinstall = 0\n",
                    made % customers,
                    i + 1,
                    expiry(made)
                ),
            )?;
            made += 1;
        }
    }
    Ok(())
}

/// Generates the fleet of `a` into `--dir` or a temporary folder (removed with the guard).
fn generated(a: &ValidateBench) -> anyhow::Result<(Option<tempfile::TempDir>, std::path::PathBuf)> {
    let (tmp, root) = match &a.dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::tempdir()?;
            let root = t.path().to_path_buf();
            (Some(t), root)
        }
    };
    generate(&root, a.nodes, a.vps).context("cannot generate the fleet")?;
    Ok((tmp, root))
}

fn validate(a: &ValidateBench) -> anyhow::Result<i32> {
    let t0 = Instant::now();
    let (_tmp, root) = generated(a)?;
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
    /// Measured rounds of each client, alternating (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// After measuring, keep the testbed up (until Ctrl-C) and print how to reach it, so other
    /// tools can be measured against the same fleet.
    #[arg(long)]
    pub keep: bool,
    /// VPSes of one node whose steps run side by side in the set-up apply
    /// (`[reconciler] vps_at_once`; the default's when absent).
    #[arg(long)]
    pub vps_at_once: Option<u32>,
}

/// The median of `v` (the upper one of an even count); `v` must not be empty.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A testbed whose fleet is applied: every VPS created and running.
pub(crate) struct Applied {
    /// The sshds and node roots.
    pub(crate) bed: sim::testbed::Testbed,
    /// Its inventory.
    pub(crate) inv: model::Inventory,
    /// Its desired state.
    pub(crate) desired: std::sync::Arc<planner::desired::Desired>,
    /// Every node.
    pub(crate) nodes: Vec<model::NodeId>,
}

/// Stands up `nodes` simulated nodes behind real sshds with `vps_per_node` VPSes each under
/// `dir` (`[reconciler] vps_at_once` set when given), not applied yet: an [`Applied`] but for
/// that.
pub(crate) fn new_testbed(
    dir: &Path,
    nodes: usize,
    vps_per_node: usize,
    vps_at_once: Option<u32>,
) -> anyhow::Result<Applied> {
    let bed = sim::testbed::Testbed::start(dir, nodes, vps_per_node)?;
    if let Some(n) = vps_at_once {
        std::fs::write(
            bed.repo.join("gitvps.toml"),
            format!("[reconciler]\nvps_at_once = {n}\n"),
        )?;
    }
    let inv = model::Inventory::load(&bed.repo)
        .map_err(|e| anyhow::anyhow!("the bench fleet is invalid: {e}"))?;
    let desired = std::sync::Arc::new(planner::desired::desired(
        &inv,
        &planner::desired::Templates::default(),
        &planner::desired::Bootstraps::default(),
    )?);
    let ids = inv.nodes.keys().cloned().collect();
    Ok(Applied {
        bed,
        inv,
        desired,
        nodes: ids,
    })
}

/// Stands up `nodes` simulated nodes behind real sshds with `vps_per_node` VPSes each under
/// `dir` (`[reconciler] vps_at_once` set when given), applies the fleet over fresh
/// connections, and prints how long that took.
pub(crate) fn applied_testbed(
    dir: &Path,
    nodes: usize,
    vps_per_node: usize,
    vps_at_once: Option<u32>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Applied> {
    use executor::apply::{Access, LogProgress, NodeOutcome, apply_all};
    use std::sync::Arc;

    let Applied {
        bed,
        inv,
        desired,
        nodes: ids,
    } = new_testbed(dir, nodes, vps_per_node, vps_at_once)?;
    let access = Access {
        creds: executor::ssh::Credentials::from_file(&bed.client_key)?,
        timeouts: executor::ssh::Timeouts::default(),
        parallelism: nodes,
        stats: Arc::default(),
        pool: None,
        restic: None,
    };
    let t = Instant::now();
    let outcomes = rt.block_on(apply_all(
        &inv,
        &desired,
        &ids,
        None,
        &access,
        Arc::new(LogProgress),
    ));
    let bad = |o: &&NodeOutcome| !matches!(o, NodeOutcome::Applied { .. } | NodeOutcome::NoChanges);
    let failed = outcomes.values().filter(bad).count();
    anyhow::ensure!(
        failed == 0,
        "{failed} node(s) failed to apply: {:?}",
        outcomes.values().find(bad)
    );
    println!(
        "set up {nodes} nodes × {vps_per_node} VPSes behind real sshds (one apply, {} VPS(es) of a node side by side) in {:.1} s",
        inv.settings.reconciler.vps_at_once,
        t.elapsed().as_secs_f64()
    );
    Ok(Applied {
        bed,
        inv,
        desired,
        nodes: ids,
    })
}

/// Pins the testbed's OpenSSH clients to what russh negotiates with its sshds (so a ratio does
/// not measure two different key exchanges) and prints it, with the login user.
pub(crate) fn pin_openssh(
    bed: &mut sim::testbed::Testbed,
    inv: &model::Inventory,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let first = inv
        .nodes
        .values()
        .next()
        .context("the bench fleet has no node")?;
    let creds = executor::ssh::Credentials::from_file(&bed.client_key)?;
    let user = bed.user.clone();
    let neg = bed.negotiated(|host, port| {
        let target = executor::ssh::SshTarget {
            node: "probe".into(),
            host: host.into(),
            port,
            user,
            host_key: first.host_key.to_string(),
        };
        rt.block_on(async {
            match executor::ssh::Session::connect(&target, &creds, Default::default()).await {
                Ok(s) => {
                    s.close().await;
                    true
                }
                Err(_) => false,
            }
        })
    })?;
    bed.openssh_options = neg.openssh_options();
    println!(
        "SSH as negotiated by gitvps (russh) and pinned for OpenSSH: key exchange {}, host key {}, cipher {}, MAC {}",
        neg.kex, neg.host_key, neg.cipher, neg.mac
    );
    println!(
        "login user {}{}",
        bed.user,
        if bed.user == sim::testbed::LEAN_USER {
            " (shell /bin/sh: no start-up files)"
        } else {
            " (its own login shell and start-up files: run as root for a lean /bin/sh user)"
        }
    );
    Ok(())
}

fn plan_bench(a: &PlanBench) -> anyhow::Result<i32> {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    use executor::apply::{Access, ApplyStats, observe_all};
    use executor::usage::{cpu_time, peak_rss_kib};
    use sim::testbed::observe_remote;

    let tmp = tempfile::tempdir()?;
    let rt = super::plan::runtime()?;
    let Applied {
        mut bed,
        inv,
        desired,
        nodes,
    } = applied_testbed(tmp.path(), a.nodes, a.vps_per_node, a.vps_at_once, &rt)?;
    pin_openssh(&mut bed, &inv, &rt)?;
    let access = |stats: Arc<ApplyStats>| -> anyhow::Result<Access> {
        Ok(Access {
            creds: executor::ssh::Credentials::from_file(&bed.client_key)?,
            timeouts: executor::ssh::Timeouts::default(),
            parallelism: a.nodes,
            stats,
            pool: None,
            restic: None,
        })
    };

    // Alternating rounds, so both clients meet the same moments of a noisy machine. The
    // nodes' CPU is read from the sshds once their per-connection children are reaped.
    let settle = || std::thread::sleep(std::time::Duration::from_millis(300));
    let (mut walls, mut cpus, mut conns, mut execs) = (Vec::new(), Vec::new(), 0, 0);
    let (mut ssh_walls, mut node_g, mut node_o) = (Vec::new(), Vec::new(), Vec::new());
    // The collector's and the demo's way: connections kept from one cycle to the next (opened
    // once here, before the rounds), so a round pays no key exchange.
    let pool = Arc::new(executor::pool::Pool::default());
    let kept = Access {
        pool: Some(pool.clone()),
        ..access(Arc::default())?
    };
    rt.block_on(observe_all(&inv, &desired, &nodes, &kept));
    let (mut kept_walls, mut kept_cpus, mut node_k) = (Vec::new(), Vec::new(), Vec::new());
    let (mut proc_walls, mut proc_cpus, mut proc_peak) = (Vec::new(), Vec::new(), 0);
    settle();
    for _ in 0..a.runs.max(1) {
        let stats = Arc::new(ApplyStats::default());
        let acc = access(stats.clone())?;
        let (n0, c0, t0) = (bed.node_cpu(), cpu_time(), Instant::now());
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
        settle();
        node_g.push((bed.node_cpu() - n0).as_secs_f64());

        let (n0, c0, t0) = (bed.node_cpu(), cpu_time(), Instant::now());
        let observed = rt.block_on(observe_all(&inv, &desired, &nodes, &kept));
        let plan = planner::plan::plan(&desired, &observed);
        kept_walls.push(t0.elapsed().as_secs_f64());
        kept_cpus.push((cpu_time() - c0).as_secs_f64());
        anyhow::ensure!(
            !plan.has_changes() && !plan.has_unreachable(),
            "the fleet did not converge over kept connections:\n{}",
            planner::plan::render(&plan)
        );
        settle();
        node_k.push((bed.node_cpu() - n0).as_secs_f64());

        // `gitvps plan` as its own process, as CI runs it (every node at once, as above): its
        // peak memory and CPU alone.
        let key = bed.client_key.as_os_str();
        let all = a.nodes.to_string();
        let args = ["plan", "--parallelism", all.as_str()];
        let (w, peak, code, cpu) = measure_child_env(&bed.repo, &args, &[("GITVPS_SSH_KEY", key)])?;
        // 0: nothing to do (as the rounds above found); 2 would be changes, still a plan.
        anyhow::ensure!(matches!(code, Some(0 | 2)), "gitvps plan exited {code:?}");
        proc_walls.push(w);
        proc_cpus.push(cpu);
        proc_peak = proc_peak.max(peak);
        settle();

        // The same observe script through N parallel OpenSSH clients.
        let (n0, t0) = (bed.node_cpu(), Instant::now());
        let children: Vec<_> = (0..a.nodes)
            .map(|i| {
                let root = bed.dir().join(format!("nodes/n{i:03}"));
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
        settle();
        node_o.push((bed.node_cpu() - n0).as_secs_f64());
    }
    let (wall, cpu, ssh) = (median(walls), median(cpus), median(ssh_walls));
    let n = a.nodes as f64;
    println!(
        "observe + plan, {} nodes × {} VPSes, median of {} alternating rounds:",
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
        "  reconciler CPU       {:.2} ms per node (target ≤ 1 ms)",
        cpu * 1e3 / n
    );
    println!(
        "  node CPU per observe {:.1} ms per node with gitvps, {:.1} ms with OpenSSH (sshd, login shell, script and tools; target ≤ 25 ms)",
        median(node_g) * 1e3 / n,
        median(node_o) * 1e3 / n
    );
    println!(
        "  SSH per node         {:.1} connection(s), {:.1} exec(s) (target 1 and 1)",
        conns as f64 / n,
        execs as f64 / n
    );
    let kept_wall = median(kept_walls);
    println!(
        "  kept connections     {:.0} ms wall ({:.2}x the fresh connections), {:.2} ms reconciler CPU and {:.1} ms node CPU per node ({} opened for all rounds)",
        kept_wall * 1e3,
        kept_wall / wall,
        median(kept_cpus) * 1e3 / n,
        median(node_k) * 1e3 / n,
        pool.opened.load(Relaxed)
    );
    rt.block_on(pool.close_all());
    println!(
        "  gitvps plan process  {:.0} ms wall, {:.2} ms CPU per node (10 ms ticks), peak {} MiB (target ≤ 32 MiB at 50 nodes)",
        median(proc_walls) * 1e3,
        median(proc_cpus) * 1e3 / n,
        proc_peak / 1024
    );
    println!(
        "  peak memory          {} MiB (this bench process: the set-up apply included)",
        peak_rss_kib() / 1024
    );
    if let Some(t) = ansible_raw(&bed, a.nodes)? {
        println!(
            "  Ansible raw          {:.0} ms for the same observe on every node (ratio gitvps/Ansible {:.2}x)",
            t * 1e3,
            wall / t
        );
    } else {
        println!("  Ansible raw          skipped: `ansible` is not on PATH");
    }
    if a.keep {
        println!(
            "Testbed kept up until Ctrl-C:\n  repo {}\n  nodes {}..{} port {} user {}\n  client key {}\n  known_hosts {}\n  OpenSSH options {}",
            bed.repo.display(),
            bed.addrs[0],
            bed.addrs[bed.addrs.len() - 1],
            bed.port,
            bed.user,
            bed.client_key.display(),
            bed.known_hosts.display(),
            bed.openssh_options.join(" ")
        );
        rt.block_on(tokio::signal::ctrl_c())?;
    }
    Ok(0)
}

/// The observe on every node of the testbed through Ansible's `raw` module (one fork per
/// node), when `ansible` is on PATH; its wall time in seconds.
fn ansible_raw(bed: &sim::testbed::Testbed, nodes: usize) -> anyhow::Result<Option<f64>> {
    use sim::testbed::observe_remote;
    let found = std::process::Command::new("ansible")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        return Ok(None);
    }
    let mut inv = String::from("[nodes]\n");
    for (i, addr) in bed.addrs.iter().enumerate() {
        inv.push_str(&format!(
            "n{i:03} ansible_host={addr} ansible_port={} ansible_user={}\n",
            bed.port, bed.user
        ));
    }
    let path = bed.dir().join("ansible-hosts");
    std::fs::write(&path, inv)?;
    let root = bed.dir().join("nodes/n000");
    // Every node runs the observe of its own root: the command is the same but for the root.
    let cmd = observe_remote(&root.to_string_lossy()).replace("/n000", "/{{ inventory_hostname }}");
    let ssh_args = std::iter::once(format!(
        "-o UserKnownHostsFile={}",
        bed.known_hosts.display()
    ))
    .chain(bed.openssh_options.iter().map(|o| format!("-o {o}")))
    .collect::<Vec<_>>()
    .join(" ");
    let t0 = Instant::now();
    let out = std::process::Command::new("ansible")
        .arg("nodes")
        .arg("-i")
        .arg(&path)
        .args(["-m", "raw", "-a", &cmd, "-f", &nodes.to_string()])
        .arg("--private-key")
        .arg(&bed.client_key)
        // One word: argparse would take a value that starts with `-o` for an option.
        .arg(format!("--ssh-common-args={ssh_args}"))
        .env("ANSIBLE_HOST_KEY_CHECKING", "True")
        .stdout(std::process::Stdio::null())
        .output()?;
    let t = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "ansible failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(Some(t))
}

/// Runs `gitvps --repo ROOT <args>` as a fresh process and returns its wall time (seconds),
/// its peak resident memory (KiB, `VmHWM` read every 2 ms until it exits: the mark only
/// grows, so the last reading is the peak but for its last moments) and its exit code.
fn measure_child(root: &Path, args: &[&str]) -> anyhow::Result<(f64, u64, Option<i32>)> {
    let (wall, peak, code, _) = measure_child_env(root, args, &[])?;
    Ok((wall, peak, code))
}

/// [`measure_child`] with `env` set for the child; also returns its CPU time (user and
/// system, seconds in 10 ms ticks, from this process's reaped children's times: run no other
/// child meanwhile).
pub(crate) fn measure_child_env(
    root: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
) -> anyhow::Result<(f64, u64, Option<i32>, f64)> {
    let cpu0 = executor::usage::children_cpu_time();
    let t = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--repo")
        .arg(root)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("GITVPS_SMTP_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let code = loop {
        let hwm = std::fs::read_to_string(&status)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        peak = peak.max(hwm);
        if let Some(st) = child.try_wait()? {
            break st.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let cpu = (executor::usage::children_cpu_time() - cpu0).as_secs_f64();
    Ok((t.elapsed().as_secs_f64(), peak, code, cpu))
}

fn billing_bench(a: &ValidateBench) -> anyhow::Result<i32> {
    use jobs::billing::Options;

    let t0 = Instant::now();
    let (_tmp, root) = generated(a)?;
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let st = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args([
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@example.net",
            ])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(st.success(), "git {args:?} failed");
        Ok(())
    };
    git(&["init", "-q", "-b", "main"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "bench fleet"])?;
    println!(
        "generated and committed {} nodes, {} VPSes in {:.1} s; billing decides for {BILLING_DAY}",
        a.nodes,
        a.vps,
        t0.elapsed().as_secs_f64()
    );
    let today: chrono::NaiveDate = BILLING_DAY.parse()?;
    let runs = a.runs.max(1);
    let wt = jobs::git::Worktree::open(&root)?;
    let opts = |dry_run| Options {
        today,
        now: chrono::Utc::now(),
        dry_run,
        push: None,
    };
    // In this process: the load every command pays (the baseline), the decision alone, and the
    // dry run's path (load, ledger, decide).
    let (mut load, mut decide, mut dry) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let inv = model::Inventory::load(&root)
            .map_err(|e| anyhow::anyhow!("the generated fleet is invalid: {e}"))?;
        load.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let run = billing::decide(today, &inv, &inv.settings, &billing::Ledger::default());
        decide.push(t.elapsed().as_secs_f64());
        drop(inv);
        let t = Instant::now();
        let r = jobs::billing::run(&wt, &opts(true))?;
        dry.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            r.run.render() == run.render(),
            "the dry run decided otherwise"
        );
        last = Some(run);
    }
    // As commands, each a fresh process: `validate` (the baseline) and `billing run --dry-run`.
    let day = BILLING_DAY.to_owned();
    let dry_args = ["billing", "run", "--dry-run", "--today", day.as_str()];
    let (mut v_wall, mut v_peak, mut d_wall, mut d_peak) = (Vec::new(), 0, Vec::new(), 0);
    for _ in 0..runs {
        let (w, p, code) = measure_child(&root, &["validate"])?;
        anyhow::ensure!(code == Some(0), "gitvps validate exited {code:?}");
        v_wall.push(w);
        v_peak = v_peak.max(p);
        let (w, p, code) = measure_child(&root, &dry_args)?;
        anyhow::ensure!(
            code == Some(2),
            "gitvps billing run --dry-run exited {code:?}"
        );
        d_wall.push(w);
        d_peak = d_peak.max(p);
    }
    let run = last.context("no run")?;
    let (load, decide, dry) = (median(load), median(decide), median(dry));
    let (v_wall, d_wall) = (median(v_wall), median(d_wall));
    let due = run
        .invoices
        .iter()
        .filter_map(|i| i.renews().map(|(v, _)| v.clone()))
        .chain(run.changes.iter().map(|c| c.vps().clone()))
        .chain(run.mails.iter().filter_map(|m| m.vps.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "decided: {} invoice(s), {} state change(s), {} mail(s), for {due} VPS(es) due of {}",
        run.invoices.len(),
        run.changes.len(),
        run.mails.len(),
        a.vps
    );
    println!("median of {runs} run(s), in this process:");
    println!(
        "  load + validate        {:.0} ms (the baseline every command pays)",
        load * 1e3
    );
    println!(
        "  decide                 {:.0} ms ({:.2}x the baseline)",
        decide * 1e3,
        decide / load
    );
    println!(
        "  dry run's path         {:.0} ms ({:.2}x the baseline: load, ledger, decide)",
        dry * 1e3,
        dry / load
    );
    println!("as commands (a fresh process each; peak = the largest of the runs):");
    println!(
        "  gitvps validate        {:.0} ms, peak {} MiB (the baseline)",
        v_wall * 1e3,
        v_peak / 1024
    );
    println!(
        "  billing run --dry-run  {:.0} ms ({:.2}x the baseline, {:.2}x the 2 s target), peak {} MiB ({:.2}x the 200 MiB target)",
        d_wall * 1e3,
        d_wall / v_wall,
        d_wall / 2.0,
        d_peak / 1024,
        d_peak as f64 / 1024.0 / 200.0
    );
    // The commit a real run makes: files and bytes against what is due.
    let t = Instant::now();
    let r = jobs::billing::run(&wt, &opts(false))?;
    let wrote = t.elapsed().as_secs_f64();
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["diff", "--numstat", "HEAD~1", "HEAD"])
        .output()?;
    let stat = String::from_utf8_lossy(&out.stdout);
    let files = stat.lines().count();
    let mut bytes = 0u64;
    for l in stat.lines() {
        if let Some(p) = l.split('\t').nth(2) {
            bytes += std::fs::metadata(root.join(p))
                .map(|m| m.len())
                .unwrap_or(0);
        }
    }
    println!(
        "billing run (writes and commits, sends nothing): {:.1} s, commit {} with {files} file(s), {} KiB: {:.2} file(s) and {:.1} KiB per VPS due",
        wrote,
        r.commit.as_deref().and_then(|c| c.get(..12)).unwrap_or("-"),
        bytes / 1024,
        files as f64 / due.max(1) as f64,
        bytes as f64 / 1024.0 / due.max(1) as f64
    );
    Ok(0)
}
