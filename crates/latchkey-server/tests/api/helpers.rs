//! A real server on a free port, in process, with a clock the test moves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::{ManualClock, Service, SessionId};
use latchkey_server::app::Application;
use latchkey_server::config::{Config, RawSettings};
use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub service: Arc<Service>,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub database_url: String,
    /// The PostgreSQL database this app owns (dropped with it), under
    /// `LATCHKEY_TEST_STORE=postgres`.
    postgres_db: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A cookie as the server set it.
#[derive(Debug, Clone)]
pub struct SetCookie {
    pub value: String,
    /// Attribute names lower-cased, with values when they have one.
    pub attrs: HashMap<String, String>,
}

pub fn set_cookies(headers: &HeaderMap) -> HashMap<String, SetCookie> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| {
            let text = v.to_str().unwrap();
            let mut parts = text.split(';').map(str::trim);
            let (name, value) = parts.next().unwrap().split_once('=').unwrap();
            let attrs = parts
                .map(|a| match a.split_once('=') {
                    Some((k, v)) => (k.to_ascii_lowercase(), v.to_owned()),
                    None => (a.to_ascii_lowercase(), String::new()),
                })
                .collect();
            (
                name.to_owned(),
                SetCookie {
                    value: value.to_owned(),
                    attrs,
                },
            )
        })
        .collect()
}

/// What a login or refresh gave.
#[derive(Debug, Clone)]
pub struct Pair {
    pub access: String,
    pub refresh: String,
    pub session_id: SessionId,
    pub body: Value,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    pub async fn spawn_with(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::spawn_in(dir, settings).await
    }

    pub async fn spawn_in(dir: TempDir, settings: &[(&str, &str)]) -> Self {
        let own_store = settings.iter().any(|(k, _)| *k == "database_url");
        let postgres_db = (on_postgres() && !own_store).then(|| postgres_database(dir.path()));
        let database_url = match &postgres_db {
            Some(db) => format!("{POSTGRES_BASE}/{db}"),
            None => format!("sqlite://{}/latchkey.db", dir.path().display()),
        };
        let mut raw: RawSettings = [
            ("listen", "127.0.0.1:0"),
            ("database_url", database_url.as_str()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if postgres_db.is_some() {
            // PostgreSQL needs an explicit issuer: take a free port first.
            let port = free_port();
            raw.insert("listen".into(), format!("127.0.0.1:{port}"));
            raw.insert("issuer".into(), format!("http://127.0.0.1:{port}"));
        }
        raw.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = Config::from_raw(&raw).unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let app = Application::build(&config, clock.clone()).await.unwrap();
        let url = format!("http://{}", app.address());
        let service = app.service();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            app.run_until(async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            url,
            clock,
            service,
            client,
            dir,
            database_url,
            postgres_db,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops serving and hands back the data folder (to restart on it).
    pub async fn stop(mut self) -> TempDir {
        // The database outlives this server: the next one on `dir` takes it.
        self.postgres_db = None;
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, dir)
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.url))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.url))
    }

    pub async fn register(&self, username: &str, password: &str) -> Response {
        self.post("/v1/auth/register")
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    pub async fn login_raw(&self, username: &str, password: &str) -> Response {
        self.post("/v1/auth/login")
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Registers `username` (if new) and logs in.
    pub async fn user_and_login(&self, username: &str) -> Pair {
        let r = self.register(username, PASSWORD).await;
        assert!(r.status() == StatusCode::CREATED || r.status() == StatusCode::CONFLICT);
        self.login(username).await
    }

    pub async fn login(&self, username: &str) -> Pair {
        let r = self.login_raw(username, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK);
        pair_of(r).await
    }

    /// A refresh as a browser on the issuer's origin sends it.
    pub async fn refresh_raw(&self, refresh_token: &str) -> Response {
        self.post("/v1/auth/refresh")
            .header("cookie", format!("refreshToken={refresh_token}"))
            .header("origin", &self.url)
            .send()
            .await
            .unwrap()
    }

    pub async fn refresh(&self, refresh_token: &str) -> Pair {
        let r = self.refresh_raw(refresh_token).await;
        assert_eq!(r.status(), StatusCode::OK);
        pair_of(r).await
    }

    /// Logs out with the access token; the logout must succeed.
    pub async fn logout(&self, access: &str) {
        let r = self
            .post("/v1/auth/logout")
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "logout: {}", r.status());
    }

    pub async fn me(&self, access: &str) -> Response {
        self.get("/v1/me").bearer_auth(access).send().await.unwrap()
    }

    pub async fn audit_events(&self) -> Vec<String> {
        let rows = self.service.store().recent_audit(1000).await.unwrap();
        rows.into_iter().map(|r| r.event).collect()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(db) = self.postgres_db.take() {
            psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
        }
    }
}

