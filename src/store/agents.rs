//! Agents and their immutable version snapshots. The agent row holds identity, status and which
//! version is current; everything configurable lives in `agent_versions`.

use sqlx::FromRow;

use super::{Db, StoreError, StoreResult, Tx, now};
use crate::agent::instructions::Compiled;
use crate::agent::{AgentSpec, EngineChoice, KnowledgeLink, Personality};
use crate::domain::{AgentId, Language, TenantId, UserId};

/// An agent joined with its current version.
#[derive(Debug, Clone, FromRow)]
pub struct AgentRow {
    pub id: i64,
    pub current_version: i64,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
    #[sqlx(flatten)]
    pub snapshot: SnapshotColumns,
    pub compiled_instructions: String,
    pub instructions_hash: String,
}

/// The configurable columns of a version, shared by [`AgentRow`] and [`VersionRow`].
#[derive(Debug, Clone, FromRow)]
pub struct SnapshotColumns {
    pub name: String,
    pub voice: String,
    pub language: String,
    pub system_prompt: Option<String>,
    pub humour_level: i64,
    pub empathy_level: i64,
    pub formality_level: i64,
    pub energy_level: i64,
    pub directness_level: i64,
    pub turn_engine: Option<String>,
    /// Comma-separated tool names.
    pub tools: String,
    pub transfer_number: Option<String>,
    /// JSON list of [`KnowledgeLink`]s.
    pub knowledge: String,
    pub max_call_seconds: i64,
}

/// A full version snapshot.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRow {
    pub version: i64,
    #[sqlx(flatten)]
    pub snapshot: SnapshotColumns,
    pub compiled_instructions: String,
    pub instructions_hash: String,
    pub rolled_back_from: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: String,
}

/// A line of version history.
#[derive(Debug, Clone, FromRow)]
pub struct VersionSummaryRow {
    pub version: i64,
    pub name: String,
    pub instructions_hash: String,
    pub rolled_back_from: Option<i64>,
    pub created_by: Option<i64>,
    pub created_at: String,
}

impl SnapshotColumns {
    /// Rebuilds the validated spec. Stored rows were validated on the way in, so a failure here
    /// means the database was edited by hand.
    pub fn spec(&self) -> StoreResult<AgentSpec> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("agent version {what}"));
        let level = |v: i64| u8::try_from(v).map_err(|_| corrupt("slider out of range"));
        Ok(AgentSpec {
            name: self.name.clone(),
            voice: self.voice.clone(),
            language: Language::parse(&self.language).map_err(|_| corrupt("language tag"))?,
            system_prompt: self.system_prompt.clone(),
            personality: Personality {
                humour: level(self.humour_level)?,
                empathy: level(self.empathy_level)?,
                formality: level(self.formality_level)?,
                energy: level(self.energy_level)?,
                directness: level(self.directness_level)?,
            },
            turn_engine: match self.turn_engine.as_deref() {
                None => None,
                Some(raw) => Some(EngineChoice::parse(raw).ok_or_else(|| corrupt("turn engine"))?),
            },
            tools: self.tool_names(),
            transfer_number: self.transfer_number.clone(),
            knowledge: self.knowledge_links()?,
            max_call_seconds: u32::try_from(self.max_call_seconds)
                .map_err(|_| corrupt("max_call_seconds out of range"))?,
        })
    }

    pub fn knowledge_links(&self) -> StoreResult<Vec<KnowledgeLink>> {
        knowledge_links(&self.knowledge)
    }

    pub fn tool_names(&self) -> Vec<String> {
        self.tools
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// The linked documents a version's `knowledge` column records.
pub fn knowledge_links(json: &str) -> StoreResult<Vec<KnowledgeLink>> {
    serde_json::from_str(json)
        .map_err(|_| StoreError::Corrupt("agent version knowledge links".into()))
}

/// `SELECT` of an agent joined with its current version; append the `WHERE` clause.
macro_rules! select_agents {
    ($where:literal) => {
        concat!(
            "SELECT a.id, a.current_version, a.status, a.created_at, a.updated_at, v.name, \
             v.voice, v.language, v.system_prompt, v.humour_level, v.empathy_level, \
             v.formality_level, v.energy_level, v.directness_level, v.turn_engine, v.tools, \
             v.transfer_number, v.knowledge, v.max_call_seconds, v.compiled_instructions, \
             v.instructions_hash \
             FROM agents a \
             JOIN agent_versions v ON v.agent_id = a.id AND v.version = a.current_version ",
            $where
        )
    };
}

pub async fn list(db: &Db, tenant: TenantId) -> StoreResult<Vec<AgentRow>> {
    let sql = select_agents!("WHERE a.tenant_id = $1 ORDER BY a.id");
    Ok(sqlx::query_as(sql)
        .bind(tenant.0)
        .fetch_all(db.pool())
        .await?)
}

pub async fn get(db: &Db, tenant: TenantId, agent: AgentId) -> StoreResult<AgentRow> {
    fetch(db.pool(), tenant, agent).await
}

async fn fetch<'e, E>(executor: E, tenant: TenantId, agent: AgentId) -> StoreResult<AgentRow>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = select_agents!("WHERE a.tenant_id = $1 AND a.id = $2");
    Ok(sqlx::query_as(sql)
        .bind(tenant.0)
        .bind(agent.0)
        .fetch_one(executor)
        .await?)
}

