//! The knowledge base: upload (multipart), list, get, delete, and search. Members may read and
//! search; owners and admins upload and delete.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};
use super::extract::{Auth, Fields, JsonBody, Optional, parse_id};
use super::{AppState, JsonResult};
use crate::domain::{AgentId, Role, TenantId};
use crate::knowledge::extract::{self, Format};
use crate::knowledge::{KnowledgeError, MAX_TOP_K};
use crate::store::knowledge::{self as store, DocumentRow, NewDocument};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        // The upload enforces its own, larger limit (`max_upload_bytes`) as it reads.
        .routes(routes!(list_documents, upload_document).layer(DefaultBodyLimit::disable()))
        .routes(routes!(get_document, delete_document))
        .routes(routes!(search))
}

/// A knowledge document.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    pub id: i64,
    pub filename: String,
    /// `application/pdf` or the DOCX type, from the file's content.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// `pending`, `processing`, `ready` or `failed`.
    pub status: String,
    /// Why processing failed, for `failed` documents.
    pub error: Option<String>,
    /// Pages, once processed (DOCX: as its page breaks and saved page count say).
    pub pages: Option<i64>,
    /// Searchable passages, once ready.
    pub chunks: i64,
    /// The agents whose current version links this document.
    pub agents: Vec<i64>,
    /// SHA-256 (hex) of the file.
    pub sha256: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A passage found by a search.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    pub chunk_id: i64,
    pub document_id: i64,
    pub filename: String,
    /// The page the passage starts on.
    pub page: Option<i64>,
    /// The headings above the passage, outermost first, joined with " > ".
    pub heading: Option<String>,
    pub text: String,
    /// Cosine similarity to the query, -1 to 1.
    pub score: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub query: String,
    pub results: Vec<SearchHit>,
}

#[allow(dead_code)] // Documentation of request bodies; parsing goes through `Fields`/multipart.
mod docs {
    use utoipa::ToSchema;

    /// `multipart/form-data` with the document in a `file` field.
    #[derive(ToSchema)]
    pub struct Upload {
        /// A PDF or DOCX file (recognised by its content), up to the upload limit (20 MiB by
        /// default).
        #[schema(value_type = String, format = Binary)]
        pub file: Vec<u8>,
    }

    #[derive(ToSchema)]
    pub struct SearchRequest {
        /// What to look for, 1 to 1000 characters.
        pub query: String,
        /// Search only the documents this agent links.
        pub agent_id: Option<i64>,
        /// How many passages, 1 to 20 (default 5).
        pub top_k: Option<i64>,
    }
}

/// The agents that link each document, from their current versions.
async fn links(state: &AppState, tenant: TenantId) -> Result<BTreeMap<i64, Vec<i64>>, ApiError> {
    let mut by_document: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (agent, knowledge) in store::agent_links(&state.db, tenant).await? {
        for link in crate::store::agents::knowledge_links(&knowledge)? {
            by_document.entry(link.id).or_default().push(agent);
        }
    }
    Ok(by_document)
}

fn document_view(row: DocumentRow, links: &BTreeMap<i64, Vec<i64>>) -> DocumentView {
    DocumentView {
        agents: links.get(&row.id).cloned().unwrap_or_default(),
        id: row.id,
        filename: row.filename,
        content_type: row.content_type,
        size: row.size,
        status: row.status,
        error: row.error,
        pages: row.pages,
        chunks: row.chunks,
        sha256: row.sha256,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// All documents of the business, with their processing status and linked agents.
#[utoipa::path(
    get, path = "/api/knowledge", tag = "knowledge", security(("bearer" = [])),
    responses((status = 200, body = Vec<DocumentView>))
)]
async fn list_documents(
    State(state): State<AppState>,
    auth: Auth,
) -> JsonResult<Vec<DocumentView>> {
    let tenant = auth.tenant()?;
    let links = links(&state, tenant).await?;
    let rows = store::list(&state.db, tenant).await?;
    Ok(Json(
        rows.into_iter().map(|r| document_view(r, &links)).collect(),
    ))
}

/// Uploads a PDF or DOCX document; it is processed in the background (`pending` →
/// `processing` → `ready` or `failed`).
#[utoipa::path(
    post, path = "/api/knowledge", tag = "knowledge", security(("bearer" = [])),
    request_body(content = docs::Upload, content_type = "multipart/form-data"),
    responses(
        (status = 201, body = DocumentView),
        (status = 403, body = ErrorBody),
        (status = 413, description = "The file is over the upload limit", body = ErrorBody),
        (status = 422, description = "No file field, an empty file, or neither PDF nor DOCX", body = ErrorBody),
    )
)]
async fn upload_document(
    State(state): State<AppState>,
    auth: Auth,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<DocumentView>), ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let mut multipart = multipart.map_err(|_| {
        ApiError::field(
            "file",
            "send the document as multipart/form-data with a file field",
        )
    })?;
    let limit = state.upload_limit;
    let mut received = 0usize;
    let mut upload: Option<(Option<String>, Vec<u8>)> = None;
    let malformed = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(format!(
                "the multipart body is malformed: {}",
                e.body_text()
            ))
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(malformed)? {
        let is_file = field.name() == Some("file") && upload.is_none();
        let filename = field.file_name().map(str::to_owned);
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            received += chunk.len();
            // Other fields count too: nothing unbounded is read.
            if received > limit {
                return Err(ApiError::PayloadTooLarge);
            }
            if is_file {
                bytes.extend_from_slice(&chunk);
            }
        }
        if is_file {
            upload = Some((filename, bytes));
        }
    }
    let Some((filename, bytes)) = upload else {
        return Err(ApiError::field(
            "file",
            "is required: send the document as multipart/form-data with a file field",
        ));
    };
    if bytes.is_empty() {
        return Err(ApiError::field("file", "is empty"));
    }
    let Some(format) = extract::sniff(&bytes) else {
        return Err(ApiError::field(
            "file",
            "must be a PDF or DOCX document (recognised by its content, not its name)",
        ));
    };
    let filename = clean_filename(filename.as_deref(), format);
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let row = store::insert(
        &state.db,
        tenant,
        NewDocument {
            filename: &filename,
            content_type: format.content_type(),
            sha256: &sha256,
            bytes: &bytes,
        },
    )
    .await?;
    state.knowledge.notify_upload();
    tracing::info!(
        document_id = row.id,
        size = row.size,
        "knowledge document uploaded"
    );
    Ok((
        StatusCode::CREATED,
        Json(document_view(row, &BTreeMap::new())),
    ))
}

