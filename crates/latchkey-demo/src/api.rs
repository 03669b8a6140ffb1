//! The app's own API: posts that a logged-in user can like and comment on.
//! Every route here sits behind `latchkey_verify`'s layer, so a handler
//! taking [`Claims`] is reached only with a valid access token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path, Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use latchkey_verify::Claims;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;

/// The longest comment, in characters.
const MAX_COMMENT_CHARS: usize = 500;

/// One post of the feed.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Post {
    id: u64,
    author: String,
    text: String,
    likes: u64,
    comments: Vec<Comment>,
}

/// One comment under a post.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Comment {
    author: String,
    text: String,
}

/// The posts, in memory.
#[derive(Debug, Default)]
pub(crate) struct Posts(Mutex<Vec<Post>>);

impl Posts {
    fn lock(&self) -> MutexGuard<'_, Vec<Post>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Usernames by user id, learnt from latchkey's answers as they pass
/// through the proxy (tokens carry the id, not the name).
#[derive(Debug, Default)]
pub(crate) struct Names(Mutex<HashMap<String, String>>);

impl Names {
    pub(crate) fn remember(&self, id: &str, username: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), username.to_owned());
    }

    fn of(&self, id: &str) -> String {
        let names = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match names.get(id) {
            Some(name) => name.clone(),
            None => format!("user {}", id.chars().take(8).collect::<String>()),
        }
    }
}

/// A few posts to start with.
pub(crate) fn seed() -> Posts {
    let post = |id, author: &str, text: &str, likes| Post {
        id,
        author: author.to_owned(),
        text: text.to_owned(),
        likes,
        comments: Vec::new(),
    };
    Posts(Mutex::new(vec![
        post(
            1,
            "ada",
            "Shipped the new login flow today: short-lived access tokens, rotating refresh tokens, and nobody gets logged out.",
            3,
        ),
        post(
            2,
            "grace",
            "Reminder: a token in localStorage is a token any injected script can read. Cookies, HttpOnly, always.",
            5,
        ),
        post(
            3,
            "linus",
            "Opened this page in four tabs, left it overnight, clicked everywhere at once. Still logged in.",
            1,
        ),
    ]))
}

/// An error body in latchkey's shape.
fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": code, "error_description": description })),
    )
        .into_response()
}

/// 404 for any path the app does not know.
pub(crate) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such path")
}

/// CSRF: the access token comes in a cookie, which a browser also sends on
/// requests made from other sites; a state-changing request must come from
/// this app's own page (its `Origin` names this host), as latchkey requires
/// for its own cookie endpoints.
pub(crate) async fn same_origin(request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|value: &axum::http::HeaderValue| value.to_str().ok())
        };
        let expected = header(HOST).map(|host| format!("http://{host}"));
        let origin = header(ORIGIN);
        if expected.is_none() || origin != expected.as_deref() {
            return error(
                StatusCode::FORBIDDEN,
                "csrf_rejected",
                "a state-changing request must come from this app's own page",
            );
        }
    }
    next.run(request).await
}

/// `GET /api/posts`: the feed.
pub(crate) async fn list_posts(State(state): State<Arc<AppState>>, claims: Claims) -> Response {
    let posts = state.posts.lock().clone();
    Json(json!({ "posts": posts, "me": claims.sub })).into_response()
}

/// `POST /api/posts/{id}/like`: one more like.
pub(crate) async fn like(
    State(state): State<Arc<AppState>>,
    _claims: Claims,
    Path(id): Path<u64>,
) -> Response {
    let mut posts = state.posts.lock();
    match posts.iter_mut().find(|post| post.id == id) {
        Some(post) => {
            post.likes = post.likes.saturating_add(1);
            Json(post.clone()).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such post"),
    }
}

/// `DELETE /api/posts/{id}`: only with a login of the last
/// `--delete-max-age` (5 minutes by default; RFC 9470 step-up): an older one
/// is answered 401 `insufficient_user_authentication`, and the page asks
/// the user to log in again.
pub(crate) async fn delete_post(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<u64>,
) -> Response {
    if let Err(rejection) = claims.require_auth_within(state.delete_max_age) {
        return rejection.into_response();
    }
    let mut posts = state.posts.lock();
    let before = posts.len();
    posts.retain(|post| post.id != id);
    if posts.len() == before {
        return error(StatusCode::NOT_FOUND, "not_found", "no such post");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The body of `POST /api/posts/{id}/comments`.
#[derive(Debug, Deserialize)]
pub(crate) struct NewComment {
    text: String,
}

/// `POST /api/posts/{id}/comments`: a comment by the caller.
pub(crate) async fn comment(
    State(state): State<Arc<AppState>>,
    claims: Claims,
    Path(id): Path<u64>,
    body: Result<Json<NewComment>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(NewComment { text })) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be {\"text\": \"...\"}",
        );
    };
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_COMMENT_CHARS {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a comment is 1 to 500 characters",
        );
    }
    let author = state.names.of(&claims.sub);
    let mut posts = state.posts.lock();
    match posts.iter_mut().find(|post| post.id == id) {
        Some(post) => {
            post.comments.push(Comment {
                author,
                text: text.to_owned(),
            });
            (StatusCode::CREATED, Json(post.clone())).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such post"),
    }
}
