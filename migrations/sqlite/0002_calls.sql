-- Calls (SQLite dialect). A call row exists from the moment a stream is handed out (test calls,
-- carrier webhooks) or starts; it ends completed or failed with its duration.

CREATE TABLE calls (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id        INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id         INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    agent_version    INTEGER,
    direction        TEXT    NOT NULL CHECK (direction IN ('inbound', 'outbound', 'test')),
    carrier          TEXT    NOT NULL CHECK (carrier IN ('twilio', 'telnyx', 'plivo', 'vonage', 'web')),
    carrier_call_id  TEXT,
    from_number      TEXT,
    to_number        TEXT,
    status           TEXT    NOT NULL CHECK (status IN ('initiated', 'in-progress', 'completed', 'failed')),
    disposition      TEXT,
    created_at       TEXT    NOT NULL,
    started_at       TEXT,
    ended_at         TEXT,
    duration_ms      INTEGER
);
CREATE INDEX calls_tenant_created ON calls (tenant_id, created_at);
CREATE INDEX calls_agent ON calls (agent_id);
