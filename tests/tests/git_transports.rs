//! The hooks' real transports: `gitvps serve` (built with the hooks' `https` and `ssh`
//! features) pushing over HTTP (git http-backend behind lighttpd, basic auth) and over SSH
//! (sshd, git-shell), the credentials from the environment and never in an error or a log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gitvps_tests as support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::githttp::GitHttp;
use support::hookrepo::{act, assert_linear, head, login, seed};
use support::{Served, Sshd, git, output_text};

const PASSWORD: &str = "s3cret-Pa55word-from-the-environment";

/// `gitvps serve` on `url` that must not start: its output (checked free of `secret`).
fn refused_start(url: &str, dir: &Path, env: &[(&str, &str)], secret: &str) -> String {
    let mut cmd = Served::command(std::ffi::OsStr::new(url), dir);
    cmd.env("GITVPS_HOOKS_CACHE", dir.join("refused-cache"))
        .envs(env.iter().copied());
    let out = cmd.output().unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        !text.contains(secret),
        "the secret is in the output: {text}"
    );
    text
}

#[test]
fn the_hooks_push_over_http_with_basic_auth_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = seed(tmp.path());
    let mut web = GitHttp::start(bare.parent().unwrap(), "gitvps", PASSWORD);
    let url = web.url("fleet.git");
    let env = [
        ("GITVPS_REPO_USER", "gitvps"),
        ("GITVPS_REPO_PASSWORD", PASSWORD),
    ];
    let served = Served::on(&url, &bare, tmp.path(), "serve", &env);
    let token = login(&served.addr);
    let at = head(&bare);
    let (code, body) = act(&served.addr, &token, "reboot");
    assert_eq!(code, 200, "{body}\n{}\n{}", served.log(), web.log());
    assert_eq!(git(&bare, &["rev-parse", "main^"]).trim(), at);

    // The server goes down: fast 503, and the log does not hold the password.
    web.daemon.stop();
    let t0 = Instant::now();
    let (code, body) = act(&served.addr, &token, "fsck");
    assert_eq!(code, 503, "{body}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    web.daemon.restart();
    let (code, body) = act(&served.addr, &token, "fsck");
    assert_eq!(code, 200, "{body}");
    assert_linear(&bare);
    let log = served.log();
    assert!(log.contains("cannot fetch"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");

    // A wrong password: the start fails, saying the credentials were refused, never which.
    let wrong = "wrong-Pa55word-that-must-not-show";
    let text = refused_start(
        &url,
        tmp.path(),
        &[
            ("GITVPS_REPO_USER", "gitvps"),
            ("GITVPS_REPO_PASSWORD", wrong),
        ],
        wrong,
    );
    assert!(text.contains("refused the credentials"), "{text}");
    // No credentials at all: the same, named.
    let text = refused_start(&url, tmp.path(), &[], PASSWORD);
    assert!(text.contains("GITVPS_REPO_PASSWORD"), "{text}");
    // Credentials in the URL (the old way) are not printed either.
    web.daemon.stop();
    let in_url = format!(
        "http://gitvps:{PASSWORD}@127.0.0.1:{}/git/fleet.git",
        web.daemon.port
    );
    let text = refused_start(&in_url, tmp.path(), &[], PASSWORD);
    assert!(text.contains("cannot clone"), "{text}");
}

#[test]
fn the_hooks_push_over_ssh_to_git_shell_with_a_key_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let bare = seed(tmp.path());
    let sshd = Sshd::start();
    sshd.git_shell_only();
    let key = std::fs::read_to_string(&sshd.client_key).unwrap();
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        sshd.user,
        sshd.port,
        bare.display()
    );
    let env = [
        ("GITVPS_REPO_SSH_KEY", key.as_str()),
        ("GITVPS_REPO_HOST_KEY", sshd.host_key.as_str()),
    ];
    let served = Served::on(&url, &bare, tmp.path(), "serve", &env);
    let token = login(&served.addr);
    let at = head(&bare);
    let (code, body) = act(&served.addr, &token, "reboot");
    assert_eq!(code, 200, "{body}\n{}\n{}", served.log(), sshd.log());
    assert_eq!(git(&bare, &["rev-parse", "main^"]).trim(), at);
    assert_linear(&bare);
    let key_body = key.lines().nth(1).unwrap();
    assert!(!served.log().contains(key_body));

    // The account runs git-shell only: a shell command is refused.
    let out = std::process::Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-i"])
        .arg(&sshd.client_key)
        .args(["-p", &sshd.port.to_string()])
        .arg(format!("{}@127.0.0.1", sshd.user))
        .arg("id")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));

    // Another host key than the pinned one: refused before any credential is sent.
    let other = support::keygen(&tmp.path().join("other_host"), "other");
    let text = refused_start(
        &url,
        tmp.path(),
        &[
            ("GITVPS_REPO_SSH_KEY", key.as_str()),
            ("GITVPS_REPO_HOST_KEY", other.as_str()),
        ],
        key_body,
    );
    // (libgit2 puts its own words on the refusal; the log says why.)
    assert!(text.contains("unknown remote ssh hostkey"), "{text}");
    assert!(
        text.contains("is not the one in GITVPS_REPO_HOST_KEY"),
        "{text}"
    );
    // No pinned host key: refused (never trusted on first use).
    let text = refused_start(
        &url,
        tmp.path(),
        &[("GITVPS_REPO_SSH_KEY", key.as_str())],
        key_body,
    );
    assert!(text.contains("must be pinned"), "{text}");
    // A key the server does not know: the credentials are refused, the key never shown.
    let stranger = tmp.path().join("stranger");
    support::keygen(&stranger, "stranger");
    let stranger = std::fs::read_to_string(&stranger).unwrap();
    let stranger_body = stranger.lines().nth(1).unwrap();
    let text = refused_start(
        &url,
        tmp.path(),
        &[
            ("GITVPS_REPO_SSH_KEY", stranger.as_str()),
            ("GITVPS_REPO_HOST_KEY", sshd.host_key.as_str()),
        ],
        stranger_body,
    );
    assert!(text.contains("refused the credentials"), "{text}");
}
