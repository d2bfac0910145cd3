//! The stand-ins' contract: exact stdout/stderr and exit codes of the real tools, as pinned by
//! `reference/xl-lvm-cli.md`, plus install, the public API and the error lines.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::path::{Path, PathBuf};

struct Out {
    code: i32,
    out: String,
    err: String,
}

fn run_in(root: &Path, tool: &str, args: &[&str], input: &[u8]) -> Out {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut inp = input;
    let code = run_tool_with_input(root, tool, &args, &mut inp, &mut out, &mut err);
    Out {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn run(root: &Path, tool: &str, args: &[&str]) -> Out {
    run_in(root, tool, args, b"")
}

#[track_caller]
fn check(o: &Out, code: i32, out: &str, err: &str) {
    assert_eq!(
        (o.code, o.out.as_str(), o.err.as_str()),
        (code, out, err),
        "\n--- stdout\n{}\n--- stderr\n{}",
        o.out,
        o.err
    );
}

fn node() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    (t, root)
}

const GIB: u64 = 1 << 30;

/// A node with vg0 (100 GiB), LV xen02 (30 GiB) and a seed image file.
fn node_with_lv() -> (tempfile::TempDir, PathBuf) {
    let (t, root) = node();
    create_vg(&root, "vg0", 100 * GIB).unwrap();
    check(
        &run(&root, "lvcreate", &["-L", "30G", "-n", "xen02", "vg0"]),
        0,
        "  Logical volume \"xen02\" created.\n",
        "",
    );
    std::fs::create_dir_all(root.join("var/lib/images")).unwrap();
    std::fs::write(root.join("var/lib/images/seed.img"), vec![0u8; 8192]).unwrap();
    (t, root)
}

fn cfg_text(root: &Path, name: &str) -> String {
    format!(
        r#"# written by gitvps
name = "{name}"
type = "pv"
memory = 1024
maxmem = 1024
vcpus = 2
cpu_weight = 256
cap = 0
kernel = "/boot/vmlinuz"
ramdisk = '/boot/initrd.img'
root = "/dev/xvda1 ro"
extra = "console=hvc0"
on_poweroff = "destroy"
on_reboot = "restart"
on_crash = "destroy"
disk = [ 'format=raw, vdev=xvda, access=rw, target=/dev/vg0/xen02',   # the LV
         '{root}/var/lib/images/seed.img,raw,xvdb,ro',
       ]
vif = [ 'mac=00:16:3e:00:00:02,ip=10.0.0.2,bridge=xenbr0,rate=10Mb/s' ]
"#,
        root = root.display()
    )
}

/// Writes ROOT/etc/xen/NAME.cfg and returns its path as a string.
fn write_cfg(root: &Path, name: &str, text: &str) -> String {
    let dir = root.join("etc/xen");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{name}.cfg"));
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn create_xen02(root: &Path) -> String {
    let cfg = write_cfg(root, "xen02", &cfg_text(root, "xen02"));
    check(
        &run(root, "xl", &["create", &cfg]),
        0,
        "",
        &format!("Parsing config from {cfg}\n"),
    );
    cfg
}

fn domain_state(root: &Path, name: &str) -> serde_json::Value {
    let p = root.join(format!("var/lib/gitvps-sim/xl/domains/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn fs_state(root: &Path) -> serde_json::Value {
    let p = root.join("var/lib/gitvps-sim/fs.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

const HEADER: &str = "Name                                        ID   Mem VCPUs\tState\tTime(s)\n";
const DOM0_ROW: &str =
    "Domain-0                                     0  2048     4     r-----   11794.3\n";

// ---------------------------------------------------------------- xl list

#[test]
fn xl_list_on_an_empty_node_shows_domain0() {
    let (_t, root) = node();
    check(
        &run(&root, "xl", &["list"]),
        0,
        &format!("{HEADER}{DOM0_ROW}"),
        "",
    );
}

#[test]
fn xl_list_unknown_domain_by_name_and_by_number() {
    let (_t, root) = node();
    check(
        &run(&root, "xl", &["list", "nosuch"]),
        1,
        "",
        "nosuch is an invalid domain identifier (rc=-6)\n",
    );
    check(
        &run(&root, "xl", &["list", "99"]),
        1,
        "",
        "Error: Domain '99' does not exist.\n",
    );
    check(
        &run(&root, "xl", &["shutdown", "nosuch"]),
        1,
        "",
        "nosuch is an invalid domain identifier (rc=-6)\n",
    );
}

// ---------------------------------------------------------------- xl create

#[test]
fn xl_create_then_list_shows_the_running_domain() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(&root, "xl", &["list"]),
        0,
        &format!(
            "{HEADER}{DOM0_ROW}xen02                                        1  1024     2     -b----       0.0\n"
        ),
        "",
    );
    check(
        &run(&root, "xl", &["list", "xen02"]),
        0,
        &format!(
            "{HEADER}xen02                                        1  1024     2     -b----       0.0\n"
        ),
        "",
    );
    check(&run(&root, "xl", &["domid", "xen02"]), 0, "1\n", "");
}

#[test]
fn xl_create_quiet_prints_nothing() {
    let (_t, root) = node_with_lv();
    let cfg = write_cfg(&root, "xen02", &cfg_text(&root, "xen02"));
    check(&run(&root, "xl", &["create", "-q", &cfg]), 0, "", "");
}

#[test]
fn xl_create_missing_config_file() {
    let (_t, root) = node();
    let cfg = root.join("etc/xen/none.cfg").display().to_string();
    check(
        &run(&root, "xl", &["create", &cfg]),
        3,
        "",
        &format!("Failed to read config file: {cfg}: No such file or directory\n"),
    );
}

#[test]
fn xl_create_without_name() {
    let (_t, root) = node();
    let cfg = write_cfg(&root, "x", "memory = 512\nkernel = \"/boot/vmlinuz\"\n");
    check(
        &run(&root, "xl", &["create", &cfg]),
        1,
        "",
        &format!("Parsing config from {cfg}\nDomain name must be specified.\n"),
    );
}

#[test]
fn xl_create_bad_type() {
    let (_t, root) = node();
    let cfg = write_cfg(&root, "x", "name = \"x\"\ntype = \"kvm\"\n");
    check(
        &run(&root, "xl", &["create", &cfg]),
        1,
        "",
        &format!("Parsing config from {cfg}\nInvalid domain type kvm.\n"),
    );
}

#[test]
fn xl_create_bad_vif_rate() {
    let (_t, root) = node_with_lv();
    let text = cfg_text(&root, "xen02").replace("rate=10Mb/s", "rate=10Mbit");
    let cfg = write_cfg(&root, "xen02", &text);
    check(
        &run(&root, "xl", &["create", &cfg]),
        1,
        "",
        &format!(
            "Parsing config from {cfg}\n{cfg}: config parsing error in vif: invalid rate in `10Mbit'\n"
        ),
    );
}

#[test]
fn xl_create_syntax_error() {
    let (_t, root) = node();
    let cfg = write_cfg(&root, "x", "name = xen02\n");
    check(
        &run(&root, "xl", &["create", &cfg]),
        1,
        "",
        &format!(
            "Parsing config from {cfg}\n{cfg}:1: config parsing error near `xen02': syntax error, unexpected IDENT, expecting STRING or NUMBER or '['\nFailed to parse config: Invalid argument\n"
        ),
    );
}

#[test]
fn xl_create_pv_without_kernel() {
    let (_t, root) = node();
    let cfg = write_cfg(&root, "x", "name = \"x\"\n");
    check(
        &run(&root, "xl", &["create", &cfg]),
        1,
        "",
        &format!("Parsing config from {cfg}\nNeither kernel nor bootloader specified\n"),
    );
}

#[test]
fn xl_create_duplicate_name_consumes_a_domid() {
    let (_t, root) = node_with_lv();
    let cfg = create_xen02(&root);
    check(
        &run(&root, "xl", &["create", &cfg]),
        3,
        "",
        &format!(
            "Parsing config from {cfg}\n\
             libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain 2:Domain with name \"xen02\" already exists.\n\
             libxl: error: libxl_create.c:1294:initiate_domain_create: Domain 2:cannot make domain: -6\n"
        ),
    );
    assert_eq!(
        run(&root, "lvcreate", &["-L", "1G", "-n", "xen03", "vg0"]).code,
        0
    );
    let text = cfg_text(&root, "xen03").replace("vg0/xen02", "vg0/xen03");
    let other = write_cfg(&root, "xen03", &text);
    check(&run(&root, "xl", &["create", "-q", &other]), 0, "", "");
    assert_eq!(domain_state(&root, "xen03")["domid"], 3);
}

#[test]
fn xl_create_refuses_a_writable_disk_another_guest_has() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    let other = write_cfg(&root, "xen03", &cfg_text(&root, "xen03"));
    let o = run(&root, "xl", &["create", "-q", &other]);
    assert_eq!(o.code, 3);
    let lines: Vec<&str> = o.err.lines().collect();
    assert_eq!(lines.len(), 3, "{}", o.err);
    assert!(lines[0].starts_with(
        "libxl: error: libxl_exec.c:117:libxl_report_child_exitstatus: /etc/xen/scripts/block add ["
    ));
    assert_eq!(
        lines[1],
        "libxl: error: libxl_device.c:1286:device_hotplug_child_death_cb: script: Device /dev/vg0/xen02 is mounted in a guest domain, and so cannot be mounted now."
    );
    assert_eq!(
        lines[2],
        "libxl: error: libxl_create.c:1946:domcreate_attach_devices: Domain 2:unable to add disk devices"
    );
    // Attaching it read-only does not help while xen02 writes it (the seed image both
    // share is a file, qdisk backend, and never conflicts).
    let text = cfg_text(&root, "xen04").replace(
        "access=rw, target=/dev/vg0/xen02",
        "access=ro, target=/dev/vg0/xen02",
    );
    let ro = write_cfg(&root, "xen04", &text);
    assert_eq!(run(&root, "xl", &["create", "-q", &ro]).code, 3);
}

#[test]
fn xl_create_with_a_missing_disk_fails_like_libxl() {
    let (_t, root) = node_with_lv();
    let text = cfg_text(&root, "xen02").replace("target=/dev/vg0/xen02", "target=/dev/vg0/gone");
    let cfg = write_cfg(&root, "xen02", &text);
    check(
        &run(&root, "xl", &["create", &cfg]),
        3,
        "",
        &format!(
            "Parsing config from {cfg}\n\
             libxl: error: libxl_device.c:397:libxl__device_disk_set_backend: Disk vdev=xvda failed to stat: /dev/vg0/gone: No such file or directory\n\
             libxl: error: libxl_create.c:1329:initiate_domain_create: Domain 1:Unable to set disk defaults for disk 0\n"
        ),
    );
    check(
        &run(&root, "xl", &["list"]),
        0,
        &format!("{HEADER}{DOM0_ROW}"),
        "",
    );
}

// ---------------------------------------------------------------- xl list -l

#[test]
fn xl_list_long_is_libxl_json() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    let uuid = domain_state(&root, "xen02")["uuid"]
        .as_str()
        .unwrap()
        .to_string();
    let expected = r#"[
    {
        "domid": 0,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "Domain-0"
            },
            "b_info": {
                "max_memkb": 2097152,
                "target_memkb": 2097151,
                "sched_params": {
                    "sched": "credit2",
                    "weight": 256,
                    "cap": 0
                },
                "type.pv": {

                },
                "arch_arm": {

                },
                "arch_x86": {

                }
            }
        }
    },
    {
        "domid": 1,
        "config": {
            "c_info": {
                "type": "pv",
                "name": "xen02",
                "domid": 4294967295,
                "uuid": "UUID",
                "run_hotplug_scripts": "True"
            },
            "b_info": {
                "max_vcpus": 2,
                "avail_vcpus": [
                    0,
                    1
                ],
                "max_memkb": 1048576,
                "target_memkb": 1048576,
                "video_memkb": 0,
                "sched_params": {
                    "sched": "credit2",
                    "weight": 256,
                    "cap": 0
                },
                "claim_mode": "True",
                "kernel": "/boot/vmlinuz",
                "cmdline": "root=/dev/xvda1 ro console=hvc0",
                "ramdisk": "/boot/initrd.img",
                "type.pv": {

                },
                "arch_arm": {

                },
                "arch_x86": {
                    "msr_relaxed": "False"
                }
            },
            "disks": [
                {
                    "pdev_path": "/dev/vg0/xen02",
                    "vdev": "xvda",
                    "format": "raw",
                    "readwrite": 1,
                    "colo_restore_enable": "False"
                },
                {
                    "pdev_path": "ROOT/var/lib/images/seed.img",
                    "vdev": "xvdb",
                    "format": "raw",
                    "colo_restore_enable": "False"
                }
            ],
            "nics": [
                {
                    "devid": 0,
                    "mac": "00:16:3e:00:00:02",
                    "ip": "10.0.0.2",
                    "bridge": "xenbr0",
                    "nictype": "vif",
                    "rate_bytes_per_interval": 62500,
                    "rate_interval_usecs": 50000
                }
            ],
            "on_reboot": "restart",
            "on_soft_reset": "soft_reset"
        }
    }
]

