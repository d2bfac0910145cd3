#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
//! The KVM driver for real: a real sshd as the node, `gitvps apply`, and a Debian guest booted by
//! QEMU (TCG) that the test logs in to with the customer's key. Needs root, QEMU, socat, sudo.

mod support;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fleet::{Run, bin};
use support::{Sshd, keygen, mirror, top};

const VPS: &str = "xen10";
const IP: &str = "192.0.2.10";

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// One KVM node (a folder behind a real sshd) and a repo with one VPS on it.
struct KvmFleet {
    sshd: Sshd,
    dir: tempfile::TempDir,
    repo: PathBuf,
    root: PathBuf,
    customer_key: PathBuf,
    customer_pub: String,
    ssh_port: u16,
}

/// A free TCP port on 127.0.0.1 whose last-octet base is usable for `forward_base`.
fn free_forward_base() -> u16 {
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port > 2000 && port < 65000 {
            return port - 10;
        }
    }
    panic!("no free port");
}

impl KvmFleet {
    fn new() -> KvmFleet {
        let sshd = Sshd::start();
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let root = dir.path().join("node");
        for d in ["inventory/nodes", "inventory/vps", "inventory/customers"] {
            std::fs::create_dir_all(repo.join(d)).unwrap();
        }
        support::copy_tree(&top().join("bootstraps"), &repo.join("bootstraps"));
        std::fs::copy(top().join("gitvps.toml"), repo.join("gitvps.toml")).unwrap();
        // The test plan with disk caps, which QEMU gets as throttling options.
        let products = std::fs::read_to_string(top().join("products.toml")).unwrap();
        let capped = products.replacen(
            "traffic = \"1024 MiB\"",
            "disk_iops = 2000\ndisk_bandwidth = \"200MB/s\"\ntraffic = \"1024 MiB\"",
            1,
        );
        assert_ne!(products, capped);
        std::fs::write(repo.join("products.toml"), capped).unwrap();
        std::fs::write(
            repo.join("pools.toml"),
            "[[pool]]\nid = \"test-1\"\nlocation = \"Testville\"\nnetwork = \"192.0.2.0/24\"\ngateway = \"192.0.2.1\"\ndns = [\"192.0.2.2\"]\nreserved = [\"192.0.2.2\"]\n",
        )
        .unwrap();
        // An appliance whose first boot needs no network (the guest has none but SSH in).
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
        let customer_key = dir.path().join("customer_key");
        let customer_pub = keygen(&customer_key, "jane@laptop");
        std::fs::write(
            repo.join("inventory/customers/c-0001.toml"),
            format!(
                "name = \"Jane\"\nemail = \"jane@example.net\"\nssh_keys = [\"{customer_pub}\"]\n"
            ),
        )
        .unwrap();
        let base = free_forward_base();
        std::fs::write(
            repo.join("inventory/nodes/kvm1.toml"),
            format!(
                "address = \"{}\"\nport = {}\nuser = \"{}\"\nhost_key = \"{}\"\nlocation = \"Testville\"\ncountry = \"US\"\nhypervisor = \"kvm\"\nstorage = {{ backend = \"file\", dir = \"/var/lib/gitvps/disks\" }}\npools = [\"test-1\"]\ncapacity = {{ ram = \"8 GiB\", disk = \"1 TiB\", vcpus = 8 }}\nroot = \"{}\"\n\n[kvm]\naccel = \"tcg\"\nnetwork = \"user\"\nforward_base = {base}\n",
                sshd.addr,
                sshd.port,
                sshd.user,
                sshd.host_key,
                root.display()
            ),
        )
        .unwrap();
        // The node's tools are the real ones, but for `useradd`: the console account is made
        // under the node root by the stand-in (the test mirrors it into /etc when it needs it).
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::fs::write(
            root.join("usr/sbin/useradd"),
            format!(
                "#!/bin/sh\nexec {} node-sim exec --root {} useradd \"$@\"\n",
                bin(),
                root.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            root.join("usr/sbin/useradd"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // The bootstraps' root cache lives under target/, shared by test runs.
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("gitvps-cache");
        std::fs::create_dir_all(&cache).unwrap();
        std::fs::create_dir_all(root.join("var/cache")).unwrap();
        std::os::unix::fs::symlink(&cache, root.join("var/cache/gitvps")).unwrap();
        let ssh_port = base + 10;
        KvmFleet {
            sshd,
            dir,
            repo,
            root,
            customer_key,
            customer_pub,
            ssh_port,
        }
    }

    fn vps_file(&self, extra: &str) {
        std::fs::write(
            self.repo.join(format!("inventory/vps/{VPS}.toml")),
            format!(
                "customer = \"c-0001\"\nproduct = \"test\"\nnode = \"kvm1\"\nips = [\"{IP}\"]\nhostname = \"{VPS}.example.net\"\nos = \"debian-12\"\nappliance = \"probe\"\ncreated = 2026-01-01\nexpires = 2099-01-01\n{extra}"
            ),
        )
        .unwrap();
    }

    fn gitvps(&self, args: &[&str]) -> Run {
        Command::new(bin())
            .arg("--repo")
            .arg(&self.repo)
            .args(args)
            .env("GITVPS_SSH_KEY", &self.sshd.client_key)
            .env("GITVPS_MIRROR", mirror())
            .env_remove("SSH_AUTH_SOCK")
            .output()
            .unwrap()
            .into()
    }

    /// Applies, checks the apply succeeded and that a second plan is empty; returns the apply.
    fn converge(&self, what: &str) -> Run {
        let t = Instant::now();
        let a = self.gitvps(&["apply"]);
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

    fn run_dir(&self) -> PathBuf {
        self.root.join(format!("var/lib/gitvps/kvm/{VPS}"))
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.root.join(format!("var/log/gitvps/console/{VPS}.log")))
            .map(|t| t.replace('\r', ""))
            .unwrap_or_default()
    }

    fn console_tail(&self) -> String {
        let c = self.console();
        let lines: Vec<&str> = c.lines().collect();
        format!(
            "--- console tail\n{}",
            lines[lines.len().saturating_sub(25)..].join("\n")
        )
    }

    /// The pid of the guest's QEMU when it runs.
    fn qemu_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.run_dir().join("qemu.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }

    fn set_reconciler(&self, key: &str, value: &str) {
        let p = self.repo.join("gitvps.toml");
        let text = std::fs::read_to_string(&p).unwrap();
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

    /// Runs a command in the guest as root over SSH (the hostfwd on 127.0.0.1), retrying while
    /// the guest's sshd is not up yet.
    fn in_guest(&self, cmd: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let out = support::ssh_client(&self.customer_key, self.ssh_port)
                .arg("root@127.0.0.1")
                .arg(cmd)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            assert!(
                Instant::now() < deadline,
                "ssh into the guest failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.console_tail()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    fn wait_for_login(&self, count: usize) {
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

    fn edit_vps(&self, from: &str, to: &str) {
        let p = self.repo.join(format!("inventory/vps/{VPS}.toml"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "no `{from}` in {text}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }
}

impl Drop for KvmFleet {
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

/// A process that holds a file open until dropped (a disk "in use").
struct Holder(std::process::Child);

impl Holder {
    fn open(path: &Path) -> Holder {
        let child = Command::new("sh")
            .arg("-c")
            .arg("exec 3<\"$1\"; exec sleep 600")
            .arg("holder")
            .arg(path)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Holder(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Logs in as the console user with the customer's key and returns what the console printed
/// after a carriage return.
fn console_over_ssh(f: &KvmFleet) -> String {
    let mut child = support::ssh_client(&f.customer_key, f.sshd.port)
        .arg("-tt")
        .arg(format!("{VPS}@127.0.0.1"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !String::from_utf8_lossy(&seen).contains("login:") {
        let _ = stdin.write_all(b"\r");
        let _ = stdin.flush();
        while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(700)) {
            seen.extend(chunk);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8_lossy(&seen).into_owned()
}

#[test]
fn a_kvm_vps_boots_with_what_the_inventory_says_and_follows_its_actions() {
    if !is_root() {
        eprintln!("skipped: the KVM test writes /etc/sudoers.d and needs root");
        return;
    }
    let f = KvmFleet::new();
    f.vps_file("");

    // 1. First apply, with a boot timeout too short for TCG: the start step fails naming the
    // node, the VPS and the step, the guest is left running, and a re-run converges.
    f.set_reconciler("boot_timeout_secs", "2");
    let t = Instant::now();
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    let all = format!("{}{}", a.stdout, a.stderr);
    assert!(all.contains("kvm1"), "{a:?}");
    assert!(
        all.contains(&format!("{VPS}: start domain"))
            && all.contains("did not reach its login prompt within 2 s (it is left running)"),
        "{a:?}"
    );
    assert!(f.qemu_pid().is_some(), "the guest must be left running");
    f.wait_for_login(1);
    eprintln!(
        "first apply to the login prompt: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    f.set_reconciler("boot_timeout_secs", "300");
    // The VPS's later steps (its console keys) were skipped: the re-run does them, no more.
    let a = f.converge("re-run");
    assert!(!a.stdout.contains("start domain"), "{a:?}");

    // 2. The guest is what the inventory says: host name, address, keys, appliance.
    let out = f.in_guest("hostname; ip -4 -o addr show scope global; cat /root/firstboot-ran; cat /etc/debian_version");
    assert!(
        out.starts_with(&format!("{VPS}\n")) || out.starts_with(&format!("{VPS}.example.net\n")),
        "{out}"
    );
    assert!(out.contains(&format!("inet {IP}/24")), "{out}");
    assert!(
        out.contains(&format!("{VPS} {IP}/24")),
        "the appliance's first boot ran: {out}"
    );
    assert!(out.contains("\n12."), "{out}");
    let pid = f.qemu_pid().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("restrict=on"), "{cmdline}");
    assert!(
        cmdline.contains(",throttling.iops-total=2000,throttling.bps-total=200000000"),
        "{cmdline}"
    );
    assert_eq!(
        std::fs::read_to_string(f.run_dir().join("cmdline")).unwrap(),
        std::fs::read_to_string(f.root.join(format!("etc/gitvps/kvm/{VPS}.args"))).unwrap(),
        "the command line kept is the config"
    );

    // 3. The console user reaches the serial console with the customer's key.
    let account = support::ConsoleAccount::mirror(&f.root, VPS);
    let seen = console_over_ssh(&f);
    assert!(seen.contains(&format!("{VPS} login:")), "{seen:?}");
    drop(account);

    // 4. A QMP socket that does not answer (QEMU stopped): the reboot fails clearly, nothing
    // is destroyed; once QEMU answers again, a re-run reboots.
    f.edit_vps(
        "appliance = \"probe\"\n",
        "appliance = \"probe\"\nactions = { reboot = 1 }\n",
    );
    Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    let a = f.gitvps(&["apply"]);
    Command::new("kill")
        .args(["-CONT", &pid.to_string()])
        .status()
        .unwrap();
    assert_eq!(a.code, 1, "{a:?}");
    let all = format!("{}{}", a.stdout, a.stderr);
    assert!(
        all.contains("kvm1") && all.contains(&format!("{VPS}: reboot")),
        "{a:?}"
    );
    assert!(all.contains("QMP"), "{a:?}");
    assert_eq!(f.qemu_pid(), Some(pid), "the guest was not touched");
    let logins = f.console().matches("login:").count();
    let t = Instant::now();
    f.converge("reboot");
    eprintln!(
        "reboot to the login prompt: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(
        f.console().matches("login:").count() > logins,
        "{}",
        f.console_tail()
    );
    assert_eq!(f.qemu_pid(), Some(pid), "a reset keeps the same QEMU");

    // 5. fsck while something else holds the disk: refused, the guest stays down, nothing is
    // lost; without the holder, a re-run checks and starts it.
    f.edit_vps(
        "actions = { reboot = 1 }",
        "actions = { reboot = 1, fsck = 1 }",
    );
    let disk = f.root.join(format!("var/lib/gitvps/disks/{VPS}.img"));
    let holder = Holder::open(&disk);
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    let all = format!("{}{}", a.stdout, a.stderr);
    assert!(
        all.contains("kvm1")
            && all.contains(&format!("{VPS}: fsck disk"))
            && all.contains("is in use by process"),
        "{a:?}"
    );
    assert!(disk.exists());
    drop(holder);
    let t = Instant::now();
    f.converge("fsck");
    eprintln!(
        "fsck and start to the login prompt: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let out = f.in_guest("cat /root/firstboot-ran");
    assert!(out.contains(VPS), "the disk kept its files: {out}");

    // 6. power = "stopped": QEMU is gone.
    f.edit_vps(
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\npower = \"stopped\"\n",
    );
    f.converge("stop");
    assert_eq!(f.qemu_pid(), None);

    // 7. Reinstall with another OS of the catalog, and start.
    f.edit_vps(
        "os = \"debian-12\"\npower = \"stopped\"\n",
        "os = \"debian-13\"\n",
    );
    f.edit_vps("fsck = 1 }", "fsck = 1, reinstall = 1 }");
    let t = Instant::now();
    f.converge("reinstall");
    eprintln!(
        "reinstall (debian-13) to the login prompt: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let out = f.in_guest("hostname; cat /etc/debian_version; cat /root/firstboot-ran");
    assert!(out.contains("\n13."), "{out}");
    assert!(out.contains(&format!("{VPS} {IP}/24")), "{out}");
    let _ = &f.customer_pub;
    let _ = f.dir.path();
}
