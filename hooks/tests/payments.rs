//! Payments checked against invoices, end to end: the renew route charges the open invoice (or
//! what the invoice a payment issues will say), the webhook pays it only with its amount and
//! currency, an order lands in one commit with its invoice and mails, redelivery adds nothing,
//! asynchronous methods apply on success only, and zero-decimal currencies stay whole.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::stripe::*;
use common::*;
use serde_json::{Value, json};

/// The names of the files in a folder at the head of `main`.
fn names_in(fleet: &Fleet, dir: &str) -> Vec<String> {
    let repo = fleet.repo();
    let tree = repo.find_commit(fleet.head()).unwrap().tree().unwrap();
    let Ok(entry) = tree.get_path(Path::new(dir)) else {
        return Vec::new();
    };
    let sub = repo.find_tree(entry.id()).unwrap();
    sub.iter().map(|e| e.name().unwrap().to_owned()).collect()
}

/// The example fleet with the renewal invoices the billing run issues today (one for xen02:
/// it has lapsed, so it is billed every day it is not paid), and the changes `tweak` makes.
fn fleet_with_open_invoices(tweak: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Fleet {
    Fleet::with(|files| {
        tweak(files);
        let dir = tempfile::tempdir().unwrap();
        for (p, b) in files.iter() {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b).unwrap();
        }
        let inv = model::Inventory::load(dir.path()).unwrap();
        let today = chrono::Utc::now().date_naive();
        let run = billing::decide(today, &inv, &inv.settings, &billing::Ledger::default());
        for i in run.invoices {
            files.push((
                billing::invoice_path(&i.number),
                billing::invoice::render(&i).into_bytes(),
            ));
        }
    })
}

/// Jane's open invoice for xen02, as the head holds it.
fn xen02_invoice(fleet: &Fleet) -> billing::Invoice {
    names_in(fleet, "billing/invoices")
        .into_iter()
        .map(|n| {
            let path = format!("billing/invoices/{n}");
            billing::invoice::parse(&path, &fleet.file(&path).unwrap()).unwrap()
        })
        .find(|i| i.renews().is_some_and(|(v, _)| v.as_str() == "xen02"))
        .expect("the billing run invoiced xen02")
}

/// Renews `vps` as its owner `customer` through the route; answers the session's form.
async fn renew(
    (app, seen, fleet): (&axum::Router, &Seen, &Fleet),
    customer: &str,
    vps: &str,
    body: &str,
) -> BTreeMap<String, String> {
    let t = token_for(fleet, customer);
    let path = format!("/api/vps/{vps}/renew");
    let (s, v) = call(app, "POST", &path, Some(&t), Some(body)).await;
    assert_eq!(s, 200, "{v}");
    seen.0.lock().unwrap().last().unwrap().2.clone()
}

/// Renews xen02 through the route: the session's total, currency and metadata.
async fn renew_xen02(app: &axum::Router, seen: &Seen, fleet: &Fleet, body: &str) -> Value {
    let form = renew((app, seen, fleet), "c-0001", "xen02", body).await;
    json!({"total": form_total(&form), "currency": form["line_items[0][price_data][currency]"], "meta": metadata(&form)})
}

