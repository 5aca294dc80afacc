//! A real `nats-server -js` on a loopback port it picks itself (read from its ports file) with its own store directory, for the
//! NATS tests; and a small JetStream client (async-nats) to make the stream and read it
//! back. Without the binary a test says how to get it and skips — but fails under CI
//! (`.ci/run` installs Debian's `nats-server`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::env::wait_until;

/// Whether `nats-server` can run; when not, says how to get it, and panics under CI.
pub fn have() -> bool {
    super::tools::have("nats-server", "nats-server")
}

pub struct NatsServer {
    /// 0 until the first start has said which port it bound.
    pub port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream, storing under `store`.
    pub fn start(store: PathBuf) -> NatsServer {
        let mut s = NatsServer {
            port: 0,
            store,
            child: None,
        };
        s.up();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the process: the first time on a port it picks (`-p -1`), read from the
    /// ports file it writes once it listens; again on that same port and store.
    pub fn up(&mut self) {
        let ports_dir = self.store.with_extension("ports");
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).unwrap_or_else(|e| panic!("{e}"));
        let port = if self.port == 0 {
            "-1".to_string()
        } else {
            self.port.to_string()
        };
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port, "-sd"])
            .arg(&self.store)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        self.child = Some(child);
        let mut bound = None;
        wait_until(
            || {
                bound = bound_port(&ports_file, "nats");
                bound.is_some()
            },
            Duration::from_secs(10),
            || format!("nats-server's ports file {}", ports_file.display()),
        );
        self.port = bound.unwrap_or_default();
    }

    /// Stops the process (SIGKILL); the store stays.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The port nats-server says (in its ports file) it bound for `kind` (`nats`, `cluster`).
fn bound_port(ports_file: &std::path::Path, kind: &str) -> Option<u16> {
    let text = std::fs::read_to_string(ports_file).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = v[kind][0].as_str()?;
    url.rsplit(':').next()?.parse().ok()
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

/// A three-node JetStream cluster on loopback, each node on ports it picked itself (read
/// from its ports file). The first node's route list names a port nothing listens on
/// (nats-server will not start JetStream clustered without one); the others route to
/// it, and gossip makes the mesh. A node killed comes back on its ports and store.
pub struct NatsCluster {
    dir: PathBuf,
    /// (client port, cluster port) of each node, once started.
    pub ports: Vec<(u16, u16)>,
    children: Vec<Option<Child>>,
}

impl NatsCluster {
    pub fn start(dir: PathBuf) -> NatsCluster {
        let mut c = NatsCluster {
            dir,
            ports: Vec::new(),
            children: Vec::new(),
        };
        for i in 0..3 {
            c.children.push(None);
            c.ports.push((0, 0));
            c.up(i);
        }
        c
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.ports[i].0)
    }

    /// Every node's client URL, comma-separated (for a client that may pick any).
    pub fn urls(&self) -> String {
        (0..3).map(|i| self.url(i)).collect::<Vec<_>>().join(",")
    }

    /// Starts node `i`: the first time on ports it picks, again on the same ones.
    pub fn up(&mut self, i: usize) {
        let ports_dir = self.dir.join(format!("ports{i}"));
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir).unwrap_or_else(|e| panic!("{e}"));
        let (client, cluster) = self.ports[i];
        let port = |p: u16| {
            if p == 0 {
                "-1".to_string()
            } else {
                p.to_string()
            }
        };
        let routes: Vec<String> = self
            .ports
            .iter()
            .enumerate()
            .filter(|(j, (_, c))| *j != i && *c != 0)
            .map(|(_, (_, c))| format!("nats://127.0.0.1:{c}"))
            .collect();
        // Port 1 is privileged: nothing of ours listens there.
        let routes = if routes.is_empty() {
            "nats://127.0.0.1:1".to_string()
        } else {
            routes.join(",")
        };
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port(client)])
            .arg("-sd")
            .arg(self.dir.join(format!("store{i}")))
            .args([
                "--server_name",
                &format!("n{}", i + 1),
                "--cluster_name",
                "deployhook",
            ])
            .args(["--cluster", &format!("nats://127.0.0.1:{}", port(cluster))])
            .args(["--routes", &routes])
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server: {e}"));
        let ports_file = ports_dir.join(format!("nats-server_{}.ports", child.id()));
        self.children[i] = Some(child);
        let mut bound = None;
        wait_until(
            || {
                bound = bound_port(&ports_file, "nats").zip(bound_port(&ports_file, "cluster"));
                bound.is_some()
            },
            Duration::from_secs(10),
            || format!("nats-server's ports file {}", ports_file.display()),
        );
        self.ports[i] = bound.unwrap_or_default();
    }

    /// Kills node `i` (SIGKILL); its store stays.
    pub fn down(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Makes stream `name` with three replicas, once the cluster has a JetStream leader
    /// (the API answers an error until then).
    pub fn create_stream(&self, name: &str, subjects: &[&str]) {
        let url = self.url(0);
        let last = std::cell::RefCell::new(String::new());
        wait_until(
            || {
                runtime().block_on(async {
                    let Ok(client) = async_nats::connect(&url).await else {
                        return false;
                    };
                    let js = async_nats::jetstream::new(client);
                    match js
                        .create_stream(async_nats::jetstream::stream::Config {
                            name: name.to_string(),
                            subjects: subjects.iter().map(|s| s.to_string()).collect(),
                            duplicate_window: Duration::from_secs(120),
                            num_replicas: 3,
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(_) => true,
                        Err(e) => {
                            *last.borrow_mut() = e.to_string();
                            false
                        }
                    }
                })
            },
            Duration::from_secs(30),
            || format!("a three-replica stream {name}: {}", last.borrow()),
        );
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.down(i);
        }
    }
}
