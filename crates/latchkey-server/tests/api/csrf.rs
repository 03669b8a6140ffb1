//! The Origin/Referer rule on cookie-authenticated requests, and CORS.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn cookie_refreshes_need_an_allowed_origin_or_referer() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    let refresh = |origin: Option<(&str, String)>| {
        let mut req = app
            .post("/v1/auth/refresh")
            .header("cookie", format!("refreshToken={}", pair.refresh));
        if let Some((name, value)) = origin {
            req = req.header(name, value);
        }
        req.send()
    };
    assert_error(
        refresh(None).await.unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_rejected",
    )
    .await;
    assert_error(
        refresh(Some(("origin", "https://evil.example".into())))
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_rejected",
    )
    .await;
    assert_error(
        refresh(Some(("origin", "null".into()))).await.unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_rejected",
    )
    .await;
    assert_error(
        refresh(Some(("referer", "https://evil.example/page".into())))
            .await
            .unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_rejected",
    )
    .await;
    // Nothing was spent by the refused attempts.
    let ok = refresh(Some(("referer", format!("{}/some/page?x=1", app.url))))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn cookie_authenticated_writes_are_checked_and_bearer_ones_are_not() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    let cookie = format!("accessToken={}", pair.access);
    let r = app
        .post("/v1/auth/logout-all")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_rejected").await;
    let r = app
        .post("/v1/me/password")
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .json(&json!({ "current_password": PASSWORD, "new_password": "new password 1" }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_rejected").await;
    let r = app
        .client
        .delete(format!("{}/v1/sessions/{}", app.url, pair.session_id))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_rejected").await;
    let r = app
        .post("/v1/auth/logout")
        .header("cookie", format!("refreshToken={}", pair.refresh))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_rejected").await;
    // GET with a cookie needs no origin.
    assert_eq!(
        app.get("/v1/me")
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // The session survived every refused attempt; a bearer write needs no origin.
    let r = app
        .post("/v1/auth/logout-all")
        .bearer_auth(&pair.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn logins_from_foreign_origins_are_refused() {
    let app = TestApp::spawn_with(&[(
        "allowed_origins",
        "https://app.example, https://admin.example",
    )])
    .await;
    app.register("alice", PASSWORD).await;
    let login = |origin: &'static str| {
        app.post("/v1/auth/login")
            .header("origin", origin)
            .json(&json!({ "username": "alice", "password": PASSWORD }))
            .send()
    };
    assert_error(
        login("https://evil.example").await.unwrap(),
        StatusCode::FORBIDDEN,
        "csrf_rejected",
    )
    .await;
    assert_eq!(
        login("https://admin.example").await.unwrap().status(),
        StatusCode::OK
    );
    // No Origin at all: a non-browser client.
    assert_eq!(
        app.login_raw("alice", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn allowed_origins_get_cors_with_credentials() {
    let app = TestApp::spawn_with(&[("allowed_origins", "https://app.example")]).await;
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/auth/refresh", app.url),
        )
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
    let r = app
        .get("/healthz")
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("x-request-id"),
        "{exposed}"
    );
    let r = app
        .get("/healthz")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}