/// History, newest first; `limit` caps the rows.
pub async fn versions(
    db: &Db,
    tenant: TenantId,
    agent: AgentId,
    limit: i64,
) -> StoreResult<Vec<VersionSummaryRow>> {
    let rows = sqlx::query_as(
        "SELECT version, name, instructions_hash, rolled_back_from, created_by, created_at \
         FROM agent_versions WHERE tenant_id = $1 AND agent_id = $2 \
         ORDER BY version DESC LIMIT $3",
    )
    .bind(tenant.0)
    .bind(agent.0)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

pub async fn version(
    db: &Db,
    tenant: TenantId,
    agent: AgentId,
    version: i64,
) -> StoreResult<VersionRow> {
    version_in(db.pool(), tenant, agent, version).await
}

pub async fn version_in<'e, E>(
    executor: E,
    tenant: TenantId,
    agent: AgentId,
    version: i64,
) -> StoreResult<VersionRow>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query_as(
        "SELECT version, name, voice, language, system_prompt, humour_level, empathy_level, \
                formality_level, energy_level, directness_level, turn_engine, tools, \
                transfer_number, knowledge, max_call_seconds, compiled_instructions, \
                instructions_hash, rolled_back_from, \
                created_by, created_at \
         FROM agent_versions WHERE tenant_id = $1 AND agent_id = $2 AND version = $3",
    )
    .bind(tenant.0)
    .bind(agent.0)
    .bind(version)
    .fetch_one(executor)
    .await?;
    Ok(row)
}

pub async fn count_versions(db: &Db, tenant: TenantId, agent: AgentId) -> StoreResult<i64> {
    let n = sqlx::query_scalar(
        "SELECT COUNT(*) FROM agent_versions WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(tenant.0)
    .bind(agent.0)
    .fetch_one(db.pool())
    .await?;
    Ok(n)
}

/// What a new version row records besides the snapshot itself.
pub struct NewVersion<'a> {
    pub spec: &'a AgentSpec,
    pub compiled: &'a Compiled,
    pub rolled_back_from: Option<i64>,
    pub created_by: UserId,
}

/// Creates an agent with `first` as version 1.
pub async fn insert(tx: &mut Tx, tenant: TenantId, first: NewVersion<'_>) -> StoreResult<AgentRow> {
    let at = now();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO agents (tenant_id, current_version, status, created_at, updated_at) \
         VALUES ($1, 1, 'active', $2, $2) RETURNING id",
    )
    .bind(tenant.0)
    .bind(&at)
    .fetch_one(&mut **tx)
    .await?;
    insert_version(tx, tenant, AgentId(id), 1, &first, &at).await?;
    fetch(&mut **tx, tenant, AgentId(id)).await
}