"#
    .replace("UUID", &uuid)
    .replace("ROOT", &root.display().to_string());
    let o = run(&root, "xl", &["list", "-l"]);
    check(&o, 0, &expected, "");
    let parsed: serde_json::Value = serde_json::from_str(&o.out).unwrap();
    assert_eq!(parsed[1]["config"]["c_info"]["name"], "xen02");
    // One domain by name.
    let one = run(&root, "xl", &["list", "-l", "xen02"]);
    assert_eq!(one.code, 0);
    let parsed: serde_json::Value = serde_json::from_str(&one.out).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 1);
    assert_eq!(parsed[0]["domid"], 1);
}

/// The stand-in takes the config gitvps renders for each guest type (xen02 of the example
/// fleet), as the real `xl` does (`tests/tests/xen.rs` runs them on real Xen).
#[test]
fn xl_create_takes_every_guest_type_gitvps_renders() {
    use model::values::GuestType;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut inv = model::Inventory::load(&repo).unwrap();
    let id: model::VpsId = "xen02".parse().unwrap();
    let node: model::NodeId = "node0109".parse().unwrap();
    for (t, vdev, nictype) in [
        (GuestType::Pv, "xvda", "vif"),
        (GuestType::Pvh, "xvda", "vif"),
        (GuestType::Hvm, "hda", "vif_ioemu"),
    ] {
        inv.vps.get_mut(&id).unwrap().guest_type = Some(t);
        let d = planner::desired::desired(&inv, &Default::default(), &Default::default()).unwrap();
        let (_t, root) = node_with_lv();
        let cfg = write_cfg(&root, "xen02", &d.nodes[&node].vps[&id].config);
        check(&run(&root, "xl", &["create", "-q", &cfg]), 0, "", "");
        let o = run(&root, "xl", &["list", "-l", "xen02"]);
        let dom: serde_json::Value = serde_json::from_str(&o.out).unwrap();
        let c = &dom[0]["config"];
        assert_eq!(c["c_info"]["type"], t.to_string(), "{t}");
        assert_eq!(c["disks"][0]["vdev"], vdev, "{t}");
        assert_eq!(c["nics"][0]["nictype"], nictype, "{t}");
        assert_eq!(
            c["nics"][0]["ip"], "66.255.255.34 2001:db8:66:22::/64",
            "{t}: both families"
        );
    }
}

