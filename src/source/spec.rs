//! Source specs: the URL-like strings that name a camera in the configuration and on the command
//! line. Parsing only checks the grammar; whether the camera is there is found out by opening it,
//! which the daemon retries.
//!
//! ```text
//! v4l:/dev/video0 | v4l:0                 USB/UVC camera (V4L2)
//! mjpeg:http://[user:pass@]host[:port]/path   MJPEG over HTTP (IP cameras, ESP32-CAM)
//! ffmpeg:INPUT                            anything ffmpeg reads: rtsp://..., a video file
//! ffmpeg:-OPTION ... -i INPUT             ffmpeg input options, split on whitespace
//! file:PATH | file:FOLDER | file:GLOB     replay images
//! synthetic[:WxH][@FPS]                   a moving test pattern
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const KINDS: &str = "use v4l:, mjpeg:, ffmpeg:, file: or synthetic";

#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A device path (`/dev/video0`) or an index (`0`).
    V4l { device: String },
    /// An `http://` URL serving `multipart/x-mixed-replace` JPEGs; credentials may be in it.
    Mjpeg { url: String },
    /// ffmpeg's input: a URL or path, or input options containing `-i` when it starts with `-`.
    Ffmpeg { input: String },
    /// A file, a folder of images or a glob pattern.
    File { pattern: String },
    /// Falls back to the options' size and rate, then 640x480 at 10 frames per second.
    Synthetic { size: Option<(u32, u32)>, fps: Option<f32> },
}

/// How to open a source. `width`, `height` and `fps` are requests: a V4L camera picks its closest
/// mode, ffmpeg resamples the rate, files are paced; an MJPEG camera sends what it sends.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fps: Option<f32>,
    /// How long a stream may stay silent before it counts as stalled.
    pub read_timeout: Duration,
    /// Replay `file:` sources forever.
    pub loop_files: bool,
}

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions { width: None, height: None, fps: None, read_timeout: Duration::from_secs(10), loop_files: false }
    }
}

impl FromStr for SourceSpec {
    /// A sentence naming the problem and the fix, for `Error::Config`.
    type Err = String;

    fn from_str(text: &str) -> Result<SourceSpec, String> {
        let text = text.trim();
        let (kind, rest) = text.split_once(':').unwrap_or((text, ""));
        let empty = |example: &str| format!("'{text}' names no {kind} source; write e.g. {example}");
        match kind {
            "v4l" if rest.is_empty() => Err(empty("v4l:/dev/video0 or v4l:0")),
            "v4l" if rest.starts_with("/dev/") || rest.parse::<u32>().is_ok() => Ok(SourceSpec::V4l { device: rest.to_string() }),
            "v4l" => Err(format!("'{text}': '{rest}' is not a device; write a path like v4l:/dev/video0 or an index like v4l:0")),
            "mjpeg" => match super::http::Url::parse(rest) {
                Ok(_) => Ok(SourceSpec::Mjpeg { url: rest.to_string() }),
                Err(problem) => Err(format!("'{text}': {problem}")),
            },
            "ffmpeg" if rest.is_empty() => Err(empty("ffmpeg:rtsp://camera/stream or ffmpeg:/videos/clip.mp4")),
            "ffmpeg" if rest.starts_with('-') && !rest.split_whitespace().any(|a| a == "-i") => {
                Err(format!("'{text}': ffmpeg options need an input; add `-i INPUT`, e.g. ffmpeg:-f lavfi -i testsrc2"))
            }
            "ffmpeg" => Ok(SourceSpec::Ffmpeg { input: rest.to_string() }),
            "file" if rest.is_empty() => Err(empty("file:/images or file:/images/*.jpg")),
            "file" => Ok(SourceSpec::File { pattern: rest.to_string() }),
            "synthetic" => parse_synthetic(rest).map_err(|problem| format!("'{text}': {problem}; write e.g. synthetic:640x480@10")),
            "http" | "https" => Err(format!("'{text}' has no source kind; write mjpeg:{text} for an MJPEG camera or ffmpeg:{text} for other streams")),
            "rtsp" | "rtsps" => Err(format!("'{text}' has no source kind; write ffmpeg:{text}")),
            _ => Err(format!("unknown source '{text}'; {KINDS}")),
        }
    }
}

fn parse_synthetic(rest: &str) -> Result<SourceSpec, String> {
    let (size, fps) = match rest.split_once('@') {
        Some((size, fps)) => (size, Some(fps)),
        None => (rest, None),
    };
    let size = match size {
        "" => None,
        _ => {
            let (w, h) = size.split_once('x').ok_or(format!("'{size}' is not WIDTHxHEIGHT"))?;
            match (w.parse::<u32>(), h.parse::<u32>()) {
                (Ok(w @ 1..=8192), Ok(h @ 1..=8192)) => Some((w, h)),
                _ => return Err(format!("'{size}' is not a size between 1x1 and 8192x8192")),
            }
        }
    };
    let fps = match fps.map(str::parse::<f32>) {
        None => None,
        Some(Ok(f)) if f > 0.0 && f <= 1000.0 => Some(f),
        Some(_) => return Err(format!("'{}' is not a frame rate between 0 and 1000", fps.unwrap_or_default())),
    };
    Ok(SourceSpec::Synthetic { size, fps })
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::V4l { device } => write!(f, "v4l:{device}"),
            SourceSpec::Mjpeg { url } => write!(f, "mjpeg:{url}"),
            SourceSpec::Ffmpeg { input } => write!(f, "ffmpeg:{input}"),
            SourceSpec::File { pattern } => write!(f, "file:{pattern}"),
            SourceSpec::Synthetic { size, fps } => {
                f.write_str("synthetic")?;
                match (size, fps) {
                    (None, None) => Ok(()),
                    (Some((w, h)), None) => write!(f, ":{w}x{h}"),
                    (None, Some(fps)) => write!(f, ":@{fps}"),
                    (Some((w, h)), Some(fps)) => write!(f, ":{w}x{h}@{fps}"),
                }
            }
        }
    }
}

impl SourceSpec {
    /// Where frames come from, for messages: the spec without any password.
    pub fn origin(&self) -> String {
        match self {
            SourceSpec::Mjpeg { url } => match super::http::Url::parse(url) {
                Ok(url) => format!("mjpeg:{}", url.without_credentials()),
                Err(_) => "mjpeg:(invalid url)".to_string(),
            },
            other => other.to_string(),
        }
    }
}
