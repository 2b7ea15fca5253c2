//! The agents resource: list, create, get, replace (`PUT`), patch, delete, versions and rollback.
//! Members may read; owners and admins manage.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::error::{ApiError, ErrorBody};
use super::extract::{Auth, Fields, JsonBody, Optional, parse_id};
use super::{AppState, JsonResult};
use crate::agent::service::{self, AgentDetail};
use crate::agent::{
    AgentSpec, EngineChoice, HUMOUR_MAX, KNOWLEDGE_MAX_LINKS, KnowledgeLink,
    MAX_CALL_SECONDS_DEFAULT, MAX_CALL_SECONDS_MAX, MAX_CALL_SECONDS_MIN, NAME_MAX_CHARS,
    Personality, SLIDER_MAX, SYSTEM_PROMPT_MAX_CHARS, TOOL_NAMES, default_tools, is_e164,
};
use crate::domain::{AgentId, Language, Role};
use crate::store::agents::{self as store, AgentRow, VersionRow, VersionSummaryRow};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, replace_agent, patch_agent, delete_agent))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
        .routes(routes!(rollback))
}

/// An agent as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSummary {
    pub id: i64,
    pub name: String,
    pub voice: String,
    pub language: String,
    pub current_version: i64,
    pub has_number: bool,
    /// `active`, or `deleting` while calls in progress finish.
    pub status: String,
    pub created_at: String,
}

/// One agent in full: current settings, compiled instructions, history summary and number.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentView {
    #[serde(flatten)]
    pub summary: AgentSummary,
    #[serde(flatten)]
    pub settings: Settings,
    pub compiled_instructions: String,
    /// SHA-256 (hex) of `compiled_instructions`.
    pub instructions_hash: String,
    /// The assigned phone number (E.164), null until one is assigned.
    pub number: Option<String>,
    pub version_count: i64,
    /// The most recent versions, newest first (all of them at `/versions`).
    pub versions: Vec<VersionSummary>,
    pub updated_at: String,
}

/// The configurable fields of a snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct Settings {
    pub system_prompt: Option<String>,
    pub humour_level: i64,
    pub empathy_level: i64,
    pub formality_level: i64,
    pub energy_level: i64,
    pub directness_level: i64,
    /// `auto`, `llm` or `embedded`; null: the business's default.
    pub turn_engine: Option<String>,
    /// The tools the agent may use.
    pub tools: Vec<String>,
    /// Where `transfer_call` sends callers.
    pub transfer_number: Option<String>,
    /// The knowledge documents the agent answers from.
    pub knowledge_ids: Vec<i64>,
    /// The longest a call may last, in seconds: then the agent says a short goodbye and hangs
    /// up (disposition `max-duration`).
    pub max_call_seconds: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: i64,
    pub name: String,
    pub instructions_hash: String,
    /// The version this one restored, for rollbacks.
    pub rolled_back_from: Option<i64>,
    /// The user who made this version.
    pub created_by: Option<i64>,
    pub created_at: String,
}

/// A full version snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub version: i64,
    pub name: String,
    pub voice: String,
    pub language: String,
    #[serde(flatten)]
    pub settings: Settings,
    pub compiled_instructions: String,
    pub instructions_hash: String,
    pub rolled_back_from: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: String,
}

impl From<&AgentRow> for AgentSummary {
    fn from(row: &AgentRow) -> Self {
        AgentSummary {
            id: row.id,
            name: row.snapshot.name.clone(),
            voice: row.snapshot.voice.clone(),
            language: row.snapshot.language.clone(),
            current_version: row.current_version,
            // Filled from the numbers table by the handlers.
            has_number: false,
            status: row.status.clone(),
            created_at: row.created_at.clone(),
        }
    }
}

