//! The key-set cache, against a JWKS server that rotates keys, fails,
//! stalls and sends too much.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use latchkey_verify::{Error, FetchError, Rejection};
use serde_json::json;

use crate::helpers::{JwksServer, Mode, TestKey};

/// Waits for the server to have served `n` JWKS requests (a background
/// refresh is not awaited by `verify`).
async fn until_hits(server: &JwksServer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.hits() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_rotated_in_key_is_picked_up_on_its_unknown_kid() {
    let old = TestKey::ed25519("k1");
    let new = TestKey::ed25519("k2");
    let server = JwksServer::start(&[&old]).await;
    let verifier = server
        .builder()
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    verifier
        .verify(&old.token(&server.url, json!({})))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);
    assert_eq!(verifier.cached_kids(), ["k1"]);

    // latchkey publishes the next key before it signs with it.
    server.set_keys(&[&old, &new]);
    let c = verifier
        .verify(&new.token(&server.url, json!({"sub": "after"})))
        .await
        .unwrap();
    assert_eq!(c.sub, "after");
    assert_eq!(server.hits(), 2);
    // Both keys verify now, with no further fetch.
    verifier
        .verify(&old.token(&server.url, json!({})))
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);

    // The old key retires: once the set is fetched again, it is gone.
    server.set_keys(&[&new]);
    verifier.refresh_keys().await.unwrap();
    assert_eq!(verifier.cached_kids(), ["k2"]);
    assert!(matches!(
        verifier.verify(&old.token(&server.url, json!({}))).await,
        Err(Error::UnknownKey(_))
    ));
}

#[tokio::test]
async fn refetching_for_unknown_kids_is_rate_limited() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    let interval = Duration::from_millis(600);
    let verifier = server
        .builder()
        .min_refetch_interval(interval)
        .build()
        .unwrap();
    verifier
        .verify(&key.token(&server.url, json!({})))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);

    // A flood of tokens naming keys nobody has: no fetch within the
    // interval of the last one.
    for i in 0..20 {
        let stranger = TestKey::ed25519(&format!("x{i}"));
        assert!(matches!(
            verifier
                .verify(&stranger.token(&server.url, json!({})))
                .await,
            Err(Error::UnknownKey(_))
        ));
    }
    assert_eq!(server.hits(), 1);

    // Past the interval, one more fetch, then quiet again.
    tokio::time::sleep(interval + Duration::from_millis(50)).await;
    for i in 0..20 {
        let stranger = TestKey::ed25519(&format!("y{i}"));
        let _ = verifier
            .verify(&stranger.token(&server.url, json!({})))
            .await;
    }
    assert_eq!(server.hits(), 2);
    // The known key never waited on any of it.
    verifier
        .verify(&key.token(&server.url, json!({})))
        .await
        .unwrap();
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn fifty_concurrent_unknown_kids_make_one_fetch() {
    let old = TestKey::ed25519("k1");
    let new = TestKey::es256("k2");
    let server = JwksServer::start(&[&old]).await;
    let verifier = server
        .builder()
        .min_refetch_interval(Duration::from_millis(100))
        .build()
        .unwrap();

    // Cold: fifty callers, one fetch.
    server.set_delay(Duration::from_millis(200));
    let token = old.token(&server.url, json!({}));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let v = verifier.clone();
            let t = token.clone();
            tokio::spawn(async move { v.verify(&t).await })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.unwrap().unwrap();
    }
    assert_eq!(server.hits(), 1);

    // Warm, a key rotated in: fifty callers with its kid, one fetch.
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.set_keys(&[&old, &new]);
    let token = new.token(&server.url, json!({}));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let v = verifier.clone();
            let t = token.clone();
            tokio::spawn(async move { v.verify(&t).await })
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        task.unwrap().unwrap();
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cancel_the_fetch() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    let verifier = server.builder().build().unwrap();
    server.set_delay(Duration::from_millis(300));
    let token = key.token(&server.url, json!({}));
    // The first caller goes away mid-fetch...
    let gave_up = tokio::time::timeout(Duration::from_millis(50), verifier.verify(&token)).await;
    assert!(gave_up.is_err());
    // ...the fetch goes on, and the next caller uses its result.
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_failing_refetch_keeps_the_cached_keys() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    server.set_cache_control(Some("no-cache"));
    let verifier = server
        .builder()
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    let token = key.token(&server.url, json!({}));
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 1);

    for mode in [
        Mode::Status(StatusCode::INTERNAL_SERVER_ERROR),
        Mode::Status(StatusCode::NOT_FOUND),
        Mode::Huge(1 << 20),
    ] {
        server.set_mode(mode);
        let before = server.hits();
        // The set is stale (no-cache): this verification starts a refresh,
        // which fails; the key still serves, then and after.
        verifier.verify(&token).await.unwrap();
        until_hits(&server, before + 1).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        verifier.verify(&token).await.unwrap();
        // An unknown kid makes a refetch that fails: the token is refused
        // for its kid, not for the outage.
        let stranger = TestKey::ed25519("x");
        assert!(matches!(
            verifier
                .verify(&stranger.token(&server.url, json!({})))
                .await,
            Err(Error::UnknownKey(_))
        ));
        assert_eq!(verifier.cached_kids(), ["k1"]);
    }
    assert!(verifier.refresh_keys().await.is_err());
    verifier.verify(&token).await.unwrap();

    // Back to normal: the next refresh replaces the set.
    server.set_mode(Mode::Normal);
    verifier.refresh_keys().await.unwrap();
    verifier.verify(&token).await.unwrap();
}

