#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]
//! Bridge-mode KVM networking for real: a guest's tap on a bridge with its own addresses, what it
//! may send (anti-spoofing) and how fast (its plan's bandwidth), enforced with nftables.

use gitvps_tests as support;

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::kvm::{KvmNode, KvmNodeSpec};

/// The node-side library the steps run (`kvm_net_up`, `kvm_net_down`, ...).
const LIB: &str = include_str!("../../reconciler/planner/node/kvm-host.sh");

/// Runs a command; returns (exit code, stdout + stderr).
fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs a command that must succeed; returns its stdout and stderr.
fn ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    let (code, out) = run(cmd);
    assert_eq!(code, 0, "{what}: {out}");
    out
}

fn cmd(argv: &[&str]) -> Command {
    let mut c = Command::new(argv[0]);
    c.args(&argv[1..]);
    c
}

/// `argv` in network namespace `ns` (the host's when `ns` is empty).
fn in_ns(ns: &str, argv: &[&str]) -> Command {
    if ns.is_empty() {
        return cmd(argv);
    }
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    c
}

/// `CALL` after the node library, in dash, in namespace `ns`, with `args` as $1...
fn lib(ns: &str, call: &str, args: &[&str]) -> (i32, String) {
    let script = format!("{LIB}\n{call}");
    let mut argv = vec!["sh", "-c", script.as_str(), "kvm-host"];
    argv.extend_from_slice(args);
    run(&mut in_ns(ns, &argv))
}

fn has(tool: &str) -> bool {
    run(&mut cmd(&["sh", "-c", &format!("command -v {tool}")])).0 == 0
}

/// The nft chain of a tap in namespace `ns`, if it exists.
fn chain(ns: &str, tap: &str) -> Option<String> {
    let (code, out) = run(&mut in_ns(
        ns,
        &["nft", "list", "chain", "bridge", "gitvps", tap],
    ));
    (code == 0).then_some(out)
}

/// The packets counted by the chain's last rule (`counter ... drop`: what no rule let through).
fn dropped(chain: &str) -> u64 {
    let last = chain
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("counter packets "))
        .unwrap_or_else(|| panic!("no final counter in {chain}"));
    last.split_whitespace().nth(2).unwrap().parse().unwrap()
}

/// Network namespaces deleted when dropped.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = run(&mut cmd(&["ip", "netns", "del", ns]));
        }
    }
}

