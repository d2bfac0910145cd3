//! Moving a VPS to another node (issue 19, item 4) end to end: two simulated Xen/LVM nodes
//! behind a real sshd, the gitvps binary. The disk's bytes arrive intact, the source goes only
//! after the target runs, a bad copy is discarded, and an apply killed mid-move is finished by
//! the next one with the source intact in between.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::fleet::Fleet;

/// A private plan with a 64 MiB disk: the copy stays small.
const TINY: &str = "\n[[product]]\nid = \"tiny\"\nname = \"Tiny VPS\"\nperiod_months = 1\nprice = \"1.00\"\nsetup_fee = \"0.00\"\ncommission = \"0.00\"\ndisk = \"64 MiB\"\nram = \"256 MiB\"\nvcpus = 1\ntraffic = \"1 GiB\"\nprivate = true\nsnapshot_limit = 1\n";

/// node1 and node2, with xen10 (64 MiB) created on node1 and data of its own on its disk;
/// that data, and node1's record of xen10.
fn fleet() -> (Fleet, Vec<u8>, serde_json::Value) {
    let f = Fleet::new(&["node1", "node2"]);
    let products = f.repo.join("products.toml");
    let mut text = std::fs::read_to_string(&products).unwrap();
    text.push_str(TINY);
    std::fs::write(&products, text).unwrap();
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.edit(
        "inventory/vps/xen10.toml",
        "product = \"advanced\"",
        "product = \"tiny\"",
    );
    f.converge();
    assert_eq!(f.lv("node1", "xen10"), Some(64 << 20));
    // Data that does not compress to nothing: a pseudo-random first half, a tail marker.
    let mut data = vec![0u8; 64 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data[..32 << 20].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    data[(64 << 20) - 16..].copy_from_slice(b"gitvps-move-tail");
    std::fs::write(disk(&f, "node1"), &data).unwrap();
    let record = f.record("node1", "xen10");
    (f, data, record)
}

fn disk(f: &Fleet, node: &str) -> std::path::PathBuf {
    f.root(node).join("dev/vg0/xen10")
}

fn config(f: &Fleet, node: &str) -> std::path::PathBuf {
    f.root(node).join("etc/xen/gitvps/xen10.cfg")
}

fn to_node2(f: &Fleet) {
    f.edit(
        "inventory/vps/xen10.toml",
        "node = \"node1\"",
        "node = \"node2\"",
    );
}

/// The move done: the bytes on node2 are node1's, node1 holds nothing of xen10, node2 runs it
/// with node1's record, and a second plan is empty.
fn moved(f: &Fleet, data: &[u8], record: &serde_json::Value) {
    let got = std::fs::read(disk(f, "node2")).unwrap();
    assert!(got == data, "the disk on node2 differs from node1's");
    assert!(f.domain("node2", "xen10").is_some(), "runs on node2");
    assert!(config(f, "node2").exists());
    assert_eq!(
        &f.record("node2", "xen10"),
        record,
        "node1's record came along"
    );
    assert!(f.lv("node1", "xen10").is_none(), "the source disk is gone");
    assert!(f.domain("node1", "xen10").is_none());
    assert!(!config(f, "node1").exists());
    assert!(
        !f.root("node1")
            .join("var/lib/gitvps/state/xen10.json")
            .exists()
    );
    assert!(
        !f.root("node2")
            .join("var/lib/gitvps/state/xen10.moved")
            .exists(),
        "the move's marker is gone"
    );
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "a second plan is empty: {p:?}");
}