// ---------------------------------------------------------------- shutdown / reboot / destroy

#[test]
fn xl_shutdown_removes_the_domain() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(&root, "xl", &["shutdown", "xen02"]),
        0,
        "",
        "Shutting down domain 1\n",
    );
    check(
        &run(&root, "xl", &["list"]),
        0,
        &format!("{HEADER}{DOM0_ROW}"),
        "",
    );
}

#[test]
fn xl_shutdown_wait() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(&root, "xl", &["shutdown", "-w", "xen02"]),
        0,
        "",
        "Shutting down domain 1\nWaiting for 1 domains\nDomain 1 has been shut down, reason code 0\n",
    );
    check(
        &run(&root, "xl", &["shutdown"]),
        1,
        "",
        "You must specify -a or a domain id.\n\n",
    );
}

#[test]
fn xl_reboot_gives_a_new_domid_and_counts() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(&root, "xl", &["reboot", "xen02"]),
        0,
        "",
        "Rebooting domain 1\n",
    );
    let st = domain_state(&root, "xen02");
    assert_eq!(st["domid"], 2);
    assert_eq!(st["reboots"], 1);
    check(
        &run(&root, "xl", &["list", "xen02"]),
        0,
        &format!(
            "{HEADER}xen02                                        2  1024     2     -b----       0.0\n"
        ),
        "",
    );
}

#[test]
fn xl_destroy_is_silent_and_spares_domain0() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(&run(&root, "xl", &["destroy", "xen02"]), 0, "", "");
    check(
        &run(&root, "xl", &["destroy", "xen02"]),
        1,
        "",
        "xen02 is an invalid domain identifier (rc=-6)\n",
    );
    check(
        &run(&root, "xl", &["destroy", "0"]),
        1,
        "",
        "Not destroying domain 0; use -f to force.\n",
    );
    check(
        &run(&root, "xl", &["destroy", "Domain-0"]),
        1,
        "",
        "Not destroying domain 0; use -f to force.\n",
    );
}

#[test]
fn xl_domain_deleted_out_of_band_disappears() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    std::fs::remove_file(root.join("var/lib/gitvps-sim/xl/domains/xen02.json")).unwrap();
    check(
        &run(&root, "xl", &["list"]),
        0,
        &format!("{HEADER}{DOM0_ROW}"),
        "",
    );
}

/// Real Xen while it tears a domain down: still listed, but xenstore no longer has its name:
/// `(null)` in `xl list`, unknown by name, left out of `xl list -l` (docs/xen.md). The
/// stand-in shows it so once the domain is dying (`d`).
#[test]
fn xl_lists_a_dying_domain_without_its_name() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    let file = root.join("var/lib/gitvps-sim/xl/domains/xen02.json");
    let mut d = domain_state(&root, "xen02");
    d["state"] = "---s-d".into();
    std::fs::write(&file, d.to_string()).unwrap();
    check(
        &run(&root, "xl", &["list"]),
        0,
        &format!(
            "{HEADER}{DOM0_ROW}(null)                                       1  1024     2     ---s-d       0.0\n"
        ),
        "",
    );
    check(
        &run(&root, "xl", &["list", "xen02"]),
        1,
        "",
        "xen02 is an invalid domain identifier (rc=-6)\n",
    );
    let long = run(&root, "xl", &["list", "-l"]);
    assert_eq!(long.code, 0);
    assert!(!long.out.contains("xen02"), "{}", long.out);
    assert!(long.out.contains("\"domid\": 0,"), "{}", long.out);
    // Xen is done with it.
    std::fs::remove_file(&file).unwrap();
    check(
        &run(&root, "xl", &["list"]),
        0,
        &format!("{HEADER}{DOM0_ROW}"),
        "",
    );
}

