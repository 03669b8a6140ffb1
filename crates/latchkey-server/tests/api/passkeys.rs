//! Passkeys (API.md §10): registration while logged in, the list, removal,
//! and logins with and without a username, driven by a software
//! authenticator (`authenticator.rs`) through the real HTTP surface.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

use crate::authenticator::{b64, unb64, Alg, Authenticator};
use crate::helpers::*;

impl TestApp {
    async fn passkey_options(&self, access: &str) -> Value {
        let r = self
            .post("/v1/me/passkeys/register/start")
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.json().await.unwrap()
    }

    async fn finish_registration(&self, access: &str, body: Value) -> Response {
        self.post("/v1/me/passkeys/register/finish")
            .bearer_auth(access)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A new passkey of the caller's, made by `authenticator`; answers
    /// the 201's body.
    pub(crate) async fn add_passkey(
        &self,
        access: &str,
        authenticator: &mut Authenticator,
        name: Option<&str>,
    ) -> Value {
        let start = self.passkey_options(access).await;
        let credential = authenticator.create(&start["publicKey"]).unwrap();
        let mut body = json!({ "challenge_id": start["challenge_id"], "credential": credential });
        if let Some(name) = name {
            body["name"] = json!(name);
        }
        let r = self.finish_registration(access, body).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.unwrap()
    }

    pub(crate) async fn passkeys(&self, access: &str) -> Vec<Value> {
        let r = self
            .get("/v1/me/passkeys")
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["passkeys"].as_array().unwrap().clone()
    }

    async fn passkey_login_options(&self, username: Option<&str>) -> Value {
        let body = match username {
            Some(name) => json!({ "username": name }),
            None => json!({}),
        };
        let r = self
            .post("/v1/auth/passkey/start")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["cache-control"], "no-store");
        r.json().await.unwrap()
    }

    async fn finish_passkey_login(&self, challenge_id: &Value, credential: Value) -> Response {
        self.post("/v1/auth/passkey/finish")
            .json(&json!({ "challenge_id": challenge_id, "credential": credential }))
            .send()
            .await
            .unwrap()
    }

    /// Finishes the login `start` with `authenticator`'s answer, then
    /// presents that answer again: the first logs in, the second is refused.
    async fn finish_login_once(&self, start: &Value, authenticator: &mut Authenticator) {
        let credential = authenticator.get(&start["publicKey"]).unwrap();
        logged_in(
            self.finish_passkey_login(&start["challenge_id"], credential.clone())
                .await,
        )
        .await;
        let r = self
            .finish_passkey_login(&start["challenge_id"], credential)
            .await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }

    /// A whole passkey login with `authenticator`: the finish's answer.
    pub(crate) async fn passkey_login(
        &self,
        authenticator: &mut Authenticator,
        username: Option<&str>,
    ) -> Response {
        let start = self.passkey_login_options(username).await;
        let credential = authenticator
            .get(&start["publicKey"])
            .expect("the authenticator has a credential the options allow");
        self.finish_passkey_login(&start["challenge_id"], credential)
            .await
    }

    /// `username`, registered and logged in, with one passkey made by a
    /// new authenticator of `alg`.
    pub(crate) async fn user_with_passkey(
        &self,
        username: &str,
        alg: Alg,
    ) -> (Pair, Authenticator) {
        let login = self.user_and_login(username).await;
        let mut key = Authenticator::new(&self.url, alg);
        self.add_passkey(&login.access, &mut key, None).await;
        (login, key)
    }

    async fn delete_passkey(&self, access: &str, id: &str) -> Response {
        self.client
            .delete(format!("{}/v1/me/passkeys/{id}", self.url))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
    }
}

/// A change to an authenticator's answer.
type Tamper = fn(&mut Value);
/// A change to an authenticator.
type Setup = fn(&mut Authenticator);

/// The user id as its 16 bytes: the WebAuthn user handle.
fn handle_of(user_id: &str) -> Vec<u8> {
    uuid::Uuid::parse_str(user_id).unwrap().as_bytes().to_vec()
}

fn instant(value: &Value) -> time::OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

async fn logged_in(r: Response) -> Pair {
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "no-store");
    pair_of(r).await
}