fn settings(s: &store::SnapshotColumns) -> Settings {
    Settings {
        system_prompt: s.system_prompt.clone(),
        humour_level: s.humour_level,
        empathy_level: s.empathy_level,
        formality_level: s.formality_level,
        energy_level: s.energy_level,
        directness_level: s.directness_level,
        turn_engine: s.turn_engine.clone(),
        tools: s.tool_names(),
        transfer_number: s.transfer_number.clone(),
        knowledge_ids: s
            .knowledge_links()
            .unwrap_or_default()
            .iter()
            .map(|l| l.id)
            .collect(),
        max_call_seconds: s.max_call_seconds,
    }
}

impl From<VersionSummaryRow> for VersionSummary {
    fn from(row: VersionSummaryRow) -> Self {
        VersionSummary {
            version: row.version,
            name: row.name,
            instructions_hash: row.instructions_hash,
            rolled_back_from: row.rolled_back_from,
            created_by: row.created_by,
            created_at: row.created_at,
        }
    }
}

impl From<VersionRow> for VersionView {
    fn from(row: VersionRow) -> Self {
        VersionView {
            version: row.version,
            settings: settings(&row.snapshot),
            name: row.snapshot.name,
            voice: row.snapshot.voice,
            language: row.snapshot.language,
            compiled_instructions: row.compiled_instructions,
            instructions_hash: row.instructions_hash,
            rolled_back_from: row.rolled_back_from,
            created_by: row.created_by,
            created_at: row.created_at,
        }
    }
}

impl From<AgentDetail> for AgentView {
    fn from(detail: AgentDetail) -> Self {
        let row = detail.agent;
        AgentView {
            summary: AgentSummary::from(&row),
            settings: settings(&row.snapshot),
            compiled_instructions: row.compiled_instructions,
            instructions_hash: row.instructions_hash,
            number: None,
            version_count: detail.version_count,
            versions: detail
                .recent_versions
                .into_iter()
                .map(VersionSummary::from)
                .collect(),
            updated_at: row.updated_at,
        }
    }
}

#[allow(dead_code)] // Documentation of the request body; parsing goes through `Fields`.
mod docs {
    use utoipa::ToSchema;

    /// The seed's agent fields. `PUT` and `POST` require name, voice and language; `PATCH`
    /// takes any subset. An optional field sent as null takes its default.
    #[derive(ToSchema)]
    pub struct AgentRequest {
        /// Display name, 1 to 100 characters.
        pub name: String,
        /// A voice id from the engine's catalogue (e.g. aria, leo).
        pub voice: String,
        /// BCP-47 language tag (e.g. en-AU, es-MX).
        pub language: String,
        /// Base instructions, up to 20000 characters.
        pub system_prompt: Option<String>,
        /// 0 to 30, default 10.
        pub humour_level: Option<i64>,
        /// 0 to 100, default 50.
        pub empathy_level: Option<i64>,
        /// 0 to 100, default 50.
        pub formality_level: Option<i64>,
        /// 0 to 100, default 50.
        pub energy_level: Option<i64>,
        /// 0 to 100, default 50.
        pub directness_level: Option<i64>,
        /// `auto` (the LLM when the engine has one, else the embedded responder), `llm` or
        /// `embedded`; null or absent: the business's default (`PUT /api/settings`).
        pub turn_engine: Option<String>,
        /// Any of `book_appointment`, `end_call`, `transfer_call`; default the first two.
        pub tools: Option<Vec<String>>,
        /// E.164 number `transfer_call` sends callers to; without it the tool is not offered.
        pub transfer_number: Option<String>,
        /// Ids of the business's knowledge documents the agent answers from (at most 50);
        /// default none.
        pub knowledge_ids: Option<Vec<i64>>,
        /// The longest a call may last, 10 to 14400 seconds, default 1800: then the agent says a
        /// short goodbye and hangs up.
        pub max_call_seconds: Option<i64>,
    }
}

/// Whether a request must carry every required field (create, replace) or any subset (patch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Completeness {
    Full,
    Partial,
}

