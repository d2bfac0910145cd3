#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Broken inventories, one per rule, and the exact text `gitvps validate` prints for each.
//!
//! `tests/fixtures/base/` is a small valid fleet. Each `tests/fixtures/broken/<case>/` holds
//! only the files that differ from it: the test copies base into a temporary folder,
//! overlays the case's files and removes the repo-relative paths listed in the case's
//! `DELETE` file. The full `Diagnostics` text is snapshot-tested, and every diagnostic
//! must point at an existing line and column of a file the case touched: an error in an
//! untouched file is a cascade.
//!
//! `tests/fixtures/valid/<case>/` overlays the same way and must load without errors.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use model::{Diagnostics, Inventory, LoadError, NodeId, ProductId, VpsId};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Repo-relative, `/`-separated paths of every file under `dir`, except a top-level `DELETE`.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_str().unwrap().to_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|f| f != "DELETE");
    out.sort();
    out
}

/// The paths a case's `DELETE` file lists.
fn deleted(case: &Path) -> Vec<String> {
    fs::read_to_string(case.join("DELETE"))
        .map(|s| {
            s.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn copy_files(from: &Path, to: &Path) {
    for rel in files_under(from) {
        let dst = to.join(&rel);
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(from.join(&rel), &dst).unwrap();
    }
}

/// Base, overlaid with `case`, in a fresh temporary folder.
fn build(case: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_files(&fixtures().join("base"), tmp.path());
    copy_files(case, tmp.path());
    for rel in deleted(case) {
        let p = tmp.path().join(&rel);
        assert!(
            p.exists(),
            "{}: DELETE lists {rel}, absent from base",
            case.display()
        );
        if p.is_dir() {
            fs::remove_dir_all(p).unwrap();
        } else {
            fs::remove_file(p).unwrap();
        }
    }
    tmp
}

fn load_errors(root: &Path, what: &str) -> Diagnostics {
    match Inventory::load(root) {
        Ok(_) => panic!("{what}: loaded without errors"),
        Err(LoadError::Invalid(d)) => d,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// The diagnostics of a broken case, checked for shape (sorted, in touched files, at real positions).
fn case_errors(case: &Path) -> Diagnostics {
    let name = case.file_name().unwrap().to_str().unwrap();
    let repo = build(case);
    let d = load_errors(repo.path(), name);
    let mut sorted = d.0.clone();
    sorted.sort();
    assert_eq!(d.0, sorted, "{name}: diagnostics are not sorted");

    let touched: BTreeSet<String> = files_under(case).into_iter().chain(deleted(case)).collect();
    let tmp = repo.path().to_str().unwrap();
    for x in d.iter() {
        assert!(
            touched.contains(&*x.file),
            "{name}: `{x}` is in a file the case did not touch (a cascade); touched: {touched:?}"
        );
        assert!(!x.message.is_empty(), "{name}: `{x}` has no message");
        assert!(
            !x.message.contains(tmp),
            "{name}: `{x}` names the temporary folder"
        );
        if x.line == 0 {
            assert_eq!(x.col, 0, "{name}: `{x}`: column without a line");
            continue;
        }
        let text = fs::read_to_string(repo.path().join(&*x.file))
            .unwrap_or_else(|e| panic!("{name}: `{x}` points into an unreadable file: {e}"));
        let line = text
            .lines()
            .nth(x.line as usize - 1)
            .unwrap_or_else(|| panic!("{name}: `{x}`: the file has no line {}", x.line));
        assert!(
            x.col >= 1 && x.col as usize <= line.chars().count() + 1,
            "{name}: `{x}`: column {} is outside line {:?}",
            x.col,
            line
        );
    }
    d
}

#[test]
fn broken_fixtures() {
    insta::glob!("fixtures/broken/*", |case| {
        let d = case_errors(case);
        insta::assert_snapshot!(d.to_string());
    });
}

#[test]
fn base_fixture_is_valid() {
    let inv = Inventory::load(&fixtures().join("base")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.products.len(), 2);
    assert_eq!(inv.pools.len(), 2);
    assert_eq!(inv.nodes.len(), 2);
    assert_eq!(inv.customers.len(), 2);
    assert_eq!(inv.vps.len(), 3);
    assert!(inv.pools.values().any(|p| p.ipv6.is_some()));
    assert!(inv.products.values().any(|p| p.resources().is_none()));
}

#[test]
fn example_fleet_is_valid() {
    let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Err(e) = Inventory::load(&top) {
        panic!("the example fleet at the repo top is invalid: {e}");
    }
}

#[test]
fn valid_fixtures_load() {
    let dir = fixtures().join("valid");
    let mut n = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let case = entry.unwrap().path();
        let repo = build(&case);
        if let Err(e) = Inventory::load(repo.path()) {
            panic!("{}: {e}", case.display());
        }
        n += 1;
    }
    assert!(n > 0, "no valid fixtures");
}

/// The fleet of `broken/overcommit-ram` is valid once the node declares `overcommit.ram = 2`.
#[test]
fn declared_overcommit_makes_the_fleet_valid() {
    let over = case_errors(&fixtures().join("broken/overcommit-ram"));
    assert_eq!(over.len(), 1, "{over}");
    assert_eq!(over.0[0].field, "capacity.ram");

    let repo = build(&fixtures().join("valid/overcommit-ram-declared"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let node: NodeId = "node0109".parse().unwrap();
    let n = &inv.nodes[&node];
    assert_eq!(n.capacity.ram.to_string(), "1 GiB");
    assert_eq!(n.sellable().ram.to_string(), "2 GiB");
    assert_eq!(inv.usage()[&node].ram, n.sellable().ram.bytes());

    // Same files, only the overcommit line differs.
    let broken =
        fs::read_to_string(fixtures().join("broken/overcommit-ram/inventory/nodes/node0109.toml"))
            .unwrap();
    let valid = fs::read_to_string(
        fixtures().join("valid/overcommit-ram-declared/inventory/nodes/node0109.toml"),
    )
    .unwrap();
    assert_eq!(valid.replace("overcommit = { ram = 2 }\n", ""), broken);
}

/// `valid/backup`: an SFTP restic repository, a plan backed up daily, and one VPS that
/// changes its plan's policy to weekly with more monthly backups kept.
#[test]
fn backup_policies_and_repository_load_typed() {
    use model::backup::{Frequency, Repository, Retention, Weekday};

    let repo = build(&fixtures().join("valid/backup"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let b = &inv.settings.backup;
    assert_eq!(b.password_env.as_str(), "GITVPS_RESTIC_PASSWORD");
    let Some(Repository::Sftp { port, path, .. }) = &b.repository else {
        panic!("{b:?}")
    };
    assert_eq!(
        (*port, path.to_string().as_str()),
        (22, "/srv/restic/gitvps")
    );
    let policy = |id: &str| {
        let v = &inv.vps[&id.parse::<VpsId>().unwrap()];
        inv.backup_policy_of(v).unwrap()
    };
    let xen01 = policy("xen01");
    assert_eq!(
        (
            xen01.schedule.every,
            xen01.schedule.weekday,
            xen01.schedule.hour
        ),
        (Frequency::Weekly, Weekday::Saturday, 2)
    );
    assert_eq!(
        xen01.keep,
        Retention {
            daily: 7,
            weekly: 4,
            monthly: 12
        }
    );
    let xen02 = policy("xen02");
    assert_eq!(xen02.schedule.every, Frequency::Daily);
    assert_eq!(xen02.keep.monthly, 6);
}

/// `valid/dns`: `[dns]` with one server (defaults filled in) and a VPS naming the PTR of its
/// IPv4 address and of an address inside its /64, written in a non-canonical form.
#[test]
fn dns_settings_and_ptr_load_typed() {
    use model::settings::DnsBackend;

    let repo = build(&fixtures().join("valid/dns"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let dns = &inv.settings.dns;
    let ns: Vec<&str> = dns.nameservers.iter().map(|n| n.as_str()).collect();
    assert_eq!(ns, ["ns1.example.net", "ns2.example.net"]);
    assert_eq!(dns.ttl, 600);
    assert_eq!(dns.negative_ttl, 3600);
    assert_eq!(dns.servers.len(), 1);
    let server = &dns.servers[0];
    assert_eq!(server.name(), "192.0.2.53:22");
    assert_eq!(server.backend, DnsBackend::Knot);
    assert!(!server.sudo);
    assert_eq!(server.control, None);

    let vps = &inv.vps[&"xen01".parse::<VpsId>().unwrap()];
    let ptr: Vec<String> = vps
        .ptr
        .iter()
        .map(|(ip, name)| format!("{ip} {name}"))
        .collect();
    assert_eq!(
        ptr,
        [
            "66.255.255.10 mail.example.net",
            "2001:db8:66:1::25 mx.example.net"
        ]
    );
    assert!(vps.owns("2001:db8:66:1::25".parse().unwrap()));
    assert!(!vps.owns("2001:db8:66:2::1".parse().unwrap()));
    assert!(!vps.owns("66.255.255.11".parse().unwrap()));
}

/// `valid/checks`: service checks by name and as tables (address, port, timeout).
#[test]
fn service_checks_load_typed() {
    use model::inventory::ServiceCheck;
    use model::values::Check;

    let repo = build(&fixtures().join("valid/checks"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let vps = &inv.vps[&"xen01".parse::<VpsId>().unwrap()];
    assert_eq!(
        vps.monitor.checks,
        [
            ServiceCheck::plain(Check::Ping),
            ServiceCheck::plain(Check::Ssh),
            ServiceCheck {
                service: Check::Https,
                address: Some("66.255.255.10".parse().unwrap()),
                port: Some(8443),
                timeout_secs: Some(10),
            },
            ServiceCheck {
                service: Check::Smtp,
                address: Some("2001:db8:66:1::25".parse().unwrap()),
                port: None,
                timeout_secs: None,
            },
        ]
    );
    assert_eq!(inv.settings.monitor.check_failures, 3);
    assert_eq!(inv.settings.monitor.check_timeout_secs, 5);
}

/// `valid/kvm-user-network`: node0109 runs KVM with software emulation and user-mode
/// networking, node0201 KVM on a named bridge (inline table), and the plan has disk caps.
#[test]
fn kvm_nodes_and_disk_caps_load_typed() {
    use model::values::{Accel, Hypervisor};
    use model::{Kvm, KvmNetwork};

    let repo = build(&fixtures().join("valid/kvm-user-network"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let user: NodeId = "node0109".parse().unwrap();
    let n = &inv.nodes[&user];
    assert_eq!(n.hypervisor, Hypervisor::Kvm);
    assert_eq!(
        n.kvm,
        Some(Kvm {
            accel: Accel::Tcg,
            network: KvmNetwork::User {
                forward_base: 10000
            },
        })
    );
    // 10000 + the last octet of each VPS's first IPv4 (66.255.255.10, 66.255.255.11).
    let ports: Vec<Option<u16>> = inv
        .vps
        .values()
        .filter(|v| v.node == user)
        .map(|v| n.forward_port(v))
        .collect();
    assert_eq!(ports, [Some(10010), Some(10011)]);

    let bridged = &inv.nodes[&"node0201".parse::<NodeId>().unwrap()];
    assert_eq!(
        bridged.kvm,
        Some(Kvm {
            accel: Accel::Kvm,
            network: KvmNetwork::Bridge {
                bridge: "vmbr0.100".to_owned()
            },
        })
    );
    assert_eq!(
        bridged.forward_port(&inv.vps[&"xen03".parse::<VpsId>().unwrap()]),
        None
    );

    let r = inv.products[&"basic".parse::<ProductId>().unwrap()]
        .resources()
        .unwrap();
    assert_eq!(r.disk_iops, Some(5000));
    let bw = r.disk_bandwidth.as_ref().unwrap();
    assert_eq!(
        (bw.bytes_per_sec(), bw.to_string()),
        (200_000_000, "200MB/s".to_owned())
    );
}

/// `storage.format`: raw unless the file node says `qcow2` (KVM nodes only).
#[test]
fn image_formats_load_typed() {
    use model::Storage;
    use model::values::ImageFormat;

    let node: NodeId = "node0201".parse().unwrap();
    let base = Inventory::load(&fixtures().join("base")).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        &base.nodes[&node].storage,
        Storage::File { dir, format: ImageFormat::Raw } if dir.as_str() == "/var/lib/gitvps/disks"
    ));
    let repo = build(&fixtures().join("valid/kvm-qcow2"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        &inv.nodes[&node].storage,
        Storage::File {
            format: ImageFormat::Qcow2,
            ..
        }
    ));
    assert_eq!(ImageFormat::Qcow2.extension(), "qcow2");
    assert_eq!(ImageFormat::default().extension(), "img");
}

/// A KVM node without `[kvm]` gets the defaults; a Xen node has no KVM settings.
#[test]
fn kvm_defaults_and_xen_nodes() {
    use model::{Kvm, KvmNetwork};

    let base = Inventory::load(&fixtures().join("base")).unwrap_or_else(|e| panic!("{e}"));
    assert!(base.nodes.values().all(|n| n.kvm.is_none()));
    assert!(
        base.vps
            .values()
            .all(|v| base.nodes[&v.node].forward_port(v).is_none())
    );
    let r = base.products[&"basic".parse::<ProductId>().unwrap()]
        .resources()
        .unwrap();
    assert_eq!((r.disk_iops, r.disk_bandwidth.clone()), (None, None));

    let repo = base_with(
        "inventory/nodes/node0109.toml",
        "hypervisor = \"xen\"",
        "hypervisor = \"kvm\"",
    );
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let n = &inv.nodes[&"node0109".parse::<NodeId>().unwrap()];
    assert_eq!(n.kvm, Some(Kvm::default()));
    assert_eq!(
        n.kvm.as_ref().map(|k| &k.network),
        Some(&KvmNetwork::Bridge {
            bridge: "br0".to_owned()
        })
    );
}

fn case_text(case: &str) -> String {
    case_errors(&fixtures().join("broken").join(case)).to_string()
}

#[test]
fn ipv4_outside_the_pools_names_node_and_pools() {
    assert_eq!(
        case_text("ipv4-outside-pools"),
        "inventory/vps/xen01.toml:4:8: ips[0]: 66.255.255.200 is outside the pools of node0109 (tampa-1: 66.255.255.0/25)\n"
    );
}

#[test]
fn duplicate_ipv4_names_the_first_user_and_its_line() {
    assert_eq!(
        case_text("duplicate-ipv4"),
        "inventory/vps/xen02.toml:4:8: ips[0]: 66.255.255.10 is already used by xen01 (inventory/vps/xen01.toml:4)\n"
    );
}

#[test]
fn secrets_are_never_echoed() {
    let s = case_text("secret-in-settings");
    assert!(s.starts_with("gitvps.toml:"), "{s}");
    assert!(s.contains("stripe_secret_key"), "{s}");
    assert!(!s.contains("sk_live"), "{s}");
    // Backup credentials: only variable names are accepted, and a value given in their
    // place (or under a secret-looking key) is never repeated.
    for case in ["backup-secret-in-settings", "backup-bad-repository"] {
        let s = case_text(case);
        for secret in ["hunter2", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtn", "horse"] {
            assert!(!s.contains(secret), "{case}: {s}");
        }
    }
    for case in ["password-in-customer", "password-hash-not-a-hash"] {
        let s = case_text(case);
        assert!(!s.contains("hunter2"), "{case}: {s}");
        assert!(s.contains("password"), "{case}: {s}");
    }
}

#[test]
fn every_error_of_one_run_is_reported() {
    let case = fixtures().join("broken/several-errors-in-several-files");
    let d = case_errors(&case);
    let files: BTreeSet<&str> = d.iter().map(|x| &*x.file).collect();
    // Every file of the case has at least one error: nothing stops at the first.
    let touched: BTreeSet<String> = files_under(&case).into_iter().collect();
    assert_eq!(
        files,
        touched.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        "{d}"
    );
    assert!(d.len() >= touched.len(), "{d}");
}

/// A whole-file problem has no line and prints as `file: message`.
#[test]
fn whole_file_problems_have_no_position() {
    assert_eq!(
        case_text("missing-products"),
        "products.toml: the product catalog is missing: file not found\n"
    );
    assert_eq!(
        case_text("invalid-utf8"),
        "inventory/customers/c-0002.toml: the file is not valid UTF-8\n"
    );
}

// Known bugs in model/src, each pinned by a test that fails until it is fixed.
// The snapshots above show today's output for the same fixtures.

/// The one diagnostic of a case, as (line, col, field, message).
fn only_error(case: &str) -> (u32, u32, String, String) {
    let d = case_errors(&fixtures().join("broken").join(case));
    assert_eq!(d.len(), 1, "{case}: {d}");
    let x = &d.0[0];
    (x.line, x.col, x.field.clone(), x.message.clone())
}

/// validate.rs `pools`/`products` call `Origin::diag("reserved[1]")`, `"network"`, `"ipv6"`,
/// `"renews"`, but load/ recorded those positions as `pool[0].reserved[1]`,
/// `product[1].renews`...: the lookup misses and falls back to the `[[pool]]`/`[[product]]`
/// header line, column 1.
#[test]
fn bug_pool_and_product_rules_point_at_the_field() {
    let cases = [
        ("reserved-outside-network", 7, 42, "reserved[1]"),
        ("overlapping-pools", 23, 11, "network"),
        ("overlapping-ipv6-prefixes", 9, 8, "ipv6"),
        ("renewal-of-missing-product", 16, 10, "renews"),
        ("renewal-of-renewal", 23, 10, "renews"),
    ];
    let mut wrong = Vec::new();
    for (case, line, col, field) in cases {
        let (l, c, f, _) = only_error(case);
        if (l, c) != (line, col) || !f.ends_with(field) || !f.contains('[') {
            wrong.push(format!(
                "{case}: got {l}:{c} `{f}`, want {line}:{col} `pool[i]./product[i].{field}`"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// load/settings.rs `parse_settings` reports `site.url`, `reconciler.parallelism`,
/// `reconciler.status_branch` and `vps.id_prefix` at the span of their table
/// (`[site]` header), not at the value.
#[test]
fn bug_settings_errors_point_at_the_value() {
    assert_eq!(only_error("settings-bad-url").0, 4, "line of `url = ...`");
    assert_eq!(only_error("settings-bad-url").1, 7);
    assert_eq!(only_error("settings-zero-parallelism").0, 11);
    assert_eq!(only_error("settings-zero-parallelism").1, 15);
}

/// An unparsable `ips[0]` is dropped by `Obj::list`, the VPS still loads, and
/// validate.rs `vps_refs` then adds "a VPS needs at least one IPv4 address".
#[test]
fn bug_bad_ip_does_not_cascade() {
    let (_, _, field, message) = only_error("ipv4-not-an-address");
    assert_eq!(field, "ips[0]");
    assert!(message.contains("66.255.255.300"), "{message}");
}

/// A VPS whose required field fails (`hostname`) is dropped whole by `parse_vps`,
/// so its valid addresses are never claimed: the duplicate in xen02 only shows
/// up on the next run, after xen01 is fixed.
#[test]
fn bug_unparsable_vps_still_claims_its_addresses() {
    let d = case_errors(&fixtures().join("broken/duplicate-ipv4-of-unparsable-vps"));
    let text = d.to_string();
    assert!(
        text.contains(
            "inventory/vps/xen02.toml:4:8: ips[0]: 66.255.255.10 is already used by xen01"
        ),
        "{text}"
    );
}

/// One bad product anywhere sets `Broken::catalog`, and every unknown-product
/// error of every VPS is then suppressed, even for ids that were never in the file.
#[test]
fn bug_broken_catalog_hides_unrelated_unknown_products() {
    let d = case_errors(&fixtures().join("broken/unknown-product-while-catalog-has-errors"));
    let text = d.to_string();
    assert!(text.contains("unknown product `basik`"), "{text}");
}

#[test]
fn bug_reserved_message_reads_well() {
    let (_, _, _, message) = only_error("ipv4-is-reserved");
    assert!(!message.contains("is reserved of pool"), "{message}");
}

#[test]
fn bug_ip_listed_twice_in_one_vps() {
    let (_, _, field, message) = only_error("duplicate-ipv4-in-one-vps");
    assert_eq!(field, "ips[2]");
    assert!(!message.contains("already used by xen01"), "{message}");
}

/// Base with one replacement in one file.
fn base_with(rel: &str, old: &str, new: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_files(&fixtures().join("base"), tmp.path());
    let path = tmp.path().join(rel);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.matches(old).count(), 1, "{rel}: {old}");
    fs::write(&path, text.replace(old, new)).unwrap();
    tmp
}

/// Rules that are missing: these inventories load without an error today.
#[test]
fn bug_missed_rules() {
    let repo = base_with("inventory/nodes/node0109.toml", "port = 22", "port = 0");
    let d = load_errors(repo.path(), "port = 0");
    assert_eq!(d.to_string().lines().count(), 1, "{d}");
    assert_eq!(d.0[0].field, "port");

    let repo = base_with("products.toml", "ram = \"1 GiB\"", "ram = \"0 MiB\"");
    let d = load_errors(repo.path(), "ram = 0 MiB");
    assert_eq!(d.0[0].field, "product[0].ram", "{d}");
}

/// `valid/billing-policy`: every `[billing]`, `[seller]` and `[mail]` key of the business loop,
/// a customer without e-mail but with a billing address and a reseller, a VPS suspended by billing.
#[test]
fn billing_policy_loads_typed() {
    use model::policy::PaymentMethod;
    use model::values::{State, Suspension};

    let repo = build(&fixtures().join("valid/billing-policy"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let b = &inv.settings.billing;
    assert_eq!(b.reminder_days, [30, 7, 1, 0]);
    assert_eq!(b.overdue_reminder_days, [1, 3, 6]);
    assert_eq!((b.grace_days, b.terminate_days), (7, 0));
    assert_eq!(b.invoice_number.format(2026, 7), "F2026-0007");
    assert_eq!(
        b.payment_methods,
        [
            PaymentMethod::Card,
            PaymentMethod::Alipay,
            PaymentMethod::WechatPay
        ]
    );
    let tax: Vec<String> = b.tax.iter().map(|(c, r)| format!("{c}={r}")).collect();
    assert_eq!(tax, ["CH=8.1", "DE=19", "FR=20"]);
    assert!(b.tax_inclusive);
    let s = &inv.settings.seller;
    assert_eq!(s.name, "Fixture Hosting GmbH");
    assert_eq!(s.address, ["Hauptstrasse 1", "10115 Berlin"]);
    assert_eq!(s.country.as_ref().map(|c| c.as_str()), Some("DE"));
    assert_eq!(s.tax_id.as_deref(), Some("DE123456789"));
    assert_eq!(
        inv.settings.mail.support.as_ref().map(|e| e.as_str()),
        Some("support@example.net")
    );
    let lin = &inv.customers[&"c-0002".parse::<model::CustomerId>().unwrap()];
    assert_eq!(lin.email, None);
    assert_eq!(lin.country.as_ref().map(|c| c.as_str()), Some("CN"));
    assert_eq!(lin.reseller.as_ref().map(|c| c.as_str()), Some("c-0001"));
    assert_eq!(lin.address.len(), 2);
    let xen02 = &inv.vps[&"xen02".parse::<VpsId>().unwrap()];
    assert_eq!(
        (xen02.state, xen02.suspension, xen02.suspended),
        (
            State::Suspended,
            Some(Suspension::Billing),
            "2026-03-21".parse().ok()
        )
    );
}

/// Without `gitvps.toml` keys for them, the policy has its documented defaults, and the seller
/// is named after the site.
#[test]
fn billing_policy_defaults() {
    let inv = Inventory::load(&fixtures().join("base")).unwrap_or_else(|e| panic!("{e}"));
    let b = &inv.settings.billing;
    assert_eq!(
        (b.grace_days, b.terminate_days, b.tax_inclusive),
        (7, 14, false)
    );
    assert_eq!(b.reminder_days, [30, 7, 1]);
    assert_eq!(b.overdue_reminder_days, [1, 3]);
    assert_eq!(b.invoice_number.to_string(), "INV-{year}-{seq:06}");
    assert!(b.tax.is_empty());
    assert_eq!(inv.settings.seller.name, "Fixture VPS");
    assert_eq!(inv.settings.mail.support, None);
}

/// `valid/traffic-policy`: `[monitor]` and every `[traffic]` field, typed.
#[test]
fn traffic_settings_load_typed() {
    use model::settings::{TrafficAction, TrafficCount, TrafficReset, TrafficSettings};

    let repo = build(&fixtures().join("valid/traffic-policy"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.settings.monitor.interval_secs, 30);
    assert_eq!(inv.settings.monitor.listen, "127.0.0.1:9464".parse().ok());
    let t = &inv.settings.traffic;
    assert_eq!(t.reset, TrafficReset::Contract);
    assert_eq!(t.count, TrafficCount::Out);
    assert_eq!(t.warn_percent, 90);
    assert_eq!(t.at_warn, TrafficAction::Throttle);
    assert_eq!(t.at_limit, TrafficAction::Suspend);
    assert_eq!(t.throttle_rate.as_str(), "10Mb/s");

    // The base fleet has no [traffic]: the defaults (mail at 80 %, throttle at 100 %).
    let base = Inventory::load(&fixtures().join("base")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(base.settings.traffic, TrafficSettings::default());
    assert_eq!(base.settings.traffic.at_limit, TrafficAction::Throttle);
}

/// The ISO library and a VPS's `[boot]` load typed: library ids resolve with the entry's size
/// as the bound, a customer's own ISO gets `[boot] max_iso_size`, sha256s are lowered.
#[test]
fn boot_media_loads_typed() {
    use model::media::{BootOrder, IsoSource, resolve};

    let repo = build(&fixtures().join("valid/boot-media"));
    let inv = Inventory::load(repo.path()).unwrap_or_else(|e| panic!("{e}"));
    let boot = &inv.settings.boot;
    assert_eq!(boot.max_iso_size.bytes(), 4 << 30);
    assert_eq!(boot.library.len(), 1);
    assert!(
        boot.library[0]
            .sha256
            .as_str()
            .starts_with("0123456789abcdef")
    );
    let xen01 = inv.vps[&"xen01".parse::<VpsId>().unwrap()]
        .boot
        .clone()
        .unwrap();
    assert!(matches!(&xen01.iso, IsoSource::Library(id) if id.as_str() == "debian-12-netinst"));
    assert_eq!(xen01.order, BootOrder::Cd);
    let r = resolve(&xen01, &boot.library, boot.max_iso_size).unwrap();
    assert_eq!(r.max_bytes, 700 << 20);
    let xen02 = inv.vps[&"xen02".parse::<VpsId>().unwrap()]
        .boot
        .clone()
        .unwrap();
    assert_eq!(xen02.order, BootOrder::Disk);
    let r = resolve(&xen02, &boot.library, boot.max_iso_size).unwrap();
    assert_eq!(r.url.as_str(), "http://127.0.0.1:8080/mine.iso?v=2");
    assert_eq!(r.max_bytes, 4 << 30);
    assert!(inv.vps[&"xen03".parse::<VpsId>().unwrap()].boot.is_none());
    assert!(inv.nodes[&"node0109".parse::<NodeId>().unwrap()].hvm);
}
