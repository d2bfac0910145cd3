//! SSH to a node with russh: the pinned host key is checked (never trust on first use),
//! one connection per node carries every command, each with a timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::ChannelMsg;
use russh::cipher;
use russh::client::{self, AuthResult, Handle};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};

/// The ciphers offered to a node, in order: AES-256-GCM first (russh's default puts
/// ChaCha20-Poly1305 first). With the CPU's AES instructions, which x86-64 and ARMv8 servers
/// have, it takes about half the CPU on both ends (ring's here, the node's OpenSSH's there): a
/// move's disk crosses two connections, and a 1 GiB move relayed through two OpenSSH
/// connections took 6.3-6.5 s with it against 8.2-8.4 s with ChaCha20-Poly1305
/// (docs/reconciler.md, "Measuring").
const CIPHERS: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

/// Largest output accepted from one command; a node answering more is broken.
const MAX_OUTPUT: usize = 64 << 20;

/// Why talking to a node failed. Each variant names the node.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// No TCP connection could be made.
    #[error("{node}: cannot connect to {addr}")]
    Connect {
        /// The node.
        node: String,
        /// Address and port.
        addr: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node did not answer in time.
    #[error("{node}: {what} timed out after {secs} s")]
    Timeout {
        /// The node.
        node: String,
        /// What was waited for.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// The node presented a host key other than the pinned one.
    #[error(
        "{node}: host key mismatch at {addr}: the node presented {presented}, the inventory pins {pinned}; refusing to connect (if the node was reinstalled, update host_key in its file)"
    )]
    HostKeyMismatch {
        /// The node.
        node: String,
        /// Address and port.
        addr: String,
        /// Fingerprint of what the node sent.
        presented: String,
        /// Fingerprint of the pinned key.
        pinned: String,
    },
    /// The pinned key in the node file cannot be used.
    #[error("{node}: the pinned host_key cannot be read")]
    PinnedKey {
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: russh::keys::Error,
    },
    /// The node refused our key.
    #[error("{node}: the node refused the login of `{user}` with the configured key")]
    AuthRefused {
        /// The node.
        node: String,
        /// The user.
        user: String,
    },
    /// The private key could not be loaded.
    #[error("cannot load the SSH private key {path} (GITVPS_SSH_KEY)")]
    Key {
        /// Its path.
        path: String,
        /// The cause.
        #[source]
        source: russh::keys::Error,
    },
    /// Neither GITVPS_SSH_KEY nor an agent is available.
    #[error(
        "no SSH credentials: set GITVPS_SSH_KEY to the path of a private key, or run an ssh-agent (SSH_AUTH_SOCK)"
    )]
    NoCredentials,
    /// The agent failed.
    #[error("the ssh-agent failed")]
    Agent(#[source] russh::keys::Error),
    /// The SSH protocol failed (connection lost, channel refused, ...).
    #[error("{node}: SSH session failed")]
    Protocol {
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: russh::Error,
    },
    /// A command printed more than the limit.
    #[error("{node}: the command printed more than {} MiB", MAX_OUTPUT >> 20)]
    TooMuchOutput {
        /// The node.
        node: String,
    },
}

/// How the reconciler logs in.
#[derive(Clone)]
pub enum Credentials {
    /// A private key file (from `GITVPS_SSH_KEY`).
    Key(Arc<PrivateKey>),
    /// Keys of the running ssh-agent (`SSH_AUTH_SOCK`).
    Agent,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Key(k) => write!(
                f,
                "Credentials::Key({})",
                k.public_key().fingerprint(HashAlg::Sha256)
            ),
            Credentials::Agent => f.write_str("Credentials::Agent"),
        }
    }
}

impl Credentials {
    /// Loads the key named by `GITVPS_SSH_KEY`, or falls back to the agent.
    pub fn from_env() -> Result<Credentials, SshError> {
        match std::env::var_os("GITVPS_SSH_KEY") {
            Some(p) if !p.is_empty() => Credentials::from_file(std::path::Path::new(&p)),
            _ if std::env::var_os("SSH_AUTH_SOCK").is_some() => Ok(Credentials::Agent),
            _ => Err(SshError::NoCredentials),
        }
    }

    /// The public key of a key file as `TYPE BASE64` (what `authorized_keys` holds); `None`
    /// for the agent, whose keys are not known in advance.
    pub fn public_key(&self) -> Option<String> {
        match self {
            Credentials::Key(k) => k
                .public_key()
                .to_openssh()
                .ok()
                .map(|s| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")),
            Credentials::Agent => None,
        }
    }

    /// Loads an unencrypted OpenSSH private key file.
    pub fn from_file(path: &std::path::Path) -> Result<Credentials, SshError> {
        russh::keys::load_secret_key(path, None)
            .map(|k| Credentials::Key(Arc::new(k)))
            .map_err(|source| SshError::Key {
                path: path.display().to_string(),
                source,
            })
    }
}

/// Where and how to reach one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Node id, for messages.
    pub node: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// The pinned host key, as in the node file.
    pub host_key: String,
}

