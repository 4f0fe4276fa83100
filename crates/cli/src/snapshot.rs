//! `chorus snapshot restore FILE`: a new member's data directory from a snapshot file that
//! `etcdctl snapshot save` wrote from a chorus member (see chorus_server::restore). It takes the
//! same flags as `chorus server` (`--name`, `--data-dir`, `--initial-cluster`, `--config`, ...):
//! restore every member of the new cluster from the same file, then start each with
//! `chorus server` and the same flags.

use crate::server::ServerArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Seed a new member's data directory (which must not exist or be empty) from a snapshot
    /// file saved by `etcdctl snapshot save`, for the cluster given by --initial-cluster.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn run(args: SnapshotArgs) -> anyhow::Result<()> {
    match args.command {
        SnapshotCommand::Restore { file, server } => {
            let config = server.into_config()?;
            let seeded = chorus_server::restore::restore_snapshot_file(&file, &config)?;
            println!(
                "restored {} into {} for member {}: raft index {}, revision {}, {} leases",
                file.display(),
                config.data_dir.display(),
                config.name,
                seeded.index.0,
                seeded.revision,
                seeded.leases
            );
            Ok(())
        }
    }
}
