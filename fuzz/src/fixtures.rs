//! The fixtures of the fuzz targets: a copy of the project's example fleet in a folder, as
//! plain files or as a bare git repo on `main`.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The project's top folder (the parent of the crate that includes this file).
pub fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Copies the example fleet (catalog, pools, settings, `inventory/`) into `dir`, each file
/// of `gitvps.toml` passed through `settings` first.
pub fn fleet(dir: &Path, settings: impl Fn(String) -> String) {
    for sub in ["inventory/customers", "inventory/nodes", "inventory/vps"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for e in std::fs::read_dir(top().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                std::fs::copy(&p, dir.join(sub).join(p.file_name().unwrap())).unwrap();
            }
        }
    }
    for f in ["products.toml", "pools.toml"] {
        std::fs::copy(top().join(f), dir.join(f)).unwrap();
    }
    let text = std::fs::read_to_string(top().join("gitvps.toml")).unwrap();
    std::fs::write(dir.join("gitvps.toml"), settings(text)).unwrap();
}

/// `git` in `dir`, as a bot with no global configuration of the machine.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=fuzz", "-c", "user.email=fuzz@example.net"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
}

/// `dir/inventory.git`: a bare repo holding the fleet of [`fleet`] on `main`.
pub fn bare_fleet(dir: &Path, settings: impl Fn(String) -> String) -> PathBuf {
    let work = dir.join("seed");
    fleet(&work, settings);
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "Seed the example fleet"]);
    git(dir, &["clone", "-q", "--bare", "seed", "inventory.git"]);
    dir.join("inventory.git")
}