#[tokio::test]
async fn a_passkey_is_registered_then_logs_in_with_and_without_a_username() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let user_id = alice.body["user"]["id"].as_str().unwrap().to_owned();

    let start = app.passkey_options(&alice.access).await;
    assert_eq!(start.as_object().unwrap().len(), 2, "{start}");
    assert_eq!(start["challenge_id"].as_str().unwrap().len(), 43);
    let options = &start["publicKey"];
    assert_eq!(options["rp"]["id"], "127.0.0.1", "the issuer's host");
    assert_eq!(
        unb64(options["user"]["id"].as_str().unwrap()),
        handle_of(&user_id)
    );
    assert_eq!(options["user"]["name"], "alice");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(options["attestation"], "none");
    assert_eq!(options["excludeCredentials"], json!([]));

    let mut phone = Authenticator::new(&app.url, Alg::Es256);
    let credential = phone.create(options).unwrap();
    let r = app
        .finish_registration(
            &alice.access,
            json!({ "challenge_id": start["challenge_id"], "credential": credential, "name": "  Phone  " }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert_eq!(created.as_object().unwrap().len(), 3, "{created}");
    assert_eq!(created["name"], "Phone");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let listed = app.passkeys(&alice.access).await;
    assert_eq!(
        listed,
        [json!({
            "id": created["id"],
            "name": "Phone",
            "created_at": created["created_at"],
            "last_used_at": null,
        })]
    );
    // A second registration excludes the passkey this authenticator holds.
    let again = app.passkey_options(&alice.access).await;
    assert_eq!(
        again["publicKey"]["excludeCredentials"][0]["id"],
        b64(&phone.credentials[0].id)
    );
    assert_eq!(phone.create(&again["publicKey"]), None);

    // With the username: the options name alice's passkey, nothing more.
    let start = app.passkey_login_options(Some("ALICE")).await;
    assert_eq!(
        start["publicKey"]["allowCredentials"],
        json!([{ "type": "public-key", "id": b64(&phone.credentials[0].id) }])
    );
    assert_eq!(start["publicKey"]["userVerification"], "required");
    assert_eq!(start["publicKey"]["rpId"], "127.0.0.1");
    let credential = phone.get(&start["publicKey"]).unwrap();
    app.advance(Duration::from_secs(60));
    let login = logged_in(
        app.finish_passkey_login(&start["challenge_id"], credential)
            .await,
    )
    .await;
    assert_eq!(login.body["user"]["id"], user_id.as_str());
    assert_eq!(login.body["token_type"], "Bearer");
    let claims = claims_of(&login.access);
    assert_eq!(claims["amr"], json!(["hwk", "user"]));
    assert_eq!(claims["auth_time"], claims["iat"]);
    assert_eq!(claims["client_id"], "web");
    assert_eq!(claims["sub"], user_id.as_str());
    // A session like any other: it refreshes, keeping how it logged in.
    let refreshed = app.refresh(&login.refresh).await;
    assert_eq!(claims_of(&refreshed.access)["amr"], json!(["hwk", "user"]));
    let used = app.passkeys(&alice.access).await;
    assert_eq!(
        instant(&used[0]["last_used_at"]) - instant(&used[0]["created_at"]),
        time::Duration::seconds(60)
    );

    // Without a username: any discoverable passkey, named by its user handle.
    let start = app.passkey_login_options(None).await;
    assert_eq!(start["publicKey"]["allowCredentials"], json!([]));
    let credential = phone.get(&start["publicKey"]).unwrap();
    let login = logged_in(
        app.finish_passkey_login(&start["challenge_id"], credential)
            .await,
    )
    .await;
    assert_eq!(login.body["user"]["username"], "alice");
    assert_eq!(claims_of(&login.access)["amr"], json!(["hwk", "user"]));
    assert_eq!(app.me(&login.access).await.status(), StatusCode::OK);

    let events = app.audit_events().await;
    assert!(events.contains(&"passkey_added".to_owned()), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| *e == "login_succeeded").count(),
        3,
        "{events:?}"
    );
}

