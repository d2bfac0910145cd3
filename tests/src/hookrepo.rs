//! The hooks' git tests' common ground: a bare repo of the example fleet, and one customer's
//! requests to a server in front of it.

use std::path::{Path, PathBuf};

use crate::{git, http};

/// `DIR/srv/fleet.git`: a bare repo of the example fleet, with the per-customer quotas raised
/// so that a storm is not throttled (the storm is about git, not the limiter).
pub fn seed(dir: &Path) -> PathBuf {
    let work = crate::fleet_repo(dir, &["inventory", "bootstraps"]);
    let settings = work.join("gitvps.toml");
    let text = std::fs::read_to_string(&settings).unwrap();
    let raised = text
        .replace("per_minute = 6 ", "per_minute = 100000 ")
        .replace("per_day = 100 ", "per_day = 100000 ");
    assert_ne!(raised, text, "gitvps.toml's [hooks] quotas moved");
    std::fs::write(&settings, raised).unwrap();
    crate::commit_everything(&work, "raise the quotas");
    let srv = dir.join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    let bare = srv.join("fleet.git");
    git(
        dir,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    bare
}

pub fn head(bare: &Path) -> String {
    git(bare, &["rev-parse", "main"]).trim().to_owned()
}

pub fn login(addr: &str) -> String {
    let (code, body) = http(
        addr,
        "POST",
        "/api/login",
        None,
        r#"{"customer":"c-0001","password":"demo-jane"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

/// `POST /api/vps/xen02/<action>` as the holder of `token`.
pub fn act(addr: &str, token: &str, action: &str) -> (u16, String) {
    http(
        addr,
        "POST",
        &format!("/api/vps/xen02/{action}"),
        Some(token),
        "",
    )
}

/// `reboot = N` of xen02 on `main`.
pub fn counter(bare: &Path, action: &str) -> u64 {
    let text = git(bare, &["show", "main:inventory/vps/xen02.toml"]);
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(action)
                .and_then(|r| r.trim().strip_prefix('='))
                .and_then(|v| v.split('#').next())
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// History on `main` has no merge and every commit one parent (but the root).
pub fn assert_linear(bare: &Path) {
    assert_eq!(git(bare, &["rev-list", "--merges", "main"]).trim(), "");
}
