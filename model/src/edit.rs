//! Edits that gitvps writes back into inventory files, keeping comments and layout (`toml_edit`).
//! Used by `gitvps vps new` and by the hooks; the caller validates the result before committing.

use toml_edit::{Array, DocumentMut, Item, Table, value};

use crate::inventory::Vps;
use crate::values::{Hostname, Keyword, Power, SshPublicKey, State, Suspension, VpsAddr};

/// Why an edit could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The file is not valid TOML.
    #[error("{file} is not valid TOML")]
    Parse {
        /// The file.
        file: String,
        /// The parser's error.
        #[source]
        source: toml_edit::TomlError,
    },
    /// A field has a type the edit cannot work with.
    #[error("{file}: `{field}` is not {expected}")]
    Type {
        /// The file.
        file: String,
        /// The field.
        field: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A date outside what a TOML date can hold (years 1 to 9999): refused, never clamped.
    #[error("{file}: `{field}` = {date} is out of range (years 1 to 9999)")]
    DateOutOfRange {
        /// The file.
        file: String,
        /// The field.
        field: String,
        /// The date asked for.
        date: chrono::NaiveDate,
    },
}

/// The counters of `[actions]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// `actions.reboot`
    Reboot,
    /// `actions.fsck`
    Fsck,
    /// `actions.reinstall`
    Reinstall,
}

impl ActionKind {
    /// The key under `[actions]`.
    pub fn key(self) -> &'static str {
        match self {
            ActionKind::Reboot => "reboot",
            ActionKind::Fsck => "fsck",
            ActionKind::Reinstall => "reinstall",
        }
    }
}

/// An inventory file opened for editing.
pub struct TomlFile {
    name: String,
    doc: DocumentMut,
}

impl TomlFile {
    /// Parses `text`; `name` is used in errors.
    pub fn parse(name: &str, text: &str) -> Result<TomlFile, EditError> {
        let doc = text
            .parse::<DocumentMut>()
            .map_err(|source| EditError::Parse {
                file: name.to_owned(),
                source,
            })?;
        Ok(TomlFile {
            name: name.to_owned(),
            doc,
        })
    }

    /// The edited text.
    pub fn render(&self) -> String {
        self.doc.to_string()
    }

    fn set_str(&mut self, key: &str, v: &str) {
        set_keep_decor(self.doc.as_table_mut(), key, value(v));
    }

    /// Sets `power`.
    pub fn set_power(&mut self, p: Power) {
        self.set_str("power", p.as_str());
    }

    /// Sets `state`.
    pub fn set_state(&mut self, s: State) {
        self.set_str("state", s.as_str());
    }

    /// Sets `suspension` (who suspended the VPS), or removes it with `None`.
    pub fn set_suspension(&mut self, by: Option<Suspension>) {
        self.set_opt_str("suspension", by.map(Suspension::as_str));
    }

    /// Sets `throttled = true`, or removes it.
    pub fn set_throttled(&mut self, on: bool) {
        if on {
            self.doc["throttled"] = toml_edit::value(true);
        } else {
            self.doc.remove("throttled");
        }
    }

    /// Sets `rescue = true` (the VPS boots the rescue system), or removes it (its own system
    /// boots again).
    pub fn set_rescue(&mut self, on: bool) {
        if on {
            self.doc["rescue"] = toml_edit::value(true);
        } else {
            self.doc.remove("rescue");
        }
    }

    /// Appends a `[[traffic_block]]` entry (a block bought for the period starting on its
    /// `period`). A `traffic_block` that is not an array of tables is an error.
    pub fn add_traffic_block(
        &mut self,
        b: &crate::inventory::TrafficBlock,
    ) -> Result<(), EditError> {
        let mut t = Table::new();
        t["period"] = value(self.toml_date("traffic_block.period", b.period)?);
        t["size"] = value(b.size.to_string());
        t["invoice"] = value(b.invoice.as_str());
        self.push_table("traffic_block", t)
    }

    /// Appends a `[[snapshot]]` entry: `name`, taken at `created` (written in UTC, `Z`).
    pub fn add_snapshot(
        &mut self,
        name: &str,
        created: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), EditError> {
        let at: toml_edit::Datetime = created
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
            .parse()
            .map_err(|_| EditError::Type {
                file: self.name.clone(),
                field: "snapshot.created".to_owned(),
                expected: "a date-time TOML can hold",
            })?;
        let mut t = Table::new();
        t["name"] = value(name);
        t["created"] = value(at);
        self.push_table("snapshot", t)
    }

