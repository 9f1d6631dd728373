//! Pacing replayed and generated frames to a frame rate, as a camera would deliver them.

use std::time::{Duration, Instant};

pub struct Pacer {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    /// `None`, zero or a non-finite rate: no pacing.
    pub fn new(fps: Option<f32>) -> Pacer {
        let interval = fps.filter(|f| f.is_finite() && *f > 0.0).map(|f| Duration::from_secs_f32(1.0 / f));
        Pacer { interval, next: None }
    }

    /// Sleeps until the next frame is due. Deadlines advance by whole intervals, so the rate
    /// holds on average; a caller that fell far behind restarts from now instead of bursting.
    pub fn wait(&mut self) {
        let Some(interval) = self.interval else { return };
        let now = Instant::now();
        let due = match self.next {
            Some(due) if due + interval > now => due,
            _ => now,
        };
        if due > now {
            std::thread::sleep(due - now);
        }
        self.next = Some(due + interval);
    }
}
