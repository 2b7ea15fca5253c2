//! Registration, login, logout and `GET /api/me`, plus the middleware that resolves the bearer
//! token of every `/api` request and applies the per-token rate limit.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ErrorBody};
use super::extract::{Auth, Fields, JsonBody};
use super::ratelimit::Decision;
use super::{AppState, JsonResult};
use crate::accounts::{self, Session};
use crate::config::ClientAddressSource;
use crate::domain::{Email, Password, Role, TenantId, TokenId, UserId};
use crate::store::accounts as store;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

/// Resolves `Authorization: Bearer …` once per request. A valid token puts an [`Auth`] in the
/// request's extensions (handlers that need one extract it, others ignore it) and is charged
/// against its rate limit; the limit headers go on every response it gets.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(token) = bearer_token(req.headers()) else {
        return next.run(req).await;
    };
    let owner = match store::token_owner(&state.db, &accounts::token_hash(token)).await {
        Ok(Some(owner)) => owner,
        // Unknown or revoked: routes that need a token answer 401 through the `Auth`
        // extractor; public ones (login with a stale saved token) still work.
        Ok(None) => return next.run(req).await,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let token_id = TokenId(owner.token_id);
    let decision = state.limiters.check_token(token_id);
    let mut response = match decision {
        Decision::Limited {
            retry_after_secs, ..
        } => ApiError::RateLimited { retry_after_secs }.into_response(),
        Decision::Allowed { .. } => {
            req.extensions_mut().insert(Auth {
                token_id,
                user_id: UserId(owner.user_id),
                email: owner.email,
                tenant_id: TenantId(owner.tenant_id),
                tenant_name: owner.tenant_name,
                role: owner.role.as_deref().and_then(Role::parse),
            });
            next.run(req).await
        }
    };
    set_limit_headers(response.headers_mut(), decision);
    response
}

fn set_limit_headers(headers: &mut HeaderMap, decision: Decision) {
    let (limit, remaining) = match decision {
        Decision::Allowed { limit, remaining } => (limit, remaining),
        Decision::Limited { limit, .. } => (limit, 0),
    };
    // A stricter limit that refused the request (the webhook routes') has set its own.
    headers
        .entry("x-ratelimit-limit")
        .or_insert(HeaderValue::from(limit));
    headers
        .entry("x-ratelimit-remaining")
        .or_insert(HeaderValue::from(remaining));
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The client's address, for the login and register limits: the TCP peer, or, behind a trusted
/// proxy, the last `X-Forwarded-For` entry (the one that proxy appended; earlier entries are the
/// client's own claims). Requests that did not come through a socket (in-process tests) share
/// the unspecified address.
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let forwarded = || {
            let header = parts
                .headers
                .get_all("x-forwarded-for")
                .into_iter()
                .next_back()?;
            header
                .to_str()
                .ok()?
                .rsplit(',')
                .next()?
                .trim()
                .parse::<IpAddr>()
                .ok()
        };
        let socket = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip())
        };
        let ip = match state.limiters.client_address {
            ClientAddressSource::ForwardedFor => forwarded().or_else(socket),
            ClientAddressSource::Socket => socket(),
        };
        Ok(ClientAddr(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

fn limit_address(state: &AppState, ClientAddr(ip): &ClientAddr) -> Result<(), ApiError> {
    match state.limiters.check_address(*ip) {
        Decision::Allowed { .. } => Ok(()),
        Decision::Limited {
            retry_after_secs, ..
        } => Err(ApiError::RateLimited { retry_after_secs }),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserRef {
    pub id: i64,
    pub email: String,
}

/// A new token and the business it is scoped to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// Send as `Authorization: Bearer <token>`. Shown only here.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub user: UserRef,
    pub tenant: TenantRef,
}

impl TokenResponse {
    fn new(session: Session, email: String) -> Self {
        Self {
            token: session.token,
            token_type: "Bearer".into(),
            user: UserRef {
                id: session.user_id.0,
                email,
            },
            tenant: TenantRef {
                id: session.tenant.id,
                name: session.tenant.name,
            },
        }
    }
}

#[allow(dead_code)] // Documentation of the request bodies; parsing goes through `Fields`.
mod docs {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    pub struct RegisterRequest {
        pub email: String,
        /// 8 to 128 characters.
        pub password: String,
        /// The first business (tenant), 1 to 100 characters.
        pub business_name: String,
    }

    #[derive(ToSchema)]
    pub struct LoginRequest {
        pub email: String,
        pub password: String,
    }
}

/// Creates an account, its first business (with the new user as owner) and a token.
#[utoipa::path(
    post, path = "/api/auth/register", tag = "auth",
    request_body = docs::RegisterRequest,
    responses(
        (status = 201, body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Invalid fields, or the email is taken", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    )
)]
async fn register(
    State(state): State<AppState>,
    client: ClientAddr,
    body: JsonBody,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    limit_address(&state, &client)?;
    let mut fields = Fields::new(&body);
    let email = fields
        .raw_string("email")
        .and_then(|e| fields.check("email", Email::parse(&e)));
    let password = fields
        .raw_string("password")
        .and_then(|p| fields.check("password", Password::parse(p)));
    let business = fields.required_string("business_name", 100);
    let ((email, password), business) = fields.finish_with(email.zip(password).zip(business))?;
    let trial = state.billing.trial();
    let session = accounts::register(&state.db, email.clone(), password, &business, trial).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse::new(session, email.as_str().to_owned())),
    ))
}

/// Exchanges email and password for a token scoped to the user's last active business.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    request_body = docs::LoginRequest,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Unknown email or wrong password (same body for both)", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    body: JsonBody,
) -> JsonResult<TokenResponse> {
    limit_address(&state, &client)?;
    let mut fields = Fields::new(&body);
    let email = fields.raw_string("email");
    let password = fields.raw_string("password");
    let (email, password) = fields.finish_with(email.zip(password))?;
    let session = accounts::login(&state.db, &email, Password::for_login(password)).await?;
    let user = store::user_by_id(&state.db, session.user_id).await?;
    Ok(Json(TokenResponse::new(session, user.email)))
}

/// Revokes the calling token.
#[utoipa::path(
    post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody))
)]
async fn logout(State(state): State<AppState>, auth: Auth) -> Result<StatusCode, ApiError> {
    accounts::logout(&state.db, auth.token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipView {
    pub tenant: TenantRef,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserRef,
    /// The business this token acts on.
    pub tenant: TenantRef,
    /// The user's role there; null if they have left it since.
    pub role: Option<Role>,
    pub memberships: Vec<MembershipView>,
}

/// The calling user, the token's active business and all their memberships.
#[utoipa::path(
    get, path = "/api/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody))
)]
async fn me(State(state): State<AppState>, auth: Auth) -> JsonResult<MeResponse> {
    let memberships = store::memberships(&state.db, auth.user_id)
        .await?
        .into_iter()
        .filter_map(|m| {
            Some(MembershipView {
                tenant: TenantRef {
                    id: m.tenant_id,
                    name: m.tenant_name,
                },
                role: Role::parse(&m.role)?,
            })
        })
        .collect();
    Ok(Json(MeResponse {
        user: UserRef {
            id: auth.user_id.0,
            email: auth.email,
        },
        tenant: TenantRef {
            id: auth.tenant_id.0,
            name: auth.tenant_name,
        },
        role: auth.role,
        memberships,
    }))
}
