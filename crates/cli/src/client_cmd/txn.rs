//! `chorus txn`: a transaction read from standard input in etcdctl's non-interactive format
//! (see `txn_parse`), printed as etcdctl does: `SUCCESS` or `FAILURE`, then each op's result
//! after a blank line.

use super::output::{self, Out};
use super::txn_parse::parse_txn;
use super::CommandError;
use chorus_client::{pb, Client};
use clap::Args;
use pb::response_op::Response;
use serde_json::{json, Value};
use std::io::Read;

/// The most bytes of txn input read from standard input.
const TXN_INPUT_BYTES_MAX: u64 = 4 * 1024 * 1024;

#[derive(Args, Debug)]
pub struct TxnArgs {}

pub async fn run(client: &Client, json: bool, _args: TxnArgs) -> Result<(), CommandError> {
    let mut input = String::new();
    std::io::stdin()
        .take(TXN_INPUT_BYTES_MAX + 1)
        .read_to_string(&mut input)
        .map_err(|error| CommandError::Usage(format!("reading the txn from stdin: {error}")))?;
    if input.len() as u64 > TXN_INPUT_BYTES_MAX {
        return Err(CommandError::Usage(format!(
            "the txn input is larger than {TXN_INPUT_BYTES_MAX} bytes"
        )));
    }
    let txn = parse_txn(&input).map_err(CommandError::Usage)?;
    let response = client.txn(txn).await?;
    let mut out = Out::default();
    if json {
        out.json(&txn_json(&response));
    } else {
        txn_simple(&mut out, &response);
    }
    Ok(out.print()?)
}

pub fn txn_simple(out: &mut Out, response: &pb::TxnResponse) {
    out.line(if response.succeeded {
        "SUCCESS"
    } else {
        "FAILURE"
    });
    for op in &response.responses {
        out.line("");
        match &op.response {
            Some(Response::ResponsePut(put)) => output::put_simple(out, put),
            Some(Response::ResponseRange(range)) => output::range_simple(out, range, false),
            Some(Response::ResponseDeleteRange(delete)) => output::delete_simple(out, delete),
            Some(Response::ResponseTxn(txn)) => txn_simple(out, txn),
            None => {}
        }
    }
}

pub fn txn_json(response: &pb::TxnResponse) -> Value {
    let responses: Vec<Value> = response
        .responses
        .iter()
        .map(|op| match &op.response {
            Some(Response::ResponsePut(put)) => json!({ "put": output::put_json(put) }),
            Some(Response::ResponseRange(range)) => json!({ "range": output::range_json(range) }),
            Some(Response::ResponseDeleteRange(delete)) => {
                json!({ "delete_range": output::delete_json(delete) })
            }
            Some(Response::ResponseTxn(txn)) => json!({ "txn": txn_json(txn) }),
            None => Value::Null,
        })
        .collect();
    json!({
        "header": output::header_json(response.header.as_ref()),
        "succeeded": response.succeeded,
        "responses": responses,
    })
}
