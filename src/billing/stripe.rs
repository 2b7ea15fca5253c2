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
//! replayed later; inside the window, an event is applied once by its id (see
//! [`crate::billing`]).
//!
//! A subscription then follows Stripe's lifecycle events: `invoice.paid` (a period paid for:
//! the first and every renewal; its subscription in `parent.subscription_details.subscription`,
//! or `subscription` in API versions before 2025, its period in `lines.data[].period`),
//! `invoice.payment_failed` and `customer.subscription.deleted` (the plan ends). [`Event`] reads
//! these shapes; [`Event::subscription_change`] says what one means for its subscription.

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
pub const INVOICE_PAID: &str = "invoice.paid";
pub const INVOICE_PAYMENT_FAILED: &str = "invoice.payment_failed";
pub const SUBSCRIPTION_DELETED: &str = "customer.subscription.deleted";

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

/// A webhook event: its id, type, when Stripe created it, and the object it is about.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    /// Unix seconds; what orders a subscription's events.
    pub created: Option<i64>,
    object: Value,
}

/// The parts of a Checkout Session an event carries that the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionObject {
    pub id: String,
    pub client_reference_id: Option<String>,
    pub payment_status: Option<String>,
    /// Set in `subscription` mode: the subscription and customer the checkout created.
    pub subscription: Option<String>,
    pub customer: Option<String>,
}

impl SessionObject {
    /// Paid, or nothing to pay: not `unpaid` (an asynchronous payment still pending).
    pub fn is_paid(&self) -> bool {
        self.payment_status.as_deref() != Some("unpaid")
    }
}

/// What a lifecycle event says about its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub subscription: String,
    pub customer: Option<String>,
    /// Unix seconds of the event.
    pub created: i64,
    pub state: SubscriptionState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    /// A period is paid for: `[start, end)` in unix seconds.
    Paid { start: i64, end: i64 },
    /// The payment failed, or the subscription was deleted.
    Ended,
}

/// An id that may be expanded into its object.
fn id_of(value: &Value) -> Option<String> {
    value
        .as_str()
        .or_else(|| value["id"].as_str())
        .map(str::to_owned)
}