/// Validated agent fields from a request body.
struct AgentInput {
    name: Optional<String>,
    voice: Optional<String>,
    language: Optional<Language>,
    system_prompt: Optional<String>,
    humour: Optional<u8>,
    empathy: Optional<u8>,
    formality: Optional<u8>,
    energy: Optional<u8>,
    directness: Optional<u8>,
    turn_engine: Optional<EngineChoice>,
    tools: Optional<Vec<String>>,
    transfer_number: Optional<String>,
    knowledge: Optional<Vec<KnowledgeLink>>,
    max_call_seconds: Optional<u32>,
}

impl AgentInput {
    /// Validates `body`; `documents` are the business's knowledge documents (id, file name).
    fn parse(
        body: &JsonBody,
        voices: &[String],
        documents: &[(i64, String)],
        completeness: Completeness,
    ) -> Result<Self, ApiError> {
        let mut fields = Fields::new(body);
        let required = |fields: &mut Fields, field: &str, max: usize| match completeness {
            Completeness::Full => fields
                .required_string(field, max)
                .map_or(Optional::Absent, Optional::Value),
            Completeness::Partial => match fields.optional_string(field, max) {
                Optional::Null => {
                    fields.error(field, "must not be null");
                    Optional::Absent
                }
                other => other,
            },
        };
        let name = required(&mut fields, "name", NAME_MAX_CHARS);
        let voice = match required(&mut fields, "voice", 64) {
            Optional::Value(voice) if !voices.contains(&voice) => {
                fields.error("voice", format!("must be one of: {}", voices.join(", ")));
                Optional::Absent
            }
            other => other,
        };
        let language = match required(&mut fields, "language", 64) {
            Optional::Value(tag) => fields
                .check("language", Language::parse(&tag))
                .map_or(Optional::Absent, Optional::Value),
            Optional::Absent => Optional::Absent,
            Optional::Null => Optional::Null,
        };
        let system_prompt = fields.optional_string("system_prompt", SYSTEM_PROMPT_MAX_CHARS);
        let turn_engine = match fields.optional_string("turn_engine", 16) {
            Optional::Value(raw) => match EngineChoice::parse(&raw) {
                Some(choice) => Optional::Value(choice),
                None => {
                    fields.error("turn_engine", "must be auto, llm or embedded");
                    Optional::Absent
                }
            },
            Optional::Absent => Optional::Absent,
            Optional::Null => Optional::Null,
        };
        let tools = match body.0.get("tools") {
            None => Optional::Absent,
            Some(serde_json::Value::Null) => Optional::Null,
            Some(serde_json::Value::Array(items)) => {
                let names: Vec<&str> = items.iter().filter_map(|v| v.as_str()).collect();
                if names.len() != items.len() || names.iter().any(|n| !TOOL_NAMES.contains(n)) {
                    fields.error(
                        "tools",
                        format!("must be a list of: {}", TOOL_NAMES.join(", ")),
                    );
                    Optional::Absent
                } else {
                    // Canonical order, no repeats.
                    Optional::Value(
                        TOOL_NAMES
                            .iter()
                            .filter(|t| names.contains(t))
                            .map(|t| t.to_string())
                            .collect(),
                    )
                }
            }
            Some(_) => {
                fields.error("tools", "must be a list of tool names");
                Optional::Absent
            }
        };
        let transfer_number = match fields.optional_string("transfer_number", 16) {
            Optional::Value(number) if !is_e164(&number) => {
                fields.error(
                    "transfer_number",
                    "must be an E.164 number such as +61255501234",
                );
                Optional::Absent
            }
            other => other,
        };
        let knowledge = match body.0.get("knowledge_ids") {
            None => Optional::Absent,
            Some(serde_json::Value::Null) => Optional::Null,
            Some(serde_json::Value::Array(items)) => {
                let ids: Vec<i64> = items.iter().filter_map(serde_json::Value::as_i64).collect();
                let unknown: Vec<String> = ids
                    .iter()
                    .filter(|id| !documents.iter().any(|(d, _)| d == *id))
                    .map(i64::to_string)
                    .collect();
                if ids.len() != items.len() {
                    fields.error("knowledge_ids", "must be a list of document ids");
                    Optional::Absent
                } else if !unknown.is_empty() {
                    fields.error(
                        "knowledge_ids",
                        format!("no such knowledge document: {}", unknown.join(", ")),
                    );
                    Optional::Absent
                } else {
                    // Id order, no repeats.
                    let links: Vec<KnowledgeLink> = documents
                        .iter()
                        .filter(|(id, _)| ids.contains(id))
                        .map(|(id, filename)| KnowledgeLink {
                            id: *id,
                            filename: filename.clone(),
                        })
                        .collect();
                    if links.len() > KNOWLEDGE_MAX_LINKS {
                        fields.error(
                            "knowledge_ids",
                            format!("at most {KNOWLEDGE_MAX_LINKS} documents"),
                        );
                        Optional::Absent
                    } else {
                        Optional::Value(links)
                    }
                }
            }
            Some(_) => {
                fields.error("knowledge_ids", "must be a list of document ids");
                Optional::Absent
            }
        };
        let max_call_seconds = match fields.optional_int(
            "max_call_seconds",
            i64::from(MAX_CALL_SECONDS_MIN),
            i64::from(MAX_CALL_SECONDS_MAX),
        ) {
            Optional::Value(v) => Optional::Value(v as u32),
            Optional::Absent => Optional::Absent,
            Optional::Null => Optional::Null,
        };
        let mut slider = |field: &str, max: u8| match fields.optional_int(field, 0, i64::from(max))
        {
            Optional::Value(v) => Optional::Value(v as u8),
            Optional::Absent => Optional::Absent,
            Optional::Null => Optional::Null,
        };
        let input = AgentInput {
            knowledge,
            max_call_seconds,
            turn_engine,
            tools,
            transfer_number,
            humour: slider("humour_level", HUMOUR_MAX),
            empathy: slider("empathy_level", SLIDER_MAX),
            formality: slider("formality_level", SLIDER_MAX),
            energy: slider("energy_level", SLIDER_MAX),
            directness: slider("directness_level", SLIDER_MAX),
            name,
            voice,
            language,
            system_prompt,
        };
        fields.finish()?;
        Ok(input)
    }

