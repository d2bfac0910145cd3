//! `gitvps bench backup`: a backup and a restore of a VPS's 1 GiB disk with real restic (a local
//! repository) on a simulated node behind a real sshd, against `dd | ssh | dd` of the same disk
//! in the same run, and restic's incremental backup after a 1 % change.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::bench_move::{dd_ssh_dd, fill, sha256_of};

/// Flags of `gitvps bench backup`.
#[derive(Debug, Args)]
pub struct BackupBench {
    /// The disk's size, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// The share of the disk, in percent, filled with data that does not compress (the rest is
    /// zeros, as the free space of a real disk mostly is).
    #[arg(long, default_value_t = 50)]
    pub random_percent: u64,
    /// The share of the disk, in percent, rewritten before the incremental backup.
    #[arg(long, default_value_t = 1)]
    pub change_percent: u64,
}

/// The restic password of the bench's throwaway repository (nothing secret is stored in it).
const PASSWORD: &str = "bench-backup-throwaway";

/// Rewrites `percent` of the disk at `path` in 1 MiB pieces spread evenly over it, with bytes
/// that differ from any it held.
fn change(path: &std::path::Path, size: u64, percent: u64) -> anyhow::Result<u64> {
    const PIECE: u64 = 1 << 20;
    let pieces = (size / PIECE * percent.min(100)).div_ceil(100).max(1);
    let stride = (size / PIECE / pieces).max(1) * PIECE;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut buf = vec![0u8; PIECE as usize];
    for i in 0..pieces {
        for w in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
        }
        f.seek(SeekFrom::Start(i * stride))?;
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    Ok(pieces * PIECE)
}

