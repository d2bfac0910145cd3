//! Handlers called in-process with `lambda_http` requests against a real bare git repo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{Value, json};

fn app(fleet: &Fleet) -> axum::Router {
    hooks::app(fleet.config()).unwrap()
}

#[tokio::test]
async fn login_checks_the_argon2_hash_and_the_token_opens_the_panel() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let (s, v) = login(&app, "c-0001", "demo-jane").await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(v["customer"], "c-0001");
    assert!(v["expires_at"].as_str().unwrap().ends_with('Z'));

    let (s, me) = call(&app, "GET", "/api/me", Some(&token), None).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["customer"]["id"], "c-0001");

    // Wrong password, unknown customer, by e-mail.
    for (body, want) in [
        (r#"{"customer":"c-0001","password":"demo-lin"}"#, 401),
        (r#"{"customer":"c-0999","password":"demo-jane"}"#, 401),
        (
            r#"{"customer":"jane@example.net","password":"demo-jane"}"#,
            200,
        ),
    ] {
        let (s, v) = call(&app, "POST", "/api/login", None, Some(body)).await;
        assert_eq!(s, want, "{body}: {v}");
        if want == 401 {
            assert_eq!(v["error"], "bad_credentials");
            assert!(
                !v.to_string().contains("demo-"),
                "the password is never echoed"
            );
        }
    }
}

#[tokio::test]
async fn me_shows_own_vpses_offers_and_status_from_the_status_branch() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0003");
    let (s, me) = call(&app, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(s, 200, "{me}");
    let ids: Vec<&str> = me["vps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["xen01", "xen04"], "only c-0003's VPSes");
    let xen04 = &me["vps"][1];
    assert_eq!(xen04["product"]["id"], "advanced");
    assert_eq!(xen04["expires"], "2026-12-15");
    assert_eq!(xen04["power"], "running");
    assert_eq!(xen04["status"], json!({"known": false}));
    let offers: Vec<(&str, &str)> = xen04["renewals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["product"].as_str().unwrap(), o["price"].as_str().unwrap()))
        .collect();
    assert!(offers.contains(&("advanced-3m", "149.00")), "{offers:?}");
    assert!(offers.contains(&("advanced", "59.00")), "{offers:?}");
    assert_eq!(me["currency"], "USD");

    // The reconciler writes status/<vps>.json on the status branch; /api/me reads it.
    let status = json!({
        "vps": "xen04", "node": "node0201", "power": "running", "domain_state": "-b----",
        "memory_mib": 768, "vcpus": 1, "actions": {"reboot": 0, "fsck": 0, "reinstall": 0},
        "last_error": null, "observed_at": "2026-05-01T12:00:00Z"
    })
    .to_string();
    fleet.admin_commit(
        "status",
        &[("status/xen04.json", status.as_bytes())],
        "apply: observed",
    );
    let (_, me) = call(&app, "GET", "/api/me", Some(&t), None).await;
    let st = &me["vps"][1]["status"];
    assert_eq!(st["known"], true, "{me}");
    assert_eq!(st["domain_state"], "-b----");
    assert_eq!(st["memory_mib"], 768);
    assert_eq!(st["observed_at"], "2026-05-01T12:00:00Z");
    assert_eq!(st["pending"]["reboot"], false);
    assert_eq!(me["vps"][0]["status"]["known"], false, "xen01 has no file");
}

#[tokio::test]
async fn a_reboot_is_one_commit_by_the_bot_that_keeps_comments() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let before = fleet.commit_count();
    let t = token_for(&fleet, "c-0001");
    let (s, v) = call(&app, "POST", "/api/vps/xen02/reboot", Some(&t), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["done"], "action");
    assert_eq!(v["action"], "reboot");
    assert_eq!(v["generation"], 1);
    assert_eq!(v["changed"], true);
    assert_eq!(fleet.commit_count(), before + 1);
    assert_eq!(fleet.messages()[0], "c-0001: reboot xen02 (site)");
    let repo = fleet.repo();
    let head = repo.find_commit(fleet.head()).unwrap();
    assert_eq!(head.author().name().ok(), Some("gitvps-bot"));
    assert_eq!(v["commit"], head.id().to_string());
    let file = fleet.file("inventory/vps/xen02.toml").unwrap();
    assert!(
        file.contains("[actions]                          # bump a counter to ask for the action once\nreboot = 1\n"),
        "{file}"
    );
    assert!(file.starts_with("# The VPS of the DTC-Xen screenshots"));
    // Only that file changed.
    assert_eq!(fleet.head_changes(), ["inventory/vps/xen02.toml"]);
}

#[tokio::test]
async fn stop_start_and_a_repeated_stop_that_changes_nothing() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0001");
    let (s, v) = call(&app, "POST", "/api/vps/xen02/stop", Some(&t), None).await;
    assert_eq!((s, &v["power"]), (200, &json!("stopped")), "{v}");
    let file = fleet.file("inventory/vps/xen02.toml").unwrap();
    assert!(
        file.contains("power = \"stopped\"                  # running | stopped"),
        "{file}"
    );
    let n = fleet.commit_count();
    let (s, v) = call(&app, "POST", "/api/vps/xen02/stop", Some(&t), None).await;
    assert_eq!((s, &v["changed"]), (200, &json!(false)), "{v}");
    assert_eq!(fleet.commit_count(), n, "no empty commit");
    let (s, _) = call(&app, "POST", "/api/vps/xen02/start", Some(&t), None).await;
    assert_eq!(s, 200);
    assert_eq!(fleet.messages()[0], "c-0001: start xen02 (site)");
}

#[tokio::test]
async fn other_customers_and_unknown_ids_get_404_and_nothing_is_committed() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let head = fleet.head();
    let t = token_for(&fleet, "c-0001");
    for path in [
        "/api/vps/xen01/reboot",       // c-0003's
        "/api/vps/xen03/stop",         // c-0002's
        "/api/vps/xen99/reboot",       // no such VPS
        "/api/vps/..%2Fetc/reboot",    // not an id
        "/api/vps/Xen02/reboot",       // not an id
        "/api/vps/xen02/selfdestruct", // no such action
    ] {
        let (s, v) = call(&app, "POST", path, Some(&t), None).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_eq!(v["error"], "not_found");
    }
    let (s, _) = call(
        &app,
        "PUT",
        "/api/vps/xen01/ssh-keys",
        Some(&t),
        Some(r#"{"keys":[]}"#),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(fleet.head(), head, "nothing committed");
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_401() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let good = token_for(&fleet, "c-0001");
    let expired = token_at(
        &fleet,
        "c-0001",
        chrono::Utc::now().timestamp() - 7200,
        3600,
    );
    let forged = good.replace("c-0001", "c-0003");
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('0') { '1' } else { '0' });
    for t in [
        None,
        Some(expired.as_str()),
        Some(forged.as_str()),
        Some(tampered.as_str()),
        Some("garbage"),
    ] {
        let (s, v) = call(&app, "POST", "/api/vps/xen02/reboot", t, None).await;
        assert_eq!(s, 401, "{t:?}: {v}");
        assert_eq!(v["error"], "unauthorized");
        let (s, _) = call(&app, "GET", "/api/me", t, None).await;
        assert_eq!(s, 401);
    }
    assert_eq!(fleet.commit_count(), 1);
}

#[tokio::test]
async fn reinstall_takes_an_os_and_appliance_of_the_catalog_only() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0001");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen02/reinstall",
        Some(&t),
        Some(r#"{"os":"debian-13","appliance":"openvpn"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["generation"], 1);
    let file = fleet.file("inventory/vps/xen02.toml").unwrap();
    assert!(
        file.contains("os = \"debian-13\"\nappliance = \"openvpn\"\n")
            || file.contains("appliance = \"openvpn\""),
        "{file}"
    );
    assert!(file.contains("reinstall = 1"));
    assert_eq!(
        fleet.messages()[0],
        "c-0001: reinstall xen02 with debian-13 and openvpn (site)"
    );
    let head = fleet.head();
    for body in [
        r#"{"os":"windows-11"}"#,
        r#"{"os":"../../etc/passwd"}"#,
        r#"{"os":"debian-12","appliance":"cpanel"}"#,
        r#"{"os":""}"#,
    ] {
        let (s, v) = call(
            &app,
            "POST",
            "/api/vps/xen02/reinstall",
            Some(&t),
            Some(body),
        )
        .await;
        assert_eq!(s, 422, "{body}: {v}");
        assert_eq!(v["error"], "not_in_catalog");
    }
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen02/reinstall",
        Some(&t),
        Some(r#"{"os":12}"#),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_json")));
    assert_eq!(fleet.head(), head);
}

#[tokio::test]
async fn a_restore_picks_a_published_backup_of_the_customers_own_vpses() {
    // Refusals count against the route's quota too: this test asks more than 6 a minute.
    let fleet = Fleet::with(|files| {
        set_hooks(files, "per_minute = 1000000\nper_day = 1000000");
        for (p, b) in files.iter_mut() {
            if p == "gitvps.toml" {
                b.extend_from_slice(b"\n[backup.local]\npath = \"/mnt/backup/restic\"\n");
            }
        }
    });
    let app = app(&fleet);
    let status = |vps: &str, node: &str, short: &str| {
        json!({
            "vps": vps, "node": node, "power": "running", "observed_at": "2026-05-01T12:00:00Z",
            "backups": [{"id": short.repeat(8), "short_id": short,
                         "time": "2026-04-30T03:00:12Z", "size_bytes": 10737418240u64}]
        })
        .to_string()
    };
    let (s04, s02) = (
        status("xen04", "node0201", "4f2a9c1e"),
        status("xen02", "node0109", "0badcafe"),
    );
    fleet.admin_commit(
        "status",
        &[
            ("status/xen04.json", s04.as_bytes()),
            ("status/xen02.json", s02.as_bytes()),
        ],
        "backup run: published",
    );
    let t = token_for(&fleet, "c-0003");
    let (_, me) = call(&app, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(
        me["vps"][1]["status"]["backups"],
        json!([{"short_id": "4f2a9c1e", "time": "2026-04-30T03:00:12Z", "size_bytes": 10737418240u64}]),
        "{me}"
    );
    // Refused, nothing committed: another customer's backup (as if its own, or by naming its
    // VPS), an id not in the list, a bad body.
    let head = fleet.head();
    for (path, body, code, error) in [
        (
            "/api/vps/xen04/restore",
            r#"{"snapshot":"0badcafe"}"#,
            422,
            "unknown_backup",
        ),
        (
            "/api/vps/xen04/restore",
            r#"{"snapshot":"0badcafe","from":"xen02"}"#,
            404,
            "not_found",
        ),
        (
            "/api/vps/xen02/restore",
            r#"{"snapshot":"0badcafe"}"#,
            404,
            "not_found",
        ),
        (
            "/api/vps/xen04/restore",
            r#"{"snapshot":"4f2a9c"}"#,
            422,
            "unknown_backup",
        ),
        (
            "/api/vps/xen04/restore",
            r#"{"snapshot":"4f2a9c1e","force":true}"#,
            400,
            "invalid_json",
        ),
        (
            "/api/vps/xen04/restore",
            r#"{"from":"xen04"}"#,
            400,
            "invalid_json",
        ),
    ] {
        let (s, v) = call(&app, "POST", path, Some(&t), Some(body)).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (code, Some(error)),
            "{path} {body}: {v}"
        );
    }
    assert_eq!(fleet.head(), head);
    // Its own backup, by the short id the panel shows: one commit with the full id.
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen04/restore",
        Some(&t),
        Some(r#"{"snapshot":"4f2a9c1e"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["action"].as_str(), v["generation"].as_u64()),
        (Some("restore"), Some(1))
    );
    let file = fleet.file("inventory/vps/xen04.toml").unwrap();
    assert!(
        file.contains(&format!(
            "[restore]\nsnapshot = \"{}\"\ngeneration = 1\n",
            "4f2a9c1e".repeat(8)
        )),
        "{file}"
    );
    assert_eq!(
        fleet.messages()[0],
        "c-0003: restore xen04 from backup 4f2a9c1e (site)"
    );
    // Into another VPS of the same customer.
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen01/restore",
        Some(&t),
        Some(r#"{"snapshot":"4f2a9c1e","from":"xen04"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(
        fleet
            .file("inventory/vps/xen01.toml")
            .unwrap()
            .contains("from = \"xen04\"")
    );
}

/// The VPS `id` in an answer of `GET /api/me`.
fn by_id(me: &Value, id: &str) -> Value {
    me["vps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == id)
        .cloned()
        .unwrap()
}

/// `DELETE path` undoes a setting of xen04: one commit with `message` after which its file no
/// longer holds `gone`; a second `DELETE` changes nothing. Returns the first answer.
async fn deleted_once(
    app: &axum::Router,
    fleet: &Fleet,
    t: &str,
    path: &str,
    gone: &str,
    message: &str,
) -> Value {
    let (s, v) = call(app, "DELETE", path, Some(t), None).await;
    assert_eq!((s, &v["changed"]), (200, &json!(true)), "{v}");
    let file = fleet.file("inventory/vps/xen04.toml").unwrap();
    assert!(!file.contains(gone), "{file}");
    assert_eq!(fleet.messages()[0], message);
    let (s, again) = call(app, "DELETE", path, Some(t), None).await;
    assert_eq!((s, &again["changed"]), (200, &json!(false)), "{again}");
    v
}

#[tokio::test]
async fn boot_media_is_attached_and_ejected_where_the_node_can_boot_isos() {
    let sha = "ab".repeat(32);
    let fleet = Fleet::with(|files| {
        set_hooks(files, "per_minute = 1000000\nper_day = 1000000");
        // Xen boots ISOs in HVM domains; a node without HVM (nested) cannot.
        replace_in(
            files,
            "inventory/nodes/node0109.toml",
            "hypervisor = \"xen\"",
            "hypervisor = \"xen\"\nhvm = false",
        );
        for (p, b) in files.iter_mut() {
            if p == "gitvps.toml" {
                b.extend_from_slice(
                    format!(
                        "\n[[iso]]\nid = \"debian-12-netinst\"\nname = \"Debian 12 netinst\"\n\
                         url = \"https://cdimage.example.net/debian-12.iso\"\n\
                         sha256 = \"{}\"\nsize = \"650 MiB\"\n",
                        "cd".repeat(32)
                    )
                    .as_bytes(),
                );
            }
        }
    });
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0003");
    let (_, me) = call(&app, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(
        me["isos"],
        json!([{"id": "debian-12-netinst", "name": "Debian 12 netinst", "size": "650 MiB"}]),
        "{me}"
    );
    assert_eq!(
        by_id(&me, "xen04")["iso_boot"],
        true,
        "a Xen node with HVM: {me}"
    );
    assert_eq!(
        by_id(&me, "xen01")["iso_boot"],
        false,
        "a node without HVM: {me}"
    );
    assert_eq!(by_id(&me, "xen04")["boot"], Value::Null);

    // Refused, nothing committed.
    let head = fleet.head();
    let url = |u: &str| format!(r#"{{"iso_url":"{u}","iso_sha256":"{sha}"}}"#);
    for (path, body, code, error) in [
        (
            "/api/vps/xen01/boot",
            r#"{"iso":"debian-12-netinst"}"#.to_owned(),
            409,
            "iso_unsupported",
        ),
        (
            "/api/vps/xen02/boot",
            r#"{"iso":"debian-12-netinst"}"#.to_owned(),
            404,
            "not_found",
        ),
        (
            "/api/vps/xen04/boot",
            r#"{"iso":"windows-11"}"#.to_owned(),
            422,
            "not_in_catalog",
        ),
        (
            "/api/vps/xen04/boot",
            r#"{"iso":"Bad Id"}"#.to_owned(),
            422,
            "bad_boot",
        ),
        (
            "/api/vps/xen04/boot",
            url("file:///etc/shadow"),
            422,
            "bad_boot",
        ),
        (
            "/api/vps/xen04/boot",
            url("https://e.net/a'$(reboot)'.iso"),
            422,
            "bad_boot",
        ),
        (
            "/api/vps/xen04/boot",
            r#"{"iso_url":"https://e.net/a.iso"}"#.to_owned(),
            422,
            "bad_boot",
        ),
        (
            "/api/vps/xen04/boot",
            r#"{"iso_url":"https://e.net/a.iso","iso_sha256":"00"}"#.to_owned(),
            422,
            "bad_boot",
        ),
        ("/api/vps/xen04/boot", r#"{}"#.to_owned(), 422, "bad_boot"),
        (
            "/api/vps/xen04/boot",
            r#"{"iso":"debian-12-netinst","order":"floppy"}"#.to_owned(),
            422,
            "bad_boot",
        ),
        (
            "/api/vps/xen04/boot",
            r#"{"iso":"debian-12-netinst","fast":true}"#.to_owned(),
            400,
            "invalid_json",
        ),
    ] {
        let (s, v) = call(&app, "PUT", path, Some(&t), Some(&body)).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (code, Some(error)),
            "{path} {body}: {v}"
        );
    }
    let (s, v) = call(&app, "DELETE", "/api/vps/xen02/boot", Some(&t), None).await;
    assert_eq!((s, v["error"].as_str()), (404, Some("not_found")), "{v}");
    assert_eq!(fleet.head(), head);

    // A library ISO, booted first: one commit; asked again, nothing to change.
    let put = |body: &'static str| call(&app, "PUT", "/api/vps/xen04/boot", Some(&t), Some(body));
    let (s, v) = put(r#"{"iso":"debian-12-netinst"}"#).await;
    assert_eq!(
        (s, &v["changed"], &v["done"]),
        (200, &json!(true), &json!("boot")),
        "{v}"
    );
    let file = fleet.file("inventory/vps/xen04.toml").unwrap();
    assert!(
        file.contains("[boot]\niso = \"debian-12-netinst\"\norder = \"cd\"\n"),
        "{file}"
    );
    assert_eq!(
        fleet.messages()[0],
        "c-0003: boot xen04 from ISO debian-12-netinst (site)"
    );
    let (s, v) = put(r#"{"iso":"debian-12-netinst","order":"cd"}"#).await;
    assert_eq!((s, &v["changed"]), (200, &json!(false)), "{v}");
    let (_, me) = call(&app, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(
        by_id(&me, "xen04")["boot"],
        json!({"iso": "debian-12-netinst", "order": "cd"})
    );

    // Boot from disk: the table goes; a second eject changes nothing.
    deleted_once(
        &app,
        &fleet,
        &t,
        "/api/vps/xen04/boot",
        "[boot]",
        "c-0003: eject the ISO of xen04, boot from disk (site)",
    )
    .await;

    // The customer's own ISO, mounted behind the disk: the sha256 is written lowercase.
    let body = format!(
        r#"{{"iso_url":"https://example.net/my.iso","iso_sha256":"{}","order":"disk"}}"#,
        sha.to_uppercase()
    );
    let (s, v) = call(&app, "PUT", "/api/vps/xen04/boot", Some(&t), Some(&body)).await;
    assert_eq!(s, 200, "{v}");
    let file = fleet.file("inventory/vps/xen04.toml").unwrap();
    assert!(
        file.contains(&format!(
            "[boot]\niso_url = \"https://example.net/my.iso\"\niso_sha256 = \"{sha}\"\norder = \"disk\"\n"
        )),
        "{file}"
    );
    assert_eq!(
        fleet.messages()[0],
        "c-0003: attach ISO https://example.net/my.iso to xen04 (disk boots first) (site)"
    );
}

/// The project's `bootstraps/` when it has one (every file, so the model's own checks of the
/// catalog pass), else OS folders for the fleet's OSes; without `rocky-9` either way.
fn bootstraps_without_rocky(files: &mut Vec<(String, Vec<u8>)>) {
    let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    fn walk(top: &std::path::Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(top.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = format!("{rel}/{}", e.file_name().into_string().unwrap());
            if e.file_type().unwrap().is_dir() {
                walk(top, &r, out);
            } else {
                out.push((r.clone(), std::fs::read(top.join(&r)).unwrap()));
            }
        }
    }
    if top.join("bootstraps").is_dir() {
        walk(&top, "bootstraps", files);
    } else {
        for f in [
            "os/debian-12/install_os",
            "os/debian-13/install_os",
            "appliances/openvpn/firstboot",
        ] {
            files.push((format!("bootstraps/{f}"), b"#!/bin/sh\n".to_vec()));
        }
    }
    files.retain(|(p, _)| !p.starts_with("bootstraps/os/rocky-9/"));
}

#[tokio::test]
async fn a_bootstraps_folder_replaces_the_builtin_catalog() {
    let fleet = Fleet::with(bootstraps_without_rocky);
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0001");
    assert!(hooks::catalog::BUILTIN_OS.contains(&"rocky-9"));
    let (s, _) = call(
        &app,
        "POST",
        "/api/vps/xen02/reinstall",
        Some(&t),
        Some(r#"{"os":"rocky-9"}"#),
    )
    .await;
    assert_eq!(s, 422, "rocky-9 is built in but has no folder");
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen02/reinstall",
        Some(&t),
        Some(r#"{"os":"debian-13"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnZACIYs/1sMOT4kyilhseeocsdXihGHPmj1hWLWg3q jane@new-laptop";

#[tokio::test]
async fn ssh_keys_are_checked_and_written_to_the_customer() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0001");
    let head = fleet.head();
    for keys in [
        json!({"keys": ["ssh-ed25519 AAAAnotbase64 x"]}),
        json!({"keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnZACIYs/1sMOT4kyilhseeocsdXihGHPmj1hWLWg3q a\nb"]}),
        json!({"keys": ["hello"]}),
        json!({"keys": [KEY.replace("jane@new-laptop", "$(reboot)")]}),
    ] {
        let (s, v) = call(
            &app,
            "PUT",
            "/api/vps/xen02/ssh-keys",
            Some(&t),
            Some(&keys.to_string()),
        )
        .await;
        assert_eq!(s, 422, "{keys}: {v}");
        assert_eq!(v["error"], "invalid_ssh_key");
    }
    assert_eq!(fleet.head(), head);
    let body = json!({"keys": [KEY, KEY]}).to_string();
    let (s, v) = call(
        &app,
        "PUT",
        "/api/vps/xen02/ssh-keys",
        Some(&t),
        Some(&body),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["keys"], 1, "duplicates dropped");
    let file = fleet.file("inventory/customers/c-0001.toml").unwrap();
    assert!(file.contains("jane@new-laptop"), "{file}");
    assert!(!file.contains("jane@laptop"));
    assert!(file.starts_with("# Demo customer"), "comments stay");
    assert_eq!(fleet.messages()[0], "c-0001: set 1 SSH key (xen02) (site)");
    // The token stays valid: keys do not change the password fingerprint.
    let (s, _) = call(&app, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(s, 200);
}

fn suspend_xen04(files: &mut [(String, Vec<u8>)]) {
    for (p, b) in files.iter_mut() {
        if p == "inventory/vps/xen04.toml" {
            *b = String::from_utf8(b.clone())
                .unwrap()
                .replace("state = \"active\"", "state = \"suspended\"")
                .into_bytes();
        }
    }
}

#[tokio::test]
async fn a_suspended_vps_can_only_be_renewed() {
    let fleet = Fleet::with(|f| suspend_xen04(f));
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0003");
    for action in ["start", "stop", "reboot", "fsck"] {
        let (s, v) = call(
            &app,
            "POST",
            &format!("/api/vps/xen04/{action}"),
            Some(&t),
            None,
        )
        .await;
        assert_eq!(s, 409, "{action}: {v}");
        assert_eq!(v["error"], "suspended");
    }
    let (s, _) = call(
        &app,
        "POST",
        "/api/vps/xen04/reinstall",
        Some(&t),
        Some(r#"{"os":"debian-12"}"#),
    )
    .await;
    assert_eq!(s, 409);
    // A restore is refused before its backup is even looked up.
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen04/restore",
        Some(&t),
        Some(r#"{"snapshot":"4f2a9c1e"}"#),
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (409, Some("suspended")));
    // Renewal: not refused for suspension (payments are not configured here: 503).
    let (s, v) = call(
        &app,
        "POST",
        "/api/vps/xen04/renew",
        Some(&t),
        Some(r#"{"product":"advanced-3m"}"#),
    )
    .await;
    assert_eq!(
        (s, v["error"].as_str()),
        (503, Some("payments_not_configured"))
    );
    assert_eq!(fleet.commit_count(), 1);
}

#[tokio::test]
async fn bad_bodies_get_json_errors_and_nothing_is_committed() {
    let fleet = Fleet::new();
    let mut cfg = fleet.config();
    cfg.body_limit = 1024;
    let app = hooks::app(cfg).unwrap();
    let t = token_for(&fleet, "c-0001");
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        (
            "POST",
            "/api/login",
            "{\"customer\":".into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/login",
            r#"{"customer":1,"password":"x"}"#.into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/login",
            r#"{"customer":"c-0001"}"#.into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/login",
            r#"{"customer":"c-0001","password":"x","admin":true}"#.into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/login",
            format!(
                r#"{{"customer":"c-0001","password":"{}"}}"#,
                "x".repeat(2000)
            ),
            413,
            "payload_too_large",
        ),
        (
            "PUT",
            "/api/vps/xen02/ssh-keys",
            r#"{"keys":"ssh-ed25519 AAAA"}"#.into(),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/tickets",
            r#"{"subject":"","message":"hi"}"#.into(),
            422,
            "bad_ticket",
        ),
        ("GET", "/api/nothing", String::new(), 404, "not_found"),
        (
            "DELETE",
            "/api/me",
            String::new(),
            405,
            "method_not_allowed",
        ),
    ];
    for (m, p, body, want, code) in cases {
        let (s, v) = call(
            &app,
            m,
            p,
            Some(&t),
            if body.is_empty() { None } else { Some(&body) },
        )
        .await;
        assert_eq!(s, want, "{m} {p} {body:.60}: {v}");
        assert_eq!(v["error"], code, "{m} {p}: {v}");
        assert!(v["message"].is_string());
    }
    // A wrong type never echoes the value (it might be a password).
    let (_, v) = call(
        &app,
        "POST",
        "/api/login",
        None,
        Some(r#"{"customer":"c-0001","password":["hunter2"]}"#),
    )
    .await;
    assert!(!v.to_string().contains("hunter2"), "{v}");
    assert_eq!(fleet.commit_count(), 1);
}

#[tokio::test]
async fn tickets_are_files_with_a_thread_and_only_their_owner_sees_them() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let jane = token_for(&fleet, "c-0001");
    let lin = token_for(&fleet, "c-0002");
    let (s, v) = call(
        &app,
        "POST",
        "/api/tickets",
        Some(&jane),
        Some(r#"{"subject":"Port 25","message":"Please open port 25.\n# thanks","vps":"xen02"}"#),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["ticket"], "t-0001");
    assert_eq!(fleet.messages()[0], "c-0001: open ticket t-0001 (site)");
    let text = fleet.file("tickets/t-0001.md").unwrap();
    assert!(text.contains("customer = \"c-0001\""), "{text}");
    // An admin answers by commit.
    let answered = format!("{text}\n### admin · 2026-05-02T09:00:00Z\n\nDone.\n");
    fleet.admin_commit(
        "main",
        &[("tickets/t-0001.md", answered.as_bytes())],
        "Answer t-0001",
    );
    let (s, v) = call(&app, "GET", "/api/tickets", Some(&jane), None).await;
    assert_eq!(s, 200, "{v}");
    let t = &v["tickets"][0];
    assert_eq!(t["id"], "t-0001");
    assert_eq!(t["vps"], "xen02");
    assert_eq!(t["messages"][0]["body"], "Please open port 25.\n\\# thanks");
    assert_eq!(t["messages"][1]["author"], "admin");
    assert_eq!(t["messages"][1]["body"], "Done.");
    assert!(t.get("customer").is_none());
    // Lin sees none of it and cannot reply to it, nor open one about Jane's VPS.
    let (_, v) = call(&app, "GET", "/api/tickets", Some(&lin), None).await;
    assert_eq!(v["tickets"], json!([]));
    let head = fleet.head();
    let (s, _) = call(
        &app,
        "POST",
        "/api/tickets/t-0001",
        Some(&lin),
        Some(r#"{"message":"me too"}"#),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &app,
        "POST",
        "/api/tickets",
        Some(&lin),
        Some(r#"{"subject":"x","message":"y","vps":"xen02"}"#),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(fleet.head(), head);
    let (s, v) = call(
        &app,
        "POST",
        "/api/tickets/t-0001",
        Some(&jane),
        Some(r#"{"message":"Thanks!"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (_, v) = call(&app, "GET", "/api/tickets", Some(&jane), None).await;
    assert_eq!(v["tickets"][0]["messages"].as_array().unwrap().len(), 3);
}

fn renew_meta(vps: &str, customer: &str, product: &str) -> Value {
    json!({"kind": "renew", "customer": customer, "vps": vps, "product": product})
}

#[tokio::test]
async fn a_signed_renewal_event_moves_expiry_once_and_records_the_payment() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let now = chrono::Utc::now().timestamp();
    let paid = chrono::DateTime::from_timestamp(now, 0)
        .unwrap()
        .date_naive();
    // xen02 expired in 2011: the period counts from the payment date. Jane lives in DE: the
    // 149.00 renewal costs 177.31 with its 19 % tax.
    let ev = checkout_event(
        "evt_test_renew1",
        "cs_test_r1",
        now,
        17731,
        renew_meta("xen02", "c-0001", "advanced-3m"),
    );
    let (s, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"], "renewed");
    let want = model::add_months(paid, 3).to_string();
    let file = fleet.file("inventory/vps/xen02.toml").unwrap();
    assert!(file.contains(&format!("expires = {want}\n")), "{file}");
    let record = fleet.file("billing/payments/evt_test_renew1.toml").unwrap();
    for f in [
        "amount = \"177.31\"",
        "currency = \"USD\"",
        "product = \"advanced-3m\"",
        "vps = \"xen02\"",
        "customer = \"c-0001\"",
        "checkout_session = \"cs_test_r1\"",
        "payment_intent = \"pi_test_1\"",
        "stripe_customer = \"cus_test_1\"",
        "expires_before = \"2011-06-09\"",
    ] {
        assert!(record.contains(f), "{f}\n{record}");
    }
    assert_eq!(
        fleet.messages()[0],
        format!(
            "stripe: renew xen02 for c-0001 until {want}, pay INV-{}-000001 (evt_test_renew1)",
            paid.format("%Y")
        )
    );
    // The same event again (Stripe retries): nothing changes.
    let head = fleet.head();
    let (s, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("duplicate")), "{v}");
    assert_eq!(fleet.head(), head);
    // The same session under another event id: still once.
    let ev2 = checkout_event(
        "evt_test_renew2",
        "cs_test_r1",
        now,
        17731,
        renew_meta("xen02", "c-0001", "advanced-3m"),
    );
    let (_, v) = webhook(
        &app,
        &ev2,
        Some(&stripe_signature(&ev2, OLD_WEBHOOK_SECRET, now)),
    )
    .await;
    assert_eq!(v["result"], "duplicate", "{v}");
    assert_eq!(fleet.head(), head);
    // A second, new payment extends from the new expiry.
    let ev3 = checkout_event(
        "evt_test_renew3",
        "cs_test_r3",
        now,
        7021,
        renew_meta("xen02", "c-0001", "advanced-1m"),
    );
    let (_, v) = webhook(
        &app,
        &ev3,
        Some(&stripe_signature(&ev3, WEBHOOK_SECRET, now)),
    )
    .await;
    assert_eq!(v["result"], "renewed", "{v}");
    let want2 = model::add_months(model::add_months(paid, 3), 1).to_string();
    assert!(
        fleet
            .file("inventory/vps/xen02.toml")
            .unwrap()
            .contains(&format!("expires = {want2}\n"))
    );
}

#[tokio::test]
async fn a_renewal_before_expiry_adds_to_the_expiry_and_lifts_a_suspension() {
    let fleet = Fleet::with(|f| suspend_xen04(f));
    let app = app(&fleet);
    let now = chrono::Utc::now().timestamp();
    let ev = checkout_event(
        "evt_test_unsusp",
        "cs_test_u",
        now,
        5900,
        renew_meta("xen04", "c-0003", "advanced-1m"),
    );
    let (s, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!(s, 200, "{v}");
    let file = fleet.file("inventory/vps/xen04.toml").unwrap();
    let today = chrono::Utc::now().date_naive();
    let old: chrono::NaiveDate = "2026-12-15".parse().unwrap();
    let want = model::add_months(old.max(today), 1);
    assert!(file.contains(&format!("expires = {want}")), "{file}");
    assert!(file.contains("state = \"active\""), "{file}");
    assert!(fleet.messages()[0].contains(", lift suspension"));
    let t = token_for(&fleet, "c-0003");
    let (s, _) = call(&app, "POST", "/api/vps/xen04/reboot", Some(&t), None).await;
    assert_eq!(s, 200, "active again");
}

#[tokio::test]
async fn bad_signatures_stale_timestamps_and_unknown_events() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let now = chrono::Utc::now().timestamp();
    let ev = checkout_event(
        "evt_test_bad",
        "cs_test_b",
        now,
        14900,
        renew_meta("xen02", "c-0001", "advanced-3m"),
    );
    let cases = [
        (None, 400, "bad_signature"),
        (
            Some(stripe_signature(&ev, "whsec_wrong", now)),
            400,
            "bad_signature",
        ),
        (
            Some(stripe_signature(&ev, WEBHOOK_SECRET, now - 301)),
            400,
            "stale_timestamp",
        ),
        (
            Some(stripe_signature(&ev, WEBHOOK_SECRET, now + 600)),
            400,
            "stale_timestamp",
        ),
        (Some("t=abc,v1=00".to_owned()), 400, "bad_signature"),
    ];
    for (sig, want, code) in cases {
        let (s, v) = webhook(&app, &ev, sig.as_deref()).await;
        assert_eq!((s, v["error"].as_str()), (want, Some(code)), "{sig:?}: {v}");
        assert!(!v.to_string().contains("whsec"));
    }
    // Tampered payload with a signature of the original.
    let sig = stripe_signature(&ev, WEBHOOK_SECRET, now);
    let tampered = ev.replace("14900", "1");
    let (s, _) = webhook(&app, &tampered, Some(&sig)).await;
    assert_eq!(s, 400);
    assert_eq!(fleet.commit_count(), 1, "nothing committed");
    // async-stripe's own test signer agrees with ours.
    let sig = stripe_webhook::Webhook::generate_test_header(&ev, WEBHOOK_SECRET, Some(now));
    assert_eq!(sig, stripe_signature(&ev, WEBHOOK_SECRET, now));
    // Unknown types are acknowledged and ignored.
    let other = json!({"id": "evt_test_other", "object": "event", "type": "customer.created", "created": now, "data": {"object": {"id": "cus_1"}}}).to_string();
    let (s, v) = webhook(
        &app,
        &other,
        Some(&stripe_signature(&other, WEBHOOK_SECRET, now)),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["received"], true);
    assert_eq!(fleet.commit_count(), 1);
}

#[tokio::test]
async fn an_order_payment_creates_the_customer_and_a_placed_vps() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let now = chrono::Utc::now().timestamp();
    let hash = "$argon2id$v=19$m=65536,t=3,p=4$CY1c4y8idBETOrGhO+B+yQ$skytuz0RbxGICNrAMQPGeejbgD53xpdGd9EogQ7ADZo";
    let meta = json!({
        "kind": "order", "product": "advanced", "location": "Tampa, Florida (USA)", "os": "debian-13",
        "new_customer_name": "Ann O'Neil", "new_customer_email": "ann@example.org",
        "new_customer_language": "en", "new_customer_password_hash": hash,
    });
    let ev = checkout_event("evt_test_order1", "cs_test_o1", now, 5900, meta);
    let (s, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"], "ordered");
    let vps = v["vps"].as_str().unwrap().to_owned();
    let inv = inventory_at_head(&fleet);
    let id: model::VpsId = vps.parse().unwrap();
    let placed = &inv.vps[&id];
    assert_eq!(placed.customer.as_str(), "c-0004");
    assert_eq!(placed.os.as_str(), "debian-13");
    assert_eq!(inv.nodes[&placed.node].location, "Tampa, Florida (USA)");
    assert_eq!(
        inv.customers[&placed.customer]
            .email
            .as_ref()
            .map(|e| e.as_str()),
        Some("ann@example.org")
    );
    let record = fleet.file("billing/payments/evt_test_order1.toml").unwrap();
    assert!(record.contains(&format!("vps = \"{vps}\"")), "{record}");
    assert!(record.contains("customer = \"c-0004\""));
    assert!(
        fleet.messages()[0].starts_with(&format!("stripe: order {vps} for c-0004 (advanced on "))
    );
    // The new customer can log in with the password chosen at checkout.
    let (s, v) = call(
        &app,
        "POST",
        "/api/login",
        None,
        Some(r#"{"customer":"c-0004","password":"demo-new"}"#),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Replayed: once.
    let head = fleet.head();
    let (_, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!(v["result"], "duplicate");
    assert_eq!(fleet.head(), head);
}

#[tokio::test]
async fn an_order_that_cannot_be_placed_is_recorded_not_lost() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let now = chrono::Utc::now().timestamp();
    let meta = json!({"kind": "order", "customer": "c-0002", "product": "advanced", "location": "Atlantis", "os": "debian-12"});
    let ev = checkout_event("evt_test_order2", "cs_test_o2", now, 5900, meta);
    let (s, v) = webhook(&app, &ev, Some(&stripe_signature(&ev, WEBHOOK_SECRET, now))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["result"], "not_applied");
    let record = fleet.file("billing/payments/evt_test_order2.toml").unwrap();
    assert!(record.contains("applied = false"), "{record}");
    assert!(record.contains("unknown location"), "{record}");
    assert_eq!(inventory_at_head(&fleet).vps.len(), 4, "no VPS created");
}

/// An API Gateway HTTP API (payload 2.0) event, as Lambda hands it to `lambda_http`.
fn apigw_event(method: &str, path: &str, token: &str, body: &str) -> String {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "authorization": format!("Bearer {token}"),
            "content-type": "application/json",
            "host": "abc.execute-api.eu-west-1.amazonaws.com",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc",
            "domainName": "abc.execute-api.eu-west-1.amazonaws.com", "domainPrefix": "abc",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.10", "userAgent": "test"},
            "requestId": "id", "routeKey": "$default", "stage": "$default",
            "time": "01/May/2026:12:00:00 +0000", "timeEpoch": 1777636800000u64
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

#[tokio::test]
async fn a_lambda_api_gateway_event_reaches_the_same_handlers() {
    let fleet = Fleet::new();
    let app = app(&fleet);
    let t = token_for(&fleet, "c-0001");
    let req = lambda_http::request::from_str(&apigw_event("POST", "/api/vps/xen02/fsck", &t, ""))
        .unwrap();
    let (s, v) = send(&app, req).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["action"], "fsck");
    assert_eq!(fleet.messages()[0], "c-0001: fsck xen02 (site)");
    let body = r#"{"subject":"Hello","message":"From Lambda"}"#;
    let req =
        lambda_http::request::from_str(&apigw_event("POST", "/api/tickets", &t, body)).unwrap();
    let (s, v) = send(&app, req).await;
    assert_eq!(s, 201, "{v}");
}

/// Snapshots from the panel (issue 19 item 3): each request one commit of the VPS file; the
/// plan's limit, a name taken or invalid, storage without snapshots, another customer's VPS and
/// a suspended one are refused with nothing committed.
#[tokio::test]
async fn snapshots_are_taken_reverted_and_deleted_within_the_limit() {
    let fleet = Fleet::with(|files| {
        set_hooks(files, "per_minute = 1000000\nper_day = 1000000");
        for (p, b) in files.iter_mut() {
            if p == "products.toml" {
                *b = String::from_utf8(b.clone())
                    .unwrap()
                    .replacen(
                        "disk = \"15000 MiB\"",
                        "disk = \"15000 MiB\"\nsnapshot_limit = 1",
                        1,
                    )
                    .into_bytes();
            }
        }
    });
    let router = app(&fleet);
    let t = token_for(&fleet, "c-0003");
    let post = |path: &'static str, body: &'static str| {
        let (router, t) = (&router, &t);
        async move { call(router, "POST", path, Some(t), Some(body)).await }
    };
    let (s, v) = post("/api/vps/xen01/snapshot", r#"{"name":"before"}"#).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["done"].as_str(), v["declared"].as_bool()),
        (Some("snapshot"), Some(true))
    );
    let file = fleet.file("inventory/vps/xen01.toml").unwrap();
    assert!(
        file.contains("[[snapshot]]\nname = \"before\"\ncreated = "),
        "{file}"
    );
    assert_eq!(
        fleet.messages()[0],
        "c-0003: take snapshot before of xen01 (site)"
    );
    // The panel's list: declared, not taken yet (no apply has observed it).
    let (_, me) = call(&router, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(me["vps"][0]["id"], "xen01");
    let view = &me["vps"][0]["snapshots"];
    assert_eq!(
        (
            &view["limit"],
            &view["list"][0]["name"],
            &view["list"][0]["taken"]
        ),
        (&json!(1), &json!("before"), &json!(false)),
        "{view}"
    );
    assert_eq!(me["vps"][1]["snapshots"]["limit"], 0, "image-file storage");
    let head = fleet.head();
    for (path, body, code, error) in [
        (
            "/api/vps/xen01/snapshot",
            r#"{"name":"second"}"#,
            422,
            "snapshot_limit",
        ),
        (
            "/api/vps/xen01/snapshot",
            r#"{"name":"before"}"#,
            409,
            "snapshot_exists",
        ),
        (
            "/api/vps/xen01/snapshot",
            r#"{"name":"Bad Name"}"#,
            422,
            "bad_snapshot_name",
        ),
        (
            "/api/vps/xen01/snapshot",
            r#"{"name":"x","at":1}"#,
            400,
            "invalid_json",
        ),
        // Image-file storage, a plan without snapshots.
        (
            "/api/vps/xen04/snapshot",
            r#"{"name":"one"}"#,
            422,
            "snapshots_unavailable",
        ),
        // Another customer's VPS, an unknown one.
        (
            "/api/vps/xen02/snapshot",
            r#"{"name":"one"}"#,
            404,
            "not_found",
        ),
        (
            "/api/vps/xen77/revert",
            r#"{"name":"before"}"#,
            404,
            "not_found",
        ),
        (
            "/api/vps/xen01/revert",
            r#"{"name":"nope"}"#,
            422,
            "unknown_snapshot",
        ),
        (
            "/api/vps/xen01/delete-snapshot",
            r#"{"name":"nope"}"#,
            422,
            "unknown_snapshot",
        ),
    ] {
        let (s, v) = post(path, body).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (code, Some(error)),
            "{path} {body}: {v}"
        );
    }
    assert_eq!(fleet.head(), head, "nothing committed");
    let (s, v) = post("/api/vps/xen01/revert", r#"{"name":"before"}"#).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["action"].as_str(), v["generation"].as_u64()),
        (Some("revert"), Some(1))
    );
    let file = fleet.file("inventory/vps/xen01.toml").unwrap();
    assert!(
        file.contains("[revert]\nsnapshot = \"before\"\ngeneration = 1\n"),
        "{file}"
    );
    let (s, v) = post("/api/vps/xen01/delete-snapshot", r#"{"name":"before"}"#).await;
    assert_eq!(s, 200, "{v}");
    let file = fleet.file("inventory/vps/xen01.toml").unwrap();
    assert!(
        !file.contains("snapshot") && !file.contains("[revert]"),
        "{file}"
    );
    assert_eq!(
        fleet.messages()[0],
        "c-0003: delete snapshot before of xen01 (site)"
    );

    // A suspended VPS: refused before anything else is looked at.
    let suspended = Fleet::with(|f| suspend_xen04(f));
    let router = app(&suspended);
    let t = token_for(&suspended, "c-0003");
    for action in ["snapshot", "revert", "delete-snapshot"] {
        let (s, v) = call(
            &router,
            "POST",
            &format!("/api/vps/xen04/{action}"),
            Some(&t),
            Some(r#"{"name":"before"}"#),
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (409, Some("suspended")),
            "{action}: {v}"
        );
    }
}

#[tokio::test]
async fn rescue_mode_is_entered_and_left_where_the_node_has_a_rescue_system() {
    let kvm = |files: &mut Vec<(String, Vec<u8>)>| {
        set_hooks(files, "per_minute = 1000000\nper_day = 1000000");
        replace_in(
            files,
            "inventory/nodes/node0201.toml",
            "hypervisor = \"xen\"",
            "hypervisor = \"kvm\"",
        );
        // A Xen node that runs HVM guests only: no PVH or PV domain for the rescue system.
        replace_in(
            files,
            "inventory/nodes/node0109.toml",
            "hypervisor = \"xen\"",
            "hypervisor = \"xen\"\nxen = { guest_type = \"hvm\", virt_caps = [\"hvm\"] }",
        );
    };
    let fleet = Fleet::with(kvm);
    let routes = app(&fleet);
    let t = token_for(&fleet, "c-0003");
    let (_, me) = call(&routes, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(by_id(&me, "xen04")["rescue_boot"], true, "a KVM node: {me}");
    assert_eq!(
        by_id(&me, "xen01")["rescue_boot"],
        false,
        "a Xen node: {me}"
    );
    assert_eq!(by_id(&me, "xen04")["rescue"], false);

    // Refused, nothing committed: a node without a rescue system, another customer's VPS.
    let head = fleet.head();
    for (method, path, code, error) in [
        ("POST", "/api/vps/xen01/rescue", 409, "rescue_unsupported"),
        ("POST", "/api/vps/xen02/rescue", 404, "not_found"),
        ("DELETE", "/api/vps/xen02/rescue", 404, "not_found"),
    ] {
        let (s, v) = call(&routes, method, path, Some(&t), None).await;
        assert_eq!((s, v["error"].as_str()), (code, Some(error)), "{path}: {v}");
    }
    assert_eq!(fleet.head(), head);

    // Enter: one commit; again, nothing to change.
    let (s, v) = call(&routes, "POST", "/api/vps/xen04/rescue", Some(&t), None).await;
    assert_eq!(
        (s, &v["changed"], &v["done"], &v["rescue"]),
        (200, &json!(true), &json!("rescue"), &json!(true)),
        "{v}"
    );
    let file = fleet.file("inventory/vps/xen04.toml").unwrap();
    assert!(file.contains("\nrescue = true\n"), "{file}");
    assert_eq!(
        fleet.messages()[0],
        "c-0003: boot xen04 into the rescue system (site)"
    );
    let (s, v) = call(&routes, "POST", "/api/vps/xen04/rescue", Some(&t), None).await;
    assert_eq!((s, &v["changed"]), (200, &json!(false)), "{v}");
    let (_, me) = call(&routes, "GET", "/api/me", Some(&t), None).await;
    assert_eq!(by_id(&me, "xen04")["rescue"], true);

    // Leave: the key goes; a second leave changes nothing.
    let v = deleted_once(
        &routes,
        &fleet,
        &t,
        "/api/vps/xen04/rescue",
        "rescue",
        "c-0003: leave the rescue system of xen04, boot its own system (site)",
    )
    .await;
    assert_eq!(v["rescue"], false, "{v}");

    // A suspended VPS: 409, nothing committed.
    let fleet = Fleet::with(|files| {
        kvm(files);
        replace_in(
            files,
            "inventory/vps/xen04.toml",
            "state = \"active\"",
            "state = \"suspended\"",
        );
    });
    let suspended = app(&fleet);
    let t = token_for(&fleet, "c-0003");
    let head = fleet.head();
    let (s, v) = call(&suspended, "POST", "/api/vps/xen04/rescue", Some(&t), None).await;
    assert_eq!((s, v["error"].as_str()), (409, Some("suspended")), "{v}");
    assert_eq!(fleet.head(), head);
}
