//! The node folder: path resolution under ROOT, the state lock, atomic writes, and the
//! records (domains, volume groups, filesystems) the stand-ins keep under the state folder.

use super::error::{FileError, FileOp, OnFile, Result, SimError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// State folder, relative to ROOT.
pub(crate) const STATE_DIR: &str = "var/lib/gitvps-sim";

/// Xen's first reserved domid (DOMID_FIRST_RESERVED); guest domids stay below it.
const DOMID_LIMIT: u32 = 0x7FF0;

/// A node in a folder.
pub(crate) struct Node {
    /// ROOT, canonicalized when possible.
    root: PathBuf,
    /// ROOT as given (made absolute), in case it differs from the canonical form.
    given: PathBuf,
}

/// Held while a tool reads and writes state; dropping it releases the lock.
pub(crate) struct StateLock {
    _file: File,
}

impl Node {
    pub(crate) fn new(root: &Path) -> Node {
        let given = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let given = normalize(&given);
        let root = fs::canonicalize(&given).unwrap_or_else(|_| given.clone());
        Node { root, given }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    pub(crate) fn domains_dir(&self) -> PathBuf {
        self.state_dir().join("xl").join("domains")
    }

    pub(crate) fn console_dir(&self) -> PathBuf {
        self.state_dir().join("console")
    }

    /// Takes the node-wide state lock (flock on `STATE/.lock`).
    pub(crate) fn lock(&self) -> Result<StateLock> {
        let dir = self.state_dir();
        fs::create_dir_all(&dir).on(FileOp::Create, &dir)?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .on(FileOp::Open, &path)?;
        file.lock().on(FileOp::Lock, &path)?;
        Ok(StateLock { _file: file })
    }

    /// The host path a node path given on a command line refers to: an absolute path already
    /// under ROOT is kept, any other absolute path is taken as relative to ROOT, and a relative
    /// path is taken from the current directory (as the real tools would).
    pub(crate) fn resolve(&self, given: &str) -> PathBuf {
        let p = Path::new(given);
        if p.is_absolute() {
            let n = normalize(p);
            if n.starts_with(&self.root) || n.starts_with(&self.given) {
                return n;
            }
            let rel: PathBuf = n
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            self.root.join(rel)
        } else {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
            normalize(&abs)
        }
    }

    /// The node-absolute form (`/dev/vg0/x`) of a host path under ROOT, if it is under ROOT.
    pub(crate) fn node_key(&self, host: &Path) -> Option<String> {
        let rel = host
            .strip_prefix(&self.root)
            .or_else(|_| host.strip_prefix(&self.given))
            .ok()?;
        let mut s = String::new();
        for c in rel.components() {
            if let Component::Normal(part) = c {
                s.push('/');
                s.push_str(&part.to_string_lossy());
            }
        }
        if s.is_empty() {
            s.push('/');
        }
        Some(s)
    }

    /// A stable key for a device path given on a command line: its node path when under ROOT,
    /// the host path otherwise.
    pub(crate) fn device_key(&self, given: &str) -> String {
        let host = self.resolve(given);
        self.node_key(&host)
            .unwrap_or_else(|| host.to_string_lossy().into_owned())
    }

    fn domain_file(&self, name: &str) -> PathBuf {
        self.domains_dir()
            .join(format!("{}.json", encode_name(name)))
    }

    /// All guest domains (Domain-0 is not stored), sorted by domid.
    pub(crate) fn load_domains(&self) -> Result<Vec<Domain>> {
        let dir = self.domains_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(FileError::new(FileOp::Read, &dir, e).into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.on(FileOp::Read, &dir)?;
            let path = entry.path();
            let fname = entry.file_name();
            let fname = fname.to_string_lossy();
            if fname.starts_with('.') || !fname.ends_with(".json") {
                continue;
            }
            let text = fs::read_to_string(&path).on(FileOp::Read, &path)?;
            out.push(parse_state::<Domain>(&path, &text)?);
        }
        out.sort_by_key(|d| d.domid);
        Ok(out)
    }

    pub(crate) fn save_domain(&self, dom: &Domain) -> Result<()> {
        let path = self.domain_file(&dom.name);
        write_json(&path, dom, "domain state")
    }

    pub(crate) fn delete_domain(&self, name: &str) -> Result<()> {
        let path = self.domain_file(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(FileError::new(FileOp::Remove, &path, e).into()),
        }
    }

    fn xl_file(&self) -> PathBuf {
        self.state_dir().join("xl").join("xl.json")
    }

    pub(crate) fn load_xl(&self) -> Result<XlState> {
        read_json_or_default(&self.xl_file())
    }

    pub(crate) fn save_xl(&self, st: &XlState) -> Result<()> {
        write_json(&self.xl_file(), st, "state")
    }

    /// Hands out the next domid (Xen counts up, wraps below the reserved range, skips ids in
    /// use); a failed create consumes one, as on Xen.
    pub(crate) fn alloc_domid(&self, in_use: &[u32]) -> Result<u32> {
        let mut st = self.load_xl()?;
        let mut id = st.next_domid.max(1);
        for _ in 0..DOMID_LIMIT {
            if id >= DOMID_LIMIT {
                id = 1;
            }
            if !in_use.contains(&id) {
                break;
            }
            id += 1;
        }
        st.next_domid = id + 1;
        self.save_xl(&st)?;
        Ok(id)
    }

    fn lvm_file(&self) -> PathBuf {
        self.state_dir().join("lvm.json")
    }

    pub(crate) fn load_lvm(&self) -> Result<LvmState> {
        read_json_or_default(&self.lvm_file())
    }

    pub(crate) fn save_lvm(&self, st: &LvmState) -> Result<()> {
        write_json(&self.lvm_file(), st, "state")
    }

    fn fs_file(&self) -> PathBuf {
        self.state_dir().join("fs.json")
    }

    pub(crate) fn load_fs(&self) -> Result<BTreeMap<String, FsRecord>> {
        read_json_or_default(&self.fs_file())
    }

    pub(crate) fn save_fs(&self, st: &BTreeMap<String, FsRecord>) -> Result<()> {
        write_json(&self.fs_file(), st, "state")
    }
}

fn read_json_or_default<T: Default + for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    match fs::read_to_string(path) {
        Ok(text) => parse_state(path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(FileError::new(FileOp::Read, path, e).into()),
    }
}

/// The record in state file `path`, whose text is `text`.
fn parse_state<T: for<'de> Deserialize<'de>>(path: &Path, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| SimError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `value` (a `what` record) as pretty JSON to `path`, atomically.
fn write_json<T: Serialize>(path: &Path, value: &T, what: &'static str) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|source| SimError::Encode { what, source })?;
    Ok(atomic_write(path, format!("{text}\n").as_bytes()).on(FileOp::Write, path)?)
}

/// Writes `data` to a temporary file next to `path`, then renames it over `path`.
pub(crate) fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, data, None)
}

/// Like [`atomic_write`], setting the file mode before the rename.
pub(crate) fn atomic_write_mode(path: &Path, data: &[u8], mode: Option<u32>) -> io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    fs::create_dir_all(dir)?;
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{base}.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Lexical normalization of an absolute path: drops `.`, resolves `..` without going above `/`.
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => out.push(c.as_os_str()),
            Component::CurDir => {}
            Component::ParentDir => {
                if out.parent().is_some() {
                    out.pop();
                }
            }
            Component::Normal(s) => out.push(s),
        }
    }
    out
}

