//! The `xl` stand-in (Xen 4.17 toolstack): create, list, shutdown, reboot, destroy, console,
//! sched-credit2, pause, unpause, domid, domname and help, with xl's messages and exit codes.

use super::error::{FileOp, OnFile, Result, SimError};
use super::fs as fsim;
use super::json::{J, obj, yajl};
use super::opts::{self, OptError, Parsed, Spec, spec};
use super::state::{self, DomConfig, Domain, Node, XlState};
use super::xlcfg::{self, Cfg};
use std::io::{Read, Write};

const DOM0_NAME: &str = "Domain-0";
const DOM0_MEMKB: u64 = 2048 * 1024;
const DOM0_VCPUS: u32 = 4;
const DOM0_CPU_TIME: f64 = 11794.3;
const NULL_UUID: &str = "00000000-0000-0000-0000-000000000000";
const SHUTDOWN_REASON_LETTERS: &str = "-rscwS";

/// (name, usage, description) for `xl help`.
const COMMANDS: &[(&str, &str, &str)] = &[
    (
        "create",
        "<ConfigFile> [options] [vars]",
        "Create a domain from config file <filename>",
    ),
    (
        "list",
        "[options] [Domain]",
        "List information about all/some domains",
    ),
    (
        "destroy",
        "[options] <Domain>",
        "Terminate a domain immediately",
    ),
    (
        "shutdown",
        "[options] <-a|Domain>",
        "Issue a shutdown signal to a domain",
    ),
    (
        "reboot",
        "[options] <-a|Domain>",
        "Issue a reboot signal to a domain",
    ),
    ("pause", "<Domain>", "Pause execution of a domain"),
    ("unpause", "<Domain>", "Unpause a paused domain"),
    (
        "console",
        "[options] <Domain>\n-t <type>       console type, pv , serial or vuart\n-n <number>     console number",
        "Attach to domain's console",
    ),
    (
        "sched-credit2",
        "[-d <Domain> [-w[=WEIGHT]] [-c[=CAP]]] [-p CPUPOOL]",
        "Get/set credit2 scheduler parameters",
    ),
    (
        "domid",
        "<DomainName>",
        "Convert a domain name to domain id",
    ),
    (
        "domname",
        "<DomainId>",
        "Convert a domain id to domain name",
    ),
];

fn help(command: Option<&str>, out: &mut dyn Write) {
    match command {
        None | Some("help") => {
            say!(out, "Usage xl [-vfNtT] <subcommand> [args]\n");
            say!(out, "xl full list of subcommands:\n");
            for (name, _, desc) in COMMANDS {
                say!(out, " {name:<19} {desc}");
            }
        }
        Some(c) => match COMMANDS.iter().find(|(n, _, _)| *n == c) {
            Some((name, usage, desc)) => {
                say!(out, "Usage: xl [-v] {name} {usage}\n\n{desc}.\n");
            }
            None => say!(out, "command \"{c}\" not implemented"),
        },
    }
}

/// Runs `xl ARGS...`.
pub(crate) fn run(
    node: &Node,
    args: &[String],
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        if a.len() > 1 && a.starts_with('-') {
            if a[1..].chars().all(|c| "vfNtT".contains(c)) {
                i += 1;
                continue;
            }
            say!(err, "unknown global option");
            return Ok(1);
        }
        break;
    }
    let Some(cmd) = args.get(i) else {
        help(None, out);
        return Ok(1);
    };
    let rest = &args[i + 1..];
    match cmd.as_str() {
        "create" => create(node, rest, out, err),
        "list" | "li" => list(node, rest, out, err),
        "shutdown" => power(node, rest, false, out, err),
        "reboot" => power(node, rest, true, out, err),
        "destroy" => destroy(node, rest, out, err),
        "console" => console(node, rest, input, out, err),
        "sched-credit2" => sched_credit2(node, rest, out, err),
        "pause" => pause(node, rest, true, out, err),
        "unpause" => pause(node, rest, false, out, err),
        "domid" => domid(node, rest, out, err),
        "domname" => domname(node, rest, out, err),
        "help" => {
            help(rest.first().map(String::as_str), out);
            Ok(0)
        }
        _ => {
            say!(err, "command not implemented");
            Ok(1)
        }
    }
}

