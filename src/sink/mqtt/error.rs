//! The MQTT sink's errors. Like the rest of the library, every message says what is wrong and
//! what to do, in one sentence, because the daemon prints them as they are.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("invalid broker address {url:?}: {problem}; write it as mqtt://host[:port] (plain TCP, default port 1883) or mqtts://host[:port] (TLS, default port 8883)")]
    BrokerAddress { url: String, problem: String },

    #[error("cannot use the {what} {}: {problem}; check that the file exists, is readable by this user and is PEM-encoded", path.display())]
    TlsFile { what: &'static str, path: PathBuf, problem: String },

    #[error("cannot set up TLS: {problem}; {fix}")]
    Tls { problem: String, fix: String },

    // The io error is part of the message, not a `source`, so it is printed once.
    #[error("outbox directory {}: {cause}; give a directory on a writable file system with free space, owned by the user cvedge runs as", path.display())]
    Outbox { path: PathBuf, cause: std::io::Error },

    #[error("invalid MQTT setting {name} = {value:?}: {problem}")]
    Setting { name: &'static str, value: String, problem: String },

    #[error("the message for {topic} is {size} bytes, over the {limit}-byte MQTT packet limit; send less (e.g. fewer scores) per message")]
    TooLarge { topic: String, size: usize, limit: usize },

    #[error("the MQTT publisher was shut down; the message was not stored (start a new publisher)")]
    Stopped,

    /// Not a failure of the publisher: the broker was away at shutdown. `lost` of the `left` were
    /// only in memory (the disk was failing) and are gone; the rest are sent after the next start.
    #[error("{left} prediction(s) were not acknowledged by the broker before the shutdown timeout; {}", undelivered_fate(*left, *lost, dir))]
    Undelivered { left: usize, lost: usize, dir: PathBuf },

    #[error("cannot start the MQTT thread: {0}; the system is out of threads or memory")]
    Thread(std::io::Error),
}

fn undelivered_fate(left: usize, lost: usize, dir: &std::path::Path) -> String {
    match lost {
        0 => format!("they stay in {} and are sent after the next start", dir.display()),
        _ if lost >= left => format!("they were kept in memory because {} could not be written (full or failing disk) and are lost", dir.display()),
        _ => format!(
            "{} of them stay in {} and are sent after the next start; {lost} were kept in memory because the disk failed and are lost",
            left - lost,
            dir.display()
        ),
    }
}

impl MqttError {
    pub(crate) fn setting(name: &'static str, value: impl Into<String>, problem: impl Into<String>) -> MqttError {
        MqttError::Setting { name, value: value.into(), problem: problem.into() }
    }
}
