//! Announcements (`gitvps announce`): who gets one (each customer with a live VPS in the chosen
//! set, once), its id, its mails' ids and its record `mail/announcements/<id>.toml`. Pure.
//!
//! A live VPS is one that is not destroyed: a suspended VPS still has its disk on the node, so
//! its customer hears about the node's maintenance too.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use model::values::{Email, Language, State};
use model::{CustomerId, Inventory, NodeId, ProductId, VpsId};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::id::MailId;

/// Folder of the announcement records.
pub const ANNOUNCEMENTS_DIR: &str = "mail/announcements";
/// Longest subject, in characters.
pub const MAX_SUBJECT: usize = 200;
/// Longest body, in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest slug taken from the subject.
const MAX_SLUG: usize = 40;

/// Which VPSes' customers an announcement goes to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "by", content = "value")]
pub enum Selector {
    /// The VPSes on one node.
    Node(NodeId),
    /// The VPSes on the nodes of one location (as the nodes' `location` spells it).
    Location(String),
    /// The VPSes of one plan.
    Product(ProductId),
    /// Every VPS.
    All,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Node(n) => write!(f, "node {n}"),
            Selector::Location(l) => write!(f, "location {l:?}"),
            Selector::Product(p) => write!(f, "product {p}"),
            Selector::All => f.write_str("all"),
        }
    }
}

/// Why an announcement cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// The selector names nothing in the inventory.
    #[error("{selector}: no such {what} in the inventory (known: {known})")]
    Unknown {
        /// The selector.
        selector: Selector,
        /// `node`, `location` or `product`.
        what: &'static str,
        /// The names there are.
        known: String,
    },
    /// The product is a renewal, which no VPS has.
    #[error("product {0} is a renewal: name the plan it renews")]
    Renewal(ProductId),
    /// The subject or body is empty, too long or holds control characters.
    #[error("{field}: {message}")]
    Text {
        /// `subject`, `body`, ...
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A record in the repo does not parse.
    #[error("{0} is not an announcement record")]
    Record(String),
}

/// Checks that the selector names something in the inventory.
pub fn check_selector(inv: &Inventory, sel: &Selector) -> Result<(), AnnounceError> {
    let unknown = |what, known: Vec<String>| AnnounceError::Unknown {
        selector: sel.clone(),
        what,
        known: known.join(", "),
    };
    match sel {
        Selector::Node(n) if !inv.nodes.contains_key(n) => Err(unknown(
            "node",
            inv.nodes.keys().map(ToString::to_string).collect(),
        )),
        Selector::Location(l) if !inv.nodes.values().any(|n| &n.location == l) => {
            let mut known: Vec<String> = inv.nodes.values().map(|n| n.location.clone()).collect();
            known.sort();
            known.dedup();
            Err(unknown(
                "location",
                known.into_iter().map(|l| format!("{l:?}")).collect(),
            ))
        }
        Selector::Product(p) => match inv.products.get(p) {
            None => Err(unknown(
                "product",
                inv.products
                    .values()
                    .filter(|p| p.resources().is_some())
                    .map(|p| p.id.to_string())
                    .collect(),
            )),
            Some(prod) if prod.resources().is_none() => Err(AnnounceError::Renewal(p.clone())),
            Some(_) => Ok(()),
        },
        _ => Ok(()),
    }
}

/// One customer an announcement goes to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recipient {
    /// The customer.
    pub customer: CustomerId,
    /// Their name, for the greeting.
    pub name: String,
    /// Their address; `None`: listed as skipped.
    pub email: Option<Email>,
    /// The language of their mail.
    #[serde(serialize_with = "lang_code")]
    pub language: Language,
    /// Their live VPSes in the set, sorted.
    pub vps: Vec<VpsId>,
}

fn lang_code<S: serde::Serializer>(l: &Language, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(crate::render::lang_code(*l))
}

