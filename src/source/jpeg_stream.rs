//! Splitting a byte stream of concatenated JPEGs (ffmpeg's `-f mjpeg`) into frames.
//!
//! Searching for the next FF D8 would cut a frame at an embedded EXIF thumbnail, so the marker
//! segments are walked by their lengths and only the entropy-coded data is scanned: there, FF is
//! always followed by 00 (a stuffed byte), a restart marker or the marker that ends the scan.

use std::io::{self, BufRead};
use super::stream_error::{ended_mid_frame, invalid};

/// Reads the next JPEG (SOI to EOI inclusive), skipping anything before its SOI. `Ok(None)` when
/// the stream ends between frames; an error when it ends inside one or a frame exceeds `max_bytes`.
pub fn read_jpeg(reader: &mut impl BufRead, max_bytes: usize) -> io::Result<Option<Vec<u8>>> {
    if !skip_to_start_of_image(reader, max_bytes)? {
        return Ok(None);
    }
    let mut jpeg = vec![0xff, 0xd8];
    let mut marker = next_marker(reader)?;
    loop {
        jpeg.extend([0xff, marker]);
        match marker {
            0xd9 => return Ok(Some(jpeg)),
            0x01 | 0xd0..=0xd7 => marker = next_marker(reader)?,
            _ => {
                let mut length = [0; 2];
                reader.read_exact(&mut length).map_err(ended_mid_frame)?;
                jpeg.extend(length);
                let length = usize::from(u16::from_be_bytes(length));
                if length < 2 {
                    return Err(invalid(format!("a JPEG segment (marker FF {marker:02X}) has a length of {length}")));
                }
                check_size(jpeg.len() + length, max_bytes)?;
                let start = jpeg.len();
                jpeg.resize(start + length - 2, 0);
                reader.read_exact(&mut jpeg[start..]).map_err(ended_mid_frame)?;
                marker = if marker == 0xda { scan_entropy_data(reader, &mut jpeg, max_bytes)? } else { next_marker(reader)? };
            }
        }
    }
}

/// Consumes bytes up to and including the next FF D8; false if the stream ends first.
fn skip_to_start_of_image(reader: &mut impl BufRead, max_bytes: usize) -> io::Result<bool> {
    let (mut skipped, mut after_ff) = (0usize, false);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        for (i, &byte) in buf.iter().enumerate() {
            if after_ff && byte == 0xd8 {
                reader.consume(i + 1);
                return Ok(true);
            }
            after_ff = byte == 0xff;
        }
        let n = buf.len();
        reader.consume(n);
        skipped += n;
        if skipped > max_bytes {
            return Err(invalid(format!("no JPEG start in {skipped} bytes: the stream is not MJPEG")));
        }
    }
}

/// The byte after the next FF (fill bytes FF FF... allowed).
fn next_marker(reader: &mut impl BufRead) -> io::Result<u8> {
    let first = byte(reader)?;
    if first != 0xff {
        return Err(invalid(format!("expected a JPEG marker, found byte {first:02X}")));
    }
    loop {
        match byte(reader)? {
            0xff => continue,
            marker => return Ok(marker),
        }
    }
}

/// Copies entropy-coded data into `jpeg`; returns the marker that ends it (not copied).
fn scan_entropy_data(reader: &mut impl BufRead, jpeg: &mut Vec<u8>, max_bytes: usize) -> io::Result<u8> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Err(ended_mid_frame(io::ErrorKind::UnexpectedEof.into()));
        }
        let Some(ff) = buf.iter().position(|&b| b == 0xff) else {
            jpeg.extend_from_slice(buf);
            let n = buf.len();
            reader.consume(n);
            check_size(jpeg.len(), max_bytes)?;
            continue;
        };
        jpeg.extend_from_slice(&buf[..ff]);
        reader.consume(ff + 1);
        check_size(jpeg.len(), max_bytes)?;
        let mut next = byte(reader)?;
        while next == 0xff {
            next = byte(reader)?;
        }
        match next {
            0x00 | 0xd0..=0xd7 => jpeg.extend([0xff, next]),
            marker => return Ok(marker),
        }
    }
}

fn byte(reader: &mut impl BufRead) -> io::Result<u8> {
    let mut b = [0];
    reader.read_exact(&mut b).map_err(ended_mid_frame)?;
    Ok(b[0])
}

fn check_size(len: usize, max_bytes: usize) -> io::Result<()> {
    if len > max_bytes {
        return Err(invalid(format!("a JPEG frame is larger than {max_bytes} bytes")));
    }
    Ok(())
}



#[cfg(test)]
mod tests {
    use super::*;

    /// A real JPEG with a whole second JPEG (a thumbnail, as EXIF carries one) inside an APP1 segment.
    fn jpeg_with_thumbnail() -> Vec<u8> {
        let real = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/gray.jpg")).unwrap();
        let thumbnail = [&[0xff, 0xd8, 0xff, 0xd9][..], b"\xff\xd8 trailing"].concat();
        let app1 = [b"Exif\0\0".as_slice(), &thumbnail].concat();
        let length = u16::try_from(app1.len() + 2).unwrap().to_be_bytes();
        [&real[..2], &[0xff, 0xe1], &length, &app1, &real[2..]].concat()
    }

    #[test]
    fn concatenated_frames_split_exactly_despite_noise_and_thumbnails() {
        let frame = jpeg_with_thumbnail();
        let mut stream = b"noise\xff".to_vec();
        stream.extend(&frame);
        stream.extend(b"\r\n");
        stream.extend(&frame);
        let mut reader = &stream[..];
        assert_eq!(read_jpeg(&mut reader, 1 << 24).unwrap().unwrap(), frame);
        assert_eq!(read_jpeg(&mut reader, 1 << 24).unwrap().unwrap(), frame);
        assert!(read_jpeg(&mut reader, 1 << 24).unwrap().is_none());
    }

    #[test]
    fn truncated_oversized_and_garbage_streams_are_errors() {
        let frame = jpeg_with_thumbnail();
        let err = read_jpeg(&mut &frame[..frame.len() - 10], 1 << 24).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let err = read_jpeg(&mut &frame[..], 1000).unwrap_err();
        assert!(err.to_string().contains("larger than 1000"), "{err}");
        let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert!(read_jpeg(&mut &garbage[..], 1000).unwrap_err().to_string().contains("not MJPEG"));
        assert!(read_jpeg(&mut &b"\xff\xd8\x12\x34"[..], 1000).is_err());
    }
}
