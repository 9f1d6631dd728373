//! What `cvedge run` shows over HTTP: the cameras' live state, kept by a sink ([`LiveBoard`])
//! that every camera's classification thread feeds, and pushed to the live page as server-sent
//! events. The board also counts what `/metrics` reports per camera.
//!
//! The page (`live.html`, embedded) loads `/live/state` (what `/health` says) once, then follows
//! `/live/events`; each prediction event makes it fetch the camera's latest frame from
//! `/live/frame/{camera}` (at most a few times a second). Its capture button posts
//! `/live/capture`, which becomes the same capture command MQTT carries (`{camera}/capture`), so
//! frames are saved, counted and reported exactly as for MQTT (the result comes back as an event).
//!
//! Nobody watching costs the cameras little: events are built only while a page follows them, and
//! frames are kept a few times a second only while a page is open or `/live/frame` was asked for
//! lately (otherwise one every few seconds, so the first request has a recent frame).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::http::{Conn, Response};
use super::metrics::{family, label, Histogram};
use super::routes::ApiError;
use crate::daemon::command::{self, Command};
use crate::sink::mqtt::Publisher;
use crate::sink::{Outcome, Sink};
use crate::source::{Frame, Pixels};

/// The live page.
pub const PAGE: &str = include_str!("live.html");
/// Frames kept for the page at most this often per camera (a 30 fps camera need not be copied 30
/// times a second for a page that shows a few).
const FRAME_EVERY: Duration = Duration::from_millis(200);
/// While no page is open and `/live/frame` was not asked for within [`WATCH_FOR`]: frames are
/// kept this seldom, so a first request gets a frame at most this old.
const IDLE_FRAME_EVERY: Duration = Duration::from_secs(5);
const WATCH_FOR: Duration = Duration::from_secs(30);
/// Events a slow page may fall behind by before it misses some (it catches up at the next one).
const EVENT_BACKLOG: usize = 32;

/// Where the live page's capture commands come from, in the daemon's messages.
pub const CAPTURE_ORIGIN: &str = "POST /live/capture";

/// What the daemon hands its HTTP server: the board, the MQTT publisher (for its outbox figures)
/// and where capture commands go (the daemon's command loop, as MQTT's do, parsed already).
#[derive(Clone)]
pub struct DaemonView {
    pub board: LiveBoard,
    pub publisher: Option<Publisher>,
    pub commands: Sender<Command>,
}

/// The latest frame of a camera, as it came (JPEG or PNG bytes) or as decoded pixels.
#[derive(Clone)]
pub enum Snapshot {
    Encoded(Arc<Vec<u8>>),
    Rgb(Arc<image::RgbImage>),
}

impl Snapshot {
    /// Bytes and content type a browser shows; raw pixels are encoded as JPEG here, on request.
    pub fn encoded(&self) -> Option<(Vec<u8>, &'static str)> {
        match self {
            Snapshot::Encoded(bytes) => {
                let kind = if bytes.starts_with(b"\x89PNG") { "image/png" } else { "image/jpeg" };
                Some((bytes.to_vec(), kind))
            }
            Snapshot::Rgb(image) => {
                let mut jpeg = vec![];
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 85).encode_image(image.as_ref()).ok()?;
                Some((jpeg, "image/jpeg"))
            }
        }
    }
}

#[derive(Default)]
struct CameraView {
    online: Option<bool>,
    frames: u64,
    skipped: u64,
    latency: Histogram,
    /// The latest prediction as the page shows it.
    latest: Option<serde_json::Value>,
    /// The latest capture command's report.
    capture: Option<serde_json::Value>,
    snapshot: Option<(Snapshot, Instant)>,
}

impl CameraView {
    fn json(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "camera": name,
            "online": self.online,
            "frames": self.frames,
            "skipped": self.skipped,
            "latest": self.latest,
            "capture": self.capture,
        })
    }
}

/// Who watches: the open pages' event streams, and when a frame was last asked for.
#[derive(Default)]
struct Watchers {
    next_id: u64,
    pages: Vec<(u64, Sender<String>)>,
    frame_asked: Option<Instant>,
}

/// The cameras' live state; clones share it.
#[derive(Clone, Default)]
pub struct LiveBoard {
    cameras: Arc<Mutex<BTreeMap<String, CameraView>>>,
    watchers: Arc<Mutex<Watchers>>,
}

/// A page's event stream; dropping it (however the stream ends) stops counting the page.
pub struct Subscription {
    board: LiveBoard,
    id: u64,
    pub events: Receiver<String>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.board.watchers().pages.retain(|(id, _)| *id != self.id);
    }
}

