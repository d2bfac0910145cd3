//! TOTP two-factor login: secrets sealed with AES-256-GCM under `GITVPS_TOTP_KEY`, checked with
//! `totp-rs`; recovery codes stored as hashes, each used once. Pure: keys, clocks, randomness in.
//!
//! `twofactor/<customer>.toml` holds `secret` (hex of nonce and sealed secret, bound to the
//! customer) and `recovery` (SHA-256 of each unused recovery code). Recovery codes carry 80
//! random bits, so a fast hash is enough; the secret never appears in clear in the repo.

use model::CustomerId;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use toml_edit::{Array, DocumentMut, value};

use crate::auth::{hex, unhex};
use crate::config::Secret;

/// Folder of the two-factor files.
pub const TWOFACTOR_DIR: &str = "twofactor";
/// Bytes of a new TOTP secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;
/// Recovery codes made when two-factor login is turned on.
pub const RECOVERY_CODES: usize = 10;
/// How long a setup (between `/api/2fa/setup` and `/api/2fa/enable`) stays valid.
pub const SETUP_TTL_SECS: i64 = 900;

/// The path of a customer's two-factor file.
pub fn twofactor_path(customer: &CustomerId) -> String {
    format!("{TWOFACTOR_DIR}/{customer}.toml")
}

/// Why sealed data cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The key is not 32 bytes.
    #[error("GITVPS_TOTP_KEY must be 64 hex digits (32 bytes)")]
    BadKey,
    /// Forged, for another customer or purpose, sealed under another key, or expired.
    #[error("the sealed data does not open")]
    Open,
    /// The random source failed.
    #[error("no random bytes")]
    Random,
}

fn key_of(key: &Secret) -> Result<LessSafeKey, SealError> {
    let text = std::str::from_utf8(key.expose()).map_err(|_| SealError::BadKey)?;
    let bytes = unhex(text.trim())
        .filter(|b| b.len() == 32)
        .ok_or(SealError::BadKey)?;
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey)?;
    Ok(LessSafeKey::new(unbound))
}

/// Checks that a key is usable (64 hex digits), for the configuration.
pub fn check_key(key: &Secret) -> Result<(), SealError> {
    key_of(key).map(drop)
}

fn aad(purpose: &str, customer: &CustomerId) -> Vec<u8> {
    format!("gitvps totp\0{purpose}\0{customer}").into_bytes()
}

/// Seals `plain` for `customer` and `purpose`: hex of a random nonce and the ciphertext.
pub fn seal(
    key: &Secret,
    purpose: &str,
    customer: &CustomerId,
    plain: &[u8],
    nonce: [u8; NONCE_LEN],
) -> Result<String, SealError> {
    let k = key_of(key)?;
    let mut buf = plain.to_vec();
    k.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad(purpose, customer)),
        &mut buf,
    )
    .map_err(|_| SealError::Open)?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(hex(&out))
}

/// Opens what [`seal`] made for the same customer and purpose.
pub fn open(
    key: &Secret,
    purpose: &str,
    customer: &CustomerId,
    sealed: &str,
) -> Result<Vec<u8>, SealError> {
    let k = key_of(key)?;
    let bytes = unhex(sealed).ok_or(SealError::Open)?;
    if bytes.len() < NONCE_LEN + 16 || bytes.len() > 1024 {
        return Err(SealError::Open);
    }
    let (n, ct) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = n.try_into().map_err(|_| SealError::Open)?;
    let mut buf = ct.to_vec();
    let plain = k
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(purpose, customer)),
            &mut buf,
        )
        .map_err(|_| SealError::Open)?;
    Ok(plain.to_vec())
}

/// A fresh random nonce.
pub fn nonce() -> Result<[u8; NONCE_LEN], SealError> {
    crate::config::random_bytes().map_err(|_| SealError::Random)
}

/// The setup blob handed to the customer between setup and enable: the secret and when it
/// was made, sealed for this customer.
pub fn seal_setup(
    key: &Secret,
    customer: &CustomerId,
    secret: &[u8],
    now: i64,
) -> Result<String, SealError> {
    let mut plain = secret.to_vec();
    plain.extend(now.to_be_bytes());
    seal(key, "setup", customer, &plain, nonce()?)
}

/// The secret of a setup blob, if it is this customer's and at most [`SETUP_TTL_SECS`] old.
pub fn open_setup(
    key: &Secret,
    customer: &CustomerId,
    blob: &str,
    now: i64,
) -> Result<Vec<u8>, SealError> {
    let plain = open(key, "setup", customer, blob)?;
    if plain.len() != SECRET_LEN + 8 {
        return Err(SealError::Open);
    }
    let (secret, at) = plain.split_at(SECRET_LEN);
    let at = i64::from_be_bytes(at.try_into().map_err(|_| SealError::Open)?);
    if now < at || now - at > SETUP_TTL_SECS {
        return Err(SealError::Open);
    }
    Ok(secret.to_vec())
}

