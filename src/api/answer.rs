//! What every carrier's answer webhook shares: find the agent that answers, create the call and
//! a stream token bound to it, and reply in the carrier's markup.
//!
//! The agent is the one the dialled number (`To`) is assigned to (`POST
//! /api/numbers/{id}/assign`), or the one the webhook URL names (`?agent_id=42`) for numbers
//! bought outside the engine. An unassigned number, or an unknown or deleted agent, gets a
//! spoken refusal and a hang-up, not an error, so the caller hears something; so does a call to
//! a business whose trial, included minutes and wallet are used up ([`crate::billing`]), and a
//! call over the business's or this node's concurrent-call limit ([`crate::calls::Capacity`])
//! hears that the lines are busy.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::calls::{self, HandOutError, HandedOut, Parties};
use crate::domain::AgentId;
use crate::store::agents as agent_store;

/// How a carrier's webhook answers.
pub enum Answer {
    /// Stream the call to the agent.
    Connect(Box<HandedOut>),
    /// Say this, then hang up.
    Refuse(&'static str),
}

/// Creates the call for the agent named by `agent_id` (the webhook's query parameter), else
/// for the agent the dialled number is assigned to; a refusal when there is no such active agent
/// or its business may not start calls.
pub async fn hand_out(
    state: &AppState,
    agent_id: Option<&str>,
    parties: Parties<'_>,
) -> Result<Answer, ApiError> {
    let named = agent_id.and_then(|v| v.parse::<i64>().ok()).map(AgentId);
    let assigned = match (named, parties.to_number) {
        (None, Some(to)) => crate::store::telephony::number_by_e164(&state.db, to.trim())
            .await?
            .and_then(|n| n.agent_id)
            .map(AgentId),
        _ => None,
    };
    let Some(agent) = named.or(assigned) else {
        return Ok(Answer::Refuse(NO_AGENT));
    };
    let Some((tenant, version)) = agent_store::owner(&state.db, agent).await? else {
        return Ok(Answer::Refuse(NO_AGENT));
    };
    let telephony = &state.telephony;
    match calls::hand_out(
        &state.db,
        &telephony.tokens,
        &telephony.capacity,
        tenant,
        agent,
        version,
        parties,
    )
    .await
    {
        Ok(handed) => Ok(Answer::Connect(Box::new(handed))),
        Err(HandOutError::Refused(_)) => Ok(Answer::Refuse(CALLS_PAUSED)),
        Err(HandOutError::Busy(_)) => Ok(Answer::Refuse(LINES_BUSY)),
        Err(HandOutError::Store(error)) => Err(error.into()),
    }
}

pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// An XML `<Response>` (TwiML, TeXML and Plivo XML all take this shape).
pub fn xml_response(body: &str) -> Response {
    let document = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{body}</Response>");
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        document,
    )
        .into_response()
}

/// Spoken when the webhook names no usable agent.
pub const NO_AGENT: &str = "Sorry, this number is not set up to take calls yet. Goodbye.";

/// Spoken when the business may not start calls (its trial, included minutes and wallet are
/// used up). The caller is not told why; the business sees the reason in its usage.
pub const CALLS_PAUSED: &str =
    "Sorry, we can't take your call right now. Please try again later. Goodbye.";

/// Spoken when the business, or this engine, already carries as many calls as it may.
pub const LINES_BUSY: &str = "Sorry, all our lines are busy right now. Please call back in a few \
                              minutes. Goodbye.";

/// The parameters of a carrier's webhook: its form body when it POSTs, else its query.
pub fn form_params(body: &[u8], query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let source = if body.is_empty() {
        query.unwrap_or_default().as_bytes()
    } else {
        body
    };
    serde_urlencoded::from_bytes(source)
        .map_err(|_| ApiError::BadRequest("the parameters are not form-encoded".into()))
}

/// The value of `name` among `params`.
pub fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_xml() {
        assert_eq!(xml_escape(r#"a&b<c>"d'"#), "a&amp;b&lt;c&gt;&quot;d&apos;");
    }

    #[test]
    fn reads_parameters_from_the_body_or_the_query() {
        let from_body = form_params(b"CallUUID=u1&From=%2B1555", Some("agent_id=4")).unwrap();
        assert_eq!(param(&from_body, "From"), Some("+1555"));
        assert_eq!(param(&from_body, "agent_id"), None);
        let from_query = form_params(b"", Some("CallUUID=u2&agent_id=4")).unwrap();
        assert_eq!(param(&from_query, "CallUUID"), Some("u2"));
        assert_eq!(form_params(b"", None).unwrap(), []);
    }
}
