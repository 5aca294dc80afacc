//! The API's connections, bounded: at most `max_connections` at once, each with a
//! header-read timeout (also the idle timeout between requests of a kept-alive
//! connection: hyper times the wait for every request's head) and a request timeout that
//! covers reading the body. At the limit, a new connection takes the place of the
//! longest-open one that has not sent a byte yet (a probe gets through a crowd of idle
//! sockets); if every connection is busy, the new one is closed at once — never queued.
//! Accept errors (the fd limit) back off instead of spinning. Nothing here blocks the
//! daemon: site reads, the store and reloads go on whatever the API's load.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, watch};

/// How the API bounds its connections (`[api]` `max_connections`, `header_timeout`,
/// `request_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
}

/// One open connection, as the limit sees it.
struct Open {
    /// It has sent a byte: a request is under way (or was).
    spoke: Arc<AtomicBool>,
    /// Told to close, to make room.
    evict: Arc<Notify>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    next: u64,
    open: BTreeMap<u64, Open>,
}

/// Decides whether a new connection is served, making room when it can.
pub(super) struct Gate {
    max: usize,
    registry: Mutex<Registry>,
}

/// A connection's place under the limit; gives it back when dropped.
pub(super) struct Slot {
    gate: Arc<Gate>,
    id: u64,
    spoke: Arc<AtomicBool>,
    evict: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.lock().open.remove(&self.id);
    }
}

impl Gate {
    pub(super) fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max: max.max(1),
            registry: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection: free, or the oldest silent connection's (which is
    /// told to close); `None` when every connection has spoken.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut r = self.lock();
        if r.open.len() >= self.max {
            let silent = r
                .open
                .iter()
                .find(|(_, o)| !o.spoke.load(Ordering::Relaxed))
                .map(|(id, _)| *id);
            let evicted = silent.and_then(|id| r.open.remove(&id))?;
            evicted.evict.notify_one();
            crate::metrics::get().api_connection("evicted");
        }
        r.next += 1;
        let id = r.next;
        let spoke = Arc::new(AtomicBool::new(false));
        let evict = Arc::new(Notify::new());
        r.open.insert(
            id,
            Open {
                spoke: spoke.clone(),
                evict: evict.clone(),
            },
        );
        Some(Slot {
            gate: self.clone(),
            id,
            spoke,
            evict,
        })
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// A stream that notes when its peer first sends a byte.
struct Noting<S> {
    inner: S,
    spoke: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Noting<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.spoke.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Noting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A listener the API accepts from.
pub(super) trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> std::io::Result<Self::Io> {
        let (s, _) = tokio::net::TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

impl Accept for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> std::io::Result<Self::Io> {
        Ok(tokio::net::UnixListener::accept(self).await?.0)
    }
}

/// Serves `app` on `listener` under `limits` until `stop` says so (or is dropped);
/// then the listener is closed at once, and connections in flight finish their request.
pub(super) async fn serve<L: Accept>(
    listener: L,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let gate = Gate::new(limits.max_connections);
    let mut failing = false;
    loop {
        let io = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        if *stop.borrow() {
            break;
        }
        let io = match io {
            Ok(io) => {
                if failing {
                    failing = false;
                    tracing::info!("the API accepts connections again");
                }
                io
            }
            Err(e) => {
                // EMFILE and friends: say so once, wait a little, never spin.
                if !failing {
                    failing = true;
                    tracing::warn!(error = %e, "the API cannot accept connections (the file descriptor limit?); trying again");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(slot) = gate.admit() else {
            // Every connection is busy: closed now, not queued.
            crate::metrics::get().api_connection("refused");
            drop(io);
            continue;
        };
        crate::metrics::get().api_connection("accepted");
        tokio::spawn(serve_one(io, app.clone(), slot, limits, stop.clone()));
    }
}

/// One connection: HTTP/1 with the header timeout; closed when evicted or at shutdown
/// (after its request in flight).
async fn serve_one<I>(
    io: I,
    app: Router,
    slot: Slot,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Noting {
        inner: io,
        spoke: slot.spoke.clone(),
    });
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let evict = slot.evict.clone();
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = evict.notified() => {}
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits.request_timeout, conn.as_mut()).await;
        }
    }
    drop(slot);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_a_silent_connection_makes_room_and_a_busy_one_does_not() {
        let gate = Gate::new(2);
        let a = gate.admit().unwrap_or_else(|| panic!("room"));
        let b = gate.admit().unwrap_or_else(|| panic!("room"));
        a.spoke.store(true, Ordering::Relaxed);
        // b has said nothing: it makes room for c.
        let c = gate.admit().unwrap_or_else(|| panic!("b evicted"));
        drop(b);
        assert_eq!(gate.len(), 2);
        c.spoke.store(true, Ordering::Relaxed);
        assert!(gate.admit().is_none(), "both busy: refused");
        drop(a);
        assert!(gate.admit().is_some(), "a closed: room again");
    }
}
