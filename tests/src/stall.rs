//! A TCP proxy that can hang: it forwards to a target until [`StallProxy::stall`], then
//! accepts connections and holds them open without a byte either way, as a remote whose
//! server hangs does (a stuck git daemon, a dead load balancer that keeps the socket).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The proxy; its threads end with the test process.
pub struct StallProxy {
    /// `127.0.0.1:PORT`: connect here instead of the target.
    pub addr: String,
    stalled: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl StallProxy {
    /// Forwards to `target` (`host:port`).
    pub fn start(target: &str) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stalled = Arc::new(AtomicBool::new(false));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (s, h, target) = (stalled.clone(), held.clone(), target.to_owned());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                if s.load(Ordering::SeqCst) {
                    h.lock().unwrap().push(conn);
                    continue;
                }
                let Ok(up) = TcpStream::connect(&target) else {
                    continue;
                };
                pipe(conn.try_clone().unwrap(), up.try_clone().unwrap());
                pipe(up, conn);
            }
        });
        StallProxy {
            addr,
            stalled,
            held,
        }
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

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
