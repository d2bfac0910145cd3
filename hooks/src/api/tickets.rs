//! Support tickets: open one (`POST /api/tickets`), reply (`POST /api/tickets/{id}`), and
//! list the customer's own (`GET /api/tickets`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::{ApiError, App, Authed, JsonBody, answer, parse_vps};
use crate::apikeys::Scope;
use crate::decide::Change;
use crate::tickets::{self, TICKETS_DIR, TicketId};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenTicketReq {
    subject: String,
    message: String,
    #[serde(default)]
    vps: Option<String>,
}

pub(super) async fn open_ticket(
    State(app): State<Arc<App>>,
    a: Authed,
    JsonBody(req): JsonBody<OpenTicketReq>,
) -> Result<Response, ApiError> {
    let subject = tickets::check_subject(&req.subject).map_err(bad_ticket)?;
    let message = tickets::check_message(&req.message).map_err(bad_ticket)?;
    let vps = req.vps.as_deref().map(parse_vps).transpose()?;
    a.require(Scope::Tickets)?;
    app.quota(&a, "ticket")?;
    let c = app
        .store
        .apply_as(
            Change::OpenTicket {
                customer: a.customer,
                vps,
                subject,
                message,
                at: Utc::now(),
            },
            a.credential,
        )
        .await?;
    let mut r = answer(c);
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplyReq {
    message: String,
}

pub(super) async fn reply_ticket(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<ReplyReq>,
) -> Result<Response, ApiError> {
    let ticket: TicketId = id.parse().map_err(|_| ApiError::not_found())?;
    let message = tickets::check_message(&req.message).map_err(bad_ticket)?;
    a.require(Scope::Tickets)?;
    app.quota(&a, "reply")?;
    let c = app
        .store
        .apply_as(
            Change::ReplyTicket {
                customer: a.customer,
                ticket,
                message,
                at: Utc::now(),
            },
            a.credential,
        )
        .await?;
    Ok(answer(c))
}

pub(super) async fn list_tickets(
    State(app): State<Arc<App>>,
    a: Authed,
) -> Result<Response, ApiError> {
    a.require(Scope::Read)?;
    let customer = a.customer;
    let list = app
        .store
        .read(move |v| {
            let mut out: BTreeMap<TicketId, tickets::Ticket> = BTreeMap::new();
            for e in v.tree.entries(TICKETS_DIR).unwrap_or_default() {
                let Some(id) = e
                    .name
                    .strip_suffix(".md")
                    .and_then(|n| n.parse::<TicketId>().ok())
                else {
                    continue;
                };
                let Some(text) = v.tree.read(&id.path()) else {
                    continue;
                };
                match tickets::parse(id.clone(), &text) {
                    Ok(t) if t.customer == customer => {
                        out.insert(id, t);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "unreadable ticket"),
                }
            }
            out.into_values().collect::<Vec<_>>()
        })
        .await?;
    Ok(axum::Json(json!({"tickets": list})).into_response())
}

fn bad_ticket(e: tickets::TicketError) -> ApiError {
    ApiError::unprocessable("bad_ticket", e.to_string())
}
