//! The embedded responder: the turn engine used when no language model is configured.
//! Deterministic (no randomness, no wall clock: dates are relative to the call's start), no
//! network, and rule-based so that what it does can be documented and tested.
//!
//! It reads speech-to-text output, so everything is matched on normalised words (`text.rs`):
//! case, punctuation, apostrophes and "p.m." versus "pm" do not matter, and numbers may be
//! digits or words.
//!
//! What it does with an utterance, in order:
//! 1. A reported problem (pain, an emergency, …) is acknowledged as the empathy slider says.
//! 2. Asking for a person ("speak to someone", "transfer me", "operator", keypad 0) transfers
//!    the call when `transfer_to` is set, and otherwise says it cannot.
//! 3. An answer to the question just asked (confirm the booking? what to change? anything
//!    else? shall I put you through?) is taken as such.
//! 4. Goodbye ("that's all", "bye", "no thanks", …) gets a closing line, then `EndCall` when the
//!    `end_call` tool is offered.
//! 5. A what/when/where/how question is answered from the facts when one matches
//!    ([`Knowledge`] first, then the system prompt's sentences: see `facts.rs`).
//! 6. Booking words, or a date or time, start or continue a booking (when `book_appointment` is
//!    offered): slots are filled from whatever the caller says (`datetime.rs`, `names.rs`), then
//!    the next missing one is asked for, one question at a time, in the order day, time, name
//!    (then a phone number, only when the carrier gave no caller number). Day and time come
//!    first because they decide whether the booking can go ahead. Once all are known the
//!    booking is read back ("Just to confirm: an appointment for Sarah Jones on Tuesday the 1st
//!    of December at 3 pm. Shall I book it?"); "yes" books it through the [`ToolRunner`], "no"
//!    asks what to change, and a new day, time or name in any answer replaces the old one
//!    ("no, make it Wednesday", "actually 4 pm"). A day or time already past is refused
//!    before the tool is called.
//! 7. Other questions and statements are answered from the facts when one matches; otherwise
//!    the caller hears what the responder can do.
//!
//! A question the caller talked over (see [`Conversation::interrupted`]) is no longer awaiting
//! an answer: the details gathered stay, and the question is asked again next turn, so a "yes"
//! cannot confirm a booking the caller did not hear read back.
//!
//! It reads speech-to-text output, so it expects recognition errors: names are taken after
//! several introductions and put right by spelling (`names.rs`); yes and no have many spoken
//! and misheard forms (`intents.rs`); a long word one letter off a fact's word counts as it
//! ("parting" for "parking"), and a question whose words match no fact is matched by meaning
//! through [`ToolRunner::embed`]: answered when close, asked about ("Sorry, did you ask about
//! parking?") when only near, and told "I don't have that information" otherwise.
//!
//! Limits: it speaks English only, whatever the agent's language; it does not change or
//! cancel existing bookings (it offers a transfer instead); it understands no vague times
//! ("next week", "in the afternoon" without an hour, "the first available"), nor a name after
//! "for" that the transcript did not capitalise; names that are also months, weekdays or common
//! words ("May", "Will") are missed; humour is not used.

mod datetime;
mod facts;
mod intents;
mod names;
mod style;
mod text;

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::turn::{
    BookingRequest, Conversation, ToolError, ToolRunner, TurnContext, TurnEngine, TurnError,
    TurnInput, TurnOutput,
};
use datetime::{Expect, speak_date, speak_time};
use facts::Facts;
use style::Style;
use text::Utterance;

/// The embedded turn engine. Questions are answered from the agent's knowledge documents first
/// (through [`ToolRunner::search_knowledge`]: the passages are re-scored against the question
/// sentence by sentence, so a search that always returns its nearest neighbours does not make
/// the responder read out something unrelated), then from the system prompt's facts.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedResponder;

impl EmbeddedResponder {
    pub fn new() -> Self {
        Self
    }
}

