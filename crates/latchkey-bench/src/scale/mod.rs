//! The scale benchmark: a store filled with many users and sessions
//! (`fill`), the refresh and `/v1/me` load spread over a large live set
//! of them in random order (`run`), and half of the untouched sessions
//! made dead for the prune's turn (`expire`).

mod fill;
mod fill_postgres;
mod fill_sqlite;
mod load;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};

pub use load::run;
pub use report::markdown;

#[derive(Subcommand)]
pub enum ScaleCommand {
    /// Fills a new store (latchkey's own schema, migrated by the store)
    /// with users and sessions, written in bulk rather than by logins; the
    /// refresh tokens of the live set go to --tokens, one per line.
    Fill(FillArgs),
    /// Makes about half of the sessions never refreshed (generation 0)
    /// dead: idle past any refresh_ttl. For the prune's turn.
    Expire(ExpireArgs),
    /// Refresh and `/v1/me` over the tokens of --tokens, each request a
    /// different session in random order; one JSON line per scenario.
    Run(RunArgs),
    /// The Markdown tables of the JSON lines of `run` (and the prune lines
    /// scripts/scale.sh writes), each store against the smallest of its
    /// engine.
    Report {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub struct FillArgs {
    /// `sqlite://PATH` or `postgres://...` (the database must exist and be
    /// empty).
    #[arg(long)]
    pub database_url: String,
    #[arg(long, default_value_t = 1_000_000)]
    pub users: u64,
    #[arg(long, default_value_t = 10_000_000)]
    pub sessions: u64,
    /// Sessions whose refresh tokens are written to --tokens, spread evenly
    /// over the others.
    #[arg(long, default_value_t = 100_000)]
    pub live: u64,
    /// Where the live set's refresh tokens go.
    #[arg(long)]
    pub tokens: PathBuf,
}

#[derive(Args)]
pub struct ExpireArgs {
    #[arg(long)]
    pub database_url: String,
}

#[derive(Args)]
pub struct RunArgs {
    /// The server, as http://IP:PORT (loopback only).
    #[arg(long)]
    pub url: String,
    /// The refresh tokens, one per line (`fill` writes them); rewritten
    /// with the current ones at the end, so runs can follow each other.
    #[arg(long)]
    pub tokens: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "refresh,me")]
    pub scenario: Vec<ScaleScenario>,
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    #[arg(long, default_value = "20s", value_parser = crate::parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "3s", value_parser = crate::parse_duration)]
    pub warmup: Duration,
    /// The engine's name, copied into the JSON lines.
    #[arg(long)]
    pub engine: String,
    /// The store's name (`10k`, `10M`...), copied into the JSON lines.
    #[arg(long)]
    pub store: String,
    /// What else happened meanwhile (`prune`), copied into the JSON lines.
    #[arg(long)]
    pub during: Option<String>,
    /// The server's process group (its pid, when started with `setsid`):
    /// its CPU per request and its resident memory are reported.
    #[arg(long)]
    pub server_pgid: Option<u32>,
    /// The database's process name (`postgres`): its CPU per request too.
    #[arg(long)]
    pub database_comm: Option<String>,
    /// The store's size on disk, in bytes, copied into the JSON lines.
    #[arg(long)]
    pub store_bytes: Option<u64>,
    /// Sessions in the store, copied into the JSON lines.
    #[arg(long)]
    pub store_sessions: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleScenario {
    Refresh,
    Me,
}

pub async fn fill(args: FillArgs) -> Result<()> {
    fill::run(args).await
}

pub async fn expire(args: ExpireArgs) -> Result<()> {
    if args.database_url.starts_with("sqlite:") {
        fill_sqlite::expire(&args.database_url)
    } else {
        fill_postgres::expire(&args.database_url).await
    }
}
