//! What happens once a call has ended, off the call's task: the recording is encoded to MP3, the
//! transcript is summarised (by the LLM when one is configured, otherwise extractively) and
//! scored for sentiment (VADER over the caller's words), and `call.transcript_ready` goes into
//! the outbox in the same transaction as the summary.
//!
//! A call whose processing was cut short (the engine stopped) is picked up again at start-up by
//! [`resume_unfinished`].

use std::sync::OnceLock;

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use vader_sentiment::SentimentIntensityAnalyzer;

use super::recording;
use crate::api::AppState;
use crate::domain::{CallId, TenantId};
use crate::store::StoreResult;
use crate::store::bookings::{self, BookingRow};
use crate::store::calls::{self as store, CallRow, TurnRow};

/// One line of a call's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TranscriptEntry {
    /// `agent` or `caller`.
    pub speaker: &'static str,
    pub text: String,
    /// Seconds from the start of the call.
    pub offset_sec: f64,
}

/// The transcript in order of time: each turn's caller words (when its utterance began) and
/// what the caller heard of the agent's reply (when it started playing). A reply cut by
/// barge-in holds only the clauses that were played.
pub fn transcript(turns: &[TurnRow]) -> Vec<TranscriptEntry> {
    let mut entries: Vec<(i64, usize, TranscriptEntry)> = Vec::new();
    let mut last = 0i64;
    for turn in turns {
        let texts = [
            ("caller", &turn.caller_text, turn.caller_offset_ms),
            ("agent", &turn.agent_text, turn.agent_offset_ms),
        ];
        for (speaker, text, offset) in texts {
            let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
                continue;
            };
            // A missing offset (a turn stored before offsets existed) keeps the turn order.
            let at = offset.unwrap_or(last).max(0);
            last = at;
            let order = entries.len();
            entries.push((
                at,
                order,
                TranscriptEntry {
                    speaker,
                    text: text.to_owned(),
                    offset_sec: (at as f64 / 100.0).round() / 10.0,
                },
            ));
        }
    }
    entries.sort_by_key(|(at, order, _)| (*at, *order));
    entries.into_iter().map(|(_, _, entry)| entry).collect()
}

