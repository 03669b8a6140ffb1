//! Refresh and `/v1/me` over a large live set: the virtual users take
//! sessions from one queue, shuffled, so that consecutive requests present
//! different sessions and each session comes back only after all the
//! others; the latency, the server's CPU per request and its resident
//! memory are reported per scenario.

use std::collections::VecDeque;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use super::{RunArgs, ScaleScenario};
use crate::client::{Conn, Endpoint, Req};
use crate::cpu::{comm_cpu_seconds, group_cpu_seconds};
use crate::report::new_histogram;
use crate::target::REFRESH_COOKIE;

const REFRESH_PATH: &str = "/v1/auth/refresh";
const ME_PATH: &str = "/v1/me";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One session of the live set: its current refresh token and, once it has
/// been refreshed, an access token.
struct Entry {
    refresh: String,
    access: Option<String>,
}

type Queue = Arc<Mutex<VecDeque<Entry>>>;

/// One JSON line.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ScaleReport {
    pub engine: String,
    pub store: String,
    pub during: Option<String>,
    pub scenario: String,
    pub store_sessions: Option<u64>,
    pub store_bytes: Option<u64>,
    /// Sessions the load spread over.
    pub live_set: u64,
    pub connections: usize,
    pub duration: f64,
    pub ok: u64,
    pub errors: u64,
    /// Sessions refused (401) and dropped from the live set.
    pub lost_sessions: u64,
    pub req_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub server_cpu_us_per_req: Option<f64>,
    pub database_cpu_us_per_req: Option<f64>,
    pub server_rss_mib: Option<f64>,
    pub first_error: Option<String>,
}

#[derive(Default)]
struct VuStats {
    ok: u64,
    errors: u64,
    lost: u64,
    first_error: Option<String>,
}

pub async fn run(args: RunArgs) -> Result<()> {
    let endpoint = Endpoint::parse(&args.url)?;
    let origin = HeaderValue::from_str(&endpoint.origin)?;
    let text = std::fs::read_to_string(&args.tokens)
        .with_context(|| format!("reading {}", args.tokens.display()))?;
    let mut entries: Vec<Entry> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Entry {
            refresh: l.trim().to_owned(),
            access: None,
        })
        .collect();
    if entries.is_empty() {
        bail!("{} holds no token", args.tokens.display());
    }
    shuffle(&mut entries);
    let queue: Queue = Arc::new(Mutex::new(entries.into()));
    // A steady state, as a server that has run for a while sees it: every
    // session refreshed once (which gives each an access token).
    one_pass(
        &endpoint,
        &origin,
        &queue,
        args.connections,
        ScaleScenario::Refresh,
    )
    .await?;
    for scenario in &args.scenario {
        if *scenario == ScaleScenario::Me {
            // Each access token checked once, as by a server that has seen
            // them all before (it keeps them until they expire).
            one_pass(
                &endpoint,
                &origin,
                &queue,
                args.connections,
                ScaleScenario::Me,
            )
            .await?;
        }
        let report = measure(&args, &endpoint, &origin, &queue, *scenario).await?;
        eprintln!(
            "{} {} {:?}: {:.0} req/s, p50 {} us, p99 {} us, server CPU {:?} us/req, db CPU {:?} us/req, RSS {:?} MiB, {} errors, {} lost",
            report.engine,
            report.store,
            scenario,
            report.req_per_s,
            report.p50_us,
            report.p99_us,
            report.server_cpu_us_per_req,
            report.database_cpu_us_per_req,
            report.server_rss_mib,
            report.errors,
            report.lost_sessions
        );
        println!("{}", serde_json::to_string(&report)?);
    }
    // The tokens of the next run are the current ones.
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.tokens)?);
    for entry in lock(&queue)?.iter() {
        writeln!(out, "{}", entry.refresh)?;
    }
    out.flush()?;
    Ok(())
}

fn lock(queue: &Queue) -> Result<std::sync::MutexGuard<'_, VecDeque<Entry>>> {
    queue.lock().map_err(|_| anyhow!("queue poisoned"))
}

