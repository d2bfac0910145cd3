#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `gitvps dns apply` end to end: the example fleet's zones pushed over a real sshd into a real
//! Knot DNS on loopback, answered by `dig`; a second apply reloads nothing; a zone that
//! named-checkzone rejects is never published. And the customer's way: the hooks' PTR route,
//! forward-confirmed against that Knot, commits; the next apply publishes it.

use std::path::Path;
use std::process::Command;

use gitvps_tests::fleet::Run;
use gitvps_tests::knot::{Knot, dig_at};
use gitvps_tests::{Sshd, bin, fleet_repo};

fn gitvps(repo: &Path, sshd: &Sshd, args: &[&str]) -> Run {
    Command::new(bin())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("GITVPS_SSH_KEY", &sshd.client_key)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap()
        .into()
}

fn edit(repo: &Path, file: &str, from: &str, to: &str) {
    let p = repo.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{file} has no `{from}`");
    std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
}

fn append(repo: &Path, file: &str, more: &str) {
    let p = repo.join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    std::fs::write(&p, text + more).unwrap();
}

/// The upstream's part of RFC 2317 (what the owner of 66.255.255.0/24 serves): each address of
/// the /25 is a CNAME into the delegated zone `0-25.255.255.66.in-addr.arpa`.
fn upstream(dir: &Path) -> String {
    let file = dir.join("255.255.66.in-addr.arpa.zone");
    let cnames: String = (0..128)
        .map(|i| format!("{i} IN CNAME {i}.0-25.255.255.66.in-addr.arpa.\n"))
        .collect();
    std::fs::write(
        &file,
        format!("$ORIGIN 255.255.66.in-addr.arpa.\n$TTL 60\n@ IN SOA ns.upstream.example. h.upstream.example. 1 60 60 60 60\n@ IN NS ns.upstream.example.\n0-25 IN NS ns1.example.net.\n{cnames}"),
    )
    .unwrap();
    format!(
        "zone:\n  - domain: 255.255.66.in-addr.arpa\n    file: {}\n",
        file.display()
    )
}

/// A real sshd and Knot, and the example fleet in `tmp` with Tampa's /25 as one RFC 2317 zone
/// and that Knot as its `[[dns.server]]`.
fn fleet_with_knot(tmp: &Path) -> (Sshd, Knot, std::path::PathBuf) {
    let sshd = Sshd::start();
    let knot = Knot::start(&upstream(tmp));
    let repo = fleet_repo(tmp, &["inventory"]);
    edit(
        &repo,
        "pools.toml",
        "rdns_zone = \"per-ip\"",
        "rdns_zone = \"per-pool\"",
    );
    append(
        &repo,
        "gitvps.toml",
        &format!(
            "\n[[dns.server]]\naddress = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nhost_key = \"{}\"\ndir = \"{}\"\ncontrol = \"{}\"\n",
            sshd.port,
            sshd.user,
            sshd.host_key,
            knot.zones.display(),
            knot.socket.display()
        ),
    );
    (sshd, knot, repo)
}

