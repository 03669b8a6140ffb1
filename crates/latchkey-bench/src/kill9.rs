//! `kill9`: refresh load on many sessions, `kill -9` of the server in the
//! middle of it, and after a restart on the same database, each session's
//! last refresh token the client received in a complete 200 must still be
//! accepted (it is the current one, or the previous one inside the grace
//! window). Three steps, because the restart is the script's:
//!
//! - `kill9 load`: sessions, refreshes, the kill; writes a state file;
//! - `kill9 check`: presents each session's last token to the restarted
//!   server; one JSON line on stdout;
//! - `kill9 report`: the Markdown table of those lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Subcommand};
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

use crate::client::{Conn, Endpoint, Req};
use crate::load::{self, LoadConfig, Vu};
use crate::report::{fmt_count, fmt_rate};
use crate::server::Server;
use crate::target::{Scenario, Target, LATCHKEY_REFRESH, REFRESH_COOKIE};

#[derive(Subcommand)]
pub enum Kill9Command {
    /// Log in N sessions, refresh them all concurrently, `kill -9` the
    /// server after a while; write each session's last received token.
    Load(LoadArgs),
    /// Present each session's last token to the restarted server: every
    /// one must answer 200. One JSON line on stdout.
    Check(CheckArgs),
    /// Read the JSON lines of `check` (files, or `-` for stdin) and print
    /// the Markdown table. Exits with 1 if any token was refused.
    Report {
        #[arg(required = true)]
        files: Vec<String>,
    },
}

#[derive(Args)]
pub struct LoadArgs {
    /// The server, as http://IP:PORT (loopback only).
    #[arg(long)]
    url: String,
    /// The server's process id: it gets the SIGKILL.
    #[arg(long)]
    server_pid: u32,
    /// Sessions, one keep-alive connection each, all refreshing at once.
    #[arg(long, default_value_t = 64)]
    sessions: usize,
    /// Refresh load before the kill.
    #[arg(long, default_value = "5s", value_parser = crate::parse_duration)]
    kill_after: Duration,
    /// Where the sessions' last tokens are written (JSON).
    #[arg(long)]
    state: String,
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    request_timeout: Duration,
    /// The engine or setup, copied to the report (e.g. SQLite).
    #[arg(long, default_value = "latchkey")]
    label: String,
    /// The round, copied to the report.
    #[arg(long, default_value_t = 1)]
    round: u32,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The restarted server, as http://IP:PORT (loopback only).
    #[arg(long)]
    url: String,
    /// The state file `kill9 load` wrote.
    #[arg(long)]
    state: String,
    #[arg(long, default_value = "10s", value_parser = crate::parse_duration)]
    request_timeout: Duration,
}

