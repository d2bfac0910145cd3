//! The reconciler end to end: real sshd, simulated dom0s (node-sim), the gitvps binary.
//! Each scenario of the reconciler issue is one test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use std::time::{Duration, Instant};

use support::fleet::Fleet;

fn two_vps() -> Fleet {
    let f = Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen11", "node1", "192.0.2.11", "power = \"stopped\"\n");
    f
}

#[test]
fn create_then_a_second_plan_is_empty() {
    let f = two_vps();
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(p.stdout.contains("+ xen10: create disk (30 GiB)"), "{p:?}");
    assert!(p.stdout.contains("+ xen10: start domain"), "{p:?}");
    assert!(
        !p.stdout.contains("xen11: start"),
        "a stopped VPS is not started: {p:?}"
    );
    let a = f.converge();
    assert!(a.stdout.contains("node1: applied 7 step(s)"), "{a:?}");
    assert!(f.domain("node1", "xen10").is_some());
    assert!(f.domain("node1", "xen11").is_none());
    assert_eq!(f.lv("node1", "xen10"), Some(30 << 30));
    assert_eq!(f.lv("node1", "xen11"), Some(30 << 30));
    let cfg = std::fs::read_to_string(f.root("node1").join("etc/xen/gitvps/xen10.cfg")).unwrap();
    assert!(
        cfg.contains(&format!(
            "target={}/dev/vg0/xen10",
            f.root("node1").display()
        )),
        "{cfg}"
    );
    assert!(cfg.contains("ip=192.0.2.10"), "{cfg}");
    // Planning twice gives the same bytes.
    assert_eq!(
        f.gitvps(&["plan", "--json"]).stdout,
        f.gitvps(&["plan", "--json"]).stdout
    );
}

#[test]
fn a_domain_destroyed_out_of_band_is_recreated() {
    let f = two_vps();
    f.converge();
    let r = f.on_node("node1", "xl", &["destroy", "xen10"]);
    assert_eq!(r.code, 0, "{r:?}");
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 2);
    assert!(
        p.stdout.contains("node1 (") && p.stdout.contains("  + xen10: start domain\n"),
        "{p:?}"
    );
    assert!(
        p.stdout
            .contains("Plan: 1 to add, 0 to change, 0 to stop or remove"),
        "{p:?}"
    );
    f.converge();
    assert!(f.domain("node1", "xen10").is_some());
}

#[test]
fn power_stopped_shuts_the_domain_down_and_running_starts_it() {
    let f = two_vps();
    f.converge();
    f.edit(
        "inventory/vps/xen10.toml",
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\npower = \"stopped\"\n",
    );
    let a = f.converge();
    assert!(
        a.stdout
            .contains("- xen10: shut down domain (power = \"stopped\")"),
        "{a:?}"
    );
    assert!(f.domain("node1", "xen10").is_none());
    assert!(f.lv("node1", "xen10").is_some(), "the disk stays");
    f.edit(
        "inventory/vps/xen10.toml",
        "power = \"stopped\"",
        "power = \"running\"",
    );
    f.converge();
    assert!(f.domain("node1", "xen10").is_some());
}

#[test]
fn reboot_and_fsck_counters_act_once() {
    let f = two_vps();
    f.converge();
    let before = f.domain("node1", "xen10").unwrap();
    f.vps(
        "xen10",
        "node1",
        "192.0.2.10",
        "[actions]\nreboot = 1\nfsck = 0\n",
    );
    let a = f.converge();
    assert!(a.stdout.contains("! xen10: reboot (generation 1)"), "{a:?}");
    let after = f.domain("node1", "xen10").unwrap();
    assert_eq!(
        after["reboots"].as_u64(),
        Some(before["reboots"].as_u64().unwrap_or(0) + 1),
        "{after}"
    );
    assert_eq!(f.record("node1", "xen10")["reboot"], 1);
    // Applying again does not reboot again.
    let again = f.gitvps(&["apply"]);
    assert!(again.stdout.contains("node1: no changes"), "{again:?}");
    assert_eq!(
        f.domain("node1", "xen10").unwrap()["reboots"],
        after["reboots"]
    );

    // fsck needs a filesystem: mark the disk as holding an installed OS, as the OS
    // installer records it.
    let rec = f.root("node1").join("var/lib/gitvps/state/xen10.json");
    let text = std::fs::read_to_string(&rec)
        .unwrap()
        .replace("\"installed\":false", "\"installed\":true");
    std::fs::write(&rec, text).unwrap();
    f.vps(
        "xen10",
        "node1",
        "192.0.2.10",
        "[actions]\nreboot = 1\nfsck = 1\n",
    );
    let a = f.converge();
    let out = &a.stdout;
    let stop = out
        .find("- xen10: shut down domain (to check its filesystem)")
        .expect(out);
    let fsck = out.find("! xen10: fsck disk (generation 1)").expect(out);
    let start = out.find("+ xen10: start domain").expect(out);
    assert!(stop < fsck && fsck < start, "{out}");
    assert_eq!(f.record("node1", "xen10")["fsck"], 1);
    assert!(f.domain("node1", "xen10").is_some(), "power restored");
}