impl TurnEngine for EmbeddedResponder {
    fn open(&self, ctx: Arc<TurnContext>, tools: Arc<dyn ToolRunner>) -> Box<dyn Conversation> {
        Box::new(Session::new(ctx, tools))
    }
}

/// The question the responder is waiting for an answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Date,
    Time,
    Name,
    Phone,
    Confirm,
    Change,
    AnythingElse,
    Transfer,
    /// "Did you ask about private health insurance?": the question was heard too badly to
    /// answer outright.
    Clarify,
}

/// A question as asked, so that an interruption can tell whether the caller heard it.
#[derive(Debug, Clone)]
struct Asked {
    what: Ask,
    text: String,
}

/// The booking being made.
#[derive(Debug, Clone, Default)]
struct Draft {
    date: Option<NaiveDate>,
    time: Option<NaiveTime>,
    name: Option<String>,
    phone: Option<String>,
    /// Asked for a number and got none: book without one rather than ask forever.
    no_phone: bool,
}

/// What one utterance said towards a booking.
#[derive(Debug, Default)]
struct Slots {
    date: Option<NaiveDate>,
    time: Option<NaiveTime>,
    name: Option<String>,
    phone: Option<String>,
}

impl Slots {
    fn is_empty(&self) -> bool {
        self.date.is_none() && self.time.is_none() && self.name.is_none() && self.phone.is_none()
    }
}

/// A reply being composed: sentences, what happens to the line afterwards, and the question
/// it ends with.
#[derive(Debug, Default)]
struct Reply {
    lines: Vec<String>,
    action: Option<TurnOutput>,
    asked: Option<Asked>,
}

impl Reply {
    fn say(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }

    fn ask(&mut self, what: Ask, question: impl Into<String>) {
        let text = question.into();
        self.lines.push(text.clone());
        self.asked = Some(Asked { what, text });
    }
}

/// One call's conversation.
struct Session {
    ctx: Arc<TurnContext>,
    tools: Arc<dyn ToolRunner>,
    facts: Facts,
    business: String,
    style: Style,
    today: NaiveDate,
    now: NaiveDateTime,
    draft: Option<Draft>,
    /// A name the caller gave before any booking started ("Hi, this is Sarah").
    caller_name: Option<String>,
    asked: Option<Asked>,
    /// The fact a clarifying question offered, answered on "yes".
    offered: Option<String>,
    /// Embeddings of the prompt's facts, made at the first question words could not answer.
    prompt_meaning: Option<Vec<Vec<f32>>>,
}

/// What the facts say to a question.
enum Found {
    Answer(String),
    /// Close in meaning but not close enough to answer without asking: the fact, and what it is
    /// about in the caller's terms ("private health insurance").
    Maybe {
        fact: String,
        about: String,
    },
    Nothing,
}

impl Found {
    fn answer(self) -> Option<String> {
        match self {
            Found::Answer(answer) => Some(answer),
            _ => None,
        }
    }
}

/// A fact at least this close in meaning (cosine of MiniLM embeddings) answers a question its
/// words did not match; from this close down to [`CLARIFY_SIMILARITY`] the caller is asked
/// whether that is what they meant. Measured on misheard questions against unrelated ones
/// (`tests/responder/meaning.rs`): misheard 0.31–0.74, unrelated 0.17–0.21.
const ANSWER_SIMILARITY: f32 = 0.6;
const CLARIFY_SIMILARITY: f32 = 0.3;

impl Session {
    fn new(ctx: Arc<TurnContext>, tools: Arc<dyn ToolRunner>) -> Self {
        let facts = Facts::from_text(ctx.system_prompt.as_deref().unwrap_or_default());
        let business = facts
            .business()
            .map_or_else(|| ctx.agent_name.clone(), str::to_string);
        let now = datetime::local_now(ctx.started_at, ctx.timezone);
        Self {
            style: Style::new(&ctx.personality),
            facts,
            business,
            today: now.date(),
            now,
            tools,
            ctx,
            draft: None,
            caller_name: None,
            asked: None,
            offered: None,
            prompt_meaning: None,
        }
    }

