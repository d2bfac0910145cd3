//! Faults on the node side: a full volume group, `xl create` failing, a disk held open, the
//! node rebooted in the middle of an apply, a skewed node clock, the state folder lost or
//! corrupted. Each stops what it must with the node, the step and the cause, exits non-zero,
//! loses nothing, and a re-run once the fault is gone converges.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};

use gitvps_tests as support;

use support::bin;
use support::fleet::Fleet;

fn two_vps() -> Fleet {
    let f = Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen11", "node1", "192.0.2.11", "");
    f
}

/// Sets node1's volume group to `size` (the stand-in computes free space from it).
fn resize_vg(f: &Fleet, size: &str) {
    let r = Command::new(bin())
        .args(["node-sim", "install", "--root"])
        .arg(f.root("node1"))
        .args(["--vg", &format!("vg0={size}")])
        .output()
        .unwrap();
    assert!(r.status.success(), "{r:?}");
}

#[test]
fn a_full_volume_group_fails_the_create_naming_lvm_and_a_rerun_converges() {
    let f = two_vps();
    // Room for one 30 GiB disk, not two.
    resize_vg(&f, "40GiB");
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(a.stdout.contains("1 FAILED"), "{a:?}");
    assert!(
        a.stdout.contains("FAILED xen11: create disk (30 GiB)")
            || a.stdout.contains("FAILED xen10: create disk (30 GiB)"),
        "the step is named: {a:?}"
    );
    assert!(
        a.stdout.contains("insufficient free space"),
        "LVM's cause is shown: {a:?}"
    );
    // The other VPS went on and runs.
    assert_eq!(
        [f.domain("node1", "xen10"), f.domain("node1", "xen11")]
            .iter()
            .filter(|d| d.is_some())
            .count(),
        1
    );
    // The VG grown (a disk added), the re-run converges.
    resize_vg(&f, "2TiB");
    f.converge();
    assert!(f.domain("node1", "xen10").is_some() && f.domain("node1", "xen11").is_some());
}

#[test]
fn xl_create_failing_fails_the_start_with_xls_message_and_keeps_the_disk() {
    let f = two_vps();
    f.wrap(
        "node1",
        "xl",
        "if [ \"$1\" = create ]; then echo 'libxl: error: libxl_create.c:1234: Domain 7:cannot allocate memory' >&2; exit 3; fi",
    );
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(a.stdout.contains("FAILED xen10: start domain"), "{a:?}");
    assert!(a.stdout.contains("cannot allocate memory"), "{a:?}");
    assert!(f.lv("node1", "xen10").is_some(), "the disk stays");
    std::fs::remove_file(f.root("node1").join("usr/local/sbin/xl")).unwrap();
    f.converge();
    assert!(f.domain("node1", "xen10").is_some());
}

