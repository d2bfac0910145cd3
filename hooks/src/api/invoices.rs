//! Invoices: the customer's list (`GET /api/invoices`) and one invoice with its printable HTML
//! document (`GET /api/invoices/{number}`). Another customer's invoice is answered 404.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use billing::InvoiceNumber;
use model::values::{Keyword, Language, parse_keyword};
use serde_json::json;

use super::{ApiError, App, Authed};
use crate::apikeys::Scope;
use crate::invoices;

pub(super) async fn list_invoices(
    State(app): State<Arc<App>>,
    a: Authed,
) -> Result<Response, ApiError> {
    a.require(Scope::Billing)?;
    let customer = a.customer;
    let list = app
        .store
        .read(move |v| invoices::ledger_of(v.tree, &customer, None).summaries(None, false))
        .await?;
    Ok(axum::Json(json!({ "invoices": list })).into_response())
}

pub(super) async fn show_invoice(
    State(app): State<Arc<App>>,
    Path(number): Path<String>,
    RawQuery(query): RawQuery,
    a: Authed,
) -> Result<Response, ApiError> {
    let number: InvoiceNumber = number.parse().map_err(|_| ApiError::not_found())?;
    let lang = lang_of(query.as_deref())?;
    a.require(Scope::Billing)?;
    let customer = a.customer;
    let lang = lang.unwrap_or_else(|| {
        a.snapshot
            .inv
            .customers
            .get(&customer)
            .map_or(Language::En, |c| c.language)
    });
    let found = app
        .store
        .read(move |v| {
            let ledger = invoices::ledger_of(v.tree, &customer, Some(&number));
            let inv = ledger.invoices.get(&number)?;
            let paid = ledger.paid.get(&number);
            let html = invoices::templates(v.tree).and_then(|t| t.render(inv, paid, lang));
            let summary = ledger.summaries(None, false).into_iter().next();
            Some((summary, html))
        })
        .await?;
    let Some((summary, html)) = found else {
        return Err(ApiError::not_found());
    };
    let html = html.map_err(|e| {
        tracing::error!(error = %crate::error_chain(&e), "invoice document not rendered");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the invoice document cannot be made now; the operator has been told",
        )
    })?;
    Ok(axum::Json(json!({
        "invoice": summary,
        "lang": lang.as_str(),
        "html": html,
    }))
    .into_response())
}

/// The `lang` of the query (`en` or `zh`); any other parameter is refused.
fn lang_of(query: Option<&str>) -> Result<Option<Language>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", m);
    let mut lang = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("lang", v)) => {
                let l = parse_keyword::<Language>(v);
                lang = Some(l.map_err(|_| bad("`lang` is `en` or `zh`".into()))?);
            }
            _ => {
                let name = pair.split('=').next().unwrap_or_default();
                return Err(bad(format!(
                    "unknown query parameter `{}`: only `lang` (en or zh) is read",
                    name.chars().take(40).collect::<String>().escape_debug()
                )));
            }
        }
    }
    Ok(lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_a_language_or_nothing() {
        assert_eq!(lang_of(None), Ok(None));
        assert_eq!(lang_of(Some("")), Ok(None));
        assert_eq!(lang_of(Some("lang=zh")), Ok(Some(Language::Zh)));
        let e = lang_of(Some("lang=fr")).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "bad_query"));
        let e = lang_of(Some("debug=1")).unwrap_err();
        assert!(e.message.contains("`debug`"), "{}", e.message);
    }
}
