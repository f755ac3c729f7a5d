//! The command line: `serve`, `worker`, `jobs`, `export`, `auth`, `demo`, `gen-demo`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::{App, raise_open_file_limit, shutdown_on_signals};
use crate::auth_cli::{self, AuthCommand};
use crate::config::Config;
use crate::demo::{DemoOptions, run as run_demo};
use crate::export_cli::{self, ExportArgs};
use crate::jobs_cli::{self, JobsArgs};
use crate::query::{demo, demo_parquet};

/// What `forwarder --version` prints after the name: the package version and the git commit
/// it was built from (build.rs), e.g. `0.1.0 (217a019)`.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BUILT_FROM_COMMIT"), ")");

/// Forwarder: runs queries and delivers their results (CSV, JSON Lines, Parquet; gzip, zstd,
/// zip) to S3, GCS, Azure or a directory, or streams them straight to a client.
#[derive(Parser)]
#[command(version = VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (with its worker unless worker.enabled = false).
    Serve {
        /// Configuration file (TOML); FORWARDER_* variables override it.
        #[arg(long, short, env = "FORWARDER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run a worker only (no API): several of these can share one job store.
    Worker {
        /// Configuration file (TOML); FORWARDER_* variables override it.
        #[arg(long, short, env = "FORWARDER_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List, inspect and steer the jobs of a running server.
    Jobs(JobsArgs),
    /// Stream a query's result from a running server into a file (POST /v1/stream), with a
    /// progress bar; only rows the server vouched for reach the file.
    Export(ExportArgs),
    /// Create, list and revoke API tokens and keys (on the server's machine).
    Auth {
        /// Configuration file (TOML); FORWARDER_* variables override it.
        #[arg(long, short, env = "FORWARDER_CONFIG", global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// See an export travel the whole path, with nothing else installed: in-process S3
    /// endpoint, API, worker, outbox email.
    Demo {
        /// Where the demo keeps its data, job store, bucket and outbox.
        #[arg(long, default_value = "forwarder-demo")]
        dir: PathBuf,
        /// Rows of the demo table.
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        /// gzip, zstd, zip or plain.
        #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "zip", "plain"])]
        format: String,
        /// Part size limit, MB.
        #[arg(long, default_value_t = 5.0)]
        part_mb: f64,
        /// Keep the API and the S3 endpoint up after the export, until Ctrl-C, to try the API.
        #[arg(long)]
        keep: bool,
    },
    /// Write the demo table (demo.ecommerce.data) with a catalog naming it.
    GenDemo {
        /// Where to write the table (data/ecommerce-000.csv) and its catalog (catalog.toml).
        #[arg(long)]
        dir: PathBuf,
        /// How many rows (one every 40 ms from 2026-01-01 00:00 UTC).
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Also write the table as Parquet (parquet/ecommerce-000.parquet) and print the path
        /// of catalog-parquet.toml, which names that one.
        #[arg(long)]
        parquet: bool,
    },
}

/// The `forwarder` command: parses the arguments and runs the command. It lives in the
/// library, not in `main.rs`, so that it is compiled once: the server's run is generic over
/// its shutdown signal, and instantiated in the binary it made the binary's own compilation
/// take a minute of the first build (every generic it reached compiled a second time).
#[tokio::main]
pub async fn main() -> std::process::ExitCode {
    crate::telemetry::init();
    match run(Cli::parse().command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<export_cli::Interrupted>().is_some() => {
            eprintln!("{e}");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            // The causes on one line, never a backtrace: this is what an operator reads.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            raise_open_file_limit(&config);
            let listener = crate::api::bind(config.listen).with_context(|| {
                format!(
                    "cannot listen on {} (listen in the configuration, or FORWARDER_LISTEN)",
                    config.listen
                )
            })?;
            App::build(config).await?.run(listener, shutdown_on_signals()).await
        }
        Command::Worker { config } => {
            let config = Config::load(config.as_deref())?;
            raise_open_file_limit(&config);
            App::build(config).await?.run_worker(shutdown_on_signals()).await
        }
        Command::Jobs(args) => jobs_cli::run(args).await,
        Command::Export(args) => export_cli::run(args).await,
        Command::Auth { config, command } => auth_cli::run(config.as_deref(), command).await,
        Command::Demo { dir, rows, format, part_mb, keep } => {
            run_demo(DemoOptions { dir, rows, format, part_mb, keep }).await
        }
        Command::GenDemo { dir, rows, parquet } => {
            let catalog = if parquet {
                demo_parquet::create_parquet(&dir, rows).await?
            } else {
                demo::create(&dir, rows)?
            };
            println!("{}", catalog.display());
            Ok(())
        }
    }
}
