//! The MQTT publisher against real brokers on loopback: rumqttd in this process and mosquitto as
//! a child process (tests needing it say `skipped` when it is not installed). A plain rumqttc
//! client subscribes and checks what arrives. Killed publishers are child processes: this test
//! binary run again with `CVEDGE_MQTT_CHILD` set (see `child_publisher`).

mod broker;
use broker::wait_until;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::{Received, Subscriber};
use cvedge::sink::mqtt::{discovery_payload, MqttError, MqttSettings, Publisher};

const WAIT: Duration = Duration::from_secs(30);

fn settings(port: u16, device: &str, outbox: &Path) -> MqttSettings {
    let mut s = MqttSettings::new(format!("mqtt://127.0.0.1:{port}").parse().unwrap(), device, outbox);
    s.keep_alive = Duration::from_secs(5);
    s.reconnect_min = Duration::from_millis(50);
    s.reconnect_max = Duration::from_millis(400);
    s
}

fn text(m: Option<Received>) -> Option<String> {
    m.map(|m| m.text())
}


#[test]
fn predictions_state_and_status_arrive_on_their_topics() {
    let port = broker::rumqttd();
    let outbox = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "watcher", false, &["cvedge/pi1/#"]);
    let publisher = Publisher::start(settings(port, "pi1", outbox.path())).unwrap();
    assert_eq!(text(sub.wait_topic("cvedge/pi1/status", WAIT)).as_deref(), Some("online"));

    publisher.prediction("door", br#"{"seq":1}"#.to_vec()).unwrap();
    publisher.state("door", br#"{"state":"cat"}"#.to_vec());
    publisher.camera_status("door", true);
    let p = sub.wait_topic("cvedge/pi1/door/predictions", WAIT).expect("prediction");
    assert_eq!((p.text().as_str(), p.retain), (r#"{"seq":1}"#, false));
    assert_eq!(text(sub.wait_topic("cvedge/pi1/door/state", WAIT)).as_deref(), Some(r#"{"state":"cat"}"#));
    assert_eq!(text(sub.wait_topic("cvedge/pi1/door/status", WAIT)).as_deref(), Some("online"));
    assert!(
        wait_until(WAIT, || publisher.stats().delivered == 1 && publisher.stats().outbox_depth == 0),
        "{:?}",
        publisher.stats()
    );
    assert_eq!(
        std::fs::read_dir(outbox.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "msg"))
            .count(),
        0
    );

    // Retained: a subscriber arriving later still gets availability and state.
    let late = Subscriber::connect(port, "late", false, &["cvedge/pi1/+/state", "cvedge/pi1/status"]);
    let mut seen = [late.wait_for(WAIT, |_| true).unwrap(), late.wait_for(WAIT, |_| true).unwrap()];
    seen.sort_by(|a, b| a.topic.cmp(&b.topic));
    assert_eq!((seen[0].topic.as_str(), seen[0].retain), ("cvedge/pi1/door/state", true));
    assert_eq!((seen[1].text().as_str(), seen[1].retain), ("online", true));

    publisher.shutdown(WAIT).unwrap();
    assert_eq!(text(sub.wait_topic("cvedge/pi1/status", WAIT)).as_deref(), Some("stopped"));
}

#[test]
fn start_returns_at_once_with_the_broker_down_and_delivers_once_it_is_up() {
    let outbox = tempfile::tempdir().unwrap();
    let port = broker::NOBODY;
    // Returns with nothing to connect to (a start that waited for the broker would never return).
    let publisher = Publisher::start(settings(port, "pi2", outbox.path())).unwrap();
    for seq in 0..5 {
        publisher.prediction("cam", format!("{seq}").into_bytes()).unwrap();
    }
    let stats = publisher.stats();
    assert!(!stats.connected && stats.outbox_depth == 5, "{stats:?}");
    let left = publisher.shutdown(Duration::from_millis(300)).unwrap_err();
    assert!(matches!(left, MqttError::Undelivered { left: 5, .. }), "{left}");

    // The next start, this time with a broker, sends what the last one left.
    let port = broker::rumqttd();
    let sub = Subscriber::connect(port, "watcher", false, &["cvedge/pi2/cam/predictions"]);
    let publisher = Publisher::start(settings(port, "pi2", outbox.path())).unwrap();
    let got: Vec<String> = (0..5).filter_map(|_| text(sub.wait_for(WAIT, |_| true))).collect();
    assert_eq!(got, ["0", "1", "2", "3", "4"]);
    publisher.shutdown(WAIT).unwrap();
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let outbox = tempfile::tempdir().unwrap();
    let mut s = settings(broker::NOBODY, "pi3", outbox.path());
    s.device = "a/b".into();
    let message = Publisher::start(s).err().unwrap().to_string();
    assert!(message.contains("device") && message.contains("cannot contain /"), "{message}");

    let publisher = Publisher::start(settings(broker::NOBODY, "pi3", outbox.path())).unwrap();
    let message = publisher.prediction("cam/+", vec![]).unwrap_err().to_string();
    assert!(message.contains("camera"), "{message}");
    let big = vec![b'x'; cvedge::sink::mqtt::MAX_PACKET_SIZE];
    assert!(matches!(publisher.prediction("cam", big), Err(MqttError::TooLarge { .. })));
    assert_eq!(publisher.stats().outbox_depth, 0);
}

#[test]
fn dropping_the_publisher_without_shutdown_leaves_the_last_will() {
    let port = broker::rumqttd();
    let outbox = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "watcher", false, &["cvedge/pi4/status"]);
    let publisher = Publisher::start(settings(port, "pi4", outbox.path())).unwrap();
    assert_eq!(text(sub.wait_topic("cvedge/pi4/status", WAIT)).as_deref(), Some("online"));
    drop(publisher);
    assert_eq!(text(sub.wait_topic("cvedge/pi4/status", WAIT)).as_deref(), Some("offline"));
}

#[test]
fn discovery_is_sent_on_connect_and_again_when_home_assistant_comes_online() {
    let port = broker::rumqttd();
    let outbox = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "ha", false, &["homeassistant/device/#"]);
    let mut s = settings(port, "pi5", outbox.path());
    s.discovery_prefix = Some("homeassistant".into());
    let publisher = Publisher::start(s).unwrap();
    let tags = vec!["cat".to_string(), "dog".to_string()];
    let payload = discovery_payload("pi5", "cvedge", &[("door", &tags)], "0.1.0");
    // Bigger than rumqttc's default 10 KiB limit once there are many tags.
    assert!(payload.len() > 1000);
    publisher.set_discovery(payload.clone());
    let first = sub.wait_topic("homeassistant/device/pi5/config", WAIT).expect("discovery");
    assert_eq!(first.payload, payload);
    let config: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(config["cmps"]["cvedge_pi5_door"]["state_topic"], "cvedge/pi5/door/state");

    // Home Assistant restarts: it announces itself, we announce ourselves again.
    sub.drain();
    sub.publish("homeassistant/status", "online", false);
    assert!(sub.wait_topic("homeassistant/device/pi5/config", WAIT).is_some(), "discovery not re-sent");
    publisher.shutdown(WAIT).unwrap();
}

#[test]
fn large_discovery_messages_pass() {
    let port = broker::rumqttd();
    let outbox = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "ha", false, &["homeassistant/device/#"]);
    let mut s = settings(port, "pi6", outbox.path());
    s.discovery_prefix = Some("homeassistant".into());
    let publisher = Publisher::start(s).unwrap();
    let tags: Vec<String> = (0..100).map(|i| format!("tag number {i}")).collect();
    let payload = discovery_payload("pi6", "cvedge", &[("a", &tags), ("b", &tags)], "0.1.0");
    assert!(payload.len() > 10 * 1024, "{} bytes", payload.len());
    publisher.set_discovery(payload.clone());
    assert_eq!(sub.wait_topic("homeassistant/device/pi6/config", WAIT).map(|m| m.payload.len()), Some(payload.len()));
    publisher.shutdown(WAIT).unwrap();
}

// ---- mosquitto ----

#[test]
fn commands_and_retained_state_survive_broker_restarts() {
    // No persistence: after a restart the broker has forgotten every retained message and
    // subscription, so whatever arrives afterwards was re-sent by the publisher.
    let mut mosquitto = mosquitto_or_skip!(false);
    let outbox = tempfile::tempdir().unwrap();
    let publisher = Publisher::start(settings(mosquitto.port, "pi7", outbox.path())).unwrap();
    let commands = publisher.commands();
    assert!(wait_until(WAIT, || publisher.stats().connected));
    publisher.state("door", b"cat".to_vec());
    publisher.camera_status("door", true);

    for round in 0..2 {
        let sub = Subscriber::connect(mosquitto.port, "watcher", false, &["cvedge/pi7/#"]);
        assert_eq!(text(sub.wait_topic("cvedge/pi7/door/state", WAIT)).as_deref(), Some("cat"), "round {round}");
        // The subscription is made on connect, so wait for the (re)connection before commanding.
        for (topic, payload) in [("cvedge/pi7/command", "reload"), ("cvedge/pi7/door/capture", "now")] {
            let deadline = Instant::now() + WAIT;
            let got = loop {
                sub.publish(topic, payload, false);
                if let Ok(got) = commands.recv_timeout(Duration::from_millis(200)) {
                    break Some(got);
                }
                if Instant::now() > deadline {
                    break None;
                }
            };
            assert_eq!(got, Some((topic.to_string(), payload.as_bytes().to_vec())), "round {round}");
            while commands.try_recv().is_ok() {}
        }
        drop(sub);
        mosquitto.restart();
        // Not just `connected`: that may still be the old session, its EOF not yet read.
        assert!(wait_until(WAIT, || { let s = publisher.stats(); s.connected && s.reconnects > round as u64 }), "no reconnect: {}", mosquitto.log());
    }
    assert!(publisher.stats().reconnects >= 2, "{:?}", publisher.stats());
    let sub = Subscriber::connect(mosquitto.port, "watcher", false, &["cvedge/pi7/#"]);
    let status = sub.wait_topic("cvedge/pi7/status", WAIT).expect("status after restart");
    assert_eq!((status.text().as_str(), status.retain), ("online", true));
    publisher.shutdown(WAIT).unwrap();
    assert_eq!(text(sub.wait_topic("cvedge/pi7/status", WAIT)).as_deref(), Some("stopped"));
}

#[test]
fn every_prediction_arrives_at_least_once_across_broker_restarts() {
    // The subscriber keeps a persistent session (clean_session = false, QoS 1) on a broker with
    // persistence, stopped with SIGTERM so it saves its queues: whatever the broker acknowledged
    // to the publisher is queued for the subscriber and survives the restart, including what
    // arrived while the subscriber itself was reconnecting. So a missing seq can only be a
    // prediction the publisher lost.
    let mut mosquitto = mosquitto_or_skip!(true);
    let outbox = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(mosquitto.port, "watcher", true, &["cvedge/pi8/cam/predictions"]);
    let publisher = Publisher::start(settings(mosquitto.port, "pi8", outbox.path())).unwrap();
    const N: usize = 200;
    let mut restarts = 0;
    for seq in 0..N {
        publisher.prediction("cam", format!("{seq}").into_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        if seq % 50 == 25 {
            // Down for a while, with predictions queued meanwhile.
            mosquitto.stop();
            for extra in 0..3 {
                publisher.prediction("cam", format!("{seq}.{extra}").into_bytes()).unwrap();
            }
            std::thread::sleep(Duration::from_millis(200));
            mosquitto.restart();
            restarts += 1;
            // Each outage its own: stopped again before the publisher is back, two outages
            // would make one reconnect.
            assert!(wait_until(WAIT, || publisher.stats().reconnects >= restarts), "no reconnect after restart {restarts}: {:?}", publisher.stats());
        }
    }
    assert!(restarts >= 3);
    let mut missing: BTreeSet<String> = (0..N).map(|s| s.to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !missing.is_empty() && Instant::now() < deadline {
        if let Some(m) = sub.wait_for(Duration::from_millis(200), |_| true) {
            missing.remove(&m.text());
        }
    }
    assert!(missing.is_empty(), "never arrived: {missing:?}; stats {:?}", publisher.stats());
    assert!(wait_until(WAIT, || publisher.stats().outbox_depth == 0), "{:?}", publisher.stats());
    let stats = publisher.stats();
    assert!(stats.reconnects >= 3 && stats.dropped == 0 && stats.delivered >= N as u64 + 12, "{stats:?}");
    publisher.shutdown(WAIT).unwrap();
}

#[test]
fn predictions_in_flight_when_the_broker_dies_are_sent_again() {
    let mut mosquitto = mosquitto_or_skip!(false);
    let outbox = tempfile::tempdir().unwrap();
    let mut s = settings(mosquitto.port, "pi10", outbox.path());
    // Slow enough to reconnect (the first retry 2-4 s after the crash, jittered) that the watcher
    // below subscribes first on the new, empty broker, even on a loaded machine.
    (s.reconnect_min, s.reconnect_max) = (Duration::from_secs(4), Duration::from_secs(4));
    let publisher = Publisher::start(s).unwrap();
    assert!(wait_until(WAIT, || publisher.stats().connected));
    // Written to the socket, never read by the broker: in flight, unacknowledged.
    mosquitto.freeze();
    for seq in 0..10 {
        publisher.prediction("cam", format!("{seq}").into_bytes()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(publisher.stats().outbox_depth, 10);
    mosquitto.crash();
    mosquitto.start_again();
    let sub = Subscriber::connect(mosquitto.port, "watcher", false, &["cvedge/pi10/cam/predictions"]);
    let got: Vec<String> = (0..10).filter_map(|_| text(sub.wait_for(WAIT, |_| true))).collect();
    assert_eq!(got, (0..10).map(|s| s.to_string()).collect::<Vec<_>>());
    assert!(wait_until(WAIT, || publisher.stats().outbox_depth == 0));
    publisher.shutdown(WAIT).unwrap();
}

#[test]
fn a_killed_publisher_leaves_offline_and_its_successor_sends_what_it_stored() {
    let mosquitto = mosquitto_or_skip!(false);
    let outbox = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(mosquitto.port, "watcher", false, &["cvedge/pi9/#"]);
    // Connected child: kill -9 must make the broker publish the last will.
    let mut child = spawn_child(mosquitto.port, outbox.path(), 0);
    assert_eq!(text(sub.wait_topic("cvedge/pi9/status", WAIT)).as_deref(), Some("online"));
    child.kill().unwrap();
    child.wait().unwrap();
    let will = sub.wait_topic("cvedge/pi9/status", WAIT).expect("last will");
    assert_eq!(will.text(), "offline");

    // Disconnected child: it stores predictions, is killed; the next start delivers them.
    let mut child = spawn_child(broker::NOBODY, outbox.path(), 20);
    child.kill().unwrap();
    child.wait().unwrap();
    let publisher = Publisher::start(settings(mosquitto.port, "pi9", outbox.path())).unwrap();
    let got: Vec<String> =
        (0..20).filter_map(|_| text(sub.wait_for(WAIT, |m| m.topic == "cvedge/pi9/cam/predictions"))).collect();
    assert_eq!(got, (0..20).map(|s| s.to_string()).collect::<Vec<_>>());
    publisher.shutdown(WAIT).unwrap();
}

#[test]
fn a_killed_publisher_leaves_offline_on_rumqttd_too() {
    let port = broker::rumqttd();
    let outbox = tempfile::tempdir().unwrap();
    let sub = Subscriber::connect(port, "watcher", false, &["cvedge/pi9/status"]);
    let mut child = spawn_child(port, outbox.path(), 0);
    assert_eq!(text(sub.wait_topic("cvedge/pi9/status", WAIT)).as_deref(), Some("online"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(text(sub.wait_topic("cvedge/pi9/status", WAIT)).as_deref(), Some("offline"));
}

/// Runs `child_publisher` in a new process and waits until it says it is ready: connected (if
/// `predictions` is 0) or with `predictions` stored in the outbox.
fn spawn_child(port: u16, outbox: &Path, predictions: usize) -> Child {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_publisher", "--nocapture", "--test-threads=1"])
        .env("CVEDGE_MQTT_CHILD", format!("{port} {} {predictions}", outbox.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if line.as_deref().map(|l| l.contains("CHILD READY")).unwrap_or(false) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(WAIT).is_err() {
        let _ = child.kill();
        panic!("the child publisher never got ready");
    }
    child
}

#[test]
#[ignore = "helper: run as a child process by the tests that kill a publisher"]
fn child_publisher() {
    let Ok(spec) = std::env::var("CVEDGE_MQTT_CHILD") else {
        panic!("run by spawn_child only (CVEDGE_MQTT_CHILD is not set)");
    };
    let parts: Vec<&str> = spec.split(' ').collect();
    let (port, outbox, predictions): (u16, &str, usize) = (parts[0].parse().unwrap(), parts[1], parts[2].parse().unwrap());
    let publisher = Publisher::start(settings(port, "pi9", Path::new(outbox))).unwrap();
    if predictions == 0 {
        assert!(wait_until(WAIT, || publisher.stats().connected));
    }
    for seq in 0..predictions {
        publisher.prediction("cam", format!("{seq}").into_bytes()).unwrap();
    }
    println!("CHILD READY");
    std::thread::sleep(Duration::from_secs(60));
}
