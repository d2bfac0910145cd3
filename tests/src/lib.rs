//! The end-to-end tests' one support kit: a real OpenSSH sshd on 127.0.0.1 with its own keys,
//! git and fleet repos, the `gitvps` binary, KVM nodes, an SMTP server. The tests themselves are
//! in `tests/`.
//!
//! Each test starts its own daemon; it is killed when the handle is dropped.
// Test code: its helpers are documented where they are not obvious, and may panic.
#![allow(
    missing_docs,
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A throwaway sshd and the client key it accepts.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub addr: String,
    pub user: String,
    /// `ssh-ed25519 AAAA...` of the daemon.
    pub host_key: String,
    /// Path of the client's private key.
    pub client_key: PathBuf,
    child: Child,
}

fn sshd_path() -> PathBuf {
    for p in ["/usr/sbin/sshd", "/usr/local/sbin/sshd"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("sshd not found: run ./scripts/test, which installs openssh-server");
}

pub fn keygen(path: &Path, comment: &str) -> String {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// A free TCP port on 127.0.0.1 (free when asked: bind it soon).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process (a server a test started) killed and reaped when dropped.
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl Sshd {
    /// Starts sshd on 127.0.0.1 (or another loopback address) with a fresh host key.
    pub fn start() -> Sshd {
        Sshd::start_on("127.0.0.1")
    }

    pub fn start_on(ip: &str) -> Sshd {
        Sshd::start_in(None, ip)
    }

    /// Starts sshd on `ip` inside the network namespace `netns` (`ip netns exec`), or in this
    /// one.
    pub fn start_in(netns: Option<&str>, ip: &str) -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let host = keygen(&d.join("host_key"), "host");
        let host_key = host.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let client_pub = keygen(&d.join("client_key"), "client");
        std::fs::write(d.join("authorized_keys"), format!("{client_pub}\n")).unwrap();
        std::fs::create_dir_all("/run/sshd").ok();
        for _ in 0..5 {
            let port = free_port();
            let cfg = d.join("sshd_config");
            std::fs::write(
                &cfg,
                format!(
                    "ListenAddress {ip}:{port}\nHostKey {hk}\nAuthorizedKeysFile {ak} .ssh/authorized_keys\nPidFile {pid}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nMaxStartups 200:30:400\nMaxSessions 100\nLogLevel ERROR\nAllowTcpForwarding yes\nSubsystem sftp internal-sftp\n",
                    hk = d.join("host_key").display(),
                    ak = d.join("authorized_keys").display(),
                    pid = d.join("sshd.pid").display(),
                ),
            )
            .unwrap();
            let mut cmd = match netns {
                Some(ns) => {
                    let mut c = Command::new("ip");
                    c.args(["netns", "exec", ns]).arg(sshd_path());
                    c
                }
                None => Command::new(sshd_path()),
            };
            let mut child = cmd
                .args(["-D", "-e", "-f"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
                .spawn()
                .expect("start sshd");
            if wait_ready(&mut child, ip, port) {
                return Sshd {
                    port,
                    addr: ip.to_owned(),
                    user: whoami(),
                    host_key,
                    client_key: d.join("client_key"),
                    child,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "sshd did not start: {}",
            std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default()
        );
    }

    /// Ends every open connection server-side (kills the daemon's per-connection processes),
    /// as an sshd restart or a NAT that forgot the flow would; the daemon keeps listening.
    pub fn drop_connections(&self) {
        let _ = Command::new("pkill")
            .args(["-P", &self.child.id().to_string()])
            .status();
    }

    /// Restarts the daemon as an operator would: every connection ends, the daemon exits, and
    /// a new one listens on the same address and port with the same keys and config (started
    /// in this network namespace: not for a daemon of [`Sshd::start_in`] with a namespace).
    pub fn restart(&mut self) {
        self.drop_connections();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        let mut child = Command::new(sshd_path())
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .expect("restart sshd");
        assert!(
            wait_ready(&mut child, &self.addr, self.port),
            "sshd did not come back on {}:{}: {}",
            self.addr,
            self.port,
            self.log()
        );
        self.child = child;
    }

    /// Lets the client key run nothing but `git-shell` (what a git host's account allows).
    pub fn git_shell_only(&self) {
        let ak = self.dir.path().join("authorized_keys");
        let key = std::fs::read_to_string(&ak).unwrap();
        std::fs::write(
            &ak,
            format!("command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\",no-port-forwarding,no-pty {key}"),
        )
        .unwrap();
    }

    /// The sshd log (for failed tests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

pub(crate) fn wait_ready(child: &mut Child, ip: &str, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if std::net::TcpStream::connect((ip, port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub mod fleet;
pub mod fuzz;
pub mod gitd;
pub mod githttp;
pub mod hookrepo;
pub mod knot;
pub mod kvm;
pub mod lambda;
pub mod media;
pub mod netns;
pub mod smtp;
pub mod stall;
pub mod stripe;
pub mod xen;

/// The project's top folder (the example fleet).
/// The `gitvps` command line built with the simulation kit: this package's `gitvps-e2e`, which
/// cargo builds beside the test binaries (`target/<profile>/`, one level above `deps/`).
pub fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut dir = exe.parent().expect("a folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("gitvps-e2e");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with cargo test",
        bin.display()
    );
    bin
}

/// Cargo's scratch folder for tests (`target/tmp`, what `CARGO_TARGET_TMPDIR` names for a test
/// target): kept between runs, so expensive fixtures are cached there.
pub fn target_tmp() -> PathBuf {
    let mut dir = bin();
    dir.pop();
    dir.pop();
    dir.join("tmp")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Fails a test that needs root (QEMU guests, bridges, system users, debootstrap) when run
/// without it. Such tests are `#[ignore = "needs root..."]`: `scripts/test` runs them as root.
pub fn require_root() {
    assert!(
        is_root(),
        "this test needs root: run it as root (scripts/test does, with --include-ignored)"
    );
}

/// The `GITVPS_TOTP_KEY` of [`Served`] (a test key: two-factor login can be turned on).
pub const TOTP_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// `gitvps serve` on 127.0.0.1 (a free port) in front of a bare clone of `work`, made in
/// `dir`, with the site built at `site` if given, sending its immediate mail (password resets)
/// to a Maildir in `dir`; killed when dropped.
pub struct Served {
    child: Child,
    /// `127.0.0.1:PORT`, as the server printed it.
    pub addr: String,
    /// The bare repo it serves (and commits to).
    pub bare: PathBuf,
    /// The Maildir its `GITVPS_SMTP_URL` names.
    pub maildir: PathBuf,
    /// Where its stderr goes ([`Served::on`]).
    log: Option<PathBuf>,
}

impl Served {
    pub fn start(work: &Path, dir: &Path, site: Option<&Path>) -> Served {
        Served::start_with(work, dir, site, &[])
    }

    /// [`Served::start`] with more flags of `gitvps serve` (`--monitor-db DIR`).
    pub fn start_with(
        work: &Path,
        dir: &Path,
        site: Option<&Path>,
        args: &[&std::ffi::OsStr],
    ) -> Served {
        Served::start_env(work, dir, site, args, &[])
    }

    /// [`Served::start_with`] with `env` on top of the usual variables.
    pub fn start_env(
        work: &Path,
        dir: &Path,
        site: Option<&Path>,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> Served {
        let bare = dir.join("fleet.git");
        let out = Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(work)
            .arg(&bare)
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut cmd = Served::command(bare.as_os_str(), dir);
        if let Some(site) = site {
            cmd.arg("--site").arg(site);
        }
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        let served = Served {
            child,
            addr: line.trim().rsplit("http://").next().unwrap().to_owned(),
            bare,
            maildir: dir.join("maildir"),
            log: None,
        };
        assert!(
            line.starts_with("gitvps serve: listening on http://127.0.0.1:"),
            "{line}"
        );
        served
    }

    /// One of several servers in front of `repo` (a path or URL; `bare` is that repo as a
    /// folder): its clone cached in `dir/<name>-cache`, its log in `dir/<name>.log`
    /// ([`Served::log`]), `env` on top of the usual variables.
    pub fn on(repo: &str, bare: &Path, dir: &Path, name: &str, env: &[(&str, &str)]) -> Served {
        let log = dir.join(format!("{name}.log"));
        let mut cmd = Served::command(std::ffi::OsStr::new(repo), dir);
        cmd.env("GITVPS_HOOKS_CACHE", dir.join(format!("{name}-cache")))
            .envs(env.iter().copied())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut served = Served {
            child: cmd.spawn().unwrap(),
            addr: String::new(),
            bare: bare.to_owned(),
            maildir: dir.join("maildir"),
            log: Some(log),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let text = served.log();
            if let Some(line) = text.lines().find(|l| l.contains("listening on http://")) {
                served.addr = line.trim().rsplit("http://").next().unwrap().to_owned();
                return served;
            }
            if let Ok(Some(status)) = served.child.try_wait() {
                panic!("gitvps serve {name} exited ({status}): {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gitvps serve {name} did not start: {}", served.log());
    }

    /// What the server printed so far (empty for [`Served::start`], whose output is a pipe).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|l| std::fs::read_to_string(l).ok())
            .unwrap_or_default()
    }

    /// The `gitvps serve` command of [`Served`], for a test that expects it to fail.
    pub fn command(repo: &std::ffi::OsStr, dir: &Path) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--repo")
            .arg(repo)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("GITVPS_TOKEN_SECRET", "test-token-secret-0123456789abcdef")
            .env("GITVPS_TOTP_KEY", TOTP_KEY)
            .env(
                "GITVPS_SMTP_URL",
                format!("maildir://{}", dir.join("maildir").display()),
            )
            .env_remove("GITVPS_SMTP_CA")
            .env_remove("STRIPE_SECRET_KEY")
            .env("HOME", dir);
        cmd
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to `addr` (`127.0.0.1:PORT`), with a bearer `token` if given;
/// returns the status code and the body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.split(' ').nth(1).unwrap().parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

pub fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs git in `dir`; fails the test on error and returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies a folder recursively.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dst)
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}

/// Commits everything in `work` as a fresh repo with `main`.
pub fn commit_all(work: &Path) {
    git(work, &["init", "-q", "-b", "main"]);
    commit_everything(work, "fleet");
}

/// Commits every change in the work tree `work` with `message`, as a test author.
pub fn commit_everything(work: &Path, message: &str) {
    git(work, &["add", "-A"]);
    git(
        work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.net",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
}

/// `DIR/work`: the example fleet (its files plus the `dirs` folders) committed on `main`.
pub fn fleet_repo(dir: &Path, dirs: &[&str]) -> PathBuf {
    let work = dir.join("work");
    for d in dirs {
        copy_tree(&top().join(d), &work.join(d));
    }
    for f in ["products.toml", "pools.toml", "gitvps.toml"] {
        std::fs::copy(top().join(f), work.join(f)).unwrap();
    }
    commit_all(&work);
    work
}

/// `DIR/remote.git`, a bare remote holding the example fleet (with `inventory/`), and
/// `DIR/clone`, a clone tracking it: what the jobs (`billing run`, `announce`, ...) run in.
pub fn fleet_remote_and_clone(dir: &Path) -> PathBuf {
    let seed = fleet_repo(dir, &["inventory"]);
    let seed = seed.to_string_lossy().into_owned();
    git(dir, &["clone", "-q", "--bare", &seed, "remote.git"]);
    git(dir, &["clone", "-q", "remote.git", "clone"]);
    dir.join("clone")
}

/// A finished command's exit code, stdout and stderr, for an assertion's message.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The Debian mirror this machine's apt uses, read at run time (never written in the repo).
pub fn mirror() -> String {
    executor::inputs::apt_mirror()
        .expect("no Debian mirror in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list")
}

pub use sim::openssh_client as ssh_client;

/// The real system plays a node's OS for the console: the account and sudo rule that apply
/// wrote under the node `root` for `vps` are mirrored into /etc, and removed when dropped.
pub struct ConsoleAccount {
    user: String,
    sudoers: PathBuf,
}

impl ConsoleAccount {
    /// Creates the account (home under the node root) and copies its sudo rule.
    pub fn mirror(root: &Path, vps: &str) -> ConsoleAccount {
        let home = root.join(format!("var/lib/gitvps/console/{vps}"));
        let _ = Command::new("userdel").arg(vps).output();
        let _ = Command::new("useradd")
            .arg("--home-dir")
            .arg(&home)
            .args(["--no-create-home", "--shell", "/bin/sh", vps])
            .output();
        // The test sshds run without PAM, where a locked password ('!') refuses even keys.
        let _ = Command::new("usermod").args(["-p", "*", vps]).output();
        let account = ConsoleAccount {
            user: vps.into(),
            sudoers: format!("/etc/sudoers.d/gitvps-console-{vps}").into(),
        };
        std::fs::copy(
            root.join(format!("etc/sudoers.d/gitvps-console-{vps}")),
            &account.sudoers,
        )
        .unwrap();
        account
    }
}

impl Drop for ConsoleAccount {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = Command::new("userdel").arg(&self.user).output();
    }
}

/// Runs `ssh` (a console login: `ssh -tt <vps>@node`), presses Enter until the output shows
/// `login:` or `timeout` passes, then ends it; returns everything it printed.
pub fn console_until_login(mut ssh: Command, timeout: std::time::Duration) -> String {
    use std::io::{Read, Write};
    let mut child = ssh
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains("login:")
    {
        let _ = stdin.write_all(b"\r");
        let _ = stdin.flush();
        while let Ok(chunk) = rx.recv_timeout(std::time::Duration::from_millis(700)) {
            seen.extend(chunk);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&seen).into_owned()
}
