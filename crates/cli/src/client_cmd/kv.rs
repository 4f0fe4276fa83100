//! `chorus put`, `chorus get`, `chorus del`.

use super::output::{self, Out};
use super::{parse_hex_id, CommandError};
use chorus_client::{Client, Delete, Get, KeyRange, Put};
use clap::Args;

#[derive(Args, Debug)]
pub struct PutArgs {
    pub key: String,
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Attach the key to this lease (hexadecimal id, as `chorus lease grant` prints it).
    #[arg(long, value_name = "ID")]
    pub lease: Option<String>,
    /// Print the key's previous value.
    #[arg(long)]
    pub prev_kv: bool,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    pub key: String,
    /// The end of the range `[KEY, RANGE_END)`.
    pub range_end: Option<String>,
    /// Every key starting with KEY.
    #[arg(long, conflicts_with_all = ["from_key", "range_end"])]
    pub prefix: bool,
    /// Every key from KEY on.
    #[arg(long, conflicts_with = "range_end")]
    pub from_key: bool,
    /// At most this many keys (0: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub limit: i64,
    /// As of this revision (0: the latest).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub rev: i64,
    /// Print keys only (each followed by an empty line, as etcdctl does).
    #[arg(long)]
    pub keys_only: bool,
    /// Print only the number of keys.
    #[arg(long)]
    pub count_only: bool,
    /// Read the member's own state without confirming it is current (faster, maybe stale).
    #[arg(long)]
    pub serializable: bool,
    /// Read from the nearest member (by measured round-trip time), which answers only once it
    /// is not lagging and has applied what this client saw; another member otherwise.
    #[arg(long, conflicts_with = "serializable")]
    pub follower: bool,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    pub key: String,
    /// The end of the range `[KEY, RANGE_END)`.
    pub range_end: Option<String>,
    /// Every key starting with KEY.
    #[arg(long, conflicts_with_all = ["from_key", "range_end"])]
    pub prefix: bool,
    /// Every key from KEY on.
    #[arg(long, conflicts_with = "range_end")]
    pub from_key: bool,
    /// Print the deleted keys and values.
    #[arg(long)]
    pub prev_kv: bool,
}

fn key_range(key: &str, range_end: Option<&str>, prefix: bool, from_key: bool) -> KeyRange {
    if prefix {
        KeyRange::prefix(key)
    } else if from_key {
        KeyRange::from_key(key)
    } else if let Some(end) = range_end {
        KeyRange::between(key, end)
    } else {
        KeyRange::key(key)
    }
}

pub fn get_request(args: &GetArgs) -> Get {
    let range = key_range(
        &args.key,
        args.range_end.as_deref(),
        args.prefix,
        args.from_key,
    );
    let mut get = Get::range(range).limit(args.limit).revision(args.rev);
    if args.keys_only {
        get = get.keys_only();
    }
    if args.count_only {
        get = get.count_only();
    }
    if args.serializable {
        get = get.serializable();
    }
    get
}

pub async fn put(client: &Client, json: bool, args: PutArgs) -> Result<(), CommandError> {
    let mut put = Put::new(args.key, args.value);
    if let Some(lease) = &args.lease {
        put = put.lease(parse_hex_id(lease)? as i64);
    }
    if args.prev_kv {
        put = put.prev_kv();
    }
    let response = client.put(put).await?;
    let mut out = Out::default();
    if json {
        out.json(&output::put_json(&response));
    } else {
        output::put_simple(&mut out, &response);
    }
    Ok(out.print()?)
}

pub async fn get(client: &Client, json: bool, args: GetArgs) -> Result<(), CommandError> {
    let request = get_request(&args);
    let response = if args.follower {
        client.follower_get(request).await?
    } else {
        client.get(request).await?
    };
    let mut out = Out::default();
    if json {
        out.json(&output::range_json(&response));
    } else {
        output::range_simple(&mut out, &response, args.count_only);
    }
    Ok(out.print()?)
}

pub async fn del(client: &Client, json: bool, args: DelArgs) -> Result<(), CommandError> {
    let range = key_range(
        &args.key,
        args.range_end.as_deref(),
        args.prefix,
        args.from_key,
    );
    let mut delete = Delete::range(range);
    if args.prev_kv {
        delete = delete.prev_kv();
    }
    let response = client.delete(delete).await?;
    let mut out = Out::default();
    if json {
        out.json(&output::delete_json(&response));
    } else {
        output::delete_simple(&mut out, &response);
    }
    Ok(out.print()?)
}
