//! One capture command's bookkeeping and its report, kept apart from the thread that writes the
//! files ([`super::saver`]) so the rules are plain code: a capture ends when it saved `count`
//! distinct frames, after [`MAX_ERRORS`] write errors (a full disk will not heal by itself), or
//! when the source keeps repeating itself (a looping replay of fewer images than asked for).
//!
//! The report, retained on `{prefix}/{device}/{camera}/capture/result`:
//! `{"tag","requested","saved","duplicates","errors","last_error","state","time"}`, `state` one of
//! `running`, `done`, `failed` (write errors), `incomplete` (too many repeated frames),
//! `cancelled` (a newer command replaced it), `stopped` (the camera stopped), `refused` (the command
//! was invalid; `last_error` says why).

use std::time::SystemTime;

use crate::dataset::Added;
use crate::error::Result;
use crate::prediction::utc;

/// Write errors after which a capture gives up.
pub const MAX_ERRORS: u32 = 3;
/// Repeated frames (same bytes as one already under the tag) tolerated beyond the count asked.
pub const SPARE_DUPLICATES: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Done,
    Failed,
    Incomplete,
    Cancelled,
    Stopped,
    Refused,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
            State::Incomplete => "incomplete",
            State::Cancelled => "cancelled",
            State::Stopped => "stopped",
            State::Refused => "refused",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CaptureJob {
    pub tag: String,
    pub requested: u32,
    pub saved: u32,
    pub duplicates: u32,
    pub errors: u32,
    pub last_error: Option<String>,
    pub state: State,
}

impl CaptureJob {
    pub fn new(tag: &str, requested: u32) -> CaptureJob {
        CaptureJob { tag: tag.to_string(), requested, saved: 0, duplicates: 0, errors: 0, last_error: None, state: State::Running }
    }

    /// A command that was not carried out.
    pub fn refused(tag: &str, why: String) -> CaptureJob {
        CaptureJob { errors: 1, last_error: Some(why), state: State::Refused, ..CaptureJob::new(tag, 0) }
    }

    /// Counts what storing one frame did and moves to a final state when the capture is over.
    pub fn record(&mut self, stored: &Result<Added>) {
        match stored {
            Ok(Added::Stored(_)) => self.saved += 1,
            Ok(Added::Duplicate(_)) => {
                self.duplicates += 1;
                self.last_error = Some(format!("{} repeated frame(s): the source sends the same picture again", self.duplicates));
            }
            Err(e) => {
                self.errors += 1;
                self.last_error = Some(e.to_string());
            }
        }
        if self.saved >= self.requested {
            self.state = State::Done;
        } else if self.errors >= MAX_ERRORS {
            self.state = State::Failed;
        } else if self.duplicates > self.requested + SPARE_DUPLICATES {
            self.state = State::Incomplete;
        }
    }

    pub fn is_running(&self) -> bool {
        self.state == State::Running
    }

    /// Ends a running capture early (`Cancelled` or `Stopped`).
    pub fn end(&mut self, state: State) {
        if self.is_running() {
            self.state = state;
        }
    }

    pub fn report(&self) -> Vec<u8> {
        let doc = serde_json::json!({
            "tag": self.tag,
            "requested": self.requested,
            "saved": self.saved,
            "duplicates": self.duplicates,
            "errors": self.errors,
            "last_error": self.last_error,
            "state": self.state.name(),
            "time": utc(SystemTime::now()),
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::path::PathBuf;

    fn stored() -> Result<Added> {
        Ok(Added::Stored(PathBuf::from("x.jpg")))
    }

    #[test]
    fn a_capture_is_done_after_count_distinct_frames() {
        let mut job = CaptureJob::new("cat", 2);
        job.record(&stored());
        job.record(&Ok(Added::Duplicate(PathBuf::from("x.jpg"))));
        assert!(job.is_running());
        job.record(&stored());
        assert_eq!((job.state, job.saved, job.duplicates), (State::Done, 2, 1));
        let report: serde_json::Value = serde_json::from_slice(&job.report()).unwrap();
        assert_eq!(report["state"], "done");
        assert_eq!(report["requested"], 2);
    }

    #[test]
    fn write_errors_and_endless_repeats_end_a_capture() {
        let mut job = CaptureJob::new("cat", 5);
        for _ in 0..MAX_ERRORS {
            job.record(&Err(Error::io("/data/cat/x.jpg", std::io::Error::other("No space left on device"))));
        }
        assert_eq!(job.state, State::Failed);
        assert!(job.last_error.as_deref().unwrap().contains("No space left"), "{:?}", job.last_error);

        let mut job = CaptureJob::new("cat", 1);
        while job.is_running() {
            job.record(&Ok(Added::Duplicate(PathBuf::from("x.jpg"))));
        }
        assert_eq!((job.state, job.duplicates), (State::Incomplete, 1 + SPARE_DUPLICATES + 1));
        job.end(State::Cancelled);
        assert_eq!(job.state, State::Incomplete, "a finished capture keeps its state");
    }
}
