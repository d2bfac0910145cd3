#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
//! The KVM driver for real: a real sshd as the node (and a second node, with its own sshd, that
//! the guest is moved to), `gitvps apply`, and a Debian guest booted by QEMU (TCG) that the test
//! logs in to with the customer's key. Needs root, QEMU, socat, sudo.
//! The node stores qcow2 images (`gitvps demo --real`, tested in `tests/demo.rs`, boots a raw
//! one).

use gitvps_tests as support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::kvm::{KvmNode, KvmNodeSpec, KvmPeer};

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

/// The test's nodes: `kvm1`, where the VPS starts, and `kvm2` of the same location and pool,
/// where it is moved (issue 19); user-mode networking (the guest's SSH forwarded from
/// 127.0.0.1, the same `forward_base` on both: the moved guest answers on the same port), qcow2
/// images, and the test plan with disk caps, which QEMU gets as throttling options.
struct Fleet {
    node: KvmNode,
    kvm2: KvmPeer,
    ssh_port: u16,
    /// Kills the VPS's QEMU on kvm2 if the test stops with it there (the node handle kills the
    /// one where the VPS is now).
    _kill_kvm2: KillOnDrop,
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
        let kvm = format!("accel = \"tcg\"\nnetwork = \"user\"\nforward_base = {base}\n");
        let node = KvmNode::new(&KvmNodeSpec {
            vps: VPS,
            network: "192.0.2.0/24",
            gateway: "192.0.2.1",
            kvm: &kvm,
            plan_extra: "disk_iops = 2000\ndisk_bandwidth = \"200MB/s\"\nsnapshot_limit = 2\n",
            format: "qcow2",
        });
        let kvm2 = node.add_node("kvm2", "qcow2", &kvm);
        let pidfile = kvm2.root.join(format!("var/lib/gitvps/kvm/{VPS}/qemu.pid"));
        Fleet {
            node,
            kvm2,
            ssh_port: base + 10,
            _kill_kvm2: KillOnDrop(pidfile),
        }
    }

    /// Runs a command in the guest as root over its forwarded SSH.
    fn in_guest(&self, cmd: &str) -> String {
        self.node.in_guest("127.0.0.1", self.ssh_port, cmd)
    }

    /// The guest's qcow2 image, on the node it is on now.
    fn disk(&self) -> PathBuf {
        self.home()
            .join(format!("var/lib/gitvps/disks/{VPS}.qcow2"))
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
    // Step 9's cloud image (cold: minutes of debootstrap, cached under target/) is built while
    // the steps before it run.
    let cloud = std::thread::spawn(support::media::cloud_image);
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

    // 3b. Snapshots through QMP and a restore from a restic backup (one boot).
    snapshot_backup_and_restore(&f);
    // The restore started a new QEMU.
    let pid = f.qemu_pid().unwrap();

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
    revert_while_stopped(&f);

    // 6b. Rescue mode: in and out, the disk unchanged; the own system runs again after it.
    rescue_and_back(&f);

    // 7. Reinstall with another OS of the catalog, and start.
    f.edit_vps("os = \"debian-12\"\n", "os = \"debian-13\"\n");
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

    // The reinstall kept the snapshot (as on LVM); deleted through QMP, the guest running.
    assert_eq!(f.snapshots(), ["before"]);
    let pid = f.qemu_pid().unwrap();
    // The snapshot goes, with the revert that names it.
    f.edit_vps(
        &format!("{SNAPSHOT}\n[revert]\nsnapshot = \"before\"\ngeneration = 1\n"),
        "",
    );
    let a = f.converge("delete the snapshot");
    assert!(
        a.stdout.contains(&format!("{VPS}: delete snapshot before")),
        "{a:?}"
    );
    assert!(f.snapshots().is_empty());
    assert_eq!(f.qemu_pid(), Some(pid), "the guest kept running");

    // 7b. The VPS (no snapshot left) moves to kvm2, where the steps after this one find it.
    move_to_kvm2(&f);

    // 8. Boot media: an ISO the inventory attaches boots first; ejecting it boots the disk.
    iso_boot_and_back(&f);

    // 9. A second VPS installed from a cloud image, configured by cloud-init, on kvm1 (the
    // first one, on kvm2, is stopped in the same apply).
    let t = Instant::now();
    let image = cloud.join().expect("the cloud image was built");
    eprintln!(
        "step 9 waited {:.1} s for the cloud image",
        t.elapsed().as_secs_f64()
    );
    cloud_image_install(&f, &image);
}

