//! The OpenAPI document served at `/api/openapi.json` and the router describe the same routes:
//! every route of `api/mod.rs` is documented, and every documented operation is routed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// `(method, path)` of every `.route("/path", get(..).post(..))` in the router's source, with
/// the `/api` prefix it is nested under.
fn routed() -> BTreeSet<(String, String)> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/mod.rs"))
        .expect("the router's source");
    let mut out = BTreeSet::new();
    for chunk in src.split(".route(").skip(1) {
        let chunk = chunk.trim_start();
        let path = chunk
            .strip_prefix('"')
            .and_then(|c| c.split_once('"'))
            .map(|(p, _)| p)
            .expect("a route's path is a string literal");
        // The method routers up to the closing parenthesis of `.route(`.
        let mut depth = 1;
        let end = chunk
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("a closed .route(");
        let args = &chunk[..end];
        for m in METHODS {
            let called = args.match_indices(&format!("{m}(")).any(|(i, _)| {
                i == 0 || !args[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if called {
                out.insert((m.to_owned(), format!("/api{path}")));
            }
        }
    }
    assert!(out.len() > 10, "the parse found the routes: {out:?}");
    out
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_owned(), path.clone()));
            }
        }
    }
    out
}

/// Every `$ref` points into the document.
fn check_refs(doc: &Value, v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    let r = x.as_str().expect("a $ref is a string");
                    let ptr = r.strip_prefix('#').expect("a local $ref");
                    assert!(doc.pointer(ptr).is_some(), "{at}: dangling $ref {r}");
                } else {
                    check_refs(doc, x, &format!("{at}/{k}"));
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(doc, x, at)),
        _ => {}
    }
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_and_every_documented_route_answers() {
    let fleet = Fleet::new();
    let app = hooks::app(fleet.config()).unwrap();
    let (s, doc) = call(&app, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(s, 200, "{doc}");
    assert_eq!(doc["openapi"], "3.1.0");
    check_refs(&doc, &doc, "");

    let routed = routed();
    let documented = documented(&doc);
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");

    // The router agrees: an unrouted path is the fallback's 404, a documented one never is.
    let (s, _) = call(&app, "POST", "/api/no-such-route", None, None).await;
    assert_eq!(s, 404);
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        assert!(op["summary"].is_string(), "{method} {path}: a summary");
        assert!(op["responses"].is_object(), "{method} {path}: responses");
        let actions: Vec<String> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "action")
            .and_then(|p| p["schema"]["enum"].as_array())
            .map(|e| {
                e.iter()
                    .filter_map(|a| a.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec![String::new()]);
        for action in actions {
            let concrete = path
                .replace("{action}", &action)
                .replace("{id}", "x1")
                .replace("{number}", "INV-2026-000001");
            let (s, v) = call(&app, &method.to_uppercase(), &concrete, None, None).await;
            assert!(
                s != 404 && s != 405,
                "{method} {concrete} is documented but answers {s}: {v}"
            );
        }
    }
}
