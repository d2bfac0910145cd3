//! `PUT /api/vps/{id}/ptr`: the customer names one of its addresses in reverse DNS (the VPS
//! file's `[ptr]`), forward-confirmed first when `dns.forward_confirm` asks for it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use model::values::Hostname;
use serde::Deserialize;

use super::{ApiError, App, Authed, JsonBody, answer, parse_vps};
use crate::apikeys::Scope;
use crate::decide::{Change, Refusal, own_vps};
use crate::resolve::{ResolveError, confirms};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PtrReq {
    address: String,
    #[serde(default)]
    name: Option<String>,
}

/// The name asked for: `None` (null, empty) for the host name again; one trailing dot (the
/// zone-file spelling) is allowed.
fn parse_name(name: Option<&str>) -> Result<Option<Hostname>, ApiError> {
    let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    let bare = n.strip_suffix('.').unwrap_or(n);
    bare.parse::<Hostname>()
        .map(Some)
        .map_err(|e| ApiError::unprocessable("bad_ptr", e))
}

fn parse_address(address: &str) -> Result<IpAddr, ApiError> {
    address.trim().parse().map_err(|_| {
        ApiError::unprocessable(
            "bad_ptr",
            format!(
                "`{}` is not an IP address",
                address.chars().take(45).collect::<String>().escape_debug()
            ),
        )
    })
}

pub(super) async fn set_ptr(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<PtrReq>,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    a.require(Scope::Dns)?;
    app.quota(&a, "ptr")?;
    let address = parse_address(&req.address)?;
    let name = parse_name(req.name.as_deref())?;
    // Checked on the head the request was authenticated on before any lookup (and again by
    // `decide` on the head the commit is made on).
    let inv = &a.snapshot.inv;
    let v = own_vps(inv, &a.customer, &vps, false)?;
    if !v.owns(address) {
        return Err(Refusal::NotFound.into());
    }
    if let Some(n) = &name
        && inv.settings.dns.forward_confirm
        && v.ptr.get(&address) != Some(n)
    {
        let found = match app.resolver.addresses(n).await {
            Ok(found) => found,
            Err(ResolveError::NoAddress(_)) => Vec::new(),
            Err(e @ ResolveError::Timeout(_)) => {
                tracing::warn!(error = %e, "forward confirmation");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "dns_unavailable",
                    format!("{e}; try again in a minute"),
                ));
            }
        };
        confirms(n, address, &found)
            .map_err(|why| ApiError::unprocessable("ptr_not_confirmed", why))?;
    }
    let change = Change::Ptr {
        customer: a.customer,
        vps,
        address,
        name,
    };
    Ok(answer(app.store.apply_as(change, a.credential).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_hostnames_and_empty_means_the_default() {
        assert_eq!(parse_name(None).unwrap(), None);
        assert_eq!(parse_name(Some(" ")).unwrap(), None);
        assert_eq!(
            parse_name(Some("Mail.Example.net."))
                .unwrap()
                .unwrap()
                .as_str(),
            "mail.example.net"
        );
        for bad in [
            "mail_x.example.net",
            "-a.example.net",
            "a..b",
            "1.2.3.4",
            "a.example.net..",
        ] {
            let e = parse_name(Some(bad)).unwrap_err();
            assert_eq!((e.status.as_u16(), e.code), (422, "bad_ptr"), "{bad}");
        }
        let long = format!("{}.example.net", vec!["a".repeat(63); 4].join("."));
        assert!(long.len() > 253);
        let e = parse_name(Some(&long)).unwrap_err();
        assert!(e.message.contains("1 to 253 characters"), "{}", e.message);
        assert_eq!(
            parse_address(" 2001:db8::1 ").unwrap().to_string(),
            "2001:db8::1"
        );
        assert_eq!(parse_address("2001:db8::/64").unwrap_err().code, "bad_ptr");
    }
}
