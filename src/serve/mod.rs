//! `cvedge serve`: the Custom Vision container export's prediction API over HTTP, as a drop-in
//! replacement for the container (same paths, same JSON), on any export cvedge loads.
//!
//! # Layout
//! ```text
//! acceptor ──connection──▶ connection threads ──image──▶ inference queue ──▶ workers (decode, classify)
//!    │ all busy                (max_connections)              │ full: 503 + Retry-After
//!    ▼                          read, route, /url fetch
//! rejecters: 503, close
//! ```
//!
//! - [`http`]: the server's side of HTTP/1.1 (request head and body within time and size limits,
//!   responses, keep-alive, closing without resetting a client that is still sending).
//! - [`routes`]: the container's paths (and the cloud's prefix), the `{"code","message"}` errors,
//!   and where the image is in a body (raw, or the multipart field `imageData`).
//! - [`pool`]: the bounded queue and the workers that share the current model (`Classifier` is
//!   `Sync`: the engines run concurrently or lock inside).
//! - [`fetch`]: `POST /url`'s download, refusing non-public addresses unless allowed.
//! - [`metrics`]: what `GET /metrics` reports (Prometheus text); `GET /health` says what is
//!   loaded and how full the queue is.
//! - [`live`]: under `cvedge run`, the cameras' live state (a sink fed by every camera), the live
//!   page with its server-sent events and capture button, and the per-camera metrics.
//!
//! Every stage is bounded: connection threads, the queue of accepted connections, the inference
//! queue and the workers, so a burst of clients costs at most `max_connections` bodies of 4 MB
//! and `workers` decoded images, and whoever does not fit is told 503 with `Retry-After`. Stopping
//! ([`Server::stop`]) closes the listener, lets requests being served finish and joins every thread.

pub mod fetch;
pub mod http;
pub mod live;
pub mod metrics;
pub mod pool;
pub mod routes;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::daemon::worker::CurrentModel;
use crate::error::{Error, Result};
use crate::spawn;
use crate::prediction::{ContainerResponse, PredictionResponse};
use fetch::{FetchError, FetchLimits, Fetcher};
use http::{Conn, ReadError, Request, Response};
use live::DaemonView;
use metrics::HttpMetrics;
use pool::{Pool, Refused};
use routes::{ApiError, Route};

/// The container's limit on a request body (Flask's `MAX_CONTENT_LENGTH`), and the cloud's.
pub const MAX_IMAGE_BYTES: usize = 4 * 1024 * 1024;
/// A `/url` request is a small JSON object.
const MAX_URL_BODY: usize = 64 * 1024;
/// What `GET /` answers, word for word as the container's `app.py` does (health checks match it).
pub const INDEX_TEXT: &str = "CustomVision.ai model host harness";
/// How long a new connection may take to send its first request, and a kept-alive one its next.
const FIRST_REQUEST_IDLE: Duration = Duration::from_secs(10);
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Threads that turn connections away with 503 while every connection thread is busy, and the
/// connections that may wait for them; past that the acceptor waits, and new connections wait in
/// the kernel's listen backlog.
const REJECTERS: usize = 2;
const REJECT_BACKLOG: usize = 16;

/// The JSON a prediction is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    /// The container export's: labels.txt order, 8 decimals, empty ids, `created` without `Z`.
    #[default]
    Container,
    /// The cloud's (and `cvedge predict --json`'s): sorted by probability, an id, the iteration,
    /// `created` with `Z`.
    Cloud,
}

impl ResponseFormat {
    /// What `--format` and `[http] format` accept.
    pub const NAMES: [&'static str; 2] = ["container", "cloud"];
}

impl std::str::FromStr for ResponseFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "container" => Ok(ResponseFormat::Container),
            "cloud" => Ok(ResponseFormat::Cloud),
            _ => Err(format!("'{s}' is not a format: use container (the container export's JSON) or cloud (the cloud's, as predict --json)")),
        }
    }
}

