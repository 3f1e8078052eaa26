//! Cairn's one duration grammar: Go's (`500ms`, `1.5s`, `1h30m`), as
//! Kubernetes and its tools write durations, used by `cairnctl` TTLs and
//! request files, the operator's `KVCluster` fields, `cairn-bench` and
//! `cairn-chaos`.
//!
//! A duration is one or more `<number><unit>` terms, summed. The number is
//! a non-negative decimal (`1`, `1.5`, `.5`); the unit is `ns`, `us` (or
//! `µs`), `ms`, `s`, `m`, `h`, or `d` (24 h, an extension to Go's list for
//! TTLs). Two more extensions: a bare whole number means seconds (`90`),
//! and surrounding whitespace is ignored. Units are lower-case only (`5M`
//! is refused rather than guessed as months or minutes), and signs are
//! refused (no duration here can be negative). Values are exact to the
//! nanosecond: fractions are computed in integers.

use std::time::Duration;

/// Why a string is not a valid duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// The input was empty (or only whitespace).
    #[error("empty duration")]
    Empty,
    /// A term does not start with a non-negative decimal number.
    #[error("invalid duration {0:?}: expected numbers with units, such as 500ms, 1.5s or 1h30m")]
    InvalidNumber(String),
    /// A number is followed by something other than a known unit.
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use ns, us, ms, s, m, h or d)")]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unrecognised suffix.
        unit: String,
    },
    /// The duration does not fit in a [`Duration`].
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Units, longest spelling first so `ms` is not read as `m` + `s`.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Parses a duration in the grammar of this module.
///
/// ```
/// use std::time::Duration;
/// use cairn_client::duration::parse;
///
/// assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5_400)));
/// assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1_500)));
/// assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
/// ```
///
/// # Errors
/// [`ParseDurationError`] naming the input and what is wrong with it.
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    let invalid = || ParseDurationError::InvalidNumber(input.to_string());
    let overflow = || ParseDurationError::Overflow(input.to_string());
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text.parse().map_err(|_| overflow())?;
        return Ok(Duration::from_secs(secs));
    }
    let mut total: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return Err(invalid());
        }
        let (unit, scale) = UNITS
            .iter()
            .filter(|(name, _)| after.starts_with(name))
            .max_by_key(|(name, _)| name.len())
            .ok_or_else(|| {
                let unit: String = after
                    .chars()
                    .take_while(|c| !c.is_ascii_digit() && *c != '.')
                    .collect();
                if unit.is_empty() {
                    invalid()
                } else {
                    ParseDurationError::UnknownUnit {
                        input: input.to_string(),
                        unit,
                    }
                }
            })?;
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| overflow())?
        };
        let mut term = whole.checked_mul(*scale).ok_or_else(overflow)?;
        // Digits past nanosecond precision cannot change the result.
        let fraction = &fraction[..fraction.len().min(20)];
        if !fraction.is_empty() {
            let digits: u128 = fraction.parse().map_err(|_| invalid())?;
            let denominator = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| invalid())?);
            term = term
                .checked_add(digits * scale / denominator)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(term).ok_or_else(overflow)?;
        rest = &after[unit.len()..];
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| overflow())?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| overflow())?;
    Ok(Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_understood() {
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("7us"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("7µs"), Ok(Duration::from_micros(7)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn terms_add_up_and_fractions_are_exact() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse("1m0.5s"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1_500)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2.s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("1.000000001s"), Ok(Duration::new(1, 1)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn plain_integer_means_seconds() {
        assert_eq!(parse("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(parse("  10s\n"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn empty_input_is_rejected() {
        assert_eq!(parse(""), Err(ParseDurationError::Empty));
        assert_eq!(parse("   "), Err(ParseDurationError::Empty));
    }

    #[test]
    fn missing_or_malformed_numbers_are_rejected() {
        for bad in [
            "s", "ms", "-5s", "+5s", "1,5s", "1.2.3s", ".s", "1.5", "5s3",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(ParseDurationError::InvalidNumber(_)
                        | ParseDurationError::UnknownUnit { .. })
                ),
                "{bad:?} should be rejected, got {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn unknown_and_uppercase_units_are_rejected() {
        for bad in ["5M", "5S", "5w", "5sec", "5 s", "3 days", "fast1s"] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse("5w"),
            Err(ParseDurationError::UnknownUnit {
                input: "5w".into(),
                unit: "w".into()
            })
        );
    }

    #[test]
    fn overflowing_durations_are_rejected_not_wrapped() {
        for big in [
            "18446744073709551615d",
            "99999999999999999999999",
            "999999999999999999999999999999999999999h",
        ] {
            assert!(
                matches!(parse(big), Err(ParseDurationError::Overflow(_))),
                "{big:?}: {:?}",
                parse(big)
            );
        }
    }
}
