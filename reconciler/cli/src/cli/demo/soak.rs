//! `gitvps bench soak`: the demo fleet under a steady load of customer clicks through the
//! hooks, applied as they land, while the nodes flap; counts what was lost and watches memory.

use super::*;

/// Flags of `gitvps bench soak`.
#[derive(Debug, Args)]
pub struct SoakArgs {
    /// How long the load runs, in minutes (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Customer clicks per second (reboots of the demo customer's VPSes, through the hooks).
    #[arg(long, default_value_t = 1.0)]
    pub clicks_per_second: f64,
    /// Seconds between node flaps (one node at a time goes away for a third of that).
    #[arg(long, default_value_t = 9)]
    pub flap_every: u64,
}

/// What the load did.
#[derive(Debug, Default)]
struct Counts {
    committed: u64,
    throttled: u64,
    failed: u64,
    applies: u64,
    applies_with_a_node_down: u64,
    flaps: u64,
}

/// No progress lines: the soak reports totals.
struct Silent;

impl Progress for Silent {
    fn started(&self, _: &NodeId, _: usize, _: usize, _: &Step) {}
    fn succeeded(&self, _: &NodeId, _: usize, _: usize, _: &Step) {}
}

/// This process's resident memory, KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Plans and applies the apply clone quietly; whether every node converged.
async fn apply_quietly(repo: &Path, access: &Access) -> anyhow::Result<bool> {
    let (l, p) = plan_now(repo, access).await?;
    if !p.has_changes() {
        return Ok(!p.has_unreachable());
    }
    let outcomes = apply_all(&l.inv, &l.desired, &l.nodes, None, access, Arc::new(Silent)).await;
    Ok(outcomes
        .values()
        .all(|o| matches!(o, NodeOutcome::Applied { .. } | NodeOutcome::NoChanges)))
}

/// The reboots the inventory asks for, summed over the demo customer's VPSes, and the ids.
fn declared_reboots(repo: &Path) -> anyhow::Result<(u64, Vec<String>)> {
    let l = load(repo)?;
    let mine: Vec<_> = (l.inv.vps.values())
        .filter(|v| v.customer.as_str() == DEMO_CUSTOMER && v.state == model::values::State::Active)
        .collect();
    Ok((
        mine.iter().map(|v| v.actions.reboot).sum(),
        mine.iter().map(|v| v.id.to_string()).collect(),
    ))
}

