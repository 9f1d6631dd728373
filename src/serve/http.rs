//! The server's side of HTTP/1.1: a request head and body read from a connection within time and
//! size limits, and a response written back. Enough for the prediction API's clients (curl,
//! Python `requests` and `urllib`, the Azure SDKs, browsers): `Content-Length` and chunked bodies,
//! `Expect: 100-continue`, keep-alive. Header lines are read by the client code the MJPEG source
//! uses (`source::http`), with its line and header-count limits.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::source::http::{read_headers, read_line, Chunked};

/// How long a whole request (head and body) may take once its first byte arrived: a client that
/// trickles a byte at a time cannot hold a connection thread longer than this.
pub const REQUEST_TIME: Duration = Duration::from_secs(30);
/// How often a connection waiting for its next request looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);
/// After an error answer whose request body was not read, this much of it is read and dropped so
/// the client, still sending, receives the answer instead of a reset connection.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: u64 = 64 * 1024 * 1024;

/// A stream whose reads fail with `TimedOut` once a deadline has passed; each read waits at most
/// until the deadline.
pub struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineStream {
    pub fn new(stream: TcpStream, deadline: Instant) -> DeadlineStream {
        DeadlineStream { stream, deadline }
    }

    pub fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the time allowed for it ran out"));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock)
}

/// A request line and headers (names lower-cased).
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path without its query string.
    pub path: String,
    /// What follows `?`, if anything.
    pub query: String,
    pub http11: bool,
    pub headers: Vec<(String, String)>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.http11 {
            !connection.contains("close")
        } else {
            connection.contains("keep-alive")
        }
    }

    /// A query parameter, undecoded but for `%XX` and `+`.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| percent_decode(v))
        })
    }

    /// Whether a body follows the head.
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some() || self.header("content-length").is_some_and(|n| n.trim() != "0")
    }
}

/// `%XX` escapes and `+` decoded (query values, path segments).
pub fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%' && i + 2 < bytes.len()).then(|| hex(bytes[i + 1]).zip(hex(bytes[i + 2]))).flatten();
        match (bytes[i], escaped) {
            (_, Some((high, low))) => {
                out.push(high << 4 | low);
                i += 2;
            }
            (b'+', _) => out.push(b' '),
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why no request (or body) could be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed, or sent nothing while idle, or the server is stopping: nothing to answer.
    Closed,
    /// Not HTTP as this server speaks it: answered with 400.
    Bad(String),
    /// The body is larger than allowed (its declared length, when it declared one): 413.
    TooLarge(Option<u64>),
    /// The request took longer than [`REQUEST_TIME`]: 408.
    TimedOut,
}

impl ReadError {
    fn from_io(e: io::Error) -> ReadError {
        match e.kind() {
            _ if timed_out(&e) => ReadError::TimedOut,
            io::ErrorKind::InvalidData => ReadError::Bad(e.to_string()),
            _ => ReadError::Closed,
        }
    }
}

