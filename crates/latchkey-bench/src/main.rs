//! latchkey-bench: the load generator that compares latchkey with the
//! Express baseline and, for OAuth, with oidc-provider (requests/s,
//! p50/p99/p999 latency and the server's CPU per request, per path), and
//! measures bare Argon2id hashing for comparison with login; and the
//! programs that show latchkey holds under abuse: `soak`, `abuse`, `kill9`.
//!
//! Every target must be a loopback address.

mod abuse;
mod attack;
mod client;
mod cpu;
mod feed_latency;
mod hash;
mod kill9;
mod load;
mod mix;
mod pgbench;
mod report;
mod scale;
mod server;
mod soak;
mod target;

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use hyper::header::HeaderValue;

use crate::client::{basic_auth, Endpoint};
use crate::load::LoadConfig;
use crate::target::{Scenario, Target};

#[derive(Parser)]
#[command(name = "latchkey-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load a server with one or more scenarios; one JSON line per scenario
    /// on stdout, a human-readable line on stderr.
    Run(RunArgs),
    /// Bare Argon2id hashing (m=19456, t=2, p=1) on N threads: hashes/s.
    Hash(HashArgs),
    /// Read JSON lines (files, or stdin with `-`) and print the Markdown
    /// comparison table (median run per label and scenario).
    Report {
        /// Files of JSON lines; `-` for stdin.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Mixed load (me, refresh, a little login) at a fraction of its
    /// measured peak for minutes, with the server's VmRSS sampled; a
    /// Markdown summary. Exits with 1 on a FAIL.
    Soak(soak::SoakArgs),
    /// A normal client measured alone, under an attack of malformed
    /// requests, and after it; with the server's VmRSS and /metrics size;
    /// a Markdown summary. Exits with 1 on a FAIL.
    Abuse(abuse::AbuseArgs),
    /// PostgreSQL's own single-row update rate (pgbench, a row per client,
    /// prepared statements): one JSON line, like `run`'s.
    Pgbench(pgbench::PgbenchArgs),
    /// Logout to refusal at a `latchkey-verify` verifier subscribed to the
    /// revocation feed: p50/p99 over many logouts; one JSON line.
    FeedLatency(feed_latency::FeedLatencyArgs),
    /// `kill -9` of the server under refresh load, in steps the script
    /// drives: load (and kill), check (after the restart), report.
    #[command(subcommand)]
    Kill9(kill9::Kill9Command),
    /// The scale benchmark: fill a store with millions of sessions, drive
    /// refresh and `/v1/me` over a large live set of them.
    #[command(subcommand)]
    Scale(scale::ScaleCommand),
}

#[derive(Args)]
struct RunArgs {
    /// Which server's paths and shapes.
    #[arg(long, value_enum)]
    target: Target,
    /// The server, as http://IP:PORT (loopback only); several nodes of one
    /// deployment comma-separated, virtual users spread over them.
    #[arg(long)]
    url: String,
    /// Scenarios, comma-separated, run one after the other. The OAuth ones
    /// (token-cc, token-refresh, introspect) need --client-id and
    /// --client-secret.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "me,refresh,login"
    )]
    scenario: Vec<Scenario>,
    /// Keep-alive connections, one virtual user each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Length of the measured window (`10s`, `500ms`, `2m` or seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Load before the measured window starts.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    warmup: Duration,
    /// Worker threads of the load generator (1: a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Setup requests (register, first login) in flight at once.
    #[arg(long, default_value_t = 4)]
    setup_concurrency: usize,
    /// Time allowed for the whole setup.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    setup_timeout: Duration,
    /// A request without an answer by then counts as an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Pause of a virtual user after a 503 answer during the load.
    #[arg(long, default_value = "20ms", value_parser = parse_duration)]
    backoff_503: Duration,
    /// The `Origin` sent on latchkey's POSTs (default: the URL's origin).
    #[arg(long)]
    origin: Option<String>,
    /// A label copied into the JSON lines (the report's column key).
    #[arg(long)]
    label: Option<String>,
    /// The OAuth client of the OAuth scenarios (HTTP Basic authentication).
    #[arg(long)]
    client_id: Option<String>,
    #[arg(long)]
    client_secret: Option<String>,
    /// The server's process group ids, comma-separated: their processes'
    /// CPU time in the measured window is reported per request (a server
    /// started with `setsid` has its pid as its group id).
    #[arg(long, value_delimiter = ',', value_name = "PGID[,PGID...]")]
    server_pgid: Vec<u32>,
    /// The database's process name (`postgres`): the CPU time of every
    /// process of that name in the window is reported per request too.
    #[arg(long)]
    database_comm: Option<String>,
}

