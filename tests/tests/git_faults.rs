//! Git faults under the hooks, with real git: a push storm from several servers and the Lambda
//! binary (behind a stand-in of API Gateway) on one bare repo, a remote that refuses pushes, a
//! remote that is down, one that hangs, main force-pushed under the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use support::gitd::GitDaemon;
use support::hookrepo::{act, assert_linear, counter, head, login, seed};
use support::lambda::LambdaFront;
use support::stall::StallProxy;
use support::{Served, git};

const TOKEN_SECRET: &str = "test-token-secret-0123456789abcdef";

/// The hooks Router in this process (what the Lambda binary runs, here on a local port),
/// with its own cache of `repo`. Lives as long as the test process.
fn in_process(repo: &str, cache: &Path) -> String {
    let mut cfg = hooks::Config::new(repo, hooks::Secret::new(TOKEN_SECRET));
    cfg.cache_dir = cache.to_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap().to_string()).unwrap();
            hooks::serve(listener, cfg).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

#[test]
fn a_push_storm_from_several_servers_on_one_bare_repo_loses_nothing_and_stays_linear() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = seed(tmp.path());
    let repo = bare.to_str().unwrap();
    let before = git(&bare, &["rev-list", "--count", "main"])
        .trim()
        .parse::<u64>()
        .unwrap();
    let servers: Vec<Served> = (0..3)
        .map(|i| Served::on(repo, &bare, tmp.path(), &format!("serve{i}"), &[]))
        .collect();
    let mut addrs: Vec<String> = servers.iter().map(|s| s.addr.clone()).collect();
    addrs.push(in_process(repo, &tmp.path().join("inproc-cache")));
    // The Lambda binary itself, two instances (each one event at a time, as on AWS).
    let lambda = LambdaFront::start(
        Path::new(env!("CARGO_BIN_EXE_gitvps-hooks-lambda-e2e")),
        repo,
        tmp.path(),
        2,
        &[("GITVPS_TOKEN_SECRET", TOKEN_SECRET)],
    );
    addrs.push(lambda.addr.clone());

    const THREADS_PER_SERVER: usize = 4;
    const REQUESTS_PER_THREAD: usize = 8;
    let started = Instant::now();
    let mut handles = Vec::new();
    let logs = || {
        let mut all: Vec<String> = servers.iter().map(|s| s.log()).collect();
        all.push(lambda.log());
        all.join("\n----\n")
    };
    for addr in &addrs {
        let (code, body) = support::http(
            addr,
            "POST",
            "/api/login",
            None,
            r#"{"customer":"c-0001","password":"demo-jane"}"#,
        );
        assert_eq!(code, 200, "login at {addr}: {body}\n{}", logs());
        let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        for t in 0..THREADS_PER_SERVER {
            let (addr, token) = (addr.clone(), token.clone());
            handles.push(std::thread::spawn(move || {
                (0..REQUESTS_PER_THREAD)
                    .map(|i| {
                        let action = if (t + i) % 2 == 0 { "reboot" } else { "fsck" };
                        (action, addr.clone(), act(&addr, &token, action))
                    })
                    .collect::<Vec<_>>()
            }));
        }
    }
    let answers: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let took = started.elapsed();

    // Every request landed: its generation and commit, one commit per distinct generation.
    let mut landed: BTreeMap<&str, BTreeMap<u64, String>> = BTreeMap::new();
    for (action, addr, (code, body)) in &answers {
        let who = if *addr == lambda.addr {
            "the Lambda"
        } else {
            addr
        };
        assert_eq!(*code, 200, "{action} through {who}: {body}\n{}", logs());
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let generation = v["generation"].as_u64().unwrap();
        let commit = v["commit"].as_str().unwrap().to_owned();
        let earlier = landed
            .entry(action)
            .or_default()
            .insert(generation, commit.clone());
        // Two answers with one generation are one request coalesced with an identical one.
        assert!(
            earlier.is_none_or(|c| c == commit),
            "{action} generation {generation} answered by two commits"
        );
    }
    let mut commits = BTreeSet::new();
    for (action, generations) in &landed {
        let last = counter(&bare, action);
        assert_eq!(
            generations.keys().copied().collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>(),
            "{action}: the answered generations are those on main, none lost or twice"
        );
        for c in generations.values() {
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(&bare)
                .args(["merge-base", "--is-ancestor", c, "main"])
                .status()
                .unwrap();
            assert!(
                out.success(),
                "{action}: answered commit {c} is not on main"
            );
            commits.insert(c.clone());
        }
    }
    assert_linear(&bare);
    let after = git(&bare, &["rev-list", "--count", "main"])
        .trim()
        .parse::<u64>()
        .unwrap();
    assert_eq!(
        after - before,
        commits.len() as u64,
        "main holds exactly the answered commits"
    );
    eprintln!(
        "push storm: {} requests from {} servers, {} commits on main in {took:?}; \
         {} branch(es) missing from a fetch or clone, fetched again",
        answers.len(),
        addrs.len(),
        commits.len(),
        logs().matches("the branch was missing").count()
    );
    for s in &servers {
        assert!(!s.log().contains("ERROR"), "{}", s.log());
    }
    assert_eq!(lambda.errors(), Vec::<String>::new(), "{}", lambda.log());
    assert!(!lambda.log().contains("ERROR"), "{}", lambda.log());
}

