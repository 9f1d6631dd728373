//! The publisher handle and the thread that drives rumqttc.
//!
//! One thread ("mqtt") polls rumqttc's event loop, which is the only way rumqttc makes progress
//! or reconnects, and sleeps with backoff between failed connections. Callers and that thread
//! share the [`Session`] and rumqttc's client behind one mutex: whoever changes the session
//! hands rumqttc what became due ([`Core::pump`]) while still holding the lock, so the order in
//! which messages enter rumqttc's channel is the order the session recorded. Nothing blocks on
//! the network while holding the lock: rumqttc's channel is only ever `try_`-sent to.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use rumqttc::{Connection, Event, EventLoop, Incoming, MqttState, Outgoing, SubscribeFilter};

use crate::backoff::Backoff;
use super::session::{PublisherStats, Session, Topics};
use super::settings::{topic_level, MqttSettings, MAX_PACKET_SIZE};
use super::MqttError;

/// Predictions in flight at most.
const WINDOW: usize = 32;
/// rumqttc's packet ids run 1..=INFLIGHT; far above WINDOW so an id comes round again only
/// long after its previous message was acknowledged.
const INFLIGHT: u16 = 1024;
/// rumqttc's request channel: the window, retained messages, subscribe, disconnect.
const CHANNEL: usize = WINDOW + 32;
/// Commands waiting for the daemon; beyond this they are dropped (and logged).
const COMMANDS: usize = 64;
/// How long shutdown waits for the thread to close the connection after the flush.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

const RUN: u8 = 0;
/// Shutdown: send DISCONNECT (so no last will), then end.
const CLEAN: u8 = 1;
/// Every handle dropped without shutdown: end without DISCONNECT, so the broker publishes the
/// last will (`offline`), as for a crash.
const ABORT: u8 = 2;

struct Core {
    session: Session,
    client: rumqttc::Client,
    disconnect_requested: bool,
    disk_failing: bool,
}

impl Core {
    /// Hands rumqttc every due message its channel has room for. What does not fit is handed over
    /// after the next event frees room: every message taken produces one.
    fn pump(&mut self) {
        while let Some(m) = self.session.next_message() {
            match self.client.try_publish(m.topic, m.qos.into(), m.retain, m.payload) {
                Ok(()) => self.session.handed_over(m.tag, m.qos),
                Err(_) => break,
            }
        }
    }

    fn subscribe(&mut self) {
        let topics = &self.session.topics;
        let mut filters = vec![topics.command(), topics.capture_filter()];
        filters.extend(topics.discovery_status());
        let filters = filters.into_iter().map(|f| SubscribeFilter::new(f, rumqttc::QoS::AtLeastOnce));
        if let Err(e) = self.client.try_subscribe_many(filters) {
            log::error!("mqtt: cannot subscribe to commands: {e}");
        }
    }

    fn disconnect_if_connected(&mut self) {
        if self.session.is_connected() && !self.disconnect_requested {
            self.disconnect_requested = self.client.try_disconnect().is_ok();
        }
    }
}

struct Shared {
    core: Mutex<Core>,
    /// Notified whenever the session changed in a way shutdown waits for.
    changed: Condvar,
    exit: AtomicU8,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic elsewhere must not stop predictions from being stored.
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Held by every [`Publisher`] clone (not by the thread): its drop is the last handle going.
struct Handle {
    shared: Arc<Shared>,
    wake: Sender<()>,
    done: Receiver<()>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.shared.exit.compare_exchange(RUN, ABORT, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            // The thread may be waiting on rumqttc with nothing to send: give it a request. An
            // UNSUBSCRIBE of a topic never subscribed changes nothing at the broker.
            let core = self.shared.lock();
            let _ = core.client.try_unsubscribe(format!("{}/wake", core.session.topics.command()));
            let _ = self.wake.try_send(());
        }
    }
}

/// A durable MQTT publisher: a cheap handle, clone it freely. See the module documentation.
#[derive(Clone)]
pub struct Publisher {
    handle: Arc<Handle>,
    commands: Receiver<(String, Vec<u8>)>,
}

