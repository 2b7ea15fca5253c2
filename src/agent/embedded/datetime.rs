//! Dates and times in what a caller says, and how to say them back.
//!
//! Everything is relative to the call's start in the tenant's time zone (`today` and `now` are
//! the local date and time of `TurnContext::started_at`), never the wall clock, so that the same
//! transcript always means the same thing.
//!
//! Dates:
//! - "today", "tonight", "this morning/afternoon/evening" → today; "tomorrow" → today + 1;
//!   "the day after tomorrow" → today + 2.
//! - A weekday ("Tuesday", "this Tuesday", "next Tuesday") → the first such day strictly after
//!   today: saying today's weekday means a week from today (callers say "today" for today), and
//!   "next" is not read as "the week after" because callers use it both ways. The confirmation
//!   reads the full date back, so the caller can correct it.
//! - A day of the month ("the 14th", "14th", "on the fourteenth") → this month if that day is
//!   today or later, otherwise the next month that has that day ("the 31st" in November is the
//!   31st of December).
//! - A month and day ("March 3rd", "3rd of March", "14 December", "December 14") → this year if
//!   not passed, otherwise next year; an explicit year after it ("14 December 2027") is used.
//! - ISO dates ("2026-12-14") as given.
//! - When several are said, the last wins ("not Tuesday, Wednesday"); an explicit date wins
//!   over nothing else. Month names count only next to a day ("may I book" is not May).
//!
//! Times:
//! - "3 pm", "3pm", "3 p.m.", "three pm", "3:30 pm", "15:30", "10 o'clock", "half past two",
//!   "quarter to four", "twenty past three", "ten thirty", "ten oh five", "half three" (3:30),
//!   "noon", "midday", "midnight", "12 noon", "10 in the morning", "3 in the afternoon".
//! - A bare hour counts only after "at"/"around"/"about"/"by"/"from" ("at 10"), or when the
//!   last question asked for a time (see [`Expect`]).
//! - Without am/pm, business hours are assumed: 1–6 → pm, 7–11 → am, 12 → noon; a 24-hour form
//!   ("15:30", "09:00", "0:30") is taken literally; "morning" anywhere in the utterance makes a
//!   bare hour am, "afternoon"/"evening"/"tonight"/"night" make it pm.

use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc, Weekday,
};

use super::text::Word;

/// What an utterance said about when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct When {
    pub date: Option<NaiveDate>,
    pub time: Option<NaiveTime>,
}

/// What the last question asked for: a bare number then answers it ("14" for the day, "3"
/// for the time).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Expect {
    pub day: bool,
    pub time: bool,
}

/// The call's start as local date and time in the tenant's zone.
pub(crate) fn local_now(started_at: DateTime<Utc>, timezone: chrono_tz::Tz) -> NaiveDateTime {
    started_at.with_timezone(&timezone).naive_local()
}

/// Finds the date and time `words` name, relative to `today`.
pub(crate) fn find(words: &[Word], today: NaiveDate, expect: Expect) -> When {
    let words = homophones(words);
    let lexed = lex(&words);
    let mut used = vec![false; lexed.len()];
    let date = find_date(&lexed, &mut used, today, expect.day);
    let time = find_time(&lexed, &used, expect.time);
    When { date, time }
}

/// "Tuesday the 1st of December", with the year when it is not this year's.
pub(crate) fn speak_date(date: NaiveDate, today: NaiveDate) -> String {
    let mut spoken = format!(
        "{} the {} of {}",
        WEEKDAYS[date.weekday().num_days_from_monday() as usize].0,
        ordinal(date.day()),
        MONTHS[date.month0() as usize].0
    );
    if date.year() != today.year() {
        spoken.push_str(&format!(" {}", date.year()));
    }
    spoken
}

/// "3 pm", "10:30 am", "noon", "midnight": forms a speech synthesiser reads naturally (no
/// dots, which would read as sentence ends, and no 24-hour clock).
pub(crate) fn speak_time(time: NaiveTime) -> String {
    let (hour, minute) = (time.hour(), time.minute());
    match (hour, minute) {
        (0, 0) => "midnight".into(),
        (12, 0) => "noon".into(),
        _ => {
            let suffix = if hour < 12 { "am" } else { "pm" };
            let twelve = match hour % 12 {
                0 => 12,
                h => h,
            };
            if minute == 0 {
                format!("{twelve} {suffix}")
            } else {
                format!("{twelve}:{minute:02} {suffix}")
            }
        }
    }
}