/// Timeouts for one node.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect, key exchange and login.
    pub connect: Duration,
    /// One command.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            command: Duration::from_secs(900),
        }
    }
}

struct Pinned {
    expected: PublicKey,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let presented = match key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key,
            russh::keys::PublicKeyOrCertificate::Certificate(c) => {
                if let Ok(mut p) = self.presented.lock() {
                    *p = Some(format!(
                        "a certificate for {}",
                        c.public_key().fingerprint(HashAlg::Sha256)
                    ));
                }
                return Ok(false);
            }
        };
        let ok = presented.key_data() == self.expected.key_data();
        if !ok && let Ok(mut p) = self.presented.lock() {
            *p = Some(presented.fingerprint(HashAlg::Sha256).to_string());
        }
        Ok(ok)
    }
}

/// Takes note of the host key a server presents and refuses it: the connection ends there.
struct Recorder {
    presented: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Recorder {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        if let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key
            && let Ok(mut p) = self.presented.lock()
        {
            *p = Some(key.clone());
        }
        Ok(false)
    }
}

/// A host key as a node presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `ssh-ed25519 AAAA...`, without a comment: what a node file pins.
    pub openssh: String,
    /// `SHA256:...`, as `ssh-keygen -lf` prints it, for the operator to compare.
    pub fingerprint: String,
}

/// Connects to `host:port` once, reads the host key the server presents (its preferred one,
/// ed25519 first), and hangs up before logging in. Nothing is trusted: the caller shows the
/// fingerprint to be compared with the node's own `ssh-keygen -lf`.
pub async fn fetch_host_key(
    node: &str,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<HostKey, SshError> {
    let presented = Arc::new(Mutex::new(None));
    let handler = Recorder {
        presented: presented.clone(),
    };
    let config = Arc::new(client::Config::default());
    let addr = format!("{host}:{port}");
    let connect = client::connect(config, (host, port), handler);
    match tokio::time::timeout(timeout, connect).await {
        Err(_) => {
            return Err(SshError::Timeout {
                node: node.to_owned(),
                what: "reading the host key".into(),
                secs: timeout.as_secs(),
            });
        }
        Ok(Err(russh::Error::IO(source))) => {
            return Err(SshError::Connect {
                node: node.to_owned(),
                addr,
                source,
            });
        }
        Ok(Err(russh::Error::UnknownKey)) => {}
        Ok(Err(source)) => {
            return Err(SshError::Protocol {
                node: node.to_owned(),
                source,
            });
        }
        Ok(Ok(handle)) => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "")
                .await;
        }
    }
    let key = presented.lock().ok().and_then(|p| p.clone());
    let Some(key) = key else {
        return Err(SshError::Protocol {
            node: node.to_owned(),
            source: russh::Error::UnknownKey,
        });
    };
    let openssh = key
        .to_openssh()
        .map_err(|e| SshError::PinnedKey {
            node: node.to_owned(),
            source: e.into(),
        })?
        .split(' ')
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(HostKey {
        openssh,
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
    })
}

