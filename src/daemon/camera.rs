//! A camera's capture thread: opens the source, feeds the latest-frame slot, reports the camera
//! online or offline, and reopens a failed source with capped exponential backoff. It never
//! gives up (a camera can be plugged back in), except a finished non-looping file replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::slot::LatestFrame;
use crate::backoff::Backoff;
use crate::error::Error;
use crate::sink::Sink;
use crate::source::{self, SourceOptions, SourceSpec};

/// Backoff between reopen attempts: 1 s doubling to 4 s (Frigate retries every 10 s). A camera
/// that comes back is classifying again within 5 s however long it was away (an IP camera's
/// reboot takes 30-60 s: with a 30 s cap it was picked up as much as 30 s late), and one attempt
/// every 2-4 s (a refused connection, a failed open, an ffmpeg that exits) hammers nothing.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(4);

/// The delays between a camera's reopen attempts. Each is jittered down by up to half, so the
/// cameras of a site that lost power together do not all reopen in the same instant.
fn reopen_backoff() -> Backoff {
    Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}

/// Read errors in a row after which a source is considered broken and reopened.
const ERRORS_BEFORE_REOPEN: u32 = 5;

pub struct Capture {
    pub name: String,
    pub spec: SourceSpec,
    pub options: SourceOptions,
    pub slot: Arc<LatestFrame>,
    pub sinks: Arc<Vec<Box<dyn Sink>>>,
    pub shutdown: Arc<AtomicBool>,
}

impl Capture {
    fn report(&self, online: bool) {
        for sink in self.sinks.iter() {
            if let Err(e) = sink.camera_status(&self.name, online) {
                log::warn!("camera {}: cannot report status: {e}", self.name);
            }
        }
        if online {
            log::info!("camera {} online", self.name);
        } else {
            log::warn!("camera {} offline", self.name);
        }
    }

    /// Sleeps up to `d`, waking early on shutdown.
    fn pause(&self, d: Duration) {
        let step = Duration::from_millis(50);
        let mut left = d;
        while !left.is_zero() && !self.shutdown.load(Ordering::Relaxed) {
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
    }

    pub fn run(self) {
        let mut backoff = reopen_backoff();
        let mut online = false;
        while !self.shutdown.load(Ordering::Relaxed) {
            match source::open(&self.spec, &self.options) {
                Ok(mut source) => {
                    let mut errors = 0;
                    while !self.shutdown.load(Ordering::Relaxed) {
                        match source.next_frame() {
                            Some(Ok(frame)) => {
                                errors = 0;
                                if !online {
                                    online = true;
                                    backoff.reset();
                                    self.report(true);
                                }
                                self.slot.put(frame);
                            }
                            Some(Err(e)) => {
                                errors += 1;
                                log::warn!("camera {}: {e}", self.name);
                                if errors >= ERRORS_BEFORE_REOPEN {
                                    break;
                                }
                            }
                            None => break,
                        }
                    }
                    if matches!(self.spec, SourceSpec::File { .. }) && !self.options.loop_files {
                        log::info!("camera {}: replay finished", self.name);
                        break;
                    }
                }
                // A source's own errors begin with where it is (without any password); others
                // (an unreadable folder of a replay) get `origin()` in front.
                Err(e @ Error::Source { .. }) => log::warn!("camera {}: cannot open {e}", self.name),
                Err(e) => log::warn!("camera {}: cannot open {}: {e}", self.name, self.spec.origin()),
            }
            if online {
                online = false;
                self.report(false);
            }
            self.pause(backoff.next_delay());
        }
        if online {
            self.report(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_away_for_long_is_retried_every_2_to_4_s() {
        let mut backoff = reopen_backoff();
        let delays: Vec<Duration> = (0..30).map(|_| backoff.next_delay()).collect();
        // At most 4 s: a camera back from an outage of any length classifies within 5 s.
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)), "{delays:?}");
        // At least 2 s once the cap is reached: a dead camera is not hammered.
        assert!(delays[2..].iter().all(|d| *d >= Duration::from_secs(2)), "{delays:?}");
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_MIN, "a camera that was online starts again at the minimum");
    }
}