/// def_getopt: options of one subcommand, `-h`, and the required positional count.
fn cmd_opts(
    cmd: &str,
    args: &[String],
    specs: &[Spec],
    required: usize,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<Parsed, i32> {
    let mut all = specs.to_vec();
    all.push(spec("help", Some('h'), Some("help"), false));
    match opts::parse(args, &all, false) {
        Err(e) => {
            let what = match e {
                OptError::UnknownShort(c) | OptError::MissingShort(c) => c.to_string(),
                OptError::UnknownLong(l)
                | OptError::MissingLong(l)
                | OptError::UnexpectedArg(l) => l,
            };
            say!(err, "option `{what}' not supported.");
            Err(2)
        }
        Ok(p) => {
            if p.has("help") {
                help(Some(cmd), out);
                return Err(0);
            }
            if p.args.len() < required {
                say!(
                    err,
                    "'xl {cmd}' requires at least {required} argument{}.\n",
                    if required > 1 { "s" } else { "" }
                );
                help(Some(cmd), out);
                return Err(2);
            }
            Ok(p)
        }
    }
}

/// What a domain qualifier names.
enum Target {
    Dom0,
    Guest(usize),
    /// A numeric id no domain has.
    Missing(u32),
}

/// libxl_domain_qualifier_to_domid + find_domain: all digits is a domid (no existence check),
/// anything else a name; an unknown name is reported (`rc=-6`) and gives `None`.
fn find_domain(domains: &[Domain], q: &str, err: &mut dyn Write) -> Option<Target> {
    if q.chars().all(|c| c.is_ascii_digit()) {
        let v: u64 = if q.is_empty() {
            0
        } else {
            q.parse().unwrap_or(u64::MAX)
        };
        let id = u32::try_from(v & 0xFFFF_FFFF).unwrap_or(u32::MAX);
        if id == 0 {
            return Some(Target::Dom0);
        }
        return Some(match domains.iter().position(|d| d.domid == id) {
            Some(i) => Target::Guest(i),
            None => Target::Missing(id),
        });
    }
    if q == DOM0_NAME {
        return Some(Target::Dom0);
    }
    match domains.iter().position(|d| d.name == q && !dying(d)) {
        Some(i) => Some(Target::Guest(i)),
        None => {
            say!(err, "{q} is an invalid domain identifier (rc=-6)");
            None
        }
    }
}

fn state6(s: &str) -> String {
    let mut v: Vec<char> = s.chars().take(6).collect();
    while v.len() < 6 {
        v.push('-');
    }
    v.into_iter().collect()
}

/// Whether Xen is tearing the domain down (the sixth state letter, `d`): libxl has already
/// removed its xenstore entries, so it has no name any more (`xl list` prints `(null)`, a name
/// finds nothing, `xl list -l` leaves it out) while Xen still lists it by domid. A test makes
/// one by editing a domain's `state` (`---s-d`), and ends it by deleting its file.
fn dying(d: &Domain) -> bool {
    state6(&d.state).as_bytes()[5] == b'd'
}

/// What `xl list` prints for a domain xenstore has no name for: xl passes
/// `libxl_domid_to_name`'s NULL to `printf("%s")`, which glibc prints as `(null)`.
const NO_NAME: &str = "(null)";

/// The shutdown reason code the state letters encode, if the domain is shut down.
fn shutdown_reason(state: &str) -> Option<usize> {
    let s: Vec<char> = state6(state).chars().collect();
    if s[3] != 's' {
        return None;
    }
    Some(SHUTDOWN_REASON_LETTERS.find(s[4]).unwrap_or(0))
}

struct Row {
    name: String,
    domid: u32,
    mem_mib: u64,
    vcpus: u32,
    state: String,
    cpu_time: f64,
    uuid: String,
}

fn dom0_row() -> Row {
    Row {
        name: DOM0_NAME.to_string(),
        domid: 0,
        mem_mib: DOM0_MEMKB / 1024,
        vcpus: DOM0_VCPUS,
        state: "r-----".to_string(),
        cpu_time: DOM0_CPU_TIME,
        uuid: NULL_UUID.to_string(),
    }
}

fn guest_row(d: &Domain) -> Row {
    Row {
        name: if dying(d) {
            NO_NAME.to_string()
        } else {
            d.name.clone()
        },
        domid: d.domid,
        mem_mib: d.config.target_memkb / 1024,
        vcpus: d.config.avail_vcpus,
        state: state6(&d.state),
        cpu_time: d.cpu_time,
        uuid: d.uuid.clone(),
    }
}

fn list(node: &Node, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let specs = [
        spec("long", Some('l'), Some("long"), false),
        spec("verbose", Some('v'), Some("verbose"), false),
        spec("context", Some('Z'), Some("context"), false),
        spec("cpupool", Some('c'), Some("cpupool"), false),
        spec("numa", Some('n'), Some("numa"), false),
    ];
    let p = match cmd_opts("list", args, &specs, 0, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let _lock = node.lock()?;
    let st = node.load_xl()?;
    let domains = node.load_domains()?;
    // None = Domain-0, Some(i) = domains[i].
    let selected: Vec<Option<usize>> = match p.args.as_slice() {
        [] => std::iter::once(None)
            .chain((0..domains.len()).map(Some))
            .collect(),
        [q] => match find_domain(&domains, q, err) {
            None => return Ok(1),
            Some(Target::Missing(_)) => {
                say!(err, "Error: Domain '{q}' does not exist.");
                return Ok(1);
            }
            Some(Target::Dom0) => vec![None],
            Some(Target::Guest(i)) => vec![Some(i)],
        },
        _ => {
            help(Some("list"), out);
            return Ok(1);
        }
    };
    if p.has("long") {
        // xl skips a domain whose configuration libxl cannot retrieve, as a dying one's.
        let items: Vec<J> = selected
            .iter()
            .filter_map(|s| match s {
                None => Some(dom0_json(&st)),
                Some(i) => (!dying(&domains[*i])).then(|| guest_json(&domains[*i])),
            })
            .collect();
        // yajl ends the document with a newline and xl prints it with puts().
        say!(out, "{}", yajl(&J::Arr(items)));
        return Ok(0);
    }
    let verbose = p.has("verbose");
    let context = p.has("context");
    let mut header =
        String::from("Name                                        ID   Mem VCPUs\tState\tTime(s)");
    if verbose {
        header.push_str("   UUID                            Reason-Code\tSecurity Label");
    }
    if context && !verbose {
        header.push_str("   Security Label");
    }
    if p.has("cpupool") {
        header.push_str("         Cpupool");
    }
    if p.has("numa") {
        header.push_str(" NODE Affinity");
    }
    say!(out, "{header}");
    for s in &selected {
        let r = match s {
            None => dom0_row(),
            Some(i) => guest_row(&domains[*i]),
        };
        let mut line = format!(
            "{:<40} {:>5} {:>5} {:>5}     {}  {:>8.1}",
            r.name, r.domid, r.mem_mib, r.vcpus, r.state, r.cpu_time
        );
        if verbose {
            line.push_str(&format!(" {}", r.uuid));
            match shutdown_reason(&r.state) {
                Some(code) => line.push_str(&format!(" {code:>8x}")),
                None => line.push_str(&format!(" {:>8}", "-")),
            }
        }
        if verbose || context {
            line.push_str(&format!(" {:>16}", "-"));
        }
        if p.has("cpupool") {
            line.push_str(&format!("{:>16}", "Pool-0"));
        }
        if p.has("numa") {
            line.push_str(" all");
        }
        say!(out, "{line}");
    }
    Ok(0)
}

fn sched_json(weight: u32, cap: u32) -> J {
    obj(vec![
        ("sched", J::s("credit2")),
        ("weight", J::n(weight)),
        ("cap", J::n(cap)),
    ])
}

fn vcpu_list(n: u32) -> J {
    J::Arr((0..n).map(J::n).collect())
}

fn dom0_json(st: &XlState) -> J {
    obj(vec![
        ("domid", J::n(0)),
        (
            "config",
            obj(vec![
                (
                    "c_info",
                    // Real Xen 4.17: no uuid, no vCPUs, a target one KiB under the
                    // maximum, and both arch tables (docs/xen.md).
                    obj(vec![("type", J::s("pv")), ("name", J::s(DOM0_NAME))]),
                ),
                (
                    "b_info",
                    obj(vec![
                        ("max_memkb", J::n(DOM0_MEMKB)),
                        ("target_memkb", J::n(DOM0_MEMKB - 1)),
                        (
                            "sched_params",
                            sched_json(st.dom0_sched_weight, st.dom0_sched_cap),
                        ),
                        ("type.pv", obj(vec![])),
                        ("arch_arm", obj(vec![])),
                        ("arch_x86", obj(vec![])),
                    ]),
                ),
            ]),
        ),
    ])
}

/// libxl_domain_config as JSON (IDL field order, unset fields omitted).
pub(crate) fn config_json(name: &str, uuid: Option<&str>, c: &DomConfig) -> J {
    // As real Xen 4.17 prints a created domain (docs/xen.md): the unset domid, the hotplug
    // and claim defaults libxl filled in.
    let mut c_info = vec![
        ("type", J::s(c.kind.clone())),
        ("name", J::s(name)),
        ("domid", J::n(u32::MAX)),
    ];
    if let Some(u) = uuid {
        c_info.push(("uuid", J::s(u)));
    }
    c_info.push(("run_hotplug_scripts", J::s("True")));
    let mut b_info = vec![
        ("max_vcpus", J::n(c.max_vcpus)),
        ("avail_vcpus", vcpu_list(c.avail_vcpus)),
        ("max_memkb", J::n(c.max_memkb)),
        ("target_memkb", J::n(c.target_memkb)),
        ("video_memkb", J::n(0)),
        ("sched_params", sched_json(c.sched_weight, c.sched_cap)),
        ("claim_mode", J::s("True")),
    ];
    if let Some(k) = &c.kernel {
        b_info.push(("kernel", J::s(k.clone())));
    }
    if let Some(k) = &c.cmdline {
        b_info.push(("cmdline", J::s(k.clone())));
    }
    if let Some(k) = &c.ramdisk {
        b_info.push(("ramdisk", J::s(k.clone())));
    }
    let mut u = Vec::new();
    if c.kind == "pv" {
        if let Some(b) = &c.bootloader {
            u.push(("bootloader", J::s(b.clone())));
        }
        if !c.bootloader_args.is_empty() {
            u.push((
                "bootloader_args",
                J::Arr(c.bootloader_args.iter().map(|a| J::s(a.clone())).collect()),
            ));
        }
    }
    let union_key = format!("type.{}", c.kind);
    let mut b_info: Vec<(String, J)> = b_info
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    b_info.push((union_key, obj(u)));
    b_info.push(("arch_arm".into(), obj(vec![])));
    b_info.push(("arch_x86".into(), obj(vec![("msr_relaxed", J::s("False"))])));

    let mut config = vec![
        ("c_info".to_string(), obj(c_info)),
        ("b_info".to_string(), J::Obj(b_info)),
    ];
    if !c.disks.is_empty() {
        let disks = c
            .disks
            .iter()
            .map(|d| {
                let mut f = Vec::new();
                if !d.pdev_path.is_empty() {
                    f.push(("pdev_path", J::s(d.pdev_path.clone())));
                }
                // The backend is chosen when the disk is attached: the stored config
                // keeps none.
                f.push(("vdev", J::s(d.vdev.clone())));
                f.push(("format", J::s(d.format.clone())));
                if d.readwrite != 0 {
                    f.push(("readwrite", J::n(d.readwrite)));
                }
                if d.is_cdrom != 0 {
                    f.push(("is_cdrom", J::n(d.is_cdrom)));
                }
                f.push(("colo_restore_enable", J::s("False")));
                obj(f)
            })
            .collect();
        config.push(("disks".to_string(), J::Arr(disks)));
    }
    if !c.nics.is_empty() {
        let nics = c
            .nics
            .iter()
            .map(|n| {
                let mut f = vec![("devid", J::n(n.devid))];
                if let Some(m) = &n.model {
                    f.push(("model", J::s(m.clone())));
                }
                f.push(("mac", J::s(n.mac.clone())));
                if let Some(ip) = &n.ip {
                    f.push(("ip", J::s(ip.clone())));
                }
                f.push(("bridge", J::s(n.bridge.clone())));
                if let Some(v) = &n.ifname {
                    f.push(("ifname", J::s(v.clone())));
                }
                if let Some(v) = &n.script {
                    f.push(("script", J::s(v.clone())));
                }
                f.push(("nictype", J::s(n.nictype.clone())));
                if let Some(v) = n.rate_bytes_per_interval {
                    f.push(("rate_bytes_per_interval", J::n(v)));
                }
                if let Some(v) = n.rate_interval_usecs {
                    f.push(("rate_interval_usecs", J::n(v)));
                }
                if let Some(v) = &n.gatewaydev {
                    f.push(("gatewaydev", J::s(v.clone())));
                }
                obj(f)
            })
            .collect();
        config.push(("nics".to_string(), J::Arr(nics)));
    }
    for (k, v) in [
        ("on_poweroff", &c.on_poweroff),
        ("on_reboot", &c.on_reboot),
        ("on_watchdog", &c.on_watchdog),
        ("on_crash", &c.on_crash),
        ("on_soft_reset", &c.on_soft_reset),
    ] {
        // libxl's enum names, with `_`; "destroy" (the default) is left out.
        if v != "destroy" {
            config.push((k.to_string(), J::s(v.replace('-', "_"))));
        }
    }
    J::Obj(config)
}

fn guest_json(d: &Domain) -> J {
    obj(vec![
        ("domid", J::n(d.domid)),
        ("config", config_json(&d.name, Some(&d.uuid), &d.config)),
    ])
}

fn create(node: &Node, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let specs = [
        spec("defconfig", Some('f'), Some("defconfig"), true),
        spec("quiet", Some('q'), Some("quiet"), false),
        spec("dryrun", Some('n'), Some("dryrun"), false),
        spec("paused", Some('p'), None, false),
        spec("console", Some('c'), None, false),
        spec("debug", Some('d'), None, false),
        spec("foreground", Some('F'), None, false),
        spec("nowait", Some('e'), None, false),
        spec("vnc", Some('V'), Some("vncviewer"), false),
        spec("vncpass", Some('A'), Some("vncviewer-autopass"), false),
        spec(
            "ignore-global",
            None,
            Some("ignore-global-affinity-masks"),
            false,
        ),
    ];
    let p = match cmd_opts("create", args, &specs, 0, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let mut filename = p.value("defconfig").map(str::to_string);
    let mut extra = String::new();
    for a in &p.args {
        if a.contains('=') {
            extra.push_str(a);
            extra.push('\n');
        } else if filename.is_none() {
            filename = Some(a.clone());
        } else {
            help(Some("create"), out);
            return Ok(2);
        }
    }
    let Some(filename) = filename else {
        say!(err, "Config file not specified and none in save file");
        return Ok(6);
    };
    let path = node.resolve(&filename);
    let mut data = match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => {
            say!(
                err,
                "Failed to read config file: {filename}: Inappropriate ioctl for device"
            );
            return Ok(3);
        }
        _ => match std::fs::read(&path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => {
                say!(
                    err,
                    "Failed to read config file: {filename}: {}",
                    opts::strerror(&e)
                );
                return Ok(3);
            }
        },
    };
    if !extra.is_empty() {
        data.push('\n');
        data.push_str(&extra);
    }
    if !p.has("quiet") {
        say!(err, "Parsing config from {filename}");
    }
    let cfg = match Cfg::parse(&filename, &data) {
        Ok(c) => c,
        Err(xlcfg::SyntaxError(msg)) => {
            say!(err, "{msg}");
            say!(err, "Failed to parse config: Invalid argument");
            return Ok(1);
        }
    };
    let (name, mut config) = match xlcfg::build(&cfg, err) {
        Ok(v) => v,
        Err(xlcfg::Fail(code)) => return Ok(code),
    };
    if p.has("dryrun") {
        let _ = write!(out, "{}", yajl(&config_json(&name, None, &config)));
        return Ok(0);
    }

    let _lock = node.lock()?;
    let domains = node.load_domains()?;
    let in_use: Vec<u32> = domains.iter().map(|d| d.domid).collect();
    let domid = node.alloc_domid(&in_use)?;
    if name == DOM0_NAME || domains.iter().any(|d| d.name == name) {
        say!(
            err,
            "libxl: error: libxl_domain.c:81:libxl__domain_rename: Domain {domid}:Domain with name \"{name}\" already exists."
        );
        say!(
            err,
            "libxl: error: libxl_create.c:1294:initiate_domain_create: Domain {domid}:cannot make domain: -6"
        );
        return Ok(3);
    }
    for (i, disk) in config.disks.iter_mut().enumerate() {
        if disk.pdev_path.is_empty() {
            if disk.is_cdrom == 0 {
                say!(
                    err,
                    "libxl: error: libxl_device.c:384:libxl__device_disk_set_backend: Disk vdev={} is empty but not cdrom",
                    disk.vdev
                );
                say!(
                    err,
                    "libxl: error: libxl_create.c:1329:initiate_domain_create: Domain {domid}:Unable to set disk defaults for disk {i}"
                );
                return Ok(3);
            }
            if disk.backend.is_empty() {
                disk.backend = "qdisk".to_string();
            }
            continue;
        }
        let host = node.resolve(&disk.pdev_path);
        if let Err(e) = std::fs::metadata(&host) {
            say!(
                err,
                "libxl: error: libxl_device.c:397:libxl__device_disk_set_backend: Disk vdev={} failed to stat: {}: {}",
                disk.vdev,
                disk.pdev_path,
                opts::strerror(&e)
            );
            say!(
                err,
                "libxl: error: libxl_create.c:1329:initiate_domain_create: Domain {domid}:Unable to set disk defaults for disk {i}"
            );
            return Ok(3);
        }
        if disk.backend.is_empty() {
            let block = node.node_key(&host).is_some_and(|k| k.starts_with("/dev/"));
            disk.backend = if block { "phy" } else { "qdisk" }.to_string();
        }
        // The `block` hotplug script refuses a device another guest has, unless both
        // attach it read-only.
        if disk.backend == "phy" {
            let key = node.device_key(&disk.pdev_path);
            let shared = domains.iter().flat_map(|d| d.config.disks.iter()).any(|o| {
                !o.pdev_path.is_empty()
                    && node.device_key(&o.pdev_path) == key
                    && (o.readwrite != 0 || disk.readwrite != 0)
            });
            if shared {
                say!(
                    err,
                    "libxl: error: libxl_exec.c:117:libxl_report_child_exitstatus: /etc/xen/scripts/block add [{}] exited with error status 1",
                    std::process::id()
                );
                say!(
                    err,
                    "libxl: error: libxl_device.c:1286:device_hotplug_child_death_cb: script: Device {} is mounted in a guest domain, and so cannot be mounted now.",
                    disk.pdev_path
                );
                say!(
                    err,
                    "libxl: error: libxl_create.c:1946:domcreate_attach_devices: Domain {domid}:unable to add disk devices"
                );
                return Ok(3);
            }
        }
    }
    if let Some(msg) = check_sched(
        config.sched_weight,
        Some(config.sched_cap),
        config.max_vcpus,
    ) {
        say!(
            err,
            "libxl: error: libxl_sched.c:442:sched_credit2_domain_set: Domain {domid}:{msg}"
        );
        say!(
            err,
            "libxl: error: libxl_create.c:1563:domcreate_rebuild_done: Domain {domid}:cannot (re-)build domain: -6"
        );
        return Ok(3);
    }
    let dom = Domain {
        name,
        domid,
        uuid: state::new_uuid(),
        state: if p.has("paused") { "--p---" } else { "-b----" }.to_string(),
        config_file: filename,
        started_at: state::now_secs(),
        config,
        ..Domain::default()
    };
    node.save_domain(&dom)?;
    mark_disks_mounted(node, &dom)?;
    Ok(0)
}

/// A guest that starts mounts its writable disks: their filesystems want `e2fsck -f` before
/// an offline resize afterwards.
fn mark_disks_mounted(node: &Node, dom: &Domain) -> Result<()> {
    for d in &dom.config.disks {
        if d.readwrite != 0 && !d.pdev_path.is_empty() {
            fsim::mark_mounted(node, &d.pdev_path)?;
        }
    }
    Ok(())
}

/// libxl's credit2 parameter checks; the error text if one fails.
fn check_sched(weight: u32, cap: Option<u32>, max_vcpus: u32) -> Option<String> {
    if !(1..=65535).contains(&weight) {
        return Some("Cpu weight out of range, valid range is from 1 to 65535".to_string());
    }
    let limit = max_vcpus.max(1).saturating_mul(100);
    if let Some(cap) = cap
        && cap > limit
    {
        return Some(format!(
            "Cpu cap out of range, valid range is from 0 to {limit} for specified number of vcpus"
        ));
    }
    None
}

/// Every device key (node path) a domain has as a disk: those are "in use".
pub(crate) fn devices_in_use(node: &Node) -> Result<Vec<String>> {
    Ok(node
        .load_domains()?
        .iter()
        .flat_map(|d| d.config.disks.iter())
        .filter(|k| !k.pdev_path.is_empty())
        .map(|k| node.device_key(&k.pdev_path))
        .collect())
}

/// What happens to a domain that shut down with `action` (on_poweroff/on_reboot...).
fn apply_action(node: &Node, dom: &Domain, action: &str, reason: char) -> Result<()> {
    match action {
        "destroy" | "coredump-destroy" => node.delete_domain(&dom.name),
        "restart" | "coredump-restart" | "rename-restart" | "soft-reset" => {
            let in_use: Vec<u32> = node.load_domains()?.iter().map(|d| d.domid).collect();
            let id = node.alloc_domid(&in_use)?;
            let mut d = dom.clone();
            d.domid = id;
            d.reboots += 1;
            d.state = "-b----".to_string();
            d.started_at = state::now_secs();
            node.save_domain(&d)?;
            mark_disks_mounted(node, &d)
        }
        _ => {
            let mut d = dom.clone();
            d.state = format!("---s{reason}-");
            node.save_domain(&d)
        }
    }
}

fn power(
    node: &Node,
    args: &[String],
    reboot: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let what = if reboot { "reboot" } else { "shutdown" };
    let specs = [
        spec("all", Some('a'), Some("all"), false),
        spec("wait", Some('w'), Some("wait"), false),
        spec("fallback", Some('F'), None, false),
    ];
    let p = match cmd_opts(what, args, &specs, 0, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let all = p.has("all");
    if p.args.is_empty() && !all {
        say!(err, "You must specify -a or a domain id.\n");
        return Ok(1);
    }
    let _lock = node.lock()?;
    let domains = node.load_domains()?;
    let targets: Vec<usize> = if all {
        (0..domains.len()).collect()
    } else {
        match find_domain(&domains, &p.args[0], err) {
            None => return Ok(1),
            Some(Target::Guest(i)) => vec![i],
            Some(Target::Dom0) => {
                if reboot {
                    say!(err, "Rebooting domain 0");
                    say!(err, "reboot failed (rc=-3)");
                } else {
                    say!(err, "Shutting down domain 0");
                    say!(err, "shutdown failed (rc=-3)");
                }
                return Ok(1);
            }
            Some(Target::Missing(id)) => {
                if reboot {
                    say!(err, "Rebooting domain {id}");
                } else {
                    say!(err, "Shutting down domain {id}");
                }
                say!(err, "{what} failed (rc=-3)");
                return Ok(1);
            }
        }
    };
    for &i in &targets {
        let d = &domains[i];
        if reboot {
            say!(err, "Rebooting domain {}", d.domid);
            apply_action(node, d, &d.config.on_reboot, 'r')?;
        } else {
            say!(err, "Shutting down domain {}", d.domid);
            apply_action(node, d, &d.config.on_poweroff, '-')?;
        }
    }
    if p.has("wait") {
        say!(err, "Waiting for {} domains", targets.len());
        for &i in &targets {
            say!(
                err,
                "Domain {} has been shut down, reason code {}",
                domains[i].domid,
                if reboot { 1 } else { 0 }
            );
        }
    }
    Ok(0)
}

fn destroy(node: &Node, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let specs = [spec("force", Some('f'), None, false)];
    let p = match cmd_opts("destroy", args, &specs, 1, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let _lock = node.lock()?;
    let domains = node.load_domains()?;
    match find_domain(&domains, &p.args[0], err) {
        None => Ok(1),
        Some(Target::Dom0) => {
            if p.has("force") {
                say!(err, "destroy failed (rc=-3)");
            } else {
                say!(err, "Not destroying domain 0; use -f to force.");
            }
            Ok(1)
        }
        Some(Target::Missing(id)) => {
            say!(
                err,
                "libxl: error: libxl_domain.c:1183:libxl__destroy_domid: Domain {id}:Non-existant domain"
            );
            say!(
                err,
                "libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain {id}:Unable to destroy guest"
            );
            say!(
                err,
                "libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain {id}:Destruction of domain failed"
            );
            say!(err, "destroy failed (rc=-21)");
            Ok(1)
        }
        Some(Target::Guest(i)) => {
            node.delete_domain(&domains[i].name)?;
            Ok(0)
        }
    }
}

fn pause(
    node: &Node,
    args: &[String],
    paused: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let cmd = if paused { "pause" } else { "unpause" };
    let p = match cmd_opts(cmd, args, &[], 1, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let _lock = node.lock()?;
    let domains = node.load_domains()?;
    match find_domain(&domains, &p.args[0], err) {
        None => Ok(1),
        Some(Target::Guest(i)) => {
            let mut d = domains[i].clone();
            let mut s: Vec<char> = state6(&d.state).chars().collect();
            s[2] = if paused { 'p' } else { '-' };
            if !paused && s[3] != 's' {
                s[1] = 'b';
            }
            d.state = s.into_iter().collect();
            node.save_domain(&d)?;
            Ok(0)
        }
        // xl ignores libxl's result here.
        Some(_) => Ok(0),
    }
}

fn console(
    node: &Node,
    args: &[String],
    input: &mut dyn Read,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let specs = [
        spec("type", Some('t'), None, true),
        spec("num", Some('n'), None, true),
    ];
    let p = match cmd_opts("console", args, &specs, 1, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let tty = match p.value("type") {
        None | Some("pv") => "hvc0",
        Some("serial") => "ttyS0",
        Some(_) => {
            say!(err, "console type supported are: pv, serial");
            return Ok(1);
        }
    };
    let (name, uuid) = {
        let _lock = node.lock()?;
        let domains = node.load_domains()?;
        match find_domain(&domains, &p.args[0], err) {
            None => return Ok(1),
            Some(Target::Guest(i)) => (domains[i].name.clone(), domains[i].uuid.clone()),
            Some(_) => {
                say!(err, "Unable to attach console");
                return Ok(1);
            }
        }
    };
    let _ = write!(
        out,
        "\r\nDebian GNU/Linux 12 {name} {tty}\r\n\r\n{name} login: "
    );
    let _ = out.flush();
    let dir = node.console_dir();
    std::fs::create_dir_all(&dir).on(FileOp::Create, &dir)?;
    let log_path = dir.join(format!("{}.log", state::encode_name(&name)));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .on(FileOp::Open, &log_path)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SimError::ConsoleInput(e)),
        };
        let chunk = &buf[..n];
        if let Some(pos) = chunk.iter().position(|&b| b == 0x1d) {
            log.write_all(&chunk[..pos]).on(FileOp::Write, &log_path)?;
            break;
        }
        log.write_all(chunk).on(FileOp::Write, &log_path)?;
    }
    let _lock = node.lock()?;
    if let Some(mut d) = node
        .load_domains()?
        .into_iter()
        .find(|d| d.name == name && d.uuid == uuid)
    {
        d.console_sessions += 1;
        node.save_domain(&d)?;
    }
    Ok(0)
}

fn sched_credit2(
    node: &Node,
    args: &[String],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<i32> {
    let specs = [
        spec("domain", Some('d'), Some("domain"), true),
        spec("weight", Some('w'), Some("weight"), true),
        spec("cap", Some('c'), Some("cap"), true),
        spec("cpupool", Some('p'), Some("cpupool"), true),
        spec("schedparam", Some('s'), Some("schedparam"), false),
        spec("ratelimit", Some('r'), Some("ratelimit_us"), true),
    ];
    let p = match cmd_opts("sched-credit2", args, &specs, 0, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let weight = p.value("weight").map(opts::atoi);
    let cap = p.value("cap").map(opts::atoi);
    let Some(dom) = p.value("domain") else {
        if weight.is_some() || cap.is_some() {
            say!(err, "Must specify a domain.");
            return Ok(1);
        }
        let _lock = node.lock()?;
        let st = node.load_xl()?;
        let domains = node.load_domains()?;
        say!(out, "Cpupool Pool-0: Ratelimit: 1000us");
        say!(
            out,
            "{:<33} {:>4} {:>6} {:>4}",
            "Name",
            "ID",
            "Weight",
            "Cap"
        );
        say!(
            out,
            "{:<33} {:>4} {:>6} {:>4}",
            DOM0_NAME,
            0,
            st.dom0_sched_weight,
            st.dom0_sched_cap
        );
        for d in &domains {
            say!(
                out,
                "{:<33} {:>4} {:>6} {:>4}",
                d.name,
                d.domid,
                d.config.sched_weight,
                d.config.sched_cap
            );
        }
        return Ok(0);
    };
    let _lock = node.lock()?;
    let mut st = node.load_xl()?;
    let domains = node.load_domains()?;
    let target = match find_domain(&domains, dom, err) {
        None => return Ok(1),
        Some(t) => t,
    };
    if weight.is_none() && cap.is_none() {
        say!(
            out,
            "{:<33} {:>4} {:>6} {:>4}",
            "Name",
            "ID",
            "Weight",
            "Cap"
        );
        match target {
            Target::Dom0 => say!(
                out,
                "{:<33} {:>4} {:>6} {:>4}",
                DOM0_NAME,
                0,
                st.dom0_sched_weight,
                st.dom0_sched_cap
            ),
            Target::Guest(i) => {
                let d = &domains[i];
                say!(
                    out,
                    "{:<33} {:>4} {:>6} {:>4}",
                    d.name,
                    d.domid,
                    d.config.sched_weight,
                    d.config.sched_cap
                );
            }
            Target::Missing(_) => {
                say!(err, "libxl_domain_sched_params_get failed.");
                return Ok(1);
            }
        }
        return Ok(0);
    }
    let (domid, cur_weight, max_vcpus) = match target {
        Target::Dom0 => (0, st.dom0_sched_weight, DOM0_VCPUS),
        Target::Guest(i) => (
            domains[i].domid,
            domains[i].config.sched_weight,
            domains[i].config.max_vcpus,
        ),
        Target::Missing(_) => {
            say!(err, "libxl_domain_sched_params_set failed.");
            return Ok(1);
        }
    };
    let new_weight = match weight {
        Some(w) => u32::try_from(w).unwrap_or(0),
        None => cur_weight,
    };
    let new_cap = cap.map(|c| u32::try_from(c).unwrap_or(u32::MAX));
    if let Some(msg) = check_sched(new_weight, new_cap, max_vcpus) {
        say!(
            err,
            "libxl: error: libxl_sched.c:442:sched_credit2_domain_set: Domain {domid}:{msg}"
        );
        say!(err, "libxl_domain_sched_params_set failed.");
        return Ok(1);
    }
    match target {
        Target::Dom0 => {
            st.dom0_sched_weight = new_weight;
            if let Some(c) = new_cap {
                st.dom0_sched_cap = c;
            }
            node.save_xl(&st)?;
        }
        Target::Guest(i) => {
            let mut d = domains[i].clone();
            d.config.sched_weight = new_weight;
            if let Some(c) = new_cap {
                d.config.sched_cap = c;
            }
            node.save_domain(&d)?;
        }
        Target::Missing(_) => {}
    }
    Ok(0)
}

fn domid(node: &Node, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let p = match cmd_opts("domid", args, &[], 1, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let name = &p.args[0];
    let _lock = node.lock()?;
    let domains = node.load_domains()?;
    let id = if name == DOM0_NAME {
        Some(0)
    } else {
        domains.iter().find(|d| &d.name == name).map(|d| d.domid)
    };
    match id {
        Some(id) => {
            say!(out, "{id}");
            Ok(0)
        }
        None => {
            say!(
                err,
                "Can't get domid of domain name '{name}', maybe this domain does not exist."
            );
            Ok(1)
        }
    }
}

fn domname(node: &Node, args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> Result<i32> {
    let p = match cmd_opts("domname", args, &[], 1, out, err) {
        Ok(p) => p,
        Err(c) => return Ok(c),
    };
    let arg = &p.args[0];
    if !arg
        .trim_start()
        .starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
    {
        say!(err, "Invalid domain id.\n");
        return Ok(1);
    }
    let id = u32::try_from(opts::atoi(arg)).unwrap_or(u32::MAX);
    let _lock = node.lock()?;
    let domains = node.load_domains()?;
    let name = if id == 0 {
        Some(DOM0_NAME.to_string())
    } else {
        domains
            .iter()
            .find(|d| d.domid == id)
            .map(|d| d.name.clone())
    };
    match name {
        Some(n) => {
            say!(out, "{n}");
            Ok(0)
        }
        None => {
            say!(
                err,
                "Can't get domain name of domain id '{id}', maybe this domain does not exist."
            );
            Ok(1)
        }
    }
}
