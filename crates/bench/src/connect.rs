//! gRPC connections to the endpoints, round-robin.

use anyhow::Context;
use tonic::transport::{Channel, Endpoint};

/// Opens `conns` HTTP/2 connections, connection i to endpoint i mod the number of endpoints.
/// Each one multiplexes the requests of every client that shares it.
pub async fn channels(endpoints: &[String], conns: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(conns);
    for index in 0..conns {
        let endpoint = &endpoints[index % endpoints.len()];
        let url = if endpoint.contains("://") {
            endpoint.clone()
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("bad endpoint `{endpoint}`"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        channels.push(channel);
    }
    Ok(channels)
}
