//! The tools that act on stored data during a call, over the store, and the search of the
//! agent's knowledge documents.

use chrono::{NaiveDateTime, TimeZone, Utc};
use futures_util::future::BoxFuture;

use crate::agent::turn::{Booking, BookingRequest, KnowledgePassage, ToolError, ToolRunner};
use crate::domain::{AgentId, CallId, TenantId};
use crate::store::Db;
use crate::store::bookings::{self, NewBooking};

/// One call's tools.
pub struct CallTools {
    pub db: Db,
    pub tenant: TenantId,
    pub call: CallId,
    pub agent: AgentId,
    pub caller_number: Option<String>,
    pub timezone: chrono_tz::Tz,
    pub knowledge: crate::knowledge::KnowledgeBase,
    /// The documents the agent's version links.
    pub documents: Vec<i64>,
}

/// The UTC instant of a local time in `tz`; `None` for a time the clocks skip. An ambiguous time
/// (clocks going back) is the earlier one.
pub fn local_to_utc(tz: chrono_tz::Tz, local: NaiveDateTime) -> Option<chrono::DateTime<Utc>> {
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

impl ToolRunner for CallTools {
    fn book_appointment(
        &self,
        request: BookingRequest,
    ) -> BoxFuture<'_, Result<Booking, ToolError>> {
        Box::pin(async move {
            let name = request.name.trim();
            if name.is_empty() {
                return Err(ToolError::Rejected("the booking needs a name".into()));
            }
            let Some(utc) = local_to_utc(self.timezone, request.start) else {
                return Err(ToolError::Rejected(
                    "that time does not exist in this time zone (the clocks change)".into(),
                ));
            };
            if utc < Utc::now() {
                return Err(ToolError::Rejected("that time has already passed".into()));
            }
            let phone = request
                .phone
                .as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .or(self.caller_number.as_deref());
            let starts_at = request.start.format("%Y-%m-%dT%H:%M:%S").to_string();
            let starts_utc = utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let row = bookings::insert(
                &self.db,
                self.tenant,
                NewBooking {
                    call: Some(self.call),
                    agent: Some(self.agent),
                    name,
                    phone,
                    starts_at: &starts_at,
                    timezone: self.timezone.name(),
                    starts_utc: &starts_utc,
                    notes: request.notes.as_deref(),
                },
            )
            .await
            .map_err(|e| ToolError::Failed(e.to_string()))?;
            tracing::info!(booking_id = row.id, start = %starts_at, "booking stored");
            Ok(Booking {
                id: row.id,
                name: row.name,
                start: request.start,
                phone: row.phone,
            })
        })
    }

    fn search_knowledge(&self, query: &str) -> BoxFuture<'_, Vec<KnowledgePassage>> {
        let query = query.to_owned();
        Box::pin(async move {
            if self.documents.is_empty() {
                return Vec::new();
            }
            let started = std::time::Instant::now();
            let found = self
                .knowledge
                .search(
                    self.tenant,
                    &query,
                    Some(&self.documents),
                    crate::knowledge::CALL_TOP_K,
                )
                .await;
            match found {
                Ok(passages) => {
                    tracing::debug!(
                        passages = passages.len(),
                        best = passages.first().map(|p| p.score),
                        ms = started.elapsed().as_millis() as u64,
                        "knowledge searched"
                    );
                    passages
                        .into_iter()
                        .map(|p| KnowledgePassage {
                            source: p.chunk.filename,
                            page: p.chunk.page,
                            heading: p.chunk.heading,
                            text: p.chunk.text,
                            score: p.score,
                        })
                        .collect()
                }
                Err(error) => {
                    tracing::warn!(%error, "knowledge search failed; answering without it");
                    Vec::new()
                }
            }
        })
    }

    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Vec<Vec<f32>>> {
        Box::pin(async move {
            match self.knowledge.embed(texts).await {
                Ok(vectors) => vectors,
                Err(error) => {
                    tracing::warn!(%error, "embedding failed; matching questions by words only");
                    Vec::new()
                }
            }
        })
    }
}
