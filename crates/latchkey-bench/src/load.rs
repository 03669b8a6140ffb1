//! The load: one task per virtual user, each on its own keep-alive
//! connection, for a warm-up then a measured window.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, timeout, Instant};

use crate::client::{urlencode, Answer, Body, Conn, Endpoint, Req};
use crate::cpu::{comm_cpu_seconds, group_cpu_seconds, process_cpu_seconds};
use crate::report::{new_histogram, RunReport};
use crate::target::{Scenario, Target, OIDC_MINT_REFRESH, REFRESH_COOKIE};

/// Everything one scenario run needs.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: Target,
    pub scenario: Scenario,
    /// Virtual user `i` talks to `endpoints[i % len]` (several nodes of one deployment).
    pub endpoints: Vec<Endpoint>,
    pub origin: HeaderValue,
    pub connections: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub setup_concurrency: usize,
    pub setup_timeout: Duration,
    pub request_timeout: Duration,
    /// Pause of a virtual user after a 503 in the measured loop.
    pub backoff_503: Duration,
    pub label: Option<String>,
    /// The OAuth client's `Authorization: Basic ...` (OAuth scenarios).
    pub basic: Option<HeaderValue>,
    /// The server's process groups, whose CPU time is measured (none: not
    /// measured).
    pub server_pgids: Vec<u32>,
    /// The database's process name, whose CPU is measured like the server's.
    pub database_comm: Option<String>,
    pub client_threads: usize,
}

/// The form of a client_credentials request (the client authenticates
/// with Basic).
const CLIENT_CREDENTIALS_FORM: &[u8] = b"grant_type=client_credentials";

/// The pause before retrying a setup request that got a 503 (hashing queue
/// full) or a transport error.
const SETUP_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Transport errors in a row before a setup request gives up.
const SETUP_MAX_TRANSPORT_ERRORS: u32 = 5;

/// A virtual user: its connection, credentials and session.
pub(crate) struct Vu {
    pub index: usize,
    pub conn: Conn,
    /// The JSON body of its login (and registration).
    pub login_body: Bytes,
    pub access: Option<String>,
    pub refresh: Option<String>,
}

impl Vu {
    pub fn new(cfg: &LoadConfig, index: usize) -> Result<Self> {
        let body = serde_json::json!({
            "username": cfg.target.username(index),
            "password": cfg.target.password(),
        });
        Ok(Self {
            index,
            conn: Conn::new(cfg.endpoints[index % cfg.endpoints.len()].clone()),
            login_body: Bytes::from(serde_json::to_vec(&body)?),
            access: None,
            refresh: None,
        })
    }

    fn has_session(&self, scenario: Scenario) -> bool {
        match scenario {
            Scenario::Me | Scenario::Introspect => self.access.is_some(),
            Scenario::Refresh | Scenario::TokenRefresh => self.refresh.is_some(),
            Scenario::Login | Scenario::TokenCc => true,
        }
    }

    pub fn drop_session(&mut self) {
        self.access = None;
        self.refresh = None;
    }
}

fn origin_for(cfg: &LoadConfig) -> Option<&HeaderValue> {
    cfg.target.sends_origin().then_some(&cfg.origin)
}