/// The transcript as plain text, one `Speaker: words` line each (for summaries).
pub fn transcript_text(entries: &[TranscriptEntry]) -> String {
    entries
        .iter()
        .map(|e| {
            let who = if e.speaker == "agent" {
                "Agent"
            } else {
                "Caller"
            };
            format!("{who}: {}", e.text)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn analyzer() -> &'static SentimentIntensityAnalyzer<'static> {
    static ANALYZER: OnceLock<SentimentIntensityAnalyzer<'static>> = OnceLock::new();
    ANALYZER.get_or_init(SentimentIntensityAnalyzer::new)
}

/// The caller's sentiment, -1 (negative) to 1 (positive): VADER's compound score of each caller
/// utterance, averaged with weights by length. `None` when the caller said nothing.
pub fn sentiment(entries: &[TranscriptEntry]) -> Option<f64> {
    let mut weighted = 0.0;
    let mut weights = 0.0;
    for entry in entries.iter().filter(|e| e.speaker == "caller") {
        let words = entry.text.split_whitespace().count() as f64;
        let scores = analyzer().polarity_scores(&entry.text);
        let compound = scores.get("compound").copied().unwrap_or(0.0);
        weighted += compound * words;
        weights += words;
    }
    (weights > 0.0).then(|| ((weighted / weights).clamp(-1.0, 1.0) * 1000.0).round() / 1000.0)
}

/// Words that mark what a caller wants.
const REQUEST_WORDS: &[&str] = &[
    "book",
    "appointment",
    "schedule",
    "reserve",
    "cancel",
    "change",
    "reschedule",
    "price",
    "cost",
    "how much",
    "open",
    "hours",
    "want",
    "need",
    "like",
    "looking",
    "can you",
    "could",
    "do you",
    "is there",
    "?",
];

/// A summary without a language model: what the caller wanted (their first request), what was
/// done (bookings made, a transfer), and what is left open.
pub fn extractive_summary(
    entries: &[TranscriptEntry],
    bookings: &[BookingRow],
    disposition: Option<&str>,
) -> String {
    let caller: Vec<&str> = entries
        .iter()
        .filter(|e| e.speaker == "caller")
        .map(|e| e.text.as_str())
        .collect();
    if caller.is_empty() {
        return "The caller did not speak.".to_owned();
    }
    let wanted = caller
        .iter()
        .find(|text| {
            let lower = text.to_lowercase();
            REQUEST_WORDS.iter().any(|w| lower.contains(w))
        })
        .or_else(|| caller.iter().max_by_key(|t| t.len()))
        .copied()
        .unwrap_or_default();
    let mut summary = format!("The caller said: \"{}\".", wanted.trim_end_matches('.'));
    for booking in bookings {
        let when = chrono::NaiveDateTime::parse_from_str(&booking.starts_at, "%Y-%m-%dT%H:%M:%S")
            .map(|t| t.format("%A %-d %B %Y at %H:%M").to_string())
            .unwrap_or_else(|_| booking.starts_at.clone());
        summary.push_str(&format!(
            " An appointment was booked for {} on {when} ({}).",
            booking.name, booking.timezone
        ));
    }
    let asked_to_book = caller.iter().any(|t| {
        let lower = t.to_lowercase();
        ["book", "appointment", "schedule", "reserve"]
            .iter()
            .any(|w| lower.contains(w))
    });
    match disposition {
        Some("transferred") => summary.push_str(" The caller was transferred."),
        Some("agent-hangup") => summary.push_str(" The agent ended the call."),
        Some("max-duration") => {
            summary.push_str(" The agent ended the call at its maximum length.")
        }
        Some("out-of-minutes") => summary
            .push_str(" The agent ended the call: the business's minutes and wallet ran out."),
        Some("hangup") | Some("disconnected") => summary.push_str(" The caller hung up."),
        _ => {}
    }
    if asked_to_book && bookings.is_empty() {
        summary.push_str(" Open: the caller asked about a booking but none was made.");
    } else {
        summary.push_str(" Nothing was left open.");
    }
    summary
}

/// Starts the after-call work for a call that has just ended. `recording`: `None` when the call
/// was not recorded, else the line rate of the raw recording or why it failed.
pub fn spawn(
    state: AppState,
    tenant: TenantId,
    call: CallId,
    recording: Option<Result<u32, String>>,
) {
    tokio::spawn(async move {
        if let Err(error) = process(&state, tenant, call, recording).await {
            tracing::error!(call_id = %call, %error, "after-call processing failed");
        }
    });
}

async fn process(
    state: &AppState,
    tenant: TenantId,
    call: CallId,
    recording: Option<Result<u32, String>>,
) -> StoreResult<()> {
    match recording {
        None => {}
        Some(Err(error)) => {
            tracing::error!(call_id = %call, %error, "the call's recording failed");
            store::set_recording(&state.db, tenant, call, "failed", None).await?;
        }
        Some(Ok(rate)) => encode(state, tenant, call, rate).await?,
    }
    analyse(state, tenant, call).await
}

/// Encodes the raw recording to MP3 on the blocking pool, then removes the raw file.
async fn encode(state: &AppState, tenant: TenantId, call: CallId, rate: u32) -> StoreResult<()> {
    let Some(dir) = state.media.config.recordings.clone() else {
        return Ok(());
    };
    store::set_recording(&state.db, tenant, call, "encoding", None).await?;
    let (pcm, mp3) = (
        recording::pcm_path(&dir, call, rate),
        recording::mp3_path(&dir, call),
    );
    let encoded = tokio::task::spawn_blocking(move || {
        let size = recording::encode_mp3(&pcm, &mp3, rate);
        if size.is_ok() {
            let _ = std::fs::remove_file(&pcm);
        }
        size
    })
    .await;
    match encoded {
        Ok(Ok(size)) => {
            store::set_recording(&state.db, tenant, call, "ready", Some(size as i64)).await
        }
        Ok(Err(error)) => {
            tracing::error!(call_id = %call, %error, "the recording could not be encoded");
            store::set_recording(&state.db, tenant, call, "failed", None).await
        }
        Err(error) => {
            tracing::error!(call_id = %call, %error, "the recording could not be encoded");
            store::set_recording(&state.db, tenant, call, "failed", None).await
        }
    }
}

/// Summary, sentiment and the `call.transcript_ready` event.
async fn analyse(state: &AppState, tenant: TenantId, call: CallId) -> StoreResult<()> {
    let row = store::get(&state.db, tenant, call).await?;
    let turns = store::turns(&state.db, tenant, call).await?;
    let entries = transcript(&turns);
    let bookings = bookings::for_call(&state.db, tenant, call).await?;
    let summary = match summarise_with_llm(state, &entries).await {
        Some(summary) => summary,
        None => extractive_summary(&entries, &bookings, row.disposition.as_deref()),
    };
    let score = sentiment(&entries);
    let event = json!({
        "call_id": call.0,
        "agent_id": row.agent_id,
        "status": row.status,
        "disposition": row.disposition,
        "duration_sec": row.duration_ms.map(|ms| ms as f64 / 1000.0),
        "summary": summary,
        "sentiment": score,
        "transcript": entries,
    });
    store::set_analysis(&state.db, tenant, call, &summary, score, &event).await
}

/// The LLM's summary when one is configured and answers; `None` otherwise (logged).
async fn summarise_with_llm(state: &AppState, entries: &[TranscriptEntry]) -> Option<String> {
    let llm = state.media.llm.as_ref()?;
    if entries.is_empty() {
        return None;
    }
    let text = transcript_text(entries);
    match crate::agent::llm::summarize(llm.client(), llm.config(), &text).await {
        Ok(summary) if !summary.trim().is_empty() => Some(summary.trim().to_owned()),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(%error, "the LLM could not summarise the call; using the extractive summary");
            None
        }
    }
}

/// Calls that ended without their after-call work done (the engine stopped half-way): done now.
pub async fn resume_unfinished(state: &AppState) -> StoreResult<usize> {
    let pending: Vec<CallRow> = store::unanalysed(&state.db).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    // A raw recording left on disk is encoded now, at the rate its name carries.
    let leftovers = match &state.media.config.recordings {
        Some(dir) => recording::leftover_pcm(dir),
        None => Default::default(),
    };
    for row in &pending {
        let (tenant, call) = (TenantId(row.tenant_id), CallId(row.id));
        let recording = leftovers.get(&call).map(|rate| Ok(*rate));
        if let Err(error) = process(state, tenant, call, recording).await {
            tracing::error!(call_id = %call, %error, "after-call processing failed");
        }
    }
    Ok(pending.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(n: i64, caller: Option<(&str, i64)>, agent: Option<(&str, i64)>) -> TurnRow {
        TurnRow {
            turn: n,
            caller_text: caller.map(|(t, _)| t.to_owned()),
            caller_offset_ms: caller.map(|(_, at)| at),
            agent_text: agent.map(|(t, _)| t.to_owned()),
            agent_offset_ms: agent.map(|(_, at)| at),
            ..TurnRow::default()
        }
    }

    #[test]
    fn transcript_orders_both_speakers_by_time() {
        let turns = [
            turn(1, None, Some(("Hello, Harbour Dental.", 120))),
            turn(
                2,
                Some(("I'd like to book an appointment", 3_240)),
                Some(("Sure, what day?", 5_010)),
            ),
            turn(3, Some(("  ", 7_000)), None),
        ];
        let entries = transcript(&turns);
        let got: Vec<(&str, &str, f64)> = entries
            .iter()
            .map(|e| (e.speaker, e.text.as_str(), e.offset_sec))
            .collect();
        assert_eq!(
            got,
            [
                ("agent", "Hello, Harbour Dental.", 0.1),
                ("caller", "I'd like to book an appointment", 3.2),
                ("agent", "Sure, what day?", 5.0),
            ]
        );
    }

    #[test]
    fn sentiment_follows_the_callers_words() {
        let entry = |speaker, text: &str| TranscriptEntry {
            speaker,
            text: text.to_owned(),
            offset_sec: 0.0,
        };
        let happy = [entry(
            "caller",
            "Thank you so much, that's wonderful, great service!",
        )];
        let angry = [entry(
            "caller",
            "This is terrible, I'm very angry and upset.",
        )];
        let agent_only = [entry("agent", "This is terrible.")];
        assert!(sentiment(&happy).unwrap() > 0.5);
        assert!(sentiment(&angry).unwrap() < -0.5);
        assert_eq!(sentiment(&agent_only), None);
    }

    #[test]
    fn extractive_summary_says_what_was_wanted_and_done() {
        let entry = |speaker, text: &str| TranscriptEntry {
            speaker,
            text: text.to_owned(),
            offset_sec: 0.0,
        };
        let entries = [
            entry("agent", "Hello."),
            entry("caller", "Hi there."),
            entry("caller", "I'd like to book an appointment for Tuesday."),
        ];
        let booking = BookingRow {
            id: 1,
            tenant_id: 1,
            call_id: Some(1),
            agent_id: Some(1),
            name: "Sarah Jones".into(),
            phone: None,
            starts_at: "2026-12-01T15:00:00".into(),
            timezone: "Australia/Sydney".into(),
            starts_utc: "2026-12-01T04:00:00Z".into(),
            notes: None,
            created_at: String::new(),
        };
        let done = extractive_summary(&entries, &[booking], Some("agent-hangup"));
        assert!(done.contains("book an appointment for Tuesday"), "{done}");
        assert!(
            done.contains("Sarah Jones on Tuesday 1 December 2026 at 15:00"),
            "{done}"
        );
        assert!(done.contains("Nothing was left open"), "{done}");
        let open = extractive_summary(&entries, &[], Some("hangup"));
        assert!(open.contains("none was made"), "{open}");
        assert!(open.contains("The caller hung up"), "{open}");
    }
}
