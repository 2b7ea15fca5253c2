-- One latency report per agent turn (PostgreSQL dialect): the stages from the end of the caller's
-- speech to the first agent audio frame written to the socket, in milliseconds.

CREATE TABLE call_turns (
    call_id          BIGINT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    tenant_id        BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    turn             BIGINT NOT NULL,
    caller_text      TEXT,
    agent_text       TEXT,
    endpoint_wait_ms BIGINT,
    stt_ms           BIGINT,
    turn_ms          BIGINT,
    tts_ms           BIGINT,
    total_ms         BIGINT,
    interrupted      BIGINT NOT NULL DEFAULT 0,
    created_at       TEXT    NOT NULL,
    PRIMARY KEY (call_id, turn)
);
