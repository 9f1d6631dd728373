//! `cvedge run`: capture, classify in real time, publish.
//!
//! # Layout
//! Per camera, two threads joined by a one-frame mailbox ([`slot::LatestFrame`]): a capture thread
//! ([`camera::Capture`]) that opens the source, reopens it with backoff when it fails and always
//! replaces the waiting frame with the newest, and a classification thread ([`worker::Worker`])
//! that classifies the latest frame, numbers it ([`seq::SeqCounter`]), smooths the state
//! ([`smoothing::Smoother`]) and hands results to the sinks (MQTT, stdout), then offers the frame
//! to a third thread, the camera's saver ([`saver`]), which writes frames asked for by a capture
//! command or kept for review without ever holding up classification.
//!
//! The main thread waits for signals and commands (MQTT's and the live page's, [`command`], parsed
//! once and dispatched here): SIGINT/SIGTERM stop (workers drain, the publisher sends `stopped` and flushes its
//! outbox), SIGHUP (or the `reload` command) re-reads the configuration: the model is swapped
//! (the old one stays if the new one fails to load) and changed cameras are restarted; a capture
//! command goes to its camera's saver. With systemd, readiness and watchdog pings are sent from
//! the main loop only while every worker's heartbeat is fresh, so a wedged pipeline trips the
//! watchdog.

pub mod camera;
mod capture;
pub mod command;
mod publish;
mod review;
mod saver;
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
use crate::config::{CameraConfig, Config};
use crate::error::{Error, Result};
use crate::spawn;
use crate::serve::live::{DaemonView, LiveBoard, CAPTURE_ORIGIN};
use crate::serve::Server;
use crate::sink::mqtt::Publisher;
use crate::sink::{JsonLines, Sink};
use crate::source::{SourceOptions, SourceSpec};

use command::{Command, Refused};
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
    sinks: Arc<Vec<Box<dyn Sink>>>,
    cameras: Vec<RunningCamera>,
    counters: Counters,
    started: Instant,
    shutdown: Arc<AtomicBool>,
    hangup: Arc<AtomicBool>,
    /// When the model is an iterations folder: the published iteration last seen (loaded or
    /// failed), polled to hot-swap.
    published: Option<String>,
    last_poll: Instant,
    /// The `[http]` server and the capture commands its live page sends.
    http: Option<Http>,
}

struct Http {
    server: Server,
    commands: crossbeam_channel::Receiver<Command>,
}

/// One camera's threads and the switch that stops them.
struct RunningCamera {
    config: CameraConfig,
    slot: Arc<LatestFrame>,
    worker: JoinHandle<()>,
    saver: saver::SaverHandle,
    heartbeat: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl RunningCamera {
    /// Stops the worker and the saver (joined: a frame being written is finished) and the capture
    /// thread (not joined: a read may block until its timeout; it exits at its next frame or
    /// error).
    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.slot.close();
        let _ = self.worker.join();
        self.saver.join();
    }
}

/// Counters for logs, benchmarks and tests.
#[derive(Debug, Clone, Copy)]
pub struct DaemonStats {
    pub classified: u64,
    pub skipped: u64,
    /// MQTT commands refused (bad payload or tag, unknown camera or command).
    pub refused_commands: u64,
}

/// Shared handles on the daemon's counters (totals across camera restarts).
#[derive(Clone, Default)]
pub struct Counters {
    classified: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
    refused_commands: Arc<AtomicU64>,
}

impl Counters {
    pub fn classified(&self) -> u64 {
        self.classified.load(Ordering::Relaxed)
    }

    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> DaemonStats {
        DaemonStats { classified: self.classified(), skipped: self.skipped(), refused_commands: self.refused_commands.load(Ordering::Relaxed) }
    }
}

fn load_model(config: &Config) -> Result<Classifier> {
    let engine = crate::engine::EngineOptions { choice: config.engine, threads: config.threads, ..Default::default() };
    let classifier = Classifier::load(&config.model, &LoadOptions { threshold: Some(config.threshold), engine, ..Default::default() })?;
    log::info!("engine: {} ({})", classifier.engine.name(), classifier.facts.notes.iter().find(|n| n.starts_with("engine auto")).map(String::as_str).unwrap_or("as configured"));
    Ok(classifier)
}

/// The flags the daemon's main loop obeys: stop (SIGINT, SIGTERM) and reload (SIGHUP).
#[derive(Clone, Default)]
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