    /// The complete spec of a create or replace (every required field was present).
    fn into_spec(self) -> Result<AgentSpec, ApiError> {
        let missing = || ApiError::Internal("validated agent input lacks a required field".into());
        let d = Personality::default();
        Ok(AgentSpec {
            name: self.name.value().ok_or_else(missing)?,
            voice: self.voice.value().ok_or_else(missing)?,
            language: self.language.value().ok_or_else(missing)?,
            system_prompt: self.system_prompt.value(),
            turn_engine: self.turn_engine.value(),
            tools: self.tools.or(default_tools()),
            transfer_number: self.transfer_number.value(),
            knowledge: self.knowledge.or(Vec::new()),
            max_call_seconds: self.max_call_seconds.or(MAX_CALL_SECONDS_DEFAULT),
            personality: Personality {
                humour: self.humour.or(d.humour),
                empathy: self.empathy.or(d.empathy),
                formality: self.formality.or(d.formality),
                energy: self.energy.or(d.energy),
                directness: self.directness.or(d.directness),
            },
        })
    }

    /// Applies a partial update to the current spec.
    fn apply(self, current: AgentSpec) -> AgentSpec {
        let d = Personality::default();
        let p = current.personality;
        AgentSpec {
            name: self.name.patch(current.name.clone(), current.name),
            voice: self.voice.patch(current.voice.clone(), current.voice),
            language: self
                .language
                .patch(current.language.clone(), current.language),
            system_prompt: match self.system_prompt {
                Optional::Absent => current.system_prompt,
                Optional::Null => None,
                Optional::Value(prompt) => Some(prompt),
            },
            turn_engine: match self.turn_engine {
                Optional::Absent => current.turn_engine,
                Optional::Null => None,
                Optional::Value(choice) => Some(choice),
            },
            tools: self.tools.patch(current.tools, default_tools()),
            transfer_number: match self.transfer_number {
                Optional::Absent => current.transfer_number,
                Optional::Null => None,
                Optional::Value(number) => Some(number),
            },
            knowledge: self.knowledge.patch(current.knowledge, Vec::new()),
            max_call_seconds: self
                .max_call_seconds
                .patch(current.max_call_seconds, MAX_CALL_SECONDS_DEFAULT),
            personality: Personality {
                humour: self.humour.patch(p.humour, d.humour),
                empathy: self.empathy.patch(p.empathy, d.empathy),
                formality: self.formality.patch(p.formality, d.formality),
                energy: self.energy.patch(p.energy, d.energy),
                directness: self.directness.patch(p.directness, d.directness),
            },
        }
    }
}

