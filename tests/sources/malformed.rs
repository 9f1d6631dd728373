//! Broken cameras on loopback: each test serves hand-made bytes and expects a clear error or a
//! skipped part, in bounded time; never a panic or a hang.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{next_within, options};
use cvedge::source::{self, Source, SourceSpec};

/// A guard against a hang, not a timing: the stall test's server lingers 4 s, past the 2 s read
/// timeout, so "stalled" can only come from the timeout.
const LIMIT: Duration = Duration::from_secs(20);

/// Serves one connection: reads the request, lets `respond` write to it, keeps it open for
/// `linger`, then closes. Returns the spec of a camera at that address and the request seen.
fn camera(linger: Duration, respond: impl FnOnce(&str, &mut dyn Write) + Send + 'static) -> (SourceSpec, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let spec = format!("mjpeg:http://user:pa%ss@{}/stream", listener.local_addr().unwrap()).parse().unwrap();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request = String::new();
        while reader.read_line(&mut request).unwrap() > 2 && !request.ends_with("\r\n\r\n") {}
        let mut writer = stream;
        respond(&request, &mut writer);
        let _ = writer.flush();
        std::thread::sleep(linger);
        request
    });
    (spec, server)
}

fn stream_head(boundary: &str) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={boundary}\r\n\r\n")
}

fn jpeg() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gray.jpg")).unwrap()
}

fn part(body: &[u8]) -> Vec<u8> {
    [format!("--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(), body, b"\r\n"].concat()
}

fn open(spec: &SourceSpec) -> Box<dyn Source> {
    source::open(spec, &options(2000)).unwrap()
}

fn error_of(source: &mut dyn Source) -> String {
    next_within(source, LIMIT).expect("an error, not the end").expect_err("an error").to_string()
}

#[test]
fn good_parts_with_credentials_then_a_non_jpeg_part_is_skipped() {
    let (spec, server) = camera(Duration::ZERO, |_, w| {
        let body = [stream_head("frame").into_bytes(), part(&jpeg()), part(b"<html>busy</html>"), part(&jpeg())].concat();
        w.write_all(&body).unwrap();
    });
    let mut source = open(&spec);
    assert_eq!(next_within(source.as_mut(), LIMIT).unwrap().unwrap().seq, 1);
    let err = error_of(source.as_mut());
    assert!(err.contains("not a complete JPEG") && err.contains("skipped"), "{err}");
    let third = next_within(source.as_mut(), LIMIT).unwrap().unwrap();
    let expected = source::decode(&jpeg(), "gray.jpg").unwrap();
    assert_eq!((third.seq, third.into_rgb().unwrap()), (3, expected));
    assert!(next_within(source.as_mut(), LIMIT).is_none(), "the server closed between parts");
    let request = server.join().unwrap();
    // base64("user:pa%ss")
    assert!(request.contains("Authorization: Basic dXNlcjpwYSVzcw=="), "{request}");
}

#[test]
fn chunked_streams_are_read() {
    let (spec, _server) = camera(Duration::ZERO, |_, w| {
        let body = part(&jpeg());
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: multipart/x-mixed-replace;boundary=\"frame\"\r\n\r\n";
        w.write_all(head.as_bytes()).unwrap();
        for chunk in body.chunks(1000) {
            w.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).unwrap();
            w.write_all(chunk).unwrap();
            w.write_all(b"\r\n").unwrap();
        }
        w.write_all(b"0\r\n\r\n").unwrap();
    });
    let mut source = open(&spec);
    assert!(next_within(source.as_mut(), LIMIT).unwrap().unwrap().into_rgb().is_ok());
    assert!(next_within(source.as_mut(), LIMIT).is_none());
}

#[test]
fn broken_streams_are_clear_errors_then_the_end() {
    let cases: [(&str, Vec<u8>); 4] = [
        ("no part delimiter '--frame'", [stream_head("frame").into_bytes(), part(&jpeg()).iter().map(|&b| if b == b'-' { b'=' } else { b }).collect()].concat()),
        ("middle of a frame", [stream_head("frame").into_bytes(), part(&jpeg())[..3000].to_vec()].concat()),
        ("more than the 16777216", [stream_head("frame").as_bytes(), b"--frame\r\nContent-Length: 999999999999\r\n\r\n"].concat()),
        ("larger than the 16777216", [stream_head("frame").as_bytes(), b"--frame\r\n\r\n", &vec![b'x'; 17 << 20]].concat()),
    ];
    for (expected, wire) in cases {
        let (spec, _server) = camera(Duration::ZERO, move |_, w| drop(w.write_all(&wire)));
        let mut source = open(&spec);
        let err = error_of(source.as_mut());
        assert!(err.contains(expected) && err.contains("127.0.0.1"), "expected {expected:?}: {err}");
        assert!(next_within(source.as_mut(), LIMIT).is_none());
    }
}

#[test]
fn a_stalled_camera_is_detected_by_the_read_timeout() {
    let (spec, _server) = camera(Duration::from_secs(4), |_, w| {
        w.write_all(&[stream_head("frame").into_bytes(), part(&jpeg()), b"--frame\r\nContent-Length: 5000\r\n\r\nonly".to_vec()].concat()).unwrap();
    });
    let mut source = open(&spec);
    assert!(next_within(source.as_mut(), LIMIT).unwrap().is_ok());
    let err = error_of(source.as_mut());
    assert!(err.contains("stalled"), "{err}");
}

#[test]
fn refusals_and_non_streams_fail_to_open() {
    let responses: [(&[u8], &str); 4] = [
        (b"HTTP/1.0 401 Unauthorized\r\n\r\n", "check the user name and password"),
        (b"HTTP/1.1 404 Not Found\r\n\r\n", "check the stream's path"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8", "not an MJPEG stream"),
        (b"\x00\x9f\xfe garbage \x01\x02\r\n\r\n", "not an HTTP response"),
    ];
    for (response, expected) in responses {
        let (spec, _server) = camera(Duration::ZERO, move |_, w| drop(w.write_all(response)));
        let err = source::open(&spec, &options(2000)).err().expect("refused").to_string();
        assert!(err.contains(expected), "{err}");
    }
    let nobody = "mjpeg:http://127.0.0.1:1/x".parse().unwrap();
    let err = source::open(&nobody, &options(2000)).err().unwrap().to_string();
    assert!(err.contains("cannot connect"), "{err}");
}
