//! A mix of latchkey's three session requests (`GET /v1/me`, refresh,
//! login) over keep-alive connections, one virtual user each, closed-loop or
//! on a fixed schedule, with counts and latencies per kind and per time
//! window. Used by `soak` and `abuse`.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, timeout_at, Instant};

use crate::client::{Answer, Body, Endpoint, Req};
use crate::load::{self, LoadConfig, Vu};
use crate::report::{fmt_count, fmt_rate, fmt_us, new_histogram};
use crate::target::{
    Scenario, Target, LATCHKEY_LOGIN, LATCHKEY_ME, LATCHKEY_REFRESH, REFRESH_COOKIE,
};

const ACCESS_COOKIE: &str = "accessToken";

/// A request of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Me,
    Refresh,
    Login,
}

pub const KINDS: [Kind; 3] = [Kind::Me, Kind::Refresh, Kind::Login];

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::Me => 0,
            Kind::Refresh => 1,
            Kind::Login => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Me => "me",
            Kind::Refresh => "refresh",
            Kind::Login => "login",
        }
    }

    pub fn request(self) -> &'static str {
        match self {
            Kind::Me => "`GET /v1/me`",
            Kind::Refresh => "`POST /v1/auth/refresh`",
            Kind::Login => "`POST /v1/auth/login`",
        }
    }
}

/// Shares of each kind, in parts of their sum: `me=70,refresh=29,login=1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 3],
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = [0u32; 3];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KIND=WEIGHT"))?;
            let kind = KINDS
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| format!("{name:?}: not one of me, refresh, login"))?;
            weights[kind.index()] = weight
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: the weight must be a whole number"))?;
        }
        let total: u32 = weights.iter().sum();
        if total == 0 || total > 10_000 {
            return Err(format!(
                "{s:?}: the weights must add up to between 1 and 10000"
            ));
        }
        Ok(Self { weights })
    }
}

impl Mix {
    /// Share of `kind` in percent.
    pub fn percent(&self, kind: Kind) -> f64 {
        let total: u32 = self.weights.iter().sum();
        100.0 * f64::from(self.weights[kind.index()]) / f64::from(total)
    }

    /// `me 70%, refresh 29%, login 1%` (kinds with a share only).
    pub fn describe(&self) -> String {
        KINDS
            .iter()
            .filter(|k| self.weights[k.index()] > 0)
            .map(|k| format!("{} {}%", k.name(), fmt_pct(self.percent(*k))))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One cycle of requests, as many of each kind as its weight, spread
    /// evenly (smooth weighted round robin): the k-th request of a run is
    /// `pattern[k % len]`.
    pub fn pattern(&self) -> Vec<Kind> {
        let total: i64 = self.weights.iter().map(|w| i64::from(*w)).sum();
        let mut current = [0i64; 3];
        let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            for k in KINDS {
                current[k.index()] += i64::from(self.weights[k.index()]);
            }
            let best = KINDS
                .into_iter()
                .max_by_key(|k| (current[k.index()], std::cmp::Reverse(k.index())))
                .unwrap_or(Kind::Me);
            current[best.index()] -= total;
            out.push(best);
        }
        out
    }
}