/// Sends a setup POST until it gets an answer that is not a 503, retrying
/// on 503 and on transport errors, until `deadline`. An `oauth` request
/// carries the client's Basic credentials and no `Origin`.
async fn setup_send(
    cfg: &LoadConfig,
    conn: &mut Conn,
    path: &str,
    body: Option<&Body>,
    oauth: bool,
    deadline: Instant,
) -> Result<Answer> {
    let mut transport_errors = 0;
    loop {
        let req = Req {
            method: Method::POST,
            path,
            bearer: None,
            basic: if oauth { cfg.basic.as_ref() } else { None },
            cookie: None,
            origin: if oauth { None } else { origin_for(cfg) },
            body: body.cloned(),
        };
        match timeout(cfg.request_timeout, conn.send(req)).await {
            Ok(Ok(answer)) if answer.status == StatusCode::SERVICE_UNAVAILABLE => {}
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => {
                transport_errors += 1;
                if transport_errors >= SETUP_MAX_TRANSPORT_ERRORS {
                    return Err(e.context(format!("POST {path}")));
                }
            }
            Err(_) => bail!("POST {path}: no answer within {:?}", cfg.request_timeout),
        }
        if Instant::now() + SETUP_RETRY_PAUSE >= deadline {
            bail!("POST {path}: still 503 or failing at the setup deadline");
        }
        sleep(SETUP_RETRY_PAUSE).await;
    }
}

async fn register(cfg: &LoadConfig, vu: &mut Vu, deadline: Instant) -> Result<()> {
    let Some(path) = cfg.target.register_path() else {
        return Ok(());
    };
    let body = Body::Json(vu.login_body.clone());
    let answer = setup_send(cfg, &mut vu.conn, path, Some(&body), false, deadline).await?;
    match answer.status {
        StatusCode::CREATED | StatusCode::OK | StatusCode::CONFLICT => Ok(()),
        s => bail!(
            "register {}: {s}: {}",
            cfg.target.username(vu.index),
            answer.body_text()
        ),
    }
}

/// A 429 of a login: what it means.
fn too_many_logins(what: &str, user: &str) -> anyhow::Error {
    anyhow!(
        "{what} {user}: 429: too many failed logins for this user from this address \
         (a wrong password in an earlier run?); use a fresh database or wait for login_window"
    )
}

/// What the scenario needs before its first request (a session or a
/// token), or again after it lost it.
async fn open_session(cfg: &LoadConfig, vu: &mut Vu, deadline: Instant) -> Result<()> {
    match cfg.scenario {
        Scenario::Me | Scenario::Refresh => login(cfg, vu, deadline).await,
        Scenario::TokenRefresh | Scenario::Introspect => oauth_session(cfg, vu, deadline).await,
        Scenario::Login | Scenario::TokenCc => Ok(()),
    }
}

async fn login(cfg: &LoadConfig, vu: &mut Vu, deadline: Instant) -> Result<()> {
    let path = cfg
        .target
        .login_path()
        .ok_or_else(|| anyhow!("{} has no login", cfg.target.name()))?;
    let body = Body::Json(vu.login_body.clone());
    let answer = setup_send(cfg, &mut vu.conn, path, Some(&body), false, deadline).await?;
    let user = cfg.target.username(vu.index);
    match answer.status {
        s if s.is_success() => {}
        StatusCode::TOO_MANY_REQUESTS => return Err(too_many_logins("login", &user)),
        s => bail!("login {user}: {s}: {}", answer.body_text()),
    }
    let json: serde_json::Value = serde_json::from_slice(&answer.body)
        .with_context(|| format!("login {user}: answer is not JSON"))?;
    let field = cfg.target.access_token_field();
    let access = json
        .get(field)
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("login {user}: no {field:?} in the answer"))?;
    let refresh = answer
        .set_cookie(REFRESH_COOKIE)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| anyhow!("login {user}: no {REFRESH_COOKIE} cookie in the answer"))?;
    vu.access = Some(access.to_owned());
    vu.refresh = Some(refresh.to_owned());
    Ok(())
}

/// The fields of a token endpoint's answer that the scenarios keep.
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
}

