//! The revocation feed, against a feed server of the test's own over real
//! HTTP: snapshot and live revocations, expiry, purged keys, reconnection
//! with `Last-Event-ID`, outages under each policy, bounds.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use latchkey_verify::{Error, FeedOutagePolicy, FeedStatus, Rejection, Verifier};
use serde_json::json;

use crate::feed_server::{FeedMode, FeedServer, CLIENT_ID, CLIENT_SECRET};
use crate::helpers::{now, TestKey};

const SECOND: Duration = Duration::from_secs(1);

/// Polls `$check` every 10 ms until it holds; false after `$within`.
macro_rules! eventually {
    ($within:expr, $check:expr) => {{
        let deadline = Instant::now() + $within;
        loop {
            if $check {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }};
}

fn status(v: &Verifier) -> FeedStatus {
    v.feed_status().expect("a feed is configured")
}

async fn ready(v: &Verifier) {
    tokio::time::timeout(Duration::from_secs(5), v.feed_ready())
        .await
        .expect("the feed is in sync within 5 s");
}

struct Setup {
    key: TestKey,
    server: FeedServer,
}

impl Setup {
    async fn new() -> Self {
        let key = TestKey::ed25519("k1");
        let server = FeedServer::start(&[&key]).await;
        Self { key, server }
    }

    fn token(&self, sid: Option<&str>) -> String {
        let sid = sid.map_or(serde_json::Value::Null, |s| json!(s));
        self.key.token(&self.server.url, json!({ "sid": sid }))
    }

    fn verifier(&self, policy: FeedOutagePolicy, max_silence: Duration) -> Verifier {
        self.server.builder(policy, max_silence).build().unwrap()
    }
}

async fn is_revoked(v: &Verifier, token: &str) -> bool {
    matches!(v.verify(token).await, Err(Error::RevokedSession))
}

#[tokio::test]
async fn snapshot_revocations_are_refused_from_ready_on() {
    let s = Setup::new().await;
    s.server.revoke("s-old", now() + 60);
    s.server.revoke("s-over", now() - 1);
    s.server
        .set_mode(FeedMode::Status(StatusCode::SERVICE_UNAVAILABLE));
    // Both URLs by discovery, the credentials RFC 6749-encoded.
    let v = Verifier::builder()
        .issuer(&s.server.url)
        .audience(&s.server.url)
        .revocation_feed(CLIENT_ID, CLIENT_SECRET)
        .feed_outage_policy(FeedOutagePolicy::RefuseAll)
        .build()
        .unwrap();

    // Not in sync yet: every token refused, as unavailable, not as bad.
    for sid in [Some("s-old"), Some("s-new"), None] {
        match v.verify(&s.token(sid)).await {
            Err(e @ Error::FeedUnavailable(_)) => {
                assert!(!e.is_invalid_token());
                let r = Rejection::from(e);
                assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(r.code(), "temporarily_unavailable");
            }
            other => panic!("{sid:?}: {other:?}"),
        }
    }
    assert!(eventually!(
        SECOND * 5,
        status(&v)
            .last_error
            .is_some_and(|e| e.contains("HTTP 503"))
    ));

    s.server.set_mode(FeedMode::Normal);
    ready(&v).await;
    match v.verify(&s.token(Some("s-old"))).await {
        Err(e @ Error::RevokedSession) => {
            let r = Rejection::from(e);
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(r.code(), "invalid_token");
            assert_eq!(r.description(), "the token's session was revoked");
        }
        other => panic!("{other:?}"),
    }
    v.verify(&s.token(Some("s-new"))).await.unwrap();
    v.verify(&s.token(Some("s-over"))).await.unwrap();
    // client_credentials tokens have no session to revoke.
    assert_eq!(v.verify(&s.token(None)).await.unwrap().sid, None);

    let st = status(&v);
    assert!(st.connected && st.ready && !st.outage, "{st:?}");
    assert_eq!(st.revoked_sessions, 1);
    assert_eq!(st.last_event_id.as_deref(), Some("1"));
    assert!(st.staleness.unwrap() < SECOND);
    let state = s.server.state();
    assert!(state.last_event_ids.iter().all(Option::is_none));
    assert_eq!(state.refused, 0, "the credentials were accepted");
}

#[tokio::test]
async fn a_live_revocation_is_refused_within_a_second() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND * 30);
    ready(&v).await;
    let token = s.token(Some("s-live"));
    v.verify(&token).await.unwrap();

    let revoked_at = Instant::now();
    s.server.revoke("s-live", now() + 60);
    assert!(eventually!(SECOND, is_revoked(&v, &token).await));
    assert!(revoked_at.elapsed() < SECOND, "{:?}", revoked_at.elapsed());
    // Other sessions, and tokens without one, pass.
    v.verify(&s.token(Some("s-other"))).await.unwrap();
    v.verify(&s.token(None)).await.unwrap();
}

