//! A bound on how many diagnostic lines one kind of client-caused event may write.
//!
//! Security role: any client can make the gateway refuse a request, so a log line per refusal
//! would let it fill the operator's log (and hide what matters in it). A [`Throttle`] lets a
//! burst of lines through per window and counts the rest; the next line that gets through says
//! how many were held back, so nothing is lost from the count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `burst` lines per `window`; the rest are counted.
#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    burst: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window_start: Option<Instant>,
    emitted: u32,
    suppressed: u64,
}

impl Throttle {
    /// A throttle letting `burst` lines through per `window`.
    pub const fn new(window: Duration, burst: u32) -> Self {
        Self {
            window,
            burst,
            state: Mutex::new(State {
                window_start: None,
                emitted: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether a line may be written at `now`: `Some(n)` with the number of lines held back
    /// since the last one written, or `None` when this one is held back (and counted).
    pub fn allow(&self, now: Instant) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if fresh {
            s.window_start = Some(now);
            s.emitted = 0;
        }
        if s.emitted < self.burst {
            s.emitted += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed = s.suppressed.saturating_add(1);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted_and_reported_with_the_next_window() {
        let t = Throttle::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0), Some(0));
        assert_eq!(t.allow(t0 + Duration::from_secs(1)), Some(0));
        for _ in 0..1000 {
            assert_eq!(t.allow(t0 + Duration::from_secs(2)), None);
        }
        // A new window: the first line through reports what was held back.
        assert_eq!(t.allow(t0 + Duration::from_secs(60)), Some(1000));
        assert_eq!(t.allow(t0 + Duration::from_secs(61)), Some(0));
    }
}
