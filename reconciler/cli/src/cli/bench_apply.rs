//! `gitvps bench apply`: the first apply of a fleet of new VPSes (50 nodes × 20 by default) on
//! simulated dom0s behind real sshds, against OpenSSH clients running the same node programs.
//!
//! Rounds alternate (gitvps, OpenSSH, gitvps, ...) and every round starts from the same fresh
//! nodes, so both meet the same moments of a noisy machine. Figures only; tests never assert
//! on time.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use executor::apply::{Access, observe_all};
use executor::usage::children_cpu_time;

use super::bench::{measure_child_env, median, new_testbed, pin_openssh};

/// Flags of `gitvps bench apply`.
#[derive(Debug, Args)]
pub struct ApplyBench {
    /// Nodes (each a simulated dom0 behind a real sshd on 127.0.2.x).
    #[arg(long, default_value_t = 50)]
    pub nodes: usize,
    /// New VPSes per node (each round creates and starts them all).
    #[arg(long, default_value_t = 20)]
    pub vps_per_node: usize,
    /// Measured rounds of each client, alternating (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// VPSes of one node whose steps run side by side (`[reconciler] vps_at_once`; the
    /// default's when absent).
    #[arg(long)]
    pub vps_at_once: Option<u32>,
}

/// One node's program as gitvps sends it: the apply envelope and what it reads.
struct Program {
    /// The node's index in the testbed.
    index: usize,
    /// The node's spec (its apply command is made afresh each round: it carries the time).
    spec: planner::desired::NodeSpec,
    /// `go`, the three empty secret lines, then the steps script.
    input: Vec<u8>,
}