impl LiveBoard {
    /// A board that knows the configured cameras before they deliver anything.
    pub fn new<'a>(cameras: impl IntoIterator<Item = &'a str>) -> LiveBoard {
        let board = LiveBoard::default();
        for camera in cameras {
            board.lock().entry(camera.to_string()).or_default();
        }
        board
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, CameraView>> {
        self.cameras.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watchers(&self) -> MutexGuard<'_, Watchers> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn has_camera(&self, camera: &str) -> bool {
        self.lock().contains_key(camera)
    }

    /// Every camera's state, for `/live/state`, `/health` and a new page's first event.
    pub fn cameras_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.lock().iter().map(|(name, view)| view.json(name)).collect())
    }

    /// The camera's latest kept frame; asking makes the board keep frames often for a while.
    pub fn snapshot(&self, camera: &str) -> Option<Snapshot> {
        self.watchers().frame_asked = Some(Instant::now());
        self.lock().get(camera).and_then(|v| v.snapshot.as_ref().map(|(s, _)| s.clone()))
    }

    /// A new page's event stream.
    pub fn subscribe(&self) -> Subscription {
        let (tx, events) = bounded(EVENT_BACKLOG);
        let mut watchers = self.watchers();
        let id = watchers.next_id;
        watchers.next_id += 1;
        watchers.pages.push((id, tx));
        Subscription { board: self.clone(), id, events }
    }

    /// Pages following the events now.
    pub fn subscribers(&self) -> usize {
        self.watchers().pages.len()
    }

    /// A page is open, or a frame was asked for lately.
    fn watched(&self) -> bool {
        let watchers = self.watchers();
        !watchers.pages.is_empty() || watchers.frame_asked.is_some_and(|at| at.elapsed() < WATCH_FOR)
    }

    /// Sends an event to every page; a page that fell behind misses it, a closed one is forgotten.
    fn broadcast(&self, event: serde_json::Value) {
        let text = event.to_string();
        self.watchers().pages.retain(|(_, tx)| !matches!(tx.try_send(text.clone()), Err(TrySendError::Disconnected(_))));
    }

    /// Applies `change` to the camera's view, then tells the open pages (when there are any) as an
    /// event of `kind`.
    fn update(&self, camera: &str, kind: &str, change: impl FnOnce(&mut CameraView)) {
        let state = {
            let mut cameras = self.lock();
            let view = view_of(&mut cameras, camera);
            change(view);
            // Checked under the cameras' lock: a page subscribing now reads the state after this.
            (!self.watchers().pages.is_empty()).then(|| view.json(camera))
        };
        if let Some(state) = state {
            self.broadcast(serde_json::json!({"type": kind, "state": state}));
        }
    }

    /// Per-camera samples for `/metrics`.
    pub fn write_metrics(&self, out: &mut String) {
        let cameras = self.lock();
        let each = |out: &mut String, name: &str, value: &dyn Fn(&CameraView) -> String| {
            for (camera, view) in cameras.iter() {
                let _ = writeln!(out, "{name}{{camera=\"{}\"}} {}", label(camera), value(view));
            }
        };
        family(out, "cvedge_frames_total", "counter", "Frames classified, by camera.");
        each(out, "cvedge_frames_total", &|v| v.frames.to_string());
        family(out, "cvedge_frames_skipped_total", "counter", "Frames a camera delivered that were skipped because the engine was busy (latest frame wins).");
        each(out, "cvedge_frames_skipped_total", &|v| v.skipped.to_string());
        family(out, "cvedge_camera_online", "gauge", "1 while the camera delivers frames, 0 when it is offline (reopened with backoff).");
        each(out, "cvedge_camera_online", &|v| u8::from(v.online.unwrap_or(false)).to_string());
        family(out, "cvedge_frame_latency_seconds", "histogram", "Time from a frame's capture to its prediction being published, by camera.");
        for (camera, view) in cameras.iter() {
            view.latency.write(out, "cvedge_frame_latency_seconds", &format!("camera=\"{}\"", label(camera)));
        }
    }
}

/// A camera's view, created for one the board did not know (a camera added by a reload).
fn view_of<'a>(cameras: &'a mut BTreeMap<String, CameraView>, camera: &str) -> &'a mut CameraView {
    if !cameras.contains_key(camera) {
        cameras.insert(camera.to_string(), CameraView::default());
    }
    cameras.get_mut(camera).expect("inserted above")
}

impl Sink for LiveBoard {
    fn publish(&self, outcome: &Outcome<'_>) -> std::io::Result<()> {
        let Some(camera) = outcome.camera else { return Ok(()) };
        let response = outcome.response;
        let top: Vec<serde_json::Value> =
            response.predictions.iter().take(3).map(|p| serde_json::json!({"tag": p.tag_name, "probability": p.probability})).collect();
        let latest = serde_json::json!({
            "seq": response.seq,
            "time": response.frame_time,
            "latency_ms": response.latency_ms,
            "iteration": response.iteration,
            "top": top,
            "detected": outcome.detected,
        });
        self.update(camera, "prediction", |view| {
            view.frames += 1;
            view.skipped += response.skipped.unwrap_or(0);
            view.online = Some(true);
            if let Some(ms) = response.latency_ms {
                view.latency.observe(ms / 1e3);
            }
            view.latest = Some(latest);
        });
        Ok(())
    }

    fn camera_status(&self, camera: &str, online: bool) -> std::io::Result<()> {
        self.update(camera, "status", |view| view.online = Some(online));
        Ok(())
    }

