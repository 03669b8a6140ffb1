//! Register, login, logout, logout-all, and the login limit.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn register_answers_the_user_and_refuses_taken_names() {
    let app = TestApp::spawn().await;
    let r = app.register("  Zoë Example ", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let body: Value = r.json().await.unwrap();
    let user = &body["user"];
    assert_eq!(user["username"], "Zoë Example", "trimmed, case kept");
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok());
    let created = user["created_at"].as_str().unwrap();
    assert!(
        created.ends_with('Z')
            && time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
                .is_ok()
    );
    assert_eq!(body.as_object().unwrap().len(), 1);
    assert_eq!(user.as_object().unwrap().len(), 3);

    // Same name after NFC and lower-casing ("e" + combining diaeresis).
    for taken in ["zoë example", "ZOE\u{308} EXAMPLE", "Zoë Example"] {
        assert_error(
            app.register(taken, PASSWORD).await,
            StatusCode::CONFLICT,
            "username_taken",
        )
        .await;
    }
}

#[tokio::test]
async fn closed_registration_refuses() {
    let app = TestApp::spawn_with(&[("registration", "closed")]).await;
    assert_error(
        app.register("alice", PASSWORD).await,
        StatusCode::FORBIDDEN,
        "registration_closed",
    )
    .await;
}

