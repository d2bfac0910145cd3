#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `gitvps vps new` end to end: the built binary on a copy of the example fleet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TAMPA: &str = "Tampa, Florida (USA)";

/// The arguments of the order the example fleet is tested with.
fn order() -> Vec<&'static str> {
    vec![
        "vps",
        "new",
        "--customer",
        "c-0002",
        "--product",
        "advanced",
        "--location",
        TAMPA,
        "--today",
        "2026-12-01",
    ]
}

fn with<'a>(mut args: Vec<&'a str>, more: &[&'a str]) -> Vec<&'a str> {
    args.extend_from_slice(more);
    args
}

/// Replaces the value of a flag in `order()`.
fn set<'a>(mut args: Vec<&'a str>, flag: &str, value: &'a str) -> Vec<&'a str> {
    let i = args.iter().position(|a| *a == flag).unwrap();
    args[i + 1] = value;
    args
}

/// A copy of the repository top (the example fleet), without `target/` and `.git`.
fn example_repo() -> tempfile::TempDir {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_tree(top, dir.path(), true);
    assert!(dir.path().join("inventory/vps/xen04.toml").is_file());
    assert!(!dir.path().join("inventory/vps/xen05.toml").exists());
    dir
}

fn copy_tree(from: &Path, to: &Path, top: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if top && (name == "target" || name == ".git") {
            continue;
        }
        let Ok(ty) = entry.file_type() else { continue };
        let (src, dst) = (entry.path(), to.join(&name));
        if ty.is_dir() {
            copy_tree(&src, &dst, false);
        } else if ty.is_file() {
            // Other people may be editing the tree: a file that vanished is skipped.
            match std::fs::copy(&src, &dst) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => panic!("copy {}: {e}", src.display()),
            }
        }
    }
}