/// A response: status, content type, extra headers, body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &impl serde::Serialize) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
        Response { status, content_type: "application/json", headers: vec![], body }
    }

    pub fn text(status: u16, content_type: &'static str, text: impl Into<String>) -> Response {
        Response { status, content_type, headers: vec![], body: text.into().into_bytes() }
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// `Date` as HTTP writes it (IMF-fixdate).
fn http_date(at: SystemTime) -> String {
    let format = time::macros::format_description!("[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT");
    time::OffsetDateTime::from(at).format(&format).unwrap_or_default()
}

/// One client connection: a buffered reader with deadlines and a write half.
pub struct Conn {
    reader: BufReader<DeadlineStream>,
    writer: TcpStream,
    /// How long a request may take once it started ([`REQUEST_TIME`] unless set).
    pub request_time: Duration,
}

impl Conn {
    pub fn new(stream: TcpStream, write_timeout: Duration) -> io::Result<Conn> {
        stream.set_write_timeout(Some(write_timeout))?;
        let writer = stream.try_clone()?;
        let reader = BufReader::new(DeadlineStream::new(stream, Instant::now() + REQUEST_TIME));
        Ok(Conn { reader, writer, request_time: REQUEST_TIME })
    }

    /// Waits up to `idle` for the next request to start (giving up early when `stop` is set), then
    /// reads its head; head and body must arrive within `request_time`.
    pub fn next_request(&mut self, idle: Duration, stop: &AtomicBool) -> Result<Request, ReadError> {
        let idle_until = Instant::now() + idle;
        loop {
            let now = Instant::now();
            if now >= idle_until || stop.load(Ordering::Relaxed) {
                return Err(ReadError::Closed);
            }
            self.reader.get_mut().set_deadline(now + STOP_POLL.min(idle_until - now));
            match self.reader.fill_buf() {
                Ok([]) => return Err(ReadError::Closed),
                Ok(_) => break,
                Err(e) if timed_out(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(ReadError::Closed),
            }
        }
        self.reader.get_mut().set_deadline(Instant::now() + self.request_time);
        read_request(&mut self.reader)
    }

    /// Reads the request's body, refusing one larger than `limit` bytes: a declared length over the
    /// limit is refused before any of the body is read (and before `100 Continue` is sent).
    pub fn read_body(&mut self, request: &Request, limit: usize) -> Result<Vec<u8>, ReadError> {
        read_body(&mut self.reader, &mut self.writer, request, limit)
    }

    /// Writes `response`; `head_only` for HEAD requests.
    pub fn respond(&mut self, response: &Response, keep_alive: bool, head_only: bool) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nServer: cvedge\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            response.status,
            reason(response.status),
            http_date(SystemTime::now()),
            response.content_type,
            response.body.len(),
            if keep_alive { "keep-alive" } else { "close" }
        );
        for (name, value) in &response.headers {
            head += &format!("{name}: {value}\r\n");
        }
        head += "\r\n";
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(&response.body);
        }
        self.writer.write_all(&out)?;
        self.writer.flush()
    }

    /// Writes the head of a response whose body follows as it is produced (server-sent events).
    pub fn start_stream(&mut self, content_type: &str) -> io::Result<()> {
        let head = format!(
            "HTTP/1.1 200 OK\r\nServer: cvedge\r\nDate: {}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
            http_date(SystemTime::now())
        );
        self.writer.write_all(head.as_bytes())
    }

    /// Whether the client closed the connection, looked at without waiting: for a response that is
    /// streamed to a client that sends nothing more (anything it does send is dropped).
    pub fn peer_closed(&mut self) -> bool {
        self.reader.get_mut().set_deadline(Instant::now() + Duration::from_millis(1));
        match self.reader.fill_buf() {
            Ok([]) => true,
            Ok(data) => {
                let n = data.len();
                self.reader.consume(n);
                false
            }
            Err(e) => !(timed_out(&e) || e.kind() == io::ErrorKind::Interrupted),
        }
    }

    pub fn writer(&mut self) -> &mut TcpStream {
        &mut self.writer
    }

    /// Closes after an answer sent before the request's body was read: says the server is done
    /// writing, then reads and drops what the client still sends (up to a few seconds and
    /// megabytes), so the client gets to read the answer instead of a reset connection.
    pub fn close_lingering(mut self) {
        let _ = self.writer.shutdown(Shutdown::Write);
        self.reader.get_mut().set_deadline(Instant::now() + LINGER_TIME);
        let _ = io::copy(&mut (&mut self.reader).take(LINGER_BYTES), &mut io::sink());
    }
}

/// Reads a request line and headers from `reader` (a connection's, or any bytes: the parser is
/// generic so it can be fuzzed without sockets).
pub fn read_request(reader: &mut impl BufRead) -> Result<Request, ReadError> {
    let line = read_line(reader).map_err(ReadError::from_io)?;
    let mut fields = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (fields.next(), fields.next(), fields.next(), fields.next()) else {
        return Err(ReadError::Bad(format!("{:?} is not an HTTP request line", line.chars().take(60).collect::<String>())));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        other => return Err(ReadError::Bad(format!("{:?} is not HTTP/1.0 or HTTP/1.1", other.chars().take(20).collect::<String>()))),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Bad(format!("{:?} is not an HTTP method", method.chars().take(20).collect::<String>())));
    }
    let headers = read_headers(reader).map_err(ReadError::from_io)?;
    let target = target.split('#').next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request { method: method.to_string(), path: path.to_string(), query: query.to_string(), http11, headers })
}

