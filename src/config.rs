//! The daemon's configuration: one TOML file (or command-line flags, or the embedded default),
//! turned once into a validated [`Config`]. Unknown keys are errors, and every error names the
//! key and the fix. Secrets can come from the environment: `password = "${MQTT_PASSWORD}"`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::engine::EngineChoice;
use crate::error::{Error, Result};
use crate::serve::ResponseFormat;
use crate::source::SourceSpec;

/// The data folder's subfolder for review frames: a dot-folder, which is never a tag.
pub const REVIEW_DIR: &str = ".review";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Export zip, folder or model file (or a trained iteration, later).
    pub model: PathBuf,
    /// Identifies this device in topics; default: the host name.
    #[serde(default = "default_device")]
    pub device: String,
    /// Per-tag probability threshold (0..1).
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Which engine runs the model: tract, onnxruntime or auto (the fastest that agrees with tract).
    #[serde(default = "default_engine", deserialize_with = "engine_choice")]
    pub engine: EngineChoice,
    /// Threads per inference; 0 = one per core.
    #[serde(default)]
    pub threads: usize,
    /// Consecutive results needed before a tag becomes a camera's state.
    #[serde(default = "default_consecutive")]
    pub consecutive: u32,
    /// Sequence counters and the MQTT outbox live here.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The training data folder (`DATA/<tag>/`), where MQTT capture commands and review frames
    /// are saved; the same default as `cvedge capture --data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Print every prediction as a JSON line on stdout too.
    #[serde(default)]
    pub print: bool,
    /// Keep low-confidence frames for a technician to tag; absent: off.
    #[serde(default)]
    pub review: Option<ReviewConfig>,
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// The prediction API, health, metrics and live page over HTTP; absent: off.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    #[serde(default = "default_qos")]
    pub qos_predictions: u8,
    #[serde(default = "default_qos")]
    pub qos_state: u8,
    #[serde(default = "default_qos")]
    pub qos_status: u8,
    /// Bounded on-disk outbox for predictions: oldest dropped (and counted) beyond this.
    #[serde(default = "default_outbox")]
    pub outbox_capacity: usize,
    /// Home Assistant discovery prefix; empty turns discovery off.
    #[serde(default = "default_discovery")]
    pub discovery_prefix: String,
}

/// `[http]`: `cvedge serve`'s API inside the daemon, sharing its model, plus the live page,
/// per-camera metrics and the capture button.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `HOST:PORT` to listen on.
    pub addr: String,
    /// Inference threads for posted images (the cameras have their own); 0 = one per core.
    #[serde(default = "default_http_workers")]
    pub workers: usize,
    /// Checked with the server's other options when it starts (0 is refused there).
    #[serde(default = "default_http_queue")]
    pub queue: usize,
    #[serde(default = "default_http_connections")]
    pub max_connections: usize,
    /// Required in `Prediction-Key` (or the live page's `?key=`) when set; `${VAR}` reads the
    /// environment.
    #[serde(default)]
    pub api_key: Option<Secret>,
    #[serde(default)]
    pub allow_private_urls: bool,
    /// `container` (default) or `cloud`.
    #[serde(default, deserialize_with = "response_format")]
    pub format: ResponseFormat,
}

fn default_http_workers() -> usize {
    1
}

fn default_http_queue() -> usize {
    crate::serve::ServeOptions::default().queue
}

fn default_http_connections() -> usize {
    crate::serve::ServeOptions::default().max_connections
}


/// `[review]`: frames whose best probability is below `below` are saved to
/// `DATA/.review/<camera>/`, at most one per camera per `interval_s`, keeping the newest
/// `max_images` per camera.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReviewConfig {
    /// Probability (0..1] under which the best tag counts as unsure.
    #[serde(default = "default_review_below")]
    pub below: f32,
    /// Review images kept per camera; the oldest are deleted beyond this.
    #[serde(default = "default_review_max")]
    pub max_images: usize,
    /// At most one review image per camera per this many seconds (0: every unsure frame).
    #[serde(default = "default_review_interval")]
    pub interval_s: f32,
}