#[tokio::test]
async fn a_revocation_is_forgotten_at_its_until() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND * 30);
    ready(&v).await;
    let token = s.token(Some("s-short"));
    let until = now() + 2;
    s.server.revoke("s-short", until);
    s.server.revoke("s-long", now() + 60);
    assert!(eventually!(SECOND, is_revoked(&v, &token).await));
    assert_eq!(status(&v).revoked_sessions, 2);

    // The token itself is good for minutes: only the revocation expired.
    assert!(eventually!(SECOND * 4, v.verify(&token).await.is_ok()));
    assert!(now() >= until);
    assert_eq!(status(&v).revoked_sessions, 1);
    assert!(is_revoked(&v, &s.token(Some("s-long"))).await);
}

#[tokio::test]
async fn a_refused_client_shows_in_the_status() {
    let s = Setup::new().await;
    let v = s
        .server
        .builder(FeedOutagePolicy::RefuseAll, SECOND * 30)
        .revocation_feed(CLIENT_ID, "not the secret")
        .build()
        .unwrap();
    assert!(eventually!(SECOND * 5, s.server.state().refused >= 3));
    let st = status(&v);
    let error = st.last_error.clone().unwrap();
    assert!(
        error.contains("HTTP 401") && error.contains("invalid_client"),
        "{error}"
    );
    assert!(!st.connected && !st.ready && st.outage, "{st:?}");
    assert_eq!(st.staleness, None);
    assert!(st.reconnects >= 2, "{st:?}");
    assert!(matches!(
        v.verify(&s.token(Some("s"))).await,
        Err(Error::FeedUnavailable(_))
    ));
}

#[tokio::test]
async fn reconnecting_resumes_from_the_last_event_id_and_misses_nothing() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND * 30);
    ready(&v).await;
    s.server.revoke("a", now() + 60);
    assert!(eventually!(
        SECOND,
        is_revoked(&v, &s.token(Some("a"))).await
    ));
    assert_eq!(status(&v).last_event_id.as_deref(), Some("1"));

    // Down, and revocations made meanwhile.
    s.server.stop().await;
    assert!(eventually!(SECOND, !status(&v).connected));
    s.server.revoke("b", now() + 60);
    s.server.revoke("c", now() + 60);
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.server.restart().await;
    for sid in ["b", "c"] {
        assert!(eventually!(
            SECOND * 5,
            is_revoked(&v, &s.token(Some(sid))).await
        ));
    }
    ready(&v).await;

    // The server drops the connection; the next revocation still arrives.
    s.server.drop_connections();
    s.server.revoke("d", now() + 60);
    assert!(eventually!(
        SECOND * 5,
        is_revoked(&v, &s.token(Some("d"))).await
    ));
    for sid in ["a", "b", "c"] {
        assert!(is_revoked(&v, &s.token(Some(sid))).await, "{sid}");
    }

    let state = s.server.state();
    let ids: Vec<_> = state.last_event_ids.iter().map(Option::as_deref).collect();
    assert_eq!(ids.first(), Some(&None));
    assert!(ids.contains(&Some("1")), "{ids:?}");
    assert_eq!(ids.last(), Some(&Some("3")), "{ids:?}");
    assert_eq!(state.snapshots, 1, "resumed, never a whole snapshot again");
    drop(state);
    let st = status(&v);
    assert!(st.reconnects >= 2, "{st:?}");
    assert_eq!(st.last_event_id.as_deref(), Some("4"));
    assert_eq!(st.revoked_sessions, 4);
}

