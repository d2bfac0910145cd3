//! The DNS publishing shell: reads each server's zone folder over SSH (pinned host keys, like
//! nodes), checks every built zone with `named-checkzone`, writes zone folders, pushes plans.
//!
//! What to write and which zones to reload is decided by `gitvps-dns`; this module carries it out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use dns::{Built, ListingError, Remote, ServerPlan};
use model::settings::DnsServer;

use crate::ssh::{Credentials, Session, SshError, SshTarget, Timeouts};

/// Why zones could not be checked, written or published.
#[derive(Debug, thiserror::Error)]
pub enum DnsPublishError {
    /// `named-checkzone` refused a zone: nothing was published.
    #[error("zone {zone} rejected by named-checkzone: {reason}")]
    Rejected {
        /// The zone.
        zone: String,
        /// What named-checkzone said.
        reason: String,
    },
    /// `named-checkzone` could not be run.
    #[error(
        "cannot run named-checkzone (Debian package bind9-utils): no zone is published unchecked"
    )]
    CheckTool(#[source] std::io::Error),
    /// A local file could not be read or written.
    #[error("{}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SSH to a server failed.
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// A command on a server failed.
    #[error("dns server {server}: {what} failed (exit {status}): {tail}")]
    Command {
        /// The server.
        server: String,
        /// What the command did.
        what: String,
        /// Its exit status, or `signal` / `none`.
        status: String,
        /// The end of its output.
        tail: String,
    },
    /// The server's listing of its zone folder is unreadable.
    #[error("dns server {server}")]
    Listing {
        /// The server.
        server: String,
        /// The cause.
        #[source]
        source: ListingError,
    },
}

/// The SSH target of a `[[dns.server]]`.
pub fn target_of(server: &DnsServer) -> SshTarget {
    SshTarget {
        node: format!("dns server {}", server.name()),
        host: server.address.to_string(),
        port: server.port,
        user: server.user.to_string(),
        host_key: server.host_key.to_string(),
    }
}

/// Checks every zone with `named-checkzone -i local` (integrity checks of in-zone names only:
/// no lookups), in a temporary folder. The first zone it rejects is the error.
pub fn check(built: &[Built]) -> Result<(), DnsPublishError> {
    let tmp = tempfile::tempdir().map_err(|source| DnsPublishError::File {
        path: std::env::temp_dir(),
        source,
    })?;
    for b in built {
        let path = tmp.path().join(dns::file_name(&b.name));
        std::fs::write(&path, &b.text).map_err(|source| DnsPublishError::File {
            path: path.clone(),
            source,
        })?;
        let out = Command::new("named-checkzone")
            .args(["-i", "local", "-k", "fail", &b.name])
            .arg(&path)
            .output()
            .map_err(DnsPublishError::CheckTool)?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
            let dir = format!("{}/", tmp.path().display());
            let reason: Vec<String> = text
                .lines()
                .map(|l| l.replace(&dir, ""))
                .filter(|l| !l.trim().is_empty())
                .collect();
            return Err(DnsPublishError::Rejected {
                zone: b.name.clone(),
                reason: reason.join("; "),
            });
        }
    }
    Ok(())
}

/// The zone texts of a local folder (`<zone>.zone` files), for serials against the last build.
pub fn read_dir(dir: &Path) -> Result<BTreeMap<String, String>, DnsPublishError> {
    let io = |source| DnsPublishError::File {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        r => r.map_err(io)?,
    };
    for e in entries {
        let path = e.map_err(io)?.path();
        let Some(zone) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".zone"))
            .filter(|z| !z.starts_with('.'))
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|source| DnsPublishError::File {
            path: path.clone(),
            source,
        })?;
        out.insert(zone.to_owned(), text);
    }
    Ok(out)
}

/// Writes the zones into `dir` (each to a temporary file, then renamed) and removes the
/// `*.zone` files of zones no longer built, so the folder holds exactly the zones.
pub fn write_dir(dir: &Path, built: &[Built]) -> Result<(), DnsPublishError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DnsPublishError::File { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for b in built {
        let file = dns::file_name(&b.name);
        let (tmp, path) = (dir.join(format!(".{file}.tmp")), dir.join(&file));
        std::fs::write(&tmp, &b.text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    for zone in read_dir(dir)?.keys() {
        if !built.iter().any(|b| &b.name == zone) {
            let path = dir.join(dns::file_name(zone));
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// What a server's zone folder holds, read with one command over one connection.
pub async fn read_server(
    server: &DnsServer,
    creds: &Credentials,
    timeouts: Timeouts,
) -> Result<Remote, DnsPublishError> {
    let sess = Session::connect(&target_of(server), creds, timeouts).await?;
    let out = sess.exec(&dns::read_command(server), None).await;
    sess.close().await;
    let out = out?;
    if !out.success() {
        return Err(failed(server, "listing the zone folder", &out));
    }
    Remote::parse(&out.stdout).map_err(|source| DnsPublishError::Listing {
        server: server.name(),
        source,
    })
}

fn failed(server: &DnsServer, what: &str, out: &crate::ssh::Output) -> DnsPublishError {
    DnsPublishError::Command {
        server: server.name(),
        what: what.to_owned(),
        status: match (out.status, &out.signal) {
            (Some(s), _) => s.to_string(),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "none".to_owned(),
        },
        tail: out.tail(5),
    }
}

/// Carries a plan out on its server, command by command over one connection; stops at the
/// first failure. Returns the commands run.
pub async fn push(
    server: &DnsServer,
    plan: &ServerPlan,
    built: &[Built],
    creds: &Credentials,
    timeouts: Timeouts,
) -> Result<usize, DnsPublishError> {
    let commands = plan.commands(server, built);
    if commands.is_empty() {
        return Ok(0);
    }
    let sess = Session::connect(&target_of(server), creds, timeouts).await?;
    let mut result = Ok(commands.len());
    for c in &commands {
        tracing::info!(server = %server.name(), "{}", c.what);
        match sess.exec(&c.line, c.stdin.as_deref()).await {
            Ok(out) if out.success() => {}
            Ok(out) => {
                result = Err(failed(server, &c.what, &out));
                break;
            }
            Err(e) => {
                result = Err(e.into());
                break;
            }
        }
    }
    sess.close().await;
    result
}
