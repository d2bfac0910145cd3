//! The mail templates: a subject, a plain-text and an HTML body per [`Kind`] and language,
//! embedded defaults that the inventory repo's `templates/mail/` may override file by file.
//!
//! File names: `<kind>.<lang>.subject.txt`, `<kind>.<lang>.txt`, `<kind>.<lang>.html`, and per
//! language the shared `layout.<lang>.html` (extended by the HTML bodies) and `footer.<lang>.txt`
//! (included by the text bodies). A variable missing from the context is an error, never blank
//! text; `.html` templates escape what they print, `.txt` ones do not. Every kind reads
//! [`COMMON`] and its own [`Kind::variables`].

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use model::values::Language;

/// Names the template language itself defines: never looked up in the context.
const SPECIAL: &[&str] = &["loop", "super", "self", "caller", "varargs", "kwargs"];

/// The variables every template may use: the business's name and site, and the recipient's name.
pub const COMMON: &[&str] = &["site_name", "site_url", "name"];

/// What a mail is about; each kind has its own templates and variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A VPS expires soon: renew it.
    Reminder,
    /// An invoice (often with the invoice attached).
    Invoice,
    /// A payment was received; the VPS is paid for longer.
    PaymentReceived,
    /// A VPS was suspended for non-payment.
    Suspended,
    /// A VPS was terminated.
    Terminated,
    /// An order was paid; the new VPS is being set up.
    OrderConfirmed,
    /// A customer opened a ticket (sent to the support address).
    TicketOpened,
    /// Support answered a customer's ticket.
    TicketAnswered,
    /// A link to choose a new panel password.
    PasswordReset,
    /// A message from the business to its customers.
    Announcement,
    /// A monitoring check changed state.
    Alert,
    /// A VPS passed a threshold of its monthly traffic, and what the policy did about it.
    Traffic,
    /// A traffic block was paid: the VPS's quota is bigger for its current traffic period.
    TrafficBlockPaid,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 13] = [
        Kind::Reminder,
        Kind::Invoice,
        Kind::PaymentReceived,
        Kind::Suspended,
        Kind::Terminated,
        Kind::OrderConfirmed,
        Kind::TicketOpened,
        Kind::TicketAnswered,
        Kind::PasswordReset,
        Kind::Announcement,
        Kind::Alert,
        Kind::Traffic,
        Kind::TrafficBlockPaid,
    ];

    /// The kind's name in template file names and the `X-Gitvps-Kind` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reminder => "reminder",
            Kind::Invoice => "invoice",
            Kind::PaymentReceived => "payment-received",
            Kind::Suspended => "suspended",
            Kind::Terminated => "terminated",
            Kind::OrderConfirmed => "order-confirmed",
            Kind::TicketOpened => "ticket-opened",
            Kind::TicketAnswered => "ticket-answered",
            Kind::PasswordReset => "password-reset",
            Kind::Announcement => "announcement",
            Kind::Alert => "alert",
            Kind::Traffic => "traffic",
            Kind::TrafficBlockPaid => "traffic-block-paid",
        }
    }

    /// The variables this kind's default templates read besides [`COMMON`]. Amounts and dates
    /// are strings the caller formats (an order's `address` and `console` may be `""`: not known
    /// yet); `overdue` (reminder) is a bool, `days_left` (reminder) and `valid_minutes` (password
    /// reset) are numbers; `vps` of a ticket may be `""`; an alert's `state` is `"down"` or
    /// `"up"`; a traffic mail's `level` is `"warn"` or `"over"`, its `action` `"mail"`, `"throttle"`
    /// or `"suspend"`, and `percent` a number; a paid traffic block's `size` is its bytes as the
    /// catalog writes them (`100 GiB`), `period_start` and `period_end` the period's first and
    /// last day.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Kind::Reminder => &[
                "vps",
                "hostname",
                "product",
                "expires",
                "overdue",
                "suspend_on",
                "days_left",
                "price",
                "currency",
                "renew_url",
            ],
            Kind::Invoice => &[
                "invoice",
                "date",
                "vps",
                "product",
                "period",
                "amount",
                "currency",
                "invoice_url",
            ],
            Kind::PaymentReceived => &["vps", "amount", "currency", "expires", "panel_url"],
            Kind::TrafficBlockPaid => &[
                "vps",
                "amount",
                "currency",
                "size",
                "period_start",
                "period_end",
                "invoice",
                "panel_url",
            ],
            Kind::Suspended => &["vps", "hostname", "expired", "terminate_on", "renew_url"],
            Kind::Terminated => &["vps", "hostname", "terminated", "order_url"],
            Kind::OrderConfirmed => &[
                "vps",
                "product",
                "location",
                "os",
                "amount",
                "currency",
                "expires",
                "panel_url",
                "address",
                "console",
            ],
            Kind::TicketOpened => &[
                "ticket",
                "customer",
                "email",
                "subject",
                "message",
                "vps",
                "ticket_url",
            ],
            Kind::TicketAnswered => &["ticket", "subject", "reply", "ticket_url"],
            Kind::PasswordReset => &["customer", "reset_url", "valid_minutes"],
            Kind::Announcement => &["title", "body"],
            Kind::Alert => &["vps", "check", "state", "since", "detail", "panel_url"],
            Kind::Traffic => &[
                "vps",
                "hostname",
                "used",
                "quota",
                "percent",
                "level",
                "action",
                "rate",
                "resets_on",
                "panel_url",
            ],
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The language's code in file names (`en`, `zh`).
pub fn lang_code(lang: Language) -> &'static str {
    match lang {
        Language::En => "en",
        Language::Zh => "zh",
    }
}