/// What a command printed and how it ended.
#[derive(Debug, Default, Clone)]
pub struct Output {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit status, when the command exited.
    pub status: Option<u32>,
    /// The signal that killed it, if any.
    pub signal: Option<String>,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The last `n` lines of stderr (or stdout if stderr is empty), for error messages.
    pub fn tail(&self, n: usize) -> String {
        let src = if self.stderr.iter().all(u8::is_ascii_whitespace) {
            &self.stdout
        } else {
            &self.stderr
        };
        let text = String::from_utf8_lossy(src);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// Counters of what a session did, for tests and benchmarks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Commands run.
    pub execs: AtomicU64,
}

/// One SSH connection to one node, reused for every command.
pub struct Session {
    handle: Handle<Pinned>,
    node: String,
    timeouts: Timeouts,
    /// What this session did.
    pub counters: Counters,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Connects, checks the pinned host key and logs in.
    pub async fn connect(
        target: &SshTarget,
        creds: &Credentials,
        timeouts: Timeouts,
    ) -> Result<Session, SshError> {
        let expected =
            PublicKey::from_openssh(&target.host_key).map_err(|e| SshError::PinnedKey {
                node: target.node.clone(),
                source: e.into(),
            })?;
        let addr = format!("{}:{}", target.host, target.port);
        let presented = Arc::new(Mutex::new(None));
        let handler = Pinned {
            expected: expected.clone(),
            presented: presented.clone(),
        };
        let config = Arc::new(client::Config {
            inactivity_timeout: None,
            keepalive_interval: Some(Duration::from_secs(30)),
            nodelay: true,
            preferred: russh::Preferred {
                cipher: std::borrow::Cow::Borrowed(CIPHERS),
                ..russh::Preferred::DEFAULT
            },
            ..Default::default()
        });
        let node = target.node.clone();
        let timeout = |what: &str| SshError::Timeout {
            node: node.clone(),
            what: what.to_owned(),
            secs: timeouts.connect.as_secs(),
        };
        let host = target.host.clone();
        let connect = client::connect(config, (host.as_str(), target.port), handler);
        let mut handle = match tokio::time::timeout(timeouts.connect, connect).await {
            Err(_) => return Err(timeout("connecting")),
            Ok(Ok(h)) => h,
            Ok(Err(russh::Error::UnknownKey)) => {
                let seen = presented
                    .lock()
                    .ok()
                    .and_then(|p| p.clone())
                    .unwrap_or_else(|| "an unknown key".into());
                return Err(SshError::HostKeyMismatch {
                    node: target.node.clone(),
                    addr,
                    presented: seen,
                    pinned: expected.fingerprint(HashAlg::Sha256).to_string(),
                });
            }
            Ok(Err(russh::Error::IO(source))) => {
                return Err(SshError::Connect {
                    node: target.node.clone(),
                    addr,
                    source,
                });
            }
            Ok(Err(source)) => {
                return Err(SshError::Protocol {
                    node: target.node.clone(),
                    source,
                });
            }
        };
        let auth = tokio::time::timeout(timeouts.connect, authenticate(&mut handle, target, creds))
            .await
            .map_err(|_| timeout("logging in"))??;
        if !auth.success() {
            return Err(SshError::AuthRefused {
                node: target.node.clone(),
                user: target.user.clone(),
            });
        }
        Ok(Session {
            handle,
            node: target.node.clone(),
            timeouts,
            counters: Counters::default(),
        })
    }

    /// The node this session talks to.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs one command (a POSIX sh command line), feeding it `stdin`, and collects its output.
    pub async fn exec(&self, command: &str, stdin: Option<&[u8]>) -> Result<Output, SshError> {
        self.counters.execs.fetch_add(1, Ordering::Relaxed);
        let proto = |source| SshError::Protocol {
            node: self.node.clone(),
            source,
        };
        let run = async {
            let mut ch = self.handle.channel_open_session().await.map_err(proto)?;
            ch.exec(true, command).await.map_err(proto)?;
            if let Some(input) = stdin {
                ch.data(input).await.map_err(proto)?;
            }
            ch.eof().await.map_err(proto)?;
            let mut out = Output::default();
            while let Some(msg) = ch.wait().await {
                match msg {
                    ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        out.stderr.extend_from_slice(&data)
                    }
                    ChannelMsg::ExitStatus { exit_status } => out.status = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.signal = Some(format!("{signal_name:?}"))
                    }
                    _ => {}
                }
                if out.stdout.len() + out.stderr.len() > MAX_OUTPUT {
                    return Err(SshError::TooMuchOutput {
                        node: self.node.clone(),
                    });
                }
            }
            Ok(out)
        };
        tokio::time::timeout(self.timeouts.command, run)
            .await
            .map_err(|_| SshError::Timeout {
                node: self.node.clone(),
                what: "a command".into(),
                secs: self.timeouts.command.as_secs(),
            })?
    }

    /// Starts a command whose input depends on its output (apply: observe, then steps).
    pub async fn start(&self, command: &str) -> Result<Running, SshError> {
        self.counters.execs.fetch_add(1, Ordering::Relaxed);
        let proto = |source| SshError::Protocol {
            node: self.node.clone(),
            source,
        };
        let ch = self.handle.channel_open_session().await.map_err(proto)?;
        ch.exec(true, command).await.map_err(proto)?;
        Ok(Running {
            ch,
            node: self.node.clone(),
            timeout: self.timeouts.command,
            buf: Vec::new(),
            stderr: Vec::new(),
            status: None,
            closed: false,
        })
    }

    /// Whether the connection is gone (the server closed it, or keepalives went unanswered).
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }
}

