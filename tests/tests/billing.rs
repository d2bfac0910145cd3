//! `gitvps billing run` on the example fleet, against a bare remote and a real SMTP server
//! (aiosmtpd): one commit and push, then the mails; a second run does nothing; an unreachable
//! server keeps the mails in the outbox for the next run, which sends each exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use gitvps_tests::smtp::SmtpServer;
use gitvps_tests::{bin, fleet_repo, git};

const TODAY: &str = "2026-12-05";

/// A bare remote holding the example fleet and a clone tracking it.
fn setup(t: &Path) -> PathBuf {
    gitvps_tests::fleet_remote_and_clone(t)
}

fn billing(clone: &Path, smtp: Option<&str>, extra: &[&str]) -> Output {
    let mut c = Command::new(bin());
    c.arg("--repo")
        .arg(clone)
        .args(["billing", "run", "--today", TODAY])
        .args(extra)
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

fn remote_log(t: &Path) -> String {
    git(&t.join("remote.git"), &["log", "--format=%an %s", "main"])
}

fn remote_file(t: &Path, path: &str) -> String {
    git(&t.join("remote.git"), &["show", &format!("main:{path}")])
}

#[test]
fn a_billing_run_commits_pushes_then_mails_and_a_second_run_does_nothing() {
    let t = tempfile::tempdir().unwrap();
    let clone = setup(t.path());
    let smtp = SmtpServer::start();
    let url = format!("smtp://{}", smtp.addr());

    let dry = billing(&clone, Some(&url), &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(2), "{}", text(&dry));
    let plan = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(plan.contains("~ suspend xen02"), "{plan}");
    assert!(plan.contains("+ invoice INV-2026-000001"), "{plan}");
    assert_eq!(smtp.count(), 0, "a dry run sends nothing");
    assert_eq!(
        remote_log(t.path()).lines().count(),
        1,
        "a dry run commits nothing"
    );

    let out = billing(&clone, Some(&url), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let log = remote_log(t.path());
    let subjects: Vec<&str> = log.lines().collect();
    assert_eq!(subjects.len(), 3, "{log}");
    assert!(
        subjects[1].starts_with("gitvps-bot billing run 2026-12-05: 3 invoice(s)"),
        "{log}"
    );
    assert!(subjects[0].starts_with("gitvps-bot mail: 6 sent"), "{log}");
    let xen02 = remote_file(t.path(), "inventory/vps/xen02.toml");
    assert!(xen02.contains("state = \"suspended\""), "{xen02}");
    assert!(xen02.contains("suspension = \"billing\""), "{xen02}");
    let inv = remote_file(t.path(), "billing/invoices/INV-2026-000002.toml");
    assert!(inv.contains("70.21"), "{inv}");
    assert_eq!(
        git(
            &t.path().join("remote.git"),
            &["ls-tree", "--name-only", "main", "mail/outbox/"]
        )
        .trim(),
        "",
        "the outbox is empty once sent"
    );
    let sent = remote_file(t.path(), "mail/sent/2026-12.log");
    assert_eq!(sent.lines().count(), 6, "{sent}");

    // The mails as received: one per intent, in the customer's language, with the panel link.
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 6, "{}", smtp.log());
    let suspended = msgs
        .iter()
        .find(|m| m.parsed().message_id() == Some("suspended.xen02.2011-06-09@example.net"))
        .expect("the suspension mail");
    let p = suspended.parsed();
    assert_eq!(
        p.to().unwrap().first().unwrap().address(),
        Some("jane@example.net")
    );
    let body = p.body_text(0).unwrap();
    assert!(body.contains("/panel/?vps=xen02"), "{body}");
    let invoice = msgs
        .iter()
        .find(|m| m.parsed().message_id() == Some("invoice.inv-2026-000002@example.net"))
        .expect("the invoice mail");
    let body = invoice.parsed().body_text(0).unwrap().into_owned();
    assert!(
        body.contains("INV-2026-000002") && body.contains("70.21"),
        "{body}"
    );
    for m in &msgs {
        assert_eq!(
            m.parsed().header_raw("Auto-Submitted").map(str::trim),
            Some("auto-generated")
        );
    }

    // The same day again: nothing decided, committed or sent.
    let again = billing(&clone, Some(&url), &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to do"),
        "{}",
        text(&again)
    );
    assert_eq!(remote_log(t.path()).lines().count(), 3);
    assert_eq!(smtp.count(), 6);
}

#[test]
fn an_unreachable_smtp_server_keeps_the_mail_for_the_next_run_which_sends_it_once() {
    let t = tempfile::tempdir().unwrap();
    let clone = setup(t.path());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = format!("smtp://robot:s3cret-pass@127.0.0.1:{port}");

    let out = billing(&clone, Some(&down), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(
        !err.contains("s3cret-pass"),
        "the password never shows: {err}"
    );
    // The state change landed; the mails wait in the pushed outbox.
    let xen02 = remote_file(t.path(), "inventory/vps/xen02.toml");
    assert!(xen02.contains("state = \"suspended\""), "{xen02}");
    let outbox = git(
        &t.path().join("remote.git"),
        &["ls-tree", "--name-only", "main", "mail/outbox/"],
    );
    assert_eq!(outbox.lines().count(), 6, "{outbox}");

    // Without a server configured at all: named, kept, exit 1.
    let unset = billing(&clone, None, &[]);
    assert_eq!(unset.status.code(), Some(1), "{}", text(&unset));
    assert!(
        String::from_utf8_lossy(&unset.stderr).contains("6 mail(s) wait"),
        "{}",
        text(&unset)
    );

    // The next run, with the server up, decides nothing new and sends the six once.
    let smtp = SmtpServer::start();
    let up = billing(&clone, Some(&format!("smtp://{}", smtp.addr())), &[]);
    assert!(up.status.success(), "{}", text(&up));
    assert_eq!(smtp.count(), 6, "{}", smtp.log());
    let again = billing(&clone, Some(&format!("smtp://{}", smtp.addr())), &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(smtp.count(), 6, "each mail exactly once");
    let log = remote_log(t.path());
    assert_eq!(
        log.lines().filter(|l| l.contains("billing run")).count(),
        1,
        "{log}"
    );
}

#[test]
fn a_customer_without_an_address_is_named_and_only_that_mail_is_skipped() {
    let t = tempfile::tempdir().unwrap();
    let seed = fleet_repo(t.path(), &["inventory"]);
    let c = seed.join("inventory/customers/c-0001.toml");
    let text0 = std::fs::read_to_string(&c).unwrap();
    let without: String = text0
        .lines()
        .filter(|l| !l.starts_with("email"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&c, without).unwrap();
    git(
        &seed,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t.invalid",
            "commit",
            "-q",
            "-am",
            "no mail",
        ],
    );
    git(
        t.path(),
        &[
            "clone",
            "-q",
            "--bare",
            seed.to_str().unwrap(),
            "remote.git",
        ],
    );
    git(t.path(), &["clone", "-q", "remote.git", "clone"]);
    let clone = t.path().join("clone");
    let smtp = SmtpServer::start();
    let out = billing(&clone, Some(&format!("smtp://{}", smtp.addr())), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("suspended.xen02.2011-06-09 not sent"), "{err}");
    assert_eq!(
        smtp.count(),
        4,
        "the other customer's mails went out: {}",
        smtp.log()
    );
    let again = billing(&clone, Some(&format!("smtp://{}", smtp.addr())), &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("not sent"),
        "skipped once"
    );
}

fn gitvps(clone: &Path, args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--repo")
        .arg(clone)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_operator_lists_and_shows_issued_invoices_with_their_paid_status() {
    let t = tempfile::tempdir().unwrap();
    let clone = setup(t.path());
    let out = billing(&clone, None, &[]);
    assert_eq!(out.status.code(), Some(1), "mail waits: {}", text(&out));
    // A payment record (as the hooks' webhook writes one) settles INV-2026-000002.
    std::fs::create_dir_all(clone.join("billing/payments")).unwrap();
    std::fs::write(
        clone.join("billing/payments/evt_1.toml"),
        "event = \"evt_1\"\nkind = \"renew\"\ncustomer = \"c-0001\"\nvps = \"xen02\"\n\
         invoice = \"INV-2026-000002\"\namount = \"70.21\"\ncurrency = \"USD\"\n\
         paid_at = \"2026-12-06T09:00:00Z\"\napplied = true\n",
    )
    .unwrap();

    let list = gitvps(&clone, &["invoice", "list"]);
    assert!(list.status.success(), "{}", text(&list));
    let stdout = String::from_utf8_lossy(&list.stdout);
    assert_eq!(
        stdout.lines().count(),
        4,
        "a header and three invoices: {stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("INV-2026-000002  c-0001    xen02")
                && l.ends_with("70.21  USD       paid 2026-12-06")),
        "{stdout}"
    );
    let unpaid = gitvps(
        &clone,
        &[
            "invoice",
            "list",
            "--unpaid",
            "--customer",
            "c-0003",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&unpaid.stdout).unwrap();
    let numbers: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["INV-2026-000001", "INV-2026-000003"], "{v}");
    let none = gitvps(
        &clone,
        &["invoice", "list", "--unpaid", "--customer", "c-0001"],
    );
    assert!(none.stdout.is_empty(), "{}", text(&none));

    let show = gitvps(&clone, &["invoice", "show", "INV-2026-000002"]);
    let s = String::from_utf8_lossy(&show.stdout);
    assert!(
        s.starts_with("invoice INV-2026-000002 (renewal, paid 2026-12-06)"),
        "{s}"
    );
    assert!(s.contains("tax 19 % (DE)  11.21 USD"), "{s}");
    let html = gitvps(&clone, &["invoice", "show", "INV-2026-000002", "--html"]);
    let h = String::from_utf8_lossy(&html.stdout);
    assert!(
        h.starts_with("<!DOCTYPE html>") && h.contains("Paid on 2026-12-06"),
        "{h}"
    );
    let zh = gitvps(
        &clone,
        &[
            "invoice",
            "show",
            "INV-2026-000001",
            "--html",
            "--lang",
            "zh",
        ],
    );
    assert!(String::from_utf8_lossy(&zh.stdout).contains("未付款"));
    // An override in the repo changes the document; a bad one is named.
    std::fs::create_dir_all(clone.join("templates/invoice")).unwrap();
    std::fs::write(
        clone.join("templates/invoice/invoice.en.html"),
        "{{ number }}: {{ total }} {{ currency }}\n",
    )
    .unwrap();
    let html = gitvps(&clone, &["invoice", "show", "INV-2026-000002", "--html"]);
    assert_eq!(
        String::from_utf8_lossy(&html.stdout),
        "INV-2026-000002: 70.21 USD\n"
    );
    std::fs::write(clone.join("templates/invoice/invoice.de.html"), "x").unwrap();
    let bad = gitvps(&clone, &["invoice", "show", "INV-2026-000002", "--html"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("templates/invoice/invoice.de.html"),
        "{}",
        text(&bad)
    );

    let missing = gitvps(&clone, &["invoice", "show", "INV-2026-999999"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("no such invoice"),
        "{}",
        text(&missing)
    );
}
