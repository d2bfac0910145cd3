//! Boot media from the panel: `PUT /api/vps/{id}/boot` attaches an ISO (one of the operator's
//! library, or the customer's own URL and sha256), `DELETE` ejects it so the disk boots again.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use model::media::{Boot, BootOrder, BootOrderKw, IsoSource, MediaUrl, Sha256Hex};
use serde::Deserialize;

use super::{ApiError, App, Authed, JsonBody, answer, parse_vps};
use crate::apikeys::Scope;
use crate::decide::Change;

/// `{"iso": "<library id>"}` or `{"iso_url": ..., "iso_sha256": ...}`, with an optional
/// `"order"` (`cd`, the default, or `disk`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BootReq {
    #[serde(default)]
    iso: Option<String>,
    #[serde(default)]
    iso_url: Option<String>,
    #[serde(default)]
    iso_sha256: Option<String>,
    #[serde(default)]
    order: Option<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::unprocessable("bad_boot", msg.into())
}

impl BootReq {
    /// The `[boot]` asked, every value checked by the same parsers as the VPS file's.
    fn parse(self) -> Result<Boot, ApiError> {
        let iso = match (self.iso, self.iso_url, self.iso_sha256) {
            (Some(id), None, None) => IsoSource::Library(id.parse().map_err(|_| {
                bad(format!(
                    "`{}` is not an ISO id",
                    id.chars().take(40).collect::<String>().escape_debug()
                ))
            })?),
            (None, Some(url), Some(sha)) => IsoSource::Url {
                url: url
                    .parse::<MediaUrl>()
                    .map_err(|e| bad(format!("iso_url: {e}")))?,
                sha256: sha
                    .parse::<Sha256Hex>()
                    .map_err(|e| bad(format!("iso_sha256: {e}")))?,
            },
            (None, Some(_), None) => {
                return Err(bad(
                    "an ISO URL needs its sha256 (iso_sha256): nothing unchecked is booted",
                ));
            }
            _ => {
                return Err(bad(
                    "give either `iso` (an ISO of the library) or `iso_url` with `iso_sha256`",
                ));
            }
        };
        let order = match self.order.as_deref() {
            None => BootOrder::Cd,
            Some(o) => model::values::parse_keyword::<BootOrderKw>(o)
                .map(Into::into)
                .map_err(|_| bad("order: `cd` (the CD boots first) or `disk`"))?,
        };
        Ok(Boot { iso, order })
    }
}

/// `PUT /api/vps/{id}/boot`: attach an ISO.
pub(super) async fn attach(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<BootReq>,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    a.require(Scope::Reinstall)?;
    let boot = req.parse()?;
    app.quota(&a, "boot")?;
    change(&app, a, vps, Some(boot)).await
}

/// `DELETE /api/vps/{id}/boot`: eject the ISO, boot from disk.
pub(super) async fn eject(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    a.require(Scope::Reinstall)?;
    app.quota(&a, "boot")?;
    change(&app, a, vps, None).await
}

async fn change(
    app: &App,
    a: Authed,
    vps: model::VpsId,
    boot: Option<Boot>,
) -> Result<Response, ApiError> {
    let change = Change::Boot {
        customer: a.customer,
        vps,
        boot,
    };
    Ok(answer(app.store.apply_as(change, a.credential).await?))
}
