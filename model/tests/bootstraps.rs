#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The bootstrap catalog: the repository's own `bootstraps/` loads clean, a broken catalog gives
//! file:line errors, `check_vps` catches bad `os`/`appliance` values, `env_for` computes the inputs.

use std::path::{Path, PathBuf};

use model::bootstraps::{Arch, Catalog, CryptHash, EnvError, GATEWAY6, Method, OsFamily, RunVars};
use model::{ApplianceId, Inventory, LoadError, OsId, VpsId};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn catalog() -> Catalog {
    Catalog::load(&repo()).unwrap_or_else(|e| panic!("{e}"))
}

fn fleet() -> Inventory {
    Inventory::load(&repo()).unwrap_or_else(|e| panic!("{e}"))
}

fn ids<'a>(it: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    it.collect()
}

#[test]
fn the_repository_catalog_loads_clean() {
    let cat = catalog();
    assert_eq!(
        ids(cat.os.keys().map(OsId::as_str)),
        [
            "alpine-3-20",
            "debian-12",
            "debian-13",
            "hvm-iso",
            "rocky-9",
            "ubuntu-2404"
        ]
    );
    assert_eq!(
        ids(cat.appliances.keys().map(ApplianceId::as_str)),
        ["openvpn", "wireguard"]
    );
    let os = |id: &str| &cat.os[id];
    assert_eq!(os("debian-12").family, OsFamily::Debian);
    assert_eq!(os("debian-12").method, Method::Debootstrap);
    assert_eq!(os("debian-12").release.as_deref(), Some("bookworm"));
    assert_eq!(os("debian-13").release.as_deref(), Some("trixie"));
    assert_eq!(os("ubuntu-2404").family, OsFamily::Ubuntu);
    assert_eq!(os("rocky-9").method, Method::Dnf);
    assert_eq!(os("rocky-9").family, OsFamily::El);
    assert_eq!(os("hvm-iso").method, Method::HvmIso);
    assert_eq!(os("hvm-iso").release, None);
    let Method::Image(img) = &os("alpine-3-20").method else {
        panic!("alpine-3-20 is an image");
    };
    assert_eq!(img.sha256.len(), 64);
    assert!(
        !img.url.contains("://"),
        "the image URL is under the mirror"
    );
    assert!(cat.os.values().all(|o| o.arch == Arch::Amd64 && o.offered));
    assert_eq!(cat.appliances["openvpn"].families, [OsFamily::Debian]);
    assert_eq!(
        cat.appliances["wireguard"].families,
        [OsFamily::Debian, OsFamily::Ubuntu]
    );
    // What an install ships: the runner and the helpers, the OS's scripts, the appliance's.
    let files = cat.files_for(
        &"debian-12".parse().unwrap(),
        Some(&"openvpn".parse().unwrap()),
    );
    for f in [
        "bootstraps/lib/install",
        "bootstraps/lib/common.sh",
        "bootstraps/lib/debian.sh",
        "bootstraps/os/debian-12/install_os",
        "bootstraps/os/debian-12/custom_os",
        "bootstraps/os/debian-12/setup_network",
        "bootstraps/appliances/openvpn/firstboot",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    assert!(files.iter().all(|f| repo().join(f).is_file()));
    // The site's list and the appliances it offers for an OS.
    assert_eq!(cat.offered_os().count(), 6);
    let for_ubuntu: Vec<_> = cat
        .appliances_for(&"ubuntu-2404".parse().unwrap())
        .map(|a| a.id.as_str())
        .collect();
    assert_eq!(for_ubuntu, ["wireguard"]);
    assert_eq!(cat.appliances_for(&"rocky-9".parse().unwrap()).count(), 0);
}

#[test]
fn the_example_fleet_passes_the_catalog() {
    let cat = catalog();
    let inv = fleet();
    assert_eq!(cat.check(&inv), []);
}

#[test]
fn an_absent_folder_is_an_empty_catalog() {
    let tmp = tempfile::tempdir().unwrap();
    let cat = Catalog::load(tmp.path()).unwrap();
    assert_eq!(cat, Catalog::default());
    // ... which checks nothing: a repository without bootstraps/ keeps validating.
    let inv = fleet();
    let mut v = inv.vps["xen02"].clone();
    v.os = "no-such-os".parse().unwrap();
    assert_eq!(cat.check_vps(&v), []);
}

#[test]
fn a_broken_catalog_reports_every_error_at_its_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bootstraps/broken");
    let Err(LoadError::Invalid(diags)) = Catalog::load(&root) else {
        panic!("the broken catalog loaded");
    };
    for d in diags.iter() {
        let text = std::fs::read_to_string(root.join(&*d.file));
        if d.line == 0 {
            continue;
        }
        let text = text.unwrap_or_else(|e| panic!("{d}: {e}"));
        let line = text
            .lines()
            .nth(d.line as usize - 1)
            .unwrap_or_else(|| panic!("{d}: no such line"));
        assert!(
            (d.col as usize) <= line.chars().count() + 1,
            "{d}: column past the end of `{line}`"
        );
    }
    // The fine entries are not blamed.
    assert!(
        diags.iter().all(|d| !d.file.contains("/ok-1/")
            && !d.file.contains("/iso/")
            && !d.file.contains("/ok-cloud/")),
        "{diags}"
    );
    insta::assert_snapshot!("broken_catalog", diags.to_string());
}

