//! The addresses mails point to (the panel, a VPS, an invoice, the order page) and the variables
//! every template reads, from the `[site]` settings: one place, so every job links alike.

use model::Settings;
use model::values::Language;
use serde_json::{Value, json};

/// The site's URL without a trailing `/`.
pub fn site(settings: &Settings) -> &str {
    settings.site.url.trim_end_matches('/')
}

/// The path prefix of a language's pages: `""` for English, `"/zh"` for Chinese.
pub fn lang_prefix(lang: Language) -> &'static str {
    match lang {
        Language::En => "",
        Language::Zh => "/zh",
    }
}

/// The customer panel in the customer's language (`https://example.net/zh/panel/`).
pub fn panel(settings: &Settings, lang: Language) -> String {
    format!("{}{}/panel/", site(settings), lang_prefix(lang))
}

/// The panel opened on one VPS (where it is renewed).
pub fn vps(settings: &Settings, lang: Language, vps: &str) -> String {
    format!("{}?vps={vps}", panel(settings, lang))
}

/// The panel opened on one invoice.
pub fn invoice(settings: &Settings, lang: Language, number: &str) -> String {
    format!("{}?invoice={number}", panel(settings, lang))
}

/// The panel opened on one ticket.
pub fn ticket(settings: &Settings, lang: Language, ticket: &str) -> String {
    format!("{}?ticket={ticket}", panel(settings, lang))
}

/// The order page.
pub fn order(settings: &Settings, lang: Language) -> String {
    format!("{}{}/order/", site(settings), lang_prefix(lang))
}

/// The variables of [`crate::render::COMMON`]: `site_name`, `site_url` and the addressee's
/// `name`, as a JSON object the caller adds its kind's variables to.
pub fn common(settings: &Settings, name: &str) -> Value {
    json!({
        "site_name": settings.site.name,
        "site_url": site(settings),
        "name": name,
    })
}