fn fmt_pct(p: f64) -> String {
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

/// What one kind of request saw in one window.
#[derive(Clone)]
pub struct KindStats {
    /// Latencies of the 2xx answers, in microseconds.
    pub hist: Histogram<u64>,
    pub ok: u64,
    /// Non-2xx answers, transport errors and time-outs.
    pub errors: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub transport_errors: u64,
    pub timeouts: u64,
    /// Requests sent more than `LATE` after their scheduled time (paced runs).
    pub late: u64,
    pub first_error: Option<String>,
}

/// A request that starts this long after its due time counts as late.
pub const LATE: Duration = Duration::from_millis(10);

impl KindStats {
    fn new() -> Result<Self> {
        Ok(Self {
            hist: new_histogram()?,
            ok: 0,
            errors: 0,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            timeouts: 0,
            late: 0,
            first_error: None,
        })
    }

    fn add(&mut self, other: &Self) -> Result<()> {
        self.hist.add(&other.hist)?;
        self.ok += other.ok;
        self.errors += other.errors;
        for (k, v) in &other.statuses {
            *self.statuses.entry(*k).or_default() += v;
        }
        self.transport_errors += other.transport_errors;
        self.timeouts += other.timeouts;
        self.late += other.late;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        Ok(())
    }

    pub fn requests(&self) -> u64 {
        self.ok + self.errors
    }

    /// `503: 3, transport: 1` or `none`.
    pub fn error_summary(&self) -> String {
        crate::report::status_summary(
            &self.statuses,
            &[
                ("transport", self.transport_errors),
                ("time-out", self.timeouts),
            ],
        )
    }
}

/// Every kind in one window.
#[derive(Clone)]
pub struct WindowStats {
    pub kinds: [KindStats; 3],
    /// Length of the window in seconds.
    pub seconds: f64,
}

impl WindowStats {
    fn new(seconds: f64) -> Result<Self> {
        Ok(Self {
            kinds: [KindStats::new()?, KindStats::new()?, KindStats::new()?],
            seconds,
        })
    }

    fn add(&mut self, other: &Self) -> Result<()> {
        for (a, b) in self.kinds.iter_mut().zip(&other.kinds) {
            a.add(b)?;
        }
        Ok(())
    }

    pub fn kind(&self, kind: Kind) -> &KindStats {
        &self.kinds[kind.index()]
    }

    pub fn ok(&self) -> u64 {
        self.kinds.iter().map(|k| k.ok).sum()
    }

    pub fn errors(&self) -> u64 {
        self.kinds.iter().map(|k| k.errors).sum()
    }

    /// 2xx answers per second.
    pub fn ok_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok() as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// A Markdown table, one row per kind that was sent, and a total.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| request | requests | errors | 2xx/s | p50 | p99 | p99.9 | max |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for kind in KINDS {
            let k = self.kind(kind);
            if k.requests() == 0 {
                continue;
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                kind.request(),
                fmt_count(k.requests()),
                if k.errors == 0 {
                    "0".to_owned()
                } else {
                    format!("{} ({})", k.errors, k.error_summary())
                },
                fmt_rate(k.ok as f64 / self.seconds.max(f64::MIN_POSITIVE)),
                latency(&k.hist, 0.50),
                latency(&k.hist, 0.99),
                latency(&k.hist, 0.999),
                if k.hist.is_empty() {
                    "n/a".to_owned()
                } else {
                    fmt_us(k.hist.max())
                },
            ));
        }
        let requests: u64 = self.kinds.iter().map(KindStats::requests).sum();
        out.push_str(&format!(
            "| all | {} | {} | {} | | | | |\n",
            fmt_count(requests),
            self.errors(),
            fmt_rate(self.ok_per_s())
        ));
        out
    }
}

fn latency(hist: &Histogram<u64>, q: f64) -> String {
    if hist.is_empty() {
        "n/a".to_owned()
    } else {
        fmt_us(hist.value_at_quantile(q))
    }
}

/// Registers and logs in `connections` virtual users (`bench-000`...), each
/// on its own keep-alive connection.
pub async fn setup(
    endpoint: &Endpoint,
    origin: &HeaderValue,
    connections: usize,
    request_timeout: Duration,
) -> Result<Vec<Vu>> {
    let cfg = LoadConfig {
        target: Target::Latchkey,
        scenario: Scenario::Me,
        endpoints: vec![endpoint.clone()],
        origin: origin.clone(),
        connections,
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
        setup_concurrency: 4,
        setup_timeout: Duration::from_secs(120),
        request_timeout,
        backoff_503: Duration::from_millis(20),
        label: None,
        basic: None,
        server_pgids: Vec::new(),
        database_comm: None,
        client_threads: 1,
    };
    load::setup(&Arc::new(cfg)).await
}

/// How to drive the mix.
pub struct Drive {
    pub origin: HeaderValue,
    pub request_timeout: Duration,
    pub mix: Mix,
    /// `None`: closed loop (each virtual user sends its next request when
    /// it has the answer). `Some(r)`: an open-loop schedule of `r` requests
    /// per second in all: request k is due at `start + k / r` and is taken
    /// by whichever virtual user is free; its latency counts from its due
    /// time, so waiting for a free connection is part of it.
    pub rate: Option<f64>,
    pub start: Instant,
    /// Window i is `[windows[i], windows[i + 1])`; requests are counted in
    /// the window where they complete, none before the first bound (the
    /// warm-up). The last bound is the end of the run.
    pub windows: Vec<Instant>,
    /// Pause of a virtual user after a 503, in closed loop.
    pub backoff_503: Duration,
}

