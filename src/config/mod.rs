//! The validated configuration. Only this module knows TOML.
//!
//! `raw.rs` mirrors the file (serde, spans, a `///` per key); `types.rs` is the validated
//! `Config`; `validate.rs` turns the text into a `Config` or every `ConfigError` at once,
//! each with file, line, column and key path; `secrets.rs` reads signing secrets and
//! keeps them out of output. `load` adds the I/O: reading the file, the secrets and the
//! machine's host name.

pub mod api;
pub mod chains;
mod checker;
pub mod formats;
mod hooks;
pub mod nats;
pub mod otlp;
pub mod raw;
pub mod secrets;
pub mod sources;
pub mod types;
pub mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use chains::ChainConfig;
pub use formats::{CloudEventsMode, Format, GithubTarget, TEMPLATE_VARIABLES, Template};
pub use hooks::check_event_name;
pub use secrets::{Secret, redact_url};
pub use sources::SourceConfig;
pub use types::*;
pub use validate::parse;

/// Reads and validates the config file.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    load_with(path, credentials, false)
}

/// As `load`, for `deployhook check` run by hand: a `secret_file` naming a systemd
/// credential, which only the service can read, is a warning instead of an error.
pub fn load_for_check(path: &Path) -> Result<Config, LoadError> {
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    load_with(path, credentials, true)
}

/// As `load`, but credentials are not read (a warning names each): for `deployhook
/// reload`, which runs as the unit's `ExecReload=` where systemd hides the service's
/// credentials; the daemon checks them when it loads the file.
pub fn load_without_credentials(path: &Path) -> Result<Config, LoadError> {
    load_with(path, None, true)
}

fn load_with(
    path: &Path,
    credentials_directory: Option<PathBuf>,
    credentials_unchecked: bool,
) -> Result<Config, LoadError> {
    let text = read_config_text(path).map_err(|source| LoadError::ReadConfig {
        path: path.to_path_buf(),
        source,
    })?;
    let env = Env {
        host_name: machine_host_name(),
        state_directory: std::env::var_os("STATE_DIRECTORY").map(PathBuf::from),
        credentials_directory,
        credentials_unchecked,
        // Secret and template files too: never blocking on a FIFO, at most 1 MiB.
        read_file: &|p| read_config_text(p),
        read_env: &|k| std::env::var(k).ok(),
        mode_of: &mode_of,
    };
    parse(&text, path, &env).map_err(LoadError::Invalid)
}

/// Where the state directory of the config at `path` is, read leniently: from its
/// `daemon.state_dir` when the file parses as TOML at all, else the default
/// (`$STATE_DIRECTORY`, then `/var/lib/deployhook`). For commands that read a running
/// daemon's outbox even when the file on disk has errors (`status`, `deliveries`).
pub fn state_dir_of(path: &Path) -> PathBuf {
    let from_file = read_config_text(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| {
            t.get("daemon")?
                .get("state_dir")?
                .as_str()
                .map(PathBuf::from)
        })
        .filter(|p| p.is_absolute());
    from_file
        .or_else(|| std::env::var_os("STATE_DIRECTORY").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/deployhook"))
}

/// The largest config file read.
const MAX_CONFIG: u64 = 1024 * 1024;

/// Reads the config file without blocking on a FIFO or device put in its place (the
/// running daemon reads it again on every change) and without reading more than 1 MiB.
/// Symlinks are followed: a Kubernetes ConfigMap's file is one.
pub fn read_config_text(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut text = String::new();
    f.take(MAX_CONFIG + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "larger than 1 MiB; is this the config file?",
        ));
    }
    Ok(text)
}

/// What `parse` needs from outside the file (so tests can supply it).
pub struct Env<'a> {
    pub host_name: String,
    pub state_directory: Option<PathBuf>,
    /// systemd's `$CREDENTIALS_DIRECTORY` (`LoadCredential=`): a relative `secret_file`
    /// is read from there.
    pub credentials_directory: Option<PathBuf>,
    /// Without `credentials_directory`, a credential name is a warning, not an error
    /// (`check` by hand: only the service gets the credentials).
    pub credentials_unchecked: bool,
    pub read_file: &'a dyn Fn(&Path) -> std::io::Result<String>,
    pub read_env: &'a dyn Fn(&str) -> Option<String>,
    pub mode_of: &'a dyn Fn(&Path) -> Option<u32>,
}

fn mode_of(p: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).ok().map(|m| m.permissions().mode())
}

/// The machine's host name, asked of the kernel (`gethostname(2)`: it works under
/// systemd's `ProcSubset=pid`, which hides `/proc/sys/kernel/hostname`).
pub fn machine_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // (or truncates, which the `position` below tolerates).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let name = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).trim().to_string()
    } else {
        String::new()
    };
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

/// A map of site name to index, for lookups.
pub fn site_index(config: &Config) -> BTreeMap<String, usize> {
    config
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.clone(), i))
        .collect()
}

#[cfg(test)]
mod tests;