impl Publisher {
    /// Opens the outbox (picking up what a previous run left), then connects in the background:
    /// it returns at once even when the broker is down. Fails on bad settings, unreadable TLS
    /// files or an outbox directory that cannot be written.
    pub fn start(settings: MqttSettings) -> Result<Publisher, MqttError> {
        settings.validate()?;
        let (session, recovered) = Session::open(&settings, WINDOW)?;
        if recovered.entries > 0 || recovered.discarded > 0 {
            log::info!(
                "mqtt: {} undelivered prediction(s) in {} will be sent first ({} unreadable file(s) discarded)",
                recovered.entries,
                settings.outbox_dir.display(),
                recovered.discarded
            );
        }
        let options = settings.mqtt_options(&session.topics.availability(), INFLIGHT, CHANNEL)?;
        let (client, connection) = rumqttc::Client::new(options, CHANNEL);
        let shared = Arc::new(Shared {
            core: Mutex::new(Core { session, client, disconnect_requested: false, disk_failing: false }),
            changed: Condvar::new(),
            exit: AtomicU8::new(RUN),
        });
        let (commands_tx, commands) = crossbeam_channel::bounded(COMMANDS);
        let (wake, wake_rx) = crossbeam_channel::bounded(1);
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let driver = Driver {
            shared: shared.clone(),
            backoff: Backoff::new(settings.reconnect_min, settings.reconnect_max),
            broker: settings.broker.to_string(),
            wake: wake_rx,
            commands: commands_tx,
        };
        thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || {
                driver.run(connection);
                let _ = done_tx.send(());
            })
            .map_err(MqttError::Thread)?;
        Ok(Publisher { handle: Arc::new(Handle { shared, wake, done }), commands })
    }

    fn shared(&self) -> &Shared {
        &self.handle.shared
    }

    /// Stores a prediction for `{prefix}/{device}/{camera}/predictions` in the outbox (on disk
    /// before this returns) and sends it when connected; it leaves the outbox when the broker
    /// acknowledges it (QoS 1/2) or it was written to the socket (QoS 0). When the outbox is full
    /// the oldest waiting prediction is dropped and counted in [`PublisherStats::dropped`].
    ///
    /// A failing disk (full, read-only, removed) does not fail the call: the prediction is kept
    /// in memory instead (lost only if the process stops before it is delivered), the failure is
    /// logged once, and [`PublisherStats::memory_only`] counts such predictions.
    pub fn prediction(&self, camera: &str, payload: Vec<u8>) -> Result<(), MqttError> {
        topic_level("camera", camera, false)?;
        let mut core = self.shared().lock();
        check_size(&core.session.topics.predictions(camera), &payload)?;
        if core.session.is_stopping() {
            return Err(MqttError::Stopped);
        }
        match core.session.add_prediction(camera, payload) {
            Some(e) if !core.disk_failing => {
                log::error!(
                    "mqtt: cannot write to the outbox {}: {e}; keeping predictions in memory until the disk works again (they are lost if cvedge stops before delivering them)",
                    core.session.outbox_dir().display()
                );
                core.disk_failing = true;
            }
            None if core.disk_failing => {
                log::info!("mqtt: the outbox {} is writable again", core.session.outbox_dir().display());
                core.disk_failing = false;
            }
            _ => {}
        }
        core.pump();
        Ok(())
    }

    /// Sets the camera's retained state (`{prefix}/{device}/{camera}/state`; the JSON shape is in
    /// [`super::discovery`]). The latest value is kept and re-sent after every reconnect.
    pub fn state(&self, camera: &str, payload: Vec<u8>) {
        self.retained(camera, |core, topic| {
            check_size(&topic.state(camera), &payload)?;
            core.session.set_state(camera, payload);
            Ok(())
        })
    }

    /// Sets the camera's retained capture report (`{prefix}/{device}/{camera}/capture/result`;
    /// the JSON shape is in `daemon::capture`). The latest value is kept and re-sent after every
    /// reconnect.
    pub fn capture_result(&self, camera: &str, payload: Vec<u8>) {
        self.retained(camera, |core, topic| {
            check_size(&topic.capture_result(camera), &payload)?;
            core.session.set_capture_result(camera, payload);
            Ok(())
        })
    }

    /// Sets the camera's retained `online`/`offline` status (`{prefix}/{device}/{camera}/status`),
    /// re-sent after every reconnect.
    pub fn camera_status(&self, camera: &str, online: bool) {
        self.retained(camera, |core, _| {
            core.session.set_camera_status(camera, online);
            Ok(())
        })
    }

    /// Sets the Home Assistant discovery message (see [`super::discovery_payload`]), retained at
    /// `{discovery_prefix}/device/{device}/config` and sent on every connect and whenever
    /// `{discovery_prefix}/status` says `online`. Ignored without a discovery prefix.
    pub fn set_discovery(&self, payload: Vec<u8>) {
        let mut core = self.shared().lock();
        if let Err(e) = check_size("discovery", &payload) {
            log::error!("mqtt: {e}");
            return;
        }
        core.session.set_discovery(payload);
        core.pump();
    }

    fn retained(&self, camera: &str, set: impl FnOnce(&mut Core, &Topics) -> Result<(), MqttError>) {
        // These return nothing (a state update is not worth failing a pipeline for): log instead.
        let result = topic_level("camera", camera, false).and_then(|()| {
            let mut core = self.shared().lock();
            let topics = core.session.topics.clone();
            set(&mut core, &topics)?;
            core.pump();
            Ok(())
        });
        if let Err(e) = result {
            log::error!("mqtt: {e}");
        }
    }

    /// Messages received on `{prefix}/{device}/command` and `{prefix}/{device}/+/capture`, as
    /// (topic, payload). Subscribed on every connect. Clones share one queue (each message goes
    /// to one receiver); when nobody reads, messages beyond 64 are dropped.
    pub fn commands(&self) -> Receiver<(String, Vec<u8>)> {
        self.commands.clone()
    }

    pub fn stats(&self) -> PublisherStats {
        self.shared().lock().session.stats()
    }

    /// Publishes the retained `stopped` status, waits up to `flush_timeout` for the outbox to be
    /// delivered, then disconnects cleanly (so the broker does not publish the last will). What
    /// was not delivered stays on disk for the next start and is reported as
    /// [`MqttError::Undelivered`]. Stops every clone of this publisher. If the broker is
    /// unreachable throughout, `stopped` cannot be published; the broker then shows the last
    /// will's `offline` from when the connection was lost.
    pub fn shutdown(self, flush_timeout: Duration) -> Result<(), MqttError> {
        let deadline = Instant::now() + flush_timeout;
        let shared = self.shared();
        let (left, lost, dir) = {
            let mut core = shared.lock();
            if core.session.is_stopping() {
                return Err(MqttError::Stopped);
            }
            core.session.stop();
            core.pump();
            while !core.session.is_flushed() {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                core = shared.changed.wait_timeout(core, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
            }
            shared.exit.store(CLEAN, Ordering::SeqCst);
            core.disconnect_if_connected();
            (core.session.outbox_len(), core.session.stats().memory_only, core.session.outbox_dir().to_path_buf())
        };
        let _ = self.handle.wake.try_send(());
        // Normally immediate; a connection attempt in progress may take longer, and then the
        // thread finishes by itself (sending `stopped`, then DISCONNECT, if it connects).
        let _ = self.handle.done.recv_timeout(CLOSE_GRACE);
        if left > 0 {
            return Err(MqttError::Undelivered { left, lost, dir });
        }
        Ok(())
    }
}

