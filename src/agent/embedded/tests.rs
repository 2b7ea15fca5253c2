//! Whole conversations through [`Conversation::respond`], as the call pipeline drives them.
//! The test context's call starts at 01:00 UTC on Monday 30 November 2026: noon that day in
//! Sydney, the tenant's zone.

use std::sync::Mutex;

use chrono::NaiveDateTime;

use super::*;
use crate::agent::Personality;
use crate::agent::turn::testing::{MemoryTools, context};
use crate::agent::turn::{Booking, KnowledgePassage, Tools};
use crate::domain::Language;

const HOURS_PROMPT: &str =
    "You are the receptionist for Harbour Dental. We are open Monday to Friday from 8 am to 5 pm.";

/// One call: its conversation and the bookings it made.
struct Call {
    conversation: Box<dyn Conversation>,
    tools: Arc<MemoryTools>,
}

/// What one turn produced: the spoken text, and any line action after it.
#[derive(Debug)]
struct Turn {
    text: String,
    actions: Vec<TurnOutput>,
}

impl Call {
    fn new(ctx: TurnContext) -> Self {
        Self::with(EmbeddedResponder::new(), ctx)
    }

    fn with(engine: EmbeddedResponder, ctx: TurnContext) -> Self {
        Self::with_tools(engine, ctx, MemoryTools::default())
    }

    fn with_tools(engine: EmbeddedResponder, ctx: TurnContext, tools: MemoryTools) -> Self {
        let tools = Arc::new(tools);
        let conversation = engine.open(Arc::new(ctx), tools.clone());
        Self {
            conversation,
            tools,
        }
    }

    async fn input(&mut self, input: TurnInput) -> Turn {
        let (tx, mut rx) = mpsc::channel(32);
        self.conversation.respond(input, tx).await.unwrap();
        let mut text = String::new();
        let mut actions = Vec::new();
        while let Some(output) = rx.recv().await {
            match output {
                TurnOutput::Text(piece) => {
                    assert!(actions.is_empty(), "text after a line action");
                    text.push_str(&piece);
                }
                action => actions.push(action),
            }
        }
        Turn { text, actions }
    }

    async fn say(&mut self, words: &str) -> String {
        let turn = self.input(TurnInput::Utterance(words.into())).await;
        assert!(turn.actions.is_empty(), "{words:?} → {turn:?}");
        turn.text
    }

    fn booked(&self) -> Vec<BookingRequest> {
        self.tools.booked.lock().unwrap().clone()
    }
}

fn at(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
}

fn booking(name: &str, start: &str) -> BookingRequest {
    BookingRequest {
        name: name.into(),
        start: at(start),
        phone: None,
        notes: None,
    }
}

fn with_prompt(prompt: &str) -> TurnContext {
    TurnContext {
        system_prompt: Some(prompt.into()),
        ..context()
    }
}

#[test]
fn greeting_offers_what_it_can_do() {
    let mut conversation =
        EmbeddedResponder::new().open(Arc::new(context()), Arc::new(MemoryTools::default()));
    assert_eq!(
        conversation.greeting().as_deref(),
        Some(
            "Hello, you've reached Reception. I can book an appointment for you or answer any \
             questions you have. How can I help you today?"
        )
    );
}

