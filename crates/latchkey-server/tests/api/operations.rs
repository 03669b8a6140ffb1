//! What operators rely on: the prune job.

use std::time::Duration;

use crate::helpers::*;

/// Polls until `check` holds, for at most 5 s.
async fn eventually<F: std::future::Future<Output = bool>>(
    mut check: impl FnMut() -> F,
    what: &str,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_prune_job_deletes_dead_sessions_and_old_audit_rows() {
    let app = TestApp::spawn_with(&[
        ("prune_interval", "100ms"),
        ("audit_retention", "1h"),
        ("refresh_ttl", "2h"),
    ])
    .await;
    let kept = app.user_and_login("alice").await;
    let revoked = app.login("alice").await;
    app.post("/v1/auth/logout")
        .bearer_auth(&revoked.access)
        .send()
        .await
        .unwrap();
    let store = app.service.store().clone();
    let sid = revoked.session_id.clone();
    eventually(
        || {
            let store = store.clone();
            let sid = sid.clone();
            async move { store.session(&sid).await.unwrap().is_none() }
        },
        "the revoked session is deleted",
    )
    .await;
    assert!(
        store.session(&kept.session_id).await.unwrap().is_some(),
        "the live one stays"
    );
    assert!(!app.audit_events().await.is_empty());

    // Two hours on: the idle session and every audit row are past their time.
    app.advance(Duration::from_secs(2 * 3600 + 1));
    let sid = kept.session_id.clone();
    eventually(
        || {
            let store = store.clone();
            let sid = sid.clone();
            async move { store.session(&sid).await.unwrap().is_none() }
        },
        "the idle session is deleted",
    )
    .await;
    eventually(
        || {
            let store = store.clone();
            async move { store.recent_audit(10).await.unwrap().is_empty() }
        },
        "old audit rows are deleted",
    )
    .await;
    // The user is never pruned.
    assert_eq!(
        app.login_raw("alice", PASSWORD).await.status(),
        reqwest::StatusCode::OK
    );
}

#[tokio::test]
async fn prune_deletes_keys_once_no_token_they_signed_can_be_alive() {
    let app = TestApp::spawn_with(&[("access_ttl", "1m")]).await;
    let old = app.service.list_keys().await.unwrap()[0].kid.clone();
    app.advance(Duration::from_secs(1));
    let new = app.service.rotate_key(true).await.unwrap().kid;
    let pair = app.user_and_login("alice").await;
    // Within the old key's tokens' lifetime plus a verifier's leeway: kept.
    app.advance(Duration::from_secs(60 + 59));
    assert_eq!(app.service.prune().await.unwrap().keys, 0);
    assert_eq!(app.service.list_keys().await.unwrap().len(), 2);
    app.advance(Duration::from_secs(1));
    assert_eq!(app.service.prune().await.unwrap().keys, 1);
    let kids: Vec<String> = app
        .service
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, [new], "{old} is deleted");
    assert!(app.audit_events().await.contains(&"key_deleted".to_owned()));
    // The signing key was never a candidate: refresh and login still work.
    app.refresh(&pair.refresh).await;
    app.login("alice").await;
}

/// The value of the first exposition line that starts with `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_events_and_sessions() {
    let app = TestApp::spawn().await;
    let first = app.user_and_login("alice").await;
    let _other = app.login("alice").await;
    app.login_raw("alice", "wrong password").await;
    let second = app.refresh(&first.refresh).await;
    app.refresh(&second.refresh).await;
    app.refresh_raw(&first.refresh).await; // a stale copy: the session dies
    app.client
        .delete(format!("{}/v1/sessions/{}", app.url, uuid::Uuid::new_v4()))
        .bearer_auth(&_other.access)
        .send()
        .await
        .unwrap();

    let r = app.get("/metrics").send().await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("text"));
    let text = r.text().await.unwrap();
    let requests = |route: &str, method: &str, status: u16| {
        sample(&text, &format!("latchkey_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"))
    };
    assert_eq!(requests("/v1/auth/login", "POST", 200), Some(2.0), "{text}");
    assert_eq!(requests("/v1/auth/login", "POST", 401), Some(1.0));
    assert_eq!(requests("/v1/auth/refresh", "POST", 200), Some(2.0));
    assert_eq!(requests("/v1/auth/refresh", "POST", 401), Some(1.0));
    assert_eq!(
        requests("/v1/sessions/{sid}", "DELETE", 404),
        Some(1.0),
        "route patterns, not raw paths"
    );
    assert!(text.contains("latchkey_http_request_duration_seconds_bucket{"));
    let event = |name: &str| {
        sample(
            &text,
            &format!("latchkey_security_events_total{{event=\"{name}\"}}"),
        )
    };
    assert_eq!(event("login_succeeded"), Some(2.0));
    assert_eq!(event("login_failed"), Some(1.0));
    assert_eq!(event("refreshed"), Some(2.0));
    assert_eq!(event("reuse_detected_stale_copy"), Some(1.0));
    // The gauge is the last background count (none since start-up):
    // a scrape never counts.
    assert_eq!(sample(&text, "latchkey_live_sessions"), Some(0.0));
    app.service.recount_live_sessions().await.unwrap();
    let text = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(&text, "latchkey_live_sessions"),
        Some(1.0),
        "one of two sessions died"
    );
    assert_eq!(sample(&text, "latchkey_password_queue_depth"), Some(0.0));
}

#[tokio::test]
async fn openapi_covers_every_route_of_the_contract() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value = app
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    for (method, path) in [
        ("post", "/v1/auth/register"),
        ("post", "/v1/auth/login"),
        ("post", "/v1/auth/refresh"),
        ("post", "/v1/auth/logout"),
        ("post", "/v1/auth/logout-all"),
        ("get", "/v1/me"),
        ("post", "/v1/me/password"),
        ("get", "/v1/sessions"),
        ("delete", "/v1/sessions/{sid}"),
        ("post", "/v1/auth/password-reset"),
        ("post", "/v1/auth/password-reset/confirm"),
        ("put", "/v1/me/email"),
        ("post", "/v1/me/email/verify"),
        ("post", "/v1/me/totp"),
        ("post", "/v1/me/totp/confirm"),
        ("delete", "/v1/me/totp"),
        ("post", "/v1/auth/mfa"),
        ("post", "/oauth2/token"),
        ("post", "/oauth2/revoke"),
        ("post", "/oauth2/introspect"),
        ("get", "/.well-known/jwks.json"),
        ("get", "/.well-known/oauth-authorization-server"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}"
        );
    }
    // Any change to the contract shows up as a diff of this snapshot
    // (`cargo insta review`, or INSTA_UPDATE=always, to accept one).
    insta::assert_json_snapshot!("openapi", doc);
}