/// Installs a pre-receive hook in `bare` that refuses every push and counts them in `count`.
fn protect(bare: &Path, count: &Path) {
    let hook = bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho push >> '{}'\necho 'main is protected: changes go through a pull request' >&2\nexit 1\n",
            count.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&hook)
        .status()
        .unwrap();
}

#[test]
fn a_remote_that_refuses_the_push_answers_at_once_with_its_reason_and_no_retry_loop() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = seed(tmp.path());
    let daemon = GitDaemon::start(bare.parent().unwrap());
    let url = daemon.url("fleet.git");
    let served = Served::on(&url, &bare, tmp.path(), "serve", &[]);
    let token = login(&served.addr);
    let count = tmp.path().join("pushes");
    protect(&bare, &count);
    let at = head(&bare);

    for n in 1..=2 {
        let t0 = Instant::now();
        let (code, body) = act(&served.addr, &token, "reboot");
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("repo_unavailable"), "{body}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
        let pushes = std::fs::read_to_string(&count).unwrap().lines().count();
        assert_eq!(pushes, n, "one push per request, not a retry loop");
    }
    assert_eq!(head(&bare), at, "nothing landed");
    let log = served.log();
    assert!(log.contains("the push was refused"), "{log}");
    assert!(log.contains("main is protected"), "{log}");
    assert!(!log.contains("lost"), "{log}");

    // Once the branch is open again, the next request lands, without the refused commits.
    std::fs::remove_file(bare.join("hooks/pre-receive")).unwrap();
    let (code, body) = act(&served.addr, &token, "reboot");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":1"), "{body}");
    assert_eq!(git(&bare, &["rev-parse", "main^"]).trim(), at);
    assert_linear(&bare);
}

#[test]
fn a_remote_that_is_down_fails_requests_fast_and_leaves_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = seed(tmp.path());
    let mut daemon = GitDaemon::start(bare.parent().unwrap());
    let url = daemon.url("fleet.git");
    let served = Served::on(&url, &bare, tmp.path(), "serve", &[]);
    let token = login(&served.addr);
    let at = head(&bare);

    daemon.0.stop();
    let t0 = Instant::now();
    let (code, body) = act(&served.addr, &token, "reboot");
    let took = t0.elapsed();
    assert_eq!(code, 503, "{body}");
    assert!(took < Duration::from_secs(2), "a down remote took {took:?}");
    assert!(served.log().contains("cannot fetch"), "{}", served.log());

    // Back up: the next request lands as the first one (nothing of the failed one stays).
    daemon.0.restart();
    let (code, body) = act(&served.addr, &token, "reboot");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":1"), "{body}");
    assert_eq!(git(&bare, &["rev-parse", "main^"]).trim(), at);

    // A repo given as a path that is gone (an unmounted volume) fails as fast.
    let path_served = Served::on(bare.to_str().unwrap(), &bare, tmp.path(), "serve-path", &[]);
    let token = login(&path_served.addr);
    let away = tmp.path().join("away.git");
    std::fs::rename(&bare, &away).unwrap();
    let t0 = Instant::now();
    let (code, body) = act(&path_served.addr, &token, "fsck");
    assert_eq!(code, 503, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    std::fs::rename(&away, &bare).unwrap();
    let (code, body) = act(&path_served.addr, &token, "fsck");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":1"), "{body}");
    assert_eq!(counter(&bare, "reboot"), 1);
    assert_linear(&bare);
}

