//! The operator's commands on the example fleet, against a bare remote and a real SMTP server
//! (aiosmtpd): `gitvps announce` (recipients, one commit, one mail each, nothing twice),
//! `gitvps ticket reply|close` (the thread, the customer's mail, clear errors), and
//! `gitvps validate` on broken billing records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gitvps_tests::smtp::SmtpServer;
use gitvps_tests::{bin, git};

/// A bare remote holding the example fleet and a clone tracking it.
fn setup(t: &Path) -> PathBuf {
    gitvps_tests::fleet_remote_and_clone(t)
}

/// Commits everything in the clone as the operator and pushes it.
fn commit_push(clone: &Path, message: &str) {
    git(clone, &["add", "-A"]);
    git(
        clone,
        &[
            "-c",
            "user.name=op",
            "-c",
            "user.email=op@example.net",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
    git(clone, &["push", "-q", "origin", "HEAD:main"]);
}

fn gitvps(clone: &Path, smtp: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.arg("--repo")
        .arg(clone)
        .args(args)
        .env_remove("GITVPS_SMTP_URL")
        .env_remove("GITVPS_SMTP_CA");
    if let Some(url) = smtp {
        c.env("GITVPS_SMTP_URL", url);
    }
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    gitvps_tests::output_text(o)
}

fn remote_log(t: &Path) -> Vec<String> {
    git(&t.join("remote.git"), &["log", "--format=%an %s", "main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn remote_file(t: &Path, path: &str) -> String {
    git(&t.join("remote.git"), &["show", &format!("main:{path}")])
}

#[test]
fn an_announcement_mails_each_customer_of_the_node_once_and_never_twice() {
    let t = tempfile::tempdir().unwrap();
    let clone = setup(t.path());
    // c-0003 (xen01 on node0109) has no address: listed as skipped.
    let c3 = clone.join("inventory/customers/c-0003.toml");
    let without: String = std::fs::read_to_string(&c3)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("email"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&c3, without).unwrap();
    commit_push(&clone, "c-0003 has no address");
    let body = t.path().join("notice.txt");
    std::fs::write(
        &body,
        "Node0109 reboots on Dec. 10 at 02:00 UTC for a kernel upgrade.\n# about 10 minutes\n",
    )
    .unwrap();
    let smtp = SmtpServer::start();
    let url = format!("smtp://{}", smtp.addr());
    let args = [
        "announce",
        "--node",
        "node0109",
        "--subject",
        "Node0109 maintenance",
        "--body-file",
        body.to_str().unwrap(),
        "--today",
        "2026-12-06",
    ];

    let dry = gitvps(&clone, Some(&url), &[&args[..], &["--dry-run"]].concat());
    assert_eq!(dry.status.code(), Some(2), "{}", text(&dry));
    assert_eq!(
        String::from_utf8_lossy(&dry.stdout),
        "announce 2026-12-06-node0109-maintenance (node node0109): \"Node0109 maintenance\"\n\
         ! mail c-0001 <jane@example.net> en: xen02\n\
         - skip c-0003 (no e-mail address): xen01\n\
         2 customer(s): 1 mail(s) to queue, 0 already, 1 skipped\n"
    );
    assert_eq!(remote_log(t.path()).len(), 2, "a dry run commits nothing");
    assert_eq!(smtp.count(), 0);

    let out = gitvps(&clone, Some(&url), &args);
    assert!(out.status.success(), "{}", text(&out));
    let log = remote_log(t.path());
    assert_eq!(log.len(), 4, "{log:?}");
    assert!(
        log[1].starts_with("gitvps-bot announce 2026-12-06-node0109-maintenance: Node0109"),
        "{log:?}"
    );
    assert!(log[0].starts_with("gitvps-bot mail: 1 sent"), "{log:?}");
    let record = remote_file(
        t.path(),
        "mail/announcements/2026-12-06-node0109-maintenance.toml",
    );
    for want in [
        "selector = \"node node0109\"",
        "recipients = 1",
        "id = \"announce.2026-12-06-node0109-maintenance.c-0001\"",
        "[[skipped]]\ncustomer = \"c-0003\"",
    ] {
        assert!(record.contains(want), "no `{want}` in:\n{record}");
    }
    let sent = remote_file(t.path(), "mail/sent/2026-12.log");
    assert!(
        sent.contains("announce.2026-12-06-node0109-maintenance.c-0003 - skipped: no e-mail"),
        "{sent}"
    );
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "{}", smtp.log());
    let p = msgs[0].parsed();
    assert_eq!(
        p.to().unwrap().first().unwrap().address(),
        Some("jane@example.net")
    );
    assert_eq!(p.subject(), Some("[GPLHost VPS] Node0109 maintenance"));
    let text_body = p.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(
        text_body.contains("Hello Jane Doe") && text_body.contains("# about 10 minutes"),
        "{text_body}"
    );

    // The same announcement again, another day: the same record, nothing queued or sent.
    let again: Vec<&str> = args
        .iter()
        .map(|a| if *a == "2026-12-06" { "2026-12-07" } else { a })
        .collect();
    let out = gitvps(&clone, Some(&url), &again);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("= mail c-0001 <jane@example.net> en: xen02 (already queued or sent)"),
        "{stdout}"
    );
    assert_eq!(remote_log(t.path()).len(), 4, "no new commit");
    assert_eq!(smtp.count(), 1, "nothing sent twice");

    // Chinese-speaking customers get the Chinese text; an unknown node is refused, naming them.
    let zh = t.path().join("notice.zh.txt");
    std::fs::write(&zh, "一号节点将于12月10日重启。").unwrap();
    let out = gitvps(
        &clone,
        Some(&url),
        &[
            "announce",
            "--all",
            "--subject",
            "Price change",
            "--body-file",
            body.to_str().unwrap(),
            "--subject-zh",
            "价格调整",
            "--body-file-zh",
            zh.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let msgs = smtp.messages();
    assert_eq!(
        msgs.len(),
        3,
        "the first, then c-0001 and c-0002; c-0003 skipped"
    );
    let lin = msgs
        .iter()
        .find(|m| m.parsed().to().unwrap().first().unwrap().address() == Some("lin.wei@example.cn"))
        .expect("Lin Wei's mail");
    assert_eq!(lin.parsed().subject(), Some("[GPLHost VPS] 价格调整"));
    let out = gitvps(
        &clone,
        Some(&url),
        &[
            "announce",
            "--node",
            "node9",
            "--subject",
            "x",
            "--body-file",
            body.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "node node9: no such node in the inventory (known: alpha, node0109, node0201)"
        ),
        "{err}"
    );
}

/// A ticket as a customer opens it through the hooks.
fn open_ticket(clone: &Path) {
    let text = model::tickets::render_new(
        &"c-0001".parse().unwrap(),
        "Disk full",
        Some(&"xen02".parse().unwrap()),
        "My disk is full, can you grow it?",
        "2026-12-05T10:00:00Z".parse().unwrap(),
    );
    std::fs::create_dir_all(clone.join("tickets")).unwrap();
    std::fs::write(clone.join("tickets/t-0001.md"), text).unwrap();
    commit_push(clone, "c-0001: ticket t-0001");
}

#[test]
fn support_replies_closes_and_the_customer_is_mailed() {
    let t = tempfile::tempdir().unwrap();
    let clone = setup(t.path());
    open_ticket(&clone);
    let smtp = SmtpServer::start();
    let url = format!("smtp://{}", smtp.addr());
    let answer = t.path().join("answer.txt");
    std::fs::write(&answer, "Grown to 40 GiB.\n### not a heading\n").unwrap();

    let out = gitvps(
        &clone,
        Some(&url),
        &[
            "ticket",
            "reply",
            "t-0001",
            "--body-file",
            answer.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let file = remote_file(t.path(), "tickets/t-0001.md");
    let ticket = model::tickets::parse("t-0001".parse().unwrap(), &file).unwrap();
    assert_eq!(ticket.status, "answered");
    assert_eq!(ticket.messages.len(), 2, "{file}");
    assert_eq!(ticket.messages[1].author, "support");
    assert_eq!(
        ticket.messages[1].body,
        "Grown to 40 GiB.\n\\### not a heading"
    );
    let log = remote_log(t.path());
    assert!(
        log[1].starts_with("gitvps-bot ticket t-0001: support replied (c-0001 · Disk full)"),
        "{log:?}"
    );
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1, "{}", smtp.log());
    let p = msgs[0].parsed();
    assert_eq!(p.subject(), Some("Re: [t-0001] Disk full"));
    assert_eq!(p.message_id(), Some("ticket-answered.t-0001.2@example.net"));
    let body = p.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(
        body.contains("Grown to 40 GiB.\n### not a heading")
            && body.contains("/panel/?ticket=t-0001"),
        "{body}"
    );

    // Reply and close: a second mail; close again: nothing to do, nothing sent.
    let out = gitvps(
        &clone,
        Some(&url),
        &[
            "ticket",
            "reply",
            "t-0001",
            "--body-file",
            answer.to_str().unwrap(),
            "--close",
            "--author",
            "Ann",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let file = remote_file(t.path(), "tickets/t-0001.md");
    assert!(file.contains("status = \"closed\""), "{file}");
    assert!(file.contains("### Ann · "), "{file}");
    assert_eq!(smtp.count(), 2);
    let commits = remote_log(t.path()).len();
    let out = gitvps(&clone, Some(&url), &["ticket", "close", "t-0001"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ticket t-0001 is already closed"),
        "{}",
        text(&out)
    );
    assert_eq!(remote_log(t.path()).len(), commits);
    assert_eq!(smtp.count(), 2);

    // Errors name the ticket and change nothing.
    let empty = t.path().join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    for (args, code, want) in [
        (
            vec!["ticket", "close", "t-0042"],
            1,
            "ticket t-0042 does not exist (no tickets/t-0042.md)",
        ),
        (
            vec![
                "ticket",
                "reply",
                "t-0001",
                "--body-file",
                empty.to_str().unwrap(),
            ],
            1,
            "ticket t-0001: the message must be 1 to 16384 bytes of text",
        ),
        (
            vec!["ticket", "close", "../t-0001"],
            2,
            "a ticket id is `t-` and 4 to 9 digits",
        ),
    ] {
        let out = gitvps(&clone, Some(&url), &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(remote_log(t.path()).len(), commits);
}

#[test]
fn validate_reports_broken_billing_records_with_file_and_line() {
    let t = tempfile::tempdir().unwrap();
    let clone = setup(t.path());
    // A billing run issues INV-2026-000001 to 000003 (no SMTP: the mails wait, exit 1).
    let out = gitvps(
        &clone,
        None,
        &["billing", "run", "--today", "2026-12-05", "--no-push"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let ok = gitvps(&clone, None, &["validate"]);
    assert!(ok.status.success(), "{}", text(&ok));

    std::fs::remove_file(clone.join("billing/invoices/INV-2026-000002.toml")).unwrap();
    std::fs::create_dir_all(clone.join("billing/payments")).unwrap();
    std::fs::write(
        clone.join("billing/payments/evt_x.toml"),
        "event = \"evt_x\"\n",
    )
    .unwrap();
    let out = gitvps(&clone, None, &["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("billing/payments/evt_x.toml"), "{err}");

    std::fs::remove_file(clone.join("billing/payments/evt_x.toml")).unwrap();
    let out = gitvps(&clone, None, &["validate"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("billing/invoices/INV-2026-000003.toml:")
            && err.contains(
                ": number: invoice INV-2026-000003: sequence numbers 2 to 2 of 2026 are missing before it"
            ),
        "{err}"
    );
    let json = gitvps(&clone, None, &["validate", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["field"], "number");
    assert!(v["errors"][0]["line"].as_u64().unwrap() > 0);
}
