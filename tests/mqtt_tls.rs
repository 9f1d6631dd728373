//! The MQTT publisher against a real mosquitto (child process on loopback) with TLS (rustls, ring
//! provider), client certificates and username/password. Certificates are made here with rcgen
//! (a throwaway CA, a server certificate for 127.0.0.1/localhost, a client certificate), so no
//! openssl binary is needed. A plain (anonymous, no TLS) listener on the same broker lets a
//! rumqttc subscriber watch what arrives. Tests say `skipped` when mosquitto is not installed.

mod broker;
use broker::wait_until;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use broker::{Mosquitto, Subscriber};
use cvedge::sink::mqtt::{MqttError, MqttSettings, Publisher};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

const WAIT: Duration = Duration::from_secs(30);
/// How long a publisher that must not connect is watched.
const NO_CONNECT: Duration = Duration::from_secs(3);

// ---- log capture: every `log` record of this process, to look for leaked passwords ----

struct Capture;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
}

fn logged() -> Vec<String> {
    LINES.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

// ---- certificates ----

struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// A CA that signed nothing the broker uses.
    other_ca: PathBuf,
    /// Signed by `ca`, but for another host (broker.example), not 127.0.0.1.
    misnamed_cert: PathBuf,
    misnamed_key: PathBuf,
}

fn make_ca(name: &str) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key).unwrap();
    (cert, key)
}

fn make_leaf(
    names: &[&str],
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    ca: &Certificate,
    ca_key: &KeyPair,
) -> (Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    // "127.0.0.1" becomes an IP address SAN, "localhost" a DNS name.
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert, key)
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pem: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (ca, ca_key) = make_ca("cvedge test CA");
    let (server, server_key) =
        make_leaf(&["127.0.0.1", "localhost"], "mosquitto", ExtendedKeyUsagePurpose::ServerAuth, &ca, &ca_key);
    let (client, client_key) = make_leaf(&[], "cvedge-client", ExtendedKeyUsagePurpose::ClientAuth, &ca, &ca_key);
    let (other, _) = make_ca("someone else's CA");
    let (misnamed, misnamed_key) = make_leaf(&["broker.example"], "broker.example", ExtendedKeyUsagePurpose::ServerAuth, &ca, &ca_key);
    Pki {
        misnamed_cert: write("misnamed.pem", misnamed.pem()),
        misnamed_key: write("misnamed.key", misnamed_key.serialize_pem()),
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", server.pem()),
        server_key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
        other_ca: write("other-ca.pem", other.pem()),
        _dir: dir,
    }
}

// ---- brokers ----

/// mosquitto with a TLS listener that requires a client certificate signed by `pki.ca` (port
/// `.1`) and a plain anonymous listener for the test's subscriber (port `.2`).
fn tls_mosquitto(pki: &Pki) -> Option<(Mosquitto, u16, u16)> {
    tls_mosquitto_with(pki, &pki.server_cert, &pki.server_key)
}

fn tls_mosquitto_with(pki: &Pki, server_cert: &Path, server_key: &Path) -> Option<(Mosquitto, u16, u16)> {
    let (tls, plain) = (broker::free_port(), broker::free_port());
    let m = Mosquitto::start_configured(&[tls, plain], |_| {
        format!(
            "allow_anonymous true\n\
             listener {tls} 127.0.0.1\n\
             cafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\nuse_identity_as_username false\n\
             listener {plain} 127.0.0.1\n",
            pki.ca.display(),
            server_cert.display(),
            server_key.display()
        )
    })?;
    Some((m, tls, plain))
}

