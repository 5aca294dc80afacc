//! The config file: any text is a `Config` or a list of errors with lines, never a panic.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let env = deployhook::config::Env {
        host_name: "fuzz".into(),
        state_directory: None,
        credentials_directory: None,
        read_file: &|_| Ok("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
        read_env: &|_| None,
        mode_of: &|_| Some(0o600),
    };
    if let Err(errors) = deployhook::config::parse(text, Path::new("/fuzz.toml"), &env) {
        assert!(!errors.is_empty());
        for e in errors {
            assert!(e.line >= 1 && e.line <= text.lines().count() + 1);
        }
    }
});
