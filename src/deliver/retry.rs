//! The retry policy (SPEC §5), pure: what to do after an attempt, given the hook's
//! schedule, how many attempts were made, the response, `now` and a jitter draw.

use std::time::Duration;

use crate::model::Timestamp;

/// What an attempt came to, as far as the policy cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// An HTTP status, with the `Retry-After` header's delay if it had one.
    Status {
        code: u16,
        retry_after: Option<Duration>,
    },
    /// No response: connect error, timeout, reset.
    Error,
}

use crate::store::Outcome;

/// The relative size of the jitter: ±20 %.
pub const JITTER: f64 = 0.2;

/// Decides after attempt number `attempts` (1-based) failed or succeeded.
/// `jitter` is a draw from [-1, 1]; the delay is the scheduled one times `1 + 0.2·jitter`.
pub fn decide(
    schedule: &[Duration],
    attempts: u32,
    response: &Response,
    now: Timestamp,
    jitter: f64,
) -> Outcome {
    let retry_after = match response {
        Response::Status {
            code: 200..=299, ..
        } => return Outcome::Delivered,
        Response::Status { code: 410, .. } => return Outcome::DisableHook,
        Response::Status {
            code: 429 | 503,
            retry_after,
        } => *retry_after,
        _ => None,
    };
    let Some(scheduled) = usize::try_from(attempts)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| schedule.get(i))
    else {
        return Outcome::Dead;
    };
    let jittered = scheduled.mul_f64(1.0 + JITTER * jitter.clamp(-1.0, 1.0));
    let delay = match retry_after {
        // Honoured within [scheduled, 2 × scheduled].
        Some(ra) => ra.clamp(*scheduled, *scheduled * 2),
        None => jittered,
    };
    Outcome::RetryAt(now.plus(delay))
}

/// Parses `Retry-After`: delay-seconds, or an HTTP date (RFC 9110), as the delay from
/// `now` (a date in the past is no delay). Anything else is absent.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(Timestamp::from_system(at).since(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }
    const NOW: Timestamp = Timestamp(1_000_000_000);

    fn status(code: u16) -> Response {
        Response::Status {
            code,
            retry_after: None,
        }
    }

    #[test]
    fn success_is_any_2xx() {
        for code in [200, 201, 204, 299] {
            assert_eq!(
                decide(&[s(5)], 1, &status(code), NOW, 0.0),
                Outcome::Delivered
            );
        }
    }

    #[test]
    fn redirects_and_errors_are_failures() {
        for r in [
            status(301),
            status(302),
            status(500),
            status(404),
            Response::Error,
        ] {
            assert_eq!(
                decide(&[s(5)], 1, &r, NOW, 0.0),
                Outcome::RetryAt(NOW.plus(s(5)))
            );
        }
    }

    #[test]
    fn schedule_then_dead() {
        let sched = [s(5), s(30)];
        assert_eq!(
            decide(&sched, 2, &status(500), NOW, 0.0),
            Outcome::RetryAt(NOW.plus(s(30)))
        );
        assert_eq!(decide(&sched, 3, &status(500), NOW, 0.0), Outcome::Dead);
        assert_eq!(decide(&[], 1, &status(500), NOW, 0.0), Outcome::Dead);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let sched = [s(100)];
        assert_eq!(
            decide(&sched, 1, &status(500), NOW, 1.0),
            Outcome::RetryAt(NOW.plus(s(120)))
        );
        assert_eq!(
            decide(&sched, 1, &status(500), NOW, -1.0),
            Outcome::RetryAt(NOW.plus(s(80)))
        );
        // Out-of-range draws are clamped.
        assert_eq!(
            decide(&sched, 1, &status(500), NOW, 7.0),
            Outcome::RetryAt(NOW.plus(s(120)))
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        // NOW is 1970-01-01T00:16:40Z.
        assert_eq!(parse_retry_after(" 120 ", NOW), Some(s(120)));
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:18:40 GMT", NOW),
            Some(s(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", NOW),
            Some(s(0))
        );
        assert_eq!(parse_retry_after("soon", NOW), None);
    }

    #[test]
    fn retry_after_is_bounded_by_schedule() {
        let sched = [s(10)];
        let ra = |secs| Response::Status {
            code: 429,
            retry_after: Some(s(secs)),
        };
        assert_eq!(
            decide(&sched, 1, &ra(15), NOW, 1.0),
            Outcome::RetryAt(NOW.plus(s(15)))
        );
        assert_eq!(
            decide(&sched, 1, &ra(1), NOW, 1.0),
            Outcome::RetryAt(NOW.plus(s(10)))
        );
        assert_eq!(
            decide(&sched, 1, &ra(999), NOW, 1.0),
            Outcome::RetryAt(NOW.plus(s(20)))
        );
        let unavailable = Response::Status {
            code: 503,
            retry_after: Some(s(12)),
        };
        assert_eq!(
            decide(&sched, 1, &unavailable, NOW, 0.0),
            Outcome::RetryAt(NOW.plus(s(12)))
        );
        // Retry-After on other statuses is ignored.
        let other = Response::Status {
            code: 500,
            retry_after: Some(s(19)),
        };
        assert_eq!(
            decide(&sched, 1, &other, NOW, 0.0),
            Outcome::RetryAt(NOW.plus(s(10)))
        );
    }

    #[test]
    fn gone_disables() {
        assert_eq!(
            decide(&[s(5)], 1, &status(410), NOW, 0.0),
            Outcome::DisableHook
        );
    }
}
