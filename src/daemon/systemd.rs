//! What the daemon tells systemd: `READY=1`, `RELOADING=1`, `STOPPING=1`, `WATCHDOG=1` and a
//! `STATUS=` summary, each datagram sent non-blocking to `$NOTIFY_SOCKET` (a no-op
//! elsewhere) — a notify socket nobody reads never stops the loop or SIGTERM.

use crate::model::count_of;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::model::Timestamp;
use crate::store::Store;
use crate::telemetry::{chain, escape};

/// Tells systemd (under `Type=notify`; a no-op elsewhere). Never blocks: the datagram
/// is sent non-blocking, and a full socket (systemd not reading, its queue of 10 full)
/// drops this message — a stuck notify socket must never stop the loop or SIGTERM.
pub(super) fn notify(state: &[NotifyState<'_>]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let msg: String = state.iter().map(|s| format!("{s}\n")).collect();
    if let Err(e) = send_notify(&path, msg.as_bytes()) {
        tracing::debug!(error = %e, "sd_notify: message dropped");
    }
}

fn send_notify(path: &std::ffi::OsStr, msg: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    let sent = sock.send_to_addr(msg, &addr)?;
    if sent != msg.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete write",
        ));
    }
    Ok(())
}

/// Sends systemd a one-line summary (`systemctl status` shows it): the sites, the
/// deliveries waiting and how long the oldest has waited. The query runs off the loop.
pub(super) fn send_status(sites: usize, store: &Store) {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let line = match store.queue_totals() {
            Ok((0, _)) => format!(
                "{}; no deliveries waiting",
                count_of(sites, "site", "sites")
            ),
            Ok((n, oldest)) => {
                let waited = oldest.map_or(Duration::ZERO, |t| Timestamp::now().since(t));
                let waited = crate::model::format_duration(Duration::from_secs(waited.as_secs()));
                format!(
                    "{}; {} waiting, the oldest for {waited}",
                    count_of(sites, "site", "sites"),
                    count_of(n as usize, "delivery", "deliveries")
                )
            }
            Err(e) => format!(
                "{}; the outbox cannot be read: {}",
                count_of(sites, "site", "sites"),
                chain(&e)
            ),
        };
        notify(&[NotifyState::Status(&escape(&line))]);
    });
}
