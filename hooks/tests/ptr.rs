//! `PUT /api/vps/{id}/ptr` in-process against a real bare repo: one commit editing `[ptr]`,
//! `GET /api/me` showing the names, 404/422 with no commit, and forward confirmation with a
//! resolver that answers from a table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use common::*;
use hooks::resolve::{Lookup, ResolveError, Resolver};
use model::values::Hostname;
use serde_json::{Value, json};

/// Answers from a table; a name missing from it has no address; `slow.example.net` times out.
struct Table(BTreeMap<&'static str, Vec<&'static str>>);

impl Resolver for Table {
    fn addresses<'a>(&'a self, name: &'a Hostname) -> Lookup<'a> {
        Box::pin(async move {
            if name.as_str() == "slow.example.net" {
                return Err(ResolveError::Timeout(name.clone()));
            }
            let found: Vec<IpAddr> = self
                .0
                .get(name.as_str())
                .map(|l| l.iter().map(|a| a.parse().unwrap()).collect())
                .unwrap_or_default();
            if found.is_empty() {
                Err(ResolveError::NoAddress(name.clone()))
            } else {
                Ok(found)
            }
        })
    }
}

fn app_with(fleet: &Fleet) -> axum::Router {
    let table = Table(BTreeMap::from([
        (
            "mail.example.net",
            vec!["66.255.255.34", "2001:db8:66:22::25"],
        ),
        ("other.example.net", vec!["192.0.2.7"]),
    ]));
    let app = hooks::App::new(fleet.config())
        .unwrap()
        .with_resolver(Arc::new(table));
    hooks::router(Arc::new(app))
}

async fn put_ptr(app: &axum::Router, t: &str, vps: &str, body: Value) -> (u16, Value) {
    call(
        app,
        "PUT",
        &format!("/api/vps/{vps}/ptr"),
        Some(t),
        Some(&body.to_string()),
    )
    .await
}

