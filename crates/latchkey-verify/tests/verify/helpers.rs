//! Keys that sign test tokens, a JWKS server the test controls, and a
//! real latchkey server in process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256,
};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use latchkey_verify::{Verifier, VerifierBuilder};
use serde_json::{json, Value};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}

enum Signer {
    Ed(Ed25519KeyPair),
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: &'static str,
    pub jwk: Value,
    signer: Signer,
}

impl TestKey {
    pub fn ed25519(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
        let jwk = json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
            "x": b64(pair.public_key().as_ref()),
        });
        Self {
            kid: kid.into(),
            alg: "EdDSA",
            jwk,
            signer: Signer::Ed(pair),
        }
    }

    pub fn es256(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        });
        Self {
            kid: kid.into(),
            alg: "ES256",
            jwk,
            signer: Signer::Ec(pair),
        }
    }

    pub fn rs256(kid: &str) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let jwk = json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        });
        Self {
            kid: kid.into(),
            alg: "RS256",
            jwk,
            signer: Signer::Rsa(pair),
        }
    }

    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        match &self.signer {
            Signer::Ed(pair) => pair.sign(message).as_ref().to_vec(),
            Signer::Ec(pair) => pair
                .sign(&SystemRandom::new(), message)
                .unwrap()
                .as_ref()
                .to_vec(),
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .unwrap();
                sig
            }
        }
    }

    /// The header latchkey sends.
    pub fn header(&self) -> Value {
        json!({"alg": self.alg, "typ": "at+jwt", "kid": self.kid})
    }

    /// Signs `header` and `claims` as given (so tests can lie in them).
    pub fn sign_with(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(serde_json::to_vec(header).unwrap()),
            b64(serde_json::to_vec(claims).unwrap())
        );
        let sig = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64(sig))
    }

    /// A good token for `issuer` (also the audience), with `overrides`
    /// (a `null` removes a claim).
    pub fn token(&self, issuer: &str, overrides: Value) -> String {
        self.sign_with(&self.header(), &claims(issuer, overrides))
    }
}

/// latchkey's claims, for `issuer` as issuer and audience.
pub fn claims(issuer: &str, overrides: Value) -> Value {
    let now = now();
    let mut c = json!({
        "iss": issuer, "sub": "user-1", "aud": issuer, "exp": now + 300, "iat": now,
        "nbf": now, "jti": "jti-1", "sid": "session-1", "client_id": "web",
        "scope": "posts:read",
    });
    for (k, v) in overrides.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// What the JWKS server answers.
#[derive(Clone)]
pub enum Mode {
    Normal,
    Status(StatusCode),
    /// Waits this long before answering.
    Stall(Duration),
    /// Sends a valid start, then a byte every 100 ms, forever.
    Trickle,
    /// A body of this many bytes, with Content-Length.
    Huge(usize),
    /// A body of this many bytes, chunked (no Content-Length).
    HugeChunked(usize),
    /// `302 Found` to this URL.
    Redirect(String),
}

pub struct JwksState {
    pub keys: Vec<Value>,
    pub mode: Mode,
    pub cache_control: Option<String>,
    /// Added before a normal answer (to let callers pile up).
    pub delay: Duration,
    /// The `jwks_uri` the metadata names, if not this server's own.
    pub jwks_uri: Option<String>,
}

/// A JWKS server of the test's own, on a free loopback port; it also
/// serves RFC 8414 metadata naming itself as the issuer.
pub struct JwksServer {
    pub url: String,
    pub addr: SocketAddr,
    pub state: Arc<Mutex<JwksState>>,
    hits: Arc<AtomicUsize>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<JwksState>>,
    hits: Arc<AtomicUsize>,
    url: String,
}

async fn jwks(State(s): State<Shared>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let (keys, mode, cache_control, delay) = {
        let st = s.state.lock().unwrap();
        (
            st.keys.clone(),
            st.mode.clone(),
            st.cache_control.clone(),
            st.delay,
        )
    };
    tokio::time::sleep(delay).await;
    match mode {
        Mode::Normal => {
            let mut r = axum::Json(json!({ "keys": keys })).into_response();
            if let Some(cc) = cache_control {
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, cc.parse().unwrap());
            }
            r
        }
        Mode::Status(status) => (status, "no").into_response(),
        Mode::Stall(d) => {
            tokio::time::sleep(d).await;
            axum::Json(json!({ "keys": keys })).into_response()
        }
        Mode::Trickle => {
            let stream = futures::stream::unfold(0u32, |n| async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let chunk = if n == 0 { "{\"keys\":[" } else { " " };
                Some((Ok::<_, std::io::Error>(chunk), n + 1))
            });
            Body::from_stream(stream).into_response()
        }
        Mode::Huge(n) => {
            let body = format!("{{\"keys\":[],\"pad\":\"{}\"}}", "x".repeat(n));
            body.into_response()
        }
        Mode::HugeChunked(n) => {
            let stream = futures::stream::iter(
                (0..n / 1024 + 1).map(|_| Ok::<_, std::io::Error>("y".repeat(1024))),
            );
            Body::from_stream(stream).into_response()
        }
        Mode::Redirect(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
    }
}

