//! A camera's classification thread: takes the latest frame, crops the region of interest,
//! classifies it with whatever model is current (hot-swappable), numbers it, smooths the camera
//! state and hands everything to the sinks. Then it offers the whole frame (not the crop) to the
//! camera's saver ([`FrameTap`]) for a capture command or review; a JPEG frame keeps its bytes
//! through decoding for that, so saving it costs no copy and no re-encoding here.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::saver::FrameTap;
use super::seq::SeqCounter;
use super::slot::{LatestFrame, Taken};
use super::smoothing::Smoother;
use crate::classifier::Classifier;
use crate::error::{Error, Result};
use crate::prediction::{utc, PredictionResponse};
use crate::sink::{Outcome, Sink};
use crate::source::{decode, Frame, Pixels};

/// The model every worker uses; replaced whole on reload, so a frame is always classified by one
/// consistent model and in-flight frames finish on the old one.
#[derive(Clone)]
pub struct CurrentModel(Arc<RwLock<Arc<Classifier>>>);

impl CurrentModel {
    pub fn new(classifier: Classifier) -> CurrentModel {
        CurrentModel(Arc::new(RwLock::new(Arc::new(classifier))))
    }

    pub fn get(&self) -> Arc<Classifier> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, classifier: Classifier) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(classifier);
    }
}

pub struct Worker {
    pub camera: String,
    pub interval: Duration,
    pub roi: Option<[u32; 4]>,
    /// Camera-specific threshold; `None`: the model's.
    pub threshold: Option<f32>,
    pub consecutive: u32,
    pub slot: Arc<LatestFrame>,
    pub model: CurrentModel,
    pub sinks: Arc<Vec<Box<dyn Sink>>>,
    pub seq: SeqCounter,
    /// Milliseconds since `started` at the last loop turn: the watchdog's evidence of progress.
    pub heartbeat: Arc<AtomicU64>,
    pub started: Instant,
    pub classified: Arc<AtomicU64>,
    pub shutdown: Arc<AtomicBool>,
    /// Where captured and review frames go.
    pub tap: FrameTap,
}