/// mosquitto with a password-protected plain listener (port `.1`, only `user`/`password`) and an
/// anonymous one for the test's subscriber (port `.2`). `None` when mosquitto (or
/// mosquitto_passwd) is missing.
fn password_mosquitto(user: &str, password: &str) -> Option<(Mosquitto, u16, u16)> {
    let (locked, open) = (broker::free_port(), broker::free_port());
    let mut made = true;
    let m = Mosquitto::start_configured(&[locked, open], |dir| {
        let file = dir.join("passwd");
        made = Command::new("mosquitto_passwd")
            .arg("-b")
            .arg("-c")
            .arg(&file)
            .arg(user)
            .arg(password)
            .status()
            .is_ok_and(|s| s.success());
        format!(
            "per_listener_settings true\n\
             listener {locked} 127.0.0.1\nallow_anonymous false\npassword_file {}\n\
             listener {open} 127.0.0.1\nallow_anonymous true\n",
            file.display()
        )
    })?;
    if !made {
        eprintln!("skipped: mosquitto_passwd not installed (package mosquitto)");
        return None;
    }
    Some((m, locked, open))
}

macro_rules! or_skip {
    ($started:expr) => {
        match $started {
            Some(x) => x,
            None => {
                eprintln!("skipped: mosquitto not installed");
                return;
            }
        }
    };
}

// ---- helpers ----

fn settings(url: &str, device: &str, outbox: &Path) -> MqttSettings {
    let mut s = MqttSettings::new(url.parse().unwrap(), device, outbox);
    s.keep_alive = Duration::from_secs(5);
    s.reconnect_min = Duration::from_millis(100);
    s.reconnect_max = Duration::from_millis(500);
    s
}


/// `s` trusting `ca` and presenting the test's client certificate.
fn with_certificates(mut s: MqttSettings, ca: &Path, pki: &Pki) -> MqttSettings {
    s.ca_file = Some(ca.to_path_buf());
    s.client_cert = Some(pki.client_cert.clone());
    s.client_key = Some(pki.client_key.clone());
    s
}

/// Asserts that a publisher with `s` never connects to `broker`, keeping its one prediction, and
/// that it logged a connection failure for `url` saying every one of `said`.
fn assert_refused_saying(s: MqttSettings, url: &str, broker: &Mosquitto, said: &[&str]) {
    let publisher = Publisher::start(s).unwrap();
    publisher.prediction("cam", b"x".to_vec()).unwrap();
    assert_never_connects(&publisher, 1, broker);
    let says_why = || failures_logged_for(url).iter().any(|w| said.iter().all(|s| w.contains(s)));
    assert!(wait_until(WAIT, says_why), "no failure saying {said:?} logged for {url}: {:#?}", failures_logged_for(url));
}

