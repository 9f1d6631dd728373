//! Just enough HTTP/1.1 to GET a camera's MJPEG stream: one request, the status line and headers,
//! and a body that may be chunked. No TLS (cameras on a LAN speak plain HTTP; `ffmpeg:` covers the
//! rest), no redirects, no keep-alive.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;
use super::stream_error::invalid;

/// A status line or header longer than this is not HTTP.
const MAX_LINE: u64 = 8 * 1024;
const MAX_HEADERS: usize = 100;

/// An `http://[user:pass@]host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `user:password`, sent as basic authentication.
    pub credentials: Option<String>,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let rest = match text.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => return Err("https is not supported for MJPEG; use ffmpeg:https://... instead".into()),
            _ => return Err(format!("'{text}' is not an http:// URL; write e.g. mjpeg:http://192.168.1.20:81/stream")),
        };
        Url::parse_authority(text, rest, 80, "mjpeg:http://192.168.1.20:81/stream")
    }

    /// An `http://` or `https://` URL (default ports 80 and 443); true for https.
    pub(crate) fn parse_web(text: &str) -> Result<(bool, Url), String> {
        const EXAMPLE: &str = "https://example.com/photo.jpg";
        let (tls, rest, port) = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest, 80),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest, 443),
            _ => return Err(format!("'{}' is not an http:// or https:// URL; write e.g. {EXAMPLE}", truncated(text))),
        };
        Ok((tls, Url::parse_authority(text, rest, port, EXAMPLE)?))
    }

    /// `[user:pass@]host[:port][/path]`, the part after `scheme://`.
    fn parse_authority(text: &str, rest: &str, default_port: u16, example: &str) -> Result<Url, String> {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => (Some(credentials.to_string()), host_port),
            None => (None, authority),
        };
        // An IPv6 literal is bracketed: [::1]:8080.
        let split_at = match host_port.strip_prefix('[') {
            Some(v6) => v6.find(']').map(|end| end + 2).filter(|&i| host_port[i..].starts_with(':')),
            None => host_port.rfind(':'),
        };
        let (host, port) = match split_at {
            Some(i) => {
                let port = &host_port[i + 1..];
                (&host_port[..i], port.parse::<u16>().map_err(|_| format!("'{port}' in '{text}' is not a port number"))?)
            }
            None => (host_port, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        if host.is_empty() {
            return Err(format!("'{text}' has no host; write e.g. {example}"));
        }
        Ok(Url { host, port, path, credentials })
    }

    pub fn without_credentials(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("http://{host}:{}{}", self.port, self.path)
    }
}

