//! The https-only rule: at build time for the URLs configured, at fetch
//! time for the `jwks_uri` discovery finds and for redirects.
//!
//! The test servers all listen on loopback, where plain http is allowed.
//! To stand for a remote http host, a test gives the verifier a client that
//! resolves a made-up name to the loopback server: without the rule, the
//! fetch would succeed.

use latchkey_verify::{redirect_policy, BuildError, Error, FetchError, Verifier, MAX_REDIRECTS};
use reqwest::redirect::Policy;
use serde_json::json;

use crate::helpers::{client_resolving, JwksServer, Mode, TestKey};

/// A name that is not loopback, resolved by [`client_resolving`] only.
const REMOTE: &str = "keys.example.test";

/// The URL a build refused as insecure.
fn insecure_url(result: Result<Verifier, BuildError>) -> String {
    let e = result.unwrap_err();
    assert!(e.to_string().contains("allow_insecure_http"), "{e}");
    match e {
        BuildError::InsecureUrl { url } => url,
        other => panic!("{other:?}"),
    }
}

/// The refusal a verification met: the URL refused and why.
fn refused(result: Result<latchkey_verify::Claims, Error>) -> (String, String) {
    match result {
        Err(Error::KeysUnavailable(FetchError::Insecure { url, message })) => (url, message),
        other => panic!("{other:?}"),
    }
}

#[test]
fn plain_http_to_a_remote_host_is_refused_at_build() {
    let keys_at = |url: &str| {
        Verifier::builder()
            .issuer("https://login.example.com")
            .audience("https://api.example.com")
            .jwks_url(url)
            .build()
    };
    for url in [
        "http://login.example.com/.well-known/jwks.json",
        "http://10.0.0.5:8080/jwks.json",
        "http://localhost./jwks.json",
        "http://127.0.0.1.nip.io/jwks.json",
        "http://[::ffff:127.0.0.1]/jwks.json",
    ] {
        insecure_url(keys_at(url));
    }
    assert!(keys_at("https://login.example.com/.well-known/jwks.json").is_ok());

    // Without a JWKS URL, the issuer is where discovery fetches from.
    let discovering = Verifier::builder()
        .issuer("http://login.example.com")
        .audience("https://api.example.com")
        .build();
    assert_eq!(insecure_url(discovering), "http://login.example.com/");
    // With one, the issuer is only a name to compare `iss` with.
    assert!(Verifier::builder()
        .issuer("http://login.example.com")
        .audience("https://api.example.com")
        .jwks_url("https://login.example.com/.well-known/jwks.json")
        .build()
        .is_ok());
}

