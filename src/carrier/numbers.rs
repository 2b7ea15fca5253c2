//! Numbering plans: whether a string is a dialable number, and which numbers the engine can offer.
//!
//! [`check`] takes strict E.164 (`+` then digits, nothing else), parses it with libphonenumber's
//! metadata (the `phonenumber` crate), insists that it is valid in its country's plan and that it
//! was written canonically, and returns a [`Checked`]: E.164, the national format, the region
//! libphonenumber assigns and the [`NumberKind`] it is, if it is one the engine sells.
//! [`check_in`] also requires a country.
//!
//! [`inventory`] offers numbers without asking anyone. Each country and kind has a short table of
//! area codes ([`area_codes`]); each area code has a block of subscriber numbers to draw from,
//! the fictional or drama ranges where the regulator reserves some that libphonenumber accepts
//! (ACMA's `(0x) 5550 xxxx`, NANP `555-01xx`, Ofcom's `020 7946 0xxx`, `0161 496 0xxx`,
//! `0808 157 0xxx`), otherwise the whole area code. A search walks each block in a fixed
//! pseudo-random order (a keyed permutation, so no number comes twice), taking the area codes in
//! turn, skips numbers already taken, and keeps those that pass [`check_in`] as the asked kind.
//! The same query therefore always gives the same numbers, and a larger limit extends a smaller
//! one. The walk is bounded, so a block with few valid or free numbers ends the search early
//! instead of spinning.
//!
//! libphonenumber loads its metadata on first use (most of a second in a debug build); later
//! checks take well under a millisecond.

use std::ops::RangeInclusive;

use phonenumber::{Mode, Type, metadata::DATABASE};

use super::{AvailableNumber, Country, NumberKind, NumberQuery};

/// How many digits may follow the `+`, as elsewhere in the engine (`agent::is_e164`).
const E164_DIGITS: RangeInclusive<usize> = 8..=15;

/// The most numbers one inventory search returns, whatever limit is asked.
pub const MAX_LIMIT: usize = 50;

/// Candidates a search may try: a base plus some per number asked for. Most candidates are valid,
/// so this is only reached when a block is nearly exhausted or mostly taken.
const SEARCH_BUDGET_BASE: usize = 1_000;
const SEARCH_BUDGET_PER_NUMBER: usize = 20;

/// NANP toll-free area codes. libphonenumber files them under the US; they serve Canada alike.
const NANP_TOLL_FREE: &[&str] = &["800", "833", "844", "855", "866", "877", "888"];

const AU_LOCAL: &[&str] = &["2", "3", "7", "8"];
const AU_MOBILE: &[&str] = &[
    "400", "412", "413", "414", "422", "433", "450", "468", "478", "491",
];
/// 1300 numbers are shared-cost, not free to the caller, so they are not offered.
const AU_TOLL_FREE: &[&str] = &["1800"];
/// NANP fixed and mobile numbers share ranges, so these serve both kinds.
const US_AREAS: &[&str] = &[
    "206", "212", "213", "305", "312", "415", "512", "617", "646", "720",
];
const CA_AREAS: &[&str] = &["403", "416", "514", "604", "613", "647", "778", "902"];
const GB_LOCAL: &[&str] = &["20", "113", "117", "121", "131", "141", "151", "161", "191"];
const GB_MOBILE: &[&str] = &["7400", "7500", "7700", "7800", "7900"];
const GB_TOLL_FREE: &[&str] = &["800", "808"];
const NZ_LOCAL: &[&str] = &["3", "4", "6", "7", "9"];
const NZ_MOBILE: &[&str] = &["21", "22", "27"];
const NZ_TOLL_FREE: &[&str] = &["508", "800"];
const IE_LOCAL: &[&str] = &["1", "21", "61", "91"];
const IE_MOBILE: &[&str] = &["83", "85", "86", "87", "89"];
const IE_TOLL_FREE: &[&str] = &["1800"];

/// A number checked against the numbering plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// As given, which is canonical E.164 (`+61255501234`).
    pub e164: String,
    /// The national format (`(02) 5550 1234`).
    pub national: String,
    /// The ISO region libphonenumber assigns (`AU`); `None` for non-geographic numbers such as
    /// international freephone (`+800`). NANP toll-free numbers come back as `US`.
    pub region: Option<String>,
    /// `Local` for fixed lines (and the NANP's fixed-or-mobile numbers), `Mobile`, `TollFree`;
    /// `None` for the kinds the engine does not sell (premium, shared-cost, VoIP, …).
    pub kind: Option<NumberKind>,
}

