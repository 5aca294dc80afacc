//! The console's sessions: a random id per login, kept in memory (a restart logs everyone
//! out) for `LIFETIME`, named by an `HttpOnly`, `SameSite=Strict` cookie; and the CSRF
//! token of a page — the session's own, or, with no session (a token sent as a header, or
//! no token configured), one derived from a secret made when the daemon starts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use hmac::{KeyInit, Mac};

/// The session cookie's name.
pub const COOKIE: &str = "deployhook_session";
/// How long a login lasts.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// At most this many sessions at once (the oldest goes first).
const MAX_SESSIONS: usize = 1000;

struct Session {
    csrf: String,
    until: Instant,
}

pub struct Console {
    sessions: Mutex<HashMap<String, Session>>,
    secret: [u8; 32],
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The OS's generator; without it no session can be made safely.
    if getrandom::fill(&mut bytes).is_err() {
        tracing::error!("the OS random generator failed: no console session");
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Console {
    pub fn new() -> Console {
        let mut secret = [0u8; 32];
        if getrandom::fill(&mut secret).is_err() {
            tracing::error!("the OS random generator failed: console forms are refused");
        }
        Console {
            sessions: Mutex::new(HashMap::new()),
            secret,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session's id (empty if no randomness: then nobody can log in).
    pub fn open(&self) -> String {
        let id = random_hex();
        if id.is_empty() {
            return id;
        }
        let now = Instant::now();
        let mut s = self.sessions();
        s.retain(|_, v| v.until > now);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.until)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(
            id.clone(),
            Session {
                csrf: random_hex(),
                until: now + LIFETIME,
            },
        );
        id
    }

    pub fn valid(&self, id: &str) -> bool {
        !id.is_empty()
            && self
                .sessions()
                .get(id)
                .is_some_and(|s| s.until > Instant::now())
    }

    pub fn close(&self, id: &str) {
        self.sessions().remove(id);
    }

    /// The CSRF token forms of this page carry.
    pub fn csrf_for(&self, session: Option<&str>) -> String {
        if let Some(id) = session
            && let Some(s) = self.sessions().get(id)
            && s.until > Instant::now()
        {
            return s.csrf.clone();
        }
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.secret) else {
            return String::new();
        };
        mac.update(b"deployhook console form");
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The session id the request's cookie names, if any.
pub fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether a path is the console's (`/` and `/ui/…`).
pub fn is_console_path(path: &str) -> bool {
    path == "/" || path.starts_with("/ui/")
}

/// Constant-time equality of two tokens (an empty one equals nothing).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.is_empty() || b.is_empty() || a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