/// Where a server's options were given, so that the fixes its messages suggest name them as the
/// user wrote them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptionsFrom {
    /// `cvedge serve`'s flags (`--workers`, `--api-key`...).
    #[default]
    ServeFlags,
    /// `cvedge run`'s `[http]` table (`workers`, `api_key`...).
    HttpTable,
}

impl OptionsFrom {
    /// How the user sets option `key` (`max_connections`): `--max-connections` or
    /// `[http] max_connections`.
    fn name(self, key: &str) -> String {
        match self {
            OptionsFrom::ServeFlags => format!("--{}", key.replace('_', "-")),
            OptionsFrom::HttpTable => format!("[http] {key}"),
        }
    }

    /// The command the options were given to.
    fn program(self) -> &'static str {
        match self {
            OptionsFrom::ServeFlags => "cvedge serve",
            OptionsFrom::HttpTable => "cvedge run",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// `HOST:PORT` to listen on.
    pub addr: String,
    /// Inference threads; 0 = one per core.
    pub workers: usize,
    /// Images waiting for a worker before new ones are answered 503 (at least 1).
    pub queue: usize,
    /// Connections served at once (each holds at most one request body; at least 1).
    pub max_connections: usize,
    /// When set, prediction requests must carry it in `Prediction-Key`.
    pub api_key: Option<String>,
    /// Let `/url` fetch from loopback, private and link-local addresses.
    pub allow_private_urls: bool,
    pub format: ResponseFormat,
    /// `/url` download limits.
    pub url_timeout: Duration,
    pub url_max_redirects: usize,
    /// How messages name these options.
    pub from: OptionsFrom,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            addr: "127.0.0.1:8080".into(),
            workers: 0,
            queue: 16,
            max_connections: 32,
            api_key: None,
            allow_private_urls: false,
            format: ResponseFormat::Container,
            url_timeout: Duration::from_secs(10),
            url_max_redirects: 3,
            from: OptionsFrom::ServeFlags,
        }
    }
}

/// What every connection thread shares.
struct Shared {
    options: ServeOptions,
    model: CurrentModel,
    workers: usize,
    pool: Pool,
    fetcher: Fetcher,
    stop: AtomicBool,
    metrics: HttpMetrics,
    started: Instant,
    /// `cvedge run`'s cameras and commands; `None` for `cvedge serve`.
    daemon: Option<DaemonView>,
    fixes: Fixes,
}

/// What a refused client is told to do, worded for where the options came from.
struct Fixes {
    /// Every worker busy and the queue full.
    workers: String,
    /// Every connection in use.
    connections: String,
    /// As many live pages as the server follows.
    live_pages: String,
    /// A missing or wrong key.
    api_key: String,
}

impl Fixes {
    fn new(from: OptionsFrom) -> Fixes {
        let (name, program) = (|key| from.name(key), from.program());
        Fixes {
            workers: format!("retry in a second, or start {program} with more {} or a longer {}", name("workers"), name("queue")),
            connections: format!("retry in a second, or start {program} with a larger {}", name("max_connections")),
            live_pages: format!("close another live page, or start {program} with a larger {} (half of the connections may be live pages)", name("max_connections")),
            api_key: format!("send the key {program} was started with ({})", name("api_key")),
        }
    }
}

