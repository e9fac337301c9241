//! `weir run`: the service (see [`crate::service`]).

use crate::cli::RunArgs;
use crate::engine::SyncOptions;
use crate::manifest::Manifest;
use crate::runtime::Runtime;
use std::process::ExitCode;

pub(in crate::cli) async fn run(
    manifest: Manifest,
    runtime: Runtime,
    args: &RunArgs,
) -> anyhow::Result<ExitCode> {
    let options = crate::service::DaemonOptions {
        listen: args.listen,
        interval: std::time::Duration::from_secs(args.interval),
        sync: SyncOptions {
            batch_size: args.batch_size,
            retry_gather: crate::service::RETRY_GATHER,
            pass_rows: Some(usize::try_from(args.pass_rows).unwrap_or(usize::MAX)),
            ..SyncOptions::default()
        },
        quiet: args.quiet,
        wait: args.wait,
    };
    crate::service::run(manifest, runtime, options).await?;
    Ok(ExitCode::SUCCESS)
}