/// Runs the benchmark.
pub fn run(a: &ApplyBench) -> anyhow::Result<i32> {
    let tmp = tempfile::tempdir()?;
    let rt = super::plan::runtime()?;
    let fleet = new_testbed(tmp.path(), a.nodes, a.vps_per_node, a.vps_at_once)?;
    let (mut bed, inv, desired, ids) = (fleet.bed, fleet.inv, fleet.desired, fleet.nodes);
    pin_openssh(&mut bed, &inv, &rt)?;
    let access = Access {
        creds: executor::ssh::Credentials::from_file(&bed.client_key)?,
        timeouts: executor::ssh::Timeouts::default(),
        parallelism: a.nodes,
        stats: Arc::default(),
        pool: None,
        restic: None,
    };

    // Every round starts from these: the node roots as installed, before any apply.
    let nodes_dir = bed.dir().join("nodes");
    let fresh = bed.dir().join("nodes.fresh");
    copy_tree(&nodes_dir, &fresh)?;
    let reset = || -> anyhow::Result<()> {
        std::fs::remove_dir_all(&nodes_dir)?;
        copy_tree(&fresh, &nodes_dir)
    };

    // The programs gitvps would send, planned once on the fresh nodes (which every round
    // starts from, so they stay the same).
    let observed = rt.block_on(observe_all(&inv, &desired, &ids, &access));
    let plan = planner::plan::plan(&desired, &observed);
    anyhow::ensure!(!plan.has_unreachable(), "a node did not answer");
    let mut programs = Vec::new();
    for np in &plan.nodes {
        let id = np.node();
        let spec = desired
            .nodes
            .get(id)
            .context("a planned node is not desired")?;
        let node = inv
            .nodes
            .get(id)
            .context("a planned node is not in the inventory")?;
        let index = (bed.addrs.iter())
            .position(|ad| *ad == node.address.to_string())
            .context("a node is not in the testbed")?;
        let mut input = b"go\n\n\n\n".to_vec();
        input.extend_from_slice(planner::driver::steps_script(spec, np.steps()).as_bytes());
        programs.push(Program {
            index,
            spec: spec.clone(),
            input,
        });
    }
    let steps: usize = plan.nodes.iter().map(|n| n.steps().len()).sum();
    println!(
        "{} nodes × {} new VPSes: {steps} steps ({:.1} per VPS), {} VPS(es) of a node side by side",
        a.nodes,
        a.vps_per_node,
        steps as f64 / (a.nodes * a.vps_per_node).max(1) as f64,
        inv.settings.reconciler.vps_at_once
    );

    let settle = || std::thread::sleep(Duration::from_millis(300));
    let converged = |what: &str| -> anyhow::Result<()> {
        let observed = rt.block_on(observe_all(&inv, &desired, &ids, &access));
        let plan = planner::plan::plan(&desired, &observed);
        anyhow::ensure!(
            !plan.has_changes() && !plan.has_unreachable(),
            "{what} did not converge:\n{}",
            planner::plan::render(&plan)
        );
        Ok(())
    };
    let key = bed.client_key.clone();
    let all = a.nodes.to_string();
    let (mut g_wall, mut g_cpu, mut g_node, mut g_peak) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let (mut o_wall, mut o_cpu, mut o_node) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs.max(1) {
        // `gitvps apply` as CI runs it: its own process, every node at once.
        reset()?;
        settle();
        let n0 = bed.node_cpu();
        let args = ["apply", "--parallelism", all.as_str()];
        let (wall, peak, code, cpu) =
            measure_child_env(&bed.repo, &args, &[("GITVPS_SSH_KEY", key.as_os_str())])?;
        anyhow::ensure!(code == Some(0), "gitvps apply exited {code:?}");
        settle();
        g_node.push((bed.node_cpu() - n0).as_secs_f64());
        g_wall.push(wall);
        g_cpu.push(cpu);
        g_peak = g_peak.max(peak);
        converged("gitvps apply")?;

        // The same programs through one OpenSSH client per node.
        reset()?;
        settle();
        let now = chrono::Utc::now().timestamp();
        let (n0, c0, t0) = (bed.node_cpu(), children_cpu_time(), Instant::now());
        let mut children = Vec::new();
        for p in &programs {
            let cmd = planner::driver::apply_command(&p.spec, now);
            let mut child = bed
                .openssh(p.index, &cmd)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let mut stdin = child.stdin.take().context("no stdin")?;
            stdin.write_all(&p.input)?;
            drop(stdin);
            children.push(child);
        }
        for mut c in children {
            anyhow::ensure!(c.wait()?.success(), "an OpenSSH client failed");
        }
        o_wall.push(t0.elapsed().as_secs_f64());
        o_cpu.push((children_cpu_time() - c0).as_secs_f64());
        settle();
        o_node.push((bed.node_cpu() - n0).as_secs_f64());
        converged("the OpenSSH baseline")?;
    }
    let n = a.nodes as f64;
    let vps = (a.nodes * a.vps_per_node).max(1) as f64;
    let (gw, ow) = (median(g_wall), median(o_wall));
    println!(
        "first apply, median of {} alternating rounds:",
        a.runs.max(1)
    );
    println!(
        "  wall time            {gw:.2} s for gitvps apply (target ≤ 10 s at 50 × 20), {ow:.2} s for OpenSSH clients running the same programs (ratio {:.2}x)",
        gw / ow
    );
    println!(
        "  client CPU           gitvps apply {:.2} ms per node (process start, load, observe, plan and apply; 10 ms ticks), OpenSSH {:.2} ms per node",
        median(g_cpu) * 1e3 / n,
        median(o_cpu) * 1e3 / n
    );
    let (gn, on) = (median(g_node), median(o_node));
    println!(
        "  node CPU             {:.1} ms per new VPS with gitvps, {:.1} ms with OpenSSH: the sshds and all they started ({})",
        gn * 1e3 / vps,
        on * 1e3 / vps,
        if bed.node_cpu_is_exact() {
            "their cgroup"
        } else {
            "their own accounting, which misses the sessions of a login user other than root: not root here"
        }
    );
    println!(
        "  gitvps apply peak    {} MiB (target ≤ 32 MiB at 50 nodes)",
        g_peak / 1024
    );
    Ok(0)
}

/// Copies the folder `from` to `to` with `cp -a` (owners, modes and sparse files kept).
fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status()?;
    anyhow::ensure!(
        st.success(),
        "cp -a {} {} failed",
        from.display(),
        to.display()
    );
    Ok(())
}
