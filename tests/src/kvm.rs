//! A real KVM node for tests: a folder behind a real sshd, the machine's own QEMU, and a repo
//! with one customer and the shipped bootstraps, applied with the `gitvps` binary.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::bin;
use crate::fleet::Run;
use crate::{Sshd, keygen, mirror, top};

/// The tags of a qcow2 image's internal snapshots, as `qemu-img snapshot -l` lists them (-U: a
/// running QEMU may hold the image).
pub fn qcow2_snapshots(img: &Path) -> Vec<String> {
    let out = Command::new("qemu-img")
        .args(["snapshot", "-U", "-l"])
        .arg(img)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let id = w.next()?;
            id.bytes().all(|b| b.is_ascii_digit()).then(|| w.next())?
        })
        .map(str::to_owned)
        .collect()
}

/// Writes `inventory/nodes/NAME.toml` of a KVM node in location Testville, pool `test-1`,
/// behind `sshd`, rooted at `root`, storing `format` images, with the `[kvm]` body `kvm`.
fn node_file(repo: &Path, name: &str, sshd: &Sshd, root: &Path, format: &str, kvm: &str) {
    std::fs::write(
        repo.join(format!("inventory/nodes/{name}.toml")),
        format!(
            "address = \"{}\"\nport = {}\nuser = \"{}\"\nhost_key = \"{}\"\nlocation = \"Testville\"\ncountry = \"US\"\nhypervisor = \"kvm\"\nstorage = {{ backend = \"file\", dir = \"/var/lib/gitvps/disks\", format = \"{}\" }}\npools = [\"test-1\"]\ncapacity = {{ ram = \"8 GiB\", disk = \"1 TiB\", vcpus = 8 }}\nroot = \"{}\"\n\n[kvm]\n{}",
            sshd.addr,
            sshd.port,
            sshd.user,
            sshd.host_key,
            format,
            root.display(),
            kvm
        ),
    )
    .unwrap();
}

