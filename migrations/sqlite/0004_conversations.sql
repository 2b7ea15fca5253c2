-- The conversation engine (sqlite dialect): the tenant's time zone and default turn engine, the
-- agent's turn engine and tools, what a call leaves behind (summary, sentiment, recording,
-- transcript offsets), bookings, and the outbox of events the webhook worker delivers.

ALTER TABLE tenants ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC';
ALTER TABLE tenants ADD COLUMN turn_engine TEXT NOT NULL DEFAULT 'auto'
    CHECK (turn_engine IN ('auto', 'llm', 'embedded'));

-- NULL turn_engine: the tenant's default. tools: comma-separated tool names.
ALTER TABLE agent_versions ADD COLUMN turn_engine TEXT
    CHECK (turn_engine IN ('auto', 'llm', 'embedded'));
ALTER TABLE agent_versions ADD COLUMN tools TEXT NOT NULL DEFAULT 'book_appointment,end_call';
ALTER TABLE agent_versions ADD COLUMN transfer_number TEXT;

ALTER TABLE calls ADD COLUMN summary TEXT;
ALTER TABLE calls ADD COLUMN sentiment REAL;
-- none (not recorded, or the call is in progress) | encoding | ready | failed
ALTER TABLE calls ADD COLUMN recording_status TEXT NOT NULL DEFAULT 'none';
ALTER TABLE calls ADD COLUMN recording_bytes INTEGER;
ALTER TABLE calls ADD COLUMN transcript_ready_at TEXT;
CREATE INDEX calls_tenant_status ON calls (tenant_id, status, created_at);
-- Calls that ended before this migration get no after-call work: without this, the first start
-- would summarise every old call and announce each in the outbox.
UPDATE calls SET transcript_ready_at = ended_at WHERE status IN ('completed', 'failed');
-- The start-up sweep looks for ended calls not yet analysed; keep that a small index scan.
CREATE INDEX calls_unanalysed ON calls (id) WHERE transcript_ready_at IS NULL;

-- When the caller's utterance began and when the agent's reply was first heard, from the start
-- of the call.
ALTER TABLE call_turns ADD COLUMN caller_offset_ms INTEGER;
ALTER TABLE call_turns ADD COLUMN agent_offset_ms INTEGER;

CREATE TABLE bookings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_id     INTEGER REFERENCES calls (id) ON DELETE SET NULL,
    agent_id    INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    name        TEXT NOT NULL,
    phone       TEXT,
    -- Local date and time in the time zone beside it, and the same instant in UTC.
    starts_at   TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    starts_utc  TEXT NOT NULL,
    notes       TEXT,
    created_at  TEXT NOT NULL
);
CREATE INDEX bookings_tenant ON bookings (tenant_id, id);

-- Events, written in the same transaction as the change they describe.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX outbox_tenant ON outbox (tenant_id, id);
