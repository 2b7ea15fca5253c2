//! Stripe Checkout over its REST API: `POST /v1/checkout/sessions` (form-encoded, the secret key
//! as a bearer token) opens a session, in `subscription` mode with the plan's recurring Price, or
//! in `payment` mode with an inline price for a wallet top-up. The session carries our token as
//! `client_reference_id` and the business, kind and plan as metadata; Stripe sends the buyer back
//! to the engine's page for the session either way.
//!
//! Stripe reports the outcome to `POST /billing/stripe/webhook`, signed with the endpoint's
//! secret: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`
//! (several `v1` while a secret is rolled). [`verify_signature`] checks it in constant time and
//! refuses timestamps more than [`TOLERANCE_SECS`] away, so a captured delivery cannot be
//! replayed later; replays inside the window are harmless because completing a session is
//! idempotent.

use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::Purchase;
use super::provider::{Hosted, Order, PaymentProvider, ProviderError, ProviderKind};
use crate::config::{BillingSettings, StripePrices};

/// How long a request to Stripe may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// How far a webhook's signed timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

pub const SESSION_COMPLETED: &str = "checkout.session.completed";
pub const ASYNC_PAYMENT_SUCCEEDED: &str = "checkout.session.async_payment_succeeded";
pub const SESSION_EXPIRED: &str = "checkout.session.expired";

/// The Stripe provider.
pub struct Stripe {
    http: reqwest::Client,
    api_url: String,
    secret_key: Option<SecretString>,
    prices: StripePrices,
}

impl Stripe {
    pub fn new(settings: &BillingSettings) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            api_url: settings.stripe.api_url.trim_end_matches('/').to_owned(),
            secret_key: settings.stripe.secret_key.clone(),
            prices: settings.stripe.prices.clone(),
        }
    }

    /// The form of a Checkout Session for `order`.
    fn form(&self, order: &Order<'_>) -> Result<Vec<(String, String)>, ProviderError> {
        let mut form: Vec<(String, String)> = vec![
            ("success_url".into(), order.return_url.into()),
            ("cancel_url".into(), order.return_url.into()),
            ("client_reference_id".into(), order.token.into()),
            ("metadata[tenant_id]".into(), order.tenant.0.to_string()),
            ("metadata[kind]".into(), order.purchase.kind().into()),
            ("line_items[0][quantity]".into(), "1".into()),
        ];
        match order.purchase {
            Purchase::Plan(plan) => {
                let price = match plan {
                    super::Plan::Starter => &self.prices.starter,
                    super::Plan::Pro => &self.prices.pro,
                    super::Plan::Enterprise => &self.prices.enterprise,
                };
                let price = price.clone().ok_or_else(|| {
                    ProviderError::Unreachable(format!(
                        "no Stripe price for the {} plan",
                        plan.as_str()
                    ))
                })?;
                form.push(("mode".into(), "subscription".into()));
                form.push(("line_items[0][price]".into(), price));
                form.push(("metadata[plan]".into(), plan.as_str().into()));
            }
            Purchase::TopUp { amount_cents } => {
                form.push(("mode".into(), "payment".into()));
                form.push((
                    "line_items[0][price_data][currency]".into(),
                    order.currency.into(),
                ));
                form.push((
                    "line_items[0][price_data][unit_amount]".into(),
                    amount_cents.to_string(),
                ));
                form.push((
                    "line_items[0][price_data][product_data][name]".into(),
                    "CallGenius wallet top-up".into(),
                ));
            }
        }
        Ok(form)
    }

    async fn create(&self, order: &Order<'_>) -> Result<Hosted, ProviderError> {
        let key = self
            .secret_key
            .as_ref()
            .ok_or_else(|| ProviderError::Unreachable("no Stripe secret key".into()))?;
        let response = self
            .http
            .post(format!("{}/v1/checkout/sessions", self.api_url))
            .bearer_auth(key.expose_secret())
            // A retried request opens the same session, not a second one.
            .header("Idempotency-Key", order.token)
            .form(&self.form(order)?)
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            ProviderError::Unreachable(format!("unreadable answer: {}", e.without_url()))
        })?;
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_owned);
            return Err(ProviderError::Refused {
                status: status.as_u16(),
                message: message.replace(key.expose_secret(), "[redacted]"),
            });
        }
        match (body["id"].as_str(), body["url"].as_str()) {
            (Some(id), Some(url)) => Ok(Hosted {
                url: url.to_owned(),
                provider_session_id: Some(id.to_owned()),
            }),
            _ => Err(ProviderError::Unreachable(
                "the answer has no session id or url".into(),
            )),
        }
    }
}