#[test]
fn personality_changes_the_greeting() {
    let greet = |personality: Personality, tools: Tools| {
        let ctx = TurnContext {
            personality,
            tools,
            ..context()
        };
        EmbeddedResponder::new()
            .open(Arc::new(ctx), Arc::new(MemoryTools::default()))
            .greeting()
            .unwrap()
    };
    let tools = context().tools;
    let base = Personality::default();
    let formal = greet(
        Personality {
            formality: 90,
            ..base
        },
        tools.clone(),
    );
    assert_eq!(
        formal,
        "Good day, thank you for calling Reception. I can book an appointment for you or answer \
         any questions you have. How may I help you today?"
    );
    let casual_lively = greet(
        Personality {
            formality: 10,
            energy: 90,
            ..base
        },
        tools.clone(),
    );
    assert_eq!(
        casual_lively,
        "Hi, you've reached Reception. Great to hear from you! I can book an appointment for you \
         or answer any questions you have. What can I do for you?"
    );
    let direct = greet(
        Personality {
            directness: 95,
            ..base
        },
        tools.clone(),
    );
    assert_eq!(
        direct,
        "Hello, you've reached Reception. I can book appointments and answer questions. How can I \
         help?"
    );
    assert!(direct.len() < greet(base, tools).len());
    let no_booking = greet(base, Tools::default());
    assert_eq!(
        no_booking,
        "Hello, you've reached Reception. I can answer any questions you have about Harbour \
         Dental. How can I help you today?"
    );
}

#[tokio::test]
async fn all_slots_in_one_utterance() {
    let mut call = Call::new(context());
    assert_eq!(
        call.say("I'd like to book an appointment for Tuesday at three pm, my name is Sarah Jones")
            .await,
        "Sure. Just to confirm: an appointment for Sarah Jones on Tuesday the 1st of December at \
         3 pm. Shall I book it?"
    );
    assert!(
        call.booked().is_empty(),
        "nothing is booked before the caller agrees"
    );
    assert_eq!(
        call.say("Yes please.").await,
        "You're booked for Tuesday the 1st of December at 3 pm, Sarah. See you then. Is there \
         anything else I can help you with?"
    );
    assert_eq!(call.booked(), [booking("Sarah Jones", "2026-12-01 15:00")]);
    let bye = call
        .input(TurnInput::Utterance("No, that's all.".into()))
        .await;
    assert_eq!(bye.text, "Thank you for calling. Goodbye!");
    assert_eq!(bye.actions, [TurnOutput::EndCall]);
}

#[tokio::test]
async fn one_slot_per_turn() {
    let mut call = Call::new(context());
    assert_eq!(
        call.say("Hi, I'd like to make a booking.").await,
        "Sure. Which day would you like?"
    );
    assert_eq!(
        call.say("Tomorrow.").await,
        "What time would suit you on Tuesday the 1st of December?"
    );
    assert_eq!(
        call.say("Half past ten.").await,
        "May I have your name, please?"
    );
    assert_eq!(
        call.say("It's Sarah Jones.").await,
        "Just to confirm: an appointment for Sarah Jones on Tuesday the 1st of December at 10:30 \
         am. Shall I book it?"
    );
    assert!(call.say("Yep.").await.starts_with("You're booked"));
    assert_eq!(call.booked(), [booking("Sarah Jones", "2026-12-01 10:30")]);
}

#[tokio::test]
async fn bare_numbers_answer_the_question_just_asked() {
    let mut call = Call::new(context());
    call.say("can I make an appointment").await;
    assert_eq!(
        call.say("the 14").await,
        "What time would suit you on Monday the 14th of December?"
    );
    assert_eq!(call.say("um three").await, "May I have your name, please?");
    call.say("sarah").await;
    call.say("yes").await;
    assert_eq!(call.booked(), [booking("Sarah", "2026-12-14 15:00")]);
}

