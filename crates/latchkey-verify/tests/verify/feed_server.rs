//! A revocation feed server the test drives: RFC 8414 metadata, a JWKS,
//! and the Server-Sent Events feed behind HTTP Basic client
//! authentication, on a loopback port it can leave and come back to.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use latchkey_verify::{FeedOutagePolicy, Verifier, VerifierBuilder};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::helpers::{now, TestKey};

pub const CLIENT_ID: &str = "orders api:1";
pub const CLIENT_SECRET: &str = "s3cret+/ with%spaces";

/// One entry of the feed's log; its id is its position, from 1.
#[derive(Clone, Debug)]
pub enum Entry {
    Revoked {
        sid: String,
        until: i64,
    },
    Purged {
        kid: String,
    },
    /// A block's lines, as given (`\n` between them); `id:` is added.
    Raw(String),
}

/// How the feed endpoint answers.
#[derive(Clone, Debug, PartialEq)]
pub enum FeedMode {
    Normal,
    Status(StatusCode),
    /// The snapshot and `ready`, then nothing at all: no heartbeat, no
    /// event.
    SilentAfterReady,
}

pub struct FeedState {
    pub log: Vec<Entry>,
    pub keys: Vec<Value>,
    pub mode: FeedMode,
    pub heartbeat: Duration,
    pub line_ending: &'static str,
    /// Each byte its own chunk.
    pub bytewise: bool,
    /// A `retry:` line sent first on each connection.
    pub retry: Option<u64>,
    /// Sent once, first, on the next connection only.
    pub prelude: Option<String>,
    /// `Last-Event-ID` of each authenticated connection, in order.
    pub last_event_ids: Vec<Option<String>>,
    /// Connections that were sent the whole snapshot.
    pub snapshots: usize,
    /// Feed bodies still open.
    pub open_streams: usize,
    /// Feed requests refused for their credentials.
    pub refused: usize,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<FeedState>>,
    /// The log's length, to wake live streams.
    log_len: watch::Sender<usize>,
    /// Bumped to end every open stream.
    kill: watch::Sender<u64>,
    url: String,
}

pub struct FeedServer {
    pub url: String,
    pub addr: SocketAddr,
    shared: Shared,
    running: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The client of a Basic `Authorization`, as RFC 6749 §2.3.1 encodes it.
fn basic_client(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((unescape(id)?, unescape(secret)?))
}

fn block(lines: &str, id: Option<usize>, ending: &str) -> String {
    let mut text: String = lines.split('\n').map(|l| format!("{l}{ending}")).collect();
    if let Some(id) = id {
        text.push_str(&format!("id: {id}{ending}"));
    }
    text.push_str(ending);
    text
}

fn render(entry: &Entry, id: usize, ending: &str) -> String {
    let lines = match entry {
        Entry::Revoked { sid, until } => format!(
            "event: revoked\ndata: {}",
            json!({"sid": sid, "until": until})
        ),
        Entry::Purged { kid } => format!("event: key_purged\ndata: {}", json!({ "kid": kid })),
        Entry::Raw(lines) => lines.clone(),
    };
    block(&lines, Some(id), ending)
}

/// Counts the open body while it lives.
struct Open(Arc<Mutex<FeedState>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().unwrap().open_streams -= 1;
    }
}

struct Stream {
    shared: Shared,
    queue: VecDeque<Bytes>,
    pos: usize,
    /// `None` when silent: not woken by events.
    log_len: Option<watch::Receiver<usize>>,
    kill: watch::Receiver<u64>,
    heartbeat: Option<tokio::time::Interval>,
    _open: Open,
}

