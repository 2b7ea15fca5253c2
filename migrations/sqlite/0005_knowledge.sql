-- The knowledge base (sqlite dialect): uploaded documents, their original bytes, and the chunks
-- with their embeddings (384 little-endian f32, L2-normalised). Agents link documents through
-- their version snapshot (`agent_versions.knowledge`).

CREATE TABLE knowledge_documents (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    filename     TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    error        TEXT,
    pages        INTEGER,
    chunks       INTEGER NOT NULL DEFAULT 0,
    -- Processing attempts, and until when the worker that claimed it holds it.
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_until  TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX knowledge_documents_tenant ON knowledge_documents (tenant_id, status, id);
CREATE INDEX knowledge_documents_queue ON knowledge_documents (id)
    WHERE status IN ('pending', 'processing');

CREATE TABLE knowledge_files (
    document_id INTEGER PRIMARY KEY REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    bytes       BLOB NOT NULL
);

CREATE TABLE knowledge_chunks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id INTEGER NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    tenant_id   INTEGER NOT NULL,
    ordinal     INTEGER NOT NULL,
    page        INTEGER,
    heading     TEXT,
    text        TEXT NOT NULL,
    tokens      INTEGER NOT NULL,
    embedding   BLOB NOT NULL
);
CREATE INDEX knowledge_chunks_document ON knowledge_chunks (document_id, ordinal);

-- JSON list of the linked documents: [{"id": 3, "filename": "menu.pdf"}].
ALTER TABLE agent_versions ADD COLUMN knowledge TEXT NOT NULL DEFAULT '[]';