#[test]
fn growing_a_disk_stops_grows_and_restarts() {
    let f = two_vps();
    f.converge();
    f.edit("products.toml", "disk = \"30720 MiB\"", "disk = \"40 GiB\"");
    let a = f.converge();
    assert!(
        a.stdout.contains("~ xen10: grow disk 30 GiB → 40 GiB"),
        "{a:?}"
    );
    assert_eq!(f.lv("node1", "xen10"), Some(40 << 30));
    assert_eq!(f.lv("node1", "xen11"), Some(40 << 30));
    assert!(f.domain("node1", "xen10").is_some());
    // Shrinking is refused: no step, a note.
    f.edit("products.toml", "disk = \"40 GiB\"", "disk = \"20 GiB\"");
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "a refused shrink is a note, not a step: {p:?}");
    assert!(p.stdout.contains("shrinking is refused"), "{p:?}");
    assert!(!p.stdout.contains("grow disk"), "{p:?}");
    f.gitvps(&["apply"]);
    assert_eq!(f.lv("node1", "xen10"), Some(40 << 30));
}

#[test]
fn suspension_stops_and_keeps_everything() {
    let f = two_vps();
    f.converge();
    f.edit(
        "inventory/vps/xen10.toml",
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\nstate = \"suspended\"\n",
    );
    let a = f.converge();
    assert!(
        a.stdout.contains("- xen10: shut down domain (suspended)"),
        "{a:?}"
    );
    assert!(f.domain("node1", "xen10").is_none());
    assert!(f.lv("node1", "xen10").is_some());
    assert!(f.root("node1").join("etc/xen/gitvps/xen10.cfg").exists());
}

#[test]
fn a_destroyed_vps_keeps_its_disk_until_retention_has_passed() {
    let f = two_vps();
    f.converge();
    f.edit(
        "inventory/vps/xen10.toml",
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\nstate = \"destroyed\"\n",
    );
    let a = f.converge();
    assert!(
        a.stdout
            .contains("- xen10: destroy domain (state = \"destroyed\")"),
        "{a:?}"
    );
    assert!(a.stdout.contains("- xen10: remove domain config"), "{a:?}");
    assert!(f.domain("node1", "xen10").is_none());
    assert!(f.lv("node1", "xen10").is_some(), "kept during retention");
    let p = f.gitvps(&["plan"]);
    assert!(p.stdout.contains("xen10: disk kept until"), "{p:?}");
    // Destroyed long ago: the disk goes.
    f.edit(
        "inventory/vps/xen10.toml",
        "state = \"destroyed\"\n",
        "state = \"destroyed\"\ndestroyed = 2026-01-02\n",
    );
    let a = f.converge();
    assert!(
        a.stdout.contains(
            "- xen10: remove disk (destroyed, retention of 7 days passed): ERASES THE DISK"
        ),
        "{a:?}"
    );
    assert!(f.lv("node1", "xen10").is_none());
    assert!(f.lv("node1", "xen11").is_some(), "other disks stay");
}

