//! `gitvps bench move`: moving a VPS with a 1 GiB disk between two simulated nodes behind real
//! sshds, against `dd | ssh | dd` of the same disk just before each move (target: within 1.5×).

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

/// Flags of `gitvps bench move`.
#[derive(Debug, Args)]
pub struct MoveBench {
    /// The disk's size, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// The share of the disk, in percent, filled with data that does not compress (the rest is
    /// zeros, as the free space of a real disk mostly is).
    #[arg(long, default_value_t = 50)]
    pub random_percent: u64,
    /// Rounds: each times the baselines, then moves the VPS to the other node (back and forth).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Fills `path` with `size` bytes: in each 4 MiB, `random_percent` of pseudo-random bytes, then
/// zeros.
pub(crate) fn fill(path: &std::path::Path, size: u64, random_percent: u64) -> anyhow::Result<()> {
    const CHUNK: usize = 4 << 20;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let random = CHUNK * usize::try_from(random_percent.min(100)).unwrap_or(100) / 100;
    let mut buf = vec![0u8; CHUNK];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut left = size;
    while left > 0 {
        for w in buf[..random].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
        }
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

pub(crate) fn sha256_of(path: &std::path::Path) -> anyhow::Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    anyhow::ensure!(out.status.success(), "sha256sum {} failed", path.display());
    Ok(String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// The baseline of the disk benchmarks: `dd | ssh | dd` of `src` (whose sha256 is `want`) onto
/// node `node` of `bed` (OpenSSH), with `conv=fsync` on the receiving end when `fsync`, checked
/// and removed; its time in seconds.
pub(crate) fn dd_ssh_dd(
    bed: &sim::testbed::Testbed,
    node: usize,
    src: &std::path::Path,
    want: &str,
    fsync: bool,
) -> anyhow::Result<f64> {
    let dst = bed.dir().join(format!("nodes/n{node:03}/baseline.img"));
    let t = Instant::now();
    let mut reader = Command::new("dd")
        .arg(format!("if={}", src.display()))
        .args(["bs=1M", "status=none"])
        .stdout(Stdio::piped())
        .spawn()?;
    let pipe = reader.stdout.take().context("dd has no output")?;
    let conv = if fsync { " conv=fsync" } else { "" };
    let st = bed
        .openssh(
            node,
            &format!("dd of={} bs=1M status=none{conv}", dst.display()),
        )
        .stdin(pipe)
        .status()?;
    let rs = reader.wait()?;
    let base = t.elapsed().as_secs_f64();
    anyhow::ensure!(st.success() && rs.success(), "dd | ssh | dd failed");
    anyhow::ensure!(sha256_of(&dst)? == want, "the baseline copy differs");
    let _ = std::fs::remove_file(&dst);
    Ok(base)
}

/// Runs the benchmark.
pub fn run(a: &MoveBench) -> anyhow::Result<i32> {
    use executor::apply::{Access, LogProgress, apply_all, observe_all};
    use sim::testbed::Testbed;

    let tmp = tempfile::tempdir()?;
    let bed = Testbed::start(tmp.path(), 2, 0)?;
    let size = a.size_mib << 20;
    let products = bed.repo.join("products.toml");
    let mut text = std::fs::read_to_string(&products)?;
    text.push_str(&format!(
        "\n[[product]]\nid = \"mover\"\nname = \"Mover\"\nperiod_months = 1\nprice = \"10.00\"\ndisk = \"{} MiB\"\nram = \"1 GiB\"\nvcpus = 1\ntraffic = \"1 TiB\"\n",
        a.size_mib
    ));
    std::fs::write(&products, text)?;
    let vps_file = bed.repo.join("inventory/vps/mv1.toml");
    let vps = |node: &str| {
        format!(
            "customer = \"c-0001\"\nproduct = \"mover\"\nnode = \"{node}\"\nips = [\"10.{}.0.10\"]\nhostname = \"mv1.example.net\"\nos = \"debian-12\"\ncreated = 2026-01-01\nexpires = 2027-01-01\n",
            if node == "n000" { 0 } else { 1 }
        )
    };
    std::fs::write(&vps_file, vps("n000"))?;
    let access = Access {
        creds: executor::ssh::Credentials::from_file(&bed.client_key)?,
        timeouts: executor::ssh::Timeouts::default(),
        parallelism: 2,
        stats: Arc::default(),
        pool: None,
        restic: None,
    };
    let rt = super::plan::runtime()?;
    let load = || -> anyhow::Result<(model::Inventory, Arc<planner::desired::Desired>)> {
        let inv = model::Inventory::load(&bed.repo)
            .map_err(|e| anyhow::anyhow!("the bench fleet is invalid: {e}"))?;
        let d = planner::desired::desired(
            &inv,
            &planner::desired::Templates::default(),
            &planner::desired::Bootstraps::default(),
        )?;
        Ok((inv, Arc::new(d)))
    };
    let (inv, desired) = load()?;
    let nodes: Vec<model::NodeId> = inv.nodes.keys().cloned().collect();
    rt.block_on(apply_all(
        &inv,
        &desired,
        &nodes,
        None,
        &access,
        Arc::new(LogProgress),
    ));
    let disk = |n: usize| bed.dir().join(format!("nodes/n{n:03}/dev/vg0/mv1"));
    let src = disk(0);
    anyhow::ensure!(src.exists(), "the VPS was not created on n000");
    fill(&src, size, a.random_percent)?;
    let want = sha256_of(&src)?;
    println!(
        "disk: {} MiB, {}% incompressible, sha256 {}; {} rounds, each the baselines then the move",
        a.size_mib,
        a.random_percent,
        &want[..12],
        a.runs.max(1)
    );
    let mib_s = |s: f64| a.size_mib as f64 / s;
    let (mut plain, mut flushed, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..a.runs.max(1) {
        let (from, to) = (round % 2, 1 - round % 2);
        // The baseline: `dd | ssh | dd` of the same disk to the other node; then the same with
        // the target's writes flushed to disk (`conv=fsync`), as the move's are.
        let base = dd_ssh_dd(&bed, to, &disk(from), &want, false)?;
        let base_fsync = dd_ssh_dd(&bed, to, &disk(from), &want, true)?;

        // The move, as `gitvps apply` carries it out.
        std::fs::write(&vps_file, vps(&format!("n{to:03}")))?;
        let (inv, desired) = load()?;
        let observed = rt.block_on(observe_all(&inv, &desired, &nodes, &access));
        let moves = planner::moves::find(&desired, &observed, &std::collections::BTreeMap::new());
        anyhow::ensure!(
            moves.len() == 1 && moves[0].goes(),
            "the plan has no move that goes: {moves:?}"
        );
        let t = Instant::now();
        let moved = rt.block_on(executor::moves::move_all(&inv, &desired, &moves, &access));
        let secs = t.elapsed().as_secs_f64();
        let done = match moved.into_values().next() {
            Some(Ok(d)) => d,
            Some(Err(e)) => anyhow::bail!("the move failed: {}", model::diag::error_chain(&e)),
            None => anyhow::bail!("no move was carried out"),
        };
        anyhow::ensure!(sha256_of(&disk(to))? == want, "the moved disk differs");
        anyhow::ensure!(!disk(from).exists(), "the source disk is still there");
        println!(
            "round {}: dd | ssh | dd {base:.2} s ({:.0} MiB/s), with conv=fsync on the target {base_fsync:.2} s; move ({}, sha256 on both ends, stop, start, source removed) {secs:.2} s ({:.0} MiB/s), of which the stream {:.2} s: {:.2}× the flushing baseline, {:.2}× the plain one",
            round + 1,
            mib_s(base),
            done.codec,
            mib_s(secs),
            done.copy_secs,
            secs / base_fsync,
            secs / base
        );
        plain.push(secs / base);
        flushed.push(base_fsync);
        ratios.push(secs / base_fsync);
    }
    let ratio = super::bench::median(ratios);
    println!(
        "median over the rounds: {ratio:.2}× the flushing `dd | ssh | dd` (its median {:.2} s; {:.2}× the plain one) (target ≤ 1.5×): {}",
        super::bench::median(flushed),
        super::bench::median(plain),
        if ratio <= 1.5 { "met" } else { "NOT met" }
    );
    Ok(0)
}
