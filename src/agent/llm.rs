//! The OpenAI-compatible chat-completions turn engine: any server that speaks
//! `POST {base_url}/chat/completions` with server-sent events (OpenAI, vLLM, llama.cpp, Ollama…)
//! can be the agent's brain.
//!
//! Each caller turn streams the model's reply to the call pipeline token by token, so speech can
//! start on the first clause. When the model calls tools, `book_appointment` runs here through the
//! call's [`ToolRunner`] and the model is asked again (at most [`MAX_ROUNDS`] requests a turn) so
//! it can tell the caller the outcome; `end_call` and `transfer_call` become [`TurnOutput`]s sent
//! after the reply.
//!
//! The history is kept cancel-safe: a reply's text is written into history as it is forwarded, and
//! a tool round is committed only once all its results are known, so dropping a turn at any await
//! point (barge-in) leaves a history the server accepts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime};
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use super::turn::{
    BOOK_APPOINTMENT, BookingRequest, Conversation, END_CALL, KnowledgePassage, TRANSFER_CALL,
    ToolError, ToolRunner, TurnContext, TurnEngine, TurnError, TurnInput, TurnOutput,
};

/// Model requests per caller turn: a tool round and the reply about it, with one round to spare.
/// The last request forbids further tool calls so the model has to speak.
pub const MAX_ROUNDS: usize = 3;

/// Spoken when a turn fails before the caller heard anything, so the line is not left silent.
pub const APOLOGY: &str = "Sorry, I'm having trouble answering right now.";

/// A summary is generated in full before the server answers, so it gets this long on top of the
/// first-token timeout.
const SUMMARY_GRACE: Duration = Duration::from_secs(60);

/// Where and how to reach the language model. Filled by the caller from its own configuration.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// The API root, e.g. `http://127.0.0.1:8000/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set (local servers usually need none).
    pub api_key: Option<SecretString>,
    /// How long one request may take to produce its first token (connecting, the response
    /// headers and the first streamed delta), and the longest pause tolerated mid-reply.
    pub timeout: Duration,
    /// Extra attempts after a connection error, a timeout, HTTP 429 or 5xx, as long as nothing of
    /// the attempt has been spoken yet.
    pub retries: u32,
    /// `None` leaves the server's default.
    pub temperature: Option<f32>,
}

/// The engine: one HTTP client (and its connection pool) shared by every call's conversation.
pub struct LlmEngine {
    client: reqwest::Client,
    config: Arc<LlmConfig>,
}

impl LlmEngine {
    /// Builds the HTTP client once; fails on a base URL that cannot be parsed, so a typo shows at
    /// start-up rather than on the first call.
    pub fn new(config: LlmConfig) -> Result<Self, TurnError> {
        reqwest::Url::parse(&completions_url(&config))
            .map_err(|e| TurnError(format!("invalid LLM base URL {:?}: {e}", config.base_url)))?;
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| TurnError(format!("cannot build the HTTP client: {}", describe(&e))))?;
        Ok(Self {
            client,
            config: Arc::new(config),
        })
    }

    /// The shared client, for [`summarize`] after a call.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }
}

impl TurnEngine for LlmEngine {
    fn open(&self, ctx: Arc<TurnContext>, tools: Arc<dyn ToolRunner>) -> Box<dyn Conversation> {
        Box::new(LlmConversation {
            client: self.client.clone(),
            config: self.config.clone(),
            system: system_message(&ctx),
            tool_schema: tool_schema(&ctx),
            ctx,
            tools,
            history: Vec::new(),
            excerpts: None,
            next_call_id: 1,
        })
    }
}

/// Asks the model for a 2–3 sentence summary of a finished call's transcript (what the caller
/// wanted, what was done, what is still open), without streaming.
pub async fn summarize(
    client: &reqwest::Client,
    config: &LlmConfig,
    transcript: &str,
) -> Result<String, TurnError> {
    if transcript.trim().is_empty() {
        return Err(TurnError("the transcript is empty".into()));
    }
    let mut body = json!({
        "model": config.model,
        "stream": false,
        "messages": [
            {"role": "system", "content": "You summarise phone calls for the business that \
                took them. Reply with 2 or 3 plain sentences: what the caller wanted, what was \
                done, and anything still open. No headings, no lists."},
            {"role": "user", "content": format!("Call transcript:\n\n{transcript}")},
        ],
    });
    set_temperature(&mut body, config.temperature);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let deadline = Instant::now() + config.timeout + SUMMARY_GRACE;
        let result = async {
            let response = send(client, config, &body, deadline).await?;
            let answer: Value = match timeout_at(deadline, response.json()).await {
                Err(_) => return Err(Failure::Retry("the summary timed out".into())),
                Ok(Err(e)) => return Err(Failure::Retry(format!("bad answer: {}", describe(&e)))),
                Ok(Ok(answer)) => answer,
            };
            let text = answer["choices"][0]["message"]["content"]
                .as_str()
                .map(strip_thinking)
                .unwrap_or_default();
            if text.is_empty() {
                Err(Failure::Fatal("the model returned an empty summary".into()))
            } else {
                Ok(text.to_owned())
            }
        }
        .await;
        match result {
            Ok(text) => return Ok(text),
            Err(Failure::Retry(message)) if attempt <= config.retries => {
                tracing::warn!(attempt, %message, "summary request failed; retrying");
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(failure) => return Err(failure.into_error(attempt)),
        }
    }
}

