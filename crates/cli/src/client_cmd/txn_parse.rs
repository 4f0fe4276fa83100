//! etcdctl's non-interactive `txn` input, parsed (pure):
//!
//! ```text
//! mod("key1") > "0"
//! value("key2") = "v"
//!
//! put key1 "new value"
//! get key2
//!
//! del key1
//! ```
//!
//! Compares until the first blank line (`TARGET("KEY") OP "VALUE"`, TARGET one of `value`/`val`,
//! `version`/`ver`, `create`/`c`, `mod`/`m`, `lease`; OP one of `=`, `!=`, `>`, `<`), then the
//! ops run when they all hold, until the next blank line, then the ops run otherwise.
//! Ops: `put KEY VALUE [--lease=ID] [--prev-kv]`, `get KEY [RANGE_END] [--prefix]
//! [--from-key] [--limit=N] [--rev=R] [--keys-only] [--count-only]`,
//! `del KEY [RANGE_END] [--prefix] [--from-key] [--prev-kv]`. Words may be double-quoted with
//! Go/C escapes (`\"`, `\\`, `\n`, `\t`, `\xNN`) or single-quoted.

use chorus_client::{Compare, CompareOp, Delete, Get, KeyRange, Put, Txn, TxnOp};

/// The most lines read (compares and ops together); a larger txn is refused by the server
/// anyway (128 ops by default in etcd).
pub const TXN_LINES_MAX: usize = 1024;

pub fn parse_txn(input: &str) -> Result<Txn, String> {
    let mut sections: [Vec<&str>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let mut section = 0;
    for (number, line) in input.lines().enumerate() {
        if number >= TXN_LINES_MAX {
            return Err(format!("more than {TXN_LINES_MAX} lines"));
        }
        let line = line.trim();
        if line.is_empty() {
            section += 1;
            if section > 2 {
                // Trailing blank lines after the failure ops.
                section = 2;
                if !sections[2].is_empty() {
                    break;
                }
            }
            continue;
        }
        sections[section].push(line);
    }
    let compares = sections[0]
        .iter()
        .map(|line| parse_compare(line))
        .collect::<Result<Vec<_>, _>>()?;
    let success = sections[1]
        .iter()
        .map(|line| parse_op(line))
        .collect::<Result<Vec<_>, _>>()?;
    let failure = sections[2]
        .iter()
        .map(|line| parse_op(line))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Txn::new().when(compares).and_then(success).or_else(failure))
}

pub fn parse_compare(line: &str) -> Result<Compare, String> {
    let malformed = |why: &str| format!("malformed comparison {line:?}: {why}");
    let (target, rest) = line
        .split_once('(')
        .ok_or_else(|| malformed("expected TARGET(\"KEY\")"))?;
    let (key, rest) = take_word(rest.trim_start()).map_err(|why| malformed(&why))?;
    let rest = rest
        .trim_start()
        .strip_prefix(')')
        .ok_or_else(|| malformed("expected ) after the key"))?;
    let words = split_words(rest).map_err(|why| malformed(&why))?;
    let [op, value] = words.as_slice() else {
        return Err(malformed("expected an operator and a value"));
    };
    let op = match op.as_str() {
        "=" | "==" => CompareOp::Equal,
        "!=" => CompareOp::NotEqual,
        ">" => CompareOp::Greater,
        "<" => CompareOp::Less,
        other => return Err(malformed(&format!("unknown operator {other:?}"))),
    };
    let number = || {
        value
            .parse::<i64>()
            .map_err(|_| malformed(&format!("{value:?} is not a number")))
    };
    Ok(match target.trim() {
        "value" | "val" => Compare::value(key, op, value.as_bytes()),
        "version" | "ver" => Compare::version(key, op, number()?),
        "create" | "c" => Compare::create_revision(key, op, number()?),
        "mod" | "m" => Compare::mod_revision(key, op, number()?),
        "lease" => {
            let lease = i64::from_str_radix(value.trim_start_matches("0x"), 16)
                .map_err(|_| malformed(&format!("{value:?} is not a hexadecimal lease id")))?;
            Compare::lease(key, op, lease)
        }
        other => return Err(malformed(&format!("unknown target {other:?}"))),
    })
}