impl PaymentProvider for Stripe {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Stripe
    }

    fn create_checkout<'a>(
        &'a self,
        order: &'a Order<'a>,
    ) -> BoxFuture<'a, Result<Hosted, ProviderError>> {
        Box::pin(self.create(order))
    }
}

/// Checks a `Stripe-Signature` header against `body` and the endpoint's `secret` at `now`
/// (unix seconds). Stripe signs exactly as CallGenius signs its own webhooks (`t=…,v1=…` over
/// `"<t>.<raw body>"`), so this is that scheme's verification with Stripe's tolerance.
pub fn verify_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), &'static str> {
    use crate::events::signature::{self, VerifyError};
    signature::verify(secret, header, body, now, TOLERANCE_SECS).map_err(|e| match e {
        VerifyError::Malformed => "no timestamp or no v1 signature",
        VerifyError::Expired => "timestamp outside the tolerance",
        VerifyError::Mismatch => "no matching v1 signature",
    })
}

/// A webhook event: its type and the object it is about.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: String,
    object: Value,
}

/// The parts of a Checkout Session an event carries that the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionObject {
    pub id: String,
    pub client_reference_id: Option<String>,
    pub payment_status: Option<String>,
}

impl SessionObject {
    /// Paid, or nothing to pay: not `unpaid` (an asynchronous payment still pending).
    pub fn is_paid(&self) -> bool {
        self.payment_status.as_deref() != Some("unpaid")
    }
}

impl Event {
    pub fn parse(body: &[u8]) -> Result<Event, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let kind = value["type"]
            .as_str()
            .ok_or("the event has no type")?
            .to_owned();
        Ok(Event {
            kind,
            object: value["data"]["object"].clone(),
        })
    }

    /// The Checkout Session the event is about, if it is about one.
    pub fn checkout_session(&self) -> Option<SessionObject> {
        if self.object["object"] != "checkout.session" {
            return None;
        }
        let text = |field: &str| self.object[field].as_str().map(str::to_owned);
        Some(SessionObject {
            id: text("id")?,
            client_reference_id: text("client_reference_id"),
            payment_status: text("payment_status"),
        })
    }
}

#[cfg(test)]
mod tests {
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    use super::*;

    fn sign(secret: &str, t: &str, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn accepts_stripes_signature_scheme_and_nothing_else() {
        let body = br#"{"type":"checkout.session.completed"}"#;
        let now = 1_700_000_000;
        let good = sign("whsec_test", "1700000000", body);
        let header = format!("t=1700000000,v1={good}");
        assert_eq!(verify_signature("whsec_test", &header, body, now), Ok(()));
        // Any of several v1 signatures (a secret being rolled); v0 and unknown parts ignored.
        let other = sign("whsec_old", "1700000000", body);
        let rolled = format!("t=1700000000, v1={other}, v1={good}, v0=abc, x=1");
        assert_eq!(verify_signature("whsec_test", &rolled, body, now), Ok(()));
        // Within the tolerance on both sides, not beyond.
        assert_eq!(
            verify_signature("whsec_test", &header, body, now + 300),
            Ok(())
        );
        assert_eq!(
            verify_signature("whsec_test", &header, body, now - 300),
            Ok(())
        );
        assert!(verify_signature("whsec_test", &header, body, now + 301).is_err());
        assert!(verify_signature("whsec_test", &header, body, now - 301).is_err());
        // The wrong secret, another body, a changed timestamp, or nothing usable.
        assert!(verify_signature("whsec_other", &header, body, now).is_err());
        assert!(verify_signature("whsec_test", &header, b"{}", now).is_err());
        let shifted = format!("t=1700000001,v1={good}");
        assert!(verify_signature("whsec_test", &shifted, body, now).is_err());
        for bad in [
            "",
            "t=1700000000",
            &format!("v1={good}"),
            "t=x,v1=00",
            "t=1700000000,v1=zz",
        ] {
            assert!(
                verify_signature("whsec_test", bad, body, now).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_the_checkout_session_of_an_event() {
        let event = Event::parse(
            br#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":
                {"object":"checkout.session","id":"cs_test_1","client_reference_id":"abc",
                 "payment_status":"paid"}}}"#,
        )
        .unwrap();
        assert_eq!(event.kind, SESSION_COMPLETED);
        let session = event.checkout_session().unwrap();
        assert_eq!(session.id, "cs_test_1");
        assert_eq!(session.client_reference_id.as_deref(), Some("abc"));
        assert!(session.is_paid());
        let invoice = Event::parse(
            br#"{"type":"invoice.paid","data":{"object":{"object":"invoice","id":"in_1"}}}"#,
        )
        .unwrap();
        assert!(invoice.checkout_session().is_none());
        assert!(Event::parse(b"not json").is_err());
        assert!(Event::parse(br#"{"data":{}}"#).is_err());
    }
}
