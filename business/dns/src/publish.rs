//! Publishing to one DNS server: what its folder holds (read with one command), which zones
//! change, the commands that write them atomically and reload only those, and the plan text.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use model::settings::{DnsBackend, DnsServer};
use planner::quote::quote;

use crate::serial::serial_of;
use crate::zone::{Built, file_name};

/// The zone list in the server's folder that its configuration includes.
pub const ZONE_LIST: &str = "gitvps-zones.conf";

/// The marker of each file in the output of [`read_command`].
const FILE_MARK: &str = "gitvps-file ";

/// Why the server's answer to [`read_command`] cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable listing of the zone folder: {0}")]
pub struct ListingError(String);

/// What the server's zone folder holds: file name → content, for the `*.zone` files and the
/// zone list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remote {
    /// The files.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Remote {
    /// Reads the output of [`read_command`]: `gitvps-file NAME LENGTH` lines, each followed by
    /// exactly LENGTH bytes.
    pub fn parse(out: &[u8]) -> Result<Remote, ListingError> {
        let mut files = BTreeMap::new();
        let mut rest = out;
        while !rest.is_empty() {
            let nl = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(|| ListingError("a header without its newline".into()))?;
            let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
            let (name, len) = header
                .strip_prefix(FILE_MARK)
                .and_then(|h| h.rsplit_once(' '))
                .ok_or_else(|| {
                    ListingError(format!("unexpected line `{}`", header.escape_debug()))
                })?;
            let len: usize = len
                .parse()
                .map_err(|_| ListingError(format!("bad length in `{}`", header.escape_debug())))?;
            let body = &rest[nl + 1..];
            if body.len() < len {
                return Err(ListingError(format!("{name}: cut short")));
            }
            files.insert(name.to_owned(), body[..len].to_vec());
            rest = &body[len..];
        }
        Ok(Remote { files })
    }

    /// The zone texts by zone name (the `*.zone` files).
    pub fn zones(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .filter_map(|(f, body)| {
                let zone = f.strip_suffix(".zone")?;
                Some((zone.to_owned(), String::from_utf8_lossy(body).into_owned()))
            })
            .collect()
    }
}

/// The previous text of every zone over several servers: the one with the highest serial
/// (the first server's on a tie), so that a zone's serial grows on every server.
pub fn previous_zones(remotes: &[&Remote]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for remote in remotes {
        for (zone, text) in remote.zones() {
            let better = out
                .get(&zone)
                .is_none_or(|old| serial_of(&text) > serial_of(old));
            if better {
                out.insert(zone, text);
            }
        }
    }
    out
}

/// Wraps a script for the server: `sh -c`, through `sudo -n` when the server says so.
fn wrap(server: &DnsServer, script: &str) -> String {
    let sudo = if server.sudo { "sudo -n " } else { "" };
    format!("{sudo}sh -c {}", quote(script))
}

/// The one command that lists the server's zone folder (see [`Remote::parse`]); it fails when
/// the folder does not exist.
pub fn read_command(server: &DnsServer) -> String {
    let script = format!(
        "set -e\nd={dir}\nif [ ! -d \"$d\" ]; then echo \"gitvps: no folder $d on this server\" >&2; exit 3; fi\ncd \"$d\"\nfor f in *.zone {list}; do\n  [ -f \"$f\" ] || continue\n  printf '{FILE_MARK}%s %s\\n' \"$f\" \"$(wc -c < \"$f\" | tr -d ' ')\"\n  cat \"$f\"\ndone\n",
        dir = quote(server.dir.as_str()),
        list = ZONE_LIST,
    );
    wrap(server, &script)
}

/// How one zone changes on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZoneChange {
    /// A zone the server does not have yet.
    Add {
        /// The zone.
        zone: String,
        /// Its serial.
        serial: u32,
        /// Its records besides SOA and NS.
        records: usize,
    },
    /// A zone whose text differs.
    Change {
        /// The zone.
        zone: String,
        /// The serial on the server, if readable.
        from: Option<u32>,
        /// The new serial.
        to: u32,
        /// Record lines that go (SOA aside).
        removed: Vec<String>,
        /// Record lines that come.
        added: Vec<String>,
    },
    /// A zone on the server that is no longer built: it leaves the zone list and its file goes.
    Remove {
        /// The zone.
        zone: String,
    },
}

/// What one server needs: the zone changes, and the new zone list when the set of zones moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerPlan {
    /// Zone by zone, in name order.
    pub changes: Vec<ZoneChange>,
    /// The new text of [`ZONE_LIST`], when it differs from the server's.
    pub zone_list: Option<String>,
}