/// A node's root folder: the node's tools are the real ones, but for `useradd` (the console
/// account is made under the node root by the stand-in); the bootstraps' root cache
/// (`var/cache/gitvps/roots`) lives under target/, shared by test runs and nodes. The rest of
/// the node's cache (ISOs, cloud images) is its own: each node removes what none of its VPSes
/// uses, which a cache shared with another node would turn into removing that node's.
fn node_root(root: &Path) {
    std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
    std::fs::write(
        root.join("usr/sbin/useradd"),
        format!(
            "#!/bin/sh\nexec {} node-sim exec --root {} useradd \"$@\"\n",
            bin().display(),
            root.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        root.join("usr/sbin/useradd"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let roots = crate::target_tmp()
        .parent()
        .unwrap()
        .join("gitvps-cache/roots");
    std::fs::create_dir_all(&roots).unwrap();
    std::fs::create_dir_all(root.join("var/cache/gitvps")).unwrap();
    std::os::unix::fs::symlink(&roots, root.join("var/cache/gitvps/roots")).unwrap();
}

/// Another node of a [`KvmNode`]'s fleet ([`KvmNode::add_node`]).
pub struct KvmPeer {
    pub sshd: Sshd,
    pub root: PathBuf,
}

/// True when the test runs as root (the KVM tests write /etc/sudoers.d, make taps, ...).
/// One KVM node `kvm1` and a repo for VPSes on it: the customer `c-0001` with a fresh key, the
/// example catalog's `test` plan, the pool `test-1`, the shipped bootstraps and an appliance
/// `probe` whose first boot needs no network (it records the VPS's id and addresses in
/// `/root/firstboot-ran`).
pub struct KvmNode {
    pub sshd: Sshd,
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub root: PathBuf,
    pub customer_key: PathBuf,
    /// The VPS whose guest the handle kills when dropped.
    pub vps: String,
    /// The root folder of the node the VPS is on (`root` until it moves).
    home: std::cell::RefCell<PathBuf>,
}

/// How the node and its repo differ from one test to another.
pub struct KvmNodeSpec<'a> {
    /// The VPS the test runs.
    pub vps: &'a str,
    /// The pool's network (`a.b.c.0/24`).
    pub network: &'a str,
    /// The pool's gateway.
    pub gateway: &'a str,
    /// The body of the node's `[kvm]` table.
    pub kvm: &'a str,
    /// Lines added to the `test` plan (disk caps, bandwidth).
    pub plan_extra: &'a str,
    /// The image format of the node's `file` storage (`raw`, `qcow2`).
    pub format: &'a str,
}

impl KvmNode {
    pub fn new(spec: &KvmNodeSpec<'_>) -> KvmNode {
        let sshd = Sshd::start();
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let root = dir.path().join("node");
        for d in ["inventory/nodes", "inventory/vps", "inventory/customers"] {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        super::copy_tree(&top().join("bootstraps"), &repo.join("bootstraps"));
        let probe = repo.join("bootstraps/appliances/probe");
        std::fs::create_dir_all(&probe).unwrap();
        std::fs::write(
            probe.join("meta.toml"),
            "name = \"Probe\"\ndescription = \"records its first boot\"\nfamilies = [\"debian\"]\n",
        )
        .unwrap();
        std::fs::write(
            probe.join("firstboot"),
            "#!/bin/sh\nset -eu\n. /usr/local/lib/gitvps/env\nprintf '%s %s\\n' \"$VPS_ID\" \"$VPS_IPV4\" >/root/firstboot-ran\n",
        )
        .unwrap();
        std::fs::set_permissions(
            probe.join("firstboot"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::copy(top().join("gitvps.toml"), repo.join("gitvps.toml")).unwrap();
        let products = std::fs::read_to_string(top().join("products.toml")).unwrap();
        let edited = products.replacen(
            "traffic = \"1024 MiB\"",
            &format!("{}traffic = \"1024 MiB\"", spec.plan_extra),
            1,
        );
        assert!(spec.plan_extra.is_empty() || products != edited);
        std::fs::write(repo.join("products.toml"), edited).unwrap();
        std::fs::write(
            repo.join("pools.toml"),
            format!(
                "[[pool]]\nid = \"test-1\"\nlocation = \"Testville\"\nnetwork = \"{}\"\ngateway = \"{}\"\ndns = [\"{}\"]\n",
                spec.network, spec.gateway, spec.gateway
            ),
        )
        .unwrap();
        let customer_key = dir.path().join("customer_key");
        let customer_pub = keygen(&customer_key, "jane@laptop");
        std::fs::write(
            repo.join("inventory/customers/c-0001.toml"),
            format!(
                "name = \"Jane\"\nemail = \"jane@example.net\"\nssh_keys = [\"{customer_pub}\"]\n"
            ),
        )
        .unwrap();
        node_file(&repo, "kvm1", &sshd, &root, spec.format, spec.kvm);
        node_root(&root);
        KvmNode {
            sshd,
            dir,
            repo,
            home: std::cell::RefCell::new(root.clone()),
            root,
            customer_key,
            vps: spec.vps.to_owned(),
        }
    }

    /// A second node `name` of the same location and pool: its own root folder (beside the
    /// first's) behind its own real sshd, whose host key its file pins and which takes the
    /// reconciler's key; the same tools, root cache and `[kvm]` table body `kvm`.
    pub fn add_node(&self, name: &str, format: &str, kvm: &str) -> KvmPeer {
        let sshd = Sshd::start();
        let public = std::fs::read_to_string(self.sshd.client_key.with_extension("pub")).unwrap();
        std::fs::write(sshd.dir.path().join("authorized_keys"), public).unwrap();
        let root = self.dir.path().join(name);
        node_file(&self.repo, name, &sshd, &root, format, kvm);
        node_root(&root);
        KvmPeer { sshd, root }
    }

    /// The VPS is on the node of root folder `root` from now on: where [`KvmNode::run_dir`],
    /// [`KvmNode::console`] and [`KvmNode::qemu_pid`] look (after a move).
    pub fn now_on(&self, root: &Path) {
        *self.home.borrow_mut() = root.to_owned();
    }

    /// The root folder of the node the VPS is on now.
    pub fn home(&self) -> PathBuf {
        self.home.borrow().clone()
    }

    /// Writes the VPS's file: Debian 12 on the test plan with `ips` (a TOML list's inside).
    pub fn vps_file(&self, ips: &str, extra: &str) {
        let vps = &self.vps;
        std::fs::write(
            self.repo.join(format!("inventory/vps/{vps}.toml")),
            format!(
                "customer = \"c-0001\"\nproduct = \"test\"\nnode = \"kvm1\"\nips = [{ips}]\nhostname = \"{vps}.example.net\"\nos = \"debian-12\"\ncreated = 2026-01-01\nexpires = 2099-01-01\n{extra}"
            ),
        )
        .unwrap();
    }

    /// Replaces `from` by `to` in the VPS's file.
    pub fn edit_vps(&self, from: &str, to: &str) {
        let p = self.repo.join(format!("inventory/vps/{}.toml", self.vps));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "no `{from}` in {text}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }

    pub fn gitvps(&self, args: &[&str]) -> Run {
        self.gitvps_env(args, &[])
    }

    /// `gitvps ARGS` with extra environment variables (the restic password).
    pub fn gitvps_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        Command::new(bin())
            .arg("--repo")
            .arg(&self.repo)
            .args(args)
            .env("GITVPS_SSH_KEY", &self.sshd.client_key)
            .env("GITVPS_MIRROR", mirror())
            .env_remove("SSH_AUTH_SOCK")
            .envs(env.iter().copied())
            .output()
            .unwrap()
            .into()
    }

    /// Applies, checks the apply succeeded and that a second plan is empty; returns the apply.
    pub fn converge(&self, what: &str) -> Run {
        self.converge_env(what, &[])
    }

    /// [`KvmNode::converge`] with extra environment variables for the apply.
    pub fn converge_env(&self, what: &str, env: &[(&str, &str)]) -> Run {
        let t = Instant::now();
        let a = self.gitvps_env(&["apply"], env);
        // apply logs the reconciler's own CPU time and peak memory.
        let usage = a
            .stderr
            .lines()
            .find(|l| l.contains("peak memory"))
            .unwrap_or("");
        eprintln!(
            "{what}: apply took {:.1} s; {usage}",
            t.elapsed().as_secs_f64()
        );
        assert_eq!(
            a.code,
            0,
            "{what}: apply failed: {a:?}\n{}",
            self.console_tail()
        );
        let p = self.gitvps(&["plan"]);
        assert_eq!(
            p.code, 0,
            "{what}: the plan after the apply is not empty: {p:?}"
        );
        a
    }

    /// Sets `key = value` in `[reconciler]` of gitvps.toml (the key must be there).
    pub fn set_reconciler(&self, key: &str, value: &str) {
        let p = self.repo.join("gitvps.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.contains(&format!("\n{key} =")),
            "no {key} in gitvps.toml"
        );
        let out: String = text
            .lines()
            .map(|l| {
                if l.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}\n")
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(p, out).unwrap();
    }

    /// Runs `cmd` in the guest as root over SSH to `host:port` with the customer's key,
    /// retrying while the guest's sshd is not up yet.
    pub fn in_guest(&self, host: &str, port: u16, cmd: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = super::ssh_client(&self.customer_key, port)
                .arg(format!("root@{host}"))
                .arg(cmd)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "ssh root@{host} -p {port} failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.console_tail()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Waits until the console shows its `count`-th login prompt since the guest's start.
    pub fn wait_for_login(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.console().matches("login:").count() < count {
            assert!(
                Instant::now() < deadline,
                "no login prompt #{count}\n{}",
                self.console_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    pub fn run_dir(&self) -> PathBuf {
        self.home().join(format!("var/lib/gitvps/kvm/{}", self.vps))
    }

    /// What the guest's serial console printed since its last start.
    pub fn console(&self) -> String {
        std::fs::read_to_string(
            self.home()
                .join(format!("var/log/gitvps/console/{}.log", self.vps)),
        )
        .map(|t| t.replace('\r', ""))
        .unwrap_or_default()
    }

    pub fn console_tail(&self) -> String {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        format!(
            "--- console tail\n{}",
            lines[lines.len().saturating_sub(25)..].join("\n")
        )
    }

    /// The pid of the guest's QEMU when it runs.
    pub fn qemu_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.run_dir().join("qemu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }
}

impl Drop for KvmNode {
    fn drop(&mut self) {
        // Never leave a guest behind, whatever the test did.
        if let Some(pid) = self.qemu_pid() {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}