impl Signals {
    /// Flags this process's signals set. Registered before the daemon starts anything, so a
    /// SIGHUP (whose default action ends the process) or a SIGTERM arriving while the model loads
    /// or the cameras start waits for the main loop instead of killing the daemon uncleanly.
    pub fn of_this_process() -> Result<Signals> {
        let signals = Signals::default();
        let register = |signal, flag: &Arc<AtomicBool>| {
            signal_hook::flag::register(signal, flag.clone()).map_err(|e| Error::Inference(format!("cannot handle signal {signal}: {e}")))
        };
        register(signal_hook::consts::SIGINT, &signals.stop)?;
        register(signal_hook::consts::SIGTERM, &signals.stop)?;
        register(signal_hook::consts::SIGHUP, &signals.reload)?;
        Ok(signals)
    }
}

impl Daemon {
    /// Loads the model, connects the publisher (in the background) and starts every camera;
    /// stopped and reloaded through [`Daemon::shutdown_flag`] and [`Daemon::reload_flag`].
    pub fn start(config: Config, config_path: Option<PathBuf>) -> Result<Daemon> {
        Daemon::start_with(config, config_path, Signals::default())
    }

    /// As [`Daemon::start`], obeying `signals` (`cvedge run`: [`Signals::of_this_process`]).
    pub fn start_with(config: Config, config_path: Option<PathBuf>, signals: Signals) -> Result<Daemon> {
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
        let model = CurrentModel::new(classifier);
        let mut http = None;
        if let Some(options) = &config.http {
            let board = LiveBoard::new(config.cameras.iter().map(|c| c.name.as_str()));
            sinks.push(Box::new(board.clone()));
            let (sender, commands) = crossbeam_channel::bounded(16);
            let view = DaemonView { board, publisher: publisher.clone(), commands: sender };
            let server = Server::start_with(model.clone(), Config::serve_options(options), Some(view))?;
            http = Some(Http { server, commands });
        }
        let mut daemon = Daemon {
            model,
            publisher,
            sinks: Arc::new(sinks),
            cameras: vec![],
            counters: Counters::default(),
            started: Instant::now(),
            shutdown: signals.stop,
            hangup: signals.reload,
            published: crate::iteration::published_id(&config.model),
            last_poll: Instant::now(),
            http,
            config_path,
            config,
        };
        for camera in daemon.config.cameras.clone() {
            let running = daemon.start_camera(camera)?;
            daemon.cameras.push(running);
        }
        Ok(daemon)
    }

