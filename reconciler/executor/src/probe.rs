//! The service checks' probes: a TCP connection and the service's greeting (SSH, SMTP, POP3,
//! IMAP, FTP), an HTTP(S) status line, or the system's `ping`, each under its timeout.
//!
//! What an answer means is `monitor::checks`; here are only the sockets. HTTPS checks that TLS
//! and HTTP answer, not whether the certificate is valid (a check is about the service being
//! up; the address is an IP, which certificates rarely name).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use model::values::Check;
use monitor::{Outcome, Target};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most read of a greeting or a status line.
const LINE_MAX: usize = 512;
/// Probes in flight at once.
const AT_ONCE: usize = 64;

/// Runs every probe, up to `AT_ONCE` at a time; the answers come back in `targets`' order.
pub async fn probe_all(targets: &[Target]) -> Vec<Outcome> {
    let gate = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in targets.iter().cloned().enumerate() {
        let gate = gate.clone();
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, probe(&t).await)
        });
    }
    let mut out: Vec<Outcome> = targets
        .iter()
        .map(|_| Outcome::Unavailable("the probe did not run".into()))
        .collect();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok((i, o)) => {
                if let Some(slot) = out.get_mut(i) {
                    *slot = o;
                }
            }
            Err(e) => tracing::error!("a probe task failed: {e}"),
        }
    }
    out
}

/// One probe under its timeout.
pub async fn probe(t: &Target) -> Outcome {
    let secs = u64::from(t.timeout_secs.max(1));
    let limit = Duration::from_secs(secs);
    if t.service == Check::Ping {
        return ping(t.addr, secs).await;
    }
    let Some(port) = t.port else {
        return Outcome::Unavailable(format!("a {} check needs a port", t.service));
    };
    match tokio::time::timeout(limit, tcp(t.service, t.addr, port)).await {
        Ok(o) => o,
        Err(_) => Outcome::Down(format!("no answer within {secs} s")),
    }
}

async fn tcp(service: Check, addr: IpAddr, port: u16) -> Outcome {
    let mut s = match TcpStream::connect((addr, port)).await {
        Ok(s) => s,
        Err(e) => return Outcome::Down(format!("cannot connect: {e}")),
    };
    match service {
        Check::Ssh => greeting(&mut s, "an SSH banner", &["SSH-"], None).await,
        Check::Smtp => greeting(&mut s, "an SMTP greeting", &["220"], Some("QUIT\r\n")).await,
        Check::Ftp => greeting(&mut s, "an FTP greeting", &["220"], Some("QUIT\r\n")).await,
        Check::Pop3 => greeting(&mut s, "a POP3 greeting", &["+OK"], Some("QUIT\r\n")).await,
        Check::Imap => {
            greeting(
                &mut s,
                "an IMAP greeting",
                &["* OK", "* PREAUTH"],
                Some("a1 LOGOUT\r\n"),
            )
            .await
        }
        Check::Http => http(&mut s, addr, port, 80).await,
        Check::Https => match tls(s, addr).await {
            Ok(mut t) => http(&mut t, addr, port, 443).await,
            Err(why) => Outcome::Down(why),
        },
        Check::Ping => Outcome::Unavailable("ping is not a TCP check".into()),
    }
}

/// Reads the first line the server sends (at most [`LINE_MAX`] bytes).
async fn first_line<S: AsyncRead + Unpin>(s: &mut S) -> Result<String, String> {
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 128];
    while !buf.contains(&b'\n') && buf.len() < LINE_MAX {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading its answer failed: {e}")),
        }
    }
    if buf.is_empty() {
        return Err("the connection closed without a word".into());
    }
    let end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).trim_end().to_owned())
}

async fn greeting<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    what: &str,
    prefixes: &[&str],
    bye: Option<&str>,
) -> Outcome {
    let line = match first_line(s).await {
        Ok(l) => l,
        Err(why) => return Outcome::Down(why),
    };
    if let Some(bye) = bye {
        // A polite end of the session; the answer was already read.
        let _ = s.write_all(bye.as_bytes()).await;
    }
    if prefixes.iter().any(|p| line.starts_with(p)) {
        Outcome::Up(line)
    } else {
        Outcome::Down(format!("expected {what}, got `{line}`"))
    }
}

