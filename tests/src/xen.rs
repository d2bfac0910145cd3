//! A real Xen node for tests: Xen 4.17 and a Debian 12 dom0 booted under QEMU (TCG), its image
//! built once by `tests/support/xen-dom0.sh` and cached under target/, reached over SSH.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{mirror, target_tmp, top};

/// Seconds the dom0 may take from QEMU's start to its sshd (measured: about 50 s on an idle
/// 2-core machine; other tests share the cores).
const BOOT_TIMEOUT_SECS: u64 = 600;

/// Seconds building the dom0 image may take (measured: about 3 minutes).
const BUILD_TIMEOUT_SECS: u64 = 1800;

/// Xen's command line: the serial console, a 768 MiB dom0 on one vCPU, and the two workarounds
/// this emulation needs (`smap=0`: else the dom0 crashes at once; `spec-ctrl=eager-fpu`: else a
/// Debian domU's systemd segfaults), ../shared/reference/xen-under-qemu.md.
pub const XEN_ARGS: &str = "console=com1 com1=115200,8n1 dom0_mem=768M,max:768M dom0_max_vcpus=1 noreboot smap=0 spec-ctrl=eager-fpu";

/// The pool the node's bridge serves: `xenbr0` has the gateway, domUs take addresses from it.
pub const NETWORK: &str = "10.99.0.0/24";
/// The gateway on the dom0's `xenbr0`.
pub const GATEWAY: &str = "10.99.0.1";

/// The cached dom0 image: `root.img`, `xen`, `vmlinuz`, `initrd.img`, `host_key.pub`, and the
/// reconciler's key pair `key`/`key.pub` that its `gitvps` user accepts.
pub struct Dom0Image {
    pub dir: PathBuf,
}