/// The file's own name without any directory, control characters or surrounding space, at most
/// 255 characters; "document.pdf" (or .docx) when it has none.
fn clean_filename(raw: Option<&str>, format: Format) -> String {
    let base = raw
        .unwrap_or_default()
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let name: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(255)
        .collect::<String>()
        .trim()
        .to_owned();
    if name.is_empty() || name == "." || name == ".." {
        match format {
            Format::Pdf => "document.pdf".into(),
            Format::Docx => "document.docx".into(),
        }
    } else {
        name
    }
}

/// One document.
#[utoipa::path(
    get, path = "/api/knowledge/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = DocumentView), (status = 404, body = ErrorBody))
)]
async fn get_document(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> JsonResult<DocumentView> {
    let tenant = auth.tenant()?;
    let row = store::get(&state.db, tenant, parse_id(&id)?)
        .await
        .map_err(not_found)?;
    let links = links(&state, tenant).await?;
    Ok(Json(document_view(row, &links)))
}

/// Deletes a document with its passages; agents stop using it at once.
#[utoipa::path(
    delete, path = "/api/knowledge/{id}", tag = "knowledge", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn delete_document(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = auth.require(Role::Admin)?;
    let id = parse_id(&id)?;
    store::delete(&state.db, tenant, id)
        .await
        .map_err(not_found)?;
    tracing::info!(document_id = id, "knowledge document deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn not_found(error: crate::store::StoreError) -> ApiError {
    match error {
        crate::store::StoreError::NotFound => ApiError::NotFound("document not found".into()),
        other => other.into(),
    }
}

/// The passages of the business's ready documents (or of one agent's linked documents) closest
/// in meaning to a query, for checking what an agent will be given.
#[utoipa::path(
    post, path = "/api/knowledge/search", tag = "knowledge", security(("bearer" = [])),
    request_body = docs::SearchRequest,
    responses((status = 200, body = SearchResults), (status = 404, description = "No such agent", body = ErrorBody))
)]
async fn search(
    State(state): State<AppState>,
    auth: Auth,
    body: JsonBody,
) -> JsonResult<SearchResults> {
    let tenant = auth.tenant()?;
    let mut fields = Fields::new(&body);
    let query = fields.required_string("query", 1000);
    let top_k = fields.optional_int("top_k", 1, MAX_TOP_K as i64);
    let agent = match fields.optional_int("agent_id", 1, i64::MAX) {
        Optional::Value(id) => Some(AgentId(id)),
        _ => None,
    };
    let query = fields.finish_with(query)?;
    let documents = match agent {
        Some(agent) => {
            let row = crate::store::agents::get(&state.db, tenant, agent)
                .await
                .map_err(|e| match e {
                    crate::store::StoreError::NotFound => {
                        ApiError::NotFound("agent not found".into())
                    }
                    other => other.into(),
                })?;
            let links = row.snapshot.knowledge_links()?;
            Some(links.iter().map(|l| l.id).collect::<Vec<_>>())
        }
        None => None,
    };
    let passages = state
        .knowledge
        .search(tenant, &query, documents.as_deref(), top_k.or(5) as usize)
        .await
        .map_err(|e| match e {
            KnowledgeError::Store(store) => ApiError::from(store),
            other => ApiError::internal(other),
        })?;
    Ok(Json(SearchResults {
        query,
        results: passages
            .into_iter()
            .map(|p| SearchHit {
                chunk_id: p.chunk.id,
                document_id: p.chunk.document_id,
                filename: p.chunk.filename,
                page: p.chunk.page,
                heading: p.chunk.heading,
                text: p.chunk.text,
                score: p.score,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_directories_and_control_characters() {
        assert_eq!(clean_filename(Some("menu.pdf"), Format::Pdf), "menu.pdf");
        assert_eq!(
            clean_filename(Some("C:\\docs\\faq.docx"), Format::Docx),
            "faq.docx"
        );
        assert_eq!(
            clean_filename(Some("../../etc/pass\nwd"), Format::Pdf),
            "passwd"
        );
        assert_eq!(clean_filename(Some("  "), Format::Pdf), "document.pdf");
        assert_eq!(clean_filename(None, Format::Docx), "document.docx");
        assert_eq!(clean_filename(Some(".."), Format::Pdf), "document.pdf");
        assert_eq!(
            clean_filename(Some(&"x".repeat(300)), Format::Pdf).len(),
            255
        );
    }
}
