#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The bootstrap scripts of `bootstraps/`, run for real against folders: every family's network
//! and customisation files (snapshots), the appliance's first-boot unit, and every refusal.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use model::Inventory;
use model::bootstraps::{Catalog, CryptHash};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn bootstraps() -> PathBuf {
    repo().join("bootstraps")
}

/// The OS of each family whose files are snapshot-tested.
const FAMILIES: [&str; 4] = ["debian-12", "ubuntu-2404", "rocky-9", "alpine-3-20"];

/// The variables the reconciler would pass for `vps` of the example fleet, installed with `os`
/// (and no appliance) into `target`.
fn env_of(vps: &str, os: &str, target: &Path) -> Vec<(String, String)> {
    let inv = Inventory::load(&repo()).unwrap();
    let cat = Catalog::load(&repo()).unwrap();
    let mut v = inv.vps[vps].clone();
    v.os = os.parse().unwrap();
    v.appliance = None;
    let mut env = cat.env_for(&inv, &v).unwrap();
    env.root_password_hash = Some(
        "$6$gitvpstest$TYq2fGqHoaJm1dYg2nQm4q0kVqzB1mE3z3B9wW9zT0mY0kG7d.3rZk1S4Hn6JvN5rV1c1ZzXyWq9mQ7wQe8uK/"
            .parse::<CryptHash>()
            .unwrap(),
    );
    env.run.bootstraps = Some(bootstraps().display().to_string());
    env.run.target = Some(target.display().to_string());
    env.run.mirror = Some("http://mirror.invalid/os".into());
    env.vars()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Runs a script with exactly `env` (and PATH), as the node would.
fn run(script: &Path, env: &[(String, String)]) -> Output {
    Command::new("sh")
        .arg(script)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

fn ok(out: &Output) -> &Output {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

fn unset(env: &mut Vec<(String, String)>, key: &str) {
    env.retain(|(k, _)| k != key);
}

/// A folder like the root install_os leaves, as far as custom_os needs: passwd and shadow.
fn fake_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::create_dir_all(t.path().join("etc")).unwrap();
    fs::write(
        t.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n",
    )
    .unwrap();
    fs::write(
        t.path().join("etc/shadow"),
        "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
    )
    .unwrap();
    fs::set_permissions(
        t.path().join("etc/shadow"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    t
}

/// Every path under `root` with its mode (and link target), then each new file's text.
/// `skip` lists files the fake root started with; shadow's change date is normalised.
fn tree(root: &Path, skip: &[&str]) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
            if p.is_dir() && !p.is_symlink() {
                walk(root, &p, out);
            }
        }
    }
    let mut paths = Vec::new();
    walk(root, root, &mut paths);
    let mut s = String::new();
    for rel in &paths {
        let p = root.join(rel);
        let meta = fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if meta.is_symlink() {
            let to = fs::read_link(&p).unwrap();
            writeln!(s, "link {} -> {}", rel.display(), to.display()).unwrap();
        } else if meta.is_dir() {
            writeln!(s, "dir  {:o} {}/", mode, rel.display()).unwrap();
        } else {
            writeln!(s, "file {:o} {}", mode, rel.display()).unwrap();
        }
    }
    for rel in &paths {
        let p = root.join(rel);
        let name = rel.display().to_string();
        if !p.is_file() || p.is_symlink() || skip.contains(&name.as_str()) {
            continue;
        }
        let mut text = fs::read_to_string(&p).unwrap();
        if name == "etc/shadow" {
            text = text
                .lines()
                .map(|l| {
                    let mut f: Vec<&str> = l.split(':').collect();
                    if f[0] == "root" && f.len() > 2 {
                        f[2] = "<days>";
                    }
                    f.join(":") + "\n"
                })
                .collect();
        }
        writeln!(s, "\n==> {name} <==\n{text}").unwrap();
    }
    s
}

/// The network files of every family, for an IPv4 VPS (xen03) and a dual-stack one (xen02).
#[test]
fn network_files_of_every_family() {
    for os in FAMILIES {
        for vps in ["xen03", "xen02"] {
            let t = tempfile::tempdir().unwrap();
            let env = env_of(vps, os, t.path());
            ok(&run(
                &bootstraps().join("os").join(os).join("setup_network"),
                &env,
            ));
            let name = format!("network_{os}_{vps}");
            insta::assert_snapshot!(name, tree(t.path(), &[]));
        }
    }
}

/// custom_os of every family against a folder: no chroot, no mount, no network.
#[test]
fn customisation_of_every_family() {
    for os in FAMILIES {
        let t = fake_root();
        // What debootstrap and openssh-server leave behind, which custom_os must remove.
        fs::create_dir_all(t.path().join("etc/ssh")).unwrap();
        fs::write(t.path().join("etc/ssh/ssh_host_ed25519_key"), "secret").unwrap();
        fs::write(t.path().join("etc/machine-id"), "0123456789abcdef\n").unwrap();
        fs::write(t.path().join("etc/resolv.conf"), "nameserver 10.0.0.1\n").unwrap();
        let env = env_of("xen02", os, t.path());
        ok(&run(
            &bootstraps().join("os").join(os).join("custom_os"),
            &env,
        ));
        assert!(!t.path().join("etc/ssh/ssh_host_ed25519_key").exists());
        let keys = fs::read_to_string(t.path().join("root/.ssh/authorized_keys")).unwrap();
        assert_eq!(
            keys,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnZACIYs/1sMOT4kyilhseeocsdXihGHPmj1hWLWg3q jane@laptop\n"
        );
        let shadow_mode = fs::metadata(t.path().join("etc/shadow"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(shadow_mode & 0o777, 0o640, "shadow keeps its mode");
        let name = format!("custom_{os}");
        insta::assert_snapshot!(name, tree(t.path(), &["etc/passwd"]));
    }
}

#[test]
fn without_a_password_hash_root_has_no_password() {
    let t = fake_root();
    let mut env = env_of("xen03", "debian-12", t.path());
    unset(&mut env, "VPS_ROOT_PASSWORD_HASH");
    ok(&run(&bootstraps().join("os/debian-12/custom_os"), &env));
    let shadow = fs::read_to_string(t.path().join("etc/shadow")).unwrap();
    assert!(shadow.starts_with("root:*:19000:"), "{shadow}");
    // A password where a hash belongs is refused, and not echoed.
    set(&mut env, "VPS_ROOT_PASSWORD_HASH", "correct horse battery");
    let out = run(&bootstraps().join("os/debian-12/custom_os"), &env);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("VPS_ROOT_PASSWORD_HASH is not a crypt hash"));
    assert!(!stderr(&out).contains("horse"));
}

#[test]
fn kvm_gets_a_serial_console() {
    let t = fake_root();
    let mut env = env_of("xen03", "debian-12", t.path());
    set(&mut env, "VPS_HYPERVISOR", "kvm");
    ok(&run(&bootstraps().join("os/debian-12/custom_os"), &env));
    assert_eq!(
        fs::read_link(
            t.path()
                .join("etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service")
        )
        .unwrap(),
        Path::new("/usr/lib/systemd/system/serial-getty@.service")
    );
    let grub = fs::read_to_string(t.path().join("boot/grub/grub.cfg")).unwrap();
    assert!(
        grub.contains("ro console=tty0 console=ttyS0,115200\n"),
        "{grub}"
    );
}

#[test]
fn the_appliance_gets_its_first_boot_unit() {
    let t = tempfile::tempdir().unwrap();
    let mut env = env_of("xen03", "debian-12", t.path());
    set(&mut env, "APPLIANCE_ID", "openvpn");
    ok(&run(&bootstraps().join("lib/install_appliance"), &env));
    let p = t.path();
    let firstboot = p.join("usr/local/lib/gitvps/firstboot");
    assert_eq!(
        fs::read(&firstboot).unwrap(),
        fs::read(bootstraps().join("appliances/openvpn/firstboot")).unwrap()
    );
    assert_eq!(
        fs::metadata(&firstboot).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let unit = fs::read_to_string(p.join("etc/systemd/system/gitvps-firstboot.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/lib/gitvps/firstboot\n"),
        "{unit}"
    );
    assert!(
        unit.contains("systemctl disable gitvps-firstboot.service"),
        "{unit}"
    );
    assert!(unit.contains("After=network-online.target"), "{unit}");
    assert_eq!(
        fs::read_link(
            p.join("etc/systemd/system/multi-user.target.wants/gitvps-firstboot.service")
        )
        .unwrap(),
        Path::new("/etc/systemd/system/gitvps-firstboot.service")
    );
    let vars = fs::read_to_string(p.join("usr/local/lib/gitvps/env")).unwrap();
    assert!(vars.contains("VPS_IPV4='203.0.113.11/26'\n"), "{vars}");
    assert!(
        !vars.contains("HASH"),
        "no password hash in the guest's env file"
    );
    // The env file is valid sh that gives back the values.
    let out = Command::new("sh")
        .arg("-c")
        .arg(". \"$1\"; printf '%s|%s' \"$VPS_HOSTNAME\" \"$APPLIANCE_ID\"")
        .arg("sh")
        .arg(p.join("usr/local/lib/gitvps/env"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "vpn.example.cn|openvpn"
    );

    // An appliance for another family is refused by the script too.
    let t2 = tempfile::tempdir().unwrap();
    let mut env = env_of("xen03", "rocky-9", t2.path());
    set(&mut env, "APPLIANCE_ID", "wireguard");
    let out = run(&bootstraps().join("lib/install_appliance"), &env);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not support the OS family 'el'"));
    assert!(
        fs::read_dir(t2.path()).unwrap().next().is_none(),
        "nothing written"
    );
    // An unknown one too.
    set(&mut env, "APPLIANCE_ID", "mailserver");
    let out = run(&bootstraps().join("lib/install_appliance"), &env);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("unknown appliance 'mailserver'"));
}

/// A root tarball made here, served as a file:// URL and as a path under the mirror.
#[test]
fn an_image_is_checked_before_it_is_unpacked() {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/os-release"), "ID=alpine\nVERSION_ID=3.20.3\n").unwrap();
    fs::write(src.join("etc/shadow"), "root:*::0:::::\n").unwrap();
    let mirror = work.path().join("mirror");
    fs::create_dir_all(mirror.join("v3.20/releases/x86_64")).unwrap();
    let tarball = mirror.join("v3.20/releases/x86_64/root.tar.gz");
    let made = Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-czf")
        .arg(&tarball)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    let sha = String::from_utf8(
        Command::new("sha256sum")
            .arg(&tarball)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()[..64]
        .to_owned();
    let cache = work.path().join("cache");
    let install = bootstraps().join("os/alpine-3-20/install_os");

    // A wrong checksum: refused with 65, nothing unpacked, nothing cached.
    let t = tempfile::tempdir().unwrap();
    let mut env = env_of("xen03", "alpine-3-20", t.path());
    set(&mut env, "GITVPS_BOOTABLE", "0");
    set(&mut env, "GITVPS_CACHE", &cache.display().to_string());
    set(
        &mut env,
        "OS_IMAGE_URL",
        &format!("file://{}", tarball.display()),
    );
    set(&mut env, "OS_IMAGE_SHA256", &"0".repeat(64));
    let out = run(&install, &env);
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "expected {}, got {sha}; nothing was unpacked",
            "0".repeat(64)
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        fs::read_dir(t.path()).unwrap().next().is_none(),
        "TARGET stays empty"
    );
    assert!(
        fs::read_dir(cache.join("images")).unwrap().next().is_none(),
        "no cache entry"
    );

    // The right checksum, by a path under the mirror as meta.toml writes it.
    set(
        &mut env,
        "OS_IMAGE_URL",
        "v3.20/releases/x86_64/root.tar.gz",
    );
    set(&mut env, "OS_IMAGE_SHA256", &sha);
    set(
        &mut env,
        "GITVPS_MIRROR",
        &format!("file://{}", mirror.display()),
    );
    ok(&run(&install, &env));
    assert_eq!(
        fs::read_to_string(t.path().join("etc/os-release")).unwrap(),
        "ID=alpine\nVERSION_ID=3.20.3\n"
    );
    assert!(cache.join(format!("images/{sha}.tar")).is_file());

    // A second install comes from the cache, even with the mirror gone.
    fs::remove_file(&tarball).unwrap();
    let t2 = tempfile::tempdir().unwrap();
    set(&mut env, "TARGET", &t2.path().display().to_string());
    let out = ok(&run(&install, &env)).stdout.clone();
    assert!(String::from_utf8_lossy(&out).contains("using the cached image"));
    assert!(t2.path().join("etc/os-release").is_file());

    // A non-empty TARGET is refused before anything is fetched.
    let out = run(&install, &env);
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
}

/// A step that fails stops the run, with its exit code and its last lines on stderr.
#[test]
fn a_failing_step_shows_its_last_lines() {
    let work = tempfile::tempdir().unwrap();
    let b = work.path().join("bootstraps");
    fs::create_dir_all(b.join("lib")).unwrap();
    for f in ["install", "common.sh"] {
        fs::copy(bootstraps().join("lib").join(f), b.join("lib").join(f)).unwrap();
    }
    let os = b.join("os/broken-os");
    fs::create_dir_all(&os).unwrap();
    fs::write(os.join("meta.toml"), "").unwrap();
    fs::write(
        os.join("install_os"),
        "#!/bin/sh\nset -eu\ni=1\nwhile [ $i -le 30 ]; do echo \"line $i\"; i=$((i + 1)); done\necho 'E: no such release' >&2\nexit 3\n",
    )
    .unwrap();
    fs::write(
        os.join("custom_os"),
        "#!/bin/sh\necho never >\"$TARGET/ran\"\n",
    )
    .unwrap();
    let t = tempfile::tempdir().unwrap();
    let env = vec![
        ("GITVPS_BOOTSTRAPS".to_owned(), b.display().to_string()),
        ("TARGET".to_owned(), t.path().display().to_string()),
        ("OS_ID".to_owned(), "broken-os".to_owned()),
    ];
    let out = run(&b.join("lib/install"), &env);
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[0],
        "gitvps: install_os failed with exit code 3; its last lines:"
    );
    assert_eq!(lines.len(), 21, "{err}");
    assert_eq!(lines[1], "line 12");
    assert_eq!(lines[20], "E: no such release");
    assert!(!t.path().join("ran").exists(), "later steps do not run");

    // The real Debian install_os on a non-empty TARGET fails the same way, before any download.
    fs::write(t.path().join("leftover"), "x").unwrap();
    let mut env = env_of("xen03", "debian-12", t.path());
    set(&mut env, "OS_ID", "debian-12");
    let out = run(&bootstraps().join("lib/install"), &env);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains(
            "gitvps: install_os failed with exit code 64; its last lines:\ngitvps: TARGET '"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_is_refused_with_64() {
    let t = tempfile::tempdir().unwrap();
    let base = env_of("xen02", "debian-12", t.path());
    let network = bootstraps().join("os/debian-12/setup_network");
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "VPS_HOSTNAME",
            Some("x;reboot"),
            "VPS_HOSTNAME is not a host name",
        ),
        ("VPS_HOSTNAME", None, "VPS_HOSTNAME is required"),
        (
            "VPS_IPV4",
            Some("66.255.255.34"),
            "VPS_IPV4: '66.255.255.34' is not address/prefix",
        ),
        (
            "VPS_IPV4",
            Some("1.2.3.4/24 $(id)"),
            "is not address/prefix",
        ),
        ("VPS_IPV6", Some("2001:db8::1"), "is not address/prefix"),
        (
            "VPS_DNS",
            Some("dns.example"),
            "VPS_DNS: 'dns.example' is not an IP address",
        ),
        (
            "VPS_GATEWAY4",
            Some("1.2.3.4\nrm -rf /"),
            "VPS_GATEWAY4 is not an IPv4 address",
        ),
        (
            "VPS_SSH_KEYS",
            Some("ssh-ed25519 AAAA\ncommand=\"x\" ssh-rsa AAAA"),
            "VPS_SSH_KEYS is not authorized_keys lines",
        ),
        (
            "TARGET",
            Some("relative/path"),
            "TARGET must be an absolute path",
        ),
        (
            "TARGET",
            Some("/"),
            "TARGET must not be the node's root folder",
        ),
        ("TARGET", Some("/nonexistent/gitvps"), "is not a folder"),
        (
            "VPS_HYPERVISOR",
            Some("vmware"),
            "VPS_HYPERVISOR is not xen or kvm",
        ),
    ];
    for (key, value, message) in cases {
        let mut env = base.clone();
        match value {
            Some(v) => set(&mut env, key, v),
            None => unset(&mut env, key),
        }
        let out = run(&network, &env);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{key}={value:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(message),
            "{key}={value:?}: {}",
            stderr(&out)
        );
        assert!(
            fs::read_dir(t.path()).unwrap().next().is_none(),
            "{key}={value:?}: nothing written"
        );
    }
    // An unknown OS through the runner.
    let mut env = base.clone();
    set(&mut env, "OS_ID", "windows");
    let out = run(&bootstraps().join("lib/install"), &env);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("unknown OS 'windows'"),
        "{}",
        stderr(&out)
    );
    // hvm-iso installs nothing.
    set(&mut env, "OS_ID", "hvm-iso");
    let out = run(&bootstraps().join("lib/install"), &env);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("has no install_os"),
        "{}",
        stderr(&out)
    );
}

