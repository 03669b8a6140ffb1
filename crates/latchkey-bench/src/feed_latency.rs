//! How long a logout takes to reach an API server: sessions are opened on
//! one latchkey node, a `latchkey-verify` verifier subscribes to the
//! revocation feed of (possibly) another, and each session in turn is
//! checked, logged out, and timed until the verifier refuses its token.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use latchkey_verify::{Error, Verifier};
use serde::Serialize;

use crate::client::{Body, Conn, Endpoint, Req};

#[derive(Args)]
pub struct FeedLatencyArgs {
    /// The node where sessions open and log out (http://IP:PORT, loopback).
    #[arg(long)]
    pub url: String,
    /// The node whose feed the verifier subscribes to (default: --url).
    #[arg(long)]
    pub feed_url: Option<String>,
    /// latchkey's issuer (default: --url).
    #[arg(long)]
    pub issuer: Option<String>,
    /// A confidential client of latchkey (`latchkey client add`).
    #[arg(long)]
    pub client_id: String,
    #[arg(long, env = "LATCHKEY_BENCH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// Logouts timed, one after the other.
    #[arg(long, default_value_t = 1000)]
    pub logouts: usize,
    /// A label copied into the JSON line.
    #[arg(long)]
    pub label: Option<String>,
}

/// One line of JSON per run.
#[derive(Serialize)]
pub struct FeedLatencyReport {
    pub label: Option<String>,
    pub logouts: usize,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl FeedLatencyReport {
    pub fn human(&self) -> String {
        format!(
            "{}: logout to refusal at the verifier over {} logouts: p50 {}, p99 {}, max {}",
            self.label.as_deref().unwrap_or("feed"),
            self.logouts,
            crate::report::fmt_us(self.p50_us),
            crate::report::fmt_us(self.p99_us),
            crate::report::fmt_us(self.max_us),
        )
    }
}

/// Longest a refusal may take before the run fails.
const REFUSAL_LIMIT: Duration = Duration::from_secs(5);

pub async fn run(args: FeedLatencyArgs) -> Result<FeedLatencyReport> {
    if args.logouts == 0 {
        bail!("--logouts must be at least 1");
    }
    let node = Endpoint::parse(&args.url)?;
    let feed = Endpoint::parse(args.feed_url.as_deref().unwrap_or(&args.url))?;
    let issuer = args.issuer.clone().unwrap_or_else(|| node.origin.clone());
    let mut conn = Conn::new(node.clone());

    let username = format!("feed-{}", std::process::id());
    let credentials = Bytes::from(serde_json::to_vec(&serde_json::json!({
        "username": username,
        "password": "correct horse battery",
    }))?);
    let origin = hyper::header::HeaderValue::from_str(&node.origin)?;
    let answer = post_json(&mut conn, "/v1/auth/register", &credentials, &origin).await?;
    if !matches!(answer.status, StatusCode::CREATED | StatusCode::CONFLICT) {
        bail!("register: {}: {}", answer.status, answer.body_text());
    }
    let mut tokens = Vec::with_capacity(args.logouts);
    for _ in 0..args.logouts {
        let answer = post_json(&mut conn, "/v1/auth/login", &credentials, &origin).await?;
        if answer.status != StatusCode::OK {
            bail!("login: {}: {}", answer.status, answer.body_text());
        }
        let body: serde_json::Value = serde_json::from_slice(&answer.body)?;
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("no access_token in the login answer"))?;
        tokens.push(token.to_owned());
    }

    let verifier = Verifier::builder()
        .issuer(issuer.clone())
        .audience(issuer)
        .jwks_url(format!("{}/.well-known/jwks.json", node.origin))
        .revocation_feed(args.client_id.clone(), args.client_secret.clone())
        .revocation_feed_url(format!("{}/oauth2/revocations", feed.origin))
        .build()
        .context("the verifier")?;
    tokio::time::timeout(Duration::from_secs(10), verifier.feed_ready())
        .await
        .map_err(|_| anyhow!("the verifier's feed was not in sync within 10 s"))?;

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for token in &tokens {
        verifier
            .verify(token)
            .await
            .context("a session's token before its logout")?;
        let started = Instant::now();
        let answer = conn
            .send(Req {
                method: Method::POST,
                path: "/v1/auth/logout",
                bearer: Some(token),
                cookie: None,
                origin: None,
                body: None,
                basic: None,
            })
            .await?;
        if !answer.status.is_success() {
            bail!("logout: {}: {}", answer.status, answer.body_text());
        }
        loop {
            match verifier.verify(token).await {
                Err(Error::RevokedSession) => break,
                Ok(_) if started.elapsed() < REFUSAL_LIMIT => tokio::task::yield_now().await,
                Ok(_) => bail!("a logged-out session's token still passes after {REFUSAL_LIMIT:?}"),
                Err(e) => bail!("the verifier refused for another reason: {e}"),
            }
        }
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        hist.saturating_record(us.max(1));
    }
    Ok(FeedLatencyReport {
        label: args.label,
        logouts: args.logouts,
        p50_us: hist.value_at_quantile(0.50),
        p99_us: hist.value_at_quantile(0.99),
        max_us: hist.max(),
        mean_us: (hist.mean() * 10.0).round() / 10.0,
    })
}

async fn post_json(
    conn: &mut Conn,
    path: &str,
    body: &Bytes,
    origin: &hyper::header::HeaderValue,
) -> Result<crate::client::Answer> {
    // The hashing queue may answer 503 under a burst: wait and retry.
    for _ in 0..100 {
        let answer = conn
            .send(Req {
                method: Method::POST,
                path,
                bearer: None,
                cookie: None,
                origin: Some(origin),
                body: Some(Body::Json(body.clone())),
                basic: None,
            })
            .await?;
        if answer.status != StatusCode::SERVICE_UNAVAILABLE {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("POST {path}: still 503 after 10 s")
}
