//! W3C Trace Context (`traceparent`, version 00): a sender's trace is continued, with
//! this hop as a new span; a request without a valid one starts a trace. The upstream
//! gets the result, and the access log shows the trace id.

pub const TRACEPARENT: &str = "traceparent";

/// A valid version-00 `traceparent` value: `00-<trace id>-<parent id>-<flags>`, with a
/// trace id of 32 and a parent id of 16 lower-case hex digits, neither all zero. A copy
/// type: it lives in the access line and goes upstream without an allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceParent([u8; 55]);

impl TraceParent {
    /// `v` if it is a valid version-00 `traceparent`.
    pub fn parse(v: &[u8]) -> Option<TraceParent> {
        let b: [u8; 55] = v.try_into().ok()?;
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        let zero = |s: &[u8]| s.iter().all(|&c| c == b'0');
        let (version, trace, parent, flags) = (&b[..2], &b[3..35], &b[36..52], &b[53..]);
        if version != b"00"
            || !hex(trace)
            || !hex(parent)
            || !hex(flags)
            || zero(trace)
            || zero(parent)
        {
            return None;
        }
        Some(TraceParent(b))
    }

    pub fn as_str(&self) -> &str {
        // ASCII by construction (validated, or written from hex digits).
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    /// The 32 hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.as_str()[3..35]
    }

    /// The `traceparent` this hop sends: the sender's trace id and flags if it sent a
    /// valid one, else a new trace (sampled); always a new span id.
    pub fn next_hop(incoming: Option<TraceParent>) -> TraceParent {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-01";
        match incoming {
            Some(TraceParent(sent)) => {
                out[3..35].copy_from_slice(&sent[3..35]);
                out[53..].copy_from_slice(&sent[53..]);
            }
            None => {
                write_hex(&mut out[3..19], random_u64());
                write_hex(&mut out[19..35], random_u64() | 1);
            }
        }
        write_hex(&mut out[36..52], random_u64() | 1);
        TraceParent(out)
    }
}

impl std::fmt::Debug for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
        let sent = TraceParent::parse(SENT.as_bytes()).expect("valid");
        assert_eq!(sent.as_str(), SENT);
        let next = TraceParent::next_hop(Some(sent));
        assert_eq!(next.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let text = next.as_str();
        assert!(text.ends_with("-01"));
        assert_ne!(&text[36..52], "00f067aa0ba902b7");
        assert_eq!(TraceParent::parse(text.as_bytes()), Some(next));
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
            "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
        let a = TraceParent::next_hop(None);
        let b = TraceParent::next_hop(None);
        assert_ne!(a.trace_id(), b.trace_id());
        for fresh in [a, b] {
            assert_eq!(TraceParent::parse(fresh.as_str().as_bytes()), Some(fresh));
        }
    }
}
