//! Who is asking: argon2 password checks and short-lived HMAC-signed session tokens.
//! Pure functions (the clock and the secret are arguments); comparisons are constant-time.

use hmac::{Hmac, Mac};
use model::CustomerId;
use model::values::PasswordHash;
use sha2::{Digest, Sha256};

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Version tag of the token format; a new format gets a new tag.
const TOKEN_TAG: &str = "v1";

/// A hash of a password no one knows, checked when the login names no customer with a
/// password, so an unknown customer takes as long as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$gRqnVZzlQ1xo1IOoqZd94w$xdFOC/CniMwlmXcM6NLTf2c/vJDVL0IU/EZ/fePt0M0";

/// Why a token was refused. The HTTP answer is the same 401 for all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `v1.<customer>.<expiry>.<mac>`.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not match, or the customer or its password changed.
    #[error("the token signature does not match")]
    BadSignature,
    /// The token is past its expiry.
    #[error("the token has expired")]
    Expired,
}

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The customer it was issued to.
    pub customer: CustomerId,
    /// Unix time after which it is refused.
    pub expires: i64,
}

/// What binds a token to the customer's current password: changing the password hash in the
/// repo (or removing the customer) revokes every token issued before.
pub fn password_fingerprint(hash: Option<&PasswordHash>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"gitvps password fingerprint\0");
    if let Some(p) = hash {
        h.update(p.as_str().as_bytes());
    }
    h.finalize().into()
}

/// What a request was authenticated with, checked again on the head its change is committed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session token: the session fingerprint it was issued for.
    Session([u8; 32]),
    /// An API key: its id and stored hash (revoked when its entry is gone).
    ApiKey {
        /// The key's id.
        id: String,
        /// Its stored hash.
        hash: String,
    },
}

/// Folder of the per-customer session files (`sessions/<customer>.toml`, `not_before = <unix>`),
/// written by "log out everywhere".
pub const SESSIONS_DIR: &str = "sessions";

/// The path of a customer's session file.
pub fn session_path(customer: &CustomerId) -> String {
    format!("{SESSIONS_DIR}/{customer}.toml")
}

/// The `not_before` of a customer's session file (0 without one, or when unreadable).
pub fn session_epoch(text: Option<&str>) -> i64 {
    text.and_then(|t| t.parse::<toml_edit::DocumentMut>().ok())
        .and_then(|d| d.get("not_before").and_then(|v| v.as_integer()))
        .unwrap_or(0)
}

/// What binds a token to the customer now: its password and the last "log out everywhere"
/// (`epoch`, 0 for never: then the password fingerprint alone, so older tokens stay valid).
pub fn session_fingerprint(hash: Option<&PasswordHash>, epoch: i64) -> [u8; 32] {
    let pw = password_fingerprint(hash);
    if epoch == 0 {
        return pw;
    }
    let mut h = Sha256::new();
    h.update(b"gitvps session fingerprint\0");
    h.update(pw);
    h.update(epoch.to_be_bytes());
    h.finalize().into()
}

/// The session fingerprint of `customer` on a head (its inventory and files); `None` when the
/// customer does not exist there.
pub fn current_fingerprint(
    inv: &model::Inventory,
    tree: &dyn crate::tree::Tree,
    customer: &CustomerId,
) -> Option<[u8; 32]> {
    let c = inv.customers.get(customer)?;
    let epoch = session_epoch(tree.read(&session_path(customer)).as_deref());
    Some(session_fingerprint(c.password_hash.as_ref(), epoch))
}

fn mac_for(key: &Secret, customer: &str, expires: i64, fingerprint: &[u8; 32]) -> HmacSha256 {
    // `new_from_slice` accepts keys of any length for HMAC; the error branch cannot happen,
    // and an empty key would still give a MAC that no one else computes without the secret.
    let mut mac = HmacSha256::new_from_slice(key.expose())
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()));
    mac.update(b"gitvps session\0");
    mac.update(TOKEN_TAG.as_bytes());
    mac.update(b"\0");
    mac.update(customer.as_bytes());
    mac.update(b"\0");
    mac.update(expires.to_string().as_bytes());
    mac.update(b"\0");
    mac.update(fingerprint);
    mac
}

