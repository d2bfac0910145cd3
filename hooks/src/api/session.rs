//! The session: `POST /api/login` (a password for a token) and `GET /api/me` (the panel's
//! view of the customer and its VPSes).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use model::values::{Keyword, State as VpsState};
use model::{CustomerId, Inventory};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, App, Authed, ClientAddr, JsonBody, MAX_PASSWORD, rfc3339};
use crate::store::Snapshot;
use crate::{auth, throttle};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginReq {
    /// Customer id (`c-0001`) or e-mail.
    customer: String,
    password: String,
    /// The second factor, when the customer turned it on: a 6-digit code or a recovery code.
    #[serde(default)]
    otp: Option<String>,
}

pub(super) async fn login(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<LoginReq>,
) -> Result<Response, ApiError> {
    if req.password.len() > MAX_PASSWORD || req.customer.len() > 320 {
        return Err(bad_credentials());
    }
    let asked = req.customer.trim().to_owned();
    let asked_key = asked.to_lowercase();
    // First the cached head (at most seconds old, no fetch): who this names, and whether the
    // request is turned away before any work (throttled, or the hash queue full).
    let cached = app.store.snapshot().await?;
    let settings = cached.inv.settings.hooks.clone();
    let hint = find_customer(&cached.inv, &asked).map(|c| c.id.clone());
    // Throttled per account (by id when it exists, so its id and e-mail count together) and
    // per client address, before any argon2 work.
    let account = match &hint {
        Some(id) => format!("acct:{id}"),
        None => format!("acct:{asked_key}"),
    };
    let mut keys = vec![account.clone()];
    keys.extend(addr.map(throttle::addr_key));
    let permit = app.throttle.admit(&keys, Instant::now()).map_err(|t| {
        tracing::info!(reason = %t, "login throttled");
        ApiError::from(t)
    })?;
    // An existing account with no failure on record, from an address with none: the reserved
    // hashing slot is open to it, so a flood of bad logins does not lock it out.
    let clean = hint.is_some() && app.throttle.clean(&keys);
    if !clean {
        app.argon2_has_room(&settings)?;
    }
    // Then the fresh head: the password, sessions and second factor as they are now.
    let found = app
        .store
        .read(move |v| {
            find_customer(&v.snapshot.inv, &asked).map(|c| {
                let epoch = auth::session_epoch(v.tree.read(&auth::session_path(&c.id)).as_deref());
                let tf = v
                    .tree
                    .read(&crate::twofactor::twofactor_path(&c.id))
                    .and_then(|t| crate::twofactor::TwoFactor::parse(&t));
                (c.id.clone(), c.password_hash.clone(), epoch, tf)
            })
        })
        .await?;
    let (id, hash, epoch, tf) = match found {
        Some((id, hash, epoch, tf)) => (Some(id), hash, epoch, tf),
        None => (None, None, 0, None),
    };
    let password = req.password;
    let check_hash = hash.clone();
    let ok = app
        .argon2(&settings, clean, move || {
            auth::verify_password(check_hash.as_ref(), &password)
        })
        .await?;
    drop(permit);
    let Some(id) = id.filter(|_| ok) else {
        let (free, max) = throttle::login_limits(&settings);
        app.throttle.failed(&keys, free, max, Instant::now());
        tracing::info!("login refused");
        return Err(bad_credentials());
    };
    if let Some(tf) = tf {
        second_factor(&app, &id, &tf, req.otp.as_deref(), &keys, &settings).await?;
    }
    app.throttle.succeeded(&account);
    let (token, expires) = auth::issue_token(
        &app.cfg.token_secret,
        &id,
        &auth::session_fingerprint(hash.as_ref(), epoch),
        Utc::now().timestamp(),
        i64::try_from(app.cfg.token_ttl.as_secs()).unwrap_or(3600),
    );
    tracing::info!(customer = %id, "logged in");
    let expires_at = DateTime::<Utc>::from_timestamp(expires, 0).map(rfc3339);
    Ok(axum::Json(json!({
        "token": token,
        "customer": id,
        "expires_at": expires_at,
    }))
    .into_response())
}