    fn start_camera(&self, camera: CameraConfig) -> Result<RunningCamera> {
        let spec: SourceSpec = camera.source.parse().map_err(|e| Error::config(format!("camera {}.source", camera.name), e, "fix the source spec"))?;
        let slot = Arc::new(LatestFrame::counting_into(self.counters.skipped.clone()));
        let stop = Arc::new(AtomicBool::new(false));
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
            sinks: self.sinks.clone(),
            shutdown: stop.clone(),
        };
        spawn(format!("capture-{}", camera.name), move || capture.run())?;
        let review = self.config.review.as_ref().map(|r| (r, self.config.review_dir(&camera.name)));
        let (saver, tap) = saver::start(&camera.name, self.config.data_dir.clone(), review, self.sinks.clone())?;
        let heartbeat = Arc::new(AtomicU64::new(self.started.elapsed().as_millis() as u64));
        let worker = Worker {
            camera: camera.name.clone(),
            interval: Config::camera_interval(&camera),
            roi: camera.roi,
            threshold: camera.threshold,
            consecutive: self.config.consecutive,
            slot: slot.clone(),
            model: self.model.clone(),
            sinks: self.sinks.clone(),
            seq: seq::SeqCounter::open(self.config.state_dir.join("seq").join(&camera.name))?,
            heartbeat: heartbeat.clone(),
            started: self.started,
            classified: self.counters.classified.clone(),
            shutdown: stop.clone(),
            tap,
        };
        let worker = spawn(format!("classify-{}", camera.name), move || worker.run())?;
        Ok(RunningCamera { config: camera, slot, worker, saver, heartbeat, stop })
    }

    pub fn stats(&self) -> DaemonStats {
        self.counters.stats()
    }

    /// Live counters that outlive borrows of the daemon (for a thread watching progress).
    pub fn counters(&self) -> Counters {
        self.counters.clone()
    }

    /// Names of the cameras running now.
    pub fn camera_names(&self) -> Vec<String> {
        self.cameras.iter().map(|c| c.config.name.clone()).collect()
    }

    /// Every worker turned its loop recently (no inference call is stuck).
    pub fn healthy(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        self.cameras.iter().all(|c| now.saturating_sub(c.heartbeat.load(Ordering::Relaxed)) < WEDGED_AFTER.as_millis() as u64)
    }

    fn report_offline(&self, camera: &str) {
        for sink in self.sinks.iter() {
            let _ = sink.camera_status(camera, false);
        }
    }

    /// Re-reads the configuration file (if any): swaps in its model (the running one stays if the
    /// new one fails to load), applies `threshold` and `consecutive`, and starts, stops or
    /// restarts cameras whose settings changed; the others keep running untouched (every camera
    /// restarts when `consecutive`, `data_dir` or `[review]` changed). MQTT and `state_dir`
    /// changes apply at the next restart (the MQTT session is never dropped).
    pub fn reload(&mut self) -> Result<()> {
        let config = match &self.config_path {
            Some(path) => Config::load(path)?,
            None => self.config.clone(),
        };
        let classifier = load_model(&config)?;
        log::info!("reloaded model {}", config.model.display());
        self.published = crate::iteration::published_id(&config.model);
        self.model.replace(classifier);
        if config.mqtt.as_ref().map(|m| &m.url) != self.config.mqtt.as_ref().map(|m| &m.url) || config.state_dir != self.config.state_dir || config.http != self.config.http {
            log::warn!("MQTT, [http] and state_dir changes apply when cvedge restarts");
        }
        let restart_all = config.consecutive != self.config.consecutive || config.data_dir != self.config.data_dir || config.review != self.config.review;
        self.config.model = config.model.clone();
        self.config.threshold = config.threshold;
        self.config.consecutive = config.consecutive;
        self.config.data_dir = config.data_dir.clone();
        self.config.review = config.review.clone();
        let (keep, retire): (Vec<RunningCamera>, Vec<RunningCamera>) = std::mem::take(&mut self.cameras)
            .into_iter()
            .partition(|running| !restart_all && config.cameras.iter().any(|c| c == &running.config));
        for running in retire {
            let name = running.config.name.clone();
            running.stop();
            if !config.cameras.iter().any(|c| c.name == name) {
                log::info!("camera {name} removed");
                self.report_offline(&name);
            }
        }
        self.cameras = keep;
        for camera in &config.cameras {
            if !self.cameras.iter().any(|c| &c.config == camera) {
                log::info!("camera {} (re)started", camera.name);
                let running = self.start_camera(camera.clone())?;
                self.cameras.push(running);
            }
        }
        self.config.cameras = config.cameras;
        if let Some(publisher) = &self.publisher {
            publish::announce(publisher, &self.config, &self.model.get());
        }
        Ok(())
    }

    /// Makes `classifier` the model every camera uses from its next frame on (frames being
    /// classified finish on the old one), and re-announces the tags to Home Assistant.
    fn swap_model(&mut self, classifier: Classifier) {
        if let Some(publisher) = &self.publisher {
            publish::announce(publisher, &self.config, &classifier);
        }
        let id = if classifier.iteration_id.is_empty() { "none" } else { classifier.iteration_id.as_str() };
        log::info!("classifying with {} (iteration {id}, tags {})", classifier.package.origin.display(), classifier.labels.join(", "));
        self.model.replace(classifier);
    }

    /// Hot-swap: when the model is an iterations folder and another iteration was published,
    /// load it (cameras keep classifying with the running model meanwhile) and swap it in. A
    /// published iteration that fails to load is logged once and the running model kept.
    fn follow_published(&mut self) {
        const POLL: Duration = Duration::from_secs(1);
        if self.last_poll.elapsed() < POLL {
            return;
        }
        self.last_poll = Instant::now();
        let Some(id) = crate::iteration::published_id(&self.config.model) else { return };
        if self.published.as_ref() == Some(&id) {
            return;
        }
        self.published = Some(id.clone());
        match load_model(&self.config) {
            Ok(classifier) => {
                log::info!("iteration {id} was published; switching to it");
                self.published = Some(classifier.iteration_id.clone());
                self.swap_model(classifier);
            }
            Err(e) => log::error!("the published iteration {id} cannot be loaded, keeping the running model: {e}"),
        }
    }

    /// A handle other threads (signal handlers, tests) use to stop the daemon.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// A handle other threads (the SIGHUP handler, tests) set to ask [`Daemon::run`] to reload.
    pub fn reload_flag(&self) -> Arc<AtomicBool> {
        self.hangup.clone()
    }

    /// Carries out one parsed command (`origin`: the MQTT topic or the live page's route, for
    /// messages); returns whether it asks for a reload (done by the caller, once however many
    /// arrived).
    fn execute(&self, command: Command, origin: &str) -> bool {
        match command {
            Command::Reload => return true,
            Command::Capture { camera, request } => match self.cameras.iter().find(|c| c.config.name == camera) {
                Some(running) => running.saver.capture(request),
                None => self.refuse(command::refuse(origin, Some(&camera), Some(&request.tag), format!("there is no camera '{camera}'"), "the capture to one of this device's cameras")),
            },
        }
        false
    }

    /// A command that cannot be carried out: logged, counted and, for a known camera's capture,
    /// reported on its result topic.
    fn refuse(&self, refused: Refused) {
        self.counters.refused_commands.fetch_add(1, Ordering::Relaxed);
        let known = refused.camera.as_deref().filter(|c| self.cameras.iter().any(|r| r.config.name == *c));
        if refused.camera.is_some() && known.is_none() {
            log::warn!("{refused} (cameras here: {})", self.camera_names().join(", "));
        } else {
            log::warn!("{refused}");
        }
        if let Some(camera) = known {
            let report = capture::CaptureJob::refused(refused.tag.as_deref().unwrap_or(""), refused.to_string()).report();
            for sink in self.sinks.iter() {
                let _ = sink.capture_result(camera, &report);
            }
        }
    }

    pub fn publisher(&self) -> Option<&Publisher> {
        self.publisher.as_ref()
    }

    /// Where the `[http]` server listens, if there is one.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(|http| http.server.local_addr())
    }

    /// Stops the HTTP server (requests being answered finish), the cameras, then the publisher
    /// (`stopped`, outbox flushed within a timeout).
    pub fn stop(mut self) -> Result<()> {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(http) = self.http.take() {
            http.server.stop();
        }
        for running in self.cameras {
            let name = running.config.name.clone();
            running.stop();
            // The capture thread may still be in a read: say offline here, while the publisher runs.
            if let Some(publisher) = &self.publisher {
                publisher.camera_status(&name, false);
            }
        }
        if let Some(publisher) = self.publisher {
            match publisher.shutdown(FLUSH_TIMEOUT) {
                Ok(()) => {}
                // A broker that is away at shutdown is what the outbox is for: not an error.
                Err(e @ crate::sink::mqtt::MqttError::Undelivered { lost: 0, .. }) => log::warn!("mqtt: {e}"),
                Err(e @ crate::sink::mqtt::MqttError::Undelivered { .. }) => log::error!("mqtt: {e}"),
                Err(e) => return Err(Error::State { path: self.config.state_dir.join("outbox"), problem: format!("stopping MQTT: {e}"), fix: "check the log above".to_owned() }),
            }
        }
        Ok(())
    }

    /// The main loop: runs until [`Daemon::shutdown_flag`] is set, then stops. Carries out MQTT commands, reloads when
    /// [`Daemon::reload_flag`] is set, and talks to systemd (readiness, watchdog driven by
    /// pipeline progress).
    pub fn run(mut self) -> Result<()> {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        let mut watchdog = None;
        let mut usec = 0u64;
        if sd_notify::watchdog_enabled(false, &mut usec) {
            watchdog = Some(Duration::from_micros(usec) / 2);
        }
        let mqtt_commands = self.publisher.as_ref().map(|p| p.commands());
        let http_commands = self.http.as_ref().map(|http| http.commands.clone());
        let mut last_ping = Instant::now();
        while !self.shutdown.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            let mut reload_asked = self.hangup.swap(false, Ordering::Relaxed);
            // MQTT's are parsed here; the live page's were when they were posted.
            let mqtt = mqtt_commands.iter().flat_map(|rx| rx.try_iter()).map(|(topic, payload)| command::parse(&topic, &payload).map(|c| (c, topic)));
            let http = http_commands.iter().flat_map(|rx| rx.try_iter()).map(|c| Ok((c, CAPTURE_ORIGIN.to_string())));
            for command in mqtt.chain(http) {
                reload_asked |= match command {
                    Ok((command, origin)) => self.execute(command, &origin),
                    Err(refused) => {
                        self.refuse(refused);
                        false
                    }
                };
            }
            if reload_asked {
                if let Err(e) = self.reload() {
                    log::error!("reload failed, keeping the running model: {e}");
                }
            }
            self.follow_published();
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
