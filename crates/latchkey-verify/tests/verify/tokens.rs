//! What a token must be to pass, against keys of the test's own.

use std::time::Duration;

use latchkey_verify::{Algorithm, Error, FetchError, Verifier};
use serde_json::json;

use crate::helpers::{b64, claims, now, JwksServer, TestKey};

struct Setup {
    server: JwksServer,
    ed: TestKey,
    ec: TestKey,
    rsa: TestKey,
    verifier: Verifier,
}

async fn setup() -> Setup {
    let ed = TestKey::ed25519("ed");
    let ec = TestKey::es256("ec");
    let rsa = TestKey::rs256("rsa");
    let server = JwksServer::start(&[&ed, &ec, &rsa]).await;
    let verifier = server.builder().build().unwrap();
    Setup {
        server,
        ed,
        ec,
        rsa,
        verifier,
    }
}

#[tokio::test]
async fn good_tokens_of_every_algorithm_pass() {
    let s = setup().await;
    for key in [&s.ed, &s.ec, &s.rsa] {
        let c = s
            .verifier
            .verify(&key.token(&s.server.url, json!({})))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.alg));
        assert_eq!(c.sub, "user-1");
        assert_eq!(c.sid.as_deref(), Some("session-1"));
        assert_eq!(c.client_id, "web");
        assert_eq!(c.jti, "jti-1");
        assert_eq!(c.iss, s.server.url);
        assert_eq!(c.aud, vec![s.server.url.clone()]);
        assert!(c.has_scope("posts:read"));
        assert!(!c.has_scope("posts:write"));
    }
    // application/at+jwt, any case, passes too; client_credentials tokens
    // have no sid.
    let header = json!({"alg": "EdDSA", "typ": "Application/AT+JWT", "kid": "ed"});
    let token =
        s.ed.sign_with(&header, &claims(&s.server.url, json!({"sid": null})));
    let c = s.verifier.verify(&token).await.unwrap();
    assert_eq!(c.sid, None);
    assert_eq!(s.server.hits(), 1, "one fetch served them all");
}

#[tokio::test]
async fn wrong_issuer_audience_and_type_are_refused() {
    let s = setup().await;
    let url = &s.server.url;
    let t = s.ed.token(url, json!({"iss": "http://127.0.0.1:1"}));
    assert!(matches!(
        s.verifier.verify(&t).await,
        Err(Error::InvalidIssuer)
    ));
    let t = s.ed.token(url, json!({"aud": "http://api.other"}));
    assert!(matches!(
        s.verifier.verify(&t).await,
        Err(Error::InvalidAudience)
    ));
    let t = s.ed.token(url, json!({"aud": ["http://api.other", url]}));
    assert!(s.verifier.verify(&t).await.is_ok(), "aud as an array");
    for typ in [json!("JWT"), json!("jwt"), json!("at+jwt2"), json!(null)] {
        let mut header = s.ed.header();
        if typ.is_null() {
            header.as_object_mut().unwrap().remove("typ");
        } else {
            header["typ"] = typ;
        }
        let t = s.ed.sign_with(&header, &claims(url, json!({})));
        assert!(matches!(
            s.verifier.verify(&t).await,
            Err(Error::InvalidType)
        ));
    }
}

#[tokio::test]
async fn none_and_mismatched_algorithms_are_refused() {
    let s = setup().await;
    let url = &s.server.url;
    let payload = b64(serde_json::to_vec(&claims(url, json!({}))).unwrap());

    // alg none, with and without a signature.
    for alg in ["none", "NONE"] {
        let header = b64(format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"ed"}}"#));
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            match s.verifier.verify(&token).await {
                Err(Error::UnsupportedAlgorithm(a)) => assert_eq!(a, alg),
                other => panic!("{alg}: {other:?}"),
            }
        }
    }

    // HS256 "signed" with the RSA key's public modulus: the classic
    // confusion, refused before any key is used.
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "rsa"});
    let input = format!("{}.{payload}", b64(serde_json::to_vec(&header).unwrap()));
    let n = s.rsa.jwk["n"].as_str().unwrap();
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, n.as_bytes()),
        input.as_bytes(),
    );
    let token = format!("{input}.{}", b64(mac.as_ref()));
    assert!(matches!(
        s.verifier.verify(&token).await,
        Err(Error::UnsupportedAlgorithm(_))
    ));

    // A header that names the Ed25519 key but claims ES256 (signed with the
    // P-256 key): the key pins EdDSA.
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "ed"});
    let token = s.ec.sign_with(&header, &claims(url, json!({})));
    match s.verifier.verify(&token).await {
        Err(Error::AlgorithmMismatch { header, key }) => {
            assert_eq!(header, "ES256");
            assert_eq!(key, Algorithm::EdDsa);
        }
        other => panic!("{other:?}"),
    }
    // And the reverse: RS256 claimed for the P-256 key.
    let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": "ec"});
    let token = s.rsa.sign_with(&header, &claims(url, json!({})));
    assert!(matches!(
        s.verifier.verify(&token).await,
        Err(Error::AlgorithmMismatch { .. })
    ));
    // A key of the right kind, the wrong key: bad signature.
    let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed"});
    let other = TestKey::ed25519("ed");
    let token = other.sign_with(&header, &claims(url, json!({})));
    assert!(matches!(
        s.verifier.verify(&token).await,
        Err(Error::InvalidSignature)
    ));
}

