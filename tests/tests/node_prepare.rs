#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
//! `gitvps node prepare` against a real Debian 12: a debootstrapped root (cached under target/),
//! its own sshd started in a chroot on 127.0.0.1, real apt, useradd, sudo and visudo; then a whole
//! `gitvps apply` as the prepared non-root user, through the sudo rule prepare wrote. Needs root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gitvps_tests as support;
use support::fleet::{Fleet, Run};

/// Runs a command that must succeed; its stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        support::output_text(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The debootstrapped root (minbase and openssh-server, from this machine's mirror), as a
/// tarball cached under target/: built once, unpacked by every run.
fn cached_root() -> PathBuf {
    let mirror = support::mirror();
    let cache = support::target_tmp()
        .parent()
        .unwrap()
        .join("gitvps-cache/prepare");
    std::fs::create_dir_all(&cache).unwrap();
    let https = mirror.starts_with("https:");
    let tgz = cache.join(format!(
        "bookworm-minbase-ssh{}.tar.gz",
        if https { "-tls" } else { "" }
    ));
    if tgz.is_file() {
        return tgz;
    }
    let build = cache.join(format!("build.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&build);
    let include = if https {
        "--include=openssh-server,ca-certificates"
    } else {
        "--include=openssh-server"
    };
    let start = Instant::now();
    run(Command::new("debootstrap").args([
        "--variant=minbase",
        include,
        "bookworm",
        build.to_str().unwrap(),
        &mirror,
    ]));
    let tmp = cache.join(format!(".{}.tmp", std::process::id()));
    run(Command::new("tar")
        .arg("-C")
        .arg(&build)
        .args(["--numeric-owner", "-czf"])
        .arg(&tmp)
        .arg("."));
    std::fs::rename(&tmp, &tgz).unwrap();
    std::fs::remove_dir_all(&build).unwrap();
    eprintln!("debootstrap of the cached root: {:?}", start.elapsed());
    tgz
}

/// The Debian root with its sshd: the chroot's mounts (/proc, /sys, /dev, the apt cache) live in
/// a mount namespace of its own, so they vanish with the sshd and never touch this machine's.
struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    port: u16,
    host_key: String,
    sshd: Child,
    log: PathBuf,
}

impl Node {
    fn start(client_pub: &str) -> Node {
        let dir = tempfile::tempdir_in({
            let t = support::target_tmp();
            std::fs::create_dir_all(&t).unwrap();
            t
        })
        .unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        run(Command::new("tar")
            .arg("-C")
            .arg(&root)
            .args(["--numeric-owner", "-xzf"])
            .arg(cached_root()));
        // Services are not started in a chroot (Debian's policy-rc.d convention).
        let policy = root.join("usr/sbin/policy-rc.d");
        std::fs::write(&policy, "#!/bin/sh\nexit 101\n").unwrap();
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !root.join("etc/ssh/ssh_host_ed25519_key").exists() {
            run(Command::new("chroot").arg(&root).args(["ssh-keygen", "-A"]));
        }
        let host_key = std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key.pub"))
            .unwrap()
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
        std::fs::write(
            root.join("root/.ssh/authorized_keys"),
            format!("{client_pub}\n"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("run/sshd")).unwrap();
        // The downloaded packages are kept under target/ for the next run.
        let apt = support::target_tmp()
            .parent()
            .unwrap()
            .join("gitvps-cache/prepare/apt-archives");
        std::fs::create_dir_all(apt.join("partial")).unwrap();
        let log = dir.path().join("sshd.log");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let script = r#"mount -t proc proc "$1/proc" && mount -t sysfs sysfs "$1/sys" &&
mount --bind /dev "$1/dev" && mount --bind "$2" "$1/var/cache/apt/archives" &&
exec chroot "$1" /usr/sbin/sshd -D -e -o "ListenAddress=127.0.0.1:$3" -o UsePAM=no \
  -o PermitRootLogin=prohibit-password -o PasswordAuthentication=no -o LogLevel=INFO"#;
        let sshd = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
            ])
            .arg(&root)
            .arg(&apt)
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut node = Node {
            _dir: dir,
            root,
            port,
            host_key,
            sshd,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline && node.sshd.try_wait().unwrap().is_none(),
                "the chroot's sshd did not start: {}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    /// Runs a command inside the chroot, with /proc mounted in a mount namespace of its own.
    fn chroot(&self, args: &[&str]) -> String {
        run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount -t proc proc "$1/proc" && exec chroot "$@""#)
            .arg("sh")
            .arg(&self.root)
            .args(args))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The sshd's children (sessions) end with their connections; its mounts with it.
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// Whether this machine has an interface of that name.
fn has_link(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Removes the bridge the test made on this machine (the chroot shares its network).
struct BridgeGuard(bool);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        if self.0 && has_link("xenbr0") {
            let _ = Command::new("ip").args(["link", "del", "xenbr0"]).status();
        }
    }
}

fn prepare(f: &Fleet, extra: &[&str]) -> Run {
    let mut args = vec!["node", "prepare", "--node", "prep"];
    args.extend_from_slice(extra);
    f.gitvps(&args)
}

#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn prepare_a_fresh_debian_then_apply_as_its_sudo_user() {
    support::require_root();
    let start = Instant::now();
    let f = Fleet::new(&[]);
    let client_pub = std::fs::read_to_string(f.sshd.client_key.with_extension("pub")).unwrap();
    let node = Node::start(client_pub.trim());
    let setup = start.elapsed();
    let _bridge = BridgeGuard(!has_link("xenbr0"));
    let bridge_was_there = !_bridge.0;
    std::fs::write(
        f.repo.join("inventory/nodes/prep.toml"),
        format!(
            "address = \"127.0.0.1\"\nport = {}\nuser = \"gitvps\"\nsudo = true\nhost_key = \"{}\"\nlocation = \"Testville\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"file\", dir = \"/var/lib/gitvps/disks\" }}\npools = [\"test-1\"]\ncapacity = {{ ram = \"64 GiB\", disk = \"2 TiB\", vcpus = 32 }}\nroot = \"/srv/sim\"\n",
            node.port, node.host_key
        ),
    )
    .unwrap();
    // The hypervisor is the simulation kit's stand-in `xl` under the node root /srv/sim (no Xen
    // runs in a chroot); everything else is the real Debian's.
    let exe = node.path("usr/local/bin/gitvps-e2e");
    if std::fs::hard_link(support::bin(), &exe).is_err() {
        std::fs::copy(support::bin(), &exe).unwrap();
    }
    node.chroot(&[
        "/usr/local/bin/gitvps-e2e",
        "node-sim",
        "install",
        "--root",
        "/srv/sim",
    ]);
    let passwd = || std::fs::read_to_string(node.path("etc/passwd")).unwrap();
    let untouched = |r: &Run| {
        assert!(!passwd().contains("\ngitvps:"), "{r:?}");
        assert!(!node.path("etc/sudoers.d/gitvps").exists(), "{r:?}");
        assert!(!node.path("srv/sim/var/lib/gitvps/disks").exists(), "{r:?}");
    };

    // A login user that is neither root nor allowed sudo: refused, nothing changed.
    node.chroot(&["useradd", "--create-home", "--password", "*", "plain"]);
    std::fs::create_dir_all(node.path("home/plain/.ssh")).unwrap();
    std::fs::write(node.path("home/plain/.ssh/authorized_keys"), &client_pub).unwrap();
    let r = prepare(&f, &["--fix", "--login", "plain"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("plain is not root and `sudo -n sh -c true` fails for it"),
        "{r:?}"
    );
    untouched(&r);

    // Not Debian: refused, nothing changed.
    let os_release = node.path("etc/os-release");
    let saved = std::fs::read_link(&os_release).ok();
    let saved_text = std::fs::read(&os_release).unwrap();
    std::fs::remove_file(&os_release).unwrap();
    std::fs::write(&os_release, "ID=ubuntu\nVERSION_ID=\"24.04\"\n").unwrap();
    let r = prepare(&f, &["--fix"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("runs ubuntu 24.04") && r.stderr.contains("nothing changed"),
        "{r:?}"
    );
    untouched(&r);
    std::fs::remove_file(&os_release).unwrap();
    match saved {
        Some(target) => std::os::unix::fs::symlink(target, &os_release).unwrap(),
        None => std::fs::write(&os_release, saved_text).unwrap(),
    }

    // A volume group name taken under /dev: refused, nothing changed.
    let file_storage = "storage = { backend = \"file\", dir = \"/var/lib/gitvps/disks\" }";
    let vg_null = "storage = { backend = \"lvm\", vg = \"null\" }";
    f.edit("inventory/nodes/prep.toml", file_storage, vg_null);
    let r = prepare(&f, &["--fix"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("clashes with /dev/null"), "{r:?}");
    untouched(&r);
    f.edit("inventory/nodes/prep.toml", vg_null, file_storage);

    // A key that is not one: refused before anything is sent.
    let bad = f.dir.path().join("bad.pub");
    std::fs::write(&bad, "ssh-ed25519 not-base64!\n").unwrap();
    let r = prepare(&f, &["--fix", "--authorized-key", bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("bad.pub: line 1:"), "{r:?}");
    untouched(&r);

    // A fresh Debian: what is missing, and nothing changed.
    let r = prepare(&f, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    for line in [
        "ok            system: Debian 12",
        "would change  package xen-system-amd64",
        "would change  package sudo",
        "would change  image folder /srv/sim/var/lib/gitvps/disks",
        "would change  user gitvps",
        "would change  authorized key of gitvps",
        "would change  sudo rule /etc/sudoers.d/gitvps",
        "ok            package util-linux",
        "ok            command flock",
        "to change: run again with --fix",
    ] {
        assert!(r.stdout.contains(line), "no `{line}` in {r:?}");
    }
    assert_eq!(
        r.stdout.contains("would change  bridge xenbr0"),
        !bridge_was_there,
        "{r:?}"
    );
    untouched(&r);

    // --fix: apt from the root's own sources, the bridge, the folder, the user, key and rule.
    let t = Instant::now();
    let r = prepare(&f, &["--fix"]);
    let fix_took = t.elapsed();
    assert_eq!(r.code, 0, "{r:?}\n{}", node.log());
    assert!(
        r.stdout.contains("changed       package xen-system-amd64"),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains("changed       sudo rule /etc/sudoers.d/gitvps"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("checked again: the node is ready"),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read_to_string(node.path("etc/sudoers.d/gitvps")).unwrap(),
        "# Written by gitvps node prepare: the rule docs/reconciler.md lists (root in all but name).\ngitvps ALL=(root) NOPASSWD: /bin/sh\n"
    );
    let mode = std::fs::metadata(node.path("etc/sudoers.d/gitvps"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o440);
    node.chroot(&["visudo", "-c"]);
    assert!(
        node.path("usr/sbin/xl").exists(),
        "the real xl is installed"
    );
    assert!(has_link("xenbr0"));
    assert!(
        std::fs::read_to_string(node.path("home/gitvps/.ssh/authorized_keys"))
            .unwrap()
            .contains(client_pub.split(' ').nth(1).unwrap())
    );

    // Idempotent: all ok, and a second --fix changes nothing.
    let r = prepare(&f, &[]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("All ok: the node is ready."), "{r:?}");
    assert!(!r.stdout.contains("would change"), "{r:?}");
    let before = passwd();
    let r = prepare(&f, &["--fix"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("Nothing to change: the node is ready."),
        "{r:?}"
    );
    assert!(!r.stdout.contains("changed "), "{r:?}");
    assert_eq!(passwd(), before);

    // The prepared user is itself an admin prepare accepts (through sudo -n).
    let r = prepare(&f, &["--login", "gitvps"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("as gitvps through sudo:"), "{r:?}");
    assert!(r.stdout.contains("All ok"), "{r:?}");

    // The sudo rule is enough: a whole apply as gitvps (disk, config, console user, start).
    f.vps("xen31", "prep", "192.0.2.31", "");
    let t = Instant::now();
    let r = f.gitvps(&["apply"]);
    let apply_took = t.elapsed();
    assert_eq!(r.code, 0, "{r:?}\n{}", node.log());
    assert!(r.stdout.contains("xen31"), "{r:?}");
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "the plan after the apply is not empty: {p:?}");
    assert!(
        node.path("srv/sim/var/lib/gitvps/disks/xen31.img").exists(),
        "{r:?}"
    );
    assert!(
        node.path("srv/sim/var/lib/gitvps-sim/xl/domains/xen31.json")
            .exists(),
        "{r:?}"
    );
    assert!(
        node.log()
            .contains("Accepted publickey for gitvps from 127.0.0.1"),
        "{}",
        node.log()
    );
    eprintln!(
        "setup (root unpacked, sshd): {setup:?}; --fix: {fix_took:?}; apply: {apply_took:?}; total: {:?}",
        start.elapsed()
    );
}
