//! A loopback webhook receiver (axum on 127.0.0.1:0) that records every request and can
//! be told to answer with given statuses, hang, or advertise `Retry-After`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn event(&self) -> &str {
        self.header("x-deployhook-event").unwrap_or("")
    }
}

#[derive(Default)]
pub struct Behaviour {
    /// Statuses to answer, in order; 200 once used up.
    pub statuses: VecDeque<u16>,
    /// Never answer (until the client gives up).
    pub hang: bool,
    pub retry_after: Option<String>,
    /// Answer each request only after this long.
    pub delay: Option<Duration>,
}

#[derive(Clone, Default)]
struct Shared {
    requests: Arc<Mutex<Vec<Request>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

pub struct Receiver {
    pub url: String,
    addr: std::net::SocketAddr,
    shared: Shared,
    /// The server's own runtime: dropping it closes the listener and every connection.
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
}

async fn handle(
    State(s): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, hang, retry_after, delay) = {
        let mut b = s.behaviour.lock().unwrap_or_else(|e| e.into_inner());
        (
            b.statuses.pop_front().unwrap_or(200),
            b.hang,
            b.retry_after.clone(),
            b.delay,
        )
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    s.requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Request {
            path: uri.path().to_string(),
            headers: header_pairs(&headers),
            body: body.to_vec(),
            answered: if hang { 0 } else { status },
        });
    if hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    let mut resp = StatusCode::from_u16(status)
        .unwrap_or(StatusCode::OK)
        .into_response();
    if let Some(ra) = retry_after.and_then(|r| HeaderValue::from_str(&r).ok()) {
        resp.headers_mut().insert("retry-after", ra);
    }
    resp
}

/// A request's headers as (name, value) pairs.
pub fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn serve(
    addr: std::net::SocketAddr,
    shared: Shared,
) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let app = Router::new().fallback(handle).with_state(shared);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("cannot bind the receiver on {addr}: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    runtime.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (runtime, addr)
}

impl Receiver {
    pub fn start() -> Receiver {
        let shared = Shared::default();
        let (runtime, addr) = serve(([127, 0, 0, 1], 0).into(), shared.clone());
        Receiver {
            url: format!("http://{addr}/hook"),
            addr,
            shared,
            runtime: Mutex::new(Some(runtime)),
        }
    }

    /// The URL with credentials, for Basic auth tests.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}/hook", self.addr)
    }

    /// Goes down: the port refuses connections and open connections are closed.
    pub fn stop(&self) {
        if let Some(rt) = self
            .runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            rt.shutdown_background();
        }
    }

    /// Comes back on the same address.
    pub fn restart(&self) {
        let mut slot = self.runtime.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rt) = slot.take() {
            rt.shutdown_background();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if std::net::TcpListener::bind(self.addr).is_ok()
                || std::time::Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        *slot = Some(serve(self.addr, self.shared.clone()).0);
    }

    pub fn behave(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self
            .shared
            .behaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner()));
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Bodies of requests of `event`, in arrival order.
    pub fn payloads(&self, event: &str) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.event() == event)
            .map(|r| r.json())
            .collect()
    }

    /// The `status` field of every StatusChanged payload, in arrival order.
    pub fn statuses(&self) -> Vec<String> {
        self.payloads("StatusChanged")
            .iter()
            .map(|p| p["status"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}
