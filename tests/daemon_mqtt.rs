//! `cvedge run` against real brokers: what an MQTT subscriber and Home Assistant see, the last
//! will when the daemon is killed, and a camera stream that dies and comes back.

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
    let produced = daemon.stats().classified;
    daemon.stop().unwrap();
    drop(collect);
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