/// One call's conversation with the model.
struct LlmConversation {
    client: reqwest::Client,
    config: Arc<LlmConfig>,
    ctx: Arc<TurnContext>,
    tools: Arc<dyn ToolRunner>,
    /// Built once per call: the instructions plus the call's date, time and caller.
    system: String,
    /// The `tools` array for this call's requests (empty: none offered).
    tool_schema: Vec<Value>,
    /// Everything after the system message.
    history: Vec<Message>,
    /// The knowledge passages found for the caller's latest words, added to the system message
    /// of this turn's requests only (past turns' excerpts would crowd the context).
    excerpts: Option<String>,
    /// For tool calls a server sent without an id.
    next_call_id: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum Message {
    User(String),
    Assistant {
        content: String,
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        call_id: String,
        content: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
struct ToolCall {
    id: String,
    name: String,
    arguments: String,
}

impl Message {
    fn assistant(content: &str) -> Self {
        Message::Assistant {
            content: content.to_owned(),
            tool_calls: Vec::new(),
        }
    }

    /// An assistant message that never got a word or a tool call (a turn dropped before its first
    /// token): servers reject empty assistant messages, so these are not sent.
    fn is_placeholder(&self) -> bool {
        matches!(self, Message::Assistant { content, tool_calls } if content.is_empty() && tool_calls.is_empty())
    }

    fn to_json(&self) -> Option<Value> {
        Some(match self {
            Message::User(content) => json!({"role": "user", "content": content}),
            Message::Assistant { .. } if self.is_placeholder() => return None,
            Message::Assistant {
                content,
                tool_calls,
            } if tool_calls.is_empty() => json!({"role": "assistant", "content": content}),
            Message::Assistant {
                content,
                tool_calls,
            } => json!({
                "role": "assistant",
                "content": if content.is_empty() { Value::Null } else { json!(content) },
                "tool_calls": tool_calls.iter().map(|call| json!({
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                })).collect::<Vec<_>>(),
            }),
            Message::Tool { call_id, content } => {
                json!({"role": "tool", "tool_call_id": call_id, "content": content})
            }
        })
    }
}

/// What a tool round asks of the line once the reply has been spoken.
#[derive(Default)]
struct LineActions {
    end_call: bool,
    transfer: Option<String>,
}

enum RoundEnd {
    /// The stream ended; these tool calls (possibly none) were made.
    Finished(Vec<ToolCall>),
    /// The pipeline stopped listening.
    OutClosed,
}

impl Conversation for LlmConversation {
    fn greeting(&mut self) -> Option<String> {
        let greeting = format!(
            "Hello, you've reached {}. How can I help you today?",
            self.ctx.agent_name.trim()
        );
        self.history.push(Message::assistant(&greeting));
        Some(greeting)
    }

    fn respond<'a>(
        &'a mut self,
        input: TurnInput,
        out: mpsc::Sender<TurnOutput>,
    ) -> BoxFuture<'a, Result<(), TurnError>> {
        Box::pin(self.turn(input, out))
    }

    fn interrupted(&mut self, heard: &str) {
        // The reply being cut short is everything after the caller's last words; it may span
        // several assistant messages when a tool round sat in the middle.
        let start = self
            .history
            .iter()
            .rposition(|m| matches!(m, Message::User(_)))
            .map_or(0, |i| i + 1);
        let mut remaining = heard.trim();
        let mut cut = false;
        let mut i = start;
        while i < self.history.len() {
            if let Message::Assistant { content, .. } = &mut self.history[i] {
                if cut {
                    content.clear();
                } else if let Some(rest) = strip_spoken_prefix(remaining, content) {
                    remaining = rest;
                } else {
                    *content = remaining.to_owned();
                    cut = true;
                }
                if self.history[i].is_placeholder() {
                    self.history.remove(i);
                    continue;
                }
            }
            i += 1;
        }
    }
}

impl LlmConversation {
    async fn turn(
        &mut self,
        input: TurnInput,
        out: mpsc::Sender<TurnOutput>,
    ) -> Result<(), TurnError> {
        let text = match input {
            TurnInput::Utterance(text) if text.trim().is_empty() => return Ok(()),
            TurnInput::Utterance(text) => text.trim().to_owned(),
            TurnInput::Dtmf(digits) => format!("[The caller pressed {digits}]"),
        };
        let passages = self.tools.search_knowledge(&text).await;
        self.excerpts = excerpts(&passages);
        self.history.retain(|m| !m.is_placeholder());
        // Two user messages in a row (the previous turn was dropped before a word, or its reply was
        // interrupted unheard) become one: some chat templates insist on alternating roles.
        match self.history.last_mut() {
            Some(Message::User(previous)) => {
                previous.push('\n');
                previous.push_str(&text);
            }
            _ => self.history.push(Message::User(text)),
        }

        let mut said = false;
        let mut actions = LineActions::default();
        for round in 1..=MAX_ROUNDS {
            let body = self.request_body(round < MAX_ROUNDS);
            self.history.push(Message::assistant(""));
            let index = self.history.len() - 1;
            match self.stream_round(&body, &out, index, &mut said).await {
                Err(error) => {
                    if !said {
                        if let Some(Message::Assistant { content, .. }) =
                            self.history.get_mut(index)
                        {
                            *content = APOLOGY.to_owned();
                        }
                        let _ = out.send(TurnOutput::Text(APOLOGY.into())).await;
                    }
                    return Err(error);
                }
                Ok(RoundEnd::OutClosed) => return Ok(()),
                Ok(RoundEnd::Finished(calls)) if calls.is_empty() => break,
                Ok(RoundEnd::Finished(calls)) => {
                    let mut results = Vec::with_capacity(calls.len());
                    for call in &calls {
                        let content = self.run_tool(call, &mut actions).await;
                        results.push(Message::Tool {
                            call_id: call.id.clone(),
                            content,
                        });
                    }
                    // Committed together, after every await: a tool call without its result
                    // would make the server reject the next request.
                    if let Some(Message::Assistant { tool_calls, .. }) = self.history.get_mut(index)
                    {
                        *tool_calls = calls;
                    }
                    self.history.extend(results);
                    if round == MAX_ROUNDS {
                        tracing::warn!(call = %self.ctx.call, "model still calling tools after {MAX_ROUNDS} rounds");
                    }
                }
            }
        }
        let action = match actions {
            LineActions {
                transfer: Some(number),
                ..
            } => Some(TurnOutput::Transfer(number)),
            LineActions { end_call: true, .. } => Some(TurnOutput::EndCall),
            LineActions { .. } => None,
        };
        if let Some(action) = action {
            // A closed channel means the call is gone: nothing left to end or transfer.
            let _ = out.send(action).await;
        }
        Ok(())
    }