pub fn parse_op(line: &str) -> Result<TxnOp, String> {
    let words = split_words(line).map_err(|why| format!("malformed op {line:?}: {why}"))?;
    let Some((command, rest)) = words.split_first() else {
        return Err(format!("empty op {line:?}"));
    };
    let mut positional = Vec::new();
    let mut flags = Vec::new();
    let mut index = 0;
    while index < rest.len() {
        let word = &rest[index];
        if let Some(flag) = word.strip_prefix("--") {
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None if takes_value(flag) => {
                    index += 1;
                    let value = rest
                        .get(index)
                        .ok_or_else(|| format!("--{flag} needs a value in {line:?}"))?;
                    (flag.to_string(), Some(value.clone()))
                }
                None => (flag.to_string(), None),
            };
            flags.push((name, value));
        } else {
            positional.push(word.clone());
        }
        index += 1;
    }
    let bad_flag = |name: &str| format!("unknown flag --{name} for {command} in {line:?}");
    let number = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .unwrap_or("")
            .parse::<i64>()
            .map_err(|_| format!("--{name} needs a number in {line:?}"))
    };
    match command.as_str() {
        "put" => {
            let [key, value] = positional.as_slice() else {
                return Err(format!("put needs KEY VALUE in {line:?}"));
            };
            let mut put = Put::new(key.as_bytes(), value.as_bytes());
            for (name, value) in &flags {
                match name.as_str() {
                    "prev-kv" => put = put.prev_kv(),
                    "lease" => {
                        let id = value.as_deref().unwrap_or("");
                        let id = i64::from_str_radix(id.trim_start_matches("0x"), 16)
                            .map_err(|_| format!("--lease needs a hexadecimal id in {line:?}"))?;
                        put = put.lease(id);
                    }
                    other => return Err(bad_flag(other)),
                }
            }
            Ok(TxnOp::Put(put))
        }
        "get" => {
            let range = op_range(&positional, &flags, line)?;
            let mut get = Get::range(range);
            for (name, value) in &flags {
                match name.as_str() {
                    "prefix" | "from-key" => {}
                    "limit" => get = get.limit(number(name, value)?),
                    "rev" => get = get.revision(number(name, value)?),
                    "keys-only" => get = get.keys_only(),
                    "count-only" => get = get.count_only(),
                    other => return Err(bad_flag(other)),
                }
            }
            Ok(TxnOp::Get(get))
        }
        "del" | "delete" => {
            let range = op_range(&positional, &flags, line)?;
            let mut delete = Delete::range(range);
            for (name, _) in &flags {
                match name.as_str() {
                    "prefix" | "from-key" => {}
                    "prev-kv" => delete = delete.prev_kv(),
                    other => return Err(bad_flag(other)),
                }
            }
            Ok(TxnOp::Delete(delete))
        }
        other => Err(format!(
            "unknown op {other:?} in {line:?} (put, get or del)"
        )),
    }
}

fn takes_value(flag: &str) -> bool {
    matches!(flag, "lease" | "limit" | "rev")
}

fn op_range(
    positional: &[String],
    flags: &[(String, Option<String>)],
    line: &str,
) -> Result<KeyRange, String> {
    let has = |name: &str| flags.iter().any(|(flag, _)| flag == name);
    match positional {
        [key] if has("prefix") => Ok(KeyRange::prefix(key.as_bytes())),
        [key] if has("from-key") => Ok(KeyRange::from_key(key.as_bytes())),
        [key] => Ok(KeyRange::key(key.as_bytes())),
        [key, end] if !has("prefix") && !has("from-key") => {
            Ok(KeyRange::between(key.as_bytes(), end.as_bytes()))
        }
        _ => Err(format!("expected KEY [RANGE_END] in {line:?}")),
    }
}

/// Splits a line into words: blanks separate; double quotes with escapes, single quotes
/// verbatim.
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        let (word, after) = take_word(rest)?;
        words.push(word);
        rest = after.trim_start();
    }
    Ok(words)
}