#[test]
fn ptr_records_reach_a_real_knot_over_ssh_and_only_changes_reload() {
    let tmp = tempfile::tempdir().unwrap();
    let (sshd, knot, repo) = fleet_with_knot(tmp.path());
    // xen02's customer names its IPv4 address and an address of its /64.
    append(
        &repo,
        "inventory/vps/xen02.toml",
        "\n[ptr]\n\"66.255.255.34\" = \"mail.example.net\"\n\"2001:db8:66:22::25\" = \"mx.example.net\"\n",
    );

    // The plan: every zone is new, nothing is written.
    let dry = gitvps(&repo, &sshd, &["dns", "apply", "--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(
        dry.stdout
            .contains("  + 0-25.255.255.66.in-addr.arpa: new zone, serial "),
        "{dry:?}"
    );
    assert!(
        dry.stdout.contains("  ~ gitvps-zones.conf: the zone list"),
        "{dry:?}"
    );
    assert!(
        !knot
            .zones
            .join("0-25.255.255.66.in-addr.arpa.zone")
            .exists()
    );

    let first = gitvps(&repo, &sshd, &["dns", "apply"]);
    assert_eq!(first.code, 0, "{first:?}\n{}", knot.log());

    // IPv4 in the /25: `dig -x` meets the upstream's CNAME, and the delegated name it points
    // at is what a resolver asks next, of our server.
    assert_eq!(
        knot.dig(&["-x", "66.255.255.34"]),
        ["34.0-25.255.255.66.in-addr.arpa."],
        "{}",
        knot.log()
    );
    assert_eq!(
        knot.dig(&["34.0-25.255.255.66.in-addr.arpa", "PTR"]),
        ["mail.example.net."]
    );
    // The other Tampa VPS keeps its host name.
    assert_eq!(
        knot.dig(&["10.0-25.255.255.66.in-addr.arpa", "PTR"]),
        ["test.acme-hosting.example.com."]
    );
    // IPv6: the customer's address and the /64's host address.
    assert_eq!(knot.dig(&["-x", "2001:db8:66:22::25"]), ["mx.example.net."]);
    assert_eq!(
        knot.dig(&["-x", "2001:db8:66:22::1"]),
        ["xen02.example.net."]
    );
    // Forward: xen02.vps.example.net.
    assert_eq!(knot.dig(&["xen02.vps.example.net", "A"]), ["66.255.255.34"]);
    assert_eq!(
        knot.dig(&["xen02.vps.example.net", "AAAA"]),
        ["2001:db8:66:22::1"]
    );

    // Nothing changed: nothing is written or reloaded.
    let loads = knot.loads();
    let log = knot.log().len();
    let again = gitvps(&repo, &sshd, &["dns", "apply"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(again.stdout.ends_with("): no changes\n"), "{again:?}");
    assert_eq!(knot.loads(), loads);
    assert!(
        !knot.log()[log..].contains("control, received command"),
        "{}",
        &knot.log()[log..]
    );

    // One name changes: one zone is written and reloaded, with a larger serial.
    let serial = |name: &str| -> u32 {
        knot.dig(&[name, "SOA"])[0]
            .split(' ')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = serial("0-25.255.255.66.in-addr.arpa");
    let v6_before = serial("6.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
    edit(
        &repo,
        "inventory/vps/xen02.toml",
        "= \"mail.example.net\"",
        "= \"smtp.example.net\"",
    );
    let log = knot.log().len();
    let changed = gitvps(&repo, &sshd, &["dns", "apply"]);
    assert_eq!(changed.code, 0, "{changed:?}");
    assert!(
        changed
            .stdout
            .contains("  ~ 0-25.255.255.66.in-addr.arpa: serial ")
            && changed.stdout.contains(
                "      - 34 IN PTR mail.example.net.\n      + 34 IN PTR smtp.example.net.\n"
            ),
        "{changed:?}"
    );
    assert_eq!(
        knot.dig(&["34.0-25.255.255.66.in-addr.arpa", "PTR"]),
        ["smtp.example.net."]
    );
    assert!(serial("0-25.255.255.66.in-addr.arpa") > before);
    assert_eq!(serial("6.6.0.0.8.b.d.0.1.0.0.2.ip6.arpa"), v6_before);
    let after = knot.log();
    let reloads: Vec<&str> = after[log..]
        .lines()
        .filter(|l| l.contains("zone file parsed"))
        .collect();
    assert_eq!(reloads.len(), 1, "{reloads:?}");
    assert!(
        reloads[0].contains("[0-25.255.255.66.in-addr.arpa.]"),
        "{reloads:?}"
    );

    // A name server inside the forward zone without an address: named-checkzone rejects the
    // zone, the run fails naming it, and the server keeps its zones.
    edit(
        &repo,
        "gitvps.toml",
        "nameservers = [\"ns1.example.net\",",
        "nameservers = [\"ns1.vps.example.net\",",
    );
    edit(
        &repo,
        "inventory/vps/xen02.toml",
        "= \"smtp.example.net\"",
        "= \"mail.example.net\"",
    );
    let loads = knot.loads();
    let bad = gitvps(&repo, &sshd, &["dns", "apply"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(
        bad.stderr
            .contains("zone vps.example.net rejected by named-checkzone: zone vps.example.net/IN: NS 'ns1.vps.example.net' has no address records"),
        "{bad:?}"
    );
    assert_eq!(knot.loads(), loads);
    assert_eq!(
        knot.dig(&["34.0-25.255.255.66.in-addr.arpa", "PTR"]),
        ["smtp.example.net."]
    );
}

/// Forward confirmation asks the test's Knot (`dig`), as the system resolver would ask the
/// operator's recursive resolver.
struct AskKnot(u16);

impl hooks::resolve::Resolver for AskKnot {
    fn addresses<'a>(&'a self, name: &'a model::values::Hostname) -> hooks::resolve::Lookup<'a> {
        let (port, n) = (self.0, name.to_string());
        Box::pin(async move {
            let found: Vec<std::net::IpAddr> = tokio::task::spawn_blocking(move || {
                ["A", "AAAA"]
                    .iter()
                    .flat_map(|t| dig_at(port, &[&n, t]))
                    .filter_map(|l| l.parse().ok())
                    .collect()
            })
            .await
            .unwrap();
            if found.is_empty() {
                Err(hooks::resolve::ResolveError::NoAddress(name.clone()))
            } else {
                Ok(found)
            }
        })
    }
}

/// `PUT /api/vps/{vps}/ptr` through the hooks' router, in-process: status and JSON answer.
async fn put_ptr(
    router: &axum::Router,
    token: &str,
    vps: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    use tower::ServiceExt;
    let req = axum::http::Request::builder()
        .method("PUT")
        .uri(format!("/api/vps/{vps}/ptr"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn a_ptr_set_through_the_hooks_is_published_by_the_next_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let (sshd, knot, repo) = fleet_with_knot(tmp.path());
    edit(
        &repo,
        "gitvps.toml",
        "forward_confirm = false",
        "forward_confirm = true",
    );
    gitvps_tests::commit_all(&repo);
    let first = gitvps(&repo, &sshd, &["dns", "apply"]);
    assert_eq!(first.code, 0, "{first:?}\n{}", knot.log());
    assert_eq!(
        knot.dig(&["34.0-25.255.255.66.in-addr.arpa", "PTR"]),
        ["xen02.example.net."]
    );

    // The hooks work on a bare clone, as on a hosted repo; the work tree pulls their commits.
    let bare = tmp.path().join("inventory.git");
    gitvps_tests::git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            repo.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    let secret = hooks::Secret::new("dns-test-token-secret-0123456789abcdef");
    let mut cfg = hooks::Config::new(bare.to_str().unwrap(), secret.clone());
    cfg.cache_dir = tmp.path().join("hooks-cache");
    let app = hooks::App::new(cfg)
        .unwrap()
        .with_resolver(std::sync::Arc::new(AskKnot(knot.port)));
    let router = hooks::router(std::sync::Arc::new(app));
    let inv = model::Inventory::load(&repo).unwrap();
    let jane: model::CustomerId = "c-0001".parse().unwrap();
    let fp = hooks::auth::password_fingerprint(inv.customers[&jane].password_hash.as_ref());
    let token =
        hooks::auth::issue_token(&secret, &jane, &fp, chrono::Utc::now().timestamp(), 600).0;

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // mail.example.net is not in any zone Knot serves: no A record, refused, no commit.
        let (s, v) = put_ptr(
            &router,
            &token,
            "xen02",
            serde_json::json!({"address": "66.255.255.34", "name": "mail.example.net"}),
        )
        .await;
        assert_eq!(
            (s, v["error"].as_str()),
            (422, Some("ptr_not_confirmed")),
            "{v}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("add `mail.example.net. A 66.255.255.34`"),
            "{v}"
        );
        // The forward name Knot serves for xen02 (A and AAAA) confirms both addresses.
        for address in ["66.255.255.34", "2001:db8:66:22::1"] {
            let (s, v) = put_ptr(
                &router,
                &token,
                "xen02",
                serde_json::json!({"address": address, "name": "xen02.vps.example.net"}),
            )
            .await;
            assert_eq!((s, &v["changed"]), (200, &serde_json::json!(true)), "{v}");
        }
    });
    gitvps_tests::git(
        &repo,
        &["pull", "-q", "--ff-only", bare.to_str().unwrap(), "main"],
    );
    assert_eq!(
        gitvps_tests::git(&repo, &["log", "-2", "--format=%an: %s"]),
        "gitvps-bot: c-0001: set the reverse name of 2001:db8:66:22::1 (xen02) to xen02.vps.example.net (site)\n\
         gitvps-bot: c-0001: set the reverse name of 66.255.255.34 (xen02) to xen02.vps.example.net (site)\n"
    );

    let published = gitvps(&repo, &sshd, &["dns", "apply"]);
    assert_eq!(published.code, 0, "{published:?}");
    assert!(
        published.stdout.contains(
            "      - 34 IN PTR xen02.example.net.\n      + 34 IN PTR xen02.vps.example.net.\n"
        ),
        "{published:?}"
    );
    // IPv4 in the /25 (RFC 2317): the upstream's CNAME, then our zone's PTR.
    assert_eq!(
        knot.dig(&["-x", "66.255.255.34"]),
        ["34.0-25.255.255.66.in-addr.arpa."]
    );
    assert_eq!(
        knot.dig(&["34.0-25.255.255.66.in-addr.arpa", "PTR"]),
        ["xen02.vps.example.net."]
    );
    // IPv6.
    assert_eq!(
        knot.dig(&["-x", "2001:db8:66:22::1"]),
        ["xen02.vps.example.net."]
    );
    let again = gitvps(&repo, &sshd, &["dns", "apply"]);
    assert!(again.stdout.ends_with("): no changes\n"), "{again:?}");
}
