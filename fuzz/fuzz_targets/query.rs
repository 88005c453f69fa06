//! `handshake::percent_decode` and `handshake::query_param` (challenge values read from
//! the query string and echoed back to the sender).
//!
//! Input: a parameter name on the first line, then a query string.
//!
//! Invariants: they never panic, and
//! - `percent_decode` agrees with a strict RFC 3986 reference: `%` followed by exactly
//!   two hex digits is that byte, `+` is a space, any other `%` makes the value invalid,
//!   and so does a result that is not UTF-8;
//! - decoding the percent-encoding of any string gives the string back;
//! - `query_param` returns the decoded value of the first `&`-separated entry whose
//!   decoded key is the name (an entry without `=` has an empty value), and finds a
//!   value that was put in a query with both its key and value percent-encoded.
#![no_main]

use hookgate::fuzzing::{percent_decode, query_param};
use libfuzzer_sys::fuzz_target;

fn reference_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fuzz_target!(|text: &str| {
    let (name, query) = text.split_once('\n').unwrap_or((text, ""));

    for s in [name, query] {
        assert_eq!(
            percent_decode(s),
            reference_decode(s),
            "percent_decode({s:?})"
        );
        assert_eq!(percent_decode(&encode(s)).as_deref(), Some(s), "round trip");
    }

    let want = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| reference_decode(k).as_deref() == Some(name))
        .and_then(|(_, v)| reference_decode(v));
    assert_eq!(
        query_param(Some(query), name),
        want,
        "{name:?} in {query:?}"
    );
    assert_eq!(query_param(None, name), None);

    // A value put in a query by a well-behaved sender is found.
    let value = query;
    let built = format!(
        "other=1&{}={}&{}=second",
        encode(name),
        encode(value),
        encode(name)
    );
    if name != "other" {
        assert_eq!(
            query_param(Some(&built), name).as_deref(),
            Some(value),
            "{built:?}"
        );
    }
});