/// A process killed when dropped (socat listeners).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(mut c: Command) -> Proc {
    Proc(
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Sends one UDP datagram `from SRC` with socat in namespace `ns`, from `src` to `dst` (socat
/// addresses: `1.2.3.4:5` or `[2001:db8::1]:5`).
fn udp_send(ns: &str, v6: bool, src: &str, dst: &str) {
    let (kind, bind) = if v6 {
        ("UDP6-SENDTO", format!("[{src}]"))
    } else {
        ("UDP4-SENDTO", src.to_owned())
    };
    let mut c = in_ns(
        ns,
        &["socat", "-u", "-", &format!("{kind}:{dst},bind={bind}")],
    );
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("from {src}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "socat from {src}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The neighbour entry of `ip` in namespace `ns` on `dev` (`ip neigh` line; empty when none).
fn neigh(ns: &str, dev: &str, ip: &str) -> String {
    let mut argv = vec!["ip"];
    if !ns.is_empty() {
        argv.extend(["-n", ns]);
    }
    argv.extend(["neigh", "show", ip, "dev", dev]);
    ok(&mut cmd(&argv)).trim().to_owned()
}

/// The filter and the rate of `kvm_net_up`, without QEMU: a veth pair plays the tap, its far end
/// (in a namespace of its own) the guest; the node is another namespace with the bridge. Fast,
/// and it covers what the booted guest cannot easily show: IPv6, neighbour advertisements, a
/// spoofed MAC, the rate measured, a node without nft, and values that are not what gitvps
/// writes.
#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn a_bridged_guest_sends_only_from_its_own_addresses_and_within_its_rate() {
    support::require_root();
    for tool in ["nft", "socat"] {
        assert!(
            has(tool),
            "{tool} is not installed: ./scripts/test installs nftables and socat"
        );
    }
    let pid = std::process::id();
    let (node, guest) = (format!("gvn{pid}"), format!("gvg{pid}"));
    ok(&mut cmd(&["ip", "netns", "add", &node]));
    let _ns = Netns(vec![node.clone(), guest.clone()]);
    ok(&mut cmd(&["ip", "netns", "add", &guest]));
    let (n, g) = (node.as_str(), guest.as_str());
    for argv in [
        vec!["ip", "-n", n, "link", "add", "br0", "type", "bridge"],
        vec!["ip", "-n", n, "link", "set", "br0", "up"],
        vec![
            "ip",
            "-n",
            n,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            "br0",
        ],
        vec![
            "ip",
            "-n",
            n,
            "addr",
            "add",
            "fe80::1/64",
            "dev",
            "br0",
            "nodad",
        ],
        vec![
            "ip",
            "-n",
            n,
            "addr",
            "add",
            "2001:db8:7:1::1/64",
            "dev",
            "br0",
            "nodad",
        ],
        // The VPS's /64 and a foreign one are routed to the guests' link, as on a real node.
        vec![
            "ip",
            "-n",
            n,
            "-6",
            "route",
            "add",
            "2001:db8:7:22::/64",
            "dev",
            "br0",
        ],
        vec![
            "ip",
            "-n",
            n,
            "-6",
            "route",
            "add",
            "2001:db8:9::/64",
            "dev",
            "br0",
        ],
        vec![
            "ip", "-n", n, "link", "add", "gv-t1", "type", "veth", "peer", "name", "eth0", "netns",
            g,
        ],
    ] {
        ok(&mut cmd(&argv));
    }
    let vps: model::VpsId = "t1".parse().unwrap();
    let mac = planner::driver::kvm::qemu_mac(&vps);
    for argv in [
        vec!["ip", "-n", g, "link", "set", "lo", "up"],
        vec![
            "ip",
            "-n",
            g,
            "link",
            "set",
            "eth0",
            "address",
            mac.as_str(),
            "up",
        ],
        vec![
            "ip",
            "-n",
            g,
            "addr",
            "add",
            "198.51.100.10/24",
            "dev",
            "eth0",
        ],
        vec![
            "ip",
            "-n",
            g,
            "addr",
            "add",
            "198.51.100.11/24",
            "dev",
            "eth0",
        ],
        vec![
            "ip",
            "-n",
            g,
            "addr",
            "add",
            "2001:db8:7:22::1/64",
            "dev",
            "eth0",
            "nodad",
        ],
        vec![
            "ip", "-n", g, "-6", "route", "add", "default", "via", "fe80::1", "dev", "eth0",
        ],
    ] {
        ok(&mut cmd(&argv));
    }
    // The directives as gitvps writes them: two IPv4 addresses, a /64, 8Mb/s (1 000 000 B/s).
    let dir = tempfile::tempdir().unwrap();
    let ips: Vec<model::values::VpsAddr> = ["198.51.100.10", "198.51.100.11", "2001:db8:7:22::/64"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    let rate: model::values::Rate = "8Mb/s".parse().unwrap();
    let words = planner::driver::kvm::guard_words(&vps, &ips, Some(&rate));
    assert!(words.ends_with(" rate=1000000"), "{words}");
    let args = dir.path().join("t1.args");
    std::fs::write(
        &args,
        format!("# t1\n#gitvps cpu-weight=100 cpu-cap=0 tap=gv-t1 bridge=br0{words}\n-name\nt1\n"),
    )
    .unwrap();
    let args = args.to_str().unwrap();

    // Up twice: the same rules (counters aside), the veth on the bridge.
    let (code, out) = lib(n, "kvm_net_up t1 \"$1\"", &[args]);
    assert_eq!(code, 0, "{out}");
    let rules = ok(&mut in_ns(
        n,
        &["nft", "-s", "list", "table", "bridge", "gitvps"],
    ));
    let (code, out) = lib(n, "kvm_net_up t1 \"$1\"", &[args]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        ok(&mut in_ns(
            n,
            &["nft", "-s", "list", "table", "bridge", "gitvps"]
        )),
        rules,
        "a second kvm_net_up changes nothing"
    );
    eprintln!("{rules}");
    assert!(
        ok(&mut cmd(&["ip", "-n", n, "link", "show", "gv-t1"])).contains("master br0"),
        "the tap is on the bridge"
    );

    // 1. Sources: its own addresses pass, another one (configured in the guest) does not.
    ok(&mut cmd(&[
        "ip",
        "-n",
        g,
        "addr",
        "add",
        "198.51.100.99/24",
        "dev",
        "eth0",
    ]));
    ok(&mut cmd(&[
        "ip",
        "-n",
        g,
        "addr",
        "add",
        "2001:db8:9::5/64",
        "dev",
        "eth0",
        "nodad",
    ]));
    let seen = dir.path().join("udp");
    let l4 = spawn(in_ns(
        n,
        &[
            "socat",
            "-u",
            "UDP4-RECV:5555,bind=198.51.100.1",
            &format!("OPEN:{},creat,append", seen.display()),
        ],
    ));
    let l6 = spawn(in_ns(
        n,
        &[
            "socat",
            "-u",
            "UDP6-RECV:5556,bind=[2001:db8:7:1::1]",
            &format!("OPEN:{},creat,append", seen.display()),
        ],
    ));
    std::thread::sleep(Duration::from_millis(300));
    let before = dropped(&chain(n, "gv-t1").unwrap());
    for src in ["198.51.100.10", "198.51.100.99", "198.51.100.11"] {
        udp_send(g, false, src, "198.51.100.1:5555");
    }
    for src in ["2001:db8:7:22::1", "2001:db8:9::5"] {
        udp_send(g, true, src, "[2001:db8:7:1::1]:5556");
    }
    std::thread::sleep(Duration::from_millis(500));
    drop((l4, l6));
    let got = std::fs::read_to_string(&seen).unwrap_or_default();
    for src in ["198.51.100.10", "198.51.100.11", "2001:db8:7:22::1"] {
        assert!(
            got.contains(&format!("from {src}\n")),
            "{src} must pass: {got:?}"
        );
    }
    for src in ["198.51.100.99", "2001:db8:9::5"] {
        assert!(!got.contains(src), "{src} must not pass: {got:?}");
    }
    assert!(dropped(&chain(n, "gv-t1").unwrap()) >= before + 2);

    // 2. ARP and neighbour advertisements: the node learns the guest's own addresses only. The
    // guest answers for the foreign ones (it has them), from its MAC and, for IPv6, from its
    // link-local address: only the ARP sender and the advertisement's target give it away.
    for (v6, dst) in [
        (false, "198.51.100.10:9"),
        (false, "198.51.100.99:9"),
        (true, "[2001:db8:7:22::1]:9"),
        (true, "[2001:db8:9::5]:9"),
    ] {
        let kind = if v6 { "UDP6-SENDTO" } else { "UDP4-SENDTO" };
        ok(&mut in_ns(
            n,
            &["sh", "-c", &format!("printf x | socat -u - {kind}:{dst}")],
        ));
    }
    std::thread::sleep(Duration::from_millis(3500));
    for own in ["198.51.100.10", "2001:db8:7:22::1"] {
        let e = neigh(n, "br0", own);
        assert!(e.contains(&format!("lladdr {mac}")), "{own}: {e}");
    }
    for foreign in ["198.51.100.99", "2001:db8:9::5"] {
        let e = neigh(n, "br0", foreign);
        assert!(!e.contains("lladdr"), "{foreign} was learnt: {e}");
    }
    let c = chain(n, "gv-t1").unwrap();
    let na = c
        .lines()
        .find(|l| l.contains("nd-neighbor-advert"))
        .unwrap();
    assert!(!na.contains("counter packets 0 "), "{na}");

    // 3. Another MAC: nothing passes, not even from its own address.
    let l4 = spawn(in_ns(
        n,
        &[
            "socat",
            "-u",
            "UDP4-RECV:5557,bind=198.51.100.1",
            &format!("OPEN:{},creat,append", dir.path().join("mac").display()),
        ],
    ));
    std::thread::sleep(Duration::from_millis(300));
    ok(&mut cmd(&[
        "ip",
        "-n",
        g,
        "link",
        "set",
        "eth0",
        "address",
        "52:54:00:66:66:66",
    ]));
    udp_send(g, false, "198.51.100.10", "198.51.100.1:5557");
    ok(&mut cmd(&[
        "ip",
        "-n",
        g,
        "link",
        "set",
        "eth0",
        "address",
        mac.as_str(),
    ]));
    std::thread::sleep(Duration::from_millis(300));
    drop(l4);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("mac")).unwrap_or_default(),
        "",
        "a frame from another MAC passed"
    );

    // 4. The rate: TCP from the guest for 3 s at 1 000 000 B/s. nft's bucket holds one second
    // of the rate plus 128 KiB: at most about 4.1 MB may arrive in those 3 s (a veth carries
    // hundreds of MB/s unlimited), and TCP keeps close to the rate.
    let got = dir.path().join("tcp");
    let _sink = spawn(in_ns(
        n,
        &[
            "socat",
            "-u",
            "TCP-LISTEN:5001,bind=198.51.100.1,reuseaddr",
            &format!("OPEN:{},creat", got.display()),
        ],
    ));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let mut sender = in_ns(
        g,
        &[
            "socat",
            "-u",
            "/dev/zero",
            "TCP:198.51.100.1:5001,bind=198.51.100.10",
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let bytes = std::fs::metadata(&got).map(|m| m.len()).unwrap_or(0);
    let secs = t.elapsed().as_secs_f64();
    let _ = sender.kill();
    let _ = sender.wait();
    eprintln!("at 8Mb/s, {secs:.2} s of TCP from the guest brought {bytes} bytes");
    // The bucket (1 131 072 bytes) plus the rate for as long as the sender ran, and a margin.
    let most = 1_131_072.0 + 1_000_000.0 * secs + 100_000.0;
    assert!(
        bytes >= 1_000_000 && (bytes as f64) <= most,
        "{bytes} bytes in {secs:.2} s at 1 000 000 B/s (at most {most:.0})"
    );
    let c = chain(n, "gv-t1").unwrap();
    let limit = c.lines().find(|l| l.contains("limit rate over")).unwrap();
    assert!(
        limit.contains("limit rate over 1000000 bytes/second burst 128 kbytes counter")
            && !limit.contains("counter packets 0 "),
        "{limit}"
    );

    // 5. Values gitvps does not write are refused before anything is made.
    let bad = dir.path().join("bad.args");
    for (words, why) in [
        (" mac=52:54:00:00:00:01 ip4=198.51.100.12}", "ip4="),
        (" mac=52:54:00:00:00:01 ip6=2001:db8:7:23::/64", "ip6="),
        (" mac=52:54:00:00:00:01 ip4=198.51.100.12 rate=1e6", "rate="),
        (" ip4=198.51.100.12", "mac="),
    ] {
        std::fs::write(
            &bad,
            format!("#gitvps cpu-weight=1 cpu-cap=0 tap=gv-t2 bridge=br0{words}\n"),
        )
        .unwrap();
        let (code, out) = lib(n, "kvm_net_up t2 \"$1\"", &[bad.to_str().unwrap()]);
        assert_eq!(code, 1, "{words}: {out}");
        assert!(out.contains(why), "{words}: {out}");
        assert!(chain(n, "gv-t2").is_none());
    }

    // 6. A node without nft: the guest does not start unfiltered (69, with the package to
    // install), and no tap is made.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["ip", "sed", "head", "tr"] {
        let (_, path) = run(&mut cmd(&["sh", "-c", &format!("command -v {tool}")]));
        std::os::unix::fs::symlink(path.trim(), bin.join(tool)).unwrap();
    }
    std::fs::write(
        &bad,
        format!("#gitvps cpu-weight=1 cpu-cap=0 tap=gv-t2 bridge=br0{words}\n"),
    )
    .unwrap();
    let (code, out) = lib(
        n,
        &format!("PATH={}\nkvm_net_up t2 \"$1\"", bin.display()),
        &[bad.to_str().unwrap()],
    );
    assert_eq!(code, 69, "{out}");
    assert!(out.contains("apt-get install nftables"), "{out}");
    assert_ne!(
        run(&mut cmd(&["ip", "-n", n, "link", "show", "gv-t2"])).0,
        0
    );

    // 7. Down twice: the tap and its chain are gone, the map has no entry for it.
    for _ in 0..2 {
        let (code, out) = lib(n, "kvm_net_down t1 \"$1\"", &[args]);
        assert_eq!(code, 0, "{out}");
    }
    assert_ne!(
        run(&mut cmd(&["ip", "-n", n, "link", "show", "gv-t1"])).0,
        0
    );
    assert!(chain(n, "gv-t1").is_none());
    let map = ok(&mut in_ns(
        n,
        &["nft", "list", "map", "bridge", "gitvps", "taps"],
    ));
    assert!(!map.contains("gv-t1"), "{map}");
}

/// A host bridge for the test's guest, with the pool's gateway address; removed when dropped,
/// with the guest's tap and, when the test made it, the node's nft table.
struct HostBridge {
    name: String,
    tap: String,
    table_was_there: bool,
}

impl Drop for HostBridge {
    fn drop(&mut self) {
        let _ = run(&mut cmd(&["ip", "link", "del", &self.tap]));
        let _ = run(&mut cmd(&["ip", "link", "del", &self.name]));
        if self.table_was_there {
            let _ = lib("", "kvm_unguard test \"$1\"", &[&self.tap]);
        } else {
            let _ = run(&mut cmd(&["nft", "delete", "table", "bridge", "gitvps"]));
        }
    }
}

/// A /24 of the documentation ranges that no route of this machine covers but the default one.
fn free_subnet() -> &'static str {
    for s in ["198.51.100", "203.0.113", "192.0.2"] {
        let routes = ok(&mut cmd(&[
            "ip",
            "-4",
            "-o",
            "route",
            "show",
            "to",
            "match",
            &format!("{s}.1"),
        ]));
        if routes.lines().all(|l| l.starts_with("default")) {
            return s;
        }
    }
    panic!("every documentation /24 is routed on this machine: no room for the test bridge");
}

#[test]
#[ignore = "needs root: scripts/test runs it as root with --include-ignored"]
fn a_bridged_kvm_guest_is_reached_on_its_own_address_and_cannot_spoof() {
    support::require_root();
    assert!(
        has("nft"),
        "nft is not installed: ./scripts/test installs nftables"
    );
    let t0 = Instant::now();
    let pid = std::process::id() % 100_000;
    let vps = format!("vb{pid}");
    let net = free_subnet();
    let (gateway, ip, spoofed) = (format!("{net}.1"), format!("{net}.10"), format!("{net}.99"));
    let tap = planner::driver::kvm::tap_name(&vps.parse().unwrap());
    let table_was_there = run(&mut cmd(&["nft", "list", "table", "bridge", "gitvps"])).0 == 0;
    let bridge = HostBridge {
        name: format!("gvbr{pid}"),
        tap: tap.clone(),
        table_was_there,
    };
    let br = bridge.name.as_str();
    ok(&mut cmd(&["ip", "link", "add", br, "type", "bridge"]));
    ok(&mut cmd(&[
        "ip",
        "addr",
        "add",
        &format!("{gateway}/24"),
        "dev",
        br,
    ]));
    ok(&mut cmd(&["ip", "link", "set", br, "up"]));
    let node = KvmNode::new(&KvmNodeSpec {
        vps: &vps,
        network: &format!("{net}.0/24"),
        gateway: &gateway,
        kvm: &format!("accel = \"tcg\"\nnetwork = \"bridge\"\nbridge = \"{br}\"\n"),
        plan_extra: "bandwidth = \"100Mb/s\"\n",
        format: "raw",
    });
    node.vps_file(&format!("\"{ip}\""), "");

    // 1. Apply: installed, the tap on the bridge behind its filter, booted to its login prompt.
    node.converge("first apply");
    eprintln!(
        "first apply to the login prompt: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let pid = node.qemu_pid().expect("QEMU runs");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        cmdline.contains(&format!("tap,id=n0,ifname={tap},")),
        "{cmdline}"
    );
    let link = ok(&mut cmd(&["ip", "link", "show", &tap]));
    assert!(link.contains(&format!("master {br}")), "{link}");
    let rules = chain("", &tap).expect("the guest's chain");
    eprintln!("{rules}");
    assert!(
        rules.contains(&format!("ip saddr {ip} accept"))
            && rules.contains("limit rate over 12500000 bytes/second burst 128 kbytes"),
        "{rules}"
    );

    // 2. Reached over the bridge on its own address, with the customer's key.
    let t = Instant::now();
    let out = node.in_guest(&ip, 22, "ip -4 -o addr show scope global");
    eprintln!(
        "ssh over the bridge after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(out.contains(&format!("inet {ip}/24")), "{out}");
    let nic = out.split_whitespace().nth(1).unwrap().to_owned();

    // 3. Anti-spoofing: the guest takes an address that is not its own; datagrams from it never
    // reach the gateway, those from its own address do (before and after).
    let sock = UdpSocket::bind((gateway.as_str(), 0)).unwrap();
    let port = sock.local_addr().unwrap().port();
    let before = dropped(&chain("", &tap).unwrap());
    let send = format!(
        "ip addr add {spoofed}/24 dev {nic} && for src in {ip} {spoofed} {ip}; do perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(Proto => \"udp\", LocalAddr => $ARGV[0], PeerAddr => $ARGV[1]) or die \"$ARGV[0]: $!\\n\"; $s->send(\"from $ARGV[0]\\n\") or die \"send: $!\\n\"' $src {gateway}:{port} || exit 1; sleep 0.5; done"
    );
    node.in_guest(&ip, 22, &send);
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        got.push(format!(
            "{} (source {})",
            String::from_utf8_lossy(&buf[..n]).trim(),
            from.ip()
        ));
    }
    assert_eq!(
        got,
        vec![format!("from {ip} (source {ip})"); 2],
        "only the guest's own address may send"
    );
    assert!(dropped(&chain("", &tap).unwrap()) > before);
    // ARP: the gateway asks for the foreign address; the guest answers (it has it) but the
    // answer names an address that is not its own: dropped, never learnt.
    let probe = UdpSocket::bind((gateway.as_str(), 0)).unwrap();
    probe.send_to(b"x", (spoofed.as_str(), 9)).unwrap();
    probe.send_to(b"x", (ip.as_str(), 9)).unwrap();
    std::thread::sleep(Duration::from_millis(3500));
    let e = neigh("", br, &spoofed);
    assert!(!e.contains("lladdr"), "{spoofed} was learnt: {e}");
    let e = neigh("", br, &ip);
    let mac = planner::driver::kvm::qemu_mac(&vps.parse().unwrap());
    assert!(e.contains(&format!("lladdr {mac}")), "{ip}: {e}");

    // 4. The node loses the guest's rules while it runs (a flushed ruleset): observe sees it,
    // and the apply loads them again without restarting the guest.
    let (code, out) = lib("", "kvm_unguard test \"$1\"", &[&tap]);
    assert_eq!(code, 0, "{out}");
    assert!(chain("", &tap).is_none());
    let p = node.gitvps(&["plan"]);
    assert_eq!(p.code, 2, "{p:?}");
    assert!(
        p.stdout.contains(&format!(
            "~ {vps}: restore its network filter (its rules were lost)"
        )),
        "{p:?}"
    );
    node.converge("restore the filter");
    assert_eq!(node.qemu_pid(), Some(pid), "the guest kept running");
    assert!(chain("", &tap).is_some_and(|r| r.contains(&format!("ip saddr {ip} accept"))));
    node.in_guest(&ip, 22, "true");

    // 5. Usage: what the guest sends and writes is in the collector's totals, read through the
    // node's sshd from the tap's statistics, QMP's blockstats and the QEMU process's CPU time.
    let db = node.dir.path().join("monitor.db");
    let collect = || {
        let r = node.gitvps(&["monitor", "collect", "--once", "--db", db.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(r.stdout.contains("kvm1: sampled 1, missing 0, "), "{r:?}");
    };
    collect();
    let sink = std::net::TcpListener::bind((gateway.as_str(), 0)).unwrap();
    let sink_port = sink.local_addr().unwrap().port();
    let drain = std::thread::spawn(move || {
        let (mut c, _) = sink.accept().unwrap();
        std::io::copy(&mut c, &mut std::io::sink()).unwrap()
    });
    const SENT: u64 = 4_000_000;
    const WRITTEN: u64 = 32 << 20;
    node.in_guest(
        &ip,
        22,
        &format!(
            "head -c {SENT} /dev/zero | perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(PeerAddr => $ARGV[0]) or die \"$ARGV[0]: $!\\n\"; binmode STDIN; while (read(STDIN, $b, 65536)) {{ print $s $b or die \"send: $!\\n\" }}' {gateway}:{sink_port} && dd if=/dev/urandom of=/root/usage.bin bs=1M count={} oflag=direct status=none && sync",
            WRITTEN >> 20
        ),
    );
    assert_eq!(drain.join().unwrap(), SENT);
    collect();
    let store = executor::samples::Store::open(&db).unwrap();
    let series = store.vps_series(&vps.parse().unwrap()).unwrap();
    let far = chrono::Duration::days(1);
    let now = chrono::Utc::now();
    let used = series.range(monitor::Tier::Raw, now - far, now + far).fold(
        monitor::counters::Counters::default(),
        |mut u, (_, b)| {
            u.net_tx_bytes += b.usage.net_tx_bytes;
            u.disk_write_bytes += b.usage.disk_write_bytes;
            u.disk_write_ops += b.usage.disk_write_ops;
            u.cpu_ms += b.usage.cpu_ms;
            u
        },
    );
    eprintln!("usage of the guest between two collections: {used:?}");
    assert!(
        used.net_tx_bytes >= SENT && used.net_tx_bytes < SENT * 2,
        "the guest sent {SENT} bytes: {used:?}"
    );
    assert!(
        used.disk_write_bytes >= WRITTEN && used.disk_write_ops > 0,
        "the guest wrote {WRITTEN} bytes: {used:?}"
    );
    assert!(used.cpu_ms > 0, "{used:?}");

    // 6. Stopped: QEMU, the tap and its rules are gone.
    node.edit_vps(
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\npower = \"stopped\"\n",
    );
    node.converge("stop");
    assert_eq!(node.qemu_pid(), None);
    assert_ne!(
        run(&mut cmd(&["ip", "link", "show", &tap])).0,
        0,
        "the tap is gone"
    );
    assert!(chain("", &tap).is_none(), "its chain is gone");
    let map = ok(&mut cmd(&[
        "nft", "list", "map", "bridge", "gitvps", "taps",
    ]));
    assert!(!map.contains(&format!("\"{tap}\"")), "{map}");
    eprintln!("whole test: {:.1} s", t0.elapsed().as_secs_f64());
}
