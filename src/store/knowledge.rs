//! Knowledge documents, their original bytes and their chunks with embeddings.
//!
//! A document is `pending` until a worker claims it: the claim sets `processing`, counts the
//! attempt and takes a lease. The attempt number fences the worker: renewing the lease and
//! storing the result both require it, so a worker whose lease expired (and whose document was
//! claimed again) cannot overwrite the newer attempt, and a document deleted while it was being
//! processed stays deleted.

use chrono::{Duration, SecondsFormat, Utc};
use sqlx::FromRow;

use super::{Backend, Db, StoreError, StoreResult, now};
use crate::domain::TenantId;
use crate::models::minilm::DIMENSIONS;

#[derive(Debug, Clone, FromRow)]
pub struct DocumentRow {
    pub id: i64,
    pub tenant_id: i64,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub status: String,
    pub error: Option<String>,
    pub pages: Option<i64>,
    pub chunks: i64,
    pub attempts: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// `$start` + the document columns + `$end`, as one literal.
macro_rules! document_sql {
    ($start:literal, $end:literal) => {
        concat!(
            $start,
            " id, tenant_id, filename, content_type, size, sha256, status, error, pages, chunks, \
             attempts, created_at, updated_at ",
            $end
        )
    };
}

pub struct NewDocument<'a> {
    pub filename: &'a str,
    pub content_type: &'a str,
    pub sha256: &'a str,
    pub bytes: &'a [u8],
}

/// A chunk ready to store.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub page: Option<i64>,
    pub heading: Option<String>,
    pub text: String,
    pub tokens: i64,
    pub embedding: Vec<f32>,
}

/// A stored chunk with its document's name, for search results.
#[derive(Debug, Clone, FromRow)]
pub struct ChunkRow {
    pub id: i64,
    pub document_id: i64,
    pub filename: String,
    pub page: Option<i64>,
    pub heading: Option<String>,
    pub text: String,
}

/// A document a worker has claimed.
#[derive(Debug, Clone, FromRow)]
pub struct Claim {
    pub id: i64,
    pub tenant_id: i64,
    pub filename: String,
    pub attempts: i64,
}

