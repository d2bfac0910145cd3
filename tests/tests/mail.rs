//! Outgoing mail through a real SMTP server (aiosmtpd): render, build, queue in the outbox,
//! deliver over plain SMTP, STARTTLS with AUTH and implicit TLS; failures and exactly-once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gitvps_tests::smtp::{SmtpOptions, SmtpServer, TestCa};
use mail::{
    Attachment, Delivery, Draft, Kind, MailId, Outbox, SendError, Sender, Smtp, Templates, deliver,
};
use mail_parser::MimeHeaders;
use model::values::Language;
use serde_json::{Value, json};

const SITE: &str = "https://vps.example.net";

fn now() -> DateTime<Utc> {
    "2026-12-02T06:00:00Z".parse().unwrap()
}

fn sender() -> Sender {
    Sender::new("billing@example.net".parse().unwrap(), "GPLHost billing")
}

/// A complete context for a kind, with the renewal link into the panel for reminders.
fn context(kind: Kind, name: &str, vps: &str) -> Value {
    let mut ctx = json!({ "site_name": "GPLHost VPS", "site_url": SITE, "name": name });
    for var in kind.variables() {
        let value = match *var {
            "vps" => json!(vps),
            "hostname" => json!(format!("{vps}.vps.example.net")),
            "product" => json!("Advanced VPS"),
            "expires" => json!("2026-12-09"),
            "days_left" => json!(7),
            "overdue" => json!(false),
            "price" | "amount" => json!("59.00"),
            "currency" => json!("USD"),
            "renew_url" => json!(format!("{SITE}/panel/#renew/{vps}")),
            "invoice" => json!("2026-0042"),
            "date" => json!("2026-12-02"),
            "period" => json!("2026-12-09 – 2027-01-09"),
            "valid_minutes" => json!(60),
            "state" => json!("down"),
            v if v.ends_with("_url") => json!(format!("{SITE}/panel/#{v}")),
            v => json!(format!("the {v}")),
        };
        ctx[*var] = value;
    }
    ctx
}

fn draft(id: &str, kind: Kind, lang: Language, to: &str, name: &str) -> Draft {
    Draft {
        id: id.parse().unwrap(),
        kind,
        lang,
        to: to.parse().unwrap(),
        to_name: Some(name.to_owned()),
        reply_to: None,
        context: context(kind, name, "xen02"),
        attachments: Vec::new(),
    }
}

/// Builds and queues drafts; returns their ids.
fn queue(outbox: &Outbox, drafts: &[Draft]) -> Vec<MailId> {
    let templates = Templates::default();
    drafts
        .iter()
        .map(|d| {
            let raw = mail::build(d, &sender(), &templates, now()).unwrap();
            assert!(outbox.put(&d.id, &raw).unwrap());
            d.id.clone()
        })
        .collect()
}

/// `n` reminders to different customers.
fn reminders(outbox: &Outbox, n: usize) -> Vec<MailId> {
    let drafts: Vec<Draft> = (0..n)
        .map(|i| {
            draft(
                &format!("reminder.xen{i:02}.2026-12-09.7d"),
                Kind::Reminder,
                Language::En,
                &format!("customer{i}@example.org"),
                &format!("Customer {i}"),
            )
        })
        .collect();
    queue(outbox, &drafts)
}

fn smtp(url: &str, ca: Option<&Path>) -> Smtp {
    Smtp::from_url(url, ca).unwrap()
}

fn ids(v: &[MailId]) -> Vec<String> {
    v.iter().map(MailId::to_string).collect()
}

fn sent_log_lines(repo: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for e in std::fs::read_dir(repo.join("mail/sent")).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    lines.sort();
    lines
}