    /// Removes the `[[snapshot]]` named `name` (and a `[revert]` to it, which would name a
    /// snapshot no longer declared); whether one was there.
    pub fn remove_snapshot(&mut self, name: &str) -> bool {
        let root = self.doc.as_table_mut();
        let Some(Item::ArrayOfTables(list)) = root.get_mut("snapshot") else {
            return false;
        };
        let before = list.len();
        list.retain(|t| t.get("name").and_then(Item::as_str) != Some(name));
        let removed = list.len() < before;
        if list.is_empty() {
            root.remove("snapshot");
        }
        let reverts_to_it = root
            .get("revert")
            .and_then(|r| r.get("snapshot"))
            .and_then(Item::as_str)
            == Some(name);
        if removed && reverts_to_it {
            root.remove("revert");
        }
        removed
    }

    /// Asks for a revert to the snapshot `name`: `[revert]` names it and its `generation` is
    /// bumped, so the node reverts once. Returns the new generation.
    pub fn set_revert(&mut self, name: &str) -> Result<u64, EditError> {
        self.bump("revert", "generation", |t| match t.get_mut("snapshot") {
            Some(item) => replace_value(item, value(name)),
            None => {
                t.insert("snapshot", value(name));
            }
        })
    }

    /// Appends `t` to the array of tables `key` (made when missing; another kind of value
    /// there is an error).
    fn push_table(&mut self, key: &str, t: Table) -> Result<(), EditError> {
        let root = self.doc.as_table_mut();
        if !root.contains_key(key) {
            root.insert(key, Item::ArrayOfTables(toml_edit::ArrayOfTables::new()));
        }
        match root.get_mut(key) {
            Some(Item::ArrayOfTables(list)) => {
                list.push(t);
                Ok(())
            }
            _ => Err(EditError::Type {
                file: self.name.clone(),
                field: key.to_owned(),
                expected: "a list of tables ([[...]])",
            }),
        }
    }

    /// Removes a field (`suspended`, `destroyed`) if present.
    pub fn remove(&mut self, key: &str) {
        self.doc.remove(key);
    }

    /// Sets a date field (`expires`, `destroyed`, `suspended`). A date a TOML date cannot hold (a year
    /// before 1 or after 9999) is an error: clamping it would write another date than asked.
    pub fn set_date(&mut self, key: &str, d: chrono::NaiveDate) -> Result<(), EditError> {
        let dt = self.toml_date(key, d)?;
        set_keep_decor(self.doc.as_table_mut(), key, value(dt));
        Ok(())
    }

    /// `d` as a TOML date for the field `key`, or why it cannot be one.
    fn toml_date(&self, key: &str, d: chrono::NaiveDate) -> Result<toml_edit::Datetime, EditError> {
        let out_of_range = || EditError::DateOutOfRange {
            file: self.name.clone(),
            field: key.to_owned(),
            date: d,
        };
        let year = u16::try_from(chrono::Datelike::year(&d))
            .ok()
            .filter(|y| (1..=9999).contains(y))
            .ok_or_else(out_of_range)?;
        let month = u8::try_from(chrono::Datelike::month(&d)).map_err(|_| out_of_range())?;
        let day = u8::try_from(chrono::Datelike::day(&d)).map_err(|_| out_of_range())?;
        Ok(toml_edit::Datetime {
            date: Some(toml_edit::Date { year, month, day }),
            time: None,
            offset: None,
        })
    }

    /// Sets or removes an optional string field (`appliance`).
    pub fn set_opt_str(&mut self, key: &str, v: Option<&str>) {
        match v {
            Some(v) => self.set_str(key, v),
            None => {
                self.doc.remove(key);
            }
        }
    }

    /// Sets `ips` (a move to another location), keeping the key's comments.
    pub fn set_ips(&mut self, ips: &[VpsAddr]) {
        let arr: Array = ips.iter().map(ToString::to_string).collect();
        set_keep_decor(self.doc.as_table_mut(), "ips", value(arr));
    }