fn agent_id(raw: &str) -> Result<AgentId, ApiError> {
    parse_id(raw).map(AgentId)
}

async fn view(state: &AppState, auth: &Auth, agent: AgentId) -> JsonResult<AgentView> {
    let tenant = auth.tenant()?;
    let detail = service::detail(&state.db, tenant, agent).await?;
    let mut view = AgentView::from(detail);
    let numbers = crate::store::telephony::agent_numbers(&state.db, tenant).await?;
    view.number = numbers
        .into_iter()
        .find(|(a, _)| *a == agent.0)
        .map(|(_, n)| n);
    view.summary.has_number = view.number.is_some();
    // A deleted document is unlinked at once, whatever the snapshot recorded.
    let existing = documents(state, tenant).await?;
    view.settings
        .knowledge_ids
        .retain(|id| existing.iter().any(|(d, _)| d == id));
    Ok(Json(view))
}

/// Validates an agent body against the installed voices and the business's documents.
async fn input(
    state: &AppState,
    tenant: crate::domain::TenantId,
    body: &JsonBody,
    completeness: Completeness,
) -> Result<AgentInput, ApiError> {
    let documents = documents(state, tenant).await?;
    AgentInput::parse(body, &state.speech.voice_ids(), &documents, completeness)
}

/// The business's knowledge documents (id, file name), for validating links.
async fn documents(
    state: &AppState,
    tenant: crate::domain::TenantId,
) -> Result<Vec<(i64, String)>, ApiError> {
    let rows = crate::store::knowledge::list(&state.db, tenant).await?;
    Ok(rows.into_iter().map(|r| (r.id, r.filename)).collect())
}

/// All agents of the active business.
#[utoipa::path(
    get, path = "/api/agents", tag = "agents", security(("bearer" = [])),
    responses((status = 200, body = Vec<AgentSummary>), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody))
)]
async fn list_agents(State(state): State<AppState>, auth: Auth) -> JsonResult<Vec<AgentSummary>> {
    let tenant = auth.tenant()?;
    let rows = store::list(&state.db, tenant).await?;
    let numbers = crate::store::telephony::agent_numbers(&state.db, tenant).await?;
    Ok(Json(
        rows.iter()
            .map(|row| {
                let mut summary = AgentSummary::from(row);
                summary.has_number = numbers.iter().any(|(a, _)| *a == row.id);
                summary
            })
            .collect(),
    ))
}

