//! The `latchkey` binary: serve, signals, durability, the CLI, configuration.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{assert_error, pair_of, FeedReader, PASSWORD};

fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

/// Runs a command to completion, with `stdin` as its standard input.
pub fn latchkey(dir: &TempDir, args: &[&str], stdin: Option<&str>) -> Output {
    latchkey_env(dir, args, stdin, &[])
}

fn latchkey_env(dir: &TempDir, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = command(dir.path());
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "commands log nothing by default: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A failed command: one line on stderr, nothing on stdout, non-zero exit.
fn failed(out: &Output) -> String {
    assert!(!out.status.success());
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    err
}

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &TempDir, args: &[&str]) -> Self {
        Self::start_logging(dir, args, Stdio::null())
    }

    fn start_logging(dir: &TempDir, args: &[&str], stderr: impl Into<Stdio>) -> Self {
        let mut cmd = command(dir.path());
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--cookie-secure",
            "false",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line: {line:?}"))
            .to_owned();
        assert!(url.starts_with("http://127.0.0.1:"));
        Self { child, url }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn login(url: &str, username: &str) -> crate::helpers::Pair {
    let r = client()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    pair_of(r).await
}

async fn register(url: &str, username: &str) {
    let r = client()
        .post(format!("{url}/v1/auth/register"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn me(url: &str, access: &str) -> reqwest::Response {
    client()
        .get(format!("{url}/v1/me"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn serve_prints_where_it_listens_and_stops_gracefully_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]);
    assert_eq!(
        client()
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    server.signal("TERM");
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        dir.path().join("latchkey.db").exists(),
        "the default database is ./latchkey.db"
    );
}

#[tokio::test]
async fn serve_stops_gracefully_on_sigint_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir, &[]);
    server.signal("INT");
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_killed_server_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    let mut pairs = Vec::new();
    for i in 0..5 {
        let name = format!("user{i}");
        register(&server.url, &name).await;
        pairs.push(login(&server.url, &name).await);
    }
    let revoked = pairs.pop().unwrap();
    let r = client()
        .post(format!("{}/v1/auth/logout", server.url))
        .bearer_auth(&revoked.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    server.signal("KILL");
    drop(server);

    let server = Server::start(&dir, &[]);
    let users = ok_lines(&latchkey(&dir, &["user", "list"], None));
    assert_eq!(users.len(), 5);
    for pair in &pairs {
        // Access tokens carry the old issuer (another port): refresh instead.
        let r = client()
            .post(format!("{}/v1/auth/refresh", server.url))
            .header("cookie", format!("refreshToken={}", pair.refresh))
            .header("origin", &server.url)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "session {} survived",
            pair.session_id
        );
        let next = pair_of(r).await;
        assert_eq!(me(&server.url, &next.access).await.status(), StatusCode::OK);
    }
    let r = client()
        .post(format!("{}/v1/auth/refresh", server.url))
        .header("cookie", format!("refreshToken={}", revoked.refresh))
        .header("origin", &server.url)
        .send()
        .await
        .unwrap();
    assert_error(r, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let sessions = ok_lines(&latchkey(&dir, &["session", "list"], None));
    assert_eq!(sessions.len(), 4, "the revoked session stays revoked");
}

#[tokio::test]
async fn user_commands() {
    let dir = tempfile::tempdir().unwrap();
    let added = ok_lines(&latchkey(
        &dir,
        &["user", "add", "Carol"],
        Some("pass word 1\r\n"),
    ));
    assert_eq!(added[0]["username"], "Carol");
    assert_eq!(added[0].as_object().unwrap().len(), 3);
    failed(&latchkey(&dir, &["user", "add", "dave"], Some("short\n")));
    failed(&latchkey(
        &dir,
        &["user", "add", "carol"],
        Some("pass word 2\n"),
    ));
    failed(&latchkey(&dir, &["user", "disable", "nobody"], None));
    failed(&latchkey(
        &dir,
        &["user", "add", "bad\u{7}name"],
        Some("pass word 2\n"),
    ));
    let list = ok_lines(&latchkey(&dir, &["user", "list"], None));
    assert_eq!(list.len(), 1);

    let server = Server::start(&dir, &[]);
    let login_with = |password: &'static str| {
        client()
            .post(format!("{}/v1/auth/login", server.url))
            .json(&json!({"username": "carol", "password": password}))
            .send()
    };
    // The line ending was stripped, nothing else.
    let r = login_with("pass word 1").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let pair = pair_of(r).await;
    let disabled = ok_lines(&latchkey(&dir, &["user", "disable", "carol"], None));
    assert_eq!(disabled[0]["disabled"], true);
    assert_eq!(
        login_with("pass word 1").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me(&server.url, &pair.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    ok_lines(&latchkey(&dir, &["user", "enable", "carol"], None));
    let r = login_with("pass word 1").await.unwrap();
    let second = pair_of(r).await;
    ok_lines(&latchkey(
        &dir,
        &["user", "set-password", "carol"],
        Some("new pass word\n"),
    ));
    assert_eq!(
        me(&server.url, &second.access).await.status(),
        StatusCode::UNAUTHORIZED,
        "set-password revokes all sessions"
    );
    assert_eq!(
        login_with("new pass word").await.unwrap().status(),
        StatusCode::OK
    );
    failed(&latchkey(
        &dir,
        &["user", "set-password", "carol"],
        Some("short\n"),
    ));
}

#[tokio::test]
async fn session_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    register(&server.url, "erin").await;
    register(&server.url, "frank").await;
    let e1 = login(&server.url, "erin").await;
    let e2 = login(&server.url, "erin").await;
    let f = login(&server.url, "frank").await;
    let listed = ok_lines(&latchkey(&dir, &["session", "list", "erin"], None));
    assert_eq!(listed.len(), 2);
    assert_eq!(
        ok_lines(&latchkey(&dir, &["session", "list"], None)).len(),
        3
    );
    ok_lines(&latchkey(
        &dir,
        &["session", "revoke", e1.session_id.as_str()],
        None,
    ));
    assert_eq!(
        me(&server.url, &e1.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(&server.url, &e2.access).await.status(), StatusCode::OK);
    failed(&latchkey(
        &dir,
        &["session", "revoke", e1.session_id.as_str()],
        None,
    ));
    failed(&latchkey(
        &dir,
        &["session", "revoke", "no-such-session"],
        None,
    ));
    let out = ok_lines(&latchkey(&dir, &["session", "revoke-all", "erin"], None));
    assert_eq!(out[0]["revoked"], 1);
    assert_eq!(
        me(&server.url, &e2.access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me(&server.url, &f.access).await.status(), StatusCode::OK);
    failed(&latchkey(&dir, &["session", "list", "nobody"], None));
}

#[tokio::test]
async fn key_commands() {
    let dir = tempfile::tempdir().unwrap();
    ok_lines(&latchkey(&dir, &["migrate"], None));
    let _server = Server::start(&dir, &[]);
    let keys = ok_lines(&latchkey(&dir, &["key", "list"], None));
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["state"], "signing");
    let signing = keys[0]["kid"].as_str().unwrap().to_owned();
    let refused = failed(&latchkey(&dir, &["key", "retire", &signing], None));
    assert!(refused.contains("rotate"), "{refused}");
    failed(&latchkey(&dir, &["key", "retire", "no-such-kid"], None));
    let rotated = ok_lines(&latchkey(&dir, &["key", "rotate"], None));
    assert_eq!(rotated[0]["state"], "pending");
    let retired = ok_lines(&latchkey(&dir, &["key", "retire", &signing], None));
    assert_eq!(retired[0]["state"], "retired");
    let states: Vec<Value> = ok_lines(&latchkey(&dir, &["key", "list"], None))
        .iter()
        .map(|k| k["state"].clone())
        .collect();
    assert_eq!(states, [json!("retired"), json!("signing")]);
}

#[test]
fn a_bad_setting_stops_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = failed(&latchkey(&dir, &["migrate", "--access-ttl", "soon"], None));
    assert!(err.contains("access_ttl"), "{err}");
    let err = failed(&latchkey_env(
        &dir,
        &["migrate"],
        None,
        &[("LATCHKEY_SIGNING_ALG", "HS256")],
    ));
    assert!(err.contains("signing_alg"), "{err}");
    std::fs::write(
        dir.path().join("latchkey.toml"),
        "refresh_ttl = \"forever\"\n",
    )
    .unwrap();
    let err = failed(&latchkey(&dir, &["migrate"], None));
    assert!(err.contains("refresh_ttl"), "{err}");
    let err = failed(&latchkey(
        &dir,
        &["serve", "--refresh-ttl", "1d", "--listen", "0.0.0.0:0"],
        None,
    ));
    assert!(
        err.contains("issuer"),
        "a wildcard address needs an issuer: {err}"
    );
    // Bounded settings (docs/reference.md §10): refused at start-up, one line.
    let dir = tempfile::tempdir().unwrap();
    for (flag, value, setting) in [
        ("--refresh-reuse-grace", "61s", "refresh_reuse_grace"),
        ("--access-ttl", "3651d", "access_ttl"),
        ("--session-max-age", "99999d", "session_max_age"),
        ("--login-window", "4000d", "login_window"),
        ("--max-connections", "0", "max_connections"),
        ("--header-read-timeout", "0", "header_read_timeout"),
    ] {
        let err = failed(&latchkey(&dir, &["serve", flag, value], None));
        assert!(err.contains(setting), "{flag} {value}: {err}");
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The database, its `-wal` and `-shm` files and the secret file are the
/// owner's only; a secret file others can read stops `serve`.
#[tokio::test]
async fn files_are_the_owners_only_and_a_shared_secret_stops_serve() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir, &[]);
    register(&server.url, "alice").await;
    login(&server.url, "alice").await;
    for file in [
        "latchkey.db",
        "latchkey.db-wal",
        "latchkey.db-shm",
        "latchkey.db.secret",
    ] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    drop(server);

    let secret = dir.path().join("latchkey.db.secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = failed(&latchkey(&dir, &["serve", "--listen", "127.0.0.1:0"], None));
    assert!(
        err.contains("latchkey.db.secret") && err.contains("600"),
        "{err}"
    );
}

/// `master_key_file` reads the master key from a file (not a flag); keys
/// made before a master key was set are named at start-up.
#[tokio::test]
async fn the_master_key_comes_from_a_file_and_clear_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // A first start without a master key: its signing key is stored in clear.
    let server = Server::start(&dir, &[]);
    register(&server.url, "alice").await;
    drop(server);

    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let log = dir.path().join("serve.log");
    let server = Server::start_logging(
        &dir,
        &["--master-key-file", key_file.to_str().unwrap()],
        std::fs::File::create(&log).unwrap(),
    );
    let pair = login(&server.url, "alice").await;
    assert_eq!(me(&server.url, &pair.access).await.status(), StatusCode::OK);
    let kid = ok_lines(&latchkey(&dir, &["key", "list"], None))[0]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("unencrypted") && logged.contains(&kid),
        "{logged}"
    );

    let err = failed(&latchkey(
        &dir,
        &["migrate", "--master-key-file", "no-such-file"],
        None,
    ));
    assert!(err.contains("master_key_file"), "{err}");
}

#[test]
fn file_then_environment_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("custom.toml"),
        "database_url = \"sqlite://from-file.db\"\n",
    )
    .unwrap();
    let add = |extra: &[&str], env: &[(&str, &str)], name: &str| {
        let mut args = vec!["--config", "custom.toml", "user", "add", name];
        args.extend_from_slice(extra);
        ok_lines(&latchkey_env(&dir, &args, Some("pass word 1\n"), env));
    };
    add(&[], &[], "a");
    assert!(dir.path().join("from-file.db").exists());
    add(
        &[],
        &[("LATCHKEY_DATABASE_URL", "sqlite://from-env.db")],
        "b",
    );
    assert!(dir.path().join("from-env.db").exists());
    add(
        &["--database-url", "sqlite://from-flag.db"],
        &[("LATCHKEY_DATABASE_URL", "sqlite://from-env.db")],
        "c",
    );
    assert!(dir.path().join("from-flag.db").exists());
    let users_in = |db: &str| {
        ok_lines(&latchkey(
            &dir,
            &["user", "list", "--database-url", db],
            None,
        ))
        .len()
    };
    assert_eq!(
        (
            users_in("sqlite://from-file.db"),
            users_in("sqlite://from-env.db"),
            users_in("sqlite://from-flag.db")
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn client_commands() {
    let dir = tempfile::tempdir().unwrap();
    let added = ok_lines(&latchkey(
        &dir,
        &["client", "add", "reports", "--scope", "read write"],
        None,
    ));
    let secret = added[0]["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(added[0]["client_id"], "reports");
    assert!(secret.len() >= 43, "256 bits");
    let public = ok_lines(&latchkey(
        &dir,
        &["client", "add", "mobile", "--public"],
        None,
    ));
    assert_eq!(public[0], json!({ "client_id": "mobile" }));
    failed(&latchkey(&dir, &["client", "add", "reports"], None));
    failed(&latchkey(&dir, &["client", "add", "web"], None));
    failed(&latchkey(&dir, &["client", "add", "bad id"], None));
    let listed = ok_lines(&latchkey(&dir, &["client", "list"], None));
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["client_id"], "reports");
    assert_eq!(listed[1]["scope"], "read write");
    assert_eq!(listed[1]["public"], false);
    assert!(listed.iter().all(|c| c.get("client_secret").is_none()));

    let server = Server::start(&dir, &[]);
    let token = |secret: &str| {
        client()
            .post(format!("{}/oauth2/token", server.url))
            .basic_auth("reports", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    assert_eq!(token(&secret).await.unwrap().status(), StatusCode::OK);
    ok_lines(&latchkey(&dir, &["client", "remove", "reports"], None));
    // The server read the client a moment ago: another process's removal
    // reaches it within the client cache's bound.
    let removed_at = std::time::Instant::now();
    while token(&secret).await.unwrap().status() != StatusCode::UNAUTHORIZED {
        assert!(
            removed_at.elapsed() < latchkey_core::CLIENT_CACHE_TTL + Duration::from_secs(1),
            "a removed client still authenticates"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    failed(&latchkey(&dir, &["client", "remove", "reports"], None));
}

#[tokio::test]
async fn json_logs_carry_a_request_id_and_never_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut server = Server::start_logging(&dir, &["--log-format", "json"], log);
    register(&server.url, "grace").await;
    let pair = login(&server.url, "grace").await;
    let r = client()
        .get(format!("{}/v1/me?access_token={}", server.url, pair.access))
        .bearer_auth(&pair.access)
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42");
    let r = client()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert!(
        !r.headers()["x-request-id"].is_empty(),
        "one is made when none comes"
    );
    server.signal("TERM");
    tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();

    let text = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    // The line each request ends with (audit lines inside its span carry its id too).
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "request" && l["fields"]["status"].is_number())
        .collect();
    assert!(requests.len() >= 4, "one line per request: {text}");
    assert!(requests
        .iter()
        .any(|l| l["span"]["request_id"] == "trace-me-42" && l["span"]["route"] == "/v1/me"));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["event"] == "login_succeeded"
            && l["span"]["route"] == "/v1/auth/login"
            && l["span"]["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())));
    for secret in [PASSWORD, pair.access.as_str(), pair.refresh.as_str()] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn revocations_by_the_command_line_reach_the_feed_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let added = ok_lines(&latchkey(&dir, &["client", "add", "api"], None));
    let secret = added[0]["client_secret"].as_str().unwrap().to_owned();
    let mut server = Server::start(&dir, &[]);
    register(&server.url, "erin").await;
    let e1 = login(&server.url, "erin").await;
    let e2 = login(&server.url, "erin").await;
    let mut feed = FeedReader::open(&server.url, ("api", &secret), None).await;
    assert!(feed.until_ready().await.is_empty());

    // Another process, the same database: the server hears of it by polling.
    for (args, sid) in [
        (
            vec!["session", "revoke", e1.session_id.as_str()],
            &e1.session_id,
        ),
        (vec!["user", "disable", "erin"], &e2.session_id),
    ] {
        ok_lines(&latchkey(&dir, &args, None));
        let done = std::time::Instant::now();
        let (name, _, data) = feed
            .event(Duration::from_secs(1))
            .await
            .unwrap_or_else(|| panic!("{args:?} on the feed within 1 s"));
        assert_eq!(
            (name.as_str(), &data["sid"]),
            ("revoked", &json!(sid.as_str()))
        );
        assert!(done.elapsed() < Duration::from_secs(1));
    }

    // A subscriber does not hold up a graceful stop.
    server.signal("TERM");
    let status = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::task::spawn_blocking(move || server.child.wait().unwrap()),
    )
    .await
    .expect("stopped with a subscriber connected")
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        feed.frame(Duration::from_secs(2)).await.is_none(),
        "the stream ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_commands() {
    let sink = crate::smtp::SmtpSink::start().await;
    let smtp = sink.url();
    let dir = tempfile::tempdir().unwrap();
    ok_lines(&latchkey(&dir, &["user", "add", "carol"], Some(PASSWORD)));
    ok_lines(&latchkey(&dir, &["user", "add", "dave"], Some(PASSWORD)));
    // Without smtp_url an operator can still set a verified address.
    let set = ok_lines(&latchkey(
        &dir,
        &[
            "user",
            "set-email",
            "carol",
            "Carol@Example.com",
            "--verified",
        ],
        None,
    ));
    assert_eq!(set[0]["email"], "Carol@Example.com");
    assert_eq!(set[0]["email_verified"], true);
    let taken = failed(&latchkey(
        &dir,
        &[
            "user",
            "set-email",
            "dave",
            "Carol@EXAMPLE.COM",
            "--verified",
        ],
        None,
    ));
    assert!(taken.contains("taken"), "{taken}");
    failed(&latchkey(
        &dir,
        &["user", "set-email", "nobody", "a@example.com"],
        None,
    ));
    failed(&latchkey(
        &dir,
        &["user", "set-email", "dave", "not an address"],
        None,
    ));
    let no_smtp = failed(&latchkey(&dir, &["mail", "test", "ops@example.com"], None));
    assert!(no_smtp.contains("smtp_url"), "{no_smtp}");

    // A test mail with the current settings (here from the environment).
    let sent = ok_lines(&latchkey_env(
        &dir,
        &["mail", "test", "ops@example.com"],
        None,
        &[
            ("LATCHKEY_SMTP_URL", &smtp),
            ("LATCHKEY_MAIL_FROM", "Ops <ops-bot@example.com>"),
        ],
    ));
    assert_eq!(sent[0]["sent"], "ops@example.com");
    let mail = sink
        .wait_for("ops@example.com", 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert_eq!(mail.header("Subject").unwrap(), "latchkey test mail");
    assert_eq!(mail.from, "ops-bot@example.com");
    // A server that does not answer: a clear failure, non-zero.
    let nobody = format!("smtp://127.0.0.1:{}", crate::helpers::free_port());
    let down = failed(&latchkey(
        &dir,
        &["--smtp-url", &nobody, "mail", "test", "ops@example.com"],
        None,
    ));
    assert!(down.contains("not sent"), "{down}");

    // Unverified, with a server running: its sender mails the check.
    let _server = Server::start(&dir, &["--smtp-url", &smtp]);
    let set = ok_lines(&latchkey(
        &dir,
        &[
            "--smtp-url",
            &smtp,
            "user",
            "set-email",
            "dave",
            "dave@example.com",
        ],
        None,
    ));
    assert_eq!(set[0]["email_verified"], false);
    let check = sink
        .wait_for("dave@example.com", 1, Duration::from_secs(15))
        .await
        .remove(0);
    assert_eq!(
        check.header("Subject").unwrap(),
        "Confirm your email address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_commands() {
    let dir = tempfile::tempdir().unwrap();
    ok_lines(&latchkey(&dir, &["user", "add", "erin"], Some(PASSWORD)));
    let shown = ok_lines(&latchkey(&dir, &["user", "mfa", "erin"], None));
    assert_eq!(
        shown[0],
        json!({"username": "erin", "totp": false, "totp_pending": false, "recovery_codes": 0, "passkeys": 0})
    );
    // Turned on through the API of a running server.
    let server = Server::start(&dir, &[]);
    let pair = login(&server.url, "erin").await;
    let enrolment: Value = client()
        .post(format!("{}/v1/me/totp", server.url))
        .bearer_auth(&pair.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let phone = crate::mfa::Authenticator::from_uri(enrolment["otpauth_uri"].as_str().unwrap());
    let r = client()
        .post(format!("{}/v1/me/totp/confirm", server.url))
        .bearer_auth(&pair.access)
        .json(&json!({ "code": phone.code_now() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let shown = ok_lines(&latchkey(&dir, &["user", "mfa", "erin"], None));
    assert_eq!(shown[0]["totp"], true);
    assert_eq!(shown[0]["recovery_codes"], 10);

    let reset = ok_lines(&latchkey(&dir, &["user", "mfa-reset", "erin"], None));
    assert_eq!(
        reset[0],
        json!({"username": "erin", "removed": {"totp": true, "recovery_codes": 10, "passkeys": 0}})
    );
    let shown = ok_lines(&latchkey(&dir, &["user", "mfa", "erin"], None));
    assert_eq!(
        (shown[0]["totp"].clone(), shown[0]["recovery_codes"].clone()),
        (json!(false), json!(0))
    );
    // The password alone logs in again.
    login(&server.url, "erin").await;
    drop(server);
    failed(&latchkey(&dir, &["user", "mfa", "nobody"], None));
    failed(&latchkey(&dir, &["user", "mfa-reset", "nobody"], None));
}