#[tokio::test]
async fn an_outage_longer_than_max_silence_refuses_all_with_refuse_all() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND);
    ready(&v).await;
    let token = s.token(Some("s"));
    v.verify(&token).await.unwrap();

    s.server.stop().await;
    // Within max_silence: still trusted.
    v.verify(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    match v.verify(&token).await {
        Err(Error::FeedUnavailable(why)) => assert!(why.contains("silent"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        v.verify(&s.token(None)).await,
        Err(Error::FeedUnavailable(_))
    ));
    let st = status(&v);
    assert!(st.outage && !st.connected, "{st:?}");
    assert!(st.staleness.unwrap() > SECOND);

    s.server.restart().await;
    assert!(eventually!(SECOND * 10, v.verify(&token).await.is_ok()));
    let st = status(&v);
    assert!(!st.outage && st.ready, "{st:?}");
    assert_eq!(st.outages, 1);
}

#[tokio::test]
async fn an_outage_keeps_accepting_with_keep_accepting() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::KeepAccepting, SECOND);
    ready(&v).await;
    s.server.revoke("s-revoked", now() + 60);
    let revoked = s.token(Some("s-revoked"));
    assert!(eventually!(SECOND, is_revoked(&v, &revoked).await));

    s.server.stop().await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    for _ in 0..20 {
        v.verify(&s.token(Some("s"))).await.unwrap();
    }
    // What the feed did deliver is still enforced.
    assert!(is_revoked(&v, &revoked).await);
    let st = status(&v);
    assert!(st.outage, "{st:?}");
    assert_eq!(st.outages, 1, "one outage, however many tokens");

    s.server.restart().await;
    assert!(eventually!(SECOND * 10, !status(&v).outage));
    assert_eq!(status(&v).outages, 1);
}

#[tokio::test]
async fn heartbeats_keep_the_feed_fresh() {
    let s = Setup::new().await;
    // The stream outlives the fetch timeout, which bounds only its start.
    let v = s
        .server
        .builder(FeedOutagePolicy::RefuseAll, SECOND)
        .fetch_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    ready(&v).await;
    // No event for 2.5 max_silence: only comments every 200 ms.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let st = status(&v);
    assert!(st.staleness.unwrap() < Duration::from_millis(600), "{st:?}");
    assert!(!st.outage && st.ready);
    assert_eq!(st.reconnects, 0);
    v.verify(&s.token(Some("s"))).await.unwrap();
}

#[tokio::test]
async fn a_silent_connection_is_an_outage_and_is_made_again() {
    let s = Setup::new().await;
    s.server.set_mode(FeedMode::SilentAfterReady);
    let v = s.verifier(FeedOutagePolicy::RefuseAll, Duration::from_millis(800));
    ready(&v).await;
    // Connections from now on fail: the silent one is all there is.
    s.server
        .set_mode(FeedMode::Status(StatusCode::SERVICE_UNAVAILABLE));
    assert!(eventually!(SECOND * 2, !status(&v).connected));
    let error = status(&v).last_error.unwrap();
    assert!(error.contains("feed_max_silence"), "{error}");
    // The server sees the connection go when it next polls it.
    assert!(
        eventually!(SECOND * 2, s.server.state().open_streams == 0),
        "the silent one given up"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(matches!(
        v.verify(&s.token(Some("s"))).await,
        Err(Error::FeedUnavailable(_))
    ));
    assert!(status(&v).reconnects >= 1);
    s.server.set_mode(FeedMode::Normal);
    assert!(eventually!(
        SECOND * 5,
        v.verify(&s.token(Some("s"))).await.is_ok()
    ));
}

#[tokio::test]
async fn the_revoked_set_stays_bounded_by_until() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND * 30);
    ready(&v).await;
    // 100,000 revocations over 4 s, each held for a second or two.
    let mut peak = 0;
    for batch in 0..10 {
        let sids = (0..10_000).map(|i| format!("s-{batch}-{i}"));
        s.server.revoke_many(sids, now() + 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        peak = peak.max(status(&v).revoked_sessions);
    }
    assert!(peak >= 10_000, "{peak}");
    assert!(
        peak <= 60_000,
        "held at most what two seconds revoked: {peak}"
    );
    assert!(eventually!(SECOND * 4, status(&v).revoked_sessions == 0));
    let st = status(&v);
    assert!(!st.outage && !st.overflowed && st.ready, "{st:?}");
    assert_eq!(st.last_event_id.as_deref(), Some("100000"));
}