    /// Sets a string field (`os`, `hostname`).
    pub fn set_string(&mut self, key: &str, v: &str) {
        self.set_str(key, v);
    }

    /// Increments an action counter and returns the new generation.
    pub fn bump_action(&mut self, kind: ActionKind) -> Result<u64, EditError> {
        self.bump("actions", kind.key(), |_| {})
    }

    /// Asks for a restore: `[restore]` names `snapshot` (of `from`, another VPS of the same
    /// customer, or of this VPS with `None`) and its `generation` is bumped, so the node
    /// restores once. Returns the new generation.
    pub fn set_restore(&mut self, snapshot: &str, from: Option<&str>) -> Result<u64, EditError> {
        self.bump("restore", "generation", |t| {
            for (key, v) in [("snapshot", Some(snapshot)), ("from", from)] {
                match (t.get_mut(key), v) {
                    (Some(item), Some(v)) => replace_value(item, value(v)),
                    (None, Some(v)) => {
                        t.insert(key, value(v));
                    }
                    (_, None) => {
                        t.remove(key);
                    }
                }
            }
        })
    }

    /// Attaches an ISO (`[boot]`, written whole, where the table was) or, with `None`, ejects it
    /// (the table removed): the VPS boots from its disk again.
    pub fn set_boot(&mut self, boot: Option<&crate::media::Boot>) {
        use crate::media::IsoSource;
        let Some(b) = boot else {
            self.doc.remove("boot");
            return;
        };
        let mut t = Table::new();
        match &b.iso {
            IsoSource::Library(id) => {
                t.insert("iso", value(id.as_str()));
            }
            IsoSource::Url { url, sha256 } => {
                t.insert("iso_url", value(url.as_str()));
                t.insert("iso_sha256", value(sha256.as_str()));
            }
        }
        t.insert("order", value(b.order.as_str()));
        if let Some(old) = self.doc.get("boot").and_then(Item::as_table) {
            t.decor_mut().clone_from(old.decor());
            t.set_position(old.position());
        }
        self.doc.insert("boot", Item::Table(t));
    }

    /// Increments the integer `counter` of the table `table` (both made when missing), after
    /// `also` edited the table; returns the new value.
    fn bump(
        &mut self,
        table: &str,
        counter: &str,
        also: impl FnOnce(&mut dyn toml_edit::TableLike),
    ) -> Result<u64, EditError> {
        let name = self.name.clone();
        let item = self
            .doc
            .entry(table)
            .or_insert_with(|| Item::Table(Table::new()));
        let Some(t) = item.as_table_like_mut() else {
            return Err(EditError::Type {
                file: name,
                field: table.into(),
                expected: "a table",
            });
        };
        let cur = match t.get(counter) {
            None => 0,
            Some(i) => i.as_integer().ok_or_else(|| EditError::Type {
                file: name.clone(),
                field: format!("{table}.{counter}"),
                expected: "an integer",
            })?,
        };
        also(t);
        let next = cur.saturating_add(1);
        match t.get_mut(counter) {
            Some(item) => replace_value(item, value(next)),
            None => {
                t.insert(counter, value(next));
            }
        }
        Ok(u64::try_from(next).unwrap_or(0))
    }

    /// Replaces `ssh_keys` with `keys`, one per line.
    pub fn set_ssh_keys(&mut self, keys: &[SshPublicKey]) {
        let mut arr = Array::new();
        for k in keys {
            arr.push_formatted(toml_edit::Value::from(k.as_str()).decorated("\n    ", ""));
        }
        if !keys.is_empty() {
            arr.set_trailing("\n");
            arr.set_trailing_comma(true);
        }
        set_keep_decor(self.doc.as_table_mut(), "ssh_keys", value(arr));
    }