    fn request_body(&self, allow_tools: bool) -> Value {
        let system = match &self.excerpts {
            Some(excerpts) => format!("{}\n\n{excerpts}", self.system),
            None => self.system.clone(),
        };
        let mut messages = vec![json!({"role": "system", "content": system})];
        messages.extend(self.history.iter().filter_map(Message::to_json));
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "stream": true,
        });
        if !self.tool_schema.is_empty() {
            body["tools"] = json!(self.tool_schema);
            if !allow_tools {
                body["tool_choice"] = json!("none");
            }
        }
        set_temperature(&mut body, self.config.temperature);
        body
    }

    /// One model request with its retries; its text goes to `out` and into
    /// `history[index]` as it arrives.
    async fn stream_round(
        &mut self,
        body: &Value,
        out: &mpsc::Sender<TurnOutput>,
        index: usize,
        said: &mut bool,
    ) -> Result<RoundEnd, TurnError> {
        let Some(Message::Assistant { content, .. }) = self.history.get_mut(index) else {
            return Err(TurnError(
                "internal: no assistant message to stream into".into(),
            ));
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut calls = PartialCalls::default();
            let mut forwarded = false;
            let mut sink = Sink {
                out,
                content: &mut *content,
                separate: *said,
                forwarded: &mut forwarded,
            };
            let result =
                stream_attempt(&self.client, &self.config, body, &mut sink, &mut calls).await;
            *said |= forwarded;
            match result {
                Ok(true) => return Ok(RoundEnd::OutClosed),
                Ok(false) => return Ok(RoundEnd::Finished(calls.finish(&mut self.next_call_id))),
                Err(Failure::Retry(message)) if !forwarded && attempt <= self.config.retries => {
                    tracing::warn!(call = %self.ctx.call, attempt, %message, "LLM request failed; retrying");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(failure) => return Err(failure.into_error(attempt)),
            }
        }
    }

    /// Runs one tool call; the answer is the tool message the model reads next.
    async fn run_tool(&self, call: &ToolCall, actions: &mut LineActions) -> String {
        let offered = &self.ctx.tools;
        let args: Value = if call.arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str(&call.arguments) {
                Ok(args) => args,
                Err(e) => return tool_error(format!("the arguments are not valid JSON: {e}")),
            }
        };
        match call.name.as_str() {
            BOOK_APPOINTMENT if offered.book_appointment => {
                let request = match booking_request(&args, self.ctx.timezone) {
                    Ok(request) => request,
                    Err(message) => return tool_error(message),
                };
                match self.tools.book_appointment(request).await {
                    Ok(booking) => json!({
                        "status": "booked",
                        "booking_id": booking.id,
                        "name": booking.name,
                        "start": booking.start.format("%Y-%m-%dT%H:%M").to_string(),
                        "weekday": booking.start.format("%A").to_string(),
                        "phone": booking.phone,
                    })
                    .to_string(),
                    Err(ToolError::Rejected(reason)) => {
                        tool_error(format!("the booking was not made: {reason}"))
                    }
                    Err(error @ ToolError::Failed(_)) => {
                        tracing::warn!(call = %self.ctx.call, %error, "booking failed");
                        tool_error(format!("{error}; apologise and offer to take a message"))
                    }
                }
            }
            END_CALL if offered.end_call => {
                actions.end_call = true;
                json!({"status": "the call will end after your reply; say goodbye"}).to_string()
            }
            TRANSFER_CALL if offered.transfer_to.is_some() => {
                // Only ever the configured number: a caller must not talk the model into dialling
                // somewhere else at the business's expense.
                let number = offered.transfer_to.clone().unwrap_or_default();
                if args["phone_number"]
                    .as_str()
                    .is_some_and(|asked| asked != number)
                {
                    tracing::warn!(call = %self.ctx.call, asked = %args["phone_number"], "transfer number overridden by the configured one");
                }
                let status = format!("the caller will be transferred to {number} after your reply");
                actions.transfer = Some(number);
                json!({ "status": status }).to_string()
            }
            name => tool_error(format!("there is no tool called {name:?} on this call")),
        }
    }
}

/// Where a streamed reply goes: the pipeline, and the history's copy of what was said.
struct Sink<'a> {
    out: &'a mpsc::Sender<TurnOutput>,
    content: &'a mut String,
    /// Text was said in an earlier round: put a space between the two.
    separate: bool,
    forwarded: &'a mut bool,
}

impl Sink<'_> {
    /// Returns false when the pipeline no longer listens.
    async fn send(&mut self, piece: &str) -> bool {
        let needs_space =
            self.separate && !*self.forwarded && !piece.starts_with(char::is_whitespace);
        let text = if needs_space {
            format!(" {piece}")
        } else {
            piece.to_owned()
        };
        if self.out.send(TurnOutput::Text(text)).await.is_err() {
            return false;
        }
        self.content.push_str(piece);
        *self.forwarded = true;
        true
    }
}

/// Tool calls assembled from streamed fragments, by their `index`.
#[derive(Default)]
struct PartialCalls(BTreeMap<u64, ToolCall>);

impl PartialCalls {
    fn add(&mut self, fragments: &[Value]) {
        for (position, fragment) in fragments.iter().enumerate() {
            let index = fragment["index"].as_u64().unwrap_or(position as u64);
            let call = self.0.entry(index).or_default();
            if let Some(id) = fragment["id"].as_str().filter(|id| !id.is_empty()) {
                id.clone_into(&mut call.id);
            }
            if let Some(name) = fragment["function"]["name"].as_str() {
                call.name.push_str(name);
            }
            if let Some(arguments) = fragment["function"]["arguments"].as_str() {
                call.arguments.push_str(arguments);
            }
        }
    }

    fn finish(self, next_id: &mut u64) -> Vec<ToolCall> {
        self.0
            .into_values()
            .filter(|call| !call.name.is_empty())
            .map(|mut call| {
                if call.id.is_empty() {
                    call.id = format!("call_{next_id}");
                    *next_id += 1;
                }
                call
            })
            .collect()
    }
}

/// Why an attempt failed, and whether another attempt may help.
enum Failure {
    Retry(String),
    Fatal(String),
}

impl Failure {
    fn into_error(self, attempts: u32) -> TurnError {
        match self {
            Failure::Retry(message) if attempts > 1 => {
                TurnError(format!("{message} (after {attempts} attempts)"))
            }
            Failure::Retry(message) | Failure::Fatal(message) => TurnError(message),
        }
    }
}