/// The second factor of a customer who turned it on: missing, 401 `otp_required`; wrong, a
/// failed login; a recovery code is spent (committed) before the token is issued.
async fn second_factor(
    app: &App,
    id: &CustomerId,
    tf: &crate::twofactor::TwoFactor,
    otp: Option<&str>,
    keys: &[String],
    settings: &model::settings::HooksSettings,
) -> Result<(), ApiError> {
    use crate::twofactor::{Factor, check_factor};
    let key = super::twofactor::totp_key(app)?;
    let Some(given) = otp else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "otp_required",
            "enter the code of your authenticator app (or a recovery code)",
        ));
    };
    let failed = || {
        let (free, max) = throttle::login_limits(settings);
        app.throttle.failed(keys, free, max, Instant::now());
        tracing::info!("login refused: second factor");
        bad_credentials()
    };
    match check_factor(key, id, tf, given, Utc::now().timestamp()) {
        Ok(Some(Factor::Code(step))) if app.totp_steps.spend(id, step) => Ok(()),
        Ok(Some(Factor::Code(_))) => {
            tracing::info!("login refused: a code used already");
            Err(failed())
        }
        Ok(Some(Factor::Recovery(hash))) => {
            let spent = app
                .store
                .apply(crate::decide::Change::UseRecoveryCode {
                    customer: id.clone(),
                    hash,
                })
                .await;
            match spent {
                Ok(_) => Ok(()),
                Err(crate::store::ApplyError::Refused(_)) => Err(failed()),
                Err(e) => Err(e.into()),
            }
        }
        Ok(None) => Err(failed()),
        Err(e) => {
            tracing::error!(error = %e, "a stored TOTP secret does not open");
            Err(failed())
        }
    }
}

/// The customer a login names: by id, or by e-mail (unique, case-insensitively).
pub(super) fn find_customer<'a>(inv: &'a Inventory, asked: &str) -> Option<&'a model::Customer> {
    match asked.parse::<CustomerId>() {
        Ok(id) => inv.customers.get(&id),
        Err(_) => inv
            .customers
            .values()
            // A customer without an e-mail logs in with its id only.
            .find(|c| {
                c.email
                    .as_ref()
                    .is_some_and(|e| e.as_str().eq_ignore_ascii_case(asked))
            }),
    }
}

fn bad_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "bad_credentials",
        "wrong customer or password",
    )
}

// ---- me ----------------------------------------------------------------------------------

/// A VPS's snapshots for the panel: its limit, each declared one (UTC time) and whether its
/// node holds it yet (as the last apply observed), and the revert asked for.
fn snapshots_view(snap: &Snapshot, inv: &Inventory, v: &model::Vps) -> Value {
    let held = snap.status.get(&v.id).map(|s| &s.snapshots);
    json!({
        "limit": if inv.snapshot_space_of(v).is_some() { inv.snapshot_limit_of(v) } else { 0 },
        "list": v.snapshots.list.iter().map(|s| json!({
            "name": s.name,
            "created": rfc3339(s.created),
            "taken": held.is_some_and(|h| h.iter().any(|n| n == s.name.as_str())),
        })).collect::<Vec<_>>(),
        "revert": v.snapshots.revert.as_ref().map(|r| json!({
            "snapshot": r.snapshot,
            "generation": r.generation,
        })),
    })
}

/// The panel's view of one customer: its VPSes, offers and observed status.
pub fn me_view(snap: &Snapshot, customer: &CustomerId) -> Option<Value> {
    let inv: &Inventory = &snap.inv;
    let c = inv.customers.get(customer)?;
    let vps: Vec<Value> = inv
        .vps
        .values()
        .filter(|v| &v.customer == customer && v.state != VpsState::Destroyed)
        .map(|v| {
            let product = inv.products.get(&v.product);
            let offers: Vec<Value> = inv
                .renewals_of(&v.product)
                .map(|p| {
                    json!({
                        "product": p.id,
                        "name": p.name,
                        "period_months": p.period_months,
                        "price": p.price,
                    })
                })
                .collect();
            let node = inv.nodes.get(&v.node);
            let status = match snap.status.get(&v.id) {
                Some(s) => json!({
                    "known": true,
                    "node": s.node,
                    "power": s.power,
                    "domain_state": s.domain_state,
                    "memory_mib": s.memory_mib,
                    "vcpus": s.vcpus,
                    "actions": s.actions,
                    "pending": {
                        "reboot": v.actions.reboot > s.actions.reboot,
                        "fsck": v.actions.fsck > s.actions.fsck,
                        "reinstall": v.actions.reinstall > s.actions.reinstall,
                        "revert": v.snapshots.revert.as_ref().is_some_and(|r| r.generation > s.actions.revert),
                    },
                    "last_error": s.last_error,
                    "observed_at": rfc3339(s.observed_at),
                    // The backups the last backup run published, for the panel's restore.
                    "backups": s.backups.as_ref().map(|l| l.iter().map(|b| json!({
                        "short_id": b.short_id,
                        "time": rfc3339(b.time),
                        "size_bytes": b.size_bytes,
                    })).collect::<Vec<_>>()),
                }),
                None => json!({"known": false}),
            };
            json!({
                "id": v.id,
                "hostname": v.hostname,
                "ips": v.ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "addresses": v.reverse_names().into_iter().map(|(ip, name)| json!({
                    "address": ip.to_string(),
                    "ptr": name,
                    "custom": v.ptr.contains_key(&ip),
                })).collect::<Vec<_>>(),
                "location": node.map(|n| n.location.as_str()),
                "product": {"id": v.product, "name": product.map(|p| p.name.as_str())},
                "state": v.state,
                "created": v.created.to_string(),
                "expires": v.expires.to_string(),
                "os": v.os,
                "appliance": v.appliance,
                "power": v.power,
                "actions": v.actions,
                "renewals": offers,
                "traffic_blocks": traffic_offers(inv, v),
                "boot": v.boot.as_ref().map(boot_view),
                // Whether the panel offers an ISO: the node boots HVM guests with a CD-ROM.
                "iso_boot": node.is_some_and(|n| model::media::iso_unsupported(n).is_none()),
                // Whether the panel offers cloud-image OSes for a reinstall: the node installs them.
                "cloud_image_install": node.is_some_and(|n| model::bootstraps::cloud_unsupported(n).is_none()),
                "rescue": v.rescue,
                // Whether the panel offers rescue mode: the node can boot the rescue system.
                "rescue_boot": node.is_some_and(|n| model::media::rescue_unsupported(n).is_none()),
                "status": status,
                "snapshots": snapshots_view(snap, inv, v),
                "monitor": monitor_view(snap.monitor.get(&v.id)),
            })
        })
        .collect();
    Some(json!({
        "customer": {
            "id": c.id,
            "name": c.name,
            "company": c.company,
            "email": c.email.as_ref().map(|e| e.as_str()),
            "language": Keyword::as_str(c.language),
            "ssh_keys": c.ssh_keys,
        },
        "currency": inv.currency,
        // The operator's ISO library, for the panel's boot media.
        "isos": inv.settings.boot.library.iter().map(|e| json!({
            "id": e.id,
            "name": e.name,
            "size": e.size.to_string(),
        })).collect::<Vec<_>>(),
        "vps": vps,
    }))
}

