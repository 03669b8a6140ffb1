//! The OAuth 2.0 endpoints: token, revoke, introspect, metadata.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

impl TestApp {
    pub(crate) async fn form(
        &self,
        path: &str,
        params: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> reqwest::Response {
        let mut req = self.post(path).form(params);
        if let Some((id, secret)) = basic {
            req = req.basic_auth(id, Some(secret));
        }
        req.send().await.unwrap()
    }

    pub(crate) async fn token(
        &self,
        params: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> reqwest::Response {
        self.form("/oauth2/token", params, basic).await
    }

    pub(crate) async fn password_grant(&self, username: &str, extra: &[(&str, &str)]) -> Value {
        let mut params = vec![
            ("grant_type", "password"),
            ("username", username),
            ("password", PASSWORD),
        ];
        params.extend_from_slice(extra);
        let r = self.token(&params, None).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    /// A confidential client; answers its secret.
    pub(crate) async fn confidential(&self, id: &str, scope: &str) -> String {
        self.service
            .add_client(id, false, scope)
            .await
            .unwrap()
            .secret
            .unwrap()
    }

    pub(crate) async fn introspect(&self, token: &str, client: (&str, &str)) -> Value {
        let r = self
            .form("/oauth2/introspect", &[("token", token)], Some(client))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.json().await.unwrap()
    }
}

#[tokio::test]
async fn the_metadata_names_every_endpoint() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .get("/.well-known/oauth-authorization-server")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], app.url);
    for (member, path) in [
        ("token_endpoint", "/oauth2/token"),
        ("revocation_endpoint", "/oauth2/revoke"),
        ("introspection_endpoint", "/oauth2/introspect"),
        ("jwks_uri", "/.well-known/jwks.json"),
    ] {
        assert_eq!(doc[member], format!("{}{path}", app.url), "{member}");
    }
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!([
            "password",
            "refresh_token",
            "client_credentials",
            "urn:latchkey:params:oauth:grant-type:mfa"
        ])
    );
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(
        methods.contains(&"client_secret_basic".into())
            && methods.contains(&"client_secret_post".into())
    );
}

#[tokio::test]
async fn the_password_grant_opens_a_session_like_any_other() {
    let app = TestApp::spawn_with(&[("default_scope", "profile")]).await;
    app.register("alice", PASSWORD).await;
    let r = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["scope"], "profile");
    assert!(body["refresh_token"].as_str().unwrap().starts_with("lk1."));
    let access = body["access_token"].as_str().unwrap();
    let claims = claims_of(access);
    assert_eq!(claims["client_id"], "public");
    assert_eq!(claims["scope"], "profile");
    // Listed among the user's sessions, and killed by logout-all.
    let web = app.login("alice").await;
    let sessions: Value = app
        .get("/v1/sessions")
        .bearer_auth(&web.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 2);
    app.post("/v1/auth/logout-all")
        .bearer_auth(&web.access)
        .send()
        .await
        .unwrap();
    let r = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
            ],
            None,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
}

#[tokio::test]
async fn wrong_passwords_are_invalid_grant_and_count_toward_the_limit() {
    let app = TestApp::spawn_with(&[("login_max_failures", "2")]).await;
    app.register("alice", PASSWORD).await;
    let app = &app;
    let attempt = |password: &'static str| async move {
        app.token(
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", password),
            ],
            None,
        )
        .await
    };
    assert_error(
        attempt("nope").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_error(
        attempt("nope").await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    let r = attempt(PASSWORD).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The same limit as /v1.
    assert_error(
        app.login_raw("alice", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    )
    .await;
    let long = "x".repeat(1025);
    let r = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", "bob"),
                ("password", &long),
            ],
            None,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn refresh_token_grant_rotates_with_the_same_grace_and_reuse_rules() {
    let app = TestApp::spawn().await;
    app.register("alice", PASSWORD).await;
    let first = app.password_grant("alice", &[]).await;
    let r1 = first["refresh_token"].as_str().unwrap();
    let app = &app;
    let refresh = |token: String| async move {
        app.token(
            &[("grant_type", "refresh_token"), ("refresh_token", &token)],
            None,
        )
        .await
    };
    let second: Value = refresh(r1.to_owned()).await.json().await.unwrap();
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r2, r1);
    let again: Value = refresh(r1.to_owned()).await.json().await.unwrap();
    assert_eq!(
        again["refresh_token"],
        r2.as_str(),
        "inside the grace window: the same successor"
    );
    app.advance(Duration::from_secs(11));
    assert_error(
        refresh(r1.to_owned()).await,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
    )
    .await;
    assert_error(refresh(r2).await, StatusCode::BAD_REQUEST, "invalid_grant").await;
    assert!(app
        .audit_events()
        .await
        .contains(&"reuse_detected_late_retry".to_owned()));
}

#[tokio::test]
async fn a_refresh_token_of_another_client_is_invalid_grant_and_stays_alive() {
    let app = TestApp::spawn().await;
    app.register("alice", PASSWORD).await;
    app.service.add_client("mobile", true, "").await.unwrap();
    let r = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", "mobile"),
            ],
            None,
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        claims_of(body["access_token"].as_str().unwrap())["client_id"],
        "mobile"
    );
    let token = body["refresh_token"].as_str().unwrap();
    let r = app
        .token(
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
            None,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // A web refresh cookie carrying it is refused the same way.
    assert_error(
        app.refresh_raw(token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let r = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "mobile"),
            ],
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK, "nothing was spent");
}

