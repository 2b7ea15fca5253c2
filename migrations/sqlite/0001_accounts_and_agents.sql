-- Accounts, tenants, API tokens and versioned agents (SQLite dialect).
-- Timestamps are RFC 3339 UTC text with milliseconds, so they sort as strings.

CREATE TABLE users (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    email          TEXT    NOT NULL UNIQUE,
    password_hash  TEXT    NOT NULL,
    last_tenant_id INTEGER,
    created_at     TEXT    NOT NULL
);

CREATE TABLE tenants (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    created_at TEXT    NOT NULL
);

CREATE TABLE memberships (
    tenant_id  INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       TEXT    NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE api_tokens (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash       TEXT    NOT NULL UNIQUE,
    active_tenant_id INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at       TEXT    NOT NULL,
    revoked_at       TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE agents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    current_version INTEGER NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleting')),
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX agents_tenant ON agents (tenant_id, id);

-- Immutable snapshots: a row is never updated, only added (and removed with its agent).
CREATE TABLE agent_versions (
    agent_id              INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tenant_id             INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version               INTEGER NOT NULL,
    name                  TEXT    NOT NULL,
    voice                 TEXT    NOT NULL,
    language              TEXT    NOT NULL,
    system_prompt         TEXT,
    humour_level          INTEGER NOT NULL,
    empathy_level         INTEGER NOT NULL,
    formality_level       INTEGER NOT NULL,
    energy_level          INTEGER NOT NULL,
    directness_level      INTEGER NOT NULL,
    compiled_instructions TEXT    NOT NULL,
    instructions_hash     TEXT    NOT NULL,
    rolled_back_from      INTEGER,
    created_by            INTEGER REFERENCES users (id) ON DELETE SET NULL,
    created_at            TEXT    NOT NULL,
    PRIMARY KEY (agent_id, version)
);
