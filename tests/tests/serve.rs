//! `gitvps serve` over real HTTP: the hooks Router on a local port, a click becomes a commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use std::process::Command;

use support::http;

#[test]
fn a_reboot_click_through_gitvps_serve_becomes_a_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let work = support::fleet_repo(tmp.path(), &["inventory", "bootstraps"]);
    let served = support::Served::start(&work, tmp.path(), None);
    let addr = served.addr.clone();
    let bare = served.bare.clone();

    let (code, body) = http(
        &addr,
        "POST",
        "/api/login",
        None,
        r#"{"customer":"c-0001","password":"demo-jane"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let token = body
        .split("\"token\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let (code, _) = http(
        &addr,
        "POST",
        "/api/login",
        None,
        r#"{"customer":"c-0001","password":"wrong"}"#,
    );
    assert_eq!(code, 401);
    let (code, body) = http(&addr, "POST", "/api/vps/xen02/reboot", Some(&token), "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"generation\":1"), "{body}");
    // Another customer's VPS does not exist for c-0001.
    let (code, _) = http(&addr, "POST", "/api/vps/xen04/reboot", Some(&token), "");
    assert_eq!(code, 404);
    drop(served);

    let log = Command::new("git")
        .arg("-C")
        .arg(&bare)
        .args(["log", "-1", "--format=%an: %s", "main"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log.stdout).trim(),
        "gitvps-bot: c-0001: reboot xen02 (site)"
    );
    let file = Command::new("git")
        .arg("-C")
        .arg(&bare)
        .args(["show", "main:inventory/vps/xen02.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&file.stdout).contains("reboot = 1"));
}
