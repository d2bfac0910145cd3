#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A KVM guest's `[boot]` ISO for real: a tiny ISO built here (grub-mkrescue) attached by the
//! planner's QEMU arguments as a read-only CD-ROM booted first, seen on the serial console;
//! while the guest runs, the removal of cached ISOs refuses the ISO its QEMU holds open.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gitvps_tests as support;
use planner::driver::kvm::{ArgsVars, DEFAULT_TEMPLATE, Plumbing, args_file, console_log, run_dir};

use support::media::{ISO_MARKER as MARKER, marker_iso};

#[test]
fn a_guest_boots_the_iso_attached_as_its_cdrom_before_its_disk() {
    let dir = tempfile::tempdir().unwrap();
    let iso = marker_iso(dir.path());
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let root = dir.path().join("root");
    let root = root.to_str().unwrap();
    let vps: model::VpsId = "xen10".parse().unwrap();
    std::fs::create_dir_all(run_dir(root, &vps)).unwrap();
    let log = console_log(root, &vps);
    std::fs::create_dir_all(Path::new(&log).parent().unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let vars = ArgsVars {
        vps: vps.as_str(),
        hostname: "xen10.example.net",
        memory_mib: 128,
        vcpus: 1,
        accel: "tcg".into(),
        disk: disk.display().to_string(),
        disk_format: "raw",
        disk_iops: None,
        disk_bps: None,
        kernel: format!("{}/vmlinuz", run_dir(root, &vps)),
        initrd: format!("{}/initrd.img", run_dir(root, &vps)),
        network: "user",
        tap: String::new(),
        mac: planner::driver::kvm::qemu_mac(&vps),
        net: "10.0.2.0/24".into(),
        gateway: "10.0.2.2".into(),
        ip: "10.0.2.15".into(),
        forward_port: Some(port),
        cdrom: iso.display().to_string(),
        boot_cd: true,
        rescue: String::new(),
        seed: String::new(),
        firmware: false,
    };
    let mut env = minijinja::Environment::new();
    env.add_template("kvm.args", DEFAULT_TEMPLATE).unwrap();
    let tmpl = env.get_template("kvm.args").unwrap();
    let plumbing = Plumbing {
        bridge: None,
        cpu_weight: 100,
        cpu_cap: 0,
        ips: &[],
        rate: None,
    };
    let args = args_file(root, &vps, &tmpl, &vars, &plumbing).unwrap();
    assert!(!args.contains("-kernel"), "{args}");
    let argv: Vec<&str> = args.lines().filter(|l| !l.starts_with('#')).collect();
    let started = Instant::now();
    let out = Command::new("qemu-system-x86_64")
        .args(&argv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "qemu: {}\n{args}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(format!("{}/qemu.pid", run_dir(root, &vps))).unwrap();
    let seen = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(MARKER) || started.elapsed() > Duration::from_secs(180) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let held = removal_of(root, &iso);
    let _ = Command::new("kill").arg(pid.trim()).status();
    assert!(seen.contains(MARKER), "no {MARKER} on the console:\n{seen}");
    let why = format!(
        "the ISO {} is in use by process {} (gitvps-xen10): not touching it",
        iso.display(),
        pid.trim()
    );
    assert!(held.contains(&why), "no `{why}` in:\n{held}");
    assert!(iso.exists(), "a held ISO is not removed");
    eprintln!("ISO booted to its marker in {:?}", started.elapsed());
}

/// Runs the node's removal of the cached ISO `iso` (a steps script with its one step, as the
/// planner builds it for a KVM node) and returns its output; the step must fail.
fn removal_of(root: &str, iso: &Path) -> String {
    use planner::desired::{NodeSpec, Store};
    use planner::plan::{Op, Step, StepPaths};
    let spec = NodeSpec {
        node: "kvm1".parse().unwrap(),
        address: "127.0.0.1:22".into(),
        root: root.into(),
        sudo: false,
        hypervisor: model::values::Hypervisor::Kvm,
        accel: None,
        boot_timeout_secs: 0,
        vps_at_once: 1,
        store: Store::File {
            dir: format!("{root}/var/lib/gitvps/disks"),
            format: model::values::ImageFormat::Raw,
        },
        vps: std::collections::BTreeMap::new(),
    };
    let step = Step {
        vps: "kvm1".parse().unwrap(),
        op: Op::RemoveIso {
            sha256: "0".repeat(64),
            path: iso.display().to_string(),
        },
        record: None,
        target: StepPaths {
            disk: String::new(),
            config: String::new(),
        },
    };
    let script = planner::driver::steps_script(&spec, &[step]);
    let out = Command::new("sh")
        .args(["-c", &script, "gitvps-steps", root])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the removal of a held ISO failed not"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
