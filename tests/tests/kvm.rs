#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
//! The KVM driver for real: a real sshd as the node, `gitvps apply`, and a Debian guest booted by
//! QEMU (TCG) that the test logs in to with the customer's key. Needs root, QEMU, socat, sudo.
//! The node stores qcow2 images (`gitvps demo --real`, tested in `tests/demo.rs`, boots a raw
//! one).

use gitvps_tests as support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::kvm::{KvmNode, KvmNodeSpec};

const VPS: &str = "xen10";
const IP: &str = "192.0.2.10";

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

/// The test's node: user-mode networking (the guest's SSH forwarded from 127.0.0.1), qcow2
/// images, and the test plan with disk caps, which QEMU gets as throttling options.
struct Fleet {
    node: KvmNode,
    ssh_port: u16,
}

impl std::ops::Deref for Fleet {
    type Target = KvmNode;
    fn deref(&self) -> &KvmNode {
        &self.node
    }
}

impl Fleet {
    fn new() -> Fleet {
        let base = free_forward_base();
        let node = KvmNode::new(&KvmNodeSpec {
            vps: VPS,
            network: "192.0.2.0/24",
            gateway: "192.0.2.1",
            kvm: &format!("accel = \"tcg\"\nnetwork = \"user\"\nforward_base = {base}\n"),
            plan_extra: "disk_iops = 2000\ndisk_bandwidth = \"200MB/s\"\n",
            format: "qcow2",
        });
        Fleet {
            node,
            ssh_port: base + 10,
        }
    }

    /// Runs a command in the guest as root over its forwarded SSH.
    fn in_guest(&self, cmd: &str) -> String {
        self.node.in_guest("127.0.0.1", self.ssh_port, cmd)
    }

    /// The guest's qcow2 image.
    fn disk(&self) -> PathBuf {
        self.root.join(format!("var/lib/gitvps/disks/{VPS}.qcow2"))
    }

    /// The disk is a qcow2 image and nothing else sits beside it (no temporary stays).
    fn assert_qcow2_alone(&self) {
        let mut magic = [0u8; 4];
        std::fs::File::open(self.disk())
            .unwrap()
            .read_exact(&mut magic)
            .unwrap();
        assert_eq!(&magic, b"QFI\xfb", "a qcow2 image");
        let files: Vec<String> = std::fs::read_dir(self.disk().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files, [format!("{VPS}.qcow2")]);
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
fn console_over_ssh(f: &Fleet) -> String {
    let mut ssh = support::ssh_client(&f.customer_key, f.sshd.port);
    ssh.arg("-tt").arg(format!("{VPS}@127.0.0.1"));
    support::console_until_login(ssh, Duration::from_secs(30))
}

#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn a_kvm_vps_boots_with_what_the_inventory_says_and_follows_its_actions() {
    support::require_root();
    let f = Fleet::new();
    f.vps_file(&format!("\"{IP}\""), "appliance = \"probe\"\n");

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

    // 2. The guest is what the inventory says: host name, address, keys, appliance. Its disk is
    // a qcow2 image; it booted the kernel stored when its OS was written.
    f.assert_qcow2_alone();
    assert!(
        std::fs::metadata(f.disk()).unwrap().len() < 2 << 30,
        "the image holds what the guest wrote, not its 15000 MiB"
    );
    assert_eq!(
        std::fs::read(f.run_dir().join("vmlinuz")).unwrap(),
        std::fs::read(f.run_dir().join("boot-vmlinuz")).unwrap()
    );
    let kernel12 = f.in_guest("uname -r");
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
    let disk = f.disk();
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
    f.assert_qcow2_alone();

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
    // The reinstall stored the new OS's kernel, which the guest booted.
    let kernel13 = f.in_guest("uname -r");
    assert_ne!(kernel12, kernel13, "debian-13 boots its own kernel");
    f.assert_qcow2_alone();
    assert!(out.contains(&format!("{VPS} {IP}/24")), "{out}");

    // 8. Boot media: an ISO the inventory attaches boots first; ejecting it boots the disk.
    iso_boot_and_back(&f);
}

/// Step 8 (issue 18): the customer's ISO, fetched by the node's curl from an HTTP server on
/// loopback and checked against its sha256, boots before the disk (its marker on the serial
/// console, and no login prompt awaited by the start); ejecting it brings the installed system
/// back with its files.
fn iso_boot_and_back(f: &Fleet) {
    use support::media::{ISO_MARKER, marker_iso, serve_bytes, sha256_hex};
    let dir = tempfile::tempdir().unwrap();
    let iso = std::fs::read(marker_iso(dir.path())).unwrap();
    let sha = sha256_hex(&iso);
    let base = serve_bytes(iso);
    let boot = format!("\n[boot]\niso_url = \"{base}/live.iso\"\niso_sha256 = \"{sha}\"\n");
    let file = f.repo.join(format!("inventory/vps/{VPS}.toml"));
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}{boot}")).unwrap();
    let t = Instant::now();
    let a = f.converge("attach an ISO");
    assert!(a.stdout.contains("fetch ISO"), "{a:?}");
    while !f.console().contains(ISO_MARKER) {
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "no {ISO_MARKER} on the console\n{}",
            f.console_tail()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "apply and ISO boot to its marker: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let cached = f.root.join(format!("var/cache/gitvps/iso/{sha}.iso"));
    let cmdline = std::fs::read_to_string(format!("/proc/{}/cmdline", f.qemu_pid().unwrap()))
        .unwrap()
        .replace('\0', " ");
    assert!(
        cmdline.contains(&format!("file={},", cached.display()))
            && cmdline.contains("media=cdrom,readonly=on")
            && !cmdline.contains("-kernel"),
        "booted by the firmware from the read-only CD-ROM: {cmdline}"
    );

    // Eject: the start waits for the installed system's login prompt again. GRUB ignores the
    // ACPI power button, as many installers do: the stop destroys it after the timeout.
    f.set_reconciler("shutdown_timeout_secs", "5");
    f.edit_vps(&boot, "");
    f.converge("eject the ISO");
    f.set_reconciler("shutdown_timeout_secs", "120");
    let out = f.in_guest("cat /root/firstboot-ran; cat /etc/debian_version");
    assert!(out.contains(VPS) && out.contains("\n13."), "{out}");
    assert!(!f.console().contains(ISO_MARKER));
    f.assert_qcow2_alone();
}
