//! The demo's HTTP client, for the scripted click of `--check`: requests as the site's panel
//! makes them.

use super::*;

/// One HTTP/1.1 request to the demo server, as the site's panel makes it; returns the status
/// code and the body.
pub(super) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    use http_body_util::{BodyExt as _, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Full::new(bytes::Bytes::from(body.to_owned())))?;
    let resp = client.request(req).await?;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// Logs the demo customer in; returns its session token.
pub(super) async fn login(addr: SocketAddr) -> anyhow::Result<String> {
    let (code, body) = http(
        addr,
        "POST",
        "/api/login",
        None,
        &format!(r#"{{"customer":"{DEMO_CUSTOMER}","password":"{DEMO_PASSWORD}"}}"#),
    )
    .await?;
    ensure!(code == 200, "login: HTTP {code}: {body}");
    let token: serde_json::Value = serde_json::from_str(&body)?;
    Ok(token["token"]
        .as_str()
        .context("no token in the login answer")?
        .to_owned())
}
