//! The configuration's parsing, defaults and layers.

use super::*;
use latchkey_core::keys::SigningAlg;
use proptest::prelude::*;

fn raw(pairs: &[(&str, &str)]) -> RawSettings {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
    assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86400)
    );
    assert_eq!(parse_duration("42").unwrap(), Duration::from_secs(42));
    for bad in ["", "s", "10x", "-1s", "1.5s", "10 s", "99999999999999d"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

proptest! {
    #[test]
    fn duration_parsing_never_panics(s in "\\PC{0,30}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn durations_round_trip(n in 0u64..1_000_000, unit in prop::sample::select(vec!["ms", "s", "m", "h", "d", ""])) {
        let d = parse_duration(&format!("{n}{unit}")).unwrap();
        let factor = match unit { "ms" => 1, "" | "s" => 1000, "m" => 60_000, "h" => 3_600_000, _ => 86_400_000 };
        prop_assert_eq!(d.as_millis(), u128::from(n) * factor);
    }
}

#[test]
fn defaults_are_those_of_the_contract() {
    let c = Config::from_raw(&RawSettings::new()).unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(c.database_url, "sqlite://latchkey.db");
    assert_eq!(c.policy.access_ttl, Duration::from_secs(900));
    assert_eq!(c.policy.refresh_ttl, Duration::from_secs(7 * 86400));
    assert_eq!(c.policy.session_max_age, Duration::from_secs(30 * 86400));
    assert_eq!(c.policy.refresh_reuse_grace, Duration::from_secs(10));
    assert_eq!(c.policy.signing_alg, SigningAlg::EdDsa);
    assert!(c.policy.registration_open && c.cookie_secure);
    assert_eq!(
        (c.access_cookie.as_str(), c.refresh_cookie.as_str()),
        ("accessToken", "refreshToken")
    );
    assert_eq!(c.policy.login_max_failures, 10);
    assert_eq!(c.policy.jwks_max_age, Duration::from_secs(300));
    assert_eq!(
        c.resolve_issuer("127.0.0.1:9000".parse().unwrap()).unwrap(),
        "http://127.0.0.1:9000"
    );
    assert!(c.resolve_issuer("0.0.0.0:9000".parse().unwrap()).is_err());
}

#[test]
fn a_bad_value_names_its_setting() {
    for (name, value) in [
        ("access_ttl", "soon"),
        ("listen", "localhost"),
        ("signing_alg", "HS256"),
        ("registration", "maybe"),
        ("cookie_secure", "perhaps"),
        ("login_max_failures", "0"),
        ("trusted_proxies", "10.0.0.0/99"),
        ("master_key", "short"),
        ("allowed_origins", "ftp://x"),
        ("log_format", "xml"),
        ("issuer", "example.com"),
        ("database_url", "mysql://x"),
        ("smtp_url", "http://mail.example"),
        ("smtp_url", "smtp://"),
        ("smtp_url", "smtp://user:pass@"),
        ("mail_from", "not an address"),
        ("mail_from", "a@b.c\r\nBcc: x@y.z"),
        ("password_reset_url", "/reset"),
        ("email_verify_url", "https://app.example/verify#x"),
        ("mail_templates", "/no/such/directory"),
        ("webauthn_rp_id", "127.0.0.1"),
        ("webauthn_rp_id", "[::1]"),
        ("webauthn_rp_id", "https://example.com"),
        ("webauthn_rp_id", "example.com:8443"),
        ("webauthn_rp_id", "exa mple.com"),
        ("webauthn_rp_id", "-example.com"),
        ("webauthn_rp_id", "exämple.com"),
    ] {
        let e = Config::from_raw(&raw(&[(name, value)])).unwrap_err();
        assert_eq!(e.setting, name);
        assert!(
            e.to_string()
                .starts_with(&format!("invalid setting {name}: ")),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
    }
}

#[test]
fn layers_override_in_order_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "access_ttl = \"1m\"\nrefresh_ttl = \"2d\"\nlogin_max_failures = 3\ncookie_secure = false\n").unwrap();
    let env = vec![
        ("LATCHKEY_REFRESH_TTL".to_string(), "3d".to_string()),
        ("LATCHKEY_SESSION_MAX_AGE".to_string(), "4d".to_string()),
        ("UNRELATED".to_string(), "x".to_string()),
    ];
    let flags = raw(&[("session_max_age", "5d")]);
    let merged = layer(Some(&path), env.into_iter(), &flags).unwrap();
    let c = Config::from_raw(&merged).unwrap();
    assert_eq!(c.policy.access_ttl, Duration::from_secs(60), "file");
    assert_eq!(
        c.policy.refresh_ttl,
        Duration::from_secs(3 * 86400),
        "env over file"
    );
    assert_eq!(
        c.policy.session_max_age,
        Duration::from_secs(5 * 86400),
        "flag over env"
    );
    assert_eq!(c.policy.login_max_failures, 3);
    assert!(!c.cookie_secure);
}

