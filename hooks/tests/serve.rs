//! `hooks::serve` (what `gitvps serve` runs) over real HTTP: the site folder, and 200 actions
//! at once landing as 200 linear commits, each leaving a valid inventory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

type Http = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn start(cfg: hooks::Config) -> (SocketAddr, Arc<hooks::App>) {
    let app = Arc::new(hooks::App::new(cfg).unwrap());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(hooks::serve_app(l, app.clone()));
    (addr, app)
}

fn client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn http(
    c: &Http,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Value, String) {
    let mut b = axum::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    let resp = c
        .request(b.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, v, ctype)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_actions_at_once_all_land_as_linear_valid_commits() {
    let fleet = Fleet::unlimited();
    let site = fleet.dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>panel</h1>").unwrap();
    let mut cfg = fleet.config();
    cfg.static_dir = Some(site);
    let (addr, app) = start(cfg).await;
    let c = client();

    // The site folder is served beside the API; unknown API paths stay JSON.
    let (s, v, _) = http(&c, addr, "GET", "/", None, "").await;
    assert_eq!((s, v), (200, Value::String("<h1>panel</h1>".into())));
    let (s, v, ctype) = http(&c, addr, "GET", "/api/nope", None, "").await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")));
    assert!(ctype.starts_with("application/json"));

    // Log in once over HTTP (argon2), then fire 200 reboots at once with that token.
    let (s, v, _) = http(
        &c,
        addr,
        "POST",
        "/api/login",
        None,
        r#"{"customer":"c-0001","password":"demo-jane"}"#,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let token: Arc<str> = v["token"].as_str().unwrap().into();
    let before = fleet.head();
    let n = 200;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, token) = (c.clone(), token.clone());
            tokio::spawn(async move {
                http(&c, addr, "POST", "/api/vps/xen02/reboot", Some(&token), "").await
            })
        })
        .collect();
    let mut generations = BTreeSet::new();
    for t in tasks {
        let (s, v, _) = t.await.unwrap();
        assert_eq!(s, 200, "{v}");
        generations.insert(v["generation"].as_u64().unwrap());
    }
    // Identical reboots pending in one batch are coalesced: one commit, one generation.
    let made = generations.len() as u64;
    assert_eq!(
        generations,
        (1..=made).collect::<BTreeSet<u64>>(),
        "generations are consecutive, one per commit"
    );
    assert!(made <= n);

    // History: one new commit per generation, linear, each a valid inventory.
    let repo = fleet.repo();
    let mut commit = repo.find_commit(fleet.head()).unwrap();
    let mut count = 0;
    while commit.id() != before {
        assert_eq!(commit.parent_count(), 1, "linear history");
        assert_eq!(
            commit.message().unwrap().trim(),
            "c-0001: reboot xen02 (site)"
        );
        let inv =
            inventory_at(&fleet, commit.id()).unwrap_or_else(|e| panic!("{}: {e}", commit.id()));
        let id: model::VpsId = "xen02".parse().unwrap();
        assert_eq!(inv.vps[&id].actions.reboot, made - count);
        count += 1;
        commit = commit.parent(0).unwrap();
    }
    assert_eq!(count, made);
    let stats = app.store().stats();
    assert_eq!(stats.commits.load(Ordering::Relaxed), made);
    let pushes = stats.pushes.load(Ordering::Relaxed);
    assert!(
        pushes < n,
        "requests held at once share a push ({pushes} pushes)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_servers_on_one_repo_lose_races_and_lose_no_commit() {
    let fleet = Fleet::unlimited();
    let (a, app_a) = start(fleet.config_in("cache-a")).await;
    let (b, app_b) = start(fleet.config_in("cache-b")).await;
    let c = client();
    let jane = token_for(&fleet, "c-0001");
    let acme = token_for(&fleet, "c-0003");
    let per = 40u64;
    let mut tasks = Vec::new();
    for i in 0..per {
        for (addr, token, path) in [
            (a, jane.clone(), "/api/vps/xen02/reboot"),
            (b, acme.clone(), "/api/vps/xen04/fsck"),
        ] {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                // Spread the requests so both servers push many small batches.
                tokio::time::sleep(std::time::Duration::from_millis(i * 3)).await;
                http(&c, addr, "POST", path, Some(&token), "").await
            }));
        }
    }
    let (mut reboots, mut fscks) = (BTreeSet::new(), BTreeSet::new());
    for t in tasks {
        let (s, v, _) = t.await.unwrap();
        assert_eq!(s, 200, "{v}");
        let g = v["generation"].as_u64().unwrap();
        match v["action"].as_str() {
            Some("reboot") => reboots.insert(g),
            _ => fscks.insert(g),
        };
    }
    // Identical requests in one batch are coalesced; every generation answered landed.
    let (r, f) = (reboots.len() as u64, fscks.len() as u64);
    assert_eq!(reboots, (1..=r).collect::<BTreeSet<u64>>());
    assert_eq!(fscks, (1..=f).collect::<BTreeSet<u64>>());
    let inv = inventory_at_head(&fleet);
    assert_eq!(
        inv.vps[&"xen02".parse::<model::VpsId>().unwrap()]
            .actions
            .reboot,
        r
    );
    assert_eq!(
        inv.vps[&"xen04".parse::<model::VpsId>().unwrap()]
            .actions
            .fsck,
        f
    );
    let repo = fleet.repo();
    let mut walk = repo.revwalk().unwrap();
    walk.push(fleet.head()).unwrap();
    let commits: Vec<_> = walk
        .map(|o| repo.find_commit(o.unwrap()).unwrap())
        .collect();
    assert_eq!(commits.len() as u64, 1 + r + f);
    assert!(commits.iter().all(|c| c.parent_count() <= 1), "linear");
    let lost = app_a.store().stats().lost_races.load(Ordering::Relaxed)
        + app_b.store().stats().lost_races.load(Ordering::Relaxed);
    eprintln!("lost races: {lost}");
}

#[tokio::test]
async fn serve_fails_fast_on_a_bad_repo_and_runs_on_a_good_one() {
    let fleet = Fleet::new();
    let mut bad = fleet.config();
    bad.repo = fleet.dir.path().join("missing.git").display().to_string();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = hooks::serve(l, bad).await.unwrap_err();
    assert!(err.to_string().contains("clone"), "{err}");

    // As `gitvps serve --repo DIR` builds it: the repo given, the rest from the environment.
    let mut cfg = hooks::Config::local(fleet.bare.display().to_string()).unwrap();
    cfg.cache_dir = fleet.dir.path().join("serve-cache");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(hooks::serve(l, cfg));
    let c = client();
    let mut tries = 0;
    let (s, v, _) = loop {
        tries += 1;
        let r = c
            .request(
                axum::http::Request::builder()
                    .uri(format!("http://{addr}/api/me"))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await;
        if let Ok(resp) = r {
            let status = resp.status().as_u16();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            break (status, serde_json::from_slice::<Value>(&bytes).unwrap(), ());
        }
        assert!(tries < 100, "server did not come up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!((s, v["error"].as_str()), (401, Some("unauthorized")));
}