/// The token a VU of `token-refresh` or `introspect` works with:
/// - latchkey: a user's refresh token, or their access token (a JWT tied to
///   the session), from a password grant of the OAuth client;
/// - oidc-provider: a refresh token from its bench-only route (it has no
///   password grant), or an opaque client_credentials access token.
async fn oauth_session(cfg: &LoadConfig, vu: &mut Vu, deadline: Instant) -> Result<()> {
    let user = cfg.target.username(vu.index);
    let token_path = cfg
        .target
        .token_path()
        .ok_or_else(|| anyhow!("{} has no token endpoint", cfg.target.name()))?;
    let (path, body) = match (cfg.target, cfg.scenario) {
        (Target::OidcProvider, Scenario::TokenRefresh) => (OIDC_MINT_REFRESH, None),
        (Target::OidcProvider, _) => (
            token_path,
            Some(Body::Form(Bytes::from_static(CLIENT_CREDENTIALS_FORM))),
        ),
        _ => {
            let form = format!(
                "grant_type=password&username={}&password={}",
                urlencode(&user),
                urlencode(cfg.target.password())
            );
            (token_path, Some(Body::Form(Bytes::from(form))))
        }
    };
    let answer = setup_send(cfg, &mut vu.conn, path, body.as_ref(), true, deadline).await?;
    match answer.status {
        s if s.is_success() => {}
        StatusCode::TOO_MANY_REQUESTS => return Err(too_many_logins("token for", &user)),
        s => bail!("token for {user} at {path}: {s}: {}", answer.body_text()),
    }
    let tokens: TokenAnswer = serde_json::from_slice(&answer.body)
        .with_context(|| format!("token for {user} at {path}: answer is not a token's JSON"))?;
    let refresh = cfg.scenario == Scenario::TokenRefresh;
    let (token, name) = if refresh {
        (tokens.refresh_token, "refresh_token")
    } else {
        (tokens.access_token, "access_token")
    };
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("token for {user} at {path}: no {name} in the answer"))?;
    if refresh {
        vu.refresh = Some(token);
    } else {
        vu.access = Some(token);
    }
    Ok(())
}

/// How a measured request went: its status, and for a 2xx that did not do
/// what the scenario needs, why (it counts as an error).
struct Outcome {
    status: StatusCode,
    refused: Option<&'static str>,
}

impl From<StatusCode> for Outcome {
    fn from(status: StatusCode) -> Self {
        Self {
            status,
            refused: None,
        }
    }
}

/// An OAuth POST (form body, client Basic auth, no `Origin`).
fn oauth_req<'a>(cfg: &'a LoadConfig, path: &'a str, form: Bytes) -> Req<'a> {
    Req {
        method: Method::POST,
        path,
        bearer: None,
        basic: cfg.basic.as_ref(),
        cookie: None,
        origin: None,
        body: Some(Body::Form(form)),
    }
}

/// A 400 or a 401 from an OAuth endpoint: the token is unknown here (spent,
/// expired, or held by another cluster worker after a reconnect).
fn token_refused(status: StatusCode) -> bool {
    status == StatusCode::BAD_REQUEST || status == StatusCode::UNAUTHORIZED
}

