//! Outbound campaigns: create (with every target validated), list with completion stats, get,
//! targets with their attempts, and start / pause / cancel. Members may read; owners and admins
//! manage.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::calls::{PageMeta, paging};
use super::error::{ApiError, ErrorBody, FieldErrors};
use super::extract::{Auth, Fields, JsonBody, parse_id};
use super::{AppState, JsonResult};
use crate::carrier::numbers;
use crate::domain::{AgentId, Role, TenantId};
use crate::store::StoreError;
use crate::store::telephony::{self as store, CampaignRow, NewCampaign, NewTarget, Stats};

/// The most targets one campaign takes.
pub const MAX_TARGETS: usize = 10_000;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_campaigns, create_campaign))
        .routes(routes!(get_campaign))
        .routes(routes!(list_targets))
        .routes(routes!(start_campaign))
        .routes(routes!(pause_campaign))
        .routes(routes!(cancel_campaign))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallingHours {
    /// Local `HH:MM`.
    pub start: String,
    pub end: String,
    /// IANA time zone of the targets.
    pub timezone: String,
}

/// A campaign with its completion stats.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: i64,
    pub name: String,
    pub agent_id: Option<i64>,
    pub from_number: String,
    /// `draft`, `running`, `paused`, `completed` or `cancelled`.
    pub status: String,
    /// Why the dialler paused it, when it did so itself.
    pub status_reason: Option<String>,
    pub target_count: i64,
    pub stats: Stats,
    pub max_concurrency: i64,
    pub calls_per_minute: i64,
    pub calling_hours: Option<CallingHours>,
    /// The time zone calling hours are read in.
    pub timezone: String,
    pub max_attempts: i64,
    pub retry_delay_minutes: i64,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

fn view(row: CampaignRow, stats: Stats) -> CampaignView {
    let target_count = stats.pending
        + stats.in_progress
        + stats.completed
        + stats.no_answer
        + stats.busy
        + stats.failed
        + stats.voicemail
        + stats.cancelled;
    CampaignView {
        calling_hours: match (&row.hours_start, &row.hours_end) {
            (Some(start), Some(end)) => Some(CallingHours {
                start: start.clone(),
                end: end.clone(),
                timezone: row.timezone.clone(),
            }),
            _ => None,
        },
        id: row.id,
        name: row.name,
        agent_id: row.agent_id,
        from_number: row.from_number,
        status: row.status,
        status_reason: row.status_reason,
        target_count,
        stats,
        max_concurrency: row.max_concurrency,
        calls_per_minute: row.calls_per_minute,
        timezone: row.timezone,
        max_attempts: row.max_attempts,
        retry_delay_minutes: row.retry_delay_minutes,
        created_at: row.created_at,
        updated_at: row.updated_at,
        completed_at: row.completed_at,
    }
}

