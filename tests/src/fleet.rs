//! A test fleet: the example catalog, N simulated dom0s (node-sim roots) behind one real
//! sshd on 127.0.0.1, and the `gitvps` binary run as an operator would run it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::{Sshd, bin, top};

pub struct Fleet {
    pub sshd: Sshd,
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
}

/// The result of one gitvps run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Fleet {
    /// Nodes named `nodes`, each a node-sim root with a 2 TiB vg0 (lvm) or a disk folder
    /// (`file` backend for names ending in `f`), and no VPS yet.
    pub fn new(nodes: &[&str]) -> Fleet {
        let sshd = Sshd::start();
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("inventory/nodes")).unwrap();
        std::fs::create_dir_all(repo.join("inventory/vps")).unwrap();
        std::fs::create_dir_all(repo.join("inventory/customers")).unwrap();
        for f in [
            "products.toml",
            "gitvps.toml",
            "inventory/customers/c-0001.toml",
            "inventory/customers/c-0002.toml",
        ] {
            std::fs::copy(top().join(f), repo.join(f)).unwrap();
        }
        std::fs::write(
            repo.join("pools.toml"),
            "[[pool]]\nid = \"test-1\"\nlocation = \"Testville\"\nnetwork = \"192.0.2.0/24\"\ngateway = \"192.0.2.1\"\ndns = [\"192.0.2.2\"]\nreserved = [\"192.0.2.2\"]\nipv6 = \"2001:db8:7::/48\"\n",
        )
        .unwrap();
        let fleet = Fleet { sshd, dir, repo };
        for n in nodes {
            fleet.add_node(n);
        }
        fleet
    }

    pub fn root(&self, node: &str) -> PathBuf {
        self.dir.path().join("nodes").join(node)
    }

    pub fn add_node(&self, node: &str) {
        let root = self.root(node);
        let file_backend = node.ends_with('f');
        let mut cmd = Command::new(bin());
        cmd.args(["node-sim", "install", "--root"]).arg(&root);
        if !file_backend {
            cmd.args(["--vg", "vg0=2TiB"]);
        }
        let r: Run = cmd.output().unwrap().into();
        assert_eq!(r.code, 0, "{r:?}");
        let storage = if file_backend {
            "{ backend = \"file\", dir = \"/var/lib/gitvps/disks\" }"
        } else {
            "{ backend = \"lvm\", vg = \"vg0\" }"
        };
        std::fs::write(
            self.repo.join(format!("inventory/nodes/{node}.toml")),
            format!(
                "address = \"{}\"\nport = {}\nuser = \"{}\"\nhost_key = \"{}\"\nlocation = \"Testville\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {storage}\npools = [\"test-1\"]\ncapacity = {{ ram = \"64 GiB\", disk = \"2 TiB\", vcpus = 32 }}\nroot = \"{}\"\n",
                self.sshd.addr,
                self.sshd.port,
                self.sshd.user,
                self.sshd.host_key,
                root.display()
            ),
        )
        .unwrap();
    }

    /// Writes a VPS of c-0001 on `node` (Advanced VPS unless `product` is given).
    pub fn vps(&self, id: &str, node: &str, ip: &str, extra: &str) {
        std::fs::write(
            self.repo.join(format!("inventory/vps/{id}.toml")),
            format!(
                "customer = \"c-0001\"\nproduct = \"advanced\"\nnode = \"{node}\"\nips = [\"{ip}\"]\nhostname = \"{id}.example.net\"\nos = \"debian-12\"\ncreated = 2026-01-01\nexpires = 2027-01-01\n{extra}"
            ),
        )
        .unwrap();
    }

    /// Replaces `from` by `to` in a repo file.
    pub fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.repo.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} has no `{from}`");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("--repo").arg(&self.repo).args(args);
        c.env("GITVPS_SSH_KEY", &self.sshd.client_key);
        c.env_remove("SSH_AUTH_SOCK");
        c
    }

    pub fn gitvps(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }

    /// Applies and checks that a following plan is empty.
    pub fn converge(&self) -> Run {
        let r = self.gitvps(&["apply"]);
        assert_eq!(r.code, 0, "apply failed: {r:?}");
        let p = self.gitvps(&["plan"]);
        assert_eq!(p.code, 0, "the plan after an apply is not empty: {p:?}");
        r
    }

    /// Runs a stand-in tool on a node directly (as the test's eyes on the node).
    pub fn on_node(&self, node: &str, tool: &str, args: &[&str]) -> Run {
        let root = self.root(node);
        Command::new(root.join("usr/sbin").join(tool))
            .args(args)
            .output()
            .unwrap()
            .into()
    }

    /// The domain state file of the stand-in `xl`, if the domain exists.
    pub fn domain(&self, node: &str, vps: &str) -> Option<serde_json::Value> {
        let p = self
            .root(node)
            .join(format!("var/lib/gitvps-sim/xl/domains/{vps}.json"));
        std::fs::read_to_string(p)
            .ok()
            .map(|t| serde_json::from_str(&t).unwrap())
    }

    pub fn record(&self, node: &str, vps: &str) -> serde_json::Value {
        let p = self
            .root(node)
            .join(format!("var/lib/gitvps/state/{vps}.json"));
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    }

    pub fn lv(&self, node: &str, vps: &str) -> Option<u64> {
        std::fs::metadata(self.root(node).join(format!("dev/vg0/{vps}")))
            .ok()
            .map(|m| m.len())
    }

    /// Puts a wrapper in ROOT/usr/local/sbin (first on PATH) in front of a stand-in.
    pub fn wrap(&self, node: &str, tool: &str, script: &str) {
        let dir = self.root(node).join("usr/local/sbin");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\n{script}\nexec {} \"$@\"\n",
                self.root(node).join("usr/sbin").join(tool).display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
