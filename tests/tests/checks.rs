//! Service checks end to end: `gitvps monitor collect --once` probes real servers on a VPS's
//! address (sshd, Python's HTTP server, the test SMTP server, dovecot's POP3 and IMAP,
//! pyftpdlib's FTP, the system's ping), alerts through a real SMTP server after N failures,
//! mails the recovery, and leaves a stopped VPS alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::fleet::Fleet;

/// The VPS's address: loopback, so servers can listen on it without touching the network.
const IP: &str = "127.77.0.10";

/// A child process killed when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind((IP, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on `IP:port`.
fn wait_listening(port: u16, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if std::net::TcpStream::connect((IP, port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} does not listen on {IP}:{port}");
}

fn spawn(cmd: &mut Command, port: u16, what: &str) -> Server {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
    let s = Server(child);
    wait_listening(port, what);
    s
}

fn http_server(port: u16, dir: &Path) -> Server {
    spawn(
        Command::new("/usr/bin/python3")
            .args(["-m", "http.server", "--bind", IP, &port.to_string()])
            .current_dir(dir),
        port,
        "python3 -m http.server",
    )
}

fn ftp_server(port: u16, dir: &Path) -> Server {
    assert!(
        Path::new("/usr/lib/python3/dist-packages/pyftpdlib").exists(),
        "python3-pyftpdlib is missing: run ./scripts/deps install test"
    );
    spawn(
        Command::new("/usr/bin/python3")
            .args(["-m", "pyftpdlib", "-i", IP, "-p", &port.to_string(), "-d"])
            .arg(dir),
        port,
        "pyftpdlib",
    )
}

/// Dovecot with POP3 and IMAP on `IP`, its state in `dir`.
fn dovecot(pop3: u16, imap: u16, dir: &Path) -> Server {
    support::require_root();
    let d = dir.display();
    let conf = dir.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols = pop3 imap\nlisten = {IP}\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\nmail_location = maildir:{d}/mail\npassdb {{\n  driver = static\n  args = password=unused\n}}\nuserdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={d}/home\n}}\nservice imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\nservice pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let s = spawn(
        Command::new("/usr/sbin/dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf),
        pop3,
        "dovecot",
    );
    wait_listening(imap, "dovecot's IMAP");
    s
}

fn collect(f: &Fleet, db: &Path, smtp: &support::smtp::SmtpServer) -> support::fleet::Run {
    f.command(&["monitor", "collect", "--once", "--db", db.to_str().unwrap()])
        .env("GITVPS_SMTP_URL", format!("smtp://{}", smtp.addr()))
        .output()
        .unwrap()
        .into()
}

/// A fleet of one node whose pool is on loopback, so a VPS's address is one the test's servers
/// can listen on; a check is down after `failures` failures in a row.
fn loopback_fleet(failures: u32) -> Fleet {
    let f = Fleet::new(&["node1"]);
    let pools = std::fs::read_to_string(f.repo.join("pools.toml")).unwrap();
    std::fs::write(
        f.repo.join("pools.toml"),
        pools.replace("192.0.2.", "127.77.0."),
    )
    .unwrap();
    f.edit(
        "gitvps.toml",
        "check_failures = 3",
        &format!("check_failures = {failures}"),
    );
    f
}

