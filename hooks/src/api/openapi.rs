//! `GET /api/openapi.json`: the OpenAPI 3.1 document of every route, kept by hand next to the
//! router (`hooks/openapi.json`); a test holds the two together in both directions.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as written in the crate.
pub(super) const DOCUMENT: &str = include_str!("../../openapi.json");

/// Serves the document (public: it says nothing the README does not).
pub(super) async fn document() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        DOCUMENT,
    )
        .into_response()
}