#[test]
fn one_unreachable_node_does_not_stop_the_other_and_nothing_is_deleted() {
    let f = Fleet::new(&["node1", "node2"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen20", "node2", "192.0.2.20", "");
    f.converge();
    // node2 goes away; xen10 asks for a reboot; xen20 leaves the inventory.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    f.edit(
        "inventory/nodes/node2.toml",
        &format!("port = {}", f.sshd.port),
        &format!("port = {closed}"),
    );
    f.vps("xen10", "node1", "192.0.2.10", "[actions]\nreboot = 1\n");
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 1, "an unreachable node makes plan fail: {p:?}");
    assert!(
        p.stdout.contains("node2 (127.0.0.1:") && p.stdout.contains("UNREACHABLE"),
        "{p:?}"
    );
    assert!(p.stdout.contains("! xen10: reboot (generation 1)"), "{p:?}");
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(a.stdout.contains("node1: applied 1 step(s)"), "{a:?}");
    assert!(
        a.stdout.contains("node2: UNREACHABLE, nothing done"),
        "{a:?}"
    );
    assert!(f.domain("node2", "xen20").is_some() && f.lv("node2", "xen20").is_some());
    // Back, and with xen20 gone from the repo: it is left alone, never deleted.
    f.edit(
        "inventory/nodes/node2.toml",
        &format!("port = {closed}"),
        &format!("port = {}", f.sshd.port),
    );
    std::fs::remove_file(f.repo.join("inventory/vps/xen20.toml")).unwrap();
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "{p:?}");
    assert!(
        p.stdout.contains("  ! domain `xen20` ")
            && p.stdout
                .contains("here and is not in the inventory: left untouched"),
        "{p:?}"
    );
    f.gitvps(&["apply"]);
    assert!(f.domain("node2", "xen20").is_some() && f.lv("node2", "xen20").is_some());
}

#[test]
fn a_wrong_host_key_is_refused_and_nothing_is_done() {
    let f = two_vps();
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHh0WEiuJeApExG8OMyVSJj//DyqmDFFYkKtkZE6Et81";
    f.edit(
        "inventory/nodes/node1.toml",
        &f.sshd.host_key.clone(),
        other,
    );
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout
            .contains("node1: UNREACHABLE, nothing done: node1: host key mismatch"),
        "{a:?}"
    );
    assert!(f.lv("node1", "xen10").is_none());
}

