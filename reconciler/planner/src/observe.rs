//! Observed state of a node: what one run of `node/observe.sh` printed, parsed and typed.
//! A node that cannot be reached is `Unreachable`, never an empty node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The observe script, run as `sh -c SCRIPT gitvps-observe ROOT BACKEND STORE HYPERVISOR`.
pub const SCRIPT: &str = include_str!("../node/observe.sh");

/// Why a node's answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The script's output is not the JSON document it should print.
    #[error(
        "{node}: the observe script printed something that is not its JSON report (at byte {at}): {snippet}"
    )]
    Garbage {
        /// The node.
        node: String,
        /// Where parsing failed.
        at: usize,
        /// The start of what was printed.
        snippet: String,
    },
    /// The script failed.
    #[error("{node}: the observe script exited with {status:?}: {tail}")]
    Failed {
        /// The node.
        node: String,
        /// Its exit status.
        status: Option<u32>,
        /// Its last lines of output.
        tail: String,
    },
    /// A record of the node's state folder cannot be read: the node is not acted on, since
    /// what was done to the VPS is unknown.
    #[error(
        "{node}: the record /var/lib/gitvps/state/{vps}.json is unreadable ({why}); nothing is done on this node until it is repaired or removed (a removed record is taken as the disk is, acting on nothing)"
    )]
    Record {
        /// The node.
        node: String,
        /// The VPS the record is of.
        vps: String,
        /// What is wrong with it.
        why: String,
    },
    /// A tool on the node failed (`xl`, `lvs`).
    #[error("{node}: `{tool}` failed on the node: {message}")]
    Tool {
        /// The node.
        node: String,
        /// The tool.
        tool: &'static str,
        /// What it said.
        message: String,
    },
}

/// A running guest: a Xen domain as `xl list` shows it, or a KVM guest's QEMU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Domain {
    /// Xen's domain id, or the pid of the guest's QEMU.
    pub domid: u32,
    /// Current memory, MiB.
    pub memory_mib: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// The hypervisor's own word for its state: Xen's six letters (`r-----`, `-b----`, ...),
    /// or QMP's run state (`running`, `paused`, `shutdown`, `guest-panicked`, ...), or
    /// `unresponsive` when the guest's QMP socket did not answer.
    pub state: String,
    /// KVM: the sha256 of the arguments the running QEMU was started with (its `cmdline`
    /// copy), to compare with its config. `None` on Xen, whose running config is not kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running_config: Option<String>,
}

/// QMP run states in which a guest does not run and must be restarted.
const QMP_DOWN: &[&str] = &[
    "paused",
    "shutdown",
    "guest-panicked",
    "internal-error",
    "io-error",
    "prelaunch",
    "postmigrate",
    "watchdog",
];

impl Domain {
    /// Xen's state letters, when the state is spelled that way.
    fn xl_letters(&self) -> Option<&[u8]> {
        let s = self.state.as_bytes();
        (s.len() == 6 && s.iter().all(|c| b"-rbpscd".contains(c))).then_some(s)
    }

    /// Runs: Xen's running or blocked (idle), not paused, shut down or dying; a QEMU that
    /// runs or that did not answer (it is left alone rather than restarted).
    pub fn is_up(&self) -> bool {
        match self.xl_letters() {
            Some(s) => s[2] != b'p' && s[3] != b's' && s[5] != b'd',
            None => !QMP_DOWN.contains(&self.state.as_str()),
        }
    }

    /// The state in words, for plans.
    pub fn state_words(&self) -> String {
        let Some(b) = self.xl_letters() else {
            return self.state.replace('-', " ");
        };
        let has = |i: usize, c: u8| b.get(i) == Some(&c);
        let mut w = Vec::new();
        if has(2, b'p') {
            w.push("paused");
        }
        if has(3, b's') {
            w.push(match b.get(4) {
                Some(b'c') => "crashed",
                Some(b'r') => "shut down for a reboot",
                _ => "shut down",
            });
        }
        if has(5, b'd') {
            w.push("dying");
        }
        if w.is_empty() {
            format!("in state {}", self.state)
        } else {
            w.join(", ")
        }
    }
}

/// What a KVM node said about QEMU and hardware acceleration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KvmHost {
    /// Where `qemu-system-x86_64` is, if installed.
    pub qemu: Option<String>,
    /// Whether `-accel kvm` works (`/dev/kvm` usable).
    pub accel_kvm: bool,
    /// Why it does not, as QEMU said.
    pub accel_error: String,
}

