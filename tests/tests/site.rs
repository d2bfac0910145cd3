//! The customer site in headless Chromium: `gitvps site build` with the real zola, served
//! with the hooks by `gitvps serve --site`, driven over WebDriver (chromedriver).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gitvps_tests as support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use support::{git, top};

/// A work tree with the example fleet (and the site project), committed on `main`.
fn fleet(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    for d in ["inventory", "bootstraps", "site"] {
        support::copy_tree(&top().join(d), &work.join(d));
    }
    let _ = std::fs::remove_dir_all(work.join("site/public"));
    for f in ["products.toml", "pools.toml", "gitvps.toml"] {
        std::fs::copy(top().join(f), work.join(f)).unwrap();
    }
    // A backup repository, so that the panel's restore is accepted.
    let mut settings = std::fs::read_to_string(work.join("gitvps.toml")).unwrap();
    settings.push_str("\n[backup.local]\npath = \"/mnt/backup/restic\"\n");
    // An ISO library, and node0109 (xen02's, customer c-0001's) a KVM node, so the panel
    // offers boot media.
    settings.push_str(&format!(
        "\n[[iso]]\nid = \"debian-12-netinst\"\nname = \"Debian 12 netinst\"\n\
         url = \"https://cdimage.example.net/debian-12.iso\"\nsha256 = \"{}\"\nsize = \"650 MiB\"\n",
        "cd".repeat(32)
    ));
    std::fs::write(work.join("gitvps.toml"), settings).unwrap();
    let node = work.join("inventory/nodes/node0109.toml");
    let text = std::fs::read_to_string(&node).unwrap();
    assert!(text.contains("hypervisor = \"xen\""));
    std::fs::write(
        &node,
        text.replace("hypervisor = \"xen\"", "hypervisor = \"kvm\""),
    )
    .unwrap();
    support::commit_all(&work);
    work
}

fn gitvps(repo: &Path, args: &[&str]) -> std::process::Output {
    Command::new(gitvps_tests::bin())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .current_dir(top())
        .output()
        .unwrap()
}

/// Kills a child process when dropped (a failed assertion leaves no server behind).
struct Reaper(Child);
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver; the answer is read by its Content-Length
/// (chromedriver keeps the connection open).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().unwrap();
        }
    }
    let mut buf = vec![0; len];
    r.read_exact(&mut buf).unwrap();
    serde_json::from_slice(&buf).unwrap_or(Value::Null)
}

