//! The replicated key-value state machine: put, get, compare-and-swap, delete.
//!
//! Commands travel inside raft entries as bytes; the snapshot is the serialized map. Both
//! encodings are ours and simple: a tag byte, then length-prefixed UTF-8 strings.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;

/// A mutating command, as proposed to raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put {
        key: String,
        value: String,
    },
    Delete {
        key: String,
    },
    /// Set `value` if the current value is `expect` (`None`: the key is absent).
    Cas {
        key: String,
        expect: Option<String>,
        value: String,
    },
}

/// What applying a command returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandResult {
    Done,
    Cas { swapped: bool },
}

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_CAS_ABSENT: u8 = 3;
const TAG_CAS_PRESENT: u8 = 4;

/// The largest string the encoding carries (keys and values are short in the simulator).
pub const STRING_BYTES_MAX: usize = u16::MAX as usize;

fn put_string(out: &mut BytesMut, text: &str) {
    assert!(
        text.len() <= STRING_BYTES_MAX,
        "string of {} bytes too long",
        text.len()
    );
    out.put_u16(text.len() as u16);
    out.put_slice(text.as_bytes());
}

/// Reads length-prefixed strings from a byte slice.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, String> {
        let (&first, rest) = self
            .bytes
            .split_first()
            .ok_or("truncated: expected a byte")?;
        self.bytes = rest;
        Ok(first)
    }

    fn u32(&mut self) -> Result<u32, String> {
        if self.bytes.len() < 4 {
            return Err("truncated: expected a u32".to_string());
        }
        let (head, rest) = self.bytes.split_at(4);
        self.bytes = rest;
        Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
    }

    fn string(&mut self) -> Result<String, String> {
        if self.bytes.len() < 2 {
            return Err("truncated: expected a string length".to_string());
        }
        let length = usize::from(u16::from_be_bytes([self.bytes[0], self.bytes[1]]));
        let rest = &self.bytes[2..];
        if rest.len() < length {
            return Err(format!("truncated: string of {length} bytes"));
        }
        let (text, rest) = rest.split_at(length);
        self.bytes = rest;
        String::from_utf8(text.to_vec()).map_err(|error| error.to_string())
    }

    fn finish(&self) -> Result<(), String> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(format!("{} trailing bytes", self.bytes.len()))
        }
    }
}

impl Command {
    pub fn key(&self) -> &str {
        match self {
            Command::Put { key, .. } | Command::Delete { key } | Command::Cas { key, .. } => key,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(32);
        match self {
            Command::Put { key, value } => {
                out.put_u8(TAG_PUT);
                put_string(&mut out, key);
                put_string(&mut out, value);
            }
            Command::Delete { key } => {
                out.put_u8(TAG_DELETE);
                put_string(&mut out, key);
            }
            Command::Cas {
                key,
                expect: None,
                value,
            } => {
                out.put_u8(TAG_CAS_ABSENT);
                put_string(&mut out, key);
                put_string(&mut out, value);
            }
            Command::Cas {
                key,
                expect: Some(expect),
                value,
            } => {
                out.put_u8(TAG_CAS_PRESENT);
                put_string(&mut out, key);
                put_string(&mut out, expect);
                put_string(&mut out, value);
            }
        }
        out.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        let mut reader = Reader { bytes };
        let command = match reader.u8()? {
            TAG_PUT => Command::Put {
                key: reader.string()?,
                value: reader.string()?,
            },
            TAG_DELETE => Command::Delete {
                key: reader.string()?,
            },
            TAG_CAS_ABSENT => Command::Cas {
                key: reader.string()?,
                expect: None,
                value: reader.string()?,
            },
            TAG_CAS_PRESENT => Command::Cas {
                key: reader.string()?,
                expect: Some(reader.string()?),
                value: reader.string()?,
            },
            tag => return Err(format!("unknown command tag {tag}")),
        };
        reader.finish()?;
        Ok(command)
    }
}

/// The map every replica builds by applying the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kv {
    map: BTreeMap<String, String>,
}

