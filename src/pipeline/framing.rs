//! Stage: the request head's framing and Host, checked before anything else. hyper
//! parses HTTP/1.1 leniently where RFC 9112 lets a server choose, and a proxy must choose
//! strictly (../shared/hardening.md): a message that two parsers could frame differently
//! is refused with 400 and never forwarded, and the connection is closed after the answer.
//!
//! - Content-Length together with Transfer-Encoding (RFC 9112 §6.1: "ought to be
//!   handled as an error"; HAProxy and Envoy refuse it);
//! - Content-Length sent twice, or as a list (`5, 5`), even with equal values;
//! - any Transfer-Encoding other than exactly one `chunked`;
//! - `_` in a header name (nginx and Envoy's edge profile drop or refuse them: a back
//!   end that maps `_` to `-` would see a header we never checked);
//! - HTTP/1.1 without exactly one valid Host (RFC 9112 §3.2), or a Host that disagrees
//!   with an absolute-form request target.
//!
//! The HTTP/1 codec ([`crate::h1::codec`]) keeps every field as sent (hyper's parser
//! drops Content-Length when Transfer-Encoding is present and keeps one of several equal
//! Content-Lengths, which is why the gateway reads HTTP/1 itself), frames such a head as
//! bodiless, and closes the connection after the 400: the bytes after it are never read
//! as a request.

use crate::fields::Fields;
use http::header;
use http::{Uri, Version};

/// Why a head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    ContentLengthWithTransferEncoding,
    DuplicateContentLength,
    UnsupportedTransferEncoding,
    UnderscoreInHeaderName,
    MissingHost,
    DuplicateHost,
    InvalidHost,
    /// Not HTTP/1.x as RFC 9112 writes it (httparse refuses it).
    InvalidRequest,
    /// A Content-Length that is not a decimal number.
    InvalidContentLength,
    /// A head over `limits.max_header_bytes` (431).
    HeaderTooLarge,
    /// More fields than `limits.max_headers` (431).
    TooManyHeaders,
}