#[tokio::test]
async fn corrections_before_confirming() {
    let mut call = Call::new(context());
    call.say("Book me in for Tuesday at 3pm please, this is for sarah jones")
        .await;
    // "this is for …" is not an introduction, and "for" leads to a name only when the
    // transcript capitalised it, so the name is still missing.
    assert_eq!(
        call.say("Actually, make it Thursday.").await,
        "May I have your name, please?"
    );
    assert_eq!(
        call.say("Sarah Jones").await,
        "Just to confirm: an appointment for Sarah Jones on Thursday the 3rd of December at 3 \
         pm. Shall I book it?"
    );
    assert_eq!(
        call.say("No, make it Wednesday.").await,
        "Just to confirm: an appointment for Sarah Jones on Wednesday the 2nd of December at 3 \
         pm. Shall I book it?"
    );
    assert_eq!(
        call.say("actually 4 pm").await,
        "Just to confirm: an appointment for Sarah Jones on Wednesday the 2nd of December at 4 \
         pm. Shall I book it?"
    );
    assert_eq!(
        call.say("no").await,
        "No problem. What would you like to change: the day, the time or the name?"
    );
    assert_eq!(
        call.say("the time").await,
        "What time would suit you on Wednesday the 2nd of December?"
    );
    assert_eq!(
        call.say("five").await,
        "Just to confirm: an appointment for Sarah Jones on Wednesday the 2nd of December at 5 \
         pm. Shall I book it?"
    );
    assert_eq!(
        call.say("no, my name is Sara Jones").await,
        "Just to confirm: an appointment for Sara Jones on Wednesday the 2nd of December at 5 \
         pm. Shall I book it?"
    );
    call.say("correct").await;
    assert_eq!(call.booked(), [booking("Sara Jones", "2026-12-02 17:00")]);
}

#[tokio::test]
async fn declining_books_nothing() {
    let mut call = Call::new(context());
    call.say("I'd like an appointment tomorrow at 9, my name is Tom Lee")
        .await;
    assert_eq!(
        call.say("No, don't book it.").await,
        "No problem, I won't book anything. Is there anything else I can help you with?"
    );
    assert!(call.booked().is_empty());
    let bye = call.input(TurnInput::Utterance("no".into())).await;
    assert_eq!(bye.text, "Thank you for calling. Goodbye!");
    assert_eq!(bye.actions, [TurnOutput::EndCall]);
    assert!(call.booked().is_empty());

    // Cancelling half-way.
    let mut call = Call::new(context());
    call.say("I want to book for Friday").await;
    assert_eq!(
        call.say("actually never mind").await,
        "No problem, I won't book anything. Is there anything else I can help you with?"
    );
    assert!(call.booked().is_empty());
}

#[tokio::test]
async fn a_time_already_past_is_refused_before_the_tool() {
    let mut call = Call::new(context());
    // It is noon in Sydney.
    assert_eq!(
        call.say("Can I book for today at 10 am? My name is Sarah.")
            .await,
        "I'm sorry, 10 am today has already passed. What time would suit you on Monday the 30th \
         of November?"
    );
    assert_eq!(
        call.say("4 pm then").await,
        "Just to confirm: an appointment for Sarah on Monday the 30th of November at 4 pm. Shall \
         I book it?"
    );
    call.say("yes").await;
    assert_eq!(call.booked(), [booking("Sarah", "2026-11-30 16:00")]);

    let mut call = Call::new(context());
    assert_eq!(
        call.say("book me on 2026-11-02 at 3pm").await,
        "I'm sorry, Monday the 2nd of November has already passed. Which day would you like?"
    );
    assert!(call.booked().is_empty());
}

/// Refuses every booking, or fails to store it.
struct RefusingTools {
    error: fn() -> ToolError,
    tried: Mutex<usize>,
}

impl ToolRunner for RefusingTools {
    fn book_appointment(
        &self,
        _request: BookingRequest,
    ) -> BoxFuture<'_, Result<Booking, ToolError>> {
        Box::pin(async move {
            *self.tried.lock().unwrap() += 1;
            Err((self.error)())
        })
    }

    fn search_knowledge(&self, _query: &str) -> BoxFuture<'_, Vec<KnowledgePassage>> {
        Box::pin(async { Vec::new() })
    }
}