/// A cloud image (issue 18): on a KVM node it passes; on a Xen node, or past `[boot]
/// max_iso_size`, `gitvps validate` refuses it at the VPS's `os` or the image's `size`.
#[test]
fn a_cloud_image_is_refused_on_xen_and_past_the_size_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let os = tmp.path().join("bootstraps/os/debian-12-cloud");
    std::fs::create_dir_all(&os).unwrap();
    std::fs::write(
        os.join("meta.toml"),
        "name = \"Debian 12 (cloud)\"\nfamily = \"debian\"\nmethod = \"cloud-image\"\nrelease = \"12\"\n\n[cloud_image]\nurl = \"https://cloud.example.net/d.qcow2\"\nsha256 = \"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\nsize = \"400 MiB\"\n",
    )
    .unwrap();
    let cat = Catalog::load(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
    let meta = &cat.os["debian-12-cloud"];
    let img = meta.method.cloud_image().expect("a cloud image");
    assert_eq!(img.format, model::values::ImageFormat::Qcow2, "the default");
    assert_eq!(
        img.boot,
        model::bootstraps::CloudBoot::Firmware,
        "the default"
    );
    assert!(!meta.method.runs_scripts() && meta.method.installs());
    let mut inv = fleet();
    let xen = inv
        .vps
        .values()
        .find(|v| inv.nodes[&v.node].hypervisor == model::values::Hypervisor::Xen)
        .unwrap()
        .id
        .clone();
    inv.vps.get_mut(&xen).unwrap().os = "debian-12-cloud".parse().unwrap();
    // The catalog has only this OS: the others' VPSes are not what this test is about.
    let cloud = |inv: &Inventory| -> Vec<String> {
        (cat.check(inv).iter())
            .filter(|d| d.message.contains("cloud image") || d.field.starts_with("cloud_image"))
            .map(ToString::to_string)
            .collect()
    };
    let diags = cloud(&inv);
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].contains(&format!("inventory/vps/{xen}.toml:"))
            && diags[0].contains(": os: OS `debian-12-cloud` is a cloud image, and node ")
            && diags[0].contains("cannot install it: cloud images are installed on KVM nodes only (this node runs xen)"),
        "{diags:?}"
    );
    inv.vps.get_mut(&xen).unwrap().os = "debian-12".parse().unwrap();
    assert_eq!(cloud(&inv), Vec::<String>::new());
    inv.settings.boot.max_iso_size = "100 MiB".parse().unwrap();
    assert_eq!(
        cloud(&inv),
        [
            "bootstraps/os/debian-12-cloud/meta.toml:9:8: cloud_image.size: 400 MiB is larger than [boot] max_iso_size (100 MiB) of gitvps.toml, the most a node fetches"
        ]
    );
}