// ---------------------------------------------------------------- console, sched-credit2, misc

#[test]
fn xl_console_prints_a_login_prompt_and_logs_input() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    let o = run_in(
        &root,
        "xl",
        &["console", "-t", "pv", "xen02"],
        b"root\nsecret\n\x1dnot logged",
    );
    check(
        &o,
        0,
        "\r\nDebian GNU/Linux 12 xen02 hvc0\r\n\r\nxen02 login: ",
        "",
    );
    let log = std::fs::read_to_string(root.join("var/lib/gitvps-sim/console/xen02.log")).unwrap();
    assert_eq!(log, "root\nsecret\n");
    assert_eq!(domain_state(&root, "xen02")["console_sessions"], 1);
    check(
        &run(&root, "xl", &["console", "nosuch"]),
        1,
        "",
        "nosuch is an invalid domain identifier (rc=-6)\n",
    );
}

#[test]
fn xl_sched_credit2_sets_and_shows() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(
            &root,
            "xl",
            &["sched-credit2", "-d", "xen02", "-w", "512", "-c", "50"],
        ),
        0,
        "",
        "",
    );
    let st = domain_state(&root, "xen02");
    assert_eq!(st["config"]["sched_weight"], 512);
    assert_eq!(st["config"]["sched_cap"], 50);
    check(
        &run(&root, "xl", &["sched-credit2", "-d", "xen02"]),
        0,
        "Name                                ID Weight  Cap\nxen02                                1    512   50\n",
        "",
    );
    check(
        &run(&root, "xl", &["sched-credit2", "-w", "512"]),
        1,
        "",
        "Must specify a domain.\n",
    );
    check(
        &run(&root, "xl", &["sched-credit2"]),
        0,
        "Cpupool Pool-0: Ratelimit: 1000us\n\
         Name                                ID Weight  Cap\n\
         Domain-0                             0    256    0\n\
         xen02                                1    512   50\n",
        "",
    );
}

#[test]
fn xl_unknown_subcommand() {
    let (_t, root) = node();
    check(
        &run(&root, "xl", &["frobnicate"]),
        1,
        "",
        "command not implemented\n",
    );
    let o = run(&root, "xl", &["destroy"]);
    assert_eq!(o.code, 2);
    assert_eq!(o.err, "'xl destroy' requires at least 1 argument.\n\n");
}

// ---------------------------------------------------------------- LVM

#[test]
fn lvs_json_report() {
    let (_t, root) = node_with_lv();
    check(
        &run(
            &root,
            "lvcreate",
            &["-y", "-W", "y", "-L", "10G", "-n", "xen03", "vg0"],
        ),
        0,
        "  Logical volume \"xen03\" created.\n",
        "",
    );
    let expected = "  {\n      \"report\": [\n          {\n              \"lv\": [\n                  {\"lv_name\":\"xen02\", \"vg_name\":\"vg0\", \"lv_size\":\"32212254720\"},\n                  {\"lv_name\":\"xen03\", \"vg_name\":\"vg0\", \"lv_size\":\"10737418240\"}\n              ]\n          }\n      ]\n  }\n";
    let args = [
        "--reportformat",
        "json",
        "-o",
        "lv_name,vg_name,lv_size",
        "--units",
        "b",
        "--nosuffix",
    ];
    check(&run(&root, "lvs", &args), 0, expected, "");
    let with_vg: Vec<&str> = args.iter().copied().chain(["vg0"]).collect();
    check(&run(&root, "lvs", &with_vg), 0, expected, "");
    let parsed: serde_json::Value = serde_json::from_str(&run(&root, "lvs", &args).out).unwrap();
    assert_eq!(parsed["report"][0]["lv"][1]["lv_size"], "10737418240");
}

#[test]
fn lvs_json_for_a_missing_vg() {
    let (_t, root) = node();
    check(
        &run(
            &root,
            "lvs",
            &[
                "--reportformat",
                "json",
                "-o",
                "lv_name,vg_name,lv_size",
                "--units",
                "b",
                "--nosuffix",
                "vg0",
            ],
        ),
        5,
        "  {\n      \"report\": [\n          {\n              \"lv\": [\n              ]\n          }\n      ]\n  }\n",
        "  Volume group \"vg0\" not found\n  Cannot process volume group vg0\n",
    );
}

#[test]
fn lvs_table() {
    let (_t, root) = node_with_lv();
    check(
        &run(&root, "lvcreate", &["-L", "15000M", "-n", "small", "vg0"]),
        0,
        "  Logical volume \"small\" created.\n",
        "",
    );
    let o = run(&root, "lvs", &[]);
    assert_eq!(o.code, 0);
    let lines: Vec<&str> = o.out.lines().map(str::trim_end).collect();
    assert_eq!(
        lines,
        [
            "  LV    VG  Attr       LSize   Pool Origin Data%  Meta%  Move Log Cpy%Sync Convert",
            "  small vg0 -wi-a----- <14.65g",
            "  xen02 vg0 -wi-a-----  30.00g",
        ]
    );
    check(
        &run(
            &root,
            "lvs",
            &[
                "--noheadings",
                "-o",
                "lv_name,lv_size",
                "--units",
                "g",
                "vg0/xen02",
            ],
        ),
        0,
        "  xen02 30.00g\n",
        "",
    );
    check(
        &run(
            &root,
            "lvs",
            &["--noheadings", "--separator", ":", "-o", "vg_name,lv_name"],
        ),
        0,
        "  vg0:small\n  vg0:xen02\n",
        "",
    );
}