#[tokio::test]
async fn tool_errors_are_explained() {
    let rejected = Arc::new(RefusingTools {
        error: || ToolError::Rejected("That time is already taken.".into()),
        tried: Mutex::new(0),
    });
    let mut conversation = EmbeddedResponder::new().open(Arc::new(context()), rejected.clone());
    let mut say = async |words: &str| {
        let (tx, mut rx) = mpsc::channel(32);
        conversation
            .respond(TurnInput::Utterance(words.into()), tx)
            .await
            .unwrap();
        let mut text = String::new();
        while let Some(TurnOutput::Text(piece)) = rx.recv().await {
            text.push_str(&piece);
        }
        text
    };
    say("book Tuesday at 3 pm for Sarah Jones, my name is Sarah Jones").await;
    assert_eq!(
        say("yes").await,
        "I'm sorry, I couldn't book that: That time is already taken. What other time would suit \
         you?"
    );
    assert_eq!(
        say("4 pm").await,
        "Just to confirm: an appointment for Sarah Jones on Tuesday the 1st of December at 4 pm. \
         Shall I book it?"
    );
    assert_eq!(*rejected.tried.lock().unwrap(), 1);

    let failing = Arc::new(RefusingTools {
        error: || ToolError::Failed("disk full".into()),
        tried: Mutex::new(0),
    });
    let mut conversation = EmbeddedResponder::new().open(Arc::new(context()), failing);
    let mut say = async |words: &str| {
        let (tx, mut rx) = mpsc::channel(32);
        conversation
            .respond(TurnInput::Utterance(words.into()), tx)
            .await
            .unwrap();
        let mut text = String::new();
        while let Some(TurnOutput::Text(piece)) = rx.recv().await {
            text.push_str(&piece);
        }
        text
    };
    say("book Tuesday at 3 pm, my name is Sarah Jones").await;
    let reply = say("yes").await;
    assert!(
        reply.starts_with("I'm sorry, something went wrong and I couldn't make the booking."),
        "{reply}"
    );
    assert!(!reply.contains("disk"), "storage errors are not read out");
}

#[tokio::test]
async fn transcripts_without_punctuation_and_with_number_words() {
    let mut call = Call::new(context());
    assert_eq!(
        call.say(
            "yeah hi im calling to book an appointment for the day after tomorrow at half past \
             two my names sarah jones"
        )
        .await,
        "Sure. Just to confirm: an appointment for Sarah Jones on Wednesday the 2nd of December \
         at 2:30 pm. Shall I book it?"
    );
    call.say("yeah thats right").await;
    assert_eq!(call.booked(), [booking("Sarah Jones", "2026-12-02 14:30")]);

    let mut call = Call::new(context());
    call.say("hi this is tom brown i need to see the dentist on the fourteenth")
        .await;
    assert_eq!(
        call.say("ten thirty in the morning").await,
        "Just to confirm: an appointment for Tom Brown on Monday the 14th of December at 10:30 \
         am. Shall I book it?"
    );
    call.say("YES").await;
    assert_eq!(call.booked(), [booking("Tom Brown", "2026-12-14 10:30")]);
}

#[tokio::test]
async fn a_question_in_the_middle_of_a_booking() {
    let mut call = Call::new(with_prompt(HOURS_PROMPT));
    call.say("I'd like to book for Friday").await;
    assert_eq!(
        call.say("What are your opening hours?").await,
        "We are open Monday to Friday from 8 am to 5 pm. What time would suit you on Friday the \
         4th of December?"
    );
    assert_eq!(
        call.say("umm").await,
        "Sorry, I didn't catch the time. What time would suit you on Friday the 4th of December?"
    );
}

#[tokio::test]
async fn goodbye_ends_the_call_after_the_closing_line() {
    let mut call = Call::new(context());
    let turn = call.input(TurnInput::Utterance("ok bye".into())).await;
    assert_eq!(turn.text, "Thank you for calling. Goodbye!");
    assert_eq!(turn.actions, [TurnOutput::EndCall]);

    // Without the end_call tool the line is said and the call stays up.
    let mut ctx = context();
    ctx.tools.end_call = false;
    let mut call = Call::new(ctx);
    assert_eq!(
        call.say("That is all, thank you").await,
        "Thank you for calling. Goodbye!"
    );

    let mut call = Call::new(with_prompt(HOURS_PROMPT));
    let turn = call
        .input(TurnInput::Utterance("nothing else".into()))
        .await;
    assert_eq!(turn.actions, [TurnOutput::EndCall]);
}