/// File-name-safe form of a domain name: bytes outside `[A-Za-z0-9._-]` (and a leading `.`)
/// become `%XX`.
pub(crate) fn encode_name(name: &str) -> String {
    let mut s = String::new();
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// 16 random bytes from the kernel, or a time-and-counter mix if that fails.
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut buf = [0u8; 16];
    if let Ok(mut f) = File::open("/dev/urandom")
        && f.read_exact(&mut buf).is_ok()
    {
        return buf;
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mix = nanos
        ^ (u128::from(std::process::id()) << 64)
        ^ u128::from(SEQ.fetch_add(1, Ordering::Relaxed)).rotate_left(40);
    mix.to_le_bytes()
}

/// A random (version 4) UUID string.
pub(crate) fn new_uuid() -> String {
    let mut b = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `xl/xl.json`: the domid counter and Domain-0's scheduler parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct XlState {
    pub(crate) next_domid: u32,
    pub(crate) dom0_sched_weight: u32,
    pub(crate) dom0_sched_cap: u32,
}

impl Default for XlState {
    fn default() -> Self {
        XlState {
            next_domid: 1,
            dom0_sched_weight: 256,
            dom0_sched_cap: 0,
        }
    }
}

/// `xl/domains/NAME.json`: one guest domain.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Domain {
    pub(crate) name: String,
    pub(crate) domid: u32,
    pub(crate) uuid: String,
    /// The six `xl list` state letters, e.g. `-b----`.
    pub(crate) state: String,
    /// CPU time in seconds shown by `xl list` (the stand-in does not advance it).
    pub(crate) cpu_time: f64,
    /// How many times the domain was rebooted (`xl reboot`, or shutdown with on_poweroff=restart).
    pub(crate) reboots: u64,
    /// How many `xl console` sessions attached.
    pub(crate) console_sessions: u64,
    /// The config file path as given to `xl create`.
    pub(crate) config_file: String,
    /// When the current incarnation started (seconds since the epoch).
    pub(crate) started_at: u64,
    pub(crate) config: DomConfig,
}

