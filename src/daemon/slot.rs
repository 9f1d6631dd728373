//! Latest frame wins: a one-frame mailbox between a camera and its classifier. A frame that
//! arrives while the previous one is still waiting replaces it (and is counted as skipped), so
//! inference never works through a backlog and memory never grows with a fast camera.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::source::Frame;

#[derive(Default)]
struct Inner {
    frame: Option<Frame>,
    /// Frames replaced since the last one taken.
    skipped_since_take: u64,
    closed: bool,
}

#[derive(Default)]
pub struct LatestFrame {
    inner: Mutex<Inner>,
    ready: Condvar,
    /// Possibly shared with other slots, so a daemon can total them across camera restarts.
    skipped: Arc<AtomicU64>,
}

/// What [`LatestFrame::take`] found.
#[derive(Debug)]
pub enum Taken {
    /// The newest frame, and how many older ones it replaced since the previous take.
    Frame(Frame, u64),
    /// Nothing arrived within the timeout.
    Empty,
    /// The slot was closed (shutdown).
    Closed,
}

impl LatestFrame {
    /// A slot that counts skipped frames into `skipped`.
    pub fn counting_into(skipped: Arc<AtomicU64>) -> LatestFrame {
        LatestFrame { skipped, ..LatestFrame::default() }
    }

    /// Offers a frame, replacing any frame not yet taken.
    pub fn put(&self, frame: Frame) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.frame.replace(frame).is_some() {
            inner.skipped_since_take += 1;
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
    }

    /// Waits up to `timeout` for a frame.
    pub fn take(&self, timeout: Duration) -> Taken {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (mut inner, _) = self
            .ready
            .wait_timeout_while(inner, timeout, |i| i.frame.is_none() && !i.closed)
            .unwrap_or_else(|e| e.into_inner());
        if inner.closed {
            return Taken::Closed;
        }
        let skipped = std::mem::take(&mut inner.skipped_since_take);
        inner.frame.take().map_or(Taken::Empty, |frame| Taken::Frame(frame, skipped))
    }

    /// Frames replaced before they were classified (on the counter this slot counts into).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Wakes every waiter with [`Taken::Closed`].
    pub fn close(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Pixels;
    use std::time::{Instant, SystemTime};

    fn frame(seq: u64) -> Frame {
        Frame { origin: "test".into(), seq, time: SystemTime::now(), pixels: Pixels::Encoded(vec![]) }
    }

    #[test]
    fn newer_frames_replace_older_ones_and_are_counted() {
        let slot = LatestFrame::default();
        for seq in 1..=5 {
            slot.put(frame(seq));
        }
        match slot.take(Duration::ZERO) {
            Taken::Frame(f, skipped) => assert_eq!((f.seq, skipped), (5, 4)),
            other => panic!("{other:?}"),
        }
        slot.put(frame(6));
        assert!(matches!(slot.take(Duration::ZERO), Taken::Frame(_, 0)), "the count restarts at each take");
        assert_eq!(slot.skipped(), 4);
        assert!(matches!(slot.take(Duration::from_millis(10)), Taken::Empty));
    }

    #[test]
    fn close_wakes_a_waiting_taker() {
        let slot = Arc::new(LatestFrame::default());
        let waiter = {
            let slot = slot.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (matches!(slot.take(Duration::from_secs(30)), Taken::Closed), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        slot.close();
        let (closed, waited) = waiter.join().unwrap();
        assert!(closed);
        assert!(waited < Duration::from_secs(10));
    }
}