fn ordinal(day: u32) -> String {
    let suffix = match (day % 10, day % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{day}{suffix}")
}

const WEEKDAYS: [(&str, Weekday); 7] = [
    ("Monday", Weekday::Mon),
    ("Tuesday", Weekday::Tue),
    ("Wednesday", Weekday::Wed),
    ("Thursday", Weekday::Thu),
    ("Friday", Weekday::Fri),
    ("Saturday", Weekday::Sat),
    ("Sunday", Weekday::Sun),
];

/// Month names with the abbreviations a transcript may carry.
const MONTHS: [(&str, &[&str]); 12] = [
    ("January", &["jan"]),
    ("February", &["feb"]),
    ("March", &["mar"]),
    ("April", &["apr"]),
    ("May", &[]),
    ("June", &["jun"]),
    ("July", &["jul"]),
    ("August", &["aug"]),
    ("September", &["sep", "sept"]),
    ("October", &["oct"]),
    ("November", &["nov"]),
    ("December", &["dec"]),
];

const UNITS: [&str; 20] = [
    "zero",
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
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
];
const TENS: [(&str, u32); 4] = [("twenty", 20), ("thirty", 30), ("forty", 40), ("fifty", 50)];
const ORDINALS: [&str; 20] = [
    "zeroth",
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
];
const ORDINAL_TENS: [(&str, u32); 2] = [("twentieth", 20), ("thirtieth", 30)];

/// Words after an ordinal that make it not a date ("the first available time").
const NOT_AFTER_ORDINAL: &[&str] = &[
    "available",
    "time",
    "thing",
    "appointment",
    "one",
    "visit",
    "slot",
    "opening",
    "booking",
    "week",
    "day",
    "floor",
    "name",
    "step",
    "option",
];

/// Words before a bare hour that make it a time ("at 10").
const HOUR_CUES: &[&str] = &["at", "around", "about", "by", "from"];

/// A word or number as the parser sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex<'a> {
    Num(u32),
    /// A day-of-month ordinal; `digits` when written "14th" rather than "fourteenth" (a spoken
    /// ordinal needs "the"/"on" before it to count alone: "just a second" is not a date).
    Ord {
        day: u32,
        digits: bool,
    },
    /// "15:30", "10.30"; `padded` for a leading zero ("09:00"), which marks the 24-hour clock.
    Clock {
        hour: u32,
        minute: u32,
        padded: bool,
    },
    Iso(NaiveDate),
    Word(&'a str),
}

/// Clock words as speech to text writes them when it mishears: "half passed two", "have past
/// to", "half past for" are all "half past two/four". Only around "past", where the words
/// can mean nothing else.
fn homophones(words: &[Word]) -> Vec<Word> {
    let mut out: Vec<Word> = words.to_vec();
    for word in out.iter_mut().filter(|w| w.norm == "passed") {
        word.norm = "past".into();
    }
    // "three p M." (the dots lost): a lone "p"/"a" and "m" after a number are "pm"/"am".
    for i in 1..out.len().saturating_sub(1) {
        let number = out[i - 1].norm.chars().all(|c| c.is_ascii_digit())
            || UNITS.contains(&out[i - 1].norm.as_str())
            || TENS.iter().any(|(name, _)| *name == out[i - 1].norm);
        if number && matches!(out[i].norm.as_str(), "p" | "a") && out[i + 1].norm == "m" {
            out[i].norm.push('m');
            out[i + 1].norm.clear();
        }
    }
    for i in 0..out.len() {
        if out[i].norm != "past" {
            continue;
        }
        if i > 0 && out[i - 1].norm == "have" {
            out[i - 1].norm = "half".into();
        }
        if let Some(next) = out.get_mut(i + 1) {
            let number = match next.norm.as_str() {
                "to" | "too" => Some("two"),
                "for" => Some("four"),
                "ate" => Some("eight"),
                "won" => Some("one"),
                _ => None,
            };
            if let Some(number) = number {
                next.norm = number.into();
            }
        }
    }
    out
}

fn lex(words: &[Word]) -> Vec<Lex<'_>> {
    let mut out = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let word = words[i].norm.as_str();
        let next = words.get(i + 1).map(|w| w.norm.as_str());
        if let Some(&(_, tens)) = TENS.iter().find(|(name, _)| *name == word) {
            if let Some(unit) = next.and_then(unit_word).filter(|u| (1..=9).contains(u)) {
                out.push(Lex::Num(tens + unit));
                i += 2;
                continue;
            }
            if let Some(unit) = next.and_then(ordinal_word).filter(|u| (1..=9).contains(u)) {
                out.push(Lex::Ord {
                    day: tens + unit,
                    digits: false,
                });
                i += 2;
                continue;
            }
            out.push(Lex::Num(tens));
            i += 1;
            continue;
        }
        out.push(lex_one(word));
        i += 1;
    }
    out
}

