//! Account recovery's storage: addresses, mailed tokens and the outbox.

use latchkey_core::mail::{EmailRecord, MailTokenRecord, OutboxMail, Rendered, TokenPurpose};
use latchkey_core::store::{MailClaim, MailLimit, Revoked};

use crate::prelude::*;

fn email(address: &str, verified_at: Option<OffsetDateTime>) -> EmailRecord {
    let (local, domain) = address.rsplit_once('@').unwrap();
    EmailRecord {
        email: address.to_owned(),
        email_key: format!("{local}@{}", domain.to_lowercase()),
        verified_at,
    }
}

fn token(user: &UserRecord, purpose: TokenPurpose, made: i64, to: &str) -> MailTokenRecord {
    MailTokenRecord {
        hash: uuid::Uuid::new_v4().as_bytes().repeat(2),
        user_id: user.id.clone(),
        purpose,
        email: to.to_owned(),
        password_version: user.password_version,
        created_at: at(made),
        expires_at: at(made + 1800),
        spent_at: None,
    }
}

fn mail(to: &str, made: i64) -> OutboxMail {
    OutboxMail::new(
        to,
        Rendered {
            subject: "Reset your password".into(),
            text: "token=abc ünïcode".into(),
            html: "<p>token=abc</p>".into(),
        },
        at(made),
    )
}

const HOUR: i64 = 3600;

async fn email_of(store: &dyn Store, id: &UserId) -> Option<EmailRecord> {
    store.user_by_id(id).await.unwrap().unwrap().email
}

fn limit(now: i64, max: u32) -> MailLimit {
    MailLimit {
        since: at(now - HOUR),
        max,
    }
}