    async fn on_utterance(&mut self, text: &str) -> Reply {
        let u = Utterance::new(text);
        let mut reply = Reply::default();
        if u.is_empty() {
            reply.asked = self.asked.clone();
            return reply;
        }
        let asked = self.asked.take().map(|a| a.what);
        if intents::reports_problem(&u)
            && let Some(line) = self.style.sympathy()
        {
            reply.say(line);
        }
        if intents::wants_transfer(&u) {
            self.transfer(&mut reply);
            return reply;
        }
        let slots = self.slots(&u, asked);
        match asked {
            Some(Ask::Confirm) => {
                if !slots.is_empty() {
                    self.apply(slots, &mut reply);
                    self.next_step(&mut reply);
                    return reply;
                }
                if intents::is_cancel(&u) {
                    self.drop_booking(&mut reply);
                    return reply;
                }
                if intents::is_yes(&u) && !intents::is_question(&u) {
                    self.book(&mut reply).await;
                    return reply;
                }
                if intents::is_no(&u) {
                    reply.ask(Ask::Change, self.style.register().ask_change);
                    return reply;
                }
            }
            Some(Ask::Change) => {
                if !slots.is_empty() {
                    self.apply(slots, &mut reply);
                    self.next_step(&mut reply);
                    return reply;
                }
                if intents::is_cancel(&u) {
                    self.drop_booking(&mut reply);
                    return reply;
                }
                if let Some(draft) = self.draft.as_mut() {
                    // "The time": forget it and ask again.
                    let mut cleared = false;
                    if u.has_any(&["day", "date"]) {
                        draft.date = None;
                        cleared = true;
                    }
                    if u.has("time") {
                        draft.time = None;
                        cleared = true;
                    }
                    if u.has("name") {
                        draft.name = None;
                        cleared = true;
                    }
                    if u.has_any(&["number", "phone"]) && draft.phone.is_some() {
                        draft.phone = None;
                        cleared = true;
                    }
                    let unchanged = intents::is_yes(&u)
                        || u.has_any(&["nothing", "its fine", "thats fine", "all good"]);
                    if cleared || unchanged {
                        self.next_step(&mut reply);
                        return reply;
                    }
                }
            }
            Some(Ask::AnythingElse) => {
                if intents::is_no(&u) || intents::is_goodbye(&u) || intents::is_thanks(&u) {
                    self.close(&mut reply);
                    return reply;
                }
                if intents::is_bare_yes(&u) {
                    reply.say(self.style.register().what_else);
                    return reply;
                }
            }
            Some(Ask::Transfer) => {
                if intents::is_yes(&u) && !intents::is_question(&u) {
                    self.transfer(&mut reply);
                    return reply;
                }
                if intents::is_no(&u) {
                    reply.say("No problem.");
                    self.after_answer(&mut reply);
                    return reply;
                }
            }
            Some(Ask::Clarify) => {
                let offered = self.offered.take();
                if intents::is_yes(&u)
                    && !intents::is_question(&u)
                    && let Some(fact) = offered
                {
                    reply.say(fact);
                    self.after_answer(&mut reply);
                    return reply;
                }
                if intents::is_no(&u) && slots.is_empty() && !intents::is_question(&u) {
                    reply.say("Sorry about that. What would you like to know?");
                    return reply;
                }
            }
            Some(Ask::Phone) if slots.is_empty() && !intents::is_question(&u) => {
                // No number in the answer: book without one rather than ask again.
                if let Some(draft) = self.draft.as_mut() {
                    draft.no_phone = true;
                }
            }
            _ => {}
        }
        self.general(&u, asked, slots, reply).await
    }

