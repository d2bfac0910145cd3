//! The SSH layer against a real OpenSSH sshd: pinned host keys, one connection, quoting.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use executor::ssh::{Credentials, Session, SshError, SshTarget, Timeouts};
use planner::quote;
use support::Sshd;

fn target(s: &Sshd) -> SshTarget {
    SshTarget {
        node: "node0109".into(),
        host: s.addr.clone(),
        port: s.port,
        user: s.user.clone(),
        host_key: s.host_key.clone(),
    }
}

#[tokio::test]
async fn runs_commands_over_one_connection() {
    let s = Sshd::start();
    let creds = Credentials::from_file(&s.client_key).unwrap();
    let sess = Session::connect(&target(&s), &creds, Timeouts::default())
        .await
        .unwrap();
    let out = sess
        .exec("echo hello; echo oops >&2; exit 3", None)
        .await
        .unwrap();
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status, Some(3));
    let out = sess.exec("cat", Some(b"from stdin")).await.unwrap();
    assert_eq!(out.stdout, b"from stdin");
    assert!(out.success());
    assert_eq!(
        sess.counters
            .execs
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    sess.close().await;
}

#[tokio::test]
async fn a_wrong_host_key_is_refused_with_both_fingerprints() {
    let s = Sshd::start();
    let creds = Credentials::from_file(&s.client_key).unwrap();
    let mut t = target(&s);
    t.host_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81".into();
    let err = Session::connect(&t, &creds, Timeouts::default())
        .await
        .expect_err("must refuse");
    let msg = err.to_string();
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{msg}");
    assert!(
        msg.starts_with("node0109: host key mismatch at 127.0.0.1:"),
        "{msg}"
    );
    assert!(msg.contains("SHA256:"), "{msg}");
    assert!(msg.contains("refusing to connect"), "{msg}");
}

