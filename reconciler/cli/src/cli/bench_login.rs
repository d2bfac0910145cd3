//! `gitvps bench login`: a real customer's login latency while 200 bad logins run at once,
//! as a ratio against the same login with no flood, in the same process.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

/// Flags of `gitvps bench login`.
#[derive(Debug, Args)]
pub struct LoginBench {
    /// The inventory repo whose fleet is served (its products, pools and inventory/).
    #[arg(long, default_value = ".")]
    pub repo: std::path::PathBuf,
    /// The customer who logs in for real.
    #[arg(long, default_value = "c-0001")]
    pub customer: String,
    /// Its password (the example fleet's demo password by default).
    #[arg(long, default_value = "demo-jane")]
    pub password: String,
    /// Bad logins kept in flight at once during the flood.
    #[arg(long, default_value_t = 200)]
    pub flood: u32,
    /// Real logins timed, with and without the flood (the median is reported).
    #[arg(long, default_value_t = 9)]
    pub runs: u32,
}

/// Commits the example fleet's files of `src` to a new bare repo `dst` on `main`, with a
/// `gitvps.toml` that trusts `X-Forwarded-For` (the bench gives each bad login its own address).
fn seed(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.bare(true).initial_head("main");
    let repo = git2::Repository::init_opts(dst, &opts)?;
    let mut b = git2::build::TreeUpdateBuilder::new();
    let mut add = |rel: &str, bytes: &[u8]| -> anyhow::Result<()> {
        b.upsert(rel, repo.blob(bytes)?, git2::FileMode::Blob);
        Ok(())
    };
    for f in ["products.toml", "pools.toml"] {
        add(
            f,
            &std::fs::read(src.join(f)).with_context(|| format!("reading {f}"))?,
        )?;
    }
    add(
        "gitvps.toml",
        b"[hooks]\ntrusted_proxy_header = \"X-Forwarded-For\"\n",
    )?;
    for d in ["inventory/nodes", "inventory/customers", "inventory/vps"] {
        for e in std::fs::read_dir(src.join(d)).with_context(|| format!("reading {d}"))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if name.ends_with(".toml") {
                let rel = format!("{d}/{name}");
                add(&rel, &std::fs::read(src.join(&rel))?)?;
            }
        }
    }
    let empty = repo.treebuilder(None)?.write()?;
    let tree = b.create_updated(&repo, &repo.find_tree(empty)?)?;
    let sig = git2::Signature::now("bench", "bench@example.invalid")?;
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "bench fleet",
        &repo.find_tree(tree)?,
        &[],
    )?;
    Ok(())
}

/// One login over HTTP from `from` (the `X-Forwarded-For` the server trusts): status, time.
async fn login(
    client: &Client,
    addr: SocketAddr,
    from: &str,
    body: String,
) -> anyhow::Result<(u16, Duration)> {
    use http_body_util::{BodyExt as _, Full};
    let req = hyper::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/api/login"))
        .header("content-type", "application/json")
        .header("x-forwarded-for", from)
        .body(Full::new(bytes::Bytes::from(body)))?;
    let t = Instant::now();
    let resp = client.request(req).await?;
    let code = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok((code, t.elapsed()))
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Real logins, one after the other: their times and how many were answered 200 and 429.
async fn real_logins(
    client: &Client,
    addr: SocketAddr,
    a: &LoginBench,
) -> anyhow::Result<(Vec<Duration>, u32, u32)> {
    let body = serde_json::json!({"customer": a.customer, "password": a.password}).to_string();
    let (mut times, mut ok, mut busy) = (Vec::new(), 0, 0);
    for _ in 0..a.runs.max(1) {
        let (code, took) = login(client, addr, "192.0.2.1", body.clone()).await?;
        match code {
            200 => ok += 1,
            429 => busy += 1,
            other => anyhow::bail!("the real login was answered {other}"),
        }
        times.push(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok((times, ok, busy))
}

/// Runs the benchmark.
pub fn run(a: &LoginBench) -> anyhow::Result<i32> {
    let tmp = tempfile::tempdir()?;
    let bare = tmp.path().join("inventory.git");
    seed(&a.repo, &bare)?;
    let mut cfg = hooks::Config::local(bare.display().to_string())?;
    cfg.cache_dir = tmp.path().join("cache");
    cfg.publish = false;
    let rt = super::plan::runtime()?;
    rt.block_on(async {
        let app = Arc::new(hooks::App::new(cfg)?);
        app.store().snapshot().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(hooks::serve_app(listener, app));
        let client: Client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(usize::try_from(a.flood).unwrap_or(200) + 8)
                .build_http();
        // Warm up (connections, the argon2 timing estimate).
        real_logins(&client, addr, &LoginBench { runs: 2, ..clone_args(a) }).await?;
        let (quiet, _, _) = real_logins(&client, addr, a).await?;

        // The flood: `flood` tasks, each sending bad logins back to back, every one from a
        // new address for an unknown account (a botnet: per-key back-off never trips).
        let stop = Arc::new(AtomicBool::new(false));
        let (refused, busy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..a.flood {
            let (client, stop) = (client.clone(), stop.clone());
            let (refused, busy) = (refused.clone(), busy.clone());
            tasks.push(tokio::spawn(async move {
                let mut n: u32 = 0;
                while !stop.load(Relaxed) {
                    n = n.wrapping_add(1);
                    let from = format!("10.{}.{}.{}", i % 256, (n / 256) % 256, n % 256);
                    let body = format!(r#"{{"customer":"c-9{i:03}{n}","password":"guess-{n}"}}"#);
                    match login(&client, addr, &from, body).await {
                        Ok((401, _)) => refused.fetch_add(1, Relaxed),
                        Ok((429, _)) => busy.fetch_add(1, Relaxed),
                        _ => 0,
                    };
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (flooded, ok, real_busy) = real_logins(&client, addr, a).await?;
        stop.store(true, Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let secs = started.elapsed().as_secs_f64();
        let (q, f) = (median(quiet), median(flooded.clone()));
        let worst = flooded.iter().max().copied().unwrap_or_default();
        println!("real login latency, median of {} runs:", a.runs.max(1));
        println!("  no flood                {:.0} ms", q.as_secs_f64() * 1e3);
        println!(
            "  {} bad logins at once  {:.0} ms (ratio {:.2}x; worst {:.0} ms, target: waits ≤ 1 s, then 429)",
            a.flood,
            f.as_secs_f64() * 1e3,
            f.as_secs_f64() / q.as_secs_f64().max(1e-6),
            worst.as_secs_f64() * 1e3
        );
        println!("  real logins answered    {ok} × 200, {real_busy} × 429 (Retry-After)");
        println!(
            "  the flood               {} × 401 and {} × 429 in {secs:.1} s",
            refused.load(Relaxed),
            busy.load(Relaxed)
        );
        anyhow::Ok(0)
    })
}

fn clone_args(a: &LoginBench) -> LoginBench {
    LoginBench {
        repo: a.repo.clone(),
        customer: a.customer.clone(),
        password: a.password.clone(),
        flood: a.flood,
        runs: a.runs,
    }
}