    /// Sets the reverse name of `ip` in `[ptr]`, or with `None` removes it (the address gets
    /// the host name again); a `[ptr]` left empty goes. Keys that spell the same address
    /// another way (`2001:DB8::25`) are replaced, so the address is named once.
    pub fn set_ptr(
        &mut self,
        ip: std::net::IpAddr,
        name: Option<&Hostname>,
    ) -> Result<(), EditError> {
        let file = self.name.clone();
        let exists = self.doc.contains_key("ptr");
        if !exists && name.is_none() {
            return Ok(());
        }
        let ptr = self
            .doc
            .entry("ptr")
            .or_insert_with(|| Item::Table(Table::new()));
        let Some(t) = ptr.as_table_like_mut() else {
            return Err(EditError::Type {
                file,
                field: "ptr".into(),
                expected: "a table",
            });
        };
        let same: Vec<String> = t
            .iter()
            .filter(|(k, _)| k.parse::<std::net::IpAddr>().is_ok_and(|k| k == ip))
            .map(|(k, _)| k.to_owned())
            .collect();
        let key = ip.to_string();
        match name {
            Some(n) => {
                for k in same.iter().filter(|k| **k != key) {
                    t.remove(k);
                }
                match t.get_mut(&key) {
                    Some(item) => replace_value(item, value(n.as_str())),
                    None => {
                        t.insert(&key, value(n.as_str()));
                    }
                }
            }
            None => {
                for k in &same {
                    t.remove(k);
                }
            }
        }
        if t.is_empty() {
            self.doc.remove("ptr");
        }
        Ok(())
    }
}

/// Replaces a value, keeping the comments and spacing around the old one.
fn replace_value(item: &mut Item, new: Item) {
    match (item.as_value_mut(), new) {
        (Some(old), Item::Value(mut v)) => {
            let decor = old.decor().clone();
            *v.decor_mut() = decor;
            *old = v;
        }
        (_, new) => *item = new,
    }
}

fn set_keep_decor(t: &mut Table, key: &str, new: Item) {
    match t.get_mut(key) {
        Some(item) => replace_value(item, new),
        None => {
            t.insert(key, new);
        }
    }
}