/// Every language the templates exist in.
pub const LANGUAGES: [Language; 2] = [Language::En, Language::Zh];

/// The six files of a kind (subject, text, HTML in English then Chinese), embedded.
macro_rules! kind_files {
    ($kind:literal) => {
        [
            kind_files!(@one $kind, ".en.subject.txt"),
            kind_files!(@one $kind, ".en.txt"),
            kind_files!(@one $kind, ".en.html"),
            kind_files!(@one $kind, ".zh.subject.txt"),
            kind_files!(@one $kind, ".zh.txt"),
            kind_files!(@one $kind, ".zh.html"),
        ]
    };
    (@one $kind:literal, $suffix:literal) => {
        (
            concat!($kind, $suffix),
            include_str!(concat!("../templates/", $kind, $suffix)),
        )
    };
}

/// The embedded default of every kind's files, in [`Kind::ALL`] order.
const KIND_FILES: [[(&str, &str); 6]; 13] = [
    kind_files!("reminder"),
    kind_files!("invoice"),
    kind_files!("payment-received"),
    kind_files!("suspended"),
    kind_files!("terminated"),
    kind_files!("order-confirmed"),
    kind_files!("ticket-opened"),
    kind_files!("ticket-answered"),
    kind_files!("password-reset"),
    kind_files!("announcement"),
    kind_files!("alert"),
    kind_files!("traffic"),
    kind_files!("traffic-block-paid"),
];

/// The shared files per language, embedded.
const SHARED_FILES: [(&str, &str); 4] = [
    (
        "layout.en.html",
        include_str!("../templates/layout.en.html"),
    ),
    ("footer.en.txt", include_str!("../templates/footer.en.txt")),
    (
        "layout.zh.html",
        include_str!("../templates/layout.zh.html"),
    ),
    ("footer.zh.txt", include_str!("../templates/footer.zh.txt")),
];

/// Why a mail could not be rendered, or an override not accepted.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An override names no mail template.
    #[error(
        "templates/mail/{name}: not a mail template (names are <kind>.<en|zh>.subject.txt, .txt, .html, layout.<lang>.html, footer.<lang>.txt)"
    )]
    UnknownTemplate {
        /// The file name given.
        name: String,
    },
    /// The context lacks variables the templates of a mail read.
    #[error("mail {mail}: missing variable(s) {}", names.join(", "))]
    Missing {
        /// The mail's kind and language (`reminder.en`).
        mail: String,
        /// The variables not in the context.
        names: Vec<String>,
    },
    /// A template does not parse, or failed while rendering.
    #[error("mail template {template}: {source}")]
    Template {
        /// The template's file name.
        template: String,
        /// minijinja's error, with the line.
        #[source]
        source: minijinja::Error,
    },
    /// The subject rendered to nothing.
    #[error("mail template {template}: the subject is empty")]
    EmptySubject {
        /// The subject template's file name.
        template: String,
    },
}