/// One measured request at `path`.
async fn step(cfg: &LoadConfig, vu: &mut Vu, path: &str) -> Result<Outcome> {
    match cfg.scenario {
        Scenario::Me => {
            let answer = vu
                .conn
                .send(Req {
                    method: Method::GET,
                    path,
                    bearer: vu.access.as_deref(),
                    basic: None,
                    cookie: None,
                    origin: None,
                    body: None,
                })
                .await?;
            if answer.status == StatusCode::UNAUTHORIZED {
                vu.drop_session();
            }
            Ok(answer.status.into())
        }
        Scenario::Refresh => {
            let cookie = format!("{REFRESH_COOKIE}={}", vu.refresh.as_deref().unwrap_or(""));
            let answer = vu
                .conn
                .send(Req {
                    method: Method::POST,
                    path,
                    bearer: None,
                    basic: None,
                    cookie: Some(&cookie),
                    origin: origin_for(cfg),
                    body: None,
                })
                .await?;
            if answer.status.is_success() {
                // latchkey rotates on every refresh; Express only with ROTATE=1
                // (otherwise it sets no refresh cookie and the old one stays).
                match answer.set_cookie(REFRESH_COOKIE) {
                    Some("") => vu.drop_session(),
                    Some(v) => vu.refresh = Some(v.to_owned()),
                    None => {}
                }
            } else if answer.status == StatusCode::UNAUTHORIZED {
                vu.drop_session();
            }
            Ok(answer.status.into())
        }
        Scenario::Login => {
            let answer = vu
                .conn
                .send(Req {
                    method: Method::POST,
                    path,
                    bearer: None,
                    basic: None,
                    cookie: None,
                    origin: origin_for(cfg),
                    body: Some(Body::Json(vu.login_body.clone())),
                })
                .await?;
            Ok(answer.status.into())
        }
        Scenario::TokenCc => {
            let form = Bytes::from_static(CLIENT_CREDENTIALS_FORM);
            let answer = vu.conn.send(oauth_req(cfg, path, form)).await?;
            Ok(answer.status.into())
        }
        Scenario::TokenRefresh => {
            let form = format!(
                "grant_type=refresh_token&refresh_token={}",
                urlencode(vu.refresh.as_deref().unwrap_or(""))
            );
            let answer = vu
                .conn
                .send(oauth_req(cfg, path, Bytes::from(form)))
                .await?;
            let mut outcome = Outcome::from(answer.status);
            if answer.status.is_success() {
                // Rotating: the one just used is spent.
                match serde_json::from_slice::<TokenAnswer>(&answer.body) {
                    Ok(TokenAnswer {
                        refresh_token: Some(t),
                        ..
                    }) if !t.is_empty() => vu.refresh = Some(t),
                    _ => {
                        vu.drop_session();
                        outcome.refused = Some("no refresh_token");
                    }
                }
            } else if token_refused(answer.status) {
                vu.drop_session();
            }
            Ok(outcome)
        }
        Scenario::Introspect => {
            let form = format!("token={}", urlencode(vu.access.as_deref().unwrap_or("")));
            let answer = vu
                .conn
                .send(oauth_req(cfg, path, Bytes::from(form)))
                .await?;
            let mut outcome = Outcome::from(answer.status);
            if answer.status.is_success() {
                #[derive(Deserialize)]
                struct Introspection {
                    active: bool,
                }
                match serde_json::from_slice::<Introspection>(&answer.body) {
                    Ok(Introspection { active: true }) => {}
                    // Expired, revoked, or unknown to this cluster worker:
                    // a new token next time.
                    Ok(Introspection { active: false }) => {
                        vu.drop_session();
                        outcome.refused = Some("inactive");
                    }
                    Err(_) => outcome.refused = Some("not an introspection"),
                }
            } else if token_refused(answer.status) {
                vu.drop_session();
            }
            Ok(outcome)
        }
    }
}

/// What one virtual user saw in the measured window.
struct VuStats {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    statuses: BTreeMap<String, u64>,
    transport_errors: u64,
    timeouts: u64,
    relogins: u64,
    relogin_failures: u64,
    connects: u64,
    first_error: Option<String>,
}

#[derive(Clone, Copy)]
struct Phases {
    measure_start: Instant,
    end: Instant,
}

