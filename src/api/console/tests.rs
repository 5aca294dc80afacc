//! The console in process: auth (token, login, session cookie), CSRF, escaping. The
//! real browser's test is `tests/it/console.rs`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use crate::api::tests::{TestApi, api, delivered, run};

/// The page's text (the body of an answer that is HTML).
async fn html(c: &TestApi, path: &str) -> (StatusCode, String, axum::http::HeaderMap) {
    let req = Request::builder()
        .method("GET")
        .uri(path)
        .header(
            "authorization",
            c.token
                .as_ref()
                .map(|t| format!("Bearer {t}"))
                .unwrap_or_default(),
        )
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = c
        .app
        .clone()
        .oneshot(req)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

#[test]
fn the_console_needs_the_token_or_a_login_and_escapes_what_it_shows() {
    run(async {
        let c = api(
            &[("<b>ops</b>", "http://127.0.0.1:9/x")],
            Some("s3cret-token"),
        );
        // Without the token: the login page, nothing else.
        let anon = TestApi {
            app: c.app.clone(),
            token: None,
            store: None,
            _dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        };
        let (status, _, headers) = html(&anon, "/").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        assert_eq!(headers["location"], "/ui/login");
        let (status, page, _) = html(&anon, "/ui/deliveries").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
        for asset in ["/ui/console.css", "/ui/console.js"] {
            let (status, _, headers) = html(&anon, asset).await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            assert!(
                !headers["content-type"]
                    .to_str()
                    .unwrap_or("")
                    .contains("html")
            );
        }
        let (status, _, _) = html(&anon, "/ui/events").await;
        assert_eq!(
            status,
            StatusCode::SEE_OTHER,
            "the live updates need a login"
        );
        let (status, page, _) = html(&anon, "/ui/login").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("name=\"token\"") && !page.contains("ops"),
            "{page}"
        );
        let a = anon.send("POST", "/ui/retry", &[], "").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);

        // With it: the page, a hostile hook name as text, a strict CSP.
        let (status, page, headers) = html(&c, "/").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("&lt;b&gt;ops&lt;&#x2f;b&gt;"), "{page}");
        assert!(!page.contains("<b>ops</b>"), "{page}");
        let csp = headers["content-security-policy"].to_str().unwrap_or("");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );

        // A form without this console's CSRF token, or from another site, is refused.
        let form = |csrf: &str| format!("csrf={csrf}&outcome=dead");
        let a = c
            .send(
                "POST",
                "/ui/retry",
                &[("content-type", "application/x-www-form-urlencoded")],
                &form("nope"),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        let token = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(str::to_string);
        // (No session here: the token is the per-process one; the overview has no form
        // that needs it, so take it from the delivery log's retry page.)
        let (_, retry_page, _) = html(&c, "/ui/retry?outcome=dead").await;
        let csrf = retry_page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string();
        assert!(!csrf.is_empty(), "{retry_page} {token:?}");
        let a = c
            .send(
                "POST",
                "/ui/retry",
                &[
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("sec-fetch-site", "cross-site"),
                ],
                &form(&csrf),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "from another site");
        let a = c
            .send(
                "POST",
                "/ui/retry",
                &[("content-type", "application/x-www-form-urlencoded")],
                &form(&csrf),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.json);
    });
}

#[test]
fn a_login_makes_a_session_cookie_that_opens_the_console() {
    run(async {
        let c = api(&[], Some("s3cret-token"));
        let anon = |cookie: Option<&str>| {
            let mut req = Request::builder().method("GET").uri("/");
            if let Some(k) = cookie {
                req = req.header("cookie", k);
            }
            req.body(Body::empty()).unwrap_or_else(|e| panic!("{e}"))
        };
        let login = |token: &str| {
            Request::builder()
                .method("POST")
                .uri("/ui/login")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(format!("token={token}")))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        let wrong = c
            .app
            .clone()
            .oneshot(login("nope"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(wrong.headers()["location"], "/ui/login?failed=1");
        assert!(wrong.headers().get("set-cookie").is_none());
        let ok = c
            .app
            .clone()
            .oneshot(login("s3cret-token"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cookie = ok.headers()["set-cookie"]
            .to_str()
            .unwrap_or("")
            .to_string();
        for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(part), "{cookie}");
        }
        let pair = cookie.split(';').next().unwrap_or("").to_string();
        let page = c
            .app
            .clone()
            .oneshot(anon(Some(&pair)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.status(), StatusCode::OK);
        let forged = format!("deployhook_session={}", "a".repeat(64));
        let page = c
            .app
            .clone()
            .oneshot(anon(Some(&forged)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.status(), StatusCode::SEE_OTHER, "a made-up session");
        // The JSON API still wants the token itself: a session is the console's only.
        let req = Request::builder()
            .uri("/api/hooks")
            .header("cookie", &pair)
            .body(Body::empty())
            .unwrap_or_else(|e| panic!("{e}"));
        let api_answer = c
            .app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(api_answer.status(), StatusCode::UNAUTHORIZED);
    });
}

#[test]
fn a_hook_a_410_disabled_is_enabled_from_the_page() {
    run(async {
        let c = api(&[("ops", "http://127.0.0.1:9/x")], None);
        let store = c.store.clone().unwrap_or_else(|| panic!("a store"));
        delivered(&store, "ops", 410);
        assert!(store.hook_disabled("ops").ok().flatten().is_some());
        let (status, page, _) = html(&c, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("/ui/hooks/ops/enable"), "{page}");
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string();
        let a = c
            .send(
                "POST",
                "/ui/hooks/ops/enable",
                &[("content-type", "application/x-www-form-urlencoded")],
                &format!("csrf={csrf}"),
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        assert_eq!(store.hook_disabled("ops").ok().flatten(), None);
    });
}

#[test]
fn the_dora_page_shows_each_sites_keys_escaped() {
    run(async {
        let c = api(&[], Some("s3cret-token"));
        let store = c.store.clone().unwrap_or_else(|| panic!("a store"));
        let now = crate::model::Timestamp::now();
        let deployment = |serial: u64, status: &str| {
            serde_json::json!({
                "serial": serial, "release": null, "id": format!("c{serial}"), "status": status,
                "announced": true, "status_text": "", "commit": null, "deployer": null,
                "branch": null, "received": now.0 - 60_000_000, "started": null,
                "ended": now.0 - 30_000_000, "previous_id": null, "rollback": false,
                "last_change": now.0, "fingerprint": "", "lock_seen": false,
            })
        };
        store.with_conn(|conn| {
            for (serial, status) in [(1, "success"), (2, "failed")] {
                conn.execute(
                    "INSERT INTO deployments (site, serial, id, release, status, data, created_at, updated_at)
                     VALUES ('<i>shop</i>', ?1, 'x', NULL, ?2, ?3, 0, 0)",
                    rusqlite::params![serial, status, deployment(serial as u64, status).to_string()],
                )
                .unwrap_or_else(|e| panic!("{e}"));
            }
        });
        let (status, page, _) = html(&c, "/ui/dora?since=7d").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            page.contains("&lt;i&gt;shop&lt;&#x2f;i&gt;") && !page.contains("<i>shop"),
            "{page}"
        );
        assert!(page.contains("50% (1 of 2)"), "{page}");
        assert!(page.contains(r#"<option value="7d" selected>"#), "{page}");
        // A window it does not offer is the default one.
        let (status, page, _) = html(&c, "/ui/dora?since=1y").await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains(r#"<option value="30d" selected>"#), "{page}");
    });
}
