//! Parts of a `multipart/x-mixed-replace` body, the way MJPEG cameras send frames over HTTP, or of
//! a `multipart/form-data` upload (the image field posted to `cvedge serve`).
//!
//! A part's Content-Length is trusted when present (ESP32-CAM and ffmpeg send it); otherwise the
//! part runs to the next boundary line. Cameras disagree on whether the boundary parameter includes
//! the leading `--`, so both spellings are accepted; a stream whose declared boundary never shows
//! up is refused quickly rather than searched forever.

use std::io::{self, BufRead, Read};

use super::http::read_line;
use super::stream_error::{ended_mid_frame, invalid};

/// Non-boundary bytes tolerated before a part (preamble, trailing CRLFs, a wrong Content-Length).
const MAX_SKIP: usize = 64 * 1024;
const MAX_PART_HEADERS: usize = 32;

/// A part's headers (names lower-cased) and body.
pub type Part = (Vec<(String, String)>, Vec<u8>);

pub struct Multipart<R> {
    reader: R,
    /// The delimiter line, `--` included; learnt from the first `--` line when not declared.
    delimiter: Option<Vec<u8>>,
    /// True when the delimiter before the next part has been consumed already.
    at_part: bool,
    ended: bool,
    max_part_bytes: usize,
}

impl<R: BufRead> Multipart<R> {
    /// `boundary` is the Content-Type's `boundary=` parameter, if any.
    pub fn new(reader: R, boundary: Option<&str>, max_part_bytes: usize) -> Multipart<R> {
        let delimiter = boundary.map(|b| if b.starts_with("--") { b.as_bytes().to_vec() } else { format!("--{b}").into_bytes() });
        Multipart { reader, delimiter, at_part: false, ended: false, max_part_bytes }
    }

    /// A `multipart/form-data` body, where the delimiter is exactly `--` and the boundary (RFC
    /// 2046; curl's boundaries start with dashes of their own, which must not be taken for it).
    pub fn form(reader: R, boundary: &str, max_part_bytes: usize) -> Multipart<R> {
        let delimiter = Some(format!("--{boundary}").into_bytes());
        Multipart { reader, delimiter, at_part: false, ended: false, max_part_bytes }
    }

    /// The next part's body; `None` when the stream closes between parts or sends the final
    /// delimiter. Errors (a cut, oversized or undelimited part) leave the stream unusable.
    pub fn next_part(&mut self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.next_part_with_headers()?.map(|(_, body)| body))
    }

    /// As [`Multipart::next_part`], with the part's headers (names lower-cased): a form upload's
    /// `Content-Disposition` names its field.
    pub fn next_part_with_headers(&mut self) -> io::Result<Option<Part>> {
        if self.ended || (!self.at_part && !self.skip_to_delimiter()?) {
            self.ended = true;
            return Ok(None);
        }
        self.at_part = false;
        let mut content_length = None;
        let mut headers = vec![];
        for count in 0.. {
            let line = read_line(&mut self.reader).map_err(ended_mid_frame)?;
            if line.is_empty() {
                break;
            }
            if count == MAX_PART_HEADERS {
                return Err(invalid(format!("a part has more than {MAX_PART_HEADERS} headers")));
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
                if name == "content-length" {
                    let n = value.parse::<u64>().map_err(|_| invalid(format!("bad part Content-Length {value:?}")))?;
                    content_length = Some(n);
                }
                headers.push((name, value.to_string()));
            }
        }
        let body = match content_length {
            Some(n) if n > self.max_part_bytes as u64 => {
                return Err(invalid(format!("a part announces {n} bytes, more than the {} allowed for a frame", self.max_part_bytes)))
            }
            Some(n) => {
                let mut body = vec![0; n as usize];
                self.reader.read_exact(&mut body).map_err(ended_mid_frame)?;
                body
            }
            None => self.read_to_delimiter()?,
        };
        Ok(Some((headers, body)))
    }

    /// Consumes lines up to and including a delimiter line; false at the end of the stream.
    fn skip_to_delimiter(&mut self) -> io::Result<bool> {
        let mut skipped = 0;
        let mut first_line = None;
        while skipped <= MAX_SKIP {
            let mut line = vec![];
            let n = (&mut self.reader).take((MAX_SKIP + 1 - skipped) as u64).read_until(b'\n', &mut line)?;
            if n == 0 && first_line.is_none() {
                return Ok(false);
            }
            if n == 0 {
                break; // it closed after sending something that is not a part
            }
            skipped += n;
            match self.delimiter_kind(&line) {
                Some(Delimiter::Next) => return Ok(true),
                Some(Delimiter::Last) => return Ok(false),
                None if first_line.is_none() && !trim(&line).is_empty() => first_line = Some(String::from_utf8_lossy(trim(&line)).chars().take(40).collect::<String>()),
                None => {}
            }
        }
        let expected = self.delimiter.as_deref().map(String::from_utf8_lossy).unwrap_or_else(|| "--...".into());
        Err(invalid(format!("no part delimiter '{expected}' in {skipped} bytes (they start with {:?})", first_line.unwrap_or_default())))
    }

    /// A part without Content-Length: everything up to the next delimiter line.
    fn read_to_delimiter(&mut self) -> io::Result<Vec<u8>> {
        let mut body = vec![];
        loop {
            let start = body.len();
            let limit = (self.max_part_bytes + 1 - start) as u64;
            let n = (&mut self.reader).take(limit).read_until(b'\n', &mut body)?;
            if n == 0 {
                return Err(ended_mid_frame(io::ErrorKind::UnexpectedEof.into()));
            }
            if let Some(kind) = self.delimiter_kind(&body[start..]) {
                body.truncate(start);
                // The CRLF before the delimiter belongs to it.
                if body.ends_with(b"\r\n") {
                    body.truncate(body.len() - 2);
                } else if body.ends_with(b"\n") {
                    body.pop();
                }
                self.at_part = kind == Delimiter::Next;
                self.ended = kind == Delimiter::Last;
                return Ok(body);
            }
            if body.len() > self.max_part_bytes {
                return Err(invalid(format!("a part is larger than the {} bytes allowed for a frame", self.max_part_bytes)));
            }
        }
    }

    fn delimiter_kind(&mut self, line: &[u8]) -> Option<Delimiter> {
        let line = trim(line);
        if self.delimiter.is_none() && line.starts_with(b"--") && line.len() > 2 {
            self.delimiter = Some(line.strip_suffix(b"--").unwrap_or(line).to_vec());
        }
        let delimiter = self.delimiter.as_deref()?;
        let rest = line.strip_prefix(delimiter)?;
        match rest {
            b"" => Some(Delimiter::Next),
            b"--" => Some(Delimiter::Last),
            _ => None,
        }
    }
}

