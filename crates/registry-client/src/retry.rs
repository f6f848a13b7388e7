//! Which failures are retried and how long to wait (spec §13.4 "Retries"): up to
//! [`RetryPolicy::max_retries`] retries per call; transport errors and timeouts wait
//! `network_delay`, HTTP 500/502/503/504 or `UNAVAILABLE` wait `server_delay`, HTTP 429 or
//! `TOOMANYREQUESTS` wait the `Retry-After` header (capped) or `throttle_delay`. `UNKNOWN` and
//! the other 4xx are not retried.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::error::Error;

/// How a call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (default 2).
    pub max_retries: u32,
    /// Wait after a transport error or a timeout (default 1 s).
    pub network_delay: Duration,
    /// Wait after HTTP 500, 502, 503, 504 or `UNAVAILABLE` (default 5 s).
    pub server_delay: Duration,
    /// Wait after HTTP 429 or `TOOMANYREQUESTS` without a `Retry-After` header (default 2 s).
    pub throttle_delay: Duration,
    /// Cap for a `Retry-After` header (default 30 s).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 2,
            network_delay: Duration::from_secs(1),
            server_delay: Duration::from_secs(5),
            throttle_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Why a failed attempt may be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RetryClass {
    /// Not retried.
    Never,
    /// Transport error or timeout.
    Network,
    /// 500, 502, 503, 504 or `UNAVAILABLE`.
    Server,
    /// 429 or `TOOMANYREQUESTS`, with the `Retry-After` delay when the server sent one.
    Throttle(Option<Duration>),
}

/// A failed attempt: the error it ends with if it is not retried, and how to retry it.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    pub(crate) retry: RetryClass,
    /// The request got no answer (connection, TLS, timeout): over https, an insecure ping
    /// falls back to http on such failures.
    pub(crate) transport: bool,
}

impl Failure {
    /// A failure that is not retried.
    pub(crate) fn fatal(error: Error) -> Failure {
        Failure {
            error,
            retry: RetryClass::Never,
            transport: false,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::fatal(error)
    }
}

/// The retry class of an error answer, from its status and its (upper-case) envelope code.
pub(crate) fn classify_status(status: u16, code: &str) -> RetryClass {
    match code {
        "TOOMANYREQUESTS" => return RetryClass::Throttle(None),
        "UNAVAILABLE" => return RetryClass::Server,
        "UNKNOWN" => return RetryClass::Never,
        _ => {}
    }
    match status {
        429 => RetryClass::Throttle(None),
        500 | 502 | 503 | 504 => RetryClass::Server,
        _ => RetryClass::Never,
    }
}

/// How long to wait before retrying, or `None` when the failure is not retried.
pub(crate) fn delay_for(class: RetryClass, policy: &RetryPolicy) -> Option<Duration> {
    match class {
        RetryClass::Never => None,
        RetryClass::Network => Some(policy.network_delay),
        RetryClass::Server => Some(policy.server_delay),
        RetryClass::Throttle(Some(after)) => Some(after.min(policy.max_retry_after)),
        RetryClass::Throttle(None) => Some(policy.throttle_delay),
    }
}

/// A `Retry-After` value: delay seconds, or an HTTP date (a date in the past means now).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or_default())
}

/// Runs `attempt` until it succeeds, fails for good, or the retries run out.
pub(crate) async fn with_retries<T, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut retries: u32 = 0;
    loop {
        let failure = match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let delay = if retries < policy.max_retries {
            delay_for(failure.retry, policy)
        } else {
            None
        };
        let Some(delay) = delay else {
            return Err(failure.error);
        };
        retries += 1;
        tracing::debug!(error = %failure.error, ?delay, retry = retries, "retrying registry call");
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT")
            .unwrap_or(SystemTime::UNIX_EPOCH);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn delays_follow_the_policy() {
        let policy = RetryPolicy::default();
        assert_eq!(delay_for(RetryClass::Never, &policy), None);
        assert_eq!(
            delay_for(RetryClass::Network, &policy),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            delay_for(RetryClass::Server, &policy),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            delay_for(RetryClass::Throttle(None), &policy),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            delay_for(RetryClass::Throttle(Some(Duration::from_secs(3))), &policy),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            delay_for(
                RetryClass::Throttle(Some(Duration::from_secs(3600))),
                &policy
            ),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(429, ""), RetryClass::Throttle(None));
        assert_eq!(
            classify_status(400, "TOOMANYREQUESTS"),
            RetryClass::Throttle(None)
        );
        assert_eq!(classify_status(503, ""), RetryClass::Server);
        assert_eq!(classify_status(400, "UNAVAILABLE"), RetryClass::Server);
        assert_eq!(classify_status(500, "UNKNOWN"), RetryClass::Never);
        assert_eq!(classify_status(404, ""), RetryClass::Never);
        assert_eq!(classify_status(501, ""), RetryClass::Never);
    }
}
