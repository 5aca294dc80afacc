//! The API's pure cases in process: the router on a real outbox (SQLite in a temporary
//! directory), requests through `tower`'s `oneshot`, no socket and no daemon. The
//! daemon's loop is a task that answers its requests at once. What needs the daemon
//! (deliveries, restarts, the listener's limits) is tested against the binary in
//! `tests/it/api*.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tower::ServiceExt;

use super::{Api, LoopRequest, Settings, router};
use crate::config::{HookConfig, Secret};
use crate::running::HookView;
use crate::store::Store;

pub(in crate::api) struct TestApi {
    pub(in crate::api) app: Router,
    pub(in crate::api) token: Option<String>,
    pub(in crate::api) store: Option<Store>,
    pub(in crate::api) _dir: tempfile::TempDir,
}

/// The router with `config_hooks` from the config file and, when given, a token.
pub(in crate::api) fn api(config_hooks: &[(&str, &str)], token: Option<&str>) -> TestApi {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let store = Store::open(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let hooks: Vec<HookConfig> = config_hooks
        .iter()
        .map(|(name, url)| {
            HookConfig::new(name, url::Url::parse(url).unwrap_or_else(|e| panic!("{e}")))
        })
        .collect();
    let view = HookView {
        config_hooks: Arc::new(hooks.iter().map(|h| h.name.clone()).collect()),
        hooks: Arc::new(hooks),
        ..HookView::default()
    };
    let settings = Settings {
        token: token.map(Secret::new),
        allow_private_targets: true,
        host_name: "test-host".to_string(),
        callback_base: None,
        max_hooks: 100,
        max_publish_bytes: 262_144,
        max_queue_bytes: 64 << 20,
    };
    let (to_loop, mut requests) = mpsc::channel(16);
    // The daemon's loop, answering at once.
    tokio::spawn(async move {
        while let Some(r) = requests.recv().await {
            match r {
                LoopRequest::Ping(answer) => {
                    let _ = answer.send(());
                }
                LoopRequest::ApiHooks(_, done) => {
                    let _ = done.send(());
                }
            }
        }
    });
    let (_, settings) = watch::channel(settings);
    let (_, view) = watch::channel(view);
    let (_, ready) = watch::channel(true);
    let app = router(Api {
        store: store.clone(),
        settings,
        view,
        to_loop,
        mutate: Arc::new(tokio::sync::Mutex::new(())),
        ready,
        request_timeout: Duration::from_secs(30),
        console: Arc::new(super::console::Console::new()),
    });
    TestApi {
        app,
        token: token.map(str::to_string),
        store: Some(store),
        _dir: dir,
    }
}

/// An answer: its status, its body as JSON (`Null` when it is not), its headers.
pub(in crate::api) struct Answer {
    pub(in crate::api) status: StatusCode,
    pub(in crate::api) json: Value,
    pub(in crate::api) headers: axum::http::HeaderMap,
}

impl TestApi {
    pub(in crate::api) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = self
            .app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Answer {
            status,
            json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], "").await
    }

    async fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, &[], "").await
    }

    async fn subscribe(&self, url: &str, event: &str) -> Answer {
        let body = json!({"url": url, "event": event}).to_string();
        self.send("POST", "/api/hooks", &[], &body).await
    }
}

fn id_of(a: &Answer) -> String {
    assert_eq!(a.status, 201, "{}", a.json);
    a.json["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {}", a.json))
        .to_string()
}

pub(in crate::api) fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .block_on(test);
}

#[test]
fn subscribe_returns_201_with_a_server_generated_decimal_id_and_ignores_a_client_id() {
    run(async {
        let c = api(&[], None);
        let body = json!({"url": "http://127.0.0.1:9/a", "event": "PostDeployment", "id": "777", "insecure_ssl": false});
        let a = c.send("POST", "/api/hooks", &[], &body.to_string()).await;
        assert_eq!(a.status, 201, "{}", a.json);
        let hook = &a.json;
        let id = hook["id"].as_str().unwrap_or_default();
        assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
            "{hook}"
        );
        assert_ne!(id, "777", "the client's id is ignored");
        assert_eq!(hook["url"], "http://127.0.0.1:9/a");
        assert_eq!(hook["event"], "PostDeployment");
        assert_eq!(hook["insecure_ssl"], false);
        assert_eq!(hook["source"], "api");
        let b = c.subscribe("http://127.0.0.1:9/b", "PostDeployment").await;
        assert_ne!(id_of(&b), id, "ids are unique");
    });
}

