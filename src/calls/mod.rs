//! Calls: the stream tokens that admit a media stream, the registry of live calls, and the call
//! lifecycle over the store.
//!
//! Crashes. A call is streamed by one node (engine process, [`crate::store::nodes`]); each
//! heartbeat stamps the node's live calls ([`heartbeat`]), so a call's last known moment is at
//! most a heartbeat old. When a node dies, any other ends its calls as `failed` with the
//! disposition `interrupted` and the duration up to that moment, through the same
//! [`store::finish`] that emits `call.ended` and meters the call ([`end_interrupted`]).

pub mod aftercall;
pub mod outbound;
pub mod recording;
pub mod registry;
pub mod token;
pub mod tools;
pub mod transfer;

use chrono::Utc;

use crate::billing::Blocked;
use crate::domain::{AgentId, CallId, CallStatus, Carrier, Direction, NodeId, TenantId};
use crate::store::calls::{self as store, CallRow, NewCall};
use crate::store::{Db, StoreError, StoreResult};
use token::{StreamClaims, StreamTokens, TOKEN_TTL_SECS};

/// Ends the calls whose stream token expired before their stream started (one sweep).
pub async fn expire_unstarted(db: &Db) -> StoreResult<u64> {
    // A token admits a stream for TOKEN_TTL_SECS; a minute more covers clock skew between nodes.
    let cutoff = Utc::now() - chrono::Duration::seconds(TOKEN_TTL_SECS + 60);
    let cutoff = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let expired = store::expire_unstarted(db, &cutoff).await?;
    if expired > 0 {
        tracing::info!(expired, "calls whose stream never connected marked failed");
    }
    Ok(expired)
}

/// Records that `node` is alive and stamps the calls it is streaming (its registry).
pub async fn heartbeat(db: &Db, live: &registry::LiveCalls, node: NodeId) -> StoreResult<()> {
    crate::store::nodes::heartbeat(db, node, live.node_name(), i64::from(std::process::id()))
        .await?;
    store::touch_live(db, node, &live.ids()).await
}

/// Ends the calls of nodes silent for `timeout` (or gone) with their last known duration, and
/// bills them; then forgets those nodes. Any node may run it: a call is ended once (a second
/// sweeper finds it ended). Returns how many calls it ended.
pub async fn end_interrupted(
    db: &Db,
    node: NodeId,
    timeout: std::time::Duration,
) -> StoreResult<u64> {
    let timeout = chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
    let cutoff = crate::store::stamp(Utc::now() - timeout);
    let instant = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    let mut ended = 0;
    for call in store::interrupted(db, node, &cutoff).await? {
        let duration_ms = match (instant(&call.started_at), instant(&call.last_active_at)) {
            (Some(start), Some(last)) => (last - start).num_milliseconds().max(0),
            _ => 0,
        };
        let (tenant, id) = (TenantId(call.tenant_id), CallId(call.id));
        match store::finish(db, tenant, id, CallStatus::Failed, INTERRUPTED, duration_ms).await {
            Ok(_) => {
                ended += 1;
                tracing::warn!(
                    call_id = %id, tenant_id = %tenant, duration_ms,
                    "call of a node that is gone ended as interrupted and billed"
                );
            }
            // Ended meanwhile (by its own node, or another sweeper).
            Err(StoreError::Conflict) => {}
            Err(error) => return Err(error),
        }
    }
    crate::store::nodes::forget_silent(db, &cutoff).await?;
    Ok(ended)
}

/// The disposition of a call whose node died mid-call.
pub const INTERRUPTED: &str = "interrupted";

/// A call handed out to a carrier: its record and the token its stream must present.
pub struct HandedOut {
    pub call: CallRow,
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// Who is calling whom, as the carrier reports it.
pub struct Parties<'a> {
    pub direction: Direction,
    pub carrier: Carrier,
    pub carrier_call_id: Option<&'a str>,
    pub from_number: Option<&'a str>,
    pub to_number: Option<&'a str>,
}

/// Why a call was not handed out.
#[derive(Debug, thiserror::Error)]
pub enum HandOutError {
    /// The business has no trial, included minutes or wallet left.
    #[error("new calls are refused: {0}")]
    Refused(Blocked),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates the call record (`initiated`) and a stream token bound to it, if the business may
/// start a call (see [`crate::billing::can_start_call`]).
pub async fn hand_out(
    db: &Db,
    tokens: &StreamTokens,
    tenant: TenantId,
    agent: AgentId,
    agent_version: i64,
    parties: Parties<'_>,
) -> Result<HandedOut, HandOutError> {
    if let Err(blocked) = crate::billing::can_start_call(db, tenant).await? {
        tracing::info!(tenant_id = %tenant, agent_id = %agent, reason = %blocked, "call refused");
        return Err(HandOutError::Refused(blocked));
    }
    let call = store::insert(
        db,
        tenant,
        NewCall {
            agent,
            agent_version,
            direction: parties.direction,
            carrier: parties.carrier,
            carrier_call_id: parties.carrier_call_id,
            from_number: parties.from_number,
            to_number: parties.to_number,
        },
    )
    .await?;
    let expires_at = Utc::now().timestamp() + TOKEN_TTL_SECS;
    let token = tokens.issue(StreamClaims {
        call: crate::domain::CallId(call.id),
        tenant,
        agent,
        expires_at,
    });
    tracing::info!(call_id = call.id, tenant_id = %tenant, agent_id = %agent, "call handed out");
    Ok(HandedOut {
        call,
        token,
        expires_at,
    })
}
