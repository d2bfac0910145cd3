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
const TINY: &str = "\n[[product]]\nid = \"tiny\"\nname = \"Tiny VPS\"\nperiod_months = 1\nprice = \"1.00\"\nsetup_fee = \"0.00\"\ncommission = \"0.00\"\ndisk = \"64 MiB\"\nram = \"256 MiB\"\nvcpus = 1\ntraffic = \"1 GiB\"\nprivate = true\n";

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

#[test]
fn a_checksum_mismatch_discards_the_copy_and_restarts_the_source() {
    let (f, data, record) = fleet();
    to_node2(&f);
    // node2's sha256sum lies about what it received (only the move's, reading its input).
    let lie = shim(
        &f,
        "node2",
        "sha256sum",
        "if [ $# -eq 0 ]; then cat >/dev/null; echo \"0000000000000000000000000000000000000000000000000000000000000000  -\"; exit 0; fi\nexec /usr/bin/sha256sum \"$@\"",
    );
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
    std::fs::remove_file(lie).unwrap();
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    moved(&f, &data, &record);
}

/// `gitvps apply` killed (SIGKILL) while the disk streams: the source's disk and config are
/// intact and it boots; the next apply overwrites the partial copy and finishes the move.
#[test]
fn an_apply_killed_mid_copy_leaves_the_source_intact_and_a_rerun_finishes() {
    let (f, data, record) = fleet();
    to_node2(&f);
    let flag = f.dir.path().join("receiving");
    // node2's dd announces it started receiving, then holds on long enough to be killed.
    let slow = shim(
        &f,
        "node2",
        "dd",
        &format!(
            "case \"$*\" in *of=*) touch '{}'; sleep 2;; esac\nexec /bin/dd \"$@\"",
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