#[tokio::test]
async fn an_unknown_client_key_is_refused() {
    let s = Sshd::start();
    let other = s.dir.path().join("other_key");
    support::keygen(&other, "other");
    let creds = Credentials::from_file(&other).unwrap();
    let err = Session::connect(&target(&s), &creds, Timeouts::default())
        .await
        .expect_err("must refuse");
    assert!(matches!(err, SshError::AuthRefused { .. }), "{err}");
    assert!(err.to_string().contains("refused the login"), "{err}");
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_naming_the_node() {
    let s = Sshd::start();
    let creds = Credentials::from_file(&s.client_key).unwrap();
    let mut t = target(&s);
    t.port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = Session::connect(&t, &creds, Timeouts::default())
        .await
        .expect_err("must fail");
    assert!(matches!(err, SshError::Connect { .. }), "{err}");
    assert!(
        err.to_string()
            .starts_with("node0109: cannot connect to 127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn a_slow_command_times_out() {
    let s = Sshd::start();
    let creds = Credentials::from_file(&s.client_key).unwrap();
    let t = Timeouts {
        connect: std::time::Duration::from_secs(10),
        command: std::time::Duration::from_millis(300),
    };
    let sess = Session::connect(&target(&s), &creds, t).await.unwrap();
    let err = sess.exec("sleep 5", None).await.expect_err("must time out");
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn quoted_words_reach_the_node_verbatim() {
    let s = Sshd::start();
    let creds = Credentials::from_file(&s.client_key).unwrap();
    let sess = Session::connect(&target(&s), &creds, Timeouts::default())
        .await
        .unwrap();
    let marker = s.dir.path().join("pwned");
    let nasty = format!(
        "x'; touch {} ; echo '$(id) `id` \" \\ \n*",
        marker.display()
    );
    let out = sess
        .exec(&format!("printf %s {}", quote(&nasty)), None)
        .await
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    assert!(!marker.exists(), "a quoted word was executed");
}

#[tokio::test]
async fn logs_in_with_the_ssh_agent() {
    let s = Sshd::start();
    let sock = s.dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = std::process::Command::new("ssh-add")
        .arg(&s.client_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{added:?}");
    // Credentials::Agent reads SSH_AUTH_SOCK; this test binary sets it for itself only.
    // SAFETY-free: set_var is safe in edition 2024 only in unsafe; use a child process instead.
    let out = std::process::Command::new(gitvps_tests::bin())
        .args(["node-sim", "install", "--root"])
        .arg(s.dir.path().join("root"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let repo = s.dir.path().join("repo");
    std::fs::create_dir_all(repo.join("inventory/nodes")).unwrap();
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(top.join("products.toml"), repo.join("products.toml")).unwrap();
    std::fs::write(repo.join("pools.toml"), "").unwrap();
    std::fs::write(
        repo.join("inventory/nodes/n1.toml"),
        format!(
            "address = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nhost_key = \"{}\"\nlocation = \"x\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"file\", dir = \"/disks\" }}\ncapacity = {{ ram = \"1 GiB\", disk = \"1 GiB\", vcpus = 1 }}\nroot = \"{}\"\n",
            s.port,
            s.user,
            s.host_key,
            s.dir.path().join("root").display()
        ),
    )
    .unwrap();
    let plan = std::process::Command::new(gitvps_tests::bin())
        .arg("--repo")
        .arg(&repo)
        .arg("plan")
        .env_remove("GITVPS_SSH_KEY")
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(
        stdout.contains("n1 (127.0.0.1:") && stdout.contains("no changes"),
        "{stdout}"
    );
}

/// The client address and port the server sees for this connection.
async fn seen_from(conn: &executor::pool::Conn) -> String {
    let out = conn.exec("echo \"$SSH_CONNECTION\"", None).await.unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split(' ').take(2).collect::<Vec<_>>().join(":")
}

#[tokio::test]
async fn a_pool_keeps_one_connection_per_node_across_cycles() {
    let s = Sshd::start();
    let creds = Credentials::from_file(&s.client_key).unwrap();
    let pool = executor::pool::Pool::default();
    let t = target(&s);
    let first = pool.get(&t, &creds, Timeouts::default()).await.unwrap();
    assert!(!first.reused());
    let from = seen_from(&first).await;
    first.done().await;
    // The next cycle: the same TCP connection, as the server sees it.
    let second = pool.get(&t, &creds, Timeouts::default()).await.unwrap();
    assert!(second.reused());
    assert_eq!(seen_from(&second).await, from);
    second.done().await;
    // A node file that changed (another port, here) never gets the old connection.
    let mut moved = t.clone();
    moved.user = "someone-else".into();
    let err = pool.get(&moved, &creds, Timeouts::default()).await;
    assert!(err.is_err(), "a new login was attempted, as another user");
    let again = pool.get(&t, &creds, Timeouts::default()).await.unwrap();
    assert!(
        !again.reused(),
        "the changed target dropped the kept connection"
    );
    assert_ne!(seen_from(&again).await, from);
    again.done().await;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (pool.opened.load(Relaxed), pool.reused.load(Relaxed)),
        (2, 1)
    );
    pool.close_all().await;
}

/// The collector's and the demo's path: observe twice through one pool; the server drops the
/// kept connection in between (an sshd restart); the next observe still succeeds, on a fresh
/// connection, and nothing is counted twice.
#[tokio::test]
async fn a_kept_connection_the_server_dropped_is_replaced_within_the_cycle() {
    use executor::apply::{Access, observe_all};
    use planner::observe::Observation;
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;

    let f = support::fleet::Fleet::new(&["node1"]);
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
    let reachable = |o: &std::collections::BTreeMap<model::NodeId, Observation>| {
        o.values().all(|x| matches!(x, Observation::Reachable(_)))
    };
    for _ in 0..3 {
        assert!(reachable(
            &observe_all(&inv, &desired, &nodes, &access).await
        ));
    }
    assert_eq!(
        (pool.opened.load(Relaxed), pool.reused.load(Relaxed)),
        (1, 2)
    );
    assert_eq!(access.stats.connections.load(Relaxed), 1);
    assert_eq!(access.stats.execs.load(Relaxed), 3);

    f.sshd.drop_connections();
    let o = observe_all(&inv, &desired, &nodes, &access).await;
    assert!(reachable(&o), "{o:?}\n{}", f.sshd.log());
    assert_eq!(pool.opened.load(Relaxed), 2, "one new connection");
    assert_eq!(access.stats.connections.load(Relaxed), 2);
    pool.close_all().await;
}