#[test]
fn a_saved_plan_is_refused_when_the_node_moved() {
    let f = two_vps();
    let plan = f.dir.path().join("plan.json");
    let p = f.gitvps(&["plan", "--out", plan.to_str().unwrap()]);
    assert_eq!(p.code, 2, "{p:?}");
    // Someone creates a disk by hand in between.
    assert_eq!(
        f.on_node("node1", "lvcreate", &["-L", "1G", "-n", "manual", "vg0"])
            .code,
        0
    );
    let a = f.gitvps(&["apply", plan.to_str().unwrap()]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout
            .contains("node1: REFUSED, nothing done: node1 changed since the plan was made"),
        "{a:?}"
    );
    assert!(f.lv("node1", "xen10").is_none());
    // A fresh plan is applied.
    let p = f.gitvps(&["plan", "--out", plan.to_str().unwrap()]);
    assert_eq!(p.code, 2);
    let a = f.gitvps(&["apply", plan.to_str().unwrap()]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(f.lv("node1", "xen10").is_some());
}

#[test]
fn a_failing_step_stops_that_node_names_it_and_a_rerun_converges() {
    let f = Fleet::new(&["node1", "node2"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen20", "node2", "192.0.2.20", "");
    // xl create fails on node1 until the flag file is removed.
    let flag = f.dir.path().join("break-xl");
    std::fs::write(&flag, "").unwrap();
    f.wrap("node1", "xl", &format!("if [ \"$1\" = create ] && [ -e '{}' ]; then echo 'libxl: error: simulated failure' >&2; exit 3; fi", flag.display()));
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout.contains(
            "node1: 2 step(s) done, 1 FAILED, 1 skipped\n  FAILED xen10: start domain, exit 1"
        ),
        "{a:?}"
    );
    assert!(
        a.stdout.contains("| libxl: error: simulated failure"),
        "{a:?}"
    );
    assert!(
        a.stdout.contains("node2: applied 4 step(s)"),
        "the other node goes on: {a:?}"
    );
    std::fs::remove_file(&flag).unwrap();
    let a = f.converge();
    assert!(
        a.stdout
            .contains("node1: applied 2 step(s)\n  + xen10: start domain\n  + xen10: console access for 1 key(s)"),
        "{a:?}"
    );
}

#[test]
fn a_killed_connection_mid_apply_then_a_rerun_converges() {
    let f = two_vps();
    let marker = f.dir.path().join("xl-create-started");
    f.wrap(
        "node1",
        "xl",
        &format!(
            "if [ \"$1\" = create ]; then touch '{}'; sleep 2; fi",
            marker.display()
        ),
    );
    let mut child = f
        .command(&["apply"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "apply never reached xl create");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The node may still be finishing; the re-run waits for its lock and converges.
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "{p:?}");
    assert!(f.domain("node1", "xen10").is_some());
}

#[test]
fn two_applies_at_once_do_not_interleave() {
    let f = two_vps();
    let log = f.dir.path().join("xl.log");
    f.wrap(
        "node1",
        "xl",
        &format!(
            "echo \"$*\" >> '{}'; [ \"$1\" = create ] && sleep 1",
            log.display()
        ),
    );
    f.converge();
    // Two applies at once, each with work to do: xen12 is new.
    f.vps("xen12", "node1", "192.0.2.12", "");
    let c1 = f
        .command(&["apply"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let c2 = f
        .command(&["apply"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let o1 = c1.wait_with_output().unwrap();
    let o2 = c2.wait_with_output().unwrap();
    assert!(
        o1.status.success(),
        "{}",
        String::from_utf8_lossy(&o1.stdout)
    );
    assert!(
        o2.status.success(),
        "{}",
        String::from_utf8_lossy(&o2.stdout)
    );
    let creates = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("create") && l.contains("xen12"))
        .count();
    assert_eq!(
        creates, 1,
        "xen12 was created once, by one of the two applies"
    );
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "{p:?}");
}

#[test]
fn shell_metacharacters_never_reach_the_node() {
    let f = two_vps();
    let pwned = f.dir.path().join("pwned");
    f.edit(
        "inventory/vps/xen10.toml",
        "hostname = \"xen10.example.net\"",
        &format!("hostname = \"x;touch {}\"", pwned.display()),
    );
    let p = f.gitvps(&["apply"]);
    assert_eq!(p.code, 1, "{p:?}");
    assert!(
        p.stderr
            .contains("inventory/vps/xen10.toml:5:12: hostname:"),
        "{p:?}"
    );
    assert!(p.stderr.contains("nothing was changed"), "{p:?}");
    assert!(!pwned.exists());
    assert!(f.lv("node1", "xen10").is_none(), "nothing was done");
}

#[test]
fn a_file_backend_node_uses_image_files() {
    let f = Fleet::new(&["nodef"]);
    f.vps("xen30", "nodef", "192.0.2.30", "");
    f.converge();
    let img = f.root("nodef").join("var/lib/gitvps/disks/xen30.img");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 30 << 30);
    assert!(f.domain("nodef", "xen30").is_some());
}

#[test]
fn a_node_answering_garbage_is_unreachable_not_empty() {
    let f = two_vps();
    f.converge();
    // The observe pastes `lvs`'s report into its own: a banner there breaks the whole report.
    f.wrap("node1", "lvs", "if [ \"$1\" = --reportformat ]; then echo 'Welcome to node1!'; echo '{ not json'; exit 0; fi");
    f.edit(
        "inventory/vps/xen10.toml",
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\nstate = \"destroyed\"\ndestroyed = 2026-01-02\n",
    );
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 1, "{p:?}");
    assert!(
        p.stdout.contains(
            "UNREACHABLE: node1: the observe script printed something that is not its JSON report"
        ),
        "{p:?}"
    );
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        f.lv("node1", "xen10").is_some(),
        "nothing is destroyed on a node that answers garbage"
    );
    assert!(f.domain("node1", "xen10").is_some());
}

/// The OS catalog of these tests: `debian-12` with scripts that build a tiny root fast, run by
/// the real `bootstraps/lib/install`. A flag file makes `install_os` fail like a dead mirror.
fn with_test_os(f: &Fleet) -> std::path::PathBuf {
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lib = f.repo.join("bootstraps/lib");
    std::fs::create_dir_all(&lib).unwrap();
    for e in std::fs::read_dir(top.join("bootstraps/lib")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), lib.join(e.file_name())).unwrap();
    }
    let os = f.repo.join("bootstraps/os/debian-12");
    std::fs::create_dir_all(&os).unwrap();
    let flag = f.dir.path().join("mirror-down");
    std::fs::write(os.join("meta.toml"), "name = \"Test Debian\"\nfamily = \"debian\"\nmethod = \"debootstrap\"\nrelease = \"bookworm\"\n").unwrap();
    std::fs::write(
        os.join("install_os"),
        format!(
            "#!/bin/sh\nset -eu\nif [ -e '{}' ]; then echo 'E: Failed getting release file from the mirror'; exit 1; fi\nmkdir -p \"$TARGET/etc\" \"$TARGET/root/.ssh\"\necho 'Test OS' >\"$TARGET/etc/os-release\"\n",
            flag.display()
        ),
    )
    .unwrap();
    std::fs::write(os.join("custom_os"), "#!/bin/sh\nset -eu\nprintf '%s\\n' \"$VPS_HOSTNAME\" >\"$TARGET/etc/hostname\"\nprintf '%s\\n' \"$VPS_SSH_KEYS\" >\"$TARGET/root/.ssh/authorized_keys\"\n").unwrap();
    std::fs::write(
        os.join("setup_network"),
        "#!/bin/sh\nset -eu\nprintf '%s\\n' \"$VPS_IPV4\" >\"$TARGET/etc/gitvps-addresses\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for script in ["install_os", "custom_os", "setup_network"] {
        std::fs::set_permissions(os.join(script), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    flag
}

/// A file inside the ext4 filesystem of a disk, read with debugfs (no mount).
fn read_in_disk(disk: &std::path::Path, path: &str) -> String {
    let out = std::process::Command::new("debugfs")
        .args(["-R", &format!("cat {path}")])
        .arg(disk)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_new_vps_gets_its_os_and_a_reinstall_erases_and_installs_again() {
    let f = Fleet::new(&["node1"]);
    with_test_os(&f);
    f.vps("xen10", "node1", "192.0.2.10", "");
    let a = f.converge();
    let out = &a.stdout;
    let create = out.find("+ xen10: create disk (30 GiB)").expect(out);
    let install = out.find("+ xen10: install debian-12").expect(out);
    let start = out.find("+ xen10: start domain").expect(out);
    assert!(create < install && install < start, "{out}");
    let disk = f.root("node1").join("dev/vg0/xen10");
    assert_eq!(read_in_disk(&disk, "/etc/hostname"), "xen10.example.net\n");
    assert!(read_in_disk(&disk, "/root/.ssh/authorized_keys").contains("jane@laptop"));
    assert_eq!(
        read_in_disk(&disk, "/etc/gitvps-addresses"),
        "192.0.2.10/24\n"
    );
    assert_eq!(f.record("node1", "xen10")["installed"], true);
    assert!(
        !f.root("node1").join("var/lib/gitvps/build/xen10").exists(),
        "the build folder is cleaned up"
    );

    // Reinstall: only on a bumped counter, marked as erasing, with today's inventory.
    f.edit(
        "inventory/vps/xen10.toml",
        "hostname = \"xen10.example.net\"",
        "hostname = \"fresh.example.net\"",
    );
    let p = f.gitvps(&["plan"]);
    assert!(
        !p.stdout.contains("install"),
        "a changed hostname alone reinstalls nothing: {p:?}"
    );
    f.vps("xen10", "node1", "192.0.2.10", "[actions]\nreinstall = 1\n");
    f.edit(
        "inventory/vps/xen10.toml",
        "hostname = \"xen10.example.net\"",
        "hostname = \"fresh.example.net\"",
    );
    let p = f.gitvps(&["plan"]);
    assert!(
        p.stdout
            .contains("! xen10: reinstall debian-12 (generation 1): ERASES THE DISK"),
        "{p:?}"
    );
    assert!(p.stdout.contains("1 step(s) ERASE A DISK"), "{p:?}");
    f.converge();
    assert_eq!(read_in_disk(&disk, "/etc/hostname"), "fresh.example.net\n");
    assert_eq!(f.record("node1", "xen10")["reinstall"], 1);
}

#[test]
fn a_failing_install_names_the_step_keeps_the_disk_lets_others_go_on_and_is_retried() {
    let f = Fleet::new(&["node1"]);
    let flag = with_test_os(&f);
    f.vps("xen11", "node1", "192.0.2.11", "[actions]\nreboot = 0\n");
    f.converge();
    // A new VPS while the mirror is down, and a reboot of the other one.
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen11", "node1", "192.0.2.11", "[actions]\nreboot = 1\n");
    std::fs::write(&flag, "").unwrap();
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 1, "{a:?}");
    assert!(
        a.stdout.contains("FAILED xen10: install debian-12, exit 1"),
        "{a:?}"
    );
    assert!(
        a.stdout
            .contains("| gitvps: install_os failed with exit code 1; its last lines:"),
        "{a:?}"
    );
    assert!(
        a.stdout
            .contains("| E: Failed getting release file from the mirror"),
        "{a:?}"
    );
    assert!(
        a.stdout.contains("+ xen10: start domain  (skipped)"),
        "{a:?}"
    );
    assert!(
        a.stdout.contains("! xen11: reboot (generation 1)  (done)"),
        "the other VPS went on: {a:?}"
    );
    assert!(
        f.lv("node1", "xen10").is_some(),
        "the disk is left for inspection"
    );
    assert!(f.domain("node1", "xen10").is_none());
    // The mirror is back: a re-run installs and starts it.
    std::fs::remove_file(&flag).unwrap();
    let a = f.converge();
    assert!(a.stdout.contains("+ xen10: install debian-12"), "{a:?}");
    assert!(f.domain("node1", "xen10").is_some());
}

fn ssh_as(f: &Fleet, user: &str, key: &std::path::Path, extra: &[&str]) -> support::fleet::Run {
    support::ssh_client(key, f.sshd.port)
        .args(extra)
        .arg(format!("{user}@127.0.0.1"))
        .arg("id")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into()
}

#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn the_console_user_reaches_the_console_and_nothing_else() {
    support::require_root();
    let f = Fleet::new(&["node1"]);
    let customer_key = f.dir.path().join("customer_key");
    let customer_pub = support::keygen(&customer_key, "jane@laptop");
    let other_key = f.dir.path().join("other_key");
    let other_pub = support::keygen(&other_key, "lin@desktop");
    std::fs::write(
        f.repo.join("inventory/customers/c-0001.toml"),
        format!("name = \"Jane\"\nemail = \"jane@example.net\"\nssh_keys = [\"{customer_pub}\"]\n"),
    )
    .unwrap();
    std::fs::write(
        f.repo.join("inventory/customers/c-0002.toml"),
        format!("name = \"Lin\"\nemail = \"lin@example.net\"\nssh_keys = [\"{other_pub}\"]\n"),
    )
    .unwrap();
    let vps = "gvc10";
    f.vps(vps, "node1", "192.0.2.10", "");
    let a = f.converge();
    assert!(
        a.stdout
            .contains(&format!("+ {vps}: console access for 1 key(s)")),
        "{a:?}"
    );
    let root = f.root("node1");
    let home = root.join(format!("var/lib/gitvps/console/{vps}"));
    let keys = std::fs::read_to_string(home.join(".ssh/authorized_keys")).unwrap();
    assert_eq!(
        keys,
        format!(
            "restrict,pty,command=\"sudo -n {}/usr/sbin/xl console {vps}\" {customer_pub}\n",
            root.display()
        )
    );
    assert!(
        std::fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .starts_with(&format!("{vps}:x:")),
        "the account is made with useradd"
    );

    let account = support::ConsoleAccount::mirror(&root, vps);

    // The customer's key lands in the console, whatever command it asks for.
    let r = ssh_as(&f, vps, &customer_key, &[]);
    assert!(r.stdout.contains(&format!("{vps} login:")), "{r:?}");
    assert!(
        !r.stdout.contains("uid="),
        "a plain command must not run: {r:?}"
    );
    // No port forwarding, no other customer's key.
    let r = ssh_as(
        &f,
        vps,
        &customer_key,
        &["-W", &format!("127.0.0.1:{}", f.sshd.port)],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("prohibited") || r.stderr.contains("forwarding failed"),
        "{r:?}"
    );
    let r = ssh_as(&f, vps, &other_key, &[]);
    assert_eq!(r.code, 255, "{r:?}");
    assert!(r.stderr.contains("Permission denied"), "{r:?}");
    // Suspended: the console goes with it.
    f.edit(
        &format!("inventory/vps/{vps}.toml"),
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\nstate = \"suspended\"\n",
    );
    let a = f.converge();
    assert!(
        a.stdout
            .contains(&format!("- {vps}: remove console access")),
        "{a:?}"
    );
    let r = ssh_as(&f, vps, &customer_key, &[]);
    assert_eq!(r.code, 255, "{r:?}");
    drop(account);
}