#[tokio::test]
async fn client_credentials_for_confidential_clients_only() {
    let app = TestApp::spawn().await;
    let secret = app.confidential("reports", "read write").await;
    let r = app
        .token(
            &[("grant_type", "client_credentials")],
            Some(("reports", &secret)),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(body["scope"], "read write");
    let claims = claims_of(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "reports");
    assert_eq!(claims["client_id"], "reports");
    assert!(claims.get("sid").is_none());
    // client_secret_post, and a narrower scope.
    let r = app
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "reports"),
                ("client_secret", &secret),
                ("scope", "read"),
            ],
            None,
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["scope"], "read");
    let r = app
        .token(
            &[("grant_type", "client_credentials"), ("scope", "admin")],
            Some(("reports", &secret)),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_scope").await;
    // Wrong secret, unknown client, public client: 401 invalid_client with a Basic challenge.
    for r in [
        app.token(
            &[("grant_type", "client_credentials")],
            Some(("reports", "wrong")),
        )
        .await,
        app.token(
            &[("grant_type", "client_credentials")],
            Some(("nobody", "x")),
        )
        .await,
        app.token(&[("grant_type", "client_credentials")], None)
            .await,
        app.token(
            &[("grant_type", "client_credentials"), ("client_id", "web")],
            None,
        )
        .await,
    ] {
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    }
}

