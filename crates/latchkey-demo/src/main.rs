//! latchkey-demo: a small social app in front of latchkey.
//!
//! - `GET /`: one HTML page (inline JS and CSS): a login form (with "forgot
//!   your password?"), the feed with like and comment buttons, a "your
//!   devices" panel and the account's email address.
//! - On that page, passkeys: "log in with a passkey" (with the username
//!   typed, or none) and a panel that registers and removes them.
//! - `GET /reset-password?token=...` and `GET /verify-email?token=...`: the
//!   same page, for the links latchkey mails; the token is spent only by the
//!   page's POST when the user presses its button.
//! - `GET /latchkey.js`: the browser client the page imports
//!   (`clients/browser`, its unminified source).
//! - `/api/*`: the app's own API (posts, likes, comments), protected by
//!   `latchkey_verify`: the access token comes in latchkey's `accessToken`
//!   cookie and is verified offline against latchkey's JWKS.
//! - `/v1/*` and `/.well-known/*`: reverse-proxied to latchkey, so that the
//!   page and the auth endpoints share one origin (and one cookie jar), as a
//!   real deployment behind one reverse proxy would.
//!
//! Run it with `scripts/demo.sh`, which starts latchkey too.

mod api;
mod proxy;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post};
use axum::{middleware, Router};
use clap::Parser;
use latchkey_verify::Verifier;

/// The page: markup, style and script in one file, no external assets.
const INDEX_HTML: &str = include_str!("index.html");

/// The browser client, from its source: `cargo build` never needs npm.
const LATCHKEY_JS: &str = include_str!("../../../clients/browser/src/index.js");

/// The QR code encoder the page draws TOTP enrolment with (qrcode-generator,
/// MIT, vendored: nothing is fetched at run time).
const QRCODE_JS: &str = include_str!("vendor/qrcode.mjs");

/// What the page may load and run: itself and the client only.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-demo",
    version,
    about = "A small social app whose API is protected by latchkey-verify."
)]
struct Args {
    /// Address to serve on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Where latchkey serves (its `/v1` and `/.well-known` are proxied there,
    /// and its JWKS is fetched from there).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    latchkey_url: String,
    /// latchkey's issuer (the `iss` and `aud` of its tokens); default: the
    /// latchkey URL.
    #[arg(long)]
    issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf` (at most 60s): `0s`, `5s`,
    /// `250ms`, `1m` or plain seconds.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    leeway: Duration,
    /// A confidential client of latchkey (`latchkey client add ID`): with
    /// it the API subscribes to latchkey's revocation feed, so a logout is
    /// refused here within a second, not when the access token expires.
    /// Its secret comes from the environment, never the command line.
    #[arg(long, requires = "feed_client_secret")]
    feed_client_id: Option<String>,
    /// How recent a login must be to delete a post (RFC 9470 step-up); an
    /// older one is asked to log in again.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    delete_max_age: Duration,
    #[arg(
        long,
        env = "LATCHKEY_DEMO_FEED_SECRET",
        hide_env_values = true,
        hide = true
    )]
    feed_client_secret: Option<String>,
}

/// `250ms`, `10s`, `1m` or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 0s, 5s or 250ms"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value.saturating_mul(60))),
        _ => Err(format!("`{text}`: the unit must be ms, s or m")),
    }
}

/// What every handler shares.
pub(crate) struct AppState {
    /// The posts, kept in memory.
    pub(crate) posts: api::Posts,
    /// Usernames seen in latchkey's answers, by user id, to name authors.
    pub(crate) names: api::Names,
    /// The client that talks to latchkey.
    pub(crate) client: reqwest::Client,
    /// latchkey's base URL, without a trailing slash.
    pub(crate) latchkey_url: String,
    /// How recent a login must be to delete a post.
    pub(crate) delete_max_age: Duration,
}

fn app(state: Arc<AppState>, verifier: &Verifier) -> Router {
    let api = Router::new()
        .route("/api/posts", get(api::list_posts))
        .route("/api/posts/{id}/like", post(api::like))
        .route("/api/posts/{id}/comments", post(api::comment))
        .route("/api/posts/{id}", delete(api::delete_post))
        .route_layer(verifier.layer())
        .route_layer(middleware::from_fn(api::same_origin));
    Router::new()
        .route("/", get(index))
        // The pages latchkey's mailed links open (the same page, another view).
        .route("/reset-password", get(index))
        .route("/verify-email", get(index))
        .route("/latchkey.js", get(latchkey_js))
        .route("/qrcode.js", get(qrcode_js))
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/{*rest}", any(proxy::forward))
        .route("/.well-known/{*rest}", any(proxy::forward))
        .merge(api)
        .fallback(api::not_found)
        .with_state(state)
}

async fn index() -> Response {
    let mut response = axum::response::Html(INDEX_HTML).into_response();
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

async fn latchkey_js() -> Response {
    script(LATCHKEY_JS)
}

async fn qrcode_js() -> Response {
    script(QRCODE_JS)
}

fn script(source: &'static str) -> Response {
    let mut response = source.into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("latchkey-demo: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let latchkey_url = args.latchkey_url.trim_end_matches('/').to_owned();
    let issuer = args.issuer.unwrap_or_else(|| latchkey_url.clone());
    let mut verifier = Verifier::builder()
        .issuer(issuer.clone())
        .audience(issuer)
        .jwks_url(format!("{latchkey_url}/.well-known/jwks.json"))
        .token_cookie("accessToken")
        .leeway(args.leeway);
    if let (Some(id), Some(secret)) = (&args.feed_client_id, &args.feed_client_secret) {
        verifier = verifier
            .revocation_feed(id.clone(), secret.clone())
            .revocation_feed_url(format!("{latchkey_url}/oauth2/revocations"));
    }
    let verifier = verifier.build().map_err(|e| format!("the verifier: {e}"))?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("the HTTP client: {e}"))?;
    let state = Arc::new(AppState {
        posts: api::seed(),
        names: api::Names::default(),
        client,
        latchkey_url,
        delete_max_age: args.delete_max_age,
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("the bound address: {e}"))?;
    println!("listening on http://{bound}");
    axum::serve(listener, app(state, &verifier))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(|e| format!("serving: {e}"))
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("s").is_err());
    }
}
