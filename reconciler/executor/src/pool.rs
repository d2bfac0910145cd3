//! Kept SSH connections for work that comes back every minute (the collector, the demo's apply
//! loop): one connection per node reused across cycles, so a cycle pays no key exchange.
//!
//! A kept connection found closed is replaced; one that fails before its command started
//! (the node restarted its sshd, a NAT forgot the flow) is dropped and the work is tried once
//! on a fresh connection. A connection whose node file changed (address, port, user, host key)
//! is never reused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

use crate::ssh::{Credentials, Session, SshError, SshTarget, Timeouts};

/// The kept connections, by node.
#[derive(Debug, Default)]
pub struct Pool {
    kept: Mutex<HashMap<String, (SshTarget, Arc<Session>)>>,
    /// Connections opened through the pool.
    pub opened: AtomicU64,
    /// Times a kept connection was used again.
    pub reused: AtomicU64,
}

/// A connection lent for one piece of work: a fresh one (closed when done) or a kept one.
#[derive(Debug)]
pub enum Conn {
    /// Opened for this work only.
    Fresh(Session),
    /// Kept by a pool; `reused` when it served an earlier cycle.
    Kept {
        /// The connection.
        session: Arc<Session>,
        /// Whether it was opened by an earlier cycle.
        reused: bool,
    },
}

impl std::ops::Deref for Conn {
    type Target = Session;
    fn deref(&self) -> &Session {
        match self {
            Conn::Fresh(s) => s,
            Conn::Kept { session, .. } => session,
        }
    }
}

impl Conn {
    /// Whether a failure on it may be a stale kept connection, worth one fresh try.
    pub fn reused(&self) -> bool {
        matches!(self, Conn::Kept { reused: true, .. })
    }

    /// Ends the work: a fresh connection is closed, a kept one stays open.
    pub async fn done(self) {
        if let Conn::Fresh(s) = self {
            s.close().await;
        }
    }
}

impl Pool {
    /// A connection to `target`: the kept one if it is open and was made for the same
    /// target, else a new one, kept for the next cycle.
    pub async fn get(
        &self,
        target: &SshTarget,
        creds: &Credentials,
        timeouts: Timeouts,
    ) -> Result<Conn, SshError> {
        let kept = self.kept.lock().await.get(&target.node).cloned();
        if let Some((t, session)) = kept {
            if &t == target && !session.is_closed() {
                self.reused.fetch_add(1, Ordering::Relaxed);
                return Ok(Conn::Kept {
                    session,
                    reused: true,
                });
            }
            self.forget(&target.node).await;
        }
        let session = Arc::new(Session::connect(target, creds, timeouts).await?);
        self.opened.fetch_add(1, Ordering::Relaxed);
        self.kept
            .lock()
            .await
            .insert(target.node.clone(), (target.clone(), session.clone()));
        Ok(Conn::Kept {
            session,
            reused: false,
        })
    }

    /// Drops the kept connection of `node` (after it failed), closing it.
    pub async fn forget(&self, node: &str) {
        let gone = self.kept.lock().await.remove(node);
        if let Some((_, s)) = gone {
            s.close().await;
        }
    }

    /// Closes every kept connection (at shutdown).
    pub async fn close_all(&self) {
        let all: Vec<_> = self.kept.lock().await.drain().collect();
        for (_, (_, s)) in all {
            s.close().await;
        }
    }
}

/// A connection to `target` for one piece of work: through `pool` when there is one, else a
/// fresh connection.
pub async fn connect(
    pool: Option<&Pool>,
    target: &SshTarget,
    creds: &Credentials,
    timeouts: Timeouts,
) -> Result<Conn, SshError> {
    match pool {
        Some(p) => p.get(target, creds, timeouts).await,
        None => Ok(Conn::Fresh(
            Session::connect(target, creds, timeouts).await?,
        )),
    }
}
