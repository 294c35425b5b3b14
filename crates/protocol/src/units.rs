//! Duration values in flags, env vars and scenario files, with one grammar for every torchship
//! binary (server, deployer, load tester): a whole number and a unit, `500us`, `250ms`, `30s`,
//! `2m`, `1h`. A bare number is refused rather than guessed (seconds? milliseconds?).

use std::time::Duration;

/// The longest duration any flag takes: a year. Longer values are refused at start-up, since
/// adding one to `Instant::now()` (a deadline, the end of a load test, a rollout wait) can overflow
/// and panic, and none has a meaning here that a year does not cover.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses `500us`, `250ms`, `30s`, `2m`, `1h` (at most [`MAX_DURATION`]); the error says what was
/// expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let too_long = || format!("'{s}' is longer than a year, the longest duration torchship takes");
    let n: u64 = match num.parse() {
        Ok(n) => n,
        Err(_) if !num.is_empty() => return Err(too_long()),
        Err(_) => return Err(format!("'{s}' is not a duration such as 250ms, 30s or 2m")),
    };
    let d = match unit.trim() {
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("'{s}' needs a unit: us, ms, s, m or h")),
    };
    if d > MAX_DURATION {
        return Err(too_long());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_number_and_a_unit() {
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["30", "soon", "5 minutes", "3 weeks", "-1s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_that_could_overflow_a_deadline_are_refused() {
        assert_eq!(parse_duration("8760h"), Ok(MAX_DURATION));
        for huge in [
            "18446744073709551615s",
            "99999999999999999999999s",
            "18446744073709551615m",
            "8761h",
            "31536001s",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains("longer than a year"), "{huge}: {e}");
        }
        // What the refusal protects: the largest accepted value still fits a deadline.
        assert!(std::time::Instant::now()
            .checked_add(MAX_DURATION)
            .is_some());
    }
}