#[tokio::test]
async fn eddsa_and_rs256_passkeys_register_and_log_in_too() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    for alg in [Alg::EdDsa, Alg::Rs256] {
        let mut key = Authenticator::new(&app.url, alg);
        app.add_passkey(&alice.access, &mut key, None).await;
        let login = logged_in(app.passkey_login(&mut key, None).await).await;
        assert_eq!(login.body["user"]["username"], "alice", "{alg:?}");
        // By username too: alice's options list both of her passkeys.
        let start = app.passkey_login_options(Some("alice")).await;
        let credential = key.get(&start["publicKey"]).unwrap();
        logged_in(
            app.finish_passkey_login(&start["challenge_id"], credential)
                .await,
        )
        .await;
    }
    let listed = app.passkeys(&alice.access).await;
    let names: Vec<&str> = listed.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Passkey", "Passkey"]);
    assert_ne!(listed[0]["id"], listed[1]["id"]);
}

#[tokio::test]
async fn a_challenge_is_good_once_and_for_five_minutes() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let mut key = Authenticator::new(&app.url, Alg::Es256);

    // Registration: once.
    let start = app.passkey_options(&alice.access).await;
    let credential = key.create(&start["publicKey"]).unwrap();
    let body = json!({ "challenge_id": start["challenge_id"], "credential": credential });
    assert_eq!(
        app.finish_registration(&alice.access, body.clone())
            .await
            .status(),
        StatusCode::CREATED
    );
    let r = app.finish_registration(&alice.access, body).await;
    let error = assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        error["error_description"]
            .as_str()
            .unwrap()
            .contains("challenge"),
        "{error}"
    );

    // Login: once, even by the right authenticator.
    let start = app.passkey_login_options(None).await;
    app.finish_login_once(&start, &mut key).await;

    // A login's challenge is no registration's, and trying does not spend it.
    let start = app.passkey_login_options(None).await;
    let mut other = Authenticator::new(&app.url, Alg::Es256);
    let fake = other
        .create(&app.passkey_options(&alice.access).await["publicKey"])
        .unwrap();
    let r = app
        .finish_registration(
            &alice.access,
            json!({ "challenge_id": start["challenge_id"], "credential": fake }),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    app.advance(Duration::from_secs(299));
    let credential = key.get(&start["publicKey"]).unwrap();
    logged_in(
        app.finish_passkey_login(&start["challenge_id"], credential)
            .await,
    )
    .await;

    // Five minutes, then it is gone, and the prune deletes it.
    let start = app.passkey_login_options(None).await;
    let registration = app.passkey_options(&alice.access).await;
    app.advance(Duration::from_secs(300));
    let credential = key.get(&start["publicKey"]).unwrap();
    let r = app
        .finish_passkey_login(&start["challenge_id"], credential)
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let late = other.create(&registration["publicKey"]).unwrap();
    let r = app
        .finish_registration(
            &alice.access,
            json!({ "challenge_id": registration["challenge_id"], "credential": late }),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // Left for the prune: the digests of the two logins spent (kept as
    // long as their challenges would have lived) and the two registrations
    // never finished; the fresh one stays.
    let fresh = app.passkey_options(&alice.access).await;
    let pruned = app.service.prune().await.unwrap();
    assert_eq!(pruned.webauthn_challenges, 4);
    let mut third = Authenticator::new(&app.url, Alg::Es256);
    let credential = third.create(&fresh["publicKey"]).unwrap();
    let r = app
        .finish_registration(
            &alice.access,
            json!({ "challenge_id": fresh["challenge_id"], "credential": credential }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_login_start_leaves_nothing_in_the_store() {
    let app = TestApp::spawn().await;
    let (alice, mut key) = app.user_with_passkey("alice", Alg::Es256).await;
    app.service.prune().await.unwrap();

    // Anyone may start logins, as many as they like: each answer carries
    // its state sealed, and nothing is kept.
    let alice_id = claims_of(&alice.access)["sub"].as_str().unwrap().to_owned();
    let mut ids = std::collections::HashSet::new();
    for username in [None, Some("alice"), Some("nobody")].repeat(20) {
        let start = app.passkey_login_options(username).await;
        let id = start["challenge_id"].as_str().unwrap().to_owned();
        // Sealed: no trace of whom it names.
        let text = String::from_utf8_lossy(&unb64(&id)).into_owned();
        assert!(!text.contains(&alice_id) && !text.contains("alice"));
        assert!(ids.insert(id));
    }
    app.advance(Duration::from_secs(301));
    assert_eq!(app.service.prune().await.unwrap().webauthn_challenges, 0);

    // What is not a sealed login of this server's is refused: changed by
    // a bit, cut short, much too long, a registration's.
    let start = app.passkey_login_options(None).await;
    let sealed = unb64(start["challenge_id"].as_str().unwrap());
    let mut flipped = sealed.clone();
    flipped[sealed.len() / 2] ^= 1;
    let registration = app.passkey_options(&alice.access).await;
    for forged in [
        b64(&flipped),
        b64(&sealed[..sealed.len() - 1]),
        "A".repeat(5000),
        registration["challenge_id"].as_str().unwrap().to_owned(),
    ] {
        let credential = key.get(&start["publicKey"]).unwrap();
        let r = app.finish_passkey_login(&json!(forged), credential).await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // The real one still goes through, once: its finish keeps its digest
    // until it would have expired, and the prune takes that then.
    app.finish_login_once(&start, &mut key).await;
    app.advance(Duration::from_secs(299));
    assert_eq!(app.service.prune().await.unwrap().webauthn_challenges, 0);
    app.advance(Duration::from_secs(1));
    // The digest, and the registration started beside it.
    assert_eq!(app.service.prune().await.unwrap().webauthn_challenges, 2);
}

#[tokio::test]
async fn a_challenge_started_by_another_user_finishes_nothing() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let mallory = app.user_and_login("mallory").await;
    let start = app.passkey_options(&alice.access).await;
    let mut key = Authenticator::new(&app.url, Alg::Es256);
    let credential = key.create(&start["publicKey"]).unwrap();
    let r = app
        .finish_registration(
            &mallory.access,
            json!({ "challenge_id": start["challenge_id"], "credential": credential }),
        )
        .await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(app.passkeys(&mallory.access).await.is_empty());
    assert!(app.passkeys(&alice.access).await.is_empty());
}

#[tokio::test]
async fn a_counter_that_does_not_move_on_is_refused_and_audited() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let mut key = Authenticator::new(&app.url, Alg::Es256);
    app.add_passkey(&alice.access, &mut key, Some("Key")).await;
    logged_in(app.passkey_login(&mut key, None).await).await;
    // A copy of the key as it is now: both will present count 2 next.
    let mut clone = key.clone();
    logged_in(app.passkey_login(&mut key, Some("alice")).await).await;
    let r = app.passkey_login(&mut clone, Some("alice")).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Lower still: refused too; the original goes on from where it was.
    clone.credentials[0].sign_count = 0;
    let r = app.passkey_login(&mut clone, None).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    logged_in(app.passkey_login(&mut key, None).await).await;
    let rows = app.service.store().recent_audit(100).await.unwrap();
    let rejected: Vec<_> = rows
        .iter()
        .filter(|r| r.event == "passkey_counter_rejected")
        .collect();
    assert_eq!(rejected.len(), 2, "{rows:?}");
    assert_eq!(
        rejected[0].user_id.as_deref(),
        alice.body["user"]["id"].as_str()
    );
    assert!(rejected[1].detail.as_deref().unwrap().contains("counter"));

    // An authenticator that keeps no count (0 every time) logs in as often
    // as it likes.
    let mut synced = Authenticator::new(&app.url, Alg::Es256);
    synced.counts = false;
    app.add_passkey(&alice.access, &mut synced, None).await;
    for _ in 0..3 {
        logged_in(app.passkey_login(&mut synced, None).await).await;
    }
}

#[tokio::test]
async fn garbage_and_tampered_answers_get_a_clear_4xx() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let mut key = Authenticator::new(&app.url, Alg::Es256);

    // Registration: what is no WebAuthn answer is refused before the
    // challenge is spent, so the right answer still goes through after it.
    let start = app.passkey_options(&alice.access).await;
    for garbage in [
        json!({}),
        json!("credential"),
        json!({ "id": "x", "rawId": "x", "type": "public-key", "response": { "clientDataJSON": 5 } }),
    ] {
        let r = app
            .finish_registration(
                &alice.access,
                json!({ "challenge_id": start["challenge_id"], "credential": garbage }),
            )
            .await;
        assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let good = key.create(&start["publicKey"]).unwrap();
    // Answers that parse but do not verify spend it: each needs a new start.
    let tamper: [(&str, Tamper); 4] = [
        ("attestation", |c| {
            c["response"]["attestationObject"] = json!(b64(b"\xa0"));
        }),
        ("client data", |c| {
            let mut data = unb64(c["response"]["clientDataJSON"].as_str().unwrap());
            data.pop();
            c["response"]["clientDataJSON"] = json!(b64(&data));
        }),
        ("not base64", |c| {
            c["response"]["attestationObject"] = json!("*** not base64 ***");
        }),
        ("another challenge", |c| {
            let mut data: Value =
                serde_json::from_slice(&unb64(c["response"]["clientDataJSON"].as_str().unwrap()))
                    .unwrap();
            data["challenge"] = json!(b64(&[0; 32]));
            c["response"]["clientDataJSON"] = json!(b64(&serde_json::to_vec(&data).unwrap()));
        }),
    ];
    for (what, change) in tamper {
        let start = app.passkey_options(&alice.access).await;
        let mut other = Authenticator::new(&app.url, Alg::Es256);
        let mut credential = other.create(&start["publicKey"]).unwrap();
        change(&mut credential);
        let r = app
            .finish_registration(
                &alice.access,
                json!({ "challenge_id": start["challenge_id"], "credential": credential }),
            )
            .await;
        let status = r.status();
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            r.text().await.unwrap()
        );
    }
    // An authenticator that does not verify its user, or another origin's page.
    let mut careless = Authenticator::new(&app.url, Alg::Es256);
    careless.verifies_user = false;
    let mut elsewhere = Authenticator::new("http://127.0.0.1:1", Alg::Es256);
    for authenticator in [&mut careless, &mut elsewhere] {
        let start = app.passkey_options(&alice.access).await;
        let credential = authenticator.create(&start["publicKey"]).unwrap();
        let r = app
            .finish_registration(
                &alice.access,
                json!({ "challenge_id": start["challenge_id"], "credential": credential }),
            )
            .await;
        let body = assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("the passkey does not verify"),
            "{body}"
        );
    }
    assert!(app.passkeys(&alice.access).await.is_empty());
    let r = app
        .finish_registration(
            &alice.access,
            json!({ "challenge_id": start["challenge_id"], "credential": good }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    // The same credential again, from an authenticator that ignored
    // excludeCredentials: refused; for another account: a conflict (one
    // authenticator's credential is one user's).
    let bob = app.user_and_login("bob").await;
    for (who, status, code) in [
        (&alice, StatusCode::BAD_REQUEST, "invalid_request"),
        (&bob, StatusCode::CONFLICT, "conflict"),
    ] {
        let again = app.passkey_options(&who.access).await;
        let challenge = again["publicKey"]["challenge"].as_str().unwrap();
        let duplicate = key.attest(&key.credentials[0], challenge);
        let r = app
            .finish_registration(
                &who.access,
                json!({ "challenge_id": again["challenge_id"], "credential": duplicate }),
            )
            .await;
        assert_error(r, status, code).await;
    }
    assert!(app.passkeys(&bob.access).await.is_empty());

    // Login: a changed signature, client data of another kind, another
    // origin, no user verification, a user handle of someone else.
    fn nothing(_: &mut Value) {}
    fn keep(_: &mut Authenticator) {}
    let tamper: [(&str, Setup, Tamper); 4] = [
        ("signature", keep, |c| {
            let mut sig = unb64(c["response"]["signature"].as_str().unwrap());
            let last = sig.len() - 1;
            sig[last] ^= 1;
            c["response"]["signature"] = json!(b64(&sig));
        }),
        ("type", keep, |c| {
            let mut data: Value =
                serde_json::from_slice(&unb64(c["response"]["clientDataJSON"].as_str().unwrap()))
                    .unwrap();
            data["type"] = json!("webauthn.create");
            c["response"]["clientDataJSON"] = json!(b64(&serde_json::to_vec(&data).unwrap()));
        }),
        (
            "origin",
            |a| a.origin = "http://127.0.0.1:1".into(),
            nothing,
        ),
        ("user verification", |a| a.verifies_user = false, nothing),
    ];
    for (what, before, after) in tamper {
        let mut copy = key.clone();
        before(&mut copy);
        let start = app.passkey_login_options(None).await;
        let mut credential = copy.get(&start["publicKey"]).unwrap();
        after(&mut credential);
        let r = app
            .finish_passkey_login(&start["challenge_id"], credential)
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        // The key moves its count past the copy's, as it would have.
        key.credentials[0].sign_count = copy.credentials[0].sign_count;
    }
    // Alice's passkey, with Bob's user handle: Bob is not logged in.
    let start = app.passkey_login_options(None).await;
    let mut credential = key.get(&start["publicKey"]).unwrap();
    credential["response"]["userHandle"] =
        json!(b64(&handle_of(bob.body["user"]["id"].as_str().unwrap())));
    let r = app
        .finish_passkey_login(&start["challenge_id"], credential)
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Nothing of that logged anyone in; the key still does.
    logged_in(app.passkey_login(&mut key, None).await).await;
    let events = app.audit_events().await;
    assert_eq!(
        events.iter().filter(|e| *e == "login_failed").count(),
        5,
        "{events:?}"
    );
}

#[tokio::test]
async fn a_removed_passkey_logs_nobody_in_and_only_its_owner_removes_it() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let bob = app.user_and_login("bob").await;
    let mut key = Authenticator::new(&app.url, Alg::Es256);
    let created = app.add_passkey(&alice.access, &mut key, None).await;
    let id = created["id"].as_str().unwrap();

    for (who, id) in [(&bob, id), (&alice, "no-such-passkey"), (&alice, "")] {
        let r = app.delete_passkey(&who.access, id).await;
        if id.is_empty() {
            // `/v1/me/passkeys/` names no passkey route.
            assert!(r.status().is_client_error(), "{}", r.status());
        } else {
            assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
        }
    }
    assert_eq!(app.passkeys(&alice.access).await.len(), 1);
    logged_in(app.passkey_login(&mut key, None).await).await;

    let r = app.delete_passkey(&alice.access, id).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert!(app.passkeys(&alice.access).await.is_empty());
    let r = app.delete_passkey(&alice.access, id).await;
    assert_error(r, StatusCode::NOT_FOUND, "not_found").await;
    // Without a username the authenticator still answers, and is refused;
    // with it, alice now has options that her old key cannot answer.
    let r = app.passkey_login(&mut key, None).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let start = app.passkey_login_options(Some("alice")).await;
    assert_eq!(key.get(&start["publicKey"]), None);
    let events = app.audit_events().await;
    assert!(events.contains(&"passkey_removed".to_owned()), "{events:?}");
}

#[tokio::test]
async fn the_account_endpoints_need_an_access_token() {
    let app = TestApp::spawn().await;
    let requests = [
        app.post("/v1/me/passkeys/register/start"),
        app.post("/v1/me/passkeys/register/finish")
            .json(&json!({ "challenge_id": "x", "credential": {} })),
        app.get("/v1/me/passkeys"),
        app.client
            .delete(format!("{}/v1/me/passkeys/some-id", app.url)),
    ];
    for request in requests {
        let r = request.send().await.unwrap();
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    // A third-party token without the account scope manages no passkey.
    app.register("alice", PASSWORD).await;
    let secret = app.confidential("reports", "profile").await;
    let grant = app
        .token(
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", "reports"),
                ("client_secret", &secret),
            ],
            None,
        )
        .await;
    let grant: Value = grant.json().await.unwrap();
    let token = grant["access_token"].as_str().unwrap();
    let r = app
        .post("/v1/me/passkeys/register/start")
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "insufficient_scope").await;
}

#[tokio::test]
async fn cookie_requests_follow_the_csrf_rules() {
    let app = TestApp::spawn().await;
    let alice = app.user_and_login("alice").await;
    let cookie = format!("accessToken={}", alice.access);
    // The registration start takes no body and ignores its Content-Type,
    // but a cookie-authenticated one must come from an allowed origin.
    let r = app
        .post("/v1/me/passkeys/register/start")
        .header("cookie", &cookie)
        .header("content-type", "text/plain")
        .body("ignored")
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::FORBIDDEN, "csrf_rejected").await;
    let r = app
        .post("/v1/me/passkeys/register/start")
        .header("cookie", &cookie)
        .header("origin", &app.url)
        .header("content-type", "text/plain")
        .body("ignored")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Reading the list is a GET: no Origin needed.
    let r = app
        .get("/v1/me/passkeys")
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A login from a foreign page is refused, as a password login is.
    for (path, body) in [
        ("/v1/auth/passkey/start", json!({})),
        (
            "/v1/auth/passkey/finish",
            json!({ "challenge_id": "x", "credential": {} }),
        ),
    ] {
        let r = app
            .post(path)
            .header("origin", "https://evil.example")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(r, StatusCode::FORBIDDEN, "csrf_rejected").await;
    }
}

