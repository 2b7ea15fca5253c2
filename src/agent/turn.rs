//! The turn-engine seam: what decides the agent's words. A [`TurnEngine`] opens one
//! [`Conversation`] per call; the call pipeline hands the conversation each caller utterance (or
//! keypad digit) and speaks its text clause by clause as it arrives. Two engines implement it:
//! the OpenAI-compatible chat client ([`super::llm`]) and the embedded responder
//! ([`super::embedded`]).
//!
//! Tools split in two: `book_appointment` runs inside the engine through [`ToolRunner`] (it
//! stores a booking and answers with its result); `end_call` and `transfer_call` act on the line,
//! so the engine emits them as [`TurnOutput`]s and the call pipeline carries them out once the
//! reply has been spoken.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::{EngineChoice, Personality};
use crate::domain::{AgentId, CallId, Language, TenantId};

/// The tools an agent can be given, by their names in the compiled instructions and the LLM's
/// tool list.
pub const BOOK_APPOINTMENT: &str = "book_appointment";
pub const END_CALL: &str = "end_call";
pub const TRANSFER_CALL: &str = "transfer_call";

/// Which tools this call offers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tools {
    pub book_appointment: bool,
    pub end_call: bool,
    /// Where `transfer_call` may send the caller; `None` when the tool is not offered (no
    /// number configured, or a carrier that cannot transfer).
    pub transfer_to: Option<String>,
}

/// What the turn engine knows of the call.
#[derive(Debug, Clone)]
pub struct TurnContext {
    pub call: CallId,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub agent_name: String,
    /// The agent's compiled instructions (the system message for a language model).
    pub instructions: String,
    /// The agent's own system prompt: the facts the embedded responder answers from.
    pub system_prompt: Option<String>,
    pub personality: Personality,
    pub language: Language,
    /// The caller's number, when the carrier gave one (the booking's default phone).
    pub caller_number: Option<String>,
    /// The tenant's time zone: dates and times the caller says are in it.
    pub timezone: chrono_tz::Tz,
    /// When the call started ("tomorrow" is relative to it).
    pub started_at: DateTime<Utc>,
    pub tools: Tools,
    /// Which engine answers: [`EngineChoice::Llm`] or [`EngineChoice::Embedded`].
    pub engine: EngineChoice,
}

/// What the caller did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnInput {
    Utterance(String),
    /// Keypad digits gathered into one entry (`*` and `#` included, a terminating `#` not).
    Dtmf(String),
}

/// What the engine produces, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnOutput {
    /// More of the reply's text (any size: a token, a clause, the whole reply).
    Text(String),
    /// Hang up once the reply has been spoken.
    EndCall,
    /// Transfer the caller to this number once the reply has been spoken.
    Transfer(String),
}

#[derive(Debug, thiserror::Error)]
#[error("turn engine failed: {0}")]
pub struct TurnError(pub String);

/// A booking the engine asks for; `start` is local time in the tenant's time zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingRequest {
    pub name: String,
    pub start: NaiveDateTime,
    /// `None`: the caller's number.
    pub phone: Option<String>,
    pub notes: Option<String>,
}

/// A stored booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub id: i64,
    pub name: String,
    pub start: NaiveDateTime,
    pub phone: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The request cannot be carried out as asked (a time in the past, say): tell the caller.
    #[error("{0}")]
    Rejected(String),
    /// Storage failed.
    #[error("the booking could not be stored: {0}")]
    Failed(String),
}

/// A passage of the agent's knowledge documents, found for the caller's words.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgePassage {
    /// The document's file name.
    pub source: String,
    pub page: Option<i64>,
    /// The headings above it, outermost first, joined with " > ".
    pub heading: Option<String>,
    pub text: String,
    /// Cosine similarity to the caller's words.
    pub score: f32,
}

/// Runs the tools that act on stored data, and searches the agent's knowledge, for one call.
pub trait ToolRunner: Send + Sync {
    fn book_appointment(
        &self,
        request: BookingRequest,
    ) -> BoxFuture<'_, Result<Booking, ToolError>>;

