#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `gitvps import`'s pure part on the fixture fleet: `xl list -l` as the observe report
//! carries it → VPS files marked adopted, or refusals that say why.

use std::collections::BTreeMap;
use std::path::Path;

use model::Inventory;
use planner::desired::{Bootstraps, Templates, desired};
use planner::import::{Context, Found, Outcome, adopt, found_domains, guests};

fn fleet() -> Inventory {
    Inventory::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleet")).unwrap()
}

fn found(name: &str, disk: &str, mem: u64, ip: &str) -> Found {
    Found {
        name: name.into(),
        memory_mib: mem,
        vcpus: 1,
        disks: vec![disk.into()],
        nics: vec![("00:16:3e:12:34:56".into(), vec![ip.into()])],
    }
}

#[test]
fn the_report_gives_the_guests_with_their_disks_and_nics() {
    let report = br#"{"version":1,"domains_long":[
      {"domid":0,"config":{"c_info":{"name":"Domain-0"},"b_info":{"max_vcpus":4,"target_memkb":2097152}}},
      {"domid":3,"config":{"c_info":{"name":"web1"},"b_info":{"max_vcpus":2,"target_memkb":786432},
        "disks":[{"pdev_path":"/dev/vg0/web1","vdev":"xvda"}],
        "nics":[{"devid":0,"mac":"00:16:3e:00:00:02","ip":"66.255.255.40 66.255.255.41"}]}}]}"#;
    let f = found_domains("node1", report).unwrap();
    assert_eq!(
        f,
        vec![Found {
            name: "web1".into(),
            memory_mib: 768,
            vcpus: 2,
            disks: vec!["/dev/vg0/web1".into()],
            nics: vec![(
                "00:16:3e:00:00:02".into(),
                vec!["66.255.255.40".into(), "66.255.255.41".into()]
            )],
        }]
    );
    let e = found_domains(
        "node1",
        br#"{"domains_long":null,"domains_long_error":"xl: command not found"}"#,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "node1: `xl list -l` gave no domain list (xl: command not found)"
    );
}

