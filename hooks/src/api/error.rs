//! The errors the API answers: `{"error": code, "message": text}` with a status, and how the
//! refusals of `decide` and the failures of the store map onto them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::decide::{PlaceRefusal, Refusal};
use crate::store::{ApplyError, StoreError};

/// An error answered as `{"error": code, "message": text}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code.
    pub code: &'static str,
    /// A sentence for people; never holds a secret.
    pub message: String,
    /// Seconds to wait before trying again (`Retry-After`, with 429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 429 with `Retry-After`.
    pub(super) fn too_many(code: &'static str, message: impl Into<String>, secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(secs.max(1)),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message)
        }
    }

    pub(super) fn not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    pub(super) fn unauthorized(message: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub(super) fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        match r {
            Refusal::NotFound => ApiError::not_found(),
            Refusal::Suspended(_) => {
                ApiError::new(StatusCode::CONFLICT, "suspended", r.to_string())
            }
            Refusal::Catalog(e) => ApiError::unprocessable("not_in_catalog", e.to_string()),
            Refusal::TooManyKeys => ApiError::unprocessable("too_many_keys", r.to_string()),
            Refusal::TicketTooLong => ApiError::unprocessable("bad_ticket", r.to_string()),
            Refusal::TooManyApiKeys => ApiError::unprocessable("too_many_keys", r.to_string()),
            Refusal::TwoFactorEnabled => {
                ApiError::new(StatusCode::CONFLICT, "twofactor_enabled", r.to_string())
            }
            Refusal::Invalid => ApiError::unprocessable("invalid_change", r.to_string()),
            Refusal::Unauthorized => {
                ApiError::unauthorized("the session is invalid or has expired; log in again")
            }
            Refusal::BackupsNotConfigured => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "backups_not_configured",
                r.to_string(),
            ),
            Refusal::UnknownBackup(_) => ApiError::unprocessable("unknown_backup", r.to_string()),
            Refusal::Snapshot {
                code: code @ "snapshot_exists",
                ..
            } => ApiError::new(StatusCode::CONFLICT, code, r.to_string()),
            Refusal::Snapshot { code, .. } => ApiError::unprocessable(code, r.to_string()),
            Refusal::NoIsoBoot(_) => {
                ApiError::new(StatusCode::CONFLICT, "iso_unsupported", r.to_string())
            }
            Refusal::NoRescue(_) => {
                ApiError::new(StatusCode::CONFLICT, "rescue_unsupported", r.to_string())
            }
            Refusal::NoCloudImage(_) => ApiError::new(
                StatusCode::CONFLICT,
                "cloud_image_unsupported",
                r.to_string(),
            ),
            Refusal::UnknownIso(_) => ApiError::unprocessable("not_in_catalog", r.to_string()),
            Refusal::ResetInvalid => ApiError::unprocessable("reset_invalid", r.to_string()),
            Refusal::Broken(why) => {
                tracing::error!(%why, "a repo file cannot be edited");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "repo_broken",
                    "the inventory repo needs an admin's attention",
                )
            }
        }
    }
}

impl From<crate::throttle::Throttled> for ApiError {
    fn from(t: crate::throttle::Throttled) -> ApiError {
        use crate::throttle::Throttled;
        let code = match t {
            Throttled::Backoff(_) => "too_many_attempts",
            Throttled::InFlight | Throttled::Busy(_) => "busy",
            Throttled::Rate(_) | Throttled::Daily(_) => "rate_limited",
        };
        ApiError::too_many(code, t.to_string(), t.retry_after())
    }
}

impl From<PlaceRefusal> for ApiError {
    fn from(r: PlaceRefusal) -> ApiError {
        match r {
            PlaceRefusal::UnknownLocation(_) => {
                ApiError::unprocessable("unknown_location", r.to_string())
            }
            PlaceRefusal::NoCapacity(_) => {
                ApiError::new(StatusCode::CONFLICT, "no_capacity", r.to_string())
            }
            PlaceRefusal::BadOrder(_) => ApiError::unprocessable("bad_order", r.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        // Details (already logged by the store, without credentials) stay out of the answer.
        match e {
            StoreError::Busy(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many changes at once; try again",
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "repo_unavailable",
                "the inventory repo is unavailable; try again later",
            ),
        }
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> ApiError {
        match e {
            ApplyError::Refused(r) => r.into(),
            ApplyError::Store(s) => s.into(),
        }
    }
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found()
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed",
    )
}
