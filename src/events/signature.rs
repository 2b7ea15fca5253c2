//! The timestamped HMAC-SHA256 signature scheme of webhook requests:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>[,v1=…]`. A receiver
//! recomputes the HMAC over the timestamp and the raw body, compares it in constant time with
//! any `v1`, and rejects timestamps outside its replay window. Stripe signs its webhooks the same
//! way (`Stripe-Signature`), so billing verifies those with [`verify`] too.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header CallGenius signs its webhook requests in.
pub const HEADER: &str = "x-callgenius-signature";

/// The MAC over `"<timestamp>.<body>"`, the timestamp as the header spells it.
fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value: the timestamp and one `v1` per secret, in order.
pub fn sign(secrets: &[&str], timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac(secret, &t, body).finalize().into_bytes()));
    }
    header
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the replay window")]
    Expired,
    #[error("no signature matches")]
    Mismatch,
}

/// Checks `header` against `body` with `secret` at unix time `now`, allowing `tolerance_secs`
/// of clock difference either way. Unknown schemes in the header are ignored.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t),
            Some(("v1", hex)) => signatures.push(hex),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(VerifyError::Malformed)?;
    let seconds: i64 = timestamp.parse().map_err(|_| VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if (now - seconds).abs() > tolerance_secs {
        return Err(VerifyError::Expired);
    }
    let mac = mac(secret, timestamp, body);
    let matches = signatures
        .iter()
        .any(|hex| hex::decode(hex).is_ok_and(|tag| mac.clone().verify_slice(&tag).is_ok()));
    if matches {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// A new signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    format!("whsec_{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_secret_only_and_within_the_window() {
        let body = br#"{"id":"e1","type":"call.started"}"#;
        let header = sign(&["whsec_a"], 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(header.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(verify("whsec_a", &header, body, 1_700_000_100, 300), Ok(()));
        assert_eq!(
            verify("whsec_b", &header, body, 1_700_000_100, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_a", &header, b"{}", 1_700_000_100, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_a", &header, body, 1_700_000_301, 300),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            verify("whsec_a", "v1=00", body, 1_700_000_000, 300),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn during_a_rotation_either_secret_verifies() {
        let body = b"payload";
        let header = sign(&["new", "old"], 10, body);
        assert_eq!(header.matches("v1=").count(), 2);
        assert_eq!(verify("new", &header, body, 10, 300), Ok(()));
        assert_eq!(verify("old", &header, body, 10, 300), Ok(()));
        assert_eq!(
            verify("other", &header, body, 10, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn the_mac_is_over_the_timestamp_a_dot_and_the_raw_body() {
        // Independently: HMAC-SHA256("key", "5.abc").
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"key").unwrap();
        mac.update(b"5.abc");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sign(&["key"], 5, b"abc"), format!("t=5,v1={expected}"));
    }

    #[test]
    fn secrets_are_random_and_prefixed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64);
        assert_ne!(a, b);
    }
}