#[tokio::test]
async fn formal_closing_names_the_business() {
    let mut ctx = with_prompt(HOURS_PROMPT);
    ctx.personality.formality = 100;
    let mut call = Call::new(ctx);
    let turn = call.input(TurnInput::Utterance("Goodbye.".into())).await;
    assert_eq!(turn.text, "Thank you for calling Harbour Dental. Goodbye.");
}

#[tokio::test]
async fn transfer_when_offered() {
    let mut ctx = context();
    ctx.tools.transfer_to = Some("+61255509999".into());
    let mut call = Call::new(ctx);
    let turn = call
        .input(TurnInput::Utterance(
            "Can I speak to a real person please".into(),
        ))
        .await;
    assert_eq!(turn.text, "Of course, I'll put you through now.");
    assert_eq!(turn.actions, [TurnOutput::Transfer("+61255509999".into())]);

    let turn = call.input(TurnInput::Dtmf("0".into())).await;
    assert_eq!(turn.actions, [TurnOutput::Transfer("+61255509999".into())]);
}

#[tokio::test]
async fn transfer_when_not_offered() {
    let mut call = Call::new(with_prompt(HOURS_PROMPT));
    assert_eq!(
        call.say("transfer me to the operator").await,
        "I'm sorry, I can't transfer calls. I can book an appointment for you or answer questions \
         about Harbour Dental."
    );
    assert_eq!(call.say_dtmf('0').await, "You pressed 0.");
}

impl Call {
    async fn say_dtmf(&mut self, digit: char) -> String {
        let turn = self.input(TurnInput::Dtmf(digit.to_string())).await;
        assert!(turn.actions.is_empty());
        turn.text
    }
}

#[tokio::test]
async fn keypad_digits_are_acknowledged_and_the_question_repeated() {
    let mut call = Call::new(context());
    call.say("I'd like to book").await;
    assert_eq!(
        call.say_dtmf('5').await,
        "You pressed 5. Which day would you like?"
    );
    assert_eq!(
        call.say_dtmf('#').await,
        "You pressed hash. Which day would you like?"
    );
    // Digits gathered into one entry are acknowledged together.
    let turn = call.input(TurnInput::Dtmf("1234".into())).await;
    assert_eq!(turn.text, "You pressed 1 2 3 4. Which day would you like?");
    // The question is still pending.
    assert_eq!(
        call.say("14").await,
        "What time would suit you on Monday the 14th of December?"
    );
}

#[tokio::test]
async fn questions_are_answered_from_the_prompt() {
    let mut call = Call::new(with_prompt(HOURS_PROMPT));
    assert_eq!(
        call.say("What are your opening hours?").await,
        "We are open Monday to Friday from 8 am to 5 pm. Is there anything else I can help you \
         with?"
    );
    assert_eq!(
        call.say("when do you close").await,
        "We are open Monday to Friday from 8 am to 5 pm. Is there anything else I can help you \
         with?"
    );
    // The role sentence is not a fact.
    assert_eq!(
        call.say("What is the receptionist's name?").await,
        "I'm sorry, I don't have that information. I can book an appointment for you or answer \
         questions about Harbour Dental."
    );
}

#[tokio::test]
async fn unrelated_utterances_hear_what_it_can_do() {
    let mut call = Call::new(with_prompt(HOURS_PROMPT));
    assert_eq!(
        call.say("I like turtles").await,
        "I'm sorry, I'm not sure I can help with that. I can book an appointment for you or \
         answer questions about Harbour Dental."
    );
    let mut ctx = with_prompt(HOURS_PROMPT);
    ctx.tools = Tools {
        book_appointment: false,
        end_call: true,
        transfer_to: Some("+61255509999".into()),
    };
    let mut call = Call::new(ctx);
    assert_eq!(
        call.say("purple monkey dishwasher").await,
        "I'm sorry, I'm not sure I can help with that. I can answer questions about Harbour \
         Dental or put you through to someone."
    );
    // Without the booking tool a booking is refused, and a transfer offered.
    assert_eq!(
        call.say("I'd like to book an appointment").await,
        "I'm sorry, I can't make bookings on this call. Would you like me to put you through to \
         someone who can help?"
    );
    let turn = call.input(TurnInput::Utterance("yes please".into())).await;
    assert_eq!(turn.actions, [TurnOutput::Transfer("+61255509999".into())]);
}

