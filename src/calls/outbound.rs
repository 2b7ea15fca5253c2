//! Outbound call progress as carriers report it (Twilio's status callbacks, the sandbox
//! directly), applied to the call record. The dialler reads the outcome back from the record, so
//! a report may reach any engine process.

use crate::carrier::CallProgress;
use crate::store::telephony as store;
use crate::store::{Db, StoreResult};

/// Applies one progress report to call `call`.
pub async fn apply_progress(db: &Db, call: i64, progress: CallProgress) -> StoreResult<()> {
    match progress {
        CallProgress::Initiated | CallProgress::Ringing => {}
        CallProgress::Answered { machine } => store::set_answered_by(db, call, machine).await?,
        CallProgress::Busy => {
            store::fail_unconnected(db, call, "busy").await?;
        }
        CallProgress::NoAnswer => {
            store::fail_unconnected(db, call, "no-answer").await?;
        }
        CallProgress::Failed => {
            store::fail_unconnected(db, call, "failed").await?;
        }
        // A call that streamed is finished by its media session when the stream ends; one
        // answered that never streamed ends here.
        CallProgress::Completed { .. } => {
            store::fail_unconnected(db, call, "no-media").await?;
        }
    }
    tracing::debug!(call_id = call, ?progress, "outbound call progress");
    Ok(())
}
