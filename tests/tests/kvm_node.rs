#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The node-side KVM library (`node/kvm.sh`) against real QEMU under TCG and real socat/debugfs:
//! each check runs `sh -c` with the library and one call, in a temporary node root.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

const LIB: &str = include_str!("../../reconciler/planner/node/kvm.sh");

/// What one `sh -c` printed and returned.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the library followed by `call` with `sh -c`, with extra environment variables.
fn sh_env(call: &str, env: &[(&str, &str)]) -> Out {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("set -u\n{LIB}\n{call}"))
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn sh(call: &str) -> Out {
    sh_env(call, &[])
}

/// A single-quoted sh word.
fn q(s: &Path) -> String {
    format!("'{}'", s.display().to_string().replace('\'', r"'\''"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// QEMU, socat and debugfs must be here (the test script installs them).
fn require_tools() {
    for (tool, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("socat", "socat"),
        ("debugfs", "e2fsprogs"),
        ("mke2fs", "e2fsprogs"),
    ] {
        assert!(
            have(tool),
            "{tool} is missing: apt-get install -y {pkg} (these tests run real QEMU under TCG)"
        );
    }
}

/// A temporary node root; on drop, kills every process whose command line names it (the QEMUs
/// and helpers a failed test would leave behind).
struct Node {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Node {
    fn new() -> Self {
        require_tools();
        Self {
            dir: tempfile::Builder::new()
                .prefix("kvm node")
                .tempdir()
                .unwrap(),
            children: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run_dir(&self, vps: &str) -> PathBuf {
        self.path(&format!("var/lib/gitvps/kvm/{vps}"))
    }

    fn log(&self, vps: &str) -> PathBuf {
        self.path(&format!("var/log/gitvps/console/{vps}.log"))
    }

    fn args_path(&self, vps: &str) -> PathBuf {
        self.path(&format!("etc/gitvps/kvm/{vps}.args"))
    }

    /// A raw disk image of `mib` MiB.
    fn disk(&self, name: &str, mib: u64) -> PathBuf {
        let p = self.path(name);
        let f = fs::File::create(&p).unwrap();
        f.set_len(mib << 20).unwrap();
        p
    }

    /// Writes the arguments file of a guest with no OS (it sits in the BIOS: no bootable disk,
    /// and it ignores system_powerdown), as gitvps writes it: comments and directives first.
    fn args(&self, vps: &str, disk: &Path, extra: &[&str]) -> PathBuf {
        let run = self.run_dir(vps);
        let run = run.display();
        let log = self.log(vps);
        let mut lines = vec![
            format!("# {vps}: written by gitvps"),
            "#gitvps cpu-weight=100 cpu-cap=0".into(),
            "-name".into(),
            format!("{vps},process=gitvps-{vps}"),
            "-no-user-config".into(),
            "-nodefaults".into(),
            "-display".into(),
            "none".into(),
            "-daemonize".into(),
            "-pidfile".into(),
            format!("{run}/qemu.pid"),
            "-qmp".into(),
            format!("unix:{run}/qmp.sock,server=on,wait=off"),
            "-chardev".into(),
            format!(
                "socket,id=ser0,path={run}/console.sock,server=on,wait=off,logfile={},logappend=off",
                log.display()
            ),
            "-serial".into(),
            "chardev:ser0".into(),
            "-accel".into(),
            "tcg".into(),
            "-machine".into(),
            "q35".into(),
            "-m".into(),
            "64".into(),
            "-smp".into(),
            "1".into(),
            "-drive".into(),
            format!(
                "file={},if=none,id=d0,format=raw",
                disk.display().to_string().replace(',', ",,")
            ),
            "-device".into(),
            format!("nvme,drive=d0,serial={vps}"),
        ];
        lines.extend(extra.iter().map(|s| (*s).to_owned()));
        let p = self.args_path(vps);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, lines.join("\n") + "\n").unwrap();
        p
    }

    /// The arguments of a guest booting its kernel and initrd from its run folder, as gitvps
    /// writes them.
    fn boot_args(&self, vps: &str, disk: &Path) -> PathBuf {
        let run = self.run_dir(vps);
        let k = format!("{}/vmlinuz", run.display());
        let i = format!("{}/initrd.img", run.display());
        self.args(
            vps,
            disk,
            &[
                "-kernel",
                &k,
                "-initrd",
                &i,
                "-append",
                "root=/dev/nvme0n1 ro",
            ],
        )
    }

    /// [`Node::boot_args`] for a guest on the qcow2 image `img`.
    fn qcow2_boot_args(&self, vps: &str, img: &Path) -> PathBuf {
        let args = self.boot_args(vps, img);
        let text = fs::read_to_string(&args).unwrap();
        fs::write(&args, text.replace(",format=raw", ",format=qcow2")).unwrap();
        args
    }

    fn start(&self, vps: &str, args: &Path) -> Out {
        sh(&format!(
            "kvm_start {vps} {} {} {}",
            q(args),
            q(&self.run_dir(vps)),
            q(&self.log(vps))
        ))
    }

    fn alive(&self, vps: &str) -> bool {
        sh(&format!("kvm_alive {}", q(&self.run_dir(vps)))).code == 0
    }

    fn pid(&self, vps: &str) -> u32 {
        fs::read_to_string(self.run_dir(vps).join("qemu.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let me = self.dir.path().as_os_str().as_encoded_bytes().to_vec();
        for e in fs::read_dir("/proc").unwrap().flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            if cmd.windows(me.len()).any(|w| w == me.as_slice()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// kvm_observe's fragment, wrapped into a JSON document.
fn observe(node: &Node, env: &[(&str, &str)]) -> serde_json::Value {
    let out = sh_env(&format!("kvm_observe {}", q(node.dir.path())), env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.ends_with(','),
        "the fragment ends with a comma: {}",
        out.stdout
    );
    serde_json::from_str(&format!("{{{}\"end\":true}}", out.stdout))
        .map_err(|e| format!("observe output is not JSON ({e}): {}", out.stdout))
        .unwrap()
}

#[test]
fn a_guest_starts_answers_is_observed_resets_and_stops() {
    let node = Node::new();
    let disk = node.disk("disk one.img", 16);
    let args = node.args("vm1", &disk, &[]);
    let run = node.run_dir("vm1");

    let t = Instant::now();
    let out = node.start("vm1", &args);
    assert_eq!(out.code, 0, "start: {}", out.stderr);
    let start_time = t.elapsed();
    assert!(
        start_time < Duration::from_secs(20),
        "start took {start_time:?}"
    );
    assert!(node.alive("vm1"));
    assert_eq!(
        fs::read(run.join("cmdline")).unwrap(),
        fs::read(&args).unwrap()
    );
    let log = fs::metadata(node.log("vm1")).unwrap();
    assert_eq!(
        log.permissions().mode() & 0o777,
        0o600,
        "the console log is private"
    );
    let pid = node.pid("vm1");

    // QMP: a return line, an error reply, timings.
    let t = Instant::now();
    let out = sh(&format!(
        "kvm_qmp {} '{{\"execute\":\"query-status\"}}'",
        q(&run.join("qmp.sock"))
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(t.elapsed() < Duration::from_secs(5));
    let ret: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(ret["return"]["status"], "running", "{}", out.stdout);
    assert_eq!(out.stdout.lines().count(), 1);
    let out = sh(&format!(
        "kvm_qmp {} '{{\"execute\":\"no-such-command\"}}'",
        q(&run.join("qmp.sock"))
    ));
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.starts_with("gitvps: "), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("The command no-such-command has not been found"),
        "{}",
        out.stderr
    );

    // Its disk is in use, by its path or by a symlink to it; a free disk is not.
    let link = node.path("disk-link");
    std::os::unix::fs::symlink(&disk, &link).unwrap();
    for d in [&disk, &link] {
        let out = sh(&format!("disk_in_use {}", q(d)));
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.stdout, format!("{pid} (gitvps-vm1)\n"));
    }
    let free = node.disk("free.img", 1);
    let out = sh(&format!("disk_in_use {}", q(&free)));
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));

    // A second start is refused; so is another guest on the same disk.
    let out = node.start("vm1", &args);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("gitvps: vm1: already running (pid {pid})")),
        "{}",
        out.stderr
    );
    let args2 = node.args("vm2", &disk, &[]);
    let out = node.start("vm2", &args2);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!(
            "gitvps: vm2: disk {} is in use by {pid} (gitvps-vm1)",
            disk.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!node.alive("vm2"));

    // Observe: the running guest, with its size and the hash of its arguments.
    let obs = observe(&node, &[]);
    let guests = obs["guests"].as_array().unwrap();
    assert_eq!(guests.len(), 1, "{obs}");
    let g = &guests[0];
    assert_eq!(g["name"], "vm1");
    assert_eq!(g["pid"], u64::from(pid));
    assert_eq!(g["status"], "running");
    assert_eq!(g["mem"], "64");
    assert_eq!(g["vcpus"], "1");
    assert_eq!(g["cmdline_sha256"], sha256_hex(&fs::read(&args).unwrap()));
    assert!(
        obs["qemu"]
            .as_str()
            .unwrap()
            .ends_with("/qemu-system-x86_64"),
        "{obs}"
    );
    assert!(obs["kvm"]["usable"].is_boolean(), "{obs}");
    assert!(obs["kvm"]["error"].is_string(), "{obs}");

    // Reset: QEMU stays, the guest runs again.
    let out = sh(&format!("kvm_reset vm1 {}", q(&run)));
    assert_eq!(out.code, 0, "reset: {}", out.stderr);
    assert_eq!(node.pid("vm1"), pid);

    // Stop: the BIOS ignores system_powerdown, so after 2 s it is `quit`.
    let t = Instant::now();
    let out = sh(&format!("kvm_stop vm1 {} 2", q(&run)));
    let stop_time = t.elapsed();
    assert_eq!(out.code, 0, "stop: {}", out.stderr);
    assert!(
        out.stderr
            .contains("gitvps: vm1: the guest did not power off within 2s; quitting QEMU"),
        "{}",
        out.stderr
    );
    assert!(
        stop_time >= Duration::from_secs(2) && stop_time < Duration::from_secs(20),
        "stop took {stop_time:?}"
    );
    assert!(!node.alive("vm1"));
    for f in ["qemu.pid", "qmp.sock", "console.sock"] {
        assert!(!run.join(f).exists(), "{f} is left");
    }
    assert!(observe(&node, &[])["guests"].as_array().unwrap().is_empty());
    // Stopping or destroying a stopped guest does nothing.
    assert_eq!(sh(&format!("kvm_stop vm1 {} 2", q(&run))).code, 0);
    assert_eq!(sh(&format!("kvm_destroy vm1 {}", q(&run))).code, 0);
    let out = sh(&format!("kvm_reset vm1 {}", q(&run)));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("gitvps: vm1: not running"),
        "{}",
        out.stderr
    );

    // The disk is free again; the guest starts again. What the daemonized QEMU says later
    // lands in RUN/qemu.log.
    let out = sh(&format!("disk_in_use {}", q(&disk)));
    assert_eq!((out.code, out.stdout.as_str()), (1, ""));
    let out = node.start("vm1", &args);
    assert_eq!(out.code, 0, "second start: {}", out.stderr);
    let pid = node.pid("vm1");
    Command::new("kill").arg(pid.to_string()).status().unwrap();
    let out = sh(&format!(
        "_kvm_gone {pid} {} 10 && cat {}",
        q(&run),
        q(&run.join("qemu.log"))
    ));
    assert_eq!(out.code, 0, "QEMU did not end on SIGTERM");
    assert!(
        out.stdout.contains("terminating on signal 15"),
        "qemu.log: {}",
        out.stdout
    );
    assert!(!node.alive("vm1"));

    // A third start; destroy ends it at once.
    let out = node.start("vm1", &args);
    assert_eq!(out.code, 0, "third start: {}", out.stderr);
    let t = Instant::now();
    let out = sh(&format!("kvm_destroy vm1 {}", q(&run)));
    assert_eq!(out.code, 0, "destroy: {}", out.stderr);
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!node.alive("vm1"));
    assert!(!run.join("qemu.pid").exists());
    println!("start {start_time:?}, stop with 2 s timeout {stop_time:?}");
}

#[test]
fn qemu_errors_are_shown_and_the_arguments_checked() {
    let node = Node::new();
    let disk = node.disk("d.img", 1);
    // QEMU's own message, from before it daemonizes.
    let mut args = node.args("bad", &disk, &[]);
    let text = fs::read_to_string(&args)
        .unwrap()
        .replace("-m\n64\n", "-m\n64x\n");
    fs::write(&args, text).unwrap();
    let out = node.start("bad", &args);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("gitvps: bad: qemu-system-x86_64 failed to start"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("gitvps: bad: qemu-system-x86_64: -m 64x: Parameter 'size' expects"),
        "{}",
        out.stderr
    );
    assert!(!node.alive("bad"));

    // A missing disk, arguments that would not daemonize.
    args = node.args("nodisk", &node.path("missing.img"), &[]);
    let out = node.start("nodisk", &args);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("gitvps: nodisk: disk "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("missing.img does not exist"),
        "{}",
        out.stderr
    );
    args = node.args("fg", &disk, &[]);
    let text = fs::read_to_string(&args)
        .unwrap()
        .replace("-daemonize\n", "");
    fs::write(&args, text).unwrap();
    let out = node.start("fg", &args);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("lacks -daemonize"), "{}", out.stderr);
}

#[test]
fn missing_tools_exit_69_with_a_hint() {
    let node = Node::new();
    let disk = node.disk("d.img", 1);
    let args = node.args("vm", &disk, &[]);
    let run = node.run_dir("vm");
    let env = [("PATH", "/nonexistent")];
    let out = sh_env(
        &format!(
            "kvm_start vm {} {} {}",
            q(&args),
            q(&run),
            q(&node.log("vm"))
        ),
        &env,
    );
    assert_eq!(out.code, 69);
    assert!(
        out.stderr.contains("gitvps: vm: qemu-system-x86_64 is not installed on this node (apt-get install qemu-system-x86)"),
        "{}",
        out.stderr
    );
    let out = sh_env(
        &format!("kvm_qmp {} '{{}}'", q(&run.join("qmp.sock"))),
        &env,
    );
    assert_eq!(out.code, 69);
    assert!(
        out.stderr
            .contains("gitvps: socat is not installed on this node (apt-get install socat)"),
        "{}",
        out.stderr
    );
    let out = sh_env(&format!("kvm_kernel {} {}", q(&disk), q(&run)), &env);
    assert_eq!(out.code, 69);
    assert!(
        out.stderr
            .contains("gitvps: debugfs is not installed on this node (apt-get install e2fsprogs)"),
        "{}",
        out.stderr
    );
    // Observe still answers: no QEMU, KVM not usable.
    let out = sh_env(&format!("kvm_observe {}", q(node.dir.path())), &env);
    assert_eq!(out.code, 0);
    assert_eq!(
        out.stdout,
        r#""guests":[],"qemu":"","kvm":{"usable":false,"error":"qemu-system-x86_64 is not installed"},"#
    );
}

/// Accepts connections on a unix socket and never writes.
fn silent_listener(path: &Path) {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            held.push(c);
        }
    });
}