/// One streamed request. Returns `Ok(true)` when `out` was closed.
async fn stream_attempt(
    client: &reqwest::Client,
    config: &LlmConfig,
    body: &Value,
    sink: &mut Sink<'_>,
    calls: &mut PartialCalls,
) -> Result<bool, Failure> {
    let first_token_deadline = Instant::now() + config.timeout;
    let mut response = send(client, config, body, first_token_deadline).await?;
    let mut parser = SseParser::default();
    let mut started = false;
    let mut ended = false;
    loop {
        let deadline = if started {
            Instant::now() + config.timeout
        } else {
            first_token_deadline
        };
        let events = match timeout_at(deadline, response.chunk()).await {
            Err(_) if started => {
                return Err(Failure::Retry(format!(
                    "the language model stalled for {:?} mid-reply",
                    config.timeout
                )));
            }
            Err(_) => {
                return Err(Failure::Retry(format!(
                    "no reply from the language model within {:?}",
                    config.timeout
                )));
            }
            Ok(Err(e)) => {
                return Err(Failure::Retry(format!(
                    "the language model's stream broke: {}",
                    describe(&e)
                )));
            }
            Ok(Ok(Some(bytes))) => parser.push(&bytes),
            // The server closed the stream without `[DONE]`: what it sent still counts.
            Ok(Ok(None)) => {
                ended = true;
                parser.finish()
            }
        };
        for data in events {
            if data.trim() == "[DONE]" {
                return Ok(false);
            }
            let chunk: Value = match serde_json::from_str(&data) {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::debug!(%e, "ignoring a stream event that is not JSON");
                    continue;
                }
            };
            if !chunk["error"].is_null() {
                return Err(Failure::Fatal(format!(
                    "the language model failed mid-reply: {}",
                    error_text(&chunk, "")
                )));
            }
            let choice = &chunk["choices"][0];
            let delta = &choice["delta"];
            let content = delta["content"].as_str().unwrap_or_default();
            let fragments = delta["tool_calls"].as_array();
            started |= !content.is_empty()
                || fragments.is_some()
                || delta["reasoning_content"]
                    .as_str()
                    .is_some_and(|r| !r.is_empty())
                || !choice["finish_reason"].is_null();
            if let Some(fragments) = fragments {
                calls.add(fragments);
            }
            if !content.is_empty() && !sink.send(content).await {
                return Ok(true);
            }
        }
        if ended {
            return Ok(false);
        }
    }
}

/// Sends one request and checks its status; the error statuses worth retrying are 429 and 5xx.
async fn send(
    client: &reqwest::Client,
    config: &LlmConfig,
    body: &Value,
    deadline: Instant,
) -> Result<reqwest::Response, Failure> {
    let mut request = client.post(completions_url(config)).json(body);
    if let Some(key) = &config.api_key {
        request = request.bearer_auth(key.expose_secret());
    }
    let response = match timeout_at(deadline, request.send()).await {
        Err(_) => {
            return Err(Failure::Retry(format!(
                "no answer from the language model within {:?}",
                config.timeout
            )));
        }
        Ok(Err(e)) if e.is_builder() => {
            return Err(Failure::Fatal(format!("bad LLM request: {}", describe(&e))));
        }
        Ok(Err(e)) => {
            return Err(Failure::Retry(format!(
                "cannot reach the language model: {}",
                describe(&e)
            )));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = match timeout_at(deadline, response.text()).await {
        Ok(Ok(text)) => text,
        _ => String::new(),
    };
    let detail = match serde_json::from_str::<Value>(&text) {
        Ok(value) => error_text(&value, &text),
        Err(_) => text.trim().chars().take(300).collect(),
    };
    let message = if detail.is_empty() {
        format!("the language model answered HTTP {status}")
    } else {
        format!("the language model answered HTTP {status}: {detail}")
    };
    if status.as_u16() == 429 || status.is_server_error() {
        Err(Failure::Retry(message))
    } else {
        Err(Failure::Fatal(message))
    }
}

/// The message in an error body: OpenAI's `{"error":{"message":…}}`, or the shapes other servers
/// use (`{"error": "…"}`, vLLM's older `{"message": …}`, FastAPI's `{"detail": …}`).
fn error_text(value: &Value, raw: &str) -> String {
    [
        &value["error"]["message"],
        &value["error"],
        &value["message"],
        &value["detail"],
    ]
    .into_iter()
    .find_map(Value::as_str)
    .map_or_else(|| raw.trim().chars().take(300).collect(), str::to_owned)
}

/// Incremental server-sent-events parser: yields each event's `data`, whatever the network
/// chunking (lines end in `\n`, `\r\n` or `\r`; a blank line ends an event).
#[derive(Default)]
struct SseParser {
    buffer: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(offset) = self.buffer[start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
        {
            let end = start + offset;
            let terminator = match (self.buffer[end], self.buffer.get(end + 1)) {
                (b'\r', Some(b'\n')) => 2,
                // A `\r` at the end of the buffer may be half of a `\r\n`: wait for more.
                (b'\r', None) => break,
                _ => 1,
            };
            // Line ends are ASCII, so a line never splits a UTF-8 sequence.
            let line = String::from_utf8_lossy(&self.buffer[start..end]).into_owned();
            start = end + terminator;
            self.line(&line, &mut events);
        }
        self.buffer.drain(..start);
        events
    }

    /// The stream ended: a last unterminated line or event still counts.
    fn finish(&mut self) -> Vec<String> {
        let mut events = Vec::new();
        if !self.buffer.is_empty() {
            let rest = std::mem::take(&mut self.buffer);
            let line = String::from_utf8_lossy(&rest);
            self.line(line.trim_end_matches('\r'), &mut events);
        }
        events.extend(self.data.take());
        events
    }

    fn line(&mut self, line: &str, events: &mut Vec<String>) {
        if line.is_empty() {
            events.extend(self.data.take());
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field != "data" {
            return; // comments (`: keep-alive`), `event:`, `id:`, `retry:`
        }
        let value = value.strip_prefix(' ').unwrap_or(value);
        match &mut self.data {
            Some(data) => {
                data.push('\n');
                data.push_str(value);
            }
            None => self.data = Some(value.to_owned()),
        }
    }
}

fn completions_url(config: &LlmConfig) -> String {
    format!("{}/chat/completions", config.base_url.trim_end_matches('/'))
}

fn set_temperature(body: &mut Value, temperature: Option<f32>) {
    if let Some(t) = temperature {
        // Through its decimal form, so 0.7f32 is sent as 0.7 rather than 0.699999988079071.
        body["temperature"] = json!(t.to_string().parse::<f64>().unwrap_or(f64::from(t)));
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200 * u64::from(attempt))
}

/// An error and its causes on one line: reqwest's own message rarely says what went wrong.
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

/// Drops a leading `<think>…</think>` block some reasoning models put in their answer.
fn strip_thinking(text: &str) -> &str {
    let text = text.trim();
    match text
        .strip_prefix("<think>")
        .and_then(|t| t.split_once("</think>"))
    {
        Some((_, answer)) => answer.trim(),
        None => text,
    }
}

fn tool_error(message: String) -> String {
    json!({"error": message, "note": "nothing was done; tell the caller"}).to_string()
}

/// If `heard` starts with all of `said` (ignoring differences in whitespace), the rest of `heard`.
fn strip_spoken_prefix<'h>(heard: &'h str, said: &str) -> Option<&'h str> {
    let mut heard_chars = heard.char_indices().filter(|(_, c)| !c.is_whitespace());
    for c in said.chars().filter(|c| !c.is_whitespace()) {
        match heard_chars.next() {
            Some((_, h)) if h == c => {}
            _ => return None,
        }
    }
    let rest = heard_chars.next().map_or(heard.len(), |(i, _)| i);
    Some(&heard[rest..])
}

/// The system message: the agent's instructions, then what the model cannot know by itself.
/// The system message's section of knowledge excerpts for one turn; `None` when there are none.
fn excerpts(passages: &[KnowledgePassage]) -> Option<String> {
    if passages.is_empty() {
        return None;
    }
    let mut text = String::from("# Excerpts for the caller's last words\n");
    for (i, p) in passages.iter().enumerate() {
        text.push_str(&format!("[{}] {}", i + 1, p.source));
        if let Some(page) = p.page {
            text.push_str(&format!(", page {page}"));
        }
        if let Some(heading) = &p.heading {
            text.push_str(&format!(", {heading}"));
        }
        text.push_str(":\n");
        text.push_str(p.text.trim());
        text.push('\n');
    }
    Some(text)
}

fn system_message(ctx: &TurnContext) -> String {
    let now = ctx.started_at.with_timezone(&ctx.timezone);
    let mut system = ctx.instructions.trim_end().to_owned();
    let _ = write!(
        system,
        "\n\nThe call started on {} ({}) at {} local time ({}).",
        now.format("%A %-d %B %Y"),
        now.format("%Y-%m-%d"),
        now.format("%H:%M"),
        ctx.timezone.name(),
    );
    if let Some(number) = &ctx.caller_number {
        let _ = write!(system, " The caller is calling from {number}.");
    }
    system
}

/// The OpenAI function-calling schema of the tools this call offers.
fn tool_schema(ctx: &TurnContext) -> Vec<Value> {
    let function = |name: &str, description: String, parameters: Value| {
        json!({"type": "function", "function": {
            "name": name, "description": description, "parameters": parameters,
        }})
    };
    let mut tools = Vec::new();
    if ctx.tools.book_appointment {
        tools.push(function(
            BOOK_APPOINTMENT,
            "Book an appointment once the caller has confirmed their name, the date and the time."
                .into(),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The caller's name."},
                    "start": {"type": "string", "description": format!(
                        "Local start date and time in {}, as YYYY-MM-DDTHH:MM (e.g. 2026-12-01T14:30).",
                        ctx.timezone.name())},
                    "phone": {"type": "string", "description":
                        "A contact number, only if different from the number the caller is calling from."},
                    "notes": {"type": "string", "description": "What the appointment is for, if said."},
                },
                "required": ["name", "start"],
            }),
        ));
    }
    if ctx.tools.end_call {
        tools.push(function(
            END_CALL,
            "Hang up after your reply has been spoken. Use it when the conversation is over, and \
             say goodbye in that reply."
                .into(),
            json!({"type": "object", "properties": {}}),
        ));
    }
    if let Some(number) = &ctx.tools.transfer_to {
        tools.push(function(
            TRANSFER_CALL,
            format!(
                "Transfer the caller to a person at {number} after your reply has been spoken. \
                 Use it when the caller asks for a person or you cannot help."
            ),
            json!({
                "type": "object",
                "properties": {"phone_number": {"type": "string", "enum": [number]}},
                "required": ["phone_number"],
            }),
        ));
    }
    tools
}

