#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `gitvps validate` and `gitvps inventory` run as a process against the example fleet at
//! the repo top and against a broken copy of it; stdout and stderr are snapshot-tested.
//! The `--help` snapshots make every flag change visible in review.

use gitvps_tests as support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::copy_tree;

/// What one run of the binary printed.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn gitvps(args: &[&str]) -> Run {
    let out = Command::new(gitvps_tests::bin())
        .args(args)
        // Help wraps at the terminal width: no terminal, a fixed width.
        .stdin(Stdio::null())
        .env("COLUMNS", "100")
        .env_remove("GITVPS_LOG")
        .output()
        .unwrap();
    Run {
        code: out.status.code().expect("killed by a signal"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `gitvps --repo <repo> args...`.
fn on(repo: &Path, args: &[&str]) -> Run {
    let repo = repo.to_str().unwrap();
    let mut all = vec!["--repo", repo];
    all.extend_from_slice(args);
    gitvps(&all)
}

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A successful run: exit 0, nothing on stderr; returns stdout.
fn ok(r: Run) -> String {
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert_eq!(r.stderr, "");
    r.stdout
}

#[test]
fn validate_example_fleet() {
    let out = ok(on(&top(), &["validate"]));
    assert!(out.starts_with("ok: "), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn validate_example_fleet_json() {
    let out = ok(on(&top(), &["validate", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ok"], true);
    insta::assert_snapshot!(out);
}

#[test]
fn inventory_all_tables() {
    let out = ok(on(&top(), &["inventory", "--as-of", "2026-12-01"]));
    for title in ["Nodes\n", "Pools\n", "Products\n", "Expiring by 2026-12-31"] {
        assert!(out.contains(title), "{title}: {out}");
    }
    insta::assert_snapshot!(out);
}

#[test]
fn inventory_nodes_and_pools_json() {
    let out = ok(on(
        &top(),
        &[
            "inventory",
            "nodes",
            "pools",
            "--json",
            "--as-of",
            "2026-12-01",
        ],
    ));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["nodes", "pools"]);
    insta::assert_snapshot!(out);
}

#[test]
fn inventory_expiring() {
    let out = ok(on(
        &top(),
        &[
            "inventory",
            "expiring",
            "--days",
            "30",
            "--as-of",
            "2026-12-01",
        ],
    ));
    assert!(
        out.starts_with("Expiring by 2026-12-31 (30 days from 2026-12-01)\n"),
        "{out}"
    );
    assert!(!out.contains("Nodes"), "{out}");
    insta::assert_snapshot!(out);
}

const VPS: &str = r#"customer = "c-0001"
product = "PRODUCT"
node = "node0109"
ips = ["66.255.255.50"]
hostname = "HOST.example.net"
os = "debian-12"
power = "running"
state = "active"
created = 2026-01-01
expires = 2027-01-01
"#;

/// The example fleet plus two VPSes sharing one IP, the second on an unknown product.
fn broken_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["products.toml", "pools.toml", "gitvps.toml"] {
        fs::copy(top().join(f), tmp.path().join(f)).unwrap();
    }
    copy_tree(&top().join("inventory"), &tmp.path().join("inventory"));
    let vps = tmp.path().join("inventory/vps");
    fs::write(
        vps.join("xen90.toml"),
        VPS.replace("PRODUCT", "advanced").replace("HOST", "xen90"),
    )
    .unwrap();
    fs::write(
        vps.join("xen91.toml"),
        VPS.replace("PRODUCT", "advansed").replace("HOST", "xen91"),
    )
    .unwrap();
    tmp
}

const DUPLICATE: &str = "inventory/vps/xen91.toml:4:8: ips[0]: 66.255.255.50 is already used by xen90 (inventory/vps/xen90.toml:4)";
const UNKNOWN: &str =
    "inventory/vps/xen91.toml:2:11: product: unknown product `advansed`, did you mean `advanced`?";

#[test]
fn validate_broken_copy() {
    let repo = broken_copy();
    let r = on(repo.path(), &["validate"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert_eq!(
        r.stderr,
        format!(
            "{UNKNOWN}\n{DUPLICATE}\nerror: the inventory has 2 problem(s); nothing was changed\n"
        )
    );
    insta::assert_snapshot!(r.stderr);
}

#[test]
fn validate_broken_copy_json() {
    let repo = broken_copy();
    let r = on(repo.path(), &["validate", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr, "");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let errors = v["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{}", r.stdout);
    assert_eq!(errors[0]["file"], "inventory/vps/xen91.toml");
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[0]["column"], 11);
    assert_eq!(errors[0]["field"], "product");
    assert_eq!(errors[1]["field"], "ips[0]");
    assert!(!r.stdout.contains(repo.path().to_str().unwrap()));
    insta::assert_snapshot!(r.stdout);
}

/// `inventory` refuses a broken repo with the same report as `validate`.
#[test]
fn inventory_on_broken_copy_reports_and_fails() {
    let repo = broken_copy();
    let r = on(repo.path(), &["inventory", "--as-of", "2026-12-01"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, on(repo.path(), &["validate"]).stderr);
}

#[test]
fn help() {
    let r = gitvps(&["--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Usage: gitvps [OPTIONS] <COMMAND>"));
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn inventory_help() {
    let r = gitvps(&["inventory", "--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("--as-of <DATE>"), "{}", r.stdout);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn node_prepare_help() {
    let r = gitvps(&["node", "prepare", "--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("--fix"), "{}", r.stdout);
    insta::assert_snapshot!(r.stdout);
}

#[test]
fn import_help() {
    let r = gitvps(&["import", "--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("--node <NODE>"), "{}", r.stdout);
    insta::assert_snapshot!(r.stdout);
}

/// `os` and `appliance` are checked against the repo's bootstraps/ catalog.
#[test]
fn validate_checks_os_and_appliance_against_the_bootstraps() {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["products.toml", "pools.toml", "gitvps.toml"] {
        fs::copy(top().join(f), tmp.path().join(f)).unwrap();
    }
    copy_tree(&top().join("inventory"), &tmp.path().join("inventory"));
    copy_tree(&top().join("bootstraps"), &tmp.path().join("bootstraps"));
    assert_eq!(on(tmp.path(), &["validate"]).code, 0);
    let vps = tmp.path().join("inventory/vps");
    let xen03 = fs::read_to_string(vps.join("xen03.toml")).unwrap();
    fs::write(
        vps.join("xen03.toml"),
        xen03.replace("os = \"debian-12\"", "os = \"debian-21\""),
    )
    .unwrap();
    let r = on(tmp.path(), &["validate"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "inventory/vps/xen03.toml:6:6: os: unknown OS `debian-21`, did you mean `debian-12`?"
        ),
        "{r:?}"
    );
    assert!(r.stdout.is_empty());
}
