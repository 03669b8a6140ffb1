//! Several latchkey nodes on one PostgreSQL database, and the database
//! going away and coming back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

const ISSUER: &str = "http://latchkey.test";

/// A database dropped when the test ends.
struct Database(String);

impl Database {
    fn new() -> Self {
        let name = format!("latchkey_nodes_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE DATABASE {name}"));
        Self(name)
    }

    fn url(&self, port: u16) -> String {
        format!("postgres://root@127.0.0.1:{port}/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

/// `n` nodes sharing one database (through `db_port`) and one issuer; each
/// accepts the others' origin.
async fn nodes(db: &Database, db_port: u16, n: usize, extra: &[(&str, &str)]) -> Vec<TestApp> {
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let origins = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let url = db.url(db_port);
    let mut out = Vec::new();
    for port in ports {
        let listen = format!("127.0.0.1:{port}");
        let mut settings = vec![
            ("database_url", url.as_str()),
            ("listen", listen.as_str()),
            ("issuer", ISSUER),
            ("allowed_origins", origins.as_str()),
        ];
        settings.extend_from_slice(extra);
        out.push(TestApp::spawn_with(&settings).await);
    }
    out
}

#[tokio::test]
async fn racing_refreshes_across_nodes_share_one_successor() {
    let db = Database::new();
    let cluster = nodes(&db, 5432, 2, &[]).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let first = a.user_and_login("alice").await;
    let answers =
        futures::future::join_all((0..32).map(|i| cluster[i % 2].refresh_raw(&first.refresh)))
            .await;
    let mut successors = HashSet::new();
    for r in answers {
        assert_eq!(r.status(), StatusCode::OK);
        successors.insert(pair_of(r).await.refresh);
    }
    assert_eq!(successors.len(), 1, "one successor");
    let session = a
        .service
        .store()
        .session(&first.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.generation, 1, "exactly one generation step");
    assert!(session.revoked_at.is_none());
    // A token from one node is good on the other.
    let next = b.refresh(successors.iter().next().unwrap()).await;
    assert_eq!(a.me(&next.access).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn reuse_on_one_node_revokes_everywhere_and_logout_shows_at_once() {
    let db = Database::new();
    let cluster = nodes(&db, 5432, 2, &[]).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let first = a.user_and_login("alice").await;
    let second = a.refresh(&first.refresh).await;
    b.advance(Duration::from_secs(11));
    assert_eq!(
        b.refresh_raw(&first.refresh).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        a.refresh_raw(&second.refresh).await.status(),
        StatusCode::UNAUTHORIZED,
        "A refuses what B revoked"
    );
    assert_eq!(
        a.me(&second.access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Logout on A: introspection on B says inactive at once.
    let secret = a
        .service
        .add_client("api", false, "")
        .await
        .unwrap()
        .secret
        .unwrap();
    let live = a.login("alice").await;
    let introspect = |node: &TestApp| {
        node.post("/oauth2/introspect")
            .basic_auth("api", Some(&secret))
            .form(&[("token", live.access.as_str())])
            .send()
    };
    let info: Value = introspect(b).await.unwrap().json().await.unwrap();
    assert_eq!(info["active"], true);
    a.post("/v1/auth/logout")
        .bearer_auth(&live.access)
        .send()
        .await
        .unwrap();
    let info: Value = introspect(b).await.unwrap().json().await.unwrap();
    assert_eq!(info["active"], false);
}

#[tokio::test]
async fn a_key_rotated_on_one_node_signs_on_both() {
    let db = Database::new();
    let cluster = nodes(&db, 5432, 2, &[]).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let kid = b.service.rotate_key(true).await.unwrap().kid;
    let deadline = Instant::now() + Duration::from_secs(6);
    for node in [a, b] {
        loop {
            let jwks: Value = node
                .get("/.well-known/jwks.json")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == kid.as_str())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not published within the pick-up interval"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Each test node has its own clock: let both pass the key's activation.
    for node in [a, b] {
        node.advance(Duration::from_secs(1));
    }
    for node in [a, b] {
        let pair = node.user_and_login("alice").await;
        let header = pair.access.split('.').next().unwrap().to_owned();
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["kid"], kid.as_str());
    }
}

#[tokio::test]
async fn the_login_limit_holds_across_nodes() {
    let db = Database::new();
    let cluster = nodes(&db, 5432, 2, &[("login_max_failures", "3")]).await;
    cluster[0].register("alice", PASSWORD).await;
    for i in 0..3 {
        let r = cluster[i % 2].login_raw("alice", "wrong password").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    for node in &cluster {
        assert_eq!(
            node.login_raw("alice", PASSWORD).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

/// A TCP proxy to PostgreSQL that the test can cut and mend, and that
/// counts what latchkey sends: each read of a burst from a node is one
/// request of a round trip (a node writes a whole query, or a ping, at once).
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    bursts: Arc<AtomicU64>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let bursts = Arc::new(AtomicU64::new(0));
        let flag = cut.clone();
        let counter = bursts.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let flag = flag.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect("127.0.0.1:5432").await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let watch = async {
                        while !flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    let upstream = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            match cr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    counter.fetch_add(1, Ordering::SeqCst);
                                    if sw.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                    };
                    tokio::select! {
                        () = upstream => {}
                        _ = tokio::io::copy(&mut sr, &mut cw) => {}
                        () = watch => {}
                    }
                });
            }
        });
        Self { port, cut, bursts }
    }

    fn bursts(&self) -> u64 {
        self.bursts.load(Ordering::SeqCst)
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_refresh_and_an_access_check_cost_one_round_trip_each() {
    let db = Database::new();
    let proxy = Proxy::start().await;
    let cluster = nodes(&db, proxy.port, 1, &[]).await;
    let node = &cluster[0];
    let mut pair = node.user_and_login("alice").await;
    // Once each first: statements prepared on the connections.
    pair = node.refresh(&pair.refresh).await;
    assert_eq!(node.me(&pair.access).await.status(), StatusCode::OK);

    const N: u64 = 20;
    // Background work (the feed's poll, the key ring's pick-up, counts)
    // may add a query or two to a round; one in three must be clean. Two
    // round trips each would give 40 every time.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let before = proxy.bursts();
        for _ in 0..N {
            pair = node.refresh(&pair.refresh).await;
        }
        let refreshes = proxy.bursts() - before;
        let before = proxy.bursts();
        for _ in 0..N {
            assert_eq!(node.me(&pair.access).await.status(), StatusCode::OK);
        }
        let checks = proxy.bursts() - before;
        rounds.push((refreshes, checks));
        if (N..=N + 2).contains(&refreshes) && (N..=N + 2).contains(&checks) {
            return;
        }
    }
    panic!("requests to PostgreSQL for {N} refreshes and {N} access checks, by round: {rounds:?}");
}

#[tokio::test]
async fn a_lost_database_answers_503_quickly_and_service_resumes() {
    let db = Database::new();
    let proxy = Proxy::start().await;
    let settings = [
        ("database_acquire_timeout", "1s"),
        ("database_statement_timeout", "1s"),
    ];
    let cluster = nodes(&db, proxy.port, 1, &settings).await;
    let node = &cluster[0];
    let pair = node.user_and_login("alice").await;
    assert_eq!(node.me(&pair.access).await.status(), StatusCode::OK);

    proxy.set_cut(true);
    // Let the proxy drop the connections it carries.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let r = node.me(&pair.access).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered in {:?}",
        started.elapsed()
    );
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    assert_eq!(
        node.get("/readyz").send().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        node.get("/healthz").send().await.unwrap().status(),
        StatusCode::OK
    );
    let r = node.refresh_raw(&pair.refresh).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    proxy.set_cut(false);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if node.me(&pair.access).await.status() == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "service did not resume within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing was spent while the store was away.
    node.refresh(&pair.refresh).await;
}

/// Two nodes on one database, a confidential client `api` (its secret), and
/// `TRIALS` sessions of alice opened on the first node.
const TRIALS: usize = 100;

async fn two_nodes_and_sessions(db: &Database) -> (Vec<TestApp>, String, Vec<Pair>) {
    let cluster = nodes(db, 5432, 2, &[]).await;
    let secret = cluster[0]
        .service
        .add_client("api", false, "")
        .await
        .unwrap()
        .secret
        .unwrap();
    cluster[0].register("alice", PASSWORD).await;
    let mut sessions = Vec::new();
    for _ in 0..TRIALS {
        sessions.push(cluster[0].login("alice").await);
    }
    (cluster, secret, sessions)
}

/// Prints p50 and p99 of `latencies`, and checks p99 is under a second.
fn report_latencies(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100];
    println!("{what}: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
}

#[tokio::test]
async fn a_logout_on_one_node_reaches_the_feed_of_another_within_a_second() {
    let db = Database::new();
    let (cluster, secret, sessions) = two_nodes_and_sessions(&db).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let mut feed = FeedReader::open(&b.url, ("api", &secret), None).await;
    assert!(feed.until_ready().await.is_empty());
    let mut latencies = Vec::new();
    for pair in &sessions {
        let started = Instant::now();
        a.logout(&pair.access).await;
        let (name, _, data) = feed
            .event(Duration::from_secs(1))
            .await
            .expect("on the other node's feed within 1 s");
        latencies.push(started.elapsed());
        assert_eq!(name, "revoked");
        assert_eq!(data["sid"], pair.session_id.as_str());
    }
    report_latencies("logout on node A to the event on node B's feed", latencies);
}

#[tokio::test]
async fn a_verifier_subscribed_to_one_node_refuses_a_logout_on_another_within_a_second() {
    let db = Database::new();
    let (cluster, secret, sessions) = two_nodes_and_sessions(&db).await;
    let (a, b) = (&cluster[0], &cluster[1]);
    let verifier = crate::feed::subscribed_verifier(ISSUER, &b.url, &secret);
    tokio::time::timeout(Duration::from_secs(5), verifier.feed_ready())
        .await
        .expect("in sync");
    let mut latencies = Vec::new();
    for pair in &sessions {
        verifier.verify(&pair.access).await.unwrap();
        let started = Instant::now();
        a.logout(&pair.access).await;
        while !crate::feed::is_revoked(&verifier, &pair.access).await {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "refused within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(started.elapsed());
    }
    report_latencies(
        "logout on node A to refusal by a verifier subscribed to node B",
        latencies,
    );
}

/// A pool of two: no connection is kept or listens that the other
/// operations would then wait for.
#[tokio::test]
async fn a_small_pool_serves_every_kind_of_operation() {
    let db = Database::new();
    let cluster = nodes(&db, 5432, 1, &[("database_max_connections", "2")]).await;
    let node = &cluster[0];
    node.register("alice", PASSWORD).await;
    let mut pairs = Vec::new();
    for _ in 0..4 {
        pairs.push(node.login("alice").await);
    }
    let work = pairs.iter().map(|pair| async move {
        let next = node.refresh(&pair.refresh).await;
        assert_eq!(node.me(&next.access).await.status(), StatusCode::OK);
        node.logout(&next.access).await;
    });
    tokio::time::timeout(Duration::from_secs(20), futures::future::join_all(work))
        .await
        .expect("no operation starved");
    assert!(node.audit_events().await.contains(&"logout".to_owned()));
}

#[tokio::test]
async fn each_queued_mail_is_sent_by_one_node_only() {
    let sink = crate::smtp::SmtpSink::start().await;
    let smtp = sink.url();
    let db = Database::new();
    let cluster = nodes(&db, 5432, 2, &[("smtp_url", smtp.as_str())]).await;
    let users: Vec<String> = (0..8).map(|i| format!("user{i}")).collect();
    for name in &users {
        assert_eq!(
            cluster[0].register(name, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        cluster[0]
            .service
            .set_email(name, &format!("{name}@example.com"), true)
            .await
            .unwrap();
    }
    // Both nodes queue, and both senders look at the one outbox.
    let asks = users.iter().enumerate().map(|(i, name)| {
        cluster[i % 2]
            .post("/v1/auth/password-reset")
            .json(&serde_json::json!({ "login": name }))
            .send()
    });
    for r in futures::future::join_all(asks).await {
        assert_eq!(r.unwrap().status(), StatusCode::ACCEPTED);
    }
    for name in &users {
        sink.wait_for(&format!("{name}@example.com"), 1, Duration::from_secs(20))
            .await;
    }
    // Another poll of each sender: still one mail each.
    tokio::time::sleep(Duration::from_secs(5)).await;
    for name in &users {
        assert_eq!(sink.to(&format!("{name}@example.com")).len(), 1, "{name}");
    }
    assert_eq!(sink.messages().len(), users.len());
}