#[test]
fn apply_status_commits_what_was_observed_to_the_status_branch() {
    let f = two_vps();
    support::commit_all(&f.repo);
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(
        a.stdout
            .contains("Status: 2 VPS(es) written to branch `status`"),
        "{a:?}"
    );
    let xen10: serde_json::Value = serde_json::from_str(&support::git(
        &f.repo,
        &["show", "status:status/xen10.json"],
    ))
    .unwrap();
    assert_eq!(xen10["vps"], "xen10");
    assert_eq!(xen10["node"], "node1");
    assert_eq!(xen10["power"], "running");
    assert_eq!(xen10["memory_mib"], 768);
    assert_eq!(xen10["vcpus"], 1);
    assert!(
        xen10["observed_at"].as_str().unwrap().starts_with("20"),
        "{xen10}"
    );
    let xen11: serde_json::Value = serde_json::from_str(&support::git(
        &f.repo,
        &["show", "status:status/xen11.json"],
    ))
    .unwrap();
    assert_eq!(xen11["power"], "stopped");
    // One commit per apply, on top of the last; a VPS gone from the repo loses its file.
    std::fs::remove_file(f.repo.join("inventory/vps/xen11.toml")).unwrap();
    let a = f.gitvps(&["apply", "--status"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(
        support::git(&f.repo, &["rev-list", "--count", "status"]).trim(),
        "2"
    );
    assert_eq!(
        support::git(&f.repo, &["ls-tree", "--name-only", "-r", "status"]).trim(),
        "nodes/node1.json\nstatus/xen10.json"
    );
    assert_eq!(
        support::git(&f.repo, &["log", "-1", "--format=%an", "status"]).trim(),
        "gitvps-bot"
    );
    // The work tree and main are untouched.
    assert_eq!(
        support::git(&f.repo, &["rev-list", "--count", "main"]).trim(),
        "1"
    );
}

/// The observe of a Xen node with LVM execs only the hypervisor's and storage's own tools: `xl`
/// once (`xl list -l` is import's only), `lvs` and one `sha256sum` (for every config and console key), besides the two shells
/// (the login shell sshd starts, played here by `sh -c`, and the script's own `sh`); no
/// temporary file, `date`, `sed`, `cat` or `rm`. Counted with `strace -f` (the test command
/// installs it); the stand-ins' own program, which `xl` and `lvs` exec here, is not the node's.
#[test]
fn observe_execs_only_the_node_tools() {
    let f = two_vps();
    assert_eq!(f.converge().code, 0);
    let root = f.root("node1").display().to_string();
    let cmd = planner::driver::observe_command_for(
        &root,
        &planner::desired::Store::Lvm { vg: "vg0".into() },
        model::values::Hypervisor::Xen,
        false,
        1_700_000_000,
    );
    let log = f.root("node1").with_extension("strace");
    let out = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=execve", "-e", "signal=none", "-o"])
        .arg(&log)
        .args(["sh", "-c", &cmd])
        .output()
        .expect("strace runs (scripts/deps install test installs it)");
    assert!(out.status.success(), "{out:?}");
    let state = planner::observe::parse("node1", &out.stdout).unwrap();
    assert_eq!(state.now, 1_700_000_000, "the control machine's clock");
    assert_eq!(state.configs.len(), 2, "{state:?}");
    assert_eq!(state.records.len(), 2, "{state:?}");
    assert_eq!(state.consoles.len(), 2, "{state:?}");
    let sim = std::fs::canonicalize(sim::nodesim::StandIn::beside(&support::bin()).path()).unwrap();
    let mut execs: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.ends_with("= 0"))
        .filter_map(|l| l.split_once("execve(\"")?.1.split_once('"'))
        .map(|(path, _)| path.to_owned())
        .filter(|p| std::fs::canonicalize(p).ok().as_ref() != Some(&sim))
        .map(|p| p.rsplit('/').next().unwrap_or_default().to_owned())
        .collect();
    execs.sort();
    assert_eq!(execs, ["lvs", "sh", "sh", "sha256sum", "xl"], "{execs:?}");
}

/// Apply batches the checks of a node's steps: three new VPSes cost one `lvs` listing (not
/// one `lvs` per disk) and one `xl list` (not one per start) besides the observes' own, then
/// one `lvcreate` and one `xl create` each; `xl list -l` is import's only. Counted by wrappers
/// in front of the stand-ins.
#[test]
fn apply_lists_disks_and_domains_once_per_node() {
    let f = Fleet::new(&["node1"]);
    for (id, ip) in [
        ("xen10", "192.0.2.10"),
        ("xen11", "192.0.2.11"),
        ("xen12", "192.0.2.12"),
    ] {
        f.vps(id, "node1", ip, "");
    }
    let log = f.root("node1").join("tool-runs.log");
    for tool in ["lvs", "xl", "lvcreate"] {
        f.wrap(
            "node1",
            tool,
            &format!("echo \"{tool} $*\" >>'{}'", log.display()),
        );
    }
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    let calls = std::fs::read_to_string(&log).unwrap();
    let count = |prefix: &str| calls.lines().filter(|l| l.starts_with(prefix)).count();
    // Every observe (apply's under the lock, and any before it) runs one `lvs` report and one
    // `xl list`; the steps add one listing of each, and no check per disk or domain.
    let observes = count("lvs --reportformat json");
    assert!(observes >= 1, "{calls}");
    assert_eq!(count("lvs --noheadings -o lv_name vg0"), 1, "{calls}");
    assert_eq!(count("lvs "), observes + 1, "{calls}");
    assert_eq!(count("lvcreate "), 3, "{calls}");
    // `xl list` alone; never `xl list NAME` (a check) or `xl list -l` (import's).
    assert_eq!(
        calls.lines().filter(|l| *l == "xl list").count(),
        observes + 1,
        "{calls}"
    );
    assert_eq!(count("xl list "), 0, "{calls}");
    assert_eq!(count("xl create "), 3, "{calls}");
    for id in ["xen10", "xen11", "xen12"] {
        assert!(f.domain("node1", id).is_some(), "{id} runs");
        assert_eq!(f.lv("node1", id), Some(30 << 30), "{id}'s disk");
    }
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "{p:?}");
}

