//! API.md §11: account recovery by email, against a real SMTP server (the
//! sink of `smtp.rs`) that the server's outbox sender talks to.

use std::time::{Duration, Instant};

use latchkey_core::store::Revoked;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::smtp::{Received, SmtpSink};

const NEW_PASSWORD: &str = "a brand new passphrase";
/// Mail goes through a background sender: it arrives within this.
const SOON: Duration = Duration::from_secs(15);

async fn mail_app(sink: &SmtpSink, extra: &[(&str, &str)]) -> TestApp {
    let url = sink.url();
    let mut settings = vec![("smtp_url", url.as_str())];
    settings.extend_from_slice(extra);
    TestApp::spawn_with(&settings).await
}

/// A user with a verified address (set by the operator's path).
async fn verified_user(app: &TestApp, username: &str, email: &str) {
    assert_eq!(
        app.register(username, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    app.service.set_email(username, email, true).await.unwrap();
}

async fn ask_reset(app: &TestApp, login: &str) -> reqwest::Response {
    app.post("/v1/auth/password-reset")
        .json(&json!({ "login": login }))
        .send()
        .await
        .unwrap()
}

async fn confirm(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post("/v1/auth/password-reset/confirm")
        .json(&json!({ "token": token, "new_password": password }))
        .send()
        .await
        .unwrap()
}

async fn me_json(app: &TestApp, access: &str) -> Value {
    let r = app.me(access).await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// No mail to `to` arrives for a while.
async fn no_mail(sink: &SmtpSink, to: &str, n: usize) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.to(to).len(), n, "mails to {to}");
}

#[tokio::test]
async fn an_address_given_at_registration_is_verified_by_its_mailed_token() {
    let sink = SmtpSink::start().await;
    let app = mail_app(&sink, &[]).await;
    let r = app
        .post("/v1/auth/register")
        .json(&json!({ "username": "alice", "password": PASSWORD, "email": "Alice@Example.COM" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let pair = app.login("alice").await;
    let me = me_json(&app, &pair.access).await;
    assert_eq!(me["email"], "Alice@Example.COM");
    assert_eq!(me["email_verified"], false);
    let mail = sink.wait_for("Alice@Example.COM", 1, SOON).await.remove(0);
    assert_eq!(
        mail.header("Subject").unwrap(),
        "Confirm your email address"
    );
    assert!(mail.header("From").unwrap().contains("latchkey@localhost"));
    assert_eq!(mail.from, "latchkey@localhost", "the envelope sender");
    let link = mail.link();
    assert!(
        link.starts_with(&format!("{}/verify-email?token=", app.url)),
        "{link}"
    );
    let token = mail.token();
    assert!(token.len() >= 22, "at least 128 bits: {token}");
    assert!(mail.html().contains(&token));
    let verify = |token: String| {
        app.post("/v1/me/email/verify")
            .bearer_auth(&pair.access)
            .json(&json!({ "token": token }))
            .send()
    };
    assert_error(
        verify("nope".into()).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        verify(token.clone()).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(me_json(&app, &pair.access).await["email_verified"], true);
    assert_error(
        verify(token).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let events = app.audit_events().await;
    assert!(events.contains(&"email_changed".to_owned()), "{events:?}");
    assert!(events.contains(&"email_verified".to_owned()), "{events:?}");
}

#[tokio::test]
async fn changing_the_address_takes_the_password_and_verified_addresses_are_unique() {
    let sink = SmtpSink::start().await;
    let app = mail_app(&sink, &[]).await;
    verified_user(&app, "owner", "shared@example.com").await;
    let pair = app.user_and_login("bob").await;
    let put = |email: &str, password: &str| {
        app.client
            .put(format!("{}/v1/me/email", app.url))
            .bearer_auth(&pair.access)
            .json(&json!({ "email": email, "current_password": password }))
            .send()
    };
    assert_error(
        put("bob@example.com", "wrong password").await.unwrap(),
        StatusCode::FORBIDDEN,
        "invalid_credentials",
    )
    .await;
    assert_error(
        put("not an address", PASSWORD).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    // The owner's address with its domain in another case: the same one.
    assert_eq!(
        put("shared@EXAMPLE.com", PASSWORD).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let me = me_json(&app, &pair.access).await;
    assert_eq!(
        (me["email"].as_str(), me["email_verified"].as_bool()),
        (Some("shared@EXAMPLE.com"), Some(false))
    );
    let token = sink.wait_for("shared@EXAMPLE.com", 1, SOON).await[0].token();
    let r = app
        .post("/v1/me/email/verify")
        .bearer_auth(&pair.access)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::CONFLICT, "email_taken").await;
    // Another local part is another address (kept as given).
    assert_eq!(
        put("Shared@example.com", PASSWORD).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let mail = sink.wait_for("Shared@example.com", 1, SOON).await.remove(0);
    let r = app
        .post("/v1/me/email/verify")
        .bearer_auth(&pair.access)
        .json(&json!({ "token": mail.token() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // The older check (for the address changed since) is dead.
    let r = app
        .post("/v1/me/email/verify")
        .bearer_auth(&pair.access)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // A check is the user's own: another user cannot spend it.
    assert_eq!(
        put("third@example.com", PASSWORD).await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let third = sink.wait_for("third@example.com", 1, SOON).await[0].token();
    let other = app.user_and_login("carol").await;
    let r = app
        .post("/v1/me/email/verify")
        .bearer_auth(&other.access)
        .json(&json!({ "token": third }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_reset_end_to_end() {
    let sink = SmtpSink::start().await;
    let app = mail_app(&sink, &[]).await;
    verified_user(&app, "alice", "alice@example.com").await;
    let phone = app.login("alice").await;
    let laptop = app.login("alice").await;
    let r = ask_reset(&app, "alice@EXAMPLE.com").await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.bytes().await.unwrap().is_empty(), "an empty body");
    let mail = sink.wait_for("alice@example.com", 1, SOON).await.remove(0);
    assert_eq!(mail.header("Subject").unwrap(), "Reset your password");
    let link = mail.link();
    assert!(
        link.starts_with(&format!("{}/reset-password?token=", app.url)),
        "{link}"
    );
    let token = mail.token();
    assert!(
        mail.text().lines().any(|l| l.trim() == token),
        "the bare token too"
    );
    // A mail scanner opening the link spends nothing.
    let scanned = app.client.get(&link).send().await.unwrap();
    assert!(scanned.status().is_client_error());
    let peek = app
        .get(&format!("/v1/auth/password-reset/confirm?token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(peek.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The registration policy holds for the new password.
    assert_error(
        confirm(&app, &token, "short").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        confirm(&app, &token, NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    // Once only.
    assert_error(
        confirm(&app, &token, "yet another passphrase").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    // Every session revoked, on the feed like a password change's.
    for pair in [&phone, &laptop] {
        assert_eq!(
            app.me(&pair.access).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.refresh_raw(&pair.refresh).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let feed = app
        .service
        .store()
        .revocations_after(0, time::OffsetDateTime::UNIX_EPOCH, 100)
        .await
        .unwrap();
    for pair in [&phone, &laptop] {
        assert!(
            feed.iter()
                .any(|r| r.revoked == Revoked::Session(pair.session_id.clone())),
            "{feed:?}"
        );
    }
    assert_eq!(
        app.login_raw("alice", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "the old password is refused"
    );
    assert_eq!(
        app.login_raw("alice", NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
    let events = app.audit_events().await;
    for e in ["password_reset_requested", "password_reset_completed"] {
        assert!(events.contains(&e.to_owned()), "{e}: {events:?}");
    }
    // The username works as the login too.
    assert_eq!(
        ask_reset(&app, "ALICE").await.status(),
        StatusCode::ACCEPTED
    );
    sink.wait_for("alice@example.com", 2, SOON).await;
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test]
async fn unknown_and_unverified_accounts_get_the_same_answer_in_the_same_time_and_no_mail() {
    let sink = SmtpSink::start().await;
    let app = mail_app(&sink, &[("login_max_failures", "1000")]).await;
    verified_user(&app, "known", "known@example.com").await;
    let r = app
        .post("/v1/auth/register")
        .json(&json!({ "username": "unverified", "password": PASSWORD, "email": "unverified@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    sink.wait_for("unverified@example.com", 1, SOON).await;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..20 {
        // Fresh logins each time, so that no hourly limit is reached.
        for (login, times) in [
            (format!("known@example.com{}", ""), &mut known),
            (format!("nobody{i}@example.com"), &mut unknown),
        ] {
            let started = Instant::now();
            let r = ask_reset(&app, &login).await;
            times.push(started.elapsed());
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            assert!(r.bytes().await.unwrap().is_empty());
        }
    }
    let (k, u) = (median(known), median(unknown));
    let gap = k.abs_diff(u);
    assert!(
        gap < Duration::from_millis(25) || gap < k.max(u) / 2,
        "known {k:?} vs unknown {u:?}"
    );
    for login in ["unverified", "unverified@example.com", "nobody", "x@y.z"] {
        assert_eq!(ask_reset(&app, login).await.status(), StatusCode::ACCEPTED);
    }
    no_mail(&sink, "unverified@example.com", 1).await;
    assert_eq!(sink.to("known@example.com").len(), 3, "the hourly limit");
    assert!(sink.messages().iter().all(|m| m.to != ["x@y.z"]));
}

#[tokio::test]
async fn tokens_expire_are_superseded_and_die_with_a_password_change() {
    let sink = SmtpSink::start().await;
    let app = mail_app(&sink, &[]).await;
    verified_user(&app, "alice", "alice@example.com").await;
    ask_reset(&app, "alice").await;
    let first = sink.wait_for("alice@example.com", 1, SOON).await[0].token();
    ask_reset(&app, "alice").await;
    let second = sink.wait_for("alice@example.com", 2, SOON).await[1].token();
    assert_ne!(first, second);
    assert_error(
        confirm(&app, &first, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    app.advance(Duration::from_secs(30 * 60 + 1));
    assert_error(
        confirm(&app, &second, NEW_PASSWORD).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    ask_reset(&app, "alice").await;
    let third = sink.wait_for("alice@example.com", 3, SOON).await[2].token();
    let pair = app.login("alice").await;
    let r = app
        .post("/v1/me/password")
        .bearer_auth(&pair.access)
        .json(&json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_error(
        confirm(&app, &third, "yet another passphrase").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_eq!(
        app.login_raw("alice", NEW_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn three_reset_mails_an_hour_and_a_limit_per_client_address() {
    let sink = SmtpSink::start().await;
    let app = mail_app(&sink, &[("login_max_failures", "6")]).await;
    verified_user(&app, "alice", "alice@example.com").await;
    for _ in 0..4 {
        assert_eq!(
            ask_reset(&app, "alice").await.status(),
            StatusCode::ACCEPTED
        );
    }
    sink.wait_for("alice@example.com", 3, SOON).await;
    no_mail(&sink, "alice@example.com", 3).await;
    assert!(app
        .audit_events()
        .await
        .contains(&"password_reset_limited".to_owned()));
    assert_eq!(ask_reset(&app, "bob").await.status(), StatusCode::ACCEPTED);
    assert_eq!(
        ask_reset(&app, "carol").await.status(),
        StatusCode::ACCEPTED
    );
    // The seventh request from this address in the window.
    let r = ask_reset(&app, "dave").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // An hour on, both limits have passed.
    app.advance(Duration::from_secs(3601));
    assert_eq!(
        ask_reset(&app, "alice").await.status(),
        StatusCode::ACCEPTED
    );
    sink.wait_for("alice@example.com", 4, SOON).await;
}

#[tokio::test]
async fn without_smtp_the_reset_and_verify_endpoints_do_not_exist() {
    let app = TestApp::spawn().await;
    assert_error(
        ask_reset(&app, "alice").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_error(
        confirm(&app, "token", NEW_PASSWORD).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let pair = app.user_and_login("alice").await;
    let r = app
        .post("/v1/me/email/verify")
        .bearer_auth(&pair.access)
        .json(&json!({ "token": "x" }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    // The address itself can still be kept (an operator may verify it).
    let r = app
        .client
        .put(format!("{}/v1/me/email", app.url))
        .bearer_auth(&pair.access)
        .json(&json!({ "email": "alice@example.com", "current_password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        me_json(&app, &pair.access).await["email"],
        "alice@example.com"
    );
}

/// The mail one reset queued, while the sink is down.
async fn reset_while_down(app: &TestApp) {
    verified_user(app, "alice", "alice@example.com").await;
    assert_eq!(ask_reset(app, "alice").await.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_mail_waits_out_an_smtp_outage() {
    let mut sink = SmtpSink::down().await;
    let app = mail_app(&sink, &[]).await;
    reset_while_down(&app).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    sink.restart().await;
    let mail = sink
        .wait_for("alice@example.com", 1, Duration::from_secs(45))
        .await
        .remove(0);
    assert_eq!(
        confirm(&app, &mail.token(), NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    no_mail(&sink, "alice@example.com", 1).await;
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("latchkey_mails_sent_total 1"), "{metrics}");
    assert!(
        !metrics.contains("latchkey_mail_failures_total 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_mail_queued_before_a_restart_arrives_once() {
    let mut sink = SmtpSink::down().await;
    let url = sink.url();
    let settings = [("smtp_url", url.as_str())];
    let app = TestApp::spawn_with(&settings).await;
    reset_while_down(&app).await;
    // Its first attempt fails; the server stops with the mail queued.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = app.stop().await;
    sink.restart().await;
    let app = TestApp::spawn_in(dir, &settings).await;
    let mail: Received = sink
        .wait_for("alice@example.com", 1, Duration::from_secs(30))
        .await
        .remove(0);
    no_mail(&sink, "alice@example.com", 1).await;
    assert_eq!(
        confirm(&app, &mail.token(), NEW_PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
}