#[test]
fn a_domain_becomes_an_adopted_vps_or_a_refusal_that_says_why() {
    let inv = fleet();
    let d = desired(&inv, &Templates::default(), &Bootstraps::default()).unwrap();
    let node = &d.nodes["node0109"];
    let disks = BTreeMap::from([
        ("web1".to_owned(), 30720u64 << 20),
        ("big".to_owned(), 99u64 << 30),
    ]);
    let customer = "c-0001".parse().unwrap();
    let cx = Context {
        inv: &inv,
        node,
        disks: &disks,
        customer: &customer,
        today: chrono::NaiveDate::from_ymd_opt(2026, 12, 6).unwrap(),
        given: &BTreeMap::new(),
    };
    let Outcome::Adopt { id, text } =
        adopt(&found("web1", "/dev/vg0/web1", 768, "66.255.255.40"), &cx)
    else {
        panic!("not adopted")
    };
    assert_eq!(id.as_str(), "web1");
    assert!(text.contains("\nproduct = \"advanced\"\n"), "{text}");
    assert!(text.contains("\nips = [\"66.255.255.40\"]\n"), "{text}");
    assert!(text.contains("\nadopted = true\n"), "{text}");
    assert!(text.contains("MAC 00:16:3e:12:34:56"), "{text}");
    assert!(text.contains("\ncreated = 2026-12-06\n"), "{text}");

    let refused = |f: Found| match adopt(&f, &cx) {
        Outcome::Refused(why) => why,
        o => panic!("{o:?}"),
    };
    assert_eq!(
        refused(found("web1", "/srv/xen/web1.img", 768, "66.255.255.40")),
        "web1: its disk /srv/xen/web1.img is not where gitvps keeps web1's disk (/dev/vg0/web1)"
    );
    assert_eq!(
        refused(found("big", "/dev/vg0/big", 768, "66.255.255.41")),
        "big: no plan in products.toml has 768 MiB of memory, 1 vCPU(s) and a 99 GiB disk: add one, then import again"
    );
    let mut two = found("web1", "/dev/vg0/web1", 768, "66.255.255.40");
    two.disks.push("/dev/vg0/web1-swap".into());
    assert_eq!(
        refused(two),
        "web1: 2 disks; gitvps expresses exactly one per VPS"
    );
    assert_eq!(
        refused(found("Web_1", "/dev/vg0/Web_1", 768, "66.255.255.40")),
        "Web_1: not a VPS id (lowercase letters, digits and '-', starting with a letter)"
    );
    // A name the inventory declares on another node: refused; on this node: managed.
    let elsewhere = inv
        .vps
        .values()
        .find(|v| v.node.as_str() != "node0109")
        .unwrap();
    let mine = inv
        .vps
        .values()
        .find(|v| v.node.as_str() == "node0109")
        .unwrap();
    assert_eq!(
        refused(found(
            elsewhere.id.as_str(),
            "/dev/vg0/x",
            768,
            "66.255.255.40"
        )),
        format!(
            "{0}: the name collides with the declared VPS {0} (on {1})",
            elsewhere.id, elsewhere.node
        )
    );
    assert_eq!(
        adopt(
            &found(mine.id.as_str(), "/dev/vg0/x", 768, "66.255.255.40"),
            &cx
        ),
        Outcome::Managed
    );
    // Addresses come out of the node's pools, or the domain is refused saying which.
    assert_eq!(
        refused(found("web1", "/dev/vg0/web1", 768, "198.51.100.7")),
        "web1: its address 198.51.100.7 is outside every pool in pools.toml (seattle-1 117.255.255.0/24, shanghai-1 203.0.113.0/26, tampa-1 66.255.255.0/25): add its network as a pool, then import again"
    );
    assert_eq!(
        refused(found("web1", "/dev/vg0/web1", 768, "117.255.255.40")),
        "web1: its address 117.255.255.40 is in pool seattle-1, which node node0109 does not use (its pools: tampa-1)"
    );
    assert_eq!(
        refused(found("web1", "/dev/vg0/web1", 768, "66.255.255.1")),
        "web1: its address 66.255.255.1 is the gateway of pool tampa-1, never handed out to a VPS"
    );
    let mut no_ip = found("web1", "/dev/vg0/web1", 768, "66.255.255.40");
    no_ip.nics[0].1.clear();
    // Addresses the node does not show are given with --ip, and checked like the others.
    let given = BTreeMap::from([("web1".to_owned(), vec!["66.255.255.41".parse().unwrap()])]);
    let with = Context {
        given: &given,
        ..cx
    };
    let Outcome::Adopt { text, .. } = adopt(&no_ip, &with) else {
        panic!("not adopted with --ip")
    };
    assert!(text.contains("\nips = [\"66.255.255.41\"]\n"), "{text}");
    assert_eq!(
        adopt(&found("web1", "/dev/vg0/web1", 768, "66.255.255.40"), &with),
        Outcome::Refused("web1: --ip gives 66.255.255.41 but the node shows 66.255.255.40".into())
    );
    let outside = BTreeMap::from([("web1".to_owned(), vec!["198.51.100.7".parse().unwrap()])]);
    assert!(matches!(
        adopt(&no_ip, &Context { given: &outside, ..cx }),
        Outcome::Refused(why) if why.contains("198.51.100.7 is outside every pool")
    ));
    assert_eq!(
        refused(no_ip),
        "web1: no IPv4 address is known for its interface (Xen: `ip=` in its vif; KVM: a user-mode `hostfwd` to it): give them with --ip web1=ADDR"
    );
}

#[test]
fn a_kvm_guest_is_read_from_its_qemu_arguments() {
    let out = br#"{"version":1,"hypervisor":"kvm"}
{"args":[{"name":"web1","argv":["qemu-system-x86_64","-S","-accel","tcg","-m","512","-smp","1","-drive","file=/n/var/lib/gitvps/disks/web1.img,if=none,id=d0,format=raw","-device","nvme,drive=d0,serial=web1","-netdev","user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:2210-192.0.2.40:22","-device","virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56"]},
 {"name":"big","argv":["qemu-system-x86_64","-m","size=2G","-smp","cpus=4","-netdev","tap,id=t0,ifname=tap1","-device","virtio-net-pci,netdev=t0,mac=52:54:00:00:00:01"]}]}
"#;
    let (report, found) = guests("kvm1", model::values::Hypervisor::Kvm, out).unwrap();
    assert_eq!(report, br#"{"version":1,"hypervisor":"kvm"}"#);
    assert_eq!(
        found,
        vec![
            Found {
                name: "web1".into(),
                memory_mib: 512,
                vcpus: 1,
                disks: vec!["/n/var/lib/gitvps/disks/web1.img".into()],
                nics: vec![("52:54:00:12:34:56".into(), vec!["192.0.2.40".into()])],
            },
            Found {
                name: "big".into(),
                memory_mib: 2048,
                vcpus: 4,
                disks: vec![],
                nics: vec![("52:54:00:00:00:01".into(), vec![])],
            },
        ]
    );
    // The arguments line missing: said, not taken as "no guests".
    let e = guests("kvm1", model::values::Hypervisor::Kvm, b"{\"version\":1}\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "kvm1: the node printed no QEMU arguments after its report"
    );
}