/// A command in progress on a node: read its output line by line, write its input.
pub struct Running {
    ch: russh::Channel<client::Msg>,
    node: String,
    timeout: Duration,
    buf: Vec<u8>,
    stderr: Vec<u8>,
    status: Option<u32>,
    closed: bool,
}

impl Running {
    fn proto(&self, source: russh::Error) -> SshError {
        SshError::Protocol {
            node: self.node.clone(),
            source,
        }
    }

    /// Waits for more output; false once the channel is closed.
    async fn pump(&mut self) -> Result<bool, SshError> {
        if self.closed {
            return Ok(false);
        }
        let msg = tokio::time::timeout(self.timeout, self.ch.wait())
            .await
            .map_err(|_| SshError::Timeout {
                node: self.node.clone(),
                what: "a command".into(),
                secs: self.timeout.as_secs(),
            })?;
        match msg {
            None => {
                self.closed = true;
                return Ok(false);
            }
            Some(ChannelMsg::Data { data }) => self.buf.extend_from_slice(&data),
            Some(ChannelMsg::ExtendedData { data, ext: 1 }) => self.stderr.extend_from_slice(&data),
            Some(ChannelMsg::ExitStatus { exit_status }) => self.status = Some(exit_status),
            Some(_) => {}
        }
        if self.buf.len() + self.stderr.len() > MAX_OUTPUT {
            return Err(SshError::TooMuchOutput {
                node: self.node.clone(),
            });
        }
        Ok(true)
    }

    /// The next line of stdout (without its newline), or `None` at the end.
    pub async fn line(&mut self) -> Result<Option<String>, SshError> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Ok(Some(String::from_utf8_lossy(&line[..i]).into_owned()));
            }
            if !self.pump().await? {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
        }
    }

    /// The next piece of stdout as it arrives (a stream, not lines), or `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, SshError> {
        loop {
            if !self.buf.is_empty() {
                return Ok(Some(std::mem::take(&mut self.buf)));
            }
            if !self.pump().await? {
                return Ok(None);
            }
        }
    }

    /// Sends input, keeping it open (waits while the node's window is full).
    pub async fn send(&mut self, data: &[u8]) -> Result<(), SshError> {
        self.ch.data(data).await.map_err(|e| self.proto(e))
    }

    /// Closes the input.
    pub async fn eof(&mut self) -> Result<(), SshError> {
        self.ch.eof().await.map_err(|e| self.proto(e))
    }

    /// Sends input and closes it.
    pub async fn send_all(&mut self, data: &[u8]) -> Result<(), SshError> {
        self.ch.data(data).await.map_err(|e| self.proto(e))?;
        self.ch.eof().await.map_err(|e| self.proto(e))
    }

    /// Reads to the end; returns the exit status and stderr.
    pub async fn finish(mut self) -> Result<(Option<u32>, Vec<u8>), SshError> {
        while self.pump().await? {}
        Ok((self.status, self.stderr))
    }
}

async fn authenticate(
    handle: &mut Handle<Pinned>,
    target: &SshTarget,
    creds: &Credentials,
) -> Result<AuthResult, SshError> {
    let proto = |source| SshError::Protocol {
        node: target.node.clone(),
        source,
    };
    match creds {
        Credentials::Key(key) => {
            let hash = if key.algorithm().is_rsa() {
                handle
                    .best_supported_rsa_hash()
                    .await
                    .map_err(proto)?
                    .flatten()
            } else {
                None
            };
            let k = PrivateKeyWithHashAlg::new(key.clone(), hash);
            handle
                .authenticate_publickey(target.user.clone(), k)
                .await
                .map_err(proto)
        }
        Credentials::Agent => {
            let mut agent = russh::keys::agent::client::AgentClient::connect_env()
                .await
                .map_err(SshError::Agent)?;
            let keys = agent.request_identities().await.map_err(SshError::Agent)?;
            let mut last = AuthResult::Failure {
                remaining_methods: russh::MethodSet::empty(),
                partial_success: false,
            };
            for identity in keys {
                let key = identity.public_key().into_owned();
                let hash = if key.algorithm().is_rsa() {
                    handle
                        .best_supported_rsa_hash()
                        .await
                        .map_err(proto)?
                        .flatten()
                } else {
                    None
                };
                last = handle
                    .authenticate_publickey_with(target.user.clone(), key, hash, &mut agent)
                    .await
                    .map_err(|e| match e {
                        russh::AgentAuthError::Key(k) => SshError::Agent(k),
                        russh::AgentAuthError::Send(_) => SshError::Protocol {
                            node: target.node.clone(),
                            source: russh::Error::SendError,
                        },
                    })?;
                if last.success() {
                    break;
                }
            }
            Ok(last)
        }
    }
}