impl Checked {
    /// Whether the number can serve as `kind`. In the US and Canada fixed and mobile numbers share
    /// ranges: libphonenumber cannot tell them apart, so a `Local` number there is also `Mobile`.
    pub fn is_kind(&self, kind: NumberKind) -> bool {
        self.kind == Some(kind)
            || (kind == NumberKind::Mobile
                && self.kind == Some(NumberKind::Local)
                && matches!(self.region.as_deref(), Some("US" | "CA")))
    }
}

/// Why a string is not an acceptable number. The messages read after the field's name
/// ("to must be an E.164 number such as …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    /// Not `+` and 8 to 15 digits, or not canonical (a trunk `0` after the country code).
    #[error("must be an E.164 number such as +61255501234")]
    NotE164,
    /// Shaped like E.164 but libphonenumber cannot read it (an unassigned country code, say).
    #[error("could not be read as a phone number")]
    Unparseable,
    /// Not a valid number in its country's plan.
    #[error("is not a valid number in any numbering plan")]
    Invalid,
    /// Valid, but in another country; `actual` is the region libphonenumber assigns.
    #[error("{}", wrong_country_message(*.expected, .actual.as_deref()))]
    WrongCountry {
        expected: Country,
        actual: Option<String>,
    },
}

fn wrong_country_message(expected: Country, actual: Option<&str>) -> String {
    match actual {
        Some(actual) => format!("is a number in {actual}, not {}", expected.code()),
        None => format!("is not a number in {}", expected.code()),
    }
}

/// Why an inventory search cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// Not an area code of that kind in that country, or not digits at all.
    #[error("{}", unknown_area_code_message(.area_code, *.country, *.kind))]
    UnknownAreaCode {
        area_code: String,
        country: Country,
        kind: NumberKind,
    },
    /// The engine has no numbers of that kind in that country.
    #[error("{} numbers are not offered in {}", .kind.as_str(), .country.code())]
    NotOffered { country: Country, kind: NumberKind },
}

fn unknown_area_code_message(area_code: &str, country: Country, kind: NumberKind) -> String {
    format!(
        "{area_code:?} is not an area code for {} numbers in {}; use one of {}",
        kind.as_str(),
        country.code(),
        area_codes(country, kind).join(", ")
    )
}

/// Strict E.164 that is valid in some numbering plan (campaign targets, transfer numbers).
pub fn check(raw: &str) -> Result<Checked, NumberError> {
    let digits = raw.strip_prefix('+').ok_or(NumberError::NotE164)?;
    if !E164_DIGITS.contains(&digits.len())
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || digits.starts_with('0')
    {
        return Err(NumberError::NotE164);
    }
    let number = phonenumber::parse(None, raw).map_err(|_| NumberError::Unparseable)?;
    if !number.is_valid() {
        return Err(NumberError::Invalid);
    }
    // libphonenumber forgives a trunk prefix (`+61 0 2…`); E.164 does not.
    let e164 = number.format().mode(Mode::E164).to_string();
    if e164 != raw {
        return Err(NumberError::NotE164);
    }
    let kind = match number.number_type(&DATABASE) {
        Type::FixedLine | Type::FixedLineOrMobile => Some(NumberKind::Local),
        Type::Mobile => Some(NumberKind::Mobile),
        Type::TollFree => Some(NumberKind::TollFree),
        _ => None,
    };
    Ok(Checked {
        national: number.format().mode(Mode::National).to_string(),
        region: number.country().id().map(|id| id.as_ref().to_owned()),
        kind,
        e164,
    })
}

/// [`check`], and the number belongs to `country`. NANP toll-free numbers belong to both the US
/// and Canada.
pub fn check_in(raw: &str, country: Country) -> Result<Checked, NumberError> {
    let checked = check(raw)?;
    if checked.region.as_deref() == Some(country.code())
        || (matches!(country, Country::Us | Country::Ca) && is_nanp_toll_free(&checked))
    {
        return Ok(checked);
    }
    Err(NumberError::WrongCountry {
        expected: country,
        actual: checked.region,
    })
}

fn is_nanp_toll_free(checked: &Checked) -> bool {
    checked.kind == Some(NumberKind::TollFree)
        && checked
            .e164
            .strip_prefix("+1")
            .and_then(|rest| rest.get(..3))
            .is_some_and(|area| NANP_TOLL_FREE.contains(&area))
}