#[tokio::test]
async fn an_overflow_is_an_outage_until_the_dropped_revocations_expire() {
    let s = Setup::new().await;
    let v = s
        .server
        .builder(FeedOutagePolicy::RefuseAll, SECOND * 30)
        .feed_max_revoked_sessions(100)
        .build()
        .unwrap();
    ready(&v).await;
    s.server.revoke("s-kept", now() + 60);
    let until = now() + 2;
    s.server
        .revoke_many((0..150).map(|i| format!("s-{i}")), until);
    assert!(eventually!(SECOND, status(&v).overflowed));
    let st = status(&v);
    assert_eq!(st.revoked_sessions, 100);
    assert!(st.outage && st.ready, "{st:?}");
    // A dropped revocation's session cannot be told apart: nothing passes.
    assert!(matches!(
        v.verify(&s.token(Some("s-149"))).await,
        Err(Error::FeedUnavailable(_))
    ));
    assert!(matches!(
        v.verify(&s.token(Some("s-other"))).await,
        Err(Error::FeedUnavailable(_))
    ));
    // Once every dropped one has expired, the set is whole again.
    assert!(eventually!(
        SECOND * 4,
        v.verify(&s.token(Some("s-other"))).await.is_ok()
    ));
    assert!(now() >= until);
    assert!(!status(&v).overflowed);
    assert!(is_revoked(&v, &s.token(Some("s-kept"))).await);
}

#[tokio::test]
async fn unknown_events_and_members_are_ignored() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND * 30);
    ready(&v).await;
    s.server
        .push_raw("event: session_renamed\ndata: {\"sid\":\"s-renamed\"}");
    s.server.push_raw("data: a message with no event name");
    s.server.push_raw(": a comment\nfoo: an unknown field");
    let until = now() + 60;
    s.server.push_raw(&format!(
        "event: revoked\ndata: {{\"sid\":\"s-extra\",\"until\":{until},\"reason\":\"logout\"}}"
    ));
    s.server.revoke("s-after", until);
    assert!(eventually!(
        SECOND,
        is_revoked(&v, &s.token(Some("s-after"))).await
    ));
    assert!(is_revoked(&v, &s.token(Some("s-extra"))).await);
    v.verify(&s.token(Some("s-renamed"))).await.unwrap();
    let st = status(&v);
    assert_eq!((st.reconnects, st.last_error), (0, None));
    assert_eq!(st.last_event_id.as_deref(), Some("5"));
}

