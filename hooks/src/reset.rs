//! Password resets by mail: a random single-use token whose hash and expiry are the record
//! `resets/<customer>.toml`; the token itself travels only in the mail's link. Pure.
//!
//! A token reads `<customer>.<64 lowercase hex digits>` (256 random bits): the customer names
//! the record, the rest is checked against its SHA-256. One record per customer: a new request
//! replaces it (the older link stops working), a reset or a password change removes it.

use model::CustomerId;
use sha2::{Digest, Sha256};
use toml_edit::{DocumentMut, value};

use crate::auth::hex;

/// Folder of the reset records, beside `sessions/` and `twofactor/`.
pub const RESETS_DIR: &str = "resets";
/// Random bytes of a token.
pub const TOKEN_BYTES: usize = 32;

/// The path of a customer's reset record.
pub fn reset_path(customer: &CustomerId) -> String {
    format!("{RESETS_DIR}/{customer}.toml")
}

/// A reset token in clear: shown only in the mail's link, never logged (`Debug` hides it).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A new token for `customer` from random bytes.
    pub fn new(customer: &CustomerId, random: [u8; TOKEN_BYTES]) -> Token {
        Token(format!("{customer}.{}", hex(&random)))
    }

    /// Reads a token as the link carries it; `None` when it is not one (one spelling only).
    pub fn parse(text: &str) -> Option<Token> {
        let (customer, secret) = text.trim().rsplit_once('.')?;
        customer.parse::<CustomerId>().ok()?;
        let canonical = secret.len() == TOKEN_BYTES * 2
            && secret
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        canonical.then(|| Token(text.trim().to_owned()))
    }

    /// The customer it was made for.
    pub fn customer(&self) -> Option<CustomerId> {
        self.0.rsplit_once('.')?.0.parse().ok()
    }

    /// The stored hash of the token (bound to its customer by the token's own text).
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"gitvps password reset\0");
        h.update(self.0.as_bytes());
        hex(&h.finalize())
    }

    /// The text, for the one place that puts it in the link.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A customer's reset record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// [`Token::hash`] of the token mailed.
    pub hash: String,
    /// Unix time it was asked for.
    pub created: i64,
    /// Unix time from which it is refused.
    pub expires: i64,
}

impl Record {
    /// Reads a record; `None` when the text is not one.
    pub fn parse(text: &str) -> Option<Record> {
        let d: DocumentMut = text.parse().ok()?;
        Some(Record {
            hash: d.get("hash")?.as_str()?.to_owned(),
            created: d.get("created")?.as_integer()?,
            expires: d.get("expires")?.as_integer()?,
        })
    }

    /// The file's text.
    pub fn render(&self, customer: &CustomerId) -> String {
        let mut d = DocumentMut::new();
        d["hash"] = value(self.hash.as_str());
        d["created"] = value(self.created);
        d["expires"] = value(self.expires);
        format!(
            "# A password reset asked for {customer}, written by gitvps-hooks: the hash of the link's\n# token (never the token), valid until `expires` (unix time) and once. Delete it to cancel.\n{d}"
        )
    }

    /// Whether `token_hash` opens this record at `now`: the same hash (compared without an
    /// early exit) and before the expiry.
    pub fn opens(&self, token_hash: &str, now: i64) -> bool {
        crate::twofactor::ct_eq(self.hash.as_bytes(), token_hash.as_bytes()) && now < self.expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c1() -> CustomerId {
        "c-0001".parse().unwrap()
    }

    #[test]
    fn a_token_is_parsed_in_its_one_spelling_and_hashed_with_its_customer() {
        let t = Token::new(&c1(), [0xab; TOKEN_BYTES]);
        assert!(t.expose().starts_with("c-0001.abab"));
        assert_eq!(format!("{t:?}"), "Token(..)");
        let back = Token::parse(t.expose()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.customer(), Some(c1()));
        let other = Token::new(&"c-0002".parse().unwrap(), [0xab; TOKEN_BYTES]);
        assert_ne!(t.hash(), other.hash());
        assert!(!t.hash().contains("abababab"));
        let upper = t.expose().to_ascii_uppercase().replace("C-0001", "c-0001");
        for bad in [
            "",
            "c-0001",
            "c-0001.abab",
            "C-0001.00",
            upper.as_str(),
            &format!("{}0", t.expose()),
        ] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_record_opens_once_for_its_token_before_its_expiry() {
        let t = Token::new(&c1(), [7; TOKEN_BYTES]);
        let r = Record {
            hash: t.hash(),
            created: 1000,
            expires: 2800,
        };
        let text = r.render(&c1());
        assert!(!text.contains(t.expose()), "no token in the record");
        let back = Record::parse(&text).unwrap();
        assert_eq!(back, r);
        assert!(back.opens(&t.hash(), 2799));
        assert!(!back.opens(&t.hash(), 2800), "expired");
        let wrong = Token::new(&c1(), [8; TOKEN_BYTES]);
        assert!(!back.opens(&wrong.hash(), 1001));
        assert!(Record::parse("hash = 1").is_none());
    }
}
