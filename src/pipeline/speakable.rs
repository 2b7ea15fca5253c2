//! Text as it should be spoken: written forms the phonemizer reads badly, rewritten in words.
//!
//! espeak-ng reads "$18.50" as "dollar eighteen point five zero" and pauses at the comma of
//! "$1,200". Amounts of money become "18 dollars 50", "1200 dollars", "50 cents" (pounds and
//! pence, euros and cents likewise), which it reads as a person would. The transcript keeps the
//! written form; only the synthesiser sees this.

use std::borrow::Cow;

/// `text` with every amount of money written out for speech.
pub fn speakable(text: &str) -> Cow<'_, str> {
    if !text.contains(['$', '£', '€']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(at) = rest.find(['$', '£', '€']) {
        out.push_str(&rest[..at]);
        let symbol = rest[at..].chars().next().unwrap_or('$');
        let after = &rest[at + symbol.len_utf8()..];
        match amount(after) {
            Some((spoken, used)) => {
                out.push_str(&say(symbol, &spoken));
                rest = &after[used..];
            }
            None => {
                out.push(symbol);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// An amount's whole units and cents, as digits.
struct Amount {
    whole: String,
    cents: Option<String>,
}

/// The amount `text` starts with, and the bytes it took: "1,200.5 …" → ("1200", "50"), 7.
fn amount(text: &str) -> Option<(Amount, usize)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut whole = String::new();
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' => whole.push(bytes[i] as char),
            // A thousands separator: a comma followed by three digits.
            b',' if !whole.is_empty()
                && bytes.len() >= i + 4
                && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
                && !bytes.get(i + 4).is_some_and(u8::is_ascii_digit) => {}
            _ => break,
        }
        i += 1;
    }
    if whole.is_empty() {
        return None;
    }
    let mut cents = None;
    if bytes.get(i) == Some(&b'.') {
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 1 || digits == 2 {
            let mut c = text[i + 1..i + 1 + digits].to_owned();
            if c.len() == 1 {
                c.push('0');
            }
            cents = Some(c);
            i += 1 + digits;
        }
    }
    Some((Amount { whole, cents }, i))
}

fn say(symbol: char, amount: &Amount) -> String {
    let (unit, units, small, smalls) = match symbol {
        '£' => ("pound", "pounds", "penny", "pence"),
        '€' => ("euro", "euros", "cent", "cents"),
        _ => ("dollar", "dollars", "cent", "cents"),
    };
    let whole = amount.whole.trim_start_matches('0');
    let cents = amount
        .cents
        .as_deref()
        .map(|c| c.trim_start_matches('0'))
        .filter(|c| !c.is_empty());
    match (whole, cents) {
        ("", Some(c)) => format!("{c} {}", if c == "1" { small } else { smalls }),
        ("", None) => format!("0 {units}"),
        (w, None) => format!("{w} {}", if w == "1" { unit } else { units }),
        (w, Some(c)) => format!("{w} {} {c}", if w == "1" { unit } else { units }),
    }
}

#[cfg(test)]
mod tests {
    use super::speakable;

    #[test]
    fn money_is_written_out() {
        let cases = [
            ("It costs $18.50.", "It costs 18 dollars 50."),
            (
                "Corkage is $5 per person",
                "Corkage is 5 dollars per person",
            ),
            (
                "Whitening $1,200, filling $220",
                "Whitening 1200 dollars, filling 220 dollars",
            ),
            ("$12.00 flat", "12 dollars flat"),
            ("only $0.50", "only 50 cents"),
            ("$1 each", "1 dollar each"),
            ("$4.5 a cup", "4 dollars 50 a cup"),
            ("£3.05 or €10", "3 pounds 5 or 10 euros"),
            ("costs $1.05", "costs 1 dollar 5"),
        ];
        for (written, spoken) in cases {
            assert_eq!(speakable(written), spoken, "{written}");
        }
    }

    #[test]
    fn other_text_is_untouched() {
        assert!(matches!(
            speakable("Tuesday at 3 pm"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(speakable("US$ rates, $ sign"), "US$ rates, $ sign");
        assert_eq!(
            speakable("1,000 points and $2,50"),
            "1,000 points and 2 dollars,50"
        );
    }
}
