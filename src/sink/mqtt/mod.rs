//! MQTT sink: publishes predictions, per-camera state and availability to a broker, durably.
//!
//! # Topics
//! Under `{prefix}/{device}` (`prefix` defaults to `cvedge`):
//!
//! | topic | retained | what |
//! |---|---|---|
//! | `status` | yes | `online` on every connect, `stopped` on clean shutdown, `offline` (last will) when the connection dies |
//! | `{camera}/predictions` | no | one message per prediction, from the outbox |
//! | `{camera}/state` | yes | the camera's current state (JSON shape in [`discovery`]) |
//! | `{camera}/status` | yes | `online` / `offline` |
//! | `{camera}/capture/result` | yes | the latest capture command's report ([`Publisher::capture_result`]) |
//! | `command`, `{camera}/capture` | | subscribed: received through [`Publisher::commands`] |
//!
//! With a discovery prefix, Home Assistant's device discovery is retained at
//! `{discovery_prefix}/device/{device}/config` ([`discovery_payload`]).
//!
//! # Delivery: at least once
//! Predictions are delivered **at least once**: each is written to the on-disk outbox before
//! [`Publisher::prediction`] returns and deleted only when the broker acknowledged it (QoS 1 and
//! 2; at QoS 0, once written to the socket). After every reconnect, and after a restart, every
//! unacknowledged prediction is sent again, oldest first, so subscribers may see duplicates
//! (dedupe on the payload's own id or time if that matters) and, after a reconnect, a prediction
//! again after later ones. The outbox is bounded; when it is full the oldest waiting prediction
//! is dropped and counted. What a power cut (as opposed to a crash) can lose is in [`outbox`]'s
//! notes.
//!
//! Retained state, camera status, capture reports and discovery are not queued: the latest value is kept in
//! memory and sent again after every reconnect.
//!
//! # How
//! rumqttc does the protocol; [`session`] keeps the bookkeeping (outbox, packet ids in flight,
//! retained values) in plain structs; [`publisher`] runs the thread that polls rumqttc, reconnects
//! with capped exponential backoff and jitter, and resubscribes. rumqttc's own reconnect keeps
//! nothing we can rely on (clean sessions drop queued and in-flight messages), so the outbox, not
//! the MQTT session, is the source of truth.

pub mod discovery;
mod error;
mod hint;
mod outbox;
mod publisher;
mod session;
mod settings;

pub use discovery::discovery_payload;
pub use error::MqttError;
pub use publisher::Publisher;
pub use session::PublisherStats;
pub use settings::{BrokerAddress, MqttSettings, QoS, MAX_PACKET_SIZE};
