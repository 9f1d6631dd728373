//! A camera's frame saver: the thread that writes capture-command frames into the training data
//! (`DATA/<tag>/`, through [`Dataset::add_frame`]) and review frames into `DATA/.review/<camera>/`.
//!
//! Why a thread of its own: a write with fsync takes tens of milliseconds on an SD card, PNG-
//! encoding a raw frame more, and neither may delay classification. The worker offers each
//! classified frame through its [`FrameTap`] and never waits: a capture asks for one frame at a
//! time (so every saved frame is a different frame, taken after the previous one was written, and
//! at most one waits in memory), and a review frame that finds the saver busy is dropped. Write
//! errors (a full disk) are logged and reported, never fatal: the camera keeps classifying.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use super::capture::{CaptureJob, State};
use super::command::CaptureRequest;
use super::review::{ReviewFolder, ReviewGate};
use crate::config::ReviewConfig;
use crate::dataset::Dataset;
use crate::error::Result;
use crate::sink::Sink;
use crate::source::Frame;

/// How often a running capture reports progress (and always at its start and end).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

enum Saved {
    Capture(Frame),
    Review { frame: Frame, best: String, probability: f32 },
}

/// The worker's end: offers frames without waiting.
pub struct FrameTap {
    frames: Sender<Saved>,
    /// Set by the saver when a capture wants the next frame; taken by the worker that sends it.
    wanted: Arc<AtomicBool>,
    review: Option<ReviewGate>,
}

impl FrameTap {
    /// Offers a classified frame: to a capture that asked for one, else to the review folder when
    /// `best` (the best tag and its probability; `None` when classification failed) is unsure
    /// enough and review is due.
    pub fn offer(&mut self, frame: Frame, best: Option<(&str, f32)>) {
        if self.wanted.swap(false, Ordering::AcqRel) {
            if self.frames.try_send(Saved::Capture(frame)).is_err() {
                self.wanted.store(true, Ordering::Release); // busy with a review frame: the next one
            }
            return;
        }
        let (Some(gate), Some((best, probability))) = (&mut self.review, best) else { return };
        if gate.wants(probability) && self.frames.try_send(Saved::Review { frame, best: best.to_string(), probability }).is_ok() {
            gate.taken();
        }
    }
}

/// The daemon's end: sends capture requests, and joins the thread when the camera stops.
pub struct SaverHandle {
    requests: Sender<CaptureRequest>,
    thread: JoinHandle<()>,
}

impl SaverHandle {
    pub fn capture(&self, request: CaptureRequest) {
        let _ = self.requests.send(request);
    }

    /// Waits for the write in progress, if any (call after the worker, and so its tap, is gone).
    pub fn join(self) {
        drop(self.requests);
        let _ = self.thread.join();
    }
}

/// Starts a camera's saver thread.
pub fn start(camera: &str, data_dir: PathBuf, review: Option<(&ReviewConfig, PathBuf)>, sinks: Arc<Vec<Box<dyn Sink>>>) -> Result<(SaverHandle, FrameTap)> {
    let (frames_tx, frames) = crossbeam_channel::bounded(2);
    let (requests, requests_rx) = crossbeam_channel::unbounded();
    let wanted = Arc::new(AtomicBool::new(false));
    let saver = Saver {
        camera: camera.to_string(),
        data_dir,
        review: review.as_ref().map(|(config, dir)| ReviewFolder::new(dir.clone(), config.max_images)),
        review_failing: false,
        sinks,
        frames,
        requests: requests_rx,
        wanted: wanted.clone(),
    };
    let thread = super::spawn(format!("save-{camera}"), move || saver.run())?;
    let tap = FrameTap { frames: frames_tx, wanted, review: review.map(|(config, _)| ReviewGate::new(config)) };
    Ok((SaverHandle { requests, thread }, tap))
}

struct Saver {
    camera: String,
    data_dir: PathBuf,
    review: Option<ReviewFolder>,
    /// Review writes are failing: logged once until one works again.
    review_failing: bool,
    sinks: Arc<Vec<Box<dyn Sink>>>,
    frames: Receiver<Saved>,
    requests: Receiver<CaptureRequest>,
    wanted: Arc<AtomicBool>,
}

/// A capture in progress.
struct Running {
    job: CaptureJob,
    data: Dataset,
    interval: Duration,
    /// When to ask for the next frame (`interval_s` after the previous one).
    resume: Option<Instant>,
    reported: Instant,
}