impl Event {
    pub fn parse(body: &[u8]) -> Result<Event, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let kind = value["type"]
            .as_str()
            .ok_or("the event has no type")?
            .to_owned();
        let id = value["id"]
            .as_str()
            .ok_or("the event has no id")?
            .to_owned();
        Ok(Event {
            id,
            kind,
            created: value["created"].as_i64(),
            object: value["data"]["object"].clone(),
        })
    }

    /// The Checkout Session the event is about, if it is about one.
    pub fn checkout_session(&self) -> Option<SessionObject> {
        if self.object["object"] != "checkout.session" {
            return None;
        }
        let text = |field: &str| self.object[field].as_str().map(str::to_owned);
        let subscription = (self.object["mode"] == "subscription")
            .then(|| id_of(&self.object["subscription"]))
            .flatten();
        Some(SessionObject {
            id: text("id")?,
            client_reference_id: text("client_reference_id"),
            payment_status: text("payment_status"),
            subscription,
            customer: id_of(&self.object["customer"]),
        })
    }

    /// What a lifecycle event (`invoice.paid`, `invoice.payment_failed`,
    /// `customer.subscription.deleted`) says about its subscription. `Ok(None)`: another event,
    /// or an invoice that is not a subscription's. An event without `created`, or a paid
    /// invoice without a period, is unreadable.
    pub fn subscription_change(&self) -> Result<Option<SubscriptionChange>, String> {
        let object = &self.object;
        let (subscription, paid) = match self.kind.as_str() {
            INVOICE_PAID | INVOICE_PAYMENT_FAILED if object["object"] == "invoice" => {
                let subscription = id_of(&object["parent"]["subscription_details"]["subscription"])
                    .or_else(|| id_of(&object["subscription"]));
                (subscription, self.kind == INVOICE_PAID)
            }
            SUBSCRIPTION_DELETED if object["object"] == "subscription" => {
                (id_of(&object["id"]), false)
            }
            _ => return Ok(None),
        };
        let Some(subscription) = subscription else {
            return Ok(None);
        };
        let created = self.created.ok_or("the event has no created time")?;
        let state = if paid {
            // The subscription's line covers the period paid for; proration lines cover parts
            // of the previous one, so the line ending last is the period.
            let lines = object["lines"]["data"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            let (start, end) = lines
                .iter()
                .filter_map(|line| {
                    Some((
                        line["period"]["start"].as_i64()?,
                        line["period"]["end"].as_i64()?,
                    ))
                })
                .filter(|(start, end)| start < end)
                .max_by_key(|&(_, end)| end)
                .ok_or("the paid invoice has no line with a period")?;
            SubscriptionState::Paid { start, end }
        } else {
            SubscriptionState::Ended
        };
        Ok(Some(SubscriptionChange {
            subscription,
            customer: id_of(&object["customer"]),
            created,
            state,
        }))
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
            br#"{"id":"evt_2","type":"invoice.paid","data":{"object":{"object":"invoice","id":"in_1"}}}"#,
        )
        .unwrap();
        assert!(invoice.checkout_session().is_none());
        assert_eq!(
            invoice.subscription_change(),
            Ok(None),
            "not a subscription's invoice"
        );
        assert!(Event::parse(b"not json").is_err());
        assert!(
            Event::parse(br#"{"type":"invoice.paid","data":{}}"#).is_err(),
            "no id"
        );
        assert!(Event::parse(br#"{"data":{}}"#).is_err());
    }

    #[test]
    fn reads_what_lifecycle_events_say_about_their_subscription() {
        // API versions from 2025: the subscription under parent; a proration line first.
        let paid = Event::parse(
            br#"{"id":"evt_3","type":"invoice.paid","created":1700000100,"data":{"object":
                {"object":"invoice","id":"in_2","customer":"cus_1","billing_reason":"subscription_cycle",
                 "parent":{"type":"subscription_details","subscription_details":{"subscription":"sub_1"}},
                 "lines":{"data":[{"period":{"start":1690000000,"end":1695000000}},
                                  {"period":{"start":1700000000,"end":1702592000}}]}}}}"#,
        )
        .unwrap();
        assert_eq!(
            paid.subscription_change(),
            Ok(Some(SubscriptionChange {
                subscription: "sub_1".into(),
                customer: Some("cus_1".into()),
                created: 1_700_000_100,
                state: SubscriptionState::Paid {
                    start: 1_700_000_000,
                    end: 1_702_592_000
                },
            }))
        );
        // Older versions: the subscription at the top level.
        let failed = Event::parse(
            br#"{"id":"evt_4","type":"invoice.payment_failed","created":5,"data":{"object":
                {"object":"invoice","subscription":"sub_2","customer":"cus_2"}}}"#,
        )
        .unwrap();
        let change = failed.subscription_change().unwrap().unwrap();
        assert_eq!(
            (change.subscription.as_str(), change.state),
            ("sub_2", SubscriptionState::Ended)
        );
        let deleted = Event::parse(
            br#"{"id":"evt_5","type":"customer.subscription.deleted","created":6,"data":{"object":
                {"object":"subscription","id":"sub_3","customer":"cus_3","status":"canceled"}}}"#,
        )
        .unwrap();
        let change = deleted.subscription_change().unwrap().unwrap();
        assert_eq!((change.subscription.as_str(), change.created), ("sub_3", 6));
        // A paid invoice without a period, or any lifecycle event without created, is refused.
        let no_period = Event::parse(
            br#"{"id":"evt_6","type":"invoice.paid","created":7,"data":{"object":
                {"object":"invoice","subscription":"sub_2","lines":{"data":[]}}}}"#,
        )
        .unwrap();
        assert!(no_period.subscription_change().is_err());
        let undated = Event::parse(
            br#"{"id":"evt_7","type":"customer.subscription.deleted","data":{"object":
                {"object":"subscription","id":"sub_3"}}}"#,
        )
        .unwrap();
        assert!(undated.subscription_change().is_err());
    }
}