async fn metadata(State(s): State<Shared>) -> Response {
    let jwks_uri = s.state.lock().unwrap().jwks_uri.clone();
    axum::Json(json!({
        "issuer": s.url,
        "jwks_uri": jwks_uri.unwrap_or_else(|| format!("{}/jwks.json", s.url)),
    }))
    .into_response()
}

impl JwksServer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let state = Arc::new(Mutex::new(JwksState {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
            mode: Mode::Normal,
            cache_control: Some("public, max-age=300".into()),
            delay: Duration::ZERO,
            jwks_uri: None,
        }));
        let hits = Arc::new(AtomicUsize::new(0));
        let shared = Shared {
            state: state.clone(),
            hits: hits.clone(),
            url: url.clone(),
        };
        let app = Router::new()
            .route("/jwks.json", get(jwks))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .route(
                "/.well-known/oauth-authorization-server/{*rest}",
                get(metadata),
            )
            .with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            url,
            addr,
            state,
            hits,
            _server: server,
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.url)
    }

    /// JWKS requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.state.lock().unwrap().keys = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        self.state.lock().unwrap().cache_control = value.map(str::to_owned);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn set_jwks_uri(&self, uri: &str) {
        self.state.lock().unwrap().jwks_uri = Some(uri.to_owned());
    }

    /// This server's JWKS URL under `host`, a name that is not loopback
    /// for the https rule; [`client_resolving`] makes it reach this server.
    pub fn jwks_url_as(&self, host: &str) -> String {
        format!("http://{host}:{}/jwks.json", self.addr.port())
    }

    /// A builder for this server as issuer and audience, keys by URL.
    pub fn builder(&self) -> VerifierBuilder {
        Verifier::builder()
            .issuer(&self.url)
            .audience(&self.url)
            .jwks_url(self.jwks_url())
    }
}

/// A client that resolves `host` to `addr` (no DNS), with `redirect` as
/// its redirect policy: how a test reaches a loopback server under a name
/// the https rule treats as remote.
pub fn client_resolving(
    host: &str,
    addr: SocketAddr,
    redirect: reqwest::redirect::Policy,
) -> reqwest::Client {
    reqwest::Client::builder()
        .resolve(host, addr)
        .redirect(redirect)
        .build()
        .unwrap()
}

pub mod latchkey {
    //! A real latchkey server, as the server's own tests start it.

    use std::sync::Arc;

    use latchkey_server::app::Application;
    use latchkey_server::config::{Config, RawSettings};
    use serde_json::{json, Value};
    use tempfile::TempDir;

    pub const PASSWORD: &str = "correct horse battery";

    pub struct Latchkey {
        pub url: String,
        pub client: reqwest::Client,
        _dir: TempDir,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    }

    impl Drop for Latchkey {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
        }
    }

    /// What a login gave.
    pub struct Login {
        pub access_token: String,
        pub user_id: String,
        pub session_id: String,
    }

    impl Latchkey {
        pub async fn spawn(settings: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let database_url = format!("sqlite://{}/latchkey.db", dir.path().display());
            let mut raw: RawSettings = [
                ("listen", "127.0.0.1:0"),
                ("database_url", database_url.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            raw.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            let config = Config::from_raw(&raw).unwrap();
            let app = Application::build(&config, Arc::new(latchkey_core::SystemClock))
                .await
                .unwrap();
            let url = format!("http://{}", app.address());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(async move {
                app.run_until(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
            Self {
                url,
                client: reqwest::Client::new(),
                _dir: dir,
                stop: Some(stop),
            }
        }

        pub fn jwks_url(&self) -> String {
            format!("{}/.well-known/jwks.json", self.url)
        }

        /// Registers `username` and logs in.
        pub async fn user(&self, username: &str) -> Login {
            let r = self
                .client
                .post(format!("{}/v1/auth/register", self.url))
                .json(&json!({ "username": username, "password": PASSWORD }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
            let r = self
                .client
                .post(format!("{}/v1/auth/login", self.url))
                .json(&json!({ "username": username, "password": PASSWORD }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            Login {
                access_token: body["access_token"].as_str().unwrap().to_owned(),
                user_id: body["user"]["id"].as_str().unwrap().to_owned(),
                session_id: body["session_id"].as_str().unwrap().to_owned(),
            }
        }
    }
}