impl Saver {
    fn run(mut self) {
        let mut current: Option<Running> = None;
        loop {
            let wait = current.as_ref().and_then(|c| c.resume).map_or(Duration::from_secs(3600), |t| t.saturating_duration_since(Instant::now()));
            crossbeam_channel::select! {
                recv(self.requests) -> request => match request {
                    Ok(request) => current = self.begin(current.take(), request),
                    Err(_) => break,
                },
                recv(self.frames) -> saved => match saved {
                    Ok(Saved::Capture(frame)) => self.capture(&mut current, &frame),
                    Ok(Saved::Review { frame, best, probability }) => self.review(&frame, &best, probability),
                    Err(_) => break, // the worker is gone: the camera stopped
                },
                default(wait) => {}
            }
            if let Some(c) = current.as_mut().filter(|c| c.resume.is_some_and(|t| Instant::now() >= t)) {
                c.resume = None;
                self.wanted.store(true, Ordering::Release);
            }
        }
        if let Some(mut c) = current.filter(|c| c.job.is_running()) {
            c.job.end(State::Stopped);
            log::warn!("camera {}: capture '{}' stopped with the camera after {} of {} frame(s)", self.camera, c.job.tag, c.job.saved, c.job.requested);
            self.report(&c.job);
        }
    }

    /// Starts a capture, cancelling one still running.
    fn begin(&self, previous: Option<Running>, request: CaptureRequest) -> Option<Running> {
        if let Some(mut old) = previous.filter(|p| p.job.is_running()) {
            old.job.end(State::Cancelled);
            log::info!("camera {}: capture '{}' cancelled by a new one after {} frame(s)", self.camera, old.job.tag, old.job.saved);
            self.report(&old.job);
        }
        let mut job = CaptureJob::new(&request.tag, request.count);
        let data = match Dataset::open(&self.data_dir) {
            Ok(data) => data,
            Err(e) => {
                log::error!("camera {}: cannot capture '{}': {e}", self.camera, request.tag);
                job.errors = 1;
                job.last_error = Some(e.to_string());
                job.state = State::Failed;
                self.report(&job);
                return None;
            }
        };
        log::info!("camera {}: capturing {} frame(s) as '{}' into {}", self.camera, request.count, request.tag, self.data_dir.join(&request.tag).display());
        self.report(&job);
        self.wanted.store(true, Ordering::Release);
        Some(Running { job, data, interval: request.interval, resume: None, reported: Instant::now() })
    }

    fn capture(&self, current: &mut Option<Running>, frame: &Frame) {
        let Some(c) = current.as_mut().filter(|c| c.job.is_running()) else { return };
        let stored = c.data.add_frame(&c.job.tag, frame);
        if let Err(e) = &stored {
            log::error!("camera {}: capture '{}': {e}", self.camera, c.job.tag);
        }
        c.job.record(&stored);
        if c.job.is_running() {
            if c.interval.is_zero() {
                self.wanted.store(true, Ordering::Release);
            } else {
                c.resume = Some(Instant::now() + c.interval);
            }
            if c.reported.elapsed() >= PROGRESS_EVERY {
                c.reported = Instant::now();
                self.report(&c.job);
            }
            return;
        }
        let j = &c.job;
        log::info!("camera {}: capture '{}' {}: {} of {} saved, {} repeated, {} error(s)", self.camera, j.tag, j.state.name(), j.saved, j.requested, j.duplicates, j.errors);
        self.report(j);
    }

    fn review(&mut self, frame: &Frame, best: &str, probability: f32) {
        let Some(folder) = &self.review else { return };
        match folder.save(frame, best, probability) {
            Ok(_) if self.review_failing => {
                log::info!("camera {}: review frames are saved again in {}", self.camera, folder.dir().display());
                self.review_failing = false;
            }
            Ok(_) => {}
            Err(e) if !self.review_failing => {
                log::error!("camera {}: cannot keep a review frame: {e}; classification goes on", self.camera);
                self.review_failing = true;
            }
            Err(_) => {}
        }
    }

    fn report(&self, job: &CaptureJob) {
        let report = job.report();
        for sink in self.sinks.iter() {
            if let Err(e) = sink.capture_result(&self.camera, &report) {
                log::warn!("camera {}: cannot report the capture: {e}", self.camera);
            }
        }
    }
}