/// The customers with a live (not destroyed) VPS in the set, once each, by customer id.
pub fn recipients(inv: &Inventory, sel: &Selector) -> Vec<Recipient> {
    let mut by: BTreeMap<&CustomerId, Vec<VpsId>> = BTreeMap::new();
    for v in inv.vps.values() {
        if v.state == State::Destroyed {
            continue;
        }
        let chosen = match sel {
            Selector::Node(n) => &v.node == n,
            Selector::Location(l) => inv.nodes.get(&v.node).is_some_and(|n| &n.location == l),
            Selector::Product(p) => &v.product == p,
            Selector::All => true,
        };
        if chosen {
            by.entry(&v.customer).or_default().push(v.id.clone());
        }
    }
    by.into_iter()
        .filter_map(|(c, mut vps)| {
            let cust = inv.customers.get(c)?;
            vps.sort();
            Some(Recipient {
                customer: c.clone(),
                name: cust.name.clone(),
                email: cust.email.clone(),
                language: cust.language,
                vps,
            })
        })
        .collect()
}

/// What the operator wrote: a subject and body, optionally a Chinese version for customers
/// whose language is Chinese (the others, and every customer without it, get the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The subject (one line).
    pub subject: String,
    /// The body (plain text).
    pub body: String,
    /// Subject and body for Chinese-speaking customers.
    pub zh: Option<(String, String)>,
}

impl Text {
    /// Checks and normalizes the texts: one-line subjects, bodies without control characters.
    pub fn new(subject: &str, body: &str, zh: Option<(&str, &str)>) -> Result<Text, AnnounceError> {
        let line = |field, s: &str| {
            model::text::check_line(s, MAX_SUBJECT)
                .map_err(|message| AnnounceError::Text { field, message })
        };
        let text = |field, s: &str| {
            model::text::check_text(s, MAX_BODY)
                .map_err(|message| AnnounceError::Text { field, message })
        };
        Ok(Text {
            subject: line("subject", subject)?,
            body: text("body", body)?,
            zh: zh
                .map(|(s, b)| Ok::<_, AnnounceError>((line("subject-zh", s)?, text("body-zh", b)?)))
                .transpose()?,
        })
    }

    /// The subject and body for a language.
    pub fn for_language(&self, lang: Language) -> (&str, &str) {
        match (lang, &self.zh) {
            (Language::Zh, Some((s, b))) => (s, b),
            _ => (&self.subject, &self.body),
        }
    }

    /// A stable tag of the texts and the selector: the same announcement made again, on any
    /// day, has the same digest and is recognised.
    pub fn digest(&self, sel: &Selector) -> String {
        let (zs, zb) = self
            .zh
            .as_ref()
            .map(|(s, b)| (s.as_str(), b.as_str()))
            .unwrap_or_default();
        let all = [self.subject.as_str(), &self.body, zs, zb, &sel.to_string()].join("\u{0}");
        format!("{:016x}", crate::message::fnv1a(&all))
    }
}

/// The id of a new announcement: `<date>-<slug of the subject>` (`2026-12-06-node0109-maintenance`),
/// with `-2`, `-3`, ... when an id of that name is taken by another announcement.
pub fn new_id(date: NaiveDate, subject: &str, taken: impl Fn(&str) -> bool) -> String {
    let mut slug = String::new();
    for c in subject.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= MAX_SLUG {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let base = if slug.is_empty() {
        format!("{date}-announcement")
    } else {
        format!("{date}-{slug}")
    };
    let mut id = base.clone();
    let mut n = 2u32;
    while taken(&id) {
        id = format!("{base}-{n}");
        n = n.saturating_add(1);
    }
    id
}

/// The mail id of one customer's copy: `announce.<id>.<customer>`.
pub fn mail_id(id: &str, customer: &CustomerId) -> Result<MailId, crate::InvalidMailId> {
    format!("announce.{id}.{customer}").parse()
}

/// The repo path of a record.
pub fn record_path(id: &str) -> String {
    format!("{ANNOUNCEMENTS_DIR}/{id}.toml")
}

/// An announcement's record: what was announced to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its id (names the file).
    pub id: String,
    /// The day it was first made.
    pub date: NaiveDate,
    /// The selector, as text.
    pub selector: String,
    /// See [`Text::digest`].
    pub digest: String,
    /// The texts.
    pub text: Text,
    /// Mailed: mail id, customer, address, VPSes.
    pub mails: Vec<(String, CustomerId, String, Vec<VpsId>)>,
    /// Not mailed: customer, why, VPSes.
    pub skipped: Vec<(CustomerId, String, Vec<VpsId>)>,
}