    /// Everything that does not answer the last question.
    async fn general(
        &mut self,
        u: &Utterance,
        asked: Option<Ask>,
        slots: Slots,
        mut reply: Reply,
    ) -> Reply {
        // "Bye, I'd like to book Thursday at ten" is a misheard "Hi": a goodbye says nothing else.
        if intents::is_goodbye(u) && slots.is_empty() && !intents::wants_booking(u) {
            self.close(&mut reply);
            return reply;
        }
        if self.draft.is_some() && intents::is_cancel(u) {
            self.drop_booking(&mut reply);
            return reply;
        }
        if self.draft.is_none() && intents::about_existing_booking(u) {
            reply.say(
                "I'm sorry, I can only make new bookings, not change or cancel existing ones.",
            );
            self.offer_transfer(&mut reply);
            return reply;
        }
        let question = intents::is_question(u);
        let wants_booking = intents::wants_booking(u);
        // "What are your hours on Tuesday?" is a question, not a booking; "Can I book for
        // Tuesday?" is a booking.
        let mut maybe = None;
        if question
            && (!wants_booking || intents::is_wh_question(u))
            && self.answered(u, &mut reply, &mut maybe).await
        {
            return reply;
        }
        let when_said = slots.date.is_some() || slots.time.is_some();
        // "What's the weather like tomorrow?" names a day without asking for a booking.
        let wh_only = intents::is_wh_question(u) && !wants_booking && !intents::asks_free(u);
        if self.draft.is_none()
            && (intents::is_wh_question(u) || !(wants_booking || when_said))
            && let Some((fact, about)) = maybe.take()
        {
            self.clarify(&mut reply, fact, &about);
            return reply;
        }
        let booking = self.ctx.tools.book_appointment;
        if booking && (self.draft.is_some() || wants_booking || (when_said && !wh_only)) {
            return self
                .booking_turn(u, asked, slots, wants_booking, reply)
                .await;
        }
        let introduced = slots.name.is_some();
        if introduced {
            self.caller_name = slots.name;
        }
        if wants_booking {
            reply.say("I'm sorry, I can't make bookings on this call.");
            self.offer_transfer(&mut reply);
            return reply;
        }
        if !question && self.answered(u, &mut reply, &mut maybe).await {
            return reply;
        }
        if intents::is_thanks(u) {
            reply.say(self.style.register().welcome);
            self.after_answer(&mut reply);
            return reply;
        }
        if intents::is_greeting(u) {
            reply.say("Hello!");
            reply.say(self.style.register().help);
            return reply;
        }
        if let Some(name) = self.caller_name.as_deref().filter(|_| introduced) {
            // "Hi, this is Sarah": kept for a booking later.
            let first_name = name.split_whitespace().next().unwrap_or(name);
            reply.say(format!("Thank you, {first_name}."));
            reply.say(self.style.register().help);
            return reply;
        }
        if intents::is_bare_yes(u) {
            reply.say(self.style.register().what_else);
            return reply;
        }
        if let Some((fact, about)) = maybe {
            self.clarify(&mut reply, fact, &about);
            return reply;
        }
        reply.say(if question {
            "I'm sorry, I don't have that information."
        } else {
            "I'm sorry, I'm not sure I can help with that."
        });
        reply.say(self.capabilities());
        reply
    }

    /// Fills the booking from `u` and asks the next question.
    async fn booking_turn(
        &mut self,
        u: &Utterance,
        asked: Option<Ask>,
        slots: Slots,
        wants_booking: bool,
        mut reply: Reply,
    ) -> Reply {
        let starting = self.draft.is_none();
        if starting {
            self.draft = Some(Draft {
                name: self.caller_name.clone(),
                ..Draft::default()
            });
        }
        let nothing = slots.is_empty();
        self.apply(slots, &mut reply);
        let phone_skipped = asked == Some(Ask::Phone) && nothing;
        if nothing && !starting && !wants_booking && !phone_skipped {
            // A question, or an answer to nothing: when no question was pending (the caller
            // talked over it), it is simply asked again.
            match self.answer(u).await.answer() {
                Some(answer) => reply.say(answer),
                None if asked.is_some() => reply.say(not_caught(asked)),
                None => {}
            }
        } else if starting
            && reply.lines.is_empty()
            && let Some(ack) = self.style.ack()
        {
            reply.say(ack);
        }
        self.next_step(&mut reply);
        reply
    }

