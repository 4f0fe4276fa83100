//! `chorus status`: the status of every member of the cluster (from MemberList, each asked at
//! its first client URL, so members not among `--endpoints` show too) as a table, or one JSON
//! object per member. Each row has the member's role, raft term and indexes, and its lag: the
//! leader's raft index minus the member's applied index.
//!
//! A member that does not answer (or has not started: no client URL yet) gets a row with its
//! error, an `Error:` line on standard error and exit code 3. When MemberList itself fails (no
//! quorum), the given endpoints are asked instead, after a warning.

use super::output::{self, Out};
use super::CommandError;
use chorus_client::{pb, Client, ClientConfig, Error};
use serde_json::{json, Value};
use std::time::Duration;

const COLUMNS: [&str; 12] = [
    "ENDPOINT",
    "ID",
    "NAME",
    "ROLE",
    "TERM",
    "RAFT INDEX",
    "APPLIED INDEX",
    "LAG",
    "REVISION",
    "DB SIZE",
    "VERSION",
    "ERRORS",
];

/// One member's (or, without a member list, one endpoint's) answer.
struct MemberStatus {
    endpoint: String,
    /// From the member list; 0 when asking endpoints (the answer's header has it then).
    id: u64,
    name: String,
    is_learner: bool,
    status: Result<pb::StatusResponse, Error>,
}

impl MemberStatus {
    fn member_id(&self) -> u64 {
        match &self.status {
            Ok(response) => response.header.as_ref().map_or(self.id, |h| h.member_id),
            Err(_) => self.id,
        }
    }
}

pub async fn run(client: &Client, json: bool, timeout: Duration) -> Result<(), CommandError> {
    let statuses = match client.member_list().await {
        Ok(list) => member_statuses(&list.members, timeout).await,
        Err(error) => {
            eprintln!("Warning: member list failed ({error}); showing the given endpoints only");
            endpoint_statuses(client).await
        }
    };
    let leader_index = leader_raft_index(&statuses);
    let mut out = Out::default();
    if json {
        for status in &statuses {
            out.json(&status_json(status, leader_index));
        }
    } else {
        let rows: Vec<Vec<String>> = statuses
            .iter()
            .map(|status| row(status, leader_index))
            .collect();
        table(&mut out, &rows);
    }
    out.print()?;
    let failed: Vec<&Error> = statuses
        .iter()
        .filter_map(|status| status.status.as_ref().err())
        .collect();
    for error in &failed[..failed.len().saturating_sub(1)] {
        eprintln!("Error: {error}");
    }
    match failed.last() {
        Some(error) => Err(CommandError::Client((*error).clone())),
        None => Ok(()),
    }
}

/// Asks every member at its first client URL, all at once, each within `timeout`.
async fn member_statuses(members: &[pb::Member], timeout: Duration) -> Vec<MemberStatus> {
    let tasks: Vec<_> = members
        .iter()
        .map(|member| {
            let url = member.client_ur_ls.first().cloned();
            tokio::spawn(async move {
                let Some(url) = url else {
                    return Err(Error::Unavailable {
                        message: "not started (no client URL yet)".to_string(),
                    });
                };
                let mut config = ClientConfig::new([url]);
                config.call_timeout = timeout;
                config.connect_timeout = config.connect_timeout.min(timeout);
                Client::new(config)?.status_of(0).await
            })
        })
        .collect();
    let mut statuses = Vec::with_capacity(members.len());
    for (member, task) in members.iter().zip(tasks) {
        let status = task.await.unwrap_or_else(|error| {
            Err(Error::Unavailable {
                message: error.to_string(),
            })
        });
        statuses.push(MemberStatus {
            endpoint: member
                .client_ur_ls
                .first()
                .cloned()
                .unwrap_or_else(|| "-".to_string()),
            id: member.id,
            name: member.name.clone(),
            is_learner: member.is_learner,
            status,
        });
    }
    statuses
}

/// Asks the given endpoints (when the member list is not available).
async fn endpoint_statuses(client: &Client) -> Vec<MemberStatus> {
    client
        .status_all()
        .await
        .into_iter()
        .map(|status| MemberStatus {
            endpoint: status.endpoint,
            id: 0,
            name: String::new(),
            is_learner: status
                .status
                .as_ref()
                .is_ok_and(|response| response.is_learner),
            status: status.status,
        })
        .collect()
}

/// The raft index of the member that names itself leader, if it answered.
fn leader_raft_index(statuses: &[MemberStatus]) -> Option<u64> {
    statuses.iter().find_map(|status| match &status.status {
        Ok(response) if response.leader != 0 && response.leader == status.member_id() => {
            Some(response.raft_index)
        }
        _ => None,
    })
}

