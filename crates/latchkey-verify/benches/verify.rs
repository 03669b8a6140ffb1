//! What verifying a token costs next to the bare signature check.
//!
//! `cargo bench -p latchkey-verify` times, on the same Ed25519 token:
//! - the bare aws-lc-rs check of its signature (the key parsed each time,
//!   as `UnparsedPublicKey` does, and parsed once, as `ParsedPublicKey`);
//! - `Verifier::verify` with the keys cached: split, base64, header, key
//!   lookup, signature, claims;
//! - the same with the revocation feed subscribed and 10,000 revoked
//!   sessions held (the token's own not among them): one more lookup, and
//!   the feed's health read, per token.
//!
//! It prints ns/op and the ratios to the faster bare check, and fails when
//! either ratio is over 1.3. Without `--bench` (as `cargo test --all-targets`
//! runs it) it only does a few iterations, to prove it runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, ParsedPublicKey, UnparsedPublicKey, ED25519};
use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use futures::StreamExt as _;
use latchkey_verify::{FeedOutagePolicy, Verifier};
use serde_json::json;

const LIMIT: f64 = 1.3;
/// Revoked sessions the feed's snapshot holds.
const REVOKED: usize = 10_000;

/// Best of `rounds` rounds of `iterations` calls, in ns per call.
fn time(rounds: usize, iterations: u32, mut f: impl FnMut()) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..iterations {
            f();
        }
        best = best.min(started.elapsed());
    }
    best.as_nanos() as f64 / f64::from(iterations)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, iterations) = if full { (9, 4_000) } else { (1, 20) };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let rng = aws_lc_rs::rand::SystemRandom::new();
    let doc = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap();
    let public = pair.public_key().as_ref().to_vec();

    // A JWKS on loopback, fetched once before timing.
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA",
                     "use": "sig", "x": B64.encode(&public)});
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let until = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    // The feed: a snapshot of REVOKED sessions, ready, then a heartbeat
    // every 5 s.
    let feed = move || async move {
        let mut snapshot = String::new();
        for i in 0..REVOKED {
            snapshot.push_str(&format!(
                "event: revoked\ndata: {{\"sid\":\"{i:036x}\",\"until\":{until}}}\nid: {}\n\n",
                i + 1
            ));
        }
        snapshot.push_str("event: ready\ndata: {}\n\n");
        let beats = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Some((": keep-alive\n".to_owned(), ()))
        });
        let body = futures::stream::iter([snapshot])
            .chain(beats)
            .map(Ok::<_, std::io::Error>);
        (
            [(CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(body),
        )
    };
    let app = Router::new()
        .route(
            "/jwks.json",
            get(move || {
                let jwk = jwk.clone();
                async move { Json(json!({ "keys": [jwk] })) }
            }),
        )
        .route("/feed", get(feed));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let verifier = Verifier::builder()
        .issuer(&url)
        .audience(&url)
        .jwks_url(format!("{url}/jwks.json"))
        .build()
        .unwrap();
    rt.block_on(verifier.refresh_keys()).unwrap();
    let subscribed = rt.block_on(async {
        let v = Verifier::builder()
            .issuer(&url)
            .audience(&url)
            .jwks_url(format!("{url}/jwks.json"))
            .revocation_feed("bench", "secret")
            .revocation_feed_url(format!("{url}/feed"))
            .feed_outage_policy(FeedOutagePolicy::RefuseAll)
            .build()
            .unwrap();
        v.refresh_keys().await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), v.feed_ready())
            .await
            .expect("the feed is in sync");
        v
    });
    assert_eq!(
        subscribed.feed_status().unwrap().revoked_sessions,
        REVOKED,
        "the whole snapshot is held"
    );

    // A token as latchkey issues it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1"});
    let claims = json!({
        "iss": url, "sub": "0190f4c2-7a51-7cc2-9a6e-6f1f3c1b2d4e", "aud": url,
        "exp": now + 900, "iat": now, "nbf": now, "jti": "8f7d2c1e9b0a4c3d",
        "sid": "c2b7a1f0d9e84f6a", "client_id": "web", "scope": "posts:read posts:write",
    });
    let input = format!(
        "{}.{}",
        B64.encode(serde_json::to_vec(&header).unwrap()),
        B64.encode(serde_json::to_vec(&claims).unwrap())
    );
    let signature = pair.sign(input.as_bytes()).as_ref().to_vec();
    let token = format!("{input}.{}", B64.encode(&signature));
    rt.block_on(verifier.verify(&token)).unwrap();
    rt.block_on(subscribed.verify(&token)).unwrap();

    let unparsed = UnparsedPublicKey::new(&ED25519, public.clone());
    let parsed = ParsedPublicKey::new(&ED25519, &public).unwrap();
    // Warm up all three.
    let _ = time(1, iterations, || {
        unparsed.verify(input.as_bytes(), &signature).unwrap();
        parsed.verify_sig(input.as_bytes(), &signature).unwrap();
    });
    rt.block_on(async {
        for _ in 0..iterations {
            verifier.verify(&token).await.unwrap();
            subscribed.verify(&token).await.unwrap();
        }
    });

    // Interleave the three, round after round, so that drift in the
    // machine's speed hits all of them alike; keep each one's best.
    let mut bare_unparsed = f64::MAX;
    let mut bare_parsed = f64::MAX;
    let mut full_verify = f64::MAX;
    let mut feed_verify = f64::MAX;
    for _ in 0..rounds {
        bare_unparsed = bare_unparsed.min(time(1, iterations, || {
            black_box(unparsed.verify(black_box(input.as_bytes()), black_box(&signature))).unwrap();
        }));
        bare_parsed = bare_parsed.min(time(1, iterations, || {
            black_box(parsed.verify_sig(black_box(input.as_bytes()), black_box(&signature)))
                .unwrap();
        }));
        full_verify = full_verify.min(rt.block_on(async {
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(verifier.verify(black_box(&token)).await.unwrap());
            }
            started.elapsed().as_nanos() as f64 / f64::from(iterations)
        }));
        feed_verify = feed_verify.min(rt.block_on(async {
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(subscribed.verify(black_box(&token)).await.unwrap());
            }
            started.elapsed().as_nanos() as f64 / f64::from(iterations)
        }));
    }

    let bare = bare_unparsed.min(bare_parsed);
    let ratio = full_verify / bare;
    let feed_ratio = feed_verify / bare;
    println!("token: {} bytes, Ed25519, keys cached", token.len());
    println!("bare aws-lc-rs verify (UnparsedPublicKey): {bare_unparsed:>9.0} ns/op");
    println!("bare aws-lc-rs verify (ParsedPublicKey):   {bare_parsed:>9.0} ns/op");
    println!("Verifier::verify:                          {full_verify:>9.0} ns/op");
    println!("Verifier::verify, feed with {REVOKED} revoked: {feed_verify:>7.0} ns/op");
    let note = if full {
        ""
    } else {
        " [test mode: too few iterations to mean anything]"
    };
    println!("ratio to the faster bare check: {ratio:.3} (limit {LIMIT}){note}");
    println!("  with the feed subscribed:    {feed_ratio:.3} (limit {LIMIT}){note}");
    if full && ratio.max(feed_ratio) > LIMIT {
        eprintln!("verify costs more than {LIMIT}x the bare signature check");
        std::process::exit(1);
    }
}
