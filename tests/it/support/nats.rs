//! A real `nats-server -js` on a free loopback port with its own store directory, for the
//! NATS tests; and a small JetStream client (async-nats) to make the stream and read it
//! back. Without the binary a test says how to get it and skips — but fails under CI
//! (`.ci/run` installs Debian's `nats-server`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::api::free_port;
use super::env::wait_until;

/// Whether `nats-server` can run; when not, says how to get it, and panics under CI.
pub fn have() -> bool {
    super::tools::have("nats-server", "nats-server")
}

pub struct NatsServer {
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream, storing under `store`.
    pub fn start(store: PathBuf) -> NatsServer {
        let mut s = NatsServer {
            port: free_port(),
            store,
            child: None,
        };
        s.up();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port and store.
    pub fn up(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        self.child = Some(child);
        let port = self.port;
        wait_until(
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            Duration::from_secs(10),
            || format!("nats-server listening on {port}"),
        );
    }

    /// Stops the process (SIGKILL); the store stays.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.down();
    }
}

/// A message as the stream holds it.
#[derive(Clone, Debug)]
pub struct Stored {
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Stored {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Creates stream `name` capturing `subjects`, with a 2-minute duplicate window.
pub fn create_stream(url: &str, name: &str, subjects: &[&str]) {
    runtime().block_on(async {
        let client = async_nats::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create stream {name}: {e}"));
    });
}

/// Publishes `body` to `subject` through JetStream, as an edge would (waits for the ack).
pub fn publish(url: &str, subject: &str, body: &[u8]) {
    runtime().block_on(async {
        let client = async_nats::connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let js = async_nats::jetstream::new(client);
        js.publish(subject.to_string(), body.to_vec().into())
            .await
            .unwrap_or_else(|e| panic!("publish {subject}: {e}"))
            .await
            .unwrap_or_else(|e| panic!("ack of {subject}: {e}"));
    });
}

/// Every message of stream `name`, in stream order.
pub fn messages(url: &str, name: &str) -> Vec<Stored> {
    runtime().block_on(async {
        let Ok(client) = async_nats::connect(url).await else {
            return Vec::new();
        };
        let js = async_nats::jetstream::new(client);
        let Ok(mut stream) = js.get_stream(name).await else {
            return Vec::new();
        };
        let last = match stream.info().await {
            Ok(i) => i.state.last_sequence,
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await {
                out.push(Stored {
                    subject: m.subject.to_string(),
                    headers: m
                        .headers
                        .iter()
                        .flat_map(|(k, vs)| {
                            vs.iter()
                                .map(move |v| (k.to_string(), v.as_str().to_string()))
                        })
                        .collect(),
                    body: m.payload.to_vec(),
                });
            }
        }
        out
    })
}
