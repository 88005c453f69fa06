//! Stage: rate limiting with governor's GCRA, one budget per route or one per client IP.
//! The clock is a type parameter so that tests drive it by hand; IPv6 clients are keyed
//! by their /64, since one host can hold a whole /64 and rotate through it for free.

use super::Reject;
use crate::config::{RateKey, RateSpec};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::Quota;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

type Direct<C> =
    governor::RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Keyed<C> = governor::RateLimiter<
    IpAddr,
    DashMapStateStore<IpAddr>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

enum Budget<C: Clock> {
    Route(Direct<C>),
    ClientIp(Keyed<C>),
}

/// A route's rate limiter.
pub struct RateLimiter<C: Clock = DefaultClock> {
    budget: Budget<C>,
    clock: C,
    pub spec: RateSpec,
}

impl<C: Clock> std::fmt::Debug for RateLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("spec", &self.spec)
            .finish()
    }
}

fn quota(spec: &RateSpec) -> Quota {
    let period = Duration::from_secs_f64(1.0 / spec.per_second).max(Duration::from_nanos(1));
    let burst = NonZeroU32::new(spec.burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(period)
        .expect("period is non-zero")
        .allow_burst(burst)
}

impl RateLimiter<DefaultClock> {
    pub fn new(spec: RateSpec) -> Self {
        Self::with_clock(spec, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimiter<C> {
    pub fn with_clock(spec: RateSpec, clock: C) -> Self {
        let q = quota(&spec);
        let budget = match spec.key {
            RateKey::Route => {
                Budget::Route(governor::RateLimiter::direct_with_clock(q, clock.clone()))
            }
            RateKey::ClientIp => {
                Budget::ClientIp(governor::RateLimiter::dashmap_with_clock(q, clock.clone()))
            }
        };
        RateLimiter {
            budget,
            clock,
            spec,
        }
    }

    /// Takes one cell of the budget for `client`, or says when to come back.
    pub fn check(&self, client: IpAddr) -> Result<(), Reject> {
        let result = match &self.budget {
            Budget::Route(l) => l.check(),
            Budget::ClientIp(l) => l.check_key(&key_for(client)),
        };
        result.map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            // Retry-After is in whole seconds; round up, and never say 0.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Reject::RateLimited {
                retry_after_secs: secs.max(1),
            }
        })
    }

    /// Forgets client IPs whose budget is full again, so the table stays small.
    pub fn prune(&self) {
        if let Budget::ClientIp(l) = &self.budget {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Number of client IPs tracked (0 for a per-route budget).
    pub fn tracked(&self) -> usize {
        match &self.budget {
            Budget::Route(_) => 0,
            Budget::ClientIp(l) => l.len(),
        }
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
pub fn key_for(ip: IpAddr) -> IpAddr {
    match crate::net::canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limiter(
        per_second: f64,
        burst: u32,
        key: RateKey,
    ) -> (RateLimiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let spec = RateSpec {
            per_second,
            burst,
            key,
        };
        (RateLimiter::with_clock(spec, clock.clone()), clock)
    }

    const A: &str = "203.0.113.1";
    const B: &str = "203.0.113.2";

    #[test]
    fn burst_then_refill() {
        let (l, clock) = limiter(2.0, 3, RateKey::Route);
        let ip = A.parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(ip).is_ok());
        }
        assert_eq!(
            l.check(ip),
            Err(Reject::RateLimited {
                retry_after_secs: 1
            })
        );
        clock.advance(Duration::from_millis(500));
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_err());
    }

    #[test]
    fn per_route_budget_is_shared_by_all_clients() {
        let (l, _) = limiter(1.0, 1, RateKey::Route);
        assert!(l.check(A.parse().unwrap()).is_ok());
        assert!(l.check(B.parse().unwrap()).is_err());
    }

    #[test]
    fn per_client_budgets_are_separate() {
        let (l, _) = limiter(1.0, 1, RateKey::ClientIp);
        assert!(l.check(A.parse().unwrap()).is_ok());
        assert!(l.check(A.parse().unwrap()).is_err());
        assert!(l.check(B.parse().unwrap()).is_ok());
        assert_eq!(l.tracked(), 2);
    }

    #[test]
    fn ipv6_clients_share_their_slash_64() {
        let (l, _) = limiter(1.0, 1, RateKey::ClientIp);
        assert!(l.check("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(l.check("2001:db8:1:2:ffff::9".parse().unwrap()).is_err());
        assert!(l.check("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn retry_after_rounds_up_slow_rates() {
        let (l, clock) = limiter(0.1, 1, RateKey::Route);
        let ip = A.parse().unwrap();
        assert!(l.check(ip).is_ok());
        assert_eq!(
            l.check(ip),
            Err(Reject::RateLimited {
                retry_after_secs: 10
            })
        );
        clock.advance(Duration::from_millis(2500));
        assert_eq!(
            l.check(ip),
            Err(Reject::RateLimited {
                retry_after_secs: 8
            })
        );
    }

    #[test]
    fn prune_forgets_idle_clients() {
        let (l, clock) = limiter(10.0, 1, RateKey::ClientIp);
        assert!(l.check(A.parse().unwrap()).is_ok());
        assert_eq!(l.tracked(), 1);
        clock.advance(Duration::from_secs(5));
        l.prune();
        assert_eq!(l.tracked(), 0);
    }
}
