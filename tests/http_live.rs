//! `cvedge run --http`: the live page in headless Chromium (Debian's package) against a running
//! daemon, checked on its screenshot (the camera's frame and the online badge are drawn, which
//! only the page's script does after loading the state), its capture endpoint saving a training
//! frame, and the per-camera metrics; and a user typing a tag and clicking Capture on the page.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::*;
use common::*;

/// The daemon on the bundled cat photo, with its HTTP server on a free loopback port.
fn daemon(dir: &std::path::Path) -> (KillOnDrop, SocketAddr) {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_cvedge"))
            .args(["run", "--model", "models/demo", "--source", "door=file:models/samples/cat.jpg", "--interval", "0.2", "--http", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--data")
            .arg(dir.join("data"))
            .current_dir(repo())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let addr = listening(&mut child, "live page on http://");
    (child, addr)
}

/// How long the daemon may take to show a prediction, save a capture or report it.
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn the_live_page_shows_each_camera_and_captures_training_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, addr) = daemon(dir.path());
    wait_for("a prediction on the live board", WAIT, || get(addr, "/live/state").json()["cameras"][0]["frames"].as_u64() >= Some(2));
    let state = get(addr, "/live/state").json();
    assert_eq!(state["cameras"][0]["camera"], "door");
    assert_eq!(state["cameras"][0]["latest"]["top"][0]["tag"], "cat");
    let frame = get(addr, "/live/frame/door");
    assert_eq!((frame.status, frame.header("content-type")), (200, Some("image/jpeg")));
    assert_eq!(frame.body, sample("cat.jpg"), "the camera's frame as it came");

    // What the page's capture button posts: one frame saved under the tag, reported back.
    let capture = post(addr, "/live/capture", "application/json", br#"{"camera": "door", "tag": "cat", "count": 1}"#);
    assert_eq!(capture.status, 202, "{}", capture.text());
    wait_for("the captured frame", WAIT, || std::fs::read_dir(dir.path().join("data/cat")).is_ok_and(|d| d.count() == 1));
    wait_for("the capture report", WAIT, || get(addr, "/live/state").json()["cameras"][0]["capture"]["state"] == "done");
    let refused = post(addr, "/live/capture", "application/json", br#"{"camera": "door", "tag": "../x"}"#);
    assert_eq!((refused.status, refused.json()["code"].as_str()), (400, Some("BadRequest")), "{}", refused.text());
    assert_eq!(post(addr, "/live/capture", "application/json", br#"{"camera": "gate", "tag": "cat"}"#).status, 404);
    // The API's refusals name the daemon's own setting, not `cvedge serve`'s flag.
    let private = post(addr, "/url", "application/json", br#"{"url": "http://127.0.0.1:9/cat.jpg"}"#);
    let message = private.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(private.status == 400 && message.contains("allow private addresses with [http] allow_private_urls"), "{}", private.text());

    let metrics = get(addr, "/metrics").text();
    for family in ["cvedge_frames_total{camera=\"door\"}", "cvedge_frames_skipped_total{camera=\"door\"}", "cvedge_camera_online{camera=\"door\"} 1", "cvedge_frame_latency_seconds_count{camera=\"door\"}"] {
        assert!(metrics.contains(family), "no {family} in\n{metrics}");
    }

    // The page, as a browser draws it (retried: the script's requests follow the load event).
    let url = format!("http://{addr}/live");
    let started = Instant::now();
    for attempt in 0.. {
        let Some(shot) = browser::screenshot(&url, &dir.path().join("live.png")) else { return };
        assert_eq!(shot.dimensions(), (900, 700));
        // The header's dark bar, the online badge's green, and a photo (many colours) where the
        // first card shows the camera's frame.
        let header = shot.get_pixel(450, 5).0;
        let green = shot.pixels().filter(|p| p.0 == [5, 150, 105]).count();
        let mut colours = std::collections::BTreeSet::new();
        for y in 150..330 {
            for x in 60..390 {
                colours.insert(shot.get_pixel(x, y).0);
            }
        }
        eprintln!("attempt {attempt}: header {header:?}, {green} badge pixels, {} colours in the frame area", colours.len());
        if header == [31, 41, 55] && green > 100 && colours.len() > 2000 {
            break;
        }
        // `--screenshot` does not wait for the script's requests: a loaded machine loses the race.
        assert!(started.elapsed() < Duration::from_secs(60), "the page did not show the camera (see the numbers above)");
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A user at the live page: types a tag, clicks Capture, and sees the report; the frame is saved
/// under that tag. Headless Chromium, driven by mouse and keyboard events.
#[test]
fn the_live_pages_capture_button_saves_a_frame_under_the_typed_tag() {
    let dir = tempfile::tempdir().unwrap();
    let (_daemon, addr) = daemon(dir.path());
    let Some(mut page) = browser::Browser::open(&format!("http://{addr}/live")) else { return };
    page.wait_until("the camera's card", "document.querySelector('section.camera button') !== null");
    page.click("section.camera input[name=tag]");
    page.type_text("dog");
    page.click("section.camera button");
    wait_for("the captured frame", WAIT, || std::fs::read_dir(dir.path().join("data/dog")).is_ok_and(|d| d.count() == 1));
    page.wait_until("the capture report on the page", r#"document.querySelector("section.camera .capture").textContent === "capture 'dog': 1/1 saved (done)""#);
}

#[test]
fn the_http_table_is_validated() {
    let config = |http: &str| cvedge::config::Config::parse(&format!("model = \"models/demo\"\n[http]\n{http}\n[[camera]]\nname = \"door\"\nsource = \"synthetic\"\n"), "test");
    let ok = config("addr = \"127.0.0.1:8080\"\napi_key = \"k\"").unwrap();
    let options = cvedge::config::Config::serve_options(ok.http.as_ref().unwrap());
    assert_eq!((options.workers, options.api_key.as_deref()), (1, Some("k")));
    let wrong = config("addr = \"127.0.0.1:8080\"\nformat = \"xml\"").unwrap_err().to_string();
    assert!(wrong.contains("http.format") && wrong.contains("container"), "{wrong}");
    assert!(config("port = 8080").unwrap_err().to_string().contains("unknown field `port`"));
}

/// A connection that asked for `GET /live/events`, and the status line it got.
fn open_events(addr: SocketAddr) -> (std::net::TcpStream, String) {
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    (&stream).write_all(b"GET /live/events HTTP/1.1\r\nHost: cvedge\r\n\r\n").unwrap();
    let mut status = String::new();
    BufReader::new(&stream).read_line(&mut status).unwrap();
    (stream, status)
}

/// Opens the events page, retrying while the pages closed before it still count; the connection
/// stays open while the returned stream lives.
fn open_page(addr: SocketAddr, page: usize) -> std::net::TcpStream {
    let started = Instant::now();
    loop {
        let (stream, status) = open_events(addr);
        if status.starts_with("HTTP/1.1 200") {
            return stream;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "page {page}: still {status:?} after the earlier pages closed");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn closed_live_pages_stop_counting_while_the_cameras_send_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A camera that never opens (nothing listens on port 1): no event ever reaches the pages.
    // Two connections make room for one live page.
    let text = format!(
        "model = \"{}\"\nstate_dir = \"{}\"\n[http]\naddr = \"127.0.0.1:0\"\nmax_connections = 2\n[[camera]]\nname = \"gate\"\nsource = \"mjpeg:http://127.0.0.1:1/stream\"\n",
        repo().join("models/demo").display(),
        dir.path().join("state").display()
    );
    let daemon = cvedge::daemon::Daemon::start(cvedge::config::Config::parse(&text, "test").unwrap(), None).unwrap();
    let addr = daemon.http_addr().unwrap();
    // Each closed page is let go of within a few seconds; one that kept counting would leave
    // every later page 503 for good.
    for page in 0..4 {
        drop(open_page(addr, page));
    }
    // One page held open fills the room: the next is told to close one or raise the [http] key
    // (not a cvedge serve flag).
    let held = open_page(addr, 4);
    let full = get(addr, "/live/events");
    let message = full.json()["message"].as_str().unwrap_or_default().to_string();
    assert_eq!(full.status, 503, "{}", full.text());
    assert!(message.contains("larger [http] max_connections") && !message.contains("cvedge serve"), "{message}");
    drop(held);
    // A capture body over its limit is told the capture form, not /url's.
    let large = post(addr, "/live/capture", "application/json", &vec![b' '; 100_000]);
    assert_eq!(large.status, 413, "{}", large.text());
    assert!(large.json()["message"].as_str().unwrap().contains(r#"{"camera": ..., "tag": ...}"#), "{}", large.text());
    daemon.stop().unwrap();
}

#[test]
fn the_http_tables_zero_workers_mean_one_per_core_and_zero_room_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = |http: &str| {
        let text = format!(
            "model = \"{}\"\nstate_dir = \"{}\"\n[http]\naddr = \"127.0.0.1:0\"\n{http}\n[[camera]]\nname = \"door\"\nsource = \"synthetic\"\n",
            repo().join("models/demo").display(),
            dir.path().join("state").display()
        );
        cvedge::config::Config::parse(&text, "test").unwrap()
    };
    let every_core = config("workers = 0");
    assert_eq!(cvedge::config::Config::serve_options(every_core.http.as_ref().unwrap()).workers, 0, "0: one per core, as for cvedge serve");
    for key in ["queue", "max_connections"] {
        let error = cvedge::daemon::Daemon::start(config(&format!("{key} = 0")), None).err().expect("0 leaves no room").to_string();
        assert!(error.contains(&format!("[http] {key} is 0")) && error.contains(&format!("give [http] {key} 1 or more")), "{error}");
    }
}