impl Drive {
    fn end(&self) -> Instant {
        self.windows.last().copied().unwrap_or(self.start)
    }

    fn window_of(&self, t: Instant) -> Option<usize> {
        self.windows.windows(2).position(|w| t >= w[0] && t < w[1])
    }
}

/// Runs the mix on `vus` until the last window ends; gives the virtual
/// users back (with their sessions) and the stats of each window.
pub async fn drive(cfg: Arc<Drive>, vus: Vec<Vu>) -> Result<(Vec<Vu>, Vec<WindowStats>)> {
    if cfg.windows.len() < 2 {
        bail!("a drive needs at least one window");
    }
    let pattern: Arc<Vec<Kind>> = Arc::new(cfg.mix.pattern());
    let tickets = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for vu in vus {
        tasks.spawn(drive_one(
            Arc::clone(&cfg),
            Arc::clone(&pattern),
            Arc::clone(&tickets),
            vu,
        ));
    }
    let mut windows = cfg
        .windows
        .windows(2)
        .map(|w| WindowStats::new((w[1] - w[0]).as_secs_f64()))
        .collect::<Result<Vec<_>>>()?;
    let mut vus = Vec::new();
    let limit = cfg.end() + cfg.request_timeout + Duration::from_secs(5);
    loop {
        match timeout_at(limit, tasks.join_next()).await {
            Err(_) => bail!("virtual users still busy at the end of the run"),
            Ok(None) => break,
            Ok(Some(joined)) => {
                let (vu, stats) = joined??;
                for (a, b) in windows.iter_mut().zip(&stats) {
                    a.add(b)?;
                }
                vus.push(vu);
            }
        }
    }
    vus.sort_by_key(|vu| vu.index);
    Ok((vus, windows))
}

async fn drive_one(
    cfg: Arc<Drive>,
    pattern: Arc<Vec<Kind>>,
    tickets: Arc<AtomicU64>,
    mut vu: Vu,
) -> Result<(Vu, Vec<WindowStats>)> {
    let mut windows = cfg
        .windows
        .windows(2)
        .map(|w| WindowStats::new((w[1] - w[0]).as_secs_f64()))
        .collect::<Result<Vec<_>>>()?;
    let end = cfg.end();
    loop {
        let k = tickets.fetch_add(1, Ordering::Relaxed);
        let due = match cfg.rate {
            Some(rate) => cfg.start + Duration::from_secs_f64(k as f64 / rate),
            None => Instant::now(),
        };
        if due >= end {
            break;
        }
        sleep_until(due).await;
        let sent = Instant::now();
        let slot = usize::try_from(k % pattern.len() as u64).unwrap_or(0);
        let kind = if vu.refresh.is_some() {
            pattern.get(slot).copied().unwrap_or(Kind::Me)
        } else {
            // The session was lost (an error): this request logs in again.
            Kind::Login
        };
        let result = timeout(cfg.request_timeout, step(&cfg, &mut vu, kind)).await;
        let done = Instant::now();
        let mut pause = None;
        if let Some(w) = cfg.window_of(done) {
            let st = &mut windows[w].kinds[kind.index()];
            if sent - due > LATE {
                st.late += 1;
            }
            match result {
                Ok(Ok(status)) if status.is_success() => {
                    st.ok += 1;
                    let us = u64::try_from((done - due).as_micros()).unwrap_or(u64::MAX);
                    st.hist.saturating_record(us.max(1));
                }
                Ok(Ok(status)) => {
                    st.errors += 1;
                    *st.statuses.entry(status.as_u16()).or_default() += 1;
                    st.first_error
                        .get_or_insert_with(|| format!("HTTP {status} on {}", kind.name()));
                    if status == StatusCode::SERVICE_UNAVAILABLE && cfg.rate.is_none() {
                        pause = Some(cfg.backoff_503);
                    }
                }
                Ok(Err(e)) => {
                    st.errors += 1;
                    st.transport_errors += 1;
                    st.first_error
                        .get_or_insert_with(|| format!("{}: {e:#}", kind.name()));
                    pause = Some(Duration::from_millis(10));
                }
                Err(_) => {
                    st.errors += 1;
                    st.timeouts += 1;
                    st.first_error.get_or_insert_with(|| {
                        format!(
                            "{}: no answer within {:?}",
                            kind.name(),
                            cfg.request_timeout
                        )
                    });
                }
            }
        } else if matches!(result, Ok(Err(_))) {
            // Never spin on a dead server, even outside the windows.
            pause = Some(Duration::from_millis(10));
        }
        if let Some(p) = pause {
            sleep(p).await;
        }
    }
    Ok((vu, windows))
}

