//! `POST /url`: fetching the image a client names, without becoming a way into the device's
//! network. The host is resolved first and only a public address is connected to (the address
//! checked is the one used, so a DNS answer cannot change between check and connect); loopback,
//! private, link-local (where cloud metadata services answer, 169.254.169.254) and other
//! non-public ranges are refused unless the server was started with `--allow-private-urls`.
//! Every redirect is checked the same way. Time, size and redirects are limited.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::http::DeadlineStream;
use crate::source::http::{exchange, Response, Url};

/// Limits of one fetch.
#[derive(Debug, Clone)]
pub struct FetchLimits {
    pub allow_private: bool,
    /// How the user allows private addresses (`--allow-private-urls` or `[http]
    /// allow_private_urls`), for the refusal.
    pub allow_private_option: String,
    pub max_bytes: usize,
    /// For the whole fetch, redirects included.
    pub timeout: Duration,
    pub max_redirects: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    BadUrl(String),
    #[error("the URL's host {host} is {}a {kind} address, and cvedge fetches images only from public addresses; use a public URL, or allow private addresses with {option}", resolved(.host, .address))]
    Forbidden { host: String, address: IpAddr, kind: &'static str, option: String },
    #[error("cannot fetch {url}: {problem}; check that the URL works from this device")]
    Failed { url: String, problem: String },
    #[error("{url} is larger than {limit} bytes; use an image of at most 4 MB")]
    TooLarge { url: String, limit: usize },
    #[error("{url} did not arrive within {seconds} s; use a faster server or post the image itself to /image")]
    TimedOut { url: String, seconds: u64 },
}

/// `ADDRESS, ` when the host is a name that resolved to it; nothing when the host is the address.
fn resolved(host: &str, address: &IpAddr) -> String {
    if host.parse::<IpAddr>().ok() == Some(*address) {
        String::new()
    } else {
        format!("{address}, ")
    }
}

/// Fetches images over http and https (the system's CA certificates, loaded once).
pub struct Fetcher {
    limits: FetchLimits,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl Fetcher {
    pub fn new(limits: FetchLimits) -> Fetcher {
        Fetcher { limits, tls: OnceLock::new() }
    }

    /// The body of `url` (after at most `max_redirects` redirects) when it answers 200.
    pub fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let deadline = Instant::now() + self.limits.timeout;
        let mut url = url.trim().to_string();
        for _ in 0..=self.limits.max_redirects {
            let (tls, parsed) = Url::parse_web(&url).map_err(FetchError::BadUrl)?;
            let shown = shown(tls, &parsed);
            let response = self.get(tls, &parsed, &shown, deadline)?;
            match response.status {
                200 => return self.body(response, &shown, deadline),
                301 | 302 | 303 | 307 | 308 => {
                    let location = response.header("location").ok_or_else(|| failed(&shown, format!("it answered {} without a Location", response.status)))?;
                    url = resolve(tls, &parsed, location);
                }
                status => return Err(failed(&shown, format!("it answered {status} {}", response.reason))),
            }
        }
        Err(failed(&url, format!("it redirected more than {} times", self.limits.max_redirects)))
    }

    fn get(&self, tls: bool, url: &Url, shown: &str, deadline: Instant) -> Result<Response, FetchError> {
        let address = self.address(url, shown, deadline)?;
        let left = deadline.saturating_duration_since(Instant::now());
        let stream = TcpStream::connect_timeout(&address, left.max(Duration::from_millis(1))).map_err(|e| self.io_error(shown, e))?;
        stream.set_write_timeout(Some(self.limits.timeout)).map_err(|e| self.io_error(shown, e))?;
        let stream = DeadlineStream::new(stream, deadline);
        let result = if tls {
            let config = self.tls_config().map_err(|problem| failed(shown, problem))?;
            let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| FetchError::BadUrl(format!("'{}' is not a host name ({e})", url.host)))?;
            let connection = rustls::ClientConnection::new(config, name).map_err(|e| failed(shown, e.to_string()))?;
            exchange(rustls::StreamOwned::new(connection, stream), url, 443)
        } else {
            exchange(stream, url, 80)
        };
        result.map_err(|e| self.io_error(shown, e))
    }

