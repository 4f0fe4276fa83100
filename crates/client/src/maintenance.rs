//! Status of each endpoint: asked of that endpoint alone, never failed over.

use crate::client::error_chain;
use crate::{Client, Error};
use chorus_proto::etcdserverpb as pb;
use chorus_proto::etcdserverpb::maintenance_client::MaintenanceClient;

/// One endpoint's status, or why it could not be had.
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub status: Result<pb::StatusResponse, Error>,
}

impl Client {
    /// The status of endpoint number `index` (in the order given), within the call timeout.
    pub async fn status_of(&self, index: usize) -> Result<pb::StatusResponse, Error> {
        if index >= self.endpoint_count() {
            return Err(Error::InvalidArgument(format!(
                "no endpoint number {index}"
            )));
        }
        let name = self.endpoint_name(index).to_string();
        let budget = self.config().call_timeout;
        let channel = self
            .channel(index, budget)
            .await
            .map_err(|message| Error::Unavailable {
                message: format!("{name}: {message}"),
            })?;
        let mut maintenance = MaintenanceClient::new(channel);
        match tokio::time::timeout(budget, maintenance.status(pb::StatusRequest {})).await {
            Ok(Ok(response)) => {
                let response = response.into_inner();
                self.observe(response.header.as_ref());
                Ok(response)
            }
            Ok(Err(status)) => {
                if crate::error::is_transport_failure(&status) {
                    self.drop_channel(index);
                    return Err(Error::Unavailable {
                        message: format!("{name}: {}", status.message()),
                    });
                }
                Err(status.into())
            }
            Err(elapsed) => Err(Error::Unavailable {
                message: format!("{name}: {}", error_chain(&elapsed)),
            }),
        }
    }

    /// Every endpoint's status, asked of all at once, in the order given.
    pub async fn status_all(&self) -> Vec<EndpointStatus> {
        let tasks: Vec<_> = (0..self.endpoint_count())
            .map(|index| {
                let client = self.clone();
                tokio::spawn(async move { client.status_of(index).await })
            })
            .collect();
        let mut statuses = Vec::with_capacity(tasks.len());
        for (index, task) in tasks.into_iter().enumerate() {
            let status = task.await.unwrap_or_else(|error| {
                Err(Error::Unavailable {
                    message: error.to_string(),
                })
            });
            statuses.push(EndpointStatus {
                endpoint: self.endpoint_name(index).to_string(),
                status,
            });
        }
        statuses
    }
}