/// One dial of a target.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    pub call_id: Option<i64>,
    /// Null while the call is in progress; then `completed`, `voicemail`, `busy`, `no-answer`,
    /// `failed` or `interrupted` (its dialler stopped mid-call; not redialled as the same
    /// attempt).
    pub outcome: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TargetView {
    pub id: i64,
    pub phone_number: String,
    pub name: Option<String>,
    /// `pending`, `dialling`, `completed`, `voicemail`, `busy`, `no-answer`, `failed` or
    /// `cancelled`.
    pub status: String,
    /// When a pending target is next due.
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TargetPage {
    pub data: Vec<TargetView>,
    pub meta: PageMeta,
}

#[allow(dead_code)] // Documentation of the request body; parsing goes through `Fields`.
mod docs {
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    pub struct Target {
        /// E.164.
        pub phone_number: String,
        pub name: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct Hours {
        /// Local `HH:MM`, e.g. 09:00.
        pub start: String,
        /// Local `HH:MM`; before `start` spans midnight.
        pub end: String,
        /// IANA time zone of the targets; default the business's.
        pub timezone: Option<String>,
    }

    #[derive(ToSchema)]
    pub struct CampaignRequest {
        /// 1 to 100 characters.
        pub name: String,
        /// An agent of the business: it speaks on every call.
        pub agent_id: i64,
        /// 1 to 10,000 targets; repeated numbers are merged (the first name given is kept).
        pub targets: Vec<Target>,
        /// A number the business has provisioned; default the agent's assigned number.
        pub from_number: Option<String>,
        /// Calls at once, 1 to 50 (default 2).
        pub max_concurrency: Option<i64>,
        /// New calls a minute, 1 to 6000 (default 30).
        pub calls_per_minute: Option<i64>,
        /// When calls may start; default any time.
        pub calling_hours: Option<Hours>,
        /// Dials per target, 1 to 10 (default 3); busy and no-answer are retried.
        pub max_attempts: Option<i64>,
        /// Wait before a retry, 0 to 1440 minutes (default 30).
        pub retry_delay_minutes: Option<i64>,
    }
}

/// `HH:MM`, 24-hour.
fn clock(raw: &str) -> Option<String> {
    chrono::NaiveTime::parse_from_str(raw.trim(), "%H:%M")
        .ok()
        .map(|t| t.format("%H:%M").to_string())
}

/// The targets, validated and merged; errors are keyed `targets[i].phone_number`.
fn targets(body: &Value, errors: &mut FieldErrors) -> Vec<NewTarget> {
    let Some(items) = body.get("targets").and_then(Value::as_array) else {
        errors.insert(
            "targets".into(),
            vec!["is required: a list of { phone_number, name? }".into()],
        );
        return Vec::new();
    };
    if items.is_empty() || items.len() > MAX_TARGETS {
        errors.insert(
            "targets".into(),
            vec![format!("must hold 1 to {MAX_TARGETS} targets")],
        );
        return Vec::new();
    }
    let mut out: Vec<NewTarget> = Vec::with_capacity(items.len());
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (i, item) in items.iter().enumerate() {
        let mut error = |field: &str, message: String| {
            errors
                .entry(format!("targets[{i}].{field}"))
                .or_default()
                .push(message);
        };
        let Some(object) = item.as_object() else {
            error("phone_number", "is required".into());
            continue;
        };
        let name = match object.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(name)) if name.trim().chars().count() <= 100 => {
                Some(name.trim().to_owned()).filter(|n| !n.is_empty())
            }
            Some(_) => {
                error("name", "must be text of at most 100 characters".into());
                None
            }
        };
        let number = match object.get("phone_number").and_then(Value::as_str) {
            None => {
                error("phone_number", "is required".into());
                continue;
            }
            Some(raw) => match numbers::check(raw.trim()) {
                Ok(checked) => checked.e164,
                Err(e) => {
                    error("phone_number", e.to_string());
                    continue;
                }
            },
        };
        match seen.get(&number) {
            Some(&index) => {
                if out[index].name.is_none() {
                    out[index].name = name;
                }
            }
            None => {
                seen.insert(number.clone(), out.len());
                out.push(NewTarget {
                    phone_number: number,
                    name,
                });
            }
        }
    }
    out
}

async fn stats_of(state: &AppState, tenant: TenantId) -> Result<BTreeMap<i64, Stats>, ApiError> {
    Ok(store::stats(&state.db, tenant).await?)
}

async fn own(state: &AppState, tenant: TenantId, id: &str) -> Result<CampaignRow, ApiError> {
    store::campaign(&state.db, tenant, parse_id(id)?)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound("campaign not found".into()),
            other => other.into(),
        })
}

async fn one(state: &AppState, tenant: TenantId, row: CampaignRow) -> JsonResult<CampaignView> {
    let stats = stats_of(state, tenant)
        .await?
        .remove(&row.id)
        .unwrap_or_default();
    Ok(Json(view(row, stats)))
}

/// All campaigns of the business with their status, target count and completion stats.
#[utoipa::path(
    get, path = "/api/campaigns", tag = "campaigns", security(("bearer" = [])),
    responses((status = 200, body = Vec<CampaignView>))
)]
async fn list_campaigns(
    State(state): State<AppState>,
    auth: Auth,
) -> JsonResult<Vec<CampaignView>> {
    let tenant = auth.tenant()?;
    let mut stats = stats_of(&state, tenant).await?;
    let rows = store::campaigns(&state.db, tenant).await?;
    Ok(Json(
        rows.into_iter()
            .map(|row| {
                let s = stats.remove(&row.id).unwrap_or_default();
                view(row, s)
            })
            .collect(),
    ))
}