#[tokio::test]
async fn stale_keys_serve_for_max_stale_then_wait_for_a_successful_refetch() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    server.set_cache_control(Some("max-age=1"));
    let max_age = Duration::from_secs(1);
    let max_stale = Duration::from_secs(2);
    let verifier = server
        .builder()
        .min_refetch_interval(Duration::ZERO)
        .max_stale(max_stale)
        .build()
        .unwrap();
    let token = key.token(&server.url, json!({}));
    verifier.verify(&token).await.unwrap();
    // The keys were fetched before this: their deadline is before
    // `fetched + max_age + max_stale`.
    let fetched = Instant::now();
    assert_eq!(server.hits(), 1);
    server.set_mode(Mode::Status(StatusCode::INTERNAL_SERVER_ERROR));

    // Past max-age, well within max-stale: a refetch is tried and fails,
    // and the keys still serve.
    tokio::time::sleep_until((fetched + max_age + Duration::from_millis(200)).into()).await;
    verifier.verify(&token).await.unwrap();
    until_hits(&server, 2).await;
    assert_eq!(server.hits(), 2, "the stale set was refetched");
    tokio::time::sleep(Duration::from_millis(50)).await;
    verifier.verify(&token).await.unwrap();

    // Past max-age + max-stale, with every refetch failed: refused, and
    // the layer's answer is the key-fetch failure's 503.
    tokio::time::sleep_until((fetched + max_age + max_stale + Duration::from_millis(200)).into())
        .await;
    for _ in 0..2 {
        match verifier.verify(&token).await {
            Err(e @ Error::StaleKeys { .. }) => {
                assert!(e.to_string().contains("max_stale"), "{e}");
                assert!(!e.is_invalid_token());
                let Error::StaleKeys {
                    max_stale: bound,
                    source,
                } = &e
                else {
                    panic!("{e:?}")
                };
                assert_eq!(*bound, max_stale);
                assert!(
                    matches!(source, FetchError::Status { status: 500, .. }),
                    "{source:?}"
                );
                let rejection = Rejection::from(e);
                assert_eq!(rejection.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(rejection.code(), "temporarily_unavailable");
            }
            other => panic!("{other:?}"),
        }
    }
    // A token naming a key the stale set lacks gets the same answer.
    let stranger = TestKey::ed25519("x");
    assert!(matches!(
        verifier
            .verify(&stranger.token(&server.url, json!({})))
            .await,
        Err(Error::StaleKeys { .. })
    ));
    assert_eq!(verifier.cached_kids(), ["k1"], "kept, though unused");

    // The issuer is back: the next verification refetches and passes.
    server.set_mode(Mode::Normal);
    let hits = server.hits();
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.hits(), hits + 1);
    verifier.verify(&token).await.unwrap();
}