/// The national format of a valid E.164 number (`+61255501234` → `(02) 5550 1234`).
pub fn national_format(e164: &str) -> Option<String> {
    check(e164).ok().map(|checked| checked.national)
}

/// The area codes the inventory knows for a country and kind, national and without the trunk
/// prefix. Local: geographic area codes (`2` Sydney, `415` San Francisco, `20` London). Mobile:
/// mobile prefixes (`412`, `7700`, `21`; NPAs in the US and Canada). Toll-free: the service
/// prefix (`1800`, `800`, `508`).
pub fn area_codes(country: Country, kind: NumberKind) -> &'static [&'static str] {
    use NumberKind::*;
    match (country, kind) {
        (Country::Au, Local) => AU_LOCAL,
        (Country::Au, Mobile) => AU_MOBILE,
        (Country::Au, TollFree) => AU_TOLL_FREE,
        (Country::Us, Local | Mobile) => US_AREAS,
        (Country::Ca, Local | Mobile) => CA_AREAS,
        (Country::Us | Country::Ca, TollFree) => NANP_TOLL_FREE,
        (Country::Gb, Local) => GB_LOCAL,
        (Country::Gb, Mobile) => GB_MOBILE,
        (Country::Gb, TollFree) => GB_TOLL_FREE,
        (Country::Nz, Local) => NZ_LOCAL,
        (Country::Nz, Mobile) => NZ_MOBILE,
        (Country::Nz, TollFree) => NZ_TOLL_FREE,
        (Country::Ie, Local) => IE_LOCAL,
        (Country::Ie, Mobile) => IE_MOBILE,
        (Country::Ie, TollFree) => IE_TOLL_FREE,
    }
}

/// Up to `query.limit` numbers (at most [`MAX_LIMIT`]) of the asked kind in the asked country, in
/// its area code if one is given (else from all of them in turn), never one for which
/// `taken(e164)` holds. Every number passes [`check_in`] and [`Checked::is_kind`]. Fewer come
/// back when the blocks run out.
pub fn inventory(
    query: &NumberQuery,
    taken: &dyn Fn(&str) -> bool,
) -> Result<Vec<AvailableNumber>, InventoryError> {
    let (country, kind) = (query.country, query.kind);
    let known = area_codes(country, kind);
    if known.is_empty() {
        return Err(InventoryError::NotOffered { country, kind });
    }
    let areas = match &query.area_code {
        None => known,
        Some(code) => match known.iter().position(|area| area == code) {
            Some(at) => &known[at..=at],
            None => {
                return Err(InventoryError::UnknownAreaCode {
                    area_code: code.clone(),
                    country,
                    kind,
                });
            }
        },
    };
    let blocks: Vec<Block> = areas
        .iter()
        .map(|area| Block::new(country, kind, area))
        .collect();

    let limit = query.limit.min(MAX_LIMIT);
    let budget = SEARCH_BUDGET_BASE + SEARCH_BUDGET_PER_NUMBER * limit;
    let mut found = Vec::with_capacity(limit);
    let mut tried = 0;
    let mut round = 0;
    while found.len() < limit && tried < budget {
        let mut any_left = false;
        for block in &blocks {
            let Some(candidate) = block.nth(round) else {
                continue;
            };
            any_left = true;
            tried += 1;
            if taken(&candidate) {
                continue;
            }
            let Ok(checked) = check_in(&candidate, country) else {
                continue;
            };
            if checked.is_kind(kind) {
                found.push(AvailableNumber {
                    phone_number: checked.e164,
                    friendly_name: checked.national,
                    country,
                    kind,
                });
                if found.len() == limit {
                    break;
                }
            }
        }
        if !any_left {
            break;
        }
        round += 1;
    }
    Ok(found)
}

/// Subscriber numbers under one area code: `+<country code><area><block>` then `free` digits,
/// walked in an order of their own.
struct Block {
    prefix: String,
    free: usize,
    size: u64,
    /// The smallest power of two that holds `size`, as a bit count, and its mask.
    bits: u32,
    mask: u64,
    key: u64,
}

