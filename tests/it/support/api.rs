//! A small HTTP/1.1 client for the daemon's API, over TCP or a unix socket, with
//! `Connection: close` (so a response ends with the connection).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub enum Target {
    Tcp(String),
    Unix(PathBuf),
}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {}: the body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Client {
    pub target: Target,
    pub token: Option<String>,
}

impl Client {
    pub fn tcp(port: u16) -> Client {
        Client {
            target: Target::Tcp(format!("127.0.0.1:{port}")),
            token: None,
        }
    }

    pub fn unix(path: &Path) -> Client {
        Client {
            target: Target::Unix(path.to_path_buf()),
            token: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.to_string());
        self
    }

    pub fn get(&self, path: &str) -> Answer {
        self.send("GET", path, &[], None)
    }

    pub fn delete(&self, path: &str) -> Answer {
        self.send("DELETE", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &str) -> Answer {
        self.send("POST", path, &[], Some(body.as_bytes()))
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.post(path, &body.to_string())
    }

    /// One request; `headers` are sent as given (an `Authorization` in them replaces the
    /// token's).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Answer {
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: deployhook\r\nConnection: close\r\n");
        let own_auth = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        if let (Some(t), false) = (&self.token, own_auth) {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut raw = Vec::new();
        let mut exchange = |s: &mut dyn ReadWrite| {
            s.write_all(req.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            if let Some(b) = body {
                // The server may answer (413) and close before reading it all.
                let _ = s.write_all(b);
            }
            let _ = s.read_to_end(&mut raw);
        };
        match &self.target {
            Target::Tcp(addr) => {
                let mut s = std::net::TcpStream::connect(addr)
                    .unwrap_or_else(|e| panic!("cannot connect to the API at {addr}: {e}"));
                s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .unwrap_or_else(|e| panic!("{e}"));
                exchange(&mut s);
            }
            Target::Unix(path) => {
                let mut s = std::os::unix::net::UnixStream::connect(path).unwrap_or_else(|e| {
                    panic!("cannot connect to the API at {}: {e}", path.display())
                });
                s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .unwrap_or_else(|e| panic!("{e}"));
                exchange(&mut s);
            }
        }
        parse(&raw)
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn parse(raw: &[u8]) -> Answer {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}