#[derive(Debug, PartialEq, Clone, Copy)]
enum Delimiter {
    Next,
    Last,
}

fn trim(line: &[u8]) -> &[u8] {
    let end = line.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
    &line[..end]
}



#[cfg(test)]
mod tests {
    use super::*;

    fn parts(wire: &[u8], boundary: Option<&str>, max: usize) -> (Vec<Vec<u8>>, Option<io::Error>) {
        let mut multipart = Multipart::new(wire, boundary, max);
        let mut parts = vec![];
        loop {
            match multipart.next_part() {
                Ok(Some(part)) => parts.push(part),
                Ok(None) => return (parts, None),
                Err(e) => return (parts, Some(e)),
            }
        }
    }

    #[test]
    fn parts_with_and_without_content_length() {
        let wire = b"preamble\r\n--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 4\r\n\r\nAB\r\n\r\n--frame\r\n\r\nline1\r\nline2\r\n--frame--\r\nignored";
        let (got, err) = parts(wire, Some("frame"), 100);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, vec![b"AB\r\n".to_vec(), b"line1\r\nline2".to_vec()]);
    }

    #[test]
    fn boundary_spelling_and_discovery() {
        let wire = b"--xyz\r\nContent-Length: 1\r\n\r\nA\r\n--xyz\r\nContent-Length: 1\r\n\r\nB\r\n";
        for boundary in [Some("xyz"), Some("--xyz"), None] {
            assert_eq!(parts(wire, boundary, 100).0, vec![b"A".to_vec(), b"B".to_vec()], "{boundary:?}");
        }
    }

    #[test]
    fn form_boundaries_are_taken_literally() {
        // curl's boundary starts with dashes of its own; the delimiter is `--` and all of them.
        let wire = b"----abc\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n------abc\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\ny\r\n------abc--\r\n";
        let mut form = Multipart::form(&wire[..], "----abc", 100);
        let (headers, body) = form.next_part_with_headers().unwrap().unwrap();
        assert_eq!((headers[0].0.as_str(), body.as_slice()), ("content-disposition", &b"y"[..]));
        assert!(form.next_part().unwrap().is_none());
    }

    #[test]
    fn malformed_streams_are_errors() {
        let err = |wire: &[u8], max| parts(wire, Some("frame"), max).1.map(|e| e.to_string()).unwrap_or_default();
        let long: Vec<u8> = b"--other\r\n\r\nxx\r\n".repeat(10_000);
        assert!(err(&long, 100).contains("no part delimiter '--frame'"));
        assert!(err(b"--frame\r\nContent-Length: 1\r\n\r\nA\r\n--fame\r\n", 100).contains("no part delimiter '--frame' in 10 bytes (they start with \"--fame\")"));
        assert!(err(b"--frame\r\nContent-Length: 99999999999\r\n\r\n", 100).contains("more than the 100"));
        assert!(err(b"--frame\r\nContent-Length: 10\r\n\r\nshort", 100).contains("middle of a frame"));
        assert!(err(b"--frame\r\n\r\nno end", 100).contains("middle of a frame"));
        assert!(err(&[b"--frame\r\n\r\n".as_slice(), &[7u8; 500]].concat(), 100).contains("larger than the 100"));
        assert!(err(b"--frame\r\nContent-Length: x\r\n\r\n", 100).contains("bad part Content-Length"));
    }
}