#[test]
fn a_disk_held_open_by_another_process_is_not_touched() {
    let f = two_vps();
    f.converge();
    let disk = f.root("node1").join("dev/vg0/xen10");
    let before = std::fs::metadata(&disk).unwrap().len();
    // Someone's process holds the disk open (a stale QEMU, a backup by hand).
    let mut holder = Command::new("sh")
        .arg("-c")
        .arg("exec 3<\"$1\"; exec sleep 60")
        .arg("holder")
        .arg(&disk)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    f.edit("products.toml", "disk = \"30720 MiB\"", "disk = \"40 GiB\"");
    let a = f.gitvps(&["apply"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(a.code, 1, "{a:?}");
    assert!(a.stdout.contains("FAILED xen10: grow disk"), "{a:?}");
    assert!(a.stdout.contains("is in use by process"), "{a:?}");
    assert_eq!(std::fs::metadata(&disk).unwrap().len(), before, "not grown");
    f.converge();
    assert_eq!(f.lv("node1", "xen10"), Some(40 << 30));
}

#[test]
fn a_node_rebooted_in_the_middle_of_an_apply_converges_on_the_rerun() {
    let f = two_vps();
    f.converge();
    f.vps(
        "xen10",
        "node1",
        "192.0.2.10",
        "[actions]\nreboot = 1\nfsck = 0\n",
    );
    f.edit("products.toml", "disk = \"30720 MiB\"", "disk = \"40 GiB\"");
    // The node reboots while a disk is being grown: every domain is gone, once.
    let domains = f.root("node1").join("var/lib/gitvps-sim/xl/domains");
    let rebooted = f.root("node1").join("rebooted");
    f.wrap(
        "node1",
        "lvextend",
        &format!(
            "[ -e '{r}' ] || {{ touch '{r}'; rm -f '{d}'/*.json; }}",
            r = rebooted.display(),
            d = domains.display()
        ),
    );
    let a = f.gitvps(&["apply"]);
    std::fs::remove_file(f.root("node1").join("usr/local/sbin/lvextend")).unwrap();
    assert!(rebooted.exists());
    // Every step copes with a domain that vanished under it (a shutdown finds it gone, a
    // start starts it)...
    assert_eq!(a.code, 0, "{a:?}");
    // ... and whatever the reboot took down after its start is started by the next plan;
    // nothing else is lost.
    let p = f.gitvps(&["plan"]);
    assert!(
        p.code == 0 || p.stdout.contains(": start domain"),
        "only starts are left: {p:?}"
    );
    f.converge();
    assert!(f.domain("node1", "xen10").is_some() && f.domain("node1", "xen11").is_some());
    assert_eq!(f.lv("node1", "xen10"), Some(40 << 30));
    assert_eq!(f.record("node1", "xen10")["reboot"], 1);
}

#[test]
fn a_skewed_node_clock_cannot_bring_a_disk_removal_forward() {
    let f = two_vps();
    f.converge();
    // The node's clock is ten years ahead; gitvps plans on the control machine's clock.
    f.wrap("node1", "date", "echo 2082758400; exit 0");
    f.edit(
        "inventory/vps/xen10.toml",
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\nstate = \"destroyed\"\n",
    );
    f.converge();
    let p = f.gitvps(&["plan"]);
    assert!(p.stdout.contains("xen10: disk kept until"), "{p:?}");
    assert!(f.lv("node1", "xen10").is_some(), "kept during retention");
    let rec = f.record("node1", "xen10");
    let destroyed_at = rec["destroyed_at"].as_i64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (destroyed_at - now).abs() < 3600,
        "recorded on the control machine's clock: {destroyed_at} vs {now}"
    );
}

#[test]
fn a_lost_state_folder_acts_on_nothing_and_a_corrupt_record_stops_the_node() {
    let f = two_vps();
    f.converge();
    let state = f.root("node1").join("var/lib/gitvps/state");
    // Lost: the disks are adopted as they are, the counters recorded, no action runs.
    std::fs::remove_dir_all(&state).unwrap();
    f.vps(
        "xen10",
        "node1",
        "192.0.2.10",
        "[actions]\nreboot = 3\nfsck = 0\n",
    );
    let reboots = f.domain("node1", "xen10").unwrap()["reboots"].clone();
    let a = f.converge();
    assert!(!a.stdout.contains("reboot (generation"), "{a:?}");
    assert_eq!(f.domain("node1", "xen10").unwrap()["reboots"], reboots);
    assert_eq!(f.record("node1", "xen10")["reboot"], 3);
    // Corrupt: the node is not acted on at all, and the error names it.
    std::fs::write(state.join("xen11.json"), "{not json").unwrap();
    f.vps(
        "xen10",
        "node1",
        "192.0.2.10",
        "[actions]\nreboot = 4\nfsck = 0\n",
    );
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout.contains(
            "node1: UNREACHABLE, nothing done: node1: the record /var/lib/gitvps/state/xen11.json is unreadable (not one line of a JSON object)"
        ),
        "{a:?}"
    );
    assert_eq!(f.record("node1", "xen10")["reboot"], 3, "nothing acted");
}
