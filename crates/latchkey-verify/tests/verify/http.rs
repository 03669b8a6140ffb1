//! An axum app protected by the layer and the extractors, driven over
//! HTTP.

use axum::routing::get;
use axum::{Extension, Router};
use latchkey_verify::{scope, Claims, RequireScope, Verifier};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::latchkey::Latchkey;
use crate::helpers::{now, JwksServer, TestKey};

scope!(PostsWrite = "posts:write");

async fn me(claims: Claims) -> String {
    claims.sub
}

async fn write(claims: RequireScope<PostsWrite>) -> String {
    format!("written by {}", claims.sub)
}

async fn maybe(claims: Option<Claims>) -> String {
    claims.map_or_else(|| "anonymous".into(), |c| c.sub)
}

/// `/me` behind the layer, `/admin` behind a layer requiring `admin`,
/// `/write`, `/maybe` and `/public` with the verifier as an extension (the
/// extractors decide), `/unwired` with neither.
fn app(verifier: &Verifier) -> Router {
    let layered = Router::new()
        .route("/me", get(me))
        .route_layer(verifier.layer());
    let admin = Router::new()
        .route("/admin", get(me))
        .route_layer(verifier.layer().require_scope("admin"));
    let lazy = Router::new()
        .route("/write", get(write))
        .route("/maybe", get(maybe))
        .route("/public", get(|| async { "public" }))
        .layer(Extension(verifier.clone()));
    let unwired = Router::new().route("/unwired", get(me));
    layered.merge(admin).merge(lazy).merge(unwired)
}

struct Api {
    url: String,
    client: reqwest::Client,
}

impl Api {
    async fn start(app: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url,
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

fn challenge(r: &Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The status, and the body's `error` (with exactly the two members).
async fn error_of(r: Response, status: StatusCode) -> String {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 2, "{body}");
    assert!(!body["error_description"].as_str().unwrap().is_empty());
    body["error"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_latchkey_token_opens_the_protected_routes() {
    let server = Latchkey::spawn(&[("default_scope", "posts:read")]).await;
    let login = server.user("carol").await;
    let verifier = Verifier::builder()
        .jwks_url(server.jwks_url())
        .issuer(&server.url)
        .audience(&server.url)
        .build()
        .unwrap();
    let api = Api::start(app(&verifier)).await;
    let token = login.access_token.as_str();

    // 200 with the token.
    let r = api.get("/me", Some(token)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), login.user_id);

    // 401 without one: a bare challenge (RFC 6750 §3.1).
    let r = api.get("/me", None).await;
    assert_eq!(challenge(&r), "Bearer");
    assert_eq!(error_of(r, StatusCode::UNAUTHORIZED).await, "invalid_token");

    // 401 invalid_token with a bad one: tampered, or junk.
    let mut tampered = token.to_owned();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    for bad in [tampered.as_str(), "not-a-token"] {
        let r = api.get("/me", Some(bad)).await;
        assert!(
            challenge(&r).starts_with(r#"Bearer error="invalid_token""#),
            "{}",
            challenge(&r)
        );
        assert_eq!(error_of(r, StatusCode::UNAUTHORIZED).await, "invalid_token");
    }

    // 403 insufficient_scope from the layer's scope guard...
    let r = api.get("/admin", Some(token)).await;
    assert_eq!(
        challenge(&r),
        r#"Bearer error="insufficient_scope", scope="admin""#
    );
    assert_eq!(
        error_of(r, StatusCode::FORBIDDEN).await,
        "insufficient_scope"
    );
    // ...and from the RequireScope extractor.
    let r = api.get("/write", Some(token)).await;
    assert_eq!(
        challenge(&r),
        r#"Bearer error="insufficient_scope", scope="posts:write""#
    );
    assert_eq!(
        error_of(r, StatusCode::FORBIDDEN).await,
        "insufficient_scope"
    );
    // The scope guard checks the token first.
    let r = api.get("/admin", None).await;
    assert_eq!(challenge(&r), "Bearer");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Unknown paths are not hidden behind a 401 (route_layer).
    assert_eq!(
        api.get("/nowhere", None).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn extractors_scopes_and_cookies() {
    let key = TestKey::ed25519("k1");
    let jwks = JwksServer::start(&[&key]).await;
    let verifier = jwks.builder().token_cookie("accessToken").build().unwrap();
    let api = Api::start(app(&verifier)).await;
    let writer = key.token(
        &jwks.url,
        json!({"scope": "posts:read posts:write", "sub": "w"}),
    );
    let admin = key.token(&jwks.url, json!({"scope": "admin", "sub": "a"}));
    let expired = key.token(&jwks.url, json!({"exp": now() - 3600}));

    let r = api.get("/write", Some(&writer)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "written by w");
    let r = api.get("/admin", Some(&admin)).await;
    assert_eq!(r.text().await.unwrap(), "a");

    // Public routes stay public; Option<Claims> is None without a token,
    // yet a bad token is still refused.
    assert_eq!(
        api.get("/public", None).await.text().await.unwrap(),
        "public"
    );
    assert_eq!(
        api.get("/maybe", None).await.text().await.unwrap(),
        "anonymous"
    );
    assert_eq!(
        api.get("/maybe", Some(&writer)).await.text().await.unwrap(),
        "w"
    );
    let r = api.get("/maybe", Some(&expired)).await;
    assert_eq!(
        challenge(&r),
        r#"Bearer error="invalid_token", error_description="the access token expired""#
    );
    assert_eq!(error_of(r, StatusCode::UNAUTHORIZED).await, "invalid_token");

    // The cookie carries the token when there is no header.
    let r = api
        .client
        .get(format!("{}/me", api.url))
        .header("cookie", format!("theme=dark; accessToken={writer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "w");
    // Not when no cookie was configured.
    let headerless = Api::start(app(&jwks.builder().build().unwrap())).await;
    let r = headerless
        .client
        .get(format!("{}/me", headerless.url))
        .header("cookie", format!("accessToken={writer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge(&r), "Bearer");

    // A malformed Authorization header is a bad request.
    let r = api
        .client
        .get(format!("{}/me", api.url))
        .header("authorization", "Bearer")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r, StatusCode::BAD_REQUEST).await,
        "invalid_request"
    );

    // A handler wired without a verifier fails closed.
    let r = api.get("/unwired", Some(&writer)).await;
    assert_eq!(
        error_of(r, StatusCode::INTERNAL_SERVER_ERROR).await,
        "server_error"
    );
}

#[tokio::test]
async fn unreachable_keys_answer_503_not_401() {
    let key = TestKey::ed25519("k1");
    let jwks = JwksServer::start(&[&key]).await;
    jwks.set_mode(crate::helpers::Mode::Status(StatusCode::BAD_GATEWAY));
    let api = Api::start(app(&jwks.builder().build().unwrap())).await;
    let r = api.get("/me", Some(&key.token(&jwks.url, json!({})))).await;
    assert!(r.headers().get("www-authenticate").is_none());
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(
        error_of(r, StatusCode::SERVICE_UNAVAILABLE).await,
        "temporarily_unavailable"
    );
}