impl Record {
    /// The record's TOML file.
    pub fn render(&self) -> String {
        let mut doc = DocumentMut::new();
        doc["id"] = value(&self.id);
        doc["date"] = value(toml_edit::Date {
            year: u16::try_from(chrono::Datelike::year(&self.date)).unwrap_or(0),
            month: u8::try_from(chrono::Datelike::month(&self.date)).unwrap_or(0),
            day: u8::try_from(chrono::Datelike::day(&self.date)).unwrap_or(0),
        });
        doc["selector"] = value(&self.selector);
        doc["digest"] = value(&self.digest);
        doc["recipients"] = value(i64::try_from(self.mails.len()).unwrap_or(i64::MAX));
        doc["subject"] = value(&self.text.subject);
        doc["body"] = value(&self.text.body);
        if let Some((s, b)) = &self.text.zh {
            doc["subject_zh"] = value(s);
            doc["body_zh"] = value(b);
        }
        let vps_array = |vps: &[VpsId]| {
            let mut a = Array::new();
            for v in vps {
                a.push(v.as_str());
            }
            value(a)
        };
        let mut mails = ArrayOfTables::new();
        for (id, c, to, vps) in &self.mails {
            let mut t = Table::new();
            t["id"] = value(id);
            t["customer"] = value(c.as_str());
            t["to"] = value(to);
            t["vps"] = vps_array(vps);
            mails.push(t);
        }
        doc["mail"] = Item::ArrayOfTables(mails);
        let mut skipped = ArrayOfTables::new();
        for (c, why, vps) in &self.skipped {
            let mut t = Table::new();
            t["customer"] = value(c.as_str());
            t["reason"] = value(why);
            t["vps"] = vps_array(vps);
            skipped.push(t);
        }
        doc["skipped"] = Item::ArrayOfTables(skipped);
        format!(
            "# gitvps announce: what was announced to whom (mails in mail/outbox, mail/sent)\n{doc}"
        )
    }

