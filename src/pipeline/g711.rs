//! G.711 µ-law and A-law (ITU-T G.711), sample by sample: 8-bit codes to 16-bit linear PCM and
//! back. Decoding is a table lookup; encoding is a few shifts. No allocation.

/// Decodes one µ-law byte to a 16-bit sample.
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

/// Decodes one A-law byte to a 16-bit sample.
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

/// Encodes a 16-bit sample as µ-law.
pub fn linear_to_ulaw(sample: i16) -> u8 {
    let mut value = i32::from(sample);
    let sign = if value < 0 {
        value = -value;
        0x80
    } else {
        0
    };
    value = value.min(ULAW_CLIP) + ULAW_BIAS;
    // The biased value has its top bit between bit 7 and bit 14: that position is the segment.
    let exponent = (31 - (value as u32).leading_zeros()) as i32 - 7;
    let mantissa = (value >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// Encodes a 16-bit sample as A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut value = i32::from(sample);
    let sign = if value >= 0 {
        0x80
    } else {
        value = -value - 1;
        0x00
    };
    value = value.min(0x7FFF);
    let code = if value < 256 {
        (value >> 4) as u8
    } else {
        let exponent = (31 - (value as u32).leading_zeros()) as i32 - 7;
        let mantissa = (value >> (exponent + 3)) & 0x0F;
        ((exponent << 4) as u8) | mantissa as u8
    };
    (sign | code) ^ 0x55
}

const fn ulaw_decode(code: u8) -> i16 {
    let code = !code;
    let sign = code & 0x80;
    let exponent = ((code >> 4) & 0x07) as i32;
    let mantissa = (code & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode(code: u8) -> i16 {
    let code = code ^ 0x55;
    let sign = code & 0x80;
    let exponent = ((code >> 4) & 0x07) as i32;
    let mantissa = (code & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if sign != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

macro_rules! decode_table {
    ($decode:ident) => {{
        let mut out = [0i16; 256];
        let mut i = 0;
        while i < 256 {
            out[i] = $decode(i as u8);
            i += 1;
        }
        out
    }};
}

static ULAW_TABLE: [i16; 256] = decode_table!(ulaw_decode);
static ALAW_TABLE: [i16; 256] = decode_table!(alaw_decode);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_a_decode_encode_round_trip() {
        for code in 0..=255u8 {
            let ulaw = ulaw_to_linear(code);
            // 0x7F and 0xFF are both zero in µ-law; zero encodes as 0xFF.
            if code != 0x7F {
                assert_eq!(
                    linear_to_ulaw(ulaw),
                    code,
                    "µ-law code {code:#04x} ({ulaw})"
                );
            }
            assert_eq!(
                linear_to_alaw(alaw_to_linear(code)),
                code,
                "A-law code {code:#04x}"
            );
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x00), -32_124);
        assert_eq!(ulaw_to_linear(0x80), 32_124);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
    }

    #[test]
    fn encoding_error_stays_within_the_step_size() {
        for sample in (-32_000i16..32_000).step_by(37) {
            let back = i32::from(ulaw_to_linear(linear_to_ulaw(sample)));
            let error = (back - i32::from(sample)).abs();
            assert!(
                error <= (i32::from(sample).abs() / 16).max(8) + 4,
                "{sample} → {back}"
            );
            let back = i32::from(alaw_to_linear(linear_to_alaw(sample)));
            let error = (back - i32::from(sample)).abs();
            assert!(
                error <= (i32::from(sample).abs() / 16).max(16) + 4,
                "{sample} → {back}"
            );
        }
    }
}
