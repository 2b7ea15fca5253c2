//! Agents: their versioned configuration ([`AgentSpec`]), the compiler that turns a snapshot into
//! the instructions a language model reads ([`instructions`]), and the service that stores
//! versions ([`service`]).

pub mod embedded;
pub mod instructions;
pub mod service;
pub mod turn;

use crate::domain::Language;

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
