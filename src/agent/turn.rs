//! The turn-engine seam: what decides the agent's words. The call pipeline hands it each caller
//! utterance (or keypad digit) and speaks its text clause by clause as it arrives; the
//! conversation engine (an LLM client, the embedded responder) implements it.
//!
//! [`Echo`] is the engine used until the conversation engine lands: it greets and repeats back
//! what it heard, which exercises the whole pipeline and is useful on its own for line checks.

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::domain::{AgentId, CallId, TenantId};

/// What the turn engine knows of the call.
#[derive(Debug, Clone)]
pub struct TurnContext {
    pub call: CallId,
    pub tenant: TenantId,
    pub agent: AgentId,
    pub agent_name: String,
    /// The agent's compiled instructions (the system message for a language model).
    pub instructions: String,
}

/// What the caller did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnInput {
    Utterance(String),
    Dtmf(char),
}

/// What the engine produces, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnOutput {
    /// More of the reply's text (any size: a token, a clause, the whole reply).
    Text(String),
    /// Hang up once the reply has been spoken.
    EndCall,
}

#[derive(Debug, thiserror::Error)]
#[error("turn engine failed: {0}")]
pub struct TurnError(pub String);

pub trait TurnEngine: Send + Sync {
    /// The agent's first words when the call connects, if any.
    fn greeting(&self, ctx: &TurnContext) -> Option<String>;

    /// Answers `input`, sending the reply to `out` as it is produced. Dropping the returned
    /// future (barge-in) cancels the turn.
    fn respond<'a>(
        &'a self,
        ctx: &'a TurnContext,
        input: TurnInput,
        out: mpsc::Sender<TurnOutput>,
    ) -> BoxFuture<'a, Result<(), TurnError>>;
}

/// Greets, then repeats what it heard.
pub struct Echo;

impl TurnEngine for Echo {
    fn greeting(&self, ctx: &TurnContext) -> Option<String> {
        Some(format!(
            "Hello, this is {}. Say something and I will repeat it.",
            ctx.agent_name
        ))
    }

    fn respond<'a>(
        &'a self,
        _ctx: &'a TurnContext,
        input: TurnInput,
        out: mpsc::Sender<TurnOutput>,
    ) -> BoxFuture<'a, Result<(), TurnError>> {
        Box::pin(async move {
            let reply = match input {
                TurnInput::Utterance(text) if text.trim().is_empty() => return Ok(()),
                TurnInput::Utterance(text) => format!("You said: {}", text.trim()),
                TurnInput::Dtmf(digit) => format!("You pressed {digit}."),
            };
            out.send(TurnOutput::Text(reply))
                .await
                .map_err(|_| TurnError("the call ended".into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echo_repeats_utterances_and_digits() {
        let ctx = TurnContext {
            call: CallId(1),
            tenant: TenantId(1),
            agent: AgentId(1),
            agent_name: "Reception".into(),
            instructions: String::new(),
        };
        assert!(Echo.greeting(&ctx).unwrap().contains("Reception"));
        let (tx, mut rx) = mpsc::channel(4);
        Echo.respond(
            &ctx,
            TurnInput::Utterance(" book a table ".into()),
            tx.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            rx.recv().await,
            Some(TurnOutput::Text("You said: book a table".into()))
        );
        Echo.respond(&ctx, TurnInput::Dtmf('7'), tx.clone())
            .await
            .unwrap();
        assert_eq!(
            rx.recv().await,
            Some(TurnOutput::Text("You pressed 7.".into()))
        );
        Echo.respond(&ctx, TurnInput::Utterance("  ".into()), tx)
            .await
            .unwrap();
        assert!(rx.try_recv().is_err());
    }
}