/// Fisher-Yates with an xorshift seeded from the clock: the order only has
/// to be unrelated to the store's.
fn shuffle<T>(items: &mut [T]) {
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x2545_f491, |d| d.as_nanos() as u64)
        | 1;
    for i in (1..items.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        items.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

/// What one request did to its session.
enum Outcome {
    Ok,
    /// The session is gone (401): not put back.
    Lost(String),
    Failed(String),
}

async fn refresh(conn: &mut Conn, origin: &HeaderValue, entry: &mut Entry) -> Result<Outcome> {
    let cookie = format!("{REFRESH_COOKIE}={}", entry.refresh);
    let answer = conn
        .send(Req {
            method: Method::POST,
            path: REFRESH_PATH,
            bearer: None,
            basic: None,
            cookie: Some(&cookie),
            origin: Some(origin),
            body: None,
        })
        .await?;
    if answer.status == StatusCode::UNAUTHORIZED {
        return Ok(Outcome::Lost(answer.body_text()));
    }
    if !answer.status.is_success() {
        return Ok(Outcome::Failed(format!(
            "{}: {}",
            answer.status,
            answer.body_text()
        )));
    }
    let Some(next) = answer.set_cookie(REFRESH_COOKIE).filter(|v| !v.is_empty()) else {
        return Ok(Outcome::Failed("no refresh cookie".into()));
    };
    entry.refresh = next.to_owned();
    #[derive(Deserialize)]
    struct Tokens {
        access_token: String,
    }
    let tokens: Tokens = serde_json::from_slice(&answer.body).context("refresh answer")?;
    entry.access = Some(tokens.access_token);
    Ok(Outcome::Ok)
}

async fn me(conn: &mut Conn, entry: &mut Entry) -> Result<Outcome> {
    let answer = conn
        .send(Req {
            method: Method::GET,
            path: ME_PATH,
            bearer: entry.access.as_deref(),
            basic: None,
            cookie: None,
            origin: None,
            body: None,
        })
        .await?;
    Ok(match answer.status {
        s if s.is_success() => Outcome::Ok,
        StatusCode::UNAUTHORIZED => Outcome::Lost(answer.body_text()),
        s => Outcome::Failed(format!("{s}: {}", answer.body_text())),
    })
}

/// Sends `scenario`'s request, unmeasured, for every session once.
async fn one_pass(
    endpoint: &Endpoint,
    origin: &HeaderValue,
    queue: &Queue,
    connections: usize,
    scenario: ScaleScenario,
) -> Result<()> {
    let pending: Arc<Mutex<Vec<Entry>>> = Arc::new(Mutex::new(lock(queue)?.drain(..).collect()));
    let total = pending.lock().map_err(|_| anyhow!("poisoned"))?.len();
    eprintln!("{scenario:?} for each of the {total} sessions once");
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (endpoint, origin) = (endpoint.clone(), origin.clone());
        let (queue, pending) = (Arc::clone(queue), Arc::clone(&pending));
        tasks.spawn(async move {
            let mut conn = Conn::new(endpoint);
            loop {
                let Some(mut entry) = pending.lock().map_err(|_| anyhow!("poisoned"))?.pop() else {
                    break;
                };
                let outcome = match scenario {
                    ScaleScenario::Refresh => refresh(&mut conn, &origin, &mut entry).await?,
                    ScaleScenario::Me => me(&mut conn, &mut entry).await?,
                };
                match outcome {
                    Outcome::Ok => lock(&queue)?.push_back(entry),
                    Outcome::Lost(_) => {}
                    Outcome::Failed(why) => bail!("{scenario:?} of the first pass: {why}"),
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let left = lock(queue)?.len();
    if left < total {
        eprintln!("{} sessions refused in the first pass", total - left);
    }
    Ok(())
}

async fn measure(
    args: &RunArgs,
    endpoint: &Endpoint,
    origin: &HeaderValue,
    queue: &Queue,
    scenario: ScaleScenario,
) -> Result<ScaleReport> {
    let live_set = lock(queue)?.len() as u64;
    let start = Instant::now();
    let measure_start = start + args.warmup;
    let end = measure_start + args.duration;
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections {
        let (endpoint, origin, queue) = (endpoint.clone(), origin.clone(), Arc::clone(queue));
        tasks.spawn(async move {
            let mut conn = Conn::new(endpoint);
            conn.ensure_connected().await?;
            let mut hist: Histogram<u64> = new_histogram()?;
            let mut st = VuStats::default();
            while Instant::now() < end {
                let Some(mut entry) = lock(&queue)?.pop_front() else {
                    bail!("every session of the live set was lost");
                };
                let t0 = Instant::now();
                let outcome = match scenario {
                    ScaleScenario::Refresh => {
                        timeout(REQUEST_TIMEOUT, refresh(&mut conn, &origin, &mut entry)).await
                    }
                    ScaleScenario::Me => timeout(REQUEST_TIMEOUT, me(&mut conn, &mut entry)).await,
                };
                let t1 = Instant::now();
                let counted = t1 >= measure_start && t1 <= end;
                let outcome = match outcome {
                    Ok(Ok(o)) => o,
                    Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
                    Err(_) => Outcome::Failed("no answer within 10 s".into()),
                };
                match outcome {
                    Outcome::Ok => {
                        lock(&queue)?.push_back(entry);
                        if counted {
                            st.ok += 1;
                            let us = u64::try_from((t1 - t0).as_micros()).unwrap_or(u64::MAX);
                            hist.saturating_record(us.max(1));
                        }
                    }
                    Outcome::Lost(why) => {
                        st.lost += 1;
                        if counted {
                            st.errors += 1;
                        }
                        st.first_error.get_or_insert(format!("401: {why}"));
                    }
                    Outcome::Failed(why) => {
                        // The session may still be good: back in the queue.
                        lock(&queue)?.push_back(entry);
                        if counted {
                            st.errors += 1;
                        }
                        st.first_error.get_or_insert(why);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            Ok::<_, anyhow::Error>((hist, st))
        });
    }
    sleep_until(measure_start).await;
    let server0 = server_cpu(args.server_pgid).await?;
    let database0 = database_cpu(args.database_comm.clone()).await?;
    sleep_until(end).await;
    let server1 = server_cpu(args.server_pgid).await?;
    let database1 = database_cpu(args.database_comm.clone()).await?;

    let mut hist = new_histogram()?;
    let mut report = ScaleReport {
        engine: args.engine.clone(),
        store: args.store.clone(),
        during: args.during.clone(),
        scenario: format!("{scenario:?}").to_lowercase(),
        store_sessions: args.store_sessions,
        store_bytes: args.store_bytes,
        live_set,
        connections: args.connections,
        duration: args.duration.as_secs_f64(),
        ..ScaleReport::default()
    };
    while let Some(joined) = timeout(REQUEST_TIMEOUT * 2, tasks.join_next())
        .await
        .map_err(|_| anyhow!("virtual users still busy after the window"))?
    {
        let (h, st) = joined??;
        hist.add(&h)?;
        report.ok += st.ok;
        report.errors += st.errors;
        report.lost_sessions += st.lost;
        if report.first_error.is_none() {
            report.first_error = st.first_error;
        }
    }
    report.req_per_s = (report.ok as f64 / report.duration * 10.0).round() / 10.0;
    if !hist.is_empty() {
        report.p50_us = hist.value_at_quantile(0.50);
        report.p99_us = hist.value_at_quantile(0.99);
        report.p999_us = hist.value_at_quantile(0.999);
        report.max_us = hist.max();
    }
    if report.ok > 0 {
        let per = |a: Option<f64>, b: Option<f64>| {
            Some(((b? - a?) / report.ok as f64 * 1e7).round() / 10.0)
        };
        report.server_cpu_us_per_req = per(server0, server1);
        report.database_cpu_us_per_req = per(database0, database1);
    }
    report.server_rss_mib = args.server_pgid.and_then(rss_mib);
    Ok(report)
}

async fn server_cpu(pgid: Option<u32>) -> Result<Option<f64>> {
    let Some(pgid) = pgid else { return Ok(None) };
    Ok(Some(
        tokio::task::spawn_blocking(move || group_cpu_seconds(&[pgid])).await??,
    ))
}

async fn database_cpu(comm: Option<String>) -> Result<Option<f64>> {
    let Some(comm) = comm else { return Ok(None) };
    Ok(Some(
        tokio::task::spawn_blocking(move || comm_cpu_seconds(&comm)).await??,
    ))
}

/// VmRSS of the process `pid` (the server started with `setsid` is its own
/// group's leader), in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((kib / 1024.0 * 10.0).round() / 10.0)
}