fn totp(secret: &[u8]) -> Option<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

/// Whether `code` (6 digits) is the current TOTP of `secret` at `now`, one step either side.
pub fn check_code(secret: &[u8], code: &str, now: i64) -> bool {
    code_step(secret, code, now).is_some()
}

/// The time step (`unix time / 30`) whose code `code` is, if it is one of the steps around
/// `now`: what [`UsedSteps`] remembers so a code is accepted once.
pub fn code_step(secret: &[u8], code: &str, now: i64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now).ok()?;
    totp(secret)?.check(code, now)
}

/// Customers remembered by [`UsedSteps`] before old entries are dropped.
const USED_STEPS_MAX: usize = 10_000;

/// The last time step each customer's code was accepted at, so a code (seen over a shoulder,
/// or replayed from a log-in form) is accepted once (RFC 6238, 5.2). Per process: on Lambda a
/// code could be replayed once more on another instance within its 90-second window.
#[derive(Debug, Default)]
pub struct UsedSteps {
    last: std::sync::Mutex<std::collections::HashMap<CustomerId, u64>>,
}

impl UsedSteps {
    /// Accepts `step` for `customer` when it is later than the last accepted one, and
    /// remembers it; false for a code already used (or an older one).
    pub fn spend(&self, customer: &CustomerId, step: u64) -> bool {
        let mut last = match self.last.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.get(customer).is_some_and(|&l| step <= l) {
            return false;
        }
        if last.len() >= USED_STEPS_MAX {
            // Steps more than two behind can no longer be replayed (the window is one step
            // either side): forgetting them loses nothing.
            last.retain(|_, l| l.saturating_add(2) >= step);
        }
        last.insert(customer.clone(), step);
        true
    }
}

/// The code of `secret` at `now` (for tests and the setup check).
pub fn code_at(secret: &[u8], now: i64) -> Option<String> {
    let t = totp(secret)?;
    Some(t.generate(u64::try_from(now).ok()?).to_string())
}

/// The base32 form an authenticator app takes.
pub fn base32(secret: &[u8]) -> String {
    totp_rs::Secret::from(secret.to_vec()).to_base32()
}

/// The `otpauth://` URL of a secret, for a QR code.
pub fn otpauth_url(issuer: &str, customer: &CustomerId, secret: &[u8]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    let issuer = enc(issuer);
    format!(
        "otpauth://totp/{issuer}:{customer}?secret={}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
        base32(secret)
    )
}

/// The QR code of an `otpauth://` URL as an SVG image (black on white, with its quiet zone),
/// for the panel to show; `None` if the URL is too long for a QR code.
pub fn qr_svg(url: &str) -> Option<String> {
    use qrcode::render::svg;
    let code =
        qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M).ok()?;
    Some(
        code.render::<svg::Color<'_>>()
            .min_dimensions(200, 200)
            .dark_color(svg::Color("#000000"))
            .light_color(svg::Color("#ffffff"))
            .quiet_zone(true)
            .build(),
    )
}

/// A recovery code as shown: 16 hex digits in groups of four.
pub fn recovery_code(bytes: [u8; 8]) -> String {
    let h = hex(&bytes);
    format!("{}-{}-{}-{}", &h[0..4], &h[4..8], &h[8..12], &h[12..16])
}

/// The stored hash of a recovery code (dashes, spaces and case ignored).
pub fn recovery_hash(customer: &CustomerId, code: &str) -> String {
    let norm: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut h = Sha256::new();
    h.update(b"gitvps recovery code\0");
    h.update(customer.as_str().as_bytes());
    h.update(b"\0");
    h.update(norm.as_bytes());
    hex(&h.finalize())
}

/// A customer's two-factor file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoFactor {
    /// The sealed secret (purpose `stored`).
    pub secret: String,
    /// Hashes of the unused recovery codes.
    pub recovery: Vec<String>,
}

impl TwoFactor {
    /// Reads the file; `None` when it is not one.
    pub fn parse(text: &str) -> Option<TwoFactor> {
        let d: DocumentMut = text.parse().ok()?;
        let secret = d.get("secret")?.as_str()?.to_owned();
        let recovery = d
            .get("recovery")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some(TwoFactor { secret, recovery })
    }

    /// The file's text.
    pub fn render(&self, customer: &CustomerId) -> String {
        let mut d = DocumentMut::new();
        d["secret"] = value(self.secret.as_str());
        let mut a = Array::new();
        for r in &self.recovery {
            a.push(r.as_str());
        }
        d["recovery"] = value(a);
        format!(
            "# Two-factor login of {customer}, written by gitvps-hooks. The secret is sealed with\n# GITVPS_TOTP_KEY; recovery codes are stored as hashes. Delete the file to turn it off.\n{d}"
        )
    }
}

