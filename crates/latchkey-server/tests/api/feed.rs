//! The revocation feed (docs/reference.md §9): its wire format, and one
//! event per session for every way a session dies.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const SOON: Duration = Duration::from_secs(2);

impl TestApp {
    async fn feed_client(&self) -> String {
        self.service
            .add_client("api", false, "")
            .await
            .unwrap()
            .secret
            .unwrap()
    }
}

/// The `revoked` sids among events.
fn sids(events: &[(String, Option<String>, Value)]) -> Vec<String> {
    events
        .iter()
        .filter(|(name, _, _)| name == "revoked")
        .map(|(_, _, data)| data["sid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn only_confidential_clients_subscribe() {
    let app = TestApp::spawn().await;
    let r = app.get("/oauth2/revocations").send().await.unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = app
        .get("/oauth2/revocations")
        .basic_auth("api", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    app.service.add_client("spa", true, "").await.unwrap();
    let r = app
        .post("/oauth2/revocations")
        .form(&[("client_id", "spa")])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    // client_secret_post, by POST.
    let secret = app.feed_client().await;
    let r = app
        .post("/oauth2/revocations")
        .form(&[("client_id", "api"), ("client_secret", secret.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let doc: Value = app
        .get("/.well-known/oauth-authorization-server")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["revocation_feed_endpoint"],
        format!("{}/oauth2/revocations", app.url)
    );
}

#[tokio::test]
async fn snapshot_then_ready_then_live_events_and_resume() {
    let app = TestApp::spawn().await;
    let secret = app.feed_client().await;
    let client = ("api", secret.as_str());
    let first = app.user_and_login("alice").await;
    let second = app.login("alice").await;
    app.logout(&first.access).await;

    let mut feed = FeedReader::open(&app.url, client, None).await;
    let snapshot = feed.until_ready().await;
    assert_eq!(sids(&snapshot), [first.session_id.as_str()]);
    let (_, id, data) = &snapshot[0];
    // until: the revocation, plus the access-token lifetime, plus a minute.
    let expected_until = app.service.now().unix_timestamp() + 15 * 60 + 60;
    assert!(
        (data["until"].as_i64().unwrap() - expected_until).abs() <= 1,
        "{data}"
    );
    let first_cursor = id.clone().unwrap();

    app.logout(&second.access).await;
    let (name, id, data) = feed.event(SOON).await.expect("a live event");
    assert_eq!(name, "revoked");
    assert_eq!(data["sid"], second.session_id.as_str());
    let second_cursor = id.unwrap();
    assert_ne!(first_cursor, second_cursor);

    // Resuming after the first: the second, then ready.
    let mut resumed = FeedReader::open(&app.url, client, Some(&first_cursor)).await;
    assert_eq!(
        sids(&resumed.until_ready().await),
        [second.session_id.as_str()]
    );
    // After the last: nothing but ready.
    let mut caught_up = FeedReader::open(&app.url, client, Some(&second_cursor)).await;
    assert!(caught_up.until_ready().await.is_empty());
    // A cursor this server never gave, or garbage: the whole snapshot.
    for unknown in ["999999999", "not-a-cursor"] {
        let mut fresh = FeedReader::open(&app.url, client, Some(unknown)).await;
        assert_eq!(
            sids(&fresh.until_ready().await),
            [first.session_id.as_str(), second.session_id.as_str()]
        );
    }

    // Past `until`, a revocation leaves the snapshot.
    app.advance(Duration::from_secs(16 * 60 + 1));
    let mut later = FeedReader::open(&app.url, client, None).await;
    assert!(later.until_ready().await.is_empty());
}

#[tokio::test]
async fn a_comment_at_least_every_fifteen_seconds() {
    let app = TestApp::spawn().await;
    let secret = app.feed_client().await;
    let mut feed = FeedReader::open(&app.url, ("api", &secret), None).await;
    feed.until_ready().await;
    let frame = feed.frame(Duration::from_secs(15)).await;
    assert!(matches!(frame, Some(Frame::Comment(_))), "{frame:?}");
}

#[tokio::test]
async fn every_way_a_session_dies_is_one_event() {
    let app = TestApp::spawn().await;
    let secret = app.feed_client().await;
    let client = ("api", secret.as_str());
    let mut feed = FeedReader::open(&app.url, client, None).await;
    assert!(feed.until_ready().await.is_empty());
    let expect = |feed_sids: Vec<String>, want: Vec<&str>, what: &str| {
        let mut got = feed_sids;
        got.sort();
        let mut want: Vec<String> = want.into_iter().map(str::to_owned).collect();
        want.sort();
        assert_eq!(got, want, "{what}");
    };
    // Reads events until `n` came, then checks nothing more follows soon.
    async fn take(feed: &mut FeedReader, n: usize) -> Vec<String> {
        let mut got = Vec::new();
        while got.len() < n {
            let e = feed.event(SOON).await.expect("an event");
            got.extend(sids(&[e]));
        }
        assert!(
            feed.event(Duration::from_millis(600)).await.is_none(),
            "one event per session"
        );
        got
    }

    // Logout.
    let a = app.user_and_login("alice").await;
    app.logout(&a.access).await;
    expect(
        take(&mut feed, 1).await,
        vec![a.session_id.as_str()],
        "logout",
    );

    // Logout everywhere: every other session of the user, and the caller's.
    let b1 = app.login("alice").await;
    let b2 = app.login("alice").await;
    let r = app
        .post("/v1/auth/logout-all")
        .bearer_auth(&b1.access)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    expect(
        take(&mut feed, 2).await,
        vec![b1.session_id.as_str(), b2.session_id.as_str()],
        "logout-all",
    );

    // RFC 7009 revocation by the client that holds the token.
    let c: Value = app
        .post("/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .basic_auth("api", Some(&secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = app
        .post("/oauth2/revoke")
        .form(&[("token", c["refresh_token"].as_str().unwrap())])
        .basic_auth("api", Some(&secret))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let got = take(&mut feed, 1).await;
    assert_eq!(got.len(), 1, "oauth2/revoke");

    // Reuse of a spent refresh token, after the grace window.
    let d = app.login("alice").await;
    app.refresh(&d.refresh).await;
    app.advance(Duration::from_secs(11));
    let r = app.refresh_raw(&d.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    expect(
        take(&mut feed, 1).await,
        vec![d.session_id.as_str()],
        "reuse",
    );

    // A password change: every other session of the user.
    let e1 = app.login("alice").await;
    let e2 = app.login("alice").await;
    let r = app
        .post("/v1/me/password")
        .bearer_auth(&e1.access)
        .json(&json!({ "current_password": PASSWORD, "new_password": "another password 1" }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    expect(
        take(&mut feed, 1).await,
        vec![e2.session_id.as_str()],
        "password change",
    );

    // The operator: one session, all of a user's, a disabled user.
    app.register("bob", PASSWORD).await;
    let f1 = app.login("bob").await;
    let f2 = app.login("bob").await;
    let f3 = app.login("bob").await;
    app.service.revoke_session(&f1.session_id).await.unwrap();
    expect(
        take(&mut feed, 1).await,
        vec![f1.session_id.as_str()],
        "session revoke",
    );
    app.service.revoke_user_sessions("bob").await.unwrap();
    expect(
        take(&mut feed, 2).await,
        vec![f2.session_id.as_str(), f3.session_id.as_str()],
        "session revoke-all",
    );
    let g = app.login("bob").await;
    app.service.set_user_disabled("bob", true).await.unwrap();
    expect(
        take(&mut feed, 1).await,
        vec![g.session_id.as_str()],
        "user disable",
    );

    // A purged key.
    let old = app.service.list_keys().await.unwrap()[0].kid.clone();
    app.service.rotate_key(true).await.unwrap();
    app.service.retire_key(&old, true).await.unwrap();
    let (name, _, data) = feed.event(SOON).await.expect("key_purged");
    assert_eq!(
        (name.as_str(), &data),
        ("key_purged", &json!({ "kid": old }))
    );

    // Expiry is no revocation: nothing on the feed.
    app.register("carol", PASSWORD).await;
    let h = app.login("carol").await;
    app.advance(Duration::from_secs(8 * 24 * 3600));
    let r = app.refresh_raw(&h.refresh).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert!(feed.event(Duration::from_millis(600)).await.is_none());
}

#[tokio::test]
async fn revocations_are_pruned_after_their_window() {
    let app = TestApp::spawn().await;
    let a = app.user_and_login("alice").await;
    app.logout(&a.access).await;
    let store = app.service.store().clone();
    let all = || {
        let store = store.clone();
        async move {
            store
                .revocations_after(0, time::OffsetDateTime::UNIX_EPOCH, 100)
                .await
                .unwrap()
                .len()
        }
    };
    assert_eq!(all().await, 1);
    app.service.prune().await.unwrap();
    assert_eq!(all().await, 1, "kept while a token could still pass");
    app.advance(Duration::from_secs(15 * 60 + 121));
    assert_eq!(app.service.prune().await.unwrap().revocations, 1);
    assert_eq!(all().await, 0);
}

#[tokio::test]
async fn open_streams_are_counted_in_the_metrics() {
    let app = TestApp::spawn().await;
    let secret = app.feed_client().await;
    let subscribers = || async {
        let text = app
            .get("/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("latchkey_revocation_feed_subscribers "))
            .map(|v| v.trim().to_owned())
    };
    assert_eq!(subscribers().await.as_deref(), Some("0"));
    let mut feed = FeedReader::open(&app.url, ("api", &secret), None).await;
    feed.until_ready().await;
    assert_eq!(subscribers().await.as_deref(), Some("1"));
    drop(feed);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    // The server notices a gone subscriber at its next write (the heartbeat).
    while subscribers().await.as_deref() != Some("0") {
        assert!(std::time::Instant::now() < deadline, "still counted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A `latchkey-verify` verifier of `issuer` subscribed to its feed as `api`.
pub fn subscribed_verifier(
    issuer: &str,
    feed_base: &str,
    secret: &str,
) -> latchkey_verify::Verifier {
    latchkey_verify::Verifier::builder()
        .issuer(issuer)
        .audience(issuer)
        .jwks_url(format!("{feed_base}/.well-known/jwks.json"))
        .revocation_feed("api", secret)
        .revocation_feed_url(format!("{feed_base}/oauth2/revocations"))
        .build()
        .unwrap()
}

pub async fn is_revoked(verifier: &latchkey_verify::Verifier, token: &str) -> bool {
    matches!(
        verifier.verify(token).await,
        Err(latchkey_verify::Error::RevokedSession)
    )
}

#[tokio::test]
async fn a_verifier_catches_up_from_its_cursor_after_latchkey_restarts() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let issuer = format!("http://{listen}");
    let settings = [("listen", listen.as_str()), ("issuer", issuer.as_str())];
    let app = TestApp::spawn_with(&settings).await;
    let secret = app.feed_client().await;
    let verifier = subscribed_verifier(&issuer, &issuer, &secret);
    let a = app.user_and_login("alice").await;
    let b = app.login("alice").await;
    let c = app.login("alice").await;
    tokio::time::timeout(Duration::from_secs(5), verifier.feed_ready())
        .await
        .expect("in sync");
    for pair in [&a, &b, &c] {
        verifier.verify(&pair.access).await.unwrap();
    }

    // Live: a logout is refused by the verifier within a second.
    app.logout(&a.access).await;
    let started = std::time::Instant::now();
    while !is_revoked(&verifier, &a.access).await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "refused within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // latchkey stops; the command line revokes b meanwhile.
    let database_url = app.database_url.clone();
    let dir = app.stop().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["session", "revoke", b.session_id.as_str(), "--database-url"])
        .arg(&database_url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Within the feed's silence bound the verifier keeps what it knew.
    assert!(is_revoked(&verifier, &a.access).await);
    verifier.verify(&c.access).await.unwrap();

    // Back: the verifier reconnects with its cursor and hears of b.
    let app = TestApp::spawn_in(dir, &settings).await;
    let back = std::time::Instant::now();
    while !is_revoked(&verifier, &b.access).await {
        assert!(
            back.elapsed() < Duration::from_secs(15),
            "b's revocation reached the verifier after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(is_revoked(&verifier, &a.access).await, "a is not forgotten");
    verifier.verify(&c.access).await.unwrap();
    let status = verifier.feed_status().unwrap();
    assert!(status.reconnects >= 1, "{status:?}");
    drop(app);
}