#[test]
fn qmp_sockets_that_do_not_answer_give_4_in_time() {
    let node = Node::new();
    let env = [("KVM_QMP_TIMEOUT", "1")];
    let query = "'{\"execute\":\"query-status\"}'";

    // A server that accepts and says nothing.
    let mute = node.path("mute.sock");
    silent_listener(&mute);
    let t = Instant::now();
    let out = sh_env(&format!("kvm_qmp {} {query}", q(&mute)), &env);
    let took = t.elapsed();
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(
        out.stderr.contains("does not answer within 1s"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");

    // A stale socket file: its server is gone.
    let stale = node.path("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let t = Instant::now();
    let out = sh_env(&format!("kvm_qmp {} {query}", q(&stale)), &env);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(out.stderr.contains("Connection refused"), "{}", out.stderr);

    // No socket at all.
    let out = sh_env(
        &format!("kvm_qmp {} {query}", q(&node.path("none.sock"))),
        &env,
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("no such socket"), "{}", out.stderr);
}

#[test]
fn an_unresponsive_guest_is_observed_as_such_and_still_stopped() {
    let mut node = Node::new();
    let env = [("KVM_QMP_TIMEOUT", "1")];
    // A stand-in for a wedged QEMU: a process whose command line names the pidfile, and a QMP
    // socket that never answers.
    let run = node.run_dir("stuck");
    fs::create_dir_all(&run).unwrap();
    let pidfile = run.join("qemu.pid");
    let spawn = || {
        Command::new("sh")
            .args([
                "-c",
                "while :; do sleep 1; done",
                &pidfile.display().to_string(),
            ])
            .spawn()
            .unwrap()
    };
    let child = spawn();
    fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
    node.children.push(child);
    silent_listener(&run.join("qmp.sock"));
    fs::write(run.join("cmdline"), "-m\n512\n-smp\n2\n").unwrap();
    assert!(node.alive("stuck"));

    // Another one without its cmdline copy.
    let other = node.run_dir("nocmd");
    fs::create_dir_all(&other).unwrap();
    let child = Command::new("sh")
        .args([
            "-c",
            "while :; do sleep 1; done",
            &other.join("qemu.pid").display().to_string(),
        ])
        .spawn()
        .unwrap();
    fs::write(other.join("qemu.pid"), format!("{}\n", child.id())).unwrap();
    node.children.push(child);
    // Seen once in a loaded run: the new process not yet readable as alive; give it a moment.
    let pid = node.pid("nocmd");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !node.alive("nocmd") {
        assert!(
            std::time::Instant::now() < deadline,
            "pid {pid}: cmdline {:?}, {:?}",
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).into_owned()),
            fs::read_to_string(format!("/proc/{pid}/status")).map(|s| s
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("|"))
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        node.alive("nocmd"),
        "pid {pid}: cmdline {:?}, {:?}",
        fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).into_owned()),
        fs::read_to_string(format!("/proc/{pid}/status")).map(|s| s
            .lines()
            .take(3)
            .collect::<Vec<_>>()
            .join("|"))
    );

    let obs = observe(&node, &env);
    let guests = obs["guests"].as_array().unwrap();
    assert_eq!(guests.len(), 2, "{obs}");
    let g = guests.iter().find(|g| g["name"] == "stuck").unwrap();
    assert_eq!(g["status"], "unresponsive");
    assert_eq!(
        (g["mem"].as_str(), g["vcpus"].as_str()),
        (Some("512"), Some("2"))
    );
    assert_eq!(g["cmdline_sha256"], sha256_hex(b"-m\n512\n-smp\n2\n"));
    let g = guests.iter().find(|g| g["name"] == "nocmd").unwrap();
    assert_eq!(g["status"], "unresponsive");
    assert_eq!(
        (g["mem"].as_str(), g["cmdline_sha256"].as_str()),
        (Some(""), Some(""))
    );

    let out = sh_env(&format!("kvm_reset stuck {}", q(&run)), &env);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr.contains("gitvps: stuck: reset failed"),
        "{}",
        out.stderr
    );

    let t = Instant::now();
    let out = sh_env(&format!("kvm_stop stuck {} 30", q(&run)), &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("gitvps: stuck: QMP did not take system_powerdown; terminating QEMU"),
        "{}",
        out.stderr
    );
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "the stop timeout is not waited for: {:?}",
        t.elapsed()
    );
    assert!(!node.alive("stuck"));
    assert!(!pidfile.exists());

    // Destroy when QMP does not answer: SIGKILL.
    let child = spawn();
    fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
    node.children.push(child);
    silent_listener(&run.join("qmp.sock"));
    let out = sh_env(&format!("kvm_destroy stuck {}", q(&run)), &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!node.alive("stuck"));
}