async fn drive(cfg: Arc<LoadConfig>, mut vu: Vu, phases: Phases) -> Result<VuStats> {
    let mut st = VuStats {
        hist: new_histogram()?,
        ok: 0,
        errors: 0,
        statuses: BTreeMap::new(),
        transport_errors: 0,
        timeouts: 0,
        relogins: 0,
        relogin_failures: 0,
        connects: 0,
        first_error: None,
    };
    let path = cfg.target.path_of(cfg.scenario).ok_or_else(|| {
        anyhow!(
            "{} has no {} request",
            cfg.target.name(),
            cfg.scenario.name()
        )
    })?;
    let connects_before = vu.conn.connects;
    while Instant::now() < phases.end {
        if !vu.has_session(cfg.scenario) {
            // The session (or token) was lost (an error answer): get one
            // again, outside the measured requests but inside the window's
            // time.
            match open_session(&cfg, &mut vu, phases.end).await {
                Ok(()) => st.relogins += 1,
                Err(e) => {
                    st.relogin_failures += 1;
                    st.first_error
                        .get_or_insert_with(|| format!("relogin: {e:#}"));
                    sleep(SETUP_RETRY_PAUSE).await;
                }
            }
            continue;
        }
        let t0 = Instant::now();
        let result = timeout(cfg.request_timeout, step(&cfg, &mut vu, path)).await;
        let t1 = Instant::now();
        // A request counts when it completes inside the measured window.
        let counted = t1 >= phases.measure_start && t1 <= phases.end;
        match result {
            Ok(Ok(Outcome {
                status,
                refused: None,
            })) if status.is_success() => {
                if counted {
                    st.ok += 1;
                    let us = u64::try_from((t1 - t0).as_micros()).unwrap_or(u64::MAX);
                    st.hist.saturating_record(us.max(1));
                }
            }
            Ok(Ok(Outcome { status, refused })) => {
                if counted {
                    st.errors += 1;
                    let mut key = status.as_u16().to_string();
                    if let Some(why) = refused {
                        key = format!("{key} {why}");
                    }
                    *st.statuses.entry(key).or_default() += 1;
                    st.first_error.get_or_insert_with(|| {
                        let why = refused.map(|w| format!(": {w}")).unwrap_or_default();
                        format!("HTTP {status} on {}{why}", cfg.scenario.name())
                    });
                }
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    sleep(cfg.backoff_503).await;
                }
            }
            Ok(Err(e)) => {
                if counted {
                    st.errors += 1;
                    st.transport_errors += 1;
                    st.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
                // Never spin on a dead server.
                sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                if counted {
                    st.errors += 1;
                    st.timeouts += 1;
                    st.first_error.get_or_insert_with(|| {
                        format!("no answer within {:?}", cfg.request_timeout)
                    });
                }
            }
        }
    }
    st.connects = vu.conn.connects - connects_before;
    Ok(st)
}

/// CPU seconds of the server's process groups, now; `None` when none was
/// given. Read on a blocking thread: the virtual users keep going.
async fn server_cpu_seconds(cfg: &LoadConfig) -> Result<Option<f64>> {
    if cfg.server_pgids.is_empty() {
        return Ok(None);
    }
    let pgids = cfg.server_pgids.clone();
    let seconds = tokio::task::spawn_blocking(move || group_cpu_seconds(&pgids)).await??;
    Ok(Some(seconds))
}

/// CPU seconds of the database's processes, now; `None` when not asked.
async fn database_cpu_seconds(cfg: &LoadConfig) -> Result<Option<f64>> {
    let Some(comm) = cfg.database_comm.clone() else {
        return Ok(None);
    };
    let seconds = tokio::task::spawn_blocking(move || comm_cpu_seconds(&comm)).await??;
    Ok(Some(seconds))
}

/// Sets up `cfg.connections` virtual users (bounded concurrency): registers
/// them (an existing user is fine) unless the scenario has no user, and, if
/// it needs one, gets each a session or token. Sorted by index.
pub(crate) async fn setup(cfg: &Arc<LoadConfig>) -> Result<Vec<Vu>> {
    let setup_deadline = Instant::now() + cfg.setup_timeout;
    let permits = Arc::new(Semaphore::new(cfg.setup_concurrency.max(1)));
    let mut setups = JoinSet::new();
    for index in 0..cfg.connections {
        let cfg = Arc::clone(cfg);
        let permits = Arc::clone(&permits);
        setups.spawn(async move {
            let result: Result<Vu> = async {
                let mut vu = Vu::new(&cfg, index)?;
                vu.conn.ensure_connected().await?;
                let _permit = permits.acquire().await?;
                if cfg.scenario != Scenario::TokenCc {
                    register(&cfg, &mut vu, setup_deadline).await?;
                }
                if cfg.scenario.needs_session() {
                    open_session(&cfg, &mut vu, setup_deadline).await?;
                }
                Ok(vu)
            }
            .await;
            result.with_context(|| format!("setup of virtual user {index}"))
        });
    }
    let mut vus = Vec::with_capacity(cfg.connections);
    let setup_limit = setup_deadline + cfg.request_timeout;
    while let Some(joined) = timeout_at_or_err(setup_limit, setups.join_next()).await? {
        vus.push(joined??);
    }
    vus.sort_by_key(|vu| vu.index);
    Ok(vus)
}

