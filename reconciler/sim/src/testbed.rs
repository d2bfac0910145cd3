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
    /// The lean login user could not be created or given the testbed.
    #[error("cannot set up the lean login user {user}: {why}")]
    LeanUser {
        /// The user.
        user: String,
        /// What failed.
        why: String,
    },
    /// The probe sshd logged no key exchange.
    #[error("the probe sshd logged no key exchange (its log: {})", .0.display())]
    NoKex(PathBuf),
    /// A file of the testbed could not be read or written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// The login user the testbed's nodes are reached as when the bench runs as root: its shell is
/// `/bin/sh`, which reads no start-up file, so no `.bashrc` is paid on every exec.
pub const LEAN_USER: &str = "gitvps-bench";

/// What a client and sshd agreed on, from the sshd's DEBUG1 log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Key exchange (`kex: algorithm:`).
    pub kex: String,
    /// Host key algorithm (`kex: host key algorithm:`).
    pub host_key: String,
    /// Cipher, client to server (`kex: client->server cipher:`).
    pub cipher: String,
    /// MAC, or `<implicit>` for an AEAD cipher.
    pub mac: String,
}

impl Negotiated {
    /// Reads the first key exchange from an sshd DEBUG1 log.
    pub fn from_log(log: &str) -> Option<Negotiated> {
        let after = |key: &str| {
            log.lines()
                .find_map(|l| l.split_once(key).map(|(_, rest)| rest.trim().to_owned()))
        };
        let word = |key: &str| Some(after(key)?.split_whitespace().next()?.to_owned());
        let kex = word("kex: algorithm: ")?;
        let host_key = word("kex: host key algorithm: ")?;
        let c2s = after("kex: client->server cipher: ")?;
        let mut words = c2s.split_whitespace();
        let cipher = words.next()?.to_owned();
        let mac = match (words.next(), words.next()) {
            (Some("MAC:"), Some(m)) => m.to_owned(),
            _ => "<implicit>".to_owned(),
        };
        Some(Negotiated {
            kex,
            host_key,
            cipher,
            mac,
        })
    }

    /// The OpenSSH client options that make it negotiate exactly this.
    pub fn openssh_options(&self) -> Vec<String> {
        let mut o = vec![
            format!("KexAlgorithms={}", self.kex),
            format!("HostKeyAlgorithms={}", self.host_key),
            format!("Ciphers={}", self.cipher),
        ];
        if self.mac != "<implicit>" {
            o.push(format!("MACs={}", self.mac));
        }
        o
    }
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
    /// Options every OpenSSH client of [`Testbed::openssh`] gets (`-o` values).
    pub openssh_options: Vec<String>,
    dir: PathBuf,
    sshd_config: String,
    sshds: Vec<Child>,
    /// The cgroup the sshds run in, when one could be made (root): the nodes' CPU from it.
    cpu_group: Option<CpuGroup>,
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for c in &mut self.sshds {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A cgroup (v2) of its own for the sshds and everything they start, for their CPU time.
/// OpenSSH's privilege-separation monitor does not wait for the session process of a user
/// other than root (it exits when the session's socket closes), so that process, with the
/// login shell and the tools it reaped, is reparented to init and its time never reaches the
/// listening sshd's `cutime`; a cgroup counts every process in it, reaped by whomever.
#[derive(Debug)]
struct CpuGroup {
    dir: PathBuf,
}

impl CpuGroup {
    /// A fresh cgroup under the unified hierarchy (`/sys/fs/cgroup/unified` on a hybrid
    /// machine, `/sys/fs/cgroup` on a pure v2 one), or `None` where none can be made.
    fn new() -> Option<CpuGroup> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let top = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(Path::new)
            .find(|d| d.join("cgroup.procs").exists() && d.join("cpu.stat").exists())?;
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = top.join(format!("gitvps-testbed-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).ok()?;
        Some(CpuGroup { dir })
    }

    /// Puts process `pid` (and so what it starts from now on) into the group.
    fn add(&self, pid: u32) -> std::io::Result<()> {
        std::fs::write(self.dir.join("cgroup.procs"), pid.to_string())
    }

    /// The CPU time (user + system) every process that was in the group has used.
    fn usage(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).ok()?;
        let usec = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))?
            .trim()
            .parse()
            .ok()?;
        Some(Duration::from_micros(usec))
    }
}