/// Every message `check_vps` gives, on copies of the example fleet's VPSes.
#[test]
fn check_vps_points_at_the_field() {
    let cat = catalog();
    let inv = fleet();
    let base = &inv.vps["xen03"]; // debian-12 with openvpn, on alpha
    let check = |os: &str, appliance: Option<&str>| {
        let mut v = base.clone();
        v.os = os.parse().unwrap();
        v.appliance = appliance.map(|a| a.parse().unwrap());
        cat.check_vps(&v)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(check("debian-12", Some("openvpn")), Vec::<String>::new());
    assert_eq!(
        check("ubuntu-2404", Some("wireguard")),
        Vec::<String>::new()
    );
    assert_eq!(check("rocky-9", None), Vec::<String>::new());
    assert_eq!(
        check("debain-12", None),
        ["inventory/vps/xen03.toml:6:6: os: unknown OS `debain-12`, did you mean `debian-12`?"]
    );
    assert_eq!(
        check("windows", None),
        [
            "inventory/vps/xen03.toml:6:6: os: unknown OS `windows` (bootstraps/os/ has: alpine-3-20, debian-12, debian-13, hvm-iso, rocky-9, ubuntu-2404)"
        ]
    );
    assert_eq!(
        check("debian-12", Some("openvpm")),
        [
            "inventory/vps/xen03.toml:7:13: appliance: unknown appliance `openvpm`, did you mean `openvpn`?"
        ]
    );
    assert_eq!(
        check("debian-12", Some("mailserver")),
        [
            "inventory/vps/xen03.toml:7:13: appliance: unknown appliance `mailserver` (bootstraps/appliances/ has: openvpn, wireguard)"
        ]
    );
    assert_eq!(
        check("ubuntu-2404", Some("openvpn")),
        [
            "inventory/vps/xen03.toml:7:13: appliance: appliance `openvpn` runs on the `debian` family only, and OS `ubuntu-2404` is of the `ubuntu` family"
        ]
    );
    assert_eq!(
        check("rocky-9", Some("wireguard")),
        [
            "inventory/vps/xen03.toml:7:13: appliance: appliance `wireguard` runs on the `debian`, `ubuntu` families only, and OS `rocky-9` is of the `el` family"
        ]
    );
    assert_eq!(
        check("hvm-iso", Some("wireguard")),
        [
            "inventory/vps/xen03.toml:7:13: appliance: appliance `wireguard` runs on the `debian`, `ubuntu` families only, and OS `hvm-iso` is of the `hvm` family"
        ]
    );
    // An unknown OS and an unknown appliance: both, and no family error on top.
    assert_eq!(check("nope", Some("nada")).len(), 2);
    // An unknown OS with a known appliance: only the OS is blamed.
    assert_eq!(check("nope", Some("openvpn")).len(), 1);
}

#[test]
fn env_for_an_ipv4_vps() {
    let cat = catalog();
    let inv = fleet();
    let mut env = cat.env_for(&inv, &inv.vps["xen03"]).unwrap();
    env.run = RunVars {
        bootstraps: Some("/tmp/gitvps-bootstraps".into()),
        target: Some("/mnt/xen03".into()),
        mirror: Some("http://mirror.example/debian".into()),
        cache: Some("/var/cache/gitvps".into()),
        ..RunVars::default()
    };
    let vars: Vec<String> = env.vars().iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        vars,
        [
            "GITVPS_BOOTSTRAPS=/tmp/gitvps-bootstraps",
            "TARGET=/mnt/xen03",
            "OS_ID=debian-12",
            "OS_FAMILY=debian",
            "OS_RELEASE=bookworm",
            "OS_ARCH=amd64",
            "APPLIANCE_ID=openvpn",
            "VPS_ID=xen03",
            "VPS_HOSTNAME=vpn.example.cn",
            "VPS_IPV4=203.0.113.11/26",
            "VPS_GATEWAY4=203.0.113.1",
            "VPS_DNS=203.0.113.2",
            "VPS_SSH_KEYS=ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEi3b/D7kk78PZ1nxZSvZGZcbPNBq6pQFl05Ut7SKYN8 lin@desktop",
            "VPS_HYPERVISOR=xen",
            "GITVPS_MIRROR=http://mirror.example/debian",
            "GITVPS_CACHE=/var/cache/gitvps",
        ]
    );
    assert!(env.ipv6.is_empty() && env.gateway6.is_none());
}

