//! The schema fuzzer: every operation of the OpenAPI document, sent bodies
//! built from its own request schema and then broken (members missing, of
//! the wrong type, null, huge, with control characters, random JSON), with
//! a good access token and without. No answer may be a 5xx, and the store
//! must come out whole.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::helpers::{TestApp, PASSWORD};

/// Random bodies per operation, besides the systematic ones.
const RANDOM_BODIES: usize = 12;

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::String),
        "[\\x00-\\x1f\\u{202e}\\u{feff}]{1,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The schema `schema` names, with `$ref`s into the components resolved.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// A plausible value for a member of `schema` (so that the others can be
/// broken one at a time).
fn plausible(doc: &Value, schema: &Value) -> Value {
    let schema = resolve(doc, schema);
    let kind = match &schema["type"] {
        Value::Array(kinds) => kinds.iter().find(|k| *k != "null").cloned(),
        other => Some(other.clone()),
    };
    match kind.as_ref().and_then(Value::as_str) {
        Some("integer") | Some("number") => json!(1),
        Some("boolean") => json!(true),
        Some("array") => json!([]),
        Some("object") => json!({}),
        _ => json!("fuzz-value"),
    }
}

/// Bodies for an operation whose request schema is `schema`.
fn bodies(doc: &Value, schema: &Value, rng: &mut TestRunner) -> Vec<Value> {
    let schema = resolve(doc, schema);
    let props = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let whole: Map<String, Value> = props
        .iter()
        .map(|(name, s)| (name.clone(), plausible(doc, s)))
        .collect();
    let mut out = vec![
        json!({}),
        json!([]),
        json!(null),
        json!("a string"),
        json!(12),
        Value::Object(whole.clone()),
    ];
    let breakers = [
        Value::Null,
        json!(0),
        json!(-1),
        json!(1e308),
        json!(true),
        json!([]),
        json!({"nested": {"deeper": []}}),
        json!(""),
        json!("\u{0000}"),
        json!("\u{202e}\u{feff}ä😀"),
        json!("x".repeat(20_000)),
        json!(["a", 1, null]),
    ];
    for name in props.keys() {
        let mut without = whole.clone();
        without.remove(name);
        out.push(Value::Object(without));
        for breaker in &breakers {
            let mut broken = whole.clone();
            broken.insert(name.clone(), breaker.clone());
            out.push(Value::Object(broken));
        }
    }
    let mut extra = whole;
    extra.insert("not_a_member".into(), json!(1));
    out.push(Value::Object(extra));
    let strategy = any_json();
    for _ in 0..RANDOM_BODIES {
        out.push(strategy.new_tree(rng).unwrap().current());
    }
    out
}

/// The same bodies, as forms (the OAuth endpoints take forms).
fn as_form(body: &Value) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    if let Value::Object(members) = body {
        for (name, value) in members {
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            form.append_pair(name, &text);
        }
    }
    form.finish()
}

/// `{param}`s of a path, filled with odd values in turn.
fn paths(template: &str) -> Vec<String> {
    if !template.contains('{') {
        return vec![template.to_owned()];
    }
    [
        "x",
        "00000000-0000-0000-0000-000000000000",
        "%00",
        "..%2F..",
        &"a".repeat(300),
    ]
    .iter()
    .map(|fill| {
        let mut path = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
            path.push_str(&rest[..open]);
            path.push_str(fill);
            rest = &rest[close..];
        }
        path.push_str(rest);
        path
    })
    .collect()
}

#[tokio::test]
async fn no_body_the_schema_allows_or_breaks_gets_a_5xx() {
    let app = TestApp::spawn_with(&[("smtp_url", "smtp://127.0.0.1:9")]).await;
    // Fuzzed by no one: what must come out whole.
    let bystander = app.user_and_login("bystander").await;
    let doc: Value = app
        .get("/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let mut sent = 0usize;
    let mut sent_ops = 0usize;
    for (template, item) in doc["paths"].as_object().unwrap() {
        // The feed is a stream that stays open: its bad input has its own tests.
        if template == "/oauth2/revocations" {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            // A user of its own per operation: a body may log it out or
            // spend its login limit.
            sent_ops += 1;
            let user = app.user_and_login(&format!("fuzzed{sent_ops}")).await;
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let content = &op["requestBody"]["content"];
            let (schema, form) = match (
                content.get("application/json"),
                content.get("application/x-www-form-urlencoded"),
            ) {
                (Some(json), _) => (&json["schema"], false),
                (None, Some(form)) => (&form["schema"], true),
                (None, None) => (&Value::Null, false),
            };
            let bodies = bodies(&doc, schema, &mut runner);
            for path in paths(template) {
                for body in &bodies {
                    for bearer in [None, Some(user.access.as_str())] {
                        let mut req = app
                            .client
                            .request(method.clone(), format!("{}{path}", app.url));
                        req = if form {
                            req.header("content-type", "application/x-www-form-urlencoded")
                                .body(as_form(body))
                        } else {
                            req.header("content-type", "application/json")
                                .body(body.to_string())
                        };
                        if let Some(token) = bearer {
                            req = req.bearer_auth(token);
                        }
                        let status = req.send().await.unwrap().status();
                        sent += 1;
                        assert!(
                            !status.is_server_error(),
                            "{method} {path} with {body} (token: {}): {status}",
                            bearer.is_some()
                        );
                    }
                }
            }
        }
    }
    assert!(sent > 1_000, "only {sent} requests: is the document empty?");
    // Nothing stored was lost: every user is there, and the bystander's
    // session and password work.
    assert_eq!(
        app.service.list_users().await.unwrap().len(),
        sent_ops + 1 + usize::from(registered_by_fuzz(&app).await)
    );
    assert_eq!(app.me(&bystander.access).await.status(), StatusCode::OK);
    app.refresh(&bystander.refresh).await;
    assert_eq!(
        app.login_raw("bystander", PASSWORD).await.status(),
        StatusCode::OK
    );
}

/// Whether a fuzzed registration body made an account (a plausible one may).
async fn registered_by_fuzz(app: &TestApp) -> bool {
    app.service
        .list_users()
        .await
        .unwrap()
        .iter()
        .any(|u| !u.username.starts_with("fuzzed") && u.username != "bystander")
}
