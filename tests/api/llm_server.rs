//! A local server speaking the OpenAI chat-completions protocol for real (server-sent events,
//! streamed text and tool-call deltas; a plain JSON answer when `stream` is false), scripted by a
//! function of the request. It records every request it receives.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::routing::post;
use serde_json::{Value, json};

/// What the scripted model answers.
pub enum Answer {
    /// Streamed as several text deltas.
    Text(String),
    /// Text (possibly empty) then one tool call, its arguments split over deltas.
    Tool {
        text: String,
        name: &'static str,
        arguments: Value,
    },
}

pub type Script = Arc<dyn Fn(&Value) -> Answer + Send + Sync>;

#[derive(Clone)]
struct ServerState {
    script: Script,
    requests: Arc<Mutex<Vec<Value>>>,
}

pub struct LlmServer {
    /// `http://127.0.0.1:<port>/v1`
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
}

impl LlmServer {
    pub async fn start(script: Script) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ServerState {
            script,
            requests: Arc::clone(&requests),
        };
        let router = axum::Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        LlmServer {
            base_url: format!("http://{addr}/v1"),
            requests,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn completions(State(state): State<ServerState>, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    state.requests.lock().unwrap().push(request.clone());
    let answer = (state.script)(&request);
    if request["stream"] != true {
        let text = match answer {
            Answer::Text(text) | Answer::Tool { text, .. } => text,
        };
        let body = json!({ "id": "cmpl-1", "object": "chat.completion", "choices": [
            { "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }
        ] });
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        format!(
            "data: {}\n\n",
            json!({ "id": "cmpl-1", "object": "chat.completion.chunk",
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
        )
    };
    let mut events = vec![chunk(json!({ "role": "assistant", "content": "" }), None)];
    let (text, tool) = match answer {
        Answer::Text(text) => (text, None),
        Answer::Tool {
            text,
            name,
            arguments,
        } => (text, Some((name, arguments.to_string()))),
    };
    // Text in pieces of a few words, as models stream it.
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    for piece in words.chunks(3) {
        events.push(chunk(json!({ "content": piece.concat() }), None));
    }
    let finish = if let Some((name, arguments)) = tool {
        events.push(chunk(
            json!({ "tool_calls": [{ "index": 0, "id": "call_1", "type": "function",
                    "function": { "name": name, "arguments": "" } }] }),
            None,
        ));
        let bytes = arguments.as_bytes();
        for piece in bytes.chunks(7) {
            let piece = String::from_utf8_lossy(piece).into_owned();
            events.push(chunk(
                json!({ "tool_calls": [{ "index": 0, "function": { "arguments": piece } }] }),
                None,
            ));
        }
        "tool_calls"
    } else {
        "stop"
    };
    events.push(chunk(json!({}), Some(finish)));
    events.push("data: [DONE]\n\n".to_owned());
    let stream = futures_util::stream::iter(events).then(|event| async move {
        tokio::time::sleep(Duration::from_millis(15)).await;
        Ok::<_, std::io::Error>(event)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

use futures_util::StreamExt as _;

/// The messages of a request whose role is `role`.
pub fn messages<'a>(request: &'a Value, role: &str) -> Vec<&'a Value> {
    request["messages"]
        .as_array()
        .map(|m| m.iter().filter(|m| m["role"] == role).collect())
        .unwrap_or_default()
}

/// The name of the tool whose result is the request's last message, if it is one.
pub fn last_tool_result(request: &Value) -> Option<String> {
    let messages = request["messages"].as_array()?;
    let last = messages.last()?;
    if last["role"] != "tool" {
        return None;
    }
    let id = last["tool_call_id"].as_str()?;
    messages.iter().rev().find_map(|m| {
        m["tool_calls"].as_array()?.iter().find_map(|call| {
            (call["id"] == id).then(|| call["function"]["name"].as_str().unwrap_or("").to_owned())
        })
    })
}
