//! `cvedge run`: capture, classify in real time, publish.
//!
//! # Layout
//! Per camera, two threads joined by a one-frame mailbox ([`slot::LatestFrame`]): a capture thread
//! ([`camera::Capture`]) that opens the source, reopens it with backoff when it fails and always
//! replaces the waiting frame with the newest, and a classification thread ([`worker::Worker`])
//! that classifies the latest frame, numbers it ([`seq::SeqCounter`]), smooths the state
//! ([`smoothing::Smoother`]) and hands results to the sinks (MQTT, stdout). The main thread waits
//! for signals: SIGINT/SIGTERM stop (workers drain, the publisher sends `stopped` and flushes its
//! outbox), SIGHUP (or an MQTT `reload` command) reloads the configuration's model and keeps the
//! old one if the new one fails to load. With systemd, readiness and watchdog pings are sent from
//! the main loop only while every worker's heartbeat is fresh, so a wedged pipeline trips the
//! watchdog.

pub mod camera;
mod publish;
pub mod seq;
pub mod slot;
pub mod smoothing;
pub mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::classifier::{Classifier, LoadOptions};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sink::mqtt::Publisher;
use crate::sink::{JsonLines, Sink};
use crate::source::{SourceOptions, SourceSpec};

use slot::LatestFrame;
use worker::{CurrentModel, Worker};

/// How long the publisher may take to deliver its outbox at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// A worker whose last loop turn is older than this is considered wedged.
const WEDGED_AFTER: Duration = Duration::from_secs(30);

/// A running daemon.
pub struct Daemon {
    config: Config,
    config_path: Option<PathBuf>,
    model: CurrentModel,
    publisher: Option<Publisher>,
    slots: Vec<Arc<LatestFrame>>,
    workers: Vec<JoinHandle<()>>,
    heartbeats: Vec<Arc<AtomicU64>>,
    classified: Arc<AtomicU64>,
    started: Instant,
    shutdown: Arc<AtomicBool>,
}

/// Counters for logs, benchmarks and tests.
#[derive(Debug, Clone, Copy)]
pub struct DaemonStats {
    pub classified: u64,
    pub skipped: u64,
}

/// Shared handles on the daemon's counters.
#[derive(Clone)]
pub struct Counters {
    classified: Arc<AtomicU64>,
    slots: Vec<Arc<LatestFrame>>,
}

impl Counters {
    pub fn classified(&self) -> u64 {
        self.classified.load(Ordering::Relaxed)
    }

    pub fn skipped(&self) -> u64 {
        self.slots.iter().map(|s| s.skipped()).sum()
    }

    pub fn stats(&self) -> DaemonStats {
        DaemonStats { classified: self.classified(), skipped: self.skipped() }
    }
}

fn load_model(config: &Config) -> Result<Classifier> {
    Classifier::load(&config.model, &LoadOptions { threshold: Some(config.threshold), ..Default::default() })
}

impl Daemon {
    /// Loads the model, connects the publisher (in the background) and starts every camera.
    pub fn start(config: Config, config_path: Option<PathBuf>) -> Result<Daemon> {
        let classifier = load_model(&config)?;
        let publisher = match &config.mqtt {
            Some(mqtt) => Some(publish::start_publisher(mqtt, &config, &classifier)?),
            None => None,
        };
        let mut sinks: Vec<Box<dyn Sink>> = vec![];
        if let Some(p) = &publisher {
            sinks.push(Box::new(p.clone()));
        }
        if config.print {
            sinks.push(Box::new(JsonLines::new(std::io::stdout())));
        }
        let sinks = Arc::new(sinks);
        let model = CurrentModel::new(classifier);
        let shutdown = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let classified = Arc::new(AtomicU64::new(0));
        let (mut slots, mut workers, mut heartbeats) = (vec![], vec![], vec![]);
        for camera in &config.cameras {
            let spec: SourceSpec = camera.source.parse().map_err(|e| Error::config(format!("camera {}.source", camera.name), e, "fix the source spec"))?;
            let slot = Arc::new(LatestFrame::default());
            let options = SourceOptions {
                width: camera.width,
                height: camera.height,
                fps: camera.fps,
                loop_files: camera.loop_files,
                ..SourceOptions::default()
            };
            let capture = camera::Capture {
                name: camera.name.clone(),
                spec,
                options,
                slot: slot.clone(),
                sinks: sinks.clone(),
                shutdown: shutdown.clone(),
                backoff_min: camera::BACKOFF_MIN,
            };
            // Capture threads may block in a read until their timeout; they are not joined.
            std::thread::Builder::new()
                .name(format!("capture-{}", camera.name))
                .spawn(move || capture.run())
                .map_err(|e| Error::Inference(format!("cannot start a thread: {e}")))?;
            let heartbeat = Arc::new(AtomicU64::new(0));
            let worker = Worker {
                camera: camera.name.clone(),
                interval: Config::camera_interval(camera),
                roi: camera.roi,
                threshold: camera.threshold,
                consecutive: config.consecutive,
                slot: slot.clone(),
                model: model.clone(),
                sinks: sinks.clone(),
                seq: seq::SeqCounter::open(config.state_dir.join("seq").join(&camera.name))?,
                heartbeat: heartbeat.clone(),
                started,
                classified: classified.clone(),
                shutdown: shutdown.clone(),
            };
            workers.push(
                std::thread::Builder::new()
                    .name(format!("classify-{}", camera.name))
                    .spawn(move || worker.run())
                    .map_err(|e| Error::Inference(format!("cannot start a thread: {e}")))?,
            );
            slots.push(slot);
            heartbeats.push(heartbeat);
        }
        Ok(Daemon { config, config_path, model, publisher, slots, workers, heartbeats, classified, started, shutdown })
    }