#[test]
fn env_for_a_dual_stack_vps() {
    let cat = catalog();
    let inv = fleet();
    let mut env = cat.env_for(&inv, &inv.vps["xen02"]).unwrap();
    assert_eq!(env.ipv4[0].to_string(), "66.255.255.34/25");
    assert_eq!(env.gateway4.to_string(), "66.255.255.1");
    assert_eq!(env.ipv6[0].to_string(), "2001:db8:66:22::1/64");
    assert_eq!(env.gateway6, Some(GATEWAY6));
    assert_eq!(GATEWAY6.to_string(), "fe80::1");
    let get = |env: &model::bootstraps::BootstrapEnv, k: &str| {
        env.vars()
            .into_iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v)
    };
    assert_eq!(
        get(&env, "VPS_IPV6").as_deref(),
        Some("2001:db8:66:22::1/64")
    );
    assert_eq!(get(&env, "VPS_GATEWAY6").as_deref(), Some("fe80::1"));
    assert_eq!(get(&env, "VPS_DNS").as_deref(), Some("66.255.255.20"));
    assert_eq!(get(&env, "APPLIANCE_ID"), None);
    assert_eq!(get(&env, "TARGET"), None);
    assert_eq!(get(&env, "VPS_ROOT_PASSWORD_HASH"), None);
    // A root password is only ever a crypt hash; it is passed as given.
    env.root_password_hash = Some("$6$abcdefgh$0123456789./ABC".parse::<CryptHash>().unwrap());
    assert_eq!(
        get(&env, "VPS_ROOT_PASSWORD_HASH").as_deref(),
        Some("$6$abcdefgh$0123456789./ABC")
    );
    assert!("correct horse".parse::<CryptHash>().is_err());
    // The exports are one single-quoted word each, whatever the value holds.
    env.run.target = Some("/mnt/it's".into());
    let sh = env.shell_exports();
    assert!(sh.contains("export TARGET='/mnt/it'\\''s'\n"), "{sh}");
    assert!(sh.contains("export VPS_HOSTNAME='xen02.example.net'\n"));
}

#[test]
fn env_for_refuses_what_cannot_be_installed() {
    let cat = catalog();
    let inv = fleet();
    let mut v = inv.vps["xen02"].clone();
    v.os = "hvm-iso".parse().unwrap();
    assert_eq!(
        cat.env_for(&inv, &v),
        Err(EnvError::NothingToInstall {
            vps: VpsId::try_from("xen02".to_owned()).unwrap(),
            os: v.os.clone()
        })
    );
    v.os = "nope".parse().unwrap();
    assert!(matches!(
        cat.env_for(&inv, &v),
        Err(EnvError::UnknownOs { .. })
    ));
    v.os = "rocky-9".parse().unwrap();
    v.appliance = Some("openvpn".parse().unwrap());
    let e = cat.env_for(&inv, &v).unwrap_err();
    assert_eq!(
        e.to_string(),
        "xen02: appliance `openvpn` is unknown or not for OS `rocky-9`"
    );
    v.appliance = None;
    v.ips = vec!["192.0.2.7".parse().unwrap()];
    assert_eq!(
        cat.env_for(&inv, &v).unwrap_err().to_string(),
        "xen02: 192.0.2.7 lies in no pool of pools.toml"
    );
    v.ips = vec!["2001:db8:66:22::/64".parse().unwrap()];
    assert_eq!(
        cat.env_for(&inv, &v).unwrap_err().to_string(),
        "xen02: no IPv4 address"
    );
}
