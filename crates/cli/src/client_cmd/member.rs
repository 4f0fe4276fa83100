//! `chorus member list|add|remove|promote|update`, printed as etcdctl prints them (ids in
//! hexadecimal).

use super::output::{self, Out};
use super::{parse_hex_id, CommandError};
use chorus_client::{pb, Client};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Every member: id, started, name, peer URLs, client URLs, learner.
    List,
    /// Add a member (it must then be started with the new cluster list).
    Add {
        /// The new member's name (printed back for its `--initial-cluster`).
        name: String,
        /// Its peer URLs, comma-separated.
        #[arg(long, value_name = "URLS")]
        peer_urls: String,
        /// Add it as a learner (no vote until promoted).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member.
    Remove {
        /// Hexadecimal member id.
        id: String,
    },
    /// Make a learner a voting member.
    Promote { id: String },
    /// Change a member's peer URLs.
    Update {
        id: String,
        #[arg(long, value_name = "URLS")]
        peer_urls: String,
    },
}

fn urls(list: &str) -> Vec<String> {
    chorus_client::split_endpoints(list)
}

fn member_json(member: &pb::Member) -> Value {
    json!({
        "id": format!("{:x}", member.id),
        "name": member.name,
        "peer_urls": member.peer_ur_ls,
        "client_urls": member.client_ur_ls,
        "is_learner": member.is_learner,
    })
}

fn cluster_id(header: Option<&pb::ResponseHeader>) -> u64 {
    header.map_or(0, |header| header.cluster_id)
}

pub async fn run(client: &Client, json: bool, command: MemberCommand) -> Result<(), CommandError> {
    let mut out = Out::default();
    match command {
        MemberCommand::List => {
            let response = client.member_list().await?;
            if json {
                out.json(&json!({
                    "header": output::header_json(response.header.as_ref()),
                    "members": response.members.iter().map(member_json).collect::<Vec<_>>(),
                }));
            } else {
                for member in &response.members {
                    let started = if member.name.is_empty() {
                        "unstarted"
                    } else {
                        "started"
                    };
                    out.line(format!(
                        "{:x}, {started}, {}, {}, {}, {}",
                        member.id,
                        member.name,
                        member.peer_ur_ls.join(","),
                        member.client_ur_ls.join(","),
                        member.is_learner
                    ));
                }
            }
        }
        MemberCommand::Add {
            name,
            peer_urls,
            learner,
        } => {
            let response = client.member_add(urls(&peer_urls), learner).await?;
            let id = response.member.as_ref().map_or(0, |member| member.id);
            if json {
                out.json(&json!({
                    "header": output::header_json(response.header.as_ref()),
                    "member": response.member.as_ref().map(member_json),
                    "members": response.members.iter().map(member_json).collect::<Vec<_>>(),
                }));
            } else {
                out.line(format!(
                    "Member {id:x} added to cluster {:x}",
                    cluster_id(response.header.as_ref())
                ));
                let initial_cluster: Vec<String> = response
                    .members
                    .iter()
                    .flat_map(|member| {
                        let member_name = if member.id == id {
                            name.clone()
                        } else {
                            member.name.clone()
                        };
                        member
                            .peer_ur_ls
                            .iter()
                            .map(move |url| format!("{member_name}={url}"))
                    })
                    .collect();
                out.line("");
                out.line(format!("CHORUS_NAME=\"{name}\""));
                out.line(format!(
                    "CHORUS_INITIAL_CLUSTER=\"{}\"",
                    initial_cluster.join(",")
                ));
            }
        }
        MemberCommand::Remove { id } => {
            let id = parse_hex_id(&id)?;
            let response = client.member_remove(id).await?;
            changed(&mut out, json, id, "removed from", response.header.as_ref());
        }
        MemberCommand::Promote { id } => {
            let id = parse_hex_id(&id)?;
            let response = client.member_promote(id).await?;
            changed(&mut out, json, id, "promoted in", response.header.as_ref());
        }
        MemberCommand::Update { id, peer_urls } => {
            let id = parse_hex_id(&id)?;
            let response = client.member_update(id, urls(&peer_urls)).await?;
            changed(&mut out, json, id, "updated in", response.header.as_ref());
        }
    }
    Ok(out.print()?)
}

fn changed(out: &mut Out, json: bool, id: u64, what: &str, header: Option<&pb::ResponseHeader>) {
    if json {
        out.json(&json!({ "header": output::header_json(header), "id": format!("{id:x}") }));
    } else {
        out.line(format!(
            "Member {id:x} {what} cluster {:x}",
            cluster_id(header)
        ));
    }
}
