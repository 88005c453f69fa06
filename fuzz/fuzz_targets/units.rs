//! `config::units`: `parse_duration`, `parse_size` and their formatters.
//!
//! Invariants: parsing never panics, and
//! - a parsed duration is at most 100 years, and one of whole milliseconds formats
//!   (`format_duration`) to text that parses back to it (to the nanosecond below 2^21 s,
//!   where the f64 arithmetic is exact to a nanosecond; to a microsecond above);
//! - a parsed size formats (`format_size`) to text that parses back to it, exactly;
//! - every u64 formats as a size that parses back to it, and every whole-millisecond
//!   duration up to 100 years formats as a duration that parses back to it (the input's
//!   first 8 bytes pick them).
#![no_main]

use hookgate::fuzzing::{format_duration, format_size, parse_duration, parse_size};
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

const HUNDRED_YEARS_MS: u64 = 100 * 365 * 86_400 * 1000;

fn duration_round_trips(d: Duration, from: &str) {
    let text = format_duration(d);
    let back = parse_duration(&text).unwrap_or_else(|e| panic!("{from:?} -> {text:?}: {e}"));
    let tolerance = if d < Duration::from_secs(1 << 21) {
        Duration::ZERO
    } else {
        Duration::from_micros(1)
    };
    assert!(
        back.abs_diff(d) <= tolerance,
        "{from:?} -> {d:?} -> {text:?} -> {back:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(d) = parse_duration(s) {
            assert!(d.as_secs() <= 100 * 365 * 86_400, "{s:?} -> {d:?}");
            if d.subsec_nanos() % 1_000_000 == 0 {
                duration_round_trips(d, s);
            }
        }
        if let Ok(n) = parse_size(s) {
            let text = format_size(n);
            assert_eq!(parse_size(&text), Ok(n), "{s:?} -> {n} -> {text:?}");
        }
    }
    if let Some(bytes) = data.get(..8) {
        let n = u64::from_le_bytes(bytes.try_into().unwrap());
        let text = format_size(n);
        assert_eq!(parse_size(&text), Ok(n), "{n} -> {text:?}");
        let d = Duration::from_millis(n % (HUNDRED_YEARS_MS + 1));
        duration_round_trips(d, "");
    }
});
