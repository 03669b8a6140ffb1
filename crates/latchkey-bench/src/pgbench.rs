//! PostgreSQL's own rate of single-row updates on this machine, by
//! `pgbench`: the ceiling a refresh on PostgreSQL is measured against. Each
//! pgbench client updates a row of its own by primary key (as each virtual
//! user refreshes a session of its own), with prepared statements, for the
//! same window as the load generator's.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::cpu::comm_cpu_seconds;
use crate::report::RunReport;

/// The label and scenario of its JSON line.
pub const LABEL: &str = "pgbench";
pub const SCENARIO: &str = "update";

#[derive(Args)]
pub struct PgbenchArgs {
    /// A database this command may fill (a table `bench_rows` is created).
    #[arg(long)]
    pub database_url: String,
    /// pgbench clients, one row each.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    pub duration: Duration,
}

const SETUP: &str = "DROP TABLE IF EXISTS bench_rows, bench_audit; \
    CREATE TABLE bench_rows (id bigint PRIMARY KEY, generation bigint NOT NULL, \
    last_used_at bigint NOT NULL); \
    INSERT INTO bench_rows SELECT g, 0, 0 FROM generate_series(1, 10000) g; \
    CREATE TABLE bench_audit (id bigserial PRIMARY KEY, at bigint NOT NULL, \
    event text NOT NULL, session_id text); \
    CREATE INDEX bench_audit_by_time ON bench_audit (at);";

/// The bare update: the database's own ceiling.
const UPDATE: &str = "UPDATE bench_rows SET generation = generation + 1, \
    last_used_at = last_used_at + 1 WHERE id = :client_id + 1;\n";

/// The same update with the audit row a refresh writes in its statement
/// (an insert into a table with a second index): the database's ceiling for
/// a refresh's write.
const UPDATE_AND_AUDIT: &str = "WITH s AS (UPDATE bench_rows SET generation = generation + 1, \
    last_used_at = last_used_at + 1 WHERE id = :client_id + 1 RETURNING *), \
    logged AS (INSERT INTO bench_audit (at, event, session_id) \
    SELECT s.last_used_at, 'refreshed', s.id::text FROM s) SELECT * FROM s;\n";

/// The label and scenario of the update-and-audit line.
pub const SCENARIO_AUDITED: &str = "update-audited";

/// Runs pgbench twice, the bare update then the audited one; a
/// [`RunReport`] for each with tps as `req_per_s`, its average latency as
/// `mean_us`, and the database's CPU per update.
pub fn run(args: &PgbenchArgs) -> Result<Vec<RunReport>> {
    Ok(vec![
        run_script(args, SCENARIO, UPDATE)?,
        run_script(args, SCENARIO_AUDITED, UPDATE_AND_AUDIT)?,
    ])
}

fn run_script(args: &PgbenchArgs, scenario: &str, sql: &str) -> Result<RunReport> {
    let host = url_host(&args.database_url)?;
    if !host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
    {
        bail!("refusing {host}: only a loopback database may be loaded");
    }
    let psql = Command::new("psql")
        .args([args.database_url.as_str(), "-qc", SETUP])
        .output()
        .context("running psql (is postgresql-client installed?)")?;
    if !psql.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&psql.stderr));
    }
    let script = std::env::temp_dir().join(format!("latchkey-pgbench-{}.sql", std::process::id()));
    std::fs::write(&script, sql)?;
    let cpu0 = comm_cpu_seconds("postgres")?;
    let out = Command::new("pgbench")
        .arg("-n")
        .args(["-M", "prepared"])
        .args(["-c", &args.clients.to_string()])
        .args(["-j", "1"])
        .args(["-T", &args.duration.as_secs().max(1).to_string()])
        .arg("-f")
        .arg(&script)
        .arg(&args.database_url)
        .output()
        .context("running pgbench");
    let cpu1 = comm_cpu_seconds("postgres")?;
    let _ = std::fs::remove_file(&script);
    let out = out?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    let (tps, latency_ms) = parse(&text).with_context(|| format!("pgbench's output: {text}"))?;
    let seconds = args.duration.as_secs().max(1) as f64;
    let updates = tps * seconds;
    Ok(RunReport {
        label: Some(LABEL.to_owned()),
        target: LABEL.to_owned(),
        scenario: scenario.to_owned(),
        path: match scenario {
            SCENARIO => "UPDATE one row by primary key",
            _ => "UPDATE one row by primary key and INSERT an audit row, one statement",
        }
        .to_owned(),
        connections: args.clients,
        duration: seconds,
        requests: updates as u64,
        ok: updates as u64,
        req_per_s: (tps * 10.0).round() / 10.0,
        mean_us: (latency_ms * 10_000.0).round() / 10.0,
        client_threads: 1,
        database_cpu_us_per_req: (updates > 0.0)
            .then(|| ((cpu1 - cpu0) / updates * 1e7).round() / 10.0),
        ..RunReport::default()
    })
}

fn url_host(url: &str) -> Result<&str> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .context("--database-url must be postgres://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    Ok(host_port.split(':').next().unwrap_or_default())
}

/// `tps = 19285.29 (without initial connection time)` and `latency average = 1.659 ms`.
fn parse(text: &str) -> Option<(f64, f64)> {
    let number_after = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
    };
    Some((number_after("tps = ")?, number_after("latency average = ")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tps_and_latency() {
        let text = "transaction type: /tmp/x.sql\nnumber of clients: 32\n\
                    latency average = 1.659 ms\ninitial connection time = 20.1 ms\n\
                    tps = 19285.291872 (without initial connection time)\n";
        assert_eq!(parse(text), Some((19285.291872, 1.659)));
        assert_eq!(parse("tps = x"), None);
    }

    #[test]
    fn only_loopback_databases() {
        assert_eq!(
            url_host("postgres://root@127.0.0.1:5432/db").unwrap(),
            "127.0.0.1"
        );
        assert_eq!(url_host("postgresql://10.0.0.1/db").unwrap(), "10.0.0.1");
        assert!(url_host("mysql://x").is_err());
    }
}