impl Drop for CpuGroup {
    fn drop(&mut self) {
        // A cgroup goes once its last process has; session processes may linger a moment.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
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
        let mut user = String::from_utf8(id.stdout)
            .map_err(TestbedError::UserNotUtf8)?
            .trim()
            .to_owned();
        if user == "root" {
            lean_user()?;
            user = LEAN_USER.to_owned();
        }
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
        let sshd_config = format!(
            "HostKey {}\nAuthorizedKeysFile {}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 500:30:1000\nMaxSessions 100\n",
            dir.join("host_key").display(),
            dir.join("authorized_keys").display(),
        );
        let mut sshds = Vec::new();
        let mut cpu_group = CpuGroup::new();
        for (k, chunk) in addrs.chunks(ADDRS_PER_SSHD).enumerate() {
            let mut cfg = String::new();
            for a in chunk {
                cfg.push_str(&format!("ListenAddress {a}:{port}\n"));
            }
            cfg.push_str(&sshd_config);
            cfg.push_str(&format!(
                "PidFile {}\nLogLevel ERROR\n",
                dir.join(format!("sshd{k}.pid")).display()
            ));
            let child = sshd(dir, &format!("sshd{k}"), &cfg)?;
            // Without the group the nodes' CPU falls back to the sshds' own accounting.
            if let Some(g) = &cpu_group
                && g.add(child.id()).is_err()
            {
                cpu_group = None;
            }
            sshds.push(child);
        }
        let mut bed = Testbed {
            repo: dir.join("repo"),
            client_key: dir.join("client_key"),
            known_hosts: dir.join("known_hosts"),
            port,
            user: user.clone(),
            addrs: addrs.clone(),
            openssh_options: Vec::new(),
            dir: dir.to_path_buf(),
            sshd_config,
            sshds,
            cpu_group,
        };
        bed.wait_ready()?;
        let exe = std::env::current_exe().map_err(TestbedError::CurrentExe)?;
        let mut program = crate::nodesim::StandIn::beside(&exe);
        if user == LEAN_USER {
            // The lean user must run the stand-in tools, and the build folder they come from
            // may be closed to it (a checkout under a 0700 folder: CI's clone under /tmp's
            // mktemp). A copy inside the testbed folder, which it is given, always runs.
            let own = dir.join("gitvps-node-sim");
            std::fs::copy(program.path(), &own).on(FileOp::Copy, &own)?;
            program = program.at(own);
        }
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
            crate::nodesim::install(&root, &program)
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
        if bed.user == LEAN_USER {
            give(dir, LEAN_USER)?;
        }
        Ok(bed)
    }

    /// What a client negotiates with these sshds: one sshd like the others, logging at
    /// DEBUG1 on 127.0.3.1, serves the single connection `connect(host, port)` makes, and its
    /// log is read.
    pub fn negotiated(
        &self,
        connect: impl FnOnce(&str, u16) -> bool,
    ) -> Result<Negotiated, TestbedError> {
        let host = "127.0.3.1";
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(TestbedError::Port)?
            .port();
        let cfg = format!(
            "{}ListenAddress {host}:{port}\nPidFile {}\nLogLevel DEBUG1\n",
            self.sshd_config,
            self.dir.join("probe.pid").display()
        );
        let mut child = sshd(&self.dir, "probe", &cfg)?;
        let log = self.dir.join("probe.log");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect((host, port)).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let ok = connect(host, port);
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).on(FileOp::Read, &log)?;
        match Negotiated::from_log(&text) {
            Some(n) if ok => Ok(n),
            _ => Err(TestbedError::NoKex(log)),
        }
    }

    /// CPU time the nodes' side has used so far: the sshds and every process they started
    /// (the per-connection sshds, the login shells, the scripts and the tools they ran), from
    /// their cgroup where the testbed could make one (as root). Elsewhere, an undercount: the
    /// listening sshds' `cutime` and `cstime` for finished connections, which misses the
    /// session processes of a login user other than root (OpenSSH does not wait for them: see
    /// docs/reconciler.md), and live ones' (kept connections) own.
    pub fn node_cpu(&self) -> Duration {
        if let Some(cpu) = self.cpu_group.as_ref().and_then(CpuGroup::usage) {
            return cpu;
        }
        // Every process's (ppid, own ticks, reaped children's ticks), from one pass over /proc.
        let mut procs: std::collections::HashMap<u32, (u32, u64, u64)> = Default::default();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // Fields after the command name, which is in parentheses and may hold spaces:
            // ppid, then utime, stime, cutime and cstime (fields 4 and 14 to 17 of the line).
            let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
                continue;
            };
            let f: Vec<u64> = rest
                .split_whitespace()
                .skip(1)
                .take(14)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if let (Some(&ppid), Some(&ut), Some(&st), Some(&cut), Some(&cst)) =
                (f.first(), f.get(10), f.get(11), f.get(12), f.get(13))
            {
                let ppid = u32::try_from(ppid).unwrap_or(0);
                procs.insert(pid, (ppid, ut + st, cut + cst));
            }
        }
        // The listeners' reaped children (finished connections), and every live descendant's
        // own and reaped time (kept connections, which have not ended): a live process's time
        // is in no ancestor's yet, so nothing is counted twice.
        let mut ticks = 0;
        let mut todo: Vec<u32> = self.sshds.iter().map(std::process::Child::id).collect();
        for pid in &todo {
            ticks += procs.get(pid).map_or(0, |p| p.2);
        }
        while let Some(parent) = todo.pop() {
            for (pid, (ppid, own, reaped)) in &procs {
                if *ppid == parent {
                    ticks += own + reaped;
                    todo.push(*pid);
                }
            }
        }
        // USER_HZ is 100 on every architecture Linux runs this on.
        Duration::from_millis(ticks * 10)
    }

    /// Whether [`Testbed::node_cpu`] counts from the sshds' cgroup (every process), not from
    /// their own accounting (an undercount).
    pub fn node_cpu_is_exact(&self) -> bool {
        self.cpu_group.is_some()
    }

    /// The folder the testbed lives in (node roots under `nodes/`).
    pub fn dir(&self) -> &Path {
        &self.dir
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
        .arg(&self.client_key);
        for o in &self.openssh_options {
            c.arg("-o").arg(o);
        }
        c.arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@{}", self.user, self.addrs[i]))
            .arg(remote);
        c
    }
}

