-- Telephony (sqlite dialect): provisioned phone numbers, outbound campaigns, their targets and
-- every dial attempt. A target is claimed with a lease; an attempt row is written, unique per
-- target and attempt number, in the same transaction as the claim and before the carrier is
-- asked to dial, so no attempt is ever dialled twice.

CREATE TABLE phone_numbers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- E.164; a number is provisioned once across every business.
    number       TEXT NOT NULL UNIQUE,
    country      TEXT NOT NULL,
    kind         TEXT,
    carrier      TEXT NOT NULL,
    carrier_sid  TEXT NOT NULL,
    agent_id     INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX phone_numbers_tenant ON phone_numbers (tenant_id, id);
CREATE INDEX phone_numbers_agent ON phone_numbers (agent_id);

CREATE TABLE campaigns (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id            INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                 TEXT NOT NULL,
    agent_id             INTEGER REFERENCES agents (id) ON DELETE SET NULL,
    from_number          TEXT NOT NULL,
    status               TEXT NOT NULL DEFAULT 'draft'
                         CHECK (status IN ('draft', 'running', 'paused', 'completed', 'cancelled')),
    -- Why the dialler paused or stopped it, when it did so itself.
    status_reason        TEXT,
    max_concurrency      INTEGER NOT NULL,
    calls_per_minute     INTEGER NOT NULL,
    -- Local "HH:MM" bounds in `timezone`; NULL: any time.
    hours_start          TEXT,
    hours_end            TEXT,
    timezone             TEXT NOT NULL,
    max_attempts         INTEGER NOT NULL,
    retry_delay_minutes  INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    completed_at         TEXT
);
CREATE INDEX campaigns_tenant ON campaigns (tenant_id, id);
CREATE INDEX campaigns_running ON campaigns (status) WHERE status = 'running';

-- status: pending | dialling | completed | voicemail | busy | no-answer | failed | cancelled.
CREATE TABLE campaign_targets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id      INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    tenant_id        INTEGER NOT NULL,
    ordinal          INTEGER NOT NULL,
    phone_number     TEXT NOT NULL,
    name             TEXT,
    status           TEXT NOT NULL DEFAULT 'pending',
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    lease_owner      TEXT,
    lease_until      TEXT,
    updated_at       TEXT NOT NULL,
    UNIQUE (campaign_id, phone_number)
);
CREATE INDEX campaign_targets_due ON campaign_targets (campaign_id, status, next_attempt_at);
CREATE INDEX campaign_targets_leases ON campaign_targets (status, lease_until)
    WHERE status = 'dialling';

CREATE TABLE campaign_attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    target_id    INTEGER NOT NULL REFERENCES campaign_targets (id) ON DELETE CASCADE,
    campaign_id  INTEGER NOT NULL,
    attempt      INTEGER NOT NULL,
    call_id      INTEGER REFERENCES calls (id) ON DELETE SET NULL,
    -- NULL while the call is in progress; then completed | voicemail | busy | no-answer |
    -- failed | interrupted (its dialler died: the call's fate is unknown, and it is not redialled).
    outcome      TEXT,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    UNIQUE (target_id, attempt)
);
CREATE INDEX campaign_attempts_campaign ON campaign_attempts (campaign_id, started_at);
CREATE INDEX campaign_attempts_call ON campaign_attempts (call_id);

-- Who answered an outbound call, as the carrier's machine detection says: human | machine.
ALTER TABLE calls ADD COLUMN answered_by TEXT;
