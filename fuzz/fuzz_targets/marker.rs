//! The marker file's JSON: parses or is refused, never panics; fields are capped.
#![no_main]
use deployhook::model::caps;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok((m, _status)) = deployhook::snapshot::marker::parse_marker(text) {
        assert!(m.id.as_deref().map_or(0, str::len) <= caps::SHORT);
        assert!(m.message.as_deref().map_or(0, str::len) <= caps::MESSAGE);
    }
});
