//! `POST /url` against image servers started here on loopback: plain HTTP (with redirects, a 404,
//! a redirect loop and an image over 4 MB) and HTTPS (a certificate from a CA made here, trusted
//! through `SSL_CERT_FILE`). Loopback is allowed only with `--allow-private-urls`; without it the
//! server refuses loopback and the cloud metadata address before connecting anywhere.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::serve::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// What the image server answers for a path.
fn answer(path: &str) -> Vec<u8> {
    let ok = |body: &[u8], length: usize| [format!("HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {length}\r\n\r\n").into_bytes(), body.to_vec()].concat();
    match path {
        "/cat.jpg" => {
            let cat = sample("cat.jpg");
            ok(&cat, cat.len())
        }
        "/moved" => b"HTTP/1.1 302 Found\r\nLocation: /cat.jpg\r\nContent-Length: 0\r\n\r\n".to_vec(),
        "/loop" => b"HTTP/1.1 301 Moved Permanently\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n".to_vec(),
        // Announces 5 MB (and sends only the start of it).
        "/huge.jpg" => ok(b"\xff\xd8", 5 << 20),
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}

/// Serves [`answer`] on a loopback port, one request per connection, over `wrap` (plain or TLS);
/// counts the requests it received.
fn image_server<S: Read + Write>(wrap: impl Fn(TcpStream) -> Option<S> + Send + 'static) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let Some(mut stream) = wrap(stream) else { continue };
            let mut reader = BufReader::new(&mut stream);
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            counted.fetch_add(1, Ordering::SeqCst);
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = stream.write_all(&answer(&path));
            let _ = stream.flush();
        }
    });
    (addr, requests)
}

fn url_request(server: &Served, path: &str, body: &str) -> Answer {
    post(server.addr, path, "application/json", body.as_bytes())
}

fn top(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    let predictions = json["predictions"].as_array().unwrap().clone();
    let best = predictions.iter().max_by(|a, b| a["probability"].as_f64().unwrap().total_cmp(&b["probability"].as_f64().unwrap())).unwrap();
    best["tagName"].as_str().unwrap().to_string()
}

fn assert_refused(answer: &Answer, fragment: &str) {
    assert_eq!(answer.status, 400, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["code"], "BadRequestImageUrl");
    assert!(json["message"].as_str().unwrap().contains(fragment), "{json} lacks {fragment:?}");
}

#[test]
fn url_fetches_from_loopback_only_when_allowed() {
    let (images, requests) = image_server(Some);
    let allowed = serve(&["--allow-private-urls"]);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", images.port());
    assert_eq!(top(&url_request(&allowed, "/url", &format!(r#"{{"url": "{}"}}"#, url("/moved")))), "cat");
    // The cloud's clients send "Url", to the cloud's paths.
    assert_eq!(top(&url_request(&allowed, "/p/classify/iterations/it/url/nostore", &format!(r#"{{"Url": "{}"}}"#, url("/cat.jpg")))), "cat");
    assert_refused(&url_request(&allowed, "/url", &format!(r#"{{"url": "{}"}}"#, url("/missing.jpg"))), "answered 404");
    assert_refused(&url_request(&allowed, "/url", &format!(r#"{{"url": "{}"}}"#, url("/loop"))), "redirected more than 3 times");
    assert_refused(&url_request(&allowed, "/url", &format!(r#"{{"url": "{}"}}"#, url("/huge.jpg"))), "larger than 4194304 bytes");
    assert_refused(&url_request(&allowed, "/url", r#"{"url": "ftp://example.com/cat.jpg"}"#), "not an http:// or https:// URL");

    let served = requests.load(Ordering::SeqCst);
    let strict = serve(&[]);
    assert_refused(&url_request(&strict, "/url", &format!(r#"{{"url": "{}"}}"#, url("/cat.jpg"))), "loopback address");
    assert_refused(&url_request(&strict, "/url", &format!(r#"{{"url": "http://localhost:{}/cat.jpg"}}"#, images.port())), "--allow-private-urls");
    // The instance metadata address is refused before any connection is made to it.
    assert_refused(&url_request(&strict, "/url", r#"{"url": "http://169.254.169.254/latest/meta-data/"}"#), "link-local");
    assert_eq!(requests.load(Ordering::SeqCst), served, "no request reached the image server");
}

#[test]
fn https_urls_are_fetched_with_the_systems_trust() {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "cvedge test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap())
        .unwrap();
    let config = Arc::new(config);
    let (images, _) = image_server(move |tcp| Some(rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).ok()?, tcp)));
    let body = format!(r#"{{"url": "https://localhost:{}/moved"}}"#, images.port());

    // rustls-native-certs reads the trusted certificates from SSL_CERT_FILE when it is set.
    let trusting = serve_with_env(&["--allow-private-urls"], &[("SSL_CERT_FILE", &ca_file)]);
    assert_eq!(top(&url_request(&trusting, "/url", &body)), "cat");
    let untrusting = serve(&["--allow-private-urls"]);
    assert_refused(&url_request(&untrusting, "/url", &body), "certificate");
}