fn unit_word(word: &str) -> Option<u32> {
    UNITS.iter().position(|u| *u == word).map(|n| n as u32)
}

fn ordinal_word(word: &str) -> Option<u32> {
    ORDINALS
        .iter()
        .position(|o| *o == word)
        .map(|n| n as u32)
        .or_else(|| {
            ORDINAL_TENS
                .iter()
                .find(|(name, _)| *name == word)
                .map(|(_, n)| *n)
        })
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

fn lex_one(word: &str) -> Lex<'_> {
    if let Some(n) = unit_word(word) {
        return Lex::Num(n);
    }
    if let Some(day) = ordinal_word(word) {
        return Lex::Ord { day, digits: false };
    }
    if all_digits(word)
        && word.len() <= 4
        && let Ok(n) = word.parse()
    {
        return Lex::Num(n);
    }
    if word.len() > 2 && word.is_char_boundary(word.len() - 2) {
        let (digits, suffix) = word.split_at(word.len() - 2);
        if all_digits(digits)
            && digits.len() <= 2
            && matches!(suffix, "st" | "nd" | "rd" | "th")
            && let Ok(day) = digits.parse()
        {
            return Lex::Ord { day, digits: true };
        }
    }
    if let Some((h, m)) = word.split_once([':', '.'])
        && all_digits(h)
        && h.len() <= 2
        && all_digits(m)
        && m.len() == 2
        && let (Ok(hour), Ok(minute)) = (h.parse(), m.parse())
    {
        return Lex::Clock {
            hour,
            minute,
            padded: h.len() == 2 && h.starts_with('0'),
        };
    }
    let parts: Vec<&str> = word.split('-').collect();
    if let [y, m, d] = parts.as_slice()
        && y.len() == 4
        && [y, m, d].iter().all(|p| all_digits(p))
        && let (Ok(y), Ok(m), Ok(d)) = (y.parse(), m.parse(), d.parse())
        && let Some(date) = NaiveDate::from_ymd_opt(y, m, d)
    {
        return Lex::Iso(date);
    }
    Lex::Word(word)
}

fn word_at<'a>(lexed: &[Lex<'a>], at: usize) -> Option<&'a str> {
    match lexed.get(at) {
        Some(Lex::Word(w)) => Some(w),
        _ => None,
    }
}

fn month_of(word: &str) -> Option<u32> {
    MONTHS
        .iter()
        .position(|(name, short)| name.eq_ignore_ascii_case(word) || short.contains(&word))
        .map(|m| m as u32 + 1)
}

fn weekday_of(word: &str) -> Option<Weekday> {
    let word = match word {
        "tues" | "tue" => "tuesday",
        "weds" => "wednesday",
        "thurs" | "thu" => "thursday",
        other => other,
    };
    WEEKDAYS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(word))
        .map(|(_, day)| *day)
}

/// The first `weekday` strictly after `today`.
fn next_weekday(weekday: Weekday, today: NaiveDate) -> Option<NaiveDate> {
    (1..=7)
        .filter_map(|n| today.checked_add_days(Days::new(n)))
        .find(|d| d.weekday() == weekday)
}

/// Day `day` of this month if not passed, else of the next month that has it.
fn day_of_month(day: u32, today: NaiveDate) -> Option<NaiveDate> {
    if !(1..=31).contains(&day) {
        return None;
    }
    let (mut year, mut month) = (today.year(), today.month());
    if day < today.day() {
        (year, month) = following_month(year, month);
    }
    for _ in 0..12 {
        if let Some(date) = NaiveDate::from_ymd_opt(year, month, day) {
            return Some(date);
        }
        (year, month) = following_month(year, month);
    }
    None
}