    fn capture_result(&self, camera: &str, report: &[u8]) -> std::io::Result<()> {
        let report: serde_json::Value = serde_json::from_slice(report).unwrap_or(serde_json::Value::Null);
        self.update(camera, "capture", |view| view.capture = Some(report));
        Ok(())
    }

    fn frame(&self, camera: &str, frame: &Frame) {
        let age = self.lock().get(camera).and_then(|view| view.snapshot.as_ref().map(|(_, at)| at.elapsed()));
        // At any frame rate most frames come within FRAME_EVERY of the last one kept: they cost
        // one lock, no look at the watchers and no copy.
        let due = match age {
            None => true,
            Some(age) if age < FRAME_EVERY => false,
            Some(age) => age >= IDLE_FRAME_EVERY || self.watched(),
        };
        if !due {
            return;
        }
        let snapshot = match &frame.pixels {
            Pixels::Encoded(bytes) => Snapshot::Encoded(Arc::new(bytes.clone())),
            Pixels::Rgb(image) => Snapshot::Rgb(Arc::new(image.clone())),
        };
        view_of(&mut self.lock(), camera).snapshot = Some((snapshot, Instant::now()));
    }
}

/// `GET /live/frame/{camera}`: the camera's latest classified frame.
pub fn frame(view: &DaemonView, camera: &str) -> Result<Response, ApiError> {
    if !view.board.has_camera(camera) {
        return Err(ApiError::new(404, "NotFound", format!("there is no camera '{camera}'; the page lists the cameras there are")));
    }
    let (bytes, kind) = view.board.snapshot(camera).and_then(|s| s.encoded()).ok_or_else(|| {
        ApiError::new(404, "NotFound", format!("camera '{camera}' has no classified frame yet; wait for its first prediction"))
    })?;
    let mut response = Response { status: 200, content_type: kind, headers: vec![], body: bytes };
    response.headers.push(("Cache-Control", "no-store".into()));
    Ok(response)
}

/// `POST /live/capture` `{"camera", "tag", "count"?, "interval_s"?}`: the capture command MQTT
/// carries, handed to the daemon's command loop. Answers 202; the result arrives as an event.
pub fn capture(view: &DaemonView, body: &[u8]) -> Result<Response, ApiError> {
    let form = r#"{"camera": "CAMERA", "tag": "TAG", "count": N}"#;
    let mut request: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not a JSON object ({e}); send {form}")))?;
    let camera = match request.remove("camera") {
        Some(serde_json::Value::String(camera)) => camera,
        _ => return Err(ApiError::bad_request(format!("the JSON names no camera; send {form}"))),
    };
    if !view.board.has_camera(&camera) {
        return Err(ApiError::new(404, "NotFound", format!("there is no camera '{camera}'; capture from one the page lists")));
    }
    // Parsed here, so a bad request is answered now rather than only logged by the daemon.
    let request = command::parse_capture(CAPTURE_ORIGIN, &camera, serde_json::Value::Object(request))
        .map_err(|refused| ApiError::bad_request(format!("{}; send {form}", refused.problem)))?;
    let answer = serde_json::json!({"status": "queued", "camera": camera, "tag": request.tag, "count": request.count});
    view.commands.try_send(Command::Capture { camera, request }).map_err(|_| {
        let mut error = ApiError::new(503, "ServiceUnavailable", "the daemon has capture commands waiting; retry in a second");
        error.headers.push(("Retry-After", "1".into()));
        error
    })?;
    Ok(Response::json(202, &answer))
}

/// `GET /live/events`: server-sent events until the page goes away or the server stops; every
/// camera's state first, then each change as it happens, and a comment line every 15 s so
/// proxies keep the connection open. A page that closed is noticed within a second, events or
/// not, and stops counting against the open pages' limit.
pub fn stream(conn: &mut Conn, view: &DaemonView, stop: &AtomicBool) {
    const PING: Duration = Duration::from_secs(15);
    let subscription = view.board.subscribe();
    let events = &subscription.events;
    if conn.start_stream("text/event-stream").is_err() {
        return;
    }
    let mut out = String::new();
    for state in view.board.cameras_json().as_array().into_iter().flatten() {
        out += &format!("data: {}\n\n", serde_json::json!({"type": "status", "state": state}));
    }
    let mut last_write = Instant::now();
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if !out.is_empty() || last_write.elapsed() >= PING {
            if out.is_empty() {
                out += ": ping\n\n";
            }
            if conn.writer().write_all(out.as_bytes()).and_then(|_| conn.writer().flush()).is_err() {
                return;
            }
            out.clear();
            last_write = Instant::now();
        }
        match events.recv_timeout(Duration::from_secs(1)) {
            Ok(event) => out += &format!("data: {event}\n\n"),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
        // A closed page is noticed within a second, not looked for at every event (each look
        // is a read on the socket, and events come at the cameras' frame rate).
        if last_check.elapsed() >= Duration::from_secs(1) {
            if conn.peer_closed() {
                return;
            }
            last_check = Instant::now();
        }
    }
}
