//! Request rate limits (GCRA through `governor`): per API token for the whole API, a stricter one
//! per token for the webhook management routes, per client address for login and register, and
//! per client address for carriers' answer webhooks. Each limiter allows a burst of its per-minute quota and then
//! refills evenly, so the request after the quota within a minute is refused.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::{ClientAddressSource, Limits};
use crate::domain::TokenId;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { limit: u32, remaining: u32 },
    Limited { limit: u32, retry_after_secs: u64 },
}

pub struct RateLimiters {
    per_token: Keyed<TokenId>,
    per_token_limit: u32,
    per_token_webhooks: Keyed<TokenId>,
    per_token_webhooks_limit: u32,
    per_address: Keyed<IpAddr>,
    per_address_limit: u32,
    per_address_carrier: Keyed<IpAddr>,
    per_address_carrier_limit: u32,
    pub client_address: ClientAddressSource,
}

impl RateLimiters {
    pub fn new(limits: &Limits) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN));
        Self {
            per_token: RateLimiter::keyed(quota(limits.requests_per_minute)).with_middleware(),
            per_token_limit: limits.requests_per_minute,
            per_token_webhooks: RateLimiter::keyed(quota(limits.webhook_requests_per_minute))
                .with_middleware(),
            per_token_webhooks_limit: limits.webhook_requests_per_minute,
            per_address: RateLimiter::keyed(quota(limits.auth_requests_per_minute))
                .with_middleware(),
            per_address_limit: limits.auth_requests_per_minute,
            per_address_carrier: RateLimiter::keyed(quota(DEFAULT_CARRIER_PER_MINUTE))
                .with_middleware(),
            per_address_carrier_limit: DEFAULT_CARRIER_PER_MINUTE,
            client_address: limits.client_address,
        }
    }

    /// Sets the per-address limit on carriers' answer webhooks (requests a minute).
    pub fn with_carrier_webhooks(mut self, per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        self.per_address_carrier = RateLimiter::keyed(quota).with_middleware();
        self.per_address_carrier_limit = per_minute;
        self
    }

    /// The carriers' answer webhooks' limit per client address.
    pub fn check_carrier_address(&self, address: IpAddr) -> Decision {
        decide(
            &self.per_address_carrier,
            &address,
            self.per_address_carrier_limit,
        )
    }

    pub fn check_token(&self, token: TokenId) -> Decision {
        decide(&self.per_token, &token, self.per_token_limit)
    }

    /// The webhook routes' own limit, charged in addition to [`Self::check_token`].
    pub fn check_webhooks(&self, token: TokenId) -> Decision {
        decide(
            &self.per_token_webhooks,
            &token,
            self.per_token_webhooks_limit,
        )
    }

    pub fn check_address(&self, address: IpAddr) -> Decision {
        decide(&self.per_address, &address, self.per_address_limit)
    }

    /// Forgets keys whose buckets are full again; called periodically to bound memory.
    pub fn forget_idle(&self) {
        self.per_token.retain_recent();
        self.per_token_webhooks.retain_recent();
        self.per_address.retain_recent();
        self.per_address_carrier.retain_recent();
    }
}

/// The carriers' answer-webhook limit until [`RateLimiters::with_carrier_webhooks`] sets one.
const DEFAULT_CARRIER_PER_MINUTE: u32 = 60;

fn decide<K: Clone + Eq + std::hash::Hash>(limiter: &Keyed<K>, key: &K, limit: u32) -> Decision {
    match limiter.check_key(key) {
        Ok(snapshot) => Decision::Allowed {
            limit,
            remaining: snapshot.remaining_burst_capacity(),
        },
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            // Round up: retrying after a truncated delay would be refused again.
            let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Decision::Limited {
                limit,
                retry_after_secs: retry_after_secs.max(1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_after_the_quota_is_limited_per_key() {
        let limiters = RateLimiters::new(&Limits {
            requests_per_minute: 3,
            auth_requests_per_minute: 1,
            webhook_requests_per_minute: 2,
            max_body_bytes: 1024,
            max_upload_bytes: 1024,
            client_address: ClientAddressSource::Socket,
        });
        let a = TokenId(1);
        for expected in [2, 1, 0] {
            assert_eq!(
                limiters.check_token(a),
                Decision::Allowed {
                    limit: 3,
                    remaining: expected
                }
            );
        }
        match limiters.check_token(a) {
            Decision::Limited {
                limit: 3,
                retry_after_secs,
            } => assert!((1..=20).contains(&retry_after_secs)),
            other => panic!("expected a limit, got {other:?}"),
        }
        assert!(matches!(
            limiters.check_token(TokenId(2)),
            Decision::Allowed { .. }
        ));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(matches!(
            limiters.check_address(ip),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            limiters.check_address(ip),
            Decision::Limited { .. }
        ));
        // The carrier webhooks' limit is its own: spent logins do not touch it.
        let limiters = limiters.with_carrier_webhooks(2);
        assert!(matches!(
            limiters.check_carrier_address(ip),
            Decision::Allowed { limit: 2, .. }
        ));
        assert!(matches!(
            limiters.check_carrier_address(ip),
            Decision::Allowed { .. }
        ));
        assert!(matches!(
            limiters.check_carrier_address(ip),
            Decision::Limited { limit: 2, .. }
        ));
    }
}
