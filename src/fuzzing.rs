//! Entry points for the fuzz targets (`fuzz/fuzz_targets/`) and for their replay on stable Rust
//! (`tests/fuzz_corpus.rs`). Each feeds untrusted bytes to the parsers the program feeds them to,
//! through the same functions, and ignores the outcome: a target passes when nothing panics,
//! hangs or allocates without bound. Not an API: hidden from the docs and free to change.

use std::io::{self, Cursor, Read, Write};
use std::time::Duration;

use crate::package::{self, ExportPackage, Manifest};
use crate::source::http::{self, Url};
use crate::source::jpeg_stream::read_jpeg;
use crate::source::multipart::Multipart;
use crate::source::{MjpegSource, Source, MAX_FRAME_BYTES};
use crate::{engine, Classifier, LoadOptions};

/// The fuzz targets, by name: what `scripts/fuzz.sh` runs and `tests/fuzz_corpus.rs` replays.
pub const TARGETS: [(&str, fn(&[u8])); 6] = [
    ("export_zip", export_zip),
    ("model_bytes", model_bytes),
    ("image_decode", image_decode),
    ("mjpeg_stream", mjpeg_stream),
    ("config", config),
    ("http_request", http_request),
];

/// Makes a panic in cvedge's own code fatal, however it is caught. The tract engine's boundary
/// turns tract's panics on malformed graphs into errors (see `engine::tract`), and a fuzzer must
/// not count those; but the same boundary also covers cvedge's graph code, whose panics are bugs.
/// So the previous hook (libFuzzer's, which aborts) runs for panics located in cvedge's sources;
/// others are printed and left to unwind: caught, they are errors; uncaught, libFuzzer aborts on
/// them when they reach it (and a test fails).
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if panicked_in_cvedge(info) {
            OWN_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            previous(info);
        } else {
            eprintln!("{info}\n(outside cvedge's code: an error if the engine boundary catches it)");
        }
    }));
}

/// Panics in cvedge's own code since [`install_panic_hook`], caught or not (for the stable replay,
/// whose hook cannot abort).
pub static OWN_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn panicked_in_cvedge(info: &std::panic::PanicHookInfo) -> bool {
    // Cargo names a package's files relative to it when it is built as a workspace member and by
    // their absolute path when it is a path dependency (the fuzz crate's view).
    info.location().is_some_and(|l| l.file().starts_with("src/") || l.file().starts_with(concat!(env!("CARGO_MANIFEST_DIR"), "/src/")))
}

/// An export zip (or a bare model) as `cvedge predict --model` loads it with the tract engine,
/// and the exporter's side files on their own.
pub fn export_zip(data: &[u8]) {
    let _ = Manifest::parse(data);
    let _ = package::parse_metadata(data);
    let _ = package::parse_labels(data);
    if let Ok(package) = ExportPackage::from_bytes("fuzz.zip", data.to_vec()) {
        let _ = Classifier::from_package(package, &LoadOptions::default());
    }
}

/// A model file (ONNX, TFLite or TensorFlow, told by its bytes) read, split and optimised by
/// tract, and a TFLite or TensorFlow one also rewritten as ONNX (what onnxruntime, `quantize`
/// and `export` run it through). Labels are made up to match the graph's outputs so that loading
/// goes all the way.
pub fn model_bytes(data: &[u8]) {
    let Ok(mut package) = ExportPackage::from_bytes("fuzz.model", data.to_vec()) else { return };
    if package.format != crate::package::ModelFormat::Onnx {
        let _ = crate::convert::engine_twin(&package.model_bytes, package.format, &package.model_path);
    }
    let options = LoadOptions::default();
    let Ok(analysed) = engine::analyse(&mut package, &options.engine) else { return };
    package.labels = Some((0..analysed.head.tags()).map(|i| format!("tag{i}")).collect());
    let _ = Classifier::from_analysed(package, analysed, &options);
}

/// An uploaded or file image, decoded within the HTTP server's pixel bound.
pub fn image_decode(data: &[u8]) {
    let _ = crate::source::decode(data, "fuzz");
}

