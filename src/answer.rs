//! An answer to a sender as the gateway builds and writes it: a status, header lines and
//! a body. The lines are kept as the bytes they are written as (`name: value\r\n`, names
//! in lower case, in order): an upstream's end-to-end fields are copied once from its
//! response head, and the gateway's own are appended, so that a forwarded answer costs
//! no hashing and no allocation per field, as a `HeaderMap` would. HTTP/2 (hyper) gets a
//! `Response` made from it.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::Full;

/// The response type hyper serves over HTTP/2.
pub type HttpResponse = Response<Full<Bytes>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: StatusCode,
    lines: Vec<u8>,
    has_date: bool,
    close: bool,
    pub body: Bytes,
}

/// Whether `value` may stand in a header line: the rule of `HeaderValue::from_bytes`
/// (visible ASCII, obs-text, space and tab; no other control byte, so no CR or LF that
/// would end the line early).
pub fn valid_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

impl Answer {
    pub fn new(status: StatusCode, body: Bytes) -> Answer {
        Answer {
            status,
            lines: Vec::new(),
            has_date: false,
            close: false,
            body,
        }
    }

    /// An answer whose header lines are `lines`, as made by [`push_line`] (the upstream
    /// client builds them while it parses a head).
    pub(crate) fn from_lines(status: StatusCode, lines: Vec<u8>, has_date: bool) -> Answer {
        Answer {
            status,
            lines,
            has_date,
            close: false,
            body: Bytes::new(),
        }
    }

    /// Adds a field. `name` is a lower-case token, and not a framing or connection field
    /// (the writer adds those, for this hop); a value that could not stand in a header
    /// line is not added (the gateway's own values never are such).
    pub fn push(&mut self, name: &str, value: &[u8]) {
        debug_assert!(!name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()));
        if valid_value(value) && !hop_owned(name.as_bytes()) {
            if self.lines.capacity() == 0 {
                // The gateway's own answers carry two or three short fields: one
                // allocation for all of them.
                self.lines.reserve(128);
            }
            self.has_date |= name == "date";
            push_line(&mut self.lines, name.as_bytes(), value);
        }
    }

    /// Replaces every field `name` with one of `value`.
    pub fn set(&mut self, name: &str, value: &[u8]) {
        if self.get(name).is_some() {
            let mut kept = Vec::with_capacity(self.lines.len());
            for (n, v) in self.fields() {
                if n != name.as_bytes() {
                    push_line(&mut kept, n, v);
                }
            }
            self.lines = kept;
        }
        self.push(name, value);
    }

    /// The fields in order: names (lower case) and values.
    pub fn fields(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
                let value = line.get(colon + 2..).unwrap_or_default();
                (&line[..colon], value)
            })
    }

    /// The first value of field `name` (lower case).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The header lines, as written.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// Whether a `Date` field is among the lines.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The connection closes after this answer.
    pub fn close_after(&mut self) {
        self.close = true;
    }

    pub fn closes(&self) -> bool {
        self.close
    }

    /// The answer as hyper's response (HTTP/2, which has no `Connection` field).
    pub fn into_response(mut self) -> HttpResponse {
        let mut resp = Response::new(Full::new(std::mem::take(&mut self.body)));
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        for (name, value) in self.fields() {
            if let (Ok(n), Ok(mut v)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            {
                // A request id is new in every answer: HPACK indexing it would only
                // evict entries that do repeat (and cost a table search and insertion
                // per answer). Sent as a literal "never indexed".
                if n == crate::forward::X_REQUEST_ID {
                    v.set_sensitive(true);
                }
                headers.append(n, v);
            }
        }
        resp
    }
}

/// Fields the HTTP/1 writer owns: an answer never carries them.
pub(crate) fn hop_owned(name: &[u8]) -> bool {
    matches!(
        name,
        b"content-length" | b"transfer-encoding" | b"connection"
    )
}

/// Appends `name: value\r\n`.
pub(crate) fn push_line(lines: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    lines.extend_from_slice(name);
    lines.extend_from_slice(b": ");
    lines.extend_from_slice(value);
    lines.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_kept_in_order_and_read_back() {
        let mut a = Answer::new(StatusCode::OK, Bytes::from_static(b"ok"));
        a.push("content-type", b"text/plain");
        a.push("x-multi", b"a");
        a.push("x-empty", b"");
        a.push("x-multi", b"b: c");
        assert_eq!(
            a.lines(),
            b"content-type: text/plain\r\nx-multi: a\r\nx-empty: \r\nx-multi: b: c\r\n"
        );
        let fields: Vec<_> = a.fields().collect();
        assert_eq!(
            fields,
            [
                (&b"content-type"[..], &b"text/plain"[..]),
                (b"x-multi", b"a"),
                (b"x-empty", b""),
                (b"x-multi", b"b: c"),
            ]
        );
        assert_eq!(a.get("x-multi"), Some(&b"a"[..]));
        assert_eq!(a.get("missing"), None);
        assert!(!a.has_date());
        a.set("x-multi", b"z");
        assert_eq!(
            a.lines(),
            b"content-type: text/plain\r\nx-empty: \r\nx-multi: z\r\n"
        );
        a.push("date", b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(a.has_date());
    }

    #[test]
    fn a_value_that_would_split_the_line_is_not_added() {
        let mut a = Answer::new(StatusCode::OK, Bytes::new());
        a.push("x-bad", b"a\r\nset-cookie: x");
        a.push("x-nul", b"a\0b");
        a.push("content-length", b"5");
        assert!(a.lines().is_empty());
    }

    #[test]
    fn the_rule_for_values_is_header_values() {
        for v in [&b"plain"[..], b"tab\there", b"obs \xfe\xff", b"", b"a:b, c"] {
            assert!(valid_value(v));
            assert!(HeaderValue::from_bytes(v).is_ok());
        }
        for v in [&b"cr\r"[..], b"lf\n", b"nul\0", b"del\x7f", b"esc\x1b"] {
            assert!(!valid_value(v));
            assert!(HeaderValue::from_bytes(v).is_err());
        }
    }

    #[test]
    fn hyper_gets_the_same_fields() {
        let mut a = Answer::new(StatusCode::ACCEPTED, Bytes::from_static(b"queued\n"));
        a.push("x-a", b"1");
        a.push("x-a", b"2");
        a.push("retry-after", b"5");
        a.push("x-request-id", b"abc-000000000001");
        let r = a.into_response();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let a: Vec<_> = r.headers().get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(r.headers()["retry-after"], "5");
        assert!(!r.headers()["retry-after"].is_sensitive());
        // The request id, new in every answer, is never indexed by HPACK; only it.
        assert_eq!(r.headers()["x-request-id"], "abc-000000000001");
        assert!(r.headers()["x-request-id"].is_sensitive());
        assert!(!r.headers()["x-a"].is_sensitive());
    }
}
