-- Webhooks (sqlite dialect): the endpoints a business registers, one delivery per event and
-- subscribed endpoint (created in the transaction that writes the event to the outbox), and every
-- attempt at a delivery. A delivery is claimed with a lease; deliveries sharing an order key
-- (the call or campaign they describe) go to an endpoint one after another, in event order.

CREATE TABLE webhook_endpoints (
    id                          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id                   INTEGER NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                         TEXT NOT NULL,
    -- Comma-separated event types.
    events                      TEXT NOT NULL,
    description                 TEXT,
    enabled                     INTEGER NOT NULL DEFAULT 1,
    secret                      TEXT NOT NULL,
    -- The secret before the last rotation, still signing until it expires.
    previous_secret             TEXT,
    previous_secret_expires_at  TEXT,
    created_at                  TEXT NOT NULL,
    updated_at                  TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id);

-- status: pending | delivered | failed (given up after the retry window).
CREATE TABLE webhook_deliveries (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id         INTEGER NOT NULL,
    endpoint_id       INTEGER NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    outbox_id         INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    order_key         TEXT NOT NULL,
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   TEXT NOT NULL,
    lease_owner       TEXT,
    lease_until       TEXT,
    last_status_code  INTEGER,
    last_error        TEXT,
    delivered_at      TEXT,
    created_at        TEXT NOT NULL,
    UNIQUE (endpoint_id, outbox_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, order_key, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

CREATE TABLE webhook_attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id    INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt        INTEGER NOT NULL,
    started_at     TEXT NOT NULL,
    status_code    INTEGER,
    latency_ms     INTEGER NOT NULL,
    error          TEXT,
    -- When the next attempt is due, if there is one.
    next_retry_at  TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
