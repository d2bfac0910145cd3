//! Payments asked for by customers: `POST /api/vps/{id}/renew`, `POST /api/vps/{id}/traffic`
//! and `POST /api/order` check the request on the head and answer the URL of a Stripe
//! Checkout Session.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use model::values::Language;
use model::{ApplianceId, CustomerId, Inventory, OsId, ProductKind};
use serde::Deserialize;
use serde_json::json;

use super::extract::{authenticate, bearer};
use super::{ApiError, App, Authed, ClientAddr, JsonBody, parse_vps};
use crate::billing::{
    Book, Due, MAX_NAME, NewCustomer, OrderCustomer, Purchase, check_line, order_lines, orderable,
    renewal_due,
};
use crate::catalog::catalog;
use crate::decide::{Refusal, dry_place, own_vps};
use crate::stripe::{Checkout, CheckoutError, CheckoutLine, CheckoutRequest};
use crate::throttle;

fn checkout(app: &App) -> Result<&Checkout, ApiError> {
    app.checkout.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "payments_not_configured",
            "payments are not configured",
        )
    })
}

fn provider_error(e: CheckoutError) -> ApiError {
    let text = crate::error_chain(&e);
    tracing::error!(error = %text, "Stripe");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "payment_provider_error",
        "the payment provider is unavailable; try again later",
    )
}

