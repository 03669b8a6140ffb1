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

/// The authenticator app: codes from the enrolment's `otpauth://` URI.
pub struct Authenticator(totp_rs::TOTP);

impl Authenticator {
    pub fn from_uri(uri: &str) -> Self {
        Self(totp_rs::TOTP::from_url(uri).unwrap())
    }

    /// The code of now, by the system clock (a server of its own process).
    pub fn code_now(&self) -> String {
        self.0.generate_current().unwrap()
    }

    /// The code `steps` steps of 30 s from the app's clock.
    pub fn code(&self, app: &TestApp, steps: i64) -> String {
        let now = latchkey_core::Clock::now(&*app.clock).unix_timestamp();
        self.0.generate((now + 30 * steps) as u64)
    }
}

impl TestApp {
    pub async fn start_totp(&self, access: &str) -> Value {
        let r = self
            .post("/v1/me/totp")
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.json().await.unwrap()
    }

    pub async fn confirm_totp(&self, access: &str, code: &str) -> reqwest::Response {
        self.post("/v1/me/totp/confirm")
            .bearer_auth(access)
            .json(&json!({ "code": code }))
            .send()
            .await
            .unwrap()
    }

    /// Registers `username`, logs in and turns TOTP on: the app, the
    /// recovery codes, and the login that did it.
    pub async fn user_with_totp(&self, username: &str) -> (Authenticator, Vec<String>, Pair) {
        let login = self.user_and_login(username).await;
        let enrolment = self.start_totp(&login.access).await;
        let app = Authenticator::from_uri(enrolment["otpauth_uri"].as_str().unwrap());
        let r = self.confirm_totp(&login.access, &app.code(self, 0)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        let codes = body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        // The confirming code's step is spent: the next login starts afresh.
        self.advance(Duration::from_secs(30));
        (app, codes, login)
    }

    /// The first step of a login whose user has TOTP on: its `mfa_token`.
    pub async fn mfa_token(&self, username: &str) -> String {
        let r = self.login_raw(username, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().get("set-cookie").is_none(), "no cookie yet");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["mfa_required"], true, "{body}");
        assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
        assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
        body["mfa_token"].as_str().unwrap().to_owned()
    }

    pub async fn second_step(&self, body: Value) -> reqwest::Response {
        self.post("/v1/auth/mfa").json(&body).send().await.unwrap()
    }
}

#[tokio::test]
async fn totp_turns_on_with_its_first_code_and_gives_ten_recovery_codes_once() {
    let app = TestApp::spawn().await;
    let login = app.user_and_login("alice").await;
    let me: Value = app.me(&login.access).await.json().await.unwrap();
    assert_eq!(me["mfa"], json!({ "totp": false, "passkeys": 0 }));

    let first = app.start_totp(&login.access).await;
    assert_eq!(first.as_object().unwrap().len(), 2, "{first}");
    let secret = first["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160 bits of base32");
    assert_eq!(
        first["otpauth_uri"],
        format!("otpauth://totp/127.0.0.1:alice?secret={secret}&issuer=127.0.0.1")
    );
    // Starting again before confirming replaces the secret.
    let second = app.start_totp(&login.access).await;
    assert_ne!(second["secret"], first["secret"]);
    let stale = Authenticator::from_uri(first["otpauth_uri"].as_str().unwrap());
    let r = app.confirm_totp(&login.access, &stale.code(&app, 0)).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_code").await;
    let me: Value = app.me(&login.access).await.json().await.unwrap();
    assert_eq!(me["mfa"]["totp"], false, "not on before it is confirmed");

    let phone = Authenticator::from_uri(second["otpauth_uri"].as_str().unwrap());
    let r = app.confirm_totp(&login.access, &phone.code(&app, 0)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    let codes: Vec<&str> = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 10);
    let distinct: std::collections::HashSet<_> = codes.iter().collect();
    assert_eq!(distinct.len(), 10);
    assert!(codes.iter().all(|c| c.len() == 19), "{codes:?}");

    let me: Value = app.me(&login.access).await.json().await.unwrap();
    assert_eq!(me["mfa"], json!({ "totp": true, "passkeys": 0 }));
    // On is on: no second enrolment, no second confirmation.
    let r = app
        .post("/v1/me/totp")
        .bearer_auth(&login.access)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::CONFLICT, "totp_already_enabled").await;
    let r = app.confirm_totp(&login.access, &phone.code(&app, 0)).await;
    assert_error(r, StatusCode::CONFLICT, "totp_already_enabled").await;
    assert!(app
        .audit_events()
        .await
        .contains(&"totp_enabled".to_owned()));
    // Only the hashes are kept.
    let user = app.service.user_by_name("alice").await.unwrap();
    let stored = app.service.store().recovery_codes(&user.id).await.unwrap();
    assert_eq!(stored.len(), 10);
    assert!(stored.iter().all(|h| h.len() == 32));
    assert!(!stored
        .iter()
        .any(|h| codes.iter().any(|c| h == c.as_bytes())));
}

