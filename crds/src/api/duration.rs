//! Go-style duration strings as the BGP timers use them (`90s`, `3m`, `1m30s`).
//!
//! Owns parsing and printing of the timer fields of `BGPPeer`. Only whole hours, minutes and
//! seconds are accepted, because BGP carries its timers in whole seconds (RFC 4271 §4.2): the
//! same grammar as [`DURATION_PATTERN`](super::schema::DURATION_PATTERN), which the apiserver
//! enforces. Pure.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is empty.
    #[error("empty duration; write e.g. 90s, 3m or 1m30s")]
    Empty,
    /// A number is not followed by one of the units h, m, s.
    #[error("duration {text:?}: every number needs a unit h, m or s (e.g. 90s, 1m30s)")]
    MissingUnit {
        /// The whole duration text.
        text: String,
    },
    /// A character that is neither a digit nor a unit.
    #[error("duration {text:?}: unexpected {found:?}; write e.g. 90s, 3m or 1m30s")]
    Unexpected {
        /// The whole duration text.
        text: String,
        /// The offending character.
        found: char,
    },
    /// The total does not fit a `u64` number of seconds.
    #[error("duration {text:?} is too long")]
    Overflow {
        /// The whole duration text.
        text: String,
    },
}

/// Parses a duration such as `90s`, `3m`, `1h`, `1m30s` or `0s`.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    let overflow = || DurationError::Overflow {
        text: text.to_owned(),
    };
    let mut total_seconds: u64 = 0;
    let mut number: Option<u64> = None;
    for found in text.chars() {
        if let Some(digit) = found.to_digit(10) {
            let so_far = number.unwrap_or(0);
            number = Some(
                so_far
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(overflow)?,
            );
            continue;
        }
        let seconds_per_unit = match found {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(DurationError::Unexpected {
                    text: text.to_owned(),
                    found,
                });
            }
        };
        let value = number.take().ok_or_else(|| DurationError::Unexpected {
            text: text.to_owned(),
            found,
        })?;
        total_seconds = value
            .checked_mul(seconds_per_unit)
            .and_then(|s| total_seconds.checked_add(s))
            .ok_or_else(overflow)?;
    }
    if number.is_some() {
        return Err(DurationError::MissingUnit {
            text: text.to_owned(),
        });
    }
    Ok(Duration::from_secs(total_seconds))
}

/// Prints a duration in the same grammar, e.g. `1m30s`; sub-second parts are dropped.
pub fn format_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 {
        return "0s".to_owned();
    }
    let (hours, minutes, seconds) = (total / 3600, (total / 60) % 60, total % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_units_parse_to_seconds() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("3m"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn compound_durations_add_their_parts() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h1m1s"), Ok(Duration::from_secs(3661)));
    }

    #[test]
    fn a_number_without_unit_is_refused() {
        assert!(matches!(
            parse_duration("90"),
            Err(DurationError::MissingUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1m30"),
            Err(DurationError::MissingUnit { .. })
        ));
    }

    #[test]
    fn sub_second_units_and_junk_are_refused() {
        assert!(matches!(
            parse_duration("500ms"),
            Err(DurationError::Unexpected { .. })
        ));
        assert!(matches!(
            parse_duration("1.5s"),
            Err(DurationError::Unexpected { found: '.', .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::Unexpected { found: 's', .. })
        ));
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
    }

    #[test]
    fn absurdly_long_durations_overflow_instead_of_wrapping() {
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(DurationError::Overflow { .. })
        ));
    }

    #[test]
    fn formatting_round_trips_through_parsing() {
        for seconds in [0, 1, 59, 60, 90, 3599, 3600, 3661, 65535] {
            let text = format_duration(Duration::from_secs(seconds));
            assert_eq!(
                parse_duration(&text),
                Ok(Duration::from_secs(seconds)),
                "{text}"
            );
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }
}