#[test]
fn resubscribing_the_same_url_and_event_returns_201_with_the_same_id() {
    run(async {
        let c = api(&[], None);
        let first = id_of(
            &c.subscribe("http://127.0.0.1:9/hook", "PostDeployment")
                .await,
        );
        let again = id_of(
            &c.subscribe("http://127.0.0.1:9/hook", "PostDeployment")
                .await,
        );
        assert_eq!(again, first);
        // The URL compared case-insensitively, the event too, the URL trimmed.
        let upper = id_of(
            &c.subscribe("HTTP://127.0.0.1:9/HOOK", "postdeployment")
                .await,
        );
        assert_eq!(upper, first);
        let padded = id_of(
            &c.subscribe("  http://127.0.0.1:9/hook \n", "POSTDEPLOYMENT")
                .await,
        );
        assert_eq!(padded, first);
        let list = c.get("/api/hooks").await.json;
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    });
}

#[test]
fn the_same_url_with_another_event_is_409() {
    run(async {
        let c = api(&[], None);
        id_of(
            &c.subscribe("http://127.0.0.1:9/hook", "PostDeployment")
                .await,
        );
        let a = c
            .subscribe("http://127.0.0.1:9/Hook", "StatusChanged")
            .await;
        assert_eq!(a.status, 409, "{}", a.json);
        assert!(
            a.json["error"]
                .as_str()
                .is_some_and(|e| e.contains("registered already")),
            "{}",
            a.json
        );
    });
}