    /// Reads a record back (`path` names it in errors).
    pub fn parse(path: &str, text: &str) -> Result<Record, AnnounceError> {
        let bad = || AnnounceError::Record(path.to_owned());
        let doc: DocumentMut = text.parse().map_err(|_| bad())?;
        let s = |t: &dyn toml_edit::TableLike, k: &str| {
            t.get(k).and_then(Item::as_str).map(str::to_owned)
        };
        let vps = |t: &dyn toml_edit::TableLike| -> Vec<VpsId> {
            t.get("vps")
                .and_then(Item::as_array)
                .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
                .unwrap_or_default()
        };
        let customer = |t: &dyn toml_edit::TableLike| -> Option<CustomerId> {
            t.get("customer")?.as_str()?.parse().ok()
        };
        let root = doc.as_table();
        let date = root
            .get("date")
            .and_then(Item::as_value)
            .and_then(toml_edit::Value::as_datetime)
            .and_then(|d| d.date)
            .and_then(|d| {
                NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
            })
            .ok_or_else(bad)?;
        let zh = match (s(root, "subject_zh"), s(root, "body_zh")) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        };
        let mut mails = Vec::new();
        if let Some(a) = root.get("mail").and_then(Item::as_array_of_tables) {
            for t in a {
                let (Some(id), Some(c), Some(to)) = (s(t, "id"), customer(t), s(t, "to")) else {
                    return Err(bad());
                };
                mails.push((id, c, to, vps(t)));
            }
        }
        let mut skipped = Vec::new();
        if let Some(a) = root.get("skipped").and_then(Item::as_array_of_tables) {
            for t in a {
                let (Some(c), Some(why)) = (customer(t), s(t, "reason")) else {
                    return Err(bad());
                };
                skipped.push((c, why, vps(t)));
            }
        }
        Ok(Record {
            id: s(root, "id").ok_or_else(bad)?,
            date,
            selector: s(root, "selector").ok_or_else(bad)?,
            digest: s(root, "digest").ok_or_else(bad)?,
            text: Text {
                subject: s(root, "subject").ok_or_else(bad)?,
                body: s(root, "body").ok_or_else(bad)?,
                zh,
            },
            mails,
            skipped,
        })
    }

    /// Adds this run's recipients to what an earlier run of the same announcement recorded:
    /// a customer already listed keeps the first entry.
    pub fn merge(&mut self, earlier: &Record) {
        let mut mails: BTreeMap<CustomerId, _> = BTreeMap::new();
        for m in earlier.mails.iter().chain(&self.mails) {
            mails.entry(m.1.clone()).or_insert_with(|| m.clone());
        }
        let mut skipped: BTreeMap<CustomerId, _> = BTreeMap::new();
        for s in earlier.skipped.iter().chain(&self.skipped) {
            if !mails.contains_key(&s.0) {
                skipped.entry(s.0.clone()).or_insert_with(|| s.clone());
            }
        }
        self.mails = mails.into_values().collect();
        self.skipped = skipped.into_values().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fleet() -> Inventory {
        let top = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        match Inventory::load(&top) {
            Ok(inv) => inv,
            Err(e) => panic!("{e}"),
        }
    }

    fn ids(r: &[Recipient]) -> Vec<String> {
        r.iter()
            .map(|r| {
                let vps: Vec<&str> = r.vps.iter().map(VpsId::as_str).collect();
                format!("{}:{}", r.customer, vps.join("+"))
            })
            .collect()
    }

    #[test]
    fn selection_by_node_location_product_and_all() {
        let mut inv = fleet();
        let node: NodeId = "node0109".parse().unwrap();
        // xen01 and xen04 belong to c-0003: one mail, both VPSes named.
        assert_eq!(
            ids(&recipients(&inv, &Selector::Node(node.clone()))),
            ["c-0001:xen02", "c-0003:xen01"]
        );
        assert_eq!(
            ids(&recipients(&inv, &Selector::All)),
            ["c-0001:xen02", "c-0002:xen03", "c-0003:xen01+xen04"]
        );
        let advanced = Selector::Product("advanced".parse().unwrap());
        assert_eq!(
            ids(&recipients(&inv, &advanced)),
            ["c-0001:xen02", "c-0002:xen03", "c-0003:xen04"]
        );
        let loc = inv.nodes[&node].location.clone();
        assert_eq!(
            ids(&recipients(&inv, &Selector::Location(loc))),
            ["c-0001:xen02", "c-0003:xen01"]
        );
        // Destroyed VPSes do not count; suspended ones do.
        let xen01: VpsId = "xen01".parse().unwrap();
        let xen02: VpsId = "xen02".parse().unwrap();
        inv.vps.get_mut(&xen01).unwrap().state = State::Destroyed;
        inv.vps.get_mut(&xen02).unwrap().state = State::Suspended;
        assert_eq!(
            ids(&recipients(&inv, &Selector::Node(node))),
            ["c-0001:xen02"]
        );
        // The language and a missing address are carried to the caller.
        let c2: CustomerId = "c-0002".parse().unwrap();
        inv.customers.get_mut(&c2).unwrap().email = None;
        let r = recipients(&inv, &Selector::All);
        let lin = r.iter().find(|r| r.customer == c2).unwrap();
        assert_eq!((lin.language, lin.email.is_none()), (Language::Zh, true));
    }

    #[test]
    fn selectors_must_name_something() {
        let inv = fleet();
        let e = check_selector(&inv, &Selector::Node("node9".parse().unwrap()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such node") && e.contains("node0109"), "{e}");
        let e = check_selector(&inv, &Selector::Location("Mars".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such location"), "{e}");
        assert!(matches!(
            check_selector(&inv, &Selector::Product("advanced-3m".parse().unwrap())),
            Err(AnnounceError::Renewal(_))
        ));
        assert!(check_selector(&inv, &Selector::Product("advanced".parse().unwrap())).is_ok());
        assert!(check_selector(&inv, &Selector::All).is_ok());
    }

    #[test]
    fn ids_digests_and_records() {
        let d: NaiveDate = "2026-12-06".parse().unwrap();
        assert_eq!(
            new_id(d, "Node0109: maintenance on Dec. 10!", |_| false),
            "2026-12-06-node0109-maintenance-on-dec-10"
        );
        assert_eq!(new_id(d, "维护通知", |_| false), "2026-12-06-announcement");
        assert_eq!(
            new_id(d, "x", |id| id == "2026-12-06-x" || id == "2026-12-06-x-2"),
            "2026-12-06-x-3"
        );
        assert!(new_id(d, &"word ".repeat(40), |_| false).len() <= 10 + 1 + MAX_SLUG);
        let c: CustomerId = "c-0001".parse().unwrap();
        assert_eq!(
            mail_id("2026-12-06-x", &c).unwrap().as_str(),
            "announce.2026-12-06-x.c-0001"
        );

        let t = Text::new(" Hi ", "Body\r\nline", Some(("你好", "正文"))).unwrap();
        assert_eq!((t.subject.as_str(), t.body.as_str()), ("Hi", "Body\nline"));
        assert_eq!(t.for_language(Language::Zh), ("你好", "正文"));
        assert_eq!(t.for_language(Language::En), ("Hi", "Body\nline"));
        assert_eq!(t.digest(&Selector::All), t.clone().digest(&Selector::All));
        assert_ne!(
            t.digest(&Selector::All),
            t.digest(&Selector::Node("n1".parse().unwrap()))
        );
        assert!(Text::new("a\nb", "x", None).is_err());
        assert!(Text::new("a", "bell\u{7}", None).is_err());
        assert!(Text::new("a", "x", Some(("", "y"))).is_err());

        let mut r = Record {
            id: "2026-12-06-hi".into(),
            date: d,
            selector: Selector::All.to_string(),
            digest: t.digest(&Selector::All),
            text: t,
            mails: vec![(
                "announce.2026-12-06-hi.c-0001".into(),
                c.clone(),
                "jane@example.net".into(),
                vec!["xen02".parse().unwrap()],
            )],
            skipped: vec![(
                "c-0002".parse().unwrap(),
                "no e-mail address".into(),
                vec![],
            )],
        };
        let text = r.render();
        assert!(text.contains("recipients = 1\n"), "{text}");
        let back = Record::parse("x", &text).unwrap();
        assert_eq!(back, r);
        // A later run where c-0002 got an address: one entry each, mailed wins.
        let earlier = r.clone();
        r.mails = vec![(
            "announce.2026-12-06-hi.c-0002".into(),
            "c-0002".parse().unwrap(),
            "lin@example.cn".into(),
            vec![],
        )];
        r.skipped = Vec::new();
        r.merge(&earlier);
        assert_eq!(r.mails.len(), 2);
        assert!(r.skipped.is_empty());
        assert!(Record::parse("x", "id = 1").is_err());
    }
}
