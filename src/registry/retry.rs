//! When to try a request again, and how long to wait: exponential backoff on transient failures
//! (5xx, 429, reset or timed-out connections). A refused connection is not transient: nothing listens.

use std::io;
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { attempts: 5, first_delay: Duration::from_millis(200), max_delay: Duration::from_secs(5) }
    }
}

impl Backoff {
    /// The wait before try number `attempt + 1` (attempt counts from 0).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Sleeps before the next try; false when no tries are left.
    pub fn wait(&self, attempt: u32, why: &dyn std::fmt::Display) -> bool {
        self.wait_at_least(attempt, None, why)
    }

    /// Like [`Backoff::wait`], but honours a server's `Retry-After` (capped at 30 s).
    pub fn wait_at_least(&self, attempt: u32, server: Option<Duration>, why: &dyn std::fmt::Display) -> bool {
        if attempt + 1 >= self.attempts {
            return false;
        }
        let d =
            server.map_or(self.delay(attempt), |s| s.min(Duration::from_secs(30)).max(self.delay(attempt)));
        tracing::info!("{why}; retrying in {} ms", d.as_millis());
        std::thread::sleep(d);
        true
    }
}

pub fn is_transient_io(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut | Interrupted
    ) || e.get_ref().and_then(|inner| inner.downcast_ref::<ureq::Error>()).is_some_and(is_transient)
}

pub fn is_transient(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::Io(io) => is_transient_io(io),
        ureq::Error::Timeout(_) => true,
        // The peer closed or garbled a response mid-way.
        ureq::Error::Protocol(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(b.delay(0), Duration::from_millis(100));
        assert_eq!(b.delay(2), Duration::from_millis(400));
        assert_eq!(b.delay(9), Duration::from_secs(1));
        assert!(is_transient_io(&io::Error::from(io::ErrorKind::ConnectionReset)));
        assert!(!is_transient_io(&io::Error::from(io::ErrorKind::ConnectionRefused)));
    }
}