#[test]
fn bad_json_and_a_bad_url_are_400_with_a_json_error() {
    run(async {
        let c = api(&[], None);
        for body in [
            "{bad",
            "",
            "[1,2]",
            "{\"event\":\"PostDeployment\"}",
            "{\"url\": 5}",
        ] {
            let a = c.send("POST", "/api/hooks", &[], body).await;
            assert_eq!(a.status, 400, "{body:?}: {}", a.json);
            assert!(a.json["error"].is_string(), "{body:?}: {}", a.json);
        }
        for url in [
            "not a url",
            "ftp://127.0.0.1/x",
            "/relative",
            "http://",
            "mailto:a@b.c",
        ] {
            let a = c.subscribe(url, "PostDeployment").await;
            assert_eq!(a.status, 400, "{url:?}: {}", a.json);
            assert!(
                a.json["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("absolute http")),
                "{url:?}: {}",
                a.json
            );
        }
        let long = format!("http://127.0.0.1:9/{}", "a".repeat(5000));
        let a = c.subscribe(&long, "PostDeployment").await;
        assert_eq!(a.status, 400, "a 5 kB url is refused: {}", a.json);
        let typo = c.subscribe("http://127.0.0.1:9/x", "PostDeployments").await;
        assert_eq!(typo.status, 400, "{}", typo.json);
        assert_eq!(
            c.get("/api/hooks").await.json,
            json!([]),
            "nothing was registered"
        );
    });
}

#[test]
fn the_list_is_empty_with_no_hooks_and_shows_config_hooks_with_their_source() {
    run(async {
        let c = api(&[], None);
        assert_eq!(c.get("/api/hooks").await.json, json!([]));
        assert_eq!(
            c.get("/hooks").await.json,
            json!([]),
            "also without the /api prefix"
        );
        let c = api(&[("ops", "http://user:pw@127.0.0.1:9/x?token=abc")], None);
        let id = id_of(
            &c.subscribe("http://127.0.0.1:9/api", "PostDeployment")
                .await,
        );
        let list = c.get("/api/hooks").await.json;
        let hooks = list.as_array().cloned().unwrap_or_default();
        assert_eq!(hooks.len(), 2, "{list}");
        assert_eq!(hooks[0]["id"], "ops");
        assert_eq!(hooks[0]["source"], "config");
        assert_eq!(hooks[1]["id"], id.as_str());
        assert_eq!(hooks[1]["source"], "api");
        let text = list.to_string();
        assert!(
            !text.contains("pw@") && !text.contains("abc"),
            "credentials shown: {text}"
        );
    });
}

#[test]
fn get_and_delete_known_and_unknown_ids() {
    run(async {
        let c = api(&[("ops", "http://127.0.0.1:9/x")], None);
        let id = id_of(&c.subscribe("http://127.0.0.1:9/a", "PostDeployment").await);
        let got = c.get(&format!("/api/hooks/{id}")).await;
        assert_eq!(got.status, 200, "{}", got.json);
        let hook = &got.json;
        assert_eq!(hook["id"], id.as_str());
        for field in [
            "last_datetime",
            "last_status",
            "last_reason",
            "last_context",
        ] {
            assert!(hook.get(field).is_some(), "{field} missing: {hook}");
        }
        assert_eq!(c.get("/api/hooks/ops").await.json["source"], "config");
        let unknown = c.get("/api/hooks/4242").await;
        assert_eq!(unknown.status, 404, "{}", unknown.json);
        assert!(unknown.json["error"].is_string());
        assert_eq!(c.get("/hooks/nope").await.status, 404);
        let del = c.delete(&format!("/api/hooks/{id}")).await;
        assert_eq!(del.status, 200, "{}", del.json);
        assert_eq!(c.get(&format!("/api/hooks/{id}")).await.status, 404, "gone");
        assert_eq!(
            c.delete(&format!("/api/hooks/{id}")).await.status,
            200,
            "deleting again: 200"
        );
        assert_eq!(
            c.delete("/api/hooks/4242").await.status,
            200,
            "unknown: 200, as Kudu"
        );
    });
}

#[test]
fn a_config_hook_cannot_be_deleted_through_the_api() {
    run(async {
        let c = api(&[("ops", "http://127.0.0.1:9/x")], None);
        let a = c.delete("/api/hooks/ops").await;
        assert_eq!(a.status, 409, "{}", a.json);
        assert!(
            a.json["error"]
                .as_str()
                .is_some_and(|e| e.contains("config file")),
            "{}",
            a.json
        );
        assert_eq!(c.get("/api/hooks/ops").await.status, 200, "still there");
    });
}

#[test]
fn without_the_token_or_with_a_wrong_one_every_route_but_healthz_is_401() {
    run(async {
        let good = api(&[], Some("s3cret-token"));
        let anon = TestApi {
            app: good.app.clone(),
            token: None,
            store: None,
            _dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        };
        let wrong = TestApi {
            app: good.app.clone(),
            token: Some("s3cret-tokem".to_string()),
            store: None,
            _dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        };
        let routes = [
            ("GET", "/api/hooks"),
            ("POST", "/api/hooks"),
            ("GET", "/api/hooks/1"),
            ("DELETE", "/api/hooks/1"),
            ("POST", "/api/hooks/1/ping"),
            ("POST", "/api/hooks/publish/PostDeployment"),
            ("GET", "/hooks"),
            ("GET", "/api/nothing-here"),
            ("GET", "/api/hooks/1/deliveries"),
            ("GET", "/api/deployments"),
            ("GET", "/api/deployments/abc"),
            ("GET", "/api/deliveries/msg_x"),
            ("GET", "/api/deliveries?outcome=dead"),
            ("POST", "/api/deliveries/retry?outcome=dead"),
            ("POST", "/api/deliveries/msg_x/redeliver"),
            ("GET", "/api/metrics"),
            ("GET", "/metrics"),
            ("GET", "/api/openapi.json"),
        ];
        for (method, path) in routes {
            for c in [&anon, &wrong] {
                let a = c.send(method, path, &[], "{}").await;
                assert_eq!(a.status, 401, "{method} {path}: {}", a.json);
                assert!(a.json["error"].is_string());
                assert!(a.headers.get("www-authenticate").is_some());
            }
        }
        assert_eq!(anon.get("/healthz").await.status, 200);
        assert_eq!(anon.get("/api/healthz").await.status, 200);
        assert_eq!(good.get("/api/hooks").await.status, 200);
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("kudu:s3cret-token");
        let a = anon
            .send(
                "GET",
                "/api/hooks",
                &[("authorization", &format!("Basic {basic}"))],
                "",
            )
            .await;
        assert_eq!(
            a.status, 200,
            "Basic with the token as password: {}",
            a.json
        );
    });
}

/// A delivery of a ping to `hook`, its one attempt answered `status` (dead unless 2xx).
pub(in crate::api) fn delivered(store: &Store, hook: &str, status: u16) -> String {
    let h = HookConfig::new(
        hook,
        url::Url::parse("http://127.0.0.1:9/").unwrap_or_else(|e| panic!("{e}")),
    );
    let now = crate::model::Timestamp::now();
    let d = store
        .commit_direct("ping", &crate::events::ping(&h, "test-host", now), now)
        .unwrap_or_else(|e| panic!("{e}"));
    let record = crate::store::AttemptRecord {
        started_at: now,
        duration: Duration::from_millis(1),
        request_headers: Vec::new(),
        response_status: Some(status),
        response_headers: Vec::new(),
        response_body: Vec::new(),
        error: None,
    };
    let outcome = match status {
        200..300 => crate::store::Outcome::Delivered,
        410 => crate::store::Outcome::DisableHook,
        _ => crate::store::Outcome::Dead,
    };
    store
        .commit_attempt(&d, &record, &outcome, now)
        .unwrap_or_else(|e| panic!("{e}"));
    d.id
}

#[test]
fn the_delivery_log_filters_and_retries_what_matches() {
    run(async {
        let c = api(&[("ops", "http://127.0.0.1:9/x")], None);
        let store = c.store.clone().unwrap_or_else(|| panic!("a store"));
        let dead = delivered(&store, "ops", 503);
        delivered(&store, "ops", 200);
        delivered(&store, "other", 410);
        let ids = |a: &Answer| -> Vec<String> {
            a.json
                .as_array()
                .map(|l| {
                    l.iter()
                        .map(|d| d["id"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let a = c
            .get("/api/deliveries?hook=ops&outcome=dead&since=1h")
            .await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(ids(&a), [dead], "{}", a.json);
        let a = c.get("/api/deliveries?http_status=410").await;
        assert_eq!(a.json[0]["hook"], "other", "{}", a.json);
        assert_eq!(
            c.get("/api/deliveries?event=PING")
                .await
                .json
                .as_array()
                .map(Vec::len),
            Some(3)
        );
        assert_eq!(c.get("/api/deliveries?until=1h").await.json, json!([]));
        for bad in ["outcome=gone", "since=soon", "http_status=x", "limit=0x"] {
            let a = c.get(&format!("/api/deliveries?{bad}")).await;
            assert_eq!(a.status, 400, "{bad}: {}", a.json);
            assert!(a.json["error"].is_string(), "{bad}");
        }
        let a = c
            .send("POST", "/api/deliveries/retry?outcome=delivered", &[], "")
            .await;
        assert_eq!(a.status, 400, "{}", a.json);
        let a = c
            .send(
                "POST",
                "/api/deliveries/retry?hook=ops&outcome=dead",
                &[],
                "",
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(
            a.json,
            json!({"matched": 1, "due": 0, "queued_again": 1, "refused": 0})
        );
        let a = c.get("/api/deliveries?hook=ops&outcome=waiting").await;
        assert_eq!(
            a.json.as_array().map(Vec::len),
            Some(1),
            "queued again: {}",
            a.json
        );
        assert_eq!(
            c.get("/api/deliveries?hook=ops&outcome=dead")
                .await
                .json
                .as_array()
                .map(Vec::len),
            Some(1),
            "the dead one stays in the history"
        );
    });
}
