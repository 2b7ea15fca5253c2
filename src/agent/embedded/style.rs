//! How the responder words things, by personality. Each 0–100 slider falls into one of three
//! bands (the README's five folded: 0–40 low, 41–60 middle, 61–100 high):
//!
//! - formality picks the [`Register`]: casual ("Hi, you've reached …"), neutral ("Hello,
//!   you've reached …") or formal ("Good day, thank you for calling …");
//! - energy, when high, adds "Great to hear from you!" to the greeting and "Wonderful!" to a
//!   confirmed booking;
//! - directness, when high, shortens the greeting's offer and drops acknowledgements ("Sure.");
//! - empathy sets what is said when the caller reports a problem (pain, an emergency, …):
//!   nothing when low, "I'm sorry to hear that." in the middle, reassurance when high.
//!
//! Humour is not used: fixed jokes repeat, and the responder stays plain.

use crate::agent::Personality;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Band {
    Low,
    Mid,
    High,
}

impl Band {
    pub fn of(value: u8) -> Band {
        match value {
            0..=40 => Band::Low,
            41..=60 => Band::Mid,
            _ => Band::High,
        }
    }

    fn index(self) -> usize {
        match self {
            Band::Low => 0,
            Band::Mid => 1,
            Band::High => 2,
        }
    }
}

/// The phrases of one level of formality. `{name}` is the agent's or business's name, `{date}`
/// a spoken date.
#[derive(Debug)]
pub(crate) struct Register {
    pub opening: &'static str,
    pub help: &'static str,
    pub ack: &'static str,
    pub ask_date: &'static str,
    pub ask_time: &'static str,
    pub ask_other_time: &'static str,
    pub ask_name: &'static str,
    pub ask_phone: &'static str,
    pub ask_change: &'static str,
    pub anything_else: &'static str,
    pub what_else: &'static str,
    pub welcome: &'static str,
    pub closing: &'static str,
    pub transfer: &'static str,
}

/// Indexed by formality band.
const REGISTERS: [Register; 3] = [
    Register {
        opening: "Hi, you've reached {name}.",
        help: "What can I do for you?",
        ack: "Sure thing.",
        ask_date: "What day works for you?",
        ask_time: "What time works for you on {date}?",
        ask_other_time: "What other time works for you?",
        ask_name: "What's your name?",
        ask_phone: "What's the best number to reach you on?",
        ask_change: "No worries. What should I change: the day, the time or the name?",
        anything_else: "Anything else I can help with?",
        what_else: "Sure, what can I do for you?",
        welcome: "No worries.",
        closing: "Thanks for calling, bye for now!",
        transfer: "No worries, I'll put you through now.",
    },
    Register {
        opening: "Hello, you've reached {name}.",
        help: "How can I help you today?",
        ack: "Sure.",
        ask_date: "Which day would you like?",
        ask_time: "What time would suit you on {date}?",
        ask_other_time: "What other time would suit you?",
        ask_name: "May I have your name, please?",
        ask_phone: "What's the best phone number to reach you on?",
        ask_change: "No problem. What would you like to change: the day, the time or the name?",
        anything_else: "Is there anything else I can help you with?",
        what_else: "Of course, what can I help you with?",
        welcome: "You're welcome.",
        closing: "Thank you for calling. Goodbye!",
        transfer: "Of course, I'll put you through now.",
    },
    Register {
        opening: "Good day, thank you for calling {name}.",
        help: "How may I help you today?",
        ack: "Certainly.",
        ask_date: "Which day would you prefer?",
        ask_time: "What time would you prefer on {date}?",
        ask_other_time: "What other time would you prefer?",
        ask_name: "May I have your full name, please?",
        ask_phone: "May I have a telephone number where we can reach you?",
        ask_change: "Certainly. What would you like to change: the day, the time or the name?",
        anything_else: "Is there anything else I may help you with?",
        what_else: "Certainly, how may I help?",
        welcome: "You are most welcome.",
        closing: "Thank you for calling {name}. Goodbye.",
        transfer: "Certainly, I will transfer you now.",
    },
];

/// Indexed by energy band.
const ENERGY_GREETING: [Option<&str>; 3] = [None, None, Some("Great to hear from you!")];
const ENERGY_BOOKED: [Option<&str>; 3] = [None, None, Some("Wonderful!")];

/// Said when the caller reports a problem, indexed by empathy band.
const SYMPATHY: [Option<&str>; 3] = [
    None,
    Some("I'm sorry to hear that."),
    Some("I'm so sorry to hear that. Don't worry, we'll do our best to help you."),
];

/// What the greeting offers: (booking offered, normal, direct).
const OFFERS: [(bool, &str, &str); 2] = [
    (
        true,
        "I can book an appointment for you or answer any questions you have.",
        "I can book appointments and answer questions.",
    ),
    (
        false,
        "I can answer any questions you have about {name}.",
        "I can answer questions about {name}.",
    ),
];
const DIRECT_HELP: &str = "How can I help?";

/// The personality, in bands.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    formality: Band,
    energy: Band,
    empathy: Band,
    direct: bool,
}

impl Style {
    pub fn new(personality: &Personality) -> Self {
        Self {
            formality: Band::of(personality.formality),
            energy: Band::of(personality.energy),
            empathy: Band::of(personality.empathy),
            direct: Band::of(personality.directness) == Band::High,
        }
    }

    pub fn register(&self) -> &'static Register {
        &REGISTERS[self.formality.index()]
    }

    /// The first words of the call.
    pub fn greeting(&self, agent: &str, booking: bool, business: &str) -> String {
        let register = self.register();
        let mut parts = vec![register.opening.replace("{name}", agent)];
        if let Some(line) = ENERGY_GREETING[self.energy.index()] {
            parts.push(line.to_string());
        }
        if let Some((_, normal, direct)) = OFFERS.iter().find(|(b, ..)| *b == booking) {
            let offer = if self.direct { direct } else { normal };
            parts.push(offer.replace("{name}", business));
        }
        parts.push(
            if self.direct {
                DIRECT_HELP
            } else {
                register.help
            }
            .to_string(),
        );
        parts.join(" ")
    }

    /// "Sure." before the first booking question, unless the caller wants it brief.
    pub fn ack(&self) -> Option<&'static str> {
        (!self.direct).then_some(self.register().ack)
    }

    pub fn sympathy(&self) -> Option<&'static str> {
        SYMPATHY[self.empathy.index()]
    }

    pub fn booked(&self) -> Option<&'static str> {
        ENERGY_BOOKED[self.energy.index()]
    }
}
