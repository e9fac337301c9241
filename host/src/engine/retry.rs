//! When a failed delivery is tried again: what the system asked for, else
//! exponential backoff from 1 s, capped at one hour; either way with up to
//! a quarter more at random, so that the many rows one failure postponed
//! do not all come due in the same instant.

use std::time::Duration;

/// The first delay.
const BASE_MS: u64 = 1000;
/// The longest delay before jitter.
const CAP_MS: u64 = 3_600_000;
/// The most jitter adds, as a share of the delay.
const JITTER: f64 = 0.25;

/// How long to wait after `attempts` failed attempts (before this one),
/// given the system's `retry_after_ms` if it said, and `unit`, a number in
/// `[0, 1)` that picks the jitter. Pure: the caller draws `unit`.
pub(super) fn delay(attempts: u32, retry_after_ms: Option<u64>, unit: f64) -> Duration {
    let ms =
        retry_after_ms.unwrap_or_else(|| BASE_MS.saturating_mul(1 << attempts.min(12)).min(CAP_MS));
    let extra = (ms as f64 * JITTER * unit.clamp(0.0, 1.0)) as u64;
    Duration::from_millis(ms.saturating_add(extra))
}

/// When to try again, as the store's timestamp text: now plus `delay` with
/// a jitter drawn here.
pub(super) fn backoff(attempts: u32, retry_after_ms: Option<u64>) -> String {
    let wait = delay(attempts, retry_after_ms, unit());
    let wait = jiff::SignedDuration::try_from(wait).unwrap_or(jiff::SignedDuration::MAX);
    let at = jiff::Timestamp::now()
        .checked_add(wait)
        .unwrap_or(jiff::Timestamp::MAX);
    format!("{at:.3}")
}

/// A number in `[0, 1)`, different at every call: the top 53 bits of a
/// hash with a fresh random key.
fn unit() -> f64 {
    use std::hash::BuildHasher;
    let bits = std::hash::RandomState::new().hash_one(0u8) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_a_second_up_to_an_hour() {
        let table = [
            (0, 1_000),
            (1, 2_000),
            (2, 4_000),
            (5, 32_000),
            (11, 2_048_000),
            (12, 3_600_000),
            (40, 3_600_000),
            (u32::MAX, 3_600_000),
        ];
        for (attempts, ms) in table {
            assert_eq!(
                delay(attempts, None, 0.0),
                Duration::from_millis(ms),
                "after {attempts} attempts"
            );
        }
    }

    #[test]
    fn the_systems_word_comes_first() {
        assert_eq!(delay(7, Some(250), 0.0), Duration::from_millis(250));
        assert_eq!(delay(0, Some(0), 0.0), Duration::ZERO);
        assert_eq!(
            delay(0, Some(u64::MAX), 0.99),
            Duration::from_millis(u64::MAX)
        );
    }

    #[test]
    fn jitter_adds_at_most_a_quarter_and_never_shortens() {
        for attempts in [0, 3, 12] {
            let base = delay(attempts, None, 0.0);
            for unit in [0.0, 0.1, 0.5, 0.999_999, 1.0, 7.0, -3.0] {
                let d = delay(attempts, None, unit);
                assert!(d >= base, "{d:?} < {base:?} at {unit}");
                assert!(d <= base + base / 4, "{d:?} over a quarter at {unit}");
            }
        }
        assert_eq!(delay(1, None, 0.5), Duration::from_millis(2_250));
    }

    #[test]
    fn draws_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..2000).map(|_| unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let low = draws.iter().filter(|u| **u < 0.5).count();
        assert!((800..1200).contains(&low), "{low} of 2000 below one half");
    }
}
