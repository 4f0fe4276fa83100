//! `chorus watch`: prints events as etcdctl does (`PUT`/`DELETE`, the key, the value; the
//! previous key and value first with `--prev-kv`), or one JSON object per batch. Runs until
//! Ctrl-C (exit 0) or until the watch is canceled (exit 1). If its member goes away the watch
//! continues on another endpoint from the next revision.

use super::output::{self, Out};
use super::CommandError;
use chorus_client::{Client, KeyRange, Watch, WatchBatch};
use clap::Args;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct WatchArgs {
    pub key: String,
    /// The end of the range `[KEY, RANGE_END)`.
    pub range_end: Option<String>,
    /// Every key starting with KEY.
    #[arg(long, conflicts_with_all = ["from_key", "range_end"])]
    pub prefix: bool,
    /// Every key from KEY on.
    #[arg(long, conflicts_with = "range_end")]
    pub from_key: bool,
    /// Replay the history from this revision first.
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub rev: i64,
    /// Print each event's previous key-value too.
    #[arg(long)]
    pub prev_kv: bool,
}

pub async fn run(client: &Client, json: bool, args: WatchArgs) -> Result<(), CommandError> {
    let range = if args.prefix {
        KeyRange::prefix(args.key)
    } else if args.from_key {
        KeyRange::from_key(args.key)
    } else if let Some(end) = args.range_end {
        KeyRange::between(args.key, end)
    } else {
        KeyRange::key(args.key)
    };
    let mut watch = Watch::range(range).start_revision(args.rev);
    if args.prev_kv {
        watch = watch.prev_kv();
    }
    let mut watcher = client.watch(watch).await?;
    loop {
        let batch = tokio::select! {
            batch = watcher.next() => batch?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let mut out = Out::default();
        if json {
            out.json(&batch_json(&batch));
        } else {
            batch_simple(&mut out, &batch);
        }
        out.print()?;
    }
}

fn batch_simple(out: &mut Out, batch: &WatchBatch) {
    for event in &batch.events {
        out.line(output::event_type(event));
        if let Some(prev) = &event.prev_kv {
            out.kv(prev);
        }
        if let Some(kv) = &event.kv {
            out.kv(kv);
        }
    }
}

fn batch_json(batch: &WatchBatch) -> Value {
    let events: Vec<Value> = batch
        .events
        .iter()
        .map(|event| {
            let mut value = json!({
                "type": output::event_type(event),
                "kv": event.kv.as_ref().map(output::kv_json),
            });
            if let Some(prev) = &event.prev_kv {
                value["prev_kv"] = output::kv_json(prev);
            }
            value
        })
        .collect();
    json!({ "revision": batch.revision, "events": events })
}
