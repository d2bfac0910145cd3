//! The headers every answer carries: a Content-Security-Policy, framing and sniffing refused,
//! no referrer; and CORS on the API for the configured site origin (`[site] url`) only.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, App};

/// The policy of the customer site's pages (scripts, styles and images of its own origin;
/// the catalog's JSON data blocks are not scripts), and of nothing else framing them.
pub const SITE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'self'; form-action 'self'; frame-ancestors 'none'";
/// The policy of the API's JSON answers: they load nothing and are never framed.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the security headers to every answer (the API's and the site's files).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/") || req.uri().path() == "/api";
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let csp = if api { API_CSP } else { SITE_CSP };
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The origin (`scheme://host[:port]`) of a URL, lower case, without a path.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    ))
}

/// Whether `origin` may call the API: the site's origin, or the origin the request was sent
/// to (the site served beside the API by `gitvps serve --site`).
fn allowed(origin: &str, site: Option<&str>, headers: &HeaderMap) -> bool {
    let origin = origin.to_ascii_lowercase();
    if site.is_some_and(|s| s == origin) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    host.is_some_and(|h| origin.split_once("://").is_some_and(|(_, a)| a == h))
}

/// CORS for the API: a browser request from another origin than the site's is refused (403
/// `forbidden_origin`, nothing done); the site's own gets `Access-Control-Allow-Origin`, and
/// its preflight the methods and headers the panel uses. Requests without `Origin` (Stripe,
/// curl, same-origin GETs) pass untouched.
pub async fn cors(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(req).await;
    };
    let site = match app.store.snapshot().await {
        Ok(s) => origin_of(&s.inv.settings.site.url),
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !allowed(&origin, site.as_deref(), req.headers()) {
        tracing::info!(origin = %origin.chars().take(100).collect::<String>(), "CORS: origin refused");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "this origin may not call the API",
        )
        .into_response();
    }
    let Ok(allow) = HeaderValue::from_str(&origin) else {
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", "bad origin")
            .into_response();
    };
    let preflight = req.method() == Method::OPTIONS;
    let mut resp = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority() {
        assert_eq!(
            origin_of("https://VPS.example.net/panel/"),
            Some("https://vps.example.net".into())
        );
        assert_eq!(
            origin_of("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080".into())
        );
        assert_eq!(origin_of("https://u:p@evil.example/"), None);
        assert_eq!(origin_of("nope"), None);
    }

    #[test]
    fn only_the_site_or_the_same_origin_is_allowed() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:4000"));
        let site = Some("https://vps.example.net");
        assert!(allowed("https://vps.example.net", site, &h));
        assert!(allowed("http://127.0.0.1:4000", site, &h));
        assert!(!allowed("https://evil.example", site, &h));
        assert!(!allowed("https://vps.example.net.evil.example", site, &h));
        assert!(!allowed("null", site, &h));
    }
}
