//! Human-readable durations such as `500ms`, `30s`, `5m`, `2h` and `1d`.
//!
//! Used for TTLs on the command line and in batch/txn files, where counting
//! milliseconds by hand is error-prone. A plain integer means seconds.

use std::time::Duration;

/// Why a string is not a valid duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// The input was empty (or only whitespace).
    #[error("empty duration")]
    Empty,
    /// The input does not start with a non-negative whole number.
    #[error("invalid duration {0:?}: expected a whole number followed by ms, s, m, h or d")]
    InvalidNumber(String),
    /// The number is followed by something other than a known unit.
    #[error("invalid duration {input:?}: unknown unit {unit:?} (use ms, s, m, h or d)")]
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

/// Parses `<number><unit>` where the unit is `ms`, `s`, `m` (minutes), `h`
/// or `d` (24 hours), or a plain number of seconds.
///
/// Surrounding whitespace is ignored; units are lower-case only (`5M` is
/// rejected rather than guessed), and fractions, signs and compound forms
/// like `1h30m` are not accepted.
///
/// ```
/// use std::time::Duration;
/// use cairn_client::duration::parse;
///
/// assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
/// ```
pub fn parse(input: &str) -> Result<Duration, ParseDurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(ParseDurationError::InvalidNumber(input.to_string()));
    }
    let overflow = || ParseDurationError::Overflow(input.to_string());
    let number: u64 = digits.parse().map_err(|_| overflow())?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ if unit.starts_with(['.', ',']) => {
            return Err(ParseDurationError::InvalidNumber(input.to_string()));
        }
        _ => {
            return Err(ParseDurationError::UnknownUnit {
                input: input.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    let millis = number.checked_mul(millis_per_unit).ok_or_else(overflow)?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_understood() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
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
        for bad in ["s", "ms", "-5s", "+5s", "1.5s", "1,5s", " 10 s"] {
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
        for bad in ["5M", "5S", "5w", "5min", "5sec", "1h30m", "5 s"] {
            assert!(
                matches!(parse(bad), Err(ParseDurationError::UnknownUnit { .. })),
                "{bad:?} should be rejected, got {:?}",
                parse(bad)
            );
        }
    }

    #[test]
    fn overflowing_durations_are_rejected_not_wrapped() {
        assert!(matches!(
            parse("18446744073709551615d"),
            Err(ParseDurationError::Overflow(_))
        ));
        assert!(matches!(
            parse("99999999999999999999999"),
            Err(ParseDurationError::Overflow(_))
        ));
    }
}
