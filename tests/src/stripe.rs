//! A stand-in for Stripe for the end-to-end tests of `gitvps serve`
//! (`GITVPS_STRIPE_API_URL`): `POST /v1/checkout/sessions` is recorded and answered with a
//! session whose payment page is served by the stand-in itself (`GET /c/pay/<id>`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The running stand-in: its base URL and the forms of the sessions asked for.
pub struct StripeStandIn {
    /// `http://127.0.0.1:PORT/`: what `GITVPS_STRIPE_API_URL` is set to.
    pub url: String,
    /// Each session's form fields, in order.
    pub sessions: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

impl StripeStandIn {
    /// Starts the stand-in on a free loopback port (a thread; it lives as long as the test).
    pub fn start() -> StripeStandIn {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", l.local_addr().unwrap());
        let sessions: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
        let (seen, base) = (sessions.clone(), url.clone());
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let _ = answer(s, &base, &seen);
            }
        });
        StripeStandIn { url, sessions }
    }

    /// The payment page of a session of the stand-in starts with this.
    pub fn pay_url(&self) -> String {
        format!("{}c/pay/", self.url)
    }
}

fn answer(
    s: TcpStream,
    base: &str,
    seen: &Mutex<Vec<BTreeMap<String, String>>>,
) -> std::io::Result<()> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    let mut w = s;
    let (status, kind, text) = if line.starts_with("POST /v1/checkout/sessions") {
        let form: BTreeMap<String, String> = String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (decode(k), decode(v)))
            .collect();
        let n = {
            let mut all = seen.lock().unwrap();
            all.push(form);
            all.len()
        };
        let id = format!("cs_test_standin_{n}");
        let session = serde_json::json!({
            "id": id, "object": "checkout.session",
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "created": 1777636800, "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "expires_at": 1777723200, "livemode": false, "mode": "payment",
            "payment_method_types": ["card"], "payment_status": "unpaid",
            "shipping_options": [], "status": "open",
            "url": format!("{base}c/pay/{id}")
        });
        ("200 OK", "application/json", session.to_string())
    } else if line.starts_with("GET /c/pay/") {
        (
            "200 OK",
            "text/html; charset=utf-8",
            "<!doctype html><html lang=\"en\"><head><title>Stripe stand-in</title></head><body><h1>Stripe stand-in checkout</h1></body></html>".to_owned(),
        )
    } else {
        ("404 Not Found", "text/plain", "not found".to_owned())
    };
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    w.flush()
}

/// Decodes one `application/x-www-form-urlencoded` part.
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap_or(b'?'));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
