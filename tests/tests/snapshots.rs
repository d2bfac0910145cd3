//! Customer snapshots end to end (issue 19 item 3): the Xen path against a stand-in LVM node
//! behind a real sshd, the `gitvps` binary as an operator runs it: take, revert, delete.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use std::path::Path;

use support::fleet::Fleet;

fn write_at(path: &Path, at: u64, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(data).unwrap();
}

fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    let mut b = vec![0; len];
    file.read_exact(&mut b).unwrap();
    b
}

/// The node's logical volumes with their origins, as `lvs` shows them.
fn lvs(f: &Fleet) -> String {
    let r = f.on_node(
        "node1",
        "lvs",
        &[
            "--noheadings",
            "-o",
            "lv_name,origin,lv_size",
            "--units",
            "b",
            "vg0",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    r.stdout
        .lines()
        .map(|l| {
            (l.split_whitespace())
                .map(|w| w.trim_end_matches('B'))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_snapshot_is_taken_reverted_to_and_deleted_through_apply() {
    let f = Fleet::new(&["node1"]);
    let mut products = std::fs::read_to_string(f.repo.join("products.toml")).unwrap();
    products.push_str(
        "\n[[product]]\nid = \"tiny\"\nname = \"Tiny VPS\"\nperiod_months = 1\nprice = \"1.00\"\nsetup_fee = \"0.00\"\ncommission = \"0.00\"\ndisk = \"64 MiB\"\nram = \"256 MiB\"\nvcpus = 1\ntraffic = \"1024 MiB\"\nprivate = true\nsnapshot_limit = 2\n",
    );
    std::fs::write(f.repo.join("products.toml"), products).unwrap();
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.edit(
        "inventory/vps/xen10.toml",
        "product = \"advanced\"",
        "product = \"tiny\"",
    );
    f.converge();
    let disk = f.root("node1").join("dev/vg0/xen10");
    write_at(&disk, 1 << 20, b"the guest's data");

    // Take: the guest keeps running; 20 % of 64 MiB is 12.8 MiB, 4 extents.
    let snap = "\n[[snapshot]]\nname = \"before\"\ncreated = 2026-12-06T23:00:00Z\n";
    f.edit(
        "inventory/vps/xen10.toml",
        "expires = 2027-01-01\n",
        &format!("expires = 2027-01-01\n{snap}"),
    );
    let p = f.gitvps(&["plan"]);
    assert!(
        p.stdout
            .contains("+ xen10: take snapshot before (copy-on-write area 16 MiB)"),
        "{p:?}"
    );
    assert!(!p.stdout.contains("shut down"), "{p:?}");
    f.converge();
    assert_eq!(
        lvs(&f),
        format!("xen10 {}\nxen10.snap.before xen10 {}", 64 << 20, 16 << 20),
    );
    let domid = f.domain("node1", "xen10").unwrap()["domid"].clone();

    // The guest changes its disk; the customer reverts.
    write_at(&disk, 1 << 20, b"changed later!!!");
    f.edit(
        "inventory/vps/xen10.toml",
        snap,
        &format!("{snap}\n[revert]\nsnapshot = \"before\"\ngeneration = 1\n"),
    );
    let p = f.gitvps(&["plan"]);
    for line in [
        "- xen10: shut down domain (to revert to a snapshot)",
        "! xen10: revert the disk to snapshot before (generation 1): LOSES THE DISK'S CHANGES SINCE",
        "+ xen10: start domain",
    ] {
        assert!(p.stdout.contains(line), "{line}\n{p:?}");
    }
    f.converge();
    assert_eq!(read_at(&disk, 1 << 20, 16), b"the guest's data");
    assert_eq!(f.record("node1", "xen10")["revert"], 1);
    assert_ne!(
        f.domain("node1", "xen10").unwrap()["domid"],
        domid,
        "restarted"
    );
    // The snapshot is kept (taken again after the merge), the origin keeps its size.
    assert_eq!(
        lvs(&f),
        format!("xen10 {}\nxen10.snap.before xen10 {}", 64 << 20, 16 << 20),
    );
    // The same generation again does nothing.
    write_at(&disk, 1 << 20, b"changed again!!!");
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "{p:?}");

    // Delete: removed from the file (with its revert), the guest left running.
    let text = std::fs::read_to_string(f.repo.join("inventory/vps/xen10.toml")).unwrap();
    let cut = text.find("\n[[snapshot]]").unwrap();
    std::fs::write(f.repo.join("inventory/vps/xen10.toml"), &text[..cut]).unwrap();
    let p = f.gitvps(&["plan"]);
    assert!(
        p.stdout.contains("- xen10: delete snapshot before"),
        "{p:?}"
    );
    assert!(!p.stdout.contains("shut down"), "{p:?}");
    let domid = f.domain("node1", "xen10").unwrap()["domid"].clone();
    f.converge();
    assert_eq!(lvs(&f), format!("xen10 {}", 64 << 20));
    assert_eq!(f.domain("node1", "xen10").unwrap()["domid"], domid);
    assert_eq!(read_at(&disk, 1 << 20, 16), b"changed again!!!");
}

/// More snapshots than the plan allows: refused by validation at the field's line, nothing
/// taken.
#[test]
fn more_snapshots_than_the_limit_are_refused() {
    let f = Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.converge();
    let snap = "\n[[snapshot]]\nname = \"one\"\ncreated = 2026-12-06T23:00:00Z\n";
    f.edit(
        "inventory/vps/xen10.toml",
        "expires = 2027-01-01\n",
        &format!("expires = 2027-01-01\n{snap}"),
    );
    let v = f.gitvps(&["validate"]);
    assert_ne!(v.code, 0, "{v:?}");
    assert!(
        v.stderr.contains("inventory/vps/xen10.toml:11:8: snapshot[0].name: 1 snapshots declared, the snapshot_limit of plan `advanced` allows 0: delete one first"),
        "{v:?}"
    );
    let a = f.gitvps(&["apply"]);
    assert_ne!(a.code, 0, "{a:?}");
    assert_eq!(lvs(&f), format!("xen10 {}", 30u64 << 30));
}
