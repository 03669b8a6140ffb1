//! Second factors (API.md §10): how each login was made (`amr`,
//! `auth_time`), TOTP, recovery codes, the two-step login.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

#[tokio::test]
async fn a_password_login_says_pwd_and_a_refresh_keeps_when_it_was() {
    let app = TestApp::spawn().await;
    let login = app.user_and_login("alice").await;
    let claims = claims_of(&login.access);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["auth_time"], claims["iat"]);
    let logged_in_at = claims["auth_time"].as_i64().unwrap();

    app.advance(Duration::from_secs(120));
    let refreshed = app.refresh(&login.refresh).await;
    let claims = claims_of(&refreshed.access);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["auth_time"].as_i64(), Some(logged_in_at));
    assert!(claims["iat"].as_i64().unwrap() >= logged_in_at + 120);

    let list: Value = app
        .get("/v1/sessions")
        .bearer_auth(&refreshed.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = &list["sessions"][0];
    assert_eq!(session["amr"], json!(["pwd"]), "{list}");
    assert_eq!(session["auth_time"], session["created_at"], "{list}");

    let rs = app.confidential("rs", "").await;
    for token in [&refreshed.access, &refreshed.refresh] {
        let answer = app.introspect(token, ("rs", &rs)).await;
        assert_eq!(answer["active"], true);
        assert_eq!(answer["amr"], json!(["pwd"]), "{answer}");
        assert_eq!(answer["auth_time"].as_i64(), Some(logged_in_at), "{answer}");
    }
}

#[tokio::test]
async fn the_password_grant_says_pwd_and_client_credentials_say_nothing() {
    let app = TestApp::spawn().await;
    app.register("alice", PASSWORD).await;
    let grant = app.password_grant("alice", &[]).await;
    let claims = claims_of(grant["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["auth_time"], claims["iat"]);

    let secret = app.confidential("reports", "").await;
    let r = app
        .token(
            &[("grant_type", "client_credentials")],
            Some(("reports", &secret)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert!(claims.get("amr").is_none(), "{claims}");
    assert!(claims.get("auth_time").is_none(), "{claims}");
    let answer = app
        .introspect(body["access_token"].as_str().unwrap(), ("reports", &secret))
        .await;
    assert!(answer.get("amr").is_none(), "{answer}");
}
