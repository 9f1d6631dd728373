//! `cvedge run` against real brokers: what an MQTT subscriber and Home Assistant see, the last
//! will when the daemon is killed, a camera stream that dies and comes back, capture commands
//! and review frames.

mod broker;
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use broker::{free_port, Mosquitto, Subscriber};
use common::*;
use cvedge::config::Config;
use cvedge::daemon::Daemon;

const WAIT: Duration = Duration::from_secs(30);

fn daemon_config(port: u16, device: &str, state: &std::path::Path, source: &str) -> Config {
    let text = format!(
        "model = \"{}\"\ndevice = \"{device}\"\nstate_dir = \"{}\"\nconsecutive = 1\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive_s = 5\n\
         [[camera]]\nname = \"door\"\nsource = \"{source}\"\nfps = 5\n",
        repo().join("models/demo").display(),
        state.display()
    );
    Config::parse(&text, "test").unwrap()
}

fn json(m: &broker::Received) -> serde_json::Value {
    serde_json::from_slice(&m.payload).unwrap_or_else(|e| panic!("{}: {e}: {}", m.topic, m.text()))
}

#[test]
fn subscribers_get_predictions_state_availability_and_discovery() {
    let port = broker::rumqttd();
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "watcher", false, &["cvedge/#", "homeassistant/#"]);
    let source = format!("file:{}", repo().join("models/samples").display());
    let daemon = Daemon::start(daemon_config(port, "hall", state.path(), &source), None).unwrap();

    // Collect everything until each topic has been seen (their order is not promised).
    let mut seen: Vec<broker::Received> = vec![];
    let count = |seen: &[broker::Received], topic: &str| seen.iter().filter(|m| m.topic == topic).count();
    while count(&seen, "cvedge/hall/status") == 0
        || count(&seen, "homeassistant/device/hall/config") == 0
        || count(&seen, "cvedge/hall/door/status") == 0
        || count(&seen, "cvedge/hall/door/state") == 0
        || count(&seen, "cvedge/hall/door/predictions") < 4
    {
        let topics: Vec<&str> = seen.iter().map(|m| m.topic.as_str()).collect();
        seen.push(sub.wait_for(WAIT, |_| true).unwrap_or_else(|| panic!("timed out; got {topics:?}")));
    }
    let first = |topic: &str| seen.iter().find(|m| m.topic == topic).unwrap();
    assert_eq!(first("cvedge/hall/status").text(), "online");
    assert_eq!(first("cvedge/hall/door/status").text(), "online");
    let discovery = json(first("homeassistant/device/hall/config"));
    assert!(discovery["cmps"].as_object().is_some_and(|c| !c.is_empty()), "{discovery}");
    let mut seqs = vec![];
    for m in seen.iter().filter(|m| m.topic == "cvedge/hall/door/predictions") {
        let p = json(m);
        assert_eq!(p["camera"], "door");
        assert_eq!(p["iteration"], "4f5a0c1e-7d2b-4c8e-9a61-3b0d2e5f7a11");
        assert!(p["frame_time"].as_str().unwrap().ends_with('Z'));
        assert!(p["latency_ms"].as_f64().unwrap() >= 0.0);
        assert!(p["skipped"].is_u64(), "{p}");
        assert_eq!(p["predictions"].as_array().unwrap().len(), 5);
        seqs.push(p["seq"].as_u64().unwrap());
    }
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "seq must increase: {seqs:?}");
    let state_msg = json(first("cvedge/hall/door/state"));
    assert!(["cat", "coffee", "dog", "eagle", "rocket"].contains(&state_msg["state"].as_str().unwrap()), "{state_msg}");

    // Home Assistant restarted: discovery is sent again.
    sub.publish("homeassistant/status", "online", false);
    assert!(sub.wait_topic("homeassistant/device/hall/config", WAIT).is_some(), "discovery not re-sent");

    // Retained state and availability reach a subscriber that arrives late.
    let late = Subscriber::connect(port, "late", false, &["cvedge/hall/door/state", "cvedge/hall/status"]);
    let retained = late.wait_for(WAIT, |m| m.topic.ends_with("/state")).expect("retained state");
    assert!(retained.retain);

    daemon.stop().unwrap();
    assert!(sub.wait_for(WAIT, |m| m.topic == "cvedge/hall/status" && m.text() == "stopped").is_some(), "no `stopped`");
}