fn following_month(year: i32, month: u32) -> (i32, u32) {
    if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

/// `month`/`day` in `year`, or when no year was said, the next such date on or after today.
fn month_day(month: u32, day: u32, year: Option<i32>, today: NaiveDate) -> Option<NaiveDate> {
    if let Some(year) = year {
        return NaiveDate::from_ymd_opt(year, month, day);
    }
    // Up to eight years ahead, for the 29th of February.
    (today.year()..today.year() + 8)
        .filter_map(|y| NaiveDate::from_ymd_opt(y, month, day))
        .find(|d| *d >= today)
}

/// A year right after a date ("14 December 2027").
fn year_at(lexed: &[Lex<'_>], at: usize) -> Option<i32> {
    match lexed.get(at) {
        Some(Lex::Num(y)) if (2000..=2100).contains(y) => Some(*y as i32),
        _ => None,
    }
}

/// An am/pm or "o'clock" follows at `at`, so the number before it is an hour, not a day.
fn meridiem_follows(lexed: &[Lex<'_>], at: usize) -> bool {
    meridiem(lexed, at).1 > 0
}

fn find_date(
    lexed: &[Lex<'_>],
    used: &mut [bool],
    today: NaiveDate,
    bare_day: bool,
) -> Option<NaiveDate> {
    let word = |at: usize| word_at(lexed, at);
    let mut found = None;
    let mut i = 0;
    while i < lexed.len() {
        let hit: Option<(Option<NaiveDate>, usize)> = match lexed[i] {
            Lex::Iso(date) => Some((Some(date), 1)),
            Lex::Word("today" | "tonight") => Some((Some(today), 1)),
            Lex::Word("this")
                if matches!(word(i + 1), Some("morning" | "afternoon" | "evening")) =>
            {
                Some((Some(today), 1))
            }
            Lex::Word("tomorrow") => {
                let after = i >= 2 && word(i - 1) == Some("after") && word(i - 2) == Some("day");
                let days = if after { 2 } else { 1 };
                Some((today.checked_add_days(Days::new(days)), 1))
            }
            Lex::Word(w) if weekday_of(w).is_some() => {
                Some((weekday_of(w).and_then(|d| next_weekday(d, today)), 1))
            }
            Lex::Word(w) if month_of(w).is_some() => {
                // "March 3rd", "December the 14th", "December 14 2027".
                let mut at = i + 1;
                if word(at) == Some("the") {
                    at += 1;
                }
                let day = match lexed.get(at) {
                    Some(Lex::Ord { day, .. }) => Some(*day),
                    Some(Lex::Num(day)) if !meridiem_follows(lexed, at + 1) => Some(*day),
                    _ => None,
                };
                day.map(|day| {
                    let year = year_at(lexed, at + 1);
                    let len = at + 1 - i + usize::from(year.is_some());
                    (
                        month_of(w).and_then(|m| month_day(m, day, year, today)),
                        len,
                    )
                })
            }
            Lex::Ord { day, .. } | Lex::Num(day) => {
                // "3rd of March", "14 December 2027", or a day alone: "the 14th".
                let mut at = i + 1;
                if word(at) == Some("of") {
                    at += 1;
                }
                if let Some(month) = word(at).and_then(month_of) {
                    let year = year_at(lexed, at + 1);
                    let len = at + 1 - i + usize::from(year.is_some());
                    Some((month_day(month, day, year, today), len))
                } else if let Lex::Ord { digits, .. } = lexed[i] {
                    let cued = i > 0 && matches!(word(i - 1), Some("the" | "on"));
                    let denied = word(i + 1).is_some_and(|w| NOT_AFTER_ORDINAL.contains(&w));
                    ((digits || cued) && !denied).then(|| (day_of_month(day, today), 1))
                } else {
                    None
                }
            }
            _ => None,
        };
        match hit {
            Some((date, len)) => {
                if date.is_some() {
                    found = date;
                }
                for flag in used.iter_mut().skip(i).take(len) {
                    *flag = true;
                }
                i += len;
            }
            None => i += 1,
        }
    }
    if found.is_none() && bare_day {
        // The caller was asked for the day and answered with a number: "the 14", "14".
        for (i, lex) in lexed.iter().enumerate() {
            if let Lex::Num(day) = lex
                && !used[i]
                && !meridiem_follows(lexed, i + 1)
                && !(i > 0 && word(i - 1).is_some_and(|w| HOUR_CUES.contains(&w)))
                && let Some(date) = day_of_month(*day, today)
            {
                used[i] = true;
                return Some(date);
            }
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Meridiem {
    Am,
    Pm,
}

/// The am/pm marker at `at` and how many words it spans (0: none). "o'clock" spans words but
/// says neither am nor pm.
fn meridiem(lexed: &[Lex<'_>], at: usize) -> (Option<Meridiem>, usize) {
    let word = |k: usize| word_at(lexed, k);
    let mut found = None;
    let mut at_now = at;
    // At most two markers: "10 o'clock in the morning".
    for _ in 0..2 {
        let (marker, len) = match (word(at_now), word(at_now + 1), word(at_now + 2)) {
            (Some("am"), ..) => (Some(Meridiem::Am), 1),
            (Some("pm"), ..) => (Some(Meridiem::Pm), 1),
            (Some("a"), Some("m"), _) => (Some(Meridiem::Am), 2),
            (Some("p"), Some("m"), _) => (Some(Meridiem::Pm), 2),
            (Some("oclock"), ..) => (None, 1),
            (Some("o"), Some("clock"), _) => (None, 2),
            (Some("in"), Some("the"), Some("morning")) => (Some(Meridiem::Am), 3),
            (Some("in"), Some("the"), Some("afternoon" | "evening")) => (Some(Meridiem::Pm), 3),
            (Some("at"), Some("night"), _) => (Some(Meridiem::Pm), 2),
            _ => break,
        };
        found = marker.or(found);
        at_now += len;
    }
    (found, at_now - at)
}

/// "morning" anywhere makes a bare hour am; "afternoon", "evening", "tonight", "night" pm.
fn period_hint(lexed: &[Lex<'_>]) -> Option<Meridiem> {
    lexed.iter().rev().find_map(|lex| match lex {
        Lex::Word("morning") => Some(Meridiem::Am),
        Lex::Word("afternoon" | "evening" | "tonight" | "night") => Some(Meridiem::Pm),
        _ => None,
    })
}

fn find_time(lexed: &[Lex<'_>], used: &[bool], bare_hour: bool) -> Option<NaiveTime> {
    let hint = period_hint(lexed);
    let mut found = None;
    let mut i = 0;
    while i < lexed.len() {
        if used[i] {
            i += 1;
            continue;
        }
        match time_at(lexed, used, i, bare_hour, hint) {
            Some((time, len)) => {
                found = Some(time);
                i += len.max(1);
            }
            None => i += 1,
        }
    }
    found
}

/// The time starting at `i`, and how many items it spans.
fn time_at(
    lexed: &[Lex<'_>],
    used: &[bool],
    i: usize,
    bare_hour: bool,
    hint: Option<Meridiem>,
) -> Option<(NaiveTime, usize)> {
    let word = |k: usize| word_at(lexed, k);
    let num = |k: usize| match lexed.get(k) {
        Some(Lex::Num(n)) if !used[k] => Some(*n),
        _ => None,
    };
    let hour12 = |k: usize| num(k).filter(|h| (1..=12).contains(h));
    // An hour and minutes, the items they span, and whether they are a 24-hour reading.
    let (hour, minute, len, literal) = match lexed[i] {
        Lex::Clock {
            hour,
            minute,
            padded,
        } => (hour, minute, 1, padded || hour == 0 || hour > 12),
        Lex::Word("noon" | "midday") => return Some((NaiveTime::from_hms_opt(12, 0, 0)?, 1)),
        Lex::Word("midnight") => return Some((NaiveTime::MIN, 1)),
        Lex::Word("half") => match word(i + 1) {
            Some("past" | "after") => (hour12(i + 2)?, 30, 3, false),
            _ => (hour12(i + 1)?, 30, 2, false),
        },
        Lex::Word("quarter") => match word(i + 1) {
            Some("past" | "after") => (hour12(i + 2)?, 15, 3, false),
            Some("to" | "till" | "til" | "before") => (previous_hour(hour12(i + 2)?), 45, 3, false),
            _ => return None,
        },
        Lex::Num(n) => {
            let mut at = i + 1;
            if matches!(word(at), Some("minute" | "minutes" | "mins")) {
                at += 1;
            }
            let relative = (1..=30).contains(&n);
            match (word(at), hour12(at + 1)) {
                (Some("past" | "after"), Some(h)) if relative => (h, n, at + 2 - i, false),
                (Some("to" | "till" | "til" | "before"), Some(h)) if relative => {
                    (previous_hour(h), 60 - n, at + 2 - i, false)
                }
                _ => return clock_hour(lexed, used, i, n, bare_hour, hint),
            }
        }
        _ => return None,
    };
    let (marker, marker_len) = meridiem(lexed, i + len);
    let time = resolve(hour, minute, marker, hint, literal)?;
    Some((time, len + marker_len))
}

/// One hour earlier on a 12-hour dial ("quarter to one" is 12:45).
fn previous_hour(hour: u32) -> u32 {
    if hour == 1 { 12 } else { hour - 1 }
}

/// A time that starts with an hour number: "3 pm", "ten thirty", "ten oh five", "12 noon",
/// "at 10", or a bare hour when one was asked for.
fn clock_hour(
    lexed: &[Lex<'_>],
    used: &[bool],
    i: usize,
    hour: u32,
    bare_hour: bool,
    hint: Option<Meridiem>,
) -> Option<(NaiveTime, usize)> {
    let word = |k: usize| word_at(lexed, k);
    let num = |k: usize| match lexed.get(k) {
        Some(Lex::Num(n)) if !used[k] => Some(*n),
        _ => None,
    };
    if hour == 12 && matches!(word(i + 1), Some("noon" | "midday")) {
        return Some((NaiveTime::from_hms_opt(12, 0, 0)?, 2));
    }
    let (minute, minute_len) = match (num(i + 1), word(i + 1), num(i + 2)) {
        (Some(m), ..) if (10..=59).contains(&m) && (1..=12).contains(&hour) => (Some(m), 1),
        (None, Some("oh" | "o"), Some(m)) if m <= 9 && (1..=12).contains(&hour) => (Some(m), 2),
        _ => (None, 0),
    };
    let (marker, marker_len) = meridiem(lexed, i + 1 + minute_len);
    let cued = i > 0 && word(i - 1).is_some_and(|w| HOUR_CUES.contains(&w));
    if minute.is_none() && marker_len == 0 && !cued && !bare_hour {
        return None;
    }
    let time = resolve(
        hour,
        minute.unwrap_or(0),
        marker,
        hint,
        hour == 0 || hour > 12,
    )?;
    Some((time, 1 + minute_len + marker_len))
}

/// The 24-hour time for `hour`:`minute` as spoken. `literal`: already on the 24-hour clock.
fn resolve(
    hour: u32,
    minute: u32,
    marker: Option<Meridiem>,
    hint: Option<Meridiem>,
    literal: bool,
) -> Option<NaiveTime> {
    let hour = match (marker, hint) {
        (Some(Meridiem::Am), _) => match hour {
            12 => 0,
            1..=11 => hour,
            _ => return None,
        },
        (Some(Meridiem::Pm), _) => match hour {
            1..=11 => hour + 12,
            12..=23 => hour,
            _ => return None,
        },
        _ if literal => hour,
        (None, Some(Meridiem::Am)) => hour,
        (None, Some(Meridiem::Pm)) => match hour {
            1..=11 => hour + 12,
            _ => hour,
        },
        // Business hours: nobody books a 3 am appointment.
        (None, None) => match hour {
            1..=6 => hour + 12,
            _ => hour,
        },
    };
    NaiveTime::from_hms_opt(hour, minute, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::embedded::text::words;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn time(text: &str) -> NaiveTime {
        NaiveTime::parse_from_str(text, "%H:%M").unwrap()
    }

    /// The local "today" of a call that started at `utc` in `zone`.
    fn today(utc: &str, zone: chrono_tz::Tz) -> NaiveDate {
        local_now(utc.parse().unwrap(), zone).date()
    }

    fn parse(text: &str, today: NaiveDate) -> When {
        find(&words(text), today, Expect::default())
    }

    #[test]
    fn today_is_the_local_date_not_the_utc_date() {
        use chrono_tz::{America::New_York, Australia::Sydney, UTC};
        // 14:00 UTC on the 30th of November is 1 am on the 1st of December in Sydney (AEDT).
        assert_eq!(today("2026-11-30T14:00:00Z", Sydney), date("2026-12-01"));
        assert_eq!(today("2026-11-30T14:00:00Z", UTC), date("2026-11-30"));
        // 3 am UTC on the 1st of December is still the 30th of November in New York.
        assert_eq!(today("2026-12-01T03:00:00Z", New_York), date("2026-11-30"));
        // New year arrives in Sydney first.
        assert_eq!(today("2026-12-31T13:30:00Z", Sydney), date("2027-01-01"));
    }

    #[test]
    fn dates_table() {
        use chrono_tz::{America::New_York, Australia::Sydney, UTC};
        // (call start UTC, zone, what the caller said, the date meant)
        let cases: &[(&str, chrono_tz::Tz, &str, &str)] = &[
            // Monday 30 November 2026, noon in Sydney.
            ("2026-11-30T01:00:00Z", Sydney, "today", "2026-11-30"),
            ("2026-11-30T01:00:00Z", Sydney, "tomorrow", "2026-12-01"),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "the day after tomorrow",
                "2026-12-02",
            ),
            ("2026-11-30T01:00:00Z", Sydney, "on Tuesday", "2026-12-01"),
            ("2026-11-30T01:00:00Z", Sydney, "next tuesday", "2026-12-01"),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "this Friday please",
                "2026-12-04",
            ),
            // Today's weekday means a week from today.
            ("2026-11-30T01:00:00Z", Sydney, "monday", "2026-12-07"),
            ("2026-11-30T01:00:00Z", Sydney, "the 14th", "2026-12-14"),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "on the fourteenth",
                "2026-12-14",
            ),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "the thirtieth",
                "2026-11-30",
            ),
            ("2026-11-30T01:00:00Z", Sydney, "the 31st", "2026-12-31"),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "the twenty first",
                "2026-12-21",
            ),
            ("2026-11-30T01:00:00Z", Sydney, "March 3rd", "2027-03-03"),
            ("2026-11-30T01:00:00Z", Sydney, "3rd of March", "2027-03-03"),
            ("2026-11-30T01:00:00Z", Sydney, "14 December", "2026-12-14"),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "December the 14th",
                "2026-12-14",
            ),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "14 December 2027",
                "2027-12-14",
            ),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "on 2026-12-14",
                "2026-12-14",
            ),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "not Tuesday, Wednesday",
                "2026-12-02",
            ),
            (
                "2026-11-30T01:00:00Z",
                Sydney,
                "the 29th of February",
                "2028-02-29",
            ),
            // 1 am Tuesday 1 December in Sydney, still Monday 30 November in UTC.
            ("2026-11-30T14:00:00Z", Sydney, "tomorrow", "2026-12-02"),
            ("2026-11-30T14:00:00Z", Sydney, "today", "2026-12-01"),
            ("2026-11-30T14:00:00Z", UTC, "tomorrow", "2026-12-01"),
            // Evening of Monday 30 November in New York, Tuesday in UTC.
            ("2026-12-01T03:00:00Z", New_York, "tomorrow", "2026-12-01"),
            ("2026-12-01T03:00:00Z", New_York, "Tuesday", "2026-12-01"),
            // Wednesday 30 December 2026: across the year end.
            ("2026-12-30T09:00:00Z", UTC, "tomorrow", "2026-12-31"),
            (
                "2026-12-30T09:00:00Z",
                UTC,
                "the day after tomorrow",
                "2027-01-01",
            ),
            ("2026-12-30T09:00:00Z", UTC, "friday", "2027-01-01"),
            ("2026-12-30T09:00:00Z", UTC, "the 2nd", "2027-01-02"),
            (
                "2026-12-30T09:00:00Z",
                UTC,
                "January the fifth",
                "2027-01-05",
            ),
            // Half past midnight on New Year's Day in Sydney, still the 31st in UTC.
            ("2026-12-31T13:30:00Z", Sydney, "tomorrow", "2027-01-02"),
            ("2026-12-31T13:30:00Z", Sydney, "the 31st", "2027-01-31"),
        ];
        for (utc, zone, said, meant) in cases {
            let got = parse(said, today(utc, *zone)).date;
            assert_eq!(got, Some(date(meant)), "{said:?} at {utc} in {zone}");
        }
    }

    #[test]
    fn not_dates() {
        let today = date("2026-11-30");
        for said in [
            "may I book an appointment",
            "just a second",
            "the first available time",
            "I'd like to march in",
            "at 3 pm",
            "the 31st of February",
        ] {
            assert_eq!(parse(said, today).date, None, "{said:?}");
        }
    }

    #[test]
    fn times_table() {
        let today = date("2026-11-30");
        let cases: &[(&str, &str)] = &[
            ("3 pm", "15:00"),
            ("3pm", "15:00"),
            ("3 p.m.", "15:00"),
            ("three pm", "15:00"),
            ("Three P.M.", "15:00"),
            ("3:30 pm", "15:30"),
            ("3:30PM", "15:30"),
            ("15:30", "15:30"),
            ("09:00", "09:00"),
            ("05:00", "05:00"),
            ("10.30 am", "10:30"),
            ("at 10", "10:00"),
            ("at 3", "15:00"),
            ("at 12", "12:00"),
            ("at 7", "07:00"),
            ("at 17", "17:00"),
            ("10 o'clock", "10:00"),
            ("ten oclock", "10:00"),
            ("2 o clock", "14:00"),
            ("10 in the morning", "10:00"),
            ("ten o'clock in the morning", "10:00"),
            ("4 in the afternoon", "16:00"),
            ("at 8 in the evening", "20:00"),
            ("tomorrow morning at 8", "08:00"),
            ("tomorrow evening at 7", "19:00"),
            ("half past two", "14:30"),
            ("half past 10", "10:30"),
            ("half three", "15:30"),
            ("quarter past nine", "09:15"),
            ("a quarter to four", "15:45"),
            ("quarter to one", "12:45"),
            ("twenty past three", "15:20"),
            ("ten to four", "15:50"),
            ("five minutes past eleven", "11:05"),
            ("ten thirty", "10:30"),
            ("three fifteen pm", "15:15"),
            ("ten oh five", "10:05"),
            ("eleven forty five", "11:45"),
            ("noon", "12:00"),
            ("midday", "12:00"),
            ("12 noon", "12:00"),
            ("12 am", "00:00"),
            ("12 pm", "12:00"),
            ("midnight", "00:00"),
            ("at 9 a m", "09:00"),
            ("not 3, make it 4 pm", "16:00"),
            // A time and a day side by side do not swallow each other.
            ("December 3 ten thirty", "10:30"),
            ("Tuesday at three pm", "15:00"),
            ("the 14th at 2:30", "14:30"),
            // As speech to text has written them (Moonshine, voices the engine was not tuned
            // on).
            ("Half passed two in the afternoon.", "14:30"),
            ("Have passed to in the afternoon.", "14:30"),
            ("Half passed to India afternoon.", "14:30"),
            ("Tuesday at half-past two.", "14:30"),
            ("Could I get a booking on Friday at four p. M.", "16:00"),
            ("at four p. M?.", "16:00"),
            ("Two's date, three p M. please.", "15:00"),
            ("quarter past for", "16:15"),
        ];
        for (said, meant) in cases {
            assert_eq!(parse(said, today).time, Some(time(meant)), "{said:?}");
        }
    }

    #[test]
    fn not_times() {
        let today = date("2026-11-30");
        for said in [
            "for 2 people",
            "3",
            "I need one appointment",
            "25 pm",
            "the 14th",
        ] {
            assert_eq!(parse(said, today).time, None, "{said:?}");
        }
    }

    #[test]
    fn both_in_one_utterance() {
        let today = date("2026-11-30");
        let when = parse(
            "I'd like to book an appointment for Tuesday at three pm, my name is Sarah Jones",
            today,
        );
        assert_eq!(when.date, Some(date("2026-12-01")));
        assert_eq!(when.time, Some(time("15:00")));
        let when = parse("march 3 pm", today);
        assert_eq!((when.date, when.time), (None, Some(time("15:00"))));
        let when = parse("December 3rd at 10 o'clock in the morning", today);
        assert_eq!(when.date, Some(date("2026-12-03")));
        assert_eq!(when.time, Some(time("10:00")));
    }

    #[test]
    fn bare_numbers_answer_the_question_asked() {
        let today = date("2026-11-30");
        let as_time = Expect {
            time: true,
            day: false,
        };
        let as_day = Expect {
            time: false,
            day: true,
        };
        let found = |text: &str, expect| find(&words(text), today, expect);
        assert_eq!(found("three", as_time).time, Some(time("15:00")));
        assert_eq!(found("um 10 please", as_time).time, Some(time("10:00")));
        assert_eq!(found("ten thirty", as_time).time, Some(time("10:30")));
        assert_eq!(found("14", as_day).date, Some(date("2026-12-14")));
        assert_eq!(found("the 14", as_day).date, Some(date("2026-12-14")));
        assert_eq!(found("14", as_time).date, None);
        assert_eq!(found("3 pm", as_day).date, None);
    }

    #[test]
    fn spoken_forms() {
        let today = date("2026-11-30");
        assert_eq!(
            speak_date(date("2026-12-01"), today),
            "Tuesday the 1st of December"
        );
        assert_eq!(
            speak_date(date("2027-01-22"), today),
            "Friday the 22nd of January 2027"
        );
        assert_eq!(
            speak_date(date("2026-12-13"), today),
            "Sunday the 13th of December"
        );
        assert_eq!(speak_time(time("15:00")), "3 pm");
        assert_eq!(speak_time(time("10:30")), "10:30 am");
        assert_eq!(speak_time(time("09:05")), "9:05 am");
        assert_eq!(speak_time(time("12:00")), "noon");
        assert_eq!(speak_time(time("12:30")), "12:30 pm");
        assert_eq!(speak_time(time("00:00")), "midnight");
    }
}