/// One word from the start of `text`, and what follows it. An unquoted word ends at a blank
/// or a `)`.
fn take_word(text: &str) -> Result<(String, &str), String> {
    let mut chars = text.char_indices();
    match chars.next() {
        Some((_, '"')) => {
            let mut word = String::new();
            while let Some((at, c)) = chars.next() {
                match c {
                    '"' => return Ok((word, &text[at + 1..])),
                    '\\' => {
                        let (_, escaped) = chars.next().ok_or("a dangling \\")?;
                        match escaped {
                            'n' => word.push('\n'),
                            't' => word.push('\t'),
                            'r' => word.push('\r'),
                            '0' => word.push('\0'),
                            'x' => {
                                let high = chars.next().map(|(_, c)| c);
                                let low = chars.next().map(|(_, c)| c);
                                let hex: String = [high, low].into_iter().flatten().collect();
                                let byte = u8::from_str_radix(&hex, 16)
                                    .map_err(|_| format!("bad escape \\x{hex}"))?;
                                word.push(char::from(byte));
                            }
                            other => word.push(other),
                        }
                    }
                    other => word.push(other),
                }
            }
            Err("an unclosed double quote".to_string())
        }
        Some((_, '\'')) => {
            let body = &text[1..];
            let end = body.find('\'').ok_or("an unclosed single quote")?;
            Ok((body[..end].to_string(), &body[end + 1..]))
        }
        Some(_) => {
            let end = text
                .find(|c: char| c.is_whitespace() || c == ')')
                .unwrap_or(text.len());
            Ok((text[..end].to_string(), &text[end..]))
        }
        None => Err("a word was expected".to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use chorus_client::pb;
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    use pb::request_op::Request;

    #[test]
    fn etcdctls_example_parses() {
        let txn = parse_txn(
            "mod(\"key1\") > \"0\"\nvalue(\"key2\") = \"hello world\"\n\n\
             put key1 \"overwrote-key1\"\nget key2 --prefix\n\nput key1 created-key1\ndel key2\n",
        )
        .unwrap()
        .into_request();
        assert_eq!(txn.compare.len(), 2);
        assert_eq!(txn.compare[0].target, CompareTarget::Mod as i32);
        assert_eq!(txn.compare[0].result, CompareResult::Greater as i32);
        assert_eq!(
            txn.compare[1].target_union,
            Some(TargetUnion::Value("hello world".into()))
        );
        assert_eq!(txn.success.len(), 2);
        let Some(Request::RequestPut(put)) = &txn.success[0].request else {
            panic!("{:?}", txn.success[0]);
        };
        assert_eq!(&put.value[..], b"overwrote-key1");
        let Some(Request::RequestRange(get)) = &txn.success[1].request else {
            panic!();
        };
        assert_eq!(&get.range_end[..], b"key3");
        assert_eq!(txn.failure.len(), 2);
    }

    #[test]
    fn no_compares_and_only_success_ops_is_fine() {
        let txn = parse_txn("\nput a 1\n").unwrap().into_request();
        assert!(txn.compare.is_empty());
        assert_eq!(txn.success.len(), 1);
        assert!(txn.failure.is_empty());
    }

    #[test]
    fn compares_take_every_target_and_operator() {
        for (line, target) in [
            ("ver(\"k\") = \"1\"", CompareTarget::Version),
            ("version(\"k\") != \"1\"", CompareTarget::Version),
            ("c(\"k\") < \"3\"", CompareTarget::Create),
            ("create(\"k\") = \"0\"", CompareTarget::Create),
            ("m(\"k\") > \"3\"", CompareTarget::Mod),
            ("val(\"k\") = \"x\"", CompareTarget::Value),
            ("lease(\"k\") = \"694d71ddacfda227\"", CompareTarget::Lease),
        ] {
            let compare = parse_compare(line).unwrap().into_proto();
            assert_eq!(compare.target, target as i32, "{line}");
        }
    }

    #[test]
    fn malformed_input_says_what_is_wrong() {
        for (input, fragment) in [
            ("size(\"k\") = \"1\"", "unknown target"),
            ("mod(\"k\") >= \"1\"", "unknown operator"),
            ("mod(\"k\") > \"x\"", "not a number"),
            ("value(\"k\" = \"1\"", "expected )"),
            ("value(\"k", "unclosed"),
            ("\nincr k", "unknown op"),
            ("\nput k", "put needs KEY VALUE"),
            ("\nget k --limit", "needs a value"),
            ("\nget k --sort", "unknown flag"),
        ] {
            let error = parse_txn(input).unwrap_err();
            assert!(error.contains(fragment), "{input:?}: {error}");
        }
    }

    #[test]
    fn quoted_words_keep_blanks_and_escapes() {
        assert_eq!(
            split_words(r#"put "a b" 'c "d"' "e\"f\n\x41""#).unwrap(),
            vec!["put", "a b", "c \"d\"", "e\"f\nA"]
        );
    }

    #[test]
    fn too_many_lines_are_refused() {
        let input = "put k v\n".repeat(TXN_LINES_MAX + 1);
        assert!(parse_txn(&format!("\n{input}")).is_err());
    }
}