impl Default for Domain {
    fn default() -> Self {
        Domain {
            name: String::new(),
            domid: 0,
            uuid: String::new(),
            state: "-b----".to_string(),
            cpu_time: 0.0,
            reboots: 0,
            console_sessions: 0,
            config_file: String::new(),
            started_at: 0,
            config: DomConfig::default(),
        }
    }
}

/// The parsed domain configuration (the libxl_domain_config subset gitvps uses).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct DomConfig {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) max_vcpus: u32,
    pub(crate) avail_vcpus: u32,
    pub(crate) max_memkb: u64,
    pub(crate) target_memkb: u64,
    pub(crate) sched_weight: u32,
    pub(crate) sched_cap: u32,
    pub(crate) kernel: Option<String>,
    pub(crate) ramdisk: Option<String>,
    pub(crate) cmdline: Option<String>,
    pub(crate) bootloader: Option<String>,
    pub(crate) bootloader_args: Vec<String>,
    pub(crate) disks: Vec<Disk>,
    pub(crate) nics: Vec<Nic>,
    pub(crate) on_poweroff: String,
    pub(crate) on_reboot: String,
    pub(crate) on_watchdog: String,
    pub(crate) on_crash: String,
    pub(crate) on_soft_reset: String,
}

impl Default for DomConfig {
    fn default() -> Self {
        DomConfig {
            kind: "pv".to_string(),
            max_vcpus: 1,
            avail_vcpus: 1,
            max_memkb: 32 * 1024,
            target_memkb: 32 * 1024,
            sched_weight: 256,
            sched_cap: 0,
            kernel: None,
            ramdisk: None,
            cmdline: None,
            bootloader: None,
            bootloader_args: Vec::new(),
            disks: Vec::new(),
            nics: Vec::new(),
            on_poweroff: "destroy".to_string(),
            on_reboot: "restart".to_string(),
            on_watchdog: "destroy".to_string(),
            on_crash: "destroy".to_string(),
            on_soft_reset: "soft-reset".to_string(),
        }
    }
}

/// One `disk = [...]` entry.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Disk {
    /// The target as written in the config file.
    pub(crate) pdev_path: String,
    pub(crate) vdev: String,
    /// `phy` for a block device (an LV of the stand-in), `qdisk` for an image file.
    pub(crate) backend: String,
    pub(crate) format: String,
    pub(crate) readwrite: u32,
    pub(crate) is_cdrom: u32,
}

/// One `vif = [...]` entry. A `rate=` is kept as libxl keeps it: bytes per interval and the
/// interval in microseconds (plus the original text under `rate`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Nic {
    pub(crate) devid: u32,
    pub(crate) mac: String,
    pub(crate) ip: Option<String>,
    pub(crate) bridge: String,
    pub(crate) model: Option<String>,
    pub(crate) ifname: Option<String>,
    pub(crate) script: Option<String>,
    pub(crate) gatewaydev: Option<String>,
    pub(crate) nictype: String,
    pub(crate) rate: Option<String>,
    pub(crate) rate_bytes_per_interval: Option<u64>,
    pub(crate) rate_interval_usecs: Option<u32>,
}

/// `lvm.json`: volume group sizes (`create_vg`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct LvmState {
    pub(crate) vgs: BTreeMap<String, VgRecord>,
    /// Classic (copy-on-write) snapshots, keyed by `VG/LV`.
    pub(crate) snapshots: BTreeMap<String, SnapRecord>,
}

/// A classic snapshot: its origin (in the same VG) and the size of its copy-on-write area,
/// which is what it takes from the VG and what `lvs` prints as its size. Its file holds the
/// origin's content as it was when the snapshot was made.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct SnapRecord {
    pub(crate) origin: String,
    pub(crate) cow_bytes: u64,
}

/// One volume group's recorded size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct VgRecord {
    pub(crate) size_bytes: u64,
}

/// `fs.json` entry, keyed by device node path: the ext4 filesystem on a device.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct FsRecord {
    /// Filesystem size in 4k blocks (may lag the device after `lvextend`).
    pub(crate) blocks: u64,
    /// Mounted (by a guest) since the last full check: resize2fs then wants `e2fsck -f` first.
    pub(crate) needs_check: bool,
    /// e2fsck runs that checked it (exit 0).
    pub(crate) fsck: u64,
    /// resize2fs runs that completed (exit 0, including "Nothing to do!").
    pub(crate) resize: u64,
}
