//! Stream tokens: short-lived, signed credentials that bind a media stream to one call, its
//! tenant and its agent. The carrier receives one in the set-up answer (a TwiML `<Parameter>`,
//! or the `test-call` response) and presents it in the stream's `start` message; the engine
//! checks the signature and expiry without a database round trip, then starts the call once.
//!
//! Format: `v1.<base64url(payload)>.<base64url(HMAC-SHA256(secret, "v1." + payload))>`, payload
//! `call.tenant.agent.expires_unix`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::domain::{AgentId, CallId, TenantId};

/// How long a token admits a stream after it is issued.
pub const TOKEN_TTL_SECS: i64 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamClaims {
    pub call: CallId,
    pub tenant: TenantId,
    pub agent: AgentId,
    /// Unix seconds.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed stream token")]
    Malformed,
    #[error("stream token signature does not match")]
    BadSignature,
    #[error("stream token expired")]
    Expired,
}

/// Signs and verifies stream tokens with one secret (shared by every engine node).
pub struct StreamTokens {
    secret: SecretBox<[u8]>,
}

impl StreamTokens {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: SecretBox::new(Box::from(secret)),
        }
    }

    /// A process-local random secret, for a single node with no configured secret.
    pub fn random() -> Self {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        Self::new(&secret)
    }

    fn mac(&self, signed: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.secret.expose_secret())
            .expect("HMAC takes keys of any length");
        mac.update(signed.as_bytes());
        mac
    }

    pub fn issue(&self, claims: StreamClaims) -> String {
        let payload = format!(
            "{}.{}.{}.{}",
            claims.call, claims.tenant, claims.agent, claims.expires_at
        );
        let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(payload));
        let tag = self.mac(&signed).finalize().into_bytes();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The signature of a recording URL: hex HMAC-SHA256 over `rec1.<tenant>.<call>.<expires>`,
    /// with the same secret as stream tokens (a domain prefix keeps the two apart).
    pub fn sign_recording(&self, tenant: TenantId, call: CallId, expires_at: i64) -> String {
        let signed = format!("rec1.{tenant}.{call}.{expires_at}");
        hex::encode(self.mac(&signed).finalize().into_bytes())
    }

    /// Checks a recording URL's signature (in constant time), then its expiry at `now`.
    pub fn verify_recording(
        &self,
        tenant: TenantId,
        call: CallId,
        expires_at: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), TokenError> {
        let tag = hex::decode(signature).map_err(|_| TokenError::Malformed)?;
        self.mac(&format!("rec1.{tenant}.{call}.{expires_at}"))
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        if now > expires_at {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// Checks the signature (in constant time) and expiry at `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<StreamClaims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(signed)
            .verify_slice(&tag)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = signed.strip_prefix("v1.").ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let payload = String::from_utf8(payload).map_err(|_| TokenError::Malformed)?;
        let fields: Vec<i64> = payload
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| TokenError::Malformed)?;
        let [call, tenant, agent, expires_at] = fields[..] else {
            return Err(TokenError::Malformed);
        };
        if now > expires_at {
            return Err(TokenError::Expired);
        }
        Ok(StreamClaims {
            call: CallId(call),
            tenant: TenantId(tenant),
            agent: AgentId(agent),
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recording_signatures_bind_tenant_call_and_expiry() {
        use crate::domain::{CallId, TenantId};
        let tokens = super::StreamTokens::new(b"secret");
        let sig = tokens.sign_recording(TenantId(1), CallId(7), 1_000);
        assert!(
            tokens
                .verify_recording(TenantId(1), CallId(7), 1_000, &sig, 999)
                .is_ok()
        );
        assert_eq!(
            tokens.verify_recording(TenantId(1), CallId(7), 1_000, &sig, 1_001),
            Err(super::TokenError::Expired)
        );
        for (tenant, call, expires) in [(2, 7, 1_000), (1, 8, 1_000), (1, 7, 2_000)] {
            assert_eq!(
                tokens.verify_recording(TenantId(tenant), CallId(call), expires, &sig, 0),
                Err(super::TokenError::BadSignature)
            );
        }
        assert_eq!(
            tokens.verify_recording(TenantId(1), CallId(7), 1_000, "zz", 0),
            Err(super::TokenError::Malformed)
        );
    }

    use super::*;

    fn claims() -> StreamClaims {
        StreamClaims {
            call: CallId(7),
            tenant: TenantId(3),
            agent: AgentId(42),
            expires_at: 1_000,
        }
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let tokens = StreamTokens::new(b"secret");
        let token = tokens.issue(claims());
        assert!(token.starts_with("v1."));
        assert_eq!(tokens.verify(&token, 1_000), Ok(claims()));
        assert_eq!(tokens.verify(&token, 1_001), Err(TokenError::Expired));
    }

    #[test]
    fn tampering_and_other_secrets_are_refused() {
        let tokens = StreamTokens::new(b"secret");
        let token = tokens.issue(claims());
        assert_eq!(
            StreamTokens::new(b"other").verify(&token, 0),
            Err(TokenError::BadSignature)
        );
        let forged_payload = URL_SAFE_NO_PAD.encode("8.3.42.1000");
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(
            tokens.verify(&parts.join("."), 0),
            Err(TokenError::BadSignature)
        );
        for junk in ["", "v1", "v1.x", "v1.x.y", "v1..", "a.b.c.d"] {
            assert!(tokens.verify(junk, 0).is_err(), "{junk:?}");
        }
    }
}
