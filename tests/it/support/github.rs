//! A loopback stand-in for GitHub's Deployments API (under `/api/v3`, as GitHub
//! Enterprise serves it): creates deployments with increasing ids, lists them, takes
//! statuses, and records every request for the OpenAPI check. It can be told to fail
//! the next creates or statuses, or to make a deployment and then not answer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct GhRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub answered: u16,
}

impl GhRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn is_create(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/deployments")
    }
    pub fn is_status(&self) -> bool {
        self.method == "POST" && self.path.ends_with("/statuses")
    }
}

#[derive(Default)]
pub struct GhBehaviour {
    /// Statuses to answer the next creates with (201 once used up).
    pub create_failures: VecDeque<u16>,
    /// Statuses to answer the next statuses with (201 once used up).
    pub status_failures: VecDeque<u16>,
    /// Make the next deployment, then answer only after this long.
    pub create_then_hang: Option<Duration>,
}

#[derive(Clone, Default)]
struct Shared {
    requests: Arc<Mutex<Vec<GhRequest>>>,
    deployments: Arc<Mutex<Vec<Value>>>,
    behaviour: Arc<Mutex<GhBehaviour>>,
}

pub struct FakeGithub {
    /// The API base, as a hook's `url`.
    pub url: String,
    shared: Shared,
    _runtime: tokio::runtime::Runtime,
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (code, answer, hang) = answer(&s, &method, &path, &body);
    s.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(GhRequest {
            method: method.to_string(),
            path,
            query: uri.query().unwrap_or("").to_string(),
            headers: super::receiver::header_pairs(&headers),
            body,
            answered: code,
        });
    if let Some(h) = hang {
        tokio::time::sleep(h).await;
    }
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [("content-type", "application/json; charset=utf-8")],
        answer.to_string(),
    )
        .into_response()
}

fn answer(s: &Shared, method: &Method, path: &str, body: &Value) -> (u16, Value, Option<Duration>) {
    let mut b = s.behaviour.lock().unwrap_or_else(|e| e.into_inner());
    let mut deployments = s.deployments.lock().unwrap_or_else(|e| e.into_inner());
    let parts: Vec<&str> = path
        .trim_start_matches("/api/v3/repos/")
        .split('/')
        .collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", [_, _]) => (
            200,
            json!({"id": 1, "full_name": format!("{}/{}", parts[0], parts[1])}),
            None,
        ),
        ("GET", [_, _, "deployments"]) => (200, Value::Array(deployments.clone()), None),
        ("POST", [_, _, "deployments"]) => {
            if let Some(code) = b.create_failures.pop_front() {
                return (code, json!({"message": "Validation Failed"}), None);
            }
            let id = 1000 + deployments.len() as i64;
            let d = json!({
                "id": id,
                "sha": body["ref"],
                "ref": body["ref"],
                "environment": body["environment"],
                "payload": body["payload"],
            });
            deployments.push(d.clone());
            (201, d, b.create_then_hang.take())
        }
        ("POST", [_, _, "deployments", id, "statuses"]) => {
            if let Some(code) = b.status_failures.pop_front() {
                return (code, json!({"message": "Server Error"}), None);
            }
            let known = deployments
                .iter()
                .any(|d| d["id"].as_i64().is_some() && d["id"].as_i64() == id.parse().ok());
            if known {
                (201, json!({"id": 1, "state": body["state"]}), None)
            } else {
                (404, json!({"message": "Not Found"}), None)
            }
        }
        _ => (404, json!({"message": "Not Found"}), None),
    }
}

impl FakeGithub {
    pub fn start() -> FakeGithub {
        let shared = Shared::default();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
            .unwrap_or_else(|e| panic!("cannot bind the fake GitHub: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGithub {
            url: format!("http://{addr}/api/v3"),
            shared,
            _runtime: runtime,
        }
    }

    pub fn behave(&self, f: impl FnOnce(&mut GhBehaviour)) {
        f(&mut self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()));
    }

    pub fn requests(&self) -> Vec<GhRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Deployments made (whatever the client heard).
    pub fn deployments(&self) -> Vec<Value> {
        self.shared
            .deployments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The states of the statuses GitHub accepted, in order, with their deployment id.
    pub fn accepted_statuses(&self) -> Vec<(String, String)> {
        self.requests()
            .iter()
            .filter(|r| r.is_status() && r.answered == 201)
            .map(|r| {
                let id = r.path.rsplit('/').nth(1).unwrap_or("").to_string();
                (id, r.body["state"].as_str().unwrap_or("").to_string())
            })
            .collect()
    }
}
