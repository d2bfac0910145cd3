//! An in-process SSH server (russh's server side) in front of a simulated dom0's folder:
//! it accepts one client key and runs each exec request with `sh -c` on this machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, Handle, Msg, Server as _, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::nodesim::{FileError, FileOp, OnFile};

/// Why a key could not be written or a node server not started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The system's random source could not be read for a new key.
    #[error("cannot generate a key")]
    Keygen(#[source] std::io::Error),
    /// A key could not be put in OpenSSH form.
    #[error("cannot encode a key in OpenSSH form")]
    Encode(#[source] russh::keys::ssh_key::Error),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}")]
    Listen {
        /// Where it was to listen.
        addr: SocketAddr,
        /// The system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The server task ended before it was running.
    #[error("the SSH server task ended at start")]
    Start(#[source] tokio::sync::oneshot::error::RecvError),
    /// A key file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
}

/// A fresh ed25519 key from the system's random source (no ssh-keygen needed).
pub fn generate_key() -> std::io::Result<PrivateKey> {
    let mut seed = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut seed)?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

/// Writes a private key as an OpenSSH file (mode 0600) and its `.pub` beside it.
pub fn write_key(key: &PrivateKey, path: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(ServerError::Encode)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .on(FileOp::Create, path)?;
    std::io::Write::write_all(&mut f, text.as_bytes()).on(FileOp::Write, path)?;
    let public = key.public_key().to_openssh().map_err(ServerError::Encode)?;
    let pub_path = path.with_extension("pub");
    std::fs::write(&pub_path, format!("{public}\n")).on(FileOp::Write, &pub_path)?;
    Ok(())
}

/// A running simulated node: an SSH server on 127.0.0.1 in front of a node root.
pub struct NodeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its host key as a node file's `host_key` ("ssh-ed25519 AAAA...").
    pub host_key: String,
    shutdown: russh::server::RunningServerHandle,
    task: tokio::task::JoinHandle<()>,
    /// What [`NodeServer::restart`] starts again with.
    host: PrivateKey,
    client: PublicKey,
    cwd: std::path::PathBuf,
    answer: Option<Arc<Vec<u8>>>,
}

impl NodeServer {
    /// Starts a server on `listen` (port 0 picks one) with a new host key; it accepts only
    /// `client` and runs commands in `cwd`. Must be called inside a tokio runtime.
    pub async fn start(
        listen: SocketAddr,
        client: PublicKey,
        cwd: &Path,
    ) -> Result<Self, ServerError> {
        let host = generate_key().map_err(ServerError::Keygen)?;
        Self::start_with(listen, host, client, cwd, None).await
    }

    /// Starts a server that answers every command with `answer` on stdout and exit status 0,
    /// running nothing: a node whose side costs nothing, for measuring the control side alone.
    pub async fn start_canned(
        listen: SocketAddr,
        client: PublicKey,
        answer: Arc<Vec<u8>>,
    ) -> Result<Self, ServerError> {
        let host = generate_key().map_err(ServerError::Keygen)?;
        Self::start_with(listen, host, client, Path::new("/"), Some(answer)).await
    }

    /// Stops the server as [`NodeServer::stop`] does, keeping what [`Paused::resume`] needs to
    /// start it again on the same address with the same host key: a node that goes away and
    /// comes back.
    pub async fn pause(self) -> Paused {
        self.shutdown.shutdown("the node goes away".into());
        self.task.abort();
        let _ = self.task.await;
        Paused {
            addr: self.addr,
            host: self.host,
            client: self.client,
            cwd: self.cwd,
            answer: self.answer,
        }
    }

    async fn start_with(
        listen: SocketAddr,
        host: PrivateKey,
        client: PublicKey,
        cwd: &Path,
        answer: Option<Arc<Vec<u8>>>,
    ) -> Result<Self, ServerError> {
        let host_key = host
            .public_key()
            .to_openssh()
            .map_err(ServerError::Encode)?;
        let host_key = host_key.split(' ').take(2).collect::<Vec<_>>().join(" ");
        let config = Arc::new(russh::server::Config {
            keys: vec![host.clone()],
            auth_rejection_time: std::time::Duration::from_millis(50),
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            inactivity_timeout: None,
            ..Default::default()
        });
        let listen_err = |source| ServerError::Listen {
            addr: listen,
            source,
        };
        let socket = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(listen_err)?;
        let addr = socket.local_addr().map_err(listen_err)?;
        let mut server = Node {
            client: Arc::new(client.clone()),
            cwd: Arc::new(cwd.to_path_buf()),
            stdin: HashMap::new(),
            answer: answer.clone(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let running = server.run_on_socket(config, &socket);
            let _ = tx.send(running.handle());
            let _ = running.await;
        });
        let shutdown = rx.await.map_err(ServerError::Start)?;
        Ok(NodeServer {
            addr,
            host_key,
            shutdown,
            task,
            host,
            client,
            cwd: cwd.to_path_buf(),
            answer,
        })
    }

    /// Stops accepting and disconnects every session (running commands are killed).
    pub fn stop(self) {
        self.shutdown.shutdown("the demo is stopping".into());
        self.task.abort();
    }
}

/// A [`NodeServer`] that was paused.
pub struct Paused {
    addr: SocketAddr,
    host: PrivateKey,
    client: PublicKey,
    cwd: std::path::PathBuf,
    answer: Option<Arc<Vec<u8>>>,
}

impl Paused {
    /// Starts the server again where it was.
    pub async fn resume(self) -> Result<NodeServer, ServerError> {
        NodeServer::start_with(self.addr, self.host, self.client, &self.cwd, self.answer).await
    }
}

/// One connection's handler (and, cloned, the server's).
struct Node {
    client: Arc<PublicKey>,
    cwd: Arc<PathBuf>,
    /// Data for each running command's stdin; `None` closes it.
    stdin: HashMap<ChannelId, mpsc::UnboundedSender<Option<Vec<u8>>>>,
    /// What every command answers, when nothing is run.
    answer: Option<Arc<Vec<u8>>>,
}

impl russh::server::Server for Node {
    type Handler = Node;
    fn new_client(&mut self, _: Option<SocketAddr>) -> Node {
        Node {
            client: self.client.clone(),
            cwd: self.cwd.clone(),
            stdin: HashMap::new(),
            answer: self.answer.clone(),
        }
    }
}

impl russh::server::Handler for Node {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if key.public_key.key_data() == self.client.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        _: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(answer) = &self.answer {
            session.channel_success(channel)?;
            session.data(
                channel,
                russh::keys::ssh_encoding::bytes::Bytes::from(answer.as_ref().clone()),
            )?;
            session.exit_status_request(channel, 0)?;
            session.eof(channel)?;
            session.close(channel)?;
            return Ok(());
        }
        let command = String::from_utf8_lossy(data).into_owned();
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .current_dir(self.cwd.as_path())
            .env_remove("GITVPS_SSH_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(_) => {
                session.channel_failure(channel)?;
                return Ok(());
            }
        };
        session.channel_success(channel)?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.stdin.insert(channel, tx);
        let handle = session.handle();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        tokio::spawn(feed(stdin, rx));
        tokio::spawn(async move {
            let out = tokio::spawn(pump(stdout, handle.clone(), channel, None));
            let err = tokio::spawn(pump(stderr, handle.clone(), channel, Some(1)));
            let _ = out.await;
            let _ = err.await;
            let code = match child.wait().await {
                Ok(st) => st.code().map_or(255, |c| c as u32),
                Err(_) => 255,
            };
            let _ = handle.exit_status_request(channel, code).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.stdin.get(&channel) {
            let _ = tx.send(Some(data.to_vec()));
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.stdin.remove(&channel) {
            let _ = tx.send(None);
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdin.remove(&channel);
        Ok(())
    }
}

/// Writes channel data to the command's stdin until EOF (or the channel goes away).
async fn feed(
    stdin: Option<tokio::process::ChildStdin>,
    mut rx: mpsc::UnboundedReceiver<Option<Vec<u8>>>,
) {
    let Some(mut stdin) = stdin else { return };
    while let Some(Some(chunk)) = rx.recv().await {
        if stdin.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = stdin.shutdown().await;
}

/// Streams one output of the command to the channel as it comes (`ext` 1: stderr).
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    out: Option<R>,
    handle: Handle,
    channel: ChannelId,
    ext: Option<u32>,
) {
    let Some(mut out) = out else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match out.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = buf[..n].to_vec();
        let sent = match ext {
            None => handle.data(channel, chunk).await.is_ok(),
            Some(e) => handle.extended_data(channel, e, chunk).await.is_ok(),
        };
        if !sent {
            return;
        }
    }
}