    /// The booking details in `u`. A bare number counts as the day or the time when that is
    /// what was just asked, or as the time in a correction ("actually, make it 4").
    fn slots(&self, u: &Utterance, asked: Option<Ask>) -> Slots {
        let mut slots = Slots::default();
        if asked == Some(Ask::Phone)
            && let Some(phone) = names::phone_number(u)
        {
            slots.phone = Some(phone);
            return slots;
        }
        let correcting = self.draft.is_some() && intents::is_correction(u);
        let expect = Expect {
            day: asked == Some(Ask::Date),
            time: asked == Some(Ask::Time) || correcting,
        };
        let when = datetime::find(&u.words, self.today, expect);
        slots.date = when.date;
        slots.time = when.time;
        slots.name = names::introduced(u).or_else(|| {
            let only_name = asked == Some(Ask::Name) && when == datetime::When::default();
            only_name.then(|| names::answered(u)).flatten()
        });
        // A spelling corrects the name said with it, or the one being confirmed ("no, it's
        // B R O O K S"); on its own it is the name when that is what was asked.
        if let Some(spelling) = names::spelled(u) {
            let about_name = matches!(asked, Some(Ask::Name | Ask::Confirm | Ask::Change));
            if slots.name.is_some() || about_name {
                let heard = slots.name.as_deref().or_else(|| {
                    self.draft
                        .as_ref()
                        .and_then(|d| d.name.as_deref())
                        .or(self.caller_name.as_deref())
                });
                slots.name = Some(names::with_spelling(heard, &spelling));
            }
        }
        slots
    }

    /// Puts `slots` into the booking, refusing a day or time already past.
    fn apply(&mut self, slots: Slots, reply: &mut Reply) {
        let draft = self.draft.get_or_insert_with(Draft::default);
        if slots.date.is_some() {
            draft.date = slots.date;
        }
        if slots.time.is_some() {
            draft.time = slots.time;
        }
        if slots.name.is_some() {
            draft.name = slots.name;
        }
        if slots.phone.is_some() {
            draft.phone = slots.phone;
        }
        if let Some(date) = draft.date
            && date < self.today
        {
            reply.say(format!(
                "I'm sorry, {} has already passed.",
                speak_date(date, self.today)
            ));
            draft.date = None;
        } else if let (Some(date), Some(time)) = (draft.date, draft.time)
            && date.and_time(time) <= self.now
        {
            reply.say(format!(
                "I'm sorry, {} today has already passed.",
                speak_time(time)
            ));
            draft.time = None;
        }
    }

    /// Asks for the next missing detail, or reads the booking back for confirmation.
    fn next_step(&mut self, reply: &mut Reply) {
        let Some(draft) = &self.draft else {
            self.after_answer(reply);
            return;
        };
        let register = self.style.register();
        let need_phone =
            self.ctx.caller_number.is_none() && draft.phone.is_none() && !draft.no_phone;
        match (draft.date, draft.time, &draft.name) {
            (None, ..) => reply.ask(Ask::Date, register.ask_date),
            (Some(date), None, _) => reply.ask(
                Ask::Time,
                register
                    .ask_time
                    .replace("{date}", &speak_date(date, self.today)),
            ),
            (Some(_), Some(_), None) => reply.ask(Ask::Name, register.ask_name),
            _ if need_phone => reply.ask(Ask::Phone, register.ask_phone),
            (Some(date), Some(time), Some(name)) => {
                let phone = draft
                    .phone
                    .as_deref()
                    .map(|p| format!(", with the phone number {}", spell_digits(p)))
                    .unwrap_or_default();
                reply.ask(
                    Ask::Confirm,
                    format!(
                        "Just to confirm: an appointment for {name} on {} at {}{phone}. \
                         Shall I book it?",
                        speak_date(date, self.today),
                        speak_time(time)
                    ),
                );
            }
        }
    }

