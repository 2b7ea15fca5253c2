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

use crate::billing::{Blocked, CallCaps};
use crate::domain::{AgentId, CallId, CallStatus, Carrier, Direction, NodeId, TenantId};
use crate::store::calls::{self as store, CallRow, NewCall, NotAdmitted};
use crate::store::{Db, StoreError, StoreResult, stamp};
use registry::LiveCalls;
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

/// How long a caller refused for capacity should wait before trying again (`Retry-After`).
pub const BUSY_RETRY_AFTER_SECS: u64 = 15;

/// The capacity limits a call is admitted under: the business's concurrent calls by plan
/// (counted from the database, so they hold across processes) and this node's live calls.
#[derive(Clone)]
pub struct Capacity {
    pub caps: CallCaps,
    /// Calls this process may stream at once.
    pub per_node: usize,
    pub live: std::sync::Arc<LiveCalls>,
}

impl Capacity {
    /// Whether this node is at its limit of live calls.
    pub fn node_full(&self) -> bool {
        self.live.count() >= self.per_node
    }
}

/// Which capacity limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error(
        "the business already has {0} calls connecting or in progress, its plan's limit: try \
         again when one has ended"
    )]
    Business(i64),
    #[error("this engine is carrying its limit of {0} calls: try again shortly")]
    Node(usize),
}

/// Why a call was not handed out.
#[derive(Debug, thiserror::Error)]
pub enum HandOutError {
    /// The business has no trial, included minutes or wallet left.
    #[error("new calls are refused: {0}")]
    Refused(Blocked),
    /// A capacity limit is reached.
    #[error("{0}")]
    Busy(Busy),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handed-out calls created after this instant count against the concurrent-call limit while
/// they wait for their stream; older ones can no longer connect (their token has expired) and
/// are failed by [`expire_unstarted`].
pub fn connecting_since() -> String {
    stamp(Utc::now() - chrono::Duration::seconds(TOKEN_TTL_SECS + 60))
}

/// Creates the call record (`initiated`) and a stream token bound to it, if the business may
/// start a call (see [`crate::billing::can_start_call`]) and neither it nor this node is at its
/// capacity limit ([`Capacity`]).
pub async fn hand_out(
    db: &Db,
    tokens: &StreamTokens,
    capacity: &Capacity,
    tenant: TenantId,
    agent: AgentId,
    agent_version: i64,
    parties: Parties<'_>,
) -> Result<HandedOut, HandOutError> {
    if capacity.node_full() {
        tracing::warn!(tenant_id = %tenant, limit = capacity.per_node, "call refused: node at capacity");
        metrics::counter!("calls_refused_total", "reason" => "node_limit").increment(1);
        return Err(HandOutError::Busy(Busy::Node(capacity.per_node)));
    }
    let admitted = store::insert_admitted(
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
        capacity.caps,
        &connecting_since(),
    )
    .await?;
    let call = match admitted {
        Ok(call) => call,
        Err(NotAdmitted::Blocked(blocked)) => {
            tracing::info!(tenant_id = %tenant, agent_id = %agent, reason = %blocked, "call refused");
            return Err(HandOutError::Refused(blocked));
        }
        Err(NotAdmitted::AtLimit(limit)) => {
            tracing::info!(tenant_id = %tenant, agent_id = %agent, limit, "call refused: business at its concurrent-call limit");
            metrics::counter!("calls_refused_total", "reason" => "business_limit").increment(1);
            return Err(HandOutError::Busy(Busy::Business(limit)));
        }
    };
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
