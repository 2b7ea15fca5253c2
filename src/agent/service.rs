//! Agent operations: every change stores a new immutable version and recompiles instructions;
//! rollback copies an old snapshot forward as a new version, so history is never rewritten.

use tracing::instrument;

use super::AgentSpec;
use super::instructions::compile;
use crate::domain::{AgentId, TenantId, UserId};
use crate::store::agents::{self, AgentRow, NewVersion, VersionSummaryRow};
use crate::store::{Db, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent not found")]
    NotFound,
    #[error("agent version not found")]
    VersionNotFound,
    /// The agent is being deleted (it waits for its live calls to end) and takes no changes.
    #[error("the agent is being deleted")]
    Deleting,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AgentError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => AgentError::NotFound,
            other => AgentError::Store(other),
        }
    }
}

/// An agent with the history summary its detail view shows.
#[derive(Debug, Clone)]
pub struct AgentDetail {
    pub agent: AgentRow,
    pub version_count: i64,
    pub recent_versions: Vec<VersionSummaryRow>,
}

/// How many versions the agent detail lists; the versions route lists all.
pub const RECENT_VERSIONS: i64 = 20;

#[instrument(skip_all, fields(tenant_id = %tenant))]
pub async fn create(
    db: &Db,
    tenant: TenantId,
    user: UserId,
    spec: AgentSpec,
) -> Result<AgentRow, AgentError> {
    let compiled = compile(&spec);
    let mut tx = db.begin_write().await?;
    let agent = agents::insert(
        &mut tx,
        tenant,
        NewVersion {
            spec: &spec,
            compiled: &compiled,
            rolled_back_from: None,
            created_by: user,
        },
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(agent_id = agent.id, "agent created");
    Ok(agent)
}

/// Makes the next version current, unless the agent is being deleted (the transaction is then
/// dropped, which undoes the bump).
async fn bump_version(
    tx: &mut crate::store::Tx,
    tenant: TenantId,
    agent: AgentId,
) -> Result<i64, AgentError> {
    match agents::bump_version(tx, tenant, agent).await? {
        (_, status) if status == "deleting" => Err(AgentError::Deleting),
        (version, _) => Ok(version),
    }
}

/// Applies `change` to the current snapshot and stores the result as a new version. The current
/// snapshot is read inside the write transaction, so concurrent partial updates never lose each
/// other's fields.
#[instrument(skip_all, fields(tenant_id = %tenant, agent_id = %agent))]
pub async fn update(
    db: &Db,
    tenant: TenantId,
    user: UserId,
    agent: AgentId,
    change: impl FnOnce(AgentSpec) -> AgentSpec,
) -> Result<AgentRow, AgentError> {
    let mut tx = db.begin_write().await?;
    let version = bump_version(&mut tx, tenant, agent).await?;
    let current = agents::version_in(&mut *tx, tenant, agent, version - 1).await?;
    let spec = change(current.snapshot.spec()?);
    let compiled = compile(&spec);
    let row = agents::add_version(
        &mut tx,
        tenant,
        agent,
        version,
        NewVersion {
            spec: &spec,
            compiled: &compiled,
            rolled_back_from: None,
            created_by: user,
        },
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(version, "agent updated");
    Ok(row)
}

/// Makes version `from` current again as a new version with the same snapshot and the same
/// compiled instructions.
#[instrument(skip_all, fields(tenant_id = %tenant, agent_id = %agent))]
pub async fn rollback(
    db: &Db,
    tenant: TenantId,
    user: UserId,
    agent: AgentId,
    from: i64,
) -> Result<AgentRow, AgentError> {
    let mut tx = db.begin_write().await?;
    let version = bump_version(&mut tx, tenant, agent).await?;
    let old = match agents::version_in(&mut *tx, tenant, agent, from).await {
        // `version` is the one being created; rolling back to it (or beyond) is no rollback.
        Ok(old) if from < version => old,
        Ok(_) | Err(StoreError::NotFound) => return Err(AgentError::VersionNotFound),
        Err(other) => return Err(other.into()),
    };
    let mut spec = old.snapshot.spec()?;
    // Documents deleted since that version are not linked again; the instructions then name
    // only the ones that remain.
    let existing = crate::store::knowledge::ids_in(&mut tx, tenant).await?;
    let linked = spec.knowledge.len();
    spec.knowledge.retain(|link| existing.contains(&link.id));
    let compiled = if spec.knowledge.len() == linked {
        super::instructions::Compiled {
            text: old.compiled_instructions,
            hash: old.instructions_hash,
        }
    } else {
        compile(&spec)
    };
    let row = agents::add_version(
        &mut tx,
        tenant,
        agent,
        version,
        NewVersion {
            spec: &spec,
            compiled: &compiled,
            rolled_back_from: Some(from),
            created_by: user,
        },
    )
    .await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!(version, from, "agent rolled back");
    Ok(row)
}

pub async fn detail(db: &Db, tenant: TenantId, agent: AgentId) -> Result<AgentDetail, AgentError> {
    let row = agents::get(db, tenant, agent).await?;
    let version_count = agents::count_versions(db, tenant, agent).await?;
    let recent_versions = agents::versions(db, tenant, agent, RECENT_VERSIONS).await?;
    Ok(AgentDetail {
        agent: row,
        version_count,
        recent_versions,
    })
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    /// Calls are live: the agent is `deleting` and goes when the last one ends.
    Deferred,
}

/// Deletes an agent permanently, or, while `live_calls` of its calls are in progress, marks it
/// `deleting` (it takes no new calls) and leaves the deletion to [`delete_if_idle`].
#[instrument(skip_all, fields(tenant_id = %tenant, agent_id = %agent))]
pub async fn delete(
    db: &Db,
    tenant: TenantId,
    agent: AgentId,
    live_calls: usize,
) -> Result<Deletion, AgentError> {
    let mut tx = db.begin_write().await?;
    if live_calls > 0 {
        agents::mark_deleting(&mut tx, tenant, agent).await?;
        tx.commit().await.map_err(StoreError::from)?;
        tracing::info!(live_calls, "agent deletion deferred until its calls end");
        return Ok(Deletion::Deferred);
    }
    agents::delete(&mut tx, tenant, agent).await?;
    tx.commit().await.map_err(StoreError::from)?;
    tracing::info!("agent deleted");
    Ok(Deletion::Deleted)
}

/// Completes a deferred deletion once the agent has no live calls left.
pub async fn delete_if_idle(
    db: &Db,
    tenant: TenantId,
    agent: AgentId,
    live_calls: usize,
) -> Result<(), AgentError> {
    if live_calls > 0 {
        return Ok(());
    }
    let row = match agents::get(db, tenant, agent).await {
        Err(StoreError::NotFound) => return Ok(()),
        other => other?,
    };
    if row.status == "deleting" {
        delete(db, tenant, agent, 0).await?;
    }
    Ok(())
}
