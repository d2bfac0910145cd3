//! `gitvps import` end to end: domains created out of band (the stand-in `xl` on simulated
//! nodes behind a real sshd) become one commit of adopted VPS files, after which plan is empty
//! and apply does nothing; refusals (a colliding name, disks gitvps cannot express, an address
//! outside every pool, an unreachable node) write nothing. On KVM: a real QEMU started out of
//! band (booting nothing) in the run folder the KVM driver uses, imported the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use std::path::Path;
use std::process::Command;

use support::fleet::Fleet;
use support::kvm::{KvmNode, KvmNodeSpec};
use support::{commit_all, git};

/// Creates domain `name` on `node` out of band: its LV (unless `disks` names others) and an
/// `xl create` of a config an operator might have written by hand.
fn out_of_band(f: &Fleet, node: &str, name: &str, disks: &[&str], vif: &str) {
    let root = f.root(node);
    let lv = f.on_node(node, "lvcreate", &["-y", "-L", "30g", "-n", name, "vg0"]);
    assert_eq!(lv.code, 0, "{lv:?}");
    let mut targets: Vec<String> = vec![format!(
        "'format=raw, vdev=xvda, access=rw, target={}/dev/vg0/{name}'",
        root.display()
    )];
    for (i, d) in disks.iter().enumerate() {
        let extra = root.join(d);
        std::fs::write(&extra, vec![0u8; 4096]).unwrap();
        targets.push(format!(
            "'format=raw, vdev=xvd{}, access=rw, target={}'",
            char::from(b'b' + u8::try_from(i).unwrap()),
            extra.display()
        ));
    }
    let cfg = root.join(format!("etc/xen/{name}.cfg"));
    std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "name = \"{name}\"\ntype = \"pvh\"\nkernel = \"/usr/lib/grub-xen/grub-i386-xen_pvh.bin\"\nmemory = 768\nmaxmem = 768\nvcpus = 1\ndisk = [ {} ]\nvif = [ '{vif}' ]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let c = f.on_node(node, "xl", &["create", cfg.to_str().unwrap()]);
    assert_eq!(c.code, 0, "{c:?}");
}

fn status(f: &Fleet) -> String {
    git(&f.repo, &["status", "--porcelain"])
}

fn head(f: &Fleet) -> String {
    head_of(&f.repo)
}

fn head_of(repo: &Path) -> String {
    git(repo, &["rev-parse", "HEAD"])
}

