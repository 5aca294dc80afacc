//! Logging (tracing to stderr or stdout, text or JSON), error chains for log lines, escaping of
//! outside text, and the panic hook. (systemd's notify protocol is the `sd-notify`
//! crate's, used by `daemon`.)

use std::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where log lines go: stderr (the journal under systemd), or stdout (a container's
/// log collector, beside nothing else the daemon prints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogOutput {
    Stderr,
    Stdout,
}

/// Installs the global subscriber. `RUST_LOG` overrides `level`.
pub fn init(format: LogFormat, output: LogOutput, level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let (writer, ansi) = match output {
        LogOutput::Stderr => (
            BoxMakeWriter::new(std::io::stderr),
            std::io::stderr().is_terminal(),
        ),
        LogOutput::Stdout => (
            BoxMakeWriter::new(std::io::stdout),
            std::io::stdout().is_terminal(),
        ),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    install_panic_hook();
}

thread_local! {
    /// Set while [`catch_panic`] runs: its caller reports the panic, the hook stays quiet.
    static CAUGHT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Logs a panic as one escaped log line (a panic message may quote input from disk),
/// unless it happens inside [`catch_panic`], whose caller reports it.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if CAUGHT.with(|c| c.get()) {
            return;
        }
        let text = panic_text(info.payload());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %escape(&text), location, "internal error (a bug: please report it)");
        eprintln!(
            "deployhook: internal error at {location}: {}",
            escape(&text)
        );
    }));
}

/// Runs `f`, catching a panic: `Err` holds its message. The panic hook stays quiet.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = CAUGHT.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CAUGHT.with(|c| c.set(was));
    r.map_err(|p| panic_text(p.as_ref()))
}

/// The text of a panic's payload.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// An error and its causes, joined with ": ".
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let text = c.to_string();
        if !s.ends_with(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = c.source();
    }
    s
}

/// Escapes text that came from a site, a repository or a receiver for one line of a
/// terminal or a log: control characters (newlines, ESC, BEL, C1 codes) and the
/// invisible bidirectional overrides become visible escapes (`\n`, `\u{1b}`), so such
/// text can neither forge a line nor drive the terminal.
pub fn escape(s: &str) -> String {
    escape_with(s, false)
}

/// Like [`escape`], but keeps line breaks: for multi-line bodies printed on their own.
pub fn escape_multiline(s: &str) -> String {
    escape_with(s, true)
}

fn escape_with(s: &str, keep_newlines: bool) -> String {
    let needs = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(needs) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
        }
    }
    out
}
