//! docs/reference.md §10, Limits: what no request, or stream of requests, can do.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

fn random_letters(n: usize) -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    (0..n)
        .map(|i| char::from(b'A' + (bytes[i % 16].wrapping_add(i as u8)) % 26))
        .collect()
}

async fn metrics_text(app: &TestApp) -> String {
    app.get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn unknown_methods_and_paths_leave_no_lasting_state() {
    let app = TestApp::spawn().await;
    let before = metrics_text(&app).await.len();
    let mut sent = Vec::new();
    for _ in 0..100 {
        let method = random_letters(200);
        let path = format!("/{}", random_letters(50));
        let r = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", app.url),
            )
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
        sent.push((method, path));
    }
    let text = metrics_text(&app).await;
    for (method, path) in &sent {
        assert!(!text.contains(method.as_str()), "a method became a series");
        assert!(!text.contains(path.as_str()), "a path became a series");
    }
    assert!(
        text.contains(r#"route="unmatched",method="other",status="404""#),
        "{text}"
    );
    // Two series (counter and latency) for all hundred requests, not two each.
    assert!(
        text.len() < before + 8 * 1024,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
}

fn form_of(names: impl Iterator<Item = String>) -> String {
    names.map(|n| format!("{n}=")).collect::<Vec<_>>().join("&")
}

#[tokio::test]
async fn forms_carry_at_most_a_hundred_parameters() {
    let app = TestApp::spawn().await;
    // Just under the body limit, thirteen thousand distinct names: refused
    // at the hundred-and-first, before any client is looked at.
    let huge = (0..13_000)
        .map(|i| format!("{:04x}", i))
        .collect::<Vec<_>>()
        .join("&");
    assert!(huge.len() < 64 * 1024);
    let hundred_and_one = format!(
        "grant_type=client_credentials&{}",
        form_of((0..100).map(|i| format!("p{i}")))
    );
    for path in ["/oauth2/token", "/oauth2/introspect", "/oauth2/revoke"] {
        for body in [&huge, &hundred_and_one] {
            let r = app
                .post(path)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let body = assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
            assert!(
                body["error_description"]
                    .as_str()
                    .unwrap()
                    .contains("at most 100 parameters"),
                "{path}: {body}"
            );
        }
    }
    // A hundred is fine (the grant then fails for what it is).
    let hundred = format!(
        "grant_type=nonsense&{}",
        form_of((0..99).map(|i| format!("p{i}")))
    );
    let r = app
        .post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(hundred)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "unsupported_grant_type").await;
}

/// A login whose password check began before the password changed opens
/// no session, though it completes after the change and its password was
/// right when it was read.
#[tokio::test]
async fn a_login_straddling_a_password_change_opens_no_session() {
    use argon2::password_hash::rand_core::OsRng;
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    use latchkey_core::store::RevokeScope;

    let app = TestApp::spawn().await;
    app.user_and_login("alice").await;
    let alice = app.service.user_by_name("alice").await.unwrap();
    // Alice's stored hash made slow to check (64 MiB, 8 passes: a good part
    // of a second), so that her login is still checking it, long after it
    // read it, when the password changes. Her password stays the same.
    let slow = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(64 * 1024, 8, 1, None).unwrap(),
    )
    .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
    .unwrap()
    .to_string();
    let store = app.service.store().clone();
    assert!(store.rehash_password(&alice.id, 0, &slow).await.unwrap());
    let new_hash = latchkey_core::password::PasswordHasher::new(4)
        .unwrap()
        .hash("an entirely new password")
        .await
        .unwrap();
    let straddling = app.login_raw("alice", PASSWORD);
    let change = async {
        // Admitted, her user read (a few store round trips), hashing.
        while app.service.password_queue_depth() < 1 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // What `user set-password`, a change or a reset do in the store.
        let all = RevokeScope::User {
            user_id: &alice.id,
            except: None,
        };
        store
            .set_password_hash(&alice.id, &new_hash, all, app.service.now(), "password_set")
            .await
            .unwrap();
    };
    let (login, ()) = tokio::join!(straddling, change);
    assert_error(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let live = app.service.live_sessions(Some(&alice.id)).await.unwrap();
    assert!(live.is_empty(), "{live:?}");
    // The new password works, and the old one was not written back.
    let r = app.login_raw("alice", "an entirely new password").await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn concurrent_wrong_guesses_are_checked_at_most_the_limit() {
    // A queue long enough for all fifty: none is turned away as "busy".
    let app = TestApp::spawn_with(&[("login_max_failures", "10"), ("password_queue", "64")]).await;
    app.user_and_login("alice").await;
    let guesses =
        (0..50).map(|i| app.login_raw("alice", Box::leak(format!("guess {i}").into_boxed_str())));
    let answers = futures::future::join_all(guesses).await;
    let count = |status: StatusCode| answers.iter().filter(|r| r.status() == status).count();
    assert_eq!(
        (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (10, 40),
        "{:?}",
        answers.iter().map(|r| r.status()).collect::<Vec<_>>()
    );
    for r in answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
    {
        assert!(r.headers().contains_key("retry-after"));
    }
    // One audit row for all the refusals of this username, address and window.
    let events = app.audit_events().await;
    let refused = events.iter().filter(|e| *e == "login_rate_limited").count();
    assert_eq!(refused, 1, "{events:?}");
    let failed = events.iter().filter(|e| *e == "login_failed").count();
    assert_eq!(failed, 10, "{events:?}");
}

async fn login_from(app: &TestApp, forwarded_for: &str, password: &str) -> StatusCode {
    app.post("/v1/auth/login")
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "username": "alice", "password": password }))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_limit_counts_ipv6_by_64_and_mapped_ipv4_as_ipv4() {
    let app = TestApp::spawn_with(&[
        ("login_max_failures", "2"),
        ("trusted_proxies", "127.0.0.1"),
    ])
    .await;
    app.user_and_login("alice").await;
    let wrong = "not the password";
    // Two addresses of one /64 share one count.
    assert_eq!(
        login_from(&app, "2001:db8:1:2::a", wrong).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, "2001:db8:1:2::b", wrong).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, "2001:db8:1:2:ffff::1", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The next /64 is another host's.
    assert_eq!(
        login_from(&app, "2001:db8:1:3::a", PASSWORD).await,
        StatusCode::OK
    );
    // An IPv4-mapped address is its IPv4 address.
    assert_eq!(
        login_from(&app, "198.51.100.7", wrong).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, "::ffff:198.51.100.7", wrong).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_from(&app, "198.51.100.7", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A dual-stack socket sees an IPv4 peer as `::ffff:a.b.c.d`: it is still
/// the IPv4 address listed in `trusted_proxies`.
#[tokio::test]
async fn a_dual_stack_listener_takes_mapped_peers_as_ipv4() {
    let port = free_port();
    let app = TestApp::spawn_with(&[
        ("listen", &format!("[::]:{port}")),
        ("issuer", &format!("http://127.0.0.1:{port}")),
        ("trusted_proxies", "127.0.0.1"),
    ])
    .await;
    let url = format!("http://127.0.0.1:{port}");
    let r = app
        .client
        .post(format!("{url}/v1/auth/register"))
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = app
        .client
        .post(format!("{url}/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.9")
        .json(&json!({ "username": "alice", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let user = app.service.user_by_name("alice").await.unwrap();
    let sessions = app.service.live_sessions(Some(&user.id)).await.unwrap();
    assert_eq!(sessions[0].ip, "203.0.113.9");
}

#[tokio::test]
async fn account_management_needs_a_first_party_token() {
    let app = TestApp::spawn().await;
    app.user_and_login("alice").await;
    app.service
        .add_client("reader", true, "profile")
        .await
        .unwrap();
    app.service
        .add_client("companion", true, "profile account")
        .await
        .unwrap();
    let token = |client: &'static str| {
        let app = &app;
        async move {
            let r = app
                .post("/oauth2/token")
                .form(&[
                    ("grant_type", "password"),
                    ("client_id", client),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let body: serde_json::Value = r.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let third_party = token("reader").await;
    assert_eq!(app.me(&third_party).await.status(), StatusCode::OK);
    let attempts = [
        app.get("/v1/sessions"),
        app.post("/v1/auth/logout-all"),
        app.post("/v1/me/password").json(&json!({
            "current_password": PASSWORD, "new_password": "a brand new password"
        })),
        app.client
            .delete(format!("{}/v1/sessions/{}", app.url, uuid::Uuid::new_v4())),
    ];
    for attempt in attempts {
        let r = attempt.bearer_auth(&third_party).send().await.unwrap();
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer error="insufficient_scope", scope="account""#
        );
        assert_error(r, StatusCode::FORBIDDEN, "insufficient_scope").await;
    }
    // Nothing happened: the third party's session and the password stand.
    assert_eq!(app.me(&third_party).await.status(), StatusCode::OK);
    app.login("alice").await;

    let trusted = token("companion").await;
    let r = app
        .get("/v1/sessions")
        .bearer_auth(&trusted)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_cookie_sent_twice_counts_as_absent() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    // A sibling subdomain tossed a second refresh cookie.
    let r = app
        .post("/v1/auth/refresh")
        .header(
            "cookie",
            format!("refreshToken={}; refreshToken=tossed", pair.refresh),
        )
        .header("origin", &app.url)
        .send()
        .await
        .unwrap();
    assert!(set_cookies(r.headers()).is_empty(), "nothing is cleared");
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let r = app
        .get("/v1/me")
        .header("cookie", format!("accessToken={}", pair.access))
        .header("cookie", "accessToken=tossed")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // The real pair is untouched.
    app.refresh(&pair.refresh).await;
}

/// Reads until the server closes the connection; answers what it sent and
/// how long it took.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(within, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {within:?}"),
        }
    }
    (
        String::from_utf8_lossy(&seen).into_owned(),
        started.elapsed(),
    )
}

fn authority(app: &TestApp) -> &str {
    app.url.trim_start_matches("http://")
}

#[tokio::test]
async fn a_trickled_request_head_is_cut_off() {
    let app = TestApp::spawn_with(&[("header_read_timeout", "1s")]).await;
    // Half a head, then a byte every 200 ms: never whole.
    let mut stream = TcpStream::connect(authority(&app)).await.unwrap();
    let started = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if stream.write_all(b"X").await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(8), trickle)
        .await
        .ok();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(!answer.contains("200 OK"), "{answer}");
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");
    // A connection that never sends a byte is cut off too.
    let mut silent = TcpStream::connect(authority(&app)).await.unwrap();
    let (answer, took) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(answer.is_empty() || !answer.contains("200"), "{answer}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

async fn exchange(stream: &mut TcpStream, request: &[u8]) -> String {
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn an_idle_keep_alive_connection_lasts_its_own_timeout() {
    let app =
        TestApp::spawn_with(&[("header_read_timeout", "1s"), ("keep_alive_timeout", "3s")]).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stream = TcpStream::connect(authority(&app)).await.unwrap();
    assert!(exchange(&mut stream, request)
        .await
        .starts_with("HTTP/1.1 200"));
    // Idle longer than a head may take, shorter than keep-alive: still open.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(exchange(&mut stream, request)
        .await
        .starts_with("HTTP/1.1 200"));
    let (_, idle) = read_until_closed(&mut stream, Duration::from_secs(6)).await;
    assert!(idle >= Duration::from_millis(2800), "closed after {idle:?}");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let app = TestApp::spawn_with(&[("request_body_timeout", "1s")]).await;
    let mut stream = TcpStream::connect(authority(&app)).await.unwrap();
    stream
        .write_all(
            b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\":",
        )
        .await
        .unwrap();
    let (answer, took) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    assert!(answer.contains("invalid_request"), "{answer}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
}

#[tokio::test]
async fn two_thousand_idle_connections_leave_a_normal_client_served() {
    let app = TestApp::spawn().await;
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        idle.push(TcpStream::connect(authority(&app)).await.unwrap());
    }
    let pair = app.user_and_login("alice").await;
    assert_eq!(app.me(&pair.access).await.status(), StatusCode::OK);
    app.refresh(&pair.refresh).await;
    drop(idle);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let app =
        TestApp::spawn_with(&[("max_connections", "10"), ("header_read_timeout", "2s")]).await;
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(TcpStream::connect(authority(&app)).await.unwrap());
    }
    // The eleventh waits until the idle ten are cut off, then is served.
    let started = Instant::now();
    let r = app.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1000),
        "served after {waited:?}"
    );
    drop(idle);
}
