//! Real brokers for the MQTT tests, on loopback ports: rumqttd inside the test process, mosquitto
//! as a child process (restartable), and a plain rumqttc subscriber to watch what arrives.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use rumqttc::{Event, Incoming, MqttOptions, QoS};

/// A loopback port where nothing listens: tcpmux's, which no test and no service of ours binds
/// (a port found free and released could be taken again by the time it is used).
pub const NOBODY: u16 = 1;

/// How long a broker may take to listen, and the test subscriber to subscribe: generous, for a
/// loaded CI machine (a passing run waits only as long as it takes).
const START: Duration = Duration::from_secs(30);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Starts rumqttd in this process on a free loopback port; it runs until the test process ends
/// (rumqttd has no stop).
pub fn rumqttd() -> u16 {
    let port = free_port();
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: 1 << 20,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: format!("v4-{port}"),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = rumqttd::Config {
        router: rumqttd::RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 1 << 20,
            max_segment_count: 10,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    thread::spawn(move || {
        let _ = rumqttd::Broker::new(config).start();
    });
    assert!(wait_listening(port, START), "rumqttd did not start listening on {port}");
    port
}

/// mosquitto as a child process with its own config in a temp dir; `None` (and a message saying
/// the test is skipped) when it is not installed. CI installs it.
pub struct Mosquitto {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    binary: PathBuf,
}

impl Mosquitto {
    /// `persistence`: keep retained messages and persistent sessions across restarts.
    pub fn start(persistence: bool) -> Option<Mosquitto> {
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())?;
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        // mosquitto started as root switches to the `mosquitto` user, which cannot write our temp
        // dir: tell it to stay who we are.
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence {persistence}\npersistence_location {}/\nautosave_interval 0\nmax_queued_messages 10000\nlog_dest file {}/mosquitto.log\n{}",
            dir.path().display(),
            dir.path().display(),
            if user.is_empty() { String::new() } else { format!("user {user}\n") }
        );
        std::fs::write(dir.path().join("mosquitto.conf"), config).unwrap();
        let mut m = Mosquitto { port, child: None, dir, binary };
        m.run();
        Some(m)
    }

    fn run(&mut self) {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run mosquitto");
        self.child = Some(child);
        assert!(wait_listening(self.port, START), "mosquitto did not start on {}: {}", self.port, self.log());
    }

    /// SIGTERM, as systemd stops it: mosquitto saves its persistence file on the way out.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                thread::sleep(Duration::from_millis(10));
            }
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the broker stays connected but reads nothing, so nothing is acknowledged.
    pub fn freeze(&self) {
        let child = self.child.as_ref().expect("running");
        assert!(Command::new("kill").arg("-STOP").arg(child.id().to_string()).status().unwrap().success());
    }

    /// SIGKILL: what the broker had not processed (or saved) is gone.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.run();
    }

    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// mosquitto with a config of the caller's own (listeners, TLS, passwords): `config` gets
    /// the temp dir (to write certificates or a password file into) and returns the config's
    /// body; logging and `user` are added here. `ports` are the listeners' ports, all waited for;
    /// the first becomes `port`. `None` when mosquitto is not installed.
    pub fn start_configured(ports: &[u16], config: impl FnOnce(&std::path::Path) -> String) -> Option<Mosquitto> {
        let binary = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())?;
        let dir = tempfile::tempdir().unwrap();
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let body = config(dir.path());
        let config = format!(
            "persistence false\nlog_dest file {}/mosquitto.log\nlog_type all\n{}{body}\n",
            dir.path().display(),
            if user.is_empty() { String::new() } else { format!("user {user}\n") }
        );
        std::fs::write(dir.path().join("mosquitto.conf"), config).unwrap();
        let mut m = Mosquitto { port: ports[0], child: None, dir, binary };
        m.run();
        for &port in &ports[1..] {
            assert!(wait_listening(port, START), "mosquitto did not listen on {port}: {}", m.log());
        }
        Some(m)
    }

    /// The broker's temp dir (config, log, whatever `start_configured` put there).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Skips the calling test (returning) when mosquitto is not installed.
#[macro_export]
macro_rules! mosquitto_or_skip {
    ($persistence:expr) => {
        match broker::Mosquitto::start($persistence) {
            Some(m) => m,
            None => {
                eprintln!("skipped: mosquitto not installed");
                return;
            }
        }
    };
}

#[derive(Debug, Clone)]
pub struct Received {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// A plain rumqttc client that subscribes (again on every reconnect) and collects what arrives.
pub struct Subscriber {
    pub client: rumqttc::Client,
    messages: Receiver<Received>,
    stop: Arc<AtomicBool>,
}

impl Subscriber {
    /// `persistent`: clean_session = false, so the broker queues QoS 1 messages while we are away.
    pub fn connect(port: u16, id: &str, persistent: bool, filters: &[&str]) -> Subscriber {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_clean_session(!persistent).set_keep_alive(Duration::from_secs(5)).set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = rumqttc::Client::new(options, 100);
        let (tx, messages) = crossbeam_channel::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let (filters, subscriber, stopping) =
            (filters.iter().map(|f| f.to_string()).collect::<Vec<_>>(), client.clone(), stop.clone());
        let (connected_tx, connected) = crossbeam_channel::bounded(1);
        thread::spawn(move || {
            for event in connection.iter() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                match event {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        for f in &filters {
                            subscriber.try_subscribe(f.clone(), QoS::AtLeastOnce).unwrap();
                        }
                    }
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = connected_tx.try_send(());
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let _ = tx.send(Received { topic: p.topic.clone(), payload: p.payload.to_vec(), retain: p.retain });
                    }
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_millis(50)),
                }
            }
        });
        connected.recv_timeout(START).expect("the test subscriber could not subscribe");
        Subscriber { client, messages, stop }
    }

    /// The first message (from now on) that `matches`, or `None` after `within`.
    pub fn wait_for(&self, within: Duration, mut matches: impl FnMut(&Received) -> bool) -> Option<Received> {
        let deadline = Instant::now() + within;
        loop {
            match self.messages.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) if matches(&m) => return Some(m),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    pub fn wait_topic(&self, topic: &str, within: Duration) -> Option<Received> {
        self.wait_for(within, |m| m.topic == topic)
    }

    /// Everything received so far.
    pub fn drain(&self) -> Vec<Received> {
        self.messages.try_iter().collect()
    }

    pub fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client.publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec()).unwrap();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.client.try_disconnect();
    }
}

/// Polls `done` until it holds or `within` passes; returns whether it held.
pub fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    done()
}