/// A running server; [`Server::stop`] (or dropping it) stops it.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// Listens on `options.addr` and starts the threads; predictions use whatever model `model`
    /// holds when a worker takes the image (so a daemon's reload applies here too).
    pub fn start(model: CurrentModel, options: ServeOptions) -> Result<Server> {
        Server::start_with(model, options, None)
    }

    /// As [`Server::start`], with a daemon's cameras behind the live page, the per-camera
    /// metrics and the capture button.
    pub fn start_with(model: CurrentModel, options: ServeOptions, daemon: Option<DaemonView>) -> Result<Server> {
        let serve_error = |problem: String, fix: &str| Error::Serve { problem, fix: fix.to_string() };
        let name = |key| options.from.name(key);
        for (key, value) in [("queue", options.queue), ("max_connections", options.max_connections)] {
            if value == 0 {
                return Err(serve_error(format!("{} is 0, which leaves no room for a request", name(key)), &format!("give {} 1 or more", name(key))));
            }
        }
        let addr = options
            .addr
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| serve_error(format!("'{}' is not an address to listen on", options.addr), "give HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080"))?;
        let listener = TcpListener::bind(addr).map_err(|e| {
            let fix = match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    format!("use a port above 1023 (e.g. {} 0.0.0.0:8080), or give cvedge the CAP_NET_BIND_SERVICE capability for port 80", name("addr"))
                }
                std::io::ErrorKind::AddrInUse => "stop what listens there (the Custom Vision container?) or choose another port".to_string(),
                _ => "choose an address of this machine, e.g. 127.0.0.1:8080".to_string(),
            };
            serve_error(format!("cannot listen on {addr} ({e})"), &fix)
        })?;
        let addr = listener.local_addr().map_err(|e| serve_error(format!("cannot listen on {addr} ({e})"), "choose another address"))?;
        if options.api_key.is_none() && !addr.ip().is_loopback() {
            log::warn!("listening on {addr} without an API key: anyone who can reach this address can use the model (set {})", name("api_key"));
        }
        let workers = match options.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let limits = FetchLimits {
            allow_private: options.allow_private_urls,
            allow_private_option: name("allow_private_urls"),
            max_bytes: MAX_IMAGE_BYTES,
            timeout: options.url_timeout,
            max_redirects: options.url_max_redirects,
        };
        let pool = Pool::start(model.clone(), workers, options.queue)?;
        let max_connections = options.max_connections;
        let fixes = Fixes::new(options.from);
        let shared = Arc::new(Shared {
            options,
            model,
            workers,
            pool,
            fetcher: Fetcher::new(limits),
            stop: AtomicBool::new(false),
            metrics: HttpMetrics::default(),
            started: Instant::now(),
            daemon,
            fixes,
        });
        let (connections, accepted) = bounded::<TcpStream>(max_connections);
        let (rejects, rejected) = bounded::<TcpStream>(REJECT_BACKLOG);
        let mut threads = vec![];
        for i in 0..max_connections {
            let (accepted, shared) = (accepted.clone(), shared.clone());
            threads.push(spawn(format!("serve-conn-{i}"), move || {
                for stream in accepted.iter() {
                    serve_connection(stream, &shared);
                }
            })?);
        }
        for i in 0..REJECTERS {
            let (rejected, shared) = (rejected.clone(), shared.clone());
            threads.push(spawn(format!("serve-reject-{i}"), move || reject_all(rejected, &shared))?);
        }
        let accept_shared = shared.clone();
        let acceptor = spawn("serve-accept".into(), move || accept_all(listener, &accept_shared, connections, rejects))?;
        log::info!("serving predictions on http://{addr} ({workers} workers)");
        Ok(Server { addr, shared, acceptor: Some(acceptor), threads })
    }

    /// The address listened on (the port chosen when `:0` was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets the requests being served finish, and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else { return };
        self.shared.stop.store(true, Ordering::Relaxed);
        // The acceptor blocks in accept(): one connection of our own wakes it to see the flag.
        let wake = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), self.addr.port()),
            IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), self.addr.port()),
            _ => self.addr,
        };
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = acceptor.join();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.shared.pool.stop();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_all(listener: TcpListener, shared: &Shared, connections: Sender<TcpStream>, rejects: Sender<TcpStream>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        match stream {
            Ok(stream) => match connections.try_send(stream) {
                Ok(()) => {}
                // Every connection thread is busy and as many connections wait: turned away.
                Err(TrySendError::Full(stream)) => {
                    if rejects.send(stream).is_err() {
                        return;
                    }
                }
                Err(TrySendError::Disconnected(_)) => return,
            },
            // Out of file descriptors, most likely: back off instead of spinning.
            Err(e) => {
                log::warn!("accepting a connection failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Answers connections no thread could take with 503, after reading their request (a client
/// still sending would otherwise see a reset connection instead of the answer).
fn reject_all(rejected: Receiver<TcpStream>, shared: &Shared) {
    for stream in rejected.iter() {
        let Ok(mut conn) = Conn::new(stream, Duration::from_secs(1)) else { continue };
        conn.request_time = Duration::from_secs(1);
        if let Ok(request) = conn.next_request(Duration::from_secs(1), &shared.stop) {
            let error = busy(format!("all {} connections are in use", shared.options.max_connections), &shared.fixes.connections);
            shared.metrics.request("none", 503);
            let _ = conn.respond(&error.response(), false, request.method == "HEAD");
        }
        conn.close_lingering();
    }
}

fn busy(what: String, fix: &str) -> ApiError {
    let mut error = ApiError::new(503, "ServiceUnavailable", format!("{what}; {fix}"));
    error.headers.push(("Retry-After", "1".into()));
    error
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    // Small answers on a kept-alive connection must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let Ok(mut conn) = Conn::new(stream, WRITE_TIMEOUT) else { return };
    let mut idle = FIRST_REQUEST_IDLE;
    loop {
        let request = match conn.next_request(idle, &shared.stop) {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(e) => {
                let _ = conn.respond(&read_error(e, MAX_IMAGE_BYTES, IMAGE_FIX).response(), false, false);
                return conn.close_lingering();
            }
        };
        idle = KEEP_ALIVE_IDLE;
        let started = std::time::Instant::now();
        let (response, body_read, route) = handle(&mut conn, &request, shared);
        // Already answered (an event stream): the connection ends with it.
        let Some(response) = response else { return };
        shared.metrics.request(route, response.status);
        log::debug!("{} {} -> {} in {:.1} ms", request.method, request.path, response.status, started.elapsed().as_secs_f64() * 1e3);
        let unread = request.has_body() && !body_read;
        let keep_alive = request.keep_alive() && !unread && !shared.stop.load(Ordering::Relaxed);
        if conn.respond(&response, keep_alive, request.method == "HEAD").is_err() {
            return;
        }
        if unread {
            return conn.close_lingering();
        }
        if !keep_alive {
            return;
        }
    }
}

/// What a body over its route's limit is told to send instead.
const IMAGE_FIX: &str = "send an image of at most 4 MB";
const URL_FIX: &str = "send a small JSON object {\"url\": ...}";
const CAPTURE_FIX: &str = "send a small JSON object {\"camera\": ..., \"tag\": ...}";

/// The answer to a request that could not be read; `fix`: what a body over `limit` should be.
fn read_error(e: ReadError, limit: usize, fix: &str) -> ApiError {
    match e {
        ReadError::TooLarge(size) => {
            let size = size.map_or("larger".to_string(), |n| format!("{n} bytes,"));
            ApiError::new(413, "BadRequestImageSizeBytes", format!("the request body is {size} more than the {limit} bytes allowed; {fix}"))
        }
        ReadError::TimedOut => {
            ApiError::new(408, "RequestTimeout", format!("the request did not arrive within {} s; send it at once", http::REQUEST_TIME.as_secs()))
        }
        ReadError::Bad(problem) => ApiError::bad_request(format!("the request is not HTTP/1.1 as expected ({problem}); use an HTTP client")),
        ReadError::Closed => ApiError::bad_request("the connection closed"),
    }
}

/// Answers one request: the response (`None` when it was streamed already), whether the
/// request's body was read, and the route's name for the metrics.
fn handle(conn: &mut Conn, request: &Request, shared: &Shared) -> (Option<Response>, bool, &'static str) {
    let route = match routes::route(&request.method, &request.path) {
        Ok(route) => route,
        Err(error) => return (Some(error.response()), false, "none"),
    };
    let name = route.name();
    let refuse = |error: ApiError| (Some(error.response()), false, name);
    if matches!(route, Route::Image | Route::Url) || route.is_live() {
        // A browser cannot add a header to an <img> or an EventSource: the live page passes the
        // key in its address.
        let query_key = if route.is_live() { request.query_param("key") } else { None };
        if let Err(error) = authorize(request, query_key.as_deref(), shared.options.api_key.as_deref(), &shared.fixes.api_key) {
            return refuse(error);
        }
    }
    let view = match (route.is_live(), &shared.daemon) {
        (false, _) => None,
        (true, Some(view)) => Some(view),
        (true, None) => {
            return refuse(ApiError::new(404, "NotFound", "the live page is part of `cvedge run` with an [http] table; `cvedge serve` has the prediction API only"))
        }
    };
    let (limit, fix, body) = match (route, view) {
        (Route::Index, _) => return (Some(Response::text(200, "text/html; charset=utf-8", INDEX_TEXT)), false, name),
        (Route::Health, _) => return (Some(Response::json(200, &health(shared))), false, name),
        (Route::Metrics, _) => return (Some(Response::text(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(shared))), false, name),
        (Route::Live, Some(_)) => return (Some(Response::text(200, "text/html; charset=utf-8", live::PAGE)), false, name),
        // What the page reads first: the model, its tags and every camera, as /health says them.
        (Route::LiveState, Some(_)) => return (Some(Response::json(200, &health(shared))), false, name),
        (Route::LiveFrame, Some(view)) => {
            let camera = http::percent_decode(request.path.rsplit('/').next().unwrap_or(""));
            return (Some(live::frame(view, &camera).unwrap_or_else(|e| e.response())), false, name);
        }
        (Route::LiveEvents, Some(view)) => {
            if view.board.subscribers() >= (shared.options.max_connections / 2).max(1) {
                return refuse(busy("as many live pages are open as this server follows".into(), &shared.fixes.live_pages));
            }
            live::stream(conn, view, &shared.stop);
            return (None, false, name);
        }
        (Route::LiveCapture, _) => (MAX_URL_BODY, CAPTURE_FIX, conn.read_body(request, MAX_URL_BODY)),
        (Route::Image, _) => (MAX_IMAGE_BYTES, IMAGE_FIX, conn.read_body(request, MAX_IMAGE_BYTES)),
        (Route::Url, _) => (MAX_URL_BODY, URL_FIX, conn.read_body(request, MAX_URL_BODY)),
        (_, None) => unreachable!("live routes without a daemon were answered above"),
    };
    let body = match body {
        Ok(body) => body,
        Err(ReadError::Closed) => return refuse(ApiError::bad_request("the connection closed")),
        Err(e) => return refuse(read_error(e, limit, fix)),
    };
    let result = match (route, view) {
        (Route::LiveCapture, Some(view)) => live::capture(view, &body),
        (Route::Url, _) => routes::image_url(&body).and_then(|url| shared.fetcher.fetch(&url).map_err(fetch_error)).and_then(|image| predict(shared, image)),
        _ => routes::image_bytes(request.header("content-type"), body, MAX_IMAGE_BYTES).and_then(|image| predict(shared, image)),
    };
    (Some(result.unwrap_or_else(|e| e.response())), true, name)
}

/// `GET /health`: what is loaded and how busy the server is.
fn health(shared: &Shared) -> serde_json::Value {
    let model = shared.model.get();
    serde_json::json!({
        "status": "ok",
        "model": model.package.origin.display().to_string(),
        "iteration": model.iteration_id,
        "engine": model.engine.name(),
        "tags": model.labels,
        "workers": shared.workers,
        "queued": shared.pool.queued(),
        "queue": shared.pool.capacity(),
        "uptime_s": shared.started.elapsed().as_secs(),
        "cameras": shared.daemon.as_ref().map(|d| d.board.cameras_json()),
        "mqtt": shared.daemon.as_ref().and_then(|d| d.publisher.as_ref()).map(|p| {
            let stats = p.stats();
            serde_json::json!({"connected": stats.connected, "outbox_depth": stats.outbox_depth})
        }),
    })
}

/// `GET /metrics`: the model, the queue and the request counters.
fn metrics_text(shared: &Shared) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let model = shared.model.get();
    metrics::family(&mut out, "cvedge_model_info", "gauge", "The model being served (always 1).");
    let _ = writeln!(
        out,
        "cvedge_model_info{{model=\"{}\",iteration=\"{}\",engine=\"{}\"}} 1",
        metrics::label(&model.package.origin.display().to_string()),
        metrics::label(&model.iteration_id),
        model.engine.name()
    );
    metrics::family(&mut out, "cvedge_uptime_seconds", "gauge", "Seconds since the server started.");
    let _ = writeln!(out, "cvedge_uptime_seconds {}", shared.started.elapsed().as_secs());
    metrics::family(&mut out, "cvedge_http_workers", "gauge", "Inference threads.");
    let _ = writeln!(out, "cvedge_http_workers {}", shared.workers);
    metrics::family(&mut out, "cvedge_http_queue_depth", "gauge", "Posted images waiting for a worker.");
    let _ = writeln!(out, "cvedge_http_queue_depth {}", shared.pool.queued());
    metrics::family(&mut out, "cvedge_http_queue_capacity", "gauge", "Images that may wait before requests are answered 503.");
    let _ = writeln!(out, "cvedge_http_queue_capacity {}", shared.pool.capacity());
    shared.metrics.write(&mut out);
    if let Some(daemon) = &shared.daemon {
        daemon.board.write_metrics(&mut out);
        if let Some(publisher) = &daemon.publisher {
            let stats = publisher.stats();
            let samples: [(&str, &str, &str, u64); 5] = [
                ("cvedge_mqtt_connected", "gauge", "1 while connected to the broker.", u64::from(stats.connected)),
                ("cvedge_mqtt_outbox_depth", "gauge", "Predictions waiting in the outbox for the broker's acknowledgement.", stats.outbox_depth as u64),
                ("cvedge_mqtt_dropped_total", "counter", "Predictions dropped because the outbox was full.", stats.dropped),
                ("cvedge_mqtt_delivered_total", "counter", "Predictions the broker acknowledged.", stats.delivered),
                ("cvedge_mqtt_reconnects_total", "counter", "Connections to the broker after the first.", stats.reconnects),
            ];
            for (name, kind, help, value) in samples {
                metrics::family(&mut out, name, kind, help);
                let _ = writeln!(out, "{name} {value}");
            }
        }
    }
    out
}

/// The `Prediction-Key` check (or the `key` query parameter the live page uses), in constant time
/// (the key is compared whole, whatever differs).
fn authorize(request: &Request, query_key: Option<&str>, key: Option<&str>, fix: &str) -> std::result::Result<(), ApiError> {
    let Some(key) = key else { return Ok(()) };
    let given = request.header("prediction-key").or(query_key).unwrap_or("");
    let same = given.len() == key.len() && given.bytes().zip(key.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
    if same {
        return Ok(());
    }
    let problem = if given.is_empty() { "this server needs a Prediction-Key header" } else { "the Prediction-Key header is not this server's key" };
    Err(ApiError::new(401, "Unauthorized", format!("{problem}; {fix}")))
}

fn fetch_error(e: FetchError) -> ApiError {
    ApiError::new(400, "BadRequestImageUrl", e.to_string())
}

fn predict(shared: &Shared, image: Vec<u8>) -> std::result::Result<Response, ApiError> {
    let arrived = Instant::now();
    let answer = shared.pool.submit(image).map_err(|refused| match refused {
        Refused::Busy => busy(format!("all {} workers are busy and {} images are waiting", shared.workers, shared.pool.capacity()), &shared.fixes.workers),
        Refused::Stopping => busy("the server is stopping".into(), "retry in a second"),
    })?;
    let done = answer.recv().map_err(|_| ApiError::new(500, "InternalServerError", "the inference worker stopped; retry, and report it if it happens again"))?;
    let done = done.map_err(|e| match e {
        Error::Image { .. } => ApiError::new(400, "BadRequestImageFormat", e.to_string()),
        _ => ApiError::new(500, "InternalServerError", e.to_string()),
    })?;
    shared.metrics.prediction.observe(arrived.elapsed().as_secs_f64());
    let (labels, probabilities) = (&done.model.labels, &done.classification.probabilities);
    Ok(match shared.options.format {
        ResponseFormat::Container => Response::json(200, &ContainerResponse::new(labels, probabilities, SystemTime::now())),
        ResponseFormat::Cloud => Response::json(200, &PredictionResponse::new(labels, probabilities, &done.model.iteration_id)),
    })
}