#[tokio::test]
async fn expiry_and_not_before_use_the_leeway() {
    let s = setup().await;
    let url = &s.server.url;
    let now = now();
    let t = s.ed.token(url, json!({"exp": now - 120}));
    assert!(matches!(s.verifier.verify(&t).await, Err(Error::Expired)));
    let within = s.ed.token(url, json!({"exp": now - 20}));
    assert!(
        s.verifier.verify(&within).await.is_ok(),
        "within the 60 s default leeway"
    );
    let t = s.ed.token(url, json!({"nbf": now + 300}));
    assert!(matches!(
        s.verifier.verify(&t).await,
        Err(Error::NotYetValid)
    ));
    let soon = s.ed.token(url, json!({"nbf": now + 20}));
    assert!(s.verifier.verify(&soon).await.is_ok());

    let strict = s.server.builder().leeway(Duration::ZERO).build().unwrap();
    assert!(matches!(strict.verify(&within).await, Err(Error::Expired)));
    assert!(matches!(
        strict.verify(&soon).await,
        Err(Error::NotYetValid)
    ));
    let t = s.ed.token(url, json!({"exp": now}));
    assert!(matches!(strict.verify(&t).await, Err(Error::Expired)));
}

#[tokio::test]
async fn required_claims_must_be_present() {
    let s = setup().await;
    let url = &s.server.url;
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "client_id",
        "scope",
    ] {
        let t = s.ed.token(url, json!({ claim: null }));
        match s.verifier.verify(&t).await {
            Err(Error::MissingClaim(c)) => assert_eq!(c, claim),
            other => panic!("{claim}: {other:?}"),
        }
    }
    let t = s.ed.token(url, json!({"exp": "tomorrow"}));
    assert!(matches!(
        s.verifier.verify(&t).await,
        Err(Error::MalformedClaims(_))
    ));
    let t = s.ed.token(url, json!({"scope": ""}));
    let c = s.verifier.verify(&t).await.unwrap();
    assert_eq!(c.scopes().count(), 0, "an empty scope is allowed");
}

#[tokio::test]
async fn tampering_and_junk_are_refused() {
    let s = setup().await;
    let url = &s.server.url;
    let good = s.ed.token(url, json!({}));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64(serde_json::to_vec(&claims(url, json!({"sub": "admin"}))).unwrap());
    let forged = parts.join(".");
    assert!(matches!(
        s.verifier.verify(&forged).await,
        Err(Error::InvalidSignature)
    ));
    for junk in [
        "",
        "abc",
        "a.b.c",
        &format!("{good}.x"),
        &good.replace('.', ""),
    ] {
        assert!(
            matches!(s.verifier.verify(junk).await, Err(Error::Malformed(_))),
            "{junk}"
        );
    }
    let header = json!({"alg": "EdDSA", "typ": "at+jwt"});
    let t = s.ed.sign_with(&header, &claims(url, json!({})));
    assert!(matches!(
        s.verifier.verify(&t).await,
        Err(Error::MissingKeyId)
    ));
    let t = TestKey::ed25519("nobody").token(url, json!({}));
    match s.verifier.verify(&t).await {
        Err(e @ Error::UnknownKey(_)) => assert!(e.is_invalid_token()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn discovery_finds_the_key_set_from_the_issuer() {
    let s = setup().await;
    let discovering = Verifier::builder()
        .issuer(&s.server.url)
        .audience(&s.server.url)
        .build()
        .unwrap();
    let c = discovering
        .verify(&s.ec.token(&s.server.url, json!({})))
        .await
        .unwrap();
    assert_eq!(c.sub, "user-1");
    assert_eq!(s.server.hits(), 1);

    // Metadata for another issuer is refused (RFC 8414 §3.3): the server
    // names itself, not this path-qualified issuer.
    let elsewhere = format!("{}/tenant", s.server.url);
    let wrong = Verifier::builder()
        .issuer(&elsewhere)
        .audience(&elsewhere)
        .build()
        .unwrap();
    match wrong.verify(&s.ec.token(&elsewhere, json!({}))).await {
        Err(Error::KeysUnavailable(FetchError::Invalid { message, .. })) => {
            assert!(message.contains("issuer"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.server.hits(), 1, "no key set was fetched for it");
}