/// A program in front of the node's own on its PATH (`ROOT/usr/local/sbin` comes first).
fn shim(f: &Fleet, node: &str, tool: &str, script: &str) -> std::path::PathBuf {
    let dir = f.root(node).join("usr/local/sbin");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(tool);
    std::fs::write(&p, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn changing_node_moves_the_disk_byte_for_byte_and_removes_the_source_after() {
    let (f, data, record) = fleet();
    to_node2(&f);
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(
        p.stdout
            .contains("Moves:\n  > move vps xen10: node1 → node2 (disk 64 MiB)\n"),
        "{p:?}"
    );
    assert!(
        !p.stdout.contains("create disk"),
        "no fresh disk on node2: {p:?}"
    );
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(
        a.stdout
            .contains("move xen10: node1 → node2: done (64 MiB copied with "),
        "{a:?}"
    );
    moved(&f, &data, &record);
}

/// A move whose copy is checked as different: it fails, the copy on node2 is discarded,
/// nothing is installed there, node1 runs xen10 again; with `shims` (node2's tools) gone, the
/// next apply moves it.
fn a_bad_copy_is_discarded(shims: &[(&str, String)]) {
    let (f, data, record) = fleet();
    to_node2(&f);
    let shims: Vec<_> = (shims.iter())
        .map(|(tool, script)| shim(&f, "node2", tool, script))
        .collect();
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout.contains("move xen10: node1 → node2: FAILED: ")
            && a.stdout.contains("sha256 differs"),
        "{a:?}"
    );
    assert!(f.lv("node2", "xen10").is_none(), "the copy is discarded");
    assert!(
        f.domain("node2", "xen10").is_none() && !config(&f, "node2").exists(),
        "nothing was installed on node2 instead"
    );
    assert!(std::fs::read(disk(&f, "node1")).unwrap() == data);
    assert!(
        f.domain("node1", "xen10").is_some(),
        "the source runs again"
    );
    for s in shims {
        std::fs::remove_file(s).unwrap();
    }
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    moved(&f, &data, &record);
}

#[test]
fn a_checksum_mismatch_discards_the_copy_and_restarts_the_source() {
    // node2's SHA-256 tools lie about what it reads back (only the move's, reading its input:
    // OpenSSL's where the node has it, else coreutils').
    let zeros = "0".repeat(64);
    a_bad_copy_is_discarded(&[
        (
            "sha256sum",
            format!(
                "if [ $# -eq 0 ]; then cat >/dev/null; echo \"{zeros}  -\"; exit 0; fi\nexec /usr/bin/sha256sum \"$@\""
            ),
        ),
        (
            "openssl",
            format!(
                "if [ \"$*\" = \"dgst -sha256 -r\" ]; then cat >/dev/null; echo \"{zeros} *stdin\"; exit 0; fi\nexec /usr/bin/openssl \"$@\""
            ),
        ),
    ]);
}

/// The bytes that reach node2's disk are not the source's (its decompressor turns zeros into
/// ones on the way, and succeeds): the read-back after the flush catches it.
#[test]
fn a_copy_corrupted_on_its_way_to_the_disk_is_discarded() {
    a_bad_copy_is_discarded(&[(
        "zstd",
        "case \"$*\" in *-d*) /usr/bin/zstd \"$@\" | tr '\\000' '\\001'; exit;; esac\nexec /usr/bin/zstd \"$@\"".to_owned(),
    )]);
}

/// `gitvps apply` killed (SIGKILL) while the disk streams: the source's disk and config are
/// intact and it boots; the next apply overwrites the partial copy and finishes the move.
#[test]
fn an_apply_killed_mid_copy_leaves_the_source_intact_and_a_rerun_finishes() {
    let (f, data, record) = fleet();
    to_node2(&f);
    let flag = f.dir.path().join("receiving");
    // node2's decompressor announces it started receiving, then holds on long enough to be
    // killed.
    let slow = shim(
        &f,
        "node2",
        "zstd",
        &format!(
            "case \"$*\" in *-d*) touch '{}'; sleep 2;; esac\nexec /usr/bin/zstd \"$@\"",
            flag.display()
        ),
    );
    let mut child = f
        .command(&["apply"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !flag.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "the copy never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let _ = err.lines().count();
    child.wait().unwrap();
    std::fs::remove_file(slow).unwrap();
    // The source is intact: its disk, its config; it boots.
    assert!(std::fs::read(disk(&f, "node1")).unwrap() == data);
    assert!(config(&f, "node1").exists());
    let boot = f.on_node(
        "node1",
        "xl",
        &["create", "-q", config(&f, "node1").to_str().unwrap()],
    );
    assert_eq!(boot.code, 0, "the source boots: {boot:?}");
    assert!(f.domain("node1", "xen10").is_some());
    assert!(
        !f.root("node2")
            .join("var/lib/gitvps/state/xen10.moved")
            .exists(),
        "no copy is taken as verified"
    );
    // The plan says the move resumes, and the node's lock is free again.
    let t0 = Instant::now();
    let p = loop {
        let p = f.gitvps(&["plan"]);
        if p.stdout.contains("resuming an interrupted move")
            || t0.elapsed() > Duration::from_secs(30)
        {
            break p;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        p.stdout
            .contains("move vps xen10: node1 → node2 (disk 64 MiB), resuming an interrupted move"),
        "{p:?}"
    );
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    moved(&f, &data, &record);
}

/// Counts, per node, the observes that run on it: a wrapper in front of the node's `lvs` notes
/// each report the observe script asks for (`--reportformat json`, which no step uses).
fn count_observes(f: &Fleet, nodes: &[&str]) -> Vec<std::path::PathBuf> {
    (nodes.iter())
        .map(|n| {
            let log = f.dir.path().join(format!("{n}.observes"));
            f.wrap(
                n,
                "lvs",
                &format!(
                    "case \"$*\" in *--reportformat*) echo observe >>'{}';; esac",
                    log.display()
                ),
            );
            log
        })
        .collect()
}

fn observes(logs: &[std::path::PathBuf]) -> Vec<usize> {
    (logs.iter())
        .map(|l| std::fs::read_to_string(l).map_or(0, |t| t.lines().count()))
        .collect()
}

/// `gitvps apply` observes each node once: the apply envelope's observation under the node's
/// lock is the one the moves are looked for in (no observe of its own before it), with or
/// without steps, and `apply --reviewed` checks the plan on it too.
#[test]
fn apply_observes_each_node_once() {
    let (f, _, _) = fleet();
    let logs = count_observes(&f, &["node1", "node2"]);
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stdout.contains("0 node(s) changed, 2 unchanged"), "{a:?}");
    assert_eq!(observes(&logs), [1, 1], "{a:?}");
    // Steps on node1 (a reboot).
    let file = f.repo.join("inventory/vps/xen10.toml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\n[actions]\nreboot = 1\n");
    std::fs::write(&file, text).unwrap();
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stdout.contains("node1: applied 1 step(s)"), "{a:?}");
    assert_eq!(observes(&logs), [2, 2], "{a:?}");
    // Reviewed: the plan observes once, the apply once.
    support::commit_all(&f.repo);
    let plan = f.dir.path().join("plan.json");
    assert_eq!(f.gitvps(&["plan", "--out", plan.to_str().unwrap()]).code, 0);
    assert_eq!(observes(&logs), [3, 3]);
    let a = f.gitvps(&["apply", "--reviewed", plan.to_str().unwrap()]);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(observes(&logs), [4, 4], "{a:?}");
}

/// A reviewed plan that did not show the move the nodes call for is stale, even with the same
/// inventory and node states: refused, naming the move it did not show, and nothing is done;
/// the plan that showed it is applied.
#[test]
fn a_reviewed_plan_without_the_move_is_refused_as_stale() {
    let (f, data, record) = fleet();
    to_node2(&f);
    support::commit_all(&f.repo);
    let plan = f.dir.path().join("plan.json");
    let p = f.gitvps(&["plan", "--out", plan.to_str().unwrap()]);
    assert_eq!(p.code, 2, "{p:?}");
    // The same plan without its move (as a plan made while the disk was not seen on node1
    // would be): the same commit, tree and node states.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    let shown = doc.as_object_mut().unwrap().remove("moves").unwrap();
    assert_eq!(shown.as_array().map(Vec::len), Some(1), "{shown}");
    let stale = f.dir.path().join("stale.json");
    std::fs::write(&stale, doc.to_string()).unwrap();
    let a = f.gitvps(&["apply", "--reviewed", stale.to_str().unwrap()]);
    assert_eq!(a.code, 3, "{a:?}");
    assert!(
        a.stdout
            .contains("  the moves: now `move vps xen10: node1 → node2 (disk 64 MiB)`\n"),
        "{a:?}"
    );
    assert!(f.lv("node2", "xen10").is_none(), "nothing was applied");
    assert!(f.domain("node1", "xen10").is_some());
    // The plan that showed it is applied: the move, and only what the plan showed (the moved
    // VPS's console access on node2 was not in it: the next apply adds it).
    let a = f.gitvps(&["apply", "--reviewed", plan.to_str().unwrap()]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(
        a.stdout.contains("move xen10: node1 → node2: done"),
        "{a:?}"
    );
    assert!(a.stdout.contains("node2: no changes"), "{a:?}");
    let a = f.gitvps(&["apply"]);
    assert!(
        a.code == 0 && a.stdout.contains("+ xen10: console access"),
        "{a:?}"
    );
    moved(&f, &data, &record);
}

/// A VPS with snapshots is not moved (a move copies the disk alone): `gitvps vps move`
/// refuses and writes nothing, `gitvps validate` names the file and line of its `node`, the
/// plan shows the move refused with what to do, and apply leaves it where it is.
#[test]
fn a_vps_with_snapshots_is_not_moved() {
    let (f, data, _) = fleet();
    let file = f.repo.join("inventory/vps/xen10.toml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str("\n[[snapshot]]\nname = \"before\"\ncreated = 2026-12-06T23:00:00Z\n");
    std::fs::write(&file, &text).unwrap();
    support::commit_all(&f.repo);
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    let why = "node: xen10 has snapshots on node1 (before): a move to node2 does not carry them; keep node = \"node1\", delete its snapshots (its [[snapshot]] tables) and apply, then move it";
    let m = f.gitvps(&["vps", "move", "xen10", "--to", "node2"]);
    assert_eq!(m.code, 1, "{m:?}");
    assert!(
        m.stderr.contains("inventory/vps/xen10.toml:3:") && m.stderr.contains(why),
        "{m:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "nothing written"
    );
    // The node changed by hand.
    to_node2(&f);
    let v = f.gitvps(&["validate"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains("inventory/vps/xen10.toml:3:") && v.stderr.contains(why),
        "{v:?}"
    );
    let p = f.gitvps(&["plan"]);
    assert!(
        p.stdout.contains("move vps xen10: node1 → node2 (disk 64 MiB): REFUSED: xen10 has snapshots on node1 (before): a move does not carry them; delete its snapshots first (node back to node1, its [[snapshot]] tables removed, gitvps apply), then move it"),
        "{p:?}"
    );
    let a = f.gitvps(&["apply"]);
    assert!(a.stdout.contains("REFUSED: xen10 has snapshots"), "{a:?}");
    assert!(f.lv("node2", "xen10").is_none(), "nothing on node2: {a:?}");
    assert!(std::fs::read(disk(&f, "node1")).unwrap() == data);
    assert!(f.domain("node1", "xen10").is_some(), "still runs on node1");
}