impl Block {
    fn new(country: Country, kind: NumberKind, area: &str) -> Block {
        let (block, free) = subscriber_block(country, kind, area);
        let prefix = format!("+{}{area}{block}", calling_code(country));
        let size = 10u64.pow(free as u32);
        let bits = size.next_power_of_two().trailing_zeros();
        let seed = format!("{}/{}/{prefix}", country.code(), kind.as_str());
        Block {
            key: fnv1a(seed.as_bytes()),
            prefix,
            free,
            size,
            bits,
            mask: (1 << bits) - 1,
        }
    }

    /// The `i`th number of the walk, until the block is exhausted.
    fn nth(&self, i: u64) -> Option<String> {
        (i < self.size).then(|| {
            format!(
                "{}{:0width$}",
                self.prefix,
                self.permute(i),
                width = self.free
            )
        })
    }

    /// A permutation of `0..size`: a bijective mix of `bits`-bit values, reapplied while the
    /// result falls outside the block (cycle walking; under two rounds on average, and it ends
    /// because the cycle through `i` comes back to `i`).
    fn permute(&self, i: u64) -> u64 {
        let mut x = i;
        loop {
            x = self.mix(x);
            if x < self.size {
                return x;
            }
        }
    }

    /// Bijective on `0..2^bits`: xor with a key, multiply by an odd constant, xor-shift; twice.
    fn mix(&self, mut x: u64) -> u64 {
        for key in [self.key, self.key.rotate_left(32)] {
            x = (x ^ key) & self.mask;
            x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15) & self.mask;
            x ^= x >> (self.bits / 2 + 1);
        }
        x
    }
}

/// The fixed digits after the area code and how many digits follow them.
fn subscriber_block(country: Country, kind: NumberKind, area: &str) -> (&'static str, usize) {
    use NumberKind::*;
    match (country, kind, area) {
        // ACMA reserves (0x) 5550 xxxx for fiction.
        (Country::Au, Local, _) => ("5550", 4),
        (Country::Au, Mobile | TollFree, _) => ("", 6),
        // 555-0100 to 555-0199 are reserved for fiction in every NPA.
        (Country::Us | Country::Ca, Local, _) => ("55501", 2),
        (Country::Us | Country::Ca, Mobile | TollFree, _) => ("", 7),
        // Ofcom's drama numbers. Its mobile block, 07700 900xxx, is invalid to libphonenumber.
        (Country::Gb, Local, "20") => ("79460", 3),
        (Country::Gb, Local, "191") => ("4980", 3),
        (Country::Gb, Local, _) => ("4960", 3),
        (Country::Gb, Mobile, _) => ("", 6),
        (Country::Gb, TollFree, "808") => ("1570", 3),
        (Country::Gb, TollFree, _) => ("", 7),
        (Country::Nz | Country::Ie, Local | Mobile, _) => ("", 7),
        (Country::Nz | Country::Ie, TollFree, _) => ("", 6),
    }
}

fn calling_code(country: Country) -> &'static str {
    match country {
        Country::Au => "61",
        Country::Us | Country::Ca => "1",
        Country::Gb => "44",
        Country::Nz => "64",
        Country::Ie => "353",
    }
}

