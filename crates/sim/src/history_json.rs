//! The client history as JSON Lines: one operation per line (docs/history.md is the format's
//! specification; this module and its tests must agree with it).
//!
//! ```text
//! {"client":1,"call":1200,"return":1850,"op":"put","key":"k3","value":"v9","ok":true}
//! {"client":2,"call":1300,"return":1700,"op":"get","key":"k3","output":null}
//! {"client":3,"call":1400,"return":null,"op":"cas","key":"k3","expect":"v9","value":"v10"}
//! ```
//!
//! Each operation carries one outcome field, and only once the client learned the outcome: `ok`
//! for put and delete (`false`: refused, not applied), `output` for get, `ok` for cas (whether it
//! swapped). A get or cas refused before it took effect has `"failed":true` instead. An operation
//! whose outcome the client never learned has `"return":null` and no outcome field.
//!
//! The reader is strict, because a history that silently means something else would make the
//! linearizability checker's verdict meaningless: every field must have its type, no field may
//! be missing or left over, and each error names the line.

use std::fmt;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::history::{Call, History, Nanos, Operation, Outcome};

/// Why [`read_history`] rejected its input. Lines are numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HistoryParseError {
    /// The line is not valid JSON.
    InvalidJson {
        line: usize,
        reason: String,
    },
    /// The line is JSON but not an object.
    NotAnObject {
        line: usize,
    },
    MissingField {
        line: usize,
        field: &'static str,
    },
    WrongType {
        line: usize,
        field: &'static str,
        expected: &'static str,
    },
    UnknownOp {
        line: usize,
        op: String,
    },
    /// A field this kind of operation does not have, or one no operation has.
    UnexpectedField {
        line: usize,
        field: String,
        op: &'static str,
    },
    /// The fields are well typed but contradict each other.
    Inconsistent {
        line: usize,
        reason: &'static str,
    },
}

impl fmt::Display for HistoryParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryParseError::InvalidJson { line, reason } => {
                write!(formatter, "line {line}: not valid JSON: {reason}")
            }
            HistoryParseError::NotAnObject { line } => {
                write!(
                    formatter,
                    "line {line}: expected a JSON object, one operation per line"
                )
            }
            HistoryParseError::MissingField { line, field } => {
                write!(formatter, "line {line}: missing field {field:?}")
            }
            HistoryParseError::WrongType {
                line,
                field,
                expected,
            } => {
                write!(formatter, "line {line}: field {field:?} must be {expected}")
            }
            HistoryParseError::UnknownOp { line, op } => write!(
                formatter,
                "line {line}: unknown op {op:?} (expected put, get, cas or delete)"
            ),
            HistoryParseError::UnexpectedField { line, field, op } => {
                write!(
                    formatter,
                    "line {line}: field {field:?} does not belong on a {op}"
                )
            }
            HistoryParseError::Inconsistent { line, reason } => {
                write!(formatter, "line {line}: {reason}")
            }
        }
    }
}

impl std::error::Error for HistoryParseError {}

/// Writes `history` as JSON Lines, one operation per line, in the history's order.
///
/// An operation that breaks [`Operation::check_invariants`] cannot be represented and is refused
/// with [`io::ErrorKind::InvalidInput`], naming its index; the lines before it have been written.
pub fn write_history(history: &History, out: &mut impl Write) -> io::Result<()> {
    for (index, operation) in history.operations.iter().enumerate() {
        if let Err(reason) = operation.check_invariants() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("history operation {index} is malformed: {reason}"),
            ));
        }
        serde_json::to_writer(&mut *out, &Line::from(operation))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Reads a history written by [`write_history`] (or by hand, following docs/history.md). Blank
/// lines are skipped. Never panics: any malformed line is an error naming it.
pub fn read_history(input: &str) -> Result<History, HistoryParseError> {
    let mut operations = Vec::new();
    for (index, text) in input.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        operations.push(parse_line(index + 1, text)?);
    }
    Ok(History { operations })
}