/// A WebDriver session on headless Chromium.
struct Browser {
    port: u16,
    session: String,
    _driver: Reaper,
    _profile: tempfile::TempDir,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver; scripts/test does)");
        let driver = Reaper(driver);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "no chromedriver"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--lang=en-US",
            "--window-size=1200,900",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let v = http(
            port,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args,
                                       "prefs": {"intl.accept_languages": "en-US,en"}}
            }}})),
        );
        assert!(v["value"]["sessionId"].is_string(), "no session: {v}");
        let session = v["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser {
            port,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let v = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        assert!(
            v["value"].get("error").is_none(),
            "{method} {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Waits until `expr` (a JavaScript expression) is truthy; returns its value.
    fn wait(&self, expr: &str) -> Value {
        let started = Instant::now();
        loop {
            let v = self.js(&format!(
                "try {{ return ({expr}) || null; }} catch (e) {{ return null; }}"
            ));
            if !v.is_null() && v != json!(false) {
                return v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "timed out waiting for {expr}; page text: {}",
                self.text("body")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the element `id` shows an error; returns its text.
    fn error_in(&self, id: &str) -> String {
        let e = format!("document.getElementById('{id}')");
        let v = self.wait(&format!(
            "{e}.className.indexOf('error') >= 0 && {e}.innerText"
        ));
        v.as_str().unwrap_or_default().to_owned()
    }

    /// The page printed to PDF on paper of `width` × `height` cm.
    fn print_pdf(&self, width: f64, height: f64) -> Vec<u8> {
        let pdf = self.cmd(
            "POST",
            "/print",
            Some(json!({"page": {"width": width, "height": height}, "background": true})),
        );
        base64_decode(pdf.as_str().unwrap())
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_in(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Presses keys (WebDriver key codes) on whatever has the focus.
    fn keys(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    fn text(&self, css: &str) -> String {
        let v = self.js(&format!(
            "var e = document.querySelector({}); return e ? e.innerText : '';",
            Value::String(css.into())
        ));
        v.as_str().unwrap_or_default().to_owned()
    }

    fn screenshot(&self, name: &str) {
        let png = self.cmd("GET", "/screenshot", None);
        let bytes = base64_decode(png.as_str().unwrap());
        let dir = top().join("target/site-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Accessibility basics of the page: `lang`, one `h1`, a label for every form control,
    /// WCAG AA text contrast; returns the problems found.
    fn a11y_problems(&self) -> Vec<String> {
        let v = self.js(A11Y_SCRIPT);
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

const A11Y_SCRIPT: &str = r#"
var out = [];
if (!document.documentElement.lang) { out.push("no lang on <html>"); }
if (document.querySelectorAll("h1").length !== 1) { out.push("not exactly one h1"); }
document.querySelectorAll("input, select, textarea, button").forEach(function (e) {
  if (e.type === "hidden" || e.offsetParent === null) { return; }
  var named = (e.id && document.querySelector('label[for="' + e.id + '"]')) || e.getAttribute("aria-label")
    || e.getAttribute("aria-labelledby") || (e.tagName === "BUTTON" && e.textContent.trim());
  if (!named) { out.push("no label: " + e.outerHTML.slice(0, 80)); }
});
function rgb(s) { var m = s.match(/[\d.]+/g) || [0, 0, 0, 0]; return m.map(Number); }
function lum(c) {
  var a = c.slice(0, 3).map(function (v) { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2];
}
function bg(e) {
  for (; e; e = e.parentElement) {
    var c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length < 4 || c[3] > 0) { return c; }
  }
  return [255, 255, 255];
}
var seen = 0;
document.querySelectorAll("body *").forEach(function (e) {
  if (e.offsetParent === null && e.tagName !== "BODY") { return; }
  var own = Array.prototype.some.call(e.childNodes, function (n) { return n.nodeType === 3 && n.textContent.trim(); });
  if (!own) { return; }
  seen++;
  var st = getComputedStyle(e);
  var l1 = lum(rgb(st.color)), l2 = lum(bg(e));
  var ratio = (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
  var large = parseFloat(st.fontSize) >= 24 || (parseFloat(st.fontSize) >= 18.5 && Number(st.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) { out.push("contrast " + ratio.toFixed(2) + ": " + e.tagName + " " + e.textContent.trim().slice(0, 40)); }
});
if (!seen) { out.push("no text found"); }
return out;
"#;

/// A4 and Letter, in centimetres.
const PAPERS: [(&str, f64, f64); 2] = [("A4", 21.0, 29.7), ("Letter", 21.59, 27.94)];

/// The pages of a PDF as Chromium writes it: its page objects (`/Type /Page`, not `/Pages`).
fn pdf_pages(pdf: &[u8]) -> usize {
    let text = String::from_utf8_lossy(pdf);
    text.match_indices("/Type /Page")
        .filter(|(at, m)| !text[at + m.len()..].starts_with('s'))
        .count()
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let val = |c: u8| {
        let pos = ALPHABET.iter().position(|a| *a == c);
        assert!(pos.is_some(), "not base64: {c}");
        pos.unwrap() as u8
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGk="), b"hi");
    assert_eq!(base64_decode("YWJj"), b"abc");
}

#[test]
fn malformed_data_fails_the_build_and_keeps_the_old_site() {
    let tmp = tempfile::tempdir().unwrap();
    let work = fleet(tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("old.html"), "old").unwrap();
    let products = std::fs::read_to_string(work.join("products.toml")).unwrap();
    std::fs::write(
        work.join("products.toml"),
        products.replace("price = \"59.00\"", "price = 59.5"),
    )
    .unwrap();
    let r = gitvps(&work, &["site", "build", "--out", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("products.toml:"), "{err}");
    assert!(err.contains("price"), "{err}");
    assert!(err.contains("the site was not built"), "{err}");
    assert_eq!(
        std::fs::read_to_string(out.join("old.html")).unwrap(),
        "old"
    );
    assert!(!out.join("index.html").exists());
}

#[test]
fn catalog_and_panel_in_headless_chromium() {
    let tmp = tempfile::tempdir().unwrap();
    let work = fleet(tmp.path());
    let site = tmp.path().join("built");
    let t0 = Instant::now();
    let r = gitvps(&work, &["site", "build", "--out", site.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    eprintln!("site build: {:?}", t0.elapsed());
    assert!(site.join("index.html").is_file());
    assert!(site.join("zh/panel/index.html").is_file());
    assert!(
        !work.join("site/data").exists(),
        "the project folder is not written to"
    );
    // Self-contained and prefix-free: no absolute link, no other host, in any page or script.
    let mut files = vec![site.clone()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if !p
            .extension()
            .is_some_and(|x| x == "html" || x == "js" || x == "css")
        {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for bad in [
            "href=\"/", "src=\"/", "http://", "https://", "url(", "@import",
        ] {
            assert!(!text.contains(bad), "{}: {bad}", p.display());
        }
    }

    // A billing run a month before xen02's expiry issues c-0001 its renewal invoice (the mail
    // waits in the outbox: no SMTP server here, so the run exits 1).
    let r = gitvps(
        &work,
        &["billing", "run", "--today", "2011-05-10", "--no-push"],
    );
    assert!(
        work.join("billing/invoices/INV-2011-000001.toml").is_file(),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    let served = support::Served::start(&work, tmp.path(), Some(&site));
    let addr = served.addr.clone();
    let bare = served.bare.clone();
    let base = format!("http://{addr}");

    let b = Browser::start();
    // Public pages: the seed's products and prices, private products hidden.
    b.goto(&format!("{base}/"));
    b.wait("document.querySelector('.hero h1')");
    assert!(b.text(".from").contains("59.00 USD"), "{}", b.text(".from"));
    b.screenshot("home");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "home");

    b.goto(&format!("{base}/products/"));
    let products = b.text("main");
    assert!(products.contains("Advanced VPS"), "{products}");
    assert!(products.contains("59.00 USD"), "{products}");
    assert!(products.contains("149.00 USD"), "{products}");
    assert!(products.contains("768 MiB"), "{products}");
    assert!(
        !products.contains("Test VPS"),
        "private products are hidden"
    );
    b.screenshot("products");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "products");

    b.goto(&format!("{base}/locations/"));
    let locations = b.text("main");
    for l in [
        "Tampa, Florida (USA)",
        "Seattle, WA (USA)",
        "Shanghai, China",
    ] {
        assert!(locations.contains(l), "{locations}");
    }
    b.screenshot("locations");
    b.goto(&format!("{base}/os/"));
    let os = b.text("main");
    assert!(os.contains("Debian 12 (bookworm)"), "{os}");
    assert!(os.contains("OpenVPN server"), "{os}");
    b.screenshot("os");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "os");

    // Keyboard: the first Tab reaches the skip link.
    b.keys("\u{E004}");
    assert_eq!(
        b.js("return document.activeElement.className"),
        json!("skip")
    );

    // Order: without Stripe configured the page says so and keeps what was typed.
    b.goto(&format!("{base}/order/?product=advanced"));
    b.wait("document.getElementById('order-form')");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "order");
    b.type_in("#order-name", "New Person");
    b.type_in("#order-email", "new@example.net");
    b.type_in("#order-password", "a-long-password");
    b.click("#order-form button[type=submit]");
    let msg = b.wait(
        "document.getElementById('order-message').className.indexOf('error') >= 0 && document.getElementById('order-message').innerText",
    );
    assert!(
        msg.as_str()
            .unwrap()
            .contains("Online payment is not available"),
        "{msg}"
    );
    assert_eq!(
        b.js("return document.getElementById('order-name').value"),
        json!("New Person")
    );
    b.screenshot("order-error");

    // Panel: a wrong password shows an error in words.
    b.goto(&format!("{base}/panel/"));
    b.wait("!document.getElementById('login').hidden");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "login");
    b.type_in("#login-customer", "c-0001");
    b.type_in("#login-password", "wrong");
    b.click("#login-submit");
    let msg = b.wait(
        "document.getElementById('login-message').className.indexOf('error') >= 0 && document.getElementById('login-message').innerText",
    );
    assert!(
        msg.as_str()
            .unwrap()
            .contains("Wrong customer id, e-mail or password"),
        "{msg}"
    );
    assert_eq!(
        b.js("return document.getElementById('login-customer').value"),
        json!("c-0001")
    );
    b.screenshot("login-error");

    // Log in with the keyboard only: type the password and press Enter.
    b.js("document.getElementById('login-password').value = ''; document.getElementById('login-password').focus();");
    b.keys("demo-jane\u{E007}");
    b.wait("!document.getElementById('account').hidden && document.getElementById('vps-table')");
    let list = b.text("#vps-list");
    assert!(list.contains("xen02"), "{list}");
    for other in ["xen01", "xen03", "xen04"] {
        assert!(!list.contains(other), "{other} is not c-0001's: {list}");
    }
    let detail = b.text("#vps-detail");
    assert!(detail.contains("2009-02-21"), "{detail}");
    assert!(detail.contains("149.00 USD"), "{detail}");
    assert!(detail.contains("erases the whole disk"), "{detail}");
    // The catalog's traffic blocks, priced with Jane's tax; no collector has run yet.
    assert!(detail.contains("Buy more traffic"), "{detail}");
    assert!(detail.contains("Buy 100 GiB for 23.80 USD"), "{detail}");
    assert!(detail.contains("Service checks"), "{detail}");
    assert!(detail.contains("Not collected yet"), "{detail}");
    b.screenshot("panel");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "panel");

    // Reboot, confirmed: accepted, and a commit lands in the repo.
    b.click("button[data-action=reboot]");
    b.wait("document.getElementById('confirm-yes') === document.activeElement");
    b.screenshot("panel-confirm");
    b.click("#confirm-yes");
    let msg = b.wait(
        "document.getElementById('msg-actions') && document.getElementById('msg-actions').className.indexOf('ok') >= 0 && document.getElementById('msg-actions').innerText",
    );
    let msg = msg.as_str().unwrap();
    assert!(msg.contains("Accepted: reboot xen02"), "{msg}");
    assert!(msg.contains("next apply"), "{msg}");
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%an: %s", "main"]).trim(),
        "gitvps-bot: c-0001: reboot xen02 (site)"
    );
    b.screenshot("panel-accepted");

    // Invoices: the list, and `?invoice=` (the mails' link) opens one, printable alone.
    b.wait("document.getElementById('invoice-table')");
    let list = b.text("#invoice-list");
    assert!(list.contains("INV-2011-000001"), "{list}");
    assert!(
        list.contains("70.21 USD") && list.contains("Unpaid"),
        "{list}"
    );
    b.goto(&format!("{base}/panel/?invoice=INV-2011-000001"));
    let doc = b.wait(
        "!document.getElementById('invoice-view').hidden && document.getElementById('invoice-doc').shadowRoot.textContent",
    );
    let doc = doc.as_str().unwrap();
    for want in [
        "INV-2011-000001",
        "GPLHost LLC",
        "Jane Doe",
        "Doe Consulting",
        "2011-05-10",
        "Tax 19",
        "70.21 USD",
        "Unpaid",
    ] {
        assert!(doc.contains(want), "{want} not in the invoice: {doc}");
    }
    // Its own style sheet applies (in the shadow root, under the site's strict CSP).
    assert_eq!(
        b.js("var a = document.getElementById('invoice-doc').shadowRoot.querySelector('article.invoice'); return getComputedStyle(a.querySelector('h1')).fontSize;"),
        json!("26.6667px"),
        "20pt from invoice.css"
    );
    assert_eq!(
        b.js("return document.activeElement.id"),
        json!("invoice-view-title")
    );
    b.screenshot("panel-invoice");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "invoice");
    // Printed, the panel gives the invoice alone: one page on A4 and on Letter.
    for (paper, width, height) in PAPERS {
        let pdf = b.print_pdf(width, height);
        assert!(pdf.starts_with(b"%PDF"), "{paper}");
        assert_eq!(
            pdf_pages(&pdf),
            1,
            "{paper}: the invoice prints on one page"
        );
        std::fs::write(
            top().join(format!("target/site-screenshots/invoice-{paper}.pdf")),
            &pdf,
        )
        .unwrap();
    }
    // Another customer's invoice, or none: said in words, nothing shown.
    b.click("#invoice-close");
    b.wait("document.getElementById('invoice-view').hidden && location.search === ''");
    b.goto(&format!("{base}/panel/?invoice=INV-2011-000002"));
    let msg = b.error_in("panel-notice");
    assert!(
        msg.contains("INV-2011-000002 is not in your account"),
        "{msg}"
    );
    assert_eq!(
        b.js("return document.getElementById('invoice-view').hidden"),
        json!(true)
    );

    // `?vps=` (the renewal link of mails) shows that VPS with its renew button focused.
    b.goto(&format!("{base}/panel/?vps=xen02"));
    let focused = b.wait(
        "document.activeElement && document.activeElement.closest('#contract') && document.activeElement.getAttribute('data-renew')",
    );
    assert!(
        focused.as_str().unwrap().starts_with("advanced"),
        "a renewal of xen02's plan: {focused}"
    );
    assert_eq!(
        b.js("var r = document.querySelector('#vps-table tr.highlight'); return r && r.getAttribute('data-vps');"),
        json!("xen02")
    );
    assert_eq!(
        b.js("return document.getElementById('contract').classList.contains('highlight')"),
        json!(true)
    );
    b.screenshot("panel-vps");
    b.goto(&format!("{base}/panel/?vps=xen01"));
    let msg = b.error_in("panel-notice");
    assert!(msg.contains("xen01 is not in your account"), "{msg}");

    reverse_dns_in_the_panel(&b, &base, &bare);
    restore_in_the_panel(&b, &base, &bare);
    boot_media_in_the_panel(&b, &base, &bare);
    rescue_in_the_panel(&b, &base, &bare);

    // Simplified Chinese: the same panel, the session kept.
    b.click("a.lang");
    // The invoice list comes with a request of its own: wait for it too, not only the VPS.
    b.wait("document.documentElement.lang === 'zh-Hans' && !document.getElementById('account').hidden && document.getElementById('vps-detail').innerText && document.getElementById('invoice-table')");
    let zh = b.text("main");
    assert!(zh.contains("客户面板"), "{zh}");
    assert!(zh.contains("重启"), "{zh}");
    assert!(zh.contains("发票") && zh.contains("未付款"), "{zh}");
    assert!(zh.contains("两步登录") && zh.contains("修改密码"), "{zh}");
    assert!(zh.contains("反向 DNS") && zh.contains("（主机名）"), "{zh}");
    b.screenshot("panel-zh");
    b.goto(&format!("{base}/zh/products/"));
    assert!(b.text("main").contains("续费选项"));
    b.screenshot("products-zh");

    account_in_the_panel(&b, &base, &bare, &served.maildir);

    // The hooks down: the panel says so in words and keeps the input.
    b.goto(&format!("{base}/panel/"));
    b.wait("document.getElementById('ssh-keys')");
    b.js("document.getElementById('ssh-keys').value += '\\nssh-ed25519 AAAA typed@here';");
    drop(served);
    b.click("#ssh-save");
    let msg = b.wait(
        "document.getElementById('msg-ssh').className.indexOf('error') >= 0 && document.getElementById('msg-ssh').innerText",
    );
    assert!(msg.as_str().unwrap().contains("cannot be reached"), "{msg}");
    assert!(
        b.js("return document.getElementById('ssh-keys').value")
            .as_str()
            .unwrap()
            .contains("typed@here")
    );
    b.screenshot("panel-hooks-down");

    // The document `gitvps invoice show --html` prints (its own @page and style, no panel):
    // one page on A4 and on Letter, in English and in Chinese.
    for lang in ["en", "zh"] {
        let r = gitvps(
            &work,
            &[
                "invoice",
                "show",
                "INV-2011-000001",
                "--html",
                "--lang",
                lang,
            ],
        );
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let file = tmp.path().join(format!("invoice-{lang}.html"));
        std::fs::write(&file, &r.stdout).unwrap();
        b.goto(&format!("file://{}", file.display()));
        b.wait("document.querySelector('article.invoice')");
        for (paper, width, height) in PAPERS {
            assert_eq!(pdf_pages(&b.print_pdf(width, height)), 1, "{lang} {paper}");
        }
        b.screenshot(&format!("invoice-{lang}"));
    }
}

/// Samples of the last three hours in a monitor database: xen02 (c-0001's) busy, xen01 (the
/// other VPS of its node, c-0003's) quieter.
fn sample_store(path: &Path) {
    let store = executor::samples::Store::open(path).unwrap();
    let now = chrono::Utc::now();
    for (vps, rate) in [("xen02", 900u64), ("xen01", 100)] {
        let id: model::VpsId = vps.parse().unwrap();
        for k in 0..=180u64 {
            let at = now - chrono::Duration::minutes(180 - k as i64);
            let sample = monitor::Sample {
                at,
                incarnation: monitor::Incarnation {
                    domain_id: Some(7),
                    started: None,
                },
                counters: monitor::Counters {
                    cpu_ms: k * rate * 30,
                    net_rx_bytes: k * rate * 1000,
                    net_tx_bytes: k * rate * 300,
                    disk_read_bytes: k * rate * 100,
                    disk_write_bytes: k * rate * 500,
                    ..monitor::Counters::default()
                },
            };
            store
                .record_vps(&id, sample, now, &monitor::Limits::default())
                .unwrap();
        }
    }
    store.flush().unwrap();
}

/// The panel's usage graphs: `gitvps serve --monitor-db` draws them from the collector's
/// database, the panel shows each as an SVG image with a day/week/month/year switch, in
/// English and Chinese; another customer's VPS is 404, a range out of bounds 400. The same
/// panel shows the service checks the collector published, and its traffic block button
/// reaches the payment page of a Stripe stand-in.
#[test]
fn usage_graphs_in_the_panel() {
    let tmp = tempfile::tempdir().unwrap();
    let work = fleet(tmp.path());
    let site = tmp.path().join("built");
    let r = gitvps(&work, &["site", "build", "--out", site.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let db = tmp.path().join("monitor-db");
    sample_store(&db);
    let stripe = support::stripe::StripeStandIn::start();
    let served = support::Served::start_env(
        &work,
        tmp.path(),
        Some(&site),
        &["--monitor-db".as_ref(), db.as_os_str()],
        &[
            ("STRIPE_SECRET_KEY", "sk_test_standin_key"),
            ("GITVPS_STRIPE_API_URL", &stripe.url),
        ],
    );
    // The collector's last view of xen02 (its `[monitor] checks = ["ping", "ssh", "http"]`).
    publish_monitor(&served.bare, "xen02", &xen02_checks());
    let base = format!("http://{}", served.addr);
    let b = Browser::start();
    b.goto(&format!("{base}/panel/"));
    b.wait("!document.getElementById('login').hidden");
    panel_login(&b, "c-0001", "demo-jane");
    // Four graphs of the day, each an SVG image that the browser drew.
    let loaded = "var i = document.querySelectorAll('#graphs img.graph'); \
                  return i.length === 4 && Array.prototype.every.call(i, function (x) { \
                    return x.getAttribute('data-range') === RANGE && x.complete && x.naturalWidth > 0 \
                      && (x.getAttribute('src') || '').indexOf('data:image/svg+xml') === 0; });";
    b.wait(&format!(
        "(function () {{ {} }})()",
        loaded.replace("RANGE", "'day'")
    ));
    let svg = |metric: &str| -> String {
        let src = b.js(&format!(
            "return document.querySelector('#graphs img[data-metric={metric}]').getAttribute('src')"
        ));
        let src = src.as_str().unwrap();
        let enc = src.split_once(',').unwrap().1;
        b.js(&format!("return decodeURIComponent({})", json!(enc)))
            .as_str()
            .unwrap()
            .to_owned()
    };
    let cpu = svg("cpu");
    assert!(cpu.starts_with("<svg"), "{cpu}");
    assert!(cpu.contains(">CPU (% of one vCPU)</text>"), "{cpu}");
    assert!(cpu.contains(">time (UTC)</text>"), "{cpu}");
    // Three hours of samples: a line, not the empty-range text.
    assert!(
        cpu.contains(r#"<path class="series" data-series="used" d="M"#),
        "{cpu}"
    );
    assert!(!cpu.contains("No samples"), "{cpu}");
    let compare = svg("compare");
    assert!(
        compare.contains(">100th percentile of 2</text>"),
        "{compare}"
    );
    assert!(
        !compare.contains("xen01") && !compare.contains("c-0003"),
        "{compare}"
    );
    assert_eq!(
        b.js("return document.querySelector('#monitoring button[data-range=day]').getAttribute('aria-pressed')"),
        json!("true")
    );
    b.screenshot("panel-graphs");
    checks_table(&b, &EN_CHECKS);
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "graphs");
    // The month: the same VPS, from the hourly tier.
    b.click("#monitoring button[data-range=month]");
    b.wait(&format!(
        "(function () {{ {} }})()",
        loaded.replace("RANGE", "'month'")
    ));
    assert!(svg("network").contains(r#"data-span="month""#));

    // Straight to the route with the customer's token: their own graph, another customer's
    // VPS (on the same node), a range and a resolution out of bounds.
    let token = b.js("return sessionStorage.getItem('gitvps-token')");
    let token = token.as_str().unwrap();
    let status = |path: &str| xhr(&b, "GET", path, Some(token), None);
    assert_eq!(status("/api/vps/xen02/graph?metric=disk&range=week").0, 200);
    let (code, body) = status("/api/vps/xen01/graph?metric=cpu&range=day");
    assert_eq!((code, &body["error"]), (404, &json!("not_found")), "{body}");
    assert_eq!(status("/api/vps/xen01/graph?metric=compare").0, 404);
    let (code, body) = status("/api/vps/xen02/graph?range=decade");
    assert_eq!((code, &body["error"]), (400, &json!("bad_query")), "{body}");
    let (code, body) = status("/api/vps/xen02/graph?range=month&points=5000");
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("12 to 720 points"),
        "{body}"
    );
    assert_eq!(xhr(&b, "GET", "/api/vps/xen02/graph", None, None).0, 401);

    // Chinese: the same graphs with Chinese labels.
    b.click("a.lang");
    b.wait(
        "document.documentElement.lang === 'zh-Hans' && !document.getElementById('account').hidden",
    );
    b.wait(&format!(
        "(function () {{ {} }})()",
        loaded.replace("RANGE", "'day'")
    ));
    let zh = svg("network");
    assert!(zh.contains(">网络（比特/秒）</text>"), "{zh}");
    assert!(zh.contains(">时间（UTC）</text>"), "{zh}");
    assert!(b.text("#monitoring").contains("时间为 UTC"));
    b.screenshot("panel-graphs-zh");
    checks_table(&b, &ZH_CHECKS);

    // A traffic block: the button of the catalog's block, and its click goes to the payment
    // page of the session the hooks asked the Stripe stand-in for.
    let button = "#traffic button[data-traffic=traffic-100g]";
    b.wait(&format!("document.querySelector('{button}')"));
    assert!(b.text(button).contains("100 GiB"), "{}", b.text(button));
    b.click(button);
    let at = b.wait(&format!(
        "location.href.indexOf({}) === 0 && document.readyState === 'complete' && location.href",
        json!(stripe.pay_url())
    ));
    assert!(at.as_str().unwrap().contains("cs_test_standin_1"), "{at}");
    assert_eq!(b.text("h1"), "Stripe stand-in checkout");
    let sessions = stripe.sessions.lock().unwrap();
    assert_eq!(sessions.len(), 1);
    let form = &sessions[0];
    assert_eq!(form["metadata[kind]"], "traffic_block", "{form:?}");
    assert_eq!(form["metadata[vps]"], "xen02", "{form:?}");
    assert_eq!(form["metadata[product]"], "traffic-100g", "{form:?}");
}

/// The panel's words of the service checks table: title, headings, up, down.
struct CheckWords {
    title: &'static str,
    headings: [&'static str; 4],
    up: &'static str,
    down: &'static str,
}

const EN_CHECKS: CheckWords = CheckWords {
    title: "Service checks",
    headings: ["Check", "State", "Since (UTC)", "Last answer"],
    up: "up",
    down: "down",
};

const ZH_CHECKS: CheckWords = CheckWords {
    title: "服务检查",
    headings: ["检查", "状态", "起始时间（UTC）", "最后应答"],
    up: "正常",
    down: "故障",
};

/// What the collector published for xen02: ping and ssh up, http down.
fn xen02_checks() -> Value {
    json!({
        "vps": "xen02",
        "collected_at": "2026-12-06T10:00:00Z",
        "counters": null,
        "checks": [
            {"name": "ping 192.0.2.22", "kind": "ping", "state": "up",
             "since": "2026-12-01T08:00:00Z", "failures": 0, "detail": "0.4 ms"},
            {"name": "ssh 192.0.2.22:22", "kind": "ssh", "state": "up",
             "since": "2026-12-01T08:00:00Z", "failures": 0, "detail": "SSH-2.0-OpenSSH_9.2p1"},
            {"name": "http 192.0.2.22:80", "kind": "http", "state": "down",
             "since": "2026-12-06T09:57:00Z", "failures": 3, "detail": "connection refused"}
        ]
    })
}

/// The service checks table of the VPS shown: its title and headings in the page's language,
/// each published check in a row with its state in words.
fn checks_table(b: &Browser, w: &CheckWords) {
    b.wait("document.querySelector('#checks table.checks tbody tr')");
    let title = b.text("#checks h3");
    assert_eq!(title, w.title);
    let heads = b.js(
        "return Array.prototype.map.call(document.querySelectorAll('#checks table.checks th'), function (h) { return h.innerText; })",
    );
    assert_eq!(heads, json!(w.headings));
    for (kind, name, state, detail) in [
        ("ping", "ping 192.0.2.22", w.up, "0.4 ms"),
        ("ssh", "ssh 192.0.2.22:22", w.up, "SSH-2.0-OpenSSH_9.2p1"),
        ("http", "http 192.0.2.22:80", w.down, "connection refused"),
    ] {
        let cells = b.js(&format!(
            "return Array.prototype.map.call(document.querySelectorAll('#checks tr[data-check={kind}] td'), function (c) {{ return c.innerText; }})"
        ));
        let cells: Vec<String> = serde_json::from_value(cells).unwrap();
        assert_eq!(cells.len(), 4, "{kind}: {cells:?}");
        assert_eq!(
            (cells[0].as_str(), cells[1].as_str()),
            (name, state),
            "{cells:?}"
        );
        assert_eq!(cells[3], detail, "{cells:?}");
    }
}

/// Publishes `monitor/<vps>.json` on the bare repo's status branch, as `gitvps monitor
/// --status` does.
fn publish_monitor(bare: &Path, vps: &str, monitor: &Value) {
    publish_on_status(bare, "monitor", vps, monitor, "monitor: published");
}

/// A hooks call made by the page itself (a synchronous XHR, so the test reads its answer):
/// the status and the JSON body.
fn xhr(
    b: &Browser,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let script = format!(
        "var x = new XMLHttpRequest(); x.open({}, {}, false); \
         x.setRequestHeader('Content-Type', 'application/json'); \
         if ({}) {{ x.setRequestHeader('Authorization', 'Bearer ' + {}); }} \
         x.send({}); var j = null; try {{ j = JSON.parse(x.responseText); }} catch (e) {{}} \
         return [x.status, j];",
        json!(method),
        json!(path),
        json!(token.is_some()),
        json!(token.unwrap_or_default()),
        body.map_or("null".to_owned(), |b| json!(b.to_string()).to_string()),
    );
    let v = b.js(&script);
    (v[0].as_u64().unwrap() as u16, v[1].clone())
}

/// Reverse DNS under a VPS: each address with its name; a name that is not a host name said
/// in words with the input kept and nothing committed; a good one committed and shown; an
/// emptied field back to the host name.
fn reverse_dns_in_the_panel(b: &Browser, base: &str, bare: &Path) {
    let last = || last_commit(bare);
    b.goto(&format!("{base}/panel/?vps=xen02"));
    b.wait("document.getElementById('ptr-table')");
    let table = b.text("#ptr-table");
    for want in [
        "66.255.255.34\txen02.example.net (host name)",
        "2001:db8:66:22::1\txen02.example.net (host name)",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "reverse dns");

    let before = last();
    b.type_in("#ptr-0", "mail_server.example.net");
    b.click("button[data-ptr='66.255.255.34']");
    let msg = message(b, "msg-ptr", "error");
    assert!(
        msg.starts_with("Check the name: `mail_server.example.net` is not a valid host name"),
        "{msg}"
    );
    assert_eq!(last(), before, "nothing committed");
    assert_eq!(
        b.js("return document.getElementById('ptr-0').value"),
        json!("mail_server.example.net")
    );
    b.screenshot("panel-ptr-error");

    // Enter in the field saves it.
    b.js("document.getElementById('ptr-0').value = '';");
    b.type_in("#ptr-0", "mail.example.net");
    b.keys("\u{E007}");
    let msg = message(b, "msg-ptr", "ok");
    assert!(
        msg.contains("Accepted: reverse name mail.example.net for 66.255.255.34."),
        "{msg}"
    );
    assert_eq!(
        last(),
        "gitvps-bot: c-0001: set the reverse name of 66.255.255.34 (xen02) to mail.example.net (site)"
    );
    let row = b.text("tr[data-address='66.255.255.34']");
    assert!(
        row.contains("mail.example.net") && !row.contains("(host name)"),
        "{row}"
    );
    assert_eq!(
        b.js("return document.activeElement.id"),
        json!("msg-ptr"),
        "the answer has the focus"
    );
    b.screenshot("panel-ptr");

    b.js("document.getElementById('ptr-0').value = '';");
    b.click("button[data-ptr='66.255.255.34']");
    let msg = message(b, "msg-ptr", "ok");
    assert!(
        msg.contains("Accepted: host name as the reverse name of 66.255.255.34."),
        "{msg}"
    );
    assert_eq!(
        last(),
        "gitvps-bot: c-0001: reset the reverse name of 66.255.255.34 (xen02) to the host name (site)"
    );
    assert!(
        b.text("tr[data-address='66.255.255.34']")
            .contains("xen02.example.net (host name)")
    );
}

/// `git -C dir ARGS` with `input` on its stdin; its stdout, trimmed.
fn git_with_input(dir: &Path, args: &[&str], input: &str) -> String {
    let mut c = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Publishes `status/<vps>.json` on the bare repo's status branch, as `gitvps backup run` does.
fn publish_status(bare: &Path, vps: &str, status: &Value) {
    publish_on_status(bare, "status", vps, status, "backup run: published");
}

/// Commits `<dir>/<vps>.json` alone on the bare repo's status branch.
fn publish_on_status(bare: &Path, dir: &str, vps: &str, value: &Value, message: &str) {
    let blob = git_with_input(bare, &["hash-object", "-w", "--stdin"], &value.to_string());
    let inner = git_with_input(
        bare,
        &["mktree"],
        &format!("100644 blob {blob}\t{vps}.json\n"),
    );
    let top = git_with_input(bare, &["mktree"], &format!("040000 tree {inner}\t{dir}\n"));
    let commit = git(bare, &["commit-tree", &top, "-m", message]);
    git(bare, &["update-ref", "refs/heads/status", commit.trim()]);
}

/// Restore from the panel: the published backups listed, the same explicit confirmation as a
/// reinstall, one commit writing `[restore]`.
fn restore_in_the_panel(b: &Browser, base: &str, bare: &Path) {
    let last = || last_commit(bare);
    publish_status(
        bare,
        "xen02",
        &json!({
            "vps": "xen02", "node": "node0109", "power": "running",
            "observed_at": "2026-05-01T12:00:00Z",
            "backups": [
                {"id": "4f2a9c1e".repeat(8), "short_id": "4f2a9c1e", "time": "2026-04-29T03:00:12Z", "size_bytes": 10737418240u64},
                {"id": "0badcafe".repeat(8), "short_id": "0badcafe", "time": "2026-04-30T03:00:09Z", "size_bytes": 10737418240u64}
            ]
        }),
    );
    b.goto(&format!("{base}/panel/?vps=xen02"));
    b.wait("document.getElementById('restore-backup')");
    let options = b.text("#restore-backup");
    assert!(
        options
            .find("2026-04-30 03:00 UTC · 10 GiB · 0badcafe")
            .unwrap()
            < options
                .find("2026-04-29 03:00 UTC · 10 GiB · 4f2a9c1e")
                .unwrap(),
        "the newest first: {options}"
    );
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "restore");
    let before = last();
    // Not confirmed: nothing sent.
    b.click("#restore-go");
    let msg = message(b, "msg-restore", "error");
    assert!(msg.contains("Tick the box"), "{msg}");
    assert_eq!(last(), before);
    b.click("#restore-ack");
    b.click("#restore-go");
    b.wait("document.getElementById('confirm-q')");
    assert!(
        b.text("#confirm-q")
            .starts_with("Erase the disk of xen02 and write the backup 2026-04-30"),
        "{}",
        b.text("#confirm-q")
    );
    b.click("#confirm-yes");
    let msg = message(b, "msg-restore", "ok");
    assert!(msg.contains("restore of xen02"), "{msg}");
    assert_eq!(
        last(),
        "gitvps-bot: c-0001: restore xen02 from backup 0badcafe (site)"
    );
    let file = git(bare, &["show", "main:inventory/vps/xen02.toml"]);
    assert!(
        file.contains(&format!(
            "[restore]\nsnapshot = \"{}\"\ngeneration = 1\n",
            "0badcafe".repeat(8)
        )),
        "{file}"
    );
    b.screenshot("panel-restore");
}

/// Boot media: the library's ISO attached (booted first), then "boot from disk": each a commit
/// of the VPS's `[boot]`.
fn boot_media_in_the_panel(b: &Browser, base: &str, bare: &Path) {
    let last = || last_commit(bare);
    b.goto(&format!("{base}/panel/?vps=xen02"));
    b.wait("document.getElementById('boot-iso')");
    assert_eq!(
        b.text("#boot-iso").lines().next(),
        Some("Debian 12 netinst · 650 MiB")
    );
    assert!(
        b.js("return document.getElementById('boot-own').hidden") == json!(true),
        "the URL fields show only for the customer's own ISO"
    );
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "boot media");
    b.click("#boot-go");
    b.wait("document.getElementById('confirm-q')");
    assert_eq!(
        b.text("#confirm-q"),
        "Restart xen02 with the ISO Debian 12 netinst · 650 MiB attached at the next apply?"
    );
    b.click("#confirm-yes");
    let msg = message(b, "msg-boot", "ok");
    assert!(msg.contains("ISO for xen02"), "{msg}");
    assert_eq!(
        last(),
        "gitvps-bot: c-0001: boot xen02 from ISO debian-12-netinst (site)"
    );
    let file = git(bare, &["show", "main:inventory/vps/xen02.toml"]);
    assert!(
        file.contains("[boot]\niso = \"debian-12-netinst\"\norder = \"cd\"\n"),
        "{file}"
    );
    // The panel reloads with the ISO shown and "boot from disk" offered.
    b.wait("document.getElementById('boot-current')");
    assert_eq!(
        b.text("#boot-current"),
        "Attached now: Debian 12 netinst (the CD boots first)."
    );
    b.screenshot("panel-boot-media");
    b.click("#boot-eject");
    b.wait("document.getElementById('confirm-q')");
    b.click("#confirm-yes");
    let msg = message(b, "msg-boot", "ok");
    assert!(msg.contains("boot from disk of xen02"), "{msg}");
    assert_eq!(
        last(),
        "gitvps-bot: c-0001: eject the ISO of xen02, boot from disk (site)"
    );
    let file = git(bare, &["show", "main:inventory/vps/xen02.toml"]);
    assert!(!file.contains("[boot]"), "{file}");
}

/// Rescue mode: "Boot into rescue mode", then "Leave rescue mode", each a commit of the VPS's
/// `rescue`.
fn rescue_in_the_panel(b: &Browser, base: &str, bare: &Path) {
    let last = || last_commit(bare);
    b.goto(&format!("{base}/panel/?vps=xen02"));
    b.wait("document.getElementById('rescue-enter')");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "rescue mode");
    b.click("#rescue-enter");
    b.wait("document.getElementById('confirm-q')");
    assert_eq!(
        b.text("#confirm-q"),
        "Restart xen02 into the rescue system at the next apply?"
    );
    b.click("#confirm-yes");
    let msg = message(b, "msg-rescue", "ok");
    assert!(msg.contains("rescue mode for xen02"), "{msg}");
    assert_eq!(
        last(),
        "gitvps-bot: c-0001: boot xen02 into the rescue system (site)"
    );
    let file = git(bare, &["show", "main:inventory/vps/xen02.toml"]);
    assert!(file.contains("\nrescue = true\n"), "{file}");
    // The panel reloads in rescue mode, offering to leave it.
    b.wait("document.getElementById('rescue-leave')");
    assert!(
        b.text("#rescue-lead")
            .starts_with("xen02 runs the rescue system."),
        "{}",
        b.text("#rescue-lead")
    );
    b.screenshot("panel-rescue");
    b.click("#rescue-leave");
    b.wait("document.getElementById('confirm-q')");
    b.click("#confirm-yes");
    let msg = message(b, "msg-rescue", "ok");
    assert!(msg.contains("leaving rescue mode of xen02"), "{msg}");
    assert_eq!(
        last(),
        "gitvps-bot: c-0001: leave the rescue system of xen02, boot its own system (site)"
    );
    let file = git(bare, &["show", "main:inventory/vps/xen02.toml"]);
    assert!(!file.contains("rescue"), "{file}");
}

/// The author and subject of `main`'s last commit: `gitvps-bot: c-0001: ... (site)`.
fn last_commit(bare: &Path) -> String {
    git(bare, &["log", "-1", "--format=%an: %s", "main"])
        .trim()
        .to_owned()
}

/// Logs in with the panel's form (the fields emptied first).
fn panel_login(b: &Browser, customer: &str, password: &str) {
    b.js("document.getElementById('login-customer').value = ''; document.getElementById('login-password').value = '';");
    b.type_in("#login-customer", customer);
    b.type_in("#login-password", password);
    b.click("#login-submit");
}

/// The text of a message box once it shows `kind` (`ok` or `error`).
fn message(b: &Browser, id: &str, kind: &str) -> String {
    let v = b.wait(&format!(
        "document.getElementById('{id}') && document.getElementById('{id}').className.indexOf('{kind}') >= 0 && document.getElementById('{id}').innerText"
    ));
    v.as_str().unwrap().to_owned()
}

/// The link of the one password reset mail the server sent (to its Maildir), and its token;
/// no file of any commit of the repo and no commit message holds the token.
fn reset_link(bare: &Path, maildir: &Path) -> (String, String) {
    let mut names: Vec<PathBuf> = std::fs::read_dir(maildir.join("new"))
        .expect("a mail delivered")
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert_eq!(names.len(), 1, "{names:?}");
    let raw = std::fs::read(&names[0]).unwrap();
    let m = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let to = m.to().and_then(|a| a.first()).and_then(|a| a.address());
    assert_eq!(to, Some("jane@example.net"));
    let text = m.body_text(0).unwrap().into_owned();
    let link = text
        .split_whitespace()
        .find(|w| w.contains("?reset="))
        .expect("a reset link in the mail")
        .to_owned();
    let token = link.rsplit("?reset=").next().unwrap().to_owned();
    let secret = token.rsplit('.').next().unwrap();
    let history = git(bare, &["log", "-p", "--all", "--format=%H %B"]);
    assert!(
        history.contains("resets/c-0001.toml"),
        "the record is committed"
    );
    assert!(
        !history.contains(secret),
        "the token is in the repo's history"
    );
    (link, token)
}

/// RFC 4648 base32 (the key an authenticator app is given).
fn base32_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut n, mut out) = (0u64, 0u32, Vec::new());
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base32") as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// The account section: password change, the reset flow from the login page (the token read
/// from the mail the server sent to `maildir`, never in the repo), two-factor enrolment with its QR code and a login with
/// a recovery code, API keys, and "log out everywhere". Leaves c-0001 logged in.
fn account_in_the_panel(b: &Browser, base: &str, bare: &Path, maildir: &Path) {
    let last = || {
        git(bare, &["log", "-1", "--format=%s", "main"])
            .trim()
            .to_owned()
    };

    // Password change: this session goes on with a new token, another one is logged out.
    b.goto(&format!("{base}/panel/"));
    b.wait(
        "!document.getElementById('account').hidden && document.getElementById('twofactor-start')",
    );
    let (s, other) = xhr(
        b,
        "POST",
        "/api/login",
        None,
        Some(&json!({"customer": "c-0001", "password": "demo-jane"})),
    );
    assert_eq!(s, 200, "{other}");
    let other = other["token"].as_str().unwrap().to_owned();
    b.type_in("#pw-current", "demo-jane");
    b.type_in("#pw-new", "jane-changed-1");
    b.type_in("#pw-confirm", "jane-changed-2");
    b.click("#pw-submit");
    assert!(message(b, "msg-password", "error").contains("differ"));
    b.js("document.getElementById('pw-confirm').value = '';");
    b.type_in("#pw-confirm", "jane-changed-1");
    b.click("#pw-submit");
    let msg = message(b, "msg-password", "ok");
    assert!(msg.contains("Password changed"), "{msg}");
    assert_eq!(last(), "c-0001: change the password (site)");
    assert_eq!(xhr(b, "GET", "/api/me", Some(&other), None).0, 401);
    b.screenshot("panel-password");
    b.goto(&format!("{base}/panel/"));
    b.wait("!document.getElementById('account').hidden && document.getElementById('vps-table')");

    // Forgot password, from the login page; the link of the mail sets a new one, once.
    b.click("#logout");
    b.wait("!document.getElementById('login').hidden");
    b.click("#forgot-open");
    b.wait("!document.getElementById('forgot-form').hidden");
    b.js("document.getElementById('forgot-customer').value = '';");
    b.type_in("#forgot-customer", "jane@example.net");
    b.click("#forgot-submit");
    let msg = message(b, "forgot-message", "ok");
    assert!(msg.contains("on its way"), "{msg}");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "forgot");
    b.screenshot("panel-forgot");
    assert_eq!(last(), "c-0001: ask for a password reset by mail (site)");
    let (link, token) = reset_link(bare, maildir);
    assert!(
        link.starts_with("http://127.0.0.1:8080/panel/?reset=c-0001."),
        "{link}"
    );
    b.goto(&format!("{base}/panel/?reset={token}"));
    b.wait("!document.getElementById('reset').hidden && document.getElementById('login').hidden");
    let href = b.js("return location.href");
    assert!(!href.as_str().unwrap().contains(&token), "{href}");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "reset");
    b.screenshot("panel-reset");
    b.type_in("#reset-password", "jane-reset-pass");
    b.type_in("#reset-confirm", "jane-reset-pass");
    b.click("#reset-submit");
    let msg = message(b, "login-message", "ok");
    assert!(msg.contains("new password is set"), "{msg}");
    assert_eq!(last(), "c-0001: reset the password by mail (site)");
    let again = json!({"token": token, "password": "another-password"});
    let (s, v) = xhr(b, "POST", "/api/password/reset", None, Some(&again));
    assert_eq!((s, v["error"].as_str()), (422, Some("reset_invalid")));
    panel_login(b, "c-0001", "jane-reset-pass");
    b.wait(
        "!document.getElementById('account').hidden && document.getElementById('twofactor-start')",
    );

    // Two-factor login: the QR code is an image, a code of the key turns it on.
    b.click("#twofactor-start");
    b.wait("document.getElementById('twofactor-qr') && document.getElementById('twofactor-qr').complete && document.getElementById('twofactor-qr').naturalWidth > 0");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "two-factor setup");
    b.screenshot("panel-2fa");
    let secret = base32_decode(&b.text("#twofactor-secret"));
    let code = hooks::twofactor::code_at(&secret, chrono::Utc::now().timestamp()).unwrap();
    b.type_in("#twofactor-code", &code);
    b.click("#twofactor-confirm");
    b.wait("document.querySelectorAll('#recovery-codes li').length === 10");
    let codes: Vec<String> = serde_json::from_value(b.js(
        "return Array.prototype.map.call(document.querySelectorAll('#recovery-codes code'), function (c) { return c.textContent; });",
    ))
    .unwrap();
    assert!(b.text("#twofactor-state").starts_with("On"));
    assert_eq!(last(), "c-0001: turn on two-factor login (site)");
    b.screenshot("panel-2fa-on");

    // API keys: made (shown once), listed, working, revoked.
    b.type_in("#apikey-name", "monitoring");
    b.click("#apikey-scope-power");
    b.click("#apikey-submit");
    let key = b.wait(
        "document.getElementById('apikey-new') && document.getElementById('apikey-new').innerText",
    );
    let key = key.as_str().unwrap().trim().to_owned();
    assert!(key.starts_with("gvk.c-0001."), "{key}");
    b.wait("document.getElementById('apikeys-table')");
    let table = b.text("#apikeys-table");
    assert!(
        table.contains("monitoring") && table.contains("read, power"),
        "{table}"
    );
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "API keys");
    b.screenshot("panel-apikeys");
    assert_eq!(xhr(b, "GET", "/api/me", Some(&key), None).0, 200);
    b.click("button[data-revoke]");
    b.wait("document.getElementById('apikeys-none')");
    assert_eq!(xhr(b, "GET", "/api/me", Some(&key), None).0, 401);

    // Log out everywhere; then the login asks for the second factor, and a recovery code works.
    b.click("#logout-all");
    b.wait("document.getElementById('logout-all-yes') === document.activeElement");
    b.click("#logout-all-yes");
    let msg = message(b, "login-message", "ok");
    assert!(msg.contains("logged out everywhere"), "{msg}");
    assert_eq!(last(), "c-0001: log out everywhere (site)");
    panel_login(b, "c-0001", "jane-reset-pass");
    b.wait("!document.getElementById('login-otp-field').hidden && document.activeElement.id === 'login-otp'");
    assert_eq!(b.a11y_problems(), Vec::<String>::new(), "second factor");
    b.screenshot("panel-login-otp");
    b.keys(&format!("{}\u{E007}", codes[0]));
    b.wait("!document.getElementById('account').hidden && document.getElementById('vps-table')");
    assert_eq!(last(), "c-0001: use a recovery code (site)");
}