#[tokio::test]
async fn a_purged_key_is_refused_until_the_key_set_drops_it() {
    let k1 = TestKey::ed25519("k1");
    let k2 = TestKey::es256("k2");
    let server = FeedServer::start(&[&k1, &k2]).await;
    let v = server
        .builder(FeedOutagePolicy::RefuseAll, SECOND * 30)
        .min_refetch_interval(Duration::ZERO)
        .build()
        .unwrap();
    ready(&v).await;
    let t1 = k1.token(&server.url, json!({}));
    let t2 = k2.token(&server.url, json!({}));
    v.verify(&t1).await.unwrap();
    v.verify(&t2).await.unwrap();

    server.purge("k1");
    assert!(eventually!(
        SECOND,
        matches!(v.verify(&t1).await, Err(Error::PurgedKey(_)))
    ));
    let r = Rejection::from(v.verify(&t1).await.unwrap_err());
    assert_eq!(
        (r.status(), r.code()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert_eq!(v.cached_kids(), ["k2"]);
    v.verify(&t2).await.unwrap();
    // The key set still lists it: a refetch does not bring it back.
    v.refresh_keys().await.unwrap();
    assert_eq!(v.cached_kids(), ["k2"]);
    assert!(matches!(v.verify(&t1).await, Err(Error::PurgedKey(_))));
    assert_eq!(status(&v).purged_keys, 1);

    // Once the key set drops it, the purge is forgotten: it is unknown.
    server.set_keys(&[&k2]);
    v.refresh_keys().await.unwrap();
    assert_eq!(status(&v).purged_keys, 0);
    assert!(matches!(v.verify(&t1).await, Err(Error::UnknownKey(_))));
}

#[tokio::test]
async fn protocol_errors_reconnect_without_skipping_the_event() {
    let s = Setup::new().await;
    // A first line over 64 KiB, on the first connection only.
    s.server.state().prelude = Some(format!(": {}\n", "x".repeat(70_000)));
    let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND * 30);
    ready(&v).await;
    let st = status(&v);
    assert!(st.last_error.unwrap().contains("longer than 65536"));
    assert_eq!(st.reconnects, 1);

    // A revocation the client cannot read is not skipped: it is asked for
    // again, and the feed never counts as in sync past it.
    s.server.revoke("s-before", now() + 60);
    s.server
        .push_raw("event: revoked\ndata: {\"sid\":\"s-bad\",\"until\":\"soon\"}");
    s.server.revoke("s-after", now() + 60);
    assert!(eventually!(
        SECOND * 3,
        status(&v)
            .last_error
            .is_some_and(|e| e.contains("malformed revoked event"))
    ));
    assert!(is_revoked(&v, &s.token(Some("s-before"))).await);
    assert_eq!(status(&v).last_event_id.as_deref(), Some("1"));
    let ids = s.server.state().last_event_ids.clone();
    assert!(eventually!(
        SECOND * 3,
        s.server.state().last_event_ids.len() > ids.len()
    ));
    assert_eq!(
        s.server.state().last_event_ids.last().unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(
        status(&v).revoked_sessions,
        1,
        "s-after not applied past s-bad"
    );
}

#[tokio::test]
async fn any_line_ending_and_byte_sized_chunks_over_http() {
    for ending in ["\r", "\r\n", "\n"] {
        let s = Setup::new().await;
        {
            let mut st = s.server.state();
            st.line_ending = ending;
            st.bytewise = true;
        }
        s.server.revoke("s-1", now() + 60);
        s.server.revoke("s-2", now() + 60);
        let v = s.verifier(FeedOutagePolicy::RefuseAll, SECOND * 30);
        ready(&v).await;
        assert_eq!(status(&v).revoked_sessions, 2, "{ending:?}");
        s.server.revoke("s-3", now() + 60);
        assert!(eventually!(
            SECOND,
            is_revoked(&v, &s.token(Some("s-3"))).await
        ));
        for sid in ["s-1", "s-2"] {
            assert!(is_revoked(&v, &s.token(Some(sid))).await);
        }
        assert_eq!(status(&v).last_error, None);
    }
}

#[tokio::test]
async fn the_servers_retry_is_honoured() {
    let s = Setup::new().await;
    s.server.state().retry = Some(1500);
    let v = s.verifier(FeedOutagePolicy::KeepAccepting, SECOND * 30);
    ready(&v).await;
    let dropped = Instant::now();
    s.server.drop_connections();
    assert!(eventually!(
        SECOND * 5,
        s.server.state().last_event_ids.len() == 2
    ));
    let waited = dropped.elapsed();
    // At least the server's 1.5 s, at most half again for jitter; the
    // upper bound leaves room for a loaded machine.
    assert!(waited >= Duration::from_millis(1500), "{waited:?}");
    assert!(waited < Duration::from_millis(4000), "{waited:?}");
}

#[tokio::test]
async fn the_feed_stops_with_the_last_verifier() {
    let s = Setup::new().await;
    let v = s.verifier(FeedOutagePolicy::KeepAccepting, SECOND * 30);
    ready(&v).await;
    assert_eq!(s.server.state().open_streams, 1);
    let clone = v.clone();
    drop(v);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.server.state().open_streams, 1, "a clone still uses it");
    drop(clone);
    assert!(eventually!(SECOND * 2, s.server.state().open_streams == 0));
    let connections = s.server.state().last_event_ids.len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.server.state().last_event_ids.len(),
        connections,
        "no reconnection"
    );
}

#[tokio::test]
async fn without_a_runtime_at_build_the_feed_starts_on_first_use() {
    let s = Setup::new().await;
    let builder = s
        .server
        .builder(FeedOutagePolicy::KeepAccepting, SECOND * 30);
    let v = std::thread::spawn(move || builder.build().unwrap())
        .join()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.server.state().last_event_ids.is_empty(), "not started");
    // KeepAccepting: the first token passes, the feed starts.
    v.verify(&s.token(Some("s"))).await.unwrap();
    ready(&v).await;
    assert_eq!(s.server.state().last_event_ids.len(), 1);
}