#[tokio::test]
async fn empathy_reassures_a_caller_in_trouble() {
    let said = "I've got a terrible toothache, can I see the dentist tomorrow?";
    let mut ctx = context();
    ctx.personality.empathy = 90;
    let mut call = Call::new(ctx);
    assert_eq!(
        call.say(said).await,
        "I'm so sorry to hear that. Don't worry, we'll do our best to help you. What time would \
         suit you on Tuesday the 1st of December?"
    );
    let mut ctx = context();
    ctx.personality.empathy = 10;
    let mut call = Call::new(ctx);
    assert_eq!(
        call.say(said).await,
        "Sure. What time would suit you on Tuesday the 1st of December?"
    );
}

#[tokio::test]
async fn a_confirmation_cut_short_is_asked_again() {
    let mut call = Call::new(context());
    call.say("book Tuesday at 3 pm, my name is Sarah Jones")
        .await;
    // The caller talked over the question itself.
    call.conversation
        .interrupted("Sure. Just to confirm: an appointment for Sarah Jones on Tuesday");
    assert_eq!(
        call.say("yes").await,
        "Just to confirm: an appointment for Sarah Jones on Tuesday the 1st of December at 3 pm. \
         Shall I book it?"
    );
    assert!(call.booked().is_empty());
    // Heard in full (as the speaker splits it into clauses), a "yes" books.
    call.conversation.interrupted(
        "Just to confirm: an appointment for Sarah Jones on Tuesday the 1st of December at 3 pm. \
         Shall I book it?",
    );
    call.say("yes").await;
    assert_eq!(call.booked().len(), 1);
}

#[tokio::test]
async fn the_phone_number_is_asked_only_without_a_caller_number() {
    let mut ctx = context();
    ctx.caller_number = None;
    let mut call = Call::new(ctx);
    assert_eq!(
        call.say("book tuesday at 3pm, I'm Sarah Jones").await,
        "Sure. What's the best phone number to reach you on?"
    );
    assert_eq!(
        call.say("oh four one two, three four five, six seven eight")
            .await,
        "Just to confirm: an appointment for Sarah Jones on Tuesday the 1st of December at 3 pm, \
         with the phone number 0 4 1 2 3 4 5 6 7 8. Shall I book it?"
    );
    call.say("yes").await;
    assert_eq!(
        call.booked(),
        [BookingRequest {
            phone: Some("0412345678".into()),
            ..booking("Sarah Jones", "2026-12-01 15:00")
        }]
    );

    // No number given: the booking goes ahead without one.
    let mut ctx = context();
    ctx.caller_number = None;
    let mut call = Call::new(ctx);
    call.say("book tuesday at 3pm, I'm Sarah Jones").await;
    assert!(
        call.say("I'd rather not say")
            .await
            .starts_with("Just to confirm: an appointment for Sarah Jones")
    );
}

fn passage(heading: Option<&str>, text: &str) -> KnowledgePassage {
    KnowledgePassage {
        source: "faq.docx".into(),
        page: Some(1),
        heading: heading.map(str::to_owned),
        text: text.into(),
        score: 0.5,
    }
}

/// Knowledge whose search returns the same nearest neighbours for every question.
fn parking_and_more() -> MemoryTools {
    MemoryTools {
        knowledge: vec![
            passage(
                Some("FAQ > Parking"),
                "Where can I park? Free parking is available behind the clinic on Bay Road.",
            ),
            passage(
                Some("FAQ > About us"),
                "Our dentists are members of the Australian Dental Association.",
            ),
        ],
        ..MemoryTools::default()
    }
}