/// The retained state document: `{"state","tags","scores","iteration","time"}`; `state` is the best
/// tag of the state (or "none").
pub fn state_message(classifier: &Classifier, tags: &[usize], probabilities: &[f32], iteration: &str) -> Vec<u8> {
    let mut names: Vec<(&String, f32)> = tags.iter().map(|&i| (&classifier.labels[i], probabilities[i])).collect();
    names.sort_by(|a, b| b.1.total_cmp(&a.1));
    let scores: BTreeMap<&String, f32> = classifier.labels.iter().zip(probabilities.iter().copied()).collect();
    let doc = serde_json::json!({
        "state": names.first().map(|n| n.0.as_str()).unwrap_or("none"),
        "tags": names.iter().map(|n| n.0).collect::<Vec<_>>(),
        "scores": scores,
        "iteration": iteration,
        "time": utc(SystemTime::now()),
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

impl Worker {
    fn beat(&self) {
        self.heartbeat.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub fn run(mut self) {
        let mut model = self.model.get();
        let mut smoother = self.smoother(&model);
        let mut next_allowed = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            self.beat();
            let now = Instant::now();
            if now < next_allowed {
                std::thread::sleep((next_allowed - now).min(Duration::from_millis(100)));
                continue;
            }
            let (frame, skipped) = match self.slot.take(Duration::from_millis(200)) {
                Taken::Frame(frame, skipped) => (frame, skipped),
                Taken::Empty => continue,
                Taken::Closed => break,
            };
            next_allowed = Instant::now() + self.interval;
            let current = self.model.get();
            if !Arc::ptr_eq(&current, &model) {
                model = current;
                smoother = self.smoother(&model);
            }
            self.handle(&model, &mut smoother, frame, skipped);
        }
    }

    fn smoother(&self, model: &Classifier) -> Smoother {
        Smoother::new(self.consecutive, self.threshold.unwrap_or(model.threshold), model.kind)
    }

    /// Classifies a frame, then offers it to the saver with the best tag.
    fn handle(&mut self, model: &Classifier, smoother: &mut Smoother, frame: Frame, skipped: u64) {
        let Frame { origin, seq, time, pixels } = frame;
        // Decode without giving up the JPEG bytes: the saver stores them as they are.
        let (image, encoded) = match pixels {
            Pixels::Encoded(bytes) => match decode(&bytes, &origin) {
                Ok(image) => (image, Some(bytes)),
                Err(e) => {
                    log::warn!("camera {}: {e}", self.camera);
                    return;
                }
            },
            Pixels::Rgb(image) => (image, None),
        };
        let best = match self.classify(model, smoother, &image, &origin, time, skipped) {
            Ok(best) => Some(best),
            Err(e) => {
                log::warn!("camera {}: {e}", self.camera);
                None
            }
        };
        let pixels = encoded.map_or(Pixels::Rgb(image), Pixels::Encoded);
        let frame = Frame { origin, seq, time, pixels };
        if best.is_some() {
            for sink in self.sinks.iter() {
                sink.frame(&self.camera, &frame);
            }
        }
        self.tap.offer(frame, best.map(|(i, p)| (model.labels.get(i).map_or("", String::as_str), p)));
    }

    /// Classifies and publishes; returns the best tag's index and probability.
    fn classify(&mut self, model: &Classifier, smoother: &mut Smoother, full: &image::RgbImage, origin: &str, captured: SystemTime, skipped: u64) -> Result<(usize, f32)> {
        let cropped;
        let image = match self.roi {
            Some([x, y, w, h]) => {
                cropped = crop(full, x, y, w, h).ok_or_else(|| {
                    Error::config(format!("camera {}.roi", self.camera), format!("[{x}, {y}, {w}, {h}] lies outside the {}x{} frame", full.width(), full.height()), "fix the region of interest")
                })?;
                &cropped
            }
            None => full,
        };
        let classification = model.classify(image)?;
        let probabilities = &classification.probabilities;
        let iteration = model.iteration_id.clone();
        let mut response = PredictionResponse::new(&model.labels, probabilities, &iteration);
        response.camera = Some(self.camera.clone());
        response.seq = Some(self.seq.take()?);
        response.frame_time = Some(utc(captured));
        response.skipped = Some(skipped);
        response.latency_ms = Some(captured.elapsed().map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0));
        let threshold = self.threshold.unwrap_or(model.threshold);
        let detected: Vec<String> = smoother.result(probabilities).into_iter().map(|i| model.labels[i].clone()).collect();
        let outcome = Outcome { camera: Some(&self.camera), origin, response: &response, detected: &detected, threshold };
        for sink in self.sinks.iter() {
            sink.publish(&outcome).map_err(|e| Error::Inference(format!("publishing: {e}")))?;
        }
        self.classified.fetch_add(1, Ordering::Relaxed);
        if let Some(state) = smoother.push(probabilities) {
            let tags: Vec<usize> = state.iter().copied().collect();
            let message = state_message(model, &tags, probabilities, &iteration);
            for sink in self.sinks.iter() {
                if let Err(e) = sink.state(&self.camera, &message) {
                    log::warn!("camera {}: cannot publish state: {e}", self.camera);
                }
            }
        }
        let best = crate::head::top(&probabilities).unwrap_or(0);
        Ok((best, probabilities.get(best).copied().unwrap_or(0.0)))
    }
}

/// The `[x, y, w, h]` part of an image, clipped to it; `None` when nothing of it is inside.
fn crop(image: &image::RgbImage, x: u32, y: u32, w: u32, h: u32) -> Option<image::RgbImage> {
    let (iw, ih) = image.dimensions();
    if x >= iw || y >= ih {
        return None;
    }
    let (w, h) = (w.min(iw - x), h.min(ih - y));
    Some(image::imageops::crop_imm(image, x, y, w, h).to_image())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roi_is_clipped_and_outside_is_none() {
        let img = image::RgbImage::from_fn(10, 8, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let c = crop(&img, 6, 4, 100, 100).unwrap();
        assert_eq!(c.dimensions(), (4, 4));
        assert_eq!(c.get_pixel(0, 0).0, [6, 4, 0]);
        assert!(crop(&img, 10, 0, 1, 1).is_none());
    }
}