/// Every file under `root` with its content.
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_owned();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn gitvps(repo: &Path, args: &[&str]) -> Output {
    Command::new(gitvps_tests::bin())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env_remove("GITVPS_LOG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

const SUMMARY: &str =
    "inventory/vps/xen05.toml: xen05 on node0109 (tampa-1), 66.255.255.11, 2001:db8:66:1::/64";

#[test]
fn new_writes_the_vps_file_and_the_repo_stays_valid() {
    let repo = example_repo();
    let before = tree(repo.path());
    let o = gitvps(repo.path(), &order());
    assert_ok(&o);
    assert_eq!(stdout(&o), format!("wrote {SUMMARY}\n"));
    assert_eq!(stderr(&o), "");

    // Exactly one new file, nothing else touched.
    let mut after = tree(repo.path());
    let text = String::from_utf8(
        after
            .remove(Path::new("inventory/vps/xen05.toml"))
            .expect("inventory/vps/xen05.toml was not written"),
    )
    .unwrap();
    assert_eq!(after, before, "only the new file may change");
    assert!(text.starts_with("# Placed by `gitvps vps new` on 2026-12-01.\n"));
    insta::assert_snapshot!("xen05_toml", text);

    let v = gitvps(repo.path(), &["validate"]);
    assert_ok(&v);
    assert!(stdout(&v).contains("5 VPSes"), "{}", stdout(&v));

    // The next order sees the new file: next id, next address, next /64.
    let o = gitvps(repo.path(), &order());
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "wrote inventory/vps/xen06.toml: xen06 on node0109 (tampa-1), 66.255.255.12, 2001:db8:66:2::/64\n"
    );
    assert_ok(&gitvps(repo.path(), &["validate"]));
}

#[test]
fn dry_run_shows_the_file_and_writes_nothing() {
    let repo = example_repo();
    let before = tree(repo.path());
    let o = gitvps(repo.path(), &with(order(), &["--dry-run"]));
    assert_ok(&o);
    assert_eq!(tree(repo.path()), before, "--dry-run wrote something");

    // What it shows is what a real run writes.
    let real = example_repo();
    assert_ok(&gitvps(real.path(), &order()));
    let text = std::fs::read_to_string(real.path().join("inventory/vps/xen05.toml")).unwrap();
    assert_eq!(stdout(&o), format!("would write {SUMMARY}\n{text}"));
}

#[test]
fn json_reports_the_placement() {
    let repo = example_repo();
    let before = tree(repo.path());
    let o = gitvps(repo.path(), &with(order(), &["--json", "--dry-run"]));
    assert_ok(&o);
    assert_eq!(
        tree(repo.path()),
        before,
        "--dry-run --json wrote something"
    );
    let mut want = serde_json::json!({
        "id": "xen05",
        "file": "inventory/vps/xen05.toml",
        "node": "node0109",
        "pool": "tampa-1",
        "ipv4": "66.255.255.11",
        "ipv6": "2001:db8:66:1::/64",
        "hostname": "xen05.vps.example.net",
        "os": "debian-12",
        "expires": "2027-01-01",
        "written": false,
    });
    let got: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(got, want);

    let o = gitvps(repo.path(), &with(order(), &["--json"]));
    assert_ok(&o);
    want["written"] = true.into();
    let got: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(got, want);
    assert!(repo.path().join("inventory/vps/xen05.toml").is_file());
}

#[test]
fn options_reach_the_file() {
    let repo = example_repo();
    let args = with(
        set(order(), "--location", "seattle-1"),
        &[
            "--os",
            "debian-13",
            "--hostname",
            "Shop.Example.NET",
            "--id",
            "shop",
            "--appliance",
            "openvpn",
        ],
    );
    let o = gitvps(repo.path(), &args);
    assert_ok(&o);
    let text = std::fs::read_to_string(repo.path().join("inventory/vps/shop.toml")).unwrap();
    for line in [
        "node = \"node0201\"\n",
        // Seattle: .2-.3 reserved, xen04 has .10; no IPv6 prefix.
        "ips = [\"117.255.255.4\"]\n",
        "hostname = \"shop.example.net\"\n",
        "os = \"debian-13\"\n",
        "appliance = \"openvpn\"\n",
        "expires = 2027-01-01\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert_ok(&gitvps(repo.path(), &["validate"]));
}

/// Runs a bad order: it must fail, say why on stderr and leave every file as it was.
fn refused(repo: &Path, args: &[&str], why: &str) -> Output {
    let before = tree(repo);
    let o = gitvps(repo, args);
    assert!(!o.status.success(), "{args:?} succeeded:\n{}", stdout(&o));
    assert!(
        stderr(&o).contains(why),
        "{args:?}: stderr does not say {why:?}:\n{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "", "{args:?}: output on stdout");
    assert_eq!(tree(repo), before, "{args:?} changed files");
    o
}

#[test]
fn an_unknown_customer_is_refused() {
    let repo = example_repo();
    let o = refused(
        repo.path(),
        &set(order(), "--customer", "c-9999"),
        "error: cannot place the VPS: unknown customer `c-9999`",
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn a_renewal_product_is_refused() {
    let repo = example_repo();
    refused(
        repo.path(),
        &set(order(), "--product", "advanced-3m"),
        "`advanced-3m` is a renewal product; order the plan it renews (`advanced`)",
    );
}

#[test]
fn an_unknown_location_is_refused_with_the_known_ones() {
    let repo = example_repo();
    refused(
        repo.path(),
        &set(order(), "--location", "Atlantis"),
        "unknown location `Atlantis` (known: Seattle, WA (USA), Shanghai, China, Tampa, Florida (USA))",
    );
}

#[test]
fn a_taken_id_is_refused() {
    let repo = example_repo();
    refused(
        repo.path(),
        &with(order(), &["--id", "xen02"]),
        "VPS id `xen02` is already in use",
    );
}

#[test]
fn an_invalid_hostname_is_refused() {
    let repo = example_repo();
    let o = refused(
        repo.path(),
        &with(order(), &["--hostname", "x;rm -rf /"]),
        "`x;rm -rf /` is not a valid host name",
    );
    assert!(stderr(&o).contains("--hostname"), "{}", stderr(&o));
}

#[test]
fn an_invalid_id_is_refused() {
    let repo = example_repo();
    let o = refused(
        repo.path(),
        &with(order(), &["--id", "Xen05"]),
        "`Xen05` is not a valid vps id",
    );
    assert!(stderr(&o).contains("--id"), "{}", stderr(&o));
}

#[test]
fn a_full_location_is_refused_with_the_reasons() {
    let repo = example_repo();
    let alpha = repo.path().join("inventory/nodes/alpha.toml");
    let text = std::fs::read_to_string(&alpha).unwrap();
    assert!(text.contains("maintenance = false"));
    std::fs::write(
        &alpha,
        text.replace("maintenance = false", "maintenance = true"),
    )
    .unwrap();
    refused(
        repo.path(),
        &set(order(), "--location", "shanghai, china"),
        "no node in `shanghai, china` can take a advanced VPS: alpha is in maintenance",
    );
}

/// Breaks the example fleet: xen04 names a node that does not exist.
fn broken_repo() -> tempfile::TempDir {
    let repo = example_repo();
    let xen04 = repo.path().join("inventory/vps/xen04.toml");
    let text = std::fs::read_to_string(&xen04).unwrap();
    assert!(text.contains("node = \"node0201\""));
    std::fs::write(
        &xen04,
        text.replace("node = \"node0201\"", "node = \"node9999\""),
    )
    .unwrap();
    repo
}

#[test]
fn an_invalid_repo_is_refused_with_its_errors() {
    let repo = broken_repo();
    let o = refused(repo.path(), &order(), "unknown node `node9999`");
    let err = stderr(&o);
    assert!(
        err.contains("inventory/vps/xen04.toml:")
            && err.contains(": node: unknown node `node9999`"),
        "{err}"
    );
    assert!(
        err.contains("the inventory has 1 problem(s); nothing was changed"),
        "{err}"
    );
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn an_invalid_repo_is_reported_as_json() {
    let repo = broken_repo();
    let before = tree(repo.path());
    let o = gitvps(repo.path(), &with(order(), &["--json"]));
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(tree(repo.path()), before);
    let got: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(got["ok"], false);
    let errors = got["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{got}");
    assert_eq!(errors[0]["file"], "inventory/vps/xen04.toml");
    assert_eq!(errors[0]["field"], "node");
}

/// `gitvps vps move` to a node in another location: `node` and the addresses change in the
/// one file (comments kept), the new addresses come from the target's pool, and the repo stays
/// valid; `node` changed by hand without the addresses is refused by `gitvps validate`.
#[test]
fn move_to_another_location_writes_node_and_new_addresses() {
    let repo = example_repo();
    let file = repo.path().join("inventory/vps/xen02.toml");
    let o = gitvps(repo.path(), &["vps", "move", "xen02", "--to", "node0201"]);
    assert_ok(&o);
    assert!(
        stdout(&o).starts_with("wrote inventory/vps/xen02.toml: xen02 node0109 → node0201, new addresses from pool seattle-1 (66.255.255.34, 2001:db8:66:22::/64 → "),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("node = \"node0201\"\n"), "{text}");
    assert!(!text.contains("66.255.255.34"), "{text}");
    assert!(
        text.contains("power = \"running\"                  # running | stopped"),
        "comments are kept: {text}"
    );
    assert_ok(&gitvps(repo.path(), &["validate"]));
    // Moving it back within its (now) own location keeps the addresses.
    let o = gitvps(repo.path(), &["vps", "move", "xen02", "--to", "node0201"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("xen02 is on node0201 already"),
        "{}",
        stderr(&o)
    );

    // By hand, without new addresses: validate names the file, the line and the address.
    let repo = example_repo();
    let file = repo.path().join("inventory/vps/xen02.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("node = \"node0109\"", "node = \"node0201\""),
    )
    .unwrap();
    let o = gitvps(repo.path(), &["validate"]);
    assert!(!o.status.success());
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        out.contains("inventory/vps/xen02.toml:5:")
            && out.contains("66.255.255.34 is outside the pools of node0201"),
        "{out}"
    );
}
