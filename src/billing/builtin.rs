//! The built-in provider, for self-hosters who take no payments: the checkout page is the
//! engine's own, at `/billing/checkout/{token}`, and confirming it activates the plan or credits
//! the wallet. The token (256 random bits) is the only credential, as with a hosted checkout
//! link; only its SHA-256 is stored.
//!
//! The pages are small self-contained HTML documents (no scripts, no external assets). The same
//! page shows a Stripe session's state to a buyer Stripe sends back, without a confirm button.

use futures_util::future::BoxFuture;

use super::money;
use super::provider::{Hosted, Order, PaymentProvider, ProviderError, ProviderKind};
use crate::store::billing::CheckoutRow;

/// The built-in provider: the session's page on the engine is the checkout.
pub struct Builtin;

impl PaymentProvider for Builtin {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Builtin
    }

    fn create_checkout<'a>(
        &'a self,
        order: &'a Order<'a>,
    ) -> BoxFuture<'a, Result<Hosted, ProviderError>> {
        Box::pin(async move {
            Ok(Hosted {
                url: order.return_url.to_owned(),
                provider_session_id: None,
            })
        })
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\">\
         <title>{title} · CallGenius</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}}\
         main{{max-width:30rem;margin:4rem auto;background:#fff;border-radius:12px;\
         padding:2rem 2.5rem;box-shadow:0 2px 12px rgba(0,0,0,.08)}}\
         h1{{font-size:1.4rem;margin:0 0 1rem}}dl{{display:grid;grid-template-columns:auto 1fr;\
         gap:.4rem 1.5rem;margin:1.5rem 0}}dt{{color:#5b6475}}dd{{margin:0;font-weight:600}}\
         button,a.button{{display:inline-block;font:inherit;font-weight:600;color:#fff;\
         background:#2f5bea;border:0;border-radius:8px;padding:.7rem 1.6rem;cursor:pointer;\
         text-decoration:none}}p.note{{color:#5b6475;font-size:.9rem}}\
         </style></head><body><main>{body}</main></body></html>\n",
        title = escape(title),
    )
}

/// What the session buys, as rows of a description list.
fn details(row: &CheckoutRow) -> String {
    let mut rows = vec![("Business", escape(&row.tenant_name))];
    match row.plan.as_deref() {
        Some(plan) => {
            rows.push(("Plan", escape(&title(plan))));
            rows.push((
                "Price",
                format!("{} a month", money(row.amount_cents, &row.currency)),
            ));
            rows.push((
                "Included",
                format!("{} minutes a month", row.included_seconds / 60),
            ));
            rows.push((
                "Beyond that",
                format!(
                    "{} a minute, from the wallet",
                    money(row.overage_cents_per_minute, &row.currency)
                ),
            ));
        }
        None => rows.push((
            "Wallet top-up",
            money(row.amount_cents, &row.currency).to_string(),
        )),
    }
    let items: String = rows
        .iter()
        .map(|(term, value)| format!("<dt>{term}</dt><dd>{value}</dd>"))
        .collect();
    format!("<dl>{items}</dl>")
}

fn title(plan: &str) -> String {
    super::Plan::parse(plan).map_or_else(|| plan.to_owned(), |p| p.title().to_owned())
}

fn heading(row: &CheckoutRow) -> String {
    match row.plan.as_deref() {
        Some(plan) => format!("Subscribe to {}", title(plan)),
        None => "Top up the wallet".to_owned(),
    }
}

/// The page of a session: a confirm button while a built-in session is open, the payment link
/// while a Stripe session waits, the result once completed.
pub fn page(row: &CheckoutRow) -> String {
    let heading = heading(row);
    let details = details(row);
    let body = match (row.status.as_str(), row.provider.as_str()) {
        ("completed", _) => {
            let done = match row.plan.as_deref() {
                Some(plan) => format!("The {} plan is active.", escape(&title(plan))),
                None => format!(
                    "The wallet was credited with {}.",
                    money(row.amount_cents, &row.currency)
                ),
            };
            format!(
                "<h1>Done</h1><p>{done}</p>{details}<p class=\"note\">You can close this page.</p>"
            )
        }
        ("open", "builtin") => format!(
            "<h1>{heading}</h1>{details}\
             <form method=\"post\"><button type=\"submit\">Confirm</button></form>\
             <p class=\"note\">This engine takes no payment: confirming activates it at once.</p>"
        ),
        ("open", _) => {
            let pay = row
                .url
                .as_deref()
                .map(|url| {
                    format!(
                        "<p><a class=\"button\" href=\"{}\">Continue to payment</a></p>",
                        escape(url)
                    )
                })
                .unwrap_or_default();
            format!(
                "<h1>{heading}</h1>{details}<p>Waiting for the payment to be confirmed. This \
                 page shows the result once it is.</p>{pay}"
            )
        }
        _ => format!("<h1>{heading}</h1><p>This checkout is no longer open.</p>"),
    };
    document(&heading, &body)
}

/// The page for a token that names no usable session.
pub fn not_found(reason: &str) -> String {
    document(
        "Checkout not found",
        &format!(
            "<h1>Checkout not found</h1><p>{}.</p><p class=\"note\">Start a new checkout from \
             your account.</p>",
            escape(reason)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: &str, provider: &str, plan: Option<&str>) -> CheckoutRow {
        CheckoutRow {
            id: 1,
            tenant_id: 1,
            tenant_name: "Harbour <Dental>".into(),
            kind: if plan.is_some() { "plan" } else { "top_up" }.into(),
            plan: plan.map(str::to_owned),
            amount_cents: 14_900,
            currency: "usd".into(),
            included_seconds: 350 * 60,
            overage_cents_per_minute: 12,
            provider: provider.into(),
            provider_session_id: None,
            status: status.into(),
            url: Some("https://checkout.example/c/pay/cs_1".into()),
            created_at: String::new(),
            expires_at: String::new(),
            completed_at: None,
        }
    }

    #[test]
    fn an_open_builtin_session_shows_the_terms_and_a_confirm_form() {
        let html = page(&row("open", "builtin", Some("pro")));
        assert!(html.contains("Subscribe to Pro"), "{html}");
        assert!(html.contains("149.00 USD a month"));
        assert!(html.contains("350 minutes a month"));
        assert!(html.contains("0.12 USD a minute"));
        assert!(html.contains("<form method=\"post\">"));
        assert!(html.contains("Harbour &lt;Dental&gt;"), "escaped");
        assert!(!html.contains("<script"));
    }

    #[test]
    fn a_stripe_session_has_no_confirm_button_and_a_completed_one_says_so() {
        let html = page(&row("open", "stripe", Some("starter")));
        assert!(!html.contains("<form"));
        assert!(html.contains("https://checkout.example/c/pay/cs_1"));
        let html = page(&row("completed", "builtin", None));
        assert!(html.contains("The wallet was credited with 149.00 USD."));
        assert!(!html.contains("<form"));
    }
}