#[test]
fn lvcreate_messages() {
    let (_t, root) = node_with_lv();
    check(
        &run(&root, "lvcreate", &["-L", "30G", "-n", "xen02", "vg0"]),
        5,
        "",
        "  Logical Volume \"xen02\" already exists in volume group \"vg0\"\n",
    );
    check(
        &run(&root, "lvcreate", &["-L", "30G", "-n", "xen09", "vg9"]),
        5,
        "",
        "  Volume group \"vg9\" not found\n  Cannot process volume group vg9\n",
    );
    check(
        &run(&root, "lvcreate", &["-L", "200G", "-n", "big", "vg0"]),
        5,
        "",
        "  Volume group \"vg0\" has insufficient free space (17920 extents): 51200 required.\n",
    );
    check(
        &run(&root, "lvcreate", &["-L", "1001m", "-n", "odd", "vg0"]),
        0,
        "  Rounding up size to full physical extent 1004.00 MiB\n  Logical volume \"odd\" created.\n",
        "",
    );
    assert_eq!(
        std::fs::metadata(root.join("dev/vg0/odd")).unwrap().len(),
        251 * 4 * 1024 * 1024
    );
    check(
        &run(&root, "lvcreate", &["-l", "10", "-n", "ext", "vg0"]),
        0,
        "  Logical volume \"ext\" created.\n",
        "",
    );
    assert_eq!(
        std::fs::metadata(root.join("dev/vg0/ext")).unwrap().len(),
        40 << 20
    );
    check(
        &run(&root, "lvcreate", &["-L", "1T", "-n", "huge", "vg0"]),
        5,
        "",
        "  Volume group \"vg0\" has insufficient free space (17659 extents): 262144 required.\n",
    );
}

#[test]
fn lvm_bad_command_lines_exit_3() {
    let (_t, root) = node_with_lv();
    check(
        &run(&root, "lvcreate", &["--bogus", "-L", "1G", "vg0"]),
        3,
        "",
        "lvcreate: unrecognized option '--bogus'\n  Error during parsing of command line.\n",
    );
    check(
        &run(&root, "lvcreate", &["-L", "30X", "-n", "a", "vg0"]),
        3,
        "",
        "  Invalid argument for --size: 30X\n  Error during parsing of command line.\n",
    );
    check(
        &run(&root, "lvcreate", &["-n", "a", "vg0"]),
        3,
        "",
        "  No command with matching syntax recognised.  Run 'lvcreate --help' for more information.\n",
    );
    check(
        &run(&root, "lvcreate", &["-L", "1G", "-n", "../../etc", "vg0"]),
        3,
        "",
        "  Logical volume name \"../../etc\" is invalid.\n  Run `lvcreate --help' for more information.\n",
    );
    check(
        &run(&root, "lvextend", &["-L"]),
        3,
        "",
        "lvextend: option requires an argument -- 'L'\n  Error during parsing of command line.\n",
    );
}

#[test]
fn lvextend_messages() {
    let (_t, root) = node_with_lv();
    check(
        &run(&root, "lvextend", &["-L", "40G", "vg0/xen02"]),
        0,
        "  Size of logical volume vg0/xen02 changed from 30.00 GiB (7680 extents) to 40.00 GiB (10240 extents).\n  Logical volume vg0/xen02 successfully resized.\n",
        "",
    );
    assert_eq!(
        std::fs::metadata(root.join("dev/vg0/xen02")).unwrap().len(),
        40 * GIB
    );
    check(
        &run(&root, "lvextend", &["-L", "+10G", "/dev/vg0/xen02"]),
        0,
        "  Size of logical volume vg0/xen02 changed from 40.00 GiB (10240 extents) to 50.00 GiB (12800 extents).\n  Logical volume vg0/xen02 successfully resized.\n",
        "",
    );
    check(
        &run(&root, "lvextend", &["-L", "50G", "vg0/xen02"]),
        5,
        "",
        "  New size (12800 extents) matches existing size (12800 extents).\n",
    );
    check(
        &run(&root, "lvextend", &["-L", "20G", "vg0/xen02"]),
        5,
        "",
        "  New size given (5120 extents) not larger than existing size (12800 extents)\n",
    );
    check(
        &run(&root, "lvextend", &["-L", "40G", "vg0/nope"]),
        5,
        "",
        "  Failed to find logical volume \"vg0/nope\"\n",
    );
    check(
        &run(&root, "lvextend", &["-L", "200G", "vg0/xen02"]),
        5,
        "",
        "  Insufficient free space: 38400 extents needed, but only 12800 available\n",
    );
    let full = root.join("dev/vg0/xen02").display().to_string();
    check(
        &run(&root, "lvextend", &["-r", "-L", "15000M", &full]),
        5,
        "",
        "  New size given (3750 extents) not larger than existing size (12800 extents)\n",
    );
}

#[test]
fn lvremove_messages() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(&root, "lvremove", &["-f", "vg0/xen02"]),
        5,
        "",
        "  Logical volume vg0/xen02 in use.\n",
    );
    check(&run(&root, "xl", &["destroy", "xen02"]), 0, "", "");
    check(
        &run_in(&root, "lvremove", &["vg0/xen02"], b"n\n"),
        5,
        "Do you really want to remove active logical volume vg0/xen02? [y/n]: ",
        "  Logical volume vg0/xen02 not removed.\n",
    );
    check(
        &run(&root, "lvremove", &["-f", "vg0/xen02"]),
        0,
        "  Logical volume \"xen02\" successfully removed.\n",
        "",
    );
    assert!(!root.join("dev/vg0/xen02").exists());
    check(
        &run(&root, "lvremove", &["-y", "vg0/xen02"]),
        5,
        "",
        "  Failed to find logical volume \"vg0/xen02\"\n",
    );
    check(
        &run(&root, "lvremove", &["-f", "vg7/xen02"]),
        5,
        "",
        "  Volume group \"vg7\" not found\n  Cannot process volume group vg7\n",
    );
}

// ---------------------------------------------------------------- e2fsck / resize2fs

#[test]
fn e2fsck_missing_device() {
    let (_t, root) = node();
    check(
        &run(&root, "e2fsck", &["-p", "/dev/vg0/none"]),
        8,
        "Possibly non-existent device?\n",
        "e2fsck: No such file or directory while trying to open /dev/vg0/none\n",
    );
    check(
        &run(&root, "e2fsck", &["-f", "/dev/vg0/none"]),
        8,
        "Possibly non-existent device?\n",
        "e2fsck 1.47.0 (5-Feb-2023)\ne2fsck: No such file or directory while trying to open /dev/vg0/none\n",
    );
}

