//! W3C Trace Context (`traceparent`, version 00): a sender's trace is continued, with
//! this hop as a new span; a request without a valid one starts a trace. The upstream
//! gets the result, and the access log shows the trace id.

use http::HeaderValue;

pub const TRACEPARENT: &str = "traceparent";

/// The trace id of a valid `traceparent` (32 lower-case hex digits, not all zero).
pub fn trace_id(value: &str) -> Option<&str> {
    parse(value).map(|(trace, _)| trace)
}

/// `(trace id, flags)` of a valid version-00 `traceparent`.
fn parse(v: &str) -> Option<(&str, &str)> {
    let b = v.as_bytes();
    if b.len() != 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zero = |s: &[u8]| s.iter().all(|&c| c == b'0');
    let (version, trace, parent, flags) = (&b[..2], &b[3..35], &b[36..52], &b[53..]);
    if version != b"00" || !hex(trace) || !hex(parent) || !hex(flags) || zero(trace) || zero(parent)
    {
        return None;
    }
    Some((&v[3..35], &v[53..]))
}

/// The `traceparent` this hop sends: the sender's trace id and flags if its header is
/// valid, else a new trace (sampled); always a new span id. Written into a stack buffer:
/// this runs for every request.
pub fn next_hop(incoming: Option<&HeaderValue>) -> HeaderValue {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
    match incoming.and_then(|v| v.to_str().ok()).and_then(parse) {
        Some((trace, flags)) => {
            out[3..35].copy_from_slice(trace.as_bytes());
            out[53..].copy_from_slice(flags.as_bytes());
        }
        None => {
            write_hex(&mut out[3..19], random_u64());
            write_hex(&mut out[19..35], random_u64() | 1);
        }
    }
    write_hex(&mut out[36..52], random_u64() | 1);
    HeaderValue::from_bytes(&out).expect("hex and dashes")
}

/// `v` as lower-case hex digits filling `out` (leading zeros).
pub(crate) fn write_hex(out: &mut [u8], mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// Unpredictable enough for ids, not for secrets: wyrand over a per-thread state seeded
/// from the OS-seeded `RandomState` (two multiplies per id; this runs for every
/// delivery that goes on).
pub(crate) fn random_u64() -> u64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(u64::from(std::process::id()));
            h.finish()
        });
    }
    STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_ids_do_not_repeat_within_or_across_threads() {
        let mut seen: std::collections::HashSet<u64> = (0..10_000).map(|_| random_u64()).collect();
        assert_eq!(seen.len(), 10_000);
        let other: Vec<u64> = std::thread::spawn(|| (0..1000).map(|_| random_u64()).collect())
            .join()
            .unwrap();
        for v in other {
            assert!(seen.insert(v), "another thread repeated an id");
        }
    }

    const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_trace_is_continued_with_a_new_span() {
        let next = next_hop(Some(&HeaderValue::from_static(SENT)));
        let next = next.to_str().unwrap();
        assert_eq!(trace_id(next), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert!(next.ends_with("-01"));
        assert_ne!(&next[36..52], "00f067aa0ba902b7");
    }

    #[test]
    fn a_missing_or_invalid_one_starts_a_new_trace() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let v = HeaderValue::from_str(bad).unwrap();
            let next = next_hop(Some(&v));
            let id = trace_id(next.to_str().unwrap()).expect("valid");
            assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
        }
        let a = next_hop(None);
        let b = next_hop(None);
        assert_ne!(trace_id(a.to_str().unwrap()), trace_id(b.to_str().unwrap()));
    }
}
