//! Rescue mode from the panel: `POST /api/vps/{id}/rescue` boots the VPS into the node's rescue
//! system (its disk attached, not mounted), `DELETE` leaves it, so its own system boots again.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use super::{ApiError, App, Authed, answer, parse_vps};
use crate::apikeys::Scope;
use crate::decide::Change;

/// `POST /api/vps/{id}/rescue`: enter rescue mode.
pub(super) async fn enter(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
) -> Result<Response, ApiError> {
    change(&app, a, &id, true).await
}

/// `DELETE /api/vps/{id}/rescue`: leave rescue mode, boot the VPS's own system.
pub(super) async fn leave(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
) -> Result<Response, ApiError> {
    change(&app, a, &id, false).await
}

/// One commit setting or removing `rescue = true`, rate-limited with the other actions.
async fn change(app: &App, a: Authed, id: &str, on: bool) -> Result<Response, ApiError> {
    let vps = parse_vps(id)?;
    a.require(Scope::Reinstall)?;
    app.quota(&a, "rescue")?;
    let change = Change::Rescue {
        customer: a.customer,
        vps,
        on,
    };
    Ok(answer(app.store.apply_as(change, a.credential).await?))
}