/// Sets up every virtual user, runs the warm-up and the measured window,
/// and summarizes.
pub async fn run(cfg: LoadConfig) -> Result<RunReport> {
    let cfg = Arc::new(cfg);
    if !cfg.target.supports(cfg.scenario) {
        bail!(
            "{} has no {} request",
            cfg.target.name(),
            cfg.scenario.name()
        );
    }
    // A wrong --server-pgid fails now, not after the setup.
    server_cpu_seconds(&cfg).await.context("--server-pgid")?;
    let vus = setup(&cfg).await?;

    let start = Instant::now();
    let phases = Phases {
        measure_start: start + cfg.warmup,
        end: start + cfg.warmup + cfg.duration,
    };
    let mut tasks = JoinSet::new();
    for vu in vus {
        tasks.spawn(drive(Arc::clone(&cfg), vu, phases));
    }
    sleep_until(phases.measure_start).await;
    let database0 = database_cpu_seconds(&cfg).await?;
    let cpu0 = process_cpu_seconds();
    let server0 = server_cpu_seconds(&cfg)
        .await
        .context("server CPU at the window's start")?;
    sleep_until(phases.end).await;
    let database1 = database_cpu_seconds(&cfg).await?;
    let cpu1 = process_cpu_seconds();
    let server1 = server_cpu_seconds(&cfg)
        .await
        .context("server CPU at the window's end")?;

    let mut hist = new_histogram()?;
    let mut report = RunReport::empty(&cfg);
    let join_limit = phases.end + cfg.request_timeout + Duration::from_secs(5);
    let mut finished = 0usize;
    while let Some(joined) = timeout_at_or_err(join_limit, tasks.join_next()).await? {
        let st = joined??;
        finished += 1;
        hist.add(&st.hist)?;
        report.ok += st.ok;
        report.errors += st.errors;
        report.transport_errors += st.transport_errors;
        report.timeouts += st.timeouts;
        report.relogins += st.relogins;
        report.relogin_failures += st.relogin_failures;
        report.reconnects += st.connects;
        for (k, v) in st.statuses {
            *report.statuses.entry(k).or_default() += v;
        }
        if report.first_error.is_none() {
            report.first_error = st.first_error;
        }
    }
    if finished != cfg.connections {
        bail!(
            "{} of {} virtual users did not stop",
            cfg.connections - finished,
            cfg.connections
        );
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        report.client_cpu_pct = Some(100.0 * (b - a) / cfg.duration.as_secs_f64());
    }
    if report.ok > 0 {
        let per_request = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / report.ok as f64 * 1e6);
        report.server_cpu_us_per_req = per_request(server0, server1);
        report.database_cpu_us_per_req = per_request(database0, database1);
    }
    report.finish(&hist, cfg.duration);
    Ok(report)
}

/// `join_next` with an overall deadline (the run is bounded in time even if
/// the server stops answering).
async fn timeout_at_or_err<T>(
    deadline: Instant,
    fut: impl std::future::Future<Output = Option<T>>,
) -> Result<Option<T>> {
    tokio::time::timeout_at(deadline, fut)
        .await
        .map_err(|_| anyhow!("virtual users still busy at the deadline"))
}