/// Creates a campaign (`draft`); `start` begins dialling.
#[utoipa::path(
    post, path = "/api/campaigns", tag = "campaigns", security(("bearer" = [])),
    request_body = docs::CampaignRequest,
    responses((status = 201, body = CampaignView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn create_campaign(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<(StatusCode, Json<CampaignView>), ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let raw = Value::Object(body.0.clone());
    let mut fields = Fields::new(&body);
    let name = fields.required_string("name", 100);
    let agent = fields.required_id("agent_id");
    let from = fields.optional_string("from_number", 32).value();
    let mut int = |field: &str, min: i64, max: i64, default: i64| {
        fields
            .optional_int(field, min, max)
            .value()
            .unwrap_or(default)
    };
    let max_concurrency = int("max_concurrency", 1, 50, 2);
    let calls_per_minute = int("calls_per_minute", 1, 6_000, 30);
    let max_attempts = int("max_attempts", 1, 10, 3);
    let retry_delay_minutes = int("retry_delay_minutes", 0, 1440, 30);
    let settings = crate::store::accounts::tenant_settings(&state.db, tenant).await?;
    let mut timezone = settings.timezone.clone();
    let mut hours: Option<(String, String)> = None;
    match raw.get("calling_hours") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            let get = |k: &str| h.get(k).and_then(Value::as_str).and_then(clock);
            match (get("start"), get("end")) {
                (Some(start), Some(end)) if start != end => hours = Some((start, end)),
                _ => fields.error(
                    "calling_hours",
                    "needs start and end as different HH:MM times",
                ),
            }
            if let Some(tz) = h.get("timezone").and_then(Value::as_str) {
                match tz.parse::<chrono_tz::Tz>() {
                    Ok(tz) => timezone = tz.name().to_owned(),
                    Err(_) => fields.error("calling_hours", "timezone must be an IANA time zone"),
                }
            }
        }
        Some(_) => fields.error("calling_hours", "must be { start, end, timezone? }"),
    }
    // Up to 10,000 numbering-plan checks: off the async workers.
    let (targets, errors) = tokio::task::spawn_blocking(move || {
        let mut errors = FieldErrors::new();
        (targets(&raw, &mut errors), errors)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("target validation failed: {e}")))?;
    for (field, messages) in errors {
        for message in messages {
            fields.error(&field, message);
        }
    }
    // The agent, and the number it calls from.
    let mut from_number = None;
    if let Some(agent) = agent {
        match crate::store::agents::get(&state.db, tenant, AgentId(agent)).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => fields.error("agent_id", "no such agent in this business"),
            Err(other) => return Err(other.into()),
        }
        let owned = store::numbers(&state.db, tenant).await?;
        from_number = match &from {
            Some(raw) => {
                let found = owned.iter().find(|n| n.number == raw.trim());
                if found.is_none() {
                    fields.error(
                        "from_number",
                        "must be a number this business has provisioned",
                    );
                }
                found.map(|n| n.number.clone())
            }
            None => {
                let assigned = owned.iter().find(|n| n.agent_id == Some(agent));
                if assigned.is_none() {
                    fields.error(
                        "from_number",
                        "the agent has no number: assign it one, or give from_number",
                    );
                }
                assigned.map(|n| n.number.clone())
            }
        };
    }
    fields.finish()?;
    let (Some(name), Some(agent), Some(from_number)) = (name, agent, from_number) else {
        return Err(ApiError::Internal(
            "validated campaign input is incomplete".into(),
        ));
    };
    let row = store::insert_campaign(
        &state.db,
        tenant,
        NewCampaign {
            name: name.trim(),
            agent: AgentId(agent),
            from_number: &from_number,
            max_concurrency,
            calls_per_minute,
            hours: hours.as_ref().map(|(s, e)| (s.as_str(), e.as_str())),
            timezone: &timezone,
            max_attempts,
            retry_delay_minutes,
        },
        &targets,
    )
    .await?;
    tracing::info!(
        campaign_id = row.id,
        targets = targets.len(),
        "campaign created"
    );
    let Json(view) = one(&state, tenant, row).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One campaign with its stats.