/// Creates an agent (version 1) and compiles its instructions.
#[utoipa::path(
    post, path = "/api/agents", tag = "agents", security(("bearer" = [])),
    request_body = docs::AgentRequest,
    responses(
        (status = 201, body = AgentView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "Members cannot manage agents", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
async fn create_agent(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> Result<(StatusCode, Json<AgentView>), ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let spec = input(&state, tenant, &body, Completeness::Full)
        .await?
        .into_spec()?;
    let row = service::create(&state.db, tenant, auth.user_id, spec).await?;
    let Json(view) = view(&state, &auth, AgentId(row.id)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One agent with compiled instructions, version history summary and assigned number.
#[utoipa::path(
    get, path = "/api/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = AgentView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<AgentView> {
    view(&state, &auth, agent_id(&id)?).await
}

/// Replaces the agent's settings (same fields as create) as a new version.
#[utoipa::path(
    put, path = "/api/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body = docs::AgentRequest,
    responses(
        (status = 200, body = AgentView),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The agent is being deleted", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
async fn replace_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> JsonResult<AgentView> {
    let tenant = auth.require(Role::Admin)?;
    let agent = agent_id(&id)?;
    let spec = input(&state, tenant, &body, Completeness::Full)
        .await?
        .into_spec()?;
    service::update(&state.db, tenant, auth.user_id, agent, |_| spec).await?;
    view(&state, &auth, agent).await
}

/// Changes some of the agent's settings as a new version.
#[utoipa::path(
    patch, path = "/api/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body = docs::AgentRequest,
    responses(
        (status = 200, body = AgentView),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The agent is being deleted", body = ErrorBody),
        (status = 422, body = ErrorBody),
    )
)]
async fn patch_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    body: JsonBody,
) -> JsonResult<AgentView> {
    let tenant = auth.require(Role::Admin)?;
    let agent = agent_id(&id)?;
    let input = input(&state, tenant, &body, Completeness::Partial).await?;
    service::update(&state.db, tenant, auth.user_id, agent, |current| {
        input.apply(current)
    })
    .await?;
    view(&state, &auth, agent).await
}

/// Deletes the agent permanently, with its versions.
#[utoipa::path(
    delete, path = "/api/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = i64, Path)),
        responses(
        (status = 204, description = "Deleted"),
        (status = 202, description = "Calls are live: the agent is `deleting` and goes when they end", body = AgentView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)
    )
)]
async fn delete_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let tenant = auth.require(Role::Admin)?;
    let agent = agent_id(&id)?;
    let live = state.telephony.live.count_for_agent(agent);
    match service::delete(&state.db, tenant, agent, live).await? {
        service::Deletion::Deleted => Ok(StatusCode::NO_CONTENT.into_response()),
        service::Deletion::Deferred => {
            let Json(view) = view(&state, &auth, agent).await?;
            Ok((StatusCode::ACCEPTED, Json(view)).into_response())
        }
    }
}

/// The agent's whole version history, newest first.
#[utoipa::path(
    get, path = "/api/agents/{id}/versions", tag = "agents", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = Vec<VersionSummary>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn list_versions(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<Vec<VersionSummary>> {
    let tenant = auth.tenant()?;
    let agent = agent_id(&id)?;
    // An agent always has version 1, so an empty history means no such agent here.
    let rows = store::versions(&state.db, tenant, agent, i64::MAX).await?;
    if rows.is_empty() {
        return Err(ApiError::NotFound("agent not found".into()));
    }
    Ok(Json(rows.into_iter().map(VersionSummary::from).collect()))
}

/// One version snapshot with its compiled instructions.
#[utoipa::path(
    get, path = "/api/agents/{id}/versions/{version}", tag = "agents", security(("bearer" = [])),
    params(("id" = i64, Path), ("version" = i64, Path)),
    responses((status = 200, body = VersionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn get_version(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, version)): Path<(String, String)>,
) -> JsonResult<VersionView> {
    let tenant = auth.tenant()?;
    let row = store::version(&state.db, tenant, agent_id(&id)?, parse_id(&version)?).await?;
    Ok(Json(row.into()))
}

/// Makes an old version current again, as a new version; history is kept.
#[utoipa::path(
    post, path = "/api/agents/{id}/versions/{version}/rollback", tag = "agents", security(("bearer" = [])),
    params(("id" = i64, Path), ("version" = i64, Path)),
    responses(
        (status = 200, body = AgentView),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such agent or version", body = ErrorBody),
        (status = 409, description = "The agent is being deleted", body = ErrorBody),
    )
)]
async fn rollback(
    State(state): State<AppState>,
    auth: Auth,
    Path((id, version)): Path<(String, String)>,
) -> JsonResult<AgentView> {
    let tenant = auth.require(Role::Admin)?;
    let agent = agent_id(&id)?;
    service::rollback(&state.db, tenant, auth.user_id, agent, parse_id(&version)?).await?;
    view(&state, &auth, agent).await
}