fn role(status: &MemberStatus, response: &pb::StatusResponse) -> &'static str {
    if response.leader != 0 && response.leader == status.member_id() {
        "leader"
    } else if status.is_learner || response.is_learner {
        "learner"
    } else {
        "follower"
    }
}

fn lag(leader_index: Option<u64>, response: &pb::StatusResponse) -> Option<u64> {
    leader_index.map(|index| index.saturating_sub(response.raft_applied_index))
}

fn row(status: &MemberStatus, leader_index: Option<u64>) -> Vec<String> {
    let name = if status.name.is_empty() {
        "-".to_string()
    } else {
        status.name.clone()
    };
    let id = match status.member_id() {
        0 => "-".to_string(),
        id => format!("{id:x}"),
    };
    match &status.status {
        Ok(response) => vec![
            status.endpoint.clone(),
            id,
            name,
            role(status, response).to_string(),
            response.raft_term.to_string(),
            response.raft_index.to_string(),
            response.raft_applied_index.to_string(),
            lag(leader_index, response).map_or_else(|| "-".to_string(), |lag| lag.to_string()),
            response
                .header
                .as_ref()
                .map_or(0, |header| header.revision)
                .to_string(),
            output::human_bytes(response.db_size),
            response.version.clone(),
            response.errors.join(", "),
        ],
        Err(error) => {
            let mut cells = vec![status.endpoint.clone(), id, name];
            cells.extend(vec!["-".to_string(); COLUMNS.len() - 4]);
            cells.push(error.to_string());
            cells
        }
    }
}

fn table(out: &mut Out, rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = COLUMNS.iter().map(|column| column.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let render = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    out.line(render(COLUMNS.to_vec()));
    for row in rows {
        out.line(render(row.iter().map(String::as_str).collect()));
    }
}

fn status_json(status: &MemberStatus, leader_index: Option<u64>) -> Value {
    let member_id = status.member_id();
    match &status.status {
        Ok(response) => json!({
            "endpoint": status.endpoint,
            "header": output::header_json(response.header.as_ref()),
            "member_id": format!("{member_id:x}"),
            "name": status.name,
            "role": role(status, response),
            "leader": format!("{:x}", response.leader),
            "is_leader": member_id != 0 && member_id == response.leader,
            "raft_term": response.raft_term,
            "raft_index": response.raft_index,
            "raft_applied_index": response.raft_applied_index,
            "lag": lag(leader_index, response),
            "revision": response.header.as_ref().map_or(0, |header| header.revision),
            "db_size": response.db_size,
            "db_size_in_use": response.db_size_in_use,
            "version": response.version,
            "is_learner": status.is_learner || response.is_learner,
            "errors": response.errors,
        }),
        Err(error) => json!({
            "endpoint": status.endpoint,
            "member_id": format!("{member_id:x}"),
            "name": status.name,
            "error": error.to_string(),
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn answered(id: u64, leader: u64, raft_index: u64, applied: u64) -> MemberStatus {
        MemberStatus {
            endpoint: format!("http://127.0.0.1:{id}"),
            id,
            name: format!("n{id}"),
            is_learner: id == 3,
            status: Ok(pb::StatusResponse {
                header: Some(pb::ResponseHeader {
                    member_id: id,
                    revision: 9,
                    ..Default::default()
                }),
                leader,
                raft_term: 4,
                raft_index,
                raft_applied_index: applied,
                version: "3.5.0".to_string(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn rows_show_roles_and_lag_behind_the_leaders_raft_index() {
        let statuses = vec![
            answered(1, 2, 10, 8),
            answered(2, 2, 12, 12),
            answered(3, 2, 5, 4),
            MemberStatus {
                endpoint: "-".to_string(),
                id: 4,
                name: String::new(),
                is_learner: true,
                status: Err(Error::Unavailable {
                    message: "not started (no client URL yet)".to_string(),
                }),
            },
        ];
        let leader = leader_raft_index(&statuses);
        assert_eq!(leader, Some(12));
        let rows: Vec<Vec<String>> = statuses.iter().map(|s| row(s, leader)).collect();
        assert_eq!(rows[0][3..8], ["follower", "4", "10", "8", "4"]);
        assert_eq!(rows[1][3..8], ["leader", "4", "12", "12", "0"]);
        assert_eq!(rows[2][3..8], ["learner", "4", "5", "4", "8"]);
        assert_eq!(rows[3][..4], ["-", "4", "-", "-"]);
        assert!(rows[3][11].contains("not started"));
        assert!(rows.iter().all(|row| row.len() == COLUMNS.len()));
        let json = status_json(&statuses[0], leader);
        assert_eq!(json["role"], "follower");
        assert_eq!(json["lag"], 4);
        assert_eq!(json["is_leader"], false);
        assert_eq!(status_json(&statuses[3], leader)["member_id"], "4");
    }
}