/// A value that must not show up in logs: `{:?}` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Topic-safe name (`door`, `kitchen-1`).
    pub name: String,
    /// `v4l:/dev/video0`, `mjpeg:http://...`, `ffmpeg:rtsp://...`, `file:images/*.jpg`, `synthetic`.
    pub source: String,
    /// Classify at most once per this many seconds (0: as fast as the engine goes).
    #[serde(default)]
    pub interval_s: f32,
    /// Region of interest `[x, y, width, height]` in source pixels, cropped before preprocessing.
    #[serde(default)]
    pub roi: Option<[u32; 4]>,
    /// Overrides the device-wide threshold.
    #[serde(default)]
    pub threshold: Option<f32>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub fps: Option<f32>,
    /// Replay `file:` sources forever.
    #[serde(default = "default_true")]
    pub loop_files: bool,
}

fn default_device() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cvedge".to_owned())
}
fn default_engine() -> EngineChoice {
    EngineChoice::Auto
}
fn engine_choice<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<EngineChoice, D::Error> {
    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
}
fn response_format<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<ResponseFormat, D::Error> {
    // The key is said here: a TOML error's message does not name it.
    String::deserialize(d)?.parse().map_err(|e| serde::de::Error::custom(format!("http.format: {e}")))
}
fn default_threshold() -> f32 {
    crate::classifier::DEFAULT_THRESHOLD
}
fn default_consecutive() -> u32 {
    3
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("cvedge-state")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("cvedge-data")
}
fn default_review_below() -> f32 {
    0.5
}
fn default_review_max() -> usize {
    200
}
fn default_review_interval() -> f32 {
    10.0
}
fn default_prefix() -> String {
    "cvedge".to_owned()
}
fn default_keep_alive() -> u64 {
    30
}
fn default_qos() -> u8 {
    1
}
fn default_outbox() -> usize {
    10_000
}
fn default_discovery() -> String {
    "homeassistant".to_owned()
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Parses and validates a TOML document (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| format!("{origin} line {}", line_of(text, s.start))).unwrap_or_else(|| origin.to_owned());
            Error::config(key, e.message().to_owned(), "fix the value; see the README's configuration section for every key")
        })?;
        config.validated()
    }

    /// Builds a configuration from an already-parsed table (command-line flags), validated the same.
    pub fn from_table(table: toml::Table, origin: &str) -> Result<Config> {
        let config = Config::deserialize(table)
            .map_err(|e| Error::config(origin, e.message().to_owned(), "check the command-line flags"))?;
        config.validated()
    }

    pub fn load(path: &std::path::Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// What `cvedge run` does with no configuration: the bundled model on the bundled sample
    /// photos, published to a broker on localhost and printed.
    pub fn embedded_default() -> Config {
        Config::parse(Config::embedded_default_text(), "embedded default").expect("the embedded default is valid")
    }

    pub fn embedded_default_text() -> &'static str {
        include_str!("default.toml")
    }

    fn validated(mut self) -> Result<Config> {
        check_topic_safe("device", &self.device)?;
        check_probability("threshold", self.threshold)?;
        if self.consecutive == 0 {
            return Err(Error::config("consecutive", "must be at least 1", "use 1 to publish every change at once, 3 to smooth"));
        }
        if self.cameras.is_empty() {
            return Err(Error::config("camera", "no camera is configured", "add a [[camera]] table with a name and a source"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, camera) in self.cameras.iter().enumerate() {
            let key = |k: &str| format!("camera[{i}].{k}");
            check_topic_safe(&key("name"), &camera.name)?;
            if !names.insert(camera.name.clone()) {
                return Err(Error::config(key("name"), format!("'{}' is used twice", camera.name), "give every camera its own name"));
            }
            camera.source.parse::<SourceSpec>().map_err(|e| Error::config(key("source"), e, "see `cvedge run --help` for source specs"))?;
            if let Some(t) = camera.threshold {
                check_probability(&key("threshold"), t)?;
            }
            if !(camera.interval_s >= 0.0 && camera.interval_s.is_finite()) {
                return Err(Error::config(key("interval_s"), format!("{} is not a number of seconds", camera.interval_s), "use 0 or more, e.g. 0.5"));
            }
            if let Some([_, _, w, h]) = camera.roi {
                if w == 0 || h == 0 {
                    return Err(Error::config(key("roi"), "width and height must be positive", "write [x, y, width, height] in source pixels"));
                }
            }
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::config("data_dir", "is empty", "name a folder, e.g. \"/var/lib/cvedge/data\""));
        }
        if let Some(review) = &self.review {
            if !(review.below > 0.0 && review.below <= 1.0) {
                return Err(Error::config("review.below", format!("{} is not a probability above 0", review.below), "use a value in (0, 1], e.g. 0.5"));
            }
            if review.max_images == 0 {
                return Err(Error::config("review.max_images", "must be at least 1", "use e.g. 200, or remove [review] to turn review off"));
            }
            if !(review.interval_s >= 0.0 && review.interval_s.is_finite()) {
                return Err(Error::config("review.interval_s", format!("{} is not a number of seconds", review.interval_s), "use 0 or more, e.g. 10"));
            }
        }
        if let Some(http) = &mut self.http {
            http.api_key = expand_env("http.api_key", http.api_key.take().map(|k| k.0))?.map(Secret);
        }
        if let Some(mqtt) = &mut self.mqtt {
            check_topic_safe("mqtt.prefix", &mqtt.prefix)?;
            if mqtt.qos_predictions > 2 || mqtt.qos_state > 2 || mqtt.qos_status > 2 {
                return Err(Error::config("mqtt.qos_*", "QoS must be 0, 1 or 2", "use 1 for at-least-once delivery"));
            }
            if mqtt.outbox_capacity == 0 {
                return Err(Error::config("mqtt.outbox_capacity", "must be at least 1", "use e.g. 10000"));
            }
            mqtt.username = expand_env("mqtt.username", mqtt.username.take())?;
            mqtt.password = expand_env("mqtt.password", mqtt.password.take().map(|p| p.0))?.map(Secret);
        }
        Ok(self)
    }

    pub fn camera_interval(camera: &CameraConfig) -> Duration {
        Duration::from_secs_f32(camera.interval_s)
    }

    /// The review folder of one camera: a dot-folder, so `cvedge dataset` and training skip it.
    pub fn review_dir(&self, camera: &str) -> PathBuf {
        self.data_dir.join(REVIEW_DIR).join(camera)
    }

    /// The HTTP server's options from `[http]`.
    pub fn serve_options(http: &HttpConfig) -> crate::serve::ServeOptions {
        crate::serve::ServeOptions {
            addr: http.addr.clone(),
            workers: http.workers,
            queue: http.queue,
            max_connections: http.max_connections,
            api_key: http.api_key.as_ref().map(|k| k.0.clone()),
            allow_private_urls: http.allow_private_urls,
            format: http.format,
            from: crate::serve::OptionsFrom::HttpTable,
            ..crate::serve::ServeOptions::default()
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn check_probability(key: &str, value: f32) -> Result<()> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(Error::config(key, format!("{value} is not a probability"), "use a value from 0 to 1, e.g. 0.5"))
    }
}

/// MQTT topic levels must not contain wildcards or separators.
fn check_topic_safe(key: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.contains(['/', '+', '#']) || value.chars().any(char::is_whitespace) {
        return Err(Error::config(key, format!("'{value}' cannot be an MQTT topic level"), "use letters, digits, '-' and '_' only"));
    }
    Ok(())
}

/// `${NAME}` takes the value of environment variable NAME, so secrets stay out of the file.
fn expand_env(key: &str, value: Option<String>) -> Result<Option<String>> {
    let Some(value) = value else { return Ok(None) };
    let Some(name) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else { return Ok(Some(value)) };
    std::env::var(name)
        .map(Some)
        .map_err(|_| Error::config(key, format!("environment variable {name} is not set"), format!("export {name}=... before starting cvedge")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "model = \"models/demo\"\n[[camera]]\nname = \"door\"\nsource = \"synthetic\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, "t").unwrap();
        assert_eq!(c.threshold, 0.5);
        assert_eq!(c.consecutive, 3);
        assert!(c.mqtt.is_none());
        assert!(c.cameras[0].loop_files);
        assert_eq!(c.data_dir, PathBuf::from("cvedge-data"));
        assert!(c.review.is_none(), "review is off by default");
        assert_eq!((c.engine, c.threads), (EngineChoice::Auto, 0), "the fastest engine that agrees, on every core");
        Config::embedded_default();
    }

    macro_rules! rejects {
        ($name:ident, $toml:expr, $($fragment:expr),+) => {
            #[test]
            fn $name() {
                let err = Config::parse($toml, "t.toml").unwrap_err().to_string();
                $(assert!(err.contains($fragment), "{err:?} lacks {:?}", $fragment);)+
            }
        };
    }

    rejects!(unknown_key, &format!("{MINIMAL}colour = 1\n"), "unknown field `colour`", "line");
    rejects!(bad_threshold, &format!("threshold = 2.0\n{MINIMAL}"), "threshold", "not a probability");
    rejects!(no_camera, "model = \"m\"\n", "camera", "add a [[camera]]");
    rejects!(duplicate_camera, &format!("{MINIMAL}[[camera]]\nname = \"door\"\nsource = \"synthetic\"\n"), "camera[1].name", "used twice");
    rejects!(wildcard_name, "model = \"m\"\n[[camera]]\nname = \"a/b\"\nsource = \"synthetic\"\n", "camera[0].name", "MQTT topic level");
    rejects!(bad_source, "model = \"m\"\n[[camera]]\nname = \"a\"\nsource = \"carrier-pigeon\"\n", "camera[0].source");
    rejects!(missing_secret, &format!("{MINIMAL}[mqtt]\nurl = \"mqtt://h\"\npassword = \"${{CVEDGE_TEST_UNSET_SECRET}}\"\n"), "mqtt.password", "CVEDGE_TEST_UNSET_SECRET");
    rejects!(review_below_zero, &format!("{MINIMAL}[review]\nbelow = 0.0\n"), "review.below", "(0, 1]");
    rejects!(review_no_images, &format!("{MINIMAL}[review]\nmax_images = 0\n"), "review.max_images", "at least 1");
    rejects!(review_bad_interval, &format!("{MINIMAL}[review]\ninterval_s = -1.0\n"), "review.interval_s");
    rejects!(review_unknown_key, &format!("{MINIMAL}[review]\nbellow = 0.4\n"), "unknown field `bellow`");
    rejects!(empty_data_dir, &format!("data_dir = \"\"\n{MINIMAL}"), "data_dir", "name a folder");
    rejects!(bad_engine, &format!("engine = \"gpu\"\n{MINIMAL}"), "unknown engine `gpu`", "tract, onnxruntime or auto");
    rejects!(bad_format, &format!("{MINIMAL}[http]\naddr = \"127.0.0.1:8080\"\nformat = \"xml\"\n"), "http.format", "'xml' is not a format", "container", "cloud");
    rejects!(garbage, "\u{0}\u{1}[[[ not toml", "config");

    #[test]
    fn the_shipped_example_config_is_valid() {
        let c = Config::parse(include_str!("../cross/cvedge.toml"), "cross/cvedge.toml").unwrap();
        assert_eq!(c.cameras[0].source, "v4l:/dev/video0");
        assert_eq!(c.mqtt.unwrap().discovery_prefix, "homeassistant");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cvedge/data"));
        assert!(c.review.is_none(), "the example leaves review off");
    }

    #[test]
    fn review_keys_get_defaults_and_a_review_folder_per_camera() {
        let c = Config::parse(&format!("data_dir = \"/d\"\n{MINIMAL}[review]\nbelow = 1.0\n"), "t").unwrap();
        assert_eq!(c.review, Some(ReviewConfig { below: 1.0, max_images: 200, interval_s: 10.0 }));
        assert_eq!(c.review_dir("door"), PathBuf::from("/d/.review/door"));
    }

    #[test]
    fn engine_and_threads_are_read() {
        let c = Config::parse(&format!("engine = \"tract\"\nthreads = 2\n{MINIMAL}"), "t").unwrap();
        assert_eq!((c.engine, c.threads), (EngineChoice::Tract, 2));
    }

    #[test]
    fn secrets_come_from_the_environment() {
        std::env::set_var("CVEDGE_TEST_SECRET", "hunter2");
        let c = Config::parse(&format!("{MINIMAL}[mqtt]\nurl = \"mqtt://h\"\npassword = \"${{CVEDGE_TEST_SECRET}}\"\n"), "t").unwrap();
        let mqtt = c.mqtt.unwrap();
        assert_eq!(mqtt.password, Some(Secret("hunter2".into())));
        assert!(!format!("{mqtt:?}").contains("hunter2"), "secrets must not reach logs");
    }
}
