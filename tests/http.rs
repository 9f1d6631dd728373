//! `cvedge serve` against the clients that talk to the Custom Vision container: the container's
//! routes with raw and multipart bodies (our own HTTP requests, curl, Python as the Azure IoT Edge
//! Pi sample posts), its JSON compared with `cvedge predict --json` on the same image, JSON errors
//! with their status codes, the API key, and stopping on SIGTERM.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::serve::*;
use common::*;
use serde_json::Value;

fn labels() -> Vec<String> {
    std::fs::read_to_string(repo().join("models/demo/labels.txt")).unwrap().lines().map(str::to_string).collect()
}

/// `cvedge predict --json` on a sample with tract: the reference the server must agree with.
fn predicted(sample: &str) -> Value {
    let run = cvedge(&["predict", "--model", "models/demo", "--engine", "tract", "--json", &format!("models/samples/{sample}")]);
    assert!(run.ok(), "{}", run.stderr);
    serde_json::from_str(run.stdout.trim()).unwrap()
}

/// Python's `round(p, 8)` of a float32.
fn round8(p: f32) -> f64 {
    format!("{:.8}", f64::from(p)).parse().unwrap()
}

/// The container's JSON: its keys in its order, every tag in labels.txt order, empty ids,
/// `created` without `Z`, and each probability `predict --json`'s rounded to 8 decimals.
fn assert_container_json(json: &Value, reference: &Value) {
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "project", "iteration", "created", "predictions"], "{json}");
    assert_eq!((&json["id"], &json["project"], &json["iteration"]), (&Value::from(""), &Value::from(""), &Value::from("")));
    let created = json["created"].as_str().unwrap();
    // Python's isoformat leaves the fraction out when the microseconds are exactly 0.
    let fraction = created.len() == 19 || (created.len() == 26 && created.as_bytes()[19] == b'.');
    assert!(!created.ends_with('Z') && fraction && created.as_bytes()[10] == b'T', "{created}");
    let predictions = json["predictions"].as_array().unwrap();
    let tags: Vec<&str> = predictions.iter().map(|p| p["tagName"].as_str().unwrap()).collect();
    assert_eq!(tags, labels(), "labels.txt order");
    for p in predictions {
        let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["tagName", "probability", "tagId", "boundingBox"]);
        assert!(p["tagId"] == "" && p["boundingBox"].is_null(), "{p}");
        let want = reference["predictions"].as_array().unwrap().iter().find(|r| r["tagName"] == p["tagName"]).unwrap();
        let want = round8(want["probability"].as_f64().unwrap() as f32);
        assert_eq!(p["probability"].as_f64().unwrap(), want, "{} (predict --json rounded to 8 decimals)", p["tagName"]);
    }
}

fn top(json: &Value) -> String {
    let predictions = json["predictions"].as_array().unwrap();
    let best = predictions.iter().max_by(|a, b| a["probability"].as_f64().unwrap().total_cmp(&b["probability"].as_f64().unwrap())).unwrap();
    best["tagName"].as_str().unwrap().to_string()
}

fn assert_error(answer: &Answer, status: u16, code: &str, fragment: &str) {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let json = answer.json();
    assert_eq!(json["code"], code, "{json}");
    assert!(json["message"].as_str().unwrap().contains(fragment), "{json} lacks {fragment:?}");
}

#[test]
fn get_root_answers_as_the_container_does() {
    let server = serve(&[]);
    let answer = get(server.addr, "/");
    assert_eq!((answer.status, answer.text().as_str()), (200, "CustomVision.ai model host harness"));
    assert_eq!(answer.header("content-type"), Some("text/html; charset=utf-8"));
    let head = send(server.addr, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b"");
    assert_eq!((head.status, head.body.len(), head.header("content-length")), (200, 0, Some("34")));
}

