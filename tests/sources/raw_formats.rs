//! What a USB camera delivers, made by ffmpeg: MJPEG and YUYV frames through nokhwa's `Buffer`,
//! the path `v4l:` frames take (no camera can exist on a CI machine).

use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{FrameFormat, Resolution};
use nokhwa::Buffer;

use super::{ffmpeg_output, have_ffmpeg};
use cvedge::source::{self, Pixels};

const SIZE: (u32, u32) = (128, 96);

fn test_pattern(format: &[&str]) -> Vec<u8> {
    let pattern = format!("testsrc2=size={}x{}:rate=1", SIZE.0, SIZE.1);
    let mut args = vec!["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", &pattern, "-frames:v", "1"];
    args.extend(format);
    args.push("pipe:1");
    ffmpeg_output(&args, &[])
}

/// Largest and mean absolute channel difference.
fn difference(a: &image::RgbImage, b: &image::RgbImage) -> (u8, f64) {
    let diffs: Vec<u8> = a.as_raw().iter().zip(b.as_raw()).map(|(x, y)| x.abs_diff(*y)).collect();
    (*diffs.iter().max().unwrap(), diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64)
}

#[test]
fn mjpeg_frames_stay_encoded_and_decode_like_nokhwa() {
    if !have_ffmpeg() {
        return;
    }
    let jpeg = test_pattern(&["-f", "mjpeg", "-q:v", "2"]);
    let buffer = Buffer::new(Resolution::new(SIZE.0, SIZE.1), &jpeg, FrameFormat::MJPEG);
    let ours = match source::v4l_pixels(&buffer).unwrap() {
        Pixels::Encoded(bytes) => source::decode(&bytes, "mjpeg").unwrap(),
        Pixels::Rgb(_) => panic!("MJPEG must stay encoded for the Pillow-exact decoder"),
    };
    let nokhwas = buffer.decode_image::<RgbFormat>().unwrap();
    assert_eq!(nokhwas.dimensions(), SIZE);
    assert_eq!(ours.dimensions(), SIZE);
    let (max, mean) = difference(&ours, &nokhwas);
    eprintln!("MJPEG: ours vs nokhwa's decoder: max {max}, mean {mean:.3}");
    // Both are libjpeg-turbo with the same settings: measured identical.
    assert!(max <= 2 && mean < 0.5, "max {max}, mean {mean}");
}

#[test]
fn yuyv_frames_convert_like_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let yuyv = test_pattern(&["-f", "rawvideo", "-pix_fmt", "yuyv422"]);
    assert_eq!(yuyv.len(), (SIZE.0 * SIZE.1 * 2) as usize);
    let size = format!("{}x{}", SIZE.0, SIZE.1);
    // ffmpeg's own conversion of the same bytes is the reference.
    let args = ["-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "yuyv422", "-s", &size, "-i", "pipe:0"];
    let rgb = ffmpeg_output(&[&args[..], &["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]].concat(), &yuyv);
    let reference = image::RgbImage::from_raw(SIZE.0, SIZE.1, rgb).unwrap();

    let buffer = Buffer::new(Resolution::new(SIZE.0, SIZE.1), &yuyv, FrameFormat::YUYV);
    let Pixels::Rgb(ours) = source::v4l_pixels(&buffer).unwrap() else { panic!("YUYV must become RGB") };
    assert_eq!(ours.dimensions(), SIZE);
    let (max, mean) = difference(&ours, &reference);
    eprintln!("YUYV: nokhwa's conversion vs ffmpeg's: max {max}, mean {mean:.3}");
    // Both are BT.601 limited range with rounding differences (measured: max 3, mean 0.92); full
    // range or BT.709 by mistake would be off by 10 or more.
    assert!(max <= 4 && mean < 1.5, "max {max}, mean {mean}");

    let cut = Buffer::new(Resolution::new(SIZE.0, SIZE.1), &yuyv[..yuyv.len() - 6], FrameFormat::YUYV);
    assert!(source::v4l_pixels(&cut).is_err(), "a short frame is an error, not a panic");
}

/// Many UVC cameras send MJPEG frames without Huffman tables (DHT), relying on the standard ones.
#[test]
fn mjpeg_frames_without_huffman_tables_decode() {
    if !have_ffmpeg() {
        return;
    }
    let jpeg = test_pattern(&["-f", "mjpeg", "-huffman", "default", "-q:v", "2"]);
    let mut stripped = jpeg[..2].to_vec();
    let mut at = 2;
    // Copy segments up to the scan, leaving out every DHT (FF C4).
    while jpeg[at + 1] != 0xda {
        let length = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if jpeg[at + 1] != 0xc4 {
            stripped.extend(&jpeg[at..at + 2 + length]);
        }
        at += 2 + length;
    }
    stripped.extend(&jpeg[at..]);
    assert!(stripped.len() < jpeg.len(), "the tables were there to strip");
    assert_eq!(source::decode(&stripped, "no-dht").unwrap(), source::decode(&jpeg, "dht").unwrap());
}
