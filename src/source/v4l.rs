//! `v4l:` sources: USB/UVC cameras through V4L2, by nokhwa. The camera is asked for MJPEG (small
//! over USB, and decoded later by our own Pillow-exact decoder, only for frames that get
//! classified) and falls back to YUYV, converted here to RGB by nokhwa.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType, Resolution};
use nokhwa::{Buffer, Camera};

use super::{Frame, Pixels, Source, SourceOptions};
use crate::error::{Error, Result};

/// Without a requested size: VGA, plenty for a 224-pixel classifier and light on a Pi's USB.
const DEFAULT_SIZE: (u32, u32) = (640, 480);
const DEFAULT_FPS: u32 = 15;
const FIX_DEVICE: &str = "check that the camera is plugged in (ls /dev/video*, `cvedge sources`) and that this user is in the video group";

/// nokhwa's `Camera` is not `Send`, so it lives on a thread of its own and hands frames over; the
/// channel's timeout also notices a camera that stops without an error.
pub struct V4lSource {
    origin: String,
    frames: Receiver<std::result::Result<Buffer, String>>,
    read_timeout: Duration,
    seq: u64,
    ended: bool,
}

impl V4lSource {
    /// `device` is `/dev/videoN`, a symlink to one (`/dev/v4l/by-id/...`) or `N`.
    pub fn open(device: &str, options: &SourceOptions) -> Result<V4lSource> {
        let origin = format!("v4l:{device}");
        let index = device_index(device).map_err(|problem| Error::capture(&origin, problem, FIX_DEVICE))?;
        let (width, height) = match (options.width, options.height) {
            (Some(w), Some(h)) => (w, h),
            _ => DEFAULT_SIZE,
        };
        let fps = options.fps.map_or(DEFAULT_FPS, |f| f.round().max(1.0) as u32);
        let (opened_sender, opened) = mpsc::channel();
        let (sender, frames) = mpsc::sync_channel(2);
        let thread_origin = origin.clone();
        std::thread::spawn(move || {
            let wanted = CameraFormat::new(Resolution::new(width, height), FrameFormat::MJPEG, fps);
            let request = RequestedFormat::with_formats(RequestedFormatType::Closest(wanted), &[FrameFormat::MJPEG, FrameFormat::YUYV]);
            let camera = Camera::with_backend(CameraIndex::Index(index), request, ApiBackend::Video4Linux)
                .map_err(|e| format!("cannot open the camera ({e})"))
                .and_then(|mut camera| camera.open_stream().map(|()| camera).map_err(|e| format!("cannot start the camera ({e})")));
            let mut camera = match camera {
                Ok(camera) => {
                    log::info!("{thread_origin}: streaming {}", camera.camera_format());
                    let _ = opened_sender.send(Ok(()));
                    camera
                }
                Err(problem) => return drop(opened_sender.send(Err(problem))),
            };
            loop {
                let frame = camera.frame().map_err(|e| e.to_string());
                let failed = frame.is_err();
                if sender.send(frame).is_err() || failed {
                    return;
                }
            }
        });
        match opened.recv() {
            Ok(Ok(())) => Ok(V4lSource { origin, frames, read_timeout: options.read_timeout, seq: 0, ended: false }),
            Ok(Err(problem)) => Err(Error::capture(origin, problem, FIX_DEVICE)),
            Err(_) => Err(Error::capture(origin, "the camera thread died while opening the camera", "this is a bug in nokhwa or cvedge; please report it")),
        }
    }
}

/// The N of `/dev/videoN`, checking that the device exists before nokhwa is asked.
fn device_index(device: &str) -> std::result::Result<u32, String> {
    let path = match device.parse::<u32>() {
        Ok(n) => PathBuf::from(format!("/dev/video{n}")),
        Err(_) => PathBuf::from(device),
    };
    let resolved = path.canonicalize().map_err(|e| format!("no camera at {} ({e})", path.display()))?;
    resolved
        .file_name()
        .and_then(|name| name.to_str()?.strip_prefix("video")?.parse::<u32>().ok())
        .filter(|_| resolved.parent() == Some(Path::new("/dev")))
        .ok_or_else(|| format!("{} is not a V4L2 device (/dev/videoN)", resolved.display()))
}

impl Source for V4lSource {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.ended {
            return None;
        }
        let problem = match self.frames.recv_timeout(self.read_timeout) {
            Ok(Ok(buffer)) => Ok(buffer),
            Ok(Err(e)) => Err(format!("the camera stopped delivering frames ({e})")),
            Err(RecvTimeoutError::Timeout) => Err(format!("no frame for {:.1} s, the camera stalled", self.read_timeout.as_secs_f32())),
            Err(RecvTimeoutError::Disconnected) => Err("the camera thread ended".to_string()),
        };
        let buffer = match problem {
            Ok(buffer) => buffer,
            Err(problem) => {
                // Almost always an unplugged camera: end, and let the daemon reopen it.
                self.ended = true;
                return Some(Err(Error::capture(&self.origin, problem, FIX_DEVICE)));
            }
        };
        self.seq += 1;
        let pixels = pixels(&buffer).map_err(|problem| Error::capture(&self.origin, problem, "the frame was skipped"));
        Some(pixels.map(|pixels| Frame { origin: self.origin.clone(), seq: self.seq, time: SystemTime::now(), pixels }))
    }
}

/// MJPEG stays encoded; YUYV (and anything else nokhwa knows) becomes RGB.
pub fn pixels(buffer: &Buffer) -> std::result::Result<Pixels, String> {
    match buffer.source_frame_format() {
        FrameFormat::MJPEG => Ok(Pixels::Encoded(buffer.buffer().to_vec())),
        format => buffer.decode_image::<RgbFormat>().map(Pixels::Rgb).map_err(|e| format!("cannot convert a {format} frame to RGB ({e})")),
    }
}

/// `(path, name)` of every V4L2 camera nokhwa finds; empty where there are none (or no V4L2).
pub fn list_v4l_devices() -> Vec<(String, String)> {
    match nokhwa::query(ApiBackend::Video4Linux) {
        Ok(cameras) => cameras
            .iter()
            .map(|camera| {
                let path = match camera.index() {
                    CameraIndex::Index(n) => format!("/dev/video{n}"),
                    CameraIndex::String(s) => s.clone(),
                };
                (path, camera.human_name())
            })
            .collect(),
        Err(e) => {
            log::debug!("no V4L2 cameras: {e}");
            vec![]
        }
    }
}