/// The traffic blocks `v` may buy now (none on an unmetered plan or while it may not buy),
/// with their price for its current traffic period.
fn traffic_offers(inv: &Inventory, v: &model::Vps) -> Vec<Value> {
    let today = Utc::now().date_naive();
    inv.traffic_block_offers()
        .filter_map(|(p, size)| {
            let (_, period, due) = crate::billing::traffic_block_due(inv, v, &p.id, today).ok()?;
            Some(json!({
                "product": p.id,
                "name": p.name,
                "size": size.to_string(),
                "price": due.totals.total,
                "period_start": period.start.to_string(),
                "period_end": period.end.to_string(),
            }))
        })
        .collect()
}

/// A VPS's `[boot]`, as the panel shows it: the library ISO's id or the customer's URL.
fn boot_view(b: &model::media::Boot) -> Value {
    use model::media::IsoSource;
    match &b.iso {
        IsoSource::Library(id) => json!({"iso": id, "order": b.order.as_str()}),
        IsoSource::Url { url, sha256 } => json!({
            "iso_url": url.as_str(),
            "iso_sha256": sha256.as_str(),
            "order": b.order.as_str(),
        }),
    }
}

/// What the collector last saw of a VPS, as the panel shows it: check states and counters.
fn monitor_view(m: Option<&model::status::VpsMonitor>) -> Value {
    let Some(m) = m else {
        return json!({"known": false});
    };
    json!({
        "known": true,
        "collected_at": rfc3339(m.collected_at),
        "counters": m.counters.map(|c| json!({
            "at": rfc3339(c.at),
            "cpu_ms": c.cpu_ms,
            "net_rx_bytes": c.net_rx_bytes,
            "net_tx_bytes": c.net_tx_bytes,
            "disk_read_bytes": c.disk_read_bytes,
            "disk_write_bytes": c.disk_write_bytes,
        })),
        "checks": m.checks.iter().map(|c| json!({
            "name": c.name,
            "kind": c.kind,
            "state": c.state,
            "since": rfc3339(c.since),
            "failures": c.failures,
            "detail": c.detail,
            "checked": c.checked.map(rfc3339),
        })).collect::<Vec<_>>(),
    })
}

pub(super) async fn me(State(app): State<Arc<App>>, a: Authed) -> Result<Response, ApiError> {
    a.require(crate::apikeys::Scope::Read)?;
    let customer = a.customer;
    let view = app
        .store
        .read(move |v| {
            me_view(v.snapshot, &customer).map(|mut view| {
                // Whether two-factor login is on, for the panel's account section.
                let tf = crate::twofactor::twofactor_path(&customer);
                view["customer"]["two_factor"] = v.tree.exists(&tf).into();
                view
            })
        })
        .await?;
    view.map(|v| axum::Json(v).into_response())
        .ok_or_else(ApiError::not_found)
}

/// `POST /api/logout-all`: every token of the customer, this one included, stops working at
/// the next request (a `sessions/<customer>.toml` commit that changes their fingerprint).
pub(super) async fn logout_all(
    State(app): State<Arc<App>>,
    a: Authed,
) -> Result<Response, ApiError> {
    a.require_session()?;
    app.quota(&a, "logout-all")?;
    let c = app
        .store
        .apply_as(
            crate::decide::Change::LogoutAll {
                customer: a.customer,
                at: Utc::now().timestamp(),
            },
            a.credential,
        )
        .await?;
    Ok(super::answer(c))
}