/// Camera streams. The first byte picks the parser: ffmpeg's concatenated JPEGs, a multipart
/// body (boundary on the first line, possibly empty), or a whole HTTP response from an MJPEG
/// camera; the rest is the stream.
pub fn mjpeg_stream(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 3 {
        0 => {
            let mut reader = rest;
            // Every frame consumes bytes, so the stream ends; the bound is belt and braces.
            for _ in 0..rest.len() + 1 {
                if !matches!(read_jpeg(&mut reader, 1 << 20), Ok(Some(_))) {
                    break;
                }
            }
        }
        1 => {
            let (boundary, body) = first_line(rest);
            let boundary = (!boundary.is_empty()).then(|| String::from_utf8_lossy(boundary).into_owned());
            let mut parts = Multipart::new(body, boundary.as_deref(), 1 << 20);
            while let Ok(Some(_)) = parts.next_part_with_headers() {}
        }
        _ => {
            let url = Url::parse("http://user:pw@camera:81/stream").expect("a valid URL");
            let Ok(response) = http::exchange(Wire::new(rest), &url, 80) else { return };
            let Ok(mut source) = MjpegSource::from_response(&url, response) else { return };
            while let Some(frame) = source.next_frame() {
                if let Ok(crate::source::Frame { pixels: crate::source::Pixels::Encoded(jpeg), .. }) = frame {
                    assert!(jpeg.len() <= MAX_FRAME_BYTES);
                }
            }
        }
    }
}

/// `cvedge run`'s configuration file.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Config::parse(text, "fuzz.toml");
    }
}

/// What clients send the HTTP API and the MQTT command topics. The first byte picks: a
/// connection's requests (heads, bodies, the `/image` form upload, the `/url` JSON and its URL), a
/// `/url` fetch's response (redirects, body), an MQTT command (topic on the first line, payload
/// after), or a URL as `/url` and `mjpeg:` sources read it.
pub fn http_request(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    match selector % 4 {
        0 => requests(rest),
        1 => fetched(rest),
        2 => {
            let (topic, payload) = first_line(rest);
            let _ = crate::daemon::command::parse(&String::from_utf8_lossy(topic), payload);
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let _ = Url::parse(&text);
            if let Ok((tls, url)) = Url::parse_web(&text) {
                let _ = url.without_credentials();
                let _ = crate::serve::fetch::resolve(tls, &url, &text);
            }
        }
    }
}

/// A connection's requests, read as `cvedge serve` reads them, bodies passed to the `/image` and
/// `/url` parsers.
fn requests(wire: &[u8]) {
    use crate::serve::{http as server, routes};
    let mut reader = io::BufReader::new(wire);
    // Every request consumes bytes, so the loop ends; the bound is belt and braces.
    for _ in 0..wire.len() + 1 {
        let Ok(request) = server::read_request(&mut reader) else { return };
        let _ = routes::route(&request.method, &request.path);
        let _ = (request.keep_alive(), request.has_body(), request.query_param("key"));
        let _ = server::percent_decode(&request.path);
        let Ok(body) = server::read_body(&mut reader, &mut io::sink(), &request, crate::serve::MAX_IMAGE_BYTES) else { return };
        let _ = routes::image_bytes(request.header("content-type"), body.clone(), crate::serve::MAX_IMAGE_BYTES);
        if let Ok(url) = routes::image_url(&body) {
            let _ = Url::parse_web(&url);
        }
    }
}

/// A web server's answer to a `/url` fetch: the status line, a redirect's Location, the body.
fn fetched(wire: &[u8]) {
    use crate::serve::fetch::{FetchLimits, Fetcher};
    let (tls, url) = Url::parse_web("https://example.com/a/b.jpg").expect("a valid URL");
    let Ok(response) = http::exchange(Wire::new(wire), &url, 443) else { return };
    if let Some(location) = response.header("location") {
        let _ = Url::parse_web(&crate::serve::fetch::resolve(tls, &url, location));
    }
    let limits = FetchLimits { allow_private: false, allow_private_option: "--allow-private-urls".into(), max_bytes: crate::serve::MAX_IMAGE_BYTES, timeout: Duration::from_secs(60), max_redirects: 3 };
    let _ = Fetcher::new(limits).body(response, "fuzz", std::time::Instant::now() + Duration::from_secs(60));
}

fn first_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A connection whose peer sends fixed bytes and ignores what it is sent.
struct Wire(Cursor<Vec<u8>>);

impl Wire {
    fn new(bytes: &[u8]) -> Wire {
        Wire(Cursor::new(bytes.to_vec()))
    }
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
