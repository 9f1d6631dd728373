//! Frame sources. A source yields frames with a sequence number and a timestamp; pixels stay
//! encoded (a JPEG from a camera or a file) until a frame is actually classified, so a camera
//! faster than the engine costs no decoding of the frames that are skipped.

mod decode;
mod file;

use std::time::SystemTime;

pub use decode::decode;
pub use file::FileSource;

use crate::error::Result;

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

/// The source stage.
pub trait Source: Send {
    /// Blocks until the next frame; `None` when the source has ended (a replay finished, a stream
    /// closed). A frame that cannot be read is an `Err` for that frame only.
    fn next_frame(&mut self) -> Option<Result<Frame>>;
}