/// The `addresses` of a VPS in `GET /api/me`.
async fn addresses(app: &axum::Router, t: &str, vps: &str) -> Vec<(String, String, bool)> {
    let (s, me) = call(app, "GET", "/api/me", Some(t), None).await;
    assert_eq!(s, 200, "{me}");
    let v = me["vps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == vps)
        .unwrap();
    v["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_owned(),
                a["ptr"].as_str().unwrap().to_owned(),
                a["custom"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn row(a: &str, n: &str, custom: bool) -> (String, String, bool) {
    (a.to_owned(), n.to_owned(), custom)
}

#[tokio::test]
async fn a_ptr_name_is_one_commit_and_shows_in_me() {
    let fleet = Fleet::new();
    let app = app_with(&fleet);
    let t = token_for(&fleet, "c-0001");
    assert_eq!(
        addresses(&app, &t, "xen02").await,
        [
            row("66.255.255.34", "xen02.example.net", false),
            row("2001:db8:66:22::1", "xen02.example.net", false)
        ]
    );
    let before = fleet.commit_count();
    let (s, v) = put_ptr(
        &app,
        &t,
        "xen02",
        json!({"address": "66.255.255.34", "name": "Mail.Example.net"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (&v["done"], &v["name"], &v["custom"], &v["changed"]),
        (
            &json!("ptr"),
            &json!("mail.example.net"),
            &json!(true),
            &json!(true)
        )
    );
    assert_eq!(fleet.commit_count(), before + 1);
    assert_eq!(
        fleet.messages()[0],
        "c-0001: set the reverse name of 66.255.255.34 (xen02) to mail.example.net (site)"
    );
    assert_eq!(fleet.head_changes(), ["inventory/vps/xen02.toml"]);
    let file = fleet.file("inventory/vps/xen02.toml").unwrap();
    assert!(
        file.ends_with("\n[ptr]\n\"66.255.255.34\" = \"mail.example.net\"\n"),
        "{file}"
    );
    // An address of the /64 other than ::1 joins the list once named.
    let (s, v) = put_ptr(
        &app,
        &t,
        "xen02",
        json!({"address": "2001:db8:66:22::25", "name": "mx.example.net."}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        addresses(&app, &t, "xen02").await,
        [
            row("66.255.255.34", "mail.example.net", true),
            row("2001:db8:66:22::1", "xen02.example.net", false),
            row("2001:db8:66:22::25", "mx.example.net", true),
        ]
    );
    // The same name again: no commit.
    let before = fleet.commit_count();
    let (s, v) = put_ptr(
        &app,
        &t,
        "xen02",
        json!({"address": "66.255.255.34", "name": "mail.example.net"}),
    )
    .await;
    assert_eq!((s, &v["changed"]), (200, &json!(false)), "{v}");
    assert_eq!(fleet.commit_count(), before);
    // null and "" reset to the host name; an emptied [ptr] goes.
    for (address, name) in [
        ("66.255.255.34", json!(null)),
        ("2001:db8:66:22::25", json!("")),
    ] {
        let (s, v) = put_ptr(&app, &t, "xen02", json!({"address": address, "name": name})).await;
        assert_eq!((s, &v["custom"]), (200, &json!(false)), "{v}");
    }
    assert_eq!(
        fleet.messages()[0],
        "c-0001: reset the reverse name of 2001:db8:66:22::25 (xen02) to the host name (site)"
    );
    assert!(
        !fleet
            .file("inventory/vps/xen02.toml")
            .unwrap()
            .contains("[ptr]")
    );
    assert_eq!(
        addresses(&app, &t, "xen02").await,
        [
            row("66.255.255.34", "xen02.example.net", false),
            row("2001:db8:66:22::1", "xen02.example.net", false)
        ]
    );
}

#[tokio::test]
async fn bad_names_and_addresses_of_others_change_nothing() {
    let fleet = Fleet::unlimited();
    let app = app_with(&fleet);
    let t = token_for(&fleet, "c-0001");
    let before = fleet.commit_count();
    let long = format!("{}.example.net", vec!["a".repeat(63); 4].join("."));
    for (vps, address, name, status, code) in [
        // Another customer's VPS, an unknown one, an address of another VPS or /64.
        ("xen01", "66.255.255.10", "a.example.net", 404, "not_found"),
        ("xen77", "66.255.255.34", "a.example.net", 404, "not_found"),
        ("xen02", "66.255.255.10", "a.example.net", 404, "not_found"),
        (
            "xen02",
            "2001:db8:66:23::1",
            "a.example.net",
            404,
            "not_found",
        ),
        // Not a host name, too long, not an address.
        ("xen02", "66.255.255.34", "mail_server", 422, "bad_ptr"),
        ("xen02", "66.255.255.34", "a b.example.net", 422, "bad_ptr"),
        ("xen02", "66.255.255.34", &long, 422, "bad_ptr"),
        ("xen02", "66.255.255.34/32", "a.example.net", 422, "bad_ptr"),
    ] {
        let (s, v) = put_ptr(&app, &t, vps, json!({"address": address, "name": name})).await;
        assert_eq!(
            (s, v["error"].as_str().unwrap()),
            (status, code),
            "{vps} {address} {name}: {v}"
        );
    }
    // Not the documented body.
    for body in [
        json!({"address": "66.255.255.34", "ptr": "a.example.net"}),
        json!({"name": "a.example.net"}),
    ] {
        let (s, v) = put_ptr(&app, &t, "xen02", body.clone()).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("invalid_json")),
            "{body}: {v}"
        );
    }
    let (_, v) = put_ptr(
        &app,
        &t,
        "xen02",
        json!({"address": "66.255.255.34", "name": long}),
    )
    .await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("1 to 253 characters"),
        "{v}"
    );
    assert_eq!(fleet.commit_count(), before, "nothing committed");

    // An API key needs the `dns` scope.
    let (s, k) = call(
        &app,
        "POST",
        "/api/keys",
        Some(&t),
        Some(&json!({"name": "ci", "scopes": ["read", "power"]}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let key = k["key"].as_str().unwrap().to_owned();
    let body = json!({"address": "66.255.255.34", "name": "mail.example.net"});
    let (s, v) = put_ptr(&app, &key, "xen02", body.clone()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{v}"
    );
    let (s, k) = call(
        &app,
        "POST",
        "/api/keys",
        Some(&t),
        Some(&json!({"name": "dns", "scopes": ["dns"]}).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let (s, v) = put_ptr(&app, k["key"].as_str().unwrap(), "xen02", body).await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test]
async fn forward_confirmation_requires_the_address_among_the_names_addresses() {
    let fleet = Fleet::with(|files| {
        replace_in(
            files,
            "gitvps.toml",
            "forward_confirm = false",
            "forward_confirm = true",
        );
        replace_in(
            files,
            "gitvps.toml",
            "per_minute = 6 ",
            "per_minute = 1000 ",
        );
    });
    let app = app_with(&fleet);
    let t = token_for(&fleet, "c-0001");
    let before = fleet.commit_count();
    for (address, name, message) in [
        (
            "66.255.255.34",
            "nowhere.example.net",
            "nowhere.example.net has no A record: add `nowhere.example.net. A 66.255.255.34` to its zone first, then set the reverse name again",
        ),
        (
            "66.255.255.34",
            "other.example.net",
            "other.example.net resolves to 192.0.2.7 but not to 66.255.255.34: add `other.example.net. A 66.255.255.34` to its zone first, then set the reverse name again",
        ),
        (
            "2001:db8:66:22::1",
            "mail.example.net",
            "mail.example.net resolves to 2001:db8:66:22::25 but not to 2001:db8:66:22::1: add `mail.example.net. AAAA 2001:db8:66:22::1` to its zone first, then set the reverse name again",
        ),
    ] {
        let (s, v) = put_ptr(&app, &t, "xen02", json!({"address": address, "name": name})).await;
        assert_eq!(
            (s, v["error"].as_str(), v["message"].as_str()),
            (422, Some("ptr_not_confirmed"), Some(message)),
        );
    }
    let (s, v) = put_ptr(
        &app,
        &t,
        "xen02",
        json!({"address": "66.255.255.34", "name": "slow.example.net"}),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("dns_unavailable")),
        "{v}"
    );
    // An address the customer does not own is not found before any lookup.
    let (s, _) = put_ptr(
        &app,
        &t,
        "xen01",
        json!({"address": "66.255.255.10", "name": "slow.example.net"}),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(fleet.commit_count(), before, "nothing committed");

    for address in ["66.255.255.34", "2001:db8:66:22::25"] {
        let (s, v) = put_ptr(
            &app,
            &t,
            "xen02",
            json!({"address": address, "name": "mail.example.net"}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    // Back to the host name needs no lookup.
    let (s, v) = put_ptr(
        &app,
        &t,
        "xen02",
        json!({"address": "66.255.255.34", "name": null}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(fleet.commit_count(), before + 3);
}

#[tokio::test]
async fn the_route_has_a_quota_that_lookups_count_against() {
    let fleet = Fleet::with(|files| {
        replace_in(
            files,
            "gitvps.toml",
            "forward_confirm = false",
            "forward_confirm = true",
        );
        replace_in(files, "gitvps.toml", "per_minute = 6 ", "per_minute = 3 ");
    });
    let app = app_with(&fleet);
    let t = token_for(&fleet, "c-0001");
    let body = json!({"address": "66.255.255.34", "name": "nowhere.example.net"});
    for _ in 0..3 {
        let (s, v) = put_ptr(&app, &t, "xen02", body.clone()).await;
        assert_eq!(s, 422, "{v}");
    }
    let (s, v) = put_ptr(&app, &t, "xen02", body).await;
    assert_eq!((s, v["error"].as_str()), (429, Some("rate_limited")), "{v}");
}