impl Stream {
    fn enqueue(&mut self, text: String) {
        if self.shared.state.lock().unwrap().bytewise {
            self.queue
                .extend(text.into_bytes().into_iter().map(|b| Bytes::from(vec![b])));
        } else {
            self.queue.push_back(Bytes::from(text));
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            if let Some(chunk) = self.queue.pop_front() {
                return Some((Ok(chunk), self));
            }
            let beat = async {
                match &mut self.heartbeat {
                    Some(i) => {
                        i.tick().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let grown = async {
                match &mut self.log_len {
                    Some(rx) => {
                        let _ = rx.changed().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // A stream being ended sends nothing more.
                biased;
                _ = self.kill.changed() => return None,
                () = grown => {
                    let (text, len) = {
                        let st = self.shared.state.lock().unwrap();
                        let text: String = st.log[self.pos..]
                            .iter()
                            .enumerate()
                            .map(|(i, e)| render(e, self.pos + i + 1, st.line_ending))
                            .collect();
                        (text, st.log.len())
                    };
                    self.pos = len;
                    self.enqueue(text);
                }
                () = beat => {
                    let ending = self.shared.state.lock().unwrap().line_ending;
                    self.enqueue(format!(": keep-alive{ending}"));
                }
            }
        }
    }
}

async fn feed(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let mut st = s.state.lock().unwrap();
    if basic_client(&headers) != Some((CLIENT_ID.into(), CLIENT_SECRET.into())) {
        st.refused += 1;
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Basic realm="latchkey""#)],
            axum::Json(json!({"error": "invalid_client", "error_description": "unknown client"})),
        )
            .into_response();
    }
    if let FeedMode::Status(status) = st.mode {
        return (status, "no").into_response();
    }
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_owned());
    st.last_event_ids.push(last.clone());
    let e = st.line_ending;
    let mut text = st.prelude.take().unwrap_or_default();
    if let Some(retry) = st.retry {
        text.push_str(&format!("retry: {retry}{e}"));
    }
    let resume = last
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&n| n >= 1 && n <= st.log.len());
    let now = now();
    match resume {
        Some(after) => {
            for (i, entry) in st.log.iter().enumerate().skip(after) {
                text.push_str(&render(entry, i + 1, e));
            }
        }
        None => {
            st.snapshots += 1;
            for (i, entry) in st.log.iter().enumerate() {
                if !matches!(entry, Entry::Revoked { until, .. } if *until <= now) {
                    text.push_str(&render(entry, i + 1, e));
                }
            }
        }
    }
    text.push_str(&block("event: ready\ndata: {}", None, e));
    st.open_streams += 1;
    let silent = st.mode == FeedMode::SilentAfterReady;
    let heartbeat = (!silent).then(|| {
        let mut i = tokio::time::interval(st.heartbeat);
        i.reset(); // The first tick after one period.
        i
    });
    let log_len = (!silent).then(|| {
        let mut rx = s.log_len.subscribe();
        rx.mark_unchanged();
        rx
    });
    let mut stream = Stream {
        shared: s.clone(),
        queue: VecDeque::new(),
        pos: st.log.len(),
        log_len,
        kill: s.kill.subscribe(),
        heartbeat,
        _open: Open(s.state.clone()),
    };
    drop(st);
    stream.enqueue(text);
    let body = Body::from_stream(futures::stream::unfold(stream, Stream::next));
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

async fn jwks(State(s): State<Shared>) -> Response {
    let keys = s.state.lock().unwrap().keys.clone();
    let mut r = axum::Json(json!({ "keys": keys })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, "max-age=300".parse().unwrap());
    r
}

async fn metadata(State(s): State<Shared>) -> Response {
    axum::Json(json!({
        "issuer": s.url,
        "jwks_uri": format!("{}/jwks.json", s.url),
        "revocation_feed_endpoint": format!("{}/feed", s.url),
    }))
    .into_response()
}

impl FeedServer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let shared = Shared {
            state: Arc::new(Mutex::new(FeedState {
                log: Vec::new(),
                keys: keys.iter().map(|k| k.jwk.clone()).collect(),
                mode: FeedMode::Normal,
                heartbeat: Duration::from_millis(200),
                line_ending: "\n",
                bytewise: false,
                retry: None,
                prelude: None,
                last_event_ids: Vec::new(),
                snapshots: 0,
                open_streams: 0,
                refused: 0,
            })),
            log_len: watch::Sender::new(0),
            kill: watch::Sender::new(0),
            url: url.clone(),
        };
        let server = Self {
            url,
            addr,
            shared,
            running: Mutex::new(None),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = Router::new()
            .route("/feed", get(feed))
            .route("/jwks.json", get(jwks))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .with_state(self.shared.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        *self.running.lock().unwrap() = Some((stop, task));
    }

    /// Ends every open feed connection (the server stays up).
    pub fn drop_connections(&self) {
        self.shared.kill.send_modify(|n| *n += 1);
    }

    /// Unreachable: every connection closed, the port refusing.
    pub async fn stop(&self) {
        let running = self.running.lock().unwrap().take();
        if let Some((stop, task)) = running {
            let _ = stop.send(());
            self.drop_connections();
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the server stops")
                .unwrap();
        }
    }

    /// Back on the same port.
    pub async fn restart(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebinding {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.shared.state.lock().unwrap()
    }

    fn push(&self, entry: Entry) -> usize {
        let len = {
            let mut st = self.state();
            st.log.push(entry);
            st.log.len()
        };
        self.shared.log_len.send_replace(len);
        len
    }

    /// Revokes `sid` until `until`; answers the event's id.
    pub fn revoke(&self, sid: &str, until: i64) -> usize {
        self.push(Entry::Revoked {
            sid: sid.into(),
            until,
        })
    }

    /// Many revocations as one wake-up of the streams.
    pub fn revoke_many(&self, sids: impl IntoIterator<Item = String>, until: i64) {
        let len = {
            let mut st = self.state();
            st.log
                .extend(sids.into_iter().map(|sid| Entry::Revoked { sid, until }));
            st.log.len()
        };
        self.shared.log_len.send_replace(len);
    }

    pub fn purge(&self, kid: &str) -> usize {
        self.push(Entry::Purged { kid: kid.into() })
    }

    pub fn push_raw(&self, lines: &str) -> usize {
        self.push(Entry::Raw(lines.into()))
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.state().keys = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn set_mode(&self, mode: FeedMode) {
        self.state().mode = mode;
    }

    pub fn feed_url(&self) -> String {
        format!("{}/feed", self.url)
    }

    /// This server as issuer and audience, its JWKS and its feed by URL,
    /// the right client, `policy`, and `max_silence`.
    pub fn builder(&self, policy: FeedOutagePolicy, max_silence: Duration) -> VerifierBuilder {
        Verifier::builder()
            .issuer(&self.url)
            .audience(&self.url)
            .jwks_url(format!("{}/jwks.json", self.url))
            .revocation_feed(CLIENT_ID, CLIENT_SECRET)
            .revocation_feed_url(self.feed_url())
            .feed_outage_policy(policy)
            .feed_max_silence(max_silence)
    }
}
