//! Parsing of the config's units: durations (`500ms`, `5s`, `5m`, `24h`, `7d`) and sizes
//! (`512KiB`, `1MiB`, `2MB`, or a plain byte count). Pure functions, so the error text a
//! user sees for a bad value is tested here.

use std::time::Duration;

/// Parses a duration with a mandatory unit. A bare number is refused: `5` could mean
/// seconds or milliseconds, and guessing wrong is worse than asking.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m, h or d), e.g. \"5s\""))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("duration {s:?} does not start with a number"));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} has an invalid number"))?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        other => {
            return Err(format!(
                "duration {s:?} has unknown unit {other:?} (use ms, s, m, h or d)"
            ))
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 100.0 * 365.0 * 86400.0 {
        return Err(format!("duration {s:?} is too large"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size: a byte count, or a number with `B`, `KB`/`MB`/`GB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("size {s:?} does not start with a whole number"));
    }
    let value: u64 = num
        .parse()
        .map_err(|_| format!("size {s:?} is too large"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "kB" => 1000,
        "MB" => 1000 * 1000,
        "GB" => 1000 * 1000 * 1000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "size {s:?} has unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Formats a byte count the way a user would write it, for `check` output.
pub fn format_size(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale && bytes % scale == 0 {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

/// Formats a duration compactly (`4s`, `500ms`, `24h`), for `check` output.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, scale) in [("h", 3_600_000u128), ("m", 60_000), ("s", 1000)] {
        if ms >= scale && ms % scale == 0 {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("5").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_duration("s").unwrap_err().contains("does not start"));
        assert!(parse_duration("1.2.3s").is_err());
        assert!(parse_duration("99999999999999d")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1 XB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("99999999999999999GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn formatting_round_trips() {
        for s in ["1MiB", "512KiB", "1000B", "3GiB"] {
            assert_eq!(format_size(parse_size(s).unwrap()), s);
        }
        for s in ["4s", "500ms", "24h", "5m", "48h"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