/// Asserts that `publisher` stays disconnected for `NO_CONNECT` with `waiting` predictions kept.
fn assert_never_connects(publisher: &Publisher, waiting: usize, broker: &Mosquitto) {
    let deadline = Instant::now() + NO_CONNECT;
    while Instant::now() < deadline {
        let stats = publisher.stats();
        assert!(!stats.connected, "connected when it must not: {stats:?}\nbroker log:\n{}", broker.log());
        assert_eq!((stats.outbox_depth, stats.delivered), (waiting, 0), "{stats:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The publisher's warnings about `url` (logged when a connection attempt fails).
fn failures_logged_for(url: &str) -> Vec<String> {
    logged().into_iter().filter(|l| l.starts_with("WARN") && l.contains(url)).collect()
}

// ---- tests ----

#[test]
fn tls_with_a_client_certificate_delivers_and_goes_online() {
    capture_logs();
    let pki = pki();
    let (broker, tls, plain) = or_skip!(tls_mosquitto(&pki));
    let sub = Subscriber::connect(plain, "tls-watcher", false, &["cvedge/tls1/#"]);
    let outbox = tempfile::tempdir().unwrap();
    let s = with_certificates(settings(&format!("mqtts://127.0.0.1:{tls}"), "tls1", outbox.path()), &pki.ca, &pki);
    let publisher = Publisher::start(s).unwrap();

    let status = sub.wait_topic("cvedge/tls1/status", WAIT);
    assert_eq!(status.map(|m| m.text()).as_deref(), Some("online"), "broker log:\n{}", broker.log());
    assert!(publisher.stats().connected);
    publisher.prediction("door", br#"{"seq":1,"tls":true}"#.to_vec()).unwrap();
    let p = sub.wait_topic("cvedge/tls1/door/predictions", WAIT).expect("the prediction over TLS");
    assert_eq!(p.text(), r#"{"seq":1,"tls":true}"#);
    assert!(wait_until(WAIT, || publisher.stats().delivered == 1 && publisher.stats().outbox_depth == 0));
    // It really came in on the TLS listener: mosquitto logs "New connection from ADDR on port
    // PORT." then "New client connected from ADDR as CLIENT_ID ...".
    let log = broker.log();
    let lines: Vec<&str> = log.lines().collect();
    let on_tls = lines.windows(2).any(|w| {
        w[0].contains(&format!("on port {tls}.")) && w[1].contains("New client connected") && w[1].contains("as cvedge-tls1 ")
    });
    assert!(on_tls, "cvedge-tls1 did not connect on the TLS listener {tls}:\n{log}");
    publisher.shutdown(WAIT).unwrap();
    assert_eq!(sub.wait_topic("cvedge/tls1/status", WAIT).map(|m| m.text()).as_deref(), Some("stopped"));
}

#[test]
fn tls_without_a_client_certificate_or_with_the_wrong_ca_never_connects() {
    capture_logs();
    let pki = pki();
    let (broker, tls, plain) = or_skip!(tls_mosquitto(&pki));
    let sub = Subscriber::connect(plain, "tls-watcher-2", false, &["cvedge/#"]);
    let url = format!("mqtts://127.0.0.1:{tls}");

    // No client certificate: the broker refuses the handshake.
    let outbox = tempfile::tempdir().unwrap();
    let mut no_cert = settings(&url, "tls2", outbox.path());
    no_cert.ca_file = Some(pki.ca.clone());
    let publisher = Publisher::start(no_cert.clone()).unwrap();
    for seq in 0..3 {
        publisher.prediction("cam", format!("{seq}").into_bytes()).unwrap();
    }
    assert_never_connects(&publisher, 3, &broker);
    let left = publisher.shutdown(Duration::from_millis(300)).unwrap_err();
    assert!(matches!(left, MqttError::Undelivered { left: 3, .. }), "{left}");

    // A CA that did not sign the server's certificate (client certificate given): we refuse.
    let outbox2 = tempfile::tempdir().unwrap();
    let wrong_ca = with_certificates(settings(&url, "tls3", outbox2.path()), &pki.other_ca, &pki);
    assert_refused_saying(wrong_ca, &url, &broker, &["invalid peer certificate", "UnknownIssuer", "set [mqtt] ca_file"]);
    assert!(sub.drain().iter().all(|m| !m.topic.ends_with("/predictions")), "a prediction got through");

    // What waited in the outbox goes out once the certificate is given.
    no_cert.client_cert = Some(pki.client_cert.clone());
    no_cert.client_key = Some(pki.client_key.clone());
    let publisher = Publisher::start(no_cert).unwrap();
    let got: Vec<String> = (0..3).filter_map(|_| sub.wait_topic("cvedge/tls2/cam/predictions", WAIT).map(|m| m.text())).collect();
    assert_eq!(got, ["0", "1", "2"]);
    publisher.shutdown(WAIT).unwrap();
}

#[test]
fn a_broker_certificate_for_another_host_is_refused_though_our_ca_signed_it() {
    capture_logs();
    let pki = pki();
    let (broker, tls, plain) = or_skip!(tls_mosquitto_with(&pki, &pki.misnamed_cert, &pki.misnamed_key));
    let sub = Subscriber::connect(plain, "tls-watcher-3", false, &["cvedge/#"]);
    let url = format!("mqtts://127.0.0.1:{tls}");
    let outbox = tempfile::tempdir().unwrap();
    let s = with_certificates(settings(&url, "tls4", outbox.path()), &pki.ca, &pki);
    assert_refused_saying(s, &url, &broker, &["certificate not valid for name", "host name the broker's certificate was issued for"]);
    assert!(sub.drain().iter().all(|m| !m.topic.starts_with("cvedge/tls4")), "something got through");
}

#[test]
fn username_and_password_right_delivers_wrong_never_connects_and_is_never_shown() {
    capture_logs();
    const USER: &str = "camera-user";
    const RIGHT: &str = "Right-pw-7f3a9c1e";
    const WRONG: &str = "Wrong-pw-b82d4e60";
    let (broker, locked, open) = or_skip!(password_mosquitto(USER, RIGHT));
    let sub = Subscriber::connect(open, "pw-watcher", false, &["cvedge/#"]);
    let url = format!("mqtt://127.0.0.1:{locked}");
    let mut errors = Vec::new();

    // Anonymous is refused on this listener: the test would prove nothing otherwise.
    let outbox = tempfile::tempdir().unwrap();
    let anonymous = Publisher::start(settings(&url, "pw0", outbox.path())).unwrap();
    anonymous.prediction("cam", b"anon".to_vec()).unwrap();
    assert_never_connects(&anonymous, 1, &broker);
    drop(anonymous);

    // Wrong password: never connects, the prediction waits.
    let outbox = tempfile::tempdir().unwrap();
    let mut wrong = settings(&url, "pw1", outbox.path());
    wrong.username = Some(USER.into());
    wrong.password = Some(WRONG.into());
    let log_before = broker.log().len();
    let publisher = Publisher::start(wrong).unwrap();
    publisher.prediction("cam", b"wrong".to_vec()).unwrap();
    assert_never_connects(&publisher, 1, &broker);
    let refused = broker.log()[log_before..].matches("not authorised").count();
    assert!(refused >= 1, "the broker did not refuse (or see) the attempt:\n{}", broker.log());
    let failures = failures_logged_for(&url);
    assert!(!failures.is_empty(), "the refusal was not logged");
    match publisher.shutdown(Duration::from_millis(300)) {
        Err(e) => errors.push(e.to_string()),
        Ok(()) => panic!("the prediction cannot have been delivered"),
    }

    // Right password: delivers.
    let outbox = tempfile::tempdir().unwrap();
    let mut right = settings(&url, "pw2", outbox.path());
    right.username = Some(USER.into());
    right.password = Some(RIGHT.into());
    let publisher = Publisher::start(right.clone()).unwrap();
    assert_eq!(sub.wait_topic("cvedge/pw2/status", WAIT).map(|m| m.text()).as_deref(), Some("online"));
    publisher.prediction("cam", b"right".to_vec()).unwrap();
    assert_eq!(sub.wait_topic("cvedge/pw2/cam/predictions", WAIT).map(|m| m.text()).as_deref(), Some("right"));
    assert!(sub.drain().iter().all(|m| m.text() != "wrong" && m.text() != "anon"));
    publisher.shutdown(WAIT).unwrap();

    // Setting errors that involve the password do not show it either.
    let mut no_user = right.clone();
    no_user.username = None;
    errors.push(Publisher::start(no_user).err().expect("password without username is refused").to_string());
    let mut tls_files_on_plain = right;
    tls_files_on_plain.ca_file = Some("/nonexistent/ca.pem".into());
    errors.push(Publisher::start(tls_files_on_plain).err().expect("TLS files with mqtt:// are refused").to_string());

    let lines = logged();
    assert!(lines.iter().any(|l| l.contains(&url)), "nothing logged about {url}: {lines:#?}");
    for secret in [RIGHT, WRONG] {
        let leaks: Vec<&String> = lines.iter().chain(&errors).filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "the password appears in: {leaks:#?}");
    }
}
