//! The request pipeline's stages, each a synchronous decision that returns
//! `Result<_, Reject>` and can be tested without a socket: route match, method, client
//! IP, IP allowlist, rate limit, size. The body read, verification and the forward are
//! driven by `server`; [`Reject`] is the one type every failure becomes, and its status
//! and log reason come from exhaustive matches.

pub mod body;
pub mod client_ip;
pub mod dedup;
pub mod framing;
pub mod rate;
pub mod route;

use crate::net::IpSet;
use crate::verify::VerifyError;
use http::{Method, StatusCode};
use std::net::IpAddr;

/// Every way a request can fail, from the first stage to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// A request head that a proxy must not pass on (smuggling shapes, a bad Host).
    Malformed(framing::Malformed),
    UnknownRoute,
    MethodNotAllowed,
    IpNotAllowed,
    RateLimited {
        retry_after_secs: u64,
    },
    BodyTooLarge,
    /// The client's body could not be read (reset, malformed chunking, …).
    BodyRead,
    /// The client did not send its whole body within the body deadline.
    BodyTimeout,
    /// The client's body fell behind `limits.body_min_rate` after its grace period.
    BodyTooSlow,
    Verify(VerifyError),
    /// A delivery id already accepted within the dedup window: 200, nothing forwarded.
    Duplicate,
    /// A copy of a delivery whose first copy is being forwarded right now.
    DuplicateInFlight,
    /// A handshake the route recognises but refuses (a wrong Meta verify token, a second
    /// Asana secret).
    HandshakeRefused,
    /// The upstream answered 5xx (or a status a webhook sender cannot act on).
    UpstreamStatus,
    /// The upstream could not be reached (refused, DNS, connect timeout).
    UpstreamUnreachable,
    /// The connection to the upstream broke after it was made (reset, bad response).
    UpstreamBroken,
    /// The upstream did not answer within the route's `upstream_timeout`.
    UpstreamTimeout,
    /// The TLS handshake with an https upstream failed (certificate, name, protocol).
    UpstreamTls,
    /// A queued route's store is at `max_bytes` or `max_deliveries`: retry later.
    StoreFull,
    /// A queued route's store failed (disk, I/O): retry later.
    StoreUnavailable,
}

impl Reject {
    /// The status the sender sees; `reject_status` is the route's answer to a failed
    /// verification (406 unless configured).
    pub fn status(self, reject_status: StatusCode) -> StatusCode {
        match self {
            Reject::Malformed(m) => m.status(),
            Reject::UnknownRoute => StatusCode::NOT_FOUND,
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::IpNotAllowed => StatusCode::FORBIDDEN,
            Reject::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reject::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reject::BodyRead => StatusCode::BAD_REQUEST,
            Reject::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Reject::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            Reject::Verify(_) => reject_status,
            Reject::Duplicate => StatusCode::OK,
            Reject::DuplicateInFlight => StatusCode::SERVICE_UNAVAILABLE,
            Reject::HandshakeRefused => StatusCode::FORBIDDEN,
            Reject::UpstreamStatus => StatusCode::BAD_GATEWAY,
            Reject::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            Reject::UpstreamBroken => StatusCode::BAD_GATEWAY,
            Reject::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reject::UpstreamTls => StatusCode::BAD_GATEWAY,
            Reject::StoreFull | Reject::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short reason code sent in the body and logged (and, later, the metric label).
    pub fn reason(self) -> &'static str {
        match self {
            Reject::Malformed(m) => m.reason(),
            Reject::UnknownRoute => "unknown_route",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::IpNotAllowed => "ip_not_allowed",
            Reject::RateLimited { .. } => "rate_limited",
            Reject::BodyTooLarge => "body_too_large",
            Reject::BodyRead => "body_read_error",
            Reject::BodyTimeout => "body_timeout",
            Reject::BodyTooSlow => "body_too_slow",
            Reject::Verify(e) => e.code(),
            Reject::Duplicate => "duplicate",
            Reject::DuplicateInFlight => "duplicate_in_flight",
            Reject::HandshakeRefused => "handshake_refused",
            Reject::UpstreamStatus => "upstream_error_status",
            Reject::UpstreamUnreachable => "upstream_unreachable",
            Reject::UpstreamBroken => "upstream_broken",
            Reject::UpstreamTimeout => "upstream_timeout",
            Reject::UpstreamTls => "upstream_tls_failed",
            Reject::StoreFull => "store_full",
            Reject::StoreUnavailable => "store_unavailable",
        }
    }

    /// The outcome class logged for this failure.
    pub fn outcome(self) -> &'static str {
        match self {
            Reject::Malformed(_)
            | Reject::UnknownRoute
            | Reject::MethodNotAllowed
            | Reject::IpNotAllowed
            | Reject::RateLimited { .. }
            | Reject::BodyTooLarge
            | Reject::BodyRead
            | Reject::BodyTimeout
            | Reject::BodyTooSlow
            | Reject::Verify(_)
            | Reject::DuplicateInFlight
            | Reject::HandshakeRefused => "rejected",
            Reject::Duplicate => "duplicate",
            Reject::UpstreamStatus
            | Reject::UpstreamUnreachable
            | Reject::UpstreamBroken
            | Reject::UpstreamTimeout
            | Reject::UpstreamTls => "upstream_failed",
            Reject::StoreFull | Reject::StoreUnavailable => "store_failed",
        }
    }
}

