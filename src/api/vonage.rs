//! Vonage call set-up: the answer webhook returns an NCCO that connects the call to the engine's
//! websocket (`/media/vonage?token=…`, L16 at 16 kHz). Until phone numbers exist the agent is
//! named in the answer URL configured at Vonage: `https://PUBLIC/carrier/vonage/answer?agent_id=42`.
//! Vonage sends the answer request as GET with `from`, `to` and `uuid` in the query.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::AppState;
use super::answer::{self, NO_AGENT};
use super::error::{ApiError, ErrorBody};
use super::extract::query_value;
use crate::calls::Parties;
use crate::domain::{Carrier, Direction};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(answer))
}

/// Answers an incoming Vonage call with an NCCO that streams it to the agent.
#[utoipa::path(
    get, path = "/carrier/vonage/answer", tag = "carrier",
    params(
        ("agent_id" = i64, Query, description = "The agent that answers (until numbers are assigned)"),
        ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("uuid" = Option<String>, Query),
    ),
    responses(
        (status = 200, description = "NCCO: connect to the media websocket, or a spoken refusal when no agent answers"),
        (status = 500, body = ErrorBody),
    )
)]
async fn answer(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let param = |name: &str| query_value(query.as_deref(), name);
    let (uuid, from, to) = (param("uuid"), param("from"), param("to"));
    let parties = Parties {
        direction: Direction::Inbound,
        carrier: Carrier::Vonage,
        carrier_call_id: uuid.as_deref(),
        from_number: from.as_deref(),
        to_number: to.as_deref(),
    };
    let agent = param("agent_id");
    let Some(handed) = answer::hand_out(&state, agent.as_deref(), parties).await? else {
        return Ok(Json(json!([{ "action": "talk", "text": NO_AGENT }])));
    };
    let telephony = &state.telephony;
    let uri = format!(
        "{}?token={}",
        telephony.media_url(Carrier::Vonage),
        handed.token
    );
    Ok(Json(json!([{
        "action": "connect",
        "endpoint": [{
            "type": "websocket",
            "uri": uri,
            "content-type": "audio/l16;rate=16000",
            "headers": { "call_id": handed.call.id.to_string() }
        }]
    }])))
}