/// What a second factor given at login matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    /// A current TOTP code, of this time step (to spend with [`UsedSteps`]).
    Code(u64),
    /// An unused recovery code (its hash, to remove).
    Recovery(String),
}

/// Checks a second factor: a 6-digit code against the sealed secret, or a recovery code.
pub fn check_factor(
    key: &Secret,
    customer: &CustomerId,
    tf: &TwoFactor,
    given: &str,
    now: i64,
) -> Result<Option<Factor>, SealError> {
    let given = given.trim();
    if given.len() == 6 {
        let secret = open(key, "stored", customer, &tf.secret)?;
        return Ok(code_step(&secret, given, now).map(Factor::Code));
    }
    let h = recovery_hash(customer, given);
    let found = tf
        .recovery
        .iter()
        .fold(false, |found, r| found | ct_eq(r.as_bytes(), h.as_bytes()));
    Ok(found.then_some(Factor::Recovery(h)))
}

/// Compares without an early exit (the lengths are public: hashes are all 64 hex digits).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
    }

    fn c1() -> CustomerId {
        "c-0001".parse().unwrap()
    }

    #[test]
    fn sealed_secrets_open_only_for_their_customer_purpose_and_key() {
        let s = seal(&key(), "stored", &c1(), b"secret-bytes", [1; 12]).unwrap();
        assert!(!s.contains(&hex(b"secret-bytes")));
        assert_eq!(open(&key(), "stored", &c1(), &s).unwrap(), b"secret-bytes");
        let c2: CustomerId = "c-0002".parse().unwrap();
        assert_eq!(open(&key(), "stored", &c2, &s), Err(SealError::Open));
        assert_eq!(open(&key(), "setup", &c1(), &s), Err(SealError::Open));
        let other = Secret::new("ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
        assert_eq!(open(&other, "stored", &c1(), &s), Err(SealError::Open));
        assert_eq!(check_key(&Secret::new("short")), Err(SealError::BadKey));
    }

    #[test]
    fn a_setup_expires_and_codes_are_checked_one_step_either_side() {
        let secret = [7u8; SECRET_LEN];
        let blob = seal_setup(&key(), &c1(), &secret, 1_000_000).unwrap();
        assert_eq!(open_setup(&key(), &c1(), &blob, 1_000_100).unwrap(), secret);
        assert!(open_setup(&key(), &c1(), &blob, 1_000_000 + SETUP_TTL_SECS + 1).is_err());
        let now = 1_700_000_000;
        let code = code_at(&secret, now).unwrap();
        assert!(check_code(&secret, &code, now));
        assert!(check_code(&secret, &code, now + 30));
        assert!(!check_code(&secret, &code, now + 120));
        assert!(!check_code(&secret, "12345", now));
        assert!(!check_code(&secret, "abcdef", now));
    }

    #[test]
    fn an_otpauth_url_makes_an_svg_qr_code() {
        let url = otpauth_url("gitvps demo", &c1(), &[7u8; SECRET_LEN]);
        let svg = qr_svg(&url).unwrap();
        assert!(svg.contains("<svg") && svg.contains("#000000"), "{svg}");
        assert!(!svg.contains("<script"));
        assert!(
            qr_svg(&"x".repeat(4000)).is_none(),
            "too long for a QR code"
        );
    }

    #[test]
    fn recovery_codes_are_stored_hashed_and_match_once_written_loosely() {
        let code = recovery_code([0xab; 8]);
        assert_eq!(code, "abab-abab-abab-abab");
        let tf = TwoFactor {
            secret: seal(&key(), "stored", &c1(), &[7u8; SECRET_LEN], [2; 12]).unwrap(),
            recovery: vec![recovery_hash(&c1(), &code)],
        };
        let text = tf.render(&c1());
        assert!(!text.contains(&code));
        let back = TwoFactor::parse(&text).unwrap();
        assert_eq!(back, tf);
        let f = check_factor(&key(), &c1(), &back, "ABAB ABAB-abab-abab", 0).unwrap();
        assert!(matches!(f, Some(Factor::Recovery(_))));
        assert_eq!(
            check_factor(&key(), &c1(), &back, "0000-0000", 0).unwrap(),
            None
        );
        let code = code_at(&[7u8; SECRET_LEN], 1_700_000_000).unwrap();
        assert_eq!(
            check_factor(&key(), &c1(), &back, &code, 1_700_000_000).unwrap(),
            Some(Factor::Code(1_700_000_000 / 30))
        );
    }

    #[test]
    fn a_code_is_accepted_once_and_never_an_older_one() {
        let used = UsedSteps::default();
        let c2: CustomerId = "c-0002".parse().unwrap();
        assert!(used.spend(&c1(), 100));
        assert!(!used.spend(&c1(), 100), "the same code again");
        assert!(
            !used.spend(&c1(), 99),
            "the previous step's code, still in the window"
        );
        assert!(used.spend(&c2, 100), "another customer's code is its own");
        assert!(used.spend(&c1(), 101));
    }
}