#[tokio::test]
async fn malformed_token_requests() {
    let app = TestApp::spawn().await;
    let secret = app.confidential("reports", "").await;
    assert_error(
        app.token(&[("grant_type", "authorization_code")], None)
            .await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    )
    .await;
    assert_error(
        app.token(&[], None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert_error(
        app.token(&[("grant_type", "password")], None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let r = app
        .post("/oauth2/token")
        .body("grant_type=password&grant_type=client_credentials")
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = app
        .post("/oauth2/token")
        .json(&serde_json::json!({"grant_type": "password"}))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "invalid_request").await;
    // Two authentication methods at once.
    let r = app
        .token(
            &[
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
            Some(("reports", &secret)),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let r = app
        .post("/oauth2/token")
        .header("authorization", "Basic !!!")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = app
        .client
        .get(format!("{}/oauth2/token", app.url))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn revocation_kills_the_session_of_a_refresh_or_access_token() {
    let app = TestApp::spawn().await;
    app.register("alice", PASSWORD).await;
    let revoke = |token: String, client: Option<&'static str>| {
        let mut params = vec![("token", token)];
        if let Some(id) = client {
            params.push(("client_id", id.to_owned()));
        }
        app.post("/oauth2/revoke").form(&params).send()
    };
    assert_eq!(
        revoke("no such token".into(), None).await.unwrap().status(),
        StatusCode::OK
    );
    let by_refresh = app.password_grant("alice", &[]).await;
    let r = revoke(by_refresh["refresh_token"].as_str().unwrap().into(), None)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_error(
        app.me(by_refresh["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let by_access = app.password_grant("alice", &[]).await;
    revoke(by_access["access_token"].as_str().unwrap().into(), None)
        .await
        .unwrap();
    let r = app
        .token(
            &[
                ("grant_type", "refresh_token"),
                (
                    "refresh_token",
                    by_access["refresh_token"].as_str().unwrap(),
                ),
            ],
            None,
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_grant").await;
    // Another client's token: refused, and it stays alive.
    let web = app.login("alice").await;
    app.service.add_client("mobile", true, "").await.unwrap();
    let r = revoke(web.refresh.clone(), Some("mobile")).await.unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "unauthorized_client").await;
    assert_eq!(app.me(&web.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn introspection_reflects_revocation_at_once() {
    let app = TestApp::spawn().await;
    let secret = app.confidential("api", "").await;
    let me = ("api", secret.as_str());
    let pair = app.user_and_login("alice").await;
    let active = app.introspect(&pair.access, me).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["sub"], pair.body["user"]["id"]);
    assert_eq!(active["sid"], pair.session_id.as_str());
    assert_eq!(active["username"], "alice");
    assert_eq!(active["client_id"], "web");
    assert_eq!(active["token_type"], "Bearer");
    assert_eq!(active["iss"], app.url);
    for member in ["exp", "iat", "aud", "scope"] {
        assert!(active.get(member).is_some(), "{member}");
    }
    let refresh = app.introspect(&pair.refresh, me).await;
    assert_eq!(refresh["active"], true);
    assert!(refresh.get("token_type").is_none());
    assert_eq!(refresh["sid"], pair.session_id.as_str());
    // A spent refresh token is not active; nor is anything after logout.
    let next = app.refresh(&pair.refresh).await;
    assert_eq!(
        app.introspect(&pair.refresh, me).await,
        serde_json::json!({"active": false})
    );
    app.post("/v1/auth/logout")
        .bearer_auth(&next.access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.introspect(&next.access, me).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        app.introspect(&next.refresh, me).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        app.introspect("garbage", me).await,
        serde_json::json!({"active": false})
    );
    // A client_credentials token: sub is the client, no sid, no username.
    let cc: Value = app
        .token(&[("grant_type", "client_credentials")], Some(me))
        .await
        .json()
        .await
        .unwrap();
    let info = app
        .introspect(cc["access_token"].as_str().unwrap(), me)
        .await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], "api");
    assert!(info.get("sid").is_none() && info.get("username").is_none());
    // Public clients may not introspect.
    let r = app
        .form(
            "/oauth2/introspect",
            &[("token", &pair.access), ("client_id", "web")],
            None,
        )
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
}

#[tokio::test]
async fn removing_a_client_ends_the_sessions_it_opened() {
    let app = TestApp::spawn().await;
    let web = app.user_and_login("alice").await;
    app.service.add_client("reader", true, "").await.unwrap();
    let r = app
        .post("/oauth2/token")
        .form(&[
            ("grant_type", "password"),
            ("client_id", "reader"),
            ("username", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(app.me(access).await.status(), StatusCode::OK);

    app.service.remove_client("reader").await.unwrap();
    let r = app.me(access).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // The user's own session stands.
    assert_eq!(app.me(&web.access).await.status(), StatusCode::OK);
    assert!(app
        .audit_events()
        .await
        .contains(&"client_removed".to_owned()));
}

#[tokio::test]
async fn a_client_removed_on_this_node_is_refused_at_once_through_the_caches() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    let auditor = app.confidential("auditor", "").await;
    let auditor = ("auditor", auditor.as_str());
    let gone = app.confidential("gone", "").await;
    let gone = ("gone", gone.as_str());
    let cc: Value = app
        .token(&[("grant_type", "client_credentials")], Some(gone))
        .await
        .json()
        .await
        .unwrap();
    let cc = cc["access_token"].as_str().unwrap();
    // Used, so the client and both tokens sit in the caches.
    assert_eq!(app.introspect(&pair.access, gone).await["active"], true);
    assert_eq!(app.introspect(cc, auditor).await["active"], true);

    app.service.remove_client("gone").await.unwrap();
    let r = app
        .form("/oauth2/introspect", &[("token", &pair.access)], Some(gone))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    let r = app
        .token(&[("grant_type", "client_credentials")], Some(gone))
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_client").await;
    assert_eq!(
        app.introspect(cc, auditor).await,
        serde_json::json!({"active": false})
    );
    // A session ended after its token was introspected (and cached) is not
    // active either.
    assert_eq!(app.introspect(&pair.access, auditor).await["active"], true);
    app.post("/v1/auth/logout")
        .bearer_auth(&pair.access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        app.introspect(&pair.access, auditor).await,
        serde_json::json!({"active": false})
    );
}
