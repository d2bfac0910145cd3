//! A real Knot DNS server (`knotd`, Debian's `knot`) on 127.0.0.1 on a free port, in a temporary
//! folder: its configuration includes the zone list gitvps writes, and a hand-written "upstream"
//! zone list for what the operator's upstream would serve. `dig` asks it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Knot {
    pub dir: tempfile::TempDir,
    /// The folder gitvps owns (`[[dns.server]] dir`).
    pub zones: PathBuf,
    /// The control socket (`[[dns.server]] control`).
    pub socket: PathBuf,
    pub port: u16,
    child: Child,
}

fn tool(name: &str) -> PathBuf {
    for d in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = PathBuf::from(d).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{name} not found: run ./scripts/test, which installs knot, bind9-utils and bind9-dnsutils"
    );
}

fn read_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("knotd.log")).unwrap_or_default()
}

impl Knot {
    /// Starts knotd with an empty gitvps zone list and `upstream` (a zone list in Knot's
    /// syntax, for zones written by the test itself).
    pub fn start(upstream: &str) -> Knot {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let zones = d.join("zones");
        std::fs::create_dir_all(&zones).unwrap();
        std::fs::create_dir_all(d.join("db")).unwrap();
        std::fs::write(zones.join("gitvps-zones.conf"), "").unwrap();
        std::fs::write(d.join("upstream.conf"), upstream).unwrap();
        let socket = d.join("knot.sock");
        for _ in 0..5 {
            let port = crate::free_port();
            std::fs::write(
                d.join("knot.conf"),
                format!(
                    "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\nlog:\n  - target: stderr\n    any: info\ndatabase:\n    storage: {d}/db\ncontrol:\n    listen: {sock}\ninclude: {zones}/gitvps-zones.conf\ninclude: {d}/upstream.conf\n",
                    d = d.display(),
                    sock = socket.display(),
                    zones = zones.display(),
                ),
            )
            .unwrap();
            let mut child = Command::new(tool("knotd"))
                .arg("-c")
                .arg(d.join("knot.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(d.join("knotd.log")).unwrap())
                .spawn()
                .expect("start knotd");
            // Up once its control socket is bound (after the listening sockets).
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                if read_log(d).contains("control, binding to") {
                    return Knot {
                        zones,
                        socket,
                        port,
                        child,
                        dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("knotd did not start: {}", read_log(d));
    }

    /// knotd's log so far.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// How many times knotd loaded a zone so far (at start, on a reload).
    pub fn loads(&self) -> usize {
        self.log().matches("zone file parsed").count()
    }

    /// `dig @127.0.0.1 -p PORT +short ARGS...`: the answer lines.
    pub fn dig(&self, args: &[&str]) -> Vec<String> {
        dig_at(self.port, args)
    }
}

/// `dig @127.0.0.1 -p port +short ARGS...`: the answer lines (for a resolver that asks a
/// test's server from another thread).
pub fn dig_at(port: u16, args: &[&str]) -> Vec<String> {
    let out = Command::new(tool("dig"))
        .args([
            "@127.0.0.1",
            "-p",
            &port.to_string(),
            "+short",
            "+time=2",
            "+tries=1",
        ])
        .args(args)
        .output()
        .expect("dig");
    assert!(out.status.success(), "dig {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
