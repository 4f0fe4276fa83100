//! The admin HTTP port (`--listen-admin-urls`): Prometheus metrics, liveness and readiness, a
//! small JSON API about this member, the cluster and its keys, and the live dashboard page.
//!
//! Everything here reads: the group through [`GroupHandle::observe`] and serializable
//! (local) ranges, so the port keeps answering on a follower and while no leader is known.
//! Other members' states come from their own gRPC `Maintenance.Status` (their client URLs),
//! fetched by this server, so the page talks only to the origin that served it (no CORS).

mod api;
pub mod health;
mod poller;
pub mod requests;

use crate::group::GroupHandle;
use crate::members::Members;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The dashboard: one static page, its script and style inline.
const DASHBOARD_HTML: &str = include_str!("dashboard.html");
/// How often the poller refreshes the gauges read from the group.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What the admin handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub group: GroupHandle,
    pub members: Members,
    pub name: String,
    pub admin_url: String,
    pub database_path: PathBuf,
    /// This member's lag as stamped follower reads see it (`/api/status`'s `follower_read`).
    pub follower_reads: Option<crate::follower_read::FollowerReads>,
    /// gRPC channels to the other members' client URLs, made lazily, by URL.
    channels: Arc<Mutex<BTreeMap<String, tonic::transport::Channel>>>,
}

impl AdminState {
    pub fn new(
        group: GroupHandle,
        members: Members,
        name: String,
        admin_url: String,
        database_path: PathBuf,
    ) -> AdminState {
        AdminState {
            group,
            members,
            name,
            admin_url,
            database_path,
            follower_reads: None,
            channels: Arc::default(),
        }
    }

    fn database_bytes(&self) -> u64 {
        std::fs::metadata(&self.database_path).map_or(0, |metadata| metadata.len())
    }
}

/// Serves the admin port on `listener` until `shutdown` completes, and keeps the metrics'
/// gauges fresh meanwhile.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let poll = tokio::spawn(poller::run(state.clone()));
    let router = Router::new()
        .route("/", get(dashboard))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(api::readyz))
        .route("/api/status", get(api::status))
        .route("/api/members", get(api::members))
        .route("/api/keys", get(api::keys))
        .route("/api/key", get(api::key))
        .with_state(state);
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    poll.abort();
    served
}

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DASHBOARD_HTML,
    )
        .into_response()
}

async fn metrics() -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::metrics().render(),
    )
        .into_response()
}