#[test]
fn stale_pidfiles_are_not_alive() {
    let node = Node::new();
    let run = node.run_dir("old");
    fs::create_dir_all(&run).unwrap();
    let pidfile = run.join("qemu.pid");
    // A pid that is gone, a live process that is not this guest's QEMU, garbage, nothing.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    for content in [
        format!("{}\n", gone.id()),
        format!("{}\n", std::process::id()),
        "x1\n".into(),
        String::new(),
    ] {
        fs::write(&pidfile, &content).unwrap();
        assert!(!node.alive("old"), "alive with pidfile {content:?}");
    }
    // Stop on a stale pidfile: nothing to do, the leftovers go.
    fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
    let out = sh(&format!("kvm_stop old {} 5", q(&run)));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!pidfile.exists());
    assert!(observe(&node, &[])["guests"].as_array().unwrap().is_empty());
}

/// An ext4 image of `files` (path, content) and `links` (path, target), made by mke2fs -d.
fn ext4(node: &Node, name: &str, files: &[(&str, &[u8])], links: &[(&str, &str)]) -> PathBuf {
    let tree = node.path(&format!("{name}.d"));
    fs::create_dir_all(&tree).unwrap();
    for (p, content) in files {
        let p = tree.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    for (p, target) in links {
        let p = tree.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
    let img = node.path(name);
    let out = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&tree)
        .arg(&img)
        .arg("64M")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

fn kernel(img: &Path, run: &Path) -> Out {
    sh(&format!("kvm_kernel {} {}", q(img), q(run)))
}

fn read(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    fs::File::open(p)
        .map_err(|e| format!("{}: {e}", p.display()))
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

#[test]
fn the_guest_kernel_comes_from_its_disk() {
    let node = Node::new();
    let v = "6.1.0-x-cloud-amd64";
    let k = format!("boot/vmlinuz-{v}");
    let i = format!("boot/initrd.img-{v}");

    // Debian's layout: relative links at the root.
    let img = ext4(
        &node,
        "debian.img",
        &[
            (&k, b"KERNEL-A"),
            (&i, b"INITRD-A"),
            ("boot/vmlinuz-5.10.0-1-amd64", b"OLD"),
        ],
        &[("vmlinuz", &k), ("initrd.img", &i)],
    );
    let run = node.path("run-debian");
    let out = kernel(&img, &run);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read(&run.join("vmlinuz")), b"KERNEL-A");
    assert_eq!(read(&run.join("initrd.img")), b"INITRD-A");

    // Only versioned kernels in /boot, no initrd: the newest version, an empty initrd.
    let img = ext4(
        &node,
        "boot-only.img",
        &[
            ("boot/vmlinuz-6.1.0-9-cloud-amd64", b"NINE"),
            ("boot/vmlinuz-6.1.0-18-cloud-amd64", b"EIGHTEEN"),
            ("boot/config-6.1.0-18-cloud-amd64", b"cfg"),
        ],
        &[],
    );
    let run = node.path("run-boot");
    let out = kernel(&img, &run);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read(&run.join("vmlinuz")), b"EIGHTEEN");
    assert_eq!(read(&run.join("initrd.img")), b"");

    // An absolute link, and a link too long to be kept in the inode (a "slow" symlink).
    let long = format!("boot/../boot/./{}/../vmlinuz-{v}", "d".repeat(70));
    let img = ext4(
        &node,
        "links.img",
        &[
            (&k, b"KERNEL-B"),
            (&format!("boot/{}/x", "d".repeat(70)), b""),
        ],
        &[("vmlinuz", &long), ("boot/vmlinuz", &format!("/{k}"))],
    );
    let run = node.path("run-links");
    let out = kernel(&img, &run);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read(&run.join("vmlinuz")), b"KERNEL-B");
    assert_eq!(read(&run.join("initrd.img")), b"");

    // No kernel, a link to nowhere, a hostile link, a disk without a filesystem.
    let img = ext4(
        &node,
        "empty.img",
        &[("etc/hostname", b"x")],
        &[("vmlinuz", "boot/nothing")],
    );
    let out = kernel(&img, &node.path("run-empty"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("gitvps: disk {}: no guest kernel", img.display())),
        "{}",
        out.stderr
    );
    let img = ext4(&node, "evil.img", &[], &[("vmlinuz", "boot/x\" /tmp/evil")]);
    let out = kernel(&img, &node.path("run-evil"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("unexpected characters"),
        "{}",
        out.stderr
    );
    let raw = node.disk("raw.img", 1);
    let out = kernel(&raw, &node.path("run-raw"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no ext2/3/4 filesystem"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Bad magic number"), "{}", out.stderr);
}

#[test]
fn start_takes_the_kernel_from_the_disk_when_the_arguments_boot_it() {
    let node = Node::new();
    // A kernel QEMU cannot load: extraction happens, then QEMU's own error is shown.
    let img = ext4(
        &node,
        "g.img",
        &[("boot/vmlinuz-6.1.0-1-amd64", b"not a kernel")],
        &[],
    );
    let run = node.run_dir("g");
    let args = node.boot_args("g", &img);
    let out = node.start("g", &args);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(read(&run.join("vmlinuz")), b"not a kernel");
    assert_eq!(read(&run.join("initrd.img")), b"");
    assert!(
        out.stderr
            .contains("gitvps: g: qemu-system-x86_64 failed to start"),
        "{}",
        out.stderr
    );
    // QEMU's own words (`qemu: invalid kernel header` or the like) follow.
    assert!(
        out.stderr
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("gitvps: g: qemu")),
        "{}",
        out.stderr
    );

    // No kernel on the disk: start fails before QEMU, naming the disk.
    let img = node.disk("blank.img", 1);
    let args = node.args(
        "h",
        &img,
        &[
            "-kernel",
            &format!("{}/vmlinuz", node.run_dir("h").display()),
        ],
    );
    let out = node.start("h", &args);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("gitvps: h: cannot take the guest kernel from disk"),
        "{}",
        out.stderr
    );
    assert!(
        !node.run_dir("h").join("qemu.log").exists(),
        "QEMU did not run"
    );
}