#[test]
fn postgres_needs_an_explicit_issuer() {
    let pg = Config::from_raw(&raw(&[("database_url", "postgres://root@127.0.0.1/x")])).unwrap();
    assert!(pg.is_postgres());
    let e = pg
        .resolve_issuer("127.0.0.1:9000".parse().unwrap())
        .unwrap_err();
    assert_eq!(e.setting, "issuer");
    let named = Config::from_raw(&raw(&[
        ("database_url", "postgresql://root@127.0.0.1/x"),
        ("issuer", "https://id.example/"),
    ]))
    .unwrap();
    assert_eq!(
        named
            .resolve_issuer("127.0.0.1:9000".parse().unwrap())
            .unwrap(),
        "https://id.example"
    );
    assert_eq!(named.database_max_connections, 16);
    assert_eq!(named.database_acquire_timeout, Duration::from_secs(5));
}

#[test]
fn the_sqlite_cache_is_bounded() {
    assert_eq!(Config::from_raw(&raw(&[])).unwrap().sqlite_cache_mib, 64);
    let big = Config::from_raw(&raw(&[("sqlite_cache_mib", "1024")])).unwrap();
    assert_eq!(big.sqlite_cache_mib, 1024);
    for bad in ["1", "65537", "-5", "64MiB"] {
        let e = Config::from_raw(&raw(&[("sqlite_cache_mib", bad)])).unwrap_err();
        assert_eq!(e.setting, "sqlite_cache_mib", "{bad}");
    }
}

#[test]
fn each_setting_is_one_row() {
    let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), SETTINGS.len());
    let e = Config::from_raw(&raw(&[("acces_ttl", "1m")])).unwrap_err();
    assert_eq!(e.setting, "acces_ttl");
}

#[test]
fn unknown_file_settings_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "acces_ttl = \"1m\"\n").unwrap();
    let e = layer(Some(&path), std::iter::empty(), &RawSettings::new()).unwrap_err();
    assert_eq!(e.setting, "acces_ttl");
}

#[test]
fn the_webauthn_relying_party_is_the_issuers_host_unless_set() {
    let plain = Config::from_raw(&RawSettings::new()).unwrap();
    assert_eq!(plain.webauthn_rp_id, None);
    let policy = plain
        .policy_for("https://id.example.com:8443".into())
        .unwrap();
    assert_eq!(policy.webauthn_rp_id, "id.example.com");
    assert_eq!(policy.webauthn_origins, ["https://id.example.com:8443"]);
    let policy = plain.policy_for("http://[::1]:8080".into()).unwrap();
    assert_eq!(policy.webauthn_rp_id, "::1");

    // A parent domain of the origins, from any layer; the origins are
    // allowed_origins.
    let env = vec![(
        "LATCHKEY_WEBAUTHN_RP_ID".to_string(),
        " Example.COM. ".to_string(),
    )];
    let layered = layer(
        None,
        env.into_iter(),
        &raw(&[(
            "allowed_origins",
            "https://app.example.com,https://example.com",
        )]),
    )
    .unwrap();
    let set = Config::from_raw(&layered).unwrap();
    let policy = set.policy_for("https://id.example.com".into()).unwrap();
    assert_eq!(policy.webauthn_rp_id, "example.com");
    assert_eq!(
        policy.webauthn_origins,
        ["https://app.example.com", "https://example.com"]
    );
    let local = Config::from_raw(&raw(&[("webauthn_rp_id", "localhost")])).unwrap();
    assert_eq!(local.webauthn_rp_id.as_deref(), Some("localhost"));
}

#[test]
fn origins() {
    assert_eq!(
        parse_origin("HTTPS://App.Example/").unwrap(),
        "https://app.example"
    );
    assert!(parse_origin("https://app.example/path").is_err());
    assert_eq!(
        origin_of("http://127.0.0.1:8080/v1/x?y").as_deref(),
        Some("http://127.0.0.1:8080")
    );
    assert_eq!(origin_of("not a url"), None);
}

