//! Carrying a move out (`planner::moves`): the target's fresh disk, the source stopped, the disk
//! streamed through the reconciler's two SSH connections and checksummed on both ends, the
//! target started, and only then the source removed. A re-run after any interruption finishes.

use std::collections::BTreeMap;
use std::time::Instant;

use model::{Inventory, NodeId, VpsId};
use planner::desired::{Desired, NodeSpec};
use planner::driver::moving::{self, Codec};
use planner::driver::{self, EXIT_LOCKED};
use planner::moves::Move;
use planner::observe;

use crate::apply::{Access, target_of};
use crate::pool::Conn;
use crate::ssh::SshError;

/// What a finished move did.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    /// Bytes of disk streamed, as the source read them (a qcow2 image's file size, not its
    /// virtual size); 0 when a verified copy from an interrupted run was used.
    pub bytes: u64,
    /// The disk's sha256, the same on both ends.
    pub sha256: String,
    /// The codec used on the way.
    pub codec: &'static str,
    /// Seconds the whole move took.
    pub secs: f64,
    /// Of those, seconds the stream of the disk took (0 for a verified copy).
    pub copy_secs: f64,
}

/// Why a move did not finish. The source keeps the VPS's disk in every case; after a failed
/// copy the target's copy is discarded and the source started again.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// A node of the move is not in the inventory or the desired state.
    #[error("{vps}: node {node} or the VPS is not in the inventory")]
    Unknown {
        /// The VPS.
        vps: VpsId,
        /// The node.
        node: NodeId,
    },
    /// A node could not be reached or the connection failed.
    #[error("{vps}: {what} on {node} failed")]
    Ssh {
        /// The VPS.
        vps: VpsId,
        /// The node.
        node: NodeId,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: SshError,
    },
    /// Another apply held a node's lock.
    #[error("{vps}: another apply held the lock on {node}; nothing more was done")]
    Locked {
        /// The VPS.
        vps: VpsId,
        /// The node.
        node: NodeId,
    },
    /// A phase's script failed on a node.
    #[error("{vps}: {what} on {node} failed (exit {status:?}): {tail}")]
    Phase {
        /// The VPS.
        vps: VpsId,
        /// The node.
        node: NodeId,
        /// What was being done.
        what: &'static str,
        /// Its exit status.
        status: Option<u32>,
        /// Its last lines of output.
        tail: String,
    },
    /// The checksums of the two ends differ: the target's copy was discarded.
    #[error(
        "{vps}: the copy's sha256 differs ({from} read {sent}, {to} wrote {received}): the copy on {to} was discarded and {from} keeps the VPS"
    )]
    Mismatch {
        /// The VPS.
        vps: VpsId,
        /// The source.
        from: NodeId,
        /// The target.
        to: NodeId,
        /// The source's sha256.
        sent: String,
        /// The target's sha256.
        received: String,
    },
    /// The target's domain did not run after its start.
    #[error("{vps}: its domain does not run on {node} after the start: {from} keeps its disk")]
    NotRunning {
        /// The VPS.
        vps: VpsId,
        /// The target.
        node: NodeId,
        /// The source.
        from: NodeId,
    },
}

/// One node's side of a move.
struct Side<'a> {
    node: &'a NodeId,
    spec: &'a NodeSpec,
    conn: Conn,
}

impl Side<'_> {
    fn ssh_err(&self, vps: &VpsId, what: &'static str) -> impl FnOnce(SshError) -> MoveError {
        let (vps, node) = (vps.clone(), self.node.clone());
        move |source| MoveError::Ssh {
            vps,
            node,
            what,
            source,
        }
    }

    /// Runs a command and requires success.
    async fn run(&self, vps: &VpsId, what: &'static str, cmd: &str) -> Result<Vec<u8>, MoveError> {
        let out = (self.conn.exec(cmd, None).await).map_err(self.ssh_err(vps, what))?;
        if out.success() {
            return Ok(out.stdout);
        }
        if out.status == Some(EXIT_LOCKED) {
            return Err(MoveError::Locked {
                vps: vps.clone(),
                node: self.node.clone(),
            });
        }
        Err(MoveError::Phase {
            vps: vps.clone(),
            node: self.node.clone(),
            what,
            status: out.status,
            tail: out.tail(6),
        })
    }
}