#[test]
fn e2fsck_refuses_a_running_domains_disk() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(&root, "e2fsck", &["-p", "/dev/vg0/xen02"]),
        8,
        "/dev/vg0/xen02 is mounted.\ne2fsck: Cannot continue, aborting.\n\n",
        "",
    );
    let full = root.join("dev/vg0/xen02").display().to_string();
    check(
        &run(&root, "e2fsck", &["-p", &full]),
        8,
        &format!("{full} is mounted.\ne2fsck: Cannot continue, aborting.\n\n"),
        "",
    );
}

#[test]
fn e2fsck_clean_and_forced_count() {
    let (_t, root) = node_with_lv();
    check(
        &run(&root, "e2fsck", &["-p", "/dev/vg0/xen02"]),
        0,
        "/dev/vg0/xen02: clean, 11/1966080 files, 388650/7864320 blocks\n",
        "",
    );
    check(
        &run(&root, "e2fsck", &["-f", "-y", "/dev/vg0/xen02"]),
        0,
        "Pass 1: Checking inodes, blocks, and sizes\n\
         Pass 2: Checking directory structure\n\
         Pass 3: Checking directory connectivity\n\
         Pass 4: Checking reference counts\n\
         Pass 5: Checking group summary information\n\
         /dev/vg0/xen02: 11/1966080 files (0.0% non-contiguous), 388650/7864320 blocks\n",
        "e2fsck 1.47.0 (5-Feb-2023)\n",
    );
    assert_eq!(fs_state(&root)["/dev/vg0/xen02"]["fsck"], 2);
    check(
        &run(&root, "e2fsck", &["-p", "-n", "/dev/vg0/xen02"]),
        8,
        "",
        "e2fsck: Only one of the options -p/-a, -n or -y may be specified.\n",
    );
}

#[test]
fn resize2fs_after_lvextend() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    check(
        &run(&root, "xl", &["shutdown", "xen02"]),
        0,
        "",
        "Shutting down domain 1\n",
    );
    check(
        &run(&root, "lvextend", &["-L", "40G", "vg0/xen02"]),
        0,
        "  Size of logical volume vg0/xen02 changed from 30.00 GiB (7680 extents) to 40.00 GiB (10240 extents).\n  Logical volume vg0/xen02 successfully resized.\n",
        "",
    );
    // The guest mounted it: an offline resize wants a forced check first.
    check(
        &run(&root, "resize2fs", &["/dev/vg0/xen02"]),
        1,
        "",
        "resize2fs 1.47.0 (5-Feb-2023)\nPlease run 'e2fsck -f /dev/vg0/xen02' first.\n\n",
    );
    check(
        &run(&root, "e2fsck", &["-f", "-p", "/dev/vg0/xen02"]),
        0,
        "/dev/vg0/xen02: 11/1966080 files (0.0% non-contiguous), 388650/7864320 blocks\n",
        "",
    );
    check(
        &run(&root, "resize2fs", &["/dev/vg0/xen02"]),
        0,
        "Resizing the filesystem on /dev/vg0/xen02 to 10485760 (4k) blocks.\nThe filesystem on /dev/vg0/xen02 is now 10485760 (4k) blocks long.\n\n",
        "resize2fs 1.47.0 (5-Feb-2023)\n",
    );
    check(
        &run(&root, "resize2fs", &["/dev/vg0/xen02"]),
        0,
        "",
        "resize2fs 1.47.0 (5-Feb-2023)\nThe filesystem is already 10485760 (4k) blocks long.  Nothing to do!\n\n",
    );
    let fs = fs_state(&root);
    assert_eq!(fs["/dev/vg0/xen02"]["blocks"], 10485760);
    assert_eq!(fs["/dev/vg0/xen02"]["resize"], 2);
    assert_eq!(fs["/dev/vg0/xen02"]["fsck"], 1);
}

#[test]
fn lvextend_resizefs_checks_then_resizes() {
    let (_t, root) = node_with_lv();
    check(
        &run(&root, "lvextend", &["-r", "-L", "40G", "vg0/xen02"]),
        0,
        "/dev/vg0/xen02: 11/1966080 files (0.0% non-contiguous), 388650/7864320 blocks\n\
         \x20 Size of logical volume vg0/xen02 changed from 30.00 GiB (7680 extents) to 40.00 GiB (10240 extents).\n\
         \x20 Logical volume vg0/xen02 successfully resized.\n\
         Resizing the filesystem on /dev/vg0/xen02 to 10485760 (4k) blocks.\n\
         The filesystem on /dev/vg0/xen02 is now 10485760 (4k) blocks long.\n\n",
        "resize2fs 1.47.0 (5-Feb-2023)\n",
    );
}

#[test]
fn resize2fs_missing_device() {
    let (_t, root) = node();
    check(
        &run(&root, "resize2fs", &["/dev/vg0/none"]),
        1,
        "",
        "resize2fs 1.47.0 (5-Feb-2023)\nresize2fs: No such file or directory while trying to open /dev/vg0/none\nCouldn't find valid filesystem superblock.\n",
    );
}

// ---------------------------------------------------------------- install, API, parsers

#[test]
fn install_writes_quoted_executable_wrappers() {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let base = t.path().canonicalize().unwrap();
    let root = base.join("it's a node");
    let bin = base.join("bin dir");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("fake 'gitvps'");
    std::fs::write(
        &exe,
        "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]\\n' \"$a\"; done\n",
    )
    .unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();

    let program = StandIn::Gitvps(exe.clone());
    install(&root, &program).unwrap();
    install(&root, &program).unwrap(); // idempotent
    assert!(root.join("var/lib/gitvps-sim/xl/domains").is_dir());
    assert!(!root.join("dev/vg0").exists(), "install creates no VG");
    for tool in TOOLS {
        let w = root.join("usr/sbin").join(tool);
        let mode = std::fs::metadata(&w).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{tool}");
        let text = std::fs::read_to_string(&w).unwrap();
        assert!(text.starts_with("#!/bin/sh\nexec '"), "{text}");
        assert!(text.contains("'\\''"), "{text}");
    }
    let wrapper = root.join("usr/sbin/xl");
    // A freshly written executable can be briefly "text file busy" if another test forks.
    let mut output = None;
    for _ in 0..50 {
        match std::process::Command::new(&wrapper)
            .args(["list", "a b", "it's"])
            .output()
        {
            Ok(o) => {
                output = Some(o);
                break;
            }
            Err(e) if e.raw_os_error() == Some(26) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("{e}"),
        }
    }
    let output = output.unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!(
            "[node-sim]\n[exec]\n[--root]\n[{}]\n[xl]\n[list]\n[a b]\n[it's]\n",
            root.display()
        )
    );
    // The small program takes ROOT and the tool alone.
    install(&root, &StandIn::Small(exe)).unwrap();
    let output = std::process::Command::new(&wrapper)
        .args(["list", "a b"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        format!("[--root]\n[{}]\n[xl]\n[list]\n[a b]\n", root.display())
    );
}

