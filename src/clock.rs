//! Wall-clock time for the request path: the request's one monotonic reading turned into
//! Unix seconds (timestamp checks, the `Date` field) without a second clock read.

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    unix_of(std::time::SystemTime::now())
}

fn unix_of(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch at `t`, a monotonic reading the caller already has (the
/// request's start): no second clock read per request. The wall clock is read again
/// once `t` is a second past the last reading on this thread, so a step of the wall
/// clock (NTP, an operator) shows within a second.
pub fn unix_at(t: std::time::Instant) -> i64 {
    use std::cell::Cell;
    use std::time::{Duration, Instant, SystemTime};
    thread_local! {
        static ANCHOR: Cell<Option<(Instant, SystemTime)>> = const { Cell::new(None) };
    }
    ANCHOR.with(|a| {
        let near = |mono: Instant| {
            let apart = t.checked_duration_since(mono).unwrap_or_else(|| mono - t);
            apart < Duration::from_secs(1)
        };
        let (mono, wall) = match a.get() {
            Some((mono, wall)) if near(mono) => (mono, wall),
            _ => {
                let (mono, wall) = (Instant::now(), SystemTime::now());
                a.set(Some((mono, wall)));
                (mono, wall)
            }
        };
        let at = match t.checked_duration_since(mono) {
            Some(ahead) => wall.checked_add(ahead),
            None => wall.checked_sub(mono.duration_since(t)),
        };
        at.map(unix_of).unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn unix_at_follows_the_wall_clock_from_a_monotonic_reading() {
        let now = Instant::now();
        assert!((unix_at(now) - now_unix()).abs() <= 1);
        // Earlier and later readings, near the anchor and far from it (a fresh anchor).
        for back in [0, 1, 5, 3600] {
            let t = now - Duration::from_secs(back);
            let want = now_unix() - back as i64;
            assert!((unix_at(t) - want).abs() <= 1, "{back} s back");
        }
        let later = now + Duration::from_secs(2);
        assert!((unix_at(later) - (now_unix() + 2)).abs() <= 1);
    }
}
