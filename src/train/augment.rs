//! Light augmentation applied to decoded images before preprocessing: horizontal flips and crop
//! jitter, the two changes a fixed camera's view plausibly goes through (an object on the other
//! side, slightly closer or off-centre). Colour is left alone: the backbone's normalisation and
//! the cloud's preprocessing are exact, and a colour shift would teach the head a camera it
//! will never see.
//!
//! Variant 0 is the image itself. Odd variants are flipped; variants from 2 on are also cropped
//! to 80–95% of each side at a position drawn from a generator seeded by the training seed, the
//! image's hash and the variant, so a variant is the same image every run (and can be cached).

use image::RgbImage;

use super::folds::SplitMix64;

/// The seed for one image's variant.
fn variant_seed(seed: u64, image_sha1: &str, variant: usize) -> u64 {
    let digest = sha1_smol::Sha1::from(format!("{seed}:{image_sha1}:{variant}")).digest().bytes();
    u64::from_le_bytes(digest[..8].try_into().expect("a SHA1 has 20 bytes"))
}

/// Returns variant `variant` of `image` (variant 0: the image unchanged).
pub fn variant(image: RgbImage, seed: u64, image_sha1: &str, variant: usize) -> RgbImage {
    if variant == 0 {
        return image;
    }
    let mut out = image;
    if variant >= 2 {
        let mut rng = SplitMix64(variant_seed(seed, image_sha1, variant));
        let (w, h) = (out.width(), out.height());
        let scale = |side: u32, rng: &mut SplitMix64| ((side as u64 * (80 + rng.below(16) as u64)) / 100).max(1) as u32;
        let (cw, ch) = (scale(w, &mut rng), scale(h, &mut rng));
        let x = rng.below((w - cw + 1) as usize) as u32;
        let y = rng.below((h - ch + 1) as usize) as u32;
        out = image::imageops::crop_imm(&out, x, y, cw, ch).to_image();
    }
    if variant % 2 == 1 {
        image::imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(50, 40, |x, y| image::Rgb([x as u8 * 5, y as u8 * 6, 7]))
    }

    #[test]
    fn variants_are_deterministic_and_differ() {
        let a = variant(gradient(), 7, "abc", 2);
        assert_eq!(a, variant(gradient(), 7, "abc", 2));
        assert_ne!(a, variant(gradient(), 8, "abc", 2), "another seed gives another crop");
        assert!(a.width() >= 40 && a.width() <= 47 && a.height() >= 32 && a.height() <= 38);
        assert_eq!(variant(gradient(), 7, "abc", 0), gradient());
        let flipped = variant(gradient(), 7, "abc", 1);
        assert_eq!(flipped.get_pixel(0, 0), gradient().get_pixel(49, 0));
    }
}