#[tokio::test]
async fn a_username_of_nobody_with_a_passkey_gets_options_that_cannot_succeed() {
    let app = TestApp::spawn().await;
    let (_, mut key) = app.user_with_passkey("alice", Alg::Es256).await;
    app.user_and_login("bob").await; // a user without a passkey

    let real = app.passkey_login_options(Some("alice")).await;
    let shape = |options: &Value| {
        let mut keys: Vec<String> = options["publicKey"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        let allowed = options["publicKey"]["allowCredentials"].as_array().unwrap();
        let entry: Vec<String> = allowed[0].as_object().unwrap().keys().cloned().collect();
        (
            keys,
            allowed.len(),
            entry,
            allowed[0]["id"].as_str().unwrap().len(),
        )
    };
    for name in ["nobody", "bob"] {
        let decoy = app.passkey_login_options(Some(name)).await;
        assert_eq!(shape(&decoy), shape(&real), "{name}");
        // The same decoy every time for one name, another for another.
        let again = app.passkey_login_options(Some(name)).await;
        assert_eq!(
            again["publicKey"]["allowCredentials"],
            decoy["publicKey"]["allowCredentials"]
        );
        assert_ne!(
            decoy["publicKey"]["allowCredentials"],
            real["publicKey"]["allowCredentials"]
        );
        // No authenticator holds it; alice's own passkey, presented
        // anyway, does not log anyone in.
        assert_eq!(key.get(&decoy["publicKey"]), None);
        let mut discoverable = decoy["publicKey"].clone();
        discoverable["allowCredentials"] = json!([]);
        let credential = key.get(&discoverable).unwrap();
        let r = app
            .finish_passkey_login(&decoy["challenge_id"], credential)
            .await;
        assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // A name that is no username is a bad request, as at the password login.
    let r = app
        .post("/v1/auth/passkey/start")
        .json(&json!({ "username": " " }))
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_disabled_user_cannot_log_in_with_a_passkey() {
    let app = TestApp::spawn().await;
    let (alice, mut key) = app.user_with_passkey("alice", Alg::EdDsa).await;
    app.service.set_user_disabled("alice", true).await.unwrap();
    let r = app.passkey_login(&mut key, None).await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // By username, a disabled user has no passkey to offer.
    let start = app.passkey_login_options(Some("alice")).await;
    assert_eq!(key.get(&start["publicKey"]), None);
    let rows = app.service.store().recent_audit(10).await.unwrap();
    assert_eq!(rows[0].event, "login_failed");
    assert_eq!(
        rows[0].user_id.as_deref(),
        alice.body["user"]["id"].as_str()
    );

    app.service.set_user_disabled("alice", false).await.unwrap();
    logged_in(app.passkey_login(&mut key, Some("alice")).await).await;
}

#[tokio::test]
async fn passkey_failures_count_toward_the_login_limit_of_the_address() {
    let app = TestApp::spawn_with(&[("login_max_failures", "3")]).await;
    let (_, mut key) = app.user_with_passkey("alice", Alg::Es256).await;
    // A success clears the count: any number of them pass.
    for _ in 0..4 {
        logged_in(app.passkey_login(&mut key, None).await).await;
    }
    // Failures (a stale challenge, a wrong signature) count.
    let stale = json!(b64(&[1; 32]));
    let start = app.passkey_login_options(None).await;
    let answer = key.get(&start["publicKey"]).unwrap();
    let r = app.finish_passkey_login(&stale, answer.clone()).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    let mut forged = answer.clone();
    forged["response"]["signature"] = json!(b64(&[0x30, 0x06, 2, 1, 1, 2, 1, 1]));
    let r = app
        .finish_passkey_login(&start["challenge_id"], forged)
        .await;
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let r = app.finish_passkey_login(&stale, answer).await;
    assert_error(r, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The fourth attempt from this address waits, however right it is.
    let r = app.passkey_login(&mut key, None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    assert_error(r, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // The password login of the same user counts apart (by username).
    assert_eq!(
        app.login_raw("alice", PASSWORD).await.status(),
        StatusCode::OK
    );
    app.advance(Duration::from_secs(15 * 60));
    logged_in(app.passkey_login(&mut key, None).await).await;
    let events = app.audit_events().await;
    assert!(
        events.contains(&"login_rate_limited".to_owned()),
        "{events:?}"
    );
}