/// The reboots the nodes have recorded as done for `vps`.
fn recorded_reboots(dir: &Path, repo: &Path, vps: &[String]) -> anyhow::Result<u64> {
    let l = load(repo)?;
    let mut sum = 0;
    for id in vps {
        let Some(v) = l.inv.vps.values().find(|v| v.id.as_str() == id) else {
            continue;
        };
        let rec = dir
            .join("nodes")
            .join(v.node.as_str())
            .join(format!("var/lib/gitvps/state/{id}.json"));
        let text = std::fs::read_to_string(&rec)
            .with_context(|| format!("cannot read {}", rec.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)?;
        sum += json["reboot"].as_u64().unwrap_or(0);
    }
    Ok(sum)
}

/// Runs the soak; exit 0 when no committed action was lost and the fleet converged.
pub fn run(a: &SoakArgs) -> anyhow::Result<i32> {
    ensure!(
        a.minutes > 0.0 && a.clicks_per_second > 0.0 && a.flap_every >= 3,
        "--minutes and --clicks-per-second must be positive, --flap-every at least 3"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tmp = tempfile::Builder::new().prefix("gitvps-soak-").tempdir()?;
    let rt = super::super::plan::runtime()?;
    let code = rt.block_on(soak(&src, tmp.path(), a));
    rt.shutdown_timeout(Duration::from_secs(5));
    code
}

async fn soak(src: &Path, dir: &Path, a: &SoakArgs) -> anyhow::Result<i32> {
    let repos = create_repos(src, dir, None)?;
    // The soak's customer clicks far more than a person would: lift its quotas.
    let settings = repos.work.join("gitvps.toml");
    let text = std::fs::read_to_string(&settings)?;
    std::fs::write(
        &settings,
        text.replacen("per_minute = 6 ", "per_minute = 600 ", 1)
            .replacen("per_day = 100 ", "per_day = 1000000 ", 1),
    )?;
    let mut nodes = Vec::new();
    let client = start_nodes(dir, &repos.work, None, &mut nodes).await?;
    let loaded = publish(dir, &repos)?;
    let access = access(&loaded, client);
    ensure!(
        apply_quietly(&repos.applied, &access).await?,
        "the first apply failed"
    );
    let (base, vps) = declared_reboots(&repos.applied)?;
    ensure!(!vps.is_empty(), "the demo customer has no active VPS");
    let mut cfg = hooks::Config::local(repos.bare.display().to_string())?;
    cfg.cache_dir = dir.join("hooks-cache");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(hooks::serve(listener, cfg));
    let _abort = AbortOnDrop(server.abort_handle());
    let token = login(addr).await?;
    say(&format!(
        "Soak: {:.1} min, {} click(s)/s on {} VPS(es), a node flaps every {} s, {} node(s).",
        a.minutes,
        a.clicks_per_second,
        vps.len(),
        a.flap_every,
        nodes.len()
    ))?;

    let start = Instant::now();
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let mut counts = Counts::default();
    let mut click = tokio::time::interval(Duration::from_secs_f64(1.0 / a.clicks_per_second));
    let mut flap = tokio::time::interval(Duration::from_secs(a.flap_every));
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    flap.tick().await;
    let mut seen = git(&repos.applied, &["rev-parse", "HEAD"])?;
    let mut servers: Vec<Option<NodeServer>> = nodes.into_iter().map(Some).collect();
    let mut down: Option<(usize, sim::nodeserver::Paused, Instant)> = None;
    let (mut next_node, mut n_click) = (0usize, 0usize);
    let mut rss = Memory::default();
    while start.elapsed() < total {
        tokio::select! {
            _ = click.tick() => {
                let id = &vps[n_click % vps.len()];
                n_click += 1;
                let path = format!("/api/vps/{id}/reboot");
                match http(addr, "POST", &path, Some(&token), "").await {
                    Ok((200, _)) => counts.committed += 1,
                    Ok((429, _)) => counts.throttled += 1,
                    _ => counts.failed += 1,
                }
            }
            _ = flap.tick() => {
                if down.is_none() && !servers.is_empty() {
                    let i = next_node % servers.len();
                    next_node += 1;
                    if let Some(n) = servers[i].take() {
                        down = Some((i, n.pause().await, Instant::now()));
                        counts.flaps += 1;
                    }
                }
            }
            _ = tick.tick() => {
                if down.as_ref().is_some_and(|(_, _, t)| t.elapsed() >= Duration::from_secs(a.flap_every / 3))
                    && let Some((i, paused, _)) = down.take()
                {
                    servers[i] = Some(paused.resume().await?);
                }
                if let Some(head) = sync(&repos.applied, &seen)? {
                    counts.applies += 1;
                    if !apply_quietly(&repos.applied, &access).await? {
                        counts.applies_with_a_node_down += 1;
                    }
                    seen = head;
                }
                rss.sample(start.elapsed() >= total / 4);
            }
        }
    }
    if let Some((i, paused, _)) = down.take() {
        servers[i] = Some(paused.resume().await?);
    }
    // The load has stopped and every node is back: the last commits are applied.
    let mut converged = false;
    for _ in 0..10 {
        let _ = sync(&repos.applied, &seen)?;
        if apply_quietly(&repos.applied, &access).await? {
            let (_, p) = plan_now(&repos.applied, &access).await?;
            if !p.has_changes() && !p.has_unreachable() {
                converged = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (declared, _) = declared_reboots(&repos.applied)?;
    let recorded = recorded_reboots(dir, &repos.applied, &vps)?;
    let in_repo = declared.saturating_sub(base);
    let lost_commits = counts.committed.saturating_sub(in_repo);
    let lost_applies = declared.saturating_sub(recorded);
    rss.sample(true);
    for s in servers.into_iter().flatten() {
        s.stop();
    }
    let mib = |k: u64| k as f64 / 1024.0;
    say(&format!(
        "Soak over {:.1} min:\n  clicks   {} committed, {} throttled (429), {} failed\n  in repo  {} reboot(s) declared since the start\n  applied  {} apply run(s), {} with a node down; {} node flap(s)\n  lost     {} commit(s) answered but not in the repo, {} declared action(s) not done on the nodes (must be 0)\n  memory   {:.1} MiB after warm-up, {:.1} MiB at the end, peak {:.1} MiB: growth {:+.1} MiB (the hooks, the applies and the nodes share this process)\n  fleet    {}",
        start.elapsed().as_secs_f64() / 60.0,
        counts.committed,
        counts.throttled,
        counts.failed,
        in_repo,
        counts.applies,
        counts.applies_with_a_node_down,
        counts.flaps,
        lost_commits,
        lost_applies,
        mib(rss.warm.unwrap_or(rss.last)),
        mib(rss.last),
        mib(rss.peak),
        mib(rss.last) - mib(rss.warm.unwrap_or(rss.last)),
        if converged {
            "converged: the plan after the last apply is empty"
        } else {
            "NOT converged after the load"
        }
    ))?;
    Ok(
        if converged && lost_commits == 0 && lost_applies == 0 && counts.committed > 0 {
            0
        } else {
            1
        },
    )
}

/// Resident memory samples: after warm-up, the peak and the last.
#[derive(Debug, Default)]
struct Memory {
    warm: Option<u64>,
    peak: u64,
    last: u64,
}

impl Memory {
    fn sample(&mut self, warmed_up: bool) {
        self.last = rss_kib();
        self.peak = self.peak.max(self.last);
        if warmed_up && self.warm.is_none() {
            self.warm = Some(self.last);
        }
    }
}