/// The codec a probe printed, and the verified copy's sha256 if it printed one.
fn read_probe(out: &[u8]) -> (Codec, Option<String>) {
    let text = String::from_utf8_lossy(out);
    let mut codec = Codec::Gzip;
    let mut verified = None;
    for l in text.lines() {
        if let Some(w) = l.strip_prefix("codec ") {
            codec = Codec::parse(w.trim()).unwrap_or(Codec::Gzip);
        } else if let Some(s) = l.strip_prefix("verified ") {
            let s = s.trim();
            if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                verified = Some(s.to_owned());
            }
        }
    }
    (codec, verified)
}

/// The value of the last `WORD VALUE` line a send or receive printed on its error output.
fn last_value(stderr: &[u8], word: &str) -> Option<String> {
    String::from_utf8_lossy(stderr).lines().rev().find_map(|l| {
        l.strip_prefix(word)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|s| s.trim().to_owned())
    })
}

/// The `gitvps-sha256 HEX` line a send or receive printed on its error output.
fn sha_of(stderr: &[u8]) -> Option<String> {
    last_value(stderr, "gitvps-sha256").filter(|s| s.len() == 64)
}

/// The `gitvps-bytes N` line of a send: the size of the disk it read (a qcow2 image's file,
/// not its virtual size).
fn bytes_of(stderr: &[u8]) -> Option<u64> {
    last_value(stderr, "gitvps-bytes")?.parse().ok()
}

/// Carries out the moves that go, one after the other; the others are left out.
pub async fn move_all(
    inv: &Inventory,
    desired: &Desired,
    moves: &[Move],
    access: &Access,
) -> BTreeMap<VpsId, Result<Moved, MoveError>> {
    let mut out = BTreeMap::new();
    for m in moves.iter().filter(|m| m.goes()) {
        tracing::info!(vps = %m.vps, from = %m.from, to = %m.to, "moving");
        let r = move_one(inv, desired, m, access).await;
        match &r {
            Ok(done) => tracing::info!(vps = %m.vps, bytes = done.bytes, secs = done.secs, "moved"),
            Err(e) => tracing::warn!(vps = %m.vps, "{}", model::diag::error_chain(e)),
        }
        out.insert(m.vps.clone(), r);
    }
    out
}

async fn connect<'a>(
    inv: &Inventory,
    desired: &'a Desired,
    node: &'a NodeId,
    vps: &VpsId,
    access: &Access,
) -> Result<Side<'a>, MoveError> {
    let unknown = || MoveError::Unknown {
        vps: vps.clone(),
        node: node.clone(),
    };
    let n = inv.nodes.get(node).ok_or_else(unknown)?;
    let spec = desired.nodes.get(node).ok_or_else(unknown)?;
    let conn = (access.connect(&target_of(n)).await).map_err(|source| MoveError::Ssh {
        vps: vps.clone(),
        node: node.clone(),
        what: "connecting",
        source,
    })?;
    Ok(Side { node, spec, conn })
}

