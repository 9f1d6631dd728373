//! What the publisher knows, without any IO but the outbox's files: which messages are due, which
//! are in flight under which packet id, what retained state to re-send after a reconnect.
//!
//! The IO thread feeds it rumqttc's events and hands rumqttc what [`Session::next_message`]
//! returns. How events map to outbox entries rests on rumqttc's ordering (checked in its 0.25
//! source): requests leave its channel in FIFO order and each publish yields exactly one
//! `Outgoing::Publish(pkid)` event, in that order, before any ack for it (a packet-id collision
//! delays the event but keeps the order, since no new request is taken meanwhile). So a FIFO of
//! what we handed over, popped on each such event, says which message got which packet id. The
//! IO thread keeps that true across reconnects by resetting rumqttc's state on every error
//! (rumqttc would otherwise replay stale events and queued requests into the new connection).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::outbox::{Outbox, Recovered};
use super::settings::{MqttSettings, QoS};
use super::MqttError;

/// The topics of one device.
#[derive(Debug, Clone)]
pub(crate) struct Topics {
    base: String,
    discovery: Option<String>,
}

impl Topics {
    pub fn new(settings: &MqttSettings) -> Topics {
        Topics { base: format!("{}/{}", settings.prefix, settings.device), discovery: settings.discovery_prefix.clone() }
    }
    pub fn availability(&self) -> String {
        format!("{}/status", self.base)
    }
    pub fn predictions(&self, camera: &str) -> String {
        format!("{}/{camera}/predictions", self.base)
    }
    pub fn state(&self, camera: &str) -> String {
        format!("{}/{camera}/state", self.base)
    }
    pub fn camera_status(&self, camera: &str) -> String {
        format!("{}/{camera}/status", self.base)
    }
    pub fn command(&self) -> String {
        format!("{}/command", self.base)
    }
    pub fn capture_result(&self, camera: &str) -> String {
        format!("{}/{camera}/capture/result", self.base)
    }
    pub fn capture_filter(&self) -> String {
        format!("{}/+/capture", self.base)
    }
    pub fn discovery_config(&self, device: &str) -> Option<String> {
        self.discovery.as_ref().map(|d| format!("{d}/device/{device}/config"))
    }
    pub fn discovery_status(&self) -> Option<String> {
        self.discovery.as_ref().map(|d| format!("{d}/status"))
    }
    /// Whether an incoming message is a command for us.
    pub fn is_command(&self, topic: &str) -> bool {
        if topic == self.command() {
            return true;
        }
        let Some(rest) = topic.strip_prefix(&self.base).and_then(|r| r.strip_prefix('/')) else { return false };
        matches!(rest.strip_suffix("/capture"), Some(camera) if !camera.is_empty() && !camera.contains('/'))
    }
}