    /// The first address the host resolves to that may be fetched from.
    fn address(&self, url: &Url, shown: &str, deadline: Instant) -> Result<SocketAddr, FetchError> {
        let target = (url.host.clone(), url.port);
        let addresses = match url.host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, url.port)]),
            Err(_) => within(deadline, move || target.to_socket_addrs().map(Iterator::collect)).map_err(|e| failed(shown, e.to_string()))?.ok_or_else(|| self.timed_out(shown))?,
        };
        let addresses = addresses.map_err(|e| failed(shown, format!("the host name does not resolve ({e})")))?;
        let mut refused = None;
        for address in &addresses {
            match non_public(address.ip()) {
                Some(kind) if !self.limits.allow_private => refused = refused.or(Some((address.ip(), kind))),
                _ => return Ok(*address),
            }
        }
        match refused {
            Some((address, kind)) => Err(FetchError::Forbidden { host: url.host.clone(), address, kind, option: self.limits.allow_private_option.clone() }),
            None => Err(failed(shown, "the host name resolves to no address".into())),
        }
    }

    pub(crate) fn body(&self, mut response: Response, shown: &str, deadline: Instant) -> Result<Vec<u8>, FetchError> {
        let limit = self.limits.max_bytes;
        let length = response.header("content-length").and_then(|n| n.parse::<u64>().ok());
        if length.is_some_and(|n| n > limit as u64) {
            return Err(FetchError::TooLarge { url: shown.to_string(), limit });
        }
        // Exactly the announced length (a server may close without a TLS close_notify after it),
        // or up to the end of the connection.
        let mut body = vec![];
        (&mut response.body).take(length.unwrap_or(limit as u64 + 1)).read_to_end(&mut body).map_err(|e| self.io_error(shown, e))?;
        if length.is_some_and(|n| body.len() as u64 != n) {
            return Err(failed(shown, format!("the connection closed after {} of {} bytes", body.len(), length.unwrap_or(0))));
        }
        if body.len() > limit {
            return Err(FetchError::TooLarge { url: shown.to_string(), limit });
        }
        if Instant::now() > deadline {
            return Err(FetchError::TimedOut { url: shown.to_string(), seconds: self.limits.timeout.as_secs() });
        }
        Ok(body)
    }

    fn io_error(&self, shown: &str, e: std::io::Error) -> FetchError {
        match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => self.timed_out(shown),
            _ => failed(shown, e.to_string()),
        }
    }

    fn timed_out(&self, shown: &str) -> FetchError {
        FetchError::TimedOut { url: shown.to_string(), seconds: self.limits.timeout.as_secs() }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls
            .get_or_init(|| {
                let roots = crate::tls::system_roots()
                    .ok_or_else(|| "this device has no CA certificates for https (install the ca-certificates package)".to_string())?;
                Ok(Arc::new(crate::tls::client(roots).map_err(|e| e.to_string())?.with_no_client_auth()))
            })
            .clone()
    }
}

/// Runs `work` (a DNS lookup) on a thread of its own and waits for it until `deadline`; `None`
/// when it did not answer in time, an error when the thread cannot start. getaddrinfo has no timeout of its own: a resolver that does
/// not answer would hold the HTTP worker past the request's time limit for as long as the
/// system retries (30 s and more). The abandoned thread ends when the lookup does.
fn within<T: Send + 'static>(deadline: Instant, work: impl FnOnce() -> T + Send + 'static) -> crate::Result<Option<T>> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    crate::spawn("resolve".into(), move || drop(sender.send(work())))?;
    Ok(receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok())
}

fn failed(url: &str, problem: String) -> FetchError {
    FetchError::Failed { url: url.to_string(), problem }
}

/// The URL without credentials, for messages.
fn shown(tls: bool, url: &Url) -> String {
    let plain = url.without_credentials();
    if tls {
        plain.replacen("http://", "https://", 1)
    } else {
        plain
    }
}

/// A redirect's `Location`: absolute, or a path on the same server.
pub(crate) fn resolve(tls: bool, base: &Url, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let origin = shown(tls, &Url { path: String::new(), credentials: None, ..base.clone() });
    if location.starts_with('/') {
        format!("{origin}{location}")
    } else {
        let dir = base.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{origin}{dir}/{location}")
    }
}

/// What kind of non-public address `ip` is, if it is one.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if a == 0 {
                Some("unspecified")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
                Some("multicast or reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast or reserved")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_ranges() {
        for ip in ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "224.0.0.1", "255.255.255.255", "::1", "::", "fd00::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert!(non_public(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert_eq!(non_public(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn a_lookup_that_does_not_answer_is_given_up_at_the_deadline() {
        let silent_resolver = || {
            std::thread::sleep(Duration::from_secs(3));
            "answered"
        };
        assert_eq!(within(Instant::now() + Duration::from_millis(100), silent_resolver).unwrap(), None);
        assert_eq!(within(Instant::now() + Duration::from_secs(30), || "answered").unwrap(), Some("answered"));
    }

    #[test]
    fn redirect_locations() {
        let (_, base) = Url::parse_web("https://user:pw@example.com:8443/a/b.jpg?x").unwrap();
        assert_eq!(resolve(true, &base, "http://other/c.jpg"), "http://other/c.jpg");
        assert_eq!(resolve(true, &base, "/c.jpg"), "https://example.com:8443/c.jpg");
        assert_eq!(resolve(true, &base, "c.jpg"), "https://example.com:8443/a/c.jpg");
    }

    #[test]
    fn refused_before_connecting() {
        let fetcher = Fetcher::new(FetchLimits { allow_private: false, allow_private_option: "--allow-private-urls".into(), max_bytes: 10, timeout: Duration::from_secs(1), max_redirects: 1 });
        for url in ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:9/x.jpg", "https://[::1]/x.jpg", "http://localhost:9/"] {
            assert!(matches!(fetcher.fetch(url), Err(FetchError::Forbidden { .. })), "{url}");
        }
        assert!(matches!(fetcher.fetch("ftp://example.com/x.jpg"), Err(FetchError::BadUrl(_))));
    }
}
