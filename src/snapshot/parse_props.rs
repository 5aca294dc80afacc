//! Property tests of every parser of site files: whatever the text — random, or a valid
//! file with random pieces in it — parsing never panics and what it keeps is bounded.
//! (`cargo fuzz` runs the same parsers much longer: see `fuzz/`.)

use proptest::prelude::*;

use super::LogEntry;
use super::kudu::parse_status_xml;
use super::marker::parse_marker;
use super::releases::{parse_releases_log, parse_revisions_log, parse_time};
use crate::model::{Timestamp, caps};

/// Text with the characters that break naive parsers: multi-byte ones, controls,
/// quotes, angle brackets, separators.
fn nasty() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            any::<char>().prop_map(|c| c.to_string()),
            Just("é".to_string()),
            Just("\u{1b}[2J".to_string()),
            Just("\n".to_string()),
            Just("<".to_string()),
            Just("\"".to_string()),
            Just(" by ".to_string()),
            Just(" (at ".to_string()),
            Just("+01:00".to_string()),
            Just("Z".to_string()),
            Just("1970-01-01T00:00:00".to_string()),
            Just("-9999-01-01T00:00:00".to_string()),
        ],
        0..40,
    )
    .prop_map(|v| v.concat())
}

fn long() -> impl Strategy<Value = String> {
    (1usize..200_000).prop_map(|n| "x".repeat(n))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn time_never_panics_and_round_trips(s in nasty(), micros in any::<i64>()) {
        if let Some(t) = parse_time(&s) {
            prop_assert_eq!(parse_time(&t.rfc3339()), Some(t));
        }
        let shown = Timestamp(micros).rfc3339();
        prop_assert!(shown.len() <= 40, "{}", shown);
    }

    #[test]
    fn status_xml_never_panics_and_fields_are_capped(
        id in nasty(), message in prop_oneof![nasty(), long()], time in nasty(), junk in nasty()
    ) {
        let xml = format!(
            "<deployment><id>{id}</id><message>{message}</message><status>Building</status>\
             <receivedTime>{time}</receivedTime>{junk}<complete>False</complete></deployment>"
        );
        let half: String = xml.chars().take(xml.chars().count() / 2).collect();
        for text in [xml.as_str(), junk.as_str(), half.as_str()] {
            if let Ok(s) = parse_status_xml(text) {
                prop_assert!(s.id.len() <= caps::SHORT);
                prop_assert!(s.message.as_deref().map_or(0, str::len) <= caps::MESSAGE);
            }
            if let Err(e) = parse_status_xml(text) {
                prop_assert!(e.len() <= 100, "{}", e);
            }
        }
    }

    #[test]
    fn revisions_log_never_panics_and_keeps_little_of_garbage(
        lines in proptest::collection::vec(prop_oneof![
            nasty(),
            (nasty(), nasty(), nasty()).prop_map(|(b, r, u)| format!("Branch {b} (at abc) deployed as release {r} by {u}")),
            long(),
        ], 0..8)
    ) {
        let text = lines.join("\n");
        let log = parse_revisions_log(&text);
        for e in &log.entries {
            match e {
                LogEntry::Garbage(g) => prop_assert!(g.len() <= 120),
                LogEntry::Deployed { user, branch, .. } => {
                    prop_assert!(user.len() <= caps::SHORT && branch.len() <= caps::SHORT)
                }
                LogEntry::RolledBack { user, .. } => prop_assert!(user.len() <= caps::SHORT),
            }
        }
    }

    #[test]
    fn releases_log_never_panics(
        name in nasty(), created in nasty(), user in prop_oneof![nasty(), long()]
    ) {
        let line = serde_json::json!({"release_name": name, "created_at": created, "user": user});
        let text = format!("{line}\n{name}\n{{\"release_name\": 4, \"created_at\": \"{created}\"}}\n");
        for e in parse_releases_log(&text) {
            prop_assert!(e.release_name.len() <= caps::SHORT);
            prop_assert!(e.user.as_deref().map_or(0, str::len) <= caps::SHORT);
        }
    }

    #[test]
    fn marker_never_panics_and_fields_are_capped(
        status in prop_oneof![Just("building".to_string()), nasty()],
        id in prop_oneof![nasty(), long()],
        message in prop_oneof![nasty(), long()],
    ) {
        let json = serde_json::json!({"status": status, "id": id, "message": message, "statusText": message});
        let text = json.to_string();
        let half: String = text.chars().take(text.chars().count() / 2).collect();
        for t in [text.as_str(), half.as_str(), id.as_str()] {
            match parse_marker(t) {
                Ok((m, _)) => {
                    prop_assert!(m.id.as_deref().map_or(0, str::len) <= caps::SHORT);
                    prop_assert!(m.message.as_deref().map_or(0, str::len) <= caps::MESSAGE);
                }
                Err(e) => prop_assert!(e.len() <= 100, "{}", e),
            }
        }
    }
}