#[test]
fn every_container_and_cloud_path_answers_the_containers_json() {
    let server = serve(&["--engine", "tract"]);
    let reference = predicted("cat.jpg");
    let image = sample("cat.jpg");
    for path in [
        "/image",
        "/proj/image",
        "/proj/image/nostore",
        "/proj/classify/iterations/Iteration1/image",
        "/proj/classify/iterations/Iteration1/image/nostore",
        "/customvision/v3.0/Prediction/proj/classify/iterations/Iteration1/image?application=x",
    ] {
        let answer = post(server.addr, path, "application/octet-stream", &image);
        assert_eq!(answer.status, 200, "{path}: {}", answer.text());
        assert_container_json(&answer.json(), &reference);
    }
    // A chunked upload and a kept-alive connection carrying two requests.
    let chunked = [format!("{:x}\r\n", image.len()).into_bytes(), image.clone(), b"\r\n0\r\n\r\n".to_vec()].concat();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(b"POST /image HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    stream.write_all(&chunked).unwrap();
    stream.write_all(format!("POST /image HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", image.len()).as_bytes()).unwrap();
    stream.write_all(&image).unwrap();
    let mut raw = vec![];
    stream.read_to_end(&mut raw).unwrap();
    let second_at = raw.windows(9).rposition(|w| w == b"HTTP/1.1 ").unwrap();
    assert!(second_at > 0, "two answers on one connection");
    assert_container_json(&parse(&raw[..second_at]).json(), &reference);
    assert_container_json(&parse(&raw[second_at..]).json(), &reference);
}

#[test]
fn cloud_format_is_what_predict_json_prints() {
    let server = serve(&["--engine", "tract", "--format", "cloud"]);
    let reference = predicted("rocket.jpg");
    let answer = post(server.addr, "/proj/classify/iterations/it/image", "application/octet-stream", &sample("rocket.jpg"));
    assert_eq!(answer.status, 200, "{}", answer.text());
    let json = answer.json();
    assert_eq!(json["predictions"], reference["predictions"], "same tags, order and probabilities");
    assert_eq!(json["iteration"], reference["iteration"]);
    assert!(json["created"].as_str().unwrap().ends_with('Z'));
    assert_eq!(json["id"].as_str().unwrap().len(), 36, "a uuid");
}

#[test]
fn curl_uploads_multipart_and_raw_bytes() {
    if Command::new("curl").arg("--version").output().is_err() {
        return peer_missing("curl is not installed", "apt-get install curl");
    }
    let server = serve(&[]);
    let url = format!("http://{}/proj/classify/iterations/it/image", server.addr);
    let curl = |args: &[&str]| {
        let out = Command::new("curl").args(["-sS", "--fail-with-body"]).args(args).arg(&url).current_dir(repo()).output().unwrap();
        assert!(out.status.success(), "curl {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    assert_eq!(top(&curl(&["-F", "imageData=@models/samples/dog.jpg"])), "dog");
    assert_eq!(top(&curl(&["-F", "other=x", "-F", "imageData=@models/samples/eagle.jpg;type=image/jpeg"])), "eagle");
    assert_eq!(top(&curl(&["-H", "Content-Type: application/octet-stream", "--data-binary", "@models/samples/coffee.jpg"])), "coffee");
}

/// The Azure IoT Edge Raspberry Pi sample's camera module posts each frame with `requests` as
/// `application/octet-stream`; the cloud SDK-style upload is the multipart field `imageData`.
#[test]
fn python_posts_frames_like_the_iot_edge_sample() {
    let script = r#"
import json, sys
url, path = sys.argv[1], sys.argv[2]
headers = {'Content-Type': 'application/octet-stream'}
try:
    import requests
except ImportError:
    requests = None
if requests:
    with open(path, mode='rb') as test_image:
        response = requests.post(url, headers=headers, data=test_image)
    with open(path, mode='rb') as test_image:
        multipart = requests.post(url, files={'imageData': ('frame.jpg', test_image, 'image/jpeg')}).json()
    print(json.dumps({'client': 'requests', 'status': response.status_code, 'body': response.json(), 'multipart': multipart}))
else:
    import urllib.request
    with open(path, mode='rb') as test_image:
        request = urllib.request.Request(url, data=test_image.read(), headers=headers)
    with urllib.request.urlopen(request) as response:
        print(json.dumps({'client': 'urllib', 'status': response.status, 'body': json.load(response), 'multipart': None}))
"#;
    let server = serve(&[]);
    let url = format!("http://{}/image", server.addr);
    let out = match Command::new("python3").args(["-c", script, &url, "models/samples/rocket.jpg"]).current_dir(repo()).output() {
        Ok(out) => out,
        Err(e) => return eprintln!("skipped: python3 cannot be run ({e})"),
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("python client: {}", result["client"]);
    // CI installs requests: there the sample's own client (and the multipart upload) must run.
    if peers_required() {
        assert_eq!(result["client"], "requests", "CVEDGE_REQUIRE_PEERS=1 but python3 has no requests: apt-get install python3-requests");
    }
    assert_eq!(result["status"], 200);
    assert_eq!(top(&result["body"]), "rocket");
    assert!(!result["body"]["created"].as_str().unwrap().ends_with('Z'));
    if !result["multipart"].is_null() {
        assert_eq!(top(&result["multipart"]), "rocket");
    }
}

#[test]
fn errors_are_json_with_a_status_code() {
    let server = serve(&[]);
    let addr = server.addr;
    assert_error(&get(addr, "/nowhere"), 404, "NotFound", "/image");
    let wrong = get(addr, "/image");
    assert_error(&wrong, 405, "MethodNotAllowed", "POST");
    assert_eq!(wrong.header("allow"), Some("POST"));
    assert_error(&post(addr, "/image", "application/octet-stream", b"not an image at all"), 400, "BadRequestImageFormat", "not a readable image");
    let truncated = std::fs::read(repo().join("tests/data/truncated.jpg")).unwrap();
    assert_error(&post(addr, "/image", "image/jpeg", &truncated), 400, "BadRequestImageFormat", "damaged or truncated");
    assert_error(&post(addr, "/image", "application/octet-stream", b""), 400, "BadRequestImageFormat", "imageData");
    assert_error(&post(addr, "/url", "application/json", b"url=http://x"), 400, "BadRequest", "not JSON");
    assert_error(&send(addr, "HELLO\r\n\r\n", b""), 400, "BadRequest", "not an HTTP request line");

    // A body declared over 4 MB is refused at once, without waiting for it (waiting would end in
    // the server's 408 after 30 s, long after this read's 10 s timeout left `raw` empty).
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"POST /image HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n\xff\xd8").unwrap();
    let mut raw = vec![];
    let _ = stream.read_to_end(&mut raw);
    assert_error(&parse(&raw), 413, "BadRequestImageSizeBytes", "100000000 bytes");
    // A client that sends all of its 5 MB anyway still reads the answer.
    assert_error(&post(addr, "/image", "application/octet-stream", &vec![7u8; 5 << 20]), 413, "BadRequestImageSizeBytes", "at most 4 MB");
    // And the server is still there.
    assert_eq!(top(&post(addr, "/image", "image/jpeg", &sample("dog.jpg")).json()), "dog");
}

#[test]
fn no_room_for_requests_is_refused_at_start() {
    for flag in ["--queue", "--max-connections"] {
        // Watched with a deadline: a server that took 0 as 1 would serve until killed.
        let mut child = KillOnDrop(
            Command::new(env!("CARGO_BIN_EXE_cvedge"))
                .args(["serve", "--model", "models/demo", "--addr", "127.0.0.1:0", flag, "0"])
                .current_dir(repo())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap(),
        );
        wait_for(&format!("{flag} 0 refused, not taken as 1"), Duration::from_secs(30), || child.try_wait().unwrap().is_some());
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!child.try_wait().unwrap().unwrap().success(), "{stderr}");
        assert!(stderr.contains(&format!("{flag} is 0")) && stderr.contains(&format!("give {flag} 1 or more")), "{stderr}");
    }
}

#[test]
fn an_api_key_guards_a_network_bind() {
    let server = serve(&["--addr", "0.0.0.0:0", "--api-key", "s3cret"]);
    let image = sample("cat.jpg");
    let missing = post(server.addr, "/image", "application/octet-stream", &image);
    assert_error(&missing, 401, "Unauthorized", "Prediction-Key");
    let wrong = post_with(server.addr, "/image", "Prediction-Key: s3cre7\r\n", &image);
    assert_error(&wrong, 401, "Unauthorized", "not this server's key");
    let url = post_with(server.addr, "/url", "Content-Type: application/json\r\n", br#"{"url": "http://example.com/x.jpg"}"#);
    assert_error(&url, 401, "Unauthorized", "Prediction-Key");
    let right = post_with(server.addr, "/image", "prediction-key: s3cret\r\nContent-Type: application/octet-stream\r\n", &image);
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(top(&right.json()), "cat");
    assert_eq!(get(server.addr, "/").status, 200, "health checks need no key");
}

#[test]
fn health_and_metrics_report_the_model_and_the_requests() {
    let server = serve(&["--engine", "tract", "--workers", "1"]);
    let health = get(server.addr, "/health");
    assert_eq!(health.status, 200);
    let health = health.json();
    assert_eq!((health["status"].as_str(), health["engine"].as_str(), health["workers"].as_u64()), (Some("ok"), Some("tract"), Some(1)));
    assert_eq!(health["tags"].as_array().unwrap().len(), labels().len());
    for name in ["cat.jpg", "dog.jpg"] {
        assert_eq!(post(server.addr, "/image", "image/jpeg", &sample(name)).status, 200);
    }
    assert_eq!(post(server.addr, "/image", "image/jpeg", b"nope").status, 400);
    assert_eq!(get(server.addr, "/nowhere").status, 404);
    let answer = get(server.addr, "/metrics");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = answer.text();
    // Every sample line is `name{labels} value` of a family declared with HELP and TYPE.
    let mut declared = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line:?}"));
        assert!(value.parse::<f64>().is_ok(), "{line:?}");
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f))).unwrap_or(name);
        assert!(declared.contains(family), "{name} has no # TYPE line before it");
    }
    for sample in [
        "cvedge_http_requests_total{route=\"image\",code=\"200\"} 2",
        "cvedge_http_requests_total{route=\"image\",code=\"400\"} 1",
        "cvedge_http_requests_total{route=\"none\",code=\"404\"} 1",
        "cvedge_http_requests_total{route=\"health\",code=\"200\"} 1",
        "cvedge_http_prediction_seconds_count 2",
        "cvedge_http_prediction_seconds_bucket{le=\"+Inf\"} 2",
        "cvedge_http_queue_depth 0",
        "cvedge_http_workers 1",
    ] {
        assert!(text.lines().any(|l| l == sample), "no line {sample:?} in\n{text}");
    }
    assert!(text.contains("cvedge_model_info{model=\"models/demo\",iteration=\"4f5a0c1e-7d2b-4c8e-9a61-3b0d2e5f7a11\",engine=\"tract\"} 1"), "{text}");
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = serve(&[]);
    assert_eq!(post(server.addr, "/image", "image/jpeg", &sample("eagle.jpg")).status, 200);
    let status = sigterm_and_wait(&mut server.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(TcpStream::connect(server.addr).is_err(), "nothing listens any more");
}
