//! Frame sources against real streams: ffmpeg serving MJPEG over HTTP on loopback, ffmpeg reading
//! files and generators, nokhwa's decoders on bytes ffmpeg made, and hand-made broken cameras.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cvedge::source::{self, Frame, Pixels, Source, SourceOptions, SourceSpec};

#[path = "sources/malformed.rs"]
mod malformed;
#[path = "sources/raw_formats.rs"]
mod raw_formats;

/// ffmpeg is installed in CI; on a user's machine without it these tests say so and pass.
pub fn have_ffmpeg() -> bool {
    let found = Command::new("ffmpeg").arg("-version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !found {
        eprintln!("skipped: ffmpeg not installed");
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn options(read_timeout_ms: u64) -> SourceOptions {
    SourceOptions { read_timeout: Duration::from_millis(read_timeout_ms), ..SourceOptions::default() }
}

/// The next frame, failing the test if it took longer than `limit`.
pub fn next_within(source: &mut dyn Source, limit: Duration) -> Option<cvedge::Result<Frame>> {
    let start = Instant::now();
    let frame = source.next_frame();
    assert!(start.elapsed() <= limit, "next_frame took {:?}", start.elapsed());
    frame
}

/// Kills the server even when an assertion fails first.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An IP camera: ffmpeg serving a 320x240, 10 fps test pattern as multipart MJPEG.
fn mjpeg_camera(port: u16) -> Server {
    let url = format!("http://127.0.0.1:{port}/x.mjpg");
    let args = ["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-f", "mpjpeg", "-listen", "1", &url];
    Server(Command::new("ffmpeg").args(args).stdin(Stdio::null()).spawn().unwrap())
}

/// Opens `spec`, retrying while the server starts listening.
fn open_retrying(spec: &SourceSpec, options: &SourceOptions) -> Box<dyn Source> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match source::open(spec, options) {
            Ok(source) => return source,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn assert_frames(source: &mut dyn Source, count: usize, size: (u32, u32)) -> Vec<Frame> {
    let frames: Vec<Frame> = (0..count).map(|_| next_within(source, Duration::from_secs(5)).expect("a frame").expect("a good frame")).collect();
    for pair in frames.windows(2) {
        assert!(pair[1].seq > pair[0].seq && pair[1].time >= pair[0].time);
    }
    for frame in &frames {
        assert!(matches!(frame.pixels, Pixels::Encoded(ref b) if b.starts_with(&[0xff, 0xd8])));
        assert_eq!(frame.clone().into_rgb().unwrap().dimensions(), size, "{}", frame.origin);
    }
    frames
}

#[test]
fn specs_round_trip_and_bad_specs_say_what_to_write() {
    let specs = [
        "v4l:/dev/video0",
        "v4l:1",
        "mjpeg:http://admin:pw@192.168.1.20:81/stream",
        "ffmpeg:rtsp://cam/live",
        "ffmpeg:-f lavfi -i testsrc2=size=64x48",
        "file:/images/*.jpg",
        "synthetic",
        "synthetic:320x240",
        "synthetic:@2.5",
        "synthetic:320x240@15",
    ];
    for text in specs {
        let spec: SourceSpec = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(spec.to_string(), text);
        assert_eq!(spec.to_string().parse::<SourceSpec>().unwrap(), spec);
    }
    let origin = "mjpeg:http://admin:pw@cam/s".parse::<SourceSpec>().unwrap().origin();
    assert_eq!(origin, "mjpeg:http://cam:80/s", "no password in messages");
    let bad = [
        ("foo:bar", "use v4l:, mjpeg:, ffmpeg:, file: or synthetic"),
        ("http://cam/stream", "mjpeg:http://cam/stream"),
        ("rtsp://cam/live", "ffmpeg:rtsp://cam/live"),
        ("v4l:", "v4l:/dev/video0"),
        ("v4l:camera", "not a device"),
        ("mjpeg:https://cam/s", "ffmpeg:https"),
        ("mjpeg:http://cam:99999/s", "not a port"),
        ("ffmpeg:-f lavfi", "-i INPUT"),
        ("file:", "file:/images"),
        ("synthetic:big", "WIDTHxHEIGHT"),
        ("synthetic:0x10@5", "between 1x1"),
        ("synthetic:@-1", "frame rate"),
    ];
    for (text, hint) in bad {
        let err = text.parse::<SourceSpec>().unwrap_err();
        assert!(err.contains(hint), "{text}: {err}");
    }
}

#[test]
fn mjpeg_camera_frames_stop_when_killed_and_reopen_after_restart() {
    if !have_ffmpeg() {
        return;
    }
    let port = free_port();
    let spec: SourceSpec = format!("mjpeg:http://127.0.0.1:{port}/x.mjpg").parse().unwrap();
    let options = options(2000);
    let mut camera = mjpeg_camera(port);
    let mut source = open_retrying(&spec, &options);
    let first = assert_frames(source.as_mut(), 5, (320, 240));
    assert_eq!(first[0].origin, format!("mjpeg:http://127.0.0.1:{port}/x.mjpg"));

    let _ = camera.0.kill();
    let _ = camera.0.wait();
    // Frames already in the socket buffer may still come; then an end or an error, in time.
    let stop = (0..20).find_map(|_| match next_within(source.as_mut(), Duration::from_secs(3)) {
        Some(Ok(_)) => None,
        other => Some(other.map(|r| r.unwrap_err().to_string())),
    });
    let stop = stop.expect("the source noticed the camera is gone");
    eprintln!("after kill: {stop:?}");
    assert!(next_within(source.as_mut(), Duration::from_secs(1)).is_none(), "an ended source stays ended");

    let _camera = mjpeg_camera(port);
    let mut source = open_retrying(&spec, &options);
    let again = assert_frames(source.as_mut(), 3, (320, 240));
    assert_eq!(again[0].seq, 1, "a reopened source counts afresh");
}

#[test]
fn ffmpeg_reads_generators_and_files_and_reports_its_errors() {
    if !have_ffmpeg() {
        return;
    }
    let spec: SourceSpec = "ffmpeg:-f lavfi -i testsrc2=size=160x120:rate=25".parse().unwrap();
    let mut source = source::open(&spec, &options(5000)).unwrap();
    assert_frames(source.as_mut(), 3, (160, 120));
    drop(source);

    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("clip.mp4");
    let made = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=96x64:rate=20", "-t", "2", "-c:v", "mpeg4"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(made.success());
    let spec: SourceSpec = format!("ffmpeg:{}", video.display()).parse().unwrap();
    let options = SourceOptions { fps: Some(10.0), ..options(5000) };
    let mut source = source::open(&spec, &options).unwrap();
    let frames = std::iter::from_fn(|| next_within(source.as_mut(), Duration::from_secs(5))).collect::<Vec<_>>();
    assert!(frames.iter().all(Result::is_ok), "a file ends cleanly");
    assert!((18..=23).contains(&frames.len()), "2 s at -r 10 gave {} frames", frames.len());

    let spec: SourceSpec = "ffmpeg:/nonexistent/clip.mp4".parse().unwrap();
    let mut source = source::open(&spec, &options).unwrap();
    let err = next_within(source.as_mut(), Duration::from_secs(5)).unwrap().unwrap_err().to_string();
    assert!(err.contains("ffmpeg exited") && err.contains("No such file"), "{err}");
    assert!(source.next_frame().is_none());
}

#[test]
fn a_stalled_ffmpeg_input_is_reported_within_the_timeout() {
    if !have_ffmpeg() {
        return;
    }
    // An HTTP server that accepts and never answers: ffmpeg waits, the source must not.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let spec: SourceSpec = format!("ffmpeg:http://{}/never", listener.local_addr().unwrap()).parse().unwrap();
    let mut source = source::open(&spec, &options(700)).unwrap();
    let err = next_within(source.as_mut(), Duration::from_secs(3)).unwrap().unwrap_err().to_string();
    assert!(err.contains("stalled"), "{err}");
    drop(listener);
}

#[test]
fn missing_cameras_are_errors_and_synthetic_frames_move() {
    let err = source::open(&"v4l:/dev/video99".parse().unwrap(), &options(1000)).err().unwrap().to_string();
    assert!(err.contains("no camera at /dev/video99") && err.contains("plugged in"), "{err}");
    let err = source::open(&"v4l:7".parse().unwrap(), &options(1000)).err().unwrap().to_string();
    assert!(err.contains("/dev/video7"), "{err}");
    // No camera can exist here; the query must still answer, not fail or panic.
    assert_eq!(source::list_v4l_devices(), vec![]);

    let mut source = source::open(&"synthetic:32x16@50".parse().unwrap(), &SourceOptions::default()).unwrap();
    let start = Instant::now();
    let frames: Vec<Frame> = (0..4).map(|_| source.next_frame().unwrap().unwrap()).collect();
    assert!(start.elapsed() >= Duration::from_millis(55), "paced at 50 fps: {:?}", start.elapsed());
    let images: Vec<_> = frames.iter().map(|f| f.clone().into_rgb().unwrap()).collect();
    assert_eq!(images[0].dimensions(), (32, 16));
    assert_ne!(images[0], images[1], "the pattern moves");
    assert_eq!(frames.iter().map(|f| f.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

/// Runs ffmpeg with `args`, feeding `input`, and returns its stdout.
pub fn ffmpeg_output(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("ffmpeg").args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "ffmpeg {args:?} failed");
    output.stdout
}
