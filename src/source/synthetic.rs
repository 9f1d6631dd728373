//! `synthetic:` sources: a moving test pattern, to try the daemon without a camera.

use std::time::SystemTime;

use super::pace::Pacer;
use super::{Frame, Pixels, Source};

pub struct SyntheticSource {
    width: u32,
    height: u32,
    pacer: Pacer,
    seq: u64,
}

impl SyntheticSource {
    pub fn new(width: u32, height: u32, fps: f32) -> SyntheticSource {
        SyntheticSource { width, height, pacer: Pacer::new(Some(fps)), seq: 0 }
    }
}

impl Source for SyntheticSource {
    fn next_frame(&mut self) -> Option<crate::error::Result<Frame>> {
        self.pacer.wait();
        self.seq += 1;
        // A colour gradient with a white bar that crosses the frame every 64 frames.
        let bar = (self.seq % 64) as u32 * self.width / 64;
        let bar_width = (self.width / 16).max(1);
        let (w, h) = (self.width, self.height);
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            if x >= bar && x < bar + bar_width {
                image::Rgb([255, 255, 255])
            } else {
                image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, (self.seq * 4 % 256) as u8])
            }
        });
        Some(Ok(Frame { origin: "synthetic".into(), seq: self.seq, time: SystemTime::now(), pixels: Pixels::Rgb(image) }))
    }
}
