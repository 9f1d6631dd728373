//! Decoding encoded frames into upright RGB, the way the cloud's Python code sees them.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::error::{Error, Result};

/// Decodes an encoded image (JPEG, PNG, BMP, GIF, WebP, TIFF), applies its EXIF orientation and
/// converts it to RGB8: alpha is dropped (as `PIL.Image.convert("RGB")` does), grey is replicated.
/// Images of more than `MAX_PIXELS` are refused before decoding: a server that decodes uploads
/// from anyone bounds what one small, highly compressed file can make it allocate.
pub fn decode(bytes: &[u8], origin: &str) -> Result<image::RgbImage> {
    let image = if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes, origin, MAX_PIXELS)?
    } else {
        decode_other(bytes, origin, MAX_PIXELS)?
    };
    if image.width() == 0 || image.height() == 0 {
        return Err(Error::image(origin, "the image has no pixels", "pass a non-empty image"));
    }
    Ok(image)
}

/// 150 MB of RGB (plus a second copy when EXIF rotates it): what a 1 GB Pi can still hold beside
/// the model. No camera frame comes close; a 48-megapixel phone photo fits; larger files (and
/// uploads to the HTTP server) are refused with the fix (scale them down) instead of taking the
/// device down.
const MAX_PIXELS: usize = 50_000_000;

fn too_large(origin: &str, width: usize, height: usize, max_pixels: usize) -> Error {
    Error::image(
        origin,
        format!("the image is {width}x{height}, larger than cvedge decodes ({} megapixels)", max_pixels / 1_000_000),
        "scale it down first",
    )
}

fn unreadable(origin: &str, e: &dyn std::fmt::Display) -> Error {
    Error::image(origin, format!("not a readable image ({e})"), "pass a JPEG, PNG, BMP, GIF, WebP or TIFF file")
}

/// JPEG through libjpeg-turbo (accurate integer IDCT, fancy upsampling: Pillow's defaults), so the
/// pixels equal those the export's own Python code sees. CMYK/YCCK JPEGs, which libjpeg-turbo
/// cannot turn into RGB, go to the pure-Rust decoder. A truncated or damaged JPEG is refused, as
/// Pillow refuses it: classifying a half-grey frame would publish a confident wrong answer.
fn decode_jpeg(bytes: &[u8], origin: &str, max_pixels: usize) -> Result<image::RgbImage> {
    let header = turbojpeg::read_header(bytes).map_err(|e| unreadable(origin, &e))?;
    if header.width.saturating_mul(header.height) > max_pixels {
        return Err(too_large(origin, header.width, header.height, max_pixels));
    }
    if matches!(header.colorspace, turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK) {
        return decode_other(bytes, origin, max_pixels);
    }
    let decoded = turbojpeg::decompress(bytes, turbojpeg::PixelFormat::RGB).map_err(|e| {
        Error::image(origin, format!("the JPEG is damaged or truncated ({e})"), "capture or copy the image again")
    })?;
    let (width, height, pitch) = (decoded.width, decoded.height, decoded.pitch);
    let mut pixels = decoded.pixels;
    if pitch != width * 3 {
        pixels = pixels.chunks(pitch).flat_map(|row| row[..width * 3].iter().copied()).collect();
    }
    let image = image::RgbImage::from_raw(width as u32, height as u32, pixels)
        .ok_or_else(|| unreadable(origin, &"decoder returned a short buffer"))?;
    let mut image = DynamicImage::ImageRgb8(image);
    image.apply_orientation(exif_orientation(bytes));
    Ok(image.into_rgb8())
}

/// The EXIF orientation of a JPEG; a missing or broken EXIF block must not cost the picture.
fn exif_orientation(bytes: &[u8]) -> image::metadata::Orientation {
    let orientation = exif::Reader::new()
        .read_from_container(&mut Cursor::new(bytes))
        .ok()
        .and_then(|exif| exif.get_field(exif::Tag::Orientation, exif::In::PRIMARY)?.value.get_uint(0))
        .and_then(|v| u8::try_from(v).ok())
        .and_then(image::metadata::Orientation::from_exif);
    orientation.unwrap_or(image::metadata::Orientation::NoTransforms)
}

fn decode_other(bytes: &[u8], origin: &str, max_pixels: usize) -> Result<image::RgbImage> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| unreadable(origin, &e))?;
    if reader.format().is_none() {
        return Err(unreadable(origin, &"unknown format"));
    }
    let mut decoder = reader.into_decoder().map_err(|e| unreadable(origin, &e))?;
    let (width, height) = decoder.dimensions();
    if (width as usize).saturating_mul(height as usize) > max_pixels {
        return Err(too_large(origin, width as usize, height as usize, max_pixels));
    }
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| unreadable(origin, &e))?;
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(img: &DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Cursor::new(vec![]);
        img.write_to(&mut bytes, format).unwrap();
        bytes.into_inner()
    }

    #[test]
    fn alpha_is_dropped_and_grey_replicated() {
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(3, 2, image::Rgba([10, 20, 30, 0])));
        let out = decode(&encode(&rgba, image::ImageFormat::Png), "a.png").unwrap();
        assert_eq!(out.get_pixel(0, 0).0, [10, 20, 30]);
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(3, 2, image::Luma([77])));
        let out = decode(&encode(&grey, image::ImageFormat::Png), "g.png").unwrap();
        assert_eq!(out.get_pixel(2, 1).0, [77, 77, 77]);
    }

    #[test]
    fn decompression_bombs_are_refused_from_their_headers() {
        // 69 bytes claiming 9000x9000 pixels (243 MB of RGB): refused before any allocation.
        let png = b"\x89PNG\x0d\x0a\x1a\x0a\x00\x00\x00\x0dIHDR\x00\x00#(\x00\x00#(\x08\x02\x00\x00\x00\xe2\xb7\xe5\xed\x00\x00\x00\x0cIDATx\x9cc```\x00\x00\x00\x04\x00\x01\xf6\x178U\x00\x00\x00\x00IEND\xaeB`\x82";
        // The bound files and cameras get (`decode`), as the HTTP server's.
        let err = decode(png, "bomb.png").unwrap_err().to_string();
        assert!(err.contains("9000x9000, larger than cvedge decodes (50 megapixels)"), "{err}");
        // A real JPEG whose frame header is rewritten to 12288x12288.
        let mut jpeg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gray.jpg")).unwrap();
        let sof = jpeg.windows(2).position(|w| w[0] == 0xff && (0xc0..=0xc2).contains(&w[1])).unwrap();
        jpeg[sof + 5..sof + 9].copy_from_slice(&[0x30, 0x00, 0x30, 0x00]);
        let err = decode(&jpeg, "bomb.jpg").unwrap_err().to_string();
        assert!(err.contains("12288x12288, larger than"), "{err}");
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let err = decode(b"this is not an image", "x.jpg").unwrap_err().to_string();
        assert!(err.contains("x.jpg") && err.contains("not a readable image"), "{err}");
        let png = encode(&DynamicImage::ImageRgb8(image::RgbImage::new(64, 64)), image::ImageFormat::Png);
        assert!(decode(&png[..png.len() / 2], "half.png").is_err());
    }
}
