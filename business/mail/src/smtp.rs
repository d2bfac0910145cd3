//! Sending a finished message over SMTP: the [`Transport`] trait deliver uses, and [`Smtp`], its
//! implementation over lettre's blocking client (plain, STARTTLS or implicit TLS, with AUTH).
//!
//! [`SendError`] tells a server that cannot be reached or refuses the session (stop, retry on
//! the next run) from a refusal of one message (move it aside, go on). Errors name the server
//! as `host:port` only: the URL carries the password and is never printed.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use model::values::Email;

/// The environment variable with the SMTP URL.
pub const URL_ENV: &str = "GITVPS_SMTP_URL";
/// The environment variable with the path of an extra root CA (PEM) for the SMTP server.
pub const CA_ENV: &str = "GITVPS_SMTP_CA";
/// Seconds a connection or one SMTP reply may take, unless the URL says `?timeout=`.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// Something that hands a finished message to a mail server.
pub trait Transport {
    /// Sends `raw` (a complete RFC 5322 message) from `envelope_from` to `to`. `Ok` means the
    /// server accepted responsibility for it.
    fn send(&self, envelope_from: &Email, to: &[Email], raw: &[u8]) -> Result<(), SendError>;
}

/// Why a message was not sent. Displays name the server as `host:port`, never the URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// `GITVPS_SMTP_URL` is not set.
    #[error("{URL_ENV} is not set: outgoing mail is not configured")]
    NotConfigured,
    /// The URL does not say how to reach a server.
    #[error("{URL_ENV}: {0}")]
    Url(String),
    /// The extra root CA cannot be used.
    #[error("SMTP root CA {}: {reason}", path.display())]
    Ca {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No SMTP session: connection refused or lost, timeout, TLS failure. Retry later.
    #[error("SMTP server {server} cannot be reached: {reason}")]
    Unreachable {
        /// `host:port`.
        server: String,
        /// What failed.
        reason: String,
    },
    /// The server answered but will not take mail from us now: a refusing greeting, failed
    /// STARTTLS or AUTH, a refused sender. Retry after fixing the cause.
    #[error("SMTP server {server} refused the session: {reason}")]
    Refused {
        /// `host:port`.
        server: String,
        /// The server's reply.
        reason: String,
    },
    /// The server refused this message or its recipient for good (a 5xx reply to RCPT or DATA).
    #[error("SMTP server {server} rejected the message: {reason}")]
    Rejected {
        /// `host:port`.
        server: String,
        /// The server's reply.
        reason: String,
    },
    /// The server refused this message for now (a 4xx reply to RCPT or DATA).
    #[error("SMTP server {server} deferred the message: {reason}")]
    Deferred {
        /// `host:port`.
        server: String,
        /// The server's reply.
        reason: String,
    },
}

