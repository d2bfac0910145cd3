//! Which VPSes are due, over a real inventory: the model's `base` fleet with the
//! `valid/backup` overlay (a daily plan at 02:00 UTC; xen01 weekly on Saturday instead).

#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;

use backup::due;
use chrono::{DateTime, Utc};
use model::{Inventory, VpsId};

fn copy(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn fleet() -> (tempfile::TempDir, Inventory) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model/tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    copy(&fixtures.join("base"), dir.path());
    copy(&fixtures.join("valid/backup"), dir.path());
    let inv = Inventory::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, inv)
}

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn id(s: &str) -> VpsId {
    s.parse().unwrap()
}

#[test]
fn never_backed_up_vpses_come_first_then_the_longest_waiting() {
    let (_dir, inv) = fleet();
    // Sunday 2026-12-06 05:00 UTC: the daily slot opened at 02:00, xen01's weekly one on
    // Saturday 2026-12-05 at 02:00.
    let now = at("2026-12-06T05:00:00Z");
    let mut last = BTreeMap::new();
    last.insert(id("xen02"), at("2026-12-05T02:10:00Z"));
    last.insert(id("xen01"), at("2026-12-05T02:30:00Z"));
    let d = due(&inv, &last, now);
    let ids: Vec<&str> = d.iter().map(|d| d.vps.as_str()).collect();
    assert_eq!(
        ids,
        ["xen03", "xen02"],
        "xen01 had its weekly backup: {d:?}"
    );
    assert_eq!(d[0].slot, at("2026-12-06T02:00:00Z"));
    assert_eq!(d[0].last, None);
    // Once taken, nothing is due until the next slot.
    last.insert(id("xen02"), at("2026-12-06T05:01:00Z"));
    last.insert(id("xen03"), at("2026-12-06T05:02:00Z"));
    assert!(due(&inv, &last, at("2026-12-07T01:59:59Z")).is_empty());
    let next: Vec<String> = due(&inv, &last, at("2026-12-07T02:00:00Z"))
        .into_iter()
        .map(|d| d.vps.to_string())
        .collect();
    assert_eq!(next, ["xen02", "xen03"]);
}
