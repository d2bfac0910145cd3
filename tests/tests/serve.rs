//! `gitvps serve` over real HTTP: the hooks Router on a local port, a click becomes a commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use std::io::{Read, Write};
use std::process::Command;

/// One HTTP/1.1 request; returns the status code and the body.
fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

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
