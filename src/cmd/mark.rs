//! The marker layout's writers: `deployhook mark STATUS --site S` writes the status file
//! atomically, and `deployhook wrap --site S -- CMD...` runs a command between a
//! `building` and a `success`/`failed` mark, passing its output, signals and exit status
//! through.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::config::{self, LayoutChoice, SiteConfig};
use crate::model::Status;
use crate::snapshot::git;
use crate::snapshot::marker::{Marker, MarkerFile, read_marker, write_marker};
use crate::telemetry::chain;

#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    #[error(transparent)]
    Config(#[from] config::LoadError),
    #[error("no [[site]] named {name:?} in {}", file.display())]
    NoSite {
        name: String,
        file: std::path::PathBuf,
    },
    #[error(
        "site {name:?} has layout {layout}: mark and wrap write the status file of a marker site only (set layout = \"marker\" for this site, or let the daemon infer a {layout} site by itself)"
    )]
    NotMarker { name: String, layout: &'static str },
    #[error(transparent)]
    ReadMarker(#[from] crate::snapshot::ReadError),
    #[error("cannot write the status file {}", path.display())]
    WriteMarker {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {command:?}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

/// What to write besides the status.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    pub id: Option<String>,
    pub deployer: Option<String>,
    pub message: Option<String>,
    pub status_text: Option<String>,
    pub progress: Option<String>,
}

/// The site `name`, which must be a `marker` site (configured, or detected by `auto`):
/// a status file in a releases, kudu or git site would be a made-up deployment.
fn site_of(config_path: &Path, name: &str) -> Result<SiteConfig, MarkError> {
    let config = config::load(config_path)?;
    let site = config
        .sites
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| MarkError::NoSite {
            name: name.to_string(),
            file: config_path.to_path_buf(),
        })?;
    let layout = match site.layout {
        LayoutChoice::Auto => crate::snapshot::detect_layout(&site.path).0,
        other => other,
    };
    if layout != LayoutChoice::Marker {
        return Err(MarkError::NotMarker {
            name: site.name,
            layout: layout.as_str(),
        });
    }
    Ok(site)
}

/// What `wrap` says it runs: the program's file name, never its arguments (which may
/// hold tokens and go to every hook in `statusText`).
pub fn program_name(argv: &[String]) -> String {
    argv.first()
        .map(|p| {
            Path::new(p)
                .file_name()
                .map_or_else(|| p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// Writes the marker for `status`. A mark that continues the deployment in progress
/// keeps its id and fields; otherwise the id defaults to the repository's HEAD.
pub fn mark_site(site: &SiteConfig, status: Status, fields: Fields) -> Result<Marker, MarkError> {
    let existing = match read_marker(&site.status_file, &mut Vec::new())? {
        MarkerFile::Ready { marker, status, .. } if !status.is_terminal() => Some(marker),
        _ => None,
    };
    let continuing = existing
        .as_ref()
        .filter(|m| fields.id.is_none() || fields.id == m.id);
    let head = || git::read_head(site.repo.as_deref().unwrap_or(&site.path));
    let marker = Marker {
        status: status.as_str().to_string(),
        id: fields
            .id
            .or_else(|| continuing.and_then(|m| m.id.clone()))
            .or_else(head)
            .or_else(|| {
                let now = crate::model::Timestamp::now().rfc3339();
                Some(format!(
                    "deploy-{}",
                    now.chars()
                        .filter(char::is_ascii_digit)
                        .take(14)
                        .collect::<String>()
                ))
            }),
        deployer: fields
            .deployer
            .or_else(|| continuing.and_then(|m| m.deployer.clone()))
            .or_else(|| std::env::var("USER").ok()),
        message: fields
            .message
            .or_else(|| continuing.and_then(|m| m.message.clone())),
        author: continuing.and_then(|m| m.author.clone()),
        author_email: continuing.and_then(|m| m.author_email.clone()),
        status_text: fields.status_text,
        progress: fields.progress,
    };
    write_marker(&site.status_file, &marker).map_err(|source| MarkError::WriteMarker {
        path: site.status_file.clone(),
        source,
    })?;
    Ok(marker)
}

/// `deployhook mark`.
pub fn mark(
    config_path: &Path,
    site: &str,
    status: Status,
    fields: Fields,
) -> Result<(), MarkError> {
    let site = site_of(config_path, site)?;
    let m = mark_site(&site, status, fields)?;
    println!(
        "{}: {} {}",
        site.status_file.display(),
        m.status,
        m.id.as_deref().unwrap_or("")
    );
    Ok(())
}

/// `deployhook wrap`: returns the exit code to exit with (the child's, or 128 + signal).
/// The statusText is the command's last output line: on failure its last line on
/// stderr (else stdout), on success its last line on stdout (else stderr).
pub fn wrap(
    config_path: &Path,
    site: &str,
    id: Option<String>,
    argv: &[String],
) -> Result<u8, MarkError> {
    let site = site_of(config_path, site)?;
    let command = program_name(argv);
    mark_site(
        &site,
        Status::Building,
        Fields {
            id: id.clone(),
            status_text: Some(format!("running {command}")),
            ..Fields::default()
        },
    )?;
    let Some((program, args)) = argv.split_first() else {
        return Ok(crate::cli::exit::USAGE);
    };
    let mut child = match Command::new(program)
        .args(args)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(source) => {
            let _ = mark_site(
                &site,
                Status::Failed,
                Fields {
                    id,
                    status_text: Some(format!("cannot run {command}: {source}")),
                    ..Fields::default()
                },
            );
            return Err(MarkError::Spawn { command, source });
        }
    };
    let pid = child.id();
    let last_out = Arc::new(Mutex::new(String::new()));
    let last_err = Arc::new(Mutex::new(String::new()));
    let mut copiers = Vec::new();
    if let Some(out) = child.stdout.take() {
        copiers.push(copy_lines(out, false, last_out.clone()));
    }
    if let Some(err) = child.stderr.take() {
        copiers.push(copy_lines(err, true, last_err.clone()));
    }
    let forwarder = forward_signals(pid);
    let status = child.wait();
    for c in copiers {
        let _ = c.join();
    }
    if let Some(handle) = forwarder {
        handle.close();
    }
    // The order of lines across two pipes is unknowable, so: a failure's text is its
    // last line on stderr (else stdout), a success's its last line on stdout (else stderr).
    let out = last_out.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let err = last_err.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let succeeded = status.as_ref().is_ok_and(|s| s.success());
    let (first, second) = if succeeded { (out, err) } else { (err, out) };
    let last = if first.is_empty() { second } else { first };
    let (outcome, text, code) = match status {
        Ok(s) if s.success() => (Status::Success, last, 0),
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            match (s.code(), s.signal()) {
                (Some(code), _) => (
                    Status::Failed,
                    if last.is_empty() {
                        format!("{command} exited with status {code}")
                    } else {
                        last
                    },
                    u8::try_from(code).unwrap_or(1),
                ),
                (None, Some(sig)) => (
                    Status::Failed,
                    format!("{command} was killed by signal {sig}"),
                    u8::try_from(128 + sig).unwrap_or(1),
                ),
                (None, None) => (Status::Failed, last, 1),
            }
        }
        Err(e) => (
            Status::Failed,
            format!("waiting for {command}: {}", chain(&e)),
            1,
        ),
    };
    mark_site(
        &site,
        outcome,
        Fields {
            id,
            status_text: Some(text),
            ..Fields::default()
        },
    )?;
    Ok(code)
}

/// Copies a child's stream to ours line by line, remembering the last non-empty line.
fn copy_lines(
    stream: impl std::io::Read + Send + 'static,
    to_stderr: bool,
    last: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if !line.trim().is_empty() {
                *last.lock().unwrap_or_else(|e| e.into_inner()) = line.trim().to_string();
            }
            let _ = if to_stderr {
                writeln!(std::io::stderr(), "{line}")
            } else {
                writeln!(std::io::stdout(), "{line}")
            };
        }
    })
}

/// Forwards SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 to the child.
fn forward_signals(pid: u32) -> Option<signal_hook::iterator::Handle> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
    let mut signals =
        signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2])
            .ok()?;
    let handle = signals.handle();
    let pid = libc::pid_t::try_from(pid).ok()?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            // SAFETY: kill(2) with the pid of our own child and a valid signal number.
            unsafe {
                libc::kill(pid, sig);
            }
        }
    });
    Some(handle)
}