/// One command to run on the server, with its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// What it does, for messages (`write 0-25.255.255.66.in-addr.arpa.zone`).
    pub what: String,
    /// The command line.
    pub line: String,
    /// Its standard input.
    pub stdin: Option<Vec<u8>>,
}

/// The record lines of a zone text: everything but comments, directives and the SOA.
fn record_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.starts_with(';') && !l.starts_with('$') && !l.is_empty())
        .filter(|l| l.split('\t').nth(2) != Some("SOA"))
        .collect()
}

/// The zone list the server's configuration includes, for `zones` in `dir`.
pub fn zone_list(server: &DnsServer, zones: &[&str]) -> String {
    let dir = server.dir.as_str().trim_end_matches('/');
    let mut out = String::from(
        "# Written by gitvps dns apply: the zones built from the inventory. Edits are overwritten.\n",
    );
    match server.backend {
        DnsBackend::Knot => {
            if !zones.is_empty() {
                out.push_str("zone:\n");
            }
            for z in zones {
                let _ = write!(
                    out,
                    "  - domain: {z}\n    file: {dir}/{f}\n    zonefile-sync: -1\n    zonefile-load: whole\n    journal-content: none\n",
                    f = file_name(z)
                );
            }
        }
        DnsBackend::Bind => {
            for z in zones {
                let _ = writeln!(
                    out,
                    "zone \"{z}\" {{ type primary; file \"{dir}/{f}\"; }};",
                    f = file_name(z)
                );
            }
        }
    }
    out
}

/// Compares the built zones with what the server holds.
pub fn plan_server(server: &DnsServer, built: &[Built], remote: &Remote) -> ServerPlan {
    let on_server = remote.zones();
    let mut changes = Vec::new();
    let names: BTreeSet<&str> = built.iter().map(|b| b.name.as_str()).collect();
    for b in built {
        match on_server.get(&b.name) {
            None => changes.push(ZoneChange::Add {
                zone: b.name.clone(),
                serial: b.serial,
                records: b.records,
            }),
            Some(old) if *old != b.text => {
                let (old_lines, new_lines) = (record_lines(old), record_lines(&b.text));
                changes.push(ZoneChange::Change {
                    zone: b.name.clone(),
                    from: serial_of(old),
                    to: b.serial,
                    removed: old_lines
                        .iter()
                        .filter(|l| !new_lines.contains(l))
                        .map(|l| (*l).to_owned())
                        .collect(),
                    added: new_lines
                        .iter()
                        .filter(|l| !old_lines.contains(l))
                        .map(|l| (*l).to_owned())
                        .collect(),
                });
            }
            Some(_) => {}
        }
    }
    for zone in on_server.keys() {
        if !names.contains(zone.as_str()) {
            changes.push(ZoneChange::Remove { zone: zone.clone() });
        }
    }
    changes.sort_by(|a, b| a.zone().cmp(b.zone()));
    let list = zone_list(server, &names.into_iter().collect::<Vec<_>>());
    let zone_list =
        (remote.files.get(ZONE_LIST).map(Vec::as_slice) != Some(list.as_bytes())).then_some(list);
    ServerPlan { changes, zone_list }
}

impl ZoneChange {
    /// The zone it is about.
    pub fn zone(&self) -> &str {
        match self {
            ZoneChange::Add { zone, .. }
            | ZoneChange::Change { zone, .. }
            | ZoneChange::Remove { zone } => zone,
        }
    }
}

