#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The Debian 12 bootstrap for real: debootstrap (minbase) from this machine's mirror into a folder,
//! then customisation, network and an appliance, twice: cold, then from the cache. Needs root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use gitvps_tests as support;

use model::Inventory;
use model::bootstraps::Catalog;
use support::mirror;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs debootstrap with apt when it is missing (the machine and CI run as root).
fn ensure_debootstrap() {
    if Path::new("/usr/sbin/debootstrap").exists() {
        return;
    }
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "debootstrap"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .unwrap()
            .success()
    };
    if !install() {
        assert!(
            Command::new("apt-get")
                .args(["update", "-qq"])
                .status()
                .unwrap()
                .success()
        );
        assert!(install(), "apt-get install debootstrap failed");
    }
}

/// One install of xen02 (dual-stack) as debian-12 with the OpenVPN appliance into `target`.
fn install(target: &Path, cache: &Path, mirror: &str) -> (Duration, String) {
    let inv = Inventory::load(&repo()).unwrap();
    let cat = Catalog::load(&repo()).unwrap();
    let mut v = inv.vps["xen02"].clone();
    v.appliance = Some("openvpn".parse().unwrap());
    let mut env = cat.env_for(&inv, &v).unwrap();
    env.run.bootstraps = Some(repo().join("bootstraps").display().to_string());
    env.run.target = Some(target.display().to_string());
    env.run.mirror = Some(mirror.to_owned());
    env.run.cache = Some(cache.display().to_string());
    let start = Instant::now();
    let out = Command::new("sh")
        .arg(repo().join("bootstraps/lib/install"))
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .envs(env.vars())
        // Minbase without the bootable package list keeps the test fast.
        .env("GITVPS_BOOTABLE", "0")
        .output()
        .unwrap();
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "install failed: {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    (took, stdout)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// What the bootstrap must have left in the root.
fn check_root(t: &Path) {
    let read = |rel: &str| fs::read_to_string(t.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    // A real Debian 12 root, from debootstrap.
    assert!(read("etc/os-release").contains("VERSION_CODENAME=bookworm"));
    assert!(t.join("usr/bin/apt-get").is_file());
    assert!(
        !t.join("usr/sbin/policy-rc.d").exists(),
        "policy-rc.d removed"
    );
    // Host name and hosts.
    assert_eq!(read("etc/hostname"), "xen02.example.net\n");
    assert!(read("etc/hosts").contains("66.255.255.34\txen02.example.net xen02\n"));
    assert!(read("etc/fstab").starts_with("LABEL=gitvps-root\t/\text4\t"));
    // The VPS's addresses.
    let net = read("etc/systemd/network/50-gitvps.network");
    for line in [
        "Address=66.255.255.34/25\n",
        "Gateway=66.255.255.1\n",
        "Address=2001:db8:66:22::1/64\n",
        "Gateway=fe80::1\n",
        "DNS=66.255.255.20\n",
    ] {
        assert!(net.contains(line), "{line} not in\n{net}");
    }
    assert!(
        t.join("etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
            .is_symlink()
    );
    assert_eq!(
        read("etc/resolv.conf"),
        "# written by gitvps from the pool's resolvers\nnameserver 66.255.255.20\n"
    );
    // root's keys, and no password (none was offered).
    assert_eq!(
        read("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnZACIYs/1sMOT4kyilhseeocsdXihGHPmj1hWLWg3q jane@laptop\n"
    );
    assert_eq!(mode(&t.join("root/.ssh")), 0o700);
    assert_eq!(mode(&t.join("root/.ssh/authorized_keys")), 0o600);
    assert!(read("etc/shadow").starts_with("root:*:"));
    assert_eq!(read("etc/machine-id"), "");
    // The appliance's first boot.
    assert_eq!(
        read("usr/local/lib/gitvps/firstboot"),
        fs::read_to_string(repo().join("bootstraps/appliances/openvpn/firstboot")).unwrap()
    );
    assert!(
        read("etc/systemd/system/gitvps-firstboot.service")
            .contains("ExecStart=/usr/local/lib/gitvps/firstboot")
    );
    assert!(
        t.join("etc/systemd/system/multi-user.target.wants/gitvps-firstboot.service")
            .is_symlink()
    );
    assert!(read("etc/apt/sources.list").contains(" bookworm main\n"));
}

#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn debian_12_minbase_for_real() {
    support::require_root();
    ensure_debootstrap();
    let mirror = mirror();
    let cache = repo().join("target/gitvps-cache");
    fs::create_dir_all(&cache).unwrap();
    // Entries already there (the KVM tests' bootable roots have other keys than this one).
    let before: Vec<String> = fs::read_dir(cache.join("roots"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();

    let first = tempfile::tempdir().unwrap();
    let (t1, out1) = install(first.path(), &cache, &mirror);
    check_root(first.path());
    // The first install unpacks an entry that was there, or saves one that was not.
    let key = |marker: &str| {
        out1.lines().find_map(|l| {
            l.split_once(marker)
                .map(|(_, k)| format!("{}.tar.gz", k.trim()))
        })
    };
    let had_cache = match (
        key("unpacking the cached root "),
        key("saved the root as cache entry "),
    ) {
        (Some(k), None) => {
            assert!(
                before.contains(&k),
                "unpacked {k}, which was not there:\n{out1}"
            );
            true
        }
        (None, Some(k)) => {
            assert!(
                !before.contains(&k) || out1.contains("is older than"),
                "rebuilt {k}, which was there and fresh:\n{out1}"
            );
            false
        }
        _ => panic!("the first install neither used nor saved the cache:\n{out1}"),
    };
    drop(first);

    let second = tempfile::tempdir().unwrap();
    let (t2, out2) = install(second.path(), &cache, &mirror);
    check_root(second.path());
    assert!(out2.contains("unpacking the cached root"), "{out2}");

    let report = format!(
        "debian-12 minbase bootstrap: first install {:.1} s ({}), second install {:.1} s (from the cache)\n{out1}{out2}",
        t1.as_secs_f64(),
        if had_cache {
            "the cache was already there"
        } else {
            "cold: debootstrap"
        },
        t2.as_secs_f64(),
    );
    eprintln!("{report}");
    fs::write(cache.join("last-timings.txt"), report).unwrap();
}
