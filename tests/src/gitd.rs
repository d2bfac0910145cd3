//! Git servers for the hooks' git faults: `git daemon` (git://, with pushes on, so the bare
//! repo's own hooks run), started on a free port of 127.0.0.1 and stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `git daemon` serving the bare repos under `base`, pushes allowed.
pub struct GitDaemon {
    child: Option<Child>,
    base: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl GitDaemon {
    /// Starts the daemon on a free port and waits until it accepts connections.
    pub fn start(base: &Path) -> GitDaemon {
        let mut d = GitDaemon {
            child: None,
            base: base.to_owned(),
            port: crate::free_port(),
        };
        d.restart();
        d
    }

    /// The `git://` URL of the bare repo `name` under the base folder.
    pub fn url(&self, name: &str) -> String {
        format!("git://127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the daemon: its port refuses connections until [`GitDaemon::restart`].
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        // `git daemon` runs `git-daemon` as a child that a kill would leave listening: start
        // the daemon itself.
        let exec_path = Command::new("git").arg("--exec-path").output().unwrap();
        let exec_path = String::from_utf8_lossy(&exec_path.stdout).trim().to_owned();
        let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .arg("--reuseaddr")
            .arg("--export-all")
            .arg("--enable=receive-pack")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={}", self.port))
            .arg(format!("--base-path={}", self.base.display()))
            .arg(&self.base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        assert!(
            crate::wait_ready(&mut child, "127.0.0.1", self.port),
            "git daemon did not start on port {}",
            self.port
        );
        self.child = Some(child);
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}
