-- Billing (sqlite dialect): each business's plan (with the terms it was bought on), trial
-- seconds left and wallet; a usage record per metered call, written in the transaction that ends
-- the call; hosted checkout sessions for plans and wallet top-ups.

-- NULL plan: on the trial (and pay-as-you-go from the wallet). The plan's included seconds a
-- period and the overage rate are copied from the configuration when a plan is activated, so
-- metering needs no configuration and a price change applies to new purchases only.
ALTER TABLE tenants ADD COLUMN plan TEXT CHECK (plan IN ('starter', 'pro', 'enterprise'));
ALTER TABLE tenants ADD COLUMN plan_included_seconds INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN overage_cents_per_minute INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tenants ADD COLUMN plan_activated_at TEXT;
-- Lifetime trial left; granted from the configuration when a business is created.
ALTER TABLE tenants ADD COLUMN trial_seconds_remaining INTEGER NOT NULL DEFAULT 0;
-- May go below zero: a call in progress is never cut, and its overage is charged when it ends.
ALTER TABLE tenants ADD COLUMN wallet_cents INTEGER NOT NULL DEFAULT 0;
-- Businesses that predate billing start with the default trial (30 minutes), so that upgrading
-- does not stop their calls.
UPDATE tenants SET trial_seconds_remaining = 1800;

-- One row per metered call: its billed seconds and how they were paid for.
CREATE TABLE usage_records (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id         INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_id           INTEGER UNIQUE REFERENCES calls (id) ON DELETE SET NULL,
    -- The calendar month (UTC) the call ended in, as its first instant.
    period_start      TEXT    NOT NULL,
    seconds           INTEGER NOT NULL,
    trial_seconds     INTEGER NOT NULL,
    included_seconds  INTEGER NOT NULL,
    overage_seconds   INTEGER NOT NULL,
    wallet_cents      INTEGER NOT NULL,
    plan              TEXT,
    created_at        TEXT    NOT NULL
);
CREATE INDEX usage_records_period ON usage_records (tenant_id, period_start);

-- A hosted checkout: a plan or a wallet top-up, with the terms it was offered on.
CREATE TABLE checkout_sessions (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id                 INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind                      TEXT    NOT NULL CHECK (kind IN ('plan', 'top_up')),
    plan                      TEXT    CHECK (plan IN ('starter', 'pro', 'enterprise')),
    -- The plan's monthly price, or the top-up's amount.
    amount_cents              INTEGER NOT NULL,
    currency                  TEXT    NOT NULL,
    included_seconds          INTEGER NOT NULL,
    overage_cents_per_minute  INTEGER NOT NULL,
    provider                  TEXT    NOT NULL CHECK (provider IN ('builtin', 'stripe')),
    provider_session_id       TEXT    UNIQUE,
    -- SHA-256 of the session's 256-bit token (the built-in page's URL, Stripe's
    -- client_reference_id); the token itself is never stored.
    token_hash                TEXT    NOT NULL UNIQUE,
    status                    TEXT    NOT NULL DEFAULT 'open'
                              CHECK (status IN ('open', 'completed', 'expired')),
    -- The provider's hosted page (Stripe); NULL for the built-in page, whose URL is the token.
    url                       TEXT,
    created_at                TEXT    NOT NULL,
    expires_at                TEXT    NOT NULL,
    completed_at              TEXT
);
CREATE INDEX checkout_sessions_tenant ON checkout_sessions (tenant_id, id);