/// Carries one move out: the phases in order, each idempotent, so that a re-run after an
/// interruption at any point finishes it.
pub async fn move_one(
    inv: &Inventory,
    desired: &Desired,
    m: &Move,
    access: &Access,
) -> Result<Moved, MoveError> {
    let t0 = Instant::now();
    let vps = &m.vps;
    let v = (desired.nodes.get(&m.to))
        .and_then(|n| n.vps.get(vps))
        .ok_or_else(|| MoveError::Unknown {
            vps: vps.clone(),
            node: m.to.clone(),
        })?;
    let src = connect(inv, desired, &m.from, vps, access).await?;
    let dst = connect(inv, desired, &m.to, vps, access).await?;
    // 0. What each end has, and whether the target holds a verified copy already.
    let (sc, _) = read_probe(
        &src.run(vps, "probe", &moving::probe_command(src.spec, m))
            .await?,
    );
    let (dc, verified) = read_probe(
        &dst.run(vps, "probe", &moving::probe_command(dst.spec, m))
            .await?,
    );
    let codec = Codec::common(sc, dc);
    let (sha256, bytes, copy_secs) = match verified {
        Some(sha) => (sha, 0, 0.0),
        None => copy(&src, &dst, m, codec, desired.shutdown_timeout_secs, v.run).await?,
    };
    // 4. The target: marked as verified, config and record written, started.
    dst.run(
        vps,
        "starting the copy",
        &moving::finish_command(dst.spec, m, v, &sha256),
    )
    .await?;
    if v.run && !runs(&dst, vps).await? {
        return Err(MoveError::NotRunning {
            vps: vps.clone(),
            node: m.to.clone(),
            from: m.from.clone(),
        });
    }
    // 5. Only now the source.
    src.run(
        vps,
        "removing the source",
        &moving::cleanup_command(src.spec, m),
    )
    .await?;
    // 6. Done: the target's marker goes.
    dst.run(vps, "unmarking", &moving::unmark_command(dst.spec, m))
        .await?;
    src.conn.done().await;
    dst.conn.done().await;
    Ok(Moved {
        bytes,
        sha256,
        codec: codec.word(),
        secs: t0.elapsed().as_secs_f64(),
        copy_secs,
    })
}

/// Whether the VPS's domain runs on the node, as its observe report says.
async fn runs(side: &Side<'_>, vps: &VpsId) -> Result<bool, MoveError> {
    let cmd = driver::observe_command(side.spec, chrono::Utc::now().timestamp());
    let out = side.run(vps, "observing", &cmd).await?;
    let state = observe::parse(side.node.as_str(), &out).map_err(|e| MoveError::Phase {
        vps: vps.clone(),
        node: side.node.clone(),
        what: "observing",
        status: Some(0),
        tail: model::diag::error_chain(&e),
    })?;
    Ok(state
        .domains
        .get(vps.as_str())
        .is_some_and(observe::Domain::is_up))
}

/// Phases 1 to 3: the target's fresh disk, the source stopped, the stream checked on both
/// ends (its sha256, the bytes and the seconds the stream took). A failed or mismatched copy
/// is discarded and the source started again.
async fn copy(
    src: &Side<'_>,
    dst: &Side<'_>,
    m: &Move,
    codec: Codec,
    timeout_secs: u32,
    run: bool,
) -> Result<(String, u64, f64), MoveError> {
    let vps = &m.vps;
    dst.run(
        vps,
        "making the target's disk",
        &moving::prepare_command(dst.spec, m),
    )
    .await?;
    src.run(
        vps,
        "stopping the source",
        &moving::stop_command(src.spec, m, timeout_secs),
    )
    .await?;
    let t = Instant::now();
    let r = stream(src, dst, m, codec).await;
    let secs = t.elapsed().as_secs_f64();
    if r.is_err() {
        let discard = moving::discard_command(dst.spec, m);
        if let Err(e) = dst.run(vps, "discarding the copy", &discard).await {
            tracing::warn!(vps = %vps, "{}", model::diag::error_chain(&e));
        }
        if run {
            let restart = moving::restart_command(src.spec, m);
            if let Err(e) = src.run(vps, "restarting the source", &restart).await {
                tracing::warn!(vps = %vps, "{}", model::diag::error_chain(&e));
            }
        }
    }
    r.map(|(sha, bytes)| (sha, bytes, secs))
}

/// Pieces of the stream (each what one SSH data message brought, at most 32 KiB) queued
/// between the source's connection and the target's.
const RELAY_PIECES: usize = 256;

