//! `/v1/me`, password change and the list of one's devices.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn me_takes_the_header_or_the_cookie_and_the_header_wins() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let bob = app.user_and_login("bob").await;
    let r = app.me(&alice.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["username"], "alice");
    // The user, the account's address (API.md §11) and second factors
    // (§10): none yet.
    assert_eq!(body.as_object().unwrap().len(), 6, "{body}");
    assert_eq!(body["email"], Value::Null);
    assert_eq!(body["email_verified"], false);
    assert_eq!(
        body["mfa"],
        serde_json::json!({ "totp": false, "passkeys": 0 })
    );
    let by_cookie: Value = app
        .get("/v1/me")
        .header("cookie", format!("accessToken={}", bob.access))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_cookie["username"], "bob");
    let both: Value = app
        .get("/v1/me")
        .bearer_auth(&alice.access)
        .header("cookie", format!("accessToken={}", bob.access))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(both["username"], "alice");
}

#[tokio::test]
async fn missing_and_bad_tokens_get_the_rfc_6750_challenges() {
    let app = TestApp::spawn().await;
    let r = app.get("/v1/me").send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    for bad in [
        "x",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &"A".repeat(10_000),
    ] {
        let r = app.me(bad).await;
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // A refresh token is not an access token.
    let pair = app.user_and_login("alice").await;
    assert_error(
        app.me(&pair.refresh).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn password_change_revokes_every_other_session() {
    let app = TestApp::spawn().await;
    let here = app.user_and_login("alice").await;
    let there = app.login("alice").await;
    let change = |current: &str, new: &str| {
        app.post("/v1/me/password")
            .bearer_auth(&here.access)
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
    };
    assert_error(
        change("wrong password", "new password 1").await.unwrap(),
        StatusCode::FORBIDDEN,
        "invalid_credentials",
    )
    .await;
    assert_error(
        change(PASSWORD, "short").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        change(PASSWORD, "new password 1").await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.me(&here.access).await.status(),
        StatusCode::OK,
        "this session stays"
    );
    app.refresh(&here.refresh).await;
    assert_error(
        app.me(&there.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert_error(
        app.login_raw("alice", PASSWORD).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.login_raw("alice", "new password 1").await.status(),
        StatusCode::OK
    );
    let events = app.audit_events().await;
    assert!(
        events.contains(&"password_changed".to_owned())
            && events.contains(&"password_change_failed".to_owned())
    );
}

#[tokio::test]
async fn wrong_current_passwords_count_toward_the_login_limit() {
    let app = TestApp::spawn_with(&[("login_max_failures", "2")]).await;
    let pair = app.user_and_login("alice").await;
    for _ in 0..2 {
        let r = app
            .post("/v1/me/password")
            .bearer_auth(&pair.access)
            .json(&json!({ "current_password": "nope nope", "new_password": "new password 1" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert_error(
        app.login_raw("alice", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn sessions_list_the_live_devices_with_the_current_one_marked() {
    let app = TestApp::spawn().await;
    app.register("alice", PASSWORD).await;
    let phone = app
        .post("/v1/auth/login")
        .header("user-agent", "Phone/1.0")
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let phone = pair_of(phone).await;
    // Devices are listed oldest first.
    app.advance(std::time::Duration::from_secs(1));
    let laptop = app.login("alice").await;
    let dead = app.login("alice").await;
    app.post("/v1/auth/logout")
        .bearer_auth(&dead.access)
        .send()
        .await
        .unwrap();
    let bob = app.user_and_login("bob").await;

    let body: Value = app
        .get("/v1/sessions")
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = body["sessions"].as_array().unwrap();
    let ids: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [phone.session_id.as_str(), laptop.session_id.as_str()]);
    let phone_row = &sessions[0];
    assert_eq!(phone_row["user_agent"], "Phone/1.0");
    assert_eq!(phone_row["ip"], "127.0.0.1");
    assert_eq!(phone_row["current"], false);
    // expires_at: the earlier of idle (7 d after last use) and absolute (30 d) expiry.
    let at = |key: &str| {
        time::OffsetDateTime::parse(
            phone_row[key].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(
        at("expires_at") - at("last_used_at"),
        time::Duration::days(7)
    );
    assert_eq!(sessions[1]["current"], true);
    for key in ["created_at", "last_used_at", "expires_at", "auth_time"] {
        assert!(phone_row[key].as_str().unwrap().ends_with('Z'));
    }
    // How it logged in, and when.
    assert_eq!(phone_row["amr"], serde_json::json!(["pwd"]));
    assert_eq!(phone_row["auth_time"], phone_row["created_at"]);
    assert_eq!(phone_row.as_object().unwrap().len(), 9);

    // Revoke one's own other device; another user's session is not found.
    let r = app
        .client
        .delete(format!("{}/v1/sessions/{}", app.url, phone.session_id))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        app.me(&phone.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let r = app
        .client
        .delete(format!("{}/v1/sessions/{}", app.url, bob.session_id))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.me(&bob.access).await.status(), StatusCode::OK);
    let r = app
        .client
        .delete(format!("{}/v1/sessions/nope", app.url))
        .bearer_auth(&laptop.access)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    assert!(app
        .audit_events()
        .await
        .contains(&"session_revoked".to_owned()));
}

#[tokio::test]
async fn a_user_added_by_the_operator_is_audited() {
    let app = TestApp::spawn().await;
    let user = app.service.add_user("olga", PASSWORD).await.unwrap();
    let rows = app.service.store().recent_audit(10).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.event == "user_added")
        .expect("a user_added row");
    assert_eq!(row.user_id.as_deref(), Some(user.id.as_str()));
    assert!(!app.audit_events().await.contains(&"registered".to_owned()));
}
