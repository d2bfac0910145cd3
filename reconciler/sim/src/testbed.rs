//! A fleet of simulated dom0s on this machine behind real OpenSSH sshds, for benchmarks:
//! node i listens on 127.0.2.(i+1) (one sshd serves 16 addresses, sshd's limit).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::nodesim::{FileError, FileOp, OnFile, SimError};

/// sshd's limit of listen addresses per daemon.
const ADDRS_PER_SSHD: usize = 16;

/// Why the testbed could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// More nodes than the 127.0.2.0/24 addresses allow, or none.
    #[error("1 to 240 nodes")]
    Nodes,
    /// More VPSes per node than the bench fleet's addresses allow.
    #[error("at most 200 VPSes per node")]
    VpsPerNode,
    /// No sshd binary in the usual places.
    #[error("sshd is missing: apt-get install openssh-server")]
    SshdMissing,
    /// ssh-keygen could not be run.
    #[error("ssh-keygen is missing: apt-get install openssh-client")]
    KeygenMissing(#[source] std::io::Error),
    /// ssh-keygen ran and failed.
    #[error("ssh-keygen failed")]
    KeygenFailed,
    /// `id -un` could not be run.
    #[error("cannot run id -un")]
    User(#[source] std::io::Error),
    /// `id -un` printed something that is not UTF-8.
    #[error("id -un printed a user name that is not UTF-8")]
    UserNotUtf8(#[source] std::string::FromUtf8Error),
    /// No free port on 127.0.0.1 could be picked.
    #[error("cannot pick a free port on 127.0.0.1")]
    Port(#[source] std::io::Error),
    /// An sshd could not be started.
    #[error("cannot start sshd")]
    SshdStart(#[source] std::io::Error),
    /// An sshd exited before it listened.
    #[error("an sshd exited ({0}) at start; see its log in the bench folder")]
    SshdExited(ExitStatus),
    /// An sshd did not listen in time.
    #[error("sshd did not listen on {addr}:{port} in time")]
    SshdSlow {
        /// The address it should listen on.
        addr: String,
        /// The port.
        port: u16,
    },
    /// The running binary (the wrappers' target) could not be found.
    #[error("cannot find the running binary")]
    CurrentExe(#[source] std::io::Error),
    /// A node root could not be set up.
    #[error("cannot set up the node root {}", .root.display())]
    NodeRoot {
        /// The node root.
        root: PathBuf,
        /// What failed.
        #[source]
        source: SimError,
    },
    /// A file of the testbed could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
}

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

fn sshd_path() -> Result<PathBuf, TestbedError> {
    ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or(TestbedError::SshdMissing)
}

fn keygen(path: &Path) -> Result<String, TestbedError> {
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
        .map_err(TestbedError::KeygenMissing)?;
    if !st.success() {
        return Err(TestbedError::KeygenFailed);
    }
    let pub_path = path.with_extension("pub");
    let pubkey = std::fs::read_to_string(&pub_path).on(FileOp::Read, &pub_path)?;
    Ok(pubkey.split(' ').take(2).collect::<Vec<_>>().join(" "))
}

impl Testbed {
    /// Builds `nodes` nodes with `vps_per_node` VPS files each (not applied yet) under `dir`.
    pub fn start(dir: &Path, nodes: usize, vps_per_node: usize) -> Result<Testbed, TestbedError> {
        if !(1..=240).contains(&nodes) {
            return Err(TestbedError::Nodes);
        }
        if vps_per_node > 200 {
            return Err(TestbedError::VpsPerNode);
        }
        let host_key = keygen(&dir.join("host_key"))?;
        keygen(&dir.join("client_key"))?;
        let authorized = dir.join("authorized_keys");
        std::fs::copy(dir.join("client_key.pub"), &authorized).on(FileOp::Copy, &authorized)?;
        std::fs::create_dir_all("/run/sshd").ok();
        let id = Command::new("id")
            .arg("-un")
            .output()
            .map_err(TestbedError::User)?;
        let user = String::from_utf8(id.stdout)
            .map_err(TestbedError::UserNotUtf8)?
            .trim()
            .to_owned();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(TestbedError::Port)?
            .port();
        let addrs: Vec<String> = (0..nodes).map(|i| format!("127.0.2.{}", i + 1)).collect();
        let mut known = String::new();
        for a in &addrs {
            known.push_str(&format!("[{a}]:{port} {host_key}\n"));
        }
        write(&dir.join("known_hosts"), known)?;
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
            write(&path, cfg)?;
            let log = dir.join(format!("sshd{k}.log"));
            let child = Command::new(sshd_path()?)
                .args(["-D", "-e", "-f"])
                .arg(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).on(FileOp::Create, &log)?)
                .spawn()
                .map_err(TestbedError::SshdStart)?;
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
        let exe = std::env::current_exe().map_err(TestbedError::CurrentExe)?;
        let repo = &bed.repo;
        for d in ["inventory/nodes", "inventory/customers", "inventory/vps"] {
            let d = repo.join(d);
            std::fs::create_dir_all(&d).on(FileOp::Create, &d)?;
        }
        write(
            &repo.join("products.toml"),
            "currency = \"USD\"\n\n[[product]]\nid = \"std\"\nname = \"Standard\"\nperiod_months = 1\nprice = \"10.00\"\ndisk = \"20 GiB\"\nram = \"1 GiB\"\nvcpus = 1\ntraffic = \"1 TiB\"\n",
        )?;
        write(
            &repo.join("inventory/customers/c-0001.toml"),
            "name = \"Bench\"\nemail = \"bench@example.net\"\n",
        )?;
        let mut pools = String::new();
        for (i, addr) in addrs.iter().enumerate() {
            pools.push_str(&format!(
                "[[pool]]\nid = \"p{i}\"\nlocation = \"Bench\"\nnetwork = \"10.{i}.0.0/24\"\ngateway = \"10.{i}.0.1\"\n\n"
            ));
            let root = dir.join(format!("nodes/n{i:03}"));
            crate::nodesim::install(&root, &exe)
                .and_then(|()| crate::nodesim::create_vg(&root, "vg0", 8 << 40))
                .map_err(|source| TestbedError::NodeRoot {
                    root: root.clone(),
                    source,
                })?;
            write(
                &repo.join(format!("inventory/nodes/n{i:03}.toml")),
                format!(
                    "address = \"{addr}\"\nport = {port}\nuser = {}\nhost_key = \"{host_key}\"\nlocation = \"Bench\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\npools = [\"p{i}\"]\ncapacity = {{ ram = \"256 GiB\", disk = \"8 TiB\", vcpus = 256 }}\nroot = \"{}\"\n",
                    toml_str(&user),
                    root.display()
                ),
            )?;
            for j in 0..vps_per_node {
                write(
                    &repo.join(format!("inventory/vps/v{i:03}x{j:03}.toml")),
                    format!(
                        "customer = \"c-0001\"\nproduct = \"std\"\nnode = \"n{i:03}\"\nips = [\"10.{i}.0.{}\"]\nhostname = \"v{i}x{j}.example.net\"\nos = \"debian-12\"\ncreated = 2026-01-01\nexpires = 2027-01-01\n",
                        j + 10
                    ),
                )?;
            }
        }
        write(&repo.join("pools.toml"), pools)?;
        Ok(bed)
    }

    fn wait_ready(&mut self) -> Result<(), TestbedError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for a in &self.addrs {
            loop {
                if std::net::TcpStream::connect((a.as_str(), self.port)).is_ok() {
                    break;
                }
                for c in &mut self.sshds {
                    if let Ok(Some(st)) = c.try_wait() {
                        return Err(TestbedError::SshdExited(st));
                    }
                }
                if Instant::now() >= deadline {
                    return Err(TestbedError::SshdSlow {
                        addr: a.clone(),
                        port: self.port,
                    });
                }
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

/// Writes `text` to `path`.
fn write(path: &Path, text: impl AsRef<[u8]>) -> Result<(), FileError> {
    std::fs::write(path, text).on(FileOp::Write, path)
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
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    )
}
