//! Rotation, the grace window, reuse detection and expiry.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

async fn assert_refresh_refused(app: &TestApp, token: &str) {
    let r = app.refresh_raw(token).await;
    let cookies = set_cookies(r.headers());
    assert_eq!(
        cookies["refreshToken"].attrs["max-age"], "0",
        "a failed refresh clears the cookies"
    );
    assert_eq!(cookies["accessToken"].attrs["max-age"], "0");
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn each_refresh_answers_a_new_pair_and_keeps_the_session() {
    let app = TestApp::spawn().await;
    let first = app.user_and_login("alice").await;
    let second = app.refresh(&first.refresh).await;
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(second.body["user"]["username"], "alice");
    assert!(second.body.get("refresh_token").is_none());
    let third = app.refresh(&second.refresh).await;
    assert_eq!(app.me(&third.access).await.status(), StatusCode::OK);
    assert!(app.audit_events().await.contains(&"refreshed".to_owned()));
}

#[tokio::test]
async fn the_previous_token_inside_the_grace_window_gets_the_same_successor() {
    let app = TestApp::spawn().await;
    let first = app.user_and_login("alice").await;
    let second = app.refresh(&first.refresh).await;
    app.advance(Duration::from_secs(9));
    let again = app.refresh(&first.refresh).await;
    assert_eq!(
        again.refresh, second.refresh,
        "idempotent: the same successor"
    );
    assert_eq!(
        app.me(&again.access).await.status(),
        StatusCode::OK,
        "with a fresh access token"
    );
    // The session is alive and the successor still works.
    let third = app.refresh(&second.refresh).await;
    assert_eq!(app.me(&third.access).await.status(), StatusCode::OK);
    assert!(app
        .audit_events()
        .await
        .contains(&"refresh_retried".to_owned()));
}

#[tokio::test]
async fn the_previous_token_after_the_window_revokes_the_session() {
    let app = TestApp::spawn().await;
    let first = app.user_and_login("alice").await;
    let second = app.refresh(&first.refresh).await;
    app.advance(Duration::from_secs(11));
    assert_refresh_refused(&app, &first.refresh).await;
    // The whole session died: the current token and access token too.
    assert_refresh_refused(&app, &second.refresh).await;
    assert_error(
        app.me(&second.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(app
        .audit_events()
        .await
        .contains(&"reuse_detected_late_retry".to_owned()));
}

#[tokio::test]
async fn an_older_token_revokes_the_session_at_any_time() {
    let app = TestApp::spawn().await;
    let first = app.user_and_login("alice").await;
    let second = app.refresh(&first.refresh).await;
    let third = app.refresh(&second.refresh).await;
    // Within the grace window of the last rotation, but two generations back.
    assert_refresh_refused(&app, &first.refresh).await;
    assert_refresh_refused(&app, &third.refresh).await;
    assert!(app
        .audit_events()
        .await
        .contains(&"reuse_detected_stale_copy".to_owned()));
}

#[tokio::test]
async fn zero_grace_disables_the_window() {
    let app = TestApp::spawn_with(&[("refresh_reuse_grace", "0")]).await;
    let first = app.user_and_login("alice").await;
    let second = app.refresh(&first.refresh).await;
    assert_refresh_refused(&app, &first.refresh).await;
    assert_refresh_refused(&app, &second.refresh).await;
}

#[tokio::test]
async fn a_forged_token_is_only_invalid_and_never_counts_as_reuse() {
    let app = TestApp::spawn().await;
    let first = app.user_and_login("alice").await;
    // Right session id, previous generation, wrong MAC.
    let mut parts: Vec<String> = first.refresh.split('.').map(str::to_owned).collect();
    let mac = parts[3].clone();
    parts[3] = format!(
        "{}{}",
        if mac.starts_with('A') { "B" } else { "A" },
        &mac[1..]
    );
    assert_refresh_refused(&app, &parts.join(".")).await;
    for garbage in ["x", "lk1.a.b.c", "lk1.a.1.AAAA", &"x".repeat(4000)] {
        assert_refresh_refused(&app, garbage).await;
    }
    // The genuine token still works: nothing was revoked.
    app.refresh(&first.refresh).await;
    let events = app.audit_events().await;
    assert!(
        !events.iter().any(|e| e.starts_with("reuse_detected")),
        "{events:?}"
    );
}

#[tokio::test]
async fn sixteen_concurrent_refreshes_share_one_successor() {
    let app = TestApp::spawn().await;
    let first = app.user_and_login("alice").await;
    let answers = futures::future::join_all((0..16).map(|_| app.refresh_raw(&first.refresh))).await;
    let mut successors = std::collections::HashSet::new();
    for r in answers {
        assert_eq!(r.status(), StatusCode::OK);
        successors.insert(pair_of(r).await.refresh);
    }
    assert_eq!(successors.len(), 1, "one successor");
    let successor = successors.into_iter().next().unwrap();
    // The session is alive and moved exactly one generation.
    let session = app
        .service
        .store()
        .session(&first.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.generation, 1);
    assert!(session.revoked_at.is_none());
    app.refresh(&successor).await;
}

#[tokio::test]
async fn idle_sessions_expire_after_refresh_ttl() {
    let app = TestApp::spawn_with(&[("refresh_ttl", "1h"), ("access_ttl", "5m")]).await;
    let first = app.user_and_login("alice").await;
    app.advance(Duration::from_secs(3599));
    let second = app.refresh(&first.refresh).await;
    // Use moved the idle deadline.
    app.advance(Duration::from_secs(3599));
    let third = app.refresh(&second.refresh).await;
    app.advance(Duration::from_secs(3600));
    assert_refresh_refused(&app, &third.refresh).await;
}

#[tokio::test]
async fn sessions_end_at_session_max_age_whatever_the_use() {
    let app = TestApp::spawn_with(&[("refresh_ttl", "1h"), ("session_max_age", "2h")]).await;
    let mut pair = app.user_and_login("alice").await;
    let mut max_ages = Vec::new();
    for _ in 0..3 {
        app.advance(Duration::from_secs(1800));
        let r = app.refresh_raw(&pair.refresh).await;
        max_ages.push(set_cookies(r.headers())["refreshToken"].attrs["max-age"].clone());
        pair = pair_of(r).await;
    }
    // The cookie lives only as long as the session can.
    assert_eq!(max_ages, ["3600", "3600", "1800"]);
    app.advance(Duration::from_secs(1799));
    let r = app.refresh_raw(&pair.refresh).await;
    assert_eq!(
        set_cookies(r.headers())["refreshToken"].attrs["max-age"],
        "1"
    );
    let last = pair_of(r).await;
    app.advance(Duration::from_secs(1));
    assert_refresh_refused(&app, &last.refresh).await;
}

#[tokio::test]
async fn access_tokens_expire_with_the_injected_clock() {
    let app = TestApp::spawn_with(&[("access_ttl", "60s")]).await;
    let pair = app.user_and_login("alice").await;
    app.advance(Duration::from_secs(59));
    assert_eq!(app.me(&pair.access).await.status(), StatusCode::OK);
    app.advance(Duration::from_secs(1));
    let r = app.me(&pair.access).await;
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let fresh = app.refresh(&pair.refresh).await;
    assert_eq!(app.me(&fresh.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn refresh_without_a_cookie_or_after_logout_is_refused() {
    let app = TestApp::spawn().await;
    // No refresh cookie (or an empty one): nothing of ours to clear, so
    // nothing is cleared; a page that posts here cannot log anyone out.
    for cookie in [None, Some("refreshToken=")] {
        let mut request = app.post("/v1/auth/refresh").header("origin", &app.url);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        let r = request.send().await.unwrap();
        assert!(set_cookies(r.headers()).is_empty(), "{cookie:?}");
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    let pair = app.user_and_login("alice").await;
    app.post("/v1/auth/logout")
        .bearer_auth(&pair.access)
        .send()
        .await
        .unwrap();
    assert_refresh_refused(&app, &pair.refresh).await;
}

#[tokio::test]
async fn refresh_ignores_the_request_content_type_and_body() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    let r = app
        .post("/v1/auth/refresh")
        .header("cookie", format!("refreshToken={}", pair.refresh))
        .header("origin", &app.url)
        .header("content-type", "text/plain")
        .body("whatever")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // It carries tokens: never cached.
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
}

/// A refresh of a session whose facts the server keeps in memory is decided
/// by the store's swap alone: every way a session dies still refuses it.
#[tokio::test]
async fn a_dead_session_is_refused_though_its_facts_are_cached() {
    let app = TestApp::spawn_with(&[("refresh_ttl", "1h"), ("session_max_age", "1d")]).await;
    // Each case: a fresh session, refreshed once (its facts now cached),
    // then killed; its current token must be refused.
    let fresh = |name: &'static str| {
        let app = &app;
        async move {
            let pair = app.user_and_login(name).await;
            app.refresh(&pair.refresh).await
        }
    };
    let logged_out = fresh("alice").await;
    app.post("/v1/auth/logout")
        .bearer_auth(&logged_out.access)
        .send()
        .await
        .unwrap();
    assert_refresh_refused(&app, &logged_out.refresh).await;

    let by_operator = fresh("bob").await;
    app.service
        .revoke_session(&by_operator.session_id)
        .await
        .unwrap();
    assert_refresh_refused(&app, &by_operator.refresh).await;

    let disabled = fresh("carol").await;
    app.service.set_user_disabled("carol", true).await.unwrap();
    assert_refresh_refused(&app, &disabled.refresh).await;

    let other_device = fresh("dave").await;
    let changer = app.login("dave").await;
    let r = app
        .post("/v1/me/password")
        .bearer_auth(&changer.access)
        .json(&serde_json::json!({
            "current_password": PASSWORD, "new_password": "a brand new password"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_refresh_refused(&app, &other_device.refresh).await;

    let idle = fresh("erin").await;
    app.advance(Duration::from_secs(3600));
    assert_refresh_refused(&app, &idle.refresh).await;

    // Kept alive by refreshes, it still ends at session_max_age.
    let mut kept = app.user_and_login("frank").await;
    for _ in 0..24 {
        app.advance(Duration::from_secs(3599));
        kept = app.refresh(&kept.refresh).await;
    }
    // Past the absolute expiry, well inside the idle one.
    app.advance(Duration::from_secs(3000));
    assert_refresh_refused(&app, &kept.refresh).await;
    let events = app.audit_events().await;
    assert!(
        !events.iter().any(|e| e.starts_with("reuse_detected")),
        "{events:?}"
    );
}
