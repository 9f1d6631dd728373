//! Home Assistant device-based discovery: one retained message describing the device, a `sensor`
//! per camera (the top tag, with every tag's score as attributes) and a `binary_sensor` per tag.
//!
//! The entities read the camera's state topic, whose payload the daemon must publish exactly as:
//!
//! ```json
//! {"state": "cat", "tags": ["cat"], "scores": {"cat": 0.97, "dog": 0.01},
//!  "iteration": "4f5a0c1e-7d2b-4c8e-9a61-3b0d2e5f7a11", "time": "2026-11-22T01:11:53.258Z"}
//! ```
//!
//! - `state`: the best detected tag, or `"none"` when no tag reaches the threshold;
//! - `tags`: every detected tag (empty when none; several for a multilabel model);
//! - `scores`: every tag's probability, 0..1;
//! - `iteration` (the model iteration) and `time` (RFC 3339, UTC): for other consumers; Home
//!   Assistant does not read them.

use serde_json::{json, Map, Value};

use super::session::Topics;
use super::MqttSettings;

/// `repository` from Cargo.toml; the origin's `url` is left out while that is unset.
const ORIGIN_URL: &str = env!("CARGO_PKG_REPOSITORY");

/// The discovery message for `device` (topics under `prefix`), one entry per camera with the tags
/// its model knows. Publish it with [`super::Publisher::set_discovery`].
pub fn discovery_payload(device: &str, prefix: &str, cameras: &[(&str, &[String])], sw_version: &str) -> Vec<u8> {
    let mut settings = MqttSettings::new("mqtt://localhost".parse().expect("constant"), device, "");
    settings.prefix = prefix.to_string();
    let topics = Topics::new(&settings);
    // `stopped` (clean shutdown) must read as unavailable too, not be ignored.
    let device_available = json!({
        "topic": topics.availability(),
        "value_template": "{{ 'online' if value == 'online' else 'offline' }}",
    });
    let device_id = format!("cvedge_{}", slug(device));
    let mut components = Map::new();
    let mut add = |id: String, component: Value| {
        // Different names can slug alike ("a b", "a-b"): keep every unique_id unique.
        let mut unique = id.clone();
        let mut n = 2;
        while components.contains_key(&unique) {
            unique = format!("{id}_{n}");
            n += 1;
        }
        let mut component = component;
        component["unique_id"] = Value::String(unique.clone());
        components.insert(unique, component);
    };
    for (camera, tags) in cameras {
        let state = topics.state(camera);
        let availability = json!([device_available, {"topic": topics.camera_status(camera)}]);
        add(
            format!("{device_id}_{}", slug(camera)),
            json!({
                "p": "sensor",
                "name": camera,
                "icon": "mdi:cctv",
                "state_topic": state,
                "value_template": "{{ value_json.state }}",
                "json_attributes_topic": state,
                "json_attributes_template": "{{ value_json.scores | tojson }}",
                "availability": availability,
                "availability_mode": "all",
            }),
        );
        for tag in tags.iter() {
            // A JSON string literal is also a valid Jinja one, quotes and backslashes escaped.
            let literal = serde_json::to_string(tag).expect("strings serialise");
            add(
                format!("{device_id}_{}_{}", slug(camera), slug(tag)),
                json!({
                    "p": "binary_sensor",
                    "name": format!("{camera} {tag}"),
                    "state_topic": state,
                    "value_template": format!("{{{{ 'ON' if {literal} in value_json.tags else 'OFF' }}}}"),
                    "availability": availability,
                    "availability_mode": "all",
                }),
            );
        }
    }
    let mut origin = json!({"name": "cvedge", "sw": sw_version});
    if !ORIGIN_URL.is_empty() {
        origin["url"] = Value::String(ORIGIN_URL.into());
    }
    let message = json!({
        "dev": {
            "ids": [device_id],
            "name": device,
            "mf": "cvedge",
            "mdl": "Custom Vision classifier",
            "sw": sw_version,
        },
        "o": origin,
        "cmps": components,
    });
    serde_json::to_vec(&message).expect("JSON values serialise")
}

/// Lower-case ASCII letters, digits and `_`: what Home Assistant accepts in ids.
fn slug(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn one_sensor_per_camera_and_one_binary_sensor_per_tag() {
        let tags = vec!["cat".to_string(), "Dog \"big\"".to_string()];
        let v = parse(&discovery_payload("pi-kitchen", "cvedge", &[("door", &tags)], "0.1.0"));
        assert_eq!(v["dev"]["ids"][0], "cvedge_pi_kitchen");
        assert_eq!(v["dev"]["sw"], "0.1.0");
        assert_eq!(v["o"]["name"], "cvedge");
        let cmps = v["cmps"].as_object().unwrap();
        assert_eq!(cmps.len(), 3);
        let sensor = &cmps["cvedge_pi_kitchen_door"];
        assert_eq!(sensor["p"], "sensor");
        assert_eq!(sensor["unique_id"], "cvedge_pi_kitchen_door");
        assert_eq!(sensor["state_topic"], "cvedge/pi-kitchen/door/state");
        assert_eq!(sensor["json_attributes_topic"], "cvedge/pi-kitchen/door/state");
        assert_eq!(sensor["availability"][0]["topic"], "cvedge/pi-kitchen/status");
        assert_eq!(sensor["availability"][1]["topic"], "cvedge/pi-kitchen/door/status");
        let dog = &cmps["cvedge_pi_kitchen_door_dog__big_"];
        assert_eq!(dog["p"], "binary_sensor");
        assert_eq!(dog["value_template"], r#"{{ 'ON' if "Dog \"big\"" in value_json.tags else 'OFF' }}"#);
    }

    #[test]
    fn unique_ids_stay_unique_when_names_slug_alike() {
        let tags = vec!["a b".to_string(), "a-b".to_string()];
        let v = parse(&discovery_payload("pi", "cvedge", &[("cam", &tags)], "1"));
        let ids: std::collections::HashSet<_> =
            v["cmps"].as_object().unwrap().values().map(|c| c["unique_id"].as_str().unwrap().to_string()).collect();
        assert_eq!(ids.len(), 3);
    }
}
