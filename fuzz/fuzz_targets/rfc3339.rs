//! `parse_rfc3339` (Twitch's and Zendesk's timestamps) and `hookgate::sign::rfc3339`.
//!
//! Invariants:
//! - parsing never panics; when it gives an instant `t`, formatting `t` back with
//!   `sign::rfc3339` and parsing that again gives `t`;
//! - every instant from 0000-01-01T00:00:00Z to 9999-12-31T23:59:59Z formats to text that
//!   parses back to it (the input's first 8 bytes pick one).
#![no_main]

use hookgate::fuzzing::parse_rfc3339;
use libfuzzer_sys::fuzz_target;

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z in unix seconds.
const FIRST: i64 = -62_167_219_200;
const LAST: i64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(t) = parse_rfc3339(s) {
            let text = hookgate::sign::rfc3339(t);
            assert_eq!(
                parse_rfc3339(&text),
                Some(t),
                "{s:?} parsed to {t}, which formats as {text:?}"
            );
        }
    }
    if let Some(bytes) = data.get(..8) {
        let raw = i64::from_le_bytes(bytes.try_into().unwrap());
        let t = FIRST + raw.rem_euclid(LAST - FIRST + 1);
        let text = hookgate::sign::rfc3339(t);
        assert_eq!(parse_rfc3339(&text), Some(t), "{t} formats as {text:?}");
    }
});
