//! The customer account by mail and by session: password change, password reset by mail
//! (single use, expiry, enumeration-proof answers, throttling, no token in the record), the
//! mails they queue (read back as messages), and the account extras of the panel (QR code,
//! expiring API keys). Against the router and a real bare repo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

fn app(fleet: &Fleet) -> axum::Router {
    hooks::app(fleet.config()).unwrap()
}

async fn post(app: &axum::Router, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    call(app, "POST", path, token, Some(&body.to_string())).await
}

/// Every file at the head of `main`, with its text.
fn all_files(fleet: &Fleet) -> Vec<(String, String)> {
    let repo = fleet.repo();
    let tree = repo.find_commit(fleet.head()).unwrap().tree().unwrap();
    let mut out = Vec::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let blob = repo.find_blob(e.id()).unwrap();
            out.push((
                format!("{dir}{}", e.name().unwrap()),
                String::from_utf8_lossy(blob.content()).into_owned(),
            ));
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// The one queued mail whose file name starts with `prefix`, parsed.
fn queued(fleet: &Fleet, prefix: &str) -> (String, String) {
    let hits: Vec<(String, String)> = all_files(fleet)
        .into_iter()
        .filter(|(p, _)| p.starts_with(&format!("mail/outbox/{prefix}")) && p.ends_with(".eml"))
        .collect();
    assert_eq!(hits.len(), 1, "one queued {prefix} mail");
    hits.into_iter().next().unwrap()
}

/// The one message in the fleet's Maildir and its plain-text body.
fn reset_mail(fleet: &Fleet) -> (String, String) {
    let delivered = fleet.delivered();
    assert_eq!(delivered.len(), 1, "one mail sent");
    let raw = String::from_utf8(delivered[0].clone()).unwrap();
    let (_, text) = read_mail(&raw);
    (raw, text)
}

/// The headers named and the plain-text body of a message.
fn read_mail(raw: &str) -> (Value, String) {
    let m = mail_parser::MessageParser::default()
        .parse(raw.as_bytes())
        .unwrap();
    let addr = |a: Option<&mail_parser::Address<'_>>| {
        a.and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_owned)
    };
    let kind = m.header_raw("X-Gitvps-Kind").map(|v| v.trim().to_owned());
    let headers = json!({
        "to": addr(m.to()),
        "reply_to": addr(m.reply_to()),
        "subject": m.subject(),
        "kind": kind,
    });
    (headers, m.body_text(0).unwrap().into_owned())
}

