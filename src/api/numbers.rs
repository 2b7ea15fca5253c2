//! Phone numbers: the carrier's inventory, provisioning, assignment to agents, release. Members
//! may read; owners and admins manage.

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{Auth, Fields, JsonBody, parse_id, query_value};
use super::{AppState, JsonResult};
use crate::carrier::numbers;
use crate::carrier::{CarrierError, Country, NumberKind, NumberQuery};
use crate::domain::{AgentId, Role, TenantId};
use crate::store::StoreError;
use crate::store::telephony::{self as store, NewNumber, NumberRow};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_numbers, provision_number))
        .routes(routes!(available_numbers))
        .routes(routes!(release_number))
        .routes(routes!(assign_number))
        .routes(routes!(unassign_number))
}

/// A provisioned number.
#[derive(Debug, Serialize, ToSchema)]
pub struct NumberView {
    pub id: i64,
    /// E.164.
    pub phone_number: String,
    /// National format.
    pub friendly_name: String,
    /// ISO code: AU, US, GB, CA, NZ, IE.
    pub country: String,
    /// `local`, `mobile` or `tollfree`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `sandbox` or `twilio`.
    pub carrier: String,
    /// The agent that answers its calls (and whose campaigns call from it by default).
    pub agent_id: Option<i64>,
    pub created_at: String,
}

impl From<NumberRow> for NumberView {
    fn from(row: NumberRow) -> Self {
        NumberView {
            friendly_name: numbers::check(&row.number)
                .map(|c| c.national)
                .unwrap_or_else(|_| row.number.clone()),
            id: row.id,
            phone_number: row.number,
            country: row.country,
            kind: row.kind,
            carrier: row.carrier,
            agent_id: row.agent_id,
            created_at: row.created_at,
        }
    }
}

/// A number on offer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AvailableView {
    pub phone_number: String,
    pub friendly_name: String,
    pub country: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[allow(dead_code)] // Documentation of request bodies; parsing goes through `Fields`.
mod docs {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    pub struct ProvisionRequest {
        /// E.164, e.g. +61255501234.
        pub phone_number: String,
        /// AU, US, GB, CA, NZ or IE: the number must belong to it.
        pub country: String,
    }

    #[derive(ToSchema)]
    pub struct AssignRequest {
        /// An agent of the business.
        pub agent_id: i64,
    }
}

fn carrier_error(error: CarrierError) -> ApiError {
    match error {
        CarrierError::Invalid(message) => ApiError::field("phone_number", message),
        other => ApiError::Unavailable(format!("the carrier: {other}")),
    }
}

/// The business's numbers, with the agent each is assigned to.
#[utoipa::path(
    get, path = "/api/numbers", tag = "numbers", security(("bearer" = [])),
    responses((status = 200, body = Vec<NumberView>))
)]
async fn list_numbers(State(state): State<AppState>, auth: Auth) -> JsonResult<Vec<NumberView>> {
    let rows = store::numbers(&state.db, auth.tenant()?).await?;
    Ok(Json(rows.into_iter().map(NumberView::from).collect()))
}

