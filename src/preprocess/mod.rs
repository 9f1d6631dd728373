//! Preprocessing that reproduces the cloud: resize/crop recipe, colour order, value range, mean,
//! tensor layout. The rules (see `shared/docs/custom-vision-exports.md`) are decided once, when a
//! model loads ([`Conventions`]); per frame, [`Preprocessor::prepare`] writes the network tensor
//! straight from the decoded frame in one pass.

pub mod resize;

use std::fmt;
use std::str::FromStr;

use resize::View;

/// How an image becomes the network's square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipe {
    /// Legacy 227 models (Custom Vision's classic sample code): cap the longer side at 1600, crop
    /// the largest centred square, resize to 256x256, centre-crop the input size.
    LegacySquare256,
    /// Newer General (compact): shorter side to `target` (256), centre-crop the input size.
    /// With `target` equal to the input size this is the 2024+ export's own `predict.py`.
    ShorterSide { target: u32 },
    /// General (compact) [S1]: stretch the whole image to the input size.
    Stretch,
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipe::LegacySquare256 => f.write_str("legacy-square-256"),
            Recipe::ShorterSide { target } => write!(f, "shorter-side-{target}"),
            Recipe::Stretch => f.write_str("stretch"),
        }
    }
}

impl FromStr for Recipe {
    type Err = String;
    /// Names: `legacy-square-256`, `shorter-side-256` (any `shorter-side-N`), `stretch`.
    fn from_str(s: &str) -> Result<Recipe, String> {
        match s {
            "legacy-square-256" | "legacy" => Ok(Recipe::LegacySquare256),
            "stretch" => Ok(Recipe::Stretch),
            _ => s
                .strip_prefix("shorter-side-")
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .map(|target| Recipe::ShorterSide { target })
                .ok_or_else(|| format!("unknown recipe '{s}': use legacy-square-256, shorter-side-256, shorter-side-<N> or stretch")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorOrder {
    Bgr,
    Rgb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRange {
    /// 0..255, as decoded.
    Byte,
    /// 0..1 (divided by 255).
    Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// Everything that turns pixels into the tensor a given export expects.
#[derive(Debug, Clone, PartialEq)]
pub struct Conventions {
    pub recipe: Recipe,
    pub color: ColorOrder,
    pub range: ValueRange,
    /// Per-channel mean to subtract, in B, G, R order (only the 2019 TFLite export needs one).
    pub mean_bgr: Option<[f32; 3]>,
}

impl Conventions {
    /// The mean to subtract, per channel of the tensor filled (in its colour order).
    pub fn mean_in_tensor_order(&self) -> Option<[f32; 3]> {
        let [b, g, r] = self.mean_bgr?;
        Some(match self.color {
            ColorOrder::Bgr => [b, g, r],
            ColorOrder::Rgb => [r, g, b],
        })
    }
}

impl fmt::Display for Conventions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let color = match self.color {
            ColorOrder::Bgr => "BGR",
            ColorOrder::Rgb => "RGB",
        };
        let range = match self.range {
            ValueRange::Byte => "0..255",
            ValueRange::Unit => "0..1",
        };
        write!(f, "{} {color} {range}", self.recipe)?;
        if let Some([b, g, r]) = self.mean_bgr {
            write!(f, " minus mean B{b} G{g} R{r}")?;
        }
        Ok(())
    }
}

/// The preprocessing stage.
pub trait Preprocess {
    /// Number of f32 values one image becomes.
    fn tensor_len(&self) -> usize;
    /// Writes one image's tensor into `out` (length [`Preprocess::tensor_len`]).
    fn prepare(&self, image: &image::RgbImage, out: &mut [f32]);
}

/// Reproduces one export's preprocessing for a `width` x `height` network input.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    pub conventions: Conventions,
    pub layout: Layout,
    pub width: usize,
    pub height: usize,
}

/// Legacy recipe: images larger than this are scaled down first (as the sample code does).
const LEGACY_MAX_SIDE: usize = 1600;
const LEGACY_SQUARE: usize = 256;

impl Preprocessor {
    /// Where the input window sits in the resized image, and that resized size.
    fn plan<'a>(&self, src: View<'a>) -> (View<'a>, usize, usize, (usize, usize)) {
        let (w, h) = (self.width, self.height);
        match self.conventions.recipe {
            Recipe::Stretch => (src, w, h, (0, 0)),
            Recipe::ShorterSide { target } => {
                let t = target as usize;
                let (sw, sh) = (src.width, src.height);
                // Rounded, as `int(x + 0.5)` would be; the window is centred like the sample's crop.
                let (rw, rh) = if sw < sh { (t, (sh * t + sw / 2) / sw) } else { ((sw * t + sh / 2) / sh, t) };
                let (rw, rh) = (rw.max(w), rh.max(h));
                (src, rw, rh, (rw / 2 - w / 2, rh / 2 - h / 2))
            }
            Recipe::LegacySquare256 => {
                let side = src.width.min(src.height);
                let square = src.centre(side, side);
                let s = LEGACY_SQUARE.max(w).max(h);
                (square, s, s, (s / 2 - w / 2, s / 2 - h / 2))
            }
        }
    }

    /// The legacy recipe's first step: scale images with a side of 1600 or more down so that the
    /// longer side is 1600. Returns `None` when the image is small enough.
    fn legacy_cap(&self, image: &image::RgbImage) -> Option<image::RgbImage> {
        let (w, h) = (image.width() as usize, image.height() as usize);
        if self.conventions.recipe != Recipe::LegacySquare256 || (w < LEGACY_MAX_SIDE && h < LEGACY_MAX_SIDE) {
            return None;
        }
        let (nw, nh) = if h > w { (LEGACY_MAX_SIDE * w / h, LEGACY_MAX_SIDE) } else { (LEGACY_MAX_SIDE, LEGACY_MAX_SIDE * h / w) };
        Some(resize::resize(View::of(image), nw.max(1), nh.max(1)))
    }
}

impl Preprocess for Preprocessor {
    fn tensor_len(&self) -> usize {
        self.width * self.height * 3
    }

    fn prepare(&self, image: &image::RgbImage, out: &mut [f32]) {
        assert_eq!(out.len(), self.tensor_len(), "tensor buffer has the wrong length");
        let capped = self.legacy_cap(image);
        let src = View::of(capped.as_ref().unwrap_or(image));
        let (src, rw, rh, (wx, wy)) = self.plan(src);
        let c = &self.conventions;
        // A division, not a multiplication by 1/255, so values equal numpy's `x / 255.0` exactly.
        let divisor = match c.range {
            ValueRange::Byte => 1.0,
            ValueRange::Unit => 255.0,
        };
        // Channel k of the tensor takes source channel order[k]; the mean is indexed the same way.
        let order = match c.color {
            ColorOrder::Bgr => [2, 1, 0],
            ColorOrder::Rgb => [0, 1, 2],
        };
        let mean = c.mean_in_tensor_order();
        let (w, h) = (self.width, self.height);
        let plane = w * h;
        resize::resize_window(src, rw, rh, (wx, wy, w, h), |x, y, rgb| {
            for (k, &source) in order.iter().enumerate() {
                let mut v = rgb[source] as f32;
                if let Some(m) = mean {
                    v -= m[k];
                }
                let at = match self.layout {
                    Layout::Nchw => k * plane + y * w + x,
                    Layout::Nhwc => (y * w + x) * 3 + k,
                };
                out[at] = v / divisor;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(recipe: Recipe, color: ColorOrder, range: ValueRange, layout: Layout) -> Preprocessor {
        Preprocessor { conventions: Conventions { recipe, color, range, mean_bgr: None }, layout, width: 4, height: 4 }
    }

    #[test]
    fn recipe_names_round_trip() {
        for r in [Recipe::LegacySquare256, Recipe::ShorterSide { target: 256 }, Recipe::ShorterSide { target: 224 }, Recipe::Stretch] {
            assert_eq!(r.to_string().parse::<Recipe>().unwrap(), r);
        }
        assert!("bicubic".parse::<Recipe>().unwrap_err().contains("legacy-square-256"));
    }

    #[test]
    fn channel_order_range_and_layout() {
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([10, 20, 30]));
        let p = pre(Recipe::Stretch, ColorOrder::Bgr, ValueRange::Byte, Layout::Nchw);
        let mut out = vec![0.0; p.tensor_len()];
        p.prepare(&img, &mut out);
        assert_eq!((out[0], out[16], out[32]), (30.0, 20.0, 10.0));
        let p = pre(Recipe::Stretch, ColorOrder::Rgb, ValueRange::Unit, Layout::Nhwc);
        p.prepare(&img, &mut out);
        assert_eq!(&out[0..3], &[10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0]);
    }

    #[test]
    fn mean_is_subtracted_per_bgr_channel() {
        let img = image::RgbImage::from_pixel(8, 8, image::Rgb([123, 117, 104]));
        let mut p = pre(Recipe::Stretch, ColorOrder::Bgr, ValueRange::Byte, Layout::Nhwc);
        p.conventions.mean_bgr = Some([104.0, 117.0, 123.0]);
        let mut out = vec![1.0; p.tensor_len()];
        p.prepare(&img, &mut out);
        assert!(out.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn centre_crops_take_the_middle() {
        // A wide image whose middle column band is white: the crop must see only white.
        let img = image::RgbImage::from_fn(64, 16, |x, _| image::Rgb(if (24..40).contains(&x) { [255; 3] } else { [0; 3] }));
        for recipe in [Recipe::LegacySquare256, Recipe::ShorterSide { target: 4 }] {
            let p = pre(recipe, ColorOrder::Rgb, ValueRange::Byte, Layout::Nhwc);
            let mut out = vec![0.0; p.tensor_len()];
            p.prepare(&img, &mut out);
            assert!(out.iter().all(|v| *v == 255.0), "{recipe}: {out:?}");
        }
    }

    #[test]
    fn tiny_images_do_not_panic() {
        let img = image::RgbImage::from_pixel(1, 1, image::Rgb([1, 2, 3]));
        for recipe in [Recipe::LegacySquare256, Recipe::ShorterSide { target: 256 }, Recipe::Stretch] {
            let p = pre(recipe, ColorOrder::Rgb, ValueRange::Byte, Layout::Nchw);
            let mut out = vec![0.0; p.tensor_len()];
            p.prepare(&img, &mut out);
            assert_eq!(out[0], 1.0);
        }
    }
}