/// Reads `book_appointment`'s arguments.
fn booking_request(args: &Value, timezone: chrono_tz::Tz) -> Result<BookingRequest, String> {
    let text = |key: &str| {
        args[key]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let name = text("name").ok_or("the caller's `name` is missing")?;
    let start = text("start").ok_or("the `start` date and time are missing")?;
    Ok(BookingRequest {
        name,
        start: parse_local_start(&start, timezone)?,
        phone: text("phone"),
        notes: text("notes"),
    })
}

/// `YYYY-MM-DDTHH:MM[:SS]` in the tenant's local time. A model that adds an offset anyway
/// (`…+11:00`, `…Z`) gets that instant in local time rather than an error.
fn parse_local_start(raw: &str, timezone: chrono_tz::Tz) -> Result<NaiveDateTime, String> {
    const FORMATS: [&str; 4] = [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
        .or_else(|| {
            DateTime::parse_from_rfc3339(raw)
                .ok()
                .map(|t| t.with_timezone(&timezone).naive_local())
        })
        .ok_or_else(|| {
            format!("`start` must be a local date and time like 2026-12-01T14:30, not {raw:?}")
        })
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use axum::Router;
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use chrono::NaiveDate;
    use futures_util::StreamExt;

    use super::*;
    use crate::agent::turn::testing::{MemoryTools, context};

    const GAP: Duration = Duration::from_millis(15);

    /// What the scripted server answers to one request.
    enum Reply {
        /// An event stream: each chunk is sent after its delay.
        Stream(Vec<(Duration, String)>),
        /// A stream whose connection breaks after these chunks.
        Broken(Vec<(Duration, String)>),
        Status(u16, String),
        Json(Value),
    }

    struct Seen {
        authorization: Option<String>,
        body: Value,
    }

    #[derive(Default)]
    struct Server {
        script: Mutex<VecDeque<Reply>>,
        seen: Mutex<Vec<Seen>>,
    }

    impl Server {
        fn requests(&self) -> Vec<Value> {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .map(|s| s.body.clone())
                .collect()
        }
    }

    async fn completions(
        State(server): State<Arc<Server>>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> Response {
        server.seen.lock().unwrap().push(Seen {
            authorization: headers
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned()),
            body,
        });
        let reply = server.script.lock().unwrap().pop_front();
        match reply {
            Some(Reply::Stream(chunks)) => event_stream(chunks, false),
            Some(Reply::Broken(chunks)) => event_stream(chunks, true),
            Some(Reply::Status(code, body)) => (
                StatusCode::from_u16(code).unwrap(),
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Some(Reply::Json(value)) => axum::Json(value).into_response(),
            None => (StatusCode::INTERNAL_SERVER_ERROR, "script exhausted").into_response(),
        }
    }

    fn event_stream(chunks: Vec<(Duration, String)>, broken: bool) -> Response {
        let body = futures_util::stream::iter(chunks)
            .then(|(delay, chunk)| async move {
                tokio::time::sleep(delay).await;
                Ok(chunk)
            })
            .chain(futures_util::stream::iter(
                broken.then(|| Err(std::io::Error::other("connection lost"))),
            ));
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .body(Body::from_stream(body))
            .unwrap()
    }

    /// A real HTTP server on a free local port; returns its base URL.
    async fn serve(script: Vec<Reply>) -> (String, Arc<Server>) {
        let server = Arc::new(Server {
            script: Mutex::new(script.into()),
            ..Server::default()
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(server.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/v1/"), server)
    }

    fn config(base_url: String) -> LlmConfig {
        LlmConfig {
            base_url,
            model: "test-model".into(),
            api_key: Some(SecretString::from("sk-test")),
            timeout: Duration::from_secs(10),
            retries: 2,
            temperature: Some(0.2),
        }
    }

    fn event(delta: Value) -> String {
        format!(
            "data: {}\n\n",
            json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        )
    }

    /// A reply streamed one text delta per network chunk.
    fn text_stream(pieces: &[&str]) -> Reply {
        let mut chunks = vec![(GAP, event(json!({"role": "assistant", "content": ""})))];
        chunks.extend(pieces.iter().map(|p| (GAP, event(json!({"content": p})))));
        chunks.push((GAP, "data: [DONE]\n\n".into()));
        Reply::Stream(chunks)
    }

    /// The events of `sse` re-cut into network chunks of `size` bytes, ignoring event bounds.
    fn rechunked(sse: &str, size: usize) -> Reply {
        Reply::Stream(
            sse.as_bytes()
                .chunks(size)
                .map(|c| (GAP, String::from_utf8_lossy(c).into_owned()))
                .collect(),
        )
    }

    fn tool_call_events(id: &str, name: &str, argument_pieces: &[&str]) -> String {
        let mut sse = event(
            json!({"role": "assistant", "tool_calls": [{"index": 0, "id": id,
            "type": "function", "function": {"name": name, "arguments": ""}}]}),
        );
        for piece in argument_pieces {
            sse += &event(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}));
        }
        sse + "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\r\n\r\ndata: [DONE]\r\n\r\n"
    }

    fn open(config: LlmConfig, ctx: TurnContext) -> (Box<dyn Conversation>, Arc<MemoryTools>) {
        let tools = Arc::new(MemoryTools::default());
        let engine = LlmEngine::new(config).unwrap();
        (engine.open(Arc::new(ctx), tools.clone()), tools)
    }

    /// Runs one turn, collecting everything it sent.
    async fn turn(
        conversation: &mut Box<dyn Conversation>,
        input: TurnInput,
    ) -> (Result<(), TurnError>, Vec<TurnOutput>) {
        let (tx, mut rx) = mpsc::channel(64);
        let result = conversation.respond(input, tx).await;
        let mut outputs = Vec::new();
        while let Ok(output) = rx.try_recv() {
            outputs.push(output);
        }
        (result, outputs)
    }

    fn say(text: &str) -> TurnInput {
        TurnInput::Utterance(text.into())
    }

    fn texts(outputs: &[TurnOutput]) -> Vec<&str> {
        outputs
            .iter()
            .filter_map(|o| match o {
                TurnOutput::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    fn roles(request: &Value) -> Vec<&str> {
        request["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn each_turn_carries_the_excerpts_found_for_its_words_only() {
        let (url, server) = serve(vec![
            text_stream(&["The Margherita is $18.50."]),
            text_stream(&["Thanks."]),
        ])
        .await;
        let tools = Arc::new(MemoryTools {
            knowledge: vec![KnowledgePassage {
                source: "menu.pdf".into(),
                page: Some(1),
                heading: Some("Menu > Pizza".into()),
                text: "Margherita pizza with basil $18.50\nProsciutto pizza $24.00".into(),
                score: 0.61,
            }],
            ..MemoryTools::default()
        });
        let engine = LlmEngine::new(config(url.clone())).unwrap();
        let mut conversation = engine.open(Arc::new(context()), tools.clone());
        let (result, _) = turn(&mut conversation, say("How much is the margherita?")).await;
        result.unwrap();
        let system = server.requests()[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            system.ends_with(
                "# Excerpts for the caller's last words\n[1] menu.pdf, page 1, Menu > Pizza:\n\
                 Margherita pizza with basil $18.50\nProsciutto pizza $24.00\n"
            ),
            "{system}"
        );
        assert_eq!(
            *tools.searches.lock().unwrap(),
            ["How much is the margherita?"]
        );
        // A turn whose search finds nothing sends no excerpts.
        let (mut conversation, _) = open(config(url), context());
        let (result, _) = turn(&mut conversation, say("Thanks")).await;
        result.unwrap();
        let system = server.requests()[1]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!system.contains("# Excerpts"), "{system}");
    }

    #[tokio::test]
    async fn streams_text_and_sends_the_expected_request() {
        let (url, server) = serve(vec![
            text_stream(&["Sure", ", we open", " at 9."]),
            text_stream(&["You're welcome."]),
        ])
        .await;
        let ctx = context();
        let (mut conversation, _) = open(config(url), ctx.clone());
        let greeting = conversation.greeting().unwrap();
        assert_eq!(
            greeting,
            "Hello, you've reached Reception. How can I help you today?"
        );

        let (result, outputs) = turn(&mut conversation, say("When do you open?")).await;
        result.unwrap();
        assert_eq!(
            outputs,
            ["Sure", ", we open", " at 9."].map(|t| TurnOutput::Text(t.into()))
        );

        let authorization = server.seen.lock().unwrap()[0].authorization.clone();
        assert_eq!(authorization.as_deref(), Some("Bearer sk-test"));
        let request = &server.requests()[0];
        assert_eq!(request["model"], "test-model");
        assert_eq!(request["stream"], true);
        assert_eq!(request["temperature"], 0.2);
        assert_eq!(roles(request), ["system", "assistant", "user"]);
        let system = request["messages"][0]["content"].as_str().unwrap();
        assert!(system.starts_with(&ctx.instructions), "{system}");
        // 01:00 UTC is noon in Sydney (daylight time) on Monday 30 November 2026.
        assert!(
            system.contains("Monday 30 November 2026 (2026-11-30) at 12:00"),
            "{system}"
        );
        assert!(system.contains("+61255501234"), "{system}");
        assert_eq!(request["messages"][1]["content"], greeting);
        assert_eq!(request["messages"][2]["content"], "When do you open?");
        let tools: Vec<_> = request["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(tools, [BOOK_APPOINTMENT, END_CALL]);
        assert!(request.get("tool_choice").is_none());

        // The reply is in the history the next request carries; a digit reads as a note.
        let (result, _) = turn(&mut conversation, TurnInput::Dtmf("5".into())).await;
        result.unwrap();
        let request = &server.requests()[1];
        assert_eq!(
            roles(request),
            ["system", "assistant", "user", "assistant", "user"]
        );
        assert_eq!(request["messages"][3]["content"], "Sure, we open at 9.");
        assert_eq!(request["messages"][4]["content"], "[The caller pressed 5]");
    }

    #[tokio::test]
    async fn books_from_arguments_split_across_deltas_and_speaks_the_outcome() {
        let first_round = event(json!({"role": "assistant", "content": "One moment."}))
            + &tool_call_events(
                "call_abc",
                BOOK_APPOINTMENT,
                &[
                    "{\"name\": \"Ann",
                    " Lee\", \"sta",
                    "rt\": \"2026-12-01T",
                    "10:30\"}",
                ],
            );
        let (url, server) = serve(vec![
            rechunked(&first_round, 37),
            text_stream(&["You're booked", " for Tuesday at 10:30."]),
        ])
        .await;
        let (mut conversation, tools) = open(config(url), context());

        let (result, outputs) = turn(
            &mut conversation,
            say("Book me in tomorrow at 10:30, Ann Lee"),
        )
        .await;
        result.unwrap();
        assert_eq!(
            texts(&outputs).concat(),
            "One moment. You're booked for Tuesday at 10:30."
        );
        assert!(outputs.iter().all(|o| matches!(o, TurnOutput::Text(_))));
        let booked = tools.booked.lock().unwrap().clone();
        assert_eq!(
            booked,
            [BookingRequest {
                name: "Ann Lee".into(),
                start: NaiveDate::from_ymd_opt(2026, 12, 1)
                    .unwrap()
                    .and_hms_opt(10, 30, 0)
                    .unwrap(),
                phone: None,
                notes: None,
            }]
        );

        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        let second = &requests[1];
        assert_eq!(roles(second), ["system", "user", "assistant", "tool"]);
        let assistant = &second["messages"][2];
        assert_eq!(assistant["content"], "One moment.");
        assert_eq!(assistant["tool_calls"][0]["id"], "call_abc");
        assert_eq!(
            assistant["tool_calls"][0]["function"]["name"],
            BOOK_APPOINTMENT
        );
        let arguments: Value = serde_json::from_str(
            assistant["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            arguments,
            json!({"name": "Ann Lee", "start": "2026-12-01T10:30"})
        );
        let result = &second["messages"][3];
        assert_eq!(result["tool_call_id"], "call_abc");
        let content: Value = serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
        assert_eq!(content["status"], "booked");
        assert_eq!(content["start"], "2026-12-01T10:30");
        assert_eq!(content["weekday"], "Tuesday");
    }

    #[tokio::test]
    async fn a_bad_booking_argument_goes_back_to_the_model() {
        let (url, server) = serve(vec![
            rechunked(
                &tool_call_events(
                    "c1",
                    BOOK_APPOINTMENT,
                    &["{\"name\":\"Bo\",\"start\":\"next week\"}"],
                ),
                64,
            ),
            text_stream(&["Which day next week?"]),
        ])
        .await;
        let (mut conversation, tools) = open(config(url), context());
        let (result, outputs) = turn(&mut conversation, say("Book me next week")).await;
        result.unwrap();
        assert_eq!(texts(&outputs), ["Which day next week?"]);
        assert!(tools.booked.lock().unwrap().is_empty());
        let tool_message = &server.requests()[1]["messages"][3];
        assert!(
            tool_message["content"]
                .as_str()
                .unwrap()
                .contains("next week")
        );
        assert!(tool_message["content"].as_str().unwrap().contains("error"));
    }

    #[tokio::test]
    async fn end_call_follows_the_goodbye() {
        let (url, _server) = serve(vec![
            rechunked(&tool_call_events("c1", END_CALL, &["{}"]), 1000),
            text_stream(&["Goodbye!"]),
        ])
        .await;
        let (mut conversation, _) = open(config(url), context());
        let (result, outputs) = turn(&mut conversation, say("That's all, thanks")).await;
        result.unwrap();
        assert_eq!(
            outputs,
            [TurnOutput::Text("Goodbye!".into()), TurnOutput::EndCall]
        );
    }

    #[tokio::test]
    async fn transfer_goes_to_the_configured_number_only() {
        let (url, server) = serve(vec![
            rechunked(
                &tool_call_events(
                    "c1",
                    TRANSFER_CALL,
                    &["{\"phone_number\":\"+19005550000\"}"],
                ),
                1000,
            ),
            text_stream(&["Putting you through."]),
        ])
        .await;
        let mut ctx = context();
        ctx.tools.transfer_to = Some("+61299990000".into());
        let (mut conversation, _) = open(config(url), ctx);
        let (result, outputs) = turn(&mut conversation, say("Can I speak to someone?")).await;
        result.unwrap();
        assert_eq!(
            outputs,
            [
                TurnOutput::Text("Putting you through.".into()),
                TurnOutput::Transfer("+61299990000".into())
            ]
        );
        let tools = server.requests()[0]["tools"].clone();
        assert_eq!(tools[2]["function"]["name"], TRANSFER_CALL);
        assert!(
            tools[2]["function"]["description"]
                .as_str()
                .unwrap()
                .contains("+61299990000")
        );
    }

    #[tokio::test]
    async fn a_server_error_is_retried() {
        let (url, server) = serve(vec![
            Reply::Status(500, r#"{"error":{"message":"overloaded"}}"#.into()),
            text_stream(&["Hello again."]),
        ])
        .await;
        let (mut conversation, _) = open(config(url), context());
        let (result, outputs) = turn(&mut conversation, say("Hello?")).await;
        result.unwrap();
        assert_eq!(texts(&outputs), ["Hello again."]);
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn a_client_error_fails_at_once_with_the_servers_message() {
        let (url, server) = serve(vec![
            Reply::Status(400, r#"{"error":{"message":"model `x` does not exist","type":"invalid_request_error"}}"#.into()),
            text_stream(&["never sent"]),
        ])
        .await;
        let (mut conversation, _) = open(config(url), context());
        let (result, outputs) = turn(&mut conversation, say("Hello?")).await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("400"), "{error}");
        assert!(error.contains("model `x` does not exist"), "{error}");
        assert_eq!(server.requests().len(), 1);
        assert_eq!(outputs, [TurnOutput::Text(APOLOGY.into())]);
    }

    #[tokio::test]
    async fn a_slow_first_token_times_out_and_is_retried() {
        let slow = || {
            Reply::Stream(vec![(
                Duration::from_secs(2),
                event(json!({"content": "late"})),
            )])
        };
        let (url, server) = serve(vec![slow(), slow(), slow(), text_stream(&["not asked"])]).await;
        let mut config = config(url);
        config.timeout = Duration::from_millis(300);
        let (mut conversation, _) = open(config, context());
        let (result, outputs) = turn(&mut conversation, say("Hello?")).await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("within"), "{error}");
        assert!(error.contains("3 attempts"), "{error}");
        assert_eq!(server.requests().len(), 3);
        assert_eq!(outputs, [TurnOutput::Text(APOLOGY.into())]);
    }

    #[tokio::test]
    async fn no_retry_once_something_was_said() {
        // The connection breaks mid-event: the words already spoken stand, nothing is asked
        // again and no apology follows them.
        let (url, server) = serve(vec![
            Reply::Broken(vec![
                (GAP, event(json!({"content": "We open"}))),
                (GAP, "data: {\"choi".into()),
            ]),
            text_stream(&["again"]),
        ])
        .await;
        let (mut conversation, _) = open(config(url), context());
        let (result, outputs) = turn(&mut conversation, say("Hours?")).await;
        let error = result.unwrap_err().to_string();
        assert!(error.contains("stream broke"), "{error}");
        assert_eq!(outputs, [TurnOutput::Text("We open".into())]);
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn a_stream_closed_without_done_still_counts() {
        let (url, _server) = serve(vec![Reply::Stream(vec![(
            GAP,
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi.\"}}]}".into(),
        )])])
        .await;
        let (mut conversation, _) = open(config(url), context());
        let (result, outputs) = turn(&mut conversation, say("Hello")).await;
        result.unwrap();
        assert_eq!(texts(&outputs), ["Hi."]);
    }

    #[tokio::test]
    async fn interrupted_replies_are_remembered_as_heard() {
        let (url, server) = serve(vec![
            text_stream(&["Sure, I can help", " with that. What day suits you?"]),
            Reply::Stream(vec![
                (GAP, event(json!({"content": "Thursday works."}))),
                (
                    Duration::from_secs(30),
                    event(json!({"content": " never heard"})),
                ),
            ]),
            text_stream(&["Okay."]),
            text_stream(&["Bye."]),
        ])
        .await;
        let (mut conversation, _) = open(config(url), context());
        conversation.greeting();
        turn(&mut conversation, say("I need an appointment"))
            .await
            .0
            .unwrap();
        conversation.interrupted("Sure, I can help");

        // Barge-in mid-stream: the turn's future is dropped after the first words.
        let (tx, mut rx) = mpsc::channel(8);
        {
            let respond = conversation.respond(say("Thursday?"), tx);
            tokio::select! {
                _ = respond => panic!("the reply should still be streaming"),
                first = rx.recv() => assert_eq!(first, Some(TurnOutput::Text("Thursday works.".into()))),
            }
        }
        conversation.interrupted("");

        turn(&mut conversation, say("Morning please"))
            .await
            .0
            .unwrap();
        let request = &server.requests()[2];
        assert_eq!(
            roles(request),
            ["system", "assistant", "user", "assistant", "user"]
        );
        assert_eq!(request["messages"][3]["content"], "Sure, I can help");
        // Nothing of the dropped reply was heard: the caller's two utterances read as one.
        assert_eq!(
            request["messages"][4]["content"],
            "Thursday?\nMorning please"
        );

        // An uninterrupted reply stays whole when the caller heard all of it.
        conversation.interrupted("Okay.");
        turn(&mut conversation, say("Thanks")).await.0.unwrap();
        let request = &server.requests()[3];
        assert_eq!(request["messages"][5]["content"], "Okay.");
    }

    #[tokio::test]
    async fn a_closed_output_ends_the_turn_quietly() {
        let (url, _server) = serve(vec![text_stream(&["One", " two", " three"])]).await;
        let (mut conversation, _) = open(config(url), context());
        let (tx, mut rx) = mpsc::channel(1);
        let listener = async move {
            let first = rx.recv().await;
            drop(rx);
            first
        };
        let (result, first) = tokio::join!(conversation.respond(say("Count"), tx), listener);
        result.unwrap();
        assert_eq!(first, Some(TurnOutput::Text("One".into())));
    }

    #[tokio::test]
    async fn summarizes_a_transcript() {
        let (url, server) = serve(vec![Reply::Json(json!({
            "choices": [{"index": 0, "message": {"role": "assistant",
                "content": "  Ann Lee booked a check-up for Tuesday at 10:30. Nothing is open.  "}}]
        }))])
        .await;
        let engine = LlmEngine::new(config(url)).unwrap();
        let summary = summarize(
            engine.client(),
            engine.config(),
            "Caller: book me in\nAgent: done",
        )
        .await
        .unwrap();
        assert_eq!(
            summary,
            "Ann Lee booked a check-up for Tuesday at 10:30. Nothing is open."
        );
        let request = &server.requests()[0];
        assert_eq!(request["stream"], false);
        assert!(
            request["messages"][1]["content"]
                .as_str()
                .unwrap()
                .contains("Agent: done")
        );
        assert_eq!(
            server.seen.lock().unwrap()[0].authorization.as_deref(),
            Some("Bearer sk-test")
        );
    }

    #[test]
    fn sse_parser_is_indifferent_to_chunking() {
        let stream = "data: {\"a\":\"é\"}\n\n: keep-alive\r\n\r\nevent: x\ndata: one\ndata: two\r\n\r\ndata: [DONE]\r\r";
        let expected = ["{\"a\":\"é\"}", "one\ntwo", "[DONE]"];
        let bytes = stream.as_bytes();
        for size in 1..=bytes.len() {
            let mut parser = SseParser::default();
            let mut events: Vec<String> = bytes.chunks(size).flat_map(|c| parser.push(c)).collect();
            events.extend(parser.finish());
            assert_eq!(events, expected, "chunks of {size}");
        }
    }

    #[test]
    fn start_times_parse_as_local() {
        let tz = chrono_tz::Australia::Sydney;
        let expected = NaiveDate::from_ymd_opt(2026, 12, 1)
            .unwrap()
            .and_hms_opt(10, 30, 0)
            .unwrap();
        for raw in [
            "2026-12-01T10:30",
            "2026-12-01T10:30:00",
            "2026-12-01 10:30",
            "2026-11-30T23:30:00Z",
        ] {
            assert_eq!(parse_local_start(raw, tz), Ok(expected), "{raw}");
        }
        assert!(parse_local_start("tomorrow", tz).is_err());
    }
}
