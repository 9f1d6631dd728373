//! Bilinear resampling that reproduces OpenCV's `cv2.resize(..., INTER_LINEAR)` on 8-bit images,
//! which is what Custom Vision's own sample code uses: half-pixel centres, edge clamping, 11-bit
//! fixed-point weights and OpenCV's vectorised rounding. Matching it to the bit is what makes the
//! device agree with the portal on non-saturated probabilities.
//!
//! Resize and crop are fused: [`resize_window`] computes only the pixels of the resized image that
//! the centre crop keeps, straight from the source, so no intermediate image is allocated.

/// A borrowed RGB8 image (or a rectangular part of one).
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub data: &'a [u8],
    /// Bytes per source row.
    pub stride: usize,
    pub x0: usize,
    pub y0: usize,
    pub width: usize,
    pub height: usize,
}

impl<'a> View<'a> {
    pub fn of(image: &'a image::RgbImage) -> View<'a> {
        let (w, h) = image.dimensions();
        View { data: image.as_raw(), stride: w as usize * 3, x0: 0, y0: 0, width: w as usize, height: h as usize }
    }

    /// The centred `width` x `height` part (offsets as in the sample code: `w//2 - cw//2`).
    pub fn centre(self, width: usize, height: usize) -> View<'a> {
        let width = width.min(self.width);
        let height = height.min(self.height);
        View {
            x0: self.x0 + self.width / 2 - width / 2,
            y0: self.y0 + self.height / 2 - height / 2,
            width,
            height,
            ..self
        }
    }

    #[inline]
    fn pixel(&self, x: usize, y: usize) -> &[u8] {
        let at = (self.y0 + y) * self.stride + (self.x0 + x) * 3;
        &self.data[at..at + 3]
    }
}

const COEF_BITS: u32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// Source index and fixed-point weights for one destination coordinate, as OpenCV computes them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Tap {
    index: usize,
    next: usize,
    w0: i32,
    w1: i32,
}

fn taps(src_len: usize, dst_len: usize, range: std::ops::Range<usize>) -> Vec<Tap> {
    let scale = src_len as f64 / dst_len as f64;
    range
        .map(|d| {
            // OpenCV computes the position in double, rounds it to float, and rounds weights
            // half to even (`cvRound`).
            let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as i64;
            let mut frac = f - s as f32;
            if s < 0 {
                s = 0;
                frac = 0.0;
            }
            if s as usize >= src_len - 1 {
                s = src_len as i64 - 1;
                frac = 0.0;
            }
            let index = s as usize;
            Tap {
                index,
                next: (index + 1).min(src_len - 1),
                w0: ((1.0 - frac) * COEF_SCALE).round_ties_even() as i32,
                w1: (frac * COEF_SCALE).round_ties_even() as i32,
            }
        })
        .collect()
}

/// Resizes `src` to `dst_width` x `dst_height` and calls `emit(x, y, rgb)` for the destination
/// pixels inside `window` (x0, y0, width, height), with x and y relative to the window.
pub fn resize_window(
    src: View<'_>,
    dst_width: usize,
    dst_height: usize,
    window: (usize, usize, usize, usize),
    mut emit: impl FnMut(usize, usize, [u8; 3]),
) {
    let (wx, wy, ww, wh) = window;
    let xs = taps(src.width, dst_width, wx..wx + ww);
    let ys = taps(src.height, dst_height, wy..wy + wh);
    for (y, ty) in ys.iter().enumerate() {
        for (x, tx) in xs.iter().enumerate() {
            let mut rgb = [0u8; 3];
            for (c, out) in rgb.iter_mut().enumerate() {
                let row = |sy: usize| {
                    src.pixel(tx.index, sy)[c] as i32 * tx.w0 + src.pixel(tx.next, sy)[c] as i32 * tx.w1
                };
                *out = vertical(row(ty.index), row(ty.next), ty.w0, ty.w1);
            }
            emit(x, y, rgb);
        }
    }
}

/// OpenCV's vectorised vertical pass (`VResizeLinearVec_32s8u`): rows pre-shifted by 4, 16-bit
/// high multiplies, then a rounding shift by 2 with saturation.
#[inline]
fn vertical(row0: i32, row1: i32, b0: i32, b1: i32) -> u8 {
    let mul_hi = |a: i32, b: i32| ((a >> 4) * b) >> 16;
    ((mul_hi(row0, b0) + mul_hi(row1, b1) + 2) >> 2).clamp(0, 255) as u8
}

/// A whole resized image (used for the legacy 1600-pixel cap, the only step that needs one).
pub fn resize(src: View<'_>, dst_width: usize, dst_height: usize) -> image::RgbImage {
    let mut out = image::RgbImage::new(dst_width as u32, dst_height as u32);
    resize_window(src, dst_width, dst_height, (0, 0, dst_width, dst_height), |x, y, rgb| {
        out.put_pixel(x as u32, y as u32, image::Rgb(rgb))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8]))
    }

    #[test]
    fn same_size_is_identity() {
        let img = gradient(13, 9);
        assert_eq!(resize(View::of(&img), 13, 9), img);
    }

    #[test]
    fn halving_averages_pairs() {
        let img = image::RgbImage::from_fn(4, 2, |x, _| image::Rgb([if x % 2 == 0 { 10 } else { 20 }; 3]));
        let out = resize(View::of(&img), 2, 1);
        assert_eq!(out.get_pixel(0, 0).0, [15; 3]);
        assert_eq!(out.get_pixel(1, 0).0, [15; 3]);
    }

    #[test]
    fn window_equals_crop_of_full_resize() {
        let img = gradient(300, 200);
        let full = resize(View::of(&img), 384, 256);
        let mut matches = 0;
        resize_window(View::of(&img), 384, 256, (80, 16, 224, 224), |x, y, rgb| {
            assert_eq!(full.get_pixel(x as u32 + 80, y as u32 + 16).0, rgb);
            matches += 1;
        });
        assert_eq!(matches, 224 * 224);
    }

    #[test]
    fn taps_clamp_at_edges_like_opencv() {
        let t = taps(10, 20, 0..20);
        assert_eq!(t[0], Tap { index: 0, next: 1, w0: 2048, w1: 0 });
        assert_eq!(t[19].index, 9);
        assert_eq!(t[19].w1, 0);
        // (1 + 0.5) * 0.5 - 0.5 = 0.25
        assert_eq!(t[1], Tap { index: 0, next: 1, w0: 1536, w1: 512 });
    }
}
