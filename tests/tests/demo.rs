//! `gitvps demo`: the scripted check end to end, the interactive loop with Ctrl-C, and the
//! bad inputs it refuses before starting anything.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gitvps_tests as support;
use support::bin;

/// Runs `gitvps demo --check` into `dir` with the `extra` flags and environment; asserts that it
/// exits 0 having printed every line of `expect`.
fn demo_check(dir: &Path, extra: &[&str], env: &[(&str, &Path)], expect: &[&str]) {
    let mut cmd = Command::new(bin());
    cmd.arg("demo")
        .args(extra)
        .args(["--check", "--listen", "127.0.0.1:0", "--dir"])
        .arg(dir)
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("GITVPS_SSH_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for line in expect {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}\n{stderr}");
    }
}

#[test]
fn demo_check_applies_the_fleet_and_a_reboot_click() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    demo_check(
        &dir,
        &[],
        &[],
        &[
            "2. Validate: 3 nodes, 3 customers, 4 VPSes, no problems.",
            "+ xen02: install debian-12",
            "Apply: 3 node(s) changed, 0 unchanged, 0 failed, 0 unreachable, 0 refused.",
            "Status of 4 VPS(es) pushed to branch `status`.",
            "(log in as c-0001 / demo-jane)",
            "live status of xen02: running on node0109, observed ",
            // The collector's view through the hooks: check states, counters that grow.
            "   checks of xen02: ping ",
            "   counters of xen02: received ",
            ": gitvps-bot: c-0001: reboot xen02 (site)",
            "node0109: applied 1 step(s)\n  ! xen02: reboot (generation 1)",
            "plan again: no changes.",
            // Billing for the fleet's day: invoices, a reminder, xen02 suspended, six mails
            // delivered into the demo's Maildir and applied.
            "7. Billing run for 2026-12-05",
            "billing run 2026-12-05: 3 invoice(s), 1 state change(s), 6 mail(s)",
            "~ suspend xen02 (expired 2011-06-09, grace 7 days)",
            "6 mail(s) delivered into ",
            "to jane@example.net: ",
            "to ops@acme-hosting.example.com: ",
            "demo --check OK in ",
        ],
    );
    let delivered = std::fs::read_dir(dir.join("maildir/new")).unwrap().count();
    assert_eq!(delivered, 6);
    // The nodes really ran the steps: xen02 was rebooted (the node recorded generation 1),
    // then suspended by billing: the stand-in xl has no domain any more, the disk is kept.
    let node = dir.join("nodes/node0109");
    let state = std::fs::read_to_string(node.join("var/lib/gitvps/state/xen02.json")).unwrap();
    assert!(state.contains("\"reboot\":1"), "{state}");
    assert!(
        !node
            .join("var/lib/gitvps-sim/xl/domains/xen02.json")
            .exists(),
        "the suspended domain is shut down"
    );
    assert!(node.join("dev/vg0/xen02").is_file(), "the disk is kept");
}