pub async fn emails_round_trip_and_verified_keys_are_unique(store: Arc<dyn Store>) {
    let alice = add_user(store.as_ref(), "alice", 0).await;
    let bob = add_user(store.as_ref(), "bob", 1).await;
    assert_eq!(email_of(store.as_ref(), &alice.id).await, None);
    let verified = email("Alice@Example.com", Some(at(10)));
    store
        .set_user_email(&alice.id, &verified, at(10))
        .await
        .unwrap();
    assert_eq!(
        email_of(store.as_ref(), &alice.id).await,
        Some(verified.clone())
    );
    // Bob may name the same address, unverified.
    let claimed = email("Alice@EXAMPLE.COM", None);
    store
        .set_user_email(&bob.id, &claimed, at(11))
        .await
        .unwrap();
    assert_eq!(email_of(store.as_ref(), &bob.id).await, Some(claimed));
    // Verified, it conflicts.
    let taken = email("Alice@example.COM", Some(at(12)));
    assert!(matches!(
        store.set_user_email(&bob.id, &taken, at(12)).await,
        Err(StoreError::Conflict(_))
    ));
    // Read with the user, and with a session's user (one read for /v1/me).
    let s = add_session(store.as_ref(), &alice.id, 20).await;
    let joined = store.session_with_user(&s.id).await.unwrap().unwrap();
    assert_eq!(joined.user.email, Some(verified.clone()));
    let mut carol = user("carol", 2);
    carol.email = Some(email("carol@example.com", Some(at(2))));
    store.create_user(&carol).await.unwrap();
    assert_eq!(store.user_by_key("carol").await.unwrap(), Some(carol));
    let found = store
        .user_by_verified_email("Alice@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, alice.id);
    assert_eq!(
        store
            .user_by_verified_email("alice@example.com")
            .await
            .unwrap(),
        None
    );
    // Replacing keeps one address per user.
    let other = email("a@other.example", None);
    store
        .set_user_email(&alice.id, &other, at(13))
        .await
        .unwrap();
    assert_eq!(email_of(store.as_ref(), &alice.id).await, Some(other));
    assert_eq!(
        store
            .user_by_verified_email("Alice@example.com")
            .await
            .unwrap(),
        None
    );
}

pub async fn mail_tokens_supersede_and_stop_at_the_hourly_limit(store: Arc<dyn Store>) {
    let alice = add_user(store.as_ref(), "alice", 0).await;
    let reset = |made| token(&alice, TokenPurpose::PasswordReset, made, "a@example.com");
    let first = reset(100);
    assert!(store
        .issue_mail_token(&first, &mail("a@example.com", 100), limit(100, 2))
        .await
        .unwrap());
    assert_eq!(
        store.mail_token(&first.hash).await.unwrap(),
        Some(first.clone())
    );
    // A check token is another purpose: it neither counts nor supersedes.
    let check = token(&alice, TokenPurpose::VerifyEmail, 101, "a@example.com");
    assert!(store
        .issue_mail_token(&check, &mail("a@example.com", 101), limit(101, 1))
        .await
        .unwrap());
    let second = reset(102);
    assert!(store
        .issue_mail_token(&second, &mail("a@example.com", 102), limit(102, 2))
        .await
        .unwrap());
    let spent = store.mail_token(&first.hash).await.unwrap().unwrap();
    assert_eq!(spent.spent_at, Some(at(102)), "superseded");
    assert_eq!(
        store
            .mail_token(&check.hash)
            .await
            .unwrap()
            .unwrap()
            .spent_at,
        None
    );
    // Two made within the hour: the third is refused, with no mail queued.
    let third = reset(103);
    assert!(!store
        .issue_mail_token(&third, &mail("a@example.com", 103), limit(103, 2))
        .await
        .unwrap());
    assert_eq!(store.mail_token(&third.hash).await.unwrap(), None);
    let queued = store.claim_mail(claim(200, 100)).await.unwrap();
    assert_eq!(queued.len(), 3);
    // An hour after the first, one more.
    let later = reset(100 + HOUR + 1);
    assert!(store
        .issue_mail_token(
            &later,
            &mail("a@example.com", 100 + HOUR + 1),
            limit(100 + HOUR + 1, 2)
        )
        .await
        .unwrap());
}

pub async fn a_reset_token_sets_the_password_once_and_revokes_every_session(store: Arc<dyn Store>) {
    let alice = add_user(store.as_ref(), "alice", 0).await;
    let s1 = add_session(store.as_ref(), &alice.id, 1).await;
    let s2 = add_session(store.as_ref(), &alice.id, 2).await;
    let t = token(&alice, TokenPurpose::PasswordReset, 100, "a@example.com");
    store
        .issue_mail_token(&t, &mail("a@example.com", 100), limit(100, 3))
        .await
        .unwrap();
    // Expired: nothing.
    assert_eq!(
        store
            .reset_password_with_token(&t.hash, "$argon2id$new", at(100 + 1800))
            .await
            .unwrap(),
        None
    );
    let last = store.last_revocation().await.unwrap();
    let done = store
        .reset_password_with_token(&t.hash, "$argon2id$new", at(200))
        .await
        .unwrap();
    assert_eq!(done, Some(alice.id.clone()));
    let user = store.user_by_id(&alice.id).await.unwrap().unwrap();
    assert_eq!(user.password_hash, "$argon2id$new");
    assert_eq!(user.password_version, 1);
    for s in [&s1, &s2] {
        let s = stored(store.as_ref(), &s.id).await;
        assert_eq!(s.revoked_at, Some(at(200)));
        assert_eq!(s.revoked_reason.as_deref(), Some("password_reset"));
    }
    let feed = store
        .revocations_after(last, OffsetDateTime::UNIX_EPOCH, 10)
        .await
        .unwrap();
    let sids: Vec<_> = feed.iter().map(|r| r.revoked.clone()).collect();
    assert_eq!(sids.len(), 2);
    assert!(sids.contains(&Revoked::Session(s1.id.clone())));
    // Once only.
    assert_eq!(
        store
            .reset_password_with_token(&t.hash, "$argon2id$again", at(201))
            .await
            .unwrap(),
        None
    );
    // A token made before a password change is dead.
    let old = token(&alice, TokenPurpose::PasswordReset, 300, "a@example.com");
    store
        .issue_mail_token(&old, &mail("a@example.com", 300), limit(300, 3))
        .await
        .unwrap();
    assert_eq!(old.password_version, 0);
    assert_eq!(
        store
            .reset_password_with_token(&old.hash, "$argon2id$x", at(301))
            .await
            .unwrap(),
        None
    );
    // A check token is not a reset token.
    let user = store.user_by_id(&alice.id).await.unwrap().unwrap();
    let check = token(&user, TokenPurpose::VerifyEmail, 400, "a@example.com");
    store
        .issue_mail_token(&check, &mail("a@example.com", 400), limit(400, 3))
        .await
        .unwrap();
    assert_eq!(
        store
            .reset_password_with_token(&check.hash, "$argon2id$x", at(401))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .reset_password_with_token(b"unknown", "$argon2id$x", at(401))
            .await
            .unwrap(),
        None
    );
}

pub async fn a_check_token_verifies_its_own_address_of_its_own_user(store: Arc<dyn Store>) {
    let alice = add_user(store.as_ref(), "alice", 0).await;
    let bob = add_user(store.as_ref(), "bob", 1).await;
    store
        .set_user_email(&alice.id, &email("shared@example.com", None), at(5))
        .await
        .unwrap();
    let t = token(&alice, TokenPurpose::VerifyEmail, 10, "shared@example.com");
    store
        .issue_mail_token(&t, &mail("shared@example.com", 10), limit(10, 5))
        .await
        .unwrap();
    assert!(!store
        .verify_email_with_token(&t.hash, &bob.id, at(11))
        .await
        .unwrap());
    // Someone else verified the address meanwhile: a conflict, nothing spent.
    store
        .set_user_email(&bob.id, &email("shared@example.com", Some(at(12))), at(12))
        .await
        .unwrap();
    assert!(matches!(
        store
            .verify_email_with_token(&t.hash, &alice.id, at(13))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.mail_token(&t.hash).await.unwrap().unwrap().spent_at,
        None
    );
    store
        .set_user_email(&bob.id, &email("bob@example.com", Some(at(14))), at(14))
        .await
        .unwrap();
    assert!(store
        .verify_email_with_token(&t.hash, &alice.id, at(15))
        .await
        .unwrap());
    assert_eq!(
        email_of(store.as_ref(), &alice.id)
            .await
            .unwrap()
            .verified_at,
        Some(at(15))
    );
    assert!(!store
        .verify_email_with_token(&t.hash, &alice.id, at(16))
        .await
        .unwrap());
    // Changing the address spends every live token of the user.
    let t2 = token(&alice, TokenPurpose::VerifyEmail, 20, "shared@example.com");
    store
        .issue_mail_token(&t2, &mail("shared@example.com", 20), limit(20, 5))
        .await
        .unwrap();
    store
        .set_user_email(&alice.id, &email("new@example.com", None), at(21))
        .await
        .unwrap();
    assert_eq!(
        store.mail_token(&t2.hash).await.unwrap().unwrap().spent_at,
        Some(at(21))
    );
    assert!(!store
        .verify_email_with_token(&t2.hash, &alice.id, at(22))
        .await
        .unwrap());
}

fn claim(now: i64, limit: u32) -> MailClaim {
    MailClaim {
        now: at(now),
        lease_until: at(now + 60),
        deliver_by: at(now + 600),
        limit,
    }
}

pub async fn the_outbox_leases_retries_and_finishes_mails(store: Arc<dyn Store>) {
    let (a, b) = (mail("a@example.com", 0), mail("b@example.com", 1));
    store.enqueue_mail(&a).await.unwrap();
    store.enqueue_mail(&b).await.unwrap();
    let first = store.claim_mail(claim(10, 1)).await.unwrap();
    assert_eq!(first.len(), 1);
    let second = store.claim_mail(claim(10, 5)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].id, second[0].id);
    let got = if first[0].id == a.id {
        &first[0]
    } else {
        &second[0]
    };
    assert_eq!(got, &a, "read back whole");
    assert!(
        store.claim_mail(claim(69, 5)).await.unwrap().is_empty(),
        "leased"
    );
    // A lease that ran out (its sender died): due again.
    assert_eq!(store.claim_mail(claim(70, 5)).await.unwrap().len(), 2);
    store.mail_sent(&a.id, at(71)).await.unwrap();
    store
        .mail_failed(&b.id, at(71), Some(at(100)), "connection refused")
        .await
        .unwrap();
    assert!(store.claim_mail(claim(99, 5)).await.unwrap().is_empty());
    let retried = store.claim_mail(claim(100, 5)).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        (retried[0].id.as_str(), retried[0].attempts),
        (b.id.as_str(), 1)
    );
    // deliver_by was set at the first claim (10 + 600): a retry past it gives up.
    store
        .mail_failed(&b.id, at(101), Some(at(611)), "connection refused")
        .await
        .unwrap();
    assert!(store.claim_mail(claim(10_000, 5)).await.unwrap().is_empty());
    // Finished mails are pruned after their time.
    assert_eq!(store.prune_mail(at(70), 100).await.unwrap(), 0);
    assert_eq!(store.prune_mail(at(200), 100).await.unwrap(), 2);
}

pub async fn concurrent_claims_lease_each_mail_once(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for i in 0..40 {
        let m = mail(&format!("u{i}@example.com"), i);
        store.enqueue_mail(&m).await.unwrap();
        ids.push(m.id);
    }
    let barrier = Arc::new(Barrier::new(4));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut got = Vec::new();
                loop {
                    let batch = store.claim_mail(claim(100, 3)).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| m.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    ids.sort();
    assert_eq!(all, ids, "every mail leased exactly once");
}