    /// Stores the confirmed booking.
    async fn book(&mut self, reply: &mut Reply) {
        // Taken out first: if the turn is cancelled while the tool runs, a later "yes" cannot
        // book the same appointment twice.
        let Some(mut draft) = self.draft.take() else {
            self.after_answer(reply);
            return;
        };
        let (Some(date), Some(time), Some(name)) = (draft.date, draft.time, draft.name.clone())
        else {
            self.draft = Some(draft);
            self.next_step(reply);
            return;
        };
        let start = date.and_time(time);
        if start <= self.now {
            reply.say(format!(
                "I'm sorry, {} has already passed.",
                speak_time(time)
            ));
            draft.time = None;
            self.draft = Some(draft);
            self.next_step(reply);
            return;
        }
        let request = BookingRequest {
            name,
            start,
            phone: draft.phone.clone(),
            notes: None,
        };
        let tools = Arc::clone(&self.tools);
        match tools.book_appointment(request).await {
            Ok(booking) => {
                if let Some(line) = self.style.booked() {
                    reply.say(line);
                }
                let first_name = booking
                    .name
                    .split_whitespace()
                    .next()
                    .unwrap_or(&booking.name);
                reply.say(format!(
                    "You're booked for {} at {}, {first_name}. See you then.",
                    speak_date(booking.start.date(), self.today),
                    speak_time(booking.start.time())
                ));
                self.after_answer(reply);
            }
            Err(ToolError::Rejected(reason)) => {
                reply.say(format!(
                    "I'm sorry, I couldn't book that: {}.",
                    reason.trim().trim_end_matches(['.', '!'])
                ));
                draft.time = None;
                self.draft = Some(draft);
                reply.ask(Ask::Time, self.style.register().ask_other_time);
            }
            Err(ToolError::Failed(error)) => {
                tracing::warn!(call = %self.ctx.call, %error, "embedded responder: booking failed");
                reply.say("I'm sorry, something went wrong and I couldn't make the booking.");
                self.offer_transfer(reply);
            }
        }
    }

    /// Answers from the knowledge documents, then from the system prompt: by their words, then
    /// (for a question heard with words wrong) by meaning.
    async fn answer(&mut self, u: &Utterance) -> Found {
        let passages = self.tools.search_knowledge(&u.text).await;
        let found = Facts::from_passages(&passages);
        if let Some(answer) = found.answer(u).or_else(|| self.facts.answer(u)) {
            return Found::Answer(answer);
        }
        self.by_meaning(u, &found).await
    }

    /// The fact closest in meaning to `u` among the passages `found` and the prompt's facts.
    async fn by_meaning(&mut self, u: &Utterance, found: &Facts) -> Found {
        let candidates: Vec<String> = found
            .sentences()
            .chain(self.facts.sentences())
            .map(str::to_string)
            .collect();
        if candidates.is_empty() || u.words.len() < 2 {
            return Found::Nothing;
        }
        if self.prompt_meaning.is_none() {
            let prompt: Vec<String> = self.facts.sentences().map(str::to_string).collect();
            let count = prompt.len();
            let vectors = self.tools.embed(prompt).await;
            if vectors.len() != count {
                return Found::Nothing;
            }
            self.prompt_meaning = Some(vectors);
        }
        // Embedded as heard, but with sound-alike words put right ("parting" → "parking").
        let heard = found.corrected(&self.facts.corrected(u));
        let mut texts = vec![heard.text.clone()];
        texts.extend(found.sentences().map(str::to_string));
        let count = texts.len();
        let mut vectors = self.tools.embed(texts).await;
        if vectors.len() != count {
            return Found::Nothing;
        }
        let question = vectors.remove(0);
        let best = vectors
            .iter()
            .chain(self.prompt_meaning.iter().flatten())
            .map(|v| crate::models::minilm::cosine(&question, v))
            .zip(candidates)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        tracing::debug!(question = %u.text, best = ?best, "closest fact by meaning");
        match best {
            Some((score, fact)) if score >= ANSWER_SIMILARITY => Found::Answer(fact),
            Some((score, fact)) if score >= CLARIFY_SIMILARITY => match facts::about(&fact, u) {
                Some(about) => Found::Maybe { fact, about },
                None => Found::Nothing,
            },
            _ => Found::Nothing,
        }
    }