/// One line as written. Field order is the order of the declaration.
#[derive(Serialize)]
struct Line<'a> {
    client: u64,
    call: Nanos,
    #[serde(rename = "return")]
    return_time: Option<Nanos>,
    op: &'static str,
    key: &'a str,
    /// `Some(None)` is written as `null` (expect the key absent); `None` is left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    expect: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    /// `Some(None)` is written as `null` (the key was absent); `None` is left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ok: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<bool>,
}

impl<'a> From<&'a Operation> for Line<'a> {
    fn from(operation: &'a Operation) -> Self {
        let mut line = Line {
            client: operation.client,
            call: operation.call_time,
            return_time: operation.return_time,
            op: "",
            key: operation.call.key(),
            expect: None,
            value: None,
            output: None,
            ok: None,
            failed: None,
        };
        match &operation.call {
            Call::Put { value, .. } => {
                line.op = "put";
                line.value = Some(value);
            }
            Call::Get { .. } => line.op = "get",
            Call::Cas { expect, value, .. } => {
                line.op = "cas";
                line.expect = Some(expect.as_deref());
                line.value = Some(value);
            }
            Call::Delete { .. } => line.op = "delete",
        }
        match (&operation.call, &operation.outcome) {
            (Call::Put { .. } | Call::Delete { .. }, Outcome::Failed) => line.ok = Some(false),
            (_, Outcome::Failed) => line.failed = Some(true),
            (_, Outcome::Ok) => line.ok = Some(true),
            (_, Outcome::Read(output)) => line.output = Some(output.as_deref()),
            (_, Outcome::Cas(swapped)) => line.ok = Some(*swapped),
            (_, Outcome::Unknown) => {}
        }
        line
    }
}

/// The fields every line has.
const COMMON_FIELDS: [&str; 5] = ["client", "call", "return", "op", "key"];

fn parse_line(line: usize, text: &str) -> Result<Operation, HistoryParseError> {
    let value: Value =
        serde_json::from_str(text).map_err(|error| HistoryParseError::InvalidJson {
            line,
            reason: error.to_string(),
        })?;
    let Value::Object(fields) = value else {
        return Err(HistoryParseError::NotAnObject { line });
    };
    let fields = Fields { line, fields };
    let op_name = fields.string("op")?;
    let (op, own_fields): (&'static str, &[&str]) = match op_name.as_str() {
        "put" => ("put", &["value", "ok"]),
        "get" => ("get", &["output", "failed"]),
        "cas" => ("cas", &["expect", "value", "ok", "failed"]),
        "delete" => ("delete", &["ok"]),
        _ => return Err(HistoryParseError::UnknownOp { line, op: op_name }),
    };
    if let Some(field) = fields.fields.keys().find(|field| {
        !COMMON_FIELDS.contains(&field.as_str()) && !own_fields.contains(&field.as_str())
    }) {
        return Err(HistoryParseError::UnexpectedField {
            line,
            field: field.clone(),
            op,
        });
    }

    let client = fields.unsigned("client")?;
    let call_time = fields.unsigned("call")?;
    let return_time = fields.nullable_unsigned("return")?;
    let key = fields.string("key")?;
    let call = match op {
        "put" => Call::Put {
            key,
            value: fields.string("value")?,
        },
        "get" => Call::Get { key },
        "cas" => Call::Cas {
            key,
            expect: fields.nullable_string("expect")?,
            value: fields.string("value")?,
        },
        _ => Call::Delete { key },
    };
    let outcome = match return_time {
        None => fields.unknown_outcome()?,
        Some(return_time) if return_time < call_time => {
            return Err(HistoryParseError::Inconsistent {
                line,
                reason: "\"return\" is before \"call\"",
            });
        }
        Some(_) => fields.known_outcome(&call)?,
    };
    Ok(Operation {
        client,
        call_time,
        return_time,
        call,
        outcome,
    })
}

/// A line's fields, with accessors that name the line and field in their errors.
struct Fields {
    line: usize,
    fields: Map<String, Value>,
}

