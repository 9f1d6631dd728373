//! What `cvedge run` shows over HTTP: the cameras' live state, kept by a sink ([`LiveBoard`])
//! that every camera's classification thread feeds, and pushed to the live page as server-sent
//! events. The board also counts what `/metrics` reports per camera.
//!
//! The page (`live.html`, embedded) loads `/live/state` once, then follows `/live/events`; each
//! prediction event makes it fetch the camera's latest frame from `/live/frame/{camera}` (at most
//! a few times a second). Its capture button posts `/live/capture`, which becomes the same capture
//! command MQTT carries (`{camera}/capture`), so frames are saved, counted and reported exactly as
//! for MQTT (the result comes back as an event).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::http::{Conn, Response};
use super::metrics::{family, label, Histogram};
use super::routes::ApiError;
use crate::sink::mqtt::Publisher;
use crate::sink::{Outcome, Sink};
use crate::source::{Frame, Pixels};

/// The live page.
pub const PAGE: &str = include_str!("live.html");
/// Frames kept for the page at most this often per camera (a 30 fps camera need not be copied 30
/// times a second for a page that shows a few).
const FRAME_EVERY: Duration = Duration::from_millis(200);
/// Events a slow page may fall behind by before it misses some (it catches up at the next one).
const EVENT_BACKLOG: usize = 32;

/// What the daemon hands its HTTP server: the board, the MQTT publisher (for its outbox figures)
/// and where capture commands go (the daemon's command loop, as MQTT's do).
#[derive(Clone)]
pub struct DaemonView {
    pub board: LiveBoard,
    pub publisher: Option<Publisher>,
    pub commands: Sender<(String, Vec<u8>)>,
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

/// The cameras' live state; clones share it.
#[derive(Clone, Default)]
pub struct LiveBoard {
    cameras: Arc<Mutex<BTreeMap<String, CameraView>>>,
    subscribers: Arc<Mutex<Vec<Sender<String>>>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CameraView>> {
        self.cameras.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn has_camera(&self, camera: &str) -> bool {
        self.lock().contains_key(camera)
    }

    /// Every camera's state, for `/live/state`, `/health` and a new page's first event.
    pub fn cameras_json(&self) -> serde_json::Value {
        serde_json::Value::Array(self.lock().iter().map(|(name, view)| view.json(name)).collect())
    }

    pub fn snapshot(&self, camera: &str) -> Option<Snapshot> {
        self.lock().get(camera).and_then(|v| v.snapshot.as_ref().map(|(s, _)| s.clone()))
    }

    /// A new page's event stream.
    pub fn subscribe(&self) -> Receiver<String> {
        let (tx, rx) = bounded(EVENT_BACKLOG);
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Sends an event to every page; a page that fell behind misses it, a closed one is forgotten.
    fn broadcast(&self, event: serde_json::Value) {
        let text = event.to_string();
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).retain(|tx| !matches!(tx.try_send(text.clone()), Err(TrySendError::Disconnected(_))));
    }

    fn update(&self, camera: &str, change: impl FnOnce(&mut CameraView)) -> serde_json::Value {
        let mut cameras = self.lock();
        let view = cameras.entry(camera.to_string()).or_default();
        change(view);
        view.json(camera)
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
        let state = self.update(camera, |view| {
            view.frames += 1;
            view.skipped += response.skipped.unwrap_or(0);
            view.online = Some(true);
            if let Some(ms) = response.latency_ms {
                view.latency.observe(ms / 1e3);
            }
            view.latest = Some(latest);
        });
        self.broadcast(serde_json::json!({"type": "prediction", "state": state}));
        Ok(())
    }

    fn camera_status(&self, camera: &str, online: bool) -> std::io::Result<()> {
        let state = self.update(camera, |view| view.online = Some(online));
        self.broadcast(serde_json::json!({"type": "status", "state": state}));
        Ok(())
    }

    fn capture_result(&self, camera: &str, report: &[u8]) -> std::io::Result<()> {
        let report: serde_json::Value = serde_json::from_slice(report).unwrap_or(serde_json::Value::Null);
        let state = self.update(camera, |view| view.capture = Some(report));
        self.broadcast(serde_json::json!({"type": "capture", "state": state}));
        Ok(())
    }

    fn frame(&self, camera: &str, frame: &Frame) {
        let mut cameras = self.lock();
        let view = cameras.entry(camera.to_string()).or_default();
        if view.snapshot.as_ref().is_some_and(|(_, at)| at.elapsed() < FRAME_EVERY) {
            return;
        }
        let snapshot = match &frame.pixels {
            Pixels::Encoded(bytes) => Snapshot::Encoded(Arc::new(bytes.clone())),
            Pixels::Rgb(image) => Snapshot::Rgb(Arc::new(image.clone())),
        };
        view.snapshot = Some((snapshot, Instant::now()));
    }
}

/// `GET /live/state`: the model and every camera, for the page's first paint.
pub fn state(view: &DaemonView, model: &crate::classifier::Classifier) -> Response {
    Response::json(
        200,
        &serde_json::json!({
            "model": model.package.origin.display().to_string(),
            "engine": model.engine.name(),
            "iteration": model.iteration_id,
            "tags": model.labels,
            "cameras": view.board.cameras_json(),
        }),
    )
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
    let topic = format!("http/{camera}/capture");
    let payload = serde_json::to_vec(&request).unwrap_or_default();
    // Parsed here too, so a bad request is answered now rather than only logged by the daemon.
    let command = crate::daemon::command::parse(&topic, &payload).map_err(|refused| {
        ApiError::bad_request(format!("{}; send {form}", refused.problem))
    })?;
    let crate::daemon::command::Command::Capture { request, .. } = command else {
        return Err(ApiError::bad_request(format!("send {form}")));
    };
    view.commands.try_send((topic, payload)).map_err(|_| {
        let mut error = ApiError::new(503, "ServiceUnavailable", "the daemon has capture commands waiting; retry in a second");
        error.headers.push(("Retry-After", "1".into()));
        error
    })?;
    Ok(Response::json(202, &serde_json::json!({"status": "queued", "camera": camera, "tag": request.tag, "count": request.count})))
}

/// `GET /live/events`: server-sent events until the page goes away or the server stops; every
/// camera's state first, then each change as it happens, and a comment line every 15 s so
/// proxies keep the connection open.
pub fn stream(conn: &mut Conn, view: &DaemonView, stop: &AtomicBool) {
    const PING: Duration = Duration::from_secs(15);
    let events = view.board.subscribe();
    if conn.start_stream("text/event-stream").is_err() {
        return;
    }
    let mut out = String::new();
    for state in view.board.cameras_json().as_array().into_iter().flatten() {
        out += &format!("data: {}\n\n", serde_json::json!({"type": "status", "state": state}));
    }
    let mut last_write = Instant::now();
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
    }
}