impl Kv {
    pub fn new() -> Kv {
        Kv::default()
    }

    pub fn get(&self, key: &str) -> Option<&String> {
        self.map.get(key)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn apply(&mut self, command: Command) -> CommandResult {
        match command {
            Command::Put { key, value } => {
                self.map.insert(key, value);
                CommandResult::Done
            }
            Command::Delete { key } => {
                self.map.remove(&key);
                CommandResult::Done
            }
            Command::Cas { key, expect, value } => {
                let swapped = self.map.get(&key) == expect.as_ref();
                if swapped {
                    self.map.insert(key, value);
                }
                CommandResult::Cas { swapped }
            }
        }
    }

    /// The whole map as bytes: a count, then key and value strings in key order.
    pub fn snapshot(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + self.map.len() * 16);
        out.put_u32(self.map.len() as u32);
        for (key, value) in &self.map {
            put_string(&mut out, key);
            put_string(&mut out, value);
        }
        out.freeze()
    }

    pub fn restore(bytes: &[u8]) -> Result<Kv, String> {
        if bytes.is_empty() {
            return Ok(Kv::new());
        }
        let mut reader = Reader { bytes };
        let count = reader.u32()?;
        let mut map = BTreeMap::new();
        for _ in 0..count {
            let key = reader.string()?;
            let value = reader.string()?;
            map.insert(key, value);
        }
        reader.finish()?;
        Ok(Kv { map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> Vec<Command> {
        vec![
            Command::Put {
                key: "k1".into(),
                value: "c1-1".into(),
            },
            Command::Delete { key: "k2".into() },
            Command::Cas {
                key: "k1".into(),
                expect: None,
                value: "c2-1".into(),
            },
            Command::Cas {
                key: "k1".into(),
                expect: Some("c1-1".into()),
                value: "c2-2".into(),
            },
        ]
    }

    #[test]
    fn commands_round_trip() {
        for command in commands() {
            assert_eq!(Command::decode(&command.encode()), Ok(command));
        }
    }

    #[test]
    fn truncated_and_padded_commands_are_refused() {
        let bytes = commands()[3].encode();
        for cut in 0..bytes.len() {
            assert!(
                Command::decode(&bytes[..cut]).is_err(),
                "accepted a {cut}-byte prefix"
            );
        }
        let mut padded = bytes.to_vec();
        padded.push(0);
        assert!(Command::decode(&padded).is_err());
    }

    #[test]
    fn apply_semantics() {
        let mut kv = Kv::new();
        let cas_absent = Command::Cas {
            key: "a".into(),
            expect: None,
            value: "1".into(),
        };
        assert_eq!(
            kv.apply(cas_absent.clone()),
            CommandResult::Cas { swapped: true }
        );
        assert_eq!(kv.apply(cas_absent), CommandResult::Cas { swapped: false });
        assert_eq!(kv.get("a").map(String::as_str), Some("1"));
        let cas = Command::Cas {
            key: "a".into(),
            expect: Some("1".into()),
            value: "2".into(),
        };
        assert_eq!(kv.apply(cas), CommandResult::Cas { swapped: true });
        assert_eq!(
            kv.apply(Command::Put {
                key: "b".into(),
                value: "3".into()
            }),
            CommandResult::Done
        );
        assert_eq!(
            kv.apply(Command::Delete { key: "a".into() }),
            CommandResult::Done
        );
        assert_eq!(kv.get("a"), None);
        assert_eq!(kv.len(), 1);
    }

    #[test]
    fn snapshot_round_trips() {
        let mut kv = Kv::new();
        for command in commands() {
            kv.apply(command);
        }
        kv.apply(Command::Put {
            key: "z".into(),
            value: "last".into(),
        });
        assert_eq!(Kv::restore(&kv.snapshot()), Ok(kv));
        assert_eq!(Kv::restore(&[]), Ok(Kv::new()));
    }
}
