//! The payment provider seam: whoever hosts the checkout page a buyer is sent to.
//!
//! A provider turns an [`Order`] into a [`Hosted`] page. Completion comes back separately (the
//! built-in page's confirmation, Stripe's signed webhook) and is handled in [`super::Billing`],
//! so a provider only has to open sessions.

use futures_util::future::BoxFuture;

use super::Purchase;
use crate::domain::TenantId;

/// The providers the engine speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    Builtin,
    Stripe,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Builtin => "builtin",
            ProviderKind::Stripe => "stripe",
        }
    }
}

/// A checkout to open.
#[derive(Debug)]
pub struct Order<'a> {
    /// The session's secret token: the built-in page's address, Stripe's
    /// `client_reference_id` (and idempotency key).
    pub token: &'a str,
    pub tenant: TenantId,
    pub purchase: Purchase,
    /// The plan's monthly price or the top-up's amount.
    pub amount_cents: i64,
    pub currency: &'a str,
    /// The engine's page for this session: where a provider sends the buyer back.
    pub return_url: &'a str,
}

/// A hosted checkout page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosted {
    pub url: String,
    /// The provider's id for the session (`cs_…` for Stripe); `None` for the built-in page.
    pub provider_session_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider answered with an error; `message` is its explanation, safe to show.
    #[error("the payment provider refused the checkout: {message}")]
    Refused { status: u16, message: String },
    /// No usable answer: a network error, a timeout, or a body that is not what it documents.
    #[error("the payment provider could not be reached: {0}")]
    Unreachable(String),
}

/// Opens hosted checkout sessions.
pub trait PaymentProvider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    fn create_checkout<'a>(
        &'a self,
        order: &'a Order<'a>,
    ) -> BoxFuture<'a, Result<Hosted, ProviderError>>;
}