#[test]
fn the_small_program_is_used_where_it_was_built_beside_gitvps() {
    let t = tempfile::tempdir().unwrap();
    let gitvps = t.path().join("gitvps");
    std::fs::write(&gitvps, "").unwrap();
    assert_eq!(StandIn::beside(&gitvps), StandIn::Gitvps(gitvps.clone()));
    let small = t.path().join("gitvps-stand-in");
    std::fs::write(&small, "").unwrap();
    assert_eq!(StandIn::beside(&gitvps), StandIn::Small(small.clone()));
    let copy = t.path().join("copy");
    assert_eq!(
        StandIn::beside(&gitvps).at(copy.clone()),
        StandIn::Small(copy)
    );
}

#[test]
fn install_refuses_a_path_that_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let (_t, base) = node();
    let root = base.join(std::ffi::OsStr::from_bytes(b"node\xff"));
    let e = install(&root, &StandIn::Gitvps("/usr/bin/gitvps".into())).unwrap_err();
    assert!(matches!(&e, SimError::NotUtf8(p) if *p == root), "{e:?}");
    assert!(!root.exists(), "nothing is written before the refusal");
    assert!(
        e.to_string()
            .ends_with("is not UTF-8, which a wrapper script cannot name")
    );
}

#[test]
fn an_internal_error_is_printed_with_its_causes_after_the_tool_prefix() {
    let (_t, root) = node_with_lv();
    let lvm = root.join("var/lib/gitvps-sim/lvm.json");
    std::fs::write(&lvm, "{").unwrap();
    let cause = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    check(
        &run(&root, "lvcreate", &["-L", "1G", "-n", "x", "vg0"]),
        5,
        "",
        &format!("  corrupt state file {}: {cause}\n", lvm.display()),
    );
    std::fs::write(root.join("var/lib/gitvps-sim/fs.json"), "[]").unwrap();
    let o = run(&root, "e2fsck", &["-f", "/dev/vg0/xen02"]);
    assert_eq!(o.code, 8, "{}", o.err);
    let fs = root.join("var/lib/gitvps-sim/fs.json");
    let line = format!(
        "\ne2fsck: corrupt state file {}: invalid type: ",
        fs.display()
    );
    assert!(o.err.contains(&line), "{}", o.err);
}

#[test]
fn run_tool_uses_the_api_and_leaves_no_temp_files() {
    let (_t, root) = node_with_lv();
    create_xen02(&root);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = vec!["vg0/xen02".to_string()];
    let code = run_tool(&root, "lvs", &args, &mut out, &mut err);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("  xen02 vg0 -wi-ao---- 30.00g"), "{out}");
    let code = run_tool(&root, "fdisk", &[], &mut Vec::new(), &mut Vec::new());
    assert_eq!(code, 127);
    for dir in [
        "var/lib/gitvps-sim",
        "var/lib/gitvps-sim/xl",
        "var/lib/gitvps-sim/xl/domains",
    ] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.contains(".tmp-"), "{name}");
        }
    }
}

#[test]
fn cfg_parser_lists_comments_append_and_numbers() {
    let text =
        "a = [ 'x', # one\n  \"y\",\n\n]\na += [ 'z' ]\nb = 0x10; c = 010\nd = \"q\\\"\\n\"\n";
    let cfg = xlcfg::Cfg::parse("t.cfg", text).unwrap();
    let mut sink = Vec::new();
    assert_eq!(
        cfg.get_list("a", &mut sink).unwrap(),
        vec!["x".to_string(), "y".into(), "z".into()]
    );
    assert_eq!(cfg.get_long("b", &mut sink), Some(16));
    assert_eq!(cfg.get_long("c", &mut sink), Some(8));
    assert_eq!(cfg.get_string("d", &mut sink).unwrap(), "q\"\n");
    assert!(sink.is_empty());
    assert_eq!(cfg.get_long("d", &mut sink), None);
    assert_eq!(
        String::from_utf8(sink).unwrap(),
        "t.cfg:7: warning: parameter `d' is not a valid number\n"
    );
    assert!(xlcfg::Cfg::parse("t.cfg", "a = 'unterminated\n").is_err());
    assert!(xlcfg::Cfg::parse("t.cfg", "a = [ 'x' 'y' ]\n").is_err());
}

#[test]
fn disk_and_vif_specs() {
    let d = xlcfg::parse_disk("c", "phy:/dev/vg0/x,xvda,w").unwrap();
    assert_eq!(
        (
            d.pdev_path.as_str(),
            d.vdev.as_str(),
            d.format.as_str(),
            d.readwrite
        ),
        ("/dev/vg0/x", "xvda", "raw", 1)
    );
    let d = xlcfg::parse_disk("c", "vdev=xvdb, access=ro, target=/img/a,b.img").unwrap();
    assert_eq!((d.pdev_path.as_str(), d.readwrite), ("/img/a,b.img", 0));
    assert_eq!(
        xlcfg::parse_disk("c", "/img/a.img").unwrap_err(),
        "c: config parsing error in disk specification: no vdev specified in `/img/a.img'"
    );
    assert_eq!(xlcfg::parse_vif_rate("c", "10Mb/s"), Ok((62_500, 50_000)));
    assert_eq!(
        xlcfg::parse_vif_rate("c", "1MB/s@20ms"),
        Ok((20_000, 20_000))
    );
    assert_eq!(
        xlcfg::parse_vif_rate("c", "1MB/s@x"),
        Err("c: config parsing error in vif: invalid rate interval in `x'".to_string())
    );
}

#[test]
fn lvm_sizes() {
    assert_eq!(lvm::display_long(30 * GIB), "30.00 GiB");
    assert_eq!(lvm::display_long(15000 << 20), "<14.65 GiB");
    assert_eq!(lvm::display_long(4 << 20), "4.00 MiB");
    assert!(lvm::valid_name("xen02"));
    assert!(!lvm::valid_name(".."));
    assert!(!lvm::valid_name("a/b"));
    assert!(!lvm::valid_name("-x"));
}