/// `LATCHKEY_TEST_STORE=postgres` runs the in-process suite on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var("LATCHKEY_TEST_STORE").is_ok_and(|v| v == "postgres")
}

pub const POSTGRES_BASE: &str = "postgres://root@127.0.0.1:5432";

pub fn psql(sql: &str) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "root",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The database of the app in `dir`: made on first use, named in a file
/// there so that a restart on the same folder finds it.
fn postgres_database(dir: &std::path::Path) -> String {
    let marker = dir.join("postgres-database");
    if let Ok(name) = std::fs::read_to_string(&marker) {
        return name;
    }
    let name = format!("latchkey_http_{}", uuid::Uuid::new_v4().simple());
    psql(&format!("CREATE DATABASE {name}"));
    std::fs::write(&marker, &name).unwrap();
    name
}

pub async fn pair_of(r: Response) -> Pair {
    let cookies = set_cookies(r.headers());
    let body: Value = r.json().await.unwrap();
    Pair {
        access: cookies["accessToken"].value.clone(),
        refresh: cookies["refreshToken"].value.clone(),
        session_id: SessionId::from(body["session_id"].as_str().unwrap()),
        body,
    }
}

/// The claims of a JWT, unverified (the tests read what the server signed).
pub fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    serde_json::from_slice(&b64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

/// Asserts the contract's error shape and code; answers the body.
pub async fn assert_error(r: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status(), status, "status for {code}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    body
}

/// A port nothing listens on right now, for a server to bind later.
///
/// Taken below the kernel's ephemeral range and never twice in a process:
/// a port the kernel handed out (`:0`) can meanwhile become the source
/// port of one of the suite's own connections, and the bind then fails.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000, ephemeral_low.max(20_000));
    let start = std::process::id() * 7919 % (high - low);
    loop {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % (high - low);
        let port = u16::try_from(low + offset).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One block of a Server-Sent Events stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Comment(String),
    Event {
        event: String,
        id: Option<String>,
        data: Value,
    },
}

/// A subscriber of the revocation feed, reading its stream as it comes.
pub struct FeedReader {
    response: Response,
    buffer: String,
}

impl FeedReader {
    /// Subscribes with HTTP Basic as `client`; the answer must be a stream.
    pub async fn open(base: &str, client: (&str, &str), last_event_id: Option<&str>) -> Self {
        let mut req = reqwest::Client::new()
            .get(format!("{base}/oauth2/revocations"))
            .basic_auth(client.0, Some(client.1));
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{:?}",
            response.headers()
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next block, comments included; `None` when nothing came within
    /// `within` or the stream ended.
    pub async fn frame(&mut self, within: Duration) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_frame(block.trim_end()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .ok()??;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event, skipping comments.
    pub async fn event(&mut self, within: Duration) -> Option<(String, Option<String>, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.frame(left).await? {
                Frame::Comment(_) => {}
                Frame::Event { event, id, data } => return Some((event, id, data)),
            }
        }
    }

    /// Events up to and including `ready`.
    pub async fn until_ready(&mut self) -> Vec<(String, Option<String>, Value)> {
        let mut events = Vec::new();
        loop {
            let e = self
                .event(Duration::from_secs(10))
                .await
                .expect("the feed said ready");
            if e.0 == "ready" {
                assert_eq!(e.2, serde_json::json!({}));
                return events;
            }
            events.push(e);
        }
    }
}

fn parse_frame(block: &str) -> Frame {
    let (mut event, mut id, mut data) = (String::from("message"), None, Vec::new());
    let mut comment = None;
    for line in block.lines() {
        if let Some(text) = line.strip_prefix(':') {
            comment = Some(text.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_owned(),
            "id" => id = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    match (comment, data.is_empty()) {
        (Some(text), true) => Frame::Comment(text),
        _ => Frame::Event {
            event,
            id,
            data: serde_json::from_str(&data.join("\n")).unwrap(),
        },
    }
}
