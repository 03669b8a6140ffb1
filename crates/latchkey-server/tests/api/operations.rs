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
