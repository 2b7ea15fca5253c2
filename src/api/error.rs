//! The API's one error type and its single table from error to HTTP status.
//!
//! Every error body is JSON: `{ "message": … }`, plus an `errors` object (field → messages) for
//! 422. Server errors say nothing internal in the body; their cause travels in a response
//! extension and is logged once by the observing middleware ([`super::observe`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::accounts::AccountError;
use crate::agent::service::AgentError;
use crate::store::StoreError;

/// Field name → every message about that field.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// The JSON error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub message: String,
    /// Present on 422 only: each invalid field with its messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<FieldErrors>,
}

#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not parseable JSON.
    BadRequest(String),
    /// 401: no token, or one that is unknown or revoked.
    Unauthorized(&'static str),
    /// 402: the business has no trial, included minutes or wallet left for a new call.
    PaymentRequired(String),
    /// 403: a valid token acting beyond its role or membership.
    Forbidden(String),
    /// 404: no such resource, or another tenant's.
    NotFound(String),
    /// 405.
    MethodNotAllowed,
    /// 409: the resource's state forbids the request (an agent being deleted).
    Conflict(String),
    /// 413.
    PayloadTooLarge,
    /// 422 with per-field messages.
    Validation(FieldErrors),
    /// 429.
    RateLimited { retry_after_secs: u64 },
    /// 429: a capacity limit (the business's concurrent calls, or this node's) is reached; the
    /// message says which.
    Busy {
        message: String,
        retry_after_secs: u64,
    },
    /// 502: an upstream service (the payment provider) refused or failed; the message is its
    /// explanation, safe to show.
    BadGateway { message: String, cause: String },
    /// 503: a dependency (the database) is unreachable.
    Unavailable(String),
    /// 500: the cause is logged, never returned.
    Internal(String),
}

/// The cause of a 5xx, carried to the logging middleware in the response's extensions.
#[derive(Debug, Clone)]
pub struct ErrorCause(pub String);

impl ApiError {
    /// The 401 for a request without a usable token.
    pub const INVALID_TOKEN: ApiError = ApiError::Unauthorized("missing or invalid token");

    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Validation(BTreeMap::from([(field.to_owned(), vec![message.into()])]))
    }

    pub fn internal(error: impl std::error::Error) -> ApiError {
        let mut cause = error.to_string();
        let mut source = error.source();
        while let Some(inner) = source {
            cause.push_str(": ");
            cause.push_str(&inner.to_string());
            source = inner.source();
        }
        ApiError::Internal(cause)
    }

    /// The logged cause of a server error (empty for client errors).
    pub fn cause(&self) -> &str {
        match self {
            ApiError::Internal(cause) | ApiError::Unavailable(cause) => cause,
            ApiError::BadGateway { cause, .. } => cause,
            _ => "",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::PaymentRequired(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } | ApiError::Busy { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> String {
        match self {
            ApiError::BadRequest(m) | ApiError::Forbidden(m) | ApiError::NotFound(m) => m.clone(),
            ApiError::Unavailable(m) | ApiError::Conflict(m) => m.clone(),
            ApiError::PaymentRequired(m) | ApiError::BadGateway { message: m, .. } => m.clone(),
            ApiError::Busy { message, .. } => message.clone(),
            ApiError::Unauthorized(m) => (*m).into(),
            ApiError::MethodNotAllowed => "method not allowed on this route".into(),
            ApiError::PayloadTooLarge => "request body is too large".into(),
            ApiError::Validation(_) => "the given data was invalid".into(),
            ApiError::RateLimited { .. } => "too many requests; retry later".into(),
            ApiError::Internal(_) => "internal server error".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            message: self.message(),
            errors: match &self {
                ApiError::Validation(errors) => Some(errors.clone()),
                _ => None,
            },
        };
        let mut response = (status, Json(body)).into_response();
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Busy {
                retry_after_secs, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Internal(cause)
            | ApiError::Unavailable(cause)
            | ApiError::BadGateway { cause, .. } => {
                response.extensions_mut().insert(ErrorCause(cause));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiError::NotFound("not found".into()),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::calls::HandOutError> for ApiError {
    fn from(error: crate::calls::HandOutError) -> Self {
        match error {
            crate::calls::HandOutError::Refused(_) => ApiError::PaymentRequired(error.to_string()),
            crate::calls::HandOutError::Busy(busy) => ApiError::Busy {
                message: busy.to_string(),
                retry_after_secs: crate::calls::BUSY_RETRY_AFTER_SECS,
            },
            crate::calls::HandOutError::Store(store) => store.into(),
        }
    }
}

impl From<crate::billing::BillingError> for ApiError {
    fn from(error: crate::billing::BillingError) -> Self {
        use crate::billing::BillingError;
        match error {
            BillingError::CheckoutNotFound
            | BillingError::CheckoutExpired
            | BillingError::StripeNotConfigured => ApiError::NotFound(error.to_string()),
            BillingError::BadSignature(_) | BillingError::BadEvent(_) => {
                ApiError::BadRequest(error.to_string())
            }
            // The provider's own explanation of a refusal is shown; a network failure's detail
            // is only logged.
            BillingError::Provider(provider) => ApiError::BadGateway {
                message: match &provider {
                    crate::billing::provider::ProviderError::Refused { .. } => provider.to_string(),
                    crate::billing::provider::ProviderError::Unreachable(_) => {
                        "the payment provider could not be reached".into()
                    }
                },
                cause: provider.to_string(),
            },
            BillingError::Store(store) => store.into(),
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> Self {
        match error {
            AgentError::NotFound | AgentError::VersionNotFound => {
                ApiError::NotFound(error.to_string())
            }
            AgentError::Deleting => {
                ApiError::Conflict("the agent is being deleted and takes no changes".into())
            }
            AgentError::Store(store) => store.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::EmailTaken => ApiError::field("email", "has already been taken"),
            AccountError::InvalidCredentials => ApiError::Unauthorized("invalid email or password"),
            AccountError::NotMember | AccountError::OwnerOnly => {
                ApiError::Forbidden(error.to_string())
            }
            AccountError::TenantNotFound | AccountError::MemberNotFound => {
                ApiError::NotFound(error.to_string())
            }
            AccountError::UserNotFound | AccountError::AlreadyMember => {
                ApiError::field("email", error.to_string())
            }
            AccountError::LastOwner => ApiError::field("user_id", error.to_string()),
            AccountError::Hashing => ApiError::Internal(error.to_string()),
            AccountError::Store(store) => store.into(),
        }
    }
}