/// Stores an uploaded document (status `pending`) and its bytes.
pub async fn insert(db: &Db, tenant: TenantId, doc: NewDocument<'_>) -> StoreResult<DocumentRow> {
    let mut tx = db.begin_write().await?;
    let at = now();
    let row: DocumentRow = sqlx::query_as(document_sql!(
        "INSERT INTO knowledge_documents (tenant_id, filename, content_type, size, sha256, \
            created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING",
        ""
    ))
    .bind(tenant.0)
    .bind(doc.filename)
    .bind(doc.content_type)
    .bind(doc.bytes.len() as i64)
    .bind(doc.sha256)
    .bind(&at)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO knowledge_files (document_id, bytes) VALUES ($1, $2)")
        .bind(row.id)
        .bind(doc.bytes)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn get(db: &Db, tenant: TenantId, id: i64) -> StoreResult<DocumentRow> {
    let row = sqlx::query_as(document_sql!(
        "SELECT",
        "FROM knowledge_documents WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(tenant.0)
    .bind(id)
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}

/// Every document of the tenant, oldest first.
pub async fn list(db: &Db, tenant: TenantId) -> StoreResult<Vec<DocumentRow>> {
    let rows = sqlx::query_as(document_sql!(
        "SELECT",
        "FROM knowledge_documents WHERE tenant_id = $1 ORDER BY id"
    ))
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// The ids of the tenant's documents, inside a transaction.
pub async fn ids_in(tx: &mut super::Tx, tenant: TenantId) -> StoreResult<Vec<i64>> {
    let ids = sqlx::query_scalar("SELECT id FROM knowledge_documents WHERE tenant_id = $1")
        .bind(tenant.0)
        .fetch_all(&mut **tx)
        .await?;
    Ok(ids)
}

/// Deletes a document with its bytes and chunks.
pub async fn delete(db: &Db, tenant: TenantId, id: i64) -> StoreResult<()> {
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1 AND tenant_id = $2")
        .bind(id)
        .bind(tenant.0)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query("DELETE FROM knowledge_documents WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.0)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

fn lease_end(lease: std::time::Duration) -> String {
    let lease = Duration::from_std(lease).unwrap_or(Duration::minutes(10));
    (Utc::now() + lease).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Claims the oldest document that is pending, or whose worker's lease ran out (a crash or a
/// kill mid-processing), counting the attempt. Several workers, in one process or several on
/// PostgreSQL, never claim the same attempt.
pub async fn claim(db: &Db, lease: std::time::Duration) -> StoreResult<Option<Claim>> {
    let at = now();
    let lock = match db.backend() {
        Backend::Postgres => "FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let claimable = "(status = 'pending' OR (status = 'processing' AND lease_until < $2))";
    let mut tx = db.begin_write().await?;
    // Only constant text is formatted in: the lock clause for the backend.
    let claim: Option<Claim> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE knowledge_documents \
         SET status = 'processing', attempts = attempts + 1, lease_until = $1, updated_at = $2 \
         WHERE id = (SELECT id FROM knowledge_documents WHERE {claimable} \
                     ORDER BY id LIMIT 1 {lock}) \
           AND {claimable} \
         RETURNING id, tenant_id, filename, attempts"
    )))
    .bind(lease_end(lease))
    .bind(&at)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claim)
}

/// Extends the lease of a claimed attempt; false when the attempt is no longer the current one
/// (the document was deleted or claimed again).
pub async fn renew(db: &Db, claim: &Claim, lease: std::time::Duration) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE knowledge_documents SET lease_until = $1 \
         WHERE id = $2 AND status = 'processing' AND attempts = $3",
    )
    .bind(lease_end(lease))
    .bind(claim.id)
    .bind(claim.attempts)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The original bytes of a document.
pub async fn bytes(db: &Db, id: i64) -> StoreResult<Vec<u8>> {
    let (bytes,): (Vec<u8>,) =
        sqlx::query_as("SELECT bytes FROM knowledge_files WHERE document_id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await?;
    Ok(bytes)
}

/// Stores the chunks of a claimed attempt and marks the document ready, replacing any chunks of
/// an earlier attempt. False (nothing stored) when the attempt is no longer the current one.
pub async fn complete(
    db: &Db,
    claim: &Claim,
    pages: i64,
    chunks: &[NewChunk],
) -> StoreResult<bool> {
    let mut tx = db.begin_write().await?;
    let done = sqlx::query(
        "UPDATE knowledge_documents \
         SET status = 'ready', error = NULL, pages = $1, chunks = $2, lease_until = NULL, \
             updated_at = $3 \
         WHERE id = $4 AND status = 'processing' AND attempts = $5",
    )
    .bind(pages)
    .bind(chunks.len() as i64)
    .bind(now())
    .bind(claim.id)
    .bind(claim.attempts)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1")
        .bind(claim.id)
        .execute(&mut *tx)
        .await?;
    for (ordinal, chunk) in chunks.iter().enumerate() {
        sqlx::query(
            "INSERT INTO knowledge_chunks (document_id, tenant_id, ordinal, page, heading, text, \
                tokens, embedding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(claim.id)
        .bind(claim.tenant_id)
        .bind(ordinal as i64)
        .bind(chunk.page)
        .bind(chunk.heading.as_deref())
        .bind(&chunk.text)
        .bind(chunk.tokens)
        .bind(encode_vector(&chunk.embedding))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Marks a claimed attempt failed with a reason a person can read. False when the attempt is no
/// longer the current one.
pub async fn fail(db: &Db, claim: &Claim, error: &str) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE knowledge_documents \
         SET status = 'failed', error = $1, lease_until = NULL, updated_at = $2 \
         WHERE id = $3 AND status = 'processing' AND attempts = $4",
    )
    .bind(error)
    .bind(now())
    .bind(claim.id)
    .bind(claim.attempts)
    .execute(db.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The tenant's ready documents and when each last changed: what the search index must hold.
pub async fn ready(db: &Db, tenant: TenantId) -> StoreResult<Vec<(i64, String)>> {
    let rows = sqlx::query_as(
        "SELECT id, updated_at FROM knowledge_documents \
         WHERE tenant_id = $1 AND status = 'ready' ORDER BY id",
    )
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// The ids and embeddings of a document's chunks, in order.
pub async fn vectors(db: &Db, document: i64) -> StoreResult<Vec<(i64, Vec<f32>)>> {
    let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, embedding FROM knowledge_chunks WHERE document_id = $1 ORDER BY ordinal",
    )
    .bind(document)
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|(id, bytes)| decode_vector(&bytes).map(|v| (id, v)))
        .collect()
}

/// The tenant's chunks by id, in the order asked; ids of other tenants are left out.
pub async fn chunks(db: &Db, tenant: TenantId, ids: &[i64]) -> StoreResult<Vec<ChunkRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT c.id, c.document_id, d.filename, c.page, c.heading, c.text \
         FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id \
         WHERE c.tenant_id = $1 AND c.id IN ({})",
        placeholders.join(", ")
    );
    // Only placeholders are formatted in; the ids are bound.
    let mut query = sqlx::query_as::<_, ChunkRow>(sqlx::AssertSqlSafe(sql)).bind(tenant.0);
    for id in ids {
        query = query.bind(*id);
    }
    let mut rows = query.fetch_all(db.pool()).await?;
    rows.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
    Ok(rows)
}

/// Which agents link each document: (agent id, the current version's knowledge JSON) for every
/// agent of the tenant.
pub async fn agent_links(db: &Db, tenant: TenantId) -> StoreResult<Vec<(i64, String)>> {
    let rows = sqlx::query_as(
        "SELECT a.id, v.knowledge FROM agents a \
         JOIN agent_versions v ON v.agent_id = a.id AND v.version = a.current_version \
         WHERE a.tenant_id = $1 ORDER BY a.id",
    )
    .bind(tenant.0)
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// An embedding as stored: little-endian f32s.
pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub fn decode_vector(bytes: &[u8]) -> StoreResult<Vec<f32>> {
    if bytes.len() != DIMENSIONS * 4 {
        return Err(StoreError::Corrupt(format!(
            "a knowledge chunk embedding has {} bytes, not {}",
            bytes.len(),
            DIMENSIONS * 4
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
