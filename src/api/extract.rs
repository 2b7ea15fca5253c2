//! Extractors: the JSON body (with errors in the API's own shape), field validation that reports
//! every invalid field at once, and the authenticated caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use serde_json::{Map, Value};

use super::error::{ApiError, FieldErrors};
use crate::domain::{Role, TenantId, TokenId, UserId};

/// A request body that must be a JSON object. Parsing happens here; validation in [`Fields`].
#[derive(Debug)]
pub struct JsonBody(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::field(
                "body",
                "must be JSON sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("could not read the request body".into())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::field("body", "is required"));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonBody(map)),
            Ok(_) => Err(ApiError::field("body", "must be a JSON object")),
            Err(error) => Err(ApiError::BadRequest(format!("malformed JSON: {error}"))),
        }
    }
}

/// A field that may be absent, explicitly `null`, or set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Optional<T> {
    Absent,
    Null,
    Value(T),
}

impl<T> Optional<T> {
    /// The value if one was sent.
    pub fn value(self) -> Option<T> {
        match self {
            Optional::Value(v) => Some(v),
            Optional::Absent | Optional::Null => None,
        }
    }

    /// The value, with absent and null both meaning `default`.
    pub fn or(self, default: T) -> T {
        match self {
            Optional::Value(v) => v,
            Optional::Absent | Optional::Null => default,
        }
    }

    /// For partial updates: absent keeps `current`, null resets to `default`.
    pub fn patch(self, current: T, default: T) -> T {
        match self {
            Optional::Absent => current,
            Optional::Null => default,
            Optional::Value(v) => v,
        }
    }
}

/// Reads fields from a JSON object, collecting every problem before failing.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: FieldErrors,
}

impl<'a> Fields<'a> {
    pub fn new(body: &'a JsonBody) -> Self {
        Self {
            map: &body.0,
            errors: FieldErrors::new(),
        }
    }

    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// Records `result`'s error under `field`, passing the value through.
    pub fn check<T>(&mut self, field: &str, result: Result<T, &str>) -> Option<T> {
        result.map_err(|message| self.error(field, message)).ok()
    }

    pub fn is_present(&self, field: &str) -> bool {
        self.map.contains_key(field)
    }

    /// A required, non-blank string of at most `max_chars` characters, trimmed.
    pub fn required_string(&mut self, field: &str, max_chars: usize) -> Option<String> {
        match self.optional_string(field, max_chars) {
            Optional::Value(v) => Some(v),
            Optional::Absent | Optional::Null => {
                if !self.errors.contains_key(field) {
                    self.error(field, "is required");
                }
                None
            }
        }
    }

    /// An optional string; blank counts as absent-with-error ("must not be blank").
    pub fn optional_string(&mut self, field: &str, max_chars: usize) -> Optional<String> {
        match self.map.get(field) {
            None => Optional::Absent,
            Some(Value::Null) => Optional::Null,
            Some(Value::String(s)) => {
                let trimmed = s.trim();
                if trimmed.is_empty() {
                    self.error(field, "must not be blank");
                    Optional::Absent
                } else if trimmed.chars().count() > max_chars {
                    self.error(field, format!("must be at most {max_chars} characters"));
                    Optional::Absent
                } else {
                    Optional::Value(trimmed.to_owned())
                }
            }
            Some(_) => {
                self.error(field, "must be a string");
                Optional::Absent
            }
        }
    }

    /// A string taken exactly as sent (passwords), required.
    pub fn raw_string(&mut self, field: &str) -> Option<String> {
        match self.map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::String(_)) | None | Some(Value::Null) => {
                self.error(field, "is required");
                None
            }
            Some(_) => {
                self.error(field, "must be a string");
                None
            }
        }
    }

    /// An optional integer within `min..=max`.
    pub fn optional_int(&mut self, field: &str, min: i64, max: i64) -> Optional<i64> {
        match self.map.get(field) {
            None => Optional::Absent,
            Some(Value::Null) => Optional::Null,
            Some(value) => match value.as_i64() {
                Some(n) if (min..=max).contains(&n) => Optional::Value(n),
                Some(_) => {
                    self.error(field, format!("must be between {min} and {max}"));
                    Optional::Absent
                }
                None => {
                    self.error(field, "must be an integer");
                    Optional::Absent
                }
            },
        }
    }

    /// A required positive integer id.
    pub fn required_id(&mut self, field: &str) -> Option<i64> {
        match self.optional_int(field, 1, i64::MAX) {
            Optional::Value(v) => Some(v),
            Optional::Absent | Optional::Null => {
                if !self.errors.contains_key(field) {
                    self.error(field, "is required");
                }
                None
            }
        }
    }

    /// Fails with every collected error, or succeeds when there were none.
    pub fn finish(self) -> Result<(), ApiError> {
        self.finish_with(Some(()))
    }

    /// Like [`Fields::finish`], returning the parsed `value` (the readers above return `None`
    /// only after recording an error, so zip them: `a.zip(b)`).
    pub fn finish_with<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => Err(ApiError::Validation(self.errors)),
        }
    }
}

/// The authenticated caller, resolved once per request by [`super::auth::authenticate`].
#[derive(Debug, Clone)]
pub struct Auth {
    pub token_id: TokenId,
    pub user_id: UserId,
    pub email: String,
    pub tenant_id: TenantId,
    pub tenant_name: String,
    /// The user's role in the active tenant; `None` if they have since left it.
    pub role: Option<Role>,
}

impl Auth {
    /// The active tenant, provided the caller holds at least `min` in it.
    pub fn require(&self, min: Role) -> Result<TenantId, ApiError> {
        match self.role {
            Some(role) if role >= min => Ok(self.tenant_id),
            Some(role) => Err(ApiError::Forbidden(format!(
                "the {} role cannot do this; {} or above is required",
                role.as_str(),
                min.as_str()
            ))),
            None => Err(ApiError::Forbidden(
                "not a member of the active business".into(),
            )),
        }
    }

    /// The active tenant, for any member.
    pub fn tenant(&self) -> Result<TenantId, ApiError> {
        self.require(Role::Member)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Auth>()
            .cloned()
            .ok_or(ApiError::INVALID_TOKEN)
    }
}

/// A path id segment; a non-numeric id is simply not found.
pub fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound("not found".into()))
}

/// One value of a raw query string (`agent_id` in `agent_id=4&x=1`); `None` if absent or the
/// query is malformed.
pub fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
    pairs.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}
