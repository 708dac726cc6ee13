//! How admin API bodies read JSON, so they accept exactly what
//! docs/openapi.yaml describes (found by running schemathesis against it).
//!
//! - A body is a JSON object ([`object`]): serde would also fill a struct
//!   from an array (`[]` was a valid group change).
//! - Optional fields are absent or a value, never `null` ([`present`]):
//!   `{"to": 1, "id": null}` is not a valid publish.
//! - Integers are whole numbers as JSON Schema counts them ([`JsonInt`]).
//!   JSON has one number type; JSON Schema's `integer` (and so
//!   docs/openapi.yaml) includes `7.0` and `7e0`, and some JSON encoders
//!   write whole numbers that way. serde's `u64` refuses them, so every
//!   integer field of a request body is read through [`JsonInt`]: any
//!   spelling of a non-negative whole number is accepted, up to 2^53 when
//!   it has a fraction or exponent part (beyond that a float no longer
//!   names one integer, and guessing which would be worse than refusing).
//! - Ids (users, devices, groups, rooms, idempotency keys) may also be
//!   strings of decimal digits ([`JsonId`]): a JavaScript number cannot
//!   hold every 64-bit id, so a client may send `"4611686018427387903"`.
//!   Answers write ids as such strings (issue 22 item 5).

use serde::de::{Deserialize, DeserializeOwned, Deserializer, Error};
use serde_json::{Map, Value};

/// Reads a request body that must be one JSON object.
pub(super) fn object<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let fields: Map<String, Value> = serde_json::from_slice(body)?;
    T::deserialize(Value::Object(fields))
}

/// For `#[serde(default, deserialize_with = "present")]` on an `Option`
/// field: absent gives `None` (through `default`), a value `Some`, and
/// `null` is refused like any value of the wrong type.
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Largest integer every f64 spelling names exactly.
const EXACT_IN_F64: f64 = 9_007_199_254_740_992.0; // 2^53

/// A non-negative whole JSON number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct JsonInt(pub(super) u64);

impl<'de> Deserialize<'de> for JsonInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        whole_number(&n).map(JsonInt).map_err(D::Error::custom)
    }
}

/// The integer a JSON number names, if it is a whole non-negative one.
fn whole_number(n: &serde_json::Number) -> Result<u64, String> {
    if let Some(v) = n.as_u64() {
        return Ok(v);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=EXACT_IN_F64).contains(&f) => Ok(f as u64),
        _ => Err(format!(
            "{n} is not a non-negative integer (at most 2^53 when written with a fraction or exponent)"
        )),
    }
}

/// An id: a whole JSON number (as [`JsonInt`]) or a string of decimal
/// digits without sign, spaces or leading zeros (`"42"`, `"0"`), up to
/// 2^64 - 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct JsonId(pub(super) u64);

impl<'de> Deserialize<'de> for JsonId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => whole_number(&n).map(JsonId).map_err(D::Error::custom),
            Value::String(s) => decimal_id(&s).map(JsonId).ok_or_else(|| {
                D::Error::custom(format!(
                    "{s:?} is not an id (decimal digits, no sign or leading zeros, below 2^64)"
                ))
            }),
            other => Err(D::Error::custom(format!(
                "{other} is not an id (a number or a string of digits)"
            ))),
        }
    }
}

/// `"42"` -> 42; refuses signs, spaces, leading zeros and overflow.
fn decimal_id(s: &str) -> Option<u64> {
    let canonical = s == "0" || s.starts_with(|c: char| matches!(c, '1'..='9'));
    let digits = s.bytes().all(|b| b.is_ascii_digit());
    if canonical && digits {
        s.parse().ok()
    } else {
        None
    }
}

/// An id as answers write it: a decimal string (exact in any JSON reader).
pub(super) fn id_text(id: u64) -> String {
    id.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Optional {
        #[serde(default, deserialize_with = "present")]
        id: Option<JsonInt>,
    }

    /// Found by schemathesis: a JSON array filled the struct.
    #[test]
    fn a_body_is_an_object() {
        assert_eq!(object::<Optional>(b"{}").ok(), Some(Optional { id: None }));
        for bad in [&b"[]"[..], b"[3]", b"3", b"null", b"\"{}\""] {
            assert!(object::<Optional>(bad).is_err(), "{bad:?}");
        }
    }

    /// Found by schemathesis: `"id": null` was read as "no id".
    #[test]
    fn an_optional_field_is_absent_or_a_value_never_null() {
        let parse = |t: &str| serde_json::from_str::<Optional>(t).map(|o| o.id);
        assert_eq!(parse("{}").ok(), Some(None));
        assert_eq!(parse(r#"{"id": 3}"#).ok(), Some(Some(JsonInt(3))));
        assert!(parse(r#"{"id": null}"#).is_err());
    }

    fn parse(text: &str) -> Result<u64, String> {
        serde_json::from_str::<JsonInt>(text)
            .map(|n| n.0)
            .map_err(|e| e.to_string())
    }

    /// Issue 22 item 5: ids may be strings (JavaScript numbers cannot hold
    /// 64-bit ids), written canonically as answers write them.
    #[test]
    fn ids_are_numbers_or_strings_of_digits() {
        let id = |t: &str| serde_json::from_str::<JsonId>(t).map(|n| n.0);
        assert_eq!(id("42").ok(), Some(42));
        assert_eq!(id("4.2e1").ok(), Some(42));
        assert_eq!(id(r#""42""#).ok(), Some(42));
        assert_eq!(id(r#""0""#).ok(), Some(0));
        assert_eq!(id(r#""18446744073709551615""#).ok(), Some(u64::MAX));
        for bad in [
            r#""""#,
            r#""042""#,
            r#""-1""#,
            r#""+1""#,
            r#"" 1""#,
            r#""1 ""#,
            r#""1\n""#,
            r#""1.0""#,
            r#""0x10""#,
            r#""18446744073709551616""#,
            "null",
            "true",
            "[1]",
        ] {
            assert!(id(bad).is_err(), "{bad}");
        }
        let big = format!("\"{}\"", id_text((1 << 62) + 1));
        assert_eq!(id(&big).ok(), Some((1 << 62) + 1), "beyond 2^53, exactly");
    }

    /// Found by schemathesis against docs/openapi.yaml (issue 16 item 8):
    /// `{"user": 1, "device": 186.0}` is schema-valid and was refused.
    #[test]
    fn whole_numbers_in_any_spelling_are_integers() {
        assert_eq!(parse("186"), Ok(186));
        assert_eq!(parse("186.0"), Ok(186));
        assert_eq!(parse("1.86e2"), Ok(186));
        assert_eq!(parse("0.0"), Ok(0));
        assert_eq!(parse("-0.0"), Ok(0));
        assert_eq!(parse("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse("9007199254740992.0"), Ok(1 << 53));
        // Needs correctly rounded float parsing (serde_json's
        // `float_roundtrip`): the default parser read this as ...166.5.
        assert_eq!(parse("3916053349421166.0"), Ok(3_916_053_349_421_166));
        for bad in ["-1", "0.5", "9007199254740994.0", "1e300", "\"7\"", "null"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
