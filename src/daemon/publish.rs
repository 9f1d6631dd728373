//! The daemon's MQTT side: the configuration turned into publisher settings, Home Assistant
//! discovery for the configured cameras, and the publisher as a [`Sink`].

use std::time::Duration;

use crate::classifier::Classifier;
use crate::config::{Config, MqttConfig};
use crate::error::{Error, Result};
use crate::sink::mqtt::{discovery_payload, MqttSettings, Publisher, QoS};
use crate::sink::{Outcome, Sink};

fn qos(key: &str, level: u8) -> Result<QoS> {
    level.to_string().parse().map_err(|e| Error::config(key, format!("{e}"), "use 0, 1 or 2"))
}

/// Starts the publisher (it connects in the background) and announces the cameras to Home
/// Assistant.
pub fn start_publisher(mqtt: &MqttConfig, config: &Config, classifier: &Classifier) -> Result<Publisher> {
    let broker = mqtt.url.parse().map_err(|e| Error::config("mqtt.url", format!("{e}"), "write mqtt://HOST:PORT or mqtts://HOST:PORT"))?;
    let mut settings = MqttSettings::new(broker, config.device.clone(), config.state_dir.join("outbox"));
    settings.client_id = mqtt.client_id.clone().unwrap_or_else(|| format!("cvedge-{}", config.device));
    settings.username = mqtt.username.clone();
    settings.password = mqtt.password.clone().map(|p| p.0);
    settings.ca_file = mqtt.ca_file.clone();
    settings.client_cert = mqtt.client_cert.clone();
    settings.client_key = mqtt.client_key.clone();
    settings.keep_alive = Duration::from_secs(mqtt.keep_alive_s.max(5));
    settings.prefix = mqtt.prefix.clone();
    settings.qos_predictions = qos("mqtt.qos_predictions", mqtt.qos_predictions)?;
    settings.qos_state = qos("mqtt.qos_state", mqtt.qos_state)?;
    settings.qos_status = qos("mqtt.qos_status", mqtt.qos_status)?;
    settings.outbox_capacity = mqtt.outbox_capacity;
    settings.discovery_prefix = (!mqtt.discovery_prefix.is_empty()).then(|| mqtt.discovery_prefix.clone());
    let publisher = Publisher::start(settings).map_err(|e| Error::config("mqtt", e.to_string(), "fix the [mqtt] settings"))?;
    announce(&publisher, config, classifier);
    Ok(publisher)
}

/// (Re)sets the Home Assistant discovery message for the configured cameras and the model's
/// tags; called at start and whenever the model or the cameras change (a new iteration may have
/// other tags).
pub fn announce(publisher: &Publisher, config: &Config, classifier: &Classifier) {
    let Some(mqtt) = config.mqtt.as_ref().filter(|m| !m.discovery_prefix.is_empty()) else { return };
    let cameras: Vec<(&str, &[String])> = config.cameras.iter().map(|c| (c.name.as_str(), classifier.labels.as_slice())).collect();
    publisher.set_discovery(discovery_payload(&config.device, &mqtt.prefix, &cameras, env!("CARGO_PKG_VERSION")));
}

impl Sink for Publisher {
    fn publish(&self, outcome: &Outcome<'_>) -> std::io::Result<()> {
        let payload = serde_json::to_vec(outcome.response)?;
        self.prediction(outcome.camera.unwrap_or("default"), payload).map_err(std::io::Error::other)
    }

    fn state(&self, camera: &str, state: &[u8]) -> std::io::Result<()> {
        Publisher::state(self, camera, state.to_vec());
        Ok(())
    }

    fn camera_status(&self, camera: &str, online: bool) -> std::io::Result<()> {
        Publisher::camera_status(self, camera, online);
        Ok(())
    }

    fn capture_result(&self, camera: &str, report: &[u8]) -> std::io::Result<()> {
        Publisher::capture_result(self, camera, report.to_vec());
        Ok(())
    }
}