/// The virtual size of a qcow2 image, as `qemu-img info` says.
fn virtual_size(img: &Path) -> u64 {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(img)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img info: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "qcow2", "{v}");
    v["virtual-size"].as_u64().unwrap()
}

/// A qcow2 image of `size` (`20G`, `64M`).
fn qemu_img_create(path: &Path, size: &str) {
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu-img create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The raw image `raw` converted into the qcow2 image `image`.
fn raw_to_qcow2(raw: &Path, image: &Path) {
    let out = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(image)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn observe_reports_the_virtual_size_of_qcow2_images() {
    use model::values::{Hypervisor, ImageFormat};
    use planner::desired::Store;

    let node = Node::new();
    let disks = node.path("var/lib/gitvps/disks");
    fs::create_dir_all(&disks).unwrap();
    let big = disks.join("big.qcow2");
    qemu_img_create(&big, "20G");
    fs::File::create(disks.join("raw.img"))
        .unwrap()
        .set_len(3 << 20)
        .unwrap();
    fs::write(disks.join("junk.qcow2"), b"not a qcow2 image").unwrap();
    let store = Store::File {
        dir: format!("{}/var/lib/gitvps/disks", node.dir.path().display()),
        format: ImageFormat::Qcow2,
    };
    let root = node.dir.path().display().to_string();
    let cmd = planner::driver::observe_command_for(&root, &store, Hypervisor::Kvm, false, 1);
    let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = planner::observe::parse("kvm1", &out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
        .unwrap();
    assert_eq!(s.disks["big"], 20 << 30, "the virtual size, not the file's");
    assert!(fs::metadata(&big).unwrap().len() < 1 << 20);
    assert_eq!(s.image_formats["big"], ["qcow2"]);
    assert_eq!(s.disks["raw"], 3 << 20);
    assert_eq!(s.image_formats["raw"], ["raw"]);
    assert_eq!(s.disks["junk"], 17);
    assert_eq!(s.image_formats["junk"], ["unknown"]);
}

/// A KVM node spec of `root` storing qcow2 images in `root/var/lib/gitvps/disks`.
fn qcow2_node(root: &Path) -> planner::desired::NodeSpec {
    planner::desired::NodeSpec {
        node: "kvm1".parse().unwrap(),
        address: "127.0.0.1:22".into(),
        root: root.display().to_string(),
        sudo: false,
        hypervisor: model::values::Hypervisor::Kvm,
        accel: Some(model::values::Accel::Tcg),
        boot_timeout_secs: 0,
        vps_at_once: 1,
        store: planner::desired::Store::File {
            dir: format!("{}/var/lib/gitvps/disks", root.display()),
            format: model::values::ImageFormat::Qcow2,
        },
        vps: std::collections::BTreeMap::new(),
    }
}

/// Runs `ops` on VPS `vps` of `spec` with the real steps script; returns its output.
fn run_steps(spec: &planner::desired::NodeSpec, vps: &str, ops: Vec<planner::plan::Op>) -> Out {
    let disk = format!("{}/var/lib/gitvps/disks/{vps}.qcow2", spec.root);
    let steps: Vec<planner::plan::Step> = ops
        .into_iter()
        .map(|op| planner::plan::Step {
            vps: vps.parse().unwrap(),
            op,
            record: None,
            target: planner::plan::StepPaths {
                disk: disk.clone(),
                config: format!("{}/etc/gitvps/kvm/{vps}.args", spec.root),
            },
        })
        .collect();
    let script = planner::driver::steps_script(spec, &steps);
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .arg("gitvps-steps")
        .arg(&spec.root)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fake OS install: a guest tree with a kernel reached through an absolute link (which must
/// be followed inside the guest, never on this machine) and an initrd.
fn fake_install(root: &Path, vps: &str) -> Box<planner::desired::InstallSpec> {
    let ship = format!("{}/var/lib/gitvps/bootstraps/{vps}", root.display());
    let build = format!("{}/var/lib/gitvps/build/{vps}", root.display());
    let script = "set -eu
mkdir -p \"$TARGET/boot\" \"$TARGET/etc\"
printf KERNEL-Q >\"$TARGET/boot/vmlinuz-6.1.0-1-cloud-amd64\"
printf INITRD-Q >\"$TARGET/boot/initrd.img-6.1.0-1-cloud-amd64\"
ln -s /boot/vmlinuz-6.1.0-1-cloud-amd64 \"$TARGET/vmlinuz\"
echo guest >\"$TARGET/etc/hostname\"
";
    Box::new(planner::desired::InstallSpec {
        os: "fake".into(),
        appliance: None,
        files: vec![("bootstraps/lib/install".into(), script.into())],
        exports: format!("export TARGET='{build}'\nexport GITVPS_BOOTSTRAPS='{ship}/bootstraps'\n"),
        ship_dir: ship,
        build_dir: build,
        cloud: None,
    })
}

/// The files of the disk folder, sorted.
fn disk_files(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("var/lib/gitvps/disks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// `debugfs` on a raw copy of qcow2 image `img`: a file's content and the filesystem's size.
fn inside_qcow2(node: &Node, img: &Path, file: &str) -> (String, u64) {
    let raw = node.path("inspect.raw");
    let out = Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(img)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(out.status.success());
    let cat = Command::new("debugfs")
        .args(["-R", &format!("cat {file}")])
        .arg(&raw)
        .output()
        .unwrap();
    let head = Command::new("dumpe2fs")
        .arg("-h")
        .arg(&raw)
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).into_owned();
    let field = |k: &str| -> u64 {
        head.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().parse().unwrap())
            .expect(k)
    };
    let size = field("Block count:") * field("Block size:");
    fs::remove_file(&raw).unwrap();
    (String::from_utf8_lossy(&cat.stdout).into_owned(), size)
}

#[test]
fn qcow2_disks_are_created_installed_grown_and_checked_beside_the_image() {
    use planner::plan::Op;

    let node = Node::new();
    let root = node.dir.path();
    let spec = qcow2_node(root);
    let img = node.path("var/lib/gitvps/disks/q1.qcow2");
    let run = node.run_dir("q1");

    // Create and install: a qcow2 image of the plan's size holding the OS, the kernel stored.
    let out = run_steps(
        &spec,
        "q1",
        vec![
            Op::CreateDisk { bytes: 64 << 20 },
            Op::Install {
                spec: fake_install(root, "q1"),
            },
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("@@ok 1"), "{}", out.stdout);
    assert_eq!(virtual_size(&img), 64 << 20);
    assert_eq!(read(&run.join("boot-vmlinuz")), b"KERNEL-Q");
    assert_eq!(read(&run.join("boot-initrd.img")), b"INITRD-Q");
    assert_eq!(disk_files(root), ["q1.qcow2"], "no temporary stays");
    assert!(!node.path("var/lib/gitvps/build/q1").exists());
    assert!(!run.join(".boot-tmp").exists());
    let (hostname, fs_size) = inside_qcow2(&node, &img, "/etc/hostname");
    assert_eq!((hostname.as_str(), fs_size), ("guest\n", 64 << 20));

    // Created again: nothing happens to the image.
    let before = read(&img);
    let out = run_steps(&spec, "q1", vec![Op::CreateDisk { bytes: 64 << 20 }]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(read(&img), before);

    // Grown with its filesystem, then without (no OS yet, as the planner says).
    let out = run_steps(
        &spec,
        "q1",
        vec![Op::GrowDisk {
            from: 64 << 20,
            to: 96 << 20,
            resize_fs: true,
        }],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(virtual_size(&img), 96 << 20);
    let (hostname, fs_size) = inside_qcow2(&node, &img, "/etc/hostname");
    assert_eq!((hostname.as_str(), fs_size), ("guest\n", 96 << 20));
    assert_eq!(disk_files(root), ["q1.qcow2"]);
    let out = run_steps(
        &spec,
        "q1",
        vec![Op::GrowDisk {
            from: 96 << 20,
            to: 128 << 20,
            resize_fs: false,
        }],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(virtual_size(&img), 128 << 20);

    // fsck checks the filesystem and stores the kernel again.
    fs::remove_file(run.join("boot-vmlinuz")).unwrap();
    let out = run_steps(&spec, "q1", vec![Op::Fsck { generation: 1 }]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(read(&run.join("boot-vmlinuz")), b"KERNEL-Q");
    assert_eq!(disk_files(root), ["q1.qcow2"]);
    let (hostname, _) = inside_qcow2(&node, &img, "/etc/hostname");
    assert_eq!(hostname, "guest\n");

    // A disk without a filesystem: fsck and grow fail, the image is as it was, no temporary
    // stays.
    let blank = node.path("var/lib/gitvps/disks/q2.qcow2");
    qemu_img_create(&blank, "32M");
    let before = read(&blank);
    for op in [
        Op::Fsck { generation: 1 },
        Op::GrowDisk {
            from: 32 << 20,
            to: 48 << 20,
            resize_fs: true,
        },
    ] {
        let out = run_steps(&spec, "q2", vec![op]);
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains("@@fail 0"), "{}", out.stdout);
        assert_eq!(read(&blank), before);
        assert_eq!(disk_files(root), ["q1.qcow2", "q2.qcow2"]);
    }
    // Not a qcow2 image: refused before anything is written.
    fs::write(&blank, b"garbage").unwrap();
    let out = run_steps(
        &spec,
        "q2",
        vec![Op::Install {
            spec: fake_install(root, "q2"),
        }],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("is not a qcow2 image"),
        "{}",
        out.stdout
    );
    assert_eq!(read(&blank), b"garbage");
    assert_eq!(disk_files(root), ["q1.qcow2", "q2.qcow2"]);

    // A disk in use is not touched.
    let holder = Guard(
        Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$1\"; exec sleep 600")
            .arg("holder")
            .arg(&img)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let before = read(&img);
    let out = run_steps(&spec, "q1", vec![Op::Fsck { generation: 2 }]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("is in use by process"),
        "{}",
        out.stdout
    );
    assert_eq!(read(&img), before);
    drop(holder);

    // Removed.
    let out = run_steps(
        &spec,
        "q1",
        vec![Op::RemoveDisk {
            reason: "test".into(),
        }],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(disk_files(root), ["q2.qcow2"]);
}

/// A child killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_qcow2_guest_boots_the_kernel_stored_for_it() {
    let node = Node::new();
    let img = node.path("g.qcow2");
    qemu_img_create(&img, "16M");
    let run = node.run_dir("g");
    let args = node.qcow2_boot_args("g", &img);

    // Nothing stored, and no filesystem on the image to take a kernel from: a clear error
    // before QEMU runs, and no raw copy left beside the image.
    let out = node.start("g", &args);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!(
            "gitvps: g: no kernel stored for this qcow2 disk ({}/boot-vmlinuz), and none found on it: reinstall the VPS",
            run.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!run.join("qemu.log").exists(), "QEMU did not run");
    assert!(!node.path("g.qcow2.raw-tmp").exists());

    // Stored: copied for QEMU (which cannot boot this one, and says so); debugfs never reads
    // the qcow2 image.
    fs::write(run.join("boot-vmlinuz"), b"STORED-KERNEL").unwrap();
    fs::write(run.join("boot-initrd.img"), b"STORED-INITRD").unwrap();
    let out = node.start("g", &args);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(read(&run.join("vmlinuz")), b"STORED-KERNEL");
    assert_eq!(read(&run.join("initrd.img")), b"STORED-INITRD");
    assert!(
        out.stderr
            .contains("gitvps: g: qemu-system-x86_64 failed to start"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("ext2/3/4"), "{}", out.stderr);

    // Nothing stored (a VPS moved here from another node: its run folder stayed there), and
    // the image holds the guest's filesystem: the kernel and initrd are taken from it, stored
    // for the next starts, and booted; the raw copy is gone.
    let raw = ext4(
        &node,
        "moved.img",
        &[
            ("boot/vmlinuz-6.1.0-1-amd64", b"MOVED-KERNEL"),
            ("boot/initrd.img-6.1.0-1-amd64", b"MOVED-INITRD"),
        ],
        &[],
    );
    let moved = node.path("m.qcow2");
    raw_to_qcow2(&raw, &moved);
    let run = node.run_dir("m");
    let args = node.qcow2_boot_args("m", &moved);
    let out = node.start("m", &args);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("gitvps: m: the guest kernel was taken from its qcow2 disk"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&run.join("boot-vmlinuz")), b"MOVED-KERNEL");
    assert_eq!(read(&run.join("boot-initrd.img")), b"MOVED-INITRD");
    assert_eq!(read(&run.join("vmlinuz")), b"MOVED-KERNEL");
    assert!(
        out.stderr
            .contains("gitvps: m: qemu-system-x86_64 failed to start"),
        "{}",
        out.stderr
    );
    assert!(!node.path("m.qcow2.raw-tmp").exists());
}

/// The node's observe report, parsed, on the qcow2 node of `spec`.
fn observe_state(spec: &planner::desired::NodeSpec) -> planner::observe::NodeState {
    let cmd = planner::driver::observe_command_for(
        &spec.root,
        &spec.store,
        model::values::Hypervisor::Kvm,
        false,
        1,
    );
    let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    planner::observe::parse("kvm1", &out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
        .unwrap()
}

/// The internal snapshots of VPS `vps` that observe reports, by name.
fn observed_snapshots(spec: &planner::desired::NodeSpec, vps: &str) -> Vec<String> {
    (observe_state(spec).snapshots.get(vps).into_iter())
        .flat_map(|m| m.keys().cloned())
        .collect()
}

/// The tags `qemu-img snapshot -l` lists.
fn qemu_img_snapshots(img: &Path) -> Vec<String> {
    gitvps_tests::kvm::qcow2_snapshots(img)
}

fn take(name: &str) -> planner::plan::Op {
    planner::plan::Op::TakeSnapshot {
        name: name.into(),
        cow_bytes: 0,
    }
}

fn delete(name: &str) -> planner::plan::Op {
    planner::plan::Op::DeleteSnapshot { name: name.into() }
}

#[test]
fn qcow2_internal_snapshots_are_taken_kept_through_grow_fsck_reinstall_reverted_and_deleted() {
    use planner::plan::Op;

    let node = Node::new();
    let root = node.dir.path();
    let spec = qcow2_node(root);
    let img = node.path("var/lib/gitvps/disks/q1.qcow2");
    let run = node.run_dir("q1");
    let ok = |out: Out| {
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    };
    ok(run_steps(
        &spec,
        "q1",
        vec![
            Op::CreateDisk { bytes: 64 << 20 },
            Op::Install {
                spec: fake_install(root, "q1"),
            },
        ],
    ));
    assert!(observe_state(&spec).snapshots.is_empty());

    // Taken on the stopped guest's image (qemu-img), twice is once; observe lists it.
    ok(run_steps(&spec, "q1", vec![take("before"), take("before")]));
    assert_eq!(qemu_img_snapshots(&img), ["before"]);
    assert_eq!(observed_snapshots(&spec, "q1"), ["before"]);

    // Reinstalled with another OS, grown with its filesystem, checked: the snapshot stays,
    // and no temporary beside the image.
    let mut other = fake_install(root, "q1");
    other.files[0].1 = other.files[0].1.replace("echo guest", "echo other");
    other.files[0].1 = other.files[0].1.replace("KERNEL-Q", "KERNEL-O");
    ok(run_steps(
        &spec,
        "q1",
        vec![
            Op::Reinstall {
                spec: other,
                generation: 1,
            },
            Op::GrowDisk {
                from: 64 << 20,
                to: 96 << 20,
                resize_fs: true,
            },
            Op::Fsck { generation: 1 },
        ],
    ));
    assert_eq!(qemu_img_snapshots(&img), ["before"]);
    assert_eq!(disk_files(root), ["q1.qcow2"]);
    assert_eq!(virtual_size(&img), 96 << 20);
    let (hostname, fs_size) = inside_qcow2(&node, &img, "/etc/hostname");
    assert_eq!((hostname.as_str(), fs_size), ("other\n", 96 << 20));
    assert_eq!(read(&run.join("boot-vmlinuz")), b"KERNEL-O");

    // Reverted: the first OS is back, with its kernel; the disk keeps its grown size (the
    // snapshot's 64 MiB grown back, with the filesystem); the snapshot stays.
    let revert = || Op::RevertSnapshot {
        name: "before".into(),
        generation: 1,
        cow_bytes: 0,
    };
    ok(run_steps(&spec, "q1", vec![revert()]));
    let (hostname, fs_size) = inside_qcow2(&node, &img, "/etc/hostname");
    assert_eq!((hostname.as_str(), fs_size), ("guest\n", 96 << 20));
    assert_eq!(virtual_size(&img), 96 << 20);
    assert_eq!(read(&run.join("boot-vmlinuz")), b"KERNEL-Q");
    assert_eq!(qemu_img_snapshots(&img), ["before"]);
    assert_eq!(disk_files(root), ["q1.qcow2"]);

    // A revert to a snapshot the image does not hold: refused, nothing changed.
    let before = read(&img);
    let out = run_steps(
        &spec,
        "q1",
        vec![Op::RevertSnapshot {
            name: "nope".into(),
            generation: 2,
            cow_bytes: 0,
        }],
    );
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("holds no snapshot nope"),
        "{}",
        out.stdout
    );
    assert_eq!(read(&img), before);

    // The guest runs (QEMU with the qcow2 disk, no OS: it sits in the BIOS): taken and deleted
    // through QMP, the same QEMU keeps running; a revert is refused, the disk being in use.
    let args = node.args("q1", &img, &[]);
    let text = fs::read_to_string(&args).unwrap();
    fs::write(&args, text.replace(",format=raw", ",format=qcow2")).unwrap();
    let out = node.start("q1", &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pid = node.pid("q1");
    ok(run_steps(&spec, "q1", vec![take("live")]));
    assert_eq!(qemu_img_snapshots(&img), ["before", "live"]);
    assert_eq!(observed_snapshots(&spec, "q1"), ["before", "live"]);
    ok(run_steps(
        &spec,
        "q1",
        vec![delete("before"), delete("before")],
    ));
    assert_eq!(qemu_img_snapshots(&img), ["live"]);
    assert_eq!(node.pid("q1"), pid);
    assert!(node.alive("q1"));
    let out = run_steps(&spec, "q1", vec![revert()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("is in use by"), "{}", out.stdout);
    let out = sh(&format!("kvm_destroy q1 {}", q(&run)));
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Stopped again: deleted with qemu-img; observe lists none.
    ok(run_steps(&spec, "q1", vec![delete("live")]));
    assert!(qemu_img_snapshots(&img).is_empty());
    assert!(observe_state(&spec).snapshots.is_empty());
}

/// A cloud image install for `vps` of `spec` (issue 18): `body` served on loopback, checked
/// against `sha256`, booting its own kernel.
fn cloud_install(
    spec: &planner::desired::NodeSpec,
    vps: &str,
    url: &str,
    sha256: &str,
    disk_bytes: u64,
) -> Box<planner::desired::InstallSpec> {
    let root = &spec.root;
    Box::new(planner::desired::InstallSpec {
        os: "debian-12-cloud".into(),
        appliance: None,
        ship_dir: format!("{root}/var/lib/gitvps/bootstraps/{vps}"),
        build_dir: format!("{root}/var/lib/gitvps/build/{vps}"),
        files: Vec::new(),
        exports: String::new(),
        cloud: Some(planner::desired::CloudSpec {
            url: url.into(),
            sha256: sha256.into(),
            max_bytes: 64 << 20,
            format: "qcow2".into(),
            path: format!("{root}/var/cache/gitvps/cloud/{sha256}.img"),
            kernel_boot: true,
            seed_dir: format!("{root}/var/lib/gitvps/seed/{vps}"),
            instance_id: format!("gitvps-{vps}-0"),
            seed: vec![
                ("meta-data".into(), "instance-id: \"x\"\n".into()),
                (
                    "user-data".into(),
                    "#cloud-config\nfqdn: \"it's.example.net\"\n".into(),
                ),
            ],
            disk_bytes,
        }),
    })
}

/// The install step of a cloud image on a qcow2 node, with the real steps script, the node's
/// curl and qemu-img: fetched from loopback HTTP and checked, written as the disk and grown to
/// the product's size, its kernel stored, its seed beside it. A wrong sha256 names both sums
/// and writes nothing; an image larger than the disk, or naming a backing file, is refused.
#[test]
fn a_cloud_image_is_fetched_checked_written_grown_and_seeded() {
    use planner::plan::Op;

    let node = Node::new();
    let root = node.dir.path();
    let spec = qcow2_node(root);
    let fs_img = ext4(
        &node,
        "cloud.raw",
        &[
            ("boot/vmlinuz-6.1.0-1-cloud-amd64", b"KERNEL-C"),
            ("boot/initrd.img-6.1.0-1-cloud-amd64", b"INITRD-C"),
            ("etc/cloud/marker", b"from the cloud image"),
        ],
        &[],
    );
    let image = node.path("cloud.qcow2");
    raw_to_qcow2(&fs_img, &image);
    let body = fs::read(&image).unwrap();
    let sha = sha256_hex(&body);
    let base = gitvps_tests::media::serve_bytes(body);
    let url = format!("{base}/debian-12-genericcloud.qcow2");

    let out = run_steps(
        &spec,
        "c1",
        vec![
            Op::CreateDisk { bytes: 128 << 20 },
            Op::Install {
                spec: cloud_install(&spec, "c1", &url, &sha, 128 << 20),
            },
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let disk = node.path("var/lib/gitvps/disks/c1.qcow2");
    assert_eq!(
        virtual_size(&disk),
        128 << 20,
        "grown to the product's size"
    );
    let (marker, _) = inside_qcow2(&node, &disk, "/etc/cloud/marker");
    assert_eq!(marker, "from the cloud image");
    let run = node.run_dir("c1");
    assert_eq!(read(&run.join("boot-vmlinuz")), b"KERNEL-C");
    assert_eq!(read(&run.join("boot-initrd.img")), b"INITRD-C");
    let seed = node.path("var/lib/gitvps/seed/c1");
    assert_eq!(
        fs::read_to_string(seed.join("user-data")).unwrap(),
        "#cloud-config\nfqdn: \"it's.example.net\"\n"
    );
    assert!(seed.join("meta-data").is_file());
    assert!(
        node.path(&format!("var/cache/gitvps/cloud/{sha}.img"))
            .is_file()
    );
    assert_eq!(disk_files(root), ["c1.qcow2"], "no temporary stays");

    // A wrong sha256: both sums named, the disk and the seed untouched.
    let wrong = "0".repeat(64);
    let before = read(&disk);
    let out = run_steps(
        &spec,
        "c1",
        vec![Op::Install {
            spec: cloud_install(&spec, "c1", &url, &wrong, 128 << 20),
        }],
    );
    assert_ne!(out.code, 0);
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains(&format!(
            "sha256 mismatch for {url}: expected {wrong}, got {sha}"
        )),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(read(&disk), before, "the disk is untouched");
    assert!(
        !node
            .path(&format!("var/cache/gitvps/cloud/{wrong}.img"))
            .exists()
    );

    // An image larger than the disk: refused before anything is written.
    let out = run_steps(
        &spec,
        "c1",
        vec![Op::Install {
            spec: cloud_install(&spec, "c1", &url, &sha, 32 << 20),
        }],
    );
    assert_ne!(out.code, 0);
    assert!(
        format!("{}{}", out.stdout, out.stderr)
            .contains("more than the disk (33554432): refused, nothing written"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(read(&disk), before, "the disk is untouched");

    // A qcow2 image naming a backing file (here, the node's own file) is refused.
    let sneaky = node.path("sneaky.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&fs_img)
        .arg(&sneaky)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let body = fs::read(&sneaky).unwrap();
    let sneaky_sha = sha256_hex(&body);
    let base = gitvps_tests::media::serve_bytes(body);
    let out = run_steps(
        &spec,
        "c1",
        vec![Op::Install {
            spec: cloud_install(
                &spec,
                "c1",
                &format!("{base}/x.qcow2"),
                &sneaky_sha,
                128 << 20,
            ),
        }],
    );
    assert_ne!(out.code, 0);
    assert!(
        format!("{}{}", out.stdout, out.stderr)
            .contains("names a backing file: refused, nothing written"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    assert_eq!(read(&disk), before, "the disk is untouched");
}
