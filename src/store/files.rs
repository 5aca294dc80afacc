//! The outbox's files: the state directory (0700 whatever the umask), the database and
//! its WAL and SHM (0600), and read-only connections for the commands.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use std::time::Duration;

use super::{StoreError, q};

/// A read-only connection to the database at `path`.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::OpenDatabase {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(q("set busy timeout"))?;
    cache_at_most(&conn)?;
    Ok(conn)
}

/// Each connection keeps at most 512 KiB of pages (SQLite's default is 2 MiB): the
/// kernel's page cache has the file anyway, and an idle daemon with many sites held
/// their pages twice, once per connection.
pub(super) fn cache_at_most(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "cache_size", -512)
        .map_err(q("set cache size"))
}

/// Creates the state directory if needed, and makes it 0700 whatever the umask: the
/// outbox holds payloads and the history of every receiver's answers. A directory that
/// was more open is tightened, with a notice.
pub(super) fn create_state_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::CreateStateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    tighten(dir, 0o700);
    Ok(())
}

/// Removes the permission bits beyond `max` from `path` (if it exists), with a notice.
/// Failing to (another owner) is a warning, not an error: the files stay as they were.
fn tighten(path: &Path, max: u32) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !max == 0 {
        return;
    }
    let new = mode & max;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(new)) {
        Ok(()) => tracing::info!(
            path = %path.display(),
            "permissions tightened from {mode:04o} to {new:04o}: the state holds payloads and receivers' answers"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "cannot tighten permissions from {mode:04o} to {new:04o}"
        ),
    }
}

/// Creates the database file 0600 before SQLite does (its WAL and shared-memory files
/// take the database's mode), and tightens existing ones.
pub(super) fn secure_database_files(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        tighten(Path::new(&p), 0o600);
    }
}
