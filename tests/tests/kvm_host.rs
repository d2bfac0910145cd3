#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The KVM host plumbing of `node/kvm-host.sh` against this machine's kernel: the `#gitvps`
//! directives of an args file, and a guest process moved into a cgroup with its CPU share.

use std::path::Path;
use std::process::{Command, Stdio};

const LIB: &str = include_str!("../../reconciler/planner/node/kvm-host.sh");

/// Runs `call` after the library in dash; returns (exit code, stdout, stderr).
fn sh(call: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{LIB}\n{call}"))
        .arg("test")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn args_file(dir: &Path, directives: &str) -> String {
    let p = dir.join("vm.args");
    std::fs::write(
        &p,
        format!("# vm: written by gitvps\n{directives}\n-name\nvm\n-m\n64\n"),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn directives_are_read_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let f = args_file(
        dir.path(),
        "#gitvps cpu-weight=39 cpu-cap=50 tap=gv-vm bridge=br0",
    );
    for (key, want) in [
        ("cpu-weight", "39"),
        ("cpu-cap", "50"),
        ("tap", "gv-vm"),
        ("bridge", "br0"),
        ("weight", ""),
        ("rate", ""),
    ] {
        let (code, out, err) = sh("kvm_directive \"$1\" \"$2\"", &[&f, key]);
        assert_eq!((code, out.trim()), (0, want), "{key}: {err}");
    }
}

/// A process standing in for a guest's QEMU, killed when dropped.
struct Guest(std::process::Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_guest_gets_its_cpu_share_and_cap_in_a_cgroup_where_one_is_writable() {
    let cg = Path::new("/sys/fs/cgroup");
    let v2 = cg.join("cgroup.controllers").is_file();
    let v1 = cg.join("cpu/cpu.shares").is_file();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let guest = Guest(
        Command::new("sleep")
            .arg("300")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = guest.0.id();
    std::fs::write(run.join("qemu.pid"), format!("{pid}\n")).unwrap();
    let vps = format!("gvtest{pid}");
    let f = args_file(dir.path(), "#gitvps cpu-weight=50 cpu-cap=25");
    let (code, out, err) = sh(
        "kvm_limits \"$1\" \"$2\" \"$3\"",
        &[&vps, &run.display().to_string(), &f],
    );
    assert_eq!(code, 0, "{out}{err}");
    let member = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    if v2 && out.contains("cgroup v2") {
        let g = cg.join("gitvps.slice").join(&vps);
        assert!(member.contains(&format!("/gitvps.slice/{vps}")), "{member}");
        assert_eq!(
            std::fs::read_to_string(g.join("cpu.max")).unwrap().trim(),
            "25000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(g.join("cpu.weight"))
                .unwrap()
                .trim(),
            "50"
        );
    } else if v1 && out.contains("cgroup v1") {
        let g = cg.join("cpu/gitvps").join(&vps);
        assert!(member.contains(&format!("/gitvps/{vps}")), "{member}");
        assert_eq!(
            std::fs::read_to_string(g.join("cpu.cfs_quota_us"))
                .unwrap()
                .trim(),
            "25000"
        );
        assert_eq!(
            std::fs::read_to_string(g.join("cpu.shares"))
                .unwrap()
                .trim(),
            "512"
        );
    } else {
        // Neither is writable here: said so, and the guest goes on.
        assert!(out.contains("CPU weight and cap not applied"), "{out}");
    }
    // Once the guest is gone its cgroup goes too.
    drop(guest);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (code, _, err) = sh("kvm_limits_clear \"$1\"", &[&vps]);
    assert_eq!(code, 0, "{err}");
    assert!(!cg.join("gitvps.slice").join(&vps).exists());
    assert!(!cg.join("cpu/gitvps").join(&vps).exists());
}
