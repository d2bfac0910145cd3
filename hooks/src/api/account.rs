//! The account's password: `POST /api/password` (a logged-in change), `POST
//! /api/password/forgot` (a reset link by mail) and `POST /api/password/reset` (the link used).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, App, Authed, ClientAddr, JsonBody, MAX_PASSWORD, answer_with, rfc3339};
use crate::decide::{Change, Refusal};
use crate::reset::{Record, Token, reset_path};
use crate::store::ApplyError;
use crate::{auth, throttle};

/// Longest customer id or e-mail a reset request may name.
const MAX_ASKED: usize = 320;

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

fn bad_password(e: String) -> ApiError {
    ApiError::unprocessable("bad_password", format!("the new password {e}"))
}

fn wrong_password() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "wrong_password",
        "the current password is wrong",
    )
}

/// The throttle keys of a request about `customer` (its account) from `addr`.
fn keys(account: String, addr: Option<std::net::IpAddr>) -> Vec<String> {
    let mut keys = vec![account];
    keys.extend(addr.map(throttle::addr_key));
    keys
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeReq {
    /// The password now.
    current: String,
    /// The one to set.
    new: String,
}

/// `POST /api/password`: the current password and a new one. Every session issued before is
/// refused from its next request; this one gets a fresh token in the answer.
pub(super) async fn change(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    a: Authed,
    JsonBody(req): JsonBody<ChangeReq>,
) -> Result<Response, ApiError> {
    a.require_session()?;
    super::password_rule(&req.new).map_err(bad_password)?;
    if req.current.len() > MAX_PASSWORD {
        return Err(wrong_password());
    }
    app.quota(&a, "password")?;
    let settings = a.snapshot.inv.settings.hooks.clone();
    // A wrong current password counts like a failed login, for the account and the address.
    let account = format!("acct:{}", a.customer);
    let keys = keys(account.clone(), addr);
    let permit = app.throttle.admit(&keys, Instant::now())?;
    app.argon2_has_room(&settings)?;
    let c = a.customer.clone();
    let (hash, epoch) = app
        .store
        .read(move |v| {
            let hash = v
                .snapshot
                .inv
                .customers
                .get(&c)
                .and_then(|x| x.password_hash.clone());
            let epoch = auth::session_epoch(v.tree.read(&auth::session_path(&c)).as_deref());
            (hash, epoch)
        })
        .await?;
    let (current, new) = (req.current, req.new);
    let hashed = app
        .argon2(&settings, false, move || {
            if !auth::verify_password(hash.as_ref(), &current) {
                return Ok(None);
            }
            auth::hash_password(&new).map(Some)
        })
        .await?;
    drop(permit);
    let new_hash = match hashed {
        Ok(Some(h)) => h,
        Ok(None) => {
            let (free, max) = throttle::login_limits(&settings);
            app.throttle.failed(&keys, free, max, Instant::now());
            tracing::info!(customer = %a.customer, "password change refused: wrong current password");
            return Err(wrong_password());
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot hash a password");
            return Err(internal());
        }
    };
    app.throttle.succeeded(&account);
    let committed = app
        .store
        .apply_as(
            Change::SetPassword {
                customer: a.customer.clone(),
                hash: new_hash.clone(),
                reset: None,
                at: Utc::now(),
            },
            a.credential,
        )
        .await?;
    // This session goes on with a token bound to the new password.
    let (token, expires) = auth::issue_token(
        &app.cfg.token_secret,
        &a.customer,
        &auth::session_fingerprint(Some(&new_hash), epoch),
        Utc::now().timestamp(),
        i64::try_from(app.cfg.token_ttl.as_secs()).unwrap_or(3600),
    );
    tracing::info!(customer = %a.customer, "password changed");
    Ok(answer_with(
        committed,
        json!({
            "token": token,
            "expires_at": DateTime::<Utc>::from_timestamp(expires, 0).map(rfc3339),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForgotReq {
    /// Customer id or e-mail.
    customer: String,
}

/// `POST /api/password/forgot`: 202 whether or not the account exists or has an e-mail; when
/// it does, a reset record is committed and the mail with the link sent.
///
/// Visible limits (429) depend only on what is asked and from where: per client address
/// (`hooks.per_minute`, `hooks.per_day`) and per name asked (one a minute,
/// `hooks.resets_per_day`). The same cap per account, whichever name reached it, is silent:
/// beyond it the answer is the same 202 and nothing is mailed.
pub(super) async fn forgot(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<ForgotReq>,
) -> Result<Response, ApiError> {
    let asked = req.customer.trim().to_owned();
    if asked.is_empty() || asked.len() > MAX_ASKED {
        return Err(ApiError::unprocessable(
            "bad_customer",
            "give a customer id or e-mail",
        ));
    }
    let settings = app.store.snapshot().await?.inv.settings.hooks.clone();
    let (now, utc) = (Instant::now(), Utc::now());
    let take = |key: &str, per_minute: u32, per_day: u32| {
        app.quotas
            .take(key, "reset", per_minute, per_day, now, utc)
            .map_err(|t| {
                tracing::info!(reason = %t, "password reset request throttled");
                ApiError::from(t)
            })
    };
    if let Some(ip) = addr {
        take(
            &throttle::addr_key(ip),
            settings.per_minute,
            settings.per_day,
        )?;
    }
    take(
        &format!("asked:{}", asked.to_lowercase()),
        1,
        settings.resets_per_day,
    )?;
    let found = app
        .store
        .read(move |v| {
            super::session::find_customer(&v.snapshot.inv, &asked)
                .filter(|c| c.email.is_some())
                .map(|c| c.id.clone())
        })
        .await?;
    if let Some(id) = found {
        if take(&format!("acct:{id}"), 1, settings.resets_per_day).is_err() {
            tracing::info!(customer = %id, "password reset not mailed: the account's cap");
        } else {
            mail_reset(&app, id).await;
        }
    }
    let mut r = axum::Json(json!({
        "ok": true,
        "accepted": true,
        "message": "if the account exists and has an e-mail address, a link is on its way",
    }))
    .into_response();
    *r.status_mut() = StatusCode::ACCEPTED;
    Ok(r)
}

/// Commits the reset record, then sends the mail with the link at once (never through the
/// repo: the token would be in its history). Failures are logged without the token or the
/// address, never answered (the answer must not tell whether an account exists); the customer
/// may ask again, within the account's cap.
async fn mail_reset(app: &App, id: model::CustomerId) {
    let failed = |error: &str| tracing::error!(customer = %id, error, "password reset not mailed");
    let Some(url) = app.cfg.mail_url.clone() else {
        failed(&format!("{} is not set", crate::config::ENV_SMTP_URL));
        return;
    };
    let random: [u8; crate::reset::TOKEN_BYTES] = match crate::config::random_bytes() {
        Ok(r) => r,
        Err(e) => return failed(&format!("no random bytes for a reset token: {e}")),
    };
    let token = Token::new(&id, random);
    let at = Utc::now();
    let asked = app
        .store
        .apply(Change::RequestReset {
            customer: id.clone(),
            hash: token.hash(),
            at,
        })
        .await;
    match asked {
        Ok(_) => {}
        Err(ApplyError::Refused(r)) => {
            tracing::warn!(customer = %id, reason = %r, "password reset not mailed");
            return;
        }
        Err(ApplyError::Store(e)) => return failed(&crate::error_chain(&e)),
    }
    // The record has landed: the link goes out now, built on the head (its templates, the
    // customer's language and address as they are).
    let c = id.clone();
    let built = app
        .store
        .read(move |v| crate::mails::password_reset(&v.snapshot.inv, v.tree, &c, &token, at))
        .await;
    let message = match built {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return failed(&crate::error_chain(&e)),
        Err(e) => return failed(&crate::error_chain(&e)),
    };
    let ca = app.cfg.mail_ca.clone();
    let sent = tokio::task::spawn_blocking(move || {
        use mail::Transport;
        let out = mail::Outgoing::from_url(url.expose_str(), ca.as_deref())?;
        out.send(
            &message.from,
            std::slice::from_ref(&message.to),
            &message.raw,
        )
    })
    .await;
    match sent {
        Ok(Ok(())) => tracing::info!(customer = %id, "password reset mailed"),
        Ok(Err(e)) => failed(&send_failure(&e)),
        Err(e) => failed(&e.to_string()),
    }
}

/// A send error fit for the log: a server's reply to a message or its recipient may quote the
/// address, so it is left out.
fn send_failure(e: &mail::SendError) -> String {
    use mail::SendError;
    match e {
        SendError::Rejected { server, .. } => format!("SMTP server {server} rejected the message"),
        SendError::Deferred { server, .. } => format!("SMTP server {server} deferred the message"),
        other => other.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResetReq {
    /// The token of the link (`?reset=...`).
    token: String,
    /// The new password.
    password: String,
}

/// `POST /api/password/reset`: the link's token and a new password. Works once, before the
/// record's expiry; every session is refused from then on. A wrong token counts like a failed
/// login for the client address and the account it names.
pub(super) async fn reset(
    State(app): State<Arc<App>>,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<ResetReq>,
) -> Result<Response, ApiError> {
    let invalid = || ApiError::from(Refusal::ResetInvalid);
    if req.token.len() > MAX_ASKED + 80 {
        return Err(invalid());
    }
    super::password_rule(&req.password).map_err(bad_password)?;
    let settings = app.store.snapshot().await?.inv.settings.hooks.clone();
    let token = Token::parse(&req.token);
    let customer = token.as_ref().and_then(Token::customer);
    let account = match &customer {
        Some(c) => format!("acct:{c}"),
        None => "acct:?".to_owned(),
    };
    let keys = keys(account.clone(), addr);
    let permit = app.throttle.admit(&keys, Instant::now())?;
    let failed = || {
        let (free, max) = throttle::login_limits(&settings);
        app.throttle.failed(&keys, free, max, Instant::now());
        tracing::info!("password reset refused: invalid, used or expired link");
        invalid()
    };
    let (Some(token), Some(customer)) = (token, customer) else {
        return Err(failed());
    };
    // The record first, on a fresh head: no hashing for a wrong or stale link.
    let (c, token_hash) = (customer.clone(), token.hash());
    let now = Utc::now().timestamp();
    let opens = app
        .store
        .read(move |v| {
            v.snapshot.inv.customers.contains_key(&c)
                && v.tree
                    .read(&reset_path(&c))
                    .and_then(|t| Record::parse(&t))
                    .is_some_and(|r| r.opens(&token_hash, now))
        })
        .await?;
    if !opens {
        return Err(failed());
    }
    app.argon2_has_room(&settings)?;
    let hash = app.hash_new_password(&settings, req.password).await?;
    drop(permit);
    // Checked again on the head of the commit: two uses of one link, one lands.
    let committed = app
        .store
        .apply(Change::SetPassword {
            customer: customer.clone(),
            hash,
            reset: Some(token.hash()),
            at: Utc::now(),
        })
        .await;
    let committed = match committed {
        Err(ApplyError::Refused(Refusal::ResetInvalid)) => return Err(failed()),
        other => other?,
    };
    app.throttle.succeeded(&account);
    tracing::info!(customer = %customer, "password reset by mail");
    Ok(super::answer(committed))
}
