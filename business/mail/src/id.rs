//! The id of one mail: chosen by the caller from the mail's cause, it names the outbox file and
//! makes the Message-ID, so the same cause always gives the same message.

use std::fmt;
use std::str::FromStr;

/// Longest id: one leading character and 150 more.
const MAX_LEN: usize = 151;

/// A mail id such as `reminder.xen02.2026-12-09.7d`: `[a-z0-9][a-z0-9.-]{0,150}`, so it is safe
/// as a file name (no `/`, never `.` or `..`) and inside a Message-ID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MailId(String);

/// Why a text is not a [`MailId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{}` is not a mail id: use 1 to {MAX_LEN} of a-z, 0-9, `.` and `-`, starting with a letter or digit", .0.escape_debug())]
pub struct InvalidMailId(pub String);

impl MailId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MailId {
    type Err = InvalidMailId;
    fn from_str(s: &str) -> Result<Self, InvalidMailId> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'.' || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= MAX_LEN {
            Ok(MailId(s.to_owned()))
        } else {
            Err(InvalidMailId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for MailId {
    type Error = InvalidMailId;
    fn try_from(s: String) -> Result<Self, InvalidMailId> {
        s.parse()
    }
}

impl fmt::Display for MailId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for MailId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for MailId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        for ok in [
            "reminder.xen02.2026-12-09.7d",
            "a",
            "0",
            "invoice.2026-0001",
            "x.",
            "a..b",
            &"a".repeat(151),
        ] {
            let id: MailId = ok.parse().unwrap();
            assert_eq!(id.as_str(), ok);
            assert_eq!(id.to_string(), ok);
        }
    }

    #[test]
    fn invalid_ids() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-a",
            "A",
            "reminder/xen02",
            "a b",
            "a_b",
            "é",
            "a\n",
            "a@b",
            "<a>",
            &"a".repeat(152),
        ] {
            let err = bad.parse::<MailId>().unwrap_err();
            assert!(err.to_string().contains("is not a mail id"), "{bad}: {err}");
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let id: MailId = serde_json::from_str("\"alert.xen02.1\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"alert.xen02.1\"");
        assert!(serde_json::from_str::<MailId>("\"../etc\"").is_err());
    }
}