fn site_url(inv: &Inventory, path: &str) -> String {
    format!("{}{path}", inv.settings.site.url.trim_end_matches('/'))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RenewReq {
    /// A renewal offer of the VPS's plan; without one, the open renewal invoice's product or
    /// else the plan's default renewal.
    #[serde(default)]
    product: Option<String>,
}

/// What a renewal or a traffic block asks the customer to pay, decided on the fresh head.
struct RenewOffer {
    purchase: Purchase,
    due: Due,
    email: Option<String>,
    methods: Vec<model::policy::PaymentMethod>,
    site: String,
}

impl RenewOffer {
    /// The Checkout Session of this offer; back to the panel with `?<query>` once paid.
    async fn session(self, stripe: &Checkout, query: &str) -> Result<String, ApiError> {
        let req = CheckoutRequest {
            purchase: self.purchase,
            lines: checkout_lines(&self.due),
            currency: self.due.currency.to_string(),
            methods: self.methods,
            success_url: format!("{}/panel/?{query}", self.site),
            cancel_url: format!("{}/panel/", self.site),
            email: self.email,
        };
        stripe.create(&req).await.map_err(provider_error)
    }
}

pub(super) async fn renew(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<RenewReq>,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    let stripe = checkout(&app)?;
    a.require(crate::apikeys::Scope::Billing)?;
    app.quota(&a, "renew")?;
    let customer = a.customer.clone();
    let asked = req.product;
    let offer = {
        let vps = vps.clone();
        app.store
            .read(move |v| renew_offer(v.snapshot.inv.as_ref(), v.tree, &customer, &vps, asked))
            .await??
    };
    let product = match &offer.purchase {
        Purchase::Renew { product, .. } => product.to_string(),
        Purchase::Order { .. } | Purchase::TrafficBlock { .. } => String::new(),
    };
    let invoice = offer.due.invoice.as_ref().map(ToString::to_string);
    let url = offer.session(stripe, &format!("paid={vps}")).await?;
    tracing::info!(customer = %a.customer, %vps, %product, invoice = invoice.as_deref().unwrap_or("-"), "checkout for a renewal");
    Ok(axum::Json(json!({"url": url})).into_response())
}

/// The renewal of `vps` as the head prices it: the open renewal invoice, or the invoice the
/// payment will issue, with the customer's tax.
fn renew_offer(
    inv: &Inventory,
    tree: &dyn crate::tree::Tree,
    customer: &CustomerId,
    vps: &model::VpsId,
    asked: Option<String>,
) -> Result<RenewOffer, ApiError> {
    let v = own_vps(inv, customer, vps, true)?;
    let book = Book::read(tree);
    let unknown = || {
        ApiError::unprocessable(
            "unknown_product",
            format!("not a renewal offer for {vps}; see `renewals` in /api/me"),
        )
    };
    let product = match asked {
        Some(p) => p
            .parse::<model::ProductId>()
            .ok()
            .and_then(|p| inv.renewals_of(&v.product).find(|o| o.id == p))
            .ok_or_else(unknown)?,
        None => book
            .open_renewal(&v.id, v.expires)
            .and_then(|i| i.lines.first())
            .and_then(|l| inv.products.get(&l.product))
            .or_else(|| billing::renewal_product(inv, &v.product))
            .ok_or_else(unknown)?,
    };
    let due = renewal_due(inv, &book, v, product, Utc::now().date_naive())
        .map_err(|open| ApiError::new(StatusCode::CONFLICT, "open_invoice", open.to_string()))?;
    // A customer without an address types one on Stripe's page.
    let email = inv
        .customers
        .get(customer)
        .and_then(|c| c.email.as_ref())
        .map(|e| e.as_str().to_owned());
    Ok(RenewOffer {
        purchase: Purchase::Renew {
            customer: customer.clone(),
            vps: vps.clone(),
            product: product.id.clone(),
            invoice: due.invoice.clone(),
        },
        due,
        email,
        methods: inv.settings.billing.payment_methods.clone(),
        site: site_url(inv, ""),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TrafficReq {
    /// A traffic block of the catalog; without one, the first the catalog offers.
    #[serde(default)]
    product: Option<String>,
}

/// `POST /api/vps/{id}/traffic`: a Checkout Session for a traffic block for one of the
/// customer's VPSes, in its current traffic period; the webhook adds the block to the VPS file.
pub(super) async fn traffic(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    a: Authed,
    JsonBody(req): JsonBody<TrafficReq>,
) -> Result<Response, ApiError> {
    let vps = parse_vps(&id)?;
    let stripe = checkout(&app)?;
    a.require(crate::apikeys::Scope::Billing)?;
    app.quota(&a, "traffic")?;
    let customer = a.customer.clone();
    let offer = {
        let vps = vps.clone();
        app.store
            .read(move |v| traffic_offer(v.snapshot.inv.as_ref(), &customer, &vps, req.product))
            .await??
    };
    let url = offer.session(stripe, &format!("traffic={vps}")).await?;
    tracing::info!(customer = %a.customer, %vps, "checkout for a traffic block");
    Ok(axum::Json(json!({"url": url})).into_response())
}

/// The traffic block `vps` may buy now, as the head prices it.
fn traffic_offer(
    inv: &Inventory,
    customer: &CustomerId,
    vps: &model::VpsId,
    asked: Option<String>,
) -> Result<RenewOffer, ApiError> {
    let v = own_vps(inv, customer, vps, true)?;
    let unknown = || {
        ApiError::unprocessable(
            "unknown_product",
            "not a traffic block of the catalog; see `traffic_blocks` in /api/me",
        )
    };
    let product = match asked {
        Some(p) => p.parse::<model::ProductId>().map_err(|_| unknown())?,
        None => inv
            .traffic_block_offers()
            .next()
            .map(|(p, _)| p.id.clone())
            .ok_or_else(unknown)?,
    };
    let (_, period, due) =
        crate::billing::traffic_block_due(inv, v, &product, Utc::now().date_naive())
            .map_err(|why| ApiError::unprocessable("not_for_sale", why))?;
    let email = inv
        .customers
        .get(customer)
        .and_then(|c| c.email.as_ref())
        .map(|e| e.as_str().to_owned());
    Ok(RenewOffer {
        purchase: Purchase::TrafficBlock {
            customer: customer.clone(),
            vps: vps.clone(),
            product,
            period: period.start,
        },
        due,
        email,
        methods: inv.settings.billing.payment_methods.clone(),
        site: site_url(inv, ""),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewCustomerReq {
    name: String,
    #[serde(default)]
    company: Option<String>,
    email: String,
    #[serde(default)]
    language: Option<String>,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrderReq {
    product: String,
    location: String,
    os: String,
    #[serde(default)]
    appliance: Option<String>,
    /// For someone without an account (no `Authorization` header).
    #[serde(default)]
    customer: Option<NewCustomerReq>,
}

pub(super) async fn order(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ClientAddr(addr): ClientAddr,
    JsonBody(req): JsonBody<OrderReq>,
) -> Result<Response, ApiError> {
    let stripe = checkout(&app)?;
    let existing = match bearer(&headers) {
        Some(_) => {
            let a = authenticate(&app, &headers).await?;
            a.require(crate::apikeys::Scope::Billing)?;
            app.quota(&a, "order")?;
            Some(a.customer)
        }
        None => None,
    };
    let new = who_orders(existing.as_ref(), req.customer)?;
    // An order by someone new costs an argon2 hash: throttled per address like a failed
    // login (each one counts), and per e-mail.
    let _permit = match (&new, addr) {
        (Some(n), addr) => {
            let mut keys = vec![format!("order:{}", n.email.trim().to_lowercase())];
            keys.extend(addr.map(throttle::addr_key));
            let permit = app.throttle.admit(&keys, Instant::now())?;
            let settings = app.store.snapshot().await?.inv.settings.hooks.clone();
            let (free, max) = throttle::login_limits(&settings);
            app.throttle.failed(&keys, free, max, Instant::now());
            Some(permit)
        }
        (None, _) => None,
    };
    let product: model::ProductId = req
        .product
        .parse()
        .map_err(|_| ApiError::unprocessable("unknown_product", "no such product"))?;
    let location = check_line(&req.location, MAX_NAME)
        .map_err(|e| ApiError::unprocessable("unknown_location", format!("location {e}")))?;
    let offer = check_order(
        &app,
        existing.clone(),
        product.clone(),
        location.clone(),
        req.os,
        req.appliance,
        new.as_ref().map(|n| n.email.trim().to_owned()),
    )
    .await?;
    let (customer, email) = order_customer(&app, existing, new).await?;
    let site = offer.site;
    let purchase = Purchase::Order {
        customer,
        product: product.clone(),
        location,
        os: offer.os,
        appliance: offer.appliance,
    };
    let snapshot = app.store.snapshot().await?;
    let inv = &snapshot.inv;
    let plan =
        orderable(inv, &product).map_err(|e| ApiError::unprocessable("unknown_product", e))?;
    let country = match &purchase {
        Purchase::Order {
            customer: OrderCustomer::Existing(c),
            ..
        } => inv.customers.get(c).and_then(|c| c.country.as_ref()),
        _ => None,
    };
    let due = Due::of_lines(inv, order_lines(plan, None), country);
    let req = CheckoutRequest {
        purchase,
        lines: checkout_lines(&due),
        currency: due.currency.to_string(),
        methods: inv.settings.billing.payment_methods.clone(),
        success_url: format!("{site}/panel/?ordered=1"),
        cancel_url: format!("{site}/order/"),
        email,
    };
    let url = stripe.create(&req).await.map_err(provider_error)?;
    tracing::info!(%product, "checkout for an order");
    Ok(axum::Json(json!({"url": url})).into_response())
}

/// The new customer's details, when whoever orders has no account: a logged-in customer
/// orders for itself, anyone else gives details to open an account.
fn who_orders(
    existing: Option<&CustomerId>,
    customer: Option<NewCustomerReq>,
) -> Result<Option<NewCustomerReq>, ApiError> {
    match (existing, customer) {
        (Some(_), Some(_)) => Err(ApiError::unprocessable(
            "bad_order",
            "a logged-in customer orders for itself: leave out `customer`",
        )),
        (Some(_), None) => Ok(None),
        (None, None) => Err(ApiError::unprocessable(
            "bad_order",
            "log in, or give `customer` details to open an account",
        )),
        (None, Some(n)) => Ok(Some(n)),
    }
}

/// The lines of a Checkout Session: the invoice's lines and tax, summing to its total.
fn checkout_lines(due: &Due) -> Vec<CheckoutLine> {
    due.checkout_lines()
        .into_iter()
        .map(|(name, amount)| CheckoutLine { name, amount })
        .collect()
}

/// What an order is for, as the head offers it.
struct Offer {
    site: String,
    os: OsId,
    appliance: Option<ApplianceId>,
}

/// Checks an order on the fresh head: catalog, product, and that placement would succeed now.
async fn check_order(
    app: &App,
    existing: Option<CustomerId>,
    product: model::ProductId,
    location: String,
    os: String,
    appliance: Option<String>,
    new_email: Option<String>,
) -> Result<Offer, ApiError> {
    app.store
        .read(move |v| -> Result<_, ApiError> {
            let inv = &v.snapshot.inv;
            if let Some(email) = &new_email
                && inv.customers.values().any(|c| {
                    c.email
                        .as_ref()
                        .is_some_and(|e| e.as_str().eq_ignore_ascii_case(email))
                })
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "email_taken",
                    "an account with this e-mail exists: log in to order",
                ));
            }
            let cat = catalog(v.snapshot.bootstraps.clone());
            let os = cat.os(&os).map_err(Refusal::from)?;
            let appliance = appliance
                .as_deref()
                .map(|a| cat.appliance(&os, a))
                .transpose()
                .map_err(Refusal::from)?;
            inv.products
                .get(&product)
                .filter(|p| matches!(p.kind, ProductKind::Plan(_)) && !p.private)
                .ok_or_else(|| ApiError::unprocessable("unknown_product", "no such product"))?;
            let today = Utc::now().date_naive();
            dry_place(inv, existing.as_ref(), &product, &location, &os, today)?;
            Ok(Offer {
                site: site_url(inv, ""),
                os,
                appliance,
            })
        })
        .await?
}

/// Who the order is for, and the e-mail Stripe's page is filled in with.
async fn order_customer(
    app: &App,
    existing: Option<CustomerId>,
    new: Option<NewCustomerReq>,
) -> Result<(OrderCustomer, Option<String>), ApiError> {
    match (existing, new) {
        (Some(c), _) => {
            let email = app
                .store
                .snapshot()
                .await?
                .inv
                .customers
                .get(&c)
                .and_then(|x| x.email.as_ref())
                .map(|e| e.as_str().to_owned());
            Ok((OrderCustomer::Existing(c), email))
        }
        (None, Some(n)) => {
            let nc = new_customer(app, n).await?;
            let email = nc.email.as_str().to_owned();
            Ok((OrderCustomer::New(nc), Some(email)))
        }
        (None, None) => Err(ApiError::not_found()),
    }
}

async fn new_customer(app: &App, n: NewCustomerReq) -> Result<NewCustomer, ApiError> {
    let field = |f: &str, e: String| ApiError::unprocessable("bad_customer", format!("{f}: {e}"));
    let name = check_line(&n.name, MAX_NAME).map_err(|e| field("name", e))?;
    let company = n
        .company
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .map(|c| check_line(c, MAX_NAME))
        .transpose()
        .map_err(|e| field("company", e))?;
    let email = n.email.trim().parse().map_err(|e| field("email", e))?;
    let language = model::values::parse_keyword::<Language>(n.language.as_deref().unwrap_or("en"))
        .map_err(|e| field("language", e))?;
    super::password_rule(&n.password).map_err(|e| field("password", e))?;
    let settings = app.store.snapshot().await?.inv.settings.hooks.clone();
    let password_hash = app.hash_new_password(&settings, n.password).await?;
    Ok(NewCustomer {
        name,
        company,
        email,
        language,
        password_hash,
    })
}