    pub fn stats(&self) -> DaemonStats {
        self.counters().stats()
    }

    /// Live counters that outlive borrows of the daemon (for a thread watching progress).
    pub fn counters(&self) -> Counters {
        Counters { classified: self.classified.clone(), slots: self.slots.clone() }
    }

    /// Every worker turned its loop recently (no inference call is stuck).
    pub fn healthy(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        self.heartbeats.iter().all(|h| now.saturating_sub(h.load(Ordering::Relaxed)) < WEDGED_AFTER.as_millis() as u64)
    }

    /// Re-reads the configuration file (if any) and swaps in its model; on failure the running
    /// model stays and the error is returned for reporting. Cameras and MQTT settings are not
    /// changed by a reload (restart the service for those).
    pub fn reload(&mut self) -> Result<()> {
        let config = match &self.config_path {
            Some(path) => Config::load(path)?,
            None => self.config.clone(),
        };
        let classifier = load_model(&config)?;
        log::info!("reloaded model {}", config.model.display());
        self.model.replace(classifier);
        self.config.model = config.model;
        self.config.threshold = config.threshold;
        Ok(())
    }

    /// A handle other threads (signal handlers, tests) use to stop the daemon.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    pub fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_ref()
    }

    /// Stops workers, then the publisher (`stopped`, outbox flushed within a timeout).
    pub fn stop(self) -> Result<()> {
        self.shutdown.store(true, Ordering::Relaxed);
        for slot in &self.slots {
            slot.close();
        }
        for worker in self.workers {
            let _ = worker.join();
        }
        // Capture threads are not joined (a read may block until its timeout), so mark the
        // cameras offline here, while the publisher still runs.
        if let Some(publisher) = &self.publisher {
            for camera in &self.config.cameras {
                publisher.camera_status(&camera.name, false);
            }
        }
        if let Some(publisher) = self.publisher {
            publisher.shutdown(FLUSH_TIMEOUT).map_err(|e| Error::Inference(format!("stopping MQTT: {e}")))?;
        }
        Ok(())
    }

    /// Runs until SIGINT/SIGTERM: reloads on SIGHUP or an MQTT `reload` command, and talks to
    /// systemd (readiness, watchdog driven by pipeline progress).
    pub fn run_until_signalled(mut self) -> Result<()> {
        let terminate = Arc::new(AtomicBool::new(false));
        let hangup = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, terminate.clone()).map_err(|e| Error::Inference(format!("signal handler: {e}")))?;
        }
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone()).map_err(|e| Error::Inference(format!("signal handler: {e}")))?;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let mut watchdog = None;
        let mut usec = 0u64;
        if sd_notify::watchdog_enabled(false, &mut usec) {
            watchdog = Some(Duration::from_micros(usec) / 2);
        }
        let commands = self.publisher.as_ref().map(|p| p.commands());
        let mut last_ping = Instant::now();
        while !terminate.load(Ordering::Relaxed) && !self.shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let reload_asked = hangup.swap(false, Ordering::Relaxed)
                || commands.as_ref().is_some_and(|rx| rx.try_iter().any(|(topic, payload)| topic.ends_with("/command") && payload.trim_ascii() == b"reload"));
            if reload_asked {
                if let Err(e) = self.reload() {
                    log::error!("reload failed, keeping the running model: {e}");
                }
            }
            if let Some(interval) = watchdog {
                if last_ping.elapsed() >= interval && self.healthy() {
                    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                    last_ping = Instant::now();
                }
            }
        }
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        self.stop()
    }
}