#[tokio::test]
async fn confirming_needs_an_enrolment_and_a_right_code() {
    let app = TestApp::spawn().await;
    let login = app.user_and_login("alice").await;
    let r = app.confirm_totp(&login.access, "123456").await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let enrolment = app.start_totp(&login.access).await;
    let phone = Authenticator::from_uri(enrolment["otpauth_uri"].as_str().unwrap());
    // Two steps away is too far; one step either side is not.
    for steps in [-2, 2] {
        let r = app
            .confirm_totp(&login.access, &phone.code(&app, steps))
            .await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    let r = app.confirm_totp(&login.access, &phone.code(&app, -1)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // Without an access token, nothing.
    let r = app.post("/v1/me/totp").send().await.unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn a_login_with_totp_on_takes_two_steps() {
    let app = TestApp::spawn().await;
    let (phone, _, _) = app.user_with_totp("alice").await;
    let token = app.mfa_token("alice").await;
    // The second step comes a minute later: auth_time is its time.
    app.advance(Duration::from_secs(60));
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pair = pair_of(r).await;
    assert_eq!(pair.body["user"]["username"], "alice");
    let claims = claims_of(&pair.access);
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    let now = latchkey_core::Clock::now(&*app.clock).unix_timestamp();
    assert_eq!(claims["auth_time"].as_i64(), Some(now));
    assert_eq!(app.me(&pair.access).await.status(), StatusCode::OK);
    // A refresh keeps both.
    app.advance(Duration::from_secs(90));
    let again = app.refresh(&pair.refresh).await;
    let refreshed = claims_of(&again.access);
    assert_eq!(refreshed["amr"], json!(["pwd", "otp"]));
    assert_eq!(refreshed["auth_time"].as_i64(), Some(now));
    // The token is spent by its success.
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // A wrong password is still a wrong password, with no hint of TOTP.
    let r = app.login_raw("alice", "not the password").await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_code_is_never_accepted_twice() {
    let app = TestApp::spawn().await;
    let (phone, _, _) = app.user_with_totp("alice").await;
    let code = phone.code(&app, 0);
    let first = app.mfa_token("alice").await;
    let r = app
        .second_step(json!({ "mfa_token": first, "code": code }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The same code for another login, within its window: refused.
    let second = app.mfa_token("alice").await;
    let r = app
        .second_step(json!({ "mfa_token": second, "code": code }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // The next step's code passes; after it, the previous step's (still
    // inside the skew window) does not.
    app.advance(Duration::from_secs(30));
    let r = app
        .second_step(json!({ "mfa_token": second, "code": phone.code(&app, 0) }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let third = app.mfa_token("alice").await;
    let r = app
        .second_step(json!({ "mfa_token": third, "code": phone.code(&app, -1) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert!(app
        .audit_events()
        .await
        .iter()
        .any(|e| e == "login_second_factor_required"));
}

#[tokio::test]
async fn two_logins_racing_with_one_code_open_one_session() {
    let app = TestApp::spawn().await;
    let (phone, _, _) = app.user_with_totp("alice").await;
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(app.mfa_token("alice").await);
    }
    let code = phone.code(&app, 0);
    let answers = futures::future::join_all(
        tokens
            .iter()
            .map(|token| app.second_step(json!({ "mfa_token": token, "code": code }))),
    )
    .await;
    let ok = answers
        .iter()
        .filter(|r| r.status() == StatusCode::OK)
        .count();
    assert_eq!(
        ok,
        1,
        "{:?}",
        answers.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_recovery_code_stands_in_once() {
    let app = TestApp::spawn().await;
    let (_, codes, _) = app.user_with_totp("alice").await;
    let token = app.mfa_token("alice").await;
    // As a person may type it: upper case, spaces for dashes.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let r = app
        .second_step(json!({ "mfa_token": token, "recovery_code": typed }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let pair = pair_of(r).await;
    assert_eq!(claims_of(&pair.access)["amr"], json!(["pwd", "mfa"]));
    let audit = app.service.store().recent_audit(100).await.unwrap();
    let used = audit
        .iter()
        .find(|r| r.event == "recovery_code_used")
        .unwrap();
    assert_eq!(used.detail.as_deref(), Some("9 left"));

    let again = app.mfa_token("alice").await;
    let r = app
        .second_step(json!({ "mfa_token": again, "recovery_code": codes[3] }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let r = app
        .second_step(json!({ "mfa_token": again, "recovery_code": codes[4] }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let summary = app.service.mfa_summary("alice").await.unwrap();
    assert_eq!(summary.recovery_codes, 8);
}

#[tokio::test]
async fn five_wrong_codes_kill_the_token_and_count_toward_the_login_limit() {
    let app = TestApp::spawn_with(&[("login_max_failures", "6")]).await;
    let (phone, _, _) = app.user_with_totp("alice").await;
    // The password: one attempt, counted until the second factor is given.
    let token = app.mfa_token("alice").await;
    let wrong = format!(
        "{:06}",
        (phone.code(&app, 0).parse::<u32>().unwrap() + 1) % 1_000_000
    );
    for _ in 0..5 {
        let r = app
            .second_step(json!({ "mfa_token": token, "code": wrong }))
            .await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // Dead, even with the right code.
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // 1 password + 5 codes = the limit: the next attempt is refused.
    let r = app.login_raw("alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let failed = app
        .service
        .store()
        .recent_audit(100)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "login_failed" && r.detail.as_deref() == Some("wrong second factor"))
        .count();
    assert_eq!(failed, 5);
}

#[tokio::test]
async fn a_right_second_factor_clears_the_count() {
    let app = TestApp::spawn_with(&[("login_max_failures", "3")]).await;
    let (phone, _, _) = app.user_with_totp("alice").await;
    for _ in 0..4 {
        let token = app.mfa_token("alice").await;
        let r = app
            .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        app.advance(Duration::from_secs(30));
    }
}

#[tokio::test]
async fn an_mfa_token_lives_five_minutes() {
    let app = TestApp::spawn().await;
    let (phone, _, _) = app.user_with_totp("alice").await;
    let token = app.mfa_token("alice").await;
    app.advance(Duration::from_secs(5 * 60));
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let token = app.mfa_token("alice").await;
    app.advance(Duration::from_secs(5 * 60 - 1));
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // The prune takes the expired one away.
    app.advance(Duration::from_secs(5 * 60));
    let pruned = app.service.prune().await.unwrap();
    assert_eq!(pruned.mfa_logins, 1);
}

#[tokio::test]
async fn a_password_change_or_a_disable_kills_a_waiting_login() {
    let app = TestApp::spawn().await;
    let (phone, _, login) = app.user_with_totp("alice").await;
    let token = app.mfa_token("alice").await;
    let r = app
        .post("/v1/me/password")
        .bearer_auth(&login.access)
        .json(&json!({ "current_password": PASSWORD, "new_password": "a new passphrase" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // An operator's password, then a disable and enable: each kills it.
    app.service.set_password("alice", PASSWORD).await.unwrap();
    let token = app.mfa_token("alice").await;
    app.service.set_password("alice", PASSWORD).await.unwrap();
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let token = app.mfa_token("alice").await;
    app.service.set_user_disabled("alice", true).await.unwrap();
    app.service.set_user_disabled("alice", false).await.unwrap();
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn turning_totp_off_takes_the_password_and_removes_the_codes() {
    let app = TestApp::spawn().await;
    let (_, _, login) = app.user_with_totp("alice").await;
    let waiting = app.mfa_token("alice").await;
    let off = |password: &str| {
        app.client
            .delete(format!("{}/v1/me/totp", app.url))
            .bearer_auth(&login.access)
            .json(&json!({ "current_password": password }))
            .send()
    };
    let r = off("not the password").await.unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "invalid_credentials").await;
    let r = off(PASSWORD).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let me: Value = app.me(&login.access).await.json().await.unwrap();
    assert_eq!(me["mfa"]["totp"], false);
    let summary = app.service.mfa_summary("alice").await.unwrap();
    assert_eq!((summary.totp, summary.recovery_codes), (false, 0));
    assert!(app
        .audit_events()
        .await
        .contains(&"totp_disabled".to_owned()));
    // A login waiting for a code has nothing to wait for.
    let r = app
        .second_step(json!({ "mfa_token": waiting, "code": "000000" }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // A password alone logs in again; a second removal finds nothing.
    app.login("alice").await;
    let r = off(PASSWORD).await.unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_second_step_follows_the_login_rules_of_csrf_and_input() {
    let app = TestApp::spawn().await;
    let (phone, codes, _) = app.user_with_totp("alice").await;
    let token = app.mfa_token("alice").await;
    let r = app
        .post("/v1/auth/mfa")
        .header("origin", "https://evil.example")
        .json(&json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_rejected").await;
    // Exactly one of the two factors.
    for body in [
        json!({ "mfa_token": token }),
        json!({ "mfa_token": token, "code": phone.code(&app, 0), "recovery_code": codes[0] }),
    ] {
        let r = app.second_step(body).await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let r = app
        .second_step(json!({ "mfa_token": "not a token", "code": phone.code(&app, 0) }))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // An allowed origin goes through.
    let r = app
        .post("/v1/auth/mfa")
        .header("origin", &app.url)
        .json(&json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn with_a_master_key_the_secret_is_stored_sealed() {
    use base64::Engine;
    let master = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    let app = TestApp::spawn_with(&[("master_key", &master)]).await;
    let login = app.user_and_login("alice").await;
    let enrolment = app.start_totp(&login.access).await;
    let user = app.service.user_by_name("alice").await.unwrap();
    let stored = app.service.store().totp(&user.id).await.unwrap().unwrap();
    assert!(stored.encrypted);
    let raw = totp_rs::Secret::Encoded(enrolment["secret"].as_str().unwrap().to_owned())
        .to_bytes()
        .unwrap();
    assert_ne!(stored.secret, raw);
    assert!(!stored
        .secret
        .windows(raw.len())
        .any(|w| w == raw.as_slice()));
    // And it still works, across a restart with the same key.
    let phone = Authenticator::from_uri(enrolment["otpauth_uri"].as_str().unwrap());
    assert_eq!(
        app.confirm_totp(&login.access, &phone.code(&app, 0))
            .await
            .status(),
        StatusCode::OK
    );
    app.advance(Duration::from_secs(30));
    let dir = app.stop().await;
    let app = TestApp::spawn_in(dir, &[("master_key", &master)]).await;
    // A new clock, starting now: past the step the confirmation spent.
    app.advance(Duration::from_secs(60));
    let token = app.mfa_token("alice").await;
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_password_grant_asks_for_the_mfa_grant() {
    let app = TestApp::spawn().await;
    let (phone, codes, _) = app.user_with_totp("alice").await;
    let password = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ];
    let r = app.token(&password, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "mfa_required");
    assert!(body["error_description"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    let token = body["mfa_token"].as_str().unwrap().to_owned();

    let grant = "urn:latchkey:params:oauth:grant-type:mfa";
    // Another client cannot finish it.
    let r = app
        .token(
            &[
                ("grant_type", grant),
                ("mfa_token", &token),
                ("code", &phone.code(&app, 0)),
                ("client_id", "web"),
            ],
            None,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = app
        .token(
            &[
                ("grant_type", grant),
                ("mfa_token", &token),
                ("code", "000000x"),
            ],
            None,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    let r = app
        .token(&[("grant_type", grant), ("mfa_token", &token)], None)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = app
        .token(
            &[
                ("grant_type", grant),
                ("mfa_token", &token),
                ("code", &phone.code(&app, 0)),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["refresh_token"].is_string());
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["client_id"], "public");

    // A recovery code finishes it too.
    let r = app.token(&password, None).await;
    let token = r.json::<Value>().await.unwrap()["mfa_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .token(
            &[
                ("grant_type", grant),
                ("mfa_token", &token),
                ("recovery_code", &codes[0]),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["amr"],
        json!(["pwd", "mfa"])
    );

    let doc: Value = app
        .get("/.well-known/oauth-authorization-server")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&json!(grant)));
}

#[tokio::test]
async fn an_operator_sees_and_resets_a_users_second_factors() {
    let app = TestApp::spawn().await;
    app.user_with_totp("alice").await;
    let summary = app.service.mfa_summary("alice").await.unwrap();
    assert_eq!(
        (summary.totp, summary.recovery_codes, summary.passkeys),
        (true, 10, 0)
    );
    let had = app.service.reset_mfa("alice").await.unwrap();
    assert!(had.totp);
    let summary = app.service.mfa_summary("alice").await.unwrap();
    assert_eq!((summary.totp, summary.recovery_codes), (false, 0));
    assert!(app.audit_events().await.contains(&"mfa_reset".to_owned()));
    app.login("alice").await;
}

#[tokio::test]
async fn starting_an_enrolment_takes_no_body() {
    let app = TestApp::spawn().await;
    let login = app.user_and_login("alice").await;
    // Whatever a client sends along, and however it labels it.
    let r = app
        .post("/v1/me/totp")
        .bearer_auth(&login.access)
        .header("content-type", "text/plain")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
}

/// A resource server with `latchkey-verify` (RFC 9470): a route that wants
/// TOTP, one that wants any second factor, another a login of the last 2
/// seconds; refused with the challenge that says so, then let through
/// after a fitting login.
#[tokio::test]
async fn a_resource_server_asks_for_more_and_a_new_login_gives_it() {
    use axum::routing::post;
    use latchkey_verify::{Claims, Rejection, Verifier};

    let app = TestApp::spawn().await;
    let started = std::time::Instant::now();
    let verifier = Verifier::builder()
        .issuer(&app.url)
        .audience(&app.url)
        .jwks_url(format!("{}/.well-known/jwks.json", app.url))
        .build()
        .unwrap();
    let api = axum::Router::new()
        .route("/billing", post(|| async { "billed" }))
        .route_layer(verifier.layer().require_amr("otp"))
        .merge(
            axum::Router::new()
                .route("/transfer", post(|| async { "sent" }))
                .route_layer(verifier.layer().require_second_factor()),
        )
        .merge(
            axum::Router::new()
                .route(
                    "/posts/delete",
                    post(|claims: Claims| async move {
                        claims.require_auth_within(Duration::from_secs(2))?;
                        Ok::<_, Rejection>("deleted")
                    }),
                )
                .route_layer(verifier.layer()),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });
    let call = |path: &'static str, token: String| {
        let client = app.client.clone();
        let url = format!("{api_url}{path}");
        async move { client.post(url).bearer_auth(token).send().await.unwrap() }
    };

    // A password alone: no second factor.
    let carol = app.user_and_login("carol").await;
    let r = call("/billing", carol.access.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="insufficient_user_authentication", error_description="a login with otp is required", acr_values="otp""#
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "insufficient_user_authentication");
    let r = call("/transfer", carol.access.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer error="insufficient_user_authentication", error_description="a login with mfa is required", acr_values="mfa""#
    );
    assert_eq!(
        call("/posts/delete", carol.access.clone()).await.status(),
        StatusCode::OK
    );

    // The login grows old (the test clock stands still meanwhile).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = call("/posts/delete", carol.access.clone()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(
        challenge.starts_with(r#"Bearer error="insufficient_user_authentication""#)
            && challenge.ends_with(r#"max_age="2""#),
        "{challenge}"
    );
    // A refresh does not make it new again; a login does.
    app.advance(started.elapsed());
    let refreshed = app.refresh(&carol.refresh).await;
    assert_eq!(
        call("/posts/delete", refreshed.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let again = app.login("carol").await;
    assert_eq!(
        call("/posts/delete", again.access).await.status(),
        StatusCode::OK
    );

    // With TOTP and its second step, the route that wants it lets through.
    let (phone, _, _) = app.user_with_totp("dave").await;
    let token = app.mfa_token("dave").await;
    let r = app
        .second_step(json!({ "mfa_token": token, "code": phone.code(&app, 0) }))
        .await;
    let dave = pair_of(r).await;
    let r = call("/billing", dave.access.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "billed");
    assert_eq!(
        call("/transfer", dave.access).await.status(),
        StatusCode::OK
    );

    // A passkey is a second factor too, though not TOTP.
    let (_, mut key) = app
        .user_with_passkey("erin", crate::authenticator::Alg::Es256)
        .await;
    let erin = pair_of(app.passkey_login(&mut key, Some("erin")).await).await;
    assert_eq!(
        call("/transfer", erin.access.clone()).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call("/billing", erin.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