/// What a message handed to rumqttc was, to know what its ack completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tag {
    Prediction(u64),
    Availability,
    /// Availability `stopped`: shutdown waits for this one's acknowledgement, not an earlier `online`'s.
    Stopped,
    Discovery,
    CameraStatus(String),
    State(String),
    CaptureResult(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub tag: Tag,
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// A retained value and whether the broker still needs it on this connection.
#[derive(Debug)]
struct Retained {
    payload: Vec<u8>,
    due: bool,
}

impl Retained {
    fn new(payload: Vec<u8>) -> Retained {
        Retained { payload, due: true }
    }
    fn set(&mut self, payload: Vec<u8>) {
        self.payload = payload;
        self.due = true;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Published, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// QoS 2: PUBREC received, waiting for PUBCOMP.
    Received,
}

/// Counters and state for [`super::Publisher::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherStats {
    pub connected: bool,
    /// Predictions not yet acknowledged (QoS 1/2) or sent (QoS 0).
    pub outbox_depth: usize,
    /// Of those, how many are only in memory because the outbox disk failed.
    pub memory_only: usize,
    /// Predictions dropped because the outbox was full (oldest first) or their file went bad.
    pub dropped: u64,
    /// Predictions acknowledged by the broker (or sent, at QoS 0).
    pub delivered: u64,
    /// Successful connections after the first.
    pub reconnects: u64,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub topics: Topics,
    device: String,
    qos_predictions: QoS,
    qos_state: QoS,
    qos_status: QoS,
    capacity: usize,
    /// Predictions in flight at most; well below rumqttc's packet-id range so ids are not reused
    /// while an older message still holds them.
    window: usize,
    outbox: Outbox,

    connected: bool,
    connections: u64,
    /// Outbox ids below this were handed over on this connection.
    cursor: u64,
    /// Handed to rumqttc, waiting for their `Outgoing::Publish` event, oldest first.
    handed_over: VecDeque<(Tag, QoS)>,
    /// Packet id -> message waiting for its acknowledgement.
    awaiting: HashMap<u16, (Tag, Stage)>,
    /// Outbox ids handed over on this connection and not yet acknowledged.
    in_flight: BTreeSet<u64>,

    stopping: bool,
    stopped_delivered: bool,
    availability: Retained,
    discovery: Option<Retained>,
    camera_status: BTreeMap<String, Retained>,
    state: BTreeMap<String, Retained>,
    capture_result: BTreeMap<String, Retained>,

    dropped: u64,
    delivered: u64,
}

impl Session {
    pub fn open(settings: &MqttSettings, window: usize) -> Result<(Session, Recovered), MqttError> {
        let (outbox, recovered) = Outbox::open(&settings.outbox_dir)?;
        let session = Session {
            topics: Topics::new(settings),
            device: settings.device.clone(),
            qos_predictions: settings.qos_predictions,
            qos_state: settings.qos_state,
            qos_status: settings.qos_status,
            capacity: settings.outbox_capacity,
            window,
            outbox,
            connected: false,
            connections: 0,
            cursor: 0,
            handed_over: VecDeque::new(),
            awaiting: HashMap::new(),
            in_flight: BTreeSet::new(),
            stopping: false,
            stopped_delivered: false,
            availability: Retained::new(b"online".to_vec()),
            discovery: None,
            camera_status: BTreeMap::new(),
            state: BTreeMap::new(),
            capture_result: BTreeMap::new(),
            dropped: 0,
            delivered: 0,
        };
        Ok((session, recovered))
    }

    /// Stores a prediction (dropping the oldest one not in flight when full). A disk error is
    /// returned after the prediction was kept in memory.
    pub fn add_prediction(&mut self, camera: &str, payload: Vec<u8>) -> Option<std::io::Error> {
        while self.outbox.len() >= self.capacity {
            let oldest_idle = self.outbox.ids_from(0).find(|id| !self.in_flight.contains(id));
            let Some(victim) = oldest_idle.or_else(|| self.outbox.ids_from(0).next()) else { break };
            // A victim in flight may still be acknowledged later; that ack then finds nothing.
            self.outbox.remove(victim);
            self.in_flight.remove(&victim);
            self.dropped += 1;
        }
        let (_, error) = self.outbox.push(&self.topics.predictions(camera), payload);
        error
    }

    pub fn set_state(&mut self, camera: &str, payload: Vec<u8>) {
        self.state.entry(camera.to_string()).or_insert_with(|| Retained::new(vec![])).set(payload);
    }

    pub fn set_capture_result(&mut self, camera: &str, payload: Vec<u8>) {
        self.capture_result.entry(camera.to_string()).or_insert_with(|| Retained::new(vec![])).set(payload);
    }

    pub fn set_camera_status(&mut self, camera: &str, online: bool) {
        let payload = if online { b"online".to_vec() } else { b"offline".to_vec() };
        self.camera_status.entry(camera.to_string()).or_insert_with(|| Retained::new(vec![])).set(payload);
    }

    pub fn set_discovery(&mut self, payload: Vec<u8>) {
        self.discovery.get_or_insert_with(|| Retained::new(vec![])).set(payload);
    }

    /// Home Assistant restarted (its status topic said `online`): it needs discovery again.
    pub fn discovery_requested(&mut self) {
        if let Some(d) = &mut self.discovery {
            d.due = true;
        }
    }

    /// Clean shutdown: availability becomes `stopped`; nothing else changes.
    pub fn stop(&mut self) {
        self.stopping = true;
        self.availability.set(b"stopped".to_vec());
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// All predictions delivered and `stopped` acknowledged: shutdown may disconnect.
    pub fn is_flushed(&self) -> bool {
        self.connected && self.stopped_delivered && self.outbox.is_empty()
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    pub fn outbox_dir(&self) -> &std::path::Path {
        self.outbox.dir()
    }

    /// A new connection (CONNACK). The broker knows nothing of the last one (clean session):
    /// availability, retained state and every unacknowledged prediction are due again.
    pub fn connected(&mut self) {
        self.forget_connection();
        self.connected = true;
        self.connections += 1;
        self.availability.due = true;
        let cameras = self.camera_status.values_mut().chain(self.state.values_mut()).chain(self.capture_result.values_mut());
        for r in self.discovery.iter_mut().chain(cameras) {
            r.due = true;
        }
    }

    pub fn disconnected(&mut self) {
        self.forget_connection();
        self.connected = false;
    }

    fn forget_connection(&mut self) {
        self.cursor = 0;
        self.handed_over.clear();
        self.awaiting.clear();
        self.in_flight.clear();
    }

    /// The next message to hand to rumqttc, if any is due: availability, discovery, camera
    /// status and state first (they are few and small), then predictions in id order, at most
    /// `window` in flight. Call [`Session::handed_over`] once rumqttc took it.
    pub fn next_message(&mut self) -> Option<Message> {
        if !self.connected {
            return None;
        }
        let t = &self.topics;
        let retained = |tag: Tag, topic: String, r: &Retained, qos: QoS| Message {
            tag,
            topic,
            payload: r.payload.clone(),
            qos,
            retain: true,
        };
        if self.availability.due {
            let tag = if self.stopping { Tag::Stopped } else { Tag::Availability };
            return Some(retained(tag, t.availability(), &self.availability, self.qos_status));
        }
        if let (Some(d), Some(topic)) = (&self.discovery, t.discovery_config(&self.device)) {
            if d.due {
                return Some(retained(Tag::Discovery, topic, d, self.qos_status));
            }
        }
        if let Some((camera, r)) = self.camera_status.iter().find(|(_, r)| r.due) {
            return Some(retained(Tag::CameraStatus(camera.clone()), t.camera_status(camera), r, self.qos_status));
        }
        if let Some((camera, r)) = self.state.iter().find(|(_, r)| r.due) {
            return Some(retained(Tag::State(camera.clone()), t.state(camera), r, self.qos_state));
        }
        if let Some((camera, r)) = self.capture_result.iter().find(|(_, r)| r.due) {
            return Some(retained(Tag::CaptureResult(camera.clone()), t.capture_result(camera), r, self.qos_state));
        }
        while self.in_flight.len() < self.window {
            let id = self.outbox.ids_from(self.cursor).find(|id| !self.in_flight.contains(id))?;
            match self.outbox.load(id) {
                Ok((topic, payload)) => {
                    return Some(Message { tag: Tag::Prediction(id), topic, payload, qos: self.qos_predictions, retain: false })
                }
                Err(e) => {
                    log::warn!("outbox: dropping entry {id}: {e}");
                    self.outbox.remove(id);
                    self.dropped += 1;
                }
            }
        }
        None
    }

    /// rumqttc accepted the message with this tag and QoS into its request channel.
    pub fn handed_over(&mut self, tag: Tag, qos: QoS) {
        match &tag {
            Tag::Prediction(id) => {
                self.in_flight.insert(*id);
                self.cursor = self.cursor.max(id + 1);
            }
            Tag::Availability | Tag::Stopped => self.availability.due = false,
            Tag::Discovery => self.discovery.iter_mut().for_each(|d| d.due = false),
            Tag::CameraStatus(c) => self.camera_status.get_mut(c).into_iter().for_each(|r| r.due = false),
            Tag::State(c) => self.state.get_mut(c).into_iter().for_each(|r| r.due = false),
            Tag::CaptureResult(c) => self.capture_result.get_mut(c).into_iter().for_each(|r| r.due = false),
        }
        self.handed_over.push_back((tag, qos));
    }

    /// rumqttc wrote the next handed-over publish with this packet id (0 for QoS 0).
    pub fn published(&mut self, pkid: u16) {
        let Some((tag, qos)) = self.handed_over.pop_front() else {
            log::warn!("mqtt: rumqttc published packet {pkid} that was not handed over; ignoring it");
            return;
        };
        if qos == QoS::AtMostOnce || pkid == 0 {
            self.complete(tag);
        } else if let Some((older, _)) = self.awaiting.insert(pkid, (tag, Stage::Sent)) {
            // The id came round again while an older message still held it: send that one again.
            self.resend(older);
        }
    }

    /// PUBACK (QoS 1).
    pub fn acknowledged(&mut self, pkid: u16) {
        if let Some((tag, _)) = self.awaiting.remove(&pkid) {
            self.complete(tag);
        }
    }

    /// PUBREC (QoS 2): the broker has it, but (mosquitto) forwards it only after PUBREL, so the
    /// prediction stays in the outbox until PUBCOMP.
    pub fn received(&mut self, pkid: u16) {
        if let Some((_, stage)) = self.awaiting.get_mut(&pkid) {
            *stage = Stage::Received;
        }
    }

    /// PUBCOMP (QoS 2).
    pub fn completed(&mut self, pkid: u16) {
        if matches!(self.awaiting.get(&pkid), Some((_, Stage::Received))) {
            let (tag, _) = self.awaiting.remove(&pkid).expect("checked above");
            self.complete(tag);
        }
    }

    fn complete(&mut self, tag: Tag) {
        match tag {
            Tag::Prediction(id) => {
                self.in_flight.remove(&id);
                if self.outbox.remove(id) {
                    self.delivered += 1;
                }
            }
            Tag::Stopped => self.stopped_delivered = true,
            _ => {}
        }
    }

    fn resend(&mut self, tag: Tag) {
        match tag {
            Tag::Prediction(id) => {
                self.in_flight.remove(&id);
                self.cursor = self.cursor.min(id);
            }
            Tag::Availability | Tag::Stopped => self.availability.due = true,
            Tag::Discovery => self.discovery_requested(),
            Tag::CameraStatus(c) => self.camera_status.get_mut(&c).into_iter().for_each(|r| r.due = true),
            Tag::State(c) => self.state.get_mut(&c).into_iter().for_each(|r| r.due = true),
            Tag::CaptureResult(c) => self.capture_result.get_mut(&c).into_iter().for_each(|r| r.due = true),
        }
    }

    pub fn stats(&self) -> PublisherStats {
        PublisherStats {
            connected: self.connected,
            outbox_depth: self.outbox.len(),
            memory_only: self.outbox.in_memory(),
            dropped: self.dropped,
            delivered: self.delivered,
            reconnects: self.connections.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(dir: &std::path::Path, capacity: usize, window: usize) -> Session {
        let mut settings = MqttSettings::new("mqtt://localhost".parse().unwrap(), "pi", dir);
        settings.outbox_capacity = capacity;
        settings.discovery_prefix = Some("homeassistant".into());
        Session::open(&settings, window).unwrap().0
    }

    /// Hands over everything due, as the IO thread does when rumqttc's channel has room.
    fn drain(s: &mut Session) -> Vec<Message> {
        let mut out = vec![];
        while let Some(m) = s.next_message() {
            s.handed_over(m.tag.clone(), m.qos);
            out.push(m);
        }
        out
    }

    fn payloads(messages: &[Message]) -> Vec<String> {
        messages.iter().map(|m| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload))).collect()
    }

    #[test]
    fn nothing_is_sent_while_disconnected_and_availability_goes_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 10, 4);
        s.add_prediction("cam", b"p1".to_vec());
        s.set_state("cam", b"cat".to_vec());
        assert_eq!(s.next_message(), None);
        s.connected();
        assert_eq!(
            payloads(&drain(&mut s)),
            ["cvedge/pi/status online", "cvedge/pi/cam/state cat", "cvedge/pi/cam/predictions p1"]
        );
    }

    #[test]
    fn predictions_leave_the_outbox_only_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 10, 4);
        s.connected();
        drain(&mut s);
        s.published(1); // availability
        s.add_prediction("cam", b"p1".to_vec());
        s.add_prediction("cam", b"p2".to_vec());
        assert_eq!(drain(&mut s).len(), 2);
        s.published(2);
        s.published(3);
        assert_eq!(s.stats().outbox_depth, 2);
        s.acknowledged(3);
        assert_eq!((s.stats().outbox_depth, s.stats().delivered), (1, 1));
        s.acknowledged(3); // a duplicate ack completes nothing
        assert_eq!(s.stats().delivered, 1);
        s.acknowledged(2);
        assert_eq!((s.stats().outbox_depth, s.stats().delivered), (0, 2));
    }

    #[test]
    fn a_reconnect_resends_every_unacknowledged_prediction_in_order_with_retained_state() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 10, 8);
        s.set_discovery(b"{}".to_vec());
        s.set_camera_status("cam", true);
        s.set_state("cam", b"dog".to_vec());
        for p in ["p1", "p2", "p3"] {
            s.add_prediction("cam", p.as_bytes().to_vec());
        }
        s.connected();
        let first = drain(&mut s);
        assert_eq!(first.len(), 7);
        for (i, _) in first.iter().enumerate() {
            s.published(i as u16 + 1);
        }
        s.acknowledged(6); // p2 (after status, discovery, camera status, state, p1)
        s.disconnected();
        assert_eq!(s.next_message(), None);
        s.connected();
        assert_eq!(s.stats().reconnects, 1);
        assert_eq!(
            payloads(&drain(&mut s)),
            [
                "cvedge/pi/status online",
                "homeassistant/device/pi/config {}",
                "cvedge/pi/cam/status online",
                "cvedge/pi/cam/state dog",
                "cvedge/pi/cam/predictions p1",
                "cvedge/pi/cam/predictions p3",
            ]
        );
    }

    #[test]
    fn the_in_flight_window_holds_back_later_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 100, 3);
        s.connected();
        drain(&mut s);
        s.published(1);
        for i in 0..10 {
            s.add_prediction("cam", format!("p{i}").into_bytes());
        }
        assert_eq!(
            payloads(&drain(&mut s)),
            ["cvedge/pi/cam/predictions p0", "cvedge/pi/cam/predictions p1", "cvedge/pi/cam/predictions p2"]
        );
        for pkid in 2..5 {
            s.published(pkid);
        }
        s.acknowledged(2);
        assert_eq!(payloads(&drain(&mut s)), ["cvedge/pi/cam/predictions p3"]);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_idle_prediction_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 3, 1);
        s.connected();
        drain(&mut s);
        s.published(1);
        s.add_prediction("cam", b"p0".to_vec());
        drain(&mut s); // p0 in flight
        for p in ["p1", "p2", "p3", "p4"] {
            s.add_prediction("cam", p.as_bytes().to_vec());
        }
        let stats = s.stats();
        assert_eq!((stats.outbox_depth, stats.dropped), (3, 2));
        // p0 (in flight) survives; p1 and p2 were dropped.
        s.published(2);
        s.acknowledged(2);
        assert_eq!(payloads(&drain(&mut s)), ["cvedge/pi/cam/predictions p3"]);
        assert_eq!(s.stats().delivered, 1);
    }

    #[test]
    fn qos0_predictions_complete_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = MqttSettings::new("mqtt://localhost".parse().unwrap(), "pi", dir.path());
        settings.qos_predictions = QoS::AtMostOnce;
        let (mut s, _) = Session::open(&settings, 4).unwrap();
        s.connected();
        s.add_prediction("cam", b"p".to_vec());
        drain(&mut s);
        s.published(1); // availability, QoS 1
        s.published(0);
        assert_eq!((s.stats().outbox_depth, s.stats().delivered), (0, 1));
    }

    #[test]
    fn qos2_predictions_wait_for_pubcomp() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = MqttSettings::new("mqtt://localhost".parse().unwrap(), "pi", dir.path());
        settings.qos_predictions = QoS::ExactlyOnce;
        let (mut s, _) = Session::open(&settings, 4).unwrap();
        s.connected();
        s.add_prediction("cam", b"p".to_vec());
        drain(&mut s);
        s.published(1);
        s.published(2);
        s.completed(2); // PUBCOMP before PUBREC is not ours to trust
        assert_eq!(s.stats().outbox_depth, 1);
        s.received(2);
        assert_eq!(s.stats().outbox_depth, 1);
        s.completed(2);
        assert_eq!(s.stats().outbox_depth, 0);
    }

    #[test]
    fn a_reused_packet_id_sends_the_older_message_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 10, 4);
        s.connected();
        drain(&mut s);
        s.published(1);
        s.add_prediction("cam", b"old".to_vec());
        s.add_prediction("cam", b"new".to_vec());
        drain(&mut s);
        s.published(7);
        s.published(7);
        assert_eq!(payloads(&drain(&mut s)), ["cvedge/pi/cam/predictions old"]);
    }

    #[test]
    fn shutdown_waits_for_stopped_and_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 10, 4);
        s.connected();
        drain(&mut s);
        s.published(1);
        s.add_prediction("cam", b"p".to_vec());
        s.stop();
        s.acknowledged(1); // the ack of `online`, not `stopped`
        assert!(!s.is_flushed());
        assert_eq!(payloads(&drain(&mut s)), ["cvedge/pi/status stopped", "cvedge/pi/cam/predictions p"]);
        s.published(2);
        s.published(3);
        s.acknowledged(2);
        assert!(!s.is_flushed());
        s.acknowledged(3);
        assert!(s.is_flushed());
    }

    #[test]
    fn capture_results_are_retained_latest_wins_and_resent_after_a_reconnect() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 10, 4);
        s.set_capture_result("door", b"running".to_vec());
        s.set_capture_result("door", b"done".to_vec());
        s.connected();
        let sent = drain(&mut s);
        assert_eq!(payloads(&sent), ["cvedge/pi/status online", "cvedge/pi/door/capture/result done"]);
        assert!(sent[1].retain);
        s.disconnected();
        s.connected();
        assert_eq!(payloads(&drain(&mut s))[1], "cvedge/pi/door/capture/result done");
    }

    #[test]
    fn discovery_is_resent_when_home_assistant_comes_online() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = session(dir.path(), 10, 4);
        s.connected();
        s.set_discovery(b"{}".to_vec());
        assert_eq!(drain(&mut s).len(), 2);
        s.discovery_requested();
        assert_eq!(payloads(&drain(&mut s)), ["homeassistant/device/pi/config {}"]);
    }

    #[test]
    fn command_topics_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let s = session(dir.path(), 10, 4);
        assert!(s.topics.is_command("cvedge/pi/command"));
        assert!(s.topics.is_command("cvedge/pi/door/capture"));
        assert!(!s.topics.is_command("cvedge/pi/door/state"));
        assert!(!s.topics.is_command("cvedge/pi/door/capture/result"), "our own reports are not commands");
        assert!(!s.topics.is_command("cvedge/pi//capture"));
        assert!(!s.topics.is_command("cvedge/other/door/capture"));
    }
}
