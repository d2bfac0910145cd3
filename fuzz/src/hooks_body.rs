//! The hooks' JSON bodies: one input is one request to a route that reads a body, sent through
//! the real router (its extractors, the handler's checks, `decide`, the commit) in-process, over
//! a bare repo of the example fleet, with a logged-in session of `c-0001`.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

/// The routes that read a body: method, path, and whether the session's token goes along.
/// The first byte of an input picks one (modulo their number); the rest is the body.
pub const ROUTES: &[(&str, &str, bool)] = &[
    ("POST", "/api/login", false),
    ("POST", "/api/password", true),
    ("POST", "/api/password/forgot", false),
    ("POST", "/api/password/reset", false),
    ("POST", "/api/keys", true),
    ("POST", "/api/2fa/enable", true),
    ("POST", "/api/2fa/disable", true),
    ("PUT", "/api/vps/xen02/ssh-keys", true),
    ("PUT", "/api/vps/xen02/ptr", true),
    ("POST", "/api/vps/xen02/renew", true),
    ("POST", "/api/vps/xen02/traffic", true),
    ("POST", "/api/vps/xen02/reinstall", true),
    ("POST", "/api/vps/xen02/restore", true),
    ("POST", "/api/vps/xen02/reboot", true),
    ("POST", "/api/order", false),
    ("POST", "/api/order", true),
    ("POST", "/api/tickets", true),
    ("POST", "/api/tickets/t-0001", true),
    ("POST", "/api/webhooks/stripe", false),
];

const TOKEN_SECRET: &str = "fuzz-token-secret-0123456789abcdef0123456789";
const TOTP_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// The router over its repo, and the session it sends.
pub struct Hooks {
    rt: tokio::runtime::Runtime,
    app: axum::Router,
    token: String,
    _dir: tempfile::TempDir,
}

impl Hooks {
    /// A fresh repo, router and session (one argon2 login).
    pub fn new() -> Hooks {
        let dir = tempfile::tempdir().unwrap();
        // Quotas too high to matter: every input reaches the handler's checks.
        let bare = crate::fixtures::bare_fleet(dir.path(), |t| {
            t.replace("per_minute = 6 ", "per_minute = 100000000 ")
                .replace("per_day = 100 ", "per_day = 100000000 ")
                .replace("tickets_per_day = 10 ", "tickets_per_day = 100000000 ")
        });
        let mut cfg = hooks::Config::new(bare.to_str().unwrap(), hooks::Secret::new(TOKEN_SECRET));
        cfg.cache_dir = dir.path().join("cache");
        cfg.totp_key = Some(hooks::Secret::new(TOTP_KEY));
        cfg.mail_url = Some(hooks::Secret::new(format!(
            "maildir://{}",
            dir.path().join("maildir").display()
        )));
        // Checkout sessions go to a closed port of this machine: the checks before them run,
        // the session itself fails (502) without leaving the machine.
        cfg.stripe.secret_key = Some(hooks::Secret::new("sk_test_fuzz"));
        cfg.stripe.api_base = Some("http://127.0.0.1:9/".to_owned());
        cfg.stripe.webhook_secrets = vec![hooks::Secret::new("whsec_fuzz")];
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let app = rt.block_on(async { hooks::app(cfg) }).unwrap();
        let mut h = Hooks {
            rt,
            app,
            token: String::new(),
            _dir: dir,
        };
        let (status, body) = h.call(
            "POST",
            "/api/login",
            false,
            br#"{"customer":"c-0001","password":"demo-jane"}"#,
        );
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        h.token = v["token"].as_str().unwrap().to_owned();
        h
    }

    fn call(&self, method: &str, path: &str, authed: bool, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if authed {
            req = req.header("authorization", format!("Bearer {}", self.token));
        }
        let req = req.body(Body::from(body.to_vec())).unwrap();
        self.rt.block_on(async {
            let resp = self.app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, bytes.to_vec())
        })
    }

    /// Sends `input` (the first byte picks the route, the rest is the body): a route may refuse
    /// a body (4xx) but never panics nor fails inside (500). Returns the status.
    pub fn send(&self, input: &[u8]) -> StatusCode {
        let Some((pick, body)) = input.split_first() else {
            return StatusCode::OK;
        };
        let (method, path, authed) = ROUTES[usize::from(*pick) % ROUTES.len()];
        let (status, answer) = self.call(method, path, authed, body);
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {path}: {}",
            String::from_utf8_lossy(&answer)
        );
        status
    }
}

/// Runs one input on `hooks`, made on first use and made again when its session stopped
/// working (an input changed the password or logged out everywhere).
pub fn check(hooks: &mut Option<Hooks>, input: &[u8]) {
    let h = hooks.get_or_insert_with(Hooks::new);
    if h.send(input) == StatusCode::UNAUTHORIZED
        && h.call("GET", "/api/me", true, b"").0 == StatusCode::UNAUTHORIZED
    {
        *hooks = None;
    }
}
