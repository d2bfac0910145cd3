//! Scoped API keys: a customer's scripts act with a key limited to some routes, stored hashed
//! in `apikeys/<customer>.toml` and revoked by deleting its entry. Pure: randomness comes in.
//!
//! A key reads `gvk.<customer>.<id>.<secret>` (8 and 32 lowercase hex digits); the file holds
//! its id, name, scopes, creation time and a SHA-256 of the secret (128 random bits).

use model::CustomerId;
use sha2::{Digest, Sha256};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Table, value};

use crate::auth::hex;

/// Folder of the key files.
pub const APIKEYS_DIR: &str = "apikeys";
/// Most keys a customer may hold.
pub const MAX_KEYS: usize = 10;
/// Prefix of a key, telling it from a session token.
pub const PREFIX: &str = "gvk";

/// What a key may do. Keys never manage keys, two-factor login or sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// `GET /api/me`, `GET /api/tickets`.
    Read,
    /// start, stop, reboot, fsck.
    Power,
    /// reinstall.
    Reinstall,
    /// `PUT /api/vps/{id}/ssh-keys`.
    SshKeys,
    /// open and answer tickets.
    Tickets,
    /// renew and order (Checkout Sessions); read invoices (`GET /api/invoices`, `/api/invoices/{number}`).
    Billing,
    /// `PUT /api/vps/{id}/ptr`: reverse DNS names.
    Dns,
}

impl Scope {
    /// Every scope with its spelling.
    pub const ALL: [(&'static str, Scope); 7] = [
        ("read", Scope::Read),
        ("power", Scope::Power),
        ("reinstall", Scope::Reinstall),
        ("ssh-keys", Scope::SshKeys),
        ("tickets", Scope::Tickets),
        ("billing", Scope::Billing),
        ("dns", Scope::Dns),
    ];

    /// The spelling.
    pub fn as_str(self) -> &'static str {
        Scope::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("read", |(n, _)| n)
    }

    /// Parses a spelling.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.iter().find(|(n, _)| *n == s).map(|(_, s)| *s)
    }
}

/// One key of a customer's file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    /// 8 hex digits, shown in lists.
    pub id: String,
    /// A label the customer chose.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Unix time it was made.
    pub created: i64,
    /// Unix time from which it is refused; `None`: until revoked.
    pub expires: Option<i64>,
    /// SHA-256 of the secret (never shown).
    #[serde(skip)]
    pub hash: String,
}

/// The path of a customer's key file.
pub fn apikeys_path(customer: &CustomerId) -> String {
    format!("{APIKEYS_DIR}/{customer}.toml")
}

