//! A real SMTP server for the mail tests (`tests/support/smtpd.py`, aiosmtpd on 127.0.0.1) that
//! stores what it accepts in a Maildir, and a throwaway CA with a certificate for 127.0.0.1.
//!
//! Each server is killed when its handle is dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The Debian interpreter, which finds python3-aiosmtpd (another `python3` on PATH may not).
const PYTHON: &str = "/usr/bin/python3";

/// What the server does besides accepting mail.
#[derive(Debug, Clone, Default)]
pub struct SmtpOptions {
    /// Offer STARTTLS with this certificate and key, and require it.
    pub starttls: Option<(PathBuf, PathBuf)>,
    /// TLS from the first byte with this certificate and key.
    pub implicit_tls: Option<(PathBuf, PathBuf)>,
    /// Require AUTH with `user:password`.
    pub auth: Option<String>,
    /// Answer 550 to RCPT TO these addresses.
    pub reject_rcpt: Vec<String>,
    /// Answer 450 to RCPT TO these addresses.
    pub defer_rcpt: Vec<String>,
    /// Greet with 554 and take nothing.
    pub refuse: bool,
    /// Exit right after accepting this many messages.
    pub max: Option<usize>,
    /// Listen on this loopback address instead of 127.0.0.1.
    pub host: Option<String>,
}

/// A running `smtpd.py`.
pub struct SmtpServer {
    pub dir: tempfile::TempDir,
    /// The address it listens on.
    pub host: String,
    pub port: u16,
    /// Where accepted messages land (`new/`).
    pub maildir: PathBuf,
    child: Child,
    _stdin: ChildStdin,
}

/// One message as the server stored it: its envelope, then the message as sent.
pub struct Delivered {
    /// The whole file: `Return-Path` and `Delivered-To` on top of the message.
    pub raw: Vec<u8>,
}

impl Delivered {
    /// The message parsed (headers decoded, MIME parts split).
    pub fn parsed(&self) -> mail_parser::Message<'_> {
        mail_parser::MessageParser::default()
            .parse(&self.raw)
            .expect("a parsable message")
    }

    /// The envelope sender, from `Return-Path`.
    pub fn envelope_from(&self) -> String {
        self.parsed()
            .return_address()
            .unwrap_or_default()
            .to_owned()
    }

    /// The envelope recipients, from `Delivered-To`.
    pub fn envelope_to(&self) -> String {
        self.parsed()
            .header_raw("Delivered-To")
            .unwrap_or_default()
            .trim()
            .to_owned()
    }
}

fn script() -> PathBuf {
    crate::top().join("tests/support/smtpd.py")
}

impl SmtpServer {
    /// A plain server.
    pub fn start() -> SmtpServer {
        SmtpServer::start_with(&SmtpOptions::default())
    }

    /// A server with options, on a port the system picks.
    pub fn start_with(opts: &SmtpOptions) -> SmtpServer {
        assert!(
            Path::new(PYTHON).exists()
                && Path::new("/usr/lib/python3/dist-packages/aiosmtpd").exists(),
            "python3-aiosmtpd is missing: run ./scripts/test, which installs it"
        );
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let mut cmd = Command::new(PYTHON);
        cmd.arg(script()).arg("--maildir").arg(&maildir);
        if let Some((cert, key)) = &opts.starttls {
            cmd.arg("--starttls").arg(cert).arg(key);
        }
        if let Some((cert, key)) = &opts.implicit_tls {
            cmd.arg("--implicit-tls").arg(cert).arg(key);
        }
        if let Some(auth) = &opts.auth {
            cmd.args(["--auth", auth]);
        }
        for a in &opts.reject_rcpt {
            cmd.args(["--reject-rcpt", a]);
        }
        for a in &opts.defer_rcpt {
            cmd.args(["--defer-rcpt", a]);
        }
        if opts.refuse {
            cmd.arg("--refuse");
        }
        if let Some(max) = opts.max {
            cmd.args(["--max", &max.to_string()]);
        }
        let host = opts.host.clone().unwrap_or_else(|| "127.0.0.1".to_owned());
        cmd.args(["--host", &host]);
        let log = dir.path().join("smtpd.log");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start smtpd.py");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "smtpd.py did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        SmtpServer {
            dir,
            host,
            port,
            maildir,
            child,
            _stdin: stdin,
        }
    }

    /// `HOST:PORT` (`127.0.0.1:PORT` by default).
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The messages accepted so far, in the order they were stored.
    pub fn messages(&self) -> Vec<Delivered> {
        let Ok(entries) = std::fs::read_dir(self.maildir.join("new")) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, String, PathBuf)> = entries
            .map(|e| {
                let e = e.unwrap();
                let mtime = e.metadata().unwrap().modified().unwrap();
                (
                    mtime,
                    e.file_name().to_string_lossy().into_owned(),
                    e.path(),
                )
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|(_, _, path)| Delivered {
                raw: std::fs::read(path).unwrap(),
            })
            .collect()
    }

    /// How many messages were accepted.
    pub fn count(&self) -> usize {
        self.messages().len()
    }

    /// Waits for the server to exit by itself (after `--max`); true if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The server's log (for failed tests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("smtpd.log")).unwrap_or_default()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA made for one test, and a server certificate it signed for 127.0.0.1.
pub struct TestCa {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM): what the client trusts.
    pub ca: PathBuf,
    /// The server certificate (PEM) for `IP:127.0.0.1`.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A self-signed EC root and a leaf for 127.0.0.1 (a root cannot be a server certificate
    /// for rustls), made with the `openssl` command.
    pub fn generate() -> TestCa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut root = vec!["req", "-x509"];
        root.extend(ec);
        root.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=gitvps test CA",
        ]);
        openssl(d, &root);
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend([
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(d, &req);
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1\n",
        )
        .unwrap();
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "cert.pem",
            ],
        );
        TestCa {
            ca: d.join("ca.pem"),
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
            dir,
        }
    }

    /// The server certificate and key, as the server options take them.
    pub fn server_pair(&self) -> (PathBuf, PathBuf) {
        (self.cert.clone(), self.key.clone())
    }
}