/// Takes the session a 2xx answer of login or refresh sets in its cookies.
fn take_session(vu: &mut Vu, answer: &Answer) -> Result<()> {
    match (
        answer.set_cookie(ACCESS_COOKIE),
        answer.set_cookie(REFRESH_COOKIE),
    ) {
        (Some(a), Some(r)) if !a.is_empty() && !r.is_empty() => {
            vu.access = Some(a.to_owned());
            vu.refresh = Some(r.to_owned());
            Ok(())
        }
        _ => {
            vu.drop_session();
            bail!("a {} without both session cookies", answer.status)
        }
    }
}

/// One request of the mix; its status (a 2xx without the expected cookies
/// is an error).
async fn step(cfg: &Drive, vu: &mut Vu, kind: Kind) -> Result<StatusCode> {
    let answer = match kind {
        Kind::Me => {
            vu.conn
                .send(Req {
                    method: Method::GET,
                    path: LATCHKEY_ME,
                    bearer: vu.access.as_deref(),
                    basic: None,
                    cookie: None,
                    origin: None,
                    body: None,
                })
                .await?
        }
        Kind::Refresh => {
            let cookie = format!("{REFRESH_COOKIE}={}", vu.refresh.as_deref().unwrap_or(""));
            vu.conn
                .send(Req {
                    method: Method::POST,
                    path: LATCHKEY_REFRESH,
                    bearer: None,
                    basic: None,
                    cookie: Some(&cookie),
                    origin: Some(&cfg.origin),
                    body: None,
                })
                .await?
        }
        Kind::Login => {
            vu.conn
                .send(Req {
                    method: Method::POST,
                    path: LATCHKEY_LOGIN,
                    bearer: None,
                    basic: None,
                    cookie: None,
                    origin: Some(&cfg.origin),
                    body: Some(Body::Json(vu.login_body.clone())),
                })
                .await?
        }
    };
    if answer.status.is_success() && kind != Kind::Me {
        take_session(vu, &answer)?;
    } else if answer.status == StatusCode::UNAUTHORIZED {
        vu.drop_session();
    }
    Ok(answer.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_spread() {
        let mix: Mix = "me=70,refresh=29,login=1".parse().unwrap();
        let p = mix.pattern();
        assert_eq!(p.len(), 100);
        assert_eq!(p.iter().filter(|k| **k == Kind::Me).count(), 70);
        assert_eq!(p.iter().filter(|k| **k == Kind::Refresh).count(), 29);
        assert_eq!(p.iter().filter(|k| **k == Kind::Login).count(), 1);
        // Spread: never more than 3 `me` in a row with 70%.
        let longest = p
            .split(|k| *k != Kind::Me)
            .map(<[Kind]>::len)
            .max()
            .unwrap();
        assert!(longest <= 3, "{p:?}");
        assert_eq!(mix.describe(), "me 70%, refresh 29%, login 1%");

        let mix: Mix = "refresh=1, me=1".parse().unwrap();
        assert_eq!(mix.pattern().len(), 2);
        assert_eq!(mix.describe(), "me 50%, refresh 50%");
        assert!("me=0".parse::<Mix>().is_err());
        assert!("you=1".parse::<Mix>().is_err());
        assert!("me".parse::<Mix>().is_err());
        assert!("me=x".parse::<Mix>().is_err());
    }

    #[test]
    fn windows_by_completion() {
        let start = Instant::now();
        let d = Drive {
            origin: HeaderValue::from_static("http://127.0.0.1:1"),
            request_timeout: Duration::from_secs(1),
            mix: "me=1".parse().unwrap(),
            rate: None,
            start,
            windows: vec![
                start + Duration::from_secs(2),
                start + Duration::from_secs(4),
                start + Duration::from_secs(5),
            ],
            backoff_503: Duration::ZERO,
        };
        assert_eq!(d.window_of(start + Duration::from_secs(1)), None);
        assert_eq!(d.window_of(start + Duration::from_secs(2)), Some(0));
        assert_eq!(d.window_of(start + Duration::from_millis(4500)), Some(1));
        assert_eq!(d.window_of(start + Duration::from_secs(5)), None);
        assert_eq!(d.end(), start + Duration::from_secs(5));
    }
}