/// `GET /` and the status line: a status below 500 means the server answers.
async fn http<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    addr: IpAddr,
    port: u16,
    default_port: u16,
) -> Outcome {
    let host = match (addr, port == default_port) {
        (IpAddr::V6(a), true) => format!("[{a}]"),
        (IpAddr::V6(a), false) => format!("[{a}]:{port}"),
        (a, true) => a.to_string(),
        (a, false) => format!("{a}:{port}"),
    };
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gitvps-monitor\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return Outcome::Down(format!("sending the request failed: {e}"));
    }
    let line = match first_line(s).await {
        Ok(l) => l,
        Err(why) => return Outcome::Down(why),
    };
    let mut words = line.split_whitespace();
    let status = match (words.next(), words.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => code.parse::<u16>().ok(),
        _ => None,
    };
    match status {
        Some(code) if (100..500).contains(&code) => Outcome::Up(line),
        Some(_) => Outcome::Down(format!("the server answers with an error: `{line}`")),
        None => Outcome::Down(format!("expected an HTTP status line, got `{line}`")),
    }
}

/// A TLS session over `s`, whatever certificate the server shows.
async fn tls(
    s: TcpStream,
    addr: IpAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS cannot be set up: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.into());
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, s)
        .await
        .map_err(|e| format!("no TLS session: {e}"))
}

/// Accepts any certificate, still checking the handshake's signatures: the check asks whether
/// the service answers, not whether its certificate names an IP address.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One ICMP echo through the system's `ping` (iputils: `-n -c 1 -W secs`). Without a `ping`
/// program, or without the right to send ICMP, the check is unavailable, not down.
async fn ping(addr: IpAddr, secs: u64) -> Outcome {
    let mut cmd = tokio::process::Command::new("ping");
    if addr.is_ipv6() {
        cmd.arg("-6");
    }
    cmd.args(["-n", "-q", "-c", "1", "-W"])
        .arg(secs.to_string())
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let run = tokio::time::timeout(Duration::from_secs(secs + 2), cmd.output()).await;
    let out = match run {
        Err(_) => return Outcome::Down(format!("no echo reply within {secs} s")),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Unavailable("no `ping` program on the collector".into());
        }
        Ok(Err(e)) => return Outcome::Unavailable(format!("`ping` cannot run: {e}")),
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => Outcome::Up("echo reply".into()),
        Some(1) => Outcome::Down(format!("no echo reply within {secs} s")),
        _ if stderr.contains("not permitted") || stderr.contains("ermission") => {
            Outcome::Unavailable(format!("`ping` may not send ICMP here: {}", stderr.trim()))
        }
        _ => Outcome::Down(format!("ping: {}", stderr.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn target(service: Check, port: u16) -> Target {
        Target {
            service,
            addr: "127.0.0.1".parse().unwrap(),
            port: Some(port),
            timeout_secs: 2,
        }
    }

    /// A listener that says `greeting` to each connection, or nothing when empty.
    async fn server(greeting: &'static str) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    if greeting.is_empty() {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                    } else {
                        let _ = s.write_all(greeting.as_bytes()).await;
                        let mut sink = [0u8; 256];
                        let _ = s.read(&mut sink).await;
                    }
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn greetings_are_told_apart() {
        let smtp = server("220 mx.example.net ESMTP\r\n").await;
        assert!(
            matches!(probe(&target(Check::Smtp, smtp)).await, Outcome::Up(l) if l == "220 mx.example.net ESMTP")
        );
        match probe(&target(Check::Ssh, smtp)).await {
            Outcome::Down(why) => assert!(why.contains("expected an SSH banner"), "{why}"),
            o => panic!("{o:?}"),
        }
        let http = server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        match probe(&target(Check::Http, http)).await {
            Outcome::Down(why) => assert!(why.contains("503"), "{why}"),
            o => panic!("{o:?}"),
        }
        let silent = server("").await;
        let mut t = target(Check::Imap, silent);
        t.timeout_secs = 1;
        assert_eq!(
            probe(&t).await,
            Outcome::Down("no answer within 1 s".into())
        );
    }
}