/// `lvcreate -s`: the snapshot reads the origin as it was, takes its copy-on-write size from
/// the VG (refused when the VG has less), shows as `swi` with its origin in `lvs`, and goes
/// with `lvremove` (and with its origin).
#[test]
fn lvm_snapshots() {
    let (_t, root) = node_with_lv();
    let origin = root.join("dev/vg0/xen02");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&origin)
            .unwrap();
        f.seek(SeekFrom::Start(5 * GIB)).unwrap();
        f.write_all(b"before").unwrap();
    }
    check(
        &run(
            &root,
            "lvcreate",
            &["-s", "-L", "1G", "-n", "xen02.backup", "vg0/xen02"],
        ),
        0,
        "  Logical volume \"xen02.backup\" created.\n",
        "",
    );
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&origin)
            .unwrap();
        f.seek(SeekFrom::Start(5 * GIB)).unwrap();
        f.write_all(b"after!").unwrap();
    }
    let snap = root.join("dev/vg0/xen02.backup");
    assert_eq!(std::fs::metadata(&snap).unwrap().len(), 30 * GIB);
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&snap).unwrap();
        f.seek(SeekFrom::Start(5 * GIB)).unwrap();
        let mut b = [0u8; 6];
        f.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"before", "the snapshot keeps the origin as it was");
    }
    check(
        &run(
            &root,
            "lvs",
            &[
                "--noheadings",
                "-o",
                "lv_name,lv_attr,lv_size,origin",
                "--units",
                "g",
                "vg0",
            ],
        ),
        0,
        "  xen02        owi-a-s--- 30.00g      \n  xen02.backup swi-a-s---  1.00g xen02\n",
        "",
    );
    // 100 GiB - 30 - 1 = 69 GiB free: a 70 GiB snapshot is refused, nothing is left behind.
    check(
        &run(
            &root,
            "lvcreate",
            &["-s", "-L", "70G", "-n", "big", "vg0/xen02"],
        ),
        5,
        "",
        "  Volume group \"vg0\" has insufficient free space (17664 extents): 17920 required.\n",
    );
    assert!(!root.join("dev/vg0/big").exists());
    check(
        &run(
            &root,
            "lvcreate",
            &["-s", "-L", "1G", "-n", "s2", "vg0/xen02.backup"],
        ),
        5,
        "",
        "  Snapshots of snapshots are not supported.\n",
    );
    check(
        &run(
            &root,
            "lvcreate",
            &["-s", "-L", "1G", "-n", "s3", "vg0/nope"],
        ),
        5,
        "",
        "  Failed to find logical volume \"vg0/nope\"\n",
    );
    check(
        &run(&root, "lvremove", &["-f", "vg0/xen02.backup"]),
        0,
        "  Logical volume \"xen02.backup\" successfully removed.\n",
        "",
    );
    assert!(!snap.exists());
    check(
        &run(
            &root,
            "lvs",
            &["--noheadings", "-o", "lv_name,lv_attr", "vg0"],
        ),
        0,
        "  xen02 -wi-a-----\n",
        "",
    );
    // Removing an origin removes its snapshots first.
    run(
        &root,
        "lvcreate",
        &["-s", "-L", "1G", "-n", "s4", "vg0/xen02"],
    );
    check(
        &run(&root, "lvremove", &["-f", "vg0/xen02"]),
        0,
        "  Logical volume \"s4\" successfully removed.\n  Logical volume \"xen02\" successfully removed.\n",
        "",
    );
}

/// `lvconvert --merge` puts the origin back as the snapshot saw it and removes the snapshot;
/// an open origin delays the merge (both left as they are), as LVM 2.03 does.
#[test]
fn lvm_snapshot_merge() {
    use std::io::{Read, Seek, SeekFrom, Write};
    let (_t, root) = node_with_lv();
    let origin = root.join("dev/vg0/xen02");
    let write = |what: &[u8]| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&origin)
            .unwrap();
        f.seek(SeekFrom::Start(5 * GIB)).unwrap();
        f.write_all(what).unwrap();
    };
    let read = || {
        let mut f = std::fs::File::open(&origin).unwrap();
        f.seek(SeekFrom::Start(5 * GIB)).unwrap();
        let mut b = [0u8; 6];
        f.read_exact(&mut b).unwrap();
        b
    };
    write(b"before");
    let snap = ["-s", "-L", "1G", "-n", "xen02.snap.a", "vg0/xen02"];
    check(
        &run(&root, "lvcreate", &snap),
        0,
        "  Logical volume \"xen02.snap.a\" created.\n",
        "",
    );
    write(b"after!");
    check(
        &run(&root, "lvconvert", &["--merge", "vg0/xen02"]),
        5,
        "",
        "  Command on LV vg0/xen02 does not accept LV type linear.\n  Command not permitted on LV vg0/xen02.\n",
    );
    check(
        &run(&root, "lvconvert", &["--merge", "vg0/nope"]),
        5,
        "",
        "  Failed to find logical volume \"vg0/nope\"\n",
    );
    // A running guest holds the origin: the merge waits for an activation that never comes.
    create_xen02(&root);
    check(
        &run(&root, "lvconvert", &["--merge", "vg0/xen02.snap.a"]),
        0,
        "  Delaying merge since origin is open.\n  Merging of snapshot vg0/xen02.snap.a will occur on next activation of vg0/xen02.\n",
        "",
    );
    assert_eq!(&read(), b"after!");
    check(&run(&root, "xl", &["destroy", "xen02"]), 0, "", "");
    check(
        &run(&root, "lvconvert", &["--merge", "vg0/xen02.snap.a"]),
        0,
        "  Merging of volume vg0/xen02.snap.a started.\n  vg0/xen02: Merged: 100.00%\n",
        "",
    );
    assert_eq!(
        &read(),
        b"before",
        "the origin is back as the snapshot saw it"
    );
    assert_eq!(std::fs::metadata(&origin).unwrap().len(), 30 * GIB);
    assert!(!root.join("dev/vg0/xen02.snap.a").exists());
    let lvs = run(
        &root,
        "lvs",
        &["--noheadings", "-o", "lv_name,origin", "vg0"],
    );
    assert_eq!(lvs.out.trim(), "xen02", "{}", lvs.err);
}