fn check_size(topic: &str, payload: &[u8]) -> Result<(), MqttError> {
    // Fixed header (5), topic length (2), packet id (2).
    let size = payload.len() + topic.len() + 9;
    if size > MAX_PACKET_SIZE {
        return Err(MqttError::TooLarge { topic: topic.to_string(), size, limit: MAX_PACKET_SIZE });
    }
    Ok(())
}

/// The thread's side.
struct Driver {
    shared: Arc<Shared>,
    backoff: Backoff,
    broker: String,
    wake: Receiver<()>,
    commands: Sender<(String, Vec<u8>)>,
}

impl Driver {
    fn run(mut self, mut connection: Connection) {
        let mut failures = 0u32;
        while self.shared.exit.load(Ordering::SeqCst) != ABORT {
            let Ok(event) = connection.recv() else { break };
            match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break, // written and flushed
                Ok(event) => {
                    if matches!(event, Event::Incoming(Incoming::ConnAck(_))) {
                        log::info!("mqtt: connected to {}", self.broker);
                        failures = 0;
                        self.backoff.reset();
                    }
                    self.handle(event);
                }
                Err(error) => {
                    self.disconnected(&mut connection.eventloop);
                    if self.shared.exit.load(Ordering::SeqCst) != RUN {
                        break;
                    }
                    let delay = self.backoff.next_delay();
                    failures += 1;
                    if failures == 1 {
                        let error = error.to_string();
                        let fix = super::hint::fix_for(&error).map(|fix| format!("; {fix}")).unwrap_or_default();
                        log::warn!("mqtt: {}: {error}{fix}; retrying with backoff, predictions wait in the outbox", self.broker);
                    } else {
                        log::debug!("mqtt: {}: {error}; retry {failures} in {delay:?}", self.broker);
                    }
                    match self.wake.recv_timeout(delay) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ if self.shared.exit.load(Ordering::SeqCst) == RUN => {}
                        _ => break,
                    }
                }
            }
        }
        // Dropping `connection` closes the socket; without a DISCONNECT the broker sends the will.
        let mut core = self.shared.lock();
        core.session.disconnected();
        self.shared.changed.notify_all();
    }

    fn handle(&mut self, event: Event) {
        let mut core = self.shared.lock();
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => {
                core.session.connected();
                core.subscribe();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => core.session.published(pkid),
            Event::Incoming(Incoming::PubAck(ack)) => core.session.acknowledged(ack.pkid),
            Event::Incoming(Incoming::PubRec(rec)) => core.session.received(rec.pkid),
            Event::Incoming(Incoming::PubComp(comp)) => core.session.completed(comp.pkid),
            Event::Incoming(Incoming::Publish(publish)) => {
                if core.session.topics.discovery_status().as_deref() == Some(publish.topic.as_str()) {
                    if publish.payload.as_ref() == b"online" {
                        core.session.discovery_requested();
                    }
                } else if core.session.topics.is_command(&publish.topic) {
                    if let Err(TrySendError::Full(_)) = self.commands.try_send((publish.topic.clone(), publish.payload.to_vec()))
                    {
                        log::warn!("mqtt: dropping command on {}: nobody reads Publisher::commands()", publish.topic);
                    }
                }
            }
            _ => return,
        }
        core.pump();
        if self.shared.exit.load(Ordering::SeqCst) == CLEAN {
            // Shut down while (re)connecting: what was due is handed over, now say goodbye.
            core.disconnect_if_connected();
        }
        self.shared.changed.notify_all();
    }

    /// The connection is gone. Forget it in the session, and reset rumqttc to a fresh state:
    /// left alone it would replay stale `Outgoing` events and requests queued for the dead
    /// connection into the next one, and a packet-id collision pending at the time would block
    /// publishing forever. The outbox re-sends everything unacknowledged instead.
    fn disconnected(&self, eventloop: &mut EventLoop) {
        let mut core = self.shared.lock();
        core.session.disconnected();
        core.disconnect_requested = false;
        eventloop.clean();
        eventloop.pending.clear();
        eventloop.state = MqttState::new(INFLIGHT, false);
        self.shared.changed.notify_all();
    }
}