/// Phase 3: the source's disk through both connections into the target's; the sha256 of
/// what was read and of what was written must be equal.
async fn stream(
    src: &Side<'_>,
    dst: &Side<'_>,
    m: &Move,
    codec: Codec,
) -> Result<(String, u64), MoveError> {
    let vps = &m.vps;
    let send = moving::send_command(src.spec, m, codec);
    let recv = moving::recv_command(dst.spec, m, codec);
    let mut tx = (src.conn.start(&send).await).map_err(src.ssh_err(vps, "sending the disk"))?;
    let mut rx = (dst.conn.start(&recv).await).map_err(dst.ssh_err(vps, "receiving the disk"))?;
    // Reading from the source and writing to the target go on side by side, a bounded queue
    // of pieces between them: neither connection waits for the other's round trips.
    let (queue, pieces) = tokio::sync::mpsc::channel::<Vec<u8>>(RELAY_PIECES);
    let read = async {
        let queue = queue;
        let mut wire = 0u64;
        while let Some(piece) = (tx.chunk().await).map_err(src.ssh_err(vps, "sending the disk"))? {
            wire += piece.len() as u64;
            if queue.send(piece).await.is_err() {
                break; // the writing side failed, and says why
            }
        }
        Ok::<u64, MoveError>(wire)
    };
    let write = async {
        let mut pieces = pieces; // dropped when writing fails: the reading side then stops
        while let Some(piece) = pieces.recv().await {
            (rx.send(&piece).await).map_err(dst.ssh_err(vps, "receiving the disk"))?;
        }
        (rx.eof().await).map_err(dst.ssh_err(vps, "receiving the disk"))
    };
    let (wire, written) = tokio::join!(read, write);
    written?;
    let wire = wire?;
    let (sent_status, sent_err) =
        (tx.finish().await).map_err(src.ssh_err(vps, "sending the disk"))?;
    let (recv_status, recv_err) =
        (rx.finish().await).map_err(dst.ssh_err(vps, "receiving the disk"))?;
    let failed = |side: &Side<'_>, what, status: Option<u32>, err: &[u8]| MoveError::Phase {
        vps: vps.clone(),
        node: side.node.clone(),
        what,
        status,
        tail: String::from_utf8_lossy(err)
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
    };
    if sent_status != Some(0) {
        return Err(failed(src, "sending the disk", sent_status, &sent_err));
    }
    if recv_status != Some(0) {
        return Err(failed(dst, "receiving the disk", recv_status, &recv_err));
    }
    let (Some(sent), Some(received)) = (sha_of(&sent_err), sha_of(&recv_err)) else {
        return Err(failed(dst, "reading the checksums", recv_status, &recv_err));
    };
    if sent != received {
        return Err(MoveError::Mismatch {
            vps: vps.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            sent,
            received,
        });
    }
    tracing::debug!(vps = %vps, wire, "streamed");
    Ok((sent, bytes_of(&sent_err).unwrap_or(m.bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_names_its_codec_and_a_verified_copy() {
        let sha = "a".repeat(64);
        let (c, v) = read_probe(format!("codec zstd\nverified {sha}\n").as_bytes());
        assert_eq!((c, v), (Codec::Zstd, Some(sha)));
        let (c, v) = read_probe(b"codec lz4\nverified short\n");
        assert_eq!(
            (c, v),
            (Codec::Gzip, None),
            "unknown words fall back, bad sums are no proof"
        );
    }

    #[test]
    fn the_checksum_is_the_last_sha_line() {
        let sha = "b".repeat(64);
        assert_eq!(
            sha_of(format!("noise\ngitvps-sha256 {sha}\n").as_bytes()),
            Some(sha)
        );
        assert_eq!(sha_of(b"gitvps-sha256 \n"), None);
    }

    #[test]
    fn the_bytes_sent_are_the_sends_own_count() {
        let err = format!(
            "gitvps-bytes 1598554112\ngitvps-sha256 {}\n",
            "c".repeat(64)
        );
        assert_eq!(bytes_of(err.as_bytes()), Some(1_598_554_112));
        assert_eq!(bytes_of(b"gitvps-bytesx 3\n"), None);
        assert_eq!(bytes_of(b"noise\n"), None);
    }
}