async fn deliver(app: &axum::Router, event: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    let (s, v) = webhook(
        app,
        event,
        Some(&stripe_signature(event, WEBHOOK_SECRET, now)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test]
async fn the_open_invoice_is_charged_and_its_total_pays_it() {
    let fleet = fleet_with_open_invoices(|_| {});
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let open = xen02_invoice(&fleet);
    // 59.00 and Jane's 19 % tax: the invoice's total, not the bare price.
    assert_eq!(open.total.to_string(), "70.21");
    let product = open.lines[0].product.to_string();
    for body in ["{}".to_owned(), json!({ "product": product }).to_string()] {
        let s = renew_xen02(&app, &seen, &fleet, &body).await;
        assert_eq!(s["total"], 7021, "{body}: {s}");
        assert_eq!(s["currency"], "usd");
        assert_eq!(s["meta"]["invoice"], open.number.as_str(), "{s}");
    }
    // Another renewal offer while an invoice is open for this expiry: pay that one first.
    let t = token_for(&fleet, "c-0001");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen02/renew",
        Some(&t),
        Some(r#"{"product":"advanced-3m"}"#),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("open_invoice")), "{v}");

    let form = seen.0.lock().unwrap().last().unwrap().2.clone();
    let before = fleet.commit_count();
    let now = chrono::Utc::now().timestamp();
    let ev = checkout_event("evt_pay_open", "cs_open_1", now, 7021, metadata(&form));
    let v = deliver(&app, &ev).await;
    assert_eq!(v["result"], "renewed", "{v}");
    assert_eq!(v["invoice"], open.number.as_str(), "{v}");
    assert_eq!(fleet.commit_count(), before + 1, "one commit");
    // The invoice is paid by the record that names it; no second invoice was issued.
    let record = fleet.file("billing/payments/evt_pay_open.toml").unwrap();
    assert!(
        record.contains(&format!("invoice = \"{}\"", open.number)),
        "{record}"
    );
    let changes = fleet.head_changes();
    assert!(
        !changes.iter().any(|p| p.starts_with("billing/invoices/")),
        "{changes:?}"
    );
    let ledger = billing::Ledger::load(
        names_in(&fleet, "billing/invoices").into_iter().map(|n| {
            let p = format!("billing/invoices/{n}");
            let t = fleet.file(&p).unwrap();
            (p, t)
        }),
        [(
            "billing/payments/evt_pay_open.toml".to_owned(),
            record.clone(),
        )],
        Vec::<String>::new(),
    )
    .unwrap();
    assert!(ledger.is_paid(&open.number));
}

#[tokio::test]
async fn a_payment_of_another_amount_or_currency_pays_nothing_and_renews_nothing() {
    let fleet = fleet_with_open_invoices(|_| {});
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let open = xen02_invoice(&fleet);
    renew_xen02(&app, &seen, &fleet, "{}").await;
    let meta = metadata(&seen.0.lock().unwrap()[0].2);
    let vps_before = fleet.file("inventory/vps/xen02.toml").unwrap();
    let now = chrono::Utc::now().timestamp();
    for (event, amount, currency) in [
        ("evt_short", 5900, "usd"),
        ("evt_other_currency", 7021, "eur"),
    ] {
        let before = fleet.commit_count();
        let ev = session_event(
            "checkout.session.completed",
            event,
            &format!("cs_{event}"),
            now,
            amount,
            currency,
            "paid",
            meta.clone(),
        );
        let v = deliver(&app, &ev).await;
        assert_eq!(v["result"], "refused", "{v}");
        assert_eq!(fleet.commit_count(), before + 1, "recorded");
        assert_eq!(
            fleet.head_changes(),
            [format!("billing/payments/{event}.toml")]
        );
        let record = fleet
            .file(&format!("billing/payments/{event}.toml"))
            .unwrap();
        assert!(record.contains("refused = true"), "{record}");
        assert!(
            record.contains(open.number.as_str()),
            "the note names it: {record}"
        );
        assert!(
            !record.contains("invoice ="),
            "it does not pay it: {record}"
        );
    }
    assert_eq!(
        fleet.file("inventory/vps/xen02.toml").unwrap(),
        vps_before,
        "not renewed"
    );
    // The operator sees both in billing's ledger (and `gitvps billing report`).
    let payments: Vec<(String, String)> = names_in(&fleet, "billing/payments")
        .into_iter()
        .map(|n| {
            let p = format!("billing/payments/{n}");
            let t = fleet.file(&p).unwrap();
            (p, t)
        })
        .collect();
    let invoices: Vec<(String, String)> = names_in(&fleet, "billing/invoices")
        .into_iter()
        .map(|n| {
            let p = format!("billing/invoices/{n}");
            let t = fleet.file(&p).unwrap();
            (p, t)
        })
        .collect();
    let ledger = billing::Ledger::load(invoices, payments, Vec::<String>::new()).unwrap();
    assert!(!ledger.is_paid(&open.number));
    assert_eq!(ledger.unapplied.len(), 2);
    assert!(ledger.unapplied.iter().all(|p| p.refused));
}

#[tokio::test]
async fn an_order_is_one_commit_with_vps_record_invoice_and_mails_and_redelivery_adds_nothing() {
    let fleet = Fleet::new();
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let form = order_as_new_customer(&app, &seen, "Tampa, Florida (USA)", "debian-12").await;
    assert_eq!(form["allowed_payment_method_types[0]"], "card");
    assert_eq!(form["allowed_payment_method_types[2]"], "wechat_pay");
    assert_eq!(form["payment_method_options[wechat_pay][client]"], "web");
    let total = form_total(&form);
    assert_eq!(total, 5900, "a new customer has no country: no tax");
    let before = fleet.commit_count();
    let now = chrono::Utc::now().timestamp();
    let ev = checkout_event(
        "evt_test_Order1",
        "cs_test_standin_1",
        now,
        total,
        metadata(&form),
    );
    let v = deliver(&app, &ev).await;
    assert_eq!(v["result"], "ordered", "{v}");
    let vps = v["vps"].as_str().unwrap().to_owned();
    let number = v["invoice"].as_str().unwrap().to_owned();
    assert_eq!(fleet.commit_count(), before + 1, "exactly one commit");
    let mut want = vec![
        format!("billing/invoices/{number}.toml"),
        "billing/payments/evt_test_Order1.toml".to_owned(),
        "inventory/customers/c-0004.toml".to_owned(),
        format!("inventory/vps/{vps}.toml"),
        "mail/outbox/order-confirmed.evt.test.-order1.eml".to_owned(),
        "mail/outbox/payment-received.evt.test.-order1.eml".to_owned(),
    ];
    want.sort();
    assert_eq!(fleet.head_changes(), want);
    let invoice = billing::invoice::parse(
        &want[0],
        &fleet
            .file(&format!("billing/invoices/{number}.toml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(invoice.total.to_string(), "59.00");
    assert_eq!(invoice.customer.as_str(), "c-0004");

    // The confirmation, as the customer will read it: in Chinese, with the panel link, the
    // address from the pool and the console command.
    let eml = fleet
        .file("mail/outbox/order-confirmed.evt.test.-order1.eml")
        .unwrap();
    let msg = mail_parser::MessageParser::default()
        .parse(eml.as_bytes())
        .unwrap();
    assert_eq!(
        msg.header_raw("Content-Language").unwrap().trim(),
        "zh-Hans"
    );
    assert_eq!(msg.subject(), Some(format!("订单已确认：{vps}").as_str()));
    assert_eq!(
        msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("wang@example.cn")
    );
    let text = msg.body_text(0).unwrap();
    let inv = inventory_at_head(&fleet);
    let placed = &inv.vps[&vps.parse::<model::VpsId>().unwrap()];
    let node = &inv.nodes[&placed.node];
    assert!(
        text.contains(&format!("http://127.0.0.1:8080/zh/panel/?vps={vps}")),
        "{text}"
    );
    assert!(text.contains(&placed.ips[0].to_string()), "{text}");
    assert!(
        text.contains(&format!("ssh {vps}@{}", node.address))
            || text.contains(&format!("ssh -p {} {vps}@{}", node.port, node.address)),
        "{text}"
    );
    assert!(text.contains("控制台"), "{text}");

    // Stripe delivers the event again: nothing new, no mail queued twice.
    let head = fleet.head();
    let v = deliver(&app, &ev).await;
    assert_eq!(v["result"], "duplicate", "{v}");
    assert_eq!(fleet.head(), head);
}

#[tokio::test]
async fn asynchronous_payments_apply_on_success_and_not_on_failure() {
    let fleet = Fleet::new();
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let body = r#"{"product":"advanced-1m"}"#;
    let form = renew((&app, &seen, &fleet), "c-0003", "xen04", body).await;
    let (total, meta) = (form_total(&form), metadata(&form));
    let now = chrono::Utc::now().timestamp();
    let before = fleet.commit_count();
    let event = |kind: &str, id: &str, status: &str| {
        session_event(
            kind,
            id,
            "cs_async_1",
            now,
            total,
            "usd",
            status,
            meta.clone(),
        )
    };
    // The bank debit is under way: Checkout completes unpaid.
    let v = deliver(
        &app,
        &event("checkout.session.completed", "evt_async_1", "unpaid"),
    )
    .await;
    assert!(v["ignored"].is_string(), "{v}");
    // It fails: logged, nothing recorded.
    let v = deliver(
        &app,
        &event(
            "checkout.session.async_payment_failed",
            "evt_async_2",
            "unpaid",
        ),
    )
    .await;
    assert_eq!(v["ignored"], "the payment failed", "{v}");
    assert_eq!(fleet.commit_count(), before, "nothing applied");
    // A later attempt succeeds: applied once.
    let v = deliver(
        &app,
        &event(
            "checkout.session.async_payment_succeeded",
            "evt_async_3",
            "paid",
        ),
    )
    .await;
    assert_eq!(v["result"], "renewed", "{v}");
    assert_eq!(fleet.commit_count(), before + 1);
    let mail = fleet
        .file("mail/outbox/payment-received.evt.async.3.eml")
        .unwrap();
    assert!(mail.contains("Content-Language: en"), "{mail}");
}

/// Regression: a JPY price went to Stripe × 100 (¥177 asked as ¥17,700), and Stripe's whole
/// yen came back ÷ 100.
#[tokio::test]
async fn jpy_is_charged_and_read_back_in_whole_yen() {
    let fleet = Fleet::with(|files| {
        replace_in(
            files,
            "products.toml",
            "currency = \"USD\"",
            "currency = \"JPY\"",
        )
    });
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let body = r#"{"product":"advanced-3m"}"#;
    let form = renew((&app, &seen, &fleet), "c-0001", "xen02", body).await;
    assert_eq!(form["line_items[0][price_data][currency]"], "jpy");
    assert_eq!(form["line_items[0][price_data][unit_amount]"], "149");
    // 19 % of ¥149 is ¥28.31: rounded to whole yen.
    assert_eq!(form["line_items[1][price_data][unit_amount]"], "28");
    assert_eq!(form_total(&form), 177);
    let now = chrono::Utc::now().timestamp();
    let ev = session_event(
        "checkout.session.completed",
        "evt_jpy_1",
        "cs_jpy_1",
        now,
        177,
        "jpy",
        "paid",
        metadata(&form),
    );
    let v = deliver(&app, &ev).await;
    assert_eq!(v["result"], "renewed", "{v}");
    let record = fleet.file("billing/payments/evt_jpy_1.toml").unwrap();
    assert!(record.contains("amount = \"177\""), "{record}");
    assert!(record.contains("currency = \"JPY\""), "{record}");
}

#[tokio::test]
async fn a_traffic_block_is_sold_for_the_current_period_and_lifts_the_throttle_at_the_next_traffic_run()
 {
    // Lin's xen03 (Advanced, 200 GiB a month) was throttled by the traffic policy.
    let fleet = Fleet::with(|files| {
        replace_in(
            files,
            "inventory/vps/xen03.toml",
            "state = \"active\"\n",
            "state = \"active\"\nthrottled = true\n",
        );
    });
    let (app, seen) = app_with_stripe(&fleet, false).await;
    let lin = token_for(&fleet, "c-0002");
    // Another customer's VPS is not found; a product that is not a traffic block is refused.
    let jane = token_for(&fleet, "c-0001");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen03/traffic",
        Some(&jane),
        Some("{}"),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen03/traffic",
        Some(&lin),
        Some(r#"{"product":"advanced"}"#),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (422, Some("not_for_sale")), "{v}");
    assert!(seen.0.lock().unwrap().is_empty(), "no session was made");

    // The panel offers the catalog's blocks with their price for this period.
    let (s, me) = call(&app, "GET", "/api/me", Some(&lin), None).await;
    assert_eq!(s, 200, "{me}");
    let xen03 = me["vps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "xen03")
        .unwrap();
    let offers = xen03["traffic_blocks"].as_array().unwrap();
    assert_eq!(offers.len(), 2, "{xen03}");
    let today = chrono::Utc::now().date_naive();
    let start = model::usage::period(model::settings::TrafficReset::First, today, today)
        .unwrap()
        .start;
    let big = offers
        .iter()
        .find(|o| o["product"] == "traffic-100g")
        .unwrap();
    assert_eq!(big["size"], "100 GiB");
    assert_eq!(big["period_start"], start.to_string());

    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen03/traffic",
        Some(&lin),
        Some(r#"{"product":"traffic-100g"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let form = seen.0.lock().unwrap().last().unwrap().2.clone();
    let meta = metadata(&form);
    assert_eq!(meta["kind"], "traffic_block", "{meta}");
    assert_eq!(meta["vps"], "xen03");
    assert_eq!(meta["period"], start.to_string());
    let total = form_total(&form);
    // The session charges the price the panel showed (tax included).
    let shown: model::values::Money = big["price"].as_str().unwrap().parse().unwrap();
    assert_eq!(total, shown.minor_units(), "{big}");
    let vps_before = fleet.file("inventory/vps/xen03.toml").unwrap();
    let now = chrono::Utc::now().timestamp();

    // Paid short: recorded as refused, nothing else changes.
    let before = fleet.commit_count();
    let v = deliver(
        &app,
        &checkout_event("evt_tb_short", "cs_tb_short", now, total - 1, meta.clone()),
    )
    .await;
    assert_eq!(v["result"], "refused", "{v}");
    assert_eq!(fleet.commit_count(), before + 1);
    assert_eq!(fleet.head_changes(), ["billing/payments/evt_tb_short.toml"]);
    // Bought for another period (a session of last month paid now): money kept, no block.
    let mut stale = meta.clone();
    stale["period"] = (start - chrono::Months::new(1)).to_string().into();
    let v = deliver(
        &app,
        &checkout_event("evt_tb_stale", "cs_tb_stale", now, total, stale),
    )
    .await;
    assert_eq!(v["result"], "not_applied", "{v}");
    assert_eq!(fleet.file("inventory/vps/xen03.toml").unwrap(), vps_before);

    // Paid in full: one commit with the block, its invoice and the payment record.
    let before = fleet.commit_count();
    let paid = checkout_event("evt_tb", "cs_tb", now, total, meta.clone());
    let v = deliver(&app, &paid).await;
    assert_eq!(v["result"], "traffic_block", "{v}");
    assert_eq!(fleet.commit_count(), before + 1, "one commit");
    let number = v["invoice"].as_str().unwrap().to_owned();
    let file = fleet.file("inventory/vps/xen03.toml").unwrap();
    assert!(
        file.contains(&format!(
            "[[traffic_block]]\nperiod = {start}\nsize = \"100 GiB\"\ninvoice = \"{number}\"\n"
        )),
        "{file}"
    );
    let path = format!("billing/invoices/{number}.toml");
    let invoice = billing::invoice::parse(&path, &fleet.file(&path).unwrap()).unwrap();
    assert_eq!(
        invoice.kind,
        billing::invoice::InvoiceKind::TrafficBlock {
            vps: "xen03".parse().unwrap(),
            period: start
        }
    );
    assert_eq!(invoice.customer.as_str(), "c-0002");
    let record = fleet.file("billing/payments/evt_tb.toml").unwrap();
    assert!(
        record.contains(&format!("invoice = \"{number}\"")),
        "{record}"
    );
    // The same commit queues the receipt: the block, the amount, the period and the invoice,
    // in the customer's language.
    let mut want = vec![
        format!("billing/invoices/{number}.toml"),
        "billing/payments/evt_tb.toml".to_owned(),
        "inventory/vps/xen03.toml".to_owned(),
        "mail/outbox/traffic-block-paid.evt.tb.eml".to_owned(),
    ];
    want.sort();
    assert_eq!(fleet.head_changes(), want);
    let eml = fleet
        .file("mail/outbox/traffic-block-paid.evt.tb.eml")
        .unwrap();
    let msg = mail_parser::MessageParser::default()
        .parse(eml.as_bytes())
        .unwrap();
    let last_day = model::usage::period(model::settings::TrafficReset::First, today, today)
        .unwrap()
        .end
        .pred_opt()
        .unwrap();
    let lang = msg
        .header_raw("Content-Language")
        .unwrap()
        .trim()
        .to_owned();
    let subject = msg.subject().unwrap().to_owned();
    let text = msg.body_text(0).unwrap().into_owned();
    let shown_amount = big["price"].as_str().unwrap();
    // Lin writes Chinese.
    assert_eq!(lang, "zh-Hans");
    assert_eq!(
        subject,
        format!("已收到 xen03 的流量包付款：本周期增加 100 GiB，至 {last_day}")
    );
    for part in [
        shown_amount,
        number.as_str(),
        &start.to_string(),
        &last_day.to_string(),
        "/zh/panel/?vps=xen03",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }

    // Replayed, and the same session under another event: nothing more.
    let before = fleet.commit_count();
    let v = deliver(&app, &paid).await;
    assert_eq!(v["result"], "duplicate", "{v}");
    let v = deliver(
        &app,
        &checkout_event("evt_tb_again", "cs_tb", now, total, meta),
    )
    .await;
    assert_eq!(v["result"], "duplicate", "{v}");
    assert_eq!(fleet.commit_count(), before);

    // The next traffic run sees 300 GiB for the period: 220 GiB used is under its 80 %, so
    // the throttle is lifted (and nobody is mailed).
    let inv = inventory_at_head(&fleet);
    let v = &inv.vps[&"xen03".parse::<model::VpsId>().unwrap()];
    assert_eq!(
        inv.traffic_quota(v, start),
        Some(model::values::Size::gib(300))
    );
    let gib = 1u64 << 30;
    let totals = BTreeMap::from([(
        v.id.clone(),
        monitor::usage::Totals {
            rx: 200 * gib,
            tx: 20 * gib,
        },
    )]);
    let none = model::usage::UsageFile::default();
    let run =
        monitor::usage::decide(&inv, today, chrono::Utc::now(), &totals, &none, &none).unwrap();
    let lifted: Vec<_> = run
        .changes
        .iter()
        .map(|c| (c.vps.as_str(), c.action))
        .collect();
    assert_eq!(
        lifted,
        [("xen03", monitor::usage::ChangeKind::Unthrottle)],
        "{}",
        run.render()
    );
    assert!(run.mails.is_empty(), "{}", run.render());
}