#[derive(Args)]
struct HashArgs {
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s or m)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("bad duration {s:?}: {e}"))
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    let passed = match cli.command {
        Command::Run(args) => run(args).map(|()| true),
        Command::Hash(args) => {
            let threads = match args.threads {
                Some(n) => n,
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            };
            if threads == 0 {
                bail!("--threads must be at least 1");
            }
            let report = hash::run(threads, args.duration, args.warmup)?;
            eprintln!("{}", report.human());
            println!("{}", serde_json::to_string(&report)?);
            Ok(true)
        }
        Command::Report { files } => {
            let mut text = String::new();
            for f in files {
                if f == "-" {
                    std::io::stdin().read_to_string(&mut text)?;
                } else {
                    text.push_str(
                        &std::fs::read_to_string(&f).with_context(|| format!("reading {f}"))?,
                    );
                }
                text.push('\n');
            }
            print!("{}", report::markdown(&text)?);
            Ok(true)
        }
        Command::Pgbench(args) => {
            for report in pgbench::run(&args)? {
                eprintln!("{}", report.human());
                println!("{}", serde_json::to_string(&report)?);
            }
            Ok(true)
        }
        Command::FeedLatency(args) => {
            let report = single_threaded()?.block_on(feed_latency::run(args))?;
            eprintln!("{}", report.human());
            println!("{}", serde_json::to_string(&report)?);
            Ok(true)
        }
        Command::Soak(args) => single_threaded()?.block_on(soak::run(args)),
        Command::Abuse(args) => single_threaded()?.block_on(abuse::run(args)),
        Command::Kill9(command) => single_threaded()?.block_on(kill9::run(command)),
        Command::Scale(command) => {
            let runtime = single_threaded()?;
            match command {
                scale::ScaleCommand::Fill(args) => runtime.block_on(scale::fill(args)),
                scale::ScaleCommand::Expire(args) => runtime.block_on(scale::expire(args)),
                scale::ScaleCommand::Run(args) => runtime.block_on(scale::run(args)),
                scale::ScaleCommand::Report { files } => {
                    let mut text = String::new();
                    for f in files {
                        text.push_str(
                            &std::fs::read_to_string(&f)
                                .with_context(|| format!("reading {}", f.display()))?,
                        );
                        text.push('\n');
                    }
                    print!("{}", scale::markdown(&text)?);
                    Ok(())
                }
            }
            .map(|()| true)
        }
    }?;
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The runtime of the programs that are not `run`: one thread is plenty
/// (`abuse` runs its attacker on a thread of its own).
fn single_threaded() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn run(args: RunArgs) -> Result<()> {
    if args.connections == 0 || args.threads == 0 {
        bail!("--connections and --threads must be at least 1");
    }
    let endpoints = args
        .url
        .split(',')
        .map(|url| Endpoint::parse(url.trim()))
        .collect::<Result<Vec<_>>>()?;
    let origin = HeaderValue::from_str(args.origin.as_deref().unwrap_or(&endpoints[0].origin))
        .context("bad --origin")?;
    // Every scenario is checked before the first one runs.
    for scenario in &args.scenario {
        if !args.target.supports(*scenario) {
            bail!(
                "--target {} has no {} scenario",
                args.target.name(),
                scenario.name()
            );
        }
    }
    let basic = match (&args.client_id, &args.client_secret) {
        (Some(id), Some(secret)) => {
            Some(basic_auth(id, secret).context("bad --client-id or --client-secret")?)
        }
        (None, None) => None,
        _ => bail!("--client-id and --client-secret go together"),
    };
    if basic.is_none() {
        if let Some(s) = args.scenario.iter().find(|s| s.is_oauth()) {
            bail!(
                "the {} scenario needs --client-id and --client-secret",
                s.name()
            );
        }
    }
    if args.server_pgid.contains(&0) {
        bail!("--server-pgid: 0 is not a process group");
    }
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(async {
        for scenario in &args.scenario {
            let cfg = LoadConfig {
                target: args.target,
                scenario: *scenario,
                endpoints: endpoints.clone(),
                origin: origin.clone(),
                connections: args.connections,
                duration: args.duration,
                warmup: args.warmup,
                setup_concurrency: args.setup_concurrency,
                setup_timeout: args.setup_timeout,
                request_timeout: args.request_timeout,
                backoff_503: args.backoff_503,
                label: args.label.clone(),
                basic: basic.clone(),
                server_pgids: args.server_pgid.clone(),
                database_comm: args.database_comm.clone(),
                client_threads: args.threads,
            };
            let report = load::run(cfg).await.with_context(|| {
                format!("{} {} at {}", args.target.name(), scenario.name(), args.url)
            })?;
            eprintln!("{}", report.human());
            println!("{}", serde_json::to_string(&report)?);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("x").is_err());
    }
}
