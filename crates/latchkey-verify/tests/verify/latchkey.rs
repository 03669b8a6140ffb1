//! Tokens from a real latchkey server, started in the test.

use latchkey_verify::{Error, Verifier};

use crate::helpers::latchkey::Latchkey;

async fn verifies_a_login(signing_alg: &str) {
    let server = Latchkey::spawn(&[
        ("signing_alg", signing_alg),
        ("default_scope", "posts:read posts:write"),
    ])
    .await;
    let login = server.user("alice").await;
    let verifier = Verifier::builder()
        .jwks_url(server.jwks_url())
        .issuer(&server.url)
        .audience(&server.url)
        .build()
        .unwrap();
    let claims = verifier
        .verify(&login.access_token)
        .await
        .unwrap_or_else(|e| panic!("{signing_alg}: {e}"));
    assert_eq!(claims.sub, login.user_id);
    assert_eq!(claims.sid.as_deref(), Some(login.session_id.as_str()));
    assert_eq!(claims.client_id, "web");
    assert_eq!(claims.iss, server.url);
    assert_eq!(claims.aud, vec![server.url.clone()]);
    assert!(claims.has_scope("posts:write"));
    assert!(!claims.jti.is_empty());
    assert!(claims.exp > claims.iat);

    // The same token for another audience or issuer is refused.
    let other = Verifier::builder()
        .jwks_url(server.jwks_url())
        .issuer(&server.url)
        .audience("https://api.elsewhere.example")
        .build()
        .unwrap();
    assert!(matches!(
        other.verify(&login.access_token).await,
        Err(Error::InvalidAudience)
    ));
    let other = Verifier::builder()
        .jwks_url(server.jwks_url())
        .issuer("http://127.0.0.1:1")
        .audience(&server.url)
        .build()
        .unwrap();
    assert!(matches!(
        other.verify(&login.access_token).await,
        Err(Error::InvalidIssuer)
    ));
}

#[tokio::test]
async fn verifies_an_eddsa_token_from_latchkey() {
    verifies_a_login("EdDSA").await;
}

#[tokio::test]
async fn verifies_an_es256_token_from_latchkey() {
    verifies_a_login("ES256").await;
}

#[tokio::test]
async fn verifies_an_rs256_token_from_latchkey() {
    verifies_a_login("RS256").await;
}

#[tokio::test]
async fn a_token_of_another_latchkey_is_refused() {
    let a = Latchkey::spawn(&[]).await;
    let b = Latchkey::spawn(&[]).await;
    let login = b.user("bob").await;
    // b's token, presented to a verifier of a's keys (a's URL as issuer
    // too): b's kid is not among a's keys.
    let verifier = Verifier::builder()
        .jwks_url(a.jwks_url())
        .issuer(&a.url)
        .audience(&a.url)
        .build()
        .unwrap();
    assert!(matches!(
        verifier.verify(&login.access_token).await,
        Err(Error::UnknownKey(_))
    ));
}

#[tokio::test]
async fn finds_the_keys_through_latchkeys_own_discovery_document() {
    let server = Latchkey::spawn(&[]).await;
    let login = server.user("alice").await;
    // No JWKS URL: the issuer's RFC 8414 document names it.
    let verifier = Verifier::builder()
        .issuer(&server.url)
        .audience(&server.url)
        .build()
        .unwrap();
    let claims = verifier.verify(&login.access_token).await.unwrap();
    assert_eq!(claims.sub, login.user_id);
}
