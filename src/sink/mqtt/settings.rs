//! What the publisher is told: the broker, identity, TLS files, topics, QoS, outbox and backoff;
//! and how that becomes rumqttc options.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::MqttError;

/// Largest packet sent or accepted. rumqttc's default (10 KiB) is smaller than a Home Assistant
/// discovery message for a camera with a few dozen tags.
pub const MAX_PACKET_SIZE: usize = 256 * 1024;

/// Where the broker is: `mqtt://host[:port]` (plain TCP, port 1883 by default) or
/// `mqtts://host[:port]` (TLS, port 8883 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl FromStr for BrokerAddress {
    type Err = MqttError;

    fn from_str(url: &str) -> Result<BrokerAddress, MqttError> {
        let error = |problem: &str| MqttError::BrokerAddress { url: url.to_string(), problem: problem.to_string() };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| error("there is no scheme"))?;
        let tls = match scheme {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            _ => return Err(error(&format!("the scheme {scheme:?} is not mqtt or mqtts"))),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(error("only host and port are allowed (no path, query or user; set username and password separately)"));
        }
        // `[::1]:1883` for IPv6 literals, `host:1883` otherwise.
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| error("the IPv6 address has no closing ]"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(error("the host is empty"));
        }
        let port = match port {
            None => {
                if tls {
                    8883
                } else {
                    1883
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(error(&format!("the port {p:?} is not a number from 1 to 65535"))),
            },
        };
        Ok(BrokerAddress { host: host.to_string(), port, tls })
    }
}

impl fmt::Display for BrokerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// MQTT quality of service; our own type so rumqttc's stay inside this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QoS {
    AtMostOnce,
    AtLeastOnce,
    ExactlyOnce,
}

impl FromStr for QoS {
    type Err = MqttError;

    fn from_str(s: &str) -> Result<QoS, MqttError> {
        match s {
            "0" => Ok(QoS::AtMostOnce),
            "1" => Ok(QoS::AtLeastOnce),
            "2" => Ok(QoS::ExactlyOnce),
            _ => Err(MqttError::setting("qos", s, "use 0, 1 or 2")),
        }
    }
}

impl From<QoS> for rumqttc::QoS {
    fn from(q: QoS) -> rumqttc::QoS {
        match q {
            QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
            QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        }
    }
}