#[tokio::test]
async fn knowledge_is_consulted_before_the_prompt() {
    let mut call = Call::with_tools(
        EmbeddedResponder::new(),
        with_prompt(HOURS_PROMPT),
        parking_and_more(),
    );
    assert_eq!(
        call.say("Where can I park?").await,
        "Free parking is available behind the clinic on Bay Road. Is there anything else I can \
         help you with?"
    );
    // An unrelated passage is not read out; the prompt still answers.
    assert_eq!(
        call.say("what are your hours").await,
        "We are open Monday to Friday from 8 am to 5 pm. Is there anything else I can help you \
         with?"
    );
}

#[tokio::test]
async fn other_languages_are_answered_in_english() {
    let mut ctx = context();
    ctx.language = Language::parse("es-MX").unwrap();
    let mut conversation =
        EmbeddedResponder::new().open(Arc::new(ctx), Arc::new(MemoryTools::default()));
    assert!(
        conversation
            .greeting()
            .unwrap()
            .starts_with("Hello, you've reached Reception.")
    );
}

#[tokio::test]
async fn a_closed_channel_ends_the_turn_quietly() {
    let mut conversation =
        EmbeddedResponder::new().open(Arc::new(context()), Arc::new(MemoryTools::default()));
    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let result = conversation
        .respond(TurnInput::Utterance("I'd like to book".into()), tx)
        .await;
    assert!(result.is_ok());
}

#[tokio::test]
async fn replies_arrive_as_whole_sentences() {
    let mut conversation =
        EmbeddedResponder::new().open(Arc::new(context()), Arc::new(MemoryTools::default()));
    let (tx, mut rx) = mpsc::channel(32);
    conversation
        .respond(TurnInput::Utterance("I'd like to book".into()), tx)
        .await
        .unwrap();
    let mut pieces = Vec::new();
    while let Some(TurnOutput::Text(piece)) = rx.recv().await {
        pieces.push(piece);
    }
    assert_eq!(pieces, ["Sure. ", "Which day would you like?"]);
}

#[tokio::test]
async fn an_introduction_is_kept_for_the_booking() {
    let mut call = Call::new(context());
    assert_eq!(
        call.say("Hi, I'm Sarah Jones").await,
        "Thank you, Sarah. How can I help you today?"
    );
    assert_eq!(
        call.say("could I come in at 3 tomorrow").await,
        "Sure. Just to confirm: an appointment for Sarah Jones on Tuesday the 1st of December at \
         3 pm. Shall I book it?"
    );
}

#[tokio::test]
async fn menu_prices_and_faq_answers_come_from_the_best_passage() {
    let tools = MemoryTools {
        knowledge: vec![
            passage(
                Some("Harbour Trattoria Menu > Pizza"),
                "Margherita pizza with tomato, fior di latte and basil $18.50\n\
                 Prosciutto pizza with rocket and parmesan $24.00",
            ),
            passage(
                Some("FAQ > Cancellations"),
                "Can I cancel my appointment? Please give us 24 hours notice to cancel.",
            ),
        ],
        ..MemoryTools::default()
    };
    let mut call = Call::with_tools(EmbeddedResponder::new(), with_prompt(HOURS_PROMPT), tools);
    let anything_else = " Is there anything else I can help you with?";
    assert_eq!(
        call.say("How much is the margherita pizza?").await,
        format!("Margherita pizza with tomato, fior di latte and basil is $18.50.{anything_else}")
    );
    assert_eq!(
        call.say("how much does the prosciutto pizza cost").await,
        format!("Prosciutto pizza with rocket and parmesan is $24.00.{anything_else}")
    );
    // A sentence addressed to customers is a fact in a document; the FAQ's question is not.
    assert_eq!(
        call.say("How much notice do I need to give to cancel?")
            .await,
        format!("Please give us 24 hours notice to cancel.{anything_else}")
    );
}

