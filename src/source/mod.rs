//! Frame sources. A source yields frames with a sequence number and a timestamp; pixels stay
//! encoded (a JPEG from a camera or a file) until a frame is actually classified, so a camera
//! faster than the engine costs no decoding of the frames that are skipped.

//!
//! [`open`] turns a [`SourceSpec`] (`v4l:`, `mjpeg:`, `ffmpeg:`, `file:`, `synthetic`; grammar in
//! `spec.rs`) into a source. Opening is separate from reading so that the daemon can reopen a
//! source that ended (a stream closed, ffmpeg died, a camera was unplugged) with backoff. Every
//! live source reports a stream failure as one `Err` and then ends.

mod decode;
mod ffmpeg;
mod file;
pub(crate) mod http;
pub(crate) mod jpeg_stream;
mod mjpeg;
pub(crate) mod multipart;
mod pace;
mod spec;
mod stream_error;
mod synthetic;
mod v4l;
pub mod v4l_query;

use std::time::SystemTime;

pub use decode::decode;
pub use ffmpeg::FfmpegSource;
pub use file::{images_in, is_image, FileSource};
pub use mjpeg::MjpegSource;
pub use spec::{SourceOptions, SourceSpec};
pub use synthetic::SyntheticSource;
pub use v4l::{list_v4l_devices, pixels as v4l_pixels, V4lSource};

use crate::error::Result;

/// Frame rate of a looping `file:` replay when none is configured.
pub const DEFAULT_REPLAY_FPS: f32 = 30.0;

/// No camera frame comes near this; garbage announcing more must not exhaust a Pi's memory.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Opens the source a spec names (connects, starts ffmpeg, lists the files).
pub fn open(spec: &SourceSpec, options: &SourceOptions) -> Result<Box<dyn Source>> {
    Ok(match spec {
        SourceSpec::V4l { device } => Box::new(V4lSource::open(device, options)?),
        SourceSpec::Mjpeg { url } => Box::new(MjpegSource::open(url, options)?),
        SourceSpec::Ffmpeg { input } => Box::new(FfmpegSource::open(input, options)?),
        SourceSpec::File { pattern } => {
            // A looping replay stands in for a camera: unpaced it would spin a core re-reading
            // files that latest-frame-wins then throws away, so it defaults to a camera's rate.
            let fps = options.fps.or(options.loop_files.then_some(DEFAULT_REPLAY_FPS));
            Box::new(FileSource::new(FileSource::expand(pattern)?).looping(options.loop_files).paced(fps))
        }
        SourceSpec::Synthetic { size, fps } => {
            let (width, height) = size.or(options.width.zip(options.height)).unwrap_or((640, 480));
            Box::new(SyntheticSource::new(width, height, fps.or(options.fps).unwrap_or(10.0)))
        }
    })
}

/// A frame's pixels as the source delivered them.
#[derive(Debug, Clone)]
pub enum Pixels {
    /// An encoded image (JPEG, PNG...), decoded on demand.
    Encoded(Vec<u8>),
    /// Already decoded, upright RGB.
    Rgb(image::RgbImage),
}

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Where it came from (a file path, a camera name), for messages and JSON.
    pub origin: String,
    /// Monotonic per source.
    pub seq: u64,
    pub time: SystemTime,
    pub pixels: Pixels,
}

impl Frame {
    /// Upright RGB pixels (decoding and applying EXIF orientation if needed).
    pub fn into_rgb(self) -> Result<image::RgbImage> {
        match self.pixels {
            Pixels::Encoded(bytes) => decode(&bytes, &self.origin),
            Pixels::Rgb(image) => Ok(image),
        }
    }
}

/// The source stage. Not `Send`: some camera backends must stay on the thread that opened them,
/// so the daemon opens each source inside its capture thread.
pub trait Source {
    /// Blocks until the next frame; `None` when the source has ended (a replay finished, a stream
    /// closed). A frame that cannot be read is an `Err` for that frame only.
    fn next_frame(&mut self) -> Option<Result<Frame>>;
}
