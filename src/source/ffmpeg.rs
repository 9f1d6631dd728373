//! `ffmpeg:` sources: RTSP cameras, video files, anything ffmpeg reads, re-encoded by ffmpeg as
//! high-quality JPEGs on its stdout. A reader thread splits them so that a stalled input can be
//! noticed with a timeout (a pipe has none).

use std::ffi::OsStr;
use std::io::{BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::jpeg_stream::read_jpeg;
use super::{Frame, Pixels, Source, SourceOptions, MAX_FRAME_BYTES};
use crate::error::{Error, Result};

/// The end of ffmpeg's stderr kept for error messages.
const STDERR_TAIL: usize = 2000;

pub struct FfmpegSource {
    origin: String,
    child: Child,
    frames: Receiver<std::io::Result<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
    read_timeout: Duration,
    seq: u64,
    ended: bool,
}

/// ffmpeg's arguments for `input` (the text after `ffmpeg:`).
pub fn arguments(input: &str, options: &SourceOptions) -> Vec<String> {
    let mut args: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"].map(String::from).to_vec();
    let input_args: Vec<String> = if input.starts_with('-') {
        input.split_whitespace().map(String::from).collect()
    } else {
        vec!["-i".into(), input.into()]
    };
    let url = input_args.iter().skip_while(|a| *a != "-i").nth(1).map_or("", String::as_str);
    if url.starts_with("rtsp://") || url.starts_with("rtsps://") {
        args.extend(["-rtsp_transport", "tcp"].map(String::from));
    }
    // A file or generator would otherwise be read as fast as ffmpeg can decode; a replayed video
    // should behave like the camera it stands in for.
    if !url.contains("://") {
        args.push("-re".into());
    }
    args.extend(input_args);
    args.extend(["-an", "-f", "mjpeg", "-q:v", "2"].map(String::from));
    if let Some(fps) = options.fps {
        args.extend(["-r".to_string(), fps.to_string()]);
    }
    args.push("pipe:1".into());
    args
}

impl FfmpegSource {
    pub fn open(input: &str, options: &SourceOptions) -> Result<FfmpegSource> {
        FfmpegSource::open_with(OsStr::new("ffmpeg"), input, options)
    }

    fn open_with(program: &OsStr, input: &str, options: &SourceOptions) -> Result<FfmpegSource> {
        let origin = format!("ffmpeg:{input}");
        let mut child = Command::new(program)
            .args(arguments(input, options))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::capture(&origin, "ffmpeg is not installed", "install it: sudo apt-get install ffmpeg"),
                _ => Error::capture(&origin, format!("cannot start ffmpeg ({e})"), "check that ffmpeg runs: ffmpeg -version"),
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let tail = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0; 1024];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut buf) {
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                tail.push_str(&String::from_utf8_lossy(&buf[..n]));
                if tail.len() > 2 * STDERR_TAIL {
                    let mut cut = tail.len() - STDERR_TAIL;
                    while !tail.is_char_boundary(cut) {
                        cut += 1;
                    }
                    tail.replace_range(..cut, "");
                }
            }
        });
        // Two frames of slack: ffmpeg waits for a slow reader instead of buffering without bound.
        let (sender, frames) = mpsc::sync_channel(2);
        std::thread::spawn(move || {
            let mut reader = BufReader::with_capacity(1 << 16, stdout);
            loop {
                let frame = read_jpeg(&mut reader, MAX_FRAME_BYTES).transpose();
                let stop = !matches!(frame, Some(Ok(_)));
                if let Some(frame) = frame {
                    if sender.send(frame).is_err() {
                        return;
                    }
                }
                if stop {
                    return;
                }
            }
        });
        Ok(FfmpegSource { origin, child, frames, stderr, read_timeout: options.read_timeout, seq: 0, ended: false })
    }

    /// Why ffmpeg stopped: its exit status and the end of its stderr; `None` if it succeeded.
    fn exit_problem(&mut self) -> Option<String> {
        // stdout is closed, so ffmpeg is exiting; give it a moment to do so.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => break None,
            }
        };
        std::thread::sleep(Duration::from_millis(50)); // the stderr thread's last read
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner()).trim().replace('\n', " | ");
        match status {
            Some(status) if status.success() => None,
            Some(status) => Some(format!("ffmpeg exited ({status}): {}", if stderr.is_empty() { "no message" } else { &stderr })),
            None => Some(format!("ffmpeg closed its output but did not exit: {stderr}")),
        }
    }
}

impl Source for FfmpegSource {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.ended {
            return None;
        }
        let fix = "check the input with the same ffmpeg command; it is reopened";
        let bytes = match self.frames.recv_timeout(self.read_timeout) {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                self.ended = true;
                let problem = self.exit_problem().unwrap_or_else(|| format!("ffmpeg's output is not MJPEG ({e})"));
                return Some(Err(Error::capture(&self.origin, problem, fix)));
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.ended = true;
                return self.exit_problem().map(|problem| Err(Error::capture(&self.origin, problem, fix)));
            }
            Err(RecvTimeoutError::Timeout) => {
                self.ended = true;
                let problem = format!("no frame from ffmpeg for {:.1} s, the input stalled", self.read_timeout.as_secs_f32());
                return Some(Err(Error::capture(&self.origin, problem, fix)));
            }
        };
        self.seq += 1;
        Some(Ok(Frame { origin: self.origin.clone(), seq: self.seq, time: SystemTime::now(), pixels: Pixels::Encoded(bytes) }))
    }
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ffmpeg_names_the_fix() {
        let result = FfmpegSource::open_with(OsStr::new("/nonexistent/ffmpeg"), "/video.mp4", &SourceOptions::default());
        let err = result.err().expect("no such program").to_string();
        assert!(err.contains("ffmpeg is not installed") && err.contains("apt-get install ffmpeg"), "{err}");
    }

    #[test]
    fn arguments_for_rtsp_files_and_raw_options() {
        let options = SourceOptions { fps: Some(2.5), ..SourceOptions::default() };
        let joined = |input| arguments(input, &options).join(" ");
        assert_eq!(
            joined("rtsp://cam/s"),
            "-hide_banner -loglevel error -nostdin -rtsp_transport tcp -i rtsp://cam/s -an -f mjpeg -q:v 2 -r 2.5 pipe:1"
        );
        assert!(joined("/v/a b.mp4").contains("-re -i /v/a b.mp4 -an"));
        assert!(joined("-f lavfi -i testsrc2=size=64x48").contains("-re -f lavfi -i testsrc2=size=64x48 -an"));
    }
}