/// The Message-IDs a server holds, sorted.
fn message_ids(server: &SmtpServer) -> Vec<String> {
    let mut ids: Vec<String> = server
        .messages()
        .iter()
        .map(|m| m.parsed().message_id().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn assert_complete(d: &Delivery) {
    assert!(
        d.is_complete(),
        "stopped {:?}, failed {:?}, deferred {:?}",
        d.stopped,
        d.failed,
        d.deferred
    );
}

#[test]
fn plain_smtp_delivers_what_was_rendered_in_both_languages() {
    let server = SmtpServer::start();
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();

    let reminder = draft(
        "reminder.xen02.2026-12-09.7d",
        Kind::Reminder,
        Language::En,
        "jane@example.org",
        "Jane Doe",
    );
    let mut invoice = draft(
        "invoice.2026-0042",
        Kind::Invoice,
        Language::Zh,
        "li.lei@example.cn",
        "李雷",
    );
    let pdf = b"%PDF-1.4\n% not a real invoice\n\x00\x01\x02\xff".to_vec();
    invoice.attachments.push(Attachment {
        filename: "invoice-2026-0042.pdf".into(),
        content_type: "application/pdf".into(),
        bytes: pdf.clone(),
    });
    let queued = queue(&outbox, &[reminder, invoice]);
    assert_eq!(
        ids(&outbox.pending().unwrap()),
        ids(&{
            let mut q = queued.clone();
            q.sort();
            q
        })
    );

    let d = deliver(
        &outbox,
        &smtp(&format!("smtp://{}", server.addr()), None),
        now(),
    );
    assert_complete(&d);
    assert_eq!(
        ids(&d.sent),
        ["invoice.2026-0042", "reminder.xen02.2026-12-09.7d"]
    );
    assert!(outbox.pending().unwrap().is_empty());
    assert_eq!(
        sent_log_lines(repo.path()),
        [
            "2026-12-02T06:00:00Z invoice.2026-0042 li.lei@example.cn",
            "2026-12-02T06:00:00Z reminder.xen02.2026-12-09.7d jane@example.org",
        ]
    );

    let messages = server.messages();
    assert_eq!(messages.len(), 2, "{}", server.log());
    let find = |id: &str| {
        messages
            .iter()
            .find(|m| m.parsed().message_id() == Some(id))
            .unwrap_or_else(|| panic!("{id} not delivered"))
    };

    // The English reminder.
    let m = find("reminder.xen02.2026-12-09.7d@example.net");
    assert_eq!(m.envelope_from(), "billing@example.net");
    assert_eq!(m.envelope_to(), "jane@example.org");
    let p = m.parsed();
    let from = p.from().unwrap().first().unwrap();
    assert_eq!(from.name(), Some("GPLHost billing"));
    assert_eq!(from.address(), Some("billing@example.net"));
    let to = p.to().unwrap().first().unwrap();
    assert_eq!(
        (to.name(), to.address()),
        (Some("Jane Doe"), Some("jane@example.org"))
    );
    assert_eq!(p.subject(), Some("Your VPS xen02 expires on 2026-12-09"));
    assert_eq!(p.header_raw("Content-Language").unwrap().trim(), "en");
    assert_eq!(
        p.header_raw("Auto-Submitted").unwrap().trim(),
        "auto-generated"
    );
    assert_eq!(p.header_raw("X-Gitvps-Kind").unwrap().trim(), "reminder");
    assert_eq!(p.date().unwrap().to_rfc3339(), "2026-12-02T06:00:00Z");
    let text = p.body_text(0).unwrap();
    assert!(text.starts_with("Hello Jane Doe,"), "{text}");
    assert!(text.contains("7 days from now"), "{text}");
    assert!(
        text.contains("https://vps.example.net/panel/#renew/xen02"),
        "{text}"
    );
    let html = p.body_html(0).unwrap();
    assert!(
        html.contains("<a href=\"https://vps.example.net/panel/#renew/xen02\""),
        "{html}"
    );
    assert!(html.contains("<html lang=\"en\">"), "{html}");
    assert_eq!(p.attachment_count(), 0);

    // The Chinese invoice, with its attachment.
    let m = find("invoice.2026-0042@example.net");
    let p = m.parsed();
    assert_eq!(p.subject(), Some("GPLHost VPS 发票 2026-0042"));
    assert_eq!(p.to().unwrap().first().unwrap().name(), Some("李雷"));
    assert_eq!(p.header_raw("Content-Language").unwrap().trim(), "zh-Hans");
    let text = p.body_text(0).unwrap();
    assert!(text.starts_with("李雷，您好："), "{text}");
    assert!(text.contains("金额：59.00 USD"), "{text}");
    assert!(
        text.contains("https://vps.example.net/panel/#invoice_url"),
        "{text}"
    );
    assert!(p.body_html(0).unwrap().contains("<html lang=\"zh-Hans\">"));
    assert_eq!(p.attachment_count(), 1);
    let a = p.attachment(0).unwrap();
    assert_eq!(a.attachment_name(), Some("invoice-2026-0042.pdf"));
    assert_eq!(a.content_type().unwrap().ctype(), "application");
    assert_eq!(a.content_type().unwrap().subtype(), Some("pdf"));
    assert_eq!(a.contents(), pdf.as_slice());

    // A second run has nothing to send, and putting the same mail again queues nothing.
    let d = deliver(
        &outbox,
        &smtp(&format!("smtp://{}", server.addr()), None),
        now(),
    );
    assert!(d.sent.is_empty() && d.is_complete());
    let again = mail::build(
        &draft(
            "reminder.xen02.2026-12-09.7d",
            Kind::Reminder,
            Language::En,
            "jane@example.org",
            "Jane Doe",
        ),
        &sender(),
        &Templates::default(),
        now(),
    )
    .unwrap();
    assert!(
        !outbox
            .put(&"reminder.xen02.2026-12-09.7d".parse().unwrap(), &again)
            .unwrap()
    );
    assert_eq!(server.count(), 2);
}

/// A paid traffic block's receipt (queued by the hooks' webhook in the payment's commit), in
/// both languages, as the real SMTP server receives it.
#[test]
fn a_traffic_block_receipt_reaches_the_server_in_both_languages() {
    let server = SmtpServer::start();
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();
    let receipt = |id: &str, lang, to: &str, name: &str| {
        let mut d = draft(id, Kind::TrafficBlockPaid, lang, to, name);
        d.context["size"] = json!("100 GiB");
        d.context["period_start"] = json!("2026-12-01");
        d.context["period_end"] = json!("2026-12-31");
        d.context["invoice"] = json!("INV-2026-000130");
        d.context["amount"] = json!("23.80");
        d
    };
    queue(
        &outbox,
        &[
            receipt(
                "traffic-block-paid.evt.1-a",
                Language::En,
                "jane@example.org",
                "Jane Doe",
            ),
            receipt(
                "traffic-block-paid.evt.1-b",
                Language::Zh,
                "li.lei@example.cn",
                "李雷",
            ),
        ],
    );
    let d = deliver(
        &outbox,
        &smtp(&format!("smtp://{}", server.addr()), None),
        now(),
    );
    assert_complete(&d);
    let messages = server.messages();
    assert_eq!(messages.len(), 2, "{}", server.log());
    let find = |id: &str| {
        messages
            .iter()
            .find(|m| m.parsed().message_id() == Some(id))
            .unwrap_or_else(|| panic!("{id} not delivered"))
    };
    let en = find("traffic-block-paid.evt.1-a@example.net").parsed();
    assert_eq!(
        en.subject(),
        Some("Traffic block paid for xen02: 100 GiB more until 2026-12-31")
    );
    assert_eq!(
        en.header_raw("X-Gitvps-Kind").unwrap().trim(),
        "traffic-block-paid"
    );
    let text = en.body_text(0).unwrap();
    assert!(text.starts_with("Hello Jane Doe,"), "{text}");
    for part in [
        "23.80 USD",
        "100 GiB",
        "2026-12-01 to 2026-12-31",
        "INV-2026-000130",
        "https://vps.example.net/panel/#panel_url",
    ] {
        assert!(text.contains(part), "{part}: {text}");
    }
    assert!(
        en.body_html(0)
            .unwrap()
            .contains("<strong>100 GiB</strong>")
    );
    let zh = find("traffic-block-paid.evt.1-b@example.net").parsed();
    assert_eq!(
        zh.subject(),
        Some("已收到 xen02 的流量包付款：本周期增加 100 GiB，至 2026-12-31")
    );
    assert_eq!(zh.header_raw("Content-Language").unwrap().trim(), "zh-Hans");
    let text = zh.body_text(0).unwrap();
    assert!(text.starts_with("李雷，您好："), "{text}");
    assert!(text.contains("2026-12-01 至 2026-12-31"), "{text}");
    assert!(text.contains("23.80 USD"), "{text}");
}

#[test]
fn starttls_with_auth_against_a_private_ca() {
    let ca = TestCa::generate();
    let server = SmtpServer::start_with(&SmtpOptions {
        starttls: Some(ca.server_pair()),
        auth: Some("gitvps:s3cret-pw".into()),
        ..SmtpOptions::default()
    });
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();
    reminders(&outbox, 2);

    // Wrong password: the session is refused, nothing leaves the outbox, the password is not shown.
    let url = format!("smtp://gitvps:wrong-pw@{}?tls=required", server.addr());
    let d = deliver(&outbox, &smtp(&url, Some(&ca.ca)), now());
    let err = d.stopped.expect("a refused session");
    assert!(matches!(err, SendError::Refused { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&server.addr()) && text.contains("535"),
        "{text}"
    );
    assert!(!text.contains("wrong-pw") && !format!("{err:?}").contains("wrong-pw"));
    assert!(d.sent.is_empty());
    assert_eq!(outbox.pending().unwrap().len(), 2);

    // Without the private CA the certificate is not trusted: no session either.
    let url = format!("smtp://gitvps:s3cret-pw@{}?tls=required", server.addr());
    let d = deliver(&outbox, &smtp(&url, None), now());
    let err = d.stopped.expect("an untrusted certificate");
    assert!(matches!(err, SendError::Unreachable { .. }), "{err}");
    assert!(!err.to_string().contains("s3cret-pw"));

    // Plain SMTP to a server that requires STARTTLS: refused.
    let url = format!("smtp://{}", server.addr());
    let d = deliver(&outbox, &smtp(&url, None), now());
    assert!(
        matches!(d.stopped, Some(SendError::Refused { .. })),
        "{:?}",
        d.stopped
    );

    // The right password over STARTTLS, trusting the CA.
    let url = format!("smtp://gitvps:s3cret-pw@{}?tls=required", server.addr());
    let d = deliver(&outbox, &smtp(&url, Some(&ca.ca)), now());
    assert_complete(&d);
    assert_eq!(d.sent.len(), 2);
    assert_eq!(server.count(), 2, "{}", server.log());
    assert!(outbox.pending().unwrap().is_empty());
}

#[test]
fn implicit_tls_with_auth() {
    let ca = TestCa::generate();
    let server = SmtpServer::start_with(&SmtpOptions {
        implicit_tls: Some(ca.server_pair()),
        auth: Some("gitvps:pa%ss".into()),
        ..SmtpOptions::default()
    });
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();
    let queued = reminders(&outbox, 3);
    // A percent sign in the password is percent-encoded in the URL.
    let url = format!("smtps://gitvps:pa%25ss@{}", server.addr());
    let d = deliver(&outbox, &smtp(&url, Some(&ca.ca)), now());
    assert_complete(&d);
    assert_eq!(ids(&d.sent), ids(&queued));
    let expected: Vec<String> = queued
        .iter()
        .map(|id| format!("{id}@example.net"))
        .collect();
    assert_eq!(message_ids(&server), expected, "{}", server.log());
}

#[test]
fn an_unreachable_server_leaves_the_outbox_alone_and_a_later_run_sends_each_once() {
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();
    let queued = reminders(&outbox, 3);
    let before: Vec<Vec<u8>> = queued.iter().map(|id| outbox.read(id).unwrap()).collect();

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("smtp://gitvps:hunter2-pw@127.0.0.1:{closed}?timeout=5");
    let d = deliver(&outbox, &smtp(&url, None), now());
    let err = d.stopped.expect("stopped");
    assert!(matches!(err, SendError::Unreachable { .. }), "{err}");
    assert!(err.stops_delivery());
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{closed}")), "{text}");
    assert!(
        !text.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
        "{text}"
    );
    assert!(d.sent.is_empty() && d.rejected.is_empty());
    assert_eq!(ids(&outbox.pending().unwrap()), ids(&queued));
    let after: Vec<Vec<u8>> = queued.iter().map(|id| outbox.read(id).unwrap()).collect();
    assert_eq!(before, after);
    assert!(!repo.path().join("mail/sent").exists());

    let server = SmtpServer::start();
    let transport = smtp(&format!("smtp://{}", server.addr()), None);
    let d = deliver(&outbox, &transport, now());
    assert_complete(&d);
    assert_eq!(d.sent.len(), 3);
    let d = deliver(&outbox, &transport, now());
    assert!(d.sent.is_empty());
    assert_eq!(server.count(), 3);
    let expected: Vec<String> = queued
        .iter()
        .map(|id| format!("{id}@example.net"))
        .collect();
    assert_eq!(message_ids(&server), expected);
}

#[test]
fn a_refusing_server_stops_delivery() {
    let server = SmtpServer::start_with(&SmtpOptions {
        refuse: true,
        ..SmtpOptions::default()
    });
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();
    let queued = reminders(&outbox, 2);
    let d = deliver(
        &outbox,
        &smtp(&format!("smtp://{}", server.addr()), None),
        now(),
    );
    let err = d.stopped.expect("refused");
    assert!(matches!(err, SendError::Refused { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&server.addr()) && text.contains("554"),
        "{text}"
    );
    assert!(d.sent.is_empty() && d.rejected.is_empty());
    assert_eq!(ids(&outbox.pending().unwrap()), ids(&queued));
}

#[test]
fn a_rejected_recipient_is_set_aside_and_the_others_are_sent() {
    let server = SmtpServer::start_with(&SmtpOptions {
        reject_rcpt: vec!["customer1@example.org".into()],
        defer_rcpt: vec!["customer2@example.org".into()],
        ..SmtpOptions::default()
    });
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();
    let queued = reminders(&outbox, 4);
    let transport = smtp(&format!("smtp://{}", server.addr()), None);
    let d = deliver(&outbox, &transport, now());
    assert!(d.stopped.is_none() && d.failed.is_none());
    assert_eq!(ids(&d.sent), [queued[0].to_string(), queued[3].to_string()]);
    assert_eq!(d.rejected.len(), 1);
    assert_eq!(d.rejected[0].0, queued[1]);
    assert!(d.rejected[0].1.contains("550"), "{}", d.rejected[0].1);
    assert_eq!(d.deferred.len(), 1);
    assert_eq!(d.deferred[0].0, queued[2]);
    assert!(d.deferred[0].1.contains("450"), "{}", d.deferred[0].1);

    let rejected = repo.path().join("mail/rejected");
    assert!(rejected.join(format!("{}.eml", queued[1])).is_file());
    let reason = std::fs::read_to_string(rejected.join(format!("{}.reason", queued[1]))).unwrap();
    assert!(
        reason.starts_with("2026-12-02T06:00:00Z SMTP server 127.0.0.1:") && reason.contains("550"),
        "{reason}"
    );
    // The deferred one waits for the next run; the rejected one is not sent again.
    assert_eq!(ids(&outbox.pending().unwrap()), [queued[2].to_string()]);
    assert_eq!(server.count(), 2);
    let d = deliver(&outbox, &transport, now());
    assert!(d.sent.is_empty() && d.rejected.is_empty());
    assert_eq!(d.deferred.len(), 1);
    assert_eq!(server.count(), 2);
}

#[test]
fn a_server_that_dies_mid_delivery_loses_and_doubles_nothing() {
    let repo = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(repo.path()).unwrap();
    let queued = reminders(&outbox, 5);

    let mut first = SmtpServer::start_with(&SmtpOptions {
        max: Some(2),
        ..SmtpOptions::default()
    });
    let d = deliver(
        &outbox,
        &smtp(&format!("smtp://{}", first.addr()), None),
        now(),
    );
    assert_eq!(ids(&d.sent), ids(&queued[..2]));
    let err = d.stopped.expect("the server went away");
    assert!(err.stops_delivery(), "{err}");
    assert!(
        first.wait_exit(Duration::from_secs(5)),
        "--max did not exit"
    );
    assert_eq!(first.count(), 2);
    assert_eq!(ids(&outbox.pending().unwrap()), ids(&queued[2..]));

    let second = SmtpServer::start();
    let d = deliver(
        &outbox,
        &smtp(&format!("smtp://{}", second.addr()), None),
        now(),
    );
    assert_complete(&d);
    assert_eq!(ids(&d.sent), ids(&queued[2..]));

    let mut all = message_ids(&first);
    all.extend(message_ids(&second));
    all.sort();
    let expected: Vec<String> = queued
        .iter()
        .map(|id| format!("{id}@example.net"))
        .collect();
    assert_eq!(all, expected, "each message exactly once");
    assert_eq!(sent_log_lines(repo.path()).len(), 5);
}
