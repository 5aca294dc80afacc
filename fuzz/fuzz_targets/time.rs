//! RFC 3339 times: any text parses or is `None`; a parsed time formats and parses back
//! to itself; any microsecond count formats without panicking.
#![no_main]
use deployhook::model::Timestamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, i64)| {
    let (text, micros) = input;
    if let Some(t) = Timestamp::parse_rfc3339(text) {
        let shown = t.rfc3339();
        // Kudu's seven digits keep a tenth of a microsecond: microseconds round-trip.
        assert_eq!(Timestamp::parse_rfc3339(&shown), Some(t), "{shown}");
    }
    let _ = Timestamp(micros).rfc3339();
});
