//! Clients no one here wrote (issue 3): Authlib's OAuth 2.0 client, PyJWT's
//! `PyJWKClient`, pyotp and the `jose` package drive a real `latchkey serve`, and
//! each of their scripts (tests/interop/) exits non-zero when latchkey
//! departs from the standard: an error name, a status, a claim, a header or
//! a content type.
//!
//! They need the packages that scripts/test.sh installs:
//! `python3 -m pip install -r tests/interop/requirements.txt` and
//! `npm ci --prefix tests/interop/node`. Without them these tests fail,
//! naming the command; they never skip.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::PASSWORD;

/// How long one script may take before it is killed and the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How much of the server's log a failure shows.
const LOG_LINES: usize = 30;
const USERNAME: &str = "interop-user";
const CLIENT_ID: &str = "interop-service";
const CLIENT_SCOPE: &str = "read write";
const PUBLIC_CLIENT_ID: &str = "interop-mobile";

fn workspace() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

fn interop() -> PathBuf {
    workspace().join("tests/interop")
}

fn shown(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A `latchkey` command (not `serve`) in `dir`, run to completion; its one
/// line of JSON.
fn latchkey(dir: &TempDir, args: &[&str], stdin: &str) -> Value {
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "latchkey {args:?}: {}", shown(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", shown(&out)))
}

/// The Python packages of requirements.txt, at their pinned versions.
fn require_python_packages() {
    let out = Command::new("python3")
        .arg(interop().join("python/check_requirements.py"))
        .arg(interop().join("requirements.txt"))
        .output()
        .unwrap_or_else(|e| {
            panic!("the interop tests need python3 with pip ({e}); then run `python3 -m pip install -r tests/interop/requirements.txt`")
        });
    assert!(
        out.status.success(),
        "Python interop packages missing: run `python3 -m pip install -r tests/interop/requirements.txt` (scripts/test.sh does)\n{}",
        shown(&out)
    );
}

/// node_modules as package-lock.json says.
fn require_node_modules() {
    let node = interop().join("node");
    let lock: Value =
        serde_json::from_slice(&std::fs::read(node.join("package-lock.json")).unwrap()).unwrap();
    let locked = &lock["packages"]["node_modules/jose"]["version"];
    let installed = std::fs::read(node.join("node_modules/jose/package.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .map(|p| p["version"].clone());
    assert!(
        locked.is_string() && installed.as_ref() == Some(locked),
        "jose {locked} is not installed (found {installed:?}): run `npm ci --prefix tests/interop/node` (scripts/test.sh does)"
    );
}

/// A `latchkey serve` on a free loopback port, with a user, a confidential
/// client and a public client made beforehand by the CLI on its database.
struct Interop {
    dir: TempDir,
    server: Child,
    url: String,
    audience: String,
    signing_alg: Option<String>,
    user_id: String,
    client_secret: String,
}

impl Interop {
    /// `audience` and `signing_alg`: those settings, or `None` for their
    /// defaults (the issuer, EdDSA).
    fn start(audience: Option<&str>, signing_alg: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let user = latchkey(&dir, &["user", "add", USERNAME], &format!("{PASSWORD}\n"));
        let user_id = user["id"].as_str().unwrap().to_owned();
        let client = latchkey(
            &dir,
            &["client", "add", CLIENT_ID, "--scope", CLIENT_SCOPE],
            "",
        );
        assert_eq!(client["client_id"], CLIENT_ID);
        let client_secret = client["client_secret"].as_str().unwrap().to_owned();
        latchkey(&dir, &["client", "add", PUBLIC_CLIENT_ID, "--public"], "");

        let log = File::create(dir.path().join("serve.log")).unwrap();
        let mut serve = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        serve
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_COLOR", "1")
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--cookie-secure",
                "false",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(audience) = audience {
            serve.args(["--audience", audience]);
        }
        if let Some(alg) = signing_alg {
            serve.args(["--signing-alg", alg]);
        }
        let mut server = serve.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(url) = line.trim().strip_prefix("listening on ").map(str::to_owned) else {
            let _ = server.kill();
            let _ = server.wait();
            panic!(
                "serve's first line: {line:?}; its log:\n{}",
                std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
            );
        };
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self {
            audience: audience.unwrap_or(&url).to_owned(),
            signing_alg: signing_alg.map(str::to_owned),
            dir,
            server,
            url,
            user_id,
            client_secret,
        }
    }

    /// Runs `program script` from the workspace root with the server and
    /// credentials in `LATCHKEY_*` variables, and fails the test, with the
    /// script's output and the server's log, unless it exits 0 in time.
    fn run(&self, program: &str, script: &str) {
        let path = interop().join(script);
        let (stdout, stderr) = (
            self.dir.path().join("script.out"),
            self.dir.path().join("script.err"),
        );
        let mut command = Command::new(program);
        match &self.signing_alg {
            Some(alg) => command.env("LATCHKEY_SIGNING_ALG", alg),
            None => command.env_remove("LATCHKEY_SIGNING_ALG"),
        };
        let mut child = command
            .arg(&path)
            .current_dir(workspace())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Straight to the loopback server, whatever proxy is configured.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env("LATCHKEY_URL", &self.url)
            .env("LATCHKEY_AUDIENCE", &self.audience)
            .env("LATCHKEY_USERNAME", USERNAME)
            .env("LATCHKEY_PASSWORD", PASSWORD)
            .env("LATCHKEY_USER_ID", &self.user_id)
            .env("LATCHKEY_CLIENT_ID", CLIENT_ID)
            .env("LATCHKEY_CLIENT_SECRET", &self.client_secret)
            .env("LATCHKEY_CLIENT_SCOPE", CLIENT_SCOPE)
            .env("LATCHKEY_PUBLIC_CLIENT_ID", PUBLIC_CLIENT_ID)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {program} {}: {e}", path.display()));
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > SCRIPT_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let log = read(&self.dir.path().join("serve.log"));
        let log_tail: Vec<&str> = log.lines().rev().take(LOG_LINES).collect();
        let log_tail: Vec<&str> = log_tail.into_iter().rev().collect();
        let report = format!(
            "{program} {} against {}\n--- its stdout\n{}--- its stderr\n{}--- the last lines of latchkey serve's log\n{}",
            path.display(),
            self.url,
            read(&stdout),
            read(&stderr),
            log_tail.join("\n"),
        );
        match status {
            Some(status) if status.success() => {
                // Shown with --nocapture, or when another assertion fails.
                println!("{report}");
            }
            Some(status) => panic!("failed ({status}): {report}"),
            None => panic!("still running after {SCRIPT_TIMEOUT:?}, killed: {report}"),
        }
    }
}

impl Drop for Interop {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn authlib_password_refresh_revoke_and_rfc6749_errors() {
    require_python_packages();
    Interop::start(None, None).run("python3", "python/authlib_client.py");
}

/// pyotp as the authenticator app: enrolment, the two-step `/v1` login,
/// replay, recovery codes; Authlib at the token endpoint's mfa grant.
#[test]
fn pyotp_and_authlib_log_in_with_a_second_factor() {
    require_python_packages();
    Interop::start(None, None).run("python3", "python/mfa_client.py");
}

#[test]
fn pyjwt_verifies_access_tokens_from_the_discovered_jwks() {
    require_python_packages();
    Interop::start(None, None).run("python3", "python/pyjwt_verify.py");
}

#[test]
fn jose_verifies_access_tokens_and_refuses_another_audience() {
    require_node_modules();
    Interop::start(Some("urn:latchkey:interop-api"), None).run("node", "node/verify.js");
}

/// The JWKs of the other signing algorithms (RFC 7518 §6.2 and §6.3 key
/// members) as both libraries read them.
#[test]
fn pyjwt_and_jose_verify_es256_and_rs256_tokens() {
    require_python_packages();
    require_node_modules();
    for alg in ["ES256", "RS256"] {
        let server = Interop::start(None, Some(alg));
        server.run("python3", "python/pyjwt_verify.py");
        server.run("node", "node/verify.js");
    }
}
