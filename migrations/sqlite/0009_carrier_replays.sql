-- Signed carrier webhook requests already accepted (sqlite dialect): a signed request's id (the
-- Vonage JWT's jti) may be used once while its signature is fresh. Rows past expires_at are
-- pruned as new ones arrive.
CREATE TABLE carrier_webhook_replays (
    carrier     TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    PRIMARY KEY (carrier, request_id)
);
CREATE INDEX carrier_webhook_replays_expiry ON carrier_webhook_replays (expires_at);
