//! The reconciler killed (SIGKILL) after every step of realistic plans, then run again: the
//! result is the same as an uninterrupted run, no disk is erased twice, no action counter
//! acts twice, the node lock is released, and the plan in between shows what is left.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use gitvps_tests as support;

use support::fleet::Fleet;

/// Counts every run of a node tool into `ROOT/tool-runs.log`, one line per run.
fn count_runs(f: &Fleet, tool: &str) {
    let log = f.root("node1").join("tool-runs.log");
    f.wrap(
        "node1",
        tool,
        &format!("echo \"{tool} $*\" >>'{}'", log.display()),
    );
}

fn runs(f: &Fleet, tool: &str) -> usize {
    std::fs::read_to_string(f.root("node1").join("tool-runs.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&format!("{tool} ")))
        .count()
}

/// Starts `gitvps apply` and SIGKILLs it as soon as step `k + 1` (1-based) begins, that is
/// once steps 1..=k reported done. Returns false when the apply ended before that step.
fn kill_after_step(f: &Fleet, k: usize) -> bool {
    let mut child = f
        .command(&["apply"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let begin = format!("[{}/", k + 1);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        let line = line.unwrap();
        if line.contains(&begin) {
            child.kill().unwrap();
            child.wait().unwrap();
            return true;
        }
    }
    child.wait().unwrap();
    false
}

/// One phase of a fleet's life: what to change before it, and what must hold after it.
struct Phase {
    name: &'static str,
    change: fn(&Fleet),
    check: fn(&Fleet),
}

fn create(f: &Fleet) {
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen11", "node1", "192.0.2.11", "");
}

fn created(f: &Fleet) {
    assert_eq!(f.lv("node1", "xen10"), Some(30 << 30));
    assert_eq!(f.lv("node1", "xen11"), Some(30 << 30));
    assert!(f.domain("node1", "xen10").is_some());
    assert!(f.domain("node1", "xen11").is_some());
    assert_eq!(runs(f, "lvcreate"), 2, "each disk created once");
}

fn reboot_and_grow(f: &Fleet) {
    f.vps(
        "xen10",
        "node1",
        "192.0.2.10",
        "[actions]\nreboot = 1\nfsck = 0\n",
    );
    f.edit("products.toml", "disk = \"30720 MiB\"", "disk = \"40 GiB\"");
}

fn rebooted_and_grown(f: &Fleet) {
    assert_eq!(f.record("node1", "xen10")["reboot"], 1);
    // The grow restarts xen10, which also serves its reboot: it goes down exactly once.
    let log = std::fs::read_to_string(f.root("node1").join("tool-runs.log")).unwrap_or_default();
    let downs = (log.lines())
        .filter(|l| l.starts_with("xl reboot") || l.starts_with("xl shutdown"))
        .filter(|l| l.ends_with(" xen10"))
        .count();
    assert_eq!(
        downs, 1,
        "xen10 went down once, for its reboot and its grow: {log}"
    );
    assert_eq!(f.lv("node1", "xen10"), Some(40 << 30));
    assert_eq!(f.lv("node1", "xen11"), Some(40 << 30));
    assert_eq!(runs(f, "lvextend"), 2, "each disk grown once");
    assert!(f.domain("node1", "xen10").is_some());
    assert!(f.domain("node1", "xen11").is_some());
}

fn destroy_after_retention(f: &Fleet) {
    f.edit(
        "inventory/vps/xen11.toml",
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\nstate = \"destroyed\"\ndestroyed = 2026-01-02\n",
    );
}

fn destroyed(f: &Fleet) {
    assert!(f.domain("node1", "xen11").is_none());
    assert_eq!(f.lv("node1", "xen11"), None);
    assert_eq!(runs(f, "lvremove"), 1, "the disk was erased once");
    assert_eq!(
        f.lv("node1", "xen10"),
        Some(40 << 30),
        "the other disk lives"
    );
    assert!(f.domain("node1", "xen10").is_some());
}

const PHASES: [Phase; 3] = [
    Phase {
        name: "create",
        change: create,
        check: created,
    },
    Phase {
        name: "reboot and grow",
        change: reboot_and_grow,
        check: rebooted_and_grown,
    },
    Phase {
        name: "destroy after retention",
        change: destroy_after_retention,
        check: destroyed,
    },
];

/// A fleet at the start of phase `p`: the phases before it applied without interruption,
/// tool runs counted from there.
fn fleet_before(p: usize) -> Fleet {
    let f = Fleet::new(&["node1"]);
    for phase in &PHASES[..p] {
        (phase.change)(&f);
        f.converge();
    }
    for tool in ["lvcreate", "lvextend", "lvremove", "xl"] {
        count_runs(&f, tool);
    }
    f
}

#[test]
fn a_kill_after_any_step_then_a_rerun_is_an_uninterrupted_run() {
    let mut scenarios = 0;
    for (p, phase) in PHASES.iter().enumerate() {
        let mut k = 1;
        loop {
            let f = fleet_before(p);
            (phase.change)(&f);
            let total = f.gitvps(&["plan", "--json"]);
            assert_eq!(total.code, 2, "{}: nothing to do: {total:?}", phase.name);
            if !kill_after_step(&f, k) {
                break;
            }
            scenarios += 1;
            // The plan in between shows what is left, and is not empty: step k + 1 had
            // begun, at most it finished.
            let between = f.gitvps(&["plan"]);
            assert!(
                between.code == 2 || between.code == 0,
                "{} after step {k}: {between:?}",
                phase.name
            );
            // The re-run takes the lock (it was released with the killed session) and
            // finishes; the plan after it is empty.
            let again = f.converge();
            assert!(
                !again.stdout.contains("locked"),
                "{} after step {k}: {again:?}",
                phase.name
            );
            (phase.check)(&f);
            k += 1;
        }
        assert!(k > 2, "{}: the phase has more than one step", phase.name);
    }
    assert!(scenarios >= 10, "only {scenarios} kill points");
}