/// The token of the reset link in a mail's text.
fn token_in(text: &str) -> String {
    let at = text.find("?reset=").expect("a reset link") + "?reset=".len();
    text[at..]
        .split(|c: char| c.is_whitespace())
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn changing_the_password_commits_a_new_hash_and_revokes_every_other_session() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let (s, v) = login(&app, "c-0001", "demo-jane").await;
    assert_eq!(s, 200, "{v}");
    let laptop = v["token"].as_str().unwrap().to_owned();
    let phone = token_for(&fleet, "c-0001");
    let (s, k) = post(
        &app,
        "/api/keys",
        Some(&phone),
        json!({"name": "ci", "scopes": ["read"]}),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    let before = fleet.commit_count();
    let change = |current: &str, new: &str| json!({"current": current, "new": new});
    // Session only; the current password must be right; the new one follows the order rule.
    let (s, v) = post(
        &app,
        "/api/password",
        Some(&key),
        change("demo-jane", "a-new-password"),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{v}"
    );
    let (s, v) = post(
        &app,
        "/api/password",
        Some(&phone),
        change("not-my-password", "a-new-password"),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("wrong_password")),
        "{v}"
    );
    let (s, v) = post(
        &app,
        "/api/password",
        Some(&phone),
        change("demo-jane", "short"),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (422, Some("bad_password")), "{v}");
    assert_eq!(fleet.commit_count(), before, "nothing committed");
    let old_file = fleet.file("inventory/customers/c-0001.toml").unwrap();

    let (s, v) = post(
        &app,
        "/api/password",
        Some(&phone),
        change("demo-jane", "a-new-password"),
    )
    .await;
    assert_eq!((s, v["done"].as_str()), (200, Some("password")), "{v}");
    assert_eq!(fleet.messages()[0], "c-0001: change the password (site)");
    assert_eq!(fleet.head_changes(), ["inventory/customers/c-0001.toml"]);
    let new_file = fleet.file("inventory/customers/c-0001.toml").unwrap();
    assert_ne!(new_file, old_file);
    assert!(
        new_file.contains("password_hash = \"$argon2id$"),
        "{new_file}"
    );
    assert!(!new_file.contains("a-new-password"));
    assert!(new_file.contains("name = \"Jane Doe\""), "the rest is kept");
    // Every session issued before is refused at its next request; this one got a new token.
    for t in [&laptop, &phone] {
        let (s, _) = call(&app, "GET", "/api/me", Some(t), None).await;
        assert_eq!(s, 401);
    }
    let fresh = v["token"].as_str().unwrap();
    let (s, _) = call(&app, "GET", "/api/me", Some(fresh), None).await;
    assert_eq!(s, 200);
    // API keys survive a password change.
    let (s, _) = call(&app, "GET", "/api/me", Some(&key), None).await;
    assert_eq!(s, 200);
    let (s, _) = login(&app, "c-0001", "demo-jane").await;
    assert_eq!(s, 401);
    let (s, v) = login(&app, "c-0001", "a-new-password").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn a_reset_link_is_mailed_and_sets_the_password_once() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let before_reset = token_for(&fleet, "c-0001");
    let (s, v) = post(
        &app,
        "/api/password/forgot",
        None,
        json!({"customer": " JANE@example.net "}),
    )
    .await;
    assert_eq!((s, v["accepted"].as_bool()), (202, Some(true)), "{v}");
    assert_eq!(
        fleet.messages()[0],
        "c-0001: ask for a password reset by mail (site)"
    );
    assert_eq!(
        fleet.head_changes(),
        ["resets/c-0001.toml"],
        "the record alone"
    );

    // The mail, sent at once: to the customer, in its language, with the link.
    let (raw, text) = reset_mail(&fleet);
    let (h, _) = read_mail(&raw);
    assert_eq!(h["to"], "jane@example.net", "{h}");
    assert_eq!(h["kind"], "password-reset", "{h}");
    assert!(text.contains("within 30 minutes"), "{text}");
    assert!(
        text.contains("http://127.0.0.1:8080/panel/?reset=c-0001."),
        "{text}"
    );
    let token = token_in(&text);
    // The token in clear is in the mail only: the record holds its hash, no file of any
    // commit and no commit message has it.
    let record = fleet.file("resets/c-0001.toml").unwrap();
    let parsed = hooks::reset::Token::parse(&token).unwrap();
    assert!(record.contains(&parsed.hash()), "{record}");
    let secret = token.rsplit('.').next().unwrap();
    assert_eq!(fleet.history_holding(secret), Vec::<String>::new());
    assert_eq!(
        fleet.history_holding(&parsed.hash()).len(),
        1,
        "the walk finds what is there"
    );
    assert!(
        !all_files(&fleet)
            .iter()
            .any(|(p, _)| p.starts_with("mail/outbox/")),
        "nothing queued"
    );

    // A wrong token and a short password: refused, nothing committed.
    let head = fleet.head();
    let wrong = format!("c-0001.{}", "ab".repeat(32));
    for (t, pw, code) in [
        (wrong.as_str(), "a-new-password", "reset_invalid"),
        ("not a token", "a-new-password", "reset_invalid"),
        (token.as_str(), "short", "bad_password"),
    ] {
        let (s, v) = post(
            &app,
            "/api/password/reset",
            None,
            json!({"token": t, "password": pw}),
        )
        .await;
        assert_eq!((s, v["error"].as_str()), (422, Some(code)), "{t}: {v}");
        assert!(!v.to_string().contains(&token), "never echoed");
    }
    assert_eq!(fleet.head(), head);

    let (s, v) = post(
        &app,
        "/api/password/reset",
        None,
        json!({"token": token, "password": "a-new-password"}),
    )
    .await;
    assert_eq!((s, v["done"].as_str()), (200, Some("password")), "{v}");
    assert_eq!(
        fleet.messages()[0],
        "c-0001: reset the password by mail (site)"
    );
    assert_eq!(
        fleet.head_changes(),
        ["inventory/customers/c-0001.toml", "resets/c-0001.toml"]
    );
    assert!(
        fleet.file("resets/c-0001.toml").is_none(),
        "the record goes"
    );
    let (s, _) = call(&app, "GET", "/api/me", Some(&before_reset), None).await;
    assert_eq!(s, 401, "sessions from before are revoked");
    // Once only.
    let (s, v) = post(
        &app,
        "/api/password/reset",
        None,
        json!({"token": token, "password": "another-password"}),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("reset_invalid")),
        "{v}"
    );
    let (s, _) = login(&app, "c-0001", "demo-jane").await;
    assert_eq!(s, 401);
    let (s, v) = login(&app, "jane@example.net", "a-new-password").await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn without_outgoing_mail_a_reset_request_answers_alike_and_commits_nothing() {
    let fleet = Fleet::new();
    let mut cfg = fleet.config();
    cfg.mail_url = None;
    let app = hooks::app(cfg).unwrap();
    let ask = |name: &'static str| {
        let app = app.clone();
        async move {
            post(
                &app,
                "/api/password/forgot",
                None,
                json!({"customer": name}),
            )
            .await
        }
    };
    let (real, none) = (ask("c-0001").await, ask("c-9999").await);
    assert_eq!(real, none);
    assert_eq!(real.0, 202, "{real:?}");
    assert_eq!(fleet.commit_count(), 1, "no record of a link never sent");
    assert!(fleet.delivered().is_empty());
}

