//! `io::Error`s shared by the stream parsers (HTTP, multipart, JPEG scanning), so every source
//! words a broken stream the same way.

use std::io;

pub(super) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// An end of stream inside a frame says so; other errors pass through unchanged.
pub(super) fn ended_mid_frame(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => io::Error::new(io::ErrorKind::UnexpectedEof, "the stream closed in the middle of a frame"),
        _ => e,
    }
}
