//! JWKS, algorithms, key rotation and retirement, encrypted keys.

use std::time::Duration;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;

use crate::binary::latchkey;
use crate::helpers::*;

fn header_of(jwt: &str) -> Value {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    serde_json::from_slice(&b64.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap()
}

async fn jwks(app: &TestApp) -> Vec<Value> {
    let body: Value = app
        .get("/.well-known/jwks.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["keys"].as_array().unwrap().clone()
}

fn kids(keys: &[Value]) -> Vec<String> {
    keys.iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn access_tokens_follow_rfc_9068() {
    let app = TestApp::spawn().await;
    let pair = app.user_and_login("alice").await;
    let header = header_of(&pair.access);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    let keys = jwks(&app).await;
    assert_eq!(kids(&keys), [header["kid"].as_str().unwrap()]);
    let claims = claims_of(&pair.access);
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nbf",
        "jti",
        "sid",
        "client_id",
        "scope",
    ] {
        assert!(claims.get(claim).is_some(), "missing {claim}");
    }
    assert_eq!(claims["iss"], app.url);
    assert_eq!(claims["aud"], app.url);
    assert_eq!(claims["sub"], pair.body["user"]["id"]);
    assert_eq!(claims["sid"], pair.session_id.as_str());
    assert_eq!(claims["client_id"], "web");
    assert_eq!(claims["scope"], "");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
}

#[tokio::test]
async fn the_jwks_is_cacheable_and_public_only() {
    let app = TestApp::spawn_with(&[("jwks_max_age", "2m")]).await;
    let r = app.get("/.well-known/jwks.json").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "public, max-age=120");
    let body: Value = r.json().await.unwrap();
    for key in body["keys"].as_array().unwrap() {
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none());
        }
    }
}

#[tokio::test]
async fn es256_and_rs256_are_selectable() {
    for (alg, kty) in [("ES256", "EC"), ("RS256", "RSA")] {
        let app = TestApp::spawn_with(&[("signing_alg", alg)]).await;
        let pair = app.user_and_login("alice").await;
        assert_eq!(header_of(&pair.access)["alg"], alg);
        let keys = jwks(&app).await;
        assert_eq!(keys[0]["kty"], kty);
        assert_eq!(keys[0]["alg"], alg);
        assert_eq!(app.me(&pair.access).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn tokens_of_a_foreign_issuer_key_or_audience_are_refused() {
    let app = TestApp::spawn().await;
    let other = TestApp::spawn().await;
    let foreign = other.user_and_login("alice").await;
    app.user_and_login("alice").await;
    assert_error(
        app.me(&foreign.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    let strict = TestApp::spawn_with(&[("audience", "https://api.example")]).await;
    let pair = strict.user_and_login("alice").await;
    assert_eq!(claims_of(&pair.access)["aud"], "https://api.example");
    assert_eq!(strict.me(&pair.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_rotated_key_is_published_first_and_signs_later() {
    let app = TestApp::spawn_with(&[("jwks_max_age", "1m")]).await;
    let old = kids(&jwks(&app).await);
    let status = app.service.rotate_key(false).await.unwrap();
    app.service.reload_keys().await.unwrap();
    let published = kids(&jwks(&app).await);
    assert_eq!(published.len(), 2);
    assert!(published.contains(&status.kid));
    let pair = app.user_and_login("alice").await;
    assert_eq!(
        header_of(&pair.access)["kid"],
        old[0],
        "the old key signs until the new one's time"
    );
    app.advance(Duration::from_secs(65));
    let fresh = app.login("alice").await;
    assert_eq!(header_of(&fresh.access)["kid"], status.kid.as_str());
    // Tokens signed by the old key still verify; the old key is still published.
    assert_eq!(app.me(&pair.access).await.status(), StatusCode::OK);
    assert_eq!(kids(&jwks(&app).await).len(), 2);
    // Once every token it signed has expired (15 min + 60 s leeway), it leaves.
    app.advance(Duration::from_secs(16 * 60));
    assert_eq!(kids(&jwks(&app).await), std::slice::from_ref(&status.kid));
    assert!(app.audit_events().await.contains(&"key_rotated".to_owned()));
}

#[tokio::test]
async fn the_cli_rotates_and_the_running_server_picks_it_up_within_5_seconds() {
    let app = TestApp::spawn().await;
    let out = latchkey(
        &app.dir,
        &[
            "key",
            "rotate",
            "--now",
            "--database-url",
            &app.database_url,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kid = key["kid"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    loop {
        if kids(&jwks(&app).await).contains(&kid) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not picked up within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The CLI stamped the key with the wall clock; let the test clock catch up.
    app.advance(Duration::from_secs(10));
    let pair = app.user_and_login("alice").await;
    assert_eq!(header_of(&pair.access)["kid"], kid.as_str());
}

#[tokio::test]
async fn retiring_the_signing_key_hands_over_and_purge_kills_its_tokens() {
    let app = TestApp::spawn().await;
    let old_kid = kids(&jwks(&app).await)[0].clone();
    let pair = app.user_and_login("alice").await;
    // No published key to take over: refused.
    assert!(app.service.retire_key(&old_kid, false).await.is_err());
    let next = app.service.rotate_key(false).await.unwrap().kid;
    let retired = app.service.retire_key(&old_kid, false).await.unwrap();
    assert_eq!(retired.state.as_str(), "retired");
    let fresh = app.login("alice").await;
    assert_eq!(
        header_of(&fresh.access)["kid"],
        next.as_str(),
        "the published key signs at once"
    );
    assert_eq!(
        app.me(&pair.access).await.status(),
        StatusCode::OK,
        "retired keys still verify"
    );
    // Retiring again changes nothing.
    assert_eq!(
        app.service
            .retire_key(&old_kid, false)
            .await
            .unwrap()
            .retired_at,
        retired.retired_at
    );
    let purged = app.service.retire_key(&old_kid, true).await.unwrap();
    assert_eq!(purged.state.as_str(), "purged");
    assert_eq!(kids(&jwks(&app).await), [next]);
    assert_error(
        app.me(&pair.access).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    assert!(app.audit_events().await.contains(&"key_retired".to_owned()));
}

#[tokio::test]
async fn with_a_master_key_private_keys_are_stored_encrypted() {
    let master = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let app = TestApp::spawn_with(&[("master_key", &master)]).await;
    let pair = app.user_and_login("alice").await;
    let keys = app.service.store().list_keys().await.unwrap();
    assert!(keys.iter().all(|k| k.encrypted));
    assert!(aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(&keys[0].private_key).is_err());
    // No key file beside the database: the secret comes from the master key.
    assert!(!app.dir.path().join("latchkey.db.secret").exists());
    // A restart with the same master key keeps sessions and keys.
    let dir = app.stop().await;
    let again = TestApp::spawn_in(dir, &[("master_key", &master)]).await;
    let next = again.refresh(&pair.refresh).await;
    assert_eq!(again.me(&next.access).await.status(), StatusCode::OK);
}
