//! What the hooks log, captured from every thread (handlers and the committer): useful lines,
//! and never a password, a token, a key or a webhook secret. One test: it owns the global
//! log subscriber of this test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use hooks::Secret;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_tell_what_happened_and_hold_no_secret() {
    let buf = Buf::default();
    let writer = buf.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let fleet = Fleet::new();
    let mut cfg = fleet.config();
    cfg.stripe.secret_key = Some(Secret::new("sk_test_never_logged_123"));
    // Nothing listens there: checkout fails and is logged.
    cfg.stripe.api_base = Some("http://127.0.0.1:9/".into());
    let app = hooks::app(cfg).unwrap();

    let (s, v) = call(
        &app,
        "POST",
        "/api/login",
        None,
        Some(r#"{"customer":"c-0001","password":"demo-jane"}"#),
    )
    .await;
    assert_eq!(s, 200);
    let token = v["token"].as_str().unwrap().to_owned();
    let (s, _) = call(
        &app,
        "POST",
        "/api/login",
        None,
        Some(r#"{"customer":"c-0001","password":"wrong-password-42"}"#),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = call(&app, "POST", "/api/vps/xen02/reboot", Some(&token), None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&app, "GET", "/api/me", Some(&format!("{token}x")), None).await;
    assert_eq!(s, 401);
    let (s, _) = call(
        &app,
        "POST",
        "/api/vps/xen02/renew",
        Some(&token),
        Some(r#"{"product":"advanced-3m"}"#),
    )
    .await;
    assert_eq!(s, 502);
    let now = chrono::Utc::now().timestamp();
    let ev = checkout_event(
        "evt_log_1",
        "cs_log_1",
        now,
        // advanced-1m's 59.00 and Jane's 19 % tax.
        7021,
        serde_json::json!({"kind":"renew","customer":"c-0001","vps":"xen02","product":"advanced-1m"}),
    );
    let (s, _) = webhook(&app, &ev, Some(&stripe_signature(&ev, "whsec_forged", now))).await;
    assert_eq!(s, 400);
    let (s, _) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!(s, 200);
    // A password reset by mail: the link's token and the new password stay out of the log.
    let (s, _) = call(
        &app,
        "POST",
        "/api/password/forgot",
        None,
        Some(r#"{"customer":"c-0002"}"#),
    )
    .await;
    assert_eq!(s, 202);
    let reset = reset_token_in_maildir(&fleet);
    let body = serde_json::json!({"token": reset, "password": "reset-pass-never-logged"});
    let (s, v) = call(
        &app,
        "POST",
        "/api/password/reset",
        None,
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{text}");
    }
    for want in [
        "logged in",
        "login refused",
        "c-0001: reboot xen02 (site)",
        "token refused",
        "webhook refused",
        "stripe: renew xen02",
        "Stripe",
        "status=401",
        "password reset mailed",
        "password reset by mail",
    ] {
        assert!(
            text.contains(want),
            "`{want}` missing from the log:\n{text}"
        );
    }
    for secret in [
        "demo-jane",
        "wrong-password-42",
        TOKEN_SECRET,
        WEBHOOK_SECRET,
        OLD_WEBHOOK_SECRET,
        "sk_test_never_logged",
        token.as_str(),
        token.rsplit('.').next().unwrap(),
        reset.as_str(),
        reset.rsplit('.').next().unwrap(),
        "reset-pass-never-logged",
        // The address the reset link went to.
        "lin.wei@example.cn",
    ] {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into the log:\n{text}"
        );
    }
}

/// The token of the reset link in the one mail delivered to the fleet's Maildir.
fn reset_token_in_maildir(fleet: &Fleet) -> String {
    let delivered = fleet.delivered();
    assert_eq!(delivered.len(), 1, "one mail sent");
    let m = mail_parser::MessageParser::default()
        .parse(&delivered[0])
        .unwrap();
    let text = m.body_text(0).unwrap().into_owned();
    let at = text.find("?reset=").unwrap() + "?reset=".len();
    text[at..].split_whitespace().next().unwrap().to_owned()
}
