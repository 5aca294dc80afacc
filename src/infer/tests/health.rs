//! Rows of the health gate: success waits for a 2xx from `health_url`.

use super::*;

// ---- health gate --------------------------------------------------------------------------

mod health_rows {
    use super::*;
    use crate::snapshot::Health;

    fn with_health(s: &S, h: Option<Health>) -> Snapshot {
        let mut snap = s.snap();
        snap.health = h;
        snap
    }

    fn hp() -> Params {
        Params {
            health_timeout: Some(Duration::from_secs(60)),
            ..params()
        }
    }

    #[test]
    fn success_waits_for_a_2xx_seen_after_the_layout_said_done() {
        let (s, st) = cap_live();
        let s = s.release("200", 2).current("200").deployed("200", "bob");
        let stale = Health {
            last_ok: Some(t(-5)),
            ..Health::default()
        };
        let out = infer(&st, &with_health(&s, Some(stale)), t(3), &hp());
        assert_eq!(
            out.transitions[0].to, Deploying,
            "a 2xx from before does not count"
        );
        assert_eq!(out.wake_at, Some(t(63)));
        let fresh = Health {
            last_ok: Some(t(4)),
            ..Health::default()
        };
        let out = infer(&out.state, &with_health(&s, Some(fresh)), t(4), &hp());
        assert_eq!(out.transitions.len(), 1);
        assert_eq!(
            out.transitions[0].to, Success,
            "the consumed log line still counts"
        );
    }

    #[test]
    fn no_2xx_within_health_timeout_fails_with_the_last_error() {
        let (s, st) = cap_live();
        let s = s.release("200", 2).current("200").deployed("200", "bob");
        let bad = Health {
            last_error: Some("HTTP 502".into()),
            ..Health::default()
        };
        let out = infer(&st, &with_health(&s, Some(bad.clone())), t(3), &hp());
        let out = infer(&out.state, &with_health(&s, Some(bad)), t(63), &hp());
        assert_eq!(out.transitions[0].to, Failed);
        assert!(
            out.transitions[0]
                .deployment
                .status_text
                .contains("HTTP 502")
        );
    }
}