impl SendError {
    /// Whether sending should stop: the server or the configuration is at fault, not the
    /// message, so the next message would fail the same way.
    pub fn stops_delivery(&self) -> bool {
        !matches!(
            self,
            SendError::Rejected { .. } | SendError::Deferred { .. }
        )
    }
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://`: no TLS (a relay on the loopback).
    Plain,
    /// `smtp://...?tls=required`: STARTTLS, which must succeed.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

/// An SMTP server to send through, from a URL: `smtp://host:port` (plain), `smtp://host:port?tls=required`
/// (STARTTLS), `smtps://host:port` (implicit TLS); `user:password@` for AUTH (PLAIN or LOGIN),
/// percent-encoded; `?timeout=SECS`; a path (`smtp://host/ehlo.name`) sets the EHLO name. One
/// connection is kept open between messages and closed when dropped.
pub struct Smtp {
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    conn: Mutex<Option<SmtpConnection>>,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("server", &self.server())
            .field("security", &self.security)
            .field("auth", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Smtp {
    /// The server from `GITVPS_SMTP_URL`, trusting also the root CA at `GITVPS_SMTP_CA` if set.
    pub fn from_env() -> Result<Smtp, SendError> {
        let (url, ca) = from_env()?;
        Smtp::from_url(&url, ca.as_deref())
    }

    /// The server a URL names (see [`Smtp`]); `extra_root_ca` is a PEM file of root certificates
    /// trusted besides the built-in ones (a private CA, a test's self-signed one). Nothing is
    /// connected yet.
    pub fn from_url(url: &str, extra_root_ca: Option<&Path>) -> Result<Smtp, SendError> {
        // url's errors never quote the input, so the password stays out of them.
        let parsed = url::Url::parse(url).map_err(|e| SendError::Url(e.to_string()))?;
        let mut security = match parsed.scheme() {
            "smtp" => Security::Plain,
            "smtps" => Security::Implicit,
            other => {
                return Err(SendError::Url(format!(
                    "unknown scheme `{}`: use smtp:// or smtps://",
                    other.escape_debug()
                )));
            }
        };
        let host = match parsed.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(SendError::Url("no server host".into())),
        };
        let mut timeout = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
        for (key, value) in parsed.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "required") if security == Security::Plain => security = Security::StartTls,
                ("tls", _) => {
                    return Err(SendError::Url(
                        "`tls` takes `required`, with smtp:// (smtps:// is TLS already)".into(),
                    ));
                }
                ("timeout", secs) => match secs.parse::<u64>() {
                    Ok(s) if s > 0 => timeout = Duration::from_secs(s),
                    _ => return Err(SendError::Url("`timeout` takes seconds (> 0)".into())),
                },
                (other, _) => {
                    return Err(SendError::Url(format!(
                        "unknown parameter `{}` (known: tls, timeout)",
                        other.escape_debug()
                    )));
                }
            }
        }
        let port = parsed.port().unwrap_or(match security {
            Security::Plain => 25,
            Security::StartTls => 587,
            Security::Implicit => 465,
        });
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => None,
            ("", Some(_)) => return Err(SendError::Url("a password without a user".into())),
            (_, None) => return Err(SendError::Url("a user without a password".into())),
            (user, Some(password)) => Some(Credentials::new(decode(user)?, decode(password)?)),
        };
        let hello = match parsed.path().trim_matches('/') {
            "" => ClientId::default(),
            name => ClientId::Domain(name.to_owned()),
        };
        let tls = match security {
            Security::Plain => None,
            Security::StartTls | Security::Implicit => Some(tls_parameters(&host, extra_root_ca)?),
        };
        let smtp = Smtp {
            host,
            port,
            security,
            tls,
            credentials,
            timeout,
            hello,
            conn: Mutex::new(None),
        };
        if smtp.credentials.is_some() && smtp.security == Security::Plain && !smtp.is_loopback() {
            tracing::warn!(
                server = %smtp.server(),
                "the SMTP password goes over an unencrypted connection: use smtps:// or ?tls=required"
            );
        }
        Ok(smtp)
    }

    /// `host:port` (`[v6]:port`): how errors and logs name the server.
    pub fn server(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}", self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Opens a session: connect (TLS first for smtps), EHLO, STARTTLS, AUTH.
    fn connect(&self) -> Result<SmtpConnection, SendError> {
        let wrapper = match self.security {
            Security::Implicit => self.tls.as_ref(),
            Security::Plain | Security::StartTls => None,
        };
        let mut conn = SmtpConnection::connect(
            (self.host.as_str(), self.port),
            Some(self.timeout),
            &self.hello,
            wrapper,
            None,
        )
        .map_err(|e| self.session_error(&e))?;
        if let (Security::StartTls, Some(tls)) = (self.security, &self.tls) {
            conn.starttls(tls, &self.hello)
                .map_err(|e| self.session_error(&e))?;
        }
        if let Some(credentials) = &self.credentials
            && let Err(e) = conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
        {
            conn.abort();
            return Err(self.session_error(&e));
        }
        tracing::debug!(server = %self.server(), security = ?self.security, "SMTP session open");
        Ok(conn)
    }

    /// A failure while opening the session: a reply means refused, anything else unreachable.
    fn session_error(&self, e: &SmtpError) -> SendError {
        let server = self.server();
        let reason = e.to_string();
        if e.is_permanent() || e.is_transient() || e.is_client() {
            SendError::Refused { server, reason }
        } else {
            SendError::Unreachable { server, reason }
        }
    }

    /// One transaction on an open session.
    fn transaction(
        &self,
        conn: &mut SmtpConnection,
        from: Address,
        to: Vec<Address>,
        raw: &[u8],
    ) -> Result<(), SendError> {
        let server = || self.server();
        let mut options = Vec::new();
        if !raw.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(SendError::Rejected {
                    server: server(),
                    reason: "the message is not 7-bit and the server lacks 8BITMIME".into(),
                });
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        // The sender is the same for every message: a refusal there is no message's fault.
        conn.command(Mail::new(Some(from), options))
            .map_err(|e| match self.session_error(&e) {
                SendError::Refused { server, reason } if e.is_transient() => {
                    SendError::Unreachable { server, reason }
                }
                other => other,
            })?;
        let per_message = |e: SmtpError| {
            let reason = e.to_string();
            if e.is_permanent() {
                SendError::Rejected {
                    server: server(),
                    reason,
                }
            } else if e.is_transient() {
                SendError::Deferred {
                    server: server(),
                    reason,
                }
            } else {
                SendError::Unreachable {
                    server: server(),
                    reason,
                }
            }
        };
        for rcpt in to {
            conn.command(Rcpt::new(rcpt, Vec::new()))
                .map_err(per_message)?;
        }
        conn.command(Data).map_err(per_message)?;
        conn.message(raw).map_err(per_message)?;
        Ok(())
    }
}