/// A rendered mail: the subject (one line) and both bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line, whitespace collapsed.
    pub subject: String,
    /// The plain-text body, ending in a newline.
    pub text: String,
    /// The HTML body.
    pub html: String,
}

/// The mail templates: the embedded defaults with the repo's overrides laid over them.
#[derive(Debug, Clone)]
pub struct Templates {
    sources: BTreeMap<&'static str, String>,
}

impl Default for Templates {
    /// The embedded templates only.
    fn default() -> Self {
        let sources = Self::defaults()
            .map(|(name, src)| (name, src.to_owned()))
            .collect();
        Templates { sources }
    }
}

impl Templates {
    fn defaults() -> impl Iterator<Item = (&'static str, &'static str)> {
        KIND_FILES
            .iter()
            .flatten()
            .chain(SHARED_FILES.iter())
            .copied()
    }

    /// Every template's file name, sorted: what `templates/mail/` may contain.
    pub fn names() -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Self::defaults().map(|(name, _)| name).collect();
        names.sort_unstable();
        names
    }

    /// The embedded default of a template, by file name.
    pub fn default_source(name: &str) -> Option<&'static str> {
        Self::defaults().find(|(n, _)| *n == name).map(|(_, s)| s)
    }

    /// The defaults with `overrides` (file name → source, as read from the repo's
    /// `templates/mail/`) in their place. Fails on a name that is no template and on a template
    /// that does not parse, so a typo shows before any mail is rendered.
    pub fn with_overrides(overrides: BTreeMap<String, String>) -> Result<Templates, RenderError> {
        let mut templates = Templates::default();
        for (name, source) in overrides {
            let Some(slot) = templates
                .sources
                .iter_mut()
                .find(|(n, _)| **n == name.as_str())
                .map(|(_, s)| s)
            else {
                return Err(RenderError::UnknownTemplate { name });
            };
            *slot = source;
        }
        let mut env = environment();
        for (name, source) in &templates.sources {
            env.add_template(name, source)
                .map_err(|source| RenderError::Template {
                    template: (*name).to_owned(),
                    source,
                })?;
        }
        Ok(templates)
    }

    /// The source in use for a template (an override or the default).
    pub fn source(&self, name: &str) -> Option<&str> {
        self.sources.get(name).map(String::as_str)
    }

    /// Renders the subject and both bodies of `kind` in `lang` with `context` (a map of the
    /// [`COMMON`] and [`Kind::variables`] names).
    pub fn render<C: serde::Serialize + ?Sized>(
        &self,
        kind: Kind,
        lang: Language,
        context: &C,
    ) -> Result<Rendered, RenderError> {
        let code = lang_code(lang);
        let base = format!("{kind}.{code}");
        let subject_name = format!("{base}.subject.txt");
        let text_name = format!("{base}.txt");
        let html_name = format!("{base}.html");
        let shared = [format!("layout.{code}.html"), format!("footer.{code}.txt")];

        let mut env = environment();
        for name in [&subject_name, &text_name, &html_name]
            .into_iter()
            .chain(&shared)
        {
            let source = self.source(name).unwrap_or_default();
            env.add_template(name.as_str(), source)
                .map_err(|source| RenderError::Template {
                    template: name.clone(),
                    source,
                })?;
        }
        let ctx = minijinja::Value::from_serialize(context);

        // Name what is missing up front (a strict render alone says only "undefined value"):
        // what any of the five templates may read, control flow aside, must be in the context.
        let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
        let mut missing = BTreeSet::new();
        for name in [&subject_name, &text_name, &html_name]
            .into_iter()
            .chain(&shared)
        {
            if let Ok(tmpl) = env.get_template(name) {
                missing.extend(tmpl.undeclared_variables(false));
            }
        }
        missing.retain(|var| {
            !SPECIAL.contains(&var.as_str())
                && !globals.contains(var.as_str())
                && !matches!(ctx.get_attr(var), Ok(v) if !v.is_undefined())
        });
        if !missing.is_empty() {
            return Err(RenderError::Missing {
                mail: base,
                names: missing.into_iter().collect(),
            });
        }

        let render = |name: &str| -> Result<String, RenderError> {
            let failed = |source| RenderError::Template {
                template: name.to_owned(),
                source,
            };
            env.get_template(name)
                .and_then(|tmpl| tmpl.render(&ctx))
                .map_err(failed)
        };

        let subject = render(&subject_name)?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if subject.is_empty() {
            return Err(RenderError::EmptySubject {
                template: subject_name,
            });
        }
        let mut text = render(&text_name)?;
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let html = render(&html_name)?;
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

/// The environment every template is rendered in: strict undefined, HTML escaping for `.html`.
fn environment<'s>() -> Environment<'s> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if matches!(state.auto_escape(), AutoEscape::Html)
            && !value.is_safe()
            && !value.is_undefined()
            && !value.is_none()
        {
            write_html_escaped(out, &value.to_string())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env
}

/// HTML escaping of `& < > " '`: what text and quoted attributes need. minijinja's own also
/// writes `/` as `&#x2f;`, which would make every link in the HTML source unreadable.
fn write_html_escaped(out: &mut minijinja::Output, text: &str) -> Result<(), minijinja::Error> {
    let mut rest = text;
    while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
        out.write_str(&rest[..at])?;
        let entity = match rest.as_bytes()[at] {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => "&#39;",
        };
        out.write_str(entity)?;
        rest = &rest[at + 1..];
    }
    out.write_str(rest)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    /// A complete context for a kind: every variable with a recognisable value.
    fn context(kind: Kind) -> Map<String, Value> {
        let mut ctx = Map::new();
        for var in COMMON.iter().chain(kind.variables()) {
            let value = match *var {
                "days_left" => json!(7),
                "overdue" => json!(false),
                "valid_minutes" => json!(60),
                "state" => json!("down"),
                "site_url" => json!("https://vps.example.net"),
                v if v.ends_with("_url") => json!(format!("https://vps.example.net/panel/#{v}")),
                v => json!(format!("<{v}>")),
            };
            ctx.insert((*var).to_owned(), value);
        }
        ctx
    }

    #[test]
    fn every_kind_has_its_files_in_order() {
        for (kind, files) in Kind::ALL.iter().zip(KIND_FILES.iter()) {
            for (name, _) in files {
                assert!(name.starts_with(&format!("{kind}.")), "{name} under {kind}");
            }
        }
        assert_eq!(Templates::names().len(), Kind::ALL.len() * 6 + 4);
    }

    #[test]
    fn every_kind_renders_in_both_languages() {
        let templates = Templates::default();
        for kind in Kind::ALL {
            for lang in LANGUAGES {
                let r = templates
                    .render(kind, lang, &context(kind))
                    .unwrap_or_else(|e| panic!("{kind} {lang}: {e}"));
                assert!(!r.subject.contains('\n'), "{kind} {lang}");
                assert!(
                    r.text.contains("<name>") || kind == Kind::TicketOpened,
                    "{kind}"
                );
                assert!(r.html.starts_with("<!DOCTYPE html>"), "{kind} {lang}");
                let code = lang_code(lang);
                let html_lang = if code == "zh" { "zh-Hans" } else { "en" };
                assert!(r.html.contains(&format!("<html lang=\"{html_lang}\">")));
                // Every link of the kind is in both bodies.
                for var in kind.variables().iter().filter(|v| v.ends_with("_url")) {
                    let link = format!("https://vps.example.net/panel/#{var}");
                    assert!(r.text.contains(&link), "{kind} {lang} text lacks {var}");
                    assert!(r.html.contains(&link), "{kind} {lang} html lacks {var}");
                }
                if lang == Language::Zh {
                    assert!(
                        r.text
                            .chars()
                            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                        "{kind}: Chinese text"
                    );
                }
            }
        }
    }

    #[test]
    fn every_variable_is_used_and_required() {
        let templates = Templates::default();
        for kind in Kind::ALL {
            for lang in LANGUAGES {
                for var in COMMON.iter().chain(kind.variables()) {
                    let mut ctx = context(kind);
                    ctx.remove(*var);
                    match templates.render(kind, lang, &ctx) {
                        Err(RenderError::Missing { names, .. }) => {
                            assert_eq!(names, vec![(*var).to_owned()], "{kind} {lang}")
                        }
                        other => panic!("{kind} {lang} without {var}: {other:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn templates_read_only_documented_variables() {
        let templates = Templates::default();
        for kind in Kind::ALL {
            for lang in LANGUAGES {
                let code = lang_code(lang);
                let mut env = environment();
                let names = [
                    format!("{kind}.{code}.subject.txt"),
                    format!("{kind}.{code}.txt"),
                    format!("{kind}.{code}.html"),
                    format!("layout.{code}.html"),
                    format!("footer.{code}.txt"),
                ];
                for name in &names {
                    env.add_template(name.as_str(), templates.source(name).unwrap())
                        .unwrap();
                }
                for name in &names {
                    let vars = env.get_template(name).unwrap().undeclared_variables(true);
                    for var in vars {
                        let top = var.split('.').next().unwrap_or_default();
                        assert!(
                            COMMON.contains(&top) || kind.variables().contains(&top),
                            "{name} reads {var}, which {kind} does not document"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_missing_variable_is_an_error_naming_it() {
        let mut ctx = context(Kind::Reminder);
        ctx.remove("renew_url");
        let err = Templates::default()
            .render(Kind::Reminder, Language::En, &ctx)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mail reminder.en: missing variable(s) renew_url"
        );
    }

    #[test]
    fn a_missing_attribute_is_an_error_too() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "announcement.en.txt".to_owned(),
            "{{ name }} {{ title }} {{ body }} {{ name.nope }}\n".to_owned(),
        );
        let templates = Templates::with_overrides(overrides).unwrap();
        let err = templates
            .render(
                Kind::Announcement,
                Language::En,
                &context(Kind::Announcement),
            )
            .unwrap_err();
        assert!(
            matches!(err, RenderError::Template { ref template, .. } if template == "announcement.en.txt"),
            "{err}"
        );
    }

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let mut ctx = context(Kind::Announcement);
        ctx.insert("name".into(), json!("Jane <script>alert(1)</script> & Co"));
        ctx.insert("body".into(), json!("a \"quoted\" <b>word</b>"));
        let r = Templates::default()
            .render(Kind::Announcement, Language::En, &ctx)
            .unwrap();
        assert!(r.text.contains("Jane <script>alert(1)</script> & Co"));
        assert!(r.text.contains("a \"quoted\" <b>word</b>"));
        assert!(!r.html.contains("<script>"));
        assert!(
            r.html
                .contains("Jane &lt;script&gt;alert(1)&lt;/script&gt; &amp; Co")
        );
        assert!(
            r.html
                .contains("a &quot;quoted&quot; &lt;b&gt;word&lt;/b&gt;")
        );
        // The subject is text: not escaped.
        ctx.insert("title".into(), json!("R&D <news>"));
        let r = Templates::default()
            .render(Kind::Announcement, Language::En, &ctx)
            .unwrap();
        assert!(r.subject.ends_with("R&D <news>"), "{}", r.subject);
    }

    #[test]
    fn overrides_replace_defaults_and_unknown_names_are_refused() {
        let mut overrides = BTreeMap::new();
        overrides.insert(
            "reminder.en.subject.txt".to_owned(),
            "Renew {{ vps }}\n  now".to_owned(),
        );
        let templates = Templates::with_overrides(overrides).unwrap();
        let r = templates
            .render(Kind::Reminder, Language::En, &context(Kind::Reminder))
            .unwrap();
        assert_eq!(r.subject, "Renew <vps> now");
        assert_eq!(
            templates.source("reminder.zh.subject.txt"),
            Templates::default_source("reminder.zh.subject.txt")
        );

        let mut typo = BTreeMap::new();
        typo.insert("reminder.fr.txt".to_owned(), "x".to_owned());
        let err = Templates::with_overrides(typo).unwrap_err();
        assert!(
            matches!(err, RenderError::UnknownTemplate { ref name } if name == "reminder.fr.txt")
        );

        let mut broken = BTreeMap::new();
        broken.insert("alert.zh.html".to_owned(), "{% if %}".to_owned());
        let err = Templates::with_overrides(broken).unwrap_err();
        assert!(
            err.to_string().starts_with("mail template alert.zh.html: "),
            "{err}"
        );
    }

    #[test]
    fn an_empty_subject_is_an_error() {
        let mut overrides = BTreeMap::new();
        overrides.insert("alert.en.subject.txt".to_owned(), "  \n".to_owned());
        let templates = Templates::with_overrides(overrides).unwrap();
        let err = templates
            .render(Kind::Alert, Language::En, &context(Kind::Alert))
            .unwrap_err();
        assert!(matches!(err, RenderError::EmptySubject { .. }));
    }
}