/// Makes a new version current. Bumping the counter first takes the row's write lock, so
/// concurrent updates of one agent are serialised and never reuse a version number.
pub async fn bump_version(
    tx: &mut Tx,
    tenant: TenantId,
    agent: AgentId,
) -> StoreResult<(i64, String)> {
    let version = sqlx::query_as(
        "UPDATE agents SET current_version = current_version + 1, updated_at = $1 \
         WHERE tenant_id = $2 AND id = $3 RETURNING current_version, status",
    )
    .bind(now())
    .bind(tenant.0)
    .bind(agent.0)
    .fetch_one(&mut **tx)
    .await?;
    Ok(version)
}

/// Stores version `version` (already made current by [`bump_version`]) and returns the agent.
pub async fn add_version(
    tx: &mut Tx,
    tenant: TenantId,
    agent: AgentId,
    version: i64,
    new: NewVersion<'_>,
) -> StoreResult<AgentRow> {
    insert_version(tx, tenant, agent, version, &new, &now()).await?;
    fetch(&mut **tx, tenant, agent).await
}

async fn insert_version(
    tx: &mut Tx,
    tenant: TenantId,
    agent: AgentId,
    version: i64,
    new: &NewVersion<'_>,
    at: &str,
) -> StoreResult<()> {
    let p = new.spec.personality;
    sqlx::query(
        "INSERT INTO agent_versions (agent_id, tenant_id, version, name, voice, language, \
            system_prompt, humour_level, empathy_level, formality_level, energy_level, \
            directness_level, compiled_instructions, instructions_hash, rolled_back_from, \
            created_by, created_at, turn_engine, tools, transfer_number, knowledge, \
            max_call_seconds) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
            $18, $19, $20, $21, $22)",
    )
    .bind(agent.0)
    .bind(tenant.0)
    .bind(version)
    .bind(&new.spec.name)
    .bind(&new.spec.voice)
    .bind(new.spec.language.as_str())
    .bind(new.spec.system_prompt.as_deref())
    .bind(i64::from(p.humour))
    .bind(i64::from(p.empathy))
    .bind(i64::from(p.formality))
    .bind(i64::from(p.energy))
    .bind(i64::from(p.directness))
    .bind(&new.compiled.text)
    .bind(&new.compiled.hash)
    .bind(new.rolled_back_from)
    .bind(new.created_by.0)
    .bind(at)
    .bind(new.spec.turn_engine.map(EngineChoice::as_str))
    .bind(new.spec.tools.join(","))
    .bind(new.spec.transfer_number.as_deref())
    .bind(
        serde_json::to_string(&new.spec.knowledge)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
    )
    .bind(i64::from(new.spec.max_call_seconds))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks an agent `deleting`: it takes no new calls and goes when its live calls end.
pub async fn mark_deleting(tx: &mut Tx, tenant: TenantId, agent: AgentId) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE agents SET status = 'deleting', updated_at = $1 WHERE tenant_id = $2 AND id = $3",
    )
    .bind(now())
    .bind(tenant.0)
    .bind(agent.0)
    .execute(&mut **tx)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Deletes the agent and (by cascade) its versions.
pub async fn delete(tx: &mut Tx, tenant: TenantId, agent: AgentId) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM agents WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(agent.0)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The tenant and current version of an agent, looked up by id alone. Only for carrier entry
/// points, where the agent is named by the webhook URL the tenant configured at the carrier.
pub async fn owner(db: &Db, agent: AgentId) -> StoreResult<Option<(TenantId, i64)>> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT tenant_id, current_version FROM agents WHERE id = $1 AND status = 'active'",
    )
    .bind(agent.0)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(tenant, version)| (TenantId(tenant), version)))
}