impl Transport for Smtp {
    fn send(&self, envelope_from: &Email, to: &[Email], raw: &[u8]) -> Result<(), SendError> {
        let bad_address = |e: &Email| SendError::Rejected {
            server: self.server(),
            reason: format!("`{e}` is not an address SMTP takes"),
        };
        let from: Address = envelope_from
            .as_str()
            .parse()
            .map_err(|_| bad_address(envelope_from))?;
        let rcpts = to
            .iter()
            .map(|e| e.as_str().parse::<Address>().map_err(|_| bad_address(e)))
            .collect::<Result<Vec<_>, _>>()?;
        if rcpts.is_empty() {
            return Err(SendError::Rejected {
                server: self.server(),
                reason: "no recipient".into(),
            });
        }

        let mut slot = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let reused = slot.take().and_then(|mut open| {
            if !open.has_broken() && open.test_connected() {
                Some(open)
            } else {
                open.abort();
                None
            }
        });
        let mut conn = match reused {
            Some(open) => open,
            None => self.connect()?,
        };
        match self.transaction(&mut conn, from, rcpts, raw) {
            Ok(()) => {
                *slot = Some(conn);
                Ok(())
            }
            Err(e) => {
                // A half-done transaction: start the next message on a fresh session.
                conn.abort();
                Err(e)
            }
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let slot = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        if let Some(mut conn) = slot.take() {
            let _ = conn.quit();
            conn.abort();
        }
    }
}

/// `GITVPS_SMTP_URL` (trimmed; unset or blank: not configured) and `GITVPS_SMTP_CA`.
pub(crate) fn from_env() -> Result<(String, Option<PathBuf>), SendError> {
    let url = std::env::var(URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or(SendError::NotConfigured)?;
    let ca = std::env::var_os(CA_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    Ok((url.trim().to_owned(), ca))
}

fn decode(part: &str) -> Result<String, SendError> {
    percent_encoding::percent_decode_str(part)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| SendError::Url("the user or password is not UTF-8 once decoded".into()))
}

/// TLS to `host`, trusting the built-in roots and the certificates of `extra_root_ca`.
fn tls_parameters(host: &str, extra_root_ca: Option<&Path>) -> Result<TlsParameters, SendError> {
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(path) = extra_root_ca {
        let ca_err = |reason: String| SendError::Ca {
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        if !pem
            .windows(b"-----BEGIN CERTIFICATE-----".len())
            .any(|w| w == b"-----BEGIN CERTIFICATE-----")
        {
            return Err(ca_err("no PEM certificate in it".into()));
        }
        let cert = Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build_rustls()
        .map_err(|e| SendError::Url(format!("TLS setup: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s = Smtp::from_url("smtp://127.0.0.1:2525", None).unwrap();
        assert_eq!(
            (s.server(), s.security),
            ("127.0.0.1:2525".into(), Security::Plain)
        );
        assert!(s.credentials.is_none());

        let s = Smtp::from_url("smtp://u%40x:p%3Ass@mail.example.net?tls=required", None).unwrap();
        assert_eq!(
            (s.server(), s.security),
            ("mail.example.net:587".into(), Security::StartTls)
        );
        assert_eq!(
            s.credentials,
            Some(Credentials::new("u@x".into(), "p:ss".into()))
        );

        let s = Smtp::from_url("smtps://u:p@[::1]/relay.example.net?timeout=5", None).unwrap();
        assert_eq!(
            (s.server(), s.security),
            ("[::1]:465".into(), Security::Implicit)
        );
        assert_eq!(s.timeout, Duration::from_secs(5));
        assert_eq!(s.hello, ClientId::Domain("relay.example.net".into()));
    }

    #[test]
    fn bad_urls_never_show_the_password() {
        for (url, want) in [
            ("smtpx://u:hunter2@h", "unknown scheme `smtpx`"),
            ("smtp://u:hunter2@h?tls=maybe", "`tls` takes"),
            ("smtps://u:hunter2@h?tls=required", "`tls` takes"),
            ("smtp://u:hunter2@h?timeout=0", "`timeout`"),
            ("smtp://u:hunter2@h?tsl=required", "unknown parameter `tsl`"),
            ("smtp://u@h", "a user without a password"),
            ("smtp://u:hunter2@h:99999", "invalid port"),
            ("hunter2", "relative URL"),
        ] {
            let err = Smtp::from_url(url, None).unwrap_err().to_string();
            assert!(err.contains(want), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
        let s = Smtp::from_url("smtps://u:hunter2@h", None).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_root_ca_must_be_pem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = Smtp::from_url("smtps://h", Some(&path)).unwrap_err();
        assert!(matches!(err, SendError::Ca { .. }), "{err}");
        let err = Smtp::from_url("smtps://h", Some(&dir.path().join("missing.pem"))).unwrap_err();
        assert!(err.to_string().starts_with("SMTP root CA "), "{err}");
    }

    #[test]
    fn a_closed_port_is_unreachable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = Smtp::from_url(&format!("smtp://u:hunter2@127.0.0.1:{port}"), None).unwrap();
        let from: Email = "a@example.net".parse().unwrap();
        let err = s
            .send(&from, std::slice::from_ref(&from), b"x")
            .unwrap_err();
        assert!(matches!(err, SendError::Unreachable { .. }), "{err}");
        assert!(err.stops_delivery());
        let text = err.to_string();
        assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