impl Dom0Image {
    /// The image for the current `xen-dom0.sh` (its sha256 is the cache key), built when
    /// missing. A build that fails or times out fails the test with its log's last lines.
    pub fn get() -> Dom0Image {
        let script = top().join("tests/support/xen-dom0.sh");
        let text = std::fs::read_to_string(&script).unwrap();
        let key = &planner::desired::sha256_hex(&text)[..16];
        let base = target_tmp().parent().unwrap().join("xen-dom0");
        let dir = base.join(key);
        if dir.join("root.img").is_file() {
            return Dom0Image { dir };
        }
        std::fs::create_dir_all(&base).unwrap();
        let work = base.join(format!("build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let node_key = work.join("key");
        crate::keygen(&node_key, "gitvps-reconciler");
        let out = work.join("img");
        let log = work.join("build.log");
        let t = Instant::now();
        let mut child = Command::new("sh")
            .arg(&script)
            .arg(&out)
            .arg(mirror())
            .arg(work.join("key.pub"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let status = wait_child(&mut child, Duration::from_secs(BUILD_TIMEOUT_SECS));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            status.is_some_and(|s| s.success()),
            "building the dom0 image failed ({status:?}); the log's last lines:\n{}",
            tail(&text, 30)
        );
        eprintln!(
            "xen: dom0 image built in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        std::fs::rename(&node_key, out.join("key")).unwrap();
        std::fs::rename(work.join("key.pub"), out.join("key.pub")).unwrap();
        // Another process may have won the race: its image is as good.
        if std::fs::rename(&out, &dir).is_err() {
            assert!(dir.join("root.img").is_file());
        }
        let _ = std::fs::remove_dir_all(&work);
        Dom0Image { dir }
    }

    /// The dom0's ed25519 host key (`ssh-ed25519 AAAA...`), without its comment.
    pub fn host_key(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A running Xen node: QEMU with Xen and the dom0, a copy-on-write overlay of the cached root,
/// and a fresh second disk for the volume group `vg0`. QEMU is killed when dropped.
pub struct XenNode {
    pub image: Dom0Image,
    pub dir: tempfile::TempDir,
    /// The host port forwarded to the dom0's sshd.
    pub port: u16,
    /// The pinned host key.
    pub host_key: String,
    /// Seconds from QEMU's start to the dom0's sshd.
    pub boot_secs: f64,
    qemu: Child,
    /// Left running when dropped, with its folder (`GITVPS_XEN_KEEP`, [`keep`]).
    keep: bool,
}

/// Whether `GITVPS_XEN_KEEP` is set: the node that [`XenNode::boot`] booted stays up when the
/// test ends (passed or failed), its folder kept, and how to reach it is printed, so a failure
/// can be looked into on the same dom0 instead of a new boot.
pub fn keep() -> bool {
    std::env::var_os("GITVPS_XEN_KEEP").is_some()
}

impl XenNode {
    /// Boots the node and waits for its sshd, then makes `vg0` on the second disk. A dom0
    /// that crashes, or is not up in time, fails the test with the serial log's last lines.
    /// `cache`: a folder given to the dom0 as its bootstraps' cache (`/var/cache/gitvps`), on
    /// a third disk (reading a disk costs the emulated dom0 far less than receiving over SSH).
    /// With `GITVPS_XEN_KEEP` set, the node outlives the test ([`keep`]).
    pub fn boot(cache: Option<&std::path::Path>) -> XenNode {
        let mut node = Self::try_boot(cache, XEN_ARGS).unwrap_or_else(|e| panic!("{e}"));
        node.keep = keep();
        if node.keep {
            eprintln!(
                "xen: GITVPS_XEN_KEEP: the dom0 is in {} (sshd on 127.0.0.1:{})",
                node.dir.path().display(),
                node.port
            );
        }
        node
    }

    /// [`XenNode::boot`] with Xen's command line `xen_args`; a dom0 that does not come up is
    /// an error with the serial log's last lines (QEMU is killed).
    pub fn try_boot(cache: Option<&std::path::Path>, xen_args: &str) -> Result<XenNode, String> {
        let image = Dom0Image::get();
        let dir = tempfile::tempdir().unwrap();
        let cache_img = dir.path().join("cache.img");
        if let Some(cache) = cache {
            let o = Command::new("mke2fs")
                .args(["-q", "-t", "ext4", "-L", "gitvps-cache", "-d"])
                .arg(cache)
                .arg(&cache_img)
                .arg("2G")
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", crate::output_text(&o));
        }
        let overlay = dir.path().join("root.qcow2");
        let o = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(image.dir.join("root.img"))
            .arg(&overlay)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", crate::output_text(&o));
        let vg = dir.path().join("vg.img");
        std::fs::File::create(&vg)
            .unwrap()
            .set_len(24 << 30)
            .unwrap();
        let port = free_port();
        let serial = dir.path().join("serial.log");
        let img = |f: &str| image.dir.join(f).display().to_string();
        let qemu = Command::new("qemu-system-x86_64")
            .args([
                "-machine", "pc", "-accel", "tcg", "-cpu", "max", "-m", "2048",
            ])
            .args(["-smp", "1", "-display", "none", "-nodefaults", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-kernel")
            .arg(img("xen"))
            .arg("-append")
            .arg(xen_args)
            .arg("-initrd")
            .arg(format!(
                "{} root=/dev/vda rw console=hvc0 earlyprintk=xen net.ifnames=0,{}",
                img("vmlinuz"),
                img("initrd.img")
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=qcow2,cache=unsafe",
                overlay.display()
            ))
            .arg("-drive")
            .arg(format!(
                "file={},if=virtio,format=raw,cache=unsafe",
                vg.display()
            ))
            .args(cache.map(|_| "-drive"))
            .args(cache.map(|_| {
                format!(
                    "file={},if=virtio,format=raw,cache=unsafe",
                    cache_img.display()
                )
            }))
            .arg("-netdev")
            .arg(format!("user,id=n,hostfwd=tcp:127.0.0.1:{port}-:22"))
            .args(["-device", "virtio-net-pci,netdev=n"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("qemu.err")).unwrap())
            .spawn()
            .unwrap();
        let host_key = image.host_key();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_key}\n"),
        )
        .unwrap();
        let mut node = XenNode {
            image,
            dir,
            port,
            host_key,
            boot_secs: 0.0,
            qemu,
            keep: false,
        };
        let t = Instant::now();
        node.wait_for_ssh(Duration::from_secs(BOOT_TIMEOUT_SECS))?;
        node.boot_secs = t.elapsed().as_secs_f64();
        eprintln!(
            "xen: dom0 answered SSH {:.0} s after QEMU started",
            node.boot_secs
        );
        // xenconsoled (`--log=guest`, the image's /etc/default/xen) does not make its log
        // folder: without it every guest's console log is silently missing.
        node.root(
            "pvcreate -q /dev/vdb && vgcreate -q vg0 /dev/vdb && mkdir -p /var/log/xen/console",
        );
        if cache.is_some() {
            node.root("mkdir -p /var/cache/gitvps && mount /dev/vdc /var/cache/gitvps");
        }
        Ok(node)
    }

    /// The reconciler's private key (the `gitvps` user's).
    pub fn key(&self) -> PathBuf {
        self.image.dir.join("key")
    }

    /// The serial console: Xen's and the dom0 kernel's messages.
    pub fn serial(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serial.log"))
            .map(|t| t.replace('\r', ""))
            .unwrap_or_default()
    }

    /// The serial log's last lines, for a failure message.
    pub fn serial_tail(&self) -> String {
        format!("--- serial log, last lines\n{}", tail(&self.serial(), 40))
    }

    /// Polls the dom0's sshd; an error at once when QEMU exits or the log shows a crash.
    fn wait_for_ssh(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.qemu.try_wait() {
                let err =
                    std::fs::read_to_string(self.dir.path().join("qemu.err")).unwrap_or_default();
                return Err(format!(
                    "QEMU exited ({status}) before the dom0 answered SSH: {err}\n{}",
                    self.serial_tail()
                ));
            }
            let log = self.serial();
            if let Some(l) = log.lines().find(|l| {
                l.contains("Panic on CPU")
                    || l.contains("Kernel panic")
                    || l.contains("Dom0 crashed")
                    || l.contains("domain_crash")
            }) {
                return Err(format!(
                    "the dom0 crashed while booting: {l}\n{}",
                    self.serial_tail()
                ));
            }
            let o = self
                .ssh("gitvps")
                .args(["-o", "ConnectTimeout=5", "true"])
                .output()
                .unwrap();
            if o.status.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the dom0 did not answer SSH within {} s: {}\n{}",
                    timeout.as_secs(),
                    String::from_utf8_lossy(&o.stderr),
                    self.serial_tail()
                ));
            }
            std::thread::sleep(Duration::from_secs(3));
        }
    }

    /// `ssh -p PORT USER@127.0.0.1` with the reconciler's key and the pinned host key; the
    /// command's words follow.
    pub fn ssh(&self, user: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.path().join("known_hosts").display()
            ))
            .arg("-i")
            .arg(self.key())
            .args(["-p", &self.port.to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .stdin(Stdio::null());
        c
    }

    /// Runs a sh command as root on the dom0 (the `gitvps` user through its sudo rule), with
    /// `input` on stdin; fails the test when it fails. Returns its stdout.
    pub fn root_with_input(&self, cmd: &str, input: &[u8]) -> String {
        let mut child = self
            .ssh("gitvps")
            .args(["sudo", "-n", "/bin/sh", "-c"])
            .arg(planner::quote(cmd))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "on the dom0: {cmd}: {}\n{}",
            crate::output_text(&o),
            self.serial_tail()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// [`XenNode::root_with_input`] with nothing on stdin.
    pub fn root(&self, cmd: &str) -> String {
        self.root_with_input(cmd, b"")
    }

    /// Runs a sh command as root on the dom0 and returns what it did, failed or not.
    pub fn try_root(&self, cmd: &str) -> Output {
        self.ssh("gitvps")
            .args(["sudo", "-n", "/bin/sh", "-c"])
            .arg(planner::quote(cmd))
            .output()
            .unwrap()
    }

    /// An ordinary node file for this node: the `gitvps` user with `sudo`, the pinned host
    /// key, LVM on `vg0`, and `[xen]` with the guest type and `virt_caps` given.
    pub fn node_file(&self, xen: &str) -> String {
        node_file(self.port, &self.host_key, xen)
    }
}

/// The node file of a Xen test node on `port` with `host_key`; `xen`: the `[xen]` table's lines.
pub fn node_file(port: u16, host_key: &str, xen: &str) -> String {
    format!(
        "address = \"127.0.0.1\"\nport = {}\nuser = \"gitvps\"\nsudo = true\nhost_key = \"{}\"\nlocation = \"Testville\"\ncountry = \"US\"\nhypervisor = \"xen\"\nstorage = {{ backend = \"lvm\", vg = \"vg0\" }}\npools = [\"test-1\"]\ncapacity = {{ ram = \"1 GiB\", disk = \"20 GiB\", vcpus = 1 }}\n\n[xen]\n{xen}",
        port, host_key
    )
}

impl Drop for XenNode {
    fn drop(&mut self) {
        if self.keep {
            self.dir.disable_cleanup(true);
            let d = self.dir.path().display();
            eprintln!(
                "xen: GITVPS_XEN_KEEP: the dom0 is left running (QEMU pid {pid}; `kill {pid}` ends it, then `rm -rf {d}`)\n\
                 xen:   as root on it: ssh -F /dev/null -o UserKnownHostsFile={d}/known_hosts -i {key} -p {port} gitvps@127.0.0.1 sudo -n /bin/sh -c 'xl list'\n\
                 xen:   its serial log: {d}/serial.log",
                pid = self.qemu.id(),
                key = self.key().display(),
                port = self.port,
            );
            return;
        }
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; QEMU takes it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for a child at most `timeout`; kills it past that (`None`).
fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The last `n` lines of a text.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
