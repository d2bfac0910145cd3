//! Git servers for the hooks' git faults: `git daemon` (git://, with pushes on, so the bare
//! repo's own hooks run), started on a free port of 127.0.0.1 and stopped when dropped.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A server process on a port of 127.0.0.1 that a test stops and starts again.
pub struct Daemon {
    child: Option<Child>,
    program: PathBuf,
    args: Vec<OsString>,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Daemon {
    /// Starts `program` with `args` (which make it listen on `port`) and waits for the port.
    pub fn start(program: PathBuf, args: Vec<OsString>, port: u16) -> Daemon {
        let mut d = Daemon {
            child: None,
            program,
            args,
            port,
        };
        d.restart();
        d
    }

    /// Stops the server: its port refuses connections until [`Daemon::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.program.display()));
        assert!(
            crate::wait_ready(&mut child, "127.0.0.1", self.port),
            "{} did not start on port {}",
            self.program.display(),
            self.port
        );
        self.child = Some(child);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The path of one of git's own programs (`git-daemon`, `git-http-backend`).
pub fn git_program(name: &str) -> PathBuf {
    let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
    Path::new(String::from_utf8_lossy(&exec_path.stdout).trim()).join(name)
}

/// `git daemon` serving the bare repos under a folder, pushes allowed.
pub struct GitDaemon(pub Daemon);

impl GitDaemon {
    /// Starts the daemon for the repos under `base` on a free port.
    pub fn start(base: &Path) -> GitDaemon {
        let port = crate::free_port();
        // `git daemon` runs `git-daemon` as a child that a kill would leave listening: start
        // the daemon itself.
        let args = [
            "--reuseaddr".to_owned(),
            "--export-all".to_owned(),
            "--enable=receive-pack".to_owned(),
            "--listen=127.0.0.1".to_owned(),
            format!("--port={port}"),
            format!("--base-path={}", base.display()),
            base.display().to_string(),
        ];
        GitDaemon(Daemon::start(
            git_program("git-daemon"),
            args.into_iter().map(OsString::from).collect(),
            port,
        ))
    }

    /// The `git://` URL of the bare repo `name` under the base folder.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.0.port)
    }
}