#[test]
fn checks_probe_real_servers_alert_after_two_failures_and_mail_the_recovery() {
    let f = loopback_fleet(2);
    f.edit(
        "gitvps.toml",
        "check_timeout_secs = 5",
        "check_timeout_secs = 3",
    );

    let work = tempfile::tempdir().unwrap();
    let sshd = support::Sshd::start_on(IP);
    let http_port = free_port();
    let _http = http_server(http_port, work.path());
    let ftp_dir = work.path().join("ftp");
    std::fs::create_dir_all(&ftp_dir).unwrap();
    let ftp_port = free_port();
    let _ftp = ftp_server(ftp_port, &ftp_dir);
    let (pop3_port, imap_port) = (free_port(), free_port());
    let dove_dir = work.path().join("dovecot");
    std::fs::create_dir_all(&dove_dir).unwrap();
    let _dovecot = dovecot(pop3_port, imap_port, &dove_dir);
    // The SMTP server is both a checked service of the VPS and where the alerts go.
    let smtp = support::smtp::SmtpServer::start_with(&support::smtp::SmtpOptions {
        host: Some(IP.into()),
        ..Default::default()
    });
    let closed = free_port();

    let checks = format!(
        "\n[monitor]\nalert_email = \"ops@example.net\"\nchecks = [\n  \"ping\",\n  {{ service = \"ssh\", port = {ssh} }},\n  {{ service = \"http\", port = {http_port} }},\n  {{ service = \"smtp\", port = {smtp_port} }},\n  {{ service = \"pop3\", port = {pop3_port} }},\n  {{ service = \"imap\", port = {imap_port} }},\n  {{ service = \"ftp\", port = {ftp_port} }},\n  {{ service = \"http\", port = {closed}, timeout_secs = 2 }},\n]\n",
        ssh = sshd.port,
        smtp_port = smtp.port,
    );
    f.vps("xen10", "node1", IP, &checks);
    let v = f.gitvps(&["validate"]);
    assert_eq!(v.code, 0, "{v:?}");
    f.converge();

    let db = f.dir.path().join("monitor.db");
    let first = collect(&f, &db, &smtp);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(
        first.stdout.contains("checks: 8 up, 0 down, 0 paused"),
        "one failure is not down yet: {first:?}"
    );
    assert!(
        first.stdout.contains(&format!(
            "failing xen10 http {IP}:{closed} (1 of 2): cannot connect"
        )),
        "{first:?}"
    );
    assert_eq!(smtp.count(), 0, "no alert after one failure");

    let second = collect(&f, &db, &smtp);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stdout.contains("checks: 7 up, 1 down, 0 paused"),
        "{second:?}"
    );
    assert!(
        second.stdout.contains("mailed ops@example.net: xen10"),
        "{second:?}"
    );
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "{}", smtp.log());
    assert_eq!(msgs[0].envelope_to(), "ops@example.net");
    let m = msgs[0].parsed();
    assert_eq!(
        m.subject(),
        Some(format!("Alert: the http {IP}:{closed} check of xen10 is failing").as_str())
    );
    let body = m.body_text(0).unwrap_or_default().into_owned();
    assert!(body.contains("cannot connect"), "{body}");

    // What every check found, as stored: the servers' own greetings.
    {
        let store = executor::samples::Store::open(&db).unwrap();
        let states = store.check_states().unwrap();
        let xen10 = &states["xen10"];
        let detail = |service: &str| -> String {
            xen10
                .values()
                .find(|s| s.label.starts_with(&format!("{service} ")))
                .map(|s| format!("{:?} {}", s.status, s.detail))
                .unwrap()
        };
        assert!(detail("ssh").starts_with("Up SSH-2.0-OpenSSH"), "{xen10:?}");
        assert!(detail("smtp").starts_with("Up 220 "), "{xen10:?}");
        assert!(detail("pop3").starts_with("Up +OK"), "{xen10:?}");
        assert!(detail("imap").starts_with("Up * OK"), "{xen10:?}");
        assert!(detail("ftp").starts_with("Up 220"), "{xen10:?}");
        assert!(detail("ping").starts_with("Up echo reply"), "{xen10:?}");
    }

    // A third failure: still down, no second alert.
    let third = collect(&f, &db, &smtp);
    assert!(third.stdout.contains("1 down"), "{third:?}");
    assert_eq!(smtp.count(), 1);

    // The service comes up: one recovery mail.
    let _late = http_server(closed, work.path());
    let back = collect(&f, &db, &smtp);
    assert!(
        back.stdout.contains("checks: 8 up, 0 down, 0 paused"),
        "{back:?}"
    );
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 2, "{}", smtp.log());
    assert_eq!(
        msgs[1].parsed().subject(),
        Some(format!("Resolved: the http {IP}:{closed} check of xen10 is passing again").as_str())
    );

    // Stopped by its customer: nothing probed, nothing mailed, even with every server gone.
    drop(_late);
    f.edit(
        "inventory/vps/xen10.toml",
        "os = \"debian-12\"\n",
        "os = \"debian-12\"\npower = \"stopped\"\n",
    );
    for _ in 0..3 {
        let r = collect(&f, &db, &smtp);
        assert!(r.stdout.contains("checks: 0 up, 0 down, 8 paused"), "{r:?}");
    }
    assert_eq!(smtp.count(), 2);
}

