//! What an operator's secrets and network exposure look like from outside: the daemon's whole log
//! at the most verbose level never shows a password, key or camera credential, even on the paths
//! that report failures; `cvedge serve` answers only loopback unless told otherwise.
//! (TLS against a local CA and MQTT passwords at the library level: tests/mqtt_tls.rs; capture
//! commands that try to leave the data folder: tests/daemon_mqtt.rs.)

mod broker;
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::wait_until;
use common::serve::{get, listening, post_with, sample};
use common::*;

const MQTT_PASSWORD: &str = "Mqtt-secret-4f1d";
const API_KEY: &str = "Api-secret-9b2e";
const CAMERA_PASSWORD: &str = "Cam-secret-7c3a";

/// An IP camera that wants a password cvedge does not have: every request gets 401, so the
/// daemon's reconnect-and-report path runs (and logs) again and again.
fn locked_camera() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"cam\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    port
}


#[test]
fn no_secret_reaches_the_log_even_at_trace_level() {
    let port = broker::rumqttd();
    let camera = locked_camera();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cvedge.toml");
    std::fs::write(
        &config,
        format!(
            r#"model = "models/demo"
device = "vault"
data_dir = "{data}"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
username = "cvedge"
password = "${{VAULT_MQTT_PASSWORD}}"
[http]
addr = "127.0.0.1:0"
api_key = "{API_KEY}"
[[camera]]
name = "door"
source = "file:models/samples/cat.jpg"
interval_s = 0.2
[[camera]]
name = "gate"
source = "mjpeg:http://viewer:{CAMERA_PASSWORD}@127.0.0.1:{camera}/video"
"#,
            data = dir.path().join("data").display()
        ),
    )
    .unwrap();
    let sub = broker::Subscriber::connect(port, "vault-watcher", false, &["cvedge/vault/#"]);
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_cvedge"))
            .args(["run", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("RUST_LOG", "trace")
            .env("VAULT_MQTT_PASSWORD", MQTT_PASSWORD)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    let readers: Vec<_> = [Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, Box::new(child.stderr.take().unwrap())]
        .into_iter()
        .map(|stream| {
            let log = log.clone();
            std::thread::spawn(move || BufReader::new(stream).lines().map_while(Result::ok).for_each(|l| *log.lock().unwrap() += &(l + "\n")))
        })
        .collect();
    let seen = |text: &str| log.lock().unwrap().contains(text);
    assert!(wait_until(Duration::from_secs(60), || seen("live page on http://")), "the daemon never served:\n{}", log.lock().unwrap());
    let addr: SocketAddr = log.lock().unwrap().split("live page on http://").nth(1).unwrap().split('/').next().unwrap().parse().unwrap();

    // Every path that handles a secret runs: MQTT login and publishing, the camera's refusal (more
    // than once), an API request with the right key, one with a wrong key, one with none.
    assert!(sub.wait_topic("cvedge/vault/door/predictions", Duration::from_secs(30)).is_some(), "nothing published");
    let refusals = || log.lock().unwrap().matches("camera gate: cannot open mjpeg:http://127.0.0.1").count();
    assert!(wait_until(Duration::from_secs(30), || refusals() >= 2), "the camera's refusal was not logged twice:\n{}", log.lock().unwrap());
    let photo = sample("cat.jpg");
    let right = post_with(addr, "/image", &format!("Prediction-Key: {API_KEY}\r\nContent-Type: application/octet-stream\r\n"), &photo);
    assert_eq!(right.status, 200, "{}", right.text());
    let wrong = post_with(addr, "/image", "Prediction-Key: not-the-key\r\nContent-Type: application/octet-stream\r\n", &photo);
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let none = post_with(addr, "/image", "Content-Type: application/octet-stream\r\n", &photo);
    assert_eq!(none.status, 401, "{}", none.text());
    let metrics = get(addr, "/metrics");
    sigterm_and_wait(&mut child, Duration::from_secs(20));
    // The child has exited: its pipes are closed, so both readers have the whole log once joined.
    for reader in readers {
        reader.join().unwrap();
    }

    let log = log.lock().unwrap().clone();
    assert!(log.lines().filter(|l| l.contains("TRACE") || l.contains("DEBUG")).count() >= 10, "the log is not verbose, so it proves nothing:\n{log}");
    let published: Vec<String> = sub.drain().iter().map(|m| m.text()).collect();
    for (name, secret) in [
        ("MQTT password", MQTT_PASSWORD.to_string()),
        ("API key", API_KEY.to_string()),
        ("camera password", CAMERA_PASSWORD.to_string()),
        // base64 of "viewer:{CAMERA_PASSWORD}", as the Authorization header carries it.
        ("camera basic-auth header", "dmlld2VyOkNhbS1zZWNyZXQtN2MzYQ==".to_string()),
    ] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&secret)).collect();
        assert!(lines.is_empty(), "the {name} is in the log:\n{}", lines.join("\n"));
        assert!(!metrics.text().contains(&secret), "the {name} is in /metrics");
        assert!(published.iter().all(|p| !p.contains(&secret)), "the {name} was published over MQTT");
    }
}

/// The listening sockets (local address, port) the process `pid` holds, from /proc/net/tcp{,6}.
fn listening_sockets(pid: u32) -> Vec<(String, u16)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string))
        .collect();
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // State 0A is LISTEN; field 9 is the socket's inode.
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                let (address, port) = fields[1].split_once(':').unwrap();
                sockets.push((address.to_string(), u16::from_str_radix(port, 16).unwrap()));
            }
        }
    }
    sockets
}

#[test]
fn serve_without_an_address_answers_loopback_only() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_cvedge")).args(["serve", "--model", "models/demo"]).current_dir(repo()).stderr(Stdio::piped()).spawn().unwrap(),
    );
    assert_eq!(listening(&mut child, " on http://"), SocketAddr::from(([127, 0, 0, 1], 8080)), "is port 8080 taken?");
    // 127.0.0.1 in /proc/net/tcp's little-endian hex; nothing on 0.0.0.0 or any other address.
    assert_eq!(listening_sockets(child.id()), [("0100007F".to_string(), 8080)]);
    assert_eq!(get(SocketAddr::from(([127, 0, 0, 1], 8080)), "/health").status, 200);
}
