//! Kudu's `status.xml`: any text parses or is refused, never panics; fields are capped.
#![no_main]
use deployhook::model::caps;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(s) = deployhook::snapshot::kudu::parse_status_xml(text) {
        assert!(s.id.len() <= caps::SHORT);
        assert!(s.message.as_deref().map_or(0, str::len) <= caps::MESSAGE);
        assert!(s.status_text.len() <= caps::MESSAGE);
        assert!(s.author.as_deref().map_or(0, str::len) <= caps::SHORT);
    }
});