#[test]
fn a_check_of_an_address_the_vps_does_not_own_is_refused() {
    let f = Fleet::new(&["node1"]);
    f.vps(
        "xen10",
        "node1",
        "192.0.2.10",
        "\n[monitor]\nchecks = [{ service = \"http\", address = \"198.51.100.7\" }]\n",
    );
    let v = f.gitvps(&["validate"]);
    assert_eq!(v.code, 1, "{v:?}");
    assert!(
        v.stderr.contains("inventory/vps/xen10.toml:")
            && v.stderr
                .contains("monitor.checks[0]: 198.51.100.7 is not an address of this VPS"),
        "{v:?}"
    );
    // Nothing probes it either: the collector refuses the inventory.
    let db = f.dir.path().join("monitor.db");
    let r = f.gitvps(&["monitor", "collect", "--once", "--db", db.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r:?}");
}

/// A self-signed certificate and `openssl s_server -www` on `IP:port`: a real TLS server
/// answering HTTP.
fn tls_server(port: u16, dir: &Path) -> Server {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=vps.example.net",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl req");
    spawn(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("{IP}:{port}"))
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key),
        port,
        "openssl s_server",
    )
}

#[test]
fn an_https_check_speaks_tls_to_a_real_server_and_fails_on_plain_http() {
    let f = Fleet::new(&["node1"]);
    let pools = std::fs::read_to_string(f.repo.join("pools.toml")).unwrap();
    std::fs::write(
        f.repo.join("pools.toml"),
        pools.replace("192.0.2.", "127.77.0."),
    )
    .unwrap();
    f.edit("gitvps.toml", "check_failures = 3", "check_failures = 1");
    let work = tempfile::tempdir().unwrap();
    let (tls_port, plain_port) = (free_port(), free_port());
    let _tls = tls_server(tls_port, work.path());
    let _plain = http_server(plain_port, work.path());
    let smtp = support::smtp::SmtpServer::start();
    let checks = format!(
        "\n[monitor]\nalert_email = \"ops@example.net\"\nchecks = [\n  {{ service = \"https\", port = {tls_port} }},\n  {{ service = \"https\", port = {plain_port}, timeout_secs = 3 }},\n]\n"
    );
    f.vps("xen10", "node1", IP, &checks);
    f.converge();
    let db = f.dir.path().join("monitor.db");
    let r = collect(&f, &db, &smtp);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("checks: 1 up, 1 down, 0 paused"), "{r:?}");
    let store = executor::samples::Store::open(&db).unwrap();
    let states = store.check_states().unwrap();
    let found = |port: u16| -> String {
        states["xen10"]
            .values()
            .find(|s| s.label == format!("https {IP}:{port}"))
            .map(|s| format!("{:?} {}", s.status, s.detail))
            .unwrap_or_else(|| panic!("https {IP}:{port}: {states:?}"))
    };
    // openssl's -www page answers "HTTP/1.0 200 ok".
    assert!(
        found(tls_port).starts_with("Up HTTP/1.0 200"),
        "{}",
        found(tls_port)
    );
    let plain = found(plain_port);
    assert!(
        plain.starts_with("Down ") && plain.to_lowercase().contains("tls"),
        "{plain}"
    );
}

