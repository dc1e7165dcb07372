//! Bounded retries with exponential backoff and jitter, for operations whose
//! error [`is_transient`](crate::Error::is_transient): connecting (a server
//! restarting refuses connections for a few seconds), and whole attempts
//! that hit a deadlock or serialization failure.
//!
//! Only transient errors are retried; every other error, and the last
//! transient one, is returned as it is (the root cause kept). Each retry is
//! logged at `warn` with the error (which names the place), the attempt and
//! the delay; `what` is logged at `debug`.

use std::future::Future;
use std::time::Duration;

use crate::Result;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further retry.
    pub initial: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// For connecting: 4 attempts, 250 ms, 500 ms, 1 s apart (±25 %),
    /// under 2.5 s of waiting in total.
    pub const CONNECT: RetryPolicy = RetryPolicy {
        attempts: 4,
        initial: Duration::from_millis(250),
        max_delay: Duration::from_secs(1),
    };

    /// No retries.
    pub const NONE: RetryPolicy = RetryPolicy {
        attempts: 1,
        initial: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The delay before retry `n` (1-based), without jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }

    /// The most time spent waiting between attempts (with full jitter).
    pub fn max_total_wait(&self) -> Duration {
        (1..self.attempts)
            .map(|n| jittered(self.delay(n), u64::MAX))
            .sum()
    }
}

/// `d` scaled by a factor in [0.75, 1.25] chosen by `r`.
fn jittered(d: Duration, r: u64) -> Duration {
    let permille = 750 + (r % 501);
    d.saturating_mul(permille as u32) / 1000
}

/// A cheap random number for jitter (no RNG dependency): the clock's
/// nanoseconds mixed with a per-process counter.
fn random() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x = t ^ N.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

/// Run `f` until it succeeds, fails with a non-transient error, or
/// `policy.attempts` are used up; `what` names the operation in the log
/// (e.g. `connect to postgres://app@db/sales`, never with a password).
pub async fn with_retries<F, Fut, T>(what: &str, policy: RetryPolicy, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut n = 1;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() && n < policy.attempts => {
                let delay = jittered(policy.delay(n), random());
                tracing::debug!(op = what, attempt = n, "retrying");
                tracing::warn!(
                    "{e} (attempt {n} of {}; retrying in {} ms)",
                    policy.attempts,
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use crate::error::Cause;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let calls = AtomicU32::new(0);
        let v = with_retries("op", fast(5), || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(Error::source("postgres", "refused").with_cause(Cause::Transient))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn gives_up_after_the_bound_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let e = with_retries("op", fast(3), || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(
                Error::source("mysql", format!("deadlock {n}")).with_cause(Cause::Transient),
            )
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(e.to_string(), "source mysql: deadlock 2");
        assert!(e.is_transient());
    }

    #[tokio::test]
    async fn other_errors_are_not_retried() {
        for cause in [None, Some(Cause::Timeout), Some(Cause::Login)] {
            let calls = AtomicU32::new(0);
            let e = with_retries("op", fast(5), || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(Error::source("sqlite", "bad").with_cause(cause))
            })
            .await
            .unwrap_err();
            assert_eq!(calls.load(Ordering::SeqCst), 1, "{cause:?}");
            assert_eq!(e.cause(), cause);
        }
    }

    #[test]
    fn backoff_doubles_is_capped_and_jitter_stays_in_range() {
        let p = RetryPolicy::CONNECT;
        assert_eq!(p.delay(1), Duration::from_millis(250));
        assert_eq!(p.delay(2), Duration::from_millis(500));
        assert_eq!(p.delay(3), Duration::from_secs(1));
        assert_eq!(p.delay(40), Duration::from_secs(1));
        assert!(p.max_total_wait() <= Duration::from_millis(2200));
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(1000), random());
            assert!((750..=1250).contains(&d.as_millis()), "{d:?}");
        }
        assert_eq!(RetryPolicy::NONE.max_total_wait(), Duration::ZERO);
    }
}