/// Step 7b (issue 19, Move): the guest writes a file; `gitvps vps move` puts the VPS on kvm2
/// (same location: the addresses stay); the plan shows the move, and one apply stops the guest on
/// kvm1, streams its qcow2 image to kvm2, starts it there and only then removes it from kvm1.
/// The customer logs in to the guest on kvm2 with its key and finds the file; kvm1 keeps no
/// disk, config, QEMU, run folder or console access of it; the next plan is empty.
fn move_to_kvm2(f: &Fleet) {
    let t = Instant::now();
    let pid = f.qemu_pid().unwrap();
    f.in_guest("echo 'carried by the move' >/root/move-me && sync");
    let r = f.gitvps(&["vps", "move", VPS, "--to", "kvm2"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("{VPS} kvm1 → kvm2, addresses kept ({IP})")),
        "{r:?}"
    );
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(
        p.stdout
            .contains(&format!("move vps {VPS}: kvm1 → kvm2 (disk 15000 MiB)")),
        "{p:?}"
    );
    assert!(!p.stdout.contains("REFUSED"), "{p:?}");
    let ta = Instant::now();
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    let done = (a.stdout.lines())
        .find(|l| l.starts_with(&format!("move {VPS}: kvm1 → kvm2: done (")))
        .unwrap_or_else(|| panic!("no move line: {a:?}"))
        .to_owned();
    eprintln!(
        "move apply: {:.1} s; it printed: {done}",
        ta.elapsed().as_secs_f64()
    );
    f.now_on(&f.kvm2.root);
    let moved = f.qemu_pid().expect("the guest runs on kvm2");
    assert_ne!(moved, pid);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the QEMU on kvm1 is gone"
    );
    let out = f.in_guest("cat /root/move-me; hostname; ip -4 -o addr show scope global");
    assert!(out.starts_with("carried by the move\n"), "{out}");
    assert!(out.contains(&format!("inet {IP}/24")), "{out}");
    f.assert_qcow2_alone();
    // kvm1 holds nothing of it any more.
    let kvm1 = &f.root;
    let disks: Vec<_> = std::fs::read_dir(kvm1.join("var/lib/gitvps/disks"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(disks.is_empty(), "{disks:?}");
    for gone in [
        format!("etc/gitvps/kvm/{VPS}.args"),
        format!("var/lib/gitvps/kvm/{VPS}"),
        format!("var/lib/gitvps/state/{VPS}.json"),
        format!("var/lib/gitvps/console/{VPS}/.ssh/authorized_keys"),
        format!("etc/sudoers.d/gitvps-console-{VPS}"),
    ] {
        assert!(!kvm1.join(&gone).exists(), "kvm1 still has {gone}");
    }
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "the plan after the move is not empty: {p:?}");
    eprintln!(
        "move section (write, vps move, plan, apply, log in on kvm2): {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// The restic password of the rig's backups.
const PASSWORD: &str = "rig-Pa55-9f3k";

/// The VPS's snapshot, as its file declares it.
const SNAPSHOT: &str = "\n[[snapshot]]\nname = \"before\"\ncreated = 2026-12-06T23:00:00Z\n";

impl Fleet {
    /// The internal snapshots of the guest's image.
    fn snapshots(&self) -> Vec<String> {
        support::kvm::qcow2_snapshots(&self.disk())
    }

    /// `debugfs -R "cat PATH"` for each path, on one raw copy of the (free) image.
    fn files_on_disk(&self, paths: &[&str]) -> Vec<String> {
        let raw = self.dir.path().join("inspect.raw");
        let out = Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(self.disk())
            .arg(&raw)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let cat = |path: &str| {
            let out = Command::new("debugfs")
                .args(["-R", &format!("cat {path}")])
                .arg(&raw)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let files = paths.iter().map(|p| cat(p)).collect();
        std::fs::remove_file(&raw).unwrap();
        files
    }
}

/// Issue 19 on a real guest: a snapshot taken through QMP while it runs; the guest writes a file,
/// is backed up with real restic (a local repository), the file is deleted, and `[restore]`
/// (as an admin commit would write it) brings the disk back: the guest boots with the file.
fn snapshot_backup_and_restore(f: &Fleet) {
    let t = Instant::now();
    let pid = f.qemu_pid().unwrap();
    f.in_guest("echo 'kept by the backup' >/root/restore-me && sync");

    // A snapshot, taken through QMP: the same QEMU keeps running.
    f.edit_vps(
        "appliance = \"probe\"\n",
        &format!("appliance = \"probe\"\n{SNAPSHOT}"),
    );
    let a = f.converge("take a snapshot");
    assert!(
        a.stdout.contains(&format!("{VPS}: take snapshot before")),
        "{a:?}"
    );
    assert_eq!(f.snapshots(), ["before"]);
    assert_eq!(f.qemu_pid(), Some(pid), "the guest kept running");

    // A backup with real restic while the guest runs.
    let repo = f.dir.path().join("restic-repo");
    let init = Command::new("restic")
        .arg("-r")
        .arg(&repo)
        .args(["--no-cache", "init"])
        .env("RESTIC_PASSWORD", PASSWORD)
        .output()
        .expect("restic runs (scripts/deps install test installs it)");
    assert!(init.status.success(), "{}", support::output_text(&init));
    let settings = f.repo.join("gitvps.toml");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!(
        "\n[backup]\n[backup.local]\npath = \"{}\"\n",
        repo.display()
    ));
    std::fs::write(&settings, text).unwrap();
    f.edit_vps(
        SNAPSHOT,
        &format!("{SNAPSHOT}\n[backup]\nevery = \"daily\"\nhour = 0\nkeep_daily = 7\n"),
    );
    let env = [("GITVPS_RESTIC_PASSWORD", PASSWORD)];
    let tb = Instant::now();
    let r = f.gitvps_env(&["backup", "run"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    eprintln!(
        "backup of the running guest: {:.1} s",
        tb.elapsed().as_secs_f64()
    );
    assert_eq!(f.qemu_pid(), Some(pid), "the guest kept running");
    let l = f.gitvps_env(&["backup", "list", "--json"], &env);
    assert_eq!(l.code, 0, "{l:?}");
    let v: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let id = v[VPS][0]["id"].as_str().unwrap().to_owned();

    // The file is deleted; the restore brings it back, and the guest boots from it.
    f.in_guest("rm /root/restore-me && sync");
    f.edit_vps(
        SNAPSHOT,
        &format!(
            "{SNAPSHOT}\n[restore]\nsnapshot = \"{}\"\ngeneration = 1\n",
            &id[..8]
        ),
    );
    let tr = Instant::now();
    let a = f.converge_env("restore", &env);
    assert!(
        a.stdout.contains(&format!("{VPS}: restore backup")),
        "{a:?}"
    );
    assert_ne!(f.qemu_pid(), Some(pid), "restarted");
    f.wait_for_login(1);
    let out = f.in_guest("cat /root/restore-me");
    assert_eq!(out, "kept by the backup\n");
    eprintln!(
        "restore to the guest's SSH: {:.1} s; the whole section: {:.1} s",
        tr.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    // The backup held the image with its snapshot.
    assert_eq!(f.snapshots(), ["before"]);
    // What the revert later undoes.
    f.in_guest("echo 'after the snapshot' >/root/after-snapshot && sync");
}

/// The guest is stopped: `[revert]` goes back to the snapshot with `qemu-img snapshot -a` (no
/// boot): the file written after it is gone, the one before it is there.
fn revert_while_stopped(f: &Fleet) {
    f.edit_vps(
        SNAPSHOT,
        &format!("{SNAPSHOT}\n[revert]\nsnapshot = \"before\"\ngeneration = 1\n"),
    );
    let a = f.converge("revert");
    assert!(
        a.stdout.contains(&format!(
            "{VPS}: revert the disk to snapshot before (generation 1)"
        )),
        "{a:?}"
    );
    assert_eq!(f.qemu_pid(), None, "a stopped VPS stays stopped");
    assert_eq!(
        f.files_on_disk(&["/root/after-snapshot", "/root/restore-me"]),
        ["", "kept by the backup\n"]
    );
    assert_eq!(f.snapshots(), ["before"]);
}

/// Step 8 (issue 18): the customer's ISO, fetched by the node's curl from an HTTP server on
/// loopback and checked against its sha256, boots before the disk (its marker on the serial
/// console, and no login prompt awaited by the start); ejecting it brings the installed system
/// back with its files, and removes the ISO from the node's cache.
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
    let cached = f.home().join(format!("var/cache/gitvps/iso/{sha}.iso"));
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
    // No VPS uses the ISO any more: the same apply removed it from the cache, after the guest
    // was restarted without it (its QEMU let go of it).
    assert!(!cached.exists(), "the ejected ISO is still cached");
    f.assert_qcow2_alone();
}

/// The sha256 of a file (the guest's image), by coreutils' `sha256sum` (the debug build's own
/// hashing of a GiB-sized image takes tens of seconds).
fn file_sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Step 6b (issue 18, rescue mode), from the stopped VPS: `rescue = true` builds the rescue
/// system and boots it with the VPS's disk as the second disk, not mounted; the customer logs in
/// with its key on the VPS's own forwarded port, mounts the disk read-only and reads the file
/// the guest wrote before. Leaving (stopped) removes the rescue image; the disk's bytes are the
/// same before, during and after; then the VPS's own system boots with its files.
fn rescue_and_back(f: &Fleet) {
    let t = Instant::now();
    let disk = f.disk();
    let before = file_sha256(&disk);
    f.edit_vps("power = \"stopped\"\n", "rescue = true\n");
    let a = f.converge("enter rescue");
    assert!(
        a.stdout
            .contains(&format!("{VPS}: build the rescue system (debian-12"))
            && a.stdout.contains(&format!("{VPS}: start domain")),
        "{a:?}"
    );
    let rescue_dir = f.root.join("var/lib/gitvps/rescue");
    let list = || -> Vec<String> {
        std::fs::read_dir(&rescue_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".img"))
            .collect()
    };
    let images = list();
    assert!(
        images.len() == 1 && images[0].starts_with(&format!("{VPS}.")),
        "{images:?}"
    );
    eprintln!(
        "enter rescue (build and boot): {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // In the rescue system: its own root; the VPS's disk (its NVMe serial is the VPS id) is
    // not mounted until the customer mounts it, read-only.
    let out = f.in_guest(&format!(
        "set -e; findmnt -no LABEL /; dev=; for d in /sys/block/nvme*n1; do \
         [ \"$(tr -d ' ' <\"$d/device/serial\")\" = {VPS} ] && dev=/dev/${{d##*/}}; done; \
         echo \"disk $dev\"; if grep -q \"^$dev \" /proc/mounts; then echo MOUNTED; fi; \
         mkdir -p /mnt/vps; mount -o ro,noload \"$dev\" /mnt/vps; cat /mnt/vps/root/restore-me; \
         umount /mnt/vps"
    ));
    assert!(out.starts_with("gitvps-rescue\ndisk /dev/nvme"), "{out}");
    assert!(!out.contains("MOUNTED"), "{out}");
    assert!(out.ends_with("kept by the backup\n"), "{out}");
    assert_eq!(
        file_sha256(&disk),
        before,
        "the rescue system wrote the disk"
    );

    // Leave, to a stopped VPS: the rescue image goes, the disk is as it was.
    let tl = Instant::now();
    f.edit_vps("rescue = true\n", "power = \"stopped\"\n");
    let a = f.converge("leave rescue");
    assert!(
        a.stdout
            .contains(&format!("{VPS}: remove the rescue system")),
        "{a:?}"
    );
    assert_eq!(f.qemu_pid(), None);
    assert_eq!(list(), Vec::<String>::new());
    assert_eq!(
        file_sha256(&disk),
        before,
        "entering or leaving wrote the disk"
    );
    eprintln!("leave rescue: {:.1} s", tl.elapsed().as_secs_f64());

    // The VPS's own system boots again, with its file.
    f.edit_vps("power = \"stopped\"\n", "");
    f.converge("own system after rescue");
    let out = f.in_guest("findmnt -no LABEL /; cat /root/restore-me");
    assert_eq!(out, "gitvps-root\nkept by the backup\n");
    eprintln!(
        "rescue section (enter, log in, leave, own boot): {:.1} s",
        t.elapsed().as_secs_f64()
    );
}

/// The second VPS of the rig: installed from a cloud image and its NoCloud seed.
const CLOUD_VPS: &str = "xen11";
const CLOUD_IP: &str = "192.0.2.11";

/// Kills the cloud VPS's QEMU when dropped, whatever the test did (the rig kills only its own).
struct KillOnDrop(PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
        }
    }
}

/// Step 9 (issue 18): a Debian root with cloud-init (debootstrap, cached under target/) made a
/// qcow2 image, served on loopback with its sha256 as the rig repo's `debian-12-cloud`
/// (`method = "cloud-image"`); `gitvps apply` installs a second VPS from it (fetched, checked,
/// written, grown, its seed attached as a `cidata` volume) while the first one is stopped; the
/// customer logs in with the key the seed gave root, and finds the host name, the IPv4 and IPv6
/// addresses, the grown disk and the appliance's first boot the seed set.
fn cloud_image_install(f: &Fleet, image: &Path) {
    use support::media::serve_bytes;
    let sha = file_sha256(image);
    let body = std::fs::read(image).unwrap();
    let size = body.len();
    let base = serve_bytes(body);
    let os = f.repo.join("bootstraps/os/debian-12-cloud");
    std::fs::create_dir_all(&os).unwrap();
    std::fs::write(
        os.join("meta.toml"),
        format!(
            "name = \"Debian 12 (cloud image)\"\nfamily = \"debian\"\nmethod = \"cloud-image\"\nrelease = \"bookworm\"\n\n[cloud_image]\nurl = \"{base}/debian-12-cloudinit.qcow2\"\nsha256 = \"{sha}\"\nsize = \"{} MiB\"\nformat = \"qcow2\"\nboot = \"kernel\"\n",
            (size >> 20) + 1
        ),
    )
    .unwrap();
    let pools = f.repo.join("pools.toml");
    let text = std::fs::read_to_string(&pools).unwrap();
    std::fs::write(&pools, format!("{text}ipv6 = \"2001:db8:66::/48\"\n")).unwrap();
    std::fs::write(
        f.repo.join(format!("inventory/vps/{CLOUD_VPS}.toml")),
        format!(
            "customer = \"c-0001\"\nproduct = \"test\"\nnode = \"kvm1\"\nips = [\"{CLOUD_IP}\", \"2001:db8:66:11::/64\"]\nhostname = \"{CLOUD_VPS}.example.net\"\nos = \"debian-12-cloud\"\nappliance = \"probe\"\ncreated = 2026-01-01\nexpires = 2099-01-01\n"
        ),
    )
    .unwrap();
    // The first guest is stopped in the same apply: one TCG guest at a time.
    f.edit_vps(
        "os = \"debian-13\"\n",
        "os = \"debian-13\"\npower = \"stopped\"\n",
    );
    let _kill = KillOnDrop(
        f.root
            .join(format!("var/lib/gitvps/kvm/{CLOUD_VPS}/qemu.pid")),
    );
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(
        p.stdout.contains(&format!(
            "{CLOUD_VPS}: install debian-12-cloud with probe from cloud image {base}/debian-12-cloudinit.qcow2 (sha256 {sha}), NoCloud seed gitvps-{CLOUD_VPS}-0"
        )),
        "{p:?}"
    );
    let ta = Instant::now();
    f.converge("install from a cloud image");
    eprintln!(
        "cloud image install: apply to the login prompt {:.1} s",
        ta.elapsed().as_secs_f64()
    );
    assert_eq!(f.qemu_pid(), None, "the first guest is stopped");
    let seed = f.root.join(format!("var/lib/gitvps/seed/{CLOUD_VPS}"));
    assert!(seed.join("user-data").is_file() && seed.join("network-config").is_file());
    let port = f.ssh_port + 1;
    let out = f.node.in_guest(
        "127.0.0.1",
        port,
        "timeout 300 sh -c 'until [ -e /var/lib/cloud/instance/boot-finished ]; do sleep 1; done'; \
         cloud-init status; hostname; hostname -f; ip -o addr show scope global; \
         cat /var/lib/cloud/data/instance-id; cat /root/firstboot-ran; \
         ip -6 route show default; lsblk -bdno SIZE /dev/nvme0n1; df -B1 --output=size / | tail -n 1",
    );
    eprintln!(
        "cloud image install: apply to cloud-init done and SSH {:.1} s",
        ta.elapsed().as_secs_f64()
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"status: done"),
        "cloud-init finished: {out}"
    );
    assert_eq!(
        lines.get(1),
        Some(&CLOUD_VPS),
        "the seed's host name: {out}"
    );
    assert!(out.contains(&format!("{CLOUD_VPS}.example.net\n")), "{out}");
    assert!(out.contains(&format!("inet {CLOUD_IP}/24")), "{out}");
    assert!(out.contains("inet6 2001:db8:66:11::1/64"), "{out}");
    // The default route through the seed's gateway (beside the one QEMU's user network
    // announces, fe80::2).
    assert!(
        out.contains("via fe80::1 dev"),
        "the seed's IPv6 gateway: {out}"
    );
    assert!(out.contains(&format!("gitvps-{CLOUD_VPS}-0\n")), "{out}");
    assert!(
        out.contains(&format!("{CLOUD_VPS} {CLOUD_IP}/24")),
        "the appliance's first boot ran: {out}"
    );
    let disk: u64 = lines[lines.len() - 2].trim().parse().unwrap();
    assert_eq!(disk, 15000 << 20, "the disk has the product's size: {out}");
    let fs: u64 = lines[lines.len() - 1].trim().parse().unwrap();
    assert!(fs > 10 << 30, "cloud-init grew the root filesystem: {out}");
}
