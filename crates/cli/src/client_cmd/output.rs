//! Printing results: etcdctl's simple format (raw key and value bytes, one per line) or one
//! JSON object per result (keys and values as UTF-8 text, invalid bytes replaced).

use chorus_client::{mvccpb, pb};
use serde_json::{json, Value};
use std::io::Write;

/// Output built in memory, then written at once.
#[derive(Default)]
pub struct Out(Vec<u8>);

impl Out {
    pub fn line(&mut self, text: impl AsRef<[u8]>) {
        self.0.extend_from_slice(text.as_ref());
        self.0.push(b'\n');
    }

    pub fn json(&mut self, value: &Value) {
        self.line(value.to_string());
    }

    /// A key then its value, each on its own line (etcdctl prints an empty value line for
    /// `--keys-only` too).
    pub fn kv(&mut self, kv: &mvccpb::KeyValue) {
        self.line(&kv.key);
        self.line(&kv.value);
    }

    /// Writes everything to standard output and flushes (a watch prints as events come).
    pub fn print(self) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&self.0)?;
        stdout.flush()
    }

    #[cfg(test)]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn header_json(header: Option<&pb::ResponseHeader>) -> Value {
    let header = header.cloned().unwrap_or_default();
    json!({
        "cluster_id": header.cluster_id,
        "member_id": header.member_id,
        "revision": header.revision,
        "raft_term": header.raft_term,
    })
}

pub fn kv_json(kv: &mvccpb::KeyValue) -> Value {
    json!({
        "key": text(&kv.key),
        "value": text(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    })
}

pub fn kvs_json(kvs: &[mvccpb::KeyValue]) -> Value {
    Value::Array(kvs.iter().map(kv_json).collect())
}

pub fn range_json(response: &pb::RangeResponse) -> Value {
    json!({
        "header": header_json(response.header.as_ref()),
        "kvs": kvs_json(&response.kvs),
        "count": response.count,
        "more": response.more,
    })
}

pub fn put_json(response: &pb::PutResponse) -> Value {
    let mut value = json!({ "header": header_json(response.header.as_ref()) });
    if let Some(prev) = &response.prev_kv {
        value["prev_kv"] = kv_json(prev);
    }
    value
}

pub fn delete_json(response: &pb::DeleteRangeResponse) -> Value {
    json!({
        "header": header_json(response.header.as_ref()),
        "deleted": response.deleted,
        "prev_kvs": kvs_json(&response.prev_kvs),
    })
}

pub fn range_simple(out: &mut Out, response: &pb::RangeResponse, count_only: bool) {
    if count_only {
        out.line(response.count.to_string());
        return;
    }
    for kv in &response.kvs {
        out.kv(kv);
    }
}

pub fn put_simple(out: &mut Out, response: &pb::PutResponse) {
    out.line("OK");
    if let Some(prev) = &response.prev_kv {
        out.kv(prev);
    }
}

pub fn delete_simple(out: &mut Out, response: &pb::DeleteRangeResponse) {
    out.line(response.deleted.to_string());
    for kv in &response.prev_kvs {
        out.kv(kv);
    }
}

/// An event type as etcd names it.
pub fn event_type(event: &mvccpb::Event) -> &'static str {
    if event.r#type == mvccpb::event::EventType::Delete as i32 {
        "DELETE"
    } else {
        "PUT"
    }
}

/// A size in bytes as etcdctl prints it (SI units: `20 kB`, `1.2 MB`).
pub fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes.max(0) as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 || value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str) -> mvccpb::KeyValue {
        mvccpb::KeyValue {
            key: key.to_string().into(),
            value: value.to_string().into(),
            mod_revision: 5,
            ..mvccpb::KeyValue::default()
        }
    }

    #[test]
    fn simple_output_is_etcdctls() {
        let mut out = Out::default();
        let range = pb::RangeResponse {
            kvs: vec![kv("a", "1"), kv("b", "")],
            count: 2,
            ..pb::RangeResponse::default()
        };
        range_simple(&mut out, &range, false);
        put_simple(
            &mut out,
            &pb::PutResponse {
                prev_kv: Some(kv("a", "0")),
                ..pb::PutResponse::default()
            },
        );
        assert_eq!(out.text(), "a\n1\nb\n\nOK\na\n0\n");
        let mut count = Out::default();
        range_simple(&mut count, &range, true);
        assert_eq!(count.text(), "2\n");
    }

    #[test]
    fn json_has_text_keys_and_the_header() {
        let range = pb::RangeResponse {
            header: Some(pb::ResponseHeader {
                revision: 9,
                ..pb::ResponseHeader::default()
            }),
            kvs: vec![kv("a", "1")],
            count: 1,
            more: false,
        };
        let value = range_json(&range);
        assert_eq!(value["kvs"][0]["key"], "a");
        assert_eq!(value["kvs"][0]["mod_revision"], 5);
        assert_eq!(value["header"]["revision"], 9);
    }

    #[test]
    fn sizes_read_like_etcdctl() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
    }
}
