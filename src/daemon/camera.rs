//! A camera's capture thread: opens the source, feeds the latest-frame slot, reports the camera
//! online or offline, and reopens a failed source with capped exponential backoff. It never
//! gives up (a camera can be plugged back in), except a finished non-looping file replay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::slot::LatestFrame;
use crate::error::Error;
use crate::sink::Sink;
use crate::source::{self, SourceOptions, SourceSpec};

/// Backoff between reopen attempts: 1 s doubling to 4 s (Frigate retries every 10 s). A camera
/// that comes back is classifying again within 5 s however long it was away (an IP camera's
/// reboot takes 30-60 s: with a 30 s cap it was picked up as much as 30 s late), and one attempt
/// every 4 s (a refused connection, a failed open, an ffmpeg that exits) hammers nothing.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// Read errors in a row after which a source is considered broken and reopened.
const ERRORS_BEFORE_REOPEN: u32 = 5;

pub struct Capture {
    pub name: String,
    pub spec: SourceSpec,
    pub options: SourceOptions,
    pub slot: Arc<LatestFrame>,
    pub sinks: Arc<Vec<Box<dyn Sink>>>,
    pub shutdown: Arc<AtomicBool>,
    pub backoff_min: Duration,
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
        let mut backoff = self.backoff_min;
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
                                    backoff = self.backoff_min;
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
            self.pause(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        if online {
            self.report(false);
        }
    }
}