/// What the node recorded for a VPS (`var/lib/gitvps/state/<vps>.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// Last reboot generation performed.
    pub reboot: u64,
    /// Last fsck generation performed.
    pub fsck: u64,
    /// Last reinstall generation performed.
    pub reinstall: u64,
    /// Last restore generation performed (`[restore]`); left out of the JSON while 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub restore: u64,
    /// Last snapshot revert generation performed (`[revert]`); left out of the JSON while 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub revert: u64,
    /// The OS was installed on the disk.
    pub installed: bool,
    /// Unix time the domain was removed for `state = "destroyed"`.
    pub destroyed_at: Option<i64>,
}

impl Record {
    /// The record as the node stores it: one line of JSON, the form `serde` reads back.
    ///
    /// Written by hand because it must not fail: every field is a number, a bool or an
    /// optional number, so there is nothing to fail on, and a record that could degrade to
    /// `{}` would read back as "never installed", which a later plan could turn into a
    /// reinstall that erases a disk.
    pub fn to_json(&self) -> String {
        let Record {
            reboot,
            fsck,
            reinstall,
            restore,
            revert,
            installed,
            destroyed_at,
        } = self;
        let destroyed_at = destroyed_at.map_or_else(|| "null".to_owned(), |t| t.to_string());
        // A VPS never restored keeps the record it had before restores existed.
        let restore = if *restore > 0 {
            format!(r#""restore":{restore},"#)
        } else {
            String::new()
        };
        let revert = if *revert > 0 {
            format!(r#""revert":{revert},"#)
        } else {
            String::new()
        };
        format!(
            r#"{{"reboot":{reboot},"fsck":{fsck},"reinstall":{reinstall},{restore}{revert}"installed":{installed},"destroyed_at":{destroyed_at}}}"#
        )
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One node's live state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NodeState {
    /// Guest domains by name (Domain-0 excluded).
    pub domains: BTreeMap<String, Domain>,
    /// Xen domains `xl list` shows without a name (`(null)`), by domain id: xenstore no longer
    /// (or not yet) holds their name, as for a domain Xen is still tearing down after a
    /// shutdown or destroy (docs/xen.md). Nobody's, and transient: not part of the digest.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub nameless: BTreeMap<u32, Domain>,
    /// VPS disks by name, with their size in bytes (a qcow2 image's virtual size).
    pub disks: BTreeMap<String, u64>,
    /// Customer snapshots by VPS name (LVM: the `<vps>.snap.<name>` snapshots of the VPS's
    /// volume), each with its copy-on-write size in bytes.
    pub snapshots: BTreeMap<String, BTreeMap<String, u64>>,
    /// File-backend nodes: the format of each VPS's image files, by VPS name: `raw`
    /// (`<vps>.img`), `qcow2` (`<vps>.qcow2`) or `unknown` (a `.qcow2` without a qcow2 header);
    /// two entries when both files exist. Empty on LVM nodes.
    pub image_formats: BTreeMap<String, Vec<String>>,
    /// sha256 of each config gitvps wrote, by VPS name.
    pub configs: BTreeMap<String, String>,
    /// Records by VPS name.
    pub records: BTreeMap<String, Record>,
    /// sha256 of each console user's `authorized_keys`, by VPS name.
    pub consoles: BTreeMap<String, String>,
    /// The node's clock, Unix time.
    pub now: i64,
    /// On a KVM node: QEMU and acceleration (not part of the digest).
    pub kvm: Option<KvmHost>,
    /// On a KVM node with nftables: the taps whose anti-spoofing filter is loaded (bridged
    /// guests); `None` elsewhere.
    pub filters: Option<std::collections::BTreeSet<String>>,
    /// The ISOs in the node's cache (`var/cache/gitvps/iso/<sha256>.iso`), by sha256.
    pub isos: std::collections::BTreeSet<model::media::Sha256Hex>,
    /// On a KVM node: the rescue system images it holds, as `<vps>.<hash>` (see
    /// `crate::desired::RescueSpec`); empty elsewhere.
    pub rescue: std::collections::BTreeSet<String>,
    /// A digest of everything above: a plan made on another digest is stale.
    pub digest: String,
}

/// A node as seen by observe.
// One per node, built once and read in place: boxing the state would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Observation {
    /// It answered.
    Reachable(NodeState),
    /// It could not be reached or answered garbage; nothing may be concluded about it.
    Unreachable {
        /// Why.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Raw {
    version: u32,
    #[serde(default)]
    hypervisor: Option<String>,
    #[serde(default)]
    guests: Option<Vec<RawGuest>>,
    #[serde(default)]
    filters: Option<Vec<String>>,
    #[serde(default)]
    qemu: Option<String>,
    #[serde(default)]
    rescue: Vec<String>,
    #[serde(default)]
    kvm: Option<RawKvm>,
    #[serde(default)]
    domains: Option<Vec<RawDomain>>,
    #[serde(default)]
    domains_error: Option<String>,
    #[serde(default)]
    lvs: Option<RawLvs>,
    #[serde(default)]
    lvs_error: Option<String>,
    #[serde(default)]
    images: Option<Vec<RawImage>>,
    #[serde(default)]
    configs: Vec<RawConfig>,
    #[serde(default)]
    records: Vec<RawRecord>,
    #[serde(default)]
    consoles: Vec<RawConfig>,
    /// The sha256 of each cached ISO (absent from an older observe: none).
    #[serde(default)]
    isos: Vec<String>,
    now: i64,
}

#[derive(Deserialize)]
struct RawDomain {
    name: String,
    id: String,
    mem: String,
    vcpus: String,
    state: String,
}

#[derive(Deserialize)]
struct RawGuest {
    name: String,
    pid: u32,
    status: String,
    mem: String,
    vcpus: String,
    #[serde(default)]
    cmdline_sha256: String,
}

#[derive(Deserialize)]
struct RawKvm {
    usable: bool,
    #[serde(default)]
    error: String,
}

#[derive(Deserialize)]
struct RawLvs {
    report: Vec<RawLvReport>,
}

#[derive(Deserialize)]
struct RawLvReport {
    #[serde(default)]
    lv: Vec<RawLv>,
}

#[derive(Deserialize)]
struct RawLv {
    lv_name: String,
    lv_size: String,
    /// A snapshot's origin volume; empty (or absent, from an older observe) for any other.
    #[serde(default)]
    origin: String,
}

#[derive(Deserialize)]
struct RawImage {
    name: String,
    size: u64,
    #[serde(default)]
    format: Option<String>,
    /// A qcow2 image's internal snapshots (absent: none); `null` with `snapshots_error` when
    /// `qemu-img snapshot -l` failed.
    #[serde(default)]
    snapshots: Option<Vec<String>>,
    #[serde(default)]
    snapshots_error: Option<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    name: String,
    sha256: String,
}

#[derive(Deserialize)]
struct RawRecord {
    name: String,
    /// The record as the node has it: typed below, so a bad one names its file.
    #[serde(default)]
    record: serde_json::Value,
    /// Set by the script when the file is not one line of a JSON object.
    #[serde(default)]
    error: Option<String>,
}

/// The records, each typed; the first unreadable one is an error naming it.
fn records(node: &str, raw: Vec<RawRecord>) -> Result<BTreeMap<String, Record>, ObserveError> {
    raw.into_iter()
        .map(|r| {
            let bad = |why: String| ObserveError::Record {
                node: node.to_owned(),
                vps: r.name.clone(),
                why,
            };
            if let Some(e) = &r.error {
                return Err(bad(e.clone()));
            }
            let rec = serde_json::from_value(r.record.clone()).map_err(|e| bad(e.to_string()))?;
            Ok((r.name, rec))
        })
        .collect()
}

/// Parses what the observe script printed.
pub fn parse(node: &str, stdout: &[u8]) -> Result<NodeState, ObserveError> {
    let raw = read_raw(node, stdout)?;
    let tool = |tool, message: Option<String>| ObserveError::Tool {
        node: node.to_owned(),
        tool,
        message: message.unwrap_or_else(|| "no output".into()),
    };
    let (mut domains, kvm) = if raw.hypervisor.as_deref() == Some("kvm") {
        let guests = kvm_guests(node, raw.guests.unwrap_or_default())?;
        let k = raw.kvm.unwrap_or(RawKvm {
            usable: false,
            error: String::new(),
        });
        let host = KvmHost {
            qemu: raw.qemu.filter(|q| !q.is_empty()),
            accel_kvm: k.usable,
            accel_error: k.error,
        };
        (guests, Some(host))
    } else {
        (BTreeMap::new(), None)
    };
    let doms = match (raw.domains, &kvm) {
        (Some(d), _) => d,
        (None, Some(_)) => Vec::new(),
        (None, None) => return Err(tool("xl list", raw.domains_error)),
    };
    let nameless = xl_domains(node, doms, &mut domains)?;
    let mut snapshots = BTreeMap::new();
    let (disks, image_formats) = match (raw.images, raw.lvs) {
        (Some(images), _) => image_disks(images, &mut snapshots)
            .map_err(|message| tool("qemu-img snapshot -l", Some(message)))?,
        (None, Some(lvs)) => (lv_disks(node, lvs, &mut snapshots)?, BTreeMap::new()),
        (None, None) => return Err(tool("lvs", raw.lvs_error)),
    };
    let pairs = |v: Vec<RawConfig>| v.into_iter().map(|c| (c.name, c.sha256)).collect();
    let mut state = NodeState {
        domains,
        nameless,
        disks,
        snapshots,
        image_formats,
        configs: pairs(raw.configs),
        records: records(node, raw.records)?,
        consoles: pairs(raw.consoles),
        now: raw.now,
        kvm,
        filters: raw.filters.map(|f| f.into_iter().collect()),
        // The script lists only 64-hex-digit names; anything else is not a cached ISO.
        isos: (raw.isos.into_iter())
            .filter_map(|h| h.parse().ok())
            .collect(),
        rescue: raw.rescue.into_iter().collect(),
        digest: String::new(),
    };
    state.digest = digest(&state);
    Ok(state)
}

/// A report that is not garbage beyond `at`, with what was printed for the error.
fn garbage(node: &str, snippet: String) -> ObserveError {
    ObserveError::Garbage {
        node: node.to_owned(),
        at: 0,
        snippet,
    }
}

/// The JSON document of a known version.
fn read_raw(node: &str, stdout: &[u8]) -> Result<Raw, ObserveError> {
    let raw: Raw = serde_json::from_slice(stdout).map_err(|e| {
        let text = String::from_utf8_lossy(stdout);
        ObserveError::Garbage {
            node: node.to_owned(),
            at: e.column(),
            snippet: text
                .chars()
                .take(120)
                .collect::<String>()
                .escape_debug()
                .to_string(),
        }
    })?;
    if raw.version != 1 {
        return Err(garbage(
            node,
            format!("unknown report version {}", raw.version),
        ));
    }
    Ok(raw)
}

/// A KVM node's QEMU guests as domains.
fn kvm_guests(node: &str, guests: Vec<RawGuest>) -> Result<BTreeMap<String, Domain>, ObserveError> {
    let mut domains = BTreeMap::new();
    for g in guests {
        let bad = |what: &str| {
            garbage(
                node,
                format!("guest `{}`: bad {what}", g.name.escape_debug()),
            )
        };
        // `-smp 2` or `-smp 2,sockets=1,...`; `-m 1024` or `-m 1024M`.
        let lead = |s: &str| -> String { s.chars().take_while(char::is_ascii_digit).collect() };
        domains.insert(
            g.name.clone(),
            Domain {
                domid: g.pid,
                memory_mib: lead(&g.mem).parse().map_err(|_| bad("memory"))?,
                vcpus: lead(&g.vcpus).parse().map_err(|_| bad("vcpus"))?,
                state: g.status.clone(),
                running_config: Some(g.cmdline_sha256.clone()).filter(|h| !h.is_empty()),
            },
        );
    }
    Ok(domains)
}

/// What `xl list` prints in place of the name of a domain xenstore has no name for: xl prints
/// `libxl_domid_to_name`'s NULL with `%s`, which glibc spells `(null)`.
pub const XL_NO_NAME: &str = "(null)";

/// `xl list`'s rows as domains, dom0 left out; returns the nameless ones ([`XL_NO_NAME`]) by
/// domain id, kept apart: a name is what ties a domain to a VPS, and these have none.
fn xl_domains(
    node: &str,
    rows: Vec<RawDomain>,
    domains: &mut BTreeMap<String, Domain>,
) -> Result<BTreeMap<u32, Domain>, ObserveError> {
    let mut nameless = BTreeMap::new();
    for d in rows {
        let bad = |what: &str| {
            garbage(
                node,
                format!("xl list row for `{}`: bad {what}", d.name.escape_debug()),
            )
        };
        let domid: u32 = d.id.parse().map_err(|_| bad("id"))?;
        if domid == 0 {
            continue;
        }
        let dom = Domain {
            domid,
            memory_mib: d.mem.parse().map_err(|_| bad("memory"))?,
            vcpus: d.vcpus.parse().map_err(|_| bad("vcpus"))?,
            state: d.state.clone(),
            running_config: None,
        };
        if d.name == XL_NO_NAME {
            nameless.insert(domid, dom);
        } else {
            domains.insert(d.name.clone(), dom);
        }
    }
    Ok(nameless)
}

/// Image files: sizes, and the formats `qemu-img` saw.
/// The formats of each VPS's image files, by VPS name.
type ImageFormats = BTreeMap<String, Vec<String>>;

/// Image files' sizes and formats by VPS name; a qcow2 image's internal snapshots whose names
/// are snapshot names go into `snapshots` (with no copy-on-write size: 0). Errs with what
/// `qemu-img` said when an image's snapshots could not be listed.
fn image_disks(
    images: Vec<RawImage>,
    snapshots: &mut BTreeMap<String, BTreeMap<String, u64>>,
) -> Result<(BTreeMap<String, u64>, ImageFormats), String> {
    let mut disks = BTreeMap::new();
    let mut formats: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in images {
        if let Some(e) = i.snapshots_error {
            return Err(format!("{}: {e}", i.name));
        }
        let names = (i.snapshots.into_iter().flatten())
            .filter(|n| n.parse::<model::SnapshotName>().is_ok())
            .map(|n| (n, 0));
        let names: BTreeMap<String, u64> = names.collect();
        if !names.is_empty() {
            snapshots.insert(i.name.clone(), names);
        }
        if let Some(f) = i.format {
            formats.entry(i.name.clone()).or_default().push(f);
        }
        disks.insert(i.name, i.size);
    }
    Ok((disks, formats))
}

/// Logical volumes' sizes from `lvs --reportformat json`; snapshots are no disks: a
/// customer's (`<vps>.snap.<name>` of origin `<vps>`) goes into `snapshots`, any other (a
/// backup's passing `<vps>.backup`) is left out.
fn lv_disks(
    node: &str,
    lvs: RawLvs,
    snapshots: &mut BTreeMap<String, BTreeMap<String, u64>>,
) -> Result<BTreeMap<String, u64>, ObserveError> {
    let mut disks = BTreeMap::new();
    for lv in lvs.report.into_iter().flat_map(|r| r.lv) {
        let size = lv
            .lv_size
            .parse()
            .map_err(|_| garbage(node, format!("lvs size `{}`", lv.lv_size.escape_debug())))?;
        if lv.origin.is_empty() {
            disks.insert(lv.lv_name, size);
        } else if let Some(name) = crate::snapshot::name_of_lv(&lv.origin, &lv.lv_name) {
            snapshots
                .entry(lv.origin)
                .or_default()
                .insert(name.to_owned(), size);
        }
    }
    Ok(disks)
}

/// A stable digest of the observed state (the clock excluded).
pub fn digest(s: &NodeState) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let json = serde_json::json!([
        s.domains,
        s.disks,
        s.configs,
        s.records,
        s.consoles,
        s.image_formats,
        s.filters
    ]);
    h.update(json.to_string().as_bytes());
    // Only a node with snapshots digests them: every other keeps the digest it had before.
    if !s.snapshots.is_empty() {
        h.update(serde_json::json!(s.snapshots).to_string().as_bytes());
    }
    // The same for cached ISOs: a plan that removes one is stale once the cache changed.
    if !s.isos.is_empty() {
        h.update(b"isos");
        h.update(serde_json::json!(s.isos).to_string().as_bytes());
    }
    // The same for rescue images.
    if !s.rescue.is_empty() {
        h.update(b"rescue");
        h.update(serde_json::json!(s.rescue).to_string().as_bytes());
    }
    let out = h.finalize();
    out.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {

    /// The hand-written record JSON is exactly what serde writes and reads back unchanged.
    #[test]
    fn record_json_round_trips_and_matches_serde() {
        for rec in [
            Record::default(),
            Record {
                reboot: 3,
                fsck: u64::MAX,
                reinstall: 1,
                restore: 7,
                revert: 2,
                installed: true,
                destroyed_at: Some(-5),
            },
            Record {
                destroyed_at: Some(1_700_000_000),
                ..Record::default()
            },
        ] {
            let json = rec.to_json();
            assert_eq!(json, serde_json::to_string(&rec).unwrap());
            assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), rec);
        }
    }
    use super::*;

    const LVM: &str = r#"{"version":1,"uname":"Linux 6.1","domains_long":[],"domains":[{"name":"Domain-0","id":"0","mem":"2048","vcpus":"4","state":"r-----"},{"name":"xen02","id":"3","mem":"768","vcpus":"1","state":"-b----"}],"lvs":  {
      "report": [ { "lv": [ {"lv_name":"xen02", "vg_name":"vg0", "lv_size":"32212254720"} ] } ]
  },"configs":[{"name":"xen02","sha256":"abc"}],"records":[{"name":"xen02","record":{"reboot":2,"installed":true}}],"now":1700000000}"#;

    #[test]
    fn parses_an_lvm_node() {
        let s = parse("node0109", LVM.as_bytes()).unwrap();
        assert_eq!(s.domains.len(), 1);
        let d = &s.domains["xen02"];
        assert_eq!((d.domid, d.memory_mib, d.vcpus), (3, 768, 1));
        assert!(d.is_up());
        assert_eq!(s.disks["xen02"], 32_212_254_720);
        assert_eq!(s.configs["xen02"], "abc");
        assert_eq!(s.records["xen02"].reboot, 2);
        assert!(s.records["xen02"].installed);
        assert_eq!(s.digest.len(), 24);
    }

    /// Real Xen (the test node's `xl list`, docs/xen.md) while a VPS reboots: the old domain,
    /// shut down, already without its name (`(null)`), and the new one, built nameless. They
    /// are nobody's: not domains named `(null)` the inventory would not declare, and not in
    /// the digest (they go by themselves, which must not make a reviewed plan stale).
    #[test]
    fn nameless_domains_are_kept_apart_and_out_of_the_digest() {
        let zombie = LVM.replacen(
            r#"{"name":"xen02","#,
            r#"{"name":"(null)","id":"7","mem":"512","vcpus":"1","state":"--ps--"},{"name":"(null)","id":"8","mem":"0","vcpus":"0","state":"--p---"},{"name":"xen02","#,
            1,
        );
        assert_ne!(zombie, LVM);
        let s = parse("node0109", zombie.as_bytes()).unwrap();
        assert_eq!(s.domains.keys().collect::<Vec<_>>(), ["xen02"]);
        assert_eq!(s.nameless.keys().collect::<Vec<_>>(), [&7, &8]);
        assert!(!s.nameless[&7].is_up());
        assert_eq!(s.nameless[&7].state_words(), "paused, shut down");
        assert_eq!(s.digest, parse("node0109", LVM.as_bytes()).unwrap().digest);
    }

    #[test]
    fn garbage_is_an_error_naming_the_node() {
        let e = parse("node0109", b"Welcome to node0109!\n{").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("node0109: the observe script printed something"),
            "{e}"
        );
        let e = parse("node0109", br#"{"version":1,"domains":null,"domains_error":"xl: command not found","images":[],"now":1}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node0109: `xl list` failed on the node: xl: command not found"
        );
    }

    #[test]
    fn parses_a_kvm_node() {
        let report = r#"{"version":1,"hypervisor":"kvm","guests":[{"name":"xen02","pid":4242,"status":"running","mem":"768","vcpus":"1","cmdline_sha256":"ab"},{"name":"xen03","pid":4243,"status":"unresponsive","mem":"1024M","vcpus":"2,sockets=1","cmdline_sha256":"cd"},{"name":"xen04","pid":4244,"status":"guest-panicked","mem":"512","vcpus":"1","cmdline_sha256":"ef"}],"qemu":"/usr/bin/qemu-system-x86_64","kvm":{"usable":false,"error":"Could not access KVM kernel module"},"images":[{"name":"xen02","size":1073741824}],"configs":[{"name":"xen02","sha256":"abc"}],"records":[],"consoles":[],"now":1700000000}"#;
        let s = parse("kvm1", report.as_bytes()).unwrap();
        let d = &s.domains["xen02"];
        assert_eq!((d.domid, d.memory_mib, d.vcpus), (4242, 768, 1));
        assert!(d.is_up());
        let d = &s.domains["xen03"];
        assert_eq!((d.memory_mib, d.vcpus), (1024, 2));
        assert!(d.is_up(), "an unresponsive QEMU is left alone");
        assert!(!s.domains["xen04"].is_up());
        assert_eq!(s.domains["xen04"].state_words(), "guest panicked");
        let k = s.kvm.unwrap();
        assert_eq!(k.qemu.as_deref(), Some("/usr/bin/qemu-system-x86_64"));
        assert!(!k.accel_kvm);
        assert_eq!(s.disks["xen02"], 1 << 30);
        assert!(s.image_formats.is_empty(), "a report without formats");
        // No QEMU on the node: still a reachable node, with no guests.
        let bare = r#"{"version":1,"hypervisor":"kvm","guests":[],"qemu":"","kvm":{"usable":false,"error":""},"images":[],"configs":[],"records":[],"consoles":[],"now":1}"#;
        let s = parse("kvm1", bare.as_bytes()).unwrap();
        assert!(s.domains.is_empty());
        assert_eq!(s.kvm.unwrap().qemu, None);
    }

    #[test]
    fn image_formats_are_kept_per_vps() {
        let report = r#"{"version":1,"hypervisor":"kvm","guests":[],"qemu":"","kvm":{"usable":false,"error":""},"images":[{"name":"a","size":5,"format":"raw"},{"name":"b","size":21474836480,"format":"qcow2"},{"name":"a","size":7,"format":"qcow2"}],"configs":[],"records":[],"consoles":[],"now":1}"#;
        let s = parse("kvm1", report.as_bytes()).unwrap();
        assert_eq!(s.disks["b"], 20 << 30);
        assert_eq!(s.image_formats["b"], ["qcow2"]);
        assert_eq!(s.image_formats["a"], ["raw", "qcow2"]);
        let other = parse(
            "kvm1",
            report.replace("\"qcow2\"}]", "\"raw\"}]").as_bytes(),
        )
        .unwrap();
        assert_ne!(s.digest, other.digest, "the formats are part of the digest");
    }

    #[test]
    fn an_unreadable_record_is_an_error_naming_its_file() {
        let with = |records: &str| {
            format!(
                r#"{{"version":1,"domains":[],"lvs":{{"report":[{{"lv":[]}}]}},"configs":[],"records":[{records}],"consoles":[],"now":1}}"#
            )
        };
        let e = parse(
            "node1",
            with(r#"{"name":"xen11","record":null,"error":"not one line of JSON"}"#).as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/var/lib/gitvps/state/xen11.json is unreadable (not one line of JSON)"),
            "{e}"
        );
        let e = parse(
            "node1",
            with(r#"{"name":"xen11","record":{"reboot":"three"}}"#).as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("xen11.json is unreadable (invalid type"), "{e}");
        assert!(
            parse(
                "node1",
                with(r#"{"name":"xen11","record":{"reboot":3}}"#).as_bytes()
            )
            .is_ok()
        );
    }

    /// The cached ISOs by sha256; a name that is not one is ignored; the cache is part of the
    /// digest, and a node without one keeps the digest it had before ISOs were observed.
    #[test]
    fn cached_isos_are_read_and_digested() {
        let sha = "ab".repeat(32);
        let with = |isos: &str| LVM.replace("\"now\"", &format!("\"isos\":[{isos}],\"now\""));
        let s = parse("n", with(&format!("\"{sha}\",\"not-a-sha\"")).as_bytes()).unwrap();
        assert_eq!(
            s.isos.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            [sha.as_str()]
        );
        let bare = parse("n", LVM.as_bytes()).unwrap();
        assert_ne!(s.digest, bare.digest);
        assert_eq!(parse("n", with("").as_bytes()).unwrap().digest, bare.digest);
    }

    #[test]
    fn the_digest_ignores_the_clock() {
        let a = parse("n", LVM.as_bytes()).unwrap();
        let b = parse("n", LVM.replace("1700000000", "1800000000").as_bytes()).unwrap();
        assert_eq!(a.digest, b.digest);
        let c = parse("n", LVM.replace("\"reboot\":2", "\"reboot\":3").as_bytes()).unwrap();
        assert_ne!(a.digest, c.digest);
    }
}
