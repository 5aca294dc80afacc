//! Deployer's `.dep/releases_log`: bad lines are skipped, times out of range are
//! "unknown", nothing panics.
#![no_main]
use deployhook::model::caps;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for e in deployhook::snapshot::releases::parse_releases_log(text) {
        assert!(e.release_name.len() <= caps::SHORT);
        if let Some(t) = e.created_at {
            let _ = t.rfc3339();
        }
    }
});