#[test]
fn domains_made_out_of_band_are_imported_in_one_commit_and_the_next_plan_is_empty() {
    let f = Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.converge();
    commit_all(&f.repo);
    out_of_band(
        &f,
        "node1",
        "web1",
        &[],
        "mac=00:16:3e:aa:bb:01,ip=192.0.2.40,bridge=xenbr0",
    );
    out_of_band(
        &f,
        "node1",
        "web2",
        &[],
        "mac=00:16:3e:aa:bb:02,ip=192.0.2.41 192.0.2.42,bridge=xenbr0",
    );
    // A vif without `ip=` (the usual hand-written one): its address comes from --ip.
    out_of_band(
        &f,
        "node1",
        "web3",
        &[],
        "mac=00:16:3e:aa:bb:03,bridge=xenbr0",
    );
    let before: Vec<_> = ["web1", "web2", "web3"]
        .iter()
        .map(|d| f.domain("node1", d).unwrap())
        .collect();
    // The plan before the import does not know them: nothing of theirs is touched either.
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "{p:?}");

    let no_ip = f.gitvps(&["import", "--node", "node1"]);
    assert_eq!(no_ip.code, 1, "{no_ip:?}");
    assert!(
        no_ip.stdout.contains("give them with --ip web3=ADDR"),
        "{no_ip:?}"
    );
    let unknown = f.gitvps(&["import", "--node", "node1", "--ip", "web9=192.0.2.43"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");
    assert!(
        unknown
            .stderr
            .contains("--ip web9=192.0.2.43: no guest named web9 runs on node1"),
        "{unknown:?}"
    );
    assert_eq!(status(&f), "", "refusals write nothing");
    let with_ip = ["import", "--node", "node1", "--ip", "web3=192.0.2.43"];

    let dry = f.gitvps(&[&with_ip[..], &["--dry-run"]].concat());
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(
        dry.stdout
            .contains("ips = [\"192.0.2.41\", \"192.0.2.42\"]"),
        "{dry:?}"
    );
    assert_eq!(status(&f), "", "a dry run writes nothing");

    let start = head(&f);
    let t = std::time::Instant::now();
    let r = f.gitvps(&with_ip);
    eprintln!("import of a Xen node: {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("managed  xen10"), "{r:?}");
    assert!(
        r.stdout.contains("adopt    web1 → inventory/vps/web1.toml"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains("adopt    web2 → inventory/vps/web2.toml"),
        "{r:?}"
    );
    assert!(r.stderr.contains("committed "), "{r:?}");
    // One commit, with exactly the two VPS files and the default customer.
    let log = git(&f.repo, &["rev-list", &format!("{}..HEAD", start.trim())]);
    assert_eq!(log.lines().count(), 1, "{log}");
    let files = git(&f.repo, &["show", "--name-only", "--format=%s", "HEAD"]);
    assert_eq!(
        files,
        "gitvps import --node node1: adopt web1, web2, web3 (customer imported)\n\ninventory/customers/imported.toml\ninventory/vps/web1.toml\ninventory/vps/web2.toml\ninventory/vps/web3.toml\n"
    );
    assert_eq!(status(&f), "");
    let web1 = std::fs::read_to_string(f.repo.join("inventory/vps/web1.toml")).unwrap();
    for want in [
        "\ncustomer = \"imported\"\n",
        "\nproduct = \"advanced\"\n",
        "\nnode = \"node1\"\n",
        "\nips = [\"192.0.2.40\"]\n",
        "\nadopted = true\n",
        "MAC 00:16:3e:aa:bb:01",
    ] {
        assert!(web1.contains(want), "{want:?} in\n{web1}");
    }
    let web3 = std::fs::read_to_string(f.repo.join("inventory/vps/web3.toml")).unwrap();
    assert!(web3.contains("\nips = [\"192.0.2.43\"]\n"), "{web3}");
    let v = f.gitvps(&["validate"]);
    assert_eq!(v.code, 0, "{v:?}");

    // The first plan afterwards is empty, and apply does nothing: same domains, not restarted.
    let p = f.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "the plan after an import is not empty: {p:?}");
    let a = f.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    let after: Vec<_> = ["web1", "web2", "web3"]
        .iter()
        .map(|d| f.domain("node1", d).unwrap())
        .collect();
    assert_eq!(before, after, "the adopted domains were touched");
    assert!(
        !f.root("node1")
            .join("var/lib/gitvps/state/web1.json")
            .exists(),
        "no record written"
    );

    // Imported again: both managed now, nothing to commit.
    let again = f.gitvps(&["import", "--node", "node1"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.contains("managed  web1"), "{again:?}");
    assert!(again.stderr.contains("nothing to import"), "{again:?}");
}

#[test]
fn a_domain_gitvps_cannot_express_or_whose_name_is_taken_is_refused_and_nothing_is_written() {
    let f = Fleet::new(&["node1", "node2", "node3", "node4", "node5"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    commit_all(&f.repo);
    let start = head(&f);
    let refused = |node: &str, why: &str| {
        let r = f.gitvps(&["import", "--node", node, "--customer", "c-0002"]);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stdout.contains(why), "{why:?}: {r:?}");
        assert!(r.stderr.contains("nothing written"), "{r:?}");
        assert_eq!(status(&f), "", "{node}: something was written");
        assert_eq!(head(&f), start, "{node}: something was committed");
    };
    // The name of a VPS declared on another node.
    out_of_band(
        &f,
        "node2",
        "xen10",
        &[],
        "mac=00:16:3e:aa:bb:03,ip=192.0.2.50,bridge=xenbr0",
    );
    refused(
        "node2",
        "REFUSED  xen10: the name collides with the declared VPS xen10 (on node1)",
    );
    // Two disks: gitvps expresses one per VPS. The other domain of the node is not imported
    // either: an import is whole or nothing.
    out_of_band(
        &f,
        "node3",
        "web3",
        &["extra.img"],
        "mac=00:16:3e:aa:bb:04,ip=192.0.2.51,bridge=xenbr0",
    );
    out_of_band(
        &f,
        "node3",
        "web4",
        &[],
        "mac=00:16:3e:aa:bb:05,ip=192.0.2.52,bridge=xenbr0",
    );
    refused(
        "node3",
        "REFUSED  web3: 2 disks; gitvps expresses exactly one per VPS",
    );
    // An address outside every pool, named with the pools there are.
    out_of_band(
        &f,
        "node4",
        "web5",
        &[],
        "mac=00:16:3e:aa:bb:06,ip=198.51.100.7,bridge=xenbr0",
    );
    refused(
        "node4",
        "REFUSED  web5: its address 198.51.100.7 is outside every pool in pools.toml (test-1 192.0.2.0/24)",
    );
    // An address another VPS holds: the inventory with the files does not validate (checked
    // in a shadow tree: the repository is never touched), said with the file and line.
    out_of_band(
        &f,
        "node5",
        "web6",
        &[],
        "mac=00:16:3e:aa:bb:07,ip=192.0.2.10,bridge=xenbr0",
    );
    let r = f.gitvps(&["import", "--node", "node5"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("the inventory with the imported VPSes does not validate: nothing written")
            && r.stderr.contains("inventory/vps/web6.toml")
            && r.stderr.contains("192.0.2.10"),
        "{r:?}"
    );
    assert_eq!(status(&f), "", "something was written");
    let dry = f.gitvps(&["import", "--node", "node5", "--dry-run"]);
    assert_eq!(dry.code, 1, "a dry run validates too: {dry:?}");
    assert_eq!(head(&f), start);
    // An unknown customer, and an unreachable node: a clear message, nothing written.
    let r = f.gitvps(&["import", "--node", "node4", "--customer", "c-9999"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("--customer c-9999: no such customer"),
        "{r:?}"
    );
    let port = f.sshd.port.to_string();
    f.edit(
        "inventory/nodes/node4.toml",
        &format!("port = {port}"),
        "port = 1",
    );
    support::commit_everything(&f.repo, "node4 moved");
    let moved = head(&f);
    let r = f.gitvps(&["import", "--node", "node4"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("node4: cannot observe the node, nothing imported"),
        "{r:?}"
    );
    assert_eq!(status(&f), "");
    assert_eq!(head(&f), moved);
}

/// A free port on 127.0.0.1 (a forward base, as the KVM tests pick theirs).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn a_qemu_guest_started_out_of_band_on_a_kvm_node_is_imported_and_the_next_plan_is_empty() {
    let base = free_port().clamp(2000, 60000);
    let node = KvmNode::new(&KvmNodeSpec {
        vps: "web1",
        network: "192.0.2.0/24",
        gateway: "192.0.2.1",
        kvm: &format!("accel = \"tcg\"\nnetwork = \"user\"\nforward_base = {base}\n"),
        plan_extra: "",
        format: "raw",
    });
    commit_all(&node.repo);
    // The guest, as an operator would have started it by hand: its disk where gitvps keeps
    // web1's raw image, the size of the `test` plan; QEMU with the pidfile, QMP socket and
    // arguments file of the KVM driver's run folder. It boots nothing (no kernel, an empty
    // disk): the firmware finds nothing to boot and waits.
    let disks = node.root.join("var/lib/gitvps/disks");
    std::fs::create_dir_all(&disks).unwrap();
    let disk = disks.join("web1.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(15000 << 20)
        .unwrap();
    let run = node.run_dir();
    std::fs::create_dir_all(&run).unwrap();
    let fwd = free_port();
    let args: Vec<String> = [
        "-name",
        "web1",
        "-pidfile",
        &format!("{}/qemu.pid", run.display()),
        "-qmp",
        &format!("unix:{}/qmp.sock,server=on,wait=off", run.display()),
        "-daemonize",
        "-display",
        "none",
        "-nodefaults",
        "-no-user-config",
        "-accel",
        "tcg",
        "-machine",
        "q35",
        "-m",
        "512",
        "-smp",
        "1",
        "-drive",
        &format!("file={},if=none,id=d0,format=raw", disk.display()),
        "-device",
        "nvme,drive=d0,serial=web1",
        "-netdev",
        &format!(
            "user,id=n0,restrict=on,net=192.0.2.0/24,host=192.0.2.1,hostfwd=tcp:127.0.0.1:{fwd}-192.0.2.40:22"
        ),
        "-device",
        "virtio-net-pci,netdev=n0,mac=52:54:00:aa:bb:01",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    std::fs::write(run.join("cmdline"), args.join("\n") + "\n").unwrap();
    let q = Command::new("qemu-system-x86_64")
        .args(&args)
        .output()
        .unwrap();
    assert!(q.status.success(), "{q:?}");
    let pid = node.qemu_pid().expect("the guest runs");

    let start = head_of(&node.repo);
    let t = std::time::Instant::now();
    let r = node.gitvps(&["import", "--node", "kvm1", "--customer", "c-0001"]);
    eprintln!("import of a KVM node: {:.2} s", t.elapsed().as_secs_f64());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains("adopt    web1 → inventory/vps/web1.toml"),
        "{r:?}"
    );
    let log = git(
        &node.repo,
        &["rev-list", &format!("{}..HEAD", start.trim())],
    );
    assert_eq!(log.lines().count(), 1, "{log}");
    let web1 = std::fs::read_to_string(node.repo.join("inventory/vps/web1.toml")).unwrap();
    for want in [
        "\ncustomer = \"c-0001\"\n",
        "\nproduct = \"test\"\n",
        "\nips = [\"192.0.2.40\"]\n",
        "\nadopted = true\n",
        "MAC 52:54:00:aa:bb:01",
    ] {
        assert!(web1.contains(want), "{want:?} in\n{web1}");
    }
    assert_eq!(git(&node.repo, &["status", "--porcelain"]), "");

    let p = node.gitvps(&["plan"]);
    assert_eq!(p.code, 0, "the plan after an import is not empty: {p:?}");
    let a = node.gitvps(&["apply"]);
    assert_eq!(a.code, 0, "{a:?}");
    assert_eq!(node.qemu_pid(), Some(pid), "the guest was restarted");
}
