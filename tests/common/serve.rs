//! `cvedge serve` as a user starts it (a child process on a loopback port it picks), and a plain
//! HTTP/1.1 client over a real TCP connection for the exact requests the tests send.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{repo, KillOnDrop};

pub struct Served {
    pub addr: SocketAddr,
    pub child: KillOnDrop,
}

impl Served {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `cvedge serve --model models/demo` with `args` (on 127.0.0.1:0 unless `--addr` is
/// among them) and waits until it says where it listens; its log goes to the test's stderr.
pub fn serve(args: &[&str]) -> Served {
    serve_with_env(args, &[])
}

/// As [`serve`], with environment variables set for the server only.
pub fn serve_with_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cvedge"));
    command.args(["serve", "--model", "models/demo"]).args(args).current_dir(repo()).stderr(Stdio::piped());
    command.envs(env.iter().map(|(k, v)| (k, v)));
    if !args.contains(&"--addr") {
        command.args(["--addr", "127.0.0.1:0"]);
    }
    let mut child = KillOnDrop(command.spawn().expect("start cvedge serve"));
    let addr = listening(&mut child, " on http://");
    // A 0.0.0.0 bind is reached through loopback.
    let addr = if addr.ip().is_unspecified() { SocketAddr::from(([127, 0, 0, 1], addr.port())) } else { addr };
    Served { addr, child }
}

/// Reads `child`'s stderr (piped) until a line has `marker` followed by an address (`marker`
/// ending in `http://`), and returns that address; the rest of its stderr goes to the test's.
pub fn listening(child: &mut Child, marker: &str) -> SocketAddr {
    let mut stderr = BufReader::new(child.stderr.take().expect("cvedge's stderr piped"));
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "cvedge stopped before saying {marker:?}: {seen}");
        seen += &line;
        if let Some(rest) = line.split(marker).nth(1) {
            let addr = rest.split('/').next().unwrap();
            break addr.parse().unwrap_or_else(|e| panic!("{addr:?} after {marker:?}: {e}"));
        }
    };
    let pid = child.id();
    std::thread::spawn(move || stderr.lines().map_while(Result::ok).for_each(|l| eprintln!("[cvedge {pid}] {l}")));
    addr
}

/// A parsed response.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `head` (ending in an empty line) and `body` on a new connection and reads the answer
/// until the server closes. Writing stops quietly if the server answered and closed early.
pub fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(body));
    let mut raw = vec![];
    stream.read_to_end(&mut raw).unwrap_or_else(|e| panic!("reading the answer to {head:?}: {e}"));
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Answer {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.trim().to_string(), v.trim().to_string())).collect();
    Answer { status, headers, body: raw[end + 4..].to_vec() }
}

pub fn get(addr: SocketAddr, path: &str) -> Answer {
    send(addr, &format!("GET {path} HTTP/1.1\r\nHost: cvedge\r\nConnection: close\r\n\r\n"), b"")
}

pub fn post(addr: SocketAddr, path: &str, content_type: &str, body: &[u8]) -> Answer {
    post_with(addr, path, &format!("Content-Type: {content_type}\r\n"), body)
}

/// A POST with extra header lines (each ending in CRLF).
pub fn post_with(addr: SocketAddr, path: &str, headers: &str, body: &[u8]) -> Answer {
    let head = format!("POST {path} HTTP/1.1\r\nHost: cvedge\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    send(addr, &head, body)
}

pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(repo().join("models/samples").join(name)).unwrap()
}

/// Peak resident memory of a process, in kB (Linux).
pub fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
