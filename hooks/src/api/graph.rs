//! `GET /api/vps/{id}/graph`: a usage graph of one of the customer's VPSes as SVG, drawn by the
//! [`GraphSource`](crate::graphs::GraphSource) the server was started with.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::{ApiError, App, Authed, parse_vps};
use crate::apikeys::Scope;
use crate::graphs::{GraphFailure, GraphQuery, request};

/// Graphs a customer may ask for per minute (a panel asks four at a time: three metrics and
/// the comparison) and per UTC day. Drawing one takes milliseconds, but it reads the samples.
pub const GRAPHS_PER_MINUTE: u32 = 60;
/// See [`GRAPHS_PER_MINUTE`].
pub const GRAPHS_PER_DAY: u32 = 5000;

pub(super) async fn vps_graph(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    a: Authed,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    a.require(Scope::Read)?;
    let q = GraphQuery::parse(query.as_deref())
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m))?;
    let req = request(&a.snapshot.inv, &a.customer, &vps, &q).ok_or_else(ApiError::not_found)?;
    app.quotas
        .take(
            a.customer.as_str(),
            "graph",
            GRAPHS_PER_MINUTE,
            GRAPHS_PER_DAY,
            Instant::now(),
            Utc::now(),
        )
        .map_err(ApiError::from)?;
    let Some(source) = app.cfg.graphs.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "graphs_unavailable",
            "usage graphs are not served here",
        ));
    };
    let drawn = tokio::task::spawn_blocking(move || source.vps_graph(&req, Utc::now())).await;
    match drawn {
        Ok(Ok(svg)) => Ok((
            [
                (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            svg,
        )
            .into_response()),
        Ok(Err(GraphFailure::OutOfBounds(m))) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m))
        }
        Ok(Err(GraphFailure::Unavailable(why))) => {
            tracing::warn!(vps = %vps, why, "graph not drawn");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "graphs_unavailable",
                "the usage samples cannot be read now; try again in a minute",
            ))
        }
        Err(e) => {
            tracing::error!(vps = %vps, error = %e, "graph drawing failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            ))
        }
    }
}