/// The stored hash of a key's secret.
pub fn secret_hash(customer: &CustomerId, id: &str, secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"gitvps api key\0");
    h.update(customer.as_str().as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    h.update(b"\0");
    h.update(secret.as_bytes());
    hex(&h.finalize())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits a presented key into customer, id and secret; `None` when it is not one.
pub fn parse_key(key: &str) -> Option<(CustomerId, String, String)> {
    let mut p = key.split('.');
    let (Some(PREFIX), Some(c), Some(id), Some(secret), None) =
        (p.next(), p.next(), p.next(), p.next(), p.next())
    else {
        return None;
    };
    if !is_hex(id, 8) || !is_hex(secret, 32) {
        return None;
    }
    Some((c.parse().ok()?, id.to_owned(), secret.to_owned()))
}

/// A new key from random bytes: the text shown once, and its entry.
pub fn new_key(
    customer: &CustomerId,
    name: String,
    scopes: Vec<Scope>,
    random: [u8; 20],
    now: i64,
) -> (String, ApiKey) {
    let id = hex(&random[..4]);
    let secret = hex(&random[4..]);
    let text = format!("{PREFIX}.{customer}.{id}.{secret}");
    let hash = secret_hash(customer, &id, &secret);
    (
        text,
        ApiKey {
            id,
            name,
            scopes,
            created: now,
            expires: None,
            hash,
        },
    )
}

impl ApiKey {
    /// Whether the key still works at `now` (not past its expiry).
    pub fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// Reads a key file (entries that do not read are skipped).
pub fn parse_file(text: &str) -> Vec<ApiKey> {
    let Ok(d) = text.parse::<DocumentMut>() else {
        return Vec::new();
    };
    let Some(keys) = d.get("key").and_then(|k| k.as_array_of_tables()) else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|t| {
            Some(ApiKey {
                id: t.get("id")?.as_str()?.to_owned(),
                name: t.get("name")?.as_str()?.to_owned(),
                scopes: t
                    .get("scopes")?
                    .as_array()?
                    .iter()
                    .filter_map(|s| s.as_str().and_then(Scope::parse))
                    .collect(),
                created: t.get("created")?.as_integer()?,
                expires: t.get("expires").and_then(|v| v.as_integer()),
                hash: t.get("hash")?.as_str()?.to_owned(),
            })
        })
        .collect()
}

/// The text of a key file.
pub fn render_file(customer: &CustomerId, keys: &[ApiKey]) -> String {
    let mut d = DocumentMut::new();
    let mut arr = ArrayOfTables::new();
    for k in keys {
        let mut t = Table::new();
        t["id"] = value(k.id.as_str());
        t["name"] = value(k.name.as_str());
        let mut s = Array::new();
        for sc in &k.scopes {
            s.push(sc.as_str());
        }
        t["scopes"] = value(s);
        t["created"] = value(k.created);
        if let Some(e) = k.expires {
            t["expires"] = value(e);
        }
        t["hash"] = value(k.hash.as_str());
        arr.push(t);
    }
    d["key"] = toml_edit::Item::ArrayOfTables(arr);
    format!(
        "# API keys of {customer}, written by gitvps-hooks: hashes only. Delete an entry to revoke it.\n{d}"
    )
}

/// The entry a presented key matches, compared without an early exit.
pub fn find<'a>(
    keys: &'a [ApiKey],
    customer: &CustomerId,
    id: &str,
    secret: &str,
) -> Option<&'a ApiKey> {
    let want = secret_hash(customer, id, secret);
    keys.iter().find(|k| {
        k.id == id
            && k.hash.len() == want.len()
            && k.hash
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_hashed_and_only_their_secret_opens_them() {
        let c: CustomerId = "c-0001".parse().unwrap();
        let (text, k) = new_key(
            &c,
            "monitoring".into(),
            vec![Scope::Read, Scope::Power],
            [7; 20],
            5,
        );
        assert!(text.starts_with("gvk.c-0001.07070707."));
        let file = render_file(&c, std::slice::from_ref(&k));
        assert!(
            !file.contains(text.rsplit('.').next().unwrap()),
            "no secret in the file"
        );
        let back = parse_file(&file);
        assert_eq!(back, vec![k.clone()]);
        let mut expiring = k.clone();
        expiring.expires = Some(100);
        let again = parse_file(&render_file(&c, std::slice::from_ref(&expiring)));
        assert_eq!(again, vec![expiring.clone()]);
        assert!(expiring.live(99) && !expiring.live(100) && k.live(i64::MAX));
        let (pc, id, secret) = parse_key(&text).unwrap();
        assert_eq!(pc, c);
        assert_eq!(find(&back, &c, &id, &secret), Some(&k));
        let wrong = format!("{}0", &secret[..31]);
        assert_eq!(find(&back, &c, &id, &wrong), None);
        for bad in [
            "gvk.c-0001.0707.x",
            "v1.c-0001.1.00",
            "gvk.c-0001.07070707.ABC",
        ] {
            assert!(parse_key(bad).is_none(), "{bad}");
        }
        assert_eq!(Scope::parse("ssh-keys"), Some(Scope::SshKeys));
        assert_eq!(Scope::parse("admin"), None);
    }
}
