//! `chorus lease grant|revoke|ttl|list|keep-alive`, printed as etcdctl prints them (ids in
//! hexadecimal).

use super::output::{self, Out};
use super::{parse_hex_id, CommandError};
use chorus_client::Client;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Grant a lease of TTL seconds.
    Grant { ttl: i64 },
    /// Revoke a lease (its keys are deleted).
    Revoke {
        /// Hexadecimal lease id.
        id: String,
    },
    /// A lease's remaining time-to-live.
    Ttl {
        id: String,
        /// List the keys attached to it.
        #[arg(long)]
        keys: bool,
    },
    /// Every lease.
    List,
    /// Keep a lease alive until Ctrl-C (or `--once`: renew it once).
    KeepAlive {
        id: String,
        #[arg(long)]
        once: bool,
    },
}

pub async fn run(client: &Client, json: bool, command: LeaseCommand) -> Result<(), CommandError> {
    let mut out = Out::default();
    match command {
        LeaseCommand::Grant { ttl } => {
            let response = client.lease_grant(ttl, 0).await?;
            if json {
                out.json(&json!({
                    "header": output::header_json(response.header.as_ref()),
                    "id": format!("{:x}", response.id),
                    "ttl": response.ttl,
                }));
            } else {
                out.line(format!(
                    "lease {:x} granted with TTL({}s)",
                    response.id, response.ttl
                ));
            }
        }
        LeaseCommand::Revoke { id } => {
            let id = parse_hex_id(&id)? as i64;
            let response = client.lease_revoke(id).await?;
            if json {
                out.json(&json!({
                    "header": output::header_json(response.header.as_ref()),
                    "id": format!("{id:x}"),
                }));
            } else {
                out.line(format!("lease {id:x} revoked"));
            }
        }
        LeaseCommand::Ttl { id, keys } => {
            let id = parse_hex_id(&id)? as i64;
            let response = client.lease_time_to_live(id, keys).await?;
            let key_texts: Vec<String> = response.keys.iter().map(|k| output::text(k)).collect();
            if json {
                out.json(&json!({
                    "header": output::header_json(response.header.as_ref()),
                    "id": format!("{id:x}"),
                    "ttl": response.ttl,
                    "granted_ttl": response.granted_ttl,
                    "keys": key_texts,
                }));
            } else if response.ttl == -1 {
                out.line(format!("lease {id:x} already expired"));
            } else {
                let mut line = format!(
                    "lease {id:x} granted with TTL({}s), remaining({}s)",
                    response.granted_ttl, response.ttl
                );
                if keys {
                    line.push_str(&format!(", attached keys({key_texts:?})"));
                }
                out.line(line);
            }
        }
        LeaseCommand::List => {
            let response = client.leases().await?;
            let ids: Vec<String> = response
                .leases
                .iter()
                .map(|lease| format!("{:x}", lease.id))
                .collect();
            if json {
                out.json(&json!({
                    "header": output::header_json(response.header.as_ref()),
                    "leases": ids,
                }));
            } else {
                out.line(format!("found {} leases", ids.len()));
                for id in ids {
                    out.line(id);
                }
            }
        }
        LeaseCommand::KeepAlive { id, once } => {
            let id = parse_hex_id(&id)? as i64;
            return keep_alive(client, json, id, once).await;
        }
    }
    Ok(out.print()?)
}

async fn keep_alive(client: &Client, json: bool, id: i64, once: bool) -> Result<(), CommandError> {
    let print = |ttl: i64| {
        let mut out = Out::default();
        if json {
            out.json(&json!({ "id": format!("{id:x}"), "ttl": ttl }));
        } else {
            out.line(format!("lease {id:x} keepalived with TTL({ttl})"));
        }
        out.print()
    };
    if once {
        let response = client.lease_keep_alive_once(id).await?;
        return Ok(print(response.ttl)?);
    }
    let mut keep_alive = client.lease_keep_alive(id).await?;
    loop {
        let next = tokio::select! {
            next = keep_alive.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match next {
            Some(Ok(ttl)) => print(ttl)?,
            Some(Err(error)) => return Err(error.into()),
            None => return Ok(()),
        }
    }
}
