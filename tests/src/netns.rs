//! A node on its own network: a network namespace joined to this one by a veth pair, and the
//! faults a real link has: a cut (nftables drops everything), loss (nftables drops at random)
//! and a slow link (a tbf qdisc). Needs root. This kernel has no `netem` qdisc, so latency is
//! not among them.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Runs a command that must succeed.
fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace with one veth link to this one: host side `HOST_IP/30`, node side
/// `node_ip`/30.
pub struct Netns {
    pub name: String,
    /// The host side of the link.
    pub link: String,
    /// The node's address, reachable from here.
    pub node_ip: String,
    table: String,
}

impl Netns {
    /// Creates the namespace and its link (numbered from this process and a counter).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Netns {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = (std::process::id() % 200) * 50 + NEXT.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (n / 64 % 256, (n % 64) * 4);
        let name = format!("gv-ns{n}");
        let link = format!("gvh{n}");
        let peer = format!("gvn{n}");
        let host_ip = format!("10.252.{a}.{}", b + 1);
        let node_ip = format!("10.252.{a}.{}", b + 2);
        // Left over from a killed run of the same numbers.
        let _ = Command::new("ip").args(["link", "del", &link]).output();
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        run(&[
            "ip", "link", "add", &link, "type", "veth", "peer", "name", &peer,
        ]);
        run(&["ip", "link", "set", &peer, "netns", &name]);
        run(&["ip", "addr", "add", &format!("{host_ip}/30"), "dev", &link]);
        run(&["ip", "link", "set", &link, "up"]);
        let ns = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &name];
            v.extend_from_slice(args);
            run(&v);
        };
        ns(&["ip", "link", "set", "lo", "up"]);
        ns(&["ip", "addr", "add", &format!("{node_ip}/30"), "dev", &peer]);
        ns(&["ip", "link", "set", &peer, "up"]);
        Netns {
            table: format!("gvfault{n}"),
            name,
            link,
            node_ip,
        }
    }

    /// Drops the link's packets, both ways, that `rule` matches (an nftables expression before
    /// `drop`), replacing any earlier fault.
    fn drop_where(&self, rule: &str) {
        self.heal();
        let script = format!(
            "table inet {t} {{\n chain out {{ type filter hook output priority 0; oifname \"{l}\" {rule} drop; }}\n chain in {{ type filter hook input priority 0; iifname \"{l}\" {rule} drop; }}\n}}\n",
            t = self.table,
            l = self.link
        );
        let out = Command::new("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write as _;
                c.stdin.take().unwrap().write_all(script.as_bytes())?;
                c.wait_with_output()
            })
            .unwrap();
        assert!(
            out.status.success(),
            "nft: {}\n{script}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Cuts the link: every packet is dropped until [`Netns::heal`].
    pub fn cut(&self) {
        self.drop_where("");
    }

    /// Drops `percent` % of the packets each way, at random.
    pub fn lose(&self, percent: u32) {
        self.drop_where(&format!("numgen random mod 100 < {percent}"));
    }

    /// Limits the link to `kbit` kbit/s (a token bucket on the host side).
    pub fn slow(&self, kbit: u32) {
        run(&[
            "tc",
            "qdisc",
            "replace",
            "dev",
            &self.link,
            "root",
            "tbf",
            "rate",
            &format!("{kbit}kbit"),
            "burst",
            "16kb",
            "latency",
            "2s",
        ]);
    }

    /// Ends every fault.
    pub fn heal(&self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .output();
        let _ = Command::new("tc")
            .args(["qdisc", "del", "dev", &self.link, "root"])
            .output();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.heal();
        let _ = Command::new("ip")
            .args(["link", "del", &self.link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