/// `gitvps bench plan` runs end to end on a small fleet: it pins OpenSSH to what russh
/// negotiated and prints it, alternates the rounds and reports the nodes' CPU. Its figures are
/// not asserted (tests never assert on time).
#[test]
fn bench_plan_pins_the_key_exchange_and_reports_node_cpu() {
    let out = std::process::Command::new(support::bin())
        .args([
            "bench",
            "plan",
            "--nodes",
            "2",
            "--vps-per-node",
            "1",
            "--runs",
            "1",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "pinned for OpenSSH: key exchange ",
        "median of 1 alternating rounds",
        "node CPU per observe",
        "SSH per node         1.0 connection(s), 1.0 exec(s)",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
}

/// `--location` picks the nodes of a location (one CI job per location splits a large fleet);
/// a location no node is in is an error, not an empty plan.
#[test]
fn plan_by_location() {
    let f = two_vps();
    let p = f.gitvps(&["plan", "--location", "Testville"]);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(p.stdout.contains("+ xen10: create disk"), "{p:?}");
    let p = f.gitvps(&["plan", "--location", "Nowhere"]);
    assert_eq!(p.code, 1, "{p:?}");
    assert!(
        p.stderr
            .contains("--location Nowhere: no node is in that location"),
        "{p:?}"
    );
}