/// Issues a token for `customer`, valid until `now + ttl_secs`.
pub fn issue_token(
    key: &Secret,
    customer: &CustomerId,
    fingerprint: &[u8; 32],
    now: i64,
    ttl_secs: i64,
) -> (String, i64) {
    let expires = now.saturating_add(ttl_secs);
    let tag = mac_for(key, customer.as_str(), expires, fingerprint)
        .finalize()
        .into_bytes();
    (
        format!("{TOKEN_TAG}.{customer}.{expires}.{}", hex(&tag)),
        expires,
    )
}

/// Checks a token: its form, its signature (constant-time, bound to the customer's password
/// fingerprint as `fingerprint_of` gives it now) and then its expiry.
pub fn verify_token(
    key: &Secret,
    token: &str,
    fingerprint_of: impl FnOnce(&CustomerId) -> Option<[u8; 32]>,
    now: i64,
) -> Result<Session, TokenError> {
    let mut parts = token.split('.');
    let (Some(tag), Some(customer), Some(expires), Some(sig), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if tag != TOKEN_TAG {
        return Err(TokenError::Malformed);
    }
    let customer: CustomerId = customer.parse().map_err(|_| TokenError::Malformed)?;
    // One spelling per token: digits without sign or leading zero, 64 lowercase hex digits.
    // `i64::from_str` alone would take `+4600`, and `unhex` uppercase hex.
    let canonical_expiry = !expires.is_empty()
        && expires.len() <= 19
        && expires.bytes().all(|b| b.is_ascii_digit())
        && !(expires.len() > 1 && expires.starts_with('0'));
    let canonical_sig =
        sig.len() == 64 && sig.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical_expiry || !canonical_sig {
        return Err(TokenError::Malformed);
    }
    let expires: i64 = expires.parse().map_err(|_| TokenError::Malformed)?;
    let sig = unhex(sig).ok_or(TokenError::Malformed)?;
    // An unknown customer is checked against a fingerprint no customer has, so the work done
    // is the same; the MAC cannot match.
    let fingerprint = fingerprint_of(&customer).unwrap_or([0xff; 32]);
    mac_for(key, customer.as_str(), expires, &fingerprint)
        .verify_slice(&sig)
        .map_err(|_| TokenError::BadSignature)?;
    if now >= expires {
        return Err(TokenError::Expired);
    }
    Ok(Session { customer, expires })
}

/// Checks a password against a customer's argon2 hash; `None` (no customer, or no password
/// set) checks against a dummy hash so the time taken does not tell which.
pub fn verify_password(hash: Option<&PasswordHash>, password: &str) -> bool {
    use argon2::PasswordVerifier;
    // The cost is bounded at parse; checked again here so no hash reaches argon2 unbounded.
    if let Some(h) = hash
        && let Err(e) = h.params()
    {
        tracing::warn!(reason = %e, "a stored password hash is out of bounds: login refused");
        return false;
    }
    let phc = hash.map_or(DUMMY_HASH, PasswordHash::as_str);
    let Ok(parsed) = argon2::PasswordHash::new(phc) else {
        return false;
    };
    let ok = argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && hash.is_some()
}

/// Hashes a new customer's password as the fleet's hashes are made (argon2id, m=64 MiB, t=3,
/// p=4), with a salt from the operating system's random source.
pub fn hash_password(password: &str) -> Result<PasswordHash, std::io::Error> {
    use argon2::PasswordHasher;
    let salt_bytes: [u8; 16] = crate::config::random_bytes()?;
    let salt = argon2::password_hash::SaltString::encode_b64(&salt_bytes)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let params =
        argon2::Params::new(65536, 3, 4, None).map_err(|e| std::io::Error::other(e.to_string()))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let phc = argon
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .to_string();
    phc.parse().map_err(std::io::Error::other)
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Decodes lowercase or uppercase hex; `None` on any other character or an odd length.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let val = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(val(p[0])? << 4 | val(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new("test-secret-that-is-long-enough-0123456789")
    }

    fn c1() -> CustomerId {
        "c-0001".parse().unwrap()
    }

    #[test]
    fn a_token_round_trips_until_it_expires() {
        let fp = [7u8; 32];
        let (t, exp) = issue_token(&key(), &c1(), &fp, 1000, 3600);
        assert_eq!(exp, 4600);
        assert!(t.starts_with("v1.c-0001.4600."));
        let s = verify_token(&key(), &t, |_| Some(fp), 4599).unwrap();
        assert_eq!(s.customer, c1());
        assert_eq!(
            verify_token(&key(), &t, |_| Some(fp), 4600),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn forged_or_rebound_tokens_are_refused() {
        let fp = [7u8; 32];
        let (t, _) = issue_token(&key(), &c1(), &fp, 1000, 3600);
        // Another secret.
        let other = Secret::new("another-secret-another-secret-another");
        assert_eq!(
            verify_token(&other, &t, |_| Some(fp), 2000),
            Err(TokenError::BadSignature)
        );
        // The customer's password changed since.
        assert_eq!(
            verify_token(&key(), &t, |_| Some([8u8; 32]), 2000),
            Err(TokenError::BadSignature)
        );
        // The customer is gone.
        assert_eq!(
            verify_token(&key(), &t, |_| None, 2000),
            Err(TokenError::BadSignature)
        );
        // Someone swaps in another customer or stretches the expiry.
        let swapped = t.replace("c-0001", "c-0002");
        assert_eq!(
            verify_token(&key(), &swapped, |_| Some(fp), 2000),
            Err(TokenError::BadSignature)
        );
        let stretched = t.replace(".4600.", ".9999999999.");
        assert_eq!(
            verify_token(&key(), &stretched, |_| Some(fp), 2000),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "v1",
            "v1.c-0001.4600",
            "v2.c-0001.4600.00",
            "v1.C.1.00",
            "v1.c-0001.x.00",
        ] {
            assert_eq!(
                verify_token(&key(), bad, |_| Some(fp), 2000),
                Err(TokenError::Malformed),
                "{bad}"
            );
        }
        let odd = format!("{t}0");
        assert!(verify_token(&key(), &odd, |_| Some(fp), 2000).is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(unhex("000fFF"), Some(vec![0, 15, 255]));
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }

    #[test]
    fn fingerprints_differ_by_hash() {
        let a: PasswordHash = DUMMY_HASH.parse().unwrap();
        assert_ne!(password_fingerprint(Some(&a)), password_fingerprint(None));
    }

    #[test]
    fn a_token_with_an_uppercase_mac_or_a_plus_in_its_expiry_is_refused() {
        let fp = [7u8; 32];
        let (t, _) = issue_token(&key(), &c1(), &fp, 1000, 3600);
        assert!(verify_token(&key(), &t, |_| Some(fp), 2000).is_ok());
        let (head, mac) = t.rsplit_once('.').unwrap();
        let upper = format!("{head}.{}", mac.to_ascii_uppercase());
        assert_eq!(
            verify_token(&key(), &upper, |_| Some(fp), 2000),
            Err(TokenError::Malformed)
        );
        for expiry in ["+4600", "04600", " 4600", "4600 "] {
            let other = t.replace(".4600.", &format!(".{expiry}."));
            assert_eq!(
                verify_token(&key(), &other, |_| Some(fp), 2000),
                Err(TokenError::Malformed),
                "{expiry:?}"
            );
        }
        let short = format!("{head}.{}", &mac[..62]);
        assert_eq!(
            verify_token(&key(), &short, |_| Some(fp), 2000),
            Err(TokenError::Malformed)
        );
    }
}