/// Reads `request`'s body from `reader`, refusing one larger than `limit` bytes: a declared length
/// over the limit is refused before any of the body is read (and before `100 Continue` is written
/// to `continue_to`).
pub fn read_body(reader: &mut impl BufRead, continue_to: &mut impl Write, request: &Request, limit: usize) -> Result<Vec<u8>, ReadError> {
    let chunked = match request.header("transfer-encoding") {
        None => false,
        Some(te) if te.eq_ignore_ascii_case("chunked") => true,
        Some(te) => return Err(ReadError::Bad(format!("Transfer-Encoding {te:?} is not supported (send Content-Length or chunked)"))),
    };
    let length = match request.header("content-length") {
        Some(_) if chunked => return Err(ReadError::Bad("both Content-Length and Transfer-Encoding are set".into())),
        Some(n) => Some(n.trim().parse::<u64>().map_err(|_| ReadError::Bad(format!("Content-Length {n:?} is not a number")))?),
        None => None,
    };
    if let Some(n) = length.filter(|n| *n > limit as u64) {
        return Err(ReadError::TooLarge(Some(n)));
    }
    if request.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) && request.http11 {
        continue_to.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(|_| ReadError::Closed)?;
    }
    let mut body = vec![];
    if chunked {
        Chunked::new(&mut *reader).take(limit as u64 + 1).read_to_end(&mut body).map_err(ReadError::from_io)?;
        if body.len() > limit {
            return Err(ReadError::TooLarge(None));
        }
        read_headers(reader).map_err(ReadError::from_io)?; // trailers, up to the empty line
    } else if let Some(n) = length {
        body.resize(n as usize, 0);
        reader.read_exact(&mut body).map_err(ReadError::from_io)?;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A connection whose client side has sent `wire` (and then closes its writing half).
    fn conn_with(wire: &'static [u8]) -> (Conn, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(wire).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let mut answer = vec![];
            let _ = s.read_to_end(&mut answer);
            answer
        });
        let (stream, _) = listener.accept().unwrap();
        (Conn::new(stream, Duration::from_secs(5)).unwrap(), client)
    }

    #[test]
    fn chunked_and_keep_alive_requests() {
        let stop = AtomicBool::new(false);
        let (mut conn, client) = conn_with(b"POST /image?x=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET / HTTP/1.0\r\n\r\n");
        let first = conn.next_request(Duration::from_secs(5), &stop).unwrap();
        assert_eq!((first.method.as_str(), first.path.as_str(), first.keep_alive()), ("POST", "/image", true));
        assert_eq!((first.query.as_str(), first.query_param("x").as_deref(), first.query_param("y")), ("x=1", Some("1"), None));
        assert_eq!(percent_decode("a%2Fb+c%zz%4"), "a/b c%zz%4");
        assert_eq!(conn.read_body(&first, 100).unwrap(), b"abcde");
        let second = conn.next_request(Duration::from_secs(5), &stop).unwrap();
        assert_eq!((second.path.as_str(), second.keep_alive(), second.has_body()), ("/", false, false));
        assert!(matches!(conn.next_request(Duration::from_secs(5), &stop), Err(ReadError::Closed)));
        conn.respond(&Response::text(200, "text/plain", "hi"), false, false).unwrap();
        drop(conn);
        let answer = String::from_utf8(client.join().unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nhi"), "{answer}");
    }

    #[test]
    fn oversized_and_malformed_requests() {
        let stop = AtomicBool::new(false);
        let (mut conn, _client) = conn_with(b"POST /image HTTP/1.1\r\nContent-Length: 999999999\r\n\r\nabc");
        let request = conn.next_request(Duration::from_secs(5), &stop).unwrap();
        assert!(matches!(conn.read_body(&request, 10), Err(ReadError::TooLarge(Some(999999999)))));
        let (mut conn, _client) = conn_with(b"POST /image HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n0123456789abcdef0123456789abcdef\r\n0\r\n\r\n");
        let request = conn.next_request(Duration::from_secs(5), &stop).unwrap();
        assert!(matches!(conn.read_body(&request, 10), Err(ReadError::TooLarge(None))));
        for wire in [&b"HELLO\r\n\r\n"[..], b"GET / HTTP/2\r\n\r\n", b"get / HTTP/1.1\r\n\r\n"] {
            let (mut conn, _client) = conn_with(Box::leak(wire.to_vec().into_boxed_slice()));
            assert!(matches!(conn.next_request(Duration::from_secs(5), &stop), Err(ReadError::Bad(_))), "{wire:?}");
        }
    }
}
