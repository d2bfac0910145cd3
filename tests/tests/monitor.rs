//! The usage collector end to end: real sshd, simulated dom0s whose stand-in `xentop` counts
//! while a domain runs, `gitvps monitor collect --once` into a real sled database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use std::path::Path;
use std::time::Duration;

use monitor::Tier;
use support::fleet::Fleet;

/// Three nodes with one running VPS each, applied.
fn three_nodes() -> Fleet {
    let f = Fleet::new(&["node1", "node2", "node3"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen20", "node2", "192.0.2.20", "");
    f.vps("xen30", "node3", "192.0.2.30", "");
    f.converge();
    f
}

fn collect(f: &Fleet, db: &Path, extra: &[&str]) -> support::fleet::Run {
    let db = db.to_str().unwrap();
    let mut args = vec!["monitor", "collect", "--once", "--db", db];
    args.extend_from_slice(extra);
    f.gitvps(&args)
}

fn total(db: &Path, vps: &str, tier: Tier) -> (u64, u64, u64) {
    let store = executor::samples::Store::open(db).unwrap();
    let s = store.vps_series(&vps.parse().unwrap()).unwrap();
    let far = chrono::Duration::days(400);
    let now = chrono::Utc::now();
    s.range(tier, now - far, now + far)
        .fold((0, 0, 0), |(n, rx, w), (_, b)| {
            (
                n + b.samples,
                rx + b.usage.net_rx_bytes,
                w + b.usage.disk_write_ops,
            )
        })
}

#[test]
fn two_collections_store_the_counters_growth_as_deltas() {
    let f = three_nodes();
    let db = f.dir.path().join("monitor.db");
    let first = collect(&f, &db, &[]);
    assert_eq!(first.code, 0, "{first:?}");
    for n in ["node1", "node2", "node3"] {
        assert!(
            first
                .stdout
                .contains(&format!("{n}: sampled 1, missing 0, ")),
            "{first:?}"
        );
    }
    // The first reading is the base: no delta yet.
    assert_eq!(total(&db, "xen10", Tier::Raw).0, 0);
    std::thread::sleep(Duration::from_millis(1500));
    let second = collect(&f, &db, &[]);
    assert_eq!(second.code, 0, "{second:?}");
    let (samples, rx, writes) = total(&db, "xen10", Tier::Raw);
    assert_eq!(samples, 1);
    assert!(
        rx > 0 && writes > 0,
        "the counters moved: rx {rx}, writes {writes}"
    );
    // Every tier holds the same usage.
    assert_eq!(total(&db, "xen10", Tier::Hourly), (samples, rx, writes));
    assert_eq!(
        total(&db, "xen10", Tier::FiveMinutes),
        (samples, rx, writes)
    );
    // The node's own figures are stored from the second reading on.
    let store = executor::samples::Store::open(&db).unwrap();
    let node = store.node_series(&"node1".parse().unwrap()).unwrap();
    assert_eq!(node.tiers.get(&Tier::Raw).map(|b| b.len()), Some(1));
    let b = node.tiers[&Tier::Raw].values().next().unwrap();
    assert!(
        b.storage_free.min > 0 && b.storage_free.min <= 2 << 40,
        "{b:?}"
    );
    drop(store);
    // `gitvps monitor compact` swaps a fresh copy in: the same totals, nothing left beside.
    let before = [Tier::Raw, Tier::Hourly].map(|t| total(&db, "xen10", t));
    let r = f.gitvps(&["monitor", "compact", "--db", db.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("compacted: sled's files"), "{r:?}");
    assert_eq!(
        [Tier::Raw, Tier::Hourly].map(|t| total(&db, "xen10", t)),
        before
    );
    for beside in [
        "monitor.db.compacting",
        "monitor.db.compacted",
        "monitor.db.old",
    ] {
        assert!(!f.dir.path().join(beside).exists(), "{beside}");
    }
}

#[test]
fn a_re_created_domain_counts_from_zero() {
    let f = three_nodes();
    let db = f.dir.path().join("monitor.db");
    assert_eq!(collect(&f, &db, &["--node", "node1"]).code, 0);
    std::thread::sleep(Duration::from_millis(2500));
    // Destroyed and started again by apply: a new domain id and counters from zero.
    assert_eq!(f.on_node("node1", "xl", &["destroy", "xen10"]).code, 0);
    f.converge();
    std::thread::sleep(Duration::from_millis(1200));
    let r = collect(&f, &db, &["--node", "node1"]);
    assert_eq!(r.code, 0, "{r:?}");
    let store = executor::samples::Store::open(&db).unwrap();
    let s = store.vps_series(&"xen10".parse().unwrap()).unwrap();
    let b = s.tiers[&Tier::Raw].values().next().unwrap();
    assert_eq!(b.resets, 1, "{b:?}");
    // What the new domain counted since it started: something, and never a giant or wrapped
    // difference against the old domain's counters.
    assert!(
        b.usage.net_rx_bytes > 0 && b.usage.net_rx_bytes < 20_000 * 60,
        "{b:?}"
    );
}

#[test]
fn a_garbled_and_a_stalled_node_are_missing_and_the_others_stored() {
    let f = three_nodes();
    let db = f.dir.path().join("monitor.db");
    f.wrap(
        "node2",
        "xentop",
        "echo 'Welcome to node2!'; echo 'NAME ? ?'; exit 0",
    );
    f.wrap("node3", "xentop", "sleep 30");
    for _ in 0..2 {
        let r = collect(&f, &db, &["--timeout", "3"]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stdout.contains("node1: sampled 1, missing 0"), "{r:?}");
        assert!(r.stdout.contains("node2: sampled 0, missing 1"), "{r:?}");
        assert!(r.stdout.contains("node3: sampled 0, missing 1"), "{r:?}");
        assert!(r.stdout.contains("xentop"), "the reason is named: {r:?}");
        assert!(
            r.stdout.contains("timed out") || r.stdout.contains("within 3 s"),
            "{r:?}"
        );
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(total(&db, "xen10", Tier::Raw).0, 1);
    assert_eq!(total(&db, "xen20", Tier::Raw).0, 0);
    assert_eq!(total(&db, "xen30", Tier::Raw).0, 0);
}

/// The service's way (`gitvps monitor`): one pool of connections kept across cycles. The
/// node's sshd is restarted between two cycles; the next cycle collects the node again, over
/// a new connection, and the cycle after reuses that one.
#[tokio::test]
async fn a_node_whose_sshd_restarted_is_collected_again_on_the_next_cycle() {
    use executor::apply::Access;
    use executor::collect::collect_all;
    use executor::ssh::{Credentials, Timeouts};
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    let mut f = Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.converge();
    let inv = model::Inventory::load(&f.repo).unwrap();
    let desired = planner::desired::desired(
        &inv,
        &planner::desired::Templates::default(),
        &planner::desired::Bootstraps::default(),
    )
    .unwrap();
    let nodes: Vec<model::NodeId> = inv.nodes.keys().cloned().collect();
    let pool = Arc::new(executor::pool::Pool::default());
    let access = Access {
        creds: Credentials::from_file(&f.sshd.client_key).unwrap(),
        timeouts: Timeouts::default(),
        parallelism: 4,
        stats: Arc::default(),
        pool: Some(pool.clone()),
        restic: None,
    };
    let limit = Duration::from_secs(20);
    let read_xen10 =
        |got: &std::collections::BTreeMap<model::NodeId, executor::collect::Collected>| {
            let c = &got[&"node1".parse::<model::NodeId>().unwrap()];
            match &c.outcome {
                Ok(r) => r.guests.contains_key("xen10") && c.missing().is_empty(),
                Err(e) => panic!("node1 missing: {}", model::diag::error_chain(e)),
            }
        };
    for _ in 0..2 {
        assert!(read_xen10(
            &collect_all(&inv, &desired, &nodes, &access, limit).await
        ));
    }
    assert_eq!(
        (pool.opened.load(Relaxed), pool.reused.load(Relaxed)),
        (1, 1)
    );

    f.sshd.restart();
    let got = collect_all(&inv, &desired, &nodes, &access, limit).await;
    assert!(read_xen10(&got), "{}", f.sshd.log());
    assert_eq!(
        pool.opened.load(Relaxed),
        2,
        "one new connection after the restart"
    );
    assert!(read_xen10(
        &collect_all(&inv, &desired, &nodes, &access, limit).await
    ));
    assert_eq!(
        pool.opened.load(Relaxed),
        2,
        "the new connection is kept for the cycle after"
    );
    pool.close_all().await;
}

#[test]
fn a_foreign_database_is_refused_and_left_alone() {
    let f = Fleet::new(&["node1"]);
    let db = f.dir.path().join("theirs");
    {
        let other = sled::open(&db).unwrap();
        other.insert(b"config", b"precious").unwrap();
        other.flush().unwrap();
    }
    let r = collect(&f, &db, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains(&format!("{}: not a gitvps monitor database", db.display())),
        "{r:?}"
    );
    let other = sled::open(&db).unwrap();
    assert_eq!(
        other.get(b"config").unwrap().as_deref(),
        Some(&b"precious"[..])
    );
}

/// The daily traffic run, end to end: totals from two real collections, a plan whose quota is
/// 1 KiB so it is passed at once; one commit holds the usage file, the throttle and the mail,
/// the mail reaches a real SMTP server, the next apply lowers the rate, and a second run the
/// same day commits and sends nothing.
#[test]
fn the_traffic_run_commits_the_totals_throttles_past_the_quota_and_mails_once() {
    let f = Fleet::new(&["node1"]);
    f.edit(
        "products.toml",
        "traffic = \"204800 MiB\"",
        "traffic = \"1 KiB\"",
    );
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen11", "node1", "192.0.2.11", "power = \"stopped\"\n");
    f.converge();
    support::commit_all(&f.repo);
    let db = f.dir.path().join("monitor.db");
    assert_eq!(collect(&f, &db, &[]).code, 0);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(collect(&f, &db, &[]).code, 0);

    let smtp = support::smtp::SmtpServer::start();
    let usage = |extra: &[&str]| -> support::fleet::Run {
        let mut args = vec!["monitor", "usage", "--db", db.to_str().unwrap()];
        args.extend_from_slice(extra);
        f.command(&args)
            .env("GITVPS_SMTP_URL", format!("smtp://{}", smtp.addr()))
            .output()
            .unwrap()
            .into()
    };
    let dry = usage(&["--dry-run"]);
    assert_eq!(
        dry.code, 2,
        "a dry run with something to do exits 2: {dry:?}"
    );
    let head = support::git(&f.repo, &["rev-parse", "HEAD"]);

    let r = usage(&[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("xen10: throttle"), "{r:?}");
    assert!(
        !r.stdout.contains("xen11: throttle"),
        "a stopped VPS used nothing: {r:?}"
    );
    // The run's commit, then the sent log's.
    let range = format!("{}..HEAD", head.trim());
    let changed = support::git(&f.repo, &["log", "--name-only", "--format=%s", &range]);
    let month = chrono::Utc::now().format("%Y-%m").to_string();
    assert!(
        changed.contains(&format!("usage/{month}.toml"))
            && changed.contains("inventory/vps/xen10.toml")
            && changed.contains("mail/"),
        "{changed}"
    );
    assert_ne!(support::git(&f.repo, &["rev-parse", "HEAD"]), head);
    let file = std::fs::read_to_string(f.repo.join(format!("usage/{month}.toml"))).unwrap();
    assert!(
        file.contains("[vps.xen10]") && file.contains("mailed = \"over\""),
        "{file}"
    );
    let vps = std::fs::read_to_string(f.repo.join("inventory/vps/xen10.toml")).unwrap();
    assert!(vps.contains("throttled = true"), "{vps}");

    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "{}", smtp.log());
    let m = msgs[0].parsed();
    assert_eq!(msgs[0].envelope_to(), "jane@example.net");
    assert_eq!(
        m.subject(),
        Some("Your VPS xen10 has used its monthly traffic")
    );
    let body = m.body_text(0).unwrap_or_default().into_owned();
    assert!(body.contains("limited to 1Mb/s"), "{body}");

    // The throttle reaches the node through the ordinary plan and apply.
    let plan = f.gitvps(&["plan"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stdout.contains("xen10"), "{plan:?}");
    f.converge();
    let cfg = std::fs::read_to_string(f.root("node1").join("etc/xen/gitvps/xen10.cfg")).unwrap();
    assert!(cfg.contains("rate=1Mb/s"), "{cfg}");

    // The same day again, nothing collected since: no commit, no mail.
    let head = support::git(&f.repo, &["rev-parse", "HEAD"]);
    let again = usage(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(
        support::git(&f.repo, &["rev-parse", "HEAD"]),
        head,
        "{again:?}"
    );
    assert_eq!(smtp.count(), 1);
}