/// 64-bit FNV-1a: small, stable across builds and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const KINDS: [NumberKind; 3] = [NumberKind::Local, NumberKind::Mobile, NumberKind::TollFree];

    fn query(country: Country, kind: NumberKind, area: Option<&str>, limit: usize) -> NumberQuery {
        NumberQuery {
            country,
            kind,
            area_code: area.map(str::to_owned),
            limit,
        }
    }

    fn nothing_taken(_: &str) -> bool {
        false
    }

    fn numbers(query: &NumberQuery) -> Vec<String> {
        inventory(query, &nothing_taken)
            .unwrap()
            .into_iter()
            .map(|n| n.phone_number)
            .collect()
    }

    #[test]
    fn valid_numbers_of_each_country_and_kind() {
        let cases = [
            ("+61255501234", "AU", NumberKind::Local, "(02) 5550 1234"),
            ("+61491570156", "AU", NumberKind::Mobile, "0491 570 156"),
            ("+611800123456", "AU", NumberKind::TollFree, "1800 123 456"),
            ("+12125550123", "US", NumberKind::Local, "(212) 555-0123"),
            ("+18005550123", "US", NumberKind::TollFree, "(800) 555-0123"),
            ("+14165550123", "CA", NumberKind::Local, "(416) 555-0123"),
            ("+442079460123", "GB", NumberKind::Local, "020 7946 0123"),
            ("+441614960000", "GB", NumberKind::Local, "0161 496 0000"),
            ("+447400123456", "GB", NumberKind::Mobile, "07400 123456"),
            ("+448081570000", "GB", NumberKind::TollFree, "0808 157 0000"),
            ("+6493456789", "NZ", NumberKind::Local, "09 345 6789"),
            ("+64211234567", "NZ", NumberKind::Mobile, "021 123 4567"),
            ("+64800123456", "NZ", NumberKind::TollFree, "0800 123 456"),
            ("+35312345678", "IE", NumberKind::Local, "(01) 234 5678"),
            ("+353851234567", "IE", NumberKind::Mobile, "085 123 4567"),
            ("+3531800123456", "IE", NumberKind::TollFree, "1800 123 456"),
        ];
        for (raw, region, kind, national) in cases {
            let checked = check(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(
                checked,
                Checked {
                    e164: raw.to_owned(),
                    national: national.to_owned(),
                    region: Some(region.to_owned()),
                    kind: Some(kind),
                },
                "{raw}"
            );
            let country = Country::parse(region).unwrap();
            assert_eq!(check_in(raw, country), Ok(checked.clone()), "{raw}");
            assert_eq!(national_format(raw).as_deref(), Some(national));
        }
    }

    #[test]
    fn valid_numbers_of_kinds_not_sold_have_no_kind() {
        // Shared-cost.
        let checked = check("+611300123456").unwrap();
        assert_eq!(checked.kind, None);
        assert!(!KINDS.iter().any(|&kind| checked.is_kind(kind)));
    }

    #[test]
    fn nanp_fixed_or_mobile_numbers_serve_as_local_and_mobile() {
        for raw in ["+12125550123", "+14165550123"] {
            let checked = check(raw).unwrap();
            assert_eq!(checked.kind, Some(NumberKind::Local));
            assert!(checked.is_kind(NumberKind::Local));
            assert!(checked.is_kind(NumberKind::Mobile));
            assert!(!checked.is_kind(NumberKind::TollFree));
        }
        // Elsewhere a fixed line is only local.
        assert!(!check("+61255501234").unwrap().is_kind(NumberKind::Mobile));
    }

    #[test]
    fn numbers_not_in_strict_e164_are_rejected() {
        for raw in [
            "0412345678",
            "61255501234",
            "+61 2 5550 1234",
            "+61-2-5550-1234",
            "+1 (212) 555-0123",
            "+12125550123x5",
            " +61255501234",
            "+61255501234 ",
            "+",
            "",
            "+0255501234",
            "+6125550",
            "+1234567890123456",
            "+61２55501234",
            // libphonenumber forgives the trunk prefix; E.164 does not.
            "+610255501234",
        ] {
            assert_eq!(check(raw), Err(NumberError::NotE164), "{raw:?}");
        }
    }

    #[test]
    fn invalid_and_unparseable_numbers_are_rejected() {
        for raw in [
            "+6431234567",   // NZ: no 03 1xx numbers
            "+61955501234",  // AU: no 09 area
            "+12121110123",  // NANP: exchange 111
            "+3531234567",   // IE: too short
            "+447700900123", // Ofcom's drama mobile block
        ] {
            assert_eq!(check(raw), Err(NumberError::Invalid), "{raw}");
        }
        assert_eq!(check("+999123456789"), Err(NumberError::Unparseable));
        assert_eq!(national_format("+6431234567"), None);
    }

    #[test]
    fn numbers_of_another_country_are_refused_with_the_actual_one() {
        let err = check_in("+442079460123", Country::Au).unwrap_err();
        assert_eq!(
            err,
            NumberError::WrongCountry {
                expected: Country::Au,
                actual: Some("GB".to_owned()),
            }
        );
        assert_eq!(err.to_string(), "is a number in GB, not AU");
        // The NANP is shared, but its geographic area codes are not.
        assert_eq!(
            check_in("+14165550123", Country::Us),
            Err(NumberError::WrongCountry {
                expected: Country::Us,
                actual: Some("CA".to_owned()),
            })
        );
        assert!(check_in("+12125550123", Country::Ca).is_err());
        // A Guernsey mobile is +44 but not GB.
        assert!(matches!(
            check_in("+447911123456", Country::Gb),
            Err(NumberError::WrongCountry { actual: Some(region), .. }) if region == "GG"
        ));
        // International freephone has no region.
        let err = check_in("+80012345678", Country::Au).unwrap_err();
        assert_eq!(err.to_string(), "is not a number in AU");
    }

    #[test]
    fn nanp_toll_free_numbers_are_both_us_and_ca() {
        for area in NANP_TOLL_FREE {
            let raw = format!("+1{area}2345678");
            for country in [Country::Us, Country::Ca] {
                let checked = check_in(&raw, country).unwrap_or_else(|e| panic!("{raw}: {e}"));
                assert_eq!(checked.kind, Some(NumberKind::TollFree));
            }
            assert!(check_in(&raw, Country::Au).is_err());
        }
    }

    #[test]
    fn number_errors_read_as_a_field_message() {
        assert_eq!(
            NumberError::NotE164.to_string(),
            "must be an E.164 number such as +61255501234"
        );
        assert_eq!(
            NumberError::Invalid.to_string(),
            "is not a valid number in any numbering plan"
        );
        assert_eq!(
            NumberError::Unparseable.to_string(),
            "could not be read as a phone number"
        );
    }

    #[test]
    fn inventory_offers_valid_numbers_of_every_country_and_kind() {
        for country in Country::ALL {
            for kind in KINDS {
                let found = inventory(&query(country, kind, None, 10), &nothing_taken).unwrap();
                assert_eq!(found.len(), 10, "{country:?} {kind:?}");
                let distinct: HashSet<&str> =
                    found.iter().map(|n| n.phone_number.as_str()).collect();
                assert_eq!(distinct.len(), found.len(), "{country:?} {kind:?}");
                for number in &found {
                    let checked = check_in(&number.phone_number, country)
                        .unwrap_or_else(|e| panic!("{}: {e}", number.phone_number));
                    assert!(checked.is_kind(kind), "{number:?} is {:?}", checked.kind);
                    assert_eq!(number.friendly_name, checked.national);
                    assert_eq!((number.country, number.kind), (country, kind));
                }
            }
        }
    }

    #[test]
    fn inventory_without_an_area_code_mixes_them() {
        for country in Country::ALL {
            for kind in KINDS {
                let areas = area_codes(country, kind);
                let found = numbers(&query(country, kind, None, 50));
                let used = areas
                    .iter()
                    .filter(|area| {
                        let prefix = format!("+{}{area}", calling_code(country));
                        found.iter().any(|n| n.starts_with(&prefix))
                    })
                    .count();
                assert_eq!(used, areas.len(), "{country:?} {kind:?}: {found:?}");
            }
        }
    }

    #[test]
    fn inventory_keeps_to_the_area_code() {
        for country in Country::ALL {
            for kind in KINDS {
                for area in area_codes(country, kind) {
                    let found = numbers(&query(country, kind, Some(area), 3));
                    assert_eq!(found.len(), 3, "{country:?} {kind:?} {area}");
                    let prefix = format!("+{}{area}", calling_code(country));
                    for number in found {
                        assert!(number.starts_with(&prefix), "{number} not in {area}");
                    }
                }
            }
        }
    }

    #[test]
    fn inventory_prefers_fictional_ranges() {
        let au = numbers(&query(Country::Au, NumberKind::Local, Some("2"), 5));
        assert!(au.iter().all(|n| n.starts_with("+6125550")), "{au:?}");
        let us = numbers(&query(Country::Us, NumberKind::Local, Some("415"), 5));
        assert!(us.iter().all(|n| n.starts_with("+141555501")), "{us:?}");
        let gb = numbers(&query(Country::Gb, NumberKind::Local, Some("20"), 5));
        assert!(gb.iter().all(|n| n.starts_with("+442079460")), "{gb:?}");
    }

    #[test]
    fn inventory_is_deterministic_and_a_larger_limit_extends_a_smaller_one() {
        let small = numbers(&query(Country::Gb, NumberKind::Mobile, None, 5));
        let large = numbers(&query(Country::Gb, NumberKind::Mobile, None, 20));
        assert_eq!(
            small,
            numbers(&query(Country::Gb, NumberKind::Mobile, None, 5))
        );
        assert_eq!(small[..], large[..5]);
    }

    #[test]
    fn inventory_skips_taken_numbers() {
        let all = numbers(&query(Country::Au, NumberKind::Mobile, None, 10));
        let taken: HashSet<String> = all[..3].iter().cloned().collect();
        let found: Vec<String> =
            inventory(&query(Country::Au, NumberKind::Mobile, None, 7), &|e164| {
                taken.contains(e164)
            })
            .unwrap()
            .into_iter()
            .map(|n| n.phone_number)
            .collect();
        assert_eq!(found[..], all[3..]);
    }

    #[test]
    fn inventory_ends_when_a_block_is_exhausted() {
        // 555-0100 to 555-0199: a hundred numbers, all of them taken.
        let found = inventory(
            &query(Country::Us, NumberKind::Local, Some("212"), 10),
            &|e164| e164.starts_with("+121255501"),
        )
        .unwrap();
        assert!(found.is_empty(), "{found:?}");
        // With all but two taken, those two are found.
        let mut found = numbers_with(
            &query(Country::Us, NumberKind::Local, Some("212"), 10),
            &|e164| !matches!(e164, "+12125550123" | "+12125550177"),
        );
        found.sort();
        assert_eq!(found, ["+12125550123", "+12125550177"]);
    }

    fn numbers_with(query: &NumberQuery, taken: &dyn Fn(&str) -> bool) -> Vec<String> {
        inventory(query, taken)
            .unwrap()
            .into_iter()
            .map(|n| n.phone_number)
            .collect()
    }

    #[test]
    fn inventory_limit_is_respected_and_capped() {
        assert_eq!(
            numbers(&query(Country::Nz, NumberKind::Local, None, 0)),
            Vec::<String>::new()
        );
        assert_eq!(
            numbers(&query(Country::Nz, NumberKind::Local, None, 1)).len(),
            1
        );
        assert_eq!(
            numbers(&query(Country::Nz, NumberKind::Local, None, 1_000)).len(),
            MAX_LIMIT
        );
        // A single 555-01xx block holds enough for the cap.
        assert_eq!(
            numbers(&query(
                Country::Ca,
                NumberKind::Local,
                Some("416"),
                usize::MAX
            ))
            .len(),
            MAX_LIMIT
        );
    }

    #[test]
    fn inventory_refuses_unknown_area_codes() {
        for (country, kind, area) in [
            (Country::Au, NumberKind::Local, "415"),
            (Country::Au, NumberKind::Local, "02"),
            (Country::Au, NumberKind::Local, ""),
            (Country::Au, NumberKind::Local, "2a"),
            (Country::Au, NumberKind::TollFree, "1300"),
            (Country::Us, NumberKind::Local, "416"),
            (Country::Gb, NumberKind::Mobile, "7911"),
            (Country::Ie, NumberKind::Mobile, "1"),
        ] {
            assert_eq!(
                inventory(&query(country, kind, Some(area), 5), &nothing_taken),
                Err(InventoryError::UnknownAreaCode {
                    area_code: area.to_owned(),
                    country,
                    kind,
                }),
                "{country:?} {kind:?} {area}"
            );
        }
        let err = InventoryError::UnknownAreaCode {
            area_code: "415".to_owned(),
            country: Country::Au,
            kind: NumberKind::Local,
        };
        assert_eq!(
            err.to_string(),
            "\"415\" is not an area code for local numbers in AU; use one of 2, 3, 7, 8"
        );
        assert_eq!(
            InventoryError::NotOffered {
                country: Country::Nz,
                kind: NumberKind::TollFree,
            }
            .to_string(),
            "tollfree numbers are not offered in NZ"
        );
    }

    #[test]
    fn a_block_walk_visits_every_number_once() {
        for (country, kind, area) in [
            (Country::Us, NumberKind::Local, "212"),
            (Country::Gb, NumberKind::Local, "161"),
            (Country::Au, NumberKind::Local, "2"),
        ] {
            let block = Block::new(country, kind, area);
            let walked: HashSet<String> = (0..block.size).filter_map(|i| block.nth(i)).collect();
            assert_eq!(walked.len() as u64, block.size, "{}", block.prefix);
            assert!(
                walked
                    .iter()
                    .all(|n| n.len() == block.prefix.len() + block.free)
            );
            assert_eq!(block.nth(block.size), None);
        }
    }

    #[test]
    fn every_country_and_kind_has_area_codes_of_digits() {
        for country in Country::ALL {
            for kind in KINDS {
                let areas = area_codes(country, kind);
                assert!(!areas.is_empty(), "{country:?} {kind:?}");
                for area in areas {
                    assert!(area.bytes().all(|b| b.is_ascii_digit()), "{area}");
                }
            }
        }
    }
}