    /// Answers `u` from the facts into `reply` when they do (true); a near match is kept in
    /// `maybe` (the fact, and what it is about) for a clarifying question later.
    async fn answered(
        &mut self,
        u: &Utterance,
        reply: &mut Reply,
        maybe: &mut Option<(String, String)>,
    ) -> bool {
        match self.answer(u).await {
            Found::Answer(answer) => {
                reply.say(answer);
                self.after_answer(reply);
                true
            }
            Found::Maybe { fact, about } => {
                *maybe = Some((fact, about));
                false
            }
            Found::Nothing => false,
        }
    }

    /// Heard too badly to be sure: asks whether `fact` is what the caller wanted, rather than
    /// guess or give up.
    fn clarify(&mut self, reply: &mut Reply, fact: String, about: &str) {
        reply.ask(Ask::Clarify, format!("Sorry, did you ask about {about}?"));
        self.offered = Some(fact);
    }

    /// After an answer: back to the booking if one is under way, else "anything else?".
    fn after_answer(&mut self, reply: &mut Reply) {
        if self.draft.is_some() {
            self.next_step(reply);
        } else {
            reply.ask(Ask::AnythingElse, self.style.register().anything_else);
        }
    }

    fn drop_booking(&mut self, reply: &mut Reply) {
        self.draft = None;
        reply.say("No problem, I won't book anything.");
        self.after_answer(reply);
    }

    fn close(&mut self, reply: &mut Reply) {
        self.draft = None;
        reply.say(
            self.style
                .register()
                .closing
                .replace("{name}", &self.business),
        );
        if self.ctx.tools.end_call {
            reply.action = Some(TurnOutput::EndCall);
        }
    }

    fn transfer(&mut self, reply: &mut Reply) {
        match &self.ctx.tools.transfer_to {
            Some(number) => {
                reply.say(self.style.register().transfer);
                reply.action = Some(TurnOutput::Transfer(number.clone()));
            }
            None => {
                reply.say("I'm sorry, I can't transfer calls.");
                if self.draft.is_some() {
                    self.next_step(reply);
                } else {
                    reply.say(self.capabilities());
                }
            }
        }
    }

    /// Offers a transfer when one is possible, else says what the responder can do.
    fn offer_transfer(&mut self, reply: &mut Reply) {
        if self.ctx.tools.transfer_to.is_some() {
            reply.ask(
                Ask::Transfer,
                "Would you like me to put you through to someone who can help?",
            );
        } else {
            reply.say(self.capabilities());
        }
    }

    /// "I can book an appointment for you or answer questions about Harbour Dental."
    fn capabilities(&self) -> String {
        let mut can = Vec::new();
        if self.ctx.tools.book_appointment {
            can.push("book an appointment for you".to_string());
        }
        can.push(format!("answer questions about {}", self.business));
        if self.ctx.tools.transfer_to.is_some() {
            can.push("put you through to someone".to_string());
        }
        let list = match can.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        };
        format!("I can {list}.")
    }

    fn on_digits(&mut self, digits: &str) -> Reply {
        let asked = self.asked.take();
        let mut reply = Reply::default();
        if digits == "0" && self.ctx.tools.transfer_to.is_some() {
            self.transfer(&mut reply);
            return reply;
        }
        let keys: Vec<String> = digits
            .chars()
            .map(|digit| match digit {
                '*' => "star".to_string(),
                '#' => "hash".to_string(),
                other => other.to_string(),
            })
            .collect();
        reply.say(format!("You pressed {}.", keys.join(" ")));
        // The keypad does not answer questions: ask the last one again.
        if let Some(asked) = asked {
            reply.say(asked.text.clone());
            reply.asked = Some(asked);
        }
        reply
    }
}