/// Starts an sshd in the foreground from the config `cfg`, written to `dir/NAME.conf`, its
/// log in `dir/NAME.log`.
fn sshd(dir: &Path, name: &str, cfg: &str) -> Result<Child, TestbedError> {
    let path = dir.join(format!("{name}.conf"));
    write(&path, cfg)?;
    let log = dir.join(format!("{name}.log"));
    Command::new(sshd_path()?)
        .args(["-D", "-e", "-f"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).on(FileOp::Create, &log)?)
        .spawn()
        .map_err(TestbedError::SshdStart)
}

/// Creates [`LEAN_USER`] (home `/`, not made; shell `/bin/sh`) unless it exists, and moves its
/// home to `/` if it names anything else (an earlier gitvps gave it its testbed folder, gone
/// since: sshd then said "Could not chdir to home directory" at every login). Its password
/// field is `*` (no password, but not locked: sshd without PAM refuses a locked account even
/// for a key).
fn lean_user() -> Result<(), TestbedError> {
    // Its passwd entry, if it exists: one lookup says both whether it does and its home.
    let entry = Command::new("getent")
        .args(["passwd", LEAN_USER])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned());
    match entry {
        None => set_up(
            LEAN_USER,
            Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/bin/sh",
                    "--password",
                    "*",
                ])
                .args(["--home-dir", "/"])
                .arg(LEAN_USER),
        ),
        Some(entry) if entry.split(':').nth(5) != Some("/") => set_up(
            LEAN_USER,
            Command::new("usermod").args(["--home", "/", LEAN_USER]),
        ),
        Some(_) => Ok(()),
    }
}

/// Gives `user` the testbed folder (the node roots it writes as), but for the host key,
/// which sshd wants root's.
fn give(dir: &Path, user: &str) -> Result<(), TestbedError> {
    set_up(user, Command::new("chown").arg("-R").arg(user).arg(dir))?;
    for k in ["host_key", "host_key.pub"] {
        let _ = Command::new("chown").arg("root").arg(dir.join(k)).status();
    }
    Ok(())
}

/// Runs `cmd`, a step of setting `user` up; what it says on stderr is the error when it fails.
fn set_up(user: &str, cmd: &mut Command) -> Result<(), TestbedError> {
    let fail = |why: String| TestbedError::LeanUser {
        user: user.into(),
        why,
    };
    let out = cmd.output().map_err(|e| {
        fail(format!(
            "cannot run {}: {e}",
            cmd.get_program().to_string_lossy()
        ))
    })?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines OpenSSH 9.2's sshd logs at DEBUG1 for a key exchange.
    #[test]
    fn the_negotiated_algorithms_are_read_from_sshds_log() {
        let log = "debug1: SSH2_MSG_KEXINIT received [preauth]
debug1: kex: algorithm: curve25519-sha256 [preauth]
debug1: kex: host key algorithm: ssh-ed25519 [preauth]
debug1: kex: client->server cipher: chacha20-poly1305@openssh.com MAC: <implicit> compression: none [preauth]
debug1: kex: server->client cipher: chacha20-poly1305@openssh.com MAC: <implicit> compression: none [preauth]
";
        let n = Negotiated::from_log(log).unwrap();
        assert_eq!(
            n.openssh_options(),
            [
                "KexAlgorithms=curve25519-sha256",
                "HostKeyAlgorithms=ssh-ed25519",
                "Ciphers=chacha20-poly1305@openssh.com"
            ]
        );
        let ctr = log.replace(
            "chacha20-poly1305@openssh.com MAC: <implicit>",
            "aes128-ctr MAC: hmac-sha2-256-etm@openssh.com",
        );
        let n = Negotiated::from_log(&ctr).unwrap();
        assert_eq!(n.openssh_options()[3], "MACs=hmac-sha2-256-etm@openssh.com");
        assert_eq!(Negotiated::from_log("debug1: nothing"), None);
    }
}
