-- One latency report per agent turn (SQLite dialect): the stages from the end of the caller's
-- speech to the first agent audio frame written to the socket, in milliseconds.

CREATE TABLE call_turns (
    call_id          INTEGER NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id        INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    turn             INTEGER NOT NULL,
    caller_text      TEXT,
    agent_text       TEXT,
    endpoint_wait_ms INTEGER,
    stt_ms           INTEGER,
    turn_ms          INTEGER,
    tts_ms           INTEGER,
    total_ms         INTEGER,
    interrupted      INTEGER NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    PRIMARY KEY (call_id, turn)
);
