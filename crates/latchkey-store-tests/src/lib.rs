//! The conformance suite every latchkey `Store` implementation must pass.
//!
//! Each case is a `pub async fn` taking a fresh, migrated store; it knows
//! nothing of the engine behind it. An engine runs them all with
//! [`conformance_suite!`], from one of its integration tests:
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn Store>, TempDir) { /* connect + migrate */ }
//!
//! latchkey_store_tests::conformance_suite!(fresh);
//! ```
//!
//! Instants are built as whole milliseconds, the precision stores keep.

// This crate is test code: a failed step should stop the case loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use latchkey_core::store::Store;

/// What a suite's `$make` gives: a store, plus anything that must outlive
/// the case (a temporary directory, say).
pub trait Fixture: Send + 'static {
    fn store(&self) -> Arc<dyn Store>;
}

impl Fixture for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(self)
    }
}

impl<G: Send + 'static> Fixture for (Arc<dyn Store>, G) {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.0)
    }
}

/// Expands to one `#[tokio::test]` per case. `$make` is an async function
/// or closure, called once per test, answering a fresh migrated store as a
/// [`Fixture`] (`Arc<dyn Store>`, or `(Arc<dyn Store>, guard)`). The calling
/// crate needs `tokio` (with the multi-threaded runtime) as a dev-dependency.
#[macro_export]
macro_rules! conformance_suite {
    (@tests $make:expr, $test:meta; $($case:ident),+ $(,)?) => {
        $(
            #[$test]
            async fn $case() {
                let fixture = ($make)().await;
                $crate::$case($crate::Fixture::store(&fixture)).await;
            }
        )+
    };
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make, tokio::test;
            ping,
            users_round_trip,
            users_listed_oldest_first,
            duplicate_username_key_conflicts,
            rehash_keeps_sessions_and_needs_the_version,
            set_password_hash_revokes_all_but_one,
            create_session_needs_the_checked_password,
            set_user_disabled_revokes_every_session,
            sessions_round_trip,
            session_with_user_joins_its_user,
            advance_generation_moves_once,
            advance_generation_on_revoked_is_lost,
            advance_generation_on_dead_is_lost,
            revoke_one_session,
            revoke_user_sessions,
            live_sessions_filter_and_order,
            keys_round_trip,
            delete_keys_by_kid,
            retire_key_retires_purges_and_promotes,
            refresh_secret_is_made_once,
            login_attempts_reserved_up_to_the_limit,
            audit_newest_first,
            clients_round_trip,
            removing_a_client_revokes_its_sessions,
            prune_removes_only_what_cannot_matter,
            prune_sessions_a_batch_at_a_time,
            prune_sessions_deletes_a_whole_window_of_dead_ones,
            prune_audit_and_failures_a_batch_at_a_time,
            every_revocation_is_recorded_once,
            a_purged_key_is_recorded_once,
            revocations_after_a_cursor_since_a_time,
            prune_revocations_by_age_keeps_the_count,
            emails_round_trip_and_verified_keys_are_unique,
            mail_tokens_supersede_and_stop_at_the_hourly_limit,
            a_reset_token_sets_the_password_once_and_revokes_every_session,
            a_check_token_verifies_its_own_address_of_its_own_user,
            the_outbox_leases_retries_and_finishes_mails,
            totp_enrolment_is_replaced_until_confirmed,
            totp_steps_are_used_once_and_in_order,
            recovery_codes_are_spent_once,
            mfa_logins_count_tries_expire_and_are_spent_once,
        );
        // Races need real threads to mean anything.
        $crate::conformance_suite!(@tests $make, tokio::test(flavor = "multi_thread", worker_threads = 4);
            concurrent_advances_have_one_winner,
            concurrent_refresh_secrets_agree,
            concurrent_login_attempts_stop_at_the_limit,
            concurrent_revocations_are_read_without_gaps,
            concurrent_claims_lease_each_mail_once,
            concurrent_totp_steps_have_one_winner,
            concurrent_mfa_attempts_stop_at_the_limit,
        );
        // Passkeys (API.md §10).
        $crate::conformance_suite!(@tests $make, tokio::test;
            passkeys_round_trip_and_credential_ids_are_unique,
            a_passkey_is_deleted_by_its_owner_only,
            a_passkey_counter_only_moves_forward,
            passkeys_are_counted_with_their_user,
            webauthn_challenges_are_spent_once_before_they_expire,
            prune_webauthn_challenges_by_expiry_a_batch_at_a_time,
        );
        $crate::conformance_suite!(@tests $make, tokio::test(flavor = "multi_thread", worker_threads = 4);
            concurrent_uses_of_one_count_have_one_winner,
            concurrent_takes_of_a_challenge_have_one_winner,
            concurrent_inserts_of_a_challenge_have_one_winner,
        );
    };
}

mod audit_clients;
mod fixtures;
mod keys;
mod limits;
mod mail;
mod mfa;
mod passkeys;
mod prune;
mod revocations;
mod sessions;
mod users;

pub use audit_clients::*;
pub use keys::*;
pub use limits::*;
pub use mail::*;
pub use mfa::*;
pub use passkeys::*;
pub use prune::*;
pub use revocations::*;
pub use sessions::*;
pub use users::*;

/// What every case file uses.
mod prelude {
    pub(crate) use std::sync::Arc;

    pub(crate) use latchkey_core::audit::{AuditEvent, AuditRecord};
    pub(crate) use latchkey_core::keys::{KeyRecord, SigningAlg};
    pub(crate) use latchkey_core::store::{
        Advance, ClientRecord, DeadSessions, LoginAttempt, LoginLimit, RevokeScope, SessionRecord,
        SessionWithUser, SessionsPruned, Store, StoreError, UserRecord,
    };
    pub(crate) use latchkey_core::{SessionId, UserId};
    pub(crate) use time::OffsetDateTime;
    pub(crate) use tokio::sync::Barrier;

    pub(crate) use crate::fixtures::*;
}
