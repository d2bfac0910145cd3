//! A Xen VPS's `[boot]` ISO end to end, against the stand-in `xl` behind a real sshd: the node's
//! own curl fetches it over HTTP on loopback, an HVM domain boots it as a read-only CD-ROM,
//! a bad checksum changes nothing, and ejecting it brings the VPS's own domain back. The ISO,
//! shared by two VPSes, stays in the node's cache until the second ejects it, and one that a
//! process holds open is not removed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use support::fleet::Fleet;
use support::media::{serve_bytes, sha256_hex};

/// The domain's type and its disks as (vdev, target, is_cdrom, readwrite), from the stand-in
/// `xl list -l`, which shows what `xl create` accepted.
fn disks(f: &Fleet) -> (String, Vec<(String, String, u64, u64)>) {
    let r = f.on_node("node1", "xl", &["list", "-l", "xen10"]);
    assert_eq!(r.code, 0, "the domain runs: {r:?}");
    let list: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let cfg = &list[0]["config"];
    let ty = cfg["c_info"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let disks = cfg["disks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["vdev"].as_str().unwrap().to_owned(),
                d["pdev_path"].as_str().unwrap_or_default().to_owned(),
                d["is_cdrom"].as_u64().unwrap_or(0),
                d["readwrite"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    (ty, disks)
}

#[test]
fn a_xen_vps_boots_its_iso_in_an_hvm_domain_and_ejects_it() {
    let body = b"not really an ISO, but its bytes all the same\n".repeat(2000);
    let sha = sha256_hex(&body);
    let base = serve_bytes(body.clone());
    let f = Fleet::new(&["node1"]);
    f.vps("xen10", "node1", "192.0.2.10", "");
    f.vps("xen11", "node1", "192.0.2.11", "");
    f.converge();
    let (ty, _) = disks(&f);
    assert_eq!(ty, "pvh", "the node's default guest type");

    // Attach: fetched first, then the config rewritten and the domain restarted as HVM.
    let boot = format!("\n[boot]\niso_url = \"{base}/install.iso\"\niso_sha256 = \"{sha}\"\n");
    for v in ["xen10", "xen11"] {
        f.edit(
            &format!("inventory/vps/{v}.toml"),
            "expires = 2027-01-01\n",
            &format!("expires = 2027-01-01\n{boot}"),
        );
    }
    let p = f.gitvps(&["plan"]);
    let fetch = format!("+ xen10: fetch ISO {base}/install.iso (sha256 {sha})");
    let at = |s: &str| p.stdout.find(s).unwrap_or_else(|| panic!("{s}\n{p:?}"));
    assert!(at(&fetch) < at("xen10: rewrite domain config"), "{p:?}");
    f.converge();
    let cached = f
        .root("node1")
        .join(format!("var/cache/gitvps/iso/{sha}.iso"));
    assert_eq!(std::fs::read(&cached).unwrap(), body);
    let (ty, d) = disks(&f);
    assert_eq!(ty, "hvm");
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[0].0, "hda", "the disk, emulated for the firmware: {d:?}");
    assert_eq!(d[0].3, 1, "the disk is writable: {d:?}");
    assert_eq!(
        (d[1].0.as_str(), d[1].1.as_str(), d[1].2, d[1].3),
        ("hdc", cached.to_str().unwrap(), 1, 0),
        "the ISO is a read-only CD-ROM from the cache"
    );
    let cfg = std::fs::read_to_string(f.root("node1").join("etc/xen/gitvps/xen10.cfg")).unwrap();
    assert!(cfg.contains("boot = \"dc\""), "the CD boots first: {cfg}");

    // A wrong checksum: the step fails naming both sums; the domain, its config and the ISO it
    // boots are untouched.
    let wrong = "0".repeat(64);
    f.edit("inventory/vps/xen10.toml", &sha, &wrong);
    let domid = f.domain("node1", "xen10").unwrap()["domid"].clone();
    let r = f.gitvps(&["apply"]);
    assert_ne!(r.code, 0, "{r:?}");
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(all.contains(&wrong) && all.contains(&sha), "{all}");
    assert_eq!(f.domain("node1", "xen10").unwrap()["domid"], domid);
    assert_eq!(
        std::fs::read_to_string(f.root("node1").join("etc/xen/gitvps/xen10.cfg")).unwrap(),
        cfg
    );
    assert!(
        !f.root("node1")
            .join(format!("var/cache/gitvps/iso/{wrong}.iso"))
            .exists()
    );

    // Eject: the VPS's own PVH domain on its disk again. xen11 still boots the ISO: it stays.
    f.edit(
        "inventory/vps/xen10.toml",
        &boot.replace(&sha, &wrong),
        "\n",
    );
    let r = f.converge();
    assert!(!r.stdout.contains("remove cached ISO"), "{r:?}");
    let (ty, d) = disks(&f);
    assert_eq!(ty, "pvh");
    assert_eq!(d.len(), 1, "no CD-ROM: {d:?}");
    assert_eq!(d[0].0, "xvda");
    assert!(cached.exists(), "xen11 still uses it");

    // The second ejects it: removed by a step of the node, after xen11's restart. Beside it,
    // an ISO that a process holds open (a guest started by hand) is not removed: that step
    // fails naming the process; let go of, the next apply removes it.
    let stray = f
        .root("node1")
        .join(format!("var/cache/gitvps/iso/{wrong}.iso"));
    std::fs::write(&stray, b"an ISO").unwrap();
    let mut holder = std::process::Command::new("sleep")
        .arg("600")
        .stdin(std::fs::File::open(&stray).unwrap())
        .spawn()
        .unwrap();
    f.edit("inventory/vps/xen11.toml", &boot, "\n");
    let p = f.gitvps(&["plan"]);
    let at = |s: &str| p.stdout.find(s).unwrap_or_else(|| panic!("{s}\n{p:?}"));
    let remove = |h: &str| format!("- node1: remove cached ISO {} (no VPS uses it)", &h[..12]);
    assert!(at("+ xen11: start domain") < at(&remove(&sha)), "{p:?}");
    assert!(at("+ xen11: start domain") < at(&remove(&wrong)), "{p:?}");
    let r = f.gitvps(&["apply"]);
    let all = format!("{}{}", r.stdout, r.stderr);
    let why = format!(
        "the ISO {} is in use by process {} (sleep): not touching it",
        stray.display(),
        holder.id()
    );
    assert!(r.code != 0 && all.contains(&why), "no `{why}`: {r:?}");
    assert!(!cached.exists(), "no VPS uses it any more");
    assert!(stray.exists());
    holder.kill().unwrap();
    holder.wait().unwrap();
    f.converge();
    assert!(!stray.exists());
}

/// Rescue mode on Xen (issue 18, the config only): the planned domain config boots the rescue
/// image as `xvda` (a PVH domain through grub-xen, which finds the root labelled
/// `gitvps-rescue`) with the VPS's disk as `xvdb`, and the stand-in `xl` takes it; the rescue
/// image itself is built by the same bootstraps steps as on KVM (tested there on a real guest).
#[test]
fn a_xen_rescue_config_boots_the_rescue_image_with_the_disk_second() {
    let f = Fleet::new(&["node1"]);
    // The bootstraps' lib and a debian-12 that installs nothing real: the plan needs the
    // catalog's OS to build the rescue system from.
    support::copy_tree(
        &support::top().join("bootstraps/lib"),
        &f.repo.join("bootstraps/lib"),
    );
    let os = f.repo.join("bootstraps/os/debian-12");
    std::fs::create_dir_all(&os).unwrap();
    std::fs::copy(
        support::top().join("bootstraps/os/debian-12/meta.toml"),
        os.join("meta.toml"),
    )
    .unwrap();
    for s in ["install_os", "custom_os", "setup_network"] {
        std::fs::write(os.join(s), "#!/bin/sh\ntrue\n").unwrap();
        std::fs::set_permissions(
            os.join(s),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    f.vps("xen10", "node1", "192.0.2.10", "rescue = true\n");
    let p = f.gitvps(&["plan", "--json"]);
    assert_eq!(p.code, 2, "{p:?}");
    let plan: serde_json::Value = serde_json::from_str(&p.stdout).unwrap();
    let steps = plan["nodes"][0]["steps"].as_array().unwrap();
    let build = steps
        .iter()
        .find(|s| s["op"] == "build_rescue")
        .unwrap_or_else(|| panic!("{}", p.stdout));
    let image = build["rescue"]["image"].as_str().unwrap().to_owned();
    let cfg = steps.iter().find(|s| s["op"] == "write_config").unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(cfg.contains("type = \"pvh\""), "{cfg}");
    // The disks the plan's earlier steps make, then the config as the plan writes it.
    let root = f.root("node1");
    let r = f.on_node("node1", "lvcreate", &["-L", "1G", "-n", "xen10", "vg0"]);
    assert_eq!(r.code, 0, "{r:?}");
    std::fs::create_dir_all(std::path::Path::new(&image).parent().unwrap()).unwrap();
    std::fs::write(&image, b"").unwrap();
    let path = root.join("etc/xen/gitvps/xen10.cfg");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &cfg).unwrap();
    let r = f.on_node("node1", "xl", &["create", "-q", path.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}\n{cfg}");
    let (ty, d) = disks(&f);
    assert_eq!(ty, "pvh");
    assert_eq!(
        d.iter()
            .map(|(v, t, cd, rw)| (v.as_str(), t.as_str(), *cd, *rw))
            .collect::<Vec<_>>(),
        [
            ("xvda", image.as_str(), 0, 1),
            ("xvdb", root.join("dev/vg0/xen10").to_str().unwrap(), 0, 1),
        ],
        "the rescue image first, the VPS's disk second: {cfg}"
    );
}