/// EL9 cannot be bootstrapped on a node without dnf: a clear refusal. The node is this machine
/// with dnf taken off its PATH (a folder linking every other command), so the check runs whether
/// or not dnf is installed here.
#[test]
fn el9_without_dnf_says_so() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if name != "dnf" && fs::symlink_metadata(bin.join(&name)).is_err() {
                std::os::unix::fs::symlink(e.path(), bin.join(&name)).unwrap();
            }
        }
    }
    let target = t.path().join("target");
    fs::create_dir(&target).unwrap();
    let env = env_of("xen03", "rocky-9", &target);
    let out = Command::new("sh")
        .arg(bootstraps().join("os/rocky-9/install_os"))
        .env_clear()
        .env("PATH", &bin)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("dnf is not installed on this node"),
        "{}",
        stderr(&out)
    );
    assert!(fs::read_dir(&target).unwrap().next().is_none());
}

/// Debian on Xen gets the generic kernel (xz-compressed: PV GRUB, `grub-x86_64-xen.bin`, unpacks
/// it), on KVM the cloud kernel (LZ4: PV GRUB says "not xen image" and the domain never leaves
/// it, which is what kept the real Xen test's domU off the network). The node is this machine
/// with a `debootstrap` first on its PATH that records its arguments.
#[test]
fn debian_on_xen_gets_a_kernel_pv_grub_can_load() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let args = t.path().join("debootstrap.args");
    fs::write(
        bin.join("debootstrap"),
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >'{}'\n", args.display()),
    )
    .unwrap();
    fs::set_permissions(bin.join("debootstrap"), fs::Permissions::from_mode(0o755)).unwrap();
    let keyring = t.path().join("keyring.gpg");
    fs::write(&keyring, "").unwrap();
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    for os in ["debian-12", "debian-13"] {
        for (hypervisor, kernel, not) in [
            ("xen", "linux-image-amd64", "linux-image-cloud-amd64"),
            ("kvm", "linux-image-cloud-amd64", "linux-image-amd64"),
        ] {
            let target = tempfile::tempdir().unwrap();
            let mut env = env_of("xen03", os, target.path());
            set(&mut env, "VPS_HYPERVISOR", hypervisor);
            set(&mut env, "GITVPS_KEYRING", &keyring.display().to_string());
            let out = Command::new("sh")
                .arg(bootstraps().join(format!("os/{os}/install_os")))
                .env_clear()
                .env("PATH", &path)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .output()
                .unwrap();
            ok(&out);
            let given = fs::read_to_string(&args).unwrap();
            let include = given
                .lines()
                .find_map(|l| l.strip_prefix("--include="))
                .unwrap_or_else(|| panic!("{os}: no --include in {given}"));
            let packages: Vec<&str> = include.split(',').collect();
            assert!(
                packages.contains(&kernel) && !packages.contains(&not),
                "{os} on {hypervisor}: {include}"
            );
        }
    }
}
