//! A TCP proxy that can hang or lag: it forwards to a target, each byte [`StallProxy::delay`]
//! late (latency: `tc netem` cannot run on this kernel), and after [`StallProxy::stall`] it
//! accepts connections and holds them open without a byte either way, as a remote whose
//! server hangs does (a stuck git daemon, a dead load balancer that keeps the socket).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The proxy; its threads end with the test process.
pub struct StallProxy {
    /// `127.0.0.1:PORT`: connect here instead of the target.
    pub addr: String,
    stalled: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallProxy {
    /// Forwards to `target` (`host:port`).
    pub fn start(target: &str) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stalled = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (s, h, target) = (stalled.clone(), held.clone(), target.to_owned());
        let d = delay_ms.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if s.load(Ordering::SeqCst) {
                    h.lock().unwrap().push(conn);
                    continue;
                }
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                pipe(
                    conn.try_clone().unwrap(),
                    up.try_clone().unwrap(),
                    d.clone(),
                );
                pipe(up, conn, d.clone());
            }
        });
        StallProxy {
            addr,
            stalled,
            delay_ms,
            held,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// From now on, every byte read is written `d` later, in each direction (a round trip of
    /// 2 `d`), without slowing the stream's throughput.
    pub fn delay(&self, d: Duration) {
        self.delay_ms
            .store(u64::try_from(d.as_millis()).unwrap(), Ordering::SeqCst);
    }

    /// From now on, new connections hang.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::SeqCst);
    }

    /// New connections are forwarded again; the hung ones are closed.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::SeqCst);
        for c in self.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until either side closes: a reader thread stamps each chunk with the
/// time it is due (now plus the delay) and a writer thread writes it then.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay_ms: Arc<AtomicU64>) {
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let due =
                        Instant::now() + Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || {
        for (due, bytes) in rx {
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
