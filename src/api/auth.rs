//! The API token: `Authorization: Bearer <token>`, or Basic with the token as the
//! password, on every route but `/healthz` and a chain's `/callbacks/{token}` (whose
//! single-use token is the credential); compared in constant time (HMAC tags of
//! both, checked with `verify_slice`). Without a token in the config (a loopback or
//! unix-socket API) every request is let through.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{KeyInit, Mac};

use super::{Api, error};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub(super) async fn require_token(State(api): State<Api>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    // A callback's token is in its path: receivers elsewhere hold no API token.
    if path == "/healthz"
        || path == "/api/healthz"
        || path.starts_with("/callbacks/")
        || path.starts_with("/api/callbacks/")
    {
        return next.run(req).await;
    }
    let token = api.settings.borrow().token.clone();
    let Some(token) = token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented);
    // The console: a login's session also lets a page through; without one, the login
    // page (and its stylesheet) is all there is, and a page asked for goes there.
    if super::console::is_console_path(path) {
        let by_header = given
            .as_deref()
            .is_some_and(|g| token.keys().any(|t| same(g.as_bytes(), t.as_bytes())));
        let by_session =
            super::console::session_of(req.headers()).is_some_and(|s| api.console.valid(&s));
        // The login page and its static assets (no data in them) are open to all.
        let open = matches!(path, "/ui/login" | "/ui/console.css" | "/ui/console.js");
        if by_header || by_session || open {
            return next.run(req).await;
        }
        if req.method() == axum::http::Method::GET {
            return axum::response::Redirect::to("/ui/login").into_response();
        }
        return error(StatusCode::UNAUTHORIZED, "log in first");
    }
    match given {
        // A token file may hold several tokens, one per line (rotation): any is good.
        Some(g) if token.keys().any(|t| same(g.as_bytes(), t.as_bytes())) => next.run(req).await,
        given => {
            let why = if given.is_some() {
                "the token is wrong"
            } else {
                "this route needs the API token: Authorization: Bearer <token>"
            };
            let mut resp = error(StatusCode::UNAUTHORIZED, why);
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"deployhook\""),
            );
            resp
        }
    }
}

/// Whether `given` is one of the token file's tokens (the console's login form).
pub(super) fn accepts(token: &crate::config::Secret, given: &str) -> bool {
    token.keys().any(|t| same(given.as_bytes(), t.as_bytes()))
}

/// The token an `Authorization` value presents: Bearer's, or Basic's password.
fn presented(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.to_string())
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':')
            .map(|(_, password)| password.to_string())
    } else {
        None
    }
}

/// Constant-time equality (the time does not depend on where the texts differ).
fn same(given: &[u8], expected: &[u8]) -> bool {
    let tag = |text: &[u8]| {
        HmacSha256::new_from_slice(b"deployhook api token")
            .map(|mut m| {
                m.update(text);
                m
            })
            .ok()
    };
    match (tag(given), tag(expected)) {
        (Some(g), Some(e)) => g.verify_slice(&e.finalize().into_bytes()).is_ok(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic_present_the_token_others_do_not() {
        assert_eq!(presented("Bearer s3cret").as_deref(), Some("s3cret"));
        assert_eq!(presented("bearer  s3cret ").as_deref(), Some("s3cret"));
        let basic = base64::engine::general_purpose::STANDARD.encode("any:s3cret");
        assert_eq!(
            presented(&format!("Basic {basic}")).as_deref(),
            Some("s3cret")
        );
        assert_eq!(presented("Token s3cret"), None);
        assert_eq!(presented("Basic !!!"), None);
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cre", b"s3cret"));
        assert!(!same(b"", b"s3cret"));
    }
}