#[tokio::test]
async fn plain_http_to_loopback_is_accepted() {
    for url in [
        "http://localhost:8080/jwks.json",
        "http://127.0.0.1/jwks.json",
        "http://127.10.20.30:9/jwks.json",
        "http://[::1]:8080/jwks.json",
    ] {
        let built = Verifier::builder()
            .issuer("https://login.example.com")
            .audience("https://api.example.com")
            .jwks_url(url)
            .build();
        assert!(built.is_ok(), "{url}: {built:?}");
    }
    // And fetched from, under the name `localhost` as well as by address.
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    let token = key.token(&server.url, json!({}));
    for jwks_url in [
        server.jwks_url(),
        format!("http://localhost:{}/jwks.json", server.addr.port()),
    ] {
        let verifier = server.builder().jwks_url(jwks_url).build().unwrap();
        verifier.verify(&token).await.unwrap();
    }
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn the_opt_in_allows_plain_http_to_any_host() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    let remote = server.jwks_url_as(REMOTE);
    let client = || client_resolving(REMOTE, server.addr, redirect_policy(true));

    let refused = server
        .builder()
        .jwks_url(&remote)
        .http_client(client())
        .build();
    assert_eq!(insecure_url(refused), remote);

    let verifier = server
        .builder()
        .jwks_url(&remote)
        .http_client(client())
        .allow_insecure_http(true)
        .build()
        .unwrap();
    verifier
        .verify(&key.token(&server.url, json!({})))
        .await
        .unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn discovery_naming_remote_http_keys_is_refused() {
    let key = TestKey::ed25519("k1");
    let server = JwksServer::start(&[&key]).await;
    let remote = server.jwks_url_as(REMOTE);
    server.set_jwks_uri(&remote);
    let discovering = |allow: bool| {
        Verifier::builder()
            .issuer(&server.url)
            .audience(&server.url)
            .http_client(client_resolving(
                REMOTE,
                server.addr,
                redirect_policy(allow),
            ))
            .allow_insecure_http(allow)
            .build()
            .unwrap()
    };
    let token = key.token(&server.url, json!({}));

    let (url, message) = refused(discovering(false).verify(&token).await);
    assert_eq!(url, remote);
    assert!(message.contains("jwks_uri"), "{message}");
    assert!(message.contains("loopback"), "{message}");
    assert_eq!(server.hits(), 0, "the key set was never fetched");

    // The opt-in lets it through: the refusal was the rule, nothing else.
    discovering(true).verify(&token).await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_redirect_to_remote_http_is_refused() {
    let key = TestKey::ed25519("k1");
    let source = JwksServer::start(&[&key]).await;
    let token = key.token(&source.url, json!({}));

    // The crate's own client: refused before any lookup of the name (which
    // would fail otherwise, with a transport error).
    source.set_mode(Mode::Redirect("http://example.invalid/jwks.json".into()));
    let (url, message) = refused(source.builder().build().unwrap().verify(&token).await);
    assert_eq!(url, "http://example.invalid/jwks.json");
    assert!(message.contains("loopback"), "{message}");

    // To a server that would answer, under a remote name.
    let target = JwksServer::start(&[&key]).await;
    source.set_mode(Mode::Redirect(target.jwks_url_as(REMOTE)));
    let through = |policy: Policy, allow: bool| {
        source
            .builder()
            .http_client(client_resolving(REMOTE, target.addr, policy))
            .allow_insecure_http(allow)
            .build()
            .unwrap()
    };
    let (url, _) = refused(through(redirect_policy(false), false).verify(&token).await);
    assert_eq!(url, target.jwks_url_as(REMOTE));
    assert_eq!(target.hits(), 0, "the redirect was not followed");

    // A client of the user's own that follows anything: the answer's URL
    // is still checked, and the keys it sent are not used.
    let (url, _) = refused(through(Policy::default(), false).verify(&token).await);
    assert_eq!(url, target.jwks_url_as(REMOTE));
    assert_eq!(target.hits(), 1);

    // With the opt-in, the same redirect is followed.
    through(redirect_policy(true), true)
        .verify(&token)
        .await
        .unwrap();
    assert_eq!(target.hits(), 2);
}

#[tokio::test]
async fn redirects_are_capped() {
    let key = TestKey::ed25519("k1");
    let token_for = |server: &JwksServer| key.token(&server.url, json!({}));

    // A chain of exactly MAX_REDIRECTS redirects is followed.
    let mut chain = Vec::new();
    for _ in 0..=MAX_REDIRECTS {
        chain.push(JwksServer::start(&[&key]).await);
    }
    for pair in chain.windows(2) {
        pair[0].set_mode(Mode::Redirect(pair[1].jwks_url()));
    }
    let first = &chain[0];
    let verifier = first.builder().build().unwrap();
    verifier.verify(&token_for(first)).await.unwrap();
    assert!(chain.iter().all(|s| s.hits() == 1));

    // One more is not: a server redirecting to itself is asked
    // MAX_REDIRECTS + 1 times, then given up on.
    let looping = JwksServer::start(&[&key]).await;
    looping.set_mode(Mode::Redirect(looping.jwks_url()));
    let verifier = looping.builder().build().unwrap();
    match verifier.verify(&token_for(&looping)).await {
        Err(Error::KeysUnavailable(FetchError::Transport { message, .. })) => {
            assert!(message.contains("redirects"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(looping.hits(), MAX_REDIRECTS + 1);
}