/// Runs the benchmark.
pub fn run(a: &BackupBench) -> anyhow::Result<i32> {
    use executor::apply::{Access, LogProgress, NodeOutcome, apply_all};
    use executor::backup::{NodeRun, RunSpec, Secrets};
    use sim::testbed::Testbed;

    let tmp = tempfile::tempdir()?;
    let bed = Testbed::start(tmp.path(), 1, 0)?;
    let size = a.size_mib << 20;
    let restic_repo = bed.dir().join("restic");
    let products = bed.repo.join("products.toml");
    let mut text = std::fs::read_to_string(&products)?;
    text.push_str(&format!(
        "\n[[product]]\nid = \"backed\"\nname = \"Backed up\"\nperiod_months = 1\nprice = \"10.00\"\ndisk = \"{} MiB\"\nram = \"1 GiB\"\nvcpus = 1\ntraffic = \"1 TiB\"\n[product.backup]\nevery = \"daily\"\nhour = 0\nkeep_daily = 7\nkeep_weekly = 0\nkeep_monthly = 0\n",
        a.size_mib
    ));
    std::fs::write(&products, text)?;
    let settings = bed.repo.join("gitvps.toml");
    let mut text = std::fs::read_to_string(&settings).unwrap_or_default();
    text.push_str(&format!(
        "\n[backup]\n[backup.local]\npath = \"{}\"\n",
        restic_repo.display()
    ));
    std::fs::write(&settings, text)?;
    let vps_file = bed.repo.join("inventory/vps/bk1.toml");
    let vps = "customer = \"c-0001\"\nproduct = \"backed\"\nnode = \"n000\"\nips = [\"10.0.0.10\"]\nhostname = \"bk1.example.net\"\nos = \"debian-12\"\ncreated = 2026-01-01\nexpires = 2027-01-01\n";
    std::fs::write(&vps_file, vps)?;

    // The repository, made here and given to the node's login user.
    let init = Command::new("restic")
        .arg("-r")
        .arg(&restic_repo)
        .args(["--no-cache", "init"])
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .context("cannot run restic (apt-get install restic)")?;
    anyhow::ensure!(
        init.status.success(),
        "restic init failed: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let own = Command::new("chown")
        .arg("-R")
        .arg(&bed.user)
        .arg(&restic_repo)
        .status()?;
    anyhow::ensure!(own.success(), "cannot give the repository to {}", bed.user);

    let load = || -> anyhow::Result<(Arc<model::Inventory>, Arc<planner::desired::Desired>)> {
        let inv = model::Inventory::load(&bed.repo)
            .map_err(|e| anyhow::anyhow!("the bench fleet is invalid: {e}"))?;
        let d = planner::desired::desired(
            &inv,
            &planner::desired::Templates::default(),
            &planner::desired::Bootstraps::default(),
        )?;
        Ok((Arc::new(inv), Arc::new(d)))
    };
    let (inv, desired) = load()?;
    let secrets = Secrets::from_lookup(&inv.settings.backup, |_| Some(PASSWORD.to_owned()))?;
    let access = Access {
        creds: executor::ssh::Credentials::from_file(&bed.client_key)?,
        timeouts: executor::ssh::Timeouts::default(),
        parallelism: 1,
        stats: Arc::default(),
        pool: None,
        restic: Some(secrets.clone()),
    };
    let rt = super::plan::runtime()?;
    let nodes: Vec<model::NodeId> = inv.nodes.keys().cloned().collect();
    let applied = |inv: &model::Inventory, desired: &Arc<planner::desired::Desired>| {
        let out = rt.block_on(apply_all(
            inv,
            desired,
            &nodes,
            None,
            &access,
            Arc::new(LogProgress),
        ));
        out.values()
            .all(|o| matches!(o, NodeOutcome::Applied { .. } | NodeOutcome::NoChanges))
    };
    anyhow::ensure!(applied(&inv, &desired), "the VPS was not created");
    let disk = bed.dir().join("nodes/n000/dev/vg0/bk1");
    anyhow::ensure!(disk.exists(), "the VPS was not created on n000");
    fill(&disk, size, a.random_percent)?;
    let first = sha256_of(&disk)?;
    println!(
        "disk: {} MiB, {}% incompressible, sha256 {}",
        a.size_mib,
        a.random_percent,
        &first[..12]
    );

    // The baseline: `dd | ssh | dd` of the same disk onto the node.
    let base = dd_ssh_dd(&bed, 0, &disk, &first, false)?;

    // A backup as `gitvps backup run` takes it, at a given time (due: never backed up).
    let backup = |now: &str| -> anyhow::Result<(f64, String)> {
        let spec = RunSpec {
            now: now.parse().context("bench time")?,
            stamp: true,
            dry_run: false,
            only: Vec::new(),
        };
        let t = Instant::now();
        let runs = rt.block_on(executor::backup::run_all(
            &inv, &desired, &nodes, &access, &secrets, &spec,
        ))?;
        let secs = t.elapsed().as_secs_f64();
        let taken = runs.into_values().find_map(|r| match r {
            NodeRun::Done(v) => v.into_values().find_map(|o| o.taken),
            NodeRun::Failed(e) => Some(Err(e)),
        });
        match taken {
            Some(Ok(t)) => Ok((secs, t.id)),
            Some(Err(e)) => anyhow::bail!("the backup failed: {e}"),
            None => anyhow::bail!("no backup was due"),
        }
    };
    let (full, _) = backup("2026-11-02T04:00:00Z")?;
    let changed = change(&disk, size, a.change_percent)?;
    let second = sha256_of(&disk)?;
    let (incr, id) = backup("2026-11-03T04:00:00Z")?;

    // The disk is overwritten, then `[restore]` of the incremental backup, applied.
    fill(&disk, size, 0)?;
    std::fs::write(
        &vps_file,
        format!(
            "{vps}\n[restore]\nsnapshot = \"{}\"\ngeneration = 1\n",
            id.get(..8).unwrap_or(&id)
        ),
    )?;
    let (inv, desired) = load()?;
    let t = Instant::now();
    anyhow::ensure!(applied(&inv, &desired), "the restore failed");
    let restore = t.elapsed().as_secs_f64();
    anyhow::ensure!(sha256_of(&disk)? == second, "the restored disk differs");

    let mib_s = |s: f64| a.size_mib as f64 / s;
    let ratio = |s: f64| s / base;
    println!(
        "dd | ssh | dd: {base:.2} s ({:.0} MiB/s)\n\
         full backup (stand-in LVM snapshot, restic backup --stdin, snapshot removed): {full:.2} s ({:.0} MiB/s, {:.1}×)\n\
         incremental backup after rewriting {} MiB ({}%): {incr:.2} s ({:.1}×)\n\
         restore (check in the repository, stop, restic dump onto the disk, start): {restore:.2} s ({:.0} MiB/s, {:.1}×)",
        mib_s(base),
        mib_s(full),
        ratio(full),
        changed >> 20,
        a.change_percent,
        ratio(incr),
        mib_s(restore),
        ratio(restore),
    );
    Ok(0)
}