/// Searches the carrier's inventory.
#[utoipa::path(
    get, path = "/api/numbers/available", tag = "numbers", security(("bearer" = [])),
    params(
        ("country" = String, Query, description = "AU, US, GB, CA, NZ or IE"),
        ("type" = Option<String>, Query, description = "local (default), mobile or tollfree"),
        ("area_code" = Option<String>, Query, description = "Digits of an area code, without the trunk prefix (2 for Sydney, 415, 20 for London)"),
        ("limit" = Option<i64>, Query, description = "1 to 50, default 20"),
    ),
    responses((status = 200, body = Vec<AvailableView>), (status = 422, body = ErrorBody))
)]
async fn available_numbers(
    State(state): State<AppState>,
    auth: Auth,
    OriginalUri(uri): OriginalUri,
) -> JsonResult<Vec<AvailableView>> {
    auth.tenant()?;
    let query = uri.query();
    let mut errors = FieldErrors::new();
    let country = match query_value(query, "country") {
        None => {
            errors.insert("country".into(), vec!["is required".into()]);
            None
        }
        Some(raw) => Country::parse(&raw).or_else(|| {
            errors.insert(
                "country".into(),
                vec!["must be one of AU, US, GB, CA, NZ, IE".into()],
            );
            None
        }),
    };
    let kind = match query_value(query, "type") {
        None => Some(NumberKind::Local),
        Some(raw) => NumberKind::parse(&raw).or_else(|| {
            errors.insert(
                "type".into(),
                vec!["must be local, mobile or tollfree".into()],
            );
            None
        }),
    };
    let area_code = query_value(query, "area_code").filter(|a| !a.is_empty());
    if area_code
        .as_deref()
        .is_some_and(|a| a.len() > 6 || !a.bytes().all(|b| b.is_ascii_digit()))
    {
        errors.insert("area_code".into(), vec!["must be 1 to 6 digits".into()]);
    }
    let limit = match query_value(query, "limit") {
        None => 20,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=50).contains(&n) => n,
            _ => {
                errors.insert(
                    "limit".into(),
                    vec!["must be a whole number from 1 to 50".into()],
                );
                20
            }
        },
    };
    let (Some(country), Some(kind)) = (country, kind) else {
        return Err(ApiError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let found = state
        .dialler
        .carrier()
        .available(NumberQuery {
            country,
            kind,
            area_code,
            limit,
        })
        .await
        .map_err(|e| match e {
            CarrierError::Invalid(message) => ApiError::field("area_code", message),
            other => carrier_error(other),
        })?;
    Ok(Json(
        found
            .into_iter()
            .map(|n| AvailableView {
                phone_number: n.phone_number,
                friendly_name: n.friendly_name,
                country: n.country.code().into(),
                kind: n.kind.as_str().into(),
            })
            .collect(),
    ))
}

/// Buys a number and points its inbound calls at the engine.
#[utoipa::path(
    post, path = "/api/numbers", tag = "numbers", security(("bearer" = [])),
    request_body = docs::ProvisionRequest,
    responses(
        (status = 201, body = NumberView),
        (status = 403, body = ErrorBody),
        (status = 422, description = "Not E.164, not a valid number, not of that country, or already provisioned", body = ErrorBody),
        (status = 503, description = "The carrier is unreachable", body = ErrorBody),
    )
)]
async fn provision_number(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<(StatusCode, Json<NumberView>), ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let mut fields = Fields::new(&body);
    let raw_number = fields.required_string("phone_number", 32);
    let country = fields
        .required_string("country", 2)
        .and_then(|raw| match Country::parse(&raw) {
            Some(c) => Some(c),
            None => {
                fields.error("country", "must be one of AU, US, GB, CA, NZ, IE");
                None
            }
        });
    let checked = match (&raw_number, country) {
        (Some(raw), Some(country)) => match numbers::check_in(raw, country) {
            Ok(checked) => Some(checked),
            Err(error) => {
                fields.error("phone_number", error.to_string());
                None
            }
        },
        (Some(raw), None) => {
            if let Err(error) = numbers::check(raw) {
                fields.error("phone_number", error.to_string());
            }
            None
        }
        _ => None,
    };
    if let Some(checked) = &checked
        && store::number_by_e164(&state.db, &checked.e164)
            .await?
            .is_some()
    {
        fields.error("phone_number", "is already provisioned");
    }
    fields.finish()?;
    let (Some(checked), Some(country)) = (checked, country) else {
        return Err(ApiError::Internal(
            "validated number input is incomplete".into(),
        ));
    };
    let carrier = state.dialler.carrier();
    let voice_url = format!(
        "{}/carrier/{}/voice",
        state.telephony.public_url,
        carrier.name()
    );
    let provisioned = carrier
        .provision(&checked.e164, &voice_url)
        .await
        .map_err(carrier_error)?;
    let row = store::insert_number(
        &state.db,
        tenant,
        NewNumber {
            number: &checked.e164,
            country: country.code(),
            kind: checked.kind.map(NumberKind::as_str),
            carrier: carrier.name(),
            carrier_sid: &provisioned.carrier_sid,
        },
    )
    .await;
    let row = match row {
        Ok(row) => row,
        // Provisioned by someone else at the same moment: give it back.
        Err(StoreError::Conflict) => {
            let _ = carrier.release(&provisioned.carrier_sid).await;
            return Err(ApiError::field("phone_number", "is already provisioned"));
        }
        Err(other) => return Err(other.into()),
    };
    tracing::info!(number_id = row.id, "number provisioned");
    Ok((StatusCode::CREATED, Json(row.into())))
}

async fn own_number(state: &AppState, tenant: TenantId, id: &str) -> Result<NumberRow, ApiError> {
    store::number(&state.db, tenant, parse_id(id)?)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound("number not found".into()),
            other => other.into(),
        })
}

/// Releases a number back to the carrier.
#[utoipa::path(
    delete, path = "/api/numbers/{id}", tag = "numbers", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses(
        (status = 204, description = "Released"),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A running or paused campaign calls from it", body = ErrorBody),
    )
)]
async fn release_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let row = own_number(&state, tenant, &id).await?;
    let campaigns = store::campaigns(&state.db, tenant).await?;
    if campaigns
        .iter()
        .any(|c| c.from_number == row.number && matches!(c.status.as_str(), "running" | "paused"))
    {
        return Err(ApiError::Conflict(
            "a running or paused campaign calls from this number; cancel it first".into(),
        ));
    }
    state
        .dialler
        .carrier()
        .release(&row.carrier_sid)
        .await
        .map_err(carrier_error)?;
    store::delete_number(&state.db, tenant, row.id).await?;
    tracing::info!(number_id = row.id, "number released");
    Ok(StatusCode::NO_CONTENT)
}

/// Assigns a number to an agent: it answers the number's calls.
#[utoipa::path(
    post, path = "/api/numbers/{id}/assign", tag = "numbers", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body = docs::AssignRequest,
    responses(
        (status = 200, body = NumberView),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "No such agent in this business", body = ErrorBody),
    )
)]
async fn assign_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> JsonResult<NumberView> {
    let tenant = auth.require(Role::Admin)?;
    let row = own_number(&state, tenant, &id).await?;
    let mut fields = Fields::new(&body);
    let agent = fields.required_id("agent_id");
    let agent = fields.finish_with(agent)?;
    match crate::store::agents::get(&state.db, tenant, AgentId(agent)).await {
        Ok(_) => {}
        Err(StoreError::NotFound) => {
            return Err(ApiError::field(
                "agent_id",
                "no such agent in this business",
            ));
        }
        Err(other) => return Err(other.into()),
    }
    let row = store::assign(&state.db, tenant, row.id, Some(AgentId(agent))).await?;
    Ok(Json(row.into()))
}

/// Takes a number away from its agent: its calls are then refused with a spoken message.
#[utoipa::path(
    post, path = "/api/numbers/{id}/unassign", tag = "numbers", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = NumberView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn unassign_number(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<NumberView> {
    let tenant = auth.require(Role::Admin)?;
    let row = own_number(&state, tenant, &id).await?;
    let row = store::assign(&state.db, tenant, row.id, None).await?;
    Ok(Json(row.into()))
}