/// Booking conversations as speech to text hears them: names after "under", "it's", "this
/// is" and "for", misheard names corrected by spelling, and yes in its casual forms (several
/// of these transcripts are Moonshine's, of synthetic voices the engine was not tuned on).
#[tokio::test]
async fn bookings_survive_misheard_names_and_casual_answers() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[
                "I'd like to book for Thursday at 10 in the morning.",
                "It's under Sarah Connor.",
                "Yeah, that works.",
            ],
            "Sarah Connor",
            "2026-12-03 10:00",
        ),
        (
            &[
                "Can I come in next Tuesday?",
                "Half past two in the afternoon.",
                "The booking is under Purdue Raymond.",
                "Now that works for me.",
            ],
            "Purdue Raymond",
            "2026-12-01 14:30",
        ),
        (
            &[
                "Could I get a booking on Friday at 4 pm?",
                "My name is Sarah LaConnor.",
                "No, it's C-O-N-N-O-R.",
                "Sounds good.",
            ],
            "Sarah Connor",
            "2026-12-04 16:00",
        ),
        (
            &[
                "Could I get a booking on Friday at 4 pm?",
                "This is Daniel Brooke, that's B R O O K S.",
                "Sure.",
            ],
            "Daniel Brooks",
            "2026-12-04 16:00",
        ),
        (
            &[
                "Hi, I need an appointment Thursday at ten in the morning.",
                "Sure, it's Daniel Brooks.",
                "Yep, go ahead.",
            ],
            "Daniel Brooks",
            "2026-12-03 10:00",
        ),
        (
            &[
                "Can I book an appointment for James Miller on Friday at 4 pm?",
                "That'd be great.",
            ],
            "James Miller",
            "2026-12-04 16:00",
        ),
        (
            &[
                "I'd like to book for Thursday at 10 in the morning.",
                "My name is James Miller.",
                "Not really.",
                "The name.",
                "James Millar.",
                "Mm hmm.",
            ],
            "James Millar",
            "2026-12-03 10:00",
        ),
        (
            &[
                "Can I come in next Tuesday?",
                "Half past two in the afternoon.",
                "Sir Econer.",
                "No, the name is Sarah Connor, C O N N O R.",
                "Yes please.",
            ],
            "Sarah Connor",
            "2026-12-01 14:30",
        ),
        (
            &[
                "Bye, I'd like to put Thursday at ten in the morning.",
                "This is Daniel Brooks, be a rover, O K. S..",
                "Know, it's Daniel Brooks.",
                "Sound is good.",
            ],
            "Daniel Brooks",
            "2026-12-03 10:00",
        ),
        (
            &[
                "Can I come in on Tuesday?",
                "Have passed to in the afternoon.",
                "It's under Sarah Mcconnor.",
                "Know it's Sarah Connor.",
                "Yeah.",
            ],
            "Sarah Connor",
            "2026-12-01 14:30",
        ),
    ];
    for (turns, name, start) in cases {
        let mut call = Call::new(context());
        let mut heard = Vec::new();
        for said in *turns {
            heard.push(format!("{said} → {}", call.say(said).await));
        }
        assert_eq!(call.booked(), [booking(name, start)], "{heard:#?}");
    }
}

/// A wh-question that names a day is a question unless it asks what is free.
#[tokio::test]
async fn a_question_naming_a_day_is_not_a_booking_unless_it_asks_what_is_free() {
    let mut call = Call::new(with_prompt(HOURS_PROMPT));
    assert_eq!(
        call.say("What's the weather going to be like tomorrow?")
            .await,
        "I'm sorry, I don't have that information. I can book an appointment for you or answer \
         questions about Harbour Dental."
    );
    let mut call = Call::new(with_prompt(HOURS_PROMPT));
    assert_eq!(
        call.say("What times are free tomorrow?").await,
        "Sure. What time would suit you on Tuesday the 1st of December?"
    );
}