#[tokio::test]
async fn with_no_keys_ever_fetched_the_error_says_so() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    server.set_mode(Mode::Status(StatusCode::SERVICE_UNAVAILABLE));
    let verifier = server
        .builder()
        .min_refetch_interval(Duration::from_secs(60))
        .build()
        .unwrap();
    let token = key.token(&server.url, json!({}));
    match verifier.verify(&token).await {
        Err(e @ Error::KeysUnavailable(FetchError::Status { status: 503, .. })) => {
            assert!(!e.is_invalid_token())
        }
        other => panic!("{other:?}"),
    }
    // Within the interval, the last error is answered without a fetch.
    assert!(matches!(
        verifier.verify(&token).await,
        Err(Error::KeysUnavailable(_))
    ));
    assert_eq!(server.hits(), 1);
    // A set with no usable key is no better than none.
    server.set_mode(Mode::Normal);
    server.set_keys(&[]);
    assert!(matches!(
        verifier.refresh_keys().await,
        Err(FetchError::NoUsableKeys { .. })
    ));
}

#[tokio::test]
async fn cache_control_max_age_is_honoured() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    server.set_cache_control(Some("public, max-age=1"));
    let verifier = server
        .builder()
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    let token = key.token(&server.url, json!({}));
    verifier.verify(&token).await.unwrap();
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.hits(), 1, "fresh for a second");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&token).await.unwrap();
    until_hits(&server, 2).await;
    assert_eq!(server.hits(), 2, "stale: refreshed in the background");

    // A long max-age: no refetch however long the test waits.
    server.set_cache_control(Some("max-age=3600"));
    verifier.refresh_keys().await.unwrap();
    let hits = server.hits();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.hits(), hits);
}

#[tokio::test]
async fn a_slow_key_set_is_bounded_in_time() {
    let key = TestKey::ed25519("k1");
    let token_for = |server: &JwksServer| key.token(&server.url, json!({}));
    for mode in [Mode::Stall(Duration::from_secs(30)), Mode::Trickle] {
        let server = JwksServer::start(&[&key]).await;
        server.set_mode(mode);
        let verifier = server
            .builder()
            .fetch_timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let started = Instant::now();
        match verifier.verify(&token_for(&server)).await {
            Err(Error::KeysUnavailable(FetchError::Timeout { timeout, .. })) => {
                assert_eq!(timeout, Duration::from_millis(400))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn an_oversized_key_set_is_bounded_in_size() {
    let key = TestKey::ed25519("k1");
    for mode in [Mode::Huge(100_000), Mode::HugeChunked(100_000)] {
        let server = JwksServer::start(&[&key]).await;
        server.set_mode(mode);
        let verifier = server.builder().max_jwks_bytes(16 * 1024).build().unwrap();
        match verifier.verify(&key.token(&server.url, json!({}))).await {
            Err(Error::KeysUnavailable(FetchError::TooLarge { limit, .. })) => {
                assert_eq!(limit, 16 * 1024)
            }
            other => panic!("{other:?}"),
        }
    }
    // The same set under the bound is fine.
    let server = JwksServer::start(&[&key]).await;
    let verifier = server.builder().max_jwks_bytes(16 * 1024).build().unwrap();
    verifier
        .verify(&key.token(&server.url, json!({})))
        .await
        .unwrap();
}