#[derive(Clone)]
pub struct MqttSettings {
    pub broker: BrokerAddress,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM CA certificate(s) for `mqtts`. Without it the system store (`/etc/ssl/certs`, package
    /// `ca-certificates`) is trusted, which suits public brokers; a private broker's CA must be given.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain and key, for brokers that authenticate clients by certificate.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub keep_alive: Duration,
    pub prefix: String,
    pub device: String,
    pub qos_predictions: QoS,
    pub qos_state: QoS,
    /// For availability, camera status and discovery.
    pub qos_status: QoS,
    pub outbox_dir: PathBuf,
    /// Predictions kept at most, on disk and (when the disk fails) in memory; the oldest are
    /// dropped beyond it.
    pub outbox_capacity: usize,
    /// Retry delays: the first between reconnect_min/2 and reconnect_min, doubling (with jitter)
    /// up to reconnect_max; back to the start after a successful connection.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// `Some("homeassistant")` enables Home Assistant discovery.
    pub discovery_prefix: Option<String>,
}

impl MqttSettings {
    /// Defaults for everything but the broker, the device name and the outbox directory.
    pub fn new(broker: BrokerAddress, device: impl Into<String>, outbox_dir: impl Into<PathBuf>) -> MqttSettings {
        let device = device.into();
        MqttSettings {
            broker,
            client_id: format!("cvedge-{device}"),
            username: None,
            password: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            keep_alive: Duration::from_secs(30),
            prefix: "cvedge".into(),
            device,
            qos_predictions: QoS::AtLeastOnce,
            qos_state: QoS::AtLeastOnce,
            qos_status: QoS::AtLeastOnce,
            outbox_dir: outbox_dir.into(),
            outbox_capacity: 10_000,
            reconnect_min: Duration::from_secs(1),
            // A home broker restarting (a Home Assistant add-on update) is back within tens of
            // seconds; at a 60 s cap the device lagged it by up to a minute. One connection
            // attempt per device every few seconds is nothing to a LAN broker, and the jitter
            // keeps a fleet out of lockstep.
            reconnect_max: Duration::from_secs(4),
            discovery_prefix: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), MqttError> {
        topic_level("prefix", &self.prefix, true)?;
        topic_level("device", &self.device, false)?;
        if let Some(d) = &self.discovery_prefix {
            topic_level("discovery_prefix", d, true)?;
        }
        if self.client_id.is_empty() || self.client_id.len() > 65535 {
            return Err(MqttError::setting("client_id", &self.client_id, "give a non-empty id, unique per device on the broker"));
        }
        if self.outbox_capacity == 0 {
            return Err(MqttError::setting("outbox_capacity", "0", "keep at least 1 prediction"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            let value = format!("{:?}..{:?}", self.reconnect_min, self.reconnect_max);
            return Err(MqttError::setting("reconnect_min/reconnect_max", value, "give 0 < reconnect_min <= reconnect_max"));
        }
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            return Err(MqttError::setting("keep_alive", format!("{:?}", self.keep_alive), "use whole seconds (at least 1 s)"));
        }
        if self.username.is_none() && self.password.is_some() {
            return Err(MqttError::setting("password", "…", "MQTT sends a password only with a username; set username too"));
        }
        Ok(())
    }

    /// rumqttc options, TLS included. Clean sessions: the outbox, not the broker's session, is what
    /// makes delivery durable, and a clean start means nothing from an old session can arrive
    /// with packet ids we no longer know.
    pub(crate) fn mqtt_options(
        &self,
        will_topic: &str,
        inflight: u16,
        channel: usize,
    ) -> Result<rumqttc::MqttOptions, MqttError> {
        let mut options = rumqttc::MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        options
            .set_keep_alive(self.keep_alive)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
            .set_inflight(inflight)
            .set_request_channel_capacity(channel)
            .set_last_will(rumqttc::LastWill::new(will_topic, "offline", self.qos_status.into(), true));
        if let Some(user) = &self.username {
            options.set_credentials(user, self.password.clone().unwrap_or_default());
        }
        if self.broker.tls {
            options.set_transport(rumqttc::Transport::tls_with_config(self.tls_config()?.into()));
        } else if self.ca_file.is_some() || self.client_cert.is_some() {
            return Err(MqttError::setting(
                "broker",
                self.broker.to_string(),
                "TLS files are set but the address is mqtt://; use mqtts:// to connect with TLS",
            ));
        }
        Ok(options)
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, MqttError> {
        let roots = match &self.ca_file {
            Some(path) => {
                let certs = read_certs("CA file", path)?;
                let mut roots = rustls::RootCertStore::empty();
                let (_, rejected) = roots.add_parsable_certificates(certs);
                if roots.is_empty() {
                    let problem = format!("none of its {rejected} certificate(s) is a usable CA certificate");
                    return Err(MqttError::TlsFile { what: "CA file", path: path.clone(), problem });
                }
                roots
            }
            None => crate::tls::system_roots().ok_or_else(|| MqttError::Tls {
                problem: "ca_file is not set and the system has no CA certificates".into(),
                fix: "set ca_file to the broker's CA certificate (PEM), or install the ca-certificates package for a public broker".into(),
            })?,
        };
        let builder = crate::tls::client(roots).map_err(|e| MqttError::Tls { problem: e.to_string(), fix: "this is a bug, please report it".into() })?;
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => {
                let chain = read_certs("client certificate", cert)?;
                let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| MqttError::TlsFile {
                    what: "client key",
                    path: key.clone(),
                    problem: e.to_string(),
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| MqttError::Tls {
                    problem: format!("the client certificate and key do not work together ({e})"),
                    fix: "give the key that belongs to the certificate, both PEM".into(),
                })
            }
            _ => {
                Err(MqttError::setting("client_cert/client_key", "", "give both the client certificate and its key, or neither"))
            }
        }
    }
}

fn read_certs(what: &'static str, path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, MqttError> {
    let error = |problem: String| MqttError::TlsFile { what, path: path.clone(), problem };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("it holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

/// One topic level (or, for prefixes, several): no wildcards, nothing empty.
pub(crate) fn topic_level(name: &'static str, value: &str, may_have_slashes: bool) -> Result<(), MqttError> {
    let problem = if value.is_empty() {
        "it is empty"
    } else if value.contains(['+', '#', '\0']) {
        "MQTT topics cannot contain +, # or NUL"
    } else if !may_have_slashes && value.contains('/') {
        "it is one topic level, so it cannot contain /"
    } else if value.split('/').any(str::is_empty) {
        "it has an empty topic level (leading, trailing or double /)"
    } else {
        return Ok(());
    };
    Err(MqttError::setting(name, value, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses_parse_with_default_ports() {
        let a: BrokerAddress = "mqtt://broker.local".parse().unwrap();
        assert_eq!(a, BrokerAddress { host: "broker.local".into(), port: 1883, tls: false });
        let a: BrokerAddress = "mqtts://broker.local".parse().unwrap();
        assert_eq!((a.port, a.tls), (8883, true));
        let a: BrokerAddress = "mqtt://10.0.0.2:1884/".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.2", 1884));
        let a: BrokerAddress = "mqtts://[::1]:9000".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("::1", 9000));
        assert_eq!(a.to_string(), "mqtts://[::1]:9000");
    }

    #[test]
    fn bad_broker_addresses_say_what_is_wrong() {
        for (url, words) in [
            ("broker.local:1883", "no scheme"),
            ("http://broker", "not mqtt or mqtts"),
            ("mqtt://:1883", "host is empty"),
            ("mqtt://broker:99999", "not a number from 1 to 65535"),
            ("mqtt://broker:0", "not a number from 1 to 65535"),
            ("mqtt://user:pw@broker", "no path, query or user"),
        ] {
            let message = url.parse::<BrokerAddress>().unwrap_err().to_string();
            assert!(message.contains(words) && message.contains("mqtt://host[:port]"), "{url}: {message}");
        }
    }

    #[test]
    fn topic_levels_refuse_wildcards_and_empty_levels() {
        assert!(topic_level("device", "pi-kitchen", false).is_ok());
        assert!(topic_level("prefix", "home/cvedge", true).is_ok());
        assert!(topic_level("device", "a/b", false).is_err());
        assert!(topic_level("device", "a+", false).is_err());
        assert!(topic_level("prefix", "home//x", true).is_err());
        assert!(topic_level("prefix", "", true).is_err());
    }

    #[test]
    fn mqtts_with_an_unreadable_ca_file_names_the_file() {
        let mut s = MqttSettings::new("mqtts://b".parse().unwrap(), "pi", "/tmp/x");
        s.ca_file = Some("/nonexistent/ca.pem".into());
        let message = s.mqtt_options("t", 10, 10).unwrap_err().to_string();
        assert!(message.contains("/nonexistent/ca.pem") && message.contains("CA file"), "{message}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let mut s = MqttSettings::new("mqtts://b".parse().unwrap(), "pi", "/tmp/x");
        s.ca_file = Some(path);
        let message = s.mqtt_options("t", 10, 10).unwrap_err().to_string();
        assert!(message.contains("no PEM certificate"), "{message}");
    }
}

/// Written by hand so that `{:?}` of the settings never shows the password.
impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("prefix", &self.prefix)
            .field("device", &self.device)
            .field("outbox_dir", &self.outbox_dir)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod debug_tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password() {
        let mut s = MqttSettings::new("mqtt://h:1883".parse().unwrap(), "d", "/tmp/o");
        s.password = Some("hunter2".into());
        let text = format!("{s:?}");
        assert!(!text.contains("hunter2") && text.contains("<redacted>"), "{text}");
    }
}
