//! Signed carrier webhook requests already accepted, so that one cannot be replayed while its
//! signature is still fresh (the Vonage JWT's `jti`). Shared through the database, so a request
//! replayed to another node of the same deployment is refused too. Not tenant data: a request
//! is checked before anyone knows which business it is for.

use super::{Db, StoreResult, stamp};

/// Records `request_id` for `carrier` until `expires_at`; `false` when it was already recorded
/// (a replay). Prunes expired records first.
pub async fn first_use(
    db: &Db,
    carrier: &str,
    request_id: &str,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> StoreResult<bool> {
    sqlx::query("DELETE FROM carrier_webhook_replays WHERE expires_at < $1")
        .bind(super::now())
        .execute(db.pool())
        .await?;
    let inserted = sqlx::query(
        "INSERT INTO carrier_webhook_replays (carrier, request_id, expires_at) \
         VALUES ($1, $2, $3) ON CONFLICT (carrier, request_id) DO NOTHING",
    )
    .bind(carrier)
    .bind(request_id)
    .bind(stamp(expires_at))
    .execute(db.pool())
    .await?;
    Ok(inserted.rows_affected() == 1)
}
