//! Capistrano's `revisions.log`: every complete line is an entry, nothing panics, and
//! what is kept of a line is bounded.
#![no_main]
use deployhook::snapshot::LogEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let log = deployhook::snapshot::releases::parse_revisions_log(text);
    assert!(log.entries.len() <= text.matches('\n').count());
    for e in &log.entries {
        if let LogEntry::Garbage(g) = e {
            assert!(g.len() <= 120);
        }
    }
});
