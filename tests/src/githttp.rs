//! git's `http-backend` behind lighttpd on a free port of 127.0.0.1, with HTTP basic auth
//! (one user), serving the bare repos of a folder; stopped when dropped.

use std::path::Path;

/// lighttpd running `git http-backend` under `/git/`.
pub struct GitHttp {
    /// The lighttpd process (stop and restart it).
    pub daemon: crate::gitd::Daemon,
    dir: tempfile::TempDir,
}

impl GitHttp {
    /// Serves the bare repos under `root` to `user` with `password` (pushes too).
    pub fn start(root: &Path, user: &str, password: &str) -> GitHttp {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = crate::free_port();
        std::fs::write(d.join("users"), format!("{user}:{password}\n")).unwrap();
        let backend = crate::gitd::git_program("git-http-backend");
        let conf = d.join("lighttpd.conf");
        std::fs::write(
            &conf,
            format!(
                r#"server.modules = ("mod_auth", "mod_authn_file", "mod_alias", "mod_setenv", "mod_cgi")
server.document-root = "{d}"
server.bind = "127.0.0.1"
server.port = {port}
server.errorlog = "{d}/error.log"
auth.backend = "plain"
auth.backend.plain.userfile = "{d}/users"
auth.require = ("/git/" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
alias.url = ("/git" => "{backend}")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
"#,
                d = d.display(),
                backend = backend.display(),
                root = root.display(),
            ),
        )
        .unwrap();
        let daemon = crate::gitd::Daemon::start(
            "lighttpd".into(),
            vec!["-D".into(), "-f".into(), conf.into()],
            port,
        );
        GitHttp { daemon, dir }
    }

    /// The URL of the bare repo `name`, without credentials.
    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/git/{name}", self.daemon.port)
    }

    /// lighttpd's error log (for failed tests).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}
