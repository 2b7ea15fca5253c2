-- Money (sqlite dialect): the trial once per account, Stripe subscriptions followed through
-- their lifecycle events, and the node registry that lets calls cut off by a crash be metered.

-- When the user's one free trial was given (with the first business they created). NULL: not
-- yet. Users that predate this migration were given theirs with their first business.
ALTER TABLE users ADD COLUMN trial_granted_at TEXT;
UPDATE users SET trial_granted_at = created_at;

-- The plan's current billing period when a Stripe subscription sets it (from the paid
-- invoice's lines); NULL: calendar months in UTC. The subscription backing the plan, if any.
ALTER TABLE tenants ADD COLUMN plan_period_start TEXT;
ALTER TABLE tenants ADD COLUMN plan_period_end TEXT;
ALTER TABLE tenants ADD COLUMN stripe_subscription_id TEXT;

-- Every Stripe event applied, by Stripe's event id: a redelivered event is applied once.
CREATE TABLE stripe_events (
    id           TEXT    PRIMARY KEY,
    type         TEXT    NOT NULL,
    created      INTEGER NOT NULL,
    received_at  TEXT    NOT NULL
);

-- A Stripe subscription as its events leave it. Rows may arrive before the checkout that names
-- their business (events are not ordered); state_created is the `created` of the event that set
-- the status, so an older event never overrides a newer state.
CREATE TABLE stripe_subscriptions (
    id                        TEXT    PRIMARY KEY,
    customer_id               TEXT,
    tenant_id                 INTEGER REFERENCES tenants (id) ON DELETE CASCADE,
    plan                      TEXT    CHECK (plan IN ('starter', 'pro', 'enterprise')),
    included_seconds          INTEGER,
    overage_cents_per_minute  INTEGER,
    status                    TEXT    NOT NULL CHECK (status IN ('active', 'ended')),
    period_start              TEXT,
    period_end                TEXT,
    state_created             INTEGER NOT NULL,
    updated_at                TEXT    NOT NULL
);
CREATE INDEX stripe_subscriptions_tenant ON stripe_subscriptions (tenant_id);

-- Engine processes: each registers at start-up, heartbeats, and deletes its row at a clean
-- shutdown. name: the machine's host name and the bound address.
CREATE TABLE nodes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    TEXT    NOT NULL,
    heartbeat_at  TEXT    NOT NULL
);
CREATE INDEX nodes_name ON nodes (name);

-- The node streaming a call (no foreign key: a node's row goes at shutdown while its calls'
-- rows stay), and when it last saw the call live.
ALTER TABLE calls ADD COLUMN node_id INTEGER;
ALTER TABLE calls ADD COLUMN last_active_at TEXT;
CREATE INDEX calls_live_node ON calls (status, node_id);