impl ServerPlan {
    /// Whether the server already serves the built zones.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.zone_list.is_none()
    }

    /// The zones that are reloaded (added or changed), in name order.
    pub fn reloaded(&self) -> Vec<&str> {
        self.changes
            .iter()
            .filter(|c| !matches!(c, ZoneChange::Remove { .. }))
            .map(ZoneChange::zone)
            .collect()
    }

    /// The plan as text, like `gitvps plan`: `+` new zone, `~` changed (with its record lines),
    /// `-` removed.
    pub fn render(&self, server: &DnsServer) -> String {
        let mut out = format!(
            "dns server {} ({}, {}):",
            server.name(),
            server.backend,
            server.dir
        );
        if self.is_empty() {
            out.push_str(" no changes\n");
            return out;
        }
        out.push('\n');
        for c in &self.changes {
            match c {
                ZoneChange::Add {
                    zone,
                    serial,
                    records,
                } => {
                    let _ = writeln!(
                        out,
                        "  + {zone}: new zone, serial {serial}, {records} record(s)"
                    );
                }
                ZoneChange::Change {
                    zone,
                    from,
                    to,
                    removed,
                    added,
                } => {
                    let from = from.map_or_else(|| "?".to_owned(), |s| s.to_string());
                    let _ = writeln!(out, "  ~ {zone}: serial {from} -> {to}");
                    for l in removed {
                        let _ = writeln!(out, "      - {}", l.replace('\t', " "));
                    }
                    for l in added {
                        let _ = writeln!(out, "      + {}", l.replace('\t', " "));
                    }
                }
                ZoneChange::Remove { zone } => {
                    let _ = writeln!(out, "  - {zone}: no longer built, removed");
                }
            }
        }
        if self.zone_list.is_some() {
            let _ = writeln!(
                out,
                "  ~ {ZONE_LIST}: the zone list, then the server reloads its configuration"
            );
        }
        out
    }

    /// The commands that carry the plan out, in order: each zone file written (temporary
    /// file, then rename), the zone list, the configuration reload when the list changed, a
    /// reload of each added or changed zone, and the removal of the files of removed zones.
    pub fn commands(&self, server: &DnsServer, built: &[Built]) -> Vec<Command> {
        let dir = quote(server.dir.as_str());
        let write = |file: &str, body: &[u8]| Command {
            what: format!("write {file}"),
            line: wrap(
                server,
                &format!(
                    "set -e\ncd {dir}\ncat > {tmp}\nmv -f {tmp} {f}\n",
                    tmp = quote(&format!(".{file}.tmp")),
                    f = quote(file)
                ),
            ),
            stdin: Some(body.to_vec()),
        };
        let mut out = Vec::new();
        let reloaded = self.reloaded();
        for b in built.iter().filter(|b| reloaded.contains(&b.name.as_str())) {
            out.push(write(&file_name(&b.name), b.text.as_bytes()));
        }
        if let Some(list) = &self.zone_list {
            out.push(write(ZONE_LIST, list.as_bytes()));
            out.push(control(server, "reload the configuration", Control::Config));
        }
        if !reloaded.is_empty() {
            match server.backend {
                DnsBackend::Knot => out.push(control(
                    server,
                    &format!("reload {}", reloaded.join(" ")),
                    Control::Zones(&reloaded),
                )),
                DnsBackend::Bind => out.extend(reloaded.iter().map(|z| {
                    control(
                        server,
                        &format!("reload {z}"),
                        Control::Zones(std::slice::from_ref(z)),
                    )
                })),
            }
        }
        for c in &self.changes {
            if let ZoneChange::Remove { zone } = c {
                out.push(Command {
                    what: format!("remove {}", file_name(zone)),
                    line: wrap(
                        server,
                        &format!("cd {dir} && rm -f -- {}", quote(&file_name(zone))),
                    ),
                    stdin: None,
                });
            }
        }
        out
    }
}

/// What a control command asks of the server.
enum Control<'a> {
    /// Read the configuration again (the zone list changed).
    Config,
    /// Load these zones' files again.
    Zones(&'a [&'a str]),
}

impl Control<'_> {
    fn args(&self, backend: DnsBackend) -> Vec<String> {
        match (self, backend) {
            (Control::Config, DnsBackend::Knot) => vec!["reload".into()],
            (Control::Config, DnsBackend::Bind) => vec!["reconfig".into()],
            // Blocking: a zone Knot refuses to load is a failed command, not a log line.
            (Control::Zones(z), DnsBackend::Knot) => ["-b", "zone-reload"]
                .iter()
                .chain(z.iter())
                .map(|w| (*w).to_owned())
                .collect(),
            (Control::Zones(z), DnsBackend::Bind) => ["reload"]
                .iter()
                .chain(z.iter())
                .map(|w| (*w).to_owned())
                .collect(),
        }
    }
}

/// `knotc [-s SOCKET] ...` or `rndc [-c CONF] ...`.
fn control(server: &DnsServer, what: &str, c: Control<'_>) -> Command {
    let (tool, flag) = match server.backend {
        DnsBackend::Knot => ("knotc", "-s"),
        DnsBackend::Bind => ("rndc", "-c"),
    };
    let mut words = vec![tool.to_owned()];
    if let Some(path) = &server.control {
        words.push(flag.to_owned());
        words.push(path.to_string());
    }
    words.extend(c.args(server.backend));
    let line: Vec<String> = words.iter().map(|w| quote(w)).collect();
    Command {
        what: what.to_owned(),
        line: wrap(server, &line.join(" ")),
        stdin: None,
    }
}