#[utoipa::path(
    get, path = "/api/campaigns/{id}", tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 404, body = ErrorBody))
)]
async fn get_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<CampaignView> {
    let tenant = auth.tenant()?;
    let row = own(&state, tenant, &id).await?;
    one(&state, tenant, row).await
}

/// The campaign's targets in the order given, a page at a time, each with its attempts.
#[utoipa::path(
    get, path = "/api/campaigns/{id}/targets", tag = "campaigns", security(("bearer" = [])),
    params(
        ("id" = i64, Path),
        ("per_page" = Option<i64>, Query, description = "1 to 100, default 20"),
        ("page" = Option<i64>, Query, description = "From 1"),
    ),
    responses((status = 200, body = TargetPage), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn list_targets(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> JsonResult<TargetPage> {
    let tenant = auth.tenant()?;
    let row = own(&state, tenant, &id).await?;
    let mut errors = FieldErrors::new();
    let (page, per_page) = paging(uri.query(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let (total, targets, attempts) =
        store::targets(&state.db, tenant, row.id, per_page, (page - 1) * per_page).await?;
    let mut by_target: BTreeMap<i64, Vec<AttemptView>> = BTreeMap::new();
    for a in attempts {
        by_target.entry(a.target_id).or_default().push(AttemptView {
            attempt: a.attempt,
            call_id: a.call_id,
            outcome: a.outcome,
            started_at: a.started_at,
            ended_at: a.ended_at,
        });
    }
    Ok(Json(TargetPage {
        data: targets
            .into_iter()
            .map(|t| TargetView {
                attempts: by_target.remove(&t.id).unwrap_or_default(),
                next_attempt_at: (t.status == "pending").then_some(t.next_attempt_at),
                id: t.id,
                phone_number: t.phone_number,
                name: t.name,
                status: t.status,
            })
            .collect(),
        meta: PageMeta::new(page, per_page, total),
    }))
}

/// Moves the campaign on, or explains why it cannot.
async fn transition(
    state: &AppState,
    auth: &Auth,
    id: &str,
    from: &[&str],
    to: &str,
) -> JsonResult<CampaignView> {
    let tenant = auth.require(Role::Admin)?;
    let row = own(state, tenant, id).await?;
    if row.status == to {
        return one(state, tenant, row).await;
    }
    match store::transition(&state.db, tenant, row.id, from, to).await? {
        Some(row) => {
            tracing::info!(campaign_id = row.id, status = to, "campaign status changed");
            if to == "running" {
                state.dialler.wake();
            }
            one(state, tenant, row).await
        }
        None => {
            let current = own(state, tenant, id).await?;
            Err(ApiError::Conflict(format!(
                "the campaign is {}: it cannot be made {to}",
                current.status
            )))
        }
    }
}

/// Begins (or resumes) dialling every pending target.
#[utoipa::path(
    post, path = "/api/campaigns/{id}/start", tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Completed or cancelled", body = ErrorBody))
)]
async fn start_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<CampaignView> {
    transition(&state, &auth, &id, &["draft", "paused"], "running").await
}

/// Stops new dials at once; calls in progress finish. `start` resumes.
#[utoipa::path(
    post, path = "/api/campaigns/{id}/pause", tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Not running", body = ErrorBody))
)]
async fn pause_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<CampaignView> {
    transition(&state, &auth, &id, &["running"], "paused").await
}

/// Stops the campaign for good: pending targets are cancelled; calls in progress finish.
#[utoipa::path(
    post, path = "/api/campaigns/{id}/cancel", tag = "campaigns", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = CampaignView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "Completed", body = ErrorBody))
)]
async fn cancel_campaign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<CampaignView> {
    transition(
        &state,
        &auth,
        &id,
        &["draft", "running", "paused"],
        "cancelled",
    )
    .await
}
