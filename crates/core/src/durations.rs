//! Durations in configuration files: one scheme for every setting.
//!
//! A duration setting is named with its unit (`ack_timeout_ms`,
//! `timer_tick_us`, `retention_interval_s`, `retention_hours`). Its value
//! is either a whole number of that unit (as every config before issue 22
//! wrote it) or a string with units, such as `"30s"`, `"250ms"`, `"7d"` or
//! `"1h30m"`, converted to the setting's unit. A string that is not a whole
//! number of the unit (`"1500us"` for a `_ms` setting) is refused rather
//! than rounded: a config never means something other than it says.
//!
//! Units: `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. Parts are summed
//! (`"1m30s"`); each is a non-negative integer, without spaces or signs.
//!
//! Use on a `u64` field: `#[serde(deserialize_with = "durations::millis")]`
//! (also [`micros`], [`secs`], [`hours`]). Serialising stays a number, so a
//! written-out config reads as before.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

/// A duration string that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a sequence of `<integer><unit>` parts.
    #[error("{0:?} is not a duration such as \"30s\", \"250ms\", \"7d\" or \"1h30m\" (units: us, ms, s, m, h, d)")]
    Syntax(String),
    /// Larger than `u64` microseconds.
    #[error("{0:?} is too long a duration")]
    Overflow(String),
    /// Not a whole number of the setting's unit.
    #[error("{text:?} is not a whole number of {unit}")]
    NotWhole {
        /// What was given.
        text: String,
        /// The setting's unit.
        unit: &'static str,
    },
}

/// Microseconds per unit suffix; longer suffixes first, so `ms` is not
/// read as `m` followed by garbage.
const UNITS: [(&str, u64); 7] = [
    ("us", 1),
    ("µs", 1),
    ("ms", 1_000),
    ("s", 1_000_000),
    ("m", 60 * 1_000_000),
    ("h", 3_600 * 1_000_000),
    ("d", 86_400 * 1_000_000),
];

/// Reads a duration string (`"30s"`, `"1h30m"`) as microseconds.
pub fn parse_micros(text: &str) -> Result<u64, DurationError> {
    let syntax = || DurationError::Syntax(text.to_string());
    let overflow = || DurationError::Overflow(text.to_string());
    let mut rest = text;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return Err(syntax());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(syntax());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| overflow())?;
        rest = &rest[digits..];
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let per_unit = UNITS
            .iter()
            .find(|(name, _)| *name == &rest[..unit_len])
            .map(|(_, us)| *us)
            .ok_or_else(syntax)?;
        rest = &rest[unit_len..];
        let part = number.checked_mul(per_unit).ok_or_else(overflow)?;
        total = total.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(total)
}

/// A duration string in whole `unit`s of `per_unit` microseconds.
fn in_unit(text: &str, per_unit: u64, unit: &'static str) -> Result<u64, DurationError> {
    let us = parse_micros(text)?;
    if us % per_unit != 0 {
        return Err(DurationError::NotWhole {
            text: text.to_string(),
            unit,
        });
    }
    Ok(us / per_unit)
}

/// Reads an integer (already in the unit) or a duration string.
struct UnitVisitor {
    per_unit: u64,
    unit: &'static str,
}

impl Visitor<'_> for UnitVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "a whole number of {} or a duration string such as \"30s\"",
            self.unit
        )
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("{v}: a duration cannot be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        in_unit(v, self.per_unit, self.unit).map_err(E::custom)
    }
}

fn deserialize_in<'de, D: Deserializer<'de>>(
    d: D,
    per_unit: u64,
    unit: &'static str,
) -> Result<u64, D::Error> {
    d.deserialize_any(UnitVisitor { per_unit, unit })
}

/// A `_us` setting: microseconds, or a duration string.
pub fn micros<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    deserialize_in(d, 1, "microseconds")
}

/// A `_ms` setting: milliseconds, or a duration string.
pub fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    deserialize_in(d, 1_000, "milliseconds")
}

/// A `_s` setting: seconds, or a duration string.
pub fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    deserialize_in(d, 1_000_000, "seconds")
}

/// A `_hours` setting: hours, or a duration string.
pub fn hours<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    deserialize_in(d, 3_600 * 1_000_000, "hours")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_sums() {
        for (text, us) in [
            ("0s", 0),
            ("250ms", 250_000),
            ("30s", 30_000_000),
            ("100us", 100),
            ("100µs", 100),
            ("5m", 300_000_000),
            ("2h", 7_200_000_000),
            ("7d", 604_800_000_000),
            ("1h30m", 5_400_000_000),
            ("1m30s500ms", 90_500_000),
        ] {
            assert_eq!(parse_micros(text), Ok(us), "{text}");
        }
    }

    #[test]
    fn malformed_strings_are_refused() {
        for bad in [
            "", "30", "s", "30 s", " 30s", "-5s", "+5s", "1.5s", "5sec", "5S", "ms5", "5s ",
        ] {
            assert!(
                matches!(parse_micros(bad), Err(DurationError::Syntax(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_micros("99999999999999999999d"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_micros("300000000d"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Settings {
        #[serde(deserialize_with = "millis")]
        timeout_ms: u64,
        #[serde(deserialize_with = "hours")]
        retention_hours: u64,
    }

    fn read(text: &str) -> Result<Settings, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    /// Issue 22 item 6: `"30s"` is accepted where a number of the setting's
    /// unit was, and old configs read as before.
    #[test]
    fn settings_take_numbers_in_their_unit_or_strings_with_units() {
        assert_eq!(
            read(r#"{"timeout_ms": 2000, "retention_hours": 168}"#),
            Ok(Settings {
                timeout_ms: 2000,
                retention_hours: 168
            })
        );
        assert_eq!(
            read(r#"{"timeout_ms": "2s", "retention_hours": "7d"}"#),
            Ok(Settings {
                timeout_ms: 2000,
                retention_hours: 168
            })
        );
        let not_whole = read(r#"{"timeout_ms": "1500us", "retention_hours": 1}"#).unwrap_err();
        assert!(
            not_whole.contains("not a whole number of milliseconds"),
            "{not_whole}"
        );
        let negative = read(r#"{"timeout_ms": -1, "retention_hours": 1}"#).unwrap_err();
        assert!(negative.contains("cannot be negative"), "{negative}");
        assert!(read(r#"{"timeout_ms": 1.5, "retention_hours": 1}"#).is_err());
        assert!(read(r#"{"timeout_ms": "soon", "retention_hours": 1}"#).is_err());
    }
}