#[tokio::test]
async fn login_sets_both_cookies_and_never_puts_the_refresh_token_in_the_body() {
    let app = TestApp::spawn().await;
    app.register("alice", PASSWORD).await;
    let r = app.login_raw("ALICE", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let cookies = set_cookies(r.headers());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user"]["username"], "alice");
    assert_eq!(
        body["access_token"].as_str().unwrap(),
        cookies["accessToken"].value
    );
    let text = body.to_string();
    assert!(
        !text.contains(&cookies["refreshToken"].value),
        "refresh token leaked into the body"
    );
    assert!(body.get("refresh_token").is_none());

    let access = &cookies["accessToken"].attrs;
    assert!(access.contains_key("httponly") && access.contains_key("secure"));
    assert_eq!(access["samesite"], "Lax");
    assert_eq!(access["path"], "/");
    assert_eq!(access["max-age"], "900");
    let refresh = &cookies["refreshToken"].attrs;
    assert!(refresh.contains_key("httponly") && refresh.contains_key("secure"));
    assert_eq!(refresh["samesite"], "Strict");
    assert_eq!(refresh["path"], "/v1/auth");
    assert_eq!(refresh["max-age"], (7 * 86400).to_string());
    assert!(!refresh.contains_key("domain"));
}

#[tokio::test]
async fn cookie_attributes_follow_the_settings() {
    let app = TestApp::spawn_with(&[
        ("cookie_secure", "false"),
        ("cookie_domain", "example.test"),
        ("access_cookie", "at"),
        ("refresh_cookie", "rt"),
        ("access_ttl", "5m"),
        ("refresh_ttl", "1d"),
        ("session_max_age", "2h"),
    ])
    .await;
    app.register("alice", PASSWORD).await;
    let r = app.login_raw("alice", PASSWORD).await;
    let cookies = set_cookies(r.headers());
    for name in ["at", "rt"] {
        assert!(!cookies[name].attrs.contains_key("secure"), "{name}");
        assert_eq!(cookies[name].attrs["domain"], "example.test");
    }
    assert_eq!(cookies["at"].attrs["max-age"], "300");
    assert_eq!(
        cookies["rt"].attrs["max-age"], "7200",
        "the earlier of refresh_ttl and session_max_age"
    );
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_look_the_same() {
    let app = TestApp::spawn().await;
    app.register("alice", PASSWORD).await;
    let wrong = assert_error(
        app.login_raw("alice", "wrong password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown = assert_error(
        app.login_raw("nobody", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong, unknown);
    // At login any 1..1024-byte password is checked (policy changes never lock out).
    assert_error(
        app.login_raw("alice", "short").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let events = app.audit_events().await;
    assert_eq!(events.iter().filter(|e| *e == "login_failed").count(), 3);
}

#[tokio::test]
async fn login_limit_per_username_and_address() {
    let app = TestApp::spawn_with(&[
        ("login_max_failures", "3"),
        ("login_window", "10m"),
        ("trusted_proxies", "127.0.0.1"),
    ])
    .await;
    app.register("alice", PASSWORD).await;
    let from = |ip: &'static str| {
        let app = &app;
        move |password: &'static str| {
            app.post("/v1/auth/login")
                .header("x-forwarded-for", ip)
                .json(&json!({ "username": "alice", "password": password }))
                .send()
        }
    };
    let attacker = from("203.0.113.9");
    for _ in 0..3 {
        assert_eq!(
            attacker("guess").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Over the limit: even the right password is refused until the window ends.
    let r = attacker(PASSWORD).await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another address is not affected.
    assert_eq!(
        from("198.51.100.7")(PASSWORD).await.unwrap().status(),
        StatusCode::OK
    );
    // The window opened at the first failure and lasts 10 minutes.
    app.advance(Duration::from_secs(600));
    assert_eq!(attacker(PASSWORD).await.unwrap().status(), StatusCode::OK);
    // A success cleared the count: three more failures are allowed again.
    for _ in 0..3 {
        assert_eq!(
            attacker("guess").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attacker("guess").await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(app
        .audit_events()
        .await
        .contains(&"login_rate_limited".to_owned()));
}

#[tokio::test]
async fn a_full_password_queue_answers_503_with_retry_after() {
    let app = TestApp::spawn_with(&[("password_queue", "0")]).await;
    app.register("alice", PASSWORD).await;
    let attempts = (0..24).map(|_| app.login_raw("alice", PASSWORD));
    let answers = futures::future::join_all(attempts).await;
    let mut busy = 0;
    for r in answers {
        match r.status() {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(r.headers().contains_key("retry-after"));
                assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        busy > 0,
        "24 logins at once on a queue of 0 must turn some away"
    );
}

#[tokio::test]
async fn disabled_users_cannot_log_in() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    app.service.set_user_disabled("alice", true).await.unwrap();
    assert_error(
        app.login_raw("alice", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_error(
        app.me(&pair.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_error(
        app.refresh_raw(&pair.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // Enabling brings no session back.
    app.service.set_user_disabled("alice", false).await.unwrap();
    assert_error(
        app.me(&pair.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_eq!(
        app.login_raw("alice", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_cookies() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    let other = app.login("alice").await;
    // With the refresh cookie, from the right origin.
    let r = app
        .post("/v1/auth/logout")
        .header("cookie", format!("refreshToken={}", pair.refresh))
        .header("origin", &app.url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let cleared = set_cookies(r.headers());
    for name in ["accessToken", "refreshToken"] {
        assert_eq!(cleared[name].attrs["max-age"], "0");
        assert_eq!(cleared[name].value, "");
    }
    // Refused at once by latchkey, though the access token has not expired.
    assert_error(
        app.me(&pair.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_error(
        app.refresh_raw(&pair.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // The other device is untouched.
    assert_eq!(app.me(&other.access).await.status(), StatusCode::OK);
    // With a bearer access token.
    let r = app
        .post("/v1/auth/logout")
        .bearer_auth(&other.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.me(&other.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // With nothing.
    let r = app.post("/v1/auth/logout").send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert!(app.audit_events().await.contains(&"logout".to_owned()));
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user_only() {
    let app = TestApp::spawn().await;
    let a1 = app.user_and_login("alice").await;
    let a2 = app.login("alice").await;
    let b = app.user_and_login("bob").await;
    let r = app
        .post("/v1/auth/logout-all")
        .bearer_auth(&a1.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        set_cookies(r.headers())["refreshToken"].attrs["max-age"],
        "0"
    );
    for pair in [&a1, &a2] {
        assert_error(
            app.me(&pair.access).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        assert_error(
            app.refresh_raw(&pair.refresh).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    assert_eq!(app.me(&b.access).await.status(), StatusCode::OK);
    assert!(app.audit_events().await.contains(&"logout_all".to_owned()));
}