/// A response whose body is being streamed.
pub struct Response {
    pub status: u16,
    pub reason: String,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn BufRead + Send>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// GETs `url`; `timeout` bounds connecting and every read after it.
pub fn get(url: &Url, timeout: Duration) -> io::Result<Response> {
    let addresses = (url.host.as_str(), url.port).to_socket_addrs()?;
    let mut last_error = io::Error::new(io::ErrorKind::NotFound, "the host name resolves to no address");
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let stream = stream.ok_or(last_error)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    exchange(stream, url, 80)
}

/// Sends a GET for `url` over an open connection (plain TCP, TLS, ...) and reads the response
/// head; the body is left to stream. `default_port` is the scheme's, left out of `Host`.
pub(crate) fn exchange<S: Read + Write + Send + 'static>(mut stream: S, url: &Url, default_port: u16) -> io::Result<Response> {
    let host = if url.host.contains(':') { format!("[{}]", url.host) } else { url.host.clone() };
    let host = if url.port == default_port { host } else { format!("{host}:{}", url.port) };
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: cvedge\r\nAccept: */*\r\nConnection: close\r\n", url.path);
    if let Some(credentials) = &url.credentials {
        request += &format!("Authorization: Basic {}\r\n", base64(credentials.as_bytes()));
    }
    request += "\r\n";
    stream.write_all(request.as_bytes())?;
    stream.flush()?;

    let mut reader = BufReader::new(stream);
    let status_line = read_line(&mut reader)?;
    let mut fields = status_line.splitn(3, ' ');
    let (version, status) = (fields.next().unwrap_or(""), fields.next().and_then(|s| s.parse::<u16>().ok()));
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(invalid(format!("not an HTTP response (it starts with {:?})", truncated(&status_line))));
    };
    let reason = fields.next().unwrap_or("").to_string();
    let headers = read_headers(&mut reader)?;
    let mut response = Response { status, reason, headers, body: Box::new(reader) };
    if response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let body = std::mem::replace(&mut response.body, Box::new(io::empty()));
        response.body = Box::new(BufReader::new(Chunked::new(body)));
    }
    Ok(response)
}

/// Header lines up to the empty line, names lower-cased (requests and responses alike).
pub(crate) fn read_headers(reader: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = vec![];
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            return Ok(headers);
        }
        if headers.len() == MAX_HEADERS {
            return Err(invalid(format!("more than {MAX_HEADERS} headers")));
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid(format!("malformed header {:?}", truncated(&line))))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

/// Reads one CRLF- or LF-terminated line of at most `MAX_LINE` bytes, without the terminator.
pub fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = vec![];
    reader.take(MAX_LINE).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() as u64 == MAX_LINE {
            invalid(format!("a header line is longer than {MAX_LINE} bytes"))
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed in the middle of the headers")
        });
    }
    while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}


/// A `; key=value` parameter of a header value (`boundary` of a Content-Type, `name` of a
/// Content-Disposition), unquoted; the key in any case.
pub(crate) fn parameter(value: &str, key: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn truncated(text: &str) -> String {
    text.chars().take(60).collect()
}

/// The body of a `Transfer-Encoding: chunked` message (a camera's response, a client's request).
pub(crate) struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk.
    left: u64,
    done: bool,
}

impl<R> Chunked<R> {
    pub(crate) fn new(inner: R) -> Chunked<R> {
        Chunked { inner, left: 0, done: false }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let line = read_line(&mut self.inner)?;
            let size = line.split(';').next().unwrap_or("").trim();
            self.left = u64::from_str_radix(size, 16).map_err(|_| invalid(format!("bad chunk size {:?}", truncated(&line))))?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let wanted = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..wanted])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed in the middle of a chunk"));
        }
        self.left -= n as u64;
        if self.left == 0 {
            read_line(&mut self.inner)?; // the CRLF after the chunk
        }
        Ok(n)
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= group.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_ports_and_defaults() {
        let url = Url::parse("http://admin:se:cret@cam.local:8080/video?x=1").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("cam.local", 8080, "/video?x=1"));
        assert_eq!(url.credentials.as_deref(), Some("admin:se:cret"));
        assert_eq!(url.without_credentials(), "http://cam.local:8080/video?x=1");
        let url = Url::parse("http://10.0.0.5").unwrap();
        assert_eq!((url.port, url.path.as_str(), url.credentials), (80, "/", None));
        assert!(Url::parse("http://cam:port/x").unwrap_err().contains("not a port"));
        assert!(Url::parse("https://cam/x").unwrap_err().contains("ffmpeg:https"));
        assert!(Url::parse("cam/x").is_err());
        let url = Url::parse("http://[::1]:81/s").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.without_credentials().as_str()), ("::1", 81, "http://[::1]:81/s"));
        let (tls, url) = Url::parse_web("HTTPS://example.com?q=1").unwrap();
        assert_eq!((tls, url.host.as_str(), url.port, url.path.as_str()), (true, "example.com", 443, "/?q=1"));
        assert_eq!(Url::parse_web("http://example.com:8080/a.jpg").unwrap().1.port, 8080);
        assert!(Url::parse_web("file:///etc/passwd").unwrap_err().contains("not an http:// or https:// URL"));
        assert!(Url::parse_web("https:///x").unwrap_err().contains("has no host"));
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn chunked_bodies_are_reassembled() {
        let wire = b"4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\n";
        let mut body = String::new();
        Chunked { inner: &wire[..], left: 0, done: false }.read_to_string(&mut body).unwrap();
        assert_eq!(body, "Wikipedia in \r\n\r\nchunks.");
        let mut cut = Chunked { inner: &b"10\r\nshort"[..], left: 0, done: false };
        assert!(cut.read_to_string(&mut String::new()).is_err());
    }
}
