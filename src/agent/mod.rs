//! Agents: their versioned configuration ([`AgentSpec`]), the compiler that turns a snapshot into
//! the instructions a language model reads ([`instructions`]), and the service that stores
//! versions ([`service`]).

pub mod embedded;
pub mod instructions;
pub mod llm;
pub mod service;
pub mod turn;

use crate::domain::Language;
use turn::{BOOK_APPOINTMENT, END_CALL, TRANSFER_CALL};

/// Personality slider bounds and defaults (documented in the README).
pub const HUMOUR_MAX: u8 = 30;
pub const SLIDER_MAX: u8 = 100;
pub const NAME_MAX_CHARS: usize = 100;
pub const SYSTEM_PROMPT_MAX_CHARS: usize = 20_000;

/// One immutable snapshot of an agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub name: String,
    pub voice: String,
    pub language: Language,
    pub system_prompt: Option<String>,
    pub personality: Personality,
    /// Which turn engine answers; `None`: the tenant's default.
    pub turn_engine: Option<EngineChoice>,
    /// The tools the agent may use, by name, in [`TOOL_NAMES`] order.
    pub tools: Vec<String>,
    /// Where `transfer_call` sends callers (E.164); without it the tool is not offered.
    pub transfer_number: Option<String>,
    /// The knowledge documents the agent answers from, in id order.
    pub knowledge: Vec<KnowledgeLink>,
    /// The longest a call may last: then the agent says goodbye and hangs up.
    pub max_call_seconds: u32,
}

/// How long a call may last unless the agent says otherwise (30 minutes).
pub const MAX_CALL_SECONDS_DEFAULT: u32 = 1_800;
/// The shortest and longest `max_call_seconds` an agent may have (10 seconds to 4 hours).
pub const MAX_CALL_SECONDS_MIN: u32 = 10;
pub const MAX_CALL_SECONDS_MAX: u32 = 14_400;

/// A knowledge document linked to an agent, with its file name as it was when linked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KnowledgeLink {
    pub id: i64,
    pub filename: String,
}

/// The most documents one agent may link.
pub const KNOWLEDGE_MAX_LINKS: usize = 50;

/// Every tool an agent can be given.
pub const TOOL_NAMES: [&str; 3] = [BOOK_APPOINTMENT, END_CALL, TRANSFER_CALL];

/// The tools a new agent has unless it says otherwise.
pub fn default_tools() -> Vec<String> {
    vec![BOOK_APPOINTMENT.to_owned(), END_CALL.to_owned()]
}

/// Which turn engine answers an agent's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// The LLM when the engine has one configured, else the embedded responder.
    Auto,
    /// The configured LLM (the embedded responder if none is configured).
    Llm,
    /// The embedded responder, always.
    Embedded,
}

impl EngineChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Llm => "llm",
            EngineChoice::Embedded => "embedded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "auto" => Some(EngineChoice::Auto),
            "llm" => Some(EngineChoice::Llm),
            "embedded" => Some(EngineChoice::Embedded),
            _ => None,
        }
    }
}

/// Whether `raw` is a phone number in E.164 form (`+` and 8 to 15 digits).
pub fn is_e164(raw: &str) -> bool {
    raw.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

/// The personality sliders: humour 0–30, the others 0–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Personality {
    pub humour: u8,
    pub empathy: u8,
    pub formality: u8,
    pub energy: u8,
    pub directness: u8,
}

impl Default for Personality {
    /// A light touch of humour; everything else in the middle of its range.
    fn default() -> Self {
        Self {
            humour: 10,
            empathy: 50,
            formality: 50,
            energy: 50,
            directness: 50,
        }
    }
}
