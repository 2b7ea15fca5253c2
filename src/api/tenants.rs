//! Businesses (tenants): list, create, switch the token's active one; and the members of the
//! active business.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::auth::TenantRef;
use super::error::{ApiError, ErrorBody};
use super::extract::{Auth, Fields, JsonBody, Optional, parse_id};
use super::{AppState, JsonResult};
use crate::accounts;
use crate::domain::{Email, Role, TenantId, UserId};
use crate::store::accounts::{self as store, MemberRow};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(switch_tenant))
        .routes(routes!(list_members, add_member))
        .routes(routes!(remove_member))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: i64,
    pub name: String,
    /// The caller's role in this business.
    pub role: Role,
    /// Whether the calling token acts on this business.
    pub active: bool,
    pub created_at: String,
}

#[allow(dead_code)] // Documentation of the request bodies; parsing goes through `Fields`.
mod docs {
    use utoipa::ToSchema;

    use crate::domain::Role;

    #[derive(ToSchema)]
    pub struct CreateTenantRequest {
        /// 1 to 100 characters.
        pub name: String,
    }

    #[derive(ToSchema)]
    pub struct SwitchTenantRequest {
        pub tenant_id: i64,
    }

    #[derive(ToSchema)]
    pub struct AddMemberRequest {
        /// An existing account's email.
        pub email: String,
        /// Defaults to `member`; only owners may grant `owner`.
        pub role: Option<Role>,
    }
}

/// The businesses the caller belongs to.
#[utoipa::path(
    get, path = "/api/tenants", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = Vec<TenantView>), (status = 401, body = ErrorBody))
)]
async fn list_tenants(State(state): State<AppState>, auth: Auth) -> JsonResult<Vec<TenantView>> {
    let rows = store::memberships(&state.db, auth.user_id).await?;
    let views = rows
        .into_iter()
        .filter_map(|m| {
            Some(TenantView {
                active: m.tenant_id == auth.tenant_id.0,
                id: m.tenant_id,
                name: m.tenant_name,
                role: Role::parse(&m.role)?,
                created_at: m.created_at,
            })
        })
        .collect();
    Ok(Json(views))
}

/// Creates another business owned by the caller. The token's active business is unchanged.
#[utoipa::path(
    post, path = "/api/tenants", tag = "tenants", security(("bearer" = [])),
    request_body = docs::CreateTenantRequest,
    responses((status = 201, body = TenantView), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_tenant(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    let mut fields = Fields::new(&body);
    let name = fields.required_string("name", 100);
    let name = fields.finish_with(name)?;
    let trial = state.billing.trial();
    let tenant = accounts::create_tenant(&state.db, auth.user_id, &name, trial).await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantView {
            id: tenant.id,
            name: tenant.name,
            role: Role::Owner,
            active: false,
            created_at: tenant.created_at,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SwitchResponse {
    pub tenant: TenantRef,
    pub role: Role,
}

/// Makes another business the calling token's active one.
#[utoipa::path(
    post, path = "/api/tenants/switch", tag = "tenants", security(("bearer" = [])),
    request_body = docs::SwitchTenantRequest,
    responses(
        (status = 200, body = SwitchResponse),
        (status = 401, body = ErrorBody),
        (status = 403, description = "The caller is not a member of that business", body = ErrorBody),
        (status = 404, description = "No such business", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
async fn switch_tenant(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> JsonResult<SwitchResponse> {
    let mut fields = Fields::new(&body);
    let tenant = fields.required_id("tenant_id");
    let tenant = fields.finish_with(tenant)?;
    let (tenant, role) =
        accounts::switch_tenant(&state.db, auth.token_id, auth.user_id, TenantId(tenant)).await?;
    Ok(Json(SwitchResponse {
        tenant: TenantRef {
            id: tenant.id,
            name: tenant.name,
        },
        role,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemberView {
    pub user_id: i64,
    pub email: String,
    pub role: Role,
    pub created_at: String,
}

impl TryFrom<MemberRow> for MemberView {
    type Error = ApiError;

    fn try_from(row: MemberRow) -> Result<Self, ApiError> {
        let role = Role::parse(&row.role).ok_or_else(|| {
            ApiError::Internal(format!("unknown role {:?} in memberships", row.role))
        })?;
        Ok(MemberView {
            user_id: row.user_id,
            email: row.email,
            role,
            created_at: row.created_at,
        })
    }
}

/// The members of the active business.
#[utoipa::path(
    get, path = "/api/members", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = Vec<MemberView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
async fn list_members(State(state): State<AppState>, auth: Auth) -> JsonResult<Vec<MemberView>> {
    let tenant = auth.tenant()?;
    let rows = store::members(&state.db, tenant).await?;
    Ok(Json(
        rows.into_iter()
            .map(MemberView::try_from)
            .collect::<Result<_, _>>()?,
    ))
}

/// Adds an existing account to the active business (owner or admin).
#[utoipa::path(
    post, path = "/api/members", tag = "tenants", security(("bearer" = [])),
    request_body = docs::AddMemberRequest,
    responses(
        (status = 201, body = MemberView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Below admin, or an admin granting owner", body = ErrorBody),
        (status = 422, description = "Invalid fields, no such account, or already a member", body = ErrorBody),
    )
)]
async fn add_member(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<(StatusCode, Json<MemberView>), ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let actor = auth.role.unwrap_or(Role::Member);
    let mut fields = Fields::new(&body);
    let email = fields
        .raw_string("email")
        .and_then(|e| fields.check("email", Email::parse(&e)));
    let role = match fields.optional_string("role", 16) {
        Optional::Value(role) => fields.check(
            "role",
            Role::parse(&role).ok_or("must be one of owner, admin, member"),
        ),
        Optional::Absent | Optional::Null => Some(Role::Member),
    };
    let (email, role) = fields.finish_with(email.zip(role))?;
    let member = accounts::add_member(&state.db, tenant, actor, &email, role).await?;
    Ok((StatusCode::CREATED, Json(member.try_into()?)))
}

/// Removes a member from the active business (owner or admin; owners only by owners, never the
/// last one).
#[utoipa::path(
    delete, path = "/api/members/{user_id}", tag = "tenants", security(("bearer" = [])),
    params(("user_id" = i64, Path, description = "The member's user id")),
    responses(
        (status = 204),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "The last owner cannot be removed", body = ErrorBody),
    )
)]
async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    Path(user_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let actor = auth.role.unwrap_or(Role::Member);
    let user = UserId(parse_id(&user_id)?);
    accounts::remove_member(&state.db, tenant, actor, user).await?;
    Ok(StatusCode::NO_CONTENT)
}
