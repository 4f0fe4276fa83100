//! `chorus status`: every endpoint's status as a table (or one JSON object per endpoint). An
//! endpoint that does not answer gets a row with its error, an `Error:` line on standard error
//! and exit code 3.

use super::output::{self, Out};
use super::CommandError;
use chorus_client::{Client, EndpointStatus};
use serde_json::{json, Value};

const COLUMNS: [&str; 10] = [
    "ENDPOINT",
    "ID",
    "LEADER",
    "TERM",
    "RAFT INDEX",
    "APPLIED INDEX",
    "REVISION",
    "DB SIZE",
    "VERSION",
    "ERRORS",
];

pub async fn run(client: &Client, json: bool) -> Result<(), CommandError> {
    let statuses = client.status_all().await;
    let mut out = Out::default();
    if json {
        for status in &statuses {
            out.json(&status_json(status));
        }
    } else {
        let rows: Vec<Vec<String>> = statuses.iter().map(row).collect();
        table(&mut out, &rows);
    }
    out.print()?;
    let failed: Vec<&EndpointStatus> = statuses
        .iter()
        .filter(|status| status.status.is_err())
        .collect();
    for status in &failed[..failed.len().saturating_sub(1)] {
        if let Err(error) = &status.status {
            eprintln!("Error: {error}");
        }
    }
    match failed.last().map(|status| &status.status) {
        Some(Err(error)) => Err(CommandError::Client(error.clone())),
        _ => Ok(()),
    }
}

fn row(status: &EndpointStatus) -> Vec<String> {
    match &status.status {
        Ok(response) => {
            let member_id = response
                .header
                .as_ref()
                .map_or(0, |header| header.member_id);
            let errors = response.errors.join(", ");
            vec![
                status.endpoint.clone(),
                format!("{member_id:x}"),
                (member_id != 0 && member_id == response.leader).to_string(),
                response.raft_term.to_string(),
                response.raft_index.to_string(),
                response.raft_applied_index.to_string(),
                response
                    .header
                    .as_ref()
                    .map_or(0, |header| header.revision)
                    .to_string(),
                output::human_bytes(response.db_size),
                response.version.clone(),
                errors,
            ]
        }
        Err(error) => {
            let mut cells = vec![status.endpoint.clone()];
            cells.extend(vec!["-".to_string(); COLUMNS.len() - 2]);
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

fn status_json(status: &EndpointStatus) -> Value {
    match &status.status {
        Ok(response) => {
            let member_id = response
                .header
                .as_ref()
                .map_or(0, |header| header.member_id);
            json!({
                "endpoint": status.endpoint,
                "header": output::header_json(response.header.as_ref()),
                "member_id": format!("{member_id:x}"),
                "leader": format!("{:x}", response.leader),
                "is_leader": member_id != 0 && member_id == response.leader,
                "raft_term": response.raft_term,
                "raft_index": response.raft_index,
                "raft_applied_index": response.raft_applied_index,
                "revision": response.header.as_ref().map_or(0, |header| header.revision),
                "db_size": response.db_size,
                "db_size_in_use": response.db_size_in_use,
                "version": response.version,
                "is_learner": response.is_learner,
                "errors": response.errors,
            })
        }
        Err(error) => json!({ "endpoint": status.endpoint, "error": error.to_string() }),
    }
}