#[test]
fn a_killed_daemon_leaves_offline_as_its_last_will() {
    let Some(mosquitto) = Mosquitto::start(false) else {
        eprintln!("skipped: mosquitto not installed");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(mosquitto.port, "watcher", false, &["cvedge/+/status"]);
    let mut child = KillOnDrop(Command::new(env!("CARGO_BIN_EXE_cvedge"))
        .args(["run", "--model", "models/demo", "--source", "door=synthetic:64x64@5", "--device", "victim"])
        .args(["--mqtt", &format!("mqtt://127.0.0.1:{}", mosquitto.port), "--state-dir", state.path().to_str().unwrap()])
        .current_dir(repo())
        .stdout(Stdio::null())
        .spawn()
        .unwrap());
    let online = sub.wait_for(WAIT, |m| m.topic == "cvedge/victim/status" && m.text() == "online");
    assert!(online.is_some(), "daemon never came online");
    child.kill().unwrap(); // SIGKILL: no chance to say goodbye
    child.wait().unwrap();
    let will = sub.wait_for(WAIT, |m| m.topic == "cvedge/victim/status");
    assert_eq!(will.map(|m| m.text()).as_deref(), Some("offline"));
}

/// An IP camera on loopback: ffmpeg serving a test pattern as multipart MJPEG over HTTP.
fn ip_camera(port: u16) -> Option<KillOnDrop> {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10"])
        .args(["-f", "mpjpeg", "-listen", "1", &format!("http://127.0.0.1:{port}/cam.mjpg")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
        .map(KillOnDrop)
}

#[test]
fn a_camera_stream_that_dies_goes_offline_and_comes_back() {
    let cam_port = free_port();
    let Some(mut camera) = ip_camera(cam_port) else {
        eprintln!("skipped: ffmpeg not installed");
        return;
    };
    let port = broker::rumqttd();
    let state = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "watcher", false, &["cvedge/cam/#"]);
    std::thread::sleep(Duration::from_millis(500));
    let daemon = Daemon::start(daemon_config(port, "cam", state.path(), &format!("mjpeg:http://127.0.0.1:{cam_port}/cam.mjpg")), None).unwrap();
    let status = |want: &'static str| sub.wait_for(WAIT, move |m| m.topic == "cvedge/cam/door/status" && m.text() == want);
    assert!(status("online").is_some(), "camera never online");
    assert!(sub.wait_topic("cvedge/cam/door/predictions", WAIT).is_some());

    camera.kill().unwrap();
    camera.wait().unwrap();
    assert!(status("offline").is_some(), "camera not reported offline");

    let mut camera = ip_camera(cam_port).unwrap();
    assert!(status("online").is_some(), "camera not back online");
    let before = daemon.stats().classified;
    let deadline = std::time::Instant::now() + WAIT;
    while daemon.stats().classified <= before + 2 {
        assert!(std::time::Instant::now() < deadline, "classification did not resume");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(sub.wait_topic("cvedge/cam/door/predictions", WAIT).is_some(), "predictions did not resume");
    daemon.stop().unwrap();
    let _ = camera.kill();
}

/// We promise at-least-once: with the broker restarted again and again while frames flow, every
/// sequence number the daemon produced reaches a subscriber (duplicates allowed).
#[test]
fn every_seq_arrives_at_least_once_across_broker_restarts() {
    let Some(mut mosquitto) = Mosquitto::start(true) else {
        eprintln!("skipped: mosquitto not installed");
        return;
    };
    let state = tempfile::tempdir().unwrap();
    // A persistent session on a persistent broker: what arrives while we are away is queued, so a
    // missing seq can only be one the daemon lost.
    let sub = Subscriber::connect(mosquitto.port, "auditor", true, &["cvedge/flaky/door/predictions"]);
    let daemon = Daemon::start(daemon_config(mosquitto.port, "flaky", state.path(), "synthetic:64x64@20"), None).unwrap();
    let mut seqs = std::collections::BTreeSet::new();
    let mut collect = |within: Duration| {
        let deadline = std::time::Instant::now() + within;
        while let Some(m) = sub.wait_for(deadline.saturating_duration_since(std::time::Instant::now()), |_| true) {
            seqs.insert(json(&m)["seq"].as_u64().unwrap());
        }
    };
    collect(Duration::from_secs(2));
    for _ in 0..3 {
        mosquitto.stop();
        std::thread::sleep(Duration::from_millis(1500)); // frames keep flowing into the outbox
        mosquitto.start_again();
        collect(Duration::from_secs(3));
    }
    // Back on the broker before stopping: the stop's flush is bounded (5 s), a reconnect after
    // the last restart (up to 4 s of backoff) is not.
    assert!(broker::wait_until(WAIT, || daemon.publisher().is_some_and(|p| p.stats().connected)), "no reconnect after the last restart");
    let produced = daemon.stats().classified;
    daemon.stop().unwrap();
    // Wait (bounded) until everything produced has arrived; a slow reconnect only delays it.
    let deadline = std::time::Instant::now() + WAIT;
    while (1..=produced).any(|s| !seqs.contains(&s)) {
        match sub.wait_for(deadline.saturating_duration_since(std::time::Instant::now()), |_| true) {
            Some(m) => drop(seqs.insert(json(&m)["seq"].as_u64().unwrap())),
            None => break,
        }
    }
    assert!(produced > 20, "too few frames to mean anything: {produced}");
    let missing: Vec<u64> = (1..=produced).filter(|s| !seqs.contains(s)).collect();
    assert!(missing.is_empty(), "{} of {produced} seqs never arrived: {:?}", missing.len(), &missing[..missing.len().min(20)]);
}

/// `reload` on the command topic re-reads the configuration, as SIGHUP does.
#[test]
fn the_reload_command_reloads_over_mqtt() {
    use std::io::BufRead;
    let port = broker::rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cvedge.toml");
    let text = format!(
        "model = \"models/demo\"\ndevice = \"remote\"\nstate_dir = \"{}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n[[camera]]\nname = \"door\"\nsource = \"synthetic:64x64@5\"\n",
        dir.path().join("state").display()
    );
    std::fs::write(&config, &text).unwrap();
    let sub = Subscriber::connect(port, "operator", false, &["cvedge/remote/status"]);
    let mut child = KillOnDrop(Command::new(env!("CARGO_BIN_EXE_cvedge"))
        .args(["run", "--config", config.to_str().unwrap()])
        .current_dir(repo())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let (tx, stderr) = crossbeam_channel::unbounded();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || std::io::BufReader::new(pipe).lines().map_while(Result::ok).for_each(|l| drop(tx.send(l))));
    assert!(sub.wait_for(WAIT, |m| m.text() == "online").is_some(), "daemon never online");
    std::fs::write(&config, text.replace("models/demo", "tests/data/corrupt/garbage.onnx")).unwrap();
    sub.publish("cvedge/remote/command", "reload", false);
    let deadline = std::time::Instant::now() + WAIT;
    let mut reported = false;
    while let Ok(line) = stderr.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        if line.contains("reload failed, keeping the running model") {
            reported = true;
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reported, "the reload command was not acted on");
}

/// A daemon running its main loop (commands included) on a thread, as `cvedge run` does.
struct Running {
    counters: cvedge::daemon::Counters,
    shutdown: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<cvedge::Result<()>>>,
}

impl Running {
    fn start(config: Config) -> Running {
        let daemon = Daemon::start(config, None).unwrap();
        let (counters, shutdown) = (daemon.counters(), daemon.shutdown_flag());
        Running { counters, shutdown, thread: Some(std::thread::spawn(move || daemon.run())) }
    }

    /// Waits until `more` frames beyond the count now are classified.
    fn classifies(&self, more: u64) -> bool {
        let target = self.counters.classified() + more;
        broker::wait_until(WAIT, || self.counters.classified() >= target)
    }

    fn stop(mut self) {
        self.shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Image files in a folder (no temporary dot-files), sorted.
fn images_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// `extra` goes after the camera's keys: more of them, or a table.
fn capture_config(port: u16, device: &str, dir: &std::path::Path, source: &str, extra: &str) -> Config {
    let text = format!(
        "model = \"{}\"\ndevice = \"{device}\"\nstate_dir = \"{}\"\ndata_dir = \"{}\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nkeep_alive_s = 5\n\
         [[camera]]\nname = \"door\"\nsource = \"{source}\"\nfps = 10\n{extra}",
        repo().join("models/demo").display(),
        dir.join("state").display(),
        dir.join("data").display(),
    );
    Config::parse(&text, "test").unwrap()
}

/// Waits for a capture report in one of the final states (not `running`).
fn final_report(sub: &Subscriber, topic: &str) -> serde_json::Value {
    let m = sub.wait_for(WAIT, |m| m.topic == topic && !m.text().contains("\"running\"")).unwrap_or_else(|| panic!("no final report on {topic}"));
    json(&m)
}

#[test]
fn a_capture_command_saves_that_many_distinct_frames_as_the_camera_sent_them() {
    let port = broker::rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "technician", false, &["cvedge/shop/#"]);
    let source = format!("file:{}", repo().join("models/samples").display());
    // The region of interest is only what is classified: the whole frame is saved.
    let daemon = Running::start(capture_config(port, "shop", dir.path(), &source, "roi = [0, 0, 64, 64]\n"));
    assert!(sub.wait_topic("cvedge/shop/door/predictions", WAIT).is_some(), "daemon not classifying");

    sub.publish("cvedge/shop/door/capture", r#"{"tag": "cat", "count": 3}"#, false);
    let report = final_report(&sub, "cvedge/shop/door/capture/result");
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!((report["tag"].as_str(), report["requested"].as_u64(), report["saved"].as_u64(), report["errors"].as_u64()), (Some("cat"), Some(3), Some(3), Some(0)), "{report}");

    let saved = images_in(&dir.path().join("data/cat"));
    assert_eq!(saved.len(), 3, "{saved:?}");
    let samples: Vec<Vec<u8>> = images_in(&repo().join("models/samples")).iter().filter(|p| p.extension().is_some_and(|e| e == "jpg")).map(|p| std::fs::read(p).unwrap()).collect();
    let bytes: Vec<Vec<u8>> = saved.iter().map(|p| std::fs::read(p).unwrap()).collect();
    for (path, b) in saved.iter().zip(&bytes) {
        assert!(samples.contains(b), "{} is not a source frame's JPEG bytes as they were", path.display());
        assert_eq!(path.extension().unwrap(), "jpg");
    }
    assert!(bytes[0] != bytes[1] && bytes[1] != bytes[2] && bytes[0] != bytes[2], "the same frame was saved twice");

    assert!(daemon.classifies(3), "classification stopped after the capture");
    assert!(!dir.path().join("data/.review").exists(), "review frames were kept although review is off");
    daemon.stop();
}

#[test]
fn bad_capture_commands_are_refused_and_reported_and_the_daemon_goes_on() {
    let port = broker::rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "prankster", false, &["cvedge/lab/#"]);
    let daemon = Running::start(capture_config(port, "lab", dir.path(), "synthetic:64x64@10", ""));
    assert!(sub.wait_topic("cvedge/lab/door/predictions", WAIT).is_some(), "daemon not classifying");
    let result = "cvedge/lab/door/capture/result";
    let refused = |n: u64| broker::wait_until(WAIT, || daemon.counters.stats().refused_commands >= n);

    sub.publish("cvedge/lab/door/capture", "cat please", false);
    let report = final_report(&sub, result);
    assert_eq!(report["state"], "refused", "{report}");
    let why = report["last_error"].as_str().unwrap();
    assert!(why.contains("cannot read") && why.contains(r#"{"tag": "TAG", "count": N}"#), "{why}");

    sub.publish("cvedge/lab/door/capture", r#"{"tag": "../x", "count": 2}"#, false);
    let report = final_report(&sub, result);
    assert_eq!((report["state"].as_str(), report["tag"].as_str()), (Some("refused"), Some("../x")), "{report}");
    assert!(report["last_error"].as_str().unwrap().contains("cannot be a tag"), "{report}");

    sub.publish("cvedge/lab/garage/capture", r#"{"tag": "cat"}"#, false);
    sub.publish("cvedge/lab/command", "reboot", false);
    assert!(refused(4), "refused: {:?}", daemon.counters.stats());
    assert!(sub.drain().iter().all(|m| m.topic != "cvedge/lab/garage/capture/result"), "an unknown camera got a result topic");

    // A write error (as from a full disk: here the tag's folder cannot be made) fails the
    // capture, with the reason, and nothing else.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("blocked"), "a file where the tag folder should be").unwrap();
    sub.publish("cvedge/lab/door/capture", r#"{"tag": "blocked", "count": 5}"#, false);
    let report = final_report(&sub, result);
    assert_eq!((report["state"].as_str(), report["saved"].as_u64(), report["errors"].as_u64()), (Some("failed"), Some(0), Some(3)), "{report}");
    assert!(report["last_error"].as_str().unwrap().contains("blocked"), "{report}");

    // Still classifying, still obeying: a good command after the bad ones is carried out.
    assert!(daemon.classifies(3), "classification stopped");
    sub.publish("cvedge/lab/door/capture", r#"{"tag": "ok"}"#, false);
    let report = final_report(&sub, result);
    assert_eq!((report["state"].as_str(), report["saved"].as_u64()), (Some("done"), Some(1)), "{report}");
    let folders: Vec<_> = std::fs::read_dir(&data).unwrap().flatten().filter(|e| e.path().is_dir()).map(|e| e.file_name()).collect();
    assert_eq!(folders, ["ok"], "only the good tag has a folder");
    assert!(!dir.path().join("x").exists());
    assert_eq!(images_in(&data.join("ok")).len(), 1);
    daemon.stop();
}

#[test]
fn review_keeps_at_most_max_images_of_the_unsure_frames() {
    let port = broker::rumqttd();
    let dir = tempfile::tempdir().unwrap();
    // below = 1.0: every frame is unsure; interval_s = 0: no rate limit, so the folder overflows.
    let config = capture_config(port, "rev", dir.path(), "synthetic:64x64@20", "[review]\nbelow = 1.0\nmax_images = 3\ninterval_s = 0\n");
    let daemon = Running::start(config);
    let review = dir.path().join("data/.review/door");
    let mut first = None;
    let rotated = broker::wait_until(WAIT, || {
        let files = images_in(&review);
        assert!(files.len() <= 3, "{} review images: {files:?}", files.len());
        if files.len() == 3 && first.is_none() {
            first = Some(files[0].clone());
        }
        first.as_ref().is_some_and(|f| !f.exists())
    });
    assert!(rotated, "the review folder never filled and rotated: {:?}", images_in(&review));
    assert!(images_in(&review).iter().all(|p| p.extension().unwrap() == "png"), "raw frames are kept as PNG");
    assert!(!dir.path().join("data").read_dir().unwrap().flatten().any(|e| !e.file_name().to_string_lossy().starts_with('.')), "review frames are not a tag");
    daemon.stop();
    assert!(images_in(&review).len() <= 3);
}

/// Five slightly different crops of a bundled photo per tag, under `data/<tag>/`.
fn tagged_crops(data: &std::path::Path, tags: &[&str]) {
    for tag in tags {
        let path = repo().join(format!("models/samples/{tag}.jpg"));
        let photo = cvedge::source::decode(&std::fs::read(&path).unwrap(), "sample").unwrap();
        std::fs::create_dir_all(data.join(tag)).unwrap();
        for i in 0..5u32 {
            let (w, h) = (photo.width() * (90 - i * 4) / 100, photo.height() * (90 - i * 4) / 100);
            image::imageops::crop_imm(&photo, i * 7, i * 5, w, h).to_image().save(data.join(tag).join(format!("{i}.png"))).unwrap();
        }
    }
}

/// Trains an iteration with the CLI and returns its id.
fn train_iteration(data: &std::path::Path, iterations: &std::path::Path) -> String {
    let run = cvedge(&["train", "--model", "models/demo", "--folds", "0", "--json", "--data", data.to_str().unwrap(), "--iterations", iterations.to_str().unwrap()]);
    assert!(run.ok(), "{}", run.stderr);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    report["id"].as_str().unwrap().to_owned()
}

/// A daemon whose model is an iterations folder follows `cvedge iterations publish`: the next
/// predictions carry the new iteration's id and tags, numbering carries on without a gap, the
/// MQTT session is never dropped, and Home Assistant is told the new tags.
#[test]
fn a_running_daemon_hot_swaps_to_the_published_iteration() {
    let port = broker::rumqttd();
    let dir = tempfile::tempdir().unwrap();
    let iterations = dir.path().join("iterations");
    tagged_crops(&dir.path().join("pets"), &["cat", "dog"]);
    tagged_crops(&dir.path().join("things"), &["coffee", "rocket"]);
    let pets = train_iteration(&dir.path().join("pets"), &iterations);
    let things = train_iteration(&dir.path().join("things"), &iterations);
    let store = cvedge::iteration::Store::open(&iterations).unwrap();
    store.publish(1).unwrap();

    let sub = Subscriber::connect(port, "watcher", false, &["cvedge/#", "homeassistant/#"]);
    let text = format!(
        "model = \"{}\"\ndevice = \"swap\"\nstate_dir = \"{}\"\nconsecutive = 1\n[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\n\
         [[camera]]\nname = \"door\"\nsource = \"file:{}\"\nfps = 20\n",
        iterations.display(),
        dir.path().join("state").display(),
        repo().join("models/samples").display()
    );
    let running = Running::start(Config::parse(&text, "test").unwrap());
    let prediction = |m: &broker::Received| m.topic == "cvedge/swap/door/predictions";
    let first = json(&sub.wait_for(WAIT, prediction).expect("predictions"));
    assert_eq!(first["iteration"], pets.as_str());
    store.publish(2).unwrap();
    let mut seqs = vec![first["seq"].as_u64().unwrap()];
    let mut online = 0;
    let mut discovery_tags = vec![];
    loop {
        let m = sub.wait_for(WAIT, |_| true).expect("the daemon never switched to the published iteration");
        if m.topic == "cvedge/swap/status" && m.text() == "online" {
            online += 1;
        }
        if m.topic == "homeassistant/device/swap/config" {
            discovery_tags.push(m.text());
        }
        if prediction(&m) {
            let p = json(&m);
            seqs.push(p["seq"].as_u64().unwrap());
            if p["iteration"] == things.as_str() {
                let tags: Vec<&str> = p["predictions"].as_array().unwrap().iter().map(|t| t["tagName"].as_str().unwrap()).collect();
                assert!(tags.contains(&"coffee") && tags.contains(&"rocket") && tags.len() == 2, "{p}");
                break;
            }
            assert_eq!(p["iteration"], pets.as_str(), "only the two published iterations ever classify");
        }
    }
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "numbering must carry on without a gap: {seqs:?}");
    assert!(online <= 1, "the MQTT session was dropped ({online} online messages after start)");
    // The discovery is sent before the swap, but the broker serves our two subscriptions in
    // turn, so it may arrive after the first prediction of the new iteration.
    let told = discovery_tags.iter().any(|d| d.contains("rocket"))
        || sub.wait_for(WAIT, |m| m.topic == "homeassistant/device/swap/config" && m.text().contains("rocket")).is_some();
    assert!(told, "Home Assistant was not told the new tags: {discovery_tags:?}");
    running.stop();
}

/// `cvedge run` printing its predictions: returns the seqs it printed and its stderr once it has
/// exited after SIGTERM (asserting it exited 0 within 15 s).
fn run_then_sigterm(state: &std::path::Path, port: u16, frames: usize) -> (Vec<u64>, String) {
    use std::io::BufRead;
    let mut child = KillOnDrop(Command::new(env!("CARGO_BIN_EXE_cvedge"))
        .args(["run", "--model", "models/demo", "--source", "door=synthetic:64x64@10", "--device", "full", "--print"])
        .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}"), "--state-dir", state.to_str().unwrap()])
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap());
    let mut seqs = vec![];
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    while seqs.len() < frames {
        let line = lines.next().expect("the daemon stopped printing predictions").unwrap();
        seqs.push(serde_json::from_str::<serde_json::Value>(&line).unwrap()["seq"].as_u64().unwrap());
    }
    let status = sigterm_and_wait(&mut child, Duration::from_secs(15));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "a clean stop with the broker away is not an error: {status}: {stderr}");
    (seqs, stderr)
}

/// The state folder's disk fills up (captures on the same SD card) and the Pi reboots: the daemon
/// still starts and classifies (its counters are rewritten in place, the outbox is kept in
/// memory), numbering carries on, and stopping while the broker is away says what happens to the
/// predictions not yet delivered instead of failing.
#[test]
fn a_daemon_starts_on_a_full_disk_and_stops_cleanly_with_the_broker_away() {
    let Some(disk) = Tmpfs::mount("1m") else { return };
    let state = disk.path().join("state");
    let nobody = broker::NOBODY; // no broker there: everything waits in the outbox
    let (first, stderr) = run_then_sigterm(&state, nobody, 3);
    assert!(stderr.contains("sent after the next start"), "{stderr}");
    disk.fill();
    let (second, stderr) = run_then_sigterm(&state, nobody, 3);
    assert!(second[0] > *first.last().unwrap(), "seq reused after a restart: {first:?} then {second:?}");
    assert!(stderr.contains("disk is full") || stderr.contains("No space left"), "the full outbox disk is not reported: {stderr}");
    assert!(stderr.contains("are lost"), "predictions kept only in memory must be said to be lost at stop: {stderr}");
}