/// Stage: webhooks are POSTs.
pub fn check_method(method: &Method) -> Result<(), Reject> {
    if method == Method::POST {
        Ok(())
    } else {
        Err(Reject::MethodNotAllowed)
    }
}

/// Stage: the route's IP allowlist, if it has one.
pub fn check_allowlist(ip: IpAddr, allow: Option<&IpSet>) -> Result<(), Reject> {
    match allow {
        Some(set) if !set.contains(ip) => Err(Reject::IpNotAllowed),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::parse_net;

    #[test]
    fn every_reject_has_its_status_and_reason() {
        let r406 = StatusCode::NOT_ACCEPTABLE;
        let cases = [
            (Reject::UnknownRoute, 404, "unknown_route"),
            (Reject::MethodNotAllowed, 405, "method_not_allowed"),
            (Reject::IpNotAllowed, 403, "ip_not_allowed"),
            (
                Reject::RateLimited {
                    retry_after_secs: 1,
                },
                429,
                "rate_limited",
            ),
            (Reject::BodyTooLarge, 413, "body_too_large"),
            (Reject::BodyRead, 400, "body_read_error"),
            (Reject::BodyTimeout, 408, "body_timeout"),
            (Reject::BodyTooSlow, 408, "body_too_slow"),
            (
                Reject::Verify(VerifyError::SignatureMismatch),
                406,
                "signature_mismatch",
            ),
            (
                Reject::Verify(VerifyError::TimestampStale),
                406,
                "timestamp_stale",
            ),
            (Reject::Duplicate, 200, "duplicate"),
            (Reject::DuplicateInFlight, 503, "duplicate_in_flight"),
            (Reject::HandshakeRefused, 403, "handshake_refused"),
            (Reject::UpstreamStatus, 502, "upstream_error_status"),
            (Reject::UpstreamUnreachable, 502, "upstream_unreachable"),
            (Reject::UpstreamBroken, 502, "upstream_broken"),
            (Reject::UpstreamTimeout, 504, "upstream_timeout"),
            (Reject::UpstreamTls, 502, "upstream_tls_failed"),
            (Reject::StoreFull, 503, "store_full"),
            (Reject::StoreUnavailable, 503, "store_unavailable"),
        ];
        for (r, status, reason) in cases {
            assert_eq!(r.status(r406).as_u16(), status, "{r:?}");
            assert_eq!(r.reason(), reason);
            let body = crate::server::reason_body(r);
            assert_eq!(
                body,
                format!("{reason}\n").as_bytes(),
                "{r:?} has a static body line"
            );
        }
        assert_eq!(
            Reject::Verify(VerifyError::SignatureMissing).status(StatusCode::BAD_REQUEST),
            400
        );
        assert_eq!(Reject::UpstreamTimeout.outcome(), "upstream_failed");
        assert_eq!(Reject::IpNotAllowed.outcome(), "rejected");
    }

    #[test]
    fn only_post_passes() {
        assert!(check_method(&Method::POST).is_ok());
        for m in [
            Method::GET,
            Method::PUT,
            Method::HEAD,
            Method::OPTIONS,
            Method::DELETE,
        ] {
            assert_eq!(check_method(&m), Err(Reject::MethodNotAllowed));
        }
    }

    #[test]
    fn allowlist() {
        let set = IpSet::new(vec![parse_net("203.0.113.0/24").unwrap()]);
        assert!(check_allowlist("203.0.113.9".parse().unwrap(), Some(&set)).is_ok());
        assert_eq!(
            check_allowlist("198.51.100.1".parse().unwrap(), Some(&set)),
            Err(Reject::IpNotAllowed)
        );
        assert!(check_allowlist("198.51.100.1".parse().unwrap(), None).is_ok());
    }
}
