//! docs/reference.md §9: every malformed input gets its 4xx and the error body;
//! none gets a 500, and nothing stored is harmed.

use reqwest::{Method, StatusCode};

use crate::helpers::*;

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: StatusCode,
    code: &'static str,
}

fn json_case(name: &'static str, path: &'static str, body: &str, status: StatusCode) -> Case {
    Case {
        name,
        method: Method::POST,
        path,
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        code: if status == StatusCode::CONFLICT {
            "username_taken"
        } else {
            "invalid_request"
        },
    }
}

fn cases() -> Vec<Case> {
    use StatusCode as S;
    let long_name = format!(
        r#"{{"username":"{}","password":"long enough"}}"#,
        "x".repeat(255)
    );
    let long_password = format!(r#"{{"username":"bob","password":"{}"}}"#, "x".repeat(1025));
    let long_email = format!(
        r#"{{"username":"bob","password":"long enough","email":"{}@example.com"}}"#,
        "a".repeat(250)
    );
    let long_login = format!(r#"{{"login":"{}"}}"#, "x".repeat(255));
    let long_token = format!(
        r#"{{"token":"{}","new_password":"long enough"}}"#,
        "t".repeat(129)
    );
    let long_mfa_token = format!(r#"{{"mfa_token":"{}","code":"123456"}}"#, "t".repeat(129));
    let long_mfa_code = format!(r#"{{"mfa_token":"abc","code":"{}"}}"#, "1".repeat(65));
    let huge = format!(
        r#"{{"username":"bob","password":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let mut cases = vec![
        json_case("bad json", "/v1/auth/register", "{", S::BAD_REQUEST),
        json_case(
            "not an object",
            "/v1/auth/register",
            "[1,2]",
            S::BAD_REQUEST,
        ),
        json_case("empty body", "/v1/auth/register", "", S::BAD_REQUEST),
        json_case(
            "wrong type",
            "/v1/auth/register",
            r#"{"username":1,"password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "null field",
            "/v1/auth/register",
            r#"{"username":null,"password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "missing field",
            "/v1/auth/register",
            r#"{"username":"bob"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "unknown field",
            "/v1/auth/register",
            r#"{"username":"bob","password":"long enough","admin":true}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "empty username",
            "/v1/auth/register",
            r#"{"username":"  ","password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "long username",
            "/v1/auth/register",
            &long_name,
            S::BAD_REQUEST,
        ),
        json_case(
            "control character",
            "/v1/auth/register",
            r#"{"username":"bo\u0000b","password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "format character",
            "/v1/auth/register",
            r#"{"username":"bo\u200bb","password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "short password",
            "/v1/auth/register",
            r#"{"username":"bob","password":"1234567"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "long password",
            "/v1/auth/register",
            &long_password,
            S::BAD_REQUEST,
        ),
        json_case(
            "login long password",
            "/v1/auth/login",
            &long_password,
            S::BAD_REQUEST,
        ),
        json_case(
            "login empty password",
            "/v1/auth/login",
            r#"{"username":"bob","password":""}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "login bad json",
            "/v1/auth/login",
            r#"{"username":"bob","password":"x"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "invalid utf-8 escape",
            "/v1/auth/login",
            r#"{"username":"\ud800","password":"x"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "taken",
            "/v1/auth/register",
            r#"{"username":"EXISTING","password":"long enough"}"#,
            S::CONFLICT,
        ),
        json_case(
            "register bad email",
            "/v1/auth/register",
            r#"{"username":"bob","password":"long enough","email":"not an address"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "register email of the wrong type",
            "/v1/auth/register",
            r#"{"username":"bob","password":"long enough","email":["a@b.c"]}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "register long email",
            "/v1/auth/register",
            &long_email,
            S::BAD_REQUEST,
        ),
        json_case(
            "reset bad json",
            "/v1/auth/password-reset",
            "{\"login\"",
            S::BAD_REQUEST,
        ),
        json_case(
            "reset missing login",
            "/v1/auth/password-reset",
            "{}",
            S::BAD_REQUEST,
        ),
        json_case(
            "reset login of the wrong type",
            "/v1/auth/password-reset",
            r#"{"login":42}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "reset unknown field",
            "/v1/auth/password-reset",
            r#"{"login":"bob","email":"a@b.c"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "reset empty login",
            "/v1/auth/password-reset",
            r#"{"login":"  "}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "reset long login",
            "/v1/auth/password-reset",
            &long_login,
            S::BAD_REQUEST,
        ),
        json_case(
            "confirm missing password",
            "/v1/auth/password-reset/confirm",
            r#"{"token":"abc"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "confirm short password",
            "/v1/auth/password-reset/confirm",
            r#"{"token":"abc","new_password":"1234567"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "confirm empty token",
            "/v1/auth/password-reset/confirm",
            r#"{"token":"","new_password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "confirm long token",
            "/v1/auth/password-reset/confirm",
            &long_token,
            S::BAD_REQUEST,
        ),
        json_case(
            "confirm unknown token",
            "/v1/auth/password-reset/confirm",
            r#"{"token":"\u0000nope","new_password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "confirm null token",
            "/v1/auth/password-reset/confirm",
            r#"{"token":null,"new_password":"long enough"}"#,
            S::BAD_REQUEST,
        ),
        Case {
            name: "change email without a token",
            method: Method::PUT,
            path: "/v1/me/email",
            content_type: Some("application/json"),
            body: br#"{"email":"a@b.c","current_password":"x"}"#.to_vec(),
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        Case {
            name: "verify email without a token",
            method: Method::POST,
            path: "/v1/me/email/verify",
            content_type: Some("application/json"),
            body: br#"{"token":"abc"}"#.to_vec(),
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        json_case("mfa bad json", "/v1/auth/mfa", "{\"mfa_token\"", S::BAD_REQUEST),
        json_case(
            "mfa missing token",
            "/v1/auth/mfa",
            r#"{"code":"123456"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "mfa no factor",
            "/v1/auth/mfa",
            r#"{"mfa_token":"abc"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "mfa two factors",
            "/v1/auth/mfa",
            r#"{"mfa_token":"abc","code":"123456","recovery_code":"abcd-efgh-ijkm-npqr"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "mfa code of the wrong type",
            "/v1/auth/mfa",
            r#"{"mfa_token":"abc","code":123456}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "mfa null token",
            "/v1/auth/mfa",
            r#"{"mfa_token":null,"code":"123456"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "mfa unknown field",
            "/v1/auth/mfa",
            r#"{"mfa_token":"abc","code":"123456","remember":true}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "mfa empty token",
            "/v1/auth/mfa",
            r#"{"mfa_token":"","code":"123456"}"#,
            S::BAD_REQUEST,
        ),
        json_case("mfa long token", "/v1/auth/mfa", &long_mfa_token, S::BAD_REQUEST),
        json_case(
            "mfa empty code",
            "/v1/auth/mfa",
            r#"{"mfa_token":"abc","code":""}"#,
            S::BAD_REQUEST,
        ),
        json_case("mfa long code", "/v1/auth/mfa", &long_mfa_code, S::BAD_REQUEST),
        Case {
            name: "mfa form content type",
            method: Method::POST,
            path: "/v1/auth/mfa",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"mfa_token=abc&code=123456".to_vec(),
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        Case {
            name: "mfa grant without mfa_token",
            method: Method::POST,
            path: "/oauth2/token",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"grant_type=urn%3Alatchkey%3Aparams%3Aoauth%3Agrant-type%3Amfa&code=123456"
                .to_vec(),
            status: S::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            name: "mfa grant with two factors",
            method: Method::POST,
            path: "/oauth2/token",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"grant_type=urn%3Alatchkey%3Aparams%3Aoauth%3Agrant-type%3Amfa&mfa_token=abc&code=1&recovery_code=2"
                .to_vec(),
            status: S::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            name: "mfa grant with a long code",
            method: Method::POST,
            path: "/oauth2/token",
            content_type: Some("application/x-www-form-urlencoded"),
            body: format!(
                "grant_type=urn%3Alatchkey%3Aparams%3Aoauth%3Agrant-type%3Amfa&mfa_token=abc&code={}",
                "1".repeat(65)
            )
            .into_bytes(),
            status: S::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            name: "totp start without a token",
            method: Method::POST,
            path: "/v1/me/totp",
            content_type: None,
            body: vec![],
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        Case {
            name: "totp confirm without a token",
            method: Method::POST,
            path: "/v1/me/totp/confirm",
            content_type: Some("application/json"),
            body: br#"{"code":"123456"}"#.to_vec(),
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        Case {
            name: "totp removal without a token",
            method: Method::DELETE,
            path: "/v1/me/totp",
            content_type: Some("application/json"),
            body: br#"{"current_password":"x"}"#.to_vec(),
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        Case {
            name: "reset form content type",
            method: Method::POST,
            path: "/v1/auth/password-reset",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"login=bob".to_vec(),
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        Case {
            name: "64 KiB+",
            method: Method::POST,
            path: "/v1/auth/register",
            content_type: Some("application/json"),
            body: huge.into_bytes(),
            status: S::PAYLOAD_TOO_LARGE,
            code: "invalid_request",
        },
        Case {
            name: "64 KiB+ on refresh",
            method: Method::POST,
            path: "/v1/auth/refresh",
            content_type: None,
            body: vec![b'x'; 65 * 1024],
            status: S::PAYLOAD_TOO_LARGE,
            code: "invalid_request",
        },
        Case {
            name: "invalid utf-8 bytes",
            method: Method::POST,
            path: "/v1/auth/register",
            content_type: Some("application/json"),
            body: b"{\"username\":\"\xff\xfe\",\"password\":\"long enough\"}".to_vec(),
            status: S::BAD_REQUEST,
            code: "invalid_request",
        },
        Case {
            name: "no content type",
            method: Method::POST,
            path: "/v1/auth/login",
            content_type: None,
            body: br#"{"username":"bob","password":"x"}"#.to_vec(),
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        Case {
            name: "form content type",
            method: Method::POST,
            path: "/v1/auth/register",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"username=bob&password=long+enough".to_vec(),
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        Case {
            name: "text content type",
            method: Method::POST,
            path: "/v1/me/password",
            content_type: Some("text/plain"),
            body: b"{}".to_vec(),
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        json_case(
            "passkey start bad json",
            "/v1/auth/passkey/start",
            "{",
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey start empty body",
            "/v1/auth/passkey/start",
            "",
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey start username of the wrong type",
            "/v1/auth/passkey/start",
            r#"{"username":["alice"]}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey start unknown field",
            "/v1/auth/passkey/start",
            r#"{"user":"alice"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey start long username",
            "/v1/auth/passkey/start",
            &long_name.replace(r#","password":"long enough""#, ""),
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey start control character",
            "/v1/auth/passkey/start",
            r#"{"username":"bo\u0007b"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey finish bad json",
            "/v1/auth/passkey/finish",
            r#"{"challenge_id":"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey finish missing credential",
            "/v1/auth/passkey/finish",
            r#"{"challenge_id":"abc"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey finish challenge of the wrong type",
            "/v1/auth/passkey/finish",
            r#"{"challenge_id":7,"credential":{}}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey finish credential not an assertion",
            "/v1/auth/passkey/finish",
            r#"{"challenge_id":"abc","credential":{"id":"x","rawId":[1,2],"type":"public-key"}}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey finish challenge with a NUL",
            "/v1/auth/passkey/finish",
            &format!(
                r#"{{"challenge_id":"{}\u0000","credential":{{"id":"AQ","rawId":"AQ","type":"public-key","response":{{"authenticatorData":"AA","clientDataJSON":"e30","signature":"AA"}}}}}}"#,
                "a".repeat(42)
            ),
            S::BAD_REQUEST,
        ),
        json_case(
            "passkey finish credential a string",
            "/v1/auth/passkey/finish",
            r#"{"challenge_id":"abc","credential":"eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0"}"#,
            S::BAD_REQUEST,
        ),
        Case {
            name: "passkey finish 64 KiB+",
            method: Method::POST,
            path: "/v1/auth/passkey/finish",
            content_type: Some("application/json"),
            body: format!(
                r#"{{"challenge_id":"abc","credential":{{"id":"{}"}}}}"#,
                "x".repeat(70 * 1024)
            )
            .into_bytes(),
            status: S::PAYLOAD_TOO_LARGE,
            code: "invalid_request",
        },
        Case {
            name: "passkey start form content type",
            method: Method::POST,
            path: "/v1/auth/passkey/start",
            content_type: Some("application/x-www-form-urlencoded"),
            body: b"username=alice".to_vec(),
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        Case {
            name: "passkey registration without a token",
            method: Method::POST,
            path: "/v1/me/passkeys/register/start",
            content_type: None,
            body: vec![],
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        Case {
            name: "passkey list without a token",
            method: Method::GET,
            path: "/v1/me/passkeys",
            content_type: None,
            body: vec![],
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        Case {
            name: "passkey removal without a token",
            method: Method::DELETE,
            path: "/v1/me/passkeys/abc",
            content_type: None,
            body: vec![],
            status: S::UNAUTHORIZED,
            code: "invalid_token",
        },
        Case {
            name: "unknown route",
            method: Method::GET,
            path: "/v2/nothing",
            content_type: None,
            body: vec![],
            status: S::NOT_FOUND,
            code: "not_found",
        },
        Case {
            name: "unknown route post",
            method: Method::POST,
            path: "/v1/auth/nothing",
            content_type: None,
            body: vec![],
            status: S::NOT_FOUND,
            code: "not_found",
        },
    ];
    for (method, path) in [
        (Method::GET, "/v1/auth/login"),
        (Method::PUT, "/v1/auth/register"),
        (Method::DELETE, "/v1/me"),
        (Method::POST, "/.well-known/jwks.json"),
        (Method::PATCH, "/v1/sessions"),
        (Method::TRACE, "/v1/me"),
        (Method::TRACE, "/v1/auth/login"),
        (Method::GET, "/v1/auth/password-reset"),
        (Method::GET, "/v1/auth/password-reset/confirm"),
        (Method::DELETE, "/v1/me/email"),
        (Method::GET, "/v1/me/email/verify"),
        (Method::GET, "/v1/me/totp"),
        (Method::PUT, "/v1/me/totp/confirm"),
        (Method::GET, "/v1/auth/mfa"),
        (Method::GET, "/v1/auth/passkey/start"),
        (Method::GET, "/v1/auth/passkey/finish"),
        (Method::PUT, "/v1/me/passkeys"),
        (Method::GET, "/v1/me/passkeys/register/start"),
        (Method::DELETE, "/v1/me/passkeys/register/finish"),
        (Method::POST, "/v1/me/passkeys/abc"),
    ] {
        cases.push(Case {
            name: "wrong method",
            method,
            path,
            content_type: None,
            body: vec![],
            status: S::METHOD_NOT_ALLOWED,
            code: "method_not_allowed",
        });
    }
    cases
}

/// Malformed input to the endpoints that take an access token first: sent
/// with a good one, so that the body is what is refused.
fn authenticated_cases() -> Vec<Case> {
    use StatusCode as S;
    let json = |name, method: Method, path, body: &str, status, code| Case {
        name,
        method,
        path,
        content_type: Some("application/json"),
        body: body.as_bytes().to_vec(),
        status,
        code,
    };
    let long_code = format!(r#"{{"code":"{}"}}"#, "1".repeat(65));
    let long_password = format!(r#"{{"current_password":"{}"}}"#, "x".repeat(1025));
    let confirm = "/v1/me/totp/confirm";
    let totp = "/v1/me/totp";
    vec![
        json(
            "confirm bad json",
            Method::POST,
            confirm,
            "{",
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "confirm no code",
            Method::POST,
            confirm,
            "{}",
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "confirm code of the wrong type",
            Method::POST,
            confirm,
            r#"{"code":123456}"#,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "confirm unknown field",
            Method::POST,
            confirm,
            r#"{"code":"123456","secret":"x"}"#,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "confirm empty code",
            Method::POST,
            confirm,
            r#"{"code":""}"#,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "confirm long code",
            Method::POST,
            confirm,
            &long_code,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "confirm with nothing started",
            Method::POST,
            confirm,
            r#"{"code":"123456"}"#,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        Case {
            name: "confirm text content type",
            method: Method::POST,
            path: confirm,
            content_type: Some("text/plain"),
            body: br#"{"code":"123456"}"#.to_vec(),
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        json(
            "remove bad json",
            Method::DELETE,
            totp,
            "[",
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "remove no password",
            Method::DELETE,
            totp,
            "{}",
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "remove password of the wrong type",
            Method::DELETE,
            totp,
            r#"{"current_password":["x"]}"#,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "remove empty password",
            Method::DELETE,
            totp,
            r#"{"current_password":""}"#,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        json(
            "remove long password",
            Method::DELETE,
            totp,
            &long_password,
            S::BAD_REQUEST,
            "invalid_request",
        ),
        Case {
            name: "remove without a body",
            method: Method::DELETE,
            path: totp,
            content_type: None,
            body: vec![],
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        Case {
            name: "64 KiB+ on totp start",
            method: Method::POST,
            path: totp,
            content_type: None,
            body: vec![b'x'; 65 * 1024],
            status: S::PAYLOAD_TOO_LARGE,
            code: "invalid_request",
        },
    ]
}

/// Sends `case` (with `bearer` as its access token) and checks its answer.
async fn check(app: &TestApp, case: &Case, bearer: Option<&str>) {
    let mut req = app
        .client
        .request(case.method.clone(), format!("{}{}", app.url, case.path))
        .body(case.body.clone());
    if let Some(ct) = case.content_type {
        req = req.header("content-type", ct);
    }
    if let Some(token) = bearer {
        req = req.bearer_auth(token);
    }
    let r = req.send().await.unwrap();
    let allow = r.headers().get("allow").cloned();
    assert_eq!(
        r.status(),
        case.status,
        "{}: {} {}",
        case.name,
        case.method,
        case.path
    );
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "{}",
        case.name
    );
    assert_error(r, case.status, case.code).await;
    if case.status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = allow.unwrap_or_else(|| panic!("{}: no Allow", case.path));
        assert!(!allow.to_str().unwrap().contains("TRACE"));
    }
}

#[tokio::test]
async fn malformed_requests_get_their_4xx_and_harm_nothing() {
    // With mail on, so that the recovery endpoints answer (nothing listens
    // there: no mail is meant to go out).
    let app = TestApp::spawn_with(&[("smtp_url", "smtp://127.0.0.1:9")]).await;
    let before = app.user_and_login("existing").await;
    for case in cases() {
        check(&app, &case, None).await;
    }
    for case in authenticated_cases() {
        check(&app, &case, Some(&before.access)).await;
    }
    // Nothing stored was lost: the user, their session and their password.
    assert_eq!(app.me(&before.access).await.status(), StatusCode::OK);
    app.refresh(&before.refresh).await;
    assert_eq!(app.service.list_users().await.unwrap().len(), 1);
    assert_eq!(
        app.login_raw("existing", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.get("/healthz").send().await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/readyz").send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// The passkey account endpoints, with a good access token: their bodies
/// get the same 4xx, and a passkey of the user's outlives them.
#[tokio::test]
async fn malformed_passkey_requests_get_their_4xx_and_harm_nothing() {
    use StatusCode as S;
    let app = TestApp::spawn().await;
    let (alice, mut key) = app
        .user_with_passkey("alice", crate::authenticator::Alg::Es256)
        .await;
    let finish = "/v1/me/passkeys/register/finish";
    let long_name = format!(
        r#"{{"challenge_id":"abc","credential":{{}},"name":"{}"}}"#,
        "n".repeat(65)
    );
    let mut cases = vec![
        json_case("bad json", finish, "{", S::BAD_REQUEST),
        json_case("not an object", finish, "[]", S::BAD_REQUEST),
        json_case("empty body", finish, "", S::BAD_REQUEST),
        json_case(
            "missing credential",
            finish,
            r#"{"challenge_id":"abc"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "null challenge",
            finish,
            r#"{"challenge_id":null,"credential":{}}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "unknown field",
            finish,
            r#"{"challenge_id":"abc","credential":{},"admin":true}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "name of the wrong type",
            finish,
            r#"{"challenge_id":"abc","credential":{},"name":5}"#,
            S::BAD_REQUEST,
        ),
        json_case("long name", finish, &long_name, S::BAD_REQUEST),
        json_case(
            "empty name",
            finish,
            r#"{"challenge_id":"abc","credential":{},"name":"  "}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "control character in the name",
            finish,
            r#"{"challenge_id":"abc","credential":{},"name":"a\u0000b"}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "credential not a registration",
            finish,
            r#"{"challenge_id":"abc","credential":{"type":"public-key","response":[]}}"#,
            S::BAD_REQUEST,
        ),
        json_case(
            "challenge with a NUL",
            finish,
            &format!(
                r#"{{"challenge_id":"{}\u0000","credential":{{"id":"AQ","rawId":"AQ","type":"public-key","response":{{"clientDataJSON":"e30","attestationObject":"oA"}}}}}}"#,
                "a".repeat(42)
            ),
            S::BAD_REQUEST,
        ),
        json_case(
            "unknown challenge",
            finish,
            r#"{"challenge_id":"abc","credential":{"id":"AQ","rawId":"AQ","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}}"#,
            S::BAD_REQUEST,
        ),
        Case {
            name: "64 KiB+",
            method: Method::POST,
            path: finish,
            content_type: Some("application/json"),
            body: vec![b' '; 65 * 1024],
            status: S::PAYLOAD_TOO_LARGE,
            code: "invalid_request",
        },
        Case {
            name: "no content type",
            method: Method::POST,
            path: finish,
            content_type: None,
            body: br#"{"challenge_id":"abc","credential":{}}"#.to_vec(),
            status: S::UNSUPPORTED_MEDIA_TYPE,
            code: "invalid_request",
        },
        Case {
            name: "64 KiB+ on the registration start",
            method: Method::POST,
            path: "/v1/me/passkeys/register/start",
            content_type: Some("application/json"),
            body: vec![b'x'; 65 * 1024],
            status: S::PAYLOAD_TOO_LARGE,
            code: "invalid_request",
        },
    ];
    for path in [
        "/v1/me/passkeys/no-such-id",
        "/v1/me/passkeys/%00",
        "/v1/me/passkeys/..%2F..%2Fme",
    ] {
        cases.push(Case {
            name: "unknown passkey",
            method: Method::DELETE,
            path,
            content_type: None,
            body: vec![],
            status: S::NOT_FOUND,
            code: "not_found",
        });
    }
    for case in &cases {
        check(&app, case, Some(&alice.access)).await;
    }
    assert_eq!(app.passkeys(&alice.access).await.len(), 1);
    let login = app.passkey_login(&mut key, None).await;
    assert_eq!(login.status(), S::OK);
}