/// What a caller says when asked for a day. No numbers: favoured, " two" would win over the
/// start of "Tuesday" (seen: "Tuesday, 3 pm" heard as "Two's date, three pm").
const DAY_HINTS: &[&str] = &[
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "today",
    "tomorrow",
    "morning",
    "afternoon",
];
/// What a caller says when asked for a time.
const TIME_HINTS: &[&str] = &[
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "half",
    "past",
    "quarter",
    "thirty",
    "o'clock",
    "noon",
    "morning",
    "afternoon",
];
const YES_NO_HINTS: &[&str] = &["yes", "yeah", "no", "sure", "sounds", "good", "works"];
const DIGIT_HINTS: &[&str] = &[
    "zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "double",
];

/// "Sorry, I didn't catch the day." for an answer that did not answer.
fn not_caught(asked: Option<Ask>) -> &'static str {
    match asked {
        Some(Ask::Date) => "Sorry, I didn't catch the day.",
        Some(Ask::Time) => "Sorry, I didn't catch the time.",
        Some(Ask::Name) => "Sorry, I didn't catch your name.",
        Some(Ask::Phone) => "Sorry, I didn't catch the number.",
        _ => "Sorry, I didn't catch that.",
    }
}

/// "0412345678" → "0 4 1 2 3 4 5 6 7 8": read digit by digit, not as a large number.
fn spell_digits(number: &str) -> String {
    number
        .chars()
        .map(|c| {
            if c == '+' {
                "plus".to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Conversation for Session {
    fn greeting(&mut self) -> Option<String> {
        Some(self.style.greeting(
            &self.ctx.agent_name,
            self.ctx.tools.book_appointment,
            &self.business,
        ))
    }

    /// Composes the whole reply, then sends it a sentence at a time (each but the last with a
    /// trailing space, so that the speaker sees where it ends). A closed `out` (the caller hung
    /// up or barged in) ends the turn quietly.
    fn respond<'a>(
        &'a mut self,
        input: TurnInput,
        out: mpsc::Sender<TurnOutput>,
    ) -> BoxFuture<'a, Result<(), TurnError>> {
        Box::pin(async move {
            let reply = match input {
                TurnInput::Utterance(text) => self.on_utterance(&text).await,
                TurnInput::Dtmf(digits) => self.on_digits(&digits),
            };
            self.asked = reply.asked;
            let count = reply.lines.len();
            for (i, line) in reply.lines.into_iter().enumerate() {
                let piece = if i + 1 < count {
                    format!("{line} ")
                } else {
                    line
                };
                if out.send(TurnOutput::Text(piece)).await.is_err() {
                    return Ok(());
                }
            }
            if let Some(action) = reply.action {
                let _ = out.send(action).await;
            }
            Ok(())
        })
    }

    /// After "which day?", day words; after "what time?", clock words; after a read-back, yes
    /// and no; after "your number?", digits.
    fn hints(&self) -> Vec<&'static str> {
        match self.asked.as_ref().map(|a| a.what) {
            Some(Ask::Date) => DAY_HINTS.to_vec(),
            Some(Ask::Time) => TIME_HINTS.to_vec(),
            Some(Ask::Confirm | Ask::Transfer | Ask::Clarify | Ask::AnythingElse) => {
                YES_NO_HINTS.to_vec()
            }
            Some(Ask::Phone) => DIGIT_HINTS.to_vec(),
            _ => Vec::new(),
        }
    }

    /// A question the caller did not hear in full is not awaiting an answer: after "Just to
    /// confirm: … Shall I" was cut off, "yes" must not book. The booking details already
    /// gathered stay, and the next turn asks the question again.
    fn interrupted(&mut self, heard: &str) {
        if let Some(asked) = &self.asked
            && !text::contains_words(heard, &asked.text)
        {
            self.asked = None;
        }
    }
}

#[cfg(test)]
mod tests;
