//! Capped exponential backoff with jitter between attempts to reach something that is away: the
//! MQTT broker (rumqttc retries as fast as it is polled; without this a device whose broker is
//! down would spin, and a fleet whose broker restarts would reconnect in lockstep) and a camera
//! being reopened.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// The ceiling of the next delay; doubles after each failure.
    ceiling: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max, ceiling: min }
    }

    /// The delay before the next attempt: uniform in [ceiling/2, ceiling]. The ceiling starts at
    /// `min` and doubles up to `max`, so even the first retries of many devices spread out.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (self.ceiling * 2).min(self.max);
        let half = ceiling / 2;
        half + half.mul_f64(random_unit())
    }

    /// After a successful connection the next failure starts again at `min`.
    pub fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

/// A number in [0, 1) from the std hasher's per-instance random keys: jitter needs no better.
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_restart_after_reset() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let mut backoff = Backoff::new(min, max);
        let mut ceilings = vec![];
        for _ in 0..8 {
            let before = backoff.ceiling;
            let delay = backoff.next_delay();
            assert!(delay >= before / 2 && delay <= before, "{delay:?} outside [{:?}, {before:?}]", before / 2);
            ceilings.push(before.as_millis());
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
        backoff.reset();
        assert!(backoff.next_delay() <= min);
    }

    #[test]
    fn delays_are_jittered() {
        let mut backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let delays: std::collections::HashSet<_> = (0..20).map(|_| backoff.next_delay()).collect();
        assert!(delays.len() > 1, "20 identical delays: no jitter");
    }
}