impl Fields {
    fn get(&self, field: &'static str) -> Result<&Value, HistoryParseError> {
        self.fields
            .get(field)
            .ok_or(HistoryParseError::MissingField {
                line: self.line,
                field,
            })
    }

    fn wrong_type(&self, field: &'static str, expected: &'static str) -> HistoryParseError {
        HistoryParseError::WrongType {
            line: self.line,
            field,
            expected,
        }
    }

    fn unsigned(&self, field: &'static str) -> Result<u64, HistoryParseError> {
        self.get(field)?
            .as_u64()
            .ok_or_else(|| self.wrong_type(field, "a non-negative integer"))
    }

    fn nullable_unsigned(&self, field: &'static str) -> Result<Option<u64>, HistoryParseError> {
        match self.get(field)? {
            Value::Null => Ok(None),
            value => value
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(field, "a non-negative integer or null")),
        }
    }

    fn string(&self, field: &'static str) -> Result<String, HistoryParseError> {
        match self.get(field)? {
            Value::String(text) => Ok(text.clone()),
            _ => Err(self.wrong_type(field, "a string")),
        }
    }

    fn nullable_string(&self, field: &'static str) -> Result<Option<String>, HistoryParseError> {
        match self.get(field)? {
            Value::Null => Ok(None),
            Value::String(text) => Ok(Some(text.clone())),
            _ => Err(self.wrong_type(field, "a string or null")),
        }
    }

    fn boolean(&self, field: &'static str) -> Result<bool, HistoryParseError> {
        self.get(field)?
            .as_bool()
            .ok_or_else(|| self.wrong_type(field, "true or false"))
    }

    fn inconsistent(&self, reason: &'static str) -> HistoryParseError {
        HistoryParseError::Inconsistent {
            line: self.line,
            reason,
        }
    }

    /// The outcome of an operation with `"return":null`: it must carry no outcome field.
    fn unknown_outcome(&self) -> Result<Outcome, HistoryParseError> {
        if ["ok", "output", "failed"]
            .iter()
            .any(|field| self.fields.contains_key(*field))
        {
            return Err(self.inconsistent(
                "an operation with \"return\":null has an unknown outcome, so no ok, output or \
                 failed",
            ));
        }
        Ok(Outcome::Unknown)
    }

    /// The outcome of an operation that returned, from its one outcome field.
    fn known_outcome(&self, call: &Call) -> Result<Outcome, HistoryParseError> {
        let failed = match self.fields.get("failed") {
            None => false,
            Some(Value::Bool(true)) => true,
            Some(_) => return Err(self.wrong_type("failed", "true (or left out)")),
        };
        match call {
            Call::Put { .. } | Call::Delete { .. } => Ok(if self.boolean("ok")? {
                Outcome::Ok
            } else {
                Outcome::Failed
            }),
            Call::Get { .. } if failed => match self.fields.contains_key("output") {
                true => Err(self.inconsistent("a failed get has no \"output\"")),
                false => Ok(Outcome::Failed),
            },
            Call::Get { .. } => Ok(Outcome::Read(self.nullable_string("output")?)),
            Call::Cas { .. } if failed => match self.fields.contains_key("ok") {
                true => Err(self.inconsistent("a failed cas has no \"ok\"")),
                false => Ok(Outcome::Failed),
            },
            Call::Cas { .. } => Ok(Outcome::Cas(self.boolean("ok")?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn operation(
        client: u64,
        times: (Nanos, Option<Nanos>),
        call: Call,
        outcome: Outcome,
    ) -> Operation {
        Operation {
            client,
            call_time: times.0,
            return_time: times.1,
            call,
            outcome,
        }
    }

    fn written(history: &History) -> String {
        let mut out = Vec::new();
        let written = write_history(history, &mut out);
        assert!(written.is_ok(), "write_history failed: {written:?}");
        String::from_utf8(out).unwrap_or_default()
    }

    fn put(key: &str, value: &str) -> Call {
        Call::Put {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    fn get(key: &str) -> Call {
        Call::Get {
            key: key.to_owned(),
        }
    }

    fn cas(key: &str, expect: Option<&str>, value: &str) -> Call {
        Call::Cas {
            key: key.to_owned(),
            expect: expect.map(str::to_owned),
            value: value.to_owned(),
        }
    }

    fn delete(key: &str) -> Call {
        Call::Delete {
            key: key.to_owned(),
        }
    }

    /// Every kind of operation with every outcome it can have.
    fn every_shape() -> History {
        let returned = |call_time: Nanos| (call_time, Some(call_time + 650));
        let unknown = |call_time: Nanos| (call_time, None);
        let read = |value: Option<&str>| Outcome::Read(value.map(str::to_owned));
        History {
            operations: vec![
                operation(1, returned(1200), put("k3", "v9"), Outcome::Ok),
                operation(1, returned(1300), put("k3", "v9"), Outcome::Failed),
                operation(1, unknown(1400), put("k3", "v9"), Outcome::Unknown),
                operation(2, returned(1500), get("k3"), read(Some("v9"))),
                operation(2, returned(1600), get("k3"), read(None)),
                operation(2, returned(1700), get("k3"), Outcome::Failed),
                operation(2, unknown(1800), get("k3"), Outcome::Unknown),
                operation(
                    3,
                    returned(1900),
                    cas("k3", Some("v9"), "v10"),
                    Outcome::Cas(true),
                ),
                operation(
                    3,
                    returned(2000),
                    cas("k3", None, "v1"),
                    Outcome::Cas(false),
                ),
                operation(3, returned(2100), cas("k3", None, "v1"), Outcome::Failed),
                operation(
                    3,
                    unknown(2200),
                    cas("k3", Some("v9"), "v2"),
                    Outcome::Unknown,
                ),
                operation(4, returned(2300), delete("k3"), Outcome::Ok),
                operation(4, returned(2400), delete("k3"), Outcome::Failed),
                operation(4, unknown(2500), delete("k3"), Outcome::Unknown),
            ],
        }
    }

    #[test]
    fn put_line_has_the_documented_shape() {
        let history = History {
            operations: vec![operation(
                1,
                (1200, Some(1850)),
                put("k3", "v9"),
                Outcome::Ok,
            )],
        };
        assert_eq!(
            written(&history),
            "{\"client\":1,\"call\":1200,\"return\":1850,\"op\":\"put\",\"key\":\"k3\",\
             \"value\":\"v9\",\"ok\":true}\n"
        );
    }

    #[test]
    fn every_shape_is_written_as_documented() {
        let expected = [
            r#"{"client":1,"call":1200,"return":1850,"op":"put","key":"k3","value":"v9","ok":true}"#,
            r#"{"client":1,"call":1300,"return":1950,"op":"put","key":"k3","value":"v9","ok":false}"#,
            r#"{"client":1,"call":1400,"return":null,"op":"put","key":"k3","value":"v9"}"#,
            r#"{"client":2,"call":1500,"return":2150,"op":"get","key":"k3","output":"v9"}"#,
            r#"{"client":2,"call":1600,"return":2250,"op":"get","key":"k3","output":null}"#,
            r#"{"client":2,"call":1700,"return":2350,"op":"get","key":"k3","failed":true}"#,
            r#"{"client":2,"call":1800,"return":null,"op":"get","key":"k3"}"#,
            r#"{"client":3,"call":1900,"return":2550,"op":"cas","key":"k3","expect":"v9","value":"v10","ok":true}"#,
            r#"{"client":3,"call":2000,"return":2650,"op":"cas","key":"k3","expect":null,"value":"v1","ok":false}"#,
            r#"{"client":3,"call":2100,"return":2750,"op":"cas","key":"k3","expect":null,"value":"v1","failed":true}"#,
            r#"{"client":3,"call":2200,"return":null,"op":"cas","key":"k3","expect":"v9","value":"v2"}"#,
            r#"{"client":4,"call":2300,"return":2950,"op":"delete","key":"k3","ok":true}"#,
            r#"{"client":4,"call":2400,"return":3050,"op":"delete","key":"k3","ok":false}"#,
            r#"{"client":4,"call":2500,"return":null,"op":"delete","key":"k3"}"#,
        ];
        let text = written(&every_shape());
        assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn every_shape_round_trips() {
        let history = every_shape();
        assert_eq!(
            read_history(&written(&history)).map(|read| read.operations),
            Ok(history.operations)
        );
    }

    #[test]
    fn strings_are_escaped_and_round_trip() {
        let history = History {
            operations: vec![operation(
                7,
                (0, Some(0)),
                put("k\"ey\n", "välue \\ \u{1F600}\t"),
                Outcome::Ok,
            )],
        };
        let text = written(&history);
        assert_eq!(text.lines().count(), 1);
        assert_eq!(
            read_history(&text).map(|read| read.operations),
            Ok(history.operations)
        );
    }

    #[test]
    fn blank_lines_are_skipped_and_line_numbers_count_them() {
        let delete = r#"{"client":1,"call":5,"return":6,"op":"delete","key":"k","ok":true}"#;
        let text = format!("\n{delete}\n\n  \n{{\"client\":1}}\n");
        assert_eq!(
            read_history(&text).map(|read| read.operations),
            Err(HistoryParseError::MissingField {
                line: 5,
                field: "op"
            })
        );
        let first_line_only: String = text.lines().take(3).collect::<Vec<_>>().join("\n");
        assert_eq!(
            read_history(&first_line_only).map(|read| read.operations.len()),
            Ok(1)
        );
    }

    #[test]
    fn empty_input_is_an_empty_history() {
        assert_eq!(read_history("").map(|read| read.operations), Ok(vec![]));
    }

    /// The error for a single malformed line, and its message.
    fn rejection(line: &str) -> (HistoryParseError, String) {
        match read_history(line) {
            Ok(history) => panic!("accepted {line}: {history:?}"),
            Err(error) => {
                let message = error.to_string();
                (error, message)
            }
        }
    }

    #[test]
    fn malformed_lines_are_rejected_with_their_reason() {
        let cases: [(&str, &str); 22] = [
            ("not json", "line 1: not valid JSON"),
            ("[1,2]", "line 1: expected a JSON object"),
            (
                r#"{"call":1,"return":2,"op":"get","key":"k","output":null}"#,
                r#"missing field "client""#,
            ),
            (
                r#"{"client":-1,"call":1,"return":2,"op":"get","key":"k","output":null}"#,
                r#"field "client" must be a non-negative integer"#,
            ),
            (
                r#"{"client":1,"call":"1","return":2,"op":"get","key":"k","output":null}"#,
                r#"field "call" must be a non-negative integer"#,
            ),
            (
                r#"{"client":1,"call":1.5,"return":2,"op":"get","key":"k","output":null}"#,
                r#"field "call" must be a non-negative integer"#,
            ),
            (
                r#"{"client":1,"call":1,"op":"get","key":"k","output":null}"#,
                r#"missing field "return""#,
            ),
            (
                r#"{"client":1,"call":1,"return":"2","op":"get","key":"k","output":null}"#,
                r#"field "return" must be a non-negative integer or null"#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"scan","key":"k"}"#,
                r#"unknown op "scan""#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":7,"key":"k"}"#,
                r#"field "op" must be a string"#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"get","key":3,"output":null}"#,
                r#"field "key" must be a string"#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"get","key":"k","output":null,"colour":"red"}"#,
                r#"field "colour" does not belong on a get"#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"put","key":"k","value":"v","ok":true,"output":"v"}"#,
                r#"field "output" does not belong on a put"#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"put","key":"k","ok":true}"#,
                r#"missing field "value""#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"put","key":"k","value":"v"}"#,
                r#"missing field "ok""#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"put","key":"k","value":"v","ok":"yes"}"#,
                r#"field "ok" must be true or false"#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"get","key":"k"}"#,
                r#"missing field "output""#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"cas","key":"k","value":"v","ok":true}"#,
                r#"missing field "expect""#,
            ),
            (
                r#"{"client":1,"call":3,"return":2,"op":"delete","key":"k","ok":true}"#,
                r#""return" is before "call""#,
            ),
            (
                r#"{"client":1,"call":1,"return":null,"op":"delete","key":"k","ok":true}"#,
                "no ok, output or failed",
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"cas","key":"k","expect":null,"value":"v","ok":false,"failed":true}"#,
                r#"a failed cas has no "ok""#,
            ),
            (
                r#"{"client":1,"call":1,"return":2,"op":"get","key":"k","failed":false}"#,
                r#"field "failed" must be true (or left out)"#,
            ),
        ];
        for (line, expected) in cases {
            let (_, message) = rejection(line);
            assert!(
                message.contains(expected),
                "{line}\n  gave: {message}\n  wanted: {expected}"
            );
        }
    }

    #[test]
    fn error_names_the_line_and_field() {
        let good = r#"{"client":1,"call":1,"return":2,"op":"delete","key":"k","ok":true}"#;
        let bad = r#"{"client":1,"call":1,"return":2,"op":"delete","key":"k","ok":1}"#;
        let (error, message) = rejection(&format!("{good}\n{good}\n{bad}\n{good}"));
        assert_eq!(
            error,
            HistoryParseError::WrongType {
                line: 3,
                field: "ok",
                expected: "true or false"
            }
        );
        assert_eq!(message, "line 3: field \"ok\" must be true or false");
    }

    #[test]
    fn malformed_operation_is_not_written() {
        let get_answered_ok = operation(1, (0, Some(1)), get("k"), Outcome::Ok);
        let history = History {
            operations: vec![get_answered_ok],
        };
        let mut out = Vec::new();
        let error = write_history(&history, &mut out).err();
        assert_eq!(
            error.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::InvalidInput)
        );
        assert!(out.is_empty());
    }

    fn any_operation() -> impl Strategy<Value = Operation> {
        let text = "[a-z0-9 \"\\\\\u{e9}\u{1F600}]{0,6}";
        let call =
            prop_oneof![
                (text, text).prop_map(|(key, value)| Call::Put { key, value }),
                text.prop_map(|key| Call::Get { key }),
                (text, proptest::option::of(text), text)
                    .prop_map(|(key, expect, value)| Call::Cas { key, expect, value }),
                text.prop_map(|key| Call::Delete { key }),
            ];
        (
            any::<u64>(),
            any::<u64>(),
            0..u64::MAX / 2,
            call,
            0..4u8,
            proptest::option::of(text),
        )
            .prop_map(|(client, call_time, duration, call, fate, read)| {
                let outcome = match (&call, fate) {
                    (_, 0) => Outcome::Unknown,
                    (_, 1) => Outcome::Failed,
                    (Call::Get { .. }, _) => Outcome::Read(read),
                    (Call::Cas { .. }, fate) => Outcome::Cas(fate == 2),
                    _ => Outcome::Ok,
                };
                let return_time =
                    (outcome != Outcome::Unknown).then(|| call_time.saturating_add(duration));
                Operation {
                    client,
                    call_time,
                    return_time,
                    call,
                    outcome,
                }
            })
    }

    proptest! {
        #[test]
        fn written_histories_read_back_the_same(
            operations in proptest::collection::vec(any_operation(), 0..20)
        ) {
            let history = History { operations };
            let text = written(&history);
            prop_assert_eq!(text.lines().count(), history.operations.len());
            prop_assert_eq!(read_history(&text).map(|read| read.operations), Ok(history.operations));
        }

        #[test]
        fn reading_arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = read_history(&text);
        }

        #[test]
        fn reading_mangled_lines_never_panics(
            operations in proptest::collection::vec(any_operation(), 1..5),
            cut in any::<proptest::sample::Index>(),
            junk in "[{}\\[\\]\":,a-z0-9 ]{0,8}",
        ) {
            let text = written(&History { operations });
            let mut cut_at = cut.index(text.len() + 1);
            while !text.is_char_boundary(cut_at) {
                cut_at -= 1;
            }
            let mangled = format!("{}{junk}{}", &text[..cut_at], &text[cut_at..]);
            let _ = read_history(&mangled);
        }
    }
}