    /// The passages of the agent's linked documents that best match `query`, best first; empty
    /// when it links none (or the search fails: the call goes on without them).
    fn search_knowledge(&self, query: &str) -> BoxFuture<'_, Vec<KnowledgePassage>>;

    /// Sentence embeddings of `texts` (unit length, in order), so that an engine can match a
    /// misheard question to a fact by meaning; empty when no embedding model is at hand (the
    /// engine then matches by words only).
    fn embed(&self, texts: Vec<String>) -> BoxFuture<'_, Vec<Vec<f32>>> {
        let _ = texts;
        Box::pin(async { Vec::new() })
    }
}

/// Builds a conversation per call.
pub trait TurnEngine: Send + Sync {
    fn open(&self, ctx: Arc<TurnContext>, tools: Arc<dyn ToolRunner>) -> Box<dyn Conversation>;
}

/// One call's conversation: it keeps its own history and state between turns.
pub trait Conversation: Send {
    /// The agent's first words when the call connects, if any.
    fn greeting(&mut self) -> Option<String>;

    /// Answers `input`, sending the reply to `out` as it is produced. Dropping the returned
    /// future (barge-in) cancels the turn; [`Conversation::interrupted`] then says what the
    /// caller heard of it.
    fn respond<'a>(
        &'a mut self,
        input: TurnInput,
        out: mpsc::Sender<TurnOutput>,
    ) -> BoxFuture<'a, Result<(), TurnError>>;

    /// The caller cut the last reply short after hearing `heard` (possibly nothing): the
    /// conversation's memory of that reply is replaced by what was actually said.
    fn interrupted(&mut self, heard: &str);

    /// Words the caller is likely to say next, given the question just asked ("Thursday",
    /// "half", "past" after "Which day?"), for the speech recogniser to favour; empty when
    /// nothing in particular is expected.
    fn hints(&self) -> Vec<&'static str> {
        Vec::new()
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A context for unit tests of the engines.
    use super::*;

    pub fn context() -> TurnContext {
        TurnContext {
            call: CallId(1),
            tenant: TenantId(1),
            agent: AgentId(1),
            agent_name: "Reception".into(),
            instructions: "# Role\nYou are Reception.".into(),
            system_prompt: Some("You are the receptionist for Harbour Dental.".into()),
            personality: Personality::default(),
            language: Language::parse("en-AU").unwrap(),
            caller_number: Some("+61255501234".into()),
            timezone: chrono_tz::Australia::Sydney,
            started_at: "2026-11-30T01:00:00Z".parse().unwrap(),
            tools: Tools {
                book_appointment: true,
                end_call: true,
                transfer_to: None,
            },
            engine: EngineChoice::Embedded,
        }
    }

    /// Records bookings in memory; its knowledge is a fixed list of passages, returned for
    /// every query (as a search returns its nearest neighbours, relevant or not).
    #[derive(Default)]
    pub struct MemoryTools {
        pub booked: std::sync::Mutex<Vec<BookingRequest>>,
        pub knowledge: Vec<KnowledgePassage>,
        pub searches: std::sync::Mutex<Vec<String>>,
    }

    impl ToolRunner for MemoryTools {
        fn book_appointment(
            &self,
            request: BookingRequest,
        ) -> BoxFuture<'_, Result<Booking, ToolError>> {
            Box::pin(async move {
                let mut booked = self.booked.lock().unwrap();
                booked.push(request.clone());
                Ok(Booking {
                    id: booked.len() as i64,
                    name: request.name,
                    start: request.start,
                    phone: request.phone,
                })
            })
        }

        fn search_knowledge(&self, query: &str) -> BoxFuture<'_, Vec<KnowledgePassage>> {
            self.searches.lock().unwrap().push(query.to_owned());
            Box::pin(async move { self.knowledge.clone() })
        }
    }
}
