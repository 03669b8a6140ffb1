//! Bounded settings (docs/reference.md §10): whatever a configuration says, if
//! start-up accepts it, no time arithmetic it leads to can panic later.

use std::sync::Arc;
use std::time::Duration;

use latchkey_core::service::{LoginOutcome, RequestContext};
use latchkey_core::ManualClock;
use latchkey_server::app::build_service;
use latchkey_server::config::{Config, RawSettings};
use proptest::prelude::*;

use crate::helpers::PASSWORD;

/// The settings that are lifetimes, windows or intervals.
const DURATIONS: &[&str] = &[
    "access_ttl",
    "refresh_ttl",
    "session_max_age",
    "refresh_reuse_grace",
    "login_window",
    "jwks_max_age",
    "audit_retention",
];

/// A duration as an operator might write it: small, ordinary, at the
/// bounds, or far past them.
fn duration_text() -> impl Strategy<Value = String> {
    let seconds = prop_oneof![
        Just(0u64),
        Just(1),
        1u64..=120,
        1u64..=400_000_000,
        Just(10 * 365 * 86_400),
        Just(10 * 365 * 86_400 + 1),
        Just(u64::from(u32::MAX)),
    ];
    (
        seconds,
        prop::sample::select(vec!["s", "", "m", "h", "d", "ms"]),
    )
        .prop_map(|(n, unit)| match unit {
            "m" => format!("{}m", n / 60),
            "h" => format!("{}h", n / 3600),
            "d" => format!("{}d", n / 86_400),
            "ms" => format!("{}ms", n.saturating_mul(1000)),
            _ => format!("{n}{unit}"),
        })
}

/// Logs in, refreshes, lets every lifetime run out, prunes, rotates keys:
/// each step does arithmetic on the policy's durations.
async fn exercise(config: &Config) {
    let clock = Arc::new(ManualClock::starting_now());
    let service = build_service(config, "https://id.example".into(), clock.clone())
        .await
        .unwrap();
    service.ensure_signing_key().await.unwrap();
    let ctx = RequestContext {
        ip: "2001:db8::1".into(),
        user_agent: None,
    };
    service.add_user("alice", PASSWORD).await.unwrap();
    let LoginOutcome::Session(issued) = service.login("alice", PASSWORD, &ctx).await.unwrap()
    else {
        panic!("alice has no second factor");
    };
    service.authenticate(&issued.access_token).await.unwrap();
    let again = service.refresh(&issued.refresh_token, &ctx).await.unwrap();
    let _ = service.refresh(&issued.refresh_token, &ctx).await;
    let _ = service.login("alice", "wrong password", &ctx).await;
    service.live_sessions(None).await.unwrap();
    let policy = service.policy().clone();
    for step in [
        policy.access_ttl,
        policy.refresh_reuse_grace,
        policy.login_window,
        policy.refresh_ttl,
        policy.session_max_age,
        policy.jwks_max_age,
        policy.audit_retention,
    ] {
        clock.advance(step);
        let _ = service.refresh(&again.refresh_token, &ctx).await;
        let _ = service.authenticate(&again.access_token).await;
        service.jwks();
        service.prune().await.unwrap();
    }
    service.rotate_key(false).await.unwrap();
    service.list_keys().await.unwrap();
    service.recount_live_sessions().await.unwrap();
}

const TEN_YEARS: u64 = 10 * 365 * 86_400;

/// Seconds within `min..=TEN_YEARS`, the bounds themselves often.
fn within(min: u64, max: u64) -> impl Strategy<Value = String> {
    prop_oneof![Just(min), Just(max), min..=max].prop_map(|n| format!("{n}s"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever is written, what start-up accepts is within the bounds.
    #[test]
    fn accepted_durations_are_within_the_bounds(
        values in prop::collection::vec(duration_text(), DURATIONS.len())
    ) {
        let raw: RawSettings = DURATIONS
            .iter()
            .zip(&values)
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        if let Ok(config) = Config::from_raw(&raw) {
            for d in [
                config.policy.access_ttl,
                config.policy.refresh_ttl,
                config.policy.session_max_age,
                config.policy.login_window,
                config.policy.jwks_max_age,
                config.policy.audit_retention,
            ] {
                prop_assert!(d <= Duration::from_secs(TEN_YEARS));
            }
            prop_assert!(config.policy.refresh_reuse_grace <= Duration::from_secs(60));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Any accepted configuration, used for a while: no panic.
    #[test]
    fn no_accepted_setting_makes_time_arithmetic_panic(
        values in (
            within(1, TEN_YEARS),
            within(1, TEN_YEARS),
            within(1, TEN_YEARS),
            within(0, 60),
            within(1, TEN_YEARS),
            within(0, TEN_YEARS),
            within(0, TEN_YEARS),
        )
    ) {
        let values = [values.0, values.1, values.2, values.3, values.4, values.5, values.6];
        let mut raw: RawSettings = DURATIONS
            .iter()
            .zip(values)
            .map(|(name, value)| ((*name).to_owned(), value))
            .collect();
        raw.insert("database_url".into(), "sqlite://:memory:".into());
        let config = Config::from_raw(&raw).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(exercise(&config));
    }
}