#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn demo_real_boots_a_vps_one_can_log_in_to_and_leaves_nothing_running() {
    support::require_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    // The bootstraps' root cache of the test runs (target/gitvps-cache), shared with tests/kvm.rs.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("gitvps-cache");
    demo_check(
        &dir,
        &["--real"],
        &[("GITVPS_CACHE", &cache)],
        &[
            "node local-kvm: KVM node (real QEMU)",
            "+ kvm01: install debian-12",
            "Apply: 4 node(s) changed, 0 unchanged, 0 failed, 0 unreachable, 0 refused.",
            "Real VPS kvm01 is up",
            "logged in to kvm01 over SSH: hostname kvm01.example.net",
            "demo --check OK in ",
        ],
    );
    // The guest's QEMU is gone with the demo: no process names the demo folder any more.
    let needle = dir.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let cmd = std::fs::read(e.ok()?.path().join("cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                cmd.contains(&needle).then_some(cmd)
            })
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the demo: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn demo_applies_an_operator_commit_and_stops_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let mut child = Command::new(bin())
        .args(["demo", "--listen", "127.0.0.1:0", "--dir"])
        .arg(&dir)
        .env_remove("SSH_AUTH_SOCK")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push_str(&l);
                seen.push('\n');
                if l.contains(what) {
                    return l;
                }
            }
        }
        panic!("no `{what}` in:\n{seen}");
    };
    // Billing runs before serving: it suspends xen02 and that is applied.
    wait_for("5. Billing run for 2026-12-05");
    wait_for("~ suspend xen02");
    let serving = wait_for("on http://127.0.0.1:");
    let addr = serving
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    // The operator stops xen04 (xen02 is suspended already) in the work clone and commits.
    let file = dir.join("fleet/inventory/vps/xen04.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("power = \"running\"", "power = \"stopped\"", 1),
    )
    .unwrap();
    let st = Command::new("git")
        .arg("-C")
        .arg(dir.join("fleet"))
        .args([
            "-c",
            "user.name=op",
            "-c",
            "user.email=op@example.net",
            "commit",
            "-q",
            "-am",
            "stop xen04",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    wait_for(": op: stop xen04");
    let applied = wait_for("Apply: ");
    assert!(applied.contains("1 node(s) changed"), "{applied}");

    // A move: a small VPS placed in Tampa (node0109), then `gitvps vps move` to alpha
    // (Shanghai: new addresses) in a commit of its own; the loop's next cycle moves it.
    let fleet = dir.join("fleet");
    let products = fleet.join("products.toml");
    let mut text = std::fs::read_to_string(&products).unwrap();
    text.push_str("\n[[product]]\nid = \"tiny\"\nname = \"Tiny VPS\"\nperiod_months = 1\nprice = \"1.00\"\nsetup_fee = \"0.00\"\ncommission = \"0.00\"\ndisk = \"64 MiB\"\nram = \"256 MiB\"\nvcpus = 1\ntraffic = \"1 GiB\"\nprivate = true\n");
    std::fs::write(&products, text).unwrap();
    let gitvps = |args: &[&str]| {
        let out = Command::new(bin())
            .arg("--repo")
            .arg(&fleet)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "gitvps {args:?}: {out:?}");
    };
    gitvps(&[
        "vps",
        "new",
        "--customer",
        "c-0003",
        "--product",
        "tiny",
        "--location",
        "Tampa, Florida (USA)",
        "--id",
        "mv01",
    ]);
    let commit = |message: &str| {
        let st = Command::new("git")
            .arg("-C")
            .arg(&fleet)
            .args(["-c", "user.name=op", "-c", "user.email=op@example.net"])
            .args(["add", "-A"])
            .status()
            .unwrap();
        assert!(st.success());
        let st = Command::new("git")
            .arg("-C")
            .arg(&fleet)
            .args(["-c", "user.name=op", "-c", "user.email=op@example.net"])
            .args(["commit", "-q", "-m", message])
            .status()
            .unwrap();
        assert!(st.success());
    };
    commit("add mv01");
    wait_for(": op: add mv01");
    let applied = wait_for("Apply: ");
    assert!(applied.contains("0 failed"), "{applied}");
    gitvps(&["vps", "move", "mv01", "--to", "alpha"]);
    commit("move mv01 to alpha");
    wait_for(": op: move mv01 to alpha");
    wait_for("> move vps mv01: node0109 → alpha (disk 64 MiB)");
    wait_for("move mv01: node0109 → alpha: done (64 MiB copied with ");
    let applied = wait_for("Apply: ");
    assert!(applied.contains("0 failed"), "{applied}");
    assert!(
        dir.join("nodes/alpha/dev/vg0/mv01").exists(),
        "mv01's disk is on alpha"
    );

    // Ctrl-C: the process ends, the web server and the nodes with it.
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo still running after Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "{addr} still open"
    );
}

#[test]
fn demo_refuses_a_non_empty_folder_and_a_busy_port_before_starting_anything() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let out = Command::new(bin())
        .args(["demo", "--check", "--listen", "127.0.0.1:0", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not empty: give an empty or new folder"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let dir = tmp.path().join("fresh");
    let out = Command::new(bin())
        .args(["demo", "--check", "--listen", &port, "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {port}")) && err.contains("--listen"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing is written when the port is busy");
}

/// `gitvps bench soak`: a short run of the demo fleet under clicks while nodes flap loses no
/// committed action and ends converged (its exit code says so). Figures are not asserted.
#[test]
fn a_short_soak_loses_nothing() {
    let out = Command::new(bin())
        .args(["bench", "soak", "--minutes", "0.25", "--flap-every", "4"])
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("GITVPS_SSH_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(" 0 commit(s) answered but not in the repo, 0 declared action(s) not done"),
        "{stdout}"
    );
    assert!(
        stdout.contains("converged: the plan after the last apply is empty"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(" 0 node flap(s)"),
        "the nodes flapped: {stdout}"
    );
}