#[test]
fn a_remote_that_hangs_fails_requests_in_the_configured_time_and_leaves_nothing_half_written() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = seed(tmp.path());
    let daemon = GitDaemon::start(bare.parent().unwrap());
    let proxy = StallProxy::start(&format!("127.0.0.1:{}", daemon.0.port));
    let url = format!("git://{}/fleet.git", proxy.addr);
    let served = Served::on(
        &url,
        &bare,
        tmp.path(),
        "serve",
        &[("GITVPS_GIT_TIMEOUT_SECS", "2")],
    );
    let token = login(&served.addr);
    let at = head(&bare);

    // The remote accepts the connection and never answers: the fetch gives up after the
    // configured 2 s (a connect and a read at most), not never.
    proxy.stall();
    let t0 = Instant::now();
    let (code, body) = act(&served.addr, &token, "reboot");
    let took = t0.elapsed();
    assert_eq!(code, 503, "{body}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "a hung remote took {took:?}"
    );
    assert!(served.log().contains("cannot fetch"), "{}", served.log());
    assert_eq!(head(&bare), at, "nothing pushed");

    // It answers again: the next request lands as the first one.
    proxy.resume();
    let (code, body) = act(&served.addr, &token, "reboot");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":1"), "{body}");
    assert_eq!(git(&bare, &["rev-parse", "main^"]).trim(), at);
    assert_linear(&bare);
}

#[test]
fn a_force_pushed_main_under_the_cache_is_followed_and_nothing_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = seed(tmp.path());
    let served = Served::on(bare.to_str().unwrap(), &bare, tmp.path(), "serve", &[]);
    let token = login(&served.addr);
    let seeded = head(&bare);
    let (code, body) = act(&served.addr, &token, "reboot");
    assert_eq!(code, 200, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    let first = first["commit"].as_str().unwrap().to_owned();

    // An operator rewrites main: the hooks' commit is dropped, another one takes its place.
    let work = tmp.path().join("admin");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    git(&work, &["reset", "-q", "--hard", &seeded]);
    let file = work.join("inventory/vps/xen02.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\n# rewritten by the operator\n")).unwrap();
    support::commit_everything(&work, "rewrite");
    git(&work, &["push", "-q", "--force", "origin", "main"]);
    let rewritten = head(&bare);

    let (code, body) = act(&served.addr, &token, "fsck");
    assert_eq!(code, 200, "{body}");
    assert_eq!(git(&bare, &["rev-parse", "main^"]).trim(), rewritten);
    assert_eq!(
        counter(&bare, "reboot"),
        0,
        "the dropped reboot did not come back"
    );
    assert_eq!(counter(&bare, "fsck"), 1);
    let gone = std::process::Command::new("git")
        .arg("-C")
        .arg(&bare)
        .args(["merge-base", "--is-ancestor", &first, "main"])
        .status()
        .unwrap();
    assert!(!gone.success(), "the dropped commit is back on main");

    // And main moved back to an older commit: the next change is made on it.
    git(&work, &["reset", "-q", "--hard", &seeded]);
    git(&work, &["push", "-q", "--force", "origin", "main"]);
    let (code, body) = act(&served.addr, &token, "reboot");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":1"), "{body}");
    assert_eq!(git(&bare, &["rev-parse", "main^"]).trim(), seeded);
    assert_eq!(counter(&bare, "fsck"), 0);
    assert_linear(&bare);
}
