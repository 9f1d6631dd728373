//! `mjpeg:` sources: IP cameras and ESP32-CAMs streaming `multipart/x-mixed-replace` JPEGs.

use std::io::BufRead;
use std::time::SystemTime;

use super::http::{self, Url};
use super::multipart::Multipart;
use super::{Frame, Pixels, Source, SourceOptions, MAX_FRAME_BYTES};
use crate::error::{Error, Result};

pub struct MjpegSource {
    origin: String,
    parts: Multipart<Box<dyn BufRead + Send>>,
    seq: u64,
    /// After a stream error the connection is useless: report the error once, then end.
    broken: bool,
}

impl MjpegSource {
    /// Connects and checks that the response is an MJPEG stream.
    pub fn open(url: &str, options: &SourceOptions) -> Result<MjpegSource> {
        let url = Url::parse(url).map_err(|problem| Error::capture(format!("mjpeg:{url}"), problem, "fix the camera's URL"))?;
        let origin = format!("mjpeg:{}", url.without_credentials());
        let response = http::get(&url, options.read_timeout).map_err(|e| {
            Error::capture(&origin, format!("cannot connect ({e})"), "check that the camera is on, its address and port, and the network")
        })?;
        MjpegSource::from_response(&url, response)
    }

    /// Checks that a camera's response is an MJPEG stream and reads frames from its body.
    pub(crate) fn from_response(url: &Url, response: http::Response) -> Result<MjpegSource> {
        let origin = format!("mjpeg:{}", url.without_credentials());
        if response.status == 401 || response.status == 403 {
            let fix = if url.credentials.is_some() { "check the user name and password" } else { "add them: mjpeg:http://user:password@host/..." };
            return Err(Error::capture(&origin, format!("the camera refused access (HTTP {} {})", response.status, response.reason), fix));
        }
        if response.status != 200 {
            return Err(Error::capture(&origin, format!("HTTP {} {}", response.status, response.reason), "check the stream's path (often /stream, /video or /mjpg/video.mjpg)"));
        }
        let content_type = response.header("content-type").unwrap_or("").to_string();
        // ffmpeg's own HTTP server says application/octet-stream; the boundary is then learnt.
        let lower = content_type.to_ascii_lowercase();
        if !(lower.starts_with("multipart/") || lower.starts_with("application/octet-stream")) {
            return Err(Error::capture(
                &origin,
                format!("not an MJPEG stream (Content-Type: {content_type:?})"),
                "use the camera's MJPEG stream URL, or ffmpeg:URL for other formats",
            ));
        }
        let boundary = http::parameter(&content_type, "boundary");
        Ok(MjpegSource { origin, parts: Multipart::new(response.body, boundary.as_deref(), MAX_FRAME_BYTES), seq: 0, broken: false })
    }
}

impl Source for MjpegSource {
    fn next_frame(&mut self) -> Option<Result<Frame>> {
        if self.broken {
            return None;
        }
        let part = match self.parts.next_part() {
            Ok(part) => part?,
            Err(e) => {
                self.broken = true;
                let problem = match e.kind() {
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!("no data for too long, the camera stalled ({e})"),
                    _ => format!("the stream broke ({e})"),
                };
                return Some(Err(Error::capture(&self.origin, problem, "it is reopened; if this repeats, check the camera and network")));
            }
        };
        self.seq += 1;
        // A part that is not one whole JPEG (a status page, a cut frame) costs that frame only.
        if !(part.starts_with(&[0xff, 0xd8]) && is_jpeg_end(&part)) {
            let problem = format!("part {} is not a complete JPEG ({} bytes starting {:02X?})", self.seq, part.len(), &part[..part.len().min(4)]);
            return Some(Err(Error::capture(&self.origin, problem, "the frame was skipped")));
        }
        Some(Ok(Frame { origin: self.origin.clone(), seq: self.seq, time: SystemTime::now(), pixels: Pixels::Encoded(part) }))
    }
}

/// Ends with EOI, give or take the padding some cameras add.
fn is_jpeg_end(part: &[u8]) -> bool {
    let end = part.iter().rposition(|&b| b != 0 && !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    part[..end].ends_with(&[0xff, 0xd9])
}