/// What `load` leaves for `check`.
#[derive(Serialize, Deserialize)]
struct State {
    label: String,
    round: u32,
    sessions: Vec<SessionState>,
    /// Refreshes answered 200 before the kill, in all.
    refreshes: u64,
    /// Seconds of refresh load before the kill.
    load_seconds: f64,
    /// Answers other than 200 (and transport errors) before the kill.
    errors_before_kill: u64,
    first_error: Option<String>,
    killed_at_unix_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct SessionState {
    user: String,
    /// The refresh token of the last complete 200 the client received.
    token: String,
    refreshes: u64,
    /// A refresh of this session was sent and not answered when the server died.
    in_flight: bool,
    /// The session stopped before the kill (a refused refresh).
    broken: Option<String>,
}

/// One round's result: a JSON line.
#[derive(Serialize, Deserialize)]
struct Outcome {
    label: String,
    round: u32,
    sessions: usize,
    refreshes: u64,
    load_seconds: f64,
    in_flight: usize,
    errors_before_kill: u64,
    accepted: usize,
    failures: Vec<String>,
    /// Seconds from the kill to the first and the last answer of the check.
    check_started_after_kill: f64,
    check_done_after_kill: f64,
    /// Of the accepted tokens, how many the restarted server took as the
    /// current one (`refreshed`) and as the previous one inside the grace
    /// window (`refresh_retried`), from its /metrics (it served nothing
    /// else); `None` if /metrics did not tell.
    #[serde(default)]
    as_current: Option<u64>,
    #[serde(default)]
    as_previous: Option<u64>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub async fn run(command: Kill9Command) -> Result<bool> {
    match command {
        Kill9Command::Load(args) => load_and_kill(args).await.map(|()| true),
        Kill9Command::Check(args) => check(args).await.map(|()| true),
        Kill9Command::Report { files } => report(&files),
    }
}

fn refresh_req<'a>(cookie: &'a str, origin: &'a HeaderValue) -> Req<'a> {
    Req {
        method: Method::POST,
        path: LATCHKEY_REFRESH,
        bearer: None,
        basic: None,
        cookie: Some(cookie),
        origin: Some(origin),
        body: None,
    }
}

async fn load_and_kill(args: LoadArgs) -> Result<()> {
    if args.sessions == 0 {
        bail!("--sessions must be at least 1");
    }
    let endpoint = Endpoint::parse(&args.url)?;
    let origin = HeaderValue::from_str(&endpoint.origin)?;
    let server = Server::new(args.server_pid)?;
    let cfg = LoadConfig {
        target: Target::Latchkey,
        scenario: Scenario::Refresh,
        endpoints: vec![endpoint],
        origin: origin.clone(),
        connections: args.sessions,
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        setup_concurrency: 4,
        setup_timeout: Duration::from_secs(120),
        request_timeout: args.request_timeout,
        backoff_503: Duration::ZERO,
        label: None,
        basic: None,
        server_pgids: Vec::new(),
        database_comm: None,
        client_threads: 1,
    };
    eprintln!(
        "kill9 {} round {}: logging in {} sessions",
        args.label, args.round, args.sessions
    );
    let vus = load::setup(&Arc::new(cfg)).await.context("setup")?;

    let killed: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let origin = Arc::new(origin);
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for vu in vus {
        tasks.spawn(refresh_until_killed(
            vu,
            Arc::clone(&origin),
            Arc::clone(&killed),
            args.request_timeout,
        ));
    }
    // The kill comes from a thread of its own, at a moment that owes
    // nothing to where the client's (single) thread is in its work: from
    // the runtime, it would always land while the client is busy with
    // answers and sends nothing, so rarely in the middle of a refresh.
    let kill_after = args.kill_after;
    let flag = Arc::clone(&killed);
    let (kill_at, killed_at_unix_ms) = tokio::task::spawn_blocking(move || {
        std::thread::sleep(kill_after);
        let at = Instant::now();
        let _ = flag.set(at);
        let unix = unix_ms();
        server.kill9().map(|()| (at, unix))
    })
    .await??;
    server.wait_dead(Duration::from_secs(5)).await?;
    eprintln!(
        "kill9 {} round {}: SIGKILL after {:?} of refreshes",
        args.label, args.round, args.kill_after
    );

    let mut sessions = Vec::with_capacity(args.sessions);
    let mut errors_before_kill = 0;
    let mut first_error = None;
    let limit = Instant::now() + args.request_timeout + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(limit, tasks.join_next()).await {
            Err(_) => bail!("sessions still refreshing after the kill"),
            Ok(None) => break,
            Ok(Some(joined)) => {
                let (session, errors, first) = joined??;
                errors_before_kill += errors;
                if first_error.is_none() {
                    first_error = first;
                }
                sessions.push(session);
            }
        }
    }
    sessions.sort_by(|a, b| a.user.cmp(&b.user));
    let state = State {
        label: args.label,
        round: args.round,
        refreshes: sessions.iter().map(|s| s.refreshes).sum(),
        load_seconds: (kill_at - started).as_secs_f64(),
        sessions,
        errors_before_kill,
        first_error,
        killed_at_unix_ms,
    };
    eprintln!(
        "kill9 {} round {}: {} refreshes before the kill, {} in flight at it, {} errors before it",
        state.label,
        state.round,
        state.refreshes,
        state.sessions.iter().filter(|s| s.in_flight).count(),
        state.errors_before_kill
    );
    std::fs::write(&args.state, serde_json::to_vec(&state)?)
        .with_context(|| format!("writing {}", args.state))?;
    Ok(())
}

/// Refreshes one session over and over, keeping the token of each complete
/// 200, until its first failure after the kill.
async fn refresh_until_killed(
    mut vu: Vu,
    origin: Arc<HeaderValue>,
    killed: Arc<OnceLock<Instant>>,
    request_timeout: Duration,
) -> Result<(SessionState, u64, Option<String>)> {
    let user = Target::Latchkey.username(vu.index);
    let mut token = vu.refresh.clone().context("no session after login")?;
    let mut refreshes = 0u64;
    let mut errors = 0u64;
    let mut first_error = None;
    let mut broken = None;
    let mut in_flight = false;
    loop {
        let sent = Instant::now();
        let cookie = format!("{REFRESH_COOKIE}={token}");
        let result = timeout(request_timeout, vu.conn.send(refresh_req(&cookie, &origin))).await;
        let answered = matches!(result, Ok(Ok(_)));
        let failure = match result {
            Ok(Ok(answer)) if answer.status == StatusCode::OK => {
                match answer.set_cookie(REFRESH_COOKIE).filter(|t| !t.is_empty()) {
                    Some(next) => {
                        token = next.to_owned();
                        refreshes += 1;
                        continue;
                    }
                    None => "200 without a refresh cookie".to_owned(),
                }
            }
            Ok(Ok(answer)) => format!("HTTP {}: {}", answer.status, answer.body_text()),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("no answer within {request_timeout:?}"),
        };
        if let Some(kill_at) = killed.get() {
            // The server is dead: this session's load is over.
            in_flight = sent <= *kill_at;
            break;
        }
        errors += 1;
        first_error.get_or_insert_with(|| format!("{user}: {failure}"));
        if answered {
            // A refused refresh: the session's token is no longer good.
            broken = Some(failure);
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    let session = SessionState {
        user,
        token,
        refreshes,
        in_flight,
        broken,
    };
    Ok((session, errors, first_error))
}

async fn check(args: CheckArgs) -> Result<()> {
    let text =
        std::fs::read_to_string(&args.state).with_context(|| format!("reading {}", args.state))?;
    let state: State = serde_json::from_str(&text).context("not a kill9 state file")?;
    let endpoint = Endpoint::parse(&args.url)?;
    let origin = Arc::new(HeaderValue::from_str(&endpoint.origin)?);
    let check_started_after_kill =
        unix_ms().saturating_sub(state.killed_at_unix_ms) as f64 / 1000.0;
    let mut tasks = JoinSet::new();
    for s in &state.sessions {
        let (endpoint, origin) = (endpoint.clone(), Arc::clone(&origin));
        let (user, token, in_flight) = (s.user.clone(), s.token.clone(), s.in_flight);
        let request_timeout = args.request_timeout;
        tasks.spawn(async move {
            let mut conn = Conn::new(endpoint);
            let cookie = format!("{REFRESH_COOKIE}={token}");
            let result = timeout(request_timeout, conn.send(refresh_req(&cookie, &origin))).await;
            let failure = match result {
                Ok(Ok(answer)) if answer.status == StatusCode::OK => None,
                Ok(Ok(answer)) => Some(format!("HTTP {}: {}", answer.status, answer.body_text())),
                Ok(Err(e)) => Some(format!("{e:#}")),
                Err(_) => Some(format!("no answer within {request_timeout:?}")),
            };
            failure.map(|f| {
                format!(
                    "{user} ({}): {f}",
                    if in_flight {
                        "a refresh was in flight at the kill"
                    } else {
                        "no refresh in flight at the kill"
                    }
                )
            })
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Some(f) = joined? {
            failures.push(f);
        }
    }
    failures.sort();
    let check_done_after_kill = unix_ms().saturating_sub(state.killed_at_unix_ms) as f64 / 1000.0;
    let events = security_events(&endpoint, args.request_timeout).await;
    let outcome = Outcome {
        label: state.label.clone(),
        round: state.round,
        sessions: state.sessions.len(),
        refreshes: state.refreshes,
        load_seconds: state.load_seconds,
        in_flight: state.sessions.iter().filter(|s| s.in_flight).count(),
        errors_before_kill: state.errors_before_kill,
        accepted: state.sessions.len() - failures.len(),
        failures,
        check_started_after_kill,
        check_done_after_kill,
        as_current: events.as_deref().and_then(|m| event_count(m, "refreshed")),
        as_previous: events
            .as_deref()
            .and_then(|m| event_count(m, "refresh_retried")),
    };
    eprintln!(
        "kill9 {} round {}: {} of {} last tokens accepted, {:.2} s after the kill",
        outcome.label,
        outcome.round,
        outcome.accepted,
        outcome.sessions,
        outcome.check_done_after_kill
    );
    for f in &outcome.failures {
        eprintln!(
            "kill9 {} round {}: refused: {f}",
            outcome.label, outcome.round
        );
    }
    if let Some(e) = &state.first_error {
        eprintln!(
            "kill9 {} round {}: first error before the kill: {e}",
            outcome.label, outcome.round
        );
    }
    println!("{}", serde_json::to_string(&outcome)?);
    Ok(())
}

/// The restarted server's /metrics, if it answers.
async fn security_events(endpoint: &Endpoint, request_timeout: Duration) -> Option<String> {
    let mut conn = Conn::new(endpoint.clone());
    let req = Req {
        method: Method::GET,
        path: "/metrics",
        bearer: None,
        basic: None,
        cookie: None,
        origin: None,
        body: None,
    };
    match timeout(request_timeout, conn.send(req)).await {
        Ok(Ok(answer)) if answer.status == StatusCode::OK => {
            Some(String::from_utf8_lossy(&answer.body).into_owned())
        }
        _ => None,
    }
}

/// The security-event counter `event` of a Prometheus text (0 when the
/// counter family is there but that event never happened).
fn event_count(metrics: &str, event: &str) -> Option<u64> {
    const FAMILY: &str = "latchkey_security_events_total{";
    let mut family_seen = false;
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(FAMILY) else {
            continue;
        };
        family_seen = true;
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        if labels
            .split(',')
            .any(|l| l.trim() == format!("event=\"{event}\""))
        {
            return value
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
                .map(|v| v as u64);
        }
    }
    family_seen.then_some(0)
}

fn report(files: &[String]) -> Result<bool> {
    let mut text = String::new();
    for f in files {
        if f == "-" {
            std::io::stdin().read_to_string(&mut text)?;
        } else {
            text.push_str(&std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?);
        }
        text.push('\n');
    }
    let mut outcomes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('{') {
            let o: Outcome = serde_json::from_str(line)
                .with_context(|| format!("line {}: not a kill9 outcome", n + 1))?;
            outcomes.push(o);
        }
    }
    let (md, pass) = markdown(&outcomes);
    print!("{md}");
    Ok(pass)
}

fn markdown(outcomes: &[Outcome]) -> (String, bool) {
    let mut out = String::from("### kill -9 under refresh load\n\n");
    out.push_str(
        "Each round: N sessions refresh concurrently (one keep-alive connection each, closed \
         loop), the server gets SIGKILL in the middle, restarts on the same database with the \
         same settings and secret, and each session's last refresh token received in a complete \
         200 is presented again: it must be accepted (200), as the current token or as the \
         previous one inside the 10 s grace window.\n\n",
    );
    out.push_str(
        "| engine | round | sessions | refreshes before the kill | refreshes/s | in flight at the kill | errors before the kill | last tokens accepted | as current / as previous (grace) | check done after the kill |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {} | {:.1} s |",
            o.label,
            o.round,
            o.sessions,
            fmt_count(o.refreshes),
            fmt_rate(o.refreshes as f64 / o.load_seconds.max(f64::MIN_POSITIVE)),
            o.in_flight,
            o.errors_before_kill,
            o.accepted,
            o.sessions,
            match (o.as_current, o.as_previous) {
                (Some(c), Some(p)) => format!("{c} / {p}"),
                _ => "n/a".to_owned(),
            },
            o.check_done_after_kill,
        );
    }
    let total: usize = outcomes.iter().map(|o| o.sessions).sum();
    let accepted: usize = outcomes.iter().map(|o| o.accepted).sum();
    let errors: u64 = outcomes.iter().map(|o| o.errors_before_kill).sum();
    let pass = !outcomes.is_empty() && accepted == total && errors == 0;
    let mut per_label: BTreeMap<&str, usize> = BTreeMap::new();
    for o in outcomes {
        *per_label.entry(&o.label).or_default() += 1;
    }
    let kills: Vec<String> = per_label
        .iter()
        .map(|(l, n)| format!("{n} on {l}"))
        .collect();
    let _ = writeln!(
        out,
        "\n**{accepted} of {total} last tokens accepted after {} kill(s) ({}), {errors} errors \
         before the kills → {}.**",
        outcomes.len(),
        kills.join(", "),
        if pass { "PASS" } else { "FAIL" }
    );
    for o in outcomes.iter().filter(|o| !o.failures.is_empty()) {
        let _ = writeln!(out, "\nRefused on {} round {}:\n", o.label, o.round);
        for f in &o.failures {
            let _ = writeln!(out, "- {f}");
        }
    }
    if outcomes.iter().any(|o| o.check_done_after_kill > 10.0) {
        out.push_str(
            "\nNote: some checks ended more than 10 s after the kill, past the grace window \
             of a token whose rotation committed right before it.\n",
        );
    }
    (out, pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(label: &str, accepted: usize, failures: Vec<String>) -> Outcome {
        Outcome {
            label: label.into(),
            round: 1,
            sessions: 64,
            refreshes: 12_000,
            load_seconds: 5.0,
            in_flight: 60,
            errors_before_kill: 0,
            accepted,
            failures,
            check_started_after_kill: 0.5,
            check_done_after_kill: 0.7,
            as_current: Some(50),
            as_previous: Some(14),
        }
    }

    #[test]
    fn report_passes_only_when_every_token_is_accepted() {
        let (md, pass) = markdown(&[
            outcome("SQLite", 64, vec![]),
            outcome("PostgreSQL", 64, vec![]),
        ]);
        assert!(pass, "{md}");
        assert!(
            md.contains(
                "| SQLite | 1 | 64 | 12,000 | 2,400 | 60 | 0 | 64 / 64 | 50 / 14 | 0.7 s |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "128 of 128 last tokens accepted after 2 kill(s) (1 on PostgreSQL, 1 on SQLite)"
            ),
            "{md}"
        );

        let (md, pass) = markdown(&[outcome("SQLite", 63, vec!["bench-007: HTTP 401".into()])]);
        assert!(!pass);
        assert!(md.contains("FAIL"), "{md}");
        assert!(md.contains("- bench-007: HTTP 401"), "{md}");
        assert!(!markdown(&[]).1);
    }

    #[test]
    fn security_events_from_metrics() {
        let text = "# TYPE latchkey_security_events counter\n\
                    latchkey_security_events_total{event=\"refreshed\"} 50\n\
                    latchkey_security_events_total{event=\"refresh_retried\"} 14\n\
                    latchkey_live_sessions 64\n";
        assert_eq!(event_count(text, "refreshed"), Some(50));
        assert_eq!(event_count(text, "refresh_retried"), Some(14));
        assert_eq!(event_count(text, "logout"), Some(0));
        assert_eq!(event_count("latchkey_live_sessions 1\n", "refreshed"), None);
    }
}
