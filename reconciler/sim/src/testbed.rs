//! A fleet of simulated dom0s on this machine behind real OpenSSH sshds, for benchmarks:
//! node i listens on 127.0.2.(i+1) (one sshd serves 16 addresses, sshd's limit).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

/// sshd's limit of listen addresses per daemon.
const ADDRS_PER_SSHD: usize = 16;

/// Running sshds, node roots and an inventory repo pointing at them.
pub struct Testbed {
    /// The inventory repo.
    pub repo: PathBuf,
    /// The client private key (`GITVPS_SSH_KEY`).
    pub client_key: PathBuf,
    /// `known_hosts` for OpenSSH clients.
    pub known_hosts: PathBuf,
    /// The port every sshd listens on.
    pub port: u16,
    /// The login user.
    pub user: String,
    /// Node addresses, by index.
    pub addrs: Vec<String>,
    sshds: Vec<Child>,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for c in &mut self.sshds {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sshd_path() -> anyhow::Result<PathBuf> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("sshd is missing: apt-get install openssh-server")
}

fn keygen(path: &Path) -> anyhow::Result<String> {
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "gitvps-testbed",
            "-f",
        ])
        .arg(path)
        .status()
        .context("ssh-keygen is missing: apt-get install openssh-client")?;
    ensure!(st.success(), "ssh-keygen failed");
    let pubkey = std::fs::read_to_string(path.with_extension("pub"))?;
    Ok(pubkey.split(' ').take(2).collect::<Vec<_>>().join(" "))
}

impl Testbed {
    /// Builds `nodes` nodes with `vps_per_node` VPS files each (not applied yet) under `dir`.
    pub fn start(dir: &Path, nodes: usize, vps_per_node: usize) -> anyhow::Result<Testbed> {
        ensure!((1..=240).contains(&nodes), "1 to 240 nodes");
        ensure!(vps_per_node <= 200, "at most 200 VPSes per node");
        let host_key = keygen(&dir.join("host_key"))?;
        keygen(&dir.join("client_key"))?;
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))?;
        std::fs::create_dir_all("/run/sshd").ok();
        let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
            .trim()
            .to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addrs: Vec<String> = (0..nodes).map(|i| format!("127.0.2.{}", i + 1)).collect();
        let mut known = String::new();
        for a in &addrs {
            known.push_str(&format!("[{a}]:{port} {host_key}\n"));
        }
        std::fs::write(dir.join("known_hosts"), known)?;
        let mut sshds = Vec::new();
        for (k, chunk) in addrs.chunks(ADDRS_PER_SSHD).enumerate() {
            let mut cfg = String::new();
            for a in chunk {
                cfg.push_str(&format!("ListenAddress {a}:{port}\n"));
            }
            cfg.push_str(&format!(
                "HostKey {}\nAuthorizedKeysFile {}\nPidFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 500:30:1000\nMaxSessions 100\nLogLevel ERROR\n",
                dir.join("host_key").display(),
                dir.join("authorized_keys").display(),
                dir.join(format!("sshd{k}.pid")).display()
            ));
            let path = dir.join(format!("sshd{k}.conf"));
            std::fs::write(&path, cfg)?;
            let child = Command::new(sshd_path()?)
                .args(["-D", "-e", "-f"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(format!("sshd{k}.log")))?)
                .spawn()
                .context("cannot start sshd")?;
            sshds.push(child);
        }
        let mut bed = Testbed {
            repo: dir.join("repo"),
            client_key: dir.join("client_key"),
            known_hosts: dir.join("known_hosts"),
            port,
            user: user.clone(),
            addrs: addrs.clone(),
            sshds,
        };
        bed.wait_ready()?;
        let exe = std::env::current_exe()?;
        let repo = &bed.repo;
        for d in ["inventory/nodes", "inventory/customers", "inventory/vps"] {
            std::fs::create_dir_all(repo.join(d))?;
        }
        std::fs::write(
            repo.join("products.toml"),
            "currency = \"USD\"\n\n[[product]]\nid = \"std\"\nname = \"Standard\"\nperiod_months = 1\nprice = \"10.00\"\ndisk = \"20 GiB\"\nram = \"1 GiB\"\nvcpus = 1\ntraffic = \"1 TiB\"\n",
        )?;
        std::fs::write(
            repo.join("inventory/customers/c-0001.toml"),
            "name = \"Bench\"\nemail = \"bench@example.net\"\n",
        )?;
        let mut pools = String::new();
        for (i, addr) in addrs.iter().enumerate() {
            pools.push_str(&format!(
                "[[pool]]\nid = \"p{i}\"\nlocation = \"Bench\"\nnetwork = \"10.{i}.0.0/24\"\ngateway = \"10.{i}.0.1\"\n\n"
            ));
            let root = dir.join(format!("nodes/n{i:03}"));
            crate::nodesim::install(&root, &exe)?;
            crate::nodesim::create_vg(&root, "vg0", 8 << 40)?;
            std::fs::write(
                repo.join(format!("inventory/nodes/n{i:03}.toml")),
                format!(
                    "address = \"{addr}\"\nport = {port}\nuser = {}\nhost_key = \"{host_key}\"\nlocation = \"Bench\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\npools = [\"p{i}\"]\ncapacity = {{ ram = \"256 GiB\", disk = \"8 TiB\", vcpus = 256 }}\nroot = \"{}\"\n",
                    toml_str(&user),
                    root.display()
                ),
            )?;
            for j in 0..vps_per_node {
                std::fs::write(
                    repo.join(format!("inventory/vps/v{i:03}x{j:03}.toml")),
                    format!(
                        "customer = \"c-0001\"\nproduct = \"std\"\nnode = \"n{i:03}\"\nips = [\"10.{i}.0.{}\"]\nhostname = \"v{i}x{j}.example.net\"\nos = \"debian-12\"\ncreated = 2026-01-01\nexpires = 2027-01-01\n",
                        j + 10
                    ),
                )?;
            }
        }
        std::fs::write(repo.join("pools.toml"), pools)?;
        Ok(bed)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for a in &self.addrs {
            loop {
                if std::net::TcpStream::connect((a.as_str(), self.port)).is_ok() {
                    break;
                }
                for c in &mut self.sshds {
                    if let Ok(Some(st)) = c.try_wait() {
                        bail!("an sshd exited ({st}) at start; see its log in the bench folder");
                    }
                }
                ensure!(
                    Instant::now() < deadline,
                    "sshd did not listen on {a}:{} in time",
                    self.port
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The OpenSSH command line that runs `remote` on node `i`.
    pub fn openssh(&self, i: usize, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
        .arg("-i")
        .arg(&self.client_key)
        .arg("-p")
        .arg(self.port.to_string())
        .arg(format!("{}@{}", self.user, self.addrs[i]))
        .arg(remote);
        c
    }
}

fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The quoted observe command for a node, as the reconciler sends it.
pub fn observe_remote(root: &str) -> String {
    planner::driver::observe_command_for(
        root,
        &planner::desired::Store::Lvm { vg: "vg0".into() },
        model::values::Hypervisor::Xen,
        false,
    )
}