impl Malformed {
    /// 431 for a head over the limits, 400 for the rest.
    pub fn status(self) -> http::StatusCode {
        match self {
            Malformed::HeaderTooLarge | Malformed::TooManyHeaders => {
                http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            _ => http::StatusCode::BAD_REQUEST,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Malformed::ContentLengthWithTransferEncoding => "content_length_with_transfer_encoding",
            Malformed::DuplicateContentLength => "duplicate_content_length",
            Malformed::UnsupportedTransferEncoding => "unsupported_transfer_encoding",
            Malformed::UnderscoreInHeaderName => "underscore_in_header_name",
            Malformed::MissingHost => "missing_host",
            Malformed::DuplicateHost => "duplicate_host",
            Malformed::InvalidHost => "invalid_host",
            Malformed::InvalidRequest => "invalid_request",
            Malformed::InvalidContentLength => "invalid_content_length",
            Malformed::HeaderTooLarge => "header_too_large",
            Malformed::TooManyHeaders => "too_many_headers",
        }
    }
}

/// Checks a request head. `version` is the request's HTTP version (HTTP/2 carries no
/// Transfer-Encoding and its authority in the URI).
pub fn check(version: Version, uri: &Uri, headers: &Fields) -> Result<(), Malformed> {
    let mut content_lengths = 0usize;
    let mut transfer_encodings = 0usize;
    let mut hosts = 0usize;
    for (name, value) in headers.iter() {
        if name == b"content-length" {
            content_lengths += 1;
            if value.as_bytes().contains(&b',') {
                return Err(Malformed::DuplicateContentLength);
            }
        } else if name == b"transfer-encoding" {
            transfer_encodings += 1;
            if !value
                .as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(b"chunked")
            {
                return Err(Malformed::UnsupportedTransferEncoding);
            }
        } else if name == b"host" {
            hosts += 1;
            if !valid_host(value.as_bytes()) {
                return Err(Malformed::InvalidHost);
            }
        } else if name.contains(&b'_') {
            return Err(Malformed::UnderscoreInHeaderName);
        }
    }
    if content_lengths > 1 {
        return Err(Malformed::DuplicateContentLength);
    }
    if transfer_encodings > 1 {
        return Err(Malformed::UnsupportedTransferEncoding);
    }
    if transfer_encodings > 0 && content_lengths > 0 {
        return Err(Malformed::ContentLengthWithTransferEncoding);
    }
    if hosts > 1 {
        return Err(Malformed::DuplicateHost);
    }
    if version == Version::HTTP_11 {
        match (hosts, uri.authority()) {
            (0, _) => return Err(Malformed::MissingHost),
            // An absolute-form target wins over Host (RFC 9112 §3.2.2); a proxy that
            // routed on one and forwarded the other would be confused, so they must agree.
            (_, Some(authority)) => {
                let host = headers.get(header::HOST).map(|h| h.as_bytes());
                if host.map(|h| !h.eq_ignore_ascii_case(authority.as_str().as_bytes()))
                    == Some(true)
                {
                    return Err(Malformed::InvalidHost);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `host [ ":" port ]` with a reg-name, an IPv4 address or a bracketed IPv6 literal
/// (RFC 3986 §3.2.2, without percent-encoding, which no real sender uses in a Host).
fn valid_host(h: &[u8]) -> bool {
    if h.is_empty() || h.len() > 255 {
        return false;
    }
    let (host, port) = if h[0] == b'[' {
        let Some(end) = h.iter().position(|&c| c == b']') else {
            return false;
        };
        let literal = &h[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|c| c.is_ascii_hexdigit() || b":.".contains(c))
        {
            return false;
        }
        match &h[end + 1..] {
            [] => (&h[..0], None),
            [b':', port @ ..] => (&h[..0], Some(port)),
            _ => return false,
        }
    } else {
        match h.iter().rposition(|&c| c == b':') {
            Some(i) => (&h[..i], Some(&h[i + 1..])),
            None => (h, None),
        }
    };
    let host_ok = host
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(c))
        && (h[0] == b'[' || !host.is_empty());
    let port_ok = port.map_or(true, |p| {
        !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit)
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(fields: &[(&str, &str)]) -> Fields {
        Fields::from_pairs(fields.iter().map(|(k, v)| (*k, v.as_bytes())))
    }

    fn check11(fields: &[(&str, &str)]) -> Result<(), Malformed> {
        check(Version::HTTP_11, &Uri::from_static("/hook"), &head(fields))
    }

    #[test]
    fn ordinary_heads_pass() {
        assert_eq!(
            check11(&[("host", "hooks.example.com"), ("content-length", "5")]),
            Ok(())
        );
        assert_eq!(
            check11(&[("host", "127.0.0.1:8080"), ("transfer-encoding", "chunked")]),
            Ok(())
        );
        assert_eq!(
            check11(&[("host", "[::1]:8443"), ("transfer-encoding", " Chunked ")]),
            Ok(())
        );
        assert_eq!(check11(&[("host", "[::1]")]), Ok(()));
        // HTTP/1.0 may omit Host; HTTP/2 carries the authority in the URI.
        let uri = Uri::from_static("/hook");
        assert_eq!(check(Version::HTTP_10, &uri, &head(&[])), Ok(()));
        let uri = Uri::from_static("https://hooks.example.com/hook");
        assert_eq!(check(Version::HTTP_2, &uri, &head(&[])), Ok(()));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        use Malformed::*;
        let host = ("host", "h");
        let cases: &[(&[(&str, &str)], Malformed)] = &[
            (
                &[
                    host,
                    ("content-length", "5"),
                    ("transfer-encoding", "chunked"),
                ],
                ContentLengthWithTransferEncoding,
            ),
            (
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("content-length", "5"),
                ],
                ContentLengthWithTransferEncoding,
            ),
            (
                &[host, ("content-length", "5"), ("content-length", "5")],
                DuplicateContentLength,
            ),
            (&[host, ("content-length", "5, 5")], DuplicateContentLength),
            (
                &[host, ("transfer-encoding", "gzip, chunked")],
                UnsupportedTransferEncoding,
            ),
            (
                &[host, ("transfer-encoding", "chunked, chunked")],
                UnsupportedTransferEncoding,
            ),
            (
                &[
                    host,
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                UnsupportedTransferEncoding,
            ),
            (
                &[host, ("transfer-encoding", "identity")],
                UnsupportedTransferEncoding,
            ),
            (
                &[host, ("x_forwarded_for", "1.2.3.4")],
                UnderscoreInHeaderName,
            ),
            (&[], MissingHost),
            (&[host, host], DuplicateHost),
            (&[("host", "a b")], InvalidHost),
            (&[("host", "a:")], InvalidHost),
            (&[("host", "a:123456")], InvalidHost),
            (&[("host", "a@b")], InvalidHost),
            (&[("host", ":80")], InvalidHost),
            (&[("host", "[::1")], InvalidHost),
            (&[("host", "[::1]x")], InvalidHost),
            (&[("host", "")], InvalidHost),
        ];
        for (fields, want) in cases {
            assert_eq!(check11(fields), Err(*want), "{fields:?}");
        }
    }

    #[test]
    fn an_absolute_target_must_agree_with_host() {
        let uri = Uri::from_static("http://a.example/hook");
        let h = head(&[("host", "a.example")]);
        assert_eq!(check(Version::HTTP_11, &uri, &h), Ok(()));
        let h = head(&[("host", "b.example")]);
        assert_eq!(
            check(Version::HTTP_11, &uri, &h),
            Err(Malformed::InvalidHost)
        );
    }
}