/// The text of a new VPS file, in the layout the example fleet uses.
pub fn new_vps_file(v: &Vps, comment: &str) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for line in comment.lines() {
        let _ = writeln!(s, "# {line}");
    }
    let q = |x: &str| toml_edit::Value::from(x).to_string();
    let _ = writeln!(s, "customer = {}", q(v.customer.as_str()));
    let _ = writeln!(s, "product = {}", q(v.product.as_str()));
    let _ = writeln!(s, "node = {}", q(v.node.as_str()));
    let ips: Vec<String> = v.ips.iter().map(|a| q(&a.to_string())).collect();
    let _ = writeln!(s, "ips = [{}]", ips.join(", "));
    let _ = writeln!(s, "hostname = {}", q(v.hostname.as_str()));
    let _ = writeln!(s, "os = {}", q(v.os.as_str()));
    if let Some(a) = &v.appliance {
        let _ = writeln!(s, "appliance = {}", q(a.as_str()));
    }
    let _ = writeln!(s, "power = {}", q(v.power.as_str()));
    let _ = writeln!(s, "state = {}", q(v.state.as_str()));
    if let Some(by) = v.suspension {
        let _ = writeln!(s, "suspension = {}", q(by.as_str()));
    }
    if let Some(d) = v.suspended {
        let _ = writeln!(s, "suspended = {d}");
    }
    if v.throttled {
        let _ = writeln!(s, "throttled = true");
    }
    let _ = writeln!(s, "created = {}", v.created);
    let _ = writeln!(s, "expires = {}", v.expires);
    let _ = writeln!(
        s,
        "\n[actions]\nreboot = {}\nfsck = {}\nreinstall = {}",
        v.actions.reboot, v.actions.fsck, v.actions.reinstall
    );
    if v.monitor != crate::inventory::Monitor::default() {
        let _ = writeln!(s, "\n[monitor]");
        if let Some(e) = &v.monitor.alert_email {
            let _ = writeln!(s, "alert_email = {}", q(e.as_str()));
        }
        let checks: Vec<String> = v
            .monitor
            .checks
            .iter()
            .map(|c| {
                if c.address.is_none() && c.port.is_none() && c.timeout_secs.is_none() {
                    return q(c.service.as_str());
                }
                let mut t = format!("{{ service = {}", q(c.service.as_str()));
                if let Some(a) = c.address {
                    let _ = write!(t, ", address = {}", q(&a.to_string()));
                }
                if let Some(p) = c.port {
                    let _ = write!(t, ", port = {p}");
                }
                if let Some(s) = c.timeout_secs {
                    let _ = write!(t, ", timeout_secs = {s}");
                }
                t.push_str(" }");
                t
            })
            .collect();
        let _ = writeln!(s, "checks = [{}]", checks.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"# Jane's main server
customer = "c-0001"
power = "running"   # the customer's choice
expires = 2011-06-09

[actions]
reboot = 3  # bumped by the site
fsck = 0
"#;

    #[test]
    fn edits_keep_comments_and_layout() {
        let mut f = TomlFile::parse("x.toml", FILE).unwrap();
        f.set_power(Power::Stopped);
        assert_eq!(f.bump_action(ActionKind::Reboot).unwrap(), 4);
        assert_eq!(f.bump_action(ActionKind::Reinstall).unwrap(), 1);
        f.set_date(
            "expires",
            chrono::NaiveDate::from_ymd_opt(2011, 9, 9).unwrap(),
        )
        .unwrap();
        let out = f.render();
        assert_eq!(
            out,
            r#"# Jane's main server
customer = "c-0001"
power = "stopped"   # the customer's choice
expires = 2011-09-09

[actions]
reboot = 4  # bumped by the site
fsck = 0
reinstall = 1
"#
        );
    }

    #[test]
    fn set_ptr_adds_replaces_and_removes_names_keeping_comments() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let name = |s: &str| s.parse::<Hostname>().unwrap();
        let mut f = TomlFile::parse("x.toml", FILE).unwrap();
        f.set_ptr(ip("66.255.255.34"), None).unwrap();
        assert_eq!(
            f.render(),
            FILE,
            "removing a name never set changes nothing"
        );
        f.set_ptr(ip("66.255.255.34"), Some(&name("mail.example.net")))
            .unwrap();
        assert!(
            f.render()
                .ends_with("fsck = 0\n\n[ptr]\n\"66.255.255.34\" = \"mail.example.net\"\n"),
            "{}",
            f.render()
        );

        let text = "customer = \"c-0001\"\n\n[ptr]\n\"2001:DB8::25\" = \"a.example.net\"  # mx\n\"192.0.2.1\" = \"b.example.net\"\n";
        let mut f = TomlFile::parse("x.toml", text).unwrap();
        f.set_ptr(ip("2001:db8::25"), Some(&name("c.example.net")))
            .unwrap();
        assert_eq!(
            f.render(),
            "customer = \"c-0001\"\n\n[ptr]\n\"192.0.2.1\" = \"b.example.net\"\n\"2001:db8::25\" = \"c.example.net\"\n"
        );
        f.set_ptr(ip("192.0.2.1"), Some(&name("d.example.net")))
            .unwrap();
        assert!(f.render().contains("\"192.0.2.1\" = \"d.example.net\"\n"));
        f.set_ptr(ip("2001:db8::25"), None).unwrap();
        f.set_ptr(ip("192.0.2.1"), None).unwrap();
        assert_eq!(f.render(), "customer = \"c-0001\"\n", "an empty [ptr] goes");

        let mut f = TomlFile::parse("x.toml", "ptr = 3\n").unwrap();
        assert!(f.set_ptr(ip("192.0.2.1"), None).is_err());
    }

    #[test]
    fn bump_creates_the_actions_table() {
        let mut f = TomlFile::parse("x.toml", "customer = \"c-0001\"\n").unwrap();
        assert_eq!(f.bump_action(ActionKind::Fsck).unwrap(), 1);
        assert!(f.render().contains("[actions]\nfsck = 1\n"));
    }

    #[test]
    fn a_restore_bumps_its_generation_and_names_its_source() {
        let mut f = TomlFile::parse("x.toml", "customer = \"c-0001\"\n").unwrap();
        assert_eq!(f.set_restore("4f2a9c1e", Some("xen02")).unwrap(), 1);
        assert!(
            f.render()
                .contains("[restore]\nsnapshot = \"4f2a9c1e\"\nfrom = \"xen02\"\ngeneration = 1\n"),
            "{}",
            f.render()
        );
        assert_eq!(f.set_restore("0badcafe", None).unwrap(), 2);
        let out = f.render();
        assert!(out.contains("snapshot = \"0badcafe\""), "{out}");
        assert!(out.contains("generation = 2"), "{out}");
        assert!(!out.contains("from"), "{out}");
        let mut f = TomlFile::parse("x.toml", "restore = 3\n").unwrap();
        assert!(f.set_restore("4f2a9c1e", None).is_err());
        let mut f = TomlFile::parse("x.toml", "[restore]\ngeneration = \"x\"\n").unwrap();
        assert!(f.set_restore("4f2a9c1e", None).is_err());
    }

    #[test]
    fn snapshots_are_added_reverted_to_and_removed() {
        let mut f = TomlFile::parse("x.toml", "customer = \"c-0001\"\n").unwrap();
        let at = chrono::DateTime::from_timestamp(1_796_000_000, 0).unwrap();
        f.add_snapshot("before", at).unwrap();
        f.add_snapshot("later", at).unwrap();
        assert_eq!(f.set_revert("before").unwrap(), 1);
        assert_eq!(f.set_revert("later").unwrap(), 2);
        let out = f.render();
        assert!(
            out.contains("[[snapshot]]\nname = \"before\"\ncreated = 2026-11-30T00:53:20Z\n"),
            "{out}"
        );
        assert!(
            out.contains("[revert]\nsnapshot = \"later\"\ngeneration = 2\n"),
            "{out}"
        );
        assert!(f.remove_snapshot("before"));
        assert!(!f.remove_snapshot("before"));
        assert!(f.render().contains("[revert]"), "a revert to another stays");
        assert!(f.remove_snapshot("later"));
        let out = f.render();
        assert!(
            !out.contains("snapshot") && !out.contains("revert"),
            "{out}"
        );
        let mut f = TomlFile::parse("x.toml", "snapshot = 3\n").unwrap();
        assert!(f.add_snapshot("a", at).is_err());
    }

    #[test]
    fn boot_media_is_written_whole_and_ejected_by_removing_the_table() {
        use crate::media::{Boot, BootOrder, IsoSource};
        let text = "customer = \"c-0001\"\n\n# the installer\n[boot]\niso = \"old\"\n\n[actions]\nreboot = 1\n";
        let mut f = TomlFile::parse("x.toml", text).unwrap();
        let url = Boot {
            iso: IsoSource::Url {
                url: "https://example.net/a.iso".parse().unwrap(),
                sha256: "ab".repeat(32).parse().unwrap(),
            },
            order: BootOrder::Disk,
        };
        f.set_boot(Some(&url));
        let out = f.render();
        assert!(
            out.contains(&format!(
                "# the installer\n[boot]\niso_url = \"https://example.net/a.iso\"\niso_sha256 = \"{}\"\norder = \"disk\"\n\n[actions]",
                "ab".repeat(32)
            )),
            "the table keeps its place and comment, without the old key: {out}"
        );
        f.set_boot(Some(&Boot {
            iso: IsoSource::Library("debian-12".parse().unwrap()),
            order: BootOrder::Cd,
        }));
        let out = f.render();
        assert!(
            out.contains("[boot]\niso = \"debian-12\"\norder = \"cd\"\n"),
            "{out}"
        );
        assert!(!out.contains("iso_url"), "{out}");
        f.set_boot(None);
        assert_eq!(
            f.render(),
            "customer = \"c-0001\"\n\n[actions]\nreboot = 1\n",
            "ejecting removes the table"
        );
    }

    #[test]
    fn wrong_type_is_an_error_not_a_panic() {
        let mut f = TomlFile::parse("x.toml", "actions = 3\n").unwrap();
        assert!(f.bump_action(ActionKind::Fsck).is_err());
        let mut f = TomlFile::parse("x.toml", "[actions]\nfsck = \"x\"\n").unwrap();
        assert!(f.bump_action(ActionKind::Fsck).is_err());
        assert!(TomlFile::parse("x.toml", "a = = 1").is_err());
    }

    #[test]
    fn set_date_out_of_range_is_an_error_not_a_clamp() {
        let mut f = TomlFile::parse("x.toml", FILE).unwrap();
        let far = chrono::NaiveDate::from_ymd_opt(12026, 2, 28).unwrap();
        let e = f.set_date("expires", far).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert!(f.render().contains("expires = 2011-06-09"), "unchanged");
        let bc = chrono::NaiveDate::from_ymd_opt(-5, 1, 1).unwrap();
        assert!(f.set_date("expires", bc).is_err());
        let last = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();
        f.set_date("expires", last).unwrap();
        assert!(f.render().contains("expires = 9999-12-31"));
    }
}