#[tokio::test]
async fn a_reset_mail_that_cannot_be_sent_still_answers_alike() {
    let fleet = Fleet::new();
    // A file where the Maildir should be: delivery fails.
    std::fs::write(fleet.maildir(), "not a folder").unwrap();
    let app = app(&fleet);
    let (s, v) = post(
        &app,
        "/api/password/forgot",
        None,
        json!({"customer": "c-0001"}),
    )
    .await;
    assert_eq!((s, v["accepted"].as_bool()), (202, Some(true)), "{v}");
    assert_eq!(fleet.head_changes(), ["resets/c-0001.toml"]);
}

/// Commits a reset record for the token made of `byte`, expiring at `expires`.
fn plant_record(fleet: &Fleet, byte: u8, expires: i64) -> String {
    let c: model::CustomerId = "c-0002".parse().unwrap();
    let token = hooks::reset::Token::new(&c, [byte; hooks::reset::TOKEN_BYTES]);
    let record = hooks::reset::Record {
        hash: token.hash(),
        created: 0,
        expires,
    };
    fleet.admin_commit(
        "main",
        &[("resets/c-0002.toml", record.render(&c).as_bytes())],
        "a reset record",
    );
    token.expose().to_owned()
}

#[tokio::test]
async fn an_expired_reset_link_is_refused() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let expired = plant_record(&fleet, 7, 1);
    let (s, v) = post(
        &app,
        "/api/password/reset",
        None,
        json!({"token": expired, "password": "a-new-password"}),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (422, Some("reset_invalid")),
        "{v}"
    );
    assert_eq!(fleet.messages()[0], "a reset record");
    // The same record, not expired: the link works (the refusal above was the expiry).
    let live = plant_record(&fleet, 7, i64::MAX);
    let (s, v) = post(
        &app,
        "/api/password/reset",
        None,
        json!({"token": live, "password": "a-new-password"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn a_reset_request_answers_alike_for_every_name_and_mails_only_real_accounts() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let mut answers = Vec::new();
    for name in [
        "c-0002",
        "nobody@example.net",
        "c-9999",
        "lin.wei@example.cn",
    ] {
        let (s, v) = post(
            &app,
            "/api/password/forgot",
            None,
            json!({"customer": name}),
        )
        .await;
        answers.push((s, v));
    }
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 202);
    // One mail for c-0002 (its second name reached the account's silent cap), in Chinese.
    assert_eq!(fleet.commit_count(), 2);
    let (raw, text) = reset_mail(&fleet);
    let (h, _) = read_mail(&raw);
    assert_eq!(h["to"], "lin.wei@example.cn");
    assert!(text.contains("/zh/panel/?reset=c-0002."), "{text}");
    let (s, v) = post(&app, "/api/password/forgot", None, json!({"customer": " "})).await;
    assert_eq!((s, v["error"].as_str()), (422, Some("bad_customer")), "{v}");
}

#[tokio::test]
async fn reset_requests_and_wrong_tokens_are_throttled() {
    let fleet = Fleet::with_hooks(
        "trusted_proxy_header = \"X-Forwarded-For\"\nper_minute = 2\nlogin_free_failures = 2",
    );
    let app = app(&fleet);
    let from = |ip: &str, path: &str, body: Value| {
        let app = app.clone();
        let ip = ip.to_owned();
        let path = path.to_owned();
        async move {
            let req = lambda_http::http::Request::builder()
                .method("POST")
                .uri(path)
                .header("content-type", "application/json")
                .header("x-forwarded-for", ip)
                .body(lambda_http::Body::from(body.to_string()))
                .unwrap();
            send(&app, req).await
        }
    };
    let forgot = |name: &str| json!({"customer": name});
    // Per name asked: once a minute, whether or not an account has it.
    for name in ["c-0001", "ghost@example.net"] {
        let (s, _) = from("198.51.100.1", "/api/password/forgot", forgot(name)).await;
        assert_eq!(s, 202);
        let (s, v) = from("198.51.100.2", "/api/password/forgot", forgot(name)).await;
        assert_eq!((s, v["error"].as_str()), (429, Some("rate_limited")), "{v}");
    }
    // Per address: `per_minute` names.
    let (s, v) = from(
        "198.51.100.1",
        "/api/password/forgot",
        forgot("x@example.net"),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (429, Some("rate_limited")), "{v}");
    assert_eq!(fleet.commit_count(), 2, "one mail, for c-0001");
    // Wrong tokens back off like wrong passwords.
    let wrong =
        json!({"token": format!("c-0001.{}", "cd".repeat(32)), "password": "a-new-password"});
    for _ in 0..2 {
        let (s, _) = from("198.51.100.3", "/api/password/reset", wrong.clone()).await;
        assert_eq!(s, 422);
    }
    let (s, v) = from("198.51.100.3", "/api/password/reset", wrong.clone()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (429, Some("too_many_attempts")),
        "{v}"
    );
}

#[tokio::test]
async fn a_new_ticket_queues_a_mail_to_support_reply_to_the_customer() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0003");
    let (s, v) = post(
        &app,
        "/api/tickets",
        Some(&t),
        json!({"subject": "Disk full", "message": "My VPS says:\nno space left", "vps": "xen04"}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["ticket"].as_str().unwrap();
    assert_eq!(
        fleet.head_changes(),
        [
            format!("mail/outbox/ticket-opened.{id}.eml"),
            format!("tickets/{id}.md")
        ]
    );
    let (_, raw) = queued(&fleet, "ticket-opened.");
    let (h, text) = read_mail(&raw);
    assert_eq!(h["to"], "support@example.net", "{h}");
    assert_eq!(h["reply_to"], "ops@acme-hosting.example.com", "{h}");
    assert_eq!(h["kind"], "ticket-opened", "{h}");
    assert!(h["subject"].as_str().unwrap().contains("Disk full"), "{h}");
    assert!(
        text.contains("no space left") && text.contains("xen04"),
        "{text}"
    );
    assert!(text.contains("Carlos Mendes (c-0003"), "{text}");

    // Without `[mail] support`, the ticket alone.
    let quiet = Fleet::with(|files| {
        for (p, b) in files.iter_mut() {
            if p == "gitvps.toml" {
                let text = String::from_utf8(b.clone()).unwrap();
                *b = text
                    .lines()
                    .filter(|l| !l.starts_with("support ="))
                    .collect::<Vec<_>>()
                    .join("\n")
                    .into_bytes();
            }
        }
    });
    let app = hooks::app(quiet.config()).unwrap();
    let t = token_for(&quiet, "c-0003");
    let (s, _) = post(
        &app,
        "/api/tickets",
        Some(&t),
        json!({"subject": "Hello", "message": "Hi"}),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(quiet.head_changes(), ["tickets/t-0001.md"]);
}

#[tokio::test]
async fn two_factor_setup_answers_a_qr_code_as_svg() {
    let fleet = Fleet::new();
    let mut cfg = fleet.config();
    cfg.totp_key = Some(hooks::Secret::new(
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    ));
    let app = hooks::app(cfg).unwrap();
    let t = token_for(&fleet, "c-0001");
    let (s, me) = call(&app, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(
        (s, me["customer"]["two_factor"].as_bool()),
        (200, Some(false))
    );
    let (s, v) = call(&app, "POST", "/api/2fa/setup", Some(&t), None).await;
    assert_eq!(s, 200, "{v}");
    let svg = v["qr_svg"].as_str().unwrap();
    assert!(svg.contains("<svg"), "{svg}");
    assert!(
        !svg.contains(v["secret"].as_str().unwrap()),
        "an image, not text"
    ); // `/api/me` tells the panel when it is on.
    fleet.admin_commit(
        "main",
        &[("twofactor/c-0001.toml", b"secret = \"00\"\nrecovery = []\n")],
        "two-factor on",
    );
    let (s, me) = call(&app, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(
        (s, me["customer"]["two_factor"].as_bool()),
        (200, Some(true))
    );
}

#[tokio::test]
async fn an_api_key_with_an_expiry_stops_working_after_it() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0001");
    let (s, v) = post(
        &app,
        "/api/keys",
        Some(&t),
        json!({"name": "ci", "scopes": ["read"], "expires_in_days": 0}),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (422, Some("bad_key")), "{v}");
    let (s, v) = post(
        &app,
        "/api/keys",
        Some(&t),
        json!({"name": "ci", "scopes": ["read"], "expires_in_days": 30}),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_owned();
    let expires = v["expires"].as_i64().unwrap();
    assert!(expires > chrono::Utc::now().timestamp());
    let (s, l) = call(&app, "GET", "/api/keys", Some(&t), None).await;
    assert_eq!((s, l["keys"][0]["expires"].as_i64()), (200, Some(expires)));
    let (s, _) = call(&app, "GET", "/api/me", Some(&key), None).await;
    assert_eq!(s, 200);
    // The expiry passed (an admin moves it back): refused.
    let path = "apikeys/c-0001.toml";
    let text = fleet.file(path).unwrap();
    let past = text.replace(&format!("expires = {expires}"), "expires = 1");
    assert_ne!(past, text);
    fleet.admin_commit("main", &[(path, past.as_bytes())], "expire the key");
    let (s, _) = call(&app, "GET", "/api/me", Some(&key), None).await;
    assert_eq!(s, 401);
}