/// The customer's view of `vps` in `GET /api/me` through the hooks at `addr`, if listed.
fn me_vps(addr: &str, customer: &str, password: &str, vps: &str) -> Option<serde_json::Value> {
    let (code, body) = support::http(
        addr,
        "POST",
        "/api/login",
        None,
        &format!(r#"{{"customer":"{customer}","password":"{password}"}}"#),
    );
    assert_eq!(code, 200, "{body}");
    let login: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = login["token"].as_str().unwrap();
    let (code, body) = support::http(addr, "GET", "/api/me", Some(token), "");
    assert_eq!(code, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).unwrap();
    me["vps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == vps)
        .cloned()
}

#[test]
fn check_states_reach_the_panel_through_the_status_branch_and_only_their_owner_sees_them() {
    let f = loopback_fleet(1);
    let work = tempfile::tempdir().unwrap();
    let sshd = support::Sshd::start_on(IP);
    let http_port = free_port();
    let _http = http_server(http_port, work.path());
    let closed = free_port();
    f.vps(
        "xen10",
        "node1",
        IP,
        &format!(
            "\n[monitor]\nchecks = [\n  {{ service = \"ssh\", port = {ssh} }},\n  {{ service = \"http\", port = {http_port} }},\n  {{ service = \"http\", port = {closed}, timeout_secs = 2 }},\n]\n",
            ssh = sshd.port
        ),
    );
    // Another customer's VPS, with a check of its own.
    f.vps(
        "xen11",
        "node1",
        "127.77.0.11",
        &format!(
            "\n[monitor]\nchecks = [{{ service = \"http\", port = {closed}, timeout_secs = 2 }}]\n"
        ),
    );
    f.edit("inventory/vps/xen11.toml", "c-0001", "c-0002");
    f.converge();
    support::commit_all(&f.repo);

    let db = f.dir.path().join("monitor.db");
    let smtp = support::smtp::SmtpServer::start();
    let run: support::fleet::Run = f
        .command(&[
            "monitor",
            "collect",
            "--once",
            "--status",
            "--db",
            db.to_str().unwrap(),
        ])
        .env("GITVPS_SMTP_URL", format!("smtp://{}", smtp.addr()))
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("checks: 2 up, 2 down, 0 paused"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("status: 2 VPS(es) written to branch `status`"),
        "{run:?}"
    );
    // The file on the branch holds no alert address (the checks have none, the customer's
    // e-mail is not copied) and no secret: labels, states, what the servers answered.
    let file = support::git(&f.repo, &["show", "status:monitor/xen10.json"]);
    assert!(!file.contains('@'), "{file}");

    let served = support::Served::start(&f.repo, work.path(), None);
    let xen10 = me_vps(&served.addr, "c-0001", "demo-jane", "xen10").expect("xen10 listed");
    let m = &xen10["monitor"];
    assert_eq!(m["known"], true, "{xen10}");
    let checks = m["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{m}");
    let by_name = |name: String| {
        checks
            .iter()
            .find(|c| c["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    let ssh = by_name(format!("ssh {IP}:{}", sshd.port));
    assert_eq!(ssh["kind"], "ssh");
    assert_eq!(ssh["state"], "up");
    assert!(
        ssh["detail"]
            .as_str()
            .unwrap()
            .starts_with("SSH-2.0-OpenSSH"),
        "{ssh}"
    );
    let http = by_name(format!("http {IP}:{http_port}"));
    assert_eq!(http["state"], "up", "{http}");
    let down = by_name(format!("http {IP}:{closed}"));
    assert_eq!(down["state"], "down", "{down}");
    assert_eq!(down["failures"], 1);
    assert!(
        down["detail"].as_str().unwrap().contains("cannot connect"),
        "{down}"
    );
    assert!(down["since"].as_str().unwrap().ends_with('Z'), "{down}");
    // The collector's counters came along (the stand-in's xentop, read over SSH).
    assert!(m["counters"]["net_rx_bytes"].is_u64(), "{m}");

    // c-0001 does not see xen11 or its checks; c-0002 sees only its own.
    assert!(me_vps(&served.addr, "c-0001", "demo-jane", "xen11").is_none());
    let xen11 = me_vps(&served.addr, "c-0002", "demo-lin", "xen11").expect("xen11 listed");
    let theirs = xen11["monitor"]["checks"].as_array().unwrap();
    assert_eq!(theirs.len(), 1, "{xen11}");
    assert_eq!(theirs[0]["name"], format!("http 127.77.0.11:{closed}"));
    assert!(me_vps(&served.addr, "c-0002", "demo-lin", "xen10").is_none());
}