#[test]
fn mail_settings_and_their_defaults() {
    let plain = Config::from_raw(&RawSettings::new()).unwrap();
    assert!(plain.smtp_url.is_none());
    let policy = plain.policy_for("http://127.0.0.1:8080".into()).unwrap();
    assert!(policy.mail.is_none(), "no smtp_url: no mail, no reset");
    let c = Config::from_raw(&raw(&[("smtp_url", "smtps://me:s3cret@mail.example:465")])).unwrap();
    let url = c.smtp_url.clone().unwrap();
    assert!(url.implicit_tls());
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "the password never prints"
    );
    assert_eq!(
        c.mail_from_for("https://id.example.com"),
        "latchkey@id.example.com"
    );
    assert_eq!(
        c.mail_from_for("http://id.example.com:8080"),
        "latchkey@id.example.com"
    );
    assert_eq!(
        c.mail_from_for("http://127.0.0.1:8080"),
        "latchkey@localhost"
    );
    let mail = c
        .policy_for("https://id.example.com".into())
        .unwrap()
        .mail
        .unwrap();
    assert_eq!(
        mail.password_reset_url,
        "https://id.example.com/reset-password"
    );
    assert_eq!(mail.email_verify_url, "https://id.example.com/verify-email");
    let c = Config::from_raw(&raw(&[
        ("smtp_url", "smtp://mail.example"),
        (
            "allowed_origins",
            "https://app.example, https://other.example",
        ),
        ("mail_from", "Example <no-reply@app.example>"),
        (
            "email_verify_url",
            "https://app.example/account/verify?lang=en",
        ),
    ]))
    .unwrap();
    assert!(!c.smtp_url.clone().unwrap().implicit_tls());
    assert_eq!(
        c.mail_from_for("https://id.example"),
        "Example <no-reply@app.example>"
    );
    let mail = c
        .policy_for("https://id.example".into())
        .unwrap()
        .mail
        .unwrap();
    assert_eq!(
        mail.password_reset_url,
        "https://app.example/reset-password"
    );
    assert_eq!(
        mail.email_verify_url,
        "https://app.example/account/verify?lang=en"
    );
}

#[test]
fn mail_templates_replace_the_built_in_ones_and_a_bad_one_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("password_reset.subject.txt"),
        "Reset at {{issuer}}",
    )
    .unwrap();
    let path = dir.path().display().to_string();
    let c = Config::from_raw(&raw(&[
        ("smtp_url", "smtp://m.example"),
        ("mail_templates", &path),
    ]))
    .unwrap();
    let mail = c
        .policy_for("https://id.example".into())
        .unwrap()
        .mail
        .unwrap();
    let vars = std::collections::BTreeMap::from([("issuer", "https://id.example".to_owned())]);
    let rendered = mail
        .templates
        .render(latchkey_core::mail::MailKind::PasswordReset, &vars);
    assert_eq!(rendered.subject, "Reset at https://id.example");
    std::fs::write(dir.path().join("verify_email.txt"), "{{secret}}").unwrap();
    let e = Config::from_raw(&raw(&[("mail_templates", &path)])).unwrap_err();
    assert_eq!(e.setting, "mail_templates");
    assert!(e.to_string().contains("verify_email.txt"), "{e}");
}

#[test]
fn mail_settings_come_from_the_environment_too() {
    let env = vec![
        (
            "LATCHKEY_SMTP_URL".to_string(),
            "smtp://mail.example:2525".to_string(),
        ),
        (
            "LATCHKEY_MAIL_FROM".to_string(),
            "a@example.com".to_string(),
        ),
        (
            "LATCHKEY_PASSWORD_RESET_URL".to_string(),
            "https://app.example/r".to_string(),
        ),
    ];
    let flags = raw(&[("email_verify_url", "https://app.example/v")]);
    let c = Config::from_raw(&layer(None, env.into_iter(), &flags).unwrap()).unwrap();
    assert_eq!(c.smtp_url.unwrap().as_str(), "smtp://mail.example:2525");
    assert_eq!(c.mail_from.as_deref(), Some("a@example.com"));
    assert_eq!(
        c.password_reset_url.as_deref(),
        Some("https://app.example/r")
    );
    assert_eq!(c.email_verify_url.as_deref(), Some("https://app.example/v"));
}
